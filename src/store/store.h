/*
 * store.h - the durable store: the one interface core code uses for work items (tasks),
 * runs, steps, events, workers, approvals and file locks. Two backends implement it:
 * SQLite (default, `sqlite:PATH`) and PostgreSQL (`postgres://...`), chosen by URL in
 * bt_store_open. Core code never sees a backend.
 *
 * Asynchrony. Every operation is asynchronous and completes through a callback on the
 * libuv loop the store was opened with. A callback is NEVER called before the
 * operation's function returns (no re-entrancy surprises), and a write's callback runs
 * only once the write is durable (committed and synced per the backend's durability
 * mode): "201 Created" may be sent from it. The SQLite backend group-commits: all
 * writes issued during one loop turn share one transaction and one fsync, and their
 * callbacks fire after that commit. Reads issued in a turn with pending writes see
 * those writes (read-your-writes).
 *
 * Atomicity. Each operation is one transaction, and the events it produces (see
 * bt_event) are appended in that same transaction, so an event reader resuming
 * "after sequence N" can never miss a change. Operations that must change several
 * rows together (claiming, finishing a step and its run, deciding an approval) are
 * single operations here for that reason; there is no open-ended transaction handle.
 *
 * Ownership. Inputs are borrowed for the duration of the call (the store copies what
 * it keeps). Results passed to callbacks (bt_task*, arrays, bt_event*) are owned by
 * the store and valid only during the callback; use bt_task_dup etc. to keep them.
 * The bt_error passed to a callback is likewise borrowed.
 *
 * Time. All timestamps are wall-clock milliseconds since the epoch (UTC). The store
 * reads time through opts->now_ms (tests inject a fake clock), defaulting to
 * bt_time_wall_ms.
 */
#ifndef BT_STORE_H
#define BT_STORE_H

#include "base/error.h"
#include "base/id.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_store bt_store;
typedef struct bt_log bt_log;

/* ---------------------------------------------------------------------------------
 * Tasks (work items) and their state machine (seed 004 + seed 003's drafts):
 *
 *   draft ──approve──> pending ──claim──> in_progress ──> completed
 *     │                  │  ^                 │  │  └──> failed  (error, attempts exhausted)
 *     └──cancel──> cancelled <──cancel─────────┘  └──retry (attempts left) / lease expiry
 *                    ^  pending <── release ──┘      / release ──> pending
 *   failed ──retry (manual, resets attempts)──> pending
 *
 * Terminal: completed, failed, cancelled. bt_task_transition_allowed is the table.
 */
typedef enum bt_task_status {
    BT_TASK_DRAFT = 0,
    BT_TASK_PENDING,
    BT_TASK_IN_PROGRESS,
    BT_TASK_COMPLETED,
    BT_TASK_FAILED,
    BT_TASK_CANCELLED,
    BT_TASK__COUNT
} bt_task_status;

const char *bt_task_status_name(bt_task_status s);               /* "in_progress" */
int bt_task_status_parse(const char *name, bt_task_status *out); /* 0 or BT_EINVAL */
bool bt_task_status_terminal(bt_task_status s);
bool bt_task_transition_allowed(bt_task_status from, bt_task_status to);

#define BT_PRIORITY_NONE INT32_MAX /* "unset": sorts after every real priority */

typedef struct bt_task {
    char id[BT_ID_LEN + 1]; /* ULID, assigned by the store */
    char *source;           /* "api", "cli", "mcp", "github", "jira", "azure", "worker"... */
    char *external_id;      /* the tracker's id ("123"), or NULL */
    char *dedupe_key;       /* e.g. "github:owner/repo#123"; NULL = never deduplicated */
    char *identifier;       /* human id: "owner/repo#123", "FEAT-123"; defaults to id */
    char *project;          /* project id ("BACKEND") or NULL */
    char *title;
    char *body;
    char *workflow;   /* workflow name or NULL (default) */
    json_t *labels;   /* array of strings, never NULL */
    json_t *meta;     /* object, never NULL: source-specific data (issue_number, repository,
                         branch_name, pr_url...) */
    int32_t priority; /* lower runs first; BT_PRIORITY_NONE when unset */
    bt_task_status status;
    int32_t attempts;        /* claims so far (each claim counts one attempt) */
    int32_t max_attempts;    /* from the create input, else the store default */
    int64_t next_attempt_at; /* not claimable before this (retry backoff); 0 = now */
    char *lease_owner;       /* who holds it while in_progress, else NULL */
    int64_t lease_expires_at;
    int64_t fencing; /* increases on every claim; a holder must present it */
    json_t *result;  /* object or NULL: what the run produced (pr_url, summary...) */
    char *error;     /* last error or NULL */
    int64_t created_at, updated_at, started_at, finished_at; /* 0 = never */
} bt_task;

