/*
 * model.c - the store's value types, shared by every backend: status names and
 * parsing, the task state machine table, and deep copy / free / JSON rendering of
 * tasks, runs, steps, events, workers and approvals; freeing agent calls.
 *
 * JSON renderings are what the API serves: timestamps become ISO-8601 UTC strings
 * (null when 0 = never), an unset priority is null, and owned JSON members are copied
 * so the result outlives the value it was made from.
 */
#include <stddef.h> /* before store.h: base/id.h uses size_t */

#include "store/store.h"

#include "base/mem.h"
#include "base/time.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * Status names.
 */
static const char *const task_names[BT_TASK__COUNT] = {
    "draft", "pending", "in_progress", "completed", "failed", "cancelled",
};
static const char *const run_names[BT_RUN__COUNT] = {
    "running", "waiting", "completed", "failed", "cancelled",
};
static const char *const step_names[BT_STEP__COUNT] = {
    "pending", "running", "succeeded", "failed", "skipped", "cancelled",
};
static const char *const approval_names[BT_APPROVAL__COUNT] = {
    "pending",
    "approved",
    "rejected",
    "expired",
};

static int parse_name(const char *const *names, int n, const char *name, int *out)
{
    if (!name)
        return BT_EINVAL;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            *out = i;
            return 0;
        }
    }
    return BT_EINVAL;
}

const char *bt_task_status_name(bt_task_status s)
{
    return (unsigned)s < BT_TASK__COUNT ? task_names[s] : "unknown";
}

int bt_task_status_parse(const char *name, bt_task_status *out)
{
    int v;
    int rc = parse_name(task_names, BT_TASK__COUNT, name, &v);
    if (rc == 0)
        *out = (bt_task_status)v;
    return rc;
}

bool bt_task_status_terminal(bt_task_status s)
{
    return s == BT_TASK_COMPLETED || s == BT_TASK_FAILED || s == BT_TASK_CANCELLED;
}

/* The state machine of store.h, as a table: allowed[from][to]. */
static const bool task_allowed[BT_TASK__COUNT][BT_TASK__COUNT] = {
    /*                  draft  pending in_prog complet failed cancel */
    [BT_TASK_DRAFT] = {false, true, false, false, false, true},
    [BT_TASK_PENDING] = {false, false, true, false, false, true},
    [BT_TASK_IN_PROGRESS] = {false, true, false, true, true, true},
    [BT_TASK_COMPLETED] = {false, false, false, false, false, false},
    [BT_TASK_FAILED] = {false, true, false, false, false, false},
    [BT_TASK_CANCELLED] = {false, true, false, false, false, false},
};

bool bt_task_transition_allowed(bt_task_status from, bt_task_status to)
{
    if ((unsigned)from >= BT_TASK__COUNT || (unsigned)to >= BT_TASK__COUNT)
        return false;
    return task_allowed[from][to];
}

const char *bt_run_status_name(bt_run_status s)
{
    return (unsigned)s < BT_RUN__COUNT ? run_names[s] : "unknown";
}

int bt_run_status_parse(const char *name, bt_run_status *out)
{
    int v;
    int rc = parse_name(run_names, BT_RUN__COUNT, name, &v);
    if (rc == 0)
        *out = (bt_run_status)v;
    return rc;
}

const char *bt_step_status_name(bt_step_status s)
{
    return (unsigned)s < BT_STEP__COUNT ? step_names[s] : "unknown";
}

int bt_step_status_parse(const char *name, bt_step_status *out)
{
    int v;
    int rc = parse_name(step_names, BT_STEP__COUNT, name, &v);
    if (rc == 0)
        *out = (bt_step_status)v;
    return rc;
}

const char *bt_approval_status_name(bt_approval_status s)
{
    return (unsigned)s < BT_APPROVAL__COUNT ? approval_names[s] : "unknown";
}

/* ---------------------------------------------------------------------------------
 * JSON helpers.
 */
