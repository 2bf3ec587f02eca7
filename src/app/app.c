/*
 * app.c - wires a running daemon: configuration -> logger -> loop -> store -> HTTP.
 *
 * Start-up (blocking steps are fine here, nothing is serving yet): ignore SIGPIPE
 * (c-stack.md §5.3 item 4), load and validate the configuration, open the logger and
 * register every configured secret with it, open the store (creating and migrating
 * the database), build the auth, start the HTTP server, install SIGTERM/SIGINT.
 * With no API credential configured the server is forced onto loopback, because an
 * unauthenticated API on a public interface would hand anyone the agents.
 *
 * Shutdown (c-stack.md §5.4): the signal starts the HTTP server's graceful shutdown;
 * when it reports done the signal handles are closed and the loop stopped; then the
 * store is closed (it may run the loop to finish pending operations, which must not
 * happen inside a loop callback), the loop drained and closed.
 *
 * Routes are registered by the API layer (src/api/api.h), which sees the daemon's parts
 * through a bt_api context filled here.
 */
#include "app/app.h"

#include "api/api.h"

#include "agents/agents.h"
#include "http/client.h"

#include "base/mem.h"
#include "base/time.h"
#include "config/config.h"
#include "core/engine.h"
#include "core/resilience.h"
#include "core/executor.h"
#include "core/intake.h"
#include "core/pipeline.h"
#include "core/offline.h"
#include "core/reaper.h"
#include "core/workflow.h"
#include "http/auth.h"
#include "http/server.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "store/store.h"
#include "trackers/github.h"
#include "workspace/workspace.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

extern char **environ;

typedef struct bt_app {
    uv_loop_t loop;
    bt_config *cfg;
    bt_log *log;
    bt_store *store;
    bt_http_auth *auth;
    bt_http_server *http;
    bt_metrics *metrics;
    bt_api api; /* the HTTP API's view of the above (src/api/) */
    /* re-queues expired leases (src/core/reaper.h) */
    bt_reaper *reaper;
    /* built on first use (bt_api.agents / http_client): an idle daemon loads no libcurl */
    bt_http_client *http_client;
    int http_client_failed;
    bt_agents *agents;
    /* the workflows and the local executor that runs pending tasks through the engine */
    bt_workflows *workflows;
    bt_engine *engine;
    bt_executor *executor;
    /* the offline detector (core/offline.h); NULL with offline.mode off */
    bt_offline *offline;
    /* workspaces, the preparation/completion stages and the trackers (docs/github.md) */
    bt_workspaces *workspaces;
    bt_pipeline *pipeline;
    bt_github *github;
    int pipeline_started, trackers_down;
    int executor_down, http_down;
    uv_signal_t sigterm, sigint;
    int stopping;
    int64_t started_ms;
} bt_app;

static bt_http_client *app_http_client(bt_api *api)
{
    bt_app *app = api->app;
    if (!app->http_client && !app->http_client_failed && !app->stopping) {
        bt_error err = BT_ERROR_INIT;
        if (bt_http_client_new(&app->loop, NULL, &app->http_client, &err) < 0) {
            bt_log_error(app->log, "HTTP client unavailable", BT_LF_STR("error", err.msg));
            app->http_client_failed = 1;
            app->http_client = NULL;
        }
    }
    return app->http_client;
}

static bt_agents *app_agents(bt_api *api)
{
    bt_app *app = api->app;
    if (!app->agents && !app->stopping) {
        int http = 0;
        for (size_t i = 0; i < app->cfg->agents.len; i++)
            if (app->cfg->agents.items[i].type != BT_AGENT_CLI &&
                app->cfg->agents.items[i].type != BT_AGENT_REPLAY)
                http = 1;
        bt_agent_env env = {.loop = &app->loop,
                            .http = http ? app_http_client(api) : NULL,
                            .log = app->log,
                            .cfg = app->cfg};
        app->agents = bt_agents_new(&env);
    }
    return app->agents;
}

