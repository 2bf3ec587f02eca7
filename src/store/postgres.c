/*
 * postgres.c - the PostgreSQL store backend (postgres://...), libpq driven
 * asynchronously from the libuv loop. libpq is loaded on first open (pq_dl.h), so
 * every libpq call goes through bt_pq.
 *
 * Shape. Every store operation is one server-side function (pg_schema.c) taking one
 * jsonb argument and returning one json value ({"rc":0,...} or {"rc":-14,"msg":...}),
 * so an operation is a single statement and expected failures (stale fencing token,
 * unknown id, illegal transition) are results, not SQL errors.
 *
 * Group commit and pipelining. Operations issued during one loop turn are queued and
 * sent together as ONE pipeline on one pooled connection: op1; op2; ...;
 * bt_flush_events(); Sync. Without BEGIN/COMMIT the pipeline is one implicit
 * transaction that commits at the Sync, so a whole batch costs one round trip and one
 * WAL flush, and every callback runs after the PGRES_PIPELINE_SYNC that follows the
 * commit (durable). A pool of opts.pool_size connections lets several batches be in
 * flight (one per connection) while the loop keeps accepting work. If a batch hits an
 * SQL error the whole transaction rolls back and its operations are re-run one per
 * transaction ("solo"), so one bad operation cannot fail its neighbours.
 *
 * Ordering. A read waits until no write batch is in flight, so reads see every write
 * issued before them (read-your-writes); bt_store_flush is a barrier that waits for
 * every batch in flight.
 *
 * Events. Operations stage their events in a per-connection temp table; the last
 * statement of each write batch (bt_flush_events) takes a transaction-level advisory
 * lock, assigns seqs, inserts the events and NOTIFYs the highest seq. The lock is held
 * until commit, so commit order = seq order even with many writer processes: a reader
 * at "after N" can never see N+2 before N+1 commits. A dedicated connection LISTENs
 * on the schema's channel; the publisher delivers events to subscribers strictly in
 * seq order, from the batch's own result when there is no gap and by reading the
 * events table otherwise (events of other processes).
 *
 * Connections. Open is blocking (start-up): it resolves the host once (later
 * connections use hostaddr, so a reconnect never blocks the loop in DNS), migrates
 * and connects the pool. A broken connection fails its in-flight operations with
 * BT_EUNAVAIL (outcome unknown) and reconnects asynchronously with a backoff.
 *
 * URL: postgres://user:pass@host:port/db?schema=NAME&... ; `schema` (baton's own
 * parameter, removed before libpq sees the URL) puts every table in schema NAME,
 * created if needed, so tests and tenants can share one database.
 */
#include <stddef.h> /* before store.h: base/id.h uses size_t */

#include "store/pg_schema.h"
#include "store/pq_dl.h"
#include "store/store_impl.h"

#include "base/mem.h"
#include "base/str.h"
#include "base/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_MAX_BATCH  512  /* operations per pipeline/transaction */
#define PG_FETCH_MAX  1000 /* events per publisher read */
#define PG_RETRY_MS   500  /* first reconnect delay; doubles up to PG_RETRY_MAX */
#define PG_RETRY_MAX  10000
#define PG_SOLO_TRIES 3 /* a solo op that deadlocks / fails serialisation is retried */

typedef struct bt_pg bt_pg;
typedef struct pg_op pg_op;
typedef struct pg_conn pg_conn;

typedef void (*pg_deliver_fn)(bt_pg *pg, pg_op *op);
typedef void (*pg_any_fn)(void);

struct pg_op {
    pg_op *next;
    const char *fn; /* SQL function, NULL when nothing is sent (pre-failed, barrier) */
    char *arg;      /* its jsonb argument */
    bool write;     /* changes data: goes through bt_flush_events */
    bool barrier;   /* bt_store_flush: waits for every batch in flight */
    bool solo;      /* re-run alone after its batch failed */
    int tries;
    pg_deliver_fn deliver;
    pg_any_fn cb; /* the caller's callback, cast back by deliver */
    void *ud;
    int rc;
    bt_error err;
    json_t *res; /* the function's result */
    /* event_append: what the callback reports */
    bt_event ev;
    int64_t limit; /* list operations: rows asked for */
};

enum { C_DOWN = 0, C_CONNECTING, C_SETUP, C_IDLE, C_BUSY };

struct pg_conn {
    bt_pg *pg;
    PGconn *c;
    uv_poll_t *poll;
    int fd;
    int events;
    bool listener;
    int state;
    /* the batch in flight */
    pg_op *batch;
    pg_op **sent;
    size_t nsent, sent_cap;
    bool has_flush, has_write;
    size_t qidx;
    bool failed;
    char sqlstate[6];
    char errmsg[512];
    size_t failed_idx;
    json_t *flush_res;
    /* reconnect */
    uv_timer_t retry;
    int retry_ms;
};

struct bt_pg {
    bt_store base;
    /* conninfo for reconnects (URL without our parameters + hostaddr + options) */
    const char *kw[8];
    const char *val[8];
    char *url, *hostaddr, *options, *where;
    char *schema;
    char chan[96];
    pg_conn *pool;
    int npool;
    pg_conn listen;
    /* queue of operations not yet sent */
    pg_op *q_head, **q_tail;
    uv_idle_t idle;
    bool idle_on;
    int inflight, inflight_writes;
    /* publisher */
    int64_t pub_seq, known_max;
    bt_event **pend;
    size_t npend, pend_cap;
    bool fetching;
    bool closing;
    int handles; /* handles waiting for their close callback */
};

static void pump(bt_pg *pg);
static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void conn_broken(pg_conn *c, const char *why);
static void pub_pump(bt_pg *pg);
static void idle_cb(uv_idle_t *h);

/* ---------------------------------------------------------------------------------
 * Small helpers.
 */
static void trim_nl(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
}

static const char *jstr_or(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static char *jdupstr(const json_t *o, const char *k)
{
    return bt_xstrdup(jstr_or(o, k));
}

static int64_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return 0;
}

