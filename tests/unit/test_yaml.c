/*
 * test_yaml.c - the YAML loader: core-schema typing, positions by JSON pointer,
 * anchors/aliases/merges, and every refusal (multi-document, duplicate keys,
 * billion laughs, bad syntax) with its file:line:column.
 */
#include "testutil.h"

#include "base/yaml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bt_yaml_doc *load_ok(const char *text)
{
    bt_yaml_doc *doc = NULL;
    bt_error err = BT_ERROR_INIT;
    int rc = bt_yaml_load_string("t.yaml", text, strlen(text), &doc, &err);
    if (rc != 0)
        fail_msg("unexpected error: %s", err.msg);
    assert_non_null(doc);
    return doc;
}

static void load_fails(const char *text, const char *want_substr)
{
    bt_yaml_doc *doc = NULL;
    bt_error err = BT_ERROR_INIT;
    int rc = bt_yaml_load_string("t.yaml", text, strlen(text), &doc, &err);
    assert_true(rc < 0);
    assert_null(doc);
    if (!strstr(err.msg, want_substr))
        fail_msg("error '%s' lacks '%s'", err.msg, want_substr);
}

static void test_scalar_typing(void **state)
{
    (void)state;
    bt_yaml_doc *doc = load_ok("n1: null\nn2: ~\nn3:\nb1: true\nb2: False\n"
                               "i1: 42\ni2: -7\ni3: 0x1F\ni4: 0o17\n"
                               "f1: 1.5\nf2: 2e3\n"
                               "s1: yes\ns2: '42'\ns3: \"true\"\ns4: on\ns5: .inf\n"
                               "s6: !!str 12\ns7: |\n  block\n");
    json_t *r = bt_yaml_doc_root(doc);
    assert_true(json_is_object(r));
    assert_true(json_is_null(json_object_get(r, "n1")));
    assert_true(json_is_null(json_object_get(r, "n2")));
    assert_true(json_is_null(json_object_get(r, "n3")));
    assert_true(json_is_true(json_object_get(r, "b1")));
    assert_true(json_is_false(json_object_get(r, "b2")));
    assert_int_equal(json_integer_value(json_object_get(r, "i1")), 42);
    assert_int_equal(json_integer_value(json_object_get(r, "i2")), -7);
    assert_int_equal(json_integer_value(json_object_get(r, "i3")), 31);
    assert_int_equal(json_integer_value(json_object_get(r, "i4")), 15);
    assert_true(json_is_real(json_object_get(r, "f1")));
    assert_true(json_real_value(json_object_get(r, "f2")) == 2000.0);
    assert_string_equal(json_string_value(json_object_get(r, "s1")), "yes");
    assert_string_equal(json_string_value(json_object_get(r, "s2")), "42");
    assert_string_equal(json_string_value(json_object_get(r, "s3")), "true");
    assert_string_equal(json_string_value(json_object_get(r, "s4")), "on");
    assert_string_equal(json_string_value(json_object_get(r, "s5")), ".inf");
    assert_string_equal(json_string_value(json_object_get(r, "s6")), "12");
    assert_string_equal(json_string_value(json_object_get(r, "s7")), "block\n");
    bt_yaml_doc_free(doc);
}

static void test_nested_and_positions(void **state)
{
    (void)state;
    const char *text = "server:\n"
                       "  port: 8080\n"
                       "agents:\n"
                       "  claude:\n"
                       "    timeout:   30s\n"
                       "tokens:\n"
                       "  - a\n"
                       "  - {name: x, \"we/ird~\": 1}\n";
    bt_yaml_doc *doc = load_ok(text);
    json_t *r = bt_yaml_doc_root(doc);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(r, "agents"), "claude"), "timeout")),
                        "30s");
    bt_yaml_pos k, v;
    assert_int_equal(bt_yaml_doc_pos(doc, "/agents/claude/timeout", &k, &v), 0);
    assert_int_equal(k.line, 5);
    assert_int_equal(k.column, 5);
    assert_int_equal(v.line, 5);
    assert_int_equal(v.column, 16);
    assert_int_equal(bt_yaml_doc_pos(doc, "/server/port", &k, &v), 0);
    assert_int_equal(k.line, 2);
    assert_int_equal(k.column, 3);
    assert_int_equal(v.column, 9);
    assert_int_equal(bt_yaml_doc_pos(doc, "/tokens/1", &k, &v), 0);
    assert_int_equal(v.line, 8);
    assert_int_equal(v.column, 5);
    assert_int_equal(bt_yaml_doc_pos(doc, "/tokens/1/we~1ird~0", &k, &v), 0);
    assert_int_equal(k.line, 8);
    assert_int_equal(k.column, 15);
    /* Unknown pointer: nearest ancestor, flagged as inexact. */
    assert_int_equal(bt_yaml_doc_pos(doc, "/server/host", &k, &v), 1);
    assert_int_equal(k.line, 1);
    assert_int_equal(bt_yaml_doc_pos(doc, "", &k, &v), 0);
    assert_int_equal(v.line, 1);
    bt_yaml_doc_free(doc);
}

