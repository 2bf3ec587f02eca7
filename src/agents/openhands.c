/*
 * openhands.c - the OpenHands agent adapter: a turn is one conversation on a remote
 * OpenHands agent server (OpenHands/software-agent-sdk, api-reference.md section 6),
 * driven over its REST API with baton's HTTP client on the loop.
 *
 *   POST {base}/api/conversations          agent (llm + tools), workspace, the prompt as
 *                                          initial_message with run:true; baton picks the
 *                                          conversation id, so a cancelled create can
 *                                          still be cleaned up
 *   GET  {base}/api/conversations/{id}     every poll_interval_ms: execution_status and
 *                                          stats (cost, tokens)
 *   GET  .../{id}/events/search            new events since the last one seen, a page of
 *                                          100 at a time: agent MessageEvents become
 *                                          output, ActionEvents tool events,
 *                                          AgentErrorEvent/ConversationErrorEvent stderr;
 *                                          other kinds are skipped (the set grows)
 *   GET  .../{id}/agent_final_response     the final text once the status is finished
 *   POST .../{id}/pause, DELETE .../{id}   on cancel, timeout or stall (best effort)
 *
 * Every call carries "X-Session-API-Key" when a key is configured. execution_status
 * finished is success; error fails the turn (transient, unless the server's
 * ConversationErrorEvent says the cause is authentication, configuration, quota or a
 * run limit); stuck fails it permanently; waiting_for_confirmation is reported as a
 * status event and waited out (bounded by the turn timeout). Cost and tokens come
 * from the conversation's stats.usage_to_metrics (summed over its LLMs), reported as
 * the agent's own figure when the server priced the model.
 *
 * The workspace path is sent as the conversation's working_dir: it must exist where
 * the agent server runs (the same machine, or a shared mount).
 */
#include "agents/agent_impl.h"

#include "base/id.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "http/client.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int64_t poll_interval_ms = 500;
static const int64_t call_timeout_ms = 30000;   /* one REST call */
static const int64_t create_timeout_ms = 60000; /* creating may start a runtime */
static const int64_t cleanup_timeout_ms = 5000; /* pause / delete after a stop */
static const int64_t check_timeout_ms = 5000;
static const int max_poll_failures = 5;    /* consecutive transient poll errors tolerated */
static const int events_page_limit = 100;  /* the server's maximum */
static const int64_t max_iterations = 500; /* the SDK's default, made explicit */
/* The tools of the SDK's default agent without browser and delegation. */
static const char *const default_tools[] = {"TerminalTool", "FileEditorTool", "TaskTrackerTool"};

typedef struct oh_agent {
    char *base;          /* base URL without a trailing '/'; "" when unset */
    char *key_header;    /* "X-Session-API-Key: KEY", NULL without a key */
    const char *hdrs[3]; /* Accept, the key, NULL */
} oh_agent;

typedef enum oh_step {
    ST_CREATE,
    ST_INFO,
    ST_EVENTS,
    ST_FINAL,
    ST_PAUSE,
    ST_DELETE,
} oh_step;

typedef struct oh_run {
    bt_agent_run *run;
    oh_agent *oa;
    char id[40];        /* the conversation id */
    bt_http_call *call; /* the call in flight, NULL between calls */
    oh_step step;
    uv_timer_t poll, deadline;
    int open_handles;
    int stopping;  /* cancel, timeout or stall: clean up and finish */
    int finishing; /* the timers are closing */
    int pause_sent, delete_sent;
    char *status;         /* the last execution_status */
    char *last_event_id;  /* the newest event handled */
    int failures;         /* consecutive transient poll failures */
    int waiting_reported; /* the waiting_for_confirmation status went out */
    int64_t last_progress_ms;
    char *err_code, *err_detail, *err_cause; /* the last ConversationErrorEvent */
} oh_run;

/* ---- helpers ---- */

static void uuid4(char out[40])
{
    unsigned char b[16];
    if (bt_random_bytes(b, sizeof b) < 0) {
        /* fall back to time and address bits: the id only needs to be unique-ish */
        int64_t t = bt_time_wall_ms() ^ bt_time_mono_ns();
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)((t >> ((i % 8) * 8)) ^ ((uintptr_t)out >> (i % 4)));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static void add_query_value(bt_strbuf *sb, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            bt_strbuf_addch(sb, (char)c);
        } else {
            bt_strbuf_addch(sb, '%');
            bt_strbuf_addch(sb, hex[c >> 4]);
            bt_strbuf_addch(sb, hex[c & 15]);
        }
    }
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? bt_xstrdup(s) : NULL;
}