/* Deep copy / free. bt_task_free(NULL) is a no-op. */
bt_task *bt_task_dup(const bt_task *t);
void bt_task_free(bt_task *t);
/* JSON rendering used by the API: new reference. */
json_t *bt_task_to_json(const bt_task *t);

typedef struct bt_task_input {
    const char *source;      /* required */
    const char *external_id; /* optional */
    const char *dedupe_key;  /* optional; when an OPEN (non-terminal) task has the same key
                                the existing task is returned with created=false */
    const char *identifier, *project, *title, *body, *workflow; /* title required */
    const json_t *labels;                                       /* optional array of strings */
    const json_t *meta;                                         /* optional object */
    int32_t priority;                                           /* BT_PRIORITY_NONE for unset */
    int32_t max_attempts;                                       /* 0 = store default */
    bool draft; /* create as draft (awaits approval) instead of pending */
} bt_task_input;

/* Partial update of editable fields (allowed in draft and pending only: editing a
 * claimed task is BT_ESTATE). NULL / unset members are left alone. */
typedef struct bt_task_patch {
    const char *title, *body, *project, *workflow;
    const json_t *labels;
    const json_t *meta; /* merged into the existing meta object (keys replaced) */
    bool set_priority;
    int32_t priority;
    bool set_max_attempts;
    int32_t max_attempts;
} bt_task_patch;

typedef struct bt_task_filter {
    unsigned status_mask;                            /* bit (1u << status); 0 = all */
    const char *project, *source, *label, *workflow; /* exact matches; NULL = any */
    const char *dedupe_key;
    const char *text;   /* substring of title/body/identifier, case-insensitive; NULL = any */
    const char *cursor; /* opaque, from a previous page; NULL = first page */
    int limit;          /* 1..1000; 0 = 100 */
    bool newest_first;  /* default oldest first (id order) */
} bt_task_filter;

typedef struct bt_claim_opts {
    const char *owner;    /* required: worker id or "local:<pid>" */
    int64_t lease_ms;     /* required, > 0 */
    int max;              /* claim up to this many (batched claim); 0 = 1 */
    const char *project;  /* only this project; NULL = any */
    const char *workflow; /* only this workflow; NULL = any */
    const char *task_id;  /* only this task (`baton run` claims the task it created, so no
                           * daemon on the same store can take it); NULL = any */
} bt_claim_opts;

/* Outcome of a failure report. */
typedef enum bt_fail_outcome {
    BT_FAIL_RETRY = 0, /* back to pending, claimable at next_attempt_at */
    BT_FAIL_FINAL = 1, /* attempts exhausted (or not retryable): status failed */
} bt_fail_outcome;

typedef struct bt_task_stats {
    int64_t count[BT_TASK__COUNT];
    double avg_duration_ms; /* over completed+failed tasks with started/finished times */
    int64_t ready;          /* pending and claimable now */
} bt_task_stats;

/* ---------------------------------------------------------------------------------
 * Runs and steps. A run is one workflow execution of a task; a step is one agent or
 * action execution inside it (per iteration and attempt).
 */
typedef enum bt_run_status {
    BT_RUN_RUNNING = 0,
    BT_RUN_WAITING, /* paused at an approval gate */
    BT_RUN_COMPLETED,
    BT_RUN_FAILED,
    BT_RUN_CANCELLED,
    BT_RUN__COUNT
} bt_run_status;
const char *bt_run_status_name(bt_run_status s);
int bt_run_status_parse(const char *name, bt_run_status *out);

typedef struct bt_run {
    char id[BT_ID_LEN + 1];
    char task_id[BT_ID_LEN + 1];
    char *workflow;
    char *workflow_version; /* or NULL */
    bt_run_status status;
    int32_t iteration; /* 1-based current iteration */
    double cost_usd;
    int64_t tokens_in, tokens_out;
    char *output; /* final output or NULL */
    char *error;
    json_t *state; /* object, never NULL: engine state (inputs, outputs so far) */
    int64_t created_at, updated_at, finished_at;
} bt_run;

