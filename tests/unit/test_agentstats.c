/*
 * test_agentstats.c - per-agent statistics: success rate over successes and failures
 * only (cancellations counted apart), nearest-rank latency percentiles checked against
 * hand-computed values, error classes counted, the window forgetting the oldest calls
 * by count and by age, the trailing run of failures a breaker restores from, and an
 * empty window's defaults (rate 1, no latency).
 */
#include "testutil.h"

#include "core/agentstats.h"

#include <string.h>

static void add(bt_agentstats *st, int64_t at, int64_t dur, bt_agentstats_outcome o,
                bt_agentstats_class c)
{
    bt_agentstats_call call = {.at = at, .duration_ms = dur, .outcome = o, .error_class = c};
    bt_agentstats_add(st, &call);
}

static void test_empty(void **state)
{
    (void)state;
    bt_agentstats *st = bt_agentstats_new(10, 0);
    bt_agentstats_summary s;
    bt_agentstats_get(st, 1000, &s);
    assert_int_equal(s.calls, 0);
    assert_true(s.success_rate == 1.0);
    assert_int_equal(s.p50_ms, 0);
    assert_int_equal(s.max_ms, 0);
    assert_int_equal(s.last_call_at, 0);
    assert_int_equal(s.window, 10);
    assert_int_equal(s.max_age_ms, 0);
    bt_agentstats_free(st);
    bt_agentstats_free(NULL);
}

static void test_rates_and_percentiles(void **state)
{
    (void)state;
    bt_agentstats *st = bt_agentstats_new(1000, 0);
    /* 100 calls with latencies 1..100 ms: 70 successes, 20 transient, 5 timeout,
     * 5 permanent; plus 3 cancellations that count nowhere but `cancelled` */
    for (int i = 1; i <= 100; i++) {
        bt_agentstats_outcome o = i <= 70 ? BT_AGENTSTATS_SUCCESS : BT_AGENTSTATS_FAILURE;
        bt_agentstats_class c = i <= 70   ? BT_AGENTSTATS_NONE
                                : i <= 90 ? BT_AGENTSTATS_TRANSIENT
                                : i <= 95 ? BT_AGENTSTATS_TIMEOUT
                                          : BT_AGENTSTATS_PERMANENT;
        add(st, i, 101 - i, o, c);
        if (i % 40 == 0)
            add(st, i, 100000, BT_AGENTSTATS_CANCELLED, BT_AGENTSTATS_NONE);
    }
    bt_agentstats_summary s;
    bt_agentstats_get(st, 200, &s);
    assert_int_equal(s.calls, 100);
    assert_int_equal(s.successes, 70);
    assert_int_equal(s.failures, 30);
    assert_int_equal(s.cancelled, 2);
    assert_true(s.success_rate > 0.6999 && s.success_rate < 0.7001);
    assert_int_equal(s.p50_ms, 50);
    assert_int_equal(s.p90_ms, 90);
    assert_int_equal(s.p99_ms, 99);
    assert_int_equal(s.max_ms, 100); /* the cancelled 100 s calls are not latency */
    assert_int_equal(s.errors[BT_AGENTSTATS_TRANSIENT], 20);
    assert_int_equal(s.errors[BT_AGENTSTATS_TIMEOUT], 5);
    assert_int_equal(s.errors[BT_AGENTSTATS_PERMANENT], 5);
    assert_int_equal(s.last_call_at, 100);
    assert_int_equal(s.trailing_failures, 30);
    assert_int_equal(s.last_failure_at, 100);
    bt_agentstats_free(st);
}

static void test_small_percentiles(void **state)
{
    (void)state;
    bt_agentstats *st = bt_agentstats_new(10, 0);
    add(st, 1, 300, BT_AGENTSTATS_SUCCESS, 0);
    add(st, 2, 100, BT_AGENTSTATS_SUCCESS, 0);
    add(st, 3, 200, BT_AGENTSTATS_FAILURE, BT_AGENTSTATS_TRANSIENT);
    bt_agentstats_summary s;
    bt_agentstats_get(st, 3, &s);
    /* nearest rank of 3 values: p50 -> 2nd, p90 and p99 -> 3rd */
    assert_int_equal(s.p50_ms, 200);
    assert_int_equal(s.p90_ms, 300);
    assert_int_equal(s.p99_ms, 300);
    assert_int_equal(s.max_ms, 300);
    assert_int_equal(s.trailing_failures, 1);
    bt_agentstats_free(st);
}

