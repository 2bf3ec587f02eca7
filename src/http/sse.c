/*
 * sse.c - server-sent event streams over a suspended MHD connection.
 *
 * The response is an MHD callback response (chunked on HTTP/1.1). Events are appended
 * to a per-stream buffer; the content reader copies the buffer out and, when it is
 * empty, suspends the connection and returns 0. That is the only way it returns 0,
 * because a reader returning 0 without suspending is called again at once (a busy
 * loop, c-stack.md §5.1 item 5). Queuing data resumes the connection and kicks MHD.
 *
 * While suspended, MHD neither reads the socket nor notices a disconnect, so the
 * stream watches the socket itself with a uv_poll (readable | disconnect) and, when it
 * fires, peeks: 0 bytes means the client is gone, and the stream is resumed so the
 * reader can end it with an error (item 6). The watcher is stopped on every resume
 * and closed in NOTIFY_COMPLETED, before MHD closes the fd.
 *
 * One server-wide timer writes a heartbeat comment into every stream that has been
 * quiet for the heartbeat interval (proxies and half-open TCP); it runs only while
 * some stream exists.
 */
#include "http/server_impl.h"

#include "base/mem.h"
#include "base/time.h"
#include "obs/log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define SSE_MAX_BUFFER (8u << 20)

static void sse_unref(bt_http_sse *s)
{
    if (--s->refs > 0)
        return;
    bt_strbuf_release(&s->buf);
    free(s->last_event_id);
    free(s);
}

static void on_poll_closed(uv_handle_t *h)
{
    sse_unref(h->data);
}

static void on_response_freed(void *cls)
{
    sse_unref(cls);
}

static void on_socket_event(uv_poll_t *p, int status, int events)
{
    bt_http_sse *s = p->data;
    if (s->closed)
        return;
    int gone = status < 0;
    if (!gone) {
        char c;
        ssize_t n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            gone = 1;
        else if (n > 0 || (events & UV_DISCONNECT)) {
            /* The client sent bytes (a pipelined request?) or half-closed with data
             * pending: nothing to learn here, and a level-triggered poll would spin. */
            bt_http__sse_unwatch(s);
            return;
        }
    }
    if (gone) {
        s->gone = 1;
        bt_http__req_resume(s->req); /* the reader ends the stream with an error */
    }
}

void bt_http__sse_watch(bt_http_sse *s)
{
    if (s->closed || s->fd < 0)
        return;
    if (!s->poll_init) {
        if (uv_poll_init_socket(s->srv->loop, &s->poll, s->fd) < 0) {
            s->fd = -1; /* fall back to detection on the next write */
            return;
        }
        s->poll.data = s;
        s->poll_init = 1;
        s->refs++;
    }
    if (!s->poll_active &&
        uv_poll_start(&s->poll, UV_READABLE | UV_DISCONNECT, on_socket_event) == 0)
        s->poll_active = 1;
}

void bt_http__sse_unwatch(bt_http_sse *s)
{
    if (s->poll_active) {
        uv_poll_stop(&s->poll);
        s->poll_active = 0;
    }
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    bt_http_sse *s = cls;
    if (s->gone || s->closed)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = s->buf.len - s->off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(out, s->buf.buf + s->off, n);
        s->off += n;
        if (s->off == s->buf.len) {
            bt_strbuf_reset(&s->buf);
            s->off = 0;
        }
        s->req->bytes += n;
        return (ssize_t)n;
    }
    if (s->ending)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to send: suspend (never return 0 otherwise) and watch for a hang-up. */
    MHD_suspend_connection(s->req->conn);
    s->req->suspended = 1;
    bt_http__sse_watch(s);
    return 0;
}

void bt_http__sse_closed(bt_http_sse *s)
{
    bt_http_server *srv = s->srv;
    s->closed = 1;
    bt_http__sse_unwatch(s);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    srv->nstreams--;
    if (srv->nstreams == 0 && srv->handles_init)
        uv_timer_stop(&srv->hb_timer);
    if (s->poll_init)
        uv_close((uv_handle_t *)&s->poll, on_poll_closed);
    s->req->sse = NULL;
    s->req = NULL;
    s->srv = NULL;
    if (s->on_close)
        s->on_close(s, s->ud);
    sse_unref(s); /* the owner's reference */
}

static void wake(bt_http_sse *s)
{
    if (s->req && s->req->suspended)
        bt_http__req_resume(s->req);
}

void bt_http__sse_end_all(bt_http_server *srv)
{
    for (bt_http_sse *s = srv->streams; s; s = s->next) {
        s->ending = 1;
        wake(s);
    }
}

