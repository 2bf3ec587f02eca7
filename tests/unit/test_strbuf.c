/*
 * test_strbuf.c - growable strings and string vectors.
 */
#include "testutil.h"

#include "base/strbuf.h"
#include "base/vec.h"

#include <stdlib.h>
#include <string.h>

static void test_add_and_format(void **state)
{
    (void)state;
    bt_strbuf sb = BT_STRBUF_INIT;
    assert_string_equal(bt_strbuf_cstr(&sb), "");
    bt_strbuf_addstr(&sb, "hello");
    bt_strbuf_addch(&sb, ' ');
    for (int i = 0; i < 1000; i++)
        bt_strbuf_addf(&sb, "%d,", i);
    assert_true(sb.len > 3000);
    assert_int_equal(strlen(sb.buf), sb.len);
    assert_memory_equal(sb.buf, "hello 0,1,2,", 12);
    bt_strbuf_reset(&sb);
    assert_string_equal(sb.buf, "");
    bt_strbuf_addstr(&sb, "  padded \n");
    bt_strbuf_trim(&sb);
    assert_string_equal(sb.buf, "padded");
    size_t n;
    char *d = bt_strbuf_detach(&sb, &n);
    assert_int_equal(n, 6);
    assert_null(sb.buf);
    free(d);
}

static void test_json_escape(void **state)
{
    (void)state;
    bt_strbuf sb = BT_STRBUF_INIT;
    const char in[] = "a\"b\\c\nd\x01";
    bt_strbuf_add_json_str(&sb, in, sizeof in - 1);
    assert_string_equal(sb.buf, "\"a\\\"b\\\\c\\nd\\u0001\"");
    bt_strbuf_release(&sb);
}

static void test_strvec_split(void **state)
{
    (void)state;
    bt_strvec sv = BT_STRVEC_INIT;
    bt_strvec_split(&sv, " -y, @sooperset/mcp-atlassian ,,", ',');
    assert_int_equal(sv.len, 2);
    assert_string_equal(sv.items[0], "-y");
    assert_string_equal(sv.items[1], "@sooperset/mcp-atlassian");
    assert_null(sv.items[2]); /* usable as argv */
    assert_true(bt_strvec_contains(&sv, "-y"));
    assert_false(bt_strvec_contains(&sv, "y"));
    bt_strvec_clear(&sv);
}

/* An environment lookup matches whole keys only. */
static void test_strvec_env_get(void **state)
{
    (void)state;
    bt_strvec env = BT_STRVEC_INIT;
    bt_strvec_push(&env, "PATHX=/nope");
    bt_strvec_push(&env, "PATH=/usr/bin");
    bt_strvec_push(&env, "EMPTY=");
    assert_string_equal(bt_strvec_env_get(&env, "PATH"), "/usr/bin");
    assert_string_equal(bt_strvec_env_get(&env, "EMPTY"), "");
    assert_null(bt_strvec_env_get(&env, "PAT"));
    bt_strvec_clear(&env);
}

/* The tail of a process's output for an error message: short text as it is, long text
 * cut at a line start near the window, trailing blanks dropped. */
static void test_add_tail(void **state)
{
    (void)state;
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_add_tail(&sb, "fatal: no such remote\n\n", 100);
    assert_string_equal(sb.buf, "fatal: no such remote");
    bt_strbuf_reset(&sb);
    bt_strbuf_add_tail(&sb, "xx\nline three\n", 12);
    assert_string_equal(sb.buf, "...line three");
    bt_strbuf_reset(&sb);
    bt_strbuf_add_tail(&sb, "abcdefghijklmnopqrstuvwxyz", 10);
    assert_string_equal(sb.buf, "...qrstuvwxyz");
    bt_strbuf_release(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_format), cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_strvec_split),   cmocka_unit_test(test_strvec_env_get),
        cmocka_unit_test(test_add_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
