/*
 * client.h - baton's HTTP client: libcurl's multi-socket interface driven by the
 * application's libuv loop (../shared/reference/c-stack.md §5.2). Every tracker, LLM
 * adapter and the `baton worker` talk HTTP through it; nothing here blocks the loop.
 *
 *   bt_http_client *c = bt_http_client_new(loop, NULL, &err);
 *   bt_http_request rq = {.method = "POST", .url = url, .headers = hdrs,
 *                         .body = json, .body_len = n, .timeout_ms = 10000,
 *                         .on_done = done, .ud = me};
 *   bt_http_call *call;
 *   bt_http_client_send(c, &rq, &call, &err);
 *   ...
 *   static void done(bt_http_call *call, const bt_http_response *r, void *ud)
 *   { if (r->rc == 0 && r->status == 200) use(r->body, r->body_len); }
 *
 * Contract:
 *   - on_done runs exactly once per successfully sent call, always from a loop
 *     callback, never before bt_http_client_send returns. r->rc is 0 when an HTTP
 *     response arrived (whatever its status) and a negative BT_E* otherwise:
 *     BT_EUNAVAIL (connection refused, host not found), BT_ETIMEOUT (the deadline or
 *     the idle limit passed), BT_ETOOBIG (the body exceeded max_body), BT_ECANCELED
 *     (bt_http_call_cancel, an on_data callback asked to stop, or the client closed),
 *     BT_EIO (anything else: reset, malformed response, TLS). r->error says what
 *     happened in words, naming the method and URL (without its query string).
 *   - Everything in a bt_http_response is borrowed for the duration of on_done.
 *   - Streaming: with on_data set, 2xx response bodies are handed over chunk by chunk
 *     as they arrive and are not buffered (r->body is empty in on_done). Non-2xx
 *     bodies are still buffered (bounded) so the caller can read the error document.
 *   - bt_http_call* is valid from send until on_done returns.
 *   - All fds the client opens are close-on-exec, so agent processes spawned on the
 *     same loop do not inherit them.
 *
 * Threading: everything runs on the loop thread. The first bt_http_client_new (or
 * bt_http_client_global_init) must happen before the process starts other threads
 * (curl_global_init's rule).
 *
 * libcurl is not linked into baton: the first bt_http_client_global_init (or
 * bt_http_client_new) loads libcurl.so.4 (curl_dl.h), and fails with BT_EUNAVAIL,
 * naming the package to install, when it is missing.
 */
#ifndef BT_HTTP_CLIENT_H
#define BT_HTTP_CLIENT_H

#include "base/error.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_http_client bt_http_client;
typedef struct bt_http_call bt_http_call;

typedef struct bt_http_response {
    int rc;            /* 0 = a response arrived; else a negative BT_E* (see above) */
    const char *error; /* human message when rc < 0, "" otherwise */
    long status;       /* HTTP status; 0 when none arrived */
    const char *body;  /* NUL-terminated; "" when empty or streamed */
    size_t body_len;
    const char *content_type; /* NULL when absent */
    const char *etag;         /* NULL when absent */
    const char *location;     /* NULL when absent */
    int64_t retry_after_ms;   /* Retry-After (seconds or HTTP-date) as a delay; -1 = absent */
    int64_t rate_limit;       /* X-RateLimit-Limit / RateLimit-Limit; -1 = absent */
    int64_t rate_remaining;   /* X-RateLimit-Remaining / RateLimit-Remaining; -1 = absent */
    int64_t rate_reset;       /* X-RateLimit-Reset as sent (often epoch seconds); -1 = absent */
    int64_t elapsed_ms;       /* from send to completion */
    const bt_http_call *call; /* for bt_http_response_header */
} bt_http_response;

/* Any header of the final response (case-insensitive name), NULL when absent. When a
 * header repeats, the last one wins. Borrowed for on_done's duration. */
const char *bt_http_response_header(const bt_http_response *r, const char *name);

