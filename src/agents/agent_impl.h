/*
 * agent_impl.h - what an agent adapter (cli.c, openai.c, anthropic.c, ollama.c,
 * openhands.c, replay.c) implements and the run bookkeeping it shares (agent.c): the
 * output buffer with its cap, events (forwarded to the caller and to the --record
 * file), usage, cost and the single on_done. Private to src/agents/.
 *
 * An adapter's life cycle for one turn:
 *   ops->start(run, err)     set run->impl, start the process / request; return 0, or
 *                            a negative BT_E* (nothing started, no callback will run)
 *   bt_agent_run_output / _emit / _usage / _tool as things arrive
 *   bt_agent_run_fail(run, class, ...) when it went wrong (first failure wins)
 *   bt_agent_run_finish(run) exactly once, from a loop callback, after the adapter has
 *                            released everything it owns (uv handles closed, calls
 *                            done): it calls on_done and frees the run.
 *   ops->cancel(run)         ask the adapter to stop; it later fails the run with
 *                            BT_AGENT_CANCELLED and finishes it as usual.
 */
#ifndef BT_AGENT_IMPL_H
#define BT_AGENT_IMPL_H

#include "agents/agent.h"
#include "base/strbuf.h"

#include <stdio.h>

typedef struct bt_agent_ops {
    const char *type;     /* "cli", "openai", ... */
    int writes_workspace; /* 1: may edit files in the workspace */
    int (*start)(bt_agent_run *run, bt_error *err);
    void (*cancel)(bt_agent_run *run);
    /* Must call cb exactly once, from a loop callback (use bt_agent_check_later). */
    void (*check)(bt_agent *a, bt_agent_check_fn cb, void *ud);
    void (*free)(bt_agent *a); /* release a->impl; may be NULL */
} bt_agent_ops;

/* Start throttle (agent.c): at most BT_AGENT_STARTS_PER_TURN runs of one agent start in
 * one loop turn; the rest wait in a queue that an idle handle drains a batch per turn, so
 * a burst of starts (100 CLI agents = 100 forks) cannot stall the loop. */
#define BT_AGENT_STARTS_PER_TURN 4
typedef struct bt_agent_throttle {
    uv_idle_t idle;
    struct bt_agent *agent; /* NULL once the agent is freed (the handle is then closing) */
    struct bt_agent_run *head, *tail; /* runs waiting to start, oldest first */
} bt_agent_throttle;

struct bt_agent {
    const bt_agent_ops *ops;
    bt_agent_env env;
    bt_config_agent cfg; /* a deep copy of the configuration entry */
    void *impl;          /* the adapter's */
    uint64_t turn_stamp; /* uv_now() of the turn starts were last counted in */
    int starts_in_turn;
    bt_agent_throttle *throttle; /* made on the first deferred start; NULL until then */
};

struct bt_agent_run {
    bt_agent *agent;
    /* the request, copied; strings are never NULL except record_path */
    char *prompt, *system, *context, *workspace, *record_path;
    int64_t timeout_ms;       /* resolved: request, else config; > 0 */
    int64_t stall_timeout_ms; /* resolved; 0 = none */
    size_t max_output;
    bt_agent_event_fn on_event;
    bt_agent_done_fn on_done;
    void *ud;

    int64_t started_mono_ms;
    bt_strbuf output; /* final text or accumulated stdout (adapter decides), capped */
    int truncated;
    int cancel_requested;

    /* the result under construction */
    int failed;
    bt_agent_error_class error_class;
    bt_strbuf error;
    int exit_code, term_signal;
    long http_status;
    int64_t tokens_in, tokens_out;
    double cost_usd;
    int cost_reported;
    int64_t retry_after_ms;
    char *model;
    int replay;

    FILE *record;              /* --record file, NULL when not recording */
    void *impl;                /* the adapter's per-run state */
    bt_agent_run *queued_next; /* in the agent's start queue (throttled), else unused */
    int queued;
};

/* Send an event of kind with text (len bytes; need not be NUL-terminated) to the
 * caller and the recording. */
void bt_agent_run_emit(bt_agent_run *run, bt_agent_event_kind kind, const char *text, size_t len);
void bt_agent_run_tool(bt_agent_run *run, const char *tool, const char *detail);
/* Set the cumulative usage and emit a usage event when it changed. */
void bt_agent_run_usage(bt_agent_run *run, int64_t tokens_in, int64_t tokens_out);

/* Append to run->output within max_output: the first time the cap is hit a marker
 * "\n[baton: output truncated at N bytes]\n" is added and the rest is dropped. Emits
 * nothing (call bt_agent_run_emit for the live stream). */
void bt_agent_run_output_add(bt_agent_run *run, const char *text, size_t len);
/* Replace run->output with text (e.g. a CLI's parsed final answer), capped likewise. */
void bt_agent_run_output_set(bt_agent_run *run, const char *text, size_t len);
/* append + emit BT_AGENT_EV_OUTPUT */
void bt_agent_run_output(bt_agent_run *run, const char *text, size_t len);

/* Record a failure. The first call decides class and message; later calls are ignored
 * (so "timeout" is not overwritten by the "killed by signal 9" that follows it). */
void bt_agent_run_fail(bt_agent_run *run, bt_agent_error_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bt_agent_run_set_model(bt_agent_run *run, const char *model);

/* Complete the run: fill duration and cost, write the recording's result line, call
 * on_done, free the run (not run->impl: the adapter frees that first). */
void bt_agent_run_finish(bt_agent_run *run);

/* Milliseconds since the run started. */
int64_t bt_agent_run_elapsed_ms(const bt_agent_run *run);

/* The error class of an HTTP outcome per api-reference.md §0: rc < 0 (transport
 * failure) -> transient except BT_ECANCELED (cancelled); status 408/425/429/5xx/529
 * transient, other 4xx permanent; a 429 whose body names exhausted quota
 * (insufficient_quota, credit_balance_exhausted, project_spend_limit_exceeded,
 * enforced_spend_limit_reached, billing) is permanent. */
bt_agent_error_class bt_agent_http_class(int rc, long status, const char *body);

/* Call cb(a, available, detail, ud) from the next loop iteration (for checks that
 * know the answer at once). detail is copied. */
void bt_agent_check_later(bt_agent *a, int available, const char *detail, bt_agent_check_fn cb,
                          void *ud);

/* Adapter constructors: fill a->ops and a->impl from a->cfg (already copied). */
int bt_cli_agent_init(bt_agent *a, bt_error *err);
int bt_openai_agent_init(bt_agent *a, bt_error *err);
int bt_anthropic_agent_init(bt_agent *a, bt_error *err);
int bt_ollama_agent_init(bt_agent *a, bt_error *err);
int bt_openhands_agent_init(bt_agent *a, bt_error *err);
int bt_replay_agent_init(bt_agent *a, bt_error *err);

#endif
