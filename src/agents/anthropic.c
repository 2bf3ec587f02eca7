/*
 * anthropic.c - the "anthropic" agent: the Anthropic Messages API. One turn is one
 * streamed POST {base_url}/v1/messages (x-api-key, anthropic-version 2023-06-01,
 * max_tokens = the configured max_output or 4096, system = the role prompt). The named
 * SSE events drive it: text_delta -> output events as they arrive, tool_use blocks
 * (input_json_delta joined) -> tool events, usage = message_start's input_tokens plus
 * the final message_delta's cumulative output_tokens, message_stop ends the turn; an
 * `error` event after the 200 fails it (overloaded_error, api_error and
 * rate_limit_error are transient, others permanent). Advisory: it never touches the
 * workspace. Retries, deadlines and cancel are llm.c's.
 */
#include "agents/llm.h"

#include "base/json.h"
#include "base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BASE       "https://api.anthropic.com"
#define DEFAULT_MAX_TOKENS 4096
#define API_VERSION        "anthropic-version: 2023-06-01"

typedef struct an_block {
    int tool;
    bt_strbuf name, input;
} an_block;

typedef struct an_run {
    bt_llm_sse sse;
    bt_llm_turn *turn;
    an_block *blocks;
    size_t nblocks;
    int saw_event;
} an_run;

static const char *base_of(const bt_agent *a)
{
    return a->cfg.base_url && *a->cfg.base_url ? a->cfg.base_url : DEFAULT_BASE;
}

static const char *key_of(const bt_agent *a)
{
    return a->cfg.api_key && *a->cfg.api_key ? a->cfg.api_key : NULL;
}

/* {base}/v1/<path>, whether or not base already ends in /v1 */
static void api_url(const bt_agent *a, bt_strbuf *url, const char *path)
{
    bt_llm_url(url, base_of(a), bt_llm_base_ends_with(base_of(a), "/v1") ? "" : "/v1");
    bt_strbuf_addstr(url, path);
}

static void blocks_clear(an_run *o)
{
    for (size_t i = 0; i < o->nblocks; i++) {
        bt_strbuf_release(&o->blocks[i].name);
        bt_strbuf_release(&o->blocks[i].input);
    }
    free(o->blocks);
    o->blocks = NULL;
    o->nblocks = 0;
}

static an_block *block_at(an_run *o, const json_t *j)
{
    json_int_t idx = json_integer_value(json_object_get(j, "index"));
    if (idx < 0 || idx > 1023)
        return NULL;
    if ((size_t)idx >= o->nblocks) {
        o->blocks = bt_xrealloc(o->blocks, ((size_t)idx + 1) * sizeof *o->blocks);
        for (size_t i = o->nblocks; i <= (size_t)idx; i++) {
            o->blocks[i].tool = 0;
            bt_strbuf_init(&o->blocks[i].name, 0);
            bt_strbuf_init(&o->blocks[i].input, 0);
        }
        o->nblocks = (size_t)idx + 1;
    }
    return &o->blocks[idx];
}

static bt_agent_error_class stream_error_class(const char *type)
{
    static const char *const transient[] = {"overloaded_error", "api_error", "rate_limit_error"};
    for (size_t i = 0; type && i < sizeof transient / sizeof transient[0]; i++)
        if (strcmp(type, transient[i]) == 0)
            return BT_AGENT_TRANSIENT;
    return BT_AGENT_PERMANENT;
}

