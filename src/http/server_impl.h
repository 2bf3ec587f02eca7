/*
 * server_impl.h - internals shared by server.c (the MHD<->libuv adapter, requests,
 * responses, shutdown) and sse.c (event streams). Not for use outside src/http/.
 *
 * Lifetimes (c-stack.md §5.1 item 7), all on the loop thread:
 *   bt_http_req  refs: MHD (first access-handler call .. NOTIFY_COMPLETED) + one per
 *                async owner (bt_http_req_suspend .. the final respond). A completed
 *                request never touches its server again, so owners may answer after
 *                the server is gone.
 *   bt_http_sse  refs: owner (start .. on_close), the MHD response (.. its free
 *                callback), the disconnect watcher (uv_poll_init .. close callback).
 *                A stream's req/srv pointers are valid until it is closed, which
 *                happens in the request's NOTIFY_COMPLETED.
 *   bt_http_ws   refs: the request (accept .. NOTIFY_COMPLETED), each uv handle on the
 *                upgraded socket (init .. close callback); see websocket.c.
 */
#ifndef BT_HTTP_SERVER_IMPL_H
#define BT_HTTP_SERVER_IMPL_H

#include "base/strbuf.h"
#include "base/vec.h"
#include "http/ratelimit.h"
#include "http/router.h"
#include "http/server.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

typedef struct bt_http_ws bt_http_ws;

typedef struct srv_route {
    bt_http_scope scope;
    bt_http_handler_fn handler;
    void *ud;
    size_t max_body;
    unsigned flags;
    size_t index; /* in the router */
} srv_route;

typedef struct resp_hdr {
    char *name, *value;
} resp_hdr;

struct bt_http_req {
    int refs;
    bt_http_server *srv;         /* valid while !completed */
    struct MHD_Connection *conn; /* valid while !completed */
    bt_http_req *prev, *next;    /* srv->live list while !completed */
    char *method, *path;
    char peer[INET6_ADDRSTRLEN];
    int64_t start_ns;
    bt_http_match match;
    const srv_route *route; /* NULL unless the match is OK */
    size_t max_body;
    bt_strbuf body;
    uint64_t discarded; /* body bytes dropped past the limit */
    unsigned too_big : 1, dispatched : 1, in_handler : 1, suspended : 1, held : 1, finished : 1,
        queued : 1, completed : 1;
    int status;
    struct MHD_Response *resp; /* built, not yet queued */
    BT_VEC(resp_hdr) hdrs;
    uint64_t bytes; /* response body bytes, for the access log */
    bt_http_sse *sse;
    bt_http_ws *ws; /* websocket.c: set by bt_http_ws_accept until NOTIFY_COMPLETED */
};

struct bt_http_sse {
    int refs;
    bt_http_server *srv; /* valid while !closed */
    bt_http_req *req;    /* valid while !closed */
    bt_http_sse *prev, *next;
    bt_strbuf buf;
    size_t off;
    unsigned ending : 1, gone : 1, closed : 1, poll_init : 1, poll_active : 1;
    int fd;
    uv_poll_t poll;
    int64_t last_write_ms;
    char *last_event_id;
    bt_http_sse_close_fn on_close;
    void *ud;
};

typedef struct metric_row {
    char method[8];
    size_t route; /* router index, or SIZE_MAX for unmatched */
    int status;
    uint64_t count;
    double seconds;
} metric_row;

enum { SD_NONE = 0, SD_REQUESTED, SD_DRAINING, SD_FINAL, SD_DONE };

struct bt_http_server {
    uv_loop_t *loop;
    bt_http_server_options opts;
    char *host;
    bt_http_router *router;
    BT_VEC(srv_route *) routes;
    struct MHD_Daemon *mhd;
    uint16_t port;
    uv_poll_t epoll_poll;
    uv_timer_t pump_timer, hb_timer, grace_timer;
    int handles_init;
    int closing; /* handle closes pending during shutdown */
    int sd_state;
    bt_http_shutdown_cb sd_cb;
    void *sd_ud;
    bt_http_req *live;
    size_t nlive;
    bt_http_sse *streams;
    size_t nstreams;
    bt_http_ws *websockets; /* websocket.c: accepted, not yet completed */
    size_t nwebsockets;
    BT_VEC(metric_row) metrics;
    bt_http_ratelimit *limiter; /* NULL = no rate limit */
};

/* server.c */
void bt_http__kick(bt_http_server *srv);
void bt_http__req_resume(bt_http_req *req);
/* Install a built response as the request's answer (see server.c). Consumes resp. */
void bt_http__set_response(bt_http_req *req, int status, struct MHD_Response *resp);

/* sse.c */
/* NOTIFY_COMPLETED for a request with a stream: stop watching, on_close, drop refs. */
void bt_http__sse_closed(bt_http_sse *s);
/* The reader suspended the connection: watch the socket for a disconnect. */
void bt_http__sse_watch(bt_http_sse *s);
void bt_http__sse_unwatch(bt_http_sse *s);
/* Shutdown: end every stream after its queued data. */
void bt_http__sse_end_all(bt_http_server *srv);
void bt_http__sse_heartbeat_start(bt_http_server *srv);

/* websocket.c */
/* NOTIFY_COMPLETED for a request that was answered with bt_http_ws_accept. */
void bt_http__ws_completed(bt_http_ws *ws);
/* Shutdown, draining: send every open WebSocket a close frame (code, reason). */
void bt_http__ws_close_all(bt_http_server *srv, int code, const char *reason);
/* Shutdown, before the final MHD_run: release every upgraded socket to MHD, so that
 * MHD_stop_daemon never meets one (c-stack.md §5.1 item 8). */
void bt_http__ws_release_all(bt_http_server *srv);

#endif