static bt_agents *engine_agents(void *ud)
{
    bt_app *app = ud;
    return app_agents(&app->api);
}

static bt_http_client *engine_http(void *ud)
{
    bt_app *app = ud;
    return app_http_client(&app->api);
}

static int engine_offline(void *ud, const char **reason)
{
    bt_app *app = ud;
    return app->offline ? bt_offline_state(app->offline, reason) : 0;
}

static json_t *app_offline_status(bt_api *api)
{
    bt_app *app = api->app;
    return app->offline ? bt_offline_json(app->offline) : NULL;
}

/* The resilience wrapper (core/resilience.h): the engine's own, built with the agents on
 * first use, so the API reads the very breakers and statistics the engine's agent steps
 * move; its offline mode follows the detector. The engine frees it. */
static bt_resil *app_resil(bt_api *api)
{
    bt_app *app = api->app;
    bt_resil *rs = app->engine && !app->stopping ? bt_engine_resil(app->engine) : NULL;
    if (rs) {
        const char *why = NULL;
        bt_resil_set_offline(rs, engine_offline(app, &why));
    }
    return rs;
}

/* The detector's state changed: the resilience wrapper skips remote agents at once (the
 * engine also asks before every agent step). */
static void on_offline_change(void *ud, int offline, const char *reason)
{
    (void)reason; /* the detector logs it and records offline.changed */
    bt_app *app = ud;
    bt_resil *rs = app->engine && !app->stopping ? bt_engine_resil(app->engine) : NULL;
    if (rs)
        bt_resil_set_offline(rs, offline);
}

/* The offline detector: forced by --offline or offline.mode on, else probing the remote
 * providers of the agents (offline.mode auto); none with offline.mode off. */
static int start_offline(bt_app *app, int force, bt_error *err)
{
    if (!force && app->cfg->offline.mode == BT_OFFLINE_OFF)
        return 0;
    int probe = !force && app->cfg->offline.mode == BT_OFFLINE_AUTO;
    bt_offline_env env = {.loop = &app->loop,
                          .cfg = app->cfg,
                          .agents = probe ? app_agents(&app->api) : NULL,
                          .http = engine_http,
                          .http_ud = app,
                          .store = app->store,
                          .log = app->log,
                          .force = force};
    int rc = bt_offline_new(&env, &app->offline, err);
    if (rc < 0)
        return rc;
    app->api.offline_status = app_offline_status;
    bt_offline_on_change(app->offline, on_offline_change, app);
    bt_offline_start(app->offline);
    return 0;
}

/* The lease owner of this daemon's executor: stable across restarts of the same
 * process on the same host, so a restarted daemon takes back what it held
 * (executor.h). BATON_INSTANCE tells several daemons on one host apart. */
static void owner_id(char *buf, size_t n, char *const *envp)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "localhost");
    const char *inst = NULL;
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, "BATON_INSTANCE=", 15) == 0)
            inst = *e + 15;
    snprintf(buf, n, "local:%s%s%s", host, inst && *inst ? ":" : "", inst ? inst : "");
}

/* ---- trackers, workspaces and the pipeline ---- */

static bt_http_client *tracker_http(void *ud)
{
    bt_app *app = ud;
    return app_http_client(&app->api);
}

static bt_tracker *app_tracker(void *ud, const char *source)
{
    bt_app *app = ud;
    if (app->github && strcmp(source, "github") == 0)
        return bt_github_tracker(app->github);
    return NULL;
}

static void on_intake_done(void *ud, int rc, const bt_error *err, const bt_task *task, bool created)
{
    bt_app *app = ud;
    if (rc < 0)
        bt_log_error(app->log, "cannot store a tracker item", BT_LF_STR("error", err->msg));
    else if (created)
        bt_log_info(app->log, "tracker item queued", BT_LF_STR("task", task->id),
                    BT_LF_STR("identifier", task->identifier ? task->identifier : ""),
                    BT_LF_STR("source", task->source));
}

