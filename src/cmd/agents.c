/*
 * agents.c - `baton agents [--config FILE] [--store URL] [--json]`: every configured
 * agent with its type, role and model, whether it can run right now or why not (CLI
 * missing from PATH, endpoint unreachable, key unset), and how it has been doing: its
 * circuit breaker, success rate, calls and median latency over the statistics window.
 * Checks run concurrently, so a slow endpoint costs its own probe's timeout, not the sum.
 *
 * The figures come from the store's persisted call history (the one `baton serve` and
 * `baton run` append to): the command opens the configured store, builds the
 * resilience wrapper over it and loads the window (bt_resil_load), so the breaker
 * state it shows is derived from the same history as the daemon's. A SQLite store that
 * does not exist yet is not created; without a store the table keeps its static columns
 * and stderr says why. `--json` prints the objects GET /api/agents answers with.
 *
 * Exit 0 when every agent is available, 1 when at least one is not (so scripts and CI
 * can gate on it), 2 on a usage error.
 */
#include "cmd/cmd.h"

#include "agents/agents.h"
#include "base/error.h"
#include "config/config.h"
#include "core/resilience.h"
#include "store/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char synopsis[] = "baton agents [--config FILE] [--store URL] [--json]";

typedef struct answer {
    json_t *status;
} answer;

static void on_status(json_t *status, void *ud)
{
    answer *a = ud;
    a->status = json_incref(status);
}

/* ---- the call history ---- */

typedef struct history {
    bt_store *store;
    bt_resil *rs;
} history;

typedef struct load_wait {
    int done, rc;
    bt_error err;
} load_wait;

static void on_loaded(void *ud, int rc, const bt_error *err)
{
    load_wait *w = ud;
    w->done = 1;
    w->rc = rc;
    if (rc < 0 && err)
        w->err = *err;
}

/* The database file of a SQLite store URL, or NULL for another backend. */
static const char *sqlite_file(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0) {
        const char *p = url + 7;
        return strncmp(p, "//", 2) == 0 ? p + 2 : p;
    }
    size_t n = strlen(url);
    return n > 3 && strcmp(url + n - 3, ".db") == 0 && !strstr(url, "://") ? url : NULL;
}

/* Open the store and load the statistics window into a resilience wrapper over the
 * agents. 0, or -1 after saying on stderr why there is no history (h stays empty). */
static int history_open(bt_cmd_agents_ctx *ctx, const bt_config *cfg, const char *url, history *h)
{
    if (!url || !*url) {
        fprintf(stderr, "baton agents: no store is configured, so there is no call history to "
                        "show (set store.url or pass --store).\n");
        return -1;
    }
    const char *file = sqlite_file(url);
    if (file && access(file, F_OK) != 0) {
        fprintf(stderr,
                "baton agents: no call history: the store %s does not exist yet (nothing has "
                "run with this configuration; pass --store to read another).\n",
                file);
        return -1;
    }
    bt_error err = BT_ERROR_INIT;
    bt_store_options so = {0};
    if (bt_store_open(bt_cmd_agents_loop(ctx), url, &so, &h->store, &err) < 0) {
        fprintf(stderr, "baton agents: no call history: opening the store: %s\n", err.msg);
        h->store = NULL;
        return -1;
    }
    bt_resil_env env = {.loop = bt_cmd_agents_loop(ctx),
                        .agents = bt_cmd_agents_set(ctx),
                        .cfg = cfg,
                        .store = h->store,
                        .read_only = 1};
    if (bt_resil_new(&env, &h->rs, &err) < 0) {
        fprintf(stderr, "baton agents: no call history: %s\n", err.msg);
        h->rs = NULL; /* the store is closed by history_close */
        return -1;
    }
    load_wait w = {0};
    bt_resil_load(h->rs, on_loaded, &w);
    while (!w.done && uv_run(bt_cmd_agents_loop(ctx), UV_RUN_ONCE))
        ;
    if (!w.done || w.rc < 0) {
        fprintf(stderr, "baton agents: no call history: reading it from the store: %s\n",
                w.done ? w.err.msg : "the load did not finish");
        bt_resil_free(h->rs);
        h->rs = NULL;
        return -1;
    }
    return 0;
}

static void history_close(history *h)
{
    if (h->rs)
        bt_resil_free(h->rs);
    bt_store_close(h->store);
}

/* Add each agent's breaker, statistics and limits (the fields GET /api/agents adds). */
static void add_live_state(json_t *status, const bt_resil *rs)
{
    static const char *const keys[] = {"provider", "local", "breaker", "stats", "rate_limit"};
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(status, "agents"), i, o)
    {
        json_t *live = bt_resil_agent_json(rs, json_string_value(json_object_get(o, "name")));
        for (size_t k = 0; live && k < sizeof keys / sizeof keys[0]; k++) {
            json_t *v = json_object_get(live, keys[k]);
            if (v)
                json_object_set(o, keys[k], v);
        }
        json_decref(live);
    }
    json_t *all = bt_resil_json(rs);
    json_t *providers = json_object_get(all, "providers");
    if (providers)
        json_object_set(status, "providers", providers);
    json_decref(all);
}

