/*
 * test_workspace.c - the workspace manager with real git, real hooks and a real loop:
 * keys that cannot leave the root ("../../etc", ".mirrors"), a symlink or a file at a
 * workspace's place refused; clone strategy on a branch with after_create once and
 * before_run on every prepare (a reused workspace keeps its files); hook failures and
 * timeouts (fatal ones fail the prepare with the hook's name, exit status and output,
 * and a half-made directory goes away; a timed-out hook's process group is gone);
 * after_run failures only logged; remove with before_remove that never follows a
 * symlink out of the tree; the worktree strategy sharing one mirror between items,
 * with a push from a worktree reaching the remote; credentials in git_env reaching git
 * but never .git/config or the hooks; cancel_all; and a base branch that does not exist.
 * Every callback is checked to run exactly once and never inside the starting call.
 */
#include "testutil.h"

#include "base/error.h"
#include "base/mem.h"
#include "base/path.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "config/config.h"
#include "obs/log.h"
#include "workspace/git.h"
#include "workspace/workspace.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define WATCHDOG_MS 60000
#define TOKEN       "SECRETTOKEN123"

/* ---- helpers ---- */

static char *slurp(const char *path)
{
    char *data = NULL;
    size_t len;
    if (bt_path_read_file(path, 1 << 20, &data, &len, NULL) != 0)
        return bt_xstrdup("");
    return data;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int count_lines(const char *path, const char *prefix)
{
    char *data = slurp(path);
    int n = 0;
    for (char *line = data; *line;) {
        char *nl = strchr(line, '\n');
        n += strncmp(line, prefix, strlen(prefix)) == 0;
        if (!nl)
            break;
        line = nl + 1;
    }
    free(data);
    return n;
}

typedef struct fx {
    char *dir;
    char root[1024], remote[1024], hooks_log[1024];
    char after_create[8192], before_run[8192], after_run[8192], before_remove[8192];
    bt_config_workspace cfg;
    uv_loop_t loop;
    bt_workspaces *w;
    char *logbuf;
    size_t loglen;
    FILE *logf;
    bt_log *log;
} fx;

/* A bare remote with one commit on main, a workspace root, and a manager. */
static void fx_init(fx *f, bt_ws_strategy strategy)
{
    memset(f, 0, sizeof *f);
    f->dir = bt_test_tmpdir("ws");
    snprintf(f->root, sizeof f->root, "%s/root", f->dir);
    snprintf(f->remote, sizeof f->remote, "%s/remote.git", f->dir);
    snprintf(f->hooks_log, sizeof f->hooks_log, "%s/hooks.log", f->dir);
    bt_test_sh("git init -q --bare -b main %s", f->remote);
    bt_test_sh("git clone -q %s %s/seed 2>/dev/null", f->remote, f->dir);
    bt_test_sh(
        "cd %s/seed && echo hello > README && git add README && "
        "git -c user.name=t -c user.email=t@t commit -qm init && git push -q origin HEAD:main && "
        "git checkout -qb develop && echo dev > DEV && git add DEV && "
        "git -c user.name=t -c user.email=t@t commit -qm dev && git push -q origin develop",
        f->dir);
    f->cfg.root = f->root;
    f->cfg.strategy = strategy;
    f->cfg.hook_timeout_ms = 20000;
    f->logf = open_memstream(&f->logbuf, &f->loglen);
    f->log = bt_log_new(f->logf, BT_LOG_DEBUG);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    bt_workspaces_opts o = {.loop = &f->loop, .cfg = &f->cfg, .log = f->log};
    bt_error err = BT_ERROR_INIT;
    if (bt_workspaces_new(&o, &f->w, &err) != 0)
        fail_msg("%s", err.msg);
}

/* A hook that appends "<name> <BATON_HOOK> <key> <TASK_ID> <cwd>" to hooks.log, then
 * runs extra (may be ""). */
static char *hook(fx *f, char *buf, const char *name, const char *extra)
{
    snprintf(buf, 8192,
             "echo \"%s $BATON_HOOK $BATON_WORKSPACE_KEY $TASK_ID $(pwd -P) $BATON_WORKSPACE\" "
             ">> %s; %s",
             name, f->hooks_log, extra);
    return buf;
}

static const char *log_text(fx *f)
{
    fflush(f->logf);
    return f->logbuf ? f->logbuf : "";
}

static void fx_free(fx *f)
{
    assert_int_equal(bt_workspaces_busy(f->w), 0);
    bt_workspaces_free(f->w);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_log_free(f->log);
    fclose(f->logf);
    free(f->logbuf);
    bt_test_rmdir(f->dir);
}

typedef struct res {
    int calls;
    int in_call;
    int called_in_call;
    int rc;
    char msg[BT_ERROR_MSG_MAX];
    char *path, *key, *branch, *base;
    int created;
    int64_t t_done;
} res;

static void res_free(res *r)
{
    free(r->path);
    free(r->key);
    free(r->branch);
    free(r->base);
    memset(r, 0, sizeof *r);
}

static void on_ready(int rc, const bt_error *err, const bt_workspace_info *info, void *ud)
{
    res *r = ud;
    r->calls++;
    r->called_in_call |= r->in_call;
    r->rc = rc;
    r->t_done = bt_time_mono_ms();
    if (rc < 0) {
        assert_non_null(err);
        assert_null(info);
        snprintf(r->msg, sizeof r->msg, "%s", err->msg);
        return;
    }
    assert_non_null(info);
    r->path = bt_xstrdup(info->path);
    r->key = bt_xstrdup(info->key);
    r->branch = bt_xstrdup(info->branch);
    r->base = bt_xstrdup(info->base);
    r->created = info->created;
}

static void on_cb(int rc, const bt_error *err, void *ud)
{
    res *r = ud;
    r->calls++;
    r->called_in_call |= r->in_call;
    r->rc = rc;
    if (rc < 0)
        snprintf(r->msg, sizeof r->msg, "%s", err ? err->msg : "");
}

static void start_prepare(fx *f, const bt_workspace_spec *s, res *r)
{
    bt_error err = BT_ERROR_INIT;
    r->in_call = 1;
    int rc = bt_workspaces_prepare(f->w, s, on_ready, r, &err);
    r->in_call = 0;
    if (rc != 0)
        fail_msg("prepare refused: %s", err.msg);
}

static void prepare(fx *f, const bt_workspace_spec *s, res *r)
{
    start_prepare(f, s, r);
    bt_test_run_loop(&f->loop, WATCHDOG_MS);
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->called_in_call, 0);
}

