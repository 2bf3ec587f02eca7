/*
 * test_resilience.c - the resilience wrapper (src/core/resilience.c) driving REAL agents
 * on a real libuv loop: CLI agents that are small shell scripts written into a temp dir
 * (one kills itself with SIGKILL = transient, one prints an error and exits 1 =
 * permanent, two answer with their working directory), and OpenAI-type agents against
 * tests/fakes/llm_server.py, whose request log shows exactly which calls reached it.
 *
 *   - fallback: a crashing primary CLI hands the call to an HTTP agent and to a CLI
 *     that runs in the same workspace; a 401 of the primary never reaches the fallback;
 *     both failing names both agents' errors;
 *   - breaker: opens after the configured 3 failures, then rejects without calling the
 *     agent, half-opens after recovery_timeout (injected clock), lets exactly one of
 *     three concurrent calls probe, closes on the probe's success, reopens on its
 *     failure; a cancelled probe is not a failure;
 *   - rate limits: a provider allowing 10 requests per 800 ms gets 50 calls; no window
 *     of the start times the agent recorded holds more than 10 and all 50 complete; a 429's
 * Retry-After holds the next call back, reported through on_status; a queued call that is cancelled
 * ends cancelled at once;
 *   - statistics and persistence through a real SQLite store: agent.call and
 *     agent.breaker events, success rates and latency, and a new wrapper loading them
 *     back with the breaker restored open (and old rows pruned);
 *   - offline: remote agents are skipped, a local one answers.
 */
#include "testutil.h"

#include "agents/agents.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "core/resilience.h"
#include "http/client.h"
#include "store/store.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------
 * Fixture: a loop, an HTTP client, the fake LLM server, scripts, agents, a resil.
 */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t tick;
    bt_http_client *http;
    bt_test_fake fake;
    char base[64];
    char *dir, *ws;
    bt_config *cfg;
    bt_agents *agents;
    bt_store *store;
    bt_resil *rs;
    int64_t fake_now; /* 0: the wall clock */
} fx;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static int64_t clock_cb(void *ud)
{
    fx *f = ud;
    return f->fake_now ? f->fake_now : bt_time_wall_ms();
}

static void wait_flag(fx *f, const int *flag, int64_t ms, const char *what)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (!*flag && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    if (!*flag)
        fail_msg("timed out after %lld ms waiting for %s", (long long)ms, what);
}

static void spin(fx *f, int64_t ms)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
}

static void script_file(fx *f, const char *name, const char *body)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "#!/bin/sh\nD='%s'\n%s", f->dir, body);
    char *p = bt_test_write(f->dir, name, sb.buf);
    assert_int_equal(chmod(p, 0755), 0);
    free(p);
    bt_strbuf_release(&sb);
}

static const char config_tmpl[] =
    "log: {level: error}\n"
    "resilience:\n"
    "  circuit_breaker: {failure_threshold: 3, recovery_timeout: 10s}\n"
    "providers:\n"
    "  burst: {requests: 10, per: 800ms}\n"
    "  slow: {requests: 1, per: 5s}\n"
    "agents:\n"
    "  crasher: {type: cli, command: %1$s/crash.sh}\n"
    "  failer: {type: cli, command: %1$s/fail.sh}\n"
    "  answerer: {type: cli, command: %1$s/answer.sh}\n"
    "  localcli: {type: cli, command: %1$s/answer.sh, local: true}\n"
    "  llm: {type: openai, base_url: '%2$s/v1', model: m-primary, api_key: sk-test,"
    " provider: fakeai}\n"
    "  backup: {type: openai, base_url: '%2$s/v1', model: m-backup, api_key: sk-test,"
    " provider: fakeai}\n"
    "  burster: {type: cli, command: %1$s/burst.sh, provider: burst}\n"
    "  ra: {type: openai, base_url: '%2$s/v1', model: m-ra, api_key: sk-test,"
    " provider: retry}\n"
    "  slowpoke: {type: openai, base_url: '%2$s/v1', model: m-slow, api_key: sk-test,"
    " provider: slow}\n";

