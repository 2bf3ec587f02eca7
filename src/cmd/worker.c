/*
 * worker.c - `baton worker`: seed 002's worker client. Polls the orchestrator for work,
 * runs each item's agent command in its own workspace, heartbeats, reports
 * (src/app/worker.h has the behaviour, docs/workers.md the protocol).
 *
 * Settings, highest precedence first: options, the `worker:` section of baton.yaml,
 * the seed's environment variables (ORCHESTRATOR_URL, WORKER_ID, WORKER_POLL_INTERVAL
 * in seconds, WORKSPACE_DIR; plus WORKER_COMMAND), defaults (poll every 30 s, id
 * HOSTNAME-PID, workspace.root). Exit codes: 0 after a clean stop (SIGTERM/SIGINT, or
 * --once with the item completed or no work), 1 when start-up fails or --once ends
 * with the item failed/dropped or the server unreachable, 2 on a usage error.
 */
#include "cmd/cmd.h"

#include "app/worker.h"
#include "base/mem.h"
#include "base/time.h"
#include "config/config.h"
#include "obs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static const char synopsis[] =
    "baton worker [--server URL] [--id ID] [--token T] [--command CMD] [--workspace DIR]\n"
    "                    [--poll-interval D] [--max-backoff D] [--on-term abandon|finish] "
    "[--once]";

static int parse_duration(const char *opt, const char *v, int64_t *out)
{
    bt_error err = BT_ERROR_INIT;
    if (bt_duration_parse(v, out, &err) < 0 || *out <= 0) {
        fprintf(stderr, "baton worker: --%s '%s' is not a positive duration (e.g. 30, 30s, 2m).\n",
                opt, v);
        return -1;
    }
    return 0;
}

static void add_secret(const char *value, void *ud)
{
    bt_log_add_secret(ud, value);
}

int bt_cmd_worker(int argc, char **argv)
{
    const char *config = NULL, *server = NULL, *id = NULL, *token = NULL, *command = NULL,
               *workspace = NULL, *poll = NULL, *max_backoff = NULL, *on_term = NULL;
    int once = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"server", 's', 1, &server, NULL,
         "orchestrator URL (worker.server_url, $ORCHESTRATOR_URL)"},
        {"id", 0, 1, &id, NULL, "worker id (worker.id, $WORKER_ID; default HOSTNAME-PID)"},
        {"token", 0, 1, &token, NULL, "bearer token with the worker scope (worker.token)"},
        {"command", 0, 1, &command, NULL, "agent command run per item with /bin/sh -c"},
        {"workspace", 'w', 1, &workspace, NULL, "parent of per-item workspaces ($WORKSPACE_DIR)"},
        {"poll-interval", 0, 1, &poll, NULL, "wait between empty polls ($WORKER_POLL_INTERVAL)"},
        {"max-backoff", 0, 1, &max_backoff, NULL,
         "cap of the retry delay while the server is down"},
        {"on-term", 0, 1, &on_term, NULL, "on SIGTERM: abandon (default) or finish the item"},
        {"once", 0, 0, NULL, &once, "handle one item (or one empty poll), then exit"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("worker", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("worker", synopsis, opts);
        printf("\nPolls GET /work/next, runs the agent command for each item in\n"
               "WORKSPACE/issue-N (task body on stdin; BATON_TASK_ID, BATON_ISSUE_NUMBER,\n"
               "BATON_TITLE, BATON_BRANCH, BATON_REPOSITORY, BATON_WORKSPACE in the\n"
               "environment), heartbeats every lease/3 and reports /work/complete (exit 0)\n"
               "or /work/failed. Durations: 30 (seconds), 500ms, 2m. See docs/workers.md.\n"
               "Exit codes: 0 clean stop, 1 start-up failed (or --once item not completed),\n"
               "2 usage error.\n");
        return BT_EXIT_OK;
    }
    if (pos.len > 0) {
        fprintf(stderr, "baton worker: unexpected argument '%s'. See 'baton help worker'.\n",
                pos.items[0]);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_strvec_clear(&pos);

    bt_worker_options wo = {0};
    if (poll && parse_duration("poll-interval", poll, &wo.poll_interval_ms) < 0)
        return BT_EXIT_USAGE;
    if (max_backoff && parse_duration("max-backoff", max_backoff, &wo.backoff_max_ms) < 0)
        return BT_EXIT_USAGE;
    if (on_term) {
        if (strcmp(on_term, "abandon") == 0) {
            wo.on_term = BT_WORKER_TERM_ABANDON;
        } else if (strcmp(on_term, "finish") == 0) {
            wo.on_term = BT_WORKER_TERM_FINISH;
        } else {
            fprintf(stderr, "baton worker: --on-term '%s': use 'abandon' or 'finish'.\n", on_term);
            return BT_EXIT_USAGE;
        }
    }

    bt_config *cfg = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    const char *path = bt_config_find_path(config, environ);
    rc = bt_config_load(path, environ, &cfg, &probs, &err);
    if (rc < 0) {
        bt_config_problems_print(&probs, stderr);
        bt_config_problems_free(&probs);
        fprintf(stderr, "baton worker: %s\n", err.msg[0] ? err.msg : bt_strerror(rc));
        return BT_EXIT_FAIL;
    }
    bt_config_problems_free(&probs);

    bt_log *log = cfg->log.file ? bt_log_open(cfg->log.file, (bt_log_level)cfg->log.level)
                                : bt_log_new(stderr, (bt_log_level)cfg->log.level);
    if (!log) {
        fprintf(stderr, "baton worker: cannot open log.file '%s' for appending\n", cfg->log.file);
        bt_config_free(cfg);
        return BT_EXIT_FAIL;
    }
    bt_config_each_secret(cfg, add_secret, log);
    if (token)
        bt_log_add_secret(log, token);

    char default_id[300];
    if (!id && !cfg->worker.id) {
        char host[256] = "worker";
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "worker");
        host[sizeof host - 1] = '\0';
        snprintf(default_id, sizeof default_id, "%s-%ld", host, (long)getpid());
    }
    wo.server_url = server ? server : cfg->worker.server_url;
    wo.id = id ? id : cfg->worker.id ? cfg->worker.id : default_id;
    wo.token = token ? token : cfg->worker.token;
    wo.command = command ? command : cfg->worker.command;
    wo.workspace_dir = workspace ? workspace : cfg->worker.workspace_dir;
    if (!poll)
        wo.poll_interval_ms = cfg->worker.poll_interval_ms;
    wo.once = once;
    wo.log = log;
    wo.envp = environ;

    bt_worker_stats st;
    rc = bt_worker_run(&wo, &st, &err);
    bt_log_free(log);
    bt_config_free(cfg);
    if (rc < 0) {
        fprintf(stderr, "baton worker: %s\n", err.msg[0] ? err.msg : bt_strerror(rc));
        return BT_EXIT_FAIL;
    }
    if (once && (st.failed || st.dropped || st.unreachable))
        return BT_EXIT_FAIL;
    return BT_EXIT_OK;
}