static void remove_ws(fx *f, const char *identifier, res *r)
{
    r->in_call = 1;
    bt_workspaces_remove(f->w, identifier, NULL, on_cb, r);
    r->in_call = 0;
    bt_test_run_loop(&f->loop, WATCHDOG_MS);
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->called_in_call, 0);
}

static char *expected_path(fx *f, const char *key)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/%s", bt_workspaces_root(f->w), key);
    return bt_strbuf_detach(&sb, NULL);
}

/* ---- keys and paths ---- */

/* One branch rule for the local pipeline and /work/next: placeholders, ref-safe values,
 * and templates git would refuse reported with the reason. */
static void test_branch_names(void **state)
{
    (void)state;
    bt_strbuf b = BT_STRBUF_INIT;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_workspace_branch(NULL, "42", "acme/app#42", "01J", &b, &err), 0);
    assert_string_equal(b.buf, "ai-feature/issue-42");
    bt_strbuf_reset(&b);
    /* no number: the identifier, made ref-safe */
    assert_int_equal(bt_workspace_branch("", NULL, "acme/app#42", "01J", &b, &err), 0);
    assert_string_equal(b.buf, "ai-feature/issue-acme-app-42");
    bt_strbuf_reset(&b);
    assert_int_equal(
        bt_workspace_branch("bot/{{ key }}/{{id}}", "7", "FEAT 12: x", "01J", &b, &err), 0);
    assert_string_equal(b.buf, "bot/FEAT_12__x/01J");
    bt_strbuf_reset(&b);
    assert_int_equal(bt_workspace_branch("x/{{title}}", "7", "i", "id", &b, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "{{title}}"));
    bt_strbuf_reset(&b);
    assert_int_equal(bt_workspace_branch("x/{{number", "7", "i", "id", &b, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "unclosed"));
    const char *bad[] = {"a..b/{{number}}",       "/abs-{{number}}", "x/{{number}}.lock",
                         "with space-{{number}}", "x//{{number}}",   "x/{{number}}/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bt_strbuf_reset(&b);
        assert_int_equal(bt_workspace_branch(bad[i], "7", "i", "id", &b, &err), BT_EINVAL);
        assert_non_null(strstr(err.msg, "git refuses"));
    }
    bt_strbuf_release(&b);
}

