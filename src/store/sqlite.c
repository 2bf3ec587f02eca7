/*
 * sqlite.c - the SQLite store backend (the default, `sqlite:PATH`).
 *
 * Statements run on the loop thread: each is microseconds. What is not microseconds
 * is the fsync at COMMIT, so this backend group-commits (docs/storage.md):
 *
 *   - The first write of a loop turn opens `BEGIN IMMEDIATE` (taking SQLite's write
 *     lock, so read-check-write inside one operation is atomic across processes too).
 *     Every operation then runs at once inside that transaction, wrapped in a
 *     SAVEPOINT so a failing operation undoes only itself.
 *   - Completions (the one write a busy queue issues per item) wait instead, and the
 *     next statement of any other operation, or the end of the turn, runs every
 *     waiting one as a batch: one UPDATE ... FROM (VALUES ...) RETURNING and one
 *     multi-row INSERT of their events (defer_flush). Claims are one UPDATE ...
 *     RETURNING per call. Task events are written as compact text (js_task).
 *   - Results are copied into a completion queue; events go to a pending list.
 *   - A uv_check handle (with a uv_idle handle that stops the loop from sleeping in
 *     poll while something is pending) COMMITs at the end of the turn: one fsync for
 *     every write of the turn. Then it publishes the events to subscribers and fires
 *     the callbacks, in issue order. Both handles are stopped when nothing is pending,
 *     so an idle store never keeps uv_run alive.
 *
 * Durability: WAL with synchronous=FULL, so a commit is synced to the WAL before any
 * callback acknowledges it: an acknowledged write survives power loss, not only a
 * process crash. Group commit is what makes that affordable.
 *
 * Schema changes are versioned migrations recorded in schema_migrations; a database
 * migrated by a newer baton is refused with BT_EVERSION.
 */
#include <stddef.h> /* before store.h: base/id.h uses size_t */

#include "store/store_impl.h"

#include "base/mem.h"
#include "base/path.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BATON_VERSION
#define BATON_VERSION "0.0.0"
#endif

/* ---------------------------------------------------------------------------------
 * Migrations. Append only: never edit a released migration, add a new one.
 */
static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE TABLE tasks ("
    " id TEXT PRIMARY KEY,"
    " source TEXT NOT NULL,"
    " external_id TEXT,"
    " dedupe_key TEXT,"
    " identifier TEXT NOT NULL,"
    " project TEXT,"
    " title TEXT NOT NULL,"
    " body TEXT,"
    " workflow TEXT,"
    " labels TEXT NOT NULL DEFAULT '[]',"
    " meta TEXT NOT NULL DEFAULT '{}',"
    " priority INTEGER NOT NULL,"
    " status TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " max_attempts INTEGER NOT NULL,"
    " next_attempt_at INTEGER NOT NULL DEFAULT 0,"
    " lease_owner TEXT,"
    " lease_expires_at INTEGER NOT NULL DEFAULT 0,"
    " fencing INTEGER NOT NULL DEFAULT 0,"
    " result TEXT,"
    " error TEXT,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " started_at INTEGER NOT NULL DEFAULT 0,"
    " finished_at INTEGER NOT NULL DEFAULT 0);"
    /* One open task per dedupe key, enforced by the database itself. */
    "CREATE UNIQUE INDEX tasks_open_key ON tasks(dedupe_key)"
    " WHERE dedupe_key IS NOT NULL AND status IN ('draft','pending','in_progress');"
    "CREATE INDEX tasks_key ON tasks(dedupe_key, created_at) WHERE dedupe_key IS NOT NULL;"
    /* The queue: only ready rows, already in claim order. */
    "CREATE INDEX tasks_ready ON tasks(priority, created_at, identifier, id)"
    " WHERE status = 'pending';"
    "CREATE INDEX tasks_leased ON tasks(lease_expires_at) WHERE status = 'in_progress';"
    /* Cleanup by age; partial so the planner never prefers it for the queue. */
    "CREATE INDEX tasks_finished ON tasks(status, finished_at)"
    " WHERE status IN ('completed','failed','cancelled');"
    "CREATE TABLE runs ("
    " id TEXT PRIMARY KEY,"
    " task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    " workflow TEXT NOT NULL,"
    " workflow_version TEXT,"
    " status TEXT NOT NULL,"
    " iteration INTEGER NOT NULL DEFAULT 1,"
    " cost_usd REAL NOT NULL DEFAULT 0,"
    " tokens_in INTEGER NOT NULL DEFAULT 0,"
    " tokens_out INTEGER NOT NULL DEFAULT 0,"
    " output TEXT,"
    " error TEXT,"
    " state TEXT NOT NULL DEFAULT '{}',"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " finished_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX runs_task ON runs(task_id, id);"
    "CREATE TABLE steps ("
    " id TEXT PRIMARY KEY,"
    " run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    " step_key TEXT NOT NULL,"
    " iteration INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " seq INTEGER NOT NULL,"
    " agent TEXT,"
    " role TEXT,"
    " fallback_from TEXT,"
    " status TEXT NOT NULL,"
    " output TEXT,"
    " exit_code INTEGER NOT NULL DEFAULT 0,"
    " error_class TEXT,"
    " error TEXT,"
    " tokens_in INTEGER NOT NULL DEFAULT 0,"
    " tokens_out INTEGER NOT NULL DEFAULT 0,"
    " cost_usd REAL NOT NULL DEFAULT 0,"
    " started_at INTEGER NOT NULL DEFAULT 0,"
    " finished_at INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (run_id, step_key, iteration, attempt));"
    "CREATE TABLE events ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " type TEXT NOT NULL,"
    " task_id TEXT,"
    " run_id TEXT,"
    " ts INTEGER NOT NULL,"
    " data TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX events_task ON events(task_id, seq) WHERE task_id IS NOT NULL;"
    "CREATE INDEX events_run ON events(run_id, seq) WHERE run_id IS NOT NULL;"
    "CREATE TABLE workers ("
    " id TEXT PRIMARY KEY,"
    " ip TEXT,"
    " status TEXT NOT NULL DEFAULT 'idle',"
    " current_task TEXT,"
    " last_seen INTEGER NOT NULL,"
    " info TEXT NOT NULL DEFAULT '{}',"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE approvals ("
    " id TEXT PRIMARY KEY,"
    " run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    " task_id TEXT,"
    " step_key TEXT NOT NULL,"
    " prompt TEXT,"
    " context TEXT NOT NULL DEFAULT '{}',"
    " status TEXT NOT NULL,"
    " decided_by TEXT,"
    " comment TEXT,"
    " expires_at INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " decided_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX approvals_status ON approvals(status, run_id);"
    "CREATE TABLE locks ("
    " repo TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " owner TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " PRIMARY KEY (repo, path, owner));"
    "CREATE INDEX locks_owner ON locks(owner);",
    /* 2: the partial indexes on status say it with OR, not IN. SQLite evaluates an IN
     * list of three or more constants by building a temporary b-tree, and it evaluates
     * a partial index's WHERE on every write of the row: each queue transition built
     * four of them (a tenth of the CPU per item). Same rows, same uniqueness. */
    "DROP INDEX tasks_open_key;"
    "CREATE UNIQUE INDEX tasks_open_key ON tasks(dedupe_key) WHERE dedupe_key IS NOT NULL AND"
    " (status = 'draft' OR status = 'pending' OR status = 'in_progress');"
    "DROP INDEX tasks_finished;"
    "CREATE INDEX tasks_finished ON tasks(status, finished_at)"
    " WHERE status = 'completed' OR status = 'failed' OR status = 'cancelled';",
    /* 3: spend queries (bt_store_spend, budgets) by project and by day. tasks_project is
     * partial and names no column the queue's UPDATEs set, so claims and completions
     * never touch it; steps_finished changes once per step, when it finishes. */
    "CREATE INDEX tasks_project ON tasks(project) WHERE project IS NOT NULL;"
    "CREATE INDEX steps_finished ON steps(finished_at);",
    /* 4: agent calls (resilience statistics and breaker history, bt_store_agent_call_add).
     * agent_calls_agent_at serves the per-agent "most recent N" read (a skip scan over
     * the agents, then a backward range per agent) and nothing else; prune scans. */
    "CREATE TABLE agent_calls ("
    " id INTEGER PRIMARY KEY,"
    " agent TEXT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " error_class TEXT,"
    " duration_ms INTEGER NOT NULL DEFAULT 0,"
    " tokens INTEGER NOT NULL DEFAULT 0,"
    " at INTEGER NOT NULL,"
    " task_id TEXT);"
    "CREATE INDEX agent_calls_agent_at ON agent_calls(agent, at);",
    /* 5: webhook deliveries already taken (bt_store_delivery_record): the primary key is
     * the replay check; webhook_deliveries_at serves the prune by age. */
    "CREATE TABLE webhook_deliveries ("
    " source TEXT NOT NULL,"
    " delivery_id TEXT NOT NULL,"
    " received_at INTEGER NOT NULL,"
    " PRIMARY KEY (source, delivery_id)) WITHOUT ROWID;"
    "CREATE INDEX webhook_deliveries_at ON webhook_deliveries(received_at);",
    /* 6: the dashboard's usage read (bt_store_usage) counts runs created and runs
     * finished in a time range. runs_finished is partial (a run gets its entry once, when
     * it finishes); the read says "finished_at > 0" so the planner may use it. */
    "CREATE INDEX runs_created ON runs(created_at);"
    "CREATE INDEX runs_finished ON runs(finished_at) WHERE finished_at > 0;",
};
#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

#define BUSY_TIMEOUT_MS 5000

/* ---------------------------------------------------------------------------------
 * Completions: what a callback receives, held until the turn's commit.
 */
enum {
    K_DONE,
    K_TASK,
    K_CREATE,
    K_TASKS,
    K_FAIL,
    K_COUNT,
    K_STATS,
    K_RUN,
    K_RUNS,
    K_STEP,
    K_STEPS,
    K_EVENT,
    K_EVENTS,
    K_WORKER,
    K_WORKERS,
    K_APPROVAL,
    K_APPROVALS,
    K_LOCK,
    K_SPEND,
    K_CALLS,
    K_USAGE,
};

typedef void (*anycb)(void);

typedef struct sq_done {
    int kind;
    bool write; /* fails if the commit fails */
    anycb cb;
    void *ud;
    int rc;
    bt_error err;
    void *one;    /* the single result (bt_task*, bt_run*, ...) */
    void **items; /* array results */
    size_t n;
    char *cursor;
    bool created;
    bt_fail_outcome outcome;
    int64_t count;
    union {
        bt_task_stats stats;
        bt_spend spend;
        bt_usage usage;
    };
} sq_done;

typedef struct sq_stmt {
    char *sql;
    sqlite3_stmt *st;
} sq_stmt;

/* An event appended in the open transaction, published after the commit. The hot task
 * paths keep only the compact JSON text they inserted (ev->data NULL): the json_t is
 * parsed from it at publish time, and only when someone is subscribed. Other events
 * keep the json_t their caller built (text NULL). */
typedef struct sq_pev {
    bt_event *ev;
    char *text;
} sq_pev;

/* The uv handles live apart from the store: uv_close completes on a later loop turn,
 * after the store itself is gone. */
typedef struct sq_handles {
    uv_check_t check;
    uv_idle_t idle;
    int closing;
} sq_handles;

/* Rows per multi-row statement: powers of two up to this (one cached statement each). */
#define MULTI_MAX   64
#define MULTI_SIZES 7 /* 1, 2, 4, ..., 64 */

/* A completion waiting for its batch (see defer_flush). */
typedef struct sq_defer {
    char *id, *owner;
    char *result; /* JSON text or NULL */
    int64_t fencing, now;
    size_t slot; /* its entry in the completion queue */
} sq_defer;

/* Statements of the queue's hot path, looked up by slot instead of by hashing their
 * text (they are also in the cache, which owns them). */
enum {
    HOT_SAVEPOINT,
    HOT_RELEASE,
    HOT_EV_INSERT,
    HOT_CLAIM,
    HOT_COMPLETE,
    HOT_LOAD,
    HOT_SAVE_STATE,
    HOT__COUNT
};

typedef struct sq_store {
    bt_store base;
    sqlite3 *db;
    char *path;
    sq_handles *h;
    bool active; /* handles started */
    bool in_txn; /* BEGIN IMMEDIATE issued, COMMIT pending */
    bool closing;
    BT_VEC(sq_done) done;
    BT_VEC(sq_pev) events; /* appended in the open transaction */
    size_t ev_mark;        /* events before the current operation's savepoint */
    sq_stmt *cache;        /* open-addressing hash by SQL text */
    size_t cache_cap, cache_len;
    sqlite3_stmt *hot[HOT__COUNT];
    sqlite3_stmt *ev_multi[MULTI_SIZES];  /* multi-row event INSERTs of 1, 2, 4, ... rows */
    sqlite3_stmt *cpl_multi[MULTI_SIZES]; /* batched completions, likewise */
    BT_VEC(sq_defer) defer;               /* completions not yet run */
} sq_store;

static void defer_flush(sq_store *q);

static void sq_turn(sq_store *q);
static void on_check(uv_check_t *h);
static void on_idle(uv_idle_t *h);

/* ---------------------------------------------------------------------------------
 * Low-level helpers.
 */
static int sq_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return BT_EBUSY;
    case SQLITE_CONSTRAINT:
        return BT_ECONFLICT;
    case SQLITE_NOMEM:
        return BT_ENOMEM;
    default:
        return BT_EIO;
    }
}

static int sq_fail(sq_store *q, bt_error *err, int rc, const char *what)
{
    if ((rc & 0xff) == SQLITE_BUSY)
        return bt_errorf(err, BT_EBUSY,
                         "sqlite %s: database %s is locked by another process for more than "
                         "%d ms; retry, or stop the other writer",
                         what, q->path, BUSY_TIMEOUT_MS);
    return bt_errorf(err, sq_code(rc), "sqlite %s on %s: %s", what, q->path, sqlite3_errmsg(q->db));
}

