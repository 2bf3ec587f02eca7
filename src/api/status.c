/*
 * status.c - seed 004's session status and configuration routes:
 *   GET /api/status  (read)  version, uptime, mode (online/offline and why: the offline
 *                             detector's state), store, queue counts, workers, HTTP
 *   GET /api/config  (read)  the effective configuration, secrets masked
 *   PUT /api/config  (admin) change what can change while running
 *
 * PUT /api/config takes a full or partial configuration as JSON (the shape GET
 * returns). It is merged over the current configuration (a "***" string keeps the
 * current secret, so GET -> edit -> PUT works), and the result goes through the config
 * module's own loader and validation (JSON is YAML), so a PUT is checked exactly like
 * baton.yaml. Then the changed keys are compared with the set that can change at run
 * time (runtime_keys below); if any other key changed, nothing is applied and the
 * answer is 409 naming every key that needs a restart. Otherwise the runtime keys are
 * copied into the live configuration (bt_api.cfg, mutated in place: readers look the
 * values up when they need them), the logger and the store are told, and the answer is
 * the new masked configuration. All or nothing: nothing changes before every check has
 * passed, and applying cannot fail.
 */
#include "api/api.h"
#include "trackers/github.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "http/server.h"
#include "obs/log.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

extern char **environ;

/* ---- GET /api/status ---- */

typedef struct status_ctx {
    bt_api *api;
    bt_http_req *req;
    int pending;
    json_t *out;
} status_ctx;

typedef struct http_totals {
    uint64_t total, by_class[6];
} http_totals;

static void on_http_row(void *ud, const char *method, const char *pattern, int status,
                        uint64_t count, double seconds)
{
    http_totals *t = ud;
    t->total += count;
    if (status >= 100 && status < 600)
        t->by_class[status / 100] += count;
}

static void status_finish(status_ctx *c)
{
    if (--c->pending > 0)
        return;
    bt_http_respond_json(c->req, 200, c->out);
    free(c);
}

static json_t *error_json(const bt_error *err)
{
    return json_pack("{s:s}", "error", err ? err->msg : "unknown error");
}

static void on_status_stats(void *ud, int rc, const bt_error *err, const bt_task_stats *st)
{
    status_ctx *c = ud;
    json_t *q = json_object();
    if (rc < 0) {
        json_object_set_new(q, "error", json_string(err->msg));
    } else {
        for (int i = 0; i < BT_TASK__COUNT; i++)
            json_object_set_new(q, bt_task_status_name((bt_task_status)i),
                                json_integer(st->count[i]));
        json_object_set_new(q, "ready", json_integer(st->ready));
        json_object_set_new(q, "avg_duration_ms", json_real(st->avg_duration_ms));
    }
    json_object_set_new(c->out, "queue", q);
    status_finish(c);
}

static void on_status_workers(void *ud, int rc, const bt_error *err, bt_worker *const *ws, size_t n)
{
    status_ctx *c = ud;
    if (rc < 0) {
        json_object_set_new(c->out, "workers", error_json(err));
    } else {
        int64_t now = bt_time_wall_ms();
        int64_t fresh = c->api->cfg->workers.offline_after_ms > 0
                            ? c->api->cfg->workers.offline_after_ms
                            : 120000;
        json_int_t healthy = 0, busy = 0, idle = 0;
        for (size_t i = 0; i < n; i++) {
            int ok = now - ws[i]->last_seen <= fresh;
            healthy += ok;
            if (ok && ws[i]->status && strcmp(ws[i]->status, "busy") == 0)
                busy++;
            else if (ok && ws[i]->status && strcmp(ws[i]->status, "idle") == 0)
                idle++;
        }
        json_object_set_new(c->out, "workers",
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "total", (json_int_t)n, "healthy",
                                      healthy, "unhealthy", (json_int_t)n - healthy, "busy", busy,
                                      "idle", idle));
    }
    status_finish(c);
}

