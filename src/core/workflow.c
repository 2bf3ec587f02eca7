/*
 * workflow.c - the workflow model (workflow.h, docs/workflows.md): parse workflow YAML
 * and persona Markdown, validate all of it against the configuration before anything
 * runs, and keep the resulting set.
 *
 * Loading happens in three passes so that every problem can be found in one go:
 *
 *   1. personas (built-in, then personas_dir), because steps resolve them;
 *   2. each workflow file on its own: structure, types, actions and their inputs,
 *      agents and personas, step ids, then every template (compiled, and each variable
 *      reference checked against the roots the engine provides, the declared inputs and
 *      the step ids);
 *   3. the final set together (later files replacing earlier ones with the same id):
 *      execute-workflow targets and their required inputs, the offline variant, cycles,
 *      nesting depth, and which built-ins are unavailable (directly or through a
 *      sub-workflow) because their agents are not configured.
 *
 * Positions come from the YAML loader's side table (bt_yaml_doc_pos); a template error
 * inside a value is moved to the line and column of the offending text in the file.
 */
#include "core/workflow.h"

#include "base/embed.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/path.h"
#include "base/str.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "base/yaml.h"
#include "core/template.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_ITERATIONS_LIMIT 100
#define MAX_RETRIES          10

static const char *const action_names[BT_WF__COUNT] = {
    "agent", "shell-command", "git-operation", "execute-workflow", "approval", "http",
};

static const char *const top_keys[] = {
    "metadata", "id",      "name",   "version", "type",    "description", "max_iterations",
    "stop",     "offline", "inputs", "steps",   "outputs", "planner"};
static const char *const meta_keys[] = {"id", "name", "version", "type", "description"};
static const char *const stop_keys[] = {"review_step", "max_suggestions"};
static const char *const step_keys[] = {"id",
                                        "name",
                                        "description",
                                        "action",
                                        "agent",
                                        "role",
                                        "persona",
                                        "prompt",
                                        "fallback",
                                        "inputs",
                                        "workflow",
                                        "command",
                                        "run",
                                        "when",
                                        "timeout",
                                        "retries",
                                        "continue_on_error",
                                        "review",
                                        "locks"};
static const char *const param_keys[] = {"name",    "type",   "required",
                                         "default", "values", "description"};
static const char *const output_keys[] = {"name", "value", "description"};
static const char *const type_names[] = {"string", "enum",   "boolean", "integer",
                                         "number", "object", "array"};

static const char *const shell_inputs[] = {"command", "env", "workdir"};
static const char *const git_inputs[] = {"operation", "branch", "base", "message",
                                         "remote",    "paths",  "stat", "workdir"};
static const char *const git_ops[] = {"branch", "checkout", "add",   "commit",
                                      "push",   "diff",     "status"};
static const char *const http_inputs[] = {"method", "url", "headers", "body", "expect"};
static const char *const http_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
static const char *const approval_inputs[] = {"prompt"};

/* Template roots the engine provides, and the fields the validator knows. */
static const char *const tmpl_roots[] = {"task",     "item",      "inputs",         "steps",
                                         "previous", "iteration", "max_iterations", "workflow",
                                         "run",      "workspace"};
static const char *const step_fields[] = {
    "output", "outputs",     "status",    "ok",        "agent",      "role",     "exit_code",
    "error",  "suggestions", "iteration", "tokens_in", "tokens_out", "cost_usd", "duration_ms"};
static const char *const task_fields[] = {"id",     "identifier", "title",  "body",
                                          "labels", "project",    "source", "external_id",
                                          "meta",   "workflow",   "url"};
static const char *const previous_fields[] = {"output", "step", "agent", "status"};
static const char *const workflow_fields[] = {"id", "name", "version"};
static const char *const run_fields[] = {"id", "iteration"};

const char *bt_wf_action_name(bt_wf_action a)
{
    return (unsigned)a < BT_WF__COUNT ? action_names[a] : "unknown";
}

/* ---- the set ---- */

/* A workflow plus what the validator keeps about it. bt_workflow comes first, so a
 * bt_workflow pointer handed out is the item's address. */
typedef struct wf_item {
    bt_workflow w;
    bt_strvec need; /* agents it needs that are not configured (own + sub-workflows) */
    bool need_any;  /* a persona step needs an agent and none is configured */
} wf_item;

struct bt_workflows {
    BT_VEC(wf_item *) wfs;         /* sorted by id */
    BT_VEC(bt_persona *) personas; /* sorted by name */
};

/* ---- small helpers ---- */

static int name_index(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return (int)i;
    return -1;
}

static void add_list(bt_strbuf *sb, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bt_strbuf_addf(sb, "%s%s", i ? ", " : "", list[i]);
}

/* Case-insensitive equality with '-', '_' and ' ' all equal. */
static int loose_eq(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca == '-' || ca == ' ')
            ca = '_';
        if (cb == '-' || cb == ' ')
            cb = '_';
        if (tolower(ca) != tolower(cb))
            return 0;
        if (!ca)
            return 1;
    }
}

static int valid_name(const char *s)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 0;
    return 1;
}

/* bt_str_suggest, but a candidate that extends the word by a letter or two ("step" ->
 * "steps", not "stop") is the likelier typo. */
static const char *suggest(const char *word, const char *const *cand, size_t n)
{
    size_t wl = strlen(word);
    for (size_t i = 0; wl >= 3 && i < n; i++)
        if (cand[i] && strncmp(cand[i], word, wl) == 0 && strlen(cand[i]) <= wl + 2 &&
            strlen(cand[i]) > wl)
            return cand[i];
    return bt_str_suggest(word, cand, n);
}

/* A step id must be a single template path name: steps.ID.output. */
static int valid_step_id(const char *s)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return 0;
    return 1;
}

static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a mapping";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "true/false";
    default:
        return "empty";
    }
}

/* A scalar as text (new string), NULL for containers. */
static char *scalar_text(const json_t *v)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    if (json_is_string(v))
        bt_strbuf_addstr(&sb, json_string_value(v));
    else if (json_is_integer(v))
        bt_strbuf_addf(&sb, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        bt_strbuf_add_double(&sb, json_real_value(v));
    else if (json_is_boolean(v))
        bt_strbuf_addstr(&sb, json_is_true(v) ? "true" : "false");
    else
        return NULL;
    return bt_strbuf_detach(&sb, NULL);
}

/* Does text contain template syntax ({{ or an unescaped ${)? */
static int has_template(const char *s)
{
    if (strstr(s, "{{"))
        return 1;
    for (const char *p = strstr(s, "${"); p; p = strstr(p + 1, "${"))
        if (p == s || p[-1] != '$')
            return 1;
    return 0;
}

static char *ptr_join(const char *parent, const char *tok)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addstr(&sb, parent);
    bt_yaml_pointer_push(&sb, tok);
    return bt_strbuf_detach(&sb, NULL);
}

static char *ptr_index(const char *parent, size_t i)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/%zu", parent, i);
    return bt_strbuf_detach(&sb, NULL);
}

/* "/steps/2/prompt" -> "steps.2.prompt" (the problem's key); NULL for the root. */
static char *ptr_key(const char *ptr)
{
    if (!ptr || !*ptr)
        return NULL;
    char *k = bt_xstrdup(ptr[0] == '/' ? ptr + 1 : ptr);
    for (char *p = k; *p; p++)
        if (*p == '/')
            *p = '.';
    return k;
}

static char *digest16(const char *text, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *out = bt_xmalloc(17);
    if (EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8) {
        strcpy(out, "0000000000000000");
        return out;
    }
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return out;
}

/* "notes/review.yaml" -> "review" (new string). */
static char *base_name_noext(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    return bt_xstrndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
}

/* ---- freeing ---- */

static void text_clear(bt_wf_text *t)
{
    free(t->src);
    bt_tmpl_free(t->tmpl);
    t->src = NULL;
    t->tmpl = NULL;
}

static void param_clear(bt_wf_param *p)
{
    free(p->name);
    free(p->type);
    free(p->description);
    json_decref(p->dflt);
    json_decref(p->values);
    text_clear(&p->value);
}

static void step_clear(bt_wf_step *s)
{
    free(s->id);
    free(s->name);
    free(s->agent);
    free(s->persona);
    free(s->role);
    for (size_t i = 0; i < s->nfallback; i++)
        free(s->fallback[i]);
    free(s->fallback);
    for (size_t i = 0; i < s->nlocks; i++)
        free(s->locks[i]);
    free(s->locks);
    text_clear(&s->prompt);
    free(s->workflow);
    json_decref(s->inputs);
    text_clear(&s->when);
    free(s->pointer);
}

static void item_free(wf_item *it)
{
    if (!it)
        return;
    bt_workflow *w = &it->w;
    free(w->id);
    free(w->name);
    free(w->version);
    free(w->type);
    free(w->description);
    free(w->source);
    free(w->digest);
    free(w->review_step);
    free(w->offline);
    free(w->missing);
    for (size_t i = 0; i < w->ninputs; i++)
        param_clear(&w->inputs[i]);
    free(w->inputs);
    for (size_t i = 0; i < w->nsteps; i++)
        step_clear(&w->steps[i]);
    free(w->steps);
    for (size_t i = 0; i < w->noutputs; i++)
        param_clear(&w->outputs[i]);
    free(w->outputs);
    bt_strvec_clear(&it->need);
    free(it);
}

static void persona_free(bt_persona *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->title);
    free(p->agent);
    free(p->role);
    free(p->prompt);
    free(p->source);
    free(p);
}

void bt_workflows_free(bt_workflows *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->wfs.len; i++)
        item_free(set->wfs.items[i]);
    bt_vec_free(&set->wfs);
    for (size_t i = 0; i < set->personas.len; i++)
        persona_free(set->personas.items[i]);
    bt_vec_free(&set->personas);
    free(set);
}

/* ---- problems ---- */

/* One workflow source being loaded. */
typedef struct wf_src {
    wf_item *item;    /* owned until it moves into a set */
    bt_yaml_doc *doc; /* NULL for workflows already in a set */
    const char *text; /* the file's text (for positions inside values) */
    size_t len;
    char *owned_text;  /* text when read from a file */
    char *file;        /* name in problems */
    bool builtin;      /* from the embedded set */
    bool from_dir;     /* from workflows_dir: a missing id defaults to the file name */
    bool report;       /* problems are reported (false for workflows already in a set) */
    char **target_ptr; /* per step: pointer of its execute-workflow target, or NULL */
    size_t ntarget;
    bt_config_problems *probs;
    size_t nprobs; /* problems reported against this source */
} wf_src;

static void src_free(wf_src *s)
{
    if (!s)
        return;
    item_free(s->item);
    bt_yaml_doc_free(s->doc);
    free(s->owned_text);
    free(s->file);
    for (size_t i = 0; i < s->ntarget; i++)
        free(s->target_ptr[i]);
    free(s->target_ptr);
    free(s);
}

__attribute__((format(printf, 5, 6))) static void prob_at(wf_src *s, bt_yaml_pos p, const char *ptr,
                                                          const char *hint, const char *fmt, ...)
{
    if (!s->report)
        return;
    char msg[1500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *key = ptr_key(ptr);
    bt_config_problem_add(s->probs, s->file, p.line, p.column, key, msg, hint);
    free(key);
    s->nprobs++;
}

static bt_yaml_pos pos_of(const wf_src *s, const char *ptr, int at_key)
{
    bt_yaml_pos kp = {0, 0}, vp = {0, 0};
    if (s->doc)
        bt_yaml_doc_pos(s->doc, ptr, &kp, &vp);
    return at_key ? kp : vp;
}

/* A problem about the value (at_key 0) or the key (1) at ptr. */
__attribute__((format(printf, 5, 6))) static void prob(wf_src *s, const char *ptr, int at_key,
                                                       const char *hint, const char *fmt, ...)
{
    if (!s->report)
        return;
    char msg[1500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    prob_at(s, pos_of(s, ptr, at_key), ptr, hint, "%s", msg);
}

/* The start of 1-based line in text, or NULL. */
static const char *line_at(const char *text, size_t len, int line)
{
    const char *p = text, *end = text + len;
    for (int l = 1; l < line; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NULL;
        p = nl + 1;
    }
    return p;
}

/* Where line tl, column tc of the template text at ptr is in the file: for a block
 * scalar (| or >) the template's lines follow the indicator's line at the block's
 * indentation; for a quoted scalar the opening quote shifts the column by one. Folded
 * and multi-line flow scalars are approximate (their line breaks were folded). */
static bt_yaml_pos tmpl_pos(const wf_src *s, const char *ptr, int tl, int tc)
{
    bt_yaml_pos vp = pos_of(s, ptr, 0);
    if (tl <= 0 || tc <= 0 || vp.line <= 0 || vp.column <= 0 || !s->text)
        return vp;
    const char *end = s->text + s->len;
    const char *ls = line_at(s->text, s->len, vp.line);
    if (!ls || ls + vp.column - 1 >= end)
        return vp;
    const char *v = ls + vp.column - 1;
    bt_yaml_pos p = vp;
    if (*v == '|' || *v == '>') {
        const char *q = memchr(v, '\n', (size_t)(end - v));
        if (!q)
            return vp;
        int indent = -1;
        for (const char *r = q + 1; r < end;) {
            const char *e = memchr(r, '\n', (size_t)(end - r));
            if (!e)
                e = end;
            int ind = 0;
            while (r + ind < e && r[ind] == ' ')
                ind++;
            if (r + ind < e && r[ind] != '\r') {
                indent = ind;
                break;
            }
            r = e + 1;
        }
        if (indent < 0)
            return vp;
        p.line = vp.line + tl;
        p.column = indent + tc;
        return p;
    }
    int quoted = *v == '"' || *v == '\'';
    if (tl == 1) {
        p.column = vp.column + quoted + tc - 1;
    } else {
        p.line = vp.line + tl - 1;
        p.column = tc;
    }
    return p;
}

/* Report every key of obj not in keys, with a suggestion. */
static void check_keys(wf_src *s, const json_t *obj, const char *ptr, const char *const *keys,
                       size_t n, const char *where)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (name_index(k, keys, n) >= 0)
            continue;
        const char *sugg = suggest(k, keys, n);
        char *p = ptr_join(ptr, k);
        bt_strbuf hint = BT_STRBUF_INIT;
        bt_strbuf_addstr(&hint, "valid keys: ");
        add_list(&hint, keys, n);
        if (sugg)
            prob(s, p, 1, hint.buf, "unknown key '%s' in %s; did you mean '%s'?", k, where, sugg);
        else
            prob(s, p, 1, hint.buf, "unknown key '%s' in %s", k, where);
        bt_strbuf_release(&hint);
        free(p);
    }
}

/* The string at obj[key] (borrowed), NULL when absent; a value of another type is a
 * problem (numbers and booleans are accepted as their text when allow_scalar). */
static const char *get_str(wf_src *s, const json_t *obj, const char *ptr, const char *key,
                           const char *where, char **tmp, int allow_scalar)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return json_string_value(v);
    if (allow_scalar && !json_is_object(v) && !json_is_array(v)) {
        *tmp = scalar_text(v);
        return *tmp;
    }
    char *p = ptr_join(ptr, key);
    prob(s, p, 0, "write it as a quoted string", "%s of %s must be a string, not %s", key, where,
         kind_of(v));
    free(p);
    return NULL;
}

/* ---- personas ---- */

static int persona_cmp(const void *a, const void *b)
{
    return strcmp((*(bt_persona *const *)a)->name, (*(bt_persona *const *)b)->name);
}

static char *title_from_name(const char *name)
{
    char *t = bt_xstrdup(name);
    int start = 1;
    for (char *p = t; *p; p++) {
        if (*p == '_' || *p == '-') {
            *p = ' ';
            start = 1;
        } else if (start) {
            *p = (char)toupper((unsigned char)*p);
            start = 0;
        }
    }
    return t;
}

/* Problems in a persona file are reported against a pseudo source (no workflow). */
static void persona_prob(bt_config_problems *probs, const char *file, int line, int col,
                         const char *msg, const char *hint)
{
    bt_config_problem_add(probs, file, line, col, NULL, msg, hint);
}

