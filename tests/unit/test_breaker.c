/*
 * test_breaker.c - the circuit breaker state machine: opens after exactly threshold
 * consecutive failures (a success in between resets the count), rejects while open,
 * becomes half-open only once the recovery timeout has passed, lets exactly one probe
 * through, closes on the probe's success and reopens (with a fresh timeout) on its
 * failure; a cancelled probe frees the slot for the next caller; late results of calls
 * from before it opened change nothing; restoring from history opens it since the last
 * failure. Every transition is reported with its reason.
 */
#include "testutil.h"

#include "core/breaker.h"

#include <string.h>

static void test_opens_after_threshold(void **state)
{
    (void)state;
    bt_breaker b;
    bt_breaker_change ch;
    bt_breaker_init(&b, 3, 1000);
    assert_int_equal(bt_breaker_allow(&b, 0, &ch), BT_BREAKER_ALLOW);
    assert_false(ch.changed);
    bt_breaker_record(&b, 0, 0, 0, &ch);
    bt_breaker_record(&b, 1, 0, 0, &ch);
    bt_breaker_record(&b, 2, 1, 0, &ch); /* a success resets the count */
    assert_int_equal(b.consecutive, 0);
    bt_breaker_record(&b, 3, 0, 0, &ch);
    bt_breaker_record(&b, 4, 0, 0, &ch);
    assert_false(ch.changed);
    assert_int_equal(b.state, BT_BREAKER_CLOSED);
    bt_breaker_record(&b, 5, 0, 0, &ch);
    assert_true(ch.changed);
    assert_int_equal(ch.from, BT_BREAKER_CLOSED);
    assert_int_equal(ch.to, BT_BREAKER_OPEN);
    assert_string_equal(ch.reason, "3 consecutive failures");
    assert_int_equal(b.state, BT_BREAKER_OPEN);
    assert_int_equal(bt_breaker_retry_at(&b), 1005);
    /* open: rejected until the timeout has passed */
    assert_int_equal(bt_breaker_allow(&b, 6, &ch), BT_BREAKER_REJECT);
    assert_int_equal(bt_breaker_allow(&b, 1004, &ch), BT_BREAKER_REJECT);
    assert_false(ch.changed);
    assert_int_equal(bt_breaker_state_at(&b, 1004), BT_BREAKER_OPEN);
    assert_int_equal(bt_breaker_state_at(&b, 1005), BT_BREAKER_HALF_OPEN);
    assert_int_equal(b.state, BT_BREAKER_OPEN); /* reading does not move it */
}

static void open_breaker(bt_breaker *b, int64_t at)
{
    bt_breaker_init(b, 2, 1000);
    bt_breaker_record(b, at, 0, 0, NULL);
    bt_breaker_record(b, at, 0, 0, NULL);
    assert_int_equal(b->state, BT_BREAKER_OPEN);
}

static void test_one_probe_then_close(void **state)
{
    (void)state;
    bt_breaker b;
    bt_breaker_change ch;
    open_breaker(&b, 0);
    assert_int_equal(bt_breaker_allow(&b, 1000, &ch), BT_BREAKER_PROBE);
    assert_true(ch.changed);
    assert_int_equal(ch.from, BT_BREAKER_OPEN);
    assert_int_equal(ch.to, BT_BREAKER_HALF_OPEN);
    assert_string_equal(ch.reason, "recovery timeout elapsed");
    /* every other caller is rejected while the probe is out */
    for (int i = 0; i < 5; i++)
        assert_int_equal(bt_breaker_allow(&b, 1001 + i, &ch), BT_BREAKER_REJECT);
    bt_breaker_record(&b, 1500, 1, 1, &ch);
    assert_true(ch.changed);
    assert_int_equal(ch.from, BT_BREAKER_HALF_OPEN);
    assert_int_equal(ch.to, BT_BREAKER_CLOSED);
    assert_string_equal(ch.reason, "probe succeeded");
    assert_int_equal(b.consecutive, 0);
    assert_int_equal(bt_breaker_allow(&b, 1501, &ch), BT_BREAKER_ALLOW);
    assert_int_equal(bt_breaker_retry_at(&b), 0);
    /* closed again: it takes the full threshold to reopen */
    bt_breaker_record(&b, 1600, 0, 0, &ch);
    assert_int_equal(b.state, BT_BREAKER_CLOSED);
}

