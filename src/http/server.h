/*
 * server.h - baton's HTTP server: libmicrohttpd in external epoll mode, driven by the
 * application's libuv loop (see ../shared/reference/c-stack.md), with a router, body
 * limits, JSON errors, async (suspend/resume) handlers, SSE streams, an auth hook, an
 * access log, per-route metrics and an ordered graceful shutdown.
 *
 * Threading: everything runs on the loop thread. No function here may be called from
 * another thread.
 *
 * Request lifecycle. A handler is called once per request, after the whole body has
 * arrived and the route's scope has been authorised. It must do exactly one of:
 *   - respond now: bt_http_respond*() (or bt_http_sse_start()) before returning;
 *   - go async: bt_http_req_suspend(req), return, and later, from any loop callback,
 *     call bt_http_respond*() or bt_http_sse_start() exactly once. The suspend gives
 *     the caller a reference that this final call releases, so the bt_http_req* stays
 *     valid in between even if the client disconnects or the server shuts down (then
 *     the response is silently dropped). A handler that does neither gets a 500.
 *
 * Error bodies are always {"error":{"code":"...","message":"..."}}.
 */
#ifndef BT_HTTP_SERVER_H
#define BT_HTTP_SERVER_H

#include "base/error.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_log bt_log;
typedef struct bt_http_server bt_http_server;
typedef struct bt_http_req bt_http_req;
typedef struct bt_http_sse bt_http_sse;

/* Scopes a route may require, ordered: admin implies write implies read. worker is
 * separate (the seed 002 worker protocol) and is implied by admin only. */
typedef enum bt_http_scope {
    BT_HTTP_SCOPE_NONE = 0, /* public: no Authorization needed */
    BT_HTTP_SCOPE_READ,
    BT_HTTP_SCOPE_WRITE,
    BT_HTTP_SCOPE_WORKER,
    BT_HTTP_SCOPE_ADMIN,
} bt_http_scope;

const char *bt_http_scope_name(bt_http_scope s); /* "read" */
int bt_http_scope_parse(const char *name, bt_http_scope *out);

/* Outcome of the auth callback. */
typedef enum bt_http_auth_result {
    BT_HTTP_AUTH_OK = 0,
    BT_HTTP_AUTH_UNAUTHENTICATED = 401, /* missing / malformed / bad / expired credential */
    BT_HTTP_AUTH_FORBIDDEN = 403,       /* valid credential without the required scope */
} bt_http_auth_result;

/* Called for every request to a route whose scope is not NONE. authorization is the
 * raw Authorization header or NULL. Fill msg (may be NULL) with a reason for the
 * client; never echo the credential. */
typedef bt_http_auth_result (*bt_http_auth_fn)(void *ud, const char *authorization,
                                               bt_http_scope required, bt_error *msg);

/* Who an authorised credential belongs to, for the per-client rate limit: write a stable
 * identity that is not the credential itself (a token's name, a hash of it) into out (n
 * bytes) and return 1, or return 0 to key the request by its client address. Called with
 * auth_ud, after the auth callback accepted authorization (never NULL here). */
typedef int (*bt_http_identity_fn)(void *ud, const char *authorization, char *out, size_t n);

typedef void (*bt_http_handler_fn)(bt_http_req *req, void *ud);

/* Route flags. */
enum {
    BT_HTTP_ROUTE_QUIET = 1,       /* probes and scrapes (health checks, metrics): access-log
                                      at debug, and never rate-limited */
    BT_HTTP_ROUTE_QUERY_TOKEN = 2, /* also accept the bearer token as ?token= (browsers
                                      cannot set headers on a WebSocket) */
};

typedef struct bt_http_route {
    const char *method;  /* "GET", "POST"...; copied */
    const char *pattern; /* "/api/tasks/{id}" (router.h syntax); copied */
    bt_http_scope scope;
    bt_http_handler_fn handler;
    void *ud;        /* borrowed, passed to handler */
    size_t max_body; /* 0 = the server's default */
    unsigned flags;  /* BT_HTTP_ROUTE_* */
} bt_http_route;