static void test_window_by_count(void **state)
{
    (void)state;
    bt_agentstats *st = bt_agentstats_new(5, 0);
    for (int i = 0; i < 5; i++)
        add(st, i, 10, BT_AGENTSTATS_FAILURE, BT_AGENTSTATS_TRANSIENT);
    for (int i = 5; i < 8; i++)
        add(st, i, 10, BT_AGENTSTATS_SUCCESS, 0);
    bt_agentstats_summary s;
    bt_agentstats_get(st, 8, &s);
    assert_int_equal(s.calls, 5); /* the three oldest failures are gone */
    assert_int_equal(s.failures, 2);
    assert_int_equal(s.successes, 3);
    assert_int_equal(s.trailing_failures, 0);
    bt_agentstats_clear(st);
    bt_agentstats_get(st, 8, &s);
    assert_int_equal(s.calls, 0);
    bt_agentstats_free(st);
}

static void test_window_by_age(void **state)
{
    (void)state;
    bt_agentstats *st = bt_agentstats_new(100, 1000);
    add(st, 0, 5000, BT_AGENTSTATS_FAILURE, BT_AGENTSTATS_PERMANENT);
    add(st, 500, 10, BT_AGENTSTATS_SUCCESS, 0);
    add(st, 900, 20, BT_AGENTSTATS_FAILURE, BT_AGENTSTATS_TIMEOUT);
    add(st, 950, 0, BT_AGENTSTATS_CANCELLED, 0);
    bt_agentstats_summary s;
    bt_agentstats_get(st, 1000, &s);
    assert_int_equal(s.calls, 3);
    bt_agentstats_get(st, 1200, &s); /* the call at 0 is too old now */
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.max_ms, 20);
    assert_int_equal(s.errors[BT_AGENTSTATS_PERMANENT], 0);
    assert_int_equal(s.trailing_failures, 1); /* the cancellation does not break the run */
    assert_int_equal(s.last_failure_at, 900);
    assert_int_equal(s.last_call_at, 950);
    bt_agentstats_get(st, 5000, &s);
    assert_int_equal(s.calls, 0);
    assert_true(s.success_rate == 1.0);
    bt_agentstats_free(st);
}

/* A CLI that ran and reported the task failed is a failed call for the success rate,
 * but the breaker took it as an answer: it ends a run of failures instead of extending
 * it, so five failed tasks never restore an open breaker. */
static void test_task_failures(void **state)
{
    (void)state;
    bt_agentstats *st = bt_agentstats_new(100, 0);
    add(st, 10, 5, BT_AGENTSTATS_FAILURE, BT_AGENTSTATS_TRANSIENT);
    for (int i = 0; i < 5; i++)
        add(st, 20 + i, 5, BT_AGENTSTATS_FAILURE, BT_AGENTSTATS_TASK);
    bt_agentstats_summary s;
    bt_agentstats_get(st, 100, &s);
    assert_int_equal(s.failures, 6);
    assert_true(s.success_rate == 0.0);
    assert_int_equal(s.errors[BT_AGENTSTATS_TASK], 5);
    assert_int_equal(s.trailing_failures, 0);
    add(st, 30, 5, BT_AGENTSTATS_FAILURE, BT_AGENTSTATS_TIMEOUT);
    bt_agentstats_get(st, 100, &s);
    assert_int_equal(s.trailing_failures, 1);
    assert_int_equal(s.last_failure_at, 30);
    assert_string_equal(bt_agentstats_class_name(BT_AGENTSTATS_TASK), "task");
    assert_int_equal(bt_agentstats_class_parse("task"), BT_AGENTSTATS_TASK);
    bt_agentstats_free(st);
}

static void test_class_names(void **state)
{
    (void)state;
    assert_null(bt_agentstats_class_name(BT_AGENTSTATS_NONE));
    assert_string_equal(bt_agentstats_class_name(BT_AGENTSTATS_TRANSIENT), "transient");
    assert_int_equal(bt_agentstats_class_parse("timeout"), BT_AGENTSTATS_TIMEOUT);
    assert_int_equal(bt_agentstats_class_parse("permanent"), BT_AGENTSTATS_PERMANENT);
    assert_int_equal(bt_agentstats_class_parse("bogus"), BT_AGENTSTATS_NONE);
    assert_int_equal(bt_agentstats_class_parse(NULL), BT_AGENTSTATS_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_rates_and_percentiles),
        cmocka_unit_test(test_small_percentiles),
        cmocka_unit_test(test_window_by_count),
        cmocka_unit_test(test_window_by_age),
        cmocka_unit_test(test_task_failures),
        cmocka_unit_test(test_class_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
