/*
 * test_openhands.c - the OpenHands adapter against a stateful fake agent server
 * (tests/fakes/openhands_server.py, a child process on loopback): a conversation runs
 * to "finished" with its messages as output, actions as tool events and agent errors
 * as stderr, the final answer as the output, cost and tokens from the stats; the
 * create request carries the LLM, tools, absolute working_dir, the whole prompt and
 * the session key; events page past 100; a wrong key fails permanently after one
 * request; error/stuck conversations fail with the right class; waiting for
 * confirmation is reported; cancel and the turn timeout pause and delete the
 * conversation; check reports reachability and key problems.
 */
#include "testutil.h"

#include "agents/agent.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "http/client.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char session_key[] = "sekrit-key";

typedef struct fixture {
    uv_loop_t loop;
    bt_http_client *http;
    pid_t server;
    int port;
    char base[64];
    char *dir; /* the workspace */
    bt_config cfg;
} fixture;

/* ---- the fake server ---- */

static void start_fake(fixture *f)
{
    const char *src = getenv("BATON_SOURCE_DIR");
    assert_non_null(src);
    char script[PATH_MAX];
    snprintf(script, sizeof script, "%s/tests/fakes/openhands_server.py", src);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", script, "--session-key", session_key, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *out = fdopen(fds[0], "r");
    char line[64] = "";
    if (!fgets(line, sizeof line, out) || sscanf(line, "PORT %d", &f->port) != 1)
        fail_msg("the fake OpenHands server did not start: '%s'", line);
    fclose(out);
    f->server = pid;
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d/", f->port);
}

static int setup(void **state)
{
    fixture *f = bt_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_new(&f->loop, NULL, &f->http, &err), 0);
    start_fake(f);
    f->dir = bt_test_tmpdir("openhands");
    f->cfg.llm.model = "anthropic/claude-sonnet-4-5";
    f->cfg.llm.api_key = "llm-key-123";
    f->cfg.llm.base_url = "https://llm.example.test/v1";
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    bt_http_client_close(f->http);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    kill(f->server, SIGTERM);
    waitpid(f->server, NULL, 0);
    bt_test_rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- a plain GET of the fake's control endpoint ---- */

typedef struct get_ctx {
    int done;
    json_t *body;
} get_ctx;

static void get_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    get_ctx *g = ud;
    g->done = 1;
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(bt_json_parse(r->body, r->body_len, 0, &g->body, NULL), 0);
}