static double jreal(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

static json_t *jobj(const json_t *o, const char *k, json_t *(*mk)(void))
{
    json_t *v = json_object_get(o, k);
    return v && !json_is_null(v) ? json_incref(v) : (mk ? mk() : NULL);
}

static void jcopyid(char dst[BT_ID_LEN + 1], const json_t *o, const char *k)
{
    const char *s = jstr_or(o, k);
    snprintf(dst, BT_ID_LEN + 1, "%s", s ? s : "");
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

/* ---------------------------------------------------------------------------------
 * Row conversion: the json of row_to_json(table row) into the store.h structs.
 */
static bt_task *task_from(const json_t *o)
{
    bt_task *t = bt_xcalloc(1, sizeof *t);
    jcopyid(t->id, o, "id");
    t->source = jdupstr(o, "source");
    t->external_id = jdupstr(o, "external_id");
    t->dedupe_key = jdupstr(o, "dedupe_key");
    t->identifier = jdupstr(o, "identifier");
    t->project = jdupstr(o, "project");
    t->title = jdupstr(o, "title");
    t->body = jdupstr(o, "body");
    t->workflow = jdupstr(o, "workflow");
    t->labels = jobj(o, "labels", json_array);
    t->meta = jobj(o, "meta", json_object);
    t->priority = (int32_t)jint(o, "priority");
    bt_task_status st = BT_TASK_PENDING;
    bt_task_status_parse(jstr_or(o, "status"), &st);
    t->status = st;
    t->attempts = (int32_t)jint(o, "attempts");
    t->max_attempts = (int32_t)jint(o, "max_attempts");
    t->next_attempt_at = jint(o, "next_attempt_at");
    t->lease_owner = jdupstr(o, "lease_owner");
    t->lease_expires_at = jint(o, "lease_expires_at");
    t->fencing = jint(o, "fencing");
    t->result = jobj(o, "result", NULL);
    t->error = jdupstr(o, "error");
    t->created_at = jint(o, "created_at");
    t->updated_at = jint(o, "updated_at");
    t->started_at = jint(o, "started_at");
    t->finished_at = jint(o, "finished_at");
    return t;
}

static bt_run *run_from(const json_t *o)
{
    bt_run *r = bt_xcalloc(1, sizeof *r);
    jcopyid(r->id, o, "id");
    jcopyid(r->task_id, o, "task_id");
    r->workflow = jdupstr(o, "workflow");
    r->workflow_version = jdupstr(o, "workflow_version");
    bt_run_status st = BT_RUN_RUNNING;
    bt_run_status_parse(jstr_or(o, "status"), &st);
    r->status = st;
    r->iteration = (int32_t)jint(o, "iteration");
    r->cost_usd = jreal(o, "cost_usd");
    r->tokens_in = jint(o, "tokens_in");
    r->tokens_out = jint(o, "tokens_out");
    r->output = jdupstr(o, "output");
    r->error = jdupstr(o, "error");
    r->state = jobj(o, "state", json_object);
    r->created_at = jint(o, "created_at");
    r->updated_at = jint(o, "updated_at");
    r->finished_at = jint(o, "finished_at");
    return r;
}

static bt_step *step_from(const json_t *o)
{
    bt_step *s = bt_xcalloc(1, sizeof *s);
    jcopyid(s->id, o, "id");
    jcopyid(s->run_id, o, "run_id");
    s->step_key = jdupstr(o, "step_key");
    s->iteration = (int32_t)jint(o, "iteration");
    s->attempt = (int32_t)jint(o, "attempt");
    s->seq = (int32_t)jint(o, "seq");
    s->agent = jdupstr(o, "agent");
    s->role = jdupstr(o, "role");
    s->fallback_from = jdupstr(o, "fallback_from");
    bt_step_status st = BT_STEP_PENDING;
    bt_step_status_parse(jstr_or(o, "status"), &st);
    s->status = st;
    s->output = jdupstr(o, "output");
    s->exit_code = (int32_t)jint(o, "exit_code");
    s->error_class = jdupstr(o, "error_class");
    s->error = jdupstr(o, "error");
    s->tokens_in = jint(o, "tokens_in");
    s->tokens_out = jint(o, "tokens_out");
    s->cost_usd = jreal(o, "cost_usd");
    s->started_at = jint(o, "started_at");
    s->finished_at = jint(o, "finished_at");
    return s;
}

static bt_event *event_from(const json_t *o)
{
    bt_event *e = bt_xcalloc(1, sizeof *e);
    e->seq = jint(o, "seq");
    e->type = jdupstr(o, "type");
    jcopyid(e->task_id, o, "task_id");
    jcopyid(e->run_id, o, "run_id");
    e->ts = jint(o, "ts");
    e->data = jobj(o, "data", json_object);
    return e;
}

static bt_worker *worker_from(const json_t *o)
{
    bt_worker *w = bt_xcalloc(1, sizeof *w);
    w->id = jdupstr(o, "id");
    w->ip = jdupstr(o, "ip");
    w->status = jdupstr(o, "status");
    w->current_task = jdupstr(o, "current_task");
    w->last_seen = jint(o, "last_seen");
    w->info = jobj(o, "info", json_object);
    w->created_at = jint(o, "created_at");
    return w;
}

static bt_approval *approval_from(const json_t *o)
{
    bt_approval *a = bt_xcalloc(1, sizeof *a);
    jcopyid(a->id, o, "id");
    jcopyid(a->run_id, o, "run_id");
    jcopyid(a->task_id, o, "task_id");
    a->step_key = jdupstr(o, "step_key");
    a->prompt = jdupstr(o, "prompt");
    a->context = jobj(o, "context", json_object);
    const char *st = jstr_or(o, "status");
    a->status = BT_APPROVAL_PENDING;
    for (int i = 0; st && i < BT_APPROVAL__COUNT; i++)
        if (strcmp(st, bt_approval_status_name((bt_approval_status)i)) == 0)
            a->status = (bt_approval_status)i;
    a->decided_by = jdupstr(o, "decided_by");
    a->comment = jdupstr(o, "comment");
    a->expires_at = jint(o, "expires_at");
    a->created_at = jint(o, "created_at");
    a->decided_at = jint(o, "decided_at");
    return a;
}

/* ---------------------------------------------------------------------------------
 * Operations: creation, queueing, delivery.
 */
static pg_op *op_new(const char *fn, bool write, pg_deliver_fn deliver, pg_any_fn cb, void *ud)
{
    pg_op *op = bt_xcalloc(1, sizeof *op);
    op->fn = fn;
    op->write = write;
    op->deliver = deliver;
    op->cb = cb;
    op->ud = ud;
    return op;
}

static void op_free(pg_op *op)
{
    free(op->arg);
    json_decref(op->res);
    free(op->ev.type);
    json_decref(op->ev.data);
    free(op);
}

static void kick(bt_pg *pg)
{
    if (!pg->idle_on) {
        pg->idle_on = true;
        uv_idle_start(&pg->idle, idle_cb);
    }
}

static void enqueue(bt_pg *pg, pg_op *op)
{
    op->next = NULL;
    *pg->q_tail = op;
    pg->q_tail = &op->next;
    kick(pg);
}

/* Queue op with args (stolen) as its argument; "now" is added here. */
static void submit(bt_pg *pg, pg_op *op, json_t *args)
{
    if (!json_object_get(args, "now"))
        json_object_set_new(args, "now", json_integer(bt_store__now(&pg->base)));
    op->arg = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    enqueue(pg, op);
}

/* Queue op as already failed: its callback still runs later, on the loop. */
static void submit_error(bt_pg *pg, pg_op *op, const bt_error *err)
{
    op->fn = NULL;
    op->rc = err->code ? err->code : BT_EINVAL;
    op->err = *err;
    op->err.code = op->rc;
    enqueue(pg, op);
}

static void submit_errorf(bt_pg *pg, pg_op *op, int code, const char *msg)
{
    bt_error e = BT_ERROR_INIT;
    bt_errorf(&e, code, "%s", msg);
    submit_error(pg, op, &e);
}

/* Before delivery: turn the function's {"rc":...,"msg":...} into op->rc/err. */
static void op_settle(pg_op *op)
{
    if (op->rc)
        return;
    if (!op->res) {
        if (op->fn)
            op->rc = bt_errorf(&op->err, BT_EINTERNAL, "PostgreSQL %s returned no result", op->fn);
        return;
    }
    int64_t rc = jint(op->res, "rc");
    if (rc) {
        const char *m = jstr_or(op->res, "msg");
        op->rc = bt_errorf(&op->err, (int)rc, "%s", m ? m : bt_strerror((int)rc));
    }
}

#define ERRP(op) ((op)->rc ? &(op)->err : NULL)

static void deliver_done(bt_pg *pg, pg_op *op)
{
    ((bt_store_done_cb)op->cb)(op->ud, op->rc, ERRP(op));
}

static void deliver_task(bt_pg *pg, pg_op *op)
{
    bt_task *t = op->rc ? NULL : task_from(json_object_get(op->res, "task"));
    ((bt_store_task_cb)op->cb)(op->ud, op->rc, ERRP(op), t);
    bt_task_free(t);
}

static void deliver_create(bt_pg *pg, pg_op *op)
{
    bt_task *t = op->rc ? NULL : task_from(json_object_get(op->res, "task"));
    bool created = !op->rc && json_is_true(json_object_get(op->res, "created"));
    ((bt_store_create_cb)op->cb)(op->ud, op->rc, ERRP(op), t, created);
    bt_task_free(t);
}

static void deliver_fail(bt_pg *pg, pg_op *op)
{
    bt_task *t = op->rc ? NULL : task_from(json_object_get(op->res, "task"));
    bt_fail_outcome oc = jint(op->res, "outcome") ? BT_FAIL_FINAL : BT_FAIL_RETRY;
    ((bt_store_fail_cb)op->cb)(op->ud, op->rc, ERRP(op), t, oc);
    bt_task_free(t);
}

static void deliver_tasks(bt_pg *pg, pg_op *op)
{
    const json_t *arr = op->rc ? NULL : json_object_get(op->res, "tasks");
    size_t n = json_array_size(arr);
    const char *cursor = NULL;
    if (op->limit > 0 && (int64_t)n > op->limit) {
        n = (size_t)op->limit;
        cursor = jstr_or(json_array_get(arr, n - 1), "id");
    }
    bt_task **v = bt_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = task_from(json_array_get(arr, i));
    ((bt_store_tasks_cb)op->cb)(op->ud, op->rc, ERRP(op), v, n, cursor);
    for (size_t i = 0; i < n; i++)
        bt_task_free(v[i]);
    free(v);
}

static void deliver_count(bt_pg *pg, pg_op *op)
{
    ((bt_store_count_cb)op->cb)(op->ud, op->rc, ERRP(op), op->rc ? 0 : jint(op->res, "count"));
}

static void deliver_stats(bt_pg *pg, pg_op *op)
{
    bt_task_stats st;
    memset(&st, 0, sizeof st);
    if (!op->rc) {
        const json_t *counts = json_object_get(op->res, "counts");
        for (int i = 0; i < BT_TASK__COUNT; i++)
            st.count[i] = jint(counts, bt_task_status_name((bt_task_status)i));
        st.avg_duration_ms = jreal(op->res, "avg");
        st.ready = jint(op->res, "ready");
    }
    ((bt_store_stats_cb)op->cb)(op->ud, op->rc, ERRP(op), op->rc ? NULL : &st);
}

static void deliver_spend(bt_pg *pg, pg_op *op)
{
    bt_spend sp;
    memset(&sp, 0, sizeof sp);
    if (!op->rc) {
        sp.cost_usd = jreal(op->res, "cost_usd");
        sp.tokens_in = jint(op->res, "tokens_in");
        sp.tokens_out = jint(op->res, "tokens_out");
        sp.steps = jint(op->res, "steps");
    }
    ((bt_store_spend_cb)op->cb)(op->ud, op->rc, ERRP(op), op->rc ? NULL : &sp);
}

static void deliver_calls(bt_pg *pg, pg_op *op)
{
    const json_t *arr = op->rc ? NULL : json_object_get(op->res, "calls");
    size_t n = json_array_size(arr);
    bt_agent_call **v = bt_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(arr, i);
        bt_agent_call *c = v[i] = bt_xcalloc(1, sizeof *c);
        c->agent = jdupstr(o, "agent");
        c->outcome = jdupstr(o, "outcome");
        c->error_class = jdupstr(o, "error_class");
        c->duration_ms = jint(o, "duration_ms");
        c->tokens = jint(o, "tokens");
        c->at = jint(o, "at");
        jcopyid(c->task_id, o, "task_id");
    }
    ((bt_store_agent_calls_cb)op->cb)(op->ud, op->rc, ERRP(op), v, n);
    for (size_t i = 0; i < n; i++)
        bt_agent_call_free(v[i]);
    free(v);
}

static bt_usage_runs *usage_runs_from(const json_t *arr, size_t *n)
{
    size_t m = json_array_size(arr), k = 0;
    bt_usage_runs *v = bt_xcalloc(m ? m : 1, sizeof *v);
    for (size_t i = 0; i < m; i++) {
        const json_t *o = json_array_get(arr, i);
        bt_run_status st;
        if (bt_run_status_parse(jstr_or(o, "status"), &st) < 0)
            continue; /* not a status this baton knows: nothing to count it as */
        v[k].bucket_ms = jint(o, "bucket");
        v[k].project = jdupstr(o, "project");
        v[k].status = st;
        v[k].created = jint(o, "created");
        v[k].finished = jint(o, "finished");
        k++;
    }
    *n = k;
    return v;
}

static void deliver_usage(bt_pg *pg, pg_op *op)
{
    bt_usage u;
    memset(&u, 0, sizeof u);
    if (!op->rc) {
        const json_t *arr = json_object_get(op->res, "steps");
        u.nsteps = json_array_size(arr);
        u.steps = bt_xcalloc(u.nsteps ? u.nsteps : 1, sizeof *u.steps);
        for (size_t i = 0; i < u.nsteps; i++) {
            const json_t *o = json_array_get(arr, i);
            bt_usage_steps *r = &u.steps[i];
            r->day_ms = jint(o, "day");
            r->project = jdupstr(o, "project");
            r->agent = jdupstr(o, "agent");
            r->steps = jint(o, "steps");
            r->failed = jint(o, "failed");
            r->tokens_in = jint(o, "tokens_in");
            r->tokens_out = jint(o, "tokens_out");
            r->cost_usd = jreal(o, "cost_usd");
            r->duration_ms = jint(o, "duration_ms");
        }
        u.runs_by_day = usage_runs_from(json_object_get(op->res, "runs_by_day"), &u.nruns_by_day);
        u.runs_by_hour =
            usage_runs_from(json_object_get(op->res, "runs_by_hour"), &u.nruns_by_hour);
    }
    ((bt_store_usage_cb)op->cb)(op->ud, op->rc, ERRP(op), op->rc ? NULL : &u);
    bt_store__usage_clear(&u);
}

static void deliver_run(bt_pg *pg, pg_op *op)
{
    bt_run *r = op->rc ? NULL : run_from(json_object_get(op->res, "run"));
    ((bt_store_run_cb)op->cb)(op->ud, op->rc, ERRP(op), r);
    bt_run_free(r);
}

static void deliver_runs(bt_pg *pg, pg_op *op)
{
    const json_t *arr = op->rc ? NULL : json_object_get(op->res, "runs");
    size_t n = json_array_size(arr);
    bt_run **v = bt_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = run_from(json_array_get(arr, i));
    ((bt_store_runs_cb)op->cb)(op->ud, op->rc, ERRP(op), v, n);
    for (size_t i = 0; i < n; i++)
        bt_run_free(v[i]);
    free(v);
}

static void deliver_step(bt_pg *pg, pg_op *op)
{
    bt_step *s = op->rc ? NULL : step_from(json_object_get(op->res, "step"));
    ((bt_store_step_cb)op->cb)(op->ud, op->rc, ERRP(op), s);
    bt_step_free(s);
}

static void deliver_steps(bt_pg *pg, pg_op *op)
{
    const json_t *arr = op->rc ? NULL : json_object_get(op->res, "steps");
    size_t n = json_array_size(arr);
    bt_step **v = bt_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = step_from(json_array_get(arr, i));
    ((bt_store_steps_cb)op->cb)(op->ud, op->rc, ERRP(op), v, n);
    for (size_t i = 0; i < n; i++)
        bt_step_free(v[i]);
    free(v);
}

static void deliver_event(bt_pg *pg, pg_op *op)
{
    ((bt_store_event_cb)op->cb)(op->ud, op->rc, ERRP(op), op->rc ? NULL : &op->ev);
}

static void deliver_events(bt_pg *pg, pg_op *op)
{
    const json_t *arr = op->rc ? NULL : json_object_get(op->res, "events");
    size_t n = json_array_size(arr);
    bt_event **v = bt_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = event_from(json_array_get(arr, i));
    ((bt_store_events_cb)op->cb)(op->ud, op->rc, ERRP(op), v, n);
    for (size_t i = 0; i < n; i++)
        bt_event_free(v[i]);
    free(v);
}

static void deliver_worker(bt_pg *pg, pg_op *op)
{
    bt_worker *w = op->rc ? NULL : worker_from(json_object_get(op->res, "worker"));
    ((bt_store_worker_cb)op->cb)(op->ud, op->rc, ERRP(op), w);
    bt_worker_free(w);
}

static void deliver_workers(bt_pg *pg, pg_op *op)
{
    const json_t *arr = op->rc ? NULL : json_object_get(op->res, "workers");
    size_t n = json_array_size(arr);
    bt_worker **v = bt_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = worker_from(json_array_get(arr, i));
    ((bt_store_workers_cb)op->cb)(op->ud, op->rc, ERRP(op), v, n);
    for (size_t i = 0; i < n; i++)
        bt_worker_free(v[i]);
    free(v);
}

static void deliver_approval(bt_pg *pg, pg_op *op)
{
    bt_approval *a = op->rc ? NULL : approval_from(json_object_get(op->res, "approval"));
    ((bt_store_approval_cb)op->cb)(op->ud, op->rc, ERRP(op), a);
    bt_approval_free(a);
}

static void deliver_approvals(bt_pg *pg, pg_op *op)
{
    const json_t *arr = op->rc ? NULL : json_object_get(op->res, "approvals");
    size_t n = json_array_size(arr);
    bt_approval **v = bt_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = approval_from(json_array_get(arr, i));
    ((bt_store_approvals_cb)op->cb)(op->ud, op->rc, ERRP(op), v, n);
    for (size_t i = 0; i < n; i++)
        bt_approval_free(v[i]);
    free(v);
}

static void deliver_lock(bt_pg *pg, pg_op *op)
{
    bt_lock holder;
    memset(&holder, 0, sizeof holder);
    const json_t *l = op->res ? json_object_get(op->res, "lock") : NULL;
    if (op->rc == BT_ECONFLICT && l) {
        holder.repo = (char *)jstr_or(l, "repo");
        holder.path = (char *)jstr_or(l, "path");
        holder.owner = (char *)jstr_or(l, "owner");
        holder.expires_at = jint(l, "expires_at");
    }
    ((bt_store_lock_cb)op->cb)(op->ud, op->rc, ERRP(op), op->rc == BT_ECONFLICT ? &holder : NULL);
}

static void deliver(bt_pg *pg, pg_op *op)
{
    op_settle(op);
    if (op->deliver)
        op->deliver(pg, op);
    op_free(op);
}

/* ---------------------------------------------------------------------------------
 * The publisher: subscribers see every committed event exactly once, in seq order.
 */
static void pend_add(bt_pg *pg, bt_event *e)
{
    if (e->seq <= pg->pub_seq) {
        bt_event_free(e);
        return;
    }
    if (pg->npend == pg->pend_cap) {
        pg->pend_cap = pg->pend_cap ? pg->pend_cap * 2 : 64;
        pg->pend = bt_xrealloc(pg->pend, pg->pend_cap * sizeof *pg->pend);
    }
    size_t i = pg->npend;
    while (i > 0 && pg->pend[i - 1]->seq > e->seq) {
        pg->pend[i] = pg->pend[i - 1];
        i--;
    }
    pg->pend[i] = e;
    pg->npend++;
}

static void pend_drop_upto(bt_pg *pg, int64_t seq)
{
    size_t k = 0;
    while (k < pg->npend && pg->pend[k]->seq <= seq)
        bt_event_free(pg->pend[k++]);
    if (k == 0)
        return;
    memmove(pg->pend, pg->pend + k, (pg->npend - k) * sizeof *pg->pend);
    pg->npend -= k;
}

static void publish(bt_pg *pg, const bt_event *e)
{
    if (e->seq <= pg->pub_seq)
        return;
    pg->pub_seq = e->seq;
    bt_store__publish(&pg->base, e);
}

static void fetch_done(bt_pg *pg, pg_op *op)
{
    pg->fetching = false;
    if (op->rc) {
        /* Try again on the next notification or commit. */
        return;
    }
    const json_t *arr = json_object_get(op->res, "events");
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        bt_event *e = event_from(json_array_get(arr, i));
        publish(pg, e);
        bt_event_free(e);
    }
    /* Everything up to the target is committed (commit order = seq order), so what the
     * read did not return never will exist (a rolled-back seq). */
    if ((int64_t)n < PG_FETCH_MAX && op->limit > pg->pub_seq)
        pg->pub_seq = op->limit;
    pend_drop_upto(pg, pg->pub_seq);
    pub_pump(pg);
}

