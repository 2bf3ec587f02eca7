/*
 * work.c - seed 002's distributed worker protocol, with seed 002's exact JSON shapes
 * plus additive fields (docs/api.md):
 *
 *   GET  /work/next?worker_id=W   claim the next ready task for W under a lease (worker)
 *   POST /work/heartbeat          extend W's lease on its task (worker)
 *   POST /work/complete           W finished its task (success:false = failed) (worker)
 *   POST /work/failed             W's task failed: retry with backoff or fail (worker)
 *   GET  /workers                 the worker fleet with health (read)
 *   GET  /queue                   pending / in_progress / recent completed tasks (read)
 *
 * Fencing. A claim gives the worker a lease (queue.lease) and a fencing token
 * (lease_token). Heartbeat, complete and failed act on the task only while the worker
 * still holds it: the task is found by task_id, else by issue_number among in_progress
 * tasks; the token is the lease_token sent, else (seed 002 workers send none) the
 * task's current token when its lease owner is this worker. The store re-checks
 * (owner, token) in the same transaction as the change, so a worker whose lease
 * expired and whose task went to someone else gets 409 "stale" and nothing changes.
 *
 * Worker tracking. Every successful call records the worker in the store
 * (bt_store_worker_upsert: ip from the request peer, idle/busy, current task,
 * last_seen = now) before answering; health is derived from last_seen against
 * workers.offline_after when /workers is read (the reaper, src/core/reaper.c, logs the
 * transitions).
 */
#include "api/api.h"

#include "base/id.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "http/server.h"
#include "obs/log.h"
#include "store/store.h"
#include "workspace/workspace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LEASE_MS         300000
#define DEFAULT_OFFLINE_AFTER_MS 120000
#define WORKER_ID_MAX            200
#define QUEUE_LIST_LIMIT         100 /* pending and in_progress items shown by /queue */
#define QUEUE_COMPLETED_LIMIT    20  /* most recent completed items shown by /queue */
#define MATCH_SCAN_LIMIT         1000

static int64_t lease_ms(const bt_api *api)
{
    return api->cfg && api->cfg->queue.lease_ms > 0 ? api->cfg->queue.lease_ms : DEFAULT_LEASE_MS;
}

static int64_t offline_after_ms(const bt_api *api)
{
    return api->cfg && api->cfg->workers.offline_after_ms > 0 ? api->cfg->workers.offline_after_ms
                                                              : DEFAULT_OFFLINE_AFTER_MS;
}

static json_t *iso_or_null(int64_t ms)
{
    char buf[BT_TIME_ISO_LEN];
    return ms > 0 ? json_string(bt_time_format_iso(ms, buf)) : json_null();
}

/* The tracker issue number of a task (meta.issue_number, an integer or a string of
 * digits), or -1. */
static int64_t task_issue_number(const bt_task *t)
{
    const json_t *v = t->meta ? json_object_get(t->meta, "issue_number") : NULL;
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        return json_integer_value(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end = NULL;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (*s && !*end && !errno && n >= 0)
            return n;
    }
    return -1;
}

static json_t *issue_json(const bt_task *t)
{
    int64_t n = task_issue_number(t);
    return n >= 0 ? json_integer(n) : json_null();
}

/* meta.repository, else the task's project repository, else trackers.github.repo. */
static const char *task_repository(const bt_api *api, const bt_task *t)
{
    const char *r = bt_json_str(t->meta, "repository", NULL);
    if (r && *r)
        return r;
    if (t->project && api->cfg) {
        const bt_config_project *p = NULL;
        if (bt_config_project_resolve(api->cfg, t->project, 0, &p, NULL) == 0 && p && p->repo)
            return p->repo;
    }
    return api->cfg ? api->cfg->trackers.github.repo : NULL;
}

/* The branch for a task: meta.branch_name when a tracker chose one, else
 * workspace.branch_template rendered by bt_workspace_branch (the local pipeline's rule,
 * so a task's branch has one name wherever it runs); a template git would refuse falls
 * back to the default one. Caller frees. */