static int sq_exec(sq_store *q, const char *sql, bt_error *err)
{
    int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_fail(q, err, rc, sql);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* A reset, unbound prepared statement for sql, from the cache. NULL on error. */
static sqlite3_stmt *sq_prep(sq_store *q, const char *sql, bt_error *err)
{
    if (q->defer.len) /* whatever runs next must see the waiting completions */
        defer_flush(q);
    if (q->cache_len * 2 >= q->cache_cap) {
        size_t ncap = q->cache_cap ? q->cache_cap * 2 : 64;
        sq_stmt *nc = bt_xcalloc(ncap, sizeof *nc);
        for (size_t i = 0; i < q->cache_cap; i++) {
            if (!q->cache[i].sql)
                continue;
            size_t j = hash_str(q->cache[i].sql) & (ncap - 1);
            while (nc[j].sql)
                j = (j + 1) & (ncap - 1);
            nc[j] = q->cache[i];
        }
        free(q->cache);
        q->cache = nc;
        q->cache_cap = ncap;
    }
    size_t j = hash_str(sql) & (q->cache_cap - 1);
    while (q->cache[j].sql) {
        if (strcmp(q->cache[j].sql, sql) == 0) {
            sqlite3_stmt *st = q->cache[j].st;
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return st;
        }
        j = (j + 1) & (q->cache_cap - 1);
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        sq_fail(q, err, rc, "prepare");
        return NULL;
    }
    q->cache[j].sql = bt_xstrdup(sql);
    q->cache[j].st = st;
    q->cache_len++;
    return st;
}

/* sq_prep for a hot statement: sql must always be the same text for a slot. */
static sqlite3_stmt *sq_hot(sq_store *q, int slot, const char *sql, bt_error *err)
{
    if (q->defer.len)
        defer_flush(q);
    sqlite3_stmt *st = q->hot[slot];
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    return q->hot[slot] = sq_prep(q, sql, err);
}

static void b_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Binds a compact serialisation of v (NULL binds SQL NULL). */
static void b_json(sqlite3_stmt *st, int i, const json_t *v)
{
    if (!v) {
        sqlite3_bind_null(st, i);
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    sqlite3_bind_text(st, i, s ? s : "null", -1, SQLITE_TRANSIENT);
    free(s);
}

static char *c_str(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? bt_xstrdup((const char *)s) : NULL;
}

static void c_id(sqlite3_stmt *st, int i, char out[BT_ID_LEN + 1])
{
    const unsigned char *s = sqlite3_column_text(st, i);
    snprintf(out, BT_ID_LEN + 1, "%s", s ? (const char *)s : "");
}

/* Parsed JSON column; dflt (a new reference, may be NULL) when NULL or unparsable. */
static json_t *c_json(sqlite3_stmt *st, int i, json_t *dflt)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    if (s && (s[0] == '[' || s[0] == '{') && s[1] == s[0] + 2 && !s[2]) {
        json_decref(dflt); /* "[]" or "{}", most labels and meta: no parse */
        return s[0] == '[' ? json_array() : json_object();
    }
    json_t *v = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
    if (!v)
        return dflt;
    json_decref(dflt);
    return v;
}

/* ---------------------------------------------------------------------------------
 * Transactions, savepoints and the end-of-turn commit.
 */
static void sq_activate(sq_store *q)
{
    if (q->active || q->closing)
        return;
    q->active = true;
    uv_idle_start(&q->h->idle, on_idle);
    uv_check_start(&q->h->check, on_check);
}

/* Runs one cached, parameterless statement (savepoints: parsed once, not per op). */
static int sq_run(sq_store *q, int slot, const char *sql, bt_error *err)
{
    sqlite3_stmt *st = slot >= 0 ? sq_hot(q, slot, sql, err) : sq_prep(q, sql, err);
    if (!st)
        return err ? err->code : BT_EIO;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sq_fail(q, err, rc, sql);
}

/* Opens the turn's transaction if needed and a savepoint for one operation. */
static int sq_wbegin(sq_store *q, bt_error *err)
{
    if (q->defer.len) /* before this operation's savepoint: they are not part of it */
        defer_flush(q);
    if (!q->in_txn) {
        int rc = sq_run(q, -1, "BEGIN IMMEDIATE", err);
        if (rc)
            return rc;
        q->in_txn = true;
        sq_activate(q);
    }
    q->ev_mark = q->events.len;
    return sq_run(q, HOT_SAVEPOINT, "SAVEPOINT op", err);
}

static void pev_free(sq_pev *p)
{
    bt_event_free(p->ev);
    free(p->text);
}

/* Ends the operation's savepoint: kept when rc == 0, undone (with its events) else. */
static void sq_wend(sq_store *q, int rc)
{
    if (rc) {
        sq_run(q, -1, "ROLLBACK TO op", NULL);
        while (q->events.len > q->ev_mark)
            pev_free(&q->events.items[--q->events.len]);
    }
    sq_run(q, HOT_RELEASE, "RELEASE op", NULL);
}

static void done_free(sq_done *d)
{
    switch (d->kind) {
    case K_TASK:
    case K_CREATE:
    case K_FAIL:
        bt_task_free(d->one);
        break;
    case K_TASKS:
        for (size_t i = 0; i < d->n; i++)
            bt_task_free(d->items[i]);
        break;
    case K_RUN:
        bt_run_free(d->one);
        break;
    case K_RUNS:
        for (size_t i = 0; i < d->n; i++)
            bt_run_free(d->items[i]);
        break;
    case K_STEP:
        bt_step_free(d->one);
        break;
    case K_STEPS:
        for (size_t i = 0; i < d->n; i++)
            bt_step_free(d->items[i]);
        break;
    case K_EVENT:
        bt_event_free(d->one);
        break;
    case K_EVENTS:
        for (size_t i = 0; i < d->n; i++)
            bt_event_free(d->items[i]);
        break;
    case K_WORKER:
        bt_worker_free(d->one);
        break;
    case K_WORKERS:
        for (size_t i = 0; i < d->n; i++)
            bt_worker_free(d->items[i]);
        break;
    case K_APPROVAL:
        bt_approval_free(d->one);
        break;
    case K_APPROVALS:
        for (size_t i = 0; i < d->n; i++)
            bt_approval_free(d->items[i]);
        break;
    case K_CALLS:
        for (size_t i = 0; i < d->n; i++)
            bt_agent_call_free(d->items[i]);
        break;
    case K_USAGE:
        bt_store__usage_clear(&d->usage);
        break;
    case K_LOCK: {
        bt_lock *l = d->one;
        if (l) {
            free(l->repo);
            free(l->path);
            free(l->owner);
            free(l);
        }
        break;
    }
    default:
        break;
    }
    free(d->items);
    free(d->cursor);
}

static void done_fire(sq_done *d)
{
    const bt_error *e = d->rc ? &d->err : NULL;
    void *ud = d->ud;
    int rc = d->rc;
    switch (d->kind) {
    case K_DONE:
        ((bt_store_done_cb)d->cb)(ud, rc, e);
        break;
    case K_TASK:
        ((bt_store_task_cb)d->cb)(ud, rc, e, d->one);
        break;
    case K_CREATE:
        ((bt_store_create_cb)d->cb)(ud, rc, e, d->one, d->created);
        break;
    case K_TASKS:
        ((bt_store_tasks_cb)d->cb)(ud, rc, e, (bt_task *const *)d->items, d->n, d->cursor);
        break;
    case K_FAIL:
        ((bt_store_fail_cb)d->cb)(ud, rc, e, d->one, d->outcome);
        break;
    case K_COUNT:
        ((bt_store_count_cb)d->cb)(ud, rc, e, d->count);
        break;
    case K_STATS:
        ((bt_store_stats_cb)d->cb)(ud, rc, e, rc ? NULL : &d->stats);
        break;
    case K_RUN:
        ((bt_store_run_cb)d->cb)(ud, rc, e, d->one);
        break;
    case K_RUNS:
        ((bt_store_runs_cb)d->cb)(ud, rc, e, (bt_run *const *)d->items, d->n);
        break;
    case K_STEP:
        ((bt_store_step_cb)d->cb)(ud, rc, e, d->one);
        break;
    case K_STEPS:
        ((bt_store_steps_cb)d->cb)(ud, rc, e, (bt_step *const *)d->items, d->n);
        break;
    case K_EVENT:
        ((bt_store_event_cb)d->cb)(ud, rc, e, d->one);
        break;
    case K_EVENTS:
        ((bt_store_events_cb)d->cb)(ud, rc, e, (bt_event *const *)d->items, d->n);
        break;
    case K_WORKER:
        ((bt_store_worker_cb)d->cb)(ud, rc, e, d->one);
        break;
    case K_WORKERS:
        ((bt_store_workers_cb)d->cb)(ud, rc, e, (bt_worker *const *)d->items, d->n);
        break;
    case K_APPROVAL:
        ((bt_store_approval_cb)d->cb)(ud, rc, e, d->one);
        break;
    case K_APPROVALS:
        ((bt_store_approvals_cb)d->cb)(ud, rc, e, (bt_approval *const *)d->items, d->n);
        break;
    case K_LOCK:
        ((bt_store_lock_cb)d->cb)(ud, rc, e, d->one);
        break;
    case K_SPEND:
        ((bt_store_spend_cb)d->cb)(ud, rc, e, rc ? NULL : &d->spend);
        break;
    case K_CALLS:
        ((bt_store_agent_calls_cb)d->cb)(ud, rc, e, (bt_agent_call *const *)d->items, d->n);
        break;
    case K_USAGE:
        ((bt_store_usage_cb)d->cb)(ud, rc, e, rc ? NULL : &d->usage);
        break;
    default:
        break;
    }
}

/* Queues a completion (copied) and makes sure the end-of-turn handler runs. */
static void sq_push(sq_store *q, sq_done *d)
{
    if (d->rc == 0)
        d->err.code = 0;
    bt_vec_push(&q->done, *d);
    sq_activate(q);
}

/* Commit the turn's transaction, publish its events, fire every queued callback. */
static void sq_turn(sq_store *q)
{
    int crc = 0;
    bt_error cerr = BT_ERROR_INIT;
    if (q->defer.len)
        defer_flush(q);
    if (q->in_txn) {
        crc = sq_run(q, -1, "COMMIT", &cerr);
        if (crc)
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
        q->in_txn = false;
    }
    /* Take the batch: callbacks may issue new operations, which start the next one. */
    sq_done *items = q->done.items;
    size_t n = q->done.len;
    q->done.items = NULL;
    q->done.len = q->done.cap = 0;
    sq_pev *evs = q->events.items;
    size_t nev = q->events.len;
    q->events.items = NULL;
    q->events.len = q->events.cap = 0;
    /* the next turn is likely this one's size: one allocation instead of regrowing */
    bt_vec_reserve(&q->done, n);
    bt_vec_reserve(&q->events, nev);

    for (size_t i = 0; crc == 0 && i < nev; i++) {
        bt_event *e = evs[i].ev;
        if (q->base.nsubs == 0)
            continue; /* nobody listening: the text need not become json */
        if (!e->data && evs[i].text)
            e->data = json_loads(evs[i].text, 0, NULL);
        if (!e->data)
            e->data = json_object();
        bt_store__publish(&q->base, e);
    }
    for (size_t i = 0; i < nev; i++)
        pev_free(&evs[i]);
    free(evs);
    for (size_t i = 0; i < n; i++) {
        sq_done *d = &items[i];
        if (crc && d->write && d->rc == 0) {
            d->rc = crc;
            d->err = cerr;
            done_free(d);
            d->one = NULL;
            d->items = NULL;
            d->n = 0;
            d->cursor = NULL;
        }
        done_fire(d);
        done_free(d);
    }
    free(items);
}

static void on_check(uv_check_t *h)
{
    sq_store *q = h->data;
    if (!q)
        return;
    sq_turn(q);
    if (!q->in_txn && q->done.len == 0 && q->defer.len == 0 && q->active) {
        q->active = false;
        uv_idle_stop(&q->h->idle);
        uv_check_stop(&q->h->check);
    }
}

static void on_idle(uv_idle_t *h)
{
    (void)h; /* exists only so poll does not block while a commit is due */
}

/* ---------------------------------------------------------------------------------
 * Events.
 */
/* Inserts one events row (data is compact JSON text, borrowed) and queues it for
 * publication: the queued event owns pdata (a json_t, may be NULL) or ptext (the text,
 * may be NULL); both are freed here on error. */
static int ev_insert(sq_store *q, const char *type, const char *task_id, const char *run_id,
                     const char *text, int64_t now, json_t *pdata, char *ptext, bt_event **out,
                     bt_error *err)
{
    sqlite3_stmt *st = sq_hot(q, HOT_EV_INSERT,
                              "INSERT INTO events(type, task_id, run_id, ts, data) "
                              "VALUES(?,?,?,?,?)",
                              err);
    int rc = SQLITE_OK;
    if (st) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        if (task_id && *task_id)
            sqlite3_bind_text(st, 2, task_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 2);
        if (run_id && *run_id)
            sqlite3_bind_text(st, 3, run_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 3);
        sqlite3_bind_int64(st, 4, now);
        sqlite3_bind_text(st, 5, text, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
    if (!st || rc != SQLITE_DONE) {
        json_decref(pdata);
        free(ptext);
        return st ? sq_fail(q, err, rc, "appending an event") : err->code;
    }
    bt_event *e = bt_xcalloc(1, sizeof *e);
    e->seq = sqlite3_last_insert_rowid(q->db);
    e->type = bt_xstrdup(type);
    if (task_id)
        memcpy(e->task_id, task_id, strnlen(task_id, BT_ID_LEN));
    if (run_id)
        memcpy(e->run_id, run_id, strnlen(run_id, BT_ID_LEN));
    e->ts = now;
    e->data = pdata;
    sq_pev p = {.ev = e, .text = ptext};
    bt_vec_push(&q->events, p);
    if (out)
        *out = e;
    return 0;
}

/* Appends an event in the open transaction; data is stolen. Returns 0 or an error. */
static int ev_add(sq_store *q, const char *type, const char *task_id, const char *run_id,
                  json_t *data, int64_t now, bt_event **copy, bt_error *err)
{
    if (!data)
        data = json_object();
    char *text = json_dumps(data, JSON_COMPACT);
    bt_event *e = NULL;
    int rc = ev_insert(q, type, task_id, run_id, text ? text : "{}", now, data, NULL, &e, err);
    free(text);
    if (rc == 0 && copy)
        *copy = bt_event_dup(e);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Task JSON as text. The task events are most of what a queue writes, and building
 * them as jansson trees and serialising those was a fifth of the CPU per item; this
 * writes the same document (bt_task_to_json's keys, order and values) straight into a
 * buffer. Debug builds check every one against bt_task_to_json.
 */
static void js_raw(bt_strbuf *b, const char *s, size_t n)
{
    bt_strbuf_add(b, s, n);
}
#define JS_LIT(b, lit) js_raw((b), (lit), sizeof(lit) - 1)

static void js_str(bt_strbuf *b, const char *s)
{
    if (s)
        bt_strbuf_add_json_str(b, s, strlen(s));
    else
        JS_LIT(b, "null");
}

static void js_int(bt_strbuf *b, int64_t v)
{
    char tmp[24];
    int i = (int)sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    js_raw(b, tmp + i, sizeof tmp - (size_t)i);
}

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* "2025-11-13T12:00:00.123Z" (bt_time_format_iso's format) without gmtime/printf:
 * days to civil date after H. Hinnant's days_from_civil inverse. null when ms <= 0. */
static void js_ts(bt_strbuf *b, int64_t ms)
{
    if (ms <= 0) {
        JS_LIT(b, "null");
        return;
    }
    int64_t days = ms / 86400000, rem = ms % 86400000;
    int64_t z = days + 719468, era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y > 9999) { /* outside the fixed-width form: let the library say it */
        char buf[BT_TIME_ISO_LEN];
        js_str(b, bt_time_format_iso(ms, buf));
        return;
    }
    char s[] = "\"0000-00-00T00:00:00.000Z\"";
    put2(s + 1, (int)(y / 100));
    put2(s + 3, (int)(y % 100));
    put2(s + 6, (int)m);
    put2(s + 9, (int)d);
    put2(s + 12, (int)(rem / 3600000));
    put2(s + 15, (int)(rem / 60000 % 60));
    put2(s + 18, (int)(rem / 1000 % 60));
    s[21] = (char)('0' + rem % 1000 / 100);
    put2(s + 22, (int)(rem % 100));
    js_raw(b, s, sizeof s - 1);
}

/* A json value (labels, meta, result); dflt when NULL. */
static void js_json(bt_strbuf *b, const json_t *v, const char *dflt)
{
    if (!v) {
        bt_strbuf_addstr(b, dflt);
    } else if (json_is_array(v) && json_array_size(v) == 0) {
        JS_LIT(b, "[]");
    } else if (json_is_object(v) && json_object_size(v) == 0) {
        JS_LIT(b, "{}");
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        bt_strbuf_addstr(b, s ? s : "null");
        free(s);
    }
}

/* bt_task_to_json(t) as compact text. */
static void js_task(bt_strbuf *b, const bt_task *t)
{
    JS_LIT(b, "{\"id\":");
    js_str(b, t->id);
    JS_LIT(b, ",\"source\":");
    js_str(b, t->source);
    JS_LIT(b, ",\"external_id\":");
    js_str(b, t->external_id);
    JS_LIT(b, ",\"dedupe_key\":");
    js_str(b, t->dedupe_key);
    JS_LIT(b, ",\"identifier\":");
    js_str(b, t->identifier ? t->identifier : t->id);
    JS_LIT(b, ",\"project\":");
    js_str(b, t->project);
    JS_LIT(b, ",\"title\":");
    js_str(b, t->title);
    JS_LIT(b, ",\"body\":");
    js_str(b, t->body);
    JS_LIT(b, ",\"workflow\":");
    js_str(b, t->workflow);
    JS_LIT(b, ",\"labels\":");
    js_json(b, t->labels, "[]");
    JS_LIT(b, ",\"meta\":");
    js_json(b, t->meta, "{}");
    JS_LIT(b, ",\"priority\":");
    if (t->priority == BT_PRIORITY_NONE)
        JS_LIT(b, "null");
    else
        js_int(b, t->priority);
    JS_LIT(b, ",\"status\":\"");
    bt_strbuf_addstr(b, bt_task_status_name(t->status));
    JS_LIT(b, "\",\"attempts\":");
    js_int(b, t->attempts);
    JS_LIT(b, ",\"max_attempts\":");
    js_int(b, t->max_attempts);
    JS_LIT(b, ",\"next_attempt_at\":");
    js_ts(b, t->next_attempt_at);
    JS_LIT(b, ",\"lease_owner\":");
    js_str(b, t->lease_owner);
    JS_LIT(b, ",\"lease_expires_at\":");
    js_ts(b, t->lease_expires_at);
    JS_LIT(b, ",\"fencing\":");
    js_int(b, t->fencing);
    JS_LIT(b, ",\"result\":");
    js_json(b, t->result, "null");
    JS_LIT(b, ",\"error\":");
    js_str(b, t->error);
    JS_LIT(b, ",\"created_at\":");
    js_ts(b, t->created_at);
    JS_LIT(b, ",\"updated_at\":");
    js_ts(b, t->updated_at);
    JS_LIT(b, ",\"started_at\":");
    js_ts(b, t->started_at);
    JS_LIT(b, ",\"finished_at\":");
    js_ts(b, t->finished_at);
    bt_strbuf_addch(b, '}');
}

/* Whether task.status carries the task's error (a failure, cancellation or retry). */
static bool status_has_error(const bt_task *t)
{
    return t->error && (t->status == BT_TASK_FAILED || t->status == BT_TASK_CANCELLED ||
                        t->status == BT_TASK_PENDING);
}

/* The same data as a json_t: built for subscribers (parsing the text back would cost
 * several times more), and the reference the text is checked against. */
static json_t *task_event_json(const bt_task *t, int from, const char *reason)
{
    json_t *o = json_object();
    json_object_set_new(o, "task", bt_task_to_json(t));
    if (from >= 0) {
        json_object_set_new(o, "from", json_string(bt_task_status_name((bt_task_status)from)));
        json_object_set_new(o, "to", json_string(bt_task_status_name(t->status)));
        if (status_has_error(t))
            json_object_set_new(o, "error", json_string(t->error));
        if (reason)
            json_object_set_new(o, "reason", json_string(reason));
    }
    return o;
}

#ifndef NDEBUG
/* Debug builds: the text must be the document task_event_json builds. */
static void js_check(const char *text, const bt_task *t, int from, const char *reason)
{
    json_t *want = task_event_json(t, from, reason);
    json_t *got = json_loads(text, 0, NULL);
    if (!got || !json_equal(got, want)) {
        char *w = json_dumps(want, JSON_COMPACT);
        fprintf(stderr,
                "sqlite store: task event text differs from its jansson form\n got: %s\n"
                "want: %s\n",
                text, w ? w : "?");
        abort();
    }
    json_decref(got);
    json_decref(want);
}
#endif

/* The data of a task event as owned text: {"task": t} (from < 0), or task.status's
 * {"task": t, "from", "to", "error"?, "reason"?}. */
static char *task_event_text(const bt_task *t, int from, const char *reason)
{
    bt_strbuf b;
    bt_strbuf_init(&b, 1024);
    JS_LIT(&b, "{\"task\":");
    js_task(&b, t);
    if (from >= 0) {
        JS_LIT(&b, ",\"from\":\"");
        bt_strbuf_addstr(&b, bt_task_status_name((bt_task_status)from));
        JS_LIT(&b, "\",\"to\":\"");
        bt_strbuf_addstr(&b, bt_task_status_name(t->status));
        bt_strbuf_addch(&b, '"');
        if (status_has_error(t)) {
            JS_LIT(&b, ",\"error\":");
            js_str(&b, t->error);
        }
        if (reason) {
            JS_LIT(&b, ",\"reason\":");
            js_str(&b, reason);
        }
    }
    bt_strbuf_addch(&b, '}');
    char *text = bt_strbuf_detach(&b, NULL);
#ifndef NDEBUG
    js_check(text, t, from, reason);
#endif
    return text;
}

/* Appends a task event (task.created when from < 0, else task.status). The json_t is
 * built now only when someone is subscribed; a subscriber that arrives before the
 * commit gets it parsed from the text. */
static int ev_task_one(sq_store *q, const bt_task *t, int from, const char *reason, int64_t now,
                       bt_error *err)
{
    char *text = task_event_text(t, from, reason);
    json_t *data = q->base.nsubs ? task_event_json(t, from, reason) : NULL;
    int rc = ev_insert(q, from < 0 ? "task.created" : "task.status", t->id, NULL, text, now, data,
                       data ? NULL : text, NULL, err);
    if (data)
        free(text);
    return rc;
}

static int ev_task_created(sq_store *q, const bt_task *t, int64_t now, bt_error *err)
{
    return ev_task_one(q, t, -1, NULL, now, err);
}

static int ev_task_status(sq_store *q, const bt_task *t, bt_task_status from, int64_t now,
                          const char *reason, bt_error *err)
{
    return ev_task_one(q, t, (int)from, reason, now, err);
}

static int multi_size(size_t left, int *slot)
{
    int k = MULTI_MAX, i = MULTI_SIZES - 1;
    while ((size_t)k > left) {
        k /= 2;
        i--;
    }
    *slot = i;
    return k;
}

/* One row of a batched event append: task_id borrowed; text and data (NULL unless
 * someone is subscribed) stolen. */
typedef struct ev_row {
    const char *task_id;
    char *text;
    json_t *data;
    int64_t ts;
} ev_row;

/* A task.status row for t. */
static ev_row status_row(sq_store *q, const bt_task *t, bt_task_status from, int64_t now)
{
    ev_row r = {t->id, task_event_text(t, (int)from, NULL), NULL, now};
    if (q->base.nsubs)
        r.data = task_event_json(t, (int)from, NULL);
    return r;
}

/* Appends n task events of one type with multi-row INSERTs (each statement costs about
 * what one row does, so a batch of claims or completions pays it a few times, not n).
 * With one writer and AUTOINCREMENT the rows of one INSERT get consecutive seqs. The
 * texts are stolen, also on error. */
static int ev_insert_rows(sq_store *q, const char *type, ev_row *rows, size_t n, bt_error *err)
{
    size_t done = 0;
    int rc = 0;
    while (done < n && rc == 0) {
        int slot;
        int k = multi_size(n - done, &slot);
        sqlite3_stmt *st = q->ev_multi[slot];
        if (st) {
            sqlite3_reset(st);
        } else {
            bt_strbuf sql;
            bt_strbuf_init(&sql, 64 + (size_t)k * 24);
            bt_strbuf_addstr(&sql, "INSERT INTO events(type, task_id, run_id, ts, data) VALUES");
            for (int j = 0; j < k; j++)
                bt_strbuf_addf(&sql, "%s(?1,?%d,NULL,?%d,?%d)", j ? "," : "", 2 + 3 * j, 3 + 3 * j,
                               4 + 3 * j);
            st = q->ev_multi[slot] = sq_prep(q, bt_strbuf_cstr(&sql), err);
            bt_strbuf_release(&sql);
            if (!st) {
                rc = err->code;
                break;
            }
        }
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        for (int j = 0; j < k; j++) {
            const ev_row *r = &rows[done + (size_t)j];
            sqlite3_bind_text(st, 2 + 3 * j, r->task_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3 + 3 * j, r->ts);
            sqlite3_bind_text(st, 4 + 3 * j, r->text, -1, SQLITE_STATIC);
        }
        int src = sqlite3_step(st);
        sqlite3_reset(st);
        if (src != SQLITE_DONE) {
            rc = sq_fail(q, err, src, "appending events");
            break;
        }
        int64_t last = sqlite3_last_insert_rowid(q->db);
        for (int j = 0; j < k; j++) {
            ev_row *r = &rows[done + (size_t)j];
            bt_event *e = bt_xcalloc(1, sizeof *e);
            e->seq = last - (k - 1) + j;
            e->type = bt_xstrdup(type);
            memcpy(e->task_id, r->task_id, strnlen(r->task_id, BT_ID_LEN));
            e->ts = r->ts;
            e->data = r->data;
            sq_pev p = {.ev = e, .text = r->data ? NULL : r->text};
            bt_vec_push(&q->events, p);
            if (r->data)
                free(r->text);
            r->text = NULL;
            r->data = NULL;
        }
        done += (size_t)k;
    }
    for (size_t i = done; i < n; i++) {
        free(rows[i].text);
        json_decref(rows[i].data);
        rows[i].text = NULL;
        rows[i].data = NULL;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Tasks: row mapping.
 */
#define TASK_COLS                                                                                  \
    "id, source, external_id, dedupe_key, identifier, project, title, body, workflow, labels, "    \
    "meta, priority, status, attempts, max_attempts, next_attempt_at, lease_owner, "               \
    "lease_expires_at, fencing, result, error, created_at, updated_at, started_at, finished_at"

static bt_task *row_task(sqlite3_stmt *st)
{
    bt_task *t = bt_xcalloc(1, sizeof *t);
    c_id(st, 0, t->id);
    t->source = c_str(st, 1);
    t->external_id = c_str(st, 2);
    t->dedupe_key = c_str(st, 3);
    t->identifier = c_str(st, 4);
    t->project = c_str(st, 5);
    t->title = c_str(st, 6);
    t->body = c_str(st, 7);
    t->workflow = c_str(st, 8);
    t->labels = c_json(st, 9, json_array());
    t->meta = c_json(st, 10, json_object());
    t->priority = sqlite3_column_int(st, 11);
    bt_task_status s = BT_TASK_PENDING;
    bt_task_status_parse((const char *)sqlite3_column_text(st, 12), &s);
    t->status = s;
    t->attempts = sqlite3_column_int(st, 13);
    t->max_attempts = sqlite3_column_int(st, 14);
    t->next_attempt_at = sqlite3_column_int64(st, 15);
    t->lease_owner = c_str(st, 16);
    t->lease_expires_at = sqlite3_column_int64(st, 17);
    t->fencing = sqlite3_column_int64(st, 18);
    t->result = c_json(st, 19, NULL);
    t->error = c_str(st, 20);
    t->created_at = sqlite3_column_int64(st, 21);
    t->updated_at = sqlite3_column_int64(st, 22);
    t->started_at = sqlite3_column_int64(st, 23);
    t->finished_at = sqlite3_column_int64(st, 24);
    return t;
}

/* Runs a SELECT of TASK_COLS (already bound) and collects every row. */
static int collect_tasks(sq_store *q, sqlite3_stmt *st, bt_task ***out, size_t *n, bt_error *err)
{
    BT_VEC(bt_task *) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        bt_vec_push(&v, row_task(st));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        for (size_t i = 0; i < v.len; i++)
            bt_task_free(v.items[i]);
        bt_vec_free(&v);
        return sq_fail(q, err, rc, "reading tasks");
    }
    *out = v.items;
    *n = v.len;
    return 0;
}

static int load_task(sq_store *q, const char *id, bt_task **out, bt_error *err)
{
    *out = NULL;
    if (!id)
        return bt_errorf(err, BT_EINVAL, "no task id given");
    sqlite3_stmt *st = sq_hot(q, HOT_LOAD, "SELECT " TASK_COLS " FROM tasks WHERE id = ?", err);
    if (!st)
        return err->code;
    b_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = row_task(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return bt_errorf(err, BT_ENOENT, "no task with id '%s'", id);
    return sq_fail(q, err, rc, "reading a task");
}

/* Writes the queue-state columns of t back (what claims, completions, failures and
 * lease changes touch; cheaper than save_task: no JSON re-serialisation of labels/meta). */
static int save_state(sq_store *q, const bt_task *t, bt_error *err)
{
    sqlite3_stmt *st = sq_hot(q, HOT_SAVE_STATE,
                              "UPDATE tasks SET status=?, attempts=?, next_attempt_at=?, "
                              "lease_owner=?, lease_expires_at=?, fencing=?, result=?, error=?, "
                              "updated_at=?, started_at=?, finished_at=? WHERE id=?",
                              err);
    if (!st)
        return err->code;
    b_text(st, 1, bt_task_status_name(t->status));
    sqlite3_bind_int(st, 2, t->attempts);
    sqlite3_bind_int64(st, 3, t->next_attempt_at);
    b_text(st, 4, t->lease_owner);
    sqlite3_bind_int64(st, 5, t->lease_expires_at);
    sqlite3_bind_int64(st, 6, t->fencing);
    b_json(st, 7, t->result);
    b_text(st, 8, t->error);
    sqlite3_bind_int64(st, 9, t->updated_at);
    sqlite3_bind_int64(st, 10, t->started_at);
    sqlite3_bind_int64(st, 11, t->finished_at);
    b_text(st, 12, t->id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(q, err, rc, "updating a task");
}

/* Writes every mutable column of t back. */
static int save_task(sq_store *q, const bt_task *t, bt_error *err)
{
    sqlite3_stmt *st = sq_prep(
        q,
        "UPDATE tasks SET project=?, title=?, body=?, workflow=?, labels=?, meta=?, priority=?, "
        "status=?, attempts=?, max_attempts=?, next_attempt_at=?, lease_owner=?, "
        "lease_expires_at=?, fencing=?, result=?, error=?, updated_at=?, started_at=?, "
        "finished_at=? WHERE id=?",
        err);
    if (!st)
        return err->code;
    b_text(st, 1, t->project);
    b_text(st, 2, t->title);
    b_text(st, 3, t->body);
    b_text(st, 4, t->workflow);
    b_json(st, 5, t->labels);
    b_json(st, 6, t->meta);
    sqlite3_bind_int(st, 7, t->priority);
    b_text(st, 8, bt_task_status_name(t->status));
    sqlite3_bind_int(st, 9, t->attempts);
    sqlite3_bind_int(st, 10, t->max_attempts);
    sqlite3_bind_int64(st, 11, t->next_attempt_at);
    b_text(st, 12, t->lease_owner);
    sqlite3_bind_int64(st, 13, t->lease_expires_at);
    sqlite3_bind_int64(st, 14, t->fencing);
    b_json(st, 15, t->result);
    b_text(st, 16, t->error);
    sqlite3_bind_int64(st, 17, t->updated_at);
    sqlite3_bind_int64(st, 18, t->started_at);
    sqlite3_bind_int64(st, 19, t->finished_at);
    b_text(st, 20, t->id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_fail(q, err, rc, "updating a task");
    return 0;
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = bt_xstrdup(src);
}

/* Moves t to `to` (legality checked by the caller), saves it and appends task.status. */
static int task_move(sq_store *q, bt_task *t, bt_task_status to, int64_t now, const char *reason,
                     bt_error *err)
{
    bt_task_status from = t->status;
    t->status = to;
    t->updated_at = now;
    int rc = save_state(q, t, err);
    if (rc == 0)
        rc = ev_task_status(q, t, from, now, reason, err);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Tasks: operations.
 */
static void sq_task_create(bt_store *s, const bt_task_input *in, bt_store_create_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_CREATE, .write = true, .cb = (anycb)cb, .ud = ud};
    int rc = bt_store__check_task_input(in, &d.err);
    if (rc == 0)
        rc = sq_wbegin(q, &d.err);
    else
        goto out;
    if (rc)
        goto out;
    int64_t now = bt_store__now(s);
    if (in->dedupe_key) {
        sqlite3_stmt *st = sq_prep(q,
                                   "SELECT " TASK_COLS " FROM tasks WHERE dedupe_key = ? AND "
                                   "status IN ('draft','pending','in_progress')",
                                   &d.err);
        if (!st) {
            rc = d.err.code;
            goto end;
        }
        b_text(st, 1, in->dedupe_key);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            d.one = row_task(st);
        sqlite3_reset(st);
        if (src != SQLITE_ROW && src != SQLITE_DONE) {
            rc = sq_fail(q, &d.err, src, "looking up a dedupe key");
            goto end;
        }
        if (d.one) {
            d.created = false;
            goto end;
        }
    }
    bt_task t = {0};
    bt_store__new_id(s, t.id);
    t.source = (char *)in->source;
    t.external_id = (char *)in->external_id;
    t.dedupe_key = (char *)in->dedupe_key;
    t.identifier = (char *)(in->identifier && *in->identifier ? in->identifier : t.id);
    t.project = (char *)in->project;
    t.title = (char *)in->title;
    t.body = (char *)in->body;
    t.workflow = (char *)in->workflow;
    t.labels = in->labels ? (json_t *)in->labels : NULL;
    t.meta = in->meta ? (json_t *)in->meta : NULL;
    t.priority = in->priority;
    t.status = in->draft ? BT_TASK_DRAFT : BT_TASK_PENDING;
    t.max_attempts = in->max_attempts > 0 ? in->max_attempts : s->opts.default_max_attempts;
    t.created_at = t.updated_at = now;
    sqlite3_stmt *st = sq_prep(q,
                               "INSERT INTO tasks(id, source, external_id, dedupe_key, "
                               "identifier, project, title, body, workflow, labels, meta, "
                               "priority, status, max_attempts, created_at, updated_at) "
                               "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, t.id);
    b_text(st, 2, t.source);
    b_text(st, 3, t.external_id);
    b_text(st, 4, t.dedupe_key);
    b_text(st, 5, t.identifier);
    b_text(st, 6, t.project);
    b_text(st, 7, t.title);
    b_text(st, 8, t.body);
    b_text(st, 9, t.workflow);
    if (t.labels)
        b_json(st, 10, t.labels);
    else
        b_text(st, 10, "[]");
    if (t.meta)
        b_json(st, 11, t.meta);
    else
        b_text(st, 11, "{}");
    sqlite3_bind_int(st, 12, t.priority);
    b_text(st, 13, bt_task_status_name(t.status));
    sqlite3_bind_int(st, 14, t.max_attempts);
    sqlite3_bind_int64(st, 15, now);
    sqlite3_bind_int64(st, 16, now);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, &d.err, src, "inserting a task");
        goto end;
    }
    d.one = bt_task_dup(&t);
    d.created = true;
    rc = ev_task_created(q, d.one, now, &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_task_free(d.one);
        d.one = NULL;
    }
    sq_push(q, &d);
}

static void sq_task_get(bt_store *s, const char *id, bt_store_task_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASK, .cb = (anycb)cb, .ud = ud};
    bt_task *t = NULL;
    d.rc = load_task(q, id, &t, &d.err);
    d.one = t;
    sq_push(q, &d);
}

static void sq_task_get_by_key(bt_store *s, const char *key, bt_store_task_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASK, .cb = (anycb)cb, .ud = ud};
    if (!key) {
        d.rc = bt_errorf(&d.err, BT_EINVAL, "no dedupe key given");
        sq_push(q, &d);
        return;
    }
    sqlite3_stmt *st = sq_prep(q,
                               "SELECT " TASK_COLS " FROM tasks WHERE dedupe_key = ? ORDER BY "
                               "status IN ('draft','pending','in_progress') DESC, created_at "
                               "DESC, id DESC LIMIT 1",
                               &d.err);
    if (!st) {
        d.rc = d.err.code;
    } else {
        b_text(st, 1, key);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            d.one = row_task(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            d.rc = bt_errorf(&d.err, BT_ENOENT, "no task with dedupe key '%s'", key);
        else if (rc != SQLITE_ROW)
            d.rc = sq_fail(q, &d.err, rc, "reading a task");
    }
    sq_push(q, &d);
}

static void sq_task_list(bt_store *s, const bt_task_filter *f, bt_store_tasks_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASKS, .cb = (anycb)cb, .ud = ud};
    bt_task_filter none = {0};
    if (!f)
        f = &none;
    int limit = f->limit ? f->limit : 100;
    if (limit < 1 || limit > 1000) {
        d.rc = bt_errorf(&d.err, BT_EINVAL, "limit must be between 1 and 1000 (got %d)", limit);
        sq_push(q, &d);
        return;
    }
    bt_strbuf sql;
    bt_strbuf_init(&sql, 512);
    bt_strbuf_addstr(&sql, "SELECT " TASK_COLS " FROM tasks WHERE 1");
    if (f->status_mask) {
        bt_strbuf_addstr(&sql, " AND status IN (");
        int first = 1;
        for (int i = 0; i < BT_TASK__COUNT; i++) {
            if (f->status_mask & (1u << i)) {
                bt_strbuf_addf(&sql, "%s'%s'", first ? "" : ",",
                               bt_task_status_name((bt_task_status)i));
                first = 0;
            }
        }
        bt_strbuf_addstr(&sql, ")");
    }
    /* Fixed parameter numbers keep the statement text (and its cache entry) small. */
    if (f->project)
        bt_strbuf_addstr(&sql, " AND project = ?1");
    if (f->source)
        bt_strbuf_addstr(&sql, " AND source = ?2");
    if (f->label)
        bt_strbuf_addstr(&sql, " AND EXISTS (SELECT 1 FROM json_each(tasks.labels) WHERE "
                               "json_each.value = ?3)");
    if (f->workflow)
        bt_strbuf_addstr(&sql, " AND workflow = ?4");
    if (f->dedupe_key)
        bt_strbuf_addstr(&sql, " AND dedupe_key = ?5");
    if (f->text)
        bt_strbuf_addstr(&sql, " AND (instr(lower(title), lower(?6)) > 0 OR "
                               "instr(lower(coalesce(body,'')), lower(?6)) > 0 OR "
                               "instr(lower(identifier), lower(?6)) > 0)");
    if (f->cursor)
        bt_strbuf_addstr(&sql, f->newest_first ? " AND id < ?7" : " AND id > ?7");
    bt_strbuf_addstr(&sql, f->newest_first ? " ORDER BY id DESC" : " ORDER BY id");
    bt_strbuf_addstr(&sql, " LIMIT ?8");
    sqlite3_stmt *st = sq_prep(q, bt_strbuf_cstr(&sql), &d.err);
    bt_strbuf_release(&sql);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    if (f->project)
        b_text(st, 1, f->project);
    if (f->source)
        b_text(st, 2, f->source);
    if (f->label)
        b_text(st, 3, f->label);
    if (f->workflow)
        b_text(st, 4, f->workflow);
    if (f->dedupe_key)
        b_text(st, 5, f->dedupe_key);
    if (f->text)
        b_text(st, 6, f->text);
    if (f->cursor)
        b_text(st, 7, f->cursor);
    sqlite3_bind_int(st, 8, limit + 1);
    bt_task **tasks = NULL;
    size_t n = 0;
    d.rc = collect_tasks(q, st, &tasks, &n, &d.err);
    if (d.rc == 0 && n > (size_t)limit) {
        bt_task_free(tasks[limit]);
        n = (size_t)limit;
        d.cursor = bt_xstrdup(tasks[n - 1]->id);
    }
    d.items = (void **)tasks;
    d.n = n;
    sq_push(q, &d);
}

static bool labels_ok(const json_t *labels)
{
    if (!json_is_array(labels))
        return false;
    for (size_t i = 0; i < json_array_size(labels); i++)
        if (!json_is_string(json_array_get(labels, i)))
            return false;
    return true;
}

static void sq_task_update(bt_store *s, const char *id, const bt_task_patch *p, bt_store_task_cb cb,
                           void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASK, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task *t = NULL;
    int rc = 0;
    if (p->labels && !labels_ok(p->labels))
        rc = bt_errorf(&d.err, BT_EINVAL, "labels must be an array of strings");
    if (rc == 0 && p->meta && !json_is_object(p->meta))
        rc = bt_errorf(&d.err, BT_EINVAL, "meta must be an object");
    if (rc == 0 && p->set_max_attempts && p->max_attempts < 1)
        rc = bt_errorf(&d.err, BT_EINVAL, "max_attempts must be at least 1");
    if (rc == 0 && p->title && !*p->title)
        rc = bt_errorf(&d.err, BT_EINVAL, "a task needs a non-empty title");
    if (rc)
        goto out;
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_task(q, id, &t, &d.err)))
        goto end;
    if (t->status != BT_TASK_DRAFT && t->status != BT_TASK_PENDING) {
        rc = bt_errorf(&d.err, BT_ESTATE,
                       "task %s is %s; only draft and pending tasks can be edited", t->id,
                       bt_task_status_name(t->status));
        goto end;
    }
    json_t *fields = json_array();
#define PATCH_STR(name)                                                                            \
    if (p->name) {                                                                                 \
        set_str(&t->name, p->name);                                                                \
        json_array_append_new(fields, json_string(#name));                                         \
    }
    PATCH_STR(title)
    PATCH_STR(body)
    PATCH_STR(project)
    PATCH_STR(workflow)
#undef PATCH_STR
    if (p->labels) {
        json_decref(t->labels);
        t->labels = json_deep_copy(p->labels);
        json_array_append_new(fields, json_string("labels"));
    }
    if (p->meta) {
        json_object_update(t->meta, (json_t *)p->meta);
        json_array_append_new(fields, json_string("meta"));
    }
    if (p->set_priority) {
        t->priority = p->priority;
        json_array_append_new(fields, json_string("priority"));
    }
    if (p->set_max_attempts) {
        t->max_attempts = p->max_attempts;
        json_array_append_new(fields, json_string("max_attempts"));
    }
    int64_t now = bt_store__now(s);
    t->updated_at = now;
    rc = save_task(q, t, &d.err);
    if (rc == 0) {
        json_t *ev = json_object();
        json_object_set_new(ev, "task", bt_task_to_json(t));
        json_object_set_new(ev, "fields", fields);
        rc = ev_add(q, "task.updated", t->id, NULL, ev, now, NULL, &d.err);
    } else {
        json_decref(fields);
    }
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_task_free(t);
        t = NULL;
    }
    d.one = t;
    sq_push(q, &d);
}

static int illegal(bt_error *err, const bt_task *t, bt_task_status to)
{
    return bt_errorf(err, BT_ESTATE, "task %s cannot go from %s to %s", t->id,
                     bt_task_status_name(t->status), bt_task_status_name(to));
}

static void sq_task_transition(bt_store *s, const char *id, bt_task_status to, const char *reason,
                               bt_store_task_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASK, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task *t = NULL;
    int rc;
    if ((unsigned)to >= BT_TASK__COUNT) {
        rc = bt_errorf(&d.err, BT_EINVAL, "unknown task status %d", (int)to);
        goto out;
    }
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_task(q, id, &t, &d.err)))
        goto end;
    int64_t now = bt_store__now(s);
    bt_task_status from = t->status;
    if (!bt_task_transition_allowed(from, to)) {
        rc = illegal(&d.err, t, to);
        goto end;
    }
    if (to == BT_TASK_CANCELLED) {
        set_str(&t->error, reason ? reason : "cancelled");
        set_str(&t->lease_owner, NULL);
        t->lease_expires_at = 0;
        t->finished_at = now;
    } else if (to == BT_TASK_PENDING && from == BT_TASK_DRAFT) {
        /* approval: nothing else changes */
    } else if (to == BT_TASK_PENDING && (from == BT_TASK_FAILED || from == BT_TASK_CANCELLED)) {
        t->attempts = 0;
        t->next_attempt_at = 0;
        t->finished_at = 0;
        set_str(&t->error, NULL);
    } else {
        rc = bt_errorf(&d.err, BT_ESTATE,
                       "task %s: %s -> %s happens through claim/complete/fail/release, not "
                       "as an administrative transition",
                       t->id, bt_task_status_name(from), bt_task_status_name(to));
        goto end;
    }
    rc = task_move(q, t, to, now, reason, &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_task_free(t);
        t = NULL;
    }
    d.one = t;
    sq_push(q, &d);
}

static int cmp_queue(const void *a, const void *b)
{
    const bt_task *x = *(bt_task *const *)a, *y = *(bt_task *const *)b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    int c = strcmp(x->identifier ? x->identifier : "", y->identifier ? y->identifier : "");
    return c ? c : strcmp(x->id, y->id);
}

static void sq_claim(bt_store *s, const bt_claim_opts *o, bt_store_tasks_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASKS, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task **tasks = NULL;
    size_t n = 0;
    int rc = bt_store__check_claim(o, &d.err);
    if (rc)
        goto out;
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    int64_t now = bt_store__now(s);
    /* One statement claims the whole batch: the ready rows come off tasks_ready in queue
     * order and are updated in place; RETURNING hands back the claimed rows (in no
     * particular order, hence the sort). A claim of one task (task_id, `baton run`) is the
     * same walk stopping at that task: the NULL case keeps the plan and the hot path. */
    sqlite3_stmt *st =
        sq_hot(q, HOT_CLAIM,
               "UPDATE tasks SET status = 'in_progress', attempts = attempts + 1, "
               "fencing = fencing + 1, lease_owner = ?5, lease_expires_at = ?6, "
               "started_at = ?1, finished_at = 0, updated_at = ?1 WHERE rowid IN "
               "(SELECT rowid FROM tasks INDEXED BY tasks_ready WHERE status = "
               "'pending' AND next_attempt_at <= ?1 AND (?2 IS NULL OR project = ?2) "
               "AND (?3 IS NULL OR workflow = ?3) AND (?7 IS NULL OR id = ?7) "
               "ORDER BY priority, created_at, "
               "identifier, id LIMIT ?4) RETURNING " TASK_COLS,
               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    sqlite3_bind_int64(st, 1, now);
    b_text(st, 2, o->project);
    b_text(st, 3, o->workflow);
    sqlite3_bind_int(st, 4, o->max > 0 ? o->max : 1);
    sqlite3_bind_text(st, 5, o->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now + o->lease_ms);
    b_text(st, 7, o->task_id);
    if ((rc = collect_tasks(q, st, &tasks, &n, &d.err)))
        goto end;
    if (n > 1)
        qsort(tasks, n, sizeof *tasks, cmp_queue);
    if (n > 0) {
        ev_row *rows = bt_xcalloc(n, sizeof *rows);
        for (size_t i = 0; i < n; i++)
            rows[i] = status_row(q, tasks[i], BT_TASK_PENDING, now);
        rc = ev_insert_rows(q, "task.status", rows, n, &d.err);
        free(rows);
    }
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        for (size_t i = 0; i < n; i++)
            bt_task_free(tasks[i]);
        n = 0;
    }
    d.items = (void **)tasks;
    d.n = n;
    sq_push(q, &d);
}

/* Loads a held task and checks (owner, fencing): BT_ESTALE when it is not held so. */
static int load_held(sq_store *q, const char *id, const char *owner, int64_t fencing, bt_task **out,
                     bt_error *err)
{
    if (!owner)
        return bt_errorf(err, BT_EINVAL, "no lease owner given");
    int rc = load_task(q, id, out, err);
    if (rc)
        return rc;
    bt_task *t = *out;
    if (t->status != BT_TASK_IN_PROGRESS || !t->lease_owner || strcmp(t->lease_owner, owner) != 0 ||
        t->fencing != fencing)
        return bt_errorf(err, BT_ESTALE,
                         "task %s is no longer held by %s with fencing token %lld (it is %s, "
                         "owner %s, token %lld); drop this result",
                         t->id, owner, (long long)fencing, bt_task_status_name(t->status),
                         t->lease_owner ? t->lease_owner : "none", (long long)t->fencing);
    return 0;
}

static void sq_heartbeat(bt_store *s, const char *id, const char *owner, int64_t fencing,
                         int64_t lease_ms, bt_store_task_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASK, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task *t = NULL;
    int rc;
    if (lease_ms <= 0) {
        rc = bt_errorf(&d.err, BT_EINVAL, "a heartbeat needs a positive lease");
        goto out;
    }
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_held(q, id, owner, fencing, &t, &d.err)))
        goto end;
    int64_t now = bt_store__now(s);
    t->lease_expires_at = now + lease_ms;
    t->updated_at = now;
    rc = save_state(q, t, &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_task_free(t);
        t = NULL;
    }
    d.one = t;
    sq_push(q, &d);
}