static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *jid(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *jts(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[BT_TIME_ISO_LEN];
    return json_string(bt_time_format_iso(ms, buf));
}

static json_t *jcopy(const json_t *v, json_t *dflt)
{
    if (v) {
        json_decref(dflt);
        return json_deep_copy(v);
    }
    return dflt;
}

/* json_deep_copy of a borrowed value, NULL stays NULL. */
static json_t *jdup(const json_t *v)
{
    return v ? json_deep_copy(v) : NULL;
}

/* ---------------------------------------------------------------------------------
 * Tasks.
 */
bt_task *bt_task_dup(const bt_task *t)
{
    if (!t)
        return NULL;
    bt_task *c = bt_xmalloc(sizeof *c);
    *c = *t;
    c->source = bt_xstrdup(t->source);
    c->external_id = bt_xstrdup(t->external_id);
    c->dedupe_key = bt_xstrdup(t->dedupe_key);
    c->identifier = bt_xstrdup(t->identifier);
    c->project = bt_xstrdup(t->project);
    c->title = bt_xstrdup(t->title);
    c->body = bt_xstrdup(t->body);
    c->workflow = bt_xstrdup(t->workflow);
    c->labels = t->labels ? json_deep_copy(t->labels) : json_array();
    c->meta = t->meta ? json_deep_copy(t->meta) : json_object();
    c->lease_owner = bt_xstrdup(t->lease_owner);
    c->result = jdup(t->result);
    c->error = bt_xstrdup(t->error);
    return c;
}

void bt_task_free(bt_task *t)
{
    if (!t)
        return;
    free(t->source);
    free(t->external_id);
    free(t->dedupe_key);
    free(t->identifier);
    free(t->project);
    free(t->title);
    free(t->body);
    free(t->workflow);
    json_decref(t->labels);
    json_decref(t->meta);
    free(t->lease_owner);
    json_decref(t->result);
    free(t->error);
    free(t);
}

json_t *bt_task_to_json(const bt_task *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "source", jstr(t->source));
    json_object_set_new(o, "external_id", jstr(t->external_id));
    json_object_set_new(o, "dedupe_key", jstr(t->dedupe_key));
    json_object_set_new(o, "identifier", jstr(t->identifier ? t->identifier : t->id));
    json_object_set_new(o, "project", jstr(t->project));
    json_object_set_new(o, "title", jstr(t->title));
    json_object_set_new(o, "body", jstr(t->body));
    json_object_set_new(o, "workflow", jstr(t->workflow));
    json_object_set_new(o, "labels", jcopy(t->labels, json_array()));
    json_object_set_new(o, "meta", jcopy(t->meta, json_object()));
    json_object_set_new(o, "priority",
                        t->priority == BT_PRIORITY_NONE ? json_null() : json_integer(t->priority));
    json_object_set_new(o, "status", json_string(bt_task_status_name(t->status)));
    json_object_set_new(o, "attempts", json_integer(t->attempts));
    json_object_set_new(o, "max_attempts", json_integer(t->max_attempts));
    json_object_set_new(o, "next_attempt_at", jts(t->next_attempt_at));
    json_object_set_new(o, "lease_owner", jstr(t->lease_owner));
    json_object_set_new(o, "lease_expires_at", jts(t->lease_expires_at));
    json_object_set_new(o, "fencing", json_integer(t->fencing));
    json_object_set_new(o, "result", t->result ? json_deep_copy(t->result) : json_null());
    json_object_set_new(o, "error", jstr(t->error));
    json_object_set_new(o, "created_at", jts(t->created_at));
    json_object_set_new(o, "updated_at", jts(t->updated_at));
    json_object_set_new(o, "started_at", jts(t->started_at));
    json_object_set_new(o, "finished_at", jts(t->finished_at));
    return o;
}

/* ---------------------------------------------------------------------------------
 * Runs and steps.
 */
