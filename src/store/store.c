/*
 * store.c - backend selection by URL, the common part of every store (options,
 * clock, ids, event subscribers, retry backoff), and the dispatch of each operation
 * in store.h to the backend's vtable. With an op hook set (bt_store_set_op_hook), each
 * dispatch wraps the caller's callback in a small trampoline that times the operation.
 */
#include "store/store_impl.h"

#include "base/mem.h"
#include "base/str.h"
#include "base/time.h"

#include <stdlib.h>
#include <string.h>

static int64_t wall_clock(void *ud)
{
    (void)ud;
    return bt_time_wall_ms();
}

void bt_store__init(bt_store *s, const bt_store_vtable *vt, uv_loop_t *loop,
                    const bt_store_options *opts)
{
    memset(s, 0, sizeof *s);
    s->vt = vt;
    s->loop = loop;
    if (opts)
        s->opts = *opts;
    if (s->opts.default_max_attempts <= 0)
        s->opts.default_max_attempts = 2;
    if (s->opts.backoff_base_ms <= 0)
        s->opts.backoff_base_ms = 10000;
    if (s->opts.backoff_max_ms <= 0)
        s->opts.backoff_max_ms = 300000;
    if (!s->opts.now_ms)
        s->opts.now_ms = wall_clock;
    if (s->opts.pool_size <= 0)
        s->opts.pool_size = 4;
    s->next_sub_id = 1;
}

int64_t bt_store__now(const bt_store *s)
{
    return s->opts.now_ms(s->opts.now_ud);
}

char *bt_store__new_id(bt_store *s, char out[BT_ID_LEN + 1])
{
    return bt_id_new(&s->idgen, out);
}

void bt_store__publish(bt_store *s, const bt_event *ev)
{
    /* Copy first: a listener may unsubscribe (itself or another) while we iterate. */
    int n = s->nsubs;
    struct {
        bt_store_listener_fn fn;
        void *ud;
        int id;
    } subs[BT_STORE_MAX_SUBSCRIBERS];
    memcpy(subs, s->subs, sizeof subs[0] * (size_t)n);
    for (int i = 0; i < n; i++) {
        int still = 0;
        for (int j = 0; j < s->nsubs; j++)
            if (s->subs[j].id == subs[i].id)
                still = 1;
        if (still)
            subs[i].fn(subs[i].ud, ev);
    }
}

int bt_store_subscribe(bt_store *s, bt_store_listener_fn fn, void *ud)
{
    if (s->nsubs >= BT_STORE_MAX_SUBSCRIBERS)
        return BT_EBUSY;
    int id = s->next_sub_id++;
    s->subs[s->nsubs].fn = fn;
    s->subs[s->nsubs].ud = ud;
    s->subs[s->nsubs].id = id;
    s->nsubs++;
    return id;
}

void bt_store_unsubscribe(bt_store *s, int subscription)
{
    for (int i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id == subscription) {
            memmove(&s->subs[i], &s->subs[i + 1], sizeof s->subs[0] * (size_t)(s->nsubs - i - 1));
            s->nsubs--;
            return;
        }
    }
}

int64_t bt_store_backoff_ms(const bt_store *s, int32_t attempt)
{
    if (attempt < 1)
        attempt = 1;
    int64_t d = s->opts.backoff_base_ms;
    for (int32_t i = 1; i < attempt && d < s->opts.backoff_max_ms; i++)
        d *= 2;
    return d < s->opts.backoff_max_ms ? d : s->opts.backoff_max_ms;
}

void bt_store_set_retry_policy(bt_store *s, int32_t default_max_attempts, int64_t backoff_base_ms,
                               int64_t backoff_max_ms)
{
    if (default_max_attempts > 0)
        s->opts.default_max_attempts = default_max_attempts;
    if (backoff_base_ms > 0)
        s->opts.backoff_base_ms = backoff_base_ms;
    if (backoff_max_ms > 0)
        s->opts.backoff_max_ms = backoff_max_ms;
}

