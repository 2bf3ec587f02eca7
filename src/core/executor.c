/*
 * executor.c - the local executor (executor.h): claims tasks with a lease, keeps the
 * lease alive, runs each through the engine and reports the outcome to the queue.
 *
 * Each claimed task is an xtask with its own heartbeat timer. The queue is told exactly
 * once per run: completed / failed (retryable for transient errors) / released (shutdown,
 * so the next claim resumes the run) / nothing (the task was cancelled or the lease was
 * lost: someone else owns the task now, and a late report would be refused anyway).
 */
#include "core/executor.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "obs/log.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct xtask xtask;

struct bt_executor {
    bt_engine *engine;
    bt_store *store;
    const bt_config *cfg;
    bt_log *log;
    bt_executor_opts o;
    char *owner;
    int concurrency;
    int64_t lease_ms, tick_ms;
    uv_loop_t *loop;
    uv_timer_t tick, kick;
    int timers_init;
    int sub, subscribed;
    xtask *tasks;
    int nactive;
    int claiming, claim_again;
    int started, stopping, stopped;
    int pending; /* store ops in flight not tied to an xtask, plus handles closing */
    void (*stop_done)(void *ud);
    void *stop_ud;
};

struct xtask {
    bt_executor *x;
    xtask *next;
    bt_task *task;
    uv_timer_t hb;
    int refs; /* hb handle + store ops in flight + the engine run */
    int lease_lost, reported, run_active;
    /* one-task mode: run options */
    char *workflow, *workspace;
    json_t *inputs;
    int max_iterations, offline;
    /* with a pipeline: what the queue was told, for bt_pipeline_settled */
    const char *told;    /* "completed", "failed", "cancelled", "interrupted" */
    json_t *told_result; /* the result reported (completed) or NULL */
    char *told_error;
    int prepared;     /* the pipeline prepared this task (settled is owed) */
    int preparing;    /* bt_pipeline_prepare in flight */
    int cancel_early; /* cancelled while its workspace was being prepared */
};

static void try_claim(bt_executor *x);
static void check_stopped(bt_executor *x);

static void log_warn(bt_executor *x, const char *msg, const char *task, const char *detail)
{
    if (x->log)
        bt_log_warn(x->log, msg, BT_LF_STR("task", task ? task : ""),
                    BT_LF_STR("detail", detail ? detail : ""));
}

/* ---- xtask lifetime ---- */

static void xt_unref(xtask *t)
{
    if (--t->refs > 0)
        return;
    bt_executor *x = t->x;
    for (xtask **p = &x->tasks; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            break;
        }
    x->nactive--;
    bt_task_free(t->task);
    free(t->workflow);
    free(t->workspace);
    json_decref(t->inputs);
    json_decref(t->told_result);
    free(t->told_error);
    free(t);
    if (x->stopping)
        check_stopped(x);
    else if (x->started)
        try_claim(x);
}

static void on_hb_closed(uv_handle_t *h)
{
    xt_unref(h->data);
}

static void xt_close(xtask *t)
{
    if (!uv_is_closing((uv_handle_t *)&t->hb))
        uv_close((uv_handle_t *)&t->hb, on_hb_closed);
}

/* ---- reporting ---- */

/* The pipeline's completion stage learns the queue's verdict: final when the task will
 * not run again. */
static void settle(xtask *t, int final)
{
    bt_executor *x = t->x;
    if (!x->o.pipeline || !t->prepared)
        return;
    t->prepared = 0;
    bt_pipeline_settled(x->o.pipeline, t->task, t->told ? t->told : "interrupted", final,
                        t->told_result, t->told_error);
}

static void on_reported(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    (void)task;
    xtask *t = ud;
    /* BT_ESTALE: the lease is gone; BT_ESTATE: the task was cancelled already (the
     * cancel came through the task itself) - neither needs a report any more */
    if (rc < 0 && rc != BT_ESTALE && rc != BT_ESTATE)
        log_warn(t->x, "cannot report a task's outcome", t->task->id, err ? err->msg : "");
    int final = t->told && strcmp(t->told, "interrupted") != 0 && strcmp(t->told, "retry") != 0 &&
                (rc == 0 || (rc == BT_ESTATE && strcmp(t->told, "cancelled") == 0));
    settle(t, final);
    xt_unref(t);
}

static void on_fail_reported(void *ud, int rc, const bt_error *err, const bt_task *task,
                             bt_fail_outcome outcome)
{
    xtask *t = ud;
    if (rc == 0 && outcome == BT_FAIL_RETRY)
        t->told = "retry";
    on_reported(ud, rc, err, task);
}