typedef enum bt_step_status {
    BT_STEP_PENDING = 0,
    BT_STEP_RUNNING,
    BT_STEP_SUCCEEDED,
    BT_STEP_FAILED,
    BT_STEP_SKIPPED,
    BT_STEP_CANCELLED,
    BT_STEP__COUNT
} bt_step_status;
const char *bt_step_status_name(bt_step_status s);
int bt_step_status_parse(const char *name, bt_step_status *out);

typedef struct bt_step {
    char id[BT_ID_LEN + 1];
    char run_id[BT_ID_LEN + 1];
    char *step_key; /* the workflow step id ("implement") */
    int32_t iteration;
    int32_t attempt;
    int32_t seq; /* position in the workflow */
    char *agent; /* agent that produced the result */
    char *role;
    char *fallback_from; /* agent it replaced, or NULL */
    bt_step_status status;
    char *output;
    int32_t exit_code;
    char *error_class; /* transient|permanent|cancelled|timeout or NULL */
    char *error;
    int64_t tokens_in, tokens_out;
    double cost_usd;
    int64_t started_at, finished_at;
} bt_step;

/* Fields written when a step finishes (its run's totals are updated in the same
 * transaction: tokens and cost are added to the run). */
typedef struct bt_step_result {
    bt_step_status status;
    const char *agent, *fallback_from;
    const char *output, *error_class, *error;
    int32_t exit_code;
    int64_t tokens_in, tokens_out;
    double cost_usd;
} bt_step_result;

/* Partial run update. */
typedef struct bt_run_patch {
    bool set_status;
    bt_run_status status;
    bool set_iteration;
    int32_t iteration;
    const char *output, *error;
    const json_t *state; /* replaces the state object */
} bt_run_patch;

/* ---------------------------------------------------------------------------------
 * Spend (budgets, config `budgets`): what finished steps cost. A step counts once it is
 * finished (succeeded, failed, skipped or cancelled), with the cost, tokens and
 * finished_at bt_store_step_finish recorded; steps are matched through their run to
 * their task. History deleted with its task (bt_store_cleanup_stale,
 * bt_store_clear_completed) no longer counts.
 */
typedef struct bt_spend_query {
    const char *task_id; /* only this task's steps; NULL = any task */
    const char *project; /* only steps of tasks of this project; NULL = any project */
    int64_t since_ms;    /* only steps finished at or after this; 0 = any time */
} bt_spend_query;

typedef struct bt_spend {
    double cost_usd; /* sum of steps.cost_usd */
    int64_t tokens_in, tokens_out;
    int64_t steps; /* finished steps matched */
} bt_spend;

/* ---------------------------------------------------------------------------------
 * Usage (the dashboard's GET /api/stats): finished steps and runs counted per UTC day
 * (and runs per UTC hour), summed and grouped by the database itself, so a read costs
 * the rows in the range and returns days x projects x agents rows, never the history.
 * Steps count as in bt_spend (finished: succeeded, failed, skipped or cancelled, by
 * finished_at) and are matched through their run to their task's project; history
 * deleted with its task no longer counts.
 */
typedef struct bt_usage_query {
    int64_t since_ms, until_ms; /* required, since < until: steps finished and runs created
                                   or finished in [since_ms, until_ms) */
    int64_t hours_since_ms;     /* runs per hour over [hours_since_ms, until_ms);
                                   0 = no hourly rows */
    const char *project;        /* only tasks of this project; NULL = every task */
} bt_usage_query;

/* Finished steps of one (UTC day, project, agent). */
typedef struct bt_usage_steps {
    int64_t day_ms; /* midnight UTC starting the day the steps finished */
    char *project;  /* the task's project; NULL = tasks without one */
    char *agent;    /* the agent that produced the result; NULL = not an agent step */
    int64_t steps;  /* finished steps */
    int64_t failed; /* of those, status failed */
    int64_t tokens_in, tokens_out;
    double cost_usd;
    int64_t duration_ms; /* sum of finished_at - started_at */
} bt_usage_steps;

