/*
 * template.c - baton's strict templates (the contract is in template.h).
 *
 * bt_tmpl_compile scans the text once and turns it into a list of segments: literal text
 * (with "$${" already turned into "${") and expressions, each a small tree of nodes
 * (path, literal, filter, comparison, and/or/not). Rendering walks that list without
 * re-parsing anything; values flow through the tree as jansson references, so a path
 * costs one json_object_get per part and a plain "{{ task.title }}" copies one string.
 *
 * Choices the header leaves open, made here:
 *  - truncate(N) keeps the first N characters (code points) and appends "..." when it
 *    cut something; lines(N) is the suffix of the text holding its last N lines (a final
 *    newline ends the last line, it does not start an empty one).
 *  - upcase/downcase change ASCII letters only (other bytes are copied, so UTF-8 stays
 *    valid).
 *  - "contains" tests membership when the left side is an array (an element whose text
 *    equals the right side's text) or an object (a key); otherwise it is a substring test.
 *  - the ordering comparisons (< <= > >=) are numeric when both sides are numbers or
 *    text that is entirely a number ("10" > "9"), textual otherwise.
 *  - "and"/"or" stop early: the right side is not evaluated when the left decides.
 *  - bt_tmpl_eval treats blank text around the single expression as nothing, so a YAML
 *    block scalar's trailing newline does not turn a `when:` into a string.
 *  - columns count characters (UTF-8 code points), not bytes.
 */
#include "core/template.h"

#include "base/mem.h"
#include "base/str.h"
#include "base/strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the compiled form ------------------------------------------------------------ */

typedef enum node_kind { N_PATH, N_LIT, N_FILTER, N_CMP, N_AND, N_OR, N_NOT } node_kind;

typedef enum filter_kind {
    F_DEFAULT,
    F_UPCASE,
    F_DOWNCASE,
    F_JSON,
    F_TRUNCATE,
    F_TRIM,
    F_LINES,
    F__COUNT
} filter_kind;

typedef enum cmp_kind { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE, C_CONTAINS } cmp_kind;

typedef struct node {
    node_kind kind;
    int line, column;
    struct node *a, *b; /* filter: a is the input; cmp/and/or: both; not: a */
    int op;             /* filter_kind or cmp_kind */
    json_t *lit;        /* N_LIT's value; N_FILTER's argument (default) */
    long long n;        /* truncate/lines argument */
    /* N_PATH */
    char *text;     /* the path as written, for messages */
    char **parts;   /* names; an index as its decimal text */
    size_t *ends;   /* parts[i] ends at text[ends[i]] (for "'steps.x' has no ...") */
    char *is_index; /* 1 when parts[i] was written as an index */
    size_t nparts;
    int dollar; /* written as ${...} */
} node;

typedef struct seg {
    char *text; /* literal text (owned), or NULL for an expression */
    size_t len;
    node *expr;
} seg;

struct bt_tmpl {
    seg *segs;
    size_t nsegs, segcap;
    node **refs; /* borrowed: the path nodes in order of appearance */
    size_t nrefs, refcap;
};

static const char *const filter_names[F__COUNT] = {"default",  "upcase", "downcase", "json",
                                                   "truncate", "trim",   "lines"};

/* Names people carry over from other template languages, and what baton calls them. */
static const struct {
    const char *alias, *name;
} filter_aliases[] = {{"upper", "upcase"},          {"lower", "downcase"}, {"uppercase", "upcase"},
                      {"lowercase", "downcase"},    {"strip", "trim"},     {"tojson", "json"},
                      {"to_json", "json"},          {"dump", "json"},      {"tail", "lines"},
                      {"truncatechars", "truncate"}};

static void node_free(node *n)
{
    if (!n)
        return;
    node_free(n->a);
    node_free(n->b);
    json_decref(n->lit);
    free(n->text);
    for (size_t i = 0; i < n->nparts; i++)
        free(n->parts[i]);
    free(n->parts);
    free(n->ends);
    free(n->is_index);
    free(n);
}

static node *node_new(node_kind kind, int line, int column)
{
    node *n = bt_xcalloc(1, sizeof *n);
    n->kind = kind;
    n->line = line;
    n->column = column;
    return n;
}

void bt_tmpl_free(bt_tmpl *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nsegs; i++) {
        free(t->segs[i].text);
        node_free(t->segs[i].expr);
    }
    free(t->segs);
    free(t->refs);
    free(t);
}

static seg *seg_push(bt_tmpl *t)
{
    if (t->nsegs == t->segcap) {
        t->segcap = t->segcap ? t->segcap * 2 : 4;
        t->segs = bt_xrealloc(t->segs, t->segcap * sizeof *t->segs);
    }
    seg *s = &t->segs[t->nsegs++];
    memset(s, 0, sizeof *s);
    return s;
}

static void ref_push(bt_tmpl *t, node *n)
{
    if (t->nrefs == t->refcap) {
        t->refcap = t->refcap ? t->refcap * 2 : 4;
        t->refs = bt_xrealloc(t->refs, t->refcap * sizeof *t->refs);
    }
    t->refs[t->nrefs++] = n;
}

/* ---- "did you mean" --------------------------------------------------------------- */

/* The candidate within edit distance 2 of word (and closer than word's own length, so
 * "x" does not suggest "y"), or NULL. */
static const char *closest(const char *word, const char *cand, const char *best, size_t *best_d)
{
    size_t d = bt_str_distance(word, cand);
    if (d <= 2 && d < strlen(word) && d < *best_d) {
        *best_d = d;
        return cand;
    }
    return best;
}

/* ---- the scanner ------------------------------------------------------------------ */

typedef enum tok_kind {
    T_EOF,
    T_CLOSE, /* }} */
    T_PATH,
    T_STRING,
    T_NUMBER,
    T_TRUE,
    T_FALSE,
    T_NULL,
    T_AND,
    T_OR,
    T_NOT,
    T_CONTAINS,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_PIPE,
    T_LPAREN,
    T_RPAREN,
    T_COMMA
} tok_kind;

typedef struct tok {
    tok_kind kind;
    int line, column;
    size_t start, end; /* byte range in the source */
    json_t *value;     /* T_STRING, T_NUMBER: owned until taken */
    node *path;        /* T_PATH: owned until taken */
} tok;

