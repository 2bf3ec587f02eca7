/*
 * planner.c - the dynamic planner (planner.h): which agents a plan may use, which agent
 * writes it, the planning prompt, and turning the reply into a validated workflow.
 */
#include "core/planner.h"

#include "agents/agents.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "config/config.h"
#include "core/resilience.h"
#include "core/workflow.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MIN_RATE  0.6
#define DEFAULT_MIN_CALLS 3
#define DEFAULT_MAX_STEPS 8
#define MAX_ID_LEN        64
#define MAX_ROLE_LEN      200
#define MAX_PROMPT_LEN    16384
#define MAX_OBJ_TRIES     64 /* '{' positions tried when looking for the plan in prose */
#define QUOTE_LEN         80 /* characters of a reply quoted in an error */
#define MAX_CHAIN         4  /* the planning agent and up to 3 text agents after it */

static double min_rate_of(const bt_config *cfg)
{
    return cfg && cfg->planner.min_success_rate > 0 ? cfg->planner.min_success_rate
                                                    : DEFAULT_MIN_RATE;
}

static int64_t min_calls_of(const bt_config *cfg)
{
    return cfg && cfg->planner.min_calls >= 0 ? cfg->planner.min_calls : DEFAULT_MIN_CALLS;
}

static int64_t max_steps_of(const bt_config *cfg)
{
    return cfg && cfg->planner.max_steps > 0 ? cfg->planner.max_steps : DEFAULT_MAX_STEPS;
}

/* ---- candidates ---- */

static void exclude(bt_planner_pool *p, const char *agent, int low_rate, double rate,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void exclude(bt_planner_pool *p, const char *agent, int low_rate, double rate,
                    const char *fmt, ...)
{
    bt_planner_excluded *x = &p->excl[p->nexcl++];
    x->agent = bt_xstrdup(agent);
    bt_strbuf sb = BT_STRBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    x->reason = bt_strbuf_detach(&sb, NULL);
    x->low_rate = low_rate;
    x->success_rate = rate;
}

void bt_planner_candidates(const bt_config *cfg, bt_planner_lookup_fn lookup, void *ud, int offline,
                           bt_planner_pool *out)
{
    memset(out, 0, sizeof *out);
    out->min_rate = min_rate_of(cfg);
    size_t n = cfg ? cfg->agents.len : 0;
    out->cand = bt_xcalloc(n + 1, sizeof *out->cand);
    out->excl = bt_xcalloc(n + 1, sizeof *out->excl);
    int64_t min_calls = min_calls_of(cfg);
    for (size_t i = 0; i < n; i++) {
        const char *name = cfg->agents.items[i].name;
        bt_planner_agent a = {.type = "",
                              .role = "",
                              .breaker = "closed",
                              .usable = 1,
                              .success_rate = 1,
                              .p50_ms = -1};
        const char *why = NULL;
        if (!lookup || lookup(ud, name, &a, &why) < 0) {
            exclude(out, name, 0, 0, "cannot be used: %s", why ? why : "it is not available");
            continue;
        }
        if (offline && !a.local) {
            exclude(out, name, 0, a.success_rate,
                    "remote agent while offline (only local agents run)");
            continue;
        }
        if (a.breaker && strcmp(a.breaker, "open") == 0) {
            exclude(out, name, 0, a.success_rate, "circuit breaker open");
            continue;
        }
        if (!a.usable && !a.local) {
            exclude(out, name, 0, a.success_rate,
                    "remote agent while offline (only local agents run)");
            continue;
        }
        if (!a.usable) {
            exclude(out, name, 0, a.success_rate, "not usable now (circuit breaker %s)",
                    a.breaker ? a.breaker : "unknown");
            continue;
        }
        /* a tiny tolerance: 3 of 5 is exactly the 0.6 the rule allows */
        if (a.calls >= min_calls && a.success_rate + 1e-9 < out->min_rate) {
            exclude(out, name, 1, a.success_rate,
                    "success rate %.2f is below %.2f (%lld recent calls)", a.success_rate,
                    out->min_rate, (long long)a.calls);
            continue;
        }
        bt_planner_candidate *c = &out->cand[out->ncand++];
        c->name = bt_xstrdup(name);
        c->info = a;
    }
}

void bt_planner_pool_clear(bt_planner_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->ncand; i++)
        free(p->cand[i].name);
    for (size_t i = 0; i < p->nexcl; i++) {
        free(p->excl[i].agent);
        free(p->excl[i].reason);
    }
    free(p->cand);
    free(p->excl);
    memset(p, 0, sizeof *p);
}

