/*
 * worker.c - `baton worker`, seed 002's worker client (see worker.h for the contract
 * and docs/workers.md for the protocol).
 *
 * One libuv loop drives everything: the HTTP client (src/http/client.h) for the
 * protocol calls, one timer for polls (and report retries), one for heartbeats, the
 * agent process with its three pipes, and the termination signals. The worker is in
 * one of three phases:
 *
 *   IDLE    waiting for the poll timer, or a GET /work/next is in flight;
 *   RUNNING an item's agent process is alive (heartbeats every lease/3);
 *   REPORT  the agent is done and its handles are closed; POST /work/complete or
 *           /work/failed is in flight (retried with backoff while the server is down).
 *
 * Connectivity is tracked separately (up / down / rejected) so a state change is
 * logged once, not every retry. Retry delays: 500 ms doubling up to backoff_max, with
 * jitter (a random point in the upper half), so a fleet does not reconnect in step.
 */
#include "app/worker.h"

#include "base/mem.h"
#include "base/path.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "http/client.h"
#include "obs/log.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define DEFAULT_POLL_MS     30000
#define DEFAULT_BACKOFF_MAX 60000
#define DEFAULT_KILL_GRACE  5000
#define BACKOFF_BASE_MS     500
#define DEFAULT_LEASE_MS    60000 /* when /work/next does not say */
#define MIN_HEARTBEAT_MS    250
#define REQUEST_TIMEOUT_MS  30000
#define TAIL_MAX            16384 /* bytes of stdout / stderr kept per item */
#define TAIL_LINES          20
#define EXIT_PIPE_GRACE_MS  2000 /* after the agent exits, wait this long for its pipes */

typedef enum net_state { NET_UP, NET_DOWN, NET_REJECTED } net_state;
typedef enum phase { PH_IDLE, PH_RUNNING, PH_REPORT } phase;

typedef struct worker worker;

typedef struct item {
    worker *w;
    json_t *task_id;      /* as /work/next sent it (string) */
    json_t *issue_number; /* integer or null */
    json_t *lease_token;  /* integer or NULL when the server sent none */
    char *title, *body, *branch, *repository, *workspace;
    int64_t lease_ms;
    int64_t started_ms;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t kill_timer;
    uv_write_t wreq;
    int proc_init; /* uv_spawn was called: the process handle must be closed */
    int spawned, exited, out_eof, err_eof, closing, open_handles;
    int64_t exit_status;
    int term_signal;
    int lost;      /* heartbeat said 409: drop without a report */
    int abandoned; /* killed because the worker is stopping */
    int killed;    /* SIGTERM sent to the group */
    char *spawn_error;
    bt_strbuf out_tail, err_tail;
    char readbuf[65536];
} item;

struct worker {
    bt_worker_options o;
    uv_loop_t loop;
    bt_http_client *http;
    uv_timer_t poll_timer, hb_timer;
    uv_signal_t sigterm, sigint;
    char *base; /* server URL without a trailing '/' */
    bt_http_call *poll_call, *hb_call, *report_call;
    item *cur;
    phase ph;
    net_state net;
    int64_t down_since_ms;
    int retries;
    uint64_t rng;
    int stopping, signals, shut;
    json_t *report; /* body of the report being (re)sent */
    const char *report_path;
    bt_worker_stats stats;
};

/* ---- small helpers ---- */

static uint64_t next_rand(worker *w)
{
    /* xorshift64*: jitter only, not security. */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 2685821657736338717ULL;
}

static int64_t backoff_delay(worker *w)
{
    int64_t d = BACKOFF_BASE_MS;
    for (int i = 0; i < w->retries && d < w->o.backoff_max_ms; i++)
        d *= 2;
    if (d > w->o.backoff_max_ms)
        d = w->o.backoff_max_ms;
    w->retries++;
    int64_t half = d / 2;
    return half + (int64_t)(next_rand(w) % (uint64_t)(half + 1));
}

/* The orchestrator's API is rate-limited per token (server.rate_limit): a 429 is "try
 * again later", like a 5xx, after at least its Retry-After. */
static int try_later(const bt_http_response *r)
{
    return r->rc < 0 || r->status >= 500 || r->status == 429;
}

static int64_t later_delay(worker *w, const bt_http_response *r)
{
    int64_t d = backoff_delay(w);
    return r->status == 429 && r->retry_after_ms > d ? r->retry_after_ms : d;
}

static void url_escape(bt_strbuf *sb, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            bt_strbuf_addch(sb, (char)c);
        } else {
            bt_strbuf_addch(sb, '%');
            bt_strbuf_addch(sb, hex[c >> 4]);
            bt_strbuf_addch(sb, hex[c & 15]);
        }
    }
}

