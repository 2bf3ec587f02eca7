/*
 * agents.c - agent routes: GET /api/agents (seed 004 "List agents": every configured
 * agent with type, role, model and whether it can run now, or why not), GET
 * /api/agents/{name} (one of them), GET /api/models/status (seed 004 "Local
 * backend/model readiness summary") and POST /api/agents/{name}/test (run one agent on
 * a prompt, like `baton test-agent`).
 *
 * The agent set and the HTTP client come from the app through api->agents() and
 * api->http_client(), which build them on first use, so a daemon nobody asks about
 * agents never loads libcurl. Once the agents exist, the resilience wrapper
 * (api->resil, core/resilience.h) adds each agent's live state to the listing:
 * "provider", "local", "breaker", "stats" and "rate_limit" (the shapes of
 * bt_resil_agent_json), the providers' shared limits as top-level "providers", and the
 * offline detector's state as top-level "offline" (api->offline_status). `baton agents
 * --json` prints the same agent objects, built from the store's history.
 *
 * POST /api/agents/{name}/test {"prompt": "...", "timeout": "2m"?} runs the agent in a
 * scratch directory under workspace.root/.agent-tests (removed afterwards) and answers
 * 200 with the result object ({success, output, error, error_class, tokens_in,
 * tokens_out, cost_usd, duration_ms, ...}) when the turn ends, whether it succeeded or
 * not; 404 for an unknown agent, 409 when the agent cannot be set up. It needs the
 * write scope (it spends tokens).
 */
#include "api/api.h"

#include "agents/agents.h"
#include "agents/models.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "core/resilience.h"
#include "http/server.h"
#include "obs/log.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_MAX_TIMEOUT_MS (30LL * 60 * 1000)

/* ---- GET /api/agents, GET /api/agents/{name} ---- */

/* The resilience fields of one listed agent (o gains them when the wrapper knows it). */
static void add_live_state(json_t *o, const bt_resil *rs)
{
    static const char *const keys[] = {"provider", "local", "breaker", "stats", "rate_limit"};
    json_t *live = bt_resil_agent_json(rs, json_string_value(json_object_get(o, "name")));
    if (!live)
        return;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        json_t *v = json_object_get(live, keys[k]);
        if (v)
            json_object_set(o, keys[k], v);
    }
    json_decref(live);
}

/* Borrowed from the app; NULL when it has none (or is stopping). */
static bt_resil *resil_of(bt_api *api)
{
    return api->resil ? api->resil(api) : NULL;
}

/* A copy of the check-all status with the live state added (new reference). */
static json_t *listing(bt_api *api, json_t *status)
{
    json_t *out = json_deep_copy(status);
    bt_resil *rs = resil_of(api);
    if (rs) {
        size_t i;
        json_t *o;
        json_t *arr = json_object_get(out, "agents");
        json_array_foreach(arr, i, o)
        {
            add_live_state(o, rs);
        }
        json_t *all = bt_resil_json(rs);
        json_t *providers = json_object_get(all, "providers");
        if (providers)
            json_object_set(out, "providers", providers);
        json_decref(all);
    }
    json_t *offline = api->offline_status ? api->offline_status(api) : NULL;
    if (offline)
        json_object_set_new(out, "offline", offline);
    return out;
}

typedef struct pending_req {
    bt_http_req *req;
    bt_api *api;
} pending_req;

static void agents_answer(json_t *status, void *ud)
{
    pending_req *p = ud;
    if (!bt_http_req_done(p->req))
        bt_http_respond_json(p->req, 200, listing(p->api, status));
    free(p);
}

static void h_agents(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    bt_agents *set = api->agents ? api->agents(api) : NULL;
    if (!set) {
        json_t *none = json_pack("{s:[],s:i,s:i}", "agents", "count", 0, "available", 0);
        bt_http_respond_json(req, 200, listing(api, none));
        json_decref(none);
        return;
    }
    pending_req *p = bt_xcalloc(1, sizeof *p);
    p->req = req;
    p->api = api;
    bt_http_req_suspend(req);
    bt_agents_check_all(set, agents_answer, p);
}

typedef struct one_req {
    bt_http_req *req;
    bt_api *api;
    json_t *agent; /* the description, completed by the check */
} one_req;

static void one_answer(one_req *o)
{
    bt_resil *rs = resil_of(o->api);
    if (rs)
        add_live_state(o->agent, rs);
    if (!bt_http_req_done(o->req))
        bt_http_respond_json(o->req, 200, json_incref(o->agent));
    json_decref(o->agent);
    free(o);
}