/* Parse "---\nYAML\n---\nbody" (front matter optional). NULL when it has problems. */
static bt_persona *persona_parse(const char *name, const char *source, const char *text, size_t len,
                                 bool builtin, bt_config_problems *probs)
{
    const char *body = text, *end = text + len;
    bt_persona *p = bt_xcalloc(1, sizeof *p);
    p->name = bt_xstrdup(name);
    p->source = bt_xstrdup(source);
    p->builtin = builtin;
    int bad = 0;
    if (len >= 4 && strncmp(text, "---", 3) == 0 && (text[3] == '\n' || text[3] == '\r')) {
        const char *fm = memchr(text, '\n', len);
        fm = fm ? fm + 1 : end;
        const char *close = NULL, *after = end;
        for (const char *l = fm; l < end;) {
            const char *e = memchr(l, '\n', (size_t)(end - l));
            const char *le = e ? e : end;
            size_t n = (size_t)(le - l);
            if (n > 0 && l[n - 1] == '\r')
                n--;
            if (n == 3 && strncmp(l, "---", 3) == 0) {
                close = l;
                after = e ? e + 1 : end;
                break;
            }
            l = e ? e + 1 : end;
        }
        if (!close) {
            persona_prob(probs, source, 1, 1, "the front matter opened by '---' is never closed",
                         "end it with a line '---' before the prompt");
            persona_free(p);
            return NULL;
        }
        bt_yaml_doc *doc = NULL;
        bt_error e = BT_ERROR_INIT;
        if (bt_yaml_load_string(source, fm, (size_t)(close - fm), &doc, &e) < 0) {
            int l = 0, c = 0, off = 0;
            const char *m = e.msg;
            size_t sl = strlen(source);
            if (strncmp(m, source, sl) == 0 && m[sl] == ':' &&
                sscanf(m + sl + 1, "%d:%d: %n", &l, &c, &off) == 2)
                m += sl + 1 + off;
            persona_prob(probs, source, l ? l + 1 : 1, c ? c : 1, m,
                         "fix the YAML of the front matter");
            persona_free(p);
            return NULL;
        }
        json_t *root = bt_yaml_doc_root(doc);
        static const char *const keys[] = {"title", "agent", "role", "description"};
        if (json_is_object(root)) {
            const char *k;
            json_t *v;
            json_object_foreach(root, k, v)
            {
                char *ptr = ptr_join("", k);
                bt_yaml_pos kp = {0, 0}, vp = {0, 0};
                bt_yaml_doc_pos(doc, ptr, &kp, &vp);
                free(ptr);
                char msg[600];
                int idx = name_index(k, keys, COUNT(keys));
                if (idx < 0) {
                    const char *sugg = suggest(k, keys, COUNT(keys));
                    snprintf(msg, sizeof msg, "unknown key '%s' in persona %s%s%s%s", k, name,
                             sugg ? "; did you mean '" : "", sugg ? sugg : "", sugg ? "'?" : "");
                    persona_prob(probs, source, kp.line + 1, kp.column, msg,
                                 "valid keys: title, agent, role, description");
                    bad = 1;
                    continue;
                }
                if (!json_is_string(v)) {
                    snprintf(msg, sizeof msg, "%s of persona %s must be a string, not %s", k, name,
                             kind_of(v));
                    persona_prob(probs, source, vp.line + 1, vp.column, msg,
                                 "write it as a quoted string");
                    bad = 1;
                    continue;
                }
                char **slot = idx == 0   ? &p->title
                              : idx == 1 ? &p->agent
                              : idx == 2 ? &p->role
                                         : NULL;
                if (slot && *json_string_value(v))
                    *slot = bt_xstrdup(json_string_value(v));
            }
        } else if (!json_is_null(root)) {
            persona_prob(probs, source, 2, 1, "the front matter must be a mapping",
                         "write title:, agent:, role: and description: lines");
            bad = 1;
        }
        bt_yaml_doc_free(doc);
        body = after;
    }
    while (body < end && (*body == '\n' || *body == '\r' || *body == ' ' || *body == '\t'))
        body++;
    size_t blen = (size_t)(end - body);
    while (blen > 0 && isspace((unsigned char)body[blen - 1]))
        blen--;
    if (blen == 0 && !bad) {
        persona_prob(probs, source, 1, 1, "the persona has no prompt",
                     "write the role prompt as the Markdown body of the file");
        bad = 1;
    }
    if (bad) {
        persona_free(p);
        return NULL;
    }
    p->prompt = bt_xstrndup(body, blen);
    if (!p->title)
        p->title = title_from_name(name);
    return p;
}

static void persona_put(bt_workflows *set, bt_persona *p)
{
    for (size_t i = 0; i < set->personas.len; i++)
        if (strcmp(set->personas.items[i]->name, p->name) == 0) {
            persona_free(set->personas.items[i]);
            set->personas.items[i] = p;
            return;
        }
    bt_vec_push(&set->personas, p);
}

static void load_builtin_personas(bt_workflows *set, bt_config_problems *probs)
{
    size_t n = 0;
    const bt_embed_file *files = bt_embed_list(&n);
    for (size_t i = 0; i < n; i++) {
        const char *path = files[i].path;
        if (!bt_str_starts_with(path, "personas/") || !bt_str_ends_with(path, ".md") ||
            strchr(path + 9, '/'))
            continue;
        char *name = base_name_noext(path);
        bt_strbuf src = BT_STRBUF_INIT;
        bt_strbuf_addf(&src, "builtin:%s", path);
        bt_persona *p =
            persona_parse(name, src.buf, (const char *)files[i].data, files[i].len, true, probs);
        if (p)
            persona_put(set, p);
        bt_strbuf_release(&src);
        free(name);
    }
}

/* File names in dir ending with one of exts, sorted. 1 when dir does not exist. */
static int list_dir(const char *dir, const char *const *exts, size_t next, bt_strvec *out,
                    bt_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 1;
        return bt_errorf(err, BT_EIO, "cannot read the directory %s: %s", dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        for (size_t i = 0; i < next; i++)
            if (bt_str_ends_with(de->d_name, exts[i])) {
                bt_strvec_push(out, de->d_name);
                break;
            }
    }
    closedir(d);
    for (size_t i = 1; i < out->len; i++) /* insertion sort: directories are small */
        for (size_t j = i; j > 0 && strcmp(out->items[j - 1], out->items[j]) > 0; j--) {
            char *t = out->items[j];
            out->items[j] = out->items[j - 1];
            out->items[j - 1] = t;
        }
    return 0;
}

/* The embedded file with the same base name under prefix ("workflows/"), or NULL. */
static const bt_embed_file *builtin_twin(const char *prefix, const char *fname)
{
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s%s", prefix, fname);
    const bt_embed_file *f = bt_embed_find(p.buf);
    bt_strbuf_release(&p);
    return f;
}

static void load_persona_dir(bt_workflows *set, const char *dir, bt_config_problems *probs)
{
    static const char *const exts[] = {".md"};
    bt_strvec names = BT_STRVEC_INIT;
    bt_error e = BT_ERROR_INIT;
    int rc = list_dir(dir, exts, 1, &names, &e);
    if (rc < 0)
        persona_prob(probs, dir, 0, 0, e.msg, "check the directory's permissions");
    for (size_t i = 0; rc == 0 && i < names.len; i++) {
        bt_strbuf path = BT_STRBUF_INIT;
        bt_strbuf_addf(&path, "%s/%s", dir, names.items[i]);
        char *data = NULL;
        size_t len = 0;
        bt_error fe = BT_ERROR_INIT;
        if (bt_path_read_file(path.buf, BT_YAML_MAX_FILE, &data, &len, &fe) < 0) {
            persona_prob(probs, path.buf, 0, 0, fe.msg, "check the file");
        } else {
            const bt_embed_file *twin = builtin_twin("personas/", names.items[i]);
            if (!(twin && twin->len == len && memcmp(twin->data, data, len) == 0)) {
                char *name = base_name_noext(names.items[i]);
                bt_persona *p = persona_parse(name, path.buf, data, len, false, probs);
                if (p)
                    persona_put(set, p);
                free(name);
            }
        }
        free(data);
        bt_strbuf_release(&path);
    }
    bt_strvec_clear(&names);
}

static const bt_persona *persona_find(const bt_workflows *set, const char *name)
{
    if (!set || !name)
        return NULL;
    for (size_t i = 0; i < set->personas.len; i++)
        if (strcmp(set->personas.items[i]->name, name) == 0)
            return set->personas.items[i];
    for (size_t i = 0; i < set->personas.len; i++)
        if (loose_eq(set->personas.items[i]->name, name))
            return set->personas.items[i];
    return NULL;
}

/* ---- input types ---- */

static int parse_bool_text(const char *s, int *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off",
                                                                             "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) {
            *out = 1;
            return 1;
        }
        if (strcasecmp(s, f[i]) == 0) {
            *out = 0;
            return 1;
        }
    }
    return 0;
}

static int in_values(const json_t *values, const json_t *v, json_t **conv)
{
    size_t i;
    json_t *x;
    char *vt = scalar_text(v);
    json_array_foreach(values, i, x)
    {
        int eq = json_equal(x, (json_t *)v);
        if (!eq && vt && json_is_string(v)) {
            char *xt = scalar_text(x);
            eq = xt && strcmp(xt, vt) == 0;
            free(xt);
        }
        if (eq) {
            free(vt);
            *conv = json_incref(x);
            return 1;
        }
    }
    free(vt);
    return 0;
}

/* Does v fit the single type t (length tl)? *conv receives the value to use. */
static int fits_one(const char *t, size_t tl, const json_t *values, const json_t *v, json_t **conv)
{
#define IS(name) (tl == strlen(name) && strncmp(t, name, tl) == 0)
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (IS("string")) {
        if (s) {
            *conv = json_incref((json_t *)v);
            return 1;
        }
        char *txt = json_is_object(v) || json_is_array(v) ? NULL : scalar_text(v);
        if (!txt)
            return 0;
        *conv = json_string(txt);
        free(txt);
        return 1;
    }
    if (IS("boolean")) {
        int b;
        if (json_is_boolean(v)) {
            *conv = json_incref((json_t *)v);
            return 1;
        }
        if (s && parse_bool_text(s, &b)) {
            *conv = json_boolean(b);
            return 1;
        }
        return 0;
    }
    if (IS("integer")) {
        if (json_is_integer(v)) {
            *conv = json_incref((json_t *)v);
            return 1;
        }
        if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
            fabs(json_real_value(v)) < 9e15) {
            *conv = json_integer((json_int_t)json_real_value(v));
            return 1;
        }
        if (s && *s) {
            char *e = NULL;
            errno = 0;
            long long n = strtoll(s, &e, 10);
            if (errno == 0 && e && *e == '\0') {
                *conv = json_integer(n);
                return 1;
            }
        }
        return 0;
    }
    if (IS("number")) {
        if (json_is_number(v)) {
            *conv = json_incref((json_t *)v);
            return 1;
        }
        if (s && *s) {
            char *e = NULL;
            errno = 0;
            long long n = strtoll(s, &e, 10);
            if (errno == 0 && e && *e == '\0') {
                *conv = json_integer(n);
                return 1;
            }
            double d = strtod(s, &e);
            if (e && *e == '\0' && isfinite(d)) {
                *conv = json_real(d);
                return 1;
            }
        }
        return 0;
    }
    if (IS("object") || IS("array")) {
        if (IS("object") ? json_is_object(v) : json_is_array(v)) {
            *conv = json_incref((json_t *)v);
            return 1;
        }
        return 0;
    }
    if (IS("enum")) {
        if (json_is_array(values))
            return in_values(values, v, conv);
        if (json_is_object(v) || json_is_array(v) || json_is_null(v))
            return 0;
        *conv = json_incref((json_t *)v);
        return 1;
    }
    return 0;
#undef IS
}

/* Does v fit type (alternatives "a|b") and, when the type has no enum alternative but
 * values are given, is it one of them? *conv (new reference) is the value to use. */
static int value_fits(const char *type, const json_t *values, const json_t *v, json_t **conv)
{
    *conv = NULL;
    const char *t = type && *type ? type : "string";
    int has_enum = strstr(t, "enum") != NULL;
    while (*t) {
        const char *bar = strchr(t, '|');
        size_t tl = bar ? (size_t)(bar - t) : strlen(t);
        while (tl > 0 && t[0] == ' ') {
            t++;
            tl--;
        }
        while (tl > 0 && t[tl - 1] == ' ')
            tl--;
        json_t *c = NULL;
        if (fits_one(t, tl, values, v, &c)) {
            if (!has_enum && json_is_array(values) && json_array_size(values) > 0) {
                json_t *c2 = NULL;
                int ok = in_values(values, c, &c2);
                json_decref(c);
                if (!ok)
                    return 0;
                c = c2;
            }
            *conv = c;
            return 1;
        }
        if (!bar)
            break;
        t = bar + 1;
    }
    return 0;
}

/* "string", or "one of a, b" for choices. */
static void describe_type(bt_strbuf *sb, const bt_wf_param *p)
{
    if (json_is_array(p->values) && json_array_size(p->values) > 0) {
        bt_strbuf_addstr(sb, "one of ");
        size_t i;
        json_t *x;
        json_array_foreach(p->values, i, x)
        {
            char *t = scalar_text(x);
            bt_strbuf_addf(sb, "%s%s", i ? ", " : "", t ? t : "?");
            free(t);
        }
    } else {
        bt_strbuf_addstr(sb, p->type ? p->type : "string");
    }
}

static int valid_type(const char *type)
{
    const char *t = type;
    if (!*t)
        return 0;
    for (;;) {
        const char *bar = strchr(t, '|');
        size_t tl = bar ? (size_t)(bar - t) : strlen(t);
        while (tl > 0 && t[0] == ' ') {
            t++;
            tl--;
        }
        while (tl > 0 && t[tl - 1] == ' ')
            tl--;
        int ok = 0;
        for (size_t i = 0; i < COUNT(type_names); i++)
            if (tl == strlen(type_names[i]) && strncmp(t, type_names[i], tl) == 0)
                ok = 1;
        if (!ok)
            return 0;
        if (!bar)
            return 1;
        t = bar + 1;
    }
}

static const bt_wf_param *find_param(const bt_wf_param *ps, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].name, name) == 0)
            return &ps[i];
    return NULL;
}

int bt_workflow_bind_inputs(const bt_workflow *w, const json_t *given, json_t **out, bt_error *err)
{
    *out = NULL;
    if (given && json_is_null(given))
        given = NULL;
    if (given && !json_is_object(given))
        return bt_errorf(err, BT_EINVAL, "the inputs of workflow %s must be an object, not %s",
                         w->id, kind_of(given));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)given, k, v)
    {
        if (find_param(w->inputs, w->ninputs, k))
            continue;
        bt_strbuf names = BT_STRBUF_INIT;
        const char **cand = bt_xcalloc(w->ninputs + 1, sizeof *cand);
        for (size_t i = 0; i < w->ninputs; i++) {
            bt_strbuf_addf(&names, "%s%s", i ? ", " : "", w->inputs[i].name);
            cand[i] = w->inputs[i].name;
        }
        const char *sugg = suggest(k, cand, w->ninputs);
        bt_errorf(err, BT_EINVAL, "workflow %s has no input '%s'%s%s%s (its inputs: %s)", w->id, k,
                  sugg ? "; did you mean '" : "", sugg ? sugg : "", sugg ? "'?" : "",
                  w->ninputs ? names.buf : "none");
        free(cand);
        bt_strbuf_release(&names);
        return BT_EINVAL;
    }
    json_t *res = json_object();
    for (size_t i = 0; i < w->ninputs; i++) {
        const bt_wf_param *p = &w->inputs[i];
        json_t *gv = given ? json_object_get(given, p->name) : NULL;
        if (!gv || json_is_null(gv)) {
            if (p->dflt && !json_is_null(p->dflt)) {
                gv = p->dflt;
            } else if (p->required) {
                bt_strbuf t = BT_STRBUF_INIT;
                describe_type(&t, p);
                bt_errorf(err, BT_EINVAL, "workflow %s needs input %s (%s)", w->id, p->name, t.buf);
                bt_strbuf_release(&t);
                json_decref(res);
                return BT_EINVAL;
            } else {
                json_object_set_new(res, p->name, json_null());
                continue;
            }
        }
        json_t *conv = NULL;
        if (!value_fits(p->type, p->values, gv, &conv)) {
            bt_strbuf t = BT_STRBUF_INIT;
            describe_type(&t, p);
            char *vt = scalar_text(gv);
            bt_errorf(err, BT_EINVAL, "input %s of workflow %s must be %s, not %s%s%s", p->name,
                      w->id, t.buf, vt ? "'" : "", vt ? vt : kind_of(gv), vt ? "'" : "");
            free(vt);
            bt_strbuf_release(&t);
            json_decref(res);
            return BT_EINVAL;
        }
        json_object_set_new(res, p->name, conv);
    }
    *out = res;
    return 0;
}