static int is_2xx(const bt_http_response *r)
{
    return r->rc == 0 && r->status >= 200 && r->status < 300;
}

static json_t *parse_body(const bt_http_response *r)
{
    json_t *j = NULL;
    if (r->body_len && bt_json_parse(r->body, r->body_len, 0, &j, NULL) == 0 && json_is_object(j))
        return j;
    json_decref(j);
    return NULL;
}

/* Record the failure an HTTP outcome means. what = "GET /api/conversations/ID". */
static void fail_http(bt_agent_run *run, const bt_http_response *r, const char *what)
{
    bt_agent_error_class cls = bt_agent_http_class(r->rc, r->status, r->body);
    if (r->status)
        run->http_status = r->status;
    if (cls == BT_AGENT_TRANSIENT)
        run->retry_after_ms = r->retry_after_ms;
    if (r->rc < 0) {
        bt_agent_run_fail(run, cls, "OpenHands agent server %s: %s", run->agent->cfg.base_url,
                          r->error);
    } else if (r->status == 401 || r->status == 403) {
        bt_agent_run_fail(run, BT_AGENT_PERMANENT,
                          "OpenHands rejected the session key (HTTP %ld from %s %s); set "
                          "OPENHANDS_RUNTIME_API_KEY (or agents.%s.api_key) to the server's "
                          "SESSION_API_KEY",
                          r->status, what, run->agent->cfg.base_url, run->agent->cfg.name);
    } else {
        bt_agent_run_fail(run, cls, "OpenHands agent server %s: %s returned HTTP %ld: %.300s",
                          run->agent->cfg.base_url, what, r->status, r->body);
    }
}

/* ---- finishing ---- */

static void oh_closed(uv_handle_t *h)
{
    oh_run *oh = h->data;
    if (--oh->open_handles > 0)
        return;
    bt_agent_run *run = oh->run;
    free(oh->status);
    free(oh->last_event_id);
    free(oh->err_code);
    free(oh->err_detail);
    free(oh->err_cause);
    free(oh);
    run->impl = NULL;
    bt_agent_run_finish(run);
}

/* Close the timers; the run finishes from their close callbacks (never synchronously).
 * No call may be in flight. */
static void oh_finish(oh_run *oh)
{
    if (oh->finishing)
        return;
    oh->finishing = 1;
    uv_timer_stop(&oh->poll);
    uv_timer_stop(&oh->deadline);
    oh->open_handles = 2;
    uv_close((uv_handle_t *)&oh->poll, oh_closed);
    uv_close((uv_handle_t *)&oh->deadline, oh_closed);
}

/* ---- calls ---- */

static void on_http(bt_http_call *call, const bt_http_response *r, void *ud);

/* Send a call for step. path is appended to base (it starts with '/'). */
static int oh_send(oh_run *oh, oh_step step, const char *method, const char *path, const char *body,
                   int64_t timeout_ms, bt_error *err)
{
    bt_strbuf url = BT_STRBUF_INIT;
    bt_strbuf_addf(&url, "%s%s", oh->oa->base, path);
    bt_http_request rq = {.method = method,
                          .url = url.buf,
                          .headers = oh->oa->hdrs,
                          .body = body,
                          .body_len = body ? strlen(body) : 0,
                          .timeout_ms = timeout_ms,
                          .on_done = on_http,
                          .ud = oh};
    oh->step = step;
    int rc = bt_http_client_send(oh->run->agent->env.http, &rq, &oh->call, err);
    bt_strbuf_release(&url);
    if (rc < 0)
        oh->call = NULL;
    return rc;
}

/* The next stop step: pause, then delete, then finish. */
static void stop_next(oh_run *oh)
{
    char path[128];
    bt_error err = BT_ERROR_INIT;
    if (!oh->pause_sent) {
        oh->pause_sent = 1;
        snprintf(path, sizeof path, "/api/conversations/%s/pause", oh->id);
        if (oh_send(oh, ST_PAUSE, "POST", path, "{}", cleanup_timeout_ms, &err) == 0)
            return;
    }
    if (!oh->delete_sent) {
        oh->delete_sent = 1;
        snprintf(path, sizeof path, "/api/conversations/%s", oh->id);
        if (oh_send(oh, ST_DELETE, "DELETE", path, NULL, cleanup_timeout_ms, &err) == 0)
            return;
    }
    oh_finish(oh);
}

