/*
 * run.c - `baton run "TASK"`: run one task through a workflow in this process (seed
 * 004's `run`), recorded in the configured store like any other work item.
 *
 *   $ baton run "Add pagination to /users" --workflow thorough --max-iterations 5
 *   [2/3] review · gemini · 12.4s · 1,234 tok          (live, on a terminal)
 *   Workflow: thorough   Iterations: 2   Status: completed
 *    [OK] codex (implement)
 *    ...
 *   <final output>
 *
 * Order of work: load the configuration and the workflows, find the workflow asked for,
 * decide whether to run offline, resolve the workflow that runs and bind --input values
 * before touching the store (so a typo costs nothing), then create the task (source
 * "cli", max_attempts 1: a failed CLI run is not retried later by a daemon sharing the
 * store), and hand it to an executor in one-task mode, which claims exactly that task
 * under the owner "cli:HOST:PID" and drives the engine.
 *
 * Offline (core/offline.h, docs/resilience.md): --offline forces it; with offline.mode
 * auto one round of probes of the remote providers (at most offline.probe_timeout) runs
 * before the task starts, and when none answers the run takes the workflow's offline
 * variant (offline-default). The engine is told through env.offline, and its choice is
 * printed before the progress ("offline: REASON; running workflow offline-default
 * instead of default") and included in --json as "offline".
 *
 * Output: progress goes to stderr (a live status line updated in place when stderr is
 * a terminal, plus one line per finished step; plain lines per step start and finish
 * otherwise); agent output only with --verbose. The summary (or with --json the engine's
 * result object) goes to stdout. An approval step prints once how to decide it (`baton
 * approve RUN` in another terminal) and the run waits.
 *
 * Signals: the first SIGINT/SIGTERM cancels the run (task cancelled in the store, the
 * running step killed) and the command exits 130 once the run has ended; a second one
 * exits at once. Exit codes: 0 completed, 1 failed or cancelled, 2 usage error (unknown
 * workflow, bad input), 130 interrupted.
 */
#include "cmd/cmd.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "core/engine.h"
#include "core/executor.h"
#include "core/offline.h"
#include "core/workflow.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_INTERRUPTED 130
#define TICK_MS          200

static const char synopsis[] =
    "baton run \"TASK\" [--workflow W] [--max-iterations N] [--offline] [--input NAME=VALUE]... "
    "[--workspace DIR] [--verbose] [--json] [--config FILE]";

typedef struct runner {
    int json, verbose, tty;
    const bt_workflow *w; /* the workflow that runs (the offline variant with --offline) */
    uv_loop_t *loop;
    bt_store *store;
    bt_engine *engine;
    bt_executor *exec;
    bt_cmd_agents_ctx *agents;
    const bt_workflows *set;
    /* offline mode: the detector (NULL with offline.mode off) and the engine's choice */
    bt_offline *od;
    json_t *offline_choice; /* owned: the run.offline progress data */
    char task_id[BT_ID_LEN + 1];
    char run_id[BT_ID_LEN + 1];

    /* outcome */
    int done;
    int success;
    json_t *result; /* owned: bt_engine_result_json */
    char *status, *error;

    /* signals */
    int interrupted;
    int run_started; /* the executor has the task: cancel through the engine */
    uv_signal_t sigint, sigterm;

    /* progress */
    uv_timer_t ticker;
    int line_shown; /* a status line is drawn on the terminal */
    int step_active;
    char step[96];
    char agent[96];
    int step_index; /* 1-based; 0 unknown */
    int step_total;
    int iteration; /* of the step shown */
    int64_t step_started_ms;
    int64_t tokens;
    bt_strvec announced; /* approval ids already announced */
} runner;

/* ---- small helpers ---- */

/* The first of the keys that holds a string in o, else NULL. */
static const char *jstr(const json_t *o, const char *a, const char *b, const char *c)
{
    const char *keys[] = {a, b, c};
    for (size_t i = 0; i < 3; i++) {
        if (!keys[i])
            continue;
        const char *s = json_string_value(json_object_get(o, keys[i]));
        if (s)
            return s;
    }
    return NULL;
}

static int64_t jint(const json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return dflt;
}

