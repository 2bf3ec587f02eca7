/*
 * test_template.c - strict templates: both spellings, every filter, literals,
 * comparisons and boolean logic, truthiness, typed evaluation for `when:`, reference
 * enumeration for validation, and the errors a workflow author sees (code, message,
 * line:column) for unknown variables, unknown filters, bad arguments and bad syntax.
 */
#include "testutil.h"

#include "core/template.h"

#include <stdlib.h>
#include <string.h>

static const char *const VARS_JSON =
    "{\"task\": {\"title\": \"Fix the bug\", \"id\": 7, \"score\": 0.1, \"big\": 2.5,"
    "            \"labels\": [\"bug\", \"ui\", \"p1\"], \"empty\": \"\", \"none\": null,"
    "            \"done\": false, \"meta\": {\"a\": 1, \"b\": [true, null]},"
    "            \"body\": \"  padded text \\n\", \"utf\": \"h\\u00e9llo w\\u00f6rld\"},"
    " \"inputs\": {\"branch\": \"\", \"mode\": \"fast\", \"NAME\": \"x\", \"count\": 0},"
    " \"steps\": {\"implement\": {\"output\": \"done\", \"ok\": true},"
    "             \"review\": {\"output\": \"line1\\nline2\\nline3\\n\", \"suggestions\": 5,"
    "                          \"ok\": false},"
    "             \"refine\": {\"output\": \"FAIL: 2 tests\", \"ok\": true},"
    "             \"step-1\": {\"output\": \"s1\"}},"
    " \"nums\": {\"ten\": \"10\", \"nine\": \"9\", \"word\": \"apple\"}}";

static int setup(void **state)
{
    json_error_t je;
    json_t *vars = json_loads(VARS_JSON, 0, &je);
    if (!vars) {
        fprintf(stderr, "fixture: %s at %d:%d\n", je.text, je.line, je.column);
        return -1;
    }
    *state = vars;
    return 0;
}

static int teardown(void **state)
{
    json_decref(*state);
    return 0;
}

/* Render src and compare with want (printing the error when it fails). */
#define EXPECT(src, want) expect_render(*state, (src), (want), __LINE__)
static void expect_render(const json_t *vars, const char *src, const char *want, int at)
{
    char *out = NULL;
    bt_error err = BT_ERROR_INIT;
    int rc = bt_tmpl_render_string(src, vars, &out, &err);
    if (rc != 0)
        fail_msg("line %d: rendering '%s' failed: %s", at, src, err.msg);
    if (strcmp(out, want) != 0) {
        fail_msg("line %d: '%s' rendered as '%s', want '%s'", at, src, out, want);
    }
    free(out);
}

/* Rendering fails with code, a message containing msg, at line:column. */
#define EXPECT_RENDER_ERR(src, code, msg, line, col)                                               \
    expect_render_err(*state, (src), (code), (msg), (line), (col), __LINE__)
static void expect_render_err(const json_t *vars, const char *src, int code, const char *msg,
                              int line, int col, int at)
{
    bt_tmpl *t = NULL;
    bt_error err = BT_ERROR_INIT;
    bt_tmpl_error where = {0, 0};
    if (bt_tmpl_compile(src, &t, &where, &err) != 0)
        fail_msg("line %d: '%s' did not compile: %s", at, src, err.msg);
    char *out = (char *)"unchanged";
    int rc = bt_tmpl_render(t, vars, &out, &where, &err);
    bt_tmpl_free(t);
    if (rc != code)
        fail_msg("line %d: '%s' gave %d (%s), want %d", at, src, rc, err.msg, code);
    assert_null(out);
    if (!strstr(err.msg, msg))
        fail_msg("line %d: message '%s' lacks '%s'", at, err.msg, msg);
    if (where.line != line || where.column != col)
        fail_msg("line %d: error at %d:%d, want %d:%d (%s)", at, where.line, where.column, line,
                 col, err.msg);
}

/* Compiling fails with BT_EPARSE, a message containing msg, at line:column. */
#define EXPECT_PARSE_ERR(src, msg, line, col)                                                      \
    expect_parse_err((src), (msg), (line), (col), __LINE__)