static int on_event(const char *event, const char *data, size_t len, void *ud)
{
    an_run *o = ud;
    bt_llm_turn *t = o->turn;
    bt_agent_run *run = bt_llm_turn_run(t);
    o->saw_event = 1;
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        bt_strbuf s = BT_STRBUF_INIT;
        bt_llm_snippet(&s, data, len, 120);
        bt_llm_turn_fail(t, BT_AGENT_PERMANENT,
                         "malformed stream from %s: the %s event is not JSON: %s",
                         bt_llm_turn_url(t), event, bt_strbuf_cstr(&s));
        bt_strbuf_release(&s);
        json_decref(j);
        return 1;
    }
    if (strcmp(event, "message") == 0) /* unnamed events: the type is in the data */
        event = bt_json_str(j, "type", "");
    int stop = 0;
    if (strcmp(event, "message_start") == 0) {
        const json_t *m = json_object_get(j, "message");
        bt_agent_run_set_model(run, json_string_value(json_object_get(m, "model")));
        const json_t *u = json_object_get(m, "usage");
        if (json_is_object(u))
            bt_llm_turn_usage(t, bt_json_int(u, "input_tokens", 0), -1);
    } else if (strcmp(event, "content_block_start") == 0) {
        an_block *b = block_at(o, j);
        const json_t *cb = json_object_get(j, "content_block");
        const char *type = bt_json_str(cb, "type", "");
        if (b && strcmp(type, "tool_use") == 0) {
            b->tool = 1;
            bt_strbuf_addstr(&b->name, bt_json_str(cb, "name", "tool"));
        } else if (strcmp(type, "text") == 0) {
            const char *text = bt_json_str(cb, "text", "");
            bt_llm_turn_text(t, text, strlen(text));
        }
    } else if (strcmp(event, "content_block_delta") == 0) {
        const json_t *d = json_object_get(j, "delta");
        const char *type = bt_json_str(d, "type", "");
        if (strcmp(type, "text_delta") == 0) {
            const char *text = bt_json_str(d, "text", "");
            bt_llm_turn_text(t, text, strlen(text));
        } else if (strcmp(type, "input_json_delta") == 0) {
            an_block *b = block_at(o, j);
            if (b)
                bt_strbuf_addstr(&b->input, bt_json_str(d, "partial_json", ""));
        }
    } else if (strcmp(event, "content_block_stop") == 0) {
        an_block *b = block_at(o, j);
        if (b && b->tool) {
            bt_agent_run_tool(run, b->name.buf, bt_strbuf_cstr(&b->input));
            b->tool = 0;
        }
    } else if (strcmp(event, "message_delta") == 0) {
        const json_t *u = json_object_get(j, "usage");
        if (json_is_object(u))
            bt_llm_turn_usage(t, bt_json_int(u, "input_tokens", -1),
                              bt_json_int(u, "output_tokens", -1));
        const char *why = bt_json_str(json_object_get(j, "delta"), "stop_reason", "");
        if (strcmp(why, "max_tokens") == 0) {
            static const char note[] = "the model stopped at its output limit (max_tokens)";
            bt_agent_run_emit(run, BT_AGENT_EV_STATUS, note, sizeof note - 1);
        }
    } else if (strcmp(event, "message_stop") == 0) {
        bt_llm_turn_complete(t);
    } else if (strcmp(event, "error") == 0) {
        const char *type = bt_json_str(json_object_get(j, "error"), "type", "");
        bt_strbuf s = BT_STRBUF_INIT;
        bt_llm_error_message(data, len, &s);
        bt_llm_turn_fail(t, stream_error_class(type), "the stream from %s failed: %s",
                         bt_llm_turn_url(t), s.buf);
        bt_strbuf_release(&s);
        stop = 1;
    } /* ping and event types we do not know are ignored */
    json_decref(j);
    return stop;
}

static void an_reset(bt_llm_turn *t, void *ud)
{
    an_run *o = ud;
    o->turn = t;
    bt_llm_sse_reset(&o->sse);
    blocks_clear(o);
    o->saw_event = 0;
}

static int an_data(bt_llm_turn *t, const char *buf, size_t len, void *ud)
{
    an_run *o = ud;
    return bt_llm_feed_result(t, bt_llm_sse_feed(&o->sse, buf, len), "an event");
}

static void an_end(bt_llm_turn *t, void *ud)
{
    an_run *o = ud;
    bt_llm_require_events(t, o->saw_event, "is base_url the API's address?");
}

static void an_free(void *ud)
{
    an_run *o = ud;
    bt_llm_sse_release(&o->sse);
    blocks_clear(o);
    free(o);
}

static const bt_llm_stream_ops stream_ops = {
    .reset = an_reset, .data = an_data, .end = an_end, .free = an_free};