/* Every request the fake saw (new reference). */
static json_t *fake_requests(fixture *f)
{
    char url[128];
    snprintf(url, sizeof url, "%s_control/requests", f->base);
    get_ctx g = {0};
    bt_http_request rq = {.url = url, .on_done = get_done, .ud = &g};
    assert_int_equal(bt_http_client_send(f->http, &rq, NULL, NULL), 0);
    while (!g.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    return g.body;
}

/* How many requests had this method and a path ending in suffix. */
static int count_requests(const json_t *reqs, const char *method, const char *suffix)
{
    int n = 0;
    size_t i;
    const json_t *r;
    json_array_foreach(reqs, i, r)
    {
        const char *p = bt_json_str(r, "path", "");
        size_t pl = strlen(p), sl = strlen(suffix);
        if (strcmp(bt_json_str(r, "method", ""), method) == 0 && pl >= sl &&
            strcmp(p + pl - sl, suffix) == 0)
            n++;
    }
    return n;
}

/* ---- runs ---- */

typedef struct outcome {
    int done, done_calls;
    int success;
    bt_agent_error_class cls;
    char *output, *error, *model;
    int64_t tokens_in, tokens_out;
    double cost;
    int cost_reported;
    long http_status;
    bt_strbuf trace; /* "kind[tool]:text" per event, one a line */
    int n_output, n_tool, n_stderr, n_usage, n_status;
    bt_agent_run *run;
    int cancel_on_tool; /* cancel from the first tool event */
    int events_after_done;
} outcome;

static void on_event(const bt_agent_event *e, void *ud)
{
    outcome *o = ud;
    if (o->done)
        o->events_after_done++;
    bt_strbuf_addstr(&o->trace, bt_agent_event_kind_name(e->kind));
    if (e->tool)
        bt_strbuf_addf(&o->trace, "[%s]", e->tool);
    if (e->kind == BT_AGENT_EV_USAGE)
        bt_strbuf_addf(&o->trace, ":%lld/%lld", (long long)e->tokens_in, (long long)e->tokens_out);
    else
        bt_strbuf_addf(&o->trace, ":%s", e->text);
    if (!o->trace.len || o->trace.buf[o->trace.len - 1] != '\n')
        bt_strbuf_addch(&o->trace, '\n');
    switch (e->kind) {
    case BT_AGENT_EV_OUTPUT:
        o->n_output++;
        break;
    case BT_AGENT_EV_TOOL:
        o->n_tool++;
        if (o->cancel_on_tool) {
            o->cancel_on_tool = 0;
            bt_agent_run_cancel(o->run);
        }
        break;
    case BT_AGENT_EV_STDERR:
        o->n_stderr++;
        break;
    case BT_AGENT_EV_USAGE:
        o->n_usage++;
        break;
    case BT_AGENT_EV_STATUS:
        o->n_status++;
        break;
    }
}

static void on_done(const bt_agent_result *r, void *ud)
{
    outcome *o = ud;
    o->done = 1;
    o->done_calls++;
    o->success = r->success;
    o->cls = r->error_class;
    o->output = bt_xstrdup(r->output);
    o->error = bt_xstrdup(r->error);
    o->model = bt_xstrdup(r->model);
    o->tokens_in = r->tokens_in;
    o->tokens_out = r->tokens_out;
    o->cost = r->cost_usd;
    o->cost_reported = r->cost_reported;
    o->http_status = r->http_status;
}

static void outcome_release(outcome *o)
{
    free(o->output);
    free(o->error);
    free(o->model);
    bt_strbuf_release(&o->trace);
    memset(o, 0, sizeof *o);
}

static bt_agent *make_agent(fixture *f, const char *base, const char *key, int with_http)
{
    bt_config_agent ac = {.name = "oh",
                          .type = BT_AGENT_OPENHANDS,
                          .base_url = (char *)base,
                          .api_key = (char *)key,
                          .timeout_ms = 60000};
    bt_agent_env env = {.loop = &f->loop, .http = with_http ? f->http : NULL, .cfg = &f->cfg};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    if (bt_agent_new(&env, &ac, &a, &err) < 0)
        fail_msg("bt_agent_new: %s", err.msg);
    return a;
}

static void run_agent(fixture *f, bt_agent *a, bt_agent_request *rq, outcome *o)
{
    rq->workspace = rq->workspace ? rq->workspace : f->dir;
    rq->on_event = on_event;
    rq->on_done = on_done;
    rq->ud = o;
    bt_error err = BT_ERROR_INIT;
    if (bt_agent_start(a, rq, &o->run, &err) < 0)
        fail_msg("bt_agent_start: %s", err.msg);
    assert_int_equal(o->done, 0);
    int64_t deadline = bt_time_mono_ms() + 20000;
    while (!o->done && bt_time_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(o->done);
    assert_int_equal(o->done_calls, 1);
    assert_int_equal(o->events_after_done, 0);
}

/* The conversation id baton chose (from the create request); "" when none arrived. */
static const char *created_id(const json_t *reqs)
{
    size_t i;
    const json_t *r;
    json_array_foreach(reqs, i, r) if (strcmp(bt_json_str(r, "method", ""), "POST") == 0 &&
                                       strcmp(bt_json_str(r, "path", ""), "/api/conversations") ==
                                           0) return bt_json_str(json_object_get(r, "body"),
                                                                 "conversation_id", "");
    return "";
}

/* ---- tests ---- */

static void test_success(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, f->base, session_key, 1);
    assert_string_equal(bt_agent_kind(a), "openhands");
    assert_true(bt_agent_writes_workspace(a));
    outcome o = {0};
    bt_agent_request rq = {.prompt = "fix the README typo",
                           .system = "You are a careful engineer.",
                           .context = "README.md line 3 says 'teh'."};
    run_agent(f, a, &rq, &o);
    if (!o.success)
        fail_msg("failed: %s", o.error);
    assert_int_equal(o.cls, BT_AGENT_OK);
    assert_string_equal(o.output, "Done: the README typo is fixed.");
    assert_int_equal(o.tokens_in, 2400);
    assert_int_equal(o.tokens_out, 310);
    assert_true(o.cost > 0.01249 && o.cost < 0.01251);
    assert_true(o.cost_reported);
    assert_string_equal(o.model, "anthropic/claude-sonnet-4-5");

    /* events: agent messages as output (not the user's), actions as tools, agent
     * errors as stderr, observations and unknown kinds skipped, in server order */
    const char *t = o.trace.buf;
    const char *m1 = strstr(t, "output:Let me look at the repository.\n");
    const char *t1 = strstr(t, "tool[TerminalTool]:ls -la\n");
    const char *u1 = strstr(t, "usage:1000/50\n");
    const char *t2 = strstr(t, "tool[FileEditorTool]:fix the typo in the README\n");
    const char *e1 = strstr(t, "stderr:FileEditorTool: old_str not found; retrying\n");
    const char *m2 = strstr(t, "output:I fixed the typo.\n");
    const char *u2 = strstr(t, "usage:2400/310\n");
    if (!m1 || !t1 || !u1 || !t2 || !e1 || !m2 || !u2)
        fail_msg("events missing:\n%s", t);
    assert_true(m1 < t1 && t1 < t2 && t2 < e1 && e1 < m2);
    assert_true(u1 < u2);
    assert_int_equal(o.n_output, 2);
    assert_int_equal(o.n_tool, 2);
    assert_int_equal(o.n_stderr, 1);
    assert_null(strstr(t, "fix the README typo")); /* the user's message is not output */
    assert_null(strstr(t, "README.md\n"));         /* nor the observation */
    outcome_release(&o);

    /* what went over the wire */
    json_t *reqs = fake_requests(f);
    size_t i;
    const json_t *r;
    json_array_foreach(reqs, i, r) if (strncmp(bt_json_str(r, "path", ""), "/api/", 5) == 0)
        assert_string_equal(bt_json_str(r, "session_key", ""), session_key);
    const json_t *create = NULL;
    json_array_foreach(reqs, i, r) if (strcmp(bt_json_str(r, "method", ""), "POST") == 0 &&
                                       strcmp(bt_json_str(r, "path", ""), "/api/conversations") ==
                                           0) create = json_object_get(r, "body");
    assert_non_null(create);
    const json_t *llm = json_object_get(json_object_get(create, "agent"), "llm");
    assert_string_equal(bt_json_str(llm, "model", ""), "anthropic/claude-sonnet-4-5");
    assert_string_equal(bt_json_str(llm, "api_key", ""), "llm-key-123");
    assert_string_equal(bt_json_str(llm, "base_url", ""), "https://llm.example.test/v1");
    assert_string_equal(bt_json_str(llm, "usage_id", ""), "agent");
    const json_t *tools = json_object_get(json_object_get(create, "agent"), "tools");
    assert_true(json_array_size(tools) >= 2);
    assert_string_equal(bt_json_str(json_array_get(tools, 0), "name", ""), "TerminalTool");
    assert_string_equal(bt_json_str(json_array_get(tools, 1), "name", ""), "FileEditorTool");
    char real[PATH_MAX];
    assert_non_null(realpath(f->dir, real));
    assert_string_equal(bt_json_str(json_object_get(create, "workspace"), "working_dir", ""), real);
    const json_t *msg = json_object_get(create, "initial_message");
    assert_string_equal(bt_json_str(msg, "role", ""), "user");
    assert_true(bt_json_bool(msg, "run", 0));
    const char *text = bt_json_str(json_array_get(json_object_get(msg, "content"), 0), "text", "");
    const char *ps = strstr(text, "You are a careful engineer.");
    const char *pp = strstr(text, "fix the README typo");
    const char *pc = strstr(text, "README.md line 3 says 'teh'.");
    assert_true(ps && pp && pc && ps < pp && pp < pc);
    assert_true(bt_json_int(create, "max_iterations", 0) > 0);
    assert_string_equal(created_id(reqs), bt_json_str(create, "conversation_id", "x"));
    assert_true(strlen(created_id(reqs)) == 36);
    assert_int_equal(count_requests(reqs, "GET", "/agent_final_response"), 1);
    assert_true(count_requests(reqs, "GET", "/events/search") >= 2);
    assert_int_equal(count_requests(reqs, "POST", "/pause"), 0);
    assert_int_equal(count_requests(reqs, "DELETE", created_id(reqs)), 0);
    json_decref(reqs);
    bt_agent_free(a);
}

static void test_many_events_page(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, f->base, session_key, 1);
    outcome o = {0};
    bt_agent_request rq = {.prompt = "say MANY things"};
    run_agent(f, a, &rq, &o);
    assert_true(o.success);
    /* 150 lines + 2 messages, each once, in order */
    assert_int_equal(o.n_output, 152);
    const char *l0 = strstr(o.trace.buf, "output:line 0\n");
    const char *l149 = strstr(o.trace.buf, "output:line 149\n");
    const char *last = strstr(o.trace.buf, "output:I fixed the typo.\n");
    assert_true(l0 && l149 && last && l0 < l149 && l149 < last);
    outcome_release(&o);
    json_t *reqs = fake_requests(f);
    size_t i;
    const json_t *r;
    int paged = 0;
    json_array_foreach(reqs, i, r)
    {
        const json_t *q = json_object_get(r, "query");
        if (bt_json_str(q, "page_id", NULL))
            paged++;
        if (strstr(bt_json_str(r, "path", ""), "/events/search"))
            assert_string_equal(bt_json_str(q, "limit", ""), "100");
    }
    assert_true(paged >= 1);
    json_decref(reqs);
    bt_agent_free(a);
}