static void defer_free(sq_defer *e)
{
    free(e->id);
    free(e->owner);
    free(e->result);
}

/* Runs chunk (k rows, a cached size) of completions as one UPDATE ... FROM (VALUES ...)
 * RETURNING: the fencing check and the transition of every row at once. got[i] receives
 * the task of each row that matched. */
static int complete_chunk(sq_store *q, sq_defer *ds, int k, int slot, bt_task **got, bt_error *err)
{
    sqlite3_stmt *st = q->cpl_multi[slot];
    if (st) {
        sqlite3_reset(st);
    } else {
        bt_strbuf sql;
        bt_strbuf_init(&sql, 512 + (size_t)k * 16);
        bt_strbuf_addstr(&sql, "UPDATE tasks SET status = 'completed', result = v.column4, "
                               "lease_owner = NULL, lease_expires_at = 0, finished_at = "
                               "v.column5, updated_at = v.column5 FROM (VALUES");
        for (int j = 0; j < k; j++)
            bt_strbuf_addstr(&sql, j ? ",(?,?,?,?,?)" : "(?,?,?,?,?)");
        bt_strbuf_addstr(&sql, ") AS v WHERE tasks.id = v.column1 AND tasks.status = "
                               "'in_progress' AND tasks.lease_owner = v.column2 AND "
                               "tasks.fencing = v.column3 RETURNING " TASK_COLS);
        st = q->cpl_multi[slot] = sq_prep(q, bt_strbuf_cstr(&sql), err);
        bt_strbuf_release(&sql);
        if (!st)
            return err->code;
    }
    for (int j = 0; j < k; j++) {
        const sq_defer *e = &ds[j];
        sqlite3_bind_text(st, 5 * j + 1, e->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5 * j + 2, e->owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5 * j + 3, e->fencing);
        if (e->result)
            sqlite3_bind_text(st, 5 * j + 4, e->result, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 5 * j + 4);
        sqlite3_bind_int64(st, 5 * j + 5, e->now);
    }
    int src, hint = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        /* rows usually come back in VALUES order: look there first */
        for (int j = 0; j < k && id; j++) {
            int at = (hint + j) % k;
            if (!got[at] && strcmp(ds[at].id, id) == 0) {
                got[at] = row_task(st);
                hint = at + 1;
                break;
            }
        }
    }
    sqlite3_reset(st);
    return src == SQLITE_DONE ? 0 : sq_fail(q, err, src, "completing tasks");
}

