/*
 * pipeline.c - preparation, completion and reconciliation around runs (pipeline.h).
 *
 * Every task between bt_pipeline_prepare and bt_pipeline_settled has a record here (its
 * workspace, repository, branch and git credentials), so delivery and settling use
 * what preparation decided. Asynchronous work (git, hooks, tracker calls, store reads)
 * counts in p->busy; bt_pipeline_stop waits for it to drain.
 */
#include "core/pipeline.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "config/config.h"
#include "core/engine.h"
#include "obs/log.h"
#include "store/store.h"
#include "trackers/tracker.h"
#include "workspace/git.h"
#include "workspace/workspace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The sources whose trackers are reconciled (tracker(ud, source) says which exist). */
static const char *const tracker_sources[] = {"github", "jira", "azure"};
#define NSOURCES (sizeof tracker_sources / sizeof tracker_sources[0])

#define SWEEP_MAX_MS (60 * 60 * 1000)
#define LIST_LIMIT   1000

typedef struct prec prec;
struct prec {
    prec *next;
    char task_id[BT_ID_LEN + 1];
    char *identifier;
    char *workspace, *repo, *branch, *base;
    bt_strvec git_env;
    int remove_when_settled; /* the issue was closed while the run went on */
};

struct bt_pipeline {
    bt_pipeline_env env;
    prec *recs;
    uv_timer_t tick, sweep, wbcheck;
    int64_t started_at; /* wall clock at bt_pipeline_start */
    int timers;
    int busy; /* operations in flight */
    int started, stopping, reconciling;
    void (*stop_done)(void *ud);
    void *stop_ud;
};

static void check_stopped(bt_pipeline *p);

/* ---- small helpers ---- */

static void plog(bt_pipeline *p, bt_log_level lvl, const char *msg, const char *task,
                 const char *detail)
{
    if (p->env.log)
        bt_log_write(p->env.log, lvl, msg, BT_LF_STR("task", task ? task : ""),
                     BT_LF_STR("detail", detail ? detail : ""), BT_LF_END);
}

static bt_tracker *tracker_for(bt_pipeline *p, const char *source)
{
    if (!p->env.tracker || !source)
        return NULL;
    return p->env.tracker(p->env.ud, source);
}

static prec *rec_find(bt_pipeline *p, const char *task_id)
{
    for (prec *r = p->recs; r; r = r->next)
        if (strcmp(r->task_id, task_id) == 0)
            return r;
    return NULL;
}

static void rec_free(prec *r)
{
    if (!r)
        return;
    free(r->identifier);
    free(r->workspace);
    free(r->repo);
    free(r->branch);
    free(r->base);
    bt_strvec_clear(&r->git_env);
    free(r);
}

static void rec_drop(bt_pipeline *p, const char *task_id)
{
    for (prec **pp = &p->recs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->task_id, task_id) == 0) {
            prec *r = *pp;
            *pp = r->next;
            rec_free(r);
            return;
        }
    }
}

static const char *ident_of(const bt_task *t)
{
    return t->identifier && *t->identifier ? t->identifier : t->id;
}

/* The hooks' environment: which item they run for. */
static void hook_env(const bt_task *t, const prec *r, bt_strvec *env)
{
    bt_strvec_pushf(env, "BATON_TASK_ID=%s", t->id);
    bt_strvec_pushf(env, "BATON_ISSUE_IDENTIFIER=%s", ident_of(t));
    if (t->external_id)
        bt_strvec_pushf(env, "BATON_ISSUE_NUMBER=%s", t->external_id);
    if (t->project)
        bt_strvec_pushf(env, "BATON_PROJECT=%s", t->project);
    if (r && r->branch)
        bt_strvec_pushf(env, "BATON_BRANCH=%s", r->branch);
    if (r && r->repo) {
        char *plain = bt_git_url_strip_credentials(r->repo);
        bt_strvec_pushf(env, "BATON_REPO=%s", plain);
        free(plain);
    }
}

static void on_emitted(void *ud, int rc, const bt_error *err, const bt_event *ev)
{
    (void)ev;
    bt_pipeline *p = ud;
    if (rc < 0)
        plog(p, BT_LOG_WARN, "cannot record an event", NULL, err ? err->msg : "");
    p->busy--;
    check_stopped(p);
}

