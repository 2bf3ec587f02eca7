/*
 * test_log.c - log lines are valid JSON with the given fields, levels filter, and no
 * configured secret or common token shape ever reaches the output.
 */
#include "testutil.h"

#include "obs/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *capture(void (*fn)(bt_log *), bt_log_level level)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bt_log *log = bt_log_new(f, level);
    fn(log);
    bt_log_free(log);
    fclose(f);
    return buf;
}

static void write_fields(bt_log *log)
{
    bt_log_info(log, "task claimed", BT_LF_STR("task", "01ABC"), BT_LF_INT("attempt", 2),
                BT_LF_BOOL("retry", 1), BT_LF_DBL("cost", 0.05), BT_LF_STR("none", NULL));
    bt_log_debug(log, "hidden at info");
}

static void test_fields(void **state)
{
    (void)state;
    char *out = capture(write_fields, BT_LOG_INFO);
    assert_null(strstr(out, "hidden"));
    json_error_t je;
    json_t *v = json_loads(out, 0, &je);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(v, "msg")), "task claimed");
    assert_string_equal(json_string_value(json_object_get(v, "task")), "01ABC");
    assert_int_equal(json_integer_value(json_object_get(v, "attempt")), 2);
    assert_true(json_is_true(json_object_get(v, "retry")));
    assert_true(json_is_null(json_object_get(v, "none")));
    assert_non_null(json_object_get(v, "ts"));
    assert_non_null(strstr(out, "\"cost\":0.05,")); /* shortest form, not 0.0500000000000000028 */
    json_decref(v);
    free(out);
}

static void write_secrets(bt_log *log)
{
    bt_log_add_secret(log, "hunter2-db-password");
    bt_log_add_secret(log, "abc"); /* too short to mask */
    bt_log_warn(log, "connecting with password hunter2-db-password failed",
                BT_LF_STR("url", "postgres://u:hunter2-db-password@h/db"),
                BT_LF_STR("header", "Authorization: Bearer eyJhbGciOi.payload.sig"),
                BT_LF_STR("gh", "token ghp_0123456789abcdefABCDEF0123456789abcd used"),
                BT_LF_STR("oa", "key=sk-proj-AbCdEfGhIjKlMnOp"),
                BT_LF_STR("prose", "the sk-a flag and abc stay"));
}

static void test_redaction(void **state)
{
    (void)state;
    char *out = capture(write_secrets, BT_LOG_DEBUG);
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "eyJhbGciOi"));
    assert_null(strstr(out, "ghp_0123"));
    assert_null(strstr(out, "AbCdEfGh"));
    assert_non_null(strstr(out, "Bearer ***"));
    assert_non_null(strstr(out, "the sk-a flag and abc stay"));
    json_error_t je;
    json_t *v = json_loads(out, 0, &je); /* still valid JSON after masking */
    assert_non_null(v);
    json_decref(v);
    free(out);
}

static void test_levels(void **state)
{
    (void)state;
    bt_log_level l;
    assert_int_equal(bt_log_level_parse("INFO", &l), 0);
    assert_int_equal(l, BT_LOG_INFO);
    assert_int_equal(bt_log_level_parse("warning", &l), 0);
    assert_int_equal(l, BT_LOG_WARN);
    assert_int_equal(bt_log_level_parse("loud", &l), -1);
    bt_log_info(NULL, "no logger is fine");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
