/*
 * git.c - the git operations baton performs itself (see git.h): credentials for git in
 * the environment only, URL credential stripping, redaction of git output, and the
 * completion stage's commit-and-push.
 *
 * bt_git_commit_push is a chain of git processes on the loop (bt_proc), each started
 * from the previous one's on_done: add -A; diff --cached --quiet (exit 1 = something
 * to commit); commit -F - (the message on stdin, so it needs no quoting); rev-parse
 * HEAD; the ahead count against refs/remotes/<remote>/HEAD's target (or, when the
 * remote's default is unknown, the commits on no remote ref at all), taken before the
 * push because the push moves remote-tracking refs; then push HEAD:refs/heads/<branch>.
 * Every command runs with argv (never a shell), in the workspace, with this process's
 * environment (without GIT_DIR and the like) plus opts.env plus GIT_TERMINAL_PROMPT=0,
 * within what is left of the operation's deadline. Its output is redacted before it is
 * kept.
 */
#include "workspace/git.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "obs/log.h"
#include "workspace/proc.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define DEFAULT_TIMEOUT_MS ((int64_t)5 * 60 * 1000)
#define OUTPUT_KEEP        (64 * 1024) /* redacted output kept for the result */
#define MSG_TAIL           600         /* output tail in an error message (bt_error is 1 KiB) */

/* ---- environment ---- */

/* Set key=value in env, replacing an existing entry for key. */
static void env_put(bt_strvec *env, const char *key, const char *value)
{
    bt_strbuf kv = BT_STRBUF_INIT;
    bt_strbuf_addf(&kv, "%s=%s", key, value);
    size_t n = strlen(key);
    for (size_t i = 0; i < env->len; i++) {
        if (strncmp(env->items[i], key, n) == 0 && env->items[i][n] == '=') {
            free(env->items[i]);
            env->items[i] = bt_strbuf_detach(&kv, NULL);
            return;
        }
    }
    bt_strvec_push_owned(env, bt_strbuf_detach(&kv, NULL));
}

static int is_http_url(const char *s)
{
    return s && (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0);
}

int bt_git_auth_env(const char *url_prefix, const char *user, const char *token, bt_strvec *env,
                    bt_error *err)
{
    if (!is_http_url(url_prefix) || !url_prefix[strcspn(url_prefix, ":") + 3])
        return bt_errorf(err, BT_EINVAL,
                         "git credentials need an http:// or https:// URL prefix such as "
                         "https://github.com/, not '%s'",
                         url_prefix ? url_prefix : "(none)");
    if (token && *token) {
        if (!user || !*user)
            user = "x-access-token";
        /* Continue an existing GIT_CONFIG_COUNT numbering (ours, else the environment's
         * that git would otherwise see), so earlier entries keep working. */
        const char *cur = bt_strvec_env_get(env, "GIT_CONFIG_COUNT");
        if (!cur)
            cur = getenv("GIT_CONFIG_COUNT");
        long n = 0;
        if (cur) {
            char *end;
            errno = 0;
            n = strtol(cur, &end, 10);
            if (errno || *end || n < 0 || n > 1000)
                n = 0;
        }
        bt_strbuf cred = BT_STRBUF_INIT;
        bt_strbuf_addf(&cred, "%s:%s", user, token);
        unsigned char *b64 = bt_xmalloc(4 * ((cred.len + 2) / 3) + 1);
        EVP_EncodeBlock(b64, (const unsigned char *)cred.buf, (int)cred.len);
        char key[64], val[64];
        snprintf(key, sizeof key, "GIT_CONFIG_KEY_%ld", n);
        snprintf(val, sizeof val, "GIT_CONFIG_VALUE_%ld", n);
        bt_strbuf sb = BT_STRBUF_INIT;
        bt_strbuf_addf(&sb, "http.%s.extraHeader", url_prefix);
        env_put(env, key, sb.buf);
        bt_strbuf_reset(&sb);
        bt_strbuf_addf(&sb, "Authorization: Basic %s", (const char *)b64);
        env_put(env, val, sb.buf);
        bt_strbuf_reset(&sb);
        bt_strbuf_addf(&sb, "%ld", n + 1);
        env_put(env, "GIT_CONFIG_COUNT", sb.buf);
        bt_strbuf_release(&sb);
        OPENSSL_cleanse(cred.buf, cred.len);
        bt_strbuf_release(&cred);
        free(b64);
    }
    env_put(env, "GIT_TERMINAL_PROMPT", "0");
    env_put(env, "GIT_ASKPASS", "/bin/false");
    return 0;
}

