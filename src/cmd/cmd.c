/*
 * cmd.c - command table, dispatch, `help`, `version`, and the shared option parser.
 *
 * Adding a command: write src/cmd/NAME.c with bt_cmd_NAME, declare it in cmd.h and add
 * one row to `commands` below (name, one-line summary, synopsis).
 */
#include "cmd/cmd.h"

#include "agents/agents.h"
#include "base/mem.h"
#include "base/str.h"
#include "config/config.h"
#include "http/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

typedef struct cmd_entry {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *synopsis;
} cmd_entry;

static const cmd_entry commands[] = {
    {"validate", bt_cmd_validate, "check a configuration file and report every problem",
     "baton validate [--config FILE] [--json]"},
    {"config", bt_cmd_config, "show the effective configuration (secrets masked)",
     "baton config show [--config FILE] [--json]"},
    {"serve", bt_cmd_serve, "run the orchestrator daemon (HTTP API, store)",
     "baton serve [--config FILE] [--host ADDR] [--port N] [--store URL]"},
    {"worker", bt_cmd_worker, "run a worker that takes items from an orchestrator (seed 002)",
     "baton worker [--server URL] [--id ID] [--command CMD] [--workspace DIR] [--once]"},
    {"agents", bt_cmd_agents, "list the configured agents and whether each can run now",
     "baton agents [--config FILE] [--json]"},
    {"test-agent", bt_cmd_test_agent, "run one agent on a prompt and show its output and cost",
     "baton test-agent NAME \"PROMPT\" [--workspace DIR] [--record FILE] [--json]"},
    {"models", bt_cmd_models,
     "local model endpoints (Ollama, llama.cpp): status, list, pull, remove",
     "baton models status|list|pull MODEL|remove MODEL [--endpoint URL] [--json]"},
    {"run", bt_cmd_run, "run a task through a workflow here and show its progress and result",
     "baton run \"TASK\" [--workflow W] [--max-iterations N] [--offline] [--json]"},
    {"workflows", bt_cmd_workflows, "list the workflows with their steps and whether each can run",
     "baton workflows [--config FILE] [--json]"},
    {"approve", bt_cmd_approve, "approve a run's pending approval step",
     "baton approve ID [--comment TEXT] [--by NAME] [--config FILE] [--json]"},
    {"reject", bt_cmd_reject, "reject a run's pending approval step (the run fails there)",
     "baton reject ID [--comment TEXT] [--by NAME] [--config FILE] [--json]"},
    {"help", bt_cmd_help, "show help for baton or one command", "baton help [COMMAND]"},
    {"version", bt_cmd_version, "print the version", "baton version"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const cmd_entry *find_cmd(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_main_help(FILE *f)
{
    fprintf(f, "baton %s - a small, fast orchestrator for AI coding agents\n\n", BATON_VERSION);
    fprintf(f, "usage: baton [--version] [--help] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nEvery command takes --config FILE (default ./baton.yaml, else built-in defaults\n"
               "plus environment variables).\n"
               "Exit codes: 0 success, 1 the command failed, 2 usage error.\n"
               "Run 'baton help <command>' for a command's options.\n");
}

int bt_cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_main_help(stdout);
        return BT_EXIT_OK;
    }
    const cmd_entry *c = find_cmd(argv[1]);
    if (!c) {
        const char *names[NCOMMANDS];
        for (size_t i = 0; i < NCOMMANDS; i++)
            names[i] = commands[i].name;
        const char *s = bt_str_suggest(argv[1], names, NCOMMANDS);
        fprintf(stderr, "baton: no help for '%s': not a command.%s%s%s\n", argv[1],
                s ? " Did you mean '" : "", s ? s : "", s ? "'?" : "");
        return BT_EXIT_USAGE;
    }
    char *sub[] = {(char *)c->name, "--help", NULL};
    return c->run(2, sub);
}

int bt_cmd_version(int argc, char **argv)
{
    (void)argc, (void)argv;
    printf("baton %s\n", BATON_VERSION);
    return BT_EXIT_OK;
}

int bt_cmd_main(int argc, char **argv)
{
    if (argc < 2) {
        print_main_help(stderr);
        return BT_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return bt_cmd_help(1, argv);
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0)
        return bt_cmd_version(1, argv);
    const cmd_entry *c = find_cmd(name);
    if (!c) {
        const char *names[NCOMMANDS];
        for (size_t i = 0; i < NCOMMANDS; i++)
            names[i] = commands[i].name;
        const char *s =
            bt_str_suggest(name[0] == '-' ? name + strspn(name, "-") : name, names, NCOMMANDS);
        if (name[0] == '-')
            fprintf(stderr, "baton: unknown option '%s' before the command.", name);
        else
            fprintf(stderr, "baton: '%s' is not a baton command.", name);
        if (s)
            fprintf(stderr, " Did you mean '%s'?", s);
        fprintf(stderr, " See 'baton --help'.\n");
        return BT_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}

void bt_opts_usage(const char *cmd, const char *synopsis, const bt_opt *opts)
{
    printf("usage: %s\n", synopsis);
    if (!opts || !opts[0].name)
        return;
    printf("\noptions:\n");
    for (const bt_opt *o = opts; o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s", o->short_name, o->name,
                     o->takes_value ? " VALUE" : "");
        else
            snprintf(left, sizeof left, "    --%s%s", o->name, o->takes_value ? " VALUE" : "");
        printf("  %-26s %s\n", left, o->help ? o->help : "");
    }
    (void)cmd;
}

static void unknown_option(const char *cmd, const char *arg, const bt_opt *opts)
{
    const char *names[64];
    size_t n = 0;
    for (const bt_opt *o = opts; o && o->name && n < 64; o++)
        names[n++] = o->name;
    const char *word = arg + strspn(arg, "-");
    char base[128];
    snprintf(base, sizeof base, "%.*s", (int)strcspn(word, "="), word);
    const char *s = bt_str_suggest(base, names, n);
    fprintf(stderr, "baton %s: unknown option '%s'.", cmd, arg);
    if (s)
        fprintf(stderr, " Did you mean '--%s'?", s);
    fprintf(stderr, " See 'baton help %s'.\n", cmd);
}

int bt_opts_parse(const char *cmd, int argc, char **argv, const bt_opt *opts, bt_strvec *pos)
{
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            bt_strvec_push(pos, a);
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        const bt_opt *o = NULL;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t n = eq ? (size_t)(eq - name) : strlen(name);
            for (const bt_opt *p = opts; p && p->name; p++)
                if (strlen(p->name) == n && strncmp(p->name, name, n) == 0)
                    o = p;
            if (eq)
                inline_val = eq + 1;
        } else if (a[2] == '\0') {
            for (const bt_opt *p = opts; p && p->name; p++)
                if (p->short_name && p->short_name == a[1])
                    o = p;
        }
        if (!o) {
            unknown_option(cmd, a, opts);
            return BT_EXIT_USAGE;
        }
        if (o->takes_value) {
            const char *v = inline_val;
            if (!v) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "baton %s: option '--%s' needs a value.\n", cmd, o->name);
                    return BT_EXIT_USAGE;
                }
                v = argv[++i];
            }
            if (o->value)
                *o->value = v;
        } else {
            if (inline_val) {
                fprintf(stderr, "baton %s: option '--%s' takes no value.\n", cmd, o->name);
                return BT_EXIT_USAGE;
            }
            if (o->flag)
                *o->flag = 1;
        }
    }
    return 0;
}

