/*
 * webhooks.c - POST /webhooks/github: GitHub's webhook deliveries (docs/github.md).
 *
 * The route needs no API token: a delivery authenticates by its X-Hub-Signature-256
 * (HMAC-SHA256 of the raw body with trackers.github.webhook_secret). In order:
 *
 *   1. no GitHub tracker configured -> 404 not_configured; no webhook_secret -> 503;
 *   2. body over 25 MB -> 413 (the server's body limit); signature missing or wrong ->
 *      401 bad_signature, nothing stored;
 *   3. X-GitHub-Delivery / X-GitHub-Event missing -> 400;
 *   4. the payload is translated (bt_github_parse_hook): unusable -> 400 with the
 *      reason; ping -> 200 pong; nothing to do -> 200 ignored with the reason. Neither
 *      writes anything, so answering them again on a redelivery is harmless;
 *   5. a delivery that asks for work is recorded once per delivery id
 *      (bt_store_delivery_record): a replay -> 200 duplicate and nothing else. Then
 *        enqueue -> intake (deduplicated by issue) -> 202 queued {task_id, created};
 *        stop    -> the pipeline stops the open task (cancelled; closed issues
 *                   also lose their workspace) -> 202 stopping;
 *        retry   -> the failed or cancelled task goes back to pending -> 202
 *                   retrying; an open one, a completed one or none -> 200 ignored.
 *      When the work could not be stored the delivery record is undone before the 503
 *      (bt_store_delivery_forget), so GitHub's redelivery is taken.
 *
 * Parsing before recording (rather than recording, then forgetting a delivery that does
 * not parse) means an unusable payload never touches the store. Each delivery is logged
 * at info with its event, delivery id and outcome.
 *
 * Records are kept DELIVERY_KEEP_MS (GitHub redelivers on request for 3 days): at most
 * once an hour, a recorded delivery also prunes older records.
 *
 * State: webhooks_state (the route's ud), freed by bt_api_cleanup.
 */
#include "api/api.h"

#include "base/mem.h"
#include "base/time.h"
#include "config/config.h"
#include "core/intake.h"
#include "core/pipeline.h"
#include "http/server.h"
#include "obs/log.h"
#include "store/store.h"
#include "trackers/github.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOK_MAX_BODY ((size_t)25 * 1024 * 1024) /* GitHub caps payloads at 25 MB */
#define SOURCE           "github"
#define DELIVERY_KEEP_MS (7LL * 24 * 3600 * 1000)
#define PRUNE_EVERY_MS   (3600LL * 1000)

typedef struct webhooks_state {
    bt_api *api;
    int64_t pruned_at; /* wall ms of the last prune started; 0 = never */
} webhooks_state;

typedef struct hook_ctx {
    bt_api *api;
    webhooks_state *st;
    bt_http_req *req;
    char *event;
    char *delivery;
    bt_github_hook hook;
    /* An answer held until the delivery record is undone (fail_forgotten). */
    int status;
    json_t *reply;
} hook_ctx;

static void ctx_free(hook_ctx *c)
{
    bt_github_hook_release(&c->hook);
    json_decref(c->reply);
    free(c->event);
    free(c->delivery);
    free(c);
}

static void log_outcome(const bt_api *api, const char *event, const char *delivery,
                        const char *outcome, const char *detail)
{
    bt_log_info(api->log, "github webhook", BT_LF_STR("event", event ? event : "-"),
                BT_LF_STR("delivery", delivery ? delivery : "-"), BT_LF_STR("outcome", outcome),
                BT_LF_STR("detail", detail ? detail : ""));
}

/* Answer and free the context. reply is stolen. */
static void finish(hook_ctx *c, int status, json_t *reply, const char *outcome, const char *detail)
{
    log_outcome(c->api, c->event, c->delivery, outcome, detail);
    bt_http_respond_json(c->req, status, reply);
    ctx_free(c);
}

/* ---------------------------------------------------------------------------------
 * Failures after the delivery was recorded: forget it, then answer.
 */
