/*
 * client.c - the HTTP client: libcurl multi-socket on the libuv loop (see client.h and
 * c-stack.md §5.2, whose rules this file follows):
 *
 *   - CURLMOPT_SOCKETFUNCTION maps each curl socket onto a uv_poll created lazily on
 *     the first IN/OUT and attached with curl_multi_assign; CURL_POLL_REMOVE stops and
 *     closes it (freed in the close callback) and detaches it.
 *   - CURLMOPT_TIMERFUNCTION only (re)arms one uv_timer; -1 stops it. Neither callback
 *     ever calls curl_multi_socket_action; only the uv callbacks do, and every
 *     socket_action is followed by draining curl_multi_info_read.
 *   - Sockets are opened with SOCK_CLOEXEC, and after curl_multi_init (whose wake-up
 *     socketpair is not close-on-exec) every fd above 2 gets FD_CLOEXEC once, so agent
 *     processes spawned on the same loop inherit nothing.
 *   - Cleanup: curl_multi_cleanup while the loop and our handles are alive (it calls
 *     the socket and timer callbacks), then the timers are closed.
 *
 * libcurl is not linked but loaded on first use (curl_dl.h): every call goes through
 * bt_curl, filled by bt_http_client_global_init before the first one.
 *
 * Re-entrancy: user callbacks (on_data inside curl, on_done after socket_action) may
 * send, cancel or close. `depth` counts our uv callbacks on the stack; a close asked
 * for inside one runs when the outermost returns. A cancel never removes a handle on
 * the spot (it may be inside curl): it flags the call and arms the `defer` timer,
 * whose callback finishes flagged calls with BT_ECANCELED.
 */
#include "http/client.h"
#include "http/curl_dl.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_MS 10000
#define DEFAULT_MAX_BODY   (8u << 20)
#define MAX_HEADER_BYTES   (64u << 10)
#define DEFAULT_MAX_CONNS  64

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    bt_http_client *client;
    struct sock_ctx *prev, *next;
} sock_ctx;

struct bt_http_call {
    bt_http_client *client;
    CURL *easy;
    struct curl_slist *headers;
    char *method, *url_safe; /* url_safe: no userinfo, query or fragment (for messages) */
    char *body;
    size_t body_len, max_body;
    bt_strbuf resp_body;
    bt_strbuf resp_headers; /* "name\0value\0" pairs of the latest response */
    size_t nheaders_bytes;
    int in_multi, too_big, cancel_requested;
    int64_t started_ms;
    char errbuf[CURL_ERROR_SIZE];
    bt_http_done_fn on_done;
    bt_http_data_fn on_data;
    void *ud;
    bt_http_call *prev, *next;
};

struct bt_http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeout */
    uv_timer_t defer; /* finishes cancelled calls outside curl */
    char *user_agent;
    bt_http_call *calls; /* pending (on_done not yet run) */
    size_t npending;
    sock_ctx *socks;
    int depth;
    int closing, closed, handles_closed;
};

/* ---- global init ---- */

int bt_http_client_global_init(bt_error *err)
{
    int lrc = bt_curl_load(err); /* the first call dlopens libcurl (curl_dl.h) */
    if (lrc < 0)
        return lrc;
    CURLcode rc = bt_curl.global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        return bt_errorf(err, BT_EINTERNAL, "curl_global_init failed: %s",
                         bt_curl.easy_strerror(rc));
    return 0;
}

void bt_http_client_global_cleanup(void)
{
    bt_curl.global_cleanup();
}

const char *bt_http_client_version(void)
{
    if (bt_curl_load(NULL) < 0)
        return "unavailable";
    const curl_version_info_data *v = bt_curl.version_info(CURLVERSION_NOW);
    return v && v->version ? v->version : "unknown";
}

/* ---- helpers ---- */

/* A URL fit for messages and logs: scheme://host[:port]/path, without credentials,
 * query string or fragment (tokens often travel there). */