typedef struct bt_http_server_options {
    const char *host;              /* numeric address or "localhost"; NULL = "127.0.0.1" */
    uint16_t port;                 /* 0 = pick a free port (see bt_http_server_port) */
    unsigned connection_limit;     /* 0 = 1000 */
    unsigned connection_timeout_s; /* idle connection timeout; 0 = 30 */
    size_t max_body;               /* default body limit; 0 = 1 MiB */
    int json_max_depth;            /* 0 = 64 */
    int64_t sse_heartbeat_ms;      /* 0 = 15000 */
    int64_t shutdown_grace_ms;     /* wait for in-flight requests; 0 = 5000 */
    bt_http_auth_fn auth;          /* NULL = every scope is granted */
    void *auth_ud;
    /* Per-client rate limit (config server.rate_limit; http/ratelimit.h): a token bucket
     * of rate_burst requests (0 = rate_requests) refilled at rate_requests per
     * rate_per_ms (0 = 60000), per client: identify(auth_ud, ...) of an authorised
     * credential, else the client address. Every routed request except QUIET routes
     * takes one; over the limit it is answered 429 (code "rate_limited") with
     * Retry-After, and every limited route's response carries X-RateLimit-Limit,
     * -Remaining and -Reset. rate_requests 0 = no limit. */
    int64_t rate_requests, rate_per_ms, rate_burst;
    bt_http_identity_fn identify; /* NULL = every client keyed by its address */
    bt_log *log;                  /* borrowed; may be NULL */
} bt_http_server_options;

/* Create a server on loop (borrowed; must outlive the server). Nothing listens yet. */
bt_http_server *bt_http_server_new(uv_loop_t *loop, const bt_http_server_options *opts);

/* Register a route (before or after start). Fails on a malformed or duplicate pattern. */
int bt_http_server_route(bt_http_server *srv, const bt_http_route *route, bt_error *err);
/* Register n routes in order; stops at (and returns) the first failure. */
int bt_http_server_route_all(bt_http_server *srv, const bt_http_route *routes, size_t n,
                             bt_error *err);

/* Bind, listen and start pumping MHD from the loop. */
int bt_http_server_start(bt_http_server *srv, bt_error *err);

/* The bound port (useful with port 0), or 0 when not listening. */
uint16_t bt_http_server_port(const bt_http_server *srv);
/* The numeric host it is bound to (borrowed). */
const char *bt_http_server_host(const bt_http_server *srv);

/* Graceful shutdown: stop accepting; end SSE streams; give in-flight requests up to
 * shutdown_grace_ms to answer, then answer the rest 503; stop MHD; close every uv
 * handle; then call cb (may be NULL) from the loop. Idempotent; cb of a second call is
 * ignored. After cb, only bt_http_server_free is valid. */
typedef void (*bt_http_shutdown_cb)(bt_http_server *srv, void *ud);
void bt_http_server_shutdown(bt_http_server *srv, bt_http_shutdown_cb cb, void *ud);

/* Free a server that was never started or whose shutdown callback has run. Requests
 * still referenced by async owners survive it and may still be answered (dropped). */
void bt_http_server_free(bt_http_server *srv);

/* Metrics: one row per (method, route pattern, status) seen so far. pattern is
 * "(unmatched)" for 404s outside any route. */
typedef void (*bt_http_metrics_fn)(void *ud, const char *method, const char *pattern, int status,
                                   uint64_t count, double seconds_total);
void bt_http_server_metrics(const bt_http_server *srv, bt_http_metrics_fn fn, void *ud);
/* Every registered route, in registration order (for /openapi.json and its drift test).
 * Strings are borrowed from the server for the duration of the call. */
typedef void (*bt_http_route_fn)(void *ud, const char *method, const char *pattern,
                                 bt_http_scope scope);
void bt_http_server_routes(const bt_http_server *srv, bt_http_route_fn fn, void *ud);
/* Live counters for gauges. */
size_t bt_http_server_active_requests(const bt_http_server *srv);
size_t bt_http_server_active_streams(const bt_http_server *srv);

