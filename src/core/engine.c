/*
 * engine.c - the workflow engine (engine.h): one state machine per active run, driven by
 * store, agent, process, HTTP and timer callbacks on the loop.
 *
 * The walk: a run has a stack of frames (the workflow, and one frame per execute-workflow
 * call in progress). walk() looks at the current frame's next step: a finished row for
 * (iteration, step key) in the store means the step already ran (resume) and its result
 * is reused; otherwise the step's `when` is evaluated and the step started: a step row is
 * written (running), the action runs, and the row is finished with the result before
 * walk() moves on. Step keys of sub-workflow steps are prefixed with the calling step's
 * key ("ship/commit"), so resuming inside a sub-workflow works the same way.
 *
 * Lifetime: a run is freed once its on_done has run, no store operation, action or
 * timer refers to it any more (r->refs counts them).
 */
#include "core/engine.h"

#include "agents/agent.h"
#include "agents/agents.h"
#include "base/json.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/path.h"
#include "base/str.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "config/config.h"
#include "core/budget.h"
#include "core/planner.h"
#include "core/resilience.h"
#include "core/template.h"
#include "core/workflow.h"
#include "http/client.h"
#include "obs/log.h"
#include "store/store.h"
#include "workspace/proc.h"
#include "workspace/repo_id.h"
#include "workspace/workspace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

#define OUTPUT_FLUSH_MS    250           /* agent.output events: at most 4 per second */
#define OUTPUT_FLUSH_BYTES 8192          /* ... or when this much is waiting */
#define SHELL_TIMEOUT_MS   (30 * 60000)  /* default for shell / git steps */
#define HTTP_TIMEOUT_MS    60000         /* default for http steps */
#define CONTEXT_CAP        4096          /* bytes of a previous output shown to approvers */
#define DIFF_TIMEOUT_MS    10000         /* the approval's diff summary: all its git commands */
#define DIFF_OUTPUT_CAP    (1024 * 1024) /* ... stdout kept of each */
#define DIFF_FILES_MAX     200           /* ... files listed */
#define RETRY_BASE_MS      1000
#define RETRY_MAX_MS       30000

typedef struct rrun rrun;

typedef struct frame {
    const bt_workflow *wf;
    json_t *inputs;   /* bound inputs */
    json_t *steps;    /* template context: step id -> {output, status, ...} */
    json_t *previous; /* {output, step, agent, status} of the last step that ran */
    size_t index;     /* next step */
    char *prefix;     /* "" at the top, "call/" inside a sub-workflow */
    int all_passed;
    char *last_output;
    char call_row[BT_ID_LEN + 1]; /* the calling step's row (sub-workflow frames) */
} frame;

/* The result of one step attempt, as written to its row. */
typedef struct step_out {
    bt_step_status status;
    char *output;
    char *error;
    const char *error_class; /* static string or NULL */
    int exit_code;
    int64_t tokens_in, tokens_out;
    double cost_usd;
    char *agent;
    char *fallback_from;
    json_t *outputs; /* execute-workflow: the sub-workflow's outputs */
} step_out;

struct rrun {
    bt_engine *e;
    rrun *next;
    int refs; /* outstanding store ops, actions and open handles */
    bt_task *task;
    char run_id[BT_ID_LEN + 1];
    const bt_workflow *wf;
    json_t *state;
    json_t *rows; /* "ITER|KEY" -> latest stored row of that step (resume) */
    int iteration, max_iterations;
    frame fr[BT_WORKFLOW_MAX_DEPTH + 1];
    int depth;
    char *workspace;
    bt_strvec git_env; /* credentials for git-operation steps only */
    json_t *assigned;  /* task meta.assigned_agents or NULL */
    /* the dynamic planner (planner.h): the planning call in progress, and the compiled
     * plan the run executes (r->wf points into it) */
    bt_planner_run *plan;
    bt_workflows *plan_set;
    int plan_waits; /* 50 ms turns spent waiting for the agent statistics to load */
    bt_engine_done_fn on_done;
    bt_engine_progress_fn on_progress;
    void *ud;

    /* the step in progress */
    const bt_wf_step *step;
    char *key;
    char step_id[BT_ID_LEN + 1];
    int attempt, failures;
    char *agent_name;   /* the agent running now (primary or fallback) */
    const char *system; /* persona prompt: borrowed from the workflow set */
    char *prompt;
    bt_resil_call *rcall; /* the agent call (fallback chain included) in progress */
    bt_proc *proc;
    bt_http_call *hcall;
    char approval_id[BT_ID_LEN + 1];
    int waiting;      /* at an approval gate */
    int deciding;     /* an approval read/decision is in flight */
    uv_timer_t timer; /* retry backoff */
    uv_timer_t flush; /* agent output coalescing */
    int timers_init;
    bt_strbuf outbuf;

    /* file-level locks of the step in progress (step `locks:`, docs/resilience.md) */
    uv_timer_t lock_timer; /* retry while waiting; renewal while held */
    int lock_timer_init;
    int lock_wait;  /* waiting for another run's locks (the timer holds a ref) */
    int locks_held; /* this run holds locks in lock_repo */
    int64_t lock_wait_since;
    char *lock_repo;

    int cancelled, interrupted, ended, done_called, freed;
    char *cancel_reason;
    char *fail_now; /* fail the step being started with this message */
    char *final_error;
    const char *final_class;
    char *final_status;
};

struct bt_engine {
    bt_engine_env env;
    rrun *runs;
    int nactive;
    int sub;
    int sub_on;
    uv_timer_t poll;
    int poll_init;
    bt_idgen *idgen;
    bt_resil *own_resil; /* made on first use when env.resil is NULL */
};

static void walk(rrun *r);
static void step_done(rrun *r, step_out *o);
static void run_end(rrun *r, const char *status, const char *error, const char *error_class);
static void maybe_free(rrun *r);
static void begin_step(rrun *r);

/* ---- small helpers ---- */

static void step_out_free(step_out *o)
{
    free(o->output);
    free(o->error);
    free(o->agent);
    free(o->fallback_from);
    json_decref(o->outputs);
    memset(o, 0, sizeof *o);
}

static frame *top(rrun *r)
{
    return &r->fr[r->depth];
}

static void progress(rrun *r, const char *kind, json_t *data)
{
    if (r->on_progress && data)
        r->on_progress(r->e, kind, data, r->ud);
    json_decref(data);
}

static void noop_event_cb(void *ud, int rc, const bt_error *err, const bt_event *ev)
{
    (void)ud, (void)rc, (void)err, (void)ev;
}

/* Append an engine event (data stolen). */
static void emit(rrun *r, const char *type, json_t *data)
{
    bt_store_event_append(r->e->env.store, type, r->task->id, r->run_id, data, noop_event_cb, NULL);
    json_decref(data);
}

static void logw(rrun *r, const char *msg, const char *detail)
{
    if (r->e->env.log)
        bt_log_warn(r->e->env.log, msg, BT_LF_STR("run", r->run_id), BT_LF_STR("task", r->task->id),
                    BT_LF_STR("detail", detail ? detail : ""));
}

static void logd(rrun *r, const char *msg, const char *detail)
{
    if (r->e->env.log)
        bt_log_debug(r->e->env.log, msg, BT_LF_STR("run", r->run_id),
                     BT_LF_STR("task", r->task->id), BT_LF_STR("detail", detail ? detail : ""));
}

static char *row_key(int iteration, const char *key)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%d|%s", iteration, key);
    return bt_strbuf_detach(&sb, NULL);
}

static char *trim_output(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    return bt_xstrndup(s, n);
}

/* ---- the template context ---- */

static json_t *task_json(const bt_task *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "identifier", json_string(t->identifier ? t->identifier : t->id));
    json_object_set_new(o, "title", json_string(t->title ? t->title : ""));
    json_object_set_new(o, "body", json_string(t->body ? t->body : ""));
    json_object_set_new(o, "labels", json_deep_copy(t->labels));
    json_object_set_new(o, "project", t->project ? json_string(t->project) : json_null());
    json_object_set_new(o, "source", json_string(t->source ? t->source : ""));
    json_object_set_new(o, "external_id",
                        t->external_id ? json_string(t->external_id) : json_null());
    json_object_set_new(o, "meta", json_deep_copy(t->meta));
    json_object_set_new(o, "workflow", t->workflow ? json_string(t->workflow) : json_null());
    json_t *url = json_object_get(t->meta, "url");
    if (!url)
        url = json_object_get(t->meta, "html_url");
    json_object_set_new(o, "url", json_is_string(url) ? json_incref(url) : json_string(""));
    return o;
}

static json_t *vars_of(rrun *r, frame *f)
{
    json_t *v = json_object();
    json_t *t = task_json(r->task);
    json_object_set(v, "task", t);
    json_object_set_new(v, "item", t);
    json_object_set(v, "inputs", f->inputs);
    json_object_set(v, "steps", f->steps);
    json_object_set(v, "previous", f->previous);
    json_object_set_new(v, "iteration", json_integer(r->iteration));
    json_object_set_new(v, "max_iterations", json_integer(r->max_iterations));
    json_object_set_new(v, "workflow",
                        json_pack("{ss ss ss}", "id", f->wf->id, "name",
                                  f->wf->name ? f->wf->name : f->wf->id, "version",
                                  f->wf->version ? f->wf->version : ""));
    json_object_set_new(v, "run", json_pack("{ss si}", "id", r->run_id, "iteration", r->iteration));
    json_object_set_new(v, "workspace", json_string(r->workspace));
    return v;
}

static json_t *vars(rrun *r)
{
    return vars_of(r, top(r));
}

static json_t *empty_step_ctx(const bt_wf_step *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "output", json_string(""));
    json_object_set_new(o, "outputs", json_object());
    json_object_set_new(o, "status", json_string("pending"));
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "agent", st->agent ? json_string(st->agent) : json_null());
    json_object_set_new(o, "role", st->role ? json_string(st->role) : json_null());
    json_object_set_new(o, "exit_code", json_null());
    json_object_set_new(o, "error", json_null());
    json_object_set_new(o, "suggestions", json_null());
    json_object_set_new(o, "iteration", json_integer(0));
    json_object_set_new(o, "tokens_in", json_integer(0));
    json_object_set_new(o, "tokens_out", json_integer(0));
    json_object_set_new(o, "cost_usd", json_real(0));
    json_object_set_new(o, "duration_ms", json_integer(0));
    return o;
}

static void frame_init(frame *f, const bt_workflow *wf, json_t *inputs, const char *prefix)
{
    memset(f, 0, sizeof *f);
    f->wf = wf;
    f->inputs = inputs;
    f->steps = json_object();
    for (size_t i = 0; i < wf->nsteps; i++)
        json_object_set_new(f->steps, wf->steps[i].id, empty_step_ctx(&wf->steps[i]));
    f->previous = json_pack("{ss ss ss ss}", "output", "", "step", "", "agent", "", "status", "");
    f->prefix = bt_xstrdup(prefix);
    f->all_passed = 1;
}

static void frame_clear(frame *f)
{
    json_decref(f->inputs);
    json_decref(f->steps);
    json_decref(f->previous);
    free(f->prefix);
    free(f->last_output);
    memset(f, 0, sizeof *f);
}

/* Record a finished step's result in the frame's context. */
static void ctx_apply(frame *f, const bt_wf_step *st, const bt_step *row, const json_t *outputs)
{
    json_t *c = json_object_get(f->steps, st->id);
    if (!c)
        return;
    const char *out = row->output ? row->output : "";
    int ok = row->status == BT_STEP_SUCCEEDED || row->status == BT_STEP_SKIPPED;
    json_object_set_new(c, "output", json_string(out));
    json_object_set_new(c, "status", json_string(bt_step_status_name(row->status)));
    json_object_set_new(c, "ok", json_boolean(row->status == BT_STEP_SUCCEEDED));
    if (row->agent)
        json_object_set_new(c, "agent", json_string(row->agent));
    json_object_set_new(c, "exit_code",
                        row->exit_code >= 0 ? json_integer(row->exit_code) : json_null());
    json_object_set_new(c, "error", row->error ? json_string(row->error) : json_null());
    json_object_set_new(c, "suggestions",
                        st->action == BT_WF_AGENT && row->status == BT_STEP_SUCCEEDED
                            ? json_integer(bt_workflow_count_suggestions(out))
                            : json_null());
    json_object_set_new(c, "iteration", json_integer(row->iteration));
    json_object_set_new(c, "tokens_in", json_integer(row->tokens_in));
    json_object_set_new(c, "tokens_out", json_integer(row->tokens_out));
    json_object_set_new(c, "cost_usd", json_real(row->cost_usd));
    json_object_set_new(
        c, "duration_ms",
        json_integer(row->finished_at > row->started_at ? row->finished_at - row->started_at : 0));
    if (outputs)
        json_object_set(c, "outputs", (json_t *)outputs);
    if (row->status != BT_STEP_SKIPPED) {
        json_decref(f->previous);
        f->previous =
            json_pack("{ss ss ss ss}", "output", out, "step", st->id, "agent",
                      row->agent ? row->agent : "", "status", bt_step_status_name(row->status));
        if (row->status == BT_STEP_SUCCEEDED) {
            free(f->last_output);
            f->last_output = bt_xstrdup(out);
        }
    }
    if (!ok)
        f->all_passed = 0;
}

/* Render a template field; on error fail the step with a message naming the field. */
static int render(rrun *r, const bt_wf_text *t, const char *what, char **out, bt_error *err)
{
    *out = NULL;
    if (!t->src) {
        *out = bt_xstrdup("");
        return 0;
    }
    json_t *v = vars(r);
    bt_tmpl_error where = {0, 0};
    int rc = bt_tmpl_render(t->tmpl, v, out, &where, err);
    json_decref(v);
    if (rc < 0)
        bt_error_prefix(err, "step '%s' %s", r->step ? r->step->id : "?", what);
    return rc;
}

/* Render every string leaf of a JSON value (new reference in *out). */
static int render_json(rrun *r, const json_t *in, json_t *v, json_t **out, bt_error *err)
{
    *out = NULL;
    if (json_is_string(in)) {
        bt_tmpl *t = NULL;
        bt_tmpl_error where = {0, 0};
        int rc = bt_tmpl_compile(json_string_value(in), &t, &where, err);
        if (rc == 0) {
            char *s = NULL;
            rc = bt_tmpl_render(t, v, &s, &where, err);
            if (rc == 0)
                *out = json_string(s);
            free(s);
        }
        bt_tmpl_free(t);
        return rc;
    }
    if (json_is_object(in)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)in, k, x)
        {
            json_t *y = NULL;
            int rc = render_json(r, x, v, &y, err);
            if (rc < 0) {
                json_decref(o);
                return bt_error_prefix(err, "%s", k);
            }
            json_object_set_new(o, k, y);
        }
        *out = o;
        return 0;
    }
    if (json_is_array(in)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(in); i++) {
            json_t *y = NULL;
            int rc = render_json(r, json_array_get(in, i), v, &y, err);
            if (rc < 0) {
                json_decref(a);
                return rc;
            }
            json_array_append_new(a, y);
        }
        *out = a;
        return 0;
    }
    *out = json_deep_copy(in);
    return 0;
}