char *bt_git_url_strip_credentials(const char *url)
{
    if (!url)
        return NULL;
    const char *s = strstr(url, "://");
    if (!s)
        return bt_xstrdup(url); /* a path or scp-like user@host:path: no password */
    const char *host = s + 3;
    const char *end = host + strcspn(host, "/?#");
    const char *at = NULL;
    for (const char *p = host; p < end; p++)
        if (*p == '@')
            at = p;
    if (!at)
        return bt_xstrdup(url);
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_add(&sb, url, (size_t)(host - url));
    bt_strbuf_addstr(&sb, at + 1);
    return bt_strbuf_detach(&sb, NULL);
}

/* ---- redaction ---- */

static void mask_all(bt_strbuf *text, const char *secret)
{
    size_t n = strlen(secret);
    if (n < 4 || !strstr(bt_strbuf_cstr(text), secret))
        return;
    bt_strbuf out = BT_STRBUF_INIT;
    const char *p = bt_strbuf_cstr(text);
    const char *hit;
    while ((hit = strstr(p, secret))) {
        bt_strbuf_add(&out, p, (size_t)(hit - p));
        bt_strbuf_addstr(&out, "***");
        p = hit + n;
    }
    bt_strbuf_addstr(&out, p);
    bt_strbuf_release(text);
    *text = out;
}

/* Mask the Basic credential of an "Authorization: Basic <b64>" header value: the base64,
 * the decoded user:password, and the password. */
static void mask_basic(bt_strbuf *text, const char *value)
{
    const char *b = strstr(value, "Basic ");
    if (!b)
        return;
    b += 6;
    size_t n = strcspn(b, " \t\r\n");
    if (n < 4 || n % 4 || n > 4096)
        return;
    char *b64 = bt_xstrndup(b, n);
    unsigned char *dec = bt_xmalloc(n / 4 * 3 + 1);
    int len = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)n);
    if (len > 0) {
        while (len > 0 && n && b64[n - 1] == '=') { /* DecodeBlock counts the padding */
            len--;
            n--;
        }
        dec[len] = '\0';
        const char *colon = strchr((char *)dec, ':');
        if (strlen((char *)dec) == (size_t)len) {
            mask_all(text, (char *)dec);
            if (colon)
                mask_all(text, colon + 1);
        }
        OPENSSL_cleanse(dec, (size_t)len);
    }
    mask_all(text, b64);
    free(dec);
    free(b64);
}

char *bt_git_redact(const bt_log *log, const char *const *env, const char *text)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addstr(&sb, text ? text : "");
    for (size_t i = 0; env && env[i]; i++) {
        if (strncmp(env[i], "GIT_CONFIG_VALUE_", 17) != 0)
            continue;
        const char *eq = strchr(env[i], '=');
        if (eq)
            mask_basic(&sb, eq + 1);
    }
    char *out = bt_log_redact(log, bt_strbuf_cstr(&sb));
    bt_strbuf_release(&sb);
    return out;
}

/* ---- commit and push ---- */

typedef struct push_op push_op;
typedef void (*push_next_fn)(push_op *op, const bt_proc_result *r);

struct push_op {
    uv_loop_t *loop;
    char *path, *message, *branch, *remote, *name, *email;
    bt_strvec extra;   /* opts->env, copied */
    bt_strvec run_env; /* environ + extra + GIT_TERMINAL_PROMPT=0 */
    bt_log *log;
    int64_t deadline_ms; /* monotonic */
    bt_git_push_fn cb;
    void *ud;
    push_next_fn next;
    char *label; /* the running command, for messages */
    bt_strbuf output;
    char *commit, *head, *base_ref;
    int committed;
    int ahead;
};