static int setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    bt_test_fake_start(&f->fake, "llm_server.py");
    snprintf(f->base, sizeof f->base, "%s", f->fake.base);

    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_new(&f->loop, NULL, &f->http, &err), 0);

    f->dir = bt_test_tmpdir("resil");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/ws", f->dir);
    f->ws = bt_strbuf_detach(&sb, NULL);
    assert_int_equal(mkdir(f->ws, 0755), 0);
    script_file(f, "crash.sh",
                "pwd > \"$D/crasher.pwd\"\necho x >> \"$D/crasher.calls\"\n"
                "kill -9 $$\n");
    script_file(f, "fail.sh",
                "echo x >> \"$D/failer.calls\"\n"
                "echo 'error: this task cannot be done here' >&2\nexit 1\n");
    script_file(f, "burst.sh", "date +%s.%N >> \"$D/burst.starts\"\necho ok\n");
    script_file(f, "answer.sh", "echo x >> \"$D/answer.calls\"\necho \"answer from $(pwd)\"\n");

    char *yaml = NULL;
    assert_true(asprintf(&yaml, config_tmpl, f->dir, f->base) > 0);
    bt_config_problems probs = {0};
    if (bt_config_load_string("test.yaml", yaml, strlen(yaml), NULL, &f->cfg, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("config: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    free(yaml);
    bt_agent_env aenv = {.loop = &f->loop, .http = f->http, .cfg = f->cfg};
    f->agents = bt_agents_new(&aenv);
    *state = f;
    return 0;
}

static bt_resil *new_resil_ro(fx *f, int read_only)
{
    bt_resil_env env = {.loop = &f->loop,
                        .agents = f->agents,
                        .cfg = f->cfg,
                        .store = f->store,
                        .now_ms = clock_cb,
                        .now_ud = f,
                        .read_only = read_only};
    bt_resil *rs = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_resil_new(&env, &rs, &err), 0);
    return rs;
}

static bt_resil *new_resil(fx *f)
{
    return new_resil_ro(f, 0);
}

static void open_store(fx *f)
{
    char url[4200];
    snprintf(url, sizeof url, "sqlite:%s/store.db", f->dir);
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&f->loop, url, NULL, &f->store, &err) < 0)
        fail_msg("store: %s", err.msg);
}

static int teardown(void **state)
{
    fx *f = *state;
    spin(f, 20);
    bt_resil_free(f->rs);
    bt_agents_free(f->agents);
    bt_http_client_close(f->http);
    if (f->store)
        bt_store_close(f->store);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_config_free(f->cfg);
    bt_test_fake_stop(&f->fake);
    free(f->ws);
    bt_test_rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- the fake's control API ---- */

static json_t *ctl(fx *f, const char *method, const char *path, const char *body)
{
    return bt_test_ctl(&f->loop, f->http, f->base, method, path, body);
}

static void script(fx *f, const char *actions)
{
    bt_strbuf b = BT_STRBUF_INIT;
    bt_strbuf_addf(&b, "{\"path\":\"/v1/chat/completions\",\"actions\":%s}", actions);
    json_decref(ctl(f, "POST", "/_control/script", b.buf));
    bt_strbuf_release(&b);
}

/* The chat requests for model (new reference, an array of log entries). */
static json_t *requests_for(fx *f, const char *model)
{
    json_t *all = ctl(f, "GET", "/_control/requests", NULL);
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        if (strcmp(bt_json_str(r, "path", ""), "/v1/chat/completions") == 0 &&
            strcmp(bt_json_str(json_object_get(r, "body"), "model", ""), model) == 0)
            json_array_append(out, r);
    }
    json_decref(all);
    return out;
}