/* ---- loading one workflow ---- */

typedef struct loader {
    const bt_config *cfg;
    const bt_workflows *personas; /* where personas are looked up */
    bt_config_problems *probs;
} loader;

static int agent_configured(const bt_config *cfg, const char *name)
{
    return cfg && name && bt_config_agent_find(cfg, name) != NULL;
}

static void need_agent(wf_item *it, const char *name)
{
    if (!bt_strvec_contains(&it->need, name))
        bt_strvec_push(&it->need, name);
}

/* Candidate names for an unknown agent: configured agents, then personas. */
static const char *suggest_agent(const loader *L, const char *word, bt_strbuf *known)
{
    size_t na = L->cfg ? L->cfg->agents.len : 0;
    size_t np = L->personas ? L->personas->personas.len : 0;
    const char **cand = bt_xcalloc(na + np + 1, sizeof *cand);
    for (size_t i = 0; i < na; i++) {
        cand[i] = L->cfg->agents.items[i].name;
        bt_strbuf_addf(known, "%s%s", i ? ", " : "", cand[i]);
    }
    for (size_t i = 0; i < np; i++)
        cand[na + i] = L->personas->personas.items[i]->name;
    const char *s = suggest(word, cand, na + np);
    free(cand);
    return s;
}

/* Per-step state of pass A that pass B (templates) needs. */
typedef struct step_aux {
    char *ptr;          /* "/steps/N" */
    const json_t *node; /* the step's mapping */
    char *moved_cmd;    /* pointer of a `command:`/`run:` shorthand, or NULL */
    char *moved_prompt; /* pointer of an approval's step-level `prompt:`, or NULL */
    bool action_known;
} step_aux;

static void aux_clear(step_aux *a)
{
    free(a->ptr);
    free(a->moved_cmd);
    free(a->moved_prompt);
}

/* The agent or persona a step names as written (borrowed), for its default id. */
static const char *step_agent_written(const json_t *node)
{
    const char *p = bt_json_str(node, "persona", NULL);
    return p ? p : bt_json_str(node, "agent", NULL);
}

/* The role a step has as written, else its persona's default role. */
static const char *step_role_written(const loader *L, const json_t *node)
{
    const char *r = bt_json_str(node, "role", NULL);
    if (r)
        return r;
    const char *pn = step_agent_written(node);
    if (pn && (bt_json_str(node, "persona", NULL) || !agent_configured(L->cfg, pn))) {
        const bt_persona *pe = persona_find(L->personas, pn);
        if (pe && pe->role)
            return pe->role;
    }
    return NULL;
}

static char *id_sanitize(const char *s)
{
    char *t = bt_xstrdup(s);
    for (char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            *p = '-';
    return t;
}

static int id_taken(const bt_workflow *w, size_t upto, const char *id, const json_t *steps)
{
    for (size_t i = 0; i < upto; i++)
        if (w->steps[i].id && strcmp(w->steps[i].id, id) == 0)
            return 1;
    /* explicit ids later in the list are reserved too */
    size_t i;
    json_t *x;
    json_array_foreach(steps, i, x)
    {
        const char *e = json_is_object(x) ? bt_json_str(x, "id", NULL) : NULL;
        if (e && strcmp(e, id) == 0)
            return 1;
    }
    return 0;
}

/* Pass 0: every step's id (explicit, else role, else agent/persona, else step-N, with
 * -2, -3... for a repeated default) and name. */
static void assign_ids(const loader *L, wf_src *s, const json_t *steps, step_aux *aux)
{
    bt_workflow *w = &s->item->w;
    for (size_t i = 0; i < w->nsteps; i++) {
        const json_t *node = aux[i].node;
        json_t *idv = json_object_get(node, "id");
        if (idv && !json_is_null(idv)) {
            char *tmp = NULL;
            char *ip = ptr_join(aux[i].ptr, "id");
            const char *id = json_is_string(idv) ? json_string_value(idv) : NULL;
            if (!id && json_is_integer(idv))
                id = tmp = scalar_text(idv);
            if (!id) {
                prob(s, ip, 0, "write the id as a string", "the id of step %zu must be a string",
                     i + 1);
            } else if (!valid_step_id(id)) {
                prob(s, ip, 0, "use letters, digits, '-' and '_'",
                     "step id '%s' has characters a template path cannot name", id);
            } else {
                for (size_t j = 0; j < i; j++)
                    if (w->steps[j].id && strcmp(w->steps[j].id, id) == 0)
                        prob(s, ip, 0, "give each step its own id",
                             "duplicate step id '%s' (also step %zu)", id, j + 1);
                w->steps[i].id = bt_xstrdup(id);
            }
            free(tmp);
            free(ip);
        }
    }
    for (size_t i = 0; i < w->nsteps; i++) {
        if (w->steps[i].id)
            continue;
        const json_t *node = aux[i].node;
        const char *role = step_role_written(L, node);
        const char *agent = step_agent_written(node);
        char *base = NULL;
        if (role && *role)
            base = id_sanitize(role);
        else if (agent && *agent)
            base = id_sanitize(agent);
        else {
            bt_strbuf b = BT_STRBUF_INIT;
            bt_strbuf_addf(&b, "step-%zu", i + 1);
            base = bt_strbuf_detach(&b, NULL);
        }
        char *id = bt_xstrdup(base);
        for (int n = 2; id_taken(w, w->nsteps, id, steps); n++) {
            free(id);
            bt_strbuf b = BT_STRBUF_INIT;
            bt_strbuf_addf(&b, "%s-%d", base, n);
            id = bt_strbuf_detach(&b, NULL);
        }
        free(base);
        w->steps[i].id = id;
    }
}

/* Resolve the agent of an agent step (persona rules in workflow.h). */
static void resolve_agent(const loader *L, wf_src *s, bt_wf_step *st, const step_aux *a)
{
    const json_t *node = a->node;
    const char *agent_name = bt_json_str(node, "agent", NULL);
    const char *persona_name = bt_json_str(node, "persona", NULL);
    char *agent_ptr = ptr_join(a->ptr, "agent");
    char *persona_ptr = ptr_join(a->ptr, "persona");
    const char *pptr = persona_ptr;
    if (!persona_name && agent_name && !agent_configured(L->cfg, agent_name) &&
        persona_find(L->personas, agent_name)) {
        persona_name = agent_name;
        agent_name = NULL;
        pptr = agent_ptr;
    }
    const bt_persona *pe = NULL;
    if (persona_name) {
        pe = persona_find(L->personas, persona_name);
        if (!pe) {
            size_t np = L->personas ? L->personas->personas.len : 0;
            const char **cand = bt_xcalloc(np + 1, sizeof *cand);
            for (size_t i = 0; i < np; i++)
                cand[i] = L->personas->personas.items[i]->name;
            const char *sugg = suggest(persona_name, cand, np);
            free(cand);
            if (sugg)
                prob(s, pptr, 0, "use a built-in persona or add personas_dir/NAME.md",
                     "unknown persona '%s' in step '%s'; did you mean '%s'?", persona_name, st->id,
                     sugg);
            else
                prob(s, pptr, 0, "use a built-in persona or add personas_dir/NAME.md",
                     "unknown persona '%s' in step '%s'", persona_name, st->id);
            goto out;
        }
        st->persona = bt_xstrdup(pe->name);
        if (!st->role && pe->role)
            st->role = bt_xstrdup(pe->role);
    }
    const char *agent = agent_name;
    const char *where = agent_ptr;
    int from_persona = 0;
    if (!agent && pe) {
        if (pe->agent) {
            agent = pe->agent;
            where = pptr;
            from_persona = 1;
        } else if (L->cfg && L->cfg->agents.len > 0) {
            st->agent = bt_xstrdup(L->cfg->agents.items[0].name);
            goto out;
        } else if (s->builtin) {
            s->item->need_any = true;
            goto out;
        } else {
            prob(s, pptr, 0, "define an agent under agents: in baton.yaml, or give the step agent:",
                 "step '%s' uses persona %s which names no agent and no agent is configured",
                 st->id, pe->name);
            goto out;
        }
    }
    if (!agent) {
        prob(s, a->ptr, 1, "add agent: NAME (a configured agent or a persona)",
             "agent step '%s' names no agent", st->id);
        goto out;
    }
    st->agent = bt_xstrdup(agent);
    if (!agent_configured(L->cfg, agent)) {
        if (s->builtin) {
            need_agent(s->item, agent);
        } else if (from_persona) {
            bt_strbuf hint = BT_STRBUF_INIT;
            bt_strbuf_addf(
                &hint, "define agents.%s in baton.yaml, or give the step its own agent:", agent);
            prob(s, where, 0, hint.buf, "persona %s names agent '%s', which is not configured",
                 pe->name, agent);
            bt_strbuf_release(&hint);
        } else {
            bt_strbuf known = BT_STRBUF_INIT, hint = BT_STRBUF_INIT;
            const char *sugg = suggest_agent(L, agent, &known);
            bt_strbuf_addf(
                &hint, "define agents.%s in baton.yaml or name a persona; configured agents: %s",
                agent, known.len ? known.buf : "none");
            if (sugg)
                prob(s, where, 0, hint.buf, "unknown agent '%s' in step '%s'; did you mean '%s'?",
                     agent, st->id, sugg);
            else
                prob(s, where, 0, hint.buf, "unknown agent '%s' in step '%s'", agent, st->id);
            bt_strbuf_release(&known);
            bt_strbuf_release(&hint);
        }
    }
out:
    free(agent_ptr);
    free(persona_ptr);
}

/* A lock path, normalised ("./src//api/" -> "src/api", "." -> ""), or NULL with *why
 * set when it is absolute or leaves the repository. */
static char *norm_lock_path(const char *p, const char **why)
{
    if (*p == '/' || *p == '~') {
        *why = "must be relative to the repository";
        return NULL;
    }
    bt_strbuf sb = BT_STRBUF_INIT;
    const char *c = p;
    while (*c) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            bt_strbuf_release(&sb);
            *why = "must not contain '..'";
            return NULL;
        }
        if (n > 0 && !(n == 1 && c[0] == '.')) {
            if (sb.len)
                bt_strbuf_addch(&sb, '/');
            bt_strbuf_add(&sb, c, n);
        }
        c += n;
        while (*c == '/')
            c++;
    }
    return bt_strbuf_detach(&sb, NULL);
}

static void parse_locks(wf_src *s, bt_wf_step *st, const step_aux *a)
{
    json_t *lv = json_object_get(a->node, "locks");
    if (!lv || json_is_null(lv))
        return;
    char *lp = ptr_join(a->ptr, "locks");
    if (!json_is_string(lv) && !json_is_array(lv)) {
        prob(s, lp, 0, "write a list of repository paths, e.g. [src/api, docs]",
             "locks of step '%s' must be a list of paths, not %s", st->id, kind_of(lv));
        free(lp);
        return;
    }
    size_t n = json_is_array(lv) ? json_array_size(lv) : 1;
    st->locks = bt_xcalloc(n + 1, sizeof *st->locks);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_is_array(lv) ? json_array_get(lv, i) : lv;
        char idx[24];
        snprintf(idx, sizeof idx, "%zu", i);
        char *xp = json_is_array(lv) ? ptr_join(lp, idx) : bt_xstrdup(lp);
        const char *why = NULL;
        char *norm = json_is_string(x) ? norm_lock_path(json_string_value(x), &why) : NULL;
        if (!json_is_string(x))
            prob(s, xp, 0, "write a path relative to the repository",
                 "lock entries of step '%s' must be paths, not %s", st->id, kind_of(x));
        else if (!norm)
            prob(s, xp, 0, "write a path relative to the repository, such as src/api",
                 "lock path '%s' of step '%s' %s", json_string_value(x), st->id, why);
        else
            st->locks[st->nlocks++] = norm;
        free(xp);
    }
    free(lp);
}

static void parse_fallback(const loader *L, wf_src *s, bt_wf_step *st, const step_aux *a)
{
    json_t *fb = json_object_get(a->node, "fallback");
    if (!fb || json_is_null(fb))
        return;
    char *fptr = ptr_join(a->ptr, "fallback");
    if (!json_is_string(fb) && !json_is_array(fb)) {
        prob(s, fptr, 0, "write an agent name or a list of them",
             "fallback of step '%s' must be an agent name or a list, not %s", st->id, kind_of(fb));
        free(fptr);
        return;
    }
    size_t n = json_is_string(fb) ? 1 : json_array_size(fb);
    st->fallback = bt_xcalloc(n + 1, sizeof *st->fallback);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_is_string(fb) ? fb : json_array_get(fb, i);
        char *xp = json_is_string(fb) ? bt_xstrdup(fptr) : ptr_index(fptr, i);
        if (!json_is_string(x)) {
            prob(s, xp, 0, "write agent names", "fallback entries must be agent names, not %s",
                 kind_of(x));
        } else {
            const char *name = json_string_value(x);
            st->fallback[st->nfallback++] = bt_xstrdup(name);
            if (!agent_configured(L->cfg, name)) {
                if (s->builtin) {
                    need_agent(s->item, name);
                } else {
                    bt_strbuf known = BT_STRBUF_INIT, hint = BT_STRBUF_INIT;
                    const char *sugg = suggest_agent(L, name, &known);
                    bt_strbuf_addf(&hint, "a fallback must be a configured agent: %s",
                                   known.len ? known.buf : "none is configured");
                    if (sugg && agent_configured(L->cfg, sugg))
                        prob(s, xp, 0, hint.buf,
                             "fallback '%s' of step '%s' is not a configured agent; did you mean "
                             "'%s'?",
                             name, st->id, sugg);
                    else
                        prob(s, xp, 0, hint.buf,
                             "fallback '%s' of step '%s' is not a configured agent", name, st->id);
                    bt_strbuf_release(&known);
                    bt_strbuf_release(&hint);
                }
            }
        }
        free(xp);
    }
    free(fptr);
}

/* Check the keys of an action's inputs. */
static void check_input_keys(wf_src *s, const bt_wf_step *st, const step_aux *a,
                             const char *const *keys, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach(st->inputs, k, v)
    {
        if (name_index(k, keys, n) >= 0)
            continue;
        char *ip = ptr_join(a->ptr, "inputs");
        char *kp = ptr_join(ip, k);
        const char *sugg = suggest(k, keys, n);
        bt_strbuf hint = BT_STRBUF_INIT;
        bt_strbuf_addf(&hint, "%s takes: ", bt_wf_action_name(st->action));
        add_list(&hint, keys, n);
        if (sugg)
            prob(s, kp, 1, hint.buf, "unknown input '%s' of %s step '%s'; did you mean '%s'?", k,
                 bt_wf_action_name(st->action), st->id, sugg);
        else
            prob(s, kp, 1, hint.buf, "unknown input '%s' of %s step '%s'", k,
                 bt_wf_action_name(st->action), st->id);
        bt_strbuf_release(&hint);
        free(kp);
        free(ip);
    }
}

/* The pointer of inputs.KEY of a step, honouring shorthands moved into inputs. */
static char *input_ptr(const step_aux *a, const char *key)
{
    if (a->moved_cmd && strcmp(key, "command") == 0)
        return bt_xstrdup(a->moved_cmd);
    if (a->moved_prompt && strcmp(key, "prompt") == 0)
        return bt_xstrdup(a->moved_prompt);
    char *ip = ptr_join(a->ptr, "inputs");
    char *kp = ptr_join(ip, key);
    free(ip);
    return kp;
}

