/*
 * models.c - `baton models status|list|pull MODEL|remove MODEL` (seed 004): the local
 * model endpoints the configuration uses (Ollama, llama.cpp, OpenAI-compatible servers
 * on this machine or the LAN), or the one given with --endpoint URL; with none
 * configured, Ollama's default http://127.0.0.1:11434.
 *
 *   status  each endpoint: kind, reachable, ready, models, loaded; and for every model
 *           an agent is configured with, whether the endpoint has it
 *   list    the models of each endpoint (loaded ones marked)
 *   pull    pull MODEL into Ollama's cache, with a progress bar on a terminal
 *   remove  delete MODEL from Ollama's cache
 *
 * Exit codes: 0 success (status: every endpoint ready and every configured model
 * present), 1 failure, 2 usage error.
 */
#include "cmd/cmd.h"

#include "agents/models.h"
#include "config/config.h"
#include "http/client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char synopsis[] =
    "baton models status|list|pull MODEL|remove MODEL [--endpoint URL] [--config FILE] [--json]";

#define DEFAULT_OLLAMA "http://127.0.0.1:11434"

typedef struct gather {
    json_t *results; /* array, one per endpoint, filled as probes answer */
    size_t pending;
} gather;

typedef struct slot {
    gather *g;
    size_t index;
} slot;

static void on_status(json_t *status, void *ud)
{
    slot *s = ud;
    json_array_set(s->g->results, s->index, status);
    s->g->pending--;
    free(s);
}