/* Completions are the one write a busy queue issues per item, so they are batched: a
 * complete waits (its callback slot reserved in issue order) until the next statement
 * of any other operation or the end of the loop turn, whichever is first, and then
 * every waiting completion runs as one savepoint: one UPDATE per up to 64 rows and one
 * multi-row INSERT of their task.status events. Nothing else ran in between, so this
 * is what running them one by one would have done; a row the UPDATE did not match is
 * read to say why (BT_ENOENT, BT_ESTALE) and fails alone. A failing statement fails the
 * whole batch, undone by the savepoint. */
static void defer_flush(sq_store *q)
{
    sq_defer *ds = q->defer.items;
    size_t n = q->defer.len;
    if (n == 0)
        return;
    q->defer.items = NULL; /* taken first: the statements below must not flush again */
    q->defer.len = q->defer.cap = 0;
    bt_task **got = bt_xcalloc(n, sizeof *got);
    bt_error err = BT_ERROR_INIT;
    int rc = sq_wbegin(q, &err);
    bool opened = rc == 0;
    for (size_t at = 0; rc == 0 && at < n;) {
        int slot;
        int k = multi_size(n - at, &slot);
        rc = complete_chunk(q, ds + at, k, slot, got + at, &err);
        at += (size_t)k;
    }
    ev_row *rows = rc == 0 ? bt_xcalloc(n, sizeof *rows) : NULL;
    size_t nrows = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sq_done *d = &q->done.items[ds[i].slot];
        if (got[i]) {
            rows[nrows++] = status_row(q, got[i], BT_TASK_IN_PROGRESS, ds[i].now);
            continue;
        }
        bt_task *t = NULL;
        d->rc = load_held(q, ds[i].id, ds[i].owner, ds[i].fencing, &t, &d->err);
        if (d->rc == 0) /* cannot be: the UPDATE would have matched it */
            d->rc = bt_errorf(&d->err, BT_EIO, "task %s: completion matched no row", ds[i].id);
        bt_task_free(t);
    }
    if (rc == 0 && nrows)
        rc = ev_insert_rows(q, "task.status", rows, nrows, &err);
    free(rows);
    if (opened)
        sq_wend(q, rc);
    for (size_t i = 0; i < n; i++) {
        sq_done *d = &q->done.items[ds[i].slot];
        if (rc) {
            d->rc = rc;
            d->err = err;
            bt_task_free(got[i]);
        } else if (got[i]) {
            d->one = got[i];
        }
        defer_free(&ds[i]);
    }
    free(got);
    free(ds);
}

