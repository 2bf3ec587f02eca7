/*
 * http_probe.c - a test server exercising src/http/ through real HTTP on loopback.
 *
 *   bt-http_probe [--port N] [--heartbeat-ms N] [--grace-ms N] [--max-body N]
 *
 * Prints "listening on HOST:PORT" on stdout once serving; SIGTERM/SIGINT shut it down
 * gracefully and it exits 0 only if uv_loop_close() then returns 0. Routes:
 *   GET  /health                 {"status":"ok"}  (quiet)
 *   GET  /api/tasks/{id}         {"id":..., "q": query "q"}
 *   PATCH /api/tasks/{id}        echoes the JSON body
 *   GET  /api/tasks/stats        literal beats {id}
 *   POST /echo                   echoes the JSON body (body limit from --max-body)
 *   GET  /async?ms=N             answers after N ms from a timer (suspend/resume)
 *   GET  /sse?n=N&interval=MS    N events MS apart, then ends (n=0: endless)
 *   GET  /stats                  {"streams_open","streams_closed","last_close_ms",...}
 *   GET  /secret                 scope read; POST /secret scope write
 *                                 (tokens: "r" read, "w" write, "a" admin)
 */
#include "base/json.h"
#include "base/mem.h"
#include "base/time.h"
#include "http/server.h"
#include "obs/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct probe {
    uv_loop_t *loop;
    bt_http_server *srv;
    uv_signal_t sigterm, sigint;
    int64_t streams_closed;
    int64_t last_close_ms; /* wall clock of the last stream close */
    int64_t async_pending;
} probe;

typedef struct async_job {
    uv_timer_t t;
    bt_http_req *req;
    probe *p;
} async_job;

typedef struct sse_job {
    uv_timer_t t;
    bt_http_sse *s;
    int n, sent;
    probe *p;
} sse_job;