static int is_loaded(json_t *status, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(status, "loaded"), i, m)
    {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

static void human_size(json_int_t bytes, char *buf, size_t n)
{
    const char *units[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* Probe every endpoint; fills each one's "configured" ({model: present}) and returns
 * the number of problems (unready endpoints + missing configured models). */
static int probe_all(bt_cmd_agents_ctx *ctx, json_t *endpoints, json_t **out)
{
    gather g = {.results = json_array(), .pending = 0};
    size_t i;
    json_t *ep;
    for (i = 0; i < json_array_size(endpoints); i++)
        json_array_append_new(g.results, json_null());
    bt_http_client *http = bt_cmd_agents_http(ctx);
    if (!http) {
        json_decref(g.results);
        *out = NULL;
        return -1;
    }
    json_array_foreach(endpoints, i, ep)
    {
        slot *s = calloc(1, sizeof *s);
        s->g = &g;
        s->index = i;
        g.pending++;
        bt_models_status(http, json_string_value(json_object_get(ep, "url")), on_status, s);
    }
    while (g.pending && uv_run(bt_cmd_agents_loop(ctx), UV_RUN_ONCE))
        ;
    int problems = bt_models_annotate(g.results, endpoints);
    *out = g.results;
    return problems;
}

static int cmd_status(bt_cmd_agents_ctx *ctx, json_t *endpoints, int json, int list)
{
    json_t *res = NULL;
    int problems = probe_all(ctx, endpoints, &res);
    if (!res)
        return BT_EXIT_FAIL;
    if (json) {
        json_t *doc = json_pack("{s:O,s:b}", "endpoints", res, "ready", problems == 0);
        char *s = json_dumps(doc, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(doc);
        json_decref(res);
        return list || problems == 0 ? BT_EXIT_OK : BT_EXIT_FAIL;
    }
    size_t i;
    json_t *st;
    json_array_foreach(res, i, st)
    {
        const char *url = json_string_value(json_object_get(st, "url"));
        const char *kind = json_string_value(json_object_get(st, "kind"));
        const char *detail = json_string_value(json_object_get(st, "detail"));
        int ready = json_is_true(json_object_get(st, "ready"));
        if (!list) {
            printf("%s  %s  %s%s%s\n", url, kind,
                   ready                                            ? "ready"
                   : json_is_true(json_object_get(st, "reachable")) ? "not ready"
                                                                    : "unreachable",
                   detail && *detail ? " - " : "", detail ? detail : "");
            const char *mname;
            json_t *have;
            json_object_foreach(json_object_get(st, "configured_models"), mname, have)
            {
                if (json_is_true(have))
                    printf("  model %s: present%s\n", mname,
                           is_loaded(st, mname) ? " (loaded)" : "");
                else if (!strcmp(kind, "ollama"))
                    printf("  model %s: missing - run 'baton models pull %s'\n", mname, mname);
                else
                    printf("  model %s: missing\n", mname);
            }
            continue;
        }
        printf("%s (%s)%s\n", url, kind, ready ? "" : " - not ready");
        size_t k;
        json_t *m;
        if (json_array_size(json_object_get(st, "models")) == 0)
            printf("  (no models)\n");
        json_array_foreach(json_object_get(st, "models"), k, m)
        {
            const char *name = json_string_value(json_object_get(m, "name"));
            char size[32] = "";
            if (json_is_integer(json_object_get(m, "size")))
                human_size(json_integer_value(json_object_get(m, "size")), size, sizeof size);
            printf("  %-40s %10s%s\n", name, size, is_loaded(st, name) ? "  loaded" : "");
        }
    }
    json_decref(res);
    return list || problems == 0 ? BT_EXIT_OK : BT_EXIT_FAIL;
}

typedef struct op_state {
    int done;
    int rc;
    char message[512];
    int tty;
    char last_status[128];
} op_state;

static void on_progress(const char *status, int64_t completed, int64_t total, void *ud)
{
    op_state *o = ud;
    if (o->tty && total > 0 && completed >= 0) {
        int width = 30, fill = (int)(width * (double)completed / (double)total);
        char bar[64];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '-', (size_t)(width - fill));
        bar[width] = 0;
        fprintf(stderr, "\r%-40.40s [%s] %3d%%", status, bar,
                (int)(100.0 * (double)completed / (double)total));
        fflush(stderr);
        snprintf(o->last_status, sizeof o->last_status, "%s", status);
        return;
    }
    if (strcmp(status, o->last_status) != 0) {
        fprintf(stderr, "%s%s\n", o->tty && o->last_status[0] ? "\n" : "", status);
        snprintf(o->last_status, sizeof o->last_status, "%s", status);
    }
}

static void on_op_done(int rc, const char *message, void *ud)
{
    op_state *o = ud;
    o->done = 1;
    o->rc = rc;
    snprintf(o->message, sizeof o->message, "%s", message ? message : "");
}

/* The Ollama endpoint to pull into / remove from: --endpoint, else the first
 * configured endpoint that answers as Ollama. */
static const char *pick_ollama(bt_cmd_agents_ctx *ctx, json_t *endpoints, int explicit_endpoint,
                               char *buf, size_t n)
{
    if (explicit_endpoint || json_array_size(endpoints) == 1) {
        snprintf(buf, n, "%s",
                 json_string_value(json_object_get(json_array_get(endpoints, 0), "url")));
        return buf;
    }
    json_t *res = NULL;
    probe_all(ctx, endpoints, &res);
    size_t i;
    json_t *st;
    json_array_foreach(res, i, st)
    {
        if (strcmp(json_string_value(json_object_get(st, "kind")), "ollama") == 0) {
            snprintf(buf, n, "%s", json_string_value(json_object_get(st, "url")));
            json_decref(res);
            return buf;
        }
    }
    json_decref(res);
    return NULL;
}

static int cmd_pull_remove(bt_cmd_agents_ctx *ctx, json_t *endpoints, int explicit_endpoint,
                           int pull, const char *model, int json)
{
    char url[1024];
    if (!pick_ollama(ctx, endpoints, explicit_endpoint, url, sizeof url)) {
        fprintf(stderr, "baton models: none of the configured endpoints is an Ollama server; "
                        "pass --endpoint URL\n");
        return BT_EXIT_FAIL;
    }
    bt_http_client *http = bt_cmd_agents_http(ctx);
    if (!http)
        return BT_EXIT_FAIL;
    op_state o = {.tty = !json && isatty(STDERR_FILENO)};
    bt_error err = BT_ERROR_INIT;
    int rc = pull
                 ? bt_models_pull(http, url, model, json ? NULL : on_progress, on_op_done, &o, &err)
                 : bt_models_remove(http, url, model, on_op_done, &o, &err);
    if (rc < 0) {
        fprintf(stderr, "baton models: %s\n", err.msg);
        return BT_EXIT_FAIL;
    }
    while (!o.done && uv_run(bt_cmd_agents_loop(ctx), UV_RUN_ONCE))
        ;
    if (o.tty && o.last_status[0])
        fputc('\n', stderr);
    if (json) {
        json_t *doc = json_pack("{s:b,s:s,s:s,s:s}", "success", o.rc == 0, "endpoint", url, "model",
                                model, "message", o.message);
        char *s = json_dumps(doc, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(doc);
    } else if (o.rc == 0) {
        printf("%s %s %s %s\n", pull ? "pulled" : "removed", model, pull ? "into" : "from", url);
    } else {
        fprintf(stderr, "baton models %s %s: %s\n", pull ? "pull" : "remove", model, o.message);
    }
    return o.rc == 0 ? BT_EXIT_OK : BT_EXIT_FAIL;
}

int bt_cmd_models(int argc, char **argv)
{
    const char *config = NULL, *endpoint = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"endpoint", 'e', 1, &endpoint, NULL, "use this endpoint instead of the configured ones"},
        {"json", 0, 0, NULL, &json, "print JSON"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("models", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("models", synopsis, opts);
        printf("\nLocal model endpoints: every ollama agent's base_url and every openai agent on\n"
               "this machine or the LAN (else %s).\n"
               "Exit codes: 0 success, 1 failure (status: something not ready or missing),\n"
               "2 usage error.\n",
               DEFAULT_OLLAMA);
        return BT_EXIT_OK;
    }
    const char *sub = pos.len ? pos.items[0] : "status";
    int is_pull = strcmp(sub, "pull") == 0, is_remove = strcmp(sub, "remove") == 0;
    if (strcmp(sub, "status") != 0 && strcmp(sub, "list") != 0 && !is_pull && !is_remove) {
        fprintf(stderr, "baton models: unknown subcommand '%s'. usage: %s\n", sub, synopsis);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    if ((is_pull || is_remove) != (pos.len == 2) || pos.len > 2) {
        fprintf(stderr, "baton models %s: %s. usage: %s\n", sub,
                is_pull || is_remove ? "expected one MODEL" : "takes no argument", synopsis);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_config *cfg = NULL;
    if (bt_cmd_load_config("models", config, &cfg) != 0) {
        bt_strvec_clear(&pos);
        return BT_EXIT_FAIL;
    }
    json_t *endpoints;
    if (endpoint) {
        char *root = bt_models_root(endpoint);
        endpoints = json_pack("[{s:s,s:[],s:[]}]", "url", root, "agents", "models");
        free(root);
    } else {
        endpoints = bt_models_endpoints(cfg);
        if (json_array_size(endpoints) == 0)
            json_array_append_new(
                endpoints, json_pack("{s:s,s:[],s:[]}", "url", DEFAULT_OLLAMA, "agents", "models"));
    }
    bt_cmd_agents_ctx *ctx = bt_cmd_agents_open(cfg);
    if (is_pull || is_remove)
        rc = cmd_pull_remove(ctx, endpoints, endpoint != NULL, is_pull, pos.items[1], json);
    else
        rc = cmd_status(ctx, endpoints, json, strcmp(sub, "list") == 0);
    json_decref(endpoints);
    bt_cmd_agents_close(ctx);
    bt_config_free(cfg);
    bt_strvec_clear(&pos);
    return rc;
}
