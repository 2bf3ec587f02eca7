/*
 * test_engine.c - the workflow engine and the local executor (src/core/engine.c,
 * src/core/executor.c) driven end to end with a real SQLite store in a temp dir, real
 * shell and git processes, and replay agents playing multi-turn recordings: chained
 * outputs, when / continue_on_error / retries / failure, interrupt and resume without
 * re-running finished steps, cancel (by call and through the task's status), durable
 * approvals across a restart, sub-workflows, review iterations and the stop rule,
 * budgets, agent fallback, git operations whose parameters can never become shell
 * syntax, and the executor claiming and reporting tasks.
 */
#include "testutil.h"

#include "agents/agents.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "core/engine.h"
#include "core/executor.h"
#include "core/workflow.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------
 * Fixture: a loop, a store, and (per test) a configuration, agents and workflows.
 */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE returning while we wait */
    char *dir;       /* scratch: store, recordings */
    char *ws;        /* the workspace steps run in */
    bt_store *s;
    bt_config *cfg;
    bt_agents *agents;
    bt_workflows *wfs;
    bt_engine *eng[3];
    int neng;
} fx;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static int setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    f->dir = bt_test_tmpdir("engine");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/ws", f->dir);
    f->ws = bt_strbuf_detach(&sb, NULL);
    assert_int_equal(mkdir(f->ws, 0755), 0);
    bt_strbuf_addf(&sb, "sqlite:%s/store.db", f->dir);
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&f->loop, sb.buf, NULL, &f->s, &err))
        fail_msg("opening %s: %s", sb.buf, err.msg);
    bt_strbuf_release(&sb);
    *state = f;
    return 0;
}

static void pump(fx *f, int64_t ms)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
}

/* Run the loop until *flag is set or ms pass; fails the test on timeout. */
static void wait_flag(fx *f, const int *flag, int64_t ms, const char *what)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (!*flag && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    if (!*flag)
        fail_msg("timed out after %lld ms waiting for %s", (long long)ms, what);
}

static bt_agents *get_agents(void *ud)
{
    return ((fx *)ud)->agents;
}

static bt_engine *new_engine(fx *f)
{
    bt_engine_env env = {.loop = &f->loop,
                         .store = f->s,
                         .cfg = f->cfg,
                         .workflows = f->wfs,
                         .agents = get_agents,
                         .ud = f};
    bt_engine *e = bt_engine_new(&env);
    assert_true(f->neng < 3);
    f->eng[f->neng++] = e;
    return e;
}

static int teardown(void **state)
{
    fx *f = *state;
    pump(f, 50); /* let ended runs release their handles */
    for (int i = 0; i < f->neng; i++)
        bt_engine_free(f->eng[i]);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    bt_agents_free(f->agents);
    bt_workflows_free(f->wfs);
    bt_store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_config_free(f->cfg);
    free(f->ws);
    bt_test_rmdir(f->dir);
    free(f);
    return 0;
}

/* Configuration from YAML (agents, budgets...); NULL = defaults. Replaces agents and
 * workflows. */
static void use_config(fx *f, const char *yaml)
{
    bt_agents_free(f->agents);
    f->agents = NULL;
    bt_config_free(f->cfg);
    f->cfg = NULL;
    bt_workflows_free(f->wfs);
    f->wfs = NULL;
    const char *y = yaml ? yaml : "log: {level: error}\n";
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_config_load_string("test.yaml", y, strlen(y), NULL, &f->cfg, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("config: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    bt_agent_env aenv = {.loop = &f->loop, .cfg = f->cfg};
    f->agents = bt_agents_new(&aenv);
    bt_workflows_opts wo = {.workflows_dir = "", .personas_dir = "", .no_builtin = true};
    if (bt_workflows_load(f->cfg, &wo, &f->wfs, NULL, &err) < 0)
        fail_msg("workflows: %s", err.msg);
}

static void add_workflow(fx *f, const char *name, const char *yaml)
{
    if (!f->cfg)
        use_config(f, NULL);
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_workflows_add_string(f->wfs, f->cfg, name, yaml, strlen(yaml), &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("workflow %s: %s", name, err.msg);
    }
    bt_config_problems_free(&probs);
}

/* A replay recording: one turn per entry of outs (output text, success, class, cost). */
typedef struct turn {
    const char *output;
    int success;
    const char *error_class; /* "ok", "transient", "permanent" */
    double cost;
} turn;

static char *write_recording(fx *f, const char *name, const turn *turns, size_t n)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    for (size_t i = 0; i < n; i++) {
        json_t *h = json_pack("{ss ss si ss ss ss}", "type", "header", "format", "baton-replay",
                              "version", 1, "agent", name, "agent_type", "cli", "model", "m1");
        json_t *ev = json_pack("{ss si ss ss}", "type", "event", "at_ms", 0, "kind", "output",
                               "text", turns[i].output);
        json_t *res = json_pack("{ss sb ss ss ss si si si sf}", "type", "result", "success",
                                turns[i].success, "output", turns[i].output, "error",
                                turns[i].success ? "" : "the recorded run failed", "error_class",
                                turns[i].error_class, "exit_code", turns[i].success ? 0 : 1,
                                "tokens_in", 100, "tokens_out", 50, "cost_usd", turns[i].cost);
        json_t *lines[] = {h, ev, res};
        for (size_t k = 0; k < 3; k++) {
            char *s = bt_json_dumps(lines[k]);
            bt_strbuf_addf(&sb, "%s\n", s);
            free(s);
            json_decref(lines[k]);
        }
    }
    bt_strbuf fn = BT_STRBUF_INIT;
    bt_strbuf_addf(&fn, "%s.jsonl", name);
    char *path = bt_test_write(f->dir, fn.buf, sb.buf);
    bt_strbuf_release(&fn);
    bt_strbuf_release(&sb);
    return path;
}

/* ---------------------------------------------------------------------------------
 * Store helpers (each drives the loop until its callback).
 */

typedef struct got {
    int called, rc;
    bt_task *task;
    bt_run *run;
    bt_step **steps;
    size_t n;
    bt_approval **aps;
    size_t naps;
    size_t count; /* tasks or runs listed */
    char msg[BT_ERROR_MSG_MAX];
} got;

static void got_free(got *g)
{
    bt_task_free(g->task);
    bt_run_free(g->run);
    for (size_t i = 0; i < g->n; i++)
        bt_step_free(g->steps[i]);
    free(g->steps);
    for (size_t i = 0; i < g->naps; i++)
        bt_approval_free(g->aps[i]);
    free(g->aps);
    memset(g, 0, sizeof *g);
}

static void set_err(got *g, int rc, const bt_error *err)
{
    g->called++;
    g->rc = rc;
    if (err)
        snprintf(g->msg, sizeof g->msg, "%s", err->msg);
}

static void cb_create(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    (void)created;
    got *g = ud;
    set_err(g, rc, err);
    if (t)
        g->task = bt_task_dup(t);
}

static void cb_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    got *g = ud;
    set_err(g, rc, err);
    if (t)
        g->task = bt_task_dup(t);
}

static void cb_tasks(void *ud, int rc, const bt_error *err, bt_task *const *t, size_t n,
                     const char *cursor)
{
    (void)cursor;
    got *g = ud;
    set_err(g, rc, err);
    g->count = n;
    if (n)
        g->task = bt_task_dup(t[0]);
}

static void cb_run(void *ud, int rc, const bt_error *err, const bt_run *r)
{
    got *g = ud;
    set_err(g, rc, err);
    if (r)
        g->run = bt_run_dup(r);
}

static void cb_runs(void *ud, int rc, const bt_error *err, bt_run *const *runs, size_t n)
{
    got *g = ud;
    set_err(g, rc, err);
    g->count = n;
    if (n)
        g->run = bt_run_dup(runs[0]);
}

static void cb_steps(void *ud, int rc, const bt_error *err, bt_step *const *steps, size_t n)
{
    got *g = ud;
    set_err(g, rc, err);
    g->steps = bt_xcalloc(n + 1, sizeof *g->steps);
    for (size_t i = 0; i < n; i++)
        g->steps[i] = bt_step_dup(steps[i]);
    g->n = n;
}

static void cb_approvals(void *ud, int rc, const bt_error *err, bt_approval *const *list, size_t n)
{
    got *g = ud;
    set_err(g, rc, err);
    g->aps = bt_xcalloc(n + 1, sizeof *g->aps);
    for (size_t i = 0; i < n; i++)
        g->aps[i] = bt_approval_dup(list[i]);
    g->naps = n;
}

static void cb_approval(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    got *g = ud;
    set_err(g, rc, err);
    (void)a;
}