static void expect_parse_err(const char *src, const char *msg, int line, int col, int at)
{
    bt_tmpl *t = (bt_tmpl *)&t;
    bt_error err = BT_ERROR_INIT;
    bt_tmpl_error where = {0, 0};
    int rc = bt_tmpl_compile(src, &t, &where, &err);
    if (rc != BT_EPARSE)
        fail_msg("line %d: '%s' compiled with %d, want BT_EPARSE", at, src, rc);
    assert_null(t);
    if (!strstr(err.msg, msg))
        fail_msg("line %d: message '%s' lacks '%s'", at, err.msg, msg);
    if (where.line != line || where.column != col)
        fail_msg("line %d: error at %d:%d, want %d:%d (%s)", at, where.line, where.column, line,
                 col, err.msg);
}

/* Evaluate src and return the value as compact JSON text (malloc'd). */
static char *eval_json(const json_t *vars, const char *src)
{
    bt_tmpl *t = NULL;
    bt_error err = BT_ERROR_INIT;
    if (bt_tmpl_compile(src, &t, NULL, &err) != 0)
        fail_msg("'%s' did not compile: %s", src, err.msg);
    json_t *v = NULL;
    if (bt_tmpl_eval(t, vars, &v, NULL, &err) != 0)
        fail_msg("'%s' did not evaluate: %s", src, err.msg);
    bt_tmpl_free(t);
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

#define EXPECT_EVAL(src, want)                                                                     \
    do {                                                                                           \
        char *got_ = eval_json(*state, (src));                                                     \
        if (strcmp(got_, (want)) != 0)                                                             \
            fail_msg("line %d: eval '%s' = %s, want %s", __LINE__, (src), got_, (want));           \
        free(got_);                                                                                \
    } while (0)

static void test_text_is_copied_verbatim(void **state)
{
    EXPECT("", "");
    EXPECT("no templates here", "no templates here");
    EXPECT("lone { and } and $ and $$ and {x} and } } and $x", "lone { and } and $ and $$ and {x} "
                                                               "and } } and $x");
    EXPECT("echo $${HOME} and $${PATH}", "echo ${HOME} and ${PATH}");
    EXPECT("awk '{print $1}'", "awk '{print $1}'");
    EXPECT("tail{", "tail{");
    EXPECT("tail$", "tail$");

    bt_tmpl *t = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_tmpl_compile("echo $${HOME}", &t, NULL, &err), 0);
    assert_true(bt_tmpl_is_static(t));
    bt_tmpl_free(t);
    assert_int_equal(bt_tmpl_compile("a {{ task.id }}", &t, NULL, &err), 0);
    assert_false(bt_tmpl_is_static(t));
    bt_tmpl_free(t);
    assert_int_equal(bt_tmpl_compile("a ${task.id}", &t, NULL, &err), 0);
    assert_false(bt_tmpl_is_static(t));
    bt_tmpl_free(t);
}

static void test_paths_and_values(void **state)
{
    EXPECT("{{ task.title }}", "Fix the bug");
    EXPECT("{{task.title}}", "Fix the bug");
    EXPECT("#{{ task.id }}: {{ task.title }}!", "#7: Fix the bug!");
    EXPECT("{{ task.score }} {{ task.big }}", "0.1 2.5"); /* shortest form */
    EXPECT("[{{ task.none }}]", "[]");                    /* null renders as nothing */
    EXPECT("{{ task.done }} {{ steps.implement.ok }}", "false true");
    EXPECT("{{ task.labels }}", "[\"bug\",\"ui\",\"p1\"]");
    EXPECT("{{ task.meta }}", "{\"a\":1,\"b\":[true,null]}");
    EXPECT("{{ task.labels.0 }} {{ task.labels[1] }} {{ task.labels.2 }}", "bug ui p1");
    EXPECT("{{ task.meta.b[0] }}", "true");
    EXPECT("{{ task.utf }}", "h\xc3\xa9llo w\xc3\xb6rld");
    /* seed 001's spelling: hyphenated step ids, upper-case input names */
    EXPECT("${steps.step-1.output}/${inputs.NAME}", "s1/x");
    EXPECT("${ steps.step-1.output }", "s1");
    EXPECT("{{ steps.step-1.output }}", "s1");
    EXPECT("${task.labels[2]}", "p1");
}

