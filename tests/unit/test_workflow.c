/*
 * test_workflow.c - the workflow model (src/core/workflow.c): the built-in workflows and
 * personas load against a configuration that names their agents and are "unavailable"
 * (with the agents they need) against one that does not; seed 001's README sketch fails
 * with one located problem while its three concrete forms validate; every kind of
 * problem is reported at its file:line:column; personas resolve to agents; lookups,
 * structure JSON, suggestion counting and input binding behave as documented.
 */
#include "testutil.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "config/config.h"
#include "core/workflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static bt_config *config_from(const char *yaml)
{
    bt_config *cfg = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_config_load_string("test.yaml", yaml, strlen(yaml), NULL, &cfg, &probs, &err);
    if (rc != 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("config: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    return cfg;
}

/* Every agent the built-ins name, as replay agents (never started here). */
static bt_config *full_config(void)
{
    return config_from("agents:\n"
                       "  codex: {type: replay, file: /nonexistent/a.jsonl}\n"
                       "  gemini: {type: replay, file: /nonexistent/a.jsonl}\n"
                       "  claude: {type: replay, file: /nonexistent/a.jsonl}\n"
                       "  copilot: {type: replay, file: /nonexistent/a.jsonl}\n"
                       "  local-code: {type: replay, file: /nonexistent/a.jsonl}\n"
                       "  local-instruct: {type: replay, file: /nonexistent/a.jsonl}\n"
                       "workflows_dir: \"\"\n"
                       "personas_dir: \"\"\n");
}

static bt_workflows *load_ok(const bt_config *cfg, const bt_workflows_opts *o)
{
    bt_workflows *set = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_workflows_load(cfg, o, &set, &probs, &err);
    if (rc != 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("bt_workflows_load: %s", err.msg);
    }
    assert_int_equal(probs.len, 0);
    bt_config_problems_free(&probs);
    return set;
}

/* The problem whose message contains needle; fails the test when there is none. */
static const bt_config_problem *find_prob(const bt_config_problems *p, const char *needle)
{
    for (size_t i = 0; i < p->len; i++)
        if (strstr(p->items[i].message, needle))
            return &p->items[i];
    bt_config_problems_print(p, stderr);
    fail_msg("no problem mentions '%s'", needle);
    return NULL;
}

static void assert_at(const bt_config_problems *p, const char *needle, int line, int col)
{
    const bt_config_problem *x = find_prob(p, needle);
    if (x->line != line || x->column != col) {
        bt_config_problems_print(p, stderr);
        fail_msg("'%s' reported at %d:%d, want %d:%d", needle, x->line, x->column, line, col);
    }
}

/* Validate text as one workflow against cfg (and set); returns the rc. */
static int add(bt_workflows *set, const bt_config *cfg, const char *name, const char *text,
               bt_config_problems *probs)
{
    bt_error err = BT_ERROR_INIT;
    int rc = bt_workflows_add_string(set, cfg, name, text, strlen(text), probs, &err);
    if (rc == 0)
        assert_int_equal(probs->len, 0);
    else
        assert_true(probs->len > 0 && err.msg[0]);
    return rc;
}

static const bt_wf_step *step_of(const bt_workflow *w, const char *id)
{
    for (size_t i = 0; i < w->nsteps; i++)
        if (strcmp(w->steps[i].id, id) == 0)
            return &w->steps[i];
    fail_msg("workflow %s has no step %s", w->id, id);
    return NULL;
}

static void put(const char *dir, const char *name, const char *text)
{
    free(bt_test_write(dir, name, text));
}

static bt_workflows_opts no_dirs = {.workflows_dir = "", .personas_dir = ""};

/* ---- built-ins ---- */

static void test_builtins_load(void **state)
{
    (void)state;
    bt_config *cfg = full_config();
    bt_workflows *set = load_ok(cfg, &no_dirs);
    assert_int_equal(bt_workflows_count(set), 26);
    assert_int_equal(bt_workflows_persona_count(set), 27);
    static const char *const ids[] = {"default", "document",    "hybrid",  "offline-default",
                                      "quick",   "review-only", "thorough"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        assert_non_null(bt_workflows_find(set, ids[i]));
    for (int i = 0; i <= 17; i++) {
        char id[8];
        snprintf(id, sizeof id, "wf%d", i);
        const bt_workflow *w = bt_workflows_find(set, id);
        assert_non_null(w);
        assert_string_equal(w->type, i <= 2 ? "master" : "core");
    }
    const char *prev = "";
    for (size_t i = 0; i < bt_workflows_count(set); i++) {
        const bt_workflow *w = bt_workflows_at(set, i);
        assert_true(strcmp(prev, w->id) < 0); /* sorted */
        prev = w->id;
        if (w->missing)
            fail_msg("%s unavailable: %s", w->id, w->missing);
        assert_true(w->builtin);
        assert_true(strncmp(w->source, "builtin:workflows/", 18) == 0);
        assert_int_equal(strlen(w->digest), 16);
        for (size_t k = 0; k < w->nsteps; k++)
            if (w->steps[k].action == BT_WF_AGENT)
                assert_non_null(w->steps[k].agent);
    }

    /* default: seed 004's codex -> gemini -> claude, review in the middle */
    const bt_workflow *d = bt_workflows_find(set, "default");
    assert_int_equal(d->nsteps, 3);
    assert_string_equal(d->steps[0].agent, "codex");
    assert_string_equal(d->steps[0].role, "implement");
    assert_string_equal(d->steps[1].agent, "gemini");
    assert_string_equal(d->steps[2].agent, "claude");
    assert_int_equal(d->max_iterations, 3);
    assert_int_equal(d->max_suggestions, 3);
    assert_string_equal(d->offline, "offline-default");
    assert_string_equal(bt_workflow_review_step(d)->id, "review");
    assert_non_null(d->steps[0].prompt.tmpl);
    assert_non_null(strstr(d->steps[0].prompt.src, "{{ steps.review.output }}"));

    const bt_workflow *t = bt_workflows_find(set, "thorough");
    assert_int_equal(t->nsteps, 4);
    static const char *const tag[] = {"codex", "copilot", "gemini", "claude"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(t->steps[i].agent, tag[i]);
    assert_string_equal(bt_workflow_review_step(t)->agent, "gemini");
    assert_int_equal(bt_workflows_find(set, "quick")->nsteps, 1);
    const bt_workflow *h = bt_workflows_find(set, "hybrid");
    assert_string_equal(h->steps[0].agent, "local-code");
    assert_string_equal(h->steps[1].agent, "claude");
    assert_int_equal(h->steps[1].nfallback, 1);
    assert_string_equal(h->steps[1].fallback[0], "local-code");
    const bt_workflow *o = bt_workflows_find(set, "offline-default");
    assert_string_equal(o->steps[0].agent, "local-code");
    assert_string_equal(o->steps[1].agent, "local-instruct");
    assert_string_equal(bt_workflows_find(set, "review-only")->steps[0].agent, "gemini");
    assert_string_equal(bt_workflows_find(set, "document")->steps[0].agent, "claude");

    /* wf0: hierarchical, personas on the first configured agent */
    const bt_workflow *w0 = bt_workflows_find(set, "wf0");
    assert_string_equal(w0->name, "Feature Development");
    assert_string_equal(step_of(w0, "create-branch")->workflow, "wf3");
    const bt_wf_step *dev = step_of(w0, "develop");
    assert_string_equal(dev->persona, "senior_developer");
    assert_string_equal(dev->agent, "codex");
    assert_string_equal(dev->role, "developer");
    /* approvals where a person must decide */
    static const char *const gated[] = {"wf2", "wf8", "wf11"};
    for (size_t i = 0; i < 3; i++) {
        const bt_workflow *g = bt_workflows_find(set, gated[i]);
        int n = 0;
        for (size_t k = 0; k < g->nsteps; k++)
            n += g->steps[k].action == BT_WF_APPROVAL;
        assert_int_equal(n, 1);
    }
    /* every built-in persona has a title and a real prompt */
    for (size_t i = 0; i < bt_workflows_persona_count(set); i++) {
        const bt_persona *p = bt_workflows_persona_at(set, i);
        assert_true(p->builtin);
        assert_non_null(p->title);
        assert_true(strlen(p->prompt) > 300);
    }
    assert_string_equal(bt_workflows_persona(set, "ui_ux_designer")->title, "UI/UX Designer");
    assert_non_null(bt_workflows_persona(set, "code_reviewer"));
    assert_non_null(bt_workflows_persona(set, "qa_engineer"));
    /* dynamic is planned at run time: no steps, and nothing can call it */
    const bt_workflow *dyn = bt_workflows_find(set, "dynamic");
    assert_true(dyn && dyn->planned && dyn->nsteps == 0 && !dyn->missing);
    bt_config_problems p = {0};
    const char *caller = "id: calls-dynamic\n"
                         "steps:\n"
                         "  - workflow: dynamic\n";
    assert_int_equal(add(set, cfg, "calls.yaml", caller, &p), BT_EINVAL);
    assert_at(&p, "calls workflow 'dynamic', which is planned at run time", 3, 15);
    bt_config_problems_free(&p);
    bt_workflows_free(set);
    bt_config_free(cfg);
}

static void test_builtins_missing_agents(void **state)
{
    (void)state;
    bt_config *cfg = config_from("agents:\n  claude: {type: replay, file: x.jsonl}\n");
    bt_workflows *set = load_ok(cfg, &no_dirs);
    assert_int_equal(bt_workflows_count(set), 26);
    assert_string_equal(bt_workflows_find(set, "default")->missing, "needs agents codex, gemini");
    assert_string_equal(bt_workflows_find(set, "quick")->missing, "needs agent codex");
    assert_string_equal(bt_workflows_find(set, "offline-default")->missing,
                        "needs agents local-code, local-instruct");
    assert_null(bt_workflows_find(set, "wf0")->missing); /* personas run on claude */
    assert_string_equal(step_of(bt_workflows_find(set, "wf0"), "develop")->agent, "claude");
    json_t *j = bt_workflow_to_json(bt_workflows_find(set, "default"));
    assert_false(json_is_true(json_object_get(j, "available")));
    assert_string_equal(json_string_value(json_object_get(j, "missing")),
                        "needs agents codex, gemini");
    json_decref(j);
    bt_workflows_free(set);
    bt_config_free(cfg);

    /* no agent at all: persona steps cannot run, and neither can their callers */
    cfg = config_from("agents: {}\n");
    set = load_ok(cfg, &no_dirs);
    assert_null(bt_workflows_find(set, "wf3")->missing); /* shell + git only */
    assert_null(bt_workflows_find(set, "wf4")->missing);
    assert_non_null(strstr(bt_workflows_find(set, "wf5")->missing, "none is configured"));
    assert_non_null(strstr(bt_workflows_find(set, "wf0")->missing, "none is configured"));
    assert_null(bt_workflows_find(set, "wf8")->missing); /* approval, shell, git; wf17 shell */
    bt_workflows_free(set);
    bt_config_free(cfg);
}

/* ---- seed 001's README example ---- */

static const char seed001_block[] = "metadata:\n"
                                    "  id: unique-id\n"
                                    "  name: Workflow Name\n"
                                    "  version: 1.0.0\n"
                                    "  type: master|core\n"
                                    "  description: Description\n"
                                    "\n"
                                    "inputs:\n"
                                    "  - name: INPUT_NAME\n"
                                    "    type: string|enum|boolean\n"
                                    "    required: true\n"
                                    "\n"
                                    "steps:\n"
                                    "  - id: step-1\n"
                                    "    name: Step Name\n"
                                    "    action: execute-workflow|shell-command|git-operation\n"
                                    "    inputs:\n"
                                    "      key: value\n"
                                    "\n"
                                    "outputs:\n"
                                    "  - name: OUTPUT_NAME\n"
                                    "    value: ${steps.step-1.output}\n";

/* The block with its action and `key: value` replaced. */
static char *seed001_with(const char *action, const char *inputs)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    const char *a = strstr(seed001_block, "execute-workflow|");
    const char *a_end = strchr(a, '\n');
    const char *k = strstr(seed001_block, "      key: value\n");
    bt_strbuf_add(&sb, seed001_block, (size_t)(a - seed001_block));
    bt_strbuf_addstr(&sb, action);
    bt_strbuf_add(&sb, a_end, (size_t)(k - a_end));
    bt_strbuf_addstr(&sb, inputs);
    bt_strbuf_addstr(&sb, k + strlen("      key: value\n"));
    return bt_strbuf_detach(&sb, NULL);
}

static void test_seed001_example(void **state)
{
    (void)state;
    bt_config *cfg = full_config();
    bt_workflows *set = load_ok(cfg, &no_dirs);

    /* the literal sketch: exactly one problem, at the action, naming the six actions */
    bt_config_problems probs = {0};
    assert_int_equal(add(set, cfg, "README.yaml", seed001_block, &probs), BT_EINVAL);
    if (probs.len != 1) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("want exactly one problem, got %zu", probs.len);
    }
    assert_string_equal(probs.items[0].file, "README.yaml");
    assert_int_equal(probs.items[0].line, 16);
    assert_int_equal(probs.items[0].column, 13);
    assert_non_null(
        strstr(probs.items[0].message,
               "agent, shell-command, git-operation, execute-workflow, approval, http"));
    assert_non_null(strstr(probs.items[0].message, "execute-workflow|shell-command|git-operation"));
    bt_config_problems_free(&probs);
    assert_null(bt_workflows_find(set, "unique-id"));

    /* the three concrete forms validate */
    char *ew = seed001_with("execute-workflow", "      workflow: wf4\n"
                                                "      WORK_ITEM_ID: FEAT-123\n"
                                                "      SUMMARY: add the feature\n");
    char *sh = seed001_with("shell-command", "      command: echo hello\n");
    char *git = seed001_with("git-operation", "      operation: status\n");
    const char *const texts[] = {ew, sh, git};
    for (int i = 0; i < 3; i++) {
        bt_config_problems p = {0};
        if (add(set, cfg, "README.yaml", texts[i], &p) != 0) {
            bt_config_problems_print(&p, stderr);
            fail_msg("instantiation %d does not validate", i);
        }
        bt_config_problems_free(&p);
        const bt_workflow *w = bt_workflows_find(set, "unique-id");
        assert_non_null(w);
        assert_string_equal(w->name, "Workflow Name");
        assert_string_equal(w->version, "1.0.0");
        assert_string_equal(w->type, "master|core");
        assert_int_equal(w->ninputs, 1);
        assert_string_equal(w->inputs[0].type, "string|enum|boolean");
        assert_true(w->inputs[0].required);
        assert_int_equal(w->noutputs, 1);
        assert_string_equal(w->outputs[0].value.src, "${steps.step-1.output}");
        assert_non_null(w->outputs[0].value.tmpl);
        assert_string_equal(w->steps[0].id, "step-1");
        assert_int_equal(w->steps[0].action, i == 0   ? BT_WF_WORKFLOW
                                             : i == 1 ? BT_WF_SHELL
                                                      : BT_WF_GIT);
        if (i == 0) {
            assert_string_equal(w->steps[0].workflow, "wf4");
            assert_null(json_object_get(w->steps[0].inputs, "workflow"));
            assert_string_equal(json_string_value(json_object_get(w->steps[0].inputs, "SUMMARY")),
                                "add the feature");
        }
    }
    free(ew);
    free(sh);
    free(git);
    bt_workflows_free(set);
    bt_config_free(cfg);
}

/* ---- located problems ---- */

static const char bad_wf[] = "metadata:\n"                     /* 1 */
                             "  id: bad\n"                     /* 2 */
                             "inputs:\n"                       /* 3 */
                             "  - name: BRANCH\n"              /* 4 */
                             "    type: strin\n"               /* 5 */
                             "    default: main\n"             /* 6 */
                             "steps:\n"                        /* 7 */
                             "  - id: implement\n"             /* 8 */
                             "    agent: codx\n"               /* 9 */
                             "    promt: hi\n"                 /* 10 */
                             "  - id: review\n"                /* 11 */
                             "    agent: claude\n"             /* 12 */
                             "    prompt: |\n"                 /* 13 */
                             "      Review {{ task.title }}\n" /* 14 */
                             "      of {{ steps.implemnt.output }} on {{ inputs.BRANCH }}\n"
                             "      and {{ inputs.BRANC }} {{ steps.implement.outptu }}\n"
                             "  - id: refine\n"                                     /* 17 */
                             "    agent: claude\n"                                  /* 18 */
                             "    prompt: \"Fix {{ previous.output | nosuch }}\"\n" /* 19 */
                             "    timeout: 10 minutes\n"                            /* 20 */
                             "    retries: 11\n"                                    /* 21 */
                             "  - action: shell-command\n"                          /* 22 */
                             "    inputs: {}\n"                                     /* 23 */
                             "  - action: git-operation\n"                          /* 24 */
                             "    inputs: {operation: rebase}\n"                    /* 25 */
                             "  - id: review\n"                                     /* 26 */
                             "    action: approval\n"                               /* 27 */
                             "    when: \"{{ tsk.title }}\"\n"                      /* 28 */
                             "  - action: http\n"                                   /* 29 */
                             "    inputs: {method: FETCH}\n"                        /* 30 */
                             "  - agent: claude\n"                                  /* 31 */
                             "    fallback: [gemini]\n"                             /* 32 */
                             "  - persona: senior_dev\n"                            /* 33 */
                             "  - action: execute-workflow\n"                       /* 34 */
                             "    workflow: nowhere\n"                              /* 35 */
                             "  - name: nothing\n";                                 /* 36 */

static void test_problems_located(void **state)
{
    (void)state;
    bt_config *cfg = config_from("agents:\n"
                                 "  claude: {type: replay, file: x.jsonl}\n"
                                 "  codex: {type: replay, file: x.jsonl}\n");
    bt_workflows *set = load_ok(cfg, &no_dirs);
    bt_config_problems p = {0};
    assert_int_equal(add(set, cfg, "bad.yaml", bad_wf, &p), BT_EINVAL);
    assert_at(&p, "unknown type 'strin'", 5, 11);
    assert_at(&p, "unknown agent 'codx' in step 'implement'; did you mean 'codex'?", 9, 12);
    assert_at(&p, "unknown key 'promt' in step 'implement'; did you mean 'prompt'?", 10, 5);
    assert_at(&p,
              "unknown variable 'steps.implemnt.output' in the prompt of step 'review'; did "
              "you mean 'steps.implement.output'?",
              15, 13);
    assert_at(&p, "unknown variable 'inputs.BRANC'", 16, 14);
    assert_at(&p, "did you mean 'inputs.BRANCH'?", 16, 14);
    assert_at(&p, "unknown variable 'steps.implement.outptu'", 16, 33);
    assert_at(&p,
              "'steps.implement.outptu' in the prompt of step 'review'; did you mean "
              "'steps.implement.output'?",
              16, 33);
    assert_at(&p, "template error in the prompt of step 'refine'", 19, 39);
    assert_at(&p, "timeout of step 'refine' is not a valid duration", 20, 14);
    assert_at(&p, "retries of step 'refine' must be a whole number", 21, 14);
    assert_at(&p, "shell-command step 'step-4' needs inputs.command", 23, 5);
    assert_at(&p, "unknown git operation 'rebase'", 25, 25);
    assert_at(&p, "duplicate step id 'review' (also step 2)", 26, 9);
    assert_at(&p,
              "unknown variable 'tsk.title' in when of step 'review'; did you mean "
              "'task.title'?",
              28, 15);
    assert_at(&p, "inputs.method of step 'step-7' is not an HTTP method", 30, 22);
    assert_at(&p, "http step 'step-7' needs inputs.url", 30, 5);
    assert_at(&p, "fallback 'gemini' of step 'claude' is not a configured agent", 32, 16);
    assert_at(&p,
              "unknown persona 'senior_dev' in step 'senior_dev'; did you mean "
              "'senior_developer'?",
              33, 14);
    assert_at(&p, "unknown workflow 'nowhere' in step 'step-10'", 35, 15);
    assert_at(&p, "step 'step-11' has no agent, persona or action", 36, 5);
    /* every problem carries a hint and the file name */
    for (size_t i = 0; i < p.len; i++) {
        assert_string_equal(p.items[i].file, "bad.yaml");
        assert_non_null(p.items[i].hint);
        assert_true(p.items[i].line > 0);
    }
    /* sorted by position */
    for (size_t i = 1; i < p.len; i++)
        assert_true(p.items[i - 1].line <= p.items[i].line);
    assert_null(bt_workflows_find(set, "bad"));
    bt_config_problems_free(&p);
    bt_workflows_free(set);
    bt_config_free(cfg);
}

static void test_more_problems(void **state)
{
    (void)state;
    bt_config *cfg = config_from("agents:\n  claude: {type: replay, file: x.jsonl}\n");
    bt_config_problems p = {0};
    /* structure edges: not a mapping, no steps, no id, YAML syntax */
    assert_int_equal(add(NULL, cfg, "a.yaml", "- 1\n- 2\n", &p), BT_EINVAL);
    assert_at(&p, "step 1 must be a mapping", 1, 3);
    assert_at(&p, "the workflow has no id", 1, 1);
    bt_config_problems_free(&p);
    assert_int_equal(add(NULL, cfg, "b.yaml", "metadata: {id: b}\n", &p), BT_EINVAL);
    assert_at(&p, "the workflow has no steps", 1, 1);
    bt_config_problems_free(&p);
    assert_int_equal(add(NULL, cfg, "c.yaml", "id: c\nsteps: [\n", &p), BT_EINVAL);
    assert_true(p.items[0].line >= 2);
    bt_config_problems_free(&p);
    assert_int_equal(add(NULL, cfg, "d.yaml", "\"just text\"\n", &p), BT_EINVAL);
    find_prob(&p, "must be a mapping");
    bt_config_problems_free(&p);

    /* inputs: enum without values, default of the wrong type, duplicate names */
    const char *in = "id: e\n"
                     "inputs:\n"
                     "  MODE: {type: enum}\n"
                     "  COUNT: {type: integer, default: many}\n"
                     "  FLAG: {type: boolean, default: \"yes\"}\n"
                     "steps:\n"
                     "  - agent: claude\n"
                     "    prompt: \"{{ inputs.COUNT }} {{ iteration.x }} {{ steps }}\"\n";
    assert_int_equal(add(NULL, cfg, "e.yaml", in, &p), BT_EINVAL);
    assert_at(&p, "input 'MODE' is an enum without values", 3, 3);
    assert_at(&p, "the default of input 'COUNT' is not integer", 4, 35);
    assert_at(&p, "unknown variable 'iteration.x'", 8, 36);
    assert_int_equal(p.len, 3);
    bt_config_problems_free(&p);

    /* step keys that belong to other actions, agent steps with inputs */
    const char *mix = "id: f\n"
                      "steps:\n"
                      "  - action: shell-command\n"
                      "    command: true\n"
                      "    agent: claude\n"
                      "  - agent: claude\n"
                      "    inputs: {x: 1}\n"
                      "  - run: echo hi\n"
                      "    inputs: {command: echo twice}\n";
    assert_int_equal(add(NULL, cfg, "f.yaml", mix, &p), BT_EINVAL);
    assert_at(&p, "'agent' applies to agent steps, but step 'claude' is shell-command", 5, 5);
    assert_at(&p, "agent step 'claude-2' takes no inputs", 7, 5);
    assert_at(&p, "gives its command twice", 8, 5);
    assert_int_equal(p.len, 3); /* command: true is the command "true" */
    bt_config_problems_free(&p);

    /* unknown top-level and metadata keys, review_step that is not a step */
    const char *top = "metadata: {id: g, nmae: G}\n"
                      "stop: {review_step: reviw}\n"
                      "max_iterations: 0\n"
                      "step:\n"
                      "  - agent: claude\n"
                      "steps:\n"
                      "  - agent: claude\n"
                      "    role: review\n";
    assert_int_equal(add(NULL, cfg, "g.yaml", top, &p), BT_EINVAL);
    assert_at(&p, "unknown key 'nmae' in metadata; did you mean 'name'?", 1, 19);
    assert_at(&p, "stop.review_step 'reviw' is not a step of this workflow; did you mean 'review'",
              2, 21);
    assert_at(&p, "max_iterations must be a whole number from 1 to 100", 3, 17);
    assert_at(&p, "unknown key 'step' in the workflow; did you mean 'steps'?", 4, 1);
    bt_config_problems_free(&p);

    /* file locks: relative paths inside the repository only, normalised */
    const char *lk = "id: h\n"
                     "steps:\n"
                     "  - agent: claude\n"
                     "    locks: [/etc, src/../../x, 7]\n"
                     "  - id: ok\n"
                     "    agent: claude\n"
                     "    locks: {a: b}\n";
    assert_int_equal(add(NULL, cfg, "h.yaml", lk, &p), BT_EINVAL);
    assert_at(&p, "lock path '/etc' of step 'claude' must be relative to the repository", 4, 13);
    assert_at(&p, "lock path 'src/../../x' of step 'claude' must not contain '..'", 4, 19);
    assert_at(&p, "lock entries of step 'claude' must be paths, not", 4, 32);
    assert_at(&p, "locks of step 'ok' must be a list of paths", 7, 12);
    assert_int_equal(p.len, 4);
    bt_config_problems_free(&p);
    bt_workflows *set = NULL;
    bt_error err = BT_ERROR_INIT;
    const char *good = "id: i\n"
                       "steps:\n"
                       "  - agent: claude\n"
                       "    locks: [./src//api/, ., docs]\n";
    assert_int_equal(bt_workflows_load(cfg, &no_dirs, &set, NULL, &err), 0);
    assert_int_equal(add(set, cfg, "i.yaml", good, &p), 0);
    const bt_wf_step *st = step_of(bt_workflows_find(set, "i"), "claude");
    assert_int_equal(st->nlocks, 3);
    assert_string_equal(st->locks[0], "src/api");
    assert_string_equal(st->locks[1], ""); /* the whole repository */
    assert_string_equal(st->locks[2], "docs");
    bt_workflows_free(set);
    bt_config_free(cfg);
}

/* ---- workflows across files ---- */

static void test_cross_workflow(void **state)
{
    (void)state;
    bt_config *cfg = config_from("agents:\n  claude: {type: replay, file: x.jsonl}\n");
    char *dir = bt_test_tmpdir("wfx");
    put(dir, "a.yaml",
        "id: wf-a\n"                     /* 1 */
        "steps:\n"                       /* 2 */
        "  - agent: claude\n"            /* 3 */
        "  - action: execute-workflow\n" /* 4 */
        "    workflow: wf-b\n");         /* 5 */
    put(dir, "b.yaml",
        "id: wf-b\n" /* 1 */
        "inputs:\n"  /* 2 */
        "  - {name: NEEDED, required: true}\n"
        "steps:\n"                   /* 4 */
        "  - workflow: wf-a\n"       /* 5 */
        "    inputs: {EXTRA: 1}\n"); /* 6 */
    put(dir, "self.yaml",
        "steps:\n" /* id from the name */
        "  - workflow: self\n");
    put(dir, "off.yaml", "id: off\noffline: nowhere\nsteps:\n  - agent: claude\n");
    bt_workflows_opts o = {.workflows_dir = dir, .personas_dir = "", .no_builtin = true};
    bt_workflows *set = NULL;
    bt_config_problems p = {0};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_workflows_load(cfg, &o, &set, &p, &err), BT_EINVAL);
    assert_null(set);
    char fa[4200], fb[4200], fs[4200], fo[4200];
    snprintf(fa, sizeof fa, "%s/a.yaml", dir);
    snprintf(fb, sizeof fb, "%s/b.yaml", dir);
    snprintf(fs, sizeof fs, "%s/self.yaml", dir);
    snprintf(fo, sizeof fo, "%s/off.yaml", dir);
    /* one cycle, reported once, at the first member's calling step */
    const bt_config_problem *c = find_prob(&p, "workflow cycle: wf-a → wf-b → wf-a");
    assert_string_equal(c->file, fa);
    assert_int_equal(c->line, 5);
    assert_int_equal(c->column, 15);
    int cycles = 0;
    for (size_t i = 0; i < p.len; i++)
        cycles += strstr(p.items[i].message, "workflow cycle") != NULL;
    assert_int_equal(cycles, 2); /* a<->b and self */
    c = find_prob(&p, "workflow cycle: self → self");
    assert_string_equal(c->file, fs);
    assert_int_equal(c->line, 2);
    /* the caller leaves a required input unset and passes an undeclared one */
    c = find_prob(&p, "leaves input NEEDED of workflow wf-b unset");
    assert_string_equal(c->file, fa);
    assert_int_equal(c->line, 4);
    c = find_prob(&p, "workflow wf-a has no input 'EXTRA'");
    assert_string_equal(c->file, fb);
    assert_int_equal(c->line, 6);
    assert_int_equal(c->column, 14);
    c = find_prob(&p, "unknown offline workflow 'nowhere'");
    assert_string_equal(c->file, fo);
    assert_int_equal(c->line, 2);
    bt_config_problems_free(&p);
    bt_test_rmdir(dir);

    /* nesting deeper than BT_WORKFLOW_MAX_DEPTH */
    dir = bt_test_tmpdir("wfdepth");
    for (int i = 0; i <= BT_WORKFLOW_MAX_DEPTH + 1; i++) {
        char name[32], text[200];
        snprintf(name, sizeof name, "n%d.yaml", i);
        if (i <= BT_WORKFLOW_MAX_DEPTH)
            snprintf(text, sizeof text, "steps:\n  - workflow: n%d\n", i + 1);
        else
            snprintf(text, sizeof text, "steps:\n  - run: \"true\"\n");
        put(dir, name, text);
    }
    o.workflows_dir = dir;
    assert_int_equal(bt_workflows_load(cfg, &o, &set, &p, &err), BT_EINVAL);
    assert_int_equal(p.len, 1);
    assert_non_null(strstr(p.items[0].message, "nested 9 deep (at most 8)"));
    assert_non_null(strstr(p.items[0].message, "n0 → n1"));
    bt_config_problems_free(&p);
    /* one level less is fine */
    put(dir, "n0.yaml", "steps:\n  - run: \"true\"\n");
    set = load_ok(cfg, &o);
    bt_workflows_free(set);
    bt_test_rmdir(dir);
    bt_config_free(cfg);
}

static void test_dir_overrides(void **state)
{
    (void)state;
    bt_config *cfg = full_config();
    char *dir = bt_test_tmpdir("wfdir");
    /* a user file replaces the built-in default; a byte-identical copy of a built-in
     * stays the built-in; the id of a file without one is its name */
    put(dir, "mine.yml",
        "metadata: {id: default, name: Mine}\n"
        "steps:\n  - agent: claude\n    role: implement\n");
    char path[4200];
    snprintf(path, sizeof path, "%s/workflows/quick.yaml", getenv("BATON_SOURCE_DIR"));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    put(dir, "quick.yaml", buf);
    put(dir, "tour.yaml", "steps:\n  - agent: claude\n");
    put(dir, "notes.txt", "not a workflow");
    bt_workflows_opts o = {.workflows_dir = dir, .personas_dir = ""};
    bt_workflows *set = load_ok(cfg, &o);
    assert_int_equal(bt_workflows_count(set), 27);
    const bt_workflow *d = bt_workflows_find(set, "default");
    assert_string_equal(d->name, "Mine");
    assert_false(d->builtin);
    assert_non_null(strstr(d->source, "mine.yml"));
    assert_true(bt_workflows_find(set, "quick")->builtin);
    assert_non_null(bt_workflows_find(set, "tour"));
    bt_workflows_free(set);

    /* the same id twice in workflows_dir is a problem */
    put(dir, "twice.yaml", "id: tour\nsteps:\n  - agent: claude\n");
    bt_config_problems p = {0};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_workflows_load(cfg, &o, &set, &p, &err), BT_EINVAL);
    assert_at(&p, "workflow id 'tour' is defined twice in workflows_dir", 1, 5);
    bt_config_problems_free(&p);

    /* a missing directory is not a problem */
    o.workflows_dir = "/nonexistent/baton/workflows";
    set = load_ok(cfg, &o);
    bt_workflows_free(set);
    bt_test_rmdir(dir);
    bt_config_free(cfg);
}

