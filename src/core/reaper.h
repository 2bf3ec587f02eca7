/*
 * reaper.h - the periodic lease reaper (DESIGN.md §2: "expired leases are re-queued").
 *
 * Every interval the reaper asks the store to move every in_progress task whose lease
 * expired back to pending (or to failed when its attempts are used up:
 * bt_store_requeue_expired), so work held by a crashed or partitioned worker, or by a
 * previous incarnation of this process, is handed out again. It also watches the
 * seed 002 worker fleet: a worker not seen for offline_after is unhealthy (GET /workers
 * derives the same verdict from last_seen at read time); the reaper logs each worker's
 * transition between healthy and unhealthy once, so operators see it in the log.
 *
 * Everything runs on the loop. A tick is skipped while the previous one is still
 * waiting for the store, so a slow database never piles up reaper operations.
 *
 * Ownership: loop, store and log are borrowed and must outlive the reaper until its
 * stop has completed (the store may be closed after bt_reaper_stop: a pending
 * operation's callback, which bt_store_close runs, finishes the teardown).
 */
#ifndef BT_REAPER_H
#define BT_REAPER_H

#include "base/error.h"

#include <stdint.h>
#include <uv.h>

typedef struct bt_reaper bt_reaper;
typedef struct bt_store bt_store;
typedef struct bt_log bt_log;

/* The default tick for a lease: 5 s, or lease/4 when that is shorter (so an expired
 * lease is noticed within a quarter of its length), never below 50 ms. */
int64_t bt_reaper_default_interval(int64_t lease_ms);

/* Start ticking every interval_ms (> 0); the first tick runs at once, so leases that
 * expired while the daemon was down are re-queued at start-up. offline_after_ms is the
 * worker health threshold (<= 0: 2 minutes). log may be NULL. On success *out is the
 * new reaper (released by bt_reaper_stop). */
int bt_reaper_start(uv_loop_t *loop, bt_store *store, bt_log *log, int64_t interval_ms,
                    int64_t offline_after_ms, bt_reaper **out, bt_error *err);

/* Stop ticking and release the reaper once its timer has closed and any store
 * operation in flight has called back. NULL is a no-op. The pointer is invalid after. */
void bt_reaper_stop(bt_reaper *r);

#endif
