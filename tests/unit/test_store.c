/*
 * test_store.c - the one store test suite, run against every backend: SQLite always
 * (a fresh temp file per test), PostgreSQL when BATON_TEST_PG_URL is set (the test
 * database's public schema is dropped and recreated before each test, so point it at
 * a throw-away database only: scripts/pg-test-cluster.sh).
 *
 * Every test is a function of a fixture (loop, store, fake clock) and appears once in
 * STORE_TESTS; it is instantiated once per backend. Backend-specific tests go in
 * SQLITE_ONLY_TESTS / PG_ONLY_TESTS. The sync helpers (call_*) issue one operation,
 * check that its callback did NOT run before the call returned, then run the loop
 * until it does and hand back a copy of the result.
 */
#include "testutil.h"

#include "base/mem.h"
#include "store/store.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * Backends and fixture.
 */
typedef struct backend {
    const char *name;
    bool pg;
} backend;

static const backend be_sqlite = {"sqlite", false};
static const backend be_pg = {"postgres", true};

typedef struct fx {
    const backend *be;
    uv_loop_t loop;
    bt_store *s;
    int64_t now;
    char *dir;
    char *url;
    bt_store_options opts;
} fx;

static int64_t fake_now(void *ud)
{
    return ((fx *)ud)->now;
}

#define T0 1700000000000LL /* the fake clock's start */

static void pg_reset(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to BATON_TEST_PG_URL: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SET client_min_messages = warning; "
                            "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("resetting the PostgreSQL test schema: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static void fx_open(fx *f)
{
    bt_error err = BT_ERROR_INIT;
    int rc = bt_store_open(&f->loop, f->url, &f->opts, &f->s, &err);
    if (rc != 0)
        fail_msg("opening %s: %s", f->url, err.msg);
}

static void fx_close(fx *f)
{
    bt_store_close(f->s);
    f->s = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT); /* lets the store's handles close */
}

static int setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    f->be = *state;
    uv_loop_init(&f->loop);
    f->now = T0;
    f->opts.now_ms = fake_now;
    f->opts.now_ud = f;
    f->opts.backoff_base_ms = 1000;
    f->opts.backoff_max_ms = 5000;
    if (f->be->pg) {
        f->url = bt_xstrdup(getenv("BATON_TEST_PG_URL"));
        pg_reset(f->url);
    } else {
        f->dir = bt_test_tmpdir("store");
        size_t n = strlen(f->dir) + 32;
        f->url = bt_xmalloc(n);
        snprintf(f->url, n, "sqlite:%s/store.db", f->dir);
    }
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->s)
        fx_close(f);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_test_rmdir(f->dir);
    free(f->url);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Sync helpers: one result struct, one callback per shape.
 */
typedef struct res {
    int called;
    int rc;
    bt_error err;
    bt_task *task;
    bt_task **tasks;
    size_t n;
    char *cursor;
    bool created;
    bt_fail_outcome outcome;
    int64_t count;
    bt_task_stats stats;
    bt_run *run;
    bt_step *step;
    bt_event *event;
    bt_event **events;
    bt_worker *worker;
    bt_approval *approval;
    void **list;
    bt_lock holder;
    char holder_owner[64];
    bt_spend spend;
} res;

static void res_free(res *r)
{
    bt_task_free(r->task);
    for (size_t i = 0; i < r->n && r->tasks; i++)
        bt_task_free(r->tasks[i]);
    free(r->tasks);
    free(r->cursor);
    bt_run_free(r->run);
    bt_step_free(r->step);
    bt_event_free(r->event);
    for (size_t i = 0; i < r->n && r->events; i++)
        bt_event_free(r->events[i]);
    free(r->events);
    bt_worker_free(r->worker);
    bt_approval_free(r->approval);
    free(r->list);
    memset(r, 0, sizeof *r);
}

static void mark(res *r, int rc, const bt_error *err)
{
    assert_int_equal(r->called, 0); /* exactly once */
    r->called = 1;
    r->rc = rc;
    if (rc) {
        assert_non_null(err);
        r->err = *err;
    } else {
        assert_null(err);
    }
}