static void on_tracker_item(const bt_tracker_item *item, void *ud)
{
    bt_app *app = ud;
    if (!app->stopping)
        bt_intake_submit(app->store, app->cfg, item, on_intake_done, app);
}

/* The GitHub tracker when trackers.github.repo is set (polling starts with the
 * daemon), the workspace manager and the pipeline every local run goes through. */
static int start_trackers(bt_app *app, bt_error *err)
{
    bt_workspaces_opts wo = {.loop = &app->loop, .cfg = &app->cfg->workspace, .log = app->log};
    int rc = bt_workspaces_new(&wo, &app->workspaces, err);
    if (rc < 0)
        return bt_error_prefix(err, "workspace.root");
    if (app->cfg->trackers.github.repo && *app->cfg->trackers.github.repo) {
        bt_github_opts go = {.loop = &app->loop,
                             .cfg = &app->cfg->trackers.github,
                             .http = tracker_http,
                             .log = app->log,
                             .on_item = on_tracker_item,
                             .ud = app};
        rc = bt_github_new(&go, &app->github, err);
        if (rc < 0)
            return bt_error_prefix(err, "trackers.github");
        app->api.github = app->github;
        app->api.github_connected = 1;
    }
    bt_pipeline_env pe = {.loop = &app->loop,
                          .store = app->store,
                          .cfg = app->cfg,
                          .log = app->log,
                          .workspaces = app->workspaces,
                          .tracker = app_tracker,
                          .ud = app};
    app->pipeline = bt_pipeline_new(&pe);
    app->api.pipeline = app->pipeline;
    return 0;
}

/* After the HTTP server and the executor are up: reconciliation and polling. */
static int run_trackers(bt_app *app, bt_error *err)
{
    int rc = bt_pipeline_start(app->pipeline, err);
    if (rc == 0)
        app->pipeline_started = 1;
    if (rc == 0 && app->github)
        rc = bt_github_start(app->github, err);
    return rc;
}

static int start_executor(bt_app *app, char *const *envp, bt_error *err)
{
    bt_engine_env ee = {.loop = &app->loop,
                        .store = app->store,
                        .cfg = app->cfg,
                        .workflows = app->workflows,
                        .log = app->log,
                        .agents = engine_agents,
                        .http = engine_http,
                        .offline = engine_offline,
                        .ud = app};
    app->engine = bt_engine_new(&ee);
    char owner[320];
    owner_id(owner, sizeof owner, envp);
    int64_t n = app->cfg->concurrency.local;
    if (n > app->cfg->concurrency.global)
        n = app->cfg->concurrency.global;
    bt_executor_opts xo = {.owner = owner, .concurrency = (int)n, .pipeline = app->pipeline};
    app->executor = bt_executor_new(app->engine, app->store, app->cfg, app->log, &xo);
    return bt_executor_start(app->executor, err);
}

static int app_routes(bt_app *app, bt_error *err)
{
    app->api.app = app;
    app->api.agents = app_agents;
    app->api.http_client = app_http_client;
    app->api.resil = app_resil;
    app->api.loop = &app->loop;
    app->api.cfg = app->cfg;
    app->api.log = app->log;
    app->api.store = app->store;
    app->api.metrics = app->metrics;
    app->api.http = app->http;
    app->api.auth = app->auth;
    app->api.started_ms = app->started_ms;
    app->api.workflows = app->workflows;
    return bt_api_register(&app->api, err);
}

/* ---- start-up helpers ---- */

static void add_secret(const char *value, void *ud)
{
    bt_log_add_secret(ud, value);
}

static int is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0 ||
           strcasecmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0;
}