static int render_input(rrun *r, const char *name, char **out, bt_error *err)
{
    *out = NULL;
    json_t *in = json_object_get(r->step->inputs, name);
    if (!in)
        return 0;
    json_t *v = vars(r), *x = NULL;
    int rc = render_json(r, in, v, &x, err);
    json_decref(v);
    if (rc < 0)
        return bt_error_prefix(err, "step '%s' inputs.%s", r->step->id, name);
    if (json_is_string(x))
        *out = bt_xstrdup(json_string_value(x));
    else if (!json_is_null(x))
        *out = bt_json_dumps(x);
    json_decref(x);
    return 0;
}

/* ---- lifetime ---- */

static void ref(rrun *r)
{
    r->refs++;
}

static void unref(rrun *r)
{
    r->refs--;
    maybe_free(r);
}

static void run_unlink(rrun *r)
{
    bt_engine *e = r->e;
    for (rrun **p = &e->runs; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            e->nactive--;
            return;
        }
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    rrun *r = h->data;
    unref(r);
}

static void maybe_free(rrun *r)
{
    if (!r->done_called || r->freed)
        return;
    if (r->timers_init) {
        r->timers_init = 0;
        ref(r);
        ref(r);
        uv_close((uv_handle_t *)&r->timer, on_timer_closed);
        uv_close((uv_handle_t *)&r->flush, on_timer_closed);
    }
    if (r->lock_timer_init) {
        r->lock_timer_init = 0;
        ref(r);
        uv_close((uv_handle_t *)&r->lock_timer, on_timer_closed);
    }
    if (r->refs > 0)
        return;
    r->freed = 1;
    for (int i = 0; i <= BT_WORKFLOW_MAX_DEPTH; i++)
        if (r->fr[i].wf)
            frame_clear(&r->fr[i]);
    bt_task_free(r->task);
    bt_workflows_free(r->plan_set);
    json_decref(r->state);
    json_decref(r->rows);
    json_decref(r->assigned);
    free(r->workspace);
    bt_strvec_clear(&r->git_env);
    free(r->key);
    free(r->agent_name);
    free(r->prompt);
    free(r->cancel_reason);
    free(r->lock_repo);
    free(r->fail_now);
    free(r->final_error);
    free(r->final_status);
    bt_strbuf_release(&r->outbuf);
    free(r);
}

/* ---- agent output events ---- */

static void flush_output(rrun *r)
{
    if (r->outbuf.len == 0)
        return;
    emit(r, "agent.output",
         json_pack("{ss ss ss si ss#}", "step", r->key ? r->key : "", "step_id", r->step_id,
                   "agent", r->agent_name ? r->agent_name : "", "iteration", r->iteration, "text",
                   r->outbuf.buf, (int)r->outbuf.len));
    bt_strbuf_reset(&r->outbuf);
}

static void on_flush_timer(uv_timer_t *t)
{
    flush_output(t->data);
}

/* Output of the running step (an agent's text or a command's stdout/stderr): live to
 * the progress callback, batched into agent.output events. */
static void take_output(rrun *r, const char *agent, const char *data, size_t len)
{
    bt_strbuf_add(&r->outbuf, data, len);
    if (r->on_progress)
        progress(r, "agent.output",
                 json_pack("{ss ss ss#}", "step", r->key, "agent", agent, "text", data, (int)len));
    if (r->outbuf.len >= OUTPUT_FLUSH_BYTES)
        flush_output(r);
    else if (!uv_is_active((uv_handle_t *)&r->flush))
        uv_timer_start(&r->flush, on_flush_timer, OUTPUT_FLUSH_MS, 0);
}

/* ---- store callbacks with a reference held ---- */

/* ---- finishing a run ---- */

static void deliver(rrun *r, const bt_run *run, bt_step *const *steps, size_t n)
{
    json_t *res = bt_engine_result_json(run, steps, n);
    if (r->final_error && !json_object_get(res, "error"))
        json_object_set_new(res, "error", json_string(r->final_error));
    json_object_set_new(res, "status", json_string(r->final_status));
    bt_engine_result out = {
        .run_id = r->run_id,
        .task_id = r->task->id,
        .status = r->final_status,
        .success = strcmp(r->final_status, "completed") == 0,
        .error = r->final_error,
        .error_class = r->final_class,
        .final_output = run && run->output ? run->output : "",
        .json = res,
    };
    run_unlink(r);
    r->done_called = 1;
    r->on_done(r->e, &out, r->ud);
    json_decref(res);
}

/* The run as the store last recorded it (NULL when that write failed). */
typedef struct final_ctx {
    rrun *r;
    bt_run *run;
} final_ctx;

static void on_final_steps(void *ud, int rc, const bt_error *err, bt_step *const *steps, size_t n)
{
    (void)err;
    final_ctx *fc = ud;
    rrun *r = fc->r;
    deliver(r, fc->run, rc == 0 ? steps : NULL, rc == 0 ? n : 0);
    bt_run_free(fc->run);
    free(fc);
    unref(r);
}

static void on_final_run(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    rrun *r = ud;
    if (rc < 0) {
        logw(r, "cannot record the end of a run", err ? err->msg : "");
        if (!r->final_error) {
            r->final_error = bt_xstrdup(err ? err->msg : "store error");
            r->final_class = "transient";
        }
        free(r->final_status);
        r->final_status = bt_xstrdup("failed");
    }
    final_ctx *fc = bt_xcalloc(1, sizeof *fc);
    fc->r = r;
    fc->run = rc < 0 ? NULL : bt_run_dup(run);
    bt_store_step_list(r->e->env.store, r->run_id, on_final_steps, fc);
}

static json_t *render_outputs(rrun *r, frame *f)
{
    json_t *o = json_object();
    if (!f->wf->noutputs)
        return o;
    json_t *v = vars_of(r, f);
    for (size_t i = 0; i < f->wf->noutputs; i++) {
        const bt_wf_param *p = &f->wf->outputs[i];
        char *s = NULL;
        bt_error err = BT_ERROR_INIT;
        bt_tmpl_error where = {0, 0};
        if (p->value.tmpl && bt_tmpl_render(p->value.tmpl, v, &s, &where, &err) == 0)
            json_object_set_new(o, p->name, json_string(s));
        else
            json_object_set_new(o, p->name, json_null());
        free(s);
    }
    json_decref(v);
    return o;
}

static void run_end(rrun *r, const char *status, const char *error, const char *error_class)
{
    if (r->ended)
        return;
    r->ended = 1;
    flush_output(r);
    r->final_status = bt_xstrdup(status);
    r->final_error = error ? bt_xstrdup(error) : NULL;
    r->final_class = error_class;
    frame *f0 = &r->fr[0];
    json_t *outputs = render_outputs(r, f0);
    json_object_set_new(r->state, "outputs", outputs);
    bt_run_status rs = strcmp(status, "completed") == 0   ? BT_RUN_COMPLETED
                       : strcmp(status, "cancelled") == 0 ? BT_RUN_CANCELLED
                                                          : BT_RUN_FAILED;
    const char *final = f0->last_output ? f0->last_output : "";
    if (json_object_size(outputs) > 0 && !f0->last_output) {
        json_t *first = json_object_iter_value(json_object_iter(outputs));
        if (json_is_string(first))
            final = json_string_value(first);
    }
    bt_run_patch p = {.set_status = true,
                      .status = rs,
                      .set_iteration = true,
                      .iteration = r->iteration,
                      .output = final,
                      .error = error,
                      .state = r->state};
    ref(r);
    bt_store_run_update(r->e->env.store, r->run_id, &p, on_final_run, r);
}

/* Shutdown: leave every row as it is and tell the owner. */
static void run_interrupted(rrun *r)
{
    if (r->ended)
        return;
    r->ended = 1;
    flush_output(r);
    r->final_status = bt_xstrdup("interrupted");
    r->final_error = bt_xstrdup("interrupted by shutdown; the run resumes at its next start");
    r->final_class = "transient";
    deliver(r, NULL, NULL, 0);
    maybe_free(r);
}

/* ---- step rows ---- */

static void on_step_finished(void *ud, int rc, const bt_error *err, const bt_step *st);

typedef struct finish_ctx {
    rrun *r;
    step_out out;
    int retry; /* a retry follows */
} finish_ctx;

static void on_retry_timer(uv_timer_t *t)
{
    rrun *r = t->data;
    unref(r);
    if (r->cancelled) {
        run_end(r, "cancelled", r->cancel_reason, "cancelled");
        return;
    }
    if (r->interrupted) {
        run_interrupted(r);
        return;
    }
    begin_step(r);
}

static const bt_wf_step *find_step(const bt_workflow *wf, const char *id)
{
    for (size_t i = 0; i < wf->nsteps; i++)
        if (strcmp(wf->steps[i].id, id) == 0)
            return &wf->steps[i];
    return NULL;
}

static void after_step(rrun *r, const bt_step *row, const json_t *outputs)
{
    frame *f = top(r);
    const bt_wf_step *st = r->step;
    ctx_apply(f, st, row, outputs);
    json_t *p = bt_step_to_json(row);
    json_object_set_new(p, "action", json_string(bt_wf_action_name(st->action)));
    json_object_set_new(p, "total", json_integer((json_int_t)f->wf->nsteps));
    progress(r, "step.finished", p);
    f->index++;
    r->step = NULL;
    if (r->cancelled) {
        run_end(r, "cancelled", r->cancel_reason, "cancelled");
        return;
    }
    if (r->interrupted) {
        run_interrupted(r);
        return;
    }
    if (row->status == BT_STEP_FAILED && !st->continue_on_error) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "step '%s%s' failed: %s", f->prefix, st->id,
                       row->error ? row->error : "error");
        r->final_class = row->error_class && strcmp(row->error_class, "transient") == 0
                             ? "transient"
                             : "permanent";
        const char *cls = r->final_class;
        /* unwind sub-workflow frames: their calling steps fail too */
        if (r->depth > 0) {
            /* the calling rows stay "running"; finish them as failed for the record */
            for (int d = r->depth; d > 0; d--) {
                bt_step_result res = {
                    .status = BT_STEP_FAILED, .error = m.buf, .error_class = cls, .exit_code = -1};
                ref(r);
                bt_store_step_finish(r->e->env.store, r->fr[d].call_row, &res, on_step_finished, r);
            }
        }
        run_end(r, "failed", m.buf, cls);
        bt_strbuf_release(&m);
        return;
    }
    walk(r);
}

static void on_step_finished(void *ud, int rc, const bt_error *err, const bt_step *st)
{
    (void)rc, (void)err, (void)st;
    unref((rrun *)ud);
}

static void on_row_finished(void *ud, int rc, const bt_error *err, const bt_step *st)
{
    finish_ctx *fc = ud;
    rrun *r = fc->r;
    if (rc < 0) {
        logw(r, "cannot record a finished step", err ? err->msg : "");
        step_out_free(&fc->out);
        free(fc);
        run_end(r, "failed", err ? err->msg : "store error", "transient");
        unref(r);
        return;
    }
    if (fc->retry) {
        int64_t delay = RETRY_BASE_MS << (r->failures > 5 ? 5 : r->failures - 1);
        if (delay > RETRY_MAX_MS)
            delay = RETRY_MAX_MS;
        json_t *p = bt_step_to_json(st);
        json_object_set_new(p, "retry_in_ms", json_integer(delay));
        progress(r, "step.finished", p);
        r->attempt++;
        ref(r);
        uv_timer_start(&r->timer, on_retry_timer, (uint64_t)delay, 0);
    } else {
        after_step(r, st, fc->out.outputs);
    }
    step_out_free(&fc->out);
    free(fc);
    unref(r);
}

/* The action of the current step ended. */
static void locks_release(rrun *r);

static void step_done(rrun *r, step_out *o)
{
    r->rcall = NULL;
    r->proc = NULL;
    r->hcall = NULL;
    locks_release(r);
    flush_output(r);
    if (r->interrupted && !r->cancelled) {
        /* leave the row running: the next start re-runs this step */
        step_out_free(o);
        run_interrupted(r);
        return;
    }
    if (r->cancelled && o->status != BT_STEP_SUCCEEDED) {
        o->status = BT_STEP_CANCELLED;
        if (!o->error)
            o->error = bt_xstrdup(r->cancel_reason ? r->cancel_reason : "cancelled");
        o->error_class = "cancelled";
    }
    finish_ctx *fc = bt_xcalloc(1, sizeof *fc);
    fc->r = r;
    fc->out = *o;
    memset(o, 0, sizeof *o);
    if (fc->out.status == BT_STEP_FAILED) {
        r->failures++;
        if (r->failures <= r->step->retries && !r->cancelled)
            fc->retry = 1;
    }
    bt_step_result res = {.status = fc->out.status,
                          .agent = fc->out.agent,
                          .fallback_from = fc->out.fallback_from,
                          .output = fc->out.output ? fc->out.output : "",
                          .error_class = fc->out.error_class,
                          .error = fc->out.error,
                          .exit_code = fc->out.exit_code,
                          .tokens_in = fc->out.tokens_in,
                          .tokens_out = fc->out.tokens_out,
                          .cost_usd = fc->out.cost_usd};
    ref(r);
    bt_store_step_finish(r->e->env.store, r->step_id, &res, on_row_finished, fc);
}

static void fail_step(rrun *r, const char *error, const char *error_class)
{
    step_out o = {.status = BT_STEP_FAILED,
                  .error = bt_xstrdup(error),
                  .error_class = error_class,
                  .exit_code = -1};
    step_done(r, &o);
}

/* ---- action: agent ---- */

static void start_agent(rrun *r);

static const char *role_hint(const char *role)
{
    if (!role)
        return NULL;
    if (strstr(role, "review"))
        return "Review the work done for this task. Reply with a JSON object "
               "{\"suggestions\": [\"...\"]} listing each concrete change still needed (an empty "
               "list when there is nothing left to change), followed by any explanation.";
    if (strstr(role, "refine"))
        return "Refine the implementation in the workspace: apply the review's suggestions "
               "that are right, and say what you changed.";
    if (strstr(role, "implement") || strstr(role, "develop"))
        return "Implement this task in the workspace. When you are done, summarise what you "
               "changed.";
    if (strstr(role, "doc"))
        return "Write or update the documentation for this task in the workspace.";
    return NULL;
}

/* The prompt of an agent step without one: the task, the role's instruction, and what
 * the previous step produced. */