static void h_status(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    int64_t now = bt_time_wall_ms();
    char started[40];
    bt_time_format_iso(api->started_ms, started);
    http_totals t = {0};
    bt_http_server_metrics(api->http, on_http_row, &t);

    /* offline mode: the detector's state (core/offline.h), else why there is none */
    json_t *off = api->offline_status ? api->offline_status(api) : NULL;
    const char *mode = off ? json_string_value(json_object_get(off, "mode")) : NULL;
    const char *mode_reason = off ? json_string_value(json_object_get(off, "reason")) : NULL;
    if (!mode)
        mode = "online";
    if (!mode_reason)
        mode_reason = api->cfg->offline.mode == BT_OFFLINE_OFF
                          ? "offline detection is off (offline.mode off): never offline"
                          : "no offline detector running";
    json_t *out = json_pack(
        "{s:s,s:s,s:I,s:s,s:s,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "version", BATON_VERSION,
        "started_at", started, "uptime_seconds", (json_int_t)((now - api->started_ms) / 1000),
        "mode", mode, "mode_reason", mode_reason, "http", "requests_total", (json_int_t)t.total,
        "responses_2xx", (json_int_t)t.by_class[2], "responses_3xx", (json_int_t)t.by_class[3],
        "responses_4xx", (json_int_t)t.by_class[4], "responses_5xx", (json_int_t)t.by_class[5],
        "active_requests", (json_int_t)bt_http_server_active_requests(api->http), "active_streams",
        (json_int_t)bt_http_server_active_streams(api->http));
    json_object_set_new(out, "offline", off ? off : json_null());
    json_object_set_new(out, "stopping", json_boolean(api->stopping));
    /* the trackers' polling and rate-limit state (trackers/github.h) */
    json_t *trk = json_object();
    if (api->github)
        json_object_set_new(trk, "github", bt_github_status(api->github));
    json_object_set_new(out, "trackers", trk);
    json_object_set_new(out, "config_file",
                        api->cfg->path ? json_string(api->cfg->path) : json_null());
    if (!api->store) {
        json_object_set_new(out, "store", json_pack("{s:s}", "error", "the store is not open"));
        bt_http_respond_json(req, 200, out);
        return;
    }
    json_object_set_new(out, "store",
                        json_pack("{s:s,s:i}", "backend", bt_store_backend(api->store),
                                  "connections", bt_store_connections(api->store)));
    status_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->out = out;
    c->pending = 2;
    bt_http_req_suspend(req);
    bt_store_task_stats(api->store, on_status_stats, c);
    bt_store_worker_list(api->store, on_status_workers, c);
}

/* ---- GET /api/config ---- */

static void h_config_get(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    bt_http_respond_json(req, 200, bt_config_to_json(api->cfg, 1));
}

/* ---- PUT /api/config ---- */

/* Keys (dotted, as in baton.yaml) that may change while running: a key matches an entry
 * equal to it or starting with "entry.". Everything else needs a restart. */
static const char *const runtime_keys[] = {
    "log.level", "queue", "concurrency", "budgets", "workers.offline_after",
};

static int is_runtime_key(const char *key)
{
    for (size_t i = 0; i < sizeof runtime_keys / sizeof runtime_keys[0]; i++) {
        size_t n = strlen(runtime_keys[i]);
        if (strncmp(key, runtime_keys[i], n) == 0 && (key[n] == '\0' || key[n] == '.'))
            return 1;
    }
    return 0;
}

/* '$' -> '$$' in every string, so values already expanded from the environment (or
 * containing a dollar) load back as themselves. */
static json_t *escape_dollars(json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strchr(s, '$'))
            return v;
        bt_strbuf b = BT_STRBUF_INIT;
        for (; *s; s++) {
            if (*s == '$')
                bt_strbuf_addch(&b, '$');
            bt_strbuf_addch(&b, *s);
        }
        json_string_set(v, bt_strbuf_cstr(&b));
        bt_strbuf_release(&b);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            escape_dollars(x);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            escape_dollars(x);
        }
    }
    return v;
}