static void op_free(push_op *op)
{
    free(op->path);
    free(op->message);
    free(op->branch);
    free(op->remote);
    free(op->name);
    free(op->email);
    bt_strvec_clear(&op->extra);
    bt_strvec_clear(&op->run_env);
    free(op->label);
    bt_strbuf_release(&op->output);
    free(op->commit);
    free(op->head);
    free(op->base_ref);
    free(op);
}

static void finish(push_op *op, int rc, const bt_error *err)
{
    if (rc < 0) {
        op->cb(rc, err, NULL, op->ud);
    } else {
        bt_git_push_result r = {.commit = op->commit,
                                .head = op->head,
                                .pushed = 1,
                                .ahead = op->ahead,
                                .output = bt_strbuf_cstr(&op->output)};
        op->cb(0, NULL, &r, op->ud);
    }
    op_free(op);
}

static void fail_cmd(push_op *op, int code, const bt_proc_result *r, const char *redacted)
{
    bt_strbuf m = BT_STRBUF_INIT;
    if (r->timed_out) {
        char d[32];
        bt_strbuf_addf(&m, "%s timed out after %s", op->label,
                       bt_duration_format(r->duration_ms, d));
    } else if (r->term_signal) {
        bt_strbuf_addf(&m, "%s was killed by signal %d", op->label, r->term_signal);
    } else {
        bt_strbuf_addf(&m, "%s failed (exit %d)", op->label, r->exit_code);
    }
    if (redacted && *redacted) {
        bt_strbuf_addstr(&m, ": ");
        bt_strbuf_add_tail(&m, redacted, MSG_TAIL);
    }
    bt_error err = BT_ERROR_INIT;
    bt_errorf(&err, code, "%s", m.buf);
    bt_strbuf_release(&m);
    bt_log_warn(op->log, "git command failed", BT_LF_STR("path", op->path),
                BT_LF_STR("error", err.msg));
    finish(op, err.code, &err);
}

static void on_proc_done(const bt_proc_result *r, void *ud)
{
    push_op *op = ud;
    op->next(op, r);
}

/* "git push origin HEAD:refs/heads/x" from argv: -c NAME=VALUE pairs left out, URLs
 * without credentials. */
static char *make_label(const char *const *argv)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    for (size_t i = 0; argv[i]; i++) {
        if (strcmp(argv[i], "-c") == 0 && argv[i + 1]) {
            i++;
            continue;
        }
        char *a = bt_git_url_strip_credentials(argv[i]);
        if (sb.len)
            bt_strbuf_addch(&sb, ' ');
        bt_strbuf_addstr(&sb, a);
        free(a);
    }
    return bt_strbuf_detach(&sb, NULL);
}

/* Start the next command; on failure to start, the operation fails (when started from
 * a loop callback) or the error is returned (from bt_git_commit_push itself). */
static int run(push_op *op, const char *const *argv, const char *stdin_data, push_next_fn next,
               int first, bt_error *err)
{
    free(op->label);
    op->label = make_label(argv);
    int64_t left = op->deadline_ms - bt_time_mono_ms();
    bt_error e = BT_ERROR_INIT;
    int rc;
    if (left <= 0) {
        rc = bt_errorf(&e, BT_ETIMEOUT, "commit and push in %s ran out of time before %s", op->path,
                       op->label);
    } else {
        op->next = next;
        bt_proc_opts po = {.argv = argv,
                           .cwd = op->path,
                           .env = op->run_env.items,
                           .stdin_data = stdin_data,
                           .stdin_len = stdin_data ? strlen(stdin_data) : 0,
                           .timeout_ms = left,
                           .on_done = on_proc_done,
                           .ud = op};
        rc = bt_proc_start(op->loop, &po, NULL, &e);
    }
    if (rc == 0)
        return 0;
    if (first) {
        if (err)
            *err = e;
        return rc;
    }
    finish(op, rc, &e);
    return rc;
}