/* A required string input (static or template). */
static const char *need_input_str(wf_src *s, const bt_wf_step *st, const step_aux *a,
                                  const char *key, const char *hint)
{
    json_t *v = json_object_get(st->inputs, key);
    if (!v || json_is_null(v) || (json_is_string(v) && !*json_string_value(v))) {
        char *ip = input_ptr(a, key);
        prob(s, ip, v ? 0 : 1, hint, "%s step '%s' needs inputs.%s", bt_wf_action_name(st->action),
             st->id, key);
        free(ip);
        return NULL;
    }
    if (!json_is_string(v)) {
        char *ip = input_ptr(a, key);
        prob(s, ip, 0, "write it as a string", "inputs.%s of step '%s' must be a string, not %s",
             key, st->id, kind_of(v));
        free(ip);
        return NULL;
    }
    return json_string_value(v);
}

/* Move a step-level shorthand (command:, run:, prompt:) into inputs. */
static void move_shorthand(wf_src *s, bt_wf_step *st, step_aux *a, const char *key,
                           const char *into, char **moved)
{
    json_t *v = json_object_get(a->node, key);
    if (!v || json_is_null(v))
        return;
    char *kp = ptr_join(a->ptr, key);
    if (*moved || json_object_get(st->inputs, into)) {
        prob(s, kp, 1, "keep one of them", "step '%s' gives its %s twice (%s: and inputs.%s)",
             st->id, into, key, into);
        free(kp);
        return;
    }
    if (json_is_string(v) || json_is_object(v) || json_is_array(v)) {
        json_object_set(st->inputs, into, v);
    } else { /* run: true is the command "true" */
        char *t = scalar_text(v);
        json_object_set_new(st->inputs, into, json_string(t));
        free(t);
    }
    *moved = kp;
}

static void parse_step_action(const loader *L, wf_src *s, bt_wf_step *st, step_aux *a)
{
    const json_t *node = a->node;
    (void)L;
    switch (st->action) {
    case BT_WF_AGENT:
        break;
    case BT_WF_SHELL: {
        move_shorthand(s, st, a, "command", "command", &a->moved_cmd);
        move_shorthand(s, st, a, "run", "command", &a->moved_cmd);
        check_input_keys(s, st, a, shell_inputs, COUNT(shell_inputs));
        need_input_str(s, st, a, "command", "add inputs: {command: \"make test\"} (or command:)");
        json_t *env = json_object_get(st->inputs, "env");
        if (env && !json_is_object(env)) {
            char *ip = input_ptr(a, "env");
            prob(s, ip, 0, "write env: {NAME: value}",
                 "inputs.env of step '%s' must be a mapping of names to values", st->id);
            free(ip);
        }
        break;
    }
    case BT_WF_GIT: {
        check_input_keys(s, st, a, git_inputs, COUNT(git_inputs));
        bt_strbuf hint = BT_STRBUF_INIT;
        bt_strbuf_addstr(&hint, "operation is one of ");
        add_list(&hint, git_ops, COUNT(git_ops));
        const char *op = need_input_str(s, st, a, "operation", hint.buf);
        if (op && !has_template(op) && name_index(op, git_ops, COUNT(git_ops)) < 0) {
            char *ip = input_ptr(a, "operation");
            const char *sugg = suggest(op, git_ops, COUNT(git_ops));
            if (sugg)
                prob(s, ip, 0, hint.buf,
                     "unknown git operation '%s' in step '%s'; did you mean '%s'?", op, st->id,
                     sugg);
            else
                prob(s, ip, 0, hint.buf, "unknown git operation '%s' in step '%s'", op, st->id);
            free(ip);
        } else if (op && (strcmp(op, "branch") == 0 || strcmp(op, "checkout") == 0)) {
            need_input_str(s, st, a, "branch", "add inputs.branch: the branch name");
        }
        bt_strbuf_release(&hint);
        break;
    }
    case BT_WF_HTTP: {
        check_input_keys(s, st, a, http_inputs, COUNT(http_inputs));
        need_input_str(s, st, a, "url", "add inputs.url: the address to call");
        json_t *m = json_object_get(st->inputs, "method");
        if (m && (!json_is_string(m) ||
                  (!has_template(json_string_value(m)) &&
                   name_index(json_string_value(m), http_methods, COUNT(http_methods)) < 0))) {
            char *ip = input_ptr(a, "method");
            prob(s, ip, 0, "use GET, POST, PUT, PATCH, DELETE or HEAD",
                 "inputs.method of step '%s' is not an HTTP method", st->id);
            free(ip);
        }
        json_t *h = json_object_get(st->inputs, "headers");
        if (h && !json_is_object(h)) {
            char *ip = input_ptr(a, "headers");
            prob(s, ip, 0, "write headers: {Name: value}",
                 "inputs.headers of step '%s' must be a mapping", st->id);
            free(ip);
        }
        json_t *ex = json_object_get(st->inputs, "expect");
        int ok = !ex || (json_is_integer(ex) && json_integer_value(ex) >= 100 &&
                         json_integer_value(ex) <= 599);
        if (ex && json_is_array(ex)) {
            ok = json_array_size(ex) > 0;
            size_t i;
            json_t *x;
            json_array_foreach(ex, i, x)
            {
                if (!json_is_integer(x) || json_integer_value(x) < 100 ||
                    json_integer_value(x) > 599)
                    ok = 0;
            }
        }
        if (!ok) {
            char *ip = input_ptr(a, "expect");
            prob(s, ip, 0, "write a status code (200) or a list of them ([200, 201])",
                 "inputs.expect of step '%s' must be an HTTP status or a list of them", st->id);
            free(ip);
        }
        break;
    }
    case BT_WF_APPROVAL: {
        move_shorthand(s, st, a, "prompt", "prompt", &a->moved_prompt);
        check_input_keys(s, st, a, approval_inputs, COUNT(approval_inputs));
        json_t *p = json_object_get(st->inputs, "prompt");
        if (p && !json_is_string(p)) {
            char *ip = input_ptr(a, "prompt");
            prob(s, ip, 0, "write the question as a string",
                 "the prompt of approval step '%s' must be a string", st->id);
            free(ip);
        }
        break;
    }
    case BT_WF_WORKFLOW: {
        /* the target: step-level workflow:, or inputs.workflow / inputs.workflow_id */
        static const char *const tkeys[] = {"workflow", "workflow_id"};
        const char *target = NULL;
        char *tptr = NULL;
        json_t *wv = json_object_get(node, "workflow");
        if (wv && !json_is_null(wv)) {
            tptr = ptr_join(a->ptr, "workflow");
            if (json_is_string(wv))
                target = json_string_value(wv);
        }
        for (size_t i = 0; i < COUNT(tkeys); i++) {
            json_t *iv = json_object_get(st->inputs, tkeys[i]);
            if (!iv)
                continue;
            char *ip = input_ptr(a, tkeys[i]);
            if (tptr) {
                prob(s, ip, 1, "keep one of them", "step '%s' names its workflow twice", st->id);
                free(ip);
            } else {
                tptr = ip;
                if (json_is_string(iv))
                    target = json_string_value(iv);
                else
                    wv = iv;
            }
        }
        if (!tptr) {
            prob(s, a->ptr, 1, "add workflow: ID (the workflow to run)",
                 "execute-workflow step '%s' names no workflow", st->id);
        } else if (!target) {
            prob(s, tptr, 0, "write the workflow's id", "the workflow of step '%s' must be an id",
                 st->id);
        } else if (has_template(target)) {
            prob(s, tptr, 0, "name the workflow literally",
                 "the workflow of step '%s' cannot be a template (it is checked before the run)",
                 st->id);
        } else {
            st->workflow = bt_xstrdup(target);
        }
        /* the rest of inputs are the sub-workflow's inputs */
        for (size_t i = 0; i < COUNT(tkeys); i++)
            json_object_del(st->inputs, tkeys[i]);
        s->target_ptr[st->seq] = tptr;
        break;
    }
    default:
        break;
    }
}

static void parse_duration_field(wf_src *s, const json_t *node, const char *sptr, bt_wf_step *st)
{
    json_t *t = json_object_get(node, "timeout");
    if (!t || json_is_null(t))
        return;
    char *tp = ptr_join(sptr, "timeout");
    int64_t ms = -1;
    if (json_is_integer(t)) {
        if (json_integer_value(t) > 0 && json_integer_value(t) < INT64_MAX / 1000)
            ms = json_integer_value(t) * 1000;
    } else if (json_is_string(t)) {
        bt_error e = BT_ERROR_INIT;
        if (bt_duration_parse(json_string_value(t), &ms, &e) < 0)
            ms = -1;
    }
    if (ms <= 0)
        prob(s, tp, 0, "write a positive duration such as 30s, 10m or 1h30m (or seconds)",
             "timeout of step '%s' is not a valid duration", st->id);
    else
        st->timeout_ms = ms;
    free(tp);
}

/* Pass A for one step: action, agent, inputs, options. */
static void parse_step(const loader *L, wf_src *s, bt_wf_step *st, step_aux *a)
{
    const json_t *node = a->node;
    char where[300];
    snprintf(where, sizeof where, "step '%s'", st->id);
    check_keys(s, node, a->ptr, step_keys, COUNT(step_keys), where);
    char *tmp = NULL;
    const char *name = get_str(s, node, a->ptr, "name", where, &tmp, 1);
    st->name = bt_xstrdup(name ? name : st->id);
    free(tmp);
    tmp = NULL;
    const char *role = get_str(s, node, a->ptr, "role", where, &tmp, 0);
    if (role && *role)
        st->role = bt_xstrdup(role);
    get_str(s, node, a->ptr, "description", where, &tmp, 0);
    const char *agent = get_str(s, node, a->ptr, "agent", where, &tmp, 0);
    const char *persona = get_str(s, node, a->ptr, "persona", where, &tmp, 0);

    /* inputs: a copy the shorthands move into */
    json_t *in = json_object_get(node, "inputs");
    if (in && !json_is_null(in) && !json_is_object(in)) {
        char *ip = ptr_join(a->ptr, "inputs");
        prob(s, ip, 0, "write inputs: {name: value, ...}",
             "inputs of step '%s' must be a mapping, not %s", st->id, kind_of(in));
        free(ip);
        in = NULL;
    }
    st->inputs = json_is_object(in) ? json_deep_copy(in) : json_object();

    /* action: explicit, else inferred from what the step names */
    json_t *act = json_object_get(node, "action");
    a->action_known = true;
    if (act && !json_is_null(act)) {
        char *ap = ptr_join(a->ptr, "action");
        int idx = json_is_string(act)
                      ? name_index(json_string_value(act), action_names, COUNT(action_names))
                      : -1;
        if (idx < 0) {
            a->action_known = false;
            bt_strbuf hint = BT_STRBUF_INIT;
            const char *as = json_is_string(act) ? json_string_value(act) : NULL;
            if (as && strchr(as, '|'))
                bt_strbuf_addstr(&hint, "pick one action: 'a|b' lists alternatives; valid: ");
            else
                bt_strbuf_addstr(&hint, "use one of: ");
            add_list(&hint, action_names, COUNT(action_names));
            bt_strbuf valid = BT_STRBUF_INIT;
            add_list(&valid, action_names, COUNT(action_names));
            const char *sugg = as ? suggest(as, action_names, COUNT(action_names)) : NULL;
            if (!as)
                prob(s, ap, 0, hint.buf, "the action of step '%s' must be a string, not %s", st->id,
                     kind_of(act));
            else if (sugg)
                prob(s, ap, 0, hint.buf,
                     "unknown action '%s' in step '%s'; did you mean '%s'? (valid actions: %s)", as,
                     st->id, sugg, valid.buf);
            else
                prob(s, ap, 0, hint.buf, "unknown action '%s' in step '%s' (valid actions: %s)", as,
                     st->id, valid.buf);
            bt_strbuf_release(&hint);
            bt_strbuf_release(&valid);
        } else {
            st->action = (bt_wf_action)idx;
        }
        free(ap);
    } else if (agent || persona) {
        st->action = BT_WF_AGENT;
    } else if (json_object_get(node, "workflow")) {
        st->action = BT_WF_WORKFLOW;
    } else if (json_object_get(node, "command") || json_object_get(node, "run")) {
        st->action = BT_WF_SHELL;
    } else {
        a->action_known = false;
        prob(s, a->ptr, 1,
             "add agent: NAME, persona: NAME, or action: (agent, shell-command, git-operation, "
             "execute-workflow, approval, http)",
             "step '%s' has no agent, persona or action", st->id);
    }

    if (a->action_known) {
        /* keys that belong to other actions */
        static const struct {
            const char *key;
            bt_wf_action only, also;
        } owned[] = {
            {"agent", BT_WF_AGENT, BT_WF_AGENT},
            {"persona", BT_WF_AGENT, BT_WF_AGENT},
            {"fallback", BT_WF_AGENT, BT_WF_AGENT},
            {"prompt", BT_WF_AGENT, BT_WF_APPROVAL},
            {"workflow", BT_WF_WORKFLOW, BT_WF_WORKFLOW},
            {"command", BT_WF_SHELL, BT_WF_SHELL},
            {"run", BT_WF_SHELL, BT_WF_SHELL},
        };
        for (size_t i = 0; i < COUNT(owned); i++) {
            json_t *v = json_object_get(node, owned[i].key);
            if (!v || json_is_null(v) || st->action == owned[i].only || st->action == owned[i].also)
                continue;
            char *kp = ptr_join(a->ptr, owned[i].key);
            prob(s, kp, 1, "remove it, or change the step's action",
                 "'%s' applies to %s steps, but step '%s' is %s", owned[i].key,
                 bt_wf_action_name(owned[i].only), st->id, bt_wf_action_name(st->action));
            free(kp);
        }
        if (st->action == BT_WF_AGENT) {
            resolve_agent(L, s, st, a);
            parse_fallback(L, s, st, a);
            const char *p = get_str(s, node, a->ptr, "prompt", where, &tmp, 0);
            if (p)
                st->prompt.src = bt_xstrdup(p);
            if (json_object_size(st->inputs) > 0) {
                char *ip = ptr_join(a->ptr, "inputs");
                prob(s, ip, 1,
                     "put what the agent needs in prompt:", "agent step '%s' takes no inputs",
                     st->id);
                free(ip);
            }
        } else {
            parse_step_action(L, s, st, a);
        }
    }

    /* when: a template (a YAML boolean is taken as its text) */
    json_t *wv = json_object_get(node, "when");
    if (wv && !json_is_null(wv)) {
        if (json_is_string(wv) || json_is_boolean(wv) || json_is_number(wv)) {
            st->when.src = scalar_text(wv);
        } else {
            char *wp = ptr_join(a->ptr, "when");
            prob(s, wp, 0, "write a condition such as \"{{ steps.test.ok }}\"",
                 "when of step '%s' must be a condition, not %s", st->id, kind_of(wv));
            free(wp);
        }
    }
    parse_duration_field(s, node, a->ptr, st);
    parse_locks(s, st, a);
    json_t *r = json_object_get(node, "retries");
    if (r && !json_is_null(r)) {
        if (json_is_integer(r) && json_integer_value(r) >= 0 &&
            json_integer_value(r) <= MAX_RETRIES) {
            st->retries = (int)json_integer_value(r);
        } else {
            char *rp = ptr_join(a->ptr, "retries");
            prob(s, rp, 0, "write a whole number from 0 to 10",
                 "retries of step '%s' must be a whole number from 0 to %d", st->id, MAX_RETRIES);
            free(rp);
        }
    }
    static const char *const flags[] = {"continue_on_error", "review"};
    for (size_t i = 0; i < COUNT(flags); i++) {
        json_t *f = json_object_get(node, flags[i]);
        if (!f || json_is_null(f))
            continue;
        if (!json_is_boolean(f)) {
            char *fp = ptr_join(a->ptr, flags[i]);
            prob(s, fp, 0, "write true or false", "%s of step '%s' must be true or false", flags[i],
                 st->id);
            free(fp);
            continue;
        }
        if (i == 0)
            st->continue_on_error = json_is_true(f);
        else
            st->review = json_is_true(f);
    }
    free(tmp);
}

