/*
 * agent.c - the agent interface's common half: making an agent from its configuration
 * (dispatch to the adapter), starting and cancelling runs, and the bookkeeping every
 * adapter shares (output cap, events, usage, cost, the --record file, on_done).
 *
 * Recording format (read back by replay.c), one JSON object per line:
 *   {"type":"header","format":"baton-replay","version":1,"agent":..,"agent_type":..,
 *    "model":..,"prompt":..,"recorded_at":"ISO"}
 *   {"type":"event","at_ms":N,"kind":"output|stderr|tool|usage|status","text":..,
 *    "tool":..,"tokens_in":N,"tokens_out":N}
 *   {"type":"result", <bt_agent_result_json>}
 */
#include "agents/agent_impl.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/time.h"
#include "base/vec.h"
#include "obs/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

const char *bt_agent_error_class_name(bt_agent_error_class c)
{
    switch (c) {
    case BT_AGENT_OK:
        return "ok";
    case BT_AGENT_TRANSIENT:
        return "transient";
    case BT_AGENT_PERMANENT:
        return "permanent";
    case BT_AGENT_CANCELLED:
        return "cancelled";
    case BT_AGENT_TIMEOUT:
        return "timeout";
    }
    return "permanent";
}

const char *bt_agent_event_kind_name(bt_agent_event_kind k)
{
    static const char *const names[] = {"output", "stderr", "tool", "usage", "status"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "output";
}

/* ---- the agent ---- */

static void strvec_copy(bt_strvec *dst, const bt_strvec *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->len; i++)
        bt_strvec_push(dst, src->items[i]);
}

static void cfg_copy(bt_config_agent *d, const bt_config_agent *s)
{
    *d = *s;
    d->name = bt_xstrdup(s->name ? s->name : "agent");
    d->preset = bt_xstrdup(s->preset);
    d->command = bt_xstrdup(s->command);
    d->base_url = bt_xstrdup(s->base_url);
    d->model = bt_xstrdup(s->model);
    d->api_key = bt_xstrdup(s->api_key);
    d->role = bt_xstrdup(s->role);
    d->file = bt_xstrdup(s->file);
    d->provider = bt_xstrdup(s->provider);
    strvec_copy(&d->args, &s->args);
    strvec_copy(&d->fallback, &s->fallback);
    strvec_copy(&d->env, &s->env);
}

static void cfg_release(bt_config_agent *c)
{
    free(c->name);
    free(c->preset);
    free(c->command);
    free(c->base_url);
    free(c->model);
    free(c->api_key);
    free(c->role);
    free(c->file);
    free(c->provider);
    bt_strvec_clear(&c->args);
    bt_strvec_clear(&c->fallback);
    bt_strvec_clear(&c->env);
}