static void emit(bt_pipeline *p, const char *type, const char *task_id, json_t *data)
{
    p->busy++;
    bt_store_event_append(p->env.store, type, task_id, NULL, data, on_emitted, p);
    json_decref(data);
}

/* The item's branch: meta.branch_name when its tracker chose one, else
 * workspace.branch_template (bt_workspace_branch) with the issue number (meta.issue_number,
 * else the tracker's id) - the same name /work/next gives a remote worker. */
static int task_branch(const char *tmpl, const bt_task *t, bt_strbuf *out, bt_error *err)
{
    const char *given = json_string_value(json_object_get(t->meta, "branch_name"));
    if (given && *given) {
        bt_strbuf_addstr(out, given);
        return 0;
    }
    char num[32] = "";
    json_t *n = json_object_get(t->meta, "issue_number");
    if (json_is_integer(n))
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(n));
    else if (t->external_id)
        snprintf(num, sizeof num, "%s", t->external_id);
    return bt_workspace_branch(tmpl, num, ident_of(t), t->id, out, err);
}

/* ---- preparation ---- */

typedef struct prep_op {
    bt_pipeline *p;
    bt_task *task;
    prec *rec; /* not yet in the list until the workspace is ready */
    bt_pipeline_prep_fn cb;
    void *ud;
    bt_strvec hook_env;
    bt_error err;
    int rc;
    const char *error_class;
} prep_op;

static void prep_op_free(prep_op *op)
{
    bt_task_free(op->task);
    rec_free(op->rec);
    bt_strvec_clear(&op->hook_env);
    free(op);
}

static void prep_finish(prep_op *op)
{
    bt_pipeline *p = op->p;
    if (op->rc < 0) {
        op->cb(op->rc, &op->err, op->error_class, NULL, op->ud);
    } else {
        prec *r = op->rec;
        op->rec = NULL;
        rec_drop(p, r->task_id); /* a stale record of an earlier attempt */
        r->next = p->recs;
        p->recs = r;
        bt_pipeline_prep prep = {.workspace = r->workspace,
                                 .repo = r->repo,
                                 .branch = r->branch,
                                 .base = r->base,
                                 .git_env =
                                     r->git_env.len ? (const char *const *)r->git_env.items : NULL};
        op->cb(0, NULL, NULL, &prep, op->ud);
    }
    prep_op_free(op);
    p->busy--;
    check_stopped(p);
}

static void on_started_told(int rc, const bt_error *err, void *ud)
{
    prep_op *op = ud;
    if (rc < 0) /* labels are a courtesy: the work goes on */
        plog(op->p, BT_LOG_WARN, "tracker: cannot mark the item in progress", op->task->id,
             err ? err->msg : "");
    prep_finish(op);
}

static void on_ws_ready(int rc, const bt_error *err, const bt_workspace_info *info, void *ud)
{
    prep_op *op = ud;
    if (rc < 0) {
        op->rc = rc;
        bt_errorf(&op->err, rc, "%s", err ? err->msg : "workspace preparation failed");
        op->error_class = rc == BT_EPERM || rc == BT_EEXIST ? "permanent" : "transient";
        prep_finish(op);
        return;
    }
    free(op->rec->workspace);
    op->rec->workspace = bt_xstrdup(info->path);
    if (info->branch && !op->rec->branch)
        op->rec->branch = bt_xstrdup(info->branch);
    if (info->base && !op->rec->base)
        op->rec->base = bt_xstrdup(info->base);
    bt_tracker *t = tracker_for(op->p, op->task->source);
    if (t && t->ops->started && op->task->external_id && op->task->attempts <= 1) {
        t->ops->started(t, op->task->external_id, op->task->meta, on_started_told, op);
        return;
    }
    prep_finish(op);
}