static void wait_for(fx *f, res *r)
{
    assert_int_equal(r->called, 0); /* never before the call returned */
    for (int i = 0; i < 100000 && !r->called; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(r->called, 1);
}

static void cb_done(void *ud, int rc, const bt_error *err)
{
    mark(ud, rc, err);
}
static void cb_task(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    res *r = ud;
    mark(r, rc, err);
    r->task = bt_task_dup(t);
}
static void cb_create(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    res *r = ud;
    mark(r, rc, err);
    r->task = bt_task_dup(t);
    r->created = created;
}
static void cb_tasks(void *ud, int rc, const bt_error *err, bt_task *const *ts, size_t n,
                     const char *cursor)
{
    res *r = ud;
    mark(r, rc, err);
    r->n = n;
    r->tasks = bt_xcalloc(n + 1, sizeof *r->tasks);
    for (size_t i = 0; i < n; i++)
        r->tasks[i] = bt_task_dup(ts[i]);
    r->cursor = bt_xstrdup(cursor);
}
static void cb_fail(void *ud, int rc, const bt_error *err, const bt_task *t, bt_fail_outcome o)
{
    res *r = ud;
    mark(r, rc, err);
    r->task = bt_task_dup(t);
    r->outcome = o;
}
static void cb_count(void *ud, int rc, const bt_error *err, int64_t count)
{
    res *r = ud;
    mark(r, rc, err);
    r->count = count;
}
static void cb_stats(void *ud, int rc, const bt_error *err, const bt_task_stats *st)
{
    res *r = ud;
    mark(r, rc, err);
    if (st)
        r->stats = *st;
}
static void cb_run(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    res *r = ud;
    mark(r, rc, err);
    r->run = bt_run_dup(run);
}
static void cb_runs(void *ud, int rc, const bt_error *err, bt_run *const *runs, size_t n)
{
    res *r = ud;
    mark(r, rc, err);
    r->count = (int64_t)n;
    if (n)
        r->run = bt_run_dup(runs[0]);
}
static void cb_step(void *ud, int rc, const bt_error *err, const bt_step *st)
{
    res *r = ud;
    mark(r, rc, err);
    r->step = bt_step_dup(st);
}
static void cb_steps(void *ud, int rc, const bt_error *err, bt_step *const *steps, size_t n)
{
    res *r = ud;
    mark(r, rc, err);
    r->count = (int64_t)n;
    if (n)
        r->step = bt_step_dup(steps[n - 1]);
}
static void cb_event(void *ud, int rc, const bt_error *err, const bt_event *e)
{
    res *r = ud;
    mark(r, rc, err);
    r->event = bt_event_dup(e);
}
static void cb_events(void *ud, int rc, const bt_error *err, bt_event *const *evs, size_t n)
{
    res *r = ud;
    mark(r, rc, err);
    r->n = n;
    r->events = bt_xcalloc(n + 1, sizeof *r->events);
    for (size_t i = 0; i < n; i++)
        r->events[i] = bt_event_dup(evs[i]);
}
static void cb_worker(void *ud, int rc, const bt_error *err, const bt_worker *w)
{
    res *r = ud;
    mark(r, rc, err);
    r->worker = bt_worker_dup(w);
}
static void cb_workers(void *ud, int rc, const bt_error *err, bt_worker *const *ws, size_t n)
{
    res *r = ud;
    mark(r, rc, err);
    r->count = (int64_t)n;
    if (n)
        r->worker = bt_worker_dup(ws[n - 1]);
}
static void cb_approval(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    res *r = ud;
    mark(r, rc, err);
    r->approval = bt_approval_dup(a);
}
static void cb_approvals(void *ud, int rc, const bt_error *err, bt_approval *const *l, size_t n)
{
    res *r = ud;
    mark(r, rc, err);
    r->count = (int64_t)n;
}
static void cb_lock(void *ud, int rc, const bt_error *err, const bt_lock *holder)
{
    res *r = ud;
    mark(r, rc, err);
    if (holder)
        snprintf(r->holder_owner, sizeof r->holder_owner, "%s", holder->owner);
}

static void cb_spend(void *ud, int rc, const bt_error *err, const bt_spend *sp)
{
    res *r = ud;
    mark(r, rc, err);
    if (rc == 0) {
        assert_non_null(sp);
        r->spend = *sp;
    } else {
        assert_null(sp);
    }
}

/* Shorthands. Each returns the result by value; the caller res_free()s it. */
static bt_task_input input(const char *title, const char *key, int32_t prio)
{
    bt_task_input in = {.source = "api", .title = title, .dedupe_key = key, .priority = prio};
    return in;
}

static res do_create(fx *f, const bt_task_input *in)
{
    res r = {0};
    bt_store_task_create(f->s, in, cb_create, &r);
    wait_for(f, &r);
    return r;
}

/* Creates and returns the task id (asserting success). */
static void mk(fx *f, const char *title, const char *key, int32_t prio, char id[BT_ID_LEN + 1])
{
    bt_task_input in = input(title, key, prio);
    res r = do_create(f, &in);
    if (r.rc)
        fail_msg("create: %s", r.err.msg);
    assert_true(r.created);
    snprintf(id, BT_ID_LEN + 1, "%s", r.task->id);
    res_free(&r);
}

static res do_get(fx *f, const char *id)
{
    res r = {0};
    bt_store_task_get(f->s, id, cb_task, &r);
    wait_for(f, &r);
    return r;
}

static bt_task_status status_of(fx *f, const char *id)
{
    res r = do_get(f, id);
    assert_int_equal(r.rc, 0);
    bt_task_status s = r.task->status;
    res_free(&r);
    return s;
}

static res do_claim(fx *f, const char *owner, int max, int64_t lease_ms)
{
    res r = {0};
    bt_claim_opts o = {.owner = owner, .lease_ms = lease_ms, .max = max};
    bt_store_claim(f->s, &o, cb_tasks, &r);
    wait_for(f, &r);
    return r;
}

/* A claim of one task (task_id), or of any ready task when task_id is NULL. */
static res do_claim_id(fx *f, const char *owner, const char *task_id, int max)
{
    res r = {0};
    bt_claim_opts o = {.owner = owner, .lease_ms = 60000, .max = max, .task_id = task_id};
    bt_store_claim(f->s, &o, cb_tasks, &r);
    wait_for(f, &r);
    return r;
}

static res do_transition(fx *f, const char *id, bt_task_status to, const char *reason)
{
    res r = {0};
    bt_store_task_transition(f->s, id, to, reason, cb_task, &r);
    wait_for(f, &r);
    return r;
}

static res do_complete(fx *f, const char *id, const char *owner, int64_t fencing)
{
    res r = {0};
    json_t *result = json_pack("{s:s}", "summary", "done");
    bt_store_complete(f->s, id, owner, fencing, result, cb_task, &r);
    json_decref(result);
    wait_for(f, &r);
    return r;
}

static res do_fail(fx *f, const char *id, const char *owner, int64_t fencing, const char *error,
                   bool retryable)
{
    res r = {0};
    bt_store_fail(f->s, id, owner, fencing, error, retryable, cb_fail, &r);
    wait_for(f, &r);
    return r;
}

static res do_events(fx *f, const bt_event_filter *flt)
{
    res r = {0};
    bt_store_event_read(f->s, flt, cb_events, &r);
    wait_for(f, &r);
    return r;
}

static int64_t last_seq(fx *f)
{
    res r = {0};
    bt_store_event_last_seq(f->s, cb_count, &r);
    wait_for(f, &r);
    assert_int_equal(r.rc, 0);
    return r.count;
}

static res do_count_op(fx *f, void (*op)(bt_store *, bt_store_count_cb, void *))
{
    res r = {0};
    op(f->s, cb_count, &r);
    wait_for(f, &r);
    return r;
}

/* ---------------------------------------------------------------------------------
 * Tests.
 */
static void test_create_dedupe(void **state)
{
    fx *f = *state;
    json_t *labels = json_pack("[s,s]", "ai-ready", "backend");
    json_t *meta = json_pack("{s:i}", "issue_number", 12);
    bt_task_input in = {.source = "github",
                        .external_id = "12",
                        .dedupe_key = "github:o/r#12",
                        .identifier = "o/r#12",
                        .project = "BACKEND",
                        .title = "Fix the thing",
                        .body = "details",
                        .labels = labels,
                        .meta = meta,
                        .priority = 2};
    res a = do_create(f, &in);
    assert_int_equal(a.rc, 0);
    assert_true(a.created);
    assert_int_equal(strlen(a.task->id), BT_ID_LEN);
    assert_string_equal(a.task->identifier, "o/r#12");
    assert_int_equal(a.task->status, BT_TASK_PENDING);
    assert_int_equal(a.task->max_attempts, 2); /* seed 002 default */
    assert_int_equal(a.task->created_at, T0);
    assert_int_equal(json_array_size(a.task->labels), 2);
    assert_int_equal(json_integer_value(json_object_get(a.task->meta, "issue_number")), 12);

    /* Same key while open: the existing task, created=false, nothing new. */
    in.title = "a different title";
    res b = do_create(f, &in);
    assert_int_equal(b.rc, 0);
    assert_false(b.created);
    assert_string_equal(b.task->id, a.task->id);
    assert_string_equal(b.task->title, "Fix the thing");

    /* Once terminal, the key may be used again. */
    res c = do_transition(f, a.task->id, BT_TASK_CANCELLED, "dup");
    assert_int_equal(c.rc, 0);
    res d = do_create(f, &in);
    assert_int_equal(d.rc, 0);
    assert_true(d.created);
    assert_string_not_equal(d.task->id, a.task->id);

    /* get_by_key prefers the open one. */
    res e = {0};
    bt_store_task_get_by_key(f->s, "github:o/r#12", cb_task, &e);
    wait_for(f, &e);
    assert_int_equal(e.rc, 0);
    assert_string_equal(e.task->id, d.task->id);

    /* Defaults: identifier = id, unset priority, draft. */
    bt_task_input dr = input("draft one", NULL, BT_PRIORITY_NONE);
    dr.draft = true;
    dr.max_attempts = 5;
    res g = do_create(f, &dr);
    assert_int_equal(g.rc, 0);
    assert_string_equal(g.task->identifier, g.task->id);
    assert_int_equal(g.task->status, BT_TASK_DRAFT);
    assert_int_equal(g.task->max_attempts, 5);
    json_t *j = bt_task_to_json(g.task);
    assert_true(json_is_null(json_object_get(j, "priority")));
    assert_string_equal(json_string_value(json_object_get(j, "status")), "draft");
    assert_string_equal(json_string_value(json_object_get(j, "created_at")),
                        "2023-11-14T22:13:20.000Z");
    json_decref(j);

    /* Bad input: clear error, nothing stored. */
    bt_task_input bad = input("", NULL, 0);
    res h = do_create(f, &bad);
    assert_int_equal(h.rc, BT_EINVAL);
    assert_non_null(strstr(h.err.msg, "title"));
    res miss = do_get(f, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert_int_equal(miss.rc, BT_ENOENT);

    json_decref(labels);
    json_decref(meta);
    res_free(&a), res_free(&b), res_free(&c), res_free(&d), res_free(&e), res_free(&g);
    res_free(&h), res_free(&miss);
}

static void test_list_filters_cursor(void **state)
{
    fx *f = *state;
    char ids[7][BT_ID_LEN + 1];
    for (int i = 0; i < 7; i++) {
        char title[32];
        snprintf(title, sizeof title, "task %d%s", i, i == 3 ? " NEEDLE" : "");
        json_t *labels = json_pack("[s]", i % 2 ? "odd" : "even");
        bt_task_input in = input(title, NULL, BT_PRIORITY_NONE);
        in.labels = labels;
        in.project = i < 4 ? "A" : "B";
        in.source = i == 6 ? "cli" : "api";
        res r = do_create(f, &in);
        assert_int_equal(r.rc, 0);
        snprintf(ids[i], sizeof ids[i], "%s", r.task->id);
        res_free(&r);
        json_decref(labels);
    }
    res t = do_transition(f, ids[0], BT_TASK_CANCELLED, NULL);
    res_free(&t);

    /* Pagination: 3 + 3 + 1, oldest first, cursors chain, no overlap. */
    bt_task_filter flt = {.limit = 3};
    char *cursor = NULL;
    int seen = 0;
    for (int page = 0; page < 3; page++) {
        flt.cursor = cursor;
        res r = {0};
        bt_store_task_list(f->s, &flt, cb_tasks, &r);
        wait_for(f, &r);
        assert_int_equal(r.rc, 0);
        for (size_t i = 0; i < r.n; i++)
            assert_string_equal(r.tasks[i]->id, ids[seen++]);
        free(cursor);
        cursor = bt_xstrdup(r.cursor);
        if (page < 2)
            assert_non_null(cursor);
        else
            assert_null(cursor);
        res_free(&r);
    }
    assert_int_equal(seen, 7);

    struct {
        bt_task_filter flt;
        size_t want;
    } cases[] = {
        {{.status_mask = 1u << BT_TASK_PENDING}, 6},
        {{.status_mask = 1u << BT_TASK_CANCELLED}, 1},
        {{.project = "A"}, 4},
        {{.source = "cli"}, 1},
        {{.label = "odd"}, 3},
        {{.text = "needle"}, 1},
        {{.project = "B", .label = "even"}, 2},
        {{.newest_first = true, .limit = 1}, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        res r = {0};
        bt_store_task_list(f->s, &cases[c].flt, cb_tasks, &r);
        wait_for(f, &r);
        assert_int_equal(r.rc, 0);
        if (r.n != cases[c].want)
            fail_msg("filter case %zu: want %zu tasks, got %zu", c, cases[c].want, r.n);
        if (cases[c].flt.newest_first)
            assert_string_equal(r.tasks[0]->id, ids[6]);
        res_free(&r);
    }
    bt_task_filter badf = {.limit = 5000};
    res bad = {0};
    bt_store_task_list(f->s, &badf, cb_tasks, &bad);
    wait_for(f, &bad);
    assert_int_equal(bad.rc, BT_EINVAL);
    res_free(&bad);
}

static void test_update_rules(void **state)
{
    fx *f = *state;
    char id[BT_ID_LEN + 1];
    mk(f, "old", NULL, 5, id);
    json_t *meta = json_pack("{s:s}", "branch", "x");
    bt_task_patch p = {.title = "new", .meta = meta, .set_priority = true, .priority = 1};
    res r = {0};
    bt_store_task_update(f->s, id, &p, cb_task, &r);
    wait_for(f, &r);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.task->title, "new");
    assert_int_equal(r.task->priority, 1);
    assert_string_equal(json_string_value(json_object_get(r.task->meta, "branch")), "x");
    res_free(&r);
    res g = do_get(f, id);
    assert_string_equal(g.task->title, "new");
    res_free(&g);

    /* Claimed: editing refused, nothing changed. */
    res c = do_claim(f, "w1", 1, 60000);
    assert_int_equal(c.n, 1);
    res_free(&c);
    bt_task_patch p2 = {.title = "sneaky"};
    bt_store_task_update(f->s, id, &p2, cb_task, &r);
    wait_for(f, &r);
    assert_int_equal(r.rc, BT_ESTATE);
    res_free(&r);
    g = do_get(f, id);
    assert_string_equal(g.task->title, "new");
    res_free(&g);
    json_decref(meta);
}

static void test_transitions(void **state)
{
    fx *f = *state;
    /* The table itself. */
    struct {
        bt_task_status from, to;
    } legal[] = {
        {BT_TASK_DRAFT, BT_TASK_PENDING},         {BT_TASK_DRAFT, BT_TASK_CANCELLED},
        {BT_TASK_PENDING, BT_TASK_IN_PROGRESS},   {BT_TASK_PENDING, BT_TASK_CANCELLED},
        {BT_TASK_IN_PROGRESS, BT_TASK_COMPLETED}, {BT_TASK_IN_PROGRESS, BT_TASK_FAILED},
        {BT_TASK_IN_PROGRESS, BT_TASK_PENDING},   {BT_TASK_IN_PROGRESS, BT_TASK_CANCELLED},
        {BT_TASK_FAILED, BT_TASK_PENDING},        {BT_TASK_CANCELLED, BT_TASK_PENDING},
    };
    int nlegal = 0;
    for (int a = 0; a < BT_TASK__COUNT; a++)
        for (int b = 0; b < BT_TASK__COUNT; b++)
            nlegal += bt_task_transition_allowed((bt_task_status)a, (bt_task_status)b);
    assert_int_equal(nlegal, (int)(sizeof legal / sizeof legal[0]));
    for (size_t i = 0; i < sizeof legal / sizeof legal[0]; i++)
        assert_true(bt_task_transition_allowed(legal[i].from, legal[i].to));
    for (int i = 0; i < BT_TASK__COUNT; i++) {
        bt_task_status back;
        assert_int_equal(bt_task_status_parse(bt_task_status_name((bt_task_status)i), &back), 0);
        assert_int_equal((int)back, i);
    }

    /* Administrative transitions through the store. */
    bt_task_input in = input("d", NULL, BT_PRIORITY_NONE);
    in.draft = true;
    res d = do_create(f, &in);
    char id[BT_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", d.task->id);
    res_free(&d);
    /* draft cannot be claimed or completed */
    res c = do_claim(f, "w", 10, 1000);
    assert_int_equal(c.n, 0);
    res_free(&c);
    res r = do_transition(f, id, BT_TASK_COMPLETED, NULL);
    assert_int_equal(r.rc, BT_ESTATE);
    assert_non_null(strstr(r.err.msg, "draft"));
    assert_non_null(strstr(r.err.msg, "completed"));
    res_free(&r);
    assert_int_equal(status_of(f, id), BT_TASK_DRAFT);
    r = do_transition(f, id, BT_TASK_PENDING, "approved by ann"); /* approve */
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.task->status, BT_TASK_PENDING);
    res_free(&r);
    r = do_transition(f, id, BT_TASK_PENDING, NULL); /* pending -> pending */
    assert_int_equal(r.rc, BT_ESTATE);
    res_free(&r);
    /* claim, then cancel in progress: lease dropped, reason kept */
    c = do_claim(f, "w", 1, 1000);
    assert_int_equal(c.n, 1);
    int64_t fence = c.tasks[0]->fencing;
    res_free(&c);
    r = do_transition(f, id, BT_TASK_CANCELLED, "no longer needed");
    assert_int_equal(r.rc, 0);
    assert_null(r.task->lease_owner);
    assert_string_equal(r.task->error, "no longer needed");
    res_free(&r);
    /* the old holder's completion is stale now */
    r = do_complete(f, id, "w", fence);
    assert_int_equal(r.rc, BT_ESTALE);
    res_free(&r);
    /* cancelled -> completed illegal; cancelled -> pending (manual retry) legal */
    r = do_transition(f, id, BT_TASK_COMPLETED, NULL);
    assert_int_equal(r.rc, BT_ESTATE);
    assert_non_null(strstr(r.err.msg, "cancelled"));
    res_free(&r);
    r = do_transition(f, id, BT_TASK_PENDING, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.task->attempts, 0);
    assert_null(r.task->error);
    res_free(&r);
    /* complete it, then every transition out of completed is refused */
    c = do_claim(f, "w", 1, 1000);
    res done = do_complete(f, id, "w", c.tasks[0]->fencing);
    assert_int_equal(done.rc, 0);
    assert_int_equal(done.task->status, BT_TASK_COMPLETED);
    assert_string_equal(json_string_value(json_object_get(done.task->result, "summary")), "done");
    res_free(&c), res_free(&done);
    for (int to = 0; to < BT_TASK__COUNT; to++) {
        r = do_transition(f, id, (bt_task_status)to, NULL);
        assert_int_equal(r.rc, BT_ESTATE);
        res_free(&r);
    }
    assert_int_equal(status_of(f, id), BT_TASK_COMPLETED);
    /* queue-only moves are not administrative */
    char id2[BT_ID_LEN + 1];
    mk(f, "p", NULL, 0, id2);
    r = do_transition(f, id2, BT_TASK_IN_PROGRESS, NULL);
    assert_int_equal(r.rc, BT_ESTATE);
    res_free(&r);
    assert_int_equal(status_of(f, id2), BT_TASK_PENDING);
}

static void test_queue_order(void **state)
{
    fx *f = *state;
    char none1[BT_ID_LEN + 1], p5[BT_ID_LEN + 1], p1a[BT_ID_LEN + 1], p1b[BT_ID_LEN + 1],
        p1c[BT_ID_LEN + 1], none2[BT_ID_LEN + 1];
    mk(f, "none1", NULL, BT_PRIORITY_NONE, none1);
    f->now += 10;
    mk(f, "p5", NULL, 5, p5);
    f->now += 10;
    /* same priority and time: identifier decides */
    bt_task_input in = input("b", NULL, 1);
    in.identifier = "ZZ-2";
    res r = do_create(f, &in);
    snprintf(p1b, sizeof p1b, "%s", r.task->id);
    res_free(&r);
    in.identifier = "AA-1";
    r = do_create(f, &in);
    snprintf(p1a, sizeof p1a, "%s", r.task->id);
    res_free(&r);
    f->now += 10;
    mk(f, "p1c", NULL, 1, p1c);
    mk(f, "none2", NULL, BT_PRIORITY_NONE, none2);
    const char *want[] = {p1a, p1b, p1c, p5, none1, none2};
    /* one by one */
    for (int i = 0; i < 3; i++) {
        res c = do_claim(f, "w", 1, 1000);
        assert_int_equal(c.n, 1);
        assert_string_equal(c.tasks[0]->id, want[i]);
        res_free(&c);
    }
    /* batched: the rest in order */
    res c = do_claim(f, "w", 10, 1000);
    assert_int_equal(c.n, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(c.tasks[i]->id, want[3 + i]);
    res_free(&c);
    c = do_claim(f, "w", 10, 1000);
    assert_int_equal(c.n, 0);
    res_free(&c);
}

/* `baton run` claims the task it created: a claim naming a task id takes that task and
 * nothing else, whatever is ahead of it in the queue, and only when it is ready. */
static void test_claim_task_id(void **state)
{
    fx *f = *state;
    char head[BT_ID_LEN + 1], mid[BT_ID_LEN + 1], tail[BT_ID_LEN + 1];
    mk(f, "head", NULL, 0, head);
    f->now += 10;
    mk(f, "mid", NULL, 5, mid);
    f->now += 10;
    mk(f, "tail", NULL, BT_PRIORITY_NONE, tail); /* last in queue order */

    /* exactly that task, even with room for more and two tasks ahead of it */
    res c = do_claim_id(f, "run:1", tail, 10);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.tasks[0]->id, tail);
    assert_int_equal(c.tasks[0]->status, BT_TASK_IN_PROGRESS);
    assert_string_equal(c.tasks[0]->lease_owner, "run:1");
    assert_int_equal(c.tasks[0]->attempts, 1);
    int64_t fence = c.tasks[0]->fencing;
    res_free(&c);
    assert_int_equal(status_of(f, head), BT_TASK_PENDING);
    assert_int_equal(status_of(f, mid), BT_TASK_PENDING);
    /* its task.status event was written like any claim's */
    bt_event_filter ef = {.task_id = tail, .type_prefix = "task.status"};
    res ev = do_events(f, &ef);
    assert_int_equal(ev.n, 1);
    assert_string_equal(json_string_value(json_object_get(ev.events[0]->data, "to")),
                        "in_progress");
    res_free(&ev);

    /* in_progress: not claimed again, not by its holder nor by anyone else */
    c = do_claim_id(f, "run:1", tail, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.n, 0);
    res_free(&c);
    c = do_claim_id(f, "daemon", tail, 1);
    assert_int_equal(c.n, 0);
    res_free(&c);
    /* completed: not claimed */
    res done = do_complete(f, tail, "run:1", fence);
    assert_int_equal(done.rc, 0);
    res_free(&done);
    c = do_claim_id(f, "run:1", tail, 1);
    assert_int_equal(c.n, 0);
    res_free(&c);
    assert_int_equal(status_of(f, tail), BT_TASK_COMPLETED);

    /* draft: not claimed (it awaits approval), and then claimable once approved */
    bt_task_input in = input("draft", NULL, BT_PRIORITY_NONE);
    in.draft = true;
    res d = do_create(f, &in);
    char draft[BT_ID_LEN + 1];
    snprintf(draft, sizeof draft, "%s", d.task->id);
    res_free(&d);
    c = do_claim_id(f, "run:2", draft, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.n, 0);
    res_free(&c);
    assert_int_equal(status_of(f, draft), BT_TASK_DRAFT);
    res r = do_transition(f, draft, BT_TASK_PENDING, NULL);
    assert_int_equal(r.rc, 0);
    res_free(&r);
    c = do_claim_id(f, "run:2", draft, 1);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.tasks[0]->id, draft);

    /* not yet ready (retry backoff): not claimed before next_attempt_at, claimed at it */
    res fl = do_fail(f, draft, "run:2", c.tasks[0]->fencing, "flaky", true);
    assert_int_equal(fl.outcome, BT_FAIL_RETRY);
    int64_t ready_at = fl.task->next_attempt_at;
    assert_true(ready_at > f->now);
    res_free(&c), res_free(&fl);
    f->now = ready_at - 1;
    c = do_claim_id(f, "run:2", draft, 1);
    assert_int_equal(c.n, 0);
    res_free(&c);
    assert_int_equal(status_of(f, draft), BT_TASK_PENDING);
    f->now = ready_at;
    c = do_claim_id(f, "run:2", draft, 1);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.tasks[0]->id, draft);
    assert_int_equal(c.tasks[0]->attempts, 2);
    res_free(&c);

    /* the other filters still apply; an unknown id claims nothing; "" is a caller error */
    bt_claim_opts o = {.owner = "run:3", .lease_ms = 1000, .task_id = head, .project = "other"};
    bt_store_claim(f->s, &o, cb_tasks, &c);
    wait_for(f, &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.n, 0);
    res_free(&c);
    c = do_claim_id(f, "run:3", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.n, 0);
    res_free(&c);
    c = do_claim_id(f, "run:3", "", 1);
    assert_int_equal(c.rc, BT_EINVAL);
    assert_non_null(strstr(c.err.msg, "id"));
    res_free(&c);
    assert_int_equal(status_of(f, head), BT_TASK_PENDING);

    /* task_id NULL: the queue as before, head first */
    c = do_claim_id(f, "daemon", NULL, 10);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.tasks[0]->id, head);
    assert_string_equal(c.tasks[1]->id, mid);
    res_free(&c);
}

