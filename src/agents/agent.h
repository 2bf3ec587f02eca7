/*
 * agent.h - the one interface core code uses to make an agent turn a prompt into a
 * result: a coding CLI run as a child process (cli.h), an LLM endpoint spoken to over
 * HTTP (openai.h, anthropic.h, ollama.h), a remote OpenHands agent server (openhands.h)
 * or a recorded session played back (replay.h). Core code sees only this header and
 * bt_agents_* (agents.h); it never names an adapter.
 *
 *   bt_agent_request rq = {.prompt = "fix the bug", .workspace = dir,
 *                          .on_event = ev, .on_done = done, .ud = me};
 *   bt_agent_run *run;
 *   if (bt_agent_start(agent, &rq, &run, &err) == 0) ... later bt_agent_run_cancel(run);
 *
 *   static void ev(const bt_agent_event *e, void *ud)   - output chunks, tool use, usage
 *   static void done(const bt_agent_result *r, void *ud) - exactly once
 *
 * Contract:
 *   - Everything runs on the loop thread of the bt_agent_env the agent was made with.
 *   - on_done runs exactly once per successful bt_agent_start, always from a loop
 *     callback, never inside bt_agent_start or bt_agent_run_cancel. After a failed
 *     start (negative return) neither callback ever runs.
 *   - Bursts are throttled: at most BT_AGENT_STARTS_PER_TURN (agent_impl.h) runs of one
 *     agent start per loop turn, the rest a turn or more later, in order (100 CLI agents
 *     are 100 forks, which would otherwise stall every other client of the loop). A run
 *     that was queued and then cannot start reports that through on_done, not through
 *     bt_agent_start's return value.
 *   - on_event runs zero or more times before on_done, never after it.
 *   - The bt_agent_run* is valid from start until on_done returns; the run frees itself
 *     after on_done. Cancel a pending run at most as long as on_done has not run.
 *   - Every string in bt_agent_event and bt_agent_result is borrowed for the duration of
 *     the callback; copy what you keep.
 *   - A bt_agent must outlive every run started on it.
 *
 * Error classes (../shared/reference/api-reference.md §0): transient errors (connection
 * refused or reset, timeouts of the remote side, 5xx, 429 rate limits, a CLI crash by
 * signal) may succeed when tried again or on a fallback agent; permanent ones (4xx
 * other than 408/425/429, a 429 for exhausted quota, a CLI that reports an error and
 * exits non-zero, a missing program) will not. timeout is baton's own turn or stall
 * limit; cancelled is bt_agent_run_cancel or shutdown.
 */
#ifndef BT_AGENT_H
#define BT_AGENT_H

#include "base/error.h"
#include "config/config.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_agent bt_agent;
typedef struct bt_agent_run bt_agent_run;
typedef struct bt_http_client bt_http_client;
typedef struct bt_log bt_log;

typedef enum bt_agent_error_class {
    BT_AGENT_OK = 0,
    BT_AGENT_TRANSIENT,
    BT_AGENT_PERMANENT,
    BT_AGENT_CANCELLED,
    BT_AGENT_TIMEOUT,
} bt_agent_error_class;

/* "ok", "transient", "permanent", "cancelled", "timeout". */
const char *bt_agent_error_class_name(bt_agent_error_class c);

typedef enum bt_agent_event_kind {
    BT_AGENT_EV_OUTPUT = 0, /* text the agent produced: an assistant text delta, a CLI's
                             * human-readable stdout line (text; with a newline for lines) */
    BT_AGENT_EV_STDERR,     /* diagnostic output of a CLI (text) */
    BT_AGENT_EV_TOOL,       /* tool activity: tool = its name, text = a short detail */
    BT_AGENT_EV_USAGE,      /* token usage so far: tokens_in/out are cumulative totals */
    BT_AGENT_EV_STATUS,     /* a note for the operator: "retrying in 1.0 s (HTTP 429)",
                             * "replaying recording x.jsonl", "killed: stalled 5m" (text) */
} bt_agent_event_kind;

/* "output", "stderr", "tool", "usage", "status". */
const char *bt_agent_event_kind_name(bt_agent_event_kind k);

typedef struct bt_agent_event {
    bt_agent_event_kind kind;
    const char *text; /* NUL-terminated; "" when none */
    size_t len;       /* strlen(text) */
    const char *tool; /* EV_TOOL: the tool's name; NULL otherwise */
    int64_t tokens_in, tokens_out;
    int64_t at_ms; /* milliseconds since the run started */
} bt_agent_event;

typedef struct bt_agent_result {
    int success; /* 1: the agent finished its turn without error */
    bt_agent_error_class error_class;
    const char *output; /* the final text ("" when none); for a CLI that reports no
                         * final text, its stdout (capped, see max_output) */
    const char *error;  /* what went wrong, for a person; "" on success */
    int exit_code;      /* CLI exit status; -1 when it did not exit normally or not a CLI */
    int term_signal;    /* CLI: the signal that ended it; 0 otherwise */
    long http_status;   /* HTTP agents: the last response's status; 0 otherwise */
    int64_t tokens_in, tokens_out; /* as the agent or provider reported them; 0 = unknown */
    double cost_usd;               /* the tool's own figure when it reports one, else
                                    * tokens x the configured price; 0 = unknown */
    int cost_reported;             /* 1: cost_usd is the agent's own figure */
    int64_t duration_ms;
    int64_t retry_after_ms; /* transient errors: the provider's Retry-After; -1 = none */
    const char *model;      /* the model that answered, when known; "" otherwise */
    const char *agent;      /* the agent's configured name */
    int truncated;          /* 1: output exceeded max_output and was cut (with a marker) */
    int replay;             /* 1: played back from a recording, not a live agent */
} bt_agent_result;