static int build_auth(bt_app *app, bt_error *err)
{
    app->auth = bt_http_auth_new();
    const bt_config_server *s = &app->cfg->server;
    for (size_t i = 0; i < s->tokens.len; i++) {
        const bt_config_token *t = &s->tokens.items[i];
        int rc = bt_http_auth_add_token(app->auth, t->name, t->token, t->scope, err);
        if (rc < 0)
            return bt_error_prefix(err, "server.tokens[%zu]", i);
    }
    if (s->jwt_secret) {
        int rc = bt_http_auth_set_jwt_secret(app->auth, s->jwt_secret, err);
        if (rc < 0)
            return bt_error_prefix(err, "server.jwt_secret");
    }
    return 0;
}

/* Suspended SSE clients hold fds; the default soft limit (1024) would cap them well
 * below the connection limit (c-stack.md §5.1 item 9). */
static void raise_nofile(bt_log *log)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t want = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
    if (want <= rl.rlim_cur)
        return;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        bt_log_warn(log, "cannot raise the open-file limit", BT_LF_INT("limit", want));
}

/* ---- shutdown ---- */

static void stop_loop_when_down(bt_app *app)
{
    if (!app->http_down || !app->executor_down || !app->trackers_down)
        return;
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_stop(&app->loop); /* the store may hold handles; it is closed outside the loop */
}

static void on_http_down(bt_http_server *srv, void *ud)
{
    (void)srv;
    bt_app *app = ud;
    app->http_down = 1;
    stop_loop_when_down(app);
}

static void on_pipeline_down(void *ud)
{
    bt_app *app = ud;
    app->pipeline_started = 0;
    app->executor_down = 1;
    stop_loop_when_down(app);
}

/* Runs were interrupted and their tasks released (a restart resumes them); then the
 * pipeline's after_run hooks and write-backs finish. */
static void on_executor_down(void *ud)
{
    bt_app *app = ud;
    if (app->pipeline && app->pipeline_started) {
        bt_pipeline_stop(app->pipeline, on_pipeline_down, app);
        return;
    }
    app->executor_down = 1;
    stop_loop_when_down(app);
}

static void on_trackers_down(void *ud)
{
    bt_app *app = ud;
    app->trackers_down = 1;
    stop_loop_when_down(app);
}

static void on_signal(uv_signal_t *s, int signum)
{
    bt_app *app = s->data;
    if (app->stopping) {
        bt_log_warn(app->log, "shutdown already in progress", BT_LF_INT("signal", signum));
        return;
    }
    app->stopping = 1;
    app->api.stopping = 1;
    bt_api_stop(&app->api); /* cancel agent runs so the loop can drain */
    bt_log_info(app->log, "shutting down",
                BT_LF_STR("signal", signum == SIGINT ? "SIGINT" : "SIGTERM"));
    bt_reaper_stop(app->reaper);
    app->reaper = NULL;
    bt_offline_free(app->offline); /* no more probes; runs still ending see online */
    app->offline = NULL;
    if (app->executor)
        bt_executor_stop(app->executor, on_executor_down, app);
    else
        on_executor_down(app);
    if (app->github)
        bt_github_stop(app->github, on_trackers_down, app);
    else
        app->trackers_down = 1;
    bt_http_server_shutdown(app->http, on_http_down, app);
}

static void report_leftover(uv_handle_t *h, void *ud)
{
    bt_app *app = ud;
    bt_log_error(app->log, "handle left open at exit",
                 BT_LF_STR("type", uv_handle_type_name(h->type)));
}

