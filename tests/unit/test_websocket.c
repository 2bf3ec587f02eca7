/*
 * test_websocket.c - RFC 6455: the framing codec (accept key, encode/decode with and
 * without masks, the 125/126/65535/65536 length boundaries, fragmentation with control
 * frames in between, every protocol violation and its close code), and real
 * connections through bt_http_server on a loop, driven by a raw-socket client on a
 * second thread: handshake and bad handshakes, echo, ping/pong, server pings and the
 * drop of a silent client, the close handshake, 1002 and 1009 closes, and server
 * shutdown closing an open socket with 1001 before uv_loop_close() == 0.
 */
#include "testutil.h"

#include "base/strbuf.h"
#include "http/websocket.h"
#include "obs/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ----- Codec. */

static void test_accept_key(void **state)
{
    (void)state;
    char out[BT_WS_ACCEPT_LEN + 1];
    /* The example of RFC 6455 §1.3. */
    assert_int_equal(bt_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(bt_ws_accept_key("short", out), BT_EINVAL);
    assert_int_equal(bt_ws_accept_key(NULL, out), BT_EINVAL);
    assert_false(bt_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=")); /* 23 chars */
    assert_false(bt_ws_key_valid("dGhlIHNhbXBsZSBub25j!!=="));
    assert_true(bt_ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(bt_ws_utf8_valid("hello", 5));
    assert_true(bt_ws_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* é € 😀 */
    assert_false(bt_ws_utf8_valid("\xc0\xaf", 2));                            /* overlong */
    assert_false(bt_ws_utf8_valid("\xed\xa0\x80", 3));                        /* surrogate */
    assert_false(bt_ws_utf8_valid("\xf4\x90\x80\x80", 4));                    /* > U+10FFFF */
    assert_false(bt_ws_utf8_valid("\xe2\x82", 2));                            /* truncated */
    assert_false(bt_ws_utf8_valid("\xff", 1));
}

/* Encode a frame of len bytes (client side, masked), parse it back on the server side. */
static void roundtrip(size_t len, size_t expect_hdr)
{
    char *payload = calloc(1, len ? len : 1);
    for (size_t i = 0; i < len; i++)
        payload[i] = (char)('a' + i % 26);
    bt_strbuf b = BT_STRBUF_INIT;
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 1, payload, len, MASK);
    assert_int_equal(b.len, expect_hdr + 4 + len);
    assert_int_equal(bt_ws_frame_size(b.buf, b.len), b.len);
    assert_int_equal(bt_ws_frame_size(b.buf, b.len - 1), 0);
    if (len)
        assert_memory_not_equal(b.buf + expect_hdr + 4, payload, len < 4 ? len : 4); /* masked */

    bt_ws_parser p;
    bt_ws_parser_init(&p, 1, 1 << 20);
    /* Byte by byte for the header, then the rest: never a message too early. */
    bt_ws_msg m;
    bt_error err = BT_ERROR_INIT;
    size_t fed = 0;
    for (; fed < expect_hdr + 4 && fed < b.len - 1; fed++) {
        bt_ws_parser_feed(&p, b.buf + fed, 1);
        assert_int_equal(bt_ws_parser_next(&p, &m, NULL, &err), 0);
    }
    bt_ws_parser_feed(&p, b.buf + fed, b.len - fed);
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, &err), 1);
    assert_int_equal(m.opcode, BT_WS_OP_TEXT);
    assert_int_equal(m.len, len);
    if (len)
        assert_memory_equal(m.data, payload, len);
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, &err), 0);
    bt_ws_parser_release(&p);
    bt_strbuf_release(&b);
    free(payload);
}