/* Keep a command's output (redacted) for the result; returns the redacted text. */
static char *keep_output(push_op *op, const bt_proc_result *r)
{
    char *red = bt_git_redact(op->log, (const char *const *)op->extra.items, r->output);
    size_t n = strlen(red);
    if (n && op->output.len + n <= OUTPUT_KEEP) {
        bt_strbuf_addstr(&op->output, red);
        if (red[n - 1] != '\n')
            bt_strbuf_addch(&op->output, '\n');
    }
    return red;
}

/* Check a finished command: 1 = it exited with one of ok_a/ok_b; else the operation
 * has been failed with code and 0 is returned. */
static int check(push_op *op, const bt_proc_result *r, int code, int ok_a, int ok_b)
{
    char *red = keep_output(op, r);
    int ok = !r->timed_out && !r->cancelled && !r->term_signal &&
             (r->exit_code == ok_a || r->exit_code == ok_b);
    if (!ok)
        fail_cmd(op, code, r, red);
    free(red);
    return ok;
}

static char *first_line(const char *s)
{
    return bt_xstrndup(s, strcspn(s, "\r\n"));
}

static void st_pushed(push_op *op, const bt_proc_result *r)
{
    if (!check(op, r, BT_EIO, 0, 0))
        return;
    bt_log_info(op->log, "branch pushed", BT_LF_STR("path", op->path),
                BT_LF_STR("branch", op->branch), BT_LF_STR("head", op->head),
                BT_LF_INT("ahead", op->ahead));
    finish(op, 0, NULL);
}

static void st_counted(push_op *op, const bt_proc_result *r)
{
    if (!check(op, r, BT_EINVAL, 0, 0))
        return;
    op->ahead = atoi(r->output);
    bt_strbuf ref = BT_STRBUF_INIT;
    bt_strbuf_addf(&ref, "HEAD:refs/heads/%s", op->branch);
    const char *argv[] = {"git", "push", "-q", op->remote, ref.buf, NULL};
    run(op, argv, NULL, st_pushed, 0, NULL);
    bt_strbuf_release(&ref);
}

static void st_base_ref(push_op *op, const bt_proc_result *r)
{
    if (r->exit_code == 0 && !r->timed_out && !r->term_signal && r->output[0]) {
        op->base_ref = first_line(r->output);
        bt_strbuf range = BT_STRBUF_INIT;
        bt_strbuf_addf(&range, "%s..HEAD", op->base_ref);
        const char *argv[] = {"git", "rev-list", "--count", range.buf, NULL};
        run(op, argv, NULL, st_counted, 0, NULL);
        bt_strbuf_release(&range);
    } else {
        /* The remote's default branch is unknown: count what no remote ref has. */
        const char *argv[] = {"git", "rev-list", "--count", "HEAD", "--not", "--remotes", NULL};
        run(op, argv, NULL, st_counted, 0, NULL);
    }
}

static void st_head(push_op *op, const bt_proc_result *r)
{
    if (!check(op, r, BT_EINVAL, 0, 0))
        return;
    op->head = first_line(r->output);
    if (op->committed)
        op->commit = bt_xstrdup(op->head);
    bt_strbuf ref = BT_STRBUF_INIT;
    bt_strbuf_addf(&ref, "refs/remotes/%s/HEAD", op->remote);
    const char *argv[] = {"git", "symbolic-ref", "--quiet", ref.buf, NULL};
    run(op, argv, NULL, st_base_ref, 0, NULL);
    bt_strbuf_release(&ref);
}

static void rev_parse_head(push_op *op)
{
    const char *argv[] = {"git", "rev-parse", "--verify", "HEAD", NULL};
    run(op, argv, NULL, st_head, 0, NULL);
}

