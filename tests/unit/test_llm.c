/*
 * test_llm.c - the HTTP LLM agents end to end, and the parsers under them.
 *
 * Parsers: the SSE parser and the NDJSON splitter fed whole, byte by byte, in odd
 * chunk sizes and split at every position give the same events (CRLF/CR line ends,
 * comments, multi-line data, a byte-order mark, over-long lines refused); provider
 * error bodies become readable messages.
 *
 * Adapters (openai, anthropic, ollama) against tests/fakes/llm_server.py on loopback,
 * through the real bt_http_client on a libuv loop: streamed text arrives as events
 * well before the turn ends; usage is reported once and equals the fake's numbers;
 * cost is tokens x the configured price; a 429 with Retry-After: 1 is retried no
 * sooner than 1 s later and then succeeds; 401 and quota 429s are permanent and sent
 * once; 5xx, truncated streams, Anthropic overloaded_error events and Ollama error
 * lines are transient and retried, with the partial output of the failed attempt
 * discarded; garbage is a clear permanent error; a hung server hits the turn
 * deadline (timeout); cancel stops a stream (cancelled); the availability check
 * reports available, unreachable and "api key unset".
 */
#include "testutil.h"

#include "agents/agent.h"
#include "agents/llm.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "http/client.h"

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ================= parsers ================= */

typedef struct collect {
    bt_strbuf log;  /* "event|data\n" per dispatched event, or per line */
    int stop_after; /* return 1 after this many (0 = never) */
    int n;
} collect;