static void test_literals(void **state)
{
    EXPECT("{{ \"literal text\" }}", "literal text");
    EXPECT("{{ \"q\\\"uote\\\\ tab\\tnl\\n\" }}", "q\"uote\\ tab\tnl\n");
    EXPECT("{{ \"}} inside\" }}", "}} inside");
    EXPECT("{{ 42 }} {{ -3 }} {{ 1.5 }}", "42 -3 1.5");
    EXPECT("{{ true }} {{ false }} [{{ null }}]", "true false []");
    EXPECT("{{ \"abc\" | upcase }}", "ABC");
}

static void test_filters(void **state)
{
    /* default: null and "" are replaced, anything else (even 0 and false) is kept */
    EXPECT("{{ inputs.branch | default(\"main\") }}", "main");
    EXPECT("{{ task.none | default(\"n/a\") }}", "n/a");
    EXPECT("{{ inputs.mode | default(\"slow\") }}", "fast");
    EXPECT("{{ inputs.count | default(9) }}", "0");
    EXPECT("{{ task.done | default(true) }}", "false");
    EXPECT("{{ task.none | default(3) }}", "3");
    /* upcase / downcase: ASCII only, UTF-8 bytes untouched */
    EXPECT("{{ task.title | upcase }}", "FIX THE BUG");
    EXPECT("{{ task.title | downcase() }}", "fix the bug");
    EXPECT("{{ task.utf | upcase }}", "H\xc3\xa9LLO W\xc3\xb6RLD");
    EXPECT("{{ task.id | upcase }}", "7");
    /* json: the value as compact JSON */
    EXPECT("{{ task.title | json }}", "\"Fix the bug\"");
    EXPECT("{{ task.meta | json }}", "{\"a\":1,\"b\":[true,null]}");
    EXPECT("{{ task.none | json }}", "null");
    EXPECT("{{ task.score | json }}", "0.1");
    EXPECT("{{ steps.review.output | json }}", "\"line1\\nline2\\nline3\\n\"");
    /* truncate: N characters, then "..." when cut */
    EXPECT("{{ task.title | truncate(3) }}", "Fix...");
    EXPECT("{{ task.title | truncate(11) }}", "Fix the bug");
    EXPECT("{{ task.title | truncate(200) }}", "Fix the bug");
    EXPECT("{{ task.title | truncate(0) }}", "...");
    EXPECT("{{ task.utf | truncate(2) }}", "h\xc3\xa9...");
    EXPECT("{{ task.utf | truncate(7) }}", "h\xc3\xa9llo w...");
    EXPECT("{{ task.meta | truncate(5) }}", "{\"a\":...");
    EXPECT("{{ \"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\" | truncate(1) }}", "\xe2\x82\xac...");
    /* trim */
    EXPECT("[{{ task.body | trim }}]", "[padded text]");
    EXPECT("[{{ \" \\t \\n \" | trim }}]", "[]");
    /* lines: the last N lines */
    EXPECT("{{ steps.review.output | lines(2) }}", "line2\nline3\n");
    EXPECT("{{ steps.review.output | lines(1) }}", "line3\n");
    EXPECT("{{ steps.review.output | lines(10) }}", "line1\nline2\nline3\n");
    EXPECT("[{{ steps.review.output | lines(0) }}]", "[]");
    EXPECT("{{ \"a\\nb\\nc\" | lines(2) }}", "b\nc");
    /* chains */
    EXPECT("{{ task.body | trim | upcase | truncate(6) }}", "PADDED...");
    EXPECT("{{ inputs.branch | default(\"feature\") | upcase | json }}", "\"FEATURE\"");
    EXPECT("{{ steps.review.output|lines(1)|trim|upcase }}", "LINE3");
}

