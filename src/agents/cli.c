/*
 * cli.c - the cli agent adapter: a coding CLI (Claude Code, Codex, Gemini CLI,
 * Copilot CLI, aider, opencode, or any program) run as a child process for one turn,
 * its output streamed into events and parsed into final text, tokens and cost.
 *
 * Command lines (api-reference.md §5; the prompt is "PROMPT", the model "M"):
 *   claude   claude -p --output-format stream-json --verbose --permission-mode acceptEdits
 *                   [--model M] [--append-system-prompt SYSTEM] ARGS -- PROMPT
 *   codex    codex exec --json --skip-git-repo-check --sandbox workspace-write [--model M]
 *                   ARGS -- PROMPT                       (stdin /dev/null)
 *   gemini   gemini -p PROMPT --output-format stream-json --approval-mode auto_edit
 *                   [--model M] ARGS
 *   copilot  copilot -p PROMPT --allow-all-tools --no-ask-user -s [--model M] ARGS
 *   aider    aider --message PROMPT --yes-always --no-pretty --no-stream [--model M] ARGS
 *   opencode opencode run --format json [--model M] ARGS -- PROMPT
 *   generic  COMMAND ARGS, where "{{prompt}}" and "{{model}}" inside ARGS are replaced;
 *            without {{prompt}} the prompt goes to stdin.
 * `command` replaces a preset's program (a command with spaces that is not a file is
 * split into words); `args` are added after the preset's flags. The prompt sent is
 * PROMPT, then a blank line and the request's context when there is one. The role
 * prompt (system) goes to claude as --append-system-prompt; every other CLI gets it
 * prepended to the prompt (followed by a blank line), having no such flag. A prompt
 * that starts with '-' is passed as --flag=PROMPT so it is not read as an option.
 * A prompt over 64 KiB is sent on stdin instead (claude and gemini read it there,
 * codex gets "-", opencode appends piped stdin, aider reads --message-file
 * /dev/stdin); copilot has no stdin form, so a prompt over 128 KiB (the kernel's
 * per-argument limit) fails the turn.
 *
 * Environment: an allow-list, never baton's whole environment (DATABASE_URL, tokens,
 * JWT secrets stay out): PATH HOME USER LOGNAME SHELL LANG LC_* TERM TZ TMPDIR, the
 * proxy variables, XDG_* and CA-bundle variables; then the preset's own prefixes
 * (see presets[] below); then the agent's api_key under the tool's key variable;
 * then the agent's `env:` entries, which win.
 *
 * Process handling (c-stack.md §5.3): the child runs in the workspace in its own
 * session and process group (UV_PROCESS_DETACHED), so kill(-pid) reaches everything
 * it started. A turn ends when the process has exited and both pipes are closed; on
 * exit the group gets SIGTERM (background leftovers would hold the pipes open), and
 * when the pipes are still open KILL_GRACE_MS later the group gets SIGKILL and the
 * pipes are abandoned. Timeouts and cancel send SIGTERM to the group, then SIGKILL
 * after KILL_GRACE_MS. Every uv handle is closed before bt_agent_run_finish.
 * The embedding program must ignore SIGPIPE (app.c does): the prompt is written to
 * the child's stdin, which the child may close early.
 *
 * Memory stays bounded by max_output however much the child writes: lines are cut
 * into 64 KiB pieces for plain-text CLIs, a JSON line longer than max_output is
 * skipped, the kept output stops at max_output (with agent.c's marker) and output
 * events stop there too.
 *
 * Output formats (parsed line by line, see bt_cli_parser in cli.h): claude's
 * stream-json result event gives the final text, usage and total_cost_usd; codex's
 * last agent_message and turn.completed usage (no cost); gemini's assistant messages
 * and result stats (or the single --output-format json object); opencode's text parts
 * of its last step and step_finish tokens and cost; aider's "Tokens: ... Cost: ..."
 * lines; copilot and generic programs: stdout is the answer. tokens_in counts every
 * prompt token, cached or not (claude and opencode report cache reads and writes
 * apart, so they are added). A tool's own cost (> 0) is reported as such; otherwise
 * agent.c prices the tokens.
 *
 * Availability (check): the program is looked up on the agent's PATH; a preset's
 * program then has to answer `PROGRAM --version` within 5 s ("claude 2.1.197
 * (/usr/bin/claude)"); a generic program is only looked up.
 *
 * Error classes: exit 0 without a tool-reported error is success. A program that
 * cannot be found or started is permanent; death by a signal baton did not send is
 * transient; a non-zero exit or a tool-reported error is transient when its text
 * matches bt_cli_error_is_transient, else permanent.
 */
#include "agents/cli.h"

#include "agents/agent_impl.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static const int64_t KILL_GRACE_MS = 2000;         /* SIGTERM -> SIGKILL, and pipes after exit */
static const int64_t CHECK_TIMEOUT_MS = 5000;      /* `PROGRAM --version` */
static const size_t STDIN_PROMPT_MIN = 64 << 10;   /* longer prompts go to stdin */
static const size_t ARG_MAX_ONE = (128 << 10) - 1; /* Linux MAX_ARG_STRLEN, less the NUL */
static const size_t TEXT_CHUNK = 64 << 10;         /* plain-text lines are cut at this size */
static const size_t TAIL_MAX = 8 << 10;            /* stderr / stdout kept for error messages */
static const size_t DETAIL_MAX = 200;              /* tool event detail */

/* ---- presets ---- */

typedef struct preset_info {
    const char *name;
    const char *program;
    const char *install;          /* how to get the program */
    const char *const *env_allow; /* NULL-terminated; an entry ending in '_' is a prefix */
    const char *const *key_vars;  /* where api_key goes; NULL-terminated; may be NULL */
} preset_info;

static const char *const env_base[] = {"PATH",
                                       "HOME",
                                       "USER",
                                       "LOGNAME",
                                       "SHELL",
                                       "LANG",
                                       "LC_",
                                       "TERM",
                                       "TZ",
                                       "TMPDIR",
                                       "HTTP_PROXY",
                                       "HTTPS_PROXY",
                                       "NO_PROXY",
                                       "ALL_PROXY",
                                       "http_proxy",
                                       "https_proxy",
                                       "no_proxy",
                                       "all_proxy",
                                       "XDG_",
                                       "SSL_CERT_FILE",
                                       "SSL_CERT_DIR",
                                       "NODE_EXTRA_CA_CERTS",
                                       NULL};
static const char *const env_claude[] = {"ANTHROPIC_", "CLAUDE_",        "DISABLE_",
                                         "IS_SANDBOX", "API_TIMEOUT_MS", NULL};
static const char *const env_codex[] = {"OPENAI_", "CODEX_", NULL};
static const char *const env_gemini[] = {"GEMINI_", "GOOGLE_", NULL};
static const char *const env_copilot[] = {"COPILOT_", "GH_TOKEN", "GITHUB_TOKEN", NULL};
static const char *const env_aider[] = {
    "AIDER_",           "OPENAI_",      "ANTHROPIC_",      "GEMINI_API_KEY", "OPENROUTER_API_KEY",
    "DEEPSEEK_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "XAI_API_KEY",    NULL};
static const char *const env_opencode[] = {"OPENCODE_", "ANTHROPIC_",  "OPENAI_",       "GEMINI_",
                                           "GOOGLE_",   "OPENROUTER_", "GROQ_",         "XAI_",
                                           "DEEPSEEK_", "MISTRAL_",    "AZURE_OPENAI_", NULL};
static const char *const env_none[] = {NULL};

static const char *const key_claude[] = {"ANTHROPIC_API_KEY", NULL};
static const char *const key_codex[] = {"CODEX_API_KEY", "OPENAI_API_KEY", NULL};
static const char *const key_gemini[] = {"GEMINI_API_KEY", NULL};
static const char *const key_copilot[] = {"COPILOT_GITHUB_TOKEN", NULL};

static const preset_info presets[] = {
    [BT_CLI_GENERIC] = {"generic", NULL, NULL, env_none, NULL},
    [BT_CLI_CLAUDE] = {"claude", "claude", "npm install -g @anthropic-ai/claude-code", env_claude,
                       key_claude},
    [BT_CLI_CODEX] = {"codex", "codex", "npm install -g @openai/codex", env_codex, key_codex},
    [BT_CLI_GEMINI] = {"gemini", "gemini", "npm install -g @google/gemini-cli", env_gemini,
                       key_gemini},
    [BT_CLI_COPILOT] = {"copilot", "copilot", "npm install -g @github/copilot", env_copilot,
                        key_copilot},
    [BT_CLI_AIDER] = {"aider", "aider", "python3 -m pip install aider-install && aider-install",
                      env_aider, NULL},
    [BT_CLI_OPENCODE] = {"opencode", "opencode", "npm install -g opencode-ai", env_opencode, NULL},
};
#define NPRESETS (sizeof presets / sizeof presets[0])

int bt_cli_preset_from_name(const char *name, bt_cli_preset *out, bt_error *err)
{
    *out = BT_CLI_GENERIC;
    if (!name || !*name)
        return 0;
    for (size_t i = 1; i < NPRESETS; i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *out = (bt_cli_preset)i;
            return 0;
        }
    }
    return bt_errorf(err, BT_EINVAL,
                     "unknown CLI preset '%s' (claude, codex, gemini, copilot, aider, opencode)",
                     name);
}