static void wait_got(fx *f, got *g)
{
    wait_flag(f, &g->called, 10000, "a store callback");
    if (g->rc != 0)
        fail_msg("store operation failed (%d): %s", g->rc, g->msg);
}

static bt_task *create_task(fx *f, const char *title, const char *workflow)
{
    bt_task_input in = {.source = "cli",
                        .title = title,
                        .workflow = workflow,
                        .priority = BT_PRIORITY_NONE,
                        .max_attempts = 1};
    got g = {0};
    bt_store_task_create(f->s, &in, cb_create, &g);
    wait_got(f, &g);
    bt_task *t = g.task;
    g.task = NULL;
    got_free(&g);
    return t;
}

static bt_task *get_task(fx *f, const char *id)
{
    got g = {0};
    bt_store_task_get(f->s, id, cb_task, &g);
    wait_got(f, &g);
    bt_task *t = g.task;
    g.task = NULL;
    got_free(&g);
    return t;
}

static bt_task *claim_task(fx *f, const char *id)
{
    bt_claim_opts co = {.owner = "test", .lease_ms = 600000, .max = 1, .task_id = id};
    got g = {0};
    bt_store_claim(f->s, &co, cb_tasks, &g);
    wait_got(f, &g);
    assert_int_equal(g.count, 1);
    bt_task *t = g.task;
    g.task = NULL;
    got_free(&g);
    return t;
}

static bt_run *get_run(fx *f, const char *id)
{
    got g = {0};
    bt_store_run_get(f->s, id, cb_run, &g);
    wait_got(f, &g);
    bt_run *r = g.run;
    g.run = NULL;
    got_free(&g);
    return r;
}

static size_t count_runs(fx *f, const char *task_id)
{
    got g = {0};
    bt_store_run_list(f->s, task_id, NULL, 100, cb_runs, &g);
    wait_got(f, &g);
    size_t n = g.count;
    got_free(&g);
    return n;
}

/* Steps of a run, in the store's order; free with got_free. */
static got list_steps(fx *f, const char *run_id)
{
    got g = {0};
    bt_store_step_list(f->s, run_id, cb_steps, &g);
    wait_got(f, &g);
    return g;
}

static got list_approvals(fx *f, const char *run_id, const bt_approval_status *status)
{
    got g = {0};
    bt_store_approval_list(f->s, status, run_id, cb_approvals, &g);
    wait_got(f, &g);
    return g;
}

/* The latest attempt of step key in iteration it (0 = any), or NULL. */
static const bt_step *step_row(const got *g, const char *key, int it)
{
    const bt_step *found = NULL;
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->steps[i]->step_key, key) == 0 && (!it || g->steps[i]->iteration == it))
            if (!found || g->steps[i]->attempt > found->attempt ||
                g->steps[i]->iteration > found->iteration)
                found = g->steps[i];
    return found;
}

static size_t rows_of(const got *g, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->steps[i]->step_key, key) == 0)
            n++;
    return n;
}

/* ---------------------------------------------------------------------------------
 * A run and what a user sees of it.
 */

enum { ACT_NONE = 0, ACT_STOP, ACT_CANCEL, ACT_CANCEL_TASK };

typedef struct outcome {
    fx *f;
    bt_engine *e;
    int done, calls;
    char status[32];
    char *error, *error_class, *final_output;
    char run_id[BT_ID_LEN + 1];
    json_t *json;
    int waiting;        /* run.waiting progress seen */
    int lock_waits;     /* step.waiting progress seen (file locks) */
    int64_t acted_ms;   /* when the action below was taken */
    int64_t done_ms;    /* when on_done ran */
    int act;            /* what to do ... */
    const char *act_on; /* ... on "step.started" (act_kind NULL) or act_kind of this step */
    const char *act_kind;
    const char *task_id;
    int acted;
} outcome;

static void outcome_free(outcome *o)
{
    free(o->error);
    free(o->error_class);
    free(o->final_output);
    json_decref(o->json);
    memset(o, 0, sizeof *o);
}

static void on_done(bt_engine *e, const bt_engine_result *r, void *ud)
{
    (void)e;
    outcome *o = ud;
    o->calls++;
    o->done = 1;
    o->done_ms = bt_time_mono_ms();
    snprintf(o->status, sizeof o->status, "%s", r->status);
    free(o->error);
    free(o->error_class);
    free(o->final_output);
    o->error = r->error ? bt_xstrdup(r->error) : NULL;
    o->error_class = r->error_class ? bt_xstrdup(r->error_class) : NULL;
    o->final_output = bt_xstrdup(r->final_output ? r->final_output : "");
    snprintf(o->run_id, sizeof o->run_id, "%s", r->run_id ? r->run_id : "");
    json_decref(o->json);
    o->json = r->json ? json_deep_copy(r->json) : NULL;
    assert_int_equal(r->success, strcmp(r->status, "completed") == 0);
}

static void on_transitioned(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    (void)ud, (void)err, (void)t;
    assert_int_equal(rc, 0);
}

static void on_progress(bt_engine *e, const char *kind, const json_t *data, void *ud)
{
    outcome *o = ud;
    if (strcmp(kind, "run.waiting") == 0)
        o->waiting = 1;
    if (strcmp(kind, "step.waiting") == 0)
        o->lock_waits++;
    if (!o->act || o->acted)
        return;
    const char *want = o->act_kind ? o->act_kind : "step.started";
    const char *step = bt_json_str(data, "step_key", NULL);
    if (!step)
        step = bt_json_str(data, "step", "");
    if (strcmp(kind, want) != 0 || strcmp(step, o->act_on) != 0)
        return;
    o->acted = 1;
    o->acted_ms = bt_time_mono_ms();
    if (o->act == ACT_STOP)
        bt_engine_stop(e);
    else if (o->act == ACT_CANCEL)
        assert_int_equal(bt_engine_cancel(e, o->task_id, "stop it"), 0);
    else if (o->act == ACT_CANCEL_TASK)
        bt_store_task_transition(o->f->s, o->task_id, BT_TASK_CANCELLED, "user said stop",
                                 on_transitioned, NULL);
}

static void start_run(fx *f, bt_engine *e, const bt_task *t, const char *workflow, int max_iter,
                      outcome *o)
{
    o->f = f;
    o->e = e;
    o->task_id = t->id;
    bt_engine_run_opts ro = {.workflow = workflow,
                             .max_iterations = max_iter,
                             .workspace = f->ws,
                             .on_done = on_done,
                             .on_progress = on_progress,
                             .ud = o};
    bt_error err = BT_ERROR_INIT;
    if (bt_engine_start(e, t, &ro, &err) < 0)
        fail_msg("engine start: %s", err.msg);
    assert_int_equal(o->done, 0); /* never inside start */
}

static void run_to_end(fx *f, bt_engine *e, const bt_task *t, const char *workflow, int max_iter,
                       outcome *o)
{
    start_run(f, e, t, workflow, max_iter, o);
    wait_flag(f, &o->done, 15000, "the run to end");
    pump(f, 20);
    assert_int_equal(o->calls, 1);
}

static char *read_file(fx *f, const char *name)
{
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s/%s", f->ws, name);
    FILE *fp = fopen(p.buf, "r");
    bt_strbuf_release(&p);
    if (!fp)
        return NULL;
    bt_strbuf sb = BT_STRBUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        bt_strbuf_add(&sb, buf, n);
    fclose(fp);
    return bt_strbuf_detach(&sb, NULL);
}

static int ws_exists(fx *f, const char *name)
{
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s/%s", f->ws, name);
    int ok = access(p.buf, F_OK) == 0;
    bt_strbuf_release(&p);
    return ok;
}

#define assert_has(s, sub)                                                                         \
    do {                                                                                           \
        const char *s_ = (s);                                                                      \
        if (!s_ || !strstr(s_, (sub)))                                                             \
            fail_msg("'%s' does not contain '%s'", s_ ? s_ : "(null)", (sub));                     \
    } while (0)

static void assert_json_lines(const json_t *arr, const char *const *want, size_t n)
{
    if (json_array_size(arr) != n) {
        char *s = bt_json_dumps(arr);
        fail_msg("steps lines %s, want %zu lines", s, n);
    }
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(arr, i)), want[i]);
}

/* ---------------------------------------------------------------------------------
 * 1. Three shell steps, outputs chained with both template spellings.
 */