static void test_length_boundaries(void **state)
{
    (void)state;
    roundtrip(0, 2);
    roundtrip(125, 2);
    roundtrip(126, 4);
    roundtrip(65535, 4);
    roundtrip(65536, 10);
    roundtrip(200000, 10);

    /* Server frames are unmasked, with the same length encodings. */
    bt_strbuf b = BT_STRBUF_INIT;
    bt_ws_frame_encode(&b, BT_WS_OP_BINARY, 1, NULL, 0, NULL);
    assert_int_equal(b.len, 2);
    assert_int_equal((uint8_t)b.buf[0], 0x82);
    assert_int_equal((uint8_t)b.buf[1], 0x00);
    bt_strbuf_reset(&b);
    char big[70000] = {0};
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 1, big, 126, NULL);
    assert_int_equal((uint8_t)b.buf[1], 126);
    assert_int_equal((uint8_t)b.buf[2], 0);
    assert_int_equal((uint8_t)b.buf[3], 126);
    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 1, big, 65536, NULL);
    assert_int_equal((uint8_t)b.buf[1], 127);
    assert_int_equal((uint8_t)b.buf[7], 1); /* 0x0000000000010000 */
    assert_int_equal((uint8_t)b.buf[8], 0);
    assert_int_equal(b.len, 10 + 65536);

    /* A client parser reads it back. */
    bt_ws_parser p;
    bt_ws_parser_init(&p, 0, 1 << 20);
    bt_ws_parser_feed(&p, b.buf, b.len);
    bt_ws_msg m;
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, NULL), 1);
    assert_int_equal(m.len, 65536);
    bt_ws_parser_release(&p);
    bt_strbuf_release(&b);
}

static void test_fragmentation(void **state)
{
    (void)state;
    bt_strbuf b = BT_STRBUF_INIT;
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 0, "Hel", 3, MASK);
    bt_ws_frame_encode(&b, BT_WS_OP_PING, 1, "p", 1, MASK); /* control in between */
    bt_ws_frame_encode(&b, BT_WS_OP_CONT, 0, "lo, ", 4, MASK);
    bt_ws_frame_encode(&b, BT_WS_OP_CONT, 1, "world", 5, MASK);
    bt_ws_frame_encode(&b, BT_WS_OP_PONG, 1, NULL, 0, MASK);
    bt_ws_parser p;
    bt_ws_parser_init(&p, 1, 0);
    bt_ws_parser_feed(&p, b.buf, b.len);
    bt_ws_msg m;
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, NULL), 1);
    assert_int_equal(m.opcode, BT_WS_OP_PING);
    assert_int_equal(m.len, 1);
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, NULL), 1);
    assert_int_equal(m.opcode, BT_WS_OP_TEXT);
    assert_int_equal(m.len, 12);
    assert_memory_equal(m.data, "Hello, world", 12);
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, NULL), 1);
    assert_int_equal(m.opcode, BT_WS_OP_PONG);
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, NULL), 0);
    bt_ws_parser_release(&p);
    bt_strbuf_release(&b);
}

static void test_close_frames(void **state)
{
    (void)state;
    bt_strbuf b = BT_STRBUF_INIT;
    bt_ws_close_encode(&b, 1001, "going away", MASK);
    bt_ws_close_encode(&b, 0, NULL, MASK);
    bt_ws_parser p;
    bt_ws_parser_init(&p, 1, 0);
    bt_ws_parser_feed(&p, b.buf, b.len);
    bt_ws_msg m;
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, NULL), 1);
    assert_int_equal(m.opcode, BT_WS_OP_CLOSE);
    assert_int_equal(m.close_code, 1001);
    assert_int_equal(m.len, 10);
    assert_memory_equal(m.data, "going away", 10);
    assert_int_equal(bt_ws_parser_next(&p, &m, NULL, NULL), 1);
    assert_int_equal(m.close_code, BT_WS_CLOSE_NO_STATUS);
    bt_ws_parser_release(&p);

    /* A long reason is cut to fit a control frame, at a character boundary. */
    char reason[300];
    memset(reason, 'x', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    memcpy(reason + 122, "\xe2\x82\xac", 3); /* € across the 123-byte limit */
    bt_strbuf_reset(&b);
    bt_ws_close_encode(&b, 1000, reason, NULL);
    assert_int_equal((uint8_t)b.buf[1], 2 + 122);
    bt_strbuf_release(&b);
}

