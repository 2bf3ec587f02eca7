/*
 * models.c - local model endpoints (models.h): discovery from the configuration, a
 * status probe that detects Ollama, llama.cpp or a plain OpenAI-compatible server, and
 * Ollama's pull (streamed NDJSON progress) and delete.
 *
 * The status probe is a small sequence of GETs, each with a short timeout:
 *   /api/version -> Ollama: then /api/tags (models) and /api/ps (loaded)
 *   else /health  -> llama.cpp (200 ready, 503 loading): then /v1/models
 *   else /v1/models -> OpenAI-compatible
 */
#include "agents/models.h"

#include "agents/agent.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "http/client.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROBE_TIMEOUT_MS 3000
#define MAX_LINE         (64 * 1024)

char *bt_models_root(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n >= 3 && strncmp(url + n - 3, "/v1", 3) == 0)
        n -= 3;
    while (n > 0 && url[n - 1] == '/')
        n--;
    return bt_xstrndup(url, n);
}

json_t *bt_models_endpoints(const bt_config *cfg)
{
    json_t *arr = json_array();
    for (size_t i = 0; cfg && i < cfg->agents.len; i++) {
        const bt_config_agent *a = &cfg->agents.items[i];
        if (!a->base_url || (a->type != BT_AGENT_OLLAMA && a->type != BT_AGENT_OPENAI))
            continue;
        if (a->type == BT_AGENT_OPENAI && !bt_agent_url_is_local(a->base_url))
            continue;
        char *root = bt_models_root(a->base_url);
        json_t *ep = NULL, *x;
        size_t k;
        json_array_foreach(arr, k, x)
        {
            if (strcmp(json_string_value(json_object_get(x, "url")), root) == 0) {
                ep = x;
                break;
            }
        }
        if (!ep) {
            ep = json_pack("{s:s,s:[],s:[]}", "url", root, "agents", "models");
            json_array_append_new(arr, ep);
        }
        json_array_append_new(json_object_get(ep, "agents"), json_string(a->name));
        if (a->model)
            json_array_append_new(json_object_get(ep, "models"), json_string(a->model));
        free(root);
    }
    return arr;
}

/* ---- status probe ---- */

typedef enum probe_step {
    P_VERSION = 0,
    P_TAGS,
    P_PS,
    P_HEALTH,
    P_LLAMA_MODELS,
    P_OPENAI_MODELS,
} probe_step;

typedef struct probe {
    bt_http_client *http;
    char *root;
    probe_step step;
    json_t *status;
    bt_models_status_fn cb;
    void *ud;
    char first_error[256];
} probe;

static void probe_next(probe *p, probe_step step);

static void probe_deliver(probe *p)
{
    p->cb(p->status, p->ud);
    json_decref(p->status);
    free(p->root);
    free(p);
}

static json_t *parse_body(const bt_http_response *r)
{
    json_t *v = NULL;
    if (r->rc == 0 && r->body_len)
        bt_json_parse(r->body, r->body_len, 64, &v, NULL);
    return v;
}

static void set_detail(probe *p, const char *prefix, const char *what)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s", prefix, what);
    json_object_set_new(p->status, "detail", json_string(buf));
}

static void add_openai_models(probe *p, json_t *doc)
{
    json_t *models = json_object_get(p->status, "models");
    json_t *data = json_object_get(doc, "data"), *m;
    size_t i;
    json_array_foreach(data, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (id)
            json_array_append_new(models, json_pack("{s:s}", "name", id));
    }
}