typedef struct parser {
    const char *src;
    size_t len;
    size_t pos;
    int line, column;
    bt_tmpl *t;
    tok cur;
    int open_line, open_column; /* where the current "{{" or "${" starts */
    const char *opener;         /* "{{" or "${" */
    size_t expr_start;          /* just past the opener */
    int ntokens, depth;         /* of the current expression, against runaway input */
    bt_tmpl_error *where;
    bt_error *err;
} parser;

static void advance(parser *p, size_t n)
{
    for (size_t i = 0; i < n && p->pos < p->len; i++) {
        unsigned char c = (unsigned char)p->src[p->pos++];
        if (c == '\n') {
            p->line++;
            p->column = 1;
        } else if ((c & 0xC0) != 0x80) {
            p->column++;
        }
    }
}

static char peek(const parser *p, size_t ahead)
{
    return p->pos + ahead < p->len ? p->src[p->pos + ahead] : '\0';
}

static void tok_clear(tok *t)
{
    json_decref(t->value);
    node_free(t->path);
    t->value = NULL;
    t->path = NULL;
}

static int fail_at(parser *p, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(parser *p, int line, int column, const char *fmt, ...)
{
    if (p->where) {
        p->where->line = line;
        p->where->column = column;
    }
    va_list ap;
    va_start(ap, fmt);
    bt_verrorf(p->err, BT_EPARSE, fmt, ap);
    va_end(ap);
    return BT_EPARSE;
}

static int fail_unterminated(parser *p)
{
    return fail_at(p, p->open_line, p->open_column, "unterminated '%s' (opened at %d:%d)",
                   p->opener, p->open_line, p->open_column);
}

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void path_add_part(node *n, const char *s, size_t len, size_t end, int index)
{
    n->parts = bt_xrealloc(n->parts, (n->nparts + 1) * sizeof *n->parts);
    n->ends = bt_xrealloc(n->ends, (n->nparts + 1) * sizeof *n->ends);
    n->is_index = bt_xrealloc(n->is_index, n->nparts + 1);
    n->parts[n->nparts] = bt_xstrndup(s, len);
    n->ends[n->nparts] = end;
    n->is_index[n->nparts] = (char)index;
    n->nparts++;
}

/* A path starting at a name character: NAME ("." NAME | "[" INDEX "]" | "." INDEX)*. */
static int lex_path(parser *p, tok *t)
{
    size_t start = p->pos;
    node *n = node_new(N_PATH, t->line, t->column);
    size_t s = p->pos;
    while (is_name_char(peek(p, 0)))
        advance(p, 1);
    path_add_part(n, p->src + s, p->pos - s, p->pos - start, 0);
    for (;;) {
        char c = peek(p, 0);
        if (c == '.') {
            char d = peek(p, 1);
            if (is_name_start(d)) {
                advance(p, 1);
                s = p->pos;
                while (is_name_char(peek(p, 0)))
                    advance(p, 1);
                path_add_part(n, p->src + s, p->pos - s, p->pos - start, 0);
            } else if (is_digit(d)) {
                advance(p, 1);
                s = p->pos;
                while (is_digit(peek(p, 0)))
                    advance(p, 1);
                if (is_name_char(peek(p, 0))) {
                    int col = p->column;
                    node_free(n);
                    return fail_at(p, p->line, col,
                                   "bad path '%.*s...': a part starting with a digit must be "
                                   "an index (digits only)",
                                   (int)(p->pos - start), p->src + start);
                }
                path_add_part(n, p->src + s, p->pos - s, p->pos - start, 1);
            } else {
                int line = p->line, col = p->column;
                node_free(n);
                return fail_at(p, line, col,
                               "bad path '%.*s.': expected a name or an index after '.'",
                               (int)(p->pos - start), p->src + start);
            }
        } else if (c == '[') {
            int line = p->line, col = p->column;
            advance(p, 1);
            s = p->pos;
            while (is_digit(peek(p, 0)))
                advance(p, 1);
            if (p->pos == s || peek(p, 0) != ']') {
                node_free(n);
                return fail_at(p, line, col,
                               "bad path '%.*s[': expected an index like [0] (digits, then ']')",
                               (int)(s - 1 - start), p->src + start);
            }
            size_t e = p->pos;
            advance(p, 1);
            path_add_part(n, p->src + s, e - s, p->pos - start, 1);
        } else {
            break;
        }
    }
    n->text = bt_xstrndup(p->src + start, p->pos - start);
    for (size_t i = 0; i < n->nparts; i++) {
        if (n->is_index[i] && strlen(n->parts[i]) > 18) {
            int rc = fail_at(p, n->line, n->column, "bad path '%s': index %s is too large", n->text,
                             n->parts[i]);
            node_free(n);
            return rc;
        }
    }
    t->path = n;
    return 0;
}

static int lex_string(parser *p, tok *t)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    advance(p, 1); /* the opening quote */
    for (;;) {
        if (p->pos >= p->len) {
            bt_strbuf_release(&sb);
            return fail_at(p, t->line, t->column, "unterminated string (opened at %d:%d)", t->line,
                           t->column);
        }
        char c = peek(p, 0);
        if (c == '"') {
            advance(p, 1);
            break;
        }
        if (c == '\\') {
            char e = peek(p, 1);
            char out = e == 'n' ? '\n' : e == 't' ? '\t' : e == '"' || e == '\\' ? e : '\0';
            if (!out) {
                int line = p->line, col = p->column;
                bt_strbuf_release(&sb);
                if (p->pos + 1 >= p->len)
                    return fail_at(p, t->line, t->column, "unterminated string (opened at %d:%d)",
                                   t->line, t->column);
                return fail_at(p, line, col,
                               "unknown escape '\\%c' in a string (escapes: \\\" \\\\ \\n \\t)", e);
            }
            bt_strbuf_addch(&sb, out);
            advance(p, 2);
            continue;
        }
        bt_strbuf_addch(&sb, c);
        advance(p, 1);
    }
    t->value = json_stringn(sb.buf ? sb.buf : "", sb.len);
    bt_strbuf_release(&sb);
    if (!t->value)
        return fail_at(p, t->line, t->column, "string literal is not valid UTF-8");
    return 0;
}

