/*
 * server.c - libmicrohttpd driven by the libuv loop, plus requests and responses.
 *
 * The pump. MHD runs in external epoll mode (no thread of its own). Its epoll fd is
 * watched with a uv_poll; a one-shot uv_timer is re-armed after every MHD_run from
 * MHD_get_timeout (stopped on MHD_NO, so an idle server has no wakeups). A "kick" is a
 * 0-ms start of that timer: code outside MHD callbacks uses it after resuming a
 * connection, since MHD_run must never be called from inside an MHD callback.
 *
 * The access handler (c-stack.md §5.1). The first call for a request only creates its
 * context: answering then would make MHD drop keep-alive. The only exception is a
 * Content-Length over the route's limit, answered 413 at once on purpose (MHD then
 * closes instead of reading the body). Body chunks are collected on the middle calls;
 * the last call (upload size 0) routes, authorises and runs the handler. An async
 * handler's request is suspended there and resumed when the answer is set, and the
 * access handler is called once more to queue it.
 *
 * Shutdown runs from timer callbacks only (never inside MHD): quiesce (stop
 * accepting), end SSE streams, wait for in-flight requests up to the grace period,
 * then resume every suspended request (answered 503), a final MHD_run, stop and close
 * the epoll poll, MHD_stop_daemon, close the timers (c-stack.md §5.4).
 */
#include "http/server_impl.h"

#include "base/json.h"
#include "http/gzip.h"
#include "base/mem.h"
#include "base/time.h"
#include "obs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY (1u << 20)
#define UNMATCHED        SIZE_MAX

static const char *const scope_names[] = {"none", "read", "write", "worker", "admin"};

const char *bt_http_scope_name(bt_http_scope s)
{
    return (unsigned)s < 5 ? scope_names[s] : "unknown";
}

int bt_http_scope_parse(const char *name, bt_http_scope *out)
{
    for (unsigned i = 0; i < 5; i++)
        if (name && strcmp(name, scope_names[i]) == 0) {
            *out = (bt_http_scope)i;
            return 0;
        }
    return BT_EINVAL;
}

int bt_http_status_for_error(int rc)
{
    switch (rc) {
    case 0:
        return 200;
    case BT_EINVAL:
    case BT_EPARSE:
        return 400;
    case BT_EPERM:
        return 403;
    case BT_ENOENT:
        return 404;
    case BT_EEXIST:
    case BT_ECONFLICT:
    case BT_ESTATE:
    case BT_ESTALE:
        return 409;
    case BT_ETOOBIG:
        return 413;
    case BT_EBUSY:
        return 429;
    case BT_EUNAVAIL:
    case BT_ECANCELED:
        return 503;
    case BT_ETIMEOUT:
        return 504;
    default:
        return 500;
    }
}

/* ------------------------------------------------------------------------------------
 * Pump.
 */

static void pump(bt_http_server *srv);

static void on_pump_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void on_epoll(uv_poll_t *p, int status, int events)
{
    (void)status, (void)events;
    pump(p->data);
}

static void pump(bt_http_server *srv)
{
    if (!srv->mhd)
        return;
    MHD_run(srv->mhd);
    if (!srv->mhd)
        return;
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(srv->mhd, &ms) == MHD_YES)
        uv_timer_start(&srv->pump_timer, on_pump_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&srv->pump_timer);
}

void bt_http__kick(bt_http_server *srv)
{
    if (srv->mhd && srv->handles_init)
        uv_timer_start(&srv->pump_timer, on_pump_timer, 0, 0);
}

/* ------------------------------------------------------------------------------------
 * Requests.
 */

static void req_unref(bt_http_req *req)
{
    if (--req->refs > 0)
        return;
    if (req->resp)
        MHD_destroy_response(req->resp); /* may drop a stream's response ref */
    for (size_t i = 0; i < req->hdrs.len; i++) {
        free(req->hdrs.items[i].name);
        free(req->hdrs.items[i].value);
    }
    bt_vec_free(&req->hdrs);
    bt_http_match_release(&req->match);
    bt_strbuf_release(&req->body);
    free(req->method);
    free(req->path);
    free(req);
}

