/*
 * llm.c - the half of the HTTP LLM adapters that does not depend on the provider: the
 * SSE parser, the NDJSON splitter, the turn driver (attempts, retries with
 * Retry-After or jittered backoff, the turn deadline, stalls, cancel) and the
 * availability probe. See llm.h for the contract; the provider-specific parsing lives
 * in openai.c, anthropic.c and ollama.c.
 */
#include "agents/llm.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/time.h"
#include "http/client.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_ATTEMPTS 3
#define BACKOFF_BASE_MS  500   /* as the OpenAI and Anthropic SDKs: 0.5 s doubling to 8 s, */
#define BACKOFF_MAX_MS   8000  /* less up to a quarter of jitter */
#define MAX_WAIT_MS      60000 /* a longer Retry-After ends the turn (the caller reschedules) */
#define ERROR_BODY_MAX   ((size_t)1 << 20)
#define HEAD_MAX         256
#define PROBE_TIMEOUT_MS 5000

/* ---- SSE ---- */

void bt_llm_sse_init(bt_llm_sse *p, size_t max_line, bt_llm_sse_fn fn, void *ud)
{
    memset(p, 0, sizeof *p);
    bt_strbuf_init(&p->line, 0);
    bt_strbuf_init(&p->event, 0);
    bt_strbuf_init(&p->data, 0);
    p->max_line = max_line ? max_line : BT_LLM_MAX_LINE;
    p->fn = fn;
    p->ud = ud;
}

void bt_llm_sse_reset(bt_llm_sse *p)
{
    bt_strbuf_setlen(&p->line, 0);
    bt_strbuf_setlen(&p->event, 0);
    bt_strbuf_setlen(&p->data, 0);
    p->have_data = 0;
    p->skip_lf = 0;
    p->started = 0;
}

void bt_llm_sse_release(bt_llm_sse *p)
{
    bt_strbuf_release(&p->line);
    bt_strbuf_release(&p->event);
    bt_strbuf_release(&p->data);
}

/* One complete line (without its terminator). */
static int sse_line(bt_llm_sse *p, const char *line, size_t len)
{
    if (!p->started) {
        p->started = 1;
        if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            len -= 3;
        }
    }
    if (len == 0) {
        if (!p->have_data) {
            bt_strbuf_setlen(&p->event, 0);
            return 0;
        }
        if (p->data.len && p->data.buf[p->data.len - 1] == '\n')
            bt_strbuf_setlen(&p->data, p->data.len - 1);
        const char *ev = p->event.len ? bt_strbuf_cstr(&p->event) : "message";
        int rc = p->fn(ev, bt_strbuf_cstr(&p->data), p->data.len, p->ud);
        bt_strbuf_setlen(&p->event, 0);
        bt_strbuf_setlen(&p->data, 0);
        p->have_data = 0;
        return rc;
    }
    if (line[0] == ':')
        return 0; /* a comment or keep-alive */
    const char *colon = memchr(line, ':', len);
    size_t flen = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - flen - 1 : 0;
    if (vlen && *val == ' ') {
        val++;
        vlen--;
    }
    if (flen == 4 && memcmp(line, "data", 4) == 0) {
        if (p->data.len + vlen + 1 > p->max_line)
            return BT_ETOOBIG;
        bt_strbuf_add(&p->data, val, vlen);
        bt_strbuf_addch(&p->data, '\n');
        p->have_data = 1;
    } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
        bt_strbuf_setlen(&p->event, 0);
        bt_strbuf_add(&p->event, val, vlen);
    }
    return 0; /* id, retry and unknown fields are ignored */
}

