/*
 * metrics.c - GET /metrics: Prometheus text exposition 0.0.4 (docs/metrics.md lists
 * every family). Open by default; scope read when server.metrics_public is false.
 *
 * Where the numbers come from:
 *   - the HTTP server's per-route rows (bt_http_server_metrics): api_request_rate
 *     (seed 001) and the http_request_duration_seconds summary;
 *   - the store, asynchronously: the scrape suspends, reads task stats and the worker
 *     list, sets the baton_queue_tasks / baton_workers gauges, then renders. (Registry
 *     collectors run synchronously inside bt_metrics_render, so they cannot wait for
 *     the store; they only cover what is synchronous: connections, process figures.);
 *   - the store's event stream (bt_store_subscribe): task.status events count claims,
 *     retries and finished tasks, so no queue code has to know about metrics;
 *   - the store's op hook (bt_store_set_op_hook): baton_store_op_duration_seconds;
 *   - /proc/self for process_* (the standard names of Prometheus client libraries).
 * workflow_execution_duration and agent_task_count (seed 001) come from the same event
 * stream: run.updated events of runs that reached their end, step.finished events of
 * steps an agent ran. So do the resilience families (core/resilience.h): agent.call
 * gives orchestrator_agent_calls_total (seed 004's name, which its planner reads) and
 * orchestrator_agent_latency_seconds; agent.breaker gives baton_agent_circuit_state and
 * baton_agent_circuit_transitions_total; agent.rate_limited gives
 * baton_agent_rate_limited_total and baton_agent_rate_limit_wait_seconds_total;
 * offline.changed (and, at scrape time, the offline detector's own state) gives
 * baton_offline. Label values are bounded: configured agent and provider names plus at
 * most LABEL_CAP others seen in events; later unknown names count under "_other".
 *
 * State (the family handles) is owned by this file, freed by bt_api_cleanup.
 */
#include "api/api.h"

#include "base/map.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "http/server.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "store/store.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Distinct agent (and provider) label values beyond the configured names. */
#define LABEL_CAP   256
#define LABEL_OTHER "_other"

typedef struct meta_metrics {
    bt_api *api;
    int sub; /* store subscription id, or < 0 */
    bt_metric *requests, *inflight, *streams;
    bt_metric *queue_tasks, *queue_ready, *claims, *retries, *finished;
    bt_metric *workers, *db_conns, *store_op;
    bt_metric *wf_duration, *agent_tasks, *build_info;
    bt_metric *agent_calls, *agent_latency, *circuit_state, *circuit_moves;
    bt_metric *rate_limited, *rate_wait, *offline;
    bt_metric *rss, *vsz, *cpu, *fds, *max_fds, *start_time;
    bt_map *agent_labels, *provider_labels; /* label values in use (values unused) */
    size_t agent_extra, provider_extra;     /* of which not configured */
    double start_time_s;
} meta_metrics;

/* ---- resilience events ---- */

/* The label value for a name from an event: itself while the family's label set is
 * bounded, else LABEL_OTHER. NULL for a missing or empty name. */
static const char *bounded(bt_map *seen, size_t *extra, const char *name)
{
    if (!name || !*name)
        return NULL;
    if (bt_map_has(seen, name))
        return name;
    if (*extra >= LABEL_CAP)
        return LABEL_OTHER;
    bt_map_set(seen, name, NULL);
    (*extra)++;
    return name;
}

static const char *one_of(const char *v, const char *const *allowed, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        if (strcmp(v, allowed[i]) == 0)
            return allowed[i];
    return NULL;
}

static const char *const outcomes[] = {"success", "failure", "cancelled", "rejected", "skipped"};
static const char *const breaker_states[] = {"closed", "half_open", "open"}; /* gauge values */