static void tail_add(bt_strbuf *sb, const char *data, size_t n)
{
    bt_strbuf_add(sb, data, n);
    if (sb->len > 2 * TAIL_MAX) {
        memmove(sb->buf, sb->buf + sb->len - TAIL_MAX, TAIL_MAX);
        bt_strbuf_setlen(sb, TAIL_MAX);
    }
}

/* The last `lines` lines of s (borrowed pointer into s), trailing newlines ignored. */
static const char *last_lines(const bt_strbuf *sb, int lines, size_t *len)
{
    const char *s = bt_strbuf_cstr(sb);
    size_t n = sb->len;
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    size_t i = n;
    int seen = 0;
    while (i > 0) {
        if (s[i - 1] == '\n' && ++seen == lines)
            break;
        i--;
    }
    if (n - i > 4000)
        i = n - 4000;
    *len = n - i;
    return s + i;
}

/* The last pull/merge-request URL the agent printed, or NULL (malloc'd). */
static char *find_pr_url(const bt_strbuf *sb)
{
    const char *s = bt_strbuf_cstr(sb), *best = NULL;
    size_t best_len = 0;
    for (const char *p = s; (p = strstr(p, "http")) != NULL; p++) {
        if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)
            continue;
        size_t n = strcspn(p, " \t\r\n\"'<>()[]");
        const char *u = p;
        while (n > 0 && strchr(".,;:", u[n - 1]))
            n--;
        char tmp[2048];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(n < sizeof tmp ? n : sizeof tmp - 1), u);
        if (strstr(tmp, "/pull/") || strstr(tmp, "/merge_requests/") ||
            strstr(tmp, "/pullrequest/")) {
            best = u;
            best_len = n;
        }
    }
    return best ? bt_xstrndup(best, best_len) : NULL;
}

static const char *json_str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* ---- forward declarations ---- */

static void schedule_poll(worker *w, int64_t delay_ms);
static void send_report(worker *w);
static void maybe_shutdown(worker *w);
static void item_free(item *it);

/* ---- connectivity ---- */

/* A call failed in a way that says the server is not there (transport error, 5xx). */
static void net_down(worker *w, const bt_http_response *r, const char *what)
{
    if (w->net != NET_DOWN) {
        char msg[512];
        if (r->rc < 0)
            snprintf(msg, sizeof msg, "%s", r->error);
        else
            snprintf(msg, sizeof msg, "HTTP %ld", r->status);
        bt_log_warn(w->o.log, "orchestrator unreachable; retrying with backoff",
                    BT_LF_STR("server", w->base), BT_LF_STR("call", what), BT_LF_STR("error", msg));
        w->net = NET_DOWN;
        w->down_since_ms = bt_time_mono_ms();
    }
}

static void net_rejected(worker *w, const bt_http_response *r)
{
    if (w->net != NET_REJECTED) {
        bt_log_error(w->o.log,
                     "orchestrator rejected the worker's credentials; set worker.token (or "
                     "--token) to a token with the worker scope",
                     BT_LF_STR("server", w->base), BT_LF_INT("status", r->status));
        w->net = NET_REJECTED;
        w->down_since_ms = bt_time_mono_ms();
    }
}

static void net_up(worker *w)
{
    if (w->net != NET_UP)
        bt_log_info(w->o.log, "orchestrator reachable again", BT_LF_STR("server", w->base),
                    BT_LF_INT("down_ms", bt_time_mono_ms() - w->down_since_ms));
    w->net = NET_UP;
    w->retries = 0;
}

/* ---- HTTP ---- */

static int post_json(worker *w, const char *path, json_t *body, bt_http_done_fn cb,
                     bt_http_call **call)
{
    char url[2048];
    snprintf(url, sizeof url, "%s%s", w->base, path);
    char *s = json_dumps(body, JSON_COMPACT);
    bt_http_request rq = {.method = "POST",
                          .url = url,
                          .bearer_token = w->o.token,
                          .body = s,
                          .body_len = strlen(s),
                          .timeout_ms = REQUEST_TIMEOUT_MS,
                          .on_done = cb,
                          .ud = w};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_http_client_send(w->http, &rq, call, &err);
    free(s);
    if (rc < 0)
        bt_log_error(w->o.log, "cannot send request", BT_LF_STR("path", path),
                     BT_LF_STR("error", err.msg));
    return rc;
}

/* ---- the agent process ---- */

static void item_closed(item *it);

static void on_item_handle_closed(uv_handle_t *h)
{
    item *it = h->data;
    if (--it->open_handles == 0 && it->closing)
        item_closed(it);
}