static void release_hold(bt_http_req *req)
{
    if (req->held) {
        req->held = 0;
        req_unref(req);
    }
}

void bt_http__req_resume(bt_http_req *req)
{
    if (!req->suspended || req->completed)
        return;
    req->suspended = 0;
    if (req->sse)
        bt_http__sse_unwatch(req->sse);
    MHD_resume_connection(req->conn);
    bt_http__kick(req->srv);
}

void bt_http__set_response(bt_http_req *req, int status, struct MHD_Response *resp)
{
    if (req->finished) {
        /* Answered already, client gone or server stopped: drop it. */
        MHD_destroy_response(resp);
        release_hold(req);
        return;
    }
    req->finished = 1;
    req->status = status;
    req->resp = resp;
    for (size_t i = 0; i < req->hdrs.len; i++) {
        MHD_add_response_header(resp, req->hdrs.items[i].name, req->hdrs.items[i].value);
        free(req->hdrs.items[i].name);
        free(req->hdrs.items[i].value);
    }
    req->hdrs.len = 0;
    if (req->srv->sd_state != SD_NONE)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (!req->in_handler)
        bt_http__req_resume(req);
    release_hold(req); /* may free req: last */
}

const char *bt_http_req_method(const bt_http_req *req)
{
    return req->method;
}

const char *bt_http_req_path(const bt_http_req *req)
{
    return req->path;
}

const char *bt_http_req_pattern(const bt_http_req *req)
{
    return req->match.pattern;
}

const char *bt_http_req_param(const bt_http_req *req, const char *name)
{
    return bt_http_match_param(&req->match, name);
}

const char *bt_http_req_query(bt_http_req *req, const char *name)
{
    return req->conn ? MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

const char *bt_http_req_header(bt_http_req *req, const char *name)
{
    return req->conn ? MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name) : NULL;
}

const char *bt_http_req_body(const bt_http_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return bt_strbuf_cstr(&req->body);
}

const char *bt_http_req_peer(const bt_http_req *req)
{
    return req->peer;
}

bt_http_server *bt_http_req_server(const bt_http_req *req)
{
    return req->srv;
}

int bt_http_req_json(bt_http_req *req, json_t **out)
{
    *out = NULL;
    if (req->body.len == 0) {
        bt_http_respond_error(req, 400, "invalid_json",
                              "the request body is empty; send a JSON document");
        return BT_EPARSE;
    }
    bt_error err = BT_ERROR_INIT;
    int rc = bt_json_parse(req->body.buf, req->body.len, req->srv->opts.json_max_depth, out, &err);
    if (rc < 0) {
        bt_http_respond_error(req, 400, "invalid_json", "request body: %s", err.msg);
        return rc;
    }
    return 0;
}

void bt_http_req_suspend(bt_http_req *req)
{
    if (req->held || req->finished || req->completed)
        return;
    req->held = 1;
    req->refs++;
}

int bt_http_req_done(const bt_http_req *req)
{
    return req->finished || req->completed;
}

/* ------------------------------------------------------------------------------------
 * Responses.
 */

void bt_http_resp_header(bt_http_req *req, const char *name, const char *value)
{
    if (req->finished)
        return;
    resp_hdr h = {bt_xstrdup(name), bt_xstrdup(value)};
    bt_vec_push(&req->hdrs, h);
}

static int has_resp_header(const bt_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->hdrs.len; i++)
        if (strcasecmp(req->hdrs.items[i].name, name) == 0)
            return 1;
    return 0;
}

