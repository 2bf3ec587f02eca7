/*
 * workspace.c - the workspace manager (see workspace.h for the contract): one directory
 * per work item under the root, populated by git clone or a worktree of a cached bare
 * clone, with the configured hooks around it.
 *
 * How it works:
 * - Every operation (prepare, after_run, remove) is a ws_op: a chain of steps, each
 *   either a child process on the loop (bt_proc: git or `sh -lc <hook>`, argv only,
 *   never an interpolated shell line for git) whose on_done picks the next step, or
 *   plain C work done between two of them. The first step always starts from the op's
 *   timer, so no callback ever runs inside the call that started the operation, and
 *   every failure is reported from a loop callback.
 * - Cancelling kills the running process (bt_proc_cancel) or fires the op's timer; the
 *   step that notices finishes with BT_ECANCELED. Nothing finishes synchronously.
 * - Mirrors (the worktree strategy's bare clones under <root>/.mirrors) are used by one
 *   op at a time: an op holds its mirror from the first fetch to `worktree add` (or
 *   through `worktree remove` + `prune`), and the others wait in a FIFO.
 * - A directory this op created is removed again (rm -rf in C, never following a
 *   symlink) when population fails; a reused one is never touched.
 * - Paths: root/<key>, where the key cannot contain '/' and never starts with '.', and
 *   an existing root/<key> must resolve (realpath) to a directory below the root.
 * - Git processes get this process's environment plus spec.git_env plus
 *   GIT_TERMINAL_PROMPT=0; hooks get this process's environment plus BATON_WORKSPACE,
 *   BATON_WORKSPACE_KEY, BATON_HOOK and spec.hook_env (never git_env). GIT_DIR and its
 *   kind are dropped from both, so a baton started from inside a git hook still works.
 *   Output that reaches a message or the log passes through bt_git_redact.
 */
#include "workspace/workspace.h"

#include "base/mem.h"
#include "base/path.h"
#include "base/time.h"
#include "base/vec.h"
#include "config/config.h"
#include "obs/log.h"
#include "workspace/git.h"
#include "workspace/proc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define NET_TIMEOUT_MS  ((int64_t)10 * 60 * 1000) /* clone and fetch */
#define HOOK_DEFAULT_MS ((int64_t)60 * 1000)      /* hook_timeout <= 0 */
#define LOG_TAIL        2048                      /* output tail in a log line */
#define MSG_TAIL        600                       /* output tail in a bt_error (1 KiB) */
#define MIRRORS_DIR     ".mirrors"

typedef struct ws_op ws_op;
typedef void (*step_fn)(ws_op *o);
typedef void (*proc_fn)(ws_op *o, const bt_proc_result *r);

/* A bare clone shared by the worktrees of one repository; one op uses it at a time. */
typedef struct mirror {
    struct mirror *next;
    char *path;
    ws_op *holder;
    ws_op *waiting; /* FIFO through ws_op.qnext */
} mirror;

typedef enum op_kind { OP_PREPARE, OP_AFTER_RUN, OP_REMOVE } op_kind;

struct ws_op {
    bt_workspaces *w;
    ws_op *prev, *next; /* w->ops */
    ws_op *qnext;       /* mirror->waiting */
    op_kind kind;
    uv_timer_t timer; /* starts steps from the loop; closed when the op ends */
    step_fn deferred;
    bt_proc *proc; /* the running child, if any */
    proc_fn on_proc;
    char *label; /* the running command, for messages */
    int cancelled;
    char *identifier, *repo, *branch, *base;
    bt_strvec git_env;  /* spec.git_env + GIT_TERMINAL_PROMPT=0 */
    bt_strvec hook_env; /* spec.hook_env / hook_env */
    char *path, *key;
    char *cache;      /* the worktree strategy's mirror, or the one a removed worktree used */
    mirror *m;        /* the mirror held or waited for */
    int holds_mirror; /* 1: m->holder == this */
    int cache_fresh;  /* the mirror is being made by this op: remove it on failure */
    step_fn mirror_fn;
    int created;    /* this op made path (info.created) */
    int populating; /* made and not yet through after_create: removed on failure */
    char *cur_branch, *cur_base;
    const char *hook; /* the running hook's name */
    int hook_fatal;
    step_fn hook_next;
    bt_workspace_done_fn done;
    bt_workspace_cb cb;
    void *ud;
    uv_work_t work; /* removing the directory, off the loop */
    int rm_rc;
};

struct bt_workspaces {
    uv_loop_t *loop;
    const bt_config_workspace *cfg;
    bt_log *log;
    char *root;
    ws_op *ops;
    mirror *mirrors;
};

/* ---- paths ---- */

void bt_workspace_key(const char *identifier, bt_strbuf *out)
{
    bt_strbuf k = BT_STRBUF_INIT;
    bt_path_sanitize_component(identifier ? identifier : "", &k);
    if (k.len == 0 || k.buf[0] == '.')
        bt_strbuf_addch(out, '_');
    bt_strbuf_addstr(out, bt_strbuf_cstr(&k));
    bt_strbuf_release(&k);
}

/* A value inside a ref name: runs of anything but [A-Za-z0-9._-] become one '-', and
 * leading/trailing '-' and '.' go. */
static void add_ref_safe(bt_strbuf *sb, const char *v)
{
    size_t start = sb->len;
    int dash = 0;
    for (const char *p = v ? v : ""; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '.' || c == '_' || c == '-') {
            if (dash && sb->len > start)
                bt_strbuf_addch(sb, '-');
            dash = 0;
            bt_strbuf_addch(sb, (char)c);
        } else {
            dash = 1;
        }
    }
    while (sb->len > start && (sb->buf[sb->len - 1] == '.' || sb->buf[sb->len - 1] == '-'))
        bt_strbuf_setlen(sb, sb->len - 1);
    while (sb->len > start && (sb->buf[start] == '.' || sb->buf[start] == '-')) {
        memmove(sb->buf + start, sb->buf + start + 1, sb->len - start - 1);
        bt_strbuf_setlen(sb, sb->len - 1);
    }
}

