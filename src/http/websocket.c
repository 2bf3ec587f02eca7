/*
 * websocket.c - RFC 6455 framing and WebSocket connections on bt_http_server.
 *
 * The codec (first half) is pure: frames in, messages out, with every protocol rule a
 * server must enforce mapped to the close code the RFC asks for.
 *
 * Connections (second half). bt_http_ws_accept answers the request with libmicrohttpd's
 * upgrade response (101). Once MHD has sent it, it calls on_upgrade (inside MHD_run)
 * with the raw socket and an upgrade handle; from then on MHD keeps the connection
 * suspended and the socket is ours, watched by a uv_poll on the server's loop
 * (c-stack.md §5.1 items 8, 10, 11). Nothing that could end the connection runs inside
 * an MHD callback: on_upgrade only records the socket and starts a 0-ms timer that does
 * the first read and flush.
 *
 * Writes go through a per-connection buffer flushed with send(MSG_NOSIGNAL |
 * MSG_DONTWAIT) (SIGPIPE must not kill the daemon, §5.3 item 4); what the kernel does
 * not take waits for UV_WRITABLE. The buffer is bounded (max_buffered): a client that
 * falls further behind loses the unsent frames and gets a 1008 close. The buffer always
 * starts at a frame boundary, so that cut never splits a frame.
 *
 * Release, the only way a connection ends after the upgrade, always from a uv callback:
 * uv_poll_stop and uv_close on our watcher first, while the fd is still open (libuv
 * touches the fd in both, and once MHD closes it the number may be reused), then
 * MHD_upgrade_action(CLOSE), which makes MHD close the socket and finish the request
 * (NOTIFY_COMPLETED) on its next run, so the server is kicked. Server shutdown first
 * sends every connection a 1001 close and lets the draining period wait for the
 * replies; whatever is still open when MHD is about to stop is released then
 * (§5.4 step 3), so MHD_stop_daemon never sees an upgraded socket.
 *
 * Lifetime: a bt_http_ws is referenced by its request (accept .. NOTIFY_COMPLETED) and
 * by each uv handle (init .. close callback). The owner's pointer is valid until
 * on_close returns.
 */
#include "http/websocket.h"

#include "base/mem.h"
#include "base/time.h"
#include "http/server_impl.h"
#include "obs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define WS_GUID              "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define DEFAULT_MAX_MESSAGE  (1u << 20)
#define DEFAULT_MAX_BUFFERED (8u << 20)
#define DEFAULT_PING_MS      20000
#define DEFAULT_CLOSE_MS     2000
#define COMPACT_AT           (1u << 20)
#define READ_CHUNK           65536
#define READS_PER_CALLBACK   16
#define MAX_CONTROL_PAYLOAD  125

/* ------------------------------------------------------------------------------------
 * Handshake keys.
 */

int bt_ws_key_valid(const char *key)
{
    /* 16 bytes in base64: 22 characters and "==". */
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    unsigned char raw[24];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)key, 24);
    return n == 18; /* EVP_DecodeBlock counts the padding's zero bytes */
}

int bt_ws_accept_key(const char *key, char out[BT_WS_ACCEPT_LEN + 1])
{
    if (!bt_ws_key_valid(key))
        return BT_EINVAL;
    char cat[24 + sizeof WS_GUID];
    memcpy(cat, key, 24);
    memcpy(cat + 24, WS_GUID, sizeof WS_GUID);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, strlen(cat), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    out[BT_WS_ACCEPT_LEN] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------------------
 * UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
 */

int bt_ws_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else
            return 0;
        if (n - i - 1 < need)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------
 * Encoding.
 */

void bt_ws_frame_encode(bt_strbuf *out, int opcode, int fin, const void *payload, size_t len,
                        const uint8_t *mask)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        hdr[h++] = (uint8_t)(mbit | len);
    } else if (len <= 0xFFFF) {
        hdr[h++] = (uint8_t)(mbit | 126);
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = (uint8_t)(mbit | 127);
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(hdr + h, mask, 4);
        h += 4;
    }
    bt_strbuf_add(out, hdr, h);
    if (!len)
        return;
    size_t at = out->len;
    bt_strbuf_add(out, payload, len);
    if (mask) {
        uint8_t *p = (uint8_t *)out->buf + at;
        for (size_t i = 0; i < len; i++)
            p[i] ^= mask[i & 3];
    }
}

