/*
 * log.h - structured logging: one JSON object per line, to stderr or a file.
 *
 *   bt_log_info(log, "task claimed", BT_LF_STR("task", id), BT_LF_INT("attempt", n));
 *   -> {"ts":"2026-11-21T20:00:00.000Z","level":"info","msg":"task
 * claimed","task":"01J...","attempt":1}
 *
 * Redaction happens on the finished line, so it covers the message, every field and
 * anything a caller formatted into them: each registered secret value (every secret in
 * the configuration is registered at start-up) is replaced by "***", and so are common
 * token shapes even when nobody registered them: GitHub tokens (ghp_, gho_, ghu_, ghs_,
 * ghr_, github_pat_), OpenAI/Anthropic-style keys (sk-...), Slack tokens (xox?-...),
 * and the credential after "Bearer " / "Basic ".
 *
 * A bt_log is owned by whoever created it (the app); it is not thread-safe (baton's
 * loop is single-threaded). A NULL bt_log* is accepted everywhere and logs nothing.
 */
#ifndef BT_LOG_H
#define BT_LOG_H

#include <stdint.h>
#include <stdio.h>

typedef enum bt_log_level {
    BT_LOG_DEBUG = 0,
    BT_LOG_INFO = 1,
    BT_LOG_WARN = 2,
    BT_LOG_ERROR = 3,
} bt_log_level;

typedef struct bt_log bt_log;

typedef enum bt_log_field_type {
    BT_LF_END_ = 0,
    BT_LF_STR_,
    BT_LF_INT_,
    BT_LF_DBL_,
    BT_LF_BOOL_,
} bt_log_field_type;

typedef struct bt_log_field {
    const char *key;
    bt_log_field_type type;
    const char *s;
    int64_t i;
    double d;
} bt_log_field;

#define BT_LF_STR(k, v)  ((bt_log_field){(k), BT_LF_STR_, (v), 0, 0})
#define BT_LF_INT(k, v)  ((bt_log_field){(k), BT_LF_INT_, NULL, (int64_t)(v), 0})
#define BT_LF_DBL(k, v)  ((bt_log_field){(k), BT_LF_DBL_, NULL, 0, (double)(v)})
#define BT_LF_BOOL(k, v) ((bt_log_field){(k), BT_LF_BOOL_, NULL, (v) ? 1 : 0, 0})
#define BT_LF_END        ((bt_log_field){NULL, BT_LF_END_, NULL, 0, 0})

/* out is borrowed (stderr, or a FILE the caller keeps open). */
bt_log *bt_log_new(FILE *out, bt_log_level level);
/* Opens path for appending; the logger owns and closes that FILE. NULL on failure. */
bt_log *bt_log_open(const char *path, bt_log_level level);
void bt_log_free(bt_log *log);

void bt_log_set_level(bt_log *log, bt_log_level level);
bt_log_level bt_log_get_level(const bt_log *log);
int bt_log_enabled(const bt_log *log, bt_log_level level);
/* "debug", "info", "warn"/"warning", "error" (any case); 0 or -1 when unknown. */
int bt_log_level_parse(const char *name, bt_log_level *out);
const char *bt_log_level_name(bt_log_level level);

/* Register a secret value to mask (copied). Values shorter than 4 bytes are ignored
 * (masking "a" everywhere would destroy the log without protecting anything). */
void bt_log_add_secret(bt_log *log, const char *value);

/* Mask secrets and token shapes in text; appends the result to *out (malloc'd,
 * caller frees). Exposed for other outputs that must not leak (events, comments). */
char *bt_log_redact(const bt_log *log, const char *text);

/* Write one line. Fields end at BT_LF_END (the macros below add it). */
void bt_log_write(bt_log *log, bt_log_level level, const char *msg, ...);

#define bt_log_debug(lg, ...) bt_log_write((lg), BT_LOG_DEBUG, __VA_ARGS__, BT_LF_END)
#define bt_log_info(lg, ...)  bt_log_write((lg), BT_LOG_INFO, __VA_ARGS__, BT_LF_END)
#define bt_log_warn(lg, ...)  bt_log_write((lg), BT_LOG_WARN, __VA_ARGS__, BT_LF_END)
#define bt_log_error(lg, ...) bt_log_write((lg), BT_LOG_ERROR, __VA_ARGS__, BT_LF_END)

#endif