/* Runs of one (bucket, project, status): the bucket is a UTC day or hour. */
typedef struct bt_usage_runs {
    int64_t bucket_ms;    /* the bucket's start (midnight UTC, or the hour) */
    char *project;        /* NULL = tasks without one */
    bt_run_status status; /* the run's status now */
    int64_t created;      /* runs created in the bucket (and now in this status) */
    int64_t finished;     /* runs that finished in the bucket with this status */
} bt_usage_runs;

/* The rows of a usage read, in no particular order. */
typedef struct bt_usage {
    bt_usage_steps *steps;
    size_t nsteps;
    bt_usage_runs *runs_by_day; /* buckets of one day over [since_ms, until_ms) */
    size_t nruns_by_day;
    bt_usage_runs *runs_by_hour; /* buckets of one hour over [hours_since_ms, until_ms) */
    size_t nruns_by_hour;
} bt_usage;

/* ---------------------------------------------------------------------------------
 * Events: the append-only log everything observable reads (SSE, WebSocket, dashboard,
 * metrics, audit). seq is strictly increasing in commit order, so "after seq N" is
 * exact even with several processes writing one PostgreSQL database.
 *
 * Types written by the store itself (data in brackets):
 *   task.created   [task]          task.updated [task, fields]
 *   task.status    [task, from, to, error?]   (every status change incl. claim/complete)
 *   run.created [run]   run.updated [run]   step.started [step]   step.finished [step]
 *   approval.requested [approval]  approval.decided [approval]
 *   worker.updated [worker]        lock.acquired / lock.released [lock]
 * Callers append their own types (agent.output, breaker.state...) with bt_store_event_append.
 */
typedef struct bt_event {
    int64_t seq;
    char *type;
    char task_id[BT_ID_LEN + 1]; /* "" when not about a task */
    char run_id[BT_ID_LEN + 1];  /* "" when not about a run */
    int64_t ts;
    json_t *data; /* object, never NULL */
} bt_event;

json_t *bt_event_to_json(const bt_event *e); /* new reference */

typedef struct bt_event_filter {
    int64_t after_seq;            /* events with seq > after_seq */
    const char *task_id, *run_id; /* NULL = any */
    const char *type_prefix;      /* e.g. "task." ; NULL = any */
    int limit;                    /* 0 = 500, max 5000 */
} bt_event_filter;

/* ---------------------------------------------------------------------------------
 * Workers (seed 002), approvals (durable human gates), file locks (seed 002 future).
 */
typedef struct bt_worker {
    char *id;
    char *ip;
    char *status;       /* "idle" | "busy" | "offline" */
    char *current_task; /* task id or NULL */
    int64_t last_seen;
    json_t *info; /* object, never NULL: version, host, capabilities... */
    int64_t created_at;
} bt_worker;

typedef struct bt_worker_input {
    const char *id; /* required */
    const char *ip, *status, *current_task;
    const json_t *info;
} bt_worker_input;

typedef enum bt_approval_status {
    BT_APPROVAL_PENDING = 0,
    BT_APPROVAL_APPROVED,
    BT_APPROVAL_REJECTED,
    BT_APPROVAL_EXPIRED,
    BT_APPROVAL__COUNT
} bt_approval_status;
const char *bt_approval_status_name(bt_approval_status s);

typedef struct bt_approval {
    char id[BT_ID_LEN + 1];
    char run_id[BT_ID_LEN + 1];
    char task_id[BT_ID_LEN + 1];
    char *step_key;
    char *prompt;    /* what the person is asked */
    json_t *context; /* object, never NULL: diff summary, step output... */
    bt_approval_status status;
    char *decided_by, *comment;
    int64_t expires_at; /* 0 = never */
    int64_t created_at, decided_at;
} bt_approval;

typedef struct bt_approval_input {
    const char *run_id, *task_id, *step_key, *prompt; /* run_id, step_key required */
    const json_t *context;
    int64_t expires_at;
} bt_approval_input;

typedef struct bt_lock {
    char *repo;  /* repository key */
    char *path;  /* repo-relative path; a directory path locks everything below it */
    char *owner; /* run or task id */
    int64_t expires_at;
} bt_lock;

/* One agent call as the resilience layer records it (agent statistics, circuit
 * breaker history; core/resilience.h). Appended once per call when it ends. */