int bt_agent_new(const bt_agent_env *env, const bt_config_agent *ac, bt_agent **out, bt_error *err)
{
    *out = NULL;
    if (!env || !env->loop || !ac)
        return bt_errorf(err, BT_EINVAL, "bt_agent_new needs a loop and a configuration entry");
    bt_agent *a = bt_xcalloc(1, sizeof *a);
    a->env = *env;
    cfg_copy(&a->cfg, ac);
    int rc;
    switch (ac->type) {
    case BT_AGENT_CLI:
        rc = bt_cli_agent_init(a, err);
        break;
    case BT_AGENT_OPENAI:
        rc = bt_openai_agent_init(a, err);
        break;
    case BT_AGENT_ANTHROPIC:
        rc = bt_anthropic_agent_init(a, err);
        break;
    case BT_AGENT_OLLAMA:
        rc = bt_ollama_agent_init(a, err);
        break;
    case BT_AGENT_OPENHANDS:
        rc = bt_openhands_agent_init(a, err);
        break;
    case BT_AGENT_REPLAY:
        rc = bt_replay_agent_init(a, err);
        break;
    default:
        rc = bt_errorf(err, BT_EINVAL, "agent '%s' has an unknown type", a->cfg.name);
        break;
    }
    if (rc < 0) {
        cfg_release(&a->cfg);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

static void throttle_closed(uv_handle_t *h)
{
    free(h->data);
}

void bt_agent_free(bt_agent *a)
{
    if (!a)
        return;
    if (a->throttle) {
        a->throttle->agent = NULL;
        uv_close((uv_handle_t *)&a->throttle->idle, throttle_closed);
    }
    if (a->ops && a->ops->free)
        a->ops->free(a);
    cfg_release(&a->cfg);
    free(a);
}

const char *bt_agent_name(const bt_agent *a)
{
    return a->cfg.name;
}

const char *bt_agent_kind(const bt_agent *a)
{
    return a->ops ? a->ops->type : bt_config_agent_type_name(a->cfg.type);
}

const char *bt_agent_role(const bt_agent *a)
{
    return a->cfg.role ? a->cfg.role : "";
}

const char *bt_agent_model(const bt_agent *a)
{
    return a->cfg.model ? a->cfg.model : "";
}

int bt_agent_writes_workspace(const bt_agent *a)
{
    return a->ops && a->ops->writes_workspace;
}

/* The provider a preset or an endpoint belongs to (docs/resilience.md). */
static const char *derive_provider(const bt_config_agent *c)
{
    const char *u = c->base_url ? c->base_url : "";
    switch (c->type) {
    case BT_AGENT_CLI:
        if (!c->preset)
            return c->name;
        if (strcmp(c->preset, "claude") == 0)
            return "anthropic";
        if (strcmp(c->preset, "codex") == 0)
            return "openai";
        if (strcmp(c->preset, "gemini") == 0)
            return "google";
        if (strcmp(c->preset, "copilot") == 0)
            return "github";
        return c->preset;
    case BT_AGENT_OPENAI:
        if (strstr(u, "api.openai.com"))
            return "openai";
        if (strstr(u, "x.ai"))
            return "xai";
        if (strstr(u, "googleapis.com"))
            return "google";
        return c->name;
    case BT_AGENT_ANTHROPIC:
        return strstr(u, "api.anthropic.com") ? "anthropic" : c->name;
    case BT_AGENT_OLLAMA:
        return "ollama";
    case BT_AGENT_OPENHANDS:
        return "openhands";
    case BT_AGENT_REPLAY:
        return "replay";
    }
    return c->name;
}

const char *bt_agent_provider(const bt_agent *a)
{
    return a->cfg.provider && *a->cfg.provider ? a->cfg.provider : derive_provider(&a->cfg);
}

int bt_agent_url_is_local(const char *url)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    const char *at = strchr(h, '@');
    const char *slash = strchr(h, '/');
    if (at && (!slash || at < slash))
        h = at + 1;
    char host[256];
    size_t n = 0;
    if (*h == '[') {
        h++;
        while (*h && *h != ']' && n + 1 < sizeof host)
            host[n++] = *h++;
    } else {
        while (*h && *h != ':' && *h != '/' && *h != '?' && *h != '#' && n + 1 < sizeof host)
            host[n++] = *h++;
    }
    host[n] = 0;
    if (!*host)
        return 0;
    if (strchr(host, ':')) /* IPv6: loopback, unique local (fc00::/7), link-local */
        return strcmp(host, "::1") == 0 || strncasecmp(host, "fd", 2) == 0 ||
               strncasecmp(host, "fc", 2) == 0 || strncasecmp(host, "fe80:", 5) == 0;
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "host.docker.internal") == 0)
        return 1;
    if (strspn(host, "0123456789.") == strlen(host)) { /* an IPv4 literal */
        if (strncmp(host, "127.", 4) == 0 || strncmp(host, "10.", 3) == 0 ||
            strncmp(host, "192.168.", 8) == 0 || strncmp(host, "169.254.", 8) == 0 ||
            strcmp(host, "0.0.0.0") == 0)
            return 1;
        int b = strncmp(host, "172.", 4) == 0 ? atoi(host + 4) : 0;
        return b >= 16 && b <= 31;
    }
    return strchr(host, '.') == NULL; /* a single-label name: "ollama", a LAN host */
}

int bt_agent_is_local(const bt_agent *a)
{
    if (a->cfg.local == BT_LOCALITY_LOCAL)
        return 1;
    if (a->cfg.local == BT_LOCALITY_REMOTE)
        return 0;
    switch (a->cfg.type) {
    case BT_AGENT_OLLAMA:
    case BT_AGENT_REPLAY:
        return 1;
    case BT_AGENT_CLI:
        return 0; /* the coding CLIs talk to their vendor's API */
    default:
        return a->cfg.base_url && bt_agent_url_is_local(a->cfg.base_url);
    }
}

