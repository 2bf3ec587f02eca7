/*
 * test_replay.c - the replay agent: a recording plays back with the recorded output,
 * tokens, cost, model and error; events come in recorded order after a status line
 * naming the recording; speed 0 is instant (yet asynchronous) and speed 1 takes about
 * the recorded time; garbled, incomplete or missing recordings fail start with the
 * file and line; cancel and the turn timeout stop a paced replay; check reports the
 * recording; and a replay recorded with --record replays to the same result.
 */
#include "testutil.h"

#include "agents/agent.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a run driven to completion ---- */

typedef struct seen_event {
    bt_agent_event_kind kind;
    char *text;
    char *tool;
    int64_t tokens_in, tokens_out;
} seen_event;

typedef struct outcome {
    int done;
    int done_calls;
    int success;
    bt_agent_error_class cls;
    char *output, *error, *model;
    int64_t tokens_in, tokens_out;
    double cost;
    int cost_reported, replay, exit_code, truncated;
    long http_status;
    int64_t retry_after_ms, duration_ms;
    seen_event ev[64];
    size_t nev;
    int events_after_done;
    bt_agent_run *run;    /* for cancel from an event */
    int cancel_on_output; /* cancel when the first output event arrives */
} outcome;

static void on_event(const bt_agent_event *e, void *ud)
{
    outcome *o = ud;
    if (o->done)
        o->events_after_done++;
    if (o->nev < sizeof o->ev / sizeof o->ev[0]) {
        seen_event *s = &o->ev[o->nev++];
        s->kind = e->kind;
        s->text = bt_xstrdup(e->text);
        s->tool = e->tool ? bt_xstrdup(e->tool) : NULL;
        s->tokens_in = e->tokens_in;
        s->tokens_out = e->tokens_out;
    }
    assert_int_equal(strlen(e->text), e->len);
    if (o->cancel_on_output && e->kind == BT_AGENT_EV_OUTPUT && o->run) {
        o->cancel_on_output = 0;
        bt_agent_run_cancel(o->run);
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
    o->replay = r->replay;
    o->exit_code = r->exit_code;
    o->truncated = r->truncated;
    o->http_status = r->http_status;
    o->retry_after_ms = r->retry_after_ms;
    o->duration_ms = r->duration_ms;
}

static void outcome_release(outcome *o)
{
    free(o->output);
    free(o->error);
    free(o->model);
    for (size_t i = 0; i < o->nev; i++) {
        free(o->ev[i].text);
        free(o->ev[i].tool);
    }
    memset(o, 0, sizeof *o);
}

typedef struct fixture {
    uv_loop_t loop;
    char *dir;
    char *rec; /* the standard recording */
} fixture;

/* A recording of a claude run: two output chunks, a tool call, usage, stderr; the
 * final answer differs from the streamed text (as with a CLI's parsed result). */
static const char standard_recording[] =
    "{\"type\":\"header\",\"format\":\"baton-replay\",\"version\":1,\"agent\":\"claude\","
    "\"agent_type\":\"cli\",\"model\":\"claude-sonnet-4\",\"prompt\":\"fix the bug\","
    "\"recorded_at\":\"2025-06-01T10:00:00.000Z\"}\n"
    "{\"type\":\"event\",\"at_ms\":0,\"kind\":\"output\",\"text\":\"Looking at the code\\n\"}\n"
    "{\"type\":\"event\",\"at_ms\":100,\"kind\":\"tool\",\"text\":\"ls src\",\"tool\":\"Bash\"}\n"
    "{\"type\":\"event\",\"at_ms\":200,\"kind\":\"usage\",\"text\":\"\",\"tokens_in\":1200,"
    "\"tokens_out\":80}\n"
    "{\"type\":\"event\",\"at_ms\":300,\"kind\":\"stderr\",\"text\":\"warning: slow disk\\n\"}\n"
    "{\"type\":\"event\",\"at_ms\":400,\"kind\":\"output\",\"text\":\"Fixed it.\\n\"}\n"
    "{\"type\":\"event\",\"at_ms\":450,\"kind\":\"usage\",\"text\":\"\",\"tokens_in\":1500,"
    "\"tokens_out\":210}\n"
    "{\"type\":\"result\",\"success\":true,\"agent\":\"claude\",\"model\":\"claude-sonnet-4\","
    "\"output\":\"The bug was an off-by-one in parse().\",\"error\":\"\",\"error_class\":\"ok\","
    "\"exit_code\":0,\"tokens_in\":1500,\"tokens_out\":210,\"cost_usd\":0.0123,"
    "\"cost_reported\":true,\"duration_ms\":600,\"truncated\":false,\"replay\":false}\n";

static int setup(void **state)
{
    fixture *f = bt_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->dir = bt_test_tmpdir("replay");
    f->rec = bt_test_write(f->dir, "claude.jsonl", standard_recording);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->rec);
    bt_test_rmdir(f->dir);
    free(f);
    return 0;
}