static char *default_prompt(rrun *r)
{
    frame *f = top(r);
    const bt_wf_step *st = r->step;
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "Task: %s\n", r->task->title ? r->task->title : "");
    if (r->task->body && *r->task->body)
        bt_strbuf_addf(&sb, "\n%s\n", r->task->body);
    if (st->role)
        bt_strbuf_addf(&sb, "\nYour role in this workflow: %s.\n", st->role);
    const char *hint = role_hint(st->role);
    if (hint)
        bt_strbuf_addf(&sb, "%s\n", hint);
    const char *prev = bt_json_str(f->previous, "output", "");
    if (*prev)
        bt_strbuf_addf(&sb, "\nOutput of the previous step (%s, %s):\n%s\n",
                       bt_json_str(f->previous, "step", ""), bt_json_str(f->previous, "agent", ""),
                       prev);
    if (r->iteration > 1) {
        const bt_wf_step *rev = bt_workflow_review_step(f->wf);
        if (rev && rev != st) {
            json_t *c = json_object_get(f->steps, rev->id);
            const char *ro = bt_json_str(c, "output", "");
            if (*ro && strcmp(ro, prev) != 0)
                bt_strbuf_addf(&sb, "\nThe last review (iteration %d) said:\n%s\n",
                               r->iteration - 1, ro);
        }
    }
    return bt_strbuf_detach(&sb, NULL);
}

static void on_agent_event(const bt_agent_event *ev, void *ud)
{
    rrun *r = ud;
    if (ev->kind == BT_AGENT_EV_OUTPUT) {
        take_output(r, r->agent_name, ev->text, ev->len);
    } else if (ev->kind == BT_AGENT_EV_USAGE) {
        progress(r, "agent.usage",
                 json_pack("{ss ss sI sI}", "step", r->key, "agent", r->agent_name, "tokens_in",
                           (json_int_t)ev->tokens_in, "tokens_out", (json_int_t)ev->tokens_out));
    } else if (ev->kind == BT_AGENT_EV_TOOL || ev->kind == BT_AGENT_EV_STATUS) {
        if (r->on_progress)
            progress(r, ev->kind == BT_AGENT_EV_TOOL ? "agent.tool" : "agent.status",
                     json_pack("{ss ss ss ss}", "step", r->key, "agent", r->agent_name, "tool",
                               ev->tool ? ev->tool : "", "text", ev->text));
    }
}

/* Notes from the resilience wrapper while the call goes on (core/resilience.h). */
static void on_resil_status(const char *kind, const json_t *data, void *ud)
{
    rrun *r = ud;
    const char *agent = bt_json_str(data, "agent", r->agent_name ? r->agent_name : "");
    if (strcmp(kind, "fallback") == 0) {
        /* seed 004: a transient failure, a skip or an open breaker hands the step on */
        const char *to = bt_json_str(data, "to", "");
        emit(r, "step.fallback",
             json_pack("{ss ss ss ss}", "step", r->key, "from", bt_json_str(data, "from", ""), "to",
                       to, "reason", bt_json_str(data, "reason", "")));
        free(r->agent_name);
        r->agent_name = bt_xstrdup(to);
    } else if (strcmp(kind, "rate_limited") == 0) {
        json_t *d =
            json_pack("{ss ss ss sI ss ss}", "step", r->key, "agent", agent, "reason", "rate_limit",
                      "wait_ms", (json_int_t)bt_json_int(data, "wait_ms", 0), "provider",
                      bt_json_str(data, "provider", ""), "limit", bt_json_str(data, "limit", ""));
        progress(r, "step.waiting", json_incref(d));
        emit(r, "step.waiting", d);
    } else if (r->on_progress) {
        /* rejected (breaker open) or skipped (offline, unusable) */
        bt_strbuf m = BT_STRBUF_INIT;
        if (strcmp(kind, "rejected") == 0) {
            bt_strbuf_addf(&m, "circuit breaker %s: %s is not called",
                           bt_json_str(data, "state", "open"), agent);
            int64_t at = bt_json_int(data, "retry_at", 0);
            char iso[BT_TIME_ISO_LEN];
            if (at > 0)
                bt_strbuf_addf(&m, " before %s", bt_time_format_iso(at, iso));
        } else {
            bt_strbuf_addf(&m, "%s skipped: %s", agent, bt_json_str(data, "reason", ""));
        }
        progress(r, "agent.status",
                 json_pack("{ss ss ss ss ss}", "step", r->key, "agent", agent, "tool", "", "text",
                           m.buf, "kind", kind));
        bt_strbuf_release(&m);
    }
}

static void on_resil_done(const bt_resil_result *res, void *ud)
{
    rrun *r = ud;
    r->rcall = NULL;
    unref(r);
    const bt_agent_result *ar = res->agent_result;
    step_out o = {0};
    o.status = res->success ? BT_STEP_SUCCEEDED : BT_STEP_FAILED;
    o.output = bt_xstrdup(ar && ar->output ? ar->output : "");
    o.error = res->success ? NULL : bt_xstrdup(res->error);
    o.error_class = res->success                             ? NULL
                    : res->error_class == BT_AGENT_TRANSIENT ? "transient"
                    : res->error_class == BT_AGENT_TIMEOUT   ? "timeout"
                    : res->error_class == BT_AGENT_CANCELLED ? "cancelled"
                                                             : "permanent";
    o.exit_code = ar ? ar->exit_code : -1;
    o.tokens_in = ar ? ar->tokens_in : 0;
    o.tokens_out = ar ? ar->tokens_out : 0;
    o.cost_usd = ar ? ar->cost_usd : 0;
    /* who produced the result (or ran last); the primary when none ran */
    o.agent = bt_xstrdup(res->agent           ? res->agent
                         : res->nattempts > 0 ? res->attempts[0].agent
                                              : r->agent_name);
    o.fallback_from = bt_xstrdup(res->fallback_from);
    step_done(r, &o);
}

/* The call's chain: the step's agent, then the step's fallback list, else that agent's
 * own configured fallback (agents.<n>.fallback); each name once. Borrowed names. */
typedef BT_VEC(const char *) name_vec;

static void chain_add(name_vec *v, const char *name)
{
    for (size_t i = 0; i < v->len; i++)
        if (strcmp(v->items[i], name) == 0)
            return;
    bt_vec_push(v, name);
}

static void agent_chain(rrun *r, name_vec *v)
{
    chain_add(v, r->agent_name);
    const bt_wf_step *st = r->step;
    if (st->nfallback) {
        for (size_t i = 0; i < st->nfallback; i++)
            chain_add(v, st->fallback[i]);
        return;
    }
    const bt_config_agent *ac =
        r->e->env.cfg ? bt_config_agent_find(r->e->env.cfg, r->agent_name) : NULL;
    for (size_t i = 0; ac && i < ac->fallback.len; i++)
        chain_add(v, ac->fallback.items[i]);
}

static void start_agent(rrun *r)
{
    bt_engine *e = r->e;
    bt_resil *rs = bt_engine_resil(e);
    if (!rs) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "agent %s is not configured (add it under agents: in baton.yaml)",
                       r->agent_name);
        fail_step(r, m.buf, "permanent");
        bt_strbuf_release(&m);
        return;
    }
    if (e->env.offline) {
        const char *why = NULL;
        bt_resil_set_offline(rs, e->env.offline(e->env.ud, &why));
    }
    name_vec chain = {0};
    agent_chain(r, &chain);
    if (bt_json_bool(r->state, "offline", 0) && !bt_resil_offline(rs)) {
        /* this run is offline while the process is not: only local agents */
        bt_agents *set = e->env.agents ? e->env.agents(e->env.ud) : NULL;
        size_t k = 0;
        for (size_t i = 0; i < chain.len; i++) {
            bt_agent *a = set ? bt_agents_find(set, chain.items[i]) : NULL;
            if (!a || bt_agent_is_local(a))
                chain.items[k++] = chain.items[i];
        }
        if (k == 0) {
            bt_strbuf m = BT_STRBUF_INIT;
            bt_strbuf_addf(&m, "offline: every agent of this step is remote (%s", chain.items[0]);
            for (size_t i = 1; i < chain.len; i++)
                bt_strbuf_addf(&m, ", %s", chain.items[i]);
            bt_strbuf_addstr(&m, "); give it a local fallback");
            bt_vec_free(&chain);
            fail_step(r, m.buf, "transient");
            bt_strbuf_release(&m);
            return;
        }
        chain.len = k;
    }
    bt_resil_request rq = {.chain = chain.items,
                           .nchain = chain.len,
                           .agent = {.prompt = r->prompt,
                                     .system = r->system,
                                     .workspace = r->workspace,
                                     .timeout_ms = r->step->timeout_ms,
                                     .on_event = on_agent_event},
                           .task_id = r->task->id,
                           .run_id = r->run_id,
                           .on_status = on_resil_status,
                           .on_done = on_resil_done,
                           .ud = r};
    bt_error err = BT_ERROR_INIT;
    ref(r);
    if (bt_resil_call_start(rs, &rq, &r->rcall, &err) < 0) {
        r->rcall = NULL;
        r->refs--;
        fail_step(r, err.msg, "permanent");
    }
    bt_vec_free(&chain);
}

static void on_budget(void *ud, const bt_budget_verdict *v)
{
    rrun *r = ud;
    unref(r);
    if (r->cancelled || r->interrupted) {
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
        return;
    }
    if (!v->allowed) {
        fail_step(r, v->message ? v->message : "budget check failed",
                  v->rc ? "transient" : "permanent");
        return;
    }
    start_agent(r);
}

static void action_agent(rrun *r)
{
    const bt_wf_step *st = r->step;
    const bt_workflows *set = r->e->env.workflows;
    free(r->agent_name);
    r->agent_name = bt_xstrdup(st->agent);
    r->system = NULL;
    const bt_persona *pe = st->persona ? bt_workflows_persona(set, st->persona) : NULL;
    /* seed 001 assigned_agents: role -> persona or agent */
    json_t *as = st->role && r->assigned ? json_object_get(r->assigned, st->role) : NULL;
    if (json_is_string(as)) {
        const char *name = json_string_value(as);
        const bt_persona *ap = bt_workflows_persona(set, name);
        if (ap) {
            pe = ap;
            if (ap->agent) {
                free(r->agent_name);
                r->agent_name = bt_xstrdup(ap->agent);
            }
        } else {
            free(r->agent_name);
            r->agent_name = bt_xstrdup(name);
        }
    }
    if (pe)
        r->system = pe->prompt;
    if (!r->agent_name) {
        fail_step(r, "no agent for this step (name one with agent:)", "permanent");
        return;
    }
    free(r->prompt);
    r->prompt = NULL;
    if (st->prompt.src) {
        bt_error err = BT_ERROR_INIT;
        if (render(r, &st->prompt, "prompt", &r->prompt, &err) < 0) {
            fail_step(r, err.msg, "permanent");
            return;
        }
    } else {
        r->prompt = default_prompt(r);
    }
    const bt_config *cfg = r->e->env.cfg;
    ref(r);
    bt_budget_check(r->e->env.store, cfg ? &cfg->budgets : NULL, r->task->id, r->task->project,
                    bt_time_wall_ms(), on_budget, r);
}

/* ---- actions: shell-command and git-operation ---- */

static void on_proc_output(const char *data, size_t len, int is_stderr, void *ud)
{
    (void)is_stderr;
    rrun *r = ud;
    take_output(r, "", data, len);
}

static void on_proc_done(const bt_proc_result *res, void *ud)
{
    rrun *r = ud;
    r->proc = NULL;
    unref(r);
    step_out o = {0};
    o.exit_code = res->exit_code;
    o.output = trim_output(res->output ? res->output : "");
    if (res->exit_code == 0 && !res->timed_out && !res->cancelled) {
        o.status = BT_STEP_SUCCEEDED;
    } else {
        o.status = BT_STEP_FAILED;
        bt_strbuf m = BT_STRBUF_INIT;
        if (res->timed_out) {
            char d[32];
            bt_strbuf_addf(
                &m, "timed out after %s",
                bt_duration_format(r->step->timeout_ms > 0 ? r->step->timeout_ms : SHELL_TIMEOUT_MS,
                                   d));
            o.error_class = "timeout";
        } else if (res->cancelled) {
            bt_strbuf_addstr(&m, "cancelled");
            o.error_class = "cancelled";
        } else if (res->term_signal) {
            bt_strbuf_addf(&m, "killed by signal %d", res->term_signal);
            o.error_class = "transient";
        } else {
            bt_strbuf_addf(&m, "exit code %d", res->exit_code);
            o.error_class = "permanent";
        }
        /* the last line of output usually says why */
        size_t n = strlen(o.output);
        if (n) {
            const char *nl = o.output + n;
            while (nl > o.output && nl[-1] != '\n')
                nl--;
            bt_strbuf_addf(&m, ": %.300s", nl);
        }
        o.error = bt_strbuf_detach(&m, NULL);
    }
    step_done(r, &o);
}

static void push_env(bt_strvec *env, const char *name, const char *value)
{
    if (value)
        bt_strvec_pushf(env, "%s=%s", name, value);
}

static void start_proc(rrun *r, const char *const *argv, const char *cwd, bt_strvec *extra)
{
    bt_strvec env = BT_STRVEC_INIT;
    for (char **e = environ; e && *e; e++) {
        /* ours override the inherited ones */
        int dup = 0;
        for (size_t i = 0; extra && i < extra->len; i++) {
            const char *eq = strchr(extra->items[i], '=');
            size_t k = eq ? (size_t)(eq - extra->items[i]) : 0;
            if (k && strncmp(*e, extra->items[i], k + 1) == 0)
                dup = 1;
        }
        if (!dup)
            bt_strvec_push(&env, *e);
    }
    for (size_t i = 0; extra && i < extra->len; i++)
        bt_strvec_push(&env, extra->items[i]);
    bt_proc_opts po = {.argv = argv,
                       .cwd = cwd,
                       .env = env.items,
                       .timeout_ms =
                           r->step->timeout_ms > 0 ? r->step->timeout_ms : SHELL_TIMEOUT_MS,
                       .on_output = on_proc_output,
                       .on_done = on_proc_done,
                       .ud = r};
    bt_error err = BT_ERROR_INIT;
    ref(r);
    int rc = bt_proc_start(r->e->env.loop, &po, &r->proc, &err);
    bt_strvec_clear(&env);
    if (rc < 0) {
        r->proc = NULL;
        r->refs--;
        fail_step(r, err.msg, "permanent");
    }
}

static void base_env(rrun *r, bt_strvec *env)
{
    push_env(env, "BATON_TASK_ID", r->task->id);
    push_env(env, "BATON_RUN_ID", r->run_id);
    push_env(env, "BATON_WORKSPACE", r->workspace);
    push_env(env, "BATON_STEP", r->key);
    bt_strvec_pushf(env, "BATON_ITERATION=%d", r->iteration);
    push_env(env, "BATON_TITLE", r->task->title);
    push_env(env, "BATON_IDENTIFIER", r->task->identifier);
}

/* inputs.workdir, relative to the workspace and never outside it. */
static int step_cwd(rrun *r, bt_strbuf *cwd, bt_error *err)
{
    char *wd = NULL;
    int rc = render_input(r, "workdir", &wd, err);
    if (rc < 0)
        return rc;
    if (!wd || !*wd) {
        bt_strbuf_addstr(cwd, r->workspace);
        free(wd);
        return 0;
    }
    rc = bt_path_join_safe(r->workspace, wd, cwd, err);
    free(wd);
    return rc;
}

