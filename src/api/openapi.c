/*
 * openapi.c - GET /openapi.json (OpenAPI 3.1) and GET /docs (the same document as a
 * self-contained HTML page: inline CSS, no scripts, no CDN).
 *
 * The hand-written description lives in docs/openapi.json, embedded in the binary
 * (base/embed.h). What is served is built from the routes actually registered on the
 * server (bt_http_server_routes): every registered route appears, with its description
 * from the file, and with `security` derived from the scope the route really requires
 * (x-baton-scope names it). A registered route the file does not describe still appears,
 * marked "x-baton-undocumented": true, so drift is visible (and fails
 * tests/integration/test_api_meta.py); described routes that are not registered (yet)
 * are left out, so the document never promises what this binary does not serve.
 *
 * State: the parsed file, owned here and freed by bt_api_cleanup.
 */
#include "api/api.h"

#include "base/embed.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "http/server.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define OPENAPI_FILE "docs/openapi.json"

typedef struct openapi_state {
    bt_api *api;
    json_t *doc; /* the embedded description */
} openapi_state;

typedef struct build_ctx {
    const json_t *src_paths;
    json_t *paths;
} build_ctx;

static void add_route(void *ud, const char *method, const char *pattern, bt_http_scope scope)
{
    build_ctx *b = ud;
    char m[16];
    size_t i = 0;
    for (; i < sizeof m - 1 && method[i]; i++)
        m[i] = (char)tolower((unsigned char)method[i]);
    m[i] = '\0';

    const json_t *src_item = json_object_get(b->src_paths, pattern);
    json_t *item = json_object_get(b->paths, pattern);
    if (!item) {
        item = json_object();
        json_object_set_new(b->paths, pattern, item);
        json_t *params = json_object_get(src_item, "parameters");
        if (params)
            json_object_set(item, "parameters", params);
    }
    const json_t *src_op = json_object_get(src_item, m);
    json_t *op;
    if (src_op) {
        op = json_deep_copy(src_op);
    } else {
        op = json_pack("{s:s,s:b,s:{s:{s:s}}}", "summary", "(not described in docs/openapi.json)",
                       "x-baton-undocumented", 1, "responses", "default", "description",
                       "see the route's source");
    }
    if (scope == BT_HTTP_SCOPE_NONE)
        json_object_set_new(op, "security", json_array());
    else
        json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
    json_object_set_new(op, "x-baton-scope", json_string(bt_http_scope_name(scope)));
    json_object_set_new(item, m, op);
}

/* The served document: a new reference. */
static json_t *build_doc(const openapi_state *st)
{
    json_t *doc = json_deep_copy(st->doc);
    build_ctx b = {json_object_get(st->doc, "paths"), json_object()};
    bt_http_server_routes(st->api->http, add_route, &b);
    json_object_set_new(doc, "paths", b.paths);
    return doc;
}

static void h_openapi(bt_http_req *req, void *ud)
{
    bt_http_respond_json(req, 200, build_doc(ud));
}

/* ---- /docs ---- */

static void esc(bt_strbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            bt_strbuf_addstr(b, "&lt;");
            break;
        case '>':
            bt_strbuf_addstr(b, "&gt;");
            break;
        case '&':
            bt_strbuf_addstr(b, "&amp;");
            break;
        case '"':
            bt_strbuf_addstr(b, "&quot;");
            break;
        default:
            bt_strbuf_addch(b, *s);
        }
    }
}