static int sse_cb(const char *event, const char *data, size_t len, void *ud)
{
    collect *c = ud;
    assert_int_equal(strlen(data), len);
    bt_strbuf_addf(&c->log, "%s|%s\n", event, data);
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static int line_cb(const char *line, size_t len, void *ud)
{
    collect *c = ud;
    assert_int_equal(strlen(line), len);
    bt_strbuf_addf(&c->log, "[%s]\n", line);
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static const char sse_input[] = "\xEF\xBB\xBF"
                                ": a comment\r\n"
                                "event: message_start\r\n"
                                "data: {\"a\":1}\r\n"
                                "\r\n"
                                "data:first\n"
                                "data:  second\n"
                                "id: 7\n"
                                "retry: 100\n"
                                "\n"
                                "event: lonely\n"
                                "\n"
                                "data\r"
                                "\r"
                                "event: ping\r"
                                "data: {}\r"
                                "\r"
                                "unknown: field\n"
                                "data: [DONE]\n"
                                "\n"
                                "data: never dispatched";
static const char sse_expect[] = "message_start|{\"a\":1}\n"
                                 "message|first\n second\n"
                                 "message|\n"
                                 "ping|{}\n"
                                 "message|[DONE]\n";

static char *sse_run(const char *in, size_t len, const size_t *sizes, size_t nsizes)
{
    collect c = {.log = BT_STRBUF_INIT};
    bt_llm_sse p;
    bt_llm_sse_init(&p, 0, sse_cb, &c);
    size_t off = 0, k = 0;
    while (off < len) {
        size_t n = nsizes ? sizes[k++ % nsizes] : len;
        if (n > len - off)
            n = len - off;
        assert_int_equal(bt_llm_sse_feed(&p, in + off, n), 0);
        off += n;
    }
    bt_llm_sse_release(&p);
    return bt_strbuf_detach(&c.log, NULL);
}

static void test_sse_chunking(void **state)
{
    (void)state;
    size_t len = sizeof sse_input - 1;
    char *whole = sse_run(sse_input, len, NULL, 0);
    assert_string_equal(whole, sse_expect);
    free(whole);
    static const size_t one[] = {1}, odd[] = {2, 3, 5, 7, 11, 1};
    char *bytes = sse_run(sse_input, len, one, 1);
    assert_string_equal(bytes, sse_expect);
    free(bytes);
    char *odds = sse_run(sse_input, len, odd, sizeof odd / sizeof odd[0]);
    assert_string_equal(odds, sse_expect);
    free(odds);
    for (size_t cut = 1; cut < len; cut++) { /* every two-piece split, CRLF halves included */
        size_t sizes[] = {cut, len};
        char *s = sse_run(sse_input, len, sizes, 2);
        assert_string_equal(s, sse_expect);
        free(s);
    }
}

static int sse_str(bt_llm_sse *p, const char *s)
{
    return bt_llm_sse_feed(p, s, strlen(s));
}

static int lines_str(bt_llm_lines *p, const char *s)
{
    return bt_llm_lines_feed(p, s, strlen(s));
}

static void test_sse_limits_and_stop(void **state)
{
    (void)state;
    collect c = {.log = BT_STRBUF_INIT};
    bt_llm_sse p;
    bt_llm_sse_init(&p, 16, sse_cb, &c);
    assert_int_equal(sse_str(&p, "data: 0123456789"), 0);
    assert_int_equal(sse_str(&p, "x"), BT_ETOOBIG); /* a 17-byte line */
    bt_llm_sse_reset(&p);
    /* data of one event is bounded too, across its lines */
    assert_int_equal(sse_str(&p, "data: 0123456\ndata: 0123456\ndata: 01\n"), BT_ETOOBIG);
    bt_llm_sse_reset(&p);
    c.stop_after = 1;
    assert_int_equal(sse_str(&p, "data: a\n\ndata: b\n\n"), 1);
    assert_string_equal(c.log.buf, "message|a\n");
    bt_llm_sse_reset(&p);
    c.stop_after = 0;
    assert_int_equal(sse_str(&p, "data: partial"), 0);
    bt_llm_sse_reset(&p); /* a new stream: the partial line is gone */
    assert_int_equal(sse_str(&p, "data: c\n\n"), 0);
    assert_string_equal(c.log.buf, "message|a\nmessage|c\n");
    bt_llm_sse_release(&p);
    bt_strbuf_release(&c.log);
}

static const char nd_input[] = "{\"a\":1}\r\n"
                               "\n"
                               "   \r\n"
                               "{\"b\":\"x y\"}\n"
                               "{\"c\":3}";
static const char nd_expect[] = "[{\"a\":1}]\n[{\"b\":\"x y\"}]\n[{\"c\":3}]\n";

static char *nd_run(const char *in, size_t len, const size_t *sizes, size_t nsizes)
{
    collect c = {.log = BT_STRBUF_INIT};
    bt_llm_lines p;
    bt_llm_lines_init(&p, 64, line_cb, &c);
    size_t off = 0, k = 0;
    while (off < len) {
        size_t n = nsizes ? sizes[k++ % nsizes] : len;
        if (n > len - off)
            n = len - off;
        assert_int_equal(bt_llm_lines_feed(&p, in + off, n), 0);
        off += n;
    }
    assert_int_equal(bt_llm_lines_finish(&p), 0);
    bt_llm_lines_release(&p);
    return bt_strbuf_detach(&c.log, NULL);
}

static void test_ndjson_chunking(void **state)
{
    (void)state;
    size_t len = sizeof nd_input - 1;
    static const size_t one[] = {1}, odd[] = {3, 5, 2, 7};
    char *s = nd_run(nd_input, len, NULL, 0);
    assert_string_equal(s, nd_expect);
    free(s);
    s = nd_run(nd_input, len, one, 1);
    assert_string_equal(s, nd_expect);
    free(s);
    s = nd_run(nd_input, len, odd, 4);
    assert_string_equal(s, nd_expect);
    free(s);
    for (size_t cut = 1; cut < len; cut++) {
        size_t sizes[] = {cut, len};
        s = nd_run(nd_input, len, sizes, 2);
        assert_string_equal(s, nd_expect);
        free(s);
    }
}

static void test_ndjson_limits_and_stop(void **state)
{
    (void)state;
    collect c = {.log = BT_STRBUF_INIT};
    bt_llm_lines p;
    bt_llm_lines_init(&p, 8, line_cb, &c);
    assert_int_equal(lines_str(&p, "12345678\n"), 0); /* exactly the limit */
    assert_int_equal(lines_str(&p, "1234"), 0);
    assert_int_equal(lines_str(&p, "56789"), BT_ETOOBIG);
    bt_llm_lines_reset(&p);
    c.stop_after = 2;
    assert_int_equal(lines_str(&p, "a\nb\nc\n"), 1);
    assert_string_equal(c.log.buf, "[12345678]\n[a]\n");
    bt_llm_lines_release(&p);
    bt_strbuf_release(&c.log);
}

static void err_is(const char *body, const char *want)
{
    bt_strbuf s = BT_STRBUF_INIT;
    bt_llm_error_message(body, body ? strlen(body) : 0, &s);
    assert_string_equal(s.buf, want);
    bt_strbuf_release(&s);
}

static void test_helpers(void **state)
{
    (void)state;
    err_is("{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":"
           "\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}",
           "You exceeded your current quota (insufficient_quota)");
    err_is("{\"error\":{\"message\":\"bad key\",\"type\":\"invalid_request_error\","
           "\"code\":\"invalid_api_key\"}}",
           "bad key (invalid_request_error, invalid_api_key)");
    err_is("{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"limit\","
           "\"details\":{\"error_code\":\"enforced_spend_limit_reached\"}}}",
           "limit (rate_limit_error, enforced_spend_limit_reached)");
    err_is("{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}",
           "model \"x\" not found, try pulling it first");
    err_is("{\"object\":\"error\",\"message\":\"context too long\",\"type\":\"BadRequestError\"}",
           "context too long (BadRequestError)");
    err_is("<html>\n<b>502</b></html>", "<html> <b>502</b></html>");
    err_is("", "(empty body)");

    assert_true(bt_llm_hosted("https://api.openai.com/v1"));
    assert_true(bt_llm_hosted("https://API.anthropic.com"));
    assert_true(bt_llm_hosted("https://api.x.ai/v1"));
    assert_false(bt_llm_hosted("http://127.0.0.1:11434"));
    assert_false(bt_llm_hosted("https://api.openai.com.evil.test/v1"));
    assert_false(bt_llm_hosted("http://localhost:8000/v1"));

    bt_strbuf u = BT_STRBUF_INIT;
    bt_llm_url(&u, "http://h:1/v1/", "/chat/completions");
    assert_string_equal(u.buf, "http://h:1/v1/chat/completions");
    assert_true(bt_llm_base_ends_with("http://h:1/v1/", "/v1"));
    assert_false(bt_llm_base_ends_with("http://h:1", "/v1"));
    bt_strbuf_release(&u);
}

/* ================= adapters against the fake server ================= */

typedef struct fx {
    uv_loop_t loop;
    bt_http_client *http;
    bt_test_fake fake;
    char base[64];
} fx;

static int fx_setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    bt_test_fake_start(&f->fake, "llm_server.py");
    snprintf(f->base, sizeof f->base, "%s", f->fake.base);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_new(&f->loop, NULL, &f->http, &err), 0);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    bt_http_client_close(f->http);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_test_fake_stop(&f->fake);
    free(f);
    return 0;
}