static size_t count_for(fx *f, const char *model)
{
    json_t *a = requests_for(f, model);
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

/* Lines in DIR/name (0 when it does not exist): how often a script ran. */
static int file_lines(fx *f, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    FILE *fp = fopen(p, "r");
    if (!fp)
        return 0;
    int n = 0, ch;
    while ((ch = fgetc(fp)) != EOF)
        n += ch == '\n';
    fclose(fp);
    return n;
}

/* ---- one call and what came back ---- */

#define MAXATT 8

typedef struct out {
    int done, success;
    bt_agent_error_class cls;
    char *error, *agent, *fallback_from, *output;
    size_t natt;
    char att_agent[MAXATT][32], att_outcome[MAXATT][16], att_class[MAXATT][16];
    int64_t att_waited[MAXATT];
    int n_fallback, n_rate, n_rejected, n_skipped;
    int64_t wait_ms;
    char limit[64], fb_from[32], fb_to[32];
    int cancel_on_rate;
    bt_resil_call *call;
} out;

static void on_status(const char *kind, const json_t *data, void *ud)
{
    out *o = ud;
    assert_false(o->done);
    if (strcmp(kind, "fallback") == 0) {
        if (!o->n_fallback++) {
            snprintf(o->fb_from, sizeof o->fb_from, "%s", bt_json_str(data, "from", ""));
            snprintf(o->fb_to, sizeof o->fb_to, "%s", bt_json_str(data, "to", ""));
        }
        assert_true(*bt_json_str(data, "reason", ""));
    } else if (strcmp(kind, "rate_limited") == 0) {
        o->n_rate++;
        o->wait_ms = bt_json_int(data, "wait_ms", -1);
        snprintf(o->limit, sizeof o->limit, "%s", bt_json_str(data, "limit", ""));
        assert_true(*bt_json_str(data, "provider", ""));
        if (o->cancel_on_rate)
            bt_resil_call_cancel(o->call);
    } else if (strcmp(kind, "rejected") == 0) {
        o->n_rejected++;
        assert_true(*bt_json_str(data, "state", ""));
    } else if (strcmp(kind, "skipped") == 0) {
        o->n_skipped++;
    } else {
        fail_msg("unknown status kind %s", kind);
    }
}

static void on_done(const bt_resil_result *r, void *ud)
{
    out *o = ud;
    assert_false(o->done);
    o->done = 1;
    o->success = r->success;
    o->cls = r->error_class;
    o->error = bt_xstrdup(r->error);
    o->agent = bt_xstrdup(r->agent);
    o->fallback_from = bt_xstrdup(r->fallback_from);
    o->output = r->agent_result ? bt_xstrdup(r->agent_result->output) : NULL;
    assert_true(r->nattempts <= MAXATT);
    o->natt = r->nattempts;
    for (size_t i = 0; i < r->nattempts; i++) {
        snprintf(o->att_agent[i], 32, "%s", r->attempts[i].agent);
        snprintf(o->att_outcome[i], 16, "%s", r->attempts[i].outcome);
        snprintf(o->att_class[i], 16, "%s",
                 r->attempts[i].error_class ? r->attempts[i].error_class : "-");
        o->att_waited[i] = r->attempts[i].waited_ms;
    }
    if (r->success) {
        assert_string_equal(r->error, "");
        assert_non_null(r->agent_result);
    }
}

static void out_release(out *o)
{
    free(o->error);
    free(o->agent);
    free(o->fallback_from);
    free(o->output);
    memset(o, 0, sizeof *o);
}

/* Start a call over the chain (NULL-terminated names). */
static void start(fx *f, out *o, int64_t timeout_ms, const char *const *chain)
{
    size_t n = 0;
    while (chain[n])
        n++;
    bt_resil_request rq = {.chain = chain,
                           .nchain = n,
                           .agent = {.prompt = "fix the bug",
                                     .workspace = f->ws,
                                     .timeout_ms = timeout_ms ? timeout_ms : 20000},
                           .task_id = "01TESTTASK0000000000000000",
                           .on_status = on_status,
                           .on_done = on_done,
                           .ud = o};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_resil_call_start(f->rs, &rq, &o->call, &err), 0);
    assert_false(o->done); /* never inside call_start */
}

static void call(fx *f, out *o, const char *const *chain)
{
    start(f, o, 0, chain);
    wait_flag(f, &o->done, 20000, "the call");
}

static const char *breaker_of(fx *f, const char *agent)
{
    bt_resil_health h;
    assert_int_equal(bt_resil_health_of(f->rs, agent, &h), 0);
    return h.breaker;
}

/* ---------------------------------------------------------------------------------
 * Fallback
 */

static void test_crash_falls_back(void **state)
{
    fx *f = *state;
    f->rs = new_resil(f);
    script(f, "[{\"reply\":\"patched by the backup\"}]");
    out o = {0};
    call(f, &o, (const char *const[]){"crasher", "llm", NULL});
    assert_true(o.success);
    assert_string_equal(o.agent, "llm");
    assert_string_equal(o.fallback_from, "crasher");
    assert_string_equal(o.output, "patched by the backup");
    assert_int_equal(o.natt, 2);
    assert_string_equal(o.att_agent[0], "crasher");
    assert_string_equal(o.att_outcome[0], "failure");
    assert_string_equal(o.att_class[0], "transient");
    assert_string_equal(o.att_outcome[1], "success");
    assert_int_equal(o.n_fallback, 1);
    assert_string_equal(o.fb_from, "crasher");
    assert_string_equal(o.fb_to, "llm");
    assert_int_equal(count_for(f, "m-primary"), 1);
    /* the crashing CLI ran in the request's workspace */
    char p[4200];
    snprintf(p, sizeof p, "%s/crasher.pwd", f->dir);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    char line[4200] = "";
    assert_non_null(fgets(line, sizeof line, fp));
    fclose(fp);
    line[strcspn(line, "\n")] = 0;
    assert_string_equal(line, f->ws);
    out_release(&o);

    /* a CLI fallback works in that same workspace */
    call(f, &o, (const char *const[]){"crasher", "answerer", NULL});
    assert_true(o.success);
    assert_string_equal(o.agent, "answerer");
    assert_string_equal(o.fallback_from, "crasher");
    char want[4300];
    snprintf(want, sizeof want, "answer from %s\n", f->ws);
    assert_string_equal(o.output, want);
    out_release(&o);

    /* the primary answering: no fallback_from, one attempt */
    call(f, &o, (const char *const[]){"answerer", "llm", NULL});
    assert_true(o.success);
    assert_string_equal(o.agent, "answerer");
    assert_null(o.fallback_from);
    assert_int_equal(o.natt, 1);
    assert_int_equal(o.n_fallback, 0);
    out_release(&o);
}