typedef struct bt_agent_call {
    char *agent;       /* configured agent name */
    char *outcome;     /* "success" | "failure" | "cancelled" */
    char *error_class; /* "transient" | "permanent" | "timeout"; NULL on success/cancel */
    int64_t duration_ms;
    int64_t tokens;              /* tokens in + out; 0 = unknown */
    int64_t at;                  /* wall ms when the call ended */
    char task_id[BT_ID_LEN + 1]; /* "" when not for a task */
} bt_agent_call;

/* ---------------------------------------------------------------------------------
 * Callbacks. rc is 0 or a negative BT_E* code; err is non-NULL exactly when rc != 0.
 */
typedef void (*bt_store_done_cb)(void *ud, int rc, const bt_error *err);
typedef void (*bt_store_task_cb)(void *ud, int rc, const bt_error *err, const bt_task *task);
/* create: created=false means the dedupe key matched an open task, which is returned. */
typedef void (*bt_store_create_cb)(void *ud, int rc, const bt_error *err, const bt_task *task,
                                   bool created);
/* next_cursor is NULL on the last page. */
typedef void (*bt_store_tasks_cb)(void *ud, int rc, const bt_error *err, bt_task *const *tasks,
                                  size_t n, const char *next_cursor);
typedef void (*bt_store_fail_cb)(void *ud, int rc, const bt_error *err, const bt_task *task,
                                 bt_fail_outcome outcome);
typedef void (*bt_store_count_cb)(void *ud, int rc, const bt_error *err, int64_t count);
typedef void (*bt_store_stats_cb)(void *ud, int rc, const bt_error *err,
                                  const bt_task_stats *stats);
typedef void (*bt_store_run_cb)(void *ud, int rc, const bt_error *err, const bt_run *run);
typedef void (*bt_store_runs_cb)(void *ud, int rc, const bt_error *err, bt_run *const *runs,
                                 size_t n);
typedef void (*bt_store_step_cb)(void *ud, int rc, const bt_error *err, const bt_step *step);
typedef void (*bt_store_steps_cb)(void *ud, int rc, const bt_error *err, bt_step *const *steps,
                                  size_t n);
typedef void (*bt_store_event_cb)(void *ud, int rc, const bt_error *err, const bt_event *ev);
typedef void (*bt_store_events_cb)(void *ud, int rc, const bt_error *err, bt_event *const *events,
                                   size_t n);
typedef void (*bt_store_worker_cb)(void *ud, int rc, const bt_error *err, const bt_worker *w);
typedef void (*bt_store_workers_cb)(void *ud, int rc, const bt_error *err,
                                    bt_worker *const *workers, size_t n);
typedef void (*bt_store_approval_cb)(void *ud, int rc, const bt_error *err, const bt_approval *a);
typedef void (*bt_store_approvals_cb)(void *ud, int rc, const bt_error *err,
                                      bt_approval *const *list, size_t n);
/* spend is NULL when rc != 0. */
typedef void (*bt_store_spend_cb)(void *ud, int rc, const bt_error *err, const bt_spend *spend);
/* usage is NULL when rc != 0; it and every string in it are the store's, valid during
 * the callback only. */
typedef void (*bt_store_usage_cb)(void *ud, int rc, const bt_error *err, const bt_usage *usage);
/* calls grouped by agent (agents in name order), each agent's oldest first. */
typedef void (*bt_store_agent_calls_cb)(void *ud, int rc, const bt_error *err,
                                        bt_agent_call *const *calls, size_t n);
/* Lock acquisition: rc BT_ECONFLICT with `holder` describing the conflicting lock. */
typedef void (*bt_store_lock_cb)(void *ud, int rc, const bt_error *err, const bt_lock *holder);

/* Live event subscription: called on the loop for every event committed by this
 * process, and (PostgreSQL) for events committed by other processes sharing the
 * database, in seq order, after commit. The event is borrowed. */
typedef void (*bt_store_listener_fn)(void *ud, const bt_event *ev);

/* ---------------------------------------------------------------------------------
 * Opening and closing.
 */
