/*
 * replay.c - the replay agent: plays back a recording made with `--record` (the
 * format is defined at the top of agent.c) as if the agent were running again, so a
 * workflow, a dashboard or a test can be driven by a real session without the agent,
 * its keys or its cost.
 *
 *   agents:
 *     demo: {type: replay, file: runs/fix-bug.jsonl, speed: 10}
 *
 * A turn reads and checks the whole file first (a missing or garbled recording fails
 * bt_agent_start with the file and line), then emits a status event naming the
 * recording, then every recorded event in order on a uv timer: at the recorded pace
 * (speed 1, the at_ms gaps), N times faster (speed N) or at once (speed 0, still from
 * loop callbacks). Output events rebuild the output, usage events the token counts,
 * tool/stderr/status events are passed on. The turn ends with the recorded result:
 * success or the recorded error and class, the final output, exit code, tokens and the
 * recorded cost (reported as the agent's own figure, so a replay costs what the
 * original did), the recorded model, and result.replay = 1. A paced replay honours the
 * turn timeout; cancel stops it at the next loop iteration.
 *
 * The prompt given to a replay is ignored: the recording answers whatever is asked.
 *
 * Multi-turn files: several recordings may follow one another in one file (each from its
 * header line to its result line). The agent's first turn plays the first, the second
 * turn the second, and so on; once they are used up the last one repeats. So a workflow
 * whose review step runs twice can get two different reviews (the counter lives in the
 * agent, so it starts again when baton does).
 */
#include "agents/agent_impl.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/path.h"
#include "base/strbuf.h"
#include "base/time.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A recording larger than this is refused rather than read into memory. */
static const size_t max_recording_bytes = (size_t)256 << 20;

/* ---- reading a recording ---- */

typedef struct recording {
    json_t *header; /* the header object */
    json_t *events; /* array of event objects, checked */
    json_t *result; /* the result object */
} recording;

static void recording_release(recording *rec)
{
    json_decref(rec->header);
    json_decref(rec->events);
    json_decref(rec->result);
    memset(rec, 0, sizeof *rec);
}

static int event_kind_parse(const char *name, bt_agent_event_kind *out)
{
    static const bt_agent_event_kind kinds[] = {BT_AGENT_EV_OUTPUT, BT_AGENT_EV_STDERR,
                                                BT_AGENT_EV_TOOL, BT_AGENT_EV_USAGE,
                                                BT_AGENT_EV_STATUS};
    for (size_t i = 0; name && i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(name, bt_agent_event_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return 0;
        }
    }
    return -1;
}

static bt_agent_error_class error_class_parse(const char *name)
{
    static const bt_agent_error_class classes[] = {
        BT_AGENT_OK, BT_AGENT_TRANSIENT, BT_AGENT_PERMANENT, BT_AGENT_CANCELLED, BT_AGENT_TIMEOUT};
    for (size_t i = 0; name && i < sizeof classes / sizeof classes[0]; i++)
        if (strcmp(name, bt_agent_error_class_name(classes[i])) == 0)
            return classes[i];
    return BT_AGENT_PERMANENT;
}

static int is_int(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return !v || json_is_integer(v);
}

/* Check one event line; returns a description of the problem or NULL. */
static const char *event_problem(const json_t *ev)
{
    const json_t *at = json_object_get(ev, "at_ms");
    if (!json_is_integer(at) || json_integer_value(at) < 0)
        return "an event needs a non-negative integer \"at_ms\"";
    bt_agent_event_kind kind;
    if (event_kind_parse(bt_json_str(ev, "kind", NULL), &kind) < 0)
        return "an event's \"kind\" must be output, stderr, tool, usage or status";
    const json_t *text = json_object_get(ev, "text");
    if (text && !json_is_string(text))
        return "an event's \"text\" must be a string";
    const json_t *tool = json_object_get(ev, "tool");
    if (tool && !json_is_string(tool) && !json_is_null(tool))
        return "an event's \"tool\" must be a string";
    if (!is_int(ev, "tokens_in") || !is_int(ev, "tokens_out"))
        return "an event's \"tokens_in\" and \"tokens_out\" must be integers";
    return NULL;
}

static const char *result_problem(const json_t *res)
{
    if (!json_is_boolean(json_object_get(res, "success")))
        return "the result needs a boolean \"success\"";
    static const char *const strs[] = {"output", "error", "error_class", "model"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        const json_t *v = json_object_get(res, strs[i]);
        if (v && !json_is_string(v))
            return "the result's output, error, error_class and model must be strings";
    }
    static const char *const ints[] = {"exit_code",  "signal",      "http_status",   "tokens_in",
                                       "tokens_out", "duration_ms", "retry_after_ms"};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!is_int(res, ints[i]))
            return "the result's exit_code, tokens and durations must be integers";
    const json_t *cost = json_object_get(res, "cost_usd");
    if (cost && !json_is_number(cost))
        return "the result's \"cost_usd\" must be a number";
    return NULL;
}