/* 1234567 -> "1,234,567" */
static char *thousands(int64_t v, char buf[32])
{
    char raw[24];
    snprintf(raw, sizeof raw, "%lld", (long long)(v < 0 ? -v : v));
    size_t n = strlen(raw), o = 0;
    if (v < 0)
        buf[o++] = '-';
    for (size_t i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

/* 12400 -> "12.4s", 65000 -> "1m05s" */
static char *elapsed(int64_t ms, char buf[32])
{
    if (ms < 0)
        ms = 0;
    if (ms < 60000)
        snprintf(buf, 32, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, 32, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else
        snprintf(buf, 32, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
    return buf;
}

static const bt_wf_step *find_step(const bt_workflow *w, const char *id)
{
    for (size_t i = 0; id && i < w->nsteps; i++)
        if (strcmp(w->steps[i].id, id) == 0)
            return &w->steps[i];
    return NULL;
}

/* What a step runs, for display: its agent, sub-workflow or action name. */
static const char *step_runner(const bt_wf_step *st)
{
    if (st->action == BT_WF_AGENT && st->agent)
        return st->agent;
    if (st->action == BT_WF_WORKFLOW && st->workflow)
        return st->workflow;
    return bt_wf_action_name(st->action);
}

/* ---- progress ---- */

/* "[2/3] review · gemini · 12.4s · 1,234 tok" */
static void describe(const runner *r, int64_t ms, bt_strbuf *sb)
{
    char n[32], t[32];
    if (r->step_index > 0 && r->iteration > 1)
        bt_strbuf_addf(sb, "[%d/%d, iteration %d] ", r->step_index, r->step_total, r->iteration);
    else if (r->step_index > 0)
        bt_strbuf_addf(sb, "[%d/%d] ", r->step_index, r->step_total);
    bt_strbuf_addstr(sb, r->step);
    if (r->agent[0])
        bt_strbuf_addf(sb, " · %s", r->agent);
    bt_strbuf_addf(sb, " · %s", elapsed(ms, t));
    if (r->tokens > 0)
        bt_strbuf_addf(sb, " · %s tok", thousands(r->tokens, n));
}

static void clear_line(runner *r)
{
    if (r->line_shown) {
        fputs("\r\033[K", stderr);
        r->line_shown = 0;
    }
}

static void draw_line(runner *r)
{
    if (!r->tty || !r->step_active)
        return;
    bt_strbuf sb;
    bt_strbuf_init(&sb, 96);
    describe(r, bt_time_mono_ms() - r->step_started_ms, &sb);
    fprintf(stderr, "\r\033[K%s", bt_strbuf_cstr(&sb));
    fflush(stderr);
    r->line_shown = 1;
    bt_strbuf_release(&sb);
}

/* A permanent line on stderr (the live status line is redrawn below it). */
static void note(runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(runner *r, const char *fmt, ...)
{
    clear_line(r);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    draw_line(r);
    fflush(stderr);
}

static void on_tick(uv_timer_t *t)
{
    draw_line(t->data);
}

/* Which step d is about: key, agent (or action), position. */
static void take_step(runner *r, const json_t *d)
{
    const char *key = jstr(d, "step_key", "step", NULL);
    const bt_wf_step *st = find_step(r->w, key);
    const char *agent = jstr(d, "agent", NULL, NULL);
    if (!agent || !*agent)
        agent = st ? step_runner(st) : jstr(d, "action", NULL, NULL);
    snprintf(r->step, sizeof r->step, "%s", key ? key : "step");
    snprintf(r->agent, sizeof r->agent, "%s", agent ? agent : "");
    r->iteration = (int)jint(d, "iteration", r->iteration);
    int64_t index = jint(d, "index", -1), total = jint(d, "total", 0);
    if (index >= 0 && total > 0) {
        r->step_index = (int)index + 1;
        r->step_total = (int)total;
    } else if (st) {
        r->step_index = st->seq + 1;
        r->step_total = (int)r->w->nsteps;
    }
}

static void step_started(runner *r, const json_t *d)
{
    take_step(r, d);
    r->step_started_ms = bt_time_mono_ms();
    r->tokens = 0;
    r->step_active = 1;
    if (r->tty) {
        draw_line(r);
        uv_timer_start(&r->ticker, on_tick, TICK_MS, TICK_MS);
    } else {
        bt_strbuf sb;
        bt_strbuf_init(&sb, 96);
        describe(r, 0, &sb);
        fprintf(stderr, "%s: started\n", bt_strbuf_cstr(&sb));
        bt_strbuf_release(&sb);
    }
}

static const char *status_tag(const char *status)
{
    if (!status)
        return "[??]";
    if (strcmp(status, "succeeded") == 0 || strcmp(status, "completed") == 0)
        return "[OK]";
    if (strcmp(status, "skipped") == 0)
        return "[SKIP]";
    if (strcmp(status, "cancelled") == 0)
        return "[CANCELLED]";
    return "[FAIL]";
}

static void step_finished(runner *r, const json_t *d)
{
    const char *key = jstr(d, "step_key", "step", NULL);
    if (!r->step_active || (key && strcmp(key, r->step) != 0)) {
        take_step(r, d); /* a step we did not see start */
        r->step_started_ms = bt_time_mono_ms();
    } else {
        const char *agent = jstr(d, "agent", NULL, NULL);
        if (agent && *agent) /* a fallback may have replaced the first agent */
            snprintf(r->agent, sizeof r->agent, "%s", agent);
    }
    int64_t tok = jint(d, "tokens_in", 0) + jint(d, "tokens_out", 0);
    if (tok > r->tokens)
        r->tokens = tok;
    int64_t ms = jint(d, "duration_ms", bt_time_mono_ms() - r->step_started_ms);
    const char *status = jstr(d, "status", NULL, NULL);
    const char *error = jstr(d, "error", NULL, NULL);
    int64_t retry_ms = jint(d, "retry_in_ms", -1);
    r->step_active = 0;
    uv_timer_stop(&r->ticker);
    bt_strbuf sb;
    bt_strbuf_init(&sb, 128);
    if (r->tty)
        bt_strbuf_addf(&sb, " %s ", status_tag(status));
    describe(r, ms, &sb);
    if (!r->tty)
        bt_strbuf_addf(&sb, ": %s", status ? status : "finished");
    if (error && *error) { /* its first line, shortened: the summary has the rest */
        size_t n = strcspn(error, "\n");
        bt_strbuf_addf(&sb, ": %.*s%s", (int)(n > 160 ? 160 : n), error,
                       n > 160 || error[n] ? "…" : "");
    }
    if (retry_ms >= 0) {
        char t[32];
        bt_strbuf_addf(&sb, " (retrying in %s)", elapsed(retry_ms, t));
    }
    note(r, "%s", bt_strbuf_cstr(&sb));
    bt_strbuf_release(&sb);
}

static void step_skipped(runner *r, const json_t *d)
{
    const char *id = jstr(d, "step", "step_key", NULL);
    const char *why = jstr(d, "reason", NULL, NULL);
    if (r->tty)
        note(r, " [SKIP] %s%s%s", id ? id : "step", why ? ": " : "", why ? why : "");
    else
        note(r, "%s: skipped%s%s", id ? id : "step", why ? ": " : "", why ? why : "");
}

static void run_waiting(runner *r, const json_t *d)
{
    const char *approval = jstr(d, "approval_id", "approval", "id");
    const char *step = jstr(d, "step", "step_key", NULL);
    const char *key = approval ? approval : step ? step : "";
    for (size_t i = 0; i < r->announced.len; i++)
        if (strcmp(r->announced.items[i], key) == 0)
            return;
    bt_strvec_push(&r->announced, key);
    r->step_active = 0;
    uv_timer_stop(&r->ticker);
    /* a run id, or the task id (approve accepts both) */
    const char *who = r->run_id[0] ? r->run_id : r->task_id;
    note(r, "waiting for approval %s (step %s): run `baton approve %s` or `baton reject %s`",
         approval ? approval : "?", step ? step : r->step, who, who);
}

/* The engine runs offline: say why and which workflow it took instead. */
static void run_offline(runner *r, const json_t *d)
{
    json_decref(r->offline_choice);
    r->offline_choice = json_deep_copy(d);
    const char *reason = jstr(d, "reason", NULL, NULL);
    const char *choice = jstr(d, "choice", NULL, NULL);
    const char *wf = jstr(d, "workflow", NULL, NULL);
    const bt_workflow *w = wf ? bt_workflows_find(r->set, wf) : NULL;
    if (w)
        r->w = w; /* step positions follow the workflow that runs */
    note(r, "offline: %s; running %s", reason && *reason ? reason : "offline mode",
         choice && *choice ? choice
         : wf              ? wf
                           : "?");
}

/* The dynamic planner's choice (core/planner.h): the plan, or why default runs instead. */
static void run_planned(runner *r, const char *kind, const json_t *d)
{
    if (strcmp(kind, "run.plan_failed") == 0) {
        const char *wf = jstr(d, "workflow", NULL, NULL);
        const bt_workflow *w = wf ? bt_workflows_find(r->set, wf) : NULL;
        if (w)
            r->w = w; /* step positions follow the workflow that runs */
        const char *why = jstr(d, "reason", NULL, NULL);
        note(r, "planning failed: %s; running workflow %s", why ? why : "?", wf ? wf : "default");
        return;
    }
    bt_strbuf sb = BT_STRBUF_INIT;
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(d, "steps"), i, st)
    {
        const char *id = jstr(st, "id", NULL, NULL), *agent = jstr(st, "agent", NULL, NULL);
        bt_strbuf_addf(&sb, "%s%s (%s)", i ? " -> " : "", id ? id : "?", agent ? agent : "?");
    }
    const char *who = jstr(d, "agent", NULL, NULL);
    note(r, "plan by %s: %s", who ? who : "?", sb.len ? sb.buf : "no steps");
    bt_strbuf_release(&sb);
}

static void on_progress(bt_engine *e, const char *kind, const json_t *data, void *ud)
{
    (void)e;
    runner *r = ud;
    if (strcmp(kind, "step.started") == 0) {
        step_started(r, data);
    } else if (strcmp(kind, "step.finished") == 0) {
        step_finished(r, data);
    } else if (strcmp(kind, "step.skipped") == 0) {
        step_skipped(r, data);
    } else if (strcmp(kind, "run.waiting") == 0) {
        run_waiting(r, data);
    } else if (strcmp(kind, "run.offline") == 0) {
        run_offline(r, data);
    } else if (strcmp(kind, "run.planned") == 0 || strcmp(kind, "run.plan_failed") == 0) {
        run_planned(r, kind, data);
    } else if (strcmp(kind, "run.started") == 0 || strcmp(kind, "run.resumed") == 0) {
        const char *run_id = jstr(data, "run_id", NULL, NULL);
        if (run_id)
            snprintf(r->run_id, sizeof r->run_id, "%s", run_id);
        if (strcmp(kind, "run.resumed") == 0)
            note(r, "resuming run %s", r->run_id);
    } else if (strcmp(kind, "run.iteration") == 0) {
        /* the end of an iteration: say why another one follows */
        int it = (int)jint(data, "iteration", 0);
        int max = (int)jint(data, "max_iterations", 0);
        int64_t sugg = jint(data, "suggestions", -1);
        if (!json_is_true(json_object_get(data, "stop")) && it > 0) {
            if (!json_is_true(json_object_get(data, "all_passed")))
                note(r, "iteration %d of %d: not every step passed; next iteration", it, max);
            else
                note(r, "iteration %d of %d: the review made %lld suggestion%s; next iteration", it,
                     max, (long long)sugg, sugg == 1 ? "" : "s");
        }
    } else if (strcmp(kind, "agent.usage") == 0) {
        int64_t tok = jint(data, "tokens_in", 0) + jint(data, "tokens_out", 0);
        if (tok > r->tokens)
            r->tokens = tok;
    } else if (strcmp(kind, "agent.output") == 0 && r->verbose) {
        const char *text = jstr(data, "text", "output", NULL);
        if (text && *text) {
            clear_line(r);
            fputs(text, stderr);
            if (text[strlen(text) - 1] != '\n')
                fputc('\n', stderr);
            draw_line(r);
            fflush(stderr);
        }
    }
}

/* ---- the run ---- */

static void on_task_done(bt_executor *x, const bt_engine_result *res, void *ud)
{
    (void)x;
    runner *r = ud;
    clear_line(r);
    r->step_active = 0;
    uv_timer_stop(&r->ticker);
    r->done = 1;
    r->success = res->success;
    r->status = bt_xstrdup(res->status ? res->status : "failed");
    r->error = res->error ? bt_xstrdup(res->error) : NULL;
    r->result = res->json ? json_deep_copy(res->json) : NULL;
    if (res->run_id && !r->run_id[0])
        snprintf(r->run_id, sizeof r->run_id, "%s", res->run_id);
}

static void ignore_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    (void)t;
    runner *r = ud;
    if (rc != 0 && rc != BT_ESTATE)
        note(r, "baton run: cancelling task %s: %s", r->task_id, err->msg);
}

static void cancel_run(runner *r, const char *why)
{
    if (!r->run_started)
        return; /* not handed to the executor yet: the caller cancels the task itself */
    /* The engine kills the running step and ends the run cancelled; the executor then
     * moves the task to cancelled. Before the claim has completed there is no run yet:
     * cancelling the task makes the claim find nothing, which ends the same way. */
    if (bt_engine_cancel(r->engine, r->task_id, why) == BT_ENOENT)
        bt_store_task_transition(r->store, r->task_id, BT_TASK_CANCELLED, why, ignore_task, r);
}

static void on_signal(uv_signal_t *h, int signum)
{
    runner *r = h->data;
    if (r->interrupted++) {
        clear_line(r);
        fprintf(stderr,
                "baton run: interrupted again; exiting now (task %s may stay in_progress "
                "until its lease expires)\n",
                r->task_id);
        fflush(stderr);
        _exit(EXIT_INTERRUPTED);
    }
    note(r, "baton run: %s; cancelling the run (press Ctrl-C again to quit at once)",
         signum == SIGINT ? "interrupted" : "terminated");
    cancel_run(r, signum == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)");
}

typedef struct create_wait {
    int done, rc;
    bt_error err;
    char id[BT_ID_LEN + 1];
} create_wait;

static void on_created(void *ud, int rc, const bt_error *err, const bt_task *task, bool created)
{
    (void)created;
    create_wait *c = ud;
    c->done = 1;
    c->rc = rc;
    if (rc != 0)
        c->err = *err;
    else
        snprintf(c->id, sizeof c->id, "%s", task->id);
}

typedef struct transition_wait {
    int done;
} transition_wait;

static void on_transitioned(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    (void)rc, (void)err, (void)t;
    ((transition_wait *)ud)->done = 1;
}

static bt_agents *env_agents(void *ud)
{
    return bt_cmd_agents_set(((runner *)ud)->agents);
}

static bt_http_client *env_http(void *ud)
{
    return bt_cmd_agents_http(((runner *)ud)->agents);
}

static bt_http_client *probe_http(void *ud)
{
    return bt_cmd_agents_http(ud);
}

static int env_offline(void *ud, const char **reason)
{
    runner *r = ud;
    return r->od ? bt_offline_state(r->od, reason) : 0;
}

static void print_summary(const runner *r)
{
    const json_t *o = r->result;
    const char *wf = jstr(o, "workflow", NULL, NULL);
    const char *status = jstr(o, "status", NULL, NULL);
    printf("Workflow: %s   Iterations: %lld   Status: %s\n", wf ? wf : r->w->id,
           (long long)jint(o, "iterations", 0), status ? status : r->status);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(o, "steps"), i, s)
    {
        if (json_is_string(s))
            printf("%s\n", json_string_value(s));
    }
    const char *out = jstr(o, "final_output", NULL, NULL);
    if (out && *out) {
        printf("\n%s", out);
        if (out[strlen(out) - 1] != '\n')
            putchar('\n');
    }
}

/* ---- options ---- */

/* Pull every --input NAME=VALUE (repeatable) out of argv before bt_opts_parse, which
 * keeps one value per option. Other value options keep their values (so `--workflow
 * --input` is a workflow named "--input", as the parser would read it). */
static int take_inputs(int argc, char **argv, const bt_opt *opts, bt_strvec *rest,
                       bt_strvec *inputs)
{
    bt_strvec_push(rest, argv[0]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            for (; i < argc; i++)
                bt_strvec_push(rest, argv[i]);
            break;
        }
        if (strcmp(a, "--input") == 0 || strcmp(a, "-i") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "baton run: option '--input' needs a value (NAME=VALUE).\n");
                return BT_EXIT_USAGE;
            }
            bt_strvec_push(inputs, argv[++i]);
            continue;
        }
        if (strncmp(a, "--input=", 8) == 0) {
            bt_strvec_push(inputs, a + 8);
            continue;
        }
        bt_strvec_push(rest, a);
        if (a[0] == '-' && !strchr(a, '=') && i + 1 < argc) {
            for (const bt_opt *o = opts; o->name; o++) {
                int match = (a[1] == '-' && strcmp(a + 2, o->name) == 0) ||
                            (a[1] != '-' && a[2] == '\0' && o->short_name == a[1]);
                if (match && o->takes_value) {
                    bt_strvec_push(rest, argv[++i]);
                    break;
                }
            }
        }
    }
    return 0;
}

