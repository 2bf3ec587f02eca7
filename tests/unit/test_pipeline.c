/*
 * test_pipeline.c - the preparation and completion stages and reconciliation
 * (src/core/pipeline.c) with a real loop, a real SQLite store, real git (a local bare
 * repository as the remote) and an in-memory tracker that records what it was told:
 * an issue's workspace is cloned on its branch, its work committed, pushed and offered
 * as a pull request, the tracker told the outcome, the workspace removed per retention;
 * a project missing a setting fails with the variable's name; a closed issue stops its
 * task and removes its workspace, an unlabelled one stops it and keeps it.
 */
#include "testutil.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "core/engine.h"
#include "core/pipeline.h"
#include "store/store.h"
#include "trackers/tracker.h"
#include "workspace/workspace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the in-memory tracker ---- */

typedef struct ftrack {
    bt_tracker t;
    char *repo;
    int started, finished, prs, refreshes;
    int success;
    char *pr_branch, *pr_base, *pr_body, *error, *pr_url_told;
    bt_tracker_state state;
} ftrack;

static void f_started(bt_tracker *t, const char *id, const json_t *meta, bt_tracker_done_fn cb,
                      void *ud)
{
    (void)id, (void)meta;
    ((ftrack *)t->self)->started++;
    cb(0, NULL, ud);
}

static void f_open_pr(bt_tracker *t, const bt_tracker_pr *pr, bt_tracker_pr_fn cb, void *ud)
{
    ftrack *f = t->self;
    f->prs++;
    free(f->pr_branch), free(f->pr_base), free(f->pr_body);
    f->pr_branch = bt_xstrdup(pr->branch);
    f->pr_base = pr->base ? bt_xstrdup(pr->base) : NULL;
    f->pr_body = bt_xstrdup(pr->body);
    cb(0, NULL, "https://github.test/acme/app/pull/8", ud);
}

static void f_finished(bt_tracker *t, const bt_tracker_outcome *o, bt_tracker_done_fn cb, void *ud)
{
    ftrack *f = t->self;
    f->finished++;
    f->success = o->success;
    free(f->error), free(f->pr_url_told);
    f->error = o->error ? bt_xstrdup(o->error) : NULL;
    f->pr_url_told = o->pr_url ? bt_xstrdup(o->pr_url) : NULL;
    cb(0, NULL, ud);
}

static void f_refresh(bt_tracker *t, const char *id, const json_t *meta, bt_tracker_state_fn cb,
                      void *ud)
{
    (void)id, (void)meta;
    ftrack *f = t->self;
    f->refreshes++;
    cb(f->state, f->state == BT_TRACKER_TERMINAL ? "issue closed" : "label ai-ready removed", ud);
}

static char *f_repo_url(bt_tracker *t, const json_t *meta)
{
    (void)meta;
    return bt_xstrdup(((ftrack *)t->self)->repo);
}

static const bt_tracker_ops fops = {.name = "github",
                                    .started = f_started,
                                    .open_pr = f_open_pr,
                                    .finished = f_finished,
                                    .refresh = f_refresh,
                                    .repo_url = f_repo_url};

/* ---- fixture ---- */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t tick;
    char *dir, *bare;
    bt_store *s;
    bt_config *cfg;
    bt_workspaces *ws;
    bt_pipeline *p;
    ftrack tr;
} fx;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void pump(fx *f, int64_t ms)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
}

static void wait_flag(fx *f, const int *flag, int64_t ms, const char *what)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (!*flag && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    if (!*flag)
        fail_msg("timed out after %lld ms waiting for %s", (long long)ms, what);
}

static bt_tracker *get_tracker(void *ud, const char *source)
{
    fx *f = ud;
    return strcmp(source, "github") == 0 ? &f->tr.t : NULL;
}

static int setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    f->dir = bt_test_tmpdir("pipeline");
    bt_strbuf b = BT_STRBUF_INIT;
    bt_strbuf_addf(&b, "%s/remote.git", f->dir);
    f->bare = bt_strbuf_detach(&b, NULL);
    bt_strbuf_addf(&b,
                   "cd %s && git init -q --bare -b main remote.git && git clone -q remote.git seed "
                   "2>/dev/null && cd seed && echo hello > README.md && git add . && git -c "
                   "user.name=t -c user.email=t@t commit -qm init && git push -q origin main",
                   f->dir);
    bt_test_sh("%s", b.buf);
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "sqlite:%s/store.db", f->dir);
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&f->loop, b.buf, NULL, &f->s, &err))
        fail_msg("store: %s", err.msg);
    bt_strbuf_release(&b);
    f->tr.t.ops = &fops;
    f->tr.t.self = &f->tr;
    f->tr.repo = bt_xstrdup(f->bare);
    *state = f;
    return 0;
}