const char *bt_cli_preset_name(bt_cli_preset p)
{
    return (size_t)p < NPRESETS ? presets[p].name : "generic";
}

const char *bt_cli_preset_program(bt_cli_preset p)
{
    return (size_t)p < NPRESETS ? presets[p].program : NULL;
}

/* aider and opencode talk to many providers; the model name says which key it needs. */
static const char *provider_key_var(bt_cli_preset p, const char *model)
{
    static const struct {
        const char *needle, *var;
    } map[] = {{"anthropic", "ANTHROPIC_API_KEY"},
               {"claude", "ANTHROPIC_API_KEY"},
               {"openrouter", "OPENROUTER_API_KEY"},
               {"gemini", "GEMINI_API_KEY"},
               {"google", "GEMINI_API_KEY"},
               {"deepseek", "DEEPSEEK_API_KEY"},
               {"groq", "GROQ_API_KEY"},
               {"mistral", "MISTRAL_API_KEY"},
               {"xai", "XAI_API_KEY"},
               {"grok", "XAI_API_KEY"}};
    for (size_t i = 0; model && i < sizeof map / sizeof map[0]; i++) {
        if (strstr(model, map[i].needle)) {
            if (p == BT_CLI_OPENCODE && strcmp(map[i].var, "GEMINI_API_KEY") == 0)
                return "GOOGLE_GENERATIVE_AI_API_KEY";
            return map[i].var;
        }
    }
    return "OPENAI_API_KEY";
}

/* ---- the command line ---- */

static void compose_prompt(bt_cli_preset p, const char *prompt, const char *system,
                           const char *context, bt_strbuf *out)
{
    if (system && *system && (p != BT_CLI_CLAUDE || strlen(system) > STDIN_PROMPT_MIN)) {
        bt_strbuf_addstr(out, system);
        bt_strbuf_addstr(out, "\n\n");
    }
    bt_strbuf_addstr(out, prompt ? prompt : "");
    if (context && *context) {
        bt_strbuf_addstr(out, "\n\n");
        bt_strbuf_addstr(out, context);
    }
}

/* Push "-p", PROMPT, or "--prompt=PROMPT" when the prompt looks like an option. */
static void push_valued(bt_strvec *v, const char *flag, const char *longflag, const char *val)
{
    if (val[0] == '-') {
        bt_strvec_pushf(v, "%s=%s", longflag, val);
    } else {
        bt_strvec_push(v, flag);
        bt_strvec_push(v, val);
    }
}

static char *replace_all(const char *s, const char *pat, const char *with, int *hit)
{
    bt_strbuf b = BT_STRBUF_INIT;
    size_t pl = strlen(pat);
    const char *q;
    while ((q = strstr(s, pat)) != NULL) {
        bt_strbuf_add(&b, s, (size_t)(q - s));
        bt_strbuf_addstr(&b, with);
        s = q + pl;
        *hit = 1;
    }
    bt_strbuf_addstr(&b, s);
    return bt_strbuf_detach(&b, NULL);
}

static void push_program(bt_strvec *argv, const bt_config_agent *cfg, bt_cli_preset p)
{
    const char *cmd = cfg->command;
    if (!cmd || !*cmd) {
        bt_strvec_push(argv, presets[p].program);
        return;
    }
    if (strpbrk(cmd, " \t") && access(cmd, F_OK) != 0)
        bt_strvec_split(argv, cmd, ' ');
    else
        bt_strvec_push(argv, cmd);
}

int bt_cli_command_build(const bt_config_agent *cfg, const char *prompt, const char *system,
                         const char *context, bt_cli_command *out, bt_error *err)
{
    memset(out, 0, sizeof *out);
    bt_cli_preset p;
    int rc = bt_cli_preset_from_name(cfg->preset, &p, err);
    if (rc < 0)
        return rc;
    if (p == BT_CLI_GENERIC && (!cfg->command || !*cfg->command))
        return bt_errorf(err, BT_EINVAL, "agent '%s' has neither a command nor a preset",
                         cfg->name ? cfg->name : "?");
    bt_strbuf full = BT_STRBUF_INIT;
    compose_prompt(p, prompt, system, context, &full);
    const char *pr = bt_strbuf_cstr(&full);
    size_t plen = full.len;
    int to_stdin = plen > STDIN_PROMPT_MIN;
    const char *model = cfg->model && *cfg->model ? cfg->model : NULL;
    bt_strvec *v = &out->argv;
    push_program(v, cfg, p);

    switch (p) {
    case BT_CLI_CLAUDE:
        bt_strvec_push(v, "-p");
        bt_strvec_push(v, "--output-format");
        bt_strvec_push(v, "stream-json");
        bt_strvec_push(v, "--verbose");
        bt_strvec_push(v, "--permission-mode");
        bt_strvec_push(v, "acceptEdits");
        break;
    case BT_CLI_CODEX:
        bt_strvec_push(v, "exec");
        bt_strvec_push(v, "--json");
        bt_strvec_push(v, "--skip-git-repo-check");
        bt_strvec_push(v, "--sandbox");
        bt_strvec_push(v, "workspace-write");
        break;
    case BT_CLI_GEMINI:
        if (!to_stdin)
            push_valued(v, "-p", "--prompt", pr);
        bt_strvec_push(v, "--output-format");
        bt_strvec_push(v, "stream-json");
        bt_strvec_push(v, "--approval-mode");
        bt_strvec_push(v, "auto_edit");
        break;
    case BT_CLI_COPILOT:
        if (plen > ARG_MAX_ONE) {
            bt_strbuf_release(&full);
            bt_strvec_clear(v);
            return bt_errorf(err, BT_ETOOBIG,
                             "the prompt (%zu bytes) is too long for copilot, which takes it "
                             "only as an argument (at most %zu bytes)",
                             plen, ARG_MAX_ONE);
        }
        push_valued(v, "-p", "--prompt", pr);
        bt_strvec_push(v, "--allow-all-tools");
        bt_strvec_push(v, "--no-ask-user");
        bt_strvec_push(v, "-s");
        to_stdin = 0;
        break;
    case BT_CLI_AIDER:
        if (to_stdin) {
            bt_strvec_push(v, "--message-file");
            bt_strvec_push(v, "/dev/stdin");
        } else {
            push_valued(v, "--message", "--message", pr);
        }
        bt_strvec_push(v, "--yes-always");
        bt_strvec_push(v, "--no-pretty");
        bt_strvec_push(v, "--no-stream");
        break;
    case BT_CLI_OPENCODE:
        bt_strvec_push(v, "run");
        bt_strvec_push(v, "--format");
        bt_strvec_push(v, "json");
        break;
    case BT_CLI_GENERIC:
        break;
    }
    if (model && p != BT_CLI_GENERIC) {
        bt_strvec_push(v, "--model");
        bt_strvec_push(v, model);
    }
    if (p == BT_CLI_CLAUDE && system && *system && strlen(system) <= STDIN_PROMPT_MIN) {
        bt_strvec_push(v, "--append-system-prompt");
        bt_strvec_push(v, system);
    }
    int substituted = 0;
    for (size_t i = 0; i < cfg->args.len; i++) {
        if (p != BT_CLI_GENERIC) {
            bt_strvec_push(v, cfg->args.items[i]);
            continue;
        }
        int hit = 0, mhit = 0;
        char *a = replace_all(cfg->args.items[i], "{{prompt}}", pr, &hit);
        char *b = replace_all(a, "{{model}}", model ? model : "", &mhit);
        free(a);
        substituted |= hit;
        if (strlen(b) > ARG_MAX_ONE) {
            free(b);
            bt_strbuf_release(&full);
            bt_strvec_clear(v);
            return bt_errorf(err, BT_ETOOBIG,
                             "argument %zu of agent '%s' is %zu bytes with the prompt in it; "
                             "the limit is %zu (drop {{prompt}} to send the prompt on stdin)",
                             i + 1, cfg->name ? cfg->name : "?", strlen(pr), ARG_MAX_ONE);
        }
        bt_strvec_push_owned(v, b);
    }
    switch (p) {
    case BT_CLI_CLAUDE:
    case BT_CLI_OPENCODE:
        if (!to_stdin) {
            bt_strvec_push(v, "--");
            bt_strvec_push(v, pr);
        }
        break;
    case BT_CLI_CODEX:
        if (to_stdin) {
            bt_strvec_push(v, "-");
        } else {
            bt_strvec_push(v, "--");
            bt_strvec_push(v, pr);
        }
        break;
    case BT_CLI_GENERIC:
        to_stdin = !substituted;
        break;
    default:
        break;
    }
    if (to_stdin) {
        out->stdin_len = full.len;
        out->stdin_data = bt_strbuf_detach(&full, NULL);
    }
    bt_strbuf_release(&full);
    return 0;
}

void bt_cli_command_release(bt_cli_command *c)
{
    if (!c)
        return;
    bt_strvec_clear(&c->argv);
    free(c->stdin_data);
    c->stdin_data = NULL;
    c->stdin_len = 0;
}

/* ---- error classes ---- */