static char *safe_url(const char *url)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    const char *p = url, *scheme = strstr(url, "://");
    if (scheme) {
        bt_strbuf_add(&sb, url, (size_t)(scheme + 3 - url));
        p = scheme + 3;
        size_t auth_end = strcspn(p, "/?#");
        const char *at = memchr(p, '@', auth_end);
        if (at)
            p = at + 1;
    }
    bt_strbuf_add(&sb, p, strcspn(p, "?#"));
    return bt_strbuf_detach(&sb, NULL);
}

int64_t bt_http_parse_retry_after(const char *value, int64_t now_wall_ms)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value)
        return -1;
    if (isdigit((unsigned char)*value)) {
        char *end = NULL;
        long long s = strtoll(value, &end, 10);
        while (end && (*end == ' ' || *end == '\t'))
            end++;
        if (end && *end == '\0' && s >= 0 && s < 100000000LL)
            return (int64_t)s * 1000;
        return -1;
    }
    if (bt_curl_load(NULL) < 0)
        return -1;
    time_t t = bt_curl.getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    int64_t d = (int64_t)t * 1000 - now_wall_ms;
    return d < 0 ? 0 : d;
}

static int64_t header_int(const bt_http_response *r, const char *a, const char *b)
{
    const char *v = bt_http_response_header(r, a);
    if (!v && b)
        v = bt_http_response_header(r, b);
    if (!v)
        return -1;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || n < 0)
        return -1;
    return (int64_t)n;
}

const char *bt_http_response_header(const bt_http_response *r, const char *name)
{
    if (!r || !r->call || !name)
        return NULL;
    const bt_strbuf *h = &r->call->resp_headers;
    const char *found = NULL;
    size_t i = 0;
    while (i < h->len) {
        const char *n = h->buf + i;
        const char *v = n + strlen(n) + 1;
        if (strcasecmp(n, name) == 0)
            found = v;
        i = (size_t)(v - h->buf) + strlen(v) + 1;
    }
    return found;
}

/* ---- the call's curl callbacks ---- */

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    bt_http_call *call = ud;
    size_t len = size * n;
    if (call->cancel_requested)
        return 0;
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue or a redirect): keep only its headers. */
        bt_strbuf_reset(&call->resp_headers);
        call->nheaders_bytes = 0;
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon || colon == buf)
        return len; /* blank line or folding: nothing to keep */
    call->nheaders_bytes += len;
    if (call->nheaders_bytes > MAX_HEADER_BYTES)
        return len; /* keep the first 64 KiB of headers; ignore the rest */
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1, *end = buf + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    bt_strbuf_add(&call->resp_headers, buf, nlen);
    bt_strbuf_addch(&call->resp_headers, '\0');
    bt_strbuf_add(&call->resp_headers, v, (size_t)(end - v));
    bt_strbuf_addch(&call->resp_headers, '\0');
    return len;
}

static size_t on_write(char *ptr, size_t size, size_t n, void *ud)
{
    bt_http_call *call = ud;
    size_t len = size * n;
    if (call->cancel_requested || call->client->closing)
        return 0; /* abort: curl reports CURLE_WRITE_ERROR, mapped to BT_ECANCELED */
    long status = 0;
    bt_curl.easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    if (call->on_data && status >= 200 && status < 300) {
        if (call->on_data(call, status, ptr, len, call->ud) != 0) {
            call->cancel_requested = 1;
            return 0;
        }
        return call->cancel_requested || call->client->closing ? 0 : len;
    }
    if (call->resp_body.len + len > call->max_body) {
        call->too_big = 1;
        return 0;
    }
    bt_strbuf_add(&call->resp_body, ptr, len);
    return len;
}

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)clientp;
    (void)purpose;
    int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* ---- completion ---- */

static void call_free(bt_http_call *call)
{
    if (call->easy)
        bt_curl.easy_cleanup(call->easy);
    bt_curl.slist_free_all(call->headers);
    free(call->method);
    free(call->url_safe);
    free(call->body);
    bt_strbuf_release(&call->resp_body);
    bt_strbuf_release(&call->resp_headers);
    free(call);
}

static int map_curl_error(const bt_http_call *call, CURLcode res)
{
    if (call->cancel_requested)
        return BT_ECANCELED;
    if (call->too_big)
        return BT_ETOOBIG;
    switch (res) {
    case CURLE_OPERATION_TIMEDOUT:
        return BT_ETIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return BT_EUNAVAIL;
    default:
        return BT_EIO;
    }
}