/* 1 when the event was one of the resilience layer's. */
static int on_resilience_event(meta_metrics *m, const bt_event *ev)
{
    json_t *d = ev->data;
    const char *name = json_string_value(json_object_get(d, "agent"));
    if (strcmp(ev->type, "agent.call") == 0) {
        const char *agent = bounded(m->agent_labels, &m->agent_extra, name);
        const char *outcome = json_string_value(json_object_get(d, "outcome"));
        const char *known = one_of(outcome, outcomes, sizeof outcomes / sizeof outcomes[0]);
        if (!agent)
            return 1;
        bt_metric_inc(m->agent_calls, 1, agent, known ? known : "other");
        json_t *ms = json_object_get(d, "duration_ms");
        if (json_is_number(ms) && known &&
            (strcmp(known, "success") == 0 || strcmp(known, "failure") == 0))
            bt_metric_observe(m->agent_latency, json_number_value(ms) / 1000.0, agent);
        return 1;
    }
    if (strcmp(ev->type, "agent.breaker") == 0) {
        const char *agent = bounded(m->agent_labels, &m->agent_extra, name);
        const char *to = one_of(json_string_value(json_object_get(d, "to")), breaker_states,
                                sizeof breaker_states / sizeof breaker_states[0]);
        if (!agent || !to)
            return 1;
        for (size_t i = 0; i < sizeof breaker_states / sizeof breaker_states[0]; i++)
            if (to == breaker_states[i])
                bt_metric_set(m->circuit_state, (double)i, agent);
        bt_metric_inc(m->circuit_moves, 1, agent, to);
        return 1;
    }
    if (strcmp(ev->type, "agent.rate_limited") == 0) {
        const char *agent = bounded(m->agent_labels, &m->agent_extra, name);
        const char *provider = bounded(m->provider_labels, &m->provider_extra,
                                       json_string_value(json_object_get(d, "provider")));
        if (!agent)
            return 1;
        bt_metric_inc(m->rate_limited, 1, agent, provider ? provider : "");
        json_t *ms = json_object_get(d, "wait_ms");
        if (json_is_number(ms) && json_number_value(ms) > 0)
            bt_metric_inc(m->rate_wait, json_number_value(ms) / 1000.0);
        return 1;
    }
    if (strcmp(ev->type, "offline.changed") == 0) {
        json_t *off = json_object_get(d, "offline");
        if (json_is_boolean(off))
            bt_metric_set(m->offline, json_is_true(off) ? 1.0 : 0.0);
        return 1;
    }
    return 0;
}

/* ---- event-derived counters ---- */

static void on_event(void *ud, const bt_event *ev)
{
    meta_metrics *m = ud;
    if (strncmp(ev->type, "agent.", 6) == 0 || strncmp(ev->type, "offline.", 8) == 0) {
        if (on_resilience_event(m, ev))
            return;
    }
    if (strcmp(ev->type, "run.updated") == 0) {
        /* a run reaching its end: how long the workflow took (seed 001) */
        json_t *run = json_object_get(ev->data, "run");
        const char *st = json_string_value(json_object_get(run, "status"));
        const char *fin = json_string_value(json_object_get(run, "finished_at"));
        const char *cre = json_string_value(json_object_get(run, "created_at"));
        int64_t a = 0, b = 0;
        if (st && fin && cre && bt_time_parse_iso(cre, &a, NULL) == 0 &&
            bt_time_parse_iso(fin, &b, NULL) == 0 && b >= a &&
            (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
             strcmp(st, "cancelled") == 0))
            bt_metric_observe(m->wf_duration, (double)(b - a) / 1000.0,
                              json_string_value(json_object_get(run, "workflow")), st);
        return;
    }
    if (strcmp(ev->type, "step.finished") == 0) {
        json_t *step = json_object_get(ev->data, "step");
        const char *agent = json_string_value(json_object_get(step, "agent"));
        const char *st = json_string_value(json_object_get(step, "status"));
        if (agent && *agent && st && strcmp(st, "skipped") != 0)
            bt_metric_inc(m->agent_tasks, 1, agent, st);
        return;
    }
    if (strcmp(ev->type, "task.status") != 0)
        return;
    const char *from = json_string_value(json_object_get(ev->data, "from"));
    const char *to = json_string_value(json_object_get(ev->data, "to"));
    if (!from || !to)
        return;
    if (strcmp(to, "in_progress") == 0) {
        bt_metric_inc(m->claims, 1);
    } else if (strcmp(from, "in_progress") == 0 && strcmp(to, "pending") == 0) {
        /* A retry schedules the next attempt; a release (hand-back) does not. */
        json_t *task = json_object_get(ev->data, "task");
        if (json_is_string(json_object_get(task, "next_attempt_at")))
            bt_metric_inc(m->retries, 1);
    }
    if (strcmp(to, "completed") == 0 || strcmp(to, "failed") == 0 || strcmp(to, "cancelled") == 0)
        bt_metric_inc(m->finished, 1, to);
}

