/*
 * ollama.c - the "ollama" agent: Ollama's native chat API. One turn is one POST
 * {base_url}/api/chat answered with NDJSON (one object a line): message.content pieces
 * -> output events as they arrive, message.tool_calls -> tool events, the done:true
 * line ends the turn with prompt_eval_count/eval_count as usage; an {"error":...}
 * line after the 200 fails it. A 404 "model not found" is permanent and says how to
 * pull the model. Advisory: it never touches the workspace. Retries, deadlines and
 * cancel are llm.c's.
 */
#include "agents/llm.h"

#include "base/json.h"
#include "base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_BASE "http://127.0.0.1:11434"

typedef struct ol_run {
    bt_llm_lines lines;
    bt_llm_turn *turn;
    bt_agent *agent;
} ol_run;

/* The base URL without a trailing "/v1" (that is Ollama's OpenAI-compatible face). */
static void base_url(const bt_agent *a, bt_strbuf *out, const char *path)
{
    const char *b = a->cfg.base_url && *a->cfg.base_url ? a->cfg.base_url : DEFAULT_BASE;
    bt_llm_url(out, b, "");
    if (bt_llm_base_ends_with(out->buf, "/v1"))
        bt_strbuf_setlen(out, out->len - 3);
    while (out->len && out->buf[out->len - 1] == '/')
        bt_strbuf_setlen(out, out->len - 1);
    bt_strbuf_addstr(out, path);
}

static void pull_hint(const bt_agent *a, bt_strbuf *msg)
{
    bt_strbuf_addf(msg, " (run `baton models pull %s`)", a->cfg.model);
}

static int on_line(const char *line, size_t len, void *ud)
{
    ol_run *o = ud;
    bt_llm_turn *t = o->turn;
    bt_agent_run *run = bt_llm_turn_run(t);
    json_t *j = json_loadb(line, len, 0, NULL);
    if (!json_is_object(j)) {
        bt_strbuf s = BT_STRBUF_INIT;
        bt_llm_snippet(&s, line, len, 120);
        bt_llm_turn_fail(t, BT_AGENT_PERMANENT, "malformed stream from %s: a line is not JSON: %s",
                         bt_llm_turn_url(t), s.buf);
        bt_strbuf_release(&s);
        json_decref(j);
        return 1;
    }
    const char *error = bt_json_str(j, "error", NULL);
    if (error) {
        bt_strbuf s = BT_STRBUF_INIT;
        bt_strbuf_addf(&s, "the stream from %s failed: %s", bt_llm_turn_url(t), error);
        bt_agent_error_class cls = BT_AGENT_TRANSIENT; /* the runner failed mid-answer */
        if (strstr(error, "not found")) {
            cls = BT_AGENT_PERMANENT;
            pull_hint(o->agent, &s);
        }
        bt_llm_turn_fail(t, cls, "%s", s.buf);
        bt_strbuf_release(&s);
        json_decref(j);
        return 1;
    }
    if (!run->model)
        bt_agent_run_set_model(run, bt_json_str(j, "model", NULL));
    const json_t *msg = json_object_get(j, "message");
    const char *text = bt_json_str(msg, "content", "");
    bt_llm_turn_text(t, text, strlen(text));
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, tc)
    {
        const json_t *fn = json_object_get(tc, "function");
        const json_t *args = json_object_get(fn, "arguments");
        char *detail = args ? bt_json_dumps(args) : bt_xstrdup("");
        bt_agent_run_tool(run, bt_json_str(fn, "name", "function"), detail);
        free(detail);
    }
    if (bt_json_bool(j, "done", 0)) {
        bt_llm_turn_usage(t, bt_json_int(j, "prompt_eval_count", 0),
                          bt_json_int(j, "eval_count", 0));
        if (strcmp(bt_json_str(j, "done_reason", ""), "length") == 0) {
            static const char note[] = "the model stopped at its output limit (num_predict)";
            bt_agent_run_emit(run, BT_AGENT_EV_STATUS, note, sizeof note - 1);
        }
        bt_llm_turn_complete(t);
    }
    json_decref(j);
    return 0;
}

static void ol_reset(bt_llm_turn *t, void *ud)
{
    ol_run *o = ud;
    o->turn = t;
    bt_llm_lines_reset(&o->lines);
}

