/*
 * test_agent.c - the interface's shared half (agent.c): a burst of starts on one agent
 * is throttled (at most BT_AGENT_STARTS_PER_TURN start in one loop turn) yet every run
 * finishes, in order; a queued run can be cancelled before it starts; a queued run that
 * cannot start reports it through on_done; the output cap adds its marker once; HTTP
 * error classes follow the provider table; and cost uses the agent's price, else the
 * per-model table (longest prefix).
 */
#include "testutil.h"

#include "agents/agent_impl.h"
#include "base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char recording[] =
    "{\"type\":\"header\",\"format\":\"baton-replay\",\"version\":1,\"agent\":\"r\","
    "\"agent_type\":\"replay\",\"model\":\"m\",\"prompt\":\"p\",\"recorded_at\":"
    "\"2026-11-21T00:00:00.000Z\"}\n"
    "{\"type\":\"event\",\"at_ms\":0,\"kind\":\"output\",\"text\":\"hello\"}\n"
    "{\"type\":\"result\",\"success\":true,\"agent\":\"r\",\"model\":\"m\",\"output\":\"hello\","
    "\"error\":\"\",\"error_class\":\"ok\",\"exit_code\":0,\"tokens_in\":3,\"tokens_out\":4,"
    "\"cost_usd\":0.5,\"cost_reported\":true,\"duration_ms\":1,\"truncated\":false,"
    "\"replay\":false}\n";

typedef struct tally {
    int done, ok, cancelled, failed;
    int order[64];
    char last_error[256];
} tally;

typedef struct slot {
    tally *t;
    int index;
} slot;

static void on_done(const bt_agent_result *r, void *ud)
{
    slot *s = ud;
    tally *t = s->t;
    t->order[t->done++] = s->index;
    if (r->success)
        t->ok++;
    else if (r->error_class == BT_AGENT_CANCELLED)
        t->cancelled++;
    else
        t->failed++;
    if (!r->success)
        snprintf(t->last_error, sizeof t->last_error, "%s", r->error);
}

static bt_agent *replay_agent(uv_loop_t *loop, const char *file)
{
    bt_config_agent ac = {0};
    ac.name = (char *)"r";
    ac.type = BT_AGENT_REPLAY;
    ac.file = (char *)file;
    ac.speed = 0;
    ac.timeout_ms = 10000;
    bt_agent_env env = {.loop = loop};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_new(&env, &ac, &a, &err), 0);
    return a;
}