typedef void (*bt_agent_event_fn)(const bt_agent_event *ev, void *ud);
typedef void (*bt_agent_done_fn)(const bt_agent_result *res, void *ud);

typedef struct bt_agent_request {
    const char *prompt;         /* required; copied */
    const char *system;         /* role prompt (a persona); NULL = none; copied */
    const char *context;        /* extra context appended to the prompt; NULL = none; copied */
    const char *workspace;      /* directory a CLI runs in (must exist); NULL = current; copied */
    int64_t timeout_ms;         /* whole turn; 0 = the agent's configured timeout */
    int64_t stall_timeout_ms;   /* no output for this long kills it; 0 = configured; <0 none */
    size_t max_output;          /* bytes of output kept; 0 = BT_AGENT_DEFAULT_MAX_OUTPUT */
    const char *record_path;    /* write a replay recording of this run here; NULL = none */
    bt_agent_event_fn on_event; /* may be NULL */
    bt_agent_done_fn on_done;   /* required */
    void *ud;                   /* borrowed, passed to both callbacks */
} bt_agent_request;

#define BT_AGENT_DEFAULT_MAX_OUTPUT ((size_t)4 << 20) /* 4 MiB */

/* What every adapter gets: the loop, the HTTP client (HTTP adapters fail with
 * BT_EUNAVAIL without one), the logger and the configuration (for the price table and
 * provider keys). All borrowed; they must outlive the agents made with them. */
typedef struct bt_agent_env {
    uv_loop_t *loop;
    bt_http_client *http; /* may be NULL when only CLI/replay agents are used */
    bt_log *log;          /* may be NULL */
    const bt_config *cfg; /* may be NULL: no price table, no provider keys */
} bt_agent_env;

/* Make the agent that config entry ac describes (copied: ac need not outlive it). */
int bt_agent_new(const bt_agent_env *env, const bt_config_agent *ac, bt_agent **out, bt_error *err);
void bt_agent_free(bt_agent *a);

const char *bt_agent_name(const bt_agent *a);
const char *bt_agent_kind(const bt_agent *a);  /* "cli", "openai", ... */
const char *bt_agent_role(const bt_agent *a);  /* "" when unset */
const char *bt_agent_model(const bt_agent *a); /* "" when unknown */
/* 1 when the agent may edit the workspace (CLI, OpenHands); HTTP/Ollama agents are
 * advisory: they return text and never write files (seed 004). */
int bt_agent_writes_workspace(const bt_agent *a);

/* The provider whose limits and reachability apply: agents.<n>.provider, else derived
 * (docs/resilience.md: claude → anthropic, codex → openai, gemini → google, copilot →
 * github, ollama → ollama, an openai-type agent on api.openai.com → openai, x.ai →
 * xai; otherwise the agent's own name). Never NULL; borrowed from the agent. */
const char *bt_agent_provider(const bt_agent *a);
/* 1 when the agent works without the internet (offline mode keeps it): agents.<n>.local,
 * else ollama and replay agents and HTTP agents whose base_url is a loopback, private or
 * single-label host. CLI agents are remote unless configured local. */
int bt_agent_is_local(const bt_agent *a);
/* 1 when url's host is this machine or the local network: loopback, RFC 1918, link-local,
 * IPv6 unique-local, host.docker.internal, or a single-label name ("ollama"). */
int bt_agent_url_is_local(const char *url);
/* The HTTP endpoint of an HTTP agent (its base_url), NULL for CLI and replay agents.
 * Borrowed. */
const char *bt_agent_endpoint(const bt_agent *a);

/* Start a turn. Returns 0 and sets *run (may be NULL) or a negative BT_E* with err set
 * (missing prompt or on_done, workspace missing, no HTTP client for an HTTP agent). */
int bt_agent_start(bt_agent *a, const bt_agent_request *rq, bt_agent_run **run, bt_error *err);

/* Stop a running turn: the CLI's whole process group is killed, the HTTP call
 * aborted. on_done follows later with error_class cancelled. */
void bt_agent_run_cancel(bt_agent_run *run);

/* Availability: is the agent usable right now, and if not, why (CLI not on PATH, key
 * unset, endpoint unreachable). Probes the endpoint for HTTP agents (GET of a cheap URL
 * with a short timeout), so it completes later through cb, always from a loop callback.
 * `detail` says what was checked ("claude 2.1.197 at /usr/bin/claude", "3 models"). */
typedef void (*bt_agent_check_fn)(bt_agent *a, int available, const char *detail, void *ud);
void bt_agent_check(bt_agent *a, bt_agent_check_fn cb, void *ud);

/* Cost in USD of the given token counts for this agent: the agent's own `price`, else
 * the configuration's per-model price table for its model; 0 when neither is known.
 * *known (may be NULL) is set to 1 when a price was found. */
double bt_agent_cost(const bt_agent *a, int64_t tokens_in, int64_t tokens_out, int *known);

/* The result as JSON ({"success","output","error","error_class","exit_code",
 * "tokens_in","tokens_out","cost_usd","cost_reported","duration_ms","model","agent",
 * "truncated","replay", ...}). New reference. */
json_t *bt_agent_result_json(const bt_agent_result *r);

#endif