static void test_comparisons_and_logic(void **state)
{
    EXPECT("{{ steps.review.suggestions > 3 }}", "true");
    EXPECT("{{ steps.review.suggestions <= 3 }}", "false");
    EXPECT("{{ steps.review.suggestions >= 5 }} {{ steps.review.suggestions < 5 }}", "true false");
    EXPECT("{{ task.big > 2 }} {{ task.id == 7 }} {{ task.id == 7.0 }}", "true true true");
    EXPECT("{{ inputs.mode == \"fast\" }} {{ inputs.mode != \"fast\" }}", "true false");
    EXPECT("{{ task.id == \"7\" }}", "true"); /* not two numbers: rendered text */
    /* text that is entirely a number orders numerically; other text orders as text */
    EXPECT("{{ nums.ten > nums.nine }} {{ nums.ten > 9 }}", "true true");
    EXPECT("{{ nums.word < \"banana\" }} {{ \"b\" > \"abc\" }}", "true true");
    /* contains: substring of text, element of an array, key of an object */
    EXPECT("{{ steps.refine.output contains \"FAIL\" }}", "true");
    EXPECT("{{ steps.refine.output contains \"PASS\" }}", "false");
    EXPECT("{{ task.labels contains \"ui\" }} {{ task.labels contains \"u\" }}", "true false");
    EXPECT("{{ task.meta contains \"b\" }} {{ task.meta contains \"c\" }}", "true false");
    /* and / or / not, precedence and parentheses */
    EXPECT("{{ inputs.mode == \"fast\" and not steps.review.ok }}", "true");
    EXPECT("{{ steps.review.ok or steps.implement.ok }}", "true");
    EXPECT("{{ steps.review.ok or task.done }}", "false");
    EXPECT("{{ not steps.review.ok and steps.implement.ok }}", "true");
    EXPECT("{{ not (steps.review.ok or steps.implement.ok) }}", "false");
    EXPECT("{{ (steps.review.ok or steps.implement.ok) and steps.refine.ok }}", "true");
    EXPECT("{{ steps.review.ok or steps.implement.ok and task.done }}", "false");
    EXPECT("{{ not not inputs.mode }}", "true");
    EXPECT("{{ not inputs.branch }} {{ not \"off\" }} {{ not \"yes\" }}", "true true false");
    /* filters bind tighter than comparisons */
    EXPECT("{{ inputs.mode | upcase == \"FAST\" }}", "true");
    EXPECT("{{ inputs.branch | default(\"main\") == \"main\" }}", "true");
    /* and/or stop early: the right side is not looked up */
    EXPECT("{{ steps.review.ok and steps.missing.ok }}", "false");
    EXPECT("{{ steps.implement.ok or steps.missing.ok }}", "true");
}

static void test_eval_is_typed(void **state)
{
    EXPECT_EVAL("{{ steps.implement.ok }}", "true");
    EXPECT_EVAL("{{ steps.review.suggestions > 3 }}", "true");
    EXPECT_EVAL("{{ steps.review.suggestions }}", "5");
    EXPECT_EVAL("{{ task.big }}", "2.5");
    EXPECT_EVAL("{{ task.none }}", "null");
    EXPECT_EVAL("{{ task.labels }}", "[\"bug\",\"ui\",\"p1\"]");
    EXPECT_EVAL("{{ task.none | default(3) }}", "3");
    EXPECT_EVAL("${steps.implement.ok}", "true");
    EXPECT_EVAL("  {{ steps.implement.ok }}\n", "true"); /* a YAML block's newline */
    /* anything else is its rendering, as a string */
    EXPECT_EVAL("ok={{ steps.implement.ok }}", "\"ok=true\"");
    EXPECT_EVAL("{{ task.id }}{{ task.id }}", "\"77\"");
    EXPECT_EVAL("plain", "\"plain\"");
    EXPECT_EVAL("", "\"\"");

    /* eval errors carry the position too */
    bt_tmpl *t = NULL;
    bt_error err = BT_ERROR_INIT;
    bt_tmpl_error where = {0, 0};
    assert_int_equal(bt_tmpl_compile("\n  {{ steps.nope.ok }}", &t, &where, &err), 0);
    json_t *v = json_true();
    assert_int_equal(bt_tmpl_eval(t, *state, &v, &where, &err), BT_ENOENT);
    assert_null(v);
    assert_int_equal(where.line, 2);
    assert_int_equal(where.column, 6);
    bt_tmpl_free(t);
}

