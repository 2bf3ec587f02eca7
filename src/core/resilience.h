/*
 * resilience.h - the wrapper every agent call of the engine goes through (DESIGN.md
 * §2a step 4, docs/resilience.md): offline filter → circuit breaker → rate limits →
 * agent → error class → fallback. One bt_resil per process holds, per configured
 * agent, its circuit breaker, its rate limiter and its statistics, and per provider the
 * shared rate limiter.
 *
 *   bt_resil *rs;
 *   bt_resil_new(&env, &rs, &err);           // then bt_resil_load(rs, cb, ud) once
 *   const char *chain[] = {"codex", "claude-api", "local"};
 *   bt_resil_request rq = {.chain = chain, .nchain = 3, .agent = {...prompt, workspace},
 *                          .on_done = done, .ud = me};
 *   bt_resil_call(rs, &rq, &call, &err);     // later bt_resil_cancel(call)
 *
 * The fallback manager (seed 004 "Fallback Routing", a chain of any length):
 *   - each agent of the chain in order: skipped when offline mode is on and the agent
 *     is remote, or when it is not usable (not built); rejected at once without
 *     calling it when its breaker is open (or half-open with its one probe out);
 *     otherwise it waits for its rate limits (queued in arrival order, never dropped;
 *     the wait is reported through on_status) and runs;
 *   - success ends the call; a permanent failure (logic/syntax, 4xx other than 429,
 *     exhausted quota) of the primary ends it with the primary's error and no
 *     fallback; a transient one (connection refused/reset, timeout, 5xx, 429, crash)
 *     or a skip/reject moves on to the next agent; when every agent fails the error
 *     names each agent's error ("codex: ...; claude-api: ...");
 *   - cancel stops at once (the running agent is cancelled).
 *
 * Circuit breaker per agent (seed 004): CLOSED → OPEN after failure_threshold
 * consecutive failures; OPEN rejects at once; after recovery_timeout the next call
 * finds it HALF_OPEN and is the one probe (concurrent calls are rejected while the
 * probe is out); the probe's success closes it, its failure reopens it. Failures are
 * transient, timeout and provider-side permanent errors (HTTP 4xx, a missing
 * program); a CLI that ran and reported failure of the task, and cancellations, do
 * not count. Every transition is an event `agent.breaker` {agent, from, to, reason}.
 *
 * Rate limits: per agent (agents.<n>.rate_limit) and per provider (providers.<p>),
 * requests and tokens within any sliding window of `per`; a 429's Retry-After blocks
 * the provider until then. Token use is estimated from the prompt before the call and
 * corrected with the reported usage after it.
 *
 * Statistics per agent over the last resilience.stats_window calls (and
 * stats_max_age): success rate, latency percentiles, error classes. Every finished
 * call is appended to the store (bt_store_agent_call_add) and is an event
 * `agent.call` {agent, outcome, error_class, duration_ms, tokens}; bt_resil_load reads
 * the window back at start-up, and the breakers are restored from it (an agent whose
 * last threshold calls all failed is open since its last failure).
 *
 * Threading: loop thread only. Ownership: env pointees are borrowed and must outlive
 * the bt_resil; strings in results and JSON are as documented per function.
 */
#ifndef BT_RESILIENCE_H
#define BT_RESILIENCE_H

#include "agents/agent.h"
#include "base/error.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_agents bt_agents;
typedef struct bt_store bt_store;
typedef struct bt_config bt_config;
typedef struct bt_log bt_log;

typedef struct bt_resil bt_resil;
typedef struct bt_resil_call bt_resil_call;

typedef struct bt_resil_env {
    uv_loop_t *loop;      /* required */
    bt_agents *agents;    /* required */
    const bt_config *cfg; /* required: breaker, rate limit and statistics settings */
    bt_store *store;      /* may be NULL: nothing persisted, no events (a remote worker) */
    bt_log *log;          /* may be NULL */
    /* Clock for breakers, limits and windows (milliseconds; tests inject one). NULL =
     * the wall clock. */
    int64_t (*now_ms)(void *ud);
    void *now_ud;
    /* 1 for listings (`baton agents`): bt_resil_load reads the history and writes
     * nothing - no pruning, no events for breakers restored open (the daemon writes
     * those). */
    int read_only;
} bt_resil_env;

int bt_resil_new(const bt_resil_env *env, bt_resil **out, bt_error *err);
/* Every call must have ended (on_done) before this. */
void bt_resil_free(bt_resil *rs);

/* Read the persisted statistics window and restore the breakers from it. cb runs
 * once from a loop callback (rc 0 also without a store). */
typedef void (*bt_resil_loaded_fn)(void *ud, int rc, const bt_error *err);
void bt_resil_load(bt_resil *rs, bt_resil_loaded_fn cb, void *ud);