/* Unlink, run on_done, free. rc/res: when rc is 0 the curl result decides. */
static void finish_call(bt_http_call *call, CURLcode res, int forced_rc, const char *forced_msg)
{
    bt_http_client *c = call->client;
    if (call->in_multi) {
        bt_curl.multi_remove_handle(c->multi, call->easy);
        call->in_multi = 0;
    }
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    c->npending--;

    bt_http_response r = {0};
    r.call = call;
    r.retry_after_ms = -1;
    char msg[CURL_ERROR_SIZE + 512];
    msg[0] = '\0';
    long status = 0;
    bt_curl.easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    r.status = status;
    if (forced_rc < 0) {
        r.rc = forced_rc;
        snprintf(msg, sizeof msg, "%s %s: %s", call->method, call->url_safe, forced_msg);
    } else if (res != CURLE_OK || call->cancel_requested) {
        r.rc = map_curl_error(call, res);
        const char *why = call->errbuf[0] ? call->errbuf : bt_curl.easy_strerror(res);
        if (r.rc == BT_ECANCELED)
            why = "cancelled";
        else if (r.rc == BT_ETOOBIG)
            why = "response body larger than the limit";
        snprintf(msg, sizeof msg, "%s %s: %s", call->method, call->url_safe, why);
    }
    r.error = msg;
    r.body = bt_strbuf_cstr(&call->resp_body);
    r.body_len = call->resp_body.len;
    r.content_type = bt_http_response_header(&r, "Content-Type");
    r.etag = bt_http_response_header(&r, "ETag");
    r.location = bt_http_response_header(&r, "Location");
    int64_t now = bt_time_wall_ms();
    r.retry_after_ms = bt_http_parse_retry_after(bt_http_response_header(&r, "Retry-After"), now);
    r.rate_limit = header_int(&r, "X-RateLimit-Limit", "RateLimit-Limit");
    r.rate_remaining = header_int(&r, "X-RateLimit-Remaining", "RateLimit-Remaining");
    r.rate_reset = header_int(&r, "X-RateLimit-Reset", "RateLimit-Reset");
    r.elapsed_ms = bt_time_mono_ms() - call->started_ms;

    call->on_done(call, &r, call->ud);
    call_free(call);
}

static void check_info(bt_http_client *c)
{
    CURLMsg *m;
    int left;
    while (c->multi && (m = bt_curl.multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        bt_http_call *call = NULL;
        bt_curl.easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call)
            finish_call(call, m->data.result, 0, NULL);
    }
}

static void do_close(bt_http_client *c);

static void enter(bt_http_client *c)
{
    c->depth++;
}

static void leave(bt_http_client *c)
{
    if (--c->depth == 0 && c->closing && !c->closed)
        do_close(c);
}

/* ---- uv side ---- */

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *sc = h->data;
    bt_http_client *c = sc->client;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_socket_t fd = sc->fd; /* sc may be closed by the socket callback below */
    int running = 0;
    enter(c);
    if (c->multi) {
        bt_curl.multi_socket_action(c->multi, fd, flags, &running);
        check_info(c);
    }
    leave(c);
}

static void on_curl_timer(uv_timer_t *t)
{
    bt_http_client *c = t->data;
    int running = 0;
    enter(c);
    if (c->multi) {
        bt_curl.multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_info(c);
    }
    leave(c);
}