static void one_checked(bt_agent *a, int available, const char *detail, void *ud)
{
    (void)a;
    one_req *o = ud;
    json_object_set_new(o->agent, "available", json_boolean(available));
    json_object_set_new(o->agent, "detail", json_string(detail ? detail : ""));
    one_answer(o);
}

static void h_agent_one(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    const char *name = bt_http_req_param(req, "name");
    bt_agents *set = api->agents ? api->agents(api) : NULL;
    int idx = set ? bt_agents_index(set, name) : -1;
    if (idx < 0) {
        bt_strbuf known = BT_STRBUF_INIT;
        size_t n = set ? bt_agents_count(set) : 0;
        for (size_t i = 0; i < n; i++)
            bt_strbuf_addf(&known, "%s%s", i ? ", " : "", bt_agents_name(set, i));
        if (n)
            bt_http_respond_error(req, 404, "not_found", "no agent named '%s'; configured: %s",
                                  name, bt_strbuf_cstr(&known));
        else
            bt_http_respond_error(req, 404, "not_found",
                                  "no agent named '%s'; no agents are configured", name);
        bt_strbuf_release(&known);
        return;
    }
    one_req *o = bt_xcalloc(1, sizeof *o);
    o->req = req;
    o->api = api;
    o->agent = bt_agents_describe(set, (size_t)idx);
    bt_agent *agent = bt_agents_at(set, (size_t)idx);
    if (!agent) {
        json_object_set_new(o->agent, "available", json_false());
        json_object_set_new(o->agent, "detail", json_string(bt_agents_error(set, (size_t)idx)));
        one_answer(o);
        return;
    }
    bt_http_req_suspend(req);
    bt_agent_check(agent, one_checked, o);
}

/* ---- GET /api/models/status ---- */

typedef struct models_req {
    bt_http_req *req;
    json_t *endpoints;
    json_t *results;
    size_t pending;
} models_req;

typedef struct models_slot {
    models_req *m;
    size_t index;
} models_slot;

static void models_finish(models_req *m)
{
    int ready = bt_models_annotate(m->results, m->endpoints) == 0;
    if (!bt_http_req_done(m->req))
        bt_http_respond_json(
            m->req, 200,
            json_pack("{s:b,s:O,s:I}", "ready", ready && json_array_size(m->results), "endpoints",
                      m->results, "count", (json_int_t)json_array_size(m->results)));
    json_decref(m->results);
    json_decref(m->endpoints);
    free(m);
}

static void models_answer(json_t *status, void *ud)
{
    models_slot *s = ud;
    models_req *m = s->m;
    json_array_set(m->results, s->index, status);
    free(s);
    if (--m->pending == 0)
        models_finish(m);
}

static void h_models_status(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    json_t *endpoints = bt_models_endpoints(api->cfg);
    if (json_array_size(endpoints) == 0) {
        json_decref(endpoints);
        bt_http_respond_json(req, 200,
                             json_pack("{s:b,s:[],s:i,s:s}", "ready", 0, "endpoints", "count", 0,
                                       "detail",
                                       "no local model endpoints configured (ollama "
                                       "agents, or openai agents on this machine)"));
        return;
    }
    bt_http_client *http = api->http_client ? api->http_client(api) : NULL;
    if (!http) {
        json_decref(endpoints);
        bt_http_respond_error(req, 503, "unavailable", "the HTTP client could not be started");
        return;
    }
    models_req *m = bt_xcalloc(1, sizeof *m);
    m->req = req;
    m->endpoints = endpoints;
    m->results = json_array();
    size_t i;
    json_t *ep;
    for (i = 0; i < json_array_size(endpoints); i++)
        json_array_append_new(m->results, json_null());
    m->pending = json_array_size(endpoints);
    bt_http_req_suspend(req);
    json_array_foreach(endpoints, i, ep)
    {
        models_slot *s = bt_xcalloc(1, sizeof *s);
        s->m = m;
        s->index = i;
        bt_models_status(http, json_string_value(json_object_get(ep, "url")), models_answer, s);
    }
}

/* ---- POST /api/agents/{name}/test ---- */

typedef struct test_req test_req;
struct test_req {
    bt_http_req *req;
    bt_api *api;
    char *dir;
    bt_agent_run *run;
    test_req *next, **prevp; /* in the group's list of running tests */
};

/* The group's state: running tests, cancelled when shutdown begins. */
typedef struct group {
    bt_api *api;
    test_req *tests;
} group;

static void group_stop(void *ud)
{
    group *g = ud;
    for (test_req *t = g->tests; t; t = t->next)
        bt_agent_run_cancel(t->run);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void test_done(const bt_agent_result *r, void *ud)
{
    test_req *t = ud;
    if (t->prevp) {
        *t->prevp = t->next;
        if (t->next)
            t->next->prevp = t->prevp;
    }
    if (!bt_http_req_done(t->req))
        bt_http_respond_json(t->req, 200, bt_agent_result_json(r));
    nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t->dir);
    free(t);
}

