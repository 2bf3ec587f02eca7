/*
 * events.c - live events: GET /api/events (Server-Sent Events) and GET
 * /ws/workflow-updates (WebSocket, seed 001), both fed from the store's event log.
 *
 * A client may resume: SSE with the Last-Event-ID header (what EventSource sends on a
 * reconnect) or ?after=N, the WebSocket with ?after=N. Without either it gets live
 * events only. Filters: ?task=ID, ?run=ID, ?type=PREFIX ("task." for task events).
 * Every event goes out as the JSON of bt_event_to_json:
 *   {"seq":N,"type":"task.status","task_id":"...","run_id":null,"ts":"...","data":{...}}
 * over SSE as "id: N / event: TYPE / data: JSON", over the WebSocket as one text frame.
 *
 * The hand-over from replay to live is gap- and duplicate-free: a client subscribes
 * (through the hub) BEFORE its first read, pages through the log with
 * bt_store_event_read while live events for it wait in a backlog, then sends the
 * backlog minus everything at or below the last seq it sent. After that, live events
 * go straight out. Each client remembers the highest seq it sent and never sends one
 * at or below it again.
 *
 * The hub. The store allows a bounded number of subscribers, so all clients share one
 * subscription, taken when the first client connects and dropped when the last one
 * leaves (so it is gone before the store closes at shutdown). The hub itself is freed
 * by the API's cleanup.
 *
 * Slow clients: an SSE stream more than 8 MiB behind is ended by the server (the client
 * resumes with Last-Event-ID); a WebSocket's replay waits for its buffer to drain
 * between pages, and a socket whose buffer overflows is closed 1008. A client whose
 * live backlog outgrows BACKLOG_MAX during a long replay is ended the same way.
 */
#include "api/api.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/strbuf.h"
#include "base/vec.h"
#include "http/server.h"
#include "http/websocket.h"
#include "obs/log.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE          500
#define BACKLOG_MAX   10000
#define WS_DRAIN_WAIT (256u << 10) /* replay waits for the socket below this */

typedef struct ev_client ev_client;

typedef struct ev_hub {
    bt_api *api;
    int sub; /* store subscription, -1 while there is no client */
    ev_client *clients;
    size_t nclients;
} ev_hub;

struct ev_client {
    int refs; /* the stream or socket (until its close callback) + an in-flight read */
    ev_hub *hub;
    ev_client *prev, *next; /* hub->clients while linked */
    int linked;
    bt_http_sse *sse; /* NULL once closed */
    bt_http_ws *ws;   /* NULL once closed */
    char *task, *run, *type;
    int64_t last;   /* highest seq sent */
    int replaying;  /* paging through the store; live events wait in backlog */
    int wait_drain; /* replay paused until the socket drains */
    int ended;      /* told to stop; its close callback follows */
    int unnamed;    /* SSE without "event:" lines (?unnamed=1) */
    BT_VEC(bt_event *) backlog;
};

/* ------------------------------------------------------------------------------------
 * Clients.
 */

static void client_unref(ev_client *c)
{
    if (--c->refs > 0)
        return;
    for (size_t i = 0; i < c->backlog.len; i++)
        bt_event_free(c->backlog.items[i]);
    bt_vec_free(&c->backlog);
    free(c->task);
    free(c->run);
    free(c->type);
    free(c);
}

static int client_open(const ev_client *c)
{
    return (c->sse || c->ws) && !c->ended;
}

static int matches(const ev_client *c, const bt_event *e)
{
    if (c->task && strcmp(c->task, e->task_id) != 0)
        return 0;
    if (c->run && strcmp(c->run, e->run_id) != 0)
        return 0;
    if (c->type && !bt_str_starts_with(e->type, c->type))
        return 0;
    return 1;
}

/* Stop a client (it is too far behind, or the store failed); its close callback will
 * unlink it. */
static void client_end(ev_client *c, int ws_code, const char *why)
{
    if (c->ended)
        return;
    c->ended = 1;
    if (c->sse) {
        bt_http_sse_comment(c->sse, why);
        bt_http_sse_end(c->sse);
    } else if (c->ws) {
        bt_http_ws_close(c->ws, ws_code, why);
    }
}

static char *event_json(const bt_event *e)
{
    json_t *j = bt_event_to_json(e);
    char *s = bt_json_dumps(j);
    json_decref(j);
    return s;
}

/* Send e (its JSON in *json, rendered on first use and shared by every client that gets
 * this event; the caller frees it). */