static void action_shell(rrun *r)
{
    bt_error err = BT_ERROR_INIT;
    char *cmd = NULL;
    bt_strbuf cwd = BT_STRBUF_INIT;
    if (render_input(r, "command", &cmd, &err) < 0 || step_cwd(r, &cwd, &err) < 0) {
        free(cmd);
        bt_strbuf_release(&cwd);
        fail_step(r, err.msg, "permanent");
        return;
    }
    if (!cmd || !*cmd) {
        free(cmd);
        bt_strbuf_release(&cwd);
        fail_step(r, "shell-command step has an empty command", "permanent");
        return;
    }
    bt_strvec env = BT_STRVEC_INIT;
    base_env(r, &env);
    json_t *ein = json_object_get(r->step->inputs, "env");
    if (json_is_object(ein)) {
        json_t *v = vars(r), *x = NULL;
        if (render_json(r, ein, v, &x, &err) < 0) {
            json_decref(v);
            free(cmd);
            bt_strbuf_release(&cwd);
            bt_strvec_clear(&env);
            bt_error_prefix(&err, "step '%s' inputs.env", r->step->id);
            fail_step(r, err.msg, "permanent");
            return;
        }
        const char *k;
        json_t *val;
        json_object_foreach(x, k, val)
        {
            if (json_is_string(val))
                bt_strvec_pushf(&env, "%s=%s", k, json_string_value(val));
        }
        json_decref(x);
        json_decref(v);
    }
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    start_proc(r, argv, cwd.buf, &env);
    bt_strvec_clear(&env);
    bt_strbuf_release(&cwd);
    free(cmd);
}

/* Each git operation is a short script whose parameters arrive in the environment, so a
 * branch name or commit message can never be read as shell syntax. */
static const struct {
    const char *op, *script;
} git_ops[] = {
    {"branch", "git checkout -q -B \"$BT_BRANCH\" ${BT_BASE:+\"$BT_BASE\"} && printf '%s\\n' "
               "\"$BT_BRANCH\""},
    {"checkout", "git checkout -q \"$BT_BRANCH\" && printf '%s\\n' \"$BT_BRANCH\""},
    {"add", "if [ -n \"$BT_PATHS\" ]; then printf '%s\\n' \"$BT_PATHS\" | tr ' ' '\\n' | "
            "xargs git add -A --; else git add -A; fi && git status --porcelain"},
    {"commit",
     "git add -A && if git diff --cached --quiet; then echo 'nothing to commit'; else "
     "git -c user.name=\"${GIT_AUTHOR_NAME:-baton}\" -c "
     "user.email=\"${GIT_AUTHOR_EMAIL:-baton@localhost}\" commit -q -m \"$BT_MESSAGE\" && "
     "git rev-parse HEAD; fi"},
    {"push", "git push -u \"${BT_REMOTE:-origin}\" \"${BT_BRANCH:-HEAD}\" 2>&1"},
    {"diff", "if [ -n \"$BT_STAT\" ]; then git diff --stat \"${BT_BASE:-HEAD}\"; else git diff "
             "\"${BT_BASE:-HEAD}\"; fi"},
    {"status", "git status --porcelain=v1 -b"},
};

static void action_git(rrun *r)
{
    bt_error err = BT_ERROR_INIT;
    char *op = NULL, *branch = NULL, *base = NULL, *message = NULL, *remote = NULL, *paths = NULL,
         *stat = NULL;
    bt_strbuf cwd = BT_STRBUF_INIT;
    if (render_input(r, "operation", &op, &err) < 0 || render_input(r, "branch", &branch, &err) ||
        render_input(r, "base", &base, &err) < 0 || render_input(r, "message", &message, &err) ||
        render_input(r, "remote", &remote, &err) < 0 || render_input(r, "paths", &paths, &err) ||
        render_input(r, "stat", &stat, &err) < 0 || step_cwd(r, &cwd, &err) < 0) {
        fail_step(r, err.msg, "permanent");
        goto out;
    }
    const char *script = NULL;
    for (size_t i = 0; op && i < sizeof git_ops / sizeof git_ops[0]; i++)
        if (strcmp(op, git_ops[i].op) == 0)
            script = git_ops[i].script;
    if (!script) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m,
                       "unknown git operation '%s' (branch, checkout, add, commit, push, "
                       "diff, status)",
                       op ? op : "");
        fail_step(r, m.buf, "permanent");
        bt_strbuf_release(&m);
        goto out;
    }
    if ((strcmp(op, "branch") == 0 || strcmp(op, "checkout") == 0) && (!branch || !*branch)) {
        fail_step(r, "git-operation branch/checkout needs inputs.branch", "permanent");
        goto out;
    }
    if (strcmp(op, "commit") == 0 && (!message || !*message)) {
        free(message);
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "%s", r->task->title ? r->task->title : "baton changes");
        message = bt_strbuf_detach(&m, NULL);
    }
    bt_strvec env = BT_STRVEC_INIT;
    base_env(r, &env);
    push_env(&env, "BT_BRANCH", branch && *branch ? branch : NULL);
    push_env(&env, "BT_BASE", base && *base ? base : NULL);
    push_env(&env, "BT_MESSAGE", message);
    push_env(&env, "BT_REMOTE", remote && *remote ? remote : NULL);
    push_env(&env, "BT_PATHS", paths && *paths ? paths : NULL);
    push_env(&env, "BT_STAT", stat && *stat && strcmp(stat, "false") != 0 ? "1" : NULL);
    bt_strvec_push(&env, "GIT_TERMINAL_PROMPT=0");
    for (size_t i = 0; i < r->git_env.len; i++)
        bt_strvec_push(&env, r->git_env.items[i]);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    start_proc(r, argv, cwd.buf, &env);
    bt_strvec_clear(&env);
out:
    bt_strbuf_release(&cwd);
    free(op);
    free(branch);
    free(base);
    free(message);
    free(remote);
    free(paths);
    free(stat);
}

/* ---- action: http ---- */

static void on_http_done(bt_http_call *call, const bt_http_response *res, void *ud)
{
    (void)call;
    rrun *r = ud;
    r->hcall = NULL;
    unref(r);
    step_out o = {0};
    o.exit_code = (int)res->status;
    if (res->rc < 0) {
        o.status = BT_STEP_FAILED;
        o.error = bt_xstrdup(r->cancelled ? "cancelled" : res->error);
        o.error_class = r->cancelled ? "cancelled" : "transient";
        step_done(r, &o);
        return;
    }
    o.output = bt_xstrndup(res->body, res->body_len);
    int ok;
    json_t *expect = json_object_get(r->step->inputs, "expect");
    if (json_is_integer(expect))
        ok = res->status == json_integer_value(expect);
    else if (json_is_array(expect)) {
        ok = 0;
        for (size_t i = 0; i < json_array_size(expect); i++)
            if (json_integer_value(json_array_get(expect, i)) == res->status)
                ok = 1;
    } else
        ok = res->status >= 200 && res->status < 300;
    if (ok) {
        o.status = BT_STEP_SUCCEEDED;
    } else {
        o.status = BT_STEP_FAILED;
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "HTTP %ld: %.200s", res->status, res->body);
        o.error = bt_strbuf_detach(&m, NULL);
        o.error_class = res->status >= 500 || res->status == 429 || res->status == 408
                            ? "transient"
                            : "permanent";
    }
    step_done(r, &o);
}

static void action_http(rrun *r)
{
    bt_error err = BT_ERROR_INIT;
    char *url = NULL, *method = NULL;
    json_t *headers = NULL, *body = NULL, *v = NULL;
    bt_strvec hv = BT_STRVEC_INIT;
    char *body_text = NULL;
    bt_http_client *hc = r->e->env.http ? r->e->env.http(r->e->env.ud) : NULL;
    if (!hc) {
        fail_step(r, "no HTTP client available (libcurl could not be loaded)", "permanent");
        return;
    }
    if (render_input(r, "url", &url, &err) < 0 || render_input(r, "method", &method, &err) < 0) {
        fail_step(r, err.msg, "permanent");
        goto out;
    }
    v = vars(r);
    json_t *hin = json_object_get(r->step->inputs, "headers");
    if (hin && render_json(r, hin, v, &headers, &err) < 0) {
        bt_error_prefix(&err, "step '%s' inputs.headers", r->step->id);
        fail_step(r, err.msg, "permanent");
        goto out;
    }
    json_t *bin = json_object_get(r->step->inputs, "body");
    if (bin && render_json(r, bin, v, &body, &err) < 0) {
        bt_error_prefix(&err, "step '%s' inputs.body", r->step->id);
        fail_step(r, err.msg, "permanent");
        goto out;
    }
    if (json_is_object(headers)) {
        const char *k;
        json_t *x;
        json_object_foreach(headers, k, x)
        {
            if (json_is_string(x))
                bt_strvec_pushf(&hv, "%s: %s", k, json_string_value(x));
        }
    }
    if (body) {
        if (json_is_string(body)) {
            body_text = bt_xstrdup(json_string_value(body));
        } else {
            body_text = bt_json_dumps(body);
            bt_strvec_push(&hv, "Content-Type: application/json");
        }
    }
    bt_http_request rq = {.method = method && *method ? method : NULL,
                          .url = url,
                          .headers = (const char *const *)hv.items,
                          .body = body_text,
                          .body_len = body_text ? strlen(body_text) : 0,
                          .timeout_ms =
                              r->step->timeout_ms > 0 ? r->step->timeout_ms : HTTP_TIMEOUT_MS,
                          .on_done = on_http_done,
                          .ud = r};
    ref(r);
    if (bt_http_client_send(hc, &rq, &r->hcall, &err) < 0) {
        r->hcall = NULL;
        r->refs--;
        fail_step(r, err.msg, "permanent");
    }
out:
    free(url);
    free(method);
    free(body_text);
    json_decref(headers);
    json_decref(body);
    json_decref(v);
    bt_strvec_clear(&hv);
}

/* ---- action: approval ---- */

static void approval_resolved(rrun *r, const bt_approval *a);

static void on_waiting_set(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    (void)run;
    rrun *r = ud;
    if (rc < 0)
        logw(r, "cannot mark the run waiting", err ? err->msg : "");
    unref(r);
}

static void wait_for(rrun *r, const bt_approval *a)
{
    if (r->interrupted || r->cancelled) {
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
        return;
    }
    memcpy(r->approval_id, a->id, sizeof r->approval_id);
    if (a->status != BT_APPROVAL_PENDING) {
        approval_resolved(r, a);
        return;
    }
    r->waiting = 1;
    json_t *ap = json_object_get(r->state, "approvals");
    if (!json_is_object(ap)) {
        ap = json_object();
        json_object_set_new(r->state, "approvals", ap);
    }
    char *k = row_key(r->iteration, r->key);
    json_object_set_new(ap, k, json_string(a->id));
    free(k);
    bt_run_patch p = {.set_status = true, .status = BT_RUN_WAITING, .state = r->state};
    ref(r);
    bt_store_run_update(r->e->env.store, r->run_id, &p, on_waiting_set, r);
    progress(r, "run.waiting",
             json_pack("{ss ss ss}", "approval_id", a->id, "step", r->key, "prompt",
                       a->prompt ? a->prompt : ""));
}

static void on_approval_created(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    rrun *r = ud;
    unref(r);
    if (r->interrupted && !r->cancelled) {
        step_out o = {0};
        step_done(r, &o);
        return;
    }
    if (rc < 0) {
        fail_step(r, err ? err->msg : "cannot create the approval", "transient");
        return;
    }
    wait_for(r, a);
}

/* An approval being asked for: its prompt and context, and while the workspace's diff
 * summary is collected (three git commands, one after the other, within one deadline),
 * that command's stdout. */
typedef struct approval_req {
    rrun *r;
    char *prompt;
    json_t *ctx;
    int stage; /* the git command running: index into diff_argv */
    int64_t deadline;
    bt_strvec env;
    bt_strbuf out[3];
    int over[3]; /* that command printed more than DIFF_OUTPUT_CAP */
} approval_req;

static void approval_req_free(approval_req *q)
{
    json_decref(q->ctx);
    free(q->prompt);
    bt_strvec_clear(&q->env);
    for (int i = 0; i < 3; i++)
        bt_strbuf_release(&q->out[i]);
    free(q);
}

static void on_pre_waiting(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    (void)run;
    approval_req *q = ud;
    rrun *r = q->r;
    if (rc < 0)
        logw(r, "cannot mark the run waiting", err ? err->msg : "");
    bt_approval_input in = {
        .run_id = r->run_id,
        .task_id = r->task->id,
        .step_key = r->key,
        .prompt = q->prompt,
        .context = q->ctx,
        .expires_at = r->step->timeout_ms > 0 ? bt_time_wall_ms() + r->step->timeout_ms : 0};
    /* the reference taken for the run update carries over to the approval */
    bt_store_approval_create(r->e->env.store, &in, on_approval_created, r);
    approval_req_free(q);
}

/* The run is marked waiting first and the approval created after, so whoever sees a
 * pending approval also sees its run waiting. */
static void request_approval(approval_req *q)
{
    rrun *r = q->r;
    bt_run_patch p = {.set_status = true, .status = BT_RUN_WAITING};
    ref(r);
    bt_store_run_update(r->e->env.store, r->run_id, &p, on_pre_waiting, q);
}

/* ---- the approval's diff summary: the workspace's uncommitted changes against HEAD ----
 *
 * Read-only git: nothing is staged, and GIT_OPTIONAL_LOCKS=0 keeps `git status` from
 * refreshing the index. Credentials are not needed (nothing leaves the machine), so git
 * gets this process's environment without the variables that would point it at another
 * repository. Any failure (not a repository, no commit yet, a timeout) only leaves the
 * summary out. */

static const char *const diff_argv[3][10] = {
    {"git", "-c", "core.fsmonitor=false", "rev-parse", "--short", "--verify", "HEAD", NULL},
    {"git", "-c", "core.fsmonitor=false", "status", "--porcelain=v1", "-z", "--untracked-files=all",
     NULL},
    {"git", "-c", "core.fsmonitor=false", "diff", "--numstat", "-z", "--no-ext-diff", "HEAD", "--",
     NULL},
};

static int repo_var(const char *kv)
{
    static const char *const vars[] = {
        "GIT_DIR=",    "GIT_WORK_TREE=",      "GIT_INDEX_FILE=",      "GIT_COMMON_DIR=",
        "GIT_PREFIX=", "GIT_OPTIONAL_LOCKS=", "GIT_TERMINAL_PROMPT=", "GIT_EXTERNAL_DIFF=",
        NULL};
    for (size_t i = 0; vars[i]; i++)
        if (strncmp(kv, vars[i], strlen(vars[i])) == 0)
            return 1;
    return 0;
}

/* A path as a JSON string; bytes that are not UTF-8 become '?'. */
static json_t *path_json(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    char *c = bt_xstrdup(s);
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(c);
    free(c);
    return v;
}

