/*
 * test_ratelimit.c - the sliding-window limiter: exact waits at the window's edges,
 * weighted takes, oversized takes alone in an empty window, estimate adjustment,
 * Retry-After blocks, and the guarantee itself: greedy clients (randomised, fixed seed)
 * never get more than the capacity into any window of per_ms - where a refill bucket
 * of the same size, driven the same way, lets twice as many through.
 */
#include "testutil.h"

#include "base/ratelimit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void test_requests_per_window(void **state)
{
    (void)state;
    bt_ratelimit *rl = bt_ratelimit_new(10, 1000);
    assert_int_equal(bt_ratelimit_capacity(rl), 10);
    assert_int_equal(bt_ratelimit_per_ms(rl), 1000);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(bt_ratelimit_wait(rl, 0, 1), 0);
        assert_true(bt_ratelimit_take(rl, 0, 1) != 0);
    }
    assert_int_equal(bt_ratelimit_used(rl, 0), 10);
    /* the 11th waits for the first take to leave the window */
    assert_int_equal(bt_ratelimit_wait(rl, 0, 1), 1000);
    assert_int_equal(bt_ratelimit_wait(rl, 400, 1), 600);
    assert_int_equal(bt_ratelimit_wait(rl, 999, 1), 1);
    assert_int_equal(bt_ratelimit_wait(rl, 1000, 1), 0);
    assert_int_equal(bt_ratelimit_used(rl, 1000), 0);
    bt_ratelimit_free(rl);
    bt_ratelimit_free(NULL);
}

static void test_sliding_not_aligned(void **state)
{
    (void)state;
    bt_ratelimit *rl = bt_ratelimit_new(10, 1000);
    for (int i = 0; i < 5; i++)
        bt_ratelimit_take(rl, 0, 1);
    for (int i = 0; i < 5; i++)
        bt_ratelimit_take(rl, 500, 1);
    /* at 1000 the first five have left; five more fit, a sixth waits for 1500 */
    assert_int_equal(bt_ratelimit_wait(rl, 1000, 5), 0);
    assert_int_equal(bt_ratelimit_wait(rl, 1000, 6), 500);
    /* an aligned counter would reset at 1000 and allow 10 more: 15 in [500, 1500) */
    for (int i = 0; i < 5; i++)
        bt_ratelimit_take(rl, 1000, 1);
    assert_int_equal(bt_ratelimit_wait(rl, 1000, 1), 500);
    assert_int_equal(bt_ratelimit_wait(rl, 1499, 1), 1);
    assert_int_equal(bt_ratelimit_used(rl, 1499), 10);
    bt_ratelimit_free(rl);
}

static void test_weighted_and_oversized(void **state)
{
    (void)state;
    bt_ratelimit *rl = bt_ratelimit_new(100, 1000);
    bt_ratelimit_take(rl, 0, 60);
    assert_int_equal(bt_ratelimit_wait(rl, 10, 40), 0);
    assert_int_equal(bt_ratelimit_wait(rl, 10, 41), 990);
    bt_ratelimit_take(rl, 100, 30);
    /* 60 must leave before 50 fits (30 + 50 <= 100) */
    assert_int_equal(bt_ratelimit_wait(rl, 200, 50), 800);
    /* 80 needs both gone: 30 + 80 > 100 */
    assert_int_equal(bt_ratelimit_wait(rl, 200, 80), 900);
    /* more than the capacity: allowed alone, once the window is empty */
    assert_int_equal(bt_ratelimit_wait(rl, 200, 250), 900);
    assert_int_equal(bt_ratelimit_wait(rl, 1100, 250), 0);
    bt_ratelimit_take(rl, 1100, 250);
    assert_int_equal(bt_ratelimit_wait(rl, 1500, 1), 600);
    assert_int_equal(bt_ratelimit_wait(rl, 2100, 100), 0);
    /* zero and negative amounts fit whenever nothing is over capacity */
    assert_int_equal(bt_ratelimit_wait(rl, 2100, 0), 0);
    assert_int_equal(bt_ratelimit_wait(rl, 2100, -5), 0);
    bt_ratelimit_free(rl);
}

static void test_adjust(void **state)
{
    (void)state;
    bt_ratelimit *rl = bt_ratelimit_new(100, 1000);
    uint64_t a = bt_ratelimit_take(rl, 0, 10);
    uint64_t b = bt_ratelimit_take(rl, 0, 50);
    assert_true(b > a);
    assert_int_equal(bt_ratelimit_wait(rl, 0, 40), 0);
    bt_ratelimit_adjust(rl, b, 85); /* the call used more than estimated */
    assert_int_equal(bt_ratelimit_used(rl, 0), 95);
    assert_int_equal(bt_ratelimit_wait(rl, 0, 40), 1000);
    bt_ratelimit_adjust(rl, a, 0);
    bt_ratelimit_adjust(rl, b, 20); /* ... or less */
    assert_int_equal(bt_ratelimit_wait(rl, 0, 80), 0);
    bt_ratelimit_adjust(rl, 0, 1000);    /* no handle: ignored */
    bt_ratelimit_adjust(rl, 9999, 1000); /* unknown: ignored */
    assert_int_equal(bt_ratelimit_used(rl, 0), 20);
    /* a take that left the window cannot be adjusted back into it */
    assert_int_equal(bt_ratelimit_used(rl, 1000), 0);
    bt_ratelimit_adjust(rl, b, 1000);
    assert_int_equal(bt_ratelimit_wait(rl, 1000, 100), 0);
    bt_ratelimit_free(rl);
}

