/*
 * offline.c - the offline detector (offline.h): which remote providers the configured
 * agents need, a cheap HTTP GET to each of them (any answer = reachable), and the
 * resulting state, with its reason, for the engine, the resilience wrapper and
 * GET /api/status.
 *
 * A round probes every target at once; it ends when the last probe has answered
 * (bounded by probe_timeout), and only then is the state recomputed, so the state never
 * mixes two rounds. Callers of bt_offline_check wait for the round in flight or start
 * one; everything they and the change callback see comes from a loop callback (the
 * `soon` timer when no probe has to run).
 *
 * Lifetime: two timer handles and the probes in flight hold the detector; after
 * bt_offline_free it is released when the last of them has come back.
 */
#include "core/offline.h"

#include "agents/agents.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "config/config.h"
#include "http/client.h"
#include "obs/log.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

/* Where a provider is probed when neither providers.<p>.probe_url nor an agent endpoint
 * says: the vendors' API roots (any answer, usually 404 or 401, proves reachability). */
static const struct {
    const char *provider, *url;
} builtin_urls[] = {
    {"anthropic", "https://api.anthropic.com"},
    {"openai", "https://api.openai.com"},
    {"google", "https://generativelanguage.googleapis.com"},
    {"github", "https://api.github.com"},
    {"xai", "https://api.x.ai"},
};

#define PROBE_MAX_BODY ((size_t)16 << 10)

typedef struct target {
    bt_offline *o;
    char *provider;
    char *url;          /* NULL: not probed */
    const char *source; /* "probe_url" | "endpoint" | "built-in"; NULL without url */
    bt_strvec agents;
    bt_http_call *call; /* the probe in flight */
    /* last answer */
    int reachable; /* -1 unknown, 0, 1 */
    long status;
    char *error;
    int64_t elapsed_ms, checked_at;
} target;

typedef struct waiter {
    bt_offline_fn cb;
    void *ud;
} waiter;

struct bt_offline {
    uv_loop_t *loop;
    const bt_config *cfg;
    bt_http_client *(*http)(void *ud);
    void *http_ud;
    bt_store *store;
    bt_log *log;
    int force, mode;

    target *t;
    size_t nt;      /* providers found, with or without a URL */
    size_t nprobed; /* of which with a URL */
    int no_agents;  /* no remote agent at all */
    int offline;    /* the state */
    char *reason;   /* owned */
    int64_t checked_at;

    int round;    /* a round is in flight (or about to end in `soon`) */
    int inflight; /* probes whose on_done has not run */
    int announce; /* report the forced state from `soon` */
    BT_VEC(waiter) waiters;
    bt_offline_change_fn on_change;
    void *change_ud;

    uv_timer_t tick, soon;
    int handles; /* open timer handles */
    int started, closing;
};

static int forced(const bt_offline *o)
{
    return o->force || o->mode == BT_OFFLINE_ON;
}

static void set_reason(bt_offline *o, char *reason)
{
    free(o->reason);
    o->reason = reason;
}

/* ---- building the targets ---- */

static const char *configured_probe_url(const bt_config *cfg, const char *provider)
{
    for (size_t i = 0; i < cfg->providers.len; i++) {
        const bt_config_provider *p = &cfg->providers.items[i];
        if (p->name && strcmp(p->name, provider) == 0 && p->probe_url && *p->probe_url)
            return p->probe_url;
    }
    return NULL;
}

static const char *builtin_url(const char *provider)
{
    for (size_t i = 0; i < sizeof builtin_urls / sizeof builtin_urls[0]; i++)
        if (strcmp(builtin_urls[i].provider, provider) == 0)
            return builtin_urls[i].url;
    return NULL;
}