typedef struct numstat {
    long long added, removed; /* -1: binary */
} numstat;

static long long count_field(const char *s)
{
    return *s == '-' ? -1 : strtoll(s, NULL, 10);
}

/* `git diff --numstat -z` records: "A\tR\tpath\0", or for a rename "A\tR\t\0from\0to\0". */
static void parse_numstat(const bt_strbuf *b, bt_map *num, long long *ins, long long *del)
{
    const char *p = b->buf ? b->buf : "", *end = p + b->len;
    while (p < end) {
        const char *z = memchr(p, 0, (size_t)(end - p));
        const char *t1 = z ? memchr(p, '\t', (size_t)(z - p)) : NULL;
        const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(z - t1 - 1)) : NULL;
        if (!t2)
            return;
        numstat *n = bt_xcalloc(1, sizeof *n);
        n->added = count_field(p);
        n->removed = count_field(t1 + 1);
        const char *path = t2 + 1;
        p = z + 1;
        if (!*path) {
            const char *z2 = memchr(p, 0, (size_t)(end - p));
            const char *z3 = z2 ? memchr(z2 + 1, 0, (size_t)(end - z2 - 1)) : NULL;
            if (!z3) {
                free(n);
                return;
            }
            path = z2 + 1;
            p = z3 + 1;
        }
        *ins += n->added > 0 ? n->added : 0;
        *del += n->removed > 0 ? n->removed : 0;
        bt_map_set(num, path, n);
    }
}

/* One `git status --porcelain=v1 -z` entry's XY as M, A, D, R or ??; NULL to leave it
 * out (added to the index, then deleted: no change against HEAD). */
static const char *file_status(char x, char y)
{
    if (x == '?')
        return "??";
    if (x == 'A' && y == 'D')
        return NULL;
    if (x == 'R' || y == 'R')
        return "R";
    if (x == 'A' || x == 'C')
        return "A";
    if (x == 'D' || y == 'D')
        return "D";
    return "M";
}

static json_t *diff_summary(approval_req *q)
{
    bt_map *num = bt_map_new(free);
    long long ins = 0, del = 0;
    parse_numstat(&q->out[2], num, &ins, &del);
    json_t *files = json_array();
    long long changed = 0;
    const char *p = q->out[1].buf ? q->out[1].buf : "", *end = p + q->out[1].len;
    while (p < end) {
        const char *z = memchr(p, 0, (size_t)(end - p));
        if (!z)
            break;
        char x = p[0], y = z - p > 3 ? p[1] : 0;
        const char *path = p + 3;
        p = z + 1;
        if (!y)
            continue;
        if (x == 'R' || x == 'C' || y == 'R' || y == 'C') { /* "XY to\0from\0" */
            z = memchr(p, 0, (size_t)(end - p));
            if (!z)
                break;
            p = z + 1;
        }
        const char *st = file_status(x, y);
        if (!st)
            continue;
        changed++;
        if (json_array_size(files) >= DIFF_FILES_MAX)
            continue;
        const numstat *n = bt_map_get(num, path);
        json_array_append_new(
            files, json_pack("{so ss so so}", "path", path_json(path), "status", st, "added",
                             n && n->added >= 0 ? json_integer(n->added) : json_null(), "removed",
                             n && n->removed >= 0 ? json_integer(n->removed) : json_null()));
    }
    bt_map_free(num);
    bt_strbuf *base = &q->out[0];
    while (base->len && (base->buf[base->len - 1] == '\n' || base->buf[base->len - 1] == '\r'))
        bt_strbuf_setlen(base, base->len - 1);
    json_t *d = json_pack("{so sI sI sI ss}", "files", files, "files_changed", (json_int_t)changed,
                          "insertions", (json_int_t)ins, "deletions", (json_int_t)del, "base",
                          base->buf ? base->buf : "");
    if (d && (changed > (long long)json_array_size(files) || q->over[1] || q->over[2]))
        json_object_set_new(d, "truncated", json_true());
    return d;
}

static void diff_output(const char *data, size_t len, int is_stderr, void *ud)
{
    approval_req *q = ud;
    bt_strbuf *b = &q->out[q->stage];
    if (is_stderr)
        return;
    if (b->len + len > DIFF_OUTPUT_CAP) {
        q->over[q->stage] = 1;
        len = DIFF_OUTPUT_CAP - b->len;
    }
    bt_strbuf_add(b, data, len);
}

static void diff_start(approval_req *q);

static void on_diff_git(const bt_proc_result *res, void *ud)
{
    approval_req *q = ud;
    rrun *r = q->r;
    r->proc = NULL;
    unref(r);
    if (r->cancelled || r->interrupted) {
        approval_req_free(q);
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
        return;
    }
    if (res->exit_code != 0 || res->timed_out || res->cancelled) {
        logd(r, "approval without a diff summary: git failed",
             res->timed_out ? "timed out" : res->output);
        request_approval(q);
        return;
    }
    if (++q->stage < 3) {
        diff_start(q);
        return;
    }
    json_t *d = diff_summary(q);
    if (d)
        json_object_set_new(q->ctx, "diff", d);
    request_approval(q);
}

static void diff_start(approval_req *q)
{
    rrun *r = q->r;
    int64_t left = q->deadline - bt_time_mono_ms();
    if (left <= 0) {
        logd(r, "approval without a diff summary: git failed", "timed out");
        request_approval(q);
        return;
    }
    bt_proc_opts po = {.argv = diff_argv[q->stage],
                       .cwd = r->workspace,
                       .env = q->env.items,
                       .timeout_ms = left,
                       .kill_grace_ms = 1000,
                       .max_output = 4096, /* stderr, for the log */
                       .on_output = diff_output,
                       .on_done = on_diff_git,
                       .ud = q};
    bt_error err = BT_ERROR_INIT;
    ref(r);
    if (bt_proc_start(r->e->env.loop, &po, &r->proc, &err) < 0) {
        r->proc = NULL;
        r->refs--;
        logd(r, "approval without a diff summary: cannot run git", err.msg);
        request_approval(q);
    }
}

/* The context (workflow, step, iteration, the previous step and its output, then the
 * workspace's diff summary when it is a git work tree), then the approval. */
static void create_approval(rrun *r)
{
    bt_error err = BT_ERROR_INIT;
    char *prompt = NULL;
    if (render_input(r, "prompt", &prompt, &err) < 0) {
        fail_step(r, err.msg, "permanent");
        return;
    }
    if (!prompt || !*prompt) {
        free(prompt);
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "Approve step '%s' of workflow %s for %s?", r->step->name,
                       top(r)->wf->id, r->task->identifier ? r->task->identifier : r->task->id);
        prompt = bt_strbuf_detach(&m, NULL);
    }
    frame *f = top(r);
    const char *prev = bt_json_str(f->previous, "output", "");
    size_t plen = strlen(prev);
    json_t *ctx =
        json_pack("{ss ss si ss ss%}", "workflow", f->wf->id, "step", r->key, "iteration",
                  r->iteration, "previous_step", bt_json_str(f->previous, "step", ""),
                  "previous_output", prev, (size_t)(plen > CONTEXT_CAP ? CONTEXT_CAP : plen));
    approval_req *q = bt_xcalloc(1, sizeof *q);
    q->r = r;
    q->prompt = prompt;
    q->ctx = ctx;
    if (!r->workspace || !*r->workspace) {
        request_approval(q);
        return;
    }
    for (char **e = environ; e && *e; e++)
        if (!repo_var(*e))
            bt_strvec_push(&q->env, *e);
    bt_strvec_push(&q->env, "GIT_TERMINAL_PROMPT=0");
    bt_strvec_push(&q->env, "GIT_OPTIONAL_LOCKS=0");
    q->deadline = bt_time_mono_ms() + DIFF_TIMEOUT_MS;
    diff_start(q);
}

static void on_existing_approvals(void *ud, int rc, const bt_error *err, bt_approval *const *items,
                                  size_t n)
{
    (void)err;
    rrun *r = ud;
    unref(r);
    if (rc == 0)
        for (size_t i = 0; i < n; i++)
            if (items[i]->step_key && strcmp(items[i]->step_key, r->key) == 0) {
                wait_for(r, items[i]);
                return;
            }
    create_approval(r);
}

static void on_known_approval(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    (void)err;
    rrun *r = ud;
    unref(r);
    if (rc == 0 && a) {
        wait_for(r, a);
        return;
    }
    create_approval(r);
}

static void action_approval(rrun *r)
{
    /* resume: the approval this step already asked for (state), else a pending one of
     * this step (created just before a crash), else a new one */
    json_t *ap = json_object_get(r->state, "approvals");
    char *k = row_key(r->iteration, r->key);
    const char *id = json_string_value(json_object_get(ap, k));
    free(k);
    ref(r);
    if (id)
        bt_store_approval_get(r->e->env.store, id, on_known_approval, r);
    else
        bt_store_approval_list(r->e->env.store, NULL, r->run_id, on_existing_approvals, r);
}

static void on_running_again(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    (void)run;
    rrun *r = ud;
    if (rc < 0)
        logw(r, "cannot mark the run running", err ? err->msg : "");
    unref(r);
}

static void approval_resolved(rrun *r, const bt_approval *a)
{
    r->waiting = 0;
    r->approval_id[0] = 0;
    bt_run_patch p = {.set_status = true, .status = BT_RUN_RUNNING};
    ref(r);
    bt_store_run_update(r->e->env.store, r->run_id, &p, on_running_again, r);
    step_out o = {0};
    bt_strbuf m = BT_STRBUF_INIT;
    const char *by = a->decided_by ? a->decided_by : "someone";
    if (a->status == BT_APPROVAL_APPROVED) {
        o.status = BT_STEP_SUCCEEDED;
        bt_strbuf_addf(&m, "approved by %s", by);
        if (a->comment && *a->comment)
            bt_strbuf_addf(&m, ": %s", a->comment);
        o.output = bt_strbuf_detach(&m, NULL);
    } else {
        o.status = BT_STEP_FAILED;
        o.error_class = "permanent";
        bt_strbuf_addf(&m, "%s by %s", a->status == BT_APPROVAL_EXPIRED ? "expired" : "rejected",
                       by);
        if (a->comment && *a->comment)
            bt_strbuf_addf(&m, ": %s", a->comment);
        o.error = bt_strbuf_detach(&m, NULL);
        o.output = bt_xstrdup(o.error);
    }
    o.exit_code = -1;
    step_done(r, &o);
}

/* The two callbacks below drop their reference last: the run may have ended (stopped
 * while waiting) and be freed by that unref. */
static void on_decided(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    rrun *r = ud;
    r->deciding = 0;
    if (r->waiting && !r->ended) {
        if (rc == BT_ESTATE || rc == 0) {
            if (a && a->status != BT_APPROVAL_PENDING)
                approval_resolved(r, a);
        } else {
            logw(r, "cannot read the approval", err ? err->msg : "");
        }
    }
    unref(r);
}

static void on_approval_read(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    (void)err;
    rrun *r = ud;
    r->deciding = 0;
    if (r->waiting && !r->ended && rc == 0 && a) {
        if (a->status != BT_APPROVAL_PENDING) {
            approval_resolved(r, a);
        } else if (a->expires_at > 0 && bt_time_wall_ms() >= a->expires_at) {
            r->deciding = 1;
            ref(r);
            bt_store_approval_decide(r->e->env.store, a->id, false, "baton",
                                     "no decision before the step's timeout", on_decided, r);
        }
    }
    unref(r);
}

static void check_approval(rrun *r)
{
    if (!r->waiting || r->deciding || !r->approval_id[0])
        return;
    r->deciding = 1;
    ref(r);
    bt_store_approval_get(r->e->env.store, r->approval_id, on_approval_read, r);
}

/* ---- action: execute-workflow ---- */

static void action_workflow(rrun *r)
{
    const bt_wf_step *st = r->step;
    const bt_workflow *sub = bt_workflows_find(r->e->env.workflows, st->workflow);
    bt_error err = BT_ERROR_INIT;
    if (!sub) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "unknown workflow '%s'", st->workflow ? st->workflow : "");
        fail_step(r, m.buf, "permanent");
        bt_strbuf_release(&m);
        return;
    }
    if (r->depth >= BT_WORKFLOW_MAX_DEPTH) {
        fail_step(r, "sub-workflows nested too deeply", "permanent");
        return;
    }
    json_t *v = vars(r), *given = NULL, *bound = NULL;
    int rc = render_json(r, st->inputs, v, &given, &err);
    json_decref(v);
    if (rc == 0)
        rc = bt_workflow_bind_inputs(sub, given, &bound, &err);
    json_decref(given);
    if (rc < 0) {
        bt_error_prefix(&err, "step '%s' (execute-workflow %s)", st->id, sub->id);
        fail_step(r, err.msg, "permanent");
        return;
    }
    bt_strbuf prefix = BT_STRBUF_INIT;
    bt_strbuf_addf(&prefix, "%s/", r->key);
    r->depth++;
    frame *f = top(r);
    frame_init(f, sub, bound, prefix.buf);
    memcpy(f->call_row, r->step_id, sizeof f->call_row);
    bt_strbuf_release(&prefix);
    r->step = NULL;
    walk(r);
}

/* The sub-workflow of the current frame has run all its steps. */
static void end_subworkflow(rrun *r)
{
    frame *f = top(r);
    json_t *outs = render_outputs(r, f);
    step_out o = {0};
    /* only continue_on_error failures get here: they do not fail the call either */
    o.status = BT_STEP_SUCCEEDED;
    const char *out = f->last_output ? f->last_output : "";
    if (json_object_size(outs) > 0) {
        json_t *first = json_object_iter_value(json_object_iter(outs));
        if (json_is_string(first))
            out = json_string_value(first);
    }
    o.output = bt_xstrdup(out);
    o.outputs = outs;
    o.exit_code = -1;
    char row[BT_ID_LEN + 1];
    memcpy(row, f->call_row, sizeof row);
    frame_clear(f);
    r->depth--;
    /* restore the calling step as the current one */
    frame *pf = top(r);
    r->step = &pf->wf->steps[pf->index];
    free(r->key);
    bt_strbuf k = BT_STRBUF_INIT;
    bt_strbuf_addf(&k, "%s%s", pf->prefix, r->step->id);
    r->key = bt_strbuf_detach(&k, NULL);
    memcpy(r->step_id, row, sizeof r->step_id);
    r->failures = r->step->retries; /* a sub-workflow is not retried as a whole */
    step_done(r, &o);
}

/* ---- steps ---- */

static void dispatch(rrun *r)
{
    switch (r->step->action) {
    case BT_WF_AGENT:
        action_agent(r);
        break;
    case BT_WF_SHELL:
        action_shell(r);
        break;
    case BT_WF_GIT:
        action_git(r);
        break;
    case BT_WF_WORKFLOW:
        action_workflow(r);
        break;
    case BT_WF_APPROVAL:
        action_approval(r);
        break;
    case BT_WF_HTTP:
        action_http(r);
        break;
    default:
        fail_step(r, "unknown action", "permanent");
        break;
    }
}

