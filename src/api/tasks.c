/*
 * tasks.c - the tasks API (seed 003's approval flow plus baton's resource routes):
 *
 *   GET   /api/tasks                 list with filters and cursor pagination (read)
 *   POST  /api/tasks                 create; 201 once durable, 200 on a dedupe hit (write)
 *   GET   /api/tasks/{id}            one task (read)
 *   PATCH /api/tasks/{id}            edit a draft or pending task (write)
 *   PATCH /api/tasks/{id}/approve    draft -> pending (write, seed 003)
 *   POST  /api/tasks/{id}/cancel     draft|pending|in_progress -> cancelled (write)
 *   POST  /api/tasks/{id}/retry      failed|cancelled -> pending, attempts reset (write)
 *   GET   /api/tasks/{id}/events     the task's events after a sequence number (read)
 *   GET   /api/agent-runs            recent runs with their steps (read, seed 003)
 *
 * Every handler validates its input completely before touching the store, so bad
 * input leaves stored data untouched, then suspends and answers from the store
 * callback: a 201 is sent only once the store reports the task durable. Unknown body
 * fields are refused (a typo must not silently drop data). docs/api.md documents the
 * shapes.
 */
#include "api/api.h"
#include "api/request.h"

#include "base/id.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "http/server.h"
#include "store/store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS_DEFAULT_LIMIT 50
#define RUNS_MAX_LIMIT     200

/* ---------------------------------------------------------------------------------
 * Input helpers. Each returns 0, or -1 after answering 400 itself.
 */

static int field_max_attempts(bt_http_req *req, const json_t *o, int *set, int32_t *out)
{
    const json_t *v = json_object_get(o, "max_attempts");
    *set = 0;
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'max_attempts' must be an integer from 1 to 100");
        return -1;
    }
    *set = 1;
    *out = (int32_t)json_integer_value(v);
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Store callbacks that answer with one task.
 */
static void on_task_reply(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    bt_http_req *req = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(req, rc, err);
        return;
    }
    bt_http_respond_json(req, 200, bt_task_to_json(t));
}

/* ---------------------------------------------------------------------------------
 * GET /api/tasks
 */
static void on_list(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                    const char *next_cursor)
{
    bt_http_req *req = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(req, rc, err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, bt_task_to_json(tasks[i]));
    bt_http_respond_json(req, 200,
                         json_pack("{s:o,s:o}", "tasks", arr, "next_cursor",
                                   next_cursor ? json_string(next_cursor) : json_null()));
}

static int parse_status_list(bt_http_req *req, const char *s, unsigned *mask)
{
    *mask = 0;
    char *copy = bt_xstrdup(s);
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ')
            tok[--len] = '\0';
        if (!*tok)
            continue;
        bt_task_status st;
        if (bt_task_status_parse(tok, &st) < 0) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "unknown status '%s' in 'status'; use a comma-separated list of "
                                  "draft, pending, in_progress, completed, failed, cancelled",
                                  tok);
            rc = -1;
            break;
        }
        *mask |= 1u << st;
    }
    free(copy);
    return rc;
}

static void h_list(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    bt_task_filter f = {0};
    const char *status = bt_http_req_query(req, "status");
    if (status && parse_status_list(req, status, &f.status_mask) < 0)
        return;
    f.project = bt_http_req_query(req, "project");
    f.source = bt_http_req_query(req, "source");
    f.label = bt_http_req_query(req, "label");
    f.workflow = bt_http_req_query(req, "workflow");
    f.text = bt_http_req_query(req, "q");
    if (f.text && !*f.text)
        f.text = NULL;
    f.cursor = bt_http_req_query(req, "cursor");
    if (f.cursor && !*f.cursor)
        f.cursor = NULL;
    if (f.cursor && !bt_id_valid(f.cursor)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "'cursor' must be the next_cursor of a previous page (got '%s')",
                              f.cursor);
        return;
    }
    long long limit;
    if (bt_api_query_int(req, "limit", 1, 1000, 100, &limit) < 0)
        return;
    f.limit = (int)limit;
    const char *order = bt_http_req_query(req, "order");
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "query parameter 'order' must be 'asc' or 'desc' (got '%s')", order);
        return;
    }
    f.newest_first = order && strcmp(order, "desc") == 0;
    bt_http_req_suspend(req);
    bt_store_task_list(api->store, &f, on_list, req);
}

/* ---------------------------------------------------------------------------------
 * POST /api/tasks
 */