const bt_planner_candidate *bt_planner_pool_find(const bt_planner_pool *p, const char *agent)
{
    for (size_t i = 0; agent && i < p->ncand; i++)
        if (strcmp(p->cand[i].name, agent) == 0)
            return &p->cand[i];
    return NULL;
}

static const bt_planner_excluded *excluded_find(const bt_planner_pool *p, const char *agent)
{
    for (size_t i = 0; agent && i < p->nexcl; i++)
        if (strcmp(p->excl[i].agent, agent) == 0)
            return &p->excl[i];
    return NULL;
}

json_t *bt_planner_excluded_json(const bt_planner_pool *p)
{
    json_t *a = json_array();
    for (size_t i = 0; i < p->nexcl; i++)
        json_array_append_new(
            a, json_pack("{ss ss}", "agent", p->excl[i].agent, "reason", p->excl[i].reason));
    return a;
}

/* A rate that does not trust a few calls: (successes + 1) / (calls + 2), so an agent
 * never called counts as 0.5 and one failure among two calls as 0.25. */
static double smoothed(const bt_planner_agent *a)
{
    double calls = a->calls > 0 ? (double)a->calls : 0;
    return (a->success_rate * calls + 1) / (calls + 2);
}

/* Does x plan better than y? Text agents first, then the better rate, more calls. */
static int better(const bt_planner_candidate *x, const bt_planner_candidate *y)
{
    if (!x->info.writes_workspace != !y->info.writes_workspace)
        return !x->info.writes_workspace;
    double rx = smoothed(&x->info), ry = smoothed(&y->info);
    if (fabs(rx - ry) > 1e-9)
        return rx > ry;
    return x->info.calls > y->info.calls;
}

const char *bt_planner_choose(const bt_config *cfg, const bt_planner_pool *p)
{
    if (cfg && cfg->planner.agent) {
        const bt_planner_candidate *c = bt_planner_pool_find(p, cfg->planner.agent);
        if (c)
            return c->name;
    }
    const bt_planner_candidate *best = NULL;
    for (size_t i = 0; i < p->ncand; i++)
        if (!best || better(&p->cand[i], best))
            best = &p->cand[i];
    return best ? best->name : NULL;
}

size_t bt_planner_fallbacks(const bt_planner_pool *p, const char *chosen, const char **names,
                            size_t max)
{
    size_t n = 0;
    while (n < max) {
        const bt_planner_candidate *best = NULL;
        for (size_t i = 0; i < p->ncand; i++) {
            const bt_planner_candidate *c = &p->cand[i];
            if (c->info.writes_workspace || (chosen && strcmp(c->name, chosen) == 0))
                continue;
            int taken = 0;
            for (size_t k = 0; k < n; k++)
                if (names[k] == c->name)
                    taken = 1;
            if (!taken && (!best || better(c, best)))
                best = c;
        }
        if (!best)
            break;
        names[n++] = best->name;
    }
    return n;
}

/* ---- the prompt ---- */

static void add_candidate_line(bt_strbuf *sb, const bt_planner_candidate *c, int64_t min_calls)
{
    const bt_planner_agent *a = &c->info;
    bt_strbuf_addf(sb, "- %s: type %s", c->name, a->type && *a->type ? a->type : "unknown");
    if (a->role && *a->role)
        bt_strbuf_addf(sb, ", role %s", a->role);
    bt_strbuf_addstr(sb, a->writes_workspace ? ", edits files in the workspace"
                                             : ", text only (cannot edit files)");
    if (a->calls >= min_calls && a->calls > 0)
        bt_strbuf_addf(sb, ", success rate %.2f over %lld recent calls", a->success_rate,
                       (long long)a->calls);
    else
        bt_strbuf_addf(sb, ", success rate not known yet (%lld recent calls)", (long long)a->calls);
    if (a->p50_ms >= 0)
        bt_strbuf_addf(sb, ", median latency %.1f s", (double)a->p50_ms / 1000.0);
    bt_strbuf_addch(sb, '\n');
}

