/*
 * test_server.c - the server's pure parts (status mapping, scopes) and its lifecycle on a
 * real loop: start on an ephemeral port, shut down, uv_loop_close() == 0; errors for a
 * bad host and a busy port. Request handling is covered end to end by
 * tests/integration/test_http_server.py.
 */
#include "testutil.h"

#include "http/server.h"

#include <string.h>

static void test_status_mapping(void **state)
{
    (void)state;
    assert_int_equal(bt_http_status_for_error(BT_EINVAL), 400);
    assert_int_equal(bt_http_status_for_error(BT_EPARSE), 400);
    assert_int_equal(bt_http_status_for_error(BT_EPERM), 403);
    assert_int_equal(bt_http_status_for_error(BT_ENOENT), 404);
    assert_int_equal(bt_http_status_for_error(BT_ECONFLICT), 409);
    assert_int_equal(bt_http_status_for_error(BT_ESTATE), 409);
    assert_int_equal(bt_http_status_for_error(BT_ETOOBIG), 413);
    assert_int_equal(bt_http_status_for_error(BT_EBUSY), 429);
    assert_int_equal(bt_http_status_for_error(BT_EUNAVAIL), 503);
    assert_int_equal(bt_http_status_for_error(BT_ETIMEOUT), 504);
    assert_int_equal(bt_http_status_for_error(BT_EINTERNAL), 500);
    assert_int_equal(bt_http_status_for_error(BT_EIO), 500);
}

static void test_scopes(void **state)
{
    (void)state;
    bt_http_scope s;
    assert_int_equal(bt_http_scope_parse("write", &s), 0);
    assert_int_equal(s, BT_HTTP_SCOPE_WRITE);
    assert_string_equal(bt_http_scope_name(BT_HTTP_SCOPE_WORKER), "worker");
    assert_int_equal(bt_http_scope_parse("root", &s), BT_EINVAL);
}

static int shutdown_called;

static void on_down(bt_http_server *srv, void *ud)
{
    (void)srv;
    (void)ud;
    shutdown_called++;
}

static void noop(bt_http_req *req, void *ud)
{
    (void)ud;
    bt_http_respond(req, 204, NULL, NULL, 0);
}

static void test_lifecycle(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_http_server *srv = bt_http_server_new(&loop, NULL);
    bt_error err = BT_ERROR_INIT;
    bt_http_route rt = {.method = "GET", .pattern = "/x", .handler = noop};
    assert_int_equal(bt_http_server_route(srv, &rt, &err), 0);
    assert_int_equal(bt_http_server_route(srv, &rt, &err), BT_EINVAL);
    bt_http_route bad = {.method = "GET", .pattern = "/y"};
    assert_int_equal(bt_http_server_route(srv, &bad, &err), BT_EINVAL);
    assert_int_equal(bt_http_server_port(srv), 0);
    assert_int_equal(bt_http_server_start(srv, &err), 0);
    uint16_t port = bt_http_server_port(srv);
    assert_true(port > 0);
    assert_string_equal(bt_http_server_host(srv), "127.0.0.1");
    assert_int_equal(bt_http_server_start(srv, &err), BT_ESTATE);

    /* A second server on the same port fails with an actionable message. */
    bt_http_server_options o = {.port = port};
    bt_http_server *other = bt_http_server_new(&loop, &o);
    assert_int_equal(bt_http_server_start(other, &err), BT_EIO);
    assert_non_null(strstr(err.msg, "cannot listen on 127.0.0.1:"));
    bt_http_server_free(other);

    shutdown_called = 0;
    bt_http_server_shutdown(srv, on_down, NULL);
    bt_http_server_shutdown(srv, on_down, NULL); /* idempotent */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(shutdown_called, 1);
    bt_http_server_free(srv);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_never_started(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_http_server_options o = {.host = "no-such-host.invalid"};
    bt_http_server *srv = bt_http_server_new(&loop, &o);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_server_start(srv, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "no-such-host.invalid"));
    shutdown_called = 0;
    bt_http_server_shutdown(srv, on_down, NULL);
    assert_int_equal(shutdown_called, 1);
    bt_http_server_free(srv);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_never_started),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