/* A standalone number (not part of a longer run of digits or a word). */
static int has_number(const char *s, const char *num)
{
    size_t n = strlen(num);
    for (const char *q = strstr(s, num); q; q = strstr(q + 1, num)) {
        int before = q > s && isalnum((unsigned char)q[-1]);
        int after = isalnum((unsigned char)q[n]);
        if (!before && !after)
            return 1;
    }
    return 0;
}

int bt_cli_error_is_transient(const char *text)
{
    if (!text || !*text)
        return 0;
    bt_strbuf low = BT_STRBUF_INIT;
    for (const char *q = text; *q; q++)
        bt_strbuf_addch(&low, (char)tolower((unsigned char)*q));
    const char *s = bt_strbuf_cstr(&low);
    static const char *const permanent[] = {"insufficient_quota", "exceeded your current quota",
                                            "quota exceeded",     "credit balance",
                                            "credit_balance",     "billing",
                                            "spend_limit",        "spend limit"};
    static const char *const transient[] = {"rate limit",
                                            "rate_limit",
                                            "ratelimit",
                                            "too many requests",
                                            "overloaded",
                                            "internal server error",
                                            "bad gateway",
                                            "service unavailable",
                                            "gateway timeout",
                                            "temporarily unavailable",
                                            "connection refused",
                                            "connectionrefused",
                                            "connection reset",
                                            "connection failed",
                                            "connection error",
                                            "econnreset",
                                            "econnrefused",
                                            "etimedout",
                                            "socket hang up",
                                            "unable to connect",
                                            "network",
                                            "timed out"};
    static const char *const codes[] = {"429", "529", "500", "502", "503", "504", "408"};
    int r = 0;
    for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++)
        if (strstr(s, permanent[i]))
            goto out;
    for (size_t i = 0; !r && i < sizeof transient / sizeof transient[0]; i++)
        r = strstr(s, transient[i]) != NULL;
    for (size_t i = 0; !r && i < sizeof codes / sizeof codes[0]; i++)
        r = has_number(s, codes[i]);
out:
    bt_strbuf_release(&low);
    return r;
}

/* ---- the output parser ---- */

struct bt_cli_parser {
    bt_cli_preset preset;
    size_t max_text;
    bt_cli_parser_cb cb;
    bt_strbuf scratch;
    bt_strbuf text; /* the final answer */
    int has_text;
    int step_fresh; /* opencode: a step began; its first text replaces the answer */
    int64_t in, out;
    int has_usage;
    double cost;
    int is_error;
    bt_strbuf error, model;
    bt_strbuf doc; /* gemini --output-format json: the whole (pretty-printed) document */
    int doc_over, streaming;
    int last_nl; /* the last text emitted ended with a newline */
};

bt_cli_parser *bt_cli_parser_new(bt_cli_preset p, size_t max_text, const bt_cli_parser_cb *cb)
{
    bt_cli_parser *ps = bt_xcalloc(1, sizeof *ps);
    ps->preset = p;
    ps->max_text = max_text ? max_text : BT_AGENT_DEFAULT_MAX_OUTPUT;
    if (cb)
        ps->cb = *cb;
    ps->last_nl = 1;
    return ps;
}

void bt_cli_parser_free(bt_cli_parser *p)
{
    if (!p)
        return;
    bt_strbuf_release(&p->scratch);
    bt_strbuf_release(&p->text);
    bt_strbuf_release(&p->error);
    bt_strbuf_release(&p->model);
    bt_strbuf_release(&p->doc);
    free(p);
}

static void emit_text(bt_cli_parser *p, const char *s, size_t n, int newline)
{
    if (!n && !newline)
        return;
    if (newline && (n == 0 || s[n - 1] != '\n')) {
        bt_strbuf_setlen(&p->scratch, 0);
        bt_strbuf_add(&p->scratch, s, n);
        bt_strbuf_addch(&p->scratch, '\n');
        s = p->scratch.buf;
        n = p->scratch.len;
    }
    p->last_nl = s[n - 1] == '\n';
    if (p->cb.text)
        p->cb.text(p->cb.ud, s, n);
}

static void text_add(bt_cli_parser *p, const char *s, size_t n)
{
    size_t room = p->max_text > p->text.len ? p->max_text - p->text.len : 0;
    bt_strbuf_add(&p->text, s, n < room ? n : room);
    p->has_text = 1;
}

static void text_set(bt_cli_parser *p, const char *s, size_t n)
{
    bt_strbuf_setlen(&p->text, 0);
    text_add(p, s, n);
}

static void set_error(bt_cli_parser *p, const char *msg)
{
    bt_strbuf_setlen(&p->error, 0);
    bt_strbuf_addstr(&p->error, msg ? msg : "");
}