/* {"NAME": "VALUE"...}; a VALUE for an object/array input is parsed as JSON. */
static int inputs_object(const bt_strvec *inputs, const bt_workflow *w, json_t **out)
{
    json_t *o = json_object();
    for (size_t i = 0; i < inputs->len; i++) {
        const char *kv = inputs->items[i], *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            fprintf(stderr, "baton run: --input '%s': expected NAME=VALUE.\n", kv);
            json_decref(o);
            return BT_EXIT_USAGE;
        }
        char *name = bt_xstrndup(kv, (size_t)(eq - kv));
        json_t *v = NULL;
        for (size_t j = 0; j < w->ninputs; j++) {
            const char *type = w->inputs[j].type;
            if (strcmp(w->inputs[j].name, name) == 0 && type &&
                (strstr(type, "object") || strstr(type, "array")))
                v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        }
        json_object_set_new(o, name, v ? v : json_string(eq + 1));
        free(name);
    }
    *out = o;
    return 0;
}

static void print_ids(const bt_workflows *set)
{
    fprintf(stderr, "Workflows:");
    for (size_t i = 0; i < bt_workflows_count(set); i++)
        fprintf(stderr, " %s", bt_workflows_at(set, i)->id);
    fprintf(stderr, "\n(see 'baton workflows')\n");
}