int bt_workspace_branch(const char *tmpl, const char *number, const char *identifier,
                        const char *id, bt_strbuf *out, bt_error *err)
{
    const char *t = tmpl && *tmpl ? tmpl : "ai-feature/issue-{{number}}";
    size_t start = out->len;
    const char *s = t;
    while (*s) {
        const char *open = strstr(s, "{{");
        if (!open) {
            bt_strbuf_addstr(out, s);
            break;
        }
        bt_strbuf_add(out, s, (size_t)(open - s));
        const char *close = strstr(open + 2, "}}");
        if (!close)
            return bt_errorf(err, BT_EINVAL, "workspace.branch_template '%s' has an unclosed '{{'",
                             t);
        const char *a = open + 2, *b = close;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        size_t n = (size_t)(b - a);
        if (n == 6 && strncmp(a, "number", 6) == 0) {
            add_ref_safe(out, number && *number ? number : identifier);
        } else if (n == 10 && strncmp(a, "identifier", 10) == 0) {
            add_ref_safe(out, identifier);
        } else if (n == 3 && strncmp(a, "key", 3) == 0) {
            bt_strbuf k = BT_STRBUF_INIT;
            bt_workspace_key(identifier, &k);
            add_ref_safe(out, k.buf);
            bt_strbuf_release(&k);
        } else if (n == 2 && strncmp(a, "id", 2) == 0) {
            add_ref_safe(out, id);
        } else {
            return bt_errorf(err, BT_EINVAL,
                             "workspace.branch_template: unknown placeholder {{%.*s}} (use "
                             "{{number}}, {{identifier}}, {{key}} or {{id}})",
                             (int)n, a);
        }
        s = close + 2;
    }
    const char *b = out->buf ? out->buf + start : "";
    size_t len = out->len - start;
    int ok = len > 0 && b[0] != '/' && b[0] != '.' && b[len - 1] != '/' && !strstr(b, "..") &&
             !strstr(b, "//") && !strstr(b, "/.") &&
             !(len >= 5 && strcmp(b + len - 5, ".lock") == 0);
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)b[i]) || strchr("/._-", b[i]) != NULL;
    if (!ok)
        return bt_errorf(err, BT_EINVAL,
                         "workspace.branch_template '%s' gives '%s', which git refuses as a "
                         "branch name",
                         t, b);
    return 0;
}

/* 1 when real (a resolved path) is strictly below root. */
static int below_root(const char *root, const char *real)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        n = 0;
    return strncmp(real, root, n) == 0 && real[n] == '/' && real[n + 1];
}

/* An existing path must resolve to a directory below the root. */
static int check_contained(const bt_workspaces *w, const char *path, bt_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0
                               : bt_errorf(err, BT_EIO, "cannot inspect workspace %s: %s", path,
                                           strerror(errno));
    char *real = realpath(path, NULL);
    if (!real)
        return bt_errorf(err, BT_EPERM,
                         "workspace %s is a symlink that cannot be resolved (%s); remove it", path,
                         strerror(errno));
    int rc = 0;
    if (!below_root(w->root, real))
        rc = bt_errorf(err, BT_EPERM,
                       "workspace %s resolves to %s, outside the workspace root %s; remove it",
                       path, real, w->root);
    else if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = bt_errorf(err, BT_EEXIST,
                       "workspace %s exists and is not a directory; remove it or rename the item",
                       path);
    free(real);
    return rc;
}

int bt_workspaces_path(const bt_workspaces *w, const char *identifier, bt_strbuf *out,
                       bt_error *err)
{
    if (!identifier || !*identifier)
        return bt_errorf(err, BT_EINVAL, "a workspace needs a non-empty identifier");
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s/", strcmp(w->root, "/") == 0 ? "" : w->root);
    bt_workspace_key(identifier, &p);
    int rc = check_contained(w, p.buf, err);
    if (rc == 0)
        bt_strbuf_addstr(out, p.buf);
    bt_strbuf_release(&p);
    return rc;
}

const char *bt_workspaces_root(const bt_workspaces *w)
{
    return w->root;
}

/* rm -rf name relative to the directory at without ever following a symlink: a link is unlinked
 * itself, and directories are opened with O_NOFOLLOW. Returns 0 or -errno. */
static int rm_tree_at(int at, const char *name)
{
    struct stat st;
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(at, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if ((st.st_mode & S_IRWXU) != S_IRWXU) /* read-only trees (module caches) */
        (void)fchmod(fd, st.st_mode | S_IRWXU);
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = 0;
    const struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int r = rm_tree_at(dirfd(d), de->d_name);
        if (r < 0 && rc == 0)
            rc = r;
    }
    closedir(d);
    if (unlinkat(at, name, AT_REMOVEDIR) != 0 && errno != ENOENT && rc == 0)
        rc = -errno;
    return rc;
}

static int rm_tree(const char *path)
{
    return rm_tree_at(AT_FDCWD, path);
}

/* The mirror a worktree at path belongs to: path/.git is a file "gitdir:
 * <mirror>/worktrees/<name>" and the mirror is under <root>/.mirrors. New, or NULL. */
static char *worktree_mirror(const bt_workspaces *w, const char *path)
{
    bt_strbuf g = BT_STRBUF_INIT;
    bt_strbuf_addf(&g, "%s/.git", path);
    struct stat st;
    char *data = NULL, *out = NULL;
    size_t len;
    if (lstat(g.buf, &st) == 0 && S_ISREG(st.st_mode) &&
        bt_path_read_file(g.buf, 8192, &data, &len, NULL) == 0 &&
        strncmp(data, "gitdir: ", 8) == 0) {
        char *dir = data + 8;
        dir[strcspn(dir, "\r\n")] = '\0';
        char *wt = strstr(dir, "/worktrees/");
        for (char *p = wt; p; p = strstr(p + 1, "/worktrees/"))
            wt = p;
        bt_strbuf pre = BT_STRBUF_INIT;
        bt_strbuf_addf(&pre, "%s/%s/", w->root, MIRRORS_DIR);
        if (wt && strncmp(dir, pre.buf, pre.len) == 0 && !strstr(dir + pre.len, "/../"))
            out = bt_xstrndup(dir, (size_t)(wt - dir));
        bt_strbuf_release(&pre);
    }
    free(data);
    bt_strbuf_release(&g);
    return out;
}

