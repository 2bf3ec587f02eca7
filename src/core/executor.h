/*
 * executor.h - runs work items through the engine on this process (DESIGN.md §2a steps
 * 2-5 for the local executor): claims ready tasks from the store's queue with a lease,
 * keeps each lease alive while its run goes on (heartbeat every lease/3), hands the task
 * to the engine, and reports the outcome to the queue: completed (result = the run's
 * result JSON), failed (retryable when the run's error class is transient, so the
 * queue's retry/backoff rules apply) or released (shutdown: the run is resumed by
 * whoever claims it next).
 *
 * Two modes:
 *   - queue (`baton serve`): claims up to `concurrency` tasks at once, woken by the
 *     store's task events and a periodic tick. At start it takes back the tasks still
 *     leased to its own owner id (left by a previous life of this process that was
 *     killed), so their runs resume at once instead of after the lease expires.
 *   - one task (`baton run`): bt_executor_run_task claims exactly that task.
 *
 * A lost lease (heartbeat refused: the task was cancelled or re-queued elsewhere)
 * cancels the run here; a task cancelled through the API or CLI is noticed through the
 * store's events and its run cancelled.
 */
#ifndef BT_EXECUTOR_H
#define BT_EXECUTOR_H

#include "base/error.h"
#include "core/engine.h"
#include "core/pipeline.h"

#include <stdint.h>

typedef struct bt_executor bt_executor;

typedef void (*bt_executor_task_done_fn)(bt_executor *x, const bt_engine_result *r, void *ud);

typedef struct bt_executor_opts {
    const char *owner;     /* lease owner; required ("local:HOST" for serve, "cli:HOST:PID") */
    int concurrency;       /* queue mode: runs at once; 0 = cfg concurrency.global, else 4 */
    int64_t lease_ms;      /* 0 = cfg queue.lease */
    int64_t tick_ms;       /* queue mode: claim attempt interval when idle; 0 = 1000 */
    bt_pipeline *pipeline; /* may be NULL (then runs go to workspace.root/<key> without git
                            * or trackers): preparation and completion (core/pipeline.h) */
    bt_engine_progress_fn on_progress;     /* may be NULL: passed to every run */
    bt_executor_task_done_fn on_task_done; /* may be NULL: after the queue was told */
    void *ud;
} bt_executor_opts;

/* engine, store, cfg, log borrowed (must outlive the executor). opts copied. */
bt_executor *bt_executor_new(bt_engine *engine, bt_store *store, const bt_config *cfg, bt_log *log,
                             const bt_executor_opts *opts);

/* Queue mode: recover own leases, then claim continuously. */
int bt_executor_start(bt_executor *x, bt_error *err);

/* One-task mode: claim task_id (which must be pending) and run it with run_opts'
 * workflow/inputs/max_iterations/offline/workspace (its callbacks are ignored: the
 * executor's on_progress/on_task_done are used). on_task_done always follows, also
 * when the task cannot be claimed (status "failed", the error says why). */
int bt_executor_run_task(bt_executor *x, const char *task_id, const bt_engine_run_opts *run_opts,
                         bt_error *err);

/* Stop claiming; interrupt active runs (engine stop) and release their tasks back to
 * the queue without consuming an attempt; then call done(ud) once from a loop callback
 * when nothing is outstanding. */
void bt_executor_stop(bt_executor *x, void (*done)(void *ud), void *ud);

int bt_executor_active(const bt_executor *x);
void bt_executor_free(bt_executor *x);

#endif