static void st_committed(push_op *op, const bt_proc_result *r)
{
    if (!check(op, r, BT_EINVAL, 0, 0))
        return;
    op->committed = 1; /* its sha comes from rev-parse HEAD */
    rev_parse_head(op);
}

static void st_diffed(push_op *op, const bt_proc_result *r)
{
    if (!check(op, r, BT_EINVAL, 0, 1))
        return;
    if (r->exit_code == 0) { /* nothing staged: push what is there */
        rev_parse_head(op);
        return;
    }
    bt_strbuf name = BT_STRBUF_INIT, email = BT_STRBUF_INIT;
    bt_strbuf_addf(&name, "user.name=%s", op->name);
    bt_strbuf_addf(&email, "user.email=%s", op->email);
    const char *argv[] = {"git",    "-c", name.buf, "-c", email.buf, "-c", "commit.gpgsign=false",
                          "commit", "-q", "-F",     "-",  NULL};
    run(op, argv, op->message, st_committed, 0, NULL);
    bt_strbuf_release(&name);
    bt_strbuf_release(&email);
}

static void st_added(push_op *op, const bt_proc_result *r)
{
    if (!check(op, r, BT_EINVAL, 0, 0))
        return;
    const char *argv[] = {"git", "diff", "--cached", "--quiet", NULL};
    run(op, argv, NULL, st_diffed, 0, NULL);
}

/* Variables that would point git at another repository than the workspace (set when
 * baton itself runs from a git hook). */
static int repo_var(const char *kv)
{
    static const char *const vars[] = {
        "GIT_DIR=", "GIT_WORK_TREE=", "GIT_INDEX_FILE=", "GIT_COMMON_DIR=", "GIT_PREFIX=", NULL};
    for (size_t i = 0; vars[i]; i++)
        if (strncmp(kv, vars[i], strlen(vars[i])) == 0)
            return 1;
    return 0;
}

int bt_git_commit_push(uv_loop_t *loop, const bt_git_push_opts *o, bt_git_push_fn cb, void *ud,
                       bt_error *err)
{
    if (!loop || !o || !cb || !o->path || !*o->path || !o->message || !*o->message || !o->branch ||
        !*o->branch)
        return bt_errorf(err, BT_EINVAL,
                         "commit and push needs a loop, a callback, the workspace path, a commit "
                         "message and a branch");
    push_op *op = bt_xcalloc(1, sizeof *op);
    op->loop = loop;
    op->path = bt_xstrdup(o->path);
    op->message = bt_xstrdup(o->message);
    op->branch = bt_xstrdup(o->branch);
    op->remote = bt_xstrdup(o->remote && *o->remote ? o->remote : "origin");
    op->name = bt_xstrdup(o->author_name && *o->author_name ? o->author_name : "baton");
    op->email =
        bt_xstrdup(o->author_email && *o->author_email ? o->author_email : "baton@localhost");
    op->log = o->log;
    op->cb = cb;
    op->ud = ud;
    op->deadline_ms = bt_time_mono_ms() + (o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS);
    for (size_t i = 0; o->env && o->env[i]; i++)
        bt_strvec_push(&op->extra, o->env[i]);
    for (char *const *e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        int overridden = 0;
        for (size_t i = 0; i < op->extra.len && !overridden; i++)
            overridden = strncmp(op->extra.items[i], *e, (size_t)(eq - *e) + 1) == 0;
        if (!overridden && strncmp(*e, "GIT_TERMINAL_PROMPT=", 20) != 0 && !repo_var(*e))
            bt_strvec_push(&op->run_env, *e);
    }
    for (size_t i = 0; i < op->extra.len; i++)
        if (strncmp(op->extra.items[i], "GIT_TERMINAL_PROMPT=", 20) != 0)
            bt_strvec_push(&op->run_env, op->extra.items[i]);
    bt_strvec_push(&op->run_env, "GIT_TERMINAL_PROMPT=0");
    const char *argv[] = {"git", "add", "-A", NULL};
    int rc = run(op, argv, NULL, st_added, 1, err);
    if (rc < 0)
        op_free(op);
    return rc;
}