/* ---- personas ---- */

static void test_personas(void **state)
{
    (void)state;
    bt_config *cfg = config_from("agents:\n"
                                 "  claude: {type: replay, file: x.jsonl}\n"
                                 "  codex: {type: replay, file: x.jsonl}\n");
    char *pdir = bt_test_tmpdir("personas");
    put(pdir, "pair.md",
        "---\ntitle: Pair\nagent: codex\nrole: implement\n---\n\n"
        "You pair-program.\n");
    put(pdir, "ghost.md", "---\nagent: gemini\n---\nYou haunt.\n");
    put(pdir, "plain.md", "You are plain.\n");
    bt_workflows_opts o = {.workflows_dir = "", .personas_dir = pdir};
    bt_workflows *set = load_ok(cfg, &o);
    assert_int_equal(bt_workflows_persona_count(set), 30);
    const bt_persona *pp = bt_workflows_persona(set, "pair");
    assert_string_equal(pp->title, "Pair");
    assert_string_equal(pp->agent, "codex");
    assert_string_equal(pp->prompt, "You pair-program.");
    assert_false(pp->builtin);
    assert_string_equal(bt_workflows_persona(set, "plain")->title, "Plain");
    assert_string_equal(bt_workflows_persona(set, "Senior-Developer")->name, "senior_developer");

    bt_config_problems p = {0};
    const char *wf = "id: people\n"
                     "steps:\n"
                     "  - agent: senior_developer\n" /* 3: a persona named as agent */
                     "  - persona: pair\n"           /* 4: its agent: codex */
                     "  - persona: pair\n"           /* 5 */
                     "    agent: claude\n"           /* 6: explicit agent wins */
                     "  - persona: plain\n"          /* 7: first configured agent */
                     "    role: reviewer\n";
    assert_int_equal(add(set, cfg, "people.yaml", wf, &p), 0);
    const bt_workflow *w = bt_workflows_find(set, "people");
    assert_string_equal(w->steps[0].persona, "senior_developer");
    assert_string_equal(w->steps[0].agent, "claude");
    assert_string_equal(w->steps[0].role, "developer");
    assert_string_equal(w->steps[0].id, "developer");
    assert_string_equal(w->steps[1].agent, "codex");
    assert_string_equal(w->steps[1].id, "implement");
    assert_string_equal(w->steps[2].agent, "claude");
    assert_string_equal(w->steps[2].id, "implement-2");
    assert_string_equal(w->steps[3].persona, "plain");
    assert_string_equal(w->steps[3].agent, "claude");

    assert_int_equal(add(set, cfg, "g.yaml", "id: g\nsteps:\n  - persona: ghost\n", &p), BT_EINVAL);
    assert_at(&p, "persona ghost names agent 'gemini', which is not configured", 3, 14);
    bt_config_problems_free(&p);
    bt_workflows_free(set);
    bt_config_free(cfg);

    /* no agent configured: a user persona step is a problem */
    cfg = config_from("agents: {}\n");
    set = load_ok(cfg, &o);
    assert_int_equal(add(set, cfg, "n.yaml", "id: n\nsteps:\n  - persona: plain\n", &p), BT_EINVAL);
    assert_at(&p, "uses persona plain which names no agent and no agent is configured", 3, 14);
    bt_config_problems_free(&p);
    bt_workflows_free(set);

    /* a broken persona file is located */
    put(pdir, "broken.md", "---\ntitle: Broken\ncolour: red\n---\nbody\n");
    set = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_workflows_load(cfg, &o, &set, &p, &err), BT_EINVAL);
    assert_at(&p, "unknown key 'colour' in persona broken", 3, 1);
    bt_config_problems_free(&p);
    bt_test_rmdir(pdir);
    bt_config_free(cfg);
}