void bt_pipeline_prepare(bt_pipeline *p, const bt_task *task, bt_pipeline_prep_fn cb, void *ud)
{
    prep_op *op = bt_xcalloc(1, sizeof *op);
    op->p = p;
    op->task = bt_task_dup(task);
    op->cb = cb;
    op->ud = ud;
    op->err = (bt_error)BT_ERROR_INIT;
    op->rec = bt_xcalloc(1, sizeof *op->rec);
    prec *r = op->rec;
    snprintf(r->task_id, sizeof r->task_id, "%s", task->id);
    r->identifier = bt_xstrdup(ident_of(task));
    p->busy++;
    const bt_config *cfg = p->env.cfg;
    bt_tracker *t = tracker_for(p, task->source);
    bt_error err = BT_ERROR_INIT;
    int rc = 0;

    /* the repository: the project's (all five settings), else the tracker's */
    if (task->project && *task->project) {
        const bt_config_project *proj = NULL;
        rc = bt_config_project_resolve(cfg, task->project, 1, &proj, &err);
        if (rc == 0)
            r->repo = bt_xstrdup(proj->repo);
    } else if (t && t->ops->repo_url) {
        r->repo = t->ops->repo_url(t, task->meta);
    }
    /* credentials: the item's tracker, else GitHub's for a project repository it serves */
    bt_tracker *cred = t ? t : tracker_for(p, "github");
    if (rc == 0 && r->repo && cred && cred->ops->git_env)
        rc = cred->ops->git_env(cred, r->repo, &r->git_env, &err);
    if (rc == 0 && r->repo) {
        bt_strbuf b = BT_STRBUF_INIT;
        rc = task_branch(cfg->workspace.branch_template, task, &b, &err);
        if (rc == 0)
            r->branch = bt_strbuf_detach(&b, NULL);
        bt_strbuf_release(&b);
        if (t && task->source && strcmp(task->source, "github") == 0 &&
            cfg->trackers.github.base_branch && *cfg->trackers.github.base_branch)
            r->base = bt_xstrdup(cfg->trackers.github.base_branch);
    }
    if (rc == 0) {
        hook_env(task, r, &op->hook_env);
        bt_workspace_spec spec = {.identifier = r->identifier,
                                  .repo = r->repo,
                                  .branch = r->branch,
                                  .base = r->base,
                                  .git_env =
                                      r->git_env.len ? (const char *const *)r->git_env.items : NULL,
                                  .hook_env = (const char *const *)op->hook_env.items};
        rc = bt_workspaces_prepare(p->env.workspaces, &spec, on_ws_ready, op, &err);
    }
    if (rc < 0) {
        /* a bad project setting, template or path: no retry can help */
        op->rc = rc;
        bt_errorf(&op->err, rc, "%s", err.msg);
        op->error_class = "permanent";
        prep_finish(op);
        return;
    }
}

/* ---- delivery ---- */

typedef struct deliver_op {
    bt_pipeline *p;
    bt_task *task;
    char *run_id;
    char *summary;
    bt_pipeline_deliver_fn cb;
    void *ud;
    json_t *extra;
} deliver_op;

static void deliver_finish(deliver_op *op, int rc, const bt_error *err, const char *cls)
{
    bt_pipeline *p = op->p;
    op->cb(rc, err, cls, rc < 0 ? NULL : op->extra, op->ud);
    json_decref(op->extra);
    bt_task_free(op->task);
    free(op->run_id);
    free(op->summary);
    free(op);
    p->busy--;
    check_stopped(p);
}

static void on_pr(int rc, const bt_error *err, const char *url, void *ud)
{
    deliver_op *op = ud;
    if (rc < 0) {
        json_object_set_new(op->extra, "pr_error", json_string(err ? err->msg : "failed"));
        plog(op->p, BT_LOG_WARN, "cannot open the pull request", op->task->id, err ? err->msg : "");
    } else if (url) {
        json_object_set_new(op->extra, "pr_url", json_string(url));
        emit(op->p, "tracker.pull_request", op->task->id,
             json_pack("{ss ss}", "url", url, "branch",
                       json_string_value(json_object_get(op->extra, "branch"))));
    }
    deliver_finish(op, 0, NULL, NULL);
}

static int pull_requests_enabled(const bt_pipeline *p, const char *source)
{
    if (source && strcmp(source, "github") == 0)
        return p->env.cfg->trackers.github.pull_requests;
    return 1;
}

