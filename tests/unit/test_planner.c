/*
 * test_planner.c - the dynamic planner (src/core/planner.c) and its workflow pieces
 * (planner: true, bt_workflows_compile): who may be planned (0.59 out, 0.6 in, too few
 * calls in, open breaker out, offline keeps local agents only), who plans, what the
 * planning prompt shows, and which replies become a workflow (JSON alone, fenced, in
 * prose) and which are refused with a reason a person can act on (not JSON, an unknown
 * agent, an agent under 0.6, too many steps, duplicate ids).
 *
 * Then the engine end to end (real loop, SQLite store, resilience wrapper, fake CLIs and
 * tests/fakes/llm_server.py as the openai-type planning agent): a valid plan runs exactly
 * its steps with its agents; a reply that is not JSON, a plan naming an unknown agent,
 * and a plan naming an agent whose recorded success rate is 0.40 all run `default`
 * instead with the reason stored on the run (and the 0.40 agent never reaches the
 * prompt); a task naming a workflow that does not exist is planned; a resumed run
 * follows its stored plan without asking again.
 */
#include "testutil.h"

#include "agents/agents.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "core/engine.h"
#include "core/planner.h"
#include "core/resilience.h"
#include "http/client.h"
#include "store/store.h"
#include "core/template.h"
#include "core/workflow.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