static void close_item_handle(item *it, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    it->open_handles++;
    uv_close(h, on_item_handle_closed);
}

static void on_kill_timer(uv_timer_t *t);

static void kill_group(item *it, int sig)
{
    if (it->spawned && it->proc.pid > 0)
        kill(-it->proc.pid, sig);
}

static void item_close_handles(item *it);

static void item_maybe_done(item *it)
{
    if (it->closing || !it->exited || !it->out_eof || !it->err_eof)
        return;
    item_close_handles(it);
}

static void stop_kill(item *it)
{
    /* The agent is gone; reap anything it left in its group. */
    kill_group(it, SIGKILL);
}

static void on_kill_timer(uv_timer_t *t)
{
    item *it = t->data;
    if (!it->exited) {
        bt_log_warn(it->w->o.log, "agent ignored SIGTERM; sending SIGKILL",
                    BT_LF_INT("pid", it->proc.pid));
        kill_group(it, SIGKILL);
        return;
    }
    /* Exited, but something in its group still holds the pipes. */
    stop_kill(it);
    if (!it->out_eof) {
        uv_read_stop((uv_stream_t *)&it->out);
        it->out_eof = 1;
    }
    if (!it->err_eof) {
        uv_read_stop((uv_stream_t *)&it->err);
        it->err_eof = 1;
    }
    item_maybe_done(it);
}

static void item_kill(item *it, const char *why)
{
    if (it->killed || it->exited || !it->spawned)
        return;
    it->killed = 1;
    bt_log_info(it->w->o.log, "stopping the agent", BT_LF_STR("reason", why),
                BT_LF_INT("pid", it->proc.pid));
    kill_group(it, SIGTERM);
    uv_timer_start(&it->kill_timer, on_kill_timer, (uint64_t)it->w->o.kill_grace_ms, 0);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    item *it = p->data;
    it->exited = 1;
    it->exit_status = status;
    it->term_signal = sig;
    /* Background processes the agent left in its group would keep the pipes open. */
    kill_group(it, SIGTERM);
    if (!it->out_eof || !it->err_eof)
        uv_timer_start(&it->kill_timer, on_kill_timer, EXIT_PIPE_GRACE_MS, 0);
    item_maybe_done(it);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    item *it = h->data;
    buf->base = it->readbuf;
    buf->len = sizeof it->readbuf;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    item *it = s->data;
    int is_out = s == (uv_stream_t *)&it->out;
    if (n > 0) {
        tail_add(is_out ? &it->out_tail : &it->err_tail, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        if (is_out)
            it->out_eof = 1;
        else
            it->err_eof = 1;
        item_maybe_done(it);
    }
}

static void on_stdin_written(uv_write_t *req, int status)
{
    (void)status; /* EPIPE when the agent does not read stdin: fine */
    item *it = req->data;
    close_item_handle(it, (uv_handle_t *)&it->in);
}

/* ---- reporting ---- */

static void item_finish(worker *w);

static json_t *report_body(worker *w, item *it, int success, const char *error)
{
    json_t *b = json_object();
    json_object_set_new(b, "worker_id", json_string(w->o.id));
    json_object_set(b, "issue_number", it->issue_number);
    json_object_set(b, "task_id", it->task_id);
    if (it->lease_token)
        json_object_set(b, "lease_token", it->lease_token);
    if (success) {
        char *pr = find_pr_url(&it->out_tail);
        json_object_set_new(b, "pr_url", pr ? json_string(pr) : json_null());
        free(pr);
        json_object_set_new(b, "success", json_true());
        size_t n = 0;
        const char *tail = last_lines(&it->out_tail, TAIL_LINES, &n);
        json_t *res = json_object();
        json_object_set_new(res, "exit_code", json_integer(it->exit_status));
        json_object_set_new(res, "duration_ms", json_integer(bt_time_mono_ms() - it->started_ms));
        json_object_set_new(res, "output", json_stringn_nocheck(tail, n));
        json_object_set_new(b, "result", res);
    } else {
        json_object_set_new(b, "error", json_string(error));
        json_object_set_new(b, "retryable", json_true());
    }
    return b;
}

static void on_report_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    worker *w = ud;
    w->report_call = NULL;
    item *it = w->cur;
    if (r->rc == BT_ECANCELED || !it)
        return;
    int complete = strcmp(w->report_path, "/work/complete") == 0;
    if (try_later(r)) {
        net_down(w, r, w->report_path);
        if (w->stopping) {
            bt_log_warn(w->o.log, "shutting down without a report; the lease will expire",
                        BT_LF_STR("task", json_str(w->report, "task_id")));
            item_finish(w);
            return;
        }
        int64_t d = later_delay(w, r);
        bt_log_debug(w->o.log, "report failed; retrying", BT_LF_STR("error", r->error),
                     BT_LF_INT("retry_in_ms", d));
        schedule_poll(w, d); /* the poll timer re-sends the report in the REPORT phase */
        return;
    }
    if (r->status == 401 || r->status == 403) {
        net_rejected(w, r);
        if (!w->stopping) {
            schedule_poll(w, w->o.poll_interval_ms);
            return;
        }
    } else {
        net_up(w);
    }
    if (r->status >= 200 && r->status < 300) {
        if (complete)
            w->stats.completed++;
        else
            w->stats.failed++;
        bt_log_info(w->o.log, complete ? "item completed" : "item reported failed",
                    BT_LF_STR("task", json_str(w->report, "task_id")),
                    BT_LF_INT("status", r->status));
    } else if (r->status == 409) {
        w->stats.dropped++;
        bt_log_warn(w->o.log, "report refused: this worker no longer holds the item",
                    BT_LF_STR("task", json_str(w->report, "task_id")),
                    BT_LF_STR("response", r->body));
    } else {
        bt_log_error(w->o.log, "report rejected", BT_LF_STR("path", w->report_path),
                     BT_LF_INT("status", r->status), BT_LF_STR("response", r->body));
    }
    item_finish(w);
}