static char *task_branch(const bt_api *api, const bt_task *t)
{
    const char *given = bt_json_str(t->meta, "branch_name", NULL);
    if (given && *given)
        return bt_xstrdup(given);
    int64_t num = task_issue_number(t);
    char numbuf[32] = "";
    if (num >= 0)
        snprintf(numbuf, sizeof numbuf, "%lld", (long long)num);
    else if (t->external_id)
        snprintf(numbuf, sizeof numbuf, "%s", t->external_id);
    const char *ident = t->identifier && *t->identifier ? t->identifier : t->id;
    bt_strbuf sb = BT_STRBUF_INIT;
    if (bt_workspace_branch(api->cfg ? api->cfg->workspace.branch_template : NULL, numbuf, ident,
                            t->id, &sb, NULL) < 0) {
        bt_strbuf_reset(&sb);
        bt_workspace_branch(NULL, numbuf, ident, t->id, &sb, NULL);
    }
    return bt_strbuf_detach(&sb, NULL);
}

/* Seed 002's work item, in the seed's key order, then baton's additive fields. */
static json_t *work_item_json(const bt_api *api, const bt_task *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "work_available", json_true());
    json_object_set_new(o, "issue_number", issue_json(t));
    json_object_set_new(o, "title", json_string(t->title ? t->title : ""));
    json_object_set_new(o, "body", json_string(t->body ? t->body : ""));
    json_object_set_new(o, "labels", t->labels ? json_deep_copy(t->labels) : json_array());
    char *branch = task_branch(api, t);
    json_object_set_new(o, "branch_name", json_string(branch));
    free(branch);
    const char *repo = task_repository(api, t);
    json_object_set_new(o, "repository", repo ? json_string(repo) : json_null());
    json_object_set_new(o, "task_id", json_string(t->id));
    json_object_set_new(o, "lease_token", json_integer(t->fencing));
    json_object_set_new(o, "lease_expires_at", iso_or_null(t->lease_expires_at));
    json_object_set_new(o, "workflow", t->workflow ? json_string(t->workflow) : json_null());
    json_object_set_new(o, "project", t->project ? json_string(t->project) : json_null());
    return o;
}

/* ---------------------------------------------------------------------------------
 * Answering after recording the worker. The response is built first; the worker row
 * is written; the answer goes out once that write is durable (a failed worker write
 * is logged, not fatal: the task operation itself already committed).
 */
typedef struct reply_ctx {
    bt_api *api;
    bt_http_req *req;
    int status;
    json_t *resp;
    char *worker;
} reply_ctx;

static void on_worker_saved(void *ud, int rc, const bt_error *err, const bt_worker *w)
{
    reply_ctx *c = ud;
    (void)w;
    if (rc < 0)
        bt_log_warn(c->api->log, "recording a worker failed", BT_LF_STR("worker", c->worker),
                    BT_LF_STR("error", err ? err->msg : bt_strerror(rc)));
    bt_http_respond_json(c->req, c->status, c->resp);
    free(c->worker);
    free(c);
}

/* Takes ownership of resp. status is "idle" or "busy"; current_task may be NULL. */
static void record_worker_then_reply(bt_api *api, bt_http_req *req, const char *worker,
                                     const char *ip, const char *status, const char *current_task,
                                     int http_status, json_t *resp)
{
    reply_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->status = http_status;
    c->resp = resp;
    c->worker = bt_xstrdup(worker);
    bt_worker_input in = {0};
    in.id = worker;
    in.ip = ip;
    in.status = status;
    in.current_task = current_task;
    bt_store_worker_upsert(api->store, &in, on_worker_saved, c);
}

static int valid_worker_id(bt_http_req *req, const char *w)
{
    if (!w || !*w) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "worker_id is required: the worker's unique name, e.g. worker-1 "
                              "(seed 002's WORKER_ID)");
        return 0;
    }
    if (strlen(w) > WORKER_ID_MAX) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "worker_id is longer than %d characters", WORKER_ID_MAX);
        return 0;
    }
    for (const char *p = w; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "worker_id must not contain control characters");
            return 0;
        }
    return 1;
}