static void sq_complete(bt_store *s, const char *id, const char *owner, int64_t fencing,
                        const json_t *result, bt_store_task_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASK, .write = true, .cb = (anycb)cb, .ud = ud};
    if (!owner || !id) {
        d.rc = bt_errorf(&d.err, BT_EINVAL, !owner ? "no lease owner given" : "no task id given");
        sq_push(q, &d);
        return;
    }
    /* One batch never holds a task twice (the second must see the first's outcome). */
    bool dup = q->defer.len >= MULTI_MAX;
    for (size_t i = 0; !dup && i < q->defer.len; i++)
        dup = strcmp(q->defer.items[i].id, id) == 0;
    if (dup)
        defer_flush(q);
    sq_defer e = {.id = bt_xstrdup(id),
                  .owner = bt_xstrdup(owner),
                  .fencing = fencing,
                  .now = bt_store__now(s),
                  .slot = q->done.len};
    if (result)
        e.result = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
    sq_push(q, &d); /* the slot; defer_flush fills it in before the commit */
    bt_vec_push(&q->defer, e);
}

/* in_progress -> pending (with backoff) or failed, for fail and lease expiry. */
static int retry_or_fail(sq_store *q, bt_task *t, const char *error, bool retryable, int64_t now,
                         bt_fail_outcome *outcome, bt_error *err)
{
    set_str(&t->error, error);
    set_str(&t->lease_owner, NULL);
    t->lease_expires_at = 0;
    if (retryable && t->attempts < t->max_attempts) {
        t->next_attempt_at = now + bt_store_backoff_ms(&q->base, t->attempts);
        *outcome = BT_FAIL_RETRY;
        return task_move(q, t, BT_TASK_PENDING, now, NULL, err);
    }
    t->finished_at = now;
    *outcome = BT_FAIL_FINAL;
    return task_move(q, t, BT_TASK_FAILED, now, NULL, err);
}

static void sq_fail_op(bt_store *s, const char *id, const char *owner, int64_t fencing,
                       const char *error, bool retryable, bt_store_fail_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_FAIL, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task *t = NULL;
    int rc;
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_held(q, id, owner, fencing, &t, &d.err)))
        goto end;
    rc = retry_or_fail(q, t, error ? error : "failed", retryable, bt_store__now(s), &d.outcome,
                       &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_task_free(t);
        t = NULL;
    }
    d.one = t;
    sq_push(q, &d);
}

static void sq_release(bt_store *s, const char *id, const char *owner, int64_t fencing,
                       const char *reason, bt_store_task_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_TASK, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task *t = NULL;
    int rc;
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_held(q, id, owner, fencing, &t, &d.err)))
        goto end;
    int64_t now = bt_store__now(s);
    /* a release hands the attempt back */
    if (t->attempts > 0)
        t->attempts--;
    set_str(&t->lease_owner, NULL);
    t->lease_expires_at = 0;
    t->next_attempt_at = 0;
    if (reason)
        set_str(&t->error, reason);
    rc = task_move(q, t, BT_TASK_PENDING, now, reason, &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_task_free(t);
        t = NULL;
    }
    d.one = t;
    sq_push(q, &d);
}

static void sq_requeue_expired(bt_store *s, bt_store_count_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_COUNT, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task **tasks = NULL;
    size_t n = 0;
    int rc;
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    int64_t now = bt_store__now(s);
    sqlite3_stmt *st = sq_prep(q,
                               "SELECT " TASK_COLS " FROM tasks WHERE status = 'in_progress' "
                               "AND lease_expires_at < ?",
                               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    sqlite3_bind_int64(st, 1, now);
    if ((rc = collect_tasks(q, st, &tasks, &n, &d.err)))
        goto end;
    for (size_t i = 0; i < n && rc == 0; i++) {
        bt_fail_outcome oc;
        rc = retry_or_fail(q, tasks[i], "lease expired", true, now, &oc, &d.err);
        /* an expired lease is not the item's fault: claimable again at once */
        if (rc == 0 && oc == BT_FAIL_RETRY && tasks[i]->next_attempt_at != now) {
            tasks[i]->next_attempt_at = now;
            rc = save_state(q, tasks[i], &d.err);
        }
    }
    d.count = (int64_t)n;
end:
    sq_wend(q, rc);
out:
    for (size_t i = 0; i < n; i++)
        bt_task_free(tasks[i]);
    free(tasks);
    d.rc = rc;
    sq_push(q, &d);
}

static void sq_task_stats(bt_store *s, bt_store_stats_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_STATS, .cb = (anycb)cb, .ud = ud};
    sqlite3_stmt *st = sq_prep(q, "SELECT status, count(*) FROM tasks GROUP BY status", &d.err);
    int rc = st ? 0 : d.err.code;
    while (rc == 0) {
        int src = sqlite3_step(st);
        if (src == SQLITE_DONE)
            break;
        if (src != SQLITE_ROW) {
            rc = sq_fail(q, &d.err, src, "reading statistics");
            break;
        }
        bt_task_status ts;
        if (bt_task_status_parse((const char *)sqlite3_column_text(st, 0), &ts) == 0)
            d.stats.count[ts] = sqlite3_column_int64(st, 1);
    }
    if (st)
        sqlite3_reset(st);
    if (rc == 0) {
        st = sq_prep(q,
                     "SELECT coalesce(avg(finished_at - started_at), 0), (SELECT count(*) FROM "
                     "tasks WHERE status = 'pending' AND next_attempt_at <= ?1) FROM tasks WHERE "
                     "status IN ('completed','failed') AND started_at > 0 AND finished_at >= "
                     "started_at",
                     &d.err);
        if (!st) {
            rc = d.err.code;
        } else {
            sqlite3_bind_int64(st, 1, bt_store__now(s));
            int src = sqlite3_step(st);
            if (src == SQLITE_ROW) {
                d.stats.avg_duration_ms = sqlite3_column_double(st, 0);
                d.stats.ready = sqlite3_column_int64(st, 1);
            } else {
                rc = sq_fail(q, &d.err, src, "reading statistics");
            }
            sqlite3_reset(st);
        }
    }
    d.rc = rc;
    sq_push(q, &d);
}

/* A counted DELETE (or other write) in its own savepoint. */
static void counted_write(sq_store *q, const char *sql, int64_t arg, bool has_arg, const char *what,
                          bt_store_count_cb cb, void *ud)
{
    sq_done d = {.kind = K_COUNT, .write = true, .cb = (anycb)cb, .ud = ud};
    int rc = sq_wbegin(q, &d.err);
    if (rc == 0) {
        sqlite3_stmt *st = sq_prep(q, sql, &d.err);
        if (!st) {
            rc = d.err.code;
        } else {
            if (has_arg)
                sqlite3_bind_int64(st, 1, arg);
            int src = sqlite3_step(st);
            sqlite3_reset(st);
            if (src != SQLITE_DONE)
                rc = sq_fail(q, &d.err, src, what);
            else
                d.count = sqlite3_changes(q->db);
        }
        sq_wend(q, rc);
    }
    d.rc = rc;
    sq_push(q, &d);
}

static void sq_cleanup_stale(bt_store *s, int64_t max_age_ms, bt_store_count_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    if (max_age_ms < 0) {
        sq_done d = {.kind = K_COUNT, .cb = (anycb)cb, .ud = ud};
        d.rc = bt_errorf(&d.err, BT_EINVAL, "max_age must not be negative");
        sq_push(q, &d);
        return;
    }
    counted_write(q,
                  "DELETE FROM tasks WHERE status IN ('completed','failed','cancelled') AND "
                  "finished_at < ?1",
                  bt_store__now(s) - max_age_ms, true, "deleting tasks", cb, ud);
}

static void sq_clear_completed(bt_store *s, bt_store_count_cb cb, void *ud)
{
    counted_write((sq_store *)s, "DELETE FROM tasks WHERE status = 'completed'", 0, false,
                  "deleting tasks", cb, ud);
}

/* ---------------------------------------------------------------------------------
 * Runs and steps.
 */
#define RUN_COLS                                                                                   \
    "id, task_id, workflow, workflow_version, status, iteration, cost_usd, tokens_in, "            \
    "tokens_out, output, error, state, created_at, updated_at, finished_at"

static bt_run *row_run(sqlite3_stmt *st)
{
    bt_run *r = bt_xcalloc(1, sizeof *r);
    c_id(st, 0, r->id);
    c_id(st, 1, r->task_id);
    r->workflow = c_str(st, 2);
    r->workflow_version = c_str(st, 3);
    bt_run_status rs = BT_RUN_RUNNING;
    bt_run_status_parse((const char *)sqlite3_column_text(st, 4), &rs);
    r->status = rs;
    r->iteration = sqlite3_column_int(st, 5);
    r->cost_usd = sqlite3_column_double(st, 6);
    r->tokens_in = sqlite3_column_int64(st, 7);
    r->tokens_out = sqlite3_column_int64(st, 8);
    r->output = c_str(st, 9);
    r->error = c_str(st, 10);
    r->state = c_json(st, 11, json_object());
    r->created_at = sqlite3_column_int64(st, 12);
    r->updated_at = sqlite3_column_int64(st, 13);
    r->finished_at = sqlite3_column_int64(st, 14);
    return r;
}

static int load_run(sq_store *q, const char *id, bt_run **out, bt_error *err)
{
    *out = NULL;
    if (!id)
        return bt_errorf(err, BT_EINVAL, "no run id given");
    sqlite3_stmt *st = sq_prep(q, "SELECT " RUN_COLS " FROM runs WHERE id = ?", err);
    if (!st)
        return err->code;
    b_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = row_run(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return bt_errorf(err, BT_ENOENT, "no run with id '%s'", id);
    return sq_fail(q, err, rc, "reading a run");
}

static int ev_run(sq_store *q, const char *type, const bt_run *r, int64_t now, bt_error *err)
{
    json_t *d = json_object();
    json_object_set_new(d, "run", bt_run_to_json(r));
    return ev_add(q, type, r->task_id, r->id, d, now, NULL, err);
}

static void sq_run_create(bt_store *s, const char *task_id, const char *workflow,
                          const char *workflow_version, const json_t *state, bt_store_run_cb cb,
                          void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_RUN, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_task *t = NULL;
    bt_run *r = NULL;
    int rc = 0;
    if (!workflow || !*workflow)
        rc = bt_errorf(&d.err, BT_EINVAL, "a run needs a workflow name");
    else if (state && !json_is_object(state))
        rc = bt_errorf(&d.err, BT_EINVAL, "a run's state must be an object");
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_task(q, task_id, &t, &d.err)))
        goto end;
    int64_t now = bt_store__now(s);
    r = bt_xcalloc(1, sizeof *r);
    bt_store__new_id(s, r->id);
    snprintf(r->task_id, sizeof r->task_id, "%s", task_id);
    r->workflow = bt_xstrdup(workflow);
    r->workflow_version = bt_xstrdup(workflow_version);
    r->status = BT_RUN_RUNNING;
    r->iteration = 1;
    r->state = state ? json_deep_copy(state) : json_object();
    r->created_at = r->updated_at = now;
    sqlite3_stmt *st = sq_prep(q,
                               "INSERT INTO runs(id, task_id, workflow, workflow_version, "
                               "status, iteration, state, created_at, updated_at) "
                               "VALUES(?,?,?,?,?,?,?,?,?)",
                               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, r->id);
    b_text(st, 2, r->task_id);
    b_text(st, 3, r->workflow);
    b_text(st, 4, r->workflow_version);
    b_text(st, 5, bt_run_status_name(r->status));
    sqlite3_bind_int(st, 6, r->iteration);
    b_json(st, 7, r->state);
    sqlite3_bind_int64(st, 8, now);
    sqlite3_bind_int64(st, 9, now);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, &d.err, src, "inserting a run");
        goto end;
    }
    rc = ev_run(q, "run.created", r, now, &d.err);
end:
    sq_wend(q, rc);
out:
    bt_task_free(t);
    d.rc = rc;
    if (rc) {
        bt_run_free(r);
        r = NULL;
    }
    d.one = r;
    sq_push(q, &d);
}

static void sq_run_get(bt_store *s, const char *run_id, bt_store_run_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_RUN, .cb = (anycb)cb, .ud = ud};
    bt_run *r = NULL;
    d.rc = load_run(q, run_id, &r, &d.err);
    d.one = r;
    sq_push(q, &d);
}

static void sq_run_list(bt_store *s, const char *task_id, const bt_run_status *status, int limit,
                        bt_store_runs_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_RUNS, .cb = (anycb)cb, .ud = ud};
    if (limit <= 0 || limit > 1000)
        limit = 100;
    sqlite3_stmt *st = sq_prep(q,
                               "SELECT " RUN_COLS " FROM runs WHERE (?1 IS NULL OR task_id = ?1) "
                               "AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3",
                               &d.err);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    b_text(st, 1, task_id);
    b_text(st, 2, status ? bt_run_status_name(*status) : NULL);
    sqlite3_bind_int(st, 3, limit);
    BT_VEC(void *) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        bt_vec_push(&v, row_run(st));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        d.rc = sq_fail(q, &d.err, rc, "listing runs");
    d.items = v.items;
    d.n = v.len;
    sq_push(q, &d);
}

static bool run_terminal(bt_run_status s)
{
    return s == BT_RUN_COMPLETED || s == BT_RUN_FAILED || s == BT_RUN_CANCELLED;
}

static int save_run(sq_store *q, const bt_run *r, bt_error *err)
{
    sqlite3_stmt *st = sq_prep(q,
                               "UPDATE runs SET status=?, iteration=?, cost_usd=?, tokens_in=?, "
                               "tokens_out=?, output=?, error=?, state=?, updated_at=?, "
                               "finished_at=? WHERE id=?",
                               err);
    if (!st)
        return err->code;
    b_text(st, 1, bt_run_status_name(r->status));
    sqlite3_bind_int(st, 2, r->iteration);
    sqlite3_bind_double(st, 3, r->cost_usd);
    sqlite3_bind_int64(st, 4, r->tokens_in);
    sqlite3_bind_int64(st, 5, r->tokens_out);
    b_text(st, 6, r->output);
    b_text(st, 7, r->error);
    b_json(st, 8, r->state);
    sqlite3_bind_int64(st, 9, r->updated_at);
    sqlite3_bind_int64(st, 10, r->finished_at);
    b_text(st, 11, r->id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(q, err, rc, "updating a run");
}

static void sq_run_update(bt_store *s, const char *run_id, const bt_run_patch *p,
                          bt_store_run_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_RUN, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_run *r = NULL;
    int rc = 0;
    if (p->state && !json_is_object(p->state))
        rc = bt_errorf(&d.err, BT_EINVAL, "a run's state must be an object");
    else if (p->set_status && (unsigned)p->status >= BT_RUN__COUNT)
        rc = bt_errorf(&d.err, BT_EINVAL, "unknown run status %d", (int)p->status);
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_run(q, run_id, &r, &d.err)))
        goto end;
    int64_t now = bt_store__now(s);
    if (p->set_status) {
        if (run_terminal(r->status) && p->status != r->status) {
            rc = bt_errorf(&d.err, BT_ESTATE, "run %s is already %s; it cannot become %s", r->id,
                           bt_run_status_name(r->status), bt_run_status_name(p->status));
            goto end;
        }
        r->status = p->status;
        if (run_terminal(r->status) && !r->finished_at)
            r->finished_at = now;
    }
    if (p->set_iteration)
        r->iteration = p->iteration;
    if (p->output)
        set_str(&r->output, p->output);
    if (p->error)
        set_str(&r->error, p->error);
    if (p->state) {
        json_decref(r->state);
        r->state = json_deep_copy(p->state);
    }
    r->updated_at = now;
    if ((rc = save_run(q, r, &d.err)) == 0)
        rc = ev_run(q, "run.updated", r, now, &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_run_free(r);
        r = NULL;
    }
    d.one = r;
    sq_push(q, &d);
}