char *bt_planner_prompt(const bt_config *cfg, const bt_planner_pool *p, const char *title,
                        const char *body)
{
    int64_t max_steps = max_steps_of(cfg);
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addstr(&sb, "You are the planner of baton, an orchestrator of AI coding agents. "
                          "Break the task below into a short sequence of steps and assign "
                          "each step to one of the available agents.\n\n");
    bt_strbuf_addf(&sb, "Task: %s\n", title && *title ? title : "(no title)");
    if (body && *body)
        bt_strbuf_addf(&sb, "\n%s\n", body);
    bt_strbuf_addstr(&sb, "\nAvailable agents (assign only these, by name):\n");
    for (size_t i = 0; i < p->ncand; i++)
        add_candidate_line(&sb, &p->cand[i], min_calls_of(cfg));
    bt_strbuf_addf(
        &sb,
        "\nRules:\n"
        "- Use 1 to %lld steps, in the order they run. Each step is given the task and the "
        "output of the step before it.\n"
        "- Work that changes files (implementing, fixing, writing tests or documentation in "
        "the repository) must go to an agent that edits files in the workspace; text-only "
        "agents can analyse, plan and review.\n"
        "- A typical plan is implement, then review, then refine. A step whose role contains "
        "\"review\" reports suggestions; the steps run again until the last review lists "
        "few enough of them.\n"
        "- Prefer agents with higher success rates and a role that matches the step.\n"
        "- \"role\" is required: a short word such as implementation, review, refine, test "
        "or documentation.\n"
        "- \"id\" is optional: lowercase letters, digits, '-' and '_', unique within the "
        "plan; it defaults to the role.\n"
        "- \"prompt\" is optional: extra instructions for that step only.\n"
        "\nReply with exactly one JSON object and nothing else, in this format:\n"
        "{\"steps\":[{\"id\":\"implement\",\"role\":\"implementation\",\"agent\":\"codex\","
        "\"prompt\":\"optional\"}]}\n",
        (long long)max_steps);
    return bt_strbuf_detach(&sb, NULL);
}

/* ---- finding the JSON in a reply ---- */

static void quote_reply(bt_strbuf *sb, const char *reply)
{
    size_t n = 0;
    bt_strbuf_addstr(sb, "; the reply begins \"");
    for (const char *c = reply; *c && n < QUOTE_LEN; c++, n++)
        bt_strbuf_addch(sb, (*c == '\n' || *c == '\r' || *c == '\t') ? ' ' : *c);
    bt_strbuf_addstr(sb, *reply && strlen(reply) > QUOTE_LEN ? "...\"" : "\"");
}

static json_t *load_object(const char *s, size_t len, bt_strbuf *first_err)
{
    json_error_t je;
    json_t *v = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
    if (v && json_is_object(v))
        return v;
    if (!first_err->len) {
        if (v)
            bt_strbuf_addf(first_err, "the JSON is %s, not an object",
                           json_is_array(v) ? "a list" : "a single value");
        else
            bt_strbuf_addf(first_err, "%s", je.text);
    }
    json_decref(v);
    return NULL;
}

/* The end of the balanced {...} that starts at s (one past its '}'), or NULL. */
static const char *balanced_end(const char *s)
{
    int depth = 0, in_str = 0;
    for (const char *c = s; *c; c++) {
        if (in_str) {
            if (*c == '\\' && c[1])
                c++;
            else if (*c == '"')
                in_str = 0;
            continue;
        }
        if (*c == '"')
            in_str = 1;
        else if (*c == '{')
            depth++;
        else if (*c == '}' && --depth == 0)
            return c + 1;
    }
    return NULL;
}

/* The reply's JSON object: the whole reply, a ``` fence, or the first balanced {...}
 * holding "steps" (else the first that is an object at all). */