int bt_store__check_task_input(const bt_task_input *in, bt_error *err)
{
    if (!in->source || !*in->source)
        return bt_errorf(err, BT_EINVAL, "a task needs a source (api, github, ...)");
    if (!in->title || !*in->title)
        return bt_errorf(err, BT_EINVAL, "a task needs a non-empty title");
    if (in->labels && !json_is_array(in->labels))
        return bt_errorf(err, BT_EINVAL, "labels must be an array of strings");
    if (in->labels) {
        size_t i;
        json_t *v;
        json_array_foreach(in->labels, i, v) if (!json_is_string(v)) return bt_errorf(
            err, BT_EINVAL, "labels must be an array of strings (item %zu is not)", i);
    }
    if (in->meta && !json_is_object(in->meta))
        return bt_errorf(err, BT_EINVAL, "meta must be an object");
    if (in->max_attempts < 0)
        return bt_errorf(err, BT_EINVAL, "max_attempts must be positive");
    return 0;
}

int bt_store__check_claim(const bt_claim_opts *o, bt_error *err)
{
    if (!o->owner || !*o->owner)
        return bt_errorf(err, BT_EINVAL, "a claim needs an owner");
    if (o->lease_ms <= 0)
        return bt_errorf(err, BT_EINVAL, "a claim needs a positive lease");
    if (o->max < 0 || o->max > 1000)
        return bt_errorf(err, BT_EINVAL, "a claim takes 1 to 1000 tasks at once");
    /* "" would match no task and look like "nothing ready": say what is wrong instead */
    if (o->task_id && !*o->task_id)
        return bt_errorf(err, BT_EINVAL, "a claim of one task needs its id (got an empty one)");
    return 0;
}

int bt_store__check_agent_call(const bt_agent_call *c, bt_error *err)
{
    if (!c)
        return bt_errorf(err, BT_EINVAL, "no agent call to record");
    if (!c->agent || !*c->agent)
        return bt_errorf(err, BT_EINVAL, "an agent call needs the agent's name");
    if (!c->outcome || !*c->outcome)
        return bt_errorf(err, BT_EINVAL,
                         "an agent call needs an outcome (success, failure or cancelled)");
    if (c->at <= 0)
        return bt_errorf(err, BT_EINVAL, "an agent call needs the time it ended (at, wall ms)");
    if (c->duration_ms < 0 || c->tokens < 0)
        return bt_errorf(err, BT_EINVAL,
                         "an agent call's duration and tokens must not be negative");
    return 0;
}

int bt_store__check_usage(const bt_usage_query *q, bt_error *err)
{
    if (!q)
        return bt_errorf(err, BT_EINVAL, "a usage read needs its time range");
    if (q->since_ms < 0 || q->until_ms <= q->since_ms)
        return bt_errorf(err, BT_EINVAL,
                         "a usage read needs since < until (got since %lld, until %lld)",
                         (long long)q->since_ms, (long long)q->until_ms);
    if (q->hours_since_ms < 0 || (q->hours_since_ms > 0 && q->hours_since_ms >= q->until_ms))
        return bt_errorf(err, BT_EINVAL,
                         "a usage read's hourly range must start before until (got %lld)",
                         (long long)q->hours_since_ms);
    return 0;
}

static void usage_runs_free(bt_usage_runs *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].project);
    free(v);
}

void bt_store__usage_clear(bt_usage *u)
{
    for (size_t i = 0; i < u->nsteps; i++) {
        free(u->steps[i].project);
        free(u->steps[i].agent);
    }
    free(u->steps);
    usage_runs_free(u->runs_by_day, u->nruns_by_day);
    usage_runs_free(u->runs_by_hour, u->nruns_by_hour);
    memset(u, 0, sizeof *u);
}

int bt_store__check_delivery(const char *source, const char *delivery_id, bt_error *err)
{
    if (!source || !*source)
        return bt_errorf(err, BT_EINVAL, "a webhook delivery needs its source (e.g. github)");
    if (!delivery_id || !*delivery_id)
        return bt_errorf(err, BT_EINVAL,
                         "a webhook delivery needs its delivery id (X-GitHub-Delivery)");
    if (strlen(source) > BT_STORE_DELIVERY_ID_MAX || strlen(delivery_id) > BT_STORE_DELIVERY_ID_MAX)
        return bt_errorf(err, BT_EINVAL, "a webhook delivery id or source is longer than %d bytes",
                         BT_STORE_DELIVERY_ID_MAX);
    return 0;
}