/* Stop the conversation (the failure is already recorded). */
static void stop_begin(oh_run *oh)
{
    if (oh->stopping || oh->finishing)
        return;
    oh->stopping = 1;
    uv_timer_stop(&oh->poll);
    uv_timer_stop(&oh->deadline);
    if (oh->call)
        bt_http_call_cancel(oh->call); /* on_http continues with stop_next */
    else
        stop_next(oh);
}

static void send_info(oh_run *oh)
{
    char path[128];
    snprintf(path, sizeof path, "/api/conversations/%s", oh->id);
    bt_error err = BT_ERROR_INIT;
    if (oh_send(oh, ST_INFO, "GET", path, NULL, call_timeout_ms, &err) < 0) {
        bt_agent_run_fail(oh->run, BT_AGENT_TRANSIENT, "%s", err.msg);
        oh_finish(oh);
    }
}

static void send_events(oh_run *oh, const char *page_id)
{
    bt_strbuf path = BT_STRBUF_INIT;
    bt_strbuf_addf(&path, "/api/conversations/%s/events/search?limit=%d", oh->id,
                   events_page_limit);
    if (page_id && *page_id) {
        bt_strbuf_addstr(&path, "&page_id=");
        add_query_value(&path, page_id);
    }
    bt_error err = BT_ERROR_INIT;
    int rc = oh_send(oh, ST_EVENTS, "GET", path.buf, NULL, call_timeout_ms, &err);
    bt_strbuf_release(&path);
    if (rc < 0) {
        bt_agent_run_fail(oh->run, BT_AGENT_TRANSIENT, "%s", err.msg);
        oh_finish(oh);
    }
}

static void poll_tick(uv_timer_t *t)
{
    oh_run *oh = t->data;
    bt_agent_run *run = oh->run;
    if (oh->stopping || oh->finishing)
        return;
    if (run->stall_timeout_ms > 0 &&
        bt_agent_run_elapsed_ms(run) - oh->last_progress_ms >= run->stall_timeout_ms) {
        bt_agent_run_fail(run, BT_AGENT_TIMEOUT,
                          "stalled: no progress from OpenHands conversation %s for %lld ms "
                          "(status %s)",
                          oh->id, (long long)run->stall_timeout_ms,
                          oh->status ? oh->status : "unknown");
        bt_agent_run_emit(run, BT_AGENT_EV_STATUS, "killed: stalled", 15);
        stop_begin(oh);
        return;
    }
    send_info(oh);
}

static void deadline_fire(uv_timer_t *t)
{
    oh_run *oh = t->data;
    bt_agent_run_fail(oh->run, BT_AGENT_TIMEOUT,
                      "the OpenHands conversation %s did not finish within the turn timeout of "
                      "%lld ms (status %s)",
                      oh->id, (long long)oh->run->timeout_ms, oh->status ? oh->status : "unknown");
    stop_begin(oh);
}

/* A poll call failed: tolerate a few transient errors, fail on the rest. */
static void poll_failed(oh_run *oh, const bt_http_response *r, const char *what)
{
    bt_agent_error_class cls = bt_agent_http_class(r->rc, r->status, r->body);
    if (cls == BT_AGENT_TRANSIENT && ++oh->failures < max_poll_failures) {
        uv_timer_start(&oh->poll, poll_tick, (uint64_t)poll_interval_ms, 0);
        return;
    }
    if (r->status == 404 && oh->step == ST_INFO) {
        bt_agent_run_fail(oh->run, BT_AGENT_TRANSIENT,
                          "the OpenHands conversation %s disappeared from the server %s (HTTP "
                          "404); was the server restarted?",
                          oh->id, oh->run->agent->cfg.base_url);
        oh->run->http_status = 404;
    } else {
        fail_http(oh->run, r, what);
    }
    oh_finish(oh);
}

/* ---- reading the server's documents ---- */