static void test_claim_lease_fencing(void **state)
{
    fx *f = *state;
    char id[BT_ID_LEN + 1];
    mk(f, "t", NULL, 0, id);
    res a = do_claim(f, "w1", 5, 30000);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.n, 1);
    bt_task *t = a.tasks[0];
    assert_int_equal(t->status, BT_TASK_IN_PROGRESS);
    assert_string_equal(t->lease_owner, "w1");
    assert_int_equal(t->lease_expires_at, T0 + 30000);
    assert_int_equal(t->attempts, 1);
    assert_int_equal(t->started_at, T0);
    int64_t f1 = t->fencing;
    assert_true(f1 > 0);
    /* never handed out twice */
    res b = do_claim(f, "w2", 5, 30000);
    assert_int_equal(b.n, 0);
    res_free(&b);
    /* bad claims */
    bt_claim_opts bad = {.owner = "", .lease_ms = 1};
    bt_store_claim(f->s, &bad, cb_tasks, &b);
    wait_for(f, &b);
    assert_int_equal(b.rc, BT_EINVAL);
    res_free(&b);

    /* lease expires, w2 re-claims: a greater token */
    f->now += 30001;
    res q = do_count_op(f, bt_store_requeue_expired);
    assert_int_equal(q.count, 1);
    res_free(&q);
    b = do_claim(f, "w2", 1, 30000);
    assert_int_equal(b.n, 1);
    int64_t f2 = b.tasks[0]->fencing;
    assert_true(f2 > f1);
    assert_int_equal(b.tasks[0]->attempts, 2);

    /* w1's late reports are stale and change nothing */
    res s1 = do_complete(f, id, "w1", f1);
    assert_int_equal(s1.rc, BT_ESTALE);
    assert_non_null(strstr(s1.err.msg, "fencing"));
    res s2 = do_fail(f, id, "w1", f1, "late", true);
    assert_int_equal(s2.rc, BT_ESTALE);
    res s3 = {0};
    bt_store_release(f->s, id, "w1", f1, "bye", cb_task, &s3);
    wait_for(f, &s3);
    assert_int_equal(s3.rc, BT_ESTALE);
    res s4 = {0};
    bt_store_heartbeat(f->s, id, "w1", f1, 1000, cb_task, &s4);
    wait_for(f, &s4);
    assert_int_equal(s4.rc, BT_ESTALE);
    /* right owner, wrong token: stale too */
    res s5 = do_complete(f, id, "w2", f1);
    assert_int_equal(s5.rc, BT_ESTALE);
    res g = do_get(f, id);
    assert_int_equal(g.task->status, BT_TASK_IN_PROGRESS);
    assert_string_equal(g.task->lease_owner, "w2");
    assert_int_equal(g.task->fencing, f2);
    assert_null(g.task->result);
    /* the holder completes */
    res ok = do_complete(f, id, "w2", f2);
    assert_int_equal(ok.rc, 0);
    assert_int_equal(ok.task->finished_at, f->now);
    res again = do_complete(f, id, "w2", f2);
    assert_int_equal(again.rc, BT_ESTALE);
    res_free(&a), res_free(&b), res_free(&s1), res_free(&s2), res_free(&s3), res_free(&s4);
    res_free(&s5), res_free(&g), res_free(&ok), res_free(&again);
}

static void test_heartbeat_release(void **state)
{
    fx *f = *state;
    char id[BT_ID_LEN + 1];
    mk(f, "t", NULL, 0, id);
    res c = do_claim(f, "w", 1, 1000);
    int64_t fence = c.tasks[0]->fencing;
    f->now += 900;
    res h = {0};
    bt_store_heartbeat(f->s, id, "w", fence, 5000, cb_task, &h);
    wait_for(f, &h);
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.task->lease_expires_at, f->now + 5000);
    res_free(&h);
    /* past the original expiry, the extended lease holds */
    f->now += 1000;
    res q = do_count_op(f, bt_store_requeue_expired);
    assert_int_equal(q.count, 0);
    res_free(&q);
    /* release: back to pending, attempt handed back, claimable at once */
    res r = {0};
    bt_store_release(f->s, id, "w", fence, "shutting down", cb_task, &r);
    wait_for(f, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.task->status, BT_TASK_PENDING);
    assert_int_equal(r.task->attempts, 0);
    assert_null(r.task->lease_owner);
    res_free(&r);
    res c2 = do_claim(f, "w", 1, 1000);
    assert_int_equal(c2.n, 1);
    assert_true(c2.tasks[0]->fencing > fence);
    res_free(&c), res_free(&c2);
}

static void test_requeue_expired(void **state)
{
    fx *f = *state;
    char a[BT_ID_LEN + 1], b[BT_ID_LEN + 1];
    bt_task_input in = input("one attempt", NULL, 0);
    in.max_attempts = 1;
    res r = do_create(f, &in);
    snprintf(a, sizeof a, "%s", r.task->id);
    res_free(&r);
    mk(f, "two attempts", NULL, 1, b);
    res c = do_claim(f, "w", 2, 1000);
    assert_int_equal(c.n, 2);
    res_free(&c);
    f->now += 1000; /* exactly at expiry: still held */
    res q = do_count_op(f, bt_store_requeue_expired);
    assert_int_equal(q.count, 0);
    res_free(&q);
    f->now += 1;
    q = do_count_op(f, bt_store_requeue_expired);
    assert_int_equal(q.count, 2);
    res_free(&q);
    r = do_get(f, a);
    assert_int_equal(r.task->status, BT_TASK_FAILED); /* attempts exhausted */
    assert_string_equal(r.task->error, "lease expired");
    res_free(&r);
    r = do_get(f, b);
    assert_int_equal(r.task->status, BT_TASK_PENDING);
    res_free(&r);
    c = do_claim(f, "w2", 5, 1000); /* claimable again, at once */
    assert_int_equal(c.n, 1);
    assert_string_equal(c.tasks[0]->id, b);
    res_free(&c);
}