/* ---- output ---- */

static void format_latency(json_t *ms, char *buf, size_t len)
{
    if (!json_is_number(ms)) {
        snprintf(buf, len, "-");
        return;
    }
    double v = json_number_value(ms);
    if (v < 1000)
        snprintf(buf, len, "%.0fms", v);
    else if (v < 60000)
        snprintf(buf, len, "%.1fs", v / 1000);
    else
        snprintf(buf, len, "%.1fm", v / 60000);
}

static void print_table(json_t *status, int live)
{
    json_t *arr = json_object_get(status, "agents");
    size_t i;
    json_t *o;
    printf("%-16s %-10s %-16s %-24s ", "NAME", "TYPE", "ROLE", "MODEL");
    if (live)
        printf("%-9s %-7s %-6s %-7s ", "BREAKER", "SUCCESS", "CALLS", "P50");
    printf("%s\n", "STATUS");
    json_array_foreach(arr, i, o)
    {
        const char *type = json_string_value(json_object_get(o, "type"));
        const char *preset = json_string_value(json_object_get(o, "preset"));
        char typebuf[64];
        snprintf(typebuf, sizeof typebuf, "%s%s%s", type, preset ? ":" : "", preset ? preset : "");
        const char *model = json_string_value(json_object_get(o, "model"));
        const char *role = json_string_value(json_object_get(o, "role"));
        const char *detail = json_string_value(json_object_get(o, "detail"));
        int ok = json_is_true(json_object_get(o, "available"));
        printf("%-16s %-10s %-16s %-24s ", json_string_value(json_object_get(o, "name")), typebuf,
               role && *role ? role : "-", model && *model ? model : "-");
        if (live) {
            json_t *stats = json_object_get(o, "stats");
            const char *breaker =
                json_string_value(json_object_get(json_object_get(o, "breaker"), "state"));
            json_t *rate = json_object_get(stats, "success_rate");
            char success[16], p50[16];
            if (json_is_number(rate))
                snprintf(success, sizeof success, "%.0f%%", json_number_value(rate) * 100);
            else
                snprintf(success, sizeof success, "-");
            format_latency(json_object_get(json_object_get(stats, "latency_ms"), "p50"), p50,
                           sizeof p50);
            printf("%-9s %-7s %-6lld %-7s ", breaker ? breaker : "-", success,
                   (long long)json_integer_value(json_object_get(stats, "calls")), p50);
        }
        printf("%s%s%s\n", ok ? "available" : "unavailable", detail && *detail ? ": " : "",
               detail ? detail : "");
    }
    printf("\n%lld of %lld agents available\n",
           (long long)json_integer_value(json_object_get(status, "available")),
           (long long)json_integer_value(json_object_get(status, "count")));
}

int bt_cmd_agents(int argc, char **argv)
{
    const char *config = NULL, *store_url = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"store", 0, 1, &store_url, NULL,
         "read the call history from this store (default store.url of the configuration)"},
        {"json", 0, 0, NULL, &json,
         "print {\"agents\":[...],\"count\":N,\"available\":M} as GET /api/agents does"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("agents", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("agents", synopsis, opts);
        printf("\nLists every configured agent and checks it: CLI agents are looked up on PATH\n"
               "and asked for --version; HTTP agents get a cheap request to their endpoint.\n"
               "BREAKER, SUCCESS, CALLS and P50 come from the calls recorded in the store\n"
               "(the statistics window of resilience.stats_window / stats_max_age): the\n"
               "circuit breaker's state, the share of calls that succeeded, how many there\n"
               "were and their median duration (\"-\" without calls).\n"
               "Exit codes: 0 all available, 1 at least one unavailable, 2 usage error.\n");
        return BT_EXIT_OK;
    }
    if (pos.len > 0) {
        fprintf(stderr, "baton agents: unexpected argument '%s'. See 'baton help agents'.\n",
                pos.items[0]);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_strvec_clear(&pos);

    bt_config *cfg = NULL;
    if (bt_cmd_load_config("agents", config, &cfg) != 0)
        return BT_EXIT_FAIL;
    bt_cmd_agents_ctx *ctx = bt_cmd_agents_open(cfg);
    history h = {0};
    int live = history_open(ctx, cfg, store_url ? store_url : cfg->store.url, &h) == 0;
    answer ans = {0};
    bt_agents_check_all(bt_cmd_agents_set(ctx), on_status, &ans);
    while (!ans.status && uv_run(bt_cmd_agents_loop(ctx), UV_RUN_ONCE))
        ;
    int all = 0;
    if (ans.status) {
        all = json_integer_value(json_object_get(ans.status, "available")) ==
              json_integer_value(json_object_get(ans.status, "count"));
        if (live)
            add_live_state(ans.status, h.rs);
        if (json) {
            char *s = json_dumps(ans.status, JSON_INDENT(2));
            puts(s);
            free(s);
        } else {
            print_table(ans.status, live);
        }
        json_decref(ans.status);
    }
    history_close(&h);
    bt_cmd_agents_close(ctx);
    bt_config_free(cfg);
    return all ? BT_EXIT_OK : BT_EXIT_FAIL;
}
