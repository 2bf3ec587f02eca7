/*
 * workflows.c - workflows, runs and approvals over HTTP (issue 6, DESIGN.md §7-8):
 *
 *   GET  /api/workflows                    the loaded workflows (seed 004) (read)
 *   GET  /api/workflows/{id}               one, by id or loose name (read)
 *   GET  /api/personas                     the loaded personas (read)
 *   POST /api/execute                      start a task on a workflow (seed 004) (write)
 *   POST /api/workflow/execute             start a work item's workflow (seed 001) (write)
 *   GET  /api/workflow/status/{work_item}  the work item's task, run, steps (seed 001) (read)
 *   GET  /api/workflow/structure           workflows, steps, sub-workflow edges (read)
 *   GET  /api/runs                         runs, newest first (read)
 *   GET  /api/runs/{id}                    one run with steps, approvals, result (read)
 *   GET  /api/runs/{id}/steps              its steps (read)
 *   POST /api/runs/{id}/cancel             cancel the run's task (write)
 *   GET  /api/approvals                    approvals by status (read)
 *   GET  /api/approvals/{id}               one approval (read)
 *   POST /api/approvals/{id}               decide it (write)
 *   POST /api/approvals/{id}/approve|reject  the same, shorter (write)
 *
 * Starting work only stores a task (status pending, meta carrying the run options the
 * engine reads: inputs, max_iterations, offline, assigned_agents); the executor claims
 * and runs it. Everything a run would refuse at once (unknown workflow, an unavailable
 * one, bad inputs) is checked here first, so bad input is a 400/409 and nothing is
 * stored.
 *
 * POST /api/execute with "wait": true holds the request until the task is terminal. The
 * group keeps one store subscription while any request waits (task.status events whose
 * "to" is terminal) and each waiter re-reads its task after joining, so a run that ended
 * before the subscription is not missed. A wait ends in exactly one of: the task ended
 * (200 with the run's result), the timeout (202 as without wait, plus "waited": true),
 * or shutdown (the same 202). A suspended request does not notice its client leaving;
 * its waiter lives until one of those three and then frees everything (the late answer
 * is dropped by the server).
 *
 * Every handler validates its input completely before touching the store; unknown body
 * fields are refused. docs/api.md documents the shapes.
 */
#include "api/api.h"
#include "api/request.h"

#include "base/id.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "config/config.h"
#include "core/engine.h"
#include "core/workflow.h"
#include "http/server.h"
#include "obs/log.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS_DEFAULT_LIMIT  50
#define RUNS_MAX_LIMIT      200
#define MAX_ITERATIONS      50
#define WAIT_DEFAULT_S      600
#define WAIT_MAX_S          3600
#define TITLE_MAX           120
#define WORKFLOW_KEY_PREFIX "workflow:"
#define DEFAULT_WORKFLOW    "default"
#define DEFAULT_DECIDED_BY  "api"

typedef struct waiter waiter;

/* The group's state: the waiting requests and their shared store subscription. */
typedef struct wf_group {
    bt_api *api;
    int sub; /* store subscription while waiters is non-empty, else -1 */
    waiter *waiters;
    int stopped; /* shutdown began: no new waits */
} wf_group;

/* ---------------------------------------------------------------------------------
 * Input helpers. Each returns 0, or -1 after answering 400 itself.
 */

/* ---------------------------------------------------------------------------------
 * Workflow lookups. api->workflows may be NULL (no set loaded): then there are none.
 */

static size_t wf_count(const bt_api *api)
{
    return api->workflows ? bt_workflows_count(api->workflows) : 0;
}

static const bt_workflow *wf_find(const bt_api *api, const char *id_or_name)
{
    return api->workflows ? bt_workflows_find(api->workflows, id_or_name) : NULL;
}

/* "a, b, c" (or "none"); the caller releases sb. */
static void known_ids(const bt_api *api, bt_strbuf *sb)
{
    bt_strbuf_init(sb, 128);
    size_t n = wf_count(api);
    for (size_t i = 0; i < n; i++)
        bt_strbuf_addf(sb, "%s%s", i ? ", " : "", bt_workflows_at(api->workflows, i)->id);
    if (n == 0)
        bt_strbuf_addstr(sb, "none");
}

/* Resolve a workflow a request names; 400 naming it and the known ids when unknown. */
static const bt_workflow *resolve_workflow(bt_http_req *req, const bt_api *api, const char *field,
                                           const char *name)
{
    const bt_workflow *w = wf_find(api, name);
    if (w)
        return w;
    bt_strbuf known;
    known_ids(api, &known);
    bt_http_respond_error(req, 400, "invalid_argument", "unknown workflow '%s' in '%s'; known: %s",
                          name, field, bt_strbuf_cstr(&known));
    bt_strbuf_release(&known);
    return NULL;
}

/* A workflow that cannot run here (its agents are not configured): 409. */
static int check_available(bt_http_req *req, const bt_workflow *w, const char *variant_of)
{
    if (!w->missing)
        return 0;
    if (variant_of)
        bt_http_respond_error(req, 409, "workflow_unavailable",
                              "workflow '%s' cannot run offline: its offline variant '%s' %s",
                              variant_of, w->id, w->missing);
    else
        bt_http_respond_error(req, 409, "workflow_unavailable", "workflow '%s' cannot run: %s",
                              w->id, w->missing);
    return -1;
}

