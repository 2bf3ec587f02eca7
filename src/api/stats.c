/*
 * stats.c - GET /api/stats (scope read): tokens, spend, steps and run outcomes over the
 * last `days` UTC days (1-90, default 14), optionally of one `project`, for the
 * dashboard's cost and agent pages (docs/api.md "Dashboard" has the shape).
 *
 * The database sums and groups (bt_store_usage returns rows per day x project x agent
 * and per day or hour x project x status); this file turns those rows into the answer:
 * every day of the range and each of the last 48 hours present (zero-filled, oldest
 * first), totals, per project and per agent (by cost descending, then name; a null
 * project or agent after the names), and success_rate = completed / (completed + failed),
 * null when both are 0. Token, cost and step figures are finished steps (by finish
 * time); steps without an agent (shell, git, http...) count in totals, by_day and
 * by_project but not by_agent. Run figures: `runs` (`started` per hour) are runs created
 * in the range, completed / failed / cancelled are runs that finished in it with that
 * status.
 */
#include "api/api.h"
#include "api/request.h"

#include "base/mem.h"
#include "base/time.h"
#include "http/server.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS            86400000LL
#define HOUR_MS           3600000LL
#define STATS_HOURS       48
#define STATS_MAX_DAYS    90
#define STATS_PROJECT_MAX 200

/* One line of figures: a day, an hour, a project, an agent or the totals. */
typedef struct tally {
    const char *name; /* project or agent (borrowed from the usage rows); NULL = none */
    int64_t tokens_in, tokens_out, steps, failed_steps, duration_ms;
    double cost_usd;
    int64_t runs, completed, failed, cancelled;
} tally;

typedef struct stats_req {
    bt_http_req *req;
    int64_t now, since, hours_since;
    int days;
    char *project;
} stats_req;

/* ---------------------------------------------------------------------------------
 * Adding rows up.
 */
static void add_steps(tally *t, const bt_usage_steps *r)
{
    t->tokens_in += r->tokens_in;
    t->tokens_out += r->tokens_out;
    t->cost_usd += r->cost_usd;
    t->steps += r->steps;
    t->failed_steps += r->failed;
    t->duration_ms += r->duration_ms;
}

static void add_runs(tally *t, const bt_usage_runs *r)
{
    t->runs += r->created;
    if (r->status == BT_RUN_COMPLETED)
        t->completed += r->finished;
    else if (r->status == BT_RUN_FAILED)
        t->failed += r->finished;
    else if (r->status == BT_RUN_CANCELLED)
        t->cancelled += r->finished;
}

