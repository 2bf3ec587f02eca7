/*
 * time.h - clocks, timestamps and human durations.
 *
 * Monotonic time measures intervals; wall time (milliseconds since the Unix epoch,
 * UTC) is what gets stored and shown. Durations are written like Go's: "500ms",
 * "30s", "5m", "1h30m", "2d"; a bare number means seconds (the seeds' environment
 * variables such as GITHUB_POLL_INTERVAL=60 are plain seconds).
 */
#ifndef BT_TIME_H
#define BT_TIME_H

#include "base/error.h"

#include <stdint.h>

int64_t bt_time_mono_ns(void);
int64_t bt_time_mono_ms(void);
/* Milliseconds since the epoch, UTC. */
int64_t bt_time_wall_ms(void);

#define BT_TIME_ISO_LEN 32
/* "2025-11-13T12:00:00.123Z" into buf (at least BT_TIME_ISO_LEN bytes). Returns buf. */
char *bt_time_format_iso(int64_t wall_ms, char *buf);
/* "2025-11-13T12:00:00" (seconds, no zone), the seed 002 last_seen shape. */
char *bt_time_format_iso_seconds(int64_t wall_ms, char *buf);
/* Parses RFC 3339 (Z or +hh:mm, optional fraction) and the seconds form above (as UTC). */
int bt_time_parse_iso(const char *s, int64_t *wall_ms, bt_error *err);

/* Parse a duration into milliseconds. Refuses negatives, unknown units and overflow. */
int bt_duration_parse(const char *s, int64_t *ms, bt_error *err);
/* Shortest exact rendering: 90000 -> "1m30s", 1500 -> "1500ms". buf >= 32 bytes. */
char *bt_duration_format(int64_t ms, char *buf);

#endif