static void test_pointer_push(void **state)
{
    (void)state;
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_yaml_pointer_push(&sb, "a/b~c");
    bt_yaml_pointer_push(&sb, "0");
    assert_string_equal(bt_strbuf_cstr(&sb), "/a~1b~0c/0");
    bt_strbuf_release(&sb);
}

static void test_anchors_and_merge(void **state)
{
    (void)state;
    bt_yaml_doc *doc = load_ok("base: &b\n  timeout: 30s\n  model: m1\n"
                               "one:\n  <<: *b\n  model: m2\n"
                               "two:\n  model: m3\n  <<: [*b]\n"
                               "list: &l [1, 2]\n"
                               "copy: *l\n");
    json_t *r = bt_yaml_doc_root(doc);
    json_t *one = json_object_get(r, "one");
    assert_string_equal(json_string_value(json_object_get(one, "timeout")), "30s");
    assert_string_equal(json_string_value(json_object_get(one, "model")), "m2");
    assert_null(json_object_get(one, "<<"));
    json_t *two = json_object_get(r, "two");
    assert_string_equal(json_string_value(json_object_get(two, "model")), "m3");
    assert_string_equal(json_string_value(json_object_get(two, "timeout")), "30s");
    assert_int_equal(json_array_size(json_object_get(r, "copy")), 2);
    /* A merged key has no position of its own: the mapping's is used. */
    bt_yaml_pos k;
    assert_int_equal(bt_yaml_doc_pos(doc, "/one/timeout", &k, NULL), 1);
    assert_int_equal(k.line, 4);
    bt_yaml_doc_free(doc);
}

static void test_empty_document(void **state)
{
    (void)state;
    bt_yaml_doc *doc = load_ok("");
    assert_true(json_is_null(bt_yaml_doc_root(doc)));
    bt_yaml_doc_free(doc);
    doc = load_ok("# only a comment\n");
    assert_true(json_is_null(bt_yaml_doc_root(doc)));
    bt_yaml_doc_free(doc);
    doc = load_ok("---\na: 1\n...\n");
    assert_int_equal(json_integer_value(json_object_get(bt_yaml_doc_root(doc), "a")), 1);
    bt_yaml_doc_free(doc);
}

static void test_multi_document_refused(void **state)
{
    (void)state;
    load_fails("a: 1\n---\nb: 2\n", "t.yaml:2:1: a second YAML document");
}

static void test_duplicate_key_refused(void **state)
{
    (void)state;
    load_fails("a: 1\nb:\n  c: 1\n  c: 2\n",
               "t.yaml:4:3: duplicate key 'c' (first defined at line 3");
}

static void test_syntax_error_position(void **state)
{
    (void)state;
    load_fails("a: 1\nb: [1, 2\n", "t.yaml:");
    load_fails("a:\n  - x\n b: 1\n", "t.yaml:3:");
    load_fails("a: *nope\n", "t.yaml:1:4: unknown anchor '*nope'");
    load_fails("? [a, b]\n: 1\n", "mapping key must be a plain string");
    load_fails("a: !!int abc\n", "not a valid int");
    load_fails("a: !custom x\n", "unsupported tag");
    load_fails("a: 99999999999999999999999\n", "out of range");
    load_fails("<<: 5\n", "merge key");
}

static void test_billion_laughs_refused(void **state)
{
    (void)state;
    const char *text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                       "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    load_fails(text, "billion laughs");
}

static void test_deep_nesting_refused(void **state)
{
    (void)state;
    char buf[600];
    memset(buf, '[', 300);
    buf[300] = '\0';
    load_fails(buf, "nesting deeper");
}

static void test_load_file(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("yaml");
    char *path = bt_test_write(dir, "c.yaml", "x:\n  y: [1]\n");
    bt_yaml_doc *doc = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_yaml_load_file(path, &doc, &err), 0);
    assert_string_equal(bt_yaml_doc_name(doc), path);
    bt_yaml_doc_free(doc);
    free(path);

    path = bt_test_write(dir, "bad.yaml", "x: 1\nx: 2\n");
    assert_true(bt_yaml_load_file(path, &doc, &err) < 0);
    char want[512];
    snprintf(want, sizeof want, "%s:2:1: duplicate key 'x'", path);
    assert_non_null(strstr(err.msg, want));
    free(path);

    char missing[512];
    snprintf(missing, sizeof missing, "%s/nope.yaml", dir);
    assert_int_equal(bt_yaml_load_file(missing, &doc, &err), BT_ENOENT);
    bt_test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_typing),
        cmocka_unit_test(test_nested_and_positions),
        cmocka_unit_test(test_pointer_push),
        cmocka_unit_test(test_anchors_and_merge),
        cmocka_unit_test(test_empty_document),
        cmocka_unit_test(test_multi_document_refused),
        cmocka_unit_test(test_duplicate_key_refused),
        cmocka_unit_test(test_syntax_error_position),
        cmocka_unit_test(test_billion_laughs_refused),
        cmocka_unit_test(test_deep_nesting_refused),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
