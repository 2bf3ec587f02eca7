/*
 * openai.c - the "openai" agent: any OpenAI-compatible chat completions endpoint
 * (OpenAI, Grok, LocalAI, vLLM, llama.cpp, Ollama's /v1, gateways). One turn is one
 * streamed POST {base_url}/chat/completions (base_url ends in /v1 by convention):
 * text deltas become output events as they arrive, tool-call deltas are joined per
 * index and reported as tool events, usage comes from the include_usage chunk, and
 * `data: [DONE]` marks the end (a stream without it failed). Advisory: it returns text
 * and never touches the workspace. Retries, deadlines and cancel are llm.c's.
 */
#include "agents/llm.h"

#include "base/json.h"
#include "base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BASE "https://api.openai.com/v1"

typedef struct oa_tool {
    bt_strbuf name, args;
} oa_tool;

typedef struct oa_run {
    bt_llm_sse sse;
    bt_llm_turn *turn;
    oa_tool *tools;
    size_t ntools;
    int saw_event;
    int noted_length;
} oa_run;

static const char *base_of(const bt_agent *a)
{
    return a->cfg.base_url && *a->cfg.base_url ? a->cfg.base_url : DEFAULT_BASE;
}

static const char *key_of(const bt_agent *a)
{
    return a->cfg.api_key && *a->cfg.api_key ? a->cfg.api_key : NULL;
}

static void tools_clear(oa_run *o)
{
    for (size_t i = 0; i < o->ntools; i++) {
        bt_strbuf_release(&o->tools[i].name);
        bt_strbuf_release(&o->tools[i].args);
    }
    free(o->tools);
    o->tools = NULL;
    o->ntools = 0;
}

static void tools_flush(oa_run *o)
{
    bt_agent_run *run = bt_llm_turn_run(o->turn);
    for (size_t i = 0; i < o->ntools; i++)
        if (o->tools[i].name.len || o->tools[i].args.len)
            bt_agent_run_tool(run, o->tools[i].name.len ? o->tools[i].name.buf : "function",
                              bt_strbuf_cstr(&o->tools[i].args));
    tools_clear(o);
}

static void tool_delta(oa_run *o, const json_t *tc, size_t pos)
{
    json_int_t idx = json_is_integer(json_object_get(tc, "index"))
                         ? json_integer_value(json_object_get(tc, "index"))
                         : (json_int_t)pos;
    if (idx < 0 || idx > 255)
        return;
    if ((size_t)idx >= o->ntools) {
        o->tools = bt_xrealloc(o->tools, ((size_t)idx + 1) * sizeof *o->tools);
        for (size_t i = o->ntools; i <= (size_t)idx; i++) {
            bt_strbuf_init(&o->tools[i].name, 0);
            bt_strbuf_init(&o->tools[i].args, 0);
        }
        o->ntools = (size_t)idx + 1;
    }
    const json_t *fn = json_object_get(tc, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    if (name)
        bt_strbuf_addstr(&o->tools[idx].name, name);
    if (args)
        bt_strbuf_addstr(&o->tools[idx].args, args);
}

static int on_event(const char *event, const char *data, size_t len, void *ud)
{
    (void)event;
    oa_run *o = ud;
    bt_llm_turn *t = o->turn;
    bt_agent_run *run = bt_llm_turn_run(t);
    o->saw_event = 1;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        tools_flush(o);
        bt_llm_turn_complete(t);
        return 0;
    }
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        bt_strbuf s = BT_STRBUF_INIT;
        bt_llm_snippet(&s, data, len, 120);
        bt_llm_turn_fail(t, BT_AGENT_PERMANENT,
                         "malformed stream from %s: an event is not JSON: %s", bt_llm_turn_url(t),
                         bt_strbuf_cstr(&s));
        bt_strbuf_release(&s);
        json_decref(j);
        return 1;
    }
    const json_t *err = json_object_get(j, "error");
    if (err && !json_is_null(err)) {
        /* some servers (vLLM, llama.cpp) report a failure inside the stream */
        bt_strbuf s = BT_STRBUF_INIT;
        bt_llm_error_message(data, len, &s);
        json_int_t code = json_integer_value(json_object_get(err, "code"));
        bt_agent_error_class cls =
            code >= 400 ? bt_agent_http_class(0, (long)code, data) : BT_AGENT_TRANSIENT;
        bt_llm_turn_fail(t, cls, "the stream from %s reported an error: %s", bt_llm_turn_url(t),
                         bt_strbuf_cstr(&s));
        bt_strbuf_release(&s);
        json_decref(j);
        return 1;
    }
    if (!run->model)
        bt_agent_run_set_model(run, json_string_value(json_object_get(j, "model")));
    size_t i;
    json_t *choice;
    json_array_foreach(json_object_get(j, "choices"), i, choice)
    {
        const json_t *delta = json_object_get(choice, "delta");
        const char *text = json_string_value(json_object_get(delta, "content"));
        if (text)
            bt_llm_turn_text(t, text, strlen(text));
        size_t k;
        json_t *tc;
        json_array_foreach(json_object_get(delta, "tool_calls"), k, tc)
        {
            tool_delta(o, tc, k);
        }
        const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
        if (finish && strcmp(finish, "length") == 0 && !o->noted_length) {
            static const char note[] = "the model stopped at its output limit (max tokens)";
            o->noted_length = 1;
            bt_agent_run_emit(run, BT_AGENT_EV_STATUS, note, sizeof note - 1);
        }
    }
    const json_t *usage = json_object_get(j, "usage");
    if (json_is_object(usage))
        bt_llm_turn_usage(t, bt_json_int(usage, "prompt_tokens", 0),
                          bt_json_int(usage, "completion_tokens", 0));
    json_decref(j);
    return 0;
}