#define STEP_COLS                                                                                  \
    "id, run_id, step_key, iteration, attempt, seq, agent, role, fallback_from, status, output, "  \
    "exit_code, error_class, error, tokens_in, tokens_out, cost_usd, started_at, finished_at"

static bt_step *row_step(sqlite3_stmt *st)
{
    bt_step *p = bt_xcalloc(1, sizeof *p);
    c_id(st, 0, p->id);
    c_id(st, 1, p->run_id);
    p->step_key = c_str(st, 2);
    p->iteration = sqlite3_column_int(st, 3);
    p->attempt = sqlite3_column_int(st, 4);
    p->seq = sqlite3_column_int(st, 5);
    p->agent = c_str(st, 6);
    p->role = c_str(st, 7);
    p->fallback_from = c_str(st, 8);
    bt_step_status ss = BT_STEP_PENDING;
    bt_step_status_parse((const char *)sqlite3_column_text(st, 9), &ss);
    p->status = ss;
    p->output = c_str(st, 10);
    p->exit_code = sqlite3_column_int(st, 11);
    p->error_class = c_str(st, 12);
    p->error = c_str(st, 13);
    p->tokens_in = sqlite3_column_int64(st, 14);
    p->tokens_out = sqlite3_column_int64(st, 15);
    p->cost_usd = sqlite3_column_double(st, 16);
    p->started_at = sqlite3_column_int64(st, 17);
    p->finished_at = sqlite3_column_int64(st, 18);
    return p;
}

/* One step row by a WHERE clause with up to four text/int parameters bound by caller. */
static int one_step(sq_store *q, sqlite3_stmt *st, bt_step **out, bt_error *err)
{
    *out = NULL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = row_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return 0;
    return sq_fail(q, err, rc, "reading a step");
}

static int ev_step(sq_store *q, const char *type, const bt_step *p, const char *task_id,
                   int64_t now, bt_error *err)
{
    json_t *d = json_object();
    json_object_set_new(d, "step", bt_step_to_json(p));
    return ev_add(q, type, task_id, p->run_id, d, now, NULL, err);
}

static void sq_step_start(bt_store *s, const char *run_id, const char *step_key, int32_t iteration,
                          int32_t attempt, int32_t seq, const char *agent, const char *role,
                          bt_store_step_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_STEP, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_run *r = NULL;
    bt_step *p = NULL;
    int rc = 0;
    if (!step_key || !*step_key)
        rc = bt_errorf(&d.err, BT_EINVAL, "a step needs a step key");
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_run(q, run_id, &r, &d.err)))
        goto end;
    sqlite3_stmt *st = sq_prep(q,
                               "SELECT " STEP_COLS " FROM steps WHERE run_id=? AND step_key=? "
                               "AND iteration=? AND attempt=?",
                               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, run_id);
    b_text(st, 2, step_key);
    sqlite3_bind_int(st, 3, iteration);
    sqlite3_bind_int(st, 4, attempt);
    if ((rc = one_step(q, st, &p, &d.err)) || p)
        goto end;
    int64_t now = bt_store__now(s);
    p = bt_xcalloc(1, sizeof *p);
    bt_store__new_id(s, p->id);
    snprintf(p->run_id, sizeof p->run_id, "%s", run_id);
    p->step_key = bt_xstrdup(step_key);
    p->iteration = iteration;
    p->attempt = attempt;
    p->seq = seq;
    p->agent = bt_xstrdup(agent);
    p->role = bt_xstrdup(role);
    p->status = BT_STEP_RUNNING;
    p->started_at = now;
    st = sq_prep(q,
                 "INSERT INTO steps(id, run_id, step_key, iteration, attempt, seq, agent, role, "
                 "status, started_at) VALUES(?,?,?,?,?,?,?,?,?,?)",
                 &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, p->id);
    b_text(st, 2, p->run_id);
    b_text(st, 3, p->step_key);
    sqlite3_bind_int(st, 4, iteration);
    sqlite3_bind_int(st, 5, attempt);
    sqlite3_bind_int(st, 6, seq);
    b_text(st, 7, agent);
    b_text(st, 8, role);
    b_text(st, 9, bt_step_status_name(p->status));
    sqlite3_bind_int64(st, 10, now);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, &d.err, src, "inserting a step");
        goto end;
    }
    rc = ev_step(q, "step.started", p, r->task_id, now, &d.err);
end:
    sq_wend(q, rc);
out:
    bt_run_free(r);
    d.rc = rc;
    if (rc) {
        bt_step_free(p);
        p = NULL;
    }
    d.one = p;
    sq_push(q, &d);
}

static void sq_step_finish(bt_store *s, const char *step_id, const bt_step_result *res,
                           bt_store_step_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_STEP, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_step *p = NULL;
    bt_run *r = NULL;
    int rc = 0;
    if (!step_id)
        rc = bt_errorf(&d.err, BT_EINVAL, "no step id given");
    else if (res->status == BT_STEP_PENDING || res->status == BT_STEP_RUNNING ||
             (unsigned)res->status >= BT_STEP__COUNT)
        rc = bt_errorf(&d.err, BT_EINVAL,
                       "a finished step must be succeeded, failed, skipped "
                       "or cancelled");
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    sqlite3_stmt *st = sq_prep(q, "SELECT " STEP_COLS " FROM steps WHERE id=?", &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, step_id);
    if ((rc = one_step(q, st, &p, &d.err)))
        goto end;
    if (!p) {
        rc = bt_errorf(&d.err, BT_ENOENT, "no step with id '%s'", step_id);
        goto end;
    }
    if (p->status != BT_STEP_RUNNING && p->status != BT_STEP_PENDING) {
        rc = bt_errorf(&d.err, BT_ESTATE, "step %s already finished (%s)", p->id,
                       bt_step_status_name(p->status));
        goto end;
    }
    int64_t now = bt_store__now(s);
    p->status = res->status;
    if (res->agent)
        set_str(&p->agent, res->agent);
    set_str(&p->fallback_from, res->fallback_from);
    set_str(&p->output, res->output);
    set_str(&p->error_class, res->error_class);
    set_str(&p->error, res->error);
    p->exit_code = res->exit_code;
    p->tokens_in = res->tokens_in;
    p->tokens_out = res->tokens_out;
    p->cost_usd = res->cost_usd;
    p->finished_at = now;
    st = sq_prep(q,
                 "UPDATE steps SET status=?, agent=?, fallback_from=?, output=?, error_class=?, "
                 "error=?, exit_code=?, tokens_in=?, tokens_out=?, cost_usd=?, finished_at=? "
                 "WHERE id=?",
                 &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, bt_step_status_name(p->status));
    b_text(st, 2, p->agent);
    b_text(st, 3, p->fallback_from);
    b_text(st, 4, p->output);
    b_text(st, 5, p->error_class);
    b_text(st, 6, p->error);
    sqlite3_bind_int(st, 7, p->exit_code);
    sqlite3_bind_int64(st, 8, p->tokens_in);
    sqlite3_bind_int64(st, 9, p->tokens_out);
    sqlite3_bind_double(st, 10, p->cost_usd);
    sqlite3_bind_int64(st, 11, now);
    b_text(st, 12, p->id);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, &d.err, src, "finishing a step");
        goto end;
    }
    if ((rc = load_run(q, p->run_id, &r, &d.err)))
        goto end;
    r->tokens_in += res->tokens_in;
    r->tokens_out += res->tokens_out;
    r->cost_usd += res->cost_usd;
    r->updated_at = now;
    if ((rc = save_run(q, r, &d.err)))
        goto end;
    rc = ev_step(q, "step.finished", p, r->task_id, now, &d.err);
end:
    sq_wend(q, rc);
out:
    bt_run_free(r);
    d.rc = rc;
    if (rc) {
        bt_step_free(p);
        p = NULL;
    }
    d.one = p;
    sq_push(q, &d);
}

static void sq_step_list(bt_store *s, const char *run_id, bt_store_steps_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_STEPS, .cb = (anycb)cb, .ud = ud};
    sqlite3_stmt *st = sq_prep(q,
                               "SELECT " STEP_COLS " FROM steps WHERE run_id = ? ORDER BY "
                               "iteration, seq, attempt, id",
                               &d.err);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    b_text(st, 1, run_id);
    BT_VEC(void *) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        bt_vec_push(&v, row_step(st));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        d.rc = sq_fail(q, &d.err, rc, "listing steps");
    d.items = v.items;
    d.n = v.len;
    sq_push(q, &d);
}

/* ---------------------------------------------------------------------------------
 * Spend (budgets).
 */
static void sq_spend(bt_store *s, const bt_spend_query *qry, bt_store_spend_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_SPEND, .cb = (anycb)cb, .ud = ud};
    bt_spend_query none = {0};
    if (!qry)
        qry = &none;
    /* A filter that is not asked for is not in the statement (one cached statement per
     * combination), so the planner starts from the index of the filter that is:
     * runs_task, tasks_project or steps_finished. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(sum(s.cost_usd), 0), coalesce(sum(s.tokens_in), 0), "
             "coalesce(sum(s.tokens_out), 0), count(*) FROM steps s JOIN runs r ON r.id = "
             "s.run_id JOIN tasks t ON t.id = r.task_id WHERE s.status <> 'pending' AND "
             "s.status <> 'running'%s%s%s",
             qry->task_id ? " AND r.task_id = ?1" : "", qry->project ? " AND t.project = ?2" : "",
             qry->since_ms > 0 ? " AND s.finished_at >= ?3" : "");
    sqlite3_stmt *st = sq_prep(q, sql, &d.err);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    if (qry->task_id)
        b_text(st, 1, qry->task_id);
    if (qry->project)
        b_text(st, 2, qry->project);
    if (qry->since_ms > 0)
        sqlite3_bind_int64(st, 3, qry->since_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        d.spend.cost_usd = sqlite3_column_double(st, 0);
        d.spend.tokens_in = sqlite3_column_int64(st, 1);
        d.spend.tokens_out = sqlite3_column_int64(st, 2);
        d.spend.steps = sqlite3_column_int64(st, 3);
    } else {
        d.rc = sq_fail(q, &d.err, rc, "summing spend");
    }
    sqlite3_reset(st);
    sq_push(q, &d);
}

/* ---------------------------------------------------------------------------------
 * Usage (the dashboard). Integer division buckets a timestamp: finished_at / 86400000
 * is its UTC day. Each read walks one index range (steps_finished, runs_created,
 * runs_finished) and groups in the database. A project is a filter on that walk ("+"
 * keeps the planner off tasks_project, whose walk would cover the project's whole
 * history where the range covers at most 90 days).
 */
#define DAY_MS  86400000LL
#define HOUR_MS 3600000LL

static int usage_steps(sq_store *q, const bt_usage_query *u, bt_usage *out, bt_error *err)
{
    sqlite3_stmt *st = sq_prep(
        q,
        u->project
            ? "SELECT s.finished_at / 86400000, t.project, s.agent, count(*), "
              "sum(s.status = 'failed'), sum(s.tokens_in), sum(s.tokens_out), sum(s.cost_usd), "
              "sum(CASE WHEN s.started_at > 0 AND s.finished_at > s.started_at THEN "
              "s.finished_at - s.started_at ELSE 0 END) FROM steps s JOIN runs r ON r.id = "
              "s.run_id JOIN tasks t ON t.id = r.task_id WHERE s.finished_at >= ?1 AND "
              "s.finished_at < ?2 AND s.status <> 'pending' AND s.status <> 'running' AND "
              "+t.project = ?3 GROUP BY 1, 2, 3"
            : "SELECT s.finished_at / 86400000, t.project, s.agent, count(*), "
              "sum(s.status = 'failed'), sum(s.tokens_in), sum(s.tokens_out), sum(s.cost_usd), "
              "sum(CASE WHEN s.started_at > 0 AND s.finished_at > s.started_at THEN "
              "s.finished_at - s.started_at ELSE 0 END) FROM steps s JOIN runs r ON r.id = "
              "s.run_id JOIN tasks t ON t.id = r.task_id WHERE s.finished_at >= ?1 AND "
              "s.finished_at < ?2 AND s.status <> 'pending' AND s.status <> 'running' "
              "GROUP BY 1, 2, 3",
        err);
    if (!st)
        return err->code;
    sqlite3_bind_int64(st, 1, u->since_ms);
    sqlite3_bind_int64(st, 2, u->until_ms);
    if (u->project)
        b_text(st, 3, u->project);
    BT_VEC(bt_usage_steps) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bt_usage_steps r = {
            .day_ms = sqlite3_column_int64(st, 0) * DAY_MS,
            .project = c_str(st, 1),
            .agent = c_str(st, 2),
            .steps = sqlite3_column_int64(st, 3),
            .failed = sqlite3_column_int64(st, 4),
            .tokens_in = sqlite3_column_int64(st, 5),
            .tokens_out = sqlite3_column_int64(st, 6),
            .cost_usd = sqlite3_column_double(st, 7),
            .duration_ms = sqlite3_column_int64(st, 8),
        };
        bt_vec_push(&v, r);
    }
    sqlite3_reset(st);
    out->steps = v.items;
    out->nsteps = v.len;
    return rc == SQLITE_DONE ? 0 : sq_fail(q, err, rc, "reading step usage");
}

/* Runs created and runs finished in [since, until), per (bucket, project, status). */
static int usage_runs(sq_store *q, const bt_usage_query *u, int64_t since, int64_t bucket,
                      bt_usage_runs **items, size_t *n, bt_error *err)
{
    sqlite3_stmt *st = sq_prep(
        q,
        u->project ? "SELECT b, p, status, sum(c), sum(f) FROM ("
                     "SELECT r.created_at / ?3 AS b, t.project AS p, r.status AS status, "
                     "count(*) AS c, 0 AS f FROM runs r JOIN tasks t ON t.id = r.task_id "
                     "WHERE r.created_at >= ?1 AND r.created_at < ?2 AND +t.project = ?4 "
                     "GROUP BY 1, 2, 3 UNION ALL "
                     "SELECT r.finished_at / ?3, t.project, r.status, 0, count(*) FROM runs r "
                     "JOIN tasks t ON t.id = r.task_id WHERE r.finished_at > 0 AND "
                     "r.finished_at >= ?1 AND r.finished_at < ?2 AND +t.project = ?4 "
                     "GROUP BY 1, 2, 3) GROUP BY 1, 2, 3"
                   : "SELECT b, p, status, sum(c), sum(f) FROM ("
                     "SELECT r.created_at / ?3 AS b, t.project AS p, r.status AS status, "
                     "count(*) AS c, 0 AS f FROM runs r JOIN tasks t ON t.id = r.task_id "
                     "WHERE r.created_at >= ?1 AND r.created_at < ?2 "
                     "GROUP BY 1, 2, 3 UNION ALL "
                     "SELECT r.finished_at / ?3, t.project, r.status, 0, count(*) FROM runs r "
                     "JOIN tasks t ON t.id = r.task_id WHERE r.finished_at > 0 AND "
                     "r.finished_at >= ?1 AND r.finished_at < ?2 "
                     "GROUP BY 1, 2, 3) GROUP BY 1, 2, 3",
        err);
    if (!st)
        return err->code;
    sqlite3_bind_int64(st, 1, since);
    sqlite3_bind_int64(st, 2, u->until_ms);
    sqlite3_bind_int64(st, 3, bucket);
    if (u->project)
        b_text(st, 4, u->project);
    BT_VEC(bt_usage_runs) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bt_run_status status;
        const unsigned char *name = sqlite3_column_text(st, 2);
        if (!name || bt_run_status_parse((const char *)name, &status) < 0)
            continue; /* not a status this baton knows: nothing to count it as */
        bt_usage_runs r = {
            .bucket_ms = sqlite3_column_int64(st, 0) * bucket,
            .project = c_str(st, 1),
            .status = status,
            .created = sqlite3_column_int64(st, 3),
            .finished = sqlite3_column_int64(st, 4),
        };
        bt_vec_push(&v, r);
    }
    sqlite3_reset(st);
    *items = v.items;
    *n = v.len;
    return rc == SQLITE_DONE ? 0 : sq_fail(q, err, rc, "reading run usage");
}

