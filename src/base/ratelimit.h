/*
 * ratelimit.h - a sliding-window limiter: no more than `capacity` units (requests, or
 * tokens) taken within ANY window of `per_ms` milliseconds. Pure: no clock, no loop;
 * the caller passes the time and decides what to do with a wait.
 *
 *   bt_ratelimit *rl = bt_ratelimit_new(10, 60000);       // 10 per minute
 *   int64_t w = bt_ratelimit_wait(rl, now, 1);            // 0: may take now
 *   if (w == 0) h = bt_ratelimit_take(rl, now, 1); else try again in w ms
 *   bt_ratelimit_adjust(rl, h, actual);                   // estimate -> actual (tokens)
 *   bt_ratelimit_block_until(rl, now + retry_after_ms);   // a provider's Retry-After
 *
 * Why a log of takes and not a refill bucket: a classic token bucket of size N refilled
 * at N per window starts full, so a burst drains it at once and the refill lets another
 * N through before the first window has passed - up to 2N in one window. Providers
 * count "requests per minute" over a sliding minute, so the limiter keeps every take of
 * the last window (time, amount) and admits a new one only when the takes still inside
 * the window plus the new amount fit the capacity. That holds for every window, not
 * just aligned ones: a take at t counts for every window containing t, i.e. until
 * t + per_ms.
 *
 * Weights: a take has an amount (1 for a request, the estimated tokens of a call). An
 * amount larger than the whole capacity is admitted when the window is empty (else it
 * could never run); it then holds the window alone. bt_ratelimit_adjust replaces a
 * take's amount afterwards (an estimate corrected with the reported usage); an increase
 * can push the window over capacity for takes already made, which only delays later
 * ones.
 *
 * Time must not go backwards between calls (a take earlier than the last one is
 * recorded at the last one's time). Not thread-safe; one owner.
 */
#ifndef BT_RATELIMIT_H
#define BT_RATELIMIT_H

#include <stdint.h>

typedef struct bt_ratelimit bt_ratelimit;

/* capacity <= 0: unlimited (only bt_ratelimit_block_until applies). per_ms < 1 counts
 * as 1. Never NULL (aborts on out of memory like every bt_x* allocation). */
bt_ratelimit *bt_ratelimit_new(int64_t capacity, int64_t per_ms);
void bt_ratelimit_free(bt_ratelimit *rl); /* NULL is a no-op */

int64_t bt_ratelimit_capacity(const bt_ratelimit *rl); /* 0 = unlimited */
int64_t bt_ratelimit_per_ms(const bt_ratelimit *rl);

/* Milliseconds to wait from now before `amount` may be taken: 0 when it fits now. The
 * capacity and a block both count. */
int64_t bt_ratelimit_wait(bt_ratelimit *rl, int64_t now, int64_t amount);

/* Record a take of amount at now (whether or not it fits: call _wait first). Returns a
 * handle for bt_ratelimit_adjust (never 0). */
uint64_t bt_ratelimit_take(bt_ratelimit *rl, int64_t now, int64_t amount);

/* Replace the amount of an earlier take; a take that has left the window (or handle 0)
 * is ignored. */
void bt_ratelimit_adjust(bt_ratelimit *rl, uint64_t handle, int64_t amount);

/* Admit nothing before `until` (a Retry-After). A later block extends it, an earlier
 * one is ignored. */
void bt_ratelimit_block_until(bt_ratelimit *rl, int64_t until);
/* The block's end; 0 when never blocked (compare with now). */
int64_t bt_ratelimit_blocked_until(const bt_ratelimit *rl);

/* Units taken within the window ending at now. */
int64_t bt_ratelimit_used(bt_ratelimit *rl, int64_t now);

#endif