/* ---- synchronous control calls ---- */

static json_t *ctl(fx *f, const char *method, const char *path, const char *body)
{
    return bt_test_ctl(&f->loop, f->http, f->base, method, path, body);
}

static void fake_reset(fx *f)
{
    json_decref(ctl(f, "POST", "/_control/reset", "{}"));
}

static void script(fx *f, const char *path, const char *actions)
{
    bt_strbuf b = BT_STRBUF_INIT;
    bt_strbuf_addf(&b, "{\"path\":\"%s\",\"actions\":%s}", path, actions);
    json_decref(ctl(f, "POST", "/_control/script", b.buf));
    bt_strbuf_release(&b);
}

/* The logged requests to path (new reference, an array). */
static json_t *requests(fx *f, const char *path)
{
    json_t *all = ctl(f, "GET", "/_control/requests", NULL);
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        if (strcmp(bt_json_str(r, "path", ""), path) == 0)
            json_array_append(out, r);
    }
    json_decref(all);
    return out;
}

/* ---- agents and turns ---- */

static bt_agent *mk_agent(fx *f, bt_agent_type type, const char *base, const char *model,
                          const char *key, int with_http)
{
    bt_config_agent ac = {0};
    ac.name = "t";
    ac.type = type;
    ac.base_url = (char *)base;
    ac.model = (char *)model;
    ac.api_key = (char *)key;
    ac.price.input = 2.0;   /* USD per million */
    ac.price.output = 10.0; /* USD per million */
    ac.timeout_ms = 20000;
    bt_agent_env env = {.loop = &f->loop, .http = with_http ? f->http : NULL};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_new(&env, &ac, &a, &err), 0);
    return a;
}

static bt_agent *mk(fx *f, bt_agent_type type, const char *suffix, const char *model)
{
    char base[128];
    snprintf(base, sizeof base, "%s%s", f->base, suffix);
    return mk_agent(f, type, base, model, "sk-test", 1);
}

typedef struct turn_out {
    int done, success;
    bt_agent_error_class cls;
    char *output, *error, *model;
    long http_status;
    int64_t tin, tout, duration_ms;
    double cost;
    bt_strbuf streamed, status, tools;
    int n_output, n_usage, n_status;
    int64_t first_output_ms;
    int64_t usage_in, usage_out;
    int cancel_on_output, cancel_on_status;
    bt_agent_run *run;
} turn_out;

static void on_ev(const bt_agent_event *e, void *ud)
{
    turn_out *o = ud;
    assert_false(o->done);
    switch (e->kind) {
    case BT_AGENT_EV_OUTPUT:
        if (!o->n_output++)
            o->first_output_ms = e->at_ms;
        bt_strbuf_add(&o->streamed, e->text, e->len);
        if (o->cancel_on_output)
            bt_agent_run_cancel(o->run);
        o->cancel_on_output = 0;
        break;
    case BT_AGENT_EV_USAGE:
        o->n_usage++;
        o->usage_in = e->tokens_in;
        o->usage_out = e->tokens_out;
        break;
    case BT_AGENT_EV_STATUS:
        o->n_status++;
        bt_strbuf_addf(&o->status, "%s\n", e->text);
        if (o->cancel_on_status)
            bt_agent_run_cancel(o->run);
        o->cancel_on_status = 0;
        break;
    case BT_AGENT_EV_TOOL:
        bt_strbuf_addf(&o->tools, "%s %s\n", e->tool, e->text);
        break;
    default:
        break;
    }
}