static void oa_reset(bt_llm_turn *t, void *ud)
{
    oa_run *o = ud;
    o->turn = t;
    bt_llm_sse_reset(&o->sse);
    tools_clear(o);
    o->saw_event = 0;
    o->noted_length = 0;
}

static int oa_data(bt_llm_turn *t, const char *buf, size_t len, void *ud)
{
    oa_run *o = ud;
    return bt_llm_feed_result(t, bt_llm_sse_feed(&o->sse, buf, len), "an event");
}

static void oa_end(bt_llm_turn *t, void *ud)
{
    oa_run *o = ud;
    bt_llm_require_events(t, o->saw_event, "is base_url the API's /v1 address?");
}

static void oa_free(void *ud)
{
    oa_run *o = ud;
    bt_llm_sse_release(&o->sse);
    tools_clear(o);
    free(o);
}

static const bt_llm_stream_ops stream_ops = {
    .reset = oa_reset, .data = oa_data, .end = oa_end, .free = oa_free};

static int oa_start(bt_agent_run *run, bt_error *err)
{
    bt_agent *a = run->agent;
    if (!a->env.http)
        return bt_errorf(err, BT_EUNAVAIL, "agent '%s': no HTTP client", a->cfg.name);
    bt_strbuf user = BT_STRBUF_INIT, url = BT_STRBUF_INIT;
    bt_llm_user_message(run, &user);
    json_t *msgs = json_array();
    if (*run->system)
        json_array_append_new(msgs,
                              json_pack("{s:s,s:s}", "role", "system", "content", run->system));
    json_array_append_new(msgs,
                          json_pack("{s:s,s:s%}", "role", "user", "content", user.buf, user.len));
    json_t *body = json_pack("{s:s,s:o,s:b,s:{s:b}}", "model", a->cfg.model ? a->cfg.model : "",
                             "messages", msgs, "stream", 1, "stream_options", "include_usage", 1);
    if (a->cfg.max_output > 0)
        /* OpenAI's newer models refuse max_tokens; compatible servers know only it */
        json_object_set_new(
            body, strstr(base_of(a), "api.openai.com") ? "max_completion_tokens" : "max_tokens",
            json_integer(a->cfg.max_output));
    char *text = bt_json_dumps(body);
    json_decref(body);
    bt_llm_url(&url, base_of(a), "/chat/completions");
    static const char *const headers[] = {"Accept: text/event-stream", NULL};
    oa_run *o = bt_xcalloc(1, sizeof *o);
    bt_llm_sse_init(&o->sse, 0, on_event, o);
    bt_llm_turn_request rq = {.url = url.buf,
                              .headers = headers,
                              .bearer_token = key_of(a),
                              .body = text,
                              .body_len = strlen(text),
                              .ops = &stream_ops,
                              .ud = o};
    int rc = bt_llm_turn_start(run, &rq, err);
    if (rc < 0)
        oa_free(o);
    free(text);
    bt_strbuf_release(&user);
    bt_strbuf_release(&url);
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
        if (id && a->cfg.model && strcmp(id, a->cfg.model) == 0)
            listed = 1;
    }
    bt_strbuf_addf(detail, "%s: %zu models; %s %s", base_of(a), json_array_size(data),
                   a->cfg.model ? a->cfg.model : "(no model)", listed ? "listed" : "not listed");
    json_decref(j);
    return 1;
}

static void oa_check(bt_agent *a, bt_agent_check_fn cb, void *ud)
{
    if (!a->env.http) {
        bt_agent_check_later(a, 0, "no HTTP client", cb, ud);
        return;
    }
    if (!key_of(a) && bt_llm_hosted(base_of(a))) {
        char msg[256];
        snprintf(msg, sizeof msg, "api key unset (set agents.%s.api_key or %s)", a->cfg.name,
                 strstr(base_of(a), "x.ai") ? "GROK_API_KEY" : "OPENAI_API_KEY");
        bt_agent_check_later(a, 0, msg, cb, ud);
        return;
    }
    bt_strbuf url = BT_STRBUF_INIT;
    bt_llm_url(&url, base_of(a), "/models");
    static const char *const headers[] = {"Accept: application/json", NULL};
    bt_llm_probe(a, url.buf, headers, key_of(a), judge_models, cb, ud);
    bt_strbuf_release(&url);
}

static const bt_agent_ops openai_ops = {
    .type = "openai",
    .writes_workspace = 0,
    .start = oa_start,
    .cancel = bt_llm_turn_cancel,
    .check = oa_check,
};

int bt_openai_agent_init(bt_agent *a, bt_error *err)
{
    int rc = bt_llm_require_model(a, "openai", err);
    if (rc < 0)
        return rc;
    a->ops = &openai_ops;
    return 0;
}
