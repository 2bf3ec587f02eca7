/*
 * ui.c - the dashboard's routes: GET / (web/index.html), GET /ui/{file} (the other files
 * under web/, compiled into the binary by cmake/embed.cmake) and GET /api/whoami (what
 * the caller's credential may do, so the dashboard shows only the controls that work).
 *
 * The static files are public: the page itself asks for a token (docs/dashboard.md) and
 * every API call it makes is authorised as usual. Each file is answered with a strong
 * ETag (a hash of its bytes, computed once), "Cache-Control: no-cache" (the browser
 * revalidates and gets 304 while the binary is the same) and headers that keep the page
 * to its own origin: a Content-Security-Policy allowing only same-origin scripts, styles,
 * images and connections, no framing, nosniff, no referrer.
 *
 * GET /api/whoami (scope read) answers {"auth": bool, "identity": "token:dashboard" |
 * null, "scopes": ["read", ...], "can_write": bool, "can_admin": bool}.
 */
#include "api/api.h"

#include "base/embed.h"
#include "base/mem.h"
#include "http/auth.h"
#include "http/server.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define UI_PREFIX "web/"
#define UI_MAX    64 /* files under web/ */

typedef struct ui_file {
    const bt_embed_file *f;
    char etag[24]; /* "\"" 16 hex "\"" */
} ui_file;

typedef struct ui_state {
    ui_file files[UI_MAX];
    size_t n;
} ui_state;

static const char ui_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                             "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
                             "manifest-src 'self'; base-uri 'none'; form-action 'self'; "
                             "frame-ancestors 'none'";

/* FNV-1a 64: a content hash for the ETag (not a security boundary). */
static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static const ui_file *ui_lookup(const ui_state *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->files[i].f->path + strlen(UI_PREFIX), name) == 0)
            return &st->files[i];
    return NULL;
}

/* Does If-None-Match (a list, or "*") name etag? */
static int etag_matches(const char *inm, const char *etag)
{
    if (!inm)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    return strstr(inm, etag) != NULL;
}

static void serve(bt_http_req *req, const ui_file *uf)
{
    bt_http_resp_header(req, "ETag", uf->etag);
    bt_http_resp_header(req, "Cache-Control", "no-cache");
    bt_http_resp_header(req, "X-Content-Type-Options", "nosniff");
    bt_http_resp_header(req, "Referrer-Policy", "no-referrer");
    bt_http_resp_header(req, "X-Frame-Options", "DENY");
    bt_http_resp_header(req, "Content-Security-Policy", ui_csp);
    if (etag_matches(bt_http_req_header(req, "If-None-Match"), uf->etag)) {
        bt_http_respond(req, 304, NULL, NULL, 0);
        return;
    }
    bt_http_respond(req, 200, bt_embed_content_type(uf->f->path), uf->f->data, uf->f->len);
}

static void h_index(bt_http_req *req, void *ud)
{
    const ui_file *uf = ui_lookup(ud, "index.html");
    if (!uf) {
        bt_http_respond_error(req, 404, "not_found",
                              "this baton was built without its dashboard (web/index.html)");
        return;
    }
    serve(req, uf);
}

static void h_file(bt_http_req *req, void *ud)
{
    const char *name = bt_http_req_param(req, "file");
    const ui_file *uf = name ? ui_lookup(ud, name) : NULL;
    if (!uf) {
        bt_http_respond_error(req, 404, "not_found", "no dashboard file '%s'", name ? name : "");
        return;
    }
    serve(req, uf);
}

static void h_whoami(bt_http_req *req, void *ud)
{
    const bt_api *api = ud;
    const char *authz = bt_http_req_header(req, "Authorization");
    unsigned scopes = 0;
    int enabled = bt_http_auth_enabled(api->auth);
    if (bt_http_auth_scopes(api->auth, authz, &scopes) < 0) {
        /* Only reachable through ?token= style credentials the route does not take; the
         * server authorised this request, so it is a read credential of some kind. */
        scopes = BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_READ);
    }
    char ident[160] = "";
    if (enabled && authz)
        bt_http_auth_identity((void *)api->auth, authz, ident, sizeof ident);
    json_t *list = json_array();
    static const bt_http_scope all[] = {BT_HTTP_SCOPE_READ, BT_HTTP_SCOPE_WRITE,
                                        BT_HTTP_SCOPE_WORKER, BT_HTTP_SCOPE_ADMIN};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (scopes & BT_HTTP_SCOPE_BIT(all[i]))
            json_array_append_new(list, json_string(bt_http_scope_name(all[i])));
    json_t *j = json_pack("{s:b,s:o,s:o,s:b,s:b}", "auth", enabled, "identity",
                          *ident ? json_string(ident) : json_null(), "scopes", list, "can_write",
                          bt_http_scopes_satisfy(scopes, BT_HTTP_SCOPE_WRITE), "can_admin",
                          bt_http_scopes_satisfy(scopes, BT_HTTP_SCOPE_ADMIN));
    bt_http_respond_json(req, 200, j);
}

static void ui_free(void *ud)
{
    free(ud);
}

int bt_api_ui_register(bt_api *api, bt_error *err)
{
    ui_state *st = bt_xcalloc(1, sizeof *st);
    size_t n = 0;
    const bt_embed_file *all = bt_embed_list(&n);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(all[i].path, UI_PREFIX, strlen(UI_PREFIX)) != 0)
            continue;
        /* /ui/{file} is one path segment: files in sub-folders of web/ are not served. */
        if (strchr(all[i].path + strlen(UI_PREFIX), '/'))
            continue;
        if (st->n == UI_MAX) {
            free(st);
            return bt_errorf(err, BT_EINTERNAL, "more than %d files under web/: raise UI_MAX",
                             UI_MAX);
        }
        ui_file *uf = &st->files[st->n++];
        uf->f = &all[i];
        snprintf(uf->etag, sizeof uf->etag, "\"%016llx\"",
                 (unsigned long long)fnv1a(all[i].data, all[i].len));
    }
    int rc = bt_api_on_cleanup(api, ui_free, st, err);
    if (rc < 0) {
        free(st);
        return rc;
    }
    const bt_http_route routes[] = {
        {"GET", "/", BT_HTTP_SCOPE_NONE, h_index, st, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/ui/{file}", BT_HTTP_SCOPE_NONE, h_file, st, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/api/whoami", BT_HTTP_SCOPE_READ, h_whoami, api, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
