/*
 * test_router.c - route patterns, matching precedence, parameters, 404 vs 405 + Allow.
 */
#include "testutil.h"

#include "http/router.h"

#include <string.h>

static int A, B, C, D, E, F;

static bt_http_router *make(void)
{
    bt_http_router *r = bt_http_router_new();
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_router_add(r, "GET", "/api/tasks", &A, &err), 0);
    assert_int_equal(bt_http_router_add(r, "POST", "/api/tasks", &B, &err), 0);
    assert_int_equal(bt_http_router_add(r, "GET", "/api/tasks/{id}", &C, &err), 0);
    assert_int_equal(bt_http_router_add(r, "PATCH", "/api/tasks/{id}", &D, &err), 0);
    assert_int_equal(bt_http_router_add(r, "GET", "/api/tasks/stats", &E, &err), 0);
    assert_int_equal(bt_http_router_add(r, "PATCH", "/api/tasks/{id}/approve", &F, &err), 0);
    assert_int_equal(bt_http_router_add(r, "GET", "/api/workflow/status/{work_item_id}", &A, &err),
                     0);
    assert_int_equal(bt_http_router_add(r, "GET", "/static/{path*}", &B, &err), 0);
    assert_int_equal(bt_http_router_add(r, "GET", "/", &C, &err), 0);
    return r;
}

static void test_literal_and_params(void **state)
{
    (void)state;
    bt_http_router *r = make();
    bt_http_match m;
    assert_int_equal(bt_http_router_match(r, "GET", "/api/tasks", &m), BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &A);
    assert_int_equal(m.nparams, 0);
    bt_http_match_release(&m);

    assert_int_equal(bt_http_router_match(r, "GET", "/api/tasks/01JABC", &m), BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &C);
    assert_string_equal(m.pattern, "/api/tasks/{id}");
    assert_string_equal(bt_http_match_param(&m, "id"), "01JABC");
    assert_null(bt_http_match_param(&m, "nope"));
    bt_http_match_release(&m);

    assert_int_equal(bt_http_router_match(r, "PATCH", "/api/tasks/7/approve", &m),
                     BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &F);
    assert_string_equal(bt_http_match_param(&m, "id"), "7");
    bt_http_match_release(&m);

    assert_int_equal(bt_http_router_match(r, "GET", "/api/workflow/status/WI-9", &m),
                     BT_HTTP_MATCH_OK);
    assert_string_equal(bt_http_match_param(&m, "work_item_id"), "WI-9");
    bt_http_match_release(&m);

    /* Trailing slash ignored. */
    assert_int_equal(bt_http_router_match(r, "GET", "/api/tasks/", &m), BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &A);
    bt_http_match_release(&m);

    assert_int_equal(bt_http_router_match(r, "GET", "/", &m), BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &C);
    bt_http_match_release(&m);
    bt_http_router_free(r);
}

static void test_precedence(void **state)
{
    (void)state;
    bt_http_router *r = make();
    bt_http_match m;
    /* A literal segment beats a parameter whatever the registration order. */
    assert_int_equal(bt_http_router_match(r, "GET", "/api/tasks/stats", &m), BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &E);
    assert_int_equal(m.nparams, 0);
    bt_http_match_release(&m);
    /* ...but for a method only the parameter route has, the parameter route serves. */
    assert_int_equal(bt_http_router_match(r, "PATCH", "/api/tasks/stats", &m), BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &D);
    assert_string_equal(bt_http_match_param(&m, "id"), "stats");
    bt_http_match_release(&m);
    bt_http_router_free(r);
}

static void test_tail(void **state)
{
    (void)state;
    bt_http_router *r = make();
    bt_http_match m;
    assert_int_equal(bt_http_router_match(r, "GET", "/static/js/app.js", &m), BT_HTTP_MATCH_OK);
    assert_string_equal(bt_http_match_param(&m, "path"), "js/app.js");
    bt_http_match_release(&m);
    assert_int_equal(bt_http_router_match(r, "GET", "/static", &m), BT_HTTP_MATCH_OK);
    assert_string_equal(bt_http_match_param(&m, "path"), "");
    bt_http_match_release(&m);
    bt_http_router_free(r);
}

static void test_404_405(void **state)
{
    (void)state;
    bt_http_router *r = make();
    bt_http_match m;
    assert_int_equal(bt_http_router_match(r, "GET", "/api/nothing", &m), BT_HTTP_MATCH_NOT_FOUND);
    assert_string_equal(m.allow, "");
    bt_http_match_release(&m);
    /* Empty segment cannot be a parameter. */
    assert_int_equal(bt_http_router_match(r, "GET", "/api/tasks//approve", &m),
                     BT_HTTP_MATCH_NOT_FOUND);
    bt_http_match_release(&m);
    assert_int_equal(bt_http_router_match(r, "GET", "/api/tasks/1/approve/x", &m),
                     BT_HTTP_MATCH_NOT_FOUND);
    bt_http_match_release(&m);

    assert_int_equal(bt_http_router_match(r, "DELETE", "/api/tasks", &m), BT_HTTP_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "GET, POST, HEAD");
    bt_http_match_release(&m);
    assert_int_equal(bt_http_router_match(r, "DELETE", "/api/tasks/stats", &m),
                     BT_HTTP_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "GET, PATCH, HEAD");
    bt_http_match_release(&m);
    assert_int_equal(bt_http_router_match(r, "GET", "/api/tasks/1/approve", &m),
                     BT_HTTP_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "PATCH");
    bt_http_match_release(&m);
    /* HEAD falls back to GET. */
    assert_int_equal(bt_http_router_match(r, "HEAD", "/api/tasks/1", &m), BT_HTTP_MATCH_OK);
    assert_ptr_equal(m.data, &C);
    bt_http_match_release(&m);
    bt_http_router_free(r);
}

static void test_bad_patterns(void **state)
{
    (void)state;
    bt_http_router *r = bt_http_router_new();
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_router_add(r, "GET", "nope", NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "must start with '/'"));
    assert_int_equal(bt_http_router_add(r, "GET", "/a/{}", NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "needs a name"));
    assert_int_equal(bt_http_router_add(r, "GET", "/a/{x*}/b", NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "last segment"));
    assert_int_equal(bt_http_router_add(r, "GET", "/a/x{y}", NULL, &err), BT_EINVAL);
    assert_int_equal(bt_http_router_add(r, "GET", "/a/{y", NULL, &err), BT_EINVAL);
    assert_int_equal(
        bt_http_router_add(r, "GET", "/a/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", NULL, &err),
        BT_EINVAL);
    assert_int_equal(bt_http_router_add(r, "GET", "/a", NULL, &err), 0);
    assert_int_equal(bt_http_router_add(r, "GET", "/a", NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    assert_int_equal(bt_http_router_count(r), 1);
    assert_string_equal(bt_http_router_method(r, 0), "GET");
    assert_string_equal(bt_http_router_pattern(r, 0), "/a");
    assert_null(bt_http_router_pattern(r, 1));
    bt_http_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_and_params),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_tail),
        cmocka_unit_test(test_404_405),
        cmocka_unit_test(test_bad_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