static int lex_number(parser *p, tok *t)
{
    size_t s = p->pos;
    int real = 0;
    if (peek(p, 0) == '-')
        advance(p, 1);
    while (is_digit(peek(p, 0)))
        advance(p, 1);
    if (peek(p, 0) == '.' && is_digit(peek(p, 1))) {
        real = 1;
        advance(p, 1);
        while (is_digit(peek(p, 0)))
            advance(p, 1);
    }
    char buf[64];
    size_t len = p->pos - s;
    if (is_name_char(peek(p, 0)) || peek(p, 0) == '.' || len >= sizeof buf) {
        while (is_name_char(peek(p, 0)) || peek(p, 0) == '.')
            advance(p, 1);
        return fail_at(p, t->line, t->column,
                       "bad number '%.*s' (a path cannot start with a digit)", (int)(p->pos - s),
                       p->src + s);
    }
    memcpy(buf, p->src + s, len);
    buf[len] = '\0';
    errno = 0;
    if (real) {
        t->value = json_real(strtod(buf, NULL));
    } else {
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return fail_at(p, t->line, t->column, "number '%s' is too large", buf);
        t->value = json_integer((json_int_t)v);
    }
    return 0;
}

static int keyword(const char *s, size_t n, tok_kind *kind)
{
    static const struct {
        const char *word;
        tok_kind kind;
    } words[] = {{"and", T_AND},   {"or", T_OR},       {"not", T_NOT},  {"contains", T_CONTAINS},
                 {"true", T_TRUE}, {"false", T_FALSE}, {"null", T_NULL}};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        if (strlen(words[i].word) == n && memcmp(words[i].word, s, n) == 0) {
            *kind = words[i].kind;
            return 1;
        }
    }
    return 0;
}

/* Longest expression and deepest nesting accepted; they bound the recursion of the
 * parser and of rendering (a filter chain or an "and" chain is a tree as deep as it is
 * long). */
#define MAX_TOKENS 2000
#define MAX_DEPTH  64

/* Scan the next token inside "{{ }}" into p->cur. */
static int next(parser *p)
{
    tok *t = &p->cur;
    tok_clear(t);
    while (is_blank(peek(p, 0)))
        advance(p, 1);
    t->line = p->line;
    t->column = p->column;
    t->start = p->pos;
    if (++p->ntokens > MAX_TOKENS)
        return fail_at(p, p->open_line, p->open_column,
                       "expression is too long (more than %d tokens); split it up", MAX_TOKENS);
    if (p->pos >= p->len) {
        t->kind = T_EOF;
        t->end = p->pos;
        return 0;
    }
    char c = peek(p, 0), d = peek(p, 1);
    int rc = 0;
    size_t n = 1;
    if (c == '}' && d == '}') {
        t->kind = T_CLOSE;
        n = 2;
    } else if (is_name_start(c)) {
        size_t e = p->pos;
        while (e < p->len && is_name_char(p->src[e]))
            e++;
        tok_kind kw;
        if (keyword(p->src + p->pos, e - p->pos, &kw) &&
            !(e < p->len && (p->src[e] == '.' || p->src[e] == '['))) {
            t->kind = kw;
            n = e - p->pos;
        } else {
            t->kind = T_PATH;
            n = 0;
            rc = lex_path(p, t);
            if (rc == 0 && keyword(t->path->parts[0], strlen(t->path->parts[0]), &kw))
                rc = fail_at(p, t->line, t->column,
                             "'%s' is a reserved word and cannot start a path ('%s')",
                             t->path->parts[0], t->path->text);
        }
    } else if (c == '"') {
        t->kind = T_STRING;
        n = 0;
        rc = lex_string(p, t);
    } else if (is_digit(c) || (c == '-' && is_digit(d))) {
        t->kind = T_NUMBER;
        n = 0;
        rc = lex_number(p, t);
    } else if (c == '=' && d == '=') {
        t->kind = T_EQ;
        n = 2;
    } else if (c == '!' && d == '=') {
        t->kind = T_NE;
        n = 2;
    } else if (c == '<') {
        t->kind = d == '=' ? T_LE : T_LT;
        n = d == '=' ? 2 : 1;
    } else if (c == '>') {
        t->kind = d == '=' ? T_GE : T_GT;
        n = d == '=' ? 2 : 1;
    } else if (c == '|' && d == '|') {
        rc = fail_at(p, t->line, t->column, "use 'or' instead of '||'");
    } else if (c == '&' && d == '&') {
        rc = fail_at(p, t->line, t->column, "use 'and' instead of '&&'");
    } else if (c == '|') {
        t->kind = T_PIPE;
    } else if (c == '(') {
        t->kind = T_LPAREN;
    } else if (c == ')') {
        t->kind = T_RPAREN;
    } else if (c == ',') {
        t->kind = T_COMMA;
    } else if (c == '=') {
        rc = fail_at(p, t->line, t->column, "use '==' to compare ('=' alone is not an operator)");
    } else if (c == '!') {
        rc = fail_at(p, t->line, t->column, "use 'not' instead of '!'");
    } else {
        size_t cl = 1;
        while (p->pos + cl < p->len && ((unsigned char)p->src[p->pos + cl] & 0xC0) == 0x80)
            cl++;
        rc = fail_at(p, t->line, t->column, "unexpected '%.*s' in '%s ... %s'", (int)cl,
                     p->src + p->pos, p->opener, strcmp(p->opener, "{{") == 0 ? "}}" : "}");
    }
    if (rc < 0)
        return rc;
    advance(p, n);
    t->end = p->pos;
    return 0;
}

/* A short description of the current token for "unexpected ..." messages. */
static void describe(const parser *p, char *buf, size_t size)
{
    const tok *t = &p->cur;
    if (t->kind == T_EOF)
        snprintf(buf, size, "end of template");
    else
        snprintf(buf, size, "'%.*s'", (int)(t->end - t->start > 40 ? 40 : t->end - t->start),
                 p->src + t->start);
}

static int fail_unexpected(parser *p, const char *expected)
{
    if (p->cur.kind == T_EOF)
        return fail_unterminated(p);
    char what[64];
    describe(p, what, sizeof what);
    return fail_at(p, p->cur.line, p->cur.column, "unexpected %s; expected %s", what, expected);
}

/* ---- the parser ------------------------------------------------------------------- */

static int parse_or(parser *p, node **out);

static int is_literal_tok(tok_kind k)
{
    return k == T_STRING || k == T_NUMBER || k == T_TRUE || k == T_FALSE || k == T_NULL;
}