static void send_report(worker *w)
{
    if (post_json(w, w->report_path, w->report, on_report_done, &w->report_call) < 0)
        item_finish(w);
}

/* All the item's handles are closed: report (or drop) it. */
static void item_closed(item *it)
{
    worker *w = it->w;
    uv_timer_stop(&w->hb_timer);
    if (w->hb_call)
        bt_http_call_cancel(w->hb_call);
    if (it->lost) {
        w->stats.dropped++;
        bt_log_warn(w->o.log, "item dropped without a report: the lease was lost",
                    BT_LF_STR("task", json_string_value(it->task_id)));
        item_finish(w);
        return;
    }
    int success =
        !it->spawn_error && !it->abandoned && it->exit_status == 0 && it->term_signal == 0;
    bt_strbuf e = BT_STRBUF_INIT;
    if (!success) {
        if (it->spawn_error)
            bt_strbuf_addf(&e, "cannot start the agent command: %s", it->spawn_error);
        else if (it->abandoned)
            bt_strbuf_addf(&e, "worker %s shutting down: the agent command was stopped", w->o.id);
        else if (it->term_signal)
            bt_strbuf_addf(&e, "agent command killed by signal %d", it->term_signal);
        else
            bt_strbuf_addf(&e, "agent command exited with status %lld", (long long)it->exit_status);
        size_t n = 0;
        const char *tail =
            last_lines(it->err_tail.len ? &it->err_tail : &it->out_tail, TAIL_LINES, &n);
        if (n)
            bt_strbuf_addf(&e, ": %.*s", (int)n, tail);
    }
    if (it->spawn_error)
        bt_log_error(w->o.log, "cannot start the agent command",
                     BT_LF_STR("task", json_string_value(it->task_id)),
                     BT_LF_STR("error", it->spawn_error));
    else
        bt_log_info(w->o.log, "agent finished", BT_LF_STR("task", json_string_value(it->task_id)),
                    BT_LF_INT("exit_code", it->exit_status), BT_LF_INT("signal", it->term_signal),
                    BT_LF_INT("duration_ms", bt_time_mono_ms() - it->started_ms));
    json_decref(w->report);
    w->report = report_body(w, it, success, bt_strbuf_cstr(&e));
    w->report_path = success ? "/work/complete" : "/work/failed";
    bt_strbuf_release(&e);
    w->ph = PH_REPORT;
    send_report(w);
}

static void item_close_handles(item *it)
{
    it->closing = 1;
    uv_timer_stop(&it->kill_timer);
    stop_kill(it);
    if (it->proc_init)
        close_item_handle(it, (uv_handle_t *)&it->proc);
    close_item_handle(it, (uv_handle_t *)&it->in);
    close_item_handle(it, (uv_handle_t *)&it->out);
    close_item_handle(it, (uv_handle_t *)&it->err);
    close_item_handle(it, (uv_handle_t *)&it->kill_timer);
    if (it->open_handles == 0)
        item_closed(it);
}

static void item_free(item *it)
{
    if (!it)
        return;
    json_decref(it->task_id);
    json_decref(it->issue_number);
    json_decref(it->lease_token);
    free(it->title);
    free(it->body);
    free(it->branch);
    free(it->repository);
    free(it->workspace);
    free(it->spawn_error);
    bt_strbuf_release(&it->out_tail);
    bt_strbuf_release(&it->err_tail);
    free(it);
}