static void read_usage(oh_run *oh, const json_t *info)
{
    bt_agent_run *run = oh->run;
    double cost = 0;
    int64_t tin = 0, tout = 0;
    int have = 0;
    const json_t *usage = json_object_get(json_object_get(info, "stats"), "usage_to_metrics");
    const char *key;
    const json_t *m;
    if (json_is_object(usage) && json_object_size(usage)) {
        json_object_foreach((json_t *)usage, key, m)
        {
            const json_t *c = json_object_get(m, "accumulated_cost");
            const json_t *tu = json_object_get(m, "accumulated_token_usage");
            if (json_is_number(c))
                cost += json_number_value(c);
            tin += bt_json_int(tu, "prompt_tokens", 0);
            tout += bt_json_int(tu, "completion_tokens", 0);
            have = 1;
        }
    } else if (json_is_object(json_object_get(info, "metrics"))) {
        m = json_object_get(info, "metrics");
        const json_t *c = json_object_get(m, "accumulated_cost");
        const json_t *tu = json_object_get(m, "accumulated_token_usage");
        cost = json_is_number(c) ? json_number_value(c) : 0;
        tin = bt_json_int(tu, "prompt_tokens", 0);
        tout = bt_json_int(tu, "completion_tokens", 0);
        have = 1;
    }
    if (!have)
        return;
    bt_agent_run_usage(run, tin, tout);
    /* A cost of 0 means the server could not price the model: leave that to the
     * price table rather than report a free run. */
    if (cost > 0) {
        run->cost_usd = cost;
        run->cost_reported = 1;
    }
}

/* The text parts of a message content array, joined. */
static void add_text_parts(bt_strbuf *sb, const json_t *content)
{
    size_t i;
    const json_t *part;
    if (json_is_string(content)) {
        bt_strbuf_add(sb, json_string_value(content), json_string_length(content));
        return;
    }
    json_array_foreach(content, i, part)
    {
        const json_t *t = json_object_get(part, "text");
        if (json_is_string(t) && strcmp(bt_json_str(part, "type", "text"), "text") == 0)
            bt_strbuf_add(sb, json_string_value(t), json_string_length(t));
    }
}

static void action_detail(bt_strbuf *sb, const json_t *ev)
{
    const char *summary = bt_json_str(ev, "summary", NULL);
    const json_t *action = json_object_get(ev, "action");
    const char *cmd = bt_json_str(action, "command", NULL);
    const char *path = bt_json_str(action, "path", NULL);
    if (summary && *summary) {
        bt_strbuf_addstr(sb, summary);
    } else if (cmd || path) {
        bt_strbuf_addstr(sb, cmd ? cmd : "");
        if (cmd && path)
            bt_strbuf_addch(sb, ' ');
        bt_strbuf_addstr(sb, path ? path : "");
    } else {
        add_text_parts(sb, json_object_get(ev, "thought"));
    }
    if (sb->len > 200) {
        bt_strbuf_setlen(sb, 197);
        bt_strbuf_addstr(sb, "...");
    }
}

static void handle_event(oh_run *oh, const json_t *ev)
{
    bt_agent_run *run = oh->run;
    const char *kind = bt_json_str(ev, "kind", "");
    bt_strbuf sb = BT_STRBUF_INIT;
    if (strcmp(kind, "MessageEvent") == 0) {
        if (strcmp(bt_json_str(ev, "source", ""), "agent") == 0) {
            add_text_parts(&sb, json_object_get(json_object_get(ev, "llm_message"), "content"));
            if (sb.len && sb.buf[sb.len - 1] != '\n')
                bt_strbuf_addch(&sb, '\n');
            if (sb.len)
                bt_agent_run_output(run, sb.buf, sb.len);
        }
    } else if (strcmp(kind, "ActionEvent") == 0) {
        action_detail(&sb, ev);
        bt_agent_run_tool(run, bt_json_str(ev, "tool_name", "tool"), bt_strbuf_cstr(&sb));
    } else if (strcmp(kind, "AgentErrorEvent") == 0) {
        bt_strbuf_addf(&sb, "%s: %s\n", bt_json_str(ev, "tool_name", "agent"),
                       bt_json_str(ev, "error", ""));
        bt_agent_run_emit(run, BT_AGENT_EV_STDERR, sb.buf, sb.len);
    } else if (strcmp(kind, "ConversationErrorEvent") == 0) {
        set_str(&oh->err_code, bt_json_str(ev, "code", ""));
        set_str(&oh->err_detail, bt_json_str(ev, "detail", ""));
        set_str(&oh->err_cause, bt_json_str(json_object_get(ev, "classification"), "cause", NULL));
        bt_strbuf_addf(&sb, "%s: %s\n", oh->err_code, oh->err_detail);
        bt_agent_run_emit(run, BT_AGENT_EV_STDERR, sb.buf, sb.len);
    }
    /* everything else (ObservationEvent, state updates, new kinds) is skipped */
    bt_strbuf_release(&sb);
}