typedef struct bt_store_options {
    int32_t default_max_attempts; /* 0 = 2 (seed 002) */
    int64_t backoff_base_ms;      /* 0 = 10000; retry delay = min(base * 2^(attempt-1), max) */
    int64_t backoff_max_ms;       /* 0 = 300000 */
    int64_t (*now_ms)(void *ud);  /* clock; NULL = wall clock */
    void *now_ud;
    bt_log *log;   /* borrowed; may be NULL */
    int pool_size; /* PostgreSQL connections; 0 = 4 */
} bt_store_options;

/* Opens (creating and migrating as needed) the store named by url:
 *   sqlite:PATH | sqlite://PATH | a bare path ending in .db  -> SQLite
 *   postgres://... | postgresql://...                         -> PostgreSQL
 * Blocking (runs at start-up, before serving). Fails with BT_EVERSION when the
 * database was migrated by a newer baton. opts may be NULL. */
int bt_store_open(uv_loop_t *loop, const char *url, const bt_store_options *opts, bt_store **out,
                  bt_error *err);

/* Calls cb once every write issued so far is durable. */
void bt_store_flush(bt_store *s, bt_store_done_cb cb, void *ud);

/* Releases the store. Pending operations are completed (their callbacks run) before it
 * returns; it may run the loop internally for that. NULL is a no-op. */
void bt_store_close(bt_store *s);

/* "sqlite" or "postgres". */
const char *bt_store_backend(const bt_store *s);
/* The loop the store was opened with (for helpers that complete on the same loop). */
uv_loop_t *bt_store_loop(const bt_store *s);
/* The retry delay for the given (1-based) attempt under this store's options. */
int64_t bt_store_backoff_ms(const bt_store *s, int32_t attempt);
/* Change the retry policy of an open store (PUT /api/config, queue.*): it applies to
 * tasks created and failures reported from now on. A value <= 0 keeps the current one. */
void bt_store_set_retry_policy(bt_store *s, int32_t default_max_attempts, int64_t backoff_base_ms,
                               int64_t backoff_max_ms);

/* Subscribe to committed events; returns a subscription id for unsubscribe. */
int bt_store_subscribe(bt_store *s, bt_store_listener_fn fn, void *ud);
void bt_store_unsubscribe(bt_store *s, int subscription);

/* Open connections, for the database_connections metric. */
int bt_store_connections(const bt_store *s);

/* Operation timing, for the baton_store_op_duration_seconds metric. When a hook is set,
 * every operation below reports its name ("task_get", "claim", ...) and the seconds
 * from the call to its callback (so writes include the wait for their durable commit),
 * just before the callback runs. fn NULL removes the hook. ud is borrowed and must
 * outlive the store (the hook may run while bt_store_close completes pending work). */
typedef void (*bt_store_op_fn)(void *ud, const char *op, double seconds);
void bt_store_set_op_hook(bt_store *s, bt_store_op_fn fn, void *ud);

/* ---------------------------------------------------------------------------------
 * Task operations.
 */
void bt_store_task_create(bt_store *s, const bt_task_input *in, bt_store_create_cb cb, void *ud);
void bt_store_task_get(bt_store *s, const char *id, bt_store_task_cb cb, void *ud);
/* Lookup by dedupe key among open tasks (then the newest closed one). */
void bt_store_task_get_by_key(bt_store *s, const char *dedupe_key, bt_store_task_cb cb, void *ud);
void bt_store_task_list(bt_store *s, const bt_task_filter *f, bt_store_tasks_cb cb, void *ud);
void bt_store_task_update(bt_store *s, const char *id, const bt_task_patch *p, bt_store_task_cb cb,
                          void *ud);
/* Administrative transitions: draft->pending (approve), draft|pending|in_progress ->
 * cancelled (cancel; an in_progress task's lease is dropped), failed|cancelled -> pending
 * (manual retry: attempts reset to 0). Anything else: BT_ESTATE naming both states.
 * reason is recorded as the task's error for cancellations and in the event. */
void bt_store_task_transition(bt_store *s, const char *id, bt_task_status to, const char *reason,
                              bt_store_task_cb cb, void *ud);

/* Claim up to opts->max ready tasks (pending, next_attempt_at <= now) in queue order:
 * priority ascending (unset last), then created_at, then identifier. Each claimed task
 * goes in_progress with attempts+1, a fresh fencing token (greater than any before it
 * for that task), lease_owner = owner and lease_expires_at = now + lease_ms. Never
 * hands one task to two owners, across processes too. n may be 0. */