static void test_keys(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"../../etc", "_.._.._etc"},
        {".mirrors", "_.mirrors"},
        {"acme/app#42", "acme_app_42"},
        {"PROJ-12", "PROJ-12"},
        {"", "_"},
        {"..", "_"},
        {".", "_"},
        {"a b/c\nd", "a_b_c_d"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bt_strbuf k = BT_STRBUF_INIT;
        bt_workspace_key(cases[i][0], &k);
        assert_string_equal(k.buf, cases[i][1]);
        bt_strbuf_release(&k);
    }

    fx f;
    fx_init(&f, BT_WS_CLONE);
    const char *root = bt_workspaces_root(f.w);
    assert_true(root[0] == '/');
    char *real = realpath(f.root, NULL);
    assert_string_equal(root, real);
    free(real);
    bt_strbuf p = BT_STRBUF_INIT;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_workspaces_path(f.w, "../../etc", &p, &err), 0);
    size_t rl = strlen(root);
    assert_memory_equal(p.buf, root, rl);
    assert_int_equal(p.buf[rl], '/');
    assert_null(strchr(p.buf + rl + 1, '/'));
    assert_string_equal(p.buf + rl + 1, "_.._.._etc");
    bt_strbuf_reset(&p);
    assert_int_equal(bt_workspaces_path(f.w, "", &p, &err), BT_EINVAL);

    /* "../../etc" as a plain workspace lands inside the root. */
    bt_workspace_spec s = {.identifier = "../../etc"};
    res r = {0};
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, 0);
    char *want = expected_path(&f, "_.._.._etc");
    assert_string_equal(r.path, want);
    assert_true(exists(want));
    free(want);
    res_free(&r);

    /* Listing: workspaces only, never the mirror cache or other dot entries. */
    bt_test_sh("mkdir -p %s/.mirrors/x.git %s/zz && touch %s/file", f.root, f.root, f.root);
    char **keys = bt_workspaces_list(f.w);
    assert_non_null(keys);
    assert_string_equal(keys[0], "_.._.._etc");
    assert_string_equal(keys[1], "zz");
    assert_null(keys[2]);
    bt_workspaces_list_free(keys);
    bt_strbuf_release(&p);
    fx_free(&f);
}

static void test_symlink_and_file_refused(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    bt_test_sh("mkdir -p %s/outside && echo keep > %s/outside/precious", f.dir, f.dir);
    bt_test_sh("ln -s %s/outside %s/evil", f.dir, f.root);
    bt_test_sh("ln -s %s/inner-target %s/inner && mkdir %s/inner-target", f.root, f.root, f.root);
    bt_test_sh("echo x > %s/afile", f.root);
    bt_strbuf p = BT_STRBUF_INIT;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_workspaces_path(f.w, "evil", &p, &err), BT_EPERM);
    assert_non_null(strstr(err.msg, "evil"));
    assert_non_null(strstr(err.msg, "outside"));
    assert_int_equal(p.len, 0);
    assert_int_equal(bt_workspaces_path(f.w, "afile", &p, &err), BT_EEXIST);
    assert_non_null(strstr(err.msg, "afile"));
    /* A symlink that stays inside the root is allowed. */
    assert_int_equal(bt_workspaces_path(f.w, "inner", &p, &err), 0);
    bt_strbuf_release(&p);

    /* prepare refuses at once, with no callback. */
    res r = {0};
    bt_workspace_spec s = {.identifier = "evil", .repo = f.remote, .branch = "b"};
    assert_int_equal(bt_workspaces_prepare(f.w, &s, on_ready, &r, &err), BT_EPERM);
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(r.calls, 0);

    /* Removing it unlinks the link; the target and its file survive. */
    remove_ws(&f, "evil", &r);
    assert_int_equal(r.rc, 0);
    char link[4200], precious[4200];
    snprintf(link, sizeof link, "%s/evil", f.root);
    snprintf(precious, sizeof precious, "%s/outside/precious", f.dir);
    assert_false(exists(link));
    assert_true(exists(precious));
    fx_free(&f);
}