static void on_created(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    bt_http_req *req = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(req, rc, err);
        return;
    }
    char loc[BT_ID_LEN + 16];
    snprintf(loc, sizeof loc, "/api/tasks/%s", t->id);
    bt_http_resp_header(req, "Location", loc);
    if (!created)
        bt_http_resp_header(req, "X-Baton-Deduplicated", "true");
    bt_http_respond_json(req, created ? 201 : 200, bt_task_to_json(t));
}

static void h_create(bt_http_req *req, void *ud)
{
    static const char *const allowed[] = {"title",        "body",     "labels",      "priority",
                                          "project",      "workflow", "external_id", "draft",
                                          "max_attempts", "meta",     "identifier"};
    bt_api *api = ud;
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    bt_task_input in = {0};
    int prio_set, max_set;
    const json_t *draft = NULL;
    if (bt_api_check_fields(req, body, allowed, sizeof allowed / sizeof allowed[0]) < 0 ||
        bt_api_field_str(req, body, "title", 1, &in.title) < 0 ||
        bt_api_field_str(req, body, "body", 0, &in.body) < 0 ||
        bt_api_field_str(req, body, "project", 1, &in.project) < 0 ||
        bt_api_field_str(req, body, "workflow", 1, &in.workflow) < 0 ||
        bt_api_field_str(req, body, "external_id", 1, &in.external_id) < 0 ||
        bt_api_field_str(req, body, "identifier", 1, &in.identifier) < 0 ||
        bt_api_field_labels(req, body, &in.labels) < 0 ||
        bt_api_field_object(req, body, "meta", &in.meta) < 0 ||
        bt_api_field_priority(req, body, &prio_set, &in.priority) < 0 ||
        field_max_attempts(req, body, &max_set, &in.max_attempts) < 0)
        goto done;
    if (!in.title) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'title' is required (a non-empty string)");
        goto done;
    }
    draft = json_object_get(body, "draft");
    if (draft && !json_is_boolean(draft)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field 'draft' must be true or false");
        goto done;
    }
    in.draft = draft && json_is_true(draft);
    in.source = "api";
    char *key = NULL;
    if (in.external_id) {
        size_t n = strlen(in.external_id) + 5;
        key = bt_xmalloc(n);
        snprintf(key, n, "api:%s", in.external_id);
        in.dedupe_key = key;
    }
    bt_http_req_suspend(req);
    bt_store_task_create(api->store, &in, on_created, req);
    free(key);
done:
    json_decref(body);
}

/* ---------------------------------------------------------------------------------
 * GET /api/tasks/{id}, PATCH /api/tasks/{id}
 */
static void h_get(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    const char *id = bt_api_path_id(req, "task");
    if (!id)
        return;
    bt_http_req_suspend(req);
    bt_store_task_get(api->store, id, on_task_reply, req);
}

static void h_patch(bt_http_req *req, void *ud)
{
    static const char *const allowed[] = {"title",   "body",     "labels",       "priority",
                                          "project", "workflow", "max_attempts", "meta"};
    bt_api *api = ud;
    const char *id = bt_api_path_id(req, "task");
    if (!id)
        return;
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    bt_task_patch p = {0};
    int prio_set, max_set;
    if (bt_api_check_fields(req, body, allowed, sizeof allowed / sizeof allowed[0]) < 0 ||
        bt_api_field_str(req, body, "title", 1, &p.title) < 0 ||
        bt_api_field_str(req, body, "body", 0, &p.body) < 0 ||
        bt_api_field_str(req, body, "project", 1, &p.project) < 0 ||
        bt_api_field_str(req, body, "workflow", 1, &p.workflow) < 0 ||
        bt_api_field_labels(req, body, &p.labels) < 0 ||
        bt_api_field_object(req, body, "meta", &p.meta) < 0 ||
        bt_api_field_priority(req, body, &prio_set, &p.priority) < 0 ||
        field_max_attempts(req, body, &max_set, &p.max_attempts) < 0)
        goto done;
    if (json_object_size(body) == 0) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "nothing to change: give at least one of title, body, labels, "
                              "priority, project, workflow, max_attempts, meta");
        goto done;
    }
    p.set_priority = prio_set != 0;
    p.set_max_attempts = max_set != 0;
    bt_http_req_suspend(req);
    bt_store_task_update(api->store, id, &p, on_task_reply, req);
done:
    json_decref(body);
}

/* ---------------------------------------------------------------------------------
 * Transitions. The store's transition to pending means "approve" from draft and
 * "retry" from failed|cancelled, so approve and retry first check the current status:
 * approving a failed task must not silently retry it.
 */
typedef struct transition_ctx {
    bt_api *api;
    bt_http_req *req;
    bt_task_status to;
    unsigned from_mask; /* statuses the route accepts; 0 = let the store decide */
    const char *verb;   /* "approve" */
    char *reason;
} transition_ctx;