static void on_pushed(int rc, const bt_error *err, const bt_git_push_result *res, void *ud)
{
    deliver_op *op = ud;
    bt_pipeline *p = op->p;
    if (rc < 0) {
        deliver_finish(op, rc, err, rc == BT_EIO || rc == BT_ETIMEOUT ? "transient" : "permanent");
        return;
    }
    prec *r = rec_find(p, op->task->id);
    json_object_set_new(op->extra, "branch", json_string(r ? r->branch : NULL));
    if (res->commit)
        json_object_set_new(op->extra, "commit", json_string(res->commit));
    if (res->head)
        json_object_set_new(op->extra, "head", json_string(res->head));
    json_object_set_new(op->extra, "pushed", json_boolean(res->pushed));
    bt_tracker *t = tracker_for(p, op->task->source);
    if (!r || !res->pushed || res->ahead <= 0 || !t || !t->ops->open_pr || !op->task->external_id ||
        !pull_requests_enabled(p, op->task->source)) {
        if (res->pushed && res->ahead <= 0)
            json_object_set_new(op->extra, "pr_error",
                                json_string("no pull request: the branch has no new commits"));
        deliver_finish(op, 0, NULL, NULL);
        return;
    }
    bt_strbuf body = BT_STRBUF_INIT;
    if (op->summary && *op->summary)
        bt_strbuf_addf(&body, "%.4000s\n\n", op->summary);
    if (strcmp(op->task->source, "github") == 0)
        bt_strbuf_addf(&body, "Closes #%s\n\n", op->task->external_id);
    bt_strbuf_addf(&body, "_Opened by baton: task %s, run %s._\n", op->task->id,
                   op->run_id ? op->run_id : "");
    bt_tracker_pr pr = {.external_id = op->task->external_id,
                        .meta = op->task->meta,
                        .branch = r->branch,
                        .base = r->base,
                        .title = op->task->title,
                        .body = body.buf};
    t->ops->open_pr(t, &pr, on_pr, op);
    bt_strbuf_release(&body);
}

void bt_pipeline_deliver(bt_pipeline *p, const bt_task *task, const bt_engine_result *res,
                         bt_pipeline_deliver_fn cb, void *ud)
{
    deliver_op *op = bt_xcalloc(1, sizeof *op);
    op->p = p;
    op->task = bt_task_dup(task);
    op->run_id = bt_xstrdup(res && res->run_id ? res->run_id : "");
    op->summary = bt_xstrdup(res && res->final_output ? res->final_output : "");
    op->cb = cb;
    op->ud = ud;
    op->extra = json_object();
    p->busy++;
    prec *r = rec_find(p, task->id);
    if (!r || !r->repo || !r->branch) {
        /* nothing to deliver: a plain workspace (not a git repository of ours) */
        deliver_finish(op, 0, NULL, NULL);
        return;
    }
    bt_strbuf msg = BT_STRBUF_INIT;
    bt_strbuf_addf(&msg, "%s (%s)\n\n", task->title && *task->title ? task->title : "baton changes",
                   ident_of(task));
    if (op->summary[0])
        bt_strbuf_addf(&msg, "%.2000s\n\n", op->summary);
    bt_strbuf_addf(&msg, "baton task %s, run %s\n", task->id, op->run_id);
    bt_git_push_opts o = {.path = r->workspace,
                          .message = msg.buf,
                          .branch = r->branch,
                          .env = r->git_env.len ? (const char *const *)r->git_env.items : NULL,
                          .log = p->env.log};
    bt_error err = BT_ERROR_INIT;
    if (bt_git_commit_push(p->env.loop, &o, on_pushed, op, &err) < 0) {
        deliver_finish(op, err.code, &err, "permanent");
    }
    bt_strbuf_release(&msg);
}

/* ---- settling ---- */

typedef struct settle_op {
    bt_pipeline *p;
    char task_id[BT_ID_LEN + 1];
    char *identifier;
    int remove;
} settle_op;

static void on_removed(int rc, const bt_error *err, void *ud)
{
    settle_op *op = ud;
    if (rc < 0)
        plog(op->p, BT_LOG_WARN, "cannot remove a workspace", op->task_id, err ? err->msg : "");
    else
        emit(op->p, "workspace.removed", op->task_id[0] ? op->task_id : NULL,
             json_pack("{ss}", "identifier", op->identifier));
    bt_pipeline *p = op->p;
    free(op->identifier);
    free(op);
    p->busy--;
    check_stopped(p);
}

/* Remove an item's workspace (before_remove runs in the manager). */
static void remove_ws(bt_pipeline *p, const char *task_id, const char *identifier)
{
    settle_op *op = bt_xcalloc(1, sizeof *op);
    op->p = p;
    snprintf(op->task_id, sizeof op->task_id, "%s", task_id ? task_id : "");
    op->identifier = bt_xstrdup(identifier);
    p->busy++;
    bt_workspaces_remove(p->env.workspaces, identifier, NULL, on_removed, op);
}