static void pub_pump(bt_pg *pg)
{
    if (pg->base.nsubs == 0) {
        if (pg->known_max > pg->pub_seq)
            pg->pub_seq = pg->known_max;
        pend_drop_upto(pg, pg->pub_seq);
        return;
    }
    while (pg->npend && pg->pend[0]->seq <= pg->pub_seq + 1) {
        bt_event *e = pg->pend[0];
        memmove(pg->pend, pg->pend + 1, (pg->npend - 1) * sizeof *pg->pend);
        pg->npend--;
        publish(pg, e);
        bt_event_free(e);
        if (pg->base.nsubs == 0)
            return pub_pump(pg);
    }
    if (pg->known_max > pg->pub_seq && !pg->fetching && !pg->closing) {
        pg->fetching = true;
        pg_op *op = op_new("bt_event_read", false, fetch_done, NULL, NULL);
        op->limit = pg->known_max; /* the target, for fetch_done */
        json_t *a = json_pack("{sI sI si}", "after_seq", (json_int_t)pg->pub_seq, "max_seq",
                              (json_int_t)pg->known_max, "limit", PG_FETCH_MAX);
        submit(pg, op, a);
    }
}

static void pub_known(bt_pg *pg, int64_t seq)
{
    if (seq > pg->known_max)
        pg->known_max = seq;
}

/* ---------------------------------------------------------------------------------
 * Connections.
 */
static void poll_close_cb(uv_handle_t *h)
{
    bt_pg *pg = h->data;
    pg->handles--;
    free(h);
}

static void conn_unwatch(pg_conn *c)
{
    if (c->poll) {
        c->poll->data = c->pg;
        c->pg->handles++;
        uv_close((uv_handle_t *)c->poll, poll_close_cb);
        c->poll = NULL;
    }
    c->fd = -1;
    c->events = 0;
}

/* Watch the connection's socket for events (re-creating the handle if the socket
 * changed, which libpq may do while it tries addresses). */
static int conn_watch(pg_conn *c, int events)
{
    int fd = bt_pq.PQsocket(c->c);
    if (fd < 0)
        return BT_EIO;
    if (c->poll && c->fd != fd)
        conn_unwatch(c);
    if (!c->poll) {
        c->poll = bt_xmalloc(sizeof *c->poll);
        if (uv_poll_init(c->pg->base.loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            return BT_EIO;
        }
        c->poll->data = c;
        c->fd = fd;
        c->events = 0;
    }
    if (events != c->events) {
        c->events = events;
        uv_poll_start(c->poll, events, conn_poll_cb);
    }
    /* An idle store must not keep the loop alive (uv_run returns when it is idle):
     * only a connection with work in progress holds a reference. */
    if (!c->listener && c->state != C_IDLE)
        uv_ref((uv_handle_t *)c->poll);
    else
        uv_unref((uv_handle_t *)c->poll);
    return 0;
}

/* Fail every operation of the batch in flight with (rc, msg) and deliver them. */
static void batch_abort(pg_conn *c, int rc, const char *msg)
{
    bt_pg *pg = c->pg;
    pg_op *op = c->batch;
    c->batch = NULL;
    c->nsent = 0;
    json_decref(c->flush_res);
    c->flush_res = NULL;
    if (c->state == C_BUSY) {
        pg->inflight--;
        if (c->has_write)
            pg->inflight_writes--;
    }
    while (op) {
        pg_op *next = op->next;
        if (!op->rc) {
            json_decref(op->res);
            op->res = NULL;
            op->rc = bt_errorf(&op->err, rc, "%s", msg);
        }
        deliver(pg, op);
        op = next;
    }
}

static void retry_cb(uv_timer_t *t);
static void quiet_notices(void *arg, const char *message);

static void conn_broken(pg_conn *c, const char *why)
{
    bt_pg *pg = c->pg;
    char msg[768];
    snprintf(msg, sizeof msg,
             "lost the connection to PostgreSQL at %s (%s); the outcome of this operation is "
             "unknown",
             pg->where, why);
    bt_pg *owner = pg;
    conn_unwatch(c);
    if (c->c)
        bt_pq.PQfinish(c->c);
    c->c = NULL;
    int was = c->state;
    if (was == C_BUSY)
        batch_abort(c, BT_EUNAVAIL, msg);
    c->state = C_DOWN;
    if (!owner->closing) {
        c->retry_ms = c->retry_ms ? c->retry_ms * 2 : PG_RETRY_MS;
        if (c->retry_ms > PG_RETRY_MAX)
            c->retry_ms = PG_RETRY_MAX;
        uv_timer_start(&c->retry, retry_cb, (uint64_t)c->retry_ms, 0);
    }
    pump(owner);
}

static const char *conn_error(pg_conn *c)
{
    static const char none[] = "connection closed";
    return c->c && bt_pq.PQerrorMessage(c->c)[0] ? bt_pq.PQerrorMessage(c->c) : none;
}

/* The statements every new connection runs before use. */
static const char *conn_setup_sql(const pg_conn *c)
{
    return c->listener ? NULL
                       : "CREATE TEMP TABLE IF NOT EXISTS bt_evq (n bigserial, type text NOT "
                         "NULL, task_id text, run_id text, ts bigint NOT NULL, data json NOT "
                         "NULL) ON COMMIT DELETE ROWS";
}

static void conn_ready(pg_conn *c)
{
    c->retry_ms = 0;
    if (c->listener) {
        c->state = C_IDLE;
        conn_watch(c, UV_READABLE);
        return;
    }
    if (bt_pq.PQenterPipelineMode(c->c) != 1) {
        conn_broken(c, "cannot enter pipeline mode");
        return;
    }
    c->state = C_IDLE;
    conn_watch(c, UV_READABLE);
    pump(c->pg);
}

static void conn_start_setup(pg_conn *c)
{
    bt_pq.PQsetnonblocking(c->c, 1);
    c->state = C_SETUP;
    char sql[256];
    if (c->listener)
        snprintf(sql, sizeof sql, "LISTEN \"%s\"", c->pg->chan);
    else
        snprintf(sql, sizeof sql, "%s", conn_setup_sql(c));
    if (!bt_pq.PQsendQuery(c->c, sql)) {
        conn_broken(c, conn_error(c));
        return;
    }
    conn_watch(c, UV_READABLE | (bt_pq.PQflush(c->c) == 1 ? UV_WRITABLE : 0));
}

static void conn_connect_step(pg_conn *c)
{
    PostgresPollingStatusType st = bt_pq.PQconnectPoll(c->c);
    switch (st) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE))
            conn_broken(c, "no socket");
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, UV_WRITABLE))
            conn_broken(c, "no socket");
        return;
    case PGRES_POLLING_OK:
        conn_start_setup(c);
        return;
    default: {
        char why[512];
        snprintf(why, sizeof why, "%s", conn_error(c));
        trim_nl(why);
        conn_broken(c, why);
        return;
    }
    }
}