void bt_ws_close_encode(bt_strbuf *out, uint16_t code, const char *reason, const uint8_t *mask)
{
    char payload[MAX_CONTROL_PAYLOAD];
    size_t n = 0;
    if (code) {
        payload[n++] = (char)(code >> 8);
        payload[n++] = (char)(code & 0xFF);
        size_t rl = reason ? strlen(reason) : 0;
        if (rl > MAX_CONTROL_PAYLOAD - 2) {
            rl = MAX_CONTROL_PAYLOAD - 2;
            while (rl && ((unsigned char)reason[rl] & 0xC0) == 0x80)
                rl--; /* do not cut a character in half */
        }
        memcpy(payload + n, reason ? reason : "", rl);
        n += rl;
    }
    bt_ws_frame_encode(out, BT_WS_OP_CLOSE, 1, payload, n, mask);
}

size_t bt_ws_frame_size(const void *buf, size_t len)
{
    const uint8_t *b = buf;
    if (len < 2)
        return 0;
    size_t hdr = 2;
    uint64_t plen = b[1] & 0x7F;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = ((uint64_t)b[2] << 8) | b[3];
        hdr = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | b[2 + i];
        hdr = 10;
    }
    if (b[1] & 0x80)
        hdr += 4;
    if (len < hdr || len - hdr < plen)
        return 0;
    return hdr + (size_t)plen;
}

/* ------------------------------------------------------------------------------------
 * Parsing.
 */

void bt_ws_parser_init(bt_ws_parser *p, int require_mask, size_t max_message)
{
    memset(p, 0, sizeof *p);
    p->require_mask = require_mask;
    p->max_message = max_message ? max_message : DEFAULT_MAX_MESSAGE;
}

void bt_ws_parser_release(bt_ws_parser *p)
{
    bt_strbuf_release(&p->in);
    bt_strbuf_release(&p->msg);
    p->in_off = 0;
    p->msg_opcode = 0;
}

void bt_ws_parser_feed(bt_ws_parser *p, const void *data, size_t len)
{
    if (!p->failed && len)
        bt_strbuf_add(&p->in, data, len);
}

