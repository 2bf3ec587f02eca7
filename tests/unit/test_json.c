/*
 * test_json.c - depth-limited JSON parsing with located errors, and lookups.
 */
#include "testutil.h"

#include "base/json.h"
#include "base/strbuf.h"

#include <stdlib.h>
#include <string.h>

static void test_parse(void **state)
{
    (void)state;
    json_t *v;
    bt_error err = BT_ERROR_INIT;
    const char ok[] = "{\"title\":\"x\",\"n\":3,\"b\":true}";
    assert_int_equal(bt_json_parse(ok, strlen(ok), 0, &v, &err), 0);
    assert_string_equal(bt_json_str(v, "title", NULL), "x");
    assert_int_equal(bt_json_int(v, "n", 0), 3);
    assert_true(bt_json_bool(v, "b", 0));
    assert_string_equal(bt_json_str(v, "n", "dflt"), "dflt"); /* wrong type = absent */
    char *s = bt_json_dumps(v);
    assert_string_equal(s, "{\"title\":\"x\",\"n\":3,\"b\":true}");
    free(s);
    json_decref(v);

    const char bad[] = "{\n  \"a\": [1, 2,\n}";
    assert_int_equal(bt_json_parse(bad, strlen(bad), 0, &v, &err), BT_EPARSE);
    assert_null(v);
    assert_non_null(strstr(err.msg, "line 3"));

    const char dup[] = "{\"a\":1,\"a\":2}";
    assert_int_equal(bt_json_parse(dup, strlen(dup), 0, &v, &err), BT_EPARSE);
}

static void test_depth(void **state)
{
    (void)state;
    bt_strbuf sb = BT_STRBUF_INIT;
    for (int i = 0; i < 100; i++)
        bt_strbuf_addch(&sb, '[');
    for (int i = 0; i < 100; i++)
        bt_strbuf_addch(&sb, ']');
    json_t *v;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_json_parse(sb.buf, sb.len, 32, &v, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "100"));
    assert_int_equal(bt_json_parse(sb.buf, sb.len, 100, &v, &err), 0);
    assert_int_equal(bt_json_depth(v), 100);
    json_decref(v);
    /* brackets inside strings do not count */
    const char str[] = "{\"a\":\"[[[[[[[[[[[[\"}";
    assert_int_equal(bt_json_parse(str, strlen(str), 2, &v, &err), 0);
    json_decref(v);
    bt_strbuf_release(&sb);

    json_t *e = bt_json_error("not_found", "no task 42");
    char *s = bt_json_dumps(e);
    assert_string_equal(s, "{\"error\":{\"code\":\"not_found\",\"message\":\"no task 42\"}}");
    free(s);
    json_decref(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