static void on_done(const bt_agent_result *r, void *ud)
{
    turn_out *o = ud;
    assert_false(o->done);
    o->done = 1;
    o->success = r->success;
    o->cls = r->error_class;
    o->output = bt_xstrdup(r->output);
    o->error = bt_xstrdup(r->error);
    o->model = bt_xstrdup(r->model);
    o->http_status = r->http_status;
    o->tin = r->tokens_in;
    o->tout = r->tokens_out;
    o->cost = r->cost_usd;
    o->duration_ms = r->duration_ms;
}

static void out_init(turn_out *o)
{
    memset(o, 0, sizeof *o);
    o->first_output_ms = -1;
}

static void out_release(turn_out *o)
{
    free(o->output);
    free(o->error);
    free(o->model);
    bt_strbuf_release(&o->streamed);
    bt_strbuf_release(&o->status);
    bt_strbuf_release(&o->tools);
}

static void start_turn(fx *f, bt_agent *a, const char *prompt, int64_t timeout_ms, turn_out *o)
{
    (void)f;
    bt_agent_request rq = {.prompt = prompt,
                           .system = "You are terse.",
                           .context = "ctx words here",
                           .timeout_ms = timeout_ms,
                           .on_event = on_ev,
                           .on_done = on_done,
                           .ud = o};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_start(a, &rq, &o->run, &err), 0);
}

static void wait_turn(fx *f, turn_out *o)
{
    int64_t deadline = bt_time_mono_ms() + 20000;
    while (!o->done && bt_time_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(o->done);
}

static void run_turn(fx *f, bt_agent *a, const char *prompt, int64_t timeout_ms, turn_out *o)
{
    out_init(o);
    start_turn(f, a, prompt, timeout_ms, o);
    wait_turn(f, o);
}

typedef struct check_out {
    int done, available;
    char detail[512];
} check_out;

static void on_check(bt_agent *a, int available, const char *detail, void *ud)
{
    (void)a;
    check_out *c = ud;
    c->done = 1;
    c->available = available;
    snprintf(c->detail, sizeof c->detail, "%s", detail);
}

static void run_check(fx *f, bt_agent *a, check_out *c)
{
    memset(c, 0, sizeof *c);
    bt_agent_check(a, on_check, c);
    while (!c->done)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static double when(const json_t *req)
{
    return json_real_value(json_object_get(req, "time"));
}

static const char *header(const json_t *req, const char *name)
{
    return bt_json_str(json_object_get(req, "headers"), name, "");
}

/* ---- openai ---- */

static void test_openai_stream(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/v1/chat/completions",
           "[{\"reply\":\"one two three four five\",\"usage\":{\"input\":11,\"output\":7},"
           "\"chunk_delay_ms\":60}]");
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    assert_false(bt_agent_writes_workspace(a));
    turn_out o;
    run_turn(f, a, "say five words", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.output, "one two three four five");
    assert_string_equal(o.streamed.buf, "one two three four five");
    assert_true(o.n_output >= 5);
    /* the first words were delivered while the stream was still running */
    assert_true(o.first_output_ms >= 0);
    assert_true(o.first_output_ms + 250 < o.duration_ms);
    assert_int_equal(o.n_usage, 1);
    assert_int_equal(o.tin, 11);
    assert_int_equal(o.tout, 7);
    assert_int_equal(o.usage_in, 11);
    assert_float_equal(o.cost, (11 * 2.0 + 7 * 10.0) / 1e6, 1e-12);
    assert_string_equal(o.model, "gpt-test");
    assert_int_equal(o.http_status, 200);

    json_t *reqs = requests(f, "/v1/chat/completions");
    assert_int_equal(json_array_size(reqs), 1);
    const json_t *r = json_array_get(reqs, 0);
    assert_string_equal(header(r, "authorization"), "Bearer sk-test");
    const json_t *body = json_object_get(r, "body");
    assert_true(bt_json_bool(body, "stream", 0));
    assert_true(bt_json_bool(json_object_get(body, "stream_options"), "include_usage", 0));
    const json_t *msgs = json_object_get(body, "messages");
    assert_string_equal(bt_json_str(json_array_get(msgs, 0), "role", ""), "system");
    assert_string_equal(bt_json_str(json_array_get(msgs, 0), "content", ""), "You are terse.");
    assert_string_equal(bt_json_str(json_array_get(msgs, 1), "content", ""),
                        "say five words\n\nctx words here");
    json_decref(reqs);
    out_release(&o);
    bt_agent_free(a);
}

static void test_openai_default_usage(void **state)
{
    fx *f = *state;
    fake_reset(f);
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    turn_out o;
    run_turn(f, a, "hello there", 0, &o);
    assert_true(o.success);
    /* the fake's default: words of all messages in, words of the reply out */
    assert_string_equal(o.output, "fake reply to: hello there\n\nctx words here");
    assert_int_equal(o.tin, 3 + 5);
    assert_int_equal(o.tout, 8);
    assert_int_equal(o.n_usage, 1);
    out_release(&o);
    bt_agent_free(a);
}

static void test_openai_retry_after(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/v1/chat/completions",
           "[{\"status\":429,\"headers\":{\"Retry-After\":\"1\"}},{\"reply\":\"done now\"}]");
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    turn_out o;
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.output, "done now");
    assert_string_equal(o.status.buf,
                        "HTTP 429 rate limited; retrying in 1.0 s (attempt 2 of 3)\n");
    json_t *reqs = requests(f, "/v1/chat/completions");
    assert_int_equal(json_array_size(reqs), 2);
    assert_true(when(json_array_get(reqs, 1)) - when(json_array_get(reqs, 0)) >= 1.0);
    json_decref(reqs);
    out_release(&o);
    bt_agent_free(a);
}

