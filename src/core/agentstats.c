/*
 * agentstats.c - per-agent call statistics (agentstats.h): a ring of the last `window`
 * calls; a summary sorts the latencies of the calls still young enough (at most
 * `window` of them, so a copy and a sort are cheap).
 */
#include "core/agentstats.h"

#include "base/mem.h"

#include <stdlib.h>
#include <string.h>

struct bt_agentstats {
    bt_agentstats_call *ring;
    size_t window;
    size_t start, len; /* oldest at ring[start] */
    int64_t max_age_ms;
};

static const char *const class_names[BT_AGENTSTATS__CLASSES] = {NULL, "transient", "permanent",
                                                                "timeout", "task"};

const char *bt_agentstats_class_name(bt_agentstats_class c)
{
    return (unsigned)c < BT_AGENTSTATS__CLASSES ? class_names[c] : NULL;
}

bt_agentstats_class bt_agentstats_class_parse(const char *name)
{
    for (int i = 1; name && i < BT_AGENTSTATS__CLASSES; i++)
        if (strcmp(name, class_names[i]) == 0)
            return (bt_agentstats_class)i;
    return BT_AGENTSTATS_NONE;
}

bt_agentstats *bt_agentstats_new(int64_t window, int64_t max_age_ms)
{
    bt_agentstats *st = bt_xcalloc(1, sizeof *st);
    st->window = window >= 1 ? (size_t)window : 1;
    st->max_age_ms = max_age_ms > 0 ? max_age_ms : 0;
    st->ring = bt_xcalloc(st->window, sizeof *st->ring);
    return st;
}

void bt_agentstats_free(bt_agentstats *st)
{
    if (!st)
        return;
    free(st->ring);
    free(st);
}

void bt_agentstats_add(bt_agentstats *st, const bt_agentstats_call *c)
{
    if (st->len < st->window) {
        st->ring[(st->start + st->len) % st->window] = *c;
        st->len++;
    } else {
        st->ring[st->start] = *c;
        st->start = (st->start + 1) % st->window;
    }
}

void bt_agentstats_clear(bt_agentstats *st)
{
    st->start = st->len = 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p% of the values at or below it. */
static int64_t rank(const int64_t *v, size_t n, int p)
{
    size_t k = ((size_t)p * n + 99) / 100;
    if (k < 1)
        k = 1;
    return v[k - 1];
}

void bt_agentstats_get(const bt_agentstats *st, int64_t now, bt_agentstats_summary *out)
{
    memset(out, 0, sizeof *out);
    out->window = (int64_t)st->window;
    out->max_age_ms = st->max_age_ms;
    int64_t *lat = st->len ? bt_xmalloc(st->len * sizeof *lat) : NULL;
    size_t nlat = 0;
    for (size_t i = 0; i < st->len; i++) {
        const bt_agentstats_call *c = &st->ring[(st->start + i) % st->window];
        if (st->max_age_ms && c->at < now - st->max_age_ms)
            continue;
        if (c->at > out->last_call_at)
            out->last_call_at = c->at;
        switch (c->outcome) {
        case BT_AGENTSTATS_SUCCESS:
            out->successes++;
            out->trailing_failures = 0;
            lat[nlat++] = c->duration_ms;
            break;
        case BT_AGENTSTATS_FAILURE:
            out->failures++;
            if ((unsigned)c->error_class < BT_AGENTSTATS__CLASSES && c->error_class)
                out->errors[c->error_class]++;
            if (c->error_class == BT_AGENTSTATS_TASK) {
                out->trailing_failures = 0; /* the breaker took it as an answer */
            } else {
                out->trailing_failures++;
                out->last_failure_at = c->at;
            }
            lat[nlat++] = c->duration_ms;
            break;
        default:
            out->cancelled++;
            break;
        }
    }
    out->calls = out->successes + out->failures;
    out->success_rate = out->calls ? (double)out->successes / (double)out->calls : 1.0;
    if (nlat) {
        qsort(lat, nlat, sizeof *lat, cmp_i64);
        out->p50_ms = rank(lat, nlat, 50);
        out->p90_ms = rank(lat, nlat, 90);
        out->p99_ms = rank(lat, nlat, 99);
        out->max_ms = lat[nlat - 1];
    }
    free(lat);
}
