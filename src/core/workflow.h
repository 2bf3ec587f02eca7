/*
 * workflow.h - the workflow model (DESIGN.md §7, docs/workflows.md): load workflow YAML,
 * validate it completely before anything runs, and keep the set of workflows and
 * personas a daemon or a `baton run` uses.
 *
 * One format, a superset of seed 001's and seed 004's:
 *
 *   metadata: {id, name, version, type, description}   (seed 001; or the same keys at
 *                                                        the top level)
 *   max_iterations: 3          stop: {review_step: review, max_suggestions: 3}
 *   offline: offline-default   (the variant used when running offline)
 *   planner: true              (steps planned at run time: the `dynamic` built-in)
 *   inputs:  [{name, type, required, default, values, description}]
 *   steps:   [{id, name, action, agent, role, persona, prompt, fallback, inputs, workflow,
 *              when, timeout, retries, continue_on_error, review, locks}]
 *   outputs: [{name, value: "${steps.step-1.output}"}]
 *
 * Actions: agent (the default when a step names an agent), shell-command, git-operation,
 * execute-workflow, approval, http. A step's agent may name a configured agent or a
 * persona (a persona is an agent plus a role prompt, personas/NAME.md).
 *
 * Where workflows come from, later ones replacing earlier ones with the same id:
 *   1. the built-in set (workflows/NAME.yaml embedded in the binary: default, quick,
 *      thorough, review-only, document, offline-default, hybrid, dynamic, and seed 001's
 *      wf0-wf17);
 *   2. every NAME.yaml / NAME.yml file in the configuration's workflows_dir (when it exists).
 * Personas likewise: built-in personas/NAME.md, then personas_dir.
 *
 * Validation reports every problem at once with file:line:column (bt_config_problems):
 * bad structure or types, duplicate ids, an unknown action, agent or persona, a fallback
 * that is not an agent, an execute-workflow naming an unknown workflow or leaving a
 * required input of it unset, cycles between workflows (each cycle once, at the calling
 * step of its first workflow - user workflows before built-ins, then by id - naming the
 * whole cycle), template syntax errors, and references to unknown
 * variables ({{ inputs.X }} for an undeclared input, ${steps.Y.output} for a step that
 * does not exist, an unknown step field). A built-in workflow whose agents are not
 * configured is not an error: it is loaded as unavailable (bt_workflow.missing says
 * which agents it needs) and running it fails with that reason.
 *
 * Ownership: a bt_workflows set owns every workflow, step and persona in it; pointers
 * returned by lookups are borrowed and valid until bt_workflows_free.
 */
#ifndef BT_WORKFLOW_H
#define BT_WORKFLOW_H

#include "base/error.h"
#include "config/config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bt_tmpl bt_tmpl;

#define BT_WORKFLOW_MAX_DEPTH        8 /* nested execute-workflow calls */
#define BT_WORKFLOW_DEFAULT_MAX_SUGG 3 /* seed 004's stop rule */

typedef enum bt_wf_action {
    BT_WF_AGENT = 0,
    BT_WF_SHELL,    /* "shell-command" */
    BT_WF_GIT,      /* "git-operation" */
    BT_WF_WORKFLOW, /* "execute-workflow" */
    BT_WF_APPROVAL, /* "approval" */
    BT_WF_HTTP,     /* "http" */
    BT_WF__COUNT
} bt_wf_action;

/* "agent", "shell-command", "git-operation", "execute-workflow", "approval", "http". */
const char *bt_wf_action_name(bt_wf_action a);

/* A template-bearing field: the source text and its compiled form. */
typedef struct bt_wf_text {
    char *src;     /* NULL when the field is absent */
    bt_tmpl *tmpl; /* compiled; NULL when src is NULL */
} bt_wf_text;