static void on_after_run(int rc, const bt_error *err, void *ud)
{
    (void)rc, (void)err;
    settle_op *op = ud;
    bt_pipeline *p = op->p;
    if (op->remove)
        remove_ws(p, op->task_id, op->identifier);
    free(op->identifier);
    free(op);
    p->busy--;
    check_stopped(p);
}

typedef struct wb_op {
    bt_pipeline *p;
    char task_id[BT_ID_LEN + 1];
    int success;
} wb_op;

static void on_written_back(int rc, const bt_error *err, void *ud)
{
    wb_op *op = ud;
    bt_pipeline *p = op->p;
    if (rc < 0) {
        plog(p, BT_LOG_WARN, "tracker write-back failed", op->task_id, err ? err->msg : "");
        emit(p, "tracker.writeback_failed", op->task_id,
             json_pack("{ss}", "error", err ? err->msg : "failed"));
    } else {
        emit(p, "tracker.writeback", op->task_id,
             json_pack("{ss}", "outcome", op->success ? "completed" : "failed"));
    }
    free(op);
    p->busy--;
    check_stopped(p);
}

static int64_t jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* Tell the item's tracker the final outcome (comment, labels); recorded as a
 * tracker.writeback / tracker.writeback_failed event. */
static void write_back(bt_pipeline *p, const bt_task *task, int completed, const json_t *result,
                       const char *error)
{
    bt_tracker *t = tracker_for(p, task->source);
    if (!t || !t->ops->finished || !task->external_id)
        return;
    wb_op *w = bt_xcalloc(1, sizeof *w);
    w->p = p;
    snprintf(w->task_id, sizeof w->task_id, "%s", task->id);
    w->success = completed;
    json_t *cost = json_object_get(result, "cost_usd");
    bt_tracker_outcome o = {.external_id = task->external_id,
                            .meta = task->meta,
                            .task_id = task->id,
                            .run_id = json_string_value(json_object_get(result, "run_id")),
                            .success = completed,
                            .summary = json_string_value(json_object_get(result, "final_output")),
                            .error = completed ? NULL : (error ? error : task->error),
                            .pr_url = json_string_value(json_object_get(result, "pr_url")),
                            .pr_error = json_string_value(json_object_get(result, "pr_error")),
                            .branch = json_string_value(json_object_get(result, "branch")),
                            .tokens_in = jint(result, "tokens_in"),
                            .tokens_out = jint(result, "tokens_out"),
                            .cost_usd = json_is_number(cost) ? json_number_value(cost) : 0,
                            .attempts = task->attempts};
    p->busy++;
    t->ops->finished(t, &o, on_written_back, w);
}

void bt_pipeline_settled(bt_pipeline *p, const bt_task *task, const char *status, int final,
                         const json_t *result, const char *error)
{
    prec *r = rec_find(p, task->id);
    int completed = status && strcmp(status, "completed") == 0;
    int cancelled = status && strcmp(status, "cancelled") == 0;
    int remove = 0;
    if (final) {
        if (r && r->remove_when_settled)
            remove = 1;
        else if (p->env.cfg->workspace.retention_ms == 0 && r)
            remove = 1;
    }
    /* tracker write-back on the final outcome (a cancelled item was stopped by a person or
     * by reconciliation: its issue says so already) */
    if (final && !cancelled)
        write_back(p, task, completed, result, error);
    if (r && r->workspace) {
        settle_op *op = bt_xcalloc(1, sizeof *op);
        op->p = p;
        snprintf(op->task_id, sizeof op->task_id, "%s", task->id);
        op->identifier = bt_xstrdup(r->identifier);
        op->remove = remove;
        bt_strvec env = BT_STRVEC_INIT;
        hook_env(task, r, &env);
        p->busy++;
        bt_workspaces_after_run(p->env.workspaces, r->workspace, (const char *const *)env.items,
                                on_after_run, op);
        bt_strvec_clear(&env);
    }
    rec_drop(p, task->id);
}

/* ---- stopping items (reconciliation, webhooks) ---- */

typedef struct stop_op {
    bt_pipeline *p;
    int terminal;
    char *reason;
} stop_op;

static void stop_op_done(stop_op *op)
{
    bt_pipeline *p = op->p;
    free(op->reason);
    free(op);
    p->busy--;
    check_stopped(p);
}