static json_t *find_object(const char *reply, bt_error *err)
{
    bt_strbuf why = BT_STRBUF_INIT;
    const char *b = reply;
    while (isspace((unsigned char)*b))
        b++;
    size_t len = strlen(b);
    while (len > 0 && isspace((unsigned char)b[len - 1]))
        len--;
    json_t *v = len ? load_object(b, len, &why) : NULL;
    for (const char *f = strstr(reply, "```"); !v && f; f = strstr(f, "```")) {
        const char *start = f + 3;
        while (isalnum((unsigned char)*start) || *start == '-' || *start == '_')
            start++; /* ```json */
        const char *end = strstr(start, "```");
        if (!end)
            break;
        const char *x = start;
        while (x < end && isspace((unsigned char)*x))
            x++;
        if (x < end && *x == '{')
            v = load_object(x, (size_t)(end - x), &why);
        f = end + 3;
    }
    json_t *any = NULL;
    int tries = 0;
    for (const char *o = strchr(reply, '{'); !v && o && tries < MAX_OBJ_TRIES;
         o = strchr(o + 1, '{'), tries++) {
        const char *e = balanced_end(o);
        if (!e)
            break;
        json_t *x = load_object(o, (size_t)(e - o), &why);
        if (x && json_object_get(x, "steps")) {
            v = x;
        } else if (x && !any) {
            any = x;
        } else {
            json_decref(x);
        }
    }
    if (!v)
        v = any;
    else
        json_decref(any);
    if (!v) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "planner reply is not JSON: %s",
                       len == 0  ? "the reply is empty"
                       : why.len ? why.buf
                                 : "no JSON object");
        if (len)
            quote_reply(&m, reply);
        bt_errorf(err, BT_EINVAL, "%s", m.buf);
        bt_strbuf_release(&m);
    }
    bt_strbuf_release(&why);
    return v;
}

/* ---- validating the plan ---- */

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* The role made into an id: lower case, runs of other characters as one '-'. */
static char *id_from_role(const char *role)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    for (const char *c = role; *c && sb.len < MAX_ID_LEN - 8; c++) {
        char ch = (char)tolower((unsigned char)*c);
        if (id_char(ch) && ch != '-')
            bt_strbuf_addch(&sb, ch);
        else if (sb.len && sb.buf[sb.len - 1] != '-')
            bt_strbuf_addch(&sb, '-');
    }
    while (sb.len && sb.buf[sb.len - 1] == '-')
        bt_strbuf_setlen(&sb, sb.len - 1);
    if (!sb.len || !isalpha((unsigned char)sb.buf[0])) {
        bt_strbuf t = BT_STRBUF_INIT;
        bt_strbuf_addf(&t, "step%s%s", sb.len ? "-" : "", sb.len ? sb.buf : "");
        bt_strbuf_release(&sb);
        return bt_strbuf_detach(&t, NULL);
    }
    return bt_strbuf_detach(&sb, NULL);
}

static int id_used(const json_t *steps, const char *id)
{
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        if (strcmp(bt_json_str(s, "id", ""), id) == 0)
            return 1;
    }
    return 0;
}

static void candidate_names(const bt_planner_pool *p, bt_strbuf *sb)
{
    for (size_t i = 0; i < p->ncand; i++)
        bt_strbuf_addf(sb, "%s%s", i ? ", " : "", p->cand[i].name);
    if (!p->ncand)
        bt_strbuf_addstr(sb, "none");
}

/* The steps of the reply, checked and normalised into {"steps":[{id, role, agent,
 * prompt?}]}; with pool NULL (a stored plan) agents are only checked against cfg. */
