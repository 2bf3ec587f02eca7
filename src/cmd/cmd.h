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

int bt_cmd_help(int argc, char **argv);
int bt_cmd_version(int argc, char **argv);
int bt_cmd_validate(int argc, char **argv);
int bt_cmd_config(int argc, char **argv);
int bt_cmd_serve(int argc, char **argv);
int bt_cmd_worker(int argc, char **argv);

#endif