static void deliver(ev_client *c, const bt_event *e, char **json)
{
    if (!client_open(c) || e->seq <= c->last)
        return;
    if (!*json)
        *json = event_json(e);
    const char *s = *json;
    int rc;
    if (c->sse) {
        char id[24];
        snprintf(id, sizeof id, "%" PRId64, e->seq);
        rc = bt_http_sse_send(c->sse, id, c->unnamed ? NULL : e->type, s);
    } else {
        rc = bt_http_ws_send(c->ws, 0, s, strlen(s));
    }
    c->last = e->seq;
    if (rc < 0)
        c->ended = 1; /* the stream is ending (too slow or closing); on_close follows */
}

static void read_page(ev_client *c);

static void finish_replay(ev_client *c)
{
    c->replaying = 0;
    for (size_t i = 0; i < c->backlog.len; i++) {
        char *json = NULL;
        deliver(c, c->backlog.items[i], &json); /* skips seq <= last: the hand-over */
        free(json);
        bt_event_free(c->backlog.items[i]);
    }
    bt_vec_free(&c->backlog);
}

static void on_page(void *ud, int rc, const bt_error *err, bt_event *const *events, size_t n)
{
    ev_client *c = ud;
    if (!client_open(c)) {
        client_unref(c);
        return;
    }
    if (rc < 0) {
        bt_log_warn(c->hub->api->log, "events: cannot read the event log",
                    BT_LF_STR("error", err ? err->msg : bt_strerror(rc)));
        client_end(c, BT_WS_CLOSE_INTERNAL, "error: the event log could not be read; reconnect");
        client_unref(c);
        return;
    }
    for (size_t i = 0; i < n && client_open(c); i++) {
        char *json = NULL;
        deliver(c, events[i], &json);
        free(json);
    }
    if (client_open(c)) {
        if (n == PAGE) {
            if (c->ws && bt_http_ws_buffered(c->ws) > WS_DRAIN_WAIT)
                c->wait_drain = 1; /* on_ws_drain continues */
            else
                read_page(c);
        } else {
            finish_replay(c);
        }
    }
    client_unref(c); /* the read's reference */
}

static void read_page(ev_client *c)
{
    bt_event_filter f = {0};
    f.after_seq = c->last;
    f.task_id = c->task;
    f.run_id = c->run;
    f.type_prefix = c->type;
    f.limit = PAGE;
    c->refs++;
    bt_store_event_read(c->hub->api->store, &f, on_page, c);
}

/* ------------------------------------------------------------------------------------
 * The hub.
 */

static void on_store_event(void *ud, const bt_event *e)
{
    ev_hub *hub = ud;
    ev_client *next;
    char *json = NULL;
    for (ev_client *c = hub->clients; c; c = next) {
        next = c->next;
        if (!client_open(c) || !matches(c, e))
            continue;
        if (c->replaying) {
            if (c->backlog.len >= BACKLOG_MAX) {
                client_end(c, BT_WS_CLOSE_POLICY,
                           "too far behind: reconnect with Last-Event-ID or ?after=");
                continue;
            }
            bt_vec_push(&c->backlog, bt_event_dup(e));
            continue;
        }
        c->refs++; /* deliver may close it */
        deliver(c, e, &json);
        client_unref(c);
    }
    free(json);
}

static int hub_add(ev_hub *hub, ev_client *c, bt_error *err)
{
    if (hub->sub < 0) {
        int sub = bt_store_subscribe(hub->api->store, on_store_event, hub);
        if (sub < 0)
            return bt_errorf(err, BT_EBUSY,
                             "the store has no subscription slot left for live events; retry");
        hub->sub = sub;
    }
    c->hub = hub;
    c->next = hub->clients;
    if (hub->clients)
        hub->clients->prev = c;
    hub->clients = c;
    hub->nclients++;
    c->linked = 1;
    return 0;
}

static void hub_remove(ev_hub *hub, ev_client *c)
{
    if (!c->linked)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        hub->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->linked = 0;
    if (--hub->nclients == 0 && hub->sub >= 0) {
        bt_store_unsubscribe(hub->api->store, hub->sub);
        hub->sub = -1;
    }
}

static void hub_free(void *ud)
{
    ev_hub *hub = ud;
    /* Every client closed with the HTTP server, which stopped before this runs. */
    free(hub);
}

/* ------------------------------------------------------------------------------------
 * Requests.
 */

/* Parse "N" (a non-negative integer) into *out. */
static int parse_seq(const char *s, int64_t *out)
{
    if (!s || !*s)
        return BT_EINVAL;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0 || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return BT_EINVAL;
    *out = v;
    return 0;
}