/* ----- Requests. Accessors are valid during the handler call (path params and the
 * body for the request's whole life); strings are borrowed from the request. */
const char *bt_http_req_method(const bt_http_req *req);
const char *bt_http_req_path(const bt_http_req *req);
/* The matched route's pattern. */
const char *bt_http_req_pattern(const bt_http_req *req);
const char *bt_http_req_param(const bt_http_req *req, const char *name);
/* Query-string argument (unescaped), NULL if absent. Only during the handler call. */
const char *bt_http_req_query(bt_http_req *req, const char *name);
/* Request header (case-insensitive), NULL if absent. Only during the handler call. */
const char *bt_http_req_header(bt_http_req *req, const char *name);
/* The raw body (NUL-terminated for convenience; len excludes the NUL). */
const char *bt_http_req_body(const bt_http_req *req, size_t *len);
/* Parse the body as JSON (depth-limited). On failure responds 400 itself with the
 * parser's line/column message and returns a negative BT_E*; the handler then just
 * returns. An empty body is a 400 too. *out is a new reference. */
int bt_http_req_json(bt_http_req *req, json_t **out);
/* Peer address "ip" (borrowed, valid for the request's life). */
const char *bt_http_req_peer(const bt_http_req *req);
/* The server the request came through. */
bt_http_server *bt_http_req_server(const bt_http_req *req);

/* Go async: see the lifecycle above. Call only from the handler, once. */
void bt_http_req_suspend(bt_http_req *req);
/* True once the request is finished (answered, client gone, or server stopped):
 * async owners may check it to skip work. */
int bt_http_req_done(const bt_http_req *req);

/* ----- Responses. Each bt_http_respond* finishes the request (further calls are
 * ignored). Headers added with bt_http_resp_header go out with the response. */
void bt_http_resp_header(bt_http_req *req, const char *name, const char *value);
/* body is copied. */
void bt_http_respond(bt_http_req *req, int status, const char *content_type, const void *body,
                     size_t len);
/* Takes ownership of json (a NULL json responds 500). */
void bt_http_respond_json(bt_http_req *req, int status, json_t *json);
void bt_http_respond_error(bt_http_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Map a BT_E* code to its HTTP status (BT_ENOENT 404, BT_EINVAL 400, ...) and respond
 * with bt_error_name(rc) and the error's message. */
void bt_http_respond_bt_error(bt_http_req *req, int rc, const bt_error *err);
int bt_http_status_for_error(int rc);

/* ----- Server-sent events. Start a stream as the response (synchronously or after a
 * suspend). on_close is called exactly once, from the loop, when the stream ends for
 * any reason (client gone, bt_http_sse_end, server shutdown); the stream pointer is
 * invalid after it returns, so owners drop their reference there. Returns NULL (and
 * answers 500) only if the request is already finished. */
typedef void (*bt_http_sse_close_fn)(bt_http_sse *stream, void *ud);
bt_http_sse *bt_http_sse_start(bt_http_req *req, bt_http_sse_close_fn on_close, void *ud);
/* Queue one event: "id: ..\nevent: ..\ndata: ..\n\n" (id/event may be NULL; data may
 * hold newlines, each becomes a data: line). Returns BT_ECANCELED once the stream is
 * ending, BT_ETOOBIG if the client is so far behind that the buffer exceeds 8 MiB (the
 * stream is then ended: the client can resume with Last-Event-ID). */
int bt_http_sse_send(bt_http_sse *stream, const char *id, const char *event, const char *data);
/* A comment line (": text"), e.g. retry hints; heartbeats are automatic. */
int bt_http_sse_comment(bt_http_sse *stream, const char *text);
/* End the stream after what is queued has been sent. on_close follows. */
void bt_http_sse_end(bt_http_sse *stream);
/* The Last-Event-ID header the client sent (copied at start), or NULL. */
const char *bt_http_sse_last_event_id(const bt_http_sse *stream);

#endif