/* 1 unless a bt_resil_load is still reading the history (the planner waits for it, so
 * that an agent's recorded failures count from the first plan after a start). */
int bt_resil_loaded(const bt_resil *rs);

/* Offline mode (the offline detector or --offline sets it): remote agents are
 * skipped in every chain. */
void bt_resil_set_offline(bt_resil *rs, int offline);
int bt_resil_offline(const bt_resil *rs);

/* One attempt of a call, in order. */
typedef struct bt_resil_attempt {
    const char *agent;
    const char *outcome;     /* "success", "failure", "cancelled", "rejected" (breaker
                              * open), "skipped" (offline, or the agent is unusable) */
    const char *error_class; /* "transient" | "permanent" | "timeout" | NULL */
    const char *error;       /* "" on success */
    int64_t waited_ms;       /* time spent waiting for rate limits */
    int64_t duration_ms;     /* the agent's own time; 0 when it did not run */
} bt_resil_attempt;

typedef struct bt_resil_result {
    int success;
    bt_agent_error_class error_class;    /* overall: the primary's class when it failed
                                          * permanently; transient when any failure or skip
                                          * was transient; else the last one's */
    const char *error;                   /* "" on success; with several attempts each agent's
                                          * error: "codex: ...; claude-api: ..." */
    const bt_agent_result *agent_result; /* the last agent that ran (the one that
                                          * answered on success); NULL when none ran */
    const char *agent;         /* who produced the result / ran last; NULL when none ran */
    const char *fallback_from; /* the primary it replaced; NULL when the primary ran it */
    const bt_resil_attempt *attempts;
    size_t nattempts;
} bt_resil_result;

/* Notes for the caller while the call goes on. kind: "fallback" {from, to, reason},
 * "rate_limited" {agent, provider, wait_ms, limit}, "rejected" {agent, state,
 * retry_at}, "skipped" {agent, reason}. data borrowed for the callback. */
typedef void (*bt_resil_status_fn)(const char *kind, const json_t *data, void *ud);
/* Everything borrowed for the callback. Runs exactly once per successful
 * bt_resil_call, always from a loop callback. */
typedef void (*bt_resil_done_fn)(const bt_resil_result *res, void *ud);

typedef struct bt_resil_request {
    const char *const *chain; /* agent names, primary first; copied */
    size_t nchain;            /* >= 1 */
    /* prompt, system, context, workspace, timeouts, max_output, record_path, on_event
     * (agent events; ev->... of whichever agent runs) as for bt_agent_start. on_done and
     * ud of this inner request are ignored. */
    bt_agent_request agent;
    const char *task_id;          /* for statistics and events; may be NULL */
    const char *run_id;           /* for events; may be NULL */
    bt_resil_status_fn on_status; /* may be NULL */
    bt_resil_done_fn on_done;     /* required */
    void *ud;
} bt_resil_request;

/* Start a call. Returns 0 (and *call, may be NULL) or a negative BT_E* (no chain, no
 * prompt, no on_done) with err set; then no callback runs. */
int bt_resil_call_start(bt_resil *rs, const bt_resil_request *rq, bt_resil_call **call,
                        bt_error *err);
/* Cancel: a queued call leaves the queue, a running agent is cancelled; on_done follows
 * with error_class cancelled. Valid until on_done has run. */
void bt_resil_call_cancel(bt_resil_call *call);

/* What the planner and listings need about one agent. */
typedef struct bt_resil_health {
    const char *breaker; /* "closed" | "open" | "half_open" (static string) */
    int64_t calls;       /* in the window, cancellations excluded */
    double success_rate; /* successes / calls; 1 when calls == 0 */
    int usable;          /* built, breaker not open, and (offline) local */
} bt_resil_health;
/* 0, or BT_ENOENT for an agent that is not configured. */
int bt_resil_health_of(const bt_resil *rs, const char *agent, bt_resil_health *out);

/* One agent's live state (new reference; NULL when not configured):
 *   {"name", "provider", "local",
 *    "breaker": {"state", "consecutive_failures", "failure_threshold",
 *                "recovery_timeout_ms", "opened_at" (ms|null), "retry_at" (ms|null)},
 *    "stats": {"calls", "successes", "failures", "cancelled", "success_rate" (null when
 *              no calls), "latency_ms": {"p50", "p90", "p99", "max"} (null when no calls),
 *              "error_classes": {"transient": n, ...}, "window", "last_call_at"},
 *    "rate_limit": {"requests", "tokens", "per_ms", "waiting", "blocked_until"}}
 * Timestamps are wall-clock ms. */
json_t *bt_resil_agent_json(const bt_resil *rs, const char *agent);
/* {"offline": bool, "agents": {name: agent json}, "providers": {name: {"requests",
 * "tokens", "per_ms", "waiting", "blocked_until", "agents": [...]}}}. New reference. */
json_t *bt_resil_json(const bt_resil *rs);

#endif