/* ---- templates ---- */

typedef struct refctx {
    wf_src *s;
    const bt_workflow *w;
    const char *ptr;
    const char *what;
} refctx;

static void ref_problem(refctx *r, int line, int col, const char *path, const char *sugg,
                        const char *hint)
{
    bt_yaml_pos p = tmpl_pos(r->s, r->ptr, line, col);
    if (sugg)
        prob_at(r->s, p, r->ptr, hint, "unknown variable '%s' in %s; did you mean '%s'?", path,
                r->what, sugg);
    else
        prob_at(r->s, p, r->ptr, hint, "unknown variable '%s' in %s", path, r->what);
}

/* The path with part i replaced by repl (for suggestions). */
static char *path_with(const char *const *parts, size_t n, size_t i, const char *repl)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    for (size_t j = 0; j < n; j++)
        bt_strbuf_addf(&sb, "%s%s", j ? "." : "", j == i && repl ? repl : parts[j]);
    return bt_strbuf_detach(&sb, NULL);
}

/* Check that parts[i] is one of fields. */
static int check_field(refctx *r, const char *const *parts, size_t n, size_t i,
                       const char *const *fields, size_t nf, const char *what, int line, int col)
{
    if (i >= n || name_index(parts[i], fields, nf) >= 0)
        return 0;
    char *path = path_with(parts, n, n, NULL);
    const char *s = suggest(parts[i], fields, nf);
    char *sugg = s ? path_with(parts, n, i, s) : NULL;
    bt_strbuf hint = BT_STRBUF_INIT;
    bt_strbuf_addf(&hint, "%s fields: ", what);
    add_list(&hint, fields, nf);
    ref_problem(r, line, col, path, sugg, hint.buf);
    bt_strbuf_release(&hint);
    free(sugg);
    free(path);
    return 1;
}

static int ref_cb(const char *const *parts, size_t n, int line, int col, void *ud)
{
    refctx *r = ud;
    const bt_workflow *w = r->w;
    if (n == 0)
        return 0;
    const char *root = parts[0];
    int ri = name_index(root, tmpl_roots, COUNT(tmpl_roots));
    if (ri < 0) {
        char *path = path_with(parts, n, n, NULL);
        const char *s = suggest(root, tmpl_roots, COUNT(tmpl_roots));
        char *sugg = s ? path_with(parts, n, 0, s) : NULL;
        bt_strbuf hint = BT_STRBUF_INIT;
        bt_strbuf_addstr(&hint, "variables start with one of: ");
        add_list(&hint, tmpl_roots, COUNT(tmpl_roots));
        ref_problem(r, line, col, path, sugg, hint.buf);
        bt_strbuf_release(&hint);
        free(sugg);
        free(path);
        return 0;
    }
    if (strcmp(root, "task") == 0 || strcmp(root, "item") == 0) {
        check_field(r, parts, n, 1, task_fields, COUNT(task_fields), "task", line, col);
    } else if (strcmp(root, "previous") == 0) {
        check_field(r, parts, n, 1, previous_fields, COUNT(previous_fields), "previous", line, col);
    } else if (strcmp(root, "workflow") == 0) {
        check_field(r, parts, n, 1, workflow_fields, COUNT(workflow_fields), "workflow", line, col);
    } else if (strcmp(root, "run") == 0) {
        check_field(r, parts, n, 1, run_fields, COUNT(run_fields), "run", line, col);
    } else if (strcmp(root, "inputs") == 0) {
        if (n >= 2 && !find_param(w->inputs, w->ninputs, parts[1])) {
            const char **cand = bt_xcalloc(w->ninputs + 1, sizeof *cand);
            bt_strbuf hint = BT_STRBUF_INIT;
            bt_strbuf_addf(&hint, "declare it under inputs: (declared: ");
            for (size_t i = 0; i < w->ninputs; i++) {
                cand[i] = w->inputs[i].name;
                bt_strbuf_addf(&hint, "%s%s", i ? ", " : "", cand[i]);
            }
            bt_strbuf_addstr(&hint, w->ninputs ? ")" : "none)");
            const char *s = suggest(parts[1], cand, w->ninputs);
            char *path = path_with(parts, n, n, NULL);
            char *sugg = s ? path_with(parts, n, 1, s) : NULL;
            ref_problem(r, line, col, path, sugg, hint.buf);
            free(sugg);
            free(path);
            free(cand);
            bt_strbuf_release(&hint);
        }
    } else if (strcmp(root, "steps") == 0) {
        if (n < 2)
            return 0;
        int found = 0;
        for (size_t i = 0; i < w->nsteps; i++)
            if (w->steps[i].id && strcmp(w->steps[i].id, parts[1]) == 0)
                found = 1;
        if (!found) {
            const char **cand = bt_xcalloc(w->nsteps + 1, sizeof *cand);
            bt_strbuf hint = BT_STRBUF_INIT;
            bt_strbuf_addstr(&hint, "steps of this workflow: ");
            for (size_t i = 0; i < w->nsteps; i++) {
                cand[i] = w->steps[i].id;
                bt_strbuf_addf(&hint, "%s%s", i ? ", " : "", cand[i] ? cand[i] : "?");
            }
            const char *s = suggest(parts[1], cand, w->nsteps);
            char *path = path_with(parts, n, n, NULL);
            char *sugg = s ? path_with(parts, n, 1, s) : NULL;
            ref_problem(r, line, col, path, sugg, hint.buf);
            free(sugg);
            free(path);
            free(cand);
            bt_strbuf_release(&hint);
            return 0;
        }
        check_field(r, parts, n, 2, step_fields, COUNT(step_fields), "step", line, col);
    } else if (n > 1) { /* iteration, max_iterations, workspace: plain values */
        char *path = path_with(parts, n, n, NULL);
        bt_strbuf hint = BT_STRBUF_INIT;
        bt_strbuf_addf(&hint, "'%s' is a plain value; write {{ %s }}", root, root);
        ref_problem(r, line, col, path, NULL, hint.buf);
        bt_strbuf_release(&hint);
        free(path);
    }
    return 0;
}

/* Compile src (the text at ptr) and check its references; NULL on a syntax error. */
static bt_tmpl *check_text(wf_src *s, const bt_workflow *w, const char *src, const char *ptr,
                           const char *what)
{
    bt_tmpl *t = NULL;
    bt_tmpl_error where = {0, 0};
    bt_error e = BT_ERROR_INIT;
    if (bt_tmpl_compile(src, &t, &where, &e) < 0) {
        bt_yaml_pos p = tmpl_pos(s, ptr, where.line, where.column);
        prob_at(s, p, ptr,
                "templates are {{ path | filter }} or ${path}; write $${ for a literal ${",
                "template error in %s: %s", what, e.msg);
        return NULL;
    }
    refctx r = {s, w, ptr, what};
    bt_tmpl_refs(t, ref_cb, &r);
    return t;
}

/* Every string leaf of v (at ptr) is a template. */
static void check_json_texts(wf_src *s, const bt_workflow *w, const json_t *v, const char *ptr,
                             const char *what)
{
    if (json_is_string(v)) {
        bt_tmpl *t = check_text(s, w, json_string_value(v), ptr, what);
        bt_tmpl_free(t);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            char *p = ptr_join(ptr, k);
            check_json_texts(s, w, x, p, what);
            free(p);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            char *p = ptr_index(ptr, i);
            check_json_texts(s, w, x, p, what);
            free(p);
        }
    }
}

/* Pass B for one step: prompt, when and the string leaves of inputs. */
static void check_step_templates(wf_src *s, bt_wf_step *st, const step_aux *a)
{
    const bt_workflow *w = &s->item->w;
    char what[400];
    if (st->prompt.src) {
        char *p = ptr_join(a->ptr, "prompt");
        snprintf(what, sizeof what, "the prompt of step '%s'", st->id);
        st->prompt.tmpl = check_text(s, w, st->prompt.src, p, what);
        free(p);
    }
    if (st->when.src) {
        char *p = ptr_join(a->ptr, "when");
        snprintf(what, sizeof what, "when of step '%s'", st->id);
        st->when.tmpl = check_text(s, w, st->when.src, p, what);
        free(p);
    }
    const char *k;
    json_t *x;
    json_object_foreach(st->inputs, k, x)
    {
        char *p = input_ptr(a, k);
        snprintf(what, sizeof what, "inputs.%s of step '%s'", k, st->id);
        check_json_texts(s, w, x, p, what);
        free(p);
    }
}

/* ---- inputs and outputs ---- */

static void parse_param(wf_src *s, bt_wf_param *p, const char *name, const json_t *node,
                        const char *ptr, int output)
{
    char where[300];
    snprintf(where, sizeof where, "%s '%s'", output ? "output" : "input", name);
    p->name = bt_xstrdup(name);
    if (output && json_is_string(node)) { /* map form: NAME: "template" */
        p->value.src = bt_xstrdup(json_string_value(node));
        return;
    }
    if (!json_is_object(node)) {
        prob(s, ptr, 0,
             output ? "write NAME: \"{{ steps.ID.output }}\" or {name: NAME, value: ...}"
                    : "write {type: string, required: true, ...}",
             "%s must be a mapping, not %s", where, kind_of(node));
        return;
    }
    if (output)
        check_keys(s, node, ptr, output_keys, COUNT(output_keys), where);
    else
        check_keys(s, node, ptr, param_keys, COUNT(param_keys), where);
    char *tmp = NULL;
    const char *d = get_str(s, node, ptr, "description", where, &tmp, 0);
    if (d)
        p->description = bt_xstrdup(d);
    if (output) {
        json_t *v = json_object_get(node, "value");
        if (!v || json_is_null(v)) {
            prob(s, ptr, 1, "add value: \"{{ steps.ID.output }}\"", "%s has no value", where);
        } else if (json_is_string(v)) {
            p->value.src = bt_xstrdup(json_string_value(v));
        } else {
            char *vp = ptr_join(ptr, "value");
            prob(s, vp, 0, "write a template string", "the value of %s must be a string", where);
            free(vp);
        }
        free(tmp);
        return;
    }
    const char *type = get_str(s, node, ptr, "type", where, &tmp, 0);
    if (type && !valid_type(type)) {
        char *tp = ptr_join(ptr, "type");
        bt_strbuf hint = BT_STRBUF_INIT;
        bt_strbuf_addstr(&hint, "types: ");
        add_list(&hint, type_names, COUNT(type_names));
        bt_strbuf_addstr(&hint, " (or alternatives such as string|boolean)");
        prob(s, tp, 0, hint.buf, "unknown type '%s' of %s", type, where);
        bt_strbuf_release(&hint);
        free(tp);
    }
    p->type = bt_xstrdup(type ? type : "string");
    json_t *req = json_object_get(node, "required");
    if (req && !json_is_null(req)) {
        if (json_is_boolean(req)) {
            p->required = json_is_true(req);
        } else {
            char *rp = ptr_join(ptr, "required");
            prob(s, rp, 0, "write true or false", "required of %s must be true or false", where);
            free(rp);
        }
    }
    json_t *vals = json_object_get(node, "values");
    if (vals && !json_is_null(vals)) {
        if (json_is_array(vals) && json_array_size(vals) > 0) {
            p->values = json_deep_copy(vals);
        } else {
            char *vp = ptr_join(ptr, "values");
            prob(s, vp, 0, "write values: [a, b, c]", "values of %s must be a non-empty list",
                 where);
            free(vp);
        }
    } else if (strcmp(p->type, "enum") == 0) {
        prob(s, ptr, 1, "add values: [a, b, c]", "%s is an enum without values", where);
    }
    json_t *dv = json_object_get(node, "default");
    if (dv && !json_is_null(dv) && valid_type(p->type)) {
        json_t *conv = NULL;
        if (value_fits(p->type, p->values, dv, &conv)) {
            p->dflt = conv;
        } else {
            char *dp = ptr_join(ptr, "default");
            bt_strbuf t = BT_STRBUF_INIT;
            describe_type(&t, p);
            prob(s, dp, 0, "change the default or the type", "the default of %s is not %s", where,
                 t.buf);
            bt_strbuf_release(&t);
            free(dp);
        }
    }
    free(tmp);
}

/* inputs/outputs in list form [{name, ...}] or map form {NAME: {...}}. */
static void parse_params(wf_src *s, const json_t *node, const char *ptr, int output,
                         bt_wf_param **out, size_t *nout)
{
    const char *what = output ? "outputs" : "inputs";
    if (!node || json_is_null(node))
        return;
    if (!json_is_array(node) && !json_is_object(node)) {
        prob(s, ptr, 0, "write a list of {name: ..., ...} or a mapping NAME: {...}",
             "%s must be a list or a mapping, not %s", what, kind_of(node));
        return;
    }
    size_t n = json_is_array(node) ? json_array_size(node) : json_object_size(node);
    bt_wf_param *ps = bt_xcalloc(n + 1, sizeof *ps);
    size_t k = 0;
    if (json_is_array(node)) {
        size_t i;
        json_t *x;
        json_array_foreach(node, i, x)
        {
            char *ip = ptr_index(ptr, i);
            const char *name = json_is_object(x) ? bt_json_str(x, "name", NULL) : NULL;
            if (!name) {
                prob(s, ip, 1, "add name: NAME", "%s entry %zu has no name", what, i + 1);
            } else if (!valid_name(name)) {
                char *np = ptr_join(ip, "name");
                prob(s, np, 0, "use letters, digits, '-' and '_'", "'%s' is not a valid %s name",
                     name, output ? "output" : "input");
                free(np);
            } else if (find_param(ps, k, name)) {
                char *np = ptr_join(ip, "name");
                prob(s, np, 0, "give each its own name", "duplicate %s '%s'",
                     output ? "output" : "input", name);
                free(np);
            } else {
                parse_param(s, &ps[k++], name, x, ip, output);
            }
            free(ip);
        }
    } else {
        const char *name;
        json_t *x;
        json_object_foreach((json_t *)node, name, x)
        {
            char *ip = ptr_join(ptr, name);
            if (!valid_name(name))
                prob(s, ip, 1, "use letters, digits, '-' and '_'", "'%s' is not a valid %s name",
                     name, output ? "output" : "input");
            else
                parse_param(s, &ps[k++], name, x, ip, output);
            free(ip);
        }
    }
    *out = ps;
    *nout = k;
}

/* ---- the workflow document ---- */

/* metadata.KEY or KEY at the top level. */
static const char *meta_str(wf_src *s, const json_t *root, const json_t *meta, const char *key,
                            char **tmp)
{
    json_t *mv = meta ? json_object_get(meta, key) : NULL;
    json_t *tv = json_object_get(root, key);
    if (mv && tv) {
        char *p = ptr_join("", key);
        prob(s, p, 1, "keep one of them", "'%s' is given both in metadata and at the top level",
             key);
        free(p);
    }
    if (mv)
        return get_str(s, meta, "/metadata", key, "metadata", tmp, 1);
    return get_str(s, root, "", key, "the workflow", tmp, 1);
}