static const char wf_chain[] = "id: chain\n"
                               "steps:\n"
                               "  - id: a\n"
                               "    action: shell-command\n"
                               "    inputs: {command: \"echo alpha\"}\n"
                               "  - id: b\n"
                               "    action: shell-command\n"
                               "    inputs: {command: \"echo {{ previous.output }}-beta\"}\n"
                               "  - id: c\n"
                               "    action: shell-command\n"
                               "    inputs:\n"
                               "      command: \"echo ${steps.a.output}+{{ steps.b.output | "
                               "upcase }}\"\n"
                               "outputs:\n"
                               "  - name: result\n"
                               "    value: \"${steps.c.output}\"\n";

static void test_shell_chain(void **state)
{
    fx *f = *state;
    add_workflow(f, "chain.yaml", wf_chain);
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "chain it", NULL);
    outcome o = {0};
    run_to_end(f, e, t, "chain", 0, &o);
    assert_string_equal(o.status, "completed");
    assert_null(o.error);
    assert_string_equal(o.final_output, "alpha+ALPHA-BETA");
    assert_non_null(o.json);
    assert_true(json_is_true(json_object_get(o.json, "success")));
    assert_string_equal(bt_json_str(o.json, "workflow", ""), "chain");
    assert_string_equal(bt_json_str(o.json, "final_output", ""), "alpha+ALPHA-BETA");
    const char *const lines[] = {" [OK] a", " [OK] b", " [OK] c"};
    assert_json_lines(json_object_get(o.json, "steps"), lines, 3);
    json_t *outs = json_object_get(o.json, "outputs");
    assert_string_equal(bt_json_str(outs, "result", ""), "alpha+ALPHA-BETA");
    assert_int_equal(bt_engine_active(e), 0);

    bt_run *run = get_run(f, o.run_id);
    assert_int_equal(run->status, BT_RUN_COMPLETED);
    assert_string_equal(run->output, "alpha+ALPHA-BETA");
    assert_string_equal(run->task_id, t->id);
    bt_run_free(run);
    got g = list_steps(f, o.run_id);
    assert_int_equal(g.n, 3);
    const char *keys[] = {"a", "b", "c"};
    const char *outputs[] = {"alpha", "alpha-beta", "alpha+ALPHA-BETA"};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(g.steps[i]->step_key, keys[i]);
        assert_int_equal(g.steps[i]->status, BT_STEP_SUCCEEDED);
        assert_string_equal(g.steps[i]->output, outputs[i]);
        assert_int_equal(g.steps[i]->exit_code, 0);
        assert_int_equal(g.steps[i]->attempt, 1);
    }
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 2. when, continue_on_error, retries, and a failure that ends the run.
 */

static const char wf_flow[] =
    "id: flow\n"
    "steps:\n"
    "  - id: a\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo no\"}\n"
    "  - id: skipme\n"
    "    action: shell-command\n"
    "    when: '{{ steps.a.output == \"yes\" }}'\n"
    "    inputs: {command: \"touch skipped-ran\"}\n"
    "  - id: lint\n"
    "    action: shell-command\n"
    "    continue_on_error: true\n"
    "    inputs: {command: \"echo lint-broke; exit 2\"}\n"
    "  - id: flaky\n"
    "    action: shell-command\n"
    "    retries: 1\n"
    "    inputs:\n"
    "      command: \"if [ -f flaky.mark ]; then echo flaky-ok; else touch flaky.mark; echo "
    "first-fail; exit 1; fi\"\n"
    "  - id: last\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo {{ steps.lint.status }}-{{ steps.flaky.output }}\"}\n";

static const char wf_failing[] = "id: failing\n"
                                 "steps:\n"
                                 "  - id: ok1\n"
                                 "    action: shell-command\n"
                                 "    inputs: {command: \"echo fine\"}\n"
                                 "  - id: boom\n"
                                 "    action: shell-command\n"
                                 "    inputs: {command: \"echo kaboom; exit 7\"}\n"
                                 "  - id: never\n"
                                 "    action: shell-command\n"
                                 "    inputs: {command: \"touch never-ran\"}\n";

static void test_when_continue_retry_fail(void **state)
{
    fx *f = *state;
    add_workflow(f, "flow.yaml", wf_flow);
    add_workflow(f, "failing.yaml", wf_failing);
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "flow", NULL);
    outcome o = {0};
    run_to_end(f, e, t, "flow", 0, &o);
    /* the failed lint step did not stop the run: later steps ran and saw its status */
    assert_string_equal(o.final_output, "failed-flaky-ok");
    /* ... and, as engine.h and workflow.h say, it does not fail the run either */
    assert_string_equal(o.status, "completed");
    assert_false(ws_exists(f, "skipped-ran"));

    got g = list_steps(f, o.run_id);
    const bt_step *sk = step_row(&g, "skipme", 1);
    assert_non_null(sk);
    assert_int_equal(sk->status, BT_STEP_SKIPPED);
    const bt_step *lint = step_row(&g, "lint", 1);
    assert_int_equal(lint->status, BT_STEP_FAILED);
    assert_int_equal(lint->exit_code, 2);
    assert_has(lint->error, "exit code 2");
    /* retries: 1 -> attempt 1 failed, attempt 2 succeeded */
    assert_int_equal(rows_of(&g, "flaky"), 2);
    for (size_t i = 0; i < g.n; i++) {
        if (strcmp(g.steps[i]->step_key, "flaky") != 0)
            continue;
        if (g.steps[i]->attempt == 1) {
            assert_int_equal(g.steps[i]->status, BT_STEP_FAILED);
            assert_has(g.steps[i]->output, "first-fail");
        } else {
            assert_int_equal(g.steps[i]->attempt, 2);
            assert_int_equal(g.steps[i]->status, BT_STEP_SUCCEEDED);
            assert_string_equal(g.steps[i]->output, "flaky-ok");
        }
    }
    assert_int_equal(step_row(&g, "last", 1)->status, BT_STEP_SUCCEEDED);
    const char *const lines[] = {" [OK] a", " [SKIP] skipme", " [FAIL] lint", " [OK] flaky",
                                 " [OK] last"};
    assert_json_lines(json_object_get(o.json, "steps"), lines, 5);
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);

    /* A failure without continue_on_error: the run fails, naming the step and exit code,
     * and the steps after it never run. */
    t = create_task(f, "fail", NULL);
    run_to_end(f, e, t, "failing", 0, &o);
    assert_string_equal(o.status, "failed");
    assert_has(o.error, "step 'boom' failed");
    assert_has(o.error, "exit code 7");
    assert_has(o.error, "kaboom");
    assert_string_equal(o.error_class, "permanent");
    assert_false(json_is_true(json_object_get(o.json, "success")));
    assert_false(ws_exists(f, "never-ran"));
    bt_run *run = get_run(f, o.run_id);
    assert_int_equal(run->status, BT_RUN_FAILED);
    assert_has(run->error, "exit code 7");
    bt_run_free(run);
    g = list_steps(f, o.run_id);
    assert_int_equal(g.n, 2);
    assert_int_equal(step_row(&g, "ok1", 1)->status, BT_STEP_SUCCEEDED);
    assert_int_equal(step_row(&g, "boom", 1)->status, BT_STEP_FAILED);
    assert_int_equal(step_row(&g, "boom", 1)->exit_code, 7);
    assert_null(step_row(&g, "never", 0));
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 3. Interrupt (shutdown) and resume in a new engine.
 */

static const char wf_resume[] =
    "id: resume\n"
    "steps:\n"
    "  - id: one\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo one >> log; echo first\"}\n"
    "  - id: two\n"
    "    action: shell-command\n"
    "    inputs:\n"
    "      command: \"echo two >> log; if [ -f go ]; then echo second; else echo sleeping; exec "
    "sleep 30; fi\"\n"
    "  - id: three\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo three >> log; echo {{ steps.one.output }}/{{ steps.two.output "
    "}}\"}\n";