/* ---------------------------------------------------------------------------------
 * GET /work/next?worker_id=W
 */
typedef struct next_ctx {
    bt_api *api;
    bt_http_req *req;
    char *worker;
    char *ip;
} next_ctx;

static void on_claimed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                       const char *next_cursor)
{
    next_ctx *c = ud;
    (void)next_cursor;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else if (n == 0) {
        record_worker_then_reply(c->api, c->req, c->worker, c->ip, "idle", NULL, 200,
                                 json_pack("{s:b}", "work_available", 0));
    } else {
        const bt_task *t = tasks[0];
        bt_log_info(c->api->log, "work claimed", BT_LF_STR("worker", c->worker),
                    BT_LF_STR("task", t->id), BT_LF_INT("lease_token", t->fencing),
                    BT_LF_INT("attempt", t->attempts));
        record_worker_then_reply(c->api, c->req, c->worker, c->ip, "busy", t->id, 200,
                                 work_item_json(c->api, t));
    }
    free(c->worker);
    free(c->ip);
    free(c);
}

static void h_next(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    const char *worker = bt_http_req_query(req, "worker_id");
    if (!valid_worker_id(req, worker))
        return;
    next_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->worker = bt_xstrdup(worker);
    c->ip = bt_xstrdup(bt_http_req_peer(req));
    bt_claim_opts o = {0};
    o.owner = c->worker;
    o.lease_ms = lease_ms(api);
    o.max = 1;
    bt_http_req_suspend(req);
    bt_store_claim(api->store, &o, on_claimed, c);
}

/* ---------------------------------------------------------------------------------
 * Heartbeat, complete, failed: find the task, check the holder, act through the store.
 */
typedef enum held_op { OP_HEARTBEAT, OP_COMPLETE, OP_FAIL } held_op;

typedef struct held_ctx {
    bt_api *api;
    bt_http_req *req;
    held_op op;
    char *worker, *ip;
    int64_t issue; /* -1 = not given */
    int has_token;
    int64_t token;
    json_t *result; /* complete: the result object to store (owned) */
    char *error;    /* fail: the reported error */
    bool retryable;
    char id[BT_ID_LEN + 1];
} held_ctx;

static void held_free(held_ctx *c)
{
    free(c->worker);
    free(c->ip);
    json_decref(c->result);
    free(c->error);
    free(c);
}

static void on_heartbeat(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    held_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else {
        json_t *resp = json_object();
        json_object_set_new(resp, "ok", json_true());
        json_object_set_new(resp, "lease_expires_at", iso_or_null(t->lease_expires_at));
        json_object_set_new(resp, "lease_token", json_integer(t->fencing));
        record_worker_then_reply(c->api, c->req, c->worker, c->ip, "busy", t->id, 200, resp);
    }
    held_free(c);
}

static void on_completed(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    held_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else {
        bt_log_info(c->api->log, "work completed", BT_LF_STR("worker", c->worker),
                    BT_LF_STR("task", t->id));
        json_t *resp = json_object();
        json_object_set_new(resp, "ok", json_true());
        json_object_set_new(resp, "status", json_string(bt_task_status_name(t->status)));
        json_object_set_new(resp, "task_id", json_string(t->id));
        record_worker_then_reply(c->api, c->req, c->worker, c->ip, "idle", NULL, 200, resp);
    }
    held_free(c);
}

static void on_failed(void *ud, int rc, const bt_error *err, const bt_task *t,
                      bt_fail_outcome outcome)
{
    held_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
    } else {
        bt_log_info(c->api->log, "work failed", BT_LF_STR("worker", c->worker),
                    BT_LF_STR("task", t->id),
                    BT_LF_STR("outcome", outcome == BT_FAIL_RETRY ? "retry" : "failed"),
                    BT_LF_INT("attempts", t->attempts), BT_LF_STR("error", t->error));
        json_t *resp = json_object();
        json_object_set_new(resp, "ok", json_true());
        json_object_set_new(resp, "outcome",
                            json_string(outcome == BT_FAIL_RETRY ? "retry" : "failed"));
        json_object_set_new(resp, "status", json_string(bt_task_status_name(t->status)));
        json_object_set_new(resp, "task_id", json_string(t->id));
        json_object_set_new(resp, "attempts", json_integer(t->attempts));
        json_object_set_new(resp, "max_attempts", json_integer(t->max_attempts));
        json_object_set_new(resp, "next_attempt_at",
                            outcome == BT_FAIL_RETRY ? iso_or_null(t->next_attempt_at)
                                                     : json_null());
        record_worker_then_reply(c->api, c->req, c->worker, c->ip, "idle", NULL, 200, resp);
    }
    held_free(c);
}