/* Check inputs against w; 400 with the model's message. */
static int check_inputs(bt_http_req *req, const bt_workflow *w, const json_t *inputs)
{
    json_t *bound = NULL;
    bt_error err = BT_ERROR_INIT;
    int rc = bt_workflow_bind_inputs(w, inputs, &bound, &err);
    json_decref(bound);
    if (rc < 0) {
        bt_http_respond_error(req, 400, "invalid_argument", "%s",
                              err.msg[0] ? err.msg : "the inputs do not match the workflow");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------
 * GET /api/workflows, /api/workflows/{id}, /api/personas, /api/workflow/structure
 */

static void h_workflows(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    json_t *arr = json_array();
    size_t n = wf_count(api);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, bt_workflow_to_json(bt_workflows_at(api->workflows, i)));
    bt_http_respond_json(req, 200,
                         json_pack("{s:o,s:I}", "workflows", arr, "count", (json_int_t)n));
}

static void h_workflow(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    const char *id = bt_http_req_param(req, "id");
    const bt_workflow *w = wf_find(api, id);
    if (!w) {
        bt_strbuf known;
        known_ids(api, &known);
        bt_http_respond_error(req, 404, "not_found", "no workflow '%s'; known: %s", id,
                              bt_strbuf_cstr(&known));
        bt_strbuf_release(&known);
        return;
    }
    bt_http_respond_json(req, 200, bt_workflow_to_json(w));
}

static void h_personas(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    json_t *arr = json_array();
    size_t n = api->workflows ? bt_workflows_persona_count(api->workflows) : 0;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, bt_persona_to_json(bt_workflows_persona_at(api->workflows, i)));
    bt_http_respond_json(req, 200, json_pack("{s:o,s:I}", "personas", arr, "count", (json_int_t)n));
}

static void h_structure(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    if (!api->workflows) {
        bt_http_respond_json(req, 200,
                             json_pack("{s:[],s:[],s:[]}", "workflows", "edges", "personas"));
        return;
    }
    bt_http_respond_json(req, 200, bt_workflows_structure(api->workflows));
}

/* ---------------------------------------------------------------------------------
 * Reading a task's latest run for an answer: the run, its steps, its result and
 * (optionally) its approvals. One chain of store reads driven by a view.
 */

typedef enum view_kind {
    VIEW_STATUS, /* GET /api/workflow/status/{id}: pending approvals, result when ended */
    VIEW_RUN,    /* GET /api/runs/{id}: every approval, result when ended */
    VIEW_STEPS,  /* GET /api/runs/{id}/steps */
    VIEW_RESULT, /* the end of a wait: the result, always */
} view_kind;

typedef struct view {
    bt_store *store;
    bt_http_req *req;
    view_kind kind;
    bt_task *task; /* VIEW_STATUS, VIEW_RESULT */
    bt_run *run;   /* NULL when the task has none yet */
    json_t *steps; /* array */
    json_t *result;
    json_t *approvals; /* array */
    int next_status;   /* VIEW_RUN: next approval status to list */
    void (*done)(struct view *v, void *ud);
    void *ud;
} view;

static void view_free(view *v)
{
    bt_task_free(v->task);
    bt_run_free(v->run);
    json_decref(v->steps);
    json_decref(v->result);
    json_decref(v->approvals);
    free(v);
}

static int run_ended(const bt_run *r)
{
    return r->status == BT_RUN_COMPLETED || r->status == BT_RUN_FAILED ||
           r->status == BT_RUN_CANCELLED;
}

/* The result of a task that ended before any run started (cancelled while pending). */
static json_t *result_without_run(const bt_task *t)
{
    json_t *o = bt_engine_result_json(NULL, NULL, 0);
    json_object_set_new(o, "workflow", t->workflow ? json_string(t->workflow) : json_null());
    json_object_set_new(o, "task_id", json_string(t->id));
    json_object_set_new(o, "status", json_string(bt_task_status_name(t->status)));
    json_object_set_new(o, "error", t->error ? json_string(t->error) : json_null());
    return o;
}

static void view_answer(view *v)
{
    bt_http_req *req = v->req;
    json_t *run = v->run ? bt_run_to_json(v->run) : json_null();
    switch (v->kind) {
    case VIEW_STEPS:
        json_decref(run);
        bt_http_respond_json(req, 200, json_pack("{s:O}", "steps", v->steps));
        break;
    case VIEW_RUN:
        bt_http_respond_json(req, 200,
                             json_pack("{s:o,s:O,s:O,s:O}", "run", run, "steps", v->steps,
                                       "approvals", v->approvals, "result",
                                       v->result ? v->result : json_null()));
        break;
    case VIEW_STATUS: {
        const bt_task *t = v->task;
        bt_http_respond_json(req, 200,
                             json_pack("{s:s,s:s,s:s?,s:s,s:o,s:s?,s:O,s:O,s:O}", "work_item_id",
                                       t->identifier ? t->identifier : t->id, "workflow_id", t->id,
                                       "workflow", t->workflow, "status",
                                       bt_task_status_name(t->status), "run", run, "run_status",
                                       v->run ? bt_run_status_name(v->run->status) : NULL, "steps",
                                       v->steps, "result", v->result ? v->result : json_null(),
                                       "pending_approvals", v->approvals));
        break;
    }
    case VIEW_RESULT:
        json_decref(run);
        bt_http_respond_json(req, 200,
                             v->result ? json_incref(v->result) : result_without_run(v->task));
        break;
    }
}

static void view_finish(view *v, int rc, const bt_error *err)
{
    if (rc < 0)
        bt_http_respond_bt_error(v->req, rc, err);
    else
        view_answer(v);
    if (v->done)
        v->done(v, v->ud);
    view_free(v);
}

static void view_approvals(view *v);

static int by_id(const void *a, const void *b)
{
    const char *x = bt_json_str(*(json_t *const *)a, "id", "");
    const char *y = bt_json_str(*(json_t *const *)b, "id", "");
    return strcmp(x, y);
}

/* The approvals of every status, back in creation order (ids are ULIDs). */
static void sort_by_id(json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n < 2)
        return;
    json_t **items = bt_xcalloc(n, sizeof *items);
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(arr, i));
    qsort(items, n, sizeof *items, by_id);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    free(items);
}