static bt_config *config_from(const char *yaml)
{
    bt_config *cfg = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_config_load_string("test.yaml", yaml, strlen(yaml), NULL, &cfg, &probs, &err) != 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("config: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    return cfg;
}

/* A health table the lookup answers from (what bt_resil_health_of would say). */
typedef struct row {
    const char *name;
    const char *type;
    int writes, local;
    const char *breaker;
    int64_t calls;
    double rate;
    int unbuilt;
} row;

typedef struct table {
    const row *rows;
    size_t n;
} table;

static int lookup(void *ud, const char *agent, bt_planner_agent *out, const char **why)
{
    const table *t = ud;
    for (size_t i = 0; i < t->n; i++) {
        const row *r = &t->rows[i];
        if (strcmp(r->name, agent) != 0)
            continue;
        if (r->unbuilt) {
            *why = "program not found";
            return BT_EUNAVAIL;
        }
        out->type = r->type;
        out->role = "";
        out->writes_workspace = r->writes;
        out->local = r->local;
        out->breaker = r->breaker ? r->breaker : "closed";
        out->usable = !r->breaker || strcmp(r->breaker, "open") != 0;
        out->calls = r->calls;
        out->success_rate = r->rate;
        out->p50_ms = r->calls ? 1500 : -1;
        return 0;
    }
    return BT_ENOENT;
}

static const char *const AGENTS_YAML = "agents:\n"
                                       "  codex: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  claude: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  borderline: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  slow: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  newbie: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  broken: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  llm: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  local-llm: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "  missing: {type: replay, file: /nonexistent/a.jsonl}\n"
                                       "workflows_dir: \"\"\n"
                                       "personas_dir: \"\"\n";

static const row ROWS[] = {
    {"codex", "cli", 1, 0, NULL, 20, 0.95, 0},    {"claude", "cli", 1, 0, "half_open", 10, 0.7, 0},
    {"borderline", "cli", 1, 0, NULL, 5, 0.6, 0}, /* exactly the threshold: kept */
    {"slow", "cli", 1, 0, NULL, 100, 0.59, 0},    /* just under: excluded */
    {"newbie", "cli", 1, 0, NULL, 2, 0.0, 0},     /* too few calls to judge: kept */
    {"broken", "cli", 1, 0, "open", 8, 0.0, 0},   /* breaker open: excluded */
    {"llm", "openai", 0, 0, NULL, 12, 0.9, 0},    {"local-llm", "ollama", 0, 1, NULL, 0, 1.0, 0},
    {"missing", "cli", 1, 0, NULL, 0, 1.0, 1}, /* not built */
};

typedef struct pfx {
    bt_config *cfg;
    table t;
    bt_planner_pool pool;
    bt_workflows *base;
} pfx;

static const char *const DYNAMIC_YAML = "metadata: {id: dynamic, name: Dynamic}\n"
                                        "planner: true\n"
                                        "max_iterations: 2\n"
                                        "stop: {max_suggestions: 1}\n";

static int setup(void **state)
{
    pfx *f = bt_xcalloc(1, sizeof *f);
    f->cfg = config_from(AGENTS_YAML);
    f->t.rows = ROWS;
    f->t.n = sizeof ROWS / sizeof ROWS[0];
    bt_planner_candidates(f->cfg, lookup, &f->t, 0, &f->pool);
    bt_workflows_opts wo = {.workflows_dir = "", .personas_dir = "", .no_builtin = true};
    bt_error err = BT_ERROR_INIT;
    if (bt_workflows_load(f->cfg, &wo, &f->base, NULL, &err) < 0)
        fail_msg("workflows: %s", err.msg);
    bt_config_problems probs = {0};
    if (bt_workflows_add_string(f->base, f->cfg, "dynamic.yaml", DYNAMIC_YAML, strlen(DYNAMIC_YAML),
                                &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("dynamic: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    pfx *f = *state;
    bt_planner_pool_clear(&f->pool);
    bt_workflows_free(f->base);
    bt_config_free(f->cfg);
    free(f);
    return 0;
}

static const bt_workflow *planned(pfx *f)
{
    const bt_workflow *w = bt_workflows_find(f->base, "dynamic");
    assert_non_null(w);
    return w;
}

static int is_candidate(const bt_planner_pool *p, const char *name)
{
    return bt_planner_pool_find(p, name) != NULL;
}

static const char *reason_of(const bt_planner_pool *p, const char *name)
{
    for (size_t i = 0; i < p->nexcl; i++)
        if (strcmp(p->excl[i].agent, name) == 0)
            return p->excl[i].reason;
    return NULL;
}

/* Parse reply; on success returns the compiled set (and the plan text in *plan). */
static bt_workflows *parse_ok(pfx *f, const char *reply, char **plan)
{
    bt_workflows *set = NULL;
    char *pl = NULL;
    bt_error err = BT_ERROR_INIT;
    if (bt_planner_parse(f->cfg, &f->pool, f->base, planned(f), reply, &pl, &set, &err) != 0)
        fail_msg("reply refused: %s\n--- reply:\n%s", err.msg, reply);
    assert_non_null(set);
    assert_int_equal(bt_workflows_count(set), 1);
    if (plan)
        *plan = pl;
    else
        free(pl);
    return set;
}

/* Parse reply expecting a refusal whose message contains every needle. */
static void parse_bad(pfx *f, const char *reply, const char *n1, const char *n2)
{
    bt_workflows *set = NULL;
    char *pl = NULL;
    bt_error err = BT_ERROR_INIT;
    int rc = bt_planner_parse(f->cfg, &f->pool, f->base, planned(f), reply, &pl, &set, &err);
    if (rc == 0)
        fail_msg("reply accepted but should not be:\n%s", reply);
    assert_null(set);
    assert_null(pl);
    if (n1 && !strstr(err.msg, n1))
        fail_msg("error '%s' does not mention '%s'", err.msg, n1);
    if (n2 && !strstr(err.msg, n2))
        fail_msg("error '%s' does not mention '%s'", err.msg, n2);
}

/* ---- candidates ---- */

static void test_candidates(void **state)
{
    pfx *f = *state;
    bt_planner_pool *p = &f->pool;
    assert_true(is_candidate(p, "codex"));
    assert_true(is_candidate(p, "claude")); /* half-open: its probe may go */
    assert_true(is_candidate(p, "borderline"));
    assert_true(is_candidate(p, "newbie"));
    assert_true(is_candidate(p, "llm"));
    assert_true(is_candidate(p, "local-llm"));
    assert_false(is_candidate(p, "slow"));
    assert_false(is_candidate(p, "broken"));
    assert_false(is_candidate(p, "missing"));
    assert_int_equal(p->ncand + p->nexcl, 9);
    assert_non_null(strstr(reason_of(p, "slow"), "success rate 0.59 is below 0.60"));
    assert_non_null(strstr(reason_of(p, "broken"), "circuit breaker open"));
    assert_non_null(strstr(reason_of(p, "missing"), "program not found"));
    assert_null(reason_of(p, "codex"));

    json_t *ex = bt_planner_excluded_json(p);
    assert_int_equal(json_array_size(ex), 3);
    assert_string_equal(bt_json_str(json_array_get(ex, 0), "agent", ""), "slow");
    json_decref(ex);

    /* offline: only local agents stay */
    bt_planner_pool off;
    bt_planner_candidates(f->cfg, lookup, &f->t, 1, &off);
    assert_int_equal(off.ncand, 1);
    assert_string_equal(off.cand[0].name, "local-llm");
    assert_non_null(strstr(reason_of(&off, "codex"), "offline"));
    bt_planner_pool_clear(&off);

    /* a higher bar from the configuration */
    bt_config *cfg = config_from("agents:\n"
                                 "  codex: {type: replay, file: /nonexistent/a.jsonl}\n"
                                 "  llm: {type: replay, file: /nonexistent/a.jsonl}\n"
                                 "planner: {min_success_rate: 0.92, min_calls: 1}\n");
    bt_planner_pool hi;
    bt_planner_candidates(cfg, lookup, &f->t, 0, &hi);
    assert_true(is_candidate(&hi, "codex"));
    assert_false(is_candidate(&hi, "llm"));
    assert_non_null(strstr(reason_of(&hi, "llm"), "0.90 is below 0.92"));
    bt_planner_pool_clear(&hi);
    bt_config_free(cfg);
}

static void test_choose(void **state)
{
    pfx *f = *state;
    /* text agents first (planning is text), then the best rate */
    assert_string_equal(bt_planner_choose(f->cfg, &f->pool), "llm");
    const char *fb[4];
    size_t n = bt_planner_fallbacks(&f->pool, "llm", fb, 4);
    assert_int_equal(n, 1);
    assert_string_equal(fb[0], "local-llm");

    /* planner.agent when it is a candidate, else the healthiest */
    bt_config *cfg = config_from("agents:\n"
                                 "  codex: {type: replay, file: /nonexistent/a.jsonl}\n"
                                 "  slow: {type: replay, file: /nonexistent/a.jsonl}\n"
                                 "planner: {agent: codex}\n");
    bt_planner_pool p;
    bt_planner_candidates(cfg, lookup, &f->t, 0, &p);
    assert_string_equal(bt_planner_choose(cfg, &p), "codex");
    bt_planner_pool_clear(&p);
    bt_config_free(cfg);
    cfg = config_from("agents:\n"
                      "  codex: {type: replay, file: /nonexistent/a.jsonl}\n"
                      "  slow: {type: replay, file: /nonexistent/a.jsonl}\n"
                      "planner: {agent: slow}\n");
    bt_planner_candidates(cfg, lookup, &f->t, 0, &p);
    assert_string_equal(bt_planner_choose(cfg, &p), "codex");
    bt_planner_pool_clear(&p);
    bt_config_free(cfg);

    /* no candidate at all */
    bt_planner_pool none;
    bt_planner_candidates(f->cfg, NULL, NULL, 0, &none);
    assert_int_equal(none.ncand, 0);
    assert_null(bt_planner_choose(f->cfg, &none));
    assert_non_null(strstr(reason_of(&none, "codex"), "cannot be used"));
    bt_planner_pool_clear(&none);
}

static void test_prompt(void **state)
{
    pfx *f = *state;
    char *pr = bt_planner_prompt(f->cfg, &f->pool, "Add a health endpoint", "GET /healthz");
    assert_non_null(strstr(pr, "Add a health endpoint"));
    assert_non_null(strstr(pr, "GET /healthz"));
    assert_non_null(strstr(pr, "- codex: type cli"));
    assert_non_null(strstr(pr, "success rate 0.95 over 20 recent calls"));
    assert_non_null(strstr(pr, "- llm: type openai"));
    assert_non_null(strstr(pr, "text only"));
    assert_non_null(strstr(pr, "median latency 1.5 s"));
    assert_non_null(strstr(pr, "- newbie:"));
    assert_non_null(strstr(pr, "not known yet"));
    assert_non_null(strstr(pr, "1 to 8 steps"));
    assert_non_null(strstr(pr, "{\"steps\":[{\"id\":\"implement\",\"role\":\"implementation\","
                               "\"agent\":\"codex\",\"prompt\":\"optional\"}]}"));
    /* excluded agents are never offered */
    assert_null(strstr(pr, "slow"));
    assert_null(strstr(pr, "broken"));
    assert_null(strstr(pr, "- missing"));
    free(pr);
}

/* ---- replies ---- */

static const char *const PLAN =
    "{\"steps\":[{\"id\":\"implement\",\"role\":\"implementation\",\"agent\":\"codex\"},"
    "{\"role\":\"review\",\"agent\":\"llm\",\"prompt\":\"Check the {{ error }} paths ${HOME}\"},"
    "{\"role\":\"refine\",\"agent\":\"borderline\"}]}";

static void test_parse_forms(void **state)
{
    pfx *f = *state;
    char *plan = NULL;
    bt_workflows *set = parse_ok(f, PLAN, &plan);
    const bt_workflow *w = bt_workflows_at(set, 0);
    assert_string_equal(w->id, "dynamic");
    assert_false(w->planned);
    assert_null(w->missing);
    assert_int_equal(w->max_iterations, 2); /* the planned workflow's settings */
    assert_int_equal(w->max_suggestions, 1);
    assert_int_equal(w->nsteps, 3);
    assert_string_equal(w->steps[0].id, "implement");
    assert_string_equal(w->steps[0].agent, "codex");
    assert_string_equal(w->steps[0].role, "implementation");
    assert_null(w->steps[0].prompt.src); /* the engine's default prompt for the role */
    assert_string_equal(w->steps[1].id, "review");
    assert_string_equal(w->steps[1].agent, "llm");
    assert_int_equal(w->steps[1].action, BT_WF_AGENT);
    assert_string_equal(w->steps[2].id, "refine");
    assert_string_equal(w->steps[2].agent, "borderline");
    assert_ptr_equal(bt_workflow_review_step(w), &w->steps[1]);
    /* the planner's own instructions are text, never template syntax */
    assert_non_null(w->steps[1].prompt.src);
    char *out = NULL;
    json_t *vars = json_pack("{s{ss ss} s{ss}}", "task", "title", "T", "body", "B", "previous",
                             "output", "earlier");
    bt_error err = BT_ERROR_INIT;
    if (bt_tmpl_render_string(w->steps[1].prompt.src, vars, &out, &err) != 0)
        fail_msg("render: %s", err.msg);
    assert_non_null(strstr(out, "Check the {{ error }} paths ${HOME}"));
    assert_non_null(strstr(out, "Task: T\nB"));
    assert_non_null(strstr(out, "earlier"));
    assert_non_null(strstr(out, "\"suggestions\""));
    free(out);
    json_decref(vars);
    json_t *sj = bt_planner_steps_json(w);
    assert_int_equal(json_array_size(sj), 3);
    assert_string_equal(bt_json_str(json_array_get(sj, 1), "agent", ""), "llm");
    json_decref(sj);
    bt_workflows_free(set);

    /* the stored plan compiles again to the same steps, without asking the health */
    bt_workflows *again = NULL;
    assert_int_equal(bt_planner_compile(f->cfg, f->base, planned(f), plan, &again, &err), 0);
    const bt_workflow *w2 = bt_workflows_at(again, 0);
    assert_int_equal(w2->nsteps, 3);
    assert_string_equal(w2->steps[1].id, "review");
    assert_string_equal(w2->steps[2].agent, "borderline");
    bt_workflows_free(again);
    free(plan);

    /* in a ```json fence, with prose around it */
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "Here is my plan for {the task}:\n\n```json\n%s\n```\nGood luck!", PLAN);
    set = parse_ok(f, sb.buf, NULL);
    assert_int_equal(bt_workflows_at(set, 0)->nsteps, 3);
    bt_workflows_free(set);
    bt_strbuf_reset(&sb);

    /* the first balanced object holding steps, inside prose (braces in strings too) */
    bt_strbuf_addf(&sb, "I considered {alternatives}. Plan: {\"steps\":[{\"role\":\"implement\","
                        "\"agent\":\"newbie\",\"prompt\":\"use } and { freely\"}]} That is all.");
    set = parse_ok(f, sb.buf, NULL);
    const bt_workflow *w3 = bt_workflows_at(set, 0);
    assert_int_equal(w3->nsteps, 1);
    assert_string_equal(w3->steps[0].id, "implement");
    assert_string_equal(w3->steps[0].agent, "newbie");
    assert_null(bt_workflow_review_step(w3));
    bt_workflows_free(set);
    bt_strbuf_release(&sb);

    /* ids default to the role, made id-safe and unique */
    set = parse_ok(f,
                   "{\"steps\":[{\"role\":\"Code Review!\",\"agent\":\"llm\"},"
                   "{\"role\":\"code review\",\"agent\":\"codex\"},"
                   "{\"role\":\"42\",\"agent\":\"codex\"}]}",
                   NULL);
    const bt_workflow *w4 = bt_workflows_at(set, 0);
    assert_string_equal(w4->steps[0].id, "code-review");
    assert_string_equal(w4->steps[1].id, "code-review-2");
    assert_string_equal(w4->steps[2].id, "step-42");
    assert_ptr_equal(bt_workflow_review_step(w4), &w4->steps[1]); /* the last review */
    bt_workflows_free(set);
}

static void test_parse_refused(void **state)
{
    pfx *f = *state;
    parse_bad(f, "not json at all", "planner reply is not JSON", "not json at all");
    parse_bad(f, "", "planner reply is not JSON", "empty");
    parse_bad(f, "[1, 2]", "planner reply is not JSON", "list");
    parse_bad(f, "{\"plan\": []}", "no \"steps\" list", NULL);
    parse_bad(f, "{\"steps\": []}", "no steps", NULL);
    parse_bad(f, "{\"steps\":[{\"role\":\"implement\",\"agent\":\"ghost\"}]}",
              "plan names agent 'ghost' which is not configured", "available: codex");
    parse_bad(f, "{\"steps\":[{\"role\":\"implement\",\"agent\":\"slow\"}]}",
              "plan assigns 'slow' whose success rate 0.59 is below 0.60", NULL);
    parse_bad(f, "{\"steps\":[{\"role\":\"implement\",\"agent\":\"broken\"}]}",
              "plan assigns 'broken'", "circuit breaker open");
    parse_bad(f, "{\"steps\":[{\"role\":\"\",\"agent\":\"codex\"}]}", "step 1 has no role", NULL);
    parse_bad(f, "{\"steps\":[{\"role\":\"x\"}]}", "step 1 names no agent", NULL);
    parse_bad(f,
              "{\"steps\":[{\"id\":\"a\",\"role\":\"x\",\"agent\":\"codex\"},"
              "{\"id\":\"a\",\"role\":\"y\",\"agent\":\"llm\"}]}",
              "two steps with id 'a'", NULL);
    parse_bad(f, "{\"steps\":[{\"id\":\"Bad Id\",\"role\":\"x\",\"agent\":\"codex\"}]}",
              "step 1 has id 'Bad Id'", "a-z, 0-9");
    parse_bad(f, "{\"steps\":[{\"role\":\"x\",\"agent\":\"codex\",\"prompt\":7}]}",
              "prompt that is not a string", NULL);
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addstr(&sb, "{\"steps\":[");
    for (int i = 0; i < 9; i++)
        bt_strbuf_addf(&sb, "%s{\"role\":\"r%d\",\"agent\":\"codex\"}", i ? "," : "", i);
    bt_strbuf_addstr(&sb, "]}");
    parse_bad(f, sb.buf, "plan has 9 steps; at most 8", "planner.max_steps");
    bt_strbuf_release(&sb);
}

/* ---- the workflow pieces ---- */

static void test_workflow_planner_key(void **state)
{
    pfx *f = *state;
    const bt_workflow *d = planned(f);
    assert_true(d->planned);
    assert_int_equal(d->nsteps, 0);
    assert_null(d->missing);
    json_t *j = bt_workflow_to_json(d);
    assert_true(json_is_true(json_object_get(j, "planned")));
    assert_true(json_is_true(json_object_get(j, "available")));
    json_decref(j);

    /* zero steps only for a planned workflow; a planned one has none of its own */
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    const char *y1 = "metadata: {id: nosteps}\n";
    assert_int_not_equal(
        bt_workflows_add_string(f->base, f->cfg, "y1", y1, strlen(y1), &probs, &err), 0);
    assert_non_null(strstr(err.msg, "no steps"));
    bt_config_problems_free(&probs);
    const char *y2 = "metadata: {id: both}\nplanner: true\nsteps: [{agent: codex}]\n";
    assert_int_not_equal(
        bt_workflows_add_string(f->base, f->cfg, "y2", y2, strlen(y2), &probs, &err), 0);
    assert_non_null(strstr(err.msg, "planner: true has no steps of its own"));
    bt_config_problems_free(&probs);
    const char *y3 = "metadata: {id: odd}\nplanner: yes please\n";
    assert_int_not_equal(
        bt_workflows_add_string(f->base, f->cfg, "y3", y3, strlen(y3), &probs, &err), 0);
    int found = 0;
    for (size_t i = 0; i < probs.len; i++)
        found |= strstr(probs.items[i].message, "planner must be true or false") != NULL;
    assert_true(found);
    bt_config_problems_free(&probs);

    /* the built-in dynamic workflow loads, planned, runnable without any agent */
    bt_config *bare = config_from("workflows_dir: \"\"\npersonas_dir: \"\"\n");
    bt_workflows *all = NULL;
    bt_workflows_opts wo = {.workflows_dir = "", .personas_dir = ""};
    if (bt_workflows_load(bare, &wo, &all, NULL, &err) != 0)
        fail_msg("built-ins: %s", err.msg);
    const bt_workflow *bd = bt_workflows_find(all, "dynamic");
    assert_non_null(bd);
    assert_true(bd->planned && bd->builtin);
    assert_null(bd->missing);
    assert_true(bd->max_iterations >= 1);
    bt_workflows_free(all);
    bt_config_free(bare);
}

static void test_compile(void **state)
{
    pfx *f = *state;
    /* a new set holding only the compiled workflow; base untouched */
    size_t before = bt_workflows_count(f->base);
    const char *y = "{\"metadata\": {\"id\": \"dynamic\"}, \"steps\": [{\"id\": \"a\", "
                    "\"agent\": \"codex\"}, {\"id\": \"b\", \"action\": \"execute-workflow\", "
                    "\"workflow\": \"helper\"}]}";
    const char *helper = "metadata: {id: helper}\nsteps: [{agent: llm}]\n";
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(
        bt_workflows_add_string(f->base, f->cfg, "helper", helper, strlen(helper), &probs, &err),
        0);
    before = bt_workflows_count(f->base);
    bt_workflows *set = NULL;
    if (bt_workflows_compile(f->base, f->cfg, "plan", y, strlen(y), &set, &probs, &err) != 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("compile: %s", err.msg);
    }
    assert_int_equal(bt_workflows_count(set), 1);
    const bt_workflow *w = bt_workflows_at(set, 0);
    assert_string_equal(w->id, "dynamic");
    assert_int_equal(w->nsteps, 2);
    assert_string_equal(w->steps[1].workflow, "helper");
    bt_workflows_free(set);
    assert_int_equal(bt_workflows_count(f->base), before);
    assert_true(bt_workflows_find(f->base, "dynamic")->planned); /* not replaced */

    /* the same rules as any workflow: unknown agents and targets are problems */
    const char *bad = "{\"metadata\": {\"id\": \"dynamic\"}, \"steps\": [{\"agent\": \"ghost\"}, "
                      "{\"action\": \"execute-workflow\", \"workflow\": \"nowhere\"}]}";
    assert_int_equal(
        bt_workflows_compile(f->base, f->cfg, "plan", bad, strlen(bad), &set, &probs, &err),
        BT_EINVAL);
    assert_null(set);
    assert_int_equal(probs.len, 2);
    bt_config_problems_free(&probs);
    /* without a base: built-in personas only, no targets */
    assert_int_equal(bt_workflows_compile(NULL, f->cfg, "plan", y, strlen(y), &set, &probs, &err),
                     BT_EINVAL);
    assert_non_null(strstr(err.msg, "unknown workflow 'helper'"));
    bt_config_problems_free(&probs);
}

/* ---------------------------------------------------------------------------------
 * The engine with the planner: a loop, a store, the fake LLM server and fake CLIs.
 */

typedef struct efx {
    uv_loop_t loop;
    uv_timer_t tick;
    char *dir, *ws;
    bt_test_fake fake;
    int port;
    bt_http_client *http;
    bt_store *s;
    bt_config *cfg;
    bt_agents *agents;
    bt_resil *rs;
    bt_workflows *wfs;
    bt_engine *eng;
} efx;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void wait_flag(efx *f, const int *flag, int64_t ms, const char *what)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (!*flag && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    if (!*flag)
        fail_msg("timed out after %lld ms waiting for %s", (long long)ms, what);
}

static int e_setup(void **state)
{
    efx *f = bt_xcalloc(1, sizeof *f);
    bt_test_fake_start(&f->fake, "llm_server.py");
    f->port = f->fake.port;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_new(&f->loop, NULL, &f->http, &err), 0);
    f->dir = bt_test_tmpdir("planner");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/ws", f->dir);
    f->ws = bt_strbuf_detach(&sb, NULL);
    assert_int_equal(mkdir(f->ws, 0755), 0);
    bt_strbuf_addf(&sb, "sqlite:%s/store.db", f->dir);
    if (bt_store_open(&f->loop, sb.buf, NULL, &f->s, &err))
        fail_msg("opening %s: %s", sb.buf, err.msg);
    bt_strbuf_release(&sb);
    *state = f;
    return 0;
}

static int e_teardown(void **state)
{
    efx *f = *state;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    for (int64_t end = bt_time_mono_ms() + 50; bt_time_mono_ms() < end;)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    bt_engine_free(f->eng);
    bt_resil_free(f->rs);
    bt_agents_free(f->agents);
    bt_workflows_free(f->wfs);
    uv_close((uv_handle_t *)&f->tick, NULL);
    bt_http_client_close(f->http);
    bt_store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_config_free(f->cfg);
    bt_test_fake_stop(&f->fake);
    free(f->ws);
    bt_test_rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- the fake server's control endpoints, through the loop ---- */

static json_t *ctl(efx *f, const char *method, const char *path, const char *body)
{
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", f->port);
    return bt_test_ctl(&f->loop, f->http, base, method, path, body);
}

/* The planning agent's next answer. */
static void script_reply(efx *f, const char *reply)
{
    json_t *b =
        json_pack("{ss s[{ss}]}", "path", "/v1/chat/completions", "actions", "reply", reply);
    char *t = bt_json_dumps(b);
    json_decref(ctl(f, "POST", "/_control/script", t));
    free(t);
    json_decref(b);
}

/* Every prompt the planning agent was sent, concatenated. */
static char *prompts_seen(efx *f, int *count)
{
    json_t *all = ctl(f, "GET", "/_control/requests", NULL);
    bt_strbuf sb = BT_STRBUF_INIT;
    *count = 0;
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        if (strcmp(bt_json_str(r, "path", ""), "/v1/chat/completions") != 0)
            continue;
        (*count)++;
        char *t = bt_json_dumps(json_object_get(r, "body"));
        bt_strbuf_addf(&sb, "%s\n", t);
        free(t);
    }
    json_decref(all);
    return bt_strbuf_detach(&sb, NULL);
}

/* ---- configuration, statistics and the engine ---- */

static void loaded_cb(void *ud, int rc, const bt_error *err)
{
    (void)err;
    int *flag = ud;
    *flag = rc == 0 ? 1 : -1;
}

static void stored_cb(void *ud, int rc, const bt_error *err)
{
    (void)err;
    int *flag = ud;
    *flag = rc == 0 ? 1 : -1;
}

static bt_agents *get_agents(void *ud)
{
    return ((efx *)ud)->agents;
}

/* Record calls of agent in the statistics window (before the wrapper loads it). */
static void seed_calls(efx *f, const char *agent, const char *outcomes)
{
    int64_t now = bt_time_wall_ms();
    for (size_t i = 0; outcomes[i]; i++) {
        int ok = outcomes[i] == 'S';
        bt_agent_call c = {.agent = (char *)agent,
                           .outcome = ok ? "success" : "failure",
                           .error_class = ok ? NULL : "permanent",
                           .duration_ms = 1000,
                           .at = now - 60000 + (int64_t)i * 1000};
        int done = 0;
        bt_store_agent_call_add(f->s, &c, stored_cb, &done);
        wait_flag(f, &done, 5000, "an agent call to be stored");
        assert_int_equal(done, 1);
    }
}

static void start_all(efx *f)
{
    const char *src = getenv("BATON_SOURCE_DIR");
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addf(&y,
                   "log: {level: error}\n"
                   "workflows_dir: \"\"\n"
                   "personas_dir: \"\"\n"
                   "agents:\n"
                   "  planner-llm: {type: openai, model: m1, api_key: k, base_url: "
                   "\"http://127.0.0.1:%d/v1\", local: true}\n",
                   f->port);
    static const char *const clis[] = {"coder", "checker", "slow", "codex", "gemini", "claude"};
    for (size_t i = 0; i < sizeof clis / sizeof clis[0]; i++)
        bt_strbuf_addf(&y,
                       "  %s: {type: cli, command: \"%s/tests/fakes/fake-agent\", args: [--as, "
                       "generic], local: true, role: %s}\n",
                       clis[i], src, i == 1 ? "review" : "implementation");
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_config_load_string("test.yaml", y.buf, y.len, NULL, &f->cfg, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("config: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    bt_strbuf_release(&y);
    bt_agent_env aenv = {.loop = &f->loop, .http = f->http, .cfg = f->cfg};
    f->agents = bt_agents_new(&aenv);
    bt_workflows_opts wo = {.workflows_dir = "", .personas_dir = ""};
    if (bt_workflows_load(f->cfg, &wo, &f->wfs, NULL, &err) < 0)
        fail_msg("workflows: %s", err.msg);
    bt_resil_env renv = {.loop = &f->loop, .agents = f->agents, .cfg = f->cfg, .store = f->s};
    if (bt_resil_new(&renv, &f->rs, &err) < 0)
        fail_msg("resilience: %s", err.msg);
    int loaded = 0;
    bt_resil_load(f->rs, loaded_cb, &loaded);
    wait_flag(f, &loaded, 5000, "the statistics to load");
    assert_int_equal(loaded, 1);
    bt_engine_env env = {.loop = &f->loop,
                         .store = f->s,
                         .cfg = f->cfg,
                         .workflows = f->wfs,
                         .agents = get_agents,
                         .resil = f->rs,
                         .ud = f};
    f->eng = bt_engine_new(&env);
}

/* ---- one run ---- */

typedef struct outcome {
    int done;
    char *status, *error, *run_id;
    json_t *result;  /* the engine's result JSON */
    json_t *planned; /* run.planned progress data, or NULL */
    json_t *failed;  /* run.plan_failed progress data, or NULL */
} outcome;

static void outcome_free(outcome *o)
{
    free(o->status);
    free(o->error);
    free(o->run_id);
    json_decref(o->result);
    json_decref(o->planned);
    json_decref(o->failed);
    memset(o, 0, sizeof *o);
}

static void on_done(bt_engine *e, const bt_engine_result *r, void *ud)
{
    (void)e;
    outcome *o = ud;
    o->done = 1;
    o->status = bt_xstrdup(r->status);
    o->error = r->error ? bt_xstrdup(r->error) : NULL;
    o->run_id = bt_xstrdup(r->run_id);
    o->result = json_deep_copy(r->json);
}

static void on_progress(bt_engine *e, const char *kind, const json_t *data, void *ud)
{
    (void)e;
    outcome *o = ud;
    if (strcmp(kind, "run.planned") == 0) {
        json_decref(o->planned);
        o->planned = json_deep_copy(data);
    } else if (strcmp(kind, "run.plan_failed") == 0) {
        json_decref(o->failed);
        o->failed = json_deep_copy(data);
    }
}

static void cb_create(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    (void)created, (void)err;
    bt_task **out = ud;
    assert_int_equal(rc, 0);
    *out = bt_task_dup(t);
}

static bt_task *new_task(efx *f, const char *title, const char *workflow)
{
    bt_task_input in = {.source = "cli",
                        .title = title,
                        .body = "Reply briefly.",
                        .workflow = workflow,
                        .priority = BT_PRIORITY_NONE,
                        .max_attempts = 1};
    bt_task *t = NULL;
    bt_store_task_create(f->s, &in, cb_create, &t);
    int64_t end = bt_time_mono_ms() + 5000;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    while (!t && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    assert_non_null(t);
    return t;
}

static void run_task(efx *f, const bt_task *t, outcome *o)
{
    bt_engine_run_opts ro = {
        .workspace = f->ws, .on_done = on_done, .on_progress = on_progress, .ud = o};
    bt_error err = BT_ERROR_INIT;
    if (bt_engine_start(f->eng, t, &ro, &err) != 0)
        fail_msg("engine start: %s", err.msg);
    wait_flag(f, &o->done, 60000, "the run to end");
}

/* The distinct step keys of the result and the agents that ran them: "key=agent,...". */
static char *steps_of(const outcome *o)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    json_t *d = json_object_get(o->result, "step_details");
    size_t i;
    json_t *s;
    json_array_foreach(d, i, s)
    {
        if (bt_json_int(s, "iteration", 1) != 1)
            continue;
        bt_strbuf_addf(&sb, "%s%s=%s", sb.len ? "," : "", bt_json_str(s, "step_key", "?"),
                       bt_json_str(s, "agent", "?"));
    }
    return bt_strbuf_detach(&sb, NULL);
}

typedef struct state_got {
    int done;
    json_t *state;
} state_got;

static void run_got(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    (void)err;
    state_got *g = ud;
    g->done = 1;
    g->state = rc == 0 && run ? json_deep_copy(run->state) : NULL;
}

static void run_made(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    (void)err;
    bt_run **out = ud;
    assert_int_equal(rc, 0);
    *out = bt_run_dup(run);
}

static json_t *run_state(efx *f, const char *run_id)
{
    state_got x = {0};
    bt_store_run_get(f->s, run_id, run_got, &x);
    wait_flag(f, &x.done, 5000, "the run row");
    return x.state;
}

static const char *const GOOD_PLAN =
    "Here is the plan:\n```json\n{\"steps\":[{\"id\":\"build\",\"role\":\"implementation\","
    "\"agent\":\"coder\"},{\"id\":\"check\",\"role\":\"review\",\"agent\":\"checker\"}]}\n```";

static void test_engine_plan_runs(void **state)
{
    efx *f = *state;
    start_all(f);
    script_reply(f, GOOD_PLAN);
    bt_task *t = new_task(f, "Add a health endpoint", "dynamic");
    outcome o = {0};
    run_task(f, t, &o);
    if (strcmp(o.status, "completed") != 0)
        fail_msg("run %s: %s", o.status, o.error ? o.error : "");
    char *steps = steps_of(&o);
    assert_string_equal(steps, "build=coder,check=checker"); /* exactly the plan */
    free(steps);
    assert_non_null(o.planned);
    assert_null(o.failed);
    assert_string_equal(bt_json_str(o.planned, "agent", ""), "planner-llm");
    json_t *ps = json_object_get(o.planned, "steps");
    assert_int_equal(json_array_size(ps), 2);
    assert_string_equal(bt_json_str(json_array_get(ps, 1), "agent", ""), "checker");
    assert_string_equal(bt_json_str(json_array_get(ps, 1), "role", ""), "review");
    /* the plan is stored on the run before its first step */
    json_t *st = run_state(f, o.run_id);
    assert_non_null(strstr(bt_json_str(st, "plan", ""), "\"agent\":\"coder\""));
    assert_null(json_object_get(st, "plan_error"));
    json_decref(st);
    int n = 0;
    char *seen = prompts_seen(f, &n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(seen, "Add a health endpoint"));
    assert_non_null(strstr(seen, "- coder: type cli"));
    free(seen);
    outcome_free(&o);
    bt_task_free(t);
}

/* A reply the plan cannot come from: the run takes default and says why. */
static void expect_default(efx *f, const char *reply, const char *workflow, const char *needle)
{
    json_decref(ctl(f, "POST", "/_control/reset", "{}"));
    script_reply(f, reply);
    bt_task *t = new_task(f, "Fix the login form", workflow);
    outcome o = {0};
    run_task(f, t, &o);
    if (strcmp(o.status, "completed") != 0)
        fail_msg("run %s: %s", o.status, o.error ? o.error : "");
    char *steps = steps_of(&o);
    assert_string_equal(steps, "implement=codex,review=gemini,refine=claude");
    free(steps);
    assert_null(o.planned);
    assert_non_null(o.failed);
    assert_string_equal(bt_json_str(o.failed, "workflow", ""), "default");
    const char *reason = bt_json_str(o.failed, "reason", "");
    if (!strstr(reason, needle))
        fail_msg("plan_failed reason '%s' does not mention '%s'", reason, needle);
    json_t *st = run_state(f, o.run_id);
    assert_string_equal(bt_json_str(st, "plan_error", ""), reason);
    assert_string_equal(bt_json_str(st, "plan_workflow", ""), "default");
    json_decref(st);
    outcome_free(&o);
    bt_task_free(t);
}

static void test_engine_bad_plans_fall_back(void **state)
{
    efx *f = *state;
    start_all(f);
    expect_default(f, "not json at all", "dynamic", "planner reply is not JSON");
    expect_default(f, "{\"steps\":[{\"role\":\"implementation\",\"agent\":\"ghost\"}]}", "dynamic",
                   "plan names agent 'ghost' which is not configured");
}

static void test_engine_low_rate_never_planned(void **state)
{
    efx *f = *state;
    seed_calls(f, "slow", "SFSFF"); /* 0.40 over 5 calls; its breaker stays closed */
    start_all(f);
    bt_planner_health h = {f->rs, f->agents};
    bt_planner_pool pool;
    bt_planner_candidates(f->cfg, bt_planner_resil_lookup, &h, 0, &pool);
    assert_null(bt_planner_pool_find(&pool, "slow"));
    assert_non_null(bt_planner_pool_find(&pool, "coder"));
    bt_planner_pool_clear(&pool);

    expect_default(f, "{\"steps\":[{\"role\":\"implementation\",\"agent\":\"slow\"}]}", "dynamic",
                   "plan assigns 'slow' whose success rate 0.40 is below 0.60");
    int n = 0;
    char *seen = prompts_seen(f, &n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(seen, "- coder:"));
    assert_null(strstr(seen, "slow")); /* never offered */
    free(seen);
}

static void test_engine_unknown_workflow_and_resume(void **state)
{
    efx *f = *state;
    start_all(f);
    /* a workflow that does not exist: the planner decides */
    script_reply(f, GOOD_PLAN);
    bt_task *t = new_task(f, "Route me", "no-such-workflow");
    outcome o = {0};
    run_task(f, t, &o);
    assert_string_equal(o.status, "completed");
    char *steps = steps_of(&o);
    assert_string_equal(steps, "build=coder,check=checker");
    free(steps);
    assert_string_equal(bt_json_str(o.planned, "why", ""), "no workflow named 'no-such-workflow'");
    json_t *st = run_state(f, o.run_id);
    assert_string_equal(bt_json_str(st, "plan_reason", ""), "no workflow named 'no-such-workflow'");
    json_decref(st);
    outcome_free(&o);
    bt_task_free(t);

    /* a run killed after planning resumes with its stored plan, without asking again */
    json_decref(ctl(f, "POST", "/_control/reset", "{}"));
    t = new_task(f, "Resume me", "dynamic");
    json_t *state0 = json_pack("{ss si sb ss s{} ss}", "workflow", "dynamic", "max_iterations", 1,
                               "offline", 0, "workspace", f->ws, "inputs", "plan",
                               "{\"steps\":[{\"id\":\"only\",\"role\":\"implementation\","
                               "\"agent\":\"checker\"}]}");
    bt_run *made = NULL;
    bt_store_run_create(f->s, t->id, "dynamic", "1.0.0", state0, run_made, &made);
    uv_timer_start(&f->tick, on_tick, 5, 5);
    for (int64_t end = bt_time_mono_ms() + 5000; !made && bt_time_mono_ms() < end;)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    assert_non_null(made);
    json_decref(state0);
    run_task(f, t, &o);
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.run_id, made->id);
    steps = steps_of(&o);
    assert_string_equal(steps, "only=checker");
    free(steps);
    assert_null(o.planned);
    assert_null(o.failed);
    int n = 0;
    free(prompts_seen(f, &n));
    assert_int_equal(n, 0); /* the planner was not asked again */
    bt_run_free(made);
    outcome_free(&o);
    bt_task_free(t);
}

/* Wait until the fake server has received n planning requests. */
static void wait_asked(efx *f, int n)
{
    int64_t end = bt_time_mono_ms() + 10000;
    for (;;) {
        int got = 0;
        free(prompts_seen(f, &got));
        if (got >= n)
            return;
        if (bt_time_mono_ms() > end)
            fail_msg("the planner was asked %d times, want %d", got, n);
        uv_timer_start(&f->tick, on_tick, 5, 5);
        for (int64_t until = bt_time_mono_ms() + 20; bt_time_mono_ms() < until;)
            uv_run(&f->loop, UV_RUN_ONCE);
        uv_timer_stop(&f->tick);
    }
}

static void test_engine_cancel_and_stop_while_planning(void **state)
{
    efx *f = *state;
    start_all(f);
    /* cancel while the planning agent has not answered: the run ends cancelled at once */
    json_decref(ctl(f, "POST", "/_control/script",
                    "{\"path\":\"/v1/chat/completions\",\"actions\":[{\"hang\":true}]}"));
    bt_task *t = new_task(f, "Cancel me", "dynamic");
    outcome o = {0};
    bt_engine_run_opts ro = {
        .workspace = f->ws, .on_done = on_done, .on_progress = on_progress, .ud = &o};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_engine_start(f->eng, t, &ro, &err), 0);
    wait_asked(f, 1);
    int64_t t0 = bt_time_mono_ms();
    assert_int_equal(bt_engine_cancel(f->eng, t->id, "stop it"), 0);
    wait_flag(f, &o.done, 5000, "the cancelled run to end");
    assert_true(bt_time_mono_ms() - t0 < 3000);
    assert_string_equal(o.status, "cancelled");
    assert_null(o.planned);
    assert_null(o.failed);
    outcome_free(&o);
    bt_task_free(t);

    /* shutdown while planning leaves the run resumable; the next start plans again */
    json_decref(ctl(f, "POST", "/_control/reset", "{}"));
    json_decref(ctl(f, "POST", "/_control/script",
                    "{\"path\":\"/v1/chat/completions\",\"actions\":[{\"hang\":true}]}"));
    t = new_task(f, "Stop me", "dynamic");
    assert_int_equal(bt_engine_start(f->eng, t, &ro, &err), 0);
    wait_asked(f, 1);
    bt_engine_stop(f->eng);
    wait_flag(f, &o.done, 5000, "the interrupted run to end");
    assert_string_equal(o.status, "interrupted");
    char *first = bt_xstrdup(o.run_id);
    outcome_free(&o);
    json_decref(ctl(f, "POST", "/_control/reset", "{}"));
    script_reply(f, GOOD_PLAN);
    bt_engine_free(f->eng);
    bt_engine_env env = {.loop = &f->loop,
                         .store = f->s,
                         .cfg = f->cfg,
                         .workflows = f->wfs,
                         .agents = get_agents,
                         .resil = f->rs,
                         .ud = f};
    f->eng = bt_engine_new(&env);
    run_task(f, t, &o);
    assert_string_equal(o.status, "completed");
    assert_string_equal(o.run_id, first); /* the same run, now planned */
    char *steps = steps_of(&o);
    assert_string_equal(steps, "build=coder,check=checker");
    free(steps);
    assert_non_null(o.planned);
    free(first);
    outcome_free(&o);
    bt_task_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_candidates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_choose, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prompt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workflow_planner_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_plan_runs, e_setup, e_teardown),
        cmocka_unit_test_setup_teardown(test_engine_bad_plans_fall_back, e_setup, e_teardown),
        cmocka_unit_test_setup_teardown(test_engine_low_rate_never_planned, e_setup, e_teardown),
        cmocka_unit_test_setup_teardown(test_engine_unknown_workflow_and_resume, e_setup,
                                        e_teardown),
        cmocka_unit_test_setup_teardown(test_engine_cancel_and_stop_while_planning, e_setup,
                                        e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