static void respond_buf(bt_http_req *req, int status, const char *content_type, void *buf,
                        size_t len, enum MHD_ResponseMemoryMode mode)
{
    if (req->finished) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(buf);
        release_hold(req);
        return;
    }
    /* gzip for clients that take it: JSON and text above a kilobyte, unless the handler
     * already chose an encoding (ui.c keeps its files compressed). */
    if (bt_gzip_compressible(content_type) && status != 204 && status != 304) {
        bt_http_resp_header(req, "Vary", "Accept-Encoding");
        if (len >= BT_GZIP_MIN_BYTES && !has_resp_header(req, "Content-Encoding") &&
            bt_gzip_accepted(bt_http_req_header(req, "Accept-Encoding"))) {
            void *z = NULL;
            size_t zlen = 0;
            if (bt_gzip_compress(buf, len, &z, &zlen) == 0 && zlen < len) {
                if (mode == MHD_RESPMEM_MUST_FREE)
                    free(buf);
                buf = z;
                len = zlen;
                mode = MHD_RESPMEM_MUST_FREE;
                bt_http_resp_header(req, "Content-Encoding", "gzip");
            } else {
                free(z);
            }
        }
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(buf);
        abort(); /* only on allocation failure; see mem.h's policy */
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    req->bytes = len;
    bt_http__set_response(req, status, resp);
}

void bt_http_respond(bt_http_req *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    respond_buf(req, status, content_type, (void *)body, len, MHD_RESPMEM_MUST_COPY);
}

void bt_http_respond_json(bt_http_req *req, int status, json_t *json)
{
    if (!json) {
        bt_http_respond_error(req, 500, "internal", "the response could not be built");
        return;
    }
    if (req->finished) {
        json_decref(json);
        release_hold(req);
        return;
    }
    char *s = bt_json_dumps(json);
    json_decref(json);
    respond_buf(req, status, "application/json", s, strlen(s), MHD_RESPMEM_MUST_FREE);
}

void bt_http_respond_error(bt_http_req *req, int status, const char *code, const char *fmt, ...)
{
    if (req->finished) {
        release_hold(req);
        return;
    }
    char msg[BT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bt_http_respond_json(req, status, bt_json_error(code, msg));
}

void bt_http_respond_bt_error(bt_http_req *req, int rc, const bt_error *err)
{
    const char *msg = err && err->msg[0] ? err->msg : bt_strerror(rc);
    bt_http_respond_error(req, bt_http_status_for_error(rc), bt_error_name(rc), "%s", msg);
}

/* ------------------------------------------------------------------------------------
 * Access handler.
 */

static char *dumps_error(const char *code, const char *msg)
{
    json_t *j = bt_json_error(code, msg);
    char *s = bt_json_dumps(j);
    json_decref(j);
    return s;
}

static bt_http_req *req_new(bt_http_server *srv, struct MHD_Connection *conn, const char *url,
                            const char *method)
{
    bt_http_req *req = bt_xcalloc(1, sizeof *req);
    req->refs = 1;
    req->srv = srv;
    req->conn = conn;
    req->method = bt_xstrdup(method);
    req->path = bt_xstrdup(url);
    req->start_ns = bt_time_mono_ns();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, req->peer,
                      sizeof req->peer);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                      req->peer, sizeof req->peer);
    }
    req->next = srv->live;
    if (srv->live)
        srv->live->prev = req;
    srv->live = req;
    srv->nlive++;
    if (bt_http_router_match(srv->router, method, url, &req->match) == BT_HTTP_MATCH_OK)
        req->route = srv->routes.items[req->match.route];
    req->max_body = req->route && req->route->max_body ? req->route->max_body : srv->opts.max_body;
    return req;
}

static enum MHD_Result queue(bt_http_req *req)
{
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    req->queued = 1;
    return r;
}

/* The per-client rate limit (options rate_*): takes one request from key's bucket, adds
 * the X-RateLimit-* headers, and answers 429 when the bucket is empty. 1 = go on. */