const char *bt_agent_endpoint(const bt_agent *a)
{
    return a->cfg.type != BT_AGENT_CLI && a->cfg.type != BT_AGENT_REPLAY && a->cfg.base_url
               ? a->cfg.base_url
               : NULL;
}

double bt_agent_cost(const bt_agent *a, int64_t tokens_in, int64_t tokens_out, int *known)
{
    double in = a->cfg.price.input, out = a->cfg.price.output;
    int have = in > 0 || out > 0;
    if (!have) {
        const bt_config_model_price *p = bt_config_price_find(a->env.cfg, a->cfg.model);
        if (p) {
            in = p->input;
            out = p->output;
            have = 1;
        }
    }
    if (known)
        *known = have;
    if (!have)
        return 0;
    return ((double)tokens_in * in + (double)tokens_out * out) / 1e6;
}

/* ---- runs ---- */

static void record_line(bt_agent_run *run, json_t *obj)
{
    if (run->record) {
        char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s) {
            fputs(s, run->record);
            fputc('\n', run->record);
            free(s);
        }
    }
    json_decref(obj);
}

static void run_release(bt_agent_run *run)
{
    bt_strbuf_release(&run->output);
    bt_strbuf_release(&run->error);
    free(run->prompt);
    free(run->system);
    free(run->context);
    free(run->workspace);
    free(run->record_path);
    free(run->model);
    free(run);
}

/* Count a start in the current loop turn; 1 when it may start now. */
static int start_allowed(bt_agent *a)
{
    uint64_t now = uv_now(a->env.loop);
    if (now != a->turn_stamp) {
        a->turn_stamp = now;
        a->starts_in_turn = 0;
    }
    if (a->throttle && a->throttle->head)
        return 0; /* keep the queue's order */
    return a->starts_in_turn++ < BT_AGENT_STARTS_PER_TURN;
}

static void throttle_drain(uv_idle_t *h)
{
    bt_agent_throttle *t = h->data;
    bt_agent *a = t->agent;
    for (int n = 0; n < BT_AGENT_STARTS_PER_TURN && t->head; n++) {
        bt_agent_run *run = t->head;
        t->head = run->queued_next;
        if (!t->head)
            t->tail = NULL;
        run->queued = 0;
        if (run->cancel_requested) {
            bt_agent_run_finish(run); /* already failed as cancelled */
            continue;
        }
        bt_error err = BT_ERROR_INIT;
        if (a->ops->start(run, &err) < 0) {
            bt_agent_run_fail(run,
                              err.code == BT_EUNAVAIL ? BT_AGENT_TRANSIENT : BT_AGENT_PERMANENT,
                              "%s", err.msg);
            bt_agent_run_finish(run);
        }
    }
    if (!t->head)
        uv_idle_stop(&t->idle);
}

static void throttle_push(bt_agent *a, bt_agent_run *run)
{
    if (!a->throttle) {
        a->throttle = bt_xcalloc(1, sizeof *a->throttle);
        a->throttle->agent = a;
        uv_idle_init(a->env.loop, &a->throttle->idle);
        a->throttle->idle.data = a->throttle;
    }
    bt_agent_throttle *t = a->throttle;
    run->queued = 1;
    run->queued_next = NULL;
    if (t->tail)
        t->tail->queued_next = run;
    else
        t->head = run;
    t->tail = run;
    uv_idle_start(&t->idle, throttle_drain);
}