static void on_view_approvals(void *ud, int rc, const bt_error *err, bt_approval *const *list,
                              size_t n)
{
    view *v = ud;
    if (rc < 0) {
        view_finish(v, rc, err);
        return;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(v->approvals, bt_approval_to_json(list[i]));
    if (v->kind == VIEW_RUN && v->next_status < BT_APPROVAL__COUNT) {
        view_approvals(v);
        return;
    }
    if (v->kind == VIEW_RUN)
        sort_by_id(v->approvals);
    view_finish(v, 0, NULL);
}

static void view_approvals(view *v)
{
    bt_approval_status st = BT_APPROVAL_PENDING;
    if (v->kind == VIEW_RUN)
        st = (bt_approval_status)v->next_status++;
    bt_store_approval_list(v->store, &st, v->run->id, on_view_approvals, v);
}

static void on_view_steps(void *ud, int rc, const bt_error *err, bt_step *const *steps, size_t n)
{
    view *v = ud;
    if (rc < 0) {
        view_finish(v, rc, err);
        return;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(v->steps, bt_step_to_json(steps[i]));
    if (v->kind == VIEW_RESULT || (v->kind != VIEW_STEPS && run_ended(v->run)))
        v->result = bt_engine_result_json(v->run, steps, n);
    if (v->kind == VIEW_STATUS || v->kind == VIEW_RUN)
        view_approvals(v);
    else
        view_finish(v, 0, NULL);
}

/* Continue with the run in hand (v->run set) or finish without one. */
static void view_with_run(view *v)
{
    if (!v->run) {
        view_finish(v, 0, NULL);
        return;
    }
    bt_store_step_list(v->store, v->run->id, on_view_steps, v);
}

static void on_view_runs(void *ud, int rc, const bt_error *err, bt_run *const *runs, size_t n)
{
    view *v = ud;
    if (rc < 0) {
        view_finish(v, rc, err);
        return;
    }
    if (n > 0)
        v->run = bt_run_dup(runs[0]);
    view_with_run(v);
}

static view *view_new(bt_api *api, bt_http_req *req, view_kind kind)
{
    view *v = bt_xcalloc(1, sizeof *v);
    v->store = api->store;
    v->req = req;
    v->kind = kind;
    v->steps = json_array();
    v->approvals = json_array();
    return v;
}

/* Start from a task (copied): its latest run, and so on. */
static void view_task(view *v, const bt_task *t)
{
    v->task = bt_task_dup(t);
    bt_store_run_list(v->store, t->id, NULL, 1, on_view_runs, v);
}

/* ---------------------------------------------------------------------------------
 * Waiting for a task to end (POST /api/execute with "wait": true).
 */

struct waiter {
    int refs; /* the timer handle (until its close callback) + each store read in flight */
    wf_group *g;
    waiter *prev, *next; /* g->waiters while linked */
    int linked;
    int done; /* answered, or reading the result to answer */
    bt_http_req *req;
    char task_id[BT_ID_LEN + 1];
    json_t *accepted; /* the 202 body */
    uv_timer_t timer;
};

static void waiter_unref(waiter *w)
{
    if (--w->refs > 0)
        return;
    json_decref(w->accepted);
    free(w);
}

static void on_timer_closed(uv_handle_t *h)
{
    waiter_unref(h->data);
}

static void waiter_unlink(waiter *w)
{
    if (!w->linked)
        return;
    wf_group *g = w->g;
    if (w->prev)
        w->prev->next = w->next;
    else
        g->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->linked = 0;
    if (!g->waiters && g->sub >= 0) {
        bt_store_unsubscribe(g->api->store, g->sub);
        g->sub = -1;
    }
}

/* Stop waiting: unlink, close the timer. The caller answers (or has answered). */
static void waiter_end(waiter *w)
{
    w->done = 1;
    waiter_unlink(w);
    uv_timer_stop(&w->timer);
    if (!uv_is_closing((uv_handle_t *)&w->timer))
        uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

/* Answer 202 as without wait, saying the wait ended without the task ending. */
static void waiter_give_up(waiter *w)
{
    waiter_end(w);
    json_t *body = json_deep_copy(w->accepted);
    json_object_set_new(body, "waited", json_true());
    bt_http_respond_json(w->req, 202, body);
}

static void on_result_done(view *v, void *ud)
{
    (void)v;
    waiter_unref(ud);
}

static void on_final_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    waiter *w = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(w->req, rc, err);
        waiter_unref(w);
        return;
    }
    view *v = view_new(w->g->api, w->req, VIEW_RESULT);
    v->done = on_result_done;
    v->ud = w; /* keeps the read's reference */
    view_task(v, t);
}

/* The task ended: read it (not the event's copy) and answer with its latest run's
 * result. */
static void waiter_finish(waiter *w)
{
    if (w->done)
        return;
    waiter_end(w);
    w->refs++;
    bt_store_task_get(w->g->api->store, w->task_id, on_final_task, w);
}

static void on_wait_timeout(uv_timer_t *t)
{
    waiter *w = t->data;
    if (!w->done)
        waiter_give_up(w);
}

static void on_recheck(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    waiter *w = ud;
    if (!w->done) {
        if (rc < 0) {
            waiter_end(w);
            bt_http_respond_bt_error(w->req, rc, err);
        } else if (bt_task_status_terminal(t->status)) {
            waiter_finish(w);
        }
    }
    waiter_unref(w);
}

static void on_task_event(void *ud, const bt_event *e)
{
    wf_group *g = ud;
    if (strcmp(e->type, "task.status") != 0)
        return;
    bt_task_status to;
    const char *to_s = bt_json_str(e->data, "to", NULL);
    if (!to_s || bt_task_status_parse(to_s, &to) < 0 || !bt_task_status_terminal(to))
        return;
    waiter *next;
    for (waiter *w = g->waiters; w; w = next) {
        next = w->next;
        if (strcmp(w->task_id, e->task_id) == 0)
            waiter_finish(w);
    }
}

/* Start waiting for task t; answers 202 at once when waiting is impossible. */
static void wait_for(wf_group *g, bt_http_req *req, const bt_task *t, json_t *accepted,
                     int64_t timeout_ms)
{
    bt_api *api = g->api;
    if (g->stopped || api->stopping) {
        json_object_set_new(accepted, "waited", json_false());
        bt_http_respond_json(req, 202, accepted);
        return;
    }
    if (g->sub < 0) {
        int sub = bt_store_subscribe(api->store, on_task_event, g);
        if (sub < 0) {
            bt_log_warn(api->log, "execute: no store subscription left for waiting; answering 202",
                        BT_LF_STR("task", t->id));
            json_object_set_new(accepted, "waited", json_false());
            bt_http_respond_json(req, 202, accepted);
            return;
        }
        g->sub = sub;
    }
    waiter *w = bt_xcalloc(1, sizeof *w);
    w->refs = 1; /* the timer */
    w->g = g;
    w->req = req;
    w->accepted = accepted;
    snprintf(w->task_id, sizeof w->task_id, "%s", t->id);
    uv_timer_init(api->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_wait_timeout, (uint64_t)timeout_ms, 0);
    w->next = g->waiters;
    if (g->waiters)
        g->waiters->prev = w;
    g->waiters = w;
    w->linked = 1;
    /* The task may have ended before the subscription: look once more. */
    w->refs++;
    bt_store_task_get(api->store, w->task_id, on_recheck, w);
}

static void group_stop(void *ud)
{
    wf_group *g = ud;
    g->stopped = 1;
    while (g->waiters)
        waiter_give_up(g->waiters);
}

static void group_free(void *ud)
{
    free(ud); /* every waiter ended at stop; the loop has run their close callbacks */
}

/* ---------------------------------------------------------------------------------
 * POST /api/execute (seed 004 "Start task")
 */

typedef struct exec_ctx {
    wf_group *g;
    bt_http_req *req;
    char *workflow; /* resolved id */
    int wait;
    int64_t timeout_ms;
} exec_ctx;

static json_t *accepted_body(const bt_task *t, const char *workflow)
{
    char status_url[BT_ID_LEN + 16], runs_url[BT_ID_LEN + 32];
    snprintf(status_url, sizeof status_url, "/api/tasks/%s", t->id);
    snprintf(runs_url, sizeof runs_url, "/api/runs?task_id=%s", t->id);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "task_id", t->id, "identifier",
                     t->identifier ? t->identifier : t->id, "workflow", workflow, "status",
                     bt_task_status_name(t->status), "status_url", status_url, "runs_url",
                     runs_url);
}