/* ---- file-level locks (step `locks:`) ----
 *
 * A step that declares paths holds them in the store (bt_store_lock_acquire: all or
 * none, overlapping paths of another owner in the same repository conflict) from before
 * its action starts until it ends; the owner is the run, so a resumed run takes its own
 * locks back. Held locks are renewed every ttl/3; a killed process's locks expire after
 * locks.ttl. On a conflict the step waits (event step.waiting, retried every second, up
 * to locks.wait_timeout) or, with locks.on_conflict: fail, fails at once (transient: a
 * retry of the task may find the paths free). */

#define LOCK_RETRY_MS 1000

static void locks_try(rrun *r);

static int64_t lock_ttl(const rrun *r)
{
    const bt_config *cfg = r->e->env.cfg;
    return cfg && cfg->locks.ttl_ms > 0 ? cfg->locks.ttl_ms : 600000;
}

static void lock_timer_ensure(rrun *r)
{
    if (!r->lock_timer_init) {
        uv_timer_init(r->e->env.loop, &r->lock_timer);
        r->lock_timer.data = r;
        r->lock_timer_init = 1;
    }
}

/* The repository the run works on: its project's repo when configured, else the
 * workspace's git origin (workspace/repo_id.h). */
static const char *locks_repo(rrun *r)
{
    if (r->lock_repo)
        return r->lock_repo;
    const bt_config *cfg = r->e->env.cfg;
    for (size_t i = 0; cfg && r->task->project && i < cfg->projects.len; i++) {
        const bt_config_project *p = &cfg->projects.items[i];
        if (p->repo && strcasecmp(p->id, r->task->project) == 0) {
            bt_strbuf sb = BT_STRBUF_INIT;
            bt_strbuf_addf(&sb, "project:%s", p->repo);
            r->lock_repo = bt_strbuf_detach(&sb, NULL);
            return r->lock_repo;
        }
    }
    r->lock_repo = bt_repo_identity(r->workspace);
    return r->lock_repo;
}

static void on_locks_released(void *ud, int rc, const bt_error *err, int64_t n)
{
    rrun *r = ud;
    (void)n;
    if (rc < 0)
        logw(r, "cannot release file locks (they expire by themselves)", err ? err->msg : "");
    unref(r);
}

static void locks_release(rrun *r)
{
    if (r->lock_timer_init)
        uv_timer_stop(&r->lock_timer);
    if (r->lock_wait) {
        r->lock_wait = 0;
        r->refs--; /* the waiting timer's */
    }
    if (!r->locks_held)
        return;
    r->locks_held = 0;
    ref(r);
    bt_store_lock_release(r->e->env.store, r->lock_repo, r->run_id, on_locks_released, r);
}

static void on_lock_renewed(void *ud, int rc, const bt_error *err, const bt_lock *holder)
{
    rrun *r = ud;
    (void)holder;
    if (rc < 0)
        logw(r, "cannot renew file locks", err ? err->msg : "");
    unref(r);
}

static void on_lock_timer(uv_timer_t *t)
{
    rrun *r = t->data;
    if (r->lock_wait) {
        r->lock_wait = 0;
        unref(r);
        if (!r->cancelled && !r->interrupted && !r->ended)
            locks_try(r);
        return;
    }
    if (r->locks_held) {
        ref(r);
        bt_store_lock_acquire(r->e->env.store, r->lock_repo, (const char *const *)r->step->locks,
                              r->step->nlocks, r->run_id, lock_ttl(r), on_lock_renewed, r);
    }
}

static void on_locks(void *ud, int rc, const bt_error *err, const bt_lock *holder)
{
    rrun *r = ud;
    unref(r);
    if (r->cancelled || r->interrupted) {
        if (rc == 0)
            r->locks_held = 1; /* released by step_done */
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
        return;
    }
    const bt_config *cfg = r->e->env.cfg;
    if (rc == 0) {
        r->locks_held = 1;
        int64_t ttl = lock_ttl(r);
        lock_timer_ensure(r);
        uv_timer_start(&r->lock_timer, on_lock_timer, (uint64_t)(ttl / 3), (uint64_t)(ttl / 3));
        uv_unref((uv_handle_t *)&r->lock_timer);
        json_t *paths = json_array();
        for (size_t i = 0; i < r->step->nlocks; i++)
            json_array_append_new(paths, json_string(r->step->locks[i]));
        json_t *d = json_pack(
            "{ss so ss sI}", "step", r->key, "paths", paths, "repo", r->lock_repo, "waited_ms",
            (json_int_t)(r->lock_wait_since ? bt_time_mono_ms() - r->lock_wait_since : 0));
        progress(r, "step.locked", json_incref(d));
        json_decref(d);
        r->lock_wait_since = 0;
        dispatch(r);
        return;
    }
    if (rc != BT_ECONFLICT) {
        fail_step(r, err ? err->msg : "cannot take the step's file locks", "transient");
        return;
    }
    bt_strbuf m = BT_STRBUF_INIT;
    bt_strbuf_addf(&m, "%s is locked by run %s",
                   holder && holder->path && *holder->path ? holder->path : "the repository",
                   holder && holder->owner ? holder->owner : "?");
    int fail_fast = cfg && cfg->locks.on_conflict == BT_LOCK_FAIL;
    int64_t limit = cfg && cfg->locks.wait_timeout_ms > 0 ? cfg->locks.wait_timeout_ms : 1800000;
    int64_t now = bt_time_mono_ms();
    if (fail_fast || (r->lock_wait_since && now - r->lock_wait_since >= limit)) {
        bt_strbuf f = BT_STRBUF_INIT;
        if (fail_fast)
            bt_strbuf_addf(&f, "file locks: %s (locks.on_conflict is fail)", m.buf);
        else
            bt_strbuf_addf(&f, "file locks: gave up after waiting %llds: %s",
                           (long long)(limit / 1000), m.buf);
        r->lock_wait_since = 0;
        fail_step(r, f.buf, "transient");
        bt_strbuf_release(&f);
        bt_strbuf_release(&m);
        return;
    }
    if (!r->lock_wait_since) {
        r->lock_wait_since = now;
        json_t *paths = json_array();
        for (size_t i = 0; i < r->step->nlocks; i++)
            json_array_append_new(paths, json_string(r->step->locks[i]));
        json_t *d = json_pack("{ss ss so ss ss ss}", "step", r->key, "reason", "lock", "paths",
                              paths, "repo", r->lock_repo, "holder",
                              holder && holder->owner ? holder->owner : "", "detail", m.buf);
        progress(r, "step.waiting", json_incref(d));
        emit(r, "step.waiting", d);
    }
    bt_strbuf_release(&m);
    lock_timer_ensure(r);
    r->lock_wait = 1;
    ref(r);
    uv_timer_start(&r->lock_timer, on_lock_timer, LOCK_RETRY_MS, 0);
}

static void locks_try(rrun *r)
{
    ref(r);
    bt_store_lock_acquire(r->e->env.store, locks_repo(r), (const char *const *)r->step->locks,
                          r->step->nlocks, r->run_id, lock_ttl(r), on_locks, r);
}

static void locks_take(rrun *r)
{
    r->lock_wait_since = 0;
    locks_try(r);
}

static void on_step_started(void *ud, int rc, const bt_error *err, const bt_step *st)
{
    rrun *r = ud;
    unref(r);
    if (rc < 0) {
        run_end(r, "failed", err ? err->msg : "cannot record the step", "transient");
        return;
    }
    if (r->cancelled) {
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
        return;
    }
    if (r->interrupted) {
        run_interrupted(r);
        return;
    }
    memcpy(r->step_id, st->id, sizeof r->step_id);
    if (r->fail_now) {
        char *m = r->fail_now;
        r->fail_now = NULL;
        fail_step(r, m, "permanent");
        free(m);
        return;
    }
    json_t *p = bt_step_to_json(st);
    json_object_set_new(p, "action", json_string(bt_wf_action_name(r->step->action)));
    json_object_set_new(p, "total", json_integer((json_int_t)top(r)->wf->nsteps));
    json_object_set_new(p, "index", json_integer((json_int_t)top(r)->index));
    json_object_set_new(p, "depth", json_integer(r->depth));
    progress(r, "step.started", p);
    if (r->cancelled || r->interrupted) {
        /* stopped from the progress callback: there is no action yet for stop_action to
         * stop, so do not start one (step_done leaves the row running when interrupted) */
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
        return;
    }
    if (r->step->nlocks)
        locks_take(r);
    else
        dispatch(r);
}

/* Position of the current step for ordering rows: the top-level index, then the
 * sub-workflow's (two levels are distinguished; deeper ones share their parent's). */
static int32_t step_seq(const rrun *r)
{
    int32_t seq = (int32_t)r->fr[0].index * 1000;
    if (r->depth >= 1)
        seq += (int32_t)(r->fr[1].index + 1) * 10;
    if (r->depth >= 2)
        seq += (int32_t)(r->fr[2].index + 1 > 9 ? 9 : r->fr[2].index + 1);
    return seq;
}

static void begin_step(rrun *r)
{
    const bt_wf_step *st = r->step;
    const char *agent = st->action == BT_WF_AGENT ? st->agent : NULL;
    ref(r);
    bt_store_step_start(r->e->env.store, r->run_id, r->key, r->iteration, r->attempt, step_seq(r),
                        agent, st->role, on_step_started, r);
}

static void on_skip_finished(void *ud, int rc, const bt_error *err, const bt_step *st)
{
    rrun *r = ud;
    unref(r);
    if (rc < 0) {
        run_end(r, "failed", err ? err->msg : "cannot record the step", "transient");
        return;
    }
    after_step(r, st, NULL);
}

static void on_skip_started(void *ud, int rc, const bt_error *err, const bt_step *st)
{
    rrun *r = ud;
    if (rc < 0) {
        unref(r);
        run_end(r, "failed", err ? err->msg : "cannot record the step", "transient");
        return;
    }
    bt_step_result res = {.status = BT_STEP_SKIPPED,
                          .output = "",
                          .exit_code = -1,
                          .error = "condition (when) was false"};
    bt_store_step_finish(r->e->env.store, st->id, &res, on_skip_finished, r);
}

static int finished_status(const char *s)
{
    return strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "skipped") == 0;
}

/* Turn a stored row (JSON) back into what ctx_apply needs. */
static void row_from_json(const json_t *j, bt_step *st)
{
    memset(st, 0, sizeof *st);
    bt_step_status_parse(bt_json_str(j, "status", "pending"), &st->status);
    st->output = (char *)bt_json_str(j, "output", "");
    st->agent = (char *)bt_json_str(j, "agent", NULL);
    st->error = (char *)bt_json_str(j, "error", NULL);
    st->error_class = (char *)bt_json_str(j, "error_class", NULL);
    st->exit_code = (int32_t)bt_json_int(j, "exit_code", -1);
    st->iteration = (int32_t)bt_json_int(j, "iteration", 0);
    st->tokens_in = bt_json_int(j, "tokens_in", 0);
    st->tokens_out = bt_json_int(j, "tokens_out", 0);
    json_t *c = json_object_get(j, "cost_usd");
    st->cost_usd = json_is_number(c) ? json_number_value(c) : 0;
}

static void walk(rrun *r)
{
    for (;;) {
        if (r->ended)
            return;
        if (r->cancelled) {
            run_end(r, "cancelled", r->cancel_reason, "cancelled");
            return;
        }
        if (r->interrupted) {
            run_interrupted(r);
            return;
        }
        frame *f = top(r);
        if (f->index >= f->wf->nsteps) {
            if (r->depth > 0) {
                end_subworkflow(r);
                return;
            }
            break;
        }
        const bt_wf_step *st = &f->wf->steps[f->index];
        r->step = st;
        free(r->key);
        bt_strbuf k = BT_STRBUF_INIT;
        bt_strbuf_addf(&k, "%s%s", f->prefix, st->id);
        r->key = bt_strbuf_detach(&k, NULL);
        r->failures = 0;
        r->attempt = 1;
        char *rk = row_key(r->iteration, r->key);
        json_t *row = json_object_get(r->rows, rk);
        free(rk);
        if (row) {
            const char *status = bt_json_str(row, "status", "");
            int attempt = (int)bt_json_int(row, "attempt", 1);
            if (finished_status(status) && st->action != BT_WF_WORKFLOW) {
                /* done before a restart: reuse, never re-run */
                bt_step s;
                row_from_json(row, &s);
                ctx_apply(f, st, &s, json_object_get(row, "outputs"));
                f->index++;
                if (s.status == BT_STEP_FAILED && !st->continue_on_error) {
                    bt_strbuf m = BT_STRBUF_INIT;
                    bt_strbuf_addf(&m, "step '%s' failed: %s", r->key, s.error ? s.error : "error");
                    run_end(r, "failed", m.buf, "permanent");
                    bt_strbuf_release(&m);
                    return;
                }
                continue;
            }
            if (finished_status(status) && st->action == BT_WF_WORKFLOW &&
                strcmp(status, "succeeded") == 0) {
                /* the whole sub-workflow finished: its outputs are in its row */
                bt_step s;
                row_from_json(row, &s);
                ctx_apply(f, st, &s, NULL);
                f->index++;
                continue;
            }
            /* running (the process died during it) or a failed sub-workflow call */
            if (st->action == BT_WF_APPROVAL || st->action == BT_WF_WORKFLOW)
                r->attempt = attempt; /* same gate / same call: keep the row */
            else
                r->attempt = attempt + 1;
            if (st->action != BT_WF_APPROVAL && st->action != BT_WF_WORKFLOW &&
                strcmp(status, "running") == 0) {
                /* close the interrupted attempt for the record */
                bt_step_result res = {.status = BT_STEP_CANCELLED,
                                      .error = "interrupted: the process running it ended",
                                      .error_class = "cancelled",
                                      .exit_code = -1};
                ref(r);
                bt_store_step_finish(r->e->env.store, bt_json_str(row, "id", ""), &res,
                                     on_step_finished, r);
            }
        }
        if (st->when.src) {
            json_t *v = vars(r), *val = NULL;
            bt_error err = BT_ERROR_INIT;
            bt_tmpl_error where = {0, 0};
            int rc = bt_tmpl_eval(st->when.tmpl, v, &val, &where, &err);
            json_decref(v);
            if (rc < 0) {
                /* record the step as failed so the reason is visible in its row */
                bt_error_prefix(&err, "step '%s' when", r->key);
                json_decref(val);
                free(r->fail_now);
                r->fail_now = bt_xstrdup(err.msg);
                begin_step(r);
                return;
            }
            int truthy = bt_tmpl_truthy(val);
            json_decref(val);
            if (!truthy) {
                progress(r, "step.skipped",
                         json_pack("{ss si}", "step", r->key, "iteration", r->iteration));
                ref(r);
                bt_store_step_start(r->e->env.store, r->run_id, r->key, r->iteration, r->attempt,
                                    step_seq(r), NULL, st->role, on_skip_started, r);
                return;
            }
        }
        begin_step(r);
        return;
    }
    /* the iteration is over */
    frame *f = top(r);
    const bt_wf_step *rev = bt_workflow_review_step(f->wf);
    int sugg = -1;
    if (rev) {
        json_t *c = json_object_get(f->steps, rev->id);
        if (strcmp(bt_json_str(c, "status", ""), "succeeded") == 0)
            sugg = bt_workflow_count_suggestions(bt_json_str(c, "output", ""));
    }
    int stop = f->all_passed && (sugg < 0 || sugg <= f->wf->max_suggestions);
    const char *reason = stop ? (sugg >= 0 ? "review_passed" : "all_steps_passed") : NULL;
    json_t *it = json_pack("{si si sb}", "iteration", r->iteration, "max_iterations",
                           r->max_iterations, "all_passed", f->all_passed);
    json_object_set_new(it, "suggestions", sugg >= 0 ? json_integer(sugg) : json_null());
    if (!stop && r->iteration >= r->max_iterations)
        reason = "max_iterations";
    json_object_set_new(it, "stop", json_boolean(reason != NULL));
    if (reason)
        json_object_set_new(it, "stop_reason", json_string(reason));
    emit(r, "run.iteration", json_deep_copy(it));
    progress(r, "run.iteration", it);
    if (reason) {
        json_object_set_new(r->state, "stop_reason", json_string(reason));
        json_object_set_new(r->state, "suggestions", sugg >= 0 ? json_integer(sugg) : json_null());
        /* a continue_on_error failure kept the stop rule from being met, but does not
         * fail the run (engine.h, workflow.h) */
        run_end(r, "completed", NULL, NULL);
        return;
    }
    r->iteration++;
    f->index = 0;
    f->all_passed = 1;
    json_object_set_new(r->state, "iteration", json_integer(r->iteration));
    bt_run_patch p = {.set_iteration = true, .iteration = r->iteration, .state = r->state};
    ref(r);
    bt_store_run_update(r->e->env.store, r->run_id, &p, on_running_again, r);
    walk(r);
}