static void finish_run(xtask *t, const bt_engine_result *r)
{
    bt_executor *x = t->x;
    if (!t->lease_lost && !t->reported) {
        t->reported = 1;
        const bt_task *k = t->task;
        t->refs++;
        t->told_error = r->error ? bt_xstrdup(r->error) : NULL;
        t->told_result = r->json ? json_incref(r->json) : NULL;
        if (strcmp(r->status, "completed") == 0) {
            t->told = "completed";
            bt_store_complete(x->store, k->id, x->owner, k->fencing, r->json, on_reported, t);
        } else if (strcmp(r->status, "interrupted") == 0) {
            t->told = "interrupted";
            bt_store_release(x->store, k->id, x->owner, k->fencing, "shutdown", on_reported, t);
        } else if (strcmp(r->status, "cancelled") == 0) {
            /* cancelled through the task (its lease is gone already) or by us */
            t->told = "cancelled";
            bt_store_task_transition(x->store, k->id, BT_TASK_CANCELLED,
                                     r->error ? r->error : "cancelled", on_reported, t);
        } else {
            t->told = "failed";
            int retryable = r->error_class && strcmp(r->error_class, "transient") == 0;
            bt_store_fail(x->store, k->id, x->owner, k->fencing, r->error ? r->error : "failed",
                          retryable, on_fail_reported, t);
        }
    } else {
        settle(t, 0); /* someone else owns the task now */
    }
    /* after the queue was told (executor.h): a read issued from the callback sees the
     * task's outcome */
    if (x->o.on_task_done)
        x->o.on_task_done(x, r, x->o.ud);
    xt_close(t);
    xt_unref(t); /* the run's reference */
}

typedef struct delivery {
    xtask *t;
    bt_engine_result r; /* copies of the run's result */
    json_t *json;
} delivery;

static void on_delivered(int rc, const bt_error *err, const char *error_class, json_t *extra,
                         void *ud)
{
    delivery *d = ud;
    bt_engine_result r = d->r;
    r.json = d->json;
    if (rc < 0) {
        /* the work is done but could not be delivered (push failed): retry the task */
        r.status = "failed";
        r.success = 0;
        r.error = err ? err->msg : "delivery failed";
        r.error_class = error_class ? error_class : "transient";
        json_object_set_new(d->json, "success", json_false());
        json_object_set_new(d->json, "status", json_string("failed"));
        json_object_set_new(d->json, "error", json_string(r.error));
    } else if (extra) {
        json_object_update(d->json, extra);
    }
    finish_run(d->t, &r);
    free((char *)d->r.run_id);
    free((char *)d->r.task_id);
    free((char *)d->r.final_output);
    json_decref(d->json);
    free(d);
}

static void on_run_done(bt_engine *e, const bt_engine_result *r, void *ud)
{
    (void)e;
    xtask *t = ud;
    bt_executor *x = t->x;
    t->run_active = 0;
    uv_timer_stop(&t->hb);
    if (x->o.pipeline && t->prepared && strcmp(r->status, "completed") == 0 && !t->lease_lost &&
        !t->reported) {
        /* commit, push and open the pull request before the queue hears "completed" */
        delivery *d = bt_xcalloc(1, sizeof *d);
        d->t = t;
        d->r = *r;
        d->r.run_id = bt_xstrdup(r->run_id ? r->run_id : "");
        d->r.task_id = bt_xstrdup(r->task_id ? r->task_id : "");
        d->r.final_output = bt_xstrdup(r->final_output ? r->final_output : "");
        d->r.status = "completed";
        d->r.error = NULL;
        d->r.error_class = NULL;
        d->json = r->json ? json_deep_copy(r->json) : json_object();
        bt_pipeline_deliver(x->o.pipeline, t->task, &d->r, on_delivered, d);
        return;
    }
    finish_run(t, r);
}

/* ---- heartbeats ---- */

static void on_heartbeat(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    (void)task;
    xtask *t = ud;
    if (rc == BT_ESTALE && t->run_active && !t->lease_lost) {
        t->lease_lost = 1;
        log_warn(t->x, "lease lost; stopping the run", t->task->id, err ? err->msg : "");
        bt_engine_cancel(t->x->engine, t->task->id, "the task's lease was lost");
    }
    xt_unref(t);
}

static void on_hb_timer(uv_timer_t *h)
{
    xtask *t = h->data;
    if (!t->run_active || t->lease_lost)
        return;
    t->refs++;
    bt_store_heartbeat(t->x->store, t->task->id, t->x->owner, t->task->fencing, t->x->lease_ms,
                       on_heartbeat, t);
}