static void on_exec_created(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    (void)created;
    exec_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else {
        json_t *body = accepted_body(t, c->workflow);
        char loc[BT_ID_LEN + 16];
        snprintf(loc, sizeof loc, "/api/tasks/%s", t->id);
        bt_http_resp_header(c->req, "Location", loc);
        if (c->wait && !bt_task_status_terminal(t->status))
            wait_for(c->g, c->req, t, body, c->timeout_ms);
        else
            bt_http_respond_json(c->req, 202, body);
    }
    free(c->workflow);
    free(c);
}

/* The title of a task given as free text: its first line, at most TITLE_MAX bytes (cut
 * at a character boundary, "..." appended when cut). */
static char *title_of(const char *text)
{
    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
        text++;
    size_t n = strcspn(text, "\r\n");
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    if (n <= TITLE_MAX)
        return bt_xstrndup(text, n);
    n = TITLE_MAX - 3;
    while (n && ((unsigned char)text[n] & 0xC0) == 0x80)
        n--;
    char *s = bt_xmalloc(n + 4);
    memcpy(s, text, n);
    memcpy(s + n, "...", 4);
    return s;
}

/* The workflow a run will actually use: with offline, the workflow's offline variant,
 * else offline-default, else the workflow itself with local agents only, as the engine
 * chooses (bt_workflow_offline_variant). */
static const bt_workflow *effective_workflow(const bt_api *api, const bt_workflow *w, int offline)
{
    return offline && api->workflows ? bt_workflow_offline_variant(api->workflows, w, NULL, 0) : w;
}

static void h_execute(bt_http_req *req, void *ud)
{
    static const char *const allowed[] = {
        "task",   "title",   "description", "body",     "workflow", "max_iterations", "offline",
        "inputs", "project", "labels",      "priority", "wait",     "timeout"};
    wf_group *g = ud;
    bt_api *api = g->api;
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    const char *text, *title, *desc, *bodytext, *wf_name, *project;
    const json_t *inputs, *labels, *maxit, *timeout;
    int offline, wait;
    bt_task_input in = {0};
    char *own_title = NULL;
    json_t *meta = NULL;
    if (bt_api_check_fields(req, body, allowed, sizeof allowed / sizeof allowed[0]) < 0 ||
        bt_api_field_str(req, body, "task", 1, &text) < 0 ||
        bt_api_field_str(req, body, "title", 1, &title) < 0 ||
        bt_api_field_str(req, body, "description", 0, &desc) < 0 ||
        bt_api_field_str(req, body, "body", 0, &bodytext) < 0 ||
        bt_api_field_str(req, body, "workflow", 1, &wf_name) < 0 ||
        bt_api_field_str(req, body, "project", 1, &project) < 0 ||
        bt_api_field_bool(req, body, "offline", &offline) < 0 ||
        bt_api_field_bool(req, body, "wait", &wait) < 0 ||
        bt_api_field_object(req, body, "inputs", &inputs) < 0 ||
        bt_api_field_labels(req, body, &labels) < 0 ||
        bt_api_field_priority(req, body, NULL, &in.priority) < 0)
        goto done;
    if (text && (title || desc || bodytext)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "give either 'task' (the whole text) or 'title' with an optional "
                              "'description', not both");
        goto done;
    }
    if (!text && !title) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'task' is required (a non-empty string: what to do), or "
                              "'title' with an optional 'description'");
        goto done;
    }
    if (desc && bodytext) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "'description' and 'body' are the same field; give one");
        goto done;
    }
    maxit = json_object_get(body, "max_iterations");
    if (maxit && (!json_is_integer(maxit) || json_integer_value(maxit) < 1 ||
                  json_integer_value(maxit) > MAX_ITERATIONS)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'max_iterations' must be an integer from 1 to %d",
                              MAX_ITERATIONS);
        goto done;
    }
    int64_t timeout_ms = (int64_t)WAIT_DEFAULT_S * 1000;
    timeout = json_object_get(body, "timeout");
    if (timeout) {
        double s = json_is_number(timeout) ? json_number_value(timeout) : -1;
        if (!(s > 0 && s <= WAIT_MAX_S)) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "field 'timeout' must be a number of seconds above 0 and at "
                                  "most %d",
                                  WAIT_MAX_S);
            goto done;
        }
        timeout_ms = (int64_t)(s * 1000);
        if (timeout_ms < 1)
            timeout_ms = 1;
    }
    const bt_workflow *w =
        resolve_workflow(req, api, "workflow", wf_name ? wf_name : DEFAULT_WORKFLOW);
    if (!w)
        goto done;
    const bt_workflow *eff = effective_workflow(api, w, offline);
    if (!eff || check_available(req, eff, eff != w ? w->id : NULL) < 0 ||
        check_inputs(req, eff, inputs) < 0)
        goto done;

    meta = json_object();
    json_object_set_new(meta, "inputs", inputs ? json_deep_copy(inputs) : json_object());
    json_object_set_new(meta, "offline", json_boolean(offline));
    if (maxit)
        json_object_set_new(meta, "max_iterations", json_integer(json_integer_value(maxit)));
    if (text) {
        own_title = title_of(text);
        in.title = own_title;
        in.body = strcmp(own_title, text) == 0 ? NULL : text;
    } else {
        in.title = title;
        in.body = desc ? desc : bodytext;
    }
    in.source = "api";
    in.workflow = w->id;
    in.project = project;
    in.labels = labels;
    in.meta = meta;
    exec_ctx *c = bt_xcalloc(1, sizeof *c);
    c->g = g;
    c->req = req;
    c->workflow = bt_xstrdup(w->id);
    c->wait = wait;
    c->timeout_ms = timeout_ms;
    bt_http_req_suspend(req);
    bt_store_task_create(api->store, &in, on_exec_created, c);
