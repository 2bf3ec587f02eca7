/*
 * breaker.h - one agent's circuit breaker (seed 004 "Circuit Breaker", DESIGN.md §2a):
 * a pure state machine with the time passed in, so the resilience wrapper
 * (resilience.c) drives it and tests step it through every transition.
 *
 *   CLOSED ──failure_threshold consecutive failures──> OPEN
 *   OPEN ──recovery_timeout elapsed, the next call arrives──> HALF_OPEN (that call is
 *         the one probe; every other call is rejected while it is out)
 *   HALF_OPEN ──probe succeeds──> CLOSED      HALF_OPEN ──probe fails──> OPEN (again)
 *
 *   bt_breaker b;
 *   bt_breaker_init(&b, 5, 60000);
 *   bt_breaker_change ch;
 *   bt_breaker_verdict v = bt_breaker_allow(&b, now, &ch);   // REJECT: do not call
 *   ... the call ends: bt_breaker_record(&b, now, ok, v == BT_BREAKER_PROBE, &ch)
 *   ... or was cancelled: bt_breaker_release(&b, v == BT_BREAKER_PROBE)
 *
 * Which outcomes are failures is the caller's decision (resilience.h: transient,
 * timeout and provider-side permanent errors; not a CLI that reported the task failed,
 * not a cancellation). A call let through while CLOSED that ends after the breaker
 * opened changes nothing: only the probe decides a half-open breaker.
 *
 * Every function that can change the state fills a bt_breaker_change (may be NULL):
 * changed = 1 with from, to and a reason for a person ("5 consecutive failures",
 * "recovery timeout elapsed", "probe succeeded", "probe failed").
 */
#ifndef BT_BREAKER_H
#define BT_BREAKER_H

#include <stdint.h>

typedef enum bt_breaker_state {
    BT_BREAKER_CLOSED = 0,
    BT_BREAKER_OPEN,
    BT_BREAKER_HALF_OPEN,
} bt_breaker_state;

/* "closed", "open", "half_open". Never NULL. */
const char *bt_breaker_state_name(bt_breaker_state s);

typedef enum bt_breaker_verdict {
    BT_BREAKER_ALLOW = 0, /* closed: go ahead */
    BT_BREAKER_PROBE,     /* half-open: go ahead, you are the one probe */
    BT_BREAKER_REJECT,    /* open, or half-open with the probe out: do not call */
} bt_breaker_verdict;

typedef struct bt_breaker_change {
    int changed;
    bt_breaker_state from, to;
    char reason[96];
} bt_breaker_change;

/* Plain value; fields are read-only for callers. */
typedef struct bt_breaker {
    bt_breaker_state state;
    int64_t threshold;   /* consecutive failures that open it (>= 1) */
    int64_t recovery_ms; /* open this long before a probe (>= 0) */
    int64_t consecutive; /* failures in a row so far */
    int64_t opened_at;   /* when it last opened (valid when not closed) */
    int probe_out;       /* half-open: the probe is running */
} bt_breaker;

/* threshold < 1 counts as 1, recovery_ms < 0 as 0. */
void bt_breaker_init(bt_breaker *b, int64_t threshold, int64_t recovery_ms);

/* The state a call arriving at now would find: OPEN reads HALF_OPEN once the recovery
 * timeout has passed (the transition itself happens in bt_breaker_allow). */
bt_breaker_state bt_breaker_state_at(const bt_breaker *b, int64_t now);
/* When an open breaker lets a probe through (opened_at + recovery); 0 when closed. */
int64_t bt_breaker_retry_at(const bt_breaker *b);

/* May a call go now? OPEN past its timeout becomes HALF_OPEN here and the caller gets
 * the probe. */
bt_breaker_verdict bt_breaker_allow(bt_breaker *b, int64_t now, bt_breaker_change *ch);

/* A call that was allowed has ended. ok: it succeeded (or failed in a way that does
 * not count). probe: it was allowed as BT_BREAKER_PROBE. */
void bt_breaker_record(bt_breaker *b, int64_t now, int ok, int probe, bt_breaker_change *ch);

/* A call that was allowed ended without an outcome (cancelled, never started): when
 * it was the probe, the next call becomes the probe; nothing else changes. */
void bt_breaker_release(bt_breaker *b, int probe);

/* Restore from history: `consecutive` failures in a row ended the recorded calls, the
 * last of them at last_failure_at. At or over the threshold the breaker is OPEN since
 * that failure (so a probe may already be due); otherwise CLOSED with that count. */
void bt_breaker_restore(bt_breaker *b, int64_t consecutive, int64_t last_failure_at);

#endif