static void respond_stale(held_ctx *c, const bt_task *t)
{
    bt_http_respond_error(c->req, 409, bt_error_name(BT_ESTALE),
                          "task %s is not held by worker '%s' (it is %s, lease owner %s); drop "
                          "this result",
                          t->id, c->worker, bt_task_status_name(t->status),
                          t->lease_owner ? t->lease_owner : "none");
}

/* The task is found: decide the fencing token and hand the operation to the store. */
static void act_on(held_ctx *c, const bt_task *t)
{
    int64_t fencing;
    if (c->has_token)
        fencing = c->token;
    else if (t->status == BT_TASK_IN_PROGRESS && t->lease_owner &&
             strcmp(t->lease_owner, c->worker) == 0)
        fencing = t->fencing;
    else {
        respond_stale(c, t);
        held_free(c);
        return;
    }
    snprintf(c->id, sizeof c->id, "%s", t->id);
    bt_store *s = c->api->store;
    switch (c->op) {
    case OP_HEARTBEAT:
        bt_store_heartbeat(s, c->id, c->worker, fencing, lease_ms(c->api), on_heartbeat, c);
        break;
    case OP_COMPLETE:
        bt_store_complete(s, c->id, c->worker, fencing, c->result, on_completed, c);
        break;
    case OP_FAIL:
        bt_store_fail(s, c->id, c->worker, fencing, c->error, c->retryable, on_failed, c);
        break;
    }
}

static void on_task_by_id(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    held_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
        held_free(c);
        return;
    }
    act_on(c, t);
}

static void on_in_progress(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                           const char *next_cursor)
{
    held_ctx *c = ud;
    (void)next_cursor;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
        held_free(c);
        return;
    }
    const bt_task *mine = NULL, *other = NULL;
    for (size_t i = 0; i < n && !mine; i++) {
        if (task_issue_number(tasks[i]) != c->issue)
            continue;
        if (tasks[i]->lease_owner && strcmp(tasks[i]->lease_owner, c->worker) == 0)
            mine = tasks[i];
        else if (!other)
            other = tasks[i];
    }
    if (mine || other) {
        act_on(c, mine ? mine : other);
        return;
    }
    bt_http_respond_error(c->req, 409, bt_error_name(BT_ESTALE),
                          "no in-progress task for issue #%lld is held by worker '%s' (its lease "
                          "may have expired, or it was cancelled or finished); drop this result",
                          (long long)c->issue, c->worker);
    held_free(c);
}