typedef struct bt_wf_step {
    char *id;   /* unique within the workflow; defaults to the role, else agent, else
                 * "step-N" (a second use gets "-2", "-3"...) */
    char *name; /* display name; defaults to id */
    bt_wf_action action;
    int seq; /* 0-based position */

    /* agent */
    char *agent;     /* configured agent name (a persona is resolved to its agent) */
    char *persona;   /* persona name when the step named one, else NULL */
    char *role;      /* "implement", "review", "refine"... ; NULL when unset */
    char **fallback; /* agent names tried in order on transient errors (issue 7) */
    size_t nfallback;
    bt_wf_text prompt; /* template; NULL src = the default prompt for the role */

    /* execute-workflow */
    char *workflow; /* target workflow id */

    /* shell-command: inputs.command; git-operation: inputs.operation (branch, checkout,
     * add, commit, push, diff, status) with branch/message/remote/base/paths; http:
     * inputs.method/url/headers/body/expect; approval: inputs.prompt; execute-workflow:
     * the sub-workflow's inputs. Every string leaf is a template. */
    json_t *inputs; /* object, never NULL (borrowed by callers) */

    bt_wf_text when;        /* run only when truthy; NULL src = always */
    int64_t timeout_ms;     /* 0 = the action's default */
    int retries;            /* extra attempts after a failure (not after cancel) */
    bool continue_on_error; /* a failure does not fail the run */
    bool review;            /* its output is the one whose suggestions are counted */
    char **locks;           /* repository paths the step will modify (file-level locks,
                             * docs/resilience.md): normalised, relative, "" = the whole
                             * repository; NULL when none */
    size_t nlocks;
    char *pointer; /* JSON pointer of the step in its file ("/steps/2") */
} bt_wf_step;

typedef struct bt_wf_param {
    char *name;
    char *type; /* "string", "enum", "boolean", "integer", "number", "object", "array",
                 * or alternatives "string|enum" (seed 001 writes them so) */
    char *description;
    bool required;
    json_t *dflt;     /* default value or NULL */
    json_t *values;   /* enum choices (array) or NULL */
    bt_wf_text value; /* outputs: the template of the value */
} bt_wf_param;

typedef struct bt_workflow {
    char *id, *name, *version, *type, *description;
    char *source; /* file path, or "builtin:workflows/default.yaml" */
    char *digest; /* first 16 hex digits of the SHA-256 of the file's text */
    bool builtin;
    int max_iterations;  /* >= 1; default 1 */
    int max_suggestions; /* stop rule: review reports at most this many; default 3 */
    char *review_step;   /* id of the step whose suggestions are counted, or NULL (then
                          * the last step with review: true or role "review") */
    char *offline;       /* id of the offline variant, or NULL */
    bool planned;        /* `planner: true`: its steps are planned at run time by the
                          * dynamic planner (core/planner.h); it has no steps of its own */
    char *missing;       /* built-in only: "needs agents gemini, claude" when its agents
                          * are not configured; NULL when runnable */
    bt_wf_param *inputs;
    size_t ninputs;
    bt_wf_step *steps;
    size_t nsteps;
    bt_wf_param *outputs;
    size_t noutputs;
} bt_workflow;

typedef struct bt_persona {
    char *name;   /* file name without .md: "senior_developer" */
    char *title;  /* "Senior Developer" */
    char *agent;  /* default agent, or NULL (then the step must name one, or the config's
                   * first agent is used) */
    char *role;   /* default role or NULL */
    char *prompt; /* the role prompt (the Markdown body) */
    char *source;
    bool builtin;
} bt_persona;

typedef struct bt_workflows bt_workflows;

typedef struct bt_workflows_opts {
    const char *workflows_dir; /* NULL = cfg->workflows_dir; "" = none */
    const char *personas_dir;  /* NULL = cfg->personas_dir; "" = none */
    bool no_builtin;           /* tests: only the directories */
} bt_workflows_opts;

/* Load built-ins and the configured directories, then validate everything against the
 * configuration's agents. Every problem goes to probs (may be NULL). Returns 0 and a new
 * set in *out when there are none; BT_EINVAL (with *out NULL) when there are. A missing
 * directory is not a problem. cfg is borrowed for the call only. */
int bt_workflows_load(const bt_config *cfg, const bt_workflows_opts *opts, bt_workflows **out,
                      bt_config_problems *probs, bt_error *err);

/* Parse and validate one workflow document given as text (name is used in positions),
 * against cfg and the workflows already in set (for execute-workflow targets; set may
 * be NULL). Used by tests and by the API to check a submitted workflow. On success the
 * workflow is added to set (replacing one with the same id) when set is non-NULL. */
