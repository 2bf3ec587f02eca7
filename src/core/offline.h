/*
 * offline.h - the offline detector (seed 004 OfflineDetector, issue 7 item 4,
 * docs/resilience.md): decides whether baton is offline, i.e. whether the remote model
 * providers its agents need can be reached, so that runs switch to their offline
 * variant (offline-default) and the resilience wrapper keeps only local agents.
 *
 *   bt_offline_env env = {.loop = loop, .cfg = cfg, .agents = agents, .http = get_http};
 *   bt_offline *od;
 *   bt_offline_new(&env, &od, &err);
 *   bt_offline_on_change(od, changed, me);     // e.g. bt_resil_set_offline
 *   bt_offline_start(od);                      // probe now, then every probe_interval
 *   ... bt_offline_state(od, &reason)          // 1 = offline
 *   bt_offline_free(od);                       // then keep running the loop
 *
 * Targets: one per remote provider among the configured agents that could be built
 * (bt_agent_is_local == 0; the provider is bt_agent_provider): providers.<p>.probe_url
 * when configured, else the endpoint of the provider's first HTTP agent
 * (bt_agent_endpoint), else a built-in URL for the well-known providers (anthropic,
 * openai, google, github, xai). A provider with none of these is not probed.
 *
 * A probe is an HTTP GET with offline.probe_timeout. Any HTTP response, whatever its
 * status (401 and 404 included), means reachable; connection refused, host not found,
 * a timeout or a TLS/transport error means unreachable. After a round of probes (all
 * targets at once) baton is offline iff there is at least one target and none is
 * reachable: one reachable provider keeps it online. A cancelled probe (shutdown)
 * gives no answer and leaves the state as it was.
 *
 * Modes (offline.mode, $BATON_OFFLINE): auto = the probes decide (online until the
 * first round says otherwise); on = always offline, nothing probed (reason "forced:
 * offline.mode on / BATON_OFFLINE"); off = never offline. env.force (`--offline`)
 * overrides all three: offline, reason "forced: --offline".
 *
 * Every change of the state (offline <-> online) is logged, appended to the store as
 * event `offline.changed` {offline, reason} when a store is given, and reported to the
 * change callback. A forced detector reports its offline state once, from
 * bt_offline_start.
 *
 * Threading: loop thread only. Ownership: env pointees are borrowed and must outlive
 * the detector (the agents only until bt_offline_new returns: the targets are copied).
 */
#ifndef BT_OFFLINE_H
#define BT_OFFLINE_H

#include "base/error.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_config bt_config;
typedef struct bt_agents bt_agents;
typedef struct bt_http_client bt_http_client;
typedef struct bt_store bt_store;
typedef struct bt_log bt_log;

typedef struct bt_offline bt_offline;

typedef struct bt_offline_env {
    uv_loop_t *loop;      /* required */
    const bt_config *cfg; /* required: offline.*, providers.<p>.probe_url */
    bt_agents *agents;    /* whose providers are probed; NULL = no targets */
    /* The HTTP client probes go through, asked for on the first probe (so a detector
     * with nothing to probe never loads libcurl). NULL, or a NULL result: the probes
     * cannot run and the state stays online, saying why. */
    bt_http_client *(*http)(void *ud);
    void *http_ud;
    bt_store *store; /* may be NULL: no events */
    bt_log *log;     /* may be NULL */
    int force;       /* 1: offline whatever the configuration says (`--offline`) */
} bt_offline_env;

/* 0 and *out, or BT_EINVAL (no loop or cfg) with err set. */
int bt_offline_new(const bt_offline_env *env, bt_offline **out, bt_error *err);
/* Stop: timers stop, probes in flight are cancelled, no callback of this detector runs
 * any more (pending bt_offline_check callbacks are dropped). The memory is released once
 * the loop has run the cancelled probes' callbacks, so keep running the loop (and keep
 * the HTTP client open until then). NULL is fine. */
void bt_offline_free(bt_offline *o);

/* Called on every change of the state, from a loop callback; reason borrowed for the
 * call. One callback; NULL removes it. */
typedef void (*bt_offline_change_fn)(void *ud, int offline, const char *reason);
void bt_offline_on_change(bt_offline *o, bt_offline_change_fn fn, void *ud);

/* Probe every target now, once (joining a round already in flight), and call cb with
 * the outcome, always from a loop callback, never inside this function. Forced modes
 * and a detector without targets answer at once. A probe ends within probe_timeout. */
typedef void (*bt_offline_fn)(bt_offline *o, int offline, const char *reason, void *ud);
void bt_offline_check(bt_offline *o, bt_offline_fn cb, void *ud);

/* Periodic probing: a round now, then one every offline.probe_interval (0 = only the
 * one now). Nothing is probed in forced modes or without targets. Once; later calls do
 * nothing. */
void bt_offline_start(bt_offline *o);

/* The state now: 1 offline, 0 online. *reason (may be NULL) is set to a sentence for a
 * person, borrowed until the next round ends or the detector is freed, e.g.
 * "no remote provider reachable: anthropic (https://api.anthropic.com: connection
 * refused), openai (http://10.0.0.5/v1: timed out after 5s)". */
int bt_offline_state(const bt_offline *o, const char **reason);

/* Number of providers probed (targets with a URL). */
size_t bt_offline_ntargets(const bt_offline *o);

/* For GET /api/status (new reference):
 * {"mode": "online"|"offline", "reason", "forced": bool, "setting": "auto"|"on"|"off",
 *  "checked_at": ISO-8601|null, "probe_interval_ms", "probe_timeout_ms",
 *  "probes": [{"provider", "url"|null, "source": "probe_url"|"endpoint"|"built-in"|null,
 *              "agents": [...], "reachable": bool|null (null = not probed yet / no URL),
 *              "status": HTTP status|null, "error": string|null, "elapsed_ms"|null,
 *              "checked_at"|null}]} */
json_t *bt_offline_json(const bt_offline *o);

#endif