static void check_interrupted_then_resume(fx *f, const char *act_kind, const char *want_log)
{
    bt_engine *e1 = new_engine(f);
    bt_task *t = create_task(f, "resume me", NULL);
    outcome o = {0};
    o.act = ACT_STOP;
    o.act_on = "two";
    o.act_kind = act_kind;
    start_run(f, e1, t, "resume", 0, &o);
    wait_flag(f, &o.done, 10000, "the interrupted run's on_done");
    assert_true(o.acted);
    assert_string_equal(o.status, "interrupted");
    assert_true(o.done_ms - o.acted_ms < 3000);
    assert_int_equal(bt_engine_active(e1), 0);
    pump(f, 100); /* the killed process is reaped */
    char run_id[BT_ID_LEN + 1];
    snprintf(run_id, sizeof run_id, "%s", o.run_id);
    bt_run *run = get_run(f, run_id);
    assert_int_equal(run->status, BT_RUN_RUNNING); /* resumable */
    bt_run_free(run);
    got g = list_steps(f, run_id);
    assert_int_equal(g.n, 2);
    assert_int_equal(step_row(&g, "one", 1)->status, BT_STEP_SUCCEEDED);
    assert_int_equal(step_row(&g, "two", 1)->status, BT_STEP_RUNNING);
    got_free(&g);
    outcome_free(&o);

    /* A new engine (a restarted process) resumes the same run. */
    free(bt_test_write(f->ws, "go", ""));
    bt_engine *e2 = new_engine(f);
    run_to_end(f, e2, t, "resume", 0, &o);
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.run_id, run_id);
    assert_string_equal(o.final_output, "first/second");
    assert_int_equal(count_runs(f, t->id), 1);
    char *log = read_file(f, "log");
    assert_string_equal(log, want_log); /* step one never ran again */
    free(log);
    g = list_steps(f, run_id);
    assert_int_equal(rows_of(&g, "one"), 1);
    assert_int_equal(rows_of(&g, "two"), 2);
    for (size_t i = 0; i < g.n; i++) {
        const bt_step *s = g.steps[i];
        if (strcmp(s->step_key, "two") != 0)
            continue;
        if (s->attempt == 1) {
            assert_int_equal(s->status, BT_STEP_CANCELLED);
            assert_has(s->error, "interrupted");
        } else {
            assert_int_equal(s->attempt, 2);
            assert_int_equal(s->status, BT_STEP_SUCCEEDED);
            assert_string_equal(s->output, "second");
        }
    }
    assert_int_equal(step_row(&g, "three", 1)->status, BT_STEP_SUCCEEDED);
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* Stopped as step two is announced: its action never starts, the row stays running. */
static void test_interrupt_at_start_resume(void **state)
{
    fx *f = *state;
    add_workflow(f, "resume.yaml", wf_resume);
    check_interrupted_then_resume(f, NULL, "one\ntwo\nthree\n");
}

/* Stopped while step two's process runs: it is killed, the row stays running. */
static void test_interrupt_running_resume(void **state)
{
    fx *f = *state;
    add_workflow(f, "resume.yaml", wf_resume);
    check_interrupted_then_resume(f, "agent.output", "one\ntwo\ntwo\nthree\n");
}

/* ---------------------------------------------------------------------------------
 * 4. Cancel: by bt_engine_cancel and through the task's status.
 */

static const char wf_sleeper[] = "id: sleeper\n"
                                 "steps:\n"
                                 "  - id: first\n"
                                 "    action: shell-command\n"
                                 "    inputs: {command: \"echo first\"}\n"
                                 "  - id: nap\n"
                                 "    action: shell-command\n"
                                 "    inputs: {command: \"echo napping; exec sleep 30\"}\n"
                                 "  - id: after\n"
                                 "    action: shell-command\n"
                                 "    inputs: {command: \"touch after-ran\"}\n";

static void check_cancelled(fx *f, outcome *o)
{
    assert_true(o->acted);
    assert_string_equal(o->status, "cancelled");
    assert_true(o->done_ms - o->acted_ms < 3000);
    assert_string_equal(o->error_class, "cancelled");
    bt_run *run = get_run(f, o->run_id);
    assert_int_equal(run->status, BT_RUN_CANCELLED);
    bt_run_free(run);
    got g = list_steps(f, o->run_id);
    assert_int_equal(step_row(&g, "first", 1)->status, BT_STEP_SUCCEEDED);
    assert_int_equal(step_row(&g, "nap", 1)->status, BT_STEP_CANCELLED);
    assert_null(step_row(&g, "after", 0));
    got_free(&g);
    assert_false(ws_exists(f, "after-ran"));
}

static void test_cancel(void **state)
{
    fx *f = *state;
    add_workflow(f, "sleeper.yaml", wf_sleeper);
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "cancel me", NULL);
    outcome o = {0};
    o.act = ACT_CANCEL;
    o.act_on = "nap";
    o.act_kind = "agent.output";
    run_to_end(f, e, t, "sleeper", 0, &o);
    check_cancelled(f, &o);
    assert_has(o.error, "stop it");
    assert_int_equal(bt_engine_cancel(e, t->id, "again"), BT_ENOENT);
    outcome_free(&o);
    bt_task_free(t);

    /* Through the store: the task (claimed, in_progress) goes to cancelled. */
    bt_task *created = create_task(f, "cancel my task", NULL);
    t = claim_task(f, created->id);
    bt_task_free(created);
    o.act = ACT_CANCEL_TASK;
    o.act_on = "nap";
    o.act_kind = "agent.output";
    run_to_end(f, e, t, "sleeper", 0, &o);
    check_cancelled(f, &o);
    bt_task *now = get_task(f, t->id);
    assert_int_equal(now->status, BT_TASK_CANCELLED);
    bt_task_free(now);
    outcome_free(&o);
    bt_task_free(t);

    /* Cancelled as the step is announced (before its process exists): it never starts. */
    t = create_task(f, "cancel at start", NULL);
    o.act = ACT_CANCEL;
    o.act_on = "nap";
    run_to_end(f, e, t, "sleeper", 0, &o);
    check_cancelled(f, &o);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 5. Approvals: approve, reject, and a wait that survives a restart.
 */

static const char wf_gate[] =
    "id: gate\n"
    "steps:\n"
    "  - id: build\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo built\"}\n"
    "  - id: approve\n"
    "    action: approval\n"
    "    inputs: {prompt: \"Ship {{ task.title }}? build said {{ steps.build.output }}\"}\n"
    "  - id: ship\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo shipped after ${steps.approve.output}\"}\n";

/* Run the loop until the run waits at its approval gate. */
static void wait_gate(fx *f, outcome *o)
{
    wait_flag(f, &o->waiting, 10000, "the run to wait for its approval");
    pump(f, 30);
    assert_int_equal(o->done, 0);
}

static void decide(fx *f, const char *id, bool approve, const char *by, const char *comment)
{
    got g = {0};
    bt_store_approval_decide(f->s, id, approve, by, comment, cb_approval, &g);
    wait_got(f, &g);
    got_free(&g);
}

/* The run of task t: the newest. */
static bt_run *task_run(fx *f, const char *task_id)
{
    got g = {0};
    bt_store_run_list(f->s, task_id, NULL, 10, cb_runs, &g);
    wait_got(f, &g);
    assert_true(g.count >= 1);
    bt_run *r = g.run;
    g.run = NULL;
    got_free(&g);
    return r;
}

/* Checks the run waits with exactly one pending approval; copies its id. */
static void assert_waiting(fx *f, const char *task_id, const char *title, char *id)
{
    bt_run *run = task_run(f, task_id);
    assert_int_equal(run->status, BT_RUN_WAITING);
    bt_approval_status pending = BT_APPROVAL_PENDING;
    got a = list_approvals(f, run->id, &pending);
    assert_int_equal(a.naps, 1);
    char want[256];
    snprintf(want, sizeof want, "Ship %s? build said built", title);
    assert_string_equal(a.aps[0]->prompt, want);
    assert_string_equal(a.aps[0]->step_key, "approve");
    assert_string_equal(a.aps[0]->task_id, task_id);
    snprintf(id, BT_ID_LEN + 1, "%s", a.aps[0]->id);
    got_free(&a);
    got all = list_approvals(f, run->id, NULL);
    assert_int_equal(all.naps, 1);
    got_free(&all);
    bt_run_free(run);
}