int bt_llm_sse_feed(bt_llm_sse *p, const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (p->skip_lf) {
            p->skip_lf = 0;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r')
            j++;
        if (p->line.len + (j - i) > p->max_line)
            return BT_ETOOBIG;
        if (j == len) {
            bt_strbuf_add(&p->line, buf + i, j - i);
            break;
        }
        const char *ln = buf + i;
        size_t ll = j - i;
        if (p->line.len) {
            bt_strbuf_add(&p->line, buf + i, j - i);
            ln = p->line.buf;
            ll = p->line.len;
        }
        if (buf[j] == '\r')
            p->skip_lf = 1;
        i = j + 1;
        int rc = sse_line(p, ln, ll);
        bt_strbuf_setlen(&p->line, 0);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- NDJSON ---- */

void bt_llm_lines_init(bt_llm_lines *p, size_t max_line, bt_llm_line_fn fn, void *ud)
{
    memset(p, 0, sizeof *p);
    bt_strbuf_init(&p->buf, 0);
    p->max_line = max_line ? max_line : BT_LLM_MAX_LINE;
    p->fn = fn;
    p->ud = ud;
}

void bt_llm_lines_reset(bt_llm_lines *p)
{
    bt_strbuf_setlen(&p->buf, 0);
}

void bt_llm_lines_release(bt_llm_lines *p)
{
    bt_strbuf_release(&p->buf);
}

static int lines_deliver(bt_llm_lines *p)
{
    size_t n = p->buf.len;
    if (n && p->buf.buf[n - 1] == '\r')
        bt_strbuf_setlen(&p->buf, --n);
    int blank = 1;
    for (size_t i = 0; i < n && blank; i++)
        blank = isspace((unsigned char)p->buf.buf[i]) != 0;
    int rc = blank ? 0 : p->fn(bt_strbuf_cstr(&p->buf), n, p->ud);
    bt_strbuf_setlen(&p->buf, 0);
    return rc;
}

int bt_llm_lines_feed(bt_llm_lines *p, const char *buf, size_t len)
{
    while (len) {
        const char *nl = memchr(buf, '\n', len);
        size_t n = nl ? (size_t)(nl - buf) : len;
        if (p->buf.len + n > p->max_line)
            return BT_ETOOBIG;
        bt_strbuf_add(&p->buf, buf, n);
        if (!nl)
            break;
        buf += n + 1;
        len -= n + 1;
        int rc = lines_deliver(p);
        if (rc)
            return rc;
    }
    return 0;
}

int bt_llm_lines_finish(bt_llm_lines *p)
{
    return p->buf.len ? lines_deliver(p) : 0;
}

/* ---- helpers ---- */

void bt_llm_url(bt_strbuf *out, const char *base, const char *path)
{
    bt_strbuf_setlen(out, 0);
    size_t n = base ? strlen(base) : 0;
    while (n && base[n - 1] == '/')
        n--;
    bt_strbuf_add(out, base ? base : "", n);
    bt_strbuf_addstr(out, path);
}

int bt_llm_base_ends_with(const char *base, const char *suffix)
{
    if (!base)
        return 0;
    size_t n = strlen(base), m = strlen(suffix);
    while (n && base[n - 1] == '/')
        n--;
    return n >= m && strncasecmp(base + n - m, suffix, m) == 0;
}

int bt_llm_hosted(const char *url)
{
    if (!url)
        return 0;
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, ":/?#");
    static const char *const exact[] = {"api.openai.com", "api.anthropic.com", "x.ai"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (n == strlen(exact[i]) && strncasecmp(h, exact[i], n) == 0)
            return 1;
    return n > 5 && strncasecmp(h + n - 5, ".x.ai", 5) == 0;
}

void bt_llm_user_message(const bt_agent_run *run, bt_strbuf *out)
{
    bt_strbuf_setlen(out, 0);
    bt_strbuf_addstr(out, run->prompt);
    if (run->context && *run->context) {
        bt_strbuf_addstr(out, "\n\n");
        bt_strbuf_addstr(out, run->context);
    }
}

void bt_llm_snippet(bt_strbuf *out, const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bt_strbuf_addch(out, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
    }
    if (len > max)
        bt_strbuf_addstr(out, "...");
}

static const char *json_text(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

void bt_llm_error_message(const char *body, size_t len, bt_strbuf *out)
{
    if (!body || !len) {
        bt_strbuf_addstr(out, "(empty body)");
        return;
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    size_t before = out->len;
    if (json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        if (json_is_string(e) && *json_string_value(e)) {
            bt_strbuf_addstr(out, json_string_value(e));
        } else {
            const json_t *src = json_is_object(e) ? e : j;
            const char *msg = json_text(src, "message");
            if (!msg)
                msg = json_text(src, "detail");
            const char *type = json_text(src, "type");
            if (type && strcmp(type, "error") == 0)
                type = NULL;
            char code[64] = "";
            json_t *c = json_object_get(src, "code");
            if (json_is_string(c))
                snprintf(code, sizeof code, "%s", json_string_value(c));
            const char *detail = json_text(json_object_get(src, "details"), "error_code");
            if (msg) {
                bt_strbuf_addstr(out, msg);
                int paren = 0;
                const char *parts[] = {type, code[0] ? code : NULL, detail};
                for (size_t i = 0; i < 3; i++) {
                    if (!parts[i] || (i == 1 && type && strcmp(type, code) == 0))
                        continue;
                    bt_strbuf_addstr(out, paren ? ", " : " (");
                    bt_strbuf_addstr(out, parts[i]);
                    paren = 1;
                }
                if (paren)
                    bt_strbuf_addch(out, ')');
            }
        }
    }
    json_decref(j);
    if (out->len == before)
        bt_llm_snippet(out, body, len, 200);
}

/* ---- the turn driver ---- */

struct bt_llm_turn {
    bt_agent_run *run;
    char *url, *bearer, *body;
    size_t body_len;
    char **headers; /* NULL-terminated */
    int max_attempts, attempt;
    const bt_llm_stream_ops *ops;
    void *ud;

    bt_http_call *call;
    uv_timer_t deadline, retry;
    int open_handles;
    int ending;
    uint64_t rng;

    /* this attempt */
    int complete, afailed, emitted;
    bt_agent_error_class aclass;
    bt_strbuf amsg;
    bt_strbuf head;
    int64_t tin, tout;
    int have_usage;
};

bt_agent_run *bt_llm_turn_run(const bt_llm_turn *t)
{
    return t->run;
}

const char *bt_llm_turn_url(const bt_llm_turn *t)
{
    return t->url;
}

const char *bt_llm_turn_head(const bt_llm_turn *t)
{
    return bt_strbuf_cstr(&t->head);
}

int bt_llm_turn_failed(const bt_llm_turn *t)
{
    return t->afailed;
}

int bt_llm_turn_completed(const bt_llm_turn *t)
{
    return t->complete;
}

void bt_llm_turn_text(bt_llm_turn *t, const char *text, size_t len)
{
    if (!len)
        return;
    t->emitted = 1;
    bt_agent_run_output(t->run, text, len);
}

void bt_llm_turn_usage(bt_llm_turn *t, int64_t tokens_in, int64_t tokens_out)
{
    if (tokens_in >= 0)
        t->tin = tokens_in;
    if (tokens_out >= 0)
        t->tout = tokens_out;
    t->have_usage = 1;
}

void bt_llm_turn_complete(bt_llm_turn *t)
{
    if (!t->afailed)
        t->complete = 1;
}

void bt_llm_turn_fail(bt_llm_turn *t, bt_agent_error_class cls, const char *fmt, ...)
{
    if (t->afailed || t->complete)
        return;
    t->afailed = 1;
    t->aclass = cls == BT_AGENT_OK ? BT_AGENT_PERMANENT : cls;
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf_vaddf(&t->amsg, fmt, ap);
    va_end(ap);
}

static void turn_free(bt_llm_turn *t)
{
    for (size_t i = 0; t->headers && t->headers[i]; i++)
        free(t->headers[i]);
    free(t->headers);
    free(t->url);
    free(t->bearer);
    free(t->body);
    bt_strbuf_release(&t->amsg);
    bt_strbuf_release(&t->head);
    free(t);
}

static void turn_closed(uv_handle_t *h)
{
    bt_llm_turn *t = h->data;
    if (--t->open_handles > 0)
        return;
    bt_agent_run *run = t->run;
    if (t->ops->free)
        t->ops->free(t->ud);
    turn_free(t);
    run->impl = NULL;
    bt_agent_run_finish(run);
}

/* Release everything and finish the run (on_done runs from the close callbacks). */
static void turn_end(bt_llm_turn *t)
{
    if (t->ending)
        return;
    t->ending = 1;
    if (t->have_usage)
        bt_agent_run_usage(t->run, t->tin, t->tout);
    uv_timer_stop(&t->deadline);
    uv_timer_stop(&t->retry);
    uv_close((uv_handle_t *)&t->deadline, turn_closed);
    uv_close((uv_handle_t *)&t->retry, turn_closed);
}

static uint64_t turn_random(bt_llm_turn *t)
{
    /* xorshift64: jitter needs no quality, only spread between clients */
    uint64_t x = t->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->rng = x;
    return x;
}

static const char *status_words(long status)
{
    switch (status) {
    case 408:
        return "request timeout";
    case 425:
        return "too early";
    case 429:
        return "rate limited";
    case 502:
        return "bad gateway";
    case 503:
        return "unavailable";
    case 504:
        return "gateway timeout";
    case 529:
        return "overloaded";
    default:
        return status >= 500 ? "server error" : "error";
    }
}

static void on_http_done(bt_http_call *call, const bt_http_response *r, void *ud);
static int on_http_data(bt_http_call *call, long status, const char *data, size_t len, void *ud);

static int send_attempt(bt_llm_turn *t, bt_error *err)
{
    t->attempt++;
    t->complete = t->afailed = 0;
    t->aclass = BT_AGENT_OK;
    bt_strbuf_setlen(&t->amsg, 0);
    bt_strbuf_setlen(&t->head, 0);
    t->tin = t->tout = 0;
    t->have_usage = 0;
    if (t->emitted) {
        bt_agent_run_output_set(t->run, "", 0);
        t->emitted = 0;
    }
    t->ops->reset(t, t->ud);
    bt_http_request rq = {
        .method = "POST",
        .url = t->url,
        .headers = (const char *const *)t->headers,
        .bearer_token = t->bearer,
        .body = t->body,
        .body_len = t->body_len,
        .timeout_ms = -1, /* the turn's own deadline timer bounds it */
        .idle_timeout_ms = t->run->stall_timeout_ms,
        .max_body = ERROR_BODY_MAX,
        .on_done = on_http_done,
        .on_data = on_http_data,
        .ud = t,
    };
    return bt_http_client_send(t->run->agent->env.http, &rq, &t->call, err);
}

static int on_http_data(bt_http_call *call, long status, const char *data, size_t len, void *ud)
{
    (void)call;
    (void)status;
    bt_llm_turn *t = ud;
    if (t->run->failed || t->afailed)
        return 1;
    if (t->head.len < HEAD_MAX)
        bt_strbuf_add(&t->head, data, len < HEAD_MAX - t->head.len ? len : HEAD_MAX - t->head.len);
    if (t->complete)
        return 0; /* trailing bytes after the terminal marker */
    if (t->ops->data(t, data, len, t->ud) != 0 && !t->afailed)
        bt_llm_turn_fail(t, BT_AGENT_PERMANENT, "the stream from %s could not be read", t->url);
    return t->afailed;
}

static void retry_fire(uv_timer_t *timer)
{
    bt_llm_turn *t = timer->data;
    bt_error err = BT_ERROR_INIT;
    if (send_attempt(t, &err) < 0) {
        t->call = NULL;
        bt_agent_run_fail(t->run, bt_agent_http_class(err.code, 0, NULL), "%s", err.msg);
        turn_end(t);
    }
}

static void deadline_fire(uv_timer_t *timer)
{
    bt_llm_turn *t = timer->data;
    char d[32];
    bt_agent_run_fail(t->run, BT_AGENT_TIMEOUT, "timed out after %s (the turn limit)",
                      bt_duration_format(t->run->timeout_ms, d));
    if (t->call)
        bt_http_call_cancel(t->call); /* on_http_done ends the turn */
    else
        turn_end(t);
}

static void on_http_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    bt_llm_turn *t = ud;
    bt_agent_run *run = t->run;
    t->call = NULL;
    if (r->status)
        run->http_status = r->status;
    if (run->failed) { /* cancelled or timed out while the call ran */
        turn_end(t);
        return;
    }
    int ok2xx = r->status >= 200 && r->status < 300;
    if (ok2xx && !t->complete && !t->afailed && r->rc == 0 && t->ops->end)
        t->ops->end(t, t->ud);
    if (t->ending) /* an event receiver cancelled the run from inside end */
        return;
    if (t->complete) {
        turn_end(t);
        return;
    }

    bt_agent_error_class cls;
    bt_strbuf msg = BT_STRBUF_INIT, reason = BT_STRBUF_INIT;
    int64_t retry_after = -1;
    if (t->afailed) {
        cls = t->aclass;
        bt_strbuf_addstr(&msg, bt_strbuf_cstr(&t->amsg));
        bt_strbuf_addstr(&reason, bt_strbuf_cstr(&t->amsg));
    } else if (r->rc < 0) {
        cls = bt_agent_http_class(r->rc, 0, NULL);
        /* the idle limit, not the (shorter) connect limit, which is transient */
        if (r->rc == BT_ETIMEOUT && run->stall_timeout_ms > 0 &&
            r->elapsed_ms >= run->stall_timeout_ms) {
            char d[32];
            cls = BT_AGENT_TIMEOUT;
            bt_strbuf_addf(&msg, "stalled: nothing from the model for %s (%s)",
                           bt_duration_format(run->stall_timeout_ms, d), r->error);
        } else {
            bt_strbuf_addstr(&msg, r->error);
        }
        bt_strbuf_addstr(&reason, r->rc == BT_EUNAVAIL ? "cannot connect" : "request failed");
    } else if (ok2xx) {
        cls = BT_AGENT_TRANSIENT;
        bt_strbuf_addf(&msg, "the stream from %s ended early (no end-of-stream marker)", t->url);
        bt_strbuf_addstr(&reason, "stream ended early");
    } else {
        cls = bt_agent_http_class(0, r->status, r->body);
        bt_strbuf_addf(&msg, "HTTP %ld from %s: ", r->status, t->url);
        bt_llm_error_message(r->body, r->body_len, &msg);
        if (t->ops->http_error)
            t->ops->http_error(t, r->status, r->body, &cls, &msg, t->ud);
        bt_strbuf_addf(&reason, "HTTP %ld %s", r->status, status_words(r->status));
        retry_after = r->retry_after_ms;
    }

    int64_t delay = -1;
    if (cls == BT_AGENT_TRANSIENT && t->attempt < t->max_attempts) {
        if (retry_after >= 0) {
            delay = retry_after;
        } else {
            int64_t d = (int64_t)BACKOFF_BASE_MS << (t->attempt - 1);
            if (d > BACKOFF_MAX_MS)
                d = BACKOFF_MAX_MS;
            delay = d - (int64_t)(turn_random(t) % (uint64_t)(d / 4 + 1));
        }
        int64_t left = run->timeout_ms - bt_agent_run_elapsed_ms(run);
        if (delay > MAX_WAIT_MS || delay >= left)
            delay = -1;
    }
    if (delay >= 0) {
        /* arm the timer first: the status event's receiver may cancel the run */
        uv_timer_start(&t->retry, retry_fire, (uint64_t)delay, 0);
        bt_strbuf note = BT_STRBUF_INIT;
        bt_strbuf_addf(&note, "%s; retrying in %.1f s (attempt %d of %d)", reason.buf,
                       (double)delay / 1000.0, t->attempt + 1, t->max_attempts);
        bt_agent_run_emit(run, BT_AGENT_EV_STATUS, note.buf, note.len);
        bt_strbuf_release(&note);
    } else {
        if (t->attempt > 1)
            bt_strbuf_addf(&msg, " (after %d attempts)", t->attempt);
        run->retry_after_ms = retry_after;
        bt_agent_run_fail(run, cls, "%s", bt_strbuf_cstr(&msg));
        turn_end(t);
    }
    bt_strbuf_release(&msg);
    bt_strbuf_release(&reason);
}

int bt_llm_turn_start(bt_agent_run *run, const bt_llm_turn_request *rq, bt_error *err)
{
    bt_agent *a = run->agent;
    if (!a->env.http)
        return bt_errorf(err, BT_EUNAVAIL, "agent '%s': no HTTP client", a->cfg.name);
    bt_llm_turn *t = bt_xcalloc(1, sizeof *t);
    t->run = run;
    t->url = bt_xstrdup(rq->url);
    t->bearer = rq->bearer_token ? bt_xstrdup(rq->bearer_token) : NULL;
    t->body = bt_xstrndup(rq->body ? rq->body : "", rq->body ? rq->body_len : 0);
    t->body_len = rq->body ? rq->body_len : 0;
    size_t n = 0;
    while (rq->headers && rq->headers[n])
        n++;
    t->headers = bt_xcalloc(n + 1, sizeof *t->headers);
    for (size_t i = 0; i < n; i++)
        t->headers[i] = bt_xstrdup(rq->headers[i]);
    t->max_attempts = rq->max_attempts > 0 ? rq->max_attempts : DEFAULT_ATTEMPTS;
    t->ops = rq->ops;
    t->ud = rq->ud;
    bt_strbuf_init(&t->amsg, 0);
    bt_strbuf_init(&t->head, 0);
    t->rng = (uint64_t)bt_time_mono_ns() ^ ((uint64_t)(uintptr_t)t << 16) ^ 0x9E3779B97F4A7C15ull;
    if (!t->rng)
        t->rng = 1;
    int rc = send_attempt(t, err);
    if (rc < 0) {
        turn_free(t);
        return rc;
    }
    uv_timer_init(a->env.loop, &t->deadline);
    uv_timer_init(a->env.loop, &t->retry);
    t->deadline.data = t->retry.data = t;
    t->open_handles = 2;
    uv_timer_start(&t->deadline, deadline_fire, (uint64_t)run->timeout_ms, 0);
    run->impl = t;
    return 0;
}

void bt_llm_turn_cancel(bt_agent_run *run)
{
    bt_llm_turn *t = run->impl;
    if (!t || t->ending)
        return;
    bt_agent_run_fail(run, BT_AGENT_CANCELLED, "cancelled");
    if (t->call)
        bt_http_call_cancel(t->call);
    else
        turn_end(t);
}

/* ---- availability probe ---- */

typedef struct probe {
    bt_agent *agent;
    char *url;
    bt_llm_probe_fn judge;
    bt_agent_check_fn cb;
    void *ud;
} probe;

static void probe_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    probe *p = ud;
    bt_strbuf detail = BT_STRBUF_INIT;
    int ok = 0;
    if (r->rc < 0) {
        bt_strbuf_addf(&detail, "unreachable: %s", r->error);
    } else if (r->status < 200 || r->status >= 300) {
        bt_strbuf_addf(&detail, "HTTP %ld from %s: ", r->status, p->url);
        bt_llm_error_message(r->body, r->body_len, &detail);
    } else {
        ok = p->judge(p->agent, r->body, r->body_len, &detail);
    }
    p->cb(p->agent, ok, bt_strbuf_cstr(&detail), p->ud);
    bt_strbuf_release(&detail);
    free(p->url);
    free(p);
}

void bt_llm_probe(bt_agent *a, const char *url, const char *const *headers, const char *bearer,
                  bt_llm_probe_fn judge, bt_agent_check_fn cb, void *ud)
{
    if (!a->env.http) {
        bt_agent_check_later(a, 0, "no HTTP client", cb, ud);
        return;
    }
    probe *p = bt_xcalloc(1, sizeof *p);
    p->agent = a;
    p->url = bt_xstrdup(url);
    p->judge = judge;
    p->cb = cb;
    p->ud = ud;
    bt_http_request rq = {.method = "GET",
                          .url = url,
                          .headers = headers,
                          .bearer_token = bearer,
                          .timeout_ms = PROBE_TIMEOUT_MS,
                          .connect_timeout_ms = PROBE_TIMEOUT_MS,
                          .on_done = probe_done,
                          .ud = p};
    bt_error err = BT_ERROR_INIT;
    if (bt_http_client_send(a->env.http, &rq, NULL, &err) < 0) {
        char msg[BT_ERROR_MSG_MAX + 16];
        snprintf(msg, sizeof msg, "unreachable: %s", err.msg);
        free(p->url);
        free(p);
        bt_agent_check_later(a, 0, msg, cb, ud);
    }
}

int bt_llm_feed_result(bt_llm_turn *t, int rc, const char *what)
{
    if (rc == BT_ETOOBIG)
        bt_llm_turn_fail(t, BT_AGENT_PERMANENT, "%s from %s is longer than %zu bytes", what,
                         bt_llm_turn_url(t), (size_t)BT_LLM_MAX_LINE);
    return rc != 0;
}

void bt_llm_require_events(bt_llm_turn *t, int saw_event, const char *hint)
{
    if (saw_event)
        return;
    bt_strbuf s = BT_STRBUF_INIT;
    const char *head = bt_llm_turn_head(t);
    bt_llm_snippet(&s, head, strlen(head), 120);
    bt_llm_turn_fail(t, BT_AGENT_PERMANENT, "the answer from %s is not an event stream (%s): %s",
                     bt_llm_turn_url(t), hint, s.len ? s.buf : "(empty body)");
    bt_strbuf_release(&s);
}

int bt_llm_require_model(const bt_agent *a, const char *type, bt_error *err)
{
    if (!a->cfg.model || !*a->cfg.model)
        return bt_errorf(err, BT_EINVAL, "agent '%s' (type %s) needs a model", a->cfg.name, type);
    return 0;
}