static void on_forgotten(void *ud, int rc, const bt_error *err, int64_t count)
{
    hook_ctx *c = ud;
    (void)count;
    if (rc < 0)
        bt_log_warn(c->api->log, "github webhook: could not forget a failed delivery",
                    BT_LF_STR("delivery", c->delivery), BT_LF_STR("error", err ? err->msg : ""));
    json_t *reply = c->reply;
    c->reply = NULL;
    const char *msg =
        json_string_value(json_object_get(json_object_get(reply, "error"), "message"));
    finish(c, c->status, reply, "failed", msg);
}

static void fail_forgetting(hook_ctx *c, int rc, const bt_error *err, const char *what)
{
    int status = rc == BT_EINVAL || rc == BT_EPARSE ? 400 : 503;
    const char *code = status == 400 ? bt_error_name(rc) : "unavailable";
    char msg[BT_ERROR_MSG_MAX + 160];
    snprintf(msg, sizeof msg, "%s: %s%s", what, err ? err->msg : bt_strerror(rc),
             status == 503 ? " (the delivery was not taken: redeliver it from GitHub)" : "");
    c->status = status;
    c->reply = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    bt_store_delivery_forget(c->api->store, SOURCE, c->delivery, on_forgotten, c);
}

/* ---------------------------------------------------------------------------------
 * Enqueue.
 */
static void on_intake(void *ud, int rc, const bt_error *err, const bt_task *task, bool created)
{
    hook_ctx *c = ud;
    if (rc < 0) {
        fail_forgetting(c, rc, err, "storing the issue's task failed");
        return;
    }
    json_t *reply = json_pack("{s:s,s:s,s:b,s:s,s:s}", "status", "queued", "task_id", task->id,
                              "created", created, "identifier",
                              task->identifier ? task->identifier : "", "delivery", c->delivery);
    finish(c, 202, reply, created ? "queued" : "queued (existing task)", task->id);
}

/* ---------------------------------------------------------------------------------
 * Stop without a pipeline: cancel the open task directly.
 */
static void on_stop_cancelled(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    hook_ctx *c = ud;
    if (rc == BT_ESTATE) { /* it finished meanwhile */
        finish(c, 200,
               json_pack("{s:s,s:s,s:s}", "status", "ignored", "reason",
                         "no open task for this issue", "delivery", c->delivery),
               "ignored", "task finished meanwhile");
        return;
    }
    if (rc < 0) {
        fail_forgetting(c, rc, err, "cancelling the issue's task failed");
        return;
    }
    finish(c, 202,
           json_pack("{s:s,s:s,s:s}", "status", "stopping", "task_id", task->id, "delivery",
                     c->delivery),
           "stopping", task->id);
}

static const char *stop_reason(const hook_ctx *c)
{
    return c->hook.terminal ? "issue closed" : "label removed";
}

static void on_stop_found(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    hook_ctx *c = ud;
    if (rc == BT_ENOENT || (rc == 0 && bt_task_status_terminal(task->status))) {
        finish(c, 200,
               json_pack("{s:s,s:s,s:s}", "status", "ignored", "reason",
                         "no open task for this issue", "delivery", c->delivery),
               "ignored", "no open task");
        return;
    }
    if (rc < 0) {
        fail_forgetting(c, rc, err, "finding the issue's task failed");
        return;
    }
    bt_store_task_transition(c->api->store, task->id, BT_TASK_CANCELLED, stop_reason(c),
                             on_stop_cancelled, c);
}

static void do_stop(hook_ctx *c)
{
    if (c->api->pipeline) {
        bt_pipeline_stop_item(c->api->pipeline, c->hook.dedupe_key, c->hook.terminal,
                              stop_reason(c));
        finish(c, 202,
               json_pack("{s:s,s:s,s:s}", "status", "stopping", "reason", stop_reason(c),
                         "delivery", c->delivery),
               "stopping", c->hook.dedupe_key);
        return;
    }
    bt_store_task_get_by_key(c->api->store, c->hook.dedupe_key, on_stop_found, c);
}

/* ---------------------------------------------------------------------------------
 * Retry ("/baton retry" comment).
 */
