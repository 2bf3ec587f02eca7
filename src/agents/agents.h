/*
 * agents.h - the set of configured agents: built once from the configuration's
 * `agents:` map, looked up by name, and checked for availability all at once (for
 * `baton agents`, GET /api/agents and the MCP tool orchestrator_list_agents).
 *
 * An entry whose adapter could not be built (a replay agent without its file, a type
 * this build lacks) stays in the set, unavailable, with the reason, so that listings
 * still show every configured agent and say why one cannot run.
 */
#ifndef BT_AGENTS_H
#define BT_AGENTS_H

#include "agents/agent.h"

#include <jansson.h>

typedef struct bt_agents bt_agents;

/* Build every agent of env->cfg (required). env is copied; its pointees are borrowed
 * and must outlive the set. Never fails for one bad agent (see above). */
bt_agents *bt_agents_new(const bt_agent_env *env);
void bt_agents_free(bt_agents *s);

size_t bt_agents_count(const bt_agents *s);
const char *bt_agents_name(const bt_agents *s, size_t i);
/* The agent at i, or NULL when it could not be built (bt_agents_error says why). */
bt_agent *bt_agents_at(const bt_agents *s, size_t i);
const char *bt_agents_error(const bt_agents *s, size_t i); /* NULL when built */
/* By name; NULL when unknown or not built. Borrowed. */
bt_agent *bt_agents_find(const bt_agents *s, const char *name);
/* Index of name, -1 when not configured. */
int bt_agents_index(const bt_agents *s, const char *name);

/* Static description of agent i (no probing): {"name","type","role","model",
 * "writes_workspace","fallback":[...],"timeout_ms","stall_timeout_ms","price":{..}|null}.
 * New reference. */
json_t *bt_agents_describe(const bt_agents *s, size_t i);

/* Check every agent concurrently; cb runs once, from a loop callback, with
 * {"agents":[describe + "available":bool,"detail":"..."],"count":N,"available":M}
 * (borrowed for the callback). The set must outlive the check. */
typedef void (*bt_agents_status_fn)(json_t *status, void *ud);
void bt_agents_check_all(bt_agents *s, bt_agents_status_fn cb, void *ud);

#endif