/* The mirror directory of a repository URL: <root>/.mirrors/<key of the URL without
 * credentials, a trailing '/' or ".git">.git. */
static char *mirror_path(const bt_workspaces *w, const char *repo)
{
    char *url = bt_git_url_strip_credentials(repo);
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    if (n > 4 && strncmp(url + n - 4, ".git", 4) == 0)
        n -= 4;
    url[n] = '\0';
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s/%s/", w->root, MIRRORS_DIR);
    bt_workspace_key(url, &p);
    bt_strbuf_addstr(&p, ".git");
    free(url);
    return bt_strbuf_detach(&p, NULL);
}

/* ---- ops ---- */

static void op_free_cb(uv_handle_t *h)
{
    ws_op *o = h->data;
    free(o->label);
    free(o->identifier);
    free(o->repo);
    free(o->branch);
    free(o->base);
    bt_strvec_clear(&o->git_env);
    bt_strvec_clear(&o->hook_env);
    free(o->path);
    free(o->key);
    free(o->cache);
    free(o->cur_branch);
    free(o->cur_base);
    free(o);
}

static ws_op *op_new(bt_workspaces *w, op_kind kind)
{
    ws_op *o = bt_xcalloc(1, sizeof *o);
    o->w = w;
    o->kind = kind;
    uv_timer_init(w->loop, &o->timer);
    o->timer.data = o;
    o->next = w->ops;
    if (w->ops)
        w->ops->prev = o;
    w->ops = o;
    return o;
}

static void on_timer(uv_timer_t *t);

static void defer(ws_op *o, step_fn fn)
{
    o->deferred = fn;
    uv_timer_start(&o->timer, on_timer, 0, 0);
}

static mirror *mirror_get(bt_workspaces *w, const char *path)
{
    for (mirror *m = w->mirrors; m; m = m->next)
        if (strcmp(m->path, path) == 0)
            return m;
    mirror *m = bt_xcalloc(1, sizeof *m);
    m->path = bt_xstrdup(path);
    m->next = w->mirrors;
    w->mirrors = m;
    return m;
}

/* Run fn once the op holds the mirror at o->cache (now, or when it is its turn). */
static void mirror_enter(ws_op *o, step_fn fn)
{
    mirror *m = mirror_get(o->w, o->cache);
    o->m = m;
    if (!m->holder) {
        m->holder = o;
        o->holds_mirror = 1;
        fn(o);
        return;
    }
    o->mirror_fn = fn;
    o->qnext = NULL;
    ws_op **tail = &m->waiting;
    while (*tail)
        tail = &(*tail)->qnext;
    *tail = o;
}

/* Release the mirror (handing it to the next waiter) or leave its queue. */
static void mirror_leave(ws_op *o)
{
    mirror *m = o->m;
    if (!m)
        return;
    if (o->holds_mirror) {
        m->holder = NULL;
        o->holds_mirror = 0;
        ws_op *n = m->waiting;
        if (n) {
            m->waiting = n->qnext;
            n->qnext = NULL;
            m->holder = n;
            n->holds_mirror = 1;
            defer(n, n->mirror_fn);
        }
    } else {
        for (ws_op **p = &m->waiting; *p; p = &(*p)->qnext) {
            if (*p == o) {
                *p = o->qnext;
                break;
            }
        }
    }
    o->m = NULL;
}

static void finish(ws_op *o, int rc, const bt_error *err)
{
    bt_workspaces *w = o->w;
    if (rc < 0 && o->cache_fresh && o->holds_mirror) {
        int r = rm_tree(o->cache);
        if (r < 0)
            bt_log_warn(w->log, "cannot remove a half-made mirror", BT_LF_STR("path", o->cache),
                        BT_LF_STR("error", strerror(-r)));
    }
    mirror_leave(o);
    if (rc < 0 && o->kind == OP_PREPARE && o->populating) {
        int r = rm_tree(o->path);
        bt_log_info(w->log, "removed the half-made workspace", BT_LF_STR("key", o->key),
                    BT_LF_STR("path", o->path), BT_LF_STR("error", r < 0 ? strerror(-r) : NULL));
    }
    if (o->prev)
        o->prev->next = o->next;
    else
        w->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
    o->prev = o->next = NULL;
    uv_timer_stop(&o->timer);
    if (o->kind == OP_PREPARE) {
        if (rc == 0) {
            bt_log_info(w->log, "workspace ready", BT_LF_STR("key", o->key),
                        BT_LF_STR("path", o->path), BT_LF_STR("branch", o->cur_branch),
                        BT_LF_BOOL("created", o->created));
            bt_workspace_info info = {.path = o->path,
                                      .key = o->key,
                                      .branch = o->cur_branch,
                                      .base = o->cur_base,
                                      .created = o->created};
            o->done(0, NULL, &info, o->ud);
        } else {
            bt_log_warn(w->log, "workspace not prepared", BT_LF_STR("key", o->key),
                        BT_LF_STR("error", err ? err->msg : NULL));
            o->done(rc, err, NULL, o->ud);
        }
    } else if (o->cb) {
        o->cb(rc, rc < 0 ? err : NULL, o->ud);
    }
    uv_close((uv_handle_t *)&o->timer, op_free_cb);
}

static void fail_cancelled(ws_op *o)
{
    bt_error e = BT_ERROR_INIT;
    bt_errorf(&e, BT_ECANCELED, "workspace operation for %s cancelled (shutting down)",
              o->key ? o->key : o->path);
    finish(o, e.code, &e);
}

static void on_timer(uv_timer_t *t)
{
    ws_op *o = t->data;
    step_fn fn = o->deferred;
    o->deferred = NULL;
    if (o->cancelled || !fn)
        fail_cancelled(o);
    else
        fn(o);
}

static void succeed(ws_op *o)
{
    finish(o, 0, NULL);
}

/* ---- child processes ---- */

static int env_dropped(const char *kv, const bt_strvec *extra)
{
    static const char *const git_repo_vars[] = {
        "GIT_DIR=", "GIT_WORK_TREE=", "GIT_INDEX_FILE=", "GIT_COMMON_DIR=", "GIT_PREFIX=", NULL};
    for (size_t i = 0; git_repo_vars[i]; i++)
        if (strncmp(kv, git_repo_vars[i], strlen(git_repo_vars[i])) == 0)
            return 1;
    size_t n = (size_t)(strchr(kv, '=') - kv) + 1;
    for (size_t i = 0; i < extra->len; i++)
        if (strncmp(extra->items[i], kv, n) == 0)
            return 1;
    return 0;
}