static int parse_fail(bt_ws_parser *p, uint16_t code, uint16_t *close_code, bt_error *err,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int parse_fail(bt_ws_parser *p, uint16_t code, uint16_t *close_code, bt_error *err,
                      const char *fmt, ...)
{
    p->failed = code;
    if (close_code)
        *close_code = code;
    va_list ap;
    va_start(ap, fmt);
    int rc = bt_verrorf(err, code == BT_WS_CLOSE_TOO_BIG ? BT_ETOOBIG : BT_EPARSE, fmt, ap);
    va_end(ap);
    return rc;
}

static int close_code_valid(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

int bt_ws_parser_next(bt_ws_parser *p, bt_ws_msg *m, uint16_t *close_code, bt_error *err)
{
    if (p->failed)
        return parse_fail(p, (uint16_t)p->failed, close_code, err,
                          "the WebSocket stream already failed");
    /* What the previous call handed out is no longer needed. */
    if (!p->msg_opcode && p->msg.len)
        bt_strbuf_reset(&p->msg);
    if (p->in_off && p->in_off == p->in.len) {
        bt_strbuf_reset(&p->in);
        p->in_off = 0;
    } else if (p->in_off > COMPACT_AT) {
        memmove(p->in.buf, p->in.buf + p->in_off, p->in.len - p->in_off);
        bt_strbuf_setlen(&p->in, p->in.len - p->in_off);
        p->in_off = 0;
    }

    uint8_t *b = (uint8_t *)p->in.buf + p->in_off;
    size_t avail = p->in.len - p->in_off;
    if (avail < 2)
        return 0;
    int fin = b[0] & 0x80, op = b[0] & 0x0F, masked = b[1] & 0x80;
    unsigned len7 = b[1] & 0x7F;
    if (b[0] & 0x70)
        return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                          "reserved bits set in a frame header (no extension was negotiated)");
    if (op != BT_WS_OP_CONT && op != BT_WS_OP_TEXT && op != BT_WS_OP_BINARY &&
        op != BT_WS_OP_CLOSE && op != BT_WS_OP_PING && op != BT_WS_OP_PONG)
        return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err, "unknown opcode 0x%X", op);
    int control = op & 0x8;
    if (control && !fin)
        return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                          "a control frame (opcode 0x%X) must not be fragmented", op);
    if (control && len7 > MAX_CONTROL_PAYLOAD)
        return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                          "a control frame's payload must be at most 125 bytes");
    if (p->require_mask && !masked)
        return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                          "frames from a client must be masked (RFC 6455 §5.1)");
    if (!p->require_mask && masked)
        return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                          "frames from a server must not be masked");
    size_t hdr = 2;
    uint64_t plen = len7;
    if (len7 == 126) {
        if (avail < 4)
            return 0;
        plen = ((uint64_t)b[2] << 8) | b[3];
        hdr = 4;
    } else if (len7 == 127) {
        if (avail < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | b[2 + i];
        hdr = 10;
        if (plen >> 63)
            return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                              "the most significant bit of a 64-bit frame length must be 0");
    }
    if (!control) {
        if (op == BT_WS_OP_CONT && !p->msg_opcode)
            return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                              "a continuation frame arrived with no message to continue");
        if (op != BT_WS_OP_CONT && p->msg_opcode)
            return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                              "a new message started before the fragmented one finished");
        if (plen > p->max_message || p->msg.len + plen > p->max_message)
            return parse_fail(p, BT_WS_CLOSE_TOO_BIG, close_code, err,
                              "a message over the limit of %zu bytes", p->max_message);
    }
    if (masked)
        hdr += 4;
    if (avail < hdr || avail - hdr < plen)
        return 0;
    uint8_t *payload = b + hdr;
    size_t n = (size_t)plen;
    if (masked) {
        const uint8_t *key = b + hdr - 4;
        for (size_t i = 0; i < n; i++)
            payload[i] ^= key[i & 3];
    }
    p->in_off += hdr + n;

    memset(m, 0, sizeof *m);
    if (control) {
        m->opcode = op;
        m->data = (const char *)payload;
        m->len = n;
        if (op == BT_WS_OP_CLOSE) {
            m->close_code = BT_WS_CLOSE_NO_STATUS;
            if (n == 1)
                return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                                  "a close frame with a 1-byte payload (the code needs 2)");
            if (n >= 2) {
                unsigned code = ((unsigned)payload[0] << 8) | payload[1];
                if (!close_code_valid(code))
                    return parse_fail(p, BT_WS_CLOSE_PROTOCOL, close_code, err,
                                      "invalid close code %u", code);
                if (!bt_ws_utf8_valid((const char *)payload + 2, n - 2))
                    return parse_fail(p, BT_WS_CLOSE_INVALID_DATA, close_code, err,
                                      "the close reason is not valid UTF-8");
                m->close_code = (uint16_t)code;
                m->data = (const char *)payload + 2;
                m->len = n - 2;
            }
        }
        return 1;
    }
    if (fin && op != BT_WS_OP_CONT) { /* a whole message in one frame */
        if (op == BT_WS_OP_TEXT && !bt_ws_utf8_valid((const char *)payload, n))
            return parse_fail(p, BT_WS_CLOSE_INVALID_DATA, close_code, err,
                              "a text message that is not valid UTF-8");
        m->opcode = op;
        m->data = (const char *)payload;
        m->len = n;
        return 1;
    }
    if (op != BT_WS_OP_CONT)
        p->msg_opcode = op;
    bt_strbuf_add(&p->msg, payload, n);
    if (!fin)
        return bt_ws_parser_next(p, m, close_code, err); /* keep going with what we have */
    if (p->msg_opcode == BT_WS_OP_TEXT && !bt_ws_utf8_valid(p->msg.buf, p->msg.len))
        return parse_fail(p, BT_WS_CLOSE_INVALID_DATA, close_code, err,
                          "a text message that is not valid UTF-8");
    m->opcode = p->msg_opcode;
    m->data = bt_strbuf_cstr(&p->msg);
    m->len = p->msg.len;
    p->msg_opcode = 0; /* msg is reset on the next call */
    return 1;
}