static bt_agent *make_agent(fixture *f, const char *name, const char *file, double speed)
{
    bt_config_agent ac = {.name = (char *)name,
                          .type = BT_AGENT_REPLAY,
                          .file = (char *)file,
                          .speed = speed,
                          .timeout_ms = 60000};
    bt_agent_env env = {.loop = &f->loop};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    int rc = bt_agent_new(&env, &ac, &a, &err);
    if (rc < 0)
        fail_msg("bt_agent_new: %s", err.msg);
    return a;
}

/* Start a run and drive the loop until on_done. */
static void run_agent(fixture *f, bt_agent *a, bt_agent_request *rq, outcome *o)
{
    rq->prompt = rq->prompt ? rq->prompt : "fix the bug";
    rq->on_event = on_event;
    rq->on_done = on_done;
    rq->ud = o;
    bt_error err = BT_ERROR_INIT;
    int rc = bt_agent_start(a, rq, &o->run, &err);
    if (rc < 0)
        fail_msg("bt_agent_start: %s", err.msg);
    assert_int_equal(o->done, 0); /* never inside start */
    int64_t deadline = bt_time_mono_ms() + 20000;
    while (!o->done && bt_time_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(o->done);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o->done_calls, 1);
    assert_int_equal(o->events_after_done, 0);
}

/* The standard recording's events, after the status line, in order. */
static void assert_standard_events(const outcome *o, size_t first)
{
    assert_true(o->nev >= first + 6);
    const seen_event *e = &o->ev[first];
    assert_int_equal(e[0].kind, BT_AGENT_EV_OUTPUT);
    assert_string_equal(e[0].text, "Looking at the code\n");
    assert_int_equal(e[1].kind, BT_AGENT_EV_TOOL);
    assert_string_equal(e[1].tool, "Bash");
    assert_string_equal(e[1].text, "ls src");
    assert_int_equal(e[2].kind, BT_AGENT_EV_USAGE);
    assert_int_equal(e[2].tokens_in, 1200);
    assert_int_equal(e[2].tokens_out, 80);
    assert_int_equal(e[3].kind, BT_AGENT_EV_STDERR);
    assert_string_equal(e[3].text, "warning: slow disk\n");
    assert_int_equal(e[4].kind, BT_AGENT_EV_OUTPUT);
    assert_string_equal(e[4].text, "Fixed it.\n");
    assert_int_equal(e[5].kind, BT_AGENT_EV_USAGE);
    assert_int_equal(e[5].tokens_in, 1500);
    assert_int_equal(e[5].tokens_out, 210);
}

static void assert_standard_result(const outcome *o)
{
    assert_true(o->success);
    assert_int_equal(o->cls, BT_AGENT_OK);
    assert_string_equal(o->output, "The bug was an off-by-one in parse().");
    assert_string_equal(o->error, "");
    assert_string_equal(o->model, "claude-sonnet-4");
    assert_int_equal(o->tokens_in, 1500);
    assert_int_equal(o->tokens_out, 210);
    assert_true(o->cost > 0.01229 && o->cost < 0.01231);
    assert_true(o->cost_reported);
    assert_true(o->replay);
    assert_int_equal(o->exit_code, 0);
}

