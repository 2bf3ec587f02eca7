/*
 * testutil_http.c - a synchronous call to a fake server's control API (/_control/...)
 * for the unit tests that drive real clients against the fakes in tests/fakes: the
 * request goes through baton's own HTTP client on the test's loop.
 */
#include "testutil.h"

#include "base/strbuf.h"
#include "base/time.h"
#include "http/client.h"

#include <stdio.h>
#include <string.h>

typedef struct sync_call {
    int done;
    long status;
    bt_strbuf body;
} sync_call;

static void sync_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    sync_call *s = ud;
    s->done = 1;
    s->status = r->status;
    bt_strbuf_add(&s->body, r->body, r->body_len);
}

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

static void on_wake_closed(uv_handle_t *h)
{
    *(int *)h->data = 1;
}

json_t *bt_test_ctl(uv_loop_t *loop, bt_http_client *http, const char *base, const char *method,
                    const char *path, const char *body)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    sync_call s = {.body = BT_STRBUF_INIT};
    bt_http_request rq = {.method = method,
                          .url = url,
                          .body = body,
                          .body_len = body ? strlen(body) : 0,
                          .on_done = sync_done,
                          .ud = &s};
    bt_error err = BT_ERROR_INIT;
    if (bt_http_client_send(http, &rq, NULL, &err) < 0)
        fail_msg("%s %s: %s", method, url, err.msg);
    uv_timer_t wake;
    uv_timer_init(loop, &wake);
    uv_timer_start(&wake, on_wake, 10, 10);
    int64_t end = bt_time_mono_ms() + 10000;
    while (!s.done && bt_time_mono_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    /* the timer lives on this stack frame: wait for its close callback only (running
     * the loop until it is idle would also finish the caller's other work) */
    int closed = 0;
    wake.data = &closed;
    uv_close((uv_handle_t *)&wake, on_wake_closed);
    while (!closed)
        uv_run(loop, UV_RUN_NOWAIT);
    if (!s.done)
        fail_msg("%s %s: no answer from the fake within 10 s", method, url);
    if (s.status < 200 || s.status > 299)
        fail_msg("%s %s: HTTP %ld: %.300s", method, url, s.status, s.body.buf ? s.body.buf : "");
    json_t *j = json_loadb(s.body.buf ? s.body.buf : "", s.body.len, JSON_DECODE_ANY, NULL);
    if (!j)
        fail_msg("%s %s: the answer is not JSON: %.300s", method, url,
                 s.body.buf ? s.body.buf : "");
    bt_strbuf_release(&s.body);
    return j;
}