/* ---- clone strategy and hooks ---- */

static void test_clone_create_and_reuse(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    f.cfg.hooks.after_create = hook(&f, f.after_create, "after_create", "");
    f.cfg.hooks.before_run = hook(&f, f.before_run, "before_run", "");
    const char *hook_env[] = {"TASK_ID=t1", NULL};
    bt_workspace_spec s = {.identifier = "acme/app#7",
                           .repo = f.remote,
                           .branch = "ai-feature/issue-7",
                           .hook_env = hook_env};
    res r = {0};
    prepare(&f, &s, &r);
    if (r.rc != 0)
        fail_msg("%s", r.msg);
    char *want = expected_path(&f, "acme_app_7");
    assert_string_equal(r.path, want);
    assert_string_equal(r.key, "acme_app_7");
    assert_string_equal(r.branch, "ai-feature/issue-7");
    assert_string_equal(r.base, "main");
    assert_int_equal(r.created, 1);
    char *head = bt_test_sh_out("git -C %s rev-parse --abbrev-ref HEAD", want);
    assert_string_equal(head, "ai-feature/issue-7");
    free(head);
    assert_true(exists(want) && r.path[0] == '/');
    /* The hooks ran in the workspace, with its variables and hook_env. */
    bt_strbuf line = BT_STRBUF_INIT;
    bt_strbuf_addf(&line, "after_create after_create acme_app_7 t1 %s %s", want, want);
    char *log = slurp(f.hooks_log);
    assert_non_null(strstr(log, line.buf));
    free(log);
    assert_int_equal(count_lines(f.hooks_log, "after_create"), 1);
    assert_int_equal(count_lines(f.hooks_log, "before_run before_run acme_app_7 t1"), 1);
    assert_non_null(strstr(log_text(&f), "workspace hook finished"));
    assert_non_null(strstr(log_text(&f), "\"hook\":\"after_create\""));

    /* Work left in the workspace; the agent moved HEAD elsewhere. */
    bt_test_sh("echo wip > %s/keep.txt && git -C %s checkout -qb agent-branch", want, want);
    res_free(&r);
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.created, 0);
    assert_string_equal(r.branch, "agent-branch"); /* not reset */
    assert_string_equal(r.base, "main");
    assert_int_equal(count_lines(f.hooks_log, "after_create"), 1);
    assert_int_equal(count_lines(f.hooks_log, "before_run"), 2);
    bt_strbuf_reset(&line);
    bt_strbuf_addf(&line, "%s/keep.txt", want);
    char *kept = slurp(line.buf);
    assert_string_equal(kept, "wip\n");
    free(kept);
    res_free(&r);

    /* A branch from another base. */
    bt_workspace_spec s2 = {.identifier = "acme/app#8",
                            .repo = f.remote,
                            .branch = "ai-feature/issue-8",
                            .base = "develop"};
    prepare(&f, &s2, &r);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.base, "develop");
    bt_strbuf_reset(&line);
    bt_strbuf_addf(&line, "%s/DEV", r.path);
    assert_true(exists(line.buf));
    res_free(&r);

    bt_strbuf_release(&line);
    free(want);
    fx_free(&f);
}

static void test_missing_base(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    bt_workspace_spec s = {.identifier = "i1", .repo = f.remote, .branch = "b", .base = "nope"};
    res r = {0};
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, BT_ENOENT);
    assert_non_null(strstr(r.msg, "'nope'"));
    char *p = expected_path(&f, "i1");
    assert_false(exists(p));
    free(p);

    /* A repository that does not exist: the clone's failure, named. */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/missing.git", f.dir);
    bt_workspace_spec s2 = {.identifier = "i2", .repo = missing};
    res r2 = {0};
    prepare(&f, &s2, &r2);
    assert_int_equal(r2.rc, BT_EIO);
    assert_non_null(strstr(r2.msg, "git clone"));
    assert_non_null(strstr(r2.msg, "missing.git"));
    assert_non_null(strstr(r2.msg, "exit 128"));
    p = expected_path(&f, "i2");
    assert_false(exists(p));
    free(p);
    fx_free(&f);
}

