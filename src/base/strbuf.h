/*
 * strbuf.h - growable, always NUL-terminated byte string (after git's strbuf).
 *
 * A bt_strbuf owns its buffer. BT_STRBUF_INIT is a valid empty string; buf is never
 * NULL after any add. bt_strbuf_detach hands the buffer to the caller (who frees it)
 * and leaves the strbuf empty.
 */
#ifndef BT_STRBUF_H
#define BT_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct bt_strbuf {
    char *buf;
    size_t len;
    size_t cap;
} bt_strbuf;

#define BT_STRBUF_INIT                                                                             \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void bt_strbuf_init(bt_strbuf *sb, size_t hint);
void bt_strbuf_release(bt_strbuf *sb);
void bt_strbuf_reset(bt_strbuf *sb);
void bt_strbuf_grow(bt_strbuf *sb, size_t extra);
void bt_strbuf_add(bt_strbuf *sb, const void *data, size_t n);
void bt_strbuf_addstr(bt_strbuf *sb, const char *s);
void bt_strbuf_addch(bt_strbuf *sb, char c);
void bt_strbuf_addf(bt_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bt_strbuf_vaddf(bt_strbuf *sb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Append s as a JSON string literal, quotes included. */
void bt_strbuf_add_json_str(bt_strbuf *sb, const char *s, size_t n);
/* Append a finite double in its shortest round-trip form (0.05, not 0.05000000000000000277);
 * integral values print without a fraction. NaN/Inf append "null". */
void bt_strbuf_add_double(bt_strbuf *sb, double v);
void bt_strbuf_setlen(bt_strbuf *sb, size_t len);
void bt_strbuf_trim(bt_strbuf *sb);
/* Append the last max bytes of text, trailing blanks dropped, starting at a line start
 * when one is within the first quarter of that window, with "..." in front when text
 * was cut: a process's output in an error message. */
void bt_strbuf_add_tail(bt_strbuf *sb, const char *text, size_t max);
/* The contents, "" when nothing was ever added. Borrowed. */
const char *bt_strbuf_cstr(const bt_strbuf *sb);
/* Transfer ownership of the buffer (never NULL) to the caller. */
char *bt_strbuf_detach(bt_strbuf *sb, size_t *len);

#endif
