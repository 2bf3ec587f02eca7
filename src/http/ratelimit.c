/*
 * ratelimit.c - per-key token buckets for the API (see ratelimit.h).
 *
 * A bucket's level is kept in units: one request costs per_ms units, the bucket holds
 * burst * per_ms, and every millisecond adds `requests` units. Integer arithmetic, so
 * the refill is exact. Buckets live in a map by key and on a list in order of last use
 * (head = most recent): on every take the least recently used buckets that have
 * refilled completely are forgotten (a full bucket is the same as none), and the list is
 * cut to max_keys.
 */
#include "http/ratelimit.h"

#include "base/map.h"
#include "base/mem.h"

#include <stdlib.h>

#define DEFAULT_MAX_KEYS 100000

typedef struct bucket {
    char *key;
    int64_t units; /* level at `last` */
    int64_t last;  /* ms of the last take */
    struct bucket *prev, *next;
} bucket;

struct bt_http_ratelimit {
    int64_t requests, per_ms, burst;
    int64_t cap; /* burst * per_ms */
    size_t max_keys;
    bt_map *map; /* key -> bucket* (not owned: the list owns them) */
    bucket *head, *tail;
};

bt_http_ratelimit *bt_http_ratelimit_new(int64_t requests, int64_t per_ms, int64_t burst,
                                         size_t max_keys)
{
    if (requests <= 0 || per_ms <= 0)
        return NULL;
    bt_http_ratelimit *rl = bt_xcalloc(1, sizeof *rl);
    rl->requests = requests;
    rl->per_ms = per_ms;
    rl->burst = burst > 0 ? burst : requests;
    if (rl->burst > INT64_MAX / 4 / per_ms) /* absurd settings: keep the arithmetic exact */
        rl->burst = INT64_MAX / 4 / per_ms;
    rl->cap = rl->burst * per_ms;
    rl->max_keys = max_keys ? max_keys : DEFAULT_MAX_KEYS;
    rl->map = bt_map_new(NULL);
    return rl;
}

static void unlink_bucket(bt_http_ratelimit *rl, bucket *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        rl->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        rl->tail = b->prev;
    b->prev = b->next = NULL;
}

static void push_head(bt_http_ratelimit *rl, bucket *b)
{
    b->prev = NULL;
    b->next = rl->head;
    if (rl->head)
        rl->head->prev = b;
    rl->head = b;
    if (!rl->tail)
        rl->tail = b;
}

static void drop(bt_http_ratelimit *rl, bucket *b)
{
    unlink_bucket(rl, b);
    bt_map_del(rl->map, b->key);
    free(b->key);
    free(b);
}

void bt_http_ratelimit_free(bt_http_ratelimit *rl)
{
    if (!rl)
        return;
    while (rl->head)
        drop(rl, rl->head);
    bt_map_free(rl->map);
    free(rl);
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

/* Milliseconds after its last take until b is full again. */
static int64_t full_after(const bt_http_ratelimit *rl, const bucket *b)
{
    return ceil_div(rl->cap - b->units, rl->requests);
}

/* b's level at now. */
static int64_t level(const bt_http_ratelimit *rl, const bucket *b, int64_t now)
{
    int64_t elapsed = now > b->last ? now - b->last : 0;
    if (elapsed >= full_after(rl, b))
        return rl->cap;
    return b->units + elapsed * rl->requests; /* < cap + requests: no overflow */
}

int bt_http_ratelimit_take(bt_http_ratelimit *rl, const char *key, int64_t now_ms,
                           bt_http_ratelimit_result *out)
{
    bucket *b = bt_map_get(rl->map, key);
    if (!b) {
        b = bt_xcalloc(1, sizeof *b);
        b->key = bt_xstrdup(key);
        b->units = rl->cap;
        b->last = now_ms;
        bt_map_set(rl->map, key, b);
    } else {
        unlink_bucket(rl, b);
    }
    int64_t units = level(rl, b, now_ms);
    int allowed = units >= rl->per_ms;
    if (allowed)
        units -= rl->per_ms;
    b->units = units;
    if (now_ms > b->last) /* a clock going backwards must not refill it later */
        b->last = now_ms;
    push_head(rl, b);
    if (out) {
        out->allowed = allowed;
        out->limit = rl->burst;
        out->remaining = units / rl->per_ms;
        out->reset_ms = ceil_div(rl->cap - units, rl->requests);
        out->retry_after_ms = allowed ? 0 : ceil_div(rl->per_ms - units, rl->requests);
    }
    /* Forget what has refilled (from the least recently used end), then enforce the cap.
     * b is at the head and not full (it just took one, or is empty), so it stays. */
    while (rl->tail && rl->tail != b && now_ms - rl->tail->last >= full_after(rl, rl->tail))
        drop(rl, rl->tail);
    while (bt_map_len(rl->map) > rl->max_keys && rl->tail != b)
        drop(rl, rl->tail);
    return allowed;
}

size_t bt_http_ratelimit_keys(const bt_http_ratelimit *rl)
{
    return bt_map_len(rl->map);
}