int bt_store_open(uv_loop_t *loop, const char *url, const bt_store_options *opts, bt_store **out,
                  bt_error *err)
{
    *out = NULL;
    if (!url || !*url)
        return bt_errorf(err, BT_EINVAL, "no store URL; use sqlite:PATH or postgres://...");
    if (bt_str_starts_with(url, "postgres://") || bt_str_starts_with(url, "postgresql://"))
        return bt_store_postgres_open(loop, url, opts, out, err);
    if (bt_str_starts_with(url, "sqlite://"))
        return bt_store_sqlite_open(loop, url + 9, opts, out, err);
    if (bt_str_starts_with(url, "sqlite:"))
        return bt_store_sqlite_open(loop, url + 7, opts, out, err);
    if (bt_str_ends_with(url, ".db") || bt_str_ends_with(url, ".sqlite"))
        return bt_store_sqlite_open(loop, url, opts, out, err);
    return bt_errorf(err, BT_EINVAL,
                     "store URL '%s' is not understood; use sqlite:PATH or "
                     "postgres://user:pass@host/db",
                     url);
}

void bt_store_close(bt_store *s)
{
    if (s)
        s->vt->close(s);
}

const char *bt_store_backend(const bt_store *s)
{
    return s->vt->name;
}

uv_loop_t *bt_store_loop(const bt_store *s)
{
    return s->loop;
}

int bt_store_connections(const bt_store *s)
{
    return s->vt->connections(s);
}

/* ---- operation timing (bt_store_set_op_hook). The trampoline carries the caller's
 * callback and ud; it reports the elapsed time, frees itself, then calls the caller. */

void bt_store_set_op_hook(bt_store *s, bt_store_op_fn fn, void *ud)
{
    s->op_hook = fn;
    s->op_ud = ud;
}

typedef struct op_timer {
    bt_store *s;
    const char *op; /* a literal */
    int64_t t0_ns;
    void (*cb)(void); /* the caller's callback, cast back to its type */
    void *ud;
} op_timer;

static op_timer *op_begin(bt_store *s, const char *op, void (*cb)(void), void *ud)
{
    op_timer *t = bt_xmalloc(sizeof *t);
    t->s = s;
    t->op = op;
    t->t0_ns = bt_time_mono_ns();
    t->cb = cb;
    t->ud = ud;
    return t;
}

/* Report, free, and hand back the caller's callback and ud. */
static void (*op_end(op_timer *t, void **ud))(void)
{
    bt_store *s = t->s;
    if (s->op_hook)
        s->op_hook(s->op_ud, t->op, (double)(bt_time_mono_ns() - t->t0_ns) / 1e9);
    void (*cb)(void) = t->cb;
    *ud = t->ud;
    free(t);
    return cb;
}

#define TRAMPOLINE(name, type, params, args)                                                       \
    static void name params                                                                        \
    {                                                                                              \
        void *cud;                                                                                 \
        type cb = (type)op_end(ud, &cud);                                                          \
        if (cb)                                                                                    \
            cb args;                                                                               \
    }
TRAMPOLINE(tr_done, bt_store_done_cb, (void *ud, int rc, const bt_error *err), (cud, rc, err))
TRAMPOLINE(tr_task, bt_store_task_cb, (void *ud, int rc, const bt_error *err, const bt_task *t),
           (cud, rc, err, t))
TRAMPOLINE(tr_create, bt_store_create_cb,
           (void *ud, int rc, const bt_error *err, const bt_task *t, bool created),
           (cud, rc, err, t, created))
TRAMPOLINE(tr_tasks, bt_store_tasks_cb,
           (void *ud, int rc, const bt_error *err, bt_task *const *v, size_t n, const char *c),
           (cud, rc, err, v, n, c))
TRAMPOLINE(tr_fail, bt_store_fail_cb,
           (void *ud, int rc, const bt_error *err, const bt_task *t, bt_fail_outcome o),
           (cud, rc, err, t, o))
TRAMPOLINE(tr_count, bt_store_count_cb, (void *ud, int rc, const bt_error *err, int64_t n),
           (cud, rc, err, n))
TRAMPOLINE(tr_stats, bt_store_stats_cb,
           (void *ud, int rc, const bt_error *err, const bt_task_stats *st), (cud, rc, err, st))
TRAMPOLINE(tr_run, bt_store_run_cb, (void *ud, int rc, const bt_error *err, const bt_run *r),
           (cud, rc, err, r))
TRAMPOLINE(tr_runs, bt_store_runs_cb,
           (void *ud, int rc, const bt_error *err, bt_run *const *v, size_t n),
           (cud, rc, err, v, n))
