/*
 * breaker.c - the circuit breaker state machine (breaker.h). No clock and no I/O: the
 * caller passes the time, and reports the transitions this returns.
 */
#include "core/breaker.h"

#include <stdio.h>
#include <string.h>

const char *bt_breaker_state_name(bt_breaker_state s)
{
    switch (s) {
    case BT_BREAKER_OPEN:
        return "open";
    case BT_BREAKER_HALF_OPEN:
        return "half_open";
    default:
        return "closed";
    }
}

void bt_breaker_init(bt_breaker *b, int64_t threshold, int64_t recovery_ms)
{
    memset(b, 0, sizeof *b);
    b->threshold = threshold >= 1 ? threshold : 1;
    b->recovery_ms = recovery_ms >= 0 ? recovery_ms : 0;
}

static void move(bt_breaker *b, bt_breaker_state to, bt_breaker_change *ch, const char *reason)
{
    if (ch) {
        ch->changed = 1;
        ch->from = b->state;
        ch->to = to;
        snprintf(ch->reason, sizeof ch->reason, "%s", reason);
    }
    b->state = to;
}

static void no_change(bt_breaker_change *ch)
{
    if (ch)
        memset(ch, 0, sizeof *ch);
}

bt_breaker_state bt_breaker_state_at(const bt_breaker *b, int64_t now)
{
    if (b->state == BT_BREAKER_OPEN && now - b->opened_at >= b->recovery_ms)
        return BT_BREAKER_HALF_OPEN;
    return b->state;
}

int64_t bt_breaker_retry_at(const bt_breaker *b)
{
    return b->state == BT_BREAKER_CLOSED ? 0 : b->opened_at + b->recovery_ms;
}

bt_breaker_verdict bt_breaker_allow(bt_breaker *b, int64_t now, bt_breaker_change *ch)
{
    no_change(ch);
    switch (b->state) {
    case BT_BREAKER_CLOSED:
        return BT_BREAKER_ALLOW;
    case BT_BREAKER_OPEN:
        if (now - b->opened_at < b->recovery_ms)
            return BT_BREAKER_REJECT;
        move(b, BT_BREAKER_HALF_OPEN, ch, "recovery timeout elapsed");
        b->probe_out = 1;
        return BT_BREAKER_PROBE;
    case BT_BREAKER_HALF_OPEN:
    default:
        if (b->probe_out)
            return BT_BREAKER_REJECT;
        b->probe_out = 1;
        return BT_BREAKER_PROBE;
    }
}

static void open_now(bt_breaker *b, int64_t now, bt_breaker_change *ch, const char *reason)
{
    b->opened_at = now;
    b->probe_out = 0;
    move(b, BT_BREAKER_OPEN, ch, reason);
}

void bt_breaker_record(bt_breaker *b, int64_t now, int ok, int probe, bt_breaker_change *ch)
{
    no_change(ch);
    if (probe && b->state == BT_BREAKER_HALF_OPEN) {
        b->probe_out = 0;
        if (ok) {
            b->consecutive = 0;
            move(b, BT_BREAKER_CLOSED, ch, "probe succeeded");
        } else {
            b->consecutive++;
            open_now(b, now, ch, "probe failed");
        }
        return;
    }
    if (b->state != BT_BREAKER_CLOSED)
        return; /* a late call from before it opened: only the probe decides */
    if (ok) {
        b->consecutive = 0;
        return;
    }
    b->consecutive++;
    if (b->consecutive >= b->threshold) {
        char why[96];
        snprintf(why, sizeof why, "%lld consecutive failures", (long long)b->consecutive);
        open_now(b, now, ch, why);
    }
}

void bt_breaker_release(bt_breaker *b, int probe)
{
    if (probe && b->state == BT_BREAKER_HALF_OPEN)
        b->probe_out = 0;
}

void bt_breaker_restore(bt_breaker *b, int64_t consecutive, int64_t last_failure_at)
{
    b->consecutive = consecutive > 0 ? consecutive : 0;
    b->probe_out = 0;
    if (b->consecutive >= b->threshold) {
        b->state = BT_BREAKER_OPEN;
        b->opened_at = last_failure_at;
    } else {
        b->state = BT_BREAKER_CLOSED;
        b->opened_at = 0;
    }
}