static void retry_cb(uv_timer_t *t)
{
    pg_conn *c = t->data;
    bt_pg *pg = c->pg;
    if (pg->closing || c->state != C_DOWN)
        return;
    c->c = bt_pq.PQconnectStartParams(pg->kw, pg->val, 1);
    if (!c->c || bt_pq.PQstatus(c->c) == CONNECTION_BAD) {
        conn_broken(c, c->c ? conn_error(c) : "out of memory");
        return;
    }
    bt_pq.PQsetNoticeProcessor(c->c, quiet_notices, NULL);
    c->state = C_CONNECTING;
    conn_connect_step(c);
}

/* Listener: notifications carry the highest seq of a commit. */
static void listener_read(pg_conn *c)
{
    bt_pg *pg = c->pg;
    if (!bt_pq.PQconsumeInput(c->c)) {
        char why[512];
        snprintf(why, sizeof why, "%s", conn_error(c));
        trim_nl(why);
        conn_broken(c, why);
        return;
    }
    while (!bt_pq.PQisBusy(c->c)) {
        PGresult *r = bt_pq.PQgetResult(c->c);
        if (!r)
            break;
        bt_pq.PQclear(r);
    }
    PGnotify *n;
    bool any = false;
    while ((n = bt_pq.PQnotifies(c->c)) != NULL) {
        pub_known(pg, strtoll(n->extra, NULL, 10));
        any = true;
        bt_pq.PQfreemem(n);
    }
    if (any)
        pub_pump(pg);
}

static void batch_finish(pg_conn *c);

static void conn_read_results(pg_conn *c)
{
    while (c->state == C_BUSY) {
        if (bt_pq.PQisBusy(c->c))
            return;
        PGresult *r = bt_pq.PQgetResult(c->c);
        if (!r) {
            c->qidx++;
            continue;
        }
        ExecStatusType st = bt_pq.PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            bt_pq.PQclear(r);
            batch_finish(c);
            return;
        }
        if (st == PGRES_TUPLES_OK) {
            if (!c->failed && bt_pq.PQntuples(r) == 1 && bt_pq.PQnfields(r) == 1 &&
                !bt_pq.PQgetisnull(r, 0, 0)) {
                json_error_t je;
                json_t *v = json_loadb(bt_pq.PQgetvalue(r, 0, 0),
                                       (size_t)bt_pq.PQgetlength(r, 0, 0), JSON_DECODE_ANY, &je);
                if (c->qidx < c->nsent)
                    c->sent[c->qidx]->res = v;
                else if (c->has_flush && c->qidx == c->nsent)
                    c->flush_res = v;
                else
                    json_decref(v);
            }
        } else if (st != PGRES_PIPELINE_ABORTED && st != PGRES_COMMAND_OK && !c->failed) {
            c->failed = true;
            c->failed_idx = c->qidx;
            const char *ss = bt_pq.PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(c->sqlstate, sizeof c->sqlstate, "%s", ss ? ss : "");
            snprintf(c->errmsg, sizeof c->errmsg, "%s", bt_pq.PQresultErrorMessage(r));
            trim_nl(c->errmsg);
        }
        bt_pq.PQclear(r);
    }
}

static void conn_setup_read(pg_conn *c)
{
    if (!bt_pq.PQconsumeInput(c->c)) {
        conn_broken(c, "setup failed");
        return;
    }
    while (!bt_pq.PQisBusy(c->c)) {
        PGresult *r = bt_pq.PQgetResult(c->c);
        if (!r) {
            conn_ready(c);
            return;
        }
        ExecStatusType st = bt_pq.PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", bt_pq.PQresultErrorMessage(r));
            trim_nl(why);
            bt_pq.PQclear(r);
            conn_broken(c, why);
            return;
        }
        bt_pq.PQclear(r);
    }
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
    pg_conn *c = h->data;
    if (c->state == C_CONNECTING) {
        conn_connect_step(c);
        return;
    }
    if (c->state == C_SETUP) {
        if (events & UV_WRITABLE) {
            int f = bt_pq.PQflush(c->c);
            if (f < 0) {
                conn_broken(c, conn_error(c));
                return;
            }
            conn_watch(c, UV_READABLE | (f == 1 ? UV_WRITABLE : 0));
        }
        if (events & UV_READABLE)
            conn_setup_read(c);
        return;
    }
    if (c->listener) {
        listener_read(c);
        return;
    }
    if (status < 0 && c->state == C_BUSY) {
        conn_broken(c, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        int f = bt_pq.PQflush(c->c);
        if (f < 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", conn_error(c));
            trim_nl(why);
            conn_broken(c, why);
            return;
        }
        conn_watch(c, UV_READABLE | (f == 1 ? UV_WRITABLE : 0));
    }
    if (events & UV_READABLE) {
        if (!bt_pq.PQconsumeInput(c->c)) {
            char why[512];
            snprintf(why, sizeof why, "%s", conn_error(c));
            trim_nl(why);
            conn_broken(c, why);
            return;
        }
        conn_read_results(c);
        /* An idle connection that became readable was closed by the server. */
        if (c->state == C_IDLE && bt_pq.PQstatus(c->c) == CONNECTION_BAD)
            conn_broken(c, "the server closed the connection");
    }
}

/* ---------------------------------------------------------------------------------
 * Batches.
 */
static void sent_push(pg_conn *c, pg_op *op)
{
    if (c->nsent == c->sent_cap) {
        c->sent_cap = c->sent_cap ? c->sent_cap * 2 : 64;
        c->sent = bt_xrealloc(c->sent, c->sent_cap * sizeof *c->sent);
    }
    c->sent[c->nsent++] = op;
}

static int batch_send(pg_conn *c)
{
    bt_pg *pg = c->pg;
    char sql[128];
    for (pg_op *op = c->batch; op; op = op->next) {
        if (!op->fn || op->rc)
            continue;
        snprintf(sql, sizeof sql, "SELECT %s($1::jsonb)", op->fn);
        const char *params[1] = {op->arg};
        if (!bt_pq.PQsendQueryParams(c->c, sql, 1, NULL, params, NULL, NULL, 0))
            return BT_EIO;
        sent_push(c, op);
    }
    if (c->has_write) {
        const char *params[2] = {pg->chan, pg->base.nsubs > 0 ? "t" : "f"};
        if (!bt_pq.PQsendQueryParams(c->c, "SELECT bt_flush_events($1, $2)", 2, NULL, params, NULL,
                                     NULL, 0))
            return BT_EIO;
        c->has_flush = true;
    }
    if (!bt_pq.PQpipelineSync(c->c))
        return BT_EIO;
    int f = bt_pq.PQflush(c->c);
    if (f < 0)
        return BT_EIO;
    conn_watch(c, UV_READABLE | (f == 1 ? UV_WRITABLE : 0));
    return 0;
}

static bool sqlstate_retryable(const char *ss)
{
    return strcmp(ss, "40P01") == 0 || strcmp(ss, "40001") == 0;
}

static int sqlstate_code(const char *ss)
{
    if (strncmp(ss, "23", 2) == 0)
        return BT_ECONFLICT;
    if (strncmp(ss, "22", 2) == 0)
        return BT_EINVAL;
    if (strncmp(ss, "08", 2) == 0 || strncmp(ss, "57", 2) == 0 || strncmp(ss, "53", 2) == 0)
        return BT_EUNAVAIL;
    if (strncmp(ss, "40", 2) == 0)
        return BT_ECONFLICT;
    return BT_EIO;
}

/* The committed events of a batch: publish, and give event_append ops their seq. */
static void batch_events(pg_conn *c)
{
    bt_pg *pg = c->pg;
    json_t *fr = c->flush_res;
    if (!json_is_object(fr))
        return;
    int64_t first = jint(fr, "first"), first_n = jint(fr, "first_n"), last = jint(fr, "last");
    for (size_t i = 0; i < c->nsent; i++) {
        pg_op *op = c->sent[i];
        if (op->deliver == deliver_event && op->res)
            op->ev.seq = first + (jint(op->res, "n") - first_n);
    }
    pub_known(pg, last);
    const json_t *evs = json_object_get(fr, "events");
    size_t n = json_array_size(evs);
    for (size_t i = 0; i < n; i++)
        pend_add(pg, event_from(json_array_get(evs, i)));
}