/* ---- starting and resuming ---- */

static void on_steps_loaded(void *ud, int rc, const bt_error *err, bt_step *const *steps, size_t n)
{
    rrun *r = ud;
    unref(r);
    if (rc < 0) {
        run_end(r, "failed", err ? err->msg : "cannot read the run's steps", "transient");
        return;
    }
    /* latest attempt per (iteration, key); contexts of earlier iterations replayed in
     * order so templates see the last output of every step */
    for (size_t i = 0; i < n; i++) {
        const bt_step *st = steps[i];
        char *k = row_key(st->iteration, st->step_key);
        json_t *prev = json_object_get(r->rows, k);
        if (!prev || bt_json_int(prev, "attempt", 0) <= st->attempt)
            json_object_set_new(r->rows, k, bt_step_to_json(st));
        free(k);
        if (st->iteration < r->iteration && !strchr(st->step_key, '/') &&
            (st->status == BT_STEP_SUCCEEDED || st->status == BT_STEP_FAILED)) {
            const bt_wf_step *ws = find_step(r->wf, st->step_key);
            if (ws) {
                frame *f = &r->fr[0];
                int keep = f->all_passed;
                ctx_apply(f, ws, st, NULL);
                f->all_passed = keep;
            }
        }
    }
    frame *f = &r->fr[0];
    json_decref(f->previous);
    f->previous = json_pack("{ss ss ss ss}", "output", "", "step", "", "agent", "", "status", "");
    emit(r, "run.resumed", json_pack("{si si}", "iteration", r->iteration, "steps_done", (int)n));
    progress(r, "run.resumed",
             json_pack("{ss si}", "run_id", r->run_id, "iteration", r->iteration));
    walk(r);
}

/* ---- the dynamic planner (planner.h) ----
 *
 * A run of a `planner: true` workflow first asks for a plan; the run then executes the
 * compiled plan, or `default` (its offline variant when offline) when planning failed.
 * Either choice is written to the run's state ("plan" / "plan_error" and
 * "plan_workflow") before the first step starts, so a resumed run follows it without
 * asking again. */

/* Make the top frame run wf instead of the planned workflow (which has no steps). */
static void plan_use(rrun *r, const bt_workflow *wf, json_t *inputs)
{
    json_t *in = inputs ? inputs : json_incref(r->fr[0].inputs);
    frame_clear(&r->fr[0]);
    frame_init(&r->fr[0], wf, in, "");
    r->wf = wf;
}

static void on_plan_stored(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    rrun *r = ud;
    (void)run;
    unref(r);
    if (rc < 0) {
        run_end(r, "failed", err ? err->msg : "cannot record the plan", "transient");
        return;
    }
    walk(r); /* it notices a cancel or shutdown that came meanwhile */
}

static void plan_store(rrun *r)
{
    bt_run_patch p = {.state = r->state};
    ref(r);
    bt_store_run_update(r->e->env.store, r->run_id, &p, on_plan_stored, r);
}

static void plan_failed(rrun *r, const char *reason, const char *agent, const json_t *excluded)
{
    const bt_workflows *set = r->e->env.workflows;
    const bt_workflow *d = bt_workflows_find(set, "default");
    if (d && bt_json_bool(r->state, "offline", 0))
        d = bt_workflow_offline_variant(set, d, NULL, 0);
    const char *why = bt_json_str(r->state, "plan_reason", NULL);
    json_t *ev = json_pack("{ss ss}", "reason", reason, "workflow", d ? d->id : "default");
    if (agent)
        json_object_set_new(ev, "agent", json_string(agent));
    if (excluded)
        json_object_set_new(ev, "excluded", json_deep_copy(excluded));
    if (why)
        json_object_set_new(ev, "why", json_string(why));
    emit(r, "run.plan_failed", json_deep_copy(ev));
    progress(r, "run.plan_failed", ev);
    logw(r, "planning failed; running the default workflow", reason);
    json_object_set_new(r->state, "plan_error", json_string(reason));
    bt_strbuf m = BT_STRBUF_INIT;
    json_t *bound = NULL;
    bt_error err = BT_ERROR_INIT;
    if (!d || d->planned)
        bt_strbuf_addf(&m, "planning failed (%s) and there is no default workflow", reason);
    else if (d->missing)
        bt_strbuf_addf(&m, "planning failed (%s) and workflow %s cannot run: %s", reason, d->id,
                       d->missing);
    else if (bt_workflow_bind_inputs(d, NULL, &bound, &err) < 0)
        bt_strbuf_addf(&m, "planning failed (%s) and workflow %s cannot start: %s", reason, d->id,
                       err.msg);
    if (m.len) {
        run_end(r, "failed", m.buf, "permanent");
        bt_strbuf_release(&m);
        return;
    }
    bt_strbuf_release(&m);
    json_object_set_new(r->state, "plan_workflow", json_string(d->id));
    json_object_set(r->state, "inputs", bound);
    plan_use(r, d, bound);
    plan_store(r);
}

static void on_planned(bt_planner_outcome *o, void *ud)
{
    rrun *r = ud;
    r->plan = NULL;
    unref(r);
    if (r->cancelled || r->interrupted || o->cancelled) {
        bt_workflows_free(o->set);
        o->set = NULL;
        if (r->interrupted)
            run_interrupted(r); /* the run stays resumable: planning starts again */
        else
            run_end(r, "cancelled", r->cancel_reason ? r->cancel_reason : "cancelled", "cancelled");
        return;
    }
    if (!o->ok) {
        plan_failed(r, o->reason ? o->reason : "no plan", o->agent, o->excluded);
        return;
    }
    r->plan_set = o->set;
    o->set = NULL;
    const bt_workflow *w = bt_workflows_at(r->plan_set, 0);
    json_object_set_new(r->state, "plan", json_string(o->plan));
    if (o->agent)
        json_object_set_new(r->state, "planner", json_string(o->agent));
    json_t *ev = json_pack("{ss* so}", "agent", o->agent, "steps", bt_planner_steps_json(w));
    json_object_set_new(ev, "excluded", o->excluded ? json_deep_copy(o->excluded) : json_array());
    const char *why = bt_json_str(r->state, "plan_reason", NULL);
    if (why)
        json_object_set_new(ev, "why", json_string(why));
    emit(r, "run.planned", json_deep_copy(ev));
    progress(r, "run.planned", ev);
    plan_use(r, w, NULL);
    plan_store(r);
}

static void plan_begin(rrun *r);

/* r->timer (the retry timer: cancel and stop know how to end a run waiting on it). */
static void on_plan_wait(uv_timer_t *t)
{
    rrun *r = t->data;
    unref(r);
    plan_begin(r);
}

static void plan_begin(rrun *r)
{
    const bt_engine_env *env = &r->e->env;
    bt_resil *rs = bt_engine_resil(r->e);
    if (!rs || !env->cfg) {
        plan_failed(r, "no agent can plan: the engine has no resilience layer to call agents", NULL,
                    NULL);
        return;
    }
    if (!bt_resil_loaded(rs) && r->plan_waits < 200) {
        /* the success rates the plan depends on are still being read (at most 10 s) */
        r->plan_waits++;
        ref(r);
        uv_timer_start(&r->timer, on_plan_wait, 50, 0);
        return;
    }
    bt_planner_request rq = {.resil = rs,
                             .agents = env->agents ? env->agents(env->ud) : NULL,
                             .cfg = env->cfg,
                             .base = env->workflows,
                             .planned = r->wf,
                             .offline = bt_json_bool(r->state, "offline", 0),
                             .title = r->task->title,
                             .body = r->task->body,
                             .workspace = r->workspace,
                             .task_id = r->task->id,
                             .run_id = r->run_id,
                             .on_done = on_planned,
                             .ud = r};
    bt_error err = BT_ERROR_INIT;
    ref(r);
    if (bt_planner_start(&rq, &r->plan, &err) < 0) {
        r->plan = NULL;
        r->refs--;
        plan_failed(r, err.msg, NULL, NULL);
    }
}

/* Resuming a planned run: the plan (or the fallback) its state recorded. Returns 0 with
 * r->wf set, 1 when no choice was recorded (plan again), or -1 with *why. */
static int plan_resume(rrun *r, bt_strbuf *why)
{
    const bt_engine_env *env = &r->e->env;
    const char *plan = bt_json_str(r->state, "plan", NULL);
    const char *pw = bt_json_str(r->state, "plan_workflow", NULL);
    if (plan) {
        bt_error err = BT_ERROR_INIT;
        if (bt_planner_compile(env->cfg, env->workflows, r->wf, plan, &r->plan_set, &err) < 0) {
            bt_strbuf_addf(why, "cannot resume the planned run: %s", err.msg);
            return -1;
        }
        r->wf = bt_workflows_at(r->plan_set, 0);
        return 0;
    }
    if (pw) {
        const bt_workflow *w = bt_workflows_find(env->workflows, pw);
        if (!w || w->missing || w->planned) {
            bt_strbuf_addf(why, "cannot resume: workflow %s (used because planning failed) %s", pw,
                           w && w->missing ? w->missing : "is not available");
            return -1;
        }
        r->wf = w;
        return 0;
    }
    return 1;
}

static void on_run_created(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    rrun *r = ud;
    unref(r);
    if (rc < 0) {
        r->ended = 1;
        r->final_status = bt_xstrdup("failed");
        r->final_error = bt_xstrdup(err ? err->msg : "cannot create the run");
        r->final_class = "transient";
        deliver(r, NULL, NULL, 0);
        maybe_free(r);
        return;
    }
    memcpy(r->run_id, run->id, sizeof r->run_id);
    if (bt_json_bool(r->state, "offline", 0)) {
        /* say which workflow offline mode chose and why (baton run prints it) */
        json_t *d = json_pack("{ss ss ss ss}", "run_id", r->run_id, "requested",
                              bt_json_str(r->state, "requested_workflow", ""), "workflow",
                              r->wf->id, "reason", bt_json_str(r->state, "offline_reason", ""));
        json_object_set_new(d, "choice",
                            json_string(bt_json_str(r->state, "offline_workflow", "")));
        progress(r, "run.offline", json_incref(d));
        emit(r, "run.offline", d);
    }
    progress(r, "run.started",
             json_pack("{ss ss si}", "run_id", r->run_id, "workflow", r->wf->id, "max_iterations",
                       r->max_iterations));
    if (r->wf->planned) {
        plan_begin(r);
        return;
    }
    walk(r);
}

static int workspace_for(rrun *r, const char *explicit_ws, bt_error *err)
{
    if (explicit_ws) {
        r->workspace = bt_xstrdup(explicit_ws);
    } else {
        const bt_config *cfg = r->e->env.cfg;
        const char *root = cfg && cfg->workspace.root ? cfg->workspace.root : "./var/workspaces";
        bt_strbuf name = BT_STRBUF_INIT, path = BT_STRBUF_INIT;
        /* the workspace manager's key, so `baton run` and `baton serve` agree */
        bt_workspace_key(r->task->identifier ? r->task->identifier : r->task->id, &name);
        /* join_safe resolves the root, so it must exist (a fresh ./var/workspaces) */
        int rc = bt_path_mkdirs(root, 0755, err);
        if (rc == 0)
            rc = bt_path_join_safe(root, name.buf, &path, err);
        bt_strbuf_release(&name);
        if (rc < 0) {
            bt_strbuf_release(&path);
            return rc;
        }
        r->workspace = bt_strbuf_detach(&path, NULL);
    }
    return bt_path_mkdirs(r->workspace, 0755, err);
}

typedef struct start_ctx {
    rrun *r;
    json_t *inputs; /* bound, for a new run */
} start_ctx;

static void on_runs_listed(void *ud, int rc, const bt_error *err, bt_run *const *runs, size_t n)
{
    start_ctx *sc = ud;
    rrun *r = sc->r;
    json_t *inputs = sc->inputs;
    free(sc);
    unref(r);
    if (rc < 0) {
        json_decref(inputs);
        r->ended = 1;
        r->final_status = bt_xstrdup("failed");
        r->final_error = bt_xstrdup(err ? err->msg : "cannot read the task's runs");
        r->final_class = "transient";
        deliver(r, NULL, NULL, 0);
        maybe_free(r);
        return;
    }
    const bt_run *old = NULL;
    for (size_t i = 0; i < n && !old; i++)
        if (runs[i]->status == BT_RUN_RUNNING || runs[i]->status == BT_RUN_WAITING)
            old = runs[i];
    if (old && bt_workflows_find(r->e->env.workflows, old->workflow)) {
        /* resume */
        memcpy(r->run_id, old->id, sizeof r->run_id);
        r->wf = bt_workflows_find(r->e->env.workflows, old->workflow);
        json_decref(r->state);
        r->state = json_deep_copy(old->state);
        json_t *in = json_object_get(r->state, "inputs");
        json_decref(inputs);
        inputs = json_is_object(in) ? json_deep_copy(in) : json_object();
        r->iteration = old->iteration > 0 ? old->iteration : 1;
        int mi = (int)bt_json_int(r->state, "max_iterations", r->wf->max_iterations);
        r->max_iterations = mi > 0 ? mi : 1;
        const char *dg = bt_json_str(r->state, "digest", "");
        if (r->wf->digest && strcmp(dg, r->wf->digest) != 0)
            logw(r, "workflow changed since the run started; resuming with the new definition",
                 r->wf->id);
        if (r->wf->planned) {
            /* the plan (or the fallback) chosen before the first step */
            bt_strbuf why = BT_STRBUF_INIT;
            int pr = plan_resume(r, &why);
            frame_init(&r->fr[0], r->wf, inputs, "");
            if (pr < 0)
                run_end(r, "failed", why.buf, "permanent");
            else if (pr > 0)
                plan_begin(r); /* stopped while planning: ask again */
            bt_strbuf_release(&why);
            if (pr != 0)
                return;
        } else {
            frame_init(&r->fr[0], r->wf, inputs, "");
        }
        ref(r);
        bt_store_step_list(r->e->env.store, r->run_id, on_steps_loaded, r);
        return;
    }
    frame_init(&r->fr[0], r->wf, inputs, "");
    json_object_set(r->state, "inputs", inputs);
    ref(r);
    bt_store_run_create(r->e->env.store, r->task->id, r->wf->id, r->wf->version, r->state,
                        on_run_created, r);
}