static int ol_data(bt_llm_turn *t, const char *buf, size_t len, void *ud)
{
    ol_run *o = ud;
    return bt_llm_feed_result(t, bt_llm_lines_feed(&o->lines, buf, len), "a line");
}

static void ol_end(bt_llm_turn *t, void *ud)
{
    ol_run *o = ud;
    bt_llm_lines_finish(&o->lines);
    (void)t;
}

static void ol_http_error(bt_llm_turn *t, long status, const char *body, bt_agent_error_class *cls,
                          bt_strbuf *msg, void *ud)
{
    (void)t;
    ol_run *o = ud;
    if (status == 404 && body && strstr(body, "not found")) {
        *cls = BT_AGENT_PERMANENT;
        pull_hint(o->agent, msg);
    }
}

static void ol_free(void *ud)
{
    ol_run *o = ud;
    bt_llm_lines_release(&o->lines);
    free(o);
}

static const bt_llm_stream_ops stream_ops = {.reset = ol_reset,
                                             .data = ol_data,
                                             .end = ol_end,
                                             .http_error = ol_http_error,
                                             .free = ol_free};

static int ol_start(bt_agent_run *run, bt_error *err)
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
    json_t *body = json_pack("{s:s,s:o,s:b}", "model", a->cfg.model, "messages", msgs, "stream", 1);
    if (a->cfg.max_output > 0)
        json_object_set_new(body, "options",
                            json_pack("{s:I}", "num_predict", (json_int_t)a->cfg.max_output));
    char *text = bt_json_dumps(body);
    json_decref(body);
    base_url(a, &url, "/api/chat");
    static const char *const headers[] = {"Accept: application/x-ndjson", NULL};
    ol_run *o = bt_xcalloc(1, sizeof *o);
    o->agent = a;
    bt_llm_lines_init(&o->lines, 0, on_line, o);
    bt_llm_turn_request rq = {.url = url.buf,
                              .headers = headers,
                              .bearer_token =
                                  a->cfg.api_key && *a->cfg.api_key ? a->cfg.api_key : NULL,
                              .body = text,
                              .body_len = strlen(text),
                              .ops = &stream_ops,
                              .ud = o};
    int rc = bt_llm_turn_start(run, &rq, err);
    if (rc < 0)
        ol_free(o);
    free(text);
    bt_strbuf_release(&user);
    bt_strbuf_release(&url);
    return rc;
}

/* "qwen2.5-coder" names the same model as "qwen2.5-coder:latest". */
static int same_model(const char *have, const char *want)
{
    if (strcmp(have, want) == 0)
        return 1;
    size_t n = strlen(want);
    return !strchr(want, ':') && strncmp(have, want, n) == 0 && strcmp(have + n, ":latest") == 0;
}

static int judge_tags(bt_agent *a, const char *body, size_t len, bt_strbuf *detail)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const json_t *models = json_object_get(j, "models");
    int present = 0;
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m)
    {
        const char *name = bt_json_str(m, "name", bt_json_str(m, "model", ""));
        if (same_model(name, a->cfg.model))
            present = 1;
    }
    size_t n = json_array_size(models);
    if (present)
        bt_strbuf_addf(detail, "model %s present (%zu model%s pulled)", a->cfg.model, n,
                       n == 1 ? "" : "s");
    else
        bt_strbuf_addf(detail,
                       "model %s not pulled (run `baton models pull %s`); %zu model%s present",
                       a->cfg.model, a->cfg.model, n, n == 1 ? "" : "s");
    json_decref(j);
    return present;
}

static void ol_check(bt_agent *a, bt_agent_check_fn cb, void *ud)
{
    bt_strbuf url = BT_STRBUF_INIT;
    base_url(a, &url, "/api/tags");
    static const char *const headers[] = {"Accept: application/json", NULL};
    bt_llm_probe(a, url.buf, headers, NULL, judge_tags, cb, ud);
    bt_strbuf_release(&url);
}

static const bt_agent_ops ollama_ops = {
    .type = "ollama",
    .writes_workspace = 0,
    .start = ol_start,
    .cancel = bt_llm_turn_cancel,
    .check = ol_check,
};

int bt_ollama_agent_init(bt_agent *a, bt_error *err)
{
    int rc = bt_llm_require_model(a, "ollama", err);
    if (rc < 0)
        return rc;
    a->ops = &ollama_ops;
    return 0;
}
