/*
 * test_ratelimit_http.c - the API's per-client token buckets (http/ratelimit.h) with an
 * injected clock: a full burst then refusal with the exact wait, exact refill, a burst
 * smaller than the rate, independent keys, forgetting buckets that have refilled, the
 * max_keys cap, a clock going backwards; and the identity the server keys a credential
 * by (http/auth.h bt_http_auth_identity), which must never be the credential.
 */
#include "testutil.h"

#include "http/auth.h"
#include "http/ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int take(bt_http_ratelimit *rl, const char *key, int64_t now, bt_http_ratelimit_result *r)
{
    memset(r, 0xab, sizeof *r); /* every field must be written */
    return bt_http_ratelimit_take(rl, key, now, r);
}

/* 5 per 2 s (burst = requests): 5 at once, the 6th waits exactly 400 ms. */
static void test_burst_then_refill(void **state)
{
    (void)state;
    bt_http_ratelimit *rl = bt_http_ratelimit_new(5, 2000, 0, 0);
    assert_non_null(rl);
    bt_http_ratelimit_result r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(take(rl, "token:ci", 1000, &r), 1);
        assert_int_equal(r.allowed, 1);
        assert_int_equal(r.limit, 5);
        assert_int_equal(r.remaining, 4 - i);
        assert_int_equal(r.retry_after_ms, 0);
        assert_int_equal(r.reset_ms, 400 * (i + 1)); /* until full again */
    }
    assert_int_equal(take(rl, "token:ci", 1000, &r), 0);
    assert_int_equal(r.allowed, 0);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_after_ms, 400);
    assert_int_equal(r.reset_ms, 2000);
    /* Refused requests take nothing: 399 ms later it is still 1 ms short. */
    assert_int_equal(take(rl, "token:ci", 1399, &r), 0);
    assert_int_equal(r.retry_after_ms, 1);
    assert_int_equal(take(rl, "token:ci", 1400, &r), 1);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(take(rl, "token:ci", 1400, &r), 0);
    /* After a quiet period the whole burst is back, never more. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(take(rl, "token:ci", 100000, &r), 1);
    assert_int_equal(take(rl, "token:ci", 100000, &r), 0);
    bt_http_ratelimit_free(rl);
}

/* burst smaller than the rate: 60/min with a bucket of 10 -> 10 at once, then 1 a second. */
static void test_burst_smaller_than_rate(void **state)
{
    (void)state;
    bt_http_ratelimit *rl = bt_http_ratelimit_new(60, 60000, 10, 0);
    bt_http_ratelimit_result r;
    int ok = 0;
    for (int i = 0; i < 20; i++)
        ok += take(rl, "k", 0, &r);
    assert_int_equal(ok, 10);
    assert_int_equal(r.limit, 10);
    assert_int_equal(r.retry_after_ms, 1000);
    /* Over the next 10 s, one request per second gets through: 10 of 100 tries. */
    ok = 0;
    for (int64_t t = 100; t <= 10000; t += 100)
        ok += take(rl, "k", t, &r);
    assert_int_equal(ok, 10);
    bt_http_ratelimit_free(rl);
}

static void test_keys_are_independent(void **state)
{
    (void)state;
    bt_http_ratelimit *rl = bt_http_ratelimit_new(2, 1000, 0, 0);
    bt_http_ratelimit_result r;
    assert_int_equal(take(rl, "token:a", 0, &r), 1);
    assert_int_equal(take(rl, "token:a", 0, &r), 1);
    assert_int_equal(take(rl, "token:a", 0, &r), 0);
    assert_int_equal(take(rl, "token:b", 0, &r), 1); /* b has its own bucket */
    assert_int_equal(r.remaining, 1);
    assert_int_equal(take(rl, "ip:127.0.0.1", 0, &r), 1);
    assert_int_equal(bt_http_ratelimit_keys(rl), 3);
    bt_http_ratelimit_free(rl);
}

/* A bucket that has refilled completely is forgotten (it equals a new one); one that
 * has not is kept, so a client cannot escape its limit by waiting less than that. */
static void test_eviction_of_refilled(void **state)
{
    (void)state;
    bt_http_ratelimit *rl = bt_http_ratelimit_new(5, 2000, 0, 0);
    bt_http_ratelimit_result r;
    take(rl, "a", 0, &r); /* a: 4 left, full again at 400 */
    take(rl, "b", 399, &r);
    assert_int_equal(bt_http_ratelimit_keys(rl), 2);
    take(rl, "b", 400, &r); /* a is full now: forgotten */
    assert_int_equal(bt_http_ratelimit_keys(rl), 1);
    /* An emptied bucket is kept until it has refilled completely (2000 ms). */
    for (int i = 0; i < 5; i++)
        take(rl, "c", 10000, &r);
    assert_int_equal(take(rl, "d", 11999, &r), 1);
    assert_int_equal(bt_http_ratelimit_keys(rl), 2); /* b gone, c kept (not yet full), d */
    assert_int_equal(take(rl, "d", 12000, &r), 1);   /* c full at 12000: forgotten */
    assert_int_equal(bt_http_ratelimit_keys(rl), 1);

    /* Many clients over time: memory follows the clients of the last refill period, not
     * every client ever seen. */
    char key[32];
    size_t most = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "ip:10.0.%d.%d", i / 256, i % 256);
        assert_int_equal(take(rl, key, 20000 + i, &r), 1); /* each new: allowed */
        if (bt_http_ratelimit_keys(rl) > most)
            most = bt_http_ratelimit_keys(rl);
    }
    assert_true(most <= 402); /* a bucket with one taken is full 400 ms later */
    bt_http_ratelimit_free(rl);
}