/* The item is over (reported, refused or dropped): back to polling, or stop. */
static void item_finish(worker *w)
{
    item_free(w->cur);
    w->cur = NULL;
    json_decref(w->report);
    w->report = NULL;
    w->ph = PH_IDLE;
    if (w->stopping || w->o.once) {
        maybe_shutdown(w);
        return;
    }
    schedule_poll(w, 0); /* straight back for more */
}

/* ---- heartbeats ---- */

static int64_t lease_from(const json_t *o, int64_t fallback)
{
    const char *s = json_string_value(json_object_get(o, "lease_expires_at"));
    int64_t at = 0;
    if (!s || bt_time_parse_iso(s, &at, NULL) < 0)
        return fallback;
    int64_t left = at - bt_time_wall_ms();
    return left > 0 ? left : fallback;
}

static void on_hb_done(bt_http_call *call, const bt_http_response *r, void *ud);

static void on_hb_timer(uv_timer_t *t)
{
    worker *w = t->data;
    item *it = w->cur;
    if (!it || w->ph != PH_RUNNING || it->lost || w->hb_call)
        return;
    json_t *b = json_object();
    json_object_set_new(b, "worker_id", json_string(w->o.id));
    json_object_set(b, "task_id", it->task_id);
    if (!json_is_null(it->issue_number))
        json_object_set(b, "issue_number", it->issue_number);
    if (it->lease_token)
        json_object_set(b, "lease_token", it->lease_token);
    post_json(w, "/work/heartbeat", b, on_hb_done, &w->hb_call);
    json_decref(b);
}

static void hb_schedule(worker *w)
{
    int64_t every = w->cur->lease_ms / 3;
    if (every < MIN_HEARTBEAT_MS)
        every = MIN_HEARTBEAT_MS;
    uv_timer_start(&w->hb_timer, on_hb_timer, (uint64_t)every, 0);
}

static void on_hb_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    worker *w = ud;
    w->hb_call = NULL;
    item *it = w->cur;
    if (r->rc == BT_ECANCELED || !it || w->ph != PH_RUNNING)
        return;
    if (try_later(r)) {
        net_down(w, r, "/work/heartbeat");
        bt_log_debug(w->o.log, "heartbeat failed; the lease runs on", BT_LF_STR("error", r->error),
                     BT_LF_INT("status", r->status));
        hb_schedule(w);
        return;
    }
    if (r->status == 401 || r->status == 403) {
        net_rejected(w, r);
        hb_schedule(w);
        return;
    }
    net_up(w);
    if (r->status == 409 || r->status == 404) {
        bt_log_warn(w->o.log, "lease lost: stopping the agent and dropping the item",
                    BT_LF_STR("task", json_string_value(it->task_id)),
                    BT_LF_INT("status", r->status), BT_LF_STR("response", r->body));
        it->lost = 1;
        item_kill(it, "lease lost");
        return;
    }
    if (r->status >= 200 && r->status < 300) {
        json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
        it->lease_ms = lease_from(j, it->lease_ms);
        json_decref(j);
        bt_log_debug(w->o.log, "heartbeat", BT_LF_STR("task", json_string_value(it->task_id)),
                     BT_LF_INT("lease_ms", it->lease_ms));
    } else {
        bt_log_warn(w->o.log, "heartbeat rejected", BT_LF_INT("status", r->status),
                    BT_LF_STR("response", r->body));
    }
    hb_schedule(w);
}

/* ---- starting an item ---- */

static void env_set(bt_strvec *env, const char *name, const char *value)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < env->len; i++) {
        if (strncmp(env->items[i], name, n) == 0 && env->items[i][n] == '=') {
            free(env->items[i]);
            bt_strbuf sb = BT_STRBUF_INIT;
            bt_strbuf_addf(&sb, "%s=%s", name, value);
            env->items[i] = bt_strbuf_detach(&sb, NULL);
            return;
        }
    }
    bt_strvec_pushf(env, "%s=%s", name, value);
}

static int item_workspace(worker *w, item *it, bt_error *err)
{
    bt_strbuf name = BT_STRBUF_INIT, dir = BT_STRBUF_INIT;
    if (json_is_integer(it->issue_number)) {
        bt_strbuf_addf(&name, "issue-%lld", (long long)json_integer_value(it->issue_number));
    } else {
        bt_path_sanitize_component(json_string_value(it->task_id), &name);
    }
    bt_strbuf_addf(&dir, "%s/%s", w->o.workspace_dir, name.buf);
    bt_strbuf_release(&name);
    int rc = bt_path_mkdirs(dir.buf, 0755, err);
    if (rc == 0) {
        char *abs = realpath(dir.buf, NULL);
        it->workspace = abs ? abs : bt_xstrdup(dir.buf);
    }
    bt_strbuf_release(&dir);
    return rc;
}