static void test_block_until(void **state)
{
    (void)state;
    bt_ratelimit *rl = bt_ratelimit_new(0, 60000); /* unlimited: only blocks apply */
    assert_int_equal(bt_ratelimit_capacity(rl), 0);
    for (int i = 0; i < 1000; i++)
        bt_ratelimit_take(rl, 0, 1);
    assert_int_equal(bt_ratelimit_wait(rl, 0, 1000000), 0);
    assert_int_equal(bt_ratelimit_blocked_until(rl), 0);
    bt_ratelimit_block_until(rl, 5000);
    bt_ratelimit_block_until(rl, 3000); /* an earlier end does not shorten it */
    assert_int_equal(bt_ratelimit_blocked_until(rl), 5000);
    assert_int_equal(bt_ratelimit_wait(rl, 1000, 1), 4000);
    assert_int_equal(bt_ratelimit_wait(rl, 5000, 1), 0);
    bt_ratelimit_free(rl);

    /* a block longer than the window wait wins, a shorter one does not */
    rl = bt_ratelimit_new(1, 1000);
    bt_ratelimit_take(rl, 0, 1);
    bt_ratelimit_block_until(rl, 300);
    assert_int_equal(bt_ratelimit_wait(rl, 0, 1), 1000);
    bt_ratelimit_block_until(rl, 2500);
    assert_int_equal(bt_ratelimit_wait(rl, 0, 1), 2500);
    bt_ratelimit_free(rl);
}

static void test_time_backwards(void **state)
{
    (void)state;
    bt_ratelimit *rl = bt_ratelimit_new(2, 1000);
    bt_ratelimit_take(rl, 5000, 1);
    bt_ratelimit_take(rl, 4000, 1); /* recorded at 5000 */
    assert_int_equal(bt_ratelimit_wait(rl, 5000, 1), 1000);
    assert_int_equal(bt_ratelimit_used(rl, 5999), 2);
    assert_int_equal(bt_ratelimit_used(rl, 6000), 0);
    bt_ratelimit_free(rl);
}

/* ---- the guarantee, against greedy clients ---- */

typedef struct rec {
    int64_t at, amount;
} rec;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The most units any window [x, x + per) holds (windows starting at a take are the
 * worst case). */
static int64_t max_in_window(const rec *r, size_t n, int64_t per)
{
    int64_t best = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t s = 0;
        for (size_t j = i; j < n && r[j].at < r[i].at + per; j++)
            s += r[j].amount;
        if (s > best)
            best = s;
    }
    return best;
}

static void test_never_over_capacity(void **state)
{
    (void)state;
    enum { N = 3000 };
    rec *r = calloc(N, sizeof *r);
    for (int round = 0; round < 20; round++) {
        int64_t cap = 1 + (int64_t)(next_rand() % 40), per = 100 + (int64_t)(next_rand() % 2000);
        bt_ratelimit *rl = bt_ratelimit_new(cap, per);
        size_t n = 0;
        int64_t now = 0;
        while (n < N) {
            /* a burst of clients at this instant, each taking when allowed */
            int burst = 1 + (int)(next_rand() % 8);
            for (int k = 0; k < burst && n < N; k++) {
                int64_t amt = 1 + (int64_t)(next_rand() % (uint64_t)cap);
                if (bt_ratelimit_wait(rl, now, amt) == 0) {
                    bt_ratelimit_take(rl, now, amt);
                    r[n++] = (rec){now, amt};
                }
            }
            now += (int64_t)(next_rand() % (uint64_t)(per / 3 + 1));
        }
        assert_true(max_in_window(r, n, per) <= cap);
        bt_ratelimit_free(rl);
    }
    free(r);
}

/* A burst of 50 single requests against 10 per window, each started the moment the
 * limiter allows: exactly 10 per window, all 50 done after 4 windows. */
static void test_burst_of_fifty(void **state)
{
    (void)state;
    bt_ratelimit *rl = bt_ratelimit_new(10, 1000);
    rec r[50];
    size_t n = 0;
    int64_t now = 0;
    while (n < 50) {
        int64_t w = bt_ratelimit_wait(rl, now, 1);
        if (w > 0) {
            now += w;
            continue;
        }
        bt_ratelimit_take(rl, now, 1);
        r[n++] = (rec){now, 1};
    }
    assert_int_equal(max_in_window(r, n, 1000), 10);
    assert_int_equal(r[49].at, 4000);
    assert_int_equal(r[10].at, 1000);

    /* the same clients against a classic refill bucket (10 tokens, 10 per second, full
     * at the start): 20 requests land in the first second */
    double tokens = 10;
    int64_t last = 0;
    size_t m = 0;
    for (int64_t t = 0; t < 1000 && m < 50; t++) {
        tokens += (double)(t - last) * 10.0 / 1000.0;
        if (tokens > 10)
            tokens = 10;
        last = t;
        while (tokens >= 1 && m < 50) {
            tokens -= 1;
            r[m++] = (rec){t, 1};
        }
    }
    assert_true(max_in_window(r, m, 1000) >= 19);
    bt_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_per_window),
        cmocka_unit_test(test_sliding_not_aligned),
        cmocka_unit_test(test_weighted_and_oversized),
        cmocka_unit_test(test_adjust),
        cmocka_unit_test(test_block_until),
        cmocka_unit_test(test_time_backwards),
        cmocka_unit_test(test_never_over_capacity),
        cmocka_unit_test(test_burst_of_fifty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