static void batch_finish(pg_conn *c)
{
    bt_pg *pg = c->pg;
    pg_op *ops = c->batch;
    c->batch = NULL;
    c->state = C_IDLE;
    pg->inflight--;
    if (c->has_write)
        pg->inflight_writes--;
    conn_watch(c, UV_READABLE);
    if (!c->failed) {
        /* Subscribers hear of the commit before the callers do. */
        batch_events(c);
        json_decref(c->flush_res);
        c->flush_res = NULL;
        c->nsent = 0;
        pub_pump(pg);
        while (ops) {
            pg_op *next = ops->next;
            deliver(pg, ops);
            ops = next;
        }
        pump(pg);
        return;
    }
    /* The transaction rolled back. One operation alone: report (or retry) it. More:
     * re-run each alone, in order, ahead of everything queued since. */
    json_decref(c->flush_res);
    c->flush_res = NULL;
    pg_op *culprit = c->failed_idx < c->nsent ? c->sent[c->failed_idx] : NULL;
    size_t nsql = c->nsent;
    c->nsent = 0;
    pg_op *requeue = NULL, **rt = &requeue;
    while (ops) {
        pg_op *next = ops->next;
        json_decref(ops->res);
        ops->res = NULL;
        if (ops->rc || !ops->fn) {
            ops->next = NULL;
            *rt = ops;
            rt = &ops->next;
        } else if (nsql > 1 || (sqlstate_retryable(c->sqlstate) && ++ops->tries < PG_SOLO_TRIES)) {
            ops->solo = true;
            ops->next = NULL;
            *rt = ops;
            rt = &ops->next;
        } else {
            const char *what = ops == culprit || !culprit ? c->errmsg : "rolled back";
            ops->rc = bt_errorf(&ops->err, sqlstate_code(c->sqlstate), "PostgreSQL %s: %s", ops->fn,
                                what);
            ops->next = NULL;
            *rt = ops;
            rt = &ops->next;
        }
        ops = next;
    }
    if (requeue) {
        *rt = pg->q_head;
        if (!pg->q_head)
            pg->q_tail = rt;
        pg->q_head = requeue;
    }
    pump(pg);
}

static pg_conn *free_conn(bt_pg *pg)
{
    for (int i = 0; i < pg->npool; i++)
        if (pg->pool[i].state == C_IDLE)
            return &pg->pool[i];
    return NULL;
}

static bool all_down(const bt_pg *pg)
{
    for (int i = 0; i < pg->npool; i++)
        if (pg->pool[i].state != C_DOWN)
            return false;
    return true;
}

static pg_op *q_pop(bt_pg *pg)
{
    pg_op *op = pg->q_head;
    pg->q_head = op->next;
    if (!pg->q_head)
        pg->q_tail = &pg->q_head;
    op->next = NULL;
    return op;
}

/* Send what the queue holds, as far as connections and ordering rules allow. */
static void pump(bt_pg *pg)
{
    while (pg->q_head) {
        pg_op *op = pg->q_head;
        if (!op->fn || op->rc) {
            if (op->barrier && pg->inflight)
                break;
            deliver(pg, q_pop(pg));
            continue;
        }
        if (!op->write && pg->inflight_writes)
            break;
        pg_conn *c = free_conn(pg);
        if (!c) {
            if (all_down(pg)) {
                /* Nothing can run it now: fail fast rather than queue forever. */
                op = q_pop(pg);
                op->rc = bt_errorf(&op->err, BT_EUNAVAIL,
                                   "no connection to PostgreSQL at %s; is the server running? "
                                   "(reconnecting in the background)",
                                   pg->where);
                deliver(pg, op);
                continue;
            }
            break;
        }
        /* Build the batch. */
        pg_op *head = NULL, **tail = &head;
        size_t n = 0;
        bool write = false;
        while (pg->q_head && n < PG_MAX_BATCH) {
            pg_op *x = pg->q_head;
            if (x->barrier)
                break;
            if (x->solo && n > 0)
                break;
            x = q_pop(pg);
            *tail = x;
            tail = &x->next;
            n++;
            if (x->fn && !x->rc && x->write)
                write = true;
            if (x->solo)
                break;
        }
        c->batch = head;
        c->nsent = 0;
        c->qidx = 0;
        c->failed = false;
        c->has_flush = false;
        c->has_write = write;
        c->sqlstate[0] = 0;
        c->errmsg[0] = 0;
        c->state = C_BUSY;
        pg->inflight++;
        if (write)
            pg->inflight_writes++;
        if (batch_send(c)) {
            char why[512];
            snprintf(why, sizeof why, "%s", conn_error(c));
            trim_nl(why);
            conn_broken(c, why);
        }
    }
    /* Whatever is still queued waits for a batch to finish or a connection to come
     * back; both pump again. */
    if (pg->idle_on) {
        uv_idle_stop(&pg->idle);
        pg->idle_on = false;
    }
}

static void idle_cb(uv_idle_t *h)
{
    pump(h->data);
}

/* ---------------------------------------------------------------------------------
 * Operations.
 */
#define PG(s) ((bt_pg *)(s))
#define CB(f) ((pg_any_fn)(f))

static void pg_flush(bt_store *s, bt_store_done_cb cb, void *ud)
{
    pg_op *op = op_new(NULL, false, deliver_done, CB(cb), ud);
    op->barrier = true;
    enqueue(PG(s), op);
}

static bool need(bt_pg *pg, pg_op *op, const char *v, const char *what)
{
    if (v && *v)
        return true;
    char msg[128];
    snprintf(msg, sizeof msg, "%s is required", what);
    submit_errorf(pg, op, BT_EINVAL, msg);
    return false;
}

static void pg_task_create(bt_store *s, const bt_task_input *in, bt_store_create_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_task_create", true, deliver_create, CB(cb), ud);
    bt_error err = BT_ERROR_INIT;
    if (bt_store__check_task_input(in, &err)) {
        submit_error(pg, op, &err);
        return;
    }
    char id[BT_ID_LEN + 1];
    bt_store__new_id(s, id);
    json_t *a = json_object();
    set_str(a, "id", id);
    set_str(a, "source", in->source);
    set_str(a, "external_id", in->external_id);
    set_str(a, "dedupe_key", in->dedupe_key && *in->dedupe_key ? in->dedupe_key : NULL);
    set_str(a, "identifier", in->identifier && *in->identifier ? in->identifier : NULL);
    set_str(a, "project", in->project);
    set_str(a, "title", in->title);
    set_str(a, "body", in->body);
    set_str(a, "workflow", in->workflow);
    if (in->labels)
        json_object_set_new(a, "labels", json_deep_copy(in->labels));
    if (in->meta)
        json_object_set_new(a, "meta", json_deep_copy(in->meta));
    json_object_set_new(a, "priority", json_integer(in->priority));
    json_object_set_new(
        a, "max_attempts",
        json_integer(in->max_attempts > 0 ? in->max_attempts : s->opts.default_max_attempts));
    json_object_set_new(a, "draft", json_boolean(in->draft));
    submit(pg, op, a);
}

static void by_id(bt_store *s, const char *fn, bool write, pg_deliver_fn d, pg_any_fn cb, void *ud,
                  const char *key, const char *id, const char *what)
{
    pg_op *op = op_new(fn, write, d, cb, ud);
    if (!need(PG(s), op, id, what))
        return;
    submit(PG(s), op, json_pack("{ss}", key, id));
}

static void pg_task_get(bt_store *s, const char *id, bt_store_task_cb cb, void *ud)
{
    by_id(s, "bt_task_get", false, deliver_task, CB(cb), ud, "id", id, "a task id");
}

static void pg_task_get_by_key(bt_store *s, const char *key, bt_store_task_cb cb, void *ud)
{
    by_id(s, "bt_task_get_by_key", false, deliver_task, CB(cb), ud, "key", key, "a dedupe key");
}

static void pg_task_list(bt_store *s, const bt_task_filter *f, bt_store_tasks_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_task_list", false, deliver_tasks, CB(cb), ud);
    int limit = f && f->limit ? f->limit : 100;
    if (limit < 1 || limit > 1000) {
        submit_errorf(pg, op, BT_EINVAL, "limit must be between 1 and 1000");
        return;
    }
    op->limit = limit;
    json_t *a = json_object();
    json_object_set_new(a, "limit", json_integer(limit + 1));
    if (f) {
        if (f->status_mask) {
            json_t *st = json_array();
            for (int i = 0; i < BT_TASK__COUNT; i++)
                if (f->status_mask & (1u << i))
                    json_array_append_new(st, json_string(bt_task_status_name((bt_task_status)i)));
            json_object_set_new(a, "statuses", st);
        }
        set_str(a, "project", f->project);
        set_str(a, "source", f->source);
        set_str(a, "label", f->label);
        set_str(a, "workflow", f->workflow);
        set_str(a, "dedupe_key", f->dedupe_key);
        set_str(a, "text", f->text && *f->text ? f->text : NULL);
        set_str(a, "cursor", f->cursor && *f->cursor ? f->cursor : NULL);
        json_object_set_new(a, "newest_first", json_boolean(f->newest_first));
    }
    submit(pg, op, a);
}

static void pg_task_update(bt_store *s, const char *id, const bt_task_patch *p, bt_store_task_cb cb,
                           void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_task_update", true, deliver_task, CB(cb), ud);
    if (!need(pg, op, id, "a task id"))
        return;
    if (p->title && !*p->title) {
        submit_errorf(pg, op, BT_EINVAL, "a task needs a non-empty title");
        return;
    }
    if (p->labels && !json_is_array(p->labels)) {
        submit_errorf(pg, op, BT_EINVAL, "labels must be an array of strings");
        return;
    }
    if (p->meta && !json_is_object(p->meta)) {
        submit_errorf(pg, op, BT_EINVAL, "meta must be an object");
        return;
    }
    if (p->set_max_attempts && p->max_attempts < 1) {
        submit_errorf(pg, op, BT_EINVAL, "max_attempts must be positive");
        return;
    }
    json_t *a = json_pack("{ss}", "id", id);
    set_str(a, "title", p->title);
    set_str(a, "body", p->body);
    set_str(a, "project", p->project);
    set_str(a, "workflow", p->workflow);
    if (p->labels)
        json_object_set_new(a, "labels", json_deep_copy(p->labels));
    if (p->meta)
        json_object_set_new(a, "meta", json_deep_copy(p->meta));
    if (p->set_priority)
        json_object_set_new(a, "priority", json_integer(p->priority));
    if (p->set_max_attempts)
        json_object_set_new(a, "max_attempts", json_integer(p->max_attempts));
    submit(pg, op, a);
}

static void pg_task_transition(bt_store *s, const char *id, bt_task_status to, const char *reason,
                               bt_store_task_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_task_transition", true, deliver_task, CB(cb), ud);
    if (!need(pg, op, id, "a task id"))
        return;
    if ((unsigned)to >= BT_TASK__COUNT) {
        submit_errorf(pg, op, BT_EINVAL, "unknown task status");
        return;
    }
    json_t *a = json_pack("{ss ss}", "id", id, "to", bt_task_status_name(to));
    set_str(a, "reason", reason);
    submit(pg, op, a);
}

static void pg_claim(bt_store *s, const bt_claim_opts *o, bt_store_tasks_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_claim", true, deliver_tasks, CB(cb), ud);
    bt_error err = BT_ERROR_INIT;
    if (bt_store__check_claim(o, &err)) {
        submit_error(pg, op, &err);
        return;
    }
    json_t *a = json_pack("{ss sI si}", "owner", o->owner, "lease_ms", (json_int_t)o->lease_ms,
                          "max", o->max > 0 ? o->max : 1);
    set_str(a, "project", o->project);
    set_str(a, "workflow", o->workflow);
    set_str(a, "task_id", o->task_id);
    submit(pg, op, a);
}

