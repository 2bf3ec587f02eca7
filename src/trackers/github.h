/*
 * github.h - the GitHub tracker (docs/github.md; facts in api-reference.md §1): polls a
 * repository's open issues carrying the watched labels, turns them into work items, and
 * writes back labels, comments and pull requests through the bt_tracker interface
 * (tracker.h). Also the webhook side: signature check and payload translation.
 *
 * Polling (bt_github_start): at once, then every trackers.github.poll_interval, for each
 * watched label (an issue with any of them is taken once; GitHub's labels=a,b would
 * demand all) `GET /repos/{repo}/issues?state=open&labels=<label>&per_page=100&
 * sort=created&direction=asc`, following the `link` header's rel="next" exactly as given (at most
 * 50 pages a tick), dropping pull requests (elements with a `pull_request` key),
 * sending If-None-Match with the ETag stored per page URL (a 304 reuses that page's
 * stored items and costs no rate limit). Each issue becomes a bt_tracker_item handed to
 * on_item; the core's intake deduplicates by dedupe_key, so an issue seen on every poll
 * is stored once.
 *
 * Rate limits (api-reference.md §1.4): every response's x-ratelimit-* headers are
 * kept; a 403/429 with remaining 0 pauses every request until x-ratelimit-reset; a
 * secondary-limit answer waits Retry-After, else 60 s doubling per repeat (up to 15
 * min), and the request is retried (up to 5 times) - polls are skipped meanwhile,
 * never hammered. When remaining falls under 2% of the limit, polling waits for the
 * reset. Writes (labels, comments, pulls, close) go through one serial queue.
 *
 * Write-back (tracker.h ops): started removes the watched labels and adds
 * label_in_progress; open_pr opens the pull request (head = branch, base = given or the
 * repository's default branch; a 422 because one already exists finds the open one by
 * head); finished comments (PR link, summary, attempts, tokens, cost; or the error),
 * removes label_in_progress and adds label_completed / label_failed, and closes the
 * issue when close_issues is set (success only). A 404 removing a label that is not
 * there counts as done. Every comment starts with the marker "<!-- baton -->".
 *
 * The token is sent as "Authorization: Bearer" to api_url only; it is registered with
 * the log's redaction and appears in no message.
 */
#ifndef BT_GITHUB_H
#define BT_GITHUB_H

#include "base/error.h"
#include "trackers/tracker.h"

#include <stddef.h>
#include <uv.h>

typedef struct bt_config_github bt_config_github;
typedef struct bt_http_client bt_http_client;
typedef struct bt_log bt_log;
typedef struct bt_github bt_github;

typedef void (*bt_github_item_fn)(const bt_tracker_item *item, void *ud);

typedef struct bt_github_opts {
    uv_loop_t *loop;                   /* required */
    const bt_config_github *cfg;       /* required, borrowed: token, repo, labels, api_url... */
    bt_http_client *(*http)(void *ud); /* required: called on first use (lazy libcurl) */
    bt_log *log;                       /* may be NULL */
    bt_github_item_fn on_item;         /* polled items; may be NULL (then no polling) */
    void *ud;
} bt_github_opts;

/* Validates the configuration (repo "owner/name", api_url); no request yet. */
int bt_github_new(const bt_github_opts *o, bt_github **out, bt_error *err);
/* Start polling (when on_item is set): first poll at once. */
int bt_github_start(bt_github *g, bt_error *err);
/* Poll now (coalesced with a poll in flight). Used by POST /api/v1/refresh. */
void bt_github_poll_now(bt_github *g);
/* Stop timers and cancel requests in flight (their callbacks run with BT_ECANCELED);
 * then done(ud) once from a loop callback when nothing is outstanding. */
void bt_github_stop(bt_github *g, void (*done)(void *ud), void *ud);
void bt_github_free(bt_github *g);

/* The tracker interface over this client (borrowed; lives as long as g). */
bt_tracker *bt_github_tracker(bt_github *g);

/* Status for /api/status and /api/trackers: {"repo","last_poll_at","last_error",
 * "issues_seen","rate_limit":{"limit","remaining","reset"},"paused_until"}. New ref. */
json_t *bt_github_status(const bt_github *g);

/* ---- webhooks ---- */

/* Verify X-Hub-Signature-256 ("sha256=<hex>") over the raw body with secret, in
 * constant time. 0 when valid; BT_EPERM with a message ("missing X-Hub-Signature-256
 * header", "X-Hub-Signature-256 does not match the body") otherwise. */
int bt_github_verify_signature(const char *secret, const void *body, size_t len, const char *header,
                               bt_error *err);

typedef enum bt_github_hook_kind {
    BT_GITHUB_HOOK_IGNORE = 0, /* nothing to do (why says why) */
    BT_GITHUB_HOOK_ENQUEUE,    /* item: opened/labeled/reopened with a watched label */
    BT_GITHUB_HOOK_STOP,       /* closed, or the watched + in-progress labels removed:
                                * stop work on dedupe_key (terminal = closed) */
    BT_GITHUB_HOOK_RETRY,      /* issue_comment "/baton retry" on dedupe_key */
    BT_GITHUB_HOOK_PING,       /* ping event */
} bt_github_hook_kind;

typedef struct bt_github_hook {
    bt_github_hook_kind kind;
    int terminal;     /* STOP: 1 when the issue was closed */
    char *dedupe_key; /* ENQUEUE / STOP / RETRY */
    char *why;        /* IGNORE: a short reason ("action edited"); else NULL */
    /* ENQUEUE: the item (its strings point into this struct's storage) */
    bt_tracker_item item;
    json_t *storage; /* owns what item points at */
} bt_github_hook;

/* Translate a verified delivery (event = X-GitHub-Event) for this repository.
 * BT_EPARSE / BT_EINVAL (err names the problem: "body is not JSON", "issues payload
 * has no issue.number", "repository other/repo is not the configured acme/app") for
 * payloads that cannot be used. Comments by bots (user.type "Bot") and comments that
 * carry baton's own marker (every comment baton writes starts with "<!-- baton -->")
 * are ignored. */
int bt_github_parse_hook(bt_github *g, const char *event, const char *body, size_t len,
                         bt_github_hook *out, bt_error *err);
void bt_github_hook_release(bt_github_hook *h);

/* The normalisation shared by polling and webhooks: a GitHub issue object -> item.
 * storage receives what the item points into (decref it after use). Exposed for tests. */
int bt_github_normalize(const bt_github *g, const json_t *issue, bt_tracker_item *item,
                        json_t **storage, bt_error *err);

#endif