/* ---- starting a claimed task ---- */

/* The engine calls back with the run's ud (the xtask); the caller's callback gets its own. */
static void on_run_progress(bt_engine *e, const char *kind, const json_t *data, void *ud)
{
    xtask *t = ud;
    t->x->o.on_progress(e, kind, data, t->x->o.ud);
}

/* A run that could not start: report it like a failed run. */
static void start_failed(xtask *t, const char *msg, const char *error_class)
{
    bt_engine_result r = {.run_id = "",
                          .task_id = t->task->id,
                          .status = "failed",
                          .error = msg,
                          .error_class = error_class,
                          .final_output = ""};
    json_t *j = json_pack("{sb ss ss}", "success", 0, "status", "failed", "error", msg);
    r.json = j;
    on_run_done(t->x->engine, &r, t);
    json_decref(j);
}

static void start_engine(xtask *t, const char *workspace, const char *const *git_env)
{
    bt_executor *x = t->x;
    bt_engine_run_opts ro = {.workflow = t->workflow,
                             .inputs = t->inputs,
                             .max_iterations = t->max_iterations,
                             .offline = t->offline,
                             .workspace = workspace,
                             .git_env = git_env,
                             .owner = x->owner,
                             .on_done = on_run_done,
                             .on_progress = x->o.on_progress ? on_run_progress : NULL,
                             .ud = t};
    bt_error err = BT_ERROR_INIT;
    if (bt_engine_start(x->engine, t->task, &ro, &err) < 0)
        start_failed(t, err.msg, "permanent"); /* it can never run as it is */
}

static void on_prepared(int rc, const bt_error *err, const char *error_class,
                        const bt_pipeline_prep *prep, void *ud)
{
    xtask *t = ud;
    t->preparing = 0;
    if (rc < 0) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "workspace: %s", err ? err->msg : "preparation failed");
        start_failed(t, m.buf, error_class ? error_class : "transient");
        bt_strbuf_release(&m);
        return;
    }
    t->prepared = 1;
    if (t->cancel_early || t->x->stopping) {
        /* cancelled, or the process is stopping, while the workspace was prepared */
        bt_engine_result r = {.run_id = "",
                              .task_id = t->task->id,
                              .status = t->cancel_early ? "cancelled" : "interrupted",
                              .error = t->cancel_early ? "cancelled" : "shutdown",
                              .error_class = "cancelled",
                              .final_output = ""};
        json_t *j = json_pack("{sb ss}", "success", 0, "status", r.status);
        r.json = j;
        on_run_done(t->x->engine, &r, t);
        json_decref(j);
        return;
    }
    start_engine(t, prep->workspace, prep->git_env);
}

static void run_claimed(bt_executor *x, const bt_task *task, xtask *proto)
{
    xtask *t = proto ? proto : bt_xcalloc(1, sizeof *t);
    t->x = x;
    t->task = bt_task_dup(task);
    t->refs = 1; /* the heartbeat handle */
    uv_timer_init(x->loop, &t->hb);
    t->hb.data = t;
    t->next = x->tasks;
    x->tasks = t;
    x->nactive++;
    int64_t every = x->lease_ms / 3 > 0 ? x->lease_ms / 3 : 1;
    uv_timer_start(&t->hb, on_hb_timer, (uint64_t)every, (uint64_t)every);
    t->refs++;
    t->run_active = 1;
    if (x->o.pipeline && !t->workspace) {
        /* workspace, repository, branch, hooks, tracker labels first */
        t->preparing = 1;
        t->prepared = 1; /* settled is owed from here on, also when preparation fails (a
                          * missing project setting is written back to the tracker) */
        bt_pipeline_prepare(x->o.pipeline, t->task, on_prepared, t);
        return;
    }
    start_engine(t, t->workspace, NULL);
}

static void on_handed_back(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    (void)rc, (void)err, (void)task;
    bt_executor *x = ud;
    x->pending--;
    check_stopped(x);
}

static void on_claimed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                       const char *cursor)
{
    (void)cursor;
    bt_executor *x = ud;
    x->claiming = 0;
    x->pending--;
    if (rc < 0) {
        log_warn(x, "claim failed", NULL, err ? err->msg : "");
    } else {
        for (size_t i = 0; i < n; i++) {
            if (x->stopping) { /* claimed while stopping: hand it straight back */
                x->pending++;
                bt_store_release(x->store, tasks[i]->id, x->owner, tasks[i]->fencing, "shutdown",
                                 on_handed_back, x);
                continue;
            }
            run_claimed(x, tasks[i], NULL);
        }
    }
    if (x->stopping) {
        check_stopped(x);
        return;
    }
    if (x->claim_again || (rc == 0 && n > 0)) {
        x->claim_again = 0;
        try_claim(x);
    }
}

