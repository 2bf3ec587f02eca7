/*
 * health.c - liveness and readiness: GET /health in seed 002's exact shape
 *   {"status":"healthy","workers":{"total":N,"available":N},
 *    "queue":{"pending":N,"in_progress":N,"completed":N},"github_connected":bool}
 * computed from the store (workers available = idle and seen within
 * workers.offline_after), and GET /ready (seed 004): 200 once the store is open and
 * the daemon is not shutting down, else 503.
 */
#include "api/api.h"

#include "base/mem.h"
#include "base/time.h"
#include "config/config.h"
#include "http/server.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

typedef struct health_ctx {
    bt_api *api;
    bt_http_req *req;
    int pending;
    int rc;
    bt_error err;
    int64_t workers_total, workers_available;
    int64_t pending_tasks, in_progress, completed;
} health_ctx;

static void health_finish(health_ctx *h)
{
    if (--h->pending > 0)
        return;
    if (h->rc < 0) {
        bt_http_respond_error(h->req, 503, "unavailable", "health check failed: %s", h->err.msg);
    } else {
        json_t *j = json_pack(
            "{s:s,s:{s:I,s:I},s:{s:I,s:I,s:I},s:b}", "status", "healthy", "workers", "total",
            (json_int_t)h->workers_total, "available", (json_int_t)h->workers_available, "queue",
            "pending", (json_int_t)h->pending_tasks, "in_progress", (json_int_t)h->in_progress,
            "completed", (json_int_t)h->completed, "github_connected", h->api->github_connected);
        bt_http_respond_json(h->req, 200, j);
    }
    free(h);
}

static void on_health_workers(void *ud, int rc, const bt_error *err, bt_worker *const *workers,
                              size_t n)
{
    health_ctx *h = ud;
    if (rc < 0) {
        h->rc = rc;
        if (err)
            h->err = *err;
    } else {
        int64_t now = bt_time_wall_ms();
        int64_t fresh = h->api->cfg->workers.offline_after_ms > 0
                            ? h->api->cfg->workers.offline_after_ms
                            : 120000;
        h->workers_total = (int64_t)n;
        for (size_t i = 0; i < n; i++)
            if (workers[i]->status && strcmp(workers[i]->status, "idle") == 0 &&
                now - workers[i]->last_seen <= fresh)
                h->workers_available++;
    }
    health_finish(h);
}

static void on_health_stats(void *ud, int rc, const bt_error *err, const bt_task_stats *st)
{
    health_ctx *h = ud;
    if (rc < 0) {
        h->rc = rc;
        if (err)
            h->err = *err;
    } else {
        h->pending_tasks = st->count[BT_TASK_PENDING];
        h->in_progress = st->count[BT_TASK_IN_PROGRESS];
        h->completed = st->count[BT_TASK_COMPLETED];
    }
    health_finish(h);
}

static void h_health(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    if (!api->store) {
        bt_http_respond_error(req, 503, "unavailable", "the store is not open");
        return;
    }
    health_ctx *h = bt_xcalloc(1, sizeof *h);
    h->api = api;
    h->req = req;
    h->pending = 2;
    bt_http_req_suspend(req);
    bt_store_worker_list(api->store, on_health_workers, h);
    bt_store_task_stats(api->store, on_health_stats, h);
}

static void h_ready(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    if (!api->store || api->stopping) {
        json_t *j =
            json_pack("{s:s,s:{s:s,s:s}}", "status", "not_ready", "error", "code", "unavailable",
                      "message", api->stopping ? "shutting down" : "the store is not open");
        bt_http_respond_json(req, 503, j);
        return;
    }
    bt_http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

int bt_api_health_register(bt_api *api, bt_error *err)
{
    const bt_http_route routes[] = {
        {"GET", "/health", BT_HTTP_SCOPE_NONE, h_health, api, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/ready", BT_HTTP_SCOPE_NONE, h_ready, api, 0, BT_HTTP_ROUTE_QUIET},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