static void test_permanent_does_not_fall_back(void **state)
{
    fx *f = *state;
    f->rs = new_resil(f);
    script(f, "[{\"status\":401}]");
    out o = {0};
    call(f, &o, (const char *const[]){"llm", "backup", NULL});
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_int_equal(o.natt, 1);
    assert_string_equal(o.agent, "llm");
    assert_non_null(strstr(o.error, "401"));
    assert_int_equal(count_for(f, "m-primary"), 1);
    assert_int_equal(count_for(f, "m-backup"), 0); /* the fallback was never called */
    out_release(&o);

    /* a CLI reporting an error is permanent too */
    call(f, &o, (const char *const[]){"failer", "backup", NULL});
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_PERMANENT);
    assert_non_null(strstr(o.error, "cannot be done here"));
    assert_int_equal(count_for(f, "m-backup"), 0);
    out_release(&o);

    /* both failing: transient then permanent - the error names both */
    call(f, &o, (const char *const[]){"crasher", "failer", NULL});
    assert_false(o.success);
    assert_int_equal(o.natt, 2);
    assert_non_null(strstr(o.error, "crasher: "));
    assert_non_null(strstr(o.error, "signal"));
    assert_non_null(strstr(o.error, "; failer: "));
    assert_non_null(strstr(o.error, "cannot be done here"));
    assert_int_equal(o.cls, BT_AGENT_TRANSIENT);
    assert_string_equal(o.agent, "failer");
    assert_string_equal(o.fallback_from, "crasher");
    assert_int_equal(file_lines(f, "failer.calls"), 2);
    out_release(&o);

    /* an agent that is not configured is skipped, the next one answers */
    call(f, &o, (const char *const[]){"nosuch", "answerer", NULL});
    assert_true(o.success);
    assert_int_equal(o.n_skipped, 1);
    assert_string_equal(o.att_outcome[0], "skipped");
    out_release(&o);

    /* bad requests fail at once, with no callback */
    bt_resil_request rq = {.chain = (const char *const[]){"llm"}, .nchain = 0, .on_done = on_done};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_resil_call_start(f->rs, &rq, NULL, &err), BT_EINVAL);
    rq.nchain = 1;
    assert_int_equal(bt_resil_call_start(f->rs, &rq, NULL, &err), BT_EINVAL); /* no prompt */
    assert_non_null(strstr(err.msg, "prompt"));
    assert_int_equal(bt_resil_health_of(f->rs, "nosuch", &(bt_resil_health){0}), BT_ENOENT);
    assert_null(bt_resil_agent_json(f->rs, "nosuch"));
}

/* ---------------------------------------------------------------------------------
 * Circuit breaker
 */

static void fail_llm(fx *f, int n)
{
    for (int i = 0; i < n; i++) {
        script(f, "[{\"status\":401}]");
        out o = {0};
        call(f, &o, (const char *const[]){"llm", "answerer", NULL});
        assert_false(o.success);
        assert_string_equal(o.att_outcome[0], "failure");
        out_release(&o);
    }
}