static void test_after_create_failure_removes(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    f.cfg.hooks.after_create = hook(&f, f.after_create, "after_create", "echo boom-output; exit 3");
    f.cfg.hooks.before_run = hook(&f, f.before_run, "before_run", "");
    bt_workspace_spec s = {.identifier = "x1", .repo = f.remote, .branch = "b1"};
    res r = {0};
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, BT_EIO);
    assert_non_null(strstr(r.msg, "after_create hook"));
    assert_non_null(strstr(r.msg, "exit 3"));
    assert_non_null(strstr(r.msg, "boom-output"));
    char *p = expected_path(&f, "x1");
    assert_false(exists(p));
    free(p);
    assert_int_equal(count_lines(f.hooks_log, "before_run"), 0);
    assert_non_null(strstr(log_text(&f), "workspace hook failed"));
    assert_non_null(strstr(log_text(&f), "\"exit\":3"));
    fx_free(&f);
}

static void test_before_run_failure_keeps(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    f.cfg.hooks.after_create = hook(&f, f.after_create, "after_create", "");
    f.cfg.hooks.before_run = hook(&f, f.before_run, "before_run", "exit 5");
    bt_workspace_spec s = {.identifier = "x2"}; /* no repo: a plain directory */
    res r = {0};
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, BT_EIO);
    assert_non_null(strstr(r.msg, "before_run hook failed (exit 5)"));
    char *p = expected_path(&f, "x2");
    assert_true(exists(p));
    /* It is reused next time: after_create does not run again. */
    res r2 = {0};
    prepare(&f, &s, &r2);
    assert_int_equal(r2.rc, BT_EIO);
    assert_int_equal(count_lines(f.hooks_log, "after_create"), 1);
    assert_int_equal(count_lines(f.hooks_log, "before_run"), 2);
    free(p);
    fx_free(&f);
}

/* 1 while any process of group pgid is alive (zombies do not count). */
static int group_alive(int pgid)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int alive = 0;
    const struct dirent *de;
    while (!alive && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        char *st = slurp(path);
        const char *rp = strrchr(st, ')');
        char state = 0;
        int ppid = 0, pgrp = 0;
        if (rp && sscanf(rp + 2, "%c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
            state != 'Z' && state != 'X')
            alive = 1;
        free(st);
    }
    closedir(d);
    return alive;
}

static void test_hook_timeout_kills_group(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    f.cfg.hook_timeout_ms = 300;
    char pidfile[4200], extra[4400];
    snprintf(pidfile, sizeof pidfile, "%s/hook.pid", f.dir);
    snprintf(extra, sizeof extra, "echo $$ > %s; sleep 30; echo never", pidfile);
    f.cfg.hooks.after_create = hook(&f, f.after_create, "after_create", extra);
    bt_workspace_spec s = {.identifier = "slow"};
    res r = {0};
    int64_t t0 = bt_time_mono_ms();
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, BT_ETIMEOUT);
    assert_non_null(strstr(r.msg, "after_create hook timed out after 300ms"));
    assert_true(r.t_done - t0 < 10000);
    char *p = expected_path(&f, "slow");
    assert_false(exists(p));
    free(p);
    char *pid = slurp(pidfile);
    int pgid = atoi(pid);
    free(pid);
    assert_true(pgid > 1);
    int64_t until = bt_time_mono_ms() + 5000;
    while (group_alive(pgid) && bt_time_mono_ms() < until)
        usleep(20000);
    assert_false(group_alive(pgid));
    assert_non_null(strstr(log_text(&f), "workspace hook timed out"));
    fx_free(&f);
}

