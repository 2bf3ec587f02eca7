/*
 * test_str.c - "did you mean" suggestions, constant-time compare, errors.
 */
#include "testutil.h"

#include "base/error.h"
#include "base/str.h"

#include <string.h>

static void test_suggest(void **state)
{
    (void)state;
    const char *const keys[] = {"server", "store", "agents", "workflows_dir", "trackers", "queue"};
    size_t n = sizeof keys / sizeof keys[0];
    assert_string_equal(bt_str_suggest("agnets", keys, n), "agents");
    assert_string_equal(bt_str_suggest("sever", keys, n), "server");
    assert_string_equal(bt_str_suggest("workflow_dir", keys, n), "workflows_dir");
    assert_null(bt_str_suggest("banana", keys, n));
    assert_int_equal(bt_str_distance("kitten", "sitting"), 3);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(bt_str_ct_equal("secret", 6, "secret", 6));
    assert_false(bt_str_ct_equal("secret", 6, "secreT", 6));
    assert_false(bt_str_ct_equal("secret", 6, "secret2", 7));
}

static void test_errors(void **state)
{
    (void)state;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_errorf(&err, BT_ENOENT, "task %s not found", "X"), BT_ENOENT);
    bt_error_prefix(&err, "GET /api/tasks/X");
    assert_string_equal(err.msg, "GET /api/tasks/X: task X not found");
    assert_string_equal(bt_error_name(BT_ENOENT), "not_found");
    assert_string_equal(bt_error_name(BT_ESTATE), "invalid_state");
    assert_int_equal(bt_errorf(NULL, BT_EINVAL, "ignored"), BT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
