/*
 * cli.h - the parts of the CLI agent adapter (cli.c) that can be tested without
 * spawning anything: the presets (which coding CLI, its program name and flags), the
 * command line built for one turn, and the parser that reads a CLI's output line by
 * line into final text, token usage, cost and the tool's own error report.
 *
 * Core code never includes this header; it uses agent.h. The adapter itself is
 * reached through bt_agent_new with a `type: cli` configuration entry.
 *
 *   bt_cli_parser *p = bt_cli_parser_new(BT_CLI_CLAUDE, 1 << 20, &cb);
 *   for each stdout line: bt_cli_parser_feed_line(p, line, len);
 *   bt_cli_outcome o; bt_cli_parser_finish(p, &o);   // o's strings live until _free
 *   bt_cli_parser_free(p);
 */
#ifndef BT_CLI_H
#define BT_CLI_H

#include "base/error.h"
#include "base/vec.h"
#include "config/config.h"

#include <stddef.h>
#include <stdint.h>

typedef enum bt_cli_preset {
    BT_CLI_GENERIC = 0, /* no preset: cfg.command, prompt via {{prompt}} or stdin */
    BT_CLI_CLAUDE,
    BT_CLI_CODEX,
    BT_CLI_GEMINI,
    BT_CLI_COPILOT,
    BT_CLI_AIDER,
    BT_CLI_OPENCODE,
} bt_cli_preset;

/* NULL or "" -> BT_CLI_GENERIC. BT_EINVAL (err names the known presets) otherwise. */
int bt_cli_preset_from_name(const char *name, bt_cli_preset *out, bt_error *err);
/* "generic", "claude", ... Never NULL. */
const char *bt_cli_preset_name(bt_cli_preset p);
/* The program a preset runs ("claude"); NULL for BT_CLI_GENERIC. */
const char *bt_cli_preset_program(bt_cli_preset p);

/* One turn's command line. */
typedef struct bt_cli_command {
    bt_strvec argv;   /* argv[0] is the program as configured (not yet resolved on PATH) */
    char *stdin_data; /* owned; NULL: stdin is /dev/null */
    size_t stdin_len;
} bt_cli_command;

/* Build the command for cfg (preset, command, args, model) and one prompt. system and
 * context may be NULL or "". Fails with BT_EINVAL when cfg names neither a preset nor a
 * command, BT_ETOOBIG when the prompt cannot be passed (copilot takes it only as an
 * argument, at most 128 KiB). On success the caller releases out. */
int bt_cli_command_build(const bt_config_agent *cfg, const char *prompt, const char *system,
                         const char *context, bt_cli_command *out, bt_error *err);
void bt_cli_command_release(bt_cli_command *c);

/* 1 when text (a CLI's error report or stderr) looks like a failure that may pass
 * when tried again: rate limits (429), overload (529), 5xx, refused or reset
 * connections, network timeouts. Quota or billing exhaustion counts as permanent. */
int bt_cli_error_is_transient(const char *text);

/* ---- output parser ---- */

typedef struct bt_cli_parser bt_cli_parser;

/* What the parser reports while it reads. Every member may be NULL. Strings are
 * borrowed for the duration of the call. */
typedef struct bt_cli_parser_cb {
    /* text for a person: an assistant message, a plain stdout line (with its newline) */
    void (*text)(void *ud, const char *text, size_t len);
    void (*tool)(void *ud, const char *name, const char *detail);
    /* cumulative totals, when they change */
    void (*usage)(void *ud, int64_t tokens_in, int64_t tokens_out);
    /* a warning the tool reported (a non-fatal error event, a failed tool call) */
    void (*note)(void *ud, const char *text);
    void *ud;
} bt_cli_parser_cb;

/* The parse result. Strings are owned by the parser (valid until bt_cli_parser_free). */
typedef struct bt_cli_outcome {
    int has_text;     /* the tool reported a final answer (claude result, codex
                       * agent_message, gemini response, opencode text) */
    const char *text; /* "" when none */
    size_t text_len;
    int has_usage; /* tokens_in counts every prompt token, cached or not */
    int64_t tokens_in, tokens_out;
    int has_cost; /* the tool's own cost figure (> 0) */
    double cost_usd;
    int is_error;      /* the tool said the turn failed */
    const char *error; /* the tool's error text ("" when none; may be set without
                        * is_error, e.g. codex's reconnect notices) */
    const char *model; /* "" when unknown */
} bt_cli_outcome;

/* A parser for preset p's output format. max_text bounds every text it keeps (0 = 4 MiB).
 * cb is copied; may be NULL. */
bt_cli_parser *bt_cli_parser_new(bt_cli_preset p, size_t max_text, const bt_cli_parser_cb *cb);
/* One stdout line without its newline (a trailing '\r' is ignored). */
void bt_cli_parser_feed_line(bt_cli_parser *p, const char *line, size_t len);
/* Call once after the last line. */
void bt_cli_parser_finish(bt_cli_parser *p, bt_cli_outcome *out);
void bt_cli_parser_free(bt_cli_parser *p);

#endif