/* ---- ids, lookups, JSON ---- */

static void test_ids_and_forms(void **state)
{
    (void)state;
    bt_config *cfg = full_config();
    bt_workflows *set = load_ok(cfg, &no_dirs);
    bt_config_problems p = {0};
    /* seed 004's short form: agent + role; default ids; map-form inputs and outputs */
    const char *w = "id: short\n"
                    "max_iterations: 2\n"
                    "inputs:\n"
                    "  MODE: {type: enum, values: [fast, slow], default: fast}\n"
                    "steps:\n"
                    "  - agent: codex\n"
                    "    role: implement\n"
                    "    timeout: 1h30m\n"
                    "  - agent: codex\n"
                    "    role: implement\n"
                    "    retries: 2\n"
                    "  - agent: claude\n"
                    "    fallback: codex\n"
                    "    continue_on_error: true\n"
                    "  - command: make test\n"
                    "    timeout: 90\n"
                    "  - action: approval\n"
                    "    prompt: \"Ship {{ inputs.MODE }}?\"\n"
                    "outputs:\n"
                    "  LAST: \"{{ steps.claude.output }}\"\n";
    assert_int_equal(add(set, cfg, "short.yaml", w, &p), 0);
    const bt_workflow *s = bt_workflows_find(set, "short");
    assert_string_equal(s->steps[0].id, "implement");
    assert_int_equal(s->steps[0].timeout_ms, 5400000);
    assert_string_equal(s->steps[1].id, "implement-2");
    assert_int_equal(s->steps[1].retries, 2);
    assert_string_equal(s->steps[2].id, "claude");
    assert_string_equal(s->steps[2].fallback[0], "codex");
    assert_true(s->steps[2].continue_on_error);
    assert_string_equal(s->steps[3].id, "step-4");
    assert_int_equal(s->steps[3].action, BT_WF_SHELL);
    assert_string_equal(json_string_value(json_object_get(s->steps[3].inputs, "command")),
                        "make test");
    assert_int_equal(s->steps[3].timeout_ms, 90000);
    assert_int_equal(s->steps[4].action, BT_WF_APPROVAL);
    assert_non_null(json_object_get(s->steps[4].inputs, "prompt"));
    assert_string_equal(s->steps[4].pointer, "/steps/4");
    assert_string_equal(s->outputs[0].name, "LAST");
    assert_string_equal(s->inputs[0].name, "MODE");
    assert_string_equal(json_string_value(s->inputs[0].dflt), "fast");
    assert_null(bt_workflow_review_step(s));
    assert_int_equal(s->max_iterations, 2);
    assert_string_equal(s->version, "1");

    /* loose lookups: seed 001's workflow_type */
    assert_string_equal(bt_workflows_find(set, "feature_development")->id, "wf0");
    assert_string_equal(bt_workflows_find(set, "Feature Development")->id, "wf0");
    assert_string_equal(bt_workflows_find(set, "bug-fix")->id, "wf1");
    assert_string_equal(bt_workflows_find(set, "REVIEW_ONLY")->id, "review-only");
    assert_null(bt_workflows_find(set, "no such workflow"));

    /* structure: sub-workflow edges and personas */
    json_t *st = bt_workflows_structure(set);
    int seen = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(st, "edges"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "from")), "wf0") == 0 &&
            strcmp(json_string_value(json_object_get(e, "step")), "create-branch") == 0 &&
            strcmp(json_string_value(json_object_get(e, "to")), "wf3") == 0)
            seen = 1;
    }
    assert_true(seen);
    assert_int_equal(json_array_size(json_object_get(st, "personas")), 27);
    assert_int_equal(json_array_size(json_object_get(st, "workflows")), 27);
    json_decref(st);
    json_t *j = bt_workflow_to_json(bt_workflows_find(set, "default"));
    assert_true(json_is_true(json_object_get(j, "available")));
    assert_string_equal(json_string_value(json_object_get(j, "review_step")), "review");
    assert_int_equal(json_array_size(json_object_get(j, "agents")), 3);
    json_t *s0 = json_array_get(json_object_get(j, "steps"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "action")), "agent");
    assert_string_equal(json_string_value(json_object_get(s0, "agent")), "codex");
    json_decref(j);
    j = bt_persona_to_json(bt_workflows_persona(set, "technical_writer"));
    assert_string_equal(json_string_value(json_object_get(j, "title")), "Technical Writer");
    json_decref(j);

    /* the digest follows the text */
    assert_int_equal(add(set, cfg, "x.yaml", "id: x\nsteps:\n  - agent: codex\n", &p), 0);
    char d1[17];
    strcpy(d1, bt_workflows_find(set, "x")->digest);
    assert_int_equal(add(set, cfg, "x.yaml", "id: x\nsteps:\n  - agent: claude\n", &p), 0);
    assert_string_not_equal(d1, bt_workflows_find(set, "x")->digest);
    assert_int_equal(strspn(d1, "0123456789abcdef"), 16);
    bt_workflows_free(set);
    bt_config_free(cfg);
}