typedef void (*bt_http_done_fn)(bt_http_call *call, const bt_http_response *r, void *ud);
/* A chunk of a 2xx body (borrowed for the call). status is the response status.
 * Return 0 to continue, non-zero to stop the transfer (on_done then gets
 * BT_ECANCELED). May call bt_http_call_cancel on any call. */
typedef int (*bt_http_data_fn)(bt_http_call *call, long status, const char *data, size_t len,
                               void *ud);

typedef struct bt_http_request {
    const char *method; /* NULL = GET, or POST when body is set; copied */
    const char *url;    /* http:// or https://; copied */
    /* NULL-terminated array of "Name: value" strings; copied. A JSON body without a
     * Content-Type header gets "Content-Type: application/json". */
    const char *const *headers;
    const char *bearer_token; /* adds "Authorization: Bearer T" when non-NULL; copied */
    const void *body;         /* copied; NULL = none */
    size_t body_len;
    int64_t timeout_ms;         /* whole transfer; 0 = 30 s; < 0 = no limit (streams) */
    int64_t connect_timeout_ms; /* 0 = 10 s */
    int64_t idle_timeout_ms;    /* fail when nothing arrives this long; 0 = no limit */
    size_t max_body;            /* buffered body limit; 0 = 8 MiB */
    int follow_redirects;       /* follow up to 5 redirects */
    bt_http_done_fn on_done;    /* required */
    bt_http_data_fn on_data;    /* NULL = buffer the body */
    void *ud;                   /* borrowed, passed to the callbacks */
} bt_http_request;

typedef struct bt_http_client_options {
    const char *user_agent; /* NULL = "baton/VERSION"; copied */
    long max_connections;   /* total open connections; 0 = 64 */
} bt_http_client_options;

/* Load libcurl (first call) and curl_global_init; call before starting threads. Idempotent in
 * effect (refcounted by curl); each call must be balanced by bt_http_client_global_cleanup. */
int bt_http_client_global_init(bt_error *err);
void bt_http_client_global_cleanup(void);

/* A client on loop (borrowed; must outlive the client). opts may be NULL. */
int bt_http_client_new(uv_loop_t *loop, const bt_http_client_options *opts, bt_http_client **out,
                       bt_error *err);

/* Start a request. On success *call (may be NULL) is the handle for cancel, and
 * on_done will run later. On failure (bad URL scheme, missing on_done, client closing)
 * returns a negative BT_E* and on_done never runs. */
int bt_http_client_send(bt_http_client *c, const bt_http_request *rq, bt_http_call **call,
                        bt_error *err);

/* Abort a call: its on_done runs later (never inside this function) with BT_ECANCELED,
 * even if the response had just arrived. Safe from any callback, including the call's
 * own on_data. The call must still be pending (its on_done has not run: after that the
 * handle is freed). */
void bt_http_call_cancel(bt_http_call *call);

/* The loop the client runs on (borrowed). */
uv_loop_t *bt_http_client_loop(const bt_http_client *c);

/* Number of calls whose on_done has not run yet. */
size_t bt_http_client_pending(const bt_http_client *c);

/* Close: every pending call's on_done runs with BT_ECANCELED (from within this call, or,
 * when called from inside one of the client's callbacks, as soon as that returns);
 * then curl is cleaned up and the uv handles closed. The memory is freed once the loop
 * has run the close callbacks, so keep running the loop. Never use c afterwards. */
void bt_http_client_close(bt_http_client *c);

/* libcurl's version, e.g. "7.88.1", from curl_version_info (which unlike curl_version
 * does not pull in LDAP/SASL initialisation); loads libcurl if needed, "unavailable"
 * when it cannot. Static storage. */
const char *bt_http_client_version(void);

/* Parse a Retry-After value (delta seconds or an HTTP-date, relative to now_wall_ms)
 * into a delay in ms (>= 0); -1 when it is neither. */
int64_t bt_http_parse_retry_after(const char *value, int64_t now_wall_ms);

#endif