static void test_retry_schedule(void **state)
{
    fx *f = *state;
    /* formula: min(base * 2^(attempt-1), max), base 1000, max 5000 */
    int64_t want[] = {1000, 2000, 4000, 5000, 5000};
    for (int i = 0; i < 5; i++)
        assert_int_equal(bt_store_backoff_ms(f->s, i + 1), want[i]);
    bt_task_input in = input("flaky", NULL, 0);
    in.max_attempts = 4;
    res cr = do_create(f, &in);
    char id[BT_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", cr.task->id);
    res_free(&cr);
    for (int attempt = 1; attempt <= 4; attempt++) {
        res c = do_claim(f, "w", 1, 60000);
        assert_int_equal(c.n, 1);
        assert_int_equal(c.tasks[0]->attempts, attempt);
        char err[32];
        snprintf(err, sizeof err, "boom %d", attempt);
        res fl = do_fail(f, id, "w", c.tasks[0]->fencing, err, true);
        assert_int_equal(fl.rc, 0);
        if (attempt < 4) {
            assert_int_equal(fl.outcome, BT_FAIL_RETRY);
            assert_int_equal(fl.task->status, BT_TASK_PENDING);
            assert_int_equal(fl.task->next_attempt_at, f->now + want[attempt - 1]);
            /* not claimable before the backoff passes */
            f->now += want[attempt - 1] - 1;
            res none = do_claim(f, "w", 1, 60000);
            assert_int_equal(none.n, 0);
            res_free(&none);
            f->now += 1;
        } else {
            assert_int_equal(fl.outcome, BT_FAIL_FINAL);
            assert_int_equal(fl.task->status, BT_TASK_FAILED);
            assert_string_equal(fl.task->error, "boom 4");
            assert_int_equal(fl.task->finished_at, f->now);
        }
        res_free(&c), res_free(&fl);
    }
    /* not retryable: failed at once */
    char id2[BT_ID_LEN + 1];
    mk(f, "fatal", NULL, 0, id2);
    res c = do_claim(f, "w", 1, 60000);
    res fl = do_fail(f, id2, "w", c.tasks[0]->fencing, "permanent", false);
    assert_int_equal(fl.outcome, BT_FAIL_FINAL);
    assert_int_equal(fl.task->status, BT_TASK_FAILED);
    res_free(&c), res_free(&fl);
    /* manual retry resets attempts */
    res r = do_transition(f, id, BT_TASK_PENDING, "try again");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.task->attempts, 0);
    res_free(&r);
}

static void test_stats_cleanup_clear(void **state)
{
    fx *f = *state;
    char ids[5][BT_ID_LEN + 1];
    for (int i = 0; i < 5; i++)
        mk(f, "t", NULL, 0, ids[i]);
    bt_task_input dr = input("draft", NULL, 0);
    dr.draft = true;
    res d = do_create(f, &dr);
    res_free(&d);
    res c = do_claim(f, "w", 3, 60000); /* ids 0..2 */
    assert_int_equal(c.n, 3);
    f->now += 100;
    res x = do_complete(f, c.tasks[0]->id, "w", c.tasks[0]->fencing);
    res_free(&x);
    f->now += 200;
    x = do_fail(f, c.tasks[1]->id, "w", c.tasks[1]->fencing, "e", false);
    res_free(&x);
    f->now += 5000;
    x = do_transition(f, ids[3], BT_TASK_CANCELLED, NULL);
    res_free(&x);
    res st = {0};
    bt_store_task_stats(f->s, cb_stats, &st);
    wait_for(f, &st);
    assert_int_equal(st.rc, 0);
    assert_int_equal(st.stats.count[BT_TASK_DRAFT], 1);
    assert_int_equal(st.stats.count[BT_TASK_PENDING], 1);
    assert_int_equal(st.stats.count[BT_TASK_IN_PROGRESS], 1);
    assert_int_equal(st.stats.count[BT_TASK_COMPLETED], 1);
    assert_int_equal(st.stats.count[BT_TASK_FAILED], 1);
    assert_int_equal(st.stats.count[BT_TASK_CANCELLED], 1);
    assert_int_equal(st.stats.ready, 1);
    assert_true(st.stats.avg_duration_ms > 199.0 && st.stats.avg_duration_ms < 201.0);
    res_free(&st);

    /* a run on the completed task goes with it */
    res run = {0};
    bt_store_run_create(f->s, c.tasks[0]->id, "default", NULL, NULL, cb_run, &run);
    wait_for(f, &run);
    assert_int_equal(run.rc, 0);

    /* cleanup_stale: nothing is old enough yet */
    res cl = {0};
    bt_store_cleanup_stale(f->s, 10000, cb_count, &cl);
    wait_for(f, &cl);
    assert_int_equal(cl.count, 0);
    res_free(&cl);
    f->now += 5001; /* the failed task is now older than 10 s, the cancelled one is not */
    res cc = do_count_op(f, bt_store_clear_completed);
    assert_int_equal(cc.count, 1);
    res_free(&cc);
    res gone = {0};
    bt_store_run_get(f->s, run.run->id, cb_run, &gone);
    wait_for(f, &gone);
    assert_int_equal(gone.rc, BT_ENOENT);
    res_free(&gone);
    bt_store_cleanup_stale(f->s, 10000, cb_count, &cl);
    wait_for(f, &cl);
    assert_int_equal(cl.count, 1); /* the failed one; the cancelled is too recent */
    res_free(&cl);
    bt_store_cleanup_stale(f->s, 0, cb_count, &cl);
    wait_for(f, &cl);
    assert_int_equal(cl.count, 1); /* the cancelled one */
    res_free(&cl);
    assert_int_equal(status_of(f, ids[4]), BT_TASK_PENDING);
    res_free(&c), res_free(&run);
}

static void test_runs_steps(void **state)
{
    fx *f = *state;
    char id[BT_ID_LEN + 1];
    mk(f, "t", NULL, 0, id);
    json_t *stj = json_pack("{s:s}", "input", "x");
    res run = {0};
    bt_store_run_create(f->s, id, "default", "v1", stj, cb_run, &run);
    wait_for(f, &run);
    assert_int_equal(run.rc, 0);
    assert_int_equal(run.run->status, BT_RUN_RUNNING);
    assert_int_equal(run.run->iteration, 1);
    assert_string_equal(run.run->task_id, id);
    json_decref(stj);
    res bad = {0};
    bt_store_run_create(f->s, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "default", NULL, NULL, cb_run, &bad);
    wait_for(f, &bad);
    assert_int_equal(bad.rc, BT_ENOENT);
    res_free(&bad);

    res s1 = {0};
    bt_store_step_start(f->s, run.run->id, "implement", 1, 1, 1, "claude", "coder", cb_step, &s1);
    wait_for(f, &s1);
    assert_int_equal(s1.rc, 0);
    assert_int_equal(s1.step->status, BT_STEP_RUNNING);
    res s1b = {0}; /* idempotent */
    bt_store_step_start(f->s, run.run->id, "implement", 1, 1, 1, "claude", "coder", cb_step, &s1b);
    wait_for(f, &s1b);
    assert_string_equal(s1b.step->id, s1.step->id);
    res s0 = {0};
    bt_store_step_start(f->s, run.run->id, "plan", 1, 1, 0, "codex", "planner", cb_step, &s0);
    wait_for(f, &s0);

    bt_step_result sr = {.status = BT_STEP_SUCCEEDED,
                         .agent = "claude",
                         .output = "ok",
                         .tokens_in = 100,
                         .tokens_out = 50,
                         .cost_usd = 0.25};
    res fin = {0};
    bt_store_step_finish(f->s, s1.step->id, &sr, cb_step, &fin);
    wait_for(f, &fin);
    assert_int_equal(fin.rc, 0);
    assert_int_equal(fin.step->status, BT_STEP_SUCCEEDED);
    assert_string_equal(fin.step->output, "ok");
    res fin2 = {0};
    sr.tokens_in = 10, sr.tokens_out = 5, sr.cost_usd = 0.5;
    sr.status = BT_STEP_FAILED;
    bt_store_step_finish(f->s, s0.step->id, &sr, cb_step, &fin2);
    wait_for(f, &fin2);
    assert_int_equal(fin2.rc, 0);
    res again = {0};
    bt_store_step_finish(f->s, s0.step->id, &sr, cb_step, &again);
    wait_for(f, &again);
    assert_int_equal(again.rc, BT_ESTATE);

    res g = {0};
    bt_store_run_get(f->s, run.run->id, cb_run, &g);
    wait_for(f, &g);
    assert_int_equal(g.run->tokens_in, 110);
    assert_int_equal(g.run->tokens_out, 55);
    assert_true(g.run->cost_usd > 0.749 && g.run->cost_usd < 0.751);

    res sl = {0};
    bt_store_step_list(f->s, run.run->id, cb_steps, &sl);
    wait_for(f, &sl);
    assert_int_equal(sl.count, 2);
    assert_string_equal(sl.step->step_key, "implement"); /* seq order: plan, implement */

    bt_run_patch p = {.set_status = true, .status = BT_RUN_COMPLETED, .output = "final"};
    res u = {0};
    bt_store_run_update(f->s, run.run->id, &p, cb_run, &u);
    wait_for(f, &u);
    assert_int_equal(u.rc, 0);
    assert_int_equal(u.run->status, BT_RUN_COMPLETED);
    assert_int_equal(u.run->finished_at, f->now);
    assert_string_equal(u.run->output, "final");
    res rl = {0};
    bt_store_run_list(f->s, id, NULL, 10, cb_runs, &rl);
    wait_for(f, &rl);
    assert_int_equal(rl.count, 1);
    res_free(&run), res_free(&s1), res_free(&s1b), res_free(&s0), res_free(&fin);
    res_free(&fin2), res_free(&again), res_free(&g), res_free(&sl), res_free(&u), res_free(&rl);
}

/* Spend helpers: a task of a project with one run; steps finished at the clock's time. */
static void mk_in_project(fx *f, const char *title, const char *project, char id[BT_ID_LEN + 1],
                          char run_id[BT_ID_LEN + 1])
{
    bt_task_input in = input(title, NULL, 0);
    in.project = project;
    res r = do_create(f, &in);
    assert_int_equal(r.rc, 0);
    snprintf(id, BT_ID_LEN + 1, "%s", r.task->id);
    res_free(&r);
    res run = {0};
    bt_store_run_create(f->s, id, "default", NULL, NULL, cb_run, &run);
    wait_for(f, &run);
    assert_int_equal(run.rc, 0);
    snprintf(run_id, BT_ID_LEN + 1, "%s", run.run->id);
    res_free(&run);
}

/* Starts a step; when status is not running, finishes it with cost and tokens. */
static void spend_step(fx *f, const char *run_id, const char *key, bt_step_status status,
                       double cost, int64_t tin, int64_t tout)
{
    res st = {0};
    bt_store_step_start(f->s, run_id, key, 1, 1, 0, "claude", "coder", cb_step, &st);
    wait_for(f, &st);
    assert_int_equal(st.rc, 0);
    if (status != BT_STEP_RUNNING) {
        bt_step_result sr = {
            .status = status, .tokens_in = tin, .tokens_out = tout, .cost_usd = cost};
        res fin = {0};
        bt_store_step_finish(f->s, st.step->id, &sr, cb_step, &fin);
        wait_for(f, &fin);
        assert_int_equal(fin.rc, 0);
        res_free(&fin);
    }
    res_free(&st);
}

static bt_spend do_spend(fx *f, const char *task_id, const char *project, int64_t since_ms)
{
    res r = {0};
    bt_spend_query q = {.task_id = task_id, .project = project, .since_ms = since_ms};
    bt_store_spend(f->s, &q, cb_spend, &r);
    wait_for(f, &r);
    if (r.rc)
        fail_msg("spend: %s", r.err.msg);
    return r.spend;
}

#define assert_usd(got, want) assert_true((got) > (want)-1e-9 && (got) < (want) + 1e-9)

