/*
 * log.c - JSON-lines logger with secret redaction (see log.h for the format and the
 * redaction rules).
 */
#include "obs/log.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct bt_log {
    FILE *out;
    int owns_out;
    bt_log_level level;
    bt_strvec secrets; /* longest first, so a secret containing another is masked whole */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

bt_log *bt_log_new(FILE *out, bt_log_level level)
{
    bt_log *log = bt_xcalloc(1, sizeof *log);
    log->out = out;
    log->level = level;
    return log;
}

bt_log *bt_log_open(const char *path, bt_log_level level)
{
    FILE *f = fopen(path, "ae");
    if (!f)
        return NULL;
    bt_log *log = bt_log_new(f, level);
    log->owns_out = 1;
    return log;
}

void bt_log_free(bt_log *log)
{
    if (!log)
        return;
    if (log->owns_out)
        fclose(log->out);
    bt_strvec_clear(&log->secrets);
    free(log);
}

void bt_log_set_level(bt_log *log, bt_log_level level)
{
    if (log)
        log->level = level;
}

bt_log_level bt_log_get_level(const bt_log *log)
{
    return log ? log->level : BT_LOG_ERROR;
}

int bt_log_enabled(const bt_log *log, bt_log_level level)
{
    return log && level >= log->level;
}

int bt_log_level_parse(const char *name, bt_log_level *out)
{
    if (!name)
        return -1;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (bt_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = BT_LOG_WARN;
        return 0;
    }
    if (strcasecmp(name, "critical") == 0 || strcasecmp(name, "fatal") == 0) {
        *out = BT_LOG_ERROR;
        return 0;
    }
    return -1;
}

const char *bt_log_level_name(bt_log_level level)
{
    return level >= BT_LOG_DEBUG && level <= BT_LOG_ERROR ? level_names[level] : "info";
}

void bt_log_add_secret(bt_log *log, const char *value)
{
    if (!log || !value || strlen(value) < 4 || bt_strvec_contains(&log->secrets, value))
        return;
    bt_strvec_push(&log->secrets, value);
    /* keep longest first */
    for (size_t i = log->secrets.len - 1; i > 0; i--) {
        if (strlen(log->secrets.items[i]) <= strlen(log->secrets.items[i - 1]))
            break;
        char *t = log->secrets.items[i];
        log->secrets.items[i] = log->secrets.items[i - 1];
        log->secrets.items[i - 1] = t;
    }
}

static int tokch(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

/* Length of a token shape starting at p (0 when none). Requires a word boundary before. */
static size_t token_shape(const char *start, const char *p)
{
    static const char *const prefixes[] = {"ghp_",  "gho_",        "ghu_",  "ghs_",
                                           "ghr_",  "github_pat_", "sk-",   "xoxb-",
                                           "xoxp-", "xoxa-",       "xoxs-", "glpat-"};
    if (p > start && tokch(p[-1]))
        return 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(p, prefixes[i], n) != 0)
            continue;
        size_t m = n;
        while (tokch(p[m]))
            m++;
        if (m - n >= 8) /* real tokens are long; "sk-a" in prose is not one */
            return m;
    }
    return 0;
}

/* For "Bearer X" / "Basic X": how many bytes of the keyword+space to keep, else 0. */
static size_t auth_scheme(const char *start, const char *p)
{
    if (p > start && isalnum((unsigned char)p[-1]))
        return 0;
    if (strncasecmp(p, "bearer ", 7) == 0)
        return 7;
    if (strncasecmp(p, "basic ", 6) == 0)
        return 6;
    if (strncasecmp(p, "token ", 6) == 0)
        return 6;
    return 0;
}

char *bt_log_redact(const bt_log *log, const char *text)
{
    bt_strbuf out = BT_STRBUF_INIT;
    bt_strbuf_grow(&out, strlen(text));
    const char *p = text;
    while (*p) {
        size_t n = 0;
        if (log) {
            for (size_t i = 0; i < log->secrets.len; i++) {
                size_t len = strlen(log->secrets.items[i]);
                if (strncmp(p, log->secrets.items[i], len) == 0) {
                    n = len;
                    break;
                }
            }
        }
        if (n) {
            bt_strbuf_addstr(&out, "***");
            p += n;
            continue;
        }
        if ((n = token_shape(text, p))) {
            bt_strbuf_addstr(&out, "***");
            p += n;
            continue;
        }
        size_t keep = auth_scheme(text, p);
        if (keep) {
            size_t m = keep;
            while (p[m] && !isspace((unsigned char)p[m]) && p[m] != '"' && p[m] != '\\' &&
                   p[m] != ',')
                m++;
            if (m > keep) {
                bt_strbuf_add(&out, p, keep);
                bt_strbuf_addstr(&out, "***");
                p += m;
                continue;
            }
        }
        bt_strbuf_addch(&out, *p++);
    }
    return bt_strbuf_detach(&out, NULL);
}

static void add_str(bt_strbuf *sb, const char *s)
{
    if (!s)
        bt_strbuf_addstr(sb, "null");
    else
        bt_strbuf_add_json_str(sb, s, strlen(s));
}

void bt_log_write(bt_log *log, bt_log_level level, const char *msg, ...)
{
    if (!bt_log_enabled(log, level))
        return;
    bt_strbuf sb = BT_STRBUF_INIT;
    char ts[BT_TIME_ISO_LEN];
    bt_strbuf_addstr(&sb, "{\"ts\":\"");
    bt_strbuf_addstr(&sb, bt_time_format_iso(bt_time_wall_ms(), ts));
    bt_strbuf_addstr(&sb, "\",\"level\":\"");
    bt_strbuf_addstr(&sb, bt_log_level_name(level));
    bt_strbuf_addstr(&sb, "\",\"msg\":");
    add_str(&sb, msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        bt_log_field f = va_arg(ap, bt_log_field);
        if (f.type == BT_LF_END_ || !f.key)
            break;
        bt_strbuf_addch(&sb, ',');
        add_str(&sb, f.key);
        bt_strbuf_addch(&sb, ':');
        switch (f.type) {
        case BT_LF_STR_:
            add_str(&sb, f.s);
            break;
        case BT_LF_INT_:
            bt_strbuf_addf(&sb, "%lld", (long long)f.i);
            break;
        case BT_LF_DBL_:
            bt_strbuf_add_double(&sb, f.d);
            break;
        case BT_LF_BOOL_:
            bt_strbuf_addstr(&sb, f.i ? "true" : "false");
            break;
        default:
            bt_strbuf_addstr(&sb, "null");
            break;
        }
    }
    va_end(ap);
    bt_strbuf_addstr(&sb, "}\n");
    char *line = bt_log_redact(log, sb.buf);
    fputs(line, log->out);
    fflush(log->out);
    free(line);
    bt_strbuf_release(&sb);
}