static void probe_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    probe *p = ud;
    json_t *doc = parse_body(r);
    if (r->rc < 0 && !p->first_error[0])
        snprintf(p->first_error, sizeof p->first_error, "%s", r->error);
    switch (p->step) {
    case P_VERSION:
        if (r->rc == 0 && r->status == 200 && json_object_get(doc, "version")) {
            json_object_set_new(p->status, "kind", json_string("ollama"));
            json_object_set_new(p->status, "reachable", json_true());
            json_object_set(p->status, "version", json_object_get(doc, "version"));
            json_decref(doc);
            probe_next(p, P_TAGS);
            return;
        }
        json_decref(doc);
        if (r->rc < 0) { /* nothing listens there: no point trying the other paths */
            json_object_set_new(p->status, "detail", json_string(r->error));
            probe_deliver(p);
            return;
        }
        probe_next(p, P_HEALTH);
        return;
    case P_TAGS: {
        json_t *models = json_object_get(p->status, "models"), *m;
        size_t i;
        json_array_foreach(json_object_get(doc, "models"), i, m)
        {
            json_t *o = json_object();
            json_object_set(o, "name", json_object_get(m, "name"));
            if (json_object_get(m, "size"))
                json_object_set(o, "size", json_object_get(m, "size"));
            if (json_object_get(m, "modified_at"))
                json_object_set(o, "modified_at", json_object_get(m, "modified_at"));
            json_t *d = json_object_get(m, "details");
            if (json_object_get(d, "family"))
                json_object_set(o, "family", json_object_get(d, "family"));
            if (json_object_get(d, "parameter_size"))
                json_object_set(o, "parameter_size", json_object_get(d, "parameter_size"));
            if (json_object_get(d, "quantization_level"))
                json_object_set(o, "quantization", json_object_get(d, "quantization_level"));
            json_array_append_new(models, o);
        }
        int ok = r->rc == 0 && r->status == 200;
        json_object_set_new(p->status, "ready", json_boolean(ok));
        if (!ok)
            set_detail(p, "GET /api/tags failed: ", r->rc < 0 ? r->error : "bad status");
        json_decref(doc);
        probe_next(p, P_PS);
        return;
    }
    case P_PS: {
        json_t *loaded = json_object_get(p->status, "loaded"), *m;
        size_t i;
        json_array_foreach(json_object_get(doc, "models"), i, m)
        {
            json_t *o = json_object();
            json_object_set(o, "name", json_object_get(m, "name"));
            if (json_object_get(m, "size_vram"))
                json_object_set(o, "size_vram", json_object_get(m, "size_vram"));
            if (json_object_get(m, "expires_at"))
                json_object_set(o, "expires_at", json_object_get(m, "expires_at"));
            json_array_append_new(loaded, o);
        }
        json_decref(doc);
        if (!json_object_get(p->status, "detail")) {
            char buf[128];
            snprintf(buf, sizeof buf, "Ollama %s: %zu models, %zu loaded",
                     json_string_value(json_object_get(p->status, "version")),
                     json_array_size(json_object_get(p->status, "models")),
                     json_array_size(json_object_get(p->status, "loaded")));
            json_object_set_new(p->status, "detail", json_string(buf));
        }
        probe_deliver(p);
        return;
    }
    case P_HEALTH: {
        const char *st = json_string_value(json_object_get(doc, "status"));
        json_t *err = json_object_get(doc, "error");
        if (r->rc == 0 && ((r->status == 200 && st) || (r->status == 503 && err))) {
            json_object_set_new(p->status, "kind", json_string("llama.cpp"));
            json_object_set_new(p->status, "reachable", json_true());
            int ready = r->status == 200;
            json_object_set_new(p->status, "ready", json_boolean(ready));
            if (!ready) {
                const char *msg = json_string_value(json_object_get(err, "message"));
                set_detail(p, "llama.cpp: ", msg ? msg : "not ready (503)");
            }
            json_decref(doc);
            probe_next(p, P_LLAMA_MODELS);
            return;
        }
        json_decref(doc);
        probe_next(p, P_OPENAI_MODELS);
        return;
    }
    case P_LLAMA_MODELS:
    case P_OPENAI_MODELS: {
        int ok = r->rc == 0 && r->status == 200 && json_is_array(json_object_get(doc, "data"));
        if (ok)
            add_openai_models(p, doc);
        json_decref(doc);
        if (p->step == P_OPENAI_MODELS) {
            json_object_set_new(p->status, "kind", json_string(ok ? "openai" : "unknown"));
            json_object_set_new(p->status, "reachable", json_boolean(r->rc == 0));
            json_object_set_new(p->status, "ready", json_boolean(ok));
        }
        if (!json_object_get(p->status, "detail")) {
            char buf[300];
            if (ok)
                snprintf(buf, sizeof buf, "%s: %zu models",
                         p->step == P_LLAMA_MODELS ? "llama.cpp" : "OpenAI-compatible",
                         json_array_size(json_object_get(p->status, "models")));
            else if (r->rc < 0)
                snprintf(buf, sizeof buf, "%s", r->error);
            else
                snprintf(buf, sizeof buf, "answers HTTP %ld to GET /v1/models", r->status);
            json_object_set_new(p->status, "detail", json_string(buf));
        }
        probe_deliver(p);
        return;
    }
    }
}