static json_t *normalise(const bt_config *cfg, const bt_planner_pool *p, const json_t *root,
                         bt_error *err)
{
    const json_t *steps = json_object_get(root, "steps");
    if (!json_is_array(steps)) {
        bt_errorf(err, BT_EINVAL,
                  "planner reply has no \"steps\" list (expected {\"steps\":[{\"role\":..., "
                  "\"agent\":...}]})");
        return NULL;
    }
    size_t n = json_array_size(steps);
    int64_t max = max_steps_of(cfg);
    if (n == 0) {
        bt_errorf(err, BT_EINVAL, "plan has no steps (at least one is needed)");
        return NULL;
    }
    if ((int64_t)n > max) {
        bt_errorf(err, BT_EINVAL,
                  "plan has %zu steps; at most %lld are allowed (planner.max_steps)", n,
                  (long long)max);
        return NULL;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(steps, i);
        size_t no = i + 1;
        if (!json_is_object(s)) {
            bt_errorf(err, BT_EINVAL, "plan step %zu is not an object {\"role\", \"agent\"}", no);
            goto bad;
        }
        const json_t *role = json_object_get(s, "role");
        const json_t *agent = json_object_get(s, "agent");
        const json_t *id = json_object_get(s, "id");
        const json_t *prompt = json_object_get(s, "prompt");
        if (!json_is_string(role) || !*json_string_value(role)) {
            bt_errorf(err, BT_EINVAL, "plan step %zu has no role (a non-empty string)", no);
            goto bad;
        }
        if (strlen(json_string_value(role)) > MAX_ROLE_LEN) {
            bt_errorf(err, BT_EINVAL, "plan step %zu has a role longer than %d characters", no,
                      MAX_ROLE_LEN);
            goto bad;
        }
        if (!json_is_string(agent) || !*json_string_value(agent)) {
            bt_errorf(err, BT_EINVAL, "plan step %zu names no agent", no);
            goto bad;
        }
        const char *an = json_string_value(agent);
        if (!cfg || !bt_config_agent_find(cfg, an)) {
            bt_strbuf c = BT_STRBUF_INIT;
            if (p)
                candidate_names(p, &c);
            bt_errorf(err, BT_EINVAL, "plan names agent '%s' which is not configured%s%s%s", an,
                      p ? " (available: " : "", p ? c.buf : "", p ? ")" : "");
            bt_strbuf_release(&c);
            goto bad;
        }
        if (p && !bt_planner_pool_find(p, an)) {
            const bt_planner_excluded *x = excluded_find(p, an);
            bt_strbuf c = BT_STRBUF_INIT;
            candidate_names(p, &c);
            if (x && x->low_rate)
                bt_errorf(err, BT_EINVAL,
                          "plan assigns '%s' whose success rate %.2f is below %.2f "
                          "(available: %s)",
                          an, x->success_rate, p->min_rate, c.buf);
            else
                bt_errorf(err, BT_EINVAL,
                          "plan assigns '%s', which is excluded: %s (available: %s)", an,
                          x ? x->reason : "not a candidate", c.buf);
            bt_strbuf_release(&c);
            goto bad;
        }
        if (prompt && !json_is_null(prompt) && !json_is_string(prompt)) {
            bt_errorf(err, BT_EINVAL, "plan step %zu has a prompt that is not a string", no);
            goto bad;
        }
        if (json_is_string(prompt) && strlen(json_string_value(prompt)) > MAX_PROMPT_LEN) {
            bt_errorf(err, BT_EINVAL, "plan step %zu has a prompt longer than %d bytes", no,
                      MAX_PROMPT_LEN);
            goto bad;
        }
        char *sid = NULL;
        if (id && !json_is_null(id)) {
            const char *iv = json_is_string(id) ? json_string_value(id) : NULL;
            int ok = iv && *iv && strlen(iv) <= MAX_ID_LEN;
            for (const char *c = iv; ok && *c; c++)
                ok = id_char(*c);
            if (!ok) {
                bt_errorf(err, BT_EINVAL,
                          "plan step %zu has id %s%s%s: ids are 1 to %d of a-z, 0-9, '_' and '-'",
                          no, iv ? "'" : "", iv ? iv : "that is not a string", iv ? "'" : "",
                          MAX_ID_LEN);
                goto bad;
            }
            if (id_used(out, iv)) {
                bt_errorf(err, BT_EINVAL, "plan has two steps with id '%s'; each needs its own",
                          iv);
                goto bad;
            }
            sid = bt_xstrdup(iv);
        } else {
            char *base = id_from_role(json_string_value(role));
            sid = bt_xstrdup(base);
            for (int k = 2; id_used(out, sid) || id_used(steps, sid); k++) {
                bt_strbuf t = BT_STRBUF_INIT;
                bt_strbuf_addf(&t, "%s-%d", base, k);
                free(sid);
                sid = bt_strbuf_detach(&t, NULL);
            }
            free(base);
        }
        json_t *ns =
            json_pack("{ss ss ss}", "id", sid, "role", json_string_value(role), "agent", an);
        if (json_is_string(prompt) && *json_string_value(prompt))
            json_object_set(ns, "prompt", (json_t *)prompt);
        json_array_append_new(out, ns);
        free(sid);
    }
    return json_pack("{so}", "steps", out);
bad:
    json_decref(out);
    return NULL;
}