/* Everything a run needs, set up and torn down in one place. */
typedef struct setup {
    bt_config *cfg;
    bt_workflows *set;
    json_t *given; /* --input values */
    char workspace[PATH_MAX];
} setup;

/* Configuration, workflows, the workflow asked for and the workspace, checked before
 * anything is probed or stored. 0 or the exit code. */
static int prepare(setup *s, const char *config, const char *wf_name, const char *workspace,
                   const bt_workflow **asked)
{
    if (bt_cmd_load_config("run", config, &s->cfg) != 0)
        return BT_EXIT_FAIL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_workflows_load(s->cfg, NULL, &s->set, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        if (probs.len == 0)
            fprintf(stderr, "baton run: %s\n", err.msg);
        fprintf(stderr, "baton run: the workflows have problems; see 'baton workflows'.\n");
        bt_config_problems_free(&probs);
        return BT_EXIT_FAIL;
    }
    bt_config_problems_free(&probs);

    const bt_workflow *w = bt_workflows_find(s->set, wf_name);
    if (!w) {
        fprintf(stderr, "baton run: no workflow '%s'. ", wf_name);
        print_ids(s->set);
        return BT_EXIT_USAGE;
    }
    *asked = w;

    if (!workspace)
        workspace = ".";
    struct stat sb;
    errno = 0;
    if (stat(workspace, &sb) != 0 || !S_ISDIR(sb.st_mode) || !realpath(workspace, s->workspace)) {
        fprintf(stderr, "baton run: --workspace '%s' is not a directory%s%s.\n", workspace,
                errno ? ": " : "", errno ? strerror(errno) : "");
        return BT_EXIT_USAGE;
    }
    return 0;
}