static void parse_workflow(const loader *L, wf_src *s, const char *default_id)
{
    json_t *root = bt_yaml_doc_root(s->doc);
    wf_item *it = s->item;
    bt_workflow *w = &it->w;
    w->max_iterations = 1;
    w->max_suggestions = BT_WORKFLOW_DEFAULT_MAX_SUGG;
    const json_t *steps = NULL, *meta = NULL;
    const char *steps_ptr = "/steps";
    if (json_is_array(root)) {
        steps = root; /* a bare list of steps (seed 004's per-workflow list) */
        steps_ptr = "";
    } else if (!json_is_object(root)) {
        prob(s, "", 0, "write metadata:, inputs:, steps: and outputs:",
             "a workflow file must be a mapping with metadata and steps, not %s", kind_of(root));
        return;
    } else {
        check_keys(s, root, "", top_keys, COUNT(top_keys), "the workflow");
        meta = json_object_get(root, "metadata");
        if (meta && !json_is_object(meta)) {
            prob(s, "/metadata", 0, "write metadata: {id: ..., name: ...}",
                 "metadata must be a mapping, not %s", kind_of(meta));
            meta = NULL;
        }
        if (meta)
            check_keys(s, meta, "/metadata", meta_keys, COUNT(meta_keys), "metadata");
        char *tmp = NULL;
        static const size_t offs[] = {offsetof(bt_workflow, id), offsetof(bt_workflow, name),
                                      offsetof(bt_workflow, version), offsetof(bt_workflow, type),
                                      offsetof(bt_workflow, description)};
        for (size_t i = 0; i < COUNT(meta_keys); i++) {
            const char *v = meta_str(s, root, meta, meta_keys[i], &tmp);
            if (v && *v)
                *(char **)((char *)w + offs[i]) = bt_xstrdup(v);
            free(tmp);
            tmp = NULL;
        }
        steps = json_object_get(root, "steps");
    }
    if (w->id && !valid_name(w->id)) {
        const char *ip = meta && json_object_get(meta, "id") ? "/metadata/id" : "/id";
        prob(s, ip, 0, "use letters, digits, '.', '-' and '_'",
             "workflow id '%s' has characters an id cannot have", w->id);
    }
    if (!w->id) {
        if (default_id && valid_name(default_id))
            w->id = bt_xstrdup(default_id);
        else
            prob(s, "", 0, "add metadata: {id: NAME}", "the workflow has no id");
    }
    if (!w->name && w->id)
        w->name = bt_xstrdup(w->id);
    if (!w->version)
        w->version = bt_xstrdup("1");

    if (json_is_object(root)) {
        json_t *mi = json_object_get(root, "max_iterations");
        if (mi && !json_is_null(mi)) {
            if (json_is_integer(mi) && json_integer_value(mi) >= 1 &&
                json_integer_value(mi) <= MAX_ITERATIONS_LIMIT)
                w->max_iterations = (int)json_integer_value(mi);
            else
                prob(s, "/max_iterations", 0, "write a whole number from 1 to 100",
                     "max_iterations must be a whole number from 1 to %d", MAX_ITERATIONS_LIMIT);
        }
        json_t *stop = json_object_get(root, "stop");
        if (stop && !json_is_null(stop)) {
            if (!json_is_object(stop)) {
                prob(s, "/stop", 0, "write stop: {review_step: ID, max_suggestions: 3}",
                     "stop must be a mapping, not %s", kind_of(stop));
            } else {
                check_keys(s, stop, "/stop", stop_keys, COUNT(stop_keys), "stop");
                char *tmp = NULL;
                const char *rs = get_str(s, stop, "/stop", "review_step", "stop", &tmp, 0);
                if (rs)
                    w->review_step = bt_xstrdup(rs);
                json_t *ms = json_object_get(stop, "max_suggestions");
                if (ms && !json_is_null(ms)) {
                    if (json_is_integer(ms) && json_integer_value(ms) >= 0 &&
                        json_integer_value(ms) <= 1000)
                        w->max_suggestions = (int)json_integer_value(ms);
                    else
                        prob(s, "/stop/max_suggestions", 0, "write a whole number (0 or more)",
                             "max_suggestions must be a whole number, 0 or more");
                }
                free(tmp);
            }
        }
        char *tmp = NULL;
        const char *off = get_str(s, root, "", "offline", "the workflow", &tmp, 0);
        if (off)
            w->offline = bt_xstrdup(off);
        free(tmp);
        parse_params(s, json_object_get(root, "inputs"), "/inputs", 0, &w->inputs, &w->ninputs);
        json_t *pl = json_object_get(root, "planner");
        if (pl && !json_is_null(pl)) {
            if (json_is_boolean(pl))
                w->planned = json_is_true(pl);
            else
                prob(s, "/planner", 0, "write planner: true (or leave it out)",
                     "planner must be true or false, not %s", kind_of(pl));
        }
    }

    if (w->planned) {
        /* the dynamic planner chooses the steps of each run (core/planner.h) */
        if (steps && !json_is_null(steps) && !(json_is_array(steps) && json_array_size(steps) == 0))
            prob(s, steps_ptr, 0, "remove steps: (or planner: true)",
                 "a workflow with planner: true has no steps of its own: the planner chooses "
                 "them for each run");
    } else if (!steps || json_is_null(steps)) {
        prob(s, "", 0, "add steps: [- agent: NAME ...]", "the workflow has no steps");
    } else if (!json_is_array(steps) || json_array_size(steps) == 0) {
        prob(s, steps_ptr, 0, "write steps as a list: - id: ...", "steps must be a non-empty list");
    } else {
        size_t n = json_array_size(steps);
        w->steps = bt_xcalloc(n, sizeof *w->steps);
        w->nsteps = n;
        s->target_ptr = bt_xcalloc(n, sizeof *s->target_ptr);
        s->ntarget = n;
        step_aux *aux = bt_xcalloc(n, sizeof *aux);
        for (size_t i = 0; i < n; i++) {
            aux[i].ptr = ptr_index(steps_ptr, i);
            aux[i].node = json_array_get(steps, i);
            w->steps[i].seq = (int)i;
            w->steps[i].pointer = bt_xstrdup(aux[i].ptr);
        }
        int ok = 1;
        for (size_t i = 0; i < n; i++)
            if (!json_is_object(aux[i].node)) {
                prob(s, aux[i].ptr, 0, "write each step as a mapping (- agent: codex ...)",
                     "step %zu must be a mapping, not %s", i + 1, kind_of(aux[i].node));
                ok = 0;
            }
        if (ok) {
            assign_ids(L, s, steps, aux);
            for (size_t i = 0; i < n; i++)
                parse_step(L, s, &w->steps[i], &aux[i]);
        } else {
            for (size_t i = 0; i < n; i++) {
                bt_strbuf b = BT_STRBUF_INIT;
                bt_strbuf_addf(&b, "step-%zu", i + 1);
                w->steps[i].id = bt_strbuf_detach(&b, NULL);
                w->steps[i].name = bt_xstrdup(w->steps[i].id);
                w->steps[i].inputs = json_object();
            }
        }
        /* templates need every step id and input */
        for (size_t i = 0; ok && i < n; i++)
            check_step_templates(s, &w->steps[i], &aux[i]);
        for (size_t i = 0; i < n; i++)
            aux_clear(&aux[i]);
        free(aux);
    }
    if (json_is_object(root))
        parse_params(s, json_object_get(root, "outputs"), "/outputs", 1, &w->outputs, &w->noutputs);
    for (size_t i = 0; i < w->noutputs; i++) {
        bt_wf_param *o = &w->outputs[i];
        if (!o->value.src)
            continue;
        json_t *on = json_object_get(root, "outputs");
        char *op = NULL;
        if (json_is_array(on)) {
            size_t j;
            json_t *x;
            json_array_foreach(on, j, x)
            {
                if (!op && json_is_object(x) && strcmp(bt_json_str(x, "name", ""), o->name) == 0) {
                    char *ip = ptr_index("/outputs", j);
                    op = ptr_join(ip, "value");
                    free(ip);
                }
            }
        } else {
            char *ip = ptr_join("/outputs", o->name);
            json_t *x = json_object_get(on, o->name);
            op = json_is_object(x) ? ptr_join(ip, "value") : bt_xstrdup(ip);
            free(ip);
        }
        char what[300];
        snprintf(what, sizeof what, "output '%s'", o->name);
        o->value.tmpl = check_text(s, w, o->value.src, op ? op : "/outputs", what);
        free(op);
    }
    if (w->review_step) {
        int found = 0;
        for (size_t i = 0; i < w->nsteps; i++)
            if (w->steps[i].id && strcmp(w->steps[i].id, w->review_step) == 0)
                found = 1;
        if (!found && w->nsteps > 0) {
            const char **cand = bt_xcalloc(w->nsteps + 1, sizeof *cand);
            for (size_t i = 0; i < w->nsteps; i++)
                cand[i] = w->steps[i].id;
            const char *sg = suggest(w->review_step, cand, w->nsteps);
            free(cand);
            if (sg)
                prob(s, "/stop/review_step", 0, "name one of the workflow's step ids",
                     "stop.review_step '%s' is not a step of this workflow; did you mean '%s'?",
                     w->review_step, sg);
            else
                prob(s, "/stop/review_step", 0, "name one of the workflow's step ids",
                     "stop.review_step '%s' is not a step of this workflow", w->review_step);
        }
    }
}

/* Parse text as one workflow source (problems go to L->probs). */
static wf_src *parse_src(const loader *L, const char *file, const char *text, size_t len,
                         bool builtin, bool from_dir, const char *default_id)
{
    wf_src *s = bt_xcalloc(1, sizeof *s);
    s->file = bt_xstrdup(file);
    s->text = text;
    s->len = len;
    s->builtin = builtin;
    s->from_dir = from_dir;
    s->report = true;
    s->probs = L->probs;
    bt_error e = BT_ERROR_INIT;
    if (bt_yaml_load_string(file, text, len, &s->doc, &e) < 0) {
        int l = 0, c = 0, off = 0;
        const char *m = e.msg;
        size_t fl = strlen(file);
        if (strncmp(m, file, fl) == 0 && m[fl] == ':' &&
            sscanf(m + fl + 1, "%d:%d: %n", &l, &c, &off) == 2)
            m += fl + 1 + off;
        bt_yaml_pos p = {l, c};
        prob_at(s, p, NULL, "fix the YAML syntax at that position", "%s", m);
        return s;
    }
    s->item = bt_xcalloc(1, sizeof *s->item);
    bt_workflow *w = &s->item->w;
    w->builtin = builtin;
    w->source = bt_xstrdup(file);
    w->digest = digest16(text, len);
    parse_workflow(L, s, default_id);
    return s;
}

/* ---- checks across workflows ---- */

typedef struct graph {
    wf_src **v; /* every workflow of the final set */
    size_t n;
    int **edge;           /* per workflow, per step: index of the execute-workflow target or -1 */
    unsigned char *reach; /* n*n: reach[i*n+j] = j reachable from i in >= 1 call */
} graph;

static int graph_find(const graph *g, const char *id_or_name)
{
    if (!id_or_name)
        return -1;
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->v[i]->item->w.id, id_or_name) == 0)
            return (int)i;
    for (size_t i = 0; i < g->n; i++)
        if (loose_eq(g->v[i]->item->w.id, id_or_name))
            return (int)i;
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i]->item->w.name && loose_eq(g->v[i]->item->w.name, id_or_name))
            return (int)i;
    return -1;
}

/* Targets, their inputs, and the offline variant. */
static void check_targets(graph *g)
{
    for (size_t i = 0; i < g->n; i++) {
        wf_src *s = g->v[i];
        bt_workflow *w = &s->item->w;
        g->edge[i] = bt_xcalloc(w->nsteps + 1, sizeof **g->edge);
        for (size_t k = 0; k < w->nsteps; k++) {
            bt_wf_step *st = &w->steps[k];
            g->edge[i][k] = -1;
            if (st->action != BT_WF_WORKFLOW || !st->workflow)
                continue;
            const char *tptr = k < s->ntarget && s->target_ptr[k] ? s->target_ptr[k] : st->pointer;
            int t = graph_find(g, st->workflow);
            if (t < 0) {
                const char **cand = bt_xcalloc(g->n + 1, sizeof *cand);
                for (size_t j = 0; j < g->n; j++)
                    cand[j] = g->v[j]->item->w.id;
                const char *sugg = suggest(st->workflow, cand, g->n);
                free(cand);
                if (sugg)
                    prob(s, tptr, 0, "name a built-in workflow or one in workflows_dir",
                         "unknown workflow '%s' in step '%s'; did you mean '%s'?", st->workflow,
                         st->id, sugg);
                else
                    prob(s, tptr, 0, "name a built-in workflow or one in workflows_dir",
                         "unknown workflow '%s' in step '%s'", st->workflow, st->id);
                continue;
            }
            g->edge[i][k] = t;
            const bt_workflow *tw = &g->v[t]->item->w;
            if (tw->planned) {
                /* its steps exist only once a run has planned them */
                prob(s, tptr, 0, "run it as a task's workflow, or call a workflow with steps",
                     "step '%s' calls workflow '%s', which is planned at run time and cannot be "
                     "called from another workflow",
                     st->id, tw->id);
                continue;
            }
            if (strcmp(st->workflow, tw->id) != 0) {
                free(st->workflow);
                st->workflow = bt_xstrdup(tw->id);
            }
            if (!s->report)
                continue;
            char *inptr = ptr_join(st->pointer, "inputs");
            for (size_t p = 0; p < tw->ninputs; p++) {
                const bt_wf_param *pa = &tw->inputs[p];
                json_t *given = json_object_get(st->inputs, pa->name);
                if (given && !json_is_null(given)) {
                    if (json_is_string(given) && has_template(json_string_value(given)))
                        continue;
                    json_t *conv = NULL;
                    if (!value_fits(pa->type, pa->values, given, &conv)) {
                        char *gp = ptr_join(inptr, pa->name);
                        bt_strbuf t2 = BT_STRBUF_INIT;
                        describe_type(&t2, pa);
                        prob(s, gp, 0, "give a value of the input's type",
                             "input %s of workflow %s must be %s (step '%s')", pa->name, tw->id,
                             t2.buf, st->id);
                        bt_strbuf_release(&t2);
                        free(gp);
                    }
                    json_decref(conv);
                    continue;
                }
                if (!pa->required || (pa->dflt && !json_is_null(pa->dflt)))
                    continue;
                bt_strbuf t2 = BT_STRBUF_INIT, hint = BT_STRBUF_INIT;
                describe_type(&t2, pa);
                bt_strbuf_addf(&hint, "add inputs: {%s: ...} to the step", pa->name);
                prob(s, inptr, 1, hint.buf,
                     "step '%s' leaves input %s of workflow %s unset (%s, required)", st->id,
                     pa->name, tw->id, t2.buf);
                bt_strbuf_release(&t2);
                bt_strbuf_release(&hint);
            }
            const char *k2;
            json_t *x;
            json_object_foreach(st->inputs, k2, x)
            {
                if (find_param(tw->inputs, tw->ninputs, k2))
                    continue;
                const char **cand = bt_xcalloc(tw->ninputs + 1, sizeof *cand);
                bt_strbuf hint = BT_STRBUF_INIT;
                bt_strbuf_addf(&hint, "inputs of %s: ", tw->id);
                for (size_t p = 0; p < tw->ninputs; p++) {
                    cand[p] = tw->inputs[p].name;
                    bt_strbuf_addf(&hint, "%s%s", p ? ", " : "", cand[p]);
                }
                if (!tw->ninputs)
                    bt_strbuf_addstr(&hint, "none");
                const char *sugg = suggest(k2, cand, tw->ninputs);
                char *gp = ptr_join(inptr, k2);
                if (sugg)
                    prob(s, gp, 1, hint.buf, "workflow %s has no input '%s'; did you mean '%s'?",
                         tw->id, k2, sugg);
                else
                    prob(s, gp, 1, hint.buf, "workflow %s has no input '%s'", tw->id, k2);
                free(gp);
                free(cand);
                bt_strbuf_release(&hint);
            }
            free(inptr);
        }
        if (w->offline) {
            int t = graph_find(g, w->offline);
            if (t < 0) {
                prob(s, "/offline", 0, "name a workflow that runs on local agents",
                     "unknown offline workflow '%s'", w->offline);
            } else if (strcmp(w->offline, g->v[t]->item->w.id) != 0) {
                free(w->offline);
                w->offline = bt_xstrdup(g->v[t]->item->w.id);
            }
        }
    }
}

static void compute_reach(graph *g)
{
    size_t n = g->n;
    g->reach = bt_xcalloc(n * n + 1, 1);
    int *stack = bt_xcalloc(n + 1, sizeof *stack);
    for (size_t i = 0; i < n; i++) {
        unsigned char *r = g->reach + i * n;
        size_t sp = 0;
        stack[sp++] = (int)i;
        while (sp > 0) {
            int u = stack[--sp];
            const bt_workflow *w = &g->v[u]->item->w;
            for (size_t k = 0; k < w->nsteps; k++) {
                int t = g->edge[u][k];
                if (t >= 0 && !r[t]) {
                    r[t] = 1;
                    stack[sp++] = t;
                }
            }
        }
    }
    free(stack);
}