static void test_wrong_key(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, f->base, "not-the-key", 1);
    outcome o = {0};
    bt_agent_request rq = {.prompt = "fix it"};
    run_agent(f, a, &rq, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_non_null(strstr(o.error, "OpenHands rejected the session key"));
    assert_int_equal(o.http_status, 401);
    outcome_release(&o);
    json_t *reqs = fake_requests(f);
    assert_int_equal(json_array_size(reqs), 1); /* one POST, no retry, no polling */
    json_decref(reqs);
    bt_agent_free(a);
}

/* Three conversations at once on one agent: error (transient), error with an
 * authentication cause (permanent), stuck (permanent). */
static void test_error_and_stuck(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *prompt;
        bt_agent_error_class cls;
        const char *needle;
    } cases[] = {
        {"please FAIL", BT_AGENT_TRANSIENT, "LLMServiceUnavailableError"},
        {"please AUTHFAIL", BT_AGENT_PERMANENT, "LLMAuthenticationError"},
        {"get STUCK", BT_AGENT_PERMANENT, "stuck"},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    bt_agent *a = make_agent(f, f->base, session_key, 1);
    outcome o[N];
    memset(o, 0, sizeof o);
    for (size_t i = 0; i < N; i++) {
        bt_agent_request rq = {.prompt = cases[i].prompt,
                               .workspace = f->dir,
                               .on_event = on_event,
                               .on_done = on_done,
                               .ud = &o[i]};
        bt_error err = BT_ERROR_INIT;
        assert_int_equal(bt_agent_start(a, &rq, &o[i].run, &err), 0);
    }
    int64_t deadline = bt_time_mono_ms() + 20000;
    while ((!o[0].done || !o[1].done || !o[2].done) && bt_time_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    for (size_t i = 0; i < N; i++) {
        assert_true(o[i].done);
        assert_false(o[i].success);
        if (o[i].cls != cases[i].cls || !strstr(o[i].error, cases[i].needle))
            fail_msg("%s: class %s, error '%s'", cases[i].prompt,
                     bt_agent_error_class_name(o[i].cls), o[i].error);
        /* what the agent said before failing is kept, usage too */
        assert_non_null(strstr(o[i].output, "Let me look at the repository."));
        assert_int_equal(o[i].tokens_in, 1000);
        outcome_release(&o[i]);
    }
    json_t *reqs = fake_requests(f);
    assert_int_equal(count_requests(reqs, "GET", "/agent_final_response"), 0);
    json_decref(reqs);
    bt_agent_free(a);
}

static void test_waiting_for_confirmation(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, f->base, session_key, 1);
    outcome o = {0};
    bt_agent_request rq = {.prompt = "CONFIRM before deleting"};
    run_agent(f, a, &rq, &o);
    assert_true(o.success);
    assert_int_equal(o.n_status, 1); /* reported once, though it lasted two polls */
    assert_non_null(strstr(o.trace.buf, "status:OpenHands conversation "));
    assert_non_null(strstr(o.trace.buf, "waiting for confirmation"));
    outcome_release(&o);
    bt_agent_free(a);
}