/* Build a client from the request's resume point and filters; answers 400 itself. */
static ev_client *client_new(bt_http_req *req, ev_hub *hub, int use_last_event_id, int *has_after)
{
    int64_t after = 0;
    *has_after = 0;
    const char *leid = use_last_event_id ? bt_http_req_header(req, "Last-Event-ID") : NULL;
    const char *q = bt_http_req_query(req, "after");
    if (leid && *leid) {
        if (parse_seq(leid, &after) < 0) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "Last-Event-ID must be an event seq (a non-negative integer), "
                                  "got '%.64s'",
                                  leid);
            return NULL;
        }
        *has_after = 1;
    } else if (q) {
        if (parse_seq(q, &after) < 0) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "after must be an event seq (a non-negative integer), "
                                  "got '%.64s'",
                                  q);
            return NULL;
        }
        *has_after = 1;
    }
    if (!hub->api->store) {
        bt_http_respond_error(req, 503, "unavailable", "the store is not open");
        return NULL;
    }
    ev_client *c = bt_xcalloc(1, sizeof *c);
    c->refs = 1;
    c->last = after;
    const char *task = bt_http_req_query(req, "task");
    const char *run = bt_http_req_query(req, "run");
    const char *type = bt_http_req_query(req, "type");
    c->task = task && *task ? bt_xstrdup(task) : NULL;
    c->run = run && *run ? bt_xstrdup(run) : NULL;
    c->type = type && *type ? bt_xstrdup(type) : NULL;
    /* ?unnamed=1: no "event:" line, so a browser's EventSource.onmessage sees every
     * type, including ones added after the client was written (the type is in the data). */
    const char *unnamed = bt_http_req_query(req, "unnamed");
    c->unnamed = unnamed && (strcmp(unnamed, "1") == 0 || strcmp(unnamed, "true") == 0);
    return c;
}

static void client_start(ev_client *c, int has_after)
{
    if (has_after) {
        c->replaying = 1;
        read_page(c);
    }
}

static void on_sse_close(bt_http_sse *stream, void *ud)
{
    (void)stream;
    ev_client *c = ud;
    c->sse = NULL;
    hub_remove(c->hub, c);
    client_unref(c);
}

static void h_events(bt_http_req *req, void *ud)
{
    ev_hub *hub = ud;
    int has_after;
    ev_client *c = client_new(req, hub, 1, &has_after);
    if (!c)
        return;
    bt_error err = BT_ERROR_INIT;
    if (hub_add(hub, c, &err) < 0) {
        client_unref(c);
        bt_http_respond_bt_error(req, BT_EBUSY, &err);
        return;
    }
    c->sse = bt_http_sse_start(req, on_sse_close, c);
    if (!c->sse) {
        hub_remove(hub, c);
        client_unref(c);
        return;
    }
    client_start(c, has_after);
}

static void on_ws_message(bt_http_ws *ws, int binary, const char *data, size_t len, void *ud)
{
    /* The feed is one-way; client messages are ignored (pings are answered below us). */
    (void)ws, (void)binary, (void)data, (void)len, (void)ud;
}

static void on_ws_drain(bt_http_ws *ws, void *ud)
{
    (void)ws;
    ev_client *c = ud;
    if (c->wait_drain && client_open(c)) {
        c->wait_drain = 0;
        read_page(c);
    }
}

static void on_ws_close(bt_http_ws *ws, int code, const char *reason, void *ud)
{
    (void)ws, (void)code, (void)reason;
    ev_client *c = ud;
    c->ws = NULL;
    hub_remove(c->hub, c);
    client_unref(c);
}

static void h_ws(bt_http_req *req, void *ud)
{
    ev_hub *hub = ud;
    int has_after;
    ev_client *c = client_new(req, hub, 0, &has_after);
    if (!c)
        return;
    bt_error err = BT_ERROR_INIT;
    if (hub_add(hub, c, &err) < 0) {
        client_unref(c);
        bt_http_respond_bt_error(req, BT_EBUSY, &err);
        return;
    }
    const bt_http_ws_callbacks cb = {on_ws_message, on_ws_drain, on_ws_close};
    c->ws = bt_http_ws_accept(req, NULL, &cb, c);
    if (!c->ws) { /* a bad handshake, answered 400/426 */
        hub_remove(hub, c);
        client_unref(c);
        return;
    }
    client_start(c, has_after);
}

int bt_api_events_register(bt_api *api, bt_error *err)
{
    ev_hub *hub = bt_xcalloc(1, sizeof *hub);
    hub->api = api;
    hub->sub = -1;
    int rc = bt_api_on_cleanup(api, hub_free, hub, err);
    if (rc < 0) {
        free(hub);
        return rc;
    }
    const bt_http_route routes[] = {
        {"GET", "/api/events", BT_HTTP_SCOPE_READ, h_events, hub, 0, BT_HTTP_ROUTE_QUERY_TOKEN},
        {"GET", "/ws/workflow-updates", BT_HTTP_SCOPE_READ, h_ws, hub, 0,
         BT_HTTP_ROUTE_QUERY_TOKEN},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        rc = bt_http_server_route(api->http, &routes[i], err);
        if (rc < 0)
            return rc;
    }
    return 0;
}