/* Feed raw bytes to a server-side parser; expect an error with close code. */
static void expect_violation(const void *bytes, size_t n, uint16_t want_code, const char *want_msg)
{
    bt_ws_parser p;
    bt_ws_parser_init(&p, 1, 1024);
    bt_ws_parser_feed(&p, bytes, n);
    bt_ws_msg m;
    uint16_t code = 0;
    bt_error err = BT_ERROR_INIT;
    int rc;
    while ((rc = bt_ws_parser_next(&p, &m, &code, &err)) == 1)
        ;
    assert_true(rc < 0);
    assert_int_equal(code, want_code);
    assert_non_null(strstr(err.msg, want_msg));
    /* It stays failed. */
    code = 0;
    assert_true(bt_ws_parser_next(&p, &m, &code, NULL) < 0);
    assert_int_equal(code, want_code);
    bt_ws_parser_release(&p);
}

static void test_violations(void **state)
{
    (void)state;
    bt_strbuf b = BT_STRBUF_INIT;

    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 1, "hi", 2, NULL);
    expect_violation(b.buf, b.len, 1002, "must be masked");

    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 1, "hi", 2, MASK);
    b.buf[0] |= 0x40; /* RSV1 */
    expect_violation(b.buf, b.len, 1002, "reserved bits");

    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, 0x3, 1, "hi", 2, MASK);
    expect_violation(b.buf, b.len, 1002, "unknown opcode 0x3");

    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, BT_WS_OP_PING, 0, "hi", 2, MASK);
    expect_violation(b.buf, b.len, 1002, "must not be fragmented");

    bt_strbuf_reset(&b);
    char big[200] = {0};
    bt_ws_frame_encode(&b, BT_WS_OP_PING, 1, big, 126, MASK);
    expect_violation(b.buf, b.len, 1002, "at most 125 bytes");

    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, BT_WS_OP_CONT, 1, "hi", 2, MASK);
    expect_violation(b.buf, b.len, 1002, "no message to continue");

    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 0, "a", 1, MASK);
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 1, "b", 1, MASK);
    expect_violation(b.buf, b.len, 1002, "before the fragmented one finished");

    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 1, "\xc3\x28", 2, MASK);
    expect_violation(b.buf, b.len, 1007, "not valid UTF-8");

    bt_strbuf_reset(&b); /* invalid UTF-8 split across fragments */
    bt_ws_frame_encode(&b, BT_WS_OP_TEXT, 0, "\xe2\x82", 2, MASK);
    bt_ws_frame_encode(&b, BT_WS_OP_CONT, 1, "x", 1, MASK);
    expect_violation(b.buf, b.len, 1007, "not valid UTF-8");

    bt_strbuf_reset(&b);
    bt_ws_frame_encode(&b, BT_WS_OP_CLOSE, 1, "\x03", 1, MASK);
    expect_violation(b.buf, b.len, 1002, "1-byte payload");

    bt_strbuf_reset(&b);
    bt_ws_close_encode(&b, 1005, NULL, MASK); /* never sent on the wire */
    expect_violation(b.buf, b.len, 1002, "invalid close code 1005");

    bt_strbuf_reset(&b);
    bt_ws_close_encode(&b, 1000, "\xff", MASK);
    expect_violation(b.buf, b.len, 1007, "close reason");

    /* Over the limit (1024 here): known from the header alone, nothing is buffered. */
    bt_strbuf_reset(&b);
    const uint8_t huge[] = {0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4};
    expect_violation(huge, sizeof huge, 1009, "over the limit of 1024");
    bt_ws_frame_encode(&b, BT_WS_OP_BINARY, 0, big, 200, MASK);
    for (int i = 0; i < 5; i++)
        bt_ws_frame_encode(&b, BT_WS_OP_CONT, 0, big, 200, MASK); /* 1200 in fragments */
    expect_violation(b.buf, b.len, 1009, "over the limit");
    bt_strbuf_release(&b);
}

/* ----- Real connections. */

typedef struct server_ctx {
    uv_loop_t loop;
    bt_http_server *srv;
    uint16_t port;
    uv_async_t async;
    int closes[16]; /* close codes the server reported, in order */
    int nclose;
    int down;
    int async_sent; /* written by the client thread only */
    int flood_sent, flood_rc;
} server_ctx;