static void test_cancel_pauses_and_deletes(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, f->base, session_key, 1);
    outcome o = {.cancel_on_tool = 1};
    bt_agent_request rq = {.prompt = "SLOW work"};
    int64_t t0 = bt_time_mono_ms();
    run_agent(f, a, &rq, &o);
    assert_true(bt_time_mono_ms() - t0 < 5000);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_CANCELLED);
    outcome_release(&o);
    json_t *reqs = fake_requests(f);
    const char *id = created_id(reqs);
    char suffix[128];
    snprintf(suffix, sizeof suffix, "/api/conversations/%s/pause", id);
    assert_int_equal(count_requests(reqs, "POST", suffix), 1);
    snprintf(suffix, sizeof suffix, "/api/conversations/%s", id);
    assert_int_equal(count_requests(reqs, "DELETE", suffix), 1);
    json_decref(reqs);

    /* cancel at once, while the create is in flight: still cleaned up */
    bt_agent_request rq2 = {.prompt = "SLOW work",
                            .workspace = f->dir,
                            .on_event = on_event,
                            .on_done = on_done,
                            .ud = &o};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_start(a, &rq2, &o.run, &err), 0);
    bt_agent_run_cancel(o.run);
    assert_int_equal(o.done, 0); /* never inside cancel */
    while (!o.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(o.cls, BT_AGENT_CANCELLED);
    outcome_release(&o);
    reqs = fake_requests(f);
    assert_int_equal(count_requests(reqs, "POST", "/pause"), 2);
    /* every conversation that reached the server was deleted (baton chose its id, so
     * it can even when the create's answer never arrived) */
    size_t i;
    const json_t *r;
    json_array_foreach(reqs, i, r)
    {
        if (strcmp(bt_json_str(r, "method", ""), "POST") == 0 &&
            strcmp(bt_json_str(r, "path", ""), "/api/conversations") == 0) {
            const char *cid = bt_json_str(json_object_get(r, "body"), "conversation_id", "?");
            assert_int_equal(count_requests(reqs, "DELETE", cid), 1);
        }
    }
    json_decref(reqs);
    bt_agent_free(a);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, f->base, session_key, 1);
    outcome o = {0};
    bt_agent_request rq = {.prompt = "SLOW work", .timeout_ms = 700};
    int64_t t0 = bt_time_mono_ms();
    run_agent(f, a, &rq, &o);
    int64_t took = bt_time_mono_ms() - t0;
    assert_true(took >= 690 && took < 5000);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_TIMEOUT);
    assert_non_null(strstr(o.error, "turn timeout"));
    outcome_release(&o);
    json_t *reqs = fake_requests(f);
    assert_int_equal(count_requests(reqs, "POST", "/pause"), 1);
    assert_int_equal(count_requests(reqs, "DELETE", created_id(reqs)), 1);
    json_decref(reqs);
    bt_agent_free(a);
}