static void on_stop_cancelled(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    stop_op *op = ud;
    if (rc < 0 && rc != BT_ESTATE)
        plog(op->p, BT_LOG_WARN, "cannot cancel a task whose issue changed", task ? task->id : "",
             err ? err->msg : "");
    stop_op_done(op);
}

/* Stop one task: cancel it when open; workspace removed for terminal items (now, or when
 * its run here has stopped). */
static void stop_task(bt_pipeline *p, const bt_task *task, int terminal, const char *reason)
{
    int open = task->status == BT_TASK_DRAFT || task->status == BT_TASK_PENDING ||
               task->status == BT_TASK_IN_PROGRESS;
    if (terminal) {
        prec *r = rec_find(p, task->id);
        if (r)
            r->remove_when_settled = 1;
        else
            remove_ws(p, task->id, ident_of(task));
    }
    if (!open)
        return;
    if (p->env.log)
        bt_log_info(p->env.log, "stopping work on an item", BT_LF_STR("task", task->id),
                    BT_LF_STR("identifier", ident_of(task)), BT_LF_STR("reason", reason));
    stop_op *op = bt_xcalloc(1, sizeof *op);
    op->p = p;
    op->terminal = terminal;
    op->reason = bt_xstrdup(reason);
    p->busy++;
    bt_store_task_transition(p->env.store, task->id, BT_TASK_CANCELLED, reason, on_stop_cancelled,
                             op);
}

static void on_stop_found(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    stop_op *op = ud;
    if (rc == 0 && task)
        stop_task(op->p, task, op->terminal, op->reason);
    else if (rc < 0 && rc != BT_ENOENT)
        plog(op->p, BT_LOG_WARN, "cannot look up the task of an issue", NULL, err ? err->msg : "");
    stop_op_done(op);
}

void bt_pipeline_stop_item(bt_pipeline *p, const char *dedupe_key, int terminal, const char *reason)
{
    stop_op *op = bt_xcalloc(1, sizeof *op);
    op->p = p;
    op->terminal = terminal;
    op->reason = bt_xstrdup(reason ? reason : "stopped by the tracker");
    p->busy++;
    bt_store_task_get_by_key(p->env.store, dedupe_key, on_stop_found, op);
}

/* ---- reconciliation ---- */

typedef struct refresh_op {
    bt_pipeline *p;
    bt_task *task;
    int startup; /* start-up cleanup: only closed issues matter */
} refresh_op;

static void on_refreshed(bt_tracker_state state, const char *why, void *ud)
{
    refresh_op *op = ud;
    bt_pipeline *p = op->p;
    if (!p->stopping) {
        if (state == BT_TRACKER_TERMINAL)
            stop_task(p, op->task, 1, why ? why : "issue closed");
        else if (state == BT_TRACKER_INACTIVE && !op->startup)
            stop_task(p, op->task, 0, why ? why : "the issue no longer asks for work");
    }
    bt_task_free(op->task);
    free(op);
    p->busy--;
    check_stopped(p);
}

static int workspace_exists(bt_pipeline *p, const bt_task *t)
{
    bt_strbuf path = BT_STRBUF_INIT;
    struct stat st;
    int ok = bt_workspaces_path(p->env.workspaces, ident_of(t), &path, NULL) == 0 &&
             lstat(path.buf, &st) == 0 && S_ISDIR(st.st_mode);
    bt_strbuf_release(&path);
    return ok;
}

typedef struct list_op {
    bt_pipeline *p;
    int startup;
} list_op;

static void on_listed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                      const char *cursor)
{
    (void)cursor;
    list_op *lo = ud;
    bt_pipeline *p = lo->p;
    if (rc < 0)
        plog(p, BT_LOG_WARN, "reconciliation: cannot list tasks", NULL, err ? err->msg : "");
    for (size_t i = 0; rc == 0 && i < n && !p->stopping; i++) {
        const bt_task *t = tasks[i];
        bt_tracker *tr = tracker_for(p, t->source);
        if (!tr || !tr->ops->refresh || !t->external_id)
            continue;
        int open = !bt_task_status_terminal(t->status);
        /* start-up: every item with a workspace on disk; ticks: open items */
        if (lo->startup ? !workspace_exists(p, t) : !open)
            continue;
        refresh_op *op = bt_xcalloc(1, sizeof *op);
        op->p = p;
        op->task = bt_task_dup(t);
        op->startup = lo->startup;
        p->busy++;
        tr->ops->refresh(tr, t->external_id, t->meta, on_refreshed, op);
    }
    p->reconciling--;
    free(lo);
    p->busy--;
    check_stopped(p);
}