int bt_workflows_add_string(bt_workflows *set, const bt_config *cfg, const char *name,
                            const char *text, size_t len, bt_config_problems *probs, bt_error *err);

/* Compile one workflow document (text; JSON is YAML too) into a NEW set holding just
 * it, validated with the same rules as bt_workflows_add_string against cfg and the
 * workflows and personas of base (execute-workflow targets, personas; base may be NULL
 * and is not modified). The dynamic planner uses it for the plans it builds. Returns 0
 * and *out (owned by the caller; the set's personas are base's, looked up there), or
 * BT_EINVAL with every problem in probs (may be NULL) and err naming the first (an
 * unconfigured agent is a problem), or BT_EUNAVAIL when it calls a workflow that cannot
 * run here. */
int bt_workflows_compile(const bt_workflows *base, const bt_config *cfg, const char *name,
                         const char *text, size_t len, bt_workflows **out,
                         bt_config_problems *probs, bt_error *err);

void bt_workflows_free(bt_workflows *set);

size_t bt_workflows_count(const bt_workflows *set);
const bt_workflow *bt_workflows_at(const bt_workflows *set, size_t i); /* sorted by id */
/* By id, then by name compared loosely (case-insensitive, '-', '_' and ' ' equal), so
 * seed 001's workflow_type "feature_development" finds "Feature Development". */
const bt_workflow *bt_workflows_find(const bt_workflows *set, const char *id_or_name);

size_t bt_workflows_persona_count(const bt_workflows *set);
const bt_persona *bt_workflows_persona_at(const bt_workflows *set, size_t i);
const bt_persona *bt_workflows_persona(const bt_workflows *set, const char *name);

/* Check given inputs (an object, or NULL for none) against w's declared inputs: every
 * required input present (a default counts), enum values among `values`, types matching
 * (a string is accepted for a boolean/integer/number when it parses as one), no
 * undeclared names. On success *out is a new object with every declared input (defaults
 * applied, null for an absent optional one). BT_EINVAL with err naming the input and
 * what is wrong ("workflow wf3 needs input BRANCH_NAME (string)"). */
int bt_workflow_bind_inputs(const bt_workflow *w, const json_t *given, json_t **out, bt_error *err);

/* The step whose output the stop rule counts, or NULL when the workflow has none. */
const bt_wf_step *bt_workflow_review_step(const bt_workflow *w);

/* JSON for /api/workflows and `baton workflows --json`: {id, name, version, type,
 * description, source, builtin, available, planned, missing, max_iterations, max_suggestions,
 * inputs:[...], outputs:[...], steps:[{id, name, action, agent, persona, role, fallback,
 * workflow, when, timeout_ms, retries, continue_on_error}], agents:[...]}. New reference. */
json_t *bt_workflow_to_json(const bt_workflow *w);

/* The workflow an offline run of w uses (docs/resilience.md): a planned workflow
 * without an `offline` key itself (planned with local agents); else w's `offline`
 * variant, else offline-default, when that exists and can run here; otherwise w itself (which
 * then runs with its local agents only). A sentence saying which and why is written
 * to why (n bytes; may be NULL). */
const bt_workflow *bt_workflow_offline_variant(const bt_workflows *set, const bt_workflow *w,
                                               char *why, size_t n);
json_t *bt_persona_to_json(const bt_persona *p);

/* /api/workflow/structure: {"workflows":[bt_workflow_to_json...], "edges":[{"from":
 * "wf0","step":"create-branch","to":"wf3"}...], "personas":[...]}. New reference. */
json_t *bt_workflows_structure(const bt_workflows *set);

/* Seed 004's stop rule needs the number of suggestions a review made. Counted from, in
 * order: a JSON object in the text (bare or in a ```json fence) with "suggestions" as an
 * array (its length) or a number; a line "SUGGESTIONS: N" (case-insensitive); a reply
 * that says there is nothing to change ("LGTM", "no suggestions", "no issues found",
 * "looks good") -> 0; else the number of list items (lines starting with "-", "*", "+"
 * or "N." / "N)") . Returns >= 0. */
int bt_workflow_count_suggestions(const char *text);

#endif