static void start_item(worker *w, json_t *j)
{
    item *it = bt_xcalloc(1, sizeof *it);
    it->w = w;
    w->cur = it;
    w->ph = PH_RUNNING;
    it->started_ms = bt_time_mono_ms();
    it->task_id = json_incref(json_object_get(j, "task_id"));
    if (!it->task_id)
        it->task_id = json_string("");
    const json_t *num = json_object_get(j, "issue_number");
    it->issue_number = json_is_integer(num) ? json_incref((json_t *)num) : json_null();
    const json_t *tok = json_object_get(j, "lease_token");
    it->lease_token = json_is_integer(tok) ? json_incref((json_t *)tok) : NULL;
    it->title = bt_xstrdup(json_str(j, "title"));
    it->body = bt_xstrdup(json_str(j, "body"));
    it->branch = bt_xstrdup(json_str(j, "branch_name"));
    it->repository = bt_xstrdup(json_str(j, "repository"));
    it->lease_ms = lease_from(j, DEFAULT_LEASE_MS);

    uv_timer_init(&w->loop, &it->kill_timer);
    uv_pipe_init(&w->loop, &it->in, 0);
    uv_pipe_init(&w->loop, &it->out, 0);
    uv_pipe_init(&w->loop, &it->err, 0);
    it->kill_timer.data = it->in.data = it->out.data = it->err.data = it->proc.data = it;

    char num_s[32] = "";
    if (json_is_integer(it->issue_number))
        snprintf(num_s, sizeof num_s, "%lld", (long long)json_integer_value(it->issue_number));
    bt_log_info(w->o.log, "item received", BT_LF_STR("task", json_string_value(it->task_id)),
                BT_LF_STR("issue", num_s), BT_LF_STR("title", it->title),
                BT_LF_INT("lease_token", json_integer_value(it->lease_token)),
                BT_LF_INT("lease_ms", it->lease_ms));

    bt_error err = BT_ERROR_INIT;
    if (item_workspace(w, it, &err) < 0) {
        it->spawn_error = bt_xstrdup(err.msg);
        it->exited = it->out_eof = it->err_eof = 1;
        item_close_handles(it);
        return;
    }

    bt_strvec env = BT_STRVEC_INIT;
    for (char *const *e = w->o.envp ? w->o.envp : environ; e && *e; e++)
        bt_strvec_push(&env, *e);
    env_set(&env, "BATON_TASK_ID", json_string_value(it->task_id));
    env_set(&env, "BATON_ISSUE_NUMBER", num_s);
    env_set(&env, "BATON_TITLE", it->title);
    env_set(&env, "BATON_BRANCH", it->branch);
    env_set(&env, "BATON_REPOSITORY", it->repository);
    env_set(&env, "BATON_WORKSPACE", it->workspace);
    env_set(&env, "BATON_WORKER_ID", w->o.id);

    char *args[] = {"/bin/sh", "-c", (char *)w->o.command, NULL};
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&it->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&it->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&it->err;
    uv_process_options_t po = {0};
    po.file = "/bin/sh";
    po.args = args;
    po.env = env.items;
    po.cwd = it->workspace;
    po.flags = UV_PROCESS_DETACHED; /* own session and process group: kill(-pid) reaches all */
    po.exit_cb = on_exit_cb;
    po.stdio = stdio;
    po.stdio_count = 3;
    int rc = uv_spawn(&w->loop, &it->proc, &po);
    it->proc_init = 1;
    bt_strvec_clear(&env);
    if (rc != 0) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "/bin/sh: %s", uv_strerror(rc));
        it->spawn_error = bt_strbuf_detach(&m, NULL);
        it->exited = it->out_eof = it->err_eof = 1;
        item_close_handles(it); /* the process handle must be closed too (c-stack §5.3) */
        return;
    }
    it->spawned = 1;
    uv_read_start((uv_stream_t *)&it->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&it->err, on_alloc, on_read);
    it->wreq.data = it;
    uv_buf_t b = uv_buf_init(it->body, (unsigned)strlen(it->body));
    if (uv_write(&it->wreq, (uv_stream_t *)&it->in, &b, 1, on_stdin_written) != 0)
        close_item_handle(it, (uv_handle_t *)&it->in);
    hb_schedule(w);
    if (w->stopping)
        item_kill(it, "worker shutting down");
}

/* ---- polling ---- */

