/*
 * planner.h - the dynamic planner (seed 004 "Dynamic Planner Agent", issue 7 item 5,
 * docs/workflows.md "Dynamic planner"): for a run of a `planner: true` workflow (the
 * built-in `dynamic`), ask a healthy agent to break the task into steps and assign an
 * agent to each, then validate that plan like any workflow before it runs.
 *
 *   bt_planner_pool pool;
 *   bt_planner_candidates(cfg, lookup, ud, offline, &pool);   // who may be planned
 *   const char *who = bt_planner_choose(cfg, &pool);          // who plans
 *   char *prompt = bt_planner_prompt(cfg, &pool, title, body);
 *   ... the agent answers ...
 *   bt_planner_parse(cfg, &pool, base, planned, reply, &plan, &set, &err);
 *   ... the run executes bt_workflows_at(set, 0); plan (JSON text) is stored on the run
 *   bt_planner_compile(cfg, base, planned, plan, &set, &err);  // on resume: same plan
 *
 * Rules:
 *   - candidates: every configured agent the lookup knows (built) that is usable (breaker
 *     not open; offline: local agents only) and whose success rate is at least
 *     planner.min_success_rate, unless it has fewer than planner.min_calls recorded calls
 *     (its rate is unknown: eligible). Every other agent is listed as excluded with why.
 *   - the planning agent: planner.agent when it is a candidate, else the candidate with
 *     the best success rate, preferring agents that do not write the workspace (text
 *     LLMs: planning is text), then more calls, then configuration order.
 *   - the reply: one JSON object {"steps":[{"id","role","agent","prompt"}]}, alone, in a
 *     ```json fence, or as the first balanced {...} in the text holding "steps". 1 to
 *     planner.max_steps steps; role a non-empty string; agent a candidate (an agent that
 *     is configured but excluded is refused with the reason, e.g. its success rate); id
 *     optional (default: the role made id-safe, "-2"... when taken), of [a-z0-9_-],
 *     unique; prompt an optional string (extra instructions for that step; the step
 *     still gets the task and the previous step's output).
 *   - the planned workflow: id "dynamic" (the planned workflow's id), the steps as agent
 *     steps, the last step whose role mentions "review" counts as the review (its
 *     suggestions decide whether another iteration runs), max_iterations and
 *     max_suggestions of the planned workflow. It is compiled with bt_workflows_compile,
 *     so every workflow rule applies.
 * Every failure is a sentence a person can act on, in err ("planner reply is not JSON:
 * ...", "plan names agent 'x' which is not configured", "plan assigns 'slow' whose
 * success rate 0.40 is below 0.60 ...").
 *
 * Threading: none of this touches the loop. Ownership as documented per function.
 */
#ifndef BT_PLANNER_H
#define BT_PLANNER_H

#include "base/error.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bt_config bt_config;
typedef struct bt_workflows bt_workflows;
typedef struct bt_workflow bt_workflow;

/* What the planner needs to know about one configured agent. Strings are borrowed
 * from whoever answers the lookup and must stay valid while the pool lives. */
typedef struct bt_planner_agent {
    const char *type;     /* "cli", "openai", ...; "" when unknown */
    const char *role;     /* the configured role; "" when unset */
    int writes_workspace; /* 1: a coding CLI that edits files; 0: text only */
    int local;            /* 1: works without the internet */
    const char *breaker;  /* "closed" | "open" | "half_open" */
    int usable;           /* the resilience layer would call it now (breaker not open) */
    int64_t calls;        /* recorded calls in the statistics window */
    double success_rate;  /* successes / calls (1 when there are none) */
    int64_t p50_ms;       /* median latency; -1 when unknown */
} bt_planner_agent;

/* Fill *out for agent. Return 0, or a negative BT_E* when the agent cannot be used at
 * all (not built), with *why (borrowed, may stay NULL) saying why. */
typedef int (*bt_planner_lookup_fn)(void *ud, const char *agent, bt_planner_agent *out,
                                    const char **why);

typedef struct bt_planner_candidate {
    char *name;
    bt_planner_agent info;
} bt_planner_candidate;

typedef struct bt_planner_excluded {
    char *agent;
    char *reason; /* "success rate 0.40 is below 0.60 (5 recent calls)", "circuit
                   * breaker open", "remote agent while offline", "cannot be used: ..." */
    int low_rate; /* 1 when the reason is the success rate */
    double success_rate;
} bt_planner_excluded;

/* The agents a plan may use, in configuration order, and those it may not. */
typedef struct bt_planner_pool {
    bt_planner_candidate *cand;
    size_t ncand;
    bt_planner_excluded *excl;
    size_t nexcl;
    double min_rate; /* planner.min_success_rate at the time */
} bt_planner_pool;

/* Sort cfg's agents into candidates and excluded ones (offline: remote agents are
 * excluded). *out is filled (release with bt_planner_pool_clear). */
void bt_planner_candidates(const bt_config *cfg, bt_planner_lookup_fn lookup, void *ud, int offline,
                           bt_planner_pool *out);