static void test_after_run_only_logged(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    bt_workspace_spec s = {.identifier = "ar"};
    res r = {0};
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, 0);

    /* No hook configured: the callback still comes, from the loop. */
    res a0 = {0};
    a0.in_call = 1;
    bt_workspaces_after_run(f.w, r.path, NULL, on_cb, &a0);
    a0.in_call = 0;
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(a0.calls, 1);
    assert_int_equal(a0.called_in_call, 0);

    f.cfg.hooks.after_run = hook(&f, f.after_run, "after_run", "echo oops; exit 4");
    const char *env[] = {"TASK_ID=t5", NULL};
    res a = {0};
    bt_workspaces_after_run(f.w, r.path, env, on_cb, &a);
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(count_lines(f.hooks_log, "after_run after_run ar t5"), 1);
    const char *lt = log_text(&f);
    assert_non_null(strstr(lt, "workspace hook failed"));
    assert_non_null(strstr(lt, "\"hook\":\"after_run\""));
    assert_non_null(strstr(lt, "\"exit\":4"));
    assert_non_null(strstr(lt, "oops"));

    /* A path outside the root: the hook does not run there. */
    res b = {0};
    bt_workspaces_after_run(f.w, f.dir, env, on_cb, &b);
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, 0);
    assert_int_equal(count_lines(f.hooks_log, "after_run"), 1);
    res_free(&r);
    fx_free(&f);
}

static void test_remove(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    f.cfg.hooks.before_remove = hook(&f, f.before_remove, "before_remove", "exit 9");
    bt_workspace_spec s = {.identifier = "acme/app#9", .repo = f.remote, .branch = "b9"};
    res r = {0};
    prepare(&f, &s, &r);
    assert_int_equal(r.rc, 0);
    bt_test_sh("mkdir -p %s/outside && echo keep > %s/outside/precious", f.dir, f.dir);
    bt_test_sh("ln -s %s/outside %s/link && ln -s %s/outside/precious %s/filelink", f.dir, r.path,
               f.dir, r.path);
    bt_test_sh("mkdir -p %s/ro/sub && touch %s/ro/sub/f && chmod 0555 %s/ro/sub %s/ro", r.path,
               r.path, r.path, r.path);
    res rm = {0};
    remove_ws(&f, "acme/app#9", &rm);
    assert_int_equal(rm.rc, 0); /* before_remove's failure is only logged */
    assert_false(exists(r.path));
    char precious[4200];
    snprintf(precious, sizeof precious, "%s/outside/precious", f.dir);
    char *kept = slurp(precious);
    assert_string_equal(kept, "keep\n");
    free(kept);
    assert_int_equal(count_lines(f.hooks_log, "before_remove before_remove acme_app_9"), 1);

    /* Nothing there: rc 0, and no hook. */
    res again = {0};
    remove_ws(&f, "acme/app#9", &again);
    assert_int_equal(again.rc, 0);
    assert_int_equal(count_lines(f.hooks_log, "before_remove"), 1);
    res_free(&r);
    fx_free(&f);
}

/* ---- credentials ---- */

static void test_git_env_reaches_git_only(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    char envfile[4200], extra[4400];
    snprintf(envfile, sizeof envfile, "%s/hook.env", f.dir);
    snprintf(extra, sizeof extra, "env > %s", envfile);
    f.cfg.hooks.before_run = hook(&f, f.before_run, "before_run", extra);
    /* The repository URL only resolves through git_env (url.<path>.insteadOf), so the
     * clone proves git got it; a token for another host rides along. */
    bt_strvec env = BT_STRVEC_INIT;
    bt_strvec_push(&env, "GIT_CONFIG_COUNT=1");
    bt_strvec_pushf(&env, "GIT_CONFIG_KEY_0=url.%s.insteadOf", f.remote);
    bt_strvec_push(&env, "GIT_CONFIG_VALUE_0=baton-test://remote");
    assert_int_equal(bt_git_auth_env("https://example.invalid/", NULL, TOKEN, &env, NULL), 0);
    const char *hook_env[] = {"TASK_ID=t9", NULL};
    bt_workspace_spec s = {.identifier = "cred",
                           .repo = "baton-test://remote",
                           .branch = "ai-feature/issue-9",
                           .git_env = (const char *const *)env.items,
                           .hook_env = hook_env};
    res r = {0};
    prepare(&f, &s, &r);
    if (r.rc != 0)
        fail_msg("%s", r.msg);
    assert_string_equal(r.base, "main");
    char cfgpath[4200];
    snprintf(cfgpath, sizeof cfgpath, "%s/.git/config", r.path);
    char *cfg = slurp(cfgpath);
    assert_non_null(strstr(cfg, "baton-test://remote"));
    assert_null(strstr(cfg, "extraHeader"));
    assert_null(strstr(cfg, "insteadOf"));
    assert_null(strstr(cfg, TOKEN));
    free(cfg);
    char *henv = slurp(envfile);
    assert_non_null(strstr(henv, "BATON_HOOK=before_run"));
    assert_non_null(strstr(henv, "BATON_WORKSPACE_KEY=cred"));
    assert_non_null(strstr(henv, "TASK_ID=t9"));
    assert_null(strstr(henv, "GIT_CONFIG_KEY"));
    assert_null(strstr(henv, "GIT_CONFIG_COUNT"));
    assert_null(strstr(henv, "GIT_ASKPASS"));
    assert_null(strstr(henv, TOKEN));
    free(henv);
    assert_null(strstr(log_text(&f), TOKEN));
    bt_strvec_clear(&env);
    res_free(&r);
    fx_free(&f);
}