static json_t *held_args(bt_pg *pg, pg_op *op, const char *id, const char *owner, int64_t fencing)
{
    if (!need(pg, op, id, "a task id") || !need(pg, op, owner, "the lease owner"))
        return NULL;
    return json_pack("{ss ss sI sI sI}", "id", id, "owner", owner, "fencing", (json_int_t)fencing,
                     "backoff_base", (json_int_t)pg->base.opts.backoff_base_ms, "backoff_max",
                     (json_int_t)pg->base.opts.backoff_max_ms);
}

static void pg_heartbeat(bt_store *s, const char *id, const char *owner, int64_t fencing,
                         int64_t lease_ms, bt_store_task_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_heartbeat", true, deliver_task, CB(cb), ud);
    if (lease_ms <= 0) {
        submit_errorf(pg, op, BT_EINVAL, "a heartbeat needs a positive lease");
        return;
    }
    json_t *a = held_args(pg, op, id, owner, fencing);
    if (!a)
        return;
    json_object_set_new(a, "lease_ms", json_integer(lease_ms));
    submit(pg, op, a);
}

static void pg_complete(bt_store *s, const char *id, const char *owner, int64_t fencing,
                        const json_t *result, bt_store_task_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_complete", true, deliver_task, CB(cb), ud);
    json_t *a = held_args(pg, op, id, owner, fencing);
    if (!a)
        return;
    if (result)
        json_object_set_new(a, "result", json_deep_copy(result));
    submit(pg, op, a);
}

static void pg_fail(bt_store *s, const char *id, const char *owner, int64_t fencing,
                    const char *error, bool retryable, bt_store_fail_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_fail", true, deliver_fail, CB(cb), ud);
    json_t *a = held_args(pg, op, id, owner, fencing);
    if (!a)
        return;
    set_str(a, "error", error);
    json_object_set_new(a, "retryable", json_boolean(retryable));
    submit(pg, op, a);
}

static void pg_release(bt_store *s, const char *id, const char *owner, int64_t fencing,
                       const char *reason, bt_store_task_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_release", true, deliver_task, CB(cb), ud);
    json_t *a = held_args(pg, op, id, owner, fencing);
    if (!a)
        return;
    set_str(a, "reason", reason);
    submit(pg, op, a);
}

static void pg_requeue_expired(bt_store *s, bt_store_count_cb cb, void *ud)
{
    submit(PG(s), op_new("bt_requeue_expired", true, deliver_count, CB(cb), ud), json_object());
}

static void pg_task_stats(bt_store *s, bt_store_stats_cb cb, void *ud)
{
    submit(PG(s), op_new("bt_task_stats", false, deliver_stats, CB(cb), ud), json_object());
}

static void pg_cleanup_stale(bt_store *s, int64_t max_age_ms, bt_store_count_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_cleanup_stale", true, deliver_count, CB(cb), ud);
    if (max_age_ms < 0) {
        submit_errorf(pg, op, BT_EINVAL, "max_age must not be negative");
        return;
    }
    submit(pg, op, json_pack("{sI}", "max_age", (json_int_t)max_age_ms));
}

static void pg_clear_completed(bt_store *s, bt_store_count_cb cb, void *ud)
{
    submit(PG(s), op_new("bt_clear_completed", true, deliver_count, CB(cb), ud), json_object());
}

static void pg_run_create(bt_store *s, const char *task_id, const char *workflow,
                          const char *workflow_version, const json_t *state, bt_store_run_cb cb,
                          void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_run_create", true, deliver_run, CB(cb), ud);
    if (!need(pg, op, task_id, "a task id") || !need(pg, op, workflow, "a workflow name"))
        return;
    if (state && !json_is_object(state)) {
        submit_errorf(pg, op, BT_EINVAL, "a run's state must be an object");
        return;
    }
    char id[BT_ID_LEN + 1];
    bt_store__new_id(s, id);
    json_t *a = json_pack("{ss ss ss}", "id", id, "task_id", task_id, "workflow", workflow);
    set_str(a, "workflow_version", workflow_version);
    if (state)
        json_object_set_new(a, "state", json_deep_copy(state));
    submit(pg, op, a);
}

static void pg_run_get(bt_store *s, const char *run_id, bt_store_run_cb cb, void *ud)
{
    by_id(s, "bt_run_get", false, deliver_run, CB(cb), ud, "id", run_id, "a run id");
}

static void pg_run_list(bt_store *s, const char *task_id, const bt_run_status *status, int limit,
                        bt_store_runs_cb cb, void *ud)
{
    json_t *a = json_pack("{si}", "limit", limit > 0 ? (limit > 1000 ? 1000 : limit) : 100);
    set_str(a, "task_id", task_id);
    if (status)
        set_str(a, "status", bt_run_status_name(*status));
    submit(PG(s), op_new("bt_run_list", false, deliver_runs, CB(cb), ud), a);
}

static void pg_run_update(bt_store *s, const char *run_id, const bt_run_patch *p,
                          bt_store_run_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_run_update", true, deliver_run, CB(cb), ud);
    if (!need(pg, op, run_id, "a run id"))
        return;
    if (p->state && !json_is_object(p->state)) {
        submit_errorf(pg, op, BT_EINVAL, "a run's state must be an object");
        return;
    }
    json_t *a = json_pack("{ss}", "id", run_id);
    if (p->set_status)
        set_str(a, "status", bt_run_status_name(p->status));
    if (p->set_iteration)
        json_object_set_new(a, "iteration", json_integer(p->iteration));
    set_str(a, "output", p->output);
    set_str(a, "error", p->error);
    if (p->state)
        json_object_set_new(a, "state", json_deep_copy(p->state));
    submit(pg, op, a);
}

static void pg_step_start(bt_store *s, const char *run_id, const char *step_key, int32_t iteration,
                          int32_t attempt, int32_t seq, const char *agent, const char *role,
                          bt_store_step_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_step_start", true, deliver_step, CB(cb), ud);
    if (!need(pg, op, run_id, "a run id") || !need(pg, op, step_key, "a step key"))
        return;
    char id[BT_ID_LEN + 1];
    bt_store__new_id(s, id);
    json_t *a = json_pack("{ss ss ss si si si}", "id", id, "run_id", run_id, "step_key", step_key,
                          "iteration", (int)iteration, "attempt", (int)attempt, "seq", (int)seq);
    set_str(a, "agent", agent);
    set_str(a, "role", role);
    submit(pg, op, a);
}

static void pg_step_finish(bt_store *s, const char *step_id, const bt_step_result *r,
                           bt_store_step_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_step_finish", true, deliver_step, CB(cb), ud);
    if (!need(pg, op, step_id, "a step id"))
        return;
    if ((unsigned)r->status >= BT_STEP__COUNT) {
        submit_errorf(pg, op, BT_EINVAL, "unknown step status");
        return;
    }
    json_t *a =
        json_pack("{ss ss si sI sI sf}", "id", step_id, "status", bt_step_status_name(r->status),
                  "exit_code", (int)r->exit_code, "tokens_in", (json_int_t)r->tokens_in,
                  "tokens_out", (json_int_t)r->tokens_out, "cost_usd", r->cost_usd);
    set_str(a, "agent", r->agent);
    set_str(a, "fallback_from", r->fallback_from);
    set_str(a, "output", r->output);
    set_str(a, "error_class", r->error_class);
    set_str(a, "error", r->error);
    submit(pg, op, a);
}

static void pg_step_list(bt_store *s, const char *run_id, bt_store_steps_cb cb, void *ud)
{
    by_id(s, "bt_step_list", false, deliver_steps, CB(cb), ud, "run_id", run_id, "a run id");
}

static void pg_spend(bt_store *s, const bt_spend_query *q, bt_store_spend_cb cb, void *ud)
{
    json_t *a = json_object();
    if (q) {
        set_str(a, "task_id", q->task_id);
        set_str(a, "project", q->project);
        if (q->since_ms > 0)
            json_object_set_new(a, "since", json_integer((json_int_t)q->since_ms));
    }
    submit(PG(s), op_new("bt_spend", false, deliver_spend, CB(cb), ud), a);
}

static void pg_usage(bt_store *s, const bt_usage_query *q, bt_store_usage_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_usage", false, deliver_usage, CB(cb), ud);
    bt_error err = BT_ERROR_INIT;
    if (bt_store__check_usage(q, &err) < 0) {
        submit_error(pg, op, &err);
        return;
    }
    json_t *a = json_pack("{sI sI sI}", "since", (json_int_t)q->since_ms, "until",
                          (json_int_t)q->until_ms, "hours_since", (json_int_t)q->hours_since_ms);
    set_str(a, "project", q->project);
    submit(pg, op, a);
}

static void pg_event_append(bt_store *s, const char *type, const char *task_id, const char *run_id,
                            const json_t *data, bt_store_event_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_event_append", true, deliver_event, CB(cb), ud);
    if (!need(pg, op, type, "an event type"))
        return;
    if (data && !json_is_object(data)) {
        submit_errorf(pg, op, BT_EINVAL, "event data must be an object");
        return;
    }
    if ((task_id && strlen(task_id) > BT_ID_LEN) || (run_id && strlen(run_id) > BT_ID_LEN)) {
        submit_errorf(pg, op, BT_EINVAL, "event task_id/run_id must be ids");
        return;
    }
    op->ev.type = bt_xstrdup(type);
    snprintf(op->ev.task_id, sizeof op->ev.task_id, "%s", task_id ? task_id : "");
    snprintf(op->ev.run_id, sizeof op->ev.run_id, "%s", run_id ? run_id : "");
    op->ev.data = data ? json_deep_copy(data) : json_object();
    op->ev.ts = bt_store__now(s);
    json_t *a = json_pack("{ss sO}", "type", type, "data", op->ev.data);
    set_str(a, "task_id", task_id && *task_id ? task_id : NULL);
    set_str(a, "run_id", run_id && *run_id ? run_id : NULL);
    json_object_set_new(a, "now", json_integer(op->ev.ts)); /* the stored ts is this reading */
    submit(pg, op, a);
}

static void pg_event_read(bt_store *s, const bt_event_filter *f, bt_store_events_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_event_read", false, deliver_events, CB(cb), ud);
    int limit = f->limit ? f->limit : 500;
    if (limit < 1 || limit > 5000) {
        submit_errorf(pg, op, BT_EINVAL, "limit must be between 1 and 5000");
        return;
    }
    json_t *a = json_pack("{sI si}", "after_seq", (json_int_t)(f->after_seq > 0 ? f->after_seq : 0),
                          "limit", limit);
    set_str(a, "task_id", f->task_id);
    set_str(a, "run_id", f->run_id);
    set_str(a, "type_prefix", f->type_prefix && *f->type_prefix ? f->type_prefix : NULL);
    submit(pg, op, a);
}