/* ---- building the workflow ---- */

static int is_review_role(const char *role)
{
    for (const char *c = role; *c; c++)
        if (strncasecmp(c, "review", 6) == 0)
            return 1;
    return 0;
}

/* Text placed in a template as it is: "{{" and "${" cannot start an expression. */
static void add_literal(bt_strbuf *sb, const char *s)
{
    for (const char *c = s; *c; c++) {
        if (c[0] == '{' && c[1] == '{') {
            bt_strbuf_addstr(sb, "{{ \"{{\" }}");
            c++;
        } else if (c[0] == '$' && c[1] == '{') {
            bt_strbuf_addstr(sb, "$${");
            c++;
        } else {
            bt_strbuf_addch(sb, *c);
        }
    }
}

/* The prompt template of a planned step with instructions of its own. */
static char *step_prompt(const json_t *st, const char *review_id)
{
    const char *role = bt_json_str(st, "role", "");
    const char *id = bt_json_str(st, "id", "");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addstr(&sb, "Task: {{ task.title }}\n{{ task.body }}\n\nYour role in this plan: ");
    add_literal(&sb, role);
    bt_strbuf_addstr(&sb, ".\n");
    add_literal(&sb, bt_json_str(st, "prompt", ""));
    bt_strbuf_addstr(&sb, "\n\nOutput of the previous step (empty for the first step):\n"
                          "{{ previous.output }}\n");
    if (review_id && strcmp(review_id, id) == 0)
        bt_strbuf_addstr(&sb, "\nReply with a JSON object {\"suggestions\": [\"...\"]} listing "
                              "each concrete change still needed (an empty list when there is "
                              "nothing left to change), followed by any explanation.\n");
    else if (review_id)
        bt_strbuf_addf(&sb,
                       "\nThe last review (empty on the first iteration):\n"
                       "{{ steps.%s.output }}\n",
                       review_id);
    return bt_strbuf_detach(&sb, NULL);
}

static int build(const bt_config *cfg, const bt_workflows *base, const bt_workflow *planned,
                 const json_t *plan, bt_workflows **out, bt_error *err)
{
    const json_t *steps = json_object_get(plan, "steps");
    const char *review_id = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        if (is_review_role(bt_json_str(s, "role", "")))
            review_id = bt_json_str(s, "id", NULL);
    }
    const char *wid = planned && planned->id ? planned->id : "dynamic";
    json_t *doc = json_object();
    json_object_set_new(doc, "metadata",
                        json_pack("{ss ss ss ss}", "id", wid, "name",
                                  planned && planned->name ? planned->name : wid, "version",
                                  planned && planned->version ? planned->version : "1",
                                  "description", "the steps the planner chose for this run"));
    json_object_set_new(
        doc, "max_iterations",
        json_integer(planned && planned->max_iterations > 0 ? planned->max_iterations : 1));
    json_t *stop = json_pack("{si}", "max_suggestions",
                             planned ? planned->max_suggestions : BT_WORKFLOW_DEFAULT_MAX_SUGG);
    if (review_id)
        json_object_set_new(stop, "review_step", json_string(review_id));
    json_object_set_new(doc, "stop", stop);
    json_t *wsteps = json_array();
    json_array_foreach(steps, i, s)
    {
        json_t *w = json_pack("{ss ss ss}", "id", bt_json_str(s, "id", ""), "agent",
                              bt_json_str(s, "agent", ""), "role", bt_json_str(s, "role", ""));
        if (json_is_string(json_object_get(s, "prompt"))) {
            char *pt = step_prompt(s, review_id);
            json_object_set_new(w, "prompt", json_string(pt));
            free(pt);
        }
        json_array_append_new(wsteps, w);
    }
    json_object_set_new(doc, "steps", wsteps);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    bt_config_problems probs = {0};
    int rc = bt_workflows_compile(base, cfg, "plan", text, strlen(text), out, &probs, err);
    free(text);
    bt_config_problems_free(&probs);
    if (rc < 0)
        bt_error_prefix(err, "the plan is not a valid workflow");
    return rc;
}