static void build_targets(bt_offline *o, bt_agents *agents)
{
    BT_VEC(target) v = {0};
    size_t n = agents ? bt_agents_count(agents) : 0;
    for (size_t i = 0; i < n; i++) {
        bt_agent *a = bt_agents_at(agents, i);
        if (!a || bt_agent_is_local(a))
            continue;
        const char *prov = bt_agent_provider(a);
        target *t = NULL;
        for (size_t j = 0; j < v.len && !t; j++)
            if (strcmp(v.items[j].provider, prov) == 0)
                t = &v.items[j];
        if (!t) {
            target z = {.provider = bt_xstrdup(prov), .reachable = -1};
            bt_vec_push(&v, z);
            t = &v.items[v.len - 1];
        }
        bt_strvec_push(&t->agents, bt_agent_name(a));
        const char *ep = bt_agent_endpoint(a);
        if (!t->url && ep && *ep) { /* the provider's first HTTP agent */
            t->url = bt_xstrdup(ep);
            t->source = "endpoint";
        }
    }
    for (size_t j = 0; j < v.len; j++) {
        target *t = &v.items[j];
        const char *u = configured_probe_url(o->cfg, t->provider);
        if (u) {
            free(t->url);
            t->url = bt_xstrdup(u);
            t->source = "probe_url";
        } else if (!t->url && (u = builtin_url(t->provider)) != NULL) {
            t->url = bt_xstrdup(u);
            t->source = "built-in";
        }
        if (t->url)
            o->nprobed++;
    }
    o->no_agents = v.len == 0;
    o->t = v.items;
    o->nt = v.len;
    for (size_t j = 0; j < o->nt; j++)
        o->t[j].o = o;
}

/* ---- lifetime ---- */

static void release(bt_offline *o)
{
    if (!o->closing || o->handles > 0 || o->inflight > 0)
        return;
    for (size_t i = 0; i < o->nt; i++) {
        free(o->t[i].provider);
        free(o->t[i].url);
        free(o->t[i].error);
        bt_strvec_clear(&o->t[i].agents);
    }
    free(o->t);
    bt_vec_free(&o->waiters);
    free(o->reason);
    free(o);
}

static void on_handle_closed(uv_handle_t *h)
{
    bt_offline *o = h->data;
    o->handles--;
    release(o);
}

/* ---- state changes ---- */

static void on_event_appended(void *ud, int rc, const bt_error *err, const bt_event *ev)
{
    (void)ev;
    if (rc < 0)
        bt_log_warn((bt_log *)ud, "cannot record the offline state change",
                    BT_LF_STR("error", err ? err->msg : "unknown"));
}

/* Tell the log, the store and the change callback about the state now. */
static void announce(bt_offline *o)
{
    if (o->offline)
        bt_log_warn(o->log, "offline mode on: only local agents run",
                    BT_LF_STR("reason", o->reason));
    else
        bt_log_info(o->log, "offline mode off: remote providers reachable again",
                    BT_LF_STR("reason", o->reason));
    if (o->store) {
        json_t *d = json_pack("{sb ss}", "offline", o->offline, "reason", o->reason);
        bt_store_event_append(o->store, "offline.changed", NULL, NULL, d, on_event_appended,
                              o->log);
        json_decref(d);
    }
    if (o->on_change)
        o->on_change(o->change_ud, o->offline, o->reason);
}

/* Set the state (takes reason); announces a change. Loop callbacks only. */
static void set_state(bt_offline *o, int offline, char *reason)
{
    set_reason(o, reason);
    o->checked_at = bt_time_wall_ms();
    if (offline != o->offline) {
        o->offline = offline;
        announce(o);
    }
}

static void describe_target(bt_strbuf *sb, const target *t)
{
    bt_strbuf_addf(sb, "%s (%s: ", t->provider, t->url);
    if (t->reachable == 1)
        bt_strbuf_addf(sb, "HTTP %ld", t->status);
    else
        bt_strbuf_addstr(sb, t->error ? t->error : "no answer");
    bt_strbuf_addch(sb, ')');
}

