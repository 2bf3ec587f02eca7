/*
 * router.c - pattern parsing and matching for the HTTP router (see router.h).
 *
 * Routes are few (dozens), so matching is a linear scan over pre-split patterns: each
 * route is tried against the request's segments and the most specific candidate wins.
 * That keeps the rules (literal beats parameter beats tail, 405 vs 404) in one
 * obvious loop instead of a trie whose precedence would need its own tests.
 */
#include "http/router.h"

#include "base/mem.h"
#include "base/vec.h"

#include <string.h>

typedef enum seg_kind { SEG_LITERAL = 0, SEG_PARAM = 1, SEG_TAIL = 2 } seg_kind;

typedef struct seg {
    seg_kind kind;
    char *text; /* literal text, or parameter name */
} seg;

typedef struct route {
    char *method;
    char *pattern;
    seg *segs;
    size_t nsegs;
    void *data;
} route;

struct bt_http_router {
    BT_VEC(route) routes;
};

bt_http_router *bt_http_router_new(void)
{
    return bt_xcalloc(1, sizeof(bt_http_router));
}

static void route_release(route *rt)
{
    for (size_t i = 0; i < rt->nsegs; i++)
        free(rt->segs[i].text);
    free(rt->segs);
    free(rt->method);
    free(rt->pattern);
}

void bt_http_router_free(bt_http_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->routes.len; i++)
        route_release(&r->routes.items[i]);
    bt_vec_free(&r->routes);
    free(r);
}

/* Split "/a/b/" into ["a","b"]: a single trailing slash is dropped; "/" is no segments. */
static size_t split_path(const char *path, const char **starts, size_t *lens, size_t max)
{
    size_t n = 0;
    const char *p = path;
    if (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == max)
            return max + 1;
        starts[n] = p;
        lens[n] = len;
        n++;
        if (!e)
            break;
        p = e + 1; /* "a/" ends the loop on the NUL: trailing slash ignored */
    }
    return n;
}

#define MAX_SEGS 32

int bt_http_router_add(bt_http_router *r, const char *method, const char *pattern, void *data,
                       bt_error *err)
{
    if (!method || !*method || !pattern || pattern[0] != '/')
        return bt_errorf(err, BT_EINVAL, "route pattern '%s' must start with '/'",
                         pattern ? pattern : "(null)");
    for (size_t i = 0; i < r->routes.len; i++)
        if (strcmp(r->routes.items[i].method, method) == 0 &&
            strcmp(r->routes.items[i].pattern, pattern) == 0)
            return bt_errorf(err, BT_EINVAL, "route %s %s is defined twice", method, pattern);
    const char *starts[MAX_SEGS];
    size_t lens[MAX_SEGS];
    size_t n = split_path(pattern, starts, lens, MAX_SEGS);
    if (n > MAX_SEGS)
        return bt_errorf(err, BT_EINVAL, "route pattern '%s' has more than %d segments", pattern,
                         MAX_SEGS);
    route rt = {0};
    rt.segs = bt_xcalloc(n ? n : 1, sizeof(seg));
    size_t nparams = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = starts[i];
        size_t len = lens[i];
        seg *sg = &rt.segs[i];
        rt.nsegs = i + 1;
        if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
            int tail = len >= 3 && s[len - 2] == '*';
            size_t nlen = len - 2 - (size_t)tail;
            if (nlen == 0 || memchr(s + 1, '{', nlen) || memchr(s + 1, '}', nlen)) {
                route_release(&rt);
                return bt_errorf(err, BT_EINVAL,
                                 "route pattern '%s': segment '%.*s' needs a name like {id}",
                                 pattern, (int)len, s);
            }
            if (tail && i + 1 != n) {
                route_release(&rt);
                return bt_errorf(err, BT_EINVAL,
                                 "route pattern '%s': the tail '%.*s' must be the last segment",
                                 pattern, (int)len, s);
            }
            if (++nparams > BT_HTTP_MAX_PARAMS) {
                route_release(&rt);
                return bt_errorf(err, BT_EINVAL, "route pattern '%s' has more than %d parameters",
                                 pattern, BT_HTTP_MAX_PARAMS);
            }
            sg->kind = tail ? SEG_TAIL : SEG_PARAM;
            sg->text = bt_xstrndup(s + 1, nlen);
        } else {
            if (memchr(s, '{', len) || memchr(s, '}', len)) {
                route_release(&rt);
                return bt_errorf(err, BT_EINVAL,
                                 "route pattern '%s': braces must enclose a whole segment",
                                 pattern);
            }
            sg->kind = SEG_LITERAL;
            sg->text = bt_xstrndup(s, len);
        }
    }
    rt.method = bt_xstrdup(method);
    rt.pattern = bt_xstrdup(pattern);
    rt.data = data;
    bt_vec_push(&r->routes, rt);
    return 0;
}