/* Parse the shared body fields; returns NULL after answering 400. body is borrowed. */
static held_ctx *held_begin(bt_http_req *req, bt_api *api, held_op op, const json_t *body)
{
    if (!json_is_object(body)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "the request body must be a JSON object");
        return NULL;
    }
    const json_t *w = json_object_get(body, "worker_id");
    if (w && !json_is_string(w)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field 'worker_id' must be a string");
        return NULL;
    }
    if (!valid_worker_id(req, json_string_value(w)))
        return NULL;
    const json_t *tid = json_object_get(body, "task_id");
    if (json_is_string(tid) && json_string_length(tid) == 0)
        tid = NULL; /* a client that never got a task_id may send "" */
    if (tid && !json_is_null(tid) && !json_is_string(tid)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field 'task_id' must be a string");
        return NULL;
    }
    if (json_is_string(tid) && !bt_id_valid(json_string_value(tid))) {
        bt_http_respond_error(req, 404, "not_found", "no task with id '%s'",
                              json_string_value(tid));
        return NULL;
    }
    const json_t *iss = json_object_get(body, "issue_number");
    int64_t issue = -1;
    if (iss && !json_is_null(iss)) {
        if (json_is_integer(iss) && json_integer_value(iss) >= 0) {
            issue = json_integer_value(iss);
        } else if (json_is_string(iss) && json_string_value(iss)[0]) {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(json_string_value(iss), &end, 10);
            if (!*end && !errno && v >= 0)
                issue = v;
        }
        if (issue < 0) {
            bt_http_respond_error(req, 400, "invalid_argument",
                                  "field 'issue_number' must be a non-negative integer");
            return NULL;
        }
    }
    if (!json_is_string(tid) && issue < 0) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "say which task: give 'task_id' (from /work/next) or "
                              "'issue_number'");
        return NULL;
    }
    const json_t *tok = json_object_get(body, "lease_token");
    if (tok && !json_is_null(tok) && !json_is_integer(tok)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'lease_token' must be the integer /work/next returned");
        return NULL;
    }
    held_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->op = op;
    c->worker = bt_xstrdup(json_string_value(w));
    c->ip = bt_xstrdup(bt_http_req_peer(req));
    c->issue = issue;
    c->retryable = true;
    if (json_is_integer(tok)) {
        c->has_token = 1;
        c->token = json_integer_value(tok);
    }
    if (json_is_string(tid))
        snprintf(c->id, sizeof c->id, "%s", json_string_value(tid));
    return c;
}

/* Start the lookup (after held_begin and any per-route parsing). */
static void held_lookup(held_ctx *c)
{
    bt_http_req_suspend(c->req);
    if (c->id[0]) {
        bt_store_task_get(c->api->store, c->id, on_task_by_id, c);
        return;
    }
    bt_task_filter f = {0};
    f.status_mask = 1u << BT_TASK_IN_PROGRESS;
    f.limit = MATCH_SCAN_LIMIT;
    bt_store_task_list(c->api->store, &f, on_in_progress, c);
}

static void h_heartbeat(bt_http_req *req, void *ud)
{
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    held_ctx *c = held_begin(req, ud, OP_HEARTBEAT, body);
    json_decref(body);
    if (c)
        held_lookup(c);
}