/* ------------------------------------------------------------------------------------
 * Connections.
 */

struct bt_http_ws {
    int refs;
    bt_http_server *srv; /* valid while linked (until NOTIFY_COMPLETED) */
    bt_http_req *req;    /* likewise */
    bt_http_ws *prev, *next;
    bt_http_ws_options opts;
    bt_http_ws_callbacks cb;
    void *ud;
    char peer[INET6_ADDRSTRLEN];
    bt_ws_parser parser;
    bt_strbuf out; /* starts at a frame boundary; [out_off, len) not yet sent */
    size_t out_off;
    int fd;
    struct MHD_UpgradeResponseHandle *urh;
    uv_poll_t poll;
    uv_timer_t timer;
    int poll_events;
    int64_t close_deadline; /* mono ms, once a close frame was queued */
    int close_code;         /* what on_close reports */
    char close_reason[MAX_CONTROL_PAYLOAD];
    unsigned upgraded : 1, poll_init : 1, timer_init : 1, started : 1, close_sent : 1,
        close_received : 1, released : 1, notified : 1, linked : 1, ping_outstanding : 1, heard : 1,
        in_send : 1;
};

static void ws_unref(bt_http_ws *ws)
{
    if (--ws->refs > 0)
        return;
    bt_ws_parser_release(&ws->parser);
    bt_strbuf_release(&ws->out);
    free(ws);
}

static void on_handle_closed(uv_handle_t *h)
{
    ws_unref(h->data);
}

static void ws_notify(bt_http_ws *ws)
{
    if (ws->notified)
        return;
    ws->notified = 1;
    int code = ws->close_code ? ws->close_code : BT_WS_CLOSE_ABNORMAL;
    if (ws->cb.on_close)
        ws->cb.on_close(ws, code, ws->close_reason, ws->ud);
    ws->cb.on_close = NULL;
    ws->cb.on_message = NULL;
    ws->cb.on_drain = NULL;
}

static void close_handles(bt_http_ws *ws)
{
    if (ws->poll_init) {
        uv_poll_stop(&ws->poll);
        uv_close((uv_handle_t *)&ws->poll, on_handle_closed);
        ws->poll_init = 0;
    }
    if (ws->timer_init) {
        uv_timer_stop(&ws->timer);
        uv_close((uv_handle_t *)&ws->timer, on_handle_closed);
        ws->timer_init = 0;
    }
}

/* End an upgraded connection. Only from uv callbacks (never inside MHD). */
static void ws_release(bt_http_ws *ws)
{
    if (ws->released)
        return;
    ws->released = 1;
    /* Our watcher goes first, while the fd is still open (see the top comment). */
    close_handles(ws);
    if (ws->urh) {
        MHD_upgrade_action(ws->urh, MHD_UPGRADE_ACTION_CLOSE);
        ws->urh = NULL;
        if (ws->srv)
            bt_http__kick(ws->srv); /* MHD finishes the request on its next run */
    }
    ws_notify(ws);
}

static void set_close_code(bt_http_ws *ws, int code, const char *reason, size_t rlen)
{
    ws->close_code = code;
    if (rlen >= sizeof ws->close_reason)
        rlen = sizeof ws->close_reason - 1;
    memcpy(ws->close_reason, reason ? reason : "", reason ? rlen : 0);
    ws->close_reason[reason ? rlen : 0] = '\0';
}

static void arm_timer(bt_http_ws *ws);
static void on_poll(uv_poll_t *p, int status, int events);

static void update_poll(bt_http_ws *ws)
{
    if (!ws->poll_init || ws->released)
        return;
    int want = UV_READABLE | UV_DISCONNECT | (ws->out.len > ws->out_off ? UV_WRITABLE : 0);
    if (want == ws->poll_events)
        return;
    if (uv_poll_start(&ws->poll, want, on_poll) == 0)
        ws->poll_events = want;
}