static void probe_next(probe *p, probe_step step)
{
    static const char *const paths[] = {"/api/version", "/api/tags",  "/api/ps",
                                        "/health",      "/v1/models", "/v1/models"};
    p->step = step;
    char *url = bt_xmalloc(strlen(p->root) + 32);
    sprintf(url, "%s%s", p->root, paths[step]);
    bt_http_request rq = {.url = url,
                          .timeout_ms = PROBE_TIMEOUT_MS,
                          .connect_timeout_ms = PROBE_TIMEOUT_MS,
                          .on_done = probe_done,
                          .ud = p};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_http_client_send(p->http, &rq, NULL, &err);
    free(url);
    if (rc < 0) {
        json_object_set_new(p->status, "detail", json_string(err.msg));
        probe_deliver(p); /* only from a callback or the first call (see below) */
    }
}

typedef struct deferred {
    uv_timer_t t;
    probe *p;
} deferred;

static void deferred_closed(uv_handle_t *h)
{
    free(h->data);
}

static void deferred_fire(uv_timer_t *t)
{
    deferred *d = t->data;
    probe_deliver(d->p);
    uv_close((uv_handle_t *)t, deferred_closed);
}

void bt_models_status(bt_http_client *http, const char *url, bt_models_status_fn cb, void *ud)
{
    probe *p = bt_xcalloc(1, sizeof *p);
    p->http = http;
    p->root = bt_models_root(url);
    p->cb = cb;
    p->ud = ud;
    p->status = json_pack("{s:s,s:s,s:b,s:b,s:[],s:[]}", "url", p->root, "kind", "unknown",
                          "reachable", 0, "ready", 0, "models", "loaded");
    p->step = P_VERSION;
    char *u = bt_xmalloc(strlen(p->root) + 32);
    sprintf(u, "%s/api/version", p->root);
    bt_http_request first = {.url = u,
                             .timeout_ms = PROBE_TIMEOUT_MS,
                             .connect_timeout_ms = PROBE_TIMEOUT_MS,
                             .on_done = probe_done,
                             .ud = p};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_http_client_send(http, &first, NULL, &err);
    free(u);
    if (rc < 0) {
        /* never answer synchronously: defer to the loop */
        json_object_set_new(p->status, "detail", json_string(err.msg));
        deferred *d = bt_xcalloc(1, sizeof *d);
        d->p = p;
        d->t.data = d;
        uv_timer_init(bt_http_client_loop(http), &d->t);
        uv_timer_start(&d->t, deferred_fire, 0, 0);
    }
}

int bt_models_has(json_t *status, const char *model)
{
    size_t i, len = strlen(model);
    json_t *m;
    json_array_foreach(json_object_get(status, "models"), i, m)
    {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && (strcmp(n, model) == 0 || (!strchr(model, ':') && strncmp(n, model, len) == 0 &&
                                            strcmp(n + len, ":latest") == 0)))
            return 1;
    }
    return 0;
}

int bt_models_annotate(json_t *results, json_t *endpoints)
{
    int problems = 0;
    for (size_t i = 0; i < json_array_size(results); i++) {
        json_t *st = json_array_get(results, i), *ep = json_array_get(endpoints, i);
        json_object_set(st, "agents", json_object_get(ep, "agents"));
        if (!json_is_true(json_object_get(st, "ready")))
            problems++;
        json_t *conf = json_object(), *m;
        size_t k;
        json_array_foreach(json_object_get(ep, "models"), k, m)
        {
            int have = bt_models_has(st, json_string_value(m));
            json_object_set_new(conf, json_string_value(m), json_boolean(have));
            if (!have)
                problems++;
        }
        json_object_set_new(st, "configured_models", conf);
    }
    return problems;
}

/* ---- pull and remove ---- */

typedef struct op {
    bt_strbuf line;
    bt_models_progress_fn progress;
    bt_models_done_fn done;
    void *ud;
    char error[512];
    int success_seen;
    char *model;
} op;

static void op_line(op *o, const char *s, size_t n)
{
    json_t *v = NULL;
    if (n == 0 || bt_json_parse(s, n, 16, &v, NULL) < 0)
        return;
    const char *e = json_string_value(json_object_get(v, "error"));
    if (e && !o->error[0])
        snprintf(o->error, sizeof o->error, "%s", e);
    const char *st = json_string_value(json_object_get(v, "status"));
    if (st) {
        if (strcmp(st, "success") == 0)
            o->success_seen = 1;
        json_t *c = json_object_get(v, "completed"), *t = json_object_get(v, "total");
        if (o->progress)
            o->progress(st, json_is_integer(c) ? json_integer_value(c) : -1,
                        json_is_integer(t) ? json_integer_value(t) : -1, o->ud);
    }
    json_decref(v);
}