static void test_breaker(void **state)
{
    fx *f = *state;
    f->fake_now = 1700000000000;
    f->rs = new_resil(f);
    fail_llm(f, 2);
    assert_string_equal(breaker_of(f, "llm"), "closed");
    fail_llm(f, 1); /* the third consecutive failure opens it */
    assert_string_equal(breaker_of(f, "llm"), "open");
    assert_int_equal(count_for(f, "m-primary"), 3);

    /* open: rejected without calling it; the fallback answers */
    out o = {0};
    call(f, &o, (const char *const[]){"llm", "answerer", NULL});
    assert_true(o.success);
    assert_string_equal(o.agent, "answerer");
    assert_string_equal(o.fallback_from, "llm");
    assert_string_equal(o.att_outcome[0], "rejected");
    assert_int_equal(o.n_rejected, 1);
    assert_int_equal(count_for(f, "m-primary"), 3);
    out_release(&o);
    /* alone in its chain it fails at once, transient */
    call(f, &o, (const char *const[]){"llm", NULL});
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_TRANSIENT);
    assert_non_null(strstr(o.error, "circuit breaker open"));
    out_release(&o);
    json_t *j = bt_resil_agent_json(f->rs, "llm");
    assert_string_equal(bt_json_str(json_object_get(j, "breaker"), "state", ""), "open");
    assert_int_equal(bt_json_int(json_object_get(j, "breaker"), "retry_at", 0),
                     1700000000000 + 10000);
    json_decref(j);

    /* after recovery_timeout: half-open, exactly one of three concurrent calls probes */
    f->fake_now += 9999;
    assert_string_equal(breaker_of(f, "llm"), "open");
    f->fake_now += 1;
    assert_string_equal(breaker_of(f, "llm"), "half_open");
    script(f, "[{\"reply\":\"probe ok\",\"chunk_delay_ms\":50}]");
    out c[3] = {{0}};
    for (int i = 0; i < 3; i++)
        start(f, &c[i], 0, (const char *const[]){"llm", "answerer", NULL});
    for (int i = 0; i < 3; i++)
        wait_flag(f, &c[i].done, 20000, "concurrent calls");
    int probes = 0, rejected = 0;
    for (int i = 0; i < 3; i++) {
        assert_true(c[i].success);
        if (strcmp(c[i].agent, "llm") == 0) {
            probes++;
            assert_string_equal(c[i].output, "probe ok");
        } else {
            rejected++;
            assert_string_equal(c[i].att_outcome[0], "rejected");
        }
        out_release(&c[i]);
    }
    assert_int_equal(probes, 1);
    assert_int_equal(rejected, 2);
    assert_int_equal(count_for(f, "m-primary"), 4);
    assert_string_equal(breaker_of(f, "llm"), "closed"); /* the probe succeeded */
    call(f, &o, (const char *const[]){"llm", NULL});
    assert_true(o.success);
    out_release(&o);

    /* open again; a failing probe reopens it with a fresh timeout */
    fail_llm(f, 3);
    assert_string_equal(breaker_of(f, "llm"), "open");
    f->fake_now += 10000;
    fail_llm(f, 1); /* the probe */
    assert_string_equal(breaker_of(f, "llm"), "open");
    size_t before = count_for(f, "m-primary");
    call(f, &o, (const char *const[]){"llm", "answerer", NULL});
    assert_string_equal(o.att_outcome[0], "rejected");
    out_release(&o);
    assert_int_equal(count_for(f, "m-primary"), before);

    /* a cancelled probe is not a failure: still half-open, the next call probes */
    f->fake_now += 10000;
    script(f, "[{\"hang\":true}]");
    start(f, &o, 0, (const char *const[]){"llm", "answerer", NULL});
    for (int i = 0; i < 400 && count_for(f, "m-primary") == before; i++)
        spin(f, 10);
    assert_int_equal(count_for(f, "m-primary"), before + 1);
    bt_resil_call_cancel(o.call);
    assert_false(o.done); /* never inside cancel */
    wait_flag(f, &o.done, 10000, "the cancelled probe");
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_CANCELLED);
    assert_string_equal(o.att_outcome[0], "cancelled");
    assert_int_equal(file_lines(f, "answer.calls"), 4); /* no fallback after a cancel */
    out_release(&o);
    assert_string_equal(breaker_of(f, "llm"), "half_open");
    call(f, &o, (const char *const[]){"llm", NULL});
    assert_true(o.success);
    out_release(&o);
    assert_string_equal(breaker_of(f, "llm"), "closed");
}

/* ---------------------------------------------------------------------------------
 * Rate limits
 */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_burst_of_fifty(void **state)
{
    fx *f = *state;
    f->rs = new_resil(f);
    enum { N = 50 };
    out *o = bt_xcalloc(N, sizeof *o);
    for (int i = 0; i < N; i++)
        start(f, &o[i], 0, (const char *const[]){"burster", NULL});
    int waited = 0;
    for (int i = 0; i < N; i++) {
        wait_flag(f, &o[i].done, 20000, "the burst");
        assert_true(o[i].success);
        if (o[i].n_rate) {
            waited++;
            assert_true(o[i].wait_ms > 0);
            assert_true(o[i].att_waited[0] > 0);
        }
        out_release(&o[i]);
    }
    free(o);
    assert_int_equal(waited, N - 10); /* the first ten went at once */
    /* the start times as the agent itself saw them (a loopback server's accept backlog
     * can hold a burst of new connections back by a SYN retransmit, so the fake's own
     * log is not where to measure a limiter) */
    char p[4200];
    snprintf(p, sizeof p, "%s/burst.starts", f->dir);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    double t[N];
    int n = 0;
    while (n < N && fscanf(fp, "%lf", &t[n]) == 1)
        n++;
    fclose(fp);
    assert_int_equal(n, N);
    qsort(t, N, sizeof t[0], cmp_dbl);
    /* no window of 800 ms holds more than 10 (100 ms allowed for process start jitter) */
    for (int i = 0; i < N; i++) {
        int in = 0;
        for (int k = i; k < N && t[k] - t[i] < 0.8 - 0.1; k++)
            in++;
        if (in > 10)
            fail_msg("%d calls started within 700 ms from call %d", in, i);
    }
    assert_true(t[N - 1] - t[0] >= 3.0); /* five batches, 800 ms apart */
}