static void on_next_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    worker *w = ud;
    w->poll_call = NULL;
    if (r->rc == BT_ECANCELED || w->stopping)
        return;
    if (r->status == 429) {
        int64_t d = later_delay(w, r);
        bt_log_info(w->o.log, "the orchestrator asks to slow down (429); polling later",
                    BT_LF_INT("retry_in_ms", d));
        schedule_poll(w, d);
        return;
    }
    if (try_later(r)) {
        net_down(w, r, "/work/next");
        if (w->o.once) {
            w->stats.unreachable = 1;
            bt_log_error(w->o.log, "cannot reach the orchestrator", BT_LF_STR("error", r->error),
                         BT_LF_INT("status", r->status));
            maybe_shutdown(w);
            return;
        }
        int64_t d = later_delay(w, r);
        bt_log_debug(w->o.log, "poll failed; retrying",
                     BT_LF_STR("error", r->rc < 0 ? r->error : "server error"),
                     BT_LF_INT("status", r->status), BT_LF_INT("retry_in_ms", d));
        schedule_poll(w, d);
        return;
    }
    if (r->status == 401 || r->status == 403) {
        net_rejected(w, r);
        if (w->o.once) {
            w->stats.unreachable = 1;
            maybe_shutdown(w);
            return;
        }
        int64_t d = backoff_delay(w);
        schedule_poll(w, d > w->o.poll_interval_ms ? d : w->o.poll_interval_ms);
        return;
    }
    net_up(w);
    w->stats.polls++;
    json_t *j = r->status == 200 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        bt_log_error(w->o.log, "unexpected answer from /work/next", BT_LF_INT("status", r->status),
                     BT_LF_STR("response", r->body));
        json_decref(j);
        if (w->o.once) {
            maybe_shutdown(w);
            return;
        }
        schedule_poll(w, w->o.poll_interval_ms);
        return;
    }
    if (!json_is_true(json_object_get(j, "work_available"))) {
        json_decref(j);
        bt_log_debug(w->o.log, "no work", BT_LF_INT("next_poll_ms", w->o.poll_interval_ms));
        if (w->o.once) {
            maybe_shutdown(w);
            return;
        }
        schedule_poll(w, w->o.poll_interval_ms);
        return;
    }
    start_item(w, j);
    json_decref(j);
}

static void on_poll_timer(uv_timer_t *t)
{
    worker *w = t->data;
    if (w->stopping)
        return;
    if (w->ph == PH_REPORT) {
        send_report(w);
        return;
    }
    if (w->ph != PH_IDLE || w->poll_call)
        return;
    bt_strbuf url = BT_STRBUF_INIT;
    bt_strbuf_addf(&url, "%s/work/next?worker_id=", w->base);
    url_escape(&url, w->o.id);
    bt_http_request rq = {.url = url.buf,
                          .bearer_token = w->o.token,
                          .timeout_ms = REQUEST_TIMEOUT_MS,
                          .on_done = on_next_done,
                          .ud = w};
    bt_error err = BT_ERROR_INIT;
    if (bt_http_client_send(w->http, &rq, &w->poll_call, &err) < 0) {
        bt_log_error(w->o.log, "cannot poll", BT_LF_STR("error", err.msg));
        schedule_poll(w, w->o.poll_interval_ms);
    }
    bt_strbuf_release(&url);
}

static void schedule_poll(worker *w, int64_t delay_ms)
{
    uv_timer_start(&w->poll_timer, on_poll_timer, (uint64_t)(delay_ms < 0 ? 0 : delay_ms), 0);
}

/* ---- shutdown ---- */

static void maybe_shutdown(worker *w)
{
    if (w->shut)
        return;
    if (w->cur) /* the item's own path ends in item_finish, which calls back here */
        return;
    w->shut = 1;
    uv_timer_stop(&w->poll_timer);
    uv_timer_stop(&w->hb_timer);
    uv_close((uv_handle_t *)&w->poll_timer, NULL);
    uv_close((uv_handle_t *)&w->hb_timer, NULL);
    uv_close((uv_handle_t *)&w->sigterm, NULL);
    uv_close((uv_handle_t *)&w->sigint, NULL);
    bt_http_client_close(w->http); /* in-flight calls end with BT_ECANCELED */
    w->http = NULL;
}

static void on_signal(uv_signal_t *s, int signum)
{
    worker *w = s->data;
    w->signals++;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (!w->stopping) {
        w->stopping = 1;
        bt_log_info(w->o.log, "shutting down", BT_LF_STR("signal", name),
                    BT_LF_STR("item", w->cur ? json_string_value(w->cur->task_id) : ""));
    }
    if (w->poll_call)
        bt_http_call_cancel(w->poll_call);
    uv_timer_stop(&w->poll_timer);
    if (!w->cur) {
        maybe_shutdown(w);
        return;
    }
    if (w->ph == PH_RUNNING && (w->o.on_term == BT_WORKER_TERM_ABANDON || w->signals > 1)) {
        w->cur->abandoned = 1;
        item_kill(w->cur, "worker shutting down");
    } else if (w->ph == PH_REPORT && !w->report_call) {
        send_report(w); /* one last attempt, now instead of after the backoff */
    }
}