static void pg_event_last_seq(bt_store *s, bt_store_count_cb cb, void *ud)
{
    submit(PG(s), op_new("bt_event_last_seq", false, deliver_count, CB(cb), ud), json_object());
}

static void pg_worker_upsert(bt_store *s, const bt_worker_input *in, bt_store_worker_cb cb,
                             void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_worker_upsert", true, deliver_worker, CB(cb), ud);
    if (!need(pg, op, in->id, "a worker id"))
        return;
    if (in->info && !json_is_object(in->info)) {
        submit_errorf(pg, op, BT_EINVAL, "worker info must be an object");
        return;
    }
    json_t *a = json_pack("{ss}", "id", in->id);
    set_str(a, "ip", in->ip);
    set_str(a, "status", in->status);
    set_str(a, "current_task", in->current_task);
    if (in->info)
        json_object_set_new(a, "info", json_deep_copy(in->info));
    submit(pg, op, a);
}

static void pg_worker_get(bt_store *s, const char *id, bt_store_worker_cb cb, void *ud)
{
    by_id(s, "bt_worker_get", false, deliver_worker, CB(cb), ud, "id", id, "a worker id");
}

static void pg_worker_list(bt_store *s, bt_store_workers_cb cb, void *ud)
{
    submit(PG(s), op_new("bt_worker_list", false, deliver_workers, CB(cb), ud), json_object());
}

static void pg_approval_create(bt_store *s, const bt_approval_input *in, bt_store_approval_cb cb,
                               void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_approval_create", true, deliver_approval, CB(cb), ud);
    if (!need(pg, op, in->run_id, "a run id") || !need(pg, op, in->step_key, "a step key"))
        return;
    if (in->context && !json_is_object(in->context)) {
        submit_errorf(pg, op, BT_EINVAL, "approval context must be an object");
        return;
    }
    char id[BT_ID_LEN + 1];
    bt_store__new_id(s, id);
    json_t *a = json_pack("{ss ss ss sI}", "id", id, "run_id", in->run_id, "step_key", in->step_key,
                          "expires_at", (json_int_t)in->expires_at);
    set_str(a, "task_id", in->task_id && *in->task_id ? in->task_id : NULL);
    set_str(a, "prompt", in->prompt);
    if (in->context)
        json_object_set_new(a, "context", json_deep_copy(in->context));
    submit(pg, op, a);
}

static void pg_approval_get(bt_store *s, const char *id, bt_store_approval_cb cb, void *ud)
{
    by_id(s, "bt_approval_get", false, deliver_approval, CB(cb), ud, "id", id, "an approval id");
}

static void pg_approval_list(bt_store *s, const bt_approval_status *status, const char *run_id,
                             bt_store_approvals_cb cb, void *ud)
{
    json_t *a = json_object();
    if (status)
        set_str(a, "status", bt_approval_status_name(*status));
    set_str(a, "run_id", run_id);
    submit(PG(s), op_new("bt_approval_list", false, deliver_approvals, CB(cb), ud), a);
}

static void pg_approval_decide(bt_store *s, const char *id, bool approve, const char *by,
                               const char *comment, bt_store_approval_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_approval_decide", true, deliver_approval, CB(cb), ud);
    if (!need(pg, op, id, "an approval id"))
        return;
    json_t *a = json_pack("{ss sb}", "id", id, "approve", approve);
    set_str(a, "by", by);
    set_str(a, "comment", comment);
    submit(pg, op, a);
}

static void pg_lock_acquire(bt_store *s, const char *repo, const char *const *paths, size_t n,
                            const char *owner, int64_t ttl_ms, bt_store_lock_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_lock_acquire", true, deliver_lock, CB(cb), ud);
    if (!need(pg, op, repo, "a repository") || !need(pg, op, owner, "a lock owner"))
        return;
    if (n == 0 || ttl_ms <= 0) {
        submit_errorf(pg, op, BT_EINVAL, "a lock needs at least one path and a positive ttl");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *p = paths[i] ? paths[i] : "";
        while (p[0] == '.' && p[1] == '/')
            p += 2;
        size_t len = strlen(p);
        while (len > 0 && p[len - 1] == '/')
            len--;
        json_array_append_new(arr, json_stringn(p, len));
    }
    json_t *a = json_pack("{ss ss sI so}", "repo", repo, "owner", owner, "ttl_ms",
                          (json_int_t)ttl_ms, "paths", arr);
    submit(pg, op, a);
}

static void pg_lock_release(bt_store *s, const char *repo, const char *owner, bt_store_count_cb cb,
                            void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_lock_release", true, deliver_count, CB(cb), ud);
    if (!need(pg, op, owner, "a lock owner"))
        return;
    json_t *a = json_pack("{ss}", "owner", owner);
    set_str(a, "repo", repo);
    submit(pg, op, a);
}

static void pg_agent_call_add(bt_store *s, const bt_agent_call *c, bt_store_done_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_agent_call_add", true, deliver_done, CB(cb), ud);
    bt_error err = BT_ERROR_INIT;
    if (bt_store__check_agent_call(c, &err)) {
        submit_error(pg, op, &err);
        return;
    }
    json_t *a = json_pack("{ss ss sI sI sI}", "agent", c->agent, "outcome", c->outcome,
                          "duration_ms", (json_int_t)c->duration_ms, "tokens",
                          (json_int_t)c->tokens, "at", (json_int_t)c->at);
    if (c->error_class && *c->error_class)
        set_str(a, "error_class", c->error_class);
    if (c->task_id[0])
        set_str(a, "task_id", c->task_id);
    submit(pg, op, a);
}

static void pg_agent_calls(bt_store *s, int64_t since_ms, int per_agent, bt_store_agent_calls_cb cb,
                           void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new("bt_agent_calls", false, deliver_calls, CB(cb), ud);
    if (per_agent < 1) {
        char msg[96];
        snprintf(msg, sizeof msg, "agent calls: per_agent must be at least 1 (got %d)", per_agent);
        submit_errorf(pg, op, BT_EINVAL, msg);
        return;
    }
    submit(pg, op,
           json_pack("{sI si}", "since", (json_int_t)(since_ms > 0 ? since_ms : 0), "per_agent",
                     per_agent));
}

static void pg_agent_calls_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud)
{
    submit(PG(s), op_new("bt_agent_calls_prune", true, deliver_count, CB(cb), ud),
           json_pack("{sI}", "before", (json_int_t)before_ms));
}

static void delivery_op(bt_store *s, const char *fn, const char *source, const char *delivery_id,
                        bt_store_count_cb cb, void *ud)
{
    bt_pg *pg = PG(s);
    pg_op *op = op_new(fn, true, deliver_count, CB(cb), ud);
    bt_error err = BT_ERROR_INIT;
    if (bt_store__check_delivery(source, delivery_id, &err)) {
        submit_error(pg, op, &err);
        return;
    }
    submit(pg, op, json_pack("{ss ss}", "source", source, "delivery_id", delivery_id));
}

static void pg_delivery_record(bt_store *s, const char *source, const char *delivery_id,
                               bt_store_count_cb cb, void *ud)
{
    delivery_op(s, "bt_delivery_record", source, delivery_id, cb, ud);
}

static void pg_delivery_forget(bt_store *s, const char *source, const char *delivery_id,
                               bt_store_count_cb cb, void *ud)
{
    delivery_op(s, "bt_delivery_forget", source, delivery_id, cb, ud);
}

static void pg_deliveries_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud)
{
    submit(PG(s), op_new("bt_deliveries_prune", true, deliver_count, CB(cb), ud),
           json_pack("{sI}", "before", (json_int_t)before_ms));
}

static int pg_connections(const bt_store *s)
{
    const bt_pg *pg = (const bt_pg *)s;
    int n = 0;
    for (int i = 0; i < pg->npool; i++)
        n += pg->pool[i].state >= C_SETUP;
    n += pg->listen.state >= C_SETUP;
    return n;
}

/* ---------------------------------------------------------------------------------
 * Closing.
 */
static void handle_close_cb(uv_handle_t *h)
{
    bt_pg *pg = h->data;
    pg->handles--;
}

static void conn_close(bt_pg *pg, pg_conn *c)
{
    conn_unwatch(c);
    if (c->c)
        bt_pq.PQfinish(c->c);
    c->c = NULL;
    c->state = C_DOWN;
    uv_timer_stop(&c->retry);
    c->retry.data = pg;
    pg->handles++;
    uv_close((uv_handle_t *)&c->retry, handle_close_cb);
    free(c->sent);
    c->sent = NULL;
}

static void pg_free(bt_pg *pg)
{
    free(pg->pool);
    free(pg->url);
    free(pg->hostaddr);
    free(pg->options);
    free(pg->where);
    free(pg->schema);
    free(pg);
}

static void pg_close(bt_store *s)
{
    bt_pg *pg = PG(s);
    pg->closing = true;
    /* Finish what was asked: every queued or in-flight operation gets its callback. */
    while (pg->q_head || pg->inflight) {
        pump(pg);
        if (!pg->q_head && !pg->inflight)
            break;
        uv_run(pg->base.loop, UV_RUN_ONCE);
    }
    pend_drop_upto(pg, INT64_MAX);
    free(pg->pend);
    uv_idle_stop(&pg->idle);
    pg->handles++;
    uv_close((uv_handle_t *)&pg->idle, handle_close_cb);
    for (int i = 0; i < pg->npool; i++)
        conn_close(pg, &pg->pool[i]);
    conn_close(pg, &pg->listen);
    while (pg->handles > 0)
        uv_run(pg->base.loop, UV_RUN_ONCE);
    pg_free(pg);
}

static const bt_store_vtable pg_vtable = {
    .name = "postgres",
    .close = pg_close,
    .connections = pg_connections,
    .flush = pg_flush,
    .task_create = pg_task_create,
    .task_get = pg_task_get,
    .task_get_by_key = pg_task_get_by_key,
    .task_list = pg_task_list,
    .task_update = pg_task_update,
    .task_transition = pg_task_transition,
    .claim = pg_claim,
    .heartbeat = pg_heartbeat,
    .complete = pg_complete,
    .fail = pg_fail,
    .release = pg_release,
    .requeue_expired = pg_requeue_expired,
    .task_stats = pg_task_stats,
    .cleanup_stale = pg_cleanup_stale,
    .clear_completed = pg_clear_completed,
    .run_create = pg_run_create,
    .run_get = pg_run_get,
    .run_list = pg_run_list,
    .run_update = pg_run_update,
    .step_start = pg_step_start,
    .step_finish = pg_step_finish,
    .step_list = pg_step_list,
    .spend = pg_spend,
    .usage = pg_usage,
    .event_append = pg_event_append,
    .event_read = pg_event_read,
    .event_last_seq = pg_event_last_seq,
    .worker_upsert = pg_worker_upsert,
    .worker_get = pg_worker_get,
    .worker_list = pg_worker_list,
    .approval_create = pg_approval_create,
    .approval_get = pg_approval_get,
    .approval_list = pg_approval_list,
    .approval_decide = pg_approval_decide,
    .lock_acquire = pg_lock_acquire,
    .lock_release = pg_lock_release,
    .agent_call_add = pg_agent_call_add,
    .agent_calls = pg_agent_calls,
    .agent_calls_prune = pg_agent_calls_prune,
    .delivery_record = pg_delivery_record,
    .delivery_forget = pg_delivery_forget,
    .deliveries_prune = pg_deliveries_prune,
};