/* Read and check the recording number `want` (0-based; the last one when the file has
 * fewer) at path; *count (may be NULL) receives how many recordings were read. On
 * failure returns BT_ENOENT (missing), BT_EIO/BT_ETOOBIG (unreadable) or BT_EINVAL
 * (garbled) with err naming file and line. */
static int recording_load(const char *path, size_t want, recording *rec, size_t *count,
                          bt_error *err)
{
    size_t cur = 0, more = 0;
    memset(rec, 0, sizeof *rec);
    char *data = NULL;
    size_t len = 0;
    bt_error rerr = BT_ERROR_INIT;
    int rc = bt_path_read_file(path, max_recording_bytes, &data, &len, &rerr);
    if (rc < 0)
        return bt_errorf(err, rc, "cannot read the recording: %s", rerr.msg);
    rec->events = json_array();
    int line = 0;
    const char *problem = NULL;
    char detail[BT_ERROR_MSG_MAX] = "";
    size_t pos = 0;
    while (pos < len && !problem) {
        const char *start = data + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        while (n && (start[n - 1] == '\r' || start[n - 1] == ' ' || start[n - 1] == '\t'))
            n--;
        if (!n)
            continue; /* blank lines are harmless */
        json_t *obj = NULL;
        bt_error jerr = BT_ERROR_INIT;
        if (bt_json_parse(start, n, 0, &obj, &jerr) < 0) {
            snprintf(detail, sizeof detail, "not valid JSON (%.900s)", jerr.msg);
            problem = detail;
            break;
        }
        if (!json_is_object(obj)) {
            json_decref(obj);
            problem = "each line must be a JSON object";
            break;
        }
        const char *type = bt_json_str(obj, "type", "");
        if (rec->result) {
            if (strcmp(type, "header") != 0) {
                json_decref(obj);
                problem = "there is a line after the result line (a further recording must "
                          "start with its header line)";
                break;
            }
            cur++;
            if (cur > want) {
                json_decref(obj); /* the wanted one is complete: stop reading here */
                cur = want;
                more = 1;
                break;
            }
            recording_release(rec);
            rec->events = json_array();
        }
        if (!rec->header) {
            if (strcmp(type, "header") != 0 ||
                strcmp(bt_json_str(obj, "format", ""), "baton-replay") != 0) {
                problem = "the first line must be the header "
                          "{\"type\":\"header\",\"format\":\"baton-replay\",...}; "
                          "is this a baton recording?";
            } else if (bt_json_int(obj, "version", 0) != 1) {
                snprintf(detail, sizeof detail,
                         "recording format version %lld is not supported (this baton reads "
                         "version 1)",
                         (long long)bt_json_int(obj, "version", 0));
                problem = detail;
            }
            if (problem) {
                json_decref(obj);
                break;
            }
            rec->header = obj;
        } else if (strcmp(type, "event") == 0) {
            problem = event_problem(obj);
            if (problem)
                json_decref(obj);
            else
                json_array_append_new(rec->events, obj);
        } else if (strcmp(type, "result") == 0) {
            problem = result_problem(obj);
            if (problem)
                json_decref(obj);
            else
                rec->result = obj;
        } else {
            snprintf(detail, sizeof detail,
                     "unknown line type \"%.40s\" (expected event or result)", type);
            problem = detail;
            json_decref(obj);
        }
    }
    free(data);
    if (problem) {
        recording_release(rec);
        return bt_errorf(err, BT_EINVAL, "recording %s line %d: %s", path, line, problem);
    }
    if (!rec->header) {
        recording_release(rec);
        return bt_errorf(err, BT_EINVAL, "recording %s line 1: the file is empty", path);
    }
    if (!rec->result) {
        recording_release(rec);
        return bt_errorf(err, BT_EINVAL,
                         "recording %s line %d: no result line; the recording is incomplete "
                         "(was the recorded run interrupted?)",
                         path, line);
    }
    if (count)
        *count = cur + 1 + more; /* with more: at least that many */
    return 0;
}

/* ---- the agent ---- */

typedef struct replay_run {
    bt_agent_run *run;
    recording rec;
    uv_timer_t timer;
    size_t next;      /* index of the next event to play */
    int status_sent;  /* the "replaying recording" status went out */
    int timed_out;    /* the turn timeout passed */
    int closing;      /* uv_close was called: the run is finishing */
    int64_t start_ms; /* bt_agent_run_elapsed_ms when playback started */
} replay_run;

static double replay_speed(const bt_agent *a)
{
    double s = a->cfg.speed;
    return isfinite(s) && s > 0 ? s : 0;
}