static void on_proc_done(const bt_proc_result *r, void *ud)
{
    ws_op *o = ud;
    o->proc = NULL;
    if (o->cancelled)
        fail_cancelled(o);
    else
        o->on_proc(o, r);
}

static char *make_label(const char *const *argv)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    for (size_t i = 0; argv[i]; i++) {
        char *a = bt_git_url_strip_credentials(argv[i]);
        if (i)
            bt_strbuf_addch(&sb, ' ');
        bt_strbuf_addstr(&sb, a);
        free(a);
    }
    return bt_strbuf_detach(&sb, NULL);
}

/* Start argv in cwd with this process's environment plus extra; next runs with the
 * result. A start failure finishes the op. */
static void run(ws_op *o, const char *const *argv, const char *cwd, const bt_strvec *extra,
                int64_t timeout_ms, proc_fn next)
{
    free(o->label);
    o->label = make_label(argv);
    bt_strvec env = BT_STRVEC_INIT;
    for (char *const *e = environ; e && *e; e++)
        if (strchr(*e, '=') && !env_dropped(*e, extra))
            bt_strvec_push(&env, *e);
    for (size_t i = 0; i < extra->len; i++)
        bt_strvec_push(&env, extra->items[i]);
    o->on_proc = next;
    bt_proc_opts po = {.argv = argv,
                       .cwd = cwd,
                       .env = env.items,
                       .timeout_ms = timeout_ms,
                       .on_done = on_proc_done,
                       .ud = o};
    bt_error e = BT_ERROR_INIT;
    int rc = bt_proc_start(o->w->loop, &po, &o->proc, &e);
    bt_strvec_clear(&env);
    if (rc < 0) {
        o->proc = NULL;
        finish(o, rc, &e);
    }
}

static int64_t local_timeout(const ws_op *o)
{
    return o->w->cfg->hook_timeout_ms > 0 ? o->w->cfg->hook_timeout_ms : HOOK_DEFAULT_MS;
}

static void run_git(ws_op *o, const char *const *argv, const char *cwd, int64_t timeout_ms,
                    proc_fn next)
{
    run(o, argv, cwd, &o->git_env, timeout_ms, next);
}

static int proc_ok(const bt_proc_result *r)
{
    return !r->timed_out && !r->cancelled && !r->term_signal && r->exit_code == 0;
}

/* "<what> failed (exit N)" / "timed out after D" / "was killed by signal S". */
static void describe_end(bt_strbuf *m, const char *what, const bt_proc_result *r,
                         int64_t timeout_ms)
{
    char d[32];
    if (r->timed_out)
        bt_strbuf_addf(m, "%s timed out after %s", what, bt_duration_format(timeout_ms, d));
    else if (r->term_signal)
        bt_strbuf_addf(m, "%s was killed by signal %d", what, r->term_signal);
    else
        bt_strbuf_addf(m, "%s failed (exit %d)", what, r->exit_code);
}

/* Finish the op with a failed git command: the command, how it ended, its output. */
static void fail_git(ws_op *o, int code, const bt_proc_result *r, int64_t timeout_ms)
{
    char *red = bt_git_redact(o->w->log, (const char *const *)o->git_env.items, r->output);
    bt_strbuf m = BT_STRBUF_INIT;
    describe_end(&m, o->label, r, timeout_ms);
    if (*red) {
        bt_strbuf_addstr(&m, ": ");
        bt_strbuf_add_tail(&m, red, MSG_TAIL);
    }
    bt_error e = BT_ERROR_INIT;
    bt_errorf(&e, r->timed_out ? BT_ETIMEOUT : code, "%s", m.buf);
    bt_strbuf_release(&m);
    free(red);
    finish(o, e.code, &e);
}

/* Name a failed network step by the repository ("git clone of https://h/o/r.git")
 * rather than by its whole command line. */
static void label_repo(ws_op *o, const char *what)
{
    char *url = bt_git_url_strip_credentials(o->repo);
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s of %s", what, url);
    free(url);
    free(o->label);
    o->label = bt_strbuf_detach(&sb, NULL);
}

static char *first_line(const char *s)
{
    return bt_xstrndup(s, strcspn(s, "\r\n"));
}

/* ---- hooks ---- */

static void hook_done(ws_op *o, const bt_proc_result *r)
{
    bt_workspaces *w = o->w;
    int ok = proc_ok(r);
    char *red = bt_log_redact(w->log, r->output);
    bt_strbuf tail = BT_STRBUF_INIT;
    bt_strbuf_add_tail(&tail, red, LOG_TAIL);
    free(red);
    bt_log_level lvl = ok ? BT_LOG_INFO : o->hook_fatal ? BT_LOG_ERROR : BT_LOG_WARN;
    bt_log_write(w->log, lvl,
                 ok             ? "workspace hook finished"
                 : r->timed_out ? "workspace hook timed out"
                                : "workspace hook failed",
                 BT_LF_STR("hook", o->hook), BT_LF_STR("key", o->key),
                 BT_LF_INT("exit", r->exit_code), BT_LF_INT("duration_ms", r->duration_ms),
                 BT_LF_STR("output", ok ? NULL : tail.buf), BT_LF_END);
    if (!ok && o->hook_fatal) {
        bt_strbuf m = BT_STRBUF_INIT, what = BT_STRBUF_INIT;
        bt_strbuf_addf(&what, "%s hook", o->hook);
        describe_end(&m, what.buf, r, local_timeout(o));
        if (tail.len) {
            bt_strbuf_addstr(&m, ": ");
            bt_strbuf_add_tail(&m, tail.buf, MSG_TAIL);
        }
        bt_error e = BT_ERROR_INIT;
        bt_errorf(&e, r->timed_out ? BT_ETIMEOUT : BT_EIO, "%s", m.buf);
        bt_strbuf_release(&m);
        bt_strbuf_release(&what);
        bt_strbuf_release(&tail);
        finish(o, e.code, &e);
        return;
    }
    bt_strbuf_release(&tail);
    o->hook_next(o);
}