static void close_leftover(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int finish(bt_app *app, int rc)
{
    if (app->http && bt_http_server_port(app->http) && !app->stopping) {
        /* Start-up failed after listening: stop cleanly. */
        app->stopping = 1;
        bt_http_server_shutdown(app->http, NULL, NULL);
        uv_run(&app->loop, UV_RUN_DEFAULT);
    }
    bt_reaper_stop(app->reaper);
    app->reaper = NULL;
    if (app->executor && !app->executor_down) {
        /* start-up failed after the executor started */
        bt_executor_stop(app->executor, on_executor_down, app);
        while (!app->executor_down && uv_run(&app->loop, UV_RUN_ONCE))
            ;
    }
    if (app->pipeline_started) {
        bt_pipeline_stop(app->pipeline, on_pipeline_down, app);
        while (app->pipeline_started && uv_run(&app->loop, UV_RUN_ONCE))
            ;
    }
    if (app->github && !app->trackers_down) {
        bt_github_stop(app->github, on_trackers_down, app);
        while (!app->trackers_down && uv_run(&app->loop, UV_RUN_ONCE))
            ;
    }
    bt_executor_free(app->executor);
    app->executor = NULL;
    bt_offline_free(app->offline); /* its cancelled probes come back in the loop below */
    app->offline = NULL;
    bt_engine_free(app->engine); /* unsubscribes from the store; memory after the loop runs */
    app->engine = NULL;
    bt_store_close(app->store);
    app->store = NULL;
    uv_run(&app->loop, UV_RUN_DEFAULT);
    if (app->workspaces) {
        bt_workspaces_cancel_all(app->workspaces);
        uv_run(&app->loop, UV_RUN_DEFAULT);
    }
    bt_api_cleanup(&app->api);   /* route groups' state: nothing can reach it any more */
    bt_agents_free(app->agents); /* every run has ended: the loop ran dry above */
    app->agents = NULL;
    if (app->http_client) {
        bt_http_client_close(app->http_client);
        app->http_client = NULL;
        uv_run(&app->loop, UV_RUN_DEFAULT);
    }
    bt_pipeline_free(app->pipeline);
    bt_github_free(app->github);
    bt_workspaces_free(app->workspaces);
    bt_http_server_free(app->http);
    bt_http_auth_free(app->auth);
    bt_metrics_free(app->metrics);
    bt_workflows_free(app->workflows);
    if (uv_loop_close(&app->loop) != 0) {
        uv_walk(&app->loop, report_leftover, app);
        uv_walk(&app->loop, close_leftover, NULL);
        uv_run(&app->loop, UV_RUN_DEFAULT);
        uv_loop_close(&app->loop);
        if (rc == 0)
            rc = BT_EINTERNAL;
    }
    bt_log_free(app->log);
    bt_config_free(app->cfg);
    return rc;
}

int bt_app_serve(const bt_app_options *opts, bt_error *err)
{
    bt_app_options o = BT_APP_OPTIONS_INIT;
    if (opts)
        o = *opts;
    FILE *out = o.out ? o.out : stdout;
    char *const *envp = o.envp ? o.envp : environ;
    signal(SIGPIPE, SIG_IGN);

    bt_app app_s = {0}, *app = &app_s;
    bt_config_problems probs = {0};
    const char *path = bt_config_find_path(o.config_path, envp);
    int rc = bt_config_load(path, envp, &app->cfg, &probs, err);
    if (rc < 0) {
        bt_config_problems_print(&probs, stderr);
        bt_config_problems_free(&probs);
        return rc;
    }
    bt_config_problems_free(&probs);
    rc = bt_workflows_load(app->cfg, NULL, &app->workflows, &probs, err);
    if (rc < 0) {
        bt_config_problems_print(&probs, stderr);
        bt_config_problems_free(&probs);
        bt_config_free(app->cfg);
        return rc;
    }
    bt_config_problems_free(&probs);

    if (app->cfg->log.file) {
        app->log = bt_log_open(app->cfg->log.file, (bt_log_level)app->cfg->log.level);
        if (!app->log) {
            rc = bt_errorf(err, BT_EIO, "cannot open log.file '%s' for appending",
                           app->cfg->log.file);
            bt_config_free(app->cfg);
            return rc;
        }
    } else {
        app->log = bt_log_new(stderr, (bt_log_level)app->cfg->log.level);
    }
    bt_config_each_secret(app->cfg, add_secret, app->log);
    raise_nofile(app->log);
    uv_loop_init(&app->loop);
    app->started_ms = bt_time_wall_ms();
    app->metrics = bt_metrics_new();

    const char *store_url = o.store_url ? o.store_url : app->cfg->store.url;
    bt_store_options so = {0};
    so.log = app->log;
    so.default_max_attempts = (int32_t)app->cfg->queue.max_attempts;
    so.backoff_base_ms = app->cfg->queue.backoff_base_ms;
    so.backoff_max_ms = app->cfg->queue.backoff_max_ms;
    rc = bt_store_open(&app->loop, store_url, &so, &app->store, err);
    if (rc < 0) {
        bt_error_prefix(err, "opening the store '%s'", store_url);
        return finish(app, rc);
    }

    rc = build_auth(app, err);
    if (rc < 0)
        return finish(app, rc);

    const char *host = o.host ? o.host : app->cfg->server.host;
    if (!host)
        host = "127.0.0.1";
    int open_api = !bt_http_auth_enabled(app->auth);
    if (open_api && !is_loopback(host)) {
        fprintf(out,
                "baton: no API tokens configured (server.tokens / server.jwt_secret): binding to "
                "127.0.0.1 instead of %s. Configure a token to listen on other interfaces.\n",
                host);
        host = "127.0.0.1";
    }
    bt_http_server_options ho = {0};
    ho.host = host;
    ho.port = (uint16_t)(o.port >= 0 ? o.port : app->cfg->server.port);
    ho.max_body = app->cfg->server.body_limit > 0 ? (size_t)app->cfg->server.body_limit : 0;
    ho.connection_timeout_s = app->cfg->server.request_timeout_ms > 0
                                  ? (unsigned)((app->cfg->server.request_timeout_ms + 999) / 1000)
                                  : 0;
    ho.log = app->log;
    ho.rate_requests = app->cfg->server.rate_limit.requests;
    ho.rate_per_ms = app->cfg->server.rate_limit.per_ms;
    ho.rate_burst = app->cfg->server.rate_limit.burst;
    if (!open_api) {
        ho.auth = bt_http_auth_check;
        ho.auth_ud = app->auth;
        ho.identify = bt_http_auth_identity;
    }
    app->http = bt_http_server_new(&app->loop, &ho);
    rc = start_trackers(app, err);
    if (rc == 0)
        rc = app_routes(app, err);
    if (rc == 0)
        rc = start_offline(app, o.offline, err);
    if (rc == 0)
        rc = bt_http_server_start(app->http, err);
    if (rc == 0)
        rc = bt_reaper_start(&app->loop, app->store, app->log,
                             bt_reaper_default_interval(app->cfg->queue.lease_ms),
                             app->cfg->workers.offline_after_ms, &app->reaper, err);
    if (rc == 0 && app->cfg->concurrency.local > 0)
        rc = start_executor(app, envp, err);
    if (rc == 0)
        rc = run_trackers(app, err);
    if (rc < 0)
        return finish(app, rc);

    uv_signal_init(&app->loop, &app->sigterm);
    uv_signal_init(&app->loop, &app->sigint);
    app->sigterm.data = app->sigint.data = app;
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);

    const char *h = bt_http_server_host(app->http);
    int v6 = strchr(h, ':') != NULL;
    fprintf(out, "baton: listening on http://%s%s%s:%u (store %s)%s\n", v6 ? "[" : "", h,
            v6 ? "]" : "", bt_http_server_port(app->http), bt_store_backend(app->store),
            open_api ? "; no API tokens configured: loopback only, API open to local users" : "");
    fflush(out);
    bt_log_info(app->log, "serving", BT_LF_STR("host", h),
                BT_LF_INT("port", bt_http_server_port(app->http)),
                BT_LF_STR("store", bt_store_backend(app->store)), BT_LF_BOOL("auth", !open_api));

    uv_run(&app->loop, UV_RUN_DEFAULT);
    bt_log_info(app->log, "stopped");
    return finish(app, 0);
}
