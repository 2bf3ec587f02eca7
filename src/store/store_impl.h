/*
 * store_impl.h - what a store backend implements (internal to src/store/).
 *
 * A backend allocates a struct whose first member is `bt_store base`, fills it with
 * bt_store__init, and implements every operation of store.h through the vtable with
 * the contract documented there: callbacks run later on the loop (never before the
 * operation returns), writes acknowledge only once durable, events are appended in
 * the same transaction as the change they describe and published to subscribers
 * (bt_store__publish) after commit, in seq order.
 */
#ifndef BT_STORE_IMPL_H
#define BT_STORE_IMPL_H

#include "store/store.h"

typedef struct bt_store_vtable {
    const char *name; /* "sqlite" | "postgres" */
    void (*close)(bt_store *s);
    int (*connections)(const bt_store *s);
    void (*flush)(bt_store *s, bt_store_done_cb cb, void *ud);
    void (*task_create)(bt_store *s, const bt_task_input *in, bt_store_create_cb cb, void *ud);
    void (*task_get)(bt_store *s, const char *id, bt_store_task_cb cb, void *ud);
    void (*task_get_by_key)(bt_store *s, const char *dedupe_key, bt_store_task_cb cb, void *ud);
    void (*task_list)(bt_store *s, const bt_task_filter *f, bt_store_tasks_cb cb, void *ud);
    void (*task_update)(bt_store *s, const char *id, const bt_task_patch *p, bt_store_task_cb cb,
                        void *ud);
    void (*task_transition)(bt_store *s, const char *id, bt_task_status to, const char *reason,
                            bt_store_task_cb cb, void *ud);
    void (*claim)(bt_store *s, const bt_claim_opts *opts, bt_store_tasks_cb cb, void *ud);
    void (*heartbeat)(bt_store *s, const char *id, const char *owner, int64_t fencing,
                      int64_t lease_ms, bt_store_task_cb cb, void *ud);
    void (*complete)(bt_store *s, const char *id, const char *owner, int64_t fencing,
                     const json_t *result, bt_store_task_cb cb, void *ud);
    void (*fail)(bt_store *s, const char *id, const char *owner, int64_t fencing, const char *error,
                 bool retryable, bt_store_fail_cb cb, void *ud);
    void (*release)(bt_store *s, const char *id, const char *owner, int64_t fencing,
                    const char *reason, bt_store_task_cb cb, void *ud);
    void (*requeue_expired)(bt_store *s, bt_store_count_cb cb, void *ud);
    void (*task_stats)(bt_store *s, bt_store_stats_cb cb, void *ud);
    void (*cleanup_stale)(bt_store *s, int64_t max_age_ms, bt_store_count_cb cb, void *ud);
    void (*clear_completed)(bt_store *s, bt_store_count_cb cb, void *ud);
    void (*run_create)(bt_store *s, const char *task_id, const char *workflow,
                       const char *workflow_version, const json_t *state, bt_store_run_cb cb,
                       void *ud);
    void (*run_get)(bt_store *s, const char *run_id, bt_store_run_cb cb, void *ud);
    void (*run_list)(bt_store *s, const char *task_id, const bt_run_status *status, int limit,
                     bt_store_runs_cb cb, void *ud);
    void (*run_update)(bt_store *s, const char *run_id, const bt_run_patch *p, bt_store_run_cb cb,
                       void *ud);
    void (*step_start)(bt_store *s, const char *run_id, const char *step_key, int32_t iteration,
                       int32_t attempt, int32_t seq, const char *agent, const char *role,
                       bt_store_step_cb cb, void *ud);
    void (*step_finish)(bt_store *s, const char *step_id, const bt_step_result *r,
                        bt_store_step_cb cb, void *ud);
    void (*step_list)(bt_store *s, const char *run_id, bt_store_steps_cb cb, void *ud);
    void (*spend)(bt_store *s, const bt_spend_query *q, bt_store_spend_cb cb, void *ud);
    void (*usage)(bt_store *s, const bt_usage_query *q, bt_store_usage_cb cb, void *ud);
    void (*event_append)(bt_store *s, const char *type, const char *task_id, const char *run_id,
                         const json_t *data, bt_store_event_cb cb, void *ud);
    void (*event_read)(bt_store *s, const bt_event_filter *f, bt_store_events_cb cb, void *ud);
    void (*event_last_seq)(bt_store *s, bt_store_count_cb cb, void *ud);
    void (*worker_upsert)(bt_store *s, const bt_worker_input *in, bt_store_worker_cb cb, void *ud);
    void (*worker_get)(bt_store *s, const char *id, bt_store_worker_cb cb, void *ud);
    void (*worker_list)(bt_store *s, bt_store_workers_cb cb, void *ud);
    void (*approval_create)(bt_store *s, const bt_approval_input *in, bt_store_approval_cb cb,
                            void *ud);
    void (*approval_get)(bt_store *s, const char *id, bt_store_approval_cb cb, void *ud);
    void (*approval_list)(bt_store *s, const bt_approval_status *status, const char *run_id,
                          bt_store_approvals_cb cb, void *ud);
    void (*approval_decide)(bt_store *s, const char *id, bool approve, const char *by,
                            const char *comment, bt_store_approval_cb cb, void *ud);
    void (*lock_acquire)(bt_store *s, const char *repo, const char *const *paths, size_t n,
                         const char *owner, int64_t ttl_ms, bt_store_lock_cb cb, void *ud);
    void (*lock_release)(bt_store *s, const char *repo, const char *owner, bt_store_count_cb cb,
                         void *ud);
    void (*agent_call_add)(bt_store *s, const bt_agent_call *c, bt_store_done_cb cb, void *ud);
    void (*agent_calls)(bt_store *s, int64_t since_ms, int per_agent, bt_store_agent_calls_cb cb,
                        void *ud);
    void (*agent_calls_prune)(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud);
    void (*delivery_record)(bt_store *s, const char *source, const char *delivery_id,
                            bt_store_count_cb cb, void *ud);
    void (*delivery_forget)(bt_store *s, const char *source, const char *delivery_id,
                            bt_store_count_cb cb, void *ud);
    void (*deliveries_prune)(bt_store *s, int64_t before_ms, bt_store_count_cb cb, void *ud);
} bt_store_vtable;

