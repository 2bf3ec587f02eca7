/*
 * reaper.c - the periodic lease reaper (see reaper.h): a uv_timer that re-queues
 * expired leases through bt_store_requeue_expired and logs worker health changes.
 *
 * Teardown is reference counted: the timer handle holds one reference until its close
 * callback, and each store operation in flight holds one until it calls back; the
 * last release frees the reaper. This lets bt_reaper_stop return at once even while
 * the store is busy.
 */
#include "core/reaper.h"

#include "base/map.h"
#include "base/mem.h"
#include "base/time.h"
#include "obs/log.h"
#include "store/store.h"

#include <stdlib.h>

#define DEFAULT_OFFLINE_AFTER_MS 120000
#define MAX_INTERVAL_MS          5000
#define MIN_INTERVAL_MS          50

struct bt_reaper {
    uv_timer_t timer;
    bt_store *store;
    bt_log *log;
    int64_t offline_after_ms;
    int refs;          /* timer + operations in flight */
    int in_flight;     /* store operations of the current tick */
    int stopped;       /* bt_reaper_stop was called */
    bt_map *unhealthy; /* worker id -> (void *)1, as of the last tick */
};

static void reaper_unref(bt_reaper *r)
{
    if (--r->refs > 0)
        return;
    bt_map_free(r->unhealthy);
    free(r);
}

static void op_done(bt_reaper *r)
{
    r->in_flight--;
    reaper_unref(r);
}

static void on_requeued(void *ud, int rc, const bt_error *err, int64_t count)
{
    bt_reaper *r = ud;
    if (rc < 0)
        bt_log_warn(r->log, "re-queueing expired leases failed",
                    BT_LF_STR("error", err ? err->msg : bt_strerror(rc)));
    else if (count > 0)
        bt_log_info(r->log, "re-queued tasks whose lease expired", BT_LF_INT("count", count));
    op_done(r);
}

static void on_workers(void *ud, int rc, const bt_error *err, bt_worker *const *workers, size_t n)
{
    bt_reaper *r = ud;
    if (rc < 0) {
        bt_log_warn(r->log, "listing workers for health failed",
                    BT_LF_STR("error", err ? err->msg : bt_strerror(rc)));
        op_done(r);
        return;
    }
    int64_t now = bt_time_wall_ms();
    bt_map *now_unhealthy = bt_map_new(NULL);
    for (size_t i = 0; i < n; i++) {
        const bt_worker *w = workers[i];
        int unhealthy = now - w->last_seen > r->offline_after_ms;
        int was = bt_map_has(r->unhealthy, w->id);
        if (unhealthy) {
            bt_map_set(now_unhealthy, w->id, (void *)1);
            if (!was) {
                char seen[BT_TIME_ISO_LEN];
                bt_log_warn(r->log, "worker unhealthy: no contact within workers.offline_after",
                            BT_LF_STR("worker", w->id),
                            BT_LF_STR("last_seen", bt_time_format_iso(w->last_seen, seen)),
                            BT_LF_STR("status", w->status ? w->status : ""));
            }
        } else if (was) {
            bt_log_info(r->log, "worker healthy again", BT_LF_STR("worker", w->id));
        }
    }
    bt_map_free(r->unhealthy);
    r->unhealthy = now_unhealthy;
    op_done(r);
}

static void on_tick(uv_timer_t *t)
{
    bt_reaper *r = t->data;
    if (r->stopped || r->in_flight > 0)
        return; /* the previous tick is still waiting for the store */
    r->in_flight = 2;
    r->refs += 2;
    bt_store_requeue_expired(r->store, on_requeued, r);
    bt_store_worker_list(r->store, on_workers, r);
}

static void on_timer_closed(uv_handle_t *h)
{
    reaper_unref(h->data);
}

int64_t bt_reaper_default_interval(int64_t lease_ms)
{
    int64_t iv = lease_ms > 0 ? lease_ms / 4 : MAX_INTERVAL_MS;
    if (iv > MAX_INTERVAL_MS)
        iv = MAX_INTERVAL_MS;
    if (iv < MIN_INTERVAL_MS)
        iv = MIN_INTERVAL_MS;
    return iv;
}

int bt_reaper_start(uv_loop_t *loop, bt_store *store, bt_log *log, int64_t interval_ms,
                    int64_t offline_after_ms, bt_reaper **out, bt_error *err)
{
    *out = NULL;
    if (!loop || !store)
        return bt_errorf(err, BT_EINVAL, "the reaper needs a loop and a store");
    if (interval_ms <= 0)
        return bt_errorf(err, BT_EINVAL, "the reaper interval must be positive (got %lld ms)",
                         (long long)interval_ms);
    bt_reaper *r = bt_xcalloc(1, sizeof *r);
    r->store = store;
    r->log = log;
    r->offline_after_ms = offline_after_ms > 0 ? offline_after_ms : DEFAULT_OFFLINE_AFTER_MS;
    r->unhealthy = bt_map_new(NULL);
    int urc = uv_timer_init(loop, &r->timer);
    if (urc < 0) {
        bt_map_free(r->unhealthy);
        free(r);
        return bt_errorf(err, BT_EIO, "cannot create the reaper timer: %s", uv_strerror(urc));
    }
    r->timer.data = r;
    r->refs = 1;                        /* the timer */
    uv_unref((uv_handle_t *)&r->timer); /* a background tick never keeps the loop alive */
    uv_timer_start(&r->timer, on_tick, 0, (uint64_t)interval_ms);
    *out = r;
    return 0;
}

void bt_reaper_stop(bt_reaper *r)
{
    if (!r || r->stopped)
        return;
    r->stopped = 1;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