/* ---------------------------------------------------------------------------------
 * Opening (blocking: runs at start-up).
 */

/* Split baton's own parameters (schema=) off the URL; the rest goes to libpq. */
static int parse_url(bt_pg *pg, const char *url, bt_error *err)
{
    const char *q = strchr(url, '?');
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_add(&sb, url, q ? (size_t)(q - url) : strlen(url));
    char sep = '?';
    while (q && *q) {
        q++;
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > 7 && strncmp(q, "schema=", 7) == 0) {
            free(pg->schema);
            pg->schema = bt_xstrndup(q + 7, len - 7);
        } else if (len) {
            bt_strbuf_addch(&sb, sep);
            bt_strbuf_add(&sb, q, len);
            sep = '&';
        }
        q = end;
    }
    pg->url = bt_strbuf_detach(&sb, NULL);
    if (pg->schema) {
        const char *p = pg->schema;
        bool ok = *p && strlen(p) <= 40 && !(*p >= '0' && *p <= '9');
        for (; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok)
            return bt_errorf(err, BT_EINVAL,
                             "PostgreSQL schema '%s' is not valid: use 1-40 lowercase letters, "
                             "digits and '_' (not starting with a digit)",
                             pg->schema);
    }
    return 0;
}

static void set_conninfo(bt_pg *pg)
{
    int n = 0;
    pg->kw[n] = "dbname";
    pg->val[n++] = pg->url;
    pg->kw[n] = "application_name";
    pg->val[n++] = "baton";
    if (pg->options) {
        pg->kw[n] = "options";
        pg->val[n++] = pg->options;
    }
    if (pg->hostaddr) {
        pg->kw[n] = "hostaddr";
        pg->val[n++] = pg->hostaddr;
    }
    pg->kw[n] = NULL;
    pg->val[n] = NULL;
}

/* Server NOTICEs ("relation already exists, skipping") are not the user's business. */
static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *connect_blocking(bt_pg *pg, bt_error *err)
{
    PGconn *c = bt_pq.PQconnectdbParams(pg->kw, pg->val, 1);
    if (!c) {
        bt_errorf(err, BT_ENOMEM, "out of memory connecting to PostgreSQL");
        return NULL;
    }
    if (bt_pq.PQstatus(c) != CONNECTION_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", bt_pq.PQerrorMessage(c));
        trim_nl(why);
        const char *host = bt_pq.PQhost(c), *port = bt_pq.PQport(c);
        bt_errorf(err, BT_EUNAVAIL,
                  "cannot connect to PostgreSQL at %s:%s: %s; is the server running and the "
                  "URL right?",
                  host && *host ? host : "localhost", port && *port ? port : "5432", why);
        bt_pq.PQfinish(c);
        return NULL;
    }
    bt_pq.PQsetNoticeProcessor(c, quiet_notices, NULL);
    return c;
}

/* Run sql; 0 or BT_EIO with the server's message. res (optional) keeps the result. */
static int exec_sql(PGconn *c, const char *sql, PGresult **res, bt_error *err, const char *what)
{
    PGresult *r = bt_pq.PQexec(c, sql);
    ExecStatusType st = bt_pq.PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s",
                 r ? bt_pq.PQresultErrorMessage(r) : bt_pq.PQerrorMessage(c));
        trim_nl(why);
        bt_pq.PQclear(r);
        return bt_errorf(err, BT_EIO, "PostgreSQL: %s failed: %s", what, why);
    }
    if (res)
        *res = r;
    else
        bt_pq.PQclear(r);
    return 0;
}

static int migrate(bt_pg *pg, PGconn *c, bt_error *err)
{
    int rc = exec_sql(c, "SELECT pg_advisory_lock(hashtext('baton.migrate'))", NULL, err,
                      "taking the migration lock");
    if (rc)
        return rc;
    if (pg->schema) {
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS \"%s\"", pg->schema);
        rc = exec_sql(c, sql, NULL, err, "creating the schema");
    }
    if (!rc)
        rc = exec_sql(c,
                      "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY "
                      "KEY, applied_at bigint NOT NULL)",
                      NULL, err, "creating schema_migrations");
    PGresult *r = NULL;
    if (!rc)
        rc = exec_sql(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", &r, err,
                      "reading the schema version");
    int version = r ? atoi(bt_pq.PQgetvalue(r, 0, 0)) : 0;
    bt_pq.PQclear(r);
    if (!rc && version > bt_pg_migration_count)
        rc = bt_errorf(err, BT_EVERSION,
                       "the PostgreSQL database was migrated by a newer baton (schema version "
                       "%d; this baton knows up to %d): upgrade baton or use another database",
                       version, bt_pg_migration_count);
    for (int v = version; !rc && v < bt_pg_migration_count; v++) {
        char what[64], ins[160];
        snprintf(what, sizeof what, "migration %d", v + 1);
        snprintf(ins, sizeof ins,
                 "INSERT INTO schema_migrations (version, applied_at) VALUES (%d, "
                 "(extract(epoch from now()) * 1000)::bigint)",
                 v + 1);
        rc = exec_sql(c, "BEGIN", NULL, err, what);
        if (!rc)
            rc = exec_sql(c, bt_pg_migrations[v], NULL, err, what);
        if (!rc)
            rc = exec_sql(c, ins, NULL, err, what);
        if (!rc)
            rc = exec_sql(c, "COMMIT", NULL, err, what);
        else
            bt_pq.PQclear(bt_pq.PQexec(c, "ROLLBACK"));
    }
    bt_error ignore = BT_ERROR_INIT;
    exec_sql(c, "SELECT pg_advisory_unlock(hashtext('baton.migrate'))", NULL, &ignore, "unlock");
    return rc;
}

static int conn_init(bt_pg *pg, pg_conn *c, PGconn *pc, bool listener, bt_error *err)
{
    c->pg = pg;
    c->c = pc;
    c->fd = -1;
    c->listener = listener;
    uv_timer_init(pg->base.loop, &c->retry);
    c->retry.data = c;
    char sql[256];
    if (listener)
        snprintf(sql, sizeof sql, "LISTEN \"%s\"", pg->chan);
    else
        snprintf(sql, sizeof sql, "%s", conn_setup_sql(c));
    int rc = exec_sql(pc, sql, NULL, err, listener ? "LISTEN" : "preparing a connection");
    if (rc)
        return rc;
    bt_pq.PQsetnonblocking(pc, 1);
    if (!listener && bt_pq.PQenterPipelineMode(pc) != 1)
        return bt_errorf(err, BT_EIO, "PostgreSQL: cannot enter pipeline mode: %s",
                         bt_pq.PQerrorMessage(pc));
    c->state = C_IDLE;
    if (conn_watch(c, UV_READABLE))
        return bt_errorf(err, BT_EIO, "cannot watch the PostgreSQL socket");
    return 0;
}

int bt_store_postgres_open(uv_loop_t *loop, const char *url, const bt_store_options *opts,
                           bt_store **out, bt_error *err)
{
    *out = NULL;
    int rc = bt_pq_load(err);
    if (rc < 0)
        return rc;
    bt_pg *pg = bt_xcalloc(1, sizeof *pg);
    bt_store__init(&pg->base, &pg_vtable, loop, opts);
    pg->q_tail = &pg->q_head;
    rc = parse_url(pg, url, err);
    if (rc) {
        pg_free(pg);
        return rc;
    }
    if (pg->schema) {
        size_t n = strlen(pg->schema) + 32;
        pg->options = bt_xmalloc(n);
        snprintf(pg->options, n, "-c search_path=%s", pg->schema);
    }
    snprintf(pg->chan, sizeof pg->chan, "baton_events%s%s", pg->schema ? "_" : "",
             pg->schema ? pg->schema : "");
    set_conninfo(pg);

    PGconn *c0 = connect_blocking(pg, err);
    if (!c0) {
        pg_free(pg);
        return BT_EUNAVAIL;
    }
    {
        const char *host = bt_pq.PQhost(c0), *port = bt_pq.PQport(c0), *addr = bt_pq.PQhostaddr(c0);
        size_t n = strlen(host ? host : "") + strlen(port ? port : "") + 16;
        pg->where = bt_xmalloc(n);
        snprintf(pg->where, n, "%s:%s", host && *host ? host : "localhost", port ? port : "");
        /* Pin the address: later (re)connects from the loop must not block in DNS. */
        if (addr && *addr && host && host[0] != '/' && !strchr(pg->url, ','))
            pg->hostaddr = bt_xstrdup(addr);
        set_conninfo(pg);
    }
    rc = migrate(pg, c0, err);
    PGresult *r = NULL;
    if (!rc)
        rc = exec_sql(c0, "SELECT coalesce(max(seq), 0) FROM events", &r, err,
                      "reading the last event");
    if (rc) {
        bt_pq.PQfinish(c0);
        pg_free(pg);
        return rc;
    }
    pg->pub_seq = pg->known_max = strtoll(bt_pq.PQgetvalue(r, 0, 0), NULL, 10);
    bt_pq.PQclear(r);

    uv_idle_init(loop, &pg->idle);
    pg->idle.data = pg;
    pg->npool = pg->base.opts.pool_size;
    pg->pool = bt_xcalloc((size_t)pg->npool, sizeof *pg->pool);
    for (int i = 0; i < pg->npool; i++) {
        pg->pool[i].pg = pg;
        pg->pool[i].fd = -1;
    }
    pg->listen.pg = pg;
    pg->listen.fd = -1;
    for (int i = 0; !rc && i < pg->npool; i++) {
        PGconn *pc = i == 0 ? c0 : connect_blocking(pg, err);
        if (!pc) {
            rc = BT_EUNAVAIL;
            break;
        }
        rc = conn_init(pg, &pg->pool[i], pc, false, err);
    }
    if (!rc) {
        PGconn *lc = connect_blocking(pg, err);
        if (!lc)
            rc = BT_EUNAVAIL;
        else
            rc = conn_init(pg, &pg->listen, lc, true, err);
    }
    if (rc) {
        /* conn_close needs every retry timer initialised. */
        for (int i = 0; i < pg->npool; i++)
            if (!pg->pool[i].retry.loop)
                uv_timer_init(loop, &pg->pool[i].retry);
        if (!pg->listen.retry.loop)
            uv_timer_init(loop, &pg->listen.retry);
        pg->closing = true;
        pg_close(&pg->base);
        return rc;
    }
    *out = &pg->base;
    return 0;
}