static void reconcile(bt_pipeline *p, int startup)
{
    if (p->stopping || (!startup && p->reconciling))
        return;
    for (size_t i = 0; i < NSOURCES; i++) {
        if (!tracker_for(p, tracker_sources[i]))
            continue;
        bt_task_filter f = {.source = tracker_sources[i],
                            .limit = LIST_LIMIT,
                            .newest_first = true,
                            .status_mask = startup
                                               ? 0
                                               : (1u << BT_TASK_DRAFT) | (1u << BT_TASK_PENDING) |
                                                     (1u << BT_TASK_IN_PROGRESS)};
        list_op *lo = bt_xcalloc(1, sizeof *lo);
        lo->p = p;
        lo->startup = startup;
        p->busy++;
        p->reconciling++;
        bt_store_task_list(p->env.store, &f, on_listed, lo);
    }
}

void bt_pipeline_reconcile_now(bt_pipeline *p)
{
    reconcile(p, 0);
}

static void on_tick(uv_timer_t *h)
{
    reconcile(h->data, 0);
}

/* ---- write-backs lost to a crash ----
 *
 * A process killed between a task's final state and its tracker write-back leaves the
 * issue labelled in progress with no comment. Once, writeback_check_ms after start-up
 * (time enough for any live process to finish its own write-backs), every tracker task
 * that reached completed/failed before start-up (within WRITEBACK_LOOKBACK_MS) and has
 * no tracker.writeback event is written back now. */

#define WRITEBACK_LOOKBACK_MS (7LL * 24 * 60 * 60 * 1000)

typedef struct wbcheck {
    bt_pipeline *p;
    bt_task *task;
} wbcheck;

static void on_wb_events(void *ud, int rc, const bt_error *err, bt_event *const *evs, size_t n)
{
    wbcheck *c = ud;
    bt_pipeline *p = c->p;
    int done = rc < 0; /* cannot tell: leave it */
    if (rc < 0)
        plog(p, BT_LOG_WARN, "cannot read a task's events", c->task->id, err ? err->msg : "");
    for (size_t i = 0; i < n && !done; i++)
        done = strcmp(evs[i]->type, "tracker.writeback") == 0;
    if (!done && !p->stopping) {
        plog(p, BT_LOG_INFO, "writing back an outcome an earlier process did not", c->task->id,
             bt_task_status_name(c->task->status));
        write_back(p, c->task, c->task->status == BT_TASK_COMPLETED, c->task->result,
                   c->task->error);
    }
    bt_task_free(c->task);
    free(c);
    p->busy--;
    check_stopped(p);
}

static void on_wb_listed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                         const char *cursor)
{
    (void)cursor;
    bt_pipeline *p = ud;
    if (rc < 0)
        plog(p, BT_LOG_WARN, "write-back check: cannot list tasks", NULL, err ? err->msg : "");
    for (size_t i = 0; rc == 0 && i < n && !p->stopping; i++) {
        const bt_task *t = tasks[i];
        bt_tracker *tr = tracker_for(p, t->source);
        if (!tr || !tr->ops->finished || !t->external_id || t->finished_at == 0 ||
            t->finished_at > p->started_at ||
            t->finished_at < p->started_at - WRITEBACK_LOOKBACK_MS)
            continue;
        wbcheck *c = bt_xcalloc(1, sizeof *c);
        c->p = p;
        c->task = bt_task_dup(t);
        bt_event_filter f = {.task_id = t->id, .type_prefix = "tracker.writeback", .limit = 50};
        p->busy++;
        bt_store_event_read(p->env.store, &f, on_wb_events, c);
    }
    p->busy--;
    check_stopped(p);
}

static void on_wb_check(uv_timer_t *h)
{
    bt_pipeline *p = h->data;
    if (p->stopping)
        return;
    for (size_t i = 0; i < NSOURCES; i++) {
        if (!tracker_for(p, tracker_sources[i]))
            continue;
        bt_task_filter f = {.source = tracker_sources[i],
                            .status_mask = (1u << BT_TASK_COMPLETED) | (1u << BT_TASK_FAILED),
                            .limit = LIST_LIMIT,
                            .newest_first = true};
        p->busy++;
        bt_store_task_list(p->env.store, &f, on_wb_listed, p);
    }
}