static int rate_ok(bt_http_req *req, const char *key)
{
    bt_http_ratelimit_result r;
    int ok = bt_http_ratelimit_take(req->srv->limiter, key, (int64_t)uv_now(req->srv->loop), &r);
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)r.limit);
    bt_http_resp_header(req, "X-RateLimit-Limit", v);
    snprintf(v, sizeof v, "%lld", (long long)r.remaining);
    bt_http_resp_header(req, "X-RateLimit-Remaining", v);
    snprintf(v, sizeof v, "%lld", (long long)((r.reset_ms + 999) / 1000));
    bt_http_resp_header(req, "X-RateLimit-Reset", v);
    if (ok)
        return 1;
    long long secs = (long long)((r.retry_after_ms + 999) / 1000);
    snprintf(v, sizeof v, "%lld", secs);
    bt_http_resp_header(req, MHD_HTTP_HEADER_RETRY_AFTER, v);
    bt_http_respond_error(
        req, 429, "rate_limited",
        "too many requests from this client (more than %lld per %lld ms, burst "
        "%lld); retry in %lld s",
        (long long)req->srv->opts.rate_requests,
        (long long)(req->srv->opts.rate_per_ms > 0 ? req->srv->opts.rate_per_ms : 60000),
        (long long)r.limit, secs);
    return 0;
}

static void dispatch(bt_http_req *req)
{
    bt_http_server *srv = req->srv;
    if (srv->sd_state != SD_NONE) {
        bt_http_respond_error(req, 503, "shutting_down", "the server is shutting down; retry");
        return;
    }
    if (req->match.result == BT_HTTP_MATCH_NOT_FOUND) {
        bt_http_respond_error(req, 404, "not_found", "no route for %s %s", req->method, req->path);
        return;
    }
    if (req->match.result == BT_HTTP_MATCH_BAD_METHOD) {
        bt_http_resp_header(req, MHD_HTTP_HEADER_ALLOW, req->match.allow);
        bt_http_respond_error(req, 405, "method_not_allowed",
                              "%s is not allowed on %s; allowed: %s", req->method, req->path,
                              req->match.allow);
        return;
    }
    if (req->too_big) {
        bt_http_respond_error(req, 413, "too_large",
                              "the request body exceeds the limit of %zu bytes for %s %s",
                              req->max_body, req->method, req->match.pattern);
        return;
    }
    const srv_route *rt = req->route;
    int limited = srv->limiter && !(rt->flags & BT_HTTP_ROUTE_QUIET);
    char key[160] = ""; /* the rate limit's key: the credential's identity, else the address */
    if (rt->scope != BT_HTTP_SCOPE_NONE && srv->opts.auth) {
        bt_error msg = BT_ERROR_INIT;
        const char *authz = bt_http_req_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
        char *qauth = NULL; /* ?token= for clients that cannot set headers (WebSocket) */
        const char *qtok = !authz && (rt->flags & BT_HTTP_ROUTE_QUERY_TOKEN)
                               ? bt_http_req_query(req, "token")
                               : NULL;
        if (qtok) {
            size_t n = strlen(qtok) + 8;
            qauth = bt_xmalloc(n);
            snprintf(qauth, n, "Bearer %s", qtok);
            authz = qauth;
        }
        bt_http_auth_result ar = srv->opts.auth(srv->opts.auth_ud, authz, rt->scope, &msg);
        if (ar == BT_HTTP_AUTH_OK && limited && authz && srv->opts.identify &&
            !srv->opts.identify(srv->opts.auth_ud, authz, key, sizeof key))
            key[0] = '\0';
        free(qauth);
        if (ar == BT_HTTP_AUTH_UNAUTHENTICATED) {
            bt_http_resp_header(req, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"baton\"");
            bt_http_respond_error(req, 401, "unauthorized", "%s",
                                  msg.msg[0] ? msg.msg
                                             : "this route needs an Authorization: Bearer token");
            return;
        }
        if (ar != BT_HTTP_AUTH_OK) {
            bt_http_respond_error(req, 403, "forbidden", "%s",
                                  msg.msg[0] ? msg.msg : "the token lacks the required scope");
            return;
        }
    }
    if (limited) {
        if (!key[0])
            snprintf(key, sizeof key, "ip:%s", req->peer);
        if (!rate_ok(req, key))
            return;
    }
    req->in_handler = 1;
    rt->handler(req, rt->ud);
    req->in_handler = 0;
    if (!req->finished && !req->held)
        bt_http_respond_error(req, 500, "internal", "the handler for %s %s did not respond",
                              req->method, req->match.pattern);
}

