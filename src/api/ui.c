/*
 * ui.c - the dashboard's routes: GET / (web/index.html), GET /ui/{file} (the other files
 * under web/, compiled into the binary by cmake/embed.cmake) and GET /api/whoami (what
 * the caller's credential may do, so the dashboard shows only the controls that work).
 *
 * The static files are public: the page itself asks for a token (docs/dashboard.md) and
 * every API call it makes is authorised as usual. Each file is answered with a strong
 * ETag (a hash of its bytes, computed once), "Cache-Control: no-cache" (the browser
 * revalidates and gets 304 while the binary is the same), gzip-compressed once and kept
 * for clients that accept it (with its own ETag), and headers that keep the page
 * to its own origin: a Content-Security-Policy allowing only same-origin scripts, styles,
 * images and connections, no framing, nosniff, no referrer.
 *
 * GET /api/whoami (public, so a login page can ask without a failing request) answers
 * 200 {"auth": bool (any credential configured), "authenticated": bool, "identity":
 * "token:dashboard" | null, "scopes": ["read", ...], "can_read", "can_write", "can_admin",
 * "error": why the credential was not accepted | null}. It never says which tokens exist.
 */
#include "api/api.h"

#include "base/embed.h"
#include "base/mem.h"
#include "http/auth.h"
#include "http/gzip.h"
#include "http/server.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UI_PREFIX "web/"
#define UI_MAX    64 /* files under web/ */

typedef struct ui_file {
    const bt_embed_file *f;
    char etag[24];    /* "\"" 16 hex "\"" */
    char etag_gz[28]; /* the gzip form's: "\"" 16 hex "-gz\"" */
    void *gz;         /* the gzip form, made on first demand (NULL = not yet, or not worth it) */
    size_t gzlen;
    int gz_tried;
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

static ui_file *ui_lookup(ui_state *st, const char *name)
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

/* The gzip form of uf, compressed once and kept; NULL when it does not pay. */
static const void *ui_gzip(ui_file *uf, size_t *len)
{
    if (!uf->gz_tried) {
        uf->gz_tried = 1;
        if (uf->f->len >= BT_GZIP_MIN_BYTES &&
            bt_gzip_compressible(bt_embed_content_type(uf->f->path)) &&
            bt_gzip_compress(uf->f->data, uf->f->len, &uf->gz, &uf->gzlen) == 0 &&
            uf->gzlen >= uf->f->len) {
            free(uf->gz);
            uf->gz = NULL;
        }
    }
    *len = uf->gzlen;
    return uf->gz;
}

static void serve(bt_http_req *req, ui_file *uf)
{
    size_t gzlen = 0;
    const void *gz = ui_gzip(uf, &gzlen);
    int use_gz = gz && bt_gzip_accepted(bt_http_req_header(req, "Accept-Encoding"));
    const char *etag = use_gz ? uf->etag_gz : uf->etag;
    bt_http_resp_header(req, "ETag", etag);
    bt_http_resp_header(req, "Cache-Control", "no-cache");
    bt_http_resp_header(req, "X-Content-Type-Options", "nosniff");
    bt_http_resp_header(req, "Referrer-Policy", "no-referrer");
    bt_http_resp_header(req, "X-Frame-Options", "DENY");
    bt_http_resp_header(req, "Content-Security-Policy", ui_csp);
    if (etag_matches(bt_http_req_header(req, "If-None-Match"), etag)) {
        bt_http_respond(req, 304, NULL, NULL, 0);
        return;
    }
    const char *type = bt_embed_content_type(uf->f->path);
    if (use_gz) {
        bt_http_resp_header(req, "Content-Encoding", "gzip");
        bt_http_respond(req, 200, type, gz, gzlen);
        return;
    }
    bt_http_respond(req, 200, type, uf->f->data, uf->f->len);
}

static void h_index(bt_http_req *req, void *ud)
{
    ui_file *uf = ui_lookup(ud, "index.html");
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
    ui_file *uf = name ? ui_lookup(ud, name) : NULL;
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
    const char *why = NULL;
    if (bt_http_auth_scopes(api->auth, authz, &scopes) < 0) {
        scopes = 0;
        why = authz ? "unknown, revoked or expired API token" : "no API token was sent";
    }
    char ident[160] = "";
    if (enabled && authz && !why)
        bt_http_auth_identity((void *)api->auth, authz, ident, sizeof ident);
    json_t *list = json_array();
    static const bt_http_scope all[] = {BT_HTTP_SCOPE_READ, BT_HTTP_SCOPE_WRITE,
                                        BT_HTTP_SCOPE_WORKER, BT_HTTP_SCOPE_ADMIN};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (scopes & BT_HTTP_SCOPE_BIT(all[i]))
            json_array_append_new(list, json_string(bt_http_scope_name(all[i])));
    json_t *j = json_pack("{s:b,s:b,s:o,s:o,s:b,s:b,s:b,s:o}", "auth", enabled, "authenticated",
                          !why, "identity", *ident ? json_string(ident) : json_null(), "scopes",
                          list, "can_read", bt_http_scopes_satisfy(scopes, BT_HTTP_SCOPE_READ),
                          "can_write", bt_http_scopes_satisfy(scopes, BT_HTTP_SCOPE_WRITE),
                          "can_admin", bt_http_scopes_satisfy(scopes, BT_HTTP_SCOPE_ADMIN), "error",
                          why ? json_string(why) : json_null());
    bt_http_resp_header(req, "Cache-Control", "no-store");
    bt_http_respond_json(req, 200, j);
}

static void ui_free(void *ud)
{
    ui_state *st = ud;
    for (size_t i = 0; i < st->n; i++)
        free(st->files[i].gz);
    free(st);
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
        unsigned long long hash = (unsigned long long)fnv1a(all[i].data, all[i].len);
        snprintf(uf->etag, sizeof uf->etag, "\"%016llx\"", hash);
        snprintf(uf->etag_gz, sizeof uf->etag_gz, "\"%016llx-gz\"", hash);
    }
    int rc = bt_api_on_cleanup(api, ui_free, st, err);
    if (rc < 0) {
        free(st);
        return rc;
    }
    const bt_http_route routes[] = {
        {"GET", "/", BT_HTTP_SCOPE_NONE, h_index, st, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/ui/{file}", BT_HTTP_SCOPE_NONE, h_file, st, 0, BT_HTTP_ROUTE_QUIET},
        {"GET", "/api/whoami", BT_HTTP_SCOPE_NONE, h_whoami, api, 0, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