static void on_resil_loaded(void *ud, int rc, const bt_error *err)
{
    if (rc < 0 && rc != BT_ECANCELED)
        bt_log_warn((bt_log *)ud, "agent statistics not loaded",
                    BT_LF_STR("error", err ? err->msg : ""));
}

bt_resil *bt_engine_resil(bt_engine *e)
{
    if (e->env.resil)
        return e->env.resil;
    if (!e->own_resil) {
        bt_agents *set = e->env.agents ? e->env.agents(e->env.ud) : NULL;
        if (!set || !e->env.cfg)
            return NULL;
        bt_resil_env re = {.loop = e->env.loop,
                           .agents = set,
                           .cfg = e->env.cfg,
                           .store = e->env.store,
                           .log = e->env.log};
        bt_error err = BT_ERROR_INIT;
        if (bt_resil_new(&re, &e->own_resil, &err) < 0) {
            bt_log_error(e->env.log, "agent calls cannot run", BT_LF_STR("error", err.msg));
            return NULL;
        }
        bt_resil_load(e->own_resil, on_resil_loaded, e->env.log);
    }
    return e->own_resil;
}

bt_engine *bt_engine_new(const bt_engine_env *env)
{
    bt_engine *e = bt_xcalloc(1, sizeof *e);
    e->env = *env;
    e->sub = -1;
    return e;
}

static void on_event(void *ud, const bt_event *ev)
{
    bt_engine *e = ud;
    if (strcmp(ev->type, "approval.decided") == 0) {
        for (rrun *r = e->runs; r; r = r->next)
            if (r->waiting && strcmp(r->run_id, ev->run_id) == 0)
                check_approval(r);
    } else if (strcmp(ev->type, "task.status") == 0) {
        const char *to = bt_json_str(ev->data, "to", "");
        if (strcmp(to, "cancelled") == 0)
            bt_engine_cancel(e, ev->task_id, "cancelled");
    }
}

static void on_poll(uv_timer_t *t)
{
    bt_engine *e = t->data;
    for (rrun *r = e->runs; r; r = r->next)
        check_approval(r);
}

static void ensure_watch(bt_engine *e)
{
    if (!e->sub_on) {
        e->sub = bt_store_subscribe(e->env.store, on_event, e);
        e->sub_on = 1;
    }
    if (!e->poll_init) {
        uv_timer_init(e->env.loop, &e->poll);
        e->poll.data = e;
        e->poll_init = 1;
        uv_timer_start(&e->poll, on_poll, BT_ENGINE_APPROVAL_POLL_MS, BT_ENGINE_APPROVAL_POLL_MS);
        uv_unref((uv_handle_t *)&e->poll);
    }
}

int bt_engine_start(bt_engine *e, const bt_task *task, const bt_engine_run_opts *opts,
                    bt_error *err)
{
    if (!task || !opts || !opts->on_done)
        return bt_errorf(err, BT_EINVAL, "engine start needs a task and on_done");
    const json_t *meta = task->meta;
    const char *wname = opts->workflow                      ? opts->workflow
                        : task->workflow && *task->workflow ? task->workflow
                                                            : "default";
    const bt_workflow *wf = bt_workflows_find(e->env.workflows, wname);
    char plan_reason[300] = ""; /* why the dynamic planner runs instead */
    if (!wf) {
        /* seed 004: a task no static workflow matches is planned (workflow dynamic) */
        const bt_workflow *dyn = bt_workflows_find(e->env.workflows, "dynamic");
        if (!dyn || !dyn->planned)
            return bt_errorf(err, BT_ENOENT, "unknown workflow '%s' (see `baton workflows`)",
                             wname);
        snprintf(plan_reason, sizeof plan_reason, "no workflow named '%s'", wname);
        wf = dyn;
    }
    int offline = opts->offline || bt_json_bool(meta, "offline", 0);
    const char *why_off = offline ? "offline mode was asked for" : NULL;
    if (!offline && e->env.offline && e->env.offline(e->env.ud, &why_off)) {
        offline = 1;
        if (!why_off)
            why_off = "the offline detector says so";
    }
    char variant[512] = "";
    const char *asked = wf->id;
    if (offline) /* a planned workflow stays itself: it plans with local agents */
        wf = bt_workflow_offline_variant(e->env.workflows, wf, variant, sizeof variant);
    if (wf->missing)
        return bt_errorf(err, BT_EUNAVAIL, "workflow %s cannot run: %s", wf->id, wf->missing);
    const json_t *given = opts->inputs ? opts->inputs : json_object_get(meta, "inputs");
    json_t *bound = NULL;
    /* a planned workflow declares no inputs: its steps come from the plan */
    int rc = wf->planned ? 0 : bt_workflow_bind_inputs(wf, given, &bound, err);
    if (rc < 0)
        return rc;
    if (!bound)
        bound = json_object();
    if (wf->planned)
        /* the planner reads the agents' statistics: start loading them now (an engine
         * that makes its own wrapper loads them on first use), ahead of the run's store
         * round trips */
        (void)bt_engine_resil(e);
    rrun *r = bt_xcalloc(1, sizeof *r);
    r->e = e;
    r->task = bt_task_dup(task);
    r->wf = wf;
    r->on_done = opts->on_done;
    r->on_progress = opts->on_progress;
    r->ud = opts->ud;
    r->iteration = 1;
    int mi = opts->max_iterations > 0 ? opts->max_iterations
                                      : (int)bt_json_int(meta, "max_iterations", 0);
    r->max_iterations = mi > 0 ? mi : wf->max_iterations > 0 ? wf->max_iterations : 1;
    json_t *as = json_object_get(meta, "assigned_agents");
    r->assigned = json_is_object(as) ? json_deep_copy(as) : NULL;
    r->rows = json_object();
    bt_strbuf_init(&r->outbuf, 0);
    for (const char *const *g = opts->git_env; g && *g; g++)
        bt_strvec_push(&r->git_env, *g);
    rc = workspace_for(r, opts->workspace, err);
    if (rc < 0) {
        json_decref(bound);
        bt_error_prefix(err, "workspace");
        r->done_called = 1;
        maybe_free(r);
        return rc;
    }
    r->state =
        json_pack("{ss ss* si sb ss}", "workflow", wf->id, "digest", wf->digest, "max_iterations",
                  r->max_iterations, "offline", offline, "workspace", r->workspace);
    if (offline) {
        json_object_set_new(r->state, "offline_reason", json_string(why_off));
        json_object_set_new(r->state, "offline_workflow", json_string(variant));
        json_object_set_new(r->state, "requested_workflow", json_string(asked));
    }
    if (*plan_reason) {
        json_object_set_new(r->state, "plan_reason", json_string(plan_reason));
        json_object_set_new(r->state, "requested_workflow", json_string(wname));
    }
    uv_timer_init(e->env.loop, &r->timer);
    uv_timer_init(e->env.loop, &r->flush);
    r->timer.data = r->flush.data = r;
    r->timers_init = 1;
    r->next = e->runs;
    e->runs = r;
    e->nactive++;
    ensure_watch(e);
    start_ctx *sc = bt_xcalloc(1, sizeof *sc);
    sc->r = r;
    sc->inputs = bound;
    ref(r);
    bt_store_run_list(e->env.store, task->id, NULL, 5, on_runs_listed, sc);
    return 0;
}

static void stop_action(rrun *r)
{
    if (r->plan)
        bt_planner_cancel(r->plan);
    else if (r->rcall)
        bt_resil_call_cancel(r->rcall);
    else if (r->proc)
        bt_proc_cancel(r->proc);
    else if (r->hcall)
        bt_http_call_cancel(r->hcall);
    else if (r->waiting) {
        r->waiting = 0;
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
    } else if (r->lock_wait) {
        /* waiting for another run's file locks: nothing runs yet */
        step_out o = {.status = BT_STEP_CANCELLED, .exit_code = -1};
        step_done(r, &o);
    }
}

int bt_engine_cancel(bt_engine *e, const char *id, const char *reason)
{
    for (rrun *r = e->runs; r; r = r->next) {
        if (r->ended || r->cancelled)
            continue;
        if (strcmp(r->task->id, id) == 0 || strcmp(r->run_id, id) == 0) {
            r->cancelled = 1;
            free(r->cancel_reason);
            r->cancel_reason = bt_xstrdup(reason && *reason ? reason : "cancelled");
            if (r->timers_init && uv_is_active((uv_handle_t *)&r->timer)) {
                /* waiting to retry: nothing runs, end now */
                uv_timer_stop(&r->timer);
                r->refs--;
                run_end(r, "cancelled", r->cancel_reason, "cancelled");
                return 0;
            }
            stop_action(r);
            return 0;
        }
    }
    return BT_ENOENT;
}

void bt_engine_stop(bt_engine *e)
{
    rrun *next;
    for (rrun *r = e->runs; r; r = next) {
        next = r->next;
        if (r->ended || r->interrupted)
            continue;
        r->interrupted = 1;
        if (r->timers_init && uv_is_active((uv_handle_t *)&r->timer)) {
            uv_timer_stop(&r->timer); /* a retry was due: nothing runs now */
            r->refs--;
            run_interrupted(r);
        } else if (r->waiting) {
            r->waiting = 0;
            run_interrupted(r);
        } else {
            stop_action(r);
        }
    }
    if (e->poll_init)
        uv_timer_stop(&e->poll);
}

int bt_engine_active(const bt_engine *e)
{
    return e->nactive;
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

void bt_engine_free(bt_engine *e)
{
    if (!e)
        return;
    if (e->sub_on)
        bt_store_unsubscribe(e->env.store, e->sub);
    bt_resil_free(e->own_resil); /* every run, so every call, has ended */
    e->own_resil = NULL;
    if (e->poll_init) {
        e->poll.data = e;
        uv_close((uv_handle_t *)&e->poll, on_poll_closed);
        return; /* freed when the handle has closed */
    }
    free(e);
}

/* ---- the result ---- */

static const char *tag(bt_step_status s)
{
    switch (s) {
    case BT_STEP_SUCCEEDED:
        return "OK";
    case BT_STEP_FAILED:
        return "FAIL";
    case BT_STEP_SKIPPED:
        return "SKIP";
    case BT_STEP_CANCELLED:
        return "CANCELLED";
    case BT_STEP_RUNNING:
        return "RUNNING";
    default:
        return "PENDING";
    }
}

json_t *bt_engine_result_json(const bt_run *run, bt_step *const *steps, size_t nsteps)
{
    json_t *o = json_object();
    const char *status = run ? bt_run_status_name(run->status) : "unknown";
    json_object_set_new(o, "success", json_boolean(run && run->status == BT_RUN_COMPLETED));
    json_object_set_new(o, "workflow",
                        run && run->workflow ? json_string(run->workflow) : json_null());
    json_object_set_new(o, "iterations", json_integer(run ? run->iteration : 0));
    json_t *lines = json_array(), *details = json_array();
    int last_iter = run ? run->iteration : 0;
    /* the last attempt of each top-level step of the last iteration, in order */
    for (size_t i = 0; i < nsteps; i++) {
        const bt_step *st = steps[i];
        json_array_append_new(details, bt_step_to_json(st));
        if (st->iteration != last_iter || strchr(st->step_key, '/'))
            continue;
        int later = 0;
        for (size_t j = i + 1; j < nsteps; j++)
            if (steps[j]->iteration == st->iteration &&
                strcmp(steps[j]->step_key, st->step_key) == 0)
                later = 1;
        if (later)
            continue;
        bt_strbuf sb = BT_STRBUF_INIT;
        if (st->agent && *st->agent && st->role)
            bt_strbuf_addf(&sb, " [%s] %s (%s)", tag(st->status), st->agent, st->role);
        else if (st->agent && *st->agent)
            bt_strbuf_addf(&sb, " [%s] %s (%s)", tag(st->status), st->agent, st->step_key);
        else
            bt_strbuf_addf(&sb, " [%s] %s", tag(st->status), st->step_key);
        if (st->fallback_from)
            bt_strbuf_addf(&sb, " (fallback from %s)", st->fallback_from);
        json_array_append_new(lines, json_string(sb.buf));
        bt_strbuf_release(&sb);
    }
    json_object_set_new(o, "steps", lines);
    json_object_set_new(o, "final_output", json_string(run && run->output ? run->output : ""));
    json_object_set_new(o, "run_id", run ? json_string(run->id) : json_null());
    json_object_set_new(o, "task_id", run ? json_string(run->task_id) : json_null());
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "error", run && run->error ? json_string(run->error) : json_null());
    json_t *sr = run ? json_object_get(run->state, "stop_reason") : NULL;
    json_object_set_new(o, "stop_reason", sr ? json_incref(sr) : json_null());
    json_object_set_new(o, "tokens_in", json_integer(run ? run->tokens_in : 0));
    json_object_set_new(o, "tokens_out", json_integer(run ? run->tokens_out : 0));
    json_object_set_new(o, "cost_usd", json_real(run ? run->cost_usd : 0));
    json_t *outs = run ? json_object_get(run->state, "outputs") : NULL;
    json_object_set_new(o, "outputs", json_is_object(outs) ? json_deep_copy(outs) : json_object());
    json_object_set_new(o, "step_details", details);
    /* what routing decided: a plan (or why it fell back), offline mode and why */
    static const char *const routing[] = {"plan_error", "plan_workflow", "offline_reason",
                                          "offline_workflow", "requested_workflow"};
    for (size_t i = 0; run && i < sizeof routing / sizeof *routing; i++) {
        json_t *v = json_object_get(run->state, routing[i]);
        if (json_is_string(v))
            json_object_set_new(o, routing[i], json_incref(v));
    }
    if (run && json_is_string(json_object_get(run->state, "plan")))
        json_object_set_new(o, "planned", json_true());
    return o;
}