/* ---- tests ---- */

static void test_instant_replay(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, "demo", f->rec, 0);
    assert_string_equal(bt_agent_kind(a), "replay");
    assert_false(bt_agent_writes_workspace(a));
    outcome o = {0};
    bt_agent_request rq = {0};
    int64_t t0 = bt_time_mono_ms();
    run_agent(f, a, &rq, &o);
    int64_t took = bt_time_mono_ms() - t0;
    assert_true(took < 300); /* recorded 600 ms; speed 0 does not wait */

    assert_true(o.nev == 7);
    assert_int_equal(o.ev[0].kind, BT_AGENT_EV_STATUS);
    bt_strbuf want = BT_STRBUF_INIT;
    bt_strbuf_addf(
        &want, "replaying recording %s (agent claude, recorded 2025-06-01T10:00:00.000Z)", f->rec);
    assert_string_equal(o.ev[0].text, want.buf);
    bt_strbuf_release(&want);
    assert_standard_events(&o, 1);
    assert_standard_result(&o);
    outcome_release(&o);
    bt_agent_free(a);
}

static void test_paced_replay(void **state)
{
    fixture *f = *state;
    /* speed 1: about the recorded 600 ms */
    bt_agent *a = make_agent(f, "demo", f->rec, 1);
    outcome o = {0};
    bt_agent_request rq = {0};
    int64_t t0 = bt_time_mono_ms();
    run_agent(f, a, &rq, &o);
    int64_t took = bt_time_mono_ms() - t0;
    assert_true(took >= 580);
    assert_true(took < 5000);
    assert_standard_events(&o, 1);
    assert_standard_result(&o);
    outcome_release(&o);
    bt_agent_free(a);

    /* speed 10: ten times faster, yet not instant */
    a = make_agent(f, "demo", f->rec, 10);
    t0 = bt_time_mono_ms();
    run_agent(f, a, &rq, &o);
    took = bt_time_mono_ms() - t0;
    assert_true(took >= 55);
    assert_true(took < 580);
    assert_standard_result(&o);
    outcome_release(&o);
    bt_agent_free(a);
}

static void test_recorded_failure(void **state)
{
    fixture *f = *state;
    char *path = bt_test_write(
        f->dir, "failed.jsonl",
        "{\"type\":\"header\",\"format\":\"baton-replay\",\"version\":1,\"agent\":\"gpt\","
        "\"agent_type\":\"openai\",\"model\":\"gpt-4o\",\"prompt\":\"p\","
        "\"recorded_at\":\"2025-06-02T08:00:00.000Z\"}\n"
        "{\"type\":\"event\",\"at_ms\":5,\"kind\":\"status\",\"text\":\"retrying in 1.0 s (HTTP "
        "503)\"}\n"
        "\n"
        "{\"type\":\"result\",\"success\":false,\"agent\":\"gpt\",\"model\":\"gpt-4o\","
        "\"output\":\"\",\"error\":\"HTTP 503 from the provider\",\"error_class\":\"transient\","
        "\"exit_code\":-1,\"http_status\":503,\"tokens_in\":0,\"tokens_out\":0,\"cost_usd\":0,"
        "\"cost_reported\":false,\"duration_ms\":20,\"retry_after_ms\":2000,"
        "\"truncated\":false,\"replay\":false}\n");
    bt_agent *a = make_agent(f, "demo", path, 0);
    outcome o = {0};
    bt_agent_request rq = {0};
    run_agent(f, a, &rq, &o);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_TRANSIENT);
    assert_string_equal(o.error, "HTTP 503 from the provider");
    assert_int_equal(o.http_status, 503);
    assert_int_equal(o.retry_after_ms, 2000);
    assert_int_equal(o.exit_code, -1);
    assert_string_equal(o.model, "gpt-4o");
    assert_true(o.replay);
    assert_int_equal(o.nev, 2);
    assert_int_equal(o.ev[1].kind, BT_AGENT_EV_STATUS);
    assert_string_equal(o.ev[1].text, "retrying in 1.0 s (HTTP 503)");
    outcome_release(&o);
    bt_agent_free(a);
    free(path);
}