/* bt_store_spend: sums finished steps by task, project and finish time, on both
 * backends alike; running steps do not count; reads see writes issued before them. */
static void test_spend(void **state)
{
    fx *f = *state;
    char a[BT_ID_LEN + 1], ra[BT_ID_LEN + 1], b[BT_ID_LEN + 1], rb[BT_ID_LEN + 1];
    char c[BT_ID_LEN + 1], rc_[BT_ID_LEN + 1], d[BT_ID_LEN + 1], rd[BT_ID_LEN + 1];

    /* Nothing yet: zeros, not an error. */
    bt_spend z = do_spend(f, NULL, NULL, 0);
    assert_usd(z.cost_usd, 0.0);
    assert_int_equal(z.steps, 0);

    mk_in_project(f, "a", "BACKEND", a, ra);
    mk_in_project(f, "b", "BACKEND", b, rb);
    mk_in_project(f, "c", "FRONTEND", c, rc_);
    mk_in_project(f, "d", NULL, d, rd);
    /* Yesterday (before T0 + 1h): */
    spend_step(f, ra, "plan", BT_STEP_SUCCEEDED, 0.25, 100, 10);
    spend_step(f, rb, "plan", BT_STEP_FAILED, 1.5, 200, 20);
    f->now += 3600 * 1000; /* today from here */
    int64_t today = f->now;
    spend_step(f, ra, "implement", BT_STEP_SUCCEEDED, 2.0, 1000, 100);
    spend_step(f, ra, "review", BT_STEP_CANCELLED, 0.125, 10, 1);
    spend_step(f, ra, "test", BT_STEP_RUNNING, 0, 0, 0); /* not finished: not counted */
    spend_step(f, rc_, "implement", BT_STEP_SUCCEEDED, 4.0, 400, 40);
    spend_step(f, rd, "implement", BT_STEP_SKIPPED, 0.5, 5, 5);

    bt_spend t = do_spend(f, a, NULL, 0);
    assert_usd(t.cost_usd, 2.375);
    assert_int_equal(t.tokens_in, 1110);
    assert_int_equal(t.tokens_out, 111);
    assert_int_equal(t.steps, 3);

    bt_spend p = do_spend(f, NULL, "BACKEND", 0);
    assert_usd(p.cost_usd, 3.875);
    assert_int_equal(p.tokens_in, 1310);
    assert_int_equal(p.steps, 4);
    p = do_spend(f, NULL, "FRONTEND", 0);
    assert_usd(p.cost_usd, 4.0);
    assert_int_equal(p.steps, 1);
    p = do_spend(f, NULL, "NOPE", 0);
    assert_usd(p.cost_usd, 0.0);
    assert_int_equal(p.steps, 0);

    bt_spend all = do_spend(f, NULL, NULL, 0);
    assert_usd(all.cost_usd, 8.375);
    assert_int_equal(all.tokens_in, 1715);
    assert_int_equal(all.tokens_out, 176);
    assert_int_equal(all.steps, 6);
    res rnull = {0}; /* a NULL query is "everything" */
    bt_store_spend(f->s, NULL, cb_spend, &rnull);
    wait_for(f, &rnull);
    assert_int_equal(rnull.rc, 0);
    assert_usd(rnull.spend.cost_usd, 8.375);

    /* since: finished at or after the bound (inclusive). */
    bt_spend day = do_spend(f, NULL, NULL, today);
    assert_usd(day.cost_usd, 6.625);
    assert_int_equal(day.steps, 4);
    assert_int_equal(do_spend(f, NULL, NULL, today + 1).steps, 0);
    bt_spend td = do_spend(f, a, NULL, today);
    assert_usd(td.cost_usd, 2.125);
    assert_int_equal(td.steps, 2);
    bt_spend pd = do_spend(f, NULL, "BACKEND", today);
    assert_usd(pd.cost_usd, 2.125);
    /* Filters combine: task a is not in FRONTEND. */
    assert_int_equal(do_spend(f, a, "FRONTEND", 0).steps, 0);
    assert_int_equal(do_spend(f, a, "BACKEND", 0).steps, 3);
    assert_int_equal(do_spend(f, "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL, 0).steps, 0);

    /* Read-your-writes: a spend issued right after a step_finish (same turn, no wait)
     * includes it, and its callback comes after the write's. */
    res st = {0};
    bt_store_step_start(f->s, rb, "implement", 1, 1, 1, "codex", "coder", cb_step, &st);
    wait_for(f, &st);
    bt_step_result sr = {.status = BT_STEP_SUCCEEDED, .cost_usd = 0.75, .tokens_in = 7};
    res fin = {0}, sp = {0};
    bt_spend_query q = {.task_id = b};
    bt_store_step_finish(f->s, st.step->id, &sr, cb_step, &fin);
    bt_store_spend(f->s, &q, cb_spend, &sp);
    assert_int_equal(fin.called + sp.called, 0);
    wait_for(f, &sp);
    assert_int_equal(fin.called, 1);
    assert_int_equal(fin.rc, 0);
    assert_int_equal(sp.rc, 0);
    assert_usd(sp.spend.cost_usd, 2.25);
    assert_int_equal(sp.spend.tokens_in, 207);
    assert_int_equal(sp.spend.steps, 2);
    res_free(&st), res_free(&fin), res_free(&sp), res_free(&rnull);

    /* Spend is history: it survives a reopen. */
    fx_close(f);
    fx_open(f);
    assert_usd(do_spend(f, NULL, "BACKEND", 0).cost_usd, 4.625);
}

/* ---------------------------------------------------------------------------------
 * Usage (bt_store_usage): a copy of the rows, so the test can look them up after the
 * callback.
 */
#define DAY  86400000LL
#define HOUR 3600000LL
#define UMAX 32

typedef struct urow {
    int64_t at;                  /* day_ms or bucket_ms */
    char project[32], agent[32]; /* "-" = NULL */
    int status;
    int64_t steps, failed, tin, tout, dur, created, finished;
    double cost;
} urow;

typedef struct usage_res {
    int called, rc;
    bt_error err;
    size_t ns, nd, nh;
    urow steps[UMAX], day[UMAX], hour[UMAX];
} usage_res;

static void copy_runs(urow *dst, size_t *n, const bt_usage_runs *v, size_t m)
{
    assert_true(m <= UMAX);
    for (size_t i = 0; i < m; i++) {
        dst[i].at = v[i].bucket_ms;
        snprintf(dst[i].project, sizeof dst[i].project, "%s", v[i].project ? v[i].project : "-");
        dst[i].status = (int)v[i].status;
        dst[i].created = v[i].created;
        dst[i].finished = v[i].finished;
    }
    *n = m;
}

static void cb_usage(void *ud, int rc, const bt_error *err, const bt_usage *u)
{
    usage_res *r = ud;
    assert_int_equal(r->called, 0);
    r->called = 1;
    r->rc = rc;
    if (rc) {
        assert_non_null(err);
        assert_null(u);
        r->err = *err;
        return;
    }
    assert_null(err);
    assert_non_null(u);
    assert_true(u->nsteps <= UMAX);
    for (size_t i = 0; i < u->nsteps; i++) {
        const bt_usage_steps *x = &u->steps[i];
        urow *y = &r->steps[i];
        y->at = x->day_ms;
        snprintf(y->project, sizeof y->project, "%s", x->project ? x->project : "-");
        snprintf(y->agent, sizeof y->agent, "%s", x->agent ? x->agent : "-");
        y->steps = x->steps;
        y->failed = x->failed;
        y->tin = x->tokens_in;
        y->tout = x->tokens_out;
        y->cost = x->cost_usd;
        y->dur = x->duration_ms;
    }
    r->ns = u->nsteps;
    copy_runs(r->day, &r->nd, u->runs_by_day, u->nruns_by_day);
    copy_runs(r->hour, &r->nh, u->runs_by_hour, u->nruns_by_hour);
}

static usage_res do_usage(fx *f, int64_t since, int64_t until, int64_t hours_since,
                          const char *project)
{
    usage_res r = {0};
    bt_usage_query q = {
        .since_ms = since, .until_ms = until, .hours_since_ms = hours_since, .project = project};
    bt_store_usage(f->s, &q, cb_usage, &r);
    assert_int_equal(r.called, 0); /* never before the call returned */
    for (int i = 0; i < 100000 && !r.called; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(r.called, 1);
    return r;
}

static const urow *find_steps(const usage_res *r, int64_t day, const char *project,
                              const char *agent)
{
    for (size_t i = 0; i < r->ns; i++)
        if (r->steps[i].at == day && strcmp(r->steps[i].project, project) == 0 &&
            strcmp(r->steps[i].agent, agent) == 0)
            return &r->steps[i];
    return NULL;
}

static const urow *find_runs(const urow *v, size_t n, int64_t at, const char *project,
                             bt_run_status st)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].at == at && strcmp(v[i].project, project) == 0 && v[i].status == (int)st)
            return &v[i];
    return NULL;
}

/* A step of agent (NULL = not an agent step) that runs dur_ms on the fake clock. */
static void usage_step(fx *f, const char *run_id, const char *key, const char *agent,
                       bt_step_status status, double cost, int64_t tin, int64_t tout,
                       int64_t dur_ms)
{
    res st = {0};
    bt_store_step_start(f->s, run_id, key, 1, 1, 0, agent, "coder", cb_step, &st);
    wait_for(f, &st);
    assert_int_equal(st.rc, 0);
    f->now += dur_ms;
    bt_step_result sr = {
        .status = status, .agent = agent, .tokens_in = tin, .tokens_out = tout, .cost_usd = cost};
    res fin = {0};
    bt_store_step_finish(f->s, st.step->id, &sr, cb_step, &fin);
    wait_for(f, &fin);
    assert_int_equal(fin.rc, 0);
    res_free(&fin);
    res_free(&st);
}

static void end_run(fx *f, const char *run_id, bt_run_status st)
{
    bt_run_patch p = {.set_status = true, .status = st};
    res u = {0};
    bt_store_run_update(f->s, run_id, &p, cb_run, &u);
    wait_for(f, &u);
    assert_int_equal(u.rc, 0);
    res_free(&u);
}

/* bt_store_usage: finished steps per (UTC day, project, agent) and runs created /
 * finished per (day or hour, project, status), over [since, until), on both backends
 * alike; running steps and rows outside the range do not count; bad ranges are refused. */