/* How much of an oversized body is read and dropped before the 413 (beyond it, the
 * connection is closed). */
static uint64_t drain_limit(const bt_http_req *req)
{
    return (uint64_t)req->max_body * 4 + (1u << 20);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    bt_http_server *srv = cls;
    bt_http_req *req = *con_cls;
    if (!req) {
        req = req_new(srv, conn, url, method);
        *con_cls = req;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && req->match.result == BT_HTTP_MATCH_OK) {
            char *end = NULL;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && n > req->max_body) {
                req->too_big = 1;
                const char *expect =
                    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
                if ((expect && strcasecmp(expect, "100-continue") == 0) || n > drain_limit(req)) {
                    /* An early answer on purpose: the client has not sent the body (it
                     * waits for 100 Continue) or it is too big to drain, so MHD closes
                     * the connection instead of reading it. */
                    req->dispatched = 1;
                    dispatch(req);
                    return queue(req);
                }
                /* Otherwise read and drop it, so the client reads its 413 instead of a
                 * reset from closing on unread data. */
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (req->queued)
            return MHD_YES;
        if (!req->too_big && req->body.len + n <= req->max_body) {
            bt_strbuf_add(&req->body, upload_data, n);
            return MHD_YES;
        }
        req->too_big = 1;
        req->discarded += n;
        bt_strbuf_release(&req->body);
        /* Drain a modest overrun so the client can read its 413; a flood gets cut. */
        return req->discarded > drain_limit(req) ? MHD_NO : MHD_YES;
    }
    if (req->queued)
        return MHD_YES;
    if (!req->dispatched) {
        req->dispatched = 1;
        dispatch(req);
    }
    if (req->resp)
        return queue(req);
    if (req->held && srv->sd_state < SD_FINAL) {
        MHD_suspend_connection(conn);
        req->suspended = 1;
        return MHD_YES;
    }
    /* Resumed without an answer: the server is stopping. The owner keeps its hold;
     * its late answer will be dropped. */
    char *body =
        dumps_error("shutting_down", "the server shut down before this request was answered");
    req->resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!req->resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(req->resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(req->resp, MHD_HTTP_HEADER_CONNECTION, "close");
    req->status = 503;
    req->finished = 1;
    return queue(req);
}

static void metrics_add(bt_http_server *srv, const char *method, size_t route, int status,
                        double seconds)
{
    for (size_t i = 0; i < srv->metrics.len; i++) {
        metric_row *m = &srv->metrics.items[i];
        if (m->route == route && m->status == status && strcmp(m->method, method) == 0) {
            m->count++;
            m->seconds += seconds;
            return;
        }
    }
    metric_row m = {.route = route, .status = status, .count = 1, .seconds = seconds};
    snprintf(m.method, sizeof m.method, "%s", method);
    bt_vec_push(&srv->metrics, m);
}

static void check_drained(bt_http_server *srv);

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    bt_http_server *srv = cls;
    bt_http_req *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    int status = req->queued ? req->status : 499; /* nginx's "client closed request" */
    if (req->queued && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->sse && !req->ws)
        status = 499;
    req->completed = 1;
    req->finished = 1;
    req->suspended = 0;
    if (req->prev)
        req->prev->next = req->next;
    else
        srv->live = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    srv->nlive--;

    double secs = (double)(bt_time_mono_ns() - req->start_ns) / 1e9;
    size_t route = req->route ? req->route->index : UNMATCHED;
    metrics_add(srv, req->method, route, status, secs);
    bt_log_level lvl =
        req->route && (req->route->flags & BT_HTTP_ROUTE_QUIET) ? BT_LOG_DEBUG : BT_LOG_INFO;
    if (bt_log_enabled(srv->opts.log, lvl))
        bt_log_write(srv->opts.log, lvl, "http request", BT_LF_STR("method", req->method),
                     BT_LF_STR("path", req->path), BT_LF_INT("status", status),
                     BT_LF_INT("bytes", (int64_t)req->bytes),
                     BT_LF_DBL("ms", (double)(int64_t)(secs * 1e6) / 1e3),
                     BT_LF_STR("peer", req->peer), BT_LF_END);

    if (req->sse)
        bt_http__sse_closed(req->sse);
    if (req->ws)
        bt_http__ws_completed(req->ws);
    req->conn = NULL;
    req_unref(req);
    check_drained(srv);
}