static void transition_free(transition_ctx *c)
{
    free(c->reason);
    free(c);
}

static void on_transitioned(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    transition_ctx *c = ud;
    on_task_reply(c->req, rc, err, t);
    transition_free(c);
}

static void on_transition_checked(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    transition_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
        transition_free(c);
        return;
    }
    if (!(c->from_mask & (1u << t->status))) {
        bt_strbuf ok;
        bt_strbuf_init(&ok, 32);
        for (int i = 0; i < BT_TASK__COUNT; i++)
            if (c->from_mask & (1u << i))
                bt_strbuf_addf(&ok, "%s%s", ok.len ? " or " : "",
                               bt_task_status_name((bt_task_status)i));
        bt_http_respond_error(c->req, 409, bt_error_name(BT_ESTATE),
                              "cannot %s task %s: it is %s, and only a %s task can be %s", c->verb,
                              t->id, bt_task_status_name(t->status), bt_strbuf_cstr(&ok),
                              strcmp(c->verb, "approve") == 0 ? "approved" : "retried");
        bt_strbuf_release(&ok);
        transition_free(c);
        return;
    }
    bt_store_task_transition(c->api->store, t->id, c->to, c->reason, on_transitioned, c);
}

static void start_transition(bt_http_req *req, bt_api *api, bt_task_status to, unsigned from_mask,
                             const char *verb, const char *reason)
{
    const char *id = bt_api_path_id(req, "task");
    if (!id)
        return;
    transition_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->to = to;
    c->from_mask = from_mask;
    c->verb = verb;
    c->reason = bt_xstrdup(reason);
    bt_http_req_suspend(req);
    if (from_mask)
        bt_store_task_get(api->store, id, on_transition_checked, c);
    else
        bt_store_task_transition(api->store, id, to, c->reason, on_transitioned, c);
}

/* An optional {"reason": "..."} body; returns 0 (reason may stay NULL) or -1 after a 400.
 * *body_out is a new reference or NULL. */
static int optional_reason(bt_http_req *req, json_t **body_out, const char **reason)
{
    static const char *const allowed[] = {"reason"};
    size_t len = 0;
    *body_out = NULL;
    *reason = NULL;
    bt_http_req_body(req, &len);
    if (len == 0)
        return 0;
    if (bt_http_req_json(req, body_out) < 0)
        return -1;
    if (bt_api_check_fields(req, *body_out, allowed, 1) < 0 ||
        bt_api_field_str(req, *body_out, "reason", 1, reason) < 0) {
        json_decref(*body_out);
        *body_out = NULL;
        return -1;
    }
    return 0;
}

static void h_approve(bt_http_req *req, void *ud)
{
    start_transition(req, ud, BT_TASK_PENDING, 1u << BT_TASK_DRAFT, "approve", "approved");
}

static void h_cancel(bt_http_req *req, void *ud)
{
    json_t *body;
    const char *reason;
    if (optional_reason(req, &body, &reason) < 0)
        return;
    start_transition(req, ud, BT_TASK_CANCELLED, 0, "cancel",
                     reason ? reason : "cancelled through the API");
    json_decref(body);
}

static void h_retry(bt_http_req *req, void *ud)
{
    json_t *body;
    const char *reason;
    if (optional_reason(req, &body, &reason) < 0)
        return;
    start_transition(req, ud, BT_TASK_PENDING, (1u << BT_TASK_FAILED) | (1u << BT_TASK_CANCELLED),
                     "retry", reason ? reason : "retried through the API");
    json_decref(body);
}

/* ---------------------------------------------------------------------------------
 * GET /api/tasks/{id}/events?after=N&limit=M
 */
typedef struct events_ctx {
    bt_api *api;
    bt_http_req *req;
    bt_event_filter f;
    char id[BT_ID_LEN + 1];
} events_ctx;

static void on_events(void *ud, int rc, const bt_error *err, bt_event *const *events, size_t n)
{
    events_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else {
        json_t *arr = json_array();
        int64_t last = c->f.after_seq;
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, bt_event_to_json(events[i]));
            last = events[i]->seq;
        }
        bt_http_respond_json(c->req, 200,
                             json_pack("{s:o,s:I}", "events", arr, "last_seq", (json_int_t)last));
    }
    free(c);
}

static void on_events_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    events_ctx *c = ud;
    (void)t;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
        free(c);
        return;
    }
    c->f.task_id = c->id;
    bt_store_event_read(c->api->store, &c->f, on_events, c);
}

