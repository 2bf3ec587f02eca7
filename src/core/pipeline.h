/*
 * pipeline.h - the preparation and completion stages around a run (DESIGN.md §2a steps
 * 3 and 5) and the trackers' reconciliation (Symphony §8.5, §8.6): what turns "run a
 * workflow" into "an issue became a pull request".
 *
 * Preparation (bt_pipeline_prepare, before the engine starts or resumes a run):
 *   - the repository: the task's project's repo when it has a project (all five
 *     settings are required: a missing one fails the task permanently, the message
 *     naming the variable, e.g. "set projects.BACKEND.prd_url in baton.yaml or
 *     PRD_URL_BACKEND"), else its tracker's repository (tracker ops.repo_url), else none
 *     (a plain directory, as for API tasks);
 *   - the branch: workspace.branch_template with {{number}} (the tracker's id, else the
 *     task id), {{key}} (the workspace key) and {{id}} (the task id);
 *   - the workspace (workspace/workspace.h): clone or worktree, branch, after_create,
 *     before_run; git credentials from the tracker (ops.git_env) for git only;
 *   - the tracker is told the work started (labels) on the task's first attempt.
 *   A failing hook or clone fails the attempt as transient (retried per queue rules).
 *
 * Completion:
 *   - bt_pipeline_deliver (after a successful run, before the queue is told): when the
 *     workspace is a git repository, commit everything with a generated message
 *     ("<title> (<identifier>)", the summary, "baton task <id>, run <id>"), push the
 *     branch (a failed push fails the task as transient: the next attempt reuses the
 *     workspace), and when the branch is ahead of its base and the task came from a
 *     tracker with pull requests enabled, open the pull request. Adds "branch",
 *     "commit", "pushed", "pr_url" / "pr_error" to the result.
 *   - bt_pipeline_settled (after the queue was told): the after_run hook; on the final
 *     outcome (completed, or failed with no attempt left) the tracker write-back
 *     (comment, labels; tracker.writeback event, or tracker.writeback_failed after
 *     retries) and the workspace's retention (workspace.retention: 0 removes at once,
 *     else a sweep removes workspaces of items finished longer ago).
 *
 * Write-backs are recorded as events; one lost to a crash (the process died between the
 * final state and the comment) is done once, a minute after the next start-up.
 *
 * Reconciliation (bt_pipeline_start): at start-up, workspaces of items whose issue is
 * closed are removed; then every tick (the trackers' poll interval) each open task of a
 * tracker is refreshed: closed -> the task is cancelled ("issue closed"), which stops
 * its agent, and its workspace removed once the run has stopped; label removed -> the
 * task is cancelled and the workspace kept; unknown (network) -> nothing changes.
 * bt_pipeline_stop_item does the same at once for a webhook's closed/unlabeled event.
 */
#ifndef BT_PIPELINE_H
#define BT_PIPELINE_H

#include "base/error.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_config bt_config;
typedef struct bt_log bt_log;
typedef struct bt_store bt_store;
typedef struct bt_task bt_task;
typedef struct bt_tracker bt_tracker;
typedef struct bt_workspaces bt_workspaces;
typedef struct bt_engine_result bt_engine_result;
typedef struct bt_pipeline bt_pipeline;

typedef struct bt_pipeline_env {
    uv_loop_t *loop;
    bt_store *store;
    const bt_config *cfg;
    bt_log *log;               /* may be NULL */
    bt_workspaces *workspaces; /* required */
    /* The tracker for a task's source ("github"), or NULL. */
    bt_tracker *(*tracker)(void *ud, const char *source);
    void *ud;
    /* When to look for write-backs lost to a crash (tasks that reached their final state
     * before start-up with no tracker.writeback event): 0 = 60 s after start-up. */
    int64_t writeback_check_ms;
} bt_pipeline_env; /* all borrowed; they must outlive the pipeline */

bt_pipeline *bt_pipeline_new(const bt_pipeline_env *env);
/* Start reconciliation and the retention sweep. */
int bt_pipeline_start(bt_pipeline *p, bt_error *err);
/* Stop timers and wait for operations in flight; done(ud) once from a loop callback. */
void bt_pipeline_stop(bt_pipeline *p, void (*done)(void *ud), void *ud);
void bt_pipeline_free(bt_pipeline *p);

/* What preparation gives the run. Borrowed for the callback. */
typedef struct bt_pipeline_prep {
    const char *workspace;      /* absolute path */
    const char *repo;           /* repository URL (credentials never in it) or NULL */
    const char *branch, *base;  /* NULL without a repository */
    const char *const *git_env; /* NULL-terminated credentials for git steps, or NULL */
} bt_pipeline_prep;

/* error_class: "transient" | "permanent" when rc < 0. */
typedef void (*bt_pipeline_prep_fn)(int rc, const bt_error *err, const char *error_class,
                                    const bt_pipeline_prep *prep, void *ud);
void bt_pipeline_prepare(bt_pipeline *p, const bt_task *task, bt_pipeline_prep_fn cb, void *ud);

/* extra: a new object merged into the run's result ("branch", "commit", "pr_url"...),
 * owned by the callee (decref'd after the callback); on rc < 0, error_class is
 * "transient" or "permanent". */
typedef void (*bt_pipeline_deliver_fn)(int rc, const bt_error *err, const char *error_class,
                                       json_t *extra, void *ud);
void bt_pipeline_deliver(bt_pipeline *p, const bt_task *task, const bt_engine_result *r,
                         bt_pipeline_deliver_fn cb, void *ud);

/* The queue's verdict on the task: final = 1 when it will not run again (completed,
 * failed for good, cancelled), 0 when it goes back for a retry or was handed back.
 * result (may be NULL) is the run's result JSON, error its error. Fire and forget
 * (tracked for bt_pipeline_stop). */
void bt_pipeline_settled(bt_pipeline *p, const bt_task *task, const char *status, int final,
                         const json_t *result, const char *error);

/* Stop work on the open task with this dedupe key now (a webhook's closed or unlabeled
 * event): cancel it with reason; terminal = 1 also removes its workspace once its run
 * has stopped. */
void bt_pipeline_stop_item(bt_pipeline *p, const char *dedupe_key, int terminal,
                           const char *reason);

/* Reconcile now (POST /api/v1/refresh). */
void bt_pipeline_reconcile_now(bt_pipeline *p);

#endif