done:
    free(own_title);
    json_decref(meta);
    json_decref(body);
}

/* ---------------------------------------------------------------------------------
 * POST /api/workflow/execute (seed 001)
 */

typedef struct wfexec_ctx {
    bt_http_req *req;
    char *work_item_id, *workflow_type, *workflow;
} wfexec_ctx;

static void on_wfexec_created(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    wfexec_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else {
        char loc[BT_ID_LEN + 16];
        snprintf(loc, sizeof loc, "/api/tasks/%s", t->id);
        bt_http_resp_header(c->req, "Location", loc);
        bt_http_respond_json(
            c->req, created ? 202 : 200,
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "workflow_id", t->id, "work_item_id",
                      c->work_item_id, "workflow_type", c->workflow_type, "workflow",
                      t->workflow ? t->workflow : c->workflow, "status",
                      created ? "started" : bt_task_status_name(t->status), "created", created));
    }
    free(c->work_item_id);
    free(c->workflow_type);
    free(c->workflow);
    free(c);
}

/* Every assigned_agents value names a persona or a configured agent. */
static int check_assigned(bt_http_req *req, const bt_api *api, const json_t *assigned)
{
    const char *role;
    const json_t *v;
    json_object_foreach((json_t *)assigned, role, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "assigned_agents.%s must be a persona or agent name (a "
                                  "non-empty string)",
                                  role);
            return -1;
        }
        const char *name = json_string_value(v);
        if ((api->workflows && bt_workflows_persona(api->workflows, name)) ||
            (api->cfg && bt_config_agent_find(api->cfg, name)))
            continue;
        bt_strbuf known;
        bt_strbuf_init(&known, 256);
        size_t np = api->workflows ? bt_workflows_persona_count(api->workflows) : 0;
        for (size_t i = 0; i < np; i++)
            bt_strbuf_addf(&known, "%s%s", known.len ? ", " : "",
                           bt_workflows_persona_at(api->workflows, i)->name);
        for (size_t i = 0; api->cfg && i < api->cfg->agents.len; i++)
            bt_strbuf_addf(&known, "%s%s", known.len ? ", " : "", api->cfg->agents.items[i].name);
        bt_http_respond_error(req, 400, "invalid_argument",
                              "assigned_agents.%s: '%s' is neither a persona nor a configured "
                              "agent; known: %s",
                              role, name, known.len ? bt_strbuf_cstr(&known) : "none");
        bt_strbuf_release(&known);
        return -1;
    }
    return 0;
}

/* Seed 001 workflows take the work item as an input: fill WORK_ITEM_ID (or
 * work_item_id) from the request when the workflow declares it and it is not given.
 * Returns a new object. */
static json_t *inputs_with_work_item(const bt_workflow *w, const json_t *given, const char *id)
{
    json_t *o = given ? json_deep_copy(given) : json_object();
    for (size_t i = 0; i < w->ninputs; i++) {
        const char *name = w->inputs[i].name;
        if ((strcmp(name, "WORK_ITEM_ID") == 0 || strcmp(name, "work_item_id") == 0) &&
            !json_object_get(o, name))
            json_object_set_new(o, name, json_string(id));
    }
    return o;
}