/* The class of a conversation that ended in "error". */
static bt_agent_error_class error_status_class(const oh_run *oh)
{
    static const char *const permanent_causes[] = {"authentication", "configuration", "quota",
                                                   "run_limit"};
    static const char *const permanent_codes[] = {
        "LLMAuthenticationError", "LLMBadRequestError",   "NotFoundError",
        "MaxBudgetReached",       "MaxIterationsReached", "LLMContextWindowExceedError"};
    for (size_t i = 0; oh->err_cause && i < sizeof permanent_causes / sizeof *permanent_causes; i++)
        if (strcmp(oh->err_cause, permanent_causes[i]) == 0)
            return BT_AGENT_PERMANENT;
    for (size_t i = 0; oh->err_code && i < sizeof permanent_codes / sizeof *permanent_codes; i++)
        if (strcmp(oh->err_code, permanent_codes[i]) == 0)
            return BT_AGENT_PERMANENT;
    return BT_AGENT_TRANSIENT;
}

static int is_terminal(const char *status)
{
    return status && (strcmp(status, "finished") == 0 || strcmp(status, "error") == 0 ||
                      strcmp(status, "stuck") == 0);
}

/* ---- the steps ---- */

static void on_info(oh_run *oh, const bt_http_response *r)
{
    bt_agent_run *run = oh->run;
    json_t *info = is_2xx(r) ? parse_body(r) : NULL;
    if (!info) {
        if (is_2xx(r)) {
            bt_agent_run_fail(run, BT_AGENT_TRANSIENT,
                              "OpenHands agent server %s sent a conversation that is not a JSON "
                              "object",
                              run->agent->cfg.base_url);
            oh_finish(oh);
            return;
        }
        char what[128];
        snprintf(what, sizeof what, "GET /api/conversations/%s", oh->id);
        poll_failed(oh, r, what);
        return;
    }
    oh->failures = 0;
    read_usage(oh, info);
    bt_agent_run_set_model(
        run, bt_json_str(json_object_get(json_object_get(info, "agent"), "llm"), "model", NULL));
    const char *status = bt_json_str(info, "execution_status", "");
    if (!oh->status || strcmp(oh->status, status) != 0) {
        oh->last_progress_ms = bt_agent_run_elapsed_ms(run);
        set_str(&oh->status, status);
        if (strcmp(status, "waiting_for_confirmation") == 0 && !oh->waiting_reported) {
            oh->waiting_reported = 1;
            char msg[256];
            snprintf(msg, sizeof msg,
                     "OpenHands conversation %s is waiting for confirmation of an action; "
                     "accept or reject it on the agent server",
                     oh->id);
            bt_agent_run_emit(run, BT_AGENT_EV_STATUS, msg, strlen(msg));
        }
    }
    json_decref(info);
    if (oh->stopping)
        return; /* an event callback cancelled the run */
    /* Events after the status: nothing that led to a terminal status is missed. */
    send_events(oh, oh->last_event_id);
}

static void end_terminal(oh_run *oh)
{
    bt_agent_run *run = oh->run;
    if (strcmp(oh->status, "finished") == 0) {
        char path[128];
        snprintf(path, sizeof path, "/api/conversations/%s/agent_final_response", oh->id);
        bt_error err = BT_ERROR_INIT;
        if (oh_send(oh, ST_FINAL, "GET", path, NULL, call_timeout_ms, &err) < 0)
            oh_finish(oh); /* keep the streamed messages as the output */
        return;
    }
    if (strcmp(oh->status, "stuck") == 0) {
        bt_agent_run_fail(run, BT_AGENT_PERMANENT,
                          "the OpenHands agent got stuck (it kept repeating itself) in "
                          "conversation %s",
                          oh->id);
    } else if (oh->err_code) {
        bt_agent_run_fail(run, error_status_class(oh),
                          "the OpenHands conversation %s ended in error: %s: %s", oh->id,
                          oh->err_code, oh->err_detail ? oh->err_detail : "");
    } else {
        bt_agent_run_fail(run, BT_AGENT_TRANSIENT,
                          "the OpenHands conversation %s ended in error (the server sent no "
                          "error event)",
                          oh->id);
    }
    oh_finish(oh);
}