/* Write what the kernel takes. Releases the connection on a send error, and once a
 * finished close handshake has been flushed. */
static void ws_flush(bt_http_ws *ws)
{
    if (!ws->upgraded || ws->released)
        return;
    int had = ws->out.len > ws->out_off;
    while (ws->out_off < ws->out.len) {
        ssize_t n = send(ws->fd, ws->out.buf + ws->out_off, ws->out.len - ws->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            ws->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (!ws->close_code)
            set_close_code(ws, BT_WS_CLOSE_ABNORMAL, "connection lost", 15);
        ws_release(ws);
        return;
    }
    if (ws->out_off == ws->out.len) {
        bt_strbuf_reset(&ws->out);
        ws->out_off = 0;
        if (ws->close_sent && ws->close_received) {
            ws_release(ws); /* the handshake is complete and our close is out */
            return;
        }
        if (had && !ws->in_send && !ws->close_sent && ws->cb.on_drain)
            ws->cb.on_drain(ws, ws->ud);
    } else if (ws->out_off > COMPACT_AT) {
        /* Keep the buffer starting at a frame boundary: drop only whole sent frames. */
        size_t at = 0;
        for (;;) {
            size_t f = bt_ws_frame_size(ws->out.buf + at, ws->out.len - at);
            if (!f || at + f > ws->out_off)
                break;
            at += f;
        }
        if (at) {
            memmove(ws->out.buf, ws->out.buf + at, ws->out.len - at);
            bt_strbuf_setlen(&ws->out, ws->out.len - at);
            ws->out_off -= at;
        }
    }
    update_poll(ws);
}

static void queue_close(bt_http_ws *ws, int code, const char *reason)
{
    if (ws->close_sent)
        return;
    ws->close_sent = 1;
    if (!ws->close_code)
        set_close_code(ws, code, reason, reason ? strlen(reason) : 0);
    uint16_t wire = code == BT_WS_CLOSE_NO_STATUS ? 0 : (uint16_t)code;
    bt_ws_close_encode(&ws->out, wire, reason, NULL);
    ws->close_deadline = bt_time_mono_ms() + ws->opts.close_timeout_ms;
    arm_timer(ws);
}

static void ws_protocol_error(bt_http_ws *ws, uint16_t code, const bt_error *err)
{
    bt_log_debug(ws->srv ? ws->srv->opts.log : NULL, "websocket protocol error",
                 BT_LF_STR("peer", ws->peer), BT_LF_INT("close_code", code),
                 BT_LF_STR("detail", err->msg));
    /* The peer broke the protocol: no point waiting for its close reply. */
    queue_close(ws, code, err->msg);
    ws->close_received = 1;
}

static void process_input(bt_http_ws *ws)
{
    bt_ws_msg m;
    uint16_t code = 0;
    bt_error err = BT_ERROR_INIT;
    int rc;
    while (!ws->released && (rc = bt_ws_parser_next(&ws->parser, &m, &code, &err)) != 0) {
        if (rc < 0) {
            ws_protocol_error(ws, code, &err);
            break;
        }
        ws->heard = 1;
        ws->ping_outstanding = 0;
        switch (m.opcode) {
        case BT_WS_OP_TEXT:
        case BT_WS_OP_BINARY:
            if (!ws->close_sent && ws->cb.on_message)
                ws->cb.on_message(ws, m.opcode == BT_WS_OP_BINARY, m.data, m.len, ws->ud);
            break;
        case BT_WS_OP_PING:
            if (!ws->close_sent)
                bt_ws_frame_encode(&ws->out, BT_WS_OP_PONG, 1, m.data, m.len, NULL);
            break;
        case BT_WS_OP_PONG:
            break;
        case BT_WS_OP_CLOSE:
            ws->close_received = 1;
            if (!ws->close_sent) {
                /* Echo the peer's code (RFC 6455 §5.5.1); it is what on_close reports. */
                set_close_code(ws, m.close_code, m.data, m.len);
                char reason[MAX_CONTROL_PAYLOAD];
                snprintf(reason, sizeof reason, "%.*s", (int)m.len, m.data);
                queue_close(ws, m.close_code, reason);
            }
            return; /* nothing after a close frame counts */
        }
    }
}

static void do_read(bt_http_ws *ws)
{
    char buf[READ_CHUNK];
    for (int i = 0; i < READS_PER_CALLBACK && !ws->released; i++) {
        ssize_t n = recv(ws->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            if (ws->close_received)
                continue; /* discard anything after the peer's close */
            bt_ws_parser_feed(&ws->parser, buf, (size_t)n);
            process_input(ws);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF or a reset: the peer is gone. */
        if (!ws->close_received && !ws->close_code)
            set_close_code(ws, BT_WS_CLOSE_ABNORMAL, "connection closed without a close frame", 39);
        ws_release(ws);
        return;
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    bt_http_ws *ws = p->data;
    if (ws->released)
        return;
    if (status < 0) {
        if (!ws->close_code)
            set_close_code(ws, BT_WS_CLOSE_ABNORMAL, "socket error", 12);
        ws_release(ws);
        return;
    }
    if (events & (UV_READABLE | UV_DISCONNECT))
        do_read(ws);
    ws_flush(ws);
}

static void on_timer(uv_timer_t *t)
{
    bt_http_ws *ws = t->data;
    if (ws->released)
        return;
    if (!ws->poll_init) {
        /* The socket could not be watched (see on_upgrade). */
        set_close_code(ws, BT_WS_CLOSE_INTERNAL, "cannot watch the socket", 23);
        ws_release(ws);
        return;
    }
    if (!ws->started) {
        ws->started = 1;
        uv_poll_start(&ws->poll, UV_READABLE | UV_DISCONNECT, on_poll);
        ws->poll_events = UV_READABLE | UV_DISCONNECT;
        process_input(ws); /* what MHD read past the request headers */
        ws_flush(ws);
        if (!ws->released)
            arm_timer(ws);
        return;
    }
    int64_t now = bt_time_mono_ms();
    if (ws->close_sent) {
        if (now >= ws->close_deadline) {
            ws_release(ws); /* no close reply in time */
            return;
        }
        arm_timer(ws);
        return;
    }
    if (ws->ping_outstanding && !ws->heard) {
        bt_log_info(ws->srv ? ws->srv->opts.log : NULL, "websocket client silent; dropping it",
                    BT_LF_STR("peer", ws->peer),
                    BT_LF_INT("ping_interval_ms", ws->opts.ping_interval_ms));
        set_close_code(ws, BT_WS_CLOSE_GOING_AWAY, "no answer to ping", 17);
        queue_close(ws, BT_WS_CLOSE_GOING_AWAY, "no answer to ping");
        ws_flush(ws);
        ws_release(ws);
        return;
    }
    ws->heard = 0;
    ws->ping_outstanding = 1;
    bt_ws_frame_encode(&ws->out, BT_WS_OP_PING, 1, "baton", 5, NULL);
    ws_flush(ws);
    if (!ws->released)
        arm_timer(ws);
}

static void arm_timer(bt_http_ws *ws)
{
    if (!ws->timer_init || ws->released || !ws->started)
        return;
    if (ws->close_sent) {
        int64_t left = ws->close_deadline - bt_time_mono_ms();
        uv_timer_start(&ws->timer, on_timer, (uint64_t)(left > 0 ? left : 0), 0);
    } else if (ws->opts.ping_interval_ms > 0 && !uv_is_active((uv_handle_t *)&ws->timer)) {
        uv_timer_start(&ws->timer, on_timer, (uint64_t)ws->opts.ping_interval_ms, 0);
    }
}

/* MHD has sent the 101 and hands over the socket. Inside MHD_run: record and defer. */
static void on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)conn, (void)con_cls;
    bt_http_ws *ws = cls;
    ws->fd = sock;
    ws->urh = urh;
    ws->upgraded = 1;
    int fl = fcntl(sock, F_GETFL);
    if (fl >= 0)
        fcntl(sock, F_SETFL, fl | O_NONBLOCK);
    uv_loop_t *loop = ws->srv->loop;
    uv_timer_init(loop, &ws->timer);
    ws->timer.data = ws;
    ws->timer_init = 1;
    ws->refs++;
    if (uv_poll_init_socket(loop, &ws->poll, sock) == 0) {
        ws->poll.data = ws;
        ws->poll_init = 1;
        ws->refs++;
    }
    if (extra_in_size)
        bt_ws_parser_feed(&ws->parser, extra_in, extra_in_size);
    uv_timer_start(&ws->timer, on_timer, 0, 0);
}

/* Does a comma-separated header value hold token (case-insensitive)? */
static int header_has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        size_t n = strcspn(v, ",");
        size_t e = n;
        while (e && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e == tl && strncasecmp(v, token, tl) == 0)
            return 1;
        v += n;
    }
    return 0;
}