/* Take the current literal token's value (a new reference). */
static json_t *take_literal(parser *p)
{
    switch (p->cur.kind) {
    case T_TRUE:
        return json_true();
    case T_FALSE:
        return json_false();
    case T_NULL:
        return json_null();
    default: {
        json_t *v = p->cur.value;
        p->cur.value = NULL;
        return v;
    }
    }
}

/* Advance past a primary that produced n; on a scanning error n is freed. */
static int primary_done(parser *p, node *n, node **out)
{
    int rc = next(p);
    if (rc < 0) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int parse_primary(parser *p, node **out)
{
    tok *t = &p->cur;
    if (t->kind == T_PATH) {
        node *n = t->path;
        t->path = NULL;
        int rc = primary_done(p, n, out);
        if (rc == 0)
            ref_push(p->t, n);
        return rc;
    }
    if (is_literal_tok(t->kind)) {
        node *n = node_new(N_LIT, t->line, t->column);
        n->lit = take_literal(p);
        return primary_done(p, n, out);
    }
    if (t->kind == T_LPAREN) {
        int line = t->line, col = t->column;
        if (++p->depth > MAX_DEPTH)
            return fail_at(p, line, col, "expression is nested too deeply (more than %d levels)",
                           MAX_DEPTH);
        node *inner = NULL;
        int rc = next(p);
        if (rc == 0)
            rc = parse_or(p, &inner);
        if (rc < 0)
            return rc;
        if (p->cur.kind != T_RPAREN) {
            node_free(inner);
            if (p->cur.kind == T_EOF)
                return fail_unterminated(p);
            char what[64];
            describe(p, what, sizeof what);
            return fail_at(p, p->cur.line, p->cur.column,
                           "unexpected %s; expected ')' to close the '(' at %d:%d", what, line,
                           col);
        }
        p->depth--;
        return primary_done(p, inner, out);
    }
    if (t->kind == T_CLOSE) {
        /* "{{ }}" (nothing yet) versus "{{ a == }}" (something missing). */
        size_t i = p->expr_start;
        while (i < t->start && is_blank(p->src[i]))
            i++;
        if (i == t->start)
            return fail_at(p, p->open_line, p->open_column, "empty expression in '{{ }}'");
    }
    return fail_unexpected(p,
                           "a variable path, a literal (\"text\", 42, true, false, null) or '('");
}

static int filter_lookup(const char *name)
{
    for (int i = 0; i < F__COUNT; i++)
        if (strcmp(filter_names[i], name) == 0)
            return i;
    return -1;
}

static int unknown_filter(parser *p, int line, int column, const char *name)
{
    const char *hint = NULL;
    size_t best = (size_t)-1;
    for (size_t i = 0; i < sizeof filter_aliases / sizeof *filter_aliases; i++)
        if (strcmp(filter_aliases[i].alias, name) == 0)
            hint = filter_aliases[i].name;
    for (int i = 0; !hint && i < F__COUNT; i++)
        hint = closest(name, filter_names[i], hint, &best);
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "unknown filter '%s' (filters:", name);
    for (int i = 0; i < F__COUNT; i++)
        bt_strbuf_addf(&sb, "%s %s", i ? "," : "", filter_names[i]);
    bt_strbuf_addch(&sb, ')');
    if (hint)
        bt_strbuf_addf(&sb, "; did you mean '%s'?", hint);
    int rc = fail_at(p, line, column, "%s", bt_strbuf_cstr(&sb));
    bt_strbuf_release(&sb);
    return rc;
}

/* Check a filter's arguments (already parsed) and store them in n. */
static int filter_args(parser *p, node *n, const char *name, json_t **args, size_t nargs)
{
    switch ((filter_kind)n->op) {
    case F_DEFAULT:
        if (nargs != 1)
            return fail_at(p, n->line, n->column,
                           "default needs one argument, e.g. default(\"main\") (got %zu)", nargs);
        n->lit = json_incref(args[0]);
        return 0;
    case F_TRUNCATE:
    case F_LINES:
        if (nargs != 1 || !json_is_integer(args[0]))
            return fail_at(p, n->line, n->column, "%s needs one integer argument, e.g. %s(%s)",
                           name, name, n->op == F_TRUNCATE ? "200" : "20");
        if (json_integer_value(args[0]) < 0)
            return fail_at(p, n->line, n->column,
                           "%s needs one integer argument of 0 or more (got %" JSON_INTEGER_FORMAT
                           ")",
                           name, json_integer_value(args[0]));
        n->n = (long long)json_integer_value(args[0]);
        return 0;
    default:
        if (nargs != 0)
            return fail_at(p, n->line, n->column, "%s takes no arguments (write '| %s')", name,
                           name);
        return 0;
    }
}