static void on_store_op(void *ud, const char *op, double seconds)
{
    meta_metrics *m = ud;
    bt_metric_observe(m->store_op, seconds, op);
}

/* ---- synchronous collectors (run inside bt_metrics_render) ---- */

typedef struct http_rows {
    meta_metrics *m;
    bt_strbuf *summary; /* NULL while filling api_request_rate */
} http_rows;

static void label_value(bt_strbuf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            bt_strbuf_addf(b, "\\%c", *v);
        else if (*v == '\n')
            bt_strbuf_addstr(b, "\\n");
        else
            bt_strbuf_addch(b, *v);
    }
}

static void on_http_row(void *ud, const char *method, const char *pattern, int status,
                        uint64_t count, double seconds)
{
    http_rows *h = ud;
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    if (!h->summary) {
        bt_metric_inc(h->m->requests, (double)count, pattern, method, st);
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        bt_strbuf_addstr(h->summary, pass ? "http_request_duration_seconds_count{route=\""
                                          : "http_request_duration_seconds_sum{route=\"");
        label_value(h->summary, pattern);
        bt_strbuf_addstr(h->summary, "\",method=\"");
        label_value(h->summary, method);
        bt_strbuf_addf(h->summary, "\",status=\"%s\"} ", st);
        if (pass)
            bt_strbuf_addf(h->summary, "%llu\n", (unsigned long long)count);
        else
            bt_strbuf_addf(h->summary, "%.9g\n", seconds);
    }
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

static void collect(bt_metrics *reg, void *ud)
{
    (void)reg;
    meta_metrics *m = ud;
    bt_api *api = m->api;

    bt_metric_reset(m->requests);
    http_rows h = {m, NULL};
    bt_http_server_metrics(api->http, on_http_row, &h);
    bt_metric_set(m->inflight, (double)bt_http_server_active_requests(api->http));
    bt_metric_set(m->streams, (double)bt_http_server_active_streams(api->http));
    if (api->store)
        bt_metric_set(m->db_conns, bt_store_connections(api->store), bt_store_backend(api->store));

    size_t rss = 0;
    if (uv_resident_set_memory(&rss) == 0)
        bt_metric_set(m->rss, (double)rss);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long pages = 0;
        if (fscanf(f, "%lu", &pages) == 1)
            bt_metric_set(m->vsz, (double)pages * (double)sysconf(_SC_PAGESIZE));
        fclose(f);
    }
    uv_rusage_t ru;
    if (uv_getrusage(&ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        bt_metric_reset(m->cpu);
        bt_metric_inc(m->cpu, cpu);
    }
    int fds = count_fds();
    if (fds >= 0)
        bt_metric_set(m->fds, fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        bt_metric_set(m->max_fds, rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
    bt_metric_set(m->start_time, m->start_time_s);
    /* The detector knows the mode from start-up on (an event only marks a change). */
    json_t *off = api->offline_status ? api->offline_status(api) : NULL;
    const char *mode = json_string_value(json_object_get(off, "mode"));
    if (mode)
        bt_metric_set(m->offline, strcmp(mode, "offline") == 0 ? 1.0 : 0.0);
    json_decref(off);
}

/* ---- the scrape ---- */

typedef struct scrape {
    meta_metrics *m;
    bt_http_req *req;
    int pending;
} scrape;

static void scrape_finish(scrape *sc)
{
    if (--sc->pending > 0)
        return;
    bt_strbuf out = BT_STRBUF_INIT;
    bt_metrics_render(sc->m->api->metrics, &out);
    /* The HTTP server keeps a count and a total per row: a summary without quantiles. */
    bt_strbuf_addstr(&out, "# HELP http_request_duration_seconds Time to answer HTTP requests, "
                           "by route pattern, method and status.\n"
                           "# TYPE http_request_duration_seconds summary\n");
    http_rows h = {sc->m, &out};
    bt_http_server_metrics(sc->m->api->http, on_http_row, &h);
    bt_http_respond(sc->req, 200, "text/plain; version=0.0.4; charset=utf-8", out.buf, out.len);
    bt_strbuf_release(&out);
    free(sc);
}

static void on_stats(void *ud, int rc, const bt_error *err, const bt_task_stats *st)
{
    scrape *sc = ud;
    meta_metrics *m = sc->m;
    if (rc < 0) {
        bt_log_warn(m->api->log, "metrics: cannot read queue stats", BT_LF_STR("error", err->msg));
    } else {
        for (int i = 0; i < BT_TASK__COUNT; i++)
            bt_metric_set(m->queue_tasks, (double)st->count[i],
                          bt_task_status_name((bt_task_status)i));
        bt_metric_set(m->queue_ready, (double)st->ready);
    }
    scrape_finish(sc);
}

static void on_workers(void *ud, int rc, const bt_error *err, bt_worker *const *ws, size_t n)
{
    scrape *sc = ud;
    meta_metrics *m = sc->m;
    if (rc < 0) {
        bt_log_warn(m->api->log, "metrics: cannot list workers", BT_LF_STR("error", err->msg));
    } else {
        int64_t now = bt_time_wall_ms();
        int64_t fresh = m->api->cfg->workers.offline_after_ms > 0
                            ? m->api->cfg->workers.offline_after_ms
                            : 120000;
        double healthy = 0, unhealthy = 0;
        for (size_t i = 0; i < n; i++) {
            if (now - ws[i]->last_seen <= fresh)
                healthy++;
            else
                unhealthy++;
        }
        bt_metric_set(m->workers, healthy, "healthy");
        bt_metric_set(m->workers, unhealthy, "unhealthy");
    }
    scrape_finish(sc);
}

static void h_metrics(bt_http_req *req, void *ud)
{
    meta_metrics *m = ud;
    scrape *sc = bt_xcalloc(1, sizeof *sc);
    sc->m = m;
    sc->req = req;
    sc->pending = 1;
    bt_http_req_suspend(req);
    if (m->api->store) {
        sc->pending += 2;
        bt_store_task_stats(m->api->store, on_stats, sc);
        bt_store_worker_list(m->api->store, on_workers, sc);
    }
    scrape_finish(sc);
}

static void metrics_free(meta_metrics *m)
{
    bt_map_free(m->agent_labels);
    bt_map_free(m->provider_labels);
    free(m);
}

static void metrics_cleanup(void *ud)
{
    metrics_free(ud);
}

/* The resilience families and their starting series. 0, or -1 when a family exists
 * with another type. */
static int register_resilience(bt_metrics *reg, meta_metrics *m, const bt_config *cfg)
{
    static const double lat_buckets[] = {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
    m->agent_calls = bt_metrics_counter(reg, "orchestrator_agent_calls_total",
                                        "Agent calls by agent and outcome: success, failure, "
                                        "cancelled, rejected (breaker open), skipped (offline or "
                                        "unusable) (seed 004)",
                                        "agent,outcome");
    m->agent_latency =
        bt_metrics_histogram(reg, "orchestrator_agent_latency_seconds",
                             "Duration of agent calls that ran (succeeded or failed), by agent",
                             "agent", lat_buckets, sizeof lat_buckets / sizeof lat_buckets[0]);
    m->circuit_state = bt_metrics_gauge(reg, "baton_agent_circuit_state",
                                        "Circuit breaker state after the agent's last transition: "
                                        "0 closed, 1 half_open, 2 open",
                                        "agent");
    m->circuit_moves =
        bt_metrics_counter(reg, "baton_agent_circuit_transitions_total",
                           "Circuit breaker transitions by agent and new state", "agent,to");
    m->rate_limited = bt_metrics_counter(reg, "baton_agent_rate_limited_total",
                                         "Agent calls that waited for a rate limit (the agent's "
                                         "own or its provider's), by agent and provider",
                                         "agent,provider");
    m->rate_wait = bt_metrics_counter(reg, "baton_agent_rate_limit_wait_seconds_total",
                                      "Time agent calls spent queued for rate limits", NULL);
    m->offline =
        bt_metrics_gauge(reg, "baton_offline",
                         "1 while offline mode is on (remote agents are skipped), else 0", NULL);
    if (!m->agent_calls || !m->agent_latency || !m->circuit_state || !m->circuit_moves ||
        !m->rate_limited || !m->rate_wait || !m->offline)
        return -1;
    m->agent_labels = bt_map_new(NULL);
    m->provider_labels = bt_map_new(NULL);
    for (size_t i = 0; i < cfg->agents.len; i++) {
        const char *name = cfg->agents.items[i].name;
        bt_map_set(m->agent_labels, name, NULL);
        /* zeros from the first scrape, so rates of an agent without calls are 0, not gaps */
        bt_metric_inc(m->agent_calls, 0, name, "success");
        bt_metric_inc(m->agent_calls, 0, name, "failure");
    }
    for (size_t i = 0; i < cfg->providers.len; i++)
        bt_map_set(m->provider_labels, cfg->providers.items[i].name, NULL);
    bt_metric_inc(m->rate_wait, 0);
    bt_metric_set(m->offline, cfg->offline.mode == BT_OFFLINE_ON ? 1.0 : 0.0);
    return 0;
}

int bt_api_metrics_register(bt_api *api, bt_error *err)
{
    bt_metrics *reg = api->metrics;
    if (!reg)
        return 0; /* metrics disabled by the app */
    meta_metrics *m = bt_xcalloc(1, sizeof *m);
    m->api = api;
    m->sub = -1;
    m->start_time_s = (double)api->started_ms / 1000.0;

    static const double op_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                        0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
    static const double wf_buckets[] = {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200};
    m->requests = bt_metrics_counter(reg, "api_request_rate",
                                     "HTTP requests served, by route pattern, method and status "
                                     "(seed 001; use rate() for a rate)",
                                     "route,method,status");
    m->inflight = bt_metrics_gauge(reg, "http_requests_in_flight",
                                   "HTTP requests received and not yet answered", NULL);
    m->streams = bt_metrics_gauge(reg, "http_sse_streams", "Open server-sent event streams", NULL);
    m->queue_tasks = bt_metrics_gauge(reg, "baton_queue_tasks", "Work items by status", "status");
    m->queue_ready = bt_metrics_gauge(reg, "baton_queue_ready",
                                      "Pending work items claimable now (not waiting for a retry "
                                      "backoff)",
                                      NULL);
    m->claims = bt_metrics_counter(reg, "baton_queue_claims_total",
                                   "Work items claimed (each claim is one attempt)", NULL);
    m->retries = bt_metrics_counter(reg, "baton_queue_retries_total",
                                    "Failed attempts sent back to the queue with a backoff", NULL);
    m->finished = bt_metrics_counter(reg, "baton_queue_finished_total",
                                     "Work items that reached a final status", "status");
    m->workers = bt_metrics_gauge(reg, "baton_workers",
                                  "Known remote workers by health (seen within "
                                  "workers.offline_after or not)",
                                  "health");
    m->db_conns = bt_metrics_gauge(reg, "database_connections", "Open store connections (seed 001)",
                                   "backend");
    m->store_op = bt_metrics_histogram(reg, "baton_store_op_duration_seconds",
                                       "Store operation latency from call to callback (writes "
                                       "include their durable commit)",
                                       "op", op_buckets, sizeof op_buckets / sizeof op_buckets[0]);
    m->wf_duration = bt_metrics_histogram(
        reg, "workflow_execution_duration", "Workflow run duration in seconds (seed 001)",
        "workflow,status", wf_buckets, sizeof wf_buckets / sizeof wf_buckets[0]);
    m->agent_tasks =
        bt_metrics_counter(reg, "agent_task_count",
                           "Agent step executions by agent and outcome (seed 001)", "agent,status");
    m->build_info =
        bt_metrics_gauge(reg, "baton_build_info", "Always 1; the version as a label", "version");
    m->rss = bt_metrics_gauge(reg, "process_resident_memory_bytes", "Resident memory size", NULL);
    m->vsz = bt_metrics_gauge(reg, "process_virtual_memory_bytes", "Virtual memory size", NULL);
    m->cpu = bt_metrics_counter(reg, "process_cpu_seconds_total", "User and system CPU time", NULL);
    m->fds = bt_metrics_gauge(reg, "process_open_fds", "Open file descriptors", NULL);
    m->max_fds = bt_metrics_gauge(reg, "process_max_fds", "Open file descriptor limit", NULL);
    m->start_time = bt_metrics_gauge(reg, "process_start_time_seconds",
                                     "Start time since the Unix epoch", NULL);
    if (!m->requests || !m->inflight || !m->streams || !m->queue_tasks || !m->queue_ready ||
        !m->claims || !m->retries || !m->finished || !m->workers || !m->db_conns || !m->store_op ||
        !m->wf_duration || !m->agent_tasks || !m->build_info || !m->rss || !m->vsz || !m->cpu ||
        !m->fds || !m->max_fds || !m->start_time || register_resilience(reg, m, api->cfg) < 0) {
        metrics_free(m);
        return bt_errorf(err, BT_EINTERNAL,
                         "a metric family is already registered with another type");
    }
    bt_metric_set(m->build_info, 1, BATON_VERSION);
    /* Both labels from the first scrape, so dashboards see zeros rather than gaps. */
    bt_metric_inc(m->claims, 0);
    bt_metric_inc(m->retries, 0);
    bt_metric_set(m->workers, 0, "healthy");
    bt_metric_set(m->workers, 0, "unhealthy");

    int rc = bt_api_on_cleanup(api, metrics_cleanup, m, err);
    if (rc < 0) {
        metrics_free(m);
        return rc;
    }
    bt_metrics_on_collect(reg, collect, m);
    if (api->store) {
        m->sub = bt_store_subscribe(api->store, on_event, m);
        if (m->sub < 0)
            bt_log_warn(api->log, "metrics: no store subscription left; claim and retry counters "
                                  "stay at 0");
        bt_store_set_op_hook(api->store, on_store_op, m);
    }

    bt_http_route route = {"GET",
                           "/metrics",
                           api->cfg->server.metrics_public ? BT_HTTP_SCOPE_NONE
                                                           : BT_HTTP_SCOPE_READ,
                           h_metrics,
                           m,
                           0,
                           BT_HTTP_ROUTE_QUIET};
    return bt_http_server_route(api->http, &route, err);
}
