/*
 * test_budget.c - the budget check (src/core/budget.c) against a real SQLite store in a
 * temp dir with an injected clock: tasks, runs and steps with costs are created through
 * the store API, then each limit is checked: per task, per project (and only for the
 * given project), per UTC day across midnight, unlimited when 0, the verdict's
 * precedence and message, and failing closed when the store cannot answer.
 */
#include "testutil.h"

#include "base/mem.h"
#include "core/budget.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIDNIGHT 1700006400000LL /* 2023-11-15 00:00:00 UTC */
#define HOUR     3600000LL

typedef struct fx {
    uv_loop_t loop;
    bt_store *s;
    int64_t now; /* the store's clock: when steps finish */
    char *dir;
    char *path;
    int spend_ops; /* bt_store_spend calls seen by the op hook */
} fx;

static int64_t fake_now(void *ud)
{
    return ((fx *)ud)->now;
}

static void on_op(void *ud, const char *op, double seconds)
{
    (void)seconds;
    if (strcmp(op, "spend") == 0)
        ((fx *)ud)->spend_ops++;
}

static int setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    f->now = MIDNIGHT + 10 * HOUR;
    f->dir = bt_test_tmpdir("budget");
    size_t n = strlen(f->dir) + 32;
    f->path = bt_xmalloc(n);
    snprintf(f->path, n, "%s/store.db", f->dir);
    char url[4200];
    snprintf(url, sizeof url, "sqlite:%s", f->path);
    bt_store_options o = {.now_ms = fake_now, .now_ud = f};
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&f->loop, url, &o, &f->s, &err))
        fail_msg("opening %s: %s", url, err.msg);
    bt_store_set_op_hook(f->s, on_op, f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    bt_store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_test_rmdir(f->dir);
    free(f->path);
    free(f);
    return 0;
}

/* ---- store set-up through the store API ---- */

typedef struct got {
    int called;
    int rc;
    char id[BT_ID_LEN + 1];
} got;