/* Configuration (workspace root under the scratch dir) and the pipeline over it. */
static void use(fx *f, const char *retention, const char *extra_yaml)
{
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addf(&y,
                   "log: {level: error}\n"
                   "trackers: {github: {repo: acme/app, poll_interval: 1h}}\n"
                   "workspace:\n  root: %s/ws\n  retention: %s\n"
                   "  hooks: {after_create: 'echo made > .created'}\n%s",
                   f->dir, retention, extra_yaml ? extra_yaml : "");
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_config_load_string("t.yaml", y.buf, y.len, NULL, &f->cfg, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("config: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    bt_strbuf_release(&y);
    bt_workspaces_opts wo = {.loop = &f->loop, .cfg = &f->cfg->workspace};
    if (bt_workspaces_new(&wo, &f->ws, &err) < 0)
        fail_msg("workspaces: %s", err.msg);
    bt_pipeline_env env = {.loop = &f->loop,
                           .store = f->s,
                           .cfg = f->cfg,
                           .workspaces = f->ws,
                           .tracker = get_tracker,
                           .ud = f,
                           .writeback_check_ms = 100};
    f->p = bt_pipeline_new(&env);
}

static void on_stopped(void *ud)
{
    *(int *)ud = 1;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->p) {
        int stopped = 0;
        bt_pipeline_stop(f->p, on_stopped, &stopped);
        wait_flag(f, &stopped, 10000, "the pipeline to stop");
        bt_pipeline_free(f->p);
    }
    bt_workspaces_free(f->ws);
    uv_close((uv_handle_t *)&f->tick, NULL);
    bt_store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_config_free(f->cfg);
    free(f->tr.repo), free(f->tr.pr_branch), free(f->tr.pr_base), free(f->tr.pr_body);
    free(f->tr.error), free(f->tr.pr_url_told);
    free(f->bare);
    bt_test_rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- store helpers ---- */

typedef struct tres {
    int done, rc;
    bt_task *task;
} tres;

static void on_created(void *ud, int rc, const bt_error *err, const bt_task *task, bool created)
{
    (void)err, (void)created;
    tres *r = ud;
    r->rc = rc;
    r->task = task ? bt_task_dup(task) : NULL;
    r->done = 1;
}

static void on_task(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    on_created(ud, rc, err, task, false);
}

static void on_claimed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                       const char *cursor)
{
    (void)cursor;
    on_created(ud, rc, err, n ? tasks[0] : NULL, false);
}

/* A GitHub-like task, claimed (attempt 1) unless pending is set. */
static bt_task *new_task(fx *f, const char *num, const char *project, int pending)
{
    char key[64], ident[64];
    snprintf(key, sizeof key, "github:acme/app#%s", num);
    snprintf(ident, sizeof ident, "acme/app#%s", num);
    json_t *meta = json_pack("{ss}", "repository", "acme/app");
    bt_task_input in = {.source = "github",
                        .external_id = num,
                        .dedupe_key = key,
                        .identifier = ident,
                        .project = project,
                        .title = "Say hello",
                        .meta = meta,
                        .priority = BT_PRIORITY_NONE};
    tres r = {0};
    bt_store_task_create(f->s, &in, on_created, &r);
    json_decref(meta);
    wait_flag(f, &r.done, 5000, "create");
    assert_int_equal(r.rc, 0);
    if (pending)
        return r.task;
    char id[BT_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", r.task->id);
    bt_task_free(r.task);
    tres c = {0};
    bt_claim_opts co = {.owner = "test", .lease_ms = 60000, .max = 1, .task_id = id};
    bt_store_claim(f->s, &co, on_claimed, &c);
    wait_flag(f, &c.done, 5000, "claim");
    assert_non_null(c.task);
    return c.task;
}

static bt_task *get_task(fx *f, const char *id)
{
    tres r = {0};
    bt_store_task_get(f->s, id, on_task, &r);
    wait_flag(f, &r.done, 5000, "get");
    assert_int_equal(r.rc, 0);
    return r.task;
}

/* ---- pipeline calls ---- */

typedef struct pres {
    int done, rc;
    char *cls, *msg, *workspace, *branch, *base;
    json_t *extra;
} pres;

static void pres_free(pres *r)
{
    free(r->cls), free(r->msg), free(r->workspace), free(r->branch), free(r->base);
    json_decref(r->extra);
}

static void on_prep(int rc, const bt_error *err, const char *cls, const bt_pipeline_prep *p,
                    void *ud)
{
    pres *r = ud;
    r->rc = rc;
    r->cls = cls ? bt_xstrdup(cls) : NULL;
    r->msg = err ? bt_xstrdup(err->msg) : NULL;
    if (p) {
        r->workspace = bt_xstrdup(p->workspace);
        r->branch = p->branch ? bt_xstrdup(p->branch) : NULL;
        r->base = p->base ? bt_xstrdup(p->base) : NULL;
    }
    r->done = 1;
}

static void on_deliver(int rc, const bt_error *err, const char *cls, json_t *extra, void *ud)
{
    pres *r = ud;
    r->rc = rc;
    r->cls = cls ? bt_xstrdup(cls) : NULL;
    r->msg = err ? bt_xstrdup(err->msg) : NULL;
    r->extra = extra ? json_incref(extra) : NULL;
    r->done = 1;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- tests ---- */

/* The whole path of an issue: workspace cloned on its branch, hooks, the tracker told
 * it started; the work committed, pushed and offered as a pull request; the tracker
 * told the outcome with the PR link; the workspace removed (retention 0). */
static void test_issue_to_pull_request(void **state)
{
    fx *f = *state;
    use(f, "0", NULL);
    bt_task *t = new_task(f, "7", NULL, 0);
    pres p = {0};
    bt_pipeline_prepare(f->p, t, on_prep, &p);
    wait_flag(f, &p.done, 20000, "prepare");
    if (p.rc < 0)
        fail_msg("prepare: %s", p.msg);
    assert_string_equal(p.branch, "ai-feature/issue-7");
    assert_string_equal(p.base, "main");
    assert_non_null(strstr(p.workspace, "/ws/acme_app_7"));
    assert_int_equal(f->tr.started, 1);
    bt_strbuf b = BT_STRBUF_INIT;
    bt_strbuf_addf(&b, "%s/.created", p.workspace);
    assert_int_equal(access(b.buf, F_OK), 0); /* after_create ran in the clone */
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "git -C %s rev-parse --abbrev-ref HEAD", p.workspace);
    char *head = bt_test_sh_out("%s", b.buf);
    assert_string_equal(head, "ai-feature/issue-7");
    free(head);

    /* the agents' work */
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "echo 'print(\"hello\")' > %s/hello.py", p.workspace);
    bt_test_sh("%s", b.buf);
    json_t *rj = json_pack("{sb ss}", "success", 1, "final_output", "Added hello.py");
    bt_engine_result er = {.run_id = "RUN1",
                           .task_id = t->id,
                           .status = "completed",
                           .success = 1,
                           .final_output = "Added hello.py",
                           .json = rj};
    pres d = {0};
    bt_pipeline_deliver(f->p, t, &er, on_deliver, &d);
    wait_flag(f, &d.done, 20000, "deliver");
    if (d.rc < 0)
        fail_msg("deliver: %s", d.msg);
    assert_string_equal(bt_json_str(d.extra, "branch", ""), "ai-feature/issue-7");
    assert_string_equal(bt_json_str(d.extra, "pr_url", ""), "https://github.test/acme/app/pull/8");
    const char *commit = bt_json_str(d.extra, "commit", "");
    assert_int_equal(strlen(commit), 40);
    assert_int_equal(f->tr.prs, 1);
    assert_string_equal(f->tr.pr_branch, "ai-feature/issue-7");
    assert_non_null(strstr(f->tr.pr_body, "Closes #7"));
    /* the bare remote has the commit, with the file */
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "git -C %s rev-parse refs/heads/ai-feature/issue-7", f->bare);
    char *remote = bt_test_sh_out("%s", b.buf);
    assert_string_equal(remote, commit);
    free(remote);
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "git -C %s show ai-feature/issue-7:hello.py", f->bare);
    char *content = bt_test_sh_out("%s", b.buf);
    assert_string_equal(content, "print(\"hello\")");
    free(content);

    json_object_update(rj, d.extra);
    bt_pipeline_settled(f->p, t, "completed", 1, rj, NULL);
    pump(f, 300);
    for (int i = 0; i < 100 && is_dir(p.workspace); i++)
        pump(f, 50);
    assert_int_equal(f->tr.finished, 1);
    assert_true(f->tr.success);
    assert_string_equal(f->tr.pr_url_told, "https://github.test/acme/app/pull/8");
    assert_false(is_dir(p.workspace)); /* retention 0 */
    json_decref(rj);
    pres_free(&p);
    pres_free(&d);
    bt_strbuf_release(&b);
    bt_task_free(t);
}