static void h_workflow_execute(bt_http_req *req, void *ud)
{
    static const char *const allowed[] = {"work_item_id", "workflow_type", "assigned_agents",
                                          "inputs",       "title",         "description"};
    bt_api *api = ud;
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    const char *id, *type, *title, *desc;
    const json_t *assigned, *given;
    json_t *inputs = NULL, *meta = NULL;
    char *key = NULL, *own_title = NULL;
    if (bt_api_check_fields(req, body, allowed, sizeof allowed / sizeof allowed[0]) < 0 ||
        bt_api_field_str(req, body, "work_item_id", 1, &id) < 0 ||
        bt_api_field_str(req, body, "workflow_type", 1, &type) < 0 ||
        bt_api_field_str(req, body, "title", 1, &title) < 0 ||
        bt_api_field_str(req, body, "description", 0, &desc) < 0 ||
        bt_api_field_object(req, body, "assigned_agents", &assigned) < 0 ||
        bt_api_field_object(req, body, "inputs", &given) < 0)
        goto done;
    if (!id || !type) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field '%s' is required (a non-empty string)",
                              !id ? "work_item_id" : "workflow_type");
        goto done;
    }
    const bt_workflow *w = resolve_workflow(req, api, "workflow_type", type);
    if (!w || check_available(req, w, NULL) < 0 ||
        (assigned && check_assigned(req, api, assigned) < 0))
        goto done;
    inputs = inputs_with_work_item(w, given, id);
    if (check_inputs(req, w, inputs) < 0)
        goto done;
    meta = json_pack("{s:O,s:o}", "inputs", inputs, "assigned_agents",
                     assigned ? json_deep_copy(assigned) : json_object());
    size_t klen = strlen(WORKFLOW_KEY_PREFIX) + strlen(id) + 1;
    key = bt_xmalloc(klen);
    snprintf(key, klen, "%s%s", WORKFLOW_KEY_PREFIX, id);
    if (!title) {
        size_t tlen = strlen(w->name ? w->name : w->id) + strlen(id) + 2;
        own_title = bt_xmalloc(tlen);
        snprintf(own_title, tlen, "%s %s", w->name ? w->name : w->id, id);
    }
    bt_task_input in = {0};
    in.source = "api";
    in.external_id = id;
    in.identifier = id;
    in.dedupe_key = key;
    in.title = title ? title : own_title;
    in.body = desc;
    in.workflow = w->id;
    in.meta = meta;
    in.priority = BT_PRIORITY_NONE;
    wfexec_ctx *c = bt_xcalloc(1, sizeof *c);
    c->req = req;
    c->work_item_id = bt_xstrdup(id);
    c->workflow_type = bt_xstrdup(type);
    c->workflow = bt_xstrdup(w->id);
    bt_http_req_suspend(req);
    bt_store_task_create(api->store, &in, on_wfexec_created, c);
done:
    free(key);
    free(own_title);
    json_decref(inputs);
    json_decref(meta);
    json_decref(body);
}

/* ---------------------------------------------------------------------------------
 * GET /api/workflow/status/{work_item_id}: by dedupe key, then by task id.
 */

typedef struct status_ctx {
    bt_api *api;
    bt_http_req *req;
    char *work_item_id;
    int by_id; /* already tried the task id */
} status_ctx;

static void status_free(status_ctx *c)
{
    free(c->work_item_id);
    free(c);
}

static void on_status_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    status_ctx *c = ud;
    if (rc == BT_ENOENT && !c->by_id && bt_id_valid(c->work_item_id)) {
        c->by_id = 1;
        bt_store_task_get(c->api->store, c->work_item_id, on_status_task, c);
        return;
    }
    if (rc == BT_ENOENT) {
        bt_http_respond_error(c->req, 404, "not_found",
                              "no workflow for work item '%s' (start one with POST "
                              "/api/workflow/execute)",
                              c->work_item_id);
    } else if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else {
        view *v = view_new(c->api, c->req, VIEW_STATUS);
        view_task(v, t);
    }
    status_free(c);
}

static void h_workflow_status(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    const char *id = bt_http_req_param(req, "work_item_id");
    status_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->work_item_id = bt_xstrdup(id ? id : "");
    size_t klen = strlen(WORKFLOW_KEY_PREFIX) + strlen(c->work_item_id) + 1;
    char *key = bt_xmalloc(klen);
    snprintf(key, klen, "%s%s", WORKFLOW_KEY_PREFIX, c->work_item_id);
    bt_http_req_suspend(req);
    bt_store_task_get_by_key(api->store, key, on_status_task, c);
    free(key);
}

/* ---------------------------------------------------------------------------------
 * Runs.
 */

static void on_runs(void *ud, int rc, const bt_error *err, bt_run *const *runs, size_t n)
{
    bt_http_req *req = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(req, rc, err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, bt_run_to_json(runs[i]));
    bt_http_respond_json(req, 200, json_pack("{s:o,s:I}", "runs", arr, "count", (json_int_t)n));
}

static void h_runs(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    long long limit;
    if (bt_api_query_int(req, "limit", 1, RUNS_MAX_LIMIT, RUNS_DEFAULT_LIMIT, &limit) < 0)
        return;
    const char *task_id = bt_http_req_query(req, "task_id");
    if (task_id && !*task_id)
        task_id = NULL;
    if (task_id && !bt_id_valid(task_id)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "query parameter 'task_id' is not a task id (got '%s')", task_id);
        return;
    }
    const char *status_s = bt_http_req_query(req, "status");
    bt_run_status status;
    if (status_s && bt_run_status_parse(status_s, &status) < 0) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "unknown run status '%s'; use running, waiting, completed, failed "
                              "or cancelled",
                              status_s);
        return;
    }
    bt_http_req_suspend(req);
    bt_store_run_list(api->store, task_id, status_s ? &status : NULL, (int)limit, on_runs, req);
}

static void on_view_run(void *ud, int rc, const bt_error *err, const bt_run *r)
{
    view *v = ud;
    if (rc < 0) {
        view_finish(v, rc, err);
        return;
    }
    v->run = bt_run_dup(r);
    view_with_run(v);
}

static void run_view(bt_http_req *req, bt_api *api, view_kind kind)
{
    const char *id = bt_api_path_id(req, "run");
    if (!id)
        return;
    view *v = view_new(api, req, kind);
    bt_http_req_suspend(req);
    bt_store_run_get(api->store, id, on_view_run, v);
}

static void h_run(bt_http_req *req, void *ud)
{
    run_view(req, ud, VIEW_RUN);
}

static void h_run_steps(bt_http_req *req, void *ud)
{
    run_view(req, ud, VIEW_STEPS);
}

typedef struct cancel_ctx {
    bt_api *api;
    bt_http_req *req;
    char run_id[BT_ID_LEN + 1];
    char *reason;
} cancel_ctx;

