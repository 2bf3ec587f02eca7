/*
 * cmd.h - the CLI: one file per command under src/cmd/ (git's builtin/ is the model).
 *
 * Each command is `int bt_cmd_NAME(int argc, char **argv)` where argv[0] is the
 * command name. Exit codes (documented in `baton help`):
 *   0 success, 1 the command ran and failed (e.g. validation problems),
 *   2 usage error (unknown command or option, missing argument).
 * Commands parse options with bt_opts_parse, which accepts --name value,
 * --name=value and flags, and suggests the nearest option on a typo.
 */
#ifndef BT_CMD_H
#define BT_CMD_H

#include "base/vec.h"

#include <uv.h>

#define BT_EXIT_OK    0
#define BT_EXIT_FAIL  1
#define BT_EXIT_USAGE 2

typedef struct bt_opt {
    const char *name;   /* long name without dashes, e.g. "config" */
    char short_name;    /* 0 for none */
    int takes_value;    /* 1: --name VALUE; 0: flag */
    const char **value; /* where a value option stores its (borrowed argv) string */
    int *flag;          /* where a flag option stores 1 */
    const char *help;
} bt_opt;

/* Parse argv[1..]; positionals go to pos (borrowed strings). On error prints a message
 * naming the problem (with a "did you mean") to stderr and returns BT_EXIT_USAGE. */
int bt_opts_parse(const char *cmd, int argc, char **argv, const bt_opt *opts, bt_strvec *pos);

/* Print "usage: ..." and the option list of a command. */
void bt_opts_usage(const char *cmd, const char *synopsis, const bt_opt *opts);

int bt_cmd_main(int argc, char **argv);

/* Load the configuration the way every command does (--config, $BATON_CONFIG,
 * ./baton.yaml, defaults). On problems prints them to stderr, prefixed by "baton CMD:",
 * and returns BT_EXIT_FAIL; 0 and *out (caller frees with bt_config_free) otherwise. */
typedef struct bt_config bt_config;
int bt_cmd_load_config(const char *cmd, const char *config_opt, bt_config **out);

/* What commands that drive agents need: a loop, the HTTP client (made on first use so a
 * CLI-only run never loads libcurl) and the configured agents. */
typedef struct bt_cmd_agents_ctx bt_cmd_agents_ctx;
bt_cmd_agents_ctx *bt_cmd_agents_open(bt_config *cfg);
struct bt_agents *bt_cmd_agents_set(bt_cmd_agents_ctx *c);
struct bt_http_client *bt_cmd_agents_http(bt_cmd_agents_ctx *c); /* NULL + message on failure */
uv_loop_t *bt_cmd_agents_loop(bt_cmd_agents_ctx *c);
/* Close everything (runs the loop until every handle is closed). */
void bt_cmd_agents_close(bt_cmd_agents_ctx *c);

int bt_cmd_help(int argc, char **argv);
int bt_cmd_version(int argc, char **argv);
int bt_cmd_validate(int argc, char **argv);
int bt_cmd_config(int argc, char **argv);
int bt_cmd_serve(int argc, char **argv);
int bt_cmd_worker(int argc, char **argv);
int bt_cmd_agents(int argc, char **argv);
int bt_cmd_test_agent(int argc, char **argv);
int bt_cmd_models(int argc, char **argv);
int bt_cmd_run(int argc, char **argv);
int bt_cmd_workflows(int argc, char **argv);
int bt_cmd_approve(int argc, char **argv);
int bt_cmd_reject(int argc, char **argv);

#endif