static void srv_on_message(bt_http_ws *ws, int binary, const char *data, size_t len, void *ud)
{
    server_ctx *c = ud;
    if (len == 5 && memcmp(data, "flood", 5) == 0) {
        /* 64 KiB messages until the socket and then the 1 MiB buffer are full. */
        static const char big[65536];
        int rc = 0, sent = 0;
        while (rc == 0 && sent < 1000) {
            rc = bt_http_ws_send(ws, 1, big, sizeof big);
            sent += rc == 0;
        }
        c->flood_sent = sent;
        c->flood_rc = rc;
        return;
    }
    bt_http_ws_send(ws, binary, data, len); /* echo */
}

static void srv_on_close(bt_http_ws *ws, int code, const char *reason, void *ud)
{
    (void)ws, (void)reason;
    server_ctx *c = ud;
    if (c->nclose < 16)
        c->closes[c->nclose++] = code;
}

static void h_ws(bt_http_req *req, void *ud)
{
    server_ctx *c = ud;
    bt_http_ws_options o = {.max_message = 1024,
                            .max_buffered = 1 << 20,
                            .ping_interval_ms = 150,
                            .close_timeout_ms = 3000};
    bt_http_ws_callbacks cb = {srv_on_message, NULL, srv_on_close};
    bt_http_ws *ws = bt_http_ws_accept(req, &o, &cb, c);
    if (ws)
        bt_http_ws_send(ws, 0, "hello", 5); /* buffered until the upgrade completes */
}

/* Sends far more than max_buffered before the client can read anything. */
static void h_flood(bt_http_req *req, void *ud)
{
    server_ctx *c = ud;
    bt_http_ws_options o = {.max_buffered = 16384, .ping_interval_ms = -1};
    bt_http_ws_callbacks cb = {NULL, NULL, srv_on_close};
    bt_http_ws *ws = bt_http_ws_accept(req, &o, &cb, c);
    char msg[1000];
    memset(msg, 'm', sizeof msg);
    int rc = 0, sent = 0;
    while (ws && rc == 0 && sent < 100) {
        rc = bt_http_ws_send(ws, 0, msg, sizeof msg);
        sent += rc == 0;
    }
    c->flood_sent = sent;
    c->flood_rc = rc;
}

static void on_down(bt_http_server *srv, void *ud)
{
    (void)srv;
    server_ctx *c = ud;
    c->down = 1;
}

static void on_async(uv_async_t *a)
{
    server_ctx *c = a->data;
    bt_http_server_shutdown(c->srv, on_down, c);
    uv_close((uv_handle_t *)a, NULL);
}

/* Client side: blocking sockets with a timeout, on the test thread. */

typedef struct client_result {
    int ok;
    char fail[8192];
} client_result;