static int mkdir_p(const char *path)
{
    char *p = bt_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    }
    int rc = mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
    free(p);
    return rc;
}

static void h_agent_test(bt_http_req *req, void *ud)
{
    group *g = ud;
    bt_api *api = g->api;
    const char *name = bt_http_req_param(req, "name");
    bt_agents *set = api->agents ? api->agents(api) : NULL;
    int idx = set ? bt_agents_index(set, name) : -1;
    if (idx < 0) {
        bt_http_respond_error(req, 404, "not_found", "no agent named '%s'", name);
        return;
    }
    bt_agent *agent = bt_agents_at(set, (size_t)idx);
    if (!agent) {
        bt_http_respond_error(req, 409, "agent_unavailable", "agent '%s' cannot run: %s", name,
                              bt_agents_error(set, (size_t)idx));
        return;
    }
    json_t *body = NULL;
    if (bt_http_req_json(req, &body) < 0)
        return;
    json_t *prompt = json_object_get(body, "prompt");
    if (!json_is_string(prompt) || json_string_length(prompt) == 0) {
        json_decref(body);
        bt_http_respond_error(req, 400, "invalid", "body needs a non-empty string \"prompt\"");
        return;
    }
    int64_t timeout_ms = 0;
    json_t *to = json_object_get(body, "timeout");
    if (to) {
        bt_error terr = BT_ERROR_INIT;
        if (!json_is_string(to) ||
            bt_duration_parse(json_string_value(to), &timeout_ms, &terr) < 0 || timeout_ms <= 0 ||
            timeout_ms > TEST_MAX_TIMEOUT_MS) {
            json_decref(body);
            bt_http_respond_error(req, 400, "invalid",
                                  "\"timeout\" must be a duration such as \"2m\", at most 30m");
            return;
        }
    }
    const char *root = api->cfg->workspace.root ? api->cfg->workspace.root : "./var/workspaces";
    bt_strbuf dir = BT_STRBUF_INIT;
    bt_strbuf_addf(&dir, "%s/.agent-tests", root);
    if (mkdir_p(bt_strbuf_cstr(&dir)) < 0) {
        json_decref(body);
        bt_http_respond_error(req, 500, "io", "cannot create %s: %s", bt_strbuf_cstr(&dir),
                              strerror(errno));
        bt_strbuf_release(&dir);
        return;
    }
    bt_strbuf_addstr(&dir, "/run-XXXXXX");
    if (!mkdtemp(dir.buf)) {
        json_decref(body);
        bt_http_respond_error(req, 500, "io", "cannot create a scratch directory: %s",
                              strerror(errno));
        bt_strbuf_release(&dir);
        return;
    }
    test_req *t = bt_xcalloc(1, sizeof *t);
    t->req = req;
    t->api = api;
    t->dir = bt_strbuf_detach(&dir, NULL);
    bt_agent_request rq = {.prompt = json_string_value(prompt),
                           .workspace = t->dir,
                           .timeout_ms = timeout_ms,
                           .on_done = test_done,
                           .ud = t};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_agent_start(agent, &rq, &t->run, &err);
    json_decref(body);
    if (rc < 0) {
        nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(t->dir);
        free(t);
        bt_http_respond_bt_error(req, rc, &err);
        return;
    }
    t->next = g->tests;
    if (g->tests)
        g->tests->prevp = &t->next;
    g->tests = t;
    t->prevp = &g->tests;
    bt_log_info(api->log, "agent test started", BT_LF_STR("agent", name));
    bt_http_req_suspend(req);
}

int bt_api_agents_register(bt_api *api, bt_error *err)
{
    group *g = bt_xcalloc(1, sizeof *g);
    g->api = api;
    int rc = bt_api_on_cleanup(api, free, g, err);
    if (rc < 0) {
        free(g);
        return rc;
    }
    rc = bt_api_on_stop(api, group_stop, g, err);
    if (rc < 0)
        return rc;
    const bt_http_route routes[] = {
        {"GET", "/api/agents", BT_HTTP_SCOPE_READ, h_agents, api, 0, 0},
        {"GET", "/api/agents/{name}", BT_HTTP_SCOPE_READ, h_agent_one, api, 0, 0},
        {"GET", "/api/models/status", BT_HTTP_SCOPE_READ, h_models_status, api, 0, 0},
        {"POST", "/api/agents/{name}/test", BT_HTTP_SCOPE_WRITE, h_agent_test, g, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