/* ---- suggestions ---- */

static void test_count_suggestions(void **state)
{
    (void)state;
    assert_int_equal(bt_workflow_count_suggestions(NULL), 0);
    assert_int_equal(bt_workflow_count_suggestions(""), 0);
    assert_int_equal(bt_workflow_count_suggestions("{\"suggestions\": [\"a\", \"b\"]}"), 2);
    assert_int_equal(bt_workflow_count_suggestions("{\"suggestions\": []}"), 0);
    assert_int_equal(bt_workflow_count_suggestions("{\"suggestions\": 4, \"summary\": \"x\"}"), 4);
    /* in prose, with a nested object before it and a list after it */
    assert_int_equal(bt_workflow_count_suggestions(
                         "Here is my review:\n{\"suggestions\": [{\"file\": \"a.c\", \"text\": "
                         "\"x {y}\"}, {\"file\": \"b.c\"}, {\"file\": \"c.c\"}], \"summary\": "
                         "\"ok\"}\n- extra bullet\n"),
                     3);
    /* fenced JSON wins over the bullets around it */
    assert_int_equal(bt_workflow_count_suggestions("- one\n- two\n```json\n{\"suggestions\": "
                                                   "[1]}\n```\n"),
                     1);
    assert_int_equal(bt_workflow_count_suggestions("Review done.\nSUGGESTIONS: 5\n- a\n"), 5);
    assert_int_equal(bt_workflow_count_suggestions("**Suggestions:** 2\n"), 2);
    assert_int_equal(bt_workflow_count_suggestions("suggestions: 0"), 0);
    assert_int_equal(bt_workflow_count_suggestions("LGTM"), 0);
    assert_int_equal(bt_workflow_count_suggestions("LGTM!\n\nNits:\n- rename x\n"), 0);
    assert_int_equal(bt_workflow_count_suggestions("Looks good to me."), 0);
    assert_int_equal(bt_workflow_count_suggestions("No issues found."), 0);
    /* "looks good, but" is not "nothing to change" */
    assert_int_equal(bt_workflow_count_suggestions("Looks good overall, but:\n- a\n- b\n- c\n"), 3);
    assert_int_equal(bt_workflow_count_suggestions("Findings:\n"
                                                   "- first\n"
                                                   "  - detail (nested, not counted)\n"
                                                   "* second\n"
                                                   "+ third\n"
                                                   "1. fourth\n"
                                                   "2) fifth\n"
                                                   "---\n"
                                                   "**bold line**\n"
                                                   "```\n- inside a code block\n```\n"),
                     5);
    assert_int_equal(bt_workflow_count_suggestions("Just prose, nothing listed."), 0);
}