int bt_agent_start(bt_agent *a, const bt_agent_request *rq, bt_agent_run **out, bt_error *err)
{
    if (out)
        *out = NULL;
    if (!a || !rq || !rq->on_done)
        return bt_errorf(err, BT_EINVAL, "an agent request needs on_done");
    if (!rq->prompt || !*rq->prompt)
        return bt_errorf(err, BT_EINVAL, "agent '%s': the prompt is empty", a->cfg.name);
    if (rq->workspace) {
        struct stat st;
        if (stat(rq->workspace, &st) != 0 || !S_ISDIR(st.st_mode))
            return bt_errorf(err, BT_ENOENT, "agent '%s': workspace %s is not a directory",
                             a->cfg.name, rq->workspace);
    }
    bt_agent_run *run = bt_xcalloc(1, sizeof *run);
    run->agent = a;
    run->prompt = bt_xstrdup(rq->prompt);
    run->system = bt_xstrdup(rq->system ? rq->system : "");
    run->context = bt_xstrdup(rq->context ? rq->context : "");
    run->workspace = bt_xstrdup(rq->workspace ? rq->workspace : ".");
    run->record_path = rq->record_path ? bt_xstrdup(rq->record_path) : NULL;
    run->timeout_ms = rq->timeout_ms > 0 ? rq->timeout_ms : a->cfg.timeout_ms;
    if (run->timeout_ms <= 0)
        run->timeout_ms = 30 * 60 * 1000;
    run->stall_timeout_ms = rq->stall_timeout_ms > 0   ? rq->stall_timeout_ms
                            : rq->stall_timeout_ms < 0 ? 0
                                                       : a->cfg.stall_timeout_ms;
    run->max_output = rq->max_output ? rq->max_output : BT_AGENT_DEFAULT_MAX_OUTPUT;
    run->on_event = rq->on_event;
    run->on_done = rq->on_done;
    run->ud = rq->ud;
    run->started_mono_ms = bt_time_mono_ms();
    run->exit_code = -1;
    run->retry_after_ms = -1;
    bt_strbuf_init(&run->output, 0);
    bt_strbuf_init(&run->error, 0);
    if (run->record_path) {
        run->record = fopen(run->record_path, "w");
        if (!run->record) {
            int rc = bt_errorf(err, BT_EIO, "cannot write the recording %s: %s", run->record_path,
                               strerror(errno));
            bt_strbuf_release(&run->output);
            bt_strbuf_release(&run->error);
            free(run->prompt);
            free(run->system);
            free(run->context);
            free(run->workspace);
            free(run->record_path);
            free(run);
            return rc;
        }
        char ts[40];
        record_line(run,
                    json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:s}", "type", "header", "format",
                              "baton-replay", "version", 1, "agent", a->cfg.name, "agent_type",
                              bt_agent_kind(a), "model", bt_agent_model(a), "prompt", run->prompt,
                              "recorded_at", bt_time_format_iso(bt_time_wall_ms(), ts)));
    }
    if (!start_allowed(a)) {
        /* A burst: start it from the queue in a later turn (a failure to start is then
         * reported through on_done). */
        throttle_push(a, run);
        if (out)
            *out = run;
        return 0;
    }
    int rc = a->ops->start(run, err);
    if (rc < 0) {
        if (run->record) {
            fclose(run->record);
            if (run->record_path)
                remove(run->record_path);
        }
        run_release(run);
        return rc;
    }
    if (out)
        *out = run;
    return 0;
}

void bt_agent_run_cancel(bt_agent_run *run)
{
    if (!run || run->cancel_requested)
        return;
    run->cancel_requested = 1;
    bt_agent_run_fail(run, BT_AGENT_CANCELLED, "cancelled");
    if (run->queued)
        return; /* never started: the queue finishes it on its next turn */
    if (run->agent->ops->cancel)
        run->agent->ops->cancel(run);
}

int64_t bt_agent_run_elapsed_ms(const bt_agent_run *run)
{
    return bt_time_mono_ms() - run->started_mono_ms;
}

static void emit(bt_agent_run *run, bt_agent_event_kind kind, const char *text, size_t len,
                 const char *tool)
{
    char *copy = bt_xstrndup(text ? text : "", text ? len : 0);
    bt_agent_event ev = {.kind = kind,
                         .text = copy,
                         .len = strlen(copy),
                         .tool = tool,
                         .tokens_in = run->tokens_in,
                         .tokens_out = run->tokens_out,
                         .at_ms = bt_agent_run_elapsed_ms(run)};
    if (run->record) {
        json_t *o = json_pack("{s:s,s:I,s:s,s:s%}", "type", "event", "at_ms", (json_int_t)ev.at_ms,
                              "kind", bt_agent_event_kind_name(kind), "text", copy, ev.len);
        if (o) {
            if (tool)
                json_object_set_new(o, "tool", json_string(tool));
            if (kind == BT_AGENT_EV_USAGE) {
                json_object_set_new(o, "tokens_in", json_integer(run->tokens_in));
                json_object_set_new(o, "tokens_out", json_integer(run->tokens_out));
            }
            record_line(run, o);
        }
    }
    if (run->on_event)
        run->on_event(&ev, run->ud);
    free(copy);
}