/* The workflow that runs (*wout): asked, or offline its offline variant as the engine
 * will choose it (bt_workflow_offline_variant); then its --input values. 0 or the exit
 * code. */
static int choose(setup *s, const bt_workflow *asked, int offline, const char *why_offline,
                  const bt_strvec *inputs, const bt_workflow **wout)
{
    const bt_workflow *w = asked;
    char choice[512] = "";
    if (offline)
        w = bt_workflow_offline_variant(s->set, asked, choice, sizeof choice);
    if (w->missing) {
        if (offline)
            fprintf(stderr, "baton run: offline (%s): %s.\n", why_offline, choice);
        fprintf(stderr,
                "baton run: workflow '%s' cannot run: %s (configure them in %s, or pick "
                "another workflow; see 'baton workflows').\n",
                w->id, w->missing, s->cfg->path ? s->cfg->path : "baton.yaml");
        return BT_EXIT_FAIL;
    }
    int rc = inputs_object(inputs, w, &s->given);
    if (rc != 0)
        return rc;
    json_t *bound = NULL;
    bt_error err = BT_ERROR_INIT;
    if (bt_workflow_bind_inputs(w, s->given, &bound, &err) < 0) {
        fprintf(stderr, "baton run: %s\n", err.msg);
        return BT_EXIT_USAGE;
    }
    json_decref(bound);
    *wout = w;
    return 0;
}