/* ---- retention sweep ---- */

static void on_sweep_listed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                            const char *cursor)
{
    (void)cursor;
    bt_pipeline *p = ud;
    if (rc < 0)
        plog(p, BT_LOG_WARN, "workspace sweep: cannot list tasks", NULL, err ? err->msg : "");
    int64_t before = bt_time_wall_ms() - p->env.cfg->workspace.retention_ms;
    for (size_t i = 0; rc == 0 && i < n && !p->stopping; i++) {
        const bt_task *t = tasks[i];
        if (t->finished_at == 0 || t->finished_at > before || rec_find(p, t->id))
            continue;
        if (workspace_exists(p, t))
            remove_ws(p, t->id, ident_of(t));
    }
    p->busy--;
    check_stopped(p);
}

static void on_sweep(uv_timer_t *h)
{
    bt_pipeline *p = h->data;
    if (p->stopping)
        return;
    bt_task_filter f = {.status_mask = (1u << BT_TASK_COMPLETED) | (1u << BT_TASK_FAILED) |
                                       (1u << BT_TASK_CANCELLED),
                        .limit = LIST_LIMIT,
                        .newest_first = true};
    p->busy++;
    bt_store_task_list(p->env.store, &f, on_sweep_listed, p);
}

/* ---- lifetime ---- */

bt_pipeline *bt_pipeline_new(const bt_pipeline_env *env)
{
    bt_pipeline *p = bt_xcalloc(1, sizeof *p);
    p->env = *env;
    return p;
}

static int64_t tick_ms(const bt_pipeline *p)
{
    int64_t ms = 0;
    if (tracker_for((bt_pipeline *)p, "github"))
        ms = p->env.cfg->trackers.github.poll_interval_ms;
    return ms > 0 ? ms : 60000;
}

int bt_pipeline_start(bt_pipeline *p, bt_error *err)
{
    (void)err;
    if (p->started)
        return 0;
    p->started = 1;
    uv_timer_init(p->env.loop, &p->tick);
    uv_timer_init(p->env.loop, &p->sweep);
    uv_timer_init(p->env.loop, &p->wbcheck);
    p->tick.data = p->sweep.data = p->wbcheck.data = p;
    p->timers = 3;
    p->started_at = bt_time_wall_ms();
    int any = 0;
    for (size_t i = 0; i < NSOURCES; i++)
        any |= tracker_for(p, tracker_sources[i]) != NULL;
    if (any) {
        reconcile(p, 1);
        uint64_t every = (uint64_t)tick_ms(p);
        uv_timer_start(&p->tick, on_tick, every, every);
        int64_t wb = p->env.writeback_check_ms > 0 ? p->env.writeback_check_ms : 60000;
        uv_timer_start(&p->wbcheck, on_wb_check, (uint64_t)wb, 0);
    }
    int64_t keep = p->env.cfg->workspace.retention_ms;
    if (keep > 0) {
        uint64_t every = (uint64_t)(keep < SWEEP_MAX_MS ? keep : SWEEP_MAX_MS);
        uv_timer_start(&p->sweep, on_sweep, 1000, every);
    }
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    bt_pipeline *p = h->data;
    p->timers--;
    check_stopped(p);
}

static void check_stopped(bt_pipeline *p)
{
    if (!p->stopping || p->busy > 0 || p->timers > 0 || !p->stop_done)
        return;
    void (*done)(void *) = p->stop_done;
    p->stop_done = NULL;
    done(p->stop_ud);
}

void bt_pipeline_stop(bt_pipeline *p, void (*done)(void *ud), void *ud)
{
    p->stopping = 1;
    p->stop_done = done;
    p->stop_ud = ud;
    if (p->started && p->timers == 3 && !uv_is_closing((uv_handle_t *)&p->tick)) {
        uv_close((uv_handle_t *)&p->tick, on_timer_closed);
        uv_close((uv_handle_t *)&p->sweep, on_timer_closed);
        uv_close((uv_handle_t *)&p->wbcheck, on_timer_closed);
        return;
    }
    check_stopped(p);
}

void bt_pipeline_free(bt_pipeline *p)
{
    if (!p)
        return;
    while (p->recs) {
        prec *r = p->recs;
        p->recs = r->next;
        rec_free(r);
    }
    free(p);
}