/* Run the hook named name (script may be NULL: nothing to run) in o->path, then next;
 * a fatal hook's failure finishes the op instead. */
static void run_hook(ws_op *o, const char *name, const char *script, int fatal, step_fn next)
{
    if (!script || !*script) {
        next(o);
        return;
    }
    o->hook = name;
    o->hook_fatal = fatal;
    o->hook_next = next;
    bt_strvec env = BT_STRVEC_INIT;
    bt_strvec_pushf(&env, "BATON_WORKSPACE=%s", o->path);
    bt_strvec_pushf(&env, "BATON_WORKSPACE_KEY=%s", o->key);
    bt_strvec_pushf(&env, "BATON_HOOK=%s", name);
    for (size_t i = 0; i < o->hook_env.len; i++)
        bt_strvec_push(&env, o->hook_env.items[i]);
    bt_log_info(o->w->log, "workspace hook started", BT_LF_STR("hook", name),
                BT_LF_STR("key", o->key));
    const char *argv[] = {"sh", "-lc", script, NULL};
    run(o, argv, o->path, &env, local_timeout(o), hook_done);
    bt_strvec_clear(&env);
}

/* ---- prepare ---- */

static void st_before_run(ws_op *o)
{
    o->populating = 0; /* from here on a failure keeps the directory */
    run_hook(o, "before_run", o->w->cfg->hooks.before_run, 1, succeed);
}

static void st_after_create(ws_op *o)
{
    run_hook(o, "after_create", o->w->cfg->hooks.after_create, 1, st_before_run);
}

static void got_branch(ws_op *o, const bt_proc_result *r)
{
    if (proc_ok(r) && r->output[0])
        o->cur_branch = first_line(r->output);
    /* reused: before_run; created: after_create first */
    if (o->created)
        st_after_create(o);
    else
        st_before_run(o);
}

/* info.branch: spec.branch, else what is checked out. */
static void resolve_branch(ws_op *o)
{
    if (o->branch) {
        o->cur_branch = bt_xstrdup(o->branch);
        st_after_create(o);
        return;
    }
    const char *argv[] = {"git", "rev-parse", "--abbrev-ref", "HEAD", NULL};
    run_git(o, argv, o->path, local_timeout(o), got_branch);
}

static void strip_origin(ws_op *o, const char *line)
{
    free(o->cur_base);
    o->cur_base = bt_xstrdup(strncmp(line, "origin/", 7) == 0 ? line + 7 : line);
}

static void reuse_got_default(ws_op *o, const bt_proc_result *r)
{
    if (proc_ok(r) && r->output[0]) {
        char *line = first_line(r->output);
        strip_origin(o, line);
        free(line);
    }
    const char *argv[] = {"git", "rev-parse", "--abbrev-ref", "HEAD", NULL};
    run_git(o, argv, o->path, local_timeout(o), got_branch);
}

static int is_git_dir(const char *path)
{
    bt_strbuf g = BT_STRBUF_INIT;
    bt_strbuf_addf(&g, "%s/.git", path);
    struct stat st;
    int yes = lstat(g.buf, &st) == 0;
    bt_strbuf_release(&g);
    return yes;
}

/* An existing directory: nothing is cloned or reset; find its branch, then before_run. */
static void st_reuse(ws_op *o)
{
    o->created = 0;
    if (!is_git_dir(o->path)) {
        st_before_run(o);
        return;
    }
    if (o->base) {
        o->cur_base = bt_xstrdup(o->base);
        const char *argv[] = {"git", "rev-parse", "--abbrev-ref", "HEAD", NULL};
        run_git(o, argv, o->path, local_timeout(o), got_branch);
        return;
    }
    const char *argv[] = {"git", "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD",
                          NULL};
    run_git(o, argv, o->path, local_timeout(o), reuse_got_default);
}

/* strategy clone */

static void clone_got_default(ws_op *o, const bt_proc_result *r)
{
    if (proc_ok(r) && r->output[0]) {
        char *line = first_line(r->output);
        strip_origin(o, line);
        free(line);
    }
    resolve_branch(o);
}

/* After the checkout: info.base is spec.base, else the clone's origin/HEAD. */
static void clone_resolve_base(ws_op *o)
{
    if (o->base) {
        o->cur_base = bt_xstrdup(o->base);
        resolve_branch(o);
        return;
    }
    const char *argv[] = {"git", "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD",
                          NULL};
    run_git(o, argv, o->path, local_timeout(o), clone_got_default);
}

static void clone_checked_out(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        fail_git(o, BT_EIO, r, local_timeout(o));
        return;
    }
    clone_resolve_base(o);
}

static void clone_checkout(ws_op *o)
{
    if (!o->branch) {
        clone_resolve_base(o);
        return;
    }
    bt_strbuf start = BT_STRBUF_INIT;
    if (o->base)
        bt_strbuf_addf(&start, "refs/remotes/origin/%s", o->base);
    const char *argv[] = {
        "git", "checkout", "-q", "--no-track", "-B", o->branch, o->base ? start.buf : NULL, NULL};
    run_git(o, argv, o->path, local_timeout(o), clone_checked_out);
    bt_strbuf_release(&start);
}

static void fail_no_base(ws_op *o, const char *base)
{
    char *url = bt_git_url_strip_credentials(o->repo);
    bt_error e = BT_ERROR_INIT;
    bt_errorf(&e, BT_ENOENT,
              "base branch '%s' does not exist in %s (no origin/%s after fetching); check the "
              "base branch setting",
              base, url, base);
    free(url);
    finish(o, e.code, &e);
}

static void clone_base_verified(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        fail_no_base(o, o->base);
        return;
    }
    clone_checkout(o);
}

static void cloned(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        label_repo(o, "git clone");
        fail_git(o, BT_EIO, r, NET_TIMEOUT_MS);
        return;
    }
    if (!o->base) {
        clone_checkout(o);
        return;
    }
    bt_strbuf ref = BT_STRBUF_INIT;
    bt_strbuf_addf(&ref, "refs/remotes/origin/%s", o->base);
    const char *argv[] = {"git", "rev-parse", "--verify", "--quiet", ref.buf, NULL};
    run_git(o, argv, o->path, local_timeout(o), clone_base_verified);
    bt_strbuf_release(&ref);
}