static void on_offline_checked(bt_offline *o, int offline, const char *reason, void *ud)
{
    (void)o, (void)offline, (void)reason;
    *(int *)ud = 1;
}

/* Offline or not, before the task starts: --offline and offline.mode on force it, auto
 * runs one round of probes (each bounded by offline.probe_timeout; Ctrl-C stops it), off
 * never. r->od holds the answer for the engine. 0 or the exit code. */
static int decide_offline(runner *r, const setup *s, int force)
{
    if (!force && s->cfg->offline.mode == BT_OFFLINE_OFF)
        return 0;
    int probe = !force && s->cfg->offline.mode == BT_OFFLINE_AUTO;
    bt_offline_env env = {.loop = r->loop,
                          .cfg = s->cfg,
                          .agents = probe ? bt_cmd_agents_set(r->agents) : NULL,
                          .http = probe_http,
                          .http_ud = r->agents,
                          .force = force};
    bt_error err = BT_ERROR_INIT;
    if (bt_offline_new(&env, &r->od, &err) < 0) {
        fprintf(stderr, "baton run: offline detection: %s\n", err.msg);
        return BT_EXIT_FAIL;
    }
    if (!probe || bt_offline_ntargets(r->od) == 0)
        return 0;
    int done = 0;
    bt_offline_check(r->od, on_offline_checked, &done);
    while (!done && !r->interrupted && uv_run(r->loop, UV_RUN_ONCE))
        ;
    return r->interrupted ? EXIT_INTERRUPTED : 0;
}

static int parse_iterations(const char *s, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || end == s || v < 1 || v > 1000) {
        fprintf(stderr, "baton run: --max-iterations '%s': expected a whole number 1-1000.\n", s);
        return BT_EXIT_USAGE;
    }
    *out = (int)v;
    return 0;
}