static int is_mask(const json_t *v)
{
    return json_is_string(v) && strcmp(json_string_value(v), "***") == 0;
}

static void merge(json_t *base, json_t *patch);

/* An array from the patch, position by position over base's: objects merge, a mask
 * keeps base's item (server.tokens comes back from GET as [{"token":"***"}]). */
static json_t *merge_array(const json_t *base, json_t *patch)
{
    json_t *out = json_array();
    size_t i;
    json_t *pv;
    json_array_foreach(patch, i, pv)
    {
        json_t *bv = json_array_get(base, i);
        if (bv && is_mask(pv)) {
            json_array_append(out, bv);
        } else if (json_is_object(pv) && json_is_object(bv)) {
            json_t *m = json_deep_copy(bv);
            merge(m, pv);
            json_array_append_new(out, m);
        } else {
            json_array_append(out, pv);
        }
    }
    return out;
}

/* Merge patch into base: objects recursively, arrays item by item, anything else
 * replaces, and the mask "***" keeps what base has. */
static void merge(json_t *base, json_t *patch)
{
    const char *k;
    json_t *pv;
    json_object_foreach(patch, k, pv)
    {
        json_t *bv = json_object_get(base, k);
        if (bv && is_mask(pv))
            continue;
        if (json_is_object(pv) && json_is_object(bv))
            merge(bv, pv);
        else if (json_is_array(pv) && json_is_array(bv))
            json_object_set_new(base, k, merge_array(bv, pv));
        else
            json_object_set(base, k, pv);
    }
}

/* Collect the dotted keys whose values differ between a and b (leaves; arrays compare
 * whole). */
static void diff(const json_t *a, const json_t *b, const char *prefix, json_t *out)
{
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *x;
        char key[512];
        json_object_foreach((json_t *)a, k, x)
        {
            snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", k);
            diff(x, json_object_get(b, k), key, out);
        }
        json_object_foreach((json_t *)b, k, x)
        {
            if (!json_object_get(a, k)) {
                snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", k);
                json_array_append_new(out, json_string(key));
            }
        }
        return;
    }
    if (!json_equal(a, b))
        json_array_append_new(out, json_string(prefix));
}

static void put_problems(bt_http_req *req, const bt_config_problems *probs, const bt_error *err)
{
    json_t *list = json_array();
    for (size_t i = 0; i < probs->len; i++) {
        const bt_config_problem *p = &probs->items[i];
        json_t *o = json_pack("{s:s?,s:s}", "key", p->key, "message", p->message);
        if (p->hint)
            json_object_set_new(o, "hint", json_string(p->hint));
        json_array_append_new(list, o);
    }
    const char *first = probs->len ? probs->items[0].message : err->msg;
    json_t *body = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", "invalid_config", "message",
                             first, "problems", list);
    if (probs->len > 1) {
        bt_strbuf msg = BT_STRBUF_INIT;
        bt_strbuf_addf(&msg, "%zu problems in the configuration; the first: %s", probs->len, first);
        json_object_set_new(json_object_get(body, "error"), "message",
                            json_string(bt_strbuf_cstr(&msg)));
        bt_strbuf_release(&msg);
    }
    bt_http_respond_json(req, 422, body);
}

/* Copy the runtime sections of next into cur, and hand cur's old ones to next (which
 * the caller frees). Cannot fail. */