static void try_claim(bt_executor *x)
{
    if (!x->started || x->stopping)
        return;
    if (x->claiming) {
        x->claim_again = 1;
        return;
    }
    int room = x->concurrency - x->nactive;
    if (room <= 0)
        return;
    bt_claim_opts co = {.owner = x->owner, .lease_ms = x->lease_ms, .max = room};
    x->claiming = 1;
    x->pending++;
    bt_store_claim(x->store, &co, on_claimed, x);
}

static void on_tick(uv_timer_t *h)
{
    try_claim(h->data);
}

static void on_event(void *ud, const bt_event *ev)
{
    bt_executor *x = ud;
    if (strcmp(ev->type, "task.status") == 0 &&
        strcmp(bt_json_str(ev->data, "to", ""), "cancelled") == 0) {
        /* the engine stops runs of cancelled tasks itself; one still being prepared has
         * no run yet */
        for (xtask *t = x->tasks; t; t = t->next)
            if (t->preparing && strcmp(t->task->id, ev->task_id) == 0)
                t->cancel_early = 1;
    }
    if (strcmp(ev->type, "task.created") == 0 ||
        (strcmp(ev->type, "task.status") == 0 &&
         strcmp(bt_json_str(ev->data, "to", ""), "pending") == 0))
        if (x->timers_init && !x->stopping)
            uv_timer_start(&x->kick, on_tick, 0, 0);
}

/* ---- recovery: tasks still leased to this owner from a previous life ---- */

static void on_recovered(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    (void)task;
    bt_executor *x = ud;
    if (rc < 0 && rc != BT_ESTALE)
        log_warn(x, "cannot take back a task", NULL, err ? err->msg : "");
    if (--x->pending == 0 && !x->stopping) {
        x->started = 1;
        try_claim(x);
    } else if (x->stopping) {
        check_stopped(x);
    }
}

static void on_listed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                      const char *cursor)
{
    (void)cursor;
    bt_executor *x = ud;
    if (rc < 0)
        log_warn(x, "cannot list tasks in progress", NULL, err ? err->msg : "");
    size_t mine = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const bt_task *t = tasks[i];
        if (t->lease_owner && strcmp(t->lease_owner, x->owner) == 0) {
            mine++;
            x->pending++;
            if (x->log)
                bt_log_info(x->log, "taking back a task this process held before it stopped",
                            BT_LF_STR("task", t->id));
            bt_store_release(x->store, t->id, x->owner, t->fencing, "restarted", on_recovered, x);
        }
    }
    (void)mine;
    on_recovered(x, 0, NULL, NULL); /* the list's own pending count */
}

bt_executor *bt_executor_new(bt_engine *engine, bt_store *store, const bt_config *cfg, bt_log *log,
                             const bt_executor_opts *opts)
{
    bt_executor *x = bt_xcalloc(1, sizeof *x);
    x->engine = engine;
    x->store = store;
    x->cfg = cfg;
    x->log = log;
    x->o = *opts;
    x->owner = bt_xstrdup(opts->owner ? opts->owner : "local");
    x->o.owner = x->owner;
    x->loop = bt_store_loop(store);
    x->concurrency = opts->concurrency > 0                ? opts->concurrency
                     : cfg && cfg->concurrency.global > 0 ? (int)cfg->concurrency.global
                                                          : 4;
    x->lease_ms = opts->lease_ms > 0               ? opts->lease_ms
                  : cfg && cfg->queue.lease_ms > 0 ? cfg->queue.lease_ms
                                                   : 300000;
    x->tick_ms = opts->tick_ms > 0 ? opts->tick_ms : 1000;
    return x;
}

int bt_executor_start(bt_executor *x, bt_error *err)
{
    (void)err;
    uv_timer_init(x->loop, &x->tick);
    uv_timer_init(x->loop, &x->kick);
    x->tick.data = x->kick.data = x;
    x->timers_init = 1;
    uv_timer_start(&x->tick, on_tick, (uint64_t)x->tick_ms, (uint64_t)x->tick_ms);
    x->sub = bt_store_subscribe(x->store, on_event, x);
    x->subscribed = 1;
    bt_task_filter f = {.status_mask = 1u << BT_TASK_IN_PROGRESS, .limit = 1000};
    x->pending++;
    bt_store_task_list(x->store, &f, on_listed, x);
    return 0;
}