/* max_keys: beyond it the least recently used bucket goes, even if not full. */
static void test_max_keys(void **state)
{
    (void)state;
    bt_http_ratelimit *rl = bt_http_ratelimit_new(10, 60000, 0, 3);
    bt_http_ratelimit_result r;
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        take(rl, key, 0, &r);
        assert_true(bt_http_ratelimit_keys(rl) <= 3);
    }
    assert_int_equal(bt_http_ratelimit_keys(rl), 3);
    take(rl, "k9", 0, &r); /* recent: remembered (second take) */
    assert_int_equal(r.remaining, 8);
    take(rl, "k0", 0, &r); /* the oldest: was dropped, starts full */
    assert_int_equal(r.remaining, 9);
    bt_http_ratelimit_free(rl);
}

static void test_clock_and_settings(void **state)
{
    (void)state;
    assert_null(bt_http_ratelimit_new(0, 60000, 0, 0)); /* requests 0: no limit */
    assert_null(bt_http_ratelimit_new(-1, 60000, 0, 0));
    assert_null(bt_http_ratelimit_new(5, 0, 0, 0));
    bt_http_ratelimit_free(NULL);
    bt_http_ratelimit *rl = bt_http_ratelimit_new(1, 1000, 0, 0);
    bt_http_ratelimit_result r;
    assert_int_equal(take(rl, "k", 5000, &r), 1);
    /* A clock going backwards gives nothing back. */
    assert_int_equal(take(rl, "k", 1000, &r), 0);
    assert_int_equal(take(rl, "k", 5999, &r), 0);
    assert_int_equal(take(rl, "k", 6000, &r), 1);
    bt_http_ratelimit_free(rl);
    /* Absurd settings do not overflow: a huge burst over a long period. */
    rl = bt_http_ratelimit_new(100000000, 86400000LL * 365, 100000000, 0);
    assert_int_equal(take(rl, "k", 0, &r), 1);
    assert_true(r.remaining > 0);
    bt_http_ratelimit_free(rl);
}

#define SECRET "0123456789abcdef-secret"

static int64_t fixed_now(void *ud)
{
    return *(int64_t *)ud;
}

/* The key the server limits a credential by: its name, its JWT subject, else a hash;
 * never the token's text. */
static void test_identity(void **state)
{
    (void)state;
    bt_http_auth *a = bt_http_auth_new();
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_auth_add_token(a, "ci", "ci-token-0123456789", 1, &err), 0);
    assert_int_equal(bt_http_auth_add_token(a, NULL, "anon-token-abcdefgh", 1, &err), 0);
    assert_int_equal(bt_http_auth_set_jwt_secret(a, SECRET, &err), 0);
    int64_t now = 1700000000;
    bt_http_auth_set_clock(a, fixed_now, &now);
    char id[160], id2[160];

    assert_int_equal(bt_http_auth_identity(a, "Bearer ci-token-0123456789", id, sizeof id), 1);
    assert_string_equal(id, "token:ci");

    assert_int_equal(bt_http_auth_identity(a, "Bearer anon-token-abcdefgh", id, sizeof id), 1);
    assert_true(strncmp(id, "key:", 4) == 0);
    assert_int_equal(strlen(id), 4 + 32);
    assert_null(strstr(id, "anon"));
    assert_int_equal(bt_http_auth_identity(a, "bearer  anon-token-abcdefgh", id2, sizeof id2), 1);
    assert_string_equal(id, id2); /* stable */
    assert_int_equal(bt_http_auth_identity(a, "Bearer anon-token-abcdefgX", id2, sizeof id2), 1);
    assert_string_not_equal(id, id2);

    json_t *claims =
        json_pack("{ss sI ss}", "sub", "alice", "exp", (json_int_t)(now + 600), "scope", "read");
    char *jwt = NULL;
    assert_int_equal(bt_http_jwt_sign(SECRET, claims, &jwt, &err), 0);
    char authz[1024];
    snprintf(authz, sizeof authz, "Bearer %s", jwt);
    assert_int_equal(bt_http_auth_identity(a, authz, id, sizeof id), 1);
    assert_string_equal(id, "jwt:alice");
    free(jwt);
    json_decref(claims);
    /* A JWT without a subject is keyed by its hash. */
    claims = json_pack("{sI ss}", "exp", (json_int_t)(now + 600), "scope", "read");
    assert_int_equal(bt_http_jwt_sign(SECRET, claims, &jwt, &err), 0);
    snprintf(authz, sizeof authz, "Bearer %s", jwt);
    assert_int_equal(bt_http_auth_identity(a, authz, id, sizeof id), 1);
    assert_true(strncmp(id, "key:", 4) == 0);
    free(jwt);
    json_decref(claims);

    /* No bearer credential: key by address instead. */
    assert_int_equal(bt_http_auth_identity(a, NULL, id, sizeof id), 0);
    assert_int_equal(bt_http_auth_identity(a, "Basic dXNlcjpwdw==", id, sizeof id), 0);
    assert_int_equal(bt_http_auth_identity(a, "Bearer ", id, sizeof id), 0);
    bt_http_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_burst_smaller_than_rate),
        cmocka_unit_test(test_keys_are_independent),
        cmocka_unit_test(test_eviction_of_refilled),
        cmocka_unit_test(test_max_keys),
        cmocka_unit_test(test_clock_and_settings),
        cmocka_unit_test(test_identity),
    };
    return cmocka_run_group_tests_name("ratelimit_http", tests, NULL, NULL);
}
