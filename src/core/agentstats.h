/*
 * agentstats.h - one agent's recent calls and what they add up to: success rate,
 * latency percentiles and error classes over a sliding window (the last `window` calls,
 * and only those that ended within `max_age_ms`). The resilience wrapper keeps one per
 * agent, feeds it every finished call and reloads it from the store at start-up; the
 * planner reads the success rate, listings read everything.
 *
 *   bt_agentstats *st = bt_agentstats_new(100, 24 * 3600 * 1000LL);
 *   bt_agentstats_add(st, &(bt_agentstats_call){.at = now, .duration_ms = 1200,
 *                                               .outcome = BT_AGENTSTATS_SUCCESS});
 *   bt_agentstats_summary s;
 *   bt_agentstats_get(st, now, &s);
 *
 * Pure (the time is passed in); not thread-safe.
 */
#ifndef BT_AGENTSTATS_H
#define BT_AGENTSTATS_H

#include <stddef.h>
#include <stdint.h>

typedef enum bt_agentstats_outcome {
    BT_AGENTSTATS_SUCCESS = 0,
    BT_AGENTSTATS_FAILURE,
    BT_AGENTSTATS_CANCELLED,
} bt_agentstats_outcome;

typedef enum bt_agentstats_class {
    BT_AGENTSTATS_NONE = 0, /* success or cancelled */
    BT_AGENTSTATS_TRANSIENT,
    BT_AGENTSTATS_PERMANENT,
    BT_AGENTSTATS_TIMEOUT,
    BT_AGENTSTATS_TASK, /* the agent ran and reported that the task failed (a CLI's non-zero
                         * exit): a failed call, but not ill health - for the circuit
                         * breaker it is an answer, like a success */
    BT_AGENTSTATS__CLASSES
} bt_agentstats_class;

/* "transient", "permanent", "timeout", "task"; NULL for NONE. */
const char *bt_agentstats_class_name(bt_agentstats_class c);
/* From those names; NULL or unknown -> NONE. */
bt_agentstats_class bt_agentstats_class_parse(const char *name);

typedef struct bt_agentstats_call {
    int64_t at;          /* when it ended (ms, any clock the caller uses consistently) */
    int64_t duration_ms; /* the agent's own time */
    bt_agentstats_outcome outcome;
    bt_agentstats_class error_class; /* failures only */
} bt_agentstats_call;

typedef struct bt_agentstats_summary {
    int64_t calls; /* successes + failures in the window (cancellations excluded) */
    int64_t successes, failures, cancelled;
    double success_rate; /* successes / calls; 1 when calls == 0 */
    /* latency of the calls counted in `calls` (nearest-rank percentiles); 0 when none */
    int64_t p50_ms, p90_ms, p99_ms, max_ms;
    int64_t errors[BT_AGENTSTATS__CLASSES]; /* failures by class (index NONE unused) */
    int64_t last_call_at;                   /* newest call in the window (any outcome); 0 = none */
    int64_t window;                         /* the configured window (calls) */
    int64_t max_age_ms;                     /* the configured age limit; 0 = none */
    /* breaker failures in a row at the end of the window (cancellations skipped; a
     * "task" failure ends the row like a success), and when the last of them ended: what
     * a circuit breaker restores from */
    int64_t trailing_failures;
    int64_t last_failure_at;
} bt_agentstats_summary;

typedef struct bt_agentstats bt_agentstats;

/* window < 1 counts as 1; max_age_ms <= 0 = no age limit. */
bt_agentstats *bt_agentstats_new(int64_t window, int64_t max_age_ms);
void bt_agentstats_free(bt_agentstats *st); /* NULL is a no-op */

/* Append a call; beyond the window the oldest is forgotten. Calls are expected in end
 * order (a call that ended earlier than the newest is still appended as the newest). */
void bt_agentstats_add(bt_agentstats *st, const bt_agentstats_call *c);
/* Forget everything. */
void bt_agentstats_clear(bt_agentstats *st);

/* The window as seen at now (older calls than now - max_age_ms are left out). */
void bt_agentstats_get(const bt_agentstats *st, int64_t now, bt_agentstats_summary *out);

#endif