static void test_probe_failure_reopens(void **state)
{
    (void)state;
    bt_breaker b;
    bt_breaker_change ch;
    open_breaker(&b, 0);
    assert_int_equal(bt_breaker_allow(&b, 2000, &ch), BT_BREAKER_PROBE);
    bt_breaker_record(&b, 2100, 0, 1, &ch);
    assert_true(ch.changed);
    assert_int_equal(ch.from, BT_BREAKER_HALF_OPEN);
    assert_int_equal(ch.to, BT_BREAKER_OPEN);
    assert_string_equal(ch.reason, "probe failed");
    /* a fresh timeout from the probe's failure */
    assert_int_equal(bt_breaker_retry_at(&b), 3100);
    assert_int_equal(bt_breaker_allow(&b, 3099, &ch), BT_BREAKER_REJECT);
    assert_int_equal(bt_breaker_allow(&b, 3100, &ch), BT_BREAKER_PROBE);
}

static void test_cancelled_probe(void **state)
{
    (void)state;
    bt_breaker b;
    bt_breaker_change ch;
    open_breaker(&b, 0);
    assert_int_equal(bt_breaker_allow(&b, 1000, &ch), BT_BREAKER_PROBE);
    assert_int_equal(bt_breaker_allow(&b, 1000, &ch), BT_BREAKER_REJECT);
    bt_breaker_release(&b, 1); /* cancelled: not a failure */
    assert_int_equal(b.state, BT_BREAKER_HALF_OPEN);
    assert_int_equal(b.consecutive, 2);
    assert_int_equal(bt_breaker_allow(&b, 1001, &ch), BT_BREAKER_PROBE);
    assert_false(ch.changed); /* already half-open */
    assert_int_equal(bt_breaker_allow(&b, 1001, &ch), BT_BREAKER_REJECT);
    /* releasing a call that was not the probe frees nothing */
    bt_breaker_release(&b, 0);
    assert_int_equal(bt_breaker_allow(&b, 1002, &ch), BT_BREAKER_REJECT);
    bt_breaker_record(&b, 1003, 1, 1, &ch);
    assert_int_equal(b.state, BT_BREAKER_CLOSED);
}

static void test_late_results_ignored(void **state)
{
    (void)state;
    bt_breaker b;
    bt_breaker_change ch;
    open_breaker(&b, 0);
    /* calls let through before it opened end now: neither closes nor re-arms it */
    bt_breaker_record(&b, 500, 1, 0, &ch);
    assert_false(ch.changed);
    bt_breaker_record(&b, 600, 0, 0, &ch);
    assert_false(ch.changed);
    assert_int_equal(b.state, BT_BREAKER_OPEN);
    assert_int_equal(bt_breaker_retry_at(&b), 1000);
    /* ... also while half-open: only the probe decides */
    assert_int_equal(bt_breaker_allow(&b, 1000, &ch), BT_BREAKER_PROBE);
    bt_breaker_record(&b, 1001, 1, 0, &ch);
    assert_int_equal(b.state, BT_BREAKER_HALF_OPEN);
    assert_int_equal(bt_breaker_allow(&b, 1002, &ch), BT_BREAKER_REJECT);
}

static void test_restore(void **state)
{
    (void)state;
    bt_breaker b;
    bt_breaker_init(&b, 3, 60000);
    bt_breaker_restore(&b, 3, 100000);
    assert_int_equal(b.state, BT_BREAKER_OPEN);
    assert_int_equal(bt_breaker_retry_at(&b), 160000);
    assert_int_equal(bt_breaker_allow(&b, 150000, NULL), BT_BREAKER_REJECT);
    assert_int_equal(bt_breaker_allow(&b, 160000, NULL), BT_BREAKER_PROBE);

    bt_breaker_init(&b, 3, 60000);
    bt_breaker_restore(&b, 2, 100000);
    assert_int_equal(b.state, BT_BREAKER_CLOSED);
    /* one more failure completes the run of three */
    bt_breaker_record(&b, 100001, 0, 0, NULL);
    assert_int_equal(b.state, BT_BREAKER_OPEN);
}

static void test_names_and_bounds(void **state)
{
    (void)state;
    assert_string_equal(bt_breaker_state_name(BT_BREAKER_CLOSED), "closed");
    assert_string_equal(bt_breaker_state_name(BT_BREAKER_OPEN), "open");
    assert_string_equal(bt_breaker_state_name(BT_BREAKER_HALF_OPEN), "half_open");
    bt_breaker b;
    bt_breaker_init(&b, 0, -5); /* threshold 1, no recovery wait */
    bt_breaker_record(&b, 10, 0, 0, NULL);
    assert_int_equal(b.state, BT_BREAKER_OPEN);
    assert_int_equal(bt_breaker_allow(&b, 10, NULL), BT_BREAKER_PROBE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_threshold), cmocka_unit_test(test_one_probe_then_close),
        cmocka_unit_test(test_probe_failure_reopens), cmocka_unit_test(test_cancelled_probe),
        cmocka_unit_test(test_late_results_ignored),  cmocka_unit_test(test_restore),
        cmocka_unit_test(test_names_and_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