/* An id attribute / anchor from free text. */
static void anchor(bt_strbuf *b, const char *prefix, const char *a, const char *c)
{
    bt_strbuf_addstr(b, prefix);
    for (const char *s = a; s && *s; s++)
        bt_strbuf_addch(b, isalnum((unsigned char)*s) ? *s : '-');
    if (c) {
        bt_strbuf_addch(b, '-');
        for (const char *s = c; *s; s++)
            bt_strbuf_addch(b, isalnum((unsigned char)*s) ? *s : '-');
    }
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void pre_json(bt_strbuf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    bt_strbuf_addstr(b, "<pre>");
    esc(b, text);
    bt_strbuf_addstr(b, "</pre>");
    free(text);
}

/* A schema's short name: "Task" for {"$ref":"#/components/schemas/Task"}, the type
 * otherwise. */
static void schema_name(bt_strbuf *b, const json_t *schema)
{
    const char *ref = str(schema, "$ref");
    if (ref) {
        const char *name = strrchr(ref, '/');
        name = name ? name + 1 : ref;
        bt_strbuf_addstr(b, "<a href=\"#");
        anchor(b, "schema-", name, NULL);
        bt_strbuf_addstr(b, "\">");
        esc(b, name);
        bt_strbuf_addstr(b, "</a>");
        return;
    }
    const char *type = str(schema, "type");
    if (type && strcmp(type, "array") == 0 && json_object_get(schema, "items")) {
        bt_strbuf_addstr(b, "array of ");
        schema_name(b, json_object_get(schema, "items"));
        return;
    }
    esc(b, type ? type : "object");
}

static void render_params(bt_strbuf *b, const json_t *params)
{
    if (!json_array_size(params))
        return;
    bt_strbuf_addstr(b, "<table><tr><th>parameter</th><th>in</th><th>type</th><th>description"
                        "</th></tr>");
    size_t i;
    const json_t *p;
    json_array_foreach(params, i, p)
    {
        bt_strbuf_addstr(b, "<tr><td><code>");
        esc(b, str(p, "name"));
        bt_strbuf_addstr(b, "</code>");
        if (json_is_true(json_object_get(p, "required")))
            bt_strbuf_addstr(b, " <span class=req>required</span>");
        bt_strbuf_addstr(b, "</td><td>");
        esc(b, str(p, "in"));
        bt_strbuf_addstr(b, "</td><td>");
        schema_name(b, json_object_get(p, "schema"));
        bt_strbuf_addstr(b, "</td><td>");
        esc(b, str(p, "description"));
        bt_strbuf_addstr(b, "</td></tr>");
    }
    bt_strbuf_addstr(b, "</table>");
}

static const json_t *json_schema_of(const json_t *content_holder)
{
    const json_t *content = json_object_get(content_holder, "content");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)content, k, v)
    {
        return json_object_get(v, "schema");
    }
    return NULL;
}

