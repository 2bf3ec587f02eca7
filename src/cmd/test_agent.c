/*
 * test_agent.c - `baton test-agent NAME "PROMPT"`: run one configured agent on a
 * prompt, bypassing workflows (seed 004), streaming its output live, then print tokens,
 * cost and duration. The agent's text goes to stdout as it arrives; tool activity,
 * status notes and the summary go to stderr, so `baton test-agent x "..." > out.txt`
 * captures just the answer. --json prints the result object instead (one JSON
 * document on stdout, nothing streamed there). A replay agent is labelled as such.
 *
 * Options: --workspace DIR (where a CLI agent runs; default the current directory),
 * --record FILE (write a replay recording of this run), --timeout D (turn limit),
 * --stall-timeout D.
 *
 * Exit 0 when the agent succeeded, 1 when it failed (the error and its class are
 * printed), 2 on a usage error or an unknown agent. SIGINT cancels the run (the
 * agent's whole process group is killed) and exits 1.
 */
#include "cmd/cmd.h"

#include "agents/agents.h"
#include "base/time.h"
#include "config/config.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char synopsis[] =
    "baton test-agent NAME \"PROMPT\" [--config FILE] [--workspace DIR] [--record FILE] "
    "[--timeout D] [--stall-timeout D] [--json]";

typedef struct session {
    int json;
    int tty;
    int ended_with_newline;
    int done;
    int success;
    json_t *result;
    bt_agent_run *run;
    uv_signal_t sigint;
} session;

static void on_event(const bt_agent_event *ev, void *ud)
{
    session *s = ud;
    switch (ev->kind) {
    case BT_AGENT_EV_OUTPUT:
        if (!s->json && ev->len) {
            fwrite(ev->text, 1, ev->len, stdout);
            fflush(stdout);
            s->ended_with_newline = ev->text[ev->len - 1] == '\n';
        }
        break;
    case BT_AGENT_EV_TOOL:
        fprintf(stderr, "%s[tool] %s%s%.*s%s\n", s->tty ? "\033[2m" : "", ev->tool,
                ev->len ? ": " : "", (int)(ev->len > 200 ? 200 : ev->len), ev->text,
                s->tty ? "\033[0m" : "");
        break;
    case BT_AGENT_EV_STATUS:
        fprintf(stderr, "%s[baton] %s%s\n", s->tty ? "\033[2m" : "", ev->text,
                s->tty ? "\033[0m" : "");
        break;
    case BT_AGENT_EV_STDERR:
        if (s->tty || !s->json)
            fprintf(stderr, "%s", ev->text);
        break;
    case BT_AGENT_EV_USAGE:
        break;
    }
}

static void on_done(const bt_agent_result *r, void *ud)
{
    session *s = ud;
    s->done = 1;
    s->run = NULL;
    s->success = r->success;
    s->result = bt_agent_result_json(r);
    uv_close((uv_handle_t *)&s->sigint, NULL);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)signum;
    session *s = h->data;
    if (s->run) {
        fprintf(stderr, "\nbaton test-agent: interrupted; stopping the agent\n");
        bt_agent_run_cancel(s->run);
    }
}

static void print_summary(session *s)
{
    json_t *r = s->result;
    if (!s->ended_with_newline)
        fputc('\n', stdout);
    fflush(stdout);
    char dur[32];
    bt_duration_format(json_integer_value(json_object_get(r, "duration_ms")), dur);
    int replay = json_is_true(json_object_get(r, "replay"));
    const char *model = json_string_value(json_object_get(r, "model"));
    fprintf(stderr, "\n%s%s: %s in %s", replay ? "[replay] " : "",
            json_string_value(json_object_get(r, "agent")), s->success ? "succeeded" : "failed",
            dur);
    if (model && *model)
        fprintf(stderr, " (model %s)", model);
    fprintf(stderr, "\ntokens: %lld in, %lld out\ncost: $%.6f%s\n",
            (long long)json_integer_value(json_object_get(r, "tokens_in")),
            (long long)json_integer_value(json_object_get(r, "tokens_out")),
            json_real_value(json_object_get(r, "cost_usd")),
            json_is_true(json_object_get(r, "cost_reported")) ? " (reported by the agent)" : "");
    if (json_is_true(json_object_get(r, "truncated")))
        fprintf(stderr, "note: the output was truncated\n");
    if (!s->success)
        fprintf(stderr, "error (%s): %s\n", json_string_value(json_object_get(r, "error_class")),
                json_string_value(json_object_get(r, "error")));
}