/* A retry reuses the workspace (after_create does not run again, work survives); the
 * tracker hears "started" once, and the final failure with its error. */
static void test_retry_reuses_and_failure_is_told(void **state)
{
    fx *f = *state;
    use(f, "7d", NULL);
    bt_task *t = new_task(f, "9", NULL, 0);
    pres p = {0};
    bt_pipeline_prepare(f->p, t, on_prep, &p);
    wait_flag(f, &p.done, 20000, "prepare");
    assert_int_equal(p.rc, 0);
    bt_strbuf b = BT_STRBUF_INIT;
    bt_strbuf_addf(&b, "echo wip > %s/wip.txt && rm %s/.created", p.workspace, p.workspace);
    bt_test_sh("%s", b.buf);
    bt_pipeline_settled(f->p, t, "retry", 0, NULL, "agent crashed");
    pump(f, 200);
    assert_int_equal(f->tr.finished, 0); /* not final: nothing written back */
    t->attempts = 2;
    pres q = {0};
    bt_pipeline_prepare(f->p, t, on_prep, &q);
    wait_flag(f, &q.done, 20000, "prepare again");
    assert_int_equal(q.rc, 0);
    assert_string_equal(q.workspace, p.workspace);
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "%s/wip.txt", p.workspace);
    assert_int_equal(access(b.buf, F_OK), 0);
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "%s/.created", p.workspace);
    assert_int_not_equal(access(b.buf, F_OK), 0); /* after_create not run again */
    assert_int_equal(f->tr.started, 1);
    bt_pipeline_settled(f->p, t, "failed", 1, NULL, "agent crashed again");
    pump(f, 300);
    assert_int_equal(f->tr.finished, 1);
    assert_false(f->tr.success);
    assert_string_equal(f->tr.error, "agent crashed again");
    assert_true(is_dir(p.workspace)); /* retention 7d keeps it */
    pres_free(&p);
    pres_free(&q);
    bt_strbuf_release(&b);
    bt_task_free(t);
}