static void st_clone(ws_op *o)
{
    o->created = o->populating = 1;
    const char *argv[] = {"git", "clone", "--quiet", "--", o->repo, o->path, NULL};
    run_git(o, argv, o->w->root, NET_TIMEOUT_MS, cloned);
}

/* strategy worktree */

static void wt_added(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        fail_git(o, BT_EIO, r, local_timeout(o));
        return;
    }
    mirror_leave(o);
    resolve_branch(o);
}

static void wt_pruned(ws_op *o, const bt_proc_result *r)
{
    (void)r; /* a failed prune only leaves stale records behind */
    bt_strbuf start = BT_STRBUF_INIT;
    bt_strbuf_addf(&start, "refs/remotes/origin/%s", o->cur_base);
    o->created = o->populating = 1;
    if (o->branch) {
        const char *argv[] = {"git",        "-C", o->cache,  "worktree", "add",     "--quiet",
                              "--no-track", "-B", o->branch, o->path,    start.buf, NULL};
        run_git(o, argv, o->w->root, local_timeout(o), wt_added);
    } else {
        const char *argv[] = {"git",     "-C",       o->cache, "worktree", "add",
                              "--quiet", "--detach", o->path,  start.buf,  NULL};
        run_git(o, argv, o->w->root, local_timeout(o), wt_added);
    }
    bt_strbuf_release(&start);
}

static void wt_base_verified(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        fail_no_base(o, o->cur_base);
        return;
    }
    const char *argv[] = {"git", "-C", o->cache, "worktree", "prune", NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_pruned);
}

static void wt_verify_base(ws_op *o)
{
    bt_strbuf ref = BT_STRBUF_INIT;
    bt_strbuf_addf(&ref, "refs/remotes/origin/%s", o->cur_base);
    const char *argv[] = {"git", "-C", o->cache, "rev-parse", "--verify", "--quiet", ref.buf, NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_base_verified);
    bt_strbuf_release(&ref);
}

static void wt_got_default(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r) || !r->output[0]) {
        char *url = bt_git_url_strip_credentials(o->repo);
        bt_error e = BT_ERROR_INIT;
        bt_errorf(&e, BT_ENOENT,
                  "cannot tell the default branch of %s (its HEAD names no branch); set a base "
                  "branch",
                  url);
        free(url);
        finish(o, e.code, &e);
        return;
    }
    char *line = first_line(r->output);
    strip_origin(o, line);
    free(line);
    wt_verify_base(o);
}

/* The base: spec.base, else the branch the mirror's HEAD names (a bare clone copies
 * the remote's HEAD). */
static void wt_base(ws_op *o)
{
    if (o->base) {
        o->cur_base = bt_xstrdup(o->base);
        wt_verify_base(o);
        return;
    }
    const char *argv[] = {"git",     "-C",      o->cache, "symbolic-ref",
                          "--quiet", "--short", "HEAD",   NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_got_default);
}

static void wt_head_set(ws_op *o, const bt_proc_result *r)
{
    (void)r; /* without origin/HEAD, commit-and-push counts against all remote refs */
    o->cache_fresh = 0;
    wt_base(o);
}

/* A new mirror: point refs/remotes/origin/HEAD at the default branch, as a normal clone
 * has it (the worktrees share the mirror's refs, so git.c's ahead count finds it). */
static void wt_got_cache_head(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r) || strncmp(r->output, "refs/heads/", 11) != 0) {
        wt_head_set(o, r);
        return;
    }
    char *line = first_line(r->output + 11);
    bt_strbuf target = BT_STRBUF_INIT;
    bt_strbuf_addf(&target, "refs/remotes/origin/%s", line);
    const char *argv[] = {"git",      "-C", o->cache, "symbolic-ref", "refs/remotes/origin/HEAD",
                          target.buf, NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_head_set);
    bt_strbuf_release(&target);
    free(line);
}

static void wt_fetched(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        label_repo(o, "git fetch");
        fail_git(o, BT_EIO, r, NET_TIMEOUT_MS);
        return;
    }
    if (!o->cache_fresh) {
        wt_base(o);
        return;
    }
    const char *argv[] = {"git", "-C", o->cache, "symbolic-ref", "HEAD", NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_got_cache_head);
}

static void wt_fetch(ws_op *o)
{
    const char *argv[] = {"git", "-C", o->cache, "fetch", "--prune", "--quiet", "origin", NULL};
    run_git(o, argv, o->w->root, NET_TIMEOUT_MS, wt_fetched);
}

static void wt_configured(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        fail_git(o, BT_EIO, r, local_timeout(o));
        return;
    }
    wt_fetch(o);
}

static void wt_bare_cloned(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r)) {
        label_repo(o, "git clone --bare");
        fail_git(o, BT_EIO, r, NET_TIMEOUT_MS);
        return;
    }
    /* Remote-tracking refs instead of the bare clone's refs/heads mapping, so worktree
     * branches (refs/heads/...) and the remote's branches never collide. */
    const char *argv[] = {"git",
                          "-C",
                          o->cache,
                          "config",
                          "remote.origin.fetch",
                          "+refs/heads/*:refs/remotes/origin/*",
                          NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_configured);
}

static void wt_locked(ws_op *o)
{
    struct stat st;
    if (stat(o->cache, &st) == 0 && S_ISDIR(st.st_mode)) {
        wt_fetch(o);
        return;
    }
    bt_strbuf dir = BT_STRBUF_INIT;
    bt_strbuf_addf(&dir, "%s/%s", o->w->root, MIRRORS_DIR);
    bt_error e = BT_ERROR_INIT;
    int rc = bt_path_mkdirs(dir.buf, 0755, &e);
    bt_strbuf_release(&dir);
    if (rc < 0) {
        finish(o, rc, &e);
        return;
    }
    o->cache_fresh = 1;
    const char *argv[] = {"git", "clone", "--bare", "--quiet", "--", o->repo, o->cache, NULL};
    run_git(o, argv, o->w->root, NET_TIMEOUT_MS, wt_bare_cloned);
}

