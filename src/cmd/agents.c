/*
 * agents.c - `baton agents [--config FILE] [--json]`: every configured agent with its
 * type, role and model, and whether it can run right now or why not (CLI missing from
 * PATH, endpoint unreachable, key unset). Checks run concurrently, so a slow endpoint
 * costs its own probe's timeout, not the sum.
 *
 * Exit 0 when every agent is available, 1 when at least one is not (so scripts and CI
 * can gate on it), 2 on a usage error.
 */
#include "cmd/cmd.h"

#include "agents/agents.h"
#include "config/config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char synopsis[] = "baton agents [--config FILE] [--json]";

typedef struct answer {
    json_t *status;
} answer;

static void on_status(json_t *status, void *ud)
{
    answer *a = ud;
    a->status = json_incref(status);
}

static void print_table(json_t *status)
{
    json_t *arr = json_object_get(status, "agents");
    size_t i;
    json_t *o;
    printf("%-16s %-10s %-16s %-24s %s\n", "NAME", "TYPE", "ROLE", "MODEL", "STATUS");
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
        printf("%-16s %-10s %-16s %-24s %s%s%s\n", json_string_value(json_object_get(o, "name")),
               typebuf, role && *role ? role : "-", model && *model ? model : "-",
               ok ? "available" : "unavailable", detail && *detail ? ": " : "",
               detail ? detail : "");
    }
    printf("\n%lld of %lld agents available\n",
           (long long)json_integer_value(json_object_get(status, "available")),
           (long long)json_integer_value(json_object_get(status, "count")));
}

int bt_cmd_agents(int argc, char **argv)
{
    const char *config = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"json", 0, 0, NULL, &json, "print {\"agents\":[...],\"count\":N,\"available\":M}"},
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
    answer ans = {0};
    bt_agents_check_all(bt_cmd_agents_set(ctx), on_status, &ans);
    while (!ans.status && uv_run(bt_cmd_agents_loop(ctx), UV_RUN_ONCE))
        ;
    int all = 0;
    if (ans.status) {
        all = json_integer_value(json_object_get(ans.status, "available")) ==
              json_integer_value(json_object_get(ans.status, "count"));
        if (json) {
            char *s = json_dumps(ans.status, JSON_INDENT(2));
            puts(s);
            free(s);
        } else {
            print_table(ans.status);
        }
        json_decref(ans.status);
    }
    bt_cmd_agents_close(ctx);
    bt_config_free(cfg);
    return all ? BT_EXIT_OK : BT_EXIT_FAIL;
}
