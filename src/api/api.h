/*
 * api.h - baton's HTTP API (DESIGN.md §8): the seeds' routes and baton's own resource
 * API, registered on the server by route group. Each group lives in its own file
 * (src/api/GROUP.c) and exports `int bt_api_GROUP_register(bt_api *api, bt_error *err)`;
 * bt_api_register calls them all.
 *
 * bt_api is the context every handler gets as its `ud`: borrowed pointers to the
 * daemon's parts, owned by the app (src/app/app.c), valid until the HTTP server has
 * shut down. Handlers talk to the store through store.h only; they answer
 * asynchronously (bt_http_req_suspend, then respond from the store callback).
 */
#ifndef BT_API_H
#define BT_API_H

#include "base/error.h"

#include <stdint.h>
#include <uv.h>

typedef struct bt_config bt_config;
typedef struct bt_log bt_log;
typedef struct bt_store bt_store;
typedef struct bt_metrics bt_metrics;
typedef struct bt_http_server bt_http_server;

typedef struct bt_api {
    uv_loop_t *loop;
    bt_config *cfg; /* the effective configuration (PUT /api/config may change parts) */
    bt_log *log;
    bt_store *store;
    bt_metrics *metrics;
    bt_http_server *http;
    int64_t started_ms;   /* wall clock at start-up */
    int stopping;         /* set by the app when shutdown begins */
    int github_connected; /* seed 002 /health: set by the GitHub tracker when it is up */
} bt_api;

/* Register every route group. */
int bt_api_register(bt_api *api, bt_error *err);

/* Route groups. */
int bt_api_health_register(bt_api *api, bt_error *err); /* /health, /ready */

#endif