static void test_approval(void **state)
{
    fx *f = *state;
    add_workflow(f, "gate.yaml", wf_gate);
    bt_engine *e = new_engine(f);
    char id[BT_ID_LEN + 1];

    /* approve */
    bt_task *t = create_task(f, "v1", NULL);
    outcome o = {0};
    start_run(f, e, t, "gate", 0, &o);
    wait_gate(f, &o);
    assert_waiting(f, t->id, "v1", id);
    decide(f, id, true, "alice", "lgtm");
    wait_flag(f, &o.done, 10000, "the approved run to end");
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.final_output, "shipped after approved by alice: lgtm");
    got g = list_steps(f, o.run_id);
    assert_string_equal(step_row(&g, "approve", 1)->output, "approved by alice: lgtm");
    assert_int_equal(step_row(&g, "approve", 1)->status, BT_STEP_SUCCEEDED);
    got_free(&g);
    bt_run *run = get_run(f, o.run_id);
    assert_int_equal(run->status, BT_RUN_COMPLETED);
    bt_run_free(run);
    outcome_free(&o);
    bt_task_free(t);

    /* reject */
    t = create_task(f, "v2", NULL);
    start_run(f, e, t, "gate", 0, &o);
    wait_gate(f, &o);
    assert_waiting(f, t->id, "v2", id);
    decide(f, id, false, "bob", "not on a friday");
    wait_flag(f, &o.done, 10000, "the rejected run to end");
    assert_string_equal(o.status, "failed");
    assert_has(o.error, "rejected by bob");
    assert_has(o.error, "not on a friday");
    g = list_steps(f, o.run_id);
    assert_int_equal(step_row(&g, "approve", 1)->status, BT_STEP_FAILED);
    assert_null(step_row(&g, "ship", 0));
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);

    /* interrupted while waiting; a new engine waits for the same approval */
    t = create_task(f, "v3", NULL);
    start_run(f, e, t, "gate", 0, &o);
    wait_gate(f, &o);
    assert_waiting(f, t->id, "v3", id);
    char first_id[BT_ID_LEN + 1];
    snprintf(first_id, sizeof first_id, "%s", id);
    bt_engine_stop(e);
    wait_flag(f, &o.done, 5000, "the waiting run to be interrupted");
    assert_string_equal(o.status, "interrupted");
    pump(f, 30);
    assert_waiting(f, t->id, "v3", id); /* still waiting, still one approval */
    outcome_free(&o);

    bt_engine *e2 = new_engine(f);
    start_run(f, e2, t, "gate", 0, &o);
    wait_flag(f, &o.waiting, 10000, "the resumed run to wait again");
    pump(f, 30);
    assert_int_equal(o.done, 0);
    assert_waiting(f, t->id, "v3", id);
    assert_string_equal(id, first_id); /* no second approval */
    decide(f, id, true, "carol", "");
    wait_flag(f, &o.done, 10000, "the resumed run to end");
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.final_output, "shipped after approved by carol");
    assert_int_equal(count_runs(f, t->id), 1);
    outcome_free(&o);
    bt_task_free(t);
}

/* A decision that arrives as the engine shuts down: the engine is reading the decided
 * approval when it is stopped. The run ends interrupted; the next engine finds the
 * decision and completes the run. */
typedef struct stopper {
    bt_engine *e;
    int stopped;
} stopper;

static void stop_on_decided(void *ud, const bt_event *ev)
{
    stopper *st = ud;
    if (!st->stopped && strcmp(ev->type, "approval.decided") == 0) {
        st->stopped = 1;
        bt_engine_stop(st->e);
    }
}

static void test_approval_decided_during_shutdown(void **state)
{
    fx *f = *state;
    add_workflow(f, "gate.yaml", wf_gate);
    bt_engine *e = new_engine(f);
    char id[BT_ID_LEN + 1];
    bt_task *t = create_task(f, "v4", NULL);
    outcome o = {0};
    start_run(f, e, t, "gate", 0, &o);
    wait_gate(f, &o);
    assert_waiting(f, t->id, "v4", id);
    /* subscribed after the engine: it sees the event first and starts reading */
    stopper st = {.e = e};
    int sub = bt_store_subscribe(f->s, stop_on_decided, &st);
    decide(f, id, true, "dave", "go");
    wait_flag(f, &o.done, 5000, "the run to be interrupted");
    bt_store_unsubscribe(f->s, sub);
    assert_true(st.stopped);
    assert_string_equal(o.status, "interrupted");
    pump(f, 100);
    outcome_free(&o);

    bt_engine *e2 = new_engine(f);
    run_to_end(f, e2, t, "gate", 0, &o);
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.final_output, "shipped after approved by dave: go");
    assert_int_equal(count_runs(f, t->id), 1);
    outcome_free(&o);
    bt_task_free(t);
}

static char *sh_out(fx *f, const char *cmd);

/* The approval's context of the run of task t (its one pending approval); new ref. */
static json_t *approval_context(fx *f, const char *task_id)
{
    bt_run *run = task_run(f, task_id);
    bt_approval_status pending = BT_APPROVAL_PENDING;
    got a = list_approvals(f, run->id, &pending);
    assert_int_equal(a.naps, 1);
    json_t *ctx = json_incref(a.aps[0]->context);
    got_free(&a);
    bt_run_free(run);
    return ctx;
}

/* One entry of context.diff.files by path. */
static json_t *diff_file(json_t *diff, const char *path)
{
    json_t *files = json_object_get(diff, "files"), *v;
    size_t i;
    json_array_foreach(files, i, v)
    {
        if (strcmp(bt_json_str(v, "path", ""), path) == 0)
            return v;
    }
    fail_msg("no file %s in the approval's diff", path);
    return NULL;
}

/* The approver sees what the workspace changed: a modified, a deleted and an untracked
 * file, with line counts against HEAD; and reading it changes nothing in the workspace. */
static void test_approval_diff(void **state)
{
    fx *f = *state;
    add_workflow(f, "gate.yaml", wf_gate);
    free(sh_out(f, "git init -q -b main . && printf 'one\\ntwo\\nthree\\n' > a.txt && "
                   "printf 'x\\ny\\n' > gone.txt && git add -A && "
                   "git -c user.name=t -c user.email=t@example.com commit -q -m init && "
                   "printf 'one\\nTWO\\nthree\\nfour\\n' > a.txt && rm gone.txt && "
                   "printf 'new\\nfile\\n' > 'new file.txt'"));
    char *before =
        sh_out(f, "GIT_OPTIONAL_LOCKS=0 git status --porcelain=v1 && stat -c %y .git/index");
    char *sha = sh_out(f, "git rev-parse --short HEAD");
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "d1", NULL);
    outcome o = {0};
    start_run(f, e, t, "gate", 0, &o);
    wait_gate(f, &o);
    char id[BT_ID_LEN + 1];
    assert_waiting(f, t->id, "d1", id);
    json_t *ctx = approval_context(f, t->id);
    assert_string_equal(bt_json_str(ctx, "previous_output", ""), "built");
    json_t *diff = json_object_get(ctx, "diff");
    assert_non_null(diff);
    assert_string_equal(bt_json_str(diff, "base", ""), sha);
    assert_int_equal(json_integer_value(json_object_get(diff, "files_changed")), 3);
    assert_int_equal(json_integer_value(json_object_get(diff, "insertions")), 2);
    assert_int_equal(json_integer_value(json_object_get(diff, "deletions")), 3);
    assert_int_equal(json_array_size(json_object_get(diff, "files")), 3);
    assert_null(json_object_get(diff, "truncated"));
    json_t *m = diff_file(diff, "a.txt");
    assert_string_equal(bt_json_str(m, "status", ""), "M");
    assert_int_equal(json_integer_value(json_object_get(m, "added")), 2);
    assert_int_equal(json_integer_value(json_object_get(m, "removed")), 1);
    json_t *d = diff_file(diff, "gone.txt");
    assert_string_equal(bt_json_str(d, "status", ""), "D");
    assert_int_equal(json_integer_value(json_object_get(d, "added")), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "removed")), 2);
    json_t *u = diff_file(diff, "new file.txt");
    assert_string_equal(bt_json_str(u, "status", ""), "??");
    assert_true(json_is_null(json_object_get(u, "added")));
    assert_true(json_is_null(json_object_get(u, "removed")));
    json_decref(ctx);
    /* nothing staged, the index not even rewritten */
    char *after =
        sh_out(f, "GIT_OPTIONAL_LOCKS=0 git status --porcelain=v1 && stat -c %y .git/index");
    assert_string_equal(after, before);
    decide(f, id, true, "erin", "");
    wait_flag(f, &o.done, 10000, "the approved run to end");
    assert_string_equal(o.status, "completed");
    free(before);
    free(after);
    free(sha);
    outcome_free(&o);
    bt_task_free(t);
}

/* Not a git work tree: no diff summary, and the gate works as before. */
static void test_approval_no_git(void **state)
{
    fx *f = *state;
    add_workflow(f, "gate.yaml", wf_gate);
    /* even when the scratch directory happens to sit inside someone's repository */
    setenv("GIT_CEILING_DIRECTORIES", f->dir, 1);
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "d2", NULL);
    outcome o = {0};
    start_run(f, e, t, "gate", 0, &o);
    wait_gate(f, &o);
    char id[BT_ID_LEN + 1];
    assert_waiting(f, t->id, "d2", id);
    json_t *ctx = approval_context(f, t->id);
    assert_null(json_object_get(ctx, "diff"));
    assert_string_equal(bt_json_str(ctx, "workflow", ""), "gate");
    assert_string_equal(bt_json_str(ctx, "step", ""), "approve");
    json_decref(ctx);
    decide(f, id, false, "frank", "no");
    wait_flag(f, &o.done, 10000, "the rejected run to end");
    assert_string_equal(o.status, "failed");
    unsetenv("GIT_CEILING_DIRECTORIES");
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 6. execute-workflow: inputs down, outputs up, child rows keyed "call/<id>".
 */