void bt_planner_pool_clear(bt_planner_pool *p);
const bt_planner_candidate *bt_planner_pool_find(const bt_planner_pool *p, const char *agent);
/* [{agent, reason}] of the excluded agents. New reference. */
json_t *bt_planner_excluded_json(const bt_planner_pool *p);

/* The agent that writes the plan (borrowed from the pool), or NULL when there is no
 * candidate. */
const char *bt_planner_choose(const bt_config *cfg, const bt_planner_pool *p);
/* Further candidates to fall back to when the planning agent fails transiently: those
 * that do not write the workspace, best first, the chosen one excluded; at most max.
 * Names borrowed from the pool; returns how many were written to names. */
size_t bt_planner_fallbacks(const bt_planner_pool *p, const char *chosen, const char **names,
                            size_t max);

/* The planning prompt: the task, the candidates with their figures, the rules and the
 * exact reply format. New string. */
char *bt_planner_prompt(const bt_config *cfg, const bt_planner_pool *p, const char *title,
                        const char *body);

/* Parse and validate the planning agent's reply against the pool, then build and
 * compile the workflow (planned: the `planner: true` workflow being run; base: the
 * loaded set, for personas and workflow rules; both borrowed). On success *plan is the
 * normalised plan as JSON text {"steps":[{"id","role","agent","prompt"?}]} (new
 * string; what a resumed run recompiles) and *out the compiled set holding one workflow
 * (bt_workflows_free). BT_EINVAL (or another negative BT_E*) with err saying what is
 * wrong; then nothing is returned. */
int bt_planner_parse(const bt_config *cfg, const bt_planner_pool *p, const bt_workflows *base,
                     const bt_workflow *planned, const char *reply, char **plan, bt_workflows **out,
                     bt_error *err);

/* Compile a normalised plan (from bt_planner_parse, stored on a run) again without
 * checking agents' health: the steps must still name configured agents. */
int bt_planner_compile(const bt_config *cfg, const bt_workflows *base, const bt_workflow *planned,
                       const char *plan, bt_workflows **out, bt_error *err);

/* [{id, role, agent}] of a compiled plan's workflow. New reference. */
json_t *bt_planner_steps_json(const bt_workflow *w);

/* ---- asking for a plan on the loop ---- */

typedef struct bt_resil bt_resil;
typedef struct bt_agents bt_agents;
typedef struct bt_planner_run bt_planner_run;

/* The live health of agents: a bt_planner_lookup_fn over the resilience wrapper
 * (bt_resil_health_of, latency from bt_resil_agent_json) and the agent set. */
typedef struct bt_planner_health {
    const bt_resil *resil;
    bt_agents *agents;
} bt_planner_health;
int bt_planner_resil_lookup(void *ud, const char *agent, bt_planner_agent *out, const char **why);

/* How a planning call ended. Everything borrowed for the callback, except set, which
 * the callback takes over (bt_workflows_free). */
typedef struct bt_planner_outcome {
    int ok;                 /* a valid plan: set and plan are set */
    int cancelled;          /* bt_planner_cancel (or the call was cancelled) */
    const char *reason;     /* on failure: why, for a person ("planner reply is not JSON:...") */
    const char *agent;      /* the agent that answered (or was asked last); may be NULL */
    const char *plan;       /* normalised plan JSON text (bt_planner_parse) */
    bt_workflows *set;      /* the compiled plan: one workflow */
    const json_t *excluded; /* [{agent, reason}] (bt_planner_excluded_json) */
} bt_planner_outcome;
typedef void (*bt_planner_done_fn)(bt_planner_outcome *o, void *ud);

typedef struct bt_planner_request {
    bt_resil *resil;              /* required: the call goes through it */
    bt_agents *agents;            /* required: types, roles, locality */
    const bt_config *cfg;         /* required */
    const bt_workflows *base;     /* the loaded set (personas, workflow rules) */
    const bt_workflow *planned;   /* the `planner: true` workflow being run */
    int offline;                  /* plan with local agents only */
    const char *title, *body;     /* the task */
    const char *workspace;        /* where a CLI planner runs; may be NULL */
    const char *task_id, *run_id; /* for statistics and events; may be NULL */
    bt_planner_done_fn on_done;   /* required */
    void *ud;
} bt_planner_request;

/* Choose the candidates and the planning agent and start the call (the planning agent,
 * then the other text-only candidates as fallbacks, with planner.timeout). Everything
 * in rq is copied or borrowed until on_done. Returns 0 (on_done follows exactly once,
 * from a loop callback) or a negative BT_E* with err saying why no plan can be asked
 * for ("no agent can plan: ..."); then on_done never runs. *run may stay NULL. */
int bt_planner_start(const bt_planner_request *rq, bt_planner_run **run, bt_error *err);
/* Cancel a planning call; on_done follows with cancelled set. Valid until on_done. */
void bt_planner_cancel(bt_planner_run *run);

#endif