int bt_planner_parse(const bt_config *cfg, const bt_planner_pool *p, const bt_workflows *base,
                     const bt_workflow *planned, const char *reply, char **plan, bt_workflows **out,
                     bt_error *err)
{
    *plan = NULL;
    *out = NULL;
    json_t *root = find_object(reply ? reply : "", err);
    if (!root)
        return BT_EINVAL;
    json_t *norm = normalise(cfg, p, root, err);
    json_decref(root);
    if (!norm)
        return BT_EINVAL;
    int rc = build(cfg, base, planned, norm, out, err);
    if (rc == 0)
        *plan = json_dumps(norm, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(norm);
    return rc;
}

int bt_planner_compile(const bt_config *cfg, const bt_workflows *base, const bt_workflow *planned,
                       const char *plan, bt_workflows **out, bt_error *err)
{
    *out = NULL;
    json_error_t je;
    json_t *root = json_loads(plan ? plan : "", 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return bt_errorf(err, BT_EINVAL, "the stored plan is not a JSON object: %s", je.text);
    }
    json_t *norm = normalise(cfg, NULL, root, err);
    json_decref(root);
    if (!norm)
        return BT_EINVAL;
    int rc = build(cfg, base, planned, norm, out, err);
    json_decref(norm);
    return rc;
}

json_t *bt_planner_steps_json(const bt_workflow *w)
{
    json_t *a = json_array();
    for (size_t i = 0; w && i < w->nsteps; i++) {
        const bt_wf_step *st = &w->steps[i];
        json_array_append_new(
            a, json_pack("{ss ss* ss*}", "id", st->id, "role", st->role, "agent", st->agent));
    }
    return a;
}

/* ---- asking for a plan on the loop ---- */

int bt_planner_resil_lookup(void *ud, const char *agent, bt_planner_agent *out, const char **why)
{
    const bt_planner_health *h = ud;
    int i = h->agents ? bt_agents_index(h->agents, agent) : -1;
    bt_agent *a = h->agents ? bt_agents_find(h->agents, agent) : NULL;
    if (!a) {
        *why = i >= 0 && bt_agents_error(h->agents, (size_t)i)
                   ? bt_agents_error(h->agents, (size_t)i)
                   : "the agent is not built";
        return BT_EUNAVAIL;
    }
    bt_resil_health rh;
    if (!h->resil || bt_resil_health_of(h->resil, agent, &rh) < 0) {
        *why = "the resilience layer does not know it";
        return BT_ENOENT;
    }
    out->type = bt_agent_kind(a);
    out->role = bt_agent_role(a);
    out->writes_workspace = bt_agent_writes_workspace(a);
    out->local = bt_agent_is_local(a);
    out->breaker = rh.breaker;
    out->usable = rh.usable;
    out->calls = rh.calls;
    out->success_rate = rh.success_rate;
    out->p50_ms = -1;
    json_t *j = bt_resil_agent_json(h->resil, agent);
    json_t *p50 =
        json_object_get(json_object_get(json_object_get(j, "stats"), "latency_ms"), "p50");
    if (json_is_number(p50))
        out->p50_ms = (int64_t)json_number_value(p50);
    json_decref(j);
    return 0;
}

struct bt_planner_run {
    bt_planner_pool pool;
    json_t *excluded;
    const bt_config *cfg;
    const bt_workflows *base;
    const bt_workflow *planned;
    char *chosen;
    char *prompt, *workspace; /* kept until the call ends (it may wait in a queue) */
    bt_resil_call *call;
    int cancelled;
    bt_planner_done_fn on_done;
    void *ud;
};

static void run_free(bt_planner_run *pr)
{
    bt_planner_pool_clear(&pr->pool);
    json_decref(pr->excluded);
    free(pr->chosen);
    free(pr->prompt);
    free(pr->workspace);
    free(pr);
}

static void on_plan_reply(const bt_resil_result *res, void *ud)
{
    bt_planner_run *pr = ud;
    pr->call = NULL;
    bt_planner_outcome o = {.agent = res->agent ? res->agent : pr->chosen,
                            .excluded = pr->excluded};
    bt_strbuf why = BT_STRBUF_INIT;
    char *plan = NULL;
    if (pr->cancelled || res->error_class == BT_AGENT_CANCELLED) {
        o.cancelled = 1;
        o.reason = "planning was cancelled";
    } else if (!res->success) {
        bt_strbuf_addf(&why, "the planning agent failed: %s",
                       res->error && *res->error ? res->error : "no answer");
        o.reason = why.buf;
    } else {
        bt_error err = BT_ERROR_INIT;
        const char *text =
            res->agent_result && res->agent_result->output ? res->agent_result->output : "";
        if (bt_planner_parse(pr->cfg, &pr->pool, pr->base, pr->planned, text, &plan, &o.set,
                             &err) == 0) {
            o.ok = 1;
            o.plan = plan;
        } else {
            bt_strbuf_addstr(&why, err.msg);
            o.reason = why.buf;
        }
    }
    pr->on_done(&o, pr->ud);
    bt_strbuf_release(&why);
    free(plan);
    run_free(pr);
}

int bt_planner_start(const bt_planner_request *rq, bt_planner_run **run, bt_error *err)
{
    if (run)
        *run = NULL;
    if (!rq || !rq->resil || !rq->cfg || !rq->on_done)
        return bt_errorf(err, BT_EINVAL,
                         "planning needs the resilience layer, a configuration "
                         "and on_done");
    bt_planner_run *pr = bt_xcalloc(1, sizeof *pr);
    bt_planner_health h = {rq->resil, rq->agents};
    bt_planner_candidates(rq->cfg, bt_planner_resil_lookup, &h, rq->offline, &pr->pool);
    pr->excluded = bt_planner_excluded_json(&pr->pool);
    const char *who = bt_planner_choose(rq->cfg, &pr->pool);
    if (!who) {
        bt_strbuf m = BT_STRBUF_INIT;
        for (size_t i = 0; i < pr->pool.nexcl; i++)
            bt_strbuf_addf(&m, "%s%s: %s", i ? "; " : "", pr->pool.excl[i].agent,
                           pr->pool.excl[i].reason);
        int rc = bt_errorf(err, BT_EUNAVAIL, "no agent can plan: %s",
                           pr->pool.nexcl ? m.buf : "no agent is configured");
        bt_strbuf_release(&m);
        run_free(pr);
        return rc;
    }
    pr->chosen = bt_xstrdup(who);
    pr->cfg = rq->cfg;
    pr->base = rq->base;
    pr->planned = rq->planned;
    pr->on_done = rq->on_done;
    pr->ud = rq->ud;
    const char *chain[MAX_CHAIN];
    chain[0] = who;
    size_t n = 1 + bt_planner_fallbacks(&pr->pool, who, chain + 1, MAX_CHAIN - 1);
    pr->prompt = bt_planner_prompt(rq->cfg, &pr->pool, rq->title, rq->body);
    pr->workspace = rq->workspace ? bt_xstrdup(rq->workspace) : NULL;
    bt_resil_request r = {
        .chain = chain,
        .nchain = n,
        .agent = {.prompt = pr->prompt,
                  .workspace = pr->workspace,
                  .timeout_ms = rq->cfg->planner.timeout_ms},
        .task_id = rq->task_id,
        .run_id = rq->run_id,
        .on_done = on_plan_reply,
        .ud = pr,
    };
    int rc = bt_resil_call_start(rq->resil, &r, &pr->call, err);
    if (rc < 0) {
        bt_error_prefix(err, "cannot ask %s for a plan", who);
        run_free(pr);
        return rc;
    }
    if (run)
        *run = pr;
    return 0;
}

void bt_planner_cancel(bt_planner_run *run)
{
    if (!run || run->cancelled)
        return;
    run->cancelled = 1;
    if (run->call)
        bt_resil_call_cancel(run->call);
}
