/*
 * strbuf.c - growable strings (see strbuf.h).
 */
#include "base/strbuf.h"

#include "base/mem.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bt_strbuf_init(bt_strbuf *sb, size_t hint)
{
    sb->buf = NULL;
    sb->len = sb->cap = 0;
    if (hint)
        bt_strbuf_grow(sb, hint);
}

void bt_strbuf_release(bt_strbuf *sb)
{
    free(sb->buf);
    sb->buf = NULL;
    sb->len = sb->cap = 0;
}

void bt_strbuf_reset(bt_strbuf *sb)
{
    sb->len = 0;
    if (sb->buf)
        sb->buf[0] = '\0';
}

void bt_strbuf_grow(bt_strbuf *sb, size_t extra)
{
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap *= 2;
    sb->buf = bt_xrealloc(sb->buf, cap);
    if (sb->cap == 0)
        sb->buf[0] = '\0';
    sb->cap = cap;
}

void bt_strbuf_add(bt_strbuf *sb, const void *data, size_t n)
{
    bt_strbuf_grow(sb, n);
    if (n)
        memcpy(sb->buf + sb->len, data, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void bt_strbuf_addstr(bt_strbuf *sb, const char *s)
{
    bt_strbuf_add(sb, s, strlen(s));
}

void bt_strbuf_addch(bt_strbuf *sb, char c)
{
    bt_strbuf_add(sb, &c, 1);
}

void bt_strbuf_vaddf(bt_strbuf *sb, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    bt_strbuf_grow(sb, 64);
    int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, cp);
    va_end(cp);
    if (n < 0)
        return;
    if ((size_t)n >= sb->cap - sb->len) {
        bt_strbuf_grow(sb, (size_t)n);
        vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    }
    sb->len += (size_t)n;
}

void bt_strbuf_addf(bt_strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf_vaddf(sb, fmt, ap);
    va_end(ap);
}

void bt_strbuf_add_json_str(bt_strbuf *sb, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bt_strbuf_grow(sb, n + 2);
    bt_strbuf_addch(sb, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            bt_strbuf_add(sb, "\\\"", 2);
            break;
        case '\\':
            bt_strbuf_add(sb, "\\\\", 2);
            break;
        case '\n':
            bt_strbuf_add(sb, "\\n", 2);
            break;
        case '\r':
            bt_strbuf_add(sb, "\\r", 2);
            break;
        case '\t':
            bt_strbuf_add(sb, "\\t", 2);
            break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                bt_strbuf_add(sb, esc, 6);
            } else {
                bt_strbuf_addch(sb, (char)c);
            }
        }
    }
    bt_strbuf_addch(sb, '"');
}

void bt_strbuf_add_double(bt_strbuf *sb, double v)
{
    if (!isfinite(v)) {
        bt_strbuf_addstr(sb, "null");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        bt_strbuf_addf(sb, "%.0f", v);
        return;
    }
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    bt_strbuf_addstr(sb, buf);
}

void bt_strbuf_setlen(bt_strbuf *sb, size_t len)
{
    if (len > sb->len)
        bt_strbuf_grow(sb, len - sb->len);
    sb->len = len;
    if (sb->buf)
        sb->buf[len] = '\0';
}

void bt_strbuf_trim(bt_strbuf *sb)
{
    if (!sb->buf)
        return;
    size_t start = 0, end = sb->len;
    while (start < end && isspace((unsigned char)sb->buf[start]))
        start++;
    while (end > start && isspace((unsigned char)sb->buf[end - 1]))
        end--;
    memmove(sb->buf, sb->buf + start, end - start);
    bt_strbuf_setlen(sb, end - start);
}

const char *bt_strbuf_cstr(const bt_strbuf *sb)
{
    return sb->buf ? sb->buf : "";
}

char *bt_strbuf_detach(bt_strbuf *sb, size_t *len)
{
    if (!sb->buf)
        bt_strbuf_grow(sb, 0);
    char *b = sb->buf;
    if (len)
        *len = sb->len;
    sb->buf = NULL;
    sb->len = sb->cap = 0;
    return b;
}

void bt_strbuf_add_tail(bt_strbuf *sb, const char *text, size_t max)
{
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
        n--;
    const char *p = text;
    if (n > max) {
        p = text + n - max;
        const char *nl = memchr(p, '\n', max / 4);
        if (nl)
            p = nl + 1;
        bt_strbuf_addstr(sb, "...");
    }
    bt_strbuf_add(sb, p, n - (size_t)(p - text));
}