void bt_store_claim(bt_store *s, const bt_claim_opts *opts, bt_store_tasks_cb cb, void *ud);
/* Extend the lease. BT_ESTALE if the task is no longer held by (owner, fencing). */
void bt_store_heartbeat(bt_store *s, const char *id, const char *owner, int64_t fencing,
                        int64_t lease_ms, bt_store_task_cb cb, void *ud);
/* in_progress -> completed with result (may be NULL). BT_ESTALE (and no change) unless
 * held by (owner, fencing) with an unexpired... or expired-but-not-reclaimed lease. */
void bt_store_complete(bt_store *s, const char *id, const char *owner, int64_t fencing,
                       const json_t *result, bt_store_task_cb cb, void *ud);
/* in_progress -> pending (attempts left and retryable; next_attempt_at = now + backoff)
 * or -> failed (last error kept). Same fencing rule as complete. */
void bt_store_fail(bt_store *s, const char *id, const char *owner, int64_t fencing,
                   const char *error, bool retryable, bt_store_fail_cb cb, void *ud);
/* in_progress -> pending without consuming an attempt (graceful shutdown, reconciliation
 * hand-back). Same fencing rule. */
void bt_store_release(bt_store *s, const char *id, const char *owner, int64_t fencing,
                      const char *reason, bt_store_task_cb cb, void *ud);
/* Every in_progress task whose lease expired before now goes back to pending (or to
 * failed, "lease expired", when its attempts are exhausted). Reports how many moved. */
void bt_store_requeue_expired(bt_store *s, bt_store_count_cb cb, void *ud);

void bt_store_task_stats(bt_store *s, bt_store_stats_cb cb, void *ud);
/* Delete completed/failed/cancelled tasks finished more than max_age_ms ago (with their
 * runs, steps and approvals; events stay). Reports the count. */
void bt_store_cleanup_stale(bt_store *s, int64_t max_age_ms, bt_store_count_cb cb, void *ud);
/* Delete every completed task (seed 004 clear_completed). */
void bt_store_clear_completed(bt_store *s, bt_store_count_cb cb, void *ud);

/* ---------------------------------------------------------------------------------
 * Runs and steps.
 */
void bt_store_run_create(bt_store *s, const char *task_id, const char *workflow,
                         const char *workflow_version, const json_t *state, bt_store_run_cb cb,
                         void *ud);
void bt_store_run_get(bt_store *s, const char *run_id, bt_store_run_cb cb, void *ud);
/* Runs of a task (task_id non-NULL), or the most recent runs (task_id NULL), newest first. */
void bt_store_run_list(bt_store *s, const char *task_id, const bt_run_status *status, int limit,
                       bt_store_runs_cb cb, void *ud);
void bt_store_run_update(bt_store *s, const char *run_id, const bt_run_patch *p, bt_store_run_cb cb,
                         void *ud);

/* Record that a step started (status running). Idempotent on (run, step_key, iteration,
 * attempt): a second start of the same attempt returns the existing row. */
void bt_store_step_start(bt_store *s, const char *run_id, const char *step_key, int32_t iteration,
                         int32_t attempt, int32_t seq, const char *agent, const char *role,
                         bt_store_step_cb cb, void *ud);
void bt_store_step_finish(bt_store *s, const char *step_id, const bt_step_result *r,
                          bt_store_step_cb cb, void *ud);
/* Steps of a run in (iteration, seq, attempt) order. */
void bt_store_step_list(bt_store *s, const char *run_id, bt_store_steps_cb cb, void *ud);
/* Sum of cost, tokens and count of the finished steps matching every filter of q
 * (q NULL: all finished steps). A read: it sees every write issued before it. */
void bt_store_spend(bt_store *s, const bt_spend_query *q, bt_store_spend_cb cb, void *ud);

/* Finished steps and runs over a time range, grouped (see bt_usage). BT_EINVAL when q is
 * NULL or its range is empty. A read: it sees every write issued before it. */
void bt_store_usage(bt_store *s, const bt_usage_query *q, bt_store_usage_cb cb, void *ud);

/* ---------------------------------------------------------------------------------
 * Events.
 */
void bt_store_event_append(bt_store *s, const char *type, const char *task_id, const char *run_id,
                           const json_t *data, bt_store_event_cb cb, void *ud);