static const char wf_child[] = "id: child\n"
                               "inputs:\n"
                               "  - name: who\n"
                               "    type: string\n"
                               "    required: true\n"
                               "steps:\n"
                               "  - id: hello\n"
                               "    action: shell-command\n"
                               "    inputs: {command: \"echo hello-{{ inputs.who }}\"}\n"
                               "outputs:\n"
                               "  - name: greeting\n"
                               "    value: \"${steps.hello.output}\"\n";

static const char wf_parent[] =
    "id: parent\n"
    "steps:\n"
    "  - id: prep\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo world\"}\n"
    "  - id: call\n"
    "    action: execute-workflow\n"
    "    workflow: child\n"
    "    inputs: {who: \"{{ steps.prep.output }}\"}\n"
    "  - id: use\n"
    "    action: shell-command\n"
    "    inputs:\n"
    "      command: \"echo got-{{ steps.call.outputs.greeting }}-{{ steps.call.output }}\"\n";

static void test_subworkflow(void **state)
{
    fx *f = *state;
    add_workflow(f, "child.yaml", wf_child);
    add_workflow(f, "parent.yaml", wf_parent);
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "nest", NULL);
    outcome o = {0};
    run_to_end(f, e, t, "parent", 0, &o);
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.final_output, "got-hello-world-hello-world");
    got g = list_steps(f, o.run_id);
    const bt_step *child = step_row(&g, "call/hello", 1);
    assert_non_null(child);
    assert_int_equal(child->status, BT_STEP_SUCCEEDED);
    assert_string_equal(child->output, "hello-world");
    assert_int_equal(step_row(&g, "call", 1)->status, BT_STEP_SUCCEEDED);
    assert_string_equal(step_row(&g, "call", 1)->output, "hello-world");
    assert_null(step_row(&g, "hello", 0));
    /* order: prep, call, call/hello, use */
    assert_int_equal(g.n, 4);
    assert_string_equal(g.steps[0]->step_key, "prep");
    assert_string_equal(g.steps[3]->step_key, "use");
    got_free(&g);
    /* the seed lines list the top-level steps only */
    const char *const lines[] = {" [OK] prep", " [OK] call", " [OK] use"};
    assert_json_lines(json_object_get(o.json, "steps"), lines, 3);
    outcome_free(&o);
    bt_task_free(t);

    /* A continue_on_error failure inside the child fails neither the call nor the run. */
    add_workflow(f, "child2.yaml",
                 "id: child2\n"
                 "steps:\n"
                 "  - id: optional\n"
                 "    action: shell-command\n"
                 "    continue_on_error: true\n"
                 "    inputs: {command: \"exit 4\"}\n"
                 "  - id: fine\n"
                 "    action: shell-command\n"
                 "    inputs: {command: \"echo child-fine\"}\n");
    add_workflow(f, "parent2.yaml",
                 "id: parent2\n"
                 "steps:\n"
                 "  - id: call\n"
                 "    action: execute-workflow\n"
                 "    workflow: child2\n"
                 "  - id: after\n"
                 "    action: shell-command\n"
                 "    inputs: {command: \"echo after-{{ steps.call.output }}\"}\n");
    t = create_task(f, "nest 2", NULL);
    run_to_end(f, e, t, "parent2", 0, &o);
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.final_output, "after-child-fine");
    g = list_steps(f, o.run_id);
    assert_int_equal(step_row(&g, "call/optional", 1)->status, BT_STEP_FAILED);
    assert_int_equal(step_row(&g, "call", 1)->status, BT_STEP_SUCCEEDED);
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 7. Iterations: implement / review / refine with replay agents and the stop rule.
 */

static const char wf_loop[] = "id: loop\n"
                              "max_iterations: 3\n"
                              "steps:\n"
                              "  - id: implement\n"
                              "    agent: impl\n"
                              "    role: implement\n"
                              "  - id: review\n"
                              "    agent: rev\n"
                              "    role: review\n"
                              "  - id: refine\n"
                              "    agent: ref\n"
                              "    role: refine\n";

static void loop_config(fx *f)
{
    const turn impl[] = {{"implemented v1", 1, "ok", 0.01}, {"implemented v2", 1, "ok", 0.01}};
    const turn rev[] = {{"{\"suggestions\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 1, "ok", 0.02},
                        {"{\"suggestions\":[\"x\",\"y\"]}", 1, "ok", 0.02}};
    const turn ref[] = {{"refined once", 1, "ok", 0.03}, {"refined twice", 1, "ok", 0.03}};
    char *pi = write_recording(f, "impl", impl, 2);
    char *pv = write_recording(f, "rev", rev, 2);
    char *pf = write_recording(f, "ref", ref, 2);
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addf(&y,
                   "log: {level: error}\n"
                   "agents:\n"
                   "  impl: {type: replay, file: \"%s\", speed: 0}\n"
                   "  rev: {type: replay, file: \"%s\", speed: 0}\n"
                   "  ref: {type: replay, file: \"%s\", speed: 0}\n",
                   pi, pv, pf);
    use_config(f, y.buf);
    bt_strbuf_release(&y);
    free(pi);
    free(pv);
    free(pf);
    add_workflow(f, "loop.yaml", wf_loop);
}

static void test_iterations(void **state)
{
    fx *f = *state;
    loop_config(f);
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "iterate", NULL);
    outcome o = {0};
    run_to_end(f, e, t, "loop", 0, &o);
    assert_string_equal(o.status, "completed");
    assert_int_equal(bt_json_int(o.json, "iterations", 0), 2);
    assert_string_equal(bt_json_str(o.json, "stop_reason", ""), "review_passed");
    assert_string_equal(o.final_output, "refined twice");
    const char *const lines[] = {" [OK] impl (implement)", " [OK] rev (review)",
                                 " [OK] ref (refine)"};
    assert_json_lines(json_object_get(o.json, "steps"), lines, 3);
    got g = list_steps(f, o.run_id);
    assert_int_equal(g.n, 6);
    assert_string_equal(step_row(&g, "review", 1)->output,
                        "{\"suggestions\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}");
    assert_string_equal(step_row(&g, "review", 2)->output, "{\"suggestions\":[\"x\",\"y\"]}");
    assert_string_equal(step_row(&g, "implement", 2)->output, "implemented v2");
    assert_string_equal(step_row(&g, "refine", 2)->agent, "ref");
    assert_int_equal(step_row(&g, "refine", 2)->tokens_in, 100);
    got_free(&g);
    bt_run *run = get_run(f, o.run_id);
    assert_int_equal(run->iteration, 2);
    assert_true(run->cost_usd > 0.119 && run->cost_usd < 0.121); /* 2 x (0.01+0.02+0.03) */
    bt_run_free(run);
    outcome_free(&o);
    bt_task_free(t);

    /* max_iterations 1 (fresh agents: the recordings start again): one iteration, and
     * the run still completes, saying why it stopped. */
    for (int i = 0; i < f->neng; i++)
        bt_engine_free(f->eng[i]);
    f->neng = 0;
    pump(f, 10);
    loop_config(f);
    e = new_engine(f);
    t = create_task(f, "iterate once", NULL);
    run_to_end(f, e, t, "loop", 1, &o);
    assert_string_equal(o.status, "completed");
    assert_int_equal(bt_json_int(o.json, "iterations", 0), 1);
    assert_string_equal(bt_json_str(o.json, "stop_reason", ""), "max_iterations");
    assert_string_equal(o.final_output, "refined once");
    g = list_steps(f, o.run_id);
    assert_int_equal(g.n, 3);
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 8. Budget: the second agent step is refused once the task has spent its budget.
 */

static void test_budget(void **state)
{
    fx *f = *state;
    const turn a[] = {{"first work", 1, "ok", 0.01}};
    const turn b[] = {{"second work", 1, "ok", 0.01}};
    char *pa = write_recording(f, "spender", a, 1);
    char *pb = write_recording(f, "second", b, 1);
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addf(&y,
                   "log: {level: error}\n"
                   "budgets: {per_task: 0.005}\n"
                   "agents:\n"
                   "  spender: {type: replay, file: \"%s\", speed: 0}\n"
                   "  second: {type: replay, file: \"%s\", speed: 0}\n",
                   pa, pb);
    use_config(f, y.buf);
    bt_strbuf_release(&y);
    free(pa);
    free(pb);
    add_workflow(f, "spend.yaml",
                 "id: spend\n"
                 "steps:\n"
                 "  - id: one\n"
                 "    agent: spender\n"
                 "  - id: two\n"
                 "    agent: second\n");
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "spend", NULL);
    outcome o = {0};
    run_to_end(f, e, t, "spend", 0, &o);
    assert_string_equal(o.status, "failed");
    assert_string_equal(o.error_class, "permanent");
    assert_has(o.error, "step 'two' failed");
    assert_has(o.error, "budget exhausted");
    assert_has(o.error, "budgets.per_task");
    got g = list_steps(f, o.run_id);
    assert_int_equal(step_row(&g, "one", 1)->status, BT_STEP_SUCCEEDED);
    assert_string_equal(step_row(&g, "one", 1)->output, "first work");
    assert_int_equal(step_row(&g, "two", 1)->status, BT_STEP_FAILED);
    assert_has(step_row(&g, "two", 1)->error, "budget exhausted");
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 9. Fallback: a transient failure hands the step to the fallback agent; a permanent
 * one does not.
 */

static void test_fallback(void **state)
{
    fx *f = *state;
    const turn flaky[] = {{"rate limited", 0, "transient", 0}};
    const turn broken[] = {{"bad request", 0, "permanent", 0}};
    const turn backup[] = {{"backup did it", 1, "ok", 0.001}};
    char *p1 = write_recording(f, "flaky", flaky, 1);
    char *p2 = write_recording(f, "broken", broken, 1);
    char *p3 = write_recording(f, "backup", backup, 1);
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addf(&y,
                   "log: {level: error}\n"
                   "agents:\n"
                   "  flaky: {type: replay, file: \"%s\", speed: 0}\n"
                   "  broken: {type: replay, file: \"%s\", speed: 0}\n"
                   "  backup: {type: replay, file: \"%s\", speed: 0}\n",
                   p1, p2, p3);
    use_config(f, y.buf);
    bt_strbuf_release(&y);
    free(p1);
    free(p2);
    free(p3);
    add_workflow(f, "fb.yaml",
                 "id: fb\n"
                 "steps:\n"
                 "  - id: work\n"
                 "    agent: flaky\n"
                 "    fallback: [backup]\n");
    add_workflow(f, "nofb.yaml",
                 "id: nofb\n"
                 "steps:\n"
                 "  - id: work\n"
                 "    agent: broken\n"
                 "    fallback: [backup]\n");
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "fall back", NULL);
    outcome o = {0};
    run_to_end(f, e, t, "fb", 0, &o);
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.final_output, "backup did it");
    got g = list_steps(f, o.run_id);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.steps[0]->status, BT_STEP_SUCCEEDED);
    assert_string_equal(g.steps[0]->agent, "backup");
    assert_non_null(g.steps[0]->fallback_from);
    assert_string_equal(g.steps[0]->fallback_from, "flaky");
    got_free(&g);
    const char *const lines[] = {" [OK] backup (work) (fallback from flaky)"};
    assert_json_lines(json_object_get(o.json, "steps"), lines, 1);
    outcome_free(&o);
    bt_task_free(t);

    t = create_task(f, "no fall back", NULL);
    run_to_end(f, e, t, "nofb", 0, &o);
    assert_string_equal(o.status, "failed");
    assert_string_equal(o.error_class, "permanent");
    assert_has(o.error, "the recorded run failed");
    g = list_steps(f, o.run_id);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.steps[0]->status, BT_STEP_FAILED);
    assert_string_equal(g.steps[0]->agent, "broken");
    assert_null(g.steps[0]->fallback_from);
    assert_string_equal(g.steps[0]->error_class, "permanent");
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 10. git-operation in a real repository. The commit message carries quotes, a command
 * substitution and backquotes aimed at files in the workspace (a targeted stand-in for
 * "$(rm -rf /)"): they must end up in the message, literally, and run nothing.
 */