size_t bt_http_router_count(const bt_http_router *r)
{
    return r->routes.len;
}

const char *bt_http_router_pattern(const bt_http_router *r, size_t i)
{
    return i < r->routes.len ? r->routes.items[i].pattern : NULL;
}

const char *bt_http_router_method(const bt_http_router *r, size_t i)
{
    return i < r->routes.len ? r->routes.items[i].method : NULL;
}

/* Does rt match the split path? */
static int route_matches(const route *rt, const char **starts, const size_t *lens, size_t n)
{
    size_t i = 0;
    for (; i < rt->nsegs; i++) {
        const seg *sg = &rt->segs[i];
        if (sg->kind == SEG_TAIL)
            return 1;
        if (i >= n)
            return 0;
        if (sg->kind == SEG_PARAM) {
            if (lens[i] == 0)
                return 0;
        } else if (strlen(sg->text) != lens[i] || memcmp(sg->text, starts[i], lens[i]) != 0) {
            return 0;
        }
    }
    return i == n;
}

/* <0 when a is more specific than b. */
static int specificity_cmp(const route *a, const route *b)
{
    size_t n = a->nsegs < b->nsegs ? a->nsegs : b->nsegs;
    for (size_t i = 0; i < n; i++)
        if (a->segs[i].kind != b->segs[i].kind)
            return (int)a->segs[i].kind - (int)b->segs[i].kind;
    /* Same shape so far: the longer pattern consumed more literally (a tail matched
     * the empty rest), so prefer it. */
    return (int)b->nsegs - (int)a->nsegs;
}

static void allow_add(char *allow, const char *method)
{
    size_t len = strlen(allow), mlen = strlen(method);
    /* Already listed? */
    for (const char *p = allow; (p = strstr(p, method)) != NULL; p += mlen)
        if ((p == allow || p[-1] == ' ') && (p[mlen] == ',' || p[mlen] == '\0'))
            return;
    if (len + mlen + 3 >= BT_HTTP_ALLOW_MAX)
        return;
    if (len)
        memcpy(allow + len, ", ", 2), len += 2;
    memcpy(allow + len, method, mlen + 1);
}

bt_http_match_result bt_http_router_match(const bt_http_router *r, const char *method,
                                          const char *path, bt_http_match *m)
{
    memset(m, 0, sizeof *m);
    m->result = BT_HTTP_MATCH_NOT_FOUND;
    const char *starts[MAX_SEGS];
    size_t lens[MAX_SEGS];
    size_t n = split_path(path, starts, lens, MAX_SEGS);
    if (n > MAX_SEGS)
        return m->result; /* deeper than any pattern can be, barring a tail: 404 */
    int is_head = strcmp(method, "HEAD") == 0;
    const route *best = NULL, *best_get = NULL;
    int any_path = 0, has_get = 0;
    for (size_t i = 0; i < r->routes.len; i++) {
        const route *rt = &r->routes.items[i];
        if (!route_matches(rt, starts, lens, n))
            continue;
        any_path = 1;
        allow_add(m->allow, rt->method);
        if (strcmp(rt->method, "GET") == 0) {
            has_get = 1;
            if (is_head && (!best_get || specificity_cmp(rt, best_get) < 0))
                best_get = rt;
        }
        if (strcmp(rt->method, method) == 0 && (!best || specificity_cmp(rt, best) < 0))
            best = rt;
    }
    if (has_get)
        allow_add(m->allow, "HEAD");
    if (!best && is_head)
        best = best_get;
    if (!best) {
        if (any_path)
            m->result = BT_HTTP_MATCH_BAD_METHOD;
        else
            m->allow[0] = '\0';
        return m->result;
    }
    m->allow[0] = '\0';
    m->result = BT_HTTP_MATCH_OK;
    m->route = (size_t)(best - r->routes.items);
    m->data = best->data;
    m->pattern = best->pattern;
    for (size_t i = 0; i < best->nsegs; i++) {
        const seg *sg = &best->segs[i];
        if (sg->kind == SEG_LITERAL)
            continue;
        bt_http_param *p = &m->params[m->nparams++];
        p->name = sg->text;
        if (sg->kind == SEG_PARAM) {
            p->value = bt_xstrndup(starts[i], lens[i]);
        } else if (i < n) {
            /* The tail is the rest of the original path from segment i, verbatim. */
            p->value = bt_xstrdup(starts[i]);
            size_t l = strlen(p->value);
            if (l && p->value[l - 1] == '/')
                p->value[l - 1] = '\0';
        } else {
            p->value = bt_xstrdup("");
        }
    }
    return m->result;
}

const char *bt_http_match_param(const bt_http_match *m, const char *name)
{
    for (size_t i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return m->params[i].value;
    return NULL;
}

void bt_http_match_release(bt_http_match *m)
{
    for (size_t i = 0; i < m->nparams; i++)
        BT_FREE(m->params[i].value);
    m->nparams = 0;
}