static void on_defer(uv_timer_t *t)
{
    bt_http_client *c = t->data;
    enter(c);
    for (;;) {
        bt_http_call *call = c->calls;
        while (call && !call->cancel_requested)
            call = call->next;
        if (!call)
            break;
        finish_call(call, CURLE_OK, BT_ECANCELED, "cancelled");
    }
    leave(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sock_release(bt_http_client *c, sock_ctx *sc)
{
    uv_poll_stop(&sc->poll);
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        c->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    uv_close((uv_handle_t *)&sc->poll, on_sock_closed);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    bt_http_client *c = userp;
    sock_ctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            sock_release(c, sc);
            bt_curl.multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = bt_xcalloc(1, sizeof *sc);
        sc->fd = s;
        sc->client = c;
        if (uv_poll_init_socket(c->loop, &sc->poll, s) != 0) {
            free(sc);
            return -1;
        }
        sc->poll.data = sc;
        sc->next = c->socks;
        if (c->socks)
            c->socks->prev = sc;
        c->socks = sc;
        bt_curl.multi_assign(c->multi, s, sc);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&sc->poll, ev, on_poll);
    return 0;
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    bt_http_client *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* curl_multi_init's wake-up socketpair is not close-on-exec (c-stack.md §5.2 item 4). */
static void cloexec_sweep(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end = NULL;
        long fd = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || fd <= 2 || fd == self)
            continue;
        int fl = fcntl((int)fd, F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC))
            fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
    }
    closedir(d);
}

/* ---- lifecycle ---- */

int bt_http_client_new(uv_loop_t *loop, const bt_http_client_options *opts, bt_http_client **out,
                       bt_error *err)
{
    *out = NULL;
    int rc = bt_http_client_global_init(err);
    if (rc < 0)
        return rc;
    bt_http_client *c = bt_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->multi = bt_curl.multi_init();
    if (!c->multi) {
        free(c);
        bt_curl.global_cleanup();
        return bt_errorf(err, BT_EINTERNAL, "curl_multi_init failed");
    }
    cloexec_sweep();
    char ua[64];
    snprintf(ua, sizeof ua, "baton/%s", BATON_VERSION);
    c->user_agent = bt_xstrdup(opts && opts->user_agent ? opts->user_agent : ua);
    long maxc = opts && opts->max_connections > 0 ? opts->max_connections : DEFAULT_MAX_CONNS;
    bt_curl.multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    bt_curl.multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    bt_curl.multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    bt_curl.multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    bt_curl.multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxc);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->defer);
    c->timer.data = c->defer.data = c;
    *out = c;
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    bt_http_client *c = h->data;
    if (++c->handles_closed < 2)
        return;
    free(c->user_agent);
    free(c);
    bt_curl.global_cleanup();
}

static void do_close(bt_http_client *c)
{
    c->closed = 1;
    c->depth++; /* on_done callbacks below must not re-enter do_close */
    while (c->calls)
        finish_call(c->calls, CURLE_OK, BT_ECANCELED, "cancelled: the HTTP client is closing");
    c->depth--;
    bt_curl.multi_cleanup(c->multi); /* may call on_socket / on_timer_change */
    c->multi = NULL;
    while (c->socks)
        sock_release(c, c->socks);
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->defer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->defer, on_handle_closed);
}

void bt_http_client_close(bt_http_client *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    if (c->depth == 0)
        do_close(c);
}

uv_loop_t *bt_http_client_loop(const bt_http_client *c)
{
    return c->loop;
}

size_t bt_http_client_pending(const bt_http_client *c)
{
    return c ? c->npending : 0;
}

void bt_http_call_cancel(bt_http_call *call)
{
    if (!call || call->cancel_requested)
        return;
    call->cancel_requested = 1;
    if (!call->client->closed)
        uv_timer_start(&call->client->defer, on_defer, 0, 0);
}

/* ---- sending ---- */

static int has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return 1;
    return 0;
}

static int append_header(bt_http_call *call, const char *h)
{
    struct curl_slist *l = bt_curl.slist_append(call->headers, h);
    if (!l)
        return BT_ENOMEM;
    call->headers = l;
    return 0;
}