static const char wf_git[] =
    "id: gitflow\n"
    "steps:\n"
    "  - id: branch\n"
    "    action: git-operation\n"
    "    inputs: {operation: branch, branch: \"feature/x\"}\n"
    "  - id: edit\n"
    "    action: shell-command\n"
    "    inputs: {command: \"echo change >> README\"}\n"
    "  - id: commit\n"
    "    action: git-operation\n"
    "    inputs:\n"
    "      operation: commit\n"
    "      message: 'fix \"quoted\" ''single'' $(rm -rf victim) `rm -rf victim2` ; touch pwned'\n"
    "  - id: diff\n"
    "    action: git-operation\n"
    "    inputs: {operation: diff, base: \"HEAD~1\"}\n"
    "  - id: status\n"
    "    action: git-operation\n"
    "    inputs: {operation: status}\n"
    "  - id: again\n"
    "    action: git-operation\n"
    "    inputs: {operation: commit, message: \"nothing here\"}\n";

static char *sh_out(fx *f, const char *cmd)
{
    bt_strbuf c = BT_STRBUF_INIT;
    bt_strbuf_addf(&c, "cd '%s' && %s", f->ws, cmd);
    FILE *p = popen(c.buf, "r");
    bt_strbuf_release(&c);
    assert_non_null(p);
    bt_strbuf sb = BT_STRBUF_INIT;
    char buf[1024];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        bt_strbuf_add(&sb, buf, n);
    assert_int_equal(pclose(p), 0);
    while (sb.len && sb.buf[sb.len - 1] == '\n')
        bt_strbuf_setlen(&sb, sb.len - 1);
    return bt_strbuf_detach(&sb, NULL);
}

static void test_git(void **state)
{
    fx *f = *state;
    add_workflow(f, "git.yaml", wf_git);
    free(sh_out(f, "git init -q -b main . && echo base > README && mkdir victim victim2 && "
                   "echo keep > victim/keep && echo keep > victim2/keep && git add -A && "
                   "git -c user.name=t -c user.email=t@example.com commit -q -m init"));
    bt_engine *e = new_engine(f);
    bt_task *t = create_task(f, "git it", NULL);
    outcome o = {0};
    run_to_end(f, e, t, "gitflow", 0, &o);
    if (strcmp(o.status, "completed") != 0)
        fail_msg("run %s: %s", o.status, o.error ? o.error : "");
    got g = list_steps(f, o.run_id);
    assert_string_equal(step_row(&g, "branch", 1)->output, "feature/x");
    char *head = sh_out(f, "git rev-parse HEAD");
    assert_int_equal(strlen(head), 40);
    assert_string_equal(step_row(&g, "commit", 1)->output, head);
    char *msg = sh_out(f, "git log -1 --format=%B");
    assert_string_equal(msg, "fix \"quoted\" 'single' $(rm -rf victim) `rm -rf victim2` ; "
                             "touch pwned");
    char *branch = sh_out(f, "git rev-parse --abbrev-ref HEAD");
    assert_string_equal(branch, "feature/x");
    assert_true(ws_exists(f, "victim/keep"));
    assert_true(ws_exists(f, "victim2/keep"));
    assert_false(ws_exists(f, "pwned"));
    assert_has(step_row(&g, "diff", 1)->output, "+change");
    assert_has(step_row(&g, "status", 1)->output, "## feature/x");
    assert_string_equal(step_row(&g, "again", 1)->output, "nothing to commit");
    assert_int_equal(step_row(&g, "again", 1)->status, BT_STEP_SUCCEEDED);
    char *head2 = sh_out(f, "git rev-parse HEAD");
    assert_string_equal(head2, head); /* no empty commit */
    free(head);
    free(head2);
    free(msg);
    free(branch);
    got_free(&g);
    outcome_free(&o);
    bt_task_free(t);
}

/* ---------------------------------------------------------------------------------
 * 11. The executor: one task, a task that is not pending, and queue mode.
 */

typedef struct xseen {
    fx *f;
    int done;
    char status[4][32];
    char error[512];
    char task_id[4][BT_ID_LEN + 1];
    int task_status_at_done[4]; /* the task's status read from inside on_task_done */
    int stopped;
} xseen;

static void cb_task_status(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    (void)err;
    int *slot = ud;
    *slot = rc == 0 && t ? (int)t->status + 100 : -1;
}

static void on_task_done(bt_executor *x, const bt_engine_result *r, void *ud)
{
    (void)x;
    xseen *s = ud;
    if (s->done < 4) {
        snprintf(s->status[s->done], sizeof s->status[0], "%s", r->status);
        snprintf(s->task_id[s->done], sizeof s->task_id[0], "%s", r->task_id);
        /* "after the queue was told": a read issued now sees the outcome */
        bt_store_task_get(s->f->s, r->task_id, cb_task_status, &s->task_status_at_done[s->done]);
    }
    if (r->error)
        snprintf(s->error, sizeof s->error, "%s", r->error);
    s->done++;
}

static void on_stopped(void *ud)
{
    ((xseen *)ud)->stopped = 1;
}

