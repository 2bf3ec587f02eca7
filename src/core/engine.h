/*
 * engine.h - the workflow engine (DESIGN.md §2a step 4, docs/workflows.md): advances one
 * run of a task through its workflow, step by step, persisting every step through the
 * store before and after it runs, so that a process killed at any instant resumes each
 * run at its first unfinished step without re-running finished ones.
 *
 *   bt_engine *e = bt_engine_new(&env);
 *   bt_engine_run_opts o = {.on_done = done, .ud = me};
 *   bt_engine_start(e, task, &o, &err);      // creates the run, or resumes the task's
 *                                            // unfinished one
 *   ... done(e, &result, me) once, from a loop callback
 *
 * A run: for iteration 1..max_iterations, every step in order (skipped when its `when`
 * is false), each step's output passed to the next (`previous`, `steps.<id>`). After an
 * iteration the run stops when every step passed and the review step reported at most
 * max_suggestions suggestions (seed 004), else the next iteration starts; a run that
 * reaches max_iterations without meeting the rule still completes (success) with
 * stop_reason "max_iterations". A failed step (after its retries, unless
 * continue_on_error) fails the run.
 *
 * Persistence (store.h): the run row holds the state (inputs, workflow digest, the
 * current iteration, sub-workflow frames); each step attempt is a step row started
 * before the action begins and finished after it ends (with output, exit code, error
 * class, tokens, cost). On resume, a step row that is running (its process died) is
 * re-run as the next attempt; a finished one is never run again. Every transition is an
 * event (the store writes run.* / step.* / approval.*; the engine adds run.iteration,
 * step.skipped, agent.output and run.resumed).
 *
 * Approvals: an approval step creates an approval (store) and sets the run to waiting;
 * the engine notices the decision through the store's events (and re-reads pending
 * approvals every BT_ENGINE_APPROVAL_POLL_MS, so a decision made by another process
 * (`baton approve`, another server on the same PostgreSQL) is seen too). A rejection
 * fails the step; a timeout expires the approval and fails the step.
 *
 * Cancel: when a task of an active run goes to cancelled (API, CLI), or on
 * bt_engine_cancel, the running step is stopped (agent process group killed, shell
 * killed, HTTP aborted) and the run marked cancelled.
 *
 * Budgets (config `budgets`, core/budget.h) are checked before every agent step; an
 * exceeded budget fails the run permanently with the budget's message.
 */
#ifndef BT_ENGINE_H
#define BT_ENGINE_H

#include "base/error.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_config bt_config;
typedef struct bt_log bt_log;
typedef struct bt_store bt_store;
typedef struct bt_agents bt_agents;
typedef struct bt_http_client bt_http_client;
typedef struct bt_workflows bt_workflows;
typedef struct bt_resil bt_resil;
typedef struct bt_task bt_task;
typedef struct bt_run bt_run;
typedef struct bt_step bt_step;

#define BT_ENGINE_APPROVAL_POLL_MS 2000

typedef struct bt_engine bt_engine;

/* What the engine works with. All borrowed; they must outlive the engine. agents and
 * http are called on first use (an engine that runs only shell steps loads no
 * libcurl); either may return NULL (then agent / http steps fail with a clear error). */
typedef struct bt_engine_env {
    uv_loop_t *loop;
    bt_store *store;
    const bt_config *cfg;
    const bt_workflows *workflows;
    bt_log *log; /* may be NULL */
    bt_agents *(*agents)(void *ud);
    bt_http_client *(*http)(void *ud);
    /* Every agent step goes through this (breakers, rate limits, fallback chains;
     * core/resilience.h). NULL: the engine makes its own over agents(ud) when it first
     * needs one (then the agent set must not change while the engine lives). */
    bt_resil *resil;
    /* Is the process offline now (the offline detector, core/offline.h)? Returns 1 and
     * sets *reason (borrowed for the call) when it is. NULL = never offline unless the
     * run asks for it. */
    int (*offline)(void *ud, const char **reason);
    void *ud;
} bt_engine_env;