/* ---- entry ---- */

int bt_worker_run(const bt_worker_options *opts, bt_worker_stats *stats, bt_error *err)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!opts || !opts->server_url || !*opts->server_url)
        return bt_errorf(err, BT_EINVAL,
                         "no orchestrator URL: pass --server URL, set ORCHESTRATOR_URL or "
                         "worker.server_url");
    if (!opts->id || !*opts->id)
        return bt_errorf(err, BT_EINVAL, "no worker id: pass --id ID or set WORKER_ID");
    if (!opts->command || !*opts->command)
        return bt_errorf(err, BT_EINVAL,
                         "no agent command: pass --command CMD, set WORKER_COMMAND or "
                         "worker.command");
    if (!opts->workspace_dir || !*opts->workspace_dir)
        return bt_errorf(err, BT_EINVAL,
                         "no workspace directory: pass --workspace DIR or set WORKSPACE_DIR");
    if (strncmp(opts->server_url, "http://", 7) != 0 &&
        strncmp(opts->server_url, "https://", 8) != 0)
        return bt_errorf(err, BT_EINVAL,
                         "orchestrator URL '%s' must start with http:// or https://, e.g. "
                         "http://10.0.0.10:8000",
                         opts->server_url);
    int rc = bt_path_mkdirs(opts->workspace_dir, 0755, err);
    if (rc < 0)
        return bt_error_prefix(err, "workspace directory");

    signal(SIGPIPE, SIG_IGN); /* a write to an agent that closed stdin must not kill us */
    worker *w = bt_xcalloc(1, sizeof *w);
    w->o = *opts;
    if (w->o.poll_interval_ms <= 0)
        w->o.poll_interval_ms = DEFAULT_POLL_MS;
    if (w->o.backoff_max_ms <= 0)
        w->o.backoff_max_ms = DEFAULT_BACKOFF_MAX;
    if (w->o.kill_grace_ms <= 0)
        w->o.kill_grace_ms = DEFAULT_KILL_GRACE;
    size_t ulen = strlen(opts->server_url);
    while (ulen > 0 && opts->server_url[ulen - 1] == '/')
        ulen--;
    w->base = bt_xstrndup(opts->server_url, ulen);
    w->rng = (uint64_t)bt_time_wall_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (!w->rng)
        w->rng = 1;
    uv_loop_init(&w->loop);
    rc = bt_http_client_new(&w->loop, NULL, &w->http, err);
    if (rc < 0) {
        uv_loop_close(&w->loop);
        free(w->base);
        free(w);
        return rc;
    }
    uv_timer_init(&w->loop, &w->poll_timer);
    uv_timer_init(&w->loop, &w->hb_timer);
    uv_signal_init(&w->loop, &w->sigterm);
    uv_signal_init(&w->loop, &w->sigint);
    w->poll_timer.data = w->hb_timer.data = w->sigterm.data = w->sigint.data = w;
    uv_signal_start(&w->sigterm, on_signal, SIGTERM);
    uv_signal_start(&w->sigint, on_signal, SIGINT);

    char every[32];
    FILE *out = opts->out ? opts->out : stdout;
    fprintf(out, "baton: worker %s polling %s every %s (workspace %s)\n", w->o.id, w->base,
            bt_duration_format(w->o.poll_interval_ms, every), w->o.workspace_dir);
    fflush(out);
    bt_log_info(w->o.log, "worker started", BT_LF_STR("worker", w->o.id),
                BT_LF_STR("server", w->base), BT_LF_INT("poll_interval_ms", w->o.poll_interval_ms),
                BT_LF_STR("http_client", bt_http_client_version()));
    schedule_poll(w, 0);
    uv_run(&w->loop, UV_RUN_DEFAULT);

    rc = uv_loop_close(&w->loop);
    if (rc != 0)
        bt_log_error(w->o.log, "handles left open at exit", BT_LF_STR("error", uv_strerror(rc)));
    bt_log_info(w->o.log, "worker stopped", BT_LF_INT("completed", w->stats.completed),
                BT_LF_INT("failed", w->stats.failed), BT_LF_INT("dropped", w->stats.dropped));
    if (stats)
        *stats = w->stats;
    json_decref(w->report);
    free(w->base);
    free(w);
    return rc == 0 ? 0 : bt_errorf(err, BT_EINTERNAL, "the worker's event loop did not close");
}