static int execute(runner *r, setup *s, const char *title, const char *wf_id, int max_iter)
{
    bt_error err = BT_ERROR_INIT;
    bt_store_options so = {0};
    so.default_max_attempts = (int32_t)s->cfg->queue.max_attempts;
    so.backoff_base_ms = s->cfg->queue.backoff_base_ms;
    so.backoff_max_ms = s->cfg->queue.backoff_max_ms;
    if (bt_store_open(r->loop, s->cfg->store.url, &so, &r->store, &err) < 0) {
        fprintf(stderr, "baton run: opening the store '%s': %s\n", s->cfg->store.url, err.msg);
        return BT_EXIT_FAIL;
    }

    json_t *meta = json_object();
    json_object_set(meta, "inputs", s->given);
    json_object_set_new(meta, "max_iterations", max_iter ? json_integer(max_iter) : json_null());
    bt_task_input in = {.source = "cli",
                        .title = title,
                        .workflow = wf_id,
                        .meta = meta,
                        .priority = BT_PRIORITY_NONE,
                        .max_attempts = 1};
    create_wait cw = {0};
    bt_store_task_create(r->store, &in, on_created, &cw);
    while (!cw.done && uv_run(r->loop, UV_RUN_ONCE))
        ;
    json_decref(meta);
    if (cw.rc != 0) {
        fprintf(stderr, "baton run: creating the task: %s\n", cw.err.msg);
        return BT_EXIT_FAIL;
    }
    snprintf(r->task_id, sizeof r->task_id, "%s", cw.id);

    bt_engine_env env = {.loop = r->loop,
                         .store = r->store,
                         .cfg = s->cfg,
                         .workflows = s->set,
                         .log = NULL,
                         .agents = env_agents,
                         .http = env_http,
                         .offline = env_offline, /* the engine asks once, at start */
                         .ud = r};
    r->engine = bt_engine_new(&env);
    char host[256] = "localhost", owner[320];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(owner, sizeof owner, "cli:%s:%ld", host, (long)getpid());
    bt_executor_opts xo = {
        .owner = owner, .on_progress = on_progress, .on_task_done = on_task_done, .ud = r};
    r->exec = bt_executor_new(r->engine, r->store, s->cfg, NULL, &xo);

    int rc = 0;
    if (!r->interrupted) {
        bt_engine_run_opts ro = {.workflow = wf_id,
                                 .inputs = s->given,
                                 .max_iterations = max_iter,
                                 .workspace = s->workspace,
                                 .owner = owner};
        rc = bt_executor_run_task(r->exec, r->task_id, &ro, &err);
        if (rc < 0)
            fprintf(stderr, "baton run: starting task %s: %s\n", r->task_id, err.msg);
    }
    if (r->interrupted || rc < 0) {
        /* Never started: cancel the task so no daemon sharing the store picks it up. */
        transition_wait tw = {0};
        bt_store_task_transition(r->store, r->task_id, BT_TASK_CANCELLED,
                                 r->interrupted ? "interrupted before it started"
                                                : "baton run could not start it",
                                 on_transitioned, &tw);
        while (!tw.done && uv_run(r->loop, UV_RUN_ONCE))
            ;
        return r->interrupted ? EXIT_INTERRUPTED : BT_EXIT_FAIL;
    }
    r->run_started = 1;
    /* Until the result is in and the executor has told the store (it reports after
     * on_task_done, so the task's final state is written before we exit). */
    while ((!r->done || bt_executor_active(r->exec) > 0) && uv_run(r->loop, UV_RUN_ONCE))
        ;
    if (!r->done) {
        fprintf(stderr, "baton run: the run stopped without a result (task %s)\n", r->task_id);
        return BT_EXIT_FAIL;
    }
    if (r->json) {
        json_t *o = r->result ? json_incref(r->result) : json_object();
        if (!r->result) {
            json_object_set_new(o, "success", json_boolean(r->success));
            json_object_set_new(o, "status", json_string(r->status));
            json_object_set_new(o, "error", r->error ? json_string(r->error) : json_null());
            json_object_set_new(o, "task_id", json_string(r->task_id));
        }
        /* offline: {requested, workflow, reason, choice}; null when it ran online */
        json_object_set(o, "offline", r->offline_choice ? r->offline_choice : json_null());
        char *out = json_dumps(o, JSON_INDENT(2));
        puts(out);
        free(out);
        json_decref(o);
    } else if (r->result) {
        print_summary(r);
    }
    fflush(stdout);
    if (!r->success)
        fprintf(stderr, "baton run: %s%s%s (task %s%s%s)\n", r->status, r->error ? ": " : "",
                r->error ? r->error : "", r->task_id, r->run_id[0] ? ", run " : "", r->run_id);
    if (r->interrupted)
        return EXIT_INTERRUPTED;
    return r->success ? BT_EXIT_OK : BT_EXIT_FAIL;
}

