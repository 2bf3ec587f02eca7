/*
 * error.c - formatting and naming of baton error codes (see error.h).
 */
#include "base/error.h"

#include <stdio.h>
#include <string.h>

int bt_verrorf(bt_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int bt_errorf(bt_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_verrorf(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int bt_error_prefix(bt_error *err, const char *fmt, ...)
{
    if (!err)
        return 0;
    char prefix[BT_ERROR_MSG_MAX], old[BT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is acceptable: the prefix matters most and a long tail is cut. */
    size_t n = strnlen(prefix, sizeof prefix - 3);
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
    return err->code;
}

void bt_error_clear(bt_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

static const struct {
    int code;
    const char *name;
    const char *text;
} codes[] = {
    {BT_OK, "ok", "success"},
    {BT_EINVAL, "invalid_argument", "invalid argument"},
    {BT_ENOMEM, "out_of_memory", "out of memory"},
    {BT_ENOENT, "not_found", "not found"},
    {BT_EEXIST, "already_exists", "already exists"},
    {BT_EIO, "io_error", "I/O error"},
    {BT_ECONFLICT, "conflict", "conflict"},
    {BT_ESTATE, "invalid_state", "illegal state transition"},
    {BT_EPARSE, "parse_error", "parse error"},
    {BT_ETIMEOUT, "timeout", "timed out"},
    {BT_EPERM, "forbidden", "not permitted"},
    {BT_EUNAVAIL, "unavailable", "unavailable"},
    {BT_ECANCELED, "cancelled", "cancelled"},
    {BT_ETOOBIG, "too_large", "too large"},
    {BT_ESTALE, "stale", "stale lease or fencing token"},
    {BT_EINTERNAL, "internal", "internal error"},
    {BT_EBUSY, "busy", "busy, try again later"},
    {BT_EVERSION, "version_mismatch", "version mismatch"},
};

const char *bt_strerror(int code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == code)
            return codes[i].text;
    return "unknown error";
}

const char *bt_error_name(int code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == code)
            return codes[i].name;
    return "unknown";
}
