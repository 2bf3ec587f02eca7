/*
 * websocket.h - RFC 6455 WebSockets, in two parts:
 *
 *   bt_ws_*       a pure framing codec (no I/O): the handshake's accept key, frame
 *                 encoding, and an incremental parser that enforces the protocol
 *                 (masking, opcodes, control-frame rules, fragmentation, size limits,
 *                 UTF-8 in text and close reasons) and says which close code to send.
 *   bt_http_ws_*  server connections upgraded from an HTTP request of bt_http_server
 *                 (libmicrohttpd's upgrade path; the socket is then driven by a uv_poll
 *                 on the server's loop): ping/pong, server pings with a dead-client
 *                 timeout, the close handshake, a bounded outgoing buffer, and a clean
 *                 1001 close of every connection when the server shuts down.
 *
 * Threading: the bt_http_ws_* calls are loop-thread only, like server.h.
 */
#ifndef BT_HTTP_WEBSOCKET_H
#define BT_HTTP_WEBSOCKET_H

#include "base/error.h"
#include "base/strbuf.h"
#include "http/server.h"

#include <stddef.h>
#include <stdint.h>

/* Opcodes. */
enum {
    BT_WS_OP_CONT = 0x0,
    BT_WS_OP_TEXT = 0x1,
    BT_WS_OP_BINARY = 0x2,
    BT_WS_OP_CLOSE = 0x8,
    BT_WS_OP_PING = 0x9,
    BT_WS_OP_PONG = 0xA,
};

/* Close status codes (RFC 6455 §7.4.1). 1005 and 1006 are never sent on the wire. */
enum {
    BT_WS_CLOSE_NORMAL = 1000,
    BT_WS_CLOSE_GOING_AWAY = 1001,
    BT_WS_CLOSE_PROTOCOL = 1002,
    BT_WS_CLOSE_UNSUPPORTED = 1003,
    BT_WS_CLOSE_NO_STATUS = 1005,
    BT_WS_CLOSE_ABNORMAL = 1006,
    BT_WS_CLOSE_INVALID_DATA = 1007,
    BT_WS_CLOSE_POLICY = 1008,
    BT_WS_CLOSE_TOO_BIG = 1009,
    BT_WS_CLOSE_INTERNAL = 1011,
};

/* ----- Codec. */

#define BT_WS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */

/* Is key a valid Sec-WebSocket-Key (base64 of exactly 16 bytes)? */
int bt_ws_key_valid(const char *key);
/* Sec-WebSocket-Accept for key: base64(SHA-1(key + the RFC's GUID)). Returns 0, or
 * BT_EINVAL (out untouched) when the key is not valid. */
int bt_ws_accept_key(const char *key, char out[BT_WS_ACCEPT_LEN + 1]);

/* Is [s, s+n) well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF)? */
int bt_ws_utf8_valid(const char *s, size_t n);

/* Append one frame to out. mask NULL sends it unmasked (server to client); a client
 * passes its 4 masking bytes. */
void bt_ws_frame_encode(bt_strbuf *out, int opcode, int fin, const void *payload, size_t len,
                        const uint8_t *mask);
/* Append a close frame with code (0 = no status) and reason (NULL or UTF-8; cut to fit a
 * control frame's 125 bytes at a character boundary). */
void bt_ws_close_encode(bt_strbuf *out, uint16_t code, const char *reason, const uint8_t *mask);
/* The size of the complete frame at the start of buf, or 0 if buf holds less. */
size_t bt_ws_frame_size(const void *buf, size_t len);

/* Incremental parser. Feed it bytes as they arrive and pull messages out. Data frames
 * are reassembled into whole messages; control frames come out as they arrive (also
 * between the fragments of a message). */
typedef struct bt_ws_parser {
    int require_mask;   /* server side: unmasked client frames are a protocol error */
    size_t max_message; /* a frame's payload and a reassembled message; over it: 1009 */
    bt_strbuf in;       /* unparsed input */
    size_t in_off;
    bt_strbuf msg;  /* fragments of the message in progress */
    int msg_opcode; /* its opcode (TEXT/BINARY), 0 when none is in progress */
    int failed;     /* set after an error: nothing more is parsed */
} bt_ws_parser;