static void burst_is_throttled_and_complete(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("agent");
    char *file = bt_test_write(dir, "r.jsonl", recording);
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_agent *a = replay_agent(&loop, file);
    tally t = {0};
    slot slots[40];
    bt_agent_run *runs[40];
    for (int i = 0; i < 40; i++) {
        slots[i] = (slot){&t, i};
        bt_agent_request rq = {.prompt = "p", .on_done = on_done, .ud = &slots[i]};
        bt_error err = BT_ERROR_INIT;
        assert_int_equal(bt_agent_start(a, &rq, &runs[i], &err), 0);
    }
    /* Only the first batch was handed to the adapter in this turn. */
    assert_non_null(a->throttle);
    int queued = 0;
    for (bt_agent_run *r = a->throttle->head; r; r = r->queued_next)
        queued++;
    assert_int_equal(queued, 40 - BT_AGENT_STARTS_PER_TURN);
    bt_agent_run_cancel(runs[39]); /* still queued: cancelled without starting */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(t.done, 40);
    assert_int_equal(t.ok, 39);
    assert_int_equal(t.cancelled, 1);
    /* FIFO: each batch starts after the previous one */
    for (int i = 0; i < 39; i++)
        if (i >= BT_AGENT_STARTS_PER_TURN)
            assert_true(t.order[i] >= BT_AGENT_STARTS_PER_TURN);
    bt_agent_free(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(file);
    bt_test_rmdir(dir);
}

static void queued_start_failure_goes_to_on_done(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("agent");
    char *file = bt_test_write(dir, "r.jsonl", recording);
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_agent *a = replay_agent(&loop, file);
    tally t = {0};
    slot slots[BT_AGENT_STARTS_PER_TURN + 1];
    for (int i = 0; i <= BT_AGENT_STARTS_PER_TURN; i++) {
        slots[i] = (slot){&t, i};
        bt_agent_request rq = {.prompt = "p", .on_done = on_done, .ud = &slots[i]};
        bt_error err = BT_ERROR_INIT;
        assert_int_equal(bt_agent_start(a, &rq, NULL, &err), 0);
    }
    remove(file); /* the queued run's start now fails: the recording is gone */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(t.done, BT_AGENT_STARTS_PER_TURN + 1);
    assert_int_equal(t.ok, BT_AGENT_STARTS_PER_TURN);
    assert_int_equal(t.failed, 1);
    assert_non_null(strstr(t.last_error, "r.jsonl"));
    bt_agent_free(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(file);
    bt_test_rmdir(dir);
}

static void output_cap_adds_one_marker(void **state)
{
    (void)state;
    bt_agent_run run = {0};
    run.max_output = 10;
    bt_strbuf_init(&run.output, 0);
    bt_agent_run_output_add(&run, "0123456", 7);
    bt_agent_run_output_add(&run, "789abcdef", 9);
    bt_agent_run_output_add(&run, "more", 4);
    assert_true(run.truncated);
    assert_string_equal(bt_strbuf_cstr(&run.output),
                        "0123456789\n[baton: output truncated at 10 bytes]\n");
    bt_strbuf_release(&run.output);
}

static void http_classes(void **state)
{
    (void)state;
    assert_int_equal(bt_agent_http_class(BT_EUNAVAIL, 0, NULL), BT_AGENT_TRANSIENT);
    assert_int_equal(bt_agent_http_class(BT_ECANCELED, 0, NULL), BT_AGENT_CANCELLED);
    assert_int_equal(bt_agent_http_class(0, 200, ""), BT_AGENT_OK);
    assert_int_equal(bt_agent_http_class(0, 429, "{\"error\":{\"type\":\"rate_limit_exceeded\"}}"),
                     BT_AGENT_TRANSIENT);
    assert_int_equal(bt_agent_http_class(0, 429, "{\"error\":{\"code\":\"insufficient_quota\"}}"),
                     BT_AGENT_PERMANENT);
    assert_int_equal(bt_agent_http_class(0, 429,
                                         "{\"error\":{\"details\":{\"error_code\":"
                                         "\"enforced_spend_limit_reached\"}}}"),
                     BT_AGENT_PERMANENT);
    assert_int_equal(bt_agent_http_class(0, 401, ""), BT_AGENT_PERMANENT);
    assert_int_equal(bt_agent_http_class(0, 404, ""), BT_AGENT_PERMANENT);
    assert_int_equal(bt_agent_http_class(0, 408, ""), BT_AGENT_TRANSIENT);
    assert_int_equal(bt_agent_http_class(0, 503, ""), BT_AGENT_TRANSIENT);
    assert_int_equal(bt_agent_http_class(0, 529, ""), BT_AGENT_TRANSIENT);
}

static void cost_prefers_agent_price_then_table(void **state)
{
    (void)state;
    bt_config_model_price prices[] = {{(char *)"claude-sonnet-4", 3.0, 15.0},
                                      {(char *)"claude", 1.0, 1.0}};
    bt_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.prices.items = prices;
    cfg.prices.len = 2;
    bt_agent a;
    memset(&a, 0, sizeof a);
    a.env.cfg = &cfg;
    a.cfg.model = (char *)"claude-sonnet-4-5-20250929";
    int known = 0;
    double c = bt_agent_cost(&a, 1000000, 1000000, &known);
    assert_true(known);
    assert_true(c > 17.999 && c < 18.001); /* longest prefix wins: 3 + 15 */
    a.cfg.price.input = 2.0;
    a.cfg.price.output = 0;
    c = bt_agent_cost(&a, 1000000, 1000000, &known);
    assert_true(c > 1.999 && c < 2.001); /* the agent's own price wins */
    a.cfg.price.input = 0;
    a.cfg.model = (char *)"gpt-5";
    c = bt_agent_cost(&a, 1000, 1000, &known);
    assert_false(known);
    assert_true(c == 0);
}

/* Offline mode keeps agents on this machine or the LAN; /api/models/status lists them. */
static void url_locality(void **state)
{
    (void)state;
    const char *local[] = {"http://127.0.0.1:11434", "http://localhost/v1",
                           "http://[::1]:8080/v1",   "http://10.1.2.3/v1",
                           "http://172.20.0.5:8000", "http://192.168.1.9/v1",
                           "http://ollama:11434",    "http://user:pw@127.0.0.1/v1",
                           "http://[fd12::1]/v1",    "http://host.docker.internal:1234"};
    const char *remote[] = {"https://api.openai.com/v1",   "https://fdic.gov/api",
                            "http://172.32.0.1/v1",        "https://[2001:db8::1]/v1",
                            "https://127.0.0.1.evil.com/", "https://api.anthropic.com"};
    for (size_t i = 0; i < sizeof local / sizeof *local; i++)
        if (!bt_agent_url_is_local(local[i]))
            fail_msg("%s should be local", local[i]);
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++)
        if (bt_agent_url_is_local(remote[i]))
            fail_msg("%s should be remote", remote[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_is_throttled_and_complete),
        cmocka_unit_test(queued_start_failure_goes_to_on_done),
        cmocka_unit_test(output_cap_adds_one_marker),
        cmocka_unit_test(http_classes),
        cmocka_unit_test(cost_prefers_agent_price_then_table),
        cmocka_unit_test(url_locality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