TRAMPOLINE(tr_step, bt_store_step_cb, (void *ud, int rc, const bt_error *err, const bt_step *st),
           (cud, rc, err, st))
TRAMPOLINE(tr_steps, bt_store_steps_cb,
           (void *ud, int rc, const bt_error *err, bt_step *const *v, size_t n),
           (cud, rc, err, v, n))
TRAMPOLINE(tr_spend, bt_store_spend_cb, (void *ud, int rc, const bt_error *err, const bt_spend *sp),
           (cud, rc, err, sp))
TRAMPOLINE(tr_usage, bt_store_usage_cb, (void *ud, int rc, const bt_error *err, const bt_usage *u),
           (cud, rc, err, u))
TRAMPOLINE(tr_event, bt_store_event_cb, (void *ud, int rc, const bt_error *err, const bt_event *e),
           (cud, rc, err, e))
TRAMPOLINE(tr_events, bt_store_events_cb,
           (void *ud, int rc, const bt_error *err, bt_event *const *v, size_t n),
           (cud, rc, err, v, n))
TRAMPOLINE(tr_worker, bt_store_worker_cb,
           (void *ud, int rc, const bt_error *err, const bt_worker *w), (cud, rc, err, w))
TRAMPOLINE(tr_workers, bt_store_workers_cb,
           (void *ud, int rc, const bt_error *err, bt_worker *const *v, size_t n),
           (cud, rc, err, v, n))
TRAMPOLINE(tr_approval, bt_store_approval_cb,
           (void *ud, int rc, const bt_error *err, const bt_approval *a), (cud, rc, err, a))
TRAMPOLINE(tr_approvals, bt_store_approvals_cb,
           (void *ud, int rc, const bt_error *err, bt_approval *const *v, size_t n),
           (cud, rc, err, v, n))
TRAMPOLINE(tr_calls, bt_store_agent_calls_cb,
           (void *ud, int rc, const bt_error *err, bt_agent_call *const *v, size_t n),
           (cud, rc, err, v, n))
TRAMPOLINE(tr_lock, bt_store_lock_cb, (void *ud, int rc, const bt_error *err, const bt_lock *l),
           (cud, rc, err, l))

/* In a dispatch function: when timing, swap (cb, ud) for the trampoline. */
#define TIMED(op, tramp)                                                                           \
    do {                                                                                           \
        if (s->op_hook) {                                                                          \
            ud = op_begin(s, op, (void (*)(void))cb, ud);                                          \
            cb = tramp;                                                                            \
        }                                                                                          \
    } while (0)