static void h_health(bt_http_req *req, void *ud)
{
    (void)ud;
    bt_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_task_get(bt_http_req *req, void *ud)
{
    (void)ud;
    const char *q = bt_http_req_query(req, "q");
    bt_http_respond_json(req, 200,
                         json_pack("{s:s,s:s?}", "id", bt_http_req_param(req, "id"), "q", q));
}

static void h_task_stats(bt_http_req *req, void *ud)
{
    (void)ud;
    bt_http_respond_json(req, 200, json_pack("{s:b}", "stats", 1));
}

static void h_echo(bt_http_req *req, void *ud)
{
    (void)ud;
    json_t *j;
    if (bt_http_req_json(req, &j) < 0)
        return;
    bt_http_respond_json(req, 200, j);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_async_timer(uv_timer_t *t)
{
    async_job *j = t->data;
    j->p->async_pending--;
    bt_http_respond_json(j->req, 200, json_pack("{s:b}", "async", 1));
    uv_close((uv_handle_t *)t, on_timer_closed);
}

static void h_async(bt_http_req *req, void *ud)
{
    probe *p = ud;
    const char *ms = bt_http_req_query(req, "ms");
    async_job *j = bt_xcalloc(1, sizeof *j);
    j->req = req;
    j->p = p;
    uv_timer_init(p->loop, &j->t);
    j->t.data = j;
    p->async_pending++;
    bt_http_req_suspend(req);
    uv_timer_start(&j->t, on_async_timer, ms ? strtoull(ms, NULL, 10) : 10, 0);
}

static void on_sse_tick(uv_timer_t *t)
{
    sse_job *j = t->data;
    char id[32], data[64];
    snprintf(id, sizeof id, "%d", j->sent + 1);
    snprintf(data, sizeof data, "{\"n\":%d}\nline2", j->sent + 1);
    bt_http_sse_send(j->s, id, "tick", data);
    j->sent++;
    if (j->n && j->sent >= j->n) {
        uv_timer_stop(t);
        bt_http_sse_end(j->s);
    }
}

static void on_sse_close(bt_http_sse *s, void *ud)
{
    (void)s;
    sse_job *j = ud;
    j->p->streams_closed++;
    j->p->last_close_ms = bt_time_wall_ms();
    uv_timer_stop(&j->t);
    uv_close((uv_handle_t *)&j->t, on_timer_closed);
}

static void h_sse(bt_http_req *req, void *ud)
{
    probe *p = ud;
    const char *n = bt_http_req_query(req, "n");
    const char *iv = bt_http_req_query(req, "interval");
    sse_job *j = bt_xcalloc(1, sizeof *j);
    j->p = p;
    j->n = n ? atoi(n) : 3;
    uv_timer_init(p->loop, &j->t);
    j->t.data = j;
    j->s = bt_http_sse_start(req, on_sse_close, j);
    uint64_t ms = iv ? strtoull(iv, NULL, 10) : 100;
    uv_timer_start(&j->t, on_sse_tick, ms, ms);
}

static void h_stats(bt_http_req *req, void *ud)
{
    probe *p = ud;
    bt_http_respond_json(req, 200,
                         json_pack("{s:I,s:I,s:I,s:I,s:I}", "streams_open",
                                   (json_int_t)bt_http_server_active_streams(p->srv),
                                   "streams_closed", (json_int_t)p->streams_closed, "last_close_ms",
                                   (json_int_t)p->last_close_ms, "active_requests",
                                   (json_int_t)bt_http_server_active_requests(p->srv),
                                   "async_pending", (json_int_t)p->async_pending));
}

static void metric_row(void *ud, const char *method, const char *pattern, int status,
                       uint64_t count, double secs)
{
    (void)secs;
    json_array_append_new(ud, json_pack("{s:s,s:s,s:i,s:I}", "method", method, "pattern", pattern,
                                        "status", status, "count", (json_int_t)count));
}

static void h_metrics(bt_http_req *req, void *ud)
{
    probe *p = ud;
    json_t *a = json_array();
    bt_http_server_metrics(p->srv, metric_row, a);
    bt_http_respond_json(req, 200, a);
}

static void h_secret(bt_http_req *req, void *ud)
{
    (void)ud;
    bt_http_respond_json(req, 200, json_pack("{s:b}", "secret", 1));
}

static bt_http_auth_result probe_auth(void *ud, const char *authz, bt_http_scope need,
                                      bt_error *msg)
{
    (void)ud;
    if (!authz || strncmp(authz, "Bearer ", 7) != 0)
        return BT_HTTP_AUTH_UNAUTHENTICATED;
    const char *t = authz + 7;
    bt_http_scope have;
    if (strcmp(t, "r") == 0)
        have = BT_HTTP_SCOPE_READ;
    else if (strcmp(t, "w") == 0)
        have = BT_HTTP_SCOPE_WRITE;
    else if (strcmp(t, "a") == 0)
        have = BT_HTTP_SCOPE_ADMIN;
    else {
        bt_errorf(msg, BT_EPERM, "unknown token");
        return BT_HTTP_AUTH_UNAUTHENTICATED;
    }
    if (have < need)
        return BT_HTTP_AUTH_FORBIDDEN;
    return BT_HTTP_AUTH_OK;
}

static void on_shutdown_done(bt_http_server *srv, void *ud)
{
    (void)srv;
    probe *p = ud;
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    probe *p = s->data;
    fprintf(stderr, "http_probe: signal %d, shutting down\n", signum);
    bt_http_server_shutdown(p->srv, on_shutdown_done, p);
}

static void walk_cb(uv_handle_t *h, void *ud)
{
    (void)ud;
    fprintf(stderr, "http_probe: leftover handle %s\n", uv_handle_type_name(h->type));
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    bt_http_server_options o = {0};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            o.port = (uint16_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--heartbeat-ms") == 0)
            o.sse_heartbeat_ms = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--grace-ms") == 0)
            o.shutdown_grace_ms = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--max-body") == 0)
            o.max_body = (size_t)atoll(argv[i + 1]);
    }
    const char *lvl = getenv("PROBE_LOG");
    bt_log_level level = BT_LOG_WARN;
    if (lvl)
        bt_log_level_parse(lvl, &level);
    bt_log *log = bt_log_new(stderr, level);
    probe p = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    p.loop = &loop;
    o.log = log;
    o.auth = probe_auth;
    p.srv = bt_http_server_new(&loop, &o);
    bt_error err = BT_ERROR_INIT;
    const bt_http_route routes[] = {
        {"GET", "/health", BT_HTTP_SCOPE_NONE, h_health, &p, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/api/tasks/{id}", BT_HTTP_SCOPE_NONE, h_task_get, &p, 0, 0},
        {"PATCH", "/api/tasks/{id}", BT_HTTP_SCOPE_NONE, h_echo, &p, 0, 0},
        {"GET", "/api/tasks/stats", BT_HTTP_SCOPE_NONE, h_task_stats, &p, 0, 0},
        {"POST", "/echo", BT_HTTP_SCOPE_NONE, h_echo, &p, 0, 0},
        {"GET", "/async", BT_HTTP_SCOPE_NONE, h_async, &p, 0, 0},
        {"GET", "/sse", BT_HTTP_SCOPE_NONE, h_sse, &p, 0, 0},
        {"GET", "/stats", BT_HTTP_SCOPE_NONE, h_stats, &p, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/metrics", BT_HTTP_SCOPE_NONE, h_metrics, &p, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/secret", BT_HTTP_SCOPE_READ, h_secret, &p, 0, 0},
        {"POST", "/secret", BT_HTTP_SCOPE_WRITE, h_secret, &p, 0, 0},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (bt_http_server_route(p.srv, &routes[i], &err) < 0) {
            fprintf(stderr, "http_probe: %s\n", err.msg);
            return 1;
        }
    if (bt_http_server_start(p.srv, &err) < 0) {
        fprintf(stderr, "http_probe: %s\n", err.msg);
        return 1;
    }
    uv_signal_init(&loop, &p.sigterm);
    uv_signal_init(&loop, &p.sigint);
    p.sigterm.data = p.sigint.data = &p;
    uv_signal_start(&p.sigterm, on_signal, SIGTERM);
    uv_signal_start(&p.sigint, on_signal, SIGINT);
    printf("listening on %s:%u\n", bt_http_server_host(p.srv), bt_http_server_port(p.srv));
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    bt_http_server_free(p.srv);
    int rc = uv_loop_close(&loop);
    if (rc != 0) {
        uv_walk(&loop, walk_cb, NULL);
        fprintf(stderr, "http_probe: uv_loop_close: %s\n", uv_strerror(rc));
    }
    bt_log_free(log);
    return rc == 0 ? 0 : 3;
}