#define CHECK(r, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf((r)->fail, sizeof(r)->fail, __VA_ARGS__);                                     \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static int cli_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void cli_send(int fd, const void *b, size_t n)
{
    const char *p = b;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Send a request, read the response head into buf (NUL-terminated). Returns the
 * status, or -1. */
static int cli_handshake(int fd, const char *extra_headers, char *buf, size_t cap)
{
    char req[1024];
    snprintf(req, sizeof req, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", extra_headers);
    cli_send(fd, req, strlen(req));
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = recv(fd, buf + n, 1, 0);
        if (r <= 0)
            return -1;
        n++;
        buf[n] = '\0';
        if (n >= 4 && strcmp(buf + n - 4, "\r\n\r\n") == 0)
            break;
    }
    int status = -1;
    sscanf(buf, "HTTP/1.1 %d", &status);
    return status;
}

#define GOOD_HEADERS                                                                               \
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"                   \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

/* Read one frame (unmasked, from the server). Returns the opcode, -1 on EOF/timeout. */
static int cli_frame(int fd, char *payload, size_t cap, size_t *len)
{
    uint8_t h[10];
    if (recv(fd, h, 2, MSG_WAITALL) != 2)
        return -1;
    size_t n = h[1] & 0x7F;
    if (n == 126) {
        if (recv(fd, h + 2, 2, MSG_WAITALL) != 2)
            return -1;
        n = ((size_t)h[2] << 8) | h[3];
    } else if (n == 127) {
        if (recv(fd, h + 2, 8, MSG_WAITALL) != 8)
            return -1;
        n = 0;
        for (int i = 2; i < 10; i++)
            n = (n << 8) | h[i];
    }
    if (n > cap)
        return -1;
    if (n && recv(fd, payload, n, MSG_WAITALL) != (ssize_t)n)
        return -1;
    *len = n;
    return h[0] & 0x0F;
}

static int cli_eof(int fd)
{
    char c;
    return recv(fd, &c, 1, 0) == 0;
}

static void cli_frame_send(int fd, int op, int fin, const void *data, size_t n, int masked)
{
    bt_strbuf b = BT_STRBUF_INIT;
    bt_ws_frame_encode(&b, op, fin, data, n, masked ? MASK : NULL);
    cli_send(fd, b.buf, b.len);
    bt_strbuf_release(&b);
}

static int scenario(server_ctx *c, client_result *r)
{
    char buf[4096];
    size_t len;

    /* Bad handshakes. */
    int fd = cli_connect(c->port);
    CHECK(r, fd >= 0, "connect");
    int st = cli_handshake(fd, "", buf, sizeof buf);
    CHECK(r, st == 426, "plain GET: status %d", st);
    CHECK(r, strstr(buf, "Sec-WebSocket-Version: 13"), "426 without version header: %s", buf);
    close(fd);
    fd = cli_connect(c->port);
    st = cli_handshake(fd,
                       "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                       buf, sizeof buf);
    CHECK(r, st == 426, "version 8: status %d", st);
    close(fd);
    fd = cli_connect(c->port);
    st = cli_handshake(fd,
                       "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: nope\r\n",
                       buf, sizeof buf);
    CHECK(r, st == 400, "bad key: status %d", st);
    close(fd);

    /* A good one: accept key, buffered welcome, ping/pong, fragmented echo, server
     * ping, close handshake. */
    fd = cli_connect(c->port);
    st = cli_handshake(fd, GOOD_HEADERS, buf, sizeof buf);
    CHECK(r, st == 101, "handshake: status %d: %s", st, buf);
    CHECK(r, strstr(buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "accept: %s", buf);
    CHECK(r, strcasestr(buf, "Upgrade: websocket"), "upgrade header: %s", buf);
    int op = cli_frame(fd, buf, sizeof buf, &len);
    CHECK(r, op == BT_WS_OP_TEXT && len == 5 && memcmp(buf, "hello", 5) == 0, "welcome: op %d", op);
    cli_frame_send(fd, BT_WS_OP_PING, 1, "p1", 2, 1);
    op = cli_frame(fd, buf, sizeof buf, &len);
    CHECK(r, op == BT_WS_OP_PONG && len == 2 && memcmp(buf, "p1", 2) == 0, "pong: op %d", op);
    cli_frame_send(fd, BT_WS_OP_TEXT, 0, "echo ", 5, 1);
    cli_frame_send(fd, BT_WS_OP_CONT, 1, "me", 2, 1);
    do /* a server ping may come first */
        op = cli_frame(fd, buf, sizeof buf, &len);
    while (op == BT_WS_OP_PING);
    CHECK(r, op == BT_WS_OP_TEXT && len == 7 && memcmp(buf, "echo me", 7) == 0, "echo: op %d", op);
    op = cli_frame(fd, buf, sizeof buf, &len); /* the server pings every 150 ms */
    CHECK(r, op == BT_WS_OP_PING, "server ping: op %d", op);
    cli_frame_send(fd, BT_WS_OP_PONG, 1, buf, len, 1);
    bt_strbuf cb = BT_STRBUF_INIT;
    bt_ws_close_encode(&cb, 1000, "bye", MASK);
    cli_send(fd, cb.buf, cb.len);
    bt_strbuf_release(&cb);
    do
        op = cli_frame(fd, buf, sizeof buf, &len);
    while (op == BT_WS_OP_PING);
    CHECK(r,
          op == BT_WS_OP_CLOSE && len == 5 && (uint8_t)buf[0] == 0x03 && (uint8_t)buf[1] == 0xE8 &&
              memcmp(buf + 2, "bye", 3) == 0,
          "close echo: op %d len %zu", op, len);
    CHECK(r, cli_eof(fd), "no EOF after the close handshake");
    close(fd);

    /* Unmasked client frame: 1002 and the connection ends. */
    fd = cli_connect(c->port);
    st = cli_handshake(fd, GOOD_HEADERS, buf, sizeof buf);
    CHECK(r, st == 101, "handshake 2: %d", st);
    cli_frame(fd, buf, sizeof buf, &len); /* welcome */
    cli_frame_send(fd, BT_WS_OP_TEXT, 1, "x", 1, 0);
    op = cli_frame(fd, buf, sizeof buf, &len);
    CHECK(r, op == BT_WS_OP_CLOSE && ((uint8_t)buf[0] << 8 | (uint8_t)buf[1]) == 1002,
          "unmasked: op %d code %d", op, (uint8_t)buf[0] << 8 | (uint8_t)buf[1]);
    CHECK(r, cli_eof(fd), "no EOF after 1002");
    close(fd);

    /* Over max_message (1024): 1009. */
    fd = cli_connect(c->port);
    cli_handshake(fd, GOOD_HEADERS, buf, sizeof buf);
    cli_frame(fd, buf, sizeof buf, &len);
    char big[2000] = {0};
    cli_frame_send(fd, BT_WS_OP_BINARY, 1, big, sizeof big, 1);
    op = cli_frame(fd, buf, sizeof buf, &len);
    CHECK(r, op == BT_WS_OP_CLOSE && ((uint8_t)buf[0] << 8 | (uint8_t)buf[1]) == 1009,
          "too big: op %d", op);
    close(fd);

    /* A client too far behind: 1008. Frames not yet started are dropped so the close
     * goes out next (here none had started: the flood came before the upgrade). */
    fd = cli_connect(c->port);
    char req[512];
    snprintf(req, sizeof req, "GET /flood HTTP/1.1\r\nHost: x\r\n%s\r\n", GOOD_HEADERS);
    cli_send(fd, req, strlen(req));
    char head[1024];
    size_t hn = 0;
    while (hn + 1 < sizeof head && recv(fd, head + hn, 1, 0) == 1) {
        head[++hn] = '\0';
        if (hn >= 4 && memcmp(head + hn - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    int texts = 0;
    while ((op = cli_frame(fd, buf, sizeof buf, &len)) == BT_WS_OP_TEXT)
        texts++;
    CHECK(r, op == BT_WS_OP_CLOSE && ((uint8_t)buf[0] << 8 | (uint8_t)buf[1]) == 1008,
          "flood: op %d after %d messages", op, texts);
    CHECK(r, texts == 0 && c->flood_sent > 5 && c->flood_sent < 17 && c->flood_rc == BT_ETOOBIG,
          "flood: %d delivered, %d accepted, rc %d", texts, c->flood_sent, c->flood_rc);
    cb = (bt_strbuf)BT_STRBUF_INIT;
    bt_ws_close_encode(&cb, 1008, NULL, MASK);
    cli_send(fd, cb.buf, cb.len);
    bt_strbuf_release(&cb);
    CHECK(r, cli_eof(fd), "no EOF after the 1008 close");
    close(fd);

    /* The same after the upgrade, with a frame half-written when the buffer overflows:
     * every frame the client gets is whole (64 KiB of zeros), then close 1008. */
    fd = cli_connect(c->port);
    cli_handshake(fd, GOOD_HEADERS, buf, sizeof buf);
    cli_frame(fd, buf, sizeof buf, &len); /* welcome */
    c->flood_sent = 0;
    cli_frame_send(fd, BT_WS_OP_TEXT, 1, "flood", 5, 1);
    usleep(300000); /* let the server fill the socket and overflow */
    char *fbuf = malloc(65536);
    int whole = 0, broken = 0;
    while ((op = cli_frame(fd, fbuf, 65536, &len)) == BT_WS_OP_BINARY || op == BT_WS_OP_PING) {
        if (op == BT_WS_OP_PING)
            continue;
        if (len == 65536 && fbuf[0] == 0 && fbuf[65535] == 0)
            whole++;
        else
            broken++;
    }
    int code = op == BT_WS_OP_CLOSE ? ((uint8_t)fbuf[0] << 8 | (uint8_t)fbuf[1]) : -1;
    free(fbuf);
    CHECK(r,
          code == 1008 && broken == 0 && whole > 0 && whole <= c->flood_sent &&
              c->flood_rc == BT_ETOOBIG,
          "flood after upgrade: close %d, %d whole and %d broken frames, %d accepted", code, whole,
          broken, c->flood_sent);
    close(fd);

    /* A silent client (never answers pings) is dropped after about two intervals. */
    fd = cli_connect(c->port);
    cli_handshake(fd, GOOD_HEADERS, buf, sizeof buf);
    int pings = 0, closed = 0;
    for (;;) {
        op = cli_frame(fd, buf, sizeof buf, &len);
        if (op == BT_WS_OP_PING)
            pings++;
        else if (op == BT_WS_OP_CLOSE)
            closed = (uint8_t)buf[0] << 8 | (uint8_t)buf[1];
        else if (op < 0)
            break;
    }
    CHECK(r, pings >= 1 && closed == 1001, "silent client: %d pings, close %d", pings, closed);
    close(fd);

    /* Server shutdown with an open socket: close 1001, we answer, then EOF. */
    fd = cli_connect(c->port);
    cli_handshake(fd, GOOD_HEADERS, buf, sizeof buf);
    cli_frame(fd, buf, sizeof buf, &len);
    c->async_sent = 1;
    uv_async_send(&c->async);
    while ((op = cli_frame(fd, buf, sizeof buf, &len)) == BT_WS_OP_PING)
        cli_frame_send(fd, BT_WS_OP_PONG, 1, buf, len, 1); /* alive: not dropped for silence */
    CHECK(r, op == BT_WS_OP_CLOSE && ((uint8_t)buf[0] << 8 | (uint8_t)buf[1]) == 1001,
          "shutdown: op %d", op);
    CHECK(r, len == 22 && memcmp(buf + 2, "server shutting down", 20) == 0,
          "shutdown close reason: '%.*s'", (int)len - 2, buf + 2);
    cb = (bt_strbuf)BT_STRBUF_INIT;
    bt_ws_close_encode(&cb, 1001, NULL, MASK);
    cli_send(fd, cb.buf, cb.len);
    bt_strbuf_release(&cb);
    CHECK(r, cli_eof(fd), "no EOF after the shutdown close");
    close(fd);
    return 0;
}

typedef struct thread_arg {
    server_ctx *c;
    client_result r;
} thread_arg;

static void *client_thread(void *p)
{
    thread_arg *a = p;
    a->r.ok = scenario(a->c, &a->r) == 0;
    if (!a->r.ok && !a->c->async_sent)
        uv_async_send(&a->c->async); /* let the loop finish anyway */
    return NULL;
}

static void test_connections(void **state)
{
    (void)state;
    server_ctx c = {0};
    uv_loop_init(&c.loop);
    bt_http_server_options so = {.shutdown_grace_ms = 3000};
    c.srv = bt_http_server_new(&c.loop, &so);
    bt_error err = BT_ERROR_INIT;
    bt_http_route rt = {.method = "GET", .pattern = "/ws", .handler = h_ws, .ud = &c};
    assert_int_equal(bt_http_server_route(c.srv, &rt, &err), 0);
    bt_http_route flood = {.method = "GET", .pattern = "/flood", .handler = h_flood, .ud = &c};
    assert_int_equal(bt_http_server_route(c.srv, &flood, &err), 0);
    assert_int_equal(bt_http_server_start(c.srv, &err), 0);
    c.port = bt_http_server_port(c.srv);
    uv_async_init(&c.loop, &c.async, on_async);
    c.async.data = &c;

    thread_arg a = {.c = &c};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_thread, &a), 0);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    if (!a.r.ok)
        fail_msg("client: %s", a.r.fail);
    assert_true(c.down);
    assert_int_equal(bt_http_server_active_websockets(c.srv), 0);
    bt_http_server_free(c.srv);
    assert_int_equal(uv_loop_close(&c.loop), 0);

    /* What the server reported, in order: the close handshake (1000), the unmasked
     * frame (1002), the oversized one (1009), the two slow clients (1008), the silent
     * client (1001), shutdown (1001). */
    assert_int_equal(c.nclose, 7);
    assert_int_equal(c.closes[0], 1000);
    assert_int_equal(c.closes[1], 1002);
    assert_int_equal(c.closes[2], 1009);
    assert_int_equal(c.closes[3], 1008);
    assert_int_equal(c.closes[4], 1008);
    assert_int_equal(c.closes[5], 1001);
    assert_int_equal(c.closes[6], 1001);
}

/* Shutdown while a client ignores the close frame and the grace period is shorter than
 * the close timeout: the server releases the socket itself before MHD stops (the client
 * sees the 1001 close, then EOF) and the loop still closes cleanly. */
typedef struct mute_arg {
    server_ctx *c;
    int got_close, got_eof;
} mute_arg;

static void *mute_thread(void *p)
{
    mute_arg *a = p;
    char buf[4096];
    size_t len;
    int fd = cli_connect(a->c->port);
    if (fd < 0 || cli_handshake(fd, GOOD_HEADERS, buf, sizeof buf) != 101) {
        uv_async_send(&a->c->async);
        return NULL;
    }
    cli_frame(fd, buf, sizeof buf, &len); /* welcome */
    uv_async_send(&a->c->async);
    int op;
    while ((op = cli_frame(fd, buf, sizeof buf, &len)) == BT_WS_OP_PING)
        ;
    a->got_close = op == BT_WS_OP_CLOSE ? ((uint8_t)buf[0] << 8 | (uint8_t)buf[1]) : -1;
    a->got_eof = cli_eof(fd); /* never answering the close */
    close(fd);
    return NULL;
}

static void h_ws_slow_close(bt_http_req *req, void *ud)
{
    server_ctx *c = ud;
    bt_http_ws_options o = {.ping_interval_ms = -1, .close_timeout_ms = 30000};
    bt_http_ws_callbacks cb = {NULL, NULL, srv_on_close};
    bt_http_ws *ws = bt_http_ws_accept(req, &o, &cb, c);
    if (ws)
        bt_http_ws_send(ws, 0, "hello", 5);
}

static void test_shutdown_unanswered_close(void **state)
{
    (void)state;
    server_ctx c = {0};
    uv_loop_init(&c.loop);
    char *logbuf = NULL;
    size_t loglen = 0;
    FILE *logf = open_memstream(&logbuf, &loglen);
    bt_log *log = bt_log_new(logf, BT_LOG_DEBUG);
    bt_http_server_options so = {.shutdown_grace_ms = 300, .log = log};
    c.srv = bt_http_server_new(&c.loop, &so);
    bt_error err = BT_ERROR_INIT;
    bt_http_route rt = {.method = "GET", .pattern = "/ws", .handler = h_ws_slow_close, .ud = &c};
    assert_int_equal(bt_http_server_route(c.srv, &rt, &err), 0);
    assert_int_equal(bt_http_server_start(c.srv, &err), 0);
    c.port = bt_http_server_port(c.srv);
    uv_async_init(&c.loop, &c.async, on_async);
    c.async.data = &c;
    mute_arg a = {.c = &c};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, mute_thread, &a), 0);
    uint64_t t0 = uv_hrtime();
    uv_run(&c.loop, UV_RUN_DEFAULT);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    pthread_join(th, NULL);
    assert_true(c.down);
    assert_int_equal(a.got_close, 1001);
    assert_true(a.got_eof);
    assert_true(ms < 5000); /* the grace period, not the 30 s close timeout */
    assert_int_equal(c.nclose, 1);
    assert_int_equal(c.closes[0], 1001);
    bt_http_server_free(c.srv);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    bt_log_free(log);
    fclose(logf);
    /* MHD complains when it stops with an upgraded socket still held by us. */
    if (strstr(logbuf, "upgraded") || strstr(logbuf, "libmicrohttpd"))
        fail_msg("libmicrohttpd warned during shutdown: %s", logbuf);
    free(logbuf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_length_boundaries), cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_close_frames),      cmocka_unit_test(test_violations),
        cmocka_unit_test(test_connections),       cmocka_unit_test(test_shutdown_unanswered_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