/* ---- worktree strategy ---- */

typedef struct push_res {
    int calls, rc, ahead;
    char *commit;
} push_res;

static void on_pushed(int rc, const bt_error *err, const bt_git_push_result *r, void *ud)
{
    push_res *p = ud;
    p->calls++;
    p->rc = rc;
    if (rc < 0) {
        fail_msg("push failed: %s", err->msg);
        return;
    }
    p->commit = bt_xstrdup(r->commit);
    p->ahead = r->ahead;
}

static void test_worktree_shared_mirror(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_WORKTREE);
    f.cfg.hooks.after_create = hook(&f, f.after_create, "after_create", "");
    bt_strvec env = BT_STRVEC_INIT;
    assert_int_equal(bt_git_auth_env("https://example.invalid/", NULL, TOKEN, &env, NULL), 0);
    bt_workspace_spec a = {.identifier = "o/r#1",
                           .repo = f.remote,
                           .branch = "ai-feature/issue-1",
                           .git_env = (const char *const *)env.items};
    bt_workspace_spec b = {.identifier = "o/r#2", .repo = f.remote, .branch = "ai-feature/issue-2"};
    res ra = {0}, rb = {0};
    /* Both at once: the second waits for the mirror. */
    start_prepare(&f, &a, &ra);
    start_prepare(&f, &b, &rb);
    assert_int_equal(bt_workspaces_busy(f.w), 2);
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(ra.calls, 1);
    assert_int_equal(rb.calls, 1);
    if (ra.rc != 0 || rb.rc != 0)
        fail_msg("%s / %s", ra.msg, rb.msg);
    assert_int_equal(ra.created, 1);
    assert_int_equal(rb.created, 1);
    assert_string_equal(ra.base, "main");
    char *ha = bt_test_sh_out("git -C %s rev-parse --abbrev-ref HEAD", ra.path);
    char *hb = bt_test_sh_out("git -C %s rev-parse --abbrev-ref HEAD", rb.path);
    assert_string_equal(ha, "ai-feature/issue-1");
    assert_string_equal(hb, "ai-feature/issue-2");
    free(ha);
    free(hb);
    assert_int_equal(count_lines(f.hooks_log, "after_create"), 2);

    /* One mirror, shared. */
    char *mirrors = bt_test_sh_out("ls %s/.mirrors", f.root);
    assert_null(strchr(mirrors, '\n'));
    assert_true(strlen(mirrors) > 4 && strcmp(mirrors + strlen(mirrors) - 4, ".git") == 0);
    char *ca = bt_test_sh_out("git -C %s rev-parse --git-common-dir", ra.path);
    char *cb = bt_test_sh_out("git -C %s rev-parse --git-common-dir", rb.path);
    assert_string_equal(ca, cb);
    assert_non_null(strstr(ca, "/.mirrors/"));
    char cfgpath[4200];
    snprintf(cfgpath, sizeof cfgpath, "%s/config", ca);
    char *cfg = slurp(cfgpath);
    assert_null(strstr(cfg, "extraHeader"));
    assert_null(strstr(cfg, TOKEN));
    free(cfg);
    char **keys = bt_workspaces_list(f.w);
    assert_string_equal(keys[0], "o_r_1");
    assert_string_equal(keys[1], "o_r_2");
    assert_null(keys[2]);
    bt_workspaces_list_free(keys);

    /* A push from a worktree reaches the repository. */
    bt_test_sh("echo change > %s/new.txt", ra.path);
    bt_git_push_opts po = {.path = ra.path, .message = "issue 1", .branch = "ai-feature/issue-1"};
    push_res pr = {0};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_git_commit_push(&f.loop, &po, on_pushed, &pr, &err), 0);
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(pr.calls, 1);
    assert_int_equal(pr.ahead, 1);
    char *sha = bt_test_sh_out("git -C %s rev-parse refs/heads/ai-feature/issue-1", f.remote);
    assert_string_equal(sha, pr.commit);
    free(sha);
    free(pr.commit);

    /* A second prepare of the same item reuses the worktree. */
    res again = {0};
    prepare(&f, &a, &again);
    assert_int_equal(again.rc, 0);
    assert_int_equal(again.created, 0);
    assert_string_equal(again.branch, "ai-feature/issue-1");
    assert_string_equal(again.base, "main");
    res_free(&again);

    /* Removing one worktree leaves the other and the mirror's record of it. */
    res rm = {0};
    remove_ws(&f, "o/r#1", &rm);
    assert_int_equal(rm.rc, 0);
    assert_false(exists(ra.path));
    char *list = bt_test_sh_out("git -C %s worktree list --porcelain", ca);
    assert_null(strstr(list, ra.path));
    assert_non_null(strstr(list, rb.path));
    free(list);

    /* And it can be made again (the branch is reset to the base). */
    res re = {0};
    prepare(&f, &a, &re);
    assert_int_equal(re.rc, 0);
    assert_int_equal(re.created, 1);
    res_free(&re);

    free(mirrors);
    free(ca);
    free(cb);
    bt_strvec_clear(&env);
    res_free(&ra);
    res_free(&rb);
    fx_free(&f);
}

