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

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_config bt_config;
typedef struct bt_log bt_log;
typedef struct bt_store bt_store;
typedef struct bt_metrics bt_metrics;
typedef struct bt_http_server bt_http_server;
typedef struct bt_http_client bt_http_client;
typedef struct bt_agents bt_agents;
typedef struct bt_workflows bt_workflows;
typedef struct bt_resil bt_resil;
typedef struct bt_github bt_github;
typedef struct bt_pipeline bt_pipeline;
typedef struct bt_http_auth bt_http_auth;

#define BT_API_MAX_CLEANUPS 16

typedef struct bt_api bt_api;
struct bt_api {
    uv_loop_t *loop;
    bt_config *cfg; /* the effective configuration (PUT /api/config may change parts) */
    bt_log *log;
    bt_store *store;
    bt_metrics *metrics;
    bt_http_server *http;
    const bt_http_auth *auth;      /* the API's credentials (GET /api/whoami); NULL = open */
    int64_t started_ms;            /* wall clock at start-up */
    int stopping;                  /* set by the app when shutdown begins */
    int github_connected;          /* seed 002 /health: set by the GitHub tracker when it is up */
    const bt_workflows *workflows; /* built-in + configured workflows and personas */
    /* The configured agents and the HTTP client, built by the app on first call (so an
     * idle daemon never loads libcurl); NULL functions or results mean "none". */
    bt_agents *(*agents)(struct bt_api *api);
    bt_http_client *(*http_client)(struct bt_api *api);
    /* The resilience wrapper (breakers, limits, statistics; core/resilience.h), built with
     * the agents; NULL function or result = none. */
    bt_resil *(*resil)(struct bt_api *api);
    /* The offline detector's state for /api/status (core/offline.h): a new reference
     * {"mode": "online"|"offline", "reason", "forced", "checked_at", "probes": [...]}, or
     * NULL when there is no detector. */
    json_t *(*offline_status)(struct bt_api *api);
    /* The GitHub tracker (trackers/github.h) when trackers.github is configured, else
     * NULL; the pipeline (core/pipeline.h: webhooks stop items through it), or NULL. */
    bt_github *github;
    bt_pipeline *pipeline;
    void *app; /* the app's own pointer, for the functions above */
    /* Hooks run once when shutdown begins (bt_api_stop): groups cancel their work. */
    struct {
        void (*fn)(void *ud);
        void *ud;
    } stops[BT_API_MAX_CLEANUPS];
    int nstops;
    /* Teardown of route groups' own state (bt_api_on_cleanup), run by bt_api_cleanup. */
    struct {
        void (*fn)(void *ud);
        void *ud;
    } cleanups[BT_API_MAX_CLEANUPS];
    int ncleanups;
};

/* Register every route group. */
int bt_api_register(bt_api *api, bt_error *err);

/* A group that keeps state (store subscriptions, hooks, caches) registers its teardown
 * here; fn(ud) runs once from bt_api_cleanup, which the app calls after the HTTP server
 * has stopped and the store has closed (so no request or store callback can still reach
 * the state), in reverse order of registration. Fails (BT_EINTERNAL) only when more than
 * BT_API_MAX_CLEANUPS are registered; the caller then still owns its state. */
int bt_api_on_cleanup(bt_api *api, void (*fn)(void *ud), void *ud, bt_error *err);
void bt_api_cleanup(bt_api *api);

/* Register fn(ud) to run when shutdown begins (agent runs are cancelled there, so the
 * loop can drain). Fails like bt_api_on_cleanup. */
int bt_api_on_stop(bt_api *api, void (*fn)(void *ud), void *ud, bt_error *err);
/* Run the stop hooks (once; later calls do nothing). Called by the app on SIGTERM. */
void bt_api_stop(bt_api *api);

/* Route groups. */
int bt_api_health_register(bt_api *api, bt_error *err);  /* /health, /ready */
int bt_api_metrics_register(bt_api *api, bt_error *err); /* /metrics */
int bt_api_status_register(bt_api *api, bt_error *err);  /* /api/status, /api/config */
int bt_api_openapi_register(bt_api *api, bt_error *err); /* /openapi.json, /docs */
int bt_api_tasks_register(bt_api *api, bt_error *err);   /* /api/tasks..., /api/agent-runs */
int bt_api_work_register(bt_api *api, bt_error *err);    /* /work/..., /workers, /queue */
int bt_api_events_register(bt_api *api, bt_error *err);  /* /api/events, /ws/workflow-updates */
int bt_api_agents_register(bt_api *api, bt_error *err);  /* /api/agents, /api/models/status */
/* /api/workflows, /api/execute, /api/workflow/..., /api/runs..., /api/approvals... */
int bt_api_workflows_register(bt_api *api, bt_error *err);
int bt_api_webhooks_register(bt_api *api, bt_error *err); /* /webhooks/github (signed) */
int bt_api_ui_register(bt_api *api, bt_error *err);    /* the dashboard: /, /ui/..., /api/whoami */
int bt_api_stats_register(bt_api *api, bt_error *err); /* /api/stats (the dashboard's figures) */

#endif