static void render_op(bt_strbuf *b, const char *path, const char *method, const json_t *op)
{
    bt_strbuf_addstr(b, "<section class=op id=\"");
    anchor(b, "op-", method, path);
    bt_strbuf_addstr(b, "\"><h3><span class=\"m ");
    esc(b, method);
    bt_strbuf_addstr(b, "\">");
    for (const char *m = method; *m; m++)
        bt_strbuf_addch(b, (char)toupper((unsigned char)*m));
    bt_strbuf_addstr(b, "</span> <code>");
    esc(b, path);
    bt_strbuf_addstr(b, "</code> <span class=scope>");
    const char *scope = str(op, "x-baton-scope");
    if (scope && strcmp(scope, "none") != 0) {
        bt_strbuf_addstr(b, "bearer token, scope ");
        esc(b, scope);
    } else {
        bt_strbuf_addstr(b, "no token needed");
    }
    bt_strbuf_addstr(b, "</span></h3>");
    if (json_is_true(json_object_get(op, "x-baton-undocumented")))
        bt_strbuf_addstr(b, "<p class=warn>This route is registered but not described in "
                            "docs/openapi.json.</p>");
    if (str(op, "summary")) {
        bt_strbuf_addstr(b, "<p><b>");
        esc(b, str(op, "summary"));
        bt_strbuf_addstr(b, "</b></p>");
    }
    if (str(op, "description")) {
        bt_strbuf_addstr(b, "<p>");
        esc(b, str(op, "description"));
        bt_strbuf_addstr(b, "</p>");
    }
    render_params(b, json_object_get(op, "parameters"));
    const json_t *rb = json_object_get(op, "requestBody");
    if (rb) {
        bt_strbuf_addstr(b, "<p>Request body: ");
        schema_name(b, json_schema_of(rb));
        if (str(rb, "description")) {
            bt_strbuf_addstr(b, " &mdash; ");
            esc(b, str(rb, "description"));
        }
        bt_strbuf_addstr(b, "</p>");
    }
    const json_t *responses = json_object_get(op, "responses");
    if (json_object_size(responses)) {
        bt_strbuf_addstr(b, "<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
        const char *code;
        const json_t *r;
        json_object_foreach((json_t *)responses, code, r)
        {
            bt_strbuf_addstr(b, "<tr><td>");
            esc(b, code);
            bt_strbuf_addstr(b, "</td><td>");
            esc(b, str(r, "description"));
            bt_strbuf_addstr(b, "</td><td>");
            const json_t *sch = json_schema_of(r);
            if (sch)
                schema_name(b, sch);
            bt_strbuf_addstr(b, "</td></tr>");
        }
        bt_strbuf_addstr(b, "</table>");
    }
    bt_strbuf_addstr(b, "</section>\n");
}

static const char *first_tag(const json_t *op)
{
    const char *t = json_string_value(json_array_get(json_object_get(op, "tags"), 0));
    return t ? t : "other";
}

static void render_tag(bt_strbuf *b, const json_t *paths, const char *tag, const char *desc)
{
    int any = 0;
    const char *path;
    const json_t *item;
    json_object_foreach((json_t *)paths, path, item)
    {
        const char *method;
        const json_t *op;
        json_object_foreach((json_t *)item, method, op)
        {
            if (strcmp(method, "parameters") == 0 || strcmp(first_tag(op), tag) != 0)
                continue;
            if (!any) {
                bt_strbuf_addstr(b, "<h2 id=\"");
                anchor(b, "tag-", tag, NULL);
                bt_strbuf_addstr(b, "\">");
                esc(b, tag);
                bt_strbuf_addstr(b, "</h2>");
                if (desc) {
                    bt_strbuf_addstr(b, "<p>");
                    esc(b, desc);
                    bt_strbuf_addstr(b, "</p>");
                }
                any = 1;
            }
            render_op(b, path, method, op);
        }
    }
}

static const char docs_css[] =
    "body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:0 auto;padding:1rem 2rem;"
    "color:#1d232a;background:#fff}h1{margin-bottom:0}h2{border-bottom:2px solid #dde3ea;"
    "margin-top:2.5rem}nav a{margin-right:1rem}code,pre{font:13px/1.4 ui-monospace,monospace}"
    "pre{background:#f5f7f9;padding:.6rem;overflow:auto;border-radius:4px}"
    ".op{border:1px solid #dde3ea;border-radius:6px;padding:.2rem 1rem;margin:1rem 0}"
    ".op h3{font-size:1rem}.m{display:inline-block;min-width:4rem;text-align:center;"
    "color:#fff;border-radius:3px;padding:0 .3rem}.get{background:#2f7d32}.post{background:#1f5fbf}"
    ".put{background:#a15c00}.patch{background:#7b3fa0}.delete{background:#b3261e}"
    ".scope{font-weight:normal;color:#5b6670;font-size:.85rem;margin-left:.5rem}"
    "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #dde3ea;padding:.2rem "
    ".5rem;text-align:left;vertical-align:top}.req{color:#b3261e;font-size:.8rem}"
    ".warn{color:#b3261e}@media(prefers-color-scheme:dark){body{background:#14181c;color:#dde3ea}"
    "pre{background:#1d232a}}";

static void h_docs(bt_http_req *req, void *ud)
{
    json_t *doc = build_doc(ud);
    const json_t *info = json_object_get(doc, "info");
    const json_t *paths = json_object_get(doc, "paths");
    const json_t *tags = json_object_get(doc, "tags");
    bt_strbuf b = BT_STRBUF_INIT;
    bt_strbuf_addstr(&b, "<!doctype html><html lang=en><head><meta charset=utf-8><meta "
                         "name=viewport content=\"width=device-width\"><title>");
    esc(&b, str(info, "title"));
    bt_strbuf_addstr(&b, " API</title><style>");
    bt_strbuf_addstr(&b, docs_css);
    bt_strbuf_addstr(&b, "</style></head><body><h1>");
    esc(&b, str(info, "title"));
    bt_strbuf_addstr(&b, " API <small>");
    esc(&b, str(info, "version"));
    bt_strbuf_addstr(&b, "</small></h1><p>");
    esc(&b, str(info, "description"));
    bt_strbuf_addstr(&b, "</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> "
                         "(OpenAPI 3.1).</p><nav>");
    size_t i;
    const json_t *t;
    json_array_foreach(tags, i, t)
    {
        bt_strbuf_addstr(&b, "<a href=\"#");
        anchor(&b, "tag-", str(t, "name"), NULL);
        bt_strbuf_addstr(&b, "\">");
        esc(&b, str(t, "name"));
        bt_strbuf_addstr(&b, "</a>");
    }
    bt_strbuf_addstr(&b, "<a href=\"#schemas\">schemas</a></nav>\n");
    json_array_foreach(tags, i, t)
    {
        render_tag(&b, paths, str(t, "name"), str(t, "description"));
    }
    render_tag(&b, paths, "other", NULL);

    bt_strbuf_addstr(&b, "<h2 id=schemas>Schemas</h2>");
    const char *name;
    const json_t *schema;
    json_object_foreach(json_object_get(json_object_get(doc, "components"), "schemas"), name,
                        schema)
    {
        bt_strbuf_addstr(&b, "<h3 id=\"");
        anchor(&b, "schema-", name, NULL);
        bt_strbuf_addstr(&b, "\">");
        esc(&b, name);
        bt_strbuf_addstr(&b, "</h3>");
        pre_json(&b, schema);
    }
    bt_strbuf_addstr(&b, "</body></html>\n");
    json_decref(doc);
    bt_http_respond(req, 200, "text/html; charset=utf-8", b.buf, b.len);
    bt_strbuf_release(&b);
}

static void openapi_cleanup(void *ud)
{
    openapi_state *st = ud;
    json_decref(st->doc);
    free(st);
}

int bt_api_openapi_register(bt_api *api, bt_error *err)
{
    const bt_embed_file *f = bt_embed_find(OPENAPI_FILE);
    if (!f)
        return bt_errorf(err, BT_EINTERNAL, "%s was not embedded in this build (re-run cmake)",
                         OPENAPI_FILE);
    json_t *doc = NULL;
    int rc = bt_json_parse((const char *)f->data, f->len, 0, &doc, err);
    if (rc < 0)
        return bt_error_prefix(err, "embedded %s", OPENAPI_FILE);
    if (!json_is_object(json_object_get(doc, "paths"))) {
        json_decref(doc);
        return bt_errorf(err, BT_EINTERNAL, "embedded %s has no paths object", OPENAPI_FILE);
    }
    openapi_state *st = bt_xcalloc(1, sizeof *st);
    st->api = api;
    st->doc = doc;
    rc = bt_api_on_cleanup(api, openapi_cleanup, st, err);
    if (rc < 0) {
        openapi_cleanup(st);
        return rc;
    }
    const bt_http_route routes[] = {
        {"GET", "/openapi.json", BT_HTTP_SCOPE_NONE, h_openapi, st, 0, 0},
        {"GET", "/docs", BT_HTTP_SCOPE_NONE, h_docs, st, 0, 0},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        rc = bt_http_server_route(api->http, &routes[i], err);
        if (rc < 0)
            return rc;
    }
    return 0;
}