static bool same_name(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The tally of name in v (added, zeroed, when new). v has room for every row. */
static tally *named(tally *v, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (same_name(v[i].name, name))
            return &v[i];
    tally *t = &v[(*n)++];
    memset(t, 0, sizeof *t);
    t->name = name;
    return t;
}

/* Cost descending, then name (NULL after every name). */
static int by_cost(const void *pa, const void *pb)
{
    const tally *a = pa, *b = pb;
    if (a->cost_usd != b->cost_usd)
        return a->cost_usd > b->cost_usd ? -1 : 1;
    if (!a->name || !b->name)
        return (a->name == NULL) - (b->name == NULL);
    return strcmp(a->name, b->name);
}

/* The bucket of t in a range of n buckets of width w from start, or -1. */
static long bucket(int64_t t, int64_t start, int64_t w, long n)
{
    if (t < start)
        return -1;
    int64_t i = (t - start) / w;
    return i < n ? (long)i : -1;
}

/* ---------------------------------------------------------------------------------
 * Rendering.
 */
static json_t *rate(const tally *t)
{
    int64_t d = t->completed + t->failed;
    return d ? json_real((double)t->completed / (double)d) : json_null();
}

static json_t *name_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* t's figures as an object; with key, {key: value} comes first (value is stolen). */
static json_t *keyed_figures(const char *key, json_t *value, const tally *t, bool runs,
                             bool success_rate)
{
    json_t *o = json_object();
    if (key)
        json_object_set_new(o, key, value);
    json_object_set_new(o, "tokens_in", json_integer(t->tokens_in));
    json_object_set_new(o, "tokens_out", json_integer(t->tokens_out));
    json_object_set_new(o, "cost_usd", json_real(t->cost_usd));
    json_object_set_new(o, "steps", json_integer(t->steps));
    if (runs) {
        json_object_set_new(o, "runs", json_integer(t->runs));
        json_object_set_new(o, "completed", json_integer(t->completed));
        json_object_set_new(o, "failed", json_integer(t->failed));
        json_object_set_new(o, "cancelled", json_integer(t->cancelled));
    }
    if (success_rate)
        json_object_set_new(o, "success_rate", rate(t));
    return o;
}

static json_t *render(const stats_req *sr, const bt_usage *u)
{
    tally *days = bt_xcalloc((size_t)sr->days, sizeof *days);
    tally *hours = bt_xcalloc(STATS_HOURS, sizeof *hours);
    size_t cap = u->nsteps + u->nruns_by_day + 1, nproj = 0, nagent = 0;
    tally *proj = bt_xcalloc(cap, sizeof *proj);
    tally *agent = bt_xcalloc(cap, sizeof *agent);
    tally total = {0};

    for (size_t i = 0; i < u->nsteps; i++) {
        const bt_usage_steps *r = &u->steps[i];
        long d = bucket(r->day_ms, sr->since, DAY_MS, sr->days);
        if (d < 0)
            continue;
        add_steps(&days[d], r);
        add_steps(&total, r);
        add_steps(named(proj, &nproj, r->project), r);
        if (r->agent)
            add_steps(named(agent, &nagent, r->agent), r);
    }
    for (size_t i = 0; i < u->nruns_by_day; i++) {
        const bt_usage_runs *r = &u->runs_by_day[i];
        long d = bucket(r->bucket_ms, sr->since, DAY_MS, sr->days);
        if (d < 0)
            continue;
        add_runs(&days[d], r);
        add_runs(&total, r);
        add_runs(named(proj, &nproj, r->project), r);
    }
    for (size_t i = 0; i < u->nruns_by_hour; i++) {
        const bt_usage_runs *r = &u->runs_by_hour[i];
        long h = bucket(r->bucket_ms, sr->hours_since, HOUR_MS, STATS_HOURS);
        if (h >= 0)
            add_runs(&hours[h], r);
    }
    qsort(proj, nproj, sizeof *proj, by_cost);
    qsort(agent, nagent, sizeof *agent, by_cost);

    char iso[BT_TIME_ISO_LEN];
    json_t *o = json_object();
    json_object_set_new(o, "since", json_string(bt_time_format_iso(sr->since, iso)));
    json_object_set_new(o, "until", json_string(bt_time_format_iso(sr->now, iso)));
    json_object_set_new(o, "days", json_integer(sr->days));
    json_object_set_new(o, "project", name_or_null(sr->project));
    json_object_set_new(o, "totals", keyed_figures(NULL, NULL, &total, true, true));

    json_t *by_day = json_array();
    for (int i = 0; i < sr->days; i++) {
        bt_time_format_iso(sr->since + i * DAY_MS, iso);
        iso[10] = '\0'; /* "2026-11-09" */
        json_array_append_new(by_day, keyed_figures("day", json_string(iso), &days[i], true, true));
    }
    json_object_set_new(o, "by_day", by_day);

    json_t *by_project = json_array();
    for (size_t i = 0; i < nproj; i++) {
        json_array_append_new(by_project, keyed_figures("project", name_or_null(proj[i].name),
                                                        &proj[i], true, false));
    }
    json_object_set_new(o, "by_project", by_project);

    json_t *by_agent = json_array();
    for (size_t i = 0; i < nagent; i++) {
        const tally *t = &agent[i];
        json_t *a = keyed_figures("agent", json_string(t->name), t, false, false);
        json_object_set_new(a, "failed_steps", json_integer(t->failed_steps));
        json_object_set_new(a, "avg_duration_ms",
                            json_integer(t->steps ? t->duration_ms / t->steps : 0));
        json_array_append_new(by_agent, a);
    }
    json_object_set_new(o, "by_agent", by_agent);

    json_t *by_hour = json_array();
    for (int i = 0; i < STATS_HOURS; i++) {
        const tally *t = &hours[i];
        json_t *h = json_object();
        json_object_set_new(h, "hour",
                            json_string(bt_time_format_iso(sr->hours_since + i * HOUR_MS, iso)));
        json_object_set_new(h, "started", json_integer(t->runs));
        json_object_set_new(h, "completed", json_integer(t->completed));
        json_object_set_new(h, "failed", json_integer(t->failed));
        json_object_set_new(h, "cancelled", json_integer(t->cancelled));
        json_array_append_new(by_hour, h);
    }
    json_object_set_new(o, "runs_by_hour", by_hour);

    free(days);
    free(hours);
    free(proj);
    free(agent);
    return o;
}

/* ---------------------------------------------------------------------------------
 * GET /api/stats
 */
static void on_usage(void *ud, int rc, const bt_error *err, const bt_usage *u)
{
    stats_req *sr = ud;
    if (rc < 0)
        bt_http_respond_bt_error(sr->req, rc, err);
    else
        bt_http_respond_json(sr->req, 200, render(sr, u));
    free(sr->project);
    free(sr);
}

static void h_stats(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    long long days;
    if (bt_api_query_int(req, "days", 1, STATS_MAX_DAYS, 14, &days) < 0)
        return;
    const char *project = bt_http_req_query(req, "project");
    if (project && (!*project || strlen(project) > STATS_PROJECT_MAX)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "query parameter 'project' must be a project id of 1 to %d bytes "
                              "(got %zu bytes); leave it out for every project",
                              STATS_PROJECT_MAX, strlen(project));
        return;
    }
    stats_req *sr = bt_xcalloc(1, sizeof *sr);
    sr->req = req;
    sr->days = (int)days;
    sr->project = bt_xstrdup(project);
    sr->now = bt_time_wall_ms();
    sr->since = sr->now - sr->now % DAY_MS - (sr->days - 1) * DAY_MS;
    sr->hours_since = sr->now - sr->now % HOUR_MS - (STATS_HOURS - 1) * HOUR_MS;
    bt_usage_query q = {.since_ms = sr->since,
                        .until_ms = sr->now + 1, /* up to and including now */
                        .hours_since_ms = sr->hours_since,
                        .project = sr->project};
    bt_http_req_suspend(req);
    bt_store_usage(api->store, &q, on_usage, sr);
}

int bt_api_stats_register(bt_api *api, bt_error *err)
{
    const bt_http_route routes[] = {
        {"GET", "/api/stats", BT_HTTP_SCOPE_READ, h_stats, api, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
