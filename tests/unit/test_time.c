/*
 * test_time.c - durations ("30s", "5m", bare seconds) and ISO-8601 timestamps.
 */
#include "testutil.h"

#include "base/time.h"

#include <string.h>

static void test_durations(void **state)
{
    (void)state;
    int64_t ms;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_duration_parse("30s", &ms, &err), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(bt_duration_parse("5m", &ms, &err), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(bt_duration_parse("1h30m", &ms, &err), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(bt_duration_parse("250ms", &ms, &err), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(bt_duration_parse("60", &ms, &err), 0); /* GITHUB_POLL_INTERVAL=60 */
    assert_int_equal(ms, 60000);
    assert_int_equal(bt_duration_parse("2d", &ms, &err), 0);
    assert_int_equal(ms, 172800000);

    const char *bad[] = {"", "5x", "-5s", "s", "10 s", "1.5h", "5m30", "99999999999999999999d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bt_error_clear(&err);
        assert_int_equal(bt_duration_parse(bad[i], &ms, &err), BT_EINVAL);
        assert_true(strlen(err.msg) > 0);
    }
    bt_duration_parse("5x", &ms, &err);
    assert_non_null(strstr(err.msg, "'5x'"));

    char buf[32];
    assert_string_equal(bt_duration_format(90000, buf), "1m30s");
    assert_string_equal(bt_duration_format(1500, buf), "1500ms");
    assert_string_equal(bt_duration_format(0, buf), "0s");
}

static void test_iso(void **state)
{
    (void)state;
    char buf[BT_TIME_ISO_LEN];
    int64_t ms;
    assert_int_equal(bt_time_parse_iso("2025-11-13T12:00:00Z", &ms, NULL), 0);
    assert_string_equal(bt_time_format_iso(ms, buf), "2025-11-13T12:00:00.000Z");
    assert_string_equal(bt_time_format_iso_seconds(ms, buf), "2025-11-13T12:00:00");
    int64_t ms2;
    assert_int_equal(bt_time_parse_iso("2025-11-13T14:00:00.5+02:00", &ms2, NULL), 0);
    assert_int_equal(ms2, ms + 500);
    assert_int_equal(bt_time_parse_iso("2025-11-13T12:00:00", &ms2, NULL), 0);
    assert_int_equal(ms2, ms);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_time_parse_iso("13/11/2025", &ms2, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "13/11/2025"));
    assert_true(bt_time_mono_ms() > 0);
    assert_true(bt_time_wall_ms() > ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_iso),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