static void sq_usage(bt_store *s, const bt_usage_query *u, bt_store_usage_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_USAGE, .cb = (anycb)cb, .ud = ud};
    int rc = bt_store__check_usage(u, &d.err);
    if (!rc)
        rc = usage_steps(q, u, &d.usage, &d.err);
    if (!rc)
        rc = usage_runs(q, u, u->since_ms, DAY_MS, &d.usage.runs_by_day, &d.usage.nruns_by_day,
                        &d.err);
    if (!rc && u->hours_since_ms > 0)
        rc = usage_runs(q, u, u->hours_since_ms, HOUR_MS, &d.usage.runs_by_hour,
                        &d.usage.nruns_by_hour, &d.err);
    d.rc = rc;
    sq_push(q, &d);
}

/* ---------------------------------------------------------------------------------
 * Events: operations.
 */
static void sq_event_append(bt_store *s, const char *type, const char *task_id, const char *run_id,
                            const json_t *data, bt_store_event_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_EVENT, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_event *e = NULL;
    int rc = 0;
    if (!type || !*type)
        rc = bt_errorf(&d.err, BT_EINVAL, "an event needs a type");
    else if (data && !json_is_object(data))
        rc = bt_errorf(&d.err, BT_EINVAL, "an event's data must be an object");
    if (rc == 0 && (rc = sq_wbegin(q, &d.err)) == 0) {
        rc = ev_add(q, type, task_id, run_id, data ? json_deep_copy(data) : NULL, bt_store__now(s),
                    &e, &d.err);
        sq_wend(q, rc);
    }
    d.rc = rc;
    d.one = e;
    sq_push(q, &d);
}

static void sq_event_read(bt_store *s, const bt_event_filter *f, bt_store_events_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_EVENTS, .cb = (anycb)cb, .ud = ud};
    bt_event_filter none = {0};
    if (!f)
        f = &none;
    int limit = f->limit <= 0 ? 500 : f->limit > 5000 ? 5000 : f->limit;
    sqlite3_stmt *st =
        sq_prep(q,
                "SELECT seq, type, task_id, run_id, ts, data FROM events WHERE seq > ?1 AND "
                "(?2 IS NULL OR task_id = ?2) AND (?3 IS NULL OR run_id = ?3) AND (?4 IS NULL OR "
                "substr(type, 1, length(?4)) = ?4) ORDER BY seq LIMIT ?5",
                &d.err);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    sqlite3_bind_int64(st, 1, f->after_seq);
    b_text(st, 2, f->task_id);
    b_text(st, 3, f->run_id);
    b_text(st, 4, f->type_prefix);
    sqlite3_bind_int(st, 5, limit);
    BT_VEC(void *) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bt_event *e = bt_xcalloc(1, sizeof *e);
        e->seq = sqlite3_column_int64(st, 0);
        e->type = c_str(st, 1);
        c_id(st, 2, e->task_id);
        c_id(st, 3, e->run_id);
        e->ts = sqlite3_column_int64(st, 4);
        e->data = c_json(st, 5, json_object());
        bt_vec_push(&v, e);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        d.rc = sq_fail(q, &d.err, rc, "reading events");
    d.items = v.items;
    d.n = v.len;
    sq_push(q, &d);
}

static void sq_event_last_seq(bt_store *s, bt_store_count_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_COUNT, .cb = (anycb)cb, .ud = ud};
    sqlite3_stmt *st = sq_prep(q, "SELECT coalesce(max(seq), 0) FROM events", &d.err);
    if (!st) {
        d.rc = d.err.code;
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            d.count = sqlite3_column_int64(st, 0);
        else
            d.rc = sq_fail(q, &d.err, rc, "reading the last event");
        sqlite3_reset(st);
    }
    sq_push(q, &d);
}

/* ---------------------------------------------------------------------------------
 * Workers.
 */
#define WORKER_COLS "id, ip, status, current_task, last_seen, info, created_at"

static bt_worker *row_worker(sqlite3_stmt *st)
{
    bt_worker *w = bt_xcalloc(1, sizeof *w);
    w->id = c_str(st, 0);
    w->ip = c_str(st, 1);
    w->status = c_str(st, 2);
    w->current_task = c_str(st, 3);
    w->last_seen = sqlite3_column_int64(st, 4);
    w->info = c_json(st, 5, json_object());
    w->created_at = sqlite3_column_int64(st, 6);
    return w;
}

static int load_worker(sq_store *q, const char *id, bt_worker **out, bt_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = sq_prep(q, "SELECT " WORKER_COLS " FROM workers WHERE id = ?", err);
    if (!st)
        return err->code;
    b_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = row_worker(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return bt_errorf(err, BT_ENOENT, "no worker with id '%s'", id ? id : "");
    return sq_fail(q, err, rc, "reading a worker");
}

static void sq_worker_upsert(bt_store *s, const bt_worker_input *in, bt_store_worker_cb cb,
                             void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_WORKER, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_worker *w = NULL;
    int rc = 0;
    if (!in->id || !*in->id)
        rc = bt_errorf(&d.err, BT_EINVAL, "a worker needs an id");
    else if (in->info && !json_is_object(in->info))
        rc = bt_errorf(&d.err, BT_EINVAL, "a worker's info must be an object");
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    int64_t now = bt_store__now(s);
    sqlite3_stmt *st = sq_prep(
        q,
        "INSERT INTO workers(id, ip, status, current_task, last_seen, info, created_at) "
        "VALUES(?1, ?2, coalesce(?3, 'idle'), ?4, ?5, coalesce(?6, '{}'), ?5) "
        "ON CONFLICT(id) DO UPDATE SET ip = coalesce(?2, ip), status = coalesce(?3, status), "
        "current_task = ?4, last_seen = ?5, info = coalesce(?6, info)",
        &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, in->id);
    b_text(st, 2, in->ip);
    b_text(st, 3, in->status);
    b_text(st, 4, in->current_task);
    sqlite3_bind_int64(st, 5, now);
    b_json(st, 6, in->info);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, &d.err, src, "saving a worker");
        goto end;
    }
    if ((rc = load_worker(q, in->id, &w, &d.err)))
        goto end;
    json_t *ev = json_object();
    json_object_set_new(ev, "worker", bt_worker_to_json(w));
    rc = ev_add(q, "worker.updated", NULL, NULL, ev, now, NULL, &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_worker_free(w);
        w = NULL;
    }
    d.one = w;
    sq_push(q, &d);
}

static void sq_worker_get(bt_store *s, const char *id, bt_store_worker_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_WORKER, .cb = (anycb)cb, .ud = ud};
    bt_worker *w = NULL;
    d.rc = load_worker(q, id, &w, &d.err);
    d.one = w;
    sq_push(q, &d);
}

static void sq_worker_list(bt_store *s, bt_store_workers_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_WORKERS, .cb = (anycb)cb, .ud = ud};
    sqlite3_stmt *st = sq_prep(q, "SELECT " WORKER_COLS " FROM workers ORDER BY id", &d.err);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    BT_VEC(void *) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        bt_vec_push(&v, row_worker(st));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        d.rc = sq_fail(q, &d.err, rc, "listing workers");
    d.items = v.items;
    d.n = v.len;
    sq_push(q, &d);
}

/* ---------------------------------------------------------------------------------
 * Approvals.
 */
#define APPROVAL_COLS                                                                              \
    "id, run_id, task_id, step_key, prompt, context, status, decided_by, comment, expires_at, "    \
    "created_at, decided_at"

static bt_approval *row_approval(sqlite3_stmt *st)
{
    bt_approval *a = bt_xcalloc(1, sizeof *a);
    c_id(st, 0, a->id);
    c_id(st, 1, a->run_id);
    c_id(st, 2, a->task_id);
    a->step_key = c_str(st, 3);
    a->prompt = c_str(st, 4);
    a->context = c_json(st, 5, json_object());
    const char *s = (const char *)sqlite3_column_text(st, 6);
    a->status = BT_APPROVAL_PENDING;
    for (int i = 0; s && i < BT_APPROVAL__COUNT; i++)
        if (strcmp(s, bt_approval_status_name((bt_approval_status)i)) == 0)
            a->status = (bt_approval_status)i;
    a->decided_by = c_str(st, 7);
    a->comment = c_str(st, 8);
    a->expires_at = sqlite3_column_int64(st, 9);
    a->created_at = sqlite3_column_int64(st, 10);
    a->decided_at = sqlite3_column_int64(st, 11);
    return a;
}

static int load_approval(sq_store *q, const char *id, bt_approval **out, bt_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = sq_prep(q, "SELECT " APPROVAL_COLS " FROM approvals WHERE id = ?", err);
    if (!st)
        return err->code;
    b_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = row_approval(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return bt_errorf(err, BT_ENOENT, "no approval with id '%s'", id ? id : "");
    return sq_fail(q, err, rc, "reading an approval");
}

static int ev_approval(sq_store *q, const char *type, const bt_approval *a, int64_t now,
                       bt_error *err)
{
    json_t *d = json_object();
    json_object_set_new(d, "approval", bt_approval_to_json(a));
    return ev_add(q, type, a->task_id, a->run_id, d, now, NULL, err);
}

static void sq_approval_create(bt_store *s, const bt_approval_input *in, bt_store_approval_cb cb,
                               void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_APPROVAL, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_approval *a = NULL;
    bt_run *r = NULL;
    int rc = 0;
    if (!in->run_id || !in->step_key || !*in->step_key)
        rc = bt_errorf(&d.err, BT_EINVAL, "an approval needs a run id and a step key");
    else if (in->context && !json_is_object(in->context))
        rc = bt_errorf(&d.err, BT_EINVAL, "an approval's context must be an object");
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_run(q, in->run_id, &r, &d.err)))
        goto end;
    int64_t now = bt_store__now(s);
    a = bt_xcalloc(1, sizeof *a);
    bt_store__new_id(s, a->id);
    snprintf(a->run_id, sizeof a->run_id, "%s", in->run_id);
    snprintf(a->task_id, sizeof a->task_id, "%s", in->task_id ? in->task_id : r->task_id);
    a->step_key = bt_xstrdup(in->step_key);
    a->prompt = bt_xstrdup(in->prompt);
    a->context = in->context ? json_deep_copy(in->context) : json_object();
    a->status = BT_APPROVAL_PENDING;
    a->expires_at = in->expires_at;
    a->created_at = now;
    sqlite3_stmt *st = sq_prep(q,
                               "INSERT INTO approvals(id, run_id, task_id, step_key, prompt, "
                               "context, status, expires_at, created_at) "
                               "VALUES(?,?,?,?,?,?,?,?,?)",
                               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, a->id);
    b_text(st, 2, a->run_id);
    b_text(st, 3, *a->task_id ? a->task_id : NULL);
    b_text(st, 4, a->step_key);
    b_text(st, 5, a->prompt);
    b_json(st, 6, a->context);
    b_text(st, 7, bt_approval_status_name(a->status));
    sqlite3_bind_int64(st, 8, a->expires_at);
    sqlite3_bind_int64(st, 9, now);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, &d.err, src, "inserting an approval");
        goto end;
    }
    rc = ev_approval(q, "approval.requested", a, now, &d.err);
end:
    sq_wend(q, rc);
out:
    bt_run_free(r);
    d.rc = rc;
    if (rc) {
        bt_approval_free(a);
        a = NULL;
    }
    d.one = a;
    sq_push(q, &d);
}

static void sq_approval_get(bt_store *s, const char *id, bt_store_approval_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_APPROVAL, .cb = (anycb)cb, .ud = ud};
    bt_approval *a = NULL;
    d.rc = load_approval(q, id, &a, &d.err);
    d.one = a;
    sq_push(q, &d);
}

static void sq_approval_list(bt_store *s, const bt_approval_status *status, const char *run_id,
                             bt_store_approvals_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_APPROVALS, .cb = (anycb)cb, .ud = ud};
    sqlite3_stmt *st = sq_prep(q,
                               "SELECT " APPROVAL_COLS " FROM approvals WHERE status = ?1 AND "
                               "(?2 IS NULL OR run_id = ?2) ORDER BY id",
                               &d.err);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    b_text(st, 1, bt_approval_status_name(status ? *status : BT_APPROVAL_PENDING));
    b_text(st, 2, run_id);
    BT_VEC(void *) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        bt_vec_push(&v, row_approval(st));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        d.rc = sq_fail(q, &d.err, rc, "listing approvals");
    d.items = v.items;
    d.n = v.len;
    sq_push(q, &d);
}

static void sq_approval_decide(bt_store *s, const char *id, bool approve, const char *by,
                               const char *comment, bt_store_approval_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_APPROVAL, .write = true, .cb = (anycb)cb, .ud = ud};
    bt_approval *a = NULL;
    int rc;
    if ((rc = sq_wbegin(q, &d.err)))
        goto out;
    if ((rc = load_approval(q, id, &a, &d.err)))
        goto end;
    int64_t now = bt_store__now(s);
    if (a->status != BT_APPROVAL_PENDING) {
        rc = bt_errorf(&d.err, BT_ESTATE, "approval %s was already decided (%s by %s)", a->id,
                       bt_approval_status_name(a->status), a->decided_by ? a->decided_by : "?");
        goto end;
    }
    if (a->expires_at > 0 && now >= a->expires_at) {
        rc = bt_errorf(&d.err, BT_ESTATE, "approval %s expired before it was decided", a->id);
        goto end;
    }
    a->status = approve ? BT_APPROVAL_APPROVED : BT_APPROVAL_REJECTED;
    set_str(&a->decided_by, by);
    set_str(&a->comment, comment);
    a->decided_at = now;
    sqlite3_stmt *st = sq_prep(q,
                               "UPDATE approvals SET status=?, decided_by=?, comment=?, "
                               "decided_at=? WHERE id=? AND status='pending'",
                               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, bt_approval_status_name(a->status));
    b_text(st, 2, by);
    b_text(st, 3, comment);
    sqlite3_bind_int64(st, 4, now);
    b_text(st, 5, a->id);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) {
        rc = sq_fail(q, &d.err, src, "deciding an approval");
        goto end;
    }
    rc = ev_approval(q, "approval.decided", a, now, &d.err);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    if (rc) {
        bt_approval_free(a);
        a = NULL;
    }
    d.one = a;
    sq_push(q, &d);
}

/* ---------------------------------------------------------------------------------
 * Locks.
 */
static json_t *lock_json(const char *repo, const char *path, const char *owner, int64_t exp)
{
    json_t *o = json_object();
    json_object_set_new(o, "repo", json_string(repo));
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "owner", json_string(owner));
    json_object_set_new(o, "expires_at", json_integer(exp));
    json_t *d = json_object();
    json_object_set_new(d, "lock", o);
    return d;
}

/* "a/b/" -> "a/b"; "./" and "/" -> "" (the whole repository). */
static char *norm_path(const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    while (*p == '/')
        p++;
    char *s = bt_xstrdup(strcmp(p, ".") == 0 ? "" : p);
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

static void sq_lock_acquire(bt_store *s, const char *repo, const char *const *paths, size_t n,
                            const char *owner, int64_t ttl_ms, bt_store_lock_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_LOCK, .write = true, .cb = (anycb)cb, .ud = ud};
    int rc = 0;
    if (!repo || !owner || !*owner || (n > 0 && !paths))
        rc = bt_errorf(&d.err, BT_EINVAL, "a lock needs a repository, paths and an owner");
    else if (ttl_ms <= 0)
        rc = bt_errorf(&d.err, BT_EINVAL, "a lock needs a positive ttl");
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    int64_t now = bt_store__now(s);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *p = norm_path(paths[i]);
        sqlite3_stmt *st = sq_prep(
            q,
            "SELECT repo, path, owner, expires_at FROM locks WHERE repo = ?1 AND owner <> ?2 "
            "AND expires_at > ?3 AND (path = ?4 OR path = '' OR ?4 = '' OR "
            "substr(?4, 1, length(path) + 1) = path || '/' OR "
            "substr(path, 1, length(?4) + 1) = ?4 || '/') LIMIT 1",
            &d.err);
        if (!st) {
            rc = d.err.code;
            free(p);
            break;
        }
        b_text(st, 1, repo);
        b_text(st, 2, owner);
        sqlite3_bind_int64(st, 3, now);
        b_text(st, 4, p);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            bt_lock *l = bt_xcalloc(1, sizeof *l);
            l->repo = c_str(st, 0);
            l->path = c_str(st, 1);
            l->owner = c_str(st, 2);
            l->expires_at = sqlite3_column_int64(st, 3);
            d.one = l;
            rc = bt_errorf(&d.err, BT_ECONFLICT, "%s:%s is locked by %s (path %s)", repo, p,
                           l->owner, *l->path ? l->path : "(whole repository)");
        } else if (src != SQLITE_DONE) {
            rc = sq_fail(q, &d.err, src, "checking locks");
        }
        sqlite3_reset(st);
        if (rc == 0) {
            st = sq_prep(q,
                         "INSERT INTO locks(repo, path, owner, expires_at) VALUES(?,?,?,?) "
                         "ON CONFLICT(repo, path, owner) DO UPDATE SET expires_at = "
                         "excluded.expires_at",
                         &d.err);
            if (!st) {
                rc = d.err.code;
            } else {
                b_text(st, 1, repo);
                b_text(st, 2, p);
                b_text(st, 3, owner);
                sqlite3_bind_int64(st, 4, now + ttl_ms);
                src = sqlite3_step(st);
                sqlite3_reset(st);
                if (src != SQLITE_DONE)
                    rc = sq_fail(q, &d.err, src, "taking a lock");
                else
                    rc = ev_add(q, "lock.acquired", NULL, NULL,
                                lock_json(repo, p, owner, now + ttl_ms), now, NULL, &d.err);
            }
        }
        free(p);
    }
    sq_wend(q, rc);