/* ---- binding inputs ---- */

static void test_bind_inputs(void **state)
{
    (void)state;
    bt_config *cfg = full_config();
    bt_workflows *set = load_ok(cfg, &no_dirs);
    bt_config_problems p = {0};
    const char *w = "id: bind\n"
                    "inputs:\n"
                    "  - {name: BRANCH_NAME, type: string, required: true}\n"
                    "  - {name: BASE, default: main}\n"
                    "  - {name: MODE, type: enum, values: [fast, slow]}\n"
                    "  - {name: DRY, type: boolean}\n"
                    "  - {name: COUNT, type: integer}\n"
                    "  - {name: RATIO, type: number}\n"
                    "  - {name: ANY, type: string|boolean}\n"
                    "steps:\n  - run: \"true\"\n";
    assert_int_equal(add(set, cfg, "bind.yaml", w, &p), 0);
    const bt_workflow *b = bt_workflows_find(set, "bind");
    json_t *out = NULL;
    bt_error err = BT_ERROR_INIT;

    assert_int_equal(bt_workflow_bind_inputs(b, NULL, &out, &err), BT_EINVAL);
    assert_null(out);
    assert_string_equal(err.msg, "workflow bind needs input BRANCH_NAME (string)");

    json_t *g = json_pack("{ss ss ss si ss ss}", "BRANCH_NAME", "feature/x", "MODE", "slow", "DRY",
                          "true", "COUNT", 3, "RATIO", "0.5", "ANY", "true");
    assert_int_equal(bt_workflow_bind_inputs(b, g, &out, &err), 0);
    assert_string_equal(json_string_value(json_object_get(out, "BASE")), "main");
    assert_true(json_is_true(json_object_get(out, "DRY")));
    assert_int_equal(json_integer_value(json_object_get(out, "COUNT")), 3);
    assert_true(json_real_value(json_object_get(out, "RATIO")) == 0.5);
    assert_string_equal(json_string_value(json_object_get(out, "ANY")), "true"); /* string first */
    assert_int_equal(json_object_size(out), 7);
    json_decref(out);
    json_decref(g);

    g = json_pack("{ss si}", "BRANCH_NAME", "x", "COUNT", 1);
    assert_int_equal(bt_workflow_bind_inputs(b, g, &out, &err), 0);
    assert_true(json_is_null(json_object_get(out, "MODE"))); /* optional, absent */
    json_decref(out);
    json_decref(g);

    g = json_pack("{ss ss}", "BRANCH_NAME", "x", "MODE", "medium");
    assert_int_equal(bt_workflow_bind_inputs(b, g, &out, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "input MODE of workflow bind must be one of fast, slow"));
    json_decref(g);

    g = json_pack("{ss ss}", "BRANCH_NAME", "x", "COUNT", "three");
    assert_int_equal(bt_workflow_bind_inputs(b, g, &out, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "COUNT"));
    json_decref(g);

    g = json_pack("{ss ss}", "BRANCH_NAME", "x", "BRANCH_NAM", "y");
    assert_int_equal(bt_workflow_bind_inputs(b, g, &out, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "workflow bind has no input 'BRANCH_NAM'; did you mean "
                                    "'BRANCH_NAME'?"));
    json_decref(g);

    /* a number given for a string input (work item ids in YAML) is its text */
    g = json_pack("{si}", "BRANCH_NAME", 123);
    assert_int_equal(bt_workflow_bind_inputs(b, g, &out, &err), 0);
    assert_string_equal(json_string_value(json_object_get(out, "BRANCH_NAME")), "123");
    json_decref(out);
    json_decref(g);

    g = json_pack("[]");
    assert_int_equal(bt_workflow_bind_inputs(b, g, &out, &err), BT_EINVAL);
    json_decref(g);
    bt_workflows_free(set);
    bt_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_load),   cmocka_unit_test(test_builtins_missing_agents),
        cmocka_unit_test(test_seed001_example), cmocka_unit_test(test_problems_located),
        cmocka_unit_test(test_more_problems),   cmocka_unit_test(test_cross_workflow),
        cmocka_unit_test(test_dir_overrides),   cmocka_unit_test(test_personas),
        cmocka_unit_test(test_ids_and_forms),   cmocka_unit_test(test_count_suggestions),
        cmocka_unit_test(test_bind_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