static void test_retry_after_blocks_provider(void **state)
{
    fx *f = *state;
    f->rs = new_resil(f);
    /* Retry-After 1 s outlasts the 500 ms turn: the adapter gives up and reports it */
    script(f, "[{\"status\":429,\"headers\":{\"Retry-After\":\"1\"}}]");
    out a = {0}, b = {0};
    start(f, &a, 500, (const char *const[]){"ra", NULL});
    wait_flag(f, &a.done, 10000, "the 429");
    assert_false(a.success);
    assert_int_equal(a.cls, BT_AGENT_TRANSIENT);
    json_t *j = bt_resil_json(f->rs);
    json_t *p = json_object_get(json_object_get(j, "providers"), "retry");
    assert_true(json_is_integer(json_object_get(p, "blocked_until")));
    json_decref(j);
    start(f, &b, 500, (const char *const[]){"ra", NULL});
    wait_flag(f, &b.done, 10000, "the call after the 429");
    assert_true(b.success);
    assert_int_equal(b.n_rate, 1);
    assert_true(b.wait_ms > 500 && b.wait_ms <= 1000);
    assert_string_equal(b.limit, "provider Retry-After");
    json_t *reqs = requests_for(f, "m-ra");
    assert_int_equal(json_array_size(reqs), 2);
    double t0 = json_real_value(json_object_get(json_array_get(reqs, 0), "time"));
    double t1 = json_real_value(json_object_get(json_array_get(reqs, 1), "time"));
    json_decref(reqs);
    assert_true(t1 - t0 >= 0.9);
    out_release(&a);
    out_release(&b);
}

static void test_cancel_queued(void **state)
{
    fx *f = *state;
    f->rs = new_resil(f);
    out a = {0}, b = {0}, c = {0};
    start(f, &a, 0, (const char *const[]){"slowpoke", NULL});
    start(f, &b, 0, (const char *const[]){"slowpoke", NULL});
    c.cancel_on_rate = 1; /* cancels itself from its rate_limited note */
    start(f, &c, 0, (const char *const[]){"slowpoke", NULL});
    wait_flag(f, &a.done, 10000, "the first call");
    assert_true(a.success);
    wait_flag(f, &c.done, 2000, "the self-cancelled call");
    assert_int_equal(c.cls, BT_AGENT_CANCELLED);
    assert_int_equal(b.n_rate, 1);
    assert_true(b.wait_ms > 3000);
    assert_false(b.done);
    json_t *j = bt_resil_agent_json(f->rs, "slowpoke");
    assert_int_equal(bt_json_int(json_object_get(j, "rate_limit"), "waiting", -1), 1);
    json_decref(j);
    int64_t t0 = bt_time_mono_ms();
    bt_resil_call_cancel(b.call);
    assert_false(b.done);
    wait_flag(f, &b.done, 1000, "the cancelled queued call");
    assert_true(bt_time_mono_ms() - t0 < 1000);
    assert_false(b.success);
    assert_int_equal(b.cls, BT_AGENT_CANCELLED);
    assert_int_equal(b.natt, 1);
    assert_string_equal(b.att_outcome[0], "cancelled");
    assert_null(b.agent); /* nothing ran */
    j = bt_resil_json(f->rs);
    assert_int_equal(
        bt_json_int(json_object_get(json_object_get(j, "providers"), "slow"), "waiting", -1), 0);
    json_decref(j);
    assert_int_equal(count_for(f, "m-slow"), 1);
    out_release(&a);
    out_release(&b);
    out_release(&c);
}

/* ---------------------------------------------------------------------------------
 * Statistics, events and persistence
 */

typedef struct evs {
    int done;
    json_t *list;
} evs;

static void on_events(void *ud, int rc, const bt_error *err, bt_event *const *ev, size_t n)
{
    evs *e = ud;
    if (rc < 0)
        fail_msg("events: %s", err->msg);
    e->list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(e->list, bt_event_to_json(ev[i]));
    e->done = 1;
}

static json_t *events_of(fx *f, const char *type)
{
    evs e = {0};
    bt_event_filter flt = {.type_prefix = type, .limit = 1000};
    bt_store_event_read(f->store, &flt, on_events, &e);
    wait_flag(f, &e.done, 5000, "events");
    return e.list;
}

typedef struct loaded {
    int done, rc;
} loaded;

static void on_loaded(void *ud, int rc, const bt_error *err)
{
    (void)err;
    loaded *l = ud;
    l->done = 1;
    l->rc = rc;
}

static void on_added(void *ud, int rc, const bt_error *err)
{
    (void)err;
    int *d = ud;
    assert_int_equal(rc, 0);
    *d = 1;
}

typedef struct calls_read {
    int done;
    size_t n;
} calls_read;