/* Apply the recorded result to the run. */
static void apply_result(replay_run *rr)
{
    bt_agent_run *run = rr->run;
    const json_t *res = rr->rec.result;
    const char *out = bt_json_str(res, "output", "");
    const json_t *outv = json_object_get(res, "output");
    size_t out_len = json_is_string(outv) ? json_string_length(outv) : strlen(out);
    bt_agent_run_output_set(run, out, out_len);
    if (json_is_true(json_object_get(res, "truncated")))
        run->truncated = 1;
    bt_agent_run_usage(run, bt_json_int(res, "tokens_in", run->tokens_in),
                       bt_json_int(res, "tokens_out", run->tokens_out));
    const json_t *cost = json_object_get(res, "cost_usd");
    run->cost_usd = json_is_number(cost) ? json_number_value(cost) : 0;
    run->cost_reported = 1; /* the original's figure, whatever the price table says now */
    run->exit_code = (int)bt_json_int(res, "exit_code", -1);
    run->term_signal = (int)bt_json_int(res, "signal", 0);
    run->http_status = (long)bt_json_int(res, "http_status", 0);
    const char *model = bt_json_str(res, "model", "");
    bt_agent_run_set_model(run, *model ? model : bt_json_str(rr->rec.header, "model", ""));
    if (!json_is_true(json_object_get(res, "success"))) {
        run->retry_after_ms = bt_json_int(res, "retry_after_ms", -1);
        const char *msg = bt_json_str(res, "error", "");
        bt_agent_run_fail(run, error_class_parse(bt_json_str(res, "error_class", NULL)), "%s",
                          *msg ? msg : "the recorded run failed");
    }
}

static void replay_closed(uv_handle_t *h)
{
    replay_run *rr = h->data;
    bt_agent_run *run = rr->run;
    if (!run->failed && !run->cancel_requested && !rr->timed_out)
        apply_result(rr);
    recording_release(&rr->rec);
    free(rr);
    run->impl = NULL;
    bt_agent_run_finish(run);
}

static void replay_finish(replay_run *rr)
{
    if (rr->closing)
        return;
    rr->closing = 1;
    uv_timer_stop(&rr->timer);
    uv_close((uv_handle_t *)&rr->timer, replay_closed);
}

static void play_event(bt_agent_run *run, const json_t *ev)
{
    bt_agent_event_kind kind = BT_AGENT_EV_OUTPUT;
    event_kind_parse(bt_json_str(ev, "kind", NULL), &kind);
    const json_t *tv = json_object_get(ev, "text");
    const char *text = json_is_string(tv) ? json_string_value(tv) : "";
    size_t len = json_is_string(tv) ? json_string_length(tv) : 0;
    switch (kind) {
    case BT_AGENT_EV_OUTPUT:
        bt_agent_run_output(run, text, len);
        break;
    case BT_AGENT_EV_USAGE:
        bt_agent_run_usage(run, bt_json_int(ev, "tokens_in", run->tokens_in),
                           bt_json_int(ev, "tokens_out", run->tokens_out));
        break;
    case BT_AGENT_EV_TOOL:
        bt_agent_run_tool(run, bt_json_str(ev, "tool", "tool"), text);
        break;
    case BT_AGENT_EV_STDERR:
    case BT_AGENT_EV_STATUS:
        bt_agent_run_emit(run, kind, text, len);
        break;
    }
}

/* Milliseconds after playback start at which step i is due: event i, or for i == the
 * number of events the end of the turn (the recorded duration). */
static int64_t due_ms(const replay_run *rr, size_t i, double speed)
{
    if (speed <= 0)
        return 0;
    size_t n = json_array_size(rr->rec.events);
    int64_t at = i < n ? bt_json_int(json_array_get(rr->rec.events, i), "at_ms", 0)
                       : bt_json_int(rr->rec.result, "duration_ms", 0);
    if (i == n && n > 0) {
        int64_t last = bt_json_int(json_array_get(rr->rec.events, n - 1), "at_ms", 0);
        at = at > last ? at : last;
    }
    return (int64_t)((double)at / speed);
}