/* Start must fail with code and a message containing every needle. */
static void expect_start_error(fixture *f, const char *file, int code, const char *needle1,
                               const char *needle2)
{
    bt_agent *a = make_agent(f, "demo", file, 0);
    outcome o = {0};
    bt_agent_request rq = {.prompt = "p", .on_event = on_event, .on_done = on_done, .ud = &o};
    bt_error err = BT_ERROR_INIT;
    bt_agent_run *run = NULL;
    int rc = bt_agent_start(a, &rq, &run, &err);
    if (rc != code)
        fail_msg("expected %d, got %d: %s", code, rc, err.msg);
    assert_null(run);
    if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        fail_msg("message lacks '%s'/'%s': %s", needle1, needle2 ? needle2 : "", err.msg);
    if (!strstr(err.msg, file))
        fail_msg("message does not name the file: %s", err.msg);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o.done_calls, 0);
    assert_int_equal(o.nev, 0);
    bt_agent_free(a);
}

static const char header_line[] =
    "{\"type\":\"header\",\"format\":\"baton-replay\",\"version\":1,\"agent\":\"x\","
    "\"agent_type\":\"cli\",\"model\":\"\",\"prompt\":\"p\",\"recorded_at\":\"2025-01-01T00:00:"
    "00Z\"}\n";

/* A file with several recordings plays them one per turn, then repeats the last. */
static void test_multi_turn(void **state)
{
    fixture *f = *state;
    bt_strbuf sb = BT_STRBUF_INIT;
    const char *answers[] = {"five suggestions", "two suggestions"};
    for (int i = 0; i < 2; i++)
        bt_strbuf_addf(&sb,
                       "%s{\"type\":\"event\",\"at_ms\":0,\"kind\":\"output\",\"text\":\"turn "
                       "%d\\n\"}\n{\"type\":\"result\",\"success\":true,\"output\":\"%s\"}\n",
                       header_line, i + 1, answers[i]);
    char *p = bt_test_write(f->dir, "turns.jsonl", sb.buf);
    bt_agent *a = make_agent(f, "reviewer", p, 0);
    const char *want[] = {"five suggestions", "two suggestions", "two suggestions"};
    for (int i = 0; i < 3; i++) {
        outcome o = {0};
        bt_agent_request rq = {0};
        run_agent(f, a, &rq, &o);
        assert_true(o.success);
        assert_string_equal(o.output, want[i]);
        outcome_release(&o);
    }
    bt_agent_free(a);
    /* a line after a result that is not a new header is still refused */
    bt_strbuf_release(&sb);
    free(p);
}