/* Seed 000: every project setting is required; the error names the variable and no
 * retry can help. A bad branch template is named too. */
static void test_project_settings_and_template(void **state)
{
    fx *f = *state;
    use(f, "0", "projects: {BACKEND: {repo: /srv/api.git}}\n");
    bt_task *t = new_task(f, "11", "backend", 0);
    pres p = {0};
    bt_pipeline_prepare(f->p, t, on_prep, &p);
    wait_flag(f, &p.done, 5000, "prepare");
    assert_true(p.rc < 0);
    assert_string_equal(p.cls, "permanent");
    assert_non_null(strstr(p.msg, "TEAM_CONTRIBUTION_RULES_URL_BACKEND"));
    assert_non_null(strstr(p.msg, "PRD_URL_BACKEND"));
    assert_int_equal(f->tr.started, 0);
    pres_free(&p);
    bt_task_free(t);

    bt_task *u = new_task(f, "12", NULL, 0);
    int stopped = 0;
    bt_pipeline_stop(f->p, on_stopped, &stopped);
    wait_flag(f, &stopped, 5000, "stop");
    bt_pipeline_free(f->p);
    f->p = NULL;
    bt_workspaces_free(f->ws);
    f->ws = NULL;
    bt_config_free(f->cfg);
    f->cfg = NULL;
    use(f, "0", "  branch_template: 'bot/{{ number }}-{{title}}'\n");
    pres q = {0};
    bt_pipeline_prepare(f->p, u, on_prep, &q);
    wait_flag(f, &q.done, 5000, "prepare");
    assert_true(q.rc < 0);
    assert_string_equal(q.cls, "permanent");
    assert_non_null(strstr(q.msg, "{{title}}"));
    pres_free(&q);
    bt_task_free(u);
}

/* Reconciliation: at start-up and on every tick, a closed issue cancels its task and
 * removes its workspace; an unlabelled one cancels it and keeps the workspace. */
