/*
 * test_client.c - the HTTP client against a real HTTP server on loopback (baton's own
 * bt_http_server on the same libuv loop): JSON GET with the headers callers care about
 * (ETag, Retry-After, rate limits), every method with bodies and a bearer token, the
 * body size limit, timeouts, cancel (before and during a transfer), streaming an SSE
 * response chunk by chunk, non-2xx bodies while streaming, connection refused, bad
 * URLs, close with calls in flight, close-on-exec sockets, and a clean loop close
 * (uv_loop_close() == 0) after every test.
 */
#include "testutil.h"

#include "base/time.h"
#include "http/client.h"
#include "http/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- server side ---- */

typedef struct slow_req {
    uv_timer_t timer;
    bt_http_req *req;
} slow_req;

typedef struct sse_feed {
    uv_timer_t timer;
    bt_http_sse *stream;
    int sent;
} sse_feed;

static void h_json(bt_http_req *req, void *ud)
{
    (void)ud;
    bt_http_resp_header(req, "ETag", "\"v42\"");
    bt_http_resp_header(req, "Retry-After", "7");
    bt_http_resp_header(req, "X-RateLimit-Limit", "5000");
    bt_http_resp_header(req, "X-RateLimit-Remaining", "4999");
    bt_http_resp_header(req, "X-RateLimit-Reset", "1700000000");
    bt_http_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void h_echo(bt_http_req *req, void *ud)
{
    (void)ud;
    size_t len = 0;
    const char *body = bt_http_req_body(req, &len);
    const char *ct = bt_http_req_header(req, "Content-Type");
    const char *auth = bt_http_req_header(req, "Authorization");
    const char *x = bt_http_req_header(req, "X-Test");
    bt_http_respond_json(req, 201,
                         json_pack("{s:s, s:s%, s:s?, s:s?, s:s?}", "method",
                                   bt_http_req_method(req), "body", body ? body : "", len,
                                   "content_type", ct, "auth", auth, "x", x));
}

static void h_big(bt_http_req *req, void *ud)
{
    (void)ud;
    size_t n = 100000;
    char *b = malloc(n);
    memset(b, 'x', n);
    bt_http_respond(req, 200, "text/plain", b, n);
    free(b);
}

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
    slow_req *s = t->data;
    bt_http_respond(s->req, 200, "text/plain", "late", 4);
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void h_slow(bt_http_req *req, void *ud)
{
    uv_loop_t *loop = ud;
    slow_req *s = calloc(1, sizeof *s);
    s->req = req;
    bt_http_req_suspend(req);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, slow_fire, 1500, 0);
}

static void feed_closed(uv_handle_t *h)
{
    free(h->data);
}

static void feed_tick(uv_timer_t *t)
{
    sse_feed *f = t->data;
    if (!f->stream)
        return;
    char data[64];
    snprintf(data, sizeof data, "{\"n\":%d}", f->sent);
    bt_http_sse_send(f->stream, NULL, "tick", data);
    if (++f->sent == 3)
        bt_http_sse_end(f->stream);
}

static void feed_gone(bt_http_sse *stream, void *ud)
{
    (void)stream;
    sse_feed *f = ud;
    f->stream = NULL;
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, feed_closed);
}

static void h_sse(bt_http_req *req, void *ud)
{
    uv_loop_t *loop = ud;
    sse_feed *f = calloc(1, sizeof *f);
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    f->stream = bt_http_sse_start(req, feed_gone, f);
    uv_timer_start(&f->timer, feed_tick, 50, 50);
}

static void h_err(bt_http_req *req, void *ud)
{
    (void)ud;
    bt_http_respond_error(req, 503, "unavailable", "try later");
}

/* ---- fixture ---- */

typedef struct fx {
    uv_loop_t loop;
    bt_http_server *srv;
    bt_http_client *cli;
    char base[64];
    int done;
} fx;