out:
    d.rc = rc;
    sq_push(q, &d);
}

static void sq_lock_release(bt_store *s, const char *repo, const char *owner, bt_store_count_cb cb,
                            void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_COUNT, .write = true, .cb = (anycb)cb, .ud = ud};
    int rc = 0;
    if (!owner)
        rc = bt_errorf(&d.err, BT_EINVAL, "releasing locks needs an owner");
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    int64_t now = bt_store__now(s);
    sqlite3_stmt *st = sq_prep(q,
                               "DELETE FROM locks WHERE owner = ?1 AND (?2 IS NULL OR repo = ?2) "
                               "RETURNING repo, path, owner, expires_at",
                               &d.err);
    if (!st) {
        rc = d.err.code;
        goto end;
    }
    b_text(st, 1, owner);
    b_text(st, 2, repo);
    BT_VEC(json_t *) gone = {0};
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW)
        bt_vec_push(&gone, lock_json((const char *)sqlite3_column_text(st, 0),
                                     (const char *)sqlite3_column_text(st, 1),
                                     (const char *)sqlite3_column_text(st, 2),
                                     sqlite3_column_int64(st, 3)));
    sqlite3_reset(st);
    if (src != SQLITE_DONE)
        rc = sq_fail(q, &d.err, src, "releasing locks");
    for (size_t i = 0; i < gone.len; i++) {
        if (rc == 0)
            rc = ev_add(q, "lock.released", NULL, NULL, gone.items[i], now, NULL, &d.err);
        else
            json_decref(gone.items[i]);
    }
    d.count = (int64_t)gone.len;
    bt_vec_free(&gone);
end:
    sq_wend(q, rc);
out:
    d.rc = rc;
    sq_push(q, &d);
}

/* ---------------------------------------------------------------------------------
 * Agent calls (resilience statistics).
 */
static void sq_agent_call_add(bt_store *s, const bt_agent_call *c, bt_store_done_cb cb, void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_DONE, .write = true, .cb = (anycb)cb, .ud = ud};
    int rc = bt_store__check_agent_call(c, &d.err);
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    sqlite3_stmt *st = sq_prep(q,
                               "INSERT INTO agent_calls(agent, outcome, error_class, duration_ms, "
                               "tokens, at, task_id) VALUES(?,?,?,?,?,?,?)",
                               &d.err);
    if (!st) {
        rc = d.err.code;
    } else {
        b_text(st, 1, c->agent);
        b_text(st, 2, c->outcome);
        b_text(st, 3, c->error_class && *c->error_class ? c->error_class : NULL);
        sqlite3_bind_int64(st, 4, c->duration_ms);
        sqlite3_bind_int64(st, 5, c->tokens);
        sqlite3_bind_int64(st, 6, c->at);
        b_text(st, 7, c->task_id[0] ? c->task_id : NULL);
        int src = sqlite3_step(st);
        sqlite3_reset(st);
        if (src != SQLITE_DONE)
            rc = sq_fail(q, &d.err, src, "recording an agent call");
    }
    sq_wend(q, rc);
out:
    d.rc = rc;
    sq_push(q, &d);
}

/* The agents are found by a skip scan of agent_calls_agent_at (min(agent) above the
 * previous one), and each agent's newest per_agent calls by a backward range scan of the
 * same index: the cost is agents x per_agent, not the size of the table. */
static void sq_agent_calls(bt_store *s, int64_t since_ms, int per_agent, bt_store_agent_calls_cb cb,
                           void *ud)
{
    sq_store *q = (sq_store *)s;
    sq_done d = {.kind = K_CALLS, .cb = (anycb)cb, .ud = ud};
    if (per_agent < 1) {
        d.rc = bt_errorf(&d.err, BT_EINVAL, "agent calls: per_agent must be at least 1 (got %d)",
                         per_agent);
        sq_push(q, &d);
        return;
    }
    sqlite3_stmt *st = sq_prep(
        q,
        "WITH RECURSIVE ag(a) AS (SELECT min(agent) FROM agent_calls UNION ALL "
        "SELECT (SELECT min(agent) FROM agent_calls WHERE agent > ag.a) FROM ag "
        "WHERE ag.a IS NOT NULL) "
        "SELECT c.agent, c.outcome, c.error_class, c.duration_ms, c.tokens, c.at, c.task_id "
        "FROM ag JOIN agent_calls c ON c.id IN (SELECT id FROM agent_calls WHERE agent = ag.a "
        "AND at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2) ORDER BY c.agent, c.at, c.id",
        &d.err);
    if (!st) {
        d.rc = d.err.code;
        sq_push(q, &d);
        return;
    }
    sqlite3_bind_int64(st, 1, since_ms > 0 ? since_ms : INT64_MIN);
    sqlite3_bind_int(st, 2, per_agent);
    BT_VEC(void *) v = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bt_agent_call *c = bt_xcalloc(1, sizeof *c);
        c->agent = c_str(st, 0);
        c->outcome = c_str(st, 1);
        c->error_class = c_str(st, 2);
        c->duration_ms = sqlite3_column_int64(st, 3);
        c->tokens = sqlite3_column_int64(st, 4);
        c->at = sqlite3_column_int64(st, 5);
        c_id(st, 6, c->task_id);
        bt_vec_push(&v, c);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        d.rc = sq_fail(q, &d.err, rc, "reading agent calls");
    d.items = v.items;
    d.n = v.len;
    sq_push(q, &d);
}

static void sq_agent_calls_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud)
{
    counted_write((sq_store *)s, "DELETE FROM agent_calls WHERE at < ?1", before_ms, true,
                  "pruning agent calls", cb, ud);
}

/* ---------------------------------------------------------------------------------
 * Webhook deliveries.
 */

/* A counted write keyed by (source, delivery_id); ?3 is the store clock. */
static void delivery_write(sq_store *q, const char *sql, const char *source,
                           const char *delivery_id, const char *what, bt_store_count_cb cb,
                           void *ud)
{
    sq_done d = {.kind = K_COUNT, .write = true, .cb = (anycb)cb, .ud = ud};
    int rc = bt_store__check_delivery(source, delivery_id, &d.err);
    if (rc || (rc = sq_wbegin(q, &d.err)))
        goto out;
    sqlite3_stmt *st = sq_prep(q, sql, &d.err);
    if (!st) {
        rc = d.err.code;
    } else {
        b_text(st, 1, source);
        b_text(st, 2, delivery_id);
        if (sqlite3_bind_parameter_count(st) >= 3)
            sqlite3_bind_int64(st, 3, bt_store__now(&q->base));
        int src = sqlite3_step(st);
        sqlite3_reset(st);
        if (src != SQLITE_DONE)
            rc = sq_fail(q, &d.err, src, what);
        else
            d.count = sqlite3_changes(q->db);
    }
    sq_wend(q, rc);
out:
    d.rc = rc;
    sq_push(q, &d);
}

static void sq_delivery_record(bt_store *s, const char *source, const char *delivery_id,
                               bt_store_count_cb cb, void *ud)
{
    delivery_write((sq_store *)s,
                   "INSERT INTO webhook_deliveries(source, delivery_id, received_at) "
                   "VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING",
                   source, delivery_id, "recording a webhook delivery", cb, ud);
}

static void sq_delivery_forget(bt_store *s, const char *source, const char *delivery_id,
                               bt_store_count_cb cb, void *ud)
{
    delivery_write((sq_store *)s,
                   "DELETE FROM webhook_deliveries WHERE source = ?1 AND delivery_id = ?2", source,
                   delivery_id, "forgetting a webhook delivery", cb, ud);
}

static void sq_deliveries_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud)
{
    counted_write((sq_store *)s, "DELETE FROM webhook_deliveries WHERE received_at < ?1", before_ms,
                  true, "pruning webhook deliveries", cb, ud);
}

/* ---------------------------------------------------------------------------------
 * Flush, close, open.
 */
static void sq_flush(bt_store *s, bt_store_done_cb cb, void *ud)
{
    sq_done d = {.kind = K_DONE, .write = true, .cb = (anycb)cb, .ud = ud};
    sq_push((sq_store *)s, &d);
}

static int sq_connections(const bt_store *s)
{
    return ((const sq_store *)s)->db ? 1 : 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    sq_handles *hs = h->data;
    if (--hs->closing == 0)
        free(hs);
}

static void sq_close(bt_store *s)
{
    sq_store *q = (sq_store *)s;
    /* Complete everything pending, including what those callbacks issue. */
    for (int round = 0; round < 100 && (q->in_txn || q->done.len || q->defer.len); round++)
        sq_turn(q);
    q->closing = true;
    if (q->h) {
        q->h->check.data = q->h;
        q->h->idle.data = q->h;
        q->h->closing = 2;
        uv_close((uv_handle_t *)&q->h->check, on_handle_closed);
        uv_close((uv_handle_t *)&q->h->idle, on_handle_closed);
    }
    for (size_t i = 0; i < q->cache_cap; i++) {
        if (q->cache[i].sql) {
            sqlite3_finalize(q->cache[i].st);
            free(q->cache[i].sql);
        }
    }
    free(q->cache);
    if (q->db)
        sqlite3_close_v2(q->db);
    for (size_t i = 0; i < q->events.len; i++)
        pev_free(&q->events.items[i]);
    bt_vec_free(&q->events);
    bt_vec_free(&q->done);
    for (size_t i = 0; i < q->defer.len; i++) /* only if close gave up */
        defer_free(&q->defer.items[i]);
    bt_vec_free(&q->defer);
    free(q->path);
    free(q);
}

static const bt_store_vtable sqlite_vt = {
    .name = "sqlite",
    .close = sq_close,
    .connections = sq_connections,
    .flush = sq_flush,
    .task_create = sq_task_create,
    .task_get = sq_task_get,
    .task_get_by_key = sq_task_get_by_key,
    .task_list = sq_task_list,
    .task_update = sq_task_update,
    .task_transition = sq_task_transition,
    .claim = sq_claim,
    .heartbeat = sq_heartbeat,
    .complete = sq_complete,
    .fail = sq_fail_op,
    .release = sq_release,
    .requeue_expired = sq_requeue_expired,
    .task_stats = sq_task_stats,
    .cleanup_stale = sq_cleanup_stale,
    .clear_completed = sq_clear_completed,
    .run_create = sq_run_create,
    .run_get = sq_run_get,
    .run_list = sq_run_list,
    .run_update = sq_run_update,
    .step_start = sq_step_start,
    .step_finish = sq_step_finish,
    .step_list = sq_step_list,
    .spend = sq_spend,
    .usage = sq_usage,
    .event_append = sq_event_append,
    .event_read = sq_event_read,
    .event_last_seq = sq_event_last_seq,
    .worker_upsert = sq_worker_upsert,
    .worker_get = sq_worker_get,
    .worker_list = sq_worker_list,
    .approval_create = sq_approval_create,
    .approval_get = sq_approval_get,
    .approval_list = sq_approval_list,
    .approval_decide = sq_approval_decide,
    .lock_acquire = sq_lock_acquire,
    .lock_release = sq_lock_release,
    .agent_call_add = sq_agent_call_add,
    .agent_calls = sq_agent_calls,
    .agent_calls_prune = sq_agent_calls_prune,
    .delivery_record = sq_delivery_record,
    .delivery_forget = sq_delivery_forget,
    .deliveries_prune = sq_deliveries_prune,
};

/* Applies missing migrations, each in its own IMMEDIATE transaction (so two processes
 * opening a fresh file at once do not both apply one). */
static int sq_migrate(sq_store *q, bt_error *err)
{
    int rc = sq_exec(q,
                     "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "applied_at INTEGER NOT NULL, baton_version TEXT NOT NULL)",
                     err);
    if (rc)
        return rc;
    for (;;) {
        if ((rc = sq_exec(q, "BEGIN IMMEDIATE", err)))
            return rc;
        sqlite3_stmt *st = NULL;
        int64_t have = 0;
        char need[64] = "a newer version";
        int src = sqlite3_prepare_v2(q->db,
                                     "SELECT version, baton_version FROM schema_migrations "
                                     "ORDER BY version DESC LIMIT 1",
                                     -1, &st, NULL);
        if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
            have = sqlite3_column_int64(st, 0);
            const char *v = (const char *)sqlite3_column_text(st, 1);
            if (v)
                snprintf(need, sizeof need, "%s or newer", v);
            src = SQLITE_DONE;
        }
        sqlite3_finalize(st);
        if (src != SQLITE_DONE && src != SQLITE_OK) {
            rc = sq_fail(q, err, src, "reading schema_migrations");
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (have > NMIGRATIONS) {
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
            return bt_errorf(err, BT_EVERSION,
                             "database %s has schema version %lld but this baton (%s) knows "
                             "only up to %d; it was written by baton %s - upgrade baton (or "
                             "point the store at another database)",
                             q->path, (long long)have, BATON_VERSION, NMIGRATIONS, need);
        }
        if (have == NMIGRATIONS)
            return sq_exec(q, "COMMIT", err);
        rc = sq_exec(q, migrations[have], err);
        if (rc == 0) {
            char sql[256];
            snprintf(sql, sizeof sql,
                     "INSERT INTO schema_migrations(version, applied_at, baton_version) "
                     "VALUES(%lld, %lld, '%s')",
                     (long long)have + 1, (long long)bt_store__now(&q->base), BATON_VERSION);
            rc = sq_exec(q, sql, err);
        }
        if (rc == 0)
            rc = sq_exec(q, "COMMIT", err);
        if (rc) {
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
            return bt_error_prefix(err, "applying migration %lld", (long long)have + 1);
        }
    }
}

int bt_store_sqlite_open(uv_loop_t *loop, const char *path, const bt_store_options *opts,
                         bt_store **out, bt_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return bt_errorf(err, BT_EINVAL, "sqlite store needs a file path (sqlite:PATH)");
    sq_store *q = bt_xcalloc(1, sizeof *q);
    bt_store__init(&q->base, &sqlite_vt, loop, opts);
    q->path = bt_xstrdup(path);
    /* Create the database's directory (sqlite:./var/baton.db on a fresh checkout). */
    const char *slash = strrchr(path, '/');
    if (slash && slash != path && strcmp(path, ":memory:") != 0) {
        char *dir = bt_xstrndup(path, (size_t)(slash - path));
        int mk = bt_path_mkdirs(dir, 0755, err);
        free(dir);
        if (mk < 0) {
            bt_error_prefix(err, "sqlite store %s", path);
            goto fail;
        }
    }
    int rc = sqlite3_open_v2(path, &q->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                 SQLITE_OPEN_EXRESCODE,
                             NULL);
    if (rc != SQLITE_OK) {
        bt_errorf(err, BT_EIO, "cannot open sqlite database %s: %s", path,
                  q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
    /* WAL: readers never block the writer. synchronous=FULL: the WAL is fsynced at every
     * commit, so an acknowledged write survives power loss (group commit pays for it). */
    if ((rc = sq_exec(q,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                      " PRAGMA temp_store=MEMORY;",
                      err)))
        goto fail_rc;
    if ((rc = sq_migrate(q, err)))
        goto fail_rc;
    q->h = bt_xcalloc(1, sizeof *q->h);
    uv_check_init(loop, &q->h->check);
    uv_idle_init(loop, &q->h->idle);
    q->h->check.data = q;
    q->h->idle.data = q;
    *out = &q->base;
    return 0;
fail:
    rc = BT_EIO;
fail_rc:
    sq_close(&q->base);
    return rc;
}