static void on_calls_read(void *ud, int rc, const bt_error *err, bt_agent_call *const *c, size_t n)
{
    (void)err, (void)c;
    calls_read *r = ud;
    assert_int_equal(rc, 0);
    r->n = n;
    r->done = 1;
}

static void test_stats_persisted(void **state)
{
    fx *f = *state;
    open_store(f);
    f->rs = new_resil(f);
    loaded l = {0};
    bt_resil_load(f->rs, on_loaded, &l);
    assert_false(l.done);
    wait_flag(f, &l.done, 5000, "the first load");
    assert_int_equal(l.rc, 0);
    out o = {0};
    for (int i = 0; i < 4; i++) {
        call(f, &o, (const char *const[]){"answerer", NULL});
        assert_true(o.success);
        out_release(&o);
    }
    for (int i = 0; i < 3; i++) {
        call(f, &o, (const char *const[]){"crasher", NULL});
        assert_false(o.success);
        out_release(&o);
    }
    assert_string_equal(breaker_of(f, "crasher"), "open");

    json_t *a = bt_resil_agent_json(f->rs, "answerer");
    json_t *st = json_object_get(a, "stats");
    assert_int_equal(bt_json_int(st, "calls", -1), 4);
    assert_true(json_real_value(json_object_get(st, "success_rate")) == 1.0);
    json_t *lat = json_object_get(st, "latency_ms");
    assert_true(bt_json_int(lat, "p50", -1) > 0);
    assert_true(bt_json_int(lat, "p50", 0) <= bt_json_int(lat, "p90", 0));
    assert_true(bt_json_int(lat, "p90", 0) <= bt_json_int(lat, "p99", 0));
    assert_true(bt_json_int(lat, "p99", 0) <= bt_json_int(lat, "max", 0));
    assert_string_equal(bt_json_str(a, "provider", ""), "answerer");
    json_decref(a);
    a = bt_resil_agent_json(f->rs, "crasher");
    st = json_object_get(a, "stats");
    assert_int_equal(bt_json_int(st, "failures", -1), 3);
    assert_true(json_real_value(json_object_get(st, "success_rate")) == 0.0);
    assert_int_equal(bt_json_int(json_object_get(st, "error_classes"), "transient", -1), 3);
    assert_int_equal(bt_json_int(json_object_get(a, "breaker"), "consecutive_failures", -1), 3);
    json_decref(a);
    bt_resil_health h;
    assert_int_equal(bt_resil_health_of(f->rs, "crasher", &h), 0);
    assert_false(h.usable);
    assert_int_equal(h.calls, 3);

    /* the events */
    spin(f, 20);
    json_t *ev = events_of(f, "agent.call");
    assert_int_equal(json_array_size(ev), 7);
    json_t *d = json_object_get(json_array_get(ev, 6), "data");
    assert_string_equal(bt_json_str(d, "agent", ""), "crasher");
    assert_string_equal(bt_json_str(d, "outcome", ""), "failure");
    assert_string_equal(bt_json_str(d, "error_class", ""), "transient");
    assert_string_equal(bt_json_str(d, "provider", ""), "crasher");
    assert_true(json_is_integer(json_object_get(d, "duration_ms")));
    assert_string_equal(bt_json_str(json_array_get(ev, 6), "task_id", ""),
                        "01TESTTASK0000000000000000");
    json_decref(ev);
    ev = events_of(f, "agent.breaker");
    assert_int_equal(json_array_size(ev), 1);
    d = json_object_get(json_array_get(ev, 0), "data");
    assert_string_equal(bt_json_str(d, "agent", ""), "crasher");
    assert_string_equal(bt_json_str(d, "from", ""), "closed");
    assert_string_equal(bt_json_str(d, "to", ""), "open");
    assert_string_equal(bt_json_str(d, "reason", ""), "3 consecutive failures");
    json_decref(ev);

    /* an old row (two days ago) that loading prunes */
    int added = 0;
    bt_agent_call old = {.agent = "answerer",
                         .outcome = "failure",
                         .error_class = "transient",
                         .duration_ms = 5,
                         .at = bt_time_wall_ms() - 2 * 86400000LL};
    bt_store_agent_call_add(f->store, &old, on_added, &added);
    wait_flag(f, &added, 5000, "the old row");

    /* a read-only wrapper (baton agents) sees the open breaker and writes nothing */
    bt_resil_free(f->rs);
    f->rs = new_resil_ro(f, 1);
    memset(&l, 0, sizeof l);
    bt_resil_load(f->rs, on_loaded, &l);
    wait_flag(f, &l.done, 5000, "the read-only load");
    assert_string_equal(breaker_of(f, "crasher"), "open");
    calls_read ro = {0};
    bt_store_agent_calls(f->store, 0, 1000, on_calls_read, &ro);
    wait_flag(f, &ro.done, 5000, "the rows");
    assert_int_equal(ro.n, 8); /* nothing pruned */
    ev = events_of(f, "agent.breaker");
    assert_int_equal(json_array_size(ev), 1); /* no event */
    json_decref(ev);

    /* a new wrapper over the same store: statistics and the open breaker come back */
    bt_resil_free(f->rs);
    f->rs = new_resil(f);
    memset(&l, 0, sizeof l);
    bt_resil_load(f->rs, on_loaded, &l);
    wait_flag(f, &l.done, 5000, "the reload");
    assert_int_equal(l.rc, 0);
    assert_string_equal(breaker_of(f, "crasher"), "open");
    assert_int_equal(bt_resil_health_of(f->rs, "answerer", &h), 0);
    assert_int_equal(h.calls, 4);
    assert_true(h.success_rate == 1.0);
    assert_string_equal(h.breaker, "closed");
    calls_read cr = {0};
    bt_store_agent_calls(f->store, 0, 1000, on_calls_read, &cr);
    wait_flag(f, &cr.done, 5000, "the rows");
    assert_int_equal(cr.n, 7);          /* the old one was pruned */
    ev = events_of(f, "agent.breaker"); /* the daemon says so, for the metrics' gauge */
    assert_int_equal(json_array_size(ev), 2);
    d = json_object_get(json_array_get(ev, 1), "data");
    assert_string_equal(bt_json_str(d, "to", ""), "open");
    assert_true(strstr(bt_json_str(d, "reason", ""), "restored") != NULL);
    json_decref(ev);
    int ran = file_lines(f, "crasher.calls");
    call(f, &o, (const char *const[]){"crasher", "answerer", NULL});
    assert_true(o.success);
    assert_string_equal(o.att_outcome[0], "rejected");
    out_release(&o);
    assert_int_equal(file_lines(f, "crasher.calls"), ran); /* not called */
}