static void fx_start(fx *f)
{
    memset(f, 0, sizeof *f);
    uv_loop_init(&f->loop);
    bt_http_server_options o = {.shutdown_grace_ms = 50};
    f->srv = bt_http_server_new(&f->loop, &o);
    bt_error err = BT_ERROR_INIT;
    const bt_http_route routes[] = {
        {.method = "GET", .pattern = "/json", .handler = h_json},
        {.method = "POST", .pattern = "/echo", .handler = h_echo},
        {.method = "PUT", .pattern = "/echo", .handler = h_echo},
        {.method = "PATCH", .pattern = "/echo", .handler = h_echo},
        {.method = "DELETE", .pattern = "/echo", .handler = h_echo},
        {.method = "GET", .pattern = "/big", .handler = h_big},
        {.method = "GET", .pattern = "/slow", .handler = h_slow, .ud = &f->loop},
        {.method = "GET", .pattern = "/sse", .handler = h_sse, .ud = &f->loop},
        {.method = "GET", .pattern = "/err", .handler = h_err},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        assert_int_equal(bt_http_server_route(f->srv, &routes[i], &err), 0);
    assert_int_equal(bt_http_server_start(f->srv, &err), 0);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u", bt_http_server_port(f->srv));
    assert_int_equal(bt_http_client_new(&f->loop, NULL, &f->cli, &err), 0);
}

/* Run the loop until f->done reaches n (or 10 s pass: a failure). */
static void fx_wait(fx *f, int n)
{
    int64_t deadline = bt_time_mono_ms() + 10000;
    while (f->done < n && bt_time_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->done, n);
}

static void fx_stop(fx *f)
{
    if (f->cli)
        bt_http_client_close(f->cli);
    bt_http_server_shutdown(f->srv, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    bt_http_server_free(f->srv);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

typedef struct result {
    fx *f;
    int rc;
    long status;
    char body[4096];
    size_t body_len;
    char error[512];
    char etag[64], ctype[64];
    int64_t retry_after, limit, remaining, reset;
    char stream[4096];
    size_t stream_len;
    int chunks;
    int stop_after;  /* on_data returns 1 once this many chunks arrived (0 = never) */
    int fds_cloexec; /* every fd > 2 was close-on-exec during a chunk */
} result;

static void on_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    result *res = ud;
    res->rc = r->rc;
    res->status = r->status;
    snprintf(res->body, sizeof res->body, "%s", r->body);
    res->body_len = r->body_len;
    snprintf(res->error, sizeof res->error, "%s", r->error);
    snprintf(res->etag, sizeof res->etag, "%s", r->etag ? r->etag : "");
    snprintf(res->ctype, sizeof res->ctype, "%s", r->content_type ? r->content_type : "");
    res->retry_after = r->retry_after_ms;
    res->limit = r->rate_limit;
    res->remaining = r->rate_remaining;
    res->reset = r->rate_reset;
    res->f->done++;
}

static int all_fds_cloexec(void)
{
    DIR *d = opendir("/proc/self/fd");
    int ok = 1, self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == self)
            continue;
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC)) {
            fprintf(stderr, "fd %d is not close-on-exec\n", fd);
            ok = 0;
        }
    }
    closedir(d);
    return ok;
}

static int on_data(bt_http_call *call, long status, const char *data, size_t len, void *ud)
{
    (void)call;
    result *res = ud;
    assert_int_equal(status, 200);
    if (res->stream_len + len < sizeof res->stream) {
        memcpy(res->stream + res->stream_len, data, len);
        res->stream_len += len;
        res->stream[res->stream_len] = '\0';
    }
    res->chunks++;
    res->fds_cloexec = all_fds_cloexec();
    return res->stop_after && res->chunks >= res->stop_after;
}

static void send_req(fx *f, bt_http_request *rq, result *res, const char *path)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    memset(res, 0, sizeof *res);
    res->f = f;
    rq->url = url;
    rq->on_done = on_done;
    rq->ud = res;
    bt_error err = BT_ERROR_INIT;
    int before = f->done;
    assert_int_equal(bt_http_client_send(f->cli, rq, NULL, &err), 0);
    assert_int_equal(f->done, before); /* never completes inside send */
}

/* ---- tests ---- */

static void test_get_json_and_headers(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    result res;
    bt_http_request rq = {0};
    send_req(&f, &rq, &res, "/json");
    fx_wait(&f, 1);
    assert_int_equal(res.rc, 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"ok\":true}");
    assert_string_equal(res.etag, "\"v42\"");
    assert_string_equal(res.ctype, "application/json");
    assert_int_equal(res.retry_after, 7000);
    assert_int_equal(res.limit, 5000);
    assert_int_equal(res.remaining, 4999);
    assert_int_equal(res.reset, 1700000000);
    assert_int_equal(bt_http_client_pending(f.cli), 0);

    /* A host name goes through curl's threaded resolver without blocking the loop. */
    char url[128];
    snprintf(url, sizeof url, "http://localhost:%u/json", bt_http_server_port(f.srv));
    result byname;
    memset(&byname, 0, sizeof byname);
    byname.f = &f;
    bt_http_request rq2 = {.url = url, .on_done = on_done, .ud = &byname};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_send(f.cli, &rq2, NULL, &err), 0);
    fx_wait(&f, 2);
    assert_int_equal(byname.rc, 0);
    assert_int_equal(byname.status, 200);
    fx_stop(&f);
}