static void st_prepare(ws_op *o)
{
    bt_error e = BT_ERROR_INIT;
    bt_strbuf p = BT_STRBUF_INIT;
    int rc = bt_path_mkdirs(o->w->root, 0755, &e); /* someone may have removed it */
    if (rc == 0)
        rc = bt_workspaces_path(o->w, o->identifier, &p, &e); /* again: things change */
    bt_strbuf_release(&p);
    if (rc < 0) {
        finish(o, rc, &e);
        return;
    }
    struct stat st;
    if (stat(o->path, &st) == 0) {
        st_reuse(o);
        return;
    }
    if (!o->repo) {
        rc = mkdir(o->path, 0755);
        if (rc != 0) {
            bt_errorf(&e, BT_EIO, "cannot create workspace %s: %s", o->path, strerror(errno));
            finish(o, e.code, &e);
            return;
        }
        o->created = o->populating = 1;
        st_after_create(o);
    } else if (o->w->cfg->strategy == BT_WS_WORKTREE) {
        mirror_enter(o, wt_locked);
    } else {
        st_clone(o);
    }
}

static ws_op *find_op(const bt_workspaces *w, const char *key)
{
    for (ws_op *o = w->ops; o; o = o->next)
        if (o->kind != OP_AFTER_RUN && o->key && strcmp(o->key, key) == 0)
            return o;
    return NULL;
}

static int bad_ref_name(const char *s)
{
    return s && (!*s || s[0] == '-' || strstr(s, "..") || strchr(s, ' '));
}

int bt_workspaces_prepare(bt_workspaces *w, const bt_workspace_spec *spec, bt_workspace_done_fn cb,
                          void *ud, bt_error *err)
{
    if (!spec || !cb)
        return bt_errorf(err, BT_EINVAL, "preparing a workspace needs a spec and a callback");
    if (bad_ref_name(spec->branch) || bad_ref_name(spec->base))
        return bt_errorf(err, BT_EINVAL, "'%s' is not a usable git branch name",
                         bad_ref_name(spec->branch) ? spec->branch : spec->base);
    if (spec->repo && (!*spec->repo || spec->repo[0] == '-'))
        return bt_errorf(err, BT_EINVAL, "'%s' is not a usable git repository", spec->repo);
    bt_strbuf path = BT_STRBUF_INIT;
    int rc = bt_workspaces_path(w, spec->identifier, &path, err);
    if (rc < 0) {
        bt_strbuf_release(&path);
        return rc;
    }
    bt_strbuf key = BT_STRBUF_INIT;
    bt_workspace_key(spec->identifier, &key);
    if (find_op(w, key.buf)) {
        rc = bt_errorf(err, BT_EBUSY,
                       "the workspace %s is already being prepared or removed; try again when "
                       "that finishes",
                       key.buf);
        bt_strbuf_release(&key);
        bt_strbuf_release(&path);
        return rc;
    }
    ws_op *o = op_new(w, OP_PREPARE);
    o->identifier = bt_xstrdup(spec->identifier);
    o->repo = bt_xstrdup(spec->repo);
    o->branch = bt_xstrdup(spec->branch);
    o->base = bt_xstrdup(spec->base);
    o->path = bt_strbuf_detach(&path, NULL);
    o->key = bt_strbuf_detach(&key, NULL);
    for (size_t i = 0; spec->git_env && spec->git_env[i]; i++)
        if (strchr(spec->git_env[i], '='))
            bt_strvec_push(&o->git_env, spec->git_env[i]);
    bt_strvec_push(&o->git_env, "GIT_TERMINAL_PROMPT=0");
    for (size_t i = 0; spec->hook_env && spec->hook_env[i]; i++)
        if (strchr(spec->hook_env[i], '='))
            bt_strvec_push(&o->hook_env, spec->hook_env[i]);
    if (o->repo && w->cfg->strategy == BT_WS_WORKTREE)
        o->cache = mirror_path(w, o->repo);
    o->done = cb;
    o->ud = ud;
    defer(o, st_prepare);
    return 0;
}

/* ---- after_run ---- */

static void st_after_run(ws_op *o)
{
    const char *script = o->w->cfg->hooks.after_run;
    if (!script || !*script) {
        finish(o, 0, NULL);
        return;
    }
    bt_error e = BT_ERROR_INIT;
    struct stat st;
    if (lstat(o->path, &st) != 0 || check_contained(o->w, o->path, &e) < 0) {
        bt_log_warn(o->w->log, "after_run hook skipped: not a workspace",
                    BT_LF_STR("path", o->path), BT_LF_STR("error", e.msg[0] ? e.msg : NULL));
        finish(o, 0, NULL);
        return;
    }
    run_hook(o, "after_run", script, 0, succeed);
}

void bt_workspaces_after_run(bt_workspaces *w, const char *path, const char *const *hook_env,
                             bt_workspace_cb cb, void *ud)
{
    ws_op *o = op_new(w, OP_AFTER_RUN);
    o->path = bt_xstrdup(path ? path : "");
    const char *slash = strrchr(o->path, '/');
    o->key = bt_xstrdup(slash ? slash + 1 : o->path);
    for (size_t i = 0; hook_env && hook_env[i]; i++)
        if (strchr(hook_env[i], '='))
            bt_strvec_push(&o->hook_env, hook_env[i]);
    o->cb = cb;
    o->ud = ud;
    defer(o, st_after_run);
}

/* ---- remove ---- */

/* Deleting a large tree (node_modules, build output) takes long enough to stall every
 * other client of the loop, so it runs on libuv's thread pool; it touches only o->path,
 * which nothing changes meanwhile. */
static void rm_work(uv_work_t *req)
{
    ws_op *o = req->data;
    o->rm_rc = rm_tree(o->path);
}

static void rm_done(uv_work_t *req, int status)
{
    ws_op *o = req->data;
    int r = status < 0 ? -EIO : o->rm_rc;
    if (r < 0) {
        bt_error e = BT_ERROR_INIT;
        bt_errorf(&e, BT_EIO, "cannot remove workspace %s: %s", o->path, strerror(-r));
        finish(o, e.code, &e);
        return;
    }
    bt_log_info(o->w->log, "workspace removed", BT_LF_STR("key", o->key),
                BT_LF_STR("path", o->path));
    finish(o, 0, NULL);
}