static void test_usage(void **state)
{
    fx *f = *state;
    const int64_t d0 = T0 / DAY * DAY, d1 = d0 + DAY; /* T0 is 22:13 UTC on day d0 */
    char a[BT_ID_LEN + 1], ra[BT_ID_LEN + 1], b[BT_ID_LEN + 1], rb[BT_ID_LEN + 1];
    char c[BT_ID_LEN + 1], rc_[BT_ID_LEN + 1];

    /* Nothing yet: no rows, not an error. */
    usage_res z = do_usage(f, d0 - DAY, d1 + DAY, d1 - 47 * HOUR, NULL);
    assert_int_equal(z.rc, 0);
    assert_int_equal(z.ns + z.nd + z.nh, 0);
    /* An empty or backwards range is refused, asynchronously. */
    usage_res bad = do_usage(f, d1, d1, 0, NULL);
    assert_int_equal(bad.rc, BT_EINVAL);
    assert_non_null(strstr(bad.err.msg, "since < until"));
    bad = do_usage(f, d0, d1, d1 + HOUR, NULL);
    assert_int_equal(bad.rc, BT_EINVAL);
    usage_res nul = {0};
    bt_store_usage(f->s, NULL, cb_usage, &nul);
    assert_int_equal(nul.called, 0);
    for (int i = 0; i < 100000 && !nul.called; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(nul.rc, BT_EINVAL);

    /* Day d0 (from 22:13 UTC): */
    mk_in_project(f, "a", "BACKEND", a, ra);
    usage_step(f, ra, "plan", "claude", BT_STEP_SUCCEEDED, 0.25, 100, 10, 1000);
    usage_step(f, ra, "review", "codex", BT_STEP_FAILED, 0.5, 50, 5, 2000);
    usage_step(f, ra, "test", NULL, BT_STEP_SUCCEEDED, 0, 0, 0, 300); /* a shell step */
    usage_step(f, ra, "fix", "claude", BT_STEP_SUCCEEDED, 1.0, 400, 40, 4000);
    mk_in_project(f, "c", NULL, c, rc_);
    usage_step(f, rc_, "plan", "claude", BT_STEP_SKIPPED, 0.125, 1, 1, 0);
    res still = {0}; /* running: not counted */
    bt_store_step_start(f->s, rc_, "implement", 1, 1, 1, "claude", "coder", cb_step, &still);
    wait_for(f, &still);
    res_free(&still);
    /* Day d1, 03:00 UTC: */
    f->now = d1 + 3 * HOUR;
    mk_in_project(f, "b", "FRONTEND", b, rb);
    usage_step(f, rb, "plan", "claude", BT_STEP_SUCCEEDED, 2.0, 1000, 100, 60000);
    end_run(f, rb, BT_RUN_FAILED);
    f->now = d1 + 5 * HOUR + 10;
    end_run(f, ra, BT_RUN_COMPLETED);
    const int64_t now = f->now;

    usage_res u = do_usage(f, d0, now + 1, d1 + 6 * HOUR - 48 * HOUR, NULL);
    assert_int_equal(u.rc, 0);
    assert_int_equal(u.ns, 5);
    const urow *x = find_steps(&u, d0, "BACKEND", "claude");
    assert_non_null(x);
    assert_int_equal(x->steps, 2);
    assert_int_equal(x->failed, 0);
    assert_int_equal(x->tin, 500);
    assert_int_equal(x->tout, 50);
    assert_usd(x->cost, 1.25);
    assert_int_equal(x->dur, 5000);
    x = find_steps(&u, d0, "BACKEND", "codex");
    assert_non_null(x);
    assert_int_equal(x->steps, 1);
    assert_int_equal(x->failed, 1);
    assert_int_equal(x->dur, 2000);
    x = find_steps(&u, d0, "BACKEND", "-"); /* the step without an agent */
    assert_non_null(x);
    assert_int_equal(x->steps, 1);
    assert_int_equal(x->dur, 300);
    x = find_steps(&u, d0, "-", "claude"); /* the task without a project */
    assert_non_null(x);
    assert_int_equal(x->steps, 1);
    assert_usd(x->cost, 0.125);
    x = find_steps(&u, d1, "FRONTEND", "claude");
    assert_non_null(x);
    assert_int_equal(x->tin, 1000);
    assert_usd(x->cost, 2.0);
    assert_int_equal(x->dur, 60000);

    /* Runs per day: created on the day they were created (with their status now),
     * finished on the day they finished. */
    assert_int_equal(u.nd, 4);
    const urow *y = find_runs(u.day, u.nd, d0, "BACKEND", BT_RUN_COMPLETED);
    assert_non_null(y);
    assert_int_equal(y->created, 1);
    assert_int_equal(y->finished, 0);
    y = find_runs(u.day, u.nd, d1, "BACKEND", BT_RUN_COMPLETED);
    assert_non_null(y);
    assert_int_equal(y->created, 0);
    assert_int_equal(y->finished, 1);
    y = find_runs(u.day, u.nd, d0, "-", BT_RUN_RUNNING);
    assert_non_null(y);
    assert_int_equal(y->created, 1);
    y = find_runs(u.day, u.nd, d1, "FRONTEND", BT_RUN_FAILED);
    assert_non_null(y);
    assert_int_equal(y->created, 1);
    assert_int_equal(y->finished, 1);
    /* Per hour over the last 48 h: the same runs in their hours. */
    assert_int_equal(u.nh, 4);
    y = find_runs(u.hour, u.nh, T0 / HOUR * HOUR, "BACKEND", BT_RUN_COMPLETED);
    assert_non_null(y);
    assert_int_equal(y->created, 1);
    y = find_runs(u.hour, u.nh, d1 + 5 * HOUR, "BACKEND", BT_RUN_COMPLETED);
    assert_non_null(y);
    assert_int_equal(y->finished, 1);
    y = find_runs(u.hour, u.nh, d1 + 3 * HOUR, "FRONTEND", BT_RUN_FAILED);
    assert_non_null(y);
    assert_int_equal(y->created + y->finished, 2);

    /* The hourly window is its own: starting at d1 it holds only day d1's runs. */
    u = do_usage(f, d0, now + 1, d1, NULL);
    assert_int_equal(u.nh, 2);
    assert_null(find_runs(u.hour, u.nh, T0 / HOUR * HOUR, "BACKEND", BT_RUN_COMPLETED));
    /* No hourly window: no hourly rows. */
    assert_int_equal(do_usage(f, d0, now + 1, 0, NULL).nh, 0);

    /* A project: only its tasks' steps and runs. */
    u = do_usage(f, d0, now + 1, d1, "BACKEND");
    assert_int_equal(u.ns, 3);
    assert_null(find_steps(&u, d1, "FRONTEND", "claude"));
    assert_int_equal(u.nd, 2);
    assert_null(find_runs(u.day, u.nd, d1, "FRONTEND", BT_RUN_FAILED));
    assert_int_equal(do_usage(f, d0, now + 1, d1, "NOPE").ns, 0);

    /* The range is [since, until): day d1 alone, and until excludes its own instant. */
    u = do_usage(f, d1, now + 1, 0, NULL);
    assert_int_equal(u.ns, 1);
    assert_int_equal(u.nd, 2);
    u = do_usage(f, d1, now, 0, NULL); /* ra finished at `now`: not counted */
    assert_int_equal(u.nd, 1);
    u = do_usage(f, d0, d1, 0, NULL);
    assert_int_equal(u.ns, 4);
    assert_null(find_steps(&u, d1, "FRONTEND", "claude"));

    /* Read-your-writes: a usage read right after a step_finish (same turn) includes it. */
    res st = {0};
    bt_store_step_start(f->s, rb, "review", 1, 1, 2, "codex", "reviewer", cb_step, &st);
    wait_for(f, &st);
    bt_step_result sr = {.status = BT_STEP_FAILED, .cost_usd = 0.75, .tokens_in = 7};
    res fin = {0};
    usage_res after = {0};
    bt_usage_query q = {.since_ms = d1, .until_ms = now + 1};
    bt_store_step_finish(f->s, st.step->id, &sr, cb_step, &fin);
    bt_store_usage(f->s, &q, cb_usage, &after);
    assert_int_equal(fin.called + after.called, 0);
    for (int i = 0; i < 100000 && !after.called; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(fin.called, 1);
    assert_int_equal(after.rc, 0);
    x = find_steps(&after, d1, "FRONTEND", "codex");
    assert_non_null(x);
    assert_int_equal(x->failed, 1);
    assert_usd(x->cost, 0.75);
    res_free(&st), res_free(&fin);

    /* Usage is history: it survives a reopen (and the migration that added its index). */
    fx_close(f);
    fx_open(f);
    assert_int_equal(do_usage(f, d0, now + 1, 0, NULL).ns, 6);
}

typedef struct sub_log {
    int n;
    int64_t seqs[64];
    char types[64][32];
    fx *f;
    int saw_before_cb; /* events delivered while the write's callback had not run */
} sub_log;

static void listener(void *ud, const bt_event *e)
{
    sub_log *l = ud;
    if (l->n < 64) {
        l->seqs[l->n] = e->seq;
        snprintf(l->types[l->n], sizeof l->types[0], "%s", e->type);
    }
    l->n++;
}

static void test_events(void **state)
{
    fx *f = *state;
    sub_log log = {.f = f};
    int sub = bt_store_subscribe(f->s, listener, &log);
    assert_true(sub > 0);
    int64_t base = last_seq(f);
    char id[BT_ID_LEN + 1];
    mk(f, "t", NULL, 0, id);                                  /* task.created */
    res c = do_claim(f, "w", 1, 1000);                        /* task.status pending->in_progress */
    res x = do_complete(f, id, "w", c.tasks[0]->fencing);     /* task.status -> completed */
    res stale = do_complete(f, id, "w", c.tasks[0]->fencing); /* refused: no event */
    assert_int_equal(stale.rc, BT_ESTALE);
    json_t *data = json_pack("{s:s}", "line", "hello");
    res ap = {0};
    bt_store_event_append(f->s, "agent.output", id, NULL, data, cb_event, &ap);
    wait_for(f, &ap);
    json_decref(data);
    assert_int_equal(ap.rc, 0);
    assert_string_equal(ap.event->type, "agent.output");

    assert_int_equal(last_seq(f), base + 4);
    bt_event_filter flt = {.after_seq = base};
    res all = do_events(f, &flt);
    assert_int_equal(all.n, 4);
    const char *types[] = {"task.created", "task.status", "task.status", "agent.output"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(all.events[i]->type, types[i]);
        assert_int_equal(all.events[i]->seq, base + 1 + (int64_t)i);
        if (i > 0)
            assert_true(all.events[i]->seq > all.events[i - 1]->seq);
    }
    json_t *d1 = all.events[1]->data;
    assert_string_equal(json_string_value(json_object_get(d1, "from")), "pending");
    assert_string_equal(json_string_value(json_object_get(d1, "to")), "in_progress");
    assert_non_null(json_object_get(d1, "task"));
    /* resume after seq */
    flt.after_seq = all.events[1]->seq;
    res tail = do_events(f, &flt);
    assert_int_equal(tail.n, 2);
    /* filters */
    bt_event_filter byprefix = {.type_prefix = "task.", .task_id = id};
    res tp = do_events(f, &byprefix);
    assert_int_equal(tp.n, 3);
    bt_event_filter lim = {.limit = 1};
    res l1 = do_events(f, &lim);
    assert_int_equal(l1.n, 1);
    /* subscribers saw the same events, in seq order */
    assert_int_equal(log.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(log.seqs[i], base + 1 + i);
        assert_string_equal(log.types[i], types[i]);
    }
    bt_store_unsubscribe(f->s, sub);
    char id2[BT_ID_LEN + 1];
    mk(f, "after unsubscribe", NULL, 0, id2);
    assert_int_equal(log.n, 4);
    res_free(&c), res_free(&x), res_free(&stale), res_free(&ap), res_free(&all);
    res_free(&tail), res_free(&tp), res_free(&l1);
}

/* A subscriber gets an event only after its transaction committed: when the create
 * callback runs, the listener has already seen the event, and not before the call. */
static void on_created_check(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    res *r = ud;
    mark(r, rc, err);
    r->count = *(int *)r->list; /* events seen by the listener at callback time */
}

static void test_events_after_commit(void **state)
{
    fx *f = *state;
    sub_log log = {.f = f};
    int sub = bt_store_subscribe(f->s, listener, &log);
    bt_task_input in = input("t", NULL, 0);
    res r = {0};
    r.list = (void **)&log.n;
    bt_store_task_create(f->s, &in, on_created_check, &r);
    assert_int_equal(log.n, 0); /* not published before commit */
    wait_for(f, &r);
    assert_int_equal(r.count, 1);
    r.list = NULL;
    bt_store_unsubscribe(f->s, sub);
    res_free(&r);
}

static void test_workers(void **state)
{
    fx *f = *state;
    json_t *info = json_pack("{s:s}", "version", "1.0");
    bt_worker_input in = {.id = "w1", .ip = "10.0.0.1", .status = "idle", .info = info};
    res a = {0};
    bt_store_worker_upsert(f->s, &in, cb_worker, &a);
    wait_for(f, &a);
    assert_int_equal(a.rc, 0);
    assert_string_equal(a.worker->ip, "10.0.0.1");
    assert_int_equal(a.worker->last_seen, T0);
    f->now += 5000;
    bt_worker_input up = {.id = "w1", .status = "busy", .current_task = "T1"};
    res b = {0};
    bt_store_worker_upsert(f->s, &up, cb_worker, &b);
    wait_for(f, &b);
    assert_string_equal(b.worker->status, "busy");
    assert_string_equal(b.worker->ip, "10.0.0.1"); /* kept */
    assert_string_equal(json_string_value(json_object_get(b.worker->info, "version")), "1.0");
    assert_int_equal(b.worker->last_seen, T0 + 5000);
    assert_int_equal(b.worker->created_at, T0);
    bt_worker_input w2 = {.id = "w2"};
    res c = {0};
    bt_store_worker_upsert(f->s, &w2, cb_worker, &c);
    wait_for(f, &c);
    res l = {0};
    bt_store_worker_list(f->s, cb_workers, &l);
    wait_for(f, &l);
    assert_int_equal(l.count, 2);
    res g = {0};
    bt_store_worker_get(f->s, "nope", cb_worker, &g);
    wait_for(f, &g);
    assert_int_equal(g.rc, BT_ENOENT);
    json_decref(info);
    res_free(&a), res_free(&b), res_free(&c), res_free(&l), res_free(&g);
}

static void test_approvals(void **state)
{
    fx *f = *state;
    char id[BT_ID_LEN + 1];
    mk(f, "t", NULL, 0, id);
    res run = {0};
    bt_store_run_create(f->s, id, "default", NULL, NULL, cb_run, &run);
    wait_for(f, &run);
    bt_approval_input in = {.run_id = run.run->id, .step_key = "review", .prompt = "Merge?"};
    res a = {0};
    bt_store_approval_create(f->s, &in, cb_approval, &a);
    wait_for(f, &a);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.approval->status, BT_APPROVAL_PENDING);
    assert_string_equal(a.approval->task_id, id);
    res l = {0};
    bt_store_approval_list(f->s, NULL, NULL, cb_approvals, &l);
    wait_for(f, &l);
    assert_int_equal(l.count, 1);
    res_free(&l);
    res d = {0};
    bt_store_approval_decide(f->s, a.approval->id, true, "ann", "lgtm", cb_approval, &d);
    wait_for(f, &d);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.approval->status, BT_APPROVAL_APPROVED);
    assert_string_equal(d.approval->decided_by, "ann");
    res d2 = {0};
    bt_store_approval_decide(f->s, a.approval->id, false, "bob", "no", cb_approval, &d2);
    wait_for(f, &d2);
    assert_int_equal(d2.rc, BT_ESTATE);
    res g = {0};
    bt_store_approval_get(f->s, a.approval->id, cb_approval, &g);
    wait_for(f, &g);
    assert_int_equal(g.approval->status, BT_APPROVAL_APPROVED); /* the decision stands */
    assert_string_equal(g.approval->decided_by, "ann");
    bt_store_approval_list(f->s, NULL, NULL, cb_approvals, &l);
    wait_for(f, &l);
    assert_int_equal(l.count, 0);
    res_free(&l);
    bt_approval_status ap = BT_APPROVAL_APPROVED;
    bt_store_approval_list(f->s, &ap, run.run->id, cb_approvals, &l);
    wait_for(f, &l);
    assert_int_equal(l.count, 1);
    res_free(&l);
    res_free(&run), res_free(&a), res_free(&d), res_free(&d2), res_free(&g);
}