static void h_events(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    const char *id = bt_api_path_id(req, "task");
    if (!id)
        return;
    long long after, limit;
    if (bt_api_query_int(req, "after", 0, LLONG_MAX, 0, &after) < 0 ||
        bt_api_query_int(req, "limit", 1, 5000, 500, &limit) < 0)
        return;
    events_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    snprintf(c->id, sizeof c->id, "%s", id);
    c->f.after_seq = after;
    c->f.limit = (int)limit;
    bt_http_req_suspend(req);
    bt_store_task_get(api->store, id, on_events_task, c);
}

/* ---------------------------------------------------------------------------------
 * GET /api/agent-runs?limit=N&task_id=ID&status=S - recent runs, newest first, each
 * with its steps in order (seed 003's dashboard feed).
 */
typedef struct runs_ctx {
    bt_store *store;
    bt_http_req *req;
    json_t *runs; /* array of run objects; "steps" filled in as they arrive */
    size_t pending;
    int rc;
    bt_error err;
} runs_ctx;

typedef struct run_steps_ctx {
    runs_ctx *all;
    size_t index;
} run_steps_ctx;

static void runs_finish(runs_ctx *c)
{
    if (c->rc < 0)
        bt_http_respond_bt_error(c->req, c->rc, &c->err);
    else
        bt_http_respond_json(c->req, 200, json_pack("{s:O}", "runs", c->runs));
    json_decref(c->runs);
    free(c);
}

static void on_run_steps(void *ud, int rc, const bt_error *err, bt_step *const *steps, size_t n)
{
    run_steps_ctx *rs = ud;
    runs_ctx *c = rs->all;
    if (rc < 0 && c->rc == 0) {
        c->rc = rc;
        c->err = *err;
    } else if (rc == 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, bt_step_to_json(steps[i]));
        json_object_set_new(json_array_get(c->runs, rs->index), "steps", arr);
    }
    free(rs);
    if (--c->pending == 0)
        runs_finish(c);
}

static void on_runs(void *ud, int rc, const bt_error *err, bt_run *const *runs, size_t n)
{
    runs_ctx *c = ud;
    if (rc < 0) {
        c->rc = rc;
        c->err = *err;
        runs_finish(c);
        return;
    }
    if (n == 0) {
        runs_finish(c);
        return;
    }
    c->pending = n;
    for (size_t i = 0; i < n; i++) {
        json_t *r = bt_run_to_json(runs[i]);
        json_object_set_new(r, "steps", json_array());
        json_array_append_new(c->runs, r);
    }
    for (size_t i = 0; i < n; i++) {
        run_steps_ctx *rs = bt_xcalloc(1, sizeof *rs);
        rs->all = c;
        rs->index = i;
        bt_store_step_list(c->store, runs[i]->id, on_run_steps, rs);
    }
}

static void h_agent_runs(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    long long limit;
    if (bt_api_query_int(req, "limit", 1, RUNS_MAX_LIMIT, RUNS_DEFAULT_LIMIT, &limit) < 0)
        return;
    const char *task_id = bt_http_req_query(req, "task_id");
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
    runs_ctx *c = bt_xcalloc(1, sizeof *c);
    c->store = api->store;
    c->req = req;
    c->runs = json_array();
    bt_http_req_suspend(req);
    bt_store_run_list(api->store, task_id, status_s ? &status : NULL, (int)limit, on_runs, c);
}

/* ---------------------------------------------------------------------------------
 * Registration.
 */
int bt_api_tasks_register(bt_api *api, bt_error *err)
{
    const bt_http_route routes[] = {
        {"GET", "/api/tasks", BT_HTTP_SCOPE_READ, h_list, api, 0, 0},
        {"POST", "/api/tasks", BT_HTTP_SCOPE_WRITE, h_create, api, 0, 0},
        {"GET", "/api/tasks/{id}", BT_HTTP_SCOPE_READ, h_get, api, 0, 0},
        {"PATCH", "/api/tasks/{id}", BT_HTTP_SCOPE_WRITE, h_patch, api, 0, 0},
        {"PATCH", "/api/tasks/{id}/approve", BT_HTTP_SCOPE_WRITE, h_approve, api, 0, 0},
        {"POST", "/api/tasks/{id}/cancel", BT_HTTP_SCOPE_WRITE, h_cancel, api, 0, 0},
        {"POST", "/api/tasks/{id}/retry", BT_HTTP_SCOPE_WRITE, h_retry, api, 0, 0},
        {"GET", "/api/tasks/{id}/events", BT_HTTP_SCOPE_READ, h_events, api, 0, 0},
        {"GET", "/api/agent-runs", BT_HTTP_SCOPE_READ, h_agent_runs, api, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