/* ------------------------------------------------------------------------------------
 * Server.
 */

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    bt_http_server *srv = cls;
    if (!srv->opts.log)
        return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* A client that goes away mid-response is routine, not a warning. */
    bt_log_level lvl = strstr(msg, "Failed to send") || strstr(msg, "closed by remote") ||
                               strstr(msg, "Connection reset") ||
                               strstr(msg, "application error generating") /* SSE client gone */
                           ? BT_LOG_DEBUG
                           : BT_LOG_WARN;
    bt_log_write(srv->opts.log, lvl, "libmicrohttpd", BT_LF_STR("detail", msg), BT_LF_END);
}

bt_http_server *bt_http_server_new(uv_loop_t *loop, const bt_http_server_options *opts)
{
    bt_http_server *srv = bt_xcalloc(1, sizeof *srv);
    srv->loop = loop;
    if (opts)
        srv->opts = *opts;
    srv->host = bt_xstrdup(srv->opts.host ? srv->opts.host : "127.0.0.1");
    srv->opts.host = srv->host;
    if (!srv->opts.connection_limit)
        srv->opts.connection_limit = 1000;
    if (!srv->opts.connection_timeout_s)
        srv->opts.connection_timeout_s = 30;
    if (!srv->opts.max_body)
        srv->opts.max_body = DEFAULT_MAX_BODY;
    if (!srv->opts.json_max_depth)
        srv->opts.json_max_depth = 64;
    if (srv->opts.sse_heartbeat_ms <= 0)
        srv->opts.sse_heartbeat_ms = 15000;
    if (srv->opts.shutdown_grace_ms <= 0)
        srv->opts.shutdown_grace_ms = 5000;
    srv->router = bt_http_router_new();
    srv->limiter = bt_http_ratelimit_new(srv->opts.rate_requests,
                                         srv->opts.rate_per_ms > 0 ? srv->opts.rate_per_ms : 60000,
                                         srv->opts.rate_burst, 0);
    return srv;
}