void bt_agent_run_emit(bt_agent_run *run, bt_agent_event_kind kind, const char *text, size_t len)
{
    emit(run, kind, text, len, NULL);
}

void bt_agent_run_tool(bt_agent_run *run, const char *tool, const char *detail)
{
    emit(run, BT_AGENT_EV_TOOL, detail ? detail : "", detail ? strlen(detail) : 0,
         tool ? tool : "tool");
}

void bt_agent_run_usage(bt_agent_run *run, int64_t tokens_in, int64_t tokens_out)
{
    if (tokens_in == run->tokens_in && tokens_out == run->tokens_out)
        return;
    run->tokens_in = tokens_in;
    run->tokens_out = tokens_out;
    emit(run, BT_AGENT_EV_USAGE, "", 0, NULL);
}

void bt_agent_run_output_add(bt_agent_run *run, const char *text, size_t len)
{
    if (run->truncated || !len)
        return;
    size_t room = run->max_output > run->output.len ? run->max_output - run->output.len : 0;
    if (len <= room) {
        bt_strbuf_add(&run->output, text, len);
        return;
    }
    bt_strbuf_add(&run->output, text, room);
    run->truncated = 1;
    bt_strbuf_addf(&run->output, "\n[baton: output truncated at %zu bytes]\n", run->max_output);
}

void bt_agent_run_output_set(bt_agent_run *run, const char *text, size_t len)
{
    bt_strbuf_setlen(&run->output, 0);
    run->truncated = 0;
    bt_agent_run_output_add(run, text, len);
}

void bt_agent_run_output(bt_agent_run *run, const char *text, size_t len)
{
    bt_agent_run_output_add(run, text, len);
    bt_agent_run_emit(run, BT_AGENT_EV_OUTPUT, text, len);
}

void bt_agent_run_fail(bt_agent_run *run, bt_agent_error_class cls, const char *fmt, ...)
{
    if (run->failed)
        return;
    run->failed = 1;
    run->error_class = cls == BT_AGENT_OK ? BT_AGENT_PERMANENT : cls;
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf_vaddf(&run->error, fmt, ap);
    va_end(ap);
}

void bt_agent_run_set_model(bt_agent_run *run, const char *model)
{
    if (!model || !*model)
        return;
    free(run->model);
    run->model = bt_xstrdup(model);
}

json_t *bt_agent_result_json(const bt_agent_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "success", json_boolean(r->success));
    json_object_set_new(o, "agent", json_string(r->agent ? r->agent : ""));
    json_object_set_new(o, "model", json_string(r->model ? r->model : ""));
    json_object_set_new(o, "output", json_string(r->output ? r->output : ""));
    json_object_set_new(o, "error", json_string(r->error ? r->error : ""));
    json_object_set_new(o, "error_class", json_string(bt_agent_error_class_name(r->error_class)));
    json_object_set_new(o, "exit_code", json_integer(r->exit_code));
    if (r->term_signal)
        json_object_set_new(o, "signal", json_integer(r->term_signal));
    if (r->http_status)
        json_object_set_new(o, "http_status", json_integer(r->http_status));
    json_object_set_new(o, "tokens_in", json_integer(r->tokens_in));
    json_object_set_new(o, "tokens_out", json_integer(r->tokens_out));
    json_object_set_new(o, "cost_usd", json_real(r->cost_usd));
    json_object_set_new(o, "cost_reported", json_boolean(r->cost_reported));
    json_object_set_new(o, "duration_ms", json_integer(r->duration_ms));
    if (r->retry_after_ms >= 0)
        json_object_set_new(o, "retry_after_ms", json_integer(r->retry_after_ms));
    json_object_set_new(o, "truncated", json_boolean(r->truncated));
    json_object_set_new(o, "replay", json_boolean(r->replay));
    return o;
}