static void test_openai_permanent(void **state)
{
    fx *f = *state;
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    static const struct {
        const char *action, *words;
    } cases[] = {
        {"{\"status\":401}", "HTTP 401 from "},
        {"{\"quota\":true}", "exceeded your current quota"},
        {"{\"status\":400,\"body\":{\"error\":{\"message\":\"context too long\"}}}",
         "context too long"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_reset(f);
        char actions[256];
        snprintf(actions, sizeof actions, "[%s]", cases[i].action);
        script(f, "/v1/chat/completions", actions);
        turn_out o;
        run_turn(f, a, "go", 0, &o);
        assert_false(o.success);
        assert_int_equal(o.cls, BT_AGENT_PERMANENT);
        assert_non_null(strstr(o.error, cases[i].words));
        assert_int_equal(o.n_status, 0);
        json_t *reqs = requests(f, "/v1/chat/completions");
        assert_int_equal(json_array_size(reqs), 1); /* never retried */
        json_decref(reqs);
        out_release(&o);
    }
    bt_agent_free(a);
}

static void test_openai_transient(void **state)
{
    fx *f = *state;
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    /* a 5xx every time: tried three times, then a transient failure */
    fake_reset(f);
    script(f, "/v1/chat/completions",
           "[{\"status\":503,\"headers\":{\"Retry-After\":\"0\"},\"times\":3}]");
    turn_out o;
    run_turn(f, a, "go", 0, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_TRANSIENT);
    assert_non_null(strstr(o.error, "HTTP 503"));
    assert_non_null(strstr(o.error, "after 3 attempts"));
    assert_int_equal(o.n_status, 2);
    assert_non_null(
        strstr(o.status.buf, "HTTP 503 unavailable; retrying in 0.0 s (attempt 3 of 3)"));
    json_t *reqs = requests(f, "/v1/chat/completions");
    assert_int_equal(json_array_size(reqs), 3);
    json_decref(reqs);
    out_release(&o);

    /* a 500 once: retried (Retry-After 0) and fine */
    fake_reset(f);
    script(f, "/v1/chat/completions", "[{\"status\":500,\"headers\":{\"Retry-After\":\"0\"}}]");
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_non_null(strstr(o.status.buf, "HTTP 500 server error; retrying"));
    out_release(&o);
    bt_agent_free(a);
}

static void test_openai_truncated_then_ok(void **state)
{
    fx *f = *state;
    fake_reset(f);
    /* a stream that stops before [DONE], then a good one: the partial text of the first
     * attempt is not part of the answer, usage is the second attempt's only; the wait is
     * jittered backoff (no Retry-After): between 0.375 and 0.5 s */
    script(f, "/v1/chat/completions",
           "[{\"reply\":\"partial words that never finish\",\"truncate\":true,"
           "\"usage\":{\"input\":100,\"output\":100}},"
           "{\"reply\":\"complete answer\",\"usage\":{\"input\":5,\"output\":2}}]");
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    turn_out o;
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.output, "complete answer");
    assert_non_null(strstr(o.streamed.buf, "partial"));
    assert_non_null(strstr(o.status.buf, "stream ended early; retrying in "));
    assert_int_equal(o.n_usage, 1);
    assert_int_equal(o.tin, 5);
    assert_int_equal(o.tout, 2);
    json_t *reqs = requests(f, "/v1/chat/completions");
    assert_int_equal(json_array_size(reqs), 2);
    double gap = when(json_array_get(reqs, 1)) - when(json_array_get(reqs, 0));
    assert_true(gap >= 0.37);
    json_decref(reqs);
    out_release(&o);
    bt_agent_free(a);
}