bt_run *bt_run_dup(const bt_run *r)
{
    if (!r)
        return NULL;
    bt_run *c = bt_xmalloc(sizeof *c);
    *c = *r;
    c->workflow = bt_xstrdup(r->workflow);
    c->workflow_version = bt_xstrdup(r->workflow_version);
    c->output = bt_xstrdup(r->output);
    c->error = bt_xstrdup(r->error);
    c->state = r->state ? json_deep_copy(r->state) : json_object();
    return c;
}

void bt_run_free(bt_run *r)
{
    if (!r)
        return;
    free(r->workflow);
    free(r->workflow_version);
    free(r->output);
    free(r->error);
    json_decref(r->state);
    free(r);
}

json_t *bt_run_to_json(const bt_run *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "task_id", jid(r->task_id));
    json_object_set_new(o, "workflow", jstr(r->workflow));
    json_object_set_new(o, "workflow_version", jstr(r->workflow_version));
    json_object_set_new(o, "status", json_string(bt_run_status_name(r->status)));
    json_object_set_new(o, "iteration", json_integer(r->iteration));
    json_object_set_new(o, "cost_usd", json_real(r->cost_usd));
    json_object_set_new(o, "tokens_in", json_integer(r->tokens_in));
    json_object_set_new(o, "tokens_out", json_integer(r->tokens_out));
    json_object_set_new(o, "output", jstr(r->output));
    json_object_set_new(o, "error", jstr(r->error));
    json_object_set_new(o, "state", jcopy(r->state, json_object()));
    json_object_set_new(o, "created_at", jts(r->created_at));
    json_object_set_new(o, "updated_at", jts(r->updated_at));
    json_object_set_new(o, "finished_at", jts(r->finished_at));
    return o;
}

bt_step *bt_step_dup(const bt_step *st)
{
    if (!st)
        return NULL;
    bt_step *c = bt_xmalloc(sizeof *c);
    *c = *st;
    c->step_key = bt_xstrdup(st->step_key);
    c->agent = bt_xstrdup(st->agent);
    c->role = bt_xstrdup(st->role);
    c->fallback_from = bt_xstrdup(st->fallback_from);
    c->output = bt_xstrdup(st->output);
    c->error_class = bt_xstrdup(st->error_class);
    c->error = bt_xstrdup(st->error);
    return c;
}

void bt_step_free(bt_step *st)
{
    if (!st)
        return;
    free(st->step_key);
    free(st->agent);
    free(st->role);
    free(st->fallback_from);
    free(st->output);
    free(st->error_class);
    free(st->error);
    free(st);
}

json_t *bt_step_to_json(const bt_step *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(st->id));
    json_object_set_new(o, "run_id", jid(st->run_id));
    json_object_set_new(o, "step_key", jstr(st->step_key));
    json_object_set_new(o, "iteration", json_integer(st->iteration));
    json_object_set_new(o, "attempt", json_integer(st->attempt));
    json_object_set_new(o, "seq", json_integer(st->seq));
    json_object_set_new(o, "agent", jstr(st->agent));
    json_object_set_new(o, "role", jstr(st->role));
    json_object_set_new(o, "fallback_from", jstr(st->fallback_from));
    json_object_set_new(o, "status", json_string(bt_step_status_name(st->status)));
    json_object_set_new(o, "output", jstr(st->output));
    json_object_set_new(o, "exit_code", json_integer(st->exit_code));
    json_object_set_new(o, "error_class", jstr(st->error_class));
    json_object_set_new(o, "error", jstr(st->error));
    json_object_set_new(o, "tokens_in", json_integer(st->tokens_in));
    json_object_set_new(o, "tokens_out", json_integer(st->tokens_out));
    json_object_set_new(o, "cost_usd", json_real(st->cost_usd));
    json_object_set_new(o, "started_at", jts(st->started_at));
    json_object_set_new(o, "finished_at", jts(st->finished_at));
    return o;
}

/* ---------------------------------------------------------------------------------
 * Events.
 */
