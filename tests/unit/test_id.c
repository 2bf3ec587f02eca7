/*
 * test_id.c - ULIDs are valid, unique, and sort in creation order within a generator.
 */
#include "testutil.h"

#include "base/id.h"
#include "base/time.h"

#include <string.h>

static void test_monotonic(void **state)
{
    (void)state;
    bt_idgen gen = BT_IDGEN_INIT;
    char prev[BT_ID_LEN + 1], cur[BT_ID_LEN + 1];
    bt_id_new(&gen, prev);
    assert_true(bt_id_valid(prev));
    for (int i = 0; i < 20000; i++) {
        bt_id_new(&gen, cur);
        assert_true(bt_id_valid(cur));
        assert_true(strcmp(prev, cur) < 0); /* strictly increasing, even within one ms */
        memcpy(prev, cur, sizeof cur);
    }
}

static void test_time_prefix(void **state)
{
    (void)state;
    char a[BT_ID_LEN + 1], b[BT_ID_LEN + 1];
    bt_id_new(NULL, a);
    /* Ids from later milliseconds sort later even without a shared generator. */
    int64_t t = bt_time_wall_ms();
    while (bt_time_wall_ms() < t + 2)
        ;
    bt_id_new(NULL, b);
    assert_true(strcmp(a, b) < 0);
    assert_false(bt_id_valid("not-an-id"));
    assert_false(bt_id_valid("0123456789ABCDEFGHJKMNPQRU")); /* U is not Crockford */
    char hex[33];
    assert_int_equal(bt_random_hex(hex, 16), 0);
    assert_int_equal(strlen(hex), 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_time_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