static void on_events(oh_run *oh, const bt_http_response *r)
{
    json_t *page = is_2xx(r) ? parse_body(r) : NULL;
    if (!page) {
        if (is_2xx(r)) {
            bt_agent_run_fail(oh->run, BT_AGENT_TRANSIENT,
                              "OpenHands agent server %s sent an event page that is not JSON",
                              oh->run->agent->cfg.base_url);
            oh_finish(oh);
            return;
        }
        char what[160];
        snprintf(what, sizeof what, "GET /api/conversations/%s/events/search", oh->id);
        poll_failed(oh, r, what);
        return;
    }
    oh->failures = 0;
    size_t i;
    const json_t *ev;
    json_array_foreach(json_object_get(page, "items"), i, ev)
    {
        const char *eid = bt_json_str(ev, "id", NULL);
        /* page_id is inclusive: the first item of a resumed page is the last one seen */
        if (eid && oh->last_event_id && strcmp(eid, oh->last_event_id) == 0)
            continue;
        handle_event(oh, ev);
        if (eid)
            set_str(&oh->last_event_id, eid);
        oh->last_progress_ms = bt_agent_run_elapsed_ms(oh->run);
        if (oh->stopping || oh->run->cancel_requested)
            break; /* a callback cancelled the run */
    }
    const char *next = bt_json_str(page, "next_page_id", NULL);
    char *next_copy = next && *next ? bt_xstrdup(next) : NULL;
    json_decref(page);
    if (oh->stopping) {
        free(next_copy);
        return;
    }
    if (next_copy) {
        send_events(oh, next_copy);
        free(next_copy);
        return;
    }
    if (is_terminal(oh->status))
        end_terminal(oh);
    else
        uv_timer_start(&oh->poll, poll_tick, (uint64_t)poll_interval_ms, 0);
}

static void on_final(oh_run *oh, const bt_http_response *r)
{
    json_t *j = is_2xx(r) ? parse_body(r) : NULL;
    const json_t *resp = json_object_get(j, "response");
    if (json_is_string(resp) && json_string_length(resp))
        bt_agent_run_output_set(oh->run, json_string_value(resp), json_string_length(resp));
    json_decref(j);
    oh_finish(oh); /* without a final response the streamed messages are the output */
}

static void on_create(oh_run *oh, const bt_http_response *r)
{
    if (!is_2xx(r)) {
        fail_http(oh->run, r, "POST /api/conversations");
        oh_finish(oh);
        return;
    }
    json_t *info = parse_body(r);
    const char *id = bt_json_str(info, "id", NULL);
    if (id && *id && strlen(id) < sizeof oh->id)
        snprintf(oh->id, sizeof oh->id, "%s", id);
    json_decref(info);
    oh->last_progress_ms = bt_agent_run_elapsed_ms(oh->run);
    send_info(oh);
}

static void on_http(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    oh_run *oh = ud;
    oh->call = NULL;
    if (r->rc == 0 && r->status)
        oh->run->http_status = r->status;
    if (oh->stopping) {
        if (oh->step == ST_DELETE)
            oh_finish(oh);
        else
            stop_next(oh);
        return;
    }
    switch (oh->step) {
    case ST_CREATE:
        on_create(oh, r);
        break;
    case ST_INFO:
        on_info(oh, r);
        break;
    case ST_EVENTS:
        on_events(oh, r);
        break;
    case ST_FINAL:
        on_final(oh, r);
        break;
    case ST_PAUSE:
    case ST_DELETE:
        oh_finish(oh);
        break;
    }
}

/* ---- start, cancel ---- */