/* The shortest call path from a to b (ids appended to sb, "a → ... → b"). */
static void call_path(const graph *g, int a, int b, bt_strbuf *sb)
{
    size_t n = g->n;
    int *prev = bt_xmalloc((n + 1) * sizeof *prev);
    int *queue = bt_xmalloc((n + 1) * sizeof *queue);
    for (size_t i = 0; i < n; i++)
        prev[i] = -2;
    size_t qh = 0, qt = 0;
    queue[qt++] = a;
    prev[a] = -1;
    while (qh < qt) {
        int u = queue[qh++];
        if (u == b && qh > 1)
            break;
        const bt_workflow *w = &g->v[u]->item->w;
        for (size_t k = 0; k < w->nsteps; k++) {
            int t = g->edge[u][k];
            if (t >= 0 && prev[t] == -2) {
                prev[t] = u;
                queue[qt++] = t;
            }
        }
    }
    int chain[64], nc = 0;
    for (int u = b; u >= 0 && nc < 64; u = prev[u]) {
        chain[nc++] = u;
        if (u == a)
            break;
    }
    for (int i = nc - 1; i >= 0; i--)
        bt_strbuf_addf(sb, "%s%s", i == nc - 1 ? "" : " → ", g->v[chain[i]]->item->w.id);
    free(prev);
    free(queue);
}

/* Each cycle (strongly connected group of workflows calling each other) once, at the
 * calling step of its first member (user workflows before built-ins, then by id). */
static void check_cycles(graph *g)
{
    size_t n = g->n;
    unsigned char *done = bt_xcalloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) {
        if (done[i] || !g->reach[i * n + i])
            continue;
        int rep = -1;
        for (size_t j = 0; j < n; j++) {
            if (!(g->reach[i * n + j] && g->reach[j * n + i]))
                continue;
            done[j] = 1;
            if (!g->v[j]->report)
                continue;
            if (rep < 0) {
                rep = (int)j;
                continue;
            }
            const wf_src *a = g->v[rep], *b = g->v[j];
            if ((a->builtin && !b->builtin) ||
                (a->builtin == b->builtin && strcmp(b->item->w.id, a->item->w.id) < 0))
                rep = (int)j;
        }
        if (rep < 0)
            continue;
        wf_src *s = g->v[rep];
        const bt_workflow *w = &s->item->w;
        for (size_t k = 0; k < w->nsteps; k++) {
            int t = g->edge[rep][k];
            if (t < 0 || !g->reach[(size_t)t * n + (size_t)rep])
                continue;
            bt_strbuf path = BT_STRBUF_INIT;
            bt_strbuf_addf(&path, "%s → ", w->id);
            if (t == rep)
                bt_strbuf_addstr(&path, w->id);
            else
                call_path(g, t, rep, &path);
            const char *tptr =
                k < s->ntarget && s->target_ptr[k] ? s->target_ptr[k] : w->steps[k].pointer;
            prob(s, tptr, 0, "break the cycle: a workflow cannot call itself, even indirectly",
                 "workflow cycle: %s (step '%s')", path.buf, w->steps[k].id);
            bt_strbuf_release(&path);
            break;
        }
    }
    free(done);
}

/* Longest chain of nested calls below i; -1 when it reaches a cycle. */
static int depth_of(const graph *g, size_t i, int *memo, int *next)
{
    size_t n = g->n;
    if (memo[i] != -2)
        return memo[i];
    if (g->reach[i * n + i]) {
        memo[i] = -1;
        return -1;
    }
    const bt_workflow *w = &g->v[i]->item->w;
    int best = 0;
    next[i] = -1;
    for (size_t k = 0; k < w->nsteps; k++) {
        int t = g->edge[i][k];
        if (t < 0)
            continue;
        int d = depth_of(g, (size_t)t, memo, next);
        if (d < 0) {
            memo[i] = -1;
            return -1;
        }
        if (d + 1 > best) {
            best = d + 1;
            next[i] = (int)k;
        }
    }
    memo[i] = best;
    return best;
}

static void check_depth(graph *g)
{
    size_t n = g->n;
    int *memo = bt_xmalloc((n + 1) * sizeof *memo);
    int *next = bt_xmalloc((n + 1) * sizeof *next);
    for (size_t i = 0; i < n; i++)
        memo[i] = -2;
    for (size_t i = 0; i < n; i++) {
        int d = depth_of(g, i, memo, next);
        if (d != BT_WORKFLOW_MAX_DEPTH + 1 || !g->v[i]->report)
            continue;
        bt_strbuf chain = BT_STRBUF_INIT;
        for (int u = (int)i, c = 0; u >= 0 && c <= d; c++) {
            bt_strbuf_addf(&chain, "%s%s", c ? " → " : "", g->v[u]->item->w.id);
            u = next[u] >= 0 ? g->edge[u][next[u]] : -1;
        }
        wf_src *s = g->v[i];
        int k = next[i];
        const char *tptr = (size_t)k < s->ntarget && s->target_ptr[k] ? s->target_ptr[k]
                                                                      : s->item->w.steps[k].pointer;
        prob(s, tptr, 0, "flatten the chain of execute-workflow calls",
             "sub-workflows nested %d deep (at most %d): %s", d, BT_WORKFLOW_MAX_DEPTH, chain.buf);
        bt_strbuf_release(&chain);
    }
    free(memo);
    free(next);
}

/* What an unavailable workflow needs, through its sub-workflows too. */
static void propagate_missing(graph *g)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        for (size_t i = 0; i < g->n; i++) {
            wf_item *it = g->v[i]->item;
            for (size_t k = 0; k < it->w.nsteps; k++) {
                int t = g->edge[i][k];
                if (t < 0 || (size_t)t == i)
                    continue;
                const wf_item *ti = g->v[t]->item;
                for (size_t j = 0; j < ti->need.len; j++)
                    if (!bt_strvec_contains(&it->need, ti->need.items[j])) {
                        bt_strvec_push(&it->need, ti->need.items[j]);
                        changed = 1;
                    }
                if (ti->need_any && !it->need_any) {
                    it->need_any = true;
                    changed = 1;
                }
            }
        }
    }
    for (size_t i = 0; i < g->n; i++) {
        wf_item *it = g->v[i]->item;
        free(it->w.missing);
        it->w.missing = NULL;
        if (it->need.len == 0 && !it->need_any)
            continue;
        bt_strbuf m = BT_STRBUF_INIT;
        if (it->need.len) {
            bt_strbuf_addf(&m, "needs agent%s ", it->need.len == 1 ? "" : "s");
            for (size_t j = 0; j < it->need.len; j++)
                bt_strbuf_addf(&m, "%s%s", j ? ", " : "", it->need.items[j]);
        }
        if (it->need_any)
            bt_strbuf_addf(&m, "%sneeds an agent for its personas (none is configured)",
                           it->need.len ? "; " : "");
        it->w.missing = bt_strbuf_detach(&m, NULL);
    }
}

static void cross_check(wf_src **v, size_t n)
{
    graph g = {v, n, bt_xcalloc(n + 1, sizeof *g.edge), NULL};
    check_targets(&g);
    compute_reach(&g);
    check_cycles(&g);
    check_depth(&g);
    propagate_missing(&g);
    for (size_t i = 0; i < n; i++)
        free(g.edge[i]);
    free(g.edge);
    free(g.reach);
}

/* ---- the set ---- */

static int item_cmp(const void *a, const void *b)
{
    return strcmp((*(wf_item *const *)a)->w.id, (*(wf_item *const *)b)->w.id);
}

static int problem_cmp(const void *a, const void *b)
{
    const bt_config_problem *x = a, *y = b;
    int c = strcmp(x->file ? x->file : "", y->file ? y->file : "");
    if (c)
        return c;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return strcmp(x->message ? x->message : "", y->message ? y->message : "");
}

static int finish_problems(bt_config_problems *probs, size_t before, const char *what,
                           bt_error *err)
{
    size_t n = probs->len - before;
    if (n == 0)
        return 0;
    qsort(probs->items + before, n, sizeof *probs->items, problem_cmp);
    const bt_config_problem *f = &probs->items[before];
    if (f->line > 0)
        return bt_errorf(err, BT_EINVAL, "%zu problem%s in %s; first: %s:%d:%d: %s", n,
                         n == 1 ? "" : "s", what, f->file, f->line, f->column, f->message);
    return bt_errorf(err, BT_EINVAL, "%zu problem%s in %s; first: %s: %s", n, n == 1 ? "" : "s",
                     what, f->file, f->message);
}

static void sort_set(bt_workflows *set)
{
    if (set->wfs.len > 1)
        qsort(set->wfs.items, set->wfs.len, sizeof *set->wfs.items, item_cmp);
    if (set->personas.len > 1)
        qsort(set->personas.items, set->personas.len, sizeof *set->personas.items, persona_cmp);
}

int bt_workflows_load(const bt_config *cfg, const bt_workflows_opts *opts, bt_workflows **out,
                      bt_config_problems *probs, bt_error *err)
{
    *out = NULL;
    bt_config_problems local = {0};
    bt_config_problems *P = probs ? probs : &local;
    size_t before = P->len;
    bt_workflows *set = bt_xcalloc(1, sizeof *set);
    int no_builtin = opts && opts->no_builtin;

    /* 1. personas */
    if (!no_builtin)
        load_builtin_personas(set, P);
    const char *pdir = opts && opts->personas_dir ? opts->personas_dir
                       : cfg                      ? cfg->personas_dir
                                                  : NULL;
    if (pdir && *pdir)
        load_persona_dir(set, pdir, P);
    sort_set(set);

    /* 2. every workflow source on its own */
    loader L = {cfg, set, P};
    BT_VEC(wf_src *) srcs = {0};
    if (!no_builtin) {
        size_t n = 0;
        const bt_embed_file *files = bt_embed_list(&n);
        for (size_t i = 0; i < n; i++) {
            const char *path = files[i].path;
            if (!bt_str_starts_with(path, "workflows/") || strchr(path + 10, '/') ||
                !(bt_str_ends_with(path, ".yaml") || bt_str_ends_with(path, ".yml")))
                continue;
            bt_strbuf src = BT_STRBUF_INIT;
            bt_strbuf_addf(&src, "builtin:%s", path);
            wf_src *s = parse_src(&L, src.buf, (const char *)files[i].data, files[i].len, true,
                                  false, NULL);
            bt_vec_push(&srcs, s);
            bt_strbuf_release(&src);
        }
    }
    const char *wdir = opts && opts->workflows_dir ? opts->workflows_dir
                       : cfg                       ? cfg->workflows_dir
                                                   : NULL;
    if (wdir && *wdir) {
        static const char *const exts[] = {".yaml", ".yml"};
        bt_strvec names = BT_STRVEC_INIT;
        bt_error e = BT_ERROR_INIT;
        int rc = list_dir(wdir, exts, COUNT(exts), &names, &e);
        if (rc < 0)
            bt_config_problem_add(P, wdir, 0, 0, "workflows_dir", e.msg,
                                  "check the directory's permissions");
        for (size_t i = 0; rc == 0 && i < names.len; i++) {
            bt_strbuf path = BT_STRBUF_INIT;
            bt_strbuf_addf(&path, "%s/%s", wdir, names.items[i]);
            char *data = NULL;
            size_t len = 0;
            bt_error fe = BT_ERROR_INIT;
            if (bt_path_read_file(path.buf, BT_YAML_MAX_FILE, &data, &len, &fe) < 0) {
                bt_config_problem_add(P, path.buf, 0, 0, NULL, fe.msg, "check the file");
                bt_strbuf_release(&path);
                continue;
            }
            /* a copy of a built-in (running from a source checkout) is the built-in */
            const bt_embed_file *twin =
                no_builtin ? NULL : builtin_twin("workflows/", names.items[i]);
            if (twin && twin->len == len && memcmp(twin->data, data, len) == 0) {
                free(data);
                bt_strbuf_release(&path);
                continue;
            }
            char *id = base_name_noext(names.items[i]);
            wf_src *s = parse_src(&L, path.buf, data, len, false, true, id);
            s->owned_text = data;
            free(id);
            bt_vec_push(&srcs, s);
            bt_strbuf_release(&path);
        }
        bt_strvec_clear(&names);
    }

    /* 3. the final set: a later id replaces an earlier one */
    BT_VEC(wf_src *) fin = {0};
    for (size_t i = 0; i < srcs.len; i++) {
        wf_src *s = srcs.items[i];
        if (!s->item || !s->item->w.id)
            continue;
        size_t j = 0;
        while (j < fin.len && strcmp(fin.items[j]->item->w.id, s->item->w.id) != 0)
            j++;
        if (j == fin.len) {
            bt_vec_push(&fin, s);
            continue;
        }
        wf_src *old = fin.items[j];
        if (!old->builtin && !s->builtin) {
            const char *ip = json_is_object(bt_yaml_doc_root(s->doc)) &&
                                     json_object_get(bt_yaml_doc_root(s->doc), "metadata")
                                 ? "/metadata/id"
                                 : "/id";
            bt_strbuf hint = BT_STRBUF_INIT;
            bt_strbuf_addf(&hint, "rename one of them (the other is %s)", old->file);
            prob(s, ip, 0, hint.buf, "workflow id '%s' is defined twice in workflows_dir",
                 s->item->w.id);
            bt_strbuf_release(&hint);
        }
        fin.items[j] = s;
    }
    cross_check(fin.items, fin.len);

    int rc = finish_problems(P, before, "the workflows", err);
    if (rc == 0) {
        for (size_t i = 0; i < fin.len; i++) {
            bt_vec_push(&set->wfs, fin.items[i]->item);
            fin.items[i]->item = NULL;
        }
        sort_set(set);
        *out = set;
    } else {
        bt_workflows_free(set);
    }
    for (size_t i = 0; i < srcs.len; i++)
        src_free(srcs.items[i]);
    bt_vec_free(&srcs);
    bt_vec_free(&fin);
    bt_config_problems_free(&local);
    return rc;
}

const bt_workflow *bt_workflow_offline_variant(const bt_workflows *set, const bt_workflow *w,
                                               char *why, size_t n)
{
    if (w->planned && !w->offline) {
        /* the planner only considers local agents when offline */
        if (why)
            snprintf(why, n, "workflow %s planned with local agents only", w->id);
        return w;
    }
    const char *alt = w->offline ? w->offline : "offline-default";
    const bt_workflow *v = strcmp(alt, w->id) == 0 ? w : bt_workflows_find(set, alt);
    if (v == w) {
        if (why)
            snprintf(why, n, "workflow %s is its own offline variant", w->id);
        return w;
    }
    if (v && !v->missing) {
        if (why)
            snprintf(why, n, "workflow %s instead of %s", v->id, w->id);
        return v;
    }
    if (why) {
        if (v)
            snprintf(why, n,
                     "workflow %s with local agents only (its offline variant %s cannot "
                     "run: %s)",
                     w->id, v->id, v->missing);
        else
            snprintf(why, n, "workflow %s with local agents only (no offline variant '%s')", w->id,
                     alt);
    }
    return w;
}