#define BT_STORE_MAX_SUBSCRIBERS 64

struct bt_store {
    const bt_store_vtable *vt;
    uv_loop_t *loop;
    bt_store_options opts; /* defaults filled in */
    bt_idgen idgen;        /* ids strictly increasing within this process */
    struct {
        bt_store_listener_fn fn;
        void *ud;
        int id;
    } subs[BT_STORE_MAX_SUBSCRIBERS];
    int nsubs;
    int next_sub_id;
    bt_store_op_fn op_hook; /* bt_store_set_op_hook; NULL = no timing */
    void *op_ud;
};

/* Fill the common part (opts may be NULL: defaults). */
void bt_store__init(bt_store *s, const bt_store_vtable *vt, uv_loop_t *loop,
                    const bt_store_options *opts);
/* Current time through the configured clock. */
int64_t bt_store__now(const bt_store *s);
/* Deliver a committed event to every subscriber. */
void bt_store__publish(bt_store *s, const bt_event *ev);
/* A new id from the store's generator. */
char *bt_store__new_id(bt_store *s, char out[BT_ID_LEN + 1]);

/* Input checks shared by the backends; 0 or BT_EINVAL with a message. */
int bt_store__check_task_input(const bt_task_input *in, bt_error *err);
int bt_store__check_claim(const bt_claim_opts *o, bt_error *err);
int bt_store__check_agent_call(const bt_agent_call *c, bt_error *err);
int bt_store__check_usage(const bt_usage_query *q, bt_error *err);
/* Frees the rows and strings of a usage result and zeroes it (the struct itself is the
 * caller's). */
void bt_store__usage_clear(bt_usage *u);
/* A webhook delivery's source and id: both non-empty, each at most
 * BT_STORE_DELIVERY_ID_MAX bytes. */
#define BT_STORE_DELIVERY_ID_MAX 200
int bt_store__check_delivery(const char *source, const char *delivery_id, bt_error *err);

/* Backends. */
int bt_store_sqlite_open(uv_loop_t *loop, const char *path, const bt_store_options *opts,
                         bt_store **out, bt_error *err);
int bt_store_postgres_open(uv_loop_t *loop, const char *url, const bt_store_options *opts,
                           bt_store **out, bt_error *err);

#endif