static void rm_dir(ws_op *o)
{
    o->work.data = o;
    int rc = uv_queue_work(o->w->loop, &o->work, rm_work, rm_done);
    if (rc < 0) {
        bt_error e = BT_ERROR_INIT;
        bt_errorf(&e, BT_EIO, "cannot remove workspace %s: %s", o->path, uv_strerror(rc));
        finish(o, e.code, &e);
    }
}

static void wt_rm_pruned(ws_op *o, const bt_proc_result *r)
{
    (void)r;
    mirror_leave(o);
    rm_dir(o);
}

static void wt_rm_removed(ws_op *o, const bt_proc_result *r)
{
    if (!proc_ok(r))
        bt_log_debug(o->w->log, "git worktree remove failed; removing the directory instead",
                     BT_LF_STR("path", o->path), BT_LF_INT("exit", r->exit_code));
    const char *argv[] = {"git", "-C", o->cache, "worktree", "prune", NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_rm_pruned);
}

static void wt_rm_locked(ws_op *o)
{
    const char *argv[] = {"git", "-C", o->cache, "worktree", "remove", "--force", o->path, NULL};
    run_git(o, argv, o->w->root, local_timeout(o), wt_rm_removed);
}

static void st_rm_worktree(ws_op *o)
{
    o->cache = worktree_mirror(o->w, o->path);
    if (!o->cache) {
        rm_dir(o);
        return;
    }
    mirror_enter(o, wt_rm_locked);
}

static void st_remove(ws_op *o)
{
    struct stat st;
    if (lstat(o->path, &st) != 0) {
        if (errno == ENOENT) {
            finish(o, 0, NULL);
        } else {
            bt_error e = BT_ERROR_INIT;
            bt_errorf(&e, BT_EIO, "cannot inspect workspace %s: %s", o->path, strerror(errno));
            finish(o, e.code, &e);
        }
        return;
    }
    if (!S_ISDIR(st.st_mode)) { /* a symlink (never followed) or a stray file */
        if (unlink(o->path) != 0 && errno != ENOENT) {
            bt_error e = BT_ERROR_INIT;
            bt_errorf(&e, BT_EIO, "cannot remove %s: %s", o->path, strerror(errno));
            finish(o, e.code, &e);
            return;
        }
        finish(o, 0, NULL);
        return;
    }
    run_hook(o, "before_remove", o->w->cfg->hooks.before_remove, 0, st_rm_worktree);
}

static void fail_busy(ws_op *o)
{
    bt_error e = BT_ERROR_INIT;
    bt_errorf(&e, BT_EBUSY,
              "the workspace %s is being prepared or removed; remove it when that finishes",
              o->key);
    finish(o, e.code, &e);
}

void bt_workspaces_remove(bt_workspaces *w, const char *identifier, const char *const *hook_env,
                          bt_workspace_cb cb, void *ud)
{
    bt_strbuf key = BT_STRBUF_INIT;
    bt_workspace_key(identifier, &key);
    int busy = find_op(w, key.buf) != NULL;
    ws_op *o = op_new(w, OP_REMOVE);
    o->identifier = bt_xstrdup(identifier ? identifier : "");
    o->key = bt_strbuf_detach(&key, NULL);
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s/%s", strcmp(w->root, "/") == 0 ? "" : w->root, o->key);
    o->path = bt_strbuf_detach(&p, NULL);
    for (size_t i = 0; hook_env && hook_env[i]; i++)
        if (strchr(hook_env[i], '='))
            bt_strvec_push(&o->hook_env, hook_env[i]);
    o->cb = cb;
    o->ud = ud;
    defer(o, busy ? fail_busy : st_remove);
}

/* ---- the manager ---- */

int bt_workspaces_new(const bt_workspaces_opts *o, bt_workspaces **out, bt_error *err)
{
    *out = NULL;
    if (!o || !o->loop || !o->cfg || !o->cfg->root || !*o->cfg->root)
        return bt_errorf(err, BT_EINVAL, "the workspace manager needs a loop and workspace.root");
    int rc = bt_path_mkdirs(o->cfg->root, 0755, err);
    if (rc < 0)
        return bt_error_prefix(err, "workspace.root");
    char *root = realpath(o->cfg->root, NULL);
    if (!root)
        return bt_errorf(err, BT_EIO, "workspace.root %s cannot be resolved: %s", o->cfg->root,
                         strerror(errno));
    bt_workspaces *w = bt_xcalloc(1, sizeof *w);
    w->loop = o->loop;
    w->cfg = o->cfg;
    w->log = o->log;
    w->root = root;
    *out = w;
    return 0;
}

void bt_workspaces_cancel_all(bt_workspaces *w)
{
    if (!w)
        return;
    for (ws_op *o = w->ops; o; o = o->next) {
        if (o->cancelled)
            continue;
        o->cancelled = 1;
        if (o->proc) {
            bt_proc_cancel(o->proc);
        } else if (o->m && !o->holds_mirror) {
            mirror_leave(o); /* waiting for a mirror: leave the queue */
            defer(o, fail_cancelled);
        }
        /* else its timer is pending and sees the flag */
    }
}

void bt_workspaces_free(bt_workspaces *w)
{
    if (!w)
        return;
    mirror *m = w->mirrors;
    while (m) {
        mirror *n = m->next;
        free(m->path);
        free(m);
        m = n;
    }
    free(w->root);
    free(w);
}

int bt_workspaces_busy(const bt_workspaces *w)
{
    int n = 0;
    for (const ws_op *o = w ? w->ops : NULL; o; o = o->next)
        n++;
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **bt_workspaces_list(const bt_workspaces *w)
{
    bt_strvec keys = BT_STRVEC_INIT;
    DIR *d = opendir(w->root);
    if (d) {
        const struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            struct stat st;
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
                bt_strvec_push(&keys, de->d_name);
        }
        closedir(d);
    }
    if (keys.len)
        qsort(keys.items, keys.len, sizeof *keys.items, cmp_str);
    bt_vec_reserve(&keys, keys.len + 1);
    keys.items[keys.len] = NULL;
    return keys.items;
}

void bt_workspaces_list_free(char **keys)
{
    for (size_t i = 0; keys && keys[i]; i++)
        free(keys[i]);
    free(keys);
}