bt_http_ws *bt_http_ws_accept(bt_http_req *req, const bt_http_ws_options *opts,
                              const bt_http_ws_callbacks *cb, void *ud)
{
    if (req->finished || req->completed) {
        bt_http_respond_error(req, 500, "internal", "the WebSocket could not be accepted");
        return NULL;
    }
    bt_http_server *srv = req->srv;
    if (srv->sd_state != SD_NONE) {
        bt_http_respond_error(req, 503, "shutting_down", "the server is shutting down; retry");
        return NULL;
    }
    const char *upgrade = bt_http_req_header(req, "Upgrade");
    const char *connection = bt_http_req_header(req, "Connection");
    const char *version = bt_http_req_header(req, "Sec-WebSocket-Version");
    const char *key = bt_http_req_header(req, "Sec-WebSocket-Key");
    if (!upgrade || !header_has_token(upgrade, "websocket")) {
        bt_http_resp_header(req, "Upgrade", "websocket");
        bt_http_resp_header(req, "Sec-WebSocket-Version", "13");
        bt_http_respond_error(req, 426, "upgrade_required",
                              "%s is a WebSocket endpoint: connect with a WebSocket client "
                              "(Upgrade: websocket, Sec-WebSocket-Version: 13)",
                              bt_http_req_path(req));
        return NULL;
    }
    if (!connection || !header_has_token(connection, "upgrade")) {
        bt_http_respond_error(req, 400, "bad_handshake",
                              "the WebSocket handshake needs 'Connection: Upgrade'");
        return NULL;
    }
    if (!version || strcmp(version, "13") != 0) {
        bt_http_resp_header(req, "Sec-WebSocket-Version", "13");
        bt_http_respond_error(req, 426, "unsupported_version",
                              "WebSocket version '%s' is not supported; use 13 (RFC 6455)",
                              version ? version : "(none)");
        return NULL;
    }
    char accept[BT_WS_ACCEPT_LEN + 1];
    if (bt_ws_accept_key(key, accept) < 0) {
        bt_http_respond_error(req, 400, "bad_handshake",
                              "Sec-WebSocket-Key must be the base64 encoding of 16 random bytes "
                              "(24 characters ending in '==')");
        return NULL;
    }
    if (!cb || !cb->on_close) {
        bt_http_respond_error(req, 500, "internal", "the WebSocket has no close callback");
        return NULL;
    }

    bt_http_ws *ws = bt_xcalloc(1, sizeof *ws);
    ws->refs = 1; /* the request's, dropped in NOTIFY_COMPLETED */
    ws->srv = srv;
    ws->req = req;
    ws->cb = *cb;
    ws->ud = ud;
    ws->fd = -1;
    if (opts)
        ws->opts = *opts;
    if (!ws->opts.max_message)
        ws->opts.max_message = DEFAULT_MAX_MESSAGE;
    if (!ws->opts.max_buffered)
        ws->opts.max_buffered = DEFAULT_MAX_BUFFERED;
    if (!ws->opts.ping_interval_ms)
        ws->opts.ping_interval_ms = DEFAULT_PING_MS;
    if (ws->opts.close_timeout_ms <= 0)
        ws->opts.close_timeout_ms = DEFAULT_CLOSE_MS;
    snprintf(ws->peer, sizeof ws->peer, "%s", req->peer);
    bt_ws_parser_init(&ws->parser, 1, ws->opts.max_message);
    ws->next = srv->websockets;
    if (srv->websockets)
        srv->websockets->prev = ws;
    srv->websockets = ws;
    srv->nwebsockets++;
    ws->linked = 1;
    req->ws = ws;

    struct MHD_Response *resp = MHD_create_response_for_upgrade(on_upgrade, ws);
    if (!resp)
        abort(); /* allocation failure: mem.h policy */
    MHD_add_response_header(resp, "Upgrade", "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    bt_http__set_response(req, 101, resp);
    return ws;
}

int bt_http_ws_send(bt_http_ws *ws, int binary, const char *data, size_t len)
{
    if (ws->released || ws->close_sent)
        return BT_ECANCELED;
    size_t pending = ws->out.len - ws->out_off;
    if (pending + len + 14 > ws->opts.max_buffered) {
        bt_log_warn(ws->srv ? ws->srv->opts.log : NULL,
                    "websocket client too slow; closing it (1008)", BT_LF_STR("peer", ws->peer),
                    BT_LF_INT("buffered", pending));
        /* Drop every frame not yet started, so the close frame goes out next. */
        size_t at = 0;
        while (at < ws->out_off) {
            size_t f = bt_ws_frame_size(ws->out.buf + at, ws->out.len - at);
            if (!f)
                break;
            at += f;
        }
        bt_strbuf_setlen(&ws->out, at > ws->out_off ? at : ws->out_off);
        queue_close(ws, BT_WS_CLOSE_POLICY, "client too slow: outgoing buffer limit exceeded");
        ws_flush(ws);
        return BT_ETOOBIG;
    }
    bt_ws_frame_encode(&ws->out, binary ? BT_WS_OP_BINARY : BT_WS_OP_TEXT, 1, data, len, NULL);
    ws->in_send = 1;
    ws_flush(ws);
    ws->in_send = 0;
    return 0;
}

void bt_http_ws_close(bt_http_ws *ws, int code, const char *reason)
{
    if (ws->released || ws->close_sent)
        return;
    if (!close_code_valid((unsigned)code) || code == BT_WS_CLOSE_NO_STATUS)
        code = BT_WS_CLOSE_NORMAL;
    queue_close(ws, code, reason);
    ws_flush(ws);
}

size_t bt_http_ws_buffered(const bt_http_ws *ws)
{
    return ws->out.len - ws->out_off;
}

const char *bt_http_ws_peer(const bt_http_ws *ws)
{
    return ws->peer;
}

size_t bt_http_server_active_websockets(const bt_http_server *srv)
{
    return srv->nwebsockets;
}

/* ----- Hooks for server.c. */

void bt_http__ws_completed(bt_http_ws *ws)
{
    /* MHD is done with the request: after our release, or (not upgraded) the client
     * went away before the 101 went out, or the daemon stopped. */
    bt_http_server *srv = ws->srv;
    if (ws->linked) {
        if (ws->prev)
            ws->prev->next = ws->next;
        else
            srv->websockets = ws->next;
        if (ws->next)
            ws->next->prev = ws->prev;
        ws->prev = ws->next = NULL;
        srv->nwebsockets--;
        ws->linked = 0;
    }
    if (ws->req)
        ws->req->ws = NULL;
    ws->req = NULL;
    ws->srv = NULL;
    if (!ws->released) {
        ws->released = 1;
        ws->urh = NULL; /* MHD has let go of it */
        close_handles(ws);
        ws_notify(ws);
    }
    ws_unref(ws);
}

void bt_http__ws_close_all(bt_http_server *srv, int code, const char *reason)
{
    for (bt_http_ws *ws = srv->websockets; ws; ws = ws->next)
        if (!ws->released && !ws->close_sent) {
            queue_close(ws, code, reason);
            ws_flush(ws);
        }
}

void bt_http__ws_release_all(bt_http_server *srv)
{
    for (bt_http_ws *ws = srv->websockets; ws; ws = ws->next)
        if (ws->upgraded && !ws->released) {
            ws_flush(ws); /* a last chance for the close frame */
            ws_release(ws);
        }
}