/* After option parsing: everything from loading the configuration to the exit code. */
static int run_task(const char *title, const char *config, const char *workflow, int max_iter,
                    int offline, const bt_strvec *inputs, const char *workspace, int json,
                    int verbose)
{
    setup s = {0};
    const bt_workflow *asked = NULL, *w = NULL;
    int rc = prepare(&s, config, workflow ? workflow : "default", workspace, &asked);
    if (rc == 0) {
        runner r = {.json = json, .verbose = verbose, .tty = isatty(STDERR_FILENO), .w = asked};
        r.set = s.set;
        r.agents = bt_cmd_agents_open(s.cfg);
        r.loop = bt_cmd_agents_loop(r.agents);
        uv_timer_init(r.loop, &r.ticker);
        r.ticker.data = &r;
        uv_signal_init(r.loop, &r.sigint);
        uv_signal_init(r.loop, &r.sigterm);
        r.sigint.data = r.sigterm.data = &r;
        uv_signal_start(&r.sigint, on_signal, SIGINT);
        uv_signal_start(&r.sigterm, on_signal, SIGTERM);

        rc = decide_offline(&r, &s, offline);
        if (rc == 0) {
            const char *why = NULL;
            int off = r.od ? bt_offline_state(r.od, &why) : 0;
            rc = choose(&s, asked, off, why, inputs, &w);
        }
        if (rc == 0) {
            r.w = w;
            /* the requested workflow's id: offline, the engine picks the variant (the same
             * as choose's) and reports it as run.offline */
            rc = execute(&r, &s, title, asked->id, max_iter);
        }

        uv_close((uv_handle_t *)&r.sigint, NULL);
        uv_close((uv_handle_t *)&r.sigterm, NULL);
        uv_close((uv_handle_t *)&r.ticker, NULL);
        if (r.exec)
            bt_executor_free(r.exec);
        if (r.engine)
            bt_engine_free(r.engine);
        bt_offline_free(r.od); /* probes still out are cancelled by the close below */
        bt_store_close(r.store);
        bt_cmd_agents_close(r.agents); /* runs the loop until every handle is closed */
        json_decref(r.result);
        json_decref(r.offline_choice);
        free(r.status);
        free(r.error);
        bt_strvec_clear(&r.announced);
    }
    json_decref(s.given);
    bt_workflows_free(s.set);
    bt_config_free(s.cfg);
    return rc;
}

int bt_cmd_run(int argc, char **argv)
{
    const char *config = NULL, *workflow = NULL, *max_iter_s = NULL, *workspace = NULL;
    const char *input_unused = NULL;
    int json = 0, help = 0, offline = 0, verbose = 0;
    const bt_opt opts[] = {
        {"workflow", 0, 1, &workflow, NULL, "workflow id or name (default: default)"},
        {"max-iterations", 0, 1, &max_iter_s, NULL, "iteration limit (default: the workflow's)"},
        {"offline", 0, 0, NULL, &offline,
         "force offline mode: the workflow's offline variant, local agents only"},
        {"input", 'i', 1, &input_unused, NULL, "NAME=VALUE for a workflow input (repeatable)"},
        {"workspace", 0, 1, &workspace, NULL, "directory the steps run in (default: here)"},
        {"verbose", 'v', 0, NULL, &verbose, "stream the agents' output to stderr"},
        {"json", 0, 0, NULL, &json, "print the result as one JSON object"},
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec rest = BT_STRVEC_INIT, inputs = BT_STRVEC_INIT, pos = BT_STRVEC_INIT;
    int max_iter = 0;
    int rc = take_inputs(argc, argv, opts, &rest, &inputs);
    if (rc == 0)
        rc = bt_opts_parse("run", (int)rest.len, rest.items, opts, &pos);
    if (rc == 0 && help) {
        bt_opts_usage("run", synopsis, opts);
        printf("\nRuns TASK through a workflow in this process and records it in the configured\n"
               "store (source \"cli\"). Progress goes to stderr: a live line on a terminal\n"
               "(step, agent, elapsed time, tokens), one line per step otherwise. The summary\n"
               "- the workflow, iterations, status, one [OK]/[FAIL] line per step and the\n"
               "final output - goes to stdout (--json: the whole result object).\n"
               "An approval step waits for `baton approve RUN` / `baton reject RUN` (from\n"
               "another terminal). Ctrl-C cancels the run; a second Ctrl-C quits at once.\n"
               "Offline: with offline.mode auto the agents' remote providers are probed first\n"
               "(offline.probe_timeout); when none answers, the workflow's offline variant\n"
               "(offline-default) runs instead and a line on stderr says why. --offline\n"
               "forces it.\n"
               "Exit codes: 0 completed, 1 failed or cancelled, 2 usage error (unknown\n"
               "workflow, bad --input), 130 interrupted.\n");
    } else if (rc == 0) {
        if (pos.len != 1) {
            fprintf(stderr, "baton run: %s. usage: %s\n",
                    pos.len == 0 ? "expected the TASK to run" : "expected one TASK (quote it)",
                    synopsis);
            rc = BT_EXIT_USAGE;
        } else if (!max_iter_s || (rc = parse_iterations(max_iter_s, &max_iter)) == 0) {
            rc = run_task(pos.items[0], config, workflow, max_iter, offline, &inputs, workspace,
                          json, verbose);
        }
    }
    bt_strvec_clear(&rest);
    bt_strvec_clear(&inputs);
    bt_strvec_clear(&pos);
    return rc;
}