static void replay_tick(uv_timer_t *t)
{
    replay_run *rr = t->data;
    bt_agent_run *run = rr->run;
    double speed = replay_speed(run->agent);
    if (!rr->status_sent) {
        rr->status_sent = 1;
        rr->start_ms = bt_agent_run_elapsed_ms(run);
        char msg[1024];
        snprintf(msg, sizeof msg, "replaying recording %s (agent %s, recorded %s)",
                 run->agent->cfg.file, bt_json_str(rr->rec.header, "agent", "?"),
                 bt_json_str(rr->rec.header, "recorded_at", "at an unknown time"));
        bt_agent_run_emit(run, BT_AGENT_EV_STATUS, msg, strlen(msg));
    }
    size_t n = json_array_size(rr->rec.events);
    while (!run->cancel_requested) {
        int64_t now = bt_agent_run_elapsed_ms(run) - rr->start_ms;
        if (due_ms(rr, rr->next, speed) > now)
            break;
        if (rr->next >= n) {
            replay_finish(rr); /* the recorded result */
            return;
        }
        play_event(run, json_array_get(rr->rec.events, rr->next));
        rr->next++;
    }
    if (run->cancel_requested) {
        replay_finish(rr);
        return;
    }
    /* Wait for the next step, or for the turn timeout if that comes first. */
    int64_t elapsed = bt_agent_run_elapsed_ms(run);
    int64_t wait = rr->start_ms + due_ms(rr, rr->next, speed) - elapsed;
    if (elapsed + wait > run->timeout_ms) {
        wait = run->timeout_ms - elapsed;
        if (wait <= 0) {
            rr->timed_out = 1;
            bt_agent_run_fail(run, BT_AGENT_TIMEOUT,
                              "the replay of %s did not finish within the turn timeout of %lld ms "
                              "(at speed %g it takes longer; raise speed or the timeout)",
                              run->agent->cfg.file, (long long)run->timeout_ms, speed);
            replay_finish(rr);
            return;
        }
    }
    uv_update_time(run->agent->env.loop); /* the cached loop time may lag the clock */
    uv_timer_start(&rr->timer, replay_tick, (uint64_t)(wait > 0 ? wait : 0), 0);
}

static int replay_start(bt_agent_run *run, bt_error *err)
{
    bt_agent *a = run->agent;
    replay_run *rr = bt_xcalloc(1, sizeof *rr);
    size_t *turn = a->impl;
    int rc = recording_load(a->cfg.file, *turn, &rr->rec, NULL, err);
    if (rc == 0)
        (*turn)++;
    if (rc < 0) {
        free(rr);
        bt_error_prefix(err, "agent '%s'", a->cfg.name);
        return rc;
    }
    rr->run = run;
    run->impl = rr;
    run->replay = 1;
    const char *model = bt_json_str(rr->rec.result, "model", "");
    bt_agent_run_set_model(run, *model ? model : bt_json_str(rr->rec.header, "model", ""));
    uv_timer_init(a->env.loop, &rr->timer);
    rr->timer.data = rr;
    uv_timer_start(&rr->timer, replay_tick, 0, 0);
    return 0;
}

static void replay_cancel(bt_agent_run *run)
{
    replay_run *rr = run->impl;
    if (!rr || rr->closing)
        return;
    /* Never finish inside cancel: the tick sees cancel_requested and winds up. */
    uv_timer_start(&rr->timer, replay_tick, 0, 0);
}

static void replay_check(bt_agent *a, bt_agent_check_fn cb, void *ud)
{
    recording rec;
    bt_error err = BT_ERROR_INIT;
    size_t count = 0;
    if (recording_load(a->cfg.file, 0, &rec, &count, &err) < 0) {
        bt_agent_check_later(a, 0, err.msg, cb, ud);
        return;
    }
    char detail[1024];
    size_t n = json_array_size(rec.events);
    snprintf(detail, sizeof detail, "recording of agent %s, %zu event%s, recorded %s%s",
             bt_json_str(rec.header, "agent", "?"), n, n == 1 ? "" : "s",
             bt_json_str(rec.header, "recorded_at", "at an unknown time"),
             count > 1 ? " (first of several turns)" : "");
    recording_release(&rec);
    bt_agent_check_later(a, 1, detail, cb, ud);
}

static void replay_free(bt_agent *a)
{
    free(a->impl);
    a->impl = NULL;
}

static const bt_agent_ops replay_ops = {
    .type = "replay",
    .writes_workspace = 0,
    .start = replay_start,
    .cancel = replay_cancel,
    .check = replay_check,
    .free = replay_free,
};

int bt_replay_agent_init(bt_agent *a, bt_error *err)
{
    if (!a->cfg.file || !*a->cfg.file)
        return bt_errorf(err, BT_EINVAL,
                         "replay agent '%s' needs a file: add 'file: PATH' of a recording made "
                         "with --record",
                         a->cfg.name);
    if (!isfinite(a->cfg.speed) || a->cfg.speed < 0)
        return bt_errorf(err, BT_EINVAL,
                         "replay agent '%s': speed must be 0 (instant) or more (1 = recorded "
                         "pace), not %g",
                         a->cfg.name, a->cfg.speed);
    a->ops = &replay_ops;
    a->impl = bt_xcalloc(1, sizeof(size_t)); /* the next turn's recording */
    return 0;
}