void bt_store_flush(bt_store *s, bt_store_done_cb cb, void *ud)
{
    TIMED("flush", tr_done);
    s->vt->flush(s, cb, ud);
}
void bt_store_task_create(bt_store *s, const bt_task_input *in, bt_store_create_cb cb, void *ud)
{
    TIMED("task_create", tr_create);
    s->vt->task_create(s, in, cb, ud);
}
void bt_store_task_get(bt_store *s, const char *id, bt_store_task_cb cb, void *ud)
{
    TIMED("task_get", tr_task);
    s->vt->task_get(s, id, cb, ud);
}
void bt_store_task_get_by_key(bt_store *s, const char *dedupe_key, bt_store_task_cb cb, void *ud)
{
    TIMED("task_get_by_key", tr_task);
    s->vt->task_get_by_key(s, dedupe_key, cb, ud);
}
void bt_store_task_list(bt_store *s, const bt_task_filter *f, bt_store_tasks_cb cb, void *ud)
{
    TIMED("task_list", tr_tasks);
    s->vt->task_list(s, f, cb, ud);
}
void bt_store_task_update(bt_store *s, const char *id, const bt_task_patch *p, bt_store_task_cb cb,
                          void *ud)
{
    TIMED("task_update", tr_task);
    s->vt->task_update(s, id, p, cb, ud);
}
void bt_store_task_transition(bt_store *s, const char *id, bt_task_status to, const char *reason,
                              bt_store_task_cb cb, void *ud)
{
    TIMED("task_transition", tr_task);
    s->vt->task_transition(s, id, to, reason, cb, ud);
}
void bt_store_claim(bt_store *s, const bt_claim_opts *opts, bt_store_tasks_cb cb, void *ud)
{
    TIMED("claim", tr_tasks);
    s->vt->claim(s, opts, cb, ud);
}
void bt_store_heartbeat(bt_store *s, const char *id, const char *owner, int64_t fencing,
                        int64_t lease_ms, bt_store_task_cb cb, void *ud)
{
    TIMED("heartbeat", tr_task);
    s->vt->heartbeat(s, id, owner, fencing, lease_ms, cb, ud);
}
void bt_store_complete(bt_store *s, const char *id, const char *owner, int64_t fencing,
                       const json_t *result, bt_store_task_cb cb, void *ud)
{
    TIMED("complete", tr_task);
    s->vt->complete(s, id, owner, fencing, result, cb, ud);
}
void bt_store_fail(bt_store *s, const char *id, const char *owner, int64_t fencing,
                   const char *error, bool retryable, bt_store_fail_cb cb, void *ud)
{
    TIMED("fail", tr_fail);
    s->vt->fail(s, id, owner, fencing, error, retryable, cb, ud);
}
void bt_store_release(bt_store *s, const char *id, const char *owner, int64_t fencing,
                      const char *reason, bt_store_task_cb cb, void *ud)
{
    TIMED("release", tr_task);
    s->vt->release(s, id, owner, fencing, reason, cb, ud);
}
void bt_store_requeue_expired(bt_store *s, bt_store_count_cb cb, void *ud)
{
    TIMED("requeue_expired", tr_count);
    s->vt->requeue_expired(s, cb, ud);
}
void bt_store_task_stats(bt_store *s, bt_store_stats_cb cb, void *ud)
{
    TIMED("task_stats", tr_stats);
    s->vt->task_stats(s, cb, ud);
}
void bt_store_cleanup_stale(bt_store *s, int64_t max_age_ms, bt_store_count_cb cb, void *ud)
{
    TIMED("cleanup_stale", tr_count);
    s->vt->cleanup_stale(s, max_age_ms, cb, ud);
}
void bt_store_clear_completed(bt_store *s, bt_store_count_cb cb, void *ud)
{
    TIMED("clear_completed", tr_count);
    s->vt->clear_completed(s, cb, ud);
}
void bt_store_run_create(bt_store *s, const char *task_id, const char *workflow,
                         const char *workflow_version, const json_t *state, bt_store_run_cb cb,
                         void *ud)
{
    TIMED("run_create", tr_run);
    s->vt->run_create(s, task_id, workflow, workflow_version, state, cb, ud);
}
void bt_store_run_get(bt_store *s, const char *run_id, bt_store_run_cb cb, void *ud)
{
    TIMED("run_get", tr_run);
    s->vt->run_get(s, run_id, cb, ud);
}
void bt_store_run_list(bt_store *s, const char *task_id, const bt_run_status *status, int limit,
                       bt_store_runs_cb cb, void *ud)
{
    TIMED("run_list", tr_runs);
    s->vt->run_list(s, task_id, status, limit, cb, ud);
}
void bt_store_run_update(bt_store *s, const char *run_id, const bt_run_patch *p, bt_store_run_cb cb,
                         void *ud)
{
    TIMED("run_update", tr_run);
    s->vt->run_update(s, run_id, p, cb, ud);
}
void bt_store_step_start(bt_store *s, const char *run_id, const char *step_key, int32_t iteration,
                         int32_t attempt, int32_t seq, const char *agent, const char *role,
                         bt_store_step_cb cb, void *ud)
{
    TIMED("step_start", tr_step);
    s->vt->step_start(s, run_id, step_key, iteration, attempt, seq, agent, role, cb, ud);
}
void bt_store_step_finish(bt_store *s, const char *step_id, const bt_step_result *r,
                          bt_store_step_cb cb, void *ud)
{
    TIMED("step_finish", tr_step);
    s->vt->step_finish(s, step_id, r, cb, ud);
}
void bt_store_step_list(bt_store *s, const char *run_id, bt_store_steps_cb cb, void *ud)
{
    TIMED("step_list", tr_steps);
    s->vt->step_list(s, run_id, cb, ud);
}
void bt_store_spend(bt_store *s, const bt_spend_query *q, bt_store_spend_cb cb, void *ud)
{
    TIMED("spend", tr_spend);
    s->vt->spend(s, q, cb, ud);
}
void bt_store_usage(bt_store *s, const bt_usage_query *q, bt_store_usage_cb cb, void *ud)
{
    TIMED("usage", tr_usage);
    s->vt->usage(s, q, cb, ud);
}
void bt_store_event_append(bt_store *s, const char *type, const char *task_id, const char *run_id,
                           const json_t *data, bt_store_event_cb cb, void *ud)
{
    TIMED("event_append", tr_event);
    s->vt->event_append(s, type, task_id, run_id, data, cb, ud);
}
void bt_store_event_read(bt_store *s, const bt_event_filter *f, bt_store_events_cb cb, void *ud)
{
    TIMED("event_read", tr_events);
    s->vt->event_read(s, f, cb, ud);
}
void bt_store_event_last_seq(bt_store *s, bt_store_count_cb cb, void *ud)
{
    TIMED("event_last_seq", tr_count);
    s->vt->event_last_seq(s, cb, ud);
}
void bt_store_worker_upsert(bt_store *s, const bt_worker_input *in, bt_store_worker_cb cb, void *ud)
{
    TIMED("worker_upsert", tr_worker);
    s->vt->worker_upsert(s, in, cb, ud);
}
void bt_store_worker_get(bt_store *s, const char *id, bt_store_worker_cb cb, void *ud)
{
    TIMED("worker_get", tr_worker);
    s->vt->worker_get(s, id, cb, ud);
}
void bt_store_worker_list(bt_store *s, bt_store_workers_cb cb, void *ud)
{
    TIMED("worker_list", tr_workers);
    s->vt->worker_list(s, cb, ud);
}
void bt_store_approval_create(bt_store *s, const bt_approval_input *in, bt_store_approval_cb cb,
                              void *ud)
{
    TIMED("approval_create", tr_approval);
    s->vt->approval_create(s, in, cb, ud);
}
void bt_store_approval_get(bt_store *s, const char *id, bt_store_approval_cb cb, void *ud)
{
    TIMED("approval_get", tr_approval);
    s->vt->approval_get(s, id, cb, ud);
}
void bt_store_approval_list(bt_store *s, const bt_approval_status *status, const char *run_id,
                            bt_store_approvals_cb cb, void *ud)
{
    TIMED("approval_list", tr_approvals);
    s->vt->approval_list(s, status, run_id, cb, ud);
}
void bt_store_approval_decide(bt_store *s, const char *id, bool approve, const char *by,
                              const char *comment, bt_store_approval_cb cb, void *ud)
{
    TIMED("approval_decide", tr_approval);
    s->vt->approval_decide(s, id, approve, by, comment, cb, ud);
}
void bt_store_lock_acquire(bt_store *s, const char *repo, const char *const *paths, size_t n,
                           const char *owner, int64_t ttl_ms, bt_store_lock_cb cb, void *ud)
{
    TIMED("lock_acquire", tr_lock);
    s->vt->lock_acquire(s, repo, paths, n, owner, ttl_ms, cb, ud);
}
void bt_store_lock_release(bt_store *s, const char *repo, const char *owner, bt_store_count_cb cb,
                           void *ud)
{
    TIMED("lock_release", tr_count);
    s->vt->lock_release(s, repo, owner, cb, ud);
}
void bt_store_agent_call_add(bt_store *s, const bt_agent_call *c, bt_store_done_cb cb, void *ud)
{
    TIMED("agent_call_add", tr_done);
    s->vt->agent_call_add(s, c, cb, ud);
}
void bt_store_agent_calls(bt_store *s, int64_t since_ms, int per_agent, bt_store_agent_calls_cb cb,
                          void *ud)
{
    TIMED("agent_calls", tr_calls);
    s->vt->agent_calls(s, since_ms, per_agent, cb, ud);
}
void bt_store_agent_calls_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud)
{
    TIMED("agent_calls_prune", tr_count);
    s->vt->agent_calls_prune(s, before_ms, cb, ud);
}
void bt_store_delivery_record(bt_store *s, const char *source, const char *delivery_id,
                              bt_store_count_cb cb, void *ud)
{
    TIMED("delivery_record", tr_count);
    s->vt->delivery_record(s, source, delivery_id, cb, ud);
}
void bt_store_delivery_forget(bt_store *s, const char *source, const char *delivery_id,
                              bt_store_count_cb cb, void *ud)
{
    TIMED("delivery_forget", tr_count);
    s->vt->delivery_forget(s, source, delivery_id, cb, ud);
}
void bt_store_deliveries_prune(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud)
{
    TIMED("deliveries_prune", tr_count);
    s->vt->deliveries_prune(s, before_ms, cb, ud);
}