void bt_store_event_read(bt_store *s, const bt_event_filter *f, bt_store_events_cb cb, void *ud);
/* Highest committed seq (0 when empty). */
void bt_store_event_last_seq(bt_store *s, bt_store_count_cb cb, void *ud);

/* ---------------------------------------------------------------------------------
 * Workers, approvals, locks.
 */
/* Insert or update; last_seen = now. */
void bt_store_worker_upsert(bt_store *s, const bt_worker_input *in, bt_store_worker_cb cb,
                            void *ud);
void bt_store_worker_get(bt_store *s, const char *id, bt_store_worker_cb cb, void *ud);
void bt_store_worker_list(bt_store *s, bt_store_workers_cb cb, void *ud);

void bt_store_approval_create(bt_store *s, const bt_approval_input *in, bt_store_approval_cb cb,
                              void *ud);
void bt_store_approval_get(bt_store *s, const char *id, bt_store_approval_cb cb, void *ud);
/* Pending approvals (status NULL) or those of one status; optionally of one run. */
void bt_store_approval_list(bt_store *s, const bt_approval_status *status, const char *run_id,
                            bt_store_approvals_cb cb, void *ud);
/* pending -> approved|rejected. BT_ESTATE if already decided (the decision stands). */
void bt_store_approval_decide(bt_store *s, const char *id, bool approve, const char *by,
                              const char *comment, bt_store_approval_cb cb, void *ud);

/* Acquire locks on all paths for owner, atomically (all or none). A path conflicts
 * with a held, unexpired lock of another owner in the same repo when either path is a
 * prefix directory of the other (or they are equal). Re-acquiring one's own lock
 * extends it. */
void bt_store_lock_acquire(bt_store *s, const char *repo, const char *const *paths, size_t n,
                           const char *owner, int64_t ttl_ms, bt_store_lock_cb cb, void *ud);
/* Release every lock of owner (in repo, or all repos when repo is NULL). */
void bt_store_lock_release(bt_store *s, const char *repo, const char *owner, bt_store_count_cb cb,
                           void *ud);

/* Agent calls (statistics). Append one (agent, outcome and at required). */
void bt_store_agent_call_add(bt_store *s, const bt_agent_call *c, bt_store_done_cb cb, void *ud);
/* The most recent calls of every agent: at most per_agent (>= 1) of each, ended at or
 * after since_ms (0 = any time). */
void bt_store_agent_calls(bt_store *s, int64_t since_ms, int per_agent, bt_store_agent_calls_cb cb,
                          void *ud);
/* Delete calls that ended before before_ms; count = rows deleted. */
void bt_store_agent_calls_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud);

/* Webhook deliveries (docs/github.md): a sender's delivery id (X-GitHub-Delivery) is
 * recorded once per source. count = 1 when (source, id) was new and is now recorded, 0
 * when it had been recorded before (a replay: the caller ignores the delivery). Both
 * strings required (BT_EINVAL otherwise); ids up to 200 bytes. */
void bt_store_delivery_record(bt_store *s, const char *source, const char *delivery_id,
                              bt_store_count_cb cb, void *ud);
/* Undo a record (the delivery could not be processed, so a redelivery must be taken).
 * count = rows deleted. */
void bt_store_delivery_forget(bt_store *s, const char *source, const char *delivery_id,
                              bt_store_count_cb cb, void *ud);
/* Delete records older than before_ms; count = rows deleted. */
void bt_store_deliveries_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud);

/* Free helpers for copies made by callers. NULL is a no-op. */
void bt_run_free(bt_run *r);
bt_run *bt_run_dup(const bt_run *r);
json_t *bt_run_to_json(const bt_run *r);
void bt_step_free(bt_step *st);
bt_step *bt_step_dup(const bt_step *st);
json_t *bt_step_to_json(const bt_step *st);
void bt_event_free(bt_event *e);
bt_event *bt_event_dup(const bt_event *e);
void bt_worker_free(bt_worker *w);
bt_worker *bt_worker_dup(const bt_worker *w);
json_t *bt_worker_to_json(const bt_worker *w);
void bt_agent_call_free(bt_agent_call *c);
void bt_approval_free(bt_approval *a);
bt_approval *bt_approval_dup(const bt_approval *a);
json_t *bt_approval_to_json(const bt_approval *a);

#endif