static void test_executor(void **state)
{
    fx *f = *state;
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addf(&y, "log: {level: error}\nworkspace: {root: \"%s/roots\"}\n", f->dir);
    use_config(f, y.buf);
    bt_strbuf_release(&y);
    add_workflow(f, "chain.yaml", wf_chain);
    bt_engine *e = new_engine(f);
    xseen s = {.f = f};
    bt_executor_opts xo = {
        .owner = "cli:test:1", .tick_ms = 50, .on_task_done = on_task_done, .ud = &s};
    bt_executor *x = bt_executor_new(e, f->s, f->cfg, NULL, &xo);

    /* one task */
    bt_task *t = create_task(f, "exec one", NULL);
    bt_engine_run_opts ro = {.workflow = "chain", .workspace = f->ws};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_executor_run_task(x, t->id, &ro, &err), 0);
    wait_flag(f, &s.done, 10000, "on_task_done");
    pump(f, 50);
    assert_string_equal(s.status[0], "completed");
    assert_string_equal(s.task_id[0], t->id);
    assert_int_equal(s.task_status_at_done[0], BT_TASK_COMPLETED + 100);
    bt_task *now = get_task(f, t->id);
    assert_int_equal(now->status, BT_TASK_COMPLETED);
    assert_non_null(now->result);
    assert_true(json_is_true(json_object_get(now->result, "success")));
    assert_string_equal(bt_json_str(now->result, "final_output", ""), "alpha+ALPHA-BETA");
    assert_null(now->lease_owner);
    bt_task_free(now);

    /* the same task again: it is not pending any more */
    s.done = 0;
    assert_int_equal(bt_executor_run_task(x, t->id, &ro, &err), 0);
    wait_flag(f, &s.done, 10000, "on_task_done for an unclaimable task");
    assert_string_equal(s.status[0], "failed");
    assert_has(s.error, "could not be claimed");
    now = get_task(f, t->id);
    assert_int_equal(now->status, BT_TASK_COMPLETED); /* untouched */
    bt_task_free(now);
    bt_task_free(t);
    assert_int_equal(bt_executor_active(x), 0);
    bt_executor_stop(x, on_stopped, &s);
    wait_flag(f, &s.stopped, 5000, "the one-task executor to stop");
    bt_executor_free(x);

    /* queue mode: two tasks, both run (workspaces under workspace.root), then stop */
    memset(&s, 0, sizeof s);
    s.f = f;
    x = bt_executor_new(e, f->s, f->cfg, NULL, &xo);
    assert_int_equal(bt_executor_start(x, &err), 0);
    bt_task *t1 = create_task(f, "queued one", "chain");
    bt_task *t2 = create_task(f, "queued two", "chain");
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + 10000;
    while (s.done < 2 && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    assert_int_equal(s.done, 2);
    pump(f, 50);
    if (strcmp(s.status[0], "completed") != 0 || strcmp(s.status[1], "completed") != 0)
        fail_msg("queued runs: %s, %s (%s)", s.status[0], s.status[1], s.error);
    bt_task *n1 = get_task(f, t1->id), *n2 = get_task(f, t2->id);
    assert_int_equal(n1->status, BT_TASK_COMPLETED);
    assert_int_equal(n2->status, BT_TASK_COMPLETED);
    assert_string_equal(bt_json_str(n2->result, "final_output", ""), "alpha+ALPHA-BETA");
    bt_task_free(n1);
    bt_task_free(n2);
    bt_task_free(t1);
    bt_task_free(t2);
    bt_executor_stop(x, on_stopped, &s);
    wait_flag(f, &s.stopped, 5000, "the queue executor to stop");
    assert_int_equal(bt_executor_active(x), 0);
    bt_executor_free(x);
}

/* ---------------------------------------------------------------------------------
 * File-level locks: two runs on one repository never hold overlapping paths at once.
 */

static const char wf_lock_a[] = "id: lock-a\n"
                                "steps:\n"
                                "  - id: a\n"
                                "    action: shell-command\n"
                                "    locks: [./src/]\n"
                                "    inputs: {command: \"touch a-started; sleep %s; echo A >> "
                                "order.txt\"}\n";
static const char wf_lock_b[] = "id: lock-b\n"
                                "steps:\n"
                                "  - id: b\n"
                                "    action: shell-command\n"
                                "    locks: [%s]\n"
                                "    inputs: {command: \"echo B >> order.txt\"}\n";

static void lock_workflows(fx *f, const char *sleep_s, const char *b_paths)
{
    char a[512], b[512];
    snprintf(a, sizeof a, wf_lock_a, sleep_s);
    snprintf(b, sizeof b, wf_lock_b, b_paths);
    add_workflow(f, "lock-a.yaml", a);
    add_workflow(f, "lock-b.yaml", b);
}

/* Start lock-a, wait until its step runs (it holds its lock), then run lock-b. */
static void race_locks(fx *f, outcome *oa, outcome *ob)
{
    bt_engine *e = new_engine(f);
    bt_task *ta = create_task(f, "holder", NULL);
    bt_task *tb = create_task(f, "second", NULL);
    start_run(f, e, ta, "lock-a", 0, oa);
    int64_t end = bt_time_mono_ms() + 10000;
    while (!ws_exists(f, "a-started") && bt_time_mono_ms() < end)
        pump(f, 10);
    assert_true(ws_exists(f, "a-started"));
    start_run(f, e, tb, "lock-b", 0, ob);
    wait_flag(f, &ob->done, 15000, "the second run to end");
    wait_flag(f, &oa->done, 15000, "the first run to end");
    pump(f, 20);
    bt_task_free(ta);
    bt_task_free(tb);
}

static void test_locks_wait(void **state)
{
    fx *f = *state;
    lock_workflows(f, "0.6", "src/api/x.c"); /* inside the first run's src */
    outcome oa = {0}, ob = {0};
    race_locks(f, &oa, &ob);
    assert_string_equal(oa.status, "completed");
    assert_string_equal(ob.status, "completed");
    assert_int_equal(ob.lock_waits, 1); /* the wait was visible, once */
    char *order = read_file(f, "order.txt");
    assert_string_equal(order, "A\nB\n"); /* b ran only after a released src */
    free(order);
    outcome_free(&oa);
    outcome_free(&ob);
}

static void test_locks_disjoint(void **state)
{
    fx *f = *state;
    lock_workflows(f, "0.6", "docs"); /* src and docs do not overlap */
    outcome oa = {0}, ob = {0};
    race_locks(f, &oa, &ob);
    assert_string_equal(ob.status, "completed");
    assert_int_equal(ob.lock_waits, 0);
    char *order = read_file(f, "order.txt");
    assert_string_equal(order, "B\nA\n"); /* b did not wait for a */
    free(order);
    outcome_free(&oa);
    outcome_free(&ob);
}

static void test_locks_fail_fast_and_timeout(void **state)
{
    fx *f = *state;
    use_config(f, "log: {level: error}\nlocks: {on_conflict: fail}\n");
    lock_workflows(f, "0.6", "src");
    outcome oa = {0}, ob = {0};
    race_locks(f, &oa, &ob);
    assert_string_equal(oa.status, "completed");
    assert_string_equal(ob.status, "failed");
    assert_has(ob.error, "is locked by run");
    assert_has(ob.error, "on_conflict is fail");
    assert_string_equal(ob.error_class, "transient"); /* a later retry may succeed */
    char *order = read_file(f, "order.txt");
    assert_string_equal(order, "A\n");
    free(order);
    outcome_free(&oa);
    outcome_free(&ob);

    /* waiting gives up after locks.wait_timeout */
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s/a-started", f->ws);
    unlink(p.buf);
    bt_strbuf_setlen(&p, 0);
    bt_strbuf_addf(&p, "%s/order.txt", f->ws);
    unlink(p.buf);
    bt_strbuf_release(&p);
    use_config(f, "log: {level: error}\nlocks: {wait_timeout: 1s}\n");
    lock_workflows(f, "3", "src");
    race_locks(f, &oa, &ob);
    assert_string_equal(oa.status, "completed");
    assert_string_equal(ob.status, "failed");
    assert_has(ob.error, "gave up after waiting 1s");
    assert_int_equal(ob.lock_waits, 1);
    assert_true(ob.done_ms < oa.done_ms); /* it did not wait for the holder to finish */
    outcome_free(&oa);
    outcome_free(&ob);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* results survive a sanitizer abort */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shell_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_when_continue_retry_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_at_start_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_running_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_decided_during_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_diff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_no_git, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subworkflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iterations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_git, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locks_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locks_disjoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locks_fail_fast_and_timeout, setup, teardown),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