static char *create_body(bt_agent_run *run, const char *id, const char *model)
{
    bt_agent *a = run->agent;
    const bt_config_llm *llm = a->env.cfg ? &a->env.cfg->llm : NULL;
    json_t *jllm = json_pack("{s:s,s:s}", "model", model, "usage_id", "agent");
    if (llm && llm->api_key && *llm->api_key)
        json_object_set_new(jllm, "api_key", json_string(llm->api_key));
    if (llm && llm->base_url && *llm->base_url)
        json_object_set_new(jllm, "base_url", json_string(llm->base_url));
    json_t *tools = json_array();
    for (size_t i = 0; i < sizeof default_tools / sizeof *default_tools; i++)
        json_array_append_new(tools, json_pack("{s:s}", "name", default_tools[i]));

    bt_strbuf text = BT_STRBUF_INIT;
    if (*run->system)
        bt_strbuf_addf(&text, "%s\n\n", run->system);
    bt_strbuf_addstr(&text, run->prompt);
    if (*run->context)
        bt_strbuf_addf(&text, "\n\n%s", run->context);

    char wd[PATH_MAX];
    const char *workdir = realpath(run->workspace, wd) ? wd : run->workspace;
    json_t *body =
        json_pack("{s:s,s:{s:o,s:o},s:{s:s},s:{s:s,s:[{s:s,s:s%}],s:b},s:{s:s},s:I}",
                  "conversation_id", id, "agent", "llm", jllm, "tools", tools, "workspace",
                  "working_dir", workdir, "initial_message", "role", "user", "content", "type",
                  "text", "text", text.buf, text.len, "run", 1, "confirmation_policy", "kind",
                  "NeverConfirm", "max_iterations", (json_int_t)max_iterations);
    bt_strbuf_release(&text);
    char *s = body ? bt_json_dumps(body) : NULL;
    json_decref(body);
    return s;
}

static int oh_start(bt_agent_run *run, bt_error *err)
{
    bt_agent *a = run->agent;
    oh_agent *oa = a->impl;
    if (!a->env.http)
        return bt_errorf(err, BT_EUNAVAIL,
                         "agent '%s': the OpenHands adapter needs an HTTP client (none was set up)",
                         a->cfg.name);
    if (!*oa->base)
        return bt_errorf(err, BT_EUNAVAIL,
                         "agent '%s': OPENHANDS_RUNTIME_API_URL is not set (or set "
                         "agents.%s.base_url to the agent server's URL)",
                         a->cfg.name, a->cfg.name);
    const char *model = a->cfg.model && *a->cfg.model ? a->cfg.model
                        : a->env.cfg && a->env.cfg->llm.model && *a->env.cfg->llm.model
                            ? a->env.cfg->llm.model
                            : NULL;
    if (!model)
        return bt_errorf(err, BT_EINVAL,
                         "agent '%s': OpenHands needs a model: set agents.%s.model or LLM_MODEL "
                         "(e.g. anthropic/claude-sonnet-4-5)",
                         a->cfg.name, a->cfg.name);
    oh_run *oh = bt_xcalloc(1, sizeof *oh);
    oh->run = run;
    oh->oa = oa;
    uuid4(oh->id);
    char *body = create_body(run, oh->id, model);
    if (!body) {
        free(oh);
        return bt_errorf(err, BT_EINVAL, "agent '%s': the prompt cannot be sent as JSON",
                         a->cfg.name);
    }
    int rc = oh_send(oh, ST_CREATE, "POST", "/api/conversations", body, create_timeout_ms, err);
    free(body);
    if (rc < 0) {
        free(oh);
        bt_error_prefix(err, "agent '%s'", a->cfg.name);
        return rc;
    }
    run->impl = oh;
    bt_agent_run_set_model(run, model);
    uv_timer_init(a->env.loop, &oh->poll);
    uv_timer_init(a->env.loop, &oh->deadline);
    oh->poll.data = oh;
    oh->deadline.data = oh;
    uv_update_time(a->env.loop); /* the loop's cached time may be stale: time from now */
    uv_timer_start(&oh->deadline, deadline_fire, (uint64_t)run->timeout_ms, 0);
    return 0;
}

static void oh_cancel(bt_agent_run *run)
{
    oh_run *oh = run->impl;
    if (oh)
        stop_begin(oh); /* bt_agent_run_cancel recorded "cancelled" */
}

/* ---- check ---- */

typedef struct oh_check {
    bt_agent *agent;
    bt_agent_check_fn cb;
    void *ud;
    int stage; /* 0 /alive, 1 /health, 2 the conversation list (needs the key) */
    int alive;
} oh_check;

static int check_send(oh_check *c);

static void check_done(oh_check *c, int available, const char *detail)
{
    c->cb(c->agent, available, detail, c->ud);
    free(c);
}