static void set_usage(bt_cli_parser *p, int64_t in, int64_t out)
{
    int changed = !p->has_usage || in != p->in || out != p->out;
    p->in = in;
    p->out = out;
    p->has_usage = 1;
    if (changed && p->cb.usage)
        p->cb.usage(p->cb.ud, in, out);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static void note(bt_cli_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(bt_cli_parser *p, const char *fmt, ...)
{
    if (!p->cb.note)
        return;
    bt_strbuf s = BT_STRBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf_vaddf(&s, fmt, ap);
    va_end(ap);
    p->cb.note(p->cb.ud, bt_strbuf_cstr(&s));
    bt_strbuf_release(&s);
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return 0;
}

static double jnum(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

/* A one-line summary of a tool call's input: the path or command when there is one,
 * else the compact JSON, cut at DETAIL_MAX bytes. */
static void tool_detail(const json_t *input, bt_strbuf *out)
{
    static const char *const keys[] = {"file_path",     "filePath",   "path", "command",
                                       "cmd",           "pattern",    "url",  "query",
                                       "absolute_path", "description"};
    const char *s = NULL;
    char *dump = NULL;
    if (json_is_string(input))
        s = json_string_value(input);
    for (size_t i = 0; !s && json_is_object(input) && i < sizeof keys / sizeof keys[0]; i++)
        s = jstr(input, keys[i]);
    if (!s && input) {
        dump = json_dumps(input, JSON_COMPACT);
        s = dump;
    }
    if (s) {
        size_t n = strlen(s);
        if (n > DETAIL_MAX) {
            n = DETAIL_MAX;
            while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--;
        }
        bt_strbuf_add(out, s, n);
        if (n < strlen(s))
            bt_strbuf_addstr(out, "...");
    }
    free(dump);
}

static void tool(bt_cli_parser *p, const char *name, const json_t *input)
{
    if (!p->cb.tool)
        return;
    bt_strbuf d = BT_STRBUF_INIT;
    tool_detail(input, &d);
    p->cb.tool(p->cb.ud, name && *name ? name : "tool", bt_strbuf_cstr(&d));
    bt_strbuf_release(&d);
}

/* Claude Code --output-format stream-json (or json: the result object alone). */
static void parse_claude(bt_cli_parser *p, const json_t *o, const char *type)
{
    if (strcmp(type, "system") == 0) {
        const char *m = jstr(o, "model");
        if (m && !p->model.len)
            bt_strbuf_addstr(&p->model, m);
    } else if (strcmp(type, "assistant") == 0) {
        const json_t *content = json_object_get(json_object_get(o, "message"), "content");
        size_t i;
        const json_t *blk;
        json_array_foreach(content, i, blk)
        {
            const char *bt = jstr(blk, "type");
            if (!bt)
                continue;
            if (strcmp(bt, "text") == 0) {
                const char *t = jstr(blk, "text");
                if (t)
                    emit_text(p, t, strlen(t), 1);
            } else if (strcmp(bt, "tool_use") == 0) {
                tool(p, jstr(blk, "name"), json_object_get(blk, "input"));
            }
        }
    } else if (strcmp(type, "result") == 0) {
        const char *res = jstr(o, "result");
        const char *sub = jstr(o, "subtype");
        int err =
            json_is_true(json_object_get(o, "is_error")) || (sub && strncmp(sub, "error", 5) == 0);
        const json_t *u = json_object_get(o, "usage");
        if (json_is_object(u))
            set_usage(p,
                      jint(u, "input_tokens") + jint(u, "cache_creation_input_tokens") +
                          jint(u, "cache_read_input_tokens"),
                      jint(u, "output_tokens"));
        double cost = jnum(o, "total_cost_usd");
        if (cost > 0)
            p->cost = cost;
        if (err) {
            p->is_error = 1;
            bt_strbuf_setlen(&p->error, 0);
            if (res && *res)
                bt_strbuf_addstr(&p->error, res);
            else
                bt_strbuf_addf(&p->error, "claude stopped: %s", sub ? sub : "error");
            int64_t st = jint(o, "api_error_status");
            if (st > 0)
                bt_strbuf_addf(&p->error, " (HTTP %lld)", (long long)st);
        } else if (res) {
            text_set(p, res, strlen(res));
        }
    }
}

/* codex exec --json */
static void parse_codex(bt_cli_parser *p, const json_t *o, const char *type)
{
    const json_t *item = json_object_get(o, "item");
    const char *it = jstr(item, "type");
    if (strcmp(type, "item.started") == 0 && it) {
        if (strcmp(it, "command_execution") == 0)
            tool(p, "shell", json_object_get(item, "command"));
    } else if (strcmp(type, "item.completed") == 0 && it) {
        if (strcmp(it, "agent_message") == 0) {
            const char *t = jstr(item, "text");
            if (t) {
                emit_text(p, t, strlen(t), 1);
                text_set(p, t, strlen(t));
            }
        } else if (strcmp(it, "file_change") == 0) {
            bt_strbuf d = BT_STRBUF_INIT;
            size_t i;
            const json_t *c;
            json_array_foreach(json_object_get(item, "changes"), i, c)
            {
                bt_strbuf_addf(&d, "%s%s %s", i ? ", " : "", jstr(c, "kind") ? jstr(c, "kind") : "",
                               jstr(c, "path") ? jstr(c, "path") : "");
            }
            json_t *s = json_string(bt_strbuf_cstr(&d));
            tool(p, "file_change", s);
            json_decref(s);
            bt_strbuf_release(&d);
        } else if (strcmp(it, "mcp_tool_call") == 0) {
            bt_strbuf n = BT_STRBUF_INIT;
            bt_strbuf_addf(&n, "%s.%s", jstr(item, "server") ? jstr(item, "server") : "mcp",
                           jstr(item, "tool") ? jstr(item, "tool") : "tool");
            tool(p, bt_strbuf_cstr(&n), json_object_get(item, "arguments"));
            bt_strbuf_release(&n);
        } else if (strcmp(it, "web_search") == 0) {
            tool(p, "web_search", json_object_get(item, "query"));
        } else if (strcmp(it, "error") == 0) {
            note(p, "codex: %s", nz(jstr(item, "message")));
        }
    } else if (strcmp(type, "turn.completed") == 0) {
        const json_t *u = json_object_get(o, "usage");
        set_usage(p, p->in + jint(u, "input_tokens"), p->out + jint(u, "output_tokens"));
    } else if (strcmp(type, "turn.failed") == 0) {
        p->is_error = 1;
        const char *m = jstr(json_object_get(o, "error"), "message");
        if (m || !p->error.len)
            set_error(p, m ? m : "the turn failed");
    } else if (strcmp(type, "error") == 0) {
        const char *m = jstr(o, "message");
        if (m) {
            set_error(p, m);
            note(p, "codex: %s", m);
        }
    }
}

static void gemini_error(bt_cli_parser *p, const json_t *e, const char *dflt)
{
    const char *m = jstr(e, "message");
    bt_strbuf_setlen(&p->error, 0);
    bt_strbuf_addstr(&p->error, m ? m : dflt);
    const json_t *code = json_object_get(e, "code");
    if (json_is_integer(code))
        bt_strbuf_addf(&p->error, " (code %lld)", (long long)json_integer_value(code));
    else if (json_is_string(code))
        bt_strbuf_addf(&p->error, " (%s)", json_string_value(code));
}

/* gemini --output-format stream-json */
static void parse_gemini(bt_cli_parser *p, const json_t *o, const char *type)
{
    if (strcmp(type, "init") == 0) {
        p->streaming = 1;
        const char *m = jstr(o, "model");
        if (m && !p->model.len)
            bt_strbuf_addstr(&p->model, m);
    } else if (strcmp(type, "message") == 0) {
        p->streaming = 1;
        const char *role = jstr(o, "role"), *c = jstr(o, "content");
        if (!role || strcmp(role, "assistant") != 0 || !c)
            return;
        int delta = json_is_true(json_object_get(o, "delta"));
        if (!delta && p->text.len && p->text.buf[p->text.len - 1] != '\n')
            text_add(p, "\n", 1);
        text_add(p, c, strlen(c));
        emit_text(p, c, strlen(c), !delta);
    } else if (strcmp(type, "tool_use") == 0) {
        tool(p, jstr(o, "tool_name"), json_object_get(o, "parameters"));
    } else if (strcmp(type, "tool_result") == 0) {
        if (jstr(o, "status") && strcmp(jstr(o, "status"), "error") == 0)
            note(p, "gemini: tool %s failed: %s", nz(jstr(o, "tool_id")),
                 nz(jstr(json_object_get(o, "error"), "message")));
    } else if (strcmp(type, "error") == 0) {
        const char *m = jstr(o, "message");
        const char *sev = jstr(o, "severity");
        if (m && sev && strcmp(sev, "error") == 0)
            set_error(p, m);
        if (m)
            note(p, "gemini: %s", m);
    } else if (strcmp(type, "result") == 0) {
        p->streaming = 1;
        if (!p->last_nl)
            emit_text(p, "\n", 1, 0);
        const json_t *st = json_object_get(o, "stats");
        if (json_is_object(st))
            set_usage(p, jint(st, "input_tokens"), jint(st, "output_tokens"));
        const char *status = jstr(o, "status");
        if (status && strcmp(status, "error") == 0) {
            p->is_error = 1;
            gemini_error(p, json_object_get(o, "error"), "gemini reported an error");
        }
    }
}

/* gemini --output-format json: one pretty-printed object, read at the end. */
static void gemini_document(bt_cli_parser *p)
{
    json_t *o = json_loadb(p->doc.buf, p->doc.len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    const char *r = jstr(o, "response");
    if (r)
        text_set(p, r, strlen(r));
    const json_t *models = json_object_get(json_object_get(o, "stats"), "models");
    if (json_is_object(models)) {
        int64_t in = 0, out = 0;
        const char *name;
        const json_t *m;
        json_object_foreach((json_t *)models, name, m)
        {
            const json_t *t = json_object_get(m, "tokens");
            in += jint(t, "prompt");
            out += jint(t, "candidates");
            if (!p->model.len)
                bt_strbuf_addstr(&p->model, name);
        }
        set_usage(p, in, out);
    }
    const json_t *e = json_object_get(o, "error");
    if (json_is_object(e)) {
        p->is_error = 1;
        gemini_error(p, e, "gemini reported an error");
    }
    json_decref(o);
}

/* opencode run --format json */
static void parse_opencode(bt_cli_parser *p, const json_t *o, const char *type)
{
    const json_t *part = json_object_get(o, "part");
    if (strcmp(type, "step_start") == 0) {
        p->step_fresh = 1;
    } else if (strcmp(type, "text") == 0) {
        const char *t = jstr(part, "text");
        if (!t)
            return;
        if (p->step_fresh) {
            bt_strbuf_setlen(&p->text, 0);
            p->step_fresh = 0;
        } else if (p->text.len) {
            text_add(p, "\n", 1);
        }
        text_add(p, t, strlen(t));
        emit_text(p, t, strlen(t), 1);
    } else if (strcmp(type, "tool_use") == 0) {
        const json_t *state = json_object_get(part, "state");
        tool(p, jstr(part, "tool"), json_object_get(state, "input"));
        if (jstr(state, "status") && strcmp(jstr(state, "status"), "error") == 0)
            note(p, "opencode: tool %s failed: %s", nz(jstr(part, "tool")),
                 nz(jstr(state, "error")));
    } else if (strcmp(type, "step_finish") == 0) {
        const json_t *t = json_object_get(part, "tokens");
        const json_t *c = json_object_get(t, "cache");
        set_usage(p, p->in + jint(t, "input") + jint(c, "read") + jint(c, "write"),
                  p->out + jint(t, "output") + jint(t, "reasoning"));
        p->cost += jnum(part, "cost");
    } else if (strcmp(type, "error") == 0) {
        const json_t *e = json_object_get(o, "error");
        const json_t *d = json_object_get(e, "data");
        const char *m = jstr(d, "message");
        if (!m)
            m = jstr(e, "message");
        if (!m)
            m = jstr(e, "name");
        p->is_error = 1;
        bt_strbuf_setlen(&p->error, 0);
        bt_strbuf_addstr(&p->error, m ? m : "opencode reported an error");
        int64_t st = jint(d, "statusCode");
        if (st > 0)
            bt_strbuf_addf(&p->error, " (HTTP %lld)", (long long)st);
    }
}

/* "1.2k" -> 1200, "12k" -> 12000, "345" -> 345, "1.5M" -> 1500000. */
static int parse_count(const char *s, int64_t *v, const char **end)
{
    char *e;
    double d = strtod(s, &e);
    if (e == s || d < 0)
        return -1;
    if (*e == 'k' || *e == 'K') {
        d *= 1e3;
        e++;
    } else if (*e == 'M' || *e == 'm') {
        d *= 1e6;
        e++;
    }
    *v = (int64_t)(d + 0.5);
    *end = e;
    return 0;
}

/* aider: "Tokens: 1.2k sent, 345 received. Cost: $0.01 message, $0.02 session."
 * (with ", N cache write" / ", N cache hit" between sent and received). */
static void parse_aider_line(bt_cli_parser *p, const char *line)
{
    const char *t = strstr(line, "Tokens: ");
    if (!t)
        return;
    int64_t sent, recv;
    const char *e;
    if (parse_count(t + 8, &sent, &e) < 0 || strncmp(e, " sent", 5) != 0)
        return;
    const char *r = strstr(e, " received");
    if (!r)
        return;
    const char *q = r;
    while (q > e && q[-1] != ' ')
        q--;
    if (parse_count(q, &recv, &e) < 0 || e != r)
        return;
    set_usage(p, p->in + sent, p->out + recv);
    const char *c = strstr(r, "Cost: $");
    if (c) {
        const char *sess = strstr(c, " session");
        const char *d = sess;
        while (d && d > c && d[-1] != '$')
            d--;
        if (sess && d > c) {
            double v = strtod(d, NULL);
            if (v > 0)
                p->cost = v;
        }
    }
}

static int json_format(bt_cli_preset p)
{
    return p == BT_CLI_CLAUDE || p == BT_CLI_CODEX || p == BT_CLI_GEMINI || p == BT_CLI_OPENCODE;
}

void bt_cli_parser_feed_line(bt_cli_parser *p, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (p->preset == BT_CLI_GEMINI && !p->streaming && !p->doc_over) {
        if (p->doc.len + len + 1 > p->max_text) {
            p->doc_over = 1;
            bt_strbuf_release(&p->doc);
        } else {
            bt_strbuf_add(&p->doc, line, len);
            bt_strbuf_addch(&p->doc, '\n');
        }
    }
    if (json_format(p->preset)) {
        size_t i = 0;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        json_t *o = i < len && line[i] == '{' ? json_loadb(line, len, 0, NULL) : NULL;
        const char *type = jstr(o, "type");
        if (type) {
            switch (p->preset) {
            case BT_CLI_CLAUDE:
                parse_claude(p, o, type);
                break;
            case BT_CLI_CODEX:
                parse_codex(p, o, type);
                break;
            case BT_CLI_GEMINI:
                parse_gemini(p, o, type);
                break;
            default:
                parse_opencode(p, o, type);
                break;
            }
            json_decref(o);
            return;
        }
        int was_json = o != NULL;
        json_decref(o);
        if (was_json) /* JSON without a type: nothing for a person */
            return;
    }
    emit_text(p, line, len, 1);
    if (p->preset == BT_CLI_AIDER && len < 4096) {
        bt_strbuf_setlen(&p->scratch, 0);
        bt_strbuf_add(&p->scratch, line, len);
        parse_aider_line(p, bt_strbuf_cstr(&p->scratch));
    }
}

void bt_cli_parser_finish(bt_cli_parser *p, bt_cli_outcome *out)
{
    if (p->preset == BT_CLI_GEMINI && !p->streaming && !p->doc_over && p->doc.len)
        gemini_document(p);
    memset(out, 0, sizeof *out);
    out->has_text = p->has_text;
    out->text = bt_strbuf_cstr(&p->text);
    out->text_len = p->text.len;
    out->has_usage = p->has_usage;
    out->tokens_in = p->in;
    out->tokens_out = p->out;
    out->has_cost = p->cost > 0;
    out->cost_usd = p->cost;
    out->is_error = p->is_error;
    out->error = bt_strbuf_cstr(&p->error);
    out->model = bt_strbuf_cstr(&p->model);
}

/* ---- environment ---- */

static int env_match(const char *entry, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++) {
        size_t n = strlen(list[i]);
        if (list[i][n - 1] == '_') {
            if (strncmp(entry, list[i], n) == 0)
                return 1;
        } else if (strncmp(entry, list[i], n) == 0 && entry[n] == '=') {
            return 1;
        }
    }
    return 0;
}

static void env_set(bt_strvec *env, const char *key, size_t klen, const char *entry)
{
    for (size_t i = 0; i < env->len; i++) {
        if (strncmp(env->items[i], key, klen) == 0 && env->items[i][klen] == '=') {
            free(env->items[i]);
            env->items[i] = bt_xstrdup(entry);
            return;
        }
    }
    bt_strvec_push(env, entry);
}

static void env_setkv(bt_strvec *env, const char *key, const char *val)
{
    bt_strbuf e = BT_STRBUF_INIT;
    bt_strbuf_addf(&e, "%s=%s", key, val);
    env_set(env, key, strlen(key), e.buf);
    bt_strbuf_release(&e);
}

static void env_build(const bt_agent *a, bt_cli_preset p, bt_strvec *env)
{
    for (char *const *e = environ; e && *e; e++)
        if (strchr(*e, '=') && (env_match(*e, env_base) || env_match(*e, presets[p].env_allow)))
            bt_strvec_push(env, *e);
    const char *key = a->cfg.api_key;
    if (key && *key) {
        if (presets[p].key_vars) {
            for (size_t i = 0; presets[p].key_vars[i]; i++)
                env_setkv(env, presets[p].key_vars[i], key);
        } else if (p == BT_CLI_AIDER || p == BT_CLI_OPENCODE) {
            env_setkv(env, provider_key_var(p, a->cfg.model), key);
        }
    }
    for (size_t i = 0; i < a->cfg.env.len; i++) {
        const char *kv = a->cfg.env.items[i];
        const char *eq = strchr(kv, '=');
        if (eq && eq > kv)
            env_set(env, kv, (size_t)(eq - kv), kv);
    }
}

static int is_exec_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Resolve prog (a name looked up on path, or a path) to an absolute file name. */
static int resolve_program(const char *prog, const char *path, bt_strbuf *out)
{
    bt_strbuf_setlen(out, 0);
    if (strchr(prog, '/')) {
        if (prog[0] != '/') {
            char cwd[4096];
            if (getcwd(cwd, sizeof cwd))
                bt_strbuf_addf(out, "%s/", cwd);
        }
        bt_strbuf_addstr(out, prog);
        return is_exec_file(out->buf) ? 0 : -1;
    }
    const char *s = path ? path : "/usr/local/bin:/usr/bin:/bin";
    for (;;) {
        const char *colon = strchr(s, ':');
        size_t n = colon ? (size_t)(colon - s) : strlen(s);
        bt_strbuf_setlen(out, 0);
        if (n == 0) {
            char cwd[4096];
            bt_strbuf_addstr(out, getcwd(cwd, sizeof cwd) ? cwd : ".");
        } else {
            bt_strbuf_add(out, s, n);
        }
        bt_strbuf_addf(out, "/%s", prog);
        if (is_exec_file(out->buf))
            return 0;
        if (!colon)
            break;
        s = colon + 1;
    }
    bt_strbuf_setlen(out, 0);
    return -1;
}

/* What to call the program in messages: the preset, else the command's basename. */
static const char *display_name(bt_cli_preset p, const char *prog)
{
    if (p != BT_CLI_GENERIC)
        return presets[p].name;
    const char *slash = strrchr(prog, '/');
    return slash ? slash + 1 : prog;
}

static void not_found_message(bt_strbuf *m, const bt_agent *a, bt_cli_preset p, const char *prog,
                              const char *name)
{
    if (strchr(prog, '/'))
        bt_strbuf_addf(m, "%s: %s is not an executable file", name, prog);
    else
        bt_strbuf_addf(m, "%s: not found on PATH", name);
    if (presets[p].install)
        bt_strbuf_addf(m, " (install it: %s, or set agents.%s.command)", presets[p].install,
                       a->cfg.name);
    else
        bt_strbuf_addf(m, " (check agents.%s.command)", a->cfg.name);
}

/* ---- one turn ---- */

typedef enum line_kind { LINE_PART, LINE_WHOLE, LINE_DROPPED } line_kind;

typedef struct cli_run cli_run;
typedef void (*line_fn)(cli_run *cr, const char *line, size_t len, line_kind kind);

/* Splits a byte stream into lines within a memory bound. */
typedef struct linebuf {
    bt_strbuf buf;
    size_t cap;   /* longest whole line kept (JSON formats) */
    size_t chunk; /* > 0: hand out partial lines of this size instead (plain text) */
    int skipping;
    size_t skipped;
} linebuf;

struct cli_run {
    bt_agent_run *run;
    bt_cli_preset preset;
    const char *name; /* display name, points into name_buf */
    char name_buf[128];
    uv_loop_t *loop;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t turn_timer, stall_timer, kill_timer;
    uv_write_t wreq;
    int open_handles, closing;
    int proc_init, spawned, exited, out_eof, err_eof, killing, forced;
    int64_t exit_status;
    int term_signal;
    uint64_t last_activity;
    bt_cli_parser *parser;
    linebuf out_lb, err_lb;
    bt_strbuf err_tail, out_tail;
    size_t err_emitted;
    int err_capped, out_capped;
    char *stdin_data;
    char readbuf[65536];
};

static void lb_init(linebuf *lb, size_t cap, size_t chunk)
{
    memset(lb, 0, sizeof *lb);
    lb->cap = cap;
    lb->chunk = chunk;
}

static void lb_feed(linebuf *lb, const char *data, size_t n, line_fn fn, cli_run *cr)
{
    while (n) {
        const char *nl = memchr(data, '\n', n);
        size_t seg = nl ? (size_t)(nl - data) : n;
        size_t limit = lb->chunk ? lb->chunk : lb->cap;
        if (!lb->skipping && !lb->buf.len && nl && seg <= limit) {
            fn(cr, data, seg, LINE_WHOLE); /* the common case: no copy */
        } else {
            size_t off = 0;
            while (!lb->skipping && off < seg) {
                size_t room = limit - lb->buf.len;
                size_t take = seg - off < room ? seg - off : room;
                bt_strbuf_add(&lb->buf, data + off, take);
                off += take;
                if (lb->buf.len >= limit && (off < seg || !nl)) {
                    if (lb->chunk) {
                        fn(cr, lb->buf.buf, lb->buf.len, LINE_PART);
                        bt_strbuf_setlen(&lb->buf, 0);
                    } else {
                        lb->skipping = 1;
                        lb->skipped = lb->buf.len;
                        bt_strbuf_setlen(&lb->buf, 0);
                    }
                }
            }
            if (lb->skipping)
                lb->skipped += seg - off;
            if (nl) {
                if (lb->skipping)
                    fn(cr, NULL, lb->skipped, LINE_DROPPED);
                else
                    fn(cr, bt_strbuf_cstr(&lb->buf), lb->buf.len, LINE_WHOLE);
                lb->skipping = 0;
                lb->skipped = 0;
                bt_strbuf_setlen(&lb->buf, 0);
            }
        }
        if (!nl)
            break;
        n -= seg + 1;
        data = nl + 1;
    }
}

/* End of stream: a last line without a newline. */
static void lb_flush(linebuf *lb, line_fn fn, cli_run *cr)
{
    if (lb->skipping)
        fn(cr, NULL, lb->skipped, LINE_DROPPED);
    else if (lb->buf.len)
        fn(cr, lb->buf.buf, lb->buf.len, LINE_WHOLE);
    lb->skipping = 0;
    bt_strbuf_setlen(&lb->buf, 0);
}

static void lb_release(linebuf *lb)
{
    bt_strbuf_release(&lb->buf);
}

static void tail_add(bt_strbuf *t, const char *s, size_t n)
{
    if (n > TAIL_MAX) {
        s += n - TAIL_MAX;
        n = TAIL_MAX;
    }
    bt_strbuf_add(t, s, n);
    bt_strbuf_addch(t, '\n');
    if (t->len > 2 * TAIL_MAX) {
        size_t drop = t->len - TAIL_MAX;
        memmove(t->buf, t->buf + drop, t->len - drop);
        bt_strbuf_setlen(t, t->len - drop);
    }
}

/* The last few non-empty lines of a tail, joined by "; ". */
static void tail_summary(const bt_strbuf *t, bt_strbuf *out, int max_lines)
{
    const char *s = bt_strbuf_cstr(t);
    const char *end = s + t->len;
    const char *starts[8];
    size_t lens[8];
    int n = 0;
    while (end > s && n < max_lines && n < 8) {
        while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
            end--;
        const char *b = end;
        while (b > s && b[-1] != '\n')
            b--;
        if (end > b) {
            starts[n] = b;
            lens[n] = (size_t)(end - b);
            n++;
        }
        end = b;
    }
    for (int i = n - 1; i >= 0; i--) {
        if (out->len)
            bt_strbuf_addstr(out, "; ");
        size_t l = lens[i] > 500 ? 500 : lens[i];
        bt_strbuf_add(out, starts[i], l);
    }
}

/* parser callbacks */

static void cb_text(void *ud, const char *text, size_t len)
{
    cli_run *cr = ud;
    bt_agent_run *run = cr->run;
    int was = run->truncated;
    bt_agent_run_output_add(run, text, len);
    if (!was) {
        bt_agent_run_emit(run, BT_AGENT_EV_OUTPUT, text, len);
    } else if (!cr->out_capped) {
        cr->out_capped = 1;
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "output over %zu bytes: the rest is neither kept nor streamed",
                       run->max_output);
        bt_agent_run_emit(run, BT_AGENT_EV_STATUS, m.buf, m.len);
        bt_strbuf_release(&m);
    }
}

static void cb_tool(void *ud, const char *name, const char *detail)
{
    cli_run *cr = ud;
    bt_agent_run_tool(cr->run, name, detail);
}

static void cb_usage(void *ud, int64_t in, int64_t out)
{
    cli_run *cr = ud;
    bt_agent_run_usage(cr->run, in, out);
}

static void cb_note(void *ud, const char *text)
{
    cli_run *cr = ud;
    bt_agent_run_emit(cr->run, BT_AGENT_EV_STATUS, text, strlen(text));
}

static void status(cli_run *cr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void status(cli_run *cr, const char *fmt, ...)
{
    bt_strbuf m = BT_STRBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf_vaddf(&m, fmt, ap);
    va_end(ap);
    bt_agent_run_emit(cr->run, BT_AGENT_EV_STATUS, m.buf, m.len);
    bt_strbuf_release(&m);
}

static void on_out_line(cli_run *cr, const char *line, size_t len, line_kind kind)
{
    if (kind == LINE_DROPPED) {
        status(cr, "skipped an output line of %zu bytes (longer than max_output)", len);
        return;
    }
    if (kind == LINE_WHOLE)
        tail_add(&cr->out_tail, line, len > 1024 ? 1024 : len);
    if (kind == LINE_PART)
        cb_text(cr, line, len);
    else
        bt_cli_parser_feed_line(cr->parser, line, len);
}

static void on_err_line(cli_run *cr, const char *line, size_t len, line_kind kind)
{
    bt_agent_run *run = cr->run;
    if (kind == LINE_DROPPED)
        return;
    tail_add(&cr->err_tail, line, len);
    if (cr->err_emitted + len > run->max_output) {
        if (!cr->err_capped) {
            cr->err_capped = 1;
            status(cr, "%s", "stderr over max_output: the rest is not streamed");
        }
        return;
    }
    cr->err_emitted += len + 1;
    bt_strbuf l = BT_STRBUF_INIT;
    bt_strbuf_add(&l, line, len);
    if (kind == LINE_WHOLE)
        bt_strbuf_addch(&l, '\n');
    bt_agent_run_emit(run, BT_AGENT_EV_STDERR, l.buf, l.len);
    bt_strbuf_release(&l);
}

static void kill_group(cli_run *cr, int sig)
{
    if (cr->spawned && cr->proc.pid > 0)
        kill(-cr->proc.pid, sig);
}

/* Decide the result from the exit, the parse and the tails. */
static void settle(cli_run *cr)
{
    bt_agent_run *run = cr->run;
    bt_cli_outcome o;
    bt_cli_parser_finish(cr->parser, &o);
    if (o.has_usage)
        bt_agent_run_usage(run, o.tokens_in, o.tokens_out);
    if (o.model[0])
        bt_agent_run_set_model(run, o.model);
    if (o.has_cost) {
        run->cost_usd = o.cost_usd;
        run->cost_reported = 1;
    }
    if (o.has_text && !o.is_error)
        bt_agent_run_output_set(run, o.text, o.text_len);
    if (run->failed || !cr->spawned)
        return;
    if (cr->term_signal) {
        bt_strbuf why = BT_STRBUF_INIT;
        tail_summary(&cr->err_tail, &why, 3);
        bt_agent_run_fail(run, BT_AGENT_TRANSIENT, "%s crashed with signal %d (%s)%s%s", cr->name,
                          cr->term_signal, strsignal(cr->term_signal), why.len ? ": " : "",
                          bt_strbuf_cstr(&why));
        bt_strbuf_release(&why);
        return;
    }
    if (cr->exit_status == 0 && !o.is_error)
        return;
    bt_strbuf why = BT_STRBUF_INIT;
    if (o.error[0])
        bt_strbuf_addstr(&why, o.error);
    else
        tail_summary(&cr->err_tail, &why, 3);
    if (!why.len)
        tail_summary(&cr->out_tail, &why, 3);
    bt_strbuf probe = BT_STRBUF_INIT;
    bt_strbuf_addf(&probe, "%s\n%s", o.error, bt_strbuf_cstr(&cr->err_tail));
    bt_agent_error_class cls =
        bt_cli_error_is_transient(probe.buf) ? BT_AGENT_TRANSIENT : BT_AGENT_PERMANENT;
    if (cr->exit_status != 0)
        bt_agent_run_fail(run, cls, "%s exited with status %lld%s%s", cr->name,
                          (long long)cr->exit_status, why.len ? ": " : "", bt_strbuf_cstr(&why));
    else
        bt_agent_run_fail(run, cls, "%s reported an error: %s", cr->name,
                          why.len ? why.buf : "(no message)");
    bt_strbuf_release(&probe);
    bt_strbuf_release(&why);
}

static void cli_run_free(cli_run *cr)
{
    bt_cli_parser_free(cr->parser);
    lb_release(&cr->out_lb);
    lb_release(&cr->err_lb);
    bt_strbuf_release(&cr->err_tail);
    bt_strbuf_release(&cr->out_tail);
    free(cr->stdin_data);
    free(cr);
}

static void on_handle_closed(uv_handle_t *h)
{
    cli_run *cr = h->data;
    if (--cr->open_handles > 0 || !cr->closing)
        return; /* more to come, or the stdin pipe closing early */
    bt_agent_run *run = cr->run;
    settle(cr);
    run->impl = NULL;
    cli_run_free(cr);
    bt_agent_run_finish(run);
}

static void close_handle(cli_run *cr, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    cr->open_handles++;
    uv_close(h, on_handle_closed);
}

static void close_all(cli_run *cr)
{
    if (cr->closing)
        return;
    cr->closing = 1;
    uv_timer_stop(&cr->turn_timer);
    uv_timer_stop(&cr->stall_timer);
    uv_timer_stop(&cr->kill_timer);
    /* Anything still in the group outlived the turn. The group cannot have been
     * reused yet: its pid was reaped only moments ago. */
    kill_group(cr, SIGKILL);
    cr->open_handles++; /* hold: nothing finishes before every close is queued */
    if (cr->proc_init)
        close_handle(cr, (uv_handle_t *)&cr->proc);
    close_handle(cr, (uv_handle_t *)&cr->in);
    close_handle(cr, (uv_handle_t *)&cr->out);
    close_handle(cr, (uv_handle_t *)&cr->err);
    close_handle(cr, (uv_handle_t *)&cr->turn_timer);
    close_handle(cr, (uv_handle_t *)&cr->stall_timer);
    close_handle(cr, (uv_handle_t *)&cr->kill_timer);
    cr->open_handles--; /* at least the timers are pending, so this is never the last */
}

static void maybe_done(cli_run *cr)
{
    if (cr->closing || !cr->exited || !cr->out_eof || !cr->err_eof)
        return;
    close_all(cr);
}

static void force_eof(cli_run *cr)
{
    if (!cr->out_eof) {
        uv_read_stop((uv_stream_t *)&cr->out);
        lb_flush(&cr->out_lb, on_out_line, cr);
        cr->out_eof = 1;
    }
    if (!cr->err_eof) {
        uv_read_stop((uv_stream_t *)&cr->err);
        lb_flush(&cr->err_lb, on_err_line, cr);
        cr->err_eof = 1;
    }
}

static void on_kill_timer(uv_timer_t *t)
{
    cli_run *cr = t->data;
    kill_group(cr, SIGKILL);
    if (!cr->exited)
        return; /* the exit follows the SIGKILL */
    /* Exited, but something it left behind still holds the pipes. */
    cr->forced = 1;
    force_eof(cr);
    maybe_done(cr);
}

static void terminate(cli_run *cr)
{
    uv_timer_stop(&cr->turn_timer);
    uv_timer_stop(&cr->stall_timer);
    if (cr->killing || !cr->spawned || cr->exited)
        return;
    cr->killing = 1;
    kill_group(cr, SIGTERM);
    uv_timer_start(&cr->kill_timer, on_kill_timer, (uint64_t)KILL_GRACE_MS, 0);
}

static void on_turn_timeout(uv_timer_t *t)
{
    cli_run *cr = t->data;
    char d[32];
    bt_duration_format(cr->run->timeout_ms, d);
    bt_agent_run_fail(cr->run, BT_AGENT_TIMEOUT, "timed out: the turn took longer than %s", d);
    status(cr, "killed: turn limit %s", d);
    terminate(cr);
}

static void on_stall_check(uv_timer_t *t)
{
    cli_run *cr = t->data;
    uint64_t limit = (uint64_t)cr->run->stall_timeout_ms;
    uint64_t idle = uv_now(cr->loop) - cr->last_activity;
    if (idle < limit) {
        uv_timer_start(&cr->stall_timer, on_stall_check, limit - idle, 0);
        return;
    }
    char d[32];
    bt_duration_format(cr->run->stall_timeout_ms, d);
    bt_agent_run_fail(cr->run, BT_AGENT_TIMEOUT, "stalled: no output for %s", d);
    status(cr, "killed: stalled %s", d);
    terminate(cr);
}

static void on_exit_cb(uv_process_t *p, int64_t st, int sig)
{
    cli_run *cr = p->data;
    cr->exited = 1;
    cr->exit_status = st;
    cr->term_signal = sig;
    cr->run->exit_code = sig ? -1 : (int)st;
    cr->run->term_signal = sig;
    uv_timer_stop(&cr->turn_timer);
    uv_timer_stop(&cr->stall_timer);
    /* Background processes it left in its group would keep the pipes open. */
    kill_group(cr, SIGTERM);
    if (!cr->out_eof || !cr->err_eof)
        uv_timer_start(&cr->kill_timer, on_kill_timer, (uint64_t)KILL_GRACE_MS, 0);
    maybe_done(cr);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cli_run *cr = h->data;
    buf->base = cr->readbuf;
    buf->len = sizeof cr->readbuf;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    cli_run *cr = s->data;
    int is_out = s == (uv_stream_t *)&cr->out;
    if (n > 0) {
        cr->last_activity = uv_now(cr->loop);
        if (is_out)
            lb_feed(&cr->out_lb, buf->base, (size_t)n, on_out_line, cr);
        else
            lb_feed(&cr->err_lb, buf->base, (size_t)n, on_err_line, cr);
        return;
    }
    if (n == 0)
        return;
    uv_read_stop(s);
    if (is_out) {
        lb_flush(&cr->out_lb, on_out_line, cr);
        cr->out_eof = 1;
    } else {
        lb_flush(&cr->err_lb, on_err_line, cr);
        cr->err_eof = 1;
    }
    maybe_done(cr);
}

static void on_stdin_written(uv_write_t *req, int st)
{
    (void)st; /* EPIPE when the child does not read its stdin: fine */
    cli_run *cr = req->data;
    free(cr->stdin_data);
    cr->stdin_data = NULL;
    close_handle(cr, (uv_handle_t *)&cr->in);
}

/* Fail before anything ran; the run still finishes from a loop callback. */
static int fail_early(cli_run *cr, bt_agent_error_class cls, const char *msg)
{
    bt_agent_run_fail(cr->run, cls, "%s", msg);
    cr->exited = cr->out_eof = cr->err_eof = 1;
    close_all(cr);
    return 0;
}

static int cli_start(bt_agent_run *run, bt_error *err)
{
    (void)err;
    bt_agent *a = run->agent;
    const bt_cli_preset *pp = a->impl;
    cli_run *cr = bt_xcalloc(1, sizeof *cr);
    cr->run = run;
    cr->preset = *pp;
    cr->loop = a->env.loop;
    run->impl = cr;
    uv_pipe_init(cr->loop, &cr->in, 0);
    uv_pipe_init(cr->loop, &cr->out, 0);
    uv_pipe_init(cr->loop, &cr->err, 0);
    uv_timer_init(cr->loop, &cr->turn_timer);
    uv_timer_init(cr->loop, &cr->stall_timer);
    uv_timer_init(cr->loop, &cr->kill_timer);
    cr->in.data = cr->out.data = cr->err.data = cr->proc.data = cr;
    cr->turn_timer.data = cr->stall_timer.data = cr->kill_timer.data = cr;
    bt_cli_parser_cb cb = {cb_text, cb_tool, cb_usage, cb_note, cr};
    cr->parser = bt_cli_parser_new(cr->preset, run->max_output, &cb);
    size_t cap = run->max_output < TEXT_CHUNK ? TEXT_CHUNK : run->max_output;
    lb_init(&cr->out_lb, cap, json_format(cr->preset) ? 0 : TEXT_CHUNK);
    lb_init(&cr->err_lb, cap, TEXT_CHUNK);

    bt_cli_command cmd;
    bt_error berr = BT_ERROR_INIT;
    const char *prog =
        a->cfg.command && *a->cfg.command ? a->cfg.command : presets[cr->preset].program;
    snprintf(cr->name_buf, sizeof cr->name_buf, "%s", display_name(cr->preset, prog));
    cr->name = cr->name_buf;
    if (bt_cli_command_build(&a->cfg, run->prompt, run->system, run->context, &cmd, &berr) < 0)
        return fail_early(cr, BT_AGENT_PERMANENT, berr.msg);
    snprintf(cr->name_buf, sizeof cr->name_buf, "%s", display_name(cr->preset, cmd.argv.items[0]));

    bt_strvec env = BT_STRVEC_INIT;
    env_build(a, cr->preset, &env);
    bt_strbuf path = BT_STRBUF_INIT;
    if (resolve_program(cmd.argv.items[0], bt_strvec_env_get(&env, "PATH"), &path) < 0) {
        bt_strbuf m = BT_STRBUF_INIT;
        not_found_message(&m, a, cr->preset, cmd.argv.items[0], cr->name);
        fail_early(cr, BT_AGENT_PERMANENT, m.buf);
        bt_strbuf_release(&m);
        bt_strbuf_release(&path);
        bt_strvec_clear(&env);
        bt_cli_command_release(&cmd);
        return 0;
    }
    uv_stdio_container_t stdio[3];
    if (cmd.stdin_data) {
        stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
        stdio[0].data.stream = (uv_stream_t *)&cr->in;
    } else {
        stdio[0].flags = UV_IGNORE; /* /dev/null */
    }
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&cr->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&cr->err;
    uv_process_options_t po = {0};
    po.file = path.buf;
    po.args = cmd.argv.items;
    po.env = env.items;
    po.cwd = run->workspace;
    po.flags = UV_PROCESS_DETACHED; /* setsid: its own process group, kill(-pid) reaches all */
    po.exit_cb = on_exit_cb;
    po.stdio = stdio;
    po.stdio_count = 3;
    int rc = uv_spawn(cr->loop, &cr->proc, &po);
    cr->proc_init = 1;
    bt_strvec_clear(&env);
    if (rc != 0) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "%s: cannot start %s in %s: %s", cr->name, path.buf, run->workspace,
                       uv_strerror(rc));
        fail_early(cr, BT_AGENT_PERMANENT, m.buf);
        bt_strbuf_release(&m);
        bt_strbuf_release(&path);
        bt_cli_command_release(&cmd);
        return 0;
    }
    bt_strbuf_release(&path);
    cr->spawned = 1;
    cr->last_activity = uv_now(cr->loop);
    uv_read_start((uv_stream_t *)&cr->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&cr->err, on_alloc, on_read);
    if (cmd.stdin_data) {
        cr->stdin_data = cmd.stdin_data;
        cmd.stdin_data = NULL;
        cr->wreq.data = cr;
        uv_buf_t b = uv_buf_init(cr->stdin_data, (unsigned)cmd.stdin_len);
        if (uv_write(&cr->wreq, (uv_stream_t *)&cr->in, &b, 1, on_stdin_written) != 0)
            close_handle(cr, (uv_handle_t *)&cr->in);
    }
    bt_cli_command_release(&cmd);
    uv_timer_start(&cr->turn_timer, on_turn_timeout, (uint64_t)run->timeout_ms, 0);
    if (run->stall_timeout_ms > 0)
        uv_timer_start(&cr->stall_timer, on_stall_check, (uint64_t)run->stall_timeout_ms, 0);
    return 0;
}

static void cli_cancel(bt_agent_run *run)
{
    cli_run *cr = run->impl;
    if (!cr || cr->closing || !cr->spawned || cr->exited)
        return;
    status(cr, "%s", "cancelled: stopping the process group");
    terminate(cr);
}

/* ---- availability ---- */

typedef struct cli_check {
    bt_agent *agent;
    bt_agent_check_fn cb;
    void *ud;
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t timer;
    int open_handles, exited, eof, timed_out, proc_init, spawned, spawn_rc;
    int64_t status;
    int sig;
    char name[128];
    bt_strbuf path, text;
    char buf[4096];
} cli_check;

/* "2.1.197 (Claude Code)" -> "2.1.197"; "codex-cli 0.169.0" -> "0.169.0". */
static void version_of(const char *text, bt_strbuf *out)
{
    size_t n = strcspn(text, "\r\n");
    const char *s = text, *end = text + n;
    while (s < end) {
        while (s < end && isspace((unsigned char)*s))
            s++;
        const char *w = s;
        while (s < end && !isspace((unsigned char)*s))
            s++;
        const char *v = w;
        if (v < s && (*v == 'v' || *v == 'V') && v + 1 < s && isdigit((unsigned char)v[1]))
            v++;
        if (v < s && isdigit((unsigned char)*v) && memchr(v, '.', (size_t)(s - v))) {
            const char *e = s;
            while (e > v && !isalnum((unsigned char)e[-1]))
                e--;
            bt_strbuf_add(out, v, (size_t)(e - v));
            return;
        }
    }
    while (n && isspace((unsigned char)text[n - 1]))
        n--;
    bt_strbuf_add(out, text, n > 80 ? 80 : n);
}

static void check_closed(uv_handle_t *h)
{
    cli_check *c = h->data;
    if (--c->open_handles > 0)
        return;
    bt_strbuf d = BT_STRBUF_INIT;
    int ok = 0;
    if (c->spawn_rc) {
        bt_strbuf_addf(&d, "%s at %s: cannot run it: %s", c->name, c->path.buf,
                       uv_strerror(c->spawn_rc));
    } else if (c->timed_out) {
        bt_strbuf_addf(&d, "%s at %s: `%s --version` did not answer within 5s", c->name,
                       c->path.buf, c->name);
    } else if (c->sig || c->status != 0) {
        bt_strbuf_addf(&d, "%s at %s: `%s --version` failed (%s %d)", c->name, c->path.buf, c->name,
                       c->sig ? "signal" : "exit", c->sig ? c->sig : (int)c->status);
    } else {
        bt_strbuf v = BT_STRBUF_INIT;
        version_of(bt_strbuf_cstr(&c->text), &v);
        bt_strbuf_addf(&d, "%s %s (%s)", c->name, v.len ? v.buf : "(version unknown)", c->path.buf);
        bt_strbuf_release(&v);
        ok = 1;
    }
    c->cb(c->agent, ok, d.buf, c->ud);
    bt_strbuf_release(&d);
    bt_strbuf_release(&c->path);
    bt_strbuf_release(&c->text);
    free(c);
}

static void check_close(cli_check *c)
{
    uv_timer_stop(&c->timer);
    if (c->spawned)
        kill(-c->proc.pid, SIGKILL);
    c->open_handles = 2 + c->proc_init;
    if (c->proc_init)
        uv_close((uv_handle_t *)&c->proc, check_closed);
    uv_close((uv_handle_t *)&c->out, check_closed);
    uv_close((uv_handle_t *)&c->timer, check_closed);
}

static void check_maybe_done(cli_check *c)
{
    if (c->exited && c->eof)
        check_close(c);
}

static void check_exit(uv_process_t *p, int64_t st, int sig)
{
    cli_check *c = p->data;
    c->exited = 1;
    c->status = st;
    c->sig = sig;
    kill(-p->pid, SIGKILL); /* leftovers holding the pipe */
    check_maybe_done(c);
}

static void check_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cli_check *c = h->data;
    buf->base = c->buf;
    buf->len = sizeof c->buf;
}