static void test_bad_recordings(void **state)
{
    fixture *f = *state;
    bt_strbuf sb = BT_STRBUF_INIT;

    /* garbled JSON on line 3 */
    bt_strbuf_addf(&sb, "%s%s", header_line,
                   "{\"type\":\"event\",\"at_ms\":0,\"kind\":\"output\",\"text\":\"a\"}\n"
                   "{\"type\":\"event\",\"at_ms\":1,\"kind\":\"outp\n");
    char *p = bt_test_write(f->dir, "garbled.jsonl", sb.buf);
    expect_start_error(f, p, BT_EINVAL, "line 3", "not valid JSON");
    free(p);

    /* not a recording at all */
    p = bt_test_write(f->dir, "notes.txt", "{\"hello\":1}\n");
    expect_start_error(f, p, BT_EINVAL, "line 1", "header");
    free(p);

    /* a newer format version */
    p = bt_test_write(f->dir, "v2.jsonl",
                      "{\"type\":\"header\",\"format\":\"baton-replay\",\"version\":2}\n");
    expect_start_error(f, p, BT_EINVAL, "line 1", "version 2");
    free(p);

    /* an event with an unknown kind on line 2 */
    bt_strbuf_reset(&sb);
    bt_strbuf_addf(&sb, "%s%s", header_line,
                   "{\"type\":\"event\",\"at_ms\":0,\"kind\":\"shout\",\"text\":\"a\"}\n");
    p = bt_test_write(f->dir, "kind.jsonl", sb.buf);
    expect_start_error(f, p, BT_EINVAL, "line 2", "kind");
    free(p);

    /* interrupted: no result line */
    bt_strbuf_reset(&sb);
    bt_strbuf_addf(&sb, "%s%s", header_line,
                   "{\"type\":\"event\",\"at_ms\":0,\"kind\":\"output\",\"text\":\"a\"}\n");
    p = bt_test_write(f->dir, "cut.jsonl", sb.buf);
    expect_start_error(f, p, BT_EINVAL, "no result line", NULL);
    free(p);

    /* something after the result */
    bt_strbuf_reset(&sb);
    bt_strbuf_addf(&sb, "%s%s", header_line,
                   "{\"type\":\"result\",\"success\":true}\n"
                   "{\"type\":\"event\",\"at_ms\":0,\"kind\":\"output\",\"text\":\"a\"}\n");
    p = bt_test_write(f->dir, "after.jsonl", sb.buf);
    expect_start_error(f, p, BT_EINVAL, "line 3", "after the result");
    free(p);

    /* empty file */
    p = bt_test_write(f->dir, "empty.jsonl", "");
    expect_start_error(f, p, BT_EINVAL, "empty", NULL);
    free(p);

    /* missing file */
    bt_strbuf_reset(&sb);
    bt_strbuf_addf(&sb, "%s/nope.jsonl", f->dir);
    expect_start_error(f, sb.buf, BT_ENOENT, "cannot read", NULL);
    bt_strbuf_release(&sb);
}

static void test_init_errors(void **state)
{
    fixture *f = *state;
    bt_agent_env env = {.loop = &f->loop};
    bt_agent *a = NULL;
    bt_error err = BT_ERROR_INIT;
    bt_config_agent ac = {.name = "r", .type = BT_AGENT_REPLAY};
    assert_int_equal(bt_agent_new(&env, &ac, &a, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "needs a file"));
    assert_null(a);
    ac.file = f->rec;
    ac.speed = -1;
    assert_int_equal(bt_agent_new(&env, &ac, &a, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "speed"));
    assert_null(a);
}

static void test_cancel(void **state)
{
    fixture *f = *state;
    /* at speed 1 the first output comes at 0 ms and the rest up to 600 ms later;
     * cancelling from the first output event ends the run at once */
    bt_agent *a = make_agent(f, "demo", f->rec, 1);
    outcome o = {.cancel_on_output = 1};
    bt_agent_request rq = {0};
    int64_t t0 = bt_time_mono_ms();
    run_agent(f, a, &rq, &o);
    assert_true(bt_time_mono_ms() - t0 < 400);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_CANCELLED);
    assert_int_equal(o.nev, 2); /* status, first output; nothing after the cancel */
    assert_int_equal(o.ev[1].kind, BT_AGENT_EV_OUTPUT);
    assert_true(o.replay);
    outcome_release(&o);

    /* cancel right after start, before the first tick */
    bt_agent_request rq2 = {.prompt = "p", .on_event = on_event, .on_done = on_done, .ud = &o};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_agent_start(a, &rq2, &o.run, &err), 0);
    bt_agent_run_cancel(o.run);
    assert_int_equal(o.done, 0); /* never inside cancel */
    while (!o.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(o.cls, BT_AGENT_CANCELLED);
    assert_true(o.nev <= 1);
    outcome_release(&o);
    bt_agent_free(a);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, "demo", f->rec, 1);
    outcome o = {0};
    bt_agent_request rq = {.timeout_ms = 250};
    int64_t t0 = bt_time_mono_ms();
    run_agent(f, a, &rq, &o);
    int64_t took = bt_time_mono_ms() - t0;
    assert_true(took >= 240 && took < 2000);
    assert_false(o.success);
    assert_int_equal(o.cls, BT_AGENT_TIMEOUT);
    assert_non_null(strstr(o.error, "timeout"));
    /* the events due before 250 ms were played, the later ones were not */
    assert_int_equal(o.nev, 1 + 3);
    outcome_release(&o);
    bt_agent_free(a);
}

