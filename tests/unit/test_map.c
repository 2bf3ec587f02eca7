/*
 * test_map.c - the string hash map: set/get/overwrite/delete under growth, and owned
 * values freed exactly once (ASan catches double frees and leaks).
 */
#include "testutil.h"

#include "base/map.h"
#include "base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_many_keys(void **state)
{
    (void)state;
    bt_map *m = bt_map_new(free);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        bt_map_set(m, key, bt_xstrdup(key));
    }
    assert_int_equal(bt_map_len(m), 5000);
    /* overwrite frees the old value */
    bt_map_set(m, "key-7", bt_xstrdup("seven"));
    assert_string_equal(bt_map_get(m, "key-7"), "seven");
    /* delete every other key; the rest must stay reachable (backward shift) */
    for (int i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_int_equal(bt_map_del(m, key), 1);
    }
    assert_int_equal(bt_map_del(m, "key-0"), 0);
    assert_int_equal(bt_map_len(m), 2500);
    for (int i = 1; i < 5000; i += 2) {
        snprintf(key, sizeof key, "key-%d", i);
        char *v = bt_map_get(m, key);
        assert_non_null(v);
        if (i != 7)
            assert_string_equal(v, key);
    }
    assert_null(bt_map_get(m, "key-2"));
    size_t count = 0;
    bt_map_iter it = {0};
    while (bt_map_next(m, &it))
        count++;
    assert_int_equal(count, 2500);
    bt_map_free(m);
}

static void test_sorted_keys(void **state)
{
    (void)state;
    bt_map *m = bt_map_new(NULL);
    bt_map_set(m, "b", NULL);
    bt_map_set(m, "c", NULL);
    bt_map_set(m, "a", NULL);
    size_t n;
    const char **keys = bt_map_keys_sorted(m, &n);
    assert_int_equal(n, 3);
    assert_string_equal(keys[0], "a");
    assert_string_equal(keys[2], "c");
    assert_true(bt_map_has(m, "b"));
    free(keys);
    bt_map_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_sorted_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