static void cancel_free(cancel_ctx *c)
{
    free(c->reason);
    free(c);
}

static void on_cancel_done(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    cancel_ctx *c = ud;
    if (rc < 0)
        bt_http_respond_bt_error(c->req, rc, err);
    else
        bt_http_respond_json(c->req, 202,
                             json_pack("{s:s,s:s,s:s,s:s}", "run_id", c->run_id, "task_id", t->id,
                                       "status", "cancelling", "task_status",
                                       bt_task_status_name(t->status)));
    cancel_free(c);
}

static void on_cancel_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    cancel_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
        cancel_free(c);
        return;
    }
    if (bt_task_status_terminal(t->status)) {
        bt_http_respond_error(c->req, 409, bt_error_name(BT_ESTATE),
                              "cannot cancel run %s: its task %s is already %s", c->run_id, t->id,
                              bt_task_status_name(t->status));
        cancel_free(c);
        return;
    }
    bt_store_task_transition(c->api->store, t->id, BT_TASK_CANCELLED, c->reason, on_cancel_done, c);
}

static void on_cancel_run(void *ud, int rc, const bt_error *err, const bt_run *r)
{
    cancel_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
        cancel_free(c);
        return;
    }
    if (run_ended(r)) {
        bt_http_respond_error(c->req, 409, bt_error_name(BT_ESTATE),
                              "cannot cancel run %s: it already %s", r->id,
                              r->status == BT_RUN_COMPLETED ? "completed"
                              : r->status == BT_RUN_FAILED  ? "failed"
                                                            : "was cancelled");
        cancel_free(c);
        return;
    }
    bt_store_task_get(c->api->store, r->task_id, on_cancel_task, c);
}

static void h_run_cancel(bt_http_req *req, void *ud)
{
    static const char *const allowed[] = {"reason"};
    bt_api *api = ud;
    const char *id = bt_api_path_id(req, "run");
    if (!id)
        return;
    json_t *body = NULL;
    const char *reason = NULL;
    size_t len = 0;
    bt_http_req_body(req, &len);
    if (len > 0) {
        if (bt_http_req_json(req, &body) < 0)
            return;
        if (bt_api_check_fields(req, body, allowed, 1) < 0 ||
            bt_api_field_str(req, body, "reason", 1, &reason) < 0) {
            json_decref(body);
            return;
        }
    }
    cancel_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    snprintf(c->run_id, sizeof c->run_id, "%s", id);
    c->reason = bt_xstrdup(reason ? reason : "run cancelled through the API");
    json_decref(body);
    bt_http_req_suspend(req);
    bt_store_run_get(api->store, id, on_cancel_run, c);
}

/* ---------------------------------------------------------------------------------
 * Approvals.
 */

static int approval_status_parse(const char *s, bt_approval_status *out)
{
    for (int i = 0; i < BT_APPROVAL__COUNT; i++)
        if (strcmp(s, bt_approval_status_name((bt_approval_status)i)) == 0) {
            *out = (bt_approval_status)i;
            return 0;
        }
    return BT_EINVAL;
}

static void on_approvals(void *ud, int rc, const bt_error *err, bt_approval *const *list, size_t n)
{
    bt_http_req *req = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(req, rc, err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, bt_approval_to_json(list[i]));
    bt_http_respond_json(req, 200,
                         json_pack("{s:o,s:I}", "approvals", arr, "count", (json_int_t)n));
}

static void h_approvals(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    bt_approval_status st = BT_APPROVAL_PENDING;
    const char *s = bt_http_req_query(req, "status");
    if (s && *s && approval_status_parse(s, &st) < 0) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "unknown approval status '%s'; use pending, approved, rejected or "
                              "expired",
                              s);
        return;
    }
    const char *run_id = bt_http_req_query(req, "run_id");
    if (run_id && !*run_id)
        run_id = NULL;
    if (run_id && !bt_id_valid(run_id)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "query parameter 'run_id' is not a run id (got '%s')", run_id);
        return;
    }
    bt_http_req_suspend(req);
    bt_store_approval_list(api->store, &st, run_id, on_approvals, req);
}

static void on_approval(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    bt_http_req *req = ud;
    if (rc < 0)
        bt_http_respond_bt_error(req, rc, err);
    else
        bt_http_respond_json(req, 200, bt_approval_to_json(a));
}

static void h_approval(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    const char *id = bt_api_path_id(req, "approval");
    if (!id)
        return;
    bt_http_req_suspend(req);
    bt_store_approval_get(api->store, id, on_approval, req);
}

typedef struct decide_ctx {
    bt_api *api;
    bt_http_req *req;
    char id[BT_ID_LEN + 1];
    bool approve;
    char *by, *comment;
    int decided; /* the decision was sent; a later read explains a refusal */
} decide_ctx;

static void decide_free(decide_ctx *c)
{
    free(c->by);
    free(c->comment);
    free(c);
}

/* 409 naming the decision that stands. */
static void respond_decided(bt_http_req *req, const bt_approval *a)
{
    bt_http_respond_error(req, 409, bt_error_name(BT_ESTATE),
                          "approval %s was already %s%s%s; the decision stands", a->id,
                          bt_approval_status_name(a->status), a->decided_by ? " by " : "",
                          a->decided_by ? a->decided_by : "");
}

static void on_decide_check(void *ud, int rc, const bt_error *err, const bt_approval *a);

static void on_decided(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    decide_ctx *c = ud;
    if (rc == BT_ESTATE) { /* decided meanwhile: say by whom */
        bt_store_approval_get(c->api->store, c->id, on_decide_check, c);
        return;
    }
    if (rc < 0)
        bt_http_respond_bt_error(c->req, rc, err);
    else
        bt_http_respond_json(c->req, 200, bt_approval_to_json(a));
    decide_free(c);
}

static void on_decide_check(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    decide_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else if (a->status != BT_APPROVAL_PENDING || c->decided) {
        respond_decided(c->req, a);
    } else {
        c->decided = 1;
        bt_store_approval_decide(c->api->store, c->id, c->approve, c->by, c->comment, on_decided,
                                 c);
        return;
    }
    decide_free(c);
}