/* ---- cancel ---- */

static void cancel_now(uv_timer_t *t)
{
    bt_workspaces_cancel_all(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void **state)
{
    (void)state;
    fx f;
    fx_init(&f, BT_WS_CLONE);
    f.cfg.hooks.after_create = hook(&f, f.after_create, "after_create", "sleep 30");

    /* Before anything ran. */
    bt_workspace_spec s0 = {.identifier = "c0"};
    res r0 = {0};
    start_prepare(&f, &s0, &r0);
    r0.in_call = 1;
    bt_workspaces_cancel_all(f.w);
    r0.in_call = 0;
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(r0.calls, 1);
    assert_int_equal(r0.called_in_call, 0);
    assert_int_equal(r0.rc, BT_ECANCELED);

    /* While a hook runs: it is killed and the half-made directory removed. */
    bt_workspace_spec s = {.identifier = "c1", .repo = f.remote, .branch = "b"};
    res r = {0};
    int64_t t0 = bt_time_mono_ms();
    start_prepare(&f, &s, &r);
    uv_timer_t t;
    uv_timer_init(&f.loop, &t);
    t.data = f.w;
    uv_timer_start(&t, cancel_now, 500, 0);
    bt_test_run_loop(&f.loop, WATCHDOG_MS);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, BT_ECANCELED);
    assert_true(bt_time_mono_ms() - t0 < 10000);
    char *p = expected_path(&f, "c1");
    assert_false(exists(p));
    free(p);
    fx_free(&f);
}

int main(void)
{
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    unsetenv("GIT_CONFIG_COUNT");
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_branch_names),
        cmocka_unit_test(test_symlink_and_file_refused),
        cmocka_unit_test(test_clone_create_and_reuse),
        cmocka_unit_test(test_missing_base),
        cmocka_unit_test(test_after_create_failure_removes),
        cmocka_unit_test(test_before_run_failure_keeps),
        cmocka_unit_test(test_hook_timeout_kills_group),
        cmocka_unit_test(test_after_run_only_logged),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_git_env_reaches_git_only),
        cmocka_unit_test(test_worktree_shared_mirror),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