static void wait_called(fx *f, const int *called)
{
    for (int i = 0; i < 100000 && !*called; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(*called, 1);
}

static void on_create(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    got *g = ud;
    g->called++;
    g->rc = rc;
    if (rc == 0)
        snprintf(g->id, sizeof g->id, "%s", t->id);
}
static void on_run(void *ud, int rc, const bt_error *err, const bt_run *r)
{
    got *g = ud;
    g->called++;
    g->rc = rc;
    if (rc == 0)
        snprintf(g->id, sizeof g->id, "%s", r->id);
}
static void on_step(void *ud, int rc, const bt_error *err, const bt_step *st)
{
    got *g = ud;
    g->called++;
    g->rc = rc;
    if (rc == 0)
        snprintf(g->id, sizeof g->id, "%s", st->id);
}

typedef struct task {
    char id[BT_ID_LEN + 1];
    char run[BT_ID_LEN + 1];
    int steps;
} task;

/* A task of project (NULL = none) with one run. */
static task mk_task(fx *f, const char *project)
{
    task t = {0};
    bt_task_input in = {
        .source = "api", .title = "t", .project = project, .priority = BT_PRIORITY_NONE};
    got g = {0};
    bt_store_task_create(f->s, &in, on_create, &g);
    wait_called(f, &g.called);
    assert_int_equal(g.rc, 0);
    snprintf(t.id, sizeof t.id, "%s", g.id);
    got r = {0};
    bt_store_run_create(f->s, t.id, "default", NULL, NULL, on_run, &r);
    wait_called(f, &r.called);
    assert_int_equal(r.rc, 0);
    snprintf(t.run, sizeof t.run, "%s", r.id);
    return t;
}

/* One agent step of the task that finishes now (the store clock) having cost cost. */
static void spend(fx *f, task *t, double cost)
{
    char key[32];
    snprintf(key, sizeof key, "step%d", ++t->steps);
    got st = {0};
    bt_store_step_start(f->s, t->run, key, 1, 1, t->steps, "claude", "coder", on_step, &st);
    wait_called(f, &st.called);
    assert_int_equal(st.rc, 0);
    bt_step_result sr = {
        .status = BT_STEP_SUCCEEDED, .tokens_in = 10, .tokens_out = 5, .cost_usd = cost};
    got fin = {0};
    bt_store_step_finish(f->s, st.id, &sr, on_step, &fin);
    wait_called(f, &fin.called);
    assert_int_equal(fin.rc, 0);
}

/* ---- the check ---- */

typedef struct verdict {
    int called;
    int allowed;
    char which[32];
    double spent, limit;
    char message[1024];
    int rc;
} verdict;

static void on_verdict(void *ud, const bt_budget_verdict *v)
{
    verdict *r = ud;
    r->called++;
    r->allowed = v->allowed;
    snprintf(r->which, sizeof r->which, "%s", v->which ? v->which : "");
    r->spent = v->spent;
    r->limit = v->limit;
    snprintf(r->message, sizeof r->message, "%s", v->message ? v->message : "");
    r->rc = v->rc;
    if (v->allowed) {
        assert_null(v->which);
        assert_null(v->message);
    } else {
        assert_non_null(v->message);
    }
}

static verdict check(fx *f, double per_task, double per_project, double per_day,
                     const char *task_id, const char *project, int64_t now)
{
    bt_config_budgets b = {.per_task = per_task, .per_project = per_project, .per_day = per_day};
    verdict v = {0};
    bt_budget_check(f->s, &b, task_id, project, now, on_verdict, &v);
    assert_int_equal(v.called, 0); /* never before the call returns */
    wait_called(f, &v.called);
    for (int i = 0; i < 5; i++) /* and exactly once */
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(v.called, 1);
    return v;
}

#define assert_usd(got, want) assert_true((got) > (want)-1e-9 && (got) < (want) + 1e-9)
#define assert_has(s, sub)                                                                         \
    do {                                                                                           \
        if (!strstr((s), (sub)))                                                                   \
            fail_msg("'%s' does not contain '%s'", (s), (sub));                                    \
    } while (0)

/* ---------------------------------------------------------------------------------
 * Tests.
 */

/* Limits of 0 are unlimited: whatever was spent, work is allowed and the store is not
 * even asked; the callback still comes later, on the loop. */
static void test_unlimited(void **state)
{
    fx *f = *state;
    task t = mk_task(f, "BACKEND");
    spend(f, &t, 1000.0);
    f->spend_ops = 0;
    verdict v = check(f, 0, 0, 0, t.id, "BACKEND", f->now);
    assert_int_equal(v.allowed, 1);
    assert_int_equal(v.rc, 0);
    assert_int_equal(f->spend_ops, 0);
    /* No budgets section at all. */
    verdict nb = {0};
    bt_budget_check(f->s, NULL, t.id, "BACKEND", f->now, on_verdict, &nb);
    assert_int_equal(nb.called, 0);
    wait_called(f, &nb.called);
    assert_int_equal(nb.allowed, 1);
    /* One limit set: only that one is asked (and it allows). */
    v = check(f, 0, 0, 5000, t.id, "BACKEND", f->now);
    assert_int_equal(v.allowed, 1);
    assert_int_equal(f->spend_ops, 1);
}

/* per_task: the task's own spend over all its runs; spent >= limit stops it, with a
 * message naming the task, both amounts and the way out. Other tasks are unaffected. */
static void test_per_task(void **state)
{
    fx *f = *state;
    task a = mk_task(f, NULL), b = mk_task(f, NULL);
    spend(f, &a, 1.25);
    spend(f, &a, 0.74);
    spend(f, &b, 9.0);
    verdict v = check(f, 2.0, 0, 0, a.id, NULL, f->now);
    assert_int_equal(v.allowed, 1); /* $1.99 of $2.00 */

    /* A second run of the same task counts too. */
    got r = {0};
    bt_store_run_create(f->s, a.id, "default", NULL, NULL, on_run, &r);
    wait_called(f, &r.called);
    snprintf(a.run, sizeof a.run, "%s", r.id);
    spend(f, &a, 0.42);
    v = check(f, 2.0, 0, 0, a.id, NULL, f->now);
    assert_int_equal(v.allowed, 0);
    assert_int_equal(v.rc, 0);
    assert_string_equal(v.which, "per_task");
    assert_usd(v.spent, 2.41);
    assert_usd(v.limit, 2.0);
    char want[256];
    snprintf(want, sizeof want,
             "budget exhausted: task %s has spent $2.41 of its $2.00 budget (budgets.per_task); "
             "raise budgets.per_task or cancel the task",
             a.id);
    assert_string_equal(v.message, want);

    /* Raising the limit lets it go on; another task with its own spend is judged alone. */
    assert_int_equal(check(f, 2.5, 0, 0, a.id, NULL, f->now).allowed, 1);
    assert_int_equal(check(f, 10.0, 0, 0, b.id, NULL, f->now).allowed, 1);
    /* A task that has spent nothing. */
    task c = mk_task(f, NULL);
    assert_int_equal(check(f, 0.01, 0, 0, c.id, NULL, f->now).allowed, 1);
    /* No task: per_task does not apply. */
    assert_int_equal(check(f, 0.01, 0, 0, NULL, NULL, f->now).allowed, 1);
}

/* Exactly at the limit is exhausted, also when the cents add up a hair under it in
 * floating point (ten steps of $0.10 make 0.9999999999999999). */
static void test_limit_reached_exactly(void **state)
{
    fx *f = *state;
    task a = mk_task(f, NULL);
    for (int i = 0; i < 10; i++)
        spend(f, &a, 0.1);
    verdict v = check(f, 1.0, 0, 0, a.id, NULL, f->now);
    assert_int_equal(v.allowed, 0);
    assert_string_equal(v.which, "per_task");
    assert_has(v.message, "has spent $1.00 of its $1.00 budget");
    /* Small budgets (local models) show their digits, not "$0.00 of $0.00". */
    task b = mk_task(f, NULL);
    spend(f, &b, 0.0012);
    spend(f, &b, 0.0012);
    v = check(f, 0.002, 0, 0, b.id, NULL, f->now);
    assert_int_equal(v.allowed, 0);
    assert_has(v.message, "has spent $0.0024 of its $0.002 budget");
}

/* per_project: the spend of every task of the project, checked only for the project
 * given; other projects and project-less work are not affected. */
static void test_per_project(void **state)
{
    fx *f = *state;
    task a = mk_task(f, "BACKEND"), b = mk_task(f, "BACKEND"), c = mk_task(f, "FRONTEND");
    task d = mk_task(f, NULL);
    spend(f, &a, 3.0);
    spend(f, &c, 20.0);
    spend(f, &d, 20.0);
    verdict v = check(f, 0, 5.0, 0, b.id, "BACKEND", f->now);
    assert_int_equal(v.allowed, 1); /* $3 of $5 */
    spend(f, &b, 2.5);
    v = check(f, 0, 5.0, 0, b.id, "BACKEND", f->now);
    assert_int_equal(v.allowed, 0);
    assert_string_equal(v.which, "per_project");
    assert_usd(v.spent, 5.5);
    assert_usd(v.limit, 5.0);
    assert_string_equal(v.message,
                        "budget exhausted: project BACKEND has spent $5.50 of its $5.00 budget "
                        "(budgets.per_project); raise budgets.per_project or cancel the "
                        "project's open tasks");
    /* A new task of the project is stopped before it spends anything... */
    task e = mk_task(f, "BACKEND");
    assert_int_equal(check(f, 0, 5.0, 0, e.id, "BACKEND", f->now).allowed, 0);
    /* ...a task of another project is judged by its own project... */
    v = check(f, 0, 25.0, 0, c.id, "FRONTEND", f->now);
    assert_int_equal(v.allowed, 1);
    /* ...and without a project there is no project budget. */
    assert_int_equal(check(f, 0, 5.0, 0, d.id, NULL, f->now).allowed, 1);
}

/* per_day: everything spent since 00:00 UTC of now; the spend of the day before does
 * not count, and work resumes at midnight. */
static void test_per_day_boundary(void **state)
{
    fx *f = *state;
    task a = mk_task(f, "BACKEND"), b = mk_task(f, NULL);
    f->now = MIDNIGHT - 1; /* 23:59:59.999 of the day before */
    spend(f, &a, 40.0);
    assert_int_equal(check(f, 0, 0, 40.01, a.id, NULL, MIDNIGHT - 1).allowed, 1);
    assert_int_equal(check(f, 0, 0, 40.0, a.id, NULL, MIDNIGHT - 1).allowed, 0);
    /* At midnight yesterday's $40 no longer counts. */
    assert_int_equal(check(f, 0, 0, 40.0, a.id, NULL, MIDNIGHT).allowed, 1);
    f->now = MIDNIGHT; /* 00:00:00.000: today, inclusive */
    spend(f, &b, 30.0);
    f->now = MIDNIGHT + 23 * HOUR;
    spend(f, &a, 20.1);

    verdict v = check(f, 0, 0, 50.0, b.id, NULL, MIDNIGHT + 23 * HOUR);
    assert_int_equal(v.allowed, 0);
    assert_string_equal(v.which, "per_day");
    assert_usd(v.spent, 50.1);
    assert_string_equal(v.message,
                        "budget exhausted: today's spend is $50.10 of $50.00 (budgets.per_day); "
                        "new agent work resumes at 00:00 UTC or raise budgets.per_day");
    /* Any task: the day's budget is global. */
    assert_int_equal(check(f, 0, 0, 50.0, NULL, NULL, MIDNIGHT + 23 * HOUR).allowed, 0);
    /* The last millisecond of the day is still today... */
    assert_int_equal(check(f, 0, 0, 50.0, a.id, NULL, MIDNIGHT + 24 * HOUR - 1).allowed, 0);
    /* ...the next day starts at zero. */
    v = check(f, 0, 0, 50.0, a.id, NULL, MIDNIGHT + 24 * HOUR);
    assert_int_equal(v.allowed, 1);
    assert_int_equal(bt_budget_day_start(MIDNIGHT + 24 * HOUR - 1), MIDNIGHT);
    assert_int_equal(bt_budget_day_start(MIDNIGHT), MIDNIGHT);
}

/* All three limits together: each is asked of the store once (issued together), and
 * when several are exhausted the verdict names the one that holds longest. */
static void test_all_limits_precedence(void **state)
{
    fx *f = *state;
    task a = mk_task(f, "BACKEND"), b = mk_task(f, "BACKEND");
    spend(f, &a, 3.0);
    spend(f, &b, 3.0);
    f->spend_ops = 0;
    verdict v = check(f, 10.0, 10.0, 10.0, a.id, "BACKEND", f->now);
    assert_int_equal(v.allowed, 1);
    assert_int_equal(f->spend_ops, 3);

    v = check(f, 10.0, 5.0, 5.0, a.id, "BACKEND", f->now); /* project and day */
    assert_string_equal(v.which, "per_project");
    v = check(f, 2.0, 5.0, 5.0, a.id, "BACKEND", f->now); /* all three */
    assert_string_equal(v.which, "per_task");
    assert_usd(v.spent, 3.0);
    v = check(f, 10.0, 10.0, 5.0, a.id, "BACKEND", f->now); /* day only */
    assert_string_equal(v.which, "per_day");
    assert_usd(v.spent, 6.0);
}

/* The limits and strings are copied: the caller may change them while the check runs
 * (PUT /api/config). */
static void test_inputs_copied(void **state)
{
    fx *f = *state;
    task a = mk_task(f, "BACKEND");
    spend(f, &a, 3.0);
    bt_config_budgets b = {.per_project = 2.0};
    char *project = bt_xstrdup("BACKEND");
    verdict v = {0};
    bt_budget_check(f->s, &b, a.id, project, f->now, on_verdict, &v);
    b.per_project = 0;
    memset(project, 'X', strlen(project));
    free(project);
    wait_called(f, &v.called);
    assert_int_equal(v.allowed, 0);
    assert_has(v.message, "project BACKEND has spent $3.00");
}

/* Fail closed: when the store cannot answer, no new agent work starts, and the message
 * carries the store's error. */
static void test_store_error_fails_closed(void **state)
{
    fx *f = *state;
    task a = mk_task(f, NULL);
    spend(f, &a, 0.5);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE steps RENAME TO steps_gone", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    verdict v = check(f, 100.0, 0, 0, a.id, NULL, f->now);
    assert_int_equal(v.allowed, 0);
    assert_true(v.rc < 0);
    assert_string_equal(v.which, "");
    assert_has(v.message, "cannot check budgets, so no new agent work starts");
    assert_has(v.message, "steps"); /* the store's own error */
    /* Unlimited budgets need no store: still allowed. */
    assert_int_equal(check(f, 0, 0, 0, a.id, NULL, f->now).allowed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unlimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_reached_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_project, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_day_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_limits_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inputs_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_error_fails_closed, setup, teardown),
    };
    return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