static int opt_string(bt_http_req *req, const json_t *body, const char *key, const char **out)
{
    const json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field '%s' must be a string", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int opt_bool(bt_http_req *req, const json_t *body, const char *key, bool dflt, bool *out)
{
    const json_t *v = json_object_get(body, key);
    *out = dflt;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field '%s' must be true or false",
                              key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static void h_complete(bt_http_req *req, void *ud)
{
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    held_ctx *c = held_begin(req, ud, OP_COMPLETE, body);
    if (!c)
        goto done;
    const char *pr_url, *error;
    bool success;
    const json_t *result = json_object_get(body, "result");
    if (opt_string(req, body, "pr_url", &pr_url) < 0 ||
        opt_string(req, body, "error", &error) < 0 ||
        opt_bool(req, body, "success", true, &success) < 0) {
        held_free(c);
        goto done;
    }
    if (result && !json_is_null(result) && !json_is_object(result)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field 'result' must be a JSON object");
        held_free(c);
        goto done;
    }
    if (success) {
        c->result = json_is_object(result) ? json_deep_copy(result) : json_object();
        if (pr_url)
            json_object_set_new(c->result, "pr_url", json_string(pr_url));
    } else {
        /* seed 002: success:false is a failure report */
        c->op = OP_FAIL;
        c->error = bt_xstrdup(error ? error : "the worker reported success: false");
        if (opt_bool(req, body, "retryable", true, &c->retryable) < 0) {
            held_free(c);
            goto done;
        }
    }
    held_lookup(c);
done:
    json_decref(body);
}

static void h_failed(bt_http_req *req, void *ud)
{
    json_t *body;
    if (bt_http_req_json(req, &body) < 0)
        return;
    held_ctx *c = held_begin(req, ud, OP_FAIL, body);
    if (!c)
        goto done;
    const char *error;
    if (opt_string(req, body, "error", &error) < 0 ||
        opt_bool(req, body, "retryable", true, &c->retryable) < 0) {
        held_free(c);
        goto done;
    }
    c->error = bt_xstrdup(error ? error : "the worker reported a failure without a message");
    held_lookup(c);
done:
    json_decref(body);
}

/* ---------------------------------------------------------------------------------
 * GET /workers - seed 002's exact keys. current_task is the issue number when the
 * task has one, else the task id; null when idle.
 */
typedef struct workers_ctx {
    bt_api *api;
    bt_http_req *req;
    json_t *list;
    size_t pending;
} workers_ctx;

typedef struct worker_task_ctx {
    workers_ctx *all;
    size_t index;
} worker_task_ctx;

static void workers_finish(workers_ctx *c)
{
    bt_http_respond_json(c->req, 200, json_pack("{s:O}", "workers", c->list));
    json_decref(c->list);
    free(c);
}

static void on_worker_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    worker_task_ctx *wt = ud;
    workers_ctx *c = wt->all;
    (void)err;
    if (rc == 0 && task_issue_number(t) >= 0)
        json_object_set_new(json_array_get(c->list, wt->index), "current_task", issue_json(t));
    free(wt);
    if (--c->pending == 0)
        workers_finish(c);
}

static void on_workers(void *ud, int rc, const bt_error *err, bt_worker *const *workers, size_t n)
{
    workers_ctx *c = ud;
    if (rc < 0) {
        bt_http_respond_bt_error(c->req, rc, err);
        json_decref(c->list);
        free(c);
        return;
    }
    int64_t now = bt_time_wall_ms();
    int64_t limit = offline_after_ms(c->api);
    c->pending = 1; /* held until every lookup is issued */
    for (size_t i = 0; i < n; i++) {
        const bt_worker *w = workers[i];
        int healthy = now - w->last_seen <= limit;
        int busy = w->status && strcmp(w->status, "busy") == 0;
        const char *cur = busy ? w->current_task : NULL;
        char seen[BT_TIME_ISO_LEN];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(w->id));
        json_object_set_new(o, "ip", w->ip ? json_string(w->ip) : json_null());
        json_object_set_new(o, "status",
                            json_string(!healthy    ? "offline"
                                        : w->status ? w->status
                                                    : "idle"));
        json_object_set_new(o, "current_task", cur ? json_string(cur) : json_null());
        json_object_set_new(o, "last_seen",
                            json_string(bt_time_format_iso_seconds(w->last_seen, seen)));
        json_object_set_new(o, "health", json_string(healthy ? "healthy" : "unhealthy"));
        json_array_append_new(c->list, o);
        if (cur && bt_id_valid(cur)) {
            worker_task_ctx *wt = bt_xcalloc(1, sizeof *wt);
            wt->all = c;
            wt->index = i;
            c->pending++;
            bt_store_task_get(c->api->store, cur, on_worker_task, wt);
        }
    }
    if (--c->pending == 0)
        workers_finish(c);
}

static void h_workers(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    workers_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->list = json_array();
    bt_http_req_suspend(req);
    bt_store_worker_list(api->store, on_workers, c);
}

/* ---------------------------------------------------------------------------------
 * GET /queue - {"pending":[...],"in_progress":[...],"completed":[...]} of task
 * summaries: pending in queue order and in_progress (first QUEUE_LIST_LIMIT each), the
 * QUEUE_COMPLETED_LIMIT most recently created completed tasks.
 */
enum { Q_PENDING, Q_IN_PROGRESS, Q_COMPLETED, Q__COUNT };
static const char *const queue_keys[Q__COUNT] = {"pending", "in_progress", "completed"};

typedef struct queue_ctx {
    bt_http_req *req;
    json_t *lists[Q__COUNT];
    int pending;
    int rc;
    bt_error err;
} queue_ctx;

typedef struct queue_part {
    queue_ctx *all;
    int which;
} queue_part;

