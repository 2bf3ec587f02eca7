/*
 * router.h - method + path routing with path parameters, as pure functions.
 *
 * A pattern is a path of segments; a segment is a literal ("tasks"), a parameter
 * ("{id}", one non-empty segment) or, last only, a tail ("{path*}", the rest of the
 * path, possibly empty). A single trailing slash on the request path is ignored.
 *
 * Matching picks, among the routes whose pattern matches the path AND whose method
 * matches, the most specific one (compared segment by segment: literal > parameter >
 * tail). HEAD is served by a GET route when no HEAD route exists. When some pattern
 * matches the path but no method does, the result is 405 with the Allow list (union of
 * the methods of every pattern matching the path); when no pattern matches, 404.
 *
 * The router knows nothing about HTTP servers: the server (server.c) owns one and
 * stores an opaque `data` pointer per route. Everything here is unit-tested directly.
 */
#ifndef BT_HTTP_ROUTER_H
#define BT_HTTP_ROUTER_H

#include "base/error.h"

#include <stddef.h>

#define BT_HTTP_MAX_PARAMS 8
#define BT_HTTP_ALLOW_MAX  96

typedef struct bt_http_router bt_http_router;

typedef struct bt_http_param {
    const char *name; /* borrowed from the route's parsed pattern */
    char *value;      /* owned by the match (bt_http_match_release) */
} bt_http_param;

typedef enum bt_http_match_result {
    BT_HTTP_MATCH_OK = 0,
    BT_HTTP_MATCH_NOT_FOUND = 404,
    BT_HTTP_MATCH_BAD_METHOD = 405,
} bt_http_match_result;

typedef struct bt_http_match {
    bt_http_match_result result;
    size_t route;        /* index of the matched route (result OK) */
    void *data;          /* that route's data pointer */
    const char *pattern; /* that route's pattern (borrowed from the router) */
    size_t nparams;
    bt_http_param params[BT_HTTP_MAX_PARAMS];
    char allow[BT_HTTP_ALLOW_MAX]; /* "GET, HEAD, POST" when result is 405 */
} bt_http_match;

bt_http_router *bt_http_router_new(void);
void bt_http_router_free(bt_http_router *r);

/* Add a route. method is upper-case ("GET"); pattern starts with '/'. Both are copied;
 * data is borrowed. Fails with BT_EINVAL on a malformed pattern (unbalanced braces, a
 * tail that is not last, more than BT_HTTP_MAX_PARAMS parameters, a duplicate
 * method+pattern). */
int bt_http_router_add(bt_http_router *r, const char *method, const char *pattern, void *data,
                       bt_error *err);

size_t bt_http_router_count(const bt_http_router *r);
/* The pattern / method of route i (borrowed). */
const char *bt_http_router_pattern(const bt_http_router *r, size_t i);
const char *bt_http_router_method(const bt_http_router *r, size_t i);

/* Match a request. path is the URL path without the query string (already unescaped).
 * Always fills *m (release it with bt_http_match_release) and returns m->result. */
bt_http_match_result bt_http_router_match(const bt_http_router *r, const char *method,
                                          const char *path, bt_http_match *m);

/* Value of a path parameter in a match, or NULL. Borrowed from m. */
const char *bt_http_match_param(const bt_http_match *m, const char *name);
void bt_http_match_release(bt_http_match *m);

#endif