static void check_cb(bt_agent *a, int available, const char *detail, void *ud)
{
    (void)a;
    outcome *o = ud;
    o->done = 1;
    o->success = available;
    o->output = bt_xstrdup(detail);
}

static void test_check(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, "demo", f->rec, 1);
    outcome o = {0};
    bt_agent_check(a, check_cb, &o);
    assert_int_equal(o.done, 0); /* from a loop callback */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(o.done);
    assert_true(o.success);
    assert_string_equal(o.output,
                        "recording of agent claude, 6 events, recorded 2025-06-01T10:00:00.000Z");
    outcome_release(&o);
    bt_agent_free(a);

    char *p = bt_test_write(f->dir, "bad.jsonl", "garbage\n");
    a = make_agent(f, "demo", p, 1);
    bt_agent_check(a, check_cb, &o);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(o.done);
    assert_false(o.success);
    assert_non_null(strstr(o.output, "line 1"));
    assert_non_null(strstr(o.output, p));
    outcome_release(&o);
    bt_agent_free(a);
    free(p);
}

/* Record a replay, replay the new recording: same result, same events after the two
 * status lines; and a third generation is stable too. */
static void test_record_round_trip(void **state)
{
    fixture *f = *state;
    bt_strbuf rec2 = BT_STRBUF_INIT, rec3 = BT_STRBUF_INIT;
    bt_strbuf_addf(&rec2, "%s/gen2.jsonl", f->dir);
    bt_strbuf_addf(&rec3, "%s/gen3.jsonl", f->dir);

    bt_agent *a = make_agent(f, "gen1", f->rec, 0);
    outcome o = {0};
    bt_agent_request rq = {.record_path = rec2.buf};
    run_agent(f, a, &rq, &o);
    assert_standard_result(&o);
    outcome_release(&o);
    bt_agent_free(a);

    a = make_agent(f, "gen2", rec2.buf, 0);
    bt_agent_request rq2 = {.record_path = rec3.buf};
    run_agent(f, a, &rq2, &o);
    assert_standard_result(&o);
    assert_int_equal(o.nev, 8);
    assert_int_equal(o.ev[0].kind, BT_AGENT_EV_STATUS);
    assert_non_null(strstr(o.ev[0].text, "agent gen1"));
    assert_int_equal(o.ev[1].kind, BT_AGENT_EV_STATUS);
    assert_non_null(strstr(o.ev[1].text, "agent claude"));
    assert_standard_events(&o, 2);
    outcome_release(&o);
    bt_agent_free(a);

    a = make_agent(f, "gen3", rec3.buf, 0);
    bt_agent_request rq3 = {0};
    run_agent(f, a, &rq3, &o);
    assert_standard_result(&o);
    assert_standard_events(&o, 3);
    outcome_release(&o);
    bt_agent_free(a);

    bt_strbuf_release(&rec2);
    bt_strbuf_release(&rec3);
}

/* The output cap applies to a replay like to a live run. */
static void test_output_cap(void **state)
{
    fixture *f = *state;
    bt_agent *a = make_agent(f, "demo", f->rec, 0);
    outcome o = {0};
    bt_agent_request rq = {.max_output = 10};
    run_agent(f, a, &rq, &o);
    assert_true(o.success);
    assert_true(o.truncated);
    assert_non_null(strstr(o.output, "The bug wa"));
    assert_non_null(strstr(o.output, "truncated at 10 bytes"));
    outcome_release(&o);
    bt_agent_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_instant_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paced_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recorded_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_recordings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_cap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