static int op_data(bt_http_call *call, long status, const char *data, size_t len, void *ud)
{
    (void)call;
    (void)status;
    op *o = ud;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            op_line(o, o->line.buf, o->line.len);
            bt_strbuf_setlen(&o->line, 0);
        } else if (o->line.len < MAX_LINE) {
            bt_strbuf_addch(&o->line, data[i]);
        }
    }
    return 0;
}

static void op_free(op *o)
{
    bt_strbuf_release(&o->line);
    free(o->model);
    free(o);
}

static const char *error_text(const bt_http_response *r, char *buf, size_t n)
{
    json_t *v = parse_body(r);
    const char *e = json_string_value(json_object_get(v, "error"));
    snprintf(buf, n, "%s", e ? e : (r->body_len ? r->body : "no error message"));
    json_decref(v);
    return buf;
}

static void pull_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    op *o = ud;
    if (o->line.len)
        op_line(o, o->line.buf, o->line.len);
    char buf[512];
    if (r->rc < 0)
        o->done(r->rc, r->error, o->ud);
    else if (r->status != 200)
        o->done(r->status == 404 ? BT_ENOENT : BT_EIO, error_text(r, buf, sizeof buf), o->ud);
    else if (o->error[0])
        o->done(BT_EIO, o->error, o->ud);
    else if (!o->success_seen)
        o->done(BT_EIO, "the pull stream ended before \"success\"", o->ud);
    else
        o->done(0, "success", o->ud);
    op_free(o);
}

static int start_op(bt_http_client *http, const char *method, const char *url, const char *path,
                    const char *model, bt_http_done_fn fn, bt_http_data_fn data, op *o,
                    bt_error *err)
{
    if (!http) {
        op_free(o);
        return bt_errorf(err, BT_EUNAVAIL, "no HTTP client");
    }
    char *root = bt_models_root(url);
    bt_strbuf u = BT_STRBUF_INIT;
    bt_strbuf_addf(&u, "%s%s", root, path);
    free(root);
    json_t *body = json_pack("{s:s}", "model", model);
    if (data)
        json_object_set_new(body, "stream", json_true());
    char *b = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    bt_http_request rq = {.method = method,
                          .url = bt_strbuf_cstr(&u),
                          .body = b,
                          .body_len = strlen(b),
                          .timeout_ms = data ? -1 : 30000,
                          .idle_timeout_ms = data ? 120000 : 0,
                          .on_done = fn,
                          .on_data = data,
                          .ud = o};
    int rc = bt_http_client_send(http, &rq, NULL, err);
    free(b);
    bt_strbuf_release(&u);
    if (rc < 0)
        op_free(o);
    return rc;
}

int bt_models_pull(bt_http_client *http, const char *url, const char *model,
                   bt_models_progress_fn progress, bt_models_done_fn done, void *ud, bt_error *err)
{
    if (!model || !*model || !done)
        return bt_errorf(err, BT_EINVAL, "pull needs a model name");
    op *o = bt_xcalloc(1, sizeof *o);
    bt_strbuf_init(&o->line, 0);
    o->progress = progress;
    o->done = done;
    o->ud = ud;
    o->model = bt_xstrdup(model);
    return start_op(http, "POST", url, "/api/pull", model, pull_done, op_data, o, err);
}

static void remove_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    op *o = ud;
    char buf[512];
    if (r->rc < 0)
        o->done(r->rc, r->error, o->ud);
    else if (r->status == 200)
        o->done(0, "deleted", o->ud);
    else if (r->status == 404)
        o->done(BT_ENOENT, error_text(r, buf, sizeof buf), o->ud);
    else
        o->done(BT_EIO, error_text(r, buf, sizeof buf), o->ud);
    op_free(o);
}

int bt_models_remove(bt_http_client *http, const char *url, const char *model,
                     bt_models_done_fn done, void *ud, bt_error *err)
{
    if (!model || !*model || !done)
        return bt_errorf(err, BT_EINVAL, "remove needs a model name");
    op *o = bt_xcalloc(1, sizeof *o);
    bt_strbuf_init(&o->line, 0);
    o->done = done;
    o->ud = ud;
    o->model = bt_xstrdup(model);
    return start_op(http, "DELETE", url, "/api/delete", model, remove_done, NULL, o, err);
}