/* The outcome of a run, given to on_done. Strings borrowed for the callback. */
typedef struct bt_engine_result {
    const char *run_id;
    const char *task_id;
    const char *status;      /* "completed", "failed", "cancelled", or "interrupted" (engine
                              * stopped by shutdown: the run stays resumable) */
    int success;             /* status completed */
    const char *error;       /* NULL on success */
    const char *error_class; /* "transient" | "permanent" | "cancelled" | NULL: whether a
                              * retry of the task could help */
    const char *final_output;
    json_t *json; /* the seed-004 shape plus ours (bt_engine_result_json); borrowed */
} bt_engine_result;

typedef void (*bt_engine_done_fn)(bt_engine *e, const bt_engine_result *r, void *ud);

/* Live progress for a terminal (`baton run`): kind is "step.started", "step.finished",
 * "step.skipped", "run.iteration", "run.waiting", "agent.output", "agent.usage" with a
 * JSON object (borrowed) describing it. */
typedef void (*bt_engine_progress_fn)(bt_engine *e, const char *kind, const json_t *data, void *ud);

typedef struct bt_engine_run_opts {
    const char *workflow;              /* NULL = task->workflow, else "default" */
    const json_t *inputs;              /* NULL = task->meta.inputs (object) */
    int max_iterations;                /* 0 = the workflow's */
    int offline;                       /* run offline: the workflow's offline variant, else
                                        * offline-default, else local agents only
                                        * (bt_workflow_offline_variant); also when the task's meta
                                        * says offline or env.offline says so */
    const char *workspace;             /* directory steps run in; NULL = workspace.root/<identifier>
                                        * (created) */
    const char *owner;                 /* lease owner, for events; may be NULL */
    const char *const *git_env;        /* NULL-terminated "K=V" given to git-operation steps
                                        * only (credentials, workspace/git.h); copied */
    bt_engine_done_fn on_done;         /* required */
    bt_engine_progress_fn on_progress; /* may be NULL */
    void *ud;
} bt_engine_run_opts;

bt_engine *bt_engine_new(const bt_engine_env *env);
/* Every run must have ended (on_done called) before this. */
void bt_engine_free(bt_engine *e);

/* Start the run of task (copied), or resume its latest unfinished run (running or
 * waiting). Fails at once (negative, err set, on_done never called) for an unknown or
 * unavailable workflow, a missing required input or an invalid input; everything else
 * ends in on_done. */
int bt_engine_start(bt_engine *e, const bt_task *task, const bt_engine_run_opts *opts,
                    bt_error *err);

/* Cancel the active run of a task (by task id or run id): its step is stopped and the
 * run ends cancelled. 0, or BT_ENOENT when no such run is active here. */
int bt_engine_cancel(bt_engine *e, const char *task_or_run_id, const char *reason);

/* Shutdown: stop every active run's step without marking anything finished (the rows
 * stay as they are, so a restart resumes them); each ends in on_done with status
 * "interrupted". */
void bt_engine_stop(bt_engine *e);

/* Number of runs active in this engine. */
int bt_engine_active(const bt_engine *e);

/* The resilience wrapper the engine's agent steps go through: env.resil, else the
 * engine's own, built over env.agents on the first call (and its statistics loaded from
 * the store once); NULL when there are no agents. Borrowed: it lives as long as the
 * engine. The API and the planner read breakers and statistics through it, so the whole
 * process sees one instance. */
bt_resil *bt_engine_resil(bt_engine *e);

/* The seed-004 result shape from a stored run and its steps:
 * {"success", "workflow", "iterations", "steps":[" [OK] codex (implement)", ...],
 *  "final_output", "run_id", "task_id", "status", "error", "stop_reason",
 *  "tokens_in", "tokens_out", "cost_usd", "outputs":{...}, "step_details":[...]}, and
 * when routing decided something: "planned": true, or "plan_error" and "plan_workflow"
 * (the workflow that ran instead); offline runs "offline_reason", "offline_workflow"
 * (which workflow and why) and "requested_workflow".
 * New reference. Used by the engine, the API and the CLI. */
json_t *bt_engine_result_json(const bt_run *run, bt_step *const *steps, size_t nsteps);

#endif