/* ---- one task ---- */

typedef struct one_ctx {
    bt_executor *x;
    xtask *proto;
    char id[BT_ID_LEN + 1];
} one_ctx;

static void on_one_claimed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                           const char *cursor)
{
    (void)cursor;
    one_ctx *c = ud;
    bt_executor *x = c->x;
    x->pending--;
    if (rc < 0 || n == 0) {
        bt_strbuf m = BT_STRBUF_INIT;
        if (rc < 0)
            bt_strbuf_addf(&m, "cannot claim task %s: %s", c->id, err ? err->msg : "");
        else
            bt_strbuf_addf(&m,
                           "task %s could not be claimed: it is not pending (another "
                           "process took it, or it is finished)",
                           c->id);
        bt_engine_result r = {.run_id = "",
                              .task_id = c->id,
                              .status = "failed",
                              .error = m.buf,
                              .error_class = "permanent",
                              .final_output = ""};
        json_t *j = json_pack("{sb ss ss}", "success", 0, "status", "failed", "error", m.buf);
        r.json = j;
        if (x->o.on_task_done)
            x->o.on_task_done(x, &r, x->o.ud);
        json_decref(j);
        bt_strbuf_release(&m);
        free(c->proto->workflow);
        free(c->proto->workspace);
        json_decref(c->proto->inputs);
        free(c->proto);
    } else {
        run_claimed(x, tasks[0], c->proto);
    }
    free(c);
    if (x->stopping)
        check_stopped(x);
}

int bt_executor_run_task(bt_executor *x, const char *task_id, const bt_engine_run_opts *ro,
                         bt_error *err)
{
    if (!task_id || !*task_id)
        return bt_errorf(err, BT_EINVAL, "run_task needs a task id");
    one_ctx *c = bt_xcalloc(1, sizeof *c);
    c->x = x;
    snprintf(c->id, sizeof c->id, "%s", task_id);
    xtask *t = bt_xcalloc(1, sizeof *t);
    if (ro) {
        t->workflow = ro->workflow ? bt_xstrdup(ro->workflow) : NULL;
        t->workspace = ro->workspace ? bt_xstrdup(ro->workspace) : NULL;
        t->inputs = ro->inputs ? json_deep_copy(ro->inputs) : NULL;
        t->max_iterations = ro->max_iterations;
        t->offline = ro->offline;
    }
    c->proto = t;
    bt_claim_opts co = {.owner = x->owner, .lease_ms = x->lease_ms, .max = 1, .task_id = c->id};
    x->pending++;
    bt_store_claim(x->store, &co, on_one_claimed, c);
    return 0;
}

/* ---- stopping ---- */

static void on_stop_timer_closed(uv_handle_t *h)
{
    bt_executor *x = h->data;
    x->pending--;
    check_stopped(x);
}

static void on_stop_kick(uv_timer_t *h)
{
    check_stopped(h->data);
}

static void check_stopped(bt_executor *x)
{
    if (!x->stopping || x->stopped || x->pending > 0 || x->tasks)
        return;
    if (x->timers_init) {
        x->timers_init = 0;
        x->pending += 2;
        uv_close((uv_handle_t *)&x->tick, on_stop_timer_closed);
        uv_close((uv_handle_t *)&x->kick, on_stop_timer_closed);
        return;
    }
    x->stopped = 1;
    if (x->stop_done)
        x->stop_done(x->stop_ud);
}

void bt_executor_stop(bt_executor *x, void (*done)(void *ud), void *ud)
{
    if (x->stopping)
        return;
    x->stopping = 1;
    x->stop_done = done;
    x->stop_ud = ud;
    if (x->subscribed) {
        bt_store_unsubscribe(x->store, x->sub);
        x->subscribed = 0;
    }
    if (x->timers_init) {
        uv_timer_stop(&x->tick);
        /* report from a loop callback, never from inside this call */
        uv_timer_start(&x->kick, on_stop_kick, 0, 0);
    }
    bt_engine_stop(x->engine);
    if (!x->timers_init) {
        /* one-task mode: no timers of our own; the runs' ends call check_stopped */
        if (!x->tasks && x->pending == 0) {
            x->stopped = 1;
            if (done)
                done(ud);
        }
    }
}

int bt_executor_active(const bt_executor *x)
{
    return x->nactive;
}

void bt_executor_free(bt_executor *x)
{
    if (!x)
        return;
    if (x->subscribed)
        bt_store_unsubscribe(x->store, x->sub);
    free(x->owner);
    free(x);
}
