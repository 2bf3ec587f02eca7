/*
 * error.h - baton's error codes and the bt_error carrier.
 *
 * Every fallible function returns 0 on success or a negative BT_E* code, and (when
 * given a non-NULL bt_error) fills it with a message a person can act on: what went
 * wrong, with which input, and what to do about it. bt_error is a plain value with an
 * inline buffer, so it never needs freeing.
 */
#ifndef BT_ERROR_H
#define BT_ERROR_H

#include <stdarg.h>

enum {
    BT_OK = 0,
    BT_EINVAL = -1,     /* bad input: malformed, out of range, unknown key */
    BT_ENOMEM = -2,     /* allocation failed */
    BT_ENOENT = -3,     /* no such item, file, route */
    BT_EEXIST = -4,     /* already exists */
    BT_EIO = -5,        /* I/O or OS call failed */
    BT_ECONFLICT = -6,  /* concurrent change, lock held, dedupe hit */
    BT_ESTATE = -7,     /* illegal state transition */
    BT_EPARSE = -8,     /* syntax error in JSON/YAML/template */
    BT_ETIMEOUT = -9,   /* deadline passed */
    BT_EPERM = -10,     /* not allowed: auth, scope, path outside root */
    BT_EUNAVAIL = -11,  /* dependency unreachable or not configured */
    BT_ECANCELED = -12, /* cancelled by request or shutdown */
    BT_ETOOBIG = -13,   /* size limit exceeded */
    BT_ESTALE = -14,    /* fencing token or lease no longer valid */
    BT_EINTERNAL = -15, /* a bug: invariant broken */
    BT_EBUSY = -16,     /* try again later: rate limit, backpressure */
    BT_EVERSION = -17,  /* data written by a newer/unknown version */
};

#define BT_ERROR_MSG_MAX 1024

typedef struct bt_error {
    int code;
    char msg[BT_ERROR_MSG_MAX];
} bt_error;

#define BT_ERROR_INIT                                                                              \
    {                                                                                              \
        0,                                                                                         \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }

/* Fill err (may be NULL) and return code, so `return bt_errorf(err, BT_EINVAL, ...)` works. */
int bt_errorf(bt_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int bt_verrorf(bt_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Prepend context to an existing message: "loading foo.yaml: <old message>". Returns err->code. */
int bt_error_prefix(bt_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void bt_error_clear(bt_error *err);

/* Short human description of a code ("invalid argument"). Never NULL. */
const char *bt_strerror(int code);

/* Stable machine name of a code ("invalid_argument"), used in API error bodies. */
const char *bt_error_name(int code);

#endif