static void test_methods_bodies_token(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    const char *methods[] = {"POST", "PUT", "PATCH", "DELETE"};
    result res[4];
    const char *hdrs[] = {"X-Test: yes", NULL};
    for (int i = 0; i < 4; i++) {
        bt_http_request rq = {.method = methods[i],
                              .body = "{\"a\":1}",
                              .body_len = 7,
                              .headers = hdrs,
                              .bearer_token = "tok-123"};
        send_req(&f, &rq, &res[i], "/echo");
    }
    assert_int_equal(bt_http_client_pending(f.cli), 4);
    fx_wait(&f, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(res[i].rc, 0);
        assert_int_equal(res[i].status, 201);
        json_t *j = json_loads(res[i].body, 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "method")), methods[i]);
        assert_string_equal(json_string_value(json_object_get(j, "body")), "{\"a\":1}");
        assert_string_equal(json_string_value(json_object_get(j, "content_type")),
                            "application/json");
        assert_string_equal(json_string_value(json_object_get(j, "auth")), "Bearer tok-123");
        assert_string_equal(json_string_value(json_object_get(j, "x")), "yes");
        json_decref(j);
    }
    /* POST without a body, and an explicit content type wins over the JSON default. */
    const char *ct[] = {"Content-Type: text/plain", NULL};
    result r2, r3;
    bt_http_request rq2 = {.method = "POST"};
    send_req(&f, &rq2, &r2, "/echo");
    bt_http_request rq3 = {.body = "hi", .body_len = 2, .headers = ct};
    send_req(&f, &rq3, &r3, "/echo");
    fx_wait(&f, 6);
    assert_int_equal(r2.status, 201);
    assert_non_null(strstr(r2.body, "\"body\":\"\""));
    assert_int_equal(r3.status, 201);
    assert_non_null(strstr(r3.body, "\"method\":\"POST\""));
    assert_non_null(strstr(r3.body, "\"content_type\":\"text/plain\""));
    fx_stop(&f);
}

static void test_body_limit(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    result small, big;
    bt_http_request rq = {.max_body = 10000};
    send_req(&f, &rq, &small, "/big");
    bt_http_request rq2 = {0};
    send_req(&f, &rq2, &big, "/big");
    fx_wait(&f, 2);
    assert_int_equal(small.rc, BT_ETOOBIG);
    assert_non_null(strstr(small.error, "larger than the limit"));
    assert_int_equal(big.rc, 0);
    assert_int_equal(big.body_len, 100000);
    fx_stop(&f);
}

static void test_timeout_and_cancel(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    result t, c1, c2;
    bt_http_request rq = {.timeout_ms = 200};
    int64_t t0 = bt_time_mono_ms();
    send_req(&f, &rq, &t, "/slow");
    fx_wait(&f, 1);
    int64_t took = bt_time_mono_ms() - t0;
    assert_int_equal(t.rc, BT_ETIMEOUT);
    assert_true(took >= 150 && took < 1400);
    assert_non_null(strstr(t.error, "GET http://127.0.0.1:"));

    /* Cancel right after send (before curl even started) and mid-wait. */
    char url[256];
    snprintf(url, sizeof url, "%s/slow?secret=do-not-log", f.base);
    bt_error err = BT_ERROR_INIT;
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    c1.f = c2.f = &f;
    bt_http_call *k1 = NULL, *k2 = NULL;
    bt_http_request r1 = {.url = url, .on_done = on_done, .ud = &c1};
    bt_http_request r2 = {.url = url, .on_done = on_done, .ud = &c2};
    assert_int_equal(bt_http_client_send(f.cli, &r1, &k1, &err), 0);
    assert_int_equal(bt_http_client_send(f.cli, &r2, &k2, &err), 0);
    bt_http_call_cancel(k1);
    assert_int_equal(f.done, 1); /* cancel never calls back synchronously */
    for (int i = 0; i < 20; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(f.done, 2);
    bt_http_call_cancel(k2);
    fx_wait(&f, 3);
    assert_int_equal(c1.rc, BT_ECANCELED);
    assert_int_equal(c2.rc, BT_ECANCELED);
    assert_null(strstr(c2.error, "do-not-log")); /* the query string stays out of messages */
    fx_stop(&f);
}

static void test_streaming(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    result s, e, stop;
    bt_http_request rq = {.on_data = on_data, .timeout_ms = -1, .idle_timeout_ms = 5000};
    send_req(&f, &rq, &s, "/sse");
    bt_http_request rq2 = {.on_data = on_data};
    send_req(&f, &rq2, &e, "/err");
    bt_http_request rq3 = {.on_data = on_data};
    send_req(&f, &rq3, &stop, "/sse");
    stop.stop_after = 1;
    fx_wait(&f, 3);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.status, 200);
    assert_true(s.chunks >= 3); /* one per event: nothing waited for the end */
    assert_non_null(strstr(s.stream, "event: tick\ndata: {\"n\":0}\n\n"));
    assert_non_null(strstr(s.stream, "data: {\"n\":2}"));
    assert_int_equal(s.body_len, 0);
    assert_true(s.fds_cloexec);
    /* a non-2xx answer is buffered, not streamed */
    assert_int_equal(e.rc, 0);
    assert_int_equal(e.status, 503);
    assert_int_equal(e.chunks, 0);
    assert_non_null(strstr(e.body, "\"code\":\"unavailable\""));
    /* on_data returning non-zero stops the transfer */
    assert_int_equal(stop.rc, BT_ECANCELED);
    assert_int_equal(stop.chunks, 1);
    fx_stop(&f);
}