static void check_http(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    oh_check *c = ud;
    const char *base = c->agent->cfg.base_url;
    char msg[1024];
    if (r->rc < 0) {
        snprintf(msg, sizeof msg, "cannot reach the OpenHands agent server: %s", r->error);
        check_done(c, 0, msg);
        return;
    }
    if (c->stage < 2) {
        if (is_2xx(r))
            c->alive = 1;
        c->stage = (r->status == 404 && c->stage == 0) ? 1 : 2;
    } else if (is_2xx(r) || (r->status == 404 && c->alive)) {
        snprintf(msg, sizeof msg, "OpenHands agent server at %s", base);
        check_done(c, 1, msg);
        return;
    } else if (r->status == 401 || r->status == 403) {
        snprintf(msg, sizeof msg,
                 "OpenHands rejected the session key (HTTP %ld from %s); set "
                 "OPENHANDS_RUNTIME_API_KEY to the server's SESSION_API_KEY",
                 r->status, base);
        check_done(c, 0, msg);
        return;
    } else {
        snprintf(msg, sizeof msg, "OpenHands agent server %s answered HTTP %ld", base, r->status);
        check_done(c, 0, msg);
        return;
    }
    if (check_send(c) < 0) {
        snprintf(msg, sizeof msg, "cannot query the OpenHands agent server at %s", base);
        bt_agent_check_later(c->agent, 0, msg, c->cb, c->ud);
        free(c);
    }
}

static int check_send(oh_check *c)
{
    static const char *const paths[] = {"/alive", "/health", "/api/conversations/search?limit=1"};
    oh_agent *oa = c->agent->impl;
    bt_strbuf url = BT_STRBUF_INIT;
    bt_strbuf_addf(&url, "%s%s", oa->base, paths[c->stage]);
    bt_http_request rq = {.url = url.buf,
                          .headers = oa->hdrs,
                          .timeout_ms = check_timeout_ms,
                          .connect_timeout_ms = check_timeout_ms,
                          .on_done = check_http,
                          .ud = c};
    int rc = bt_http_client_send(c->agent->env.http, &rq, NULL, NULL);
    bt_strbuf_release(&url);
    return rc;
}

static void oh_check_fn(bt_agent *a, bt_agent_check_fn cb, void *ud)
{
    oh_agent *oa = a->impl;
    if (!*oa->base) {
        bt_agent_check_later(a, 0, "OPENHANDS_RUNTIME_API_URL is not set", cb, ud);
        return;
    }
    if (!a->env.http) {
        bt_agent_check_later(a, 0, "no HTTP client to reach the OpenHands agent server", cb, ud);
        return;
    }
    oh_check *c = bt_xcalloc(1, sizeof *c);
    c->agent = a;
    c->cb = cb;
    c->ud = ud;
    if (check_send(c) < 0) {
        free(c);
        char msg[512];
        snprintf(msg, sizeof msg, "cannot query the OpenHands agent server at %s", oa->base);
        bt_agent_check_later(a, 0, msg, cb, ud);
    }
}

static void oh_free(bt_agent *a)
{
    oh_agent *oa = a->impl;
    if (!oa)
        return;
    free(oa->base);
    free(oa->key_header);
    free(oa);
    a->impl = NULL;
}

static const bt_agent_ops openhands_ops = {
    .type = "openhands",
    .writes_workspace = 1,
    .start = oh_start,
    .cancel = oh_cancel,
    .check = oh_check_fn,
    .free = oh_free,
};

int bt_openhands_agent_init(bt_agent *a, bt_error *err)
{
    (void)err;
    oh_agent *oa = bt_xcalloc(1, sizeof *oa);
    const char *base = a->cfg.base_url ? a->cfg.base_url : "";
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    oa->base = bt_xstrndup(base, n);
    size_t h = 0;
    oa->hdrs[h++] = "Accept: application/json";
    if (a->cfg.api_key && *a->cfg.api_key) {
        bt_strbuf sb = BT_STRBUF_INIT;
        bt_strbuf_addf(&sb, "X-Session-API-Key: %s", a->cfg.api_key);
        oa->key_header = bt_strbuf_detach(&sb, NULL);
        oa->hdrs[h++] = oa->key_header;
    }
    oa->hdrs[h] = NULL;
    a->impl = oa;
    a->ops = &openhands_ops;
    return 0;
}