static void on_heartbeat(uv_timer_t *t)
{
    bt_http_server *srv = t->data;
    int64_t now = bt_time_mono_ms();
    for (bt_http_sse *s = srv->streams; s; s = s->next) {
        if (s->ending || now - s->last_write_ms < srv->opts.sse_heartbeat_ms - 50)
            continue;
        bt_strbuf_addstr(&s->buf, ": heartbeat\n\n");
        s->last_write_ms = now;
        wake(s);
    }
}

void bt_http__sse_heartbeat_start(bt_http_server *srv)
{
    if (srv->handles_init && !uv_is_active((uv_handle_t *)&srv->hb_timer))
        uv_timer_start(&srv->hb_timer, on_heartbeat, (uint64_t)srv->opts.sse_heartbeat_ms,
                       (uint64_t)srv->opts.sse_heartbeat_ms);
}

bt_http_sse *bt_http_sse_start(bt_http_req *req, bt_http_sse_close_fn on_close, void *ud)
{
    if (req->finished || req->completed) {
        bt_http_respond_error(req, 500, "internal", "the stream could not be started");
        return NULL;
    }
    bt_http_server *srv = req->srv;
    bt_http_sse *s = bt_xcalloc(1, sizeof *s);
    s->refs = 2; /* owner + response */
    s->srv = srv;
    s->req = req;
    s->on_close = on_close;
    s->ud = ud;
    s->fd = -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        s->fd = ci->connect_fd;
    const char *leid = bt_http_req_header(req, "Last-Event-ID");
    s->last_event_id = leid ? bt_xstrdup(leid) : NULL;
    s->last_write_ms = bt_time_mono_ms();
    bt_strbuf_addstr(&s->buf, ": connected\n\n"); /* flushes headers through proxies */
    if (srv->sd_state != SD_NONE)
        s->ending = 1;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                                                  sse_reader, s, on_response_freed);
    if (!resp)
        abort(); /* allocation failure: mem.h policy */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    s->next = srv->streams;
    if (srv->streams)
        srv->streams->prev = s;
    srv->streams = s;
    srv->nstreams++;
    req->sse = s;
    bt_http__sse_heartbeat_start(srv);
    bt_http__set_response(req, 200, resp);
    return s;
}

/* "prefix value\n" with line breaks in value flattened (they would end the field). */
static void add_field(bt_strbuf *b, const char *prefix, const char *value)
{
    bt_strbuf_addstr(b, prefix);
    for (const char *p = value; *p; p++)
        bt_strbuf_addch(b, *p == '\n' || *p == '\r' ? ' ' : *p);
    bt_strbuf_addch(b, '\n');
}

static int sse_append(bt_http_sse *s, const char *text1, const char *id, const char *event,
                      const char *data)
{
    if (s->closed || s->ending || s->gone)
        return BT_ECANCELED;
    if (text1) {
        add_field(&s->buf, ": ", text1);
        bt_strbuf_addch(&s->buf, '\n');
    } else {
        if (id)
            add_field(&s->buf, "id: ", id);
        if (event)
            add_field(&s->buf, "event: ", event);
        const char *p = data ? data : "";
        for (;;) { /* one data: line per line; \n, \r\n and \r all end a line */
            size_t n = strcspn(p, "\r\n");
            bt_strbuf_addstr(&s->buf, "data: ");
            bt_strbuf_add(&s->buf, p, n);
            bt_strbuf_addch(&s->buf, '\n');
            if (!p[n])
                break;
            p += n + (p[n] == '\r' && p[n + 1] == '\n' ? 2 : 1);
        }
        bt_strbuf_addch(&s->buf, '\n');
    }
    s->last_write_ms = bt_time_mono_ms();
    if (s->buf.len - s->off > SSE_MAX_BUFFER) {
        bt_log_warn(s->srv->opts.log, "sse client too slow; ending its stream",
                    BT_LF_STR("peer", s->req->peer), BT_LF_INT("buffered", s->buf.len - s->off));
        s->gone = 1;
        wake(s);
        return BT_ETOOBIG;
    }
    wake(s);
    return 0;
}

int bt_http_sse_send(bt_http_sse *stream, const char *id, const char *event, const char *data)
{
    return sse_append(stream, NULL, id, event, data);
}

int bt_http_sse_comment(bt_http_sse *stream, const char *text)
{
    return sse_append(stream, text ? text : "", NULL, NULL, NULL);
}

void bt_http_sse_end(bt_http_sse *stream)
{
    if (stream->closed || stream->ending)
        return;
    stream->ending = 1;
    wake(stream);
}

const char *bt_http_sse_last_event_id(const bt_http_sse *stream)
{
    return stream->last_event_id;
}