static void test_refused_and_bad_url(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    /* A port nobody listens on: bind, note it, close. */
    uv_tcp_t tmp;
    uv_tcp_init(&f.loop, &tmp);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&tmp, (const struct sockaddr *)&a, 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&tmp, (struct sockaddr *)&got, &len);
    uv_close((uv_handle_t *)&tmp, NULL);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/x", ntohs(got.sin_port));
    result r;
    memset(&r, 0, sizeof r);
    r.f = &f;
    bt_http_request rq = {.url = url, .on_done = on_done, .ud = &r};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_send(f.cli, &rq, NULL, &err), 0);
    fx_wait(&f, 1);
    assert_int_equal(r.rc, BT_EUNAVAIL);
    assert_int_equal(r.status, 0);

    bt_http_request bad = {.url = "ftp://example.com/", .on_done = on_done, .ud = &r};
    assert_int_equal(bt_http_client_send(f.cli, &bad, NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "ftp://example.com/"));
    bt_http_request nocb = {.url = url};
    assert_int_equal(bt_http_client_send(f.cli, &nocb, NULL, &err), BT_EINVAL);
    bt_http_request lower = {.url = url, .method = "get", .on_done = on_done};
    assert_int_equal(bt_http_client_send(f.cli, &lower, NULL, &err), BT_EINVAL);
    fx_stop(&f);
}

/* Closing from inside on_done, with another call in flight. */
static result close_res[2];

static void close_in_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    fx *f = ud;
    (void)call;
    close_res[0].rc = r->rc;
    f->done++;
    bt_http_client_close(f->cli);
    bt_error err = BT_ERROR_INIT;
    bt_http_request rq = {.url = "http://127.0.0.1:1/", .on_done = close_in_done, .ud = f};
    assert_int_equal(bt_http_client_send(f->cli, &rq, NULL, &err), BT_ECANCELED);
}

static void test_close_with_calls_in_flight(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    char url[256];
    snprintf(url, sizeof url, "%s/json", f.base);
    bt_http_request rq = {.url = url, .on_done = close_in_done, .ud = &f};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_send(f.cli, &rq, NULL, &err), 0);
    memset(&close_res[1], 0, sizeof close_res[1]);
    close_res[1].f = &f;
    snprintf(url, sizeof url, "%s/slow", f.base);
    bt_http_request slow = {.url = url, .on_done = on_done, .ud = &close_res[1]};
    assert_int_equal(bt_http_client_send(f.cli, &slow, NULL, &err), 0);
    fx_wait(&f, 2);
    assert_int_equal(close_res[0].rc, 0);
    assert_int_equal(close_res[1].rc, BT_ECANCELED);
    f.cli = NULL; /* closed from the callback */
    fx_stop(&f);
}

static void test_retry_after_parse(void **state)
{
    (void)state;
    int64_t now = 1700000000000LL; /* Tue, 14 Nov 2023 22:13:20 GMT */
    assert_int_equal(bt_http_parse_retry_after("120", now), 120000);
    assert_int_equal(bt_http_parse_retry_after(" 0 ", now), 0);
    assert_int_equal(bt_http_parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now), 30000);
    assert_int_equal(bt_http_parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), 0);
    assert_int_equal(bt_http_parse_retry_after("soon", now), -1);
    assert_int_equal(bt_http_parse_retry_after("12abc", now), -1);
    assert_int_equal(bt_http_parse_retry_after(NULL, now), -1);
    assert_non_null(strchr(bt_http_client_version(), '.'));
}

int main(void)
{
    bt_error err = BT_ERROR_INIT;
    if (bt_http_client_global_init(&err) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_json_and_headers),
        cmocka_unit_test(test_methods_bodies_token),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_timeout_and_cancel),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_refused_and_bad_url),
        cmocka_unit_test(test_close_with_calls_in_flight),
        cmocka_unit_test(test_retry_after_parse),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bt_http_client_global_cleanup();
    return rc;
}