/* The round is over: every probe has answered. */
static void end_round(bt_offline *o)
{
    o->round = 0;
    size_t up = 0, down = 0, unknown = 0;
    for (size_t i = 0; i < o->nt; i++) {
        if (!o->t[i].url)
            continue;
        if (o->t[i].reachable == 1)
            up++;
        else if (o->t[i].reachable == 0)
            down++;
        else
            unknown++;
    }
    if (up == 0 && down == 0)
        return; /* cancelled: no answer, the state stays */
    bt_strbuf sb = BT_STRBUF_INIT;
    if (up > 0) {
        bt_strbuf_addstr(&sb, "reachable: ");
        size_t k = 0;
        for (size_t i = 0; i < o->nt; i++)
            if (o->t[i].url && o->t[i].reachable == 1) {
                bt_strbuf_addstr(&sb, k++ ? ", " : "");
                describe_target(&sb, &o->t[i]);
            }
        if (down > 0) {
            bt_strbuf_addstr(&sb, "; unreachable: ");
            k = 0;
            for (size_t i = 0; i < o->nt; i++)
                if (o->t[i].url && o->t[i].reachable == 0) {
                    bt_strbuf_addstr(&sb, k++ ? ", " : "");
                    describe_target(&sb, &o->t[i]);
                }
        }
        set_state(o, 0, bt_strbuf_detach(&sb, NULL));
        return;
    }
    if (unknown > 0) { /* some probes were cancelled: not proven offline */
        bt_strbuf_release(&sb);
        return;
    }
    bt_strbuf_addstr(&sb, "no remote provider reachable: ");
    size_t k = 0;
    for (size_t i = 0; i < o->nt; i++)
        if (o->t[i].url) {
            bt_strbuf_addstr(&sb, k++ ? ", " : "");
            describe_target(&sb, &o->t[i]);
        }
    set_state(o, 1, bt_strbuf_detach(&sb, NULL));
}

static void deliver_waiters(bt_offline *o)
{
    while (o->waiters.len > 0 && !o->round && !o->closing) {
        waiter w = o->waiters.items[0];
        memmove(o->waiters.items, o->waiters.items + 1,
                (o->waiters.len - 1) * sizeof o->waiters.items[0]);
        o->waiters.len--;
        w.cb(o, o->offline, o->reason, w.ud); /* may start another check */
    }
}

static void on_soon(uv_timer_t *h)
{
    bt_offline *o = h->data;
    if (o->closing)
        return;
    if (o->announce) {
        o->announce = 0;
        announce(o);
    }
    if (o->round && o->inflight == 0)
        end_round(o);
    deliver_waiters(o);
}

static void schedule_soon(bt_offline *o)
{
    uv_timer_start(&o->soon, on_soon, 0, 0);
}

/* ---- probes ---- */

static int64_t probe_timeout(const bt_offline *o)
{
    return o->cfg->offline.probe_timeout_ms > 0 ? o->cfg->offline.probe_timeout_ms : 5000;
}

/* What went wrong, in a few words: the client's message without its "GET URL: ". */
static char *probe_error(const bt_http_response *r, const target *t, int64_t timeout_ms)
{
    char d[32];
    const char *e = r->error ? r->error : "";
    switch (r->rc) {
    case BT_ETIMEOUT: {
        bt_strbuf sb = BT_STRBUF_INIT;
        bt_strbuf_addf(&sb, "timed out after %s", bt_duration_format(timeout_ms, d));
        return bt_strbuf_detach(&sb, NULL);
    }
    case BT_EUNAVAIL:
        if (strstr(e, "resolve"))
            return bt_xstrdup("host not found");
        if (strstr(e, "refused"))
            return bt_xstrdup("connection refused");
        return bt_xstrdup("cannot connect");
    default:
        break;
    }
    size_t n = strlen(t->url);
    if (strncmp(e, "GET ", 4) == 0 && strncmp(e + 4, t->url, n) == 0 && e[4 + n] == ':')
        e += 4 + n + 1;
    while (*e == ' ')
        e++;
    return bt_xstrdup(*e ? e : bt_strerror(r->rc));
}