static void test_openai_garbage(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/v1/chat/completions", "[{\"garbage\":true}]");
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    turn_out o;
    run_turn(f, a, "go", 0, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_non_null(strstr(o.error, "malformed stream from "));
    assert_non_null(strstr(o.error, "not JSON"));
    out_release(&o);

    /* pointed at something that is not an event stream at all */
    char base[128];
    snprintf(base, sizeof base, "%s/nowhere", f->base);
    fake_reset(f);
    bt_agent *b = mk_agent(f, BT_AGENT_OPENAI, base, "gpt-test", NULL, 1);
    run_turn(f, b, "go", 0, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_non_null(strstr(o.error, "HTTP 404 from "));
    out_release(&o);
    bt_agent_free(b);
    bt_agent_free(a);
}

static void test_openai_tool_call(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/v1/chat/completions",
           "[{\"tool_call\":{\"name\":\"lookup\",\"arguments\":{\"q\":\"x\"}}}]");
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    turn_out o;
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.tools.buf, "lookup {\"q\": \"x\"}\n");
    out_release(&o);
    bt_agent_free(a);
}

static void test_openai_timeout_and_cancel(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/v1/chat/completions", "[{\"hang\":true}]");
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "gpt-test");
    turn_out o;
    int64_t t0 = bt_time_mono_ms();
    run_turn(f, a, "go", 300, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_TIMEOUT);
    assert_non_null(strstr(o.error, "timed out after 300ms"));
    assert_true(bt_time_mono_ms() - t0 < 3000);
    out_release(&o);

    /* cancel in the middle of a slow stream */
    fake_reset(f);
    script(f, "/v1/chat/completions",
           "[{\"reply\":\"a b c d e f g h i j\",\"chunk_delay_ms\":300}]");
    out_init(&o);
    o.cancel_on_output = 1;
    t0 = bt_time_mono_ms();
    start_turn(f, a, "go", 0, &o);
    wait_turn(f, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_CANCELLED);
    assert_true(bt_time_mono_ms() - t0 < 2000);
    assert_true(o.n_output >= 1 && o.n_output < 5);
    out_release(&o);

    /* cancel while waiting to retry: the pending retry is dropped */
    fake_reset(f);
    script(f, "/v1/chat/completions", "[{\"status\":429,\"headers\":{\"Retry-After\":\"5\"}}]");
    out_init(&o);
    o.cancel_on_status = 1;
    t0 = bt_time_mono_ms();
    start_turn(f, a, "go", 0, &o);
    wait_turn(f, &o);
    assert_int_equal(o.cls, BT_AGENT_CANCELLED);
    assert_string_equal(o.error, "cancelled");
    assert_true(bt_time_mono_ms() - t0 < 2000);
    json_t *reqs = requests(f, "/v1/chat/completions");
    assert_int_equal(json_array_size(reqs), 1);
    json_decref(reqs);
    out_release(&o);
    bt_agent_free(a);
}

static void test_openai_check(void **state)
{
    fx *f = *state;
    fake_reset(f);
    check_out c;
    bt_agent *a = mk(f, BT_AGENT_OPENAI, "/v1", "llama3.2:1b");
    run_check(f, a, &c);
    assert_true(c.available);
    assert_non_null(strstr(c.detail, "2 models; llama3.2:1b listed"));
    bt_agent_free(a);

    a = mk_agent(f, BT_AGENT_OPENAI, "http://127.0.0.1:1/v1", "m", NULL, 1);
    run_check(f, a, &c);
    assert_false(c.available);
    assert_non_null(strstr(c.detail, "unreachable: "));
    bt_agent_free(a);

    a = mk_agent(f, BT_AGENT_OPENAI, "https://api.openai.com/v1", "gpt-4o-mini", NULL, 1);
    run_check(f, a, &c);
    assert_false(c.available);
    assert_string_equal(c.detail, "api key unset (set agents.t.api_key or OPENAI_API_KEY)");
    bt_agent_free(a);

    /* without an HTTP client: check says so and start refuses */
    a = mk_agent(f, BT_AGENT_OPENAI, f->base, "m", NULL, 0);
    run_check(f, a, &c);
    assert_false(c.available);
    assert_string_equal(c.detail, "no HTTP client");
    turn_out o;
    out_init(&o);
    bt_agent_request rq = {.prompt = "x", .on_done = on_done, .ud = &o};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_start(a, &rq, NULL, &err), BT_EUNAVAIL);
    assert_non_null(strstr(err.msg, "no HTTP client"));
    bt_agent_free(a);
    json_t *reqs = requests(f, "/v1/models");
    assert_int_equal(json_array_size(reqs), 1);
    json_decref(reqs);
}

/* ---- anthropic ---- */

static void test_anthropic_stream(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/v1/messages",
           "[{\"reply\":\"alpha beta gamma delta\",\"usage\":{\"input\":21,\"output\":4},"
           "\"chunk_delay_ms\":80}]");
    bt_agent *a = mk(f, BT_AGENT_ANTHROPIC, "", "claude-test");
    assert_false(bt_agent_writes_workspace(a));
    turn_out o;
    run_turn(f, a, "greek letters", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.output, "alpha beta gamma delta");
    assert_string_equal(o.streamed.buf, "alpha beta gamma delta");
    assert_true(o.first_output_ms >= 0 && o.first_output_ms + 250 < o.duration_ms);
    assert_int_equal(o.n_usage, 1);
    assert_int_equal(o.tin, 21);
    assert_int_equal(o.tout, 4);
    assert_float_equal(o.cost, (21 * 2.0 + 4 * 10.0) / 1e6, 1e-12);
    assert_string_equal(o.model, "claude-test");
    json_t *reqs = requests(f, "/v1/messages");
    assert_int_equal(json_array_size(reqs), 1);
    const json_t *r = json_array_get(reqs, 0);
    assert_string_equal(header(r, "x-api-key"), "sk-test");
    assert_string_equal(header(r, "anthropic-version"), "2023-06-01");
    const json_t *body = json_object_get(r, "body");
    assert_int_equal(bt_json_int(body, "max_tokens", 0), 4096);
    assert_string_equal(bt_json_str(body, "system", ""), "You are terse.");
    assert_string_equal(
        bt_json_str(json_array_get(json_object_get(body, "messages"), 0), "content", ""),
        "greek letters\n\nctx words here");
    json_decref(reqs);
    out_release(&o);
    bt_agent_free(a);
}

