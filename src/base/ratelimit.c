/*
 * ratelimit.c - the sliding-window limiter (ratelimit.h): a queue of the takes still
 * inside the window, oldest first, and their running sum. A wait walks the queue from
 * the oldest take until enough would have expired; the queue never holds more than the
 * takes of one window, so that walk is short.
 */
#include "base/ratelimit.h"

#include "base/mem.h"

#include <stdlib.h>
#include <string.h>

typedef struct take {
    int64_t at;
    int64_t amount;
    uint64_t id;
} take;

struct bt_ratelimit {
    int64_t capacity; /* <= 0: unlimited */
    int64_t per_ms;
    int64_t blocked_until;
    take *q; /* q[head .. len) live, oldest first */
    size_t head, len, cap;
    int64_t sum; /* of live amounts */
    uint64_t next_id;
};

bt_ratelimit *bt_ratelimit_new(int64_t capacity, int64_t per_ms)
{
    bt_ratelimit *rl = bt_xcalloc(1, sizeof *rl);
    rl->capacity = capacity > 0 ? capacity : 0;
    rl->per_ms = per_ms >= 1 ? per_ms : 1;
    rl->next_id = 1;
    return rl;
}

void bt_ratelimit_free(bt_ratelimit *rl)
{
    if (!rl)
        return;
    free(rl->q);
    free(rl);
}

int64_t bt_ratelimit_capacity(const bt_ratelimit *rl)
{
    return rl->capacity;
}

int64_t bt_ratelimit_per_ms(const bt_ratelimit *rl)
{
    return rl->per_ms;
}

/* Drop the takes whose window has passed: a take at t counts until t + per_ms. */
static void expire(bt_ratelimit *rl, int64_t now)
{
    while (rl->head < rl->len && rl->q[rl->head].at + rl->per_ms <= now) {
        rl->sum -= rl->q[rl->head].amount;
        rl->head++;
    }
    if (rl->head == rl->len) {
        rl->head = rl->len = 0;
        rl->sum = 0; /* exact again even after adjustments */
    } else if (rl->head > 64 && rl->head * 2 > rl->len) {
        memmove(rl->q, rl->q + rl->head, (rl->len - rl->head) * sizeof *rl->q);
        rl->len -= rl->head;
        rl->head = 0;
    }
}

int64_t bt_ratelimit_wait(bt_ratelimit *rl, int64_t now, int64_t amount)
{
    if (amount < 0)
        amount = 0;
    expire(rl, now);
    int64_t w = 0;
    if (rl->capacity > 0 && rl->head < rl->len && rl->sum + amount > rl->capacity) {
        if (amount > rl->capacity) {
            /* oversized: alone in an empty window */
            w = rl->q[rl->len - 1].at + rl->per_ms - now;
        } else {
            int64_t left = rl->sum;
            for (size_t i = rl->head; i < rl->len; i++) {
                left -= rl->q[i].amount;
                if (left + amount <= rl->capacity) {
                    w = rl->q[i].at + rl->per_ms - now;
                    break;
                }
            }
        }
    }
    if (rl->blocked_until > now && rl->blocked_until - now > w)
        w = rl->blocked_until - now;
    return w > 0 ? w : 0;
}

uint64_t bt_ratelimit_take(bt_ratelimit *rl, int64_t now, int64_t amount)
{
    if (amount < 0)
        amount = 0;
    expire(rl, now);
    if (rl->head < rl->len && now < rl->q[rl->len - 1].at)
        now = rl->q[rl->len - 1].at; /* keep the queue in time order */
    if (rl->len == rl->cap) {
        rl->cap = rl->cap ? rl->cap * 2 : 16;
        rl->q = bt_xrealloc(rl->q, rl->cap * sizeof *rl->q);
    }
    uint64_t id = rl->next_id++;
    rl->q[rl->len++] = (take){.at = now, .amount = amount, .id = id};
    rl->sum += amount;
    return id;
}

void bt_ratelimit_adjust(bt_ratelimit *rl, uint64_t handle, int64_t amount)
{
    if (!handle)
        return;
    if (amount < 0)
        amount = 0;
    /* ids increase along the queue: binary search */
    size_t lo = rl->head, hi = rl->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rl->q[mid].id < handle)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < rl->len && rl->q[lo].id == handle) {
        rl->sum += amount - rl->q[lo].amount;
        rl->q[lo].amount = amount;
    }
}

void bt_ratelimit_block_until(bt_ratelimit *rl, int64_t until)
{
    if (until > rl->blocked_until)
        rl->blocked_until = until;
}

int64_t bt_ratelimit_blocked_until(const bt_ratelimit *rl)
{
    return rl->blocked_until;
}

int64_t bt_ratelimit_used(bt_ratelimit *rl, int64_t now)
{
    expire(rl, now);
    return rl->sum;
}
