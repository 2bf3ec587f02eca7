/*
 * ratelimit.h - the API's per-client request limit (config server.rate_limit; seed 004
 * TokenBucketRateLimiter): a classic token bucket per key. Each key's bucket holds up to
 * `burst` requests and refills at `requests` per `per_ms`; a request takes one, and a
 * request finding the bucket empty is refused with the time until one is back.
 *
 * Unlike the agents' sliding-window limiter (base/ratelimit.h), a bucket lets a client
 * that was quiet spend its whole burst at once: that is what an API client expects.
 *
 * Keys are whatever the caller chooses (the HTTP server uses the credential's identity,
 * else the client address; never the credential). Memory stays bounded: a bucket that
 * has refilled completely is the same as no bucket, so it is forgotten (checked from the
 * least recently used end on every take), and beyond max_keys the least recently used
 * key is dropped even if its bucket is not full.
 *
 * Arithmetic is exact (integers: one request = per_ms units, refill = requests units per
 * ms), so "5 per 2 s" admits the 6th request exactly 400 ms after the bucket emptied.
 *
 * Time is the caller's (milliseconds, any monotonic origin; tests inject it). Not
 * thread-safe: one owner (the HTTP server, on the loop thread).
 */
#ifndef BT_HTTP_RATELIMIT_H
#define BT_HTTP_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct bt_http_ratelimit bt_http_ratelimit;

/* What a take decided, for the response headers. */
typedef struct bt_http_ratelimit_result {
    int allowed;
    int64_t limit;          /* the bucket size (burst): X-RateLimit-Limit */
    int64_t remaining;      /* whole requests left after this one: X-RateLimit-Remaining */
    int64_t reset_ms;       /* until the bucket is full again: X-RateLimit-Reset */
    int64_t retry_after_ms; /* refused: until one request is allowed (> 0); else 0 */
} bt_http_ratelimit_result;

/* requests per per_ms with a bucket of burst (0 = requests); max_keys 0 = 100000.
 * Returns NULL when requests <= 0 (no limit) or per_ms <= 0. The result is owned by the
 * caller (bt_http_ratelimit_free). */
bt_http_ratelimit *bt_http_ratelimit_new(int64_t requests, int64_t per_ms, int64_t burst,
                                         size_t max_keys);
void bt_http_ratelimit_free(bt_http_ratelimit *rl); /* NULL is a no-op */

/* Take one request for key (borrowed; copied when remembered) at now_ms. Returns 1 when
 * allowed, 0 when refused; out (may be NULL) says why and what is left. */
int bt_http_ratelimit_take(bt_http_ratelimit *rl, const char *key, int64_t now_ms,
                           bt_http_ratelimit_result *out);

/* Keys currently remembered (those whose bucket is not known to be full). */
size_t bt_http_ratelimit_keys(const bt_http_ratelimit *rl);

#endif