/* ---- helpers shared by commands ---- */

int bt_cmd_load_config(const char *cmd, const char *config_opt, bt_config **out)
{
    const char *path = bt_config_find_path(config_opt, environ);
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    *out = NULL;
    if (bt_config_load(path, environ, out, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        if (probs.len == 0)
            fprintf(stderr, "baton %s: %s\n", cmd, err.msg);
        fprintf(stderr, "baton %s: the configuration is not valid; see 'baton validate'.\n", cmd);
        bt_config_problems_free(&probs);
        return BT_EXIT_FAIL;
    }
    bt_config_problems_free(&probs);
    return 0;
}

struct bt_cmd_agents_ctx {
    uv_loop_t loop;
    bt_config *cfg;
    bt_http_client *http;
    int http_failed;
    bt_agents *agents;
};

bt_cmd_agents_ctx *bt_cmd_agents_open(bt_config *cfg)
{
    bt_cmd_agents_ctx *c = bt_xcalloc(1, sizeof *c);
    uv_loop_init(&c->loop);
    c->cfg = cfg;
    return c;
}

uv_loop_t *bt_cmd_agents_loop(bt_cmd_agents_ctx *c)
{
    return &c->loop;
}

bt_http_client *bt_cmd_agents_http(bt_cmd_agents_ctx *c)
{
    if (!c->http && !c->http_failed) {
        bt_error err = BT_ERROR_INIT;
        if (bt_http_client_new(&c->loop, NULL, &c->http, &err) < 0) {
            fprintf(stderr, "baton: HTTP client unavailable: %s\n", err.msg);
            c->http_failed = 1;
            c->http = NULL;
        }
    }
    return c->http;
}

static int needs_http(const bt_config *cfg)
{
    for (size_t i = 0; i < cfg->agents.len; i++)
        switch (cfg->agents.items[i].type) {
        case BT_AGENT_OPENAI:
        case BT_AGENT_ANTHROPIC:
        case BT_AGENT_OLLAMA:
        case BT_AGENT_OPENHANDS:
            return 1;
        default:
            break;
        }
    return 0;
}

bt_agents *bt_cmd_agents_set(bt_cmd_agents_ctx *c)
{
    if (!c->agents) {
        bt_agent_env env = {.loop = &c->loop,
                            .http = needs_http(c->cfg) ? bt_cmd_agents_http(c) : NULL,
                            .log = NULL,
                            .cfg = c->cfg};
        c->agents = bt_agents_new(&env);
    }
    return c->agents;
}

static void close_any(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void bt_cmd_agents_close(bt_cmd_agents_ctx *c)
{
    if (!c)
        return;
    bt_agents_free(c->agents);
    if (c->http)
        bt_http_client_close(c->http);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&c->loop) != 0) {
        uv_walk(&c->loop, close_any, NULL);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
    }
    free(c);
}