static void apply(bt_api *api, bt_config *cur, bt_config *next)
{
    bt_config_queue q = cur->queue;
    cur->queue = next->queue;
    next->queue = q;
    bt_config_concurrency c = cur->concurrency;
    cur->concurrency = next->concurrency;
    next->concurrency = c;
    cur->budgets = next->budgets;
    cur->log.level = next->log.level;
    cur->workers.offline_after_ms = next->workers.offline_after_ms;
    if (api->log)
        bt_log_set_level(api->log, (bt_log_level)cur->log.level);
    if (api->store)
        bt_store_set_retry_policy(api->store, (int32_t)cur->queue.max_attempts,
                                  cur->queue.backoff_base_ms, cur->queue.backoff_max_ms);
}

static void h_config_put(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    json_t *patch = NULL;
    if (bt_http_req_json(req, &patch) < 0)
        return;
    if (!json_is_object(patch)) {
        json_decref(patch);
        bt_http_respond_error(req, 400, "invalid",
                              "the body must be a JSON object: the whole configuration or the "
                              "part to change, e.g. {\"log\":{\"level\":\"debug\"}}");
        return;
    }
    json_object_del(patch, "config_file"); /* read-only, as GET shows it */
    json_t *cur = bt_config_to_json(api->cfg, 0);
    json_object_del(cur, "config_file");
    json_t *merged = json_deep_copy(cur);
    escape_dollars(merged);
    merge(merged, patch);
    json_decref(patch);
    char *text = json_dumps(merged, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(merged);

    bt_config *next = NULL;
    bt_config_problems probs = {0};
    bt_error err = {0};
    int rc =
        bt_config_load_string("PUT /api/config", text, strlen(text), environ, &next, &probs, &err);
    free(text);
    if (rc < 0) {
        put_problems(req, &probs, &err);
        bt_config_problems_free(&probs);
        json_decref(cur);
        return;
    }
    bt_config_problems_free(&probs);

    json_t *after = bt_config_to_json(next, 0);
    json_object_del(after, "config_file");
    json_t *changed = json_array();
    diff(cur, after, "", changed);
    json_decref(after);
    json_decref(cur);

    json_t *refused = json_array();
    size_t i;
    json_t *k;
    json_array_foreach(changed, i, k)
    {
        if (!is_runtime_key(json_string_value(k)))
            json_array_append(refused, k);
    }
    if (json_array_size(refused) > 0) {
        bt_strbuf msg = BT_STRBUF_INIT;
        bt_strbuf_addstr(&msg, "nothing was changed: these settings only take effect at start-up; "
                               "edit baton.yaml (or the environment) and restart baton: ");
        json_array_foreach(refused, i, k)
        {
            bt_strbuf_addstr(&msg, i ? ", " : "");
            bt_strbuf_addstr(&msg, json_string_value(k));
        }
        json_t *live = json_array();
        for (size_t j = 0; j < sizeof runtime_keys / sizeof runtime_keys[0]; j++)
            json_array_append_new(live, json_string(runtime_keys[j]));
        json_t *body =
            json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "code", "restart_required", "message",
                      bt_strbuf_cstr(&msg), "restart_required", refused, "runtime_keys", live);
        bt_strbuf_release(&msg);
        json_decref(changed);
        bt_config_free(next);
        bt_http_respond_json(req, 409, body);
        return;
    }
    json_decref(refused);

    apply(api, api->cfg, next);
    bt_config_free(next);
    if (json_array_size(changed) > 0) {
        char *keys = json_dumps(changed, JSON_COMPACT);
        bt_log_info(api->log, "configuration changed through the API", BT_LF_STR("keys", keys));
        free(keys);
    }
    json_decref(changed);
    bt_http_respond_json(req, 200, bt_config_to_json(api->cfg, 1));
}

int bt_api_status_register(bt_api *api, bt_error *err)
{
    const bt_http_route routes[] = {
        {"GET", "/api/status", BT_HTTP_SCOPE_READ, h_status, api, 0, 0},
        {"GET", "/api/config", BT_HTTP_SCOPE_READ, h_config_get, api, 0, 0},
        {"PUT", "/api/config", BT_HTTP_SCOPE_ADMIN, h_config_put, api, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