static void test_truthy(void **state)
{
    (void)state;
    static const char *const falsy[] = {"false",     "null",         "0",     "0.0",    "\"\"",
                                        "\"false\"", "\"FALSE\"",    "\"0\"", "\"no\"", "\"No\"",
                                        "\"off\"",   "\" Off \\n\"", "\"  \""};
    static const char *const truthy[] = {"true",     "1",      "-1", "0.5", "\"yes\"", "\"x\"",
                                         "\"nope\"", "\"00\"", "[]", "{}",  "[0]",     "\"true\""};
    for (size_t i = 0; i < sizeof falsy / sizeof *falsy; i++) {
        json_t *v = json_loads(falsy[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        if (bt_tmpl_truthy(v))
            fail_msg("%s should be false", falsy[i]);
        json_decref(v);
    }
    for (size_t i = 0; i < sizeof truthy / sizeof *truthy; i++) {
        json_t *v = json_loads(truthy[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        if (!bt_tmpl_truthy(v))
            fail_msg("%s should be true", truthy[i]);
        json_decref(v);
    }
    assert_false(bt_tmpl_truthy(NULL));
}

static void test_unknown_variables(void **state)
{
    EXPECT_RENDER_ERR("{{ steps.reviw.output }}", BT_ENOENT,
                      "unknown variable 'steps.reviw.output': 'steps' has no 'reviw' (known: "
                      "implement, review, refine, step-1); did you mean 'review'?",
                      1, 4);
    EXPECT_RENDER_ERR("Title: {{ tsk.title }}", BT_ENOENT,
                      "unknown variable 'tsk.title': no variable 'tsk' (known: task, inputs, "
                      "steps, nums); did you mean 'task'?",
                      1, 11);
    EXPECT_RENDER_ERR("{{ task.zzzzzz }}", BT_ENOENT, "'task' has no 'zzzzzz' (known: title,", 1,
                      4);
    EXPECT_RENDER_ERR("{{ task.zzzzzz }}", BT_ENOENT, "", 1, 4);
    /* no "did you mean" when nothing is close */
    bt_error err = BT_ERROR_INIT;
    char *out = NULL;
    assert_int_equal(bt_tmpl_render_string("{{ task.zzzzzz }}", *state, &out, &err), BT_ENOENT);
    assert_null(strstr(err.msg, "did you mean"));
    /* index out of range, a name on an array, a part below a scalar */
    EXPECT_RENDER_ERR("{{ task.labels[5] }}", BT_ENOENT,
                      "unknown variable 'task.labels[5]': index 5 is out of range ('task.labels' "
                      "has 3 items)",
                      1, 4);
    EXPECT_RENDER_ERR("{{ task.labels.3 }}", BT_ENOENT, "index 3 is out of range", 1, 4);
    EXPECT_RENDER_ERR("{{ task.labels.first }}", BT_ENOENT,
                      "'task.labels' is an array (3 items); use an index like [0]", 1, 4);
    EXPECT_RENDER_ERR("{{ task.title.text }}", BT_ENOENT,
                      "'task.title' is a string, it has no 'text'", 1, 4);
    EXPECT_RENDER_ERR("{{ task.none.x }}", BT_ENOENT, "'task.none' is null, it has no 'x'", 1, 4);
    /* a shell variable written with ${ } gets the escape hint */
    EXPECT_RENDER_ERR("echo ${HOME}", BT_ENOENT,
                      "no variable 'HOME' (known: task, inputs, steps, nums); if this is a shell "
                      "variable, write $${HOME}",
                      1, 8);
    /* never an empty string: errors inside filters, comparisons and logic too */
    EXPECT_RENDER_ERR("{{ task.nope | default(\"x\") }}", BT_ENOENT, "'task' has no 'nope'", 1, 4);
    EXPECT_RENDER_ERR("{{ 1 == 1 and task.nope }}", BT_ENOENT, "'task' has no 'nope'", 1, 15);
    EXPECT_RENDER_ERR("{{ task.id > steps.x.n }}", BT_ENOENT, "'steps' has no 'x'", 1, 14);
    /* line and column on line 3 (columns count characters, not bytes) */
    EXPECT_RENDER_ERR("line one {{ task.id }}\nline two \xc3\xa9\n\xc3\xa9\xc3\xa9 {{ "
                      "inputs.brnch }}",
                      BT_ENOENT, "'inputs' has no 'brnch'", 3, 7);
    EXPECT_RENDER_ERR("a\nb\n  ${steps.review.missing}", BT_ENOENT,
                      "'steps.review' has no 'missing' (known: output, suggestions, ok)", 3, 5);
    /* vars that are not an object know no variables at all */
    bt_tmpl *t = NULL;
    assert_int_equal(bt_tmpl_compile("{{ task }}", &t, NULL, &err), 0);
    assert_int_equal(bt_tmpl_render(t, NULL, &out, NULL, &err), BT_ENOENT);
    assert_non_null(strstr(err.msg, "no variable 'task'"));
    bt_tmpl_free(t);
}

static void test_parse_errors(void **state)
{
    (void)state;
    EXPECT_PARSE_ERR("{{ task.title | upper }}",
                     "unknown filter 'upper' (filters: default, upcase, downcase, json, "
                     "truncate, trim, lines)",
                     1, 17);
    EXPECT_PARSE_ERR("{{ task.title | upcse }}", "did you mean 'upcase'?", 1, 17);
    EXPECT_PARSE_ERR("{{ task.title | frobnicate }}", "unknown filter 'frobnicate'", 1, 17);
    EXPECT_PARSE_ERR("one\ntwo\nthree {{ task.title", "unterminated '{{' (opened at 3:7)", 3, 7);
    EXPECT_PARSE_ERR("{{ task.title | truncate }}", "truncate needs one integer argument", 1, 17);
    EXPECT_PARSE_ERR("{{ task.title | truncate(\"x\") }}", "truncate needs one integer argument", 1,
                     17);
    EXPECT_PARSE_ERR("{{ task.title | truncate(1, 2) }}", "truncate needs one integer argument", 1,
                     17);
    EXPECT_PARSE_ERR("{{ task.title | truncate(-1) }}", "of 0 or more", 1, 17);
    EXPECT_PARSE_ERR("{{ x | lines(1.5) }}", "lines needs one integer argument", 1, 8);
    EXPECT_PARSE_ERR("{{ x | default }}", "default needs one argument", 1, 8);
    EXPECT_PARSE_ERR("{{ x | default(1, 2) }}", "default needs one argument", 1, 8);
    EXPECT_PARSE_ERR("{{ x | upcase(1) }}", "upcase takes no arguments", 1, 8);
    EXPECT_PARSE_ERR("{{ x | default(y) }}", "filter arguments must be literals", 1, 16);
    EXPECT_PARSE_ERR("{{ }}", "empty expression", 1, 1);
    EXPECT_PARSE_ERR("ab {{}}", "empty expression", 1, 4);
    EXPECT_PARSE_ERR("{{ a == }}", "unexpected '}}'", 1, 9);
    EXPECT_PARSE_ERR("{{ a b }}", "unexpected 'b' after the expression; expected '}}'", 1, 6);
    EXPECT_PARSE_ERR("{{ steps. }}", "bad path 'steps.'", 1, 9);
    EXPECT_PARSE_ERR("{{ a[x] }}", "expected an index like [0]", 1, 5);
    EXPECT_PARSE_ERR("{{ a = 1 }}", "use '=='", 1, 6);
    EXPECT_PARSE_ERR("{{ a && b }}", "use 'and'", 1, 6);
    EXPECT_PARSE_ERR("{{ a || b }}", "use 'or'", 1, 6);
    EXPECT_PARSE_ERR("{{ (a or b }}", "expected ')' to close the '(' at 1:4", 1, 12);
    EXPECT_PARSE_ERR("{{ \"abc }}", "unterminated string (opened at 1:4)", 1, 4);
    EXPECT_PARSE_ERR("{{ \"a\\qb\" }}", "unknown escape '\\q'", 1, 6);
    EXPECT_PARSE_ERR("{{ true.x }}", "'true' is a reserved word", 1, 4);
    EXPECT_PARSE_ERR("{{ 3abc }}", "bad number '3abc'", 1, 4);
    EXPECT_PARSE_ERR("{{ a ? b }}", "unexpected '?'", 1, 6);
    EXPECT_PARSE_ERR("x ${task.title | upcase}", "filters and operators need the {{ }} form", 1,
                     16);
    EXPECT_PARSE_ERR("x ${#arr[@]}", "write $${ for a literal '${'", 1, 3);
    EXPECT_PARSE_ERR("\n  ${task.title", "unterminated '${' (opened at 2:3)", 2, 3);
    EXPECT_PARSE_ERR("{{ a | default(\"x\" }}", "expected ',' or ')'", 1, 20);

    /* runaway input is refused instead of recursing without bound */
    char big[8192];
    strcpy(big, "{{ ");
    for (int i = 0; i < 100; i++)
        strcat(big, "(");
    strcat(big, "a }}");
    EXPECT_PARSE_ERR(big, "nested too deeply", 1, 4 + 64);
    strcpy(big, "{{ a");
    for (int i = 0; i < 1200; i++)
        strcat(big, "|trim");
    strcat(big, " }}");
    EXPECT_PARSE_ERR(big, "expression is too long", 1, 1);
}

typedef struct refs_seen {
    char text[512];
    int stop_after;
    int calls;
} refs_seen;

static int collect_ref(const char *const *parts, size_t nparts, int line, int column, void *ud)
{
    refs_seen *s = ud;
    size_t len = strlen(s->text);
    snprintf(s->text + len, sizeof s->text - len, "%s%d:%d", len ? " " : "", line, column);
    for (size_t i = 0; i < nparts; i++) {
        len = strlen(s->text);
        snprintf(s->text + len, sizeof s->text - len, "%s%s", i ? "/" : "=", parts[i]);
    }
    s->calls++;
    return s->calls == s->stop_after ? 42 : 0;
}

static void test_refs(void **state)
{
    (void)state;
    bt_tmpl *t = NULL;
    bt_error err = BT_ERROR_INIT;
    const char *src = "Fix {{ task.title | default(\"x\") }} on ${inputs.branch}\n"
                      "{{ steps.review.suggestions > 3 and not steps.test.items[2].ok }}"
                      " {{ \"literal\" }} $${NOT_A_REF}";
    assert_int_equal(bt_tmpl_compile(src, &t, NULL, &err), 0);
    refs_seen s = {{0}, 0, 0};
    assert_int_equal(bt_tmpl_refs(t, collect_ref, &s), 0);
    assert_string_equal(s.text, "1:8=task/title 1:42=inputs/branch 2:4=steps/review/suggestions "
                                "2:41=steps/test/items/2/ok");
    /* a non-zero return stops the walk and is passed back */
    refs_seen stop = {{0}, 2, 0};
    assert_int_equal(bt_tmpl_refs(t, collect_ref, &stop), 42);
    assert_int_equal(stop.calls, 2);
    bt_tmpl_free(t);

    assert_int_equal(bt_tmpl_compile("no refs {{ 1 }}", &t, NULL, &err), 0);
    refs_seen none = {{0}, 0, 0};
    assert_int_equal(bt_tmpl_refs(t, collect_ref, &none), 0);
    assert_int_equal(none.calls, 0);
    bt_tmpl_free(t);
}

static void test_render_string_reports_position(void **state)
{
    char *out = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_tmpl_render_string("a\n {{ tsk }}", *state, &out, &err), BT_ENOENT);
    assert_null(out);
    assert_non_null(strstr(err.msg, "line 2, column 5"));
    assert_non_null(strstr(err.msg, "unknown variable 'tsk'"));
    assert_int_equal(bt_tmpl_render_string("{{ x | nope }}", *state, &out, &err), BT_EPARSE);
    assert_non_null(strstr(err.msg, "line 1, column 8"));
    assert_int_equal(bt_tmpl_render_string(NULL, *state, &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
}

/* A compiled template renders repeatedly with different values (compile once, render
 * many: what the engine does for every step). */
static void test_compile_once_render_many(void **state)
{
    (void)state;
    bt_tmpl *t = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(
        bt_tmpl_compile("step {{ n }}: {{ out | truncate(4) | upcase }}", &t, NULL, &err), 0);
    for (int i = 0; i < 1000; i++) {
        json_t *vars = json_pack("{s:i,s:s}", "n", i, "out", i % 2 ? "odd output" : "even");
        char *out = NULL;
        assert_int_equal(bt_tmpl_render(t, vars, &out, NULL, &err), 0);
        char want[64];
        snprintf(want, sizeof want, "step %d: %s", i, i % 2 ? "ODD ..." : "EVEN");
        assert_string_equal(out, want);
        free(out);
        json_decref(vars);
    }
    bt_tmpl_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_is_copied_verbatim),
        cmocka_unit_test(test_paths_and_values),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_comparisons_and_logic),
        cmocka_unit_test(test_eval_is_typed),
        cmocka_unit_test(test_truthy),
        cmocka_unit_test(test_unknown_variables),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_render_string_reports_position),
        cmocka_unit_test(test_compile_once_render_many),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