int bt_http_server_route_all(bt_http_server *srv, const bt_http_route *routes, size_t n,
                             bt_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = bt_http_server_route(srv, &routes[i], err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int bt_http_server_route(bt_http_server *srv, const bt_http_route *route, bt_error *err)
{
    if (!route->handler)
        return bt_errorf(err, BT_EINVAL, "route %s %s has no handler", route->method,
                         route->pattern);
    srv_route *rt = bt_xcalloc(1, sizeof *rt);
    rt->scope = route->scope;
    rt->handler = route->handler;
    rt->ud = route->ud;
    rt->max_body = route->max_body;
    rt->flags = route->flags;
    rt->index = bt_http_router_count(srv->router);
    int rc = bt_http_router_add(srv->router, route->method, route->pattern, rt, err);
    if (rc < 0) {
        free(rt);
        return rc;
    }
    bt_vec_push(&srv->routes, rt);
    return 0;
}

/* Resolve host (numeric, or a name at start-up) into a socket address. */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, int *v6,
                   bt_error *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0 || !res)
        return bt_errorf(err, BT_EINVAL,
                         "cannot resolve server host '%s': %s; use an address like 127.0.0.1", host,
                         gai_strerror(g));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

int bt_http_server_start(bt_http_server *srv, bt_error *err)
{
    if (srv->mhd || srv->sd_state != SD_NONE)
        return bt_errorf(err, BT_ESTATE, "the HTTP server was already started");
    struct sockaddr_storage ss;
    int v6 = 0;
    int rc = resolve(srv->host, srv->opts.port, &ss, &v6, err);
    if (rc < 0)
        return rc;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    /* The logger must be the first option, or early messages go to stderr. No
     * LISTENING_ADDRESS_REUSE: its 1 means SO_REUSEPORT, which would let a second baton
     * share the port silently; the default (SO_REUSEADDR) allows quick restarts. */
    srv->mhd = MHD_start_daemon(
        flags, srv->opts.port, NULL, NULL, on_access, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
        srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
        srv->opts.connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, srv->opts.connection_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!srv->mhd) {
        int e = errno;
        return bt_errorf(err, BT_EIO,
                         "cannot listen on %s:%u: %s; is another process using the port? "
                         "Set server.port (or --port) to a free one",
                         srv->host, (unsigned)srv->opts.port, e ? strerror(e) : "MHD failed");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    int efd = di ? di->epoll_fd : -1;
    di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : srv->opts.port;
    int r = efd >= 0 ? uv_poll_init(srv->loop, &srv->epoll_poll, efd) : UV_EINVAL;
    if (r < 0) {
        MHD_stop_daemon(srv->mhd);
        srv->mhd = NULL;
        return bt_errorf(err, BT_EIO, "cannot watch libmicrohttpd's epoll fd: %s", uv_strerror(r));
    }
    srv->epoll_poll.data = srv;
    uv_timer_init(srv->loop, &srv->pump_timer);
    uv_timer_init(srv->loop, &srv->hb_timer);
    uv_timer_init(srv->loop, &srv->grace_timer);
    srv->pump_timer.data = srv->hb_timer.data = srv->grace_timer.data = srv;
    srv->handles_init = 1;
    uv_poll_start(&srv->epoll_poll, UV_READABLE, on_epoll);
    bt_http__kick(srv);
    return 0;
}

uint16_t bt_http_server_port(const bt_http_server *srv)
{
    return srv->mhd ? srv->port : 0;
}

const char *bt_http_server_host(const bt_http_server *srv)
{
    return srv->host;
}

size_t bt_http_server_active_requests(const bt_http_server *srv)
{
    return srv->nlive;
}

size_t bt_http_server_active_streams(const bt_http_server *srv)
{
    return srv->nstreams;
}

void bt_http_server_metrics(const bt_http_server *srv, bt_http_metrics_fn fn, void *ud)
{
    for (size_t i = 0; i < srv->metrics.len; i++) {
        const metric_row *m = &srv->metrics.items[i];
        const char *pat =
            m->route == UNMATCHED ? "(unmatched)" : bt_http_router_pattern(srv->router, m->route);
        fn(ud, m->method, pat, m->status, m->count, m->seconds);
    }
}

void bt_http_server_routes(const bt_http_server *srv, bt_http_route_fn fn, void *ud)
{
    for (size_t i = 0; i < srv->routes.len; i++) {
        const srv_route *rt = srv->routes.items[i];
        fn(ud, bt_http_router_method(srv->router, rt->index),
           bt_http_router_pattern(srv->router, rt->index), rt->scope);
    }
}

/* ------------------------------------------------------------------------------------
 * Shutdown.
 */

static void on_handle_closed(uv_handle_t *h)
{
    bt_http_server *srv = h->data;
    if (--srv->closing > 0)
        return;
    srv->handles_init = 0;
    srv->sd_state = SD_DONE;
    if (srv->sd_cb)
        srv->sd_cb(srv, srv->sd_ud);
}

static void finish_shutdown(bt_http_server *srv)
{
    srv->sd_state = SD_FINAL;
    /* Nothing may stay suspended into MHD_stop_daemon (an API violation), and no
     * upgraded socket may outlive it (c-stack.md §5.4 step 3). */
    bt_http__sse_end_all(srv);
    bt_http__ws_release_all(srv);
    for (bt_http_req *r = srv->live; r; r = r->next)
        bt_http__req_resume(r);
    MHD_run(srv->mhd);
    uv_poll_stop(&srv->epoll_poll);
    uv_timer_stop(&srv->pump_timer);
    srv->closing = 4;
    uv_close((uv_handle_t *)&srv->epoll_poll, on_handle_closed);
    uv_close((uv_handle_t *)&srv->pump_timer, on_handle_closed);
    struct MHD_Daemon *d = srv->mhd;
    MHD_stop_daemon(d); /* NOTIFY_COMPLETED for whatever is left */
    srv->mhd = NULL;
    uv_close((uv_handle_t *)&srv->hb_timer, on_handle_closed);
    uv_close((uv_handle_t *)&srv->grace_timer, on_handle_closed);
}

static void on_grace(uv_timer_t *t)
{
    bt_http_server *srv = t->data;
    if (srv->sd_state == SD_REQUESTED) {
        srv->sd_state = SD_DRAINING;
        MHD_socket lfd = MHD_quiesce_daemon(srv->mhd);
        if (lfd != MHD_INVALID_SOCKET)
            close(lfd);
        bt_http__sse_end_all(srv);
        bt_http__ws_close_all(srv, 1001, "server shutting down");
        bt_log_info(srv->opts.log, "http server draining", BT_LF_INT("in_flight", srv->nlive));
        if (srv->nlive == 0) {
            finish_shutdown(srv);
            return;
        }
        uv_timer_start(&srv->grace_timer, on_grace, (uint64_t)srv->opts.shutdown_grace_ms, 0);
        bt_http__kick(srv);
        return;
    }
    if (srv->sd_state == SD_DRAINING) {
        if (srv->nlive)
            bt_log_warn(srv->opts.log, "http shutdown grace period over; answering 503",
                        BT_LF_INT("in_flight", srv->nlive));
        finish_shutdown(srv);
    }
}

static void check_drained(bt_http_server *srv)
{
    if (srv->sd_state == SD_DRAINING && srv->nlive == 0)
        uv_timer_start(&srv->grace_timer, on_grace, 0, 0); /* never finish inside MHD */
}

void bt_http_server_shutdown(bt_http_server *srv, bt_http_shutdown_cb cb, void *ud)
{
    if (srv->sd_state != SD_NONE)
        return;
    srv->sd_cb = cb;
    srv->sd_ud = ud;
    if (!srv->mhd) {
        srv->sd_state = SD_DONE;
        if (cb)
            cb(srv, ud);
        return;
    }
    srv->sd_state = SD_REQUESTED;
    uv_timer_start(&srv->grace_timer, on_grace, 0, 0);
}

void bt_http_server_free(bt_http_server *srv)
{
    if (!srv)
        return;
    if (srv->mhd || srv->handles_init) {
        /* Misuse: freeing a running server would leave dangling uv handles. */
        fprintf(stderr, "baton: bt_http_server_free on a running server (call shutdown)\n");
        abort();
    }
    for (size_t i = 0; i < srv->routes.len; i++)
        free(srv->routes.items[i]);
    bt_vec_free(&srv->routes);
    bt_vec_free(&srv->metrics);
    bt_http_router_free(srv->router);
    bt_http_ratelimit_free(srv->limiter);
    free(srv->host);
    free(srv);
}