bt_event *bt_event_dup(const bt_event *e)
{
    if (!e)
        return NULL;
    bt_event *c = bt_xmalloc(sizeof *c);
    *c = *e;
    c->type = bt_xstrdup(e->type);
    c->data = e->data ? json_deep_copy(e->data) : json_object();
    return c;
}

void bt_event_free(bt_event *e)
{
    if (!e)
        return;
    free(e->type);
    json_decref(e->data);
    free(e);
}

json_t *bt_event_to_json(const bt_event *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer(e->seq));
    json_object_set_new(o, "type", jstr(e->type));
    json_object_set_new(o, "task_id", jid(e->task_id));
    json_object_set_new(o, "run_id", jid(e->run_id));
    json_object_set_new(o, "ts", jts(e->ts));
    json_object_set_new(o, "data", jcopy(e->data, json_object()));
    return o;
}

/* ---------------------------------------------------------------------------------
 * Workers and approvals.
 */
bt_worker *bt_worker_dup(const bt_worker *w)
{
    if (!w)
        return NULL;
    bt_worker *c = bt_xmalloc(sizeof *c);
    *c = *w;
    c->id = bt_xstrdup(w->id);
    c->ip = bt_xstrdup(w->ip);
    c->status = bt_xstrdup(w->status);
    c->current_task = bt_xstrdup(w->current_task);
    c->info = w->info ? json_deep_copy(w->info) : json_object();
    return c;
}

void bt_worker_free(bt_worker *w)
{
    if (!w)
        return;
    free(w->id);
    free(w->ip);
    free(w->status);
    free(w->current_task);
    json_decref(w->info);
    free(w);
}

json_t *bt_worker_to_json(const bt_worker *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", jstr(w->id));
    json_object_set_new(o, "ip", jstr(w->ip));
    json_object_set_new(o, "status", jstr(w->status));
    json_object_set_new(o, "current_task", jstr(w->current_task));
    json_object_set_new(o, "last_seen", jts(w->last_seen));
    json_object_set_new(o, "info", jcopy(w->info, json_object()));
    json_object_set_new(o, "created_at", jts(w->created_at));
    return o;
}

bt_approval *bt_approval_dup(const bt_approval *a)
{
    if (!a)
        return NULL;
    bt_approval *c = bt_xmalloc(sizeof *c);
    *c = *a;
    c->step_key = bt_xstrdup(a->step_key);
    c->prompt = bt_xstrdup(a->prompt);
    c->context = a->context ? json_deep_copy(a->context) : json_object();
    c->decided_by = bt_xstrdup(a->decided_by);
    c->comment = bt_xstrdup(a->comment);
    return c;
}

void bt_approval_free(bt_approval *a)
{
    if (!a)
        return;
    free(a->step_key);
    free(a->prompt);
    json_decref(a->context);
    free(a->decided_by);
    free(a->comment);
    free(a);
}

json_t *bt_approval_to_json(const bt_approval *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(a->id));
    json_object_set_new(o, "run_id", jid(a->run_id));
    json_object_set_new(o, "task_id", jid(a->task_id));
    json_object_set_new(o, "step_key", jstr(a->step_key));
    json_object_set_new(o, "prompt", jstr(a->prompt));
    json_object_set_new(o, "context", jcopy(a->context, json_object()));
    json_object_set_new(o, "status", json_string(bt_approval_status_name(a->status)));
    json_object_set_new(o, "decided_by", jstr(a->decided_by));
    json_object_set_new(o, "comment", jstr(a->comment));
    json_object_set_new(o, "expires_at", jts(a->expires_at));
    json_object_set_new(o, "created_at", jts(a->created_at));
    json_object_set_new(o, "decided_at", jts(a->decided_at));
    return o;
}

/* ---------------------------------------------------------------------------------
 * Agent calls.
 */
void bt_agent_call_free(bt_agent_call *c)
{
    if (!c)
        return;
    free(c->agent);
    free(c->outcome);
    free(c->error_class);
    free(c);
}