static json_t *task_summary(const bt_task *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "task_id", json_string(t->id));
    json_object_set_new(o, "issue_number", issue_json(t));
    json_object_set_new(o, "identifier",
                        json_string(t->identifier && *t->identifier ? t->identifier : t->id));
    json_object_set_new(o, "title", json_string(t->title ? t->title : ""));
    json_object_set_new(o, "status", json_string(bt_task_status_name(t->status)));
    json_object_set_new(o, "labels", t->labels ? json_deep_copy(t->labels) : json_array());
    json_object_set_new(o, "project", t->project ? json_string(t->project) : json_null());
    json_object_set_new(o, "priority",
                        t->priority == BT_PRIORITY_NONE ? json_null() : json_integer(t->priority));
    json_object_set_new(o, "attempts", json_integer(t->attempts));
    json_object_set_new(o, "max_attempts", json_integer(t->max_attempts));
    json_object_set_new(o, "worker", t->lease_owner ? json_string(t->lease_owner) : json_null());
    json_object_set_new(o, "lease_expires_at", iso_or_null(t->lease_expires_at));
    json_object_set_new(o, "next_attempt_at", iso_or_null(t->next_attempt_at));
    json_object_set_new(o, "result", t->result ? json_deep_copy(t->result) : json_null());
    json_object_set_new(o, "created_at", iso_or_null(t->created_at));
    json_object_set_new(o, "finished_at", iso_or_null(t->finished_at));
    return o;
}

static void on_queue_part(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                          const char *next_cursor)
{
    queue_part *qp = ud;
    queue_ctx *c = qp->all;
    (void)next_cursor;
    if (rc < 0) {
        if (c->rc == 0) {
            c->rc = rc;
            c->err = *err;
        }
    } else {
        for (size_t i = 0; i < n; i++)
            json_array_append_new(c->lists[qp->which], task_summary(tasks[i]));
    }
    free(qp);
    if (--c->pending > 0)
        return;
    if (c->rc < 0) {
        bt_http_respond_bt_error(c->req, c->rc, &c->err);
    } else {
        json_t *o = json_object();
        for (int i = 0; i < Q__COUNT; i++)
            json_object_set(o, queue_keys[i], c->lists[i]);
        bt_http_respond_json(c->req, 200, o);
    }
    for (int i = 0; i < Q__COUNT; i++)
        json_decref(c->lists[i]);
    free(c);
}

static void h_queue(bt_http_req *req, void *ud)
{
    bt_api *api = ud;
    static const bt_task_status st[Q__COUNT] = {BT_TASK_PENDING, BT_TASK_IN_PROGRESS,
                                                BT_TASK_COMPLETED};
    queue_ctx *c = bt_xcalloc(1, sizeof *c);
    c->req = req;
    c->pending = Q__COUNT;
    bt_http_req_suspend(req);
    for (int i = 0; i < Q__COUNT; i++) {
        c->lists[i] = json_array();
        queue_part *qp = bt_xcalloc(1, sizeof *qp);
        qp->all = c;
        qp->which = i;
        bt_task_filter f = {0};
        f.status_mask = 1u << st[i];
        f.limit = i == Q_COMPLETED ? QUEUE_COMPLETED_LIMIT : QUEUE_LIST_LIMIT;
        f.newest_first = i == Q_COMPLETED;
        bt_store_task_list(api->store, &f, on_queue_part, qp);
    }
}

/* ---------------------------------------------------------------------------------
 * Registration.
 */
int bt_api_work_register(bt_api *api, bt_error *err)
{
    const bt_http_route routes[] = {
        {"GET", "/work/next", BT_HTTP_SCOPE_WORKER, h_next, api, 0, 0},
        {"POST", "/work/heartbeat", BT_HTTP_SCOPE_WORKER, h_heartbeat, api, 0, 0},
        {"POST", "/work/complete", BT_HTTP_SCOPE_WORKER, h_complete, api, 0, 0},
        {"POST", "/work/failed", BT_HTTP_SCOPE_WORKER, h_failed, api, 0, 0},
        {"GET", "/workers", BT_HTTP_SCOPE_READ, h_workers, api, 0, 0},
        {"GET", "/queue", BT_HTTP_SCOPE_READ, h_queue, api, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