typedef struct bt_ws_msg {
    int opcode;       /* BT_WS_OP_TEXT, _BINARY, _CLOSE, _PING or _PONG */
    const char *data; /* payload (close: the reason), borrowed until the next call */
    size_t len;
    uint16_t close_code; /* CLOSE: the code received (1005 when absent) */
} bt_ws_msg;

void bt_ws_parser_init(bt_ws_parser *p, int require_mask, size_t max_message);
void bt_ws_parser_release(bt_ws_parser *p);
/* Copy bytes in. */
void bt_ws_parser_feed(bt_ws_parser *p, const void *data, size_t len);
/* 1 and *m filled: a message; 0: need more bytes; a negative BT_E*: the peer broke the
 * protocol: *close_code (may be NULL) is the code to close with (1002, 1007 or 1009)
 * and err says what was wrong. After an error every call returns the same error. */
int bt_ws_parser_next(bt_ws_parser *p, bt_ws_msg *m, uint16_t *close_code, bt_error *err);

/* ----- Server connections. */

typedef struct bt_http_ws bt_http_ws;

typedef struct bt_http_ws_options {
    size_t max_message;       /* largest accepted frame/message; 0 = 1 MiB (over it: 1009) */
    size_t max_buffered;      /* outgoing bytes not yet taken by the client; 0 = 8 MiB.
                                 Over it the connection is closed 1008 */
    int64_t ping_interval_ms; /* server ping cadence; 0 = 20000, < 0 = never. A client
                                 silent for a whole interval after a ping is dropped */
    int64_t close_timeout_ms; /* wait for the peer's close reply; 0 = 2000 */
} bt_http_ws_options;

typedef struct bt_http_ws_callbacks {
    /* A complete text (binary = 0, valid UTF-8) or binary message. data is borrowed.
     * May be NULL (messages are then ignored). */
    void (*on_message)(bt_http_ws *ws, int binary, const char *data, size_t len, void *ud);
    /* The outgoing buffer has emptied (flow control for bulk senders). May be NULL. */
    void (*on_drain)(bt_http_ws *ws, void *ud);
    /* Exactly once, from the loop, when the connection ends for any reason; code is the
     * peer's close code, ours, or 1006 when the connection just dropped. ws is invalid
     * after it returns, so owners drop their pointer here. Required. */
    void (*on_close)(bt_http_ws *ws, int code, const char *reason, void *ud);
} bt_http_ws_callbacks;

/* Answer a request (synchronously or after a suspend) by upgrading it to a WebSocket.
 * Checks the handshake: "Upgrade: websocket" (else 426 with Upgrade and
 * Sec-WebSocket-Version headers), "Connection: upgrade" and a valid Sec-WebSocket-Key
 * (else 400), Sec-WebSocket-Version 13 (else 426 with "Sec-WebSocket-Version: 13").
 * On a bad handshake it responds itself and returns NULL. Otherwise it responds 101 and
 * returns the connection; messages may be sent at once (they are buffered until the
 * upgrade completes). opts may be NULL; cb is copied; ud is borrowed. */
bt_http_ws *bt_http_ws_accept(bt_http_req *req, const bt_http_ws_options *opts,
                              const bt_http_ws_callbacks *cb, void *ud);
/* Queue a text (binary = 0) or binary message. BT_ECANCELED once closing;
 * BT_ETOOBIG when the client is too far behind (the connection is then closed 1008). */
int bt_http_ws_send(bt_http_ws *ws, int binary, const char *data, size_t len);
/* Start the close handshake (code 1000..4999; reason may be NULL). on_close follows
 * once the peer answers or close_timeout_ms passes. */
void bt_http_ws_close(bt_http_ws *ws, int code, const char *reason);
/* Outgoing bytes queued and not yet written to the socket. */
size_t bt_http_ws_buffered(const bt_http_ws *ws);
/* The client's address (borrowed, valid until on_close returns). */
const char *bt_http_ws_peer(const bt_http_ws *ws);

/* Live connections, for a gauge. */
size_t bt_http_server_active_websockets(const bt_http_server *srv);

#endif