static void test_start_errors(void **state)
{
    fixture *f = *state;
    outcome o = {0};
    bt_agent_request rq = {.prompt = "p", .on_done = on_done, .ud = &o};
    bt_error err = BT_ERROR_INIT;

    bt_agent *a = make_agent(f, NULL, NULL, 1);
    assert_int_equal(bt_agent_start(a, &rq, NULL, &err), BT_EUNAVAIL);
    assert_non_null(strstr(err.msg, "OPENHANDS_RUNTIME_API_URL is not set"));
    bt_agent_free(a);

    a = make_agent(f, f->base, session_key, 0);
    assert_int_equal(bt_agent_start(a, &rq, NULL, &err), BT_EUNAVAIL);
    bt_agent_free(a);

    f->cfg.llm.model = NULL;
    a = make_agent(f, f->base, session_key, 1);
    assert_int_equal(bt_agent_start(a, &rq, NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "model"));
    bt_agent_free(a);
    f->cfg.llm.model = "anthropic/claude-sonnet-4-5";
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(o.done_calls, 0);

    /* nothing listening: transient */
    a = make_agent(f, "http://127.0.0.1:1", session_key, 1);
    bt_agent_request rq2 = {.prompt = "p"};
    run_agent(f, a, &rq2, &o);
    assert_int_equal(o.cls, BT_AGENT_TRANSIENT);
    outcome_release(&o);
    bt_agent_free(a);
}

typedef struct check_ctx {
    int done, available;
    char *detail;
} check_ctx;

static void check_cb(bt_agent *a, int available, const char *detail, void *ud)
{
    (void)a;
    check_ctx *c = ud;
    c->done = 1;
    c->available = available;
    c->detail = bt_xstrdup(detail);
}

static void run_check(fixture *f, const char *base, const char *key, int want, const char *needle)
{
    bt_agent *a = make_agent(f, base, key, 1);
    check_ctx c = {0};
    bt_agent_check(a, check_cb, &c);
    assert_int_equal(c.done, 0);
    while (!c.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    if (c.available != want || !strstr(c.detail, needle))
        fail_msg("check %s: available %d, '%s'", base ? base : "(none)", c.available, c.detail);
    free(c.detail);
    bt_agent_free(a);
}

static void test_check(void **state)
{
    fixture *f = *state;
    run_check(f, f->base, session_key, 1, "OpenHands agent server at");
    run_check(f, f->base, "wrong", 0, "rejected the session key");
    run_check(f, NULL, NULL, 0, "OPENHANDS_RUNTIME_API_URL is not set");
    run_check(f, "http://127.0.0.1:1", NULL, 0, "cannot reach");
    json_t *reqs = fake_requests(f);
    assert_true(count_requests(reqs, "GET", "/alive") >= 2);
    json_decref(reqs);
}

int main(void)
{
    bt_error err = BT_ERROR_INIT;
    if (bt_http_client_global_init(&err) < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_events_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_and_stuck, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_for_confirmation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_pauses_and_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bt_http_client_global_cleanup();
    return rc;
}
