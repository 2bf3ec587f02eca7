/*
 * time.c - clocks, ISO-8601 timestamps and duration strings (see time.h).
 */
#include "base/time.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t bt_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t bt_time_mono_ms(void)
{
    return bt_time_mono_ns() / 1000000LL;
}

int64_t bt_time_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000LL;
}

static void split(int64_t wall_ms, struct tm *tm, int *millis)
{
    int64_t secs = wall_ms / 1000;
    int ms = (int)(wall_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    gmtime_r(&t, tm);
    *millis = ms;
}

char *bt_time_format_iso(int64_t wall_ms, char *buf)
{
    struct tm tm;
    int ms;
    split(wall_ms, &tm, &ms);
    /* A roomy scratch buffer: the compiler cannot prove tm's fields are small. */
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    snprintf(buf, BT_TIME_ISO_LEN, "%.31s", tmp);
    return buf;
}

char *bt_time_format_iso_seconds(int64_t wall_ms, char *buf)
{
    struct tm tm;
    int ms;
    split(wall_ms, &tm, &ms);
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    snprintf(buf, BT_TIME_ISO_LEN, "%.31s", tmp);
    return buf;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int bt_time_parse_iso(const char *s, int64_t *wall_ms, bt_error *err)
{
    const char *p = s;
    int Y, M, D, h, m, sec, ms = 0;
    if (!s || digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' ||
        digits(&p, 2, &D) || (*p != 'T' && *p != 't' && *p != ' ') || !*p++ || digits(&p, 2, &h) ||
        *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' || digits(&p, 2, &sec))
        goto bad;
    if (*p == '.') {
        p++;
        int n = 0, scale = 100;
        while (isdigit((unsigned char)*p)) {
            if (n < 3)
                ms += (*p - '0') * scale, scale /= 10;
            n++, p++;
        }
        if (n == 0)
            goto bad;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            goto bad;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        goto bad;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *wall_ms = ((int64_t)t - offset_min * 60) * 1000 + ms;
    return 0;
bad:
    return bt_errorf(err, BT_EINVAL,
                     "'%s' is not a timestamp; use RFC 3339, e.g. 2025-11-13T12:00:00Z",
                     s ? s : "(null)");
}

int bt_duration_parse(const char *s, int64_t *out, bt_error *err)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    if (!s || !*s)
        return bt_errorf(err, BT_EINVAL, "empty duration; write e.g. 30s, 5m or 1h");
    const char *p = s;
    int64_t total = 0;
    int parts = 0;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            goto bad;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            if (v > INT64_MAX / 10 - 10)
                goto overflow;
            v = v * 10 + (*p++ - '0');
        }
        int64_t mult = -1;
        if (!*p && parts == 0) {
            mult = 1000; /* bare number: seconds */
        } else {
            for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
                size_t n = strlen(units[i].unit);
                if (strncmp(p, units[i].unit, n) == 0 && !isalpha((unsigned char)p[n])) {
                    mult = units[i].ms;
                    p += n;
                    break;
                }
            }
        }
        if (mult < 0)
            goto bad;
        if (v > (INT64_MAX - total) / mult)
            goto overflow;
        total += v * mult;
        parts++;
    }
    *out = total;
    return 0;
bad:
    return bt_errorf(err, BT_EINVAL,
                     "'%s' is not a duration; write a number with a unit (ms, s, m, h, d), "
                     "e.g. 30s, 5m, 1h30m",
                     s);
overflow:
    return bt_errorf(err, BT_EINVAL, "duration '%s' is too large", s);
}

char *bt_duration_format(int64_t ms, char *buf)
{
    if (ms == 0) {
        strcpy(buf, "0s");
        return buf;
    }
    if (ms % 1000) {
        snprintf(buf, 32, "%" PRId64 "ms", ms);
        return buf;
    }
    int64_t s = ms / 1000;
    int64_t d = s / 86400, h = (s % 86400) / 3600, m = (s % 3600) / 60, sec = s % 60;
    char *p = buf;
    size_t left = 32;
    int n;
#define PART(v, u)                                                                                 \
    if (v) {                                                                                       \
        n = snprintf(p, left, "%" PRId64 u, v);                                                    \
        p += n;                                                                                    \
        left -= (size_t)n;                                                                         \
    }
    PART(d, "d")
    PART(h, "h")
    PART(m, "m")
    PART(sec, "s")
#undef PART
    return buf;
}