static void on_probe_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    target *t = ud;
    bt_offline *o = t->o;
    t->call = NULL;
    o->inflight--;
    if (o->closing) {
        release(o);
        return;
    }
    if (r->rc != BT_ECANCELED) {
        free(t->error);
        t->error = NULL;
        t->elapsed_ms = r->elapsed_ms;
        t->checked_at = bt_time_wall_ms();
        /* any answer proves the provider reachable, a body too large included */
        t->reachable = r->rc == 0 || r->rc == BT_ETOOBIG;
        t->status = r->status;
        if (!t->reachable)
            t->error = probe_error(r, t, probe_timeout(o));
    }
    if (o->inflight == 0 && o->round) {
        end_round(o);
        deliver_waiters(o);
    }
}

/* Start a round (no-op while one is in flight). Ends through on_probe_done or `soon`. */
static void start_round(bt_offline *o)
{
    if (o->round || o->closing)
        return;
    bt_http_client *http = o->http ? o->http(o->http_ud) : NULL;
    if (!http) { /* the state stays; waiters get it from `soon` */
        o->checked_at = bt_time_wall_ms();
        set_reason(o, bt_xstrdup("cannot probe the remote providers: no HTTP client (libcurl "
                                 "could not be loaded)"));
        schedule_soon(o);
        return;
    }
    o->round = 1;
    int64_t to = probe_timeout(o);
    for (size_t i = 0; i < o->nt; i++) {
        target *t = &o->t[i];
        if (!t->url)
            continue;
        bt_http_request rq = {.method = "GET",
                              .url = t->url,
                              .timeout_ms = to,
                              .connect_timeout_ms = to,
                              .max_body = PROBE_MAX_BODY,
                              .on_done = on_probe_done,
                              .ud = t};
        bt_error err = BT_ERROR_INIT;
        if (bt_http_client_send(http, &rq, &t->call, &err) < 0) {
            /* a URL the client refuses (not http/https): it can never answer */
            free(t->error);
            t->error = bt_xstrdup(err.msg);
            t->reachable = 0;
            t->status = 0;
            t->elapsed_ms = 0;
            t->checked_at = bt_time_wall_ms();
            t->call = NULL;
            continue;
        }
        o->inflight++;
    }
    if (o->inflight == 0)
        schedule_soon(o);
}

static void on_tick(uv_timer_t *h)
{
    start_round(h->data);
}

/* ---- the interface ---- */

int bt_offline_new(const bt_offline_env *env, bt_offline **out, bt_error *err)
{
    if (!env || !env->loop || !env->cfg)
        return bt_errorf(err, BT_EINVAL, "the offline detector needs a loop and a configuration");
    bt_offline *o = bt_xcalloc(1, sizeof *o);
    o->loop = env->loop;
    o->cfg = env->cfg;
    o->http = env->http;
    o->http_ud = env->http_ud;
    o->store = env->store;
    o->log = env->log;
    o->force = env->force;
    o->mode = env->cfg->offline.mode;
    build_targets(o, env->agents);
    if (o->force) {
        o->offline = 1;
        o->reason = bt_xstrdup("forced: --offline");
    } else if (o->mode == BT_OFFLINE_ON) {
        o->offline = 1;
        o->reason = bt_xstrdup("forced: offline.mode on / BATON_OFFLINE");
    } else if (o->mode == BT_OFFLINE_OFF) {
        o->reason = bt_xstrdup("offline detection is off (offline.mode off): never offline");
    } else if (o->nprobed == 0) {
        o->reason = bt_xstrdup(
            o->no_agents ? "no remote provider to probe: every configured agent is local"
                         : "no remote provider to probe: set providers.<name>.probe_url for "
                           "the remote agents' providers to detect offline mode");
    } else {
        o->reason = bt_xstrdup("the remote providers have not been probed yet");
    }
    uv_timer_init(o->loop, &o->tick);
    uv_timer_init(o->loop, &o->soon);
    o->tick.data = o->soon.data = o;
    o->handles = 2;
    *out = o;
    return 0;
}