static res do_lock(fx *f, const char *owner, const char *const *paths, size_t n)
{
    res r = {0};
    bt_store_lock_acquire(f->s, "repo", paths, n, owner, 10000, cb_lock, &r);
    wait_for(f, &r);
    return r;
}

static void test_locks(void **state)
{
    fx *f = *state;
    const char *a[] = {"src/core", "README.md"};
    res r = do_lock(f, "run1", a, 2);
    assert_int_equal(r.rc, 0);
    res_free(&r);
    /* prefix conflicts both ways, and equality */
    const char *sub[] = {"src/core/engine.c"};
    r = do_lock(f, "run2", sub, 1);
    assert_int_equal(r.rc, BT_ECONFLICT);
    assert_string_equal(r.holder_owner, "run1");
    res_free(&r);
    const char *parent[] = {"src/"};
    r = do_lock(f, "run2", parent, 1);
    assert_int_equal(r.rc, BT_ECONFLICT);
    res_free(&r);
    const char *same[] = {"README.md"};
    r = do_lock(f, "run2", same, 1);
    assert_int_equal(r.rc, BT_ECONFLICT);
    res_free(&r);
    /* a sibling with a common string prefix is not a conflict */
    const char *sib[] = {"src/core2", "src/corefile"};
    r = do_lock(f, "run2", sib, 2);
    assert_int_equal(r.rc, 0);
    res_free(&r);
    /* all or none: one free path, one conflicting -> neither taken */
    const char *mixed[] = {"docs/x.md", "src/core/y.c"};
    r = do_lock(f, "run3", mixed, 2);
    assert_int_equal(r.rc, BT_ECONFLICT);
    res_free(&r);
    const char *docs[] = {"docs"};
    r = do_lock(f, "run4", docs, 1);
    assert_int_equal(r.rc, 0); /* run3 did not keep docs/x.md */
    res_free(&r);
    /* own re-acquire extends */
    r = do_lock(f, "run1", a, 2);
    assert_int_equal(r.rc, 0);
    res_free(&r);
    /* expiry frees */
    f->now += 10001;
    r = do_lock(f, "run5", docs, 1);
    assert_int_equal(r.rc, 0);
    res_free(&r);
    f->now -= 10001;
    /* release */
    res rel = {0};
    bt_store_lock_release(f->s, "repo", "run1", cb_count, &rel);
    wait_for(f, &rel);
    assert_int_equal(rel.count, 2);
    res_free(&rel);
    r = do_lock(f, "run2", sub, 1);
    assert_int_equal(r.rc, 0);
    res_free(&r);
    bt_store_lock_release(f->s, NULL, "nobody", cb_count, &rel);
    wait_for(f, &rel);
    assert_int_equal(rel.count, 0);
    res_free(&rel);
}

/* Operations issued together complete in issue order, after one commit; reads issued
 * after writes in the same turn see them. */
static void test_callbacks_async_and_ordered(void **state)
{
    fx *f = *state;
    res r[4] = {{0}};
    bt_task_input in = input("x", "k1", 0);
    bt_store_task_create(f->s, &in, cb_create, &r[0]);
    bt_store_task_create(f->s, &in, cb_create, &r[1]);
    bt_task_filter flt = {.dedupe_key = "k1"};
    bt_store_task_list(f->s, &flt, cb_tasks, &r[2]);
    bt_store_flush(f->s, cb_done, &r[3]);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].called, 0);
    wait_for(f, &r[3]);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].called, 1);
    assert_true(r[0].created);
    assert_false(r[1].created);
    assert_string_equal(r[0].task->id, r[1].task->id);
    assert_int_equal(r[2].n, 1);
    for (int i = 0; i < 4; i++)
        res_free(&r[i]);
    /* an error is also reported later, never inline */
    res e = {0};
    bt_store_task_get(f->s, NULL, cb_task, &e);
    assert_int_equal(e.called, 0);
    wait_for(f, &e);
    assert_int_equal(e.rc, BT_EINVAL);
    res_free(&e);
    /* uv_run returns when the store is idle */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

/* Acknowledged writes survive close and reopen. */
static void test_reopen(void **state)
{
    fx *f = *state;
    char id[BT_ID_LEN + 1];
    mk(f, "durable", "dur-1", 3, id);
    fx_close(f);
    fx_open(f);
    res g = do_get(f, id);
    assert_int_equal(g.rc, 0);
    assert_string_equal(g.task->title, "durable");
    assert_int_equal(g.task->priority, 3);
    res_free(&g);
    assert_string_equal(bt_store_backend(f->s), f->be->pg ? "postgres" : "sqlite");
    assert_true(bt_store_connections(f->s) >= 1);
}

/* ---------------------------------------------------------------------------------
 * SQLite-only.
 */