int bt_cmd_test_agent(int argc, char **argv)
{
    const char *config = NULL, *workspace = NULL, *record = NULL, *timeout = NULL, *stall = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"workspace", 'w', 1, &workspace, NULL, "directory the agent works in (default: here)"},
        {"record", 0, 1, &record, NULL, "write a replay recording of this run to FILE"},
        {"timeout", 0, 1, &timeout, NULL, "turn limit, e.g. 10m (default: the agent's)"},
        {"stall-timeout", 0, 1, &stall, NULL, "kill after this long without output"},
        {"json", 0, 0, NULL, &json, "print the result as one JSON object"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("test-agent", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("test-agent", synopsis, opts);
        printf("\nRuns one agent on the prompt and streams its output; tokens, cost and\n"
               "duration follow on stderr. Exit codes: 0 success, 1 the agent failed,\n"
               "2 usage error or unknown agent.\n");
        return BT_EXIT_OK;
    }
    if (pos.len != 2) {
        fprintf(stderr, "baton test-agent: expected NAME and \"PROMPT\". usage: %s\n", synopsis);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    int64_t timeout_ms = 0, stall_ms = 0;
    bt_error err = BT_ERROR_INIT;
    if ((timeout && bt_duration_parse(timeout, &timeout_ms, &err) < 0) ||
        (stall && bt_duration_parse(stall, &stall_ms, &err) < 0)) {
        fprintf(stderr, "baton test-agent: %s\n", err.msg);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }

    bt_config *cfg = NULL;
    if (bt_cmd_load_config("test-agent", config, &cfg) != 0) {
        bt_strvec_clear(&pos);
        return BT_EXIT_FAIL;
    }
    const char *name = pos.items[0];
    bt_cmd_agents_ctx *ctx = bt_cmd_agents_open(cfg);
    bt_agents *set = bt_cmd_agents_set(ctx);
    int idx = bt_agents_index(set, name);
    if (idx < 0) {
        fprintf(stderr, "baton test-agent: no agent named '%s'. Configured:", name);
        for (size_t i = 0; i < bt_agents_count(set); i++)
            fprintf(stderr, " %s", bt_agents_name(set, i));
        fprintf(stderr, "%s\n", bt_agents_count(set) ? "" : " (none)");
        bt_cmd_agents_close(ctx);
        bt_config_free(cfg);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_agent *agent = bt_agents_at(set, (size_t)idx);
    if (!agent) {
        fprintf(stderr, "baton test-agent: agent '%s' cannot run: %s\n", name,
                bt_agents_error(set, (size_t)idx));
        bt_cmd_agents_close(ctx);
        bt_config_free(cfg);
        bt_strvec_clear(&pos);
        return BT_EXIT_FAIL;
    }

    session s = {.json = json, .tty = isatty(STDERR_FILENO), .ended_with_newline = 1};
    bt_agent_request rq = {.prompt = pos.items[1],
                           .workspace = workspace,
                           .timeout_ms = timeout_ms,
                           .stall_timeout_ms = stall_ms,
                           .record_path = record,
                           .on_event = on_event,
                           .on_done = on_done,
                           .ud = &s};
    uv_signal_init(bt_cmd_agents_loop(ctx), &s.sigint);
    s.sigint.data = &s;
    rc = bt_agent_start(agent, &rq, &s.run, &err);
    if (rc < 0) {
        fprintf(stderr, "baton test-agent: %s\n", err.msg);
        uv_close((uv_handle_t *)&s.sigint, NULL);
        bt_cmd_agents_close(ctx);
        bt_config_free(cfg);
        bt_strvec_clear(&pos);
        return BT_EXIT_FAIL;
    }
    uv_signal_start(&s.sigint, on_sigint, SIGINT);
    /* Until the turn ends: the HTTP client keeps handles of its own open. */
    while (!s.done && uv_run(bt_cmd_agents_loop(ctx), UV_RUN_ONCE))
        ;
    if (s.result) {
        if (json) {
            char *out = json_dumps(s.result, JSON_INDENT(2));
            puts(out);
            free(out);
        } else {
            print_summary(&s);
        }
        json_decref(s.result);
    }
    bt_cmd_agents_close(ctx);
    bt_config_free(cfg);
    bt_strvec_clear(&pos);
    return s.success ? BT_EXIT_OK : BT_EXIT_FAIL;
}