static void on_retried(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    hook_ctx *c = ud;
    if (rc == BT_ESTATE) { /* someone else retried it meanwhile */
        finish(c, 200,
               json_pack("{s:s,s:s,s:s}", "status", "ignored", "reason", "task is still open",
                         "delivery", c->delivery),
               "ignored", "task reopened meanwhile");
        return;
    }
    if (rc < 0) {
        fail_forgetting(c, rc, err, "retrying the issue's task failed");
        return;
    }
    finish(c, 202,
           json_pack("{s:s,s:s,s:s}", "status", "retrying", "task_id", task->id, "delivery",
                     c->delivery),
           "retrying", task->id);
}

static void on_retry_found(void *ud, int rc, const bt_error *err, const bt_task *task)
{
    hook_ctx *c = ud;
    const char *why = NULL;
    if (rc == BT_ENOENT)
        why = "no task for this issue";
    else if (rc < 0) {
        fail_forgetting(c, rc, err, "finding the issue's task failed");
        return;
    } else if (task->status == BT_TASK_COMPLETED)
        why = "task already completed";
    else if (!bt_task_status_terminal(task->status))
        why = "task is still open";
    if (why) {
        finish(
            c, 200,
            json_pack("{s:s,s:s,s:s}", "status", "ignored", "reason", why, "delivery", c->delivery),
            "ignored", why);
        return;
    }
    bt_store_task_transition(c->api->store, task->id, BT_TASK_PENDING,
                             "retried by a /baton retry comment on GitHub", on_retried, c);
}

/* ---------------------------------------------------------------------------------
 * The delivery is recorded: act on it.
 */
static void on_pruned(void *ud, int rc, const bt_error *err, int64_t count)
{
    webhooks_state *st = ud;
    if (rc < 0)
        bt_log_warn(st->api->log, "github webhook: pruning old delivery records failed",
                    BT_LF_STR("error", err ? err->msg : ""));
    else if (count > 0)
        bt_log_debug(st->api->log, "github webhook: old delivery records pruned",
                     BT_LF_INT("count", count));
}

static void maybe_prune(webhooks_state *st)
{
    int64_t now = bt_time_wall_ms();
    if (st->pruned_at && now - st->pruned_at < PRUNE_EVERY_MS)
        return;
    st->pruned_at = now;
    bt_store_deliveries_prune(st->api->store, now - DELIVERY_KEEP_MS, on_pruned, st);
}

static void on_recorded(void *ud, int rc, const bt_error *err, int64_t count)
{
    hook_ctx *c = ud;
    if (rc < 0) {
        int status = rc == BT_EINVAL ? 400 : 503;
        char msg[BT_ERROR_MSG_MAX + 64];
        snprintf(msg, sizeof msg, "recording the delivery failed: %s",
                 err ? err->msg : bt_strerror(rc));
        finish(c, status,
               json_pack("{s:{s:s,s:s}}", "error", "code",
                         status == 400 ? bt_error_name(rc) : "unavailable", "message", msg),
               "failed", msg);
        return;
    }
    if (count == 0) {
        finish(c, 200, json_pack("{s:s,s:s}", "status", "duplicate", "delivery", c->delivery),
               "duplicate", NULL);
        return;
    }
    maybe_prune(c->st);
    switch (c->hook.kind) {
    case BT_GITHUB_HOOK_ENQUEUE:
        bt_intake_submit(c->api->store, c->api->cfg, &c->hook.item, on_intake, c);
        break;
    case BT_GITHUB_HOOK_STOP:
        do_stop(c);
        break;
    case BT_GITHUB_HOOK_RETRY:
        bt_store_task_get_by_key(c->api->store, c->hook.dedupe_key, on_retry_found, c);
        break;
    default: /* PING and IGNORE are answered before recording */
        finish(c, 500,
               json_pack("{s:{s:s,s:s}}", "error", "code", "internal", "message",
                         "webhook kind with no action"),
               "failed", "internal");
        break;
    }
}

/* ---------------------------------------------------------------------------------
 * The handler.
 */