static void test_anthropic_errors(void **state)
{
    fx *f = *state;
    bt_agent *a = mk(f, BT_AGENT_ANTHROPIC, "", "claude-test");
    turn_out o;

    /* overloaded_error after the 200: transient, retried, the retry succeeds */
    fake_reset(f);
    script(f, "/v1/messages",
           "[{\"reply\":\"lost words here\",\"error_event\":\"overloaded_error\"},"
           "{\"reply\":\"second try\"}]");
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.output, "second try");
    assert_non_null(strstr(o.status.buf, "Overloaded (overloaded_error); retrying in "));
    out_release(&o);

    /* an error event of another type after the 200: permanent */
    fake_reset(f);
    script(f, "/v1/messages", "[{\"error_event\":\"invalid_request_error\"}]");
    run_turn(f, a, "go", 0, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_non_null(strstr(o.error, "invalid_request_error"));
    out_release(&o);

    /* 429 rate limit (Retry-After 0): retried */
    fake_reset(f);
    script(f, "/v1/messages", "[{\"status\":429,\"headers\":{\"retry-after\":\"0\"}}]");
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_non_null(strstr(o.status.buf, "HTTP 429 rate limited; retrying in 0.0 s"));
    out_release(&o);

    /* spend limit and bad key: permanent, one request each */
    static const char *const perm[] = {"[{\"quota\":true}]", "[{\"status\":401}]"};
    static const char *const words[] = {"enforced_spend_limit_reached", "authentication_error"};
    for (size_t i = 0; i < 2; i++) {
        fake_reset(f);
        script(f, "/v1/messages", perm[i]);
        run_turn(f, a, "go", 0, &o);
        assert_false(o.success);
        assert_int_equal(o.cls, BT_AGENT_PERMANENT);
        assert_non_null(strstr(o.error, words[i]));
        json_t *reqs = requests(f, "/v1/messages");
        assert_int_equal(json_array_size(reqs), 1);
        json_decref(reqs);
        out_release(&o);
    }

    /* garbage: a clear permanent error */
    fake_reset(f);
    script(f, "/v1/messages", "[{\"garbage\":true}]");
    run_turn(f, a, "go", 0, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_non_null(strstr(o.error, "message_start event is not JSON"));
    out_release(&o);

    /* the turn deadline */
    fake_reset(f);
    script(f, "/v1/messages", "[{\"hang\":true}]");
    run_turn(f, a, "go", 250, &o);
    assert_int_equal(o.cls, BT_AGENT_TIMEOUT);
    out_release(&o);
    bt_agent_free(a);
}

static void test_anthropic_tool_and_check(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/v1/messages",
           "[{\"tool_call\":{\"name\":\"Read\",\"arguments\":{\"file_path\":\"/a\"}}}]");
    bt_agent *a = mk(f, BT_AGENT_ANTHROPIC, "", "claude-test");
    turn_out o;
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.tools.buf, "Read {\"file_path\": \"/a\"}\n");
    out_release(&o);

    check_out c;
    run_check(f, a, &c);
    assert_true(c.available);
    assert_non_null(strstr(c.detail, "2 models; claude-test not listed"));
    json_t *reqs = requests(f, "/v1/models");
    assert_int_equal(json_array_size(reqs), 1);
    assert_string_equal(header(json_array_get(reqs, 0), "x-api-key"), "sk-test");
    json_decref(reqs);
    bt_agent_free(a);

    a = mk_agent(f, BT_AGENT_ANTHROPIC, "https://api.anthropic.com", "claude-x", NULL, 1);
    run_check(f, a, &c);
    assert_false(c.available);
    assert_string_equal(c.detail, "api key unset (set agents.t.api_key or ANTHROPIC_API_KEY)");
    bt_agent_free(a);
}

/* ---- ollama ---- */