int bt_http_client_send(bt_http_client *c, const bt_http_request *rq, bt_http_call **out,
                        bt_error *err)
{
    if (out)
        *out = NULL;
    if (!c || c->closing)
        return bt_errorf(err, BT_ECANCELED, "the HTTP client is closing");
    if (!rq || !rq->url || !rq->on_done)
        return bt_errorf(err, BT_EINVAL, "an HTTP request needs a URL and an on_done callback");
    if (strncasecmp(rq->url, "http://", 7) != 0 && strncasecmp(rq->url, "https://", 8) != 0)
        return bt_errorf(err, BT_EINVAL,
                         "'%s' is not an http:// or https:// URL; give the full address, e.g. "
                         "http://127.0.0.1:8080",
                         rq->url);
    const char *method = rq->method ? rq->method : (rq->body ? "POST" : "GET");
    for (const char *p = method; *p; p++)
        if (!isupper((unsigned char)*p))
            return bt_errorf(err, BT_EINVAL, "HTTP method '%s' must be upper-case letters", method);

    bt_http_call *call = bt_xcalloc(1, sizeof *call);
    call->client = c;
    call->method = bt_xstrdup(method);
    call->url_safe = safe_url(rq->url);
    call->max_body = rq->max_body ? rq->max_body : DEFAULT_MAX_BODY;
    call->on_done = rq->on_done;
    call->on_data = rq->on_data;
    call->ud = rq->ud;
    call->easy = bt_curl.easy_init();
    if (!call->easy) {
        call_free(call);
        return bt_errorf(err, BT_EINTERNAL, "curl_easy_init failed");
    }
    CURL *e = call->easy;
    int rc = 0;
    for (size_t i = 0; rq->headers && rq->headers[i] && rc == 0; i++)
        rc = append_header(call, rq->headers[i]);
    if (rc == 0 && rq->body && !has_header(rq->headers, "Content-Type"))
        rc = append_header(call, "Content-Type: application/json");
    if (rc == 0 && !has_header(rq->headers, "Expect"))
        rc = append_header(call, "Expect:"); /* no 100-continue round trip */
    if (rc == 0 && rq->bearer_token) {
        bt_strbuf auth = BT_STRBUF_INIT;
        bt_strbuf_addf(&auth, "Authorization: Bearer %s", rq->bearer_token);
        rc = append_header(call, auth.buf);
        bt_strbuf_release(&auth);
    }
    if (rc < 0) {
        call_free(call);
        return bt_errorf(err, rc, "out of memory building request headers");
    }

    bt_curl.easy_setopt(e, CURLOPT_URL, rq->url);
    bt_curl.easy_setopt(e, CURLOPT_PRIVATE, (char *)call);
    bt_curl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    bt_curl.easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    bt_curl.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    bt_curl.easy_setopt(e, CURLOPT_WRITEDATA, call);
    bt_curl.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    bt_curl.easy_setopt(e, CURLOPT_HEADERDATA, call);
    bt_curl.easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    bt_curl.easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
    bt_curl.easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
    bt_curl.easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    bt_curl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    bt_curl.easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    if (rq->timeout_ms >= 0)
        bt_curl.easy_setopt(e, CURLOPT_TIMEOUT_MS,
                            (long)(rq->timeout_ms ? rq->timeout_ms : DEFAULT_TIMEOUT_MS));
    bt_curl.easy_setopt(
        e, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(rq->connect_timeout_ms > 0 ? rq->connect_timeout_ms : DEFAULT_CONNECT_MS));
    if (rq->idle_timeout_ms > 0) {
        bt_curl.easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        bt_curl.easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)((rq->idle_timeout_ms + 999) / 1000));
    }
    if (rq->follow_redirects) {
        bt_curl.easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        bt_curl.easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    }
    if (rq->body) {
        call->body = bt_xmalloc(rq->body_len + 1);
        memcpy(call->body, rq->body, rq->body_len);
        call->body[rq->body_len] = '\0';
        call->body_len = rq->body_len;
        bt_curl.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
        bt_curl.easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
        if (strcmp(method, "POST") != 0)
            bt_curl.easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "HEAD") == 0) {
        bt_curl.easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0) {
        bt_curl.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        bt_curl.easy_setopt(e, CURLOPT_POSTFIELDS, "");
    } else if (strcmp(method, "GET") != 0) {
        bt_curl.easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }

    call->started_ms = bt_time_mono_ms();
    CURLMcode mc = bt_curl.multi_add_handle(c->multi, e);
    if (mc != CURLM_OK) {
        call_free(call);
        return bt_errorf(err, BT_EINTERNAL, "curl_multi_add_handle failed: %s",
                         bt_curl.multi_strerror(mc));
    }
    call->in_multi = 1;
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    c->npending++;
    if (out)
        *out = call;
    return 0;
}
