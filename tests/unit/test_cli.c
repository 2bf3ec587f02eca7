/*
 * test_cli.c - the CLI agent adapter: each preset's real output format (recorded samples in
 * tests/fakes/samples) parsed into text, tokens and cost; command lines; and real turns on a
 * libuv loop against tests/fakes/fake-agent: success with events before done, stall and turn
 * timeouts that kill the whole process group (grandchild included), cancel, a crash, a tool
 * error, a 100 MB flood within the output cap and without memory growth, the environment
 * allow-list, a missing program, and the availability check.
 */
#include "testutil.h"

#include "agents/agent.h"
#include "agents/cli.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

static char *src_path(const char *rel)
{
    const char *src = getenv("BATON_SOURCE_DIR");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/%s", src && *src ? src : ".", rel);
    return bt_strbuf_detach(&sb, NULL);
}

static char *fake_path(void)
{
    return src_path("tests/fakes/fake-agent");
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    bt_strbuf sb = BT_STRBUF_INIT;
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        bt_strbuf_add(&sb, buf, n);
    fclose(f);
    if (len)
        *len = sb.len;
    return bt_strbuf_detach(&sb, NULL);
}

typedef struct parsed {
    bt_strbuf text;
    int tools, notes, usage_calls;
    bt_strbuf tool_names;
} parsed;

static void p_text(void *ud, const char *t, size_t n)
{
    parsed *p = ud;
    bt_strbuf_add(&p->text, t, n);
}

static void p_tool(void *ud, const char *name, const char *detail)
{
    parsed *p = ud;
    (void)detail;
    p->tools++;
    bt_strbuf_addf(&p->tool_names, "%s;", name);
}

static void p_usage(void *ud, int64_t in, int64_t out)
{
    parsed *p = ud;
    (void)in, (void)out;
    p->usage_calls++;
}

static void p_note(void *ud, const char *t)
{
    parsed *p = ud;
    (void)t;
    p->notes++;
}