static void test_ollama_stream(void **state)
{
    fx *f = *state;
    fake_reset(f);
    script(f, "/api/chat",
           "[{\"reply\":\"red green blue white\",\"usage\":{\"input\":9,\"output\":4},"
           "\"chunk_delay_ms\":80}]");
    bt_agent *a = mk(f, BT_AGENT_OLLAMA, "", "llama3.2:1b");
    assert_false(bt_agent_writes_workspace(a));
    turn_out o;
    run_turn(f, a, "colours", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.output, "red green blue white");
    assert_string_equal(o.streamed.buf, "red green blue white");
    assert_true(o.first_output_ms >= 0 && o.first_output_ms + 200 < o.duration_ms);
    assert_int_equal(o.n_usage, 1);
    assert_int_equal(o.tin, 9);
    assert_int_equal(o.tout, 4);
    assert_float_equal(o.cost, (9 * 2.0 + 4 * 10.0) / 1e6, 1e-12);
    assert_string_equal(o.model, "llama3.2:1b");
    json_t *reqs = requests(f, "/api/chat");
    const json_t *body = json_object_get(json_array_get(reqs, 0), "body");
    assert_string_equal(bt_json_str(body, "model", ""), "llama3.2:1b");
    assert_string_equal(
        bt_json_str(json_array_get(json_object_get(body, "messages"), 1), "content", ""),
        "colours\n\nctx words here");
    json_decref(reqs);
    out_release(&o);
    bt_agent_free(a);
}

static void test_ollama_errors(void **state)
{
    fx *f = *state;
    turn_out o;
    bt_agent *a = mk(f, BT_AGENT_OLLAMA, "/v1", "llama3.2:1b"); /* a /v1 base is tolerated */

    /* an error line after the 200: transient; the retry succeeds */
    fake_reset(f);
    script(f, "/api/chat",
           "[{\"reply\":\"some words\",\"error_event\":\"model runner has stopped\"},"
           "{\"reply\":\"ok now\"}]");
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    assert_string_equal(o.output, "ok now");
    assert_non_null(strstr(o.status.buf, "model runner has stopped; retrying in "));
    out_release(&o);

    /* 429 with Retry-After 0: retried */
    fake_reset(f);
    script(f, "/api/chat", "[{\"status\":429,\"headers\":{\"Retry-After\":\"0\"}}]");
    run_turn(f, a, "go", 0, &o);
    assert_true(o.success);
    out_release(&o);

    /* garbage */
    fake_reset(f);
    script(f, "/api/chat", "[{\"garbage\":true}]");
    run_turn(f, a, "go", 0, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_non_null(strstr(o.error, "a line is not JSON: this is not json"));
    out_release(&o);
    bt_agent_free(a);

    /* a model that is not pulled: permanent, with the fix */
    fake_reset(f);
    a = mk(f, BT_AGENT_OLLAMA, "", "nope:1b");
    run_turn(f, a, "go", 0, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_int_equal(o.http_status, 404);
    assert_non_null(strstr(o.error, "not found"));
    assert_non_null(strstr(o.error, "(run `baton models pull nope:1b`)"));
    json_t *reqs = requests(f, "/api/chat");
    assert_int_equal(json_array_size(reqs), 1);
    json_decref(reqs);
    out_release(&o);

    check_out c;
    run_check(f, a, &c);
    assert_false(c.available);
    assert_string_equal(c.detail,
                        "model nope:1b not pulled (run `baton models pull nope:1b`); 2 models "
                        "present");
    bt_agent_free(a);

    a = mk(f, BT_AGENT_OLLAMA, "", "qwen2.5-coder:7b");
    run_check(f, a, &c);
    assert_true(c.available);
    assert_string_equal(c.detail, "model qwen2.5-coder:7b present (2 models pulled)");
    bt_agent_free(a);

    a = mk_agent(f, BT_AGENT_OLLAMA, "http://127.0.0.1:1", "m", NULL, 1);
    run_check(f, a, &c);
    assert_false(c.available);
    assert_non_null(strstr(c.detail, "unreachable: "));
    bt_agent_free(a);
}

int main(void)
{
    const struct CMUnitTest parsers[] = {
        cmocka_unit_test(test_sse_chunking),    cmocka_unit_test(test_sse_limits_and_stop),
        cmocka_unit_test(test_ndjson_chunking), cmocka_unit_test(test_ndjson_limits_and_stop),
        cmocka_unit_test(test_helpers),
    };
    const struct CMUnitTest adapters[] = {
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_openai_default_usage),
        cmocka_unit_test(test_openai_retry_after),
        cmocka_unit_test(test_openai_permanent),
        cmocka_unit_test(test_openai_transient),
        cmocka_unit_test(test_openai_truncated_then_ok),
        cmocka_unit_test(test_openai_garbage),
        cmocka_unit_test(test_openai_tool_call),
        cmocka_unit_test(test_openai_timeout_and_cancel),
        cmocka_unit_test(test_openai_check),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_anthropic_errors),
        cmocka_unit_test(test_anthropic_tool_and_check),
        cmocka_unit_test(test_ollama_stream),
        cmocka_unit_test(test_ollama_errors),
    };
    int rc = cmocka_run_group_tests_name("parsers", parsers, NULL, NULL);
    rc += cmocka_run_group_tests_name("adapters", adapters, fx_setup, fx_teardown);
    return rc;
}