static void start_decide(bt_http_req *req, bt_api *api, const char *id, bool approve,
                         const char *by, const char *comment)
{
    decide_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    snprintf(c->id, sizeof c->id, "%s", id);
    c->approve = approve;
    c->by = bt_xstrdup(by ? by : DEFAULT_DECIDED_BY);
    c->comment = comment ? bt_xstrdup(comment) : NULL;
    bt_http_req_suspend(req);
    bt_store_approval_get(api->store, id, on_decide_check, c);
}

/* "approve"/"approved" -> 1, "reject"/"rejected" -> 0, else -1. */
static int parse_decision(const char *s)
{
    if (strcmp(s, "approve") == 0 || strcmp(s, "approved") == 0)
        return 1;
    if (strcmp(s, "reject") == 0 || strcmp(s, "rejected") == 0)
        return 0;
    return -1;
}

static void h_decide(bt_http_req *req, void *ud)
{
    static const char *const allowed[] = {"decision", "approved", "comment", "by"};
    bt_api *api = ud;
    const char *id = bt_api_path_id(req, "approval");
    if (!id)
        return;
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    const char *decision, *comment, *by;
    int approve = -1;
    if (bt_api_check_fields(req, body, allowed, sizeof allowed / sizeof allowed[0]) < 0 ||
        bt_api_field_str(req, body, "decision", 1, &decision) < 0 ||
        bt_api_field_str(req, body, "comment", 0, &comment) < 0 ||
        bt_api_field_str(req, body, "by", 1, &by) < 0)
        goto done;
    const json_t *approved = json_object_get(body, "approved");
    if (approved && !json_is_boolean(approved)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'approved' must be true or false");
        goto done;
    }
    if (decision) {
        approve = parse_decision(decision);
        if (approve < 0) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "field 'decision' must be 'approve' or 'reject' (got '%s')",
                                  decision);
            goto done;
        }
        if (approved && json_is_true(approved) != (approve == 1)) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "'decision' and 'approved' disagree; give one");
            goto done;
        }
    } else if (approved) {
        approve = json_is_true(approved);
    } else {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'decision' is required: 'approve' or 'reject' (or "
                              "'approved': true|false)");
        goto done;
    }
    start_decide(req, api, id, approve == 1, by, comment);
done:
    json_decref(body);
}

/* POST /api/approvals/{id}/approve|reject with an optional {"comment", "by"}. */
static void decide_shortcut(bt_http_req *req, bt_api *api, bool approve)
{
    static const char *const allowed[] = {"comment", "by"};
    const char *id = bt_api_path_id(req, "approval");
    if (!id)
        return;
    json_t *body = NULL;
    const char *comment = NULL, *by = NULL;
    size_t len = 0;
    bt_http_req_body(req, &len);
    if (len > 0) {
        if (bt_http_req_json(req, &body) < 0)
            return;
        if (bt_api_check_fields(req, body, allowed, 2) < 0 ||
            bt_api_field_str(req, body, "comment", 0, &comment) < 0 ||
            bt_api_field_str(req, body, "by", 1, &by) < 0) {
            json_decref(body);
            return;
        }
    }
    start_decide(req, api, id, approve, by, comment);
    json_decref(body);
}

static void h_approve(bt_http_req *req, void *ud)
{
    decide_shortcut(req, ud, true);
}

static void h_reject(bt_http_req *req, void *ud)
{
    decide_shortcut(req, ud, false);
}

/* ---------------------------------------------------------------------------------
 * Registration.
 */
int bt_api_workflows_register(bt_api *api, bt_error *err)
{
    wf_group *g = bt_xcalloc(1, sizeof *g);
    g->api = api;
    g->sub = -1;
    int rc = bt_api_on_cleanup(api, group_free, g, err);
    if (rc < 0) {
        free(g);
        return rc;
    }
    rc = bt_api_on_stop(api, group_stop, g, err);
    if (rc < 0)
        return rc;
    const bt_http_route routes[] = {
        {"GET", "/api/workflows", BT_HTTP_SCOPE_READ, h_workflows, api, 0, 0},
        {"GET", "/api/workflows/{id}", BT_HTTP_SCOPE_READ, h_workflow, api, 0, 0},
        {"GET", "/api/personas", BT_HTTP_SCOPE_READ, h_personas, api, 0, 0},
        {"POST", "/api/execute", BT_HTTP_SCOPE_WRITE, h_execute, g, 0, 0},
        {"POST", "/api/workflow/execute", BT_HTTP_SCOPE_WRITE, h_workflow_execute, api, 0, 0},
        {"GET", "/api/workflow/status/{work_item_id}", BT_HTTP_SCOPE_READ, h_workflow_status, api,
         0, 0},
        {"GET", "/api/workflow/structure", BT_HTTP_SCOPE_READ, h_structure, api, 0, 0},
        {"GET", "/api/runs", BT_HTTP_SCOPE_READ, h_runs, api, 0, 0},
        {"GET", "/api/runs/{id}", BT_HTTP_SCOPE_READ, h_run, api, 0, 0},
        {"GET", "/api/runs/{id}/steps", BT_HTTP_SCOPE_READ, h_run_steps, api, 0, 0},
        {"POST", "/api/runs/{id}/cancel", BT_HTTP_SCOPE_WRITE, h_run_cancel, api, 0, 0},
        {"GET", "/api/approvals", BT_HTTP_SCOPE_READ, h_approvals, api, 0, 0},
        {"GET", "/api/approvals/{id}", BT_HTTP_SCOPE_READ, h_approval, api, 0, 0},
        {"POST", "/api/approvals/{id}", BT_HTTP_SCOPE_WRITE, h_decide, api, 0, 0},
        {"POST", "/api/approvals/{id}/approve", BT_HTTP_SCOPE_WRITE, h_approve, api, 0, 0},
        {"POST", "/api/approvals/{id}/reject", BT_HTTP_SCOPE_WRITE, h_reject, api, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