int bt_workflows_add_string(bt_workflows *set, const bt_config *cfg, const char *name,
                            const char *text, size_t len, bt_config_problems *probs, bt_error *err)
{
    bt_config_problems local = {0};
    bt_config_problems *P = probs ? probs : &local;
    size_t before = P->len;
    bt_workflows *tmp = NULL;
    if (!set) {
        tmp = bt_xcalloc(1, sizeof *tmp);
        load_builtin_personas(tmp, P);
        sort_set(tmp);
    }
    loader L = {cfg, set ? set : tmp, P};
    const char *nm = name ? name : "workflow";
    wf_src *s = parse_src(&L, nm, text, len, false, false, NULL);
    BT_VEC(wf_src *) all = {0};
    if (s->item && s->item->w.id) {
        for (size_t i = 0; set && i < set->wfs.len; i++) {
            if (strcmp(set->wfs.items[i]->w.id, s->item->w.id) == 0)
                continue;
            wf_src *e = bt_xcalloc(1, sizeof *e);
            e->item = set->wfs.items[i];
            e->builtin = e->item->w.builtin;
            e->report = false;
            e->probs = P;
            bt_vec_push(&all, e);
        }
        bt_vec_push(&all, s);
        cross_check(all.items, all.len);
    }
    int rc = finish_problems(P, before, nm, err);
    if (rc == 0 && set) {
        wf_item *it = s->item;
        s->item = NULL;
        size_t i = 0;
        while (i < set->wfs.len && strcmp(set->wfs.items[i]->w.id, it->w.id) != 0)
            i++;
        if (i < set->wfs.len) {
            item_free(set->wfs.items[i]);
            set->wfs.items[i] = it;
        } else {
            bt_vec_push(&set->wfs, it);
        }
        sort_set(set);
    }
    for (size_t i = 0; i < all.len; i++) {
        if (all.items[i] == s)
            continue;
        all.items[i]->item = NULL; /* borrowed from the set */
        src_free(all.items[i]);
    }
    bt_vec_free(&all);
    src_free(s);
    bt_workflows_free(tmp);
    bt_config_problems_free(&local);
    return rc;
}

int bt_workflows_compile(const bt_workflows *base, const bt_config *cfg, const char *name,
                         const char *text, size_t len, bt_workflows **out,
                         bt_config_problems *probs, bt_error *err)
{
    *out = NULL;
    bt_config_problems local = {0};
    bt_config_problems *P = probs ? probs : &local;
    size_t before = P->len;
    bt_workflows *tmp = NULL;
    if (!base) {
        tmp = bt_xcalloc(1, sizeof *tmp);
        load_builtin_personas(tmp, P);
        sort_set(tmp);
    }
    loader L = {cfg, base ? base : tmp, P};
    const char *nm = name ? name : "workflow";
    wf_src *s = parse_src(&L, nm, text, len, false, false, NULL);
    BT_VEC(wf_src *) all = {0};
    if (s->item && s->item->w.id) {
        /* base's workflows take part through copies: the cross checks recompute what
         * each one needs, and base must stay as it is */
        for (size_t i = 0; base && i < base->wfs.len; i++) {
            const wf_item *bi = base->wfs.items[i];
            if (strcmp(bi->w.id, s->item->w.id) == 0)
                continue;
            wf_item *c = bt_xcalloc(1, sizeof *c);
            c->w = bi->w;
            c->w.missing = NULL;
            for (size_t k = 0; k < bi->need.len; k++)
                bt_strvec_push(&c->need, bi->need.items[k]);
            c->need_any = bi->need_any;
            wf_src *e = bt_xcalloc(1, sizeof *e);
            e->item = c;
            e->builtin = c->w.builtin;
            e->report = false;
            e->probs = P;
            bt_vec_push(&all, e);
        }
        bt_vec_push(&all, s);
        cross_check(all.items, all.len);
    }
    int rc = finish_problems(P, before, nm, err);
    if (rc == 0 && !s->item)
        rc = bt_errorf(err, BT_EINVAL, "%s: no workflow", nm);
    if (rc == 0 && s->item->w.missing)
        rc = bt_errorf(err, BT_EUNAVAIL, "workflow %s cannot run: %s", s->item->w.id,
                       s->item->w.missing);
    if (rc == 0) {
        bt_workflows *set = bt_xcalloc(1, sizeof *set);
        bt_vec_push(&set->wfs, s->item);
        s->item = NULL;
        *out = set;
    }
    for (size_t i = 0; i < all.len; i++) {
        if (all.items[i] == s)
            continue;
        wf_item *c = all.items[i]->item;
        free(c->w.missing);
        bt_strvec_clear(&c->need);
        free(c);
        all.items[i]->item = NULL;
        src_free(all.items[i]);
    }
    bt_vec_free(&all);
    src_free(s);
    bt_workflows_free(tmp);
    bt_config_problems_free(&local);
    return rc;
}

size_t bt_workflows_count(const bt_workflows *set)
{
    return set ? set->wfs.len : 0;
}

const bt_workflow *bt_workflows_at(const bt_workflows *set, size_t i)
{
    return set && i < set->wfs.len ? &set->wfs.items[i]->w : NULL;
}

const bt_workflow *bt_workflows_find(const bt_workflows *set, const char *id_or_name)
{
    if (!set || !id_or_name)
        return NULL;
    for (size_t i = 0; i < set->wfs.len; i++)
        if (strcmp(set->wfs.items[i]->w.id, id_or_name) == 0)
            return &set->wfs.items[i]->w;
    for (size_t i = 0; i < set->wfs.len; i++)
        if (loose_eq(set->wfs.items[i]->w.id, id_or_name))
            return &set->wfs.items[i]->w;
    for (size_t i = 0; i < set->wfs.len; i++)
        if (set->wfs.items[i]->w.name && loose_eq(set->wfs.items[i]->w.name, id_or_name))
            return &set->wfs.items[i]->w;
    return NULL;
}

size_t bt_workflows_persona_count(const bt_workflows *set)
{
    return set ? set->personas.len : 0;
}

const bt_persona *bt_workflows_persona_at(const bt_workflows *set, size_t i)
{
    return set && i < set->personas.len ? set->personas.items[i] : NULL;
}

const bt_persona *bt_workflows_persona(const bt_workflows *set, const char *name)
{
    return persona_find(set, name);
}

const bt_wf_step *bt_workflow_review_step(const bt_workflow *w)
{
    if (!w)
        return NULL;
    if (w->review_step)
        for (size_t i = 0; i < w->nsteps; i++)
            if (strcmp(w->steps[i].id, w->review_step) == 0)
                return &w->steps[i];
    for (size_t i = w->nsteps; i-- > 0;)
        if (w->steps[i].review)
            return &w->steps[i];
    for (size_t i = w->nsteps; i-- > 0;)
        if (w->steps[i].role && strcmp(w->steps[i].role, "review") == 0)
            return &w->steps[i];
    return NULL;
}

/* ---- JSON ---- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *param_json(const bt_wf_param *p, int output)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(p->name));
    if (output) {
        json_object_set_new(o, "value", str_or_null(p->value.src));
    } else {
        json_object_set_new(o, "type", str_or_null(p->type));
        json_object_set_new(o, "required", json_boolean(p->required));
        json_object_set_new(o, "default", p->dflt ? json_incref(p->dflt) : json_null());
        json_object_set_new(o, "values", p->values ? json_incref(p->values) : json_null());
    }
    json_object_set_new(o, "description", str_or_null(p->description));
    return o;
}

json_t *bt_workflow_to_json(const bt_workflow *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(w->id));
    json_object_set_new(o, "name", str_or_null(w->name));
    json_object_set_new(o, "version", str_or_null(w->version));
    json_object_set_new(o, "type", str_or_null(w->type));
    json_object_set_new(o, "description", str_or_null(w->description));
    json_object_set_new(o, "source", str_or_null(w->source));
    json_object_set_new(o, "digest", str_or_null(w->digest));
    json_object_set_new(o, "builtin", json_boolean(w->builtin));
    json_object_set_new(o, "available", json_boolean(w->missing == NULL));
    json_object_set_new(o, "planned", json_boolean(w->planned));
    json_object_set_new(o, "missing", str_or_null(w->missing));
    json_object_set_new(o, "max_iterations", json_integer(w->max_iterations));
    json_object_set_new(o, "max_suggestions", json_integer(w->max_suggestions));
    const bt_wf_step *rev = bt_workflow_review_step(w);
    json_object_set_new(o, "review_step", rev ? json_string(rev->id) : json_null());
    json_object_set_new(o, "offline", str_or_null(w->offline));
    json_t *ins = json_array();
    for (size_t i = 0; i < w->ninputs; i++)
        json_array_append_new(ins, param_json(&w->inputs[i], 0));
    json_object_set_new(o, "inputs", ins);
    json_t *outs = json_array();
    for (size_t i = 0; i < w->noutputs; i++)
        json_array_append_new(outs, param_json(&w->outputs[i], 1));
    json_object_set_new(o, "outputs", outs);
    json_t *steps = json_array(), *agents = json_array();
    for (size_t i = 0; i < w->nsteps; i++) {
        const bt_wf_step *st = &w->steps[i];
        json_t *s = json_object();
        json_object_set_new(s, "id", json_string(st->id));
        json_object_set_new(s, "name", str_or_null(st->name));
        json_object_set_new(s, "action", json_string(bt_wf_action_name(st->action)));
        json_object_set_new(s, "agent", str_or_null(st->agent));
        json_object_set_new(s, "persona", str_or_null(st->persona));
        json_object_set_new(s, "role", str_or_null(st->role));
        json_t *fb = json_array();
        for (size_t k = 0; k < st->nfallback; k++)
            json_array_append_new(fb, json_string(st->fallback[k]));
        json_object_set_new(s, "fallback", fb);
        json_object_set_new(s, "workflow", str_or_null(st->workflow));
        json_object_set_new(s, "prompt", str_or_null(st->prompt.src));
        json_object_set_new(s, "inputs", st->inputs ? json_deep_copy(st->inputs) : json_object());
        json_object_set_new(s, "when", str_or_null(st->when.src));
        json_object_set_new(s, "timeout_ms", json_integer(st->timeout_ms));
        json_object_set_new(s, "retries", json_integer(st->retries));
        json_object_set_new(s, "continue_on_error", json_boolean(st->continue_on_error));
        if (st->nlocks) {
            json_t *lk = json_array();
            for (size_t k = 0; k < st->nlocks; k++)
                json_array_append_new(lk, json_string(st->locks[k]));
            json_object_set_new(s, "locks", lk);
        }
        json_object_set_new(s, "review", json_boolean(st == rev));
        json_array_append_new(steps, s);
        if (st->agent) {
            int seen = 0;
            for (size_t k = 0; k < json_array_size(agents); k++)
                if (strcmp(json_string_value(json_array_get(agents, k)), st->agent) == 0)
                    seen = 1;
            if (!seen)
                json_array_append_new(agents, json_string(st->agent));
        }
    }
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "agents", agents);
    return o;
}

json_t *bt_persona_to_json(const bt_persona *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(p->name));
    json_object_set_new(o, "title", str_or_null(p->title));
    json_object_set_new(o, "agent", str_or_null(p->agent));
    json_object_set_new(o, "role", str_or_null(p->role));
    json_object_set_new(o, "prompt", str_or_null(p->prompt));
    json_object_set_new(o, "source", str_or_null(p->source));
    json_object_set_new(o, "builtin", json_boolean(p->builtin));
    return o;
}

json_t *bt_workflows_structure(const bt_workflows *set)
{
    json_t *o = json_object(), *wfs = json_array(), *edges = json_array(), *ps = json_array();
    for (size_t i = 0; set && i < set->wfs.len; i++) {
        const bt_workflow *w = &set->wfs.items[i]->w;
        json_array_append_new(wfs, bt_workflow_to_json(w));
        for (size_t k = 0; k < w->nsteps; k++)
            if (w->steps[k].action == BT_WF_WORKFLOW && w->steps[k].workflow)
                json_array_append_new(edges, json_pack("{ss ss ss}", "from", w->id, "step",
                                                       w->steps[k].id, "to", w->steps[k].workflow));
    }
    for (size_t i = 0; set && i < set->personas.len; i++)
        json_array_append_new(ps, bt_persona_to_json(set->personas.items[i]));
    json_object_set_new(o, "workflows", wfs);
    json_object_set_new(o, "edges", edges);
    json_object_set_new(o, "personas", ps);
    return o;
}

/* ---- counting a review's suggestions ---- */

/* {"suggestions": [...] | N} -> the count; -1 when v is not such an object. */
static int suggestions_of(const json_t *v)
{
    json_t *s = json_is_object(v) ? json_object_get(v, "suggestions") : NULL;
    if (json_is_array(s))
        return (int)json_array_size(s);
    if (json_is_integer(s))
        return json_integer_value(s) < 0 ? 0 : (int)json_integer_value(s);
    if (json_is_real(s) && isfinite(json_real_value(s)))
        return json_real_value(s) < 0 ? 0 : (int)json_real_value(s);
    return -1;
}

static int count_json(const char *text, size_t len)
{
    /* fenced blocks first: ```json ... ``` (or a bare ``` fence) */
    for (const char *p = text; (p = strstr(p, "```")) != NULL;) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        const char *close = strstr(nl + 1, "```");
        if (!close)
            break;
        json_t *v = json_loadb(nl + 1, (size_t)(close - nl - 1), 0, NULL);
        int n = suggestions_of(v);
        json_decref(v);
        if (n >= 0)
            return n;
        p = close + 3;
    }
    /* a bare object anywhere: try each '{' that opens an object with a key */
    int tries = 0;
    for (const char *p = text; (p = strchr(p, '{')) != NULL && tries < 200; p++) {
        const char *q = p + 1;
        while (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')
            q++;
        if (*q != '"')
            continue;
        tries++;
        json_t *v = json_loadb(p, len - (size_t)(p - text), JSON_DISABLE_EOF_CHECK, NULL);
        int n = suggestions_of(v);
        json_decref(v);
        if (n >= 0)
            return n;
    }
    return -1;
}

/* A line "SUGGESTIONS: N" (markdown emphasis and heading marks allowed around it). */
static int count_marker(const char *text)
{
    for (const char *l = text; l && *l;) {
        const char *e = strchr(l, '\n');
        const char *p = l;
        while (*p == ' ' || *p == '\t' || *p == '*' || *p == '#' || *p == '_' || *p == '>')
            p++;
        if (strncasecmp(p, "suggestions", 11) == 0) {
            p += 11;
            while (*p == '*' || *p == '_' || *p == ' ')
                p++;
            if (*p == ':') {
                p++;
                while (*p == ' ' || *p == '\t' || *p == '*' || *p == '_')
                    p++;
                if (isdigit((unsigned char)*p)) {
                    long n = strtol(p, NULL, 10);
                    return n > 100000 ? 100000 : (int)n;
                }
            }
        }
        l = e ? e + 1 : NULL;
    }
    return -1;
}

/* Does the first non-empty line say there is nothing to change (and not "but ...")? */
static int says_nothing(const char *text)
{
    static const char *const phrases[] = {"lgtm", "no suggestions", "no issues found", "looks good",
                                          "nothing to change"};
    const char *l = text;
    while (*l == '\n' || *l == '\r' || *l == ' ' || *l == '\t')
        l++;
    const char *e = strchr(l, '\n');
    size_t n = e ? (size_t)(e - l) : strlen(l);
    char *line = bt_xstrndup(l, n);
    bt_str_lower(line);
    int hit = 0;
    for (size_t i = 0; i < COUNT(phrases); i++)
        if (strstr(line, phrases[i]))
            hit = 1;
    if (strstr(line, " but") || strstr(line, "except") || strstr(line, "however"))
        hit = 0;
    free(line);
    return hit;
}

/* Top-level list items (no indentation) outside code fences. */
static int count_items(const char *text)
{
    int n = 0, fence = 0;
    for (const char *l = text; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        if (len >= 3 && strncmp(l, "```", 3) == 0) {
            fence = !fence;
        } else if (!fence && len >= 2) {
            const char *p = l, *end = l + len;
            int item = 0;
            if ((*p == '-' || *p == '*' || *p == '+') && (p[1] == ' ' || p[1] == '\t')) {
                p += 2;
                item = 1;
            } else if (isdigit((unsigned char)*p)) {
                while (p < end && isdigit((unsigned char)*p))
                    p++;
                if (p + 1 < end && (*p == '.' || *p == ')') && (p[1] == ' ' || p[1] == '\t')) {
                    p += 2;
                    item = 1;
                }
            }
            if (item) {
                int content = 0;
                for (; p < end; p++)
                    if (!isspace((unsigned char)*p) && *p != '-' && *p != '*')
                        content = 1;
                n += content;
            }
        }
        l = e ? e + 1 : NULL;
    }
    return n;
}

int bt_workflow_count_suggestions(const char *text)
{
    if (!text || !*text)
        return 0;
    int n = count_json(text, strlen(text));
    if (n >= 0)
        return n;
    n = count_marker(text);
    if (n >= 0)
        return n;
    if (says_nothing(text))
        return 0;
    return count_items(text);
}