static void test_reconciliation(void **state)
{
    fx *f = *state;
    use(f, "7d", NULL);
    bt_task *closed = new_task(f, "21", NULL, 1);
    bt_strbuf b = BT_STRBUF_INIT;
    bt_strbuf_addf(&b, "mkdir -p %s/ws/acme_app_21 && touch %s/ws/acme_app_21/x", f->dir, f->dir);
    bt_test_sh("%s", b.buf);
    f->tr.state = BT_TRACKER_TERMINAL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_pipeline_start(f->p, &err), 0);
    bt_task *now = NULL;
    for (int i = 0; i < 100; i++) {
        pump(f, 50);
        bt_task_free(now);
        now = get_task(f, closed->id);
        bt_strbuf_reset(&b);
        bt_strbuf_addf(&b, "%s/ws/acme_app_21", f->dir);
        if (now->status == BT_TASK_CANCELLED && !is_dir(b.buf))
            break;
    }
    assert_int_equal(now->status, BT_TASK_CANCELLED);
    assert_non_null(strstr(now->error, "closed"));
    assert_false(is_dir(b.buf));
    bt_task_free(now);
    now = NULL;

    /* a tick: the issue lost its label */
    bt_task *unl = new_task(f, "22", NULL, 1);
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "mkdir -p %s/ws/acme_app_22", f->dir);
    bt_test_sh("%s", b.buf);
    f->tr.state = BT_TRACKER_INACTIVE;
    bt_pipeline_reconcile_now(f->p);
    for (int i = 0; i < 100; i++) {
        pump(f, 50);
        bt_task_free(now);
        now = get_task(f, unl->id);
        if (now->status == BT_TASK_CANCELLED)
            break;
    }
    assert_int_equal(now->status, BT_TASK_CANCELLED);
    bt_strbuf_reset(&b);
    bt_strbuf_addf(&b, "%s/ws/acme_app_22", f->dir);
    assert_true(is_dir(b.buf)); /* kept: the issue is still open */

    /* an active issue is left alone */
    bt_task *act = new_task(f, "23", NULL, 1);
    f->tr.state = BT_TRACKER_ACTIVE;
    int before = f->tr.refreshes;
    bt_pipeline_reconcile_now(f->p);
    for (int i = 0; i < 100 && f->tr.refreshes == before; i++)
        pump(f, 20);
    pump(f, 100);
    bt_task_free(now);
    now = get_task(f, act->id);
    assert_int_equal(now->status, BT_TASK_PENDING);
    bt_task_free(now);
    bt_task_free(act);
    bt_task_free(unl);
    bt_task_free(closed);
    bt_strbuf_release(&b);
}

static void on_done_cb(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    (void)err, (void)task;
    *(int *)ud = rc == 0 ? 1 : -1;
}

static void on_event_done(void *ud, int rc, const bt_error *err, const bt_event *ev)
{
    (void)err, (void)ev;
    *(int *)ud = rc == 0 ? 1 : -1;
}

static void on_events(void *ud, int rc, const bt_error *err, bt_event *const *evs, size_t n)
{
    (void)err, (void)evs;
    *(int *)ud = rc == 0 ? (int)n + 1 : -1;
}

/* A process killed between "completed" and the write-back: the next start-up writes it
 * back once (and only for the task that has no tracker.writeback event). */
static void test_lost_writeback_is_replayed(void **state)
{
    fx *f = *state;
    use(f, "7d", NULL);
    bt_task *lost = new_task(f, "31", NULL, 0);
    bt_task *told = new_task(f, "32", NULL, 0);
    json_t *res = json_pack("{ss ss si}", "pr_url", "https://github.test/acme/app/pull/31",
                            "final_output", "done", "tokens_in", 10);
    int d1 = 0, d2 = 0, d3 = 0;
    bt_store_complete(f->s, lost->id, "test", lost->fencing, res, on_done_cb, &d1);
    bt_store_complete(f->s, told->id, "test", told->fencing, res, on_done_cb, &d2);
    json_t *ev = json_pack("{ss}", "outcome", "completed");
    bt_store_event_append(f->s, "tracker.writeback", told->id, NULL, ev, on_event_done, &d3);
    json_decref(ev);
    wait_flag(f, &d1, 5000, "complete");
    wait_flag(f, &d2, 5000, "complete");
    wait_flag(f, &d3, 5000, "event");
    assert_int_equal(d1 + d2 + d3, 3);
    pump(f, 10);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_pipeline_start(f->p, &err), 0);
    for (int i = 0; i < 100 && f->tr.finished == 0; i++)
        pump(f, 20);
    pump(f, 200);
    assert_int_equal(f->tr.finished, 1);
    assert_true(f->tr.success);
    assert_string_equal(f->tr.pr_url_told, "https://github.test/acme/app/pull/31");
    /* recorded, so a later start-up does not write it back again */
    int n = 0;
    bt_event_filter ef = {.task_id = lost->id, .type_prefix = "tracker.writeback"};
    bt_store_event_read(f->s, &ef, on_events, &n);
    wait_flag(f, &n, 5000, "events");
    assert_int_equal(n - 1, 1);
    json_decref(res);
    bt_task_free(lost);
    bt_task_free(told);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_issue_to_pull_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_reuses_and_failure_is_told, setup, teardown),
        cmocka_unit_test_setup_teardown(test_project_settings_and_template, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconciliation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_writeback_is_replayed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