void bt_agent_run_finish(bt_agent_run *run)
{
    if (!run)
        return;
    bt_agent *a = run->agent;
    if (!run->cost_reported)
        run->cost_usd = bt_agent_cost(a, run->tokens_in, run->tokens_out, NULL);
    const char *model = run->model ? run->model : bt_agent_model(a);
    bt_agent_result r = {
        .success = !run->failed,
        .error_class = run->failed ? run->error_class : BT_AGENT_OK,
        .output = bt_strbuf_cstr(&run->output),
        .error = run->failed ? bt_strbuf_cstr(&run->error) : "",
        .exit_code = run->exit_code,
        .term_signal = run->term_signal,
        .http_status = run->http_status,
        .tokens_in = run->tokens_in,
        .tokens_out = run->tokens_out,
        .cost_usd = run->cost_usd,
        .cost_reported = run->cost_reported,
        .duration_ms = bt_agent_run_elapsed_ms(run),
        .retry_after_ms = run->failed ? run->retry_after_ms : -1,
        .model = model,
        .agent = a->cfg.name,
        .truncated = run->truncated,
        .replay = run->replay,
    };
    if (run->record) {
        json_t *o = bt_agent_result_json(&r);
        json_object_set_new(o, "type", json_string("result"));
        record_line(run, o);
        fclose(run->record);
        run->record = NULL;
    }
    bt_log_write(a->env.log, r.success ? BT_LOG_INFO : BT_LOG_WARN, "agent turn finished",
                 BT_LF_STR("agent", a->cfg.name), BT_LF_BOOL("success", r.success),
                 BT_LF_STR("error_class", bt_agent_error_class_name(r.error_class)),
                 BT_LF_INT("tokens_in", r.tokens_in), BT_LF_INT("tokens_out", r.tokens_out),
                 BT_LF_DBL("cost_usd", r.cost_usd), BT_LF_INT("duration_ms", r.duration_ms),
                 BT_LF_END);
    run->on_done(&r, run->ud);
    run_release(run);
}

/* ---- error classes ---- */

bt_agent_error_class bt_agent_http_class(int rc, long status, const char *body)
{
    if (rc == BT_ECANCELED)
        return BT_AGENT_CANCELLED;
    if (rc < 0)
        return BT_AGENT_TRANSIENT;
    if (status >= 200 && status < 300)
        return BT_AGENT_OK;
    if (status == 429) {
        static const char *const quota[] = {
            "insufficient_quota",           "credit_balance_exhausted",
            "project_spend_limit_exceeded", "enforced_spend_limit_reached",
            "billing_hard_limit",           "exceeded your current quota"};
        for (size_t i = 0; body && i < sizeof quota / sizeof quota[0]; i++)
            if (strstr(body, quota[i]))
                return BT_AGENT_PERMANENT;
        return BT_AGENT_TRANSIENT;
    }
    if (status == 408 || status == 425 || status >= 500)
        return BT_AGENT_TRANSIENT;
    return BT_AGENT_PERMANENT;
}

/* ---- availability ---- */

typedef struct check_later {
    uv_timer_t timer;
    bt_agent *agent;
    int available;
    char *detail;
    bt_agent_check_fn cb;
    void *ud;
} check_later;

static void check_closed(uv_handle_t *h)
{
    check_later *c = h->data;
    free(c->detail);
    free(c);
}

static void check_fire(uv_timer_t *t)
{
    check_later *c = t->data;
    c->cb(c->agent, c->available, c->detail, c->ud);
    uv_close((uv_handle_t *)&c->timer, check_closed);
}

void bt_agent_check_later(bt_agent *a, int available, const char *detail, bt_agent_check_fn cb,
                          void *ud)
{
    check_later *c = bt_xcalloc(1, sizeof *c);
    c->agent = a;
    c->available = available;
    c->detail = bt_xstrdup(detail ? detail : "");
    c->cb = cb;
    c->ud = ud;
    uv_timer_init(a->env.loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, check_fire, 0, 0);
}

void bt_agent_check(bt_agent *a, bt_agent_check_fn cb, void *ud)
{
    if (a->ops->check)
        a->ops->check(a, cb, ud);
    else
        bt_agent_check_later(a, 1, "", cb, ud);
}