static int an_start(bt_agent_run *run, bt_error *err)
{
    bt_agent *a = run->agent;
    if (!a->env.http)
        return bt_errorf(err, BT_EUNAVAIL, "agent '%s': no HTTP client", a->cfg.name);
    bt_strbuf user = BT_STRBUF_INIT, url = BT_STRBUF_INIT, key = BT_STRBUF_INIT;
    bt_llm_user_message(run, &user);
    json_t *body =
        json_pack("{s:s,s:I,s:[{s:s,s:s%}],s:b}", "model", a->cfg.model, "max_tokens",
                  (json_int_t)(a->cfg.max_output > 0 ? a->cfg.max_output : DEFAULT_MAX_TOKENS),
                  "messages", "role", "user", "content", user.buf, user.len, "stream", 1);
    if (*run->system)
        json_object_set_new(body, "system", json_string(run->system));
    char *text = bt_json_dumps(body);
    json_decref(body);
    api_url(a, &url, "/messages");
    const char *headers[4] = {API_VERSION, "Accept: text/event-stream", NULL, NULL};
    if (key_of(a)) {
        bt_strbuf_addf(&key, "x-api-key: %s", key_of(a));
        headers[2] = key.buf;
    }
    an_run *o = bt_xcalloc(1, sizeof *o);
    bt_llm_sse_init(&o->sse, 0, on_event, o);
    bt_llm_turn_request rq = {.url = url.buf,
                              .headers = headers,
                              .body = text,
                              .body_len = strlen(text),
                              .ops = &stream_ops,
                              .ud = o};
    int rc = bt_llm_turn_start(run, &rq, err);
    if (rc < 0)
        an_free(o);
    free(text);
    bt_strbuf_release(&user);
    bt_strbuf_release(&url);
    bt_strbuf_release(&key);
    return rc;
}

static int judge_models(bt_agent *a, const char *body, size_t len, bt_strbuf *detail)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const json_t *data = json_object_get(j, "data");
    if (!json_is_array(data)) {
        bt_strbuf_addf(detail, "%s answers (no model list)", base_of(a));
        json_decref(j);
        return 1;
    }
    int listed = 0;
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (id && strcmp(id, a->cfg.model) == 0)
            listed = 1;
    }
    bt_strbuf_addf(detail, "%s: %zu models; %s %s", base_of(a), json_array_size(data), a->cfg.model,
                   listed ? "listed" : "not listed");
    json_decref(j);
    return 1;
}

static void an_check(bt_agent *a, bt_agent_check_fn cb, void *ud)
{
    if (!a->env.http) {
        bt_agent_check_later(a, 0, "no HTTP client", cb, ud);
        return;
    }
    if (!key_of(a) && bt_llm_hosted(base_of(a))) {
        char msg[256];
        snprintf(msg, sizeof msg, "api key unset (set agents.%s.api_key or ANTHROPIC_API_KEY)",
                 a->cfg.name);
        bt_agent_check_later(a, 0, msg, cb, ud);
        return;
    }
    bt_strbuf url = BT_STRBUF_INIT, key = BT_STRBUF_INIT;
    api_url(a, &url, "/models");
    const char *headers[4] = {API_VERSION, "Accept: application/json", NULL, NULL};
    if (key_of(a)) {
        bt_strbuf_addf(&key, "x-api-key: %s", key_of(a));
        headers[2] = key.buf;
    }
    bt_llm_probe(a, url.buf, headers, NULL, judge_models, cb, ud);
    bt_strbuf_release(&url);
    bt_strbuf_release(&key);
}

static const bt_agent_ops anthropic_ops = {
    .type = "anthropic",
    .writes_workspace = 0,
    .start = an_start,
    .cancel = bt_llm_turn_cancel,
    .check = an_check,
};

int bt_anthropic_agent_init(bt_agent *a, bt_error *err)
{
    int rc = bt_llm_require_model(a, "anthropic", err);
    if (rc < 0)
        return rc;
    a->ops = &anthropic_ops;
    return 0;
}