void bt_offline_free(bt_offline *o)
{
    if (!o || o->closing)
        return;
    o->closing = 1;
    uv_close((uv_handle_t *)&o->tick, on_handle_closed);
    uv_close((uv_handle_t *)&o->soon, on_handle_closed);
    for (size_t i = 0; i < o->nt; i++)
        if (o->t[i].call)
            bt_http_call_cancel(o->t[i].call);
}

void bt_offline_on_change(bt_offline *o, bt_offline_change_fn fn, void *ud)
{
    o->on_change = fn;
    o->change_ud = ud;
}

static int probes_apply(const bt_offline *o)
{
    return !forced(o) && o->mode == BT_OFFLINE_AUTO && o->nprobed > 0;
}

void bt_offline_check(bt_offline *o, bt_offline_fn cb, void *ud)
{
    if (!o || o->closing || !cb)
        return;
    waiter w = {cb, ud};
    bt_vec_push(&o->waiters, w);
    if (probes_apply(o))
        start_round(o);
    else
        schedule_soon(o);
}

void bt_offline_start(bt_offline *o)
{
    if (!o || o->started || o->closing)
        return;
    o->started = 1;
    if (forced(o)) {
        o->announce = 1;
        schedule_soon(o);
        return;
    }
    if (!probes_apply(o))
        return;
    start_round(o);
    uint64_t every =
        o->cfg->offline.probe_interval_ms > 0 ? (uint64_t)o->cfg->offline.probe_interval_ms : 0;
    if (every > 0)
        uv_timer_start(&o->tick, on_tick, every, every);
}

int bt_offline_state(const bt_offline *o, const char **reason)
{
    if (reason)
        *reason = o->reason;
    return o->offline;
}

size_t bt_offline_ntargets(const bt_offline *o)
{
    return o->nprobed;
}

static json_t *iso_or_null(int64_t ms)
{
    char buf[40];
    return ms > 0 ? json_string(bt_time_format_iso(ms, buf)) : json_null();
}

json_t *bt_offline_json(const bt_offline *o)
{
    static const char *const settings[] = {"auto", "on", "off"};
    int m = o->mode >= 0 && o->mode <= 2 ? o->mode : 0;
    json_t *probes = json_array();
    for (size_t i = 0; i < o->nt; i++) {
        const target *t = &o->t[i];
        json_t *agents = json_array();
        for (size_t j = 0; j < t->agents.len; j++)
            json_array_append_new(agents, json_string(t->agents.items[j]));
        int known = t->reachable >= 0;
        json_t *p = json_pack("{ss so so so}", "provider", t->provider, "url",
                              t->url ? json_string(t->url) : json_null(), "source",
                              t->source ? json_string(t->source) : json_null(), "agents", agents);
        json_object_set_new(p, "reachable", known ? json_boolean(t->reachable) : json_null());
        json_object_set_new(p, "status",
                            known && t->status > 0 ? json_integer(t->status) : json_null());
        json_object_set_new(p, "error", t->error ? json_string(t->error) : json_null());
        json_object_set_new(p, "elapsed_ms", known ? json_integer(t->elapsed_ms) : json_null());
        json_object_set_new(p, "checked_at", iso_or_null(known ? t->checked_at : 0));
        json_array_append_new(probes, p);
    }
    json_t *out = json_pack("{ss ss sb ss}", "mode", o->offline ? "offline" : "online", "reason",
                            o->reason ? o->reason : "", "forced", forced(o), "setting",
                            o->force ? "on" : settings[m]);
    json_object_set_new(out, "checked_at", iso_or_null(o->checked_at));
    json_object_set_new(out, "probe_interval_ms", json_integer(o->cfg->offline.probe_interval_ms));
    json_object_set_new(out, "probe_timeout_ms", json_integer(o->cfg->offline.probe_timeout_ms));
    json_object_set_new(out, "probes", probes);
    return out;
}
