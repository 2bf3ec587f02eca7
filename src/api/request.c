/*
 * request.c - the shared request readers of the route groups (request.h).
 */
#include "api/request.h"

#include "base/id.h"
#include "base/strbuf.h"
#include "http/server.h"
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bt_api_query_int(bt_http_req *req, const char *name, long long lo, long long hi, long long dflt,
                     long long *out)
{
    const char *s = bt_http_req_query(req, name);
    *out = dflt;
    if (!s)
        return 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || errno || *end || v < lo || v > hi) {
        bt_http_respond_error(
            req, 400, "invalid_argument",
            "query parameter '%s' must be an integer from %lld to %lld (got '%s')", name, lo, hi,
            s);
        return -1;
    }
    *out = v;
    return 0;
}

const char *bt_api_path_id(bt_http_req *req, const char *what)
{
    const char *id = bt_http_req_param(req, "id");
    if (!id || !bt_id_valid(id)) {
        bt_http_respond_error(req, 404, "not_found", "no %s with id '%s'", what, id ? id : "");
        return NULL;
    }
    return id;
}

int bt_api_check_fields(bt_http_req *req, const json_t *body, const char *const *allowed, size_t n)
{
    if (!json_is_object(body)) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "the request body must be a JSON object");
        return -1;
    }
    bt_strbuf bad;
    bt_strbuf_init(&bad, 64);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        (void)v;
        size_t i = 0;
        while (i < n && strcmp(key, allowed[i]) != 0)
            i++;
        if (i == n)
            bt_strbuf_addf(&bad, "%s'%s'", bad.len ? ", " : "", key);
    }
    if (bad.len == 0) {
        bt_strbuf_release(&bad);
        return 0;
    }
    bt_strbuf ok;
    bt_strbuf_init(&ok, 128);
    for (size_t i = 0; i < n; i++)
        bt_strbuf_addf(&ok, "%s%s", i ? ", " : "", allowed[i]);
    bt_http_respond_error(req, 400, "invalid_argument", "unknown field(s) %s; allowed fields: %s",
                          bt_strbuf_cstr(&bad), bt_strbuf_cstr(&ok));
    bt_strbuf_release(&bad);
    bt_strbuf_release(&ok);
    return -1;
}

int bt_api_field_str(bt_http_req *req, const json_t *o, const char *key, int non_empty,
                     const char **out)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_string(v) || (non_empty && json_string_length(v) == 0)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field '%s' must be a %sstring", key,
                              non_empty ? "non-empty " : "");
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int bt_api_field_bool(bt_http_req *req, const json_t *o, const char *key, int *out)
{
    const json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field '%s' must be true or false",
                              key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

int bt_api_field_object(bt_http_req *req, const json_t *o, const char *key, const json_t **out)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_object(v)) {
        bt_http_respond_error(req, 400, "invalid_argument", "field '%s' must be a JSON object",
                              key);
        return -1;
    }
    *out = v;
    return 0;
}

int bt_api_field_labels(bt_http_req *req, const json_t *o, const json_t **out)
{
    const json_t *v = json_object_get(o, "labels");
    *out = NULL;
    if (!v)
        return 0;
    int ok = json_is_array(v);
    for (size_t i = 0; ok && i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        ok = json_is_string(e) && json_string_length(e) > 0;
    }
    if (!ok) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'labels' must be an array of non-empty strings");
        return -1;
    }
    *out = v;
    return 0;
}

int bt_api_field_priority(bt_http_req *req, const json_t *o, int *set, int32_t *out)
{
    const json_t *v = json_object_get(o, "priority");
    int dummy;
    if (!set)
        set = &dummy;
    *set = 0;
    *out = BT_PRIORITY_NONE;
    if (!v)
        return 0;
    *set = 1;
    if (json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < -1000000 ||
        json_integer_value(v) > 1000000) {
        bt_http_respond_error(req, 400, "invalid_argument",
                              "field 'priority' must be an integer from -1000000 to 1000000 "
                              "(lower runs first) or null");
        return -1;
    }
    *out = (int32_t)json_integer_value(v);
    return 0;
}