static void test_sqlite_newer_schema_refused(void **state)
{
    fx *f = *state;
    fx_close(f);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->url + 7, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO schema_migrations(version, applied_at, "
                                  "baton_version) VALUES(999, 0, '9.9.9')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    bt_error err = BT_ERROR_INIT;
    int rc = bt_store_open(&f->loop, f->url, &f->opts, &f->s, &err);
    assert_int_equal(rc, BT_EVERSION);
    assert_null(f->s);
    assert_non_null(strstr(err.msg, "999"));
    assert_non_null(strstr(err.msg, "9.9.9"));
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void test_sqlite_durability_pragmas(void **state)
{
    fx *f = *state;
    fx_close(f);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->url + 7, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db,
                       "SELECT count(*) FROM sqlite_master WHERE name = 'tasks_ready' AND sql "
                       "LIKE '%WHERE status = ''pending''%'",
                       -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    fx_open(f);
}

/* A fresh checkout has no ./var: opening sqlite:DIR/sub/x.db creates the directories;
 * a path whose parent is a file fails with a message naming it. */
static void test_sqlite_creates_directory(void **state)
{
    fx *f = *state;
    char url[4200], file[4200];
    snprintf(url, sizeof url, "sqlite:%s/new/deeper/x.db", f->dir);
    bt_store *s = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_store_open(&f->loop, url, NULL, &s, &err), 0);
    bt_store_close(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    snprintf(file, sizeof file, "%s/new/deeper/x.db", f->dir);
    assert_int_equal(access(file, F_OK), 0);

    snprintf(file, sizeof file, "%s/plainfile", f->dir);
    FILE *fp = fopen(file, "w");
    fclose(fp);
    snprintf(url, sizeof url, "sqlite:%s/plainfile/x.db", f->dir);
    assert_true(bt_store_open(&f->loop, url, NULL, &s, &err) < 0);
    assert_non_null(strstr(err.msg, "plainfile"));
}

/* ---------------------------------------------------------------------------------
 * Agent calls (resilience statistics).
 */
typedef struct calls_res {
    int called;
    int rc;
    bt_error err;
    char text[1024]; /* "agent:outcome:class:duration:tokens:at-T0:task|..." */
    size_t n;
} calls_res;

static void cb_calls(void *ud, int rc, const bt_error *err, bt_agent_call *const *calls, size_t n)
{
    calls_res *r = ud;
    assert_int_equal(r->called, 0);
    r->called = 1;
    r->rc = rc;
    if (rc) {
        assert_non_null(err);
        r->err = *err;
    }
    r->n = n;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const bt_agent_call *c = calls[i];
        len += (size_t)snprintf(
            r->text + len, sizeof r->text - len, "%s%s:%s:%s:%lld:%lld:%lld:%s", i ? "|" : "",
            c->agent, c->outcome, c->error_class ? c->error_class : "-", (long long)c->duration_ms,
            (long long)c->tokens, (long long)(c->at - T0), c->task_id[0] ? c->task_id : "-");
        assert_true(len < sizeof r->text);
    }
}

static int call_add(fx *f, const char *agent, const char *outcome, const char *cls, int64_t at,
                    const char *task_id)
{
    bt_agent_call c = {.agent = (char *)agent,
                       .outcome = (char *)outcome,
                       .error_class = (char *)cls,
                       .duration_ms = at >= T0 ? 100 + (at - T0) : 50,
                       .tokens = 7,
                       .at = at};
    if (task_id)
        snprintf(c.task_id, sizeof c.task_id, "%s", task_id);
    res r = {0};
    bt_store_agent_call_add(f->s, &c, cb_done, &r);
    wait_for(f, &r);
    return r.rc;
}

static calls_res do_calls(fx *f, int64_t since_ms, int per_agent)
{
    calls_res r = {0};
    bt_store_agent_calls(f->s, since_ms, per_agent, cb_calls, &r);
    assert_int_equal(r.called, 0);
    for (int i = 0; i < 100000 && !r.called; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(r.called, 1);
    return r;
}

/* bt_store_agent_call_add / _calls / _calls_prune: the newest per_agent calls of every
 * agent at or after since, agents in byte order, each agent's oldest first; invalid
 * calls are refused and write nothing; prune counts what it deletes. */
static void test_agent_calls(void **state)
{
    fx *f = *state;
    calls_res r = do_calls(f, 0, 10); /* empty: no rows, no error */
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, 0);

    assert_int_equal(call_add(f, "codex", "success", NULL, T0 + 1, "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
                     0);
    assert_int_equal(call_add(f, "codex", "failure", "transient", T0 + 2, NULL), 0);
    assert_int_equal(call_add(f, "codex", "success", NULL, T0 + 3, NULL), 0);
    assert_int_equal(call_add(f, "codex", "failure", "timeout", T0 + 4, NULL), 0);
    assert_int_equal(call_add(f, "claude", "cancelled", NULL, T0 + 10, NULL), 0);
    assert_int_equal(call_add(f, "claude", "failure", "permanent", T0 + 20, NULL), 0);
    assert_int_equal(call_add(f, "aider", "success", NULL, T0 - 1000, NULL), 0);
    /* Upper case sorts before lower case (byte order on both backends). */
    assert_int_equal(call_add(f, "Zed", "success", NULL, T0 + 5, NULL), 0);
    /* Two calls ending in the same millisecond: the later-recorded one is the newer. */
    assert_int_equal(call_add(f, "Zed", "failure", "transient", T0 + 5, NULL), 0);

    r = do_calls(f, 0, 100);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, 9);
    assert_string_equal(r.text, "Zed:success:-:105:7:5:-|Zed:failure:transient:105:7:5:-|"
                                "aider:success:-:50:7:-1000:-|"
                                "claude:cancelled:-:110:7:10:-|claude:failure:permanent:120:7:20:-|"
                                "codex:success:-:101:7:1:01ARZ3NDEKTSV4RRFFQ69G5FAV|"
                                "codex:failure:transient:102:7:2:-|codex:success:-:103:7:3:-|"
                                "codex:failure:timeout:104:7:4:-");

    /* per_agent: the most recent ones of each agent, still oldest first. */
    r = do_calls(f, 0, 2);
    assert_int_equal(r.n, 7);
    assert_string_equal(r.text, "Zed:success:-:105:7:5:-|Zed:failure:transient:105:7:5:-|"
                                "aider:success:-:50:7:-1000:-|"
                                "claude:cancelled:-:110:7:10:-|claude:failure:permanent:120:7:20:-|"
                                "codex:success:-:103:7:3:-|codex:failure:timeout:104:7:4:-");
    r = do_calls(f, 0, 1);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.text,
                        "Zed:failure:transient:105:7:5:-|aider:success:-:50:7:-1000:-|"
                        "claude:failure:permanent:120:7:20:-|codex:failure:timeout:104:7:4:-");

    /* since: at or after the bound (inclusive); an agent with nothing left is absent. */
    r = do_calls(f, T0 + 3, 100);
    assert_int_equal(r.n, 6);
    assert_string_equal(r.text, "Zed:success:-:105:7:5:-|Zed:failure:transient:105:7:5:-|"
                                "claude:cancelled:-:110:7:10:-|claude:failure:permanent:120:7:20:-|"
                                "codex:success:-:103:7:3:-|codex:failure:timeout:104:7:4:-");
    r = do_calls(f, T0 + 20, 100);
    assert_string_equal(r.text, "claude:failure:permanent:120:7:20:-");
    r = do_calls(f, T0 + 21, 100);
    assert_int_equal(r.n, 0);

    /* Bad input: refused with BT_EINVAL and nothing written. */
    assert_int_equal(call_add(f, NULL, "success", NULL, T0 + 30, NULL), BT_EINVAL);
    assert_int_equal(call_add(f, "", "success", NULL, T0 + 30, NULL), BT_EINVAL);
    assert_int_equal(call_add(f, "codex", NULL, NULL, T0 + 30, NULL), BT_EINVAL);
    assert_int_equal(call_add(f, "codex", "", NULL, T0 + 30, NULL), BT_EINVAL);
    assert_int_equal(call_add(f, "codex", "success", NULL, 0, NULL), BT_EINVAL);
    res bad = {0};
    bt_store_agent_call_add(f->s, NULL, cb_done, &bad);
    wait_for(f, &bad);
    assert_int_equal(bad.rc, BT_EINVAL);
    assert_non_null(strstr(bad.err.msg, "agent call"));
    r = do_calls(f, 0, 100);
    assert_int_equal(r.n, 9);
    r = do_calls(f, 0, 0);
    assert_int_equal(r.rc, BT_EINVAL);
    assert_non_null(strstr(r.err.msg, "per_agent"));

    /* Read-your-writes: a read issued right after an add, in the same turn, sees it. */
    bt_agent_call c = {.agent = "claude", .outcome = "success", .at = T0 + 30};
    res add = {0};
    bt_store_agent_call_add(f->s, &c, cb_done, &add);
    calls_res rr = {0};
    bt_store_agent_calls(f->s, T0 + 30, 5, cb_calls, &rr);
    for (int i = 0; i < 100000 && !rr.called; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(add.called, 1);
    assert_int_equal(add.rc, 0);
    assert_string_equal(rr.text, "claude:success:-:0:0:30:-");

    /* Prune: calls that ended before the bound go; the count says how many. */
    res pr = {0};
    bt_store_agent_calls_prune(f->s, T0 + 2, cb_count, &pr);
    wait_for(f, &pr);
    assert_int_equal(pr.rc, 0);
    assert_int_equal(pr.count, 2); /* aider's and codex's first */
    res_free(&pr);
    bt_store_agent_calls_prune(f->s, T0 + 2, cb_count, &pr);
    wait_for(f, &pr);
    assert_int_equal(pr.count, 0);
    res_free(&pr);
    r = do_calls(f, 0, 100);
    assert_int_equal(r.n, 8);
    assert_null(strstr(r.text, "aider"));
    assert_null(strstr(r.text, ":1:01ARZ"));

    /* History survives a reopen. */
    fx_close(f);
    fx_open(f);
    r = do_calls(f, 0, 1);
    assert_string_equal(r.text, "Zed:failure:transient:105:7:5:-|claude:success:-:0:0:30:-|"
                                "codex:failure:timeout:104:7:4:-");
}

/* ---------------------------------------------------------------------------------
 * Webhook deliveries.
 */
enum { D_RECORD, D_FORGET };

static res do_delivery(fx *f, int op, const char *source, const char *id)
{
    res r = {0};
    if (op == D_RECORD)
        bt_store_delivery_record(f->s, source, id, cb_count, &r);
    else
        bt_store_delivery_forget(f->s, source, id, cb_count, &r);
    wait_for(f, &r);
    return r;
}

static int64_t delivery_count(fx *f, int op, const char *source, const char *id)
{
    res r = do_delivery(f, op, source, id);
    assert_int_equal(r.rc, 0);
    return r.count;
}

static int64_t deliveries_prune(fx *f, int64_t before_ms)
{
    res r = {0};
    bt_store_deliveries_prune(f->s, before_ms, cb_count, &r);
    wait_for(f, &r);
    assert_int_equal(r.rc, 0);
    return r.count;
}

/* bt_store_delivery_record / _forget / bt_store_deliveries_prune: a delivery id is taken
 * once per source (a replay counts 0, also across a reopen and within one turn), forget
 * lets a redelivery in, prune deletes by age, and bad input is refused. */
static void test_deliveries(void **state)
{
    fx *f = *state;
    const char *id1 = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    assert_int_equal(delivery_count(f, D_RECORD, "github", id1), 1);
    assert_int_equal(delivery_count(f, D_RECORD, "github", id1), 0); /* replay */
    assert_int_equal(delivery_count(f, D_RECORD, "jira", id1), 1);   /* other source */
    assert_int_equal(delivery_count(f, D_RECORD, "jira", id1), 0);

    /* Forget undoes one record; a redelivery is then taken again. */
    assert_int_equal(delivery_count(f, D_FORGET, "github", id1), 1);
    assert_int_equal(delivery_count(f, D_FORGET, "github", id1), 0);
    assert_int_equal(delivery_count(f, D_RECORD, "jira", id1), 0); /* untouched */
    assert_int_equal(delivery_count(f, D_RECORD, "github", id1), 1);
    assert_int_equal(delivery_count(f, D_RECORD, "github", id1), 0);

    /* Two records of one id issued in the same turn: exactly one is taken. */
    res a = {0}, b = {0};
    bt_store_delivery_record(f->s, "github", "same-turn", cb_count, &a);
    bt_store_delivery_record(f->s, "github", "same-turn", cb_count, &b);
    for (int i = 0; i < 100000 && !(a.called && b.called); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(a.count + b.count, 1);
    assert_int_equal(a.count, 1); /* issue order */

    /* Prune by age: received_at is the store clock at record time; strictly before. */
    f->now = T0 + 60000;
    assert_int_equal(delivery_count(f, D_RECORD, "github", "later"), 1);
    assert_int_equal(deliveries_prune(f, T0), 0);
    assert_int_equal(deliveries_prune(f, T0 + 1), 3); /* github id1, jira id1, same-turn */
    assert_int_equal(deliveries_prune(f, T0 + 1), 0);
    assert_int_equal(delivery_count(f, D_RECORD, "github", id1), 1); /* pruned: new again */
    assert_int_equal(delivery_count(f, D_RECORD, "jira", id1), 1);

    /* Records survive a reopen. */
    fx_close(f);
    fx_open(f);
    assert_int_equal(delivery_count(f, D_RECORD, "github", "later"), 0);

    /* Bad input: BT_EINVAL with a message, nothing written. */
    char longid[202];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    const char *bad[][2] = {
        {NULL, "d1"}, {"", "d1"}, {"github", NULL}, {"github", ""}, {"github", longid}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int op = D_RECORD; op <= D_FORGET; op++) {
            res r = do_delivery(f, op, bad[i][0], bad[i][1]);
            assert_int_equal(r.rc, BT_EINVAL);
            assert_non_null(strstr(r.err.msg, "delivery"));
        }
    }
    longid[200] = '\0'; /* 200 bytes: accepted */
    assert_int_equal(delivery_count(f, D_RECORD, "github", longid), 1);
    assert_int_equal(delivery_count(f, D_RECORD, "github", longid), 0);
    assert_int_equal(deliveries_prune(f, T0 + 60001), 4);
}

/* ---------------------------------------------------------------------------------
 * The suite: every STORE_TESTS entry runs once per backend.
 */
#define STORE_TESTS(X)                                                                             \
    X(test_create_dedupe)                                                                          \
    X(test_list_filters_cursor)                                                                    \
    X(test_update_rules)                                                                           \
    X(test_transitions)                                                                            \
    X(test_queue_order)                                                                            \
    X(test_claim_lease_fencing)                                                                    \
    X(test_claim_task_id)                                                                          \
    X(test_heartbeat_release)                                                                      \
    X(test_requeue_expired)                                                                        \
    X(test_retry_schedule)                                                                         \
    X(test_stats_cleanup_clear)                                                                    \
    X(test_runs_steps)                                                                             \
    X(test_spend)                                                                                  \
    X(test_usage)                                                                                  \
    X(test_events)                                                                                 \
    X(test_events_after_commit)                                                                    \
    X(test_workers)                                                                                \
    X(test_approvals)                                                                              \
    X(test_locks)                                                                                  \
    X(test_agent_calls)                                                                            \
    X(test_deliveries)                                                                             \
    X(test_callbacks_async_and_ordered)                                                            \
    X(test_reopen)

#define SQLITE_ONLY_TESTS(X)                                                                       \
    X(test_sqlite_newer_schema_refused)                                                            \
    X(test_sqlite_durability_pragmas)                                                              \
    X(test_sqlite_creates_directory)

/* PostgreSQL-only tests go here (e.g. two stores claiming concurrently). */
#define PG_ONLY_TESTS(X)

#define ON_SQLITE(t)                                                                               \
    cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)&be_sqlite),
#define ON_PG(t) cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)&be_pg),

int main(void)
{
    static const struct CMUnitTest sqlite_tests[] = {STORE_TESTS(ON_SQLITE)
                                                         SQLITE_ONLY_TESTS(ON_SQLITE)};
    int failed = cmocka_run_group_tests_name("store/sqlite", sqlite_tests, NULL, NULL);
    const char *pg = getenv("BATON_TEST_PG_URL");
    if (pg && *pg) {
        static const struct CMUnitTest pg_tests[] = {STORE_TESTS(ON_PG) PG_ONLY_TESTS(ON_PG)};
        failed += cmocka_run_group_tests_name("store/postgres", pg_tests, NULL, NULL);
    } else {
        fprintf(stderr,
                "\n*** PostgreSQL store tests SKIPPED: BATON_TEST_PG_URL not set ***\n"
                "*** (eval \"$(scripts/pg-test-cluster.sh start)\" to run them)    ***\n\n");
    }
    return failed;
}