static int parse_filter(parser *p, node *input, node **out)
{
    /* p->cur is the token after '|' */
    tok *t = &p->cur;
    if (t->kind != T_PATH || t->path->nparts != 1) {
        node_free(input);
        if (t->kind == T_PATH)
            return fail_at(p, t->line, t->column,
                           "bad filter name '%s' (filters have simple names)", t->path->text);
        return fail_unexpected(p, "a filter name after '|'");
    }
    char *name = bt_xstrdup(t->path->parts[0]);
    int f = filter_lookup(name);
    if (f < 0) {
        int rc = unknown_filter(p, t->line, t->column, name);
        free(name);
        node_free(input);
        return rc;
    }
    node *n = node_new(N_FILTER, t->line, t->column);
    n->op = f;
    n->a = input;
    json_t *args[8];
    size_t nargs = 0;
    int rc = next(p);
    if (rc == 0 && p->cur.kind == T_LPAREN) {
        int line = p->cur.line, col = p->cur.column;
        rc = next(p);
        while (rc == 0 && p->cur.kind != T_RPAREN) {
            if (nargs > 0) {
                if (p->cur.kind != T_COMMA) {
                    rc = p->cur.kind == T_EOF ? fail_unterminated(p)
                                              : fail_at(p, p->cur.line, p->cur.column,
                                                        "expected ',' or ')' in the arguments of "
                                                        "%s (opened at %d:%d)",
                                                        name, line, col);
                    break;
                }
                rc = next(p);
                if (rc < 0)
                    break;
            }
            if (!is_literal_tok(p->cur.kind)) {
                rc = p->cur.kind == T_EOF
                         ? fail_unterminated(p)
                         : fail_at(p, p->cur.line, p->cur.column,
                                   "filter arguments must be literals (\"text\", 42, true, false, "
                                   "null); %s got something else",
                                   name);
                break;
            }
            if (nargs == sizeof args / sizeof *args) {
                rc = fail_at(p, n->line, n->column, "too many arguments for %s", name);
                break;
            }
            args[nargs++] = take_literal(p);
            rc = next(p);
        }
        if (rc == 0)
            rc = filter_args(p, n, name, args, nargs);
        if (rc == 0)
            rc = next(p); /* past ')' */
    } else if (rc == 0) {
        rc = filter_args(p, n, name, args, 0);
    }
    for (size_t i = 0; i < nargs; i++)
        json_decref(args[i]);
    free(name);
    if (rc < 0) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int parse_pipe(parser *p, node **out)
{
    node *n = NULL;
    int rc = parse_primary(p, &n);
    while (rc == 0 && p->cur.kind == T_PIPE) {
        rc = next(p);
        if (rc == 0)
            rc = parse_filter(p, n, &n);
        else
            node_free(n);
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;
    *out = n;
    return 0;
}

static int cmp_of(tok_kind k)
{
    switch (k) {
    case T_EQ:
        return C_EQ;
    case T_NE:
        return C_NE;
    case T_LT:
        return C_LT;
    case T_LE:
        return C_LE;
    case T_GT:
        return C_GT;
    case T_GE:
        return C_GE;
    case T_CONTAINS:
        return C_CONTAINS;
    default:
        return -1;
    }
}

static int parse_cmp(parser *p, node **out)
{
    node *a = NULL;
    int rc = parse_pipe(p, &a);
    if (rc < 0)
        return rc;
    int op = cmp_of(p->cur.kind);
    if (op < 0) {
        *out = a;
        return 0;
    }
    node *n = node_new(N_CMP, p->cur.line, p->cur.column);
    n->op = op;
    n->a = a;
    rc = next(p);
    if (rc == 0)
        rc = parse_pipe(p, &n->b);
    if (rc < 0) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int parse_not(parser *p, node **out)
{
    if (p->cur.kind != T_NOT)
        return parse_cmp(p, out);
    if (++p->depth > MAX_DEPTH)
        return fail_at(p, p->cur.line, p->cur.column,
                       "expression is nested too deeply (more than %d levels)", MAX_DEPTH);
    node *n = node_new(N_NOT, p->cur.line, p->cur.column);
    int rc = next(p);
    if (rc == 0)
        rc = parse_not(p, &n->a);
    p->depth--;
    if (rc < 0) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int parse_and(parser *p, node **out)
{
    node *a = NULL;
    int rc = parse_not(p, &a);
    while (rc == 0 && p->cur.kind == T_AND) {
        node *n = node_new(N_AND, p->cur.line, p->cur.column);
        n->a = a;
        a = n;
        rc = next(p);
        if (rc == 0)
            rc = parse_not(p, &n->b);
    }
    if (rc < 0) {
        node_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

static int parse_or(parser *p, node **out)
{
    node *a = NULL;
    int rc = parse_and(p, &a);
    while (rc == 0 && p->cur.kind == T_OR) {
        node *n = node_new(N_OR, p->cur.line, p->cur.column);
        n->a = a;
        a = n;
        rc = next(p);
        if (rc == 0)
            rc = parse_and(p, &n->b);
    }
    if (rc < 0) {
        node_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* At "{{": parse through the matching "}}". */
static int parse_braces(parser *p, node **out)
{
    p->opener = "{{";
    p->open_line = p->line;
    p->open_column = p->column;
    advance(p, 2);
    p->expr_start = p->pos;
    p->ntokens = p->depth = 0;
    int rc = next(p);
    if (rc == 0)
        rc = parse_or(p, out);
    if (rc < 0)
        return rc;
    if (p->cur.kind != T_CLOSE) {
        node_free(*out);
        *out = NULL;
        if (p->cur.kind == T_EOF)
            return fail_unterminated(p);
        char what[64];
        describe(p, what, sizeof what);
        return fail_at(p, p->cur.line, p->cur.column,
                       "unexpected %s after the expression; expected '}}' (the '{{' is at %d:%d)",
                       what, p->open_line, p->open_column);
    }
    /* p->cur is "}}" and p->pos is already past it */
    return 0;
}

/* At "${": a path, then "}". */
static int parse_dollar(parser *p, node **out)
{
    p->opener = "${";
    p->open_line = p->line;
    p->open_column = p->column;
    advance(p, 2);
    while (is_blank(peek(p, 0)))
        advance(p, 1);
    if (p->pos >= p->len)
        return fail_unterminated(p);
    if (!is_name_start(peek(p, 0))) {
        return fail_at(p, p->open_line, p->open_column,
                       "'${' must be followed by a variable path like ${inputs.NAME} (write "
                       "$${ for a literal '${', e.g. a shell variable)");
    }
    tok t = {.kind = T_PATH, .line = p->line, .column = p->column};
    int rc = lex_path(p, &t);
    if (rc < 0)
        return rc;
    node *n = t.path;
    n->dollar = 1;
    while (is_blank(peek(p, 0)))
        advance(p, 1);
    if (peek(p, 0) != '}') {
        if (p->pos >= p->len)
            rc = fail_unterminated(p);
        else
            rc = fail_at(p, p->line, p->column,
                         "expected '}' after '${%s' (filters and operators need the {{ }} form; "
                         "write $${ for a literal '${', e.g. a shell variable)",
                         n->text);
        node_free(n);
        return rc;
    }
    advance(p, 1);
    ref_push(p->t, n);
    *out = n;
    return 0;
}

static void add_text(bt_tmpl *t, bt_strbuf *text)
{
    if (text->len == 0)
        return;
    seg *s = seg_push(t);
    s->len = text->len;
    s->text = bt_strbuf_detach(text, NULL);
}

int bt_tmpl_compile(const char *src, bt_tmpl **out, bt_tmpl_error *where, bt_error *err)
{
    *out = NULL;
    if (where)
        where->line = where->column = 0;
    if (!src)
        src = "";
    bt_tmpl *t = bt_xcalloc(1, sizeof *t);
    parser p = {.src = src, .len = strlen(src), .line = 1, .column = 1, .t = t};
    p.where = where;
    p.err = err;
    bt_strbuf text = BT_STRBUF_INIT;
    int rc = 0;
    while (p.pos < p.len) {
        char c = peek(&p, 0), d = peek(&p, 1);
        if (c == '$' && d == '$' && peek(&p, 2) == '{') {
            bt_strbuf_add(&text, "${", 2);
            advance(&p, 3);
            continue;
        }
        if ((c == '{' && d == '{') || (c == '$' && d == '{')) {
            node *n = NULL;
            rc = c == '{' ? parse_braces(&p, &n) : parse_dollar(&p, &n);
            tok_clear(&p.cur);
            if (rc < 0)
                break;
            add_text(t, &text);
            seg_push(t)->expr = n;
            continue;
        }
        /* Copy the run of plain text up to the next '{' or '$' in one go. */
        size_t e = p.pos + 1;
        while (e < p.len && p.src[e] != '{' && p.src[e] != '$')
            e++;
        bt_strbuf_add(&text, p.src + p.pos, e - p.pos);
        advance(&p, e - p.pos);
    }
    if (rc < 0) {
        bt_strbuf_release(&text);
        bt_tmpl_free(t);
        return rc;
    }
    add_text(t, &text);
    *out = t;
    return 0;
}

int bt_tmpl_is_static(const bt_tmpl *t)
{
    for (size_t i = 0; i < t->nsegs; i++)
        if (t->segs[i].expr)
            return 0;
    return 1;
}

int bt_tmpl_refs(const bt_tmpl *t, bt_tmpl_ref_fn fn, void *ud)
{
    for (size_t i = 0; i < t->nrefs; i++) {
        const node *n = t->refs[i];
        int rc = fn((const char *const *)n->parts, n->nparts, n->line, n->column, ud);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- values as text --------------------------------------------------------------- */

/* Compact JSON with numbers in their shortest form (jansson would print 0.1 as
 * 0.10000000000000001). */
static void add_json(bt_strbuf *sb, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        int first = 1;
        bt_strbuf_addch(sb, '{');
        json_object_foreach((json_t *)v, key, val)
        {
            if (!first)
                bt_strbuf_addch(sb, ',');
            first = 0;
            bt_strbuf_add_json_str(sb, key, strlen(key));
            bt_strbuf_addch(sb, ':');
            add_json(sb, val);
        }
        bt_strbuf_addch(sb, '}');
        break;
    }
    case JSON_ARRAY:
        bt_strbuf_addch(sb, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                bt_strbuf_addch(sb, ',');
            add_json(sb, json_array_get(v, i));
        }
        bt_strbuf_addch(sb, ']');
        break;
    case JSON_STRING:
        bt_strbuf_add_json_str(sb, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        bt_strbuf_addf(sb, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        bt_strbuf_add_double(sb, json_real_value(v));
        break;
    case JSON_TRUE:
        bt_strbuf_addstr(sb, "true");
        break;
    case JSON_FALSE:
        bt_strbuf_addstr(sb, "false");
        break;
    case JSON_NULL:
        bt_strbuf_addstr(sb, "null");
        break;
    }
}

/* The rendering of a value: strings as they are, null as nothing, the rest as JSON. */
static void add_value(bt_strbuf *sb, const json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v))
        bt_strbuf_add(sb, json_string_value(v), json_string_length(v));
    else
        add_json(sb, v);
}

/* The text of v: borrowed from v when it is a string, else rendered into scratch. */
static const char *text_of(const json_t *v, bt_strbuf *scratch, size_t *len)
{
    if (json_is_string(v)) {
        *len = json_string_length(v);
        return json_string_value(v);
    }
    bt_strbuf_reset(scratch);
    add_value(scratch, v);
    *len = scratch->len;
    return scratch->buf ? scratch->buf : "";
}

int bt_tmpl_truthy(const json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v))
        return 0;
    if (json_is_integer(v))
        return json_integer_value(v) != 0;
    if (json_is_real(v))
        return json_real_value(v) != 0.0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        while (n > 0 && is_blank(*s)) {
            s++;
            n--;
        }
        while (n > 0 && is_blank(s[n - 1]))
            n--;
        static const char *const falsy[] = {"false", "0", "no", "off"};
        if (n == 0)
            return 0;
        for (size_t i = 0; i < sizeof falsy / sizeof *falsy; i++)
            if (strlen(falsy[i]) == n && strncasecmp(s, falsy[i], n) == 0)
                return 0;
    }
    return 1;
}

/* ---- evaluation ------------------------------------------------------------------- */

typedef struct ectx {
    const json_t *vars;
    bt_tmpl_error *where;
    bt_error *err;
} ectx;

static int eval_fail(ectx *c, const node *n, int code, const char *msg)
{
    if (c->where) {
        c->where->line = n->line;
        c->where->column = n->column;
    }
    return bt_errorf(c->err, code, "%s", msg);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

/* "(known: a, b, c); did you mean 'b'?" for a missing key in obj. */
static void add_known(bt_strbuf *sb, const json_t *obj, const char *missing, int dollar_root)
{
    const char *key;
    json_t *val;
    size_t i = 0, total = json_object_size(obj);
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    if (total == 0) {
        bt_strbuf_addstr(sb, " (it has no keys)");
    } else {
        bt_strbuf_addstr(sb, " (known: ");
        json_object_foreach((json_t *)obj, key, val)
        {
            (void)val;
            best = closest(missing, key, best, &best_d);
            if (i < 20)
                bt_strbuf_addf(sb, "%s%s", i ? ", " : "", key);
            i++;
        }
        if (total > 20)
            bt_strbuf_addf(sb, ", ... %zu more", total - 20);
        bt_strbuf_addch(sb, ')');
    }
    if (best)
        bt_strbuf_addf(sb, "; did you mean '%s'?", best);
    else if (dollar_root)
        bt_strbuf_addf(sb, "; if this is a shell variable, write $${%s}", missing);
}

static int path_fail(ectx *c, const node *n, size_t i, const json_t *cur)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "unknown variable '%s': ", n->text);
    int prefix = i > 0 ? (int)n->ends[i - 1] : 0;
    if (i == 0) {
        bt_strbuf_addf(&sb, "no variable '%s'", n->parts[0]);
        add_known(&sb, cur, n->parts[0], n->dollar);
    } else if (json_is_array(cur)) {
        if (n->is_index[i])
            bt_strbuf_addf(&sb, "index %s is out of range ('%.*s' has %zu item%s)", n->parts[i],
                           prefix, n->text, json_array_size(cur),
                           json_array_size(cur) == 1 ? "" : "s");
        else
            bt_strbuf_addf(&sb, "'%.*s' is an array (%zu items); use an index like [0], not '%s'",
                           prefix, n->text, json_array_size(cur), n->parts[i]);
    } else if (json_is_object(cur)) {
        bt_strbuf_addf(&sb, "'%.*s' has no '%s'", prefix, n->text, n->parts[i]);
        add_known(&sb, cur, n->parts[i], 0);
    } else {
        bt_strbuf_addf(&sb, "'%.*s' is %s, it has no '%s'", prefix, n->text, type_name(cur),
                       n->parts[i]);
    }
    int rc = eval_fail(c, n, BT_ENOENT, bt_strbuf_cstr(&sb));
    bt_strbuf_release(&sb);
    return rc;
}

static int eval_path(ectx *c, const node *n, json_t **out)
{
    const json_t *cur = c->vars;
    for (size_t i = 0; i < n->nparts; i++) {
        const json_t *next_v = NULL;
        if (json_is_object(cur)) {
            next_v = json_object_get(cur, n->parts[i]);
        } else if (json_is_array(cur) && n->is_index[i]) {
            char *end;
            unsigned long long idx = strtoull(n->parts[i], &end, 10);
            if (idx < json_array_size(cur))
                next_v = json_array_get(cur, (size_t)idx);
        }
        if (!next_v) {
            if (i == 0 && !json_is_object(cur)) {
                json_t *none = json_object();
                int rc = path_fail(c, n, 0, none);
                json_decref(none);
                return rc;
            }
            return path_fail(c, n, i, cur);
        }
        cur = next_v;
    }
    *out = json_incref((json_t *)cur);
    return 0;
}

static json_t *string_of(bt_strbuf *sb)
{
    return json_stringn_nocheck(sb->buf ? sb->buf : "", sb->len);
}

static int apply_filter(const node *n, json_t *in, json_t **out)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    switch ((filter_kind)n->op) {
    case F_DEFAULT:
        if (json_is_null(in) || (json_is_string(in) && json_string_length(in) == 0)) {
            *out = json_incref(n->lit);
            return 0;
        }
        *out = json_incref(in);
        return 0;
    case F_UPCASE:
    case F_DOWNCASE:
        add_value(&sb, in);
        for (size_t i = 0; i < sb.len; i++) {
            char ch = sb.buf[i];
            if (n->op == F_UPCASE && ch >= 'a' && ch <= 'z')
                sb.buf[i] = (char)(ch - 'a' + 'A');
            else if (n->op == F_DOWNCASE && ch >= 'A' && ch <= 'Z')
                sb.buf[i] = (char)(ch - 'A' + 'a');
        }
        break;
    case F_JSON:
        add_json(&sb, in);
        break;
    case F_TRUNCATE: {
        size_t len;
        const char *s = text_of(in, &sb, &len);
        size_t chars = 0, i = 0;
        while (i < len) {
            if (chars == (size_t)n->n)
                break;
            i++;
            while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
                i++;
            chars++;
        }
        if (i >= len) {
            bt_strbuf_release(&sb);
            *out = json_is_string(in) ? json_incref(in) : json_stringn_nocheck(s, len);
            return 0;
        }
        bt_strbuf cut = BT_STRBUF_INIT;
        bt_strbuf_add(&cut, s, i);
        bt_strbuf_addstr(&cut, "...");
        bt_strbuf_release(&sb);
        sb = cut;
        break;
    }
    case F_TRIM: {
        size_t len;
        const char *s = text_of(in, &sb, &len);
        size_t b = 0;
        while (b < len && is_blank(s[b]))
            b++;
        while (len > b && is_blank(s[len - 1]))
            len--;
        *out = json_stringn_nocheck(s + b, len - b);
        bt_strbuf_release(&sb);
        return 0;
    }
    case F_LINES: {
        size_t len;
        const char *s = text_of(in, &sb, &len);
        size_t b = len;
        long long want = n->n;
        /* A final newline ends the last line; start looking before it. */
        size_t scan = len > 0 && s[len - 1] == '\n' ? len - 1 : len;
        if (want == 0) {
            b = len;
        } else {
            b = 0;
            for (size_t i = scan; i > 0; i--) {
                if (s[i - 1] == '\n' && --want == 0) {
                    b = i;
                    break;
                }
            }
        }
        *out = json_stringn_nocheck(s + b, len - b);
        bt_strbuf_release(&sb);
        return 0;
    }
    case F__COUNT:
        break;
    }
    *out = string_of(&sb);
    bt_strbuf_release(&sb);
    return 0;
}

/* Parse all of s (after blanks) as a number. */
static int as_number(const char *s, size_t len, double *out)
{
    char buf[64];
    while (len > 0 && is_blank(*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_blank(s[len - 1]))
        len--;
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || errno == ERANGE || v != v)
        return 0;
    /* strtod accepts "inf", "nan" and hex; only plain decimal numbers count. */
    for (size_t i = 0; i < len; i++)
        if (!(is_digit(buf[i]) || buf[i] == '-' || buf[i] == '+' || buf[i] == '.' ||
              buf[i] == 'e' || buf[i] == 'E'))
            return 0;
    *out = v;
    return 1;
}

static int texts_equal(const json_t *a, const json_t *b, bt_strbuf *sa, bt_strbuf *sb)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    size_t la, lb;
    const char *ta = text_of(a, sa, &la), *tb = text_of(b, sb, &lb);
    return la == lb && memcmp(ta, tb, la) == 0;
}

static int compare(int op, const json_t *a, const json_t *b)
{
    bt_strbuf sa = BT_STRBUF_INIT, sb = BT_STRBUF_INIT;
    int r = 0;
    if (op == C_EQ || op == C_NE) {
        r = texts_equal(a, b, &sa, &sb);
        if (op == C_NE)
            r = !r;
    } else if (op == C_CONTAINS) {
        if (json_is_array(a)) {
            bt_strbuf se = BT_STRBUF_INIT;
            for (size_t i = 0; i < json_array_size(a) && !r; i++)
                r = texts_equal(json_array_get(a, i), b, &se, &sb);
            bt_strbuf_release(&se);
        } else if (json_is_object(a)) {
            size_t lb;
            const char *tb = text_of(b, &sb, &lb);
            r = strlen(tb) == lb && json_object_get(a, tb) != NULL;
        } else {
            size_t la, lb;
            const char *ta = text_of(a, &sa, &la), *tb = text_of(b, &sb, &lb);
            r = lb == 0 || (la >= lb && memmem(ta, la, tb, lb) != NULL);
        }
    } else {
        double da = 0, db = 0;
        int numeric = 0, c = 0;
        if (json_is_number(a) && json_is_number(b)) {
            if (json_is_integer(a) && json_is_integer(b)) {
                json_int_t ia = json_integer_value(a), ib = json_integer_value(b);
                c = ia < ib ? -1 : ia > ib;
                numeric = 2;
            } else {
                da = json_number_value(a);
                db = json_number_value(b);
                numeric = 1;
            }
        } else {
            size_t la, lb;
            const char *ta = text_of(a, &sa, &la), *tb = text_of(b, &sb, &lb);
            if (as_number(ta, la, &da) && as_number(tb, lb, &db)) {
                numeric = 1;
            } else {
                int m = memcmp(ta, tb, la < lb ? la : lb);
                c = m ? m : la < lb ? -1 : la > lb;
            }
        }
        if (numeric == 1)
            c = da < db ? -1 : da > db;
        r = op == C_LT ? c < 0 : op == C_LE ? c <= 0 : op == C_GT ? c > 0 : c >= 0;
    }
    bt_strbuf_release(&sa);
    bt_strbuf_release(&sb);
    return r;
}

static int eval(ectx *c, const node *n, json_t **out)
{
    json_t *a = NULL, *b = NULL;
    int rc;
    switch (n->kind) {
    case N_PATH:
        return eval_path(c, n, out);
    case N_LIT:
        *out = json_incref(n->lit);
        return 0;
    case N_FILTER:
        rc = eval(c, n->a, &a);
        if (rc < 0)
            return rc;
        rc = apply_filter(n, a, out);
        json_decref(a);
        return rc;
    case N_NOT:
        rc = eval(c, n->a, &a);
        if (rc < 0)
            return rc;
        *out = json_boolean(!bt_tmpl_truthy(a));
        json_decref(a);
        return 0;
    case N_AND:
    case N_OR: {
        rc = eval(c, n->a, &a);
        if (rc < 0)
            return rc;
        int ta = bt_tmpl_truthy(a);
        json_decref(a);
        if (n->kind == N_AND ? !ta : ta) {
            *out = json_boolean(ta);
            return 0;
        }
        rc = eval(c, n->b, &b);
        if (rc < 0)
            return rc;
        *out = json_boolean(bt_tmpl_truthy(b));
        json_decref(b);
        return 0;
    }
    case N_CMP:
        rc = eval(c, n->a, &a);
        if (rc < 0)
            return rc;
        rc = eval(c, n->b, &b);
        if (rc < 0) {
            json_decref(a);
            return rc;
        }
        *out = json_boolean(compare(n->op, a, b));
        json_decref(a);
        json_decref(b);
        return 0;
    }
    return bt_errorf(c->err, BT_EINTERNAL, "template: unknown node kind %d", (int)n->kind);
}

/* ---- rendering -------------------------------------------------------------------- */

static int render_into(const bt_tmpl *t, const json_t *vars, bt_strbuf *sb, bt_tmpl_error *where,
                       bt_error *err)
{
    ectx c = {.vars = vars, .where = where, .err = err};
    for (size_t i = 0; i < t->nsegs; i++) {
        const seg *s = &t->segs[i];
        if (!s->expr) {
            bt_strbuf_add(sb, s->text, s->len);
            continue;
        }
        json_t *v = NULL;
        int rc = eval(&c, s->expr, &v);
        if (rc < 0)
            return rc;
        add_value(sb, v);
        json_decref(v);
    }
    return 0;
}

int bt_tmpl_render(const bt_tmpl *t, const json_t *vars, char **out, bt_tmpl_error *where,
                   bt_error *err)
{
    *out = NULL;
    if (where)
        where->line = where->column = 0;
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_init(&sb, 64);
    int rc = render_into(t, vars, &sb, where, err);
    if (rc < 0) {
        bt_strbuf_release(&sb);
        return rc;
    }
    *out = bt_strbuf_detach(&sb, NULL);
    return 0;
}

static int blank_text(const seg *s)
{
    if (s->expr)
        return 0;
    for (size_t i = 0; i < s->len; i++)
        if (!is_blank(s->text[i]))
            return 0;
    return 1;
}

int bt_tmpl_eval(const bt_tmpl *t, const json_t *vars, json_t **out, bt_tmpl_error *where,
                 bt_error *err)
{
    *out = NULL;
    if (where)
        where->line = where->column = 0;
    const node *single = NULL;
    for (size_t i = 0; i < t->nsegs; i++) {
        if (blank_text(&t->segs[i]))
            continue;
        if (!t->segs[i].expr || single) {
            single = NULL;
            break;
        }
        single = t->segs[i].expr;
    }
    if (single) {
        ectx c = {.vars = vars, .where = where, .err = err};
        return eval(&c, single, out);
    }
    bt_strbuf sb = BT_STRBUF_INIT;
    int rc = render_into(t, vars, &sb, where, err);
    if (rc == 0) {
        *out = json_stringn(sb.buf ? sb.buf : "", sb.len);
        if (!*out)
            rc = bt_errorf(err, BT_EINVAL, "the rendered template is not valid UTF-8 text");
    }
    bt_strbuf_release(&sb);
    return rc;
}

int bt_tmpl_render_string(const char *src, const json_t *vars, char **out, bt_error *err)
{
    bt_tmpl *t = NULL;
    bt_tmpl_error where = {0, 0};
    *out = NULL;
    int rc = bt_tmpl_compile(src, &t, &where, err);
    if (rc == 0) {
        rc = bt_tmpl_render(t, vars, out, &where, err);
        bt_tmpl_free(t);
    }
    if (rc < 0 && err && where.line > 0)
        bt_error_prefix(err, "template line %d, column %d", where.line, where.column);
    return rc;
}
