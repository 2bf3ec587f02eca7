/*
 * json.c - jansson helpers: depth-limited parsing, lookups with defaults (see json.h).
 */
#include "base/json.h"

#include "base/mem.h"

#include <string.h>

int bt_json_depth(const json_t *v)
{
    int best = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            int d = bt_json_depth(x);
            if (d > best)
                best = d;
        }
        return best + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            int d = bt_json_depth(x);
            if (d > best)
                best = d;
        }
        return best + 1;
    }
    return 0;
}

/* Nesting depth by scanning brackets outside strings, so hostile input is refused
 * before jansson recurses into it. */
static int scan_depth(const char *buf, size_t len)
{
    int depth = 0, best = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > best)
                best = depth;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return best;
}

int bt_json_parse(const char *buf, size_t len, int max_depth, json_t **out, bt_error *err)
{
    if (max_depth <= 0)
        max_depth = 64;
    *out = NULL;
    int d = scan_depth(buf, len);
    if (d > max_depth)
        return bt_errorf(err, BT_EINVAL, "JSON nests %d levels deep; the limit is %d", d,
                         max_depth);
    json_error_t je;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!v)
        return bt_errorf(err, BT_EPARSE, "invalid JSON at line %d, column %d: %s", je.line,
                         je.column, je.text);
    *out = v;
    return 0;
}

char *bt_json_dumps(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return s ? s : bt_xstrdup("null");
}

const char *bt_json_str(const json_t *obj, const char *key, const char *dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

int64_t bt_json_int(const json_t *obj, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

int bt_json_bool(const json_t *obj, const char *key, int dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_t *bt_json_error(const char *code, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
}
