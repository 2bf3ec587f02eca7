/*
 * worker.h - `baton worker`: seed 002's worker client (docs/workers.md).
 *
 * A worker polls the orchestrator's GET /work/next, runs each item it is given, keeps
 * the item's lease alive with POST /work/heartbeat every lease/3, and reports the
 * outcome with POST /work/complete or /work/failed (always sending the task id and
 * the lease token it was given, so a late report from a worker that lost its lease is
 * refused by the server, not applied).
 *
 * Until the workflow engine runs items (a later issue), "running an item" means
 * running the configured agent command with /bin/sh -c in its own process group, in a
 * per-item directory under workspace_dir, with the task in the environment
 * (BATON_TASK_ID, BATON_ISSUE_NUMBER, BATON_TITLE, BATON_BRANCH, BATON_REPOSITORY,
 * BATON_WORKSPACE, BATON_WORKER_ID) and the task body on stdin. Exit 0 completes the
 * item (result: exit code, duration, the last lines of output, a pull-request URL if
 * the output shows one); anything else fails it with the exit status and the tail of
 * stderr.
 *
 * Failure handling: an unreachable server (or a 5xx) is retried with exponential
 * backoff (capped, jittered), logged once when it goes down and once when it comes
 * back. A heartbeat answered 409 means the lease is gone (expired and re-queued, or
 * cancelled): the agent's process group is killed and the item dropped without a
 * report. SIGTERM/SIGINT stop polling; the current item is abandoned (its process
 * group killed and the item reported failed, retryable, so another worker picks it
 * up) or, with on_term = FINISH, allowed to finish and report (a second signal then
 * abandons it). The run returns once everything is closed.
 */
#ifndef BT_APP_WORKER_H
#define BT_APP_WORKER_H

#include "base/error.h"

#include <stdint.h>
#include <stdio.h>

typedef struct bt_log bt_log;

typedef enum bt_worker_on_term {
    BT_WORKER_TERM_ABANDON = 0, /* kill the agent, report the item failed (retryable) */
    BT_WORKER_TERM_FINISH,      /* let the agent finish and report, then exit */
} bt_worker_on_term;

typedef struct bt_worker_options {
    const char *server_url;    /* required: "http://host:port" (a trailing '/' is fine) */
    const char *id;            /* required: this worker's id */
    const char *token;         /* bearer token for the worker scope; NULL = none */
    const char *command;       /* required: agent command line (/bin/sh -c) */
    const char *workspace_dir; /* required: parent of the per-item directories */
    int64_t poll_interval_ms;  /* wait between empty polls; 0 = 30 s */
    int64_t backoff_max_ms;    /* cap of the retry delay when the server is down; 0 = 60 s */
    int64_t kill_grace_ms;     /* SIGTERM -> SIGKILL of the agent's group; 0 = 5 s */
    int once;                  /* handle at most one item (or one empty poll), then return */
    bt_worker_on_term on_term;
    bt_log *log;       /* borrowed; may be NULL */
    FILE *out;         /* start-up banner; NULL = stdout */
    char *const *envp; /* environment the agent inherits; NULL = environ */
} bt_worker_options;

typedef struct bt_worker_stats {
    unsigned completed; /* items reported complete and accepted */
    unsigned failed;    /* items reported failed (including abandoned ones) */
    unsigned dropped;   /* items dropped because the lease was lost */
    unsigned polls;     /* /work/next calls answered */
    int unreachable;    /* --once only: gave up because the server could not be reached */
} bt_worker_stats;

/* Run the worker on its own loop until a signal (or, with once, one item). Returns 0,
 * or a negative BT_E* with err saying what prevented start-up (bad options, workspace
 * not creatable). stats (may be NULL) is filled either way. */
int bt_worker_run(const bt_worker_options *opts, bt_worker_stats *stats, bt_error *err);

#endif