/* Feed a sample (its leading "# " comment lines skipped) to a parser for preset. */
static bt_cli_parser *parse_sample(bt_cli_preset preset, const char *name, parsed *pd,
                                   bt_cli_outcome *o)
{
    bt_strbuf rel = BT_STRBUF_INIT;
    bt_strbuf_addf(&rel, "tests/fakes/samples/%s", name);
    char *path = src_path(rel.buf);
    bt_strbuf_release(&rel);
    size_t len = 0;
    char *data = read_all(path, &len);
    assert_non_null(data);
    free(path);
    memset(pd, 0, sizeof *pd);
    bt_cli_parser_cb cb = {p_text, p_tool, p_usage, p_note, pd};
    bt_cli_parser *p = bt_cli_parser_new(preset, 0, &cb);
    int header = 1;
    char *s = data;
    while (s < data + len) {
        char *nl = memchr(s, '\n', (size_t)(data + len - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(data + len - s);
        if (!(header && n >= 1 && s[0] == '#')) {
            header = 0;
            bt_cli_parser_feed_line(p, s, n);
        }
        s += n + 1;
    }
    free(data);
    bt_cli_parser_finish(p, o);
    return p;
}

static void parsed_release(parsed *p)
{
    bt_strbuf_release(&p->text);
    bt_strbuf_release(&p->tool_names);
}

static int proc_state(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

/* Alive and not a zombie. */
static int pid_alive(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    int st = proc_state(pid);
    return st && st != 'Z';
}

/* Any live (non-zombie) process in process group pgid. */
static int group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int found = 0;
    const struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char buf[512];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        char state;
        int ppid, pgrp;
        if (rp && sscanf(rp + 2, "%c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
            state != 'Z')
            found = 1;
    }
    closedir(d);
    return found;
}

/* A killed process closes its files a moment before it is gone from the process table:
 * wait (bounded) for it to go. */
static int pid_gone(pid_t pid)
{
    for (int i = 0; i < 200 && pid_alive(pid); i++)
        usleep(10000);
    return !pid_alive(pid);
}

static int group_gone(pid_t pgid)
{
    for (int i = 0; i < 200 && group_alive(pgid); i++)
        usleep(10000);
    return !group_alive(pgid);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* One turn's observations. */
typedef struct turn {
    int done;
    int success, error_class, exit_code, term_signal, cost_reported, truncated;
    int64_t tokens_in, tokens_out, duration_ms;
    double cost;
    char *output, *error, *model;
    int events, ev_output, ev_tool, ev_usage, ev_status, ev_stderr, after_done;
    bt_strbuf stream;
    int cancel_on_output;
    bt_agent_run *run;
} turn;

static void on_event(const bt_agent_event *ev, void *ud)
{
    turn *t = ud;
    if (t->done)
        t->after_done++;
    t->events++;
    switch (ev->kind) {
    case BT_AGENT_EV_OUTPUT:
        t->ev_output++;
        if (t->stream.len < 65536)
            bt_strbuf_add(&t->stream, ev->text, ev->len);
        if (t->cancel_on_output && t->run) {
            bt_agent_run_cancel(t->run);
            t->cancel_on_output = 0;
        }
        break;
    case BT_AGENT_EV_TOOL:
        t->ev_tool++;
        assert_non_null(ev->tool);
        break;
    case BT_AGENT_EV_USAGE:
        t->ev_usage++;
        break;
    case BT_AGENT_EV_STATUS:
        t->ev_status++;
        break;
    case BT_AGENT_EV_STDERR:
        t->ev_stderr++;
        break;
    }
}

static void on_done(const bt_agent_result *r, void *ud)
{
    turn *t = ud;
    assert_false(t->done);
    t->done = 1;
    t->success = r->success;
    t->error_class = r->error_class;
    t->exit_code = r->exit_code;
    t->term_signal = r->term_signal;
    t->tokens_in = r->tokens_in;
    t->tokens_out = r->tokens_out;
    t->cost = r->cost_usd;
    t->cost_reported = r->cost_reported;
    t->truncated = r->truncated;
    t->duration_ms = r->duration_ms;
    t->output = bt_xstrdup(r->output);
    t->error = bt_xstrdup(r->error);
    t->model = bt_xstrdup(r->model);
}

static void turn_release(turn *t)
{
    free(t->output);
    free(t->error);
    free(t->model);
    bt_strbuf_release(&t->stream);
}

typedef struct spec {
    const char *preset, *command;
    const char *args[6];
    const char *env[4];
    const char *api_key, *model;
    const char *prompt, *system, *context;
    int64_t timeout_ms, stall_ms;
    size_t max_output;
    int cancel_on_output;
} spec;

/* Run one turn to completion on a fresh loop; the loop must close cleanly after it. */
static void run_turn(const spec *s, const char *ws, turn *t)
{
    memset(t, 0, sizeof *t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    bt_config_agent ac;
    memset(&ac, 0, sizeof ac);
    ac.name = "t";
    ac.type = BT_AGENT_CLI;
    ac.preset = (char *)s->preset;
    ac.command = (char *)s->command;
    ac.api_key = (char *)s->api_key;
    ac.model = (char *)s->model;
    ac.timeout_ms = 20000;
    for (size_t i = 0; i < 6 && s->args[i]; i++)
        bt_strvec_push(&ac.args, s->args[i]);
    for (size_t i = 0; i < 4 && s->env[i]; i++)
        bt_strvec_push(&ac.env, s->env[i]);
    bt_agent_env env = {&loop, NULL, NULL, NULL};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_new(&env, &ac, &a, &err), 0);
    bt_strvec_clear(&ac.args);
    bt_strvec_clear(&ac.env);
    assert_string_equal(bt_agent_kind(a), "cli");
    assert_true(bt_agent_writes_workspace(a));
    bt_agent_request rq = {.prompt = s->prompt ? s->prompt : "write hello",
                           .system = s->system,
                           .context = s->context,
                           .workspace = ws,
                           .timeout_ms = s->timeout_ms,
                           .stall_timeout_ms = s->stall_ms,
                           .max_output = s->max_output,
                           .on_event = on_event,
                           .on_done = on_done,
                           .ud = t};
    t->cancel_on_output = s->cancel_on_output;
    bt_agent_run *run = NULL;
    assert_int_equal(bt_agent_start(a, &rq, &run, &err), 0);
    assert_false(t->done); /* never inside start */
    t->run = run;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(t->done);
    assert_int_equal(t->after_done, 0);
    bt_agent_free(a);
    assert_int_equal(uv_loop_close(&loop), 0); /* every handle was closed */
}

static void read_pids(const char *pidfile, pid_t *gc, pid_t *pgid)
{
    char *s = read_all(pidfile, NULL);
    assert_non_null(s);
    int a = 0, b = 0;
    assert_int_equal(sscanf(s, "%d %d", &a, &b), 2);
    free(s);
    *gc = a;
    *pgid = b;
}

/* ---- parsing the real formats ---- */

static void test_parse_claude(void **state)
{
    (void)state;
    parsed pd;
    bt_cli_outcome o;
    bt_cli_parser *p = parse_sample(BT_CLI_CLAUDE, "claude-stream.jsonl", &pd, &o);
    assert_true(o.has_text);
    assert_string_equal(o.text, "Created hello.txt containing hi.");
    assert_true(o.has_usage);
    assert_int_equal(o.tokens_in, 39168);
    assert_int_equal(o.tokens_out, 50);
    assert_true(o.has_cost);
    assert_true(o.cost_usd > 0.19708 && o.cost_usd < 0.19710);
    assert_false(o.is_error);
    assert_string_equal(o.model, "claude-opus-4-8");
    assert_int_equal(pd.tools, 1);
    assert_string_equal(pd.tool_names.buf, "Write;");
    assert_non_null(strstr(bt_strbuf_cstr(&pd.text), "Created hello.txt containing hi.\n"));
    assert_null(strstr(bt_strbuf_cstr(&pd.text), "\"type\"")); /* no raw JSON for people */
    bt_cli_parser_free(p);
    parsed_release(&pd);

    p = parse_sample(BT_CLI_CLAUDE, "claude-error.jsonl", &pd, &o);
    assert_true(o.is_error);
    assert_string_equal(o.error, "API Error: Unable to connect to API (ConnectionRefused)");
    assert_false(o.has_cost);
    assert_true(bt_cli_error_is_transient(o.error));
    bt_cli_parser_free(p);
    parsed_release(&pd);
}

static void test_parse_codex(void **state)
{
    (void)state;
    parsed pd;
    bt_cli_outcome o;
    bt_cli_parser *p = parse_sample(BT_CLI_CODEX, "codex-exec.jsonl", &pd, &o);
    assert_true(o.has_text);
    assert_string_equal(o.text, "Created hello.txt containing hi.");
    assert_int_equal(o.tokens_in, 19778);
    assert_int_equal(o.tokens_out, 50);
    assert_false(o.has_cost); /* codex reports none: baton prices it */
    assert_false(o.is_error);
    assert_string_equal(pd.tool_names.buf, "file_change;shell;");
    bt_cli_parser_free(p);
    parsed_release(&pd);

    p = parse_sample(BT_CLI_CODEX, "codex-failed.jsonl", &pd, &o);
    assert_true(o.is_error);
    assert_non_null(strstr(o.error, "Connection failed: error sending request for url"));
    assert_true(bt_cli_error_is_transient(o.error));
    assert_true(pd.notes >= 1);
    bt_cli_parser_free(p);
    parsed_release(&pd);
}

static void test_parse_gemini(void **state)
{
    (void)state;
    parsed pd;
    bt_cli_outcome o;
    bt_cli_parser *p = parse_sample(BT_CLI_GEMINI, "gemini-stream.jsonl", &pd, &o);
    assert_true(o.has_text);
    assert_string_equal(o.text, "Created `hello.txt` containing hi.");
    assert_int_equal(o.tokens_in, 16210);
    assert_int_equal(o.tokens_out, 139);
    assert_string_equal(o.model, "gemini-2.5-pro");
    assert_string_equal(pd.tool_names.buf, "write_file;");
    assert_null(strstr(pd.text.buf, "create hello.txt")); /* the user's message is not output */
    bt_cli_parser_free(p);
    parsed_release(&pd);

    p = parse_sample(BT_CLI_GEMINI, "gemini.json", &pd, &o);
    assert_true(o.has_text);
    assert_string_equal(o.text, "The build passes after fixing the import in src/main.ts.");
    assert_int_equal(o.tokens_in, 24401 + 20803);
    assert_int_equal(o.tokens_out, 215 + 716);
    assert_false(o.is_error);
    assert_string_equal(o.model, "gemini-2.5-pro");
    bt_cli_parser_free(p);
    parsed_release(&pd);
}

static void test_parse_opencode_aider_copilot(void **state)
{
    (void)state;
    parsed pd;
    bt_cli_outcome o;
    bt_cli_parser *p = parse_sample(BT_CLI_OPENCODE, "opencode.jsonl", &pd, &o);
    assert_true(o.has_text);
    assert_string_equal(o.text, "Created hello.txt containing hi.");
    /* input + cache read + cache write over both steps; output + reasoning */
    assert_int_equal(o.tokens_in, 7952 + 2000 + 100 + 8011);
    assert_int_equal(o.tokens_out, 35 + 24 + 11);
    assert_true(o.has_cost);
    assert_true(o.cost_usd > 0.01679 && o.cost_usd < 0.01681);
    assert_string_equal(pd.tool_names.buf, "write;");
    bt_cli_parser_free(p);
    parsed_release(&pd);

    p = parse_sample(BT_CLI_AIDER, "aider.txt", &pd, &o);
    assert_false(o.has_text); /* aider's answer is its stdout */
    assert_int_equal(o.tokens_in, 1200 + 12000);
    assert_int_equal(o.tokens_out, 345 + 56);
    assert_true(o.has_cost);
    assert_true(o.cost_usd > 0.0199 && o.cost_usd < 0.0201); /* the session total */
    assert_int_equal(pd.usage_calls, 2);
    assert_non_null(strstr(pd.text.buf, "Applied edit to hello.txt\n"));
    bt_cli_parser_free(p);
    parsed_release(&pd);

    p = parse_sample(BT_CLI_COPILOT, "copilot.txt", &pd, &o);
    assert_false(o.has_text);
    assert_false(o.has_usage);
    assert_string_equal(pd.text.buf, "I created hello.txt containing \"hi\" in the repository "
                                     "root.\n\nRun `cat hello.txt` to check it.\n");
    bt_cli_parser_free(p);
    parsed_release(&pd);
}

static void test_transient_signatures(void **state)
{
    (void)state;
    assert_true(bt_cli_error_is_transient("API Error: 529 {\"type\":\"overloaded_error\"}"));
    assert_true(bt_cli_error_is_transient("Error: 429 Too Many Requests"));
    assert_true(bt_cli_error_is_transient("read ECONNRESET"));
    assert_true(bt_cli_error_is_transient("HTTP 503 Service Unavailable"));
    assert_true(bt_cli_error_is_transient("stream disconnected: network error"));
    assert_false(bt_cli_error_is_transient("Invalid API key: please run /login"));
    assert_false(bt_cli_error_is_transient("wrote 4290 bytes then failed: bad flag"));
    assert_false(bt_cli_error_is_transient(
        "429: You exceeded your current quota, please check your plan (insufficient_quota)"));
    assert_false(bt_cli_error_is_transient(""));
}

/* ---- command lines ---- */

static void check_argv(const bt_cli_command *c, const char *const *want)
{
    size_t n = 0;
    while (want[n])
        n++;
    for (size_t i = 0; i < c->argv.len && i < n; i++)
        assert_string_equal(c->argv.items[i], want[i]);
    assert_int_equal(c->argv.len, n);
}

static void test_command_lines(void **state)
{
    (void)state;
    bt_config_agent ac;
    memset(&ac, 0, sizeof ac);
    ac.name = "x";
    bt_cli_command c;
    bt_error err = BT_ERROR_INIT;

    ac.preset = "claude";
    ac.model = "claude-sonnet-4-5";
    bt_strvec_push(&ac.args, "--max-turns");
    bt_strvec_push(&ac.args, "5");
    assert_int_equal(bt_cli_command_build(&ac, "fix it", "be careful", "ctx", &c, &err), 0);
    const char *const claude[] = {"claude",
                                  "-p",
                                  "--output-format",
                                  "stream-json",
                                  "--verbose",
                                  "--permission-mode",
                                  "acceptEdits",
                                  "--model",
                                  "claude-sonnet-4-5",
                                  "--append-system-prompt",
                                  "be careful",
                                  "--max-turns",
                                  "5",
                                  "--",
                                  "fix it\n\nctx",
                                  NULL};
    check_argv(&c, claude);
    assert_null(c.stdin_data);
    bt_cli_command_release(&c);
    bt_strvec_clear(&ac.args);

    ac.preset = "codex";
    ac.model = NULL;
    ac.command = "/opt/codex/bin/codex";
    assert_int_equal(bt_cli_command_build(&ac, "fix it", "be careful", NULL, &c, &err), 0);
    const char *const codex[] = {"/opt/codex/bin/codex",
                                 "exec",
                                 "--json",
                                 "--skip-git-repo-check",
                                 "--sandbox",
                                 "workspace-write",
                                 "--",
                                 "be careful\n\nfix it",
                                 NULL};
    check_argv(&c, codex);
    bt_cli_command_release(&c);
    ac.command = NULL;

    ac.preset = "gemini";
    assert_int_equal(bt_cli_command_build(&ac, "-v is not a flag here", NULL, NULL, &c, &err), 0);
    const char *const gemini[] = {"gemini",
                                  "--prompt=-v is not a flag here",
                                  "--output-format",
                                  "stream-json",
                                  "--approval-mode",
                                  "auto_edit",
                                  NULL};
    check_argv(&c, gemini);
    bt_cli_command_release(&c);

    ac.preset = "aider";
    ac.model = "openai/gpt-5";
    assert_int_equal(bt_cli_command_build(&ac, "fix it", NULL, NULL, &c, &err), 0);
    const char *const aider[] = {"aider",        "--message",    "fix it",
                                 "--yes-always", "--no-pretty",  "--no-stream",
                                 "--model",      "openai/gpt-5", NULL};
    check_argv(&c, aider);
    bt_cli_command_release(&c);
    ac.model = NULL;

    ac.preset = "opencode";
    assert_int_equal(bt_cli_command_build(&ac, "fix it", NULL, NULL, &c, &err), 0);
    const char *const opencode[] = {"opencode", "run", "--format", "json", "--", "fix it", NULL};
    check_argv(&c, opencode);
    bt_cli_command_release(&c);

    ac.preset = "copilot";
    assert_int_equal(bt_cli_command_build(&ac, "fix it", NULL, NULL, &c, &err), 0);
    const char *const copilot[] = {"copilot",       "-p", "fix it", "--allow-all-tools",
                                   "--no-ask-user", "-s", NULL};
    check_argv(&c, copilot);
    bt_cli_command_release(&c);

    /* huge prompts: stdin where the tool reads it, an error where it cannot */
    size_t big = 200 << 10;
    char *huge = bt_xmalloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    assert_int_equal(bt_cli_command_build(&ac, huge, NULL, NULL, &c, &err), BT_ETOOBIG);
    assert_non_null(strstr(err.msg, "copilot"));
    ac.preset = "claude";
    assert_int_equal(bt_cli_command_build(&ac, huge, NULL, NULL, &c, &err), 0);
    assert_int_equal(c.stdin_len, big);
    assert_string_equal(c.argv.items[c.argv.len - 1], "acceptEdits"); /* no prompt argument */
    bt_cli_command_release(&c);
    ac.preset = "codex";
    assert_int_equal(bt_cli_command_build(&ac, huge, NULL, NULL, &c, &err), 0);
    assert_string_equal(c.argv.items[c.argv.len - 1], "-");
    assert_int_equal(c.stdin_len, big);
    bt_cli_command_release(&c);
    free(huge);

    /* generic: {{prompt}} in an argument, else stdin; a command line split into words */
    ac.preset = NULL;
    ac.command = "python3 agent.py";
    bt_strvec_push(&ac.args, "--task={{prompt}}");
    assert_int_equal(bt_cli_command_build(&ac, "fix it", NULL, NULL, &c, &err), 0);
    const char *const gen[] = {"python3", "agent.py", "--task=fix it", NULL};
    check_argv(&c, gen);
    assert_null(c.stdin_data);
    bt_cli_command_release(&c);
    bt_strvec_clear(&ac.args);
    assert_int_equal(bt_cli_command_build(&ac, "fix it", "sys", NULL, &c, &err), 0);
    assert_string_equal(c.stdin_data, "sys\n\nfix it");
    bt_cli_command_release(&c);
    ac.command = NULL;
    assert_int_equal(bt_cli_command_build(&ac, "fix it", NULL, NULL, &c, &err), BT_EINVAL);
}

/* ---- real turns against the fake ---- */

static void test_ok_every_preset(void **state)
{
    (void)state;
    char *fake = fake_path();
    static const char *const presets[] = {"claude", "codex",   "gemini", "opencode",
                                          "aider",  "copilot", NULL};
    const char *prompt = "write hello";
    char want[64];
    snprintf(want, sizeof want, "done: %s", prompt);
    for (size_t i = 0; presets[i]; i++) {
        char *ws = bt_test_tmpdir("cli-ok");
        spec s = {
            .preset = presets[i], .command = fake, .args = {"--as", presets[i]}, .prompt = prompt};
        turn t;
        run_turn(&s, ws, &t);
        if (!t.success)
            fprintf(stderr, "%s: %s\n", presets[i], t.error);
        assert_true(t.success);
        assert_int_equal(t.error_class, BT_AGENT_OK);
        assert_int_equal(t.exit_code, 0);
        /* the final text: parsed for JSON tools, stdout for the plain ones */
        if (strcmp(presets[i], "aider") == 0 || strcmp(presets[i], "copilot") == 0)
            assert_non_null(strstr(t.output, want));
        else
            assert_string_equal(t.output, want);
        assert_true(t.ev_output > 0); /* streamed before done (run_turn checks none after) */
        assert_non_null(strstr(t.stream.buf, want));
        if (strcmp(presets[i], "copilot") != 0) {
            assert_int_equal(t.tokens_in, (int64_t)strlen(prompt));
            assert_int_equal(t.tokens_out, (int64_t)strlen(want));
            assert_true(t.ev_usage > 0);
        }
        if (strcmp(presets[i], "claude") == 0 || strcmp(presets[i], "opencode") == 0) {
            double cost = (strlen(prompt) * 3.0 + strlen(want) * 15.0) / 1e6;
            assert_true(t.cost_reported);
            assert_true(t.cost > cost * 0.999 && t.cost < cost * 1.001);
        }
        if (strcmp(presets[i], "aider") != 0 && strcmp(presets[i], "copilot") != 0)
            assert_true(t.ev_tool > 0);
        /* the fake edits the workspace, as the real CLIs do */
        bt_strbuf f = BT_STRBUF_INIT;
        bt_strbuf_addf(&f, "%s/fake-agent.txt", ws);
        char *content = read_all(f.buf, NULL);
        assert_non_null(content);
        assert_string_equal(content, prompt);
        free(content);
        bt_strbuf_release(&f);
        turn_release(&t);
        bt_test_rmdir(ws);
    }
    free(fake);
}

static void test_generic_prompt_and_composition(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-gen");
    turn t;
    /* stdin, with the role prompt and context around it */
    spec s = {.command = fake,
              .args = {"--as", "generic"},
              .prompt = "the task",
              .system = "You review.",
              .context = "more"};
    run_turn(&s, ws, &t);
    assert_true(t.success);
    assert_string_equal(t.output, "done: You review.\n\nthe task\n\nmore\n");
    turn_release(&t);
    /* {{prompt}} in the arguments */
    spec s2 = {.command = fake,
               .args = {"--as", "generic", "--prompt", "{{prompt}}"},
               .prompt = "as an argument"};
    run_turn(&s2, ws, &t);
    assert_true(t.success);
    assert_string_equal(t.output, "done: as an argument\n");
    turn_release(&t);
    /* a prompt over 64 KiB goes to claude on stdin */
    size_t big = 100 << 10;
    char *huge = bt_xmalloc(big + 1);
    memset(huge, 'b', big);
    huge[big] = '\0';
    spec s3 = {.preset = "claude", .command = fake, .args = {"--as", "claude"}, .prompt = huge};
    run_turn(&s3, ws, &t);
    assert_true(t.success);
    assert_int_equal(t.tokens_in, (int64_t)big);
    turn_release(&t);
    free(huge);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_stall_kills_group(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-stall");
    bt_strbuf pidfile = BT_STRBUF_INIT;
    bt_strbuf_addf(&pidfile, "%s/pids", ws);
    bt_strbuf envpid = BT_STRBUF_INIT;
    bt_strbuf_addf(&envpid, "FAKE_AGENT_PIDFILE=%s", pidfile.buf);
    spec s = {.preset = "claude",
              .command = fake,
              .args = {"--as", "claude"},
              .env = {"FAKE_AGENT_MODE=grandchild", envpid.buf},
              .stall_ms = 400,
              .timeout_ms = 20000};
    turn t;
    int64_t t0 = bt_time_mono_ms();
    run_turn(&s, ws, &t);
    int64_t took = bt_time_mono_ms() - t0;
    assert_false(t.success);
    assert_int_equal(t.error_class, BT_AGENT_TIMEOUT);
    assert_non_null(strstr(t.error, "stalled: no output for 400ms"));
    assert_true(took < 4000); /* SIGTERM was enough: no 2 s SIGKILL grace, no 20 s turn limit */
    assert_int_equal(t.term_signal, SIGTERM);
    assert_true(t.ev_status > 0);
    pid_t gc, pgid;
    read_pids(pidfile.buf, &gc, &pgid);
    assert_true(pid_gone(gc));
    assert_true(group_gone(pgid));
    turn_release(&t);
    bt_strbuf_release(&pidfile);
    bt_strbuf_release(&envpid);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_exit_with_grandchild_holding_pipes(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-gc");
    bt_strbuf pidfile = BT_STRBUF_INIT;
    bt_strbuf_addf(&pidfile, "%s/pids", ws);
    bt_strbuf envpid = BT_STRBUF_INIT;
    bt_strbuf_addf(&envpid, "FAKE_AGENT_PIDFILE=%s", pidfile.buf);
    spec s = {.command = fake,
              .args = {"--as", "generic"},
              .env = {"FAKE_AGENT_MODE=grandchild", "FAKE_AGENT_THEN=exit", envpid.buf}};
    turn t;
    int64_t t0 = bt_time_mono_ms();
    run_turn(&s, ws, &t);
    assert_true(bt_time_mono_ms() - t0 < 1500); /* the leftover was killed at exit, no wait */
    assert_true(t.success);
    pid_t gc, pgid;
    read_pids(pidfile.buf, &gc, &pgid);
    assert_true(pid_gone(gc));
    assert_true(group_gone(pgid));
    turn_release(&t);
    bt_strbuf_release(&pidfile);
    bt_strbuf_release(&envpid);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_turn_timeout(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-timeout");
    spec s = {.preset = "codex",
              .command = fake,
              .args = {"--as", "codex"},
              .env = {"FAKE_AGENT_MODE=hang"},
              .stall_ms = -1,
              .timeout_ms = 400};
    turn t;
    run_turn(&s, ws, &t);
    assert_false(t.success);
    assert_int_equal(t.error_class, BT_AGENT_TIMEOUT);
    assert_non_null(strstr(t.error, "timed out: the turn took longer than 400ms"));
    assert_true(t.duration_ms >= 400 && t.duration_ms < 4000);
    turn_release(&t);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_cancel(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-cancel");
    bt_strbuf pidfile = BT_STRBUF_INIT;
    bt_strbuf_addf(&pidfile, "%s/pids", ws);
    bt_strbuf envpid = BT_STRBUF_INIT;
    bt_strbuf_addf(&envpid, "FAKE_AGENT_PIDFILE=%s", pidfile.buf);
    spec s = {.command = fake,
              .args = {"--as", "generic"},
              .env = {"FAKE_AGENT_MODE=grandchild", envpid.buf},
              .cancel_on_output = 1};
    turn t;
    run_turn(&s, ws, &t);
    assert_false(t.success);
    assert_int_equal(t.error_class, BT_AGENT_CANCELLED);
    assert_true(t.duration_ms < 4000);
    pid_t gc, pgid;
    read_pids(pidfile.buf, &gc, &pgid);
    assert_true(pid_gone(gc));
    assert_true(group_gone(pgid));
    turn_release(&t);
    bt_strbuf_release(&pidfile);
    bt_strbuf_release(&envpid);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_crash_is_transient(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-crash");
    spec s = {.preset = "claude",
              .command = fake,
              .args = {"--as", "claude"},
              .env = {"FAKE_AGENT_MODE=crash"}};
    turn t;
    run_turn(&s, ws, &t);
    assert_false(t.success);
    assert_int_equal(t.error_class, BT_AGENT_TRANSIENT);
    assert_int_equal(t.term_signal, SIGSEGV);
    assert_int_equal(t.exit_code, -1);
    assert_non_null(strstr(t.error, "crashed with signal 11"));
    assert_non_null(strstr(t.error, "segfaulting now")); /* its stderr says why */
    assert_true(t.ev_stderr > 0);
    turn_release(&t);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_tool_errors(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-err");
    turn t;
    /* claude's is_error result, a message that will not pass by retrying */
    spec s = {.preset = "claude",
              .command = fake,
              .args = {"--as", "claude"},
              .env = {"FAKE_AGENT_MODE=error", "FAKE_AGENT_ERROR=Invalid API key: run /login"}};
    run_turn(&s, ws, &t);
    assert_false(t.success);
    assert_int_equal(t.error_class, BT_AGENT_PERMANENT);
    assert_int_equal(t.exit_code, 1);
    assert_string_equal(t.error, "claude exited with status 1: Invalid API key: run /login");
    turn_release(&t);
    /* codex turn.failed with a rate limit: worth another try */
    spec s2 = {.preset = "codex",
               .command = fake,
               .args = {"--as", "codex"},
               .env = {"FAKE_AGENT_MODE=error", "FAKE_AGENT_ERROR=429 Too Many Requests"}};
    run_turn(&s2, ws, &t);
    assert_int_equal(t.error_class, BT_AGENT_TRANSIENT);
    assert_non_null(strstr(t.error, "429 Too Many Requests"));
    turn_release(&t);
    /* a plain CLI: its stderr is the message */
    spec s3 = {.preset = "copilot",
               .command = fake,
               .args = {"--as", "copilot"},
               .env = {"FAKE_AGENT_MODE=error", "FAKE_AGENT_ERROR=no such model"}};
    run_turn(&s3, ws, &t);
    assert_int_equal(t.error_class, BT_AGENT_PERMANENT);
    assert_string_equal(t.error, "copilot exited with status 1: Error: no such model");
    turn_release(&t);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_flood_is_bounded(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-flood");
    size_t cap = 1 << 20;
    turn t;
    /* warm up (allocator, loop) with a small flood first so the figure below is the flood's */
    spec s0 = {.command = fake,
               .args = {"--as", "generic"},
               .env = {"FAKE_AGENT_MODE=flood", "FAKE_AGENT_BYTES=4000000"},
               .max_output = cap};
    run_turn(&s0, ws, &t);
    turn_release(&t);
    long before = rss_kb();
    spec s = {.command = fake,
              .args = {"--as", "generic"},
              .env = {"FAKE_AGENT_MODE=flood"}, /* 100 MB */
              .max_output = cap};
    run_turn(&s, ws, &t);
    long after = rss_kb();
    assert_true(t.success);
    assert_true(t.truncated);
    size_t marker = strlen("\n[baton: output truncated at 1048576 bytes]\n");
    assert_true(strlen(t.output) <= cap + marker);
    assert_non_null(strstr(t.output, "[baton: output truncated at 1048576 bytes]"));
    assert_true(t.ev_status > 0); /* said that it stopped streaming */
    fprintf(stderr, "flood: RSS %ld kB -> %ld kB\n", before, after);
    assert_true(after - before < 64 * 1024);
    turn_release(&t);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_many_lines(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-lines");
    spec s = {.preset = "claude",
              .command = fake,
              .args = {"--as", "claude"},
              .env = {"FAKE_AGENT_MODE=lines", "FAKE_AGENT_LINES=1000"}};
    turn t;
    run_turn(&s, ws, &t);
    assert_true(t.success);
    assert_true(t.ev_output >= 1000);
    assert_string_equal(t.output, "done: write hello");
    turn_release(&t);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_long_json_lines(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-long");
    turn t;
    /* a 300 KiB result line (opencode notes lines over 64 KiB) parses whole */
    spec s = {.preset = "claude",
              .command = fake,
              .args = {"--as", "claude"},
              .env = {"FAKE_AGENT_ANSWER_BYTES=307200"}};
    run_turn(&s, ws, &t);
    assert_true(t.success);
    assert_int_equal(strlen(t.output), strlen("done: write hello") + 307200);
    assert_false(t.truncated);
    turn_release(&t);
    /* over max_output the line is skipped, with a note, and memory stays bounded */
    spec s2 = s;
    s2.max_output = 100 << 10;
    run_turn(&s2, ws, &t);
    assert_true(t.success);
    assert_true(strlen(t.output) <= (100 << 10) + 64);
    assert_true(t.ev_status > 0);
    turn_release(&t);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_env_allow_list(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *ws = bt_test_tmpdir("cli-env");
    setenv("DATABASE_URL", "postgres://secret@db/baton", 1);
    setenv("JWT_SECRET", "hush", 1);
    setenv("GITHUB_TOKEN", "ghp_secret", 1);
    setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9", 1);
    setenv("LC_ALL", "C", 1);
    turn t;
    spec s = {.preset = "claude",
              .command = fake,
              .args = {"--as", "claude"},
              .env = {"FAKE_AGENT_MODE=env", "BATON_TEST_X=42"},
              .api_key = "sk-ant-test"};
    run_turn(&s, ws, &t);
    assert_true(t.success);
    json_t *e = json_loads(t.output, 0, NULL);
    assert_non_null(e);
    assert_null(json_object_get(e, "DATABASE_URL"));
    assert_null(json_object_get(e, "JWT_SECRET"));
    assert_null(json_object_get(e, "GITHUB_TOKEN"));
    assert_string_equal(json_string_value(json_object_get(e, "ANTHROPIC_BASE_URL")),
                        "http://127.0.0.1:9");
    assert_string_equal(json_string_value(json_object_get(e, "ANTHROPIC_API_KEY")), "sk-ant-test");
    assert_string_equal(json_string_value(json_object_get(e, "BATON_TEST_X")), "42");
    assert_string_equal(json_string_value(json_object_get(e, "LC_ALL")), "C");
    assert_non_null(json_object_get(e, "PATH"));
    json_decref(e);
    turn_release(&t);
    /* copilot may see GITHUB_TOKEN; codex gets the key under both of its names */
    spec s2 = {.preset = "copilot",
               .command = fake,
               .args = {"--as", "copilot"},
               .env = {"FAKE_AGENT_MODE=env"}};
    run_turn(&s2, ws, &t);
    e = json_loads(t.output, 0, NULL);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "GITHUB_TOKEN")), "ghp_secret");
    assert_null(json_object_get(e, "ANTHROPIC_BASE_URL"));
    assert_null(json_object_get(e, "DATABASE_URL"));
    json_decref(e);
    turn_release(&t);
    spec s3 = {.preset = "codex",
               .command = fake,
               .args = {"--as", "codex"},
               .env = {"FAKE_AGENT_MODE=env"},
               .api_key = "sk-oa"};
    run_turn(&s3, ws, &t);
    e = json_loads(t.output, 0, NULL);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "CODEX_API_KEY")), "sk-oa");
    assert_string_equal(json_string_value(json_object_get(e, "OPENAI_API_KEY")), "sk-oa");
    assert_null(json_object_get(e, "GITHUB_TOKEN"));
    json_decref(e);
    turn_release(&t);
    unsetenv("DATABASE_URL");
    unsetenv("JWT_SECRET");
    unsetenv("GITHUB_TOKEN");
    unsetenv("ANTHROPIC_BASE_URL");
    unsetenv("LC_ALL");
    bt_test_rmdir(ws);
    free(fake);
}

static void test_missing_program(void **state)
{
    (void)state;
    char *ws = bt_test_tmpdir("cli-missing");
    turn t;
    spec s = {.preset = "claude", .command = "/nonexistent/bin/claude"};
    run_turn(&s, ws, &t);
    assert_false(t.success);
    assert_int_equal(t.error_class, BT_AGENT_PERMANENT);
    assert_non_null(strstr(t.error, "/nonexistent/bin/claude is not an executable file"));
    turn_release(&t);
    /* looked up on PATH */
    char *old = bt_xstrdup(getenv("PATH"));
    setenv("PATH", ws, 1);
    spec s2 = {.preset = "codex"};
    run_turn(&s2, ws, &t);
    setenv("PATH", old, 1);
    free(old);
    assert_int_equal(t.error_class, BT_AGENT_PERMANENT);
    assert_non_null(
        strstr(t.error, "codex: not found on PATH (install it: npm install -g @openai/codex"));
    turn_release(&t);
    bt_test_rmdir(ws);
}

typedef struct check_res {
    int called, available;
    char *detail;
} check_res;

static void on_check(bt_agent *a, int available, const char *detail, void *ud)
{
    (void)a;
    check_res *c = ud;
    c->called++;
    c->available = available;
    c->detail = bt_xstrdup(detail);
}

static void run_check(const char *preset, const char *command, check_res *c)
{
    memset(c, 0, sizeof *c);
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_config_agent ac;
    memset(&ac, 0, sizeof ac);
    ac.name = "chk";
    ac.type = BT_AGENT_CLI;
    ac.preset = (char *)preset;
    ac.command = (char *)command;
    bt_agent_env env = {&loop, NULL, NULL, NULL};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_new(&env, &ac, &a, &err), 0);
    bt_agent_check(a, on_check, c);
    assert_int_equal(c->called, 0); /* always from the loop */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c->called, 1);
    bt_agent_free(a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_check_and_path_lookup(void **state)
{
    (void)state;
    char *fake = fake_path();
    char *bin = bt_test_tmpdir("cli-bin");
    char *ws = bt_test_tmpdir("cli-path");
    bt_strbuf link = BT_STRBUF_INIT;
    bt_strbuf_addf(&link, "%s/claude", bin);
    assert_int_equal(symlink(fake, link.buf), 0);
    char *old = bt_xstrdup(getenv("PATH"));
    bt_strbuf path = BT_STRBUF_INIT;
    bt_strbuf_addf(&path, "%s:%s", bin, old);
    setenv("PATH", path.buf, 1);

    check_res c;
    run_check("claude", NULL, &c);
    assert_true(c.available);
    bt_strbuf want = BT_STRBUF_INIT;
    bt_strbuf_addf(&want, "claude 2.1.197 (%s)", link.buf);
    assert_string_equal(c.detail, want.buf);
    free(c.detail);

    setenv("PATH", bin, 1); /* only the directory with the claude link */
    run_check("gemini", NULL, &c);
    setenv("PATH", path.buf, 1);
    assert_false(c.available);
    assert_non_null(strstr(c.detail, "gemini not found on PATH"));
    free(c.detail);

    run_check(NULL, fake, &c); /* a generic program is only looked up */
    assert_true(c.available);
    assert_non_null(strstr(c.detail, fake));
    free(c.detail);

    /* a turn through the PATH symlink: the fake speaks claude because of its name */
    spec s = {.preset = "claude"};
    turn t;
    run_turn(&s, ws, &t);
    assert_true(t.success);
    assert_string_equal(t.output, "done: write hello");
    turn_release(&t);

    setenv("PATH", old, 1);
    free(old);
    bt_strbuf_release(&path);
    bt_strbuf_release(&link);
    bt_strbuf_release(&want);
    bt_test_rmdir(bin);
    bt_test_rmdir(ws);
    free(fake);
}

static void test_bad_config(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_config_agent ac;
    memset(&ac, 0, sizeof ac);
    ac.name = "bad";
    ac.type = BT_AGENT_CLI;
    ac.preset = "cursor";
    bt_agent_env env = {&loop, NULL, NULL, NULL};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_new(&env, &ac, &a, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "unknown CLI preset 'cursor'"));
    ac.preset = NULL;
    assert_int_equal(bt_agent_new(&env, &ac, &a, NULL), BT_EINVAL);
    uv_loop_close(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as app.c does: a child may close its stdin early */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_claude),
        cmocka_unit_test(test_parse_codex),
        cmocka_unit_test(test_parse_gemini),
        cmocka_unit_test(test_parse_opencode_aider_copilot),
        cmocka_unit_test(test_transient_signatures),
        cmocka_unit_test(test_command_lines),
        cmocka_unit_test(test_ok_every_preset),
        cmocka_unit_test(test_generic_prompt_and_composition),
        cmocka_unit_test(test_stall_kills_group),
        cmocka_unit_test(test_exit_with_grandchild_holding_pipes),
        cmocka_unit_test(test_turn_timeout),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_crash_is_transient),
        cmocka_unit_test(test_tool_errors),
        cmocka_unit_test(test_flood_is_bounded),
        cmocka_unit_test(test_many_lines),
        cmocka_unit_test(test_long_json_lines),
        cmocka_unit_test(test_env_allow_list),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_check_and_path_lookup),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