static void check_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    cli_check *c = s->data;
    if (n > 0) {
        size_t room = c->text.len < 4096 ? 4096 - c->text.len : 0;
        bt_strbuf_add(&c->text, buf->base, (size_t)n < room ? (size_t)n : room);
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        c->eof = 1;
        check_maybe_done(c);
    }
}

static void check_timeout(uv_timer_t *t)
{
    cli_check *c = t->data;
    c->timed_out = 1;
    kill(-c->proc.pid, SIGKILL);
    if (c->exited) { /* the pipe is held by something that outlived the kill */
        uv_read_stop((uv_stream_t *)&c->out);
        c->eof = 1;
        check_maybe_done(c);
    }
}

static void cli_check_op(bt_agent *a, bt_agent_check_fn cb, void *ud)
{
    const bt_cli_preset *pp = a->impl;
    bt_cli_preset p = *pp;
    bt_strvec argv = BT_STRVEC_INIT; /* the program's words, then --version */
    push_program(&argv, &a->cfg, p);
    const char *prog = argv.items[0];
    cli_check *c = bt_xcalloc(1, sizeof *c);
    c->agent = a;
    c->cb = cb;
    c->ud = ud;
    snprintf(c->name, sizeof c->name, "%s", display_name(p, prog));
    bt_strvec env = BT_STRVEC_INIT;
    env_build(a, p, &env);
    if (resolve_program(prog, bt_strvec_env_get(&env, "PATH"), &c->path) < 0) {
        bt_strbuf m = BT_STRBUF_INIT;
        if (strchr(prog, '/'))
            bt_strbuf_addf(&m, "%s: %s is not an executable file", c->name, prog);
        else
            bt_strbuf_addf(&m, "%s not found on PATH", c->name);
        if (presets[p].install)
            bt_strbuf_addf(&m, " (install it: %s)", presets[p].install);
        bt_agent_check_later(a, 0, m.buf, cb, ud);
        bt_strbuf_release(&m);
        goto out_free;
    }
    if (p == BT_CLI_GENERIC) { /* an arbitrary program need not know --version */
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "%s (%s)", c->name, c->path.buf);
        bt_agent_check_later(a, 1, m.buf, cb, ud);
        bt_strbuf_release(&m);
        goto out_free;
    }
    uv_loop_t *loop = a->env.loop;
    uv_pipe_init(loop, &c->out, 0);
    uv_timer_init(loop, &c->timer);
    c->out.data = c->timer.data = c->proc.data = c;
    bt_strvec_push(&argv, "--version");
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&c->out;
    stdio[2].flags = UV_IGNORE;
    uv_process_options_t po = {0};
    po.file = c->path.buf;
    po.args = argv.items;
    po.env = env.items;
    po.flags = UV_PROCESS_DETACHED;
    po.exit_cb = check_exit;
    po.stdio = stdio;
    po.stdio_count = 3;
    int rc = uv_spawn(loop, &c->proc, &po);
    c->proc_init = 1;
    bt_strvec_clear(&env);
    bt_strvec_clear(&argv);
    if (rc != 0) {
        c->spawn_rc = rc;
        check_close(c);
        return;
    }
    c->spawned = 1;
    uv_read_start((uv_stream_t *)&c->out, check_alloc, check_read);
    uv_timer_start(&c->timer, check_timeout, (uint64_t)CHECK_TIMEOUT_MS, 0);
    return;
out_free:
    bt_strvec_clear(&env);
    bt_strvec_clear(&argv);
    bt_strbuf_release(&c->path);
    free(c);
}

static void cli_free(bt_agent *a)
{
    free(a->impl);
    a->impl = NULL;
}

static const bt_agent_ops cli_ops = {
    .type = "cli",
    .writes_workspace = 1,
    .start = cli_start,
    .cancel = cli_cancel,
    .check = cli_check_op,
    .free = cli_free,
};

int bt_cli_agent_init(bt_agent *a, bt_error *err)
{
    bt_cli_preset p;
    int rc = bt_cli_preset_from_name(a->cfg.preset, &p, err);
    if (rc < 0) {
        bt_error_prefix(err, "agent '%s'", a->cfg.name);
        return rc;
    }
    if (p == BT_CLI_GENERIC && (!a->cfg.command || !*a->cfg.command))
        return bt_errorf(err, BT_EINVAL,
                         "agent '%s' (type cli) needs a preset (claude, codex, gemini, copilot, "
                         "aider, opencode) or a command",
                         a->cfg.name);
    bt_cli_preset *pp = bt_xmalloc(sizeof *pp);
    *pp = p;
    a->impl = pp;
    a->ops = &cli_ops;
    return 0;
}