static void h_github(bt_http_req *req, void *ud)
{
    webhooks_state *st = ud;
    bt_api *api = st->api;
    if (!api->github) {
        bt_http_respond_error(req, 404, "not_configured",
                              "the GitHub tracker is not configured: set trackers.github.repo "
                              "(and its token) in baton.yaml to receive GitHub webhooks");
        return;
    }
    const char *secret = api->cfg->trackers.github.webhook_secret;
    if (!secret || !*secret) {
        bt_http_respond_error(req, 503, "not_configured",
                              "GitHub webhooks need a secret: set trackers.github.webhook_secret "
                              "in baton.yaml or GITHUB_WEBHOOK_SECRET, and the same secret in "
                              "the repository's webhook settings");
        return;
    }
    size_t len = 0;
    const char *body = bt_http_req_body(req, &len);
    const char *event = bt_http_req_header(req, "X-GitHub-Event");
    const char *delivery = bt_http_req_header(req, "X-GitHub-Delivery");
    bt_error err = BT_ERROR_INIT;
    if (bt_github_verify_signature(secret, body, len,
                                   bt_http_req_header(req, "X-Hub-Signature-256"), &err) < 0) {
        log_outcome(api, event, delivery, "bad_signature", err.msg);
        bt_http_respond_error(req, 401, "bad_signature", "%s", err.msg);
        return;
    }
    if (!delivery || !*delivery) {
        log_outcome(api, event, NULL, "rejected", "no X-GitHub-Delivery");
        bt_http_respond_error(req, 400, "invalid_argument",
                              "missing X-GitHub-Delivery header (GitHub sends one with every "
                              "delivery; it is how a redelivery is recognised)");
        return;
    }
    if (!event || !*event) {
        log_outcome(api, NULL, delivery, "rejected", "no X-GitHub-Event");
        bt_http_respond_error(req, 400, "invalid_argument", "missing X-GitHub-Event header");
        return;
    }
    hook_ctx *c = bt_xcalloc(1, sizeof *c);
    c->api = api;
    c->st = st;
    c->req = req;
    c->event = bt_xstrdup(event);
    c->delivery = bt_xstrdup(delivery);
    int rc = bt_github_parse_hook(api->github, event, body, len, &c->hook, &err);
    if (rc < 0) {
        log_outcome(api, event, delivery, "rejected", err.msg);
        bt_http_respond_error(req, rc == BT_EINVAL || rc == BT_EPARSE ? 400 : 500,
                              bt_error_name(rc), "%s", err.msg);
        ctx_free(c);
        return;
    }
    if (c->hook.kind == BT_GITHUB_HOOK_PING) {
        finish(c, 200, json_pack("{s:s,s:s}", "status", "pong", "delivery", delivery), "pong",
               NULL);
        return;
    }
    const char *why = NULL;
    if (c->hook.kind == BT_GITHUB_HOOK_IGNORE)
        why = c->hook.why ? c->hook.why : "nothing to do";
    else if (c->hook.kind == BT_GITHUB_HOOK_RETRY && !api->cfg->trackers.github.commands)
        why = "comment commands are off (trackers.github.commands)";
    if (why) {
        finish(c, 200,
               json_pack("{s:s,s:s,s:s}", "status", "ignored", "reason", why, "delivery", delivery),
               "ignored", why);
        return;
    }
    if (c->hook.kind != BT_GITHUB_HOOK_ENQUEUE && (!c->hook.dedupe_key || !*c->hook.dedupe_key)) {
        finish(c, 500,
               json_pack("{s:{s:s,s:s}}", "error", "code", "internal", "message",
                         "the GitHub payload was translated without an issue key"),
               "failed", "no dedupe key");
        return;
    }
    bt_http_req_suspend(req);
    bt_store_delivery_record(api->store, SOURCE, c->delivery, on_recorded, c);
}

int bt_api_webhooks_register(bt_api *api, bt_error *err)
{
    webhooks_state *st = bt_xcalloc(1, sizeof *st);
    st->api = api;
    int rc = bt_api_on_cleanup(api, free, st, err);
    if (rc < 0) {
        free(st);
        return rc;
    }
    const bt_http_route routes[] = {
        {"POST", "/webhooks/github", BT_HTTP_SCOPE_NONE, h_github, st, WEBHOOK_MAX_BODY, 0},
    };
    return bt_http_server_route_all(api->http, routes, sizeof routes / sizeof routes[0], err);
}