static void test_load_without_store(void **state)
{
    fx *f = *state;
    f->rs = new_resil(f);
    loaded l = {0};
    bt_resil_load(f->rs, on_loaded, &l);
    assert_false(l.done);
    wait_flag(f, &l.done, 5000, "the load");
    assert_int_equal(l.rc, 0);
    json_t *j = bt_resil_json(f->rs);
    assert_true(json_is_false(json_object_get(j, "offline")));
    json_t *prov = json_object_get(json_object_get(j, "providers"), "burst");
    assert_int_equal(bt_json_int(prov, "requests", -1), 10);
    assert_int_equal(bt_json_int(prov, "per_ms", -1), 800);
    assert_string_equal(json_string_value(json_array_get(json_object_get(prov, "agents"), 0)),
                        "burster");
    json_t *ag = json_object_get(json_object_get(j, "agents"), "answerer");
    assert_true(json_is_null(json_object_get(json_object_get(ag, "stats"), "success_rate")));
    assert_string_equal(bt_json_str(json_object_get(ag, "breaker"), "state", ""), "closed");
    json_decref(j);
}

/* ---------------------------------------------------------------------------------
 * Offline
 */

static void test_offline(void **state)
{
    fx *f = *state;
    f->rs = new_resil(f);
    bt_resil_set_offline(f->rs, 1);
    assert_true(bt_resil_offline(f->rs));
    out o = {0};
    call(f, &o, (const char *const[]){"answerer", "llm", NULL});
    assert_true(o.success);
    assert_string_equal(o.agent, "llm"); /* a loopback endpoint is local */
    assert_string_equal(o.att_outcome[0], "skipped");
    assert_int_equal(o.n_skipped, 1);
    assert_int_equal(file_lines(f, "answer.calls"), 0);
    out_release(&o);
    /* a CLI configured local runs */
    call(f, &o, (const char *const[]){"crasher", "localcli", NULL});
    assert_true(o.success);
    assert_string_equal(o.agent, "localcli");
    assert_int_equal(file_lines(f, "crasher.calls"), 0);
    assert_int_equal(file_lines(f, "answer.calls"), 1);
    out_release(&o);
    /* only remote agents: a transient failure that says why */
    call(f, &o, (const char *const[]){"answerer", NULL});
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_TRANSIENT);
    assert_non_null(strstr(o.error, "offline"));
    out_release(&o);
    bt_resil_health h;
    assert_int_equal(bt_resil_health_of(f->rs, "answerer", &h), 0);
    assert_false(h.usable);
    assert_int_equal(bt_resil_health_of(f->rs, "llm", &h), 0);
    assert_true(h.usable);
    bt_resil_set_offline(f->rs, 0);
    call(f, &o, (const char *const[]){"answerer", NULL});
    assert_true(o.success);
    out_release(&o);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crash_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permanent_does_not_fall_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_of_fifty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_blocks_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_persisted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_without_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
