/*
 * resilience.c - the wrapper every agent call of the engine goes through
 * (resilience.h): the fallback manager walking a call's chain, one circuit breaker
 * (breaker.h), limiter pair (ratelimit.h) and statistics window (agentstats.h) per
 * agent, one limiter pair per provider, and the events and rows that make all of it
 * visible and durable.
 *
 * A call moves through phases:
 *   NEW       started; the first step runs from a loop callback (`soon`), so on_done
 *             never runs inside bt_resil_call_start
 *   QUEUED    an agent was chosen (not skipped, breaker let it through) and waits for
 *             its limits in the one arrival-ordered wait queue
 *   LAUNCH    admitted by the pump, about to start
 *   RUNNING   the agent runs; its on_done decides: done, or the next agent (advance)
 *   DONE      the result is delivered from a loop callback
 *
 * The pump walks the wait queue oldest first. A call goes when every limiter it needs
 * (agent requests and tokens, provider requests and tokens, the provider's Retry-After
 * block) admits it now and no earlier waiter is held up by one of those limiters -
 * so a limit is served in arrival order, and a call is never dropped. One timer wakes
 * the pump when the shortest wait has passed.
 *
 * Clock: env.now_ms (tests inject one) or the wall clock, for breakers, limits,
 * windows and the persisted call times alike; timers only decide when to look again.
 */
#include "core/resilience.h"

#include "agents/agents.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/ratelimit.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "config/config.h"
#include "core/agentstats.h"
#include "core/breaker.h"
#include "obs/log.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

/* One limit (a limiter, or none = unlimited) and the pump's per-pass marks. */
typedef struct lim {
    bt_ratelimit *rl; /* NULL: unlimited */
    int tokens;       /* 1: counts tokens, else requests */
    const char *what; /* "agent requests" ... for the caller's status */
    uint64_t mark;    /* pass number in which an earlier waiter was held up by it */
    int64_t mark_wait;
} lim;

typedef struct provider {
    char *name;
    int64_t requests, tokens, per_ms;
    lim req; /* always a limiter (capacity 0 when unlimited): it carries Retry-After */
    lim tok;
    int waiting;
    int configured;
} provider;

typedef struct agent_st {
    char *name;
    bt_agent *agent; /* NULL when it could not be built */
    const char *unusable;
    provider *prov;
    bt_breaker br;
    bt_agentstats *stats;
    int64_t requests, tokens, per_ms;
    lim req, tok;
    int waiting;
} agent_st;

typedef struct load_ctx {
    bt_resil *rs; /* NULL once the resil is freed */
    bt_resil_loaded_fn cb;
    void *ud;
} load_ctx;

enum { PH_NEW, PH_QUEUED, PH_LAUNCH, PH_RUNNING, PH_DONE };

typedef struct attempt_rec {
    char *agent;
    const char *outcome;
    const char *error_class;
    char *error;
    int64_t waited_ms, duration_ms;
} attempt_rec;

struct bt_resil_call {
    bt_resil *rs;
    bt_resil_call *prev, *next;   /* rs->calls */
    bt_resil_call *wprev, *wnext; /* wait queue */
    bt_resil_call *snext;         /* soon list */
    bt_resil_call *gnext;         /* a pump pass's lists */
    int phase, in_soon, cancelled;

    char **chain;
    size_t nchain, pos;
    char *prompt, *system, *context, *workspace, *record_path, *task_id, *run_id;
    int64_t timeout_ms, stall_timeout_ms;
    size_t max_output;
    bt_agent_event_fn on_event;
    bt_resil_status_fn on_status;
    bt_resil_done_fn on_done;
    void *ud;
    int64_t est_tokens;

    /* the current attempt */
    agent_st *cur;
    int allowed, probe, reported;
    int64_t queued_at, waited_ms, wait_est;
    const char *wait_why;
    uint64_t h[4]; /* limiter handles, for token correction or undo */
    bt_agent_run *run;

    BT_VEC(attempt_rec) att;
    bt_agent_result last; /* copy of the last agent result (strings owned) */
    int have_last;
    char *last_agent;
};

struct bt_resil {
    bt_resil_env env;
    agent_st **agents; /* in bt_agents order */
    size_t nagents;
    bt_map *by_name;   /* name -> agent_st* (borrowed) */
    bt_map *providers; /* name -> provider* (owned) */
    int offline;
    bt_resil_call *calls;
    bt_resil_call *wq_head, *wq_tail;
    bt_resil_call *soon_head, *soon_tail;
    uv_timer_t *soon, *wake; /* heap: freed by their close callbacks */
    int pumping, repump;
    uint64_t gen;
    load_ctx *loading;
};

static void advance(bt_resil_call *c);
static void pump(bt_resil *rs);

/* ---- small helpers ---- */

static int64_t now_ms(const bt_resil *rs)
{
    return rs->env.now_ms ? rs->env.now_ms(rs->env.now_ud) : bt_time_wall_ms();
}

static void on_event_written(void *ud, int rc, const bt_error *err, const bt_event *ev)
{
    (void)ev;
    if (rc < 0)
        bt_log_warn((bt_log *)ud, "resilience event not recorded", BT_LF_STR("error", err->msg));
}

static void on_call_written(void *ud, int rc, const bt_error *err)
{
    if (rc < 0)
        bt_log_warn((bt_log *)ud, "agent call not recorded", BT_LF_STR("error", err->msg));
}

/* Append an event (data stolen). */
static void emit(bt_resil *rs, const char *type, const bt_resil_call *c, json_t *data)
{
    if (rs->env.store && data)
        bt_store_event_append(rs->env.store, type, c ? c->task_id : NULL, c ? c->run_id : NULL,
                              data, on_event_written, rs->env.log);
    json_decref(data);
}

/* A note to the caller (data stolen). */
static void status(bt_resil_call *c, const char *kind, json_t *data)
{
    if (c->on_status && data && !c->cancelled)
        c->on_status(kind, data, c->ud);
    json_decref(data);
}

static json_t *ms_or_null(int64_t v)
{
    return v > 0 ? json_integer((json_int_t)v) : json_null();
}

/* ---- agents and providers ---- */

static void lim_init(lim *l, int64_t cap, int64_t per, int tokens, const char *what, int always)
{
    memset(l, 0, sizeof *l);
    l->tokens = tokens;
    l->what = what;
    if (cap > 0 || always)
        l->rl = bt_ratelimit_new(cap, per);
}

static void provider_free(void *p)
{
    provider *pv = p;
    bt_ratelimit_free(pv->req.rl);
    bt_ratelimit_free(pv->tok.rl);
    free(pv->name);
    free(pv);
}

static provider *provider_get(bt_resil *rs, const char *name)
{
    provider *p = bt_map_get(rs->providers, name);
    if (p)
        return p;
    p = bt_xcalloc(1, sizeof *p);
    p->name = bt_xstrdup(name);
    p->per_ms = 60000;
    const bt_config_providers *ps = &rs->env.cfg->providers;
    for (size_t i = 0; i < ps->len; i++) {
        if (strcmp(ps->items[i].name, name) == 0) {
            p->requests = ps->items[i].requests;
            p->tokens = ps->items[i].tokens;
            if (ps->items[i].per_ms > 0)
                p->per_ms = ps->items[i].per_ms;
            p->configured = 1;
        }
    }
    lim_init(&p->req, p->requests, p->per_ms, 0, "provider requests", 1);
    lim_init(&p->tok, p->tokens, p->per_ms, 1, "provider tokens", 0);
    bt_map_set(rs->providers, name, p);
    return p;
}

static void agent_free(agent_st *a)
{
    bt_agentstats_free(a->stats);
    bt_ratelimit_free(a->req.rl);
    bt_ratelimit_free(a->tok.rl);
    free(a->name);
    free(a);
}

static agent_st *agent_new(bt_resil *rs, size_t i)
{
    const bt_config *cfg = rs->env.cfg;
    agent_st *a = bt_xcalloc(1, sizeof *a);
    a->name = bt_xstrdup(bt_agents_name(rs->env.agents, i));
    a->agent = bt_agents_at(rs->env.agents, i);
    a->unusable = bt_agents_error(rs->env.agents, i);
    const bt_config_agent *ac = bt_config_agent_find(cfg, a->name);
    const char *pname = a->agent                              ? bt_agent_provider(a->agent)
                        : ac && ac->provider && *ac->provider ? ac->provider
                                                              : a->name;
    a->prov = provider_get(rs, pname);
    int64_t thr = cfg->resilience.circuit_breaker.failure_threshold;
    int64_t rec = cfg->resilience.circuit_breaker.recovery_timeout_ms;
    if (ac && ac->circuit_breaker.failure_threshold > 0)
        thr = ac->circuit_breaker.failure_threshold;
    if (ac && ac->circuit_breaker.recovery_timeout_ms > 0)
        rec = ac->circuit_breaker.recovery_timeout_ms;
    bt_breaker_init(&a->br, thr, rec);
    a->stats = bt_agentstats_new(cfg->resilience.stats_window, cfg->resilience.stats_max_age_ms);
    a->per_ms = 60000;
    if (ac) {
        a->requests = ac->rate_limit.requests;
        a->tokens = ac->rate_limit.tokens;
        if (ac->rate_limit.per_ms > 0)
            a->per_ms = ac->rate_limit.per_ms;
    }
    lim_init(&a->req, a->requests, a->per_ms, 0, "agent requests", 0);
    lim_init(&a->tok, a->tokens, a->per_ms, 1, "agent tokens", 0);
    return a;
}

static agent_st *agent_of(const bt_resil *rs, const char *name)
{
    return bt_map_get(rs->by_name, name);
}

/* ---- lifetime ---- */

int bt_resil_new(const bt_resil_env *env, bt_resil **out, bt_error *err)
{
    *out = NULL;
    if (!env || !env->loop || !env->agents || !env->cfg)
        return bt_errorf(
            err, BT_EINVAL,
            "the resilience wrapper needs a loop, the agent set and the configuration");
    bt_resil *rs = bt_xcalloc(1, sizeof *rs);
    rs->env = *env;
    rs->by_name = bt_map_new(NULL);
    rs->providers = bt_map_new(provider_free);
    rs->nagents = bt_agents_count(env->agents);
    rs->agents = bt_xcalloc(rs->nagents ? rs->nagents : 1, sizeof *rs->agents);
    for (size_t i = 0; i < rs->nagents; i++) {
        rs->agents[i] = agent_new(rs, i);
        bt_map_set(rs->by_name, rs->agents[i]->name, rs->agents[i]);
    }
    /* configured providers no agent names still show their limits */
    for (size_t i = 0; i < env->cfg->providers.len; i++)
        provider_get(rs, env->cfg->providers.items[i].name);
    rs->soon = bt_xcalloc(1, sizeof *rs->soon);
    rs->wake = bt_xcalloc(1, sizeof *rs->wake);
    uv_timer_init(env->loop, rs->soon);
    uv_timer_init(env->loop, rs->wake);
    rs->soon->data = rs->wake->data = rs;
    *out = rs;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

void bt_resil_free(bt_resil *rs)
{
    if (!rs)
        return;
    if (rs->loading)
        rs->loading->rs = NULL;
    uv_close((uv_handle_t *)rs->soon, on_timer_closed);
    uv_close((uv_handle_t *)rs->wake, on_timer_closed);
    for (size_t i = 0; i < rs->nagents; i++)
        agent_free(rs->agents[i]);
    free(rs->agents);
    bt_map_free(rs->by_name);
    bt_map_free(rs->providers);
    free(rs);
}

void bt_resil_set_offline(bt_resil *rs, int offline)
{
    offline = offline ? 1 : 0;
    if (rs->offline != offline)
        bt_log_info(rs->env.log,
                    offline ? "offline: remote agents are skipped" : "online: every agent runs");
    rs->offline = offline;
}

int bt_resil_offline(const bt_resil *rs)
{
    return rs->offline;
}

/* ---- deferred work ---- */

static void on_soon(uv_timer_t *t);

static void soon_push(bt_resil_call *c)
{
    bt_resil *rs = c->rs;
    if (c->in_soon)
        return;
    c->in_soon = 1;
    c->snext = NULL;
    if (rs->soon_tail)
        rs->soon_tail->snext = c;
    else
        rs->soon_head = c;
    rs->soon_tail = c;
    uv_timer_start(rs->soon, on_soon, 0, 0);
}

/* ---- the end of a call ---- */

static void attempt_add(bt_resil_call *c, const char *agent, const char *outcome,
                        const char *error_class, const char *error, int64_t waited,
                        int64_t duration)
{
    attempt_rec a = {.agent = bt_xstrdup(agent),
                     .outcome = outcome,
                     .error_class = error_class,
                     .error = bt_xstrdup(error ? error : ""),
                     .waited_ms = waited,
                     .duration_ms = duration};
    bt_vec_push(&c->att, a);
}

static void last_release(bt_resil_call *c)
{
    if (!c->have_last)
        return;
    free((char *)c->last.output);
    free((char *)c->last.error);
    free((char *)c->last.model);
    free((char *)c->last.agent);
    c->have_last = 0;
}

static void call_free(bt_resil_call *c)
{
    for (size_t i = 0; i < c->nchain; i++)
        free(c->chain[i]);
    free(c->chain);
    free(c->prompt);
    free(c->system);
    free(c->context);
    free(c->workspace);
    free(c->record_path);
    free(c->task_id);
    free(c->run_id);
    for (size_t i = 0; i < c->att.len; i++) {
        free(c->att.items[i].agent);
        free(c->att.items[i].error);
    }
    bt_vec_free(&c->att);
    last_release(c);
    free(c->last_agent);
    free(c);
}

static bt_agent_error_class class_of(const char *name)
{
    if (!name)
        return BT_AGENT_OK;
    if (strcmp(name, "transient") == 0)
        return BT_AGENT_TRANSIENT;
    if (strcmp(name, "timeout") == 0)
        return BT_AGENT_TIMEOUT;
    return BT_AGENT_PERMANENT;
}

/* Hand the result over; the call is freed. Only from a loop callback. */
static void deliver(bt_resil_call *c)
{
    bt_resil *rs = c->rs;
    if (c->prev)
        c->prev->next = c->next;
    else
        rs->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;

    bt_resil_result res = {0};
    size_t n = c->att.len;
    bt_resil_attempt *at = bt_xcalloc(n ? n : 1, sizeof *at);
    int success = 0, cancelled = c->cancelled, any_transient = 0;
    for (size_t i = 0; i < n; i++) {
        const attempt_rec *r = &c->att.items[i];
        at[i] = (bt_resil_attempt){.agent = r->agent,
                                   .outcome = r->outcome,
                                   .error_class = r->error_class,
                                   .error = r->error,
                                   .waited_ms = r->waited_ms,
                                   .duration_ms = r->duration_ms};
        if (strcmp(r->outcome, "success") == 0)
            success = 1;
        if (strcmp(r->outcome, "cancelled") == 0)
            cancelled = 1;
        if (r->error_class && strcmp(r->error_class, "transient") == 0)
            any_transient = 1;
    }
    res.attempts = at;
    res.nattempts = n;
    res.success = success;
    res.agent_result = c->have_last ? &c->last : NULL;
    res.agent = c->last_agent;
    res.fallback_from =
        c->last_agent && strcmp(c->last_agent, c->chain[0]) != 0 ? c->chain[0] : NULL;
    bt_strbuf err = BT_STRBUF_INIT;
    if (success) {
        res.error_class = BT_AGENT_OK;
    } else if (cancelled) {
        res.error_class = BT_AGENT_CANCELLED;
        const char *why = n ? at[n - 1].error : "";
        bt_strbuf_addstr(&err, *why ? why : "cancelled");
    } else {
        if (n == 1) {
            bt_strbuf_addstr(&err, at[0].error);
        } else {
            for (size_t i = 0; i < n; i++)
                bt_strbuf_addf(&err, "%s%s: %s", i ? "; " : "", at[i].agent, at[i].error);
        }
        if (!n)
            bt_strbuf_addstr(&err, "no agent to run");
        /* a primary that failed permanently is the only attempt: its class is the last */
        if (any_transient)
            res.error_class = BT_AGENT_TRANSIENT;
        else
            res.error_class = n ? class_of(at[n - 1].error_class) : BT_AGENT_PERMANENT;
        if (res.error_class == BT_AGENT_OK)
            res.error_class = BT_AGENT_PERMANENT;
    }
    res.error = bt_strbuf_cstr(&err);
    c->on_done(&res, c->ud);
    bt_strbuf_release(&err);
    free(at);
    call_free(c);
}

/* End the call now (from a loop callback) or soon (from a caller's function). */
static void finish(bt_resil_call *c, int now)
{
    c->phase = PH_DONE;
    if (now)
        deliver(c);
    else
        soon_push(c);
}

/* ---- the wait queue ---- */

static void wq_remove(bt_resil_call *c)
{
    bt_resil *rs = c->rs;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        rs->wq_head = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    else
        rs->wq_tail = c->wprev;
    c->wprev = c->wnext = NULL;
    c->cur->waiting--;
    c->cur->prov->waiting--;
}

static void enqueue(bt_resil_call *c)
{
    bt_resil *rs = c->rs;
    c->phase = PH_QUEUED;
    c->queued_at = now_ms(rs);
    c->reported = 0;
    c->wprev = rs->wq_tail;
    c->wnext = NULL;
    if (rs->wq_tail)
        rs->wq_tail->wnext = c;
    else
        rs->wq_head = c;
    rs->wq_tail = c;
    c->cur->waiting++;
    c->cur->prov->waiting++;
    pump(rs);
}

static void lims_of(agent_st *a, lim *ls[4])
{
    ls[0] = &a->req;
    ls[1] = &a->tok;
    ls[2] = &a->prov->req;
    ls[3] = &a->prov->tok;
}

/* Give back what a call took from its limiters (it never ran). */
static void untake(bt_resil_call *c)
{
    if (!c->cur)
        return;
    lim *ls[4];
    lims_of(c->cur, ls);
    for (int k = 0; k < 4; k++) {
        if (ls[k]->rl && c->h[k])
            bt_ratelimit_adjust(ls[k]->rl, c->h[k], 0);
        c->h[k] = 0;
    }
}

static void on_wake(uv_timer_t *t)
{
    pump(t->data);
}

static void report_wait(bt_resil_call *c)
{
    bt_resil *rs = c->rs;
    agent_st *a = c->cur;
    bt_log_info(rs->env.log, "agent call waits for its rate limit", BT_LF_STR("agent", a->name),
                BT_LF_STR("provider", a->prov->name), BT_LF_INT("wait_ms", c->wait_est),
                BT_LF_STR("limit", c->wait_why));
    emit(rs, "agent.rate_limited", c,
         json_pack("{ss ss sI sI ss}", "agent", a->name, "provider", a->prov->name, "wait_ms",
                   (json_int_t)c->wait_est, "queued", (json_int_t)a->prov->waiting, "limit",
                   c->wait_why));
    status(c, "rate_limited",
           json_pack("{ss ss sI ss}", "agent", a->name, "provider", a->prov->name, "wait_ms",
                     (json_int_t)c->wait_est, "limit", c->wait_why));
}

static void launch(bt_resil_call *c);

static void pump(bt_resil *rs)
{
    if (rs->pumping) {
        rs->repump = 1;
        return;
    }
    rs->pumping = 1;
    do {
        rs->repump = 0;
        int64_t now = now_ms(rs), min_wait = -1;
        uint64_t mark = ++rs->gen;
        bt_resil_call *go = NULL, **go_tail = &go, *fresh = NULL, **fresh_tail = &fresh;
        bt_resil_call *next;
        for (bt_resil_call *c = rs->wq_head; c; c = next) {
            next = c->wnext;
            lim *ls[4];
            lims_of(c->cur, ls);
            int64_t w = 0, wk[4] = {0}, ahead = 0;
            const char *why = NULL;
            int held = 0;
            for (int k = 0; k < 4; k++) {
                if (!ls[k]->rl)
                    continue;
                wk[k] = bt_ratelimit_wait(ls[k]->rl, now, ls[k]->tokens ? c->est_tokens : 1);
                if (wk[k] > w) {
                    w = wk[k];
                    why = bt_ratelimit_blocked_until(ls[k]->rl) - now >= wk[k]
                              ? "provider Retry-After"
                              : ls[k]->what;
                }
                if (ls[k]->mark == mark) {
                    held = 1;
                    if (ls[k]->mark_wait > ahead)
                        ahead = ls[k]->mark_wait;
                }
            }
            if (!held && w == 0) {
                wq_remove(c);
                for (int k = 0; k < 4; k++)
                    c->h[k] = ls[k]->rl ? bt_ratelimit_take(ls[k]->rl, now,
                                                            ls[k]->tokens ? c->est_tokens : 1)
                                        : 0;
                c->waited_ms = now - c->queued_at;
                c->phase = PH_LAUNCH;
                c->gnext = NULL;
                *go_tail = c;
                go_tail = &c->gnext;
                continue;
            }
            int64_t mine = w > ahead ? w : ahead;
            for (int k = 0; k < 4; k++) {
                if (ls[k]->rl && (wk[k] > 0 || ls[k]->mark == mark)) {
                    if (ls[k]->mark != mark)
                        ls[k]->mark_wait = 0;
                    ls[k]->mark = mark;
                    if (mine > ls[k]->mark_wait)
                        ls[k]->mark_wait = mine;
                }
            }
            if (w > 0 && (min_wait < 0 || w < min_wait))
                min_wait = w;
            if (!c->reported) {
                c->reported = 1;
                c->wait_est = mine;
                c->wait_why = w >= ahead && why ? why : "queue";
                c->gnext = NULL;
                *fresh_tail = c;
                fresh_tail = &c->gnext;
            }
        }
        if (rs->wq_head)
            uv_timer_start(rs->wake, on_wake, (uint64_t)(min_wait > 0 ? min_wait : 1), 0);
        else
            uv_timer_stop(rs->wake);
        for (bt_resil_call *c = fresh; c; c = next) {
            next = c->gnext;
            if (c->phase == PH_QUEUED && !c->cancelled)
                report_wait(c);
        }
        for (bt_resil_call *c = go; c; c = next) {
            next = c->gnext;
            launch(c);
        }
    } while (rs->repump);
    rs->pumping = 0;
}

/* ---- running one agent ---- */

static void emit_breaker(bt_resil_call *c, agent_st *a, const bt_breaker_change *ch)
{
    if (!ch->changed)
        return;
    bt_resil *rs = c->rs;
    const char *from = bt_breaker_state_name(ch->from), *to = bt_breaker_state_name(ch->to);
    if (ch->to == BT_BREAKER_OPEN)
        bt_log_warn(rs->env.log, "circuit breaker opened", BT_LF_STR("agent", a->name),
                    BT_LF_STR("from", from), BT_LF_STR("reason", ch->reason),
                    BT_LF_INT("retry_in_ms", a->br.recovery_ms));
    else
        bt_log_info(rs->env.log, "circuit breaker changed", BT_LF_STR("agent", a->name),
                    BT_LF_STR("from", from), BT_LF_STR("to", to), BT_LF_STR("reason", ch->reason));
    emit(
        rs, "agent.breaker", c,
        json_pack("{ss ss ss ss}", "agent", a->name, "from", from, "to", to, "reason", ch->reason));
}

/* Does this failed result count against the agent's breaker? Transient errors and
 * timeouts do, and permanent errors on the provider's side (HTTP 4xx, a missing
 * program, a CLI that never ran); a CLI that ran and reported the task failed does not,
 * nor does a cancellation. */
static int breaker_failure(const agent_st *a, const bt_agent_result *r)
{
    switch (r->error_class) {
    case BT_AGENT_TRANSIENT:
    case BT_AGENT_TIMEOUT:
        return 1;
    case BT_AGENT_PERMANENT:
        if (a->agent && strcmp(bt_agent_kind(a->agent), "cli") == 0 && r->exit_code >= 0 &&
            !r->term_signal)
            return 0;
        return 1;
    default:
        return 0;
    }
}

static const char *class_name(bt_agent_error_class c)
{
    switch (c) {
    case BT_AGENT_OK:
    case BT_AGENT_CANCELLED:
        return NULL;
    case BT_AGENT_TRANSIENT:
        return "transient";
    case BT_AGENT_TIMEOUT:
        return "timeout";
    default:
        return "permanent";
    }
}

static void copy_last(bt_resil_call *c, const bt_agent_result *r)
{
    last_release(c);
    c->last = *r;
    c->last.output = bt_xstrdup(r->output ? r->output : "");
    c->last.error = bt_xstrdup(r->error ? r->error : "");
    c->last.model = bt_xstrdup(r->model ? r->model : "");
    c->last.agent = bt_xstrdup(r->agent ? r->agent : c->cur->name);
    c->have_last = 1;
    free(c->last_agent);
    c->last_agent = bt_xstrdup(c->cur->name);
}

/* Record a finished call: statistics, store row, event. */
static void record_call(bt_resil_call *c, const bt_agent_result *r, const char *outcome,
                        const char *cls, int64_t now)
{
    bt_resil *rs = c->rs;
    agent_st *a = c->cur;
    bt_agentstats_call sc = {.at = now,
                             .duration_ms = r->duration_ms,
                             .outcome = strcmp(outcome, "success") == 0   ? BT_AGENTSTATS_SUCCESS
                                        : strcmp(outcome, "failure") == 0 ? BT_AGENTSTATS_FAILURE
                                                                          : BT_AGENTSTATS_CANCELLED,
                             .error_class = bt_agentstats_class_parse(cls)};
    bt_agentstats_add(a->stats, &sc);
    int64_t tokens = r->tokens_in + r->tokens_out;
    if (rs->env.store) {
        bt_agent_call row = {.agent = a->name,
                             .outcome = (char *)outcome,
                             .error_class = (char *)cls,
                             .duration_ms = r->duration_ms > 0 ? r->duration_ms : 0,
                             .tokens = tokens > 0 ? tokens : 0,
                             .at = now > 0 ? now : 1};
        if (c->task_id)
            snprintf(row.task_id, sizeof row.task_id, "%s", c->task_id);
        bt_store_agent_call_add(rs->env.store, &row, on_call_written, rs->env.log);
    }
    emit(rs, "agent.call", c,
         json_pack("{ss ss so sI sI ss}", "agent", a->name, "outcome", outcome, "error_class",
                   cls ? json_string(cls) : json_null(), "duration_ms", (json_int_t)r->duration_ms,
                   "tokens", (json_int_t)tokens, "provider", a->prov->name));
}

/* Move to the next agent of the chain after attempt `why` of the current one. */
static void next_agent(bt_resil_call *c, const char *why)
{
    const char *from = c->chain[c->pos];
    c->pos++;
    c->cur = NULL;
    c->allowed = c->probe = 0;
    memset(c->h, 0, sizeof c->h);
    if (c->pos < c->nchain && !c->cancelled) {
        bt_strbuf m = BT_STRBUF_INIT;
        bt_strbuf_addf(&m, "%s: %s; falling back to %s", from, why, c->chain[c->pos]);
        status(c, "fallback",
               json_pack("{ss ss ss}", "from", from, "to", c->chain[c->pos], "reason", m.buf));
        bt_strbuf_release(&m);
    }
    advance(c);
}

static void on_agent_event(const bt_agent_event *ev, void *ud)
{
    bt_resil_call *c = ud;
    if (c->on_event)
        c->on_event(ev, c->ud);
}

static void on_agent_done(const bt_agent_result *r, void *ud)
{
    bt_resil_call *c = ud;
    bt_resil *rs = c->rs;
    agent_st *a = c->cur;
    c->run = NULL;
    int64_t now = now_ms(rs);
    int cancelled = r->error_class == BT_AGENT_CANCELLED || (c->cancelled && !r->success);
    const char *outcome = r->success ? "success" : cancelled ? "cancelled" : "failure";
    const char *cls = r->success || cancelled ? NULL : class_name(r->error_class);
    /* it ran and said the task failed: recorded as class "task", which a restored
     * breaker does not count (agentstats.h) */
    const char *rec_cls = !r->success && !cancelled && !breaker_failure(a, r) ? "task" : cls;

    bt_breaker_change ch = {0};
    if (cancelled)
        bt_breaker_release(&a->br, c->probe);
    else
        bt_breaker_record(&a->br, now, r->success || !breaker_failure(a, r), c->probe, &ch);
    c->allowed = 0;
    emit_breaker(c, a, &ch);

    /* the reported usage replaces the estimate in the token windows */
    int64_t tokens = r->tokens_in + r->tokens_out;
    if (tokens > 0) {
        if (a->tok.rl)
            bt_ratelimit_adjust(a->tok.rl, c->h[1], tokens);
        if (a->prov->tok.rl)
            bt_ratelimit_adjust(a->prov->tok.rl, c->h[3], tokens);
    }
    if (!r->success && r->retry_after_ms > 0) {
        bt_ratelimit_block_until(a->prov->req.rl, now + r->retry_after_ms);
        bt_log_info(rs->env.log, "provider asked to wait (Retry-After)",
                    BT_LF_STR("provider", a->prov->name), BT_LF_STR("agent", a->name),
                    BT_LF_INT("wait_ms", r->retry_after_ms));
    }
    record_call(c, r, outcome, rec_cls, now);
    copy_last(c, r);
    attempt_add(c, a->name, outcome, cls, r->success ? "" : r->error, c->waited_ms, r->duration_ms);
    if (rs->wq_head)
        pump(rs); /* corrected token counts may admit a waiter */

    if (r->success || cancelled) {
        if (cancelled)
            c->cancelled = 1;
        finish(c, 1);
        return;
    }
    if (r->error_class == BT_AGENT_PERMANENT && c->pos == 0) {
        finish(c, 1); /* the primary's own error: no fallback (seed 004) */
        return;
    }
    bt_strbuf why = BT_STRBUF_INIT;
    bt_strbuf_addf(&why, "%s error: %s", cls, r->error);
    next_agent(c, why.buf);
    bt_strbuf_release(&why);
}

/* The pump admitted the call: start its agent. */
static void launch(bt_resil_call *c)
{
    bt_resil *rs = c->rs;
    agent_st *a = c->cur;
    if (c->cancelled) {
        untake(c);
        if (c->allowed)
            bt_breaker_release(&a->br, c->probe);
        attempt_add(c, a->name, "cancelled", NULL, "cancelled while waiting", c->waited_ms, 0);
        finish(c, 1);
        return;
    }
    /* the breaker may have opened while the call waited */
    if (!c->probe && bt_breaker_state_at(&a->br, now_ms(rs)) != BT_BREAKER_CLOSED) {
        bt_breaker_change ch;
        bt_breaker_verdict v = bt_breaker_allow(&a->br, now_ms(rs), &ch);
        emit_breaker(c, a, &ch);
        if (v == BT_BREAKER_REJECT) {
            untake(c);
            c->allowed = 0;
            char msg[160];
            snprintf(msg, sizeof msg, "circuit breaker %s", bt_breaker_state_name(a->br.state));
            attempt_add(c, a->name, "rejected", "transient", msg, c->waited_ms, 0);
            status(c, "rejected",
                   json_pack("{ss ss so}", "agent", a->name, "state",
                             bt_breaker_state_name(a->br.state), "retry_at",
                             ms_or_null(bt_breaker_retry_at(&a->br))));
            next_agent(c, msg);
            return;
        }
        c->probe = v == BT_BREAKER_PROBE;
    }
    bt_agent_request rq = {.prompt = c->prompt,
                           .system = c->system,
                           .context = c->context,
                           .workspace = c->workspace,
                           .timeout_ms = c->timeout_ms,
                           .stall_timeout_ms = c->stall_timeout_ms,
                           .max_output = c->max_output,
                           .record_path = c->record_path,
                           .on_event = on_agent_event,
                           .on_done = on_agent_done,
                           .ud = c};
    bt_error err = BT_ERROR_INIT;
    c->phase = PH_RUNNING;
    if (bt_agent_start(a->agent, &rq, &c->run, &err) < 0) {
        /* the request cannot run on this agent (workspace missing, no HTTP client): not
         * the agent's health, so the breaker does not count it */
        c->run = NULL;
        untake(c);
        bt_breaker_release(&a->br, c->probe);
        c->allowed = 0;
        attempt_add(c, a->name, "failure", "permanent", err.msg, c->waited_ms, 0);
        if (c->pos == 0) {
            finish(c, 1);
            return;
        }
        next_agent(c, err.msg);
    }
}

/* Find the next agent of the chain that may run, or end the call. From loop callbacks
 * only. */
static void advance(bt_resil_call *c)
{
    bt_resil *rs = c->rs;
    while (c->pos < c->nchain) {
        if (c->cancelled) {
            finish(c, 1);
            return;
        }
        const char *name = c->chain[c->pos];
        agent_st *a = agent_of(rs, name);
        char msg[512];
        if (!a || !a->agent || (rs->offline && !bt_agent_is_local(a->agent))) {
            int offline = a && a->agent;
            if (!a)
                snprintf(msg, sizeof msg,
                         "agent %s is not configured (add it under agents: in baton.yaml)", name);
            else if (!a->agent)
                snprintf(msg, sizeof msg, "agent %s cannot be used: %s", name,
                         a->unusable ? a->unusable : "it could not be built");
            else
                snprintf(msg, sizeof msg, "offline: %s is a remote agent", name);
            attempt_add(c, name, "skipped", offline ? "transient" : "permanent", msg, 0, 0);
            status(c, "skipped", json_pack("{ss ss}", "agent", name, "reason", msg));
            const char *from = name;
            c->pos++;
            if (c->pos < c->nchain && !c->cancelled)
                status(
                    c, "fallback",
                    json_pack("{ss ss ss}", "from", from, "to", c->chain[c->pos], "reason", msg));
            continue;
        }
        int64_t now = now_ms(rs);
        bt_breaker_change ch;
        bt_breaker_verdict v = bt_breaker_allow(&a->br, now, &ch);
        emit_breaker(c, a, &ch);
        if (v == BT_BREAKER_REJECT) {
            const char *st = bt_breaker_state_name(a->br.state);
            snprintf(msg, sizeof msg, "circuit breaker %s%s", st,
                     a->br.state == BT_BREAKER_HALF_OPEN ? " (its probe call is running)" : "");
            attempt_add(c, name, "rejected", "transient", msg, 0, 0);
            status(c, "rejected",
                   json_pack("{ss ss so}", "agent", name, "state", st, "retry_at",
                             ms_or_null(bt_breaker_retry_at(&a->br))));
            const char *from = name;
            c->pos++;
            if (c->pos < c->nchain && !c->cancelled)
                status(
                    c, "fallback",
                    json_pack("{ss ss ss}", "from", from, "to", c->chain[c->pos], "reason", msg));
            continue;
        }
        c->cur = a;
        c->allowed = 1;
        c->probe = v == BT_BREAKER_PROBE;
        memset(c->h, 0, sizeof c->h);
        c->waited_ms = 0;
        enqueue(c);
        return;
    }
    finish(c, 1);
}

static void on_soon(uv_timer_t *t)
{
    bt_resil *rs = t->data;
    bt_resil_call *list = rs->soon_head, *next;
    rs->soon_head = rs->soon_tail = NULL;
    for (bt_resil_call *c = list; c; c = next) {
        next = c->snext;
        c->in_soon = 0;
        if (c->phase == PH_DONE)
            deliver(c);
        else if (c->phase == PH_NEW)
            advance(c);
    }
}

/* ---- calls ---- */

int bt_resil_call_start(bt_resil *rs, const bt_resil_request *rq, bt_resil_call **call,
                        bt_error *err)
{
    if (call)
        *call = NULL;
    if (!rq || !rq->chain || rq->nchain == 0)
        return bt_errorf(err, BT_EINVAL, "an agent call needs at least one agent to run");
    if (!rq->agent.prompt)
        return bt_errorf(err, BT_EINVAL, "an agent call needs a prompt");
    if (!rq->on_done)
        return bt_errorf(err, BT_EINVAL, "an agent call needs on_done");
    for (size_t i = 0; i < rq->nchain; i++)
        if (!rq->chain[i] || !*rq->chain[i])
            return bt_errorf(err, BT_EINVAL, "agent %zu of the call's chain has no name", i + 1);
    bt_resil_call *c = bt_xcalloc(1, sizeof *c);
    c->rs = rs;
    c->chain = bt_xcalloc(rq->nchain, sizeof *c->chain);
    c->nchain = rq->nchain;
    for (size_t i = 0; i < rq->nchain; i++)
        c->chain[i] = bt_xstrdup(rq->chain[i]);
    const bt_agent_request *a = &rq->agent;
    c->prompt = bt_xstrdup(a->prompt);
    c->system = bt_xstrdup(a->system);
    c->context = bt_xstrdup(a->context);
    c->workspace = bt_xstrdup(a->workspace);
    c->record_path = bt_xstrdup(a->record_path);
    c->timeout_ms = a->timeout_ms;
    c->stall_timeout_ms = a->stall_timeout_ms;
    c->max_output = a->max_output;
    c->on_event = a->on_event;
    c->task_id = rq->task_id && *rq->task_id ? bt_xstrdup(rq->task_id) : NULL;
    c->run_id = rq->run_id && *rq->run_id ? bt_xstrdup(rq->run_id) : NULL;
    c->on_status = rq->on_status;
    c->on_done = rq->on_done;
    c->ud = rq->ud;
    /* tokens before the call: about four bytes a token for the input; the reported usage
     * replaces this when the call ends */
    size_t bytes = strlen(a->prompt) + (a->system ? strlen(a->system) : 0) +
                   (a->context ? strlen(a->context) : 0);
    c->est_tokens = (int64_t)(bytes / 4) + 1;
    c->phase = PH_NEW;
    c->next = rs->calls;
    if (rs->calls)
        rs->calls->prev = c;
    rs->calls = c;
    soon_push(c);
    if (call)
        *call = c;
    return 0;
}

void bt_resil_call_cancel(bt_resil_call *c)
{
    if (!c || c->cancelled || c->phase == PH_DONE)
        return;
    c->cancelled = 1;
    switch (c->phase) {
    case PH_RUNNING:
        if (c->run)
            bt_agent_run_cancel(c->run);
        break;
    case PH_QUEUED:
        wq_remove(c);
        if (c->allowed)
            bt_breaker_release(&c->cur->br, c->probe);
        c->allowed = 0;
        attempt_add(c, c->cur->name, "cancelled", NULL,
                    "cancelled while waiting for the rate limit", now_ms(c->rs) - c->queued_at, 0);
        finish(c, 0);
        if (c->rs->wq_head)
            uv_timer_start(c->rs->wake, on_wake, 0, 0); /* it may have held others up */
        break;
    default:
        break; /* NEW: the next step sees the flag; LAUNCH: launch() does */
    }
}

/* ---- statistics at start-up ---- */

static void load_fire(load_ctx *lc, int rc, const bt_error *err)
{
    if (lc->rs)
        lc->rs->loading = NULL;
    lc->cb(lc->ud, rc, err);
    free(lc);
}

static void on_calls(void *ud, int rc, const bt_error *err, bt_agent_call *const *calls, size_t n)
{
    load_ctx *lc = ud;
    bt_resil *rs = lc->rs;
    if (!rs || rc < 0) {
        load_fire(lc, rc, err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        agent_st *a = agent_of(rs, calls[i]->agent);
        if (!a)
            continue;
        const char *o = calls[i]->outcome;
        bt_agentstats_call sc = {.at = calls[i]->at,
                                 .duration_ms = calls[i]->duration_ms,
                                 .outcome = strcmp(o, "success") == 0   ? BT_AGENTSTATS_SUCCESS
                                            : strcmp(o, "failure") == 0 ? BT_AGENTSTATS_FAILURE
                                                                        : BT_AGENTSTATS_CANCELLED,
                                 .error_class = bt_agentstats_class_parse(calls[i]->error_class)};
        bt_agentstats_add(a->stats, &sc);
    }
    int64_t now = now_ms(rs);
    for (size_t i = 0; i < rs->nagents; i++) {
        agent_st *a = rs->agents[i];
        bt_agentstats_summary s;
        bt_agentstats_get(a->stats, now, &s);
        bt_breaker_restore(&a->br, s.trailing_failures, s.last_failure_at);
        if (a->br.state == BT_BREAKER_OPEN && !rs->env.read_only) {
            bt_log_warn(rs->env.log, "circuit breaker restored open", BT_LF_STR("agent", a->name),
                        BT_LF_INT("consecutive_failures", s.trailing_failures),
                        BT_LF_INT("retry_at", bt_breaker_retry_at(&a->br)));
            /* the transition the metrics' state gauge follows after a restart */
            emit(rs, "agent.breaker", NULL,
                 json_pack("{ss ss ss ss}", "agent", a->name, "from", "closed", "to", "open",
                           "reason", "restored from history: the last calls failed"));
        }
    }
    load_fire(lc, 0, NULL);
}

static void on_pruned(void *ud, int rc, const bt_error *err, int64_t count)
{
    load_ctx *lc = ud;
    bt_resil *rs = lc->rs;
    if (!rs) {
        bt_error gone = BT_ERROR_INIT;
        load_fire(lc, bt_errorf(&gone, BT_ECANCELED, "the resilience wrapper was freed"), &gone);
        return;
    }
    if (rc < 0)
        bt_log_warn(rs->env.log, "old agent calls not pruned", BT_LF_STR("error", err->msg));
    else if (count > 0)
        bt_log_info(rs->env.log, "old agent calls pruned", BT_LF_INT("count", count));
    const bt_config_resilience *rc_ = &rs->env.cfg->resilience;
    int64_t since = rc_->stats_max_age_ms > 0 ? now_ms(rs) - rc_->stats_max_age_ms : 0;
    bt_store_agent_calls(rs->env.store, since > 0 ? since : 0, (int)rc_->stats_window, on_calls,
                         lc);
}

static void on_load_soon(uv_timer_t *t)
{
    load_ctx *lc = t->data;
    uv_close((uv_handle_t *)t, on_timer_closed);
    load_fire(lc, 0, NULL);
}

void bt_resil_load(bt_resil *rs, bt_resil_loaded_fn cb, void *ud)
{
    load_ctx *lc = bt_xcalloc(1, sizeof *lc);
    lc->rs = rs;
    lc->cb = cb;
    lc->ud = ud;
    rs->loading = lc;
    if (!rs->env.store) {
        uv_timer_t *t = bt_xcalloc(1, sizeof *t);
        uv_timer_init(rs->env.loop, t);
        t->data = lc;
        uv_timer_start(t, on_load_soon, 0, 0);
        return;
    }
    int64_t age = rs->env.cfg->resilience.stats_max_age_ms;
    if (age > 0 && !rs->env.read_only)
        bt_store_agent_calls_prune(rs->env.store, now_ms(rs) - age, on_pruned, lc);
    else
        on_pruned(lc, 0, NULL, 0);
}

/* ---- what the planner and listings read ---- */

int bt_resil_loaded(const bt_resil *rs)
{
    return rs->loading == NULL;
}

int bt_resil_health_of(const bt_resil *rs, const char *agent, bt_resil_health *out)
{
    const agent_st *a = agent ? agent_of(rs, agent) : NULL;
    if (!a)
        return BT_ENOENT;
    int64_t now = now_ms(rs);
    bt_agentstats_summary s;
    bt_agentstats_get(a->stats, now, &s);
    bt_breaker_state st = bt_breaker_state_at(&a->br, now);
    out->breaker = bt_breaker_state_name(st);
    out->calls = s.calls;
    out->success_rate = s.success_rate;
    out->usable =
        a->agent && st != BT_BREAKER_OPEN && (!rs->offline || bt_agent_is_local(a->agent));
    return 0;
}

static json_t *limit_json(int64_t requests, int64_t tokens, int64_t per_ms, int waiting,
                          int64_t blocked_until, int64_t now)
{
    return json_pack("{sI sI sI si so}", "requests", (json_int_t)requests, "tokens",
                     (json_int_t)tokens, "per_ms", (json_int_t)per_ms, "waiting", waiting,
                     "blocked_until", ms_or_null(blocked_until > now ? blocked_until : 0));
}

json_t *bt_resil_agent_json(const bt_resil *rs, const char *agent)
{
    const agent_st *a = agent ? agent_of(rs, agent) : NULL;
    if (!a)
        return NULL;
    int64_t now = now_ms(rs);
    bt_agentstats_summary s;
    bt_agentstats_get(a->stats, now, &s);
    bt_breaker_state st = bt_breaker_state_at(&a->br, now);
    json_t *br = json_pack(
        "{ss sI sI sI so so}", "state", bt_breaker_state_name(st), "consecutive_failures",
        (json_int_t)a->br.consecutive, "failure_threshold", (json_int_t)a->br.threshold,
        "recovery_timeout_ms", (json_int_t)a->br.recovery_ms, "opened_at",
        a->br.state != BT_BREAKER_CLOSED ? json_integer((json_int_t)a->br.opened_at) : json_null(),
        "retry_at",
        a->br.state != BT_BREAKER_CLOSED ? json_integer((json_int_t)bt_breaker_retry_at(&a->br))
                                         : json_null());
    json_t *classes = json_object();
    for (int k = 1; k < BT_AGENTSTATS__CLASSES; k++)
        json_object_set_new(classes, bt_agentstats_class_name((bt_agentstats_class)k),
                            json_integer((json_int_t)s.errors[k]));
    json_t *lat = s.calls ? json_pack("{sI sI sI sI}", "p50", (json_int_t)s.p50_ms, "p90",
                                      (json_int_t)s.p90_ms, "p99", (json_int_t)s.p99_ms, "max",
                                      (json_int_t)s.max_ms)
                          : json_null();
    json_t *stats = json_pack("{sI sI sI sI so so so sI so}", "calls", (json_int_t)s.calls,
                              "successes", (json_int_t)s.successes, "failures",
                              (json_int_t)s.failures, "cancelled", (json_int_t)s.cancelled,
                              "success_rate", s.calls ? json_real(s.success_rate) : json_null(),
                              "latency_ms", lat, "error_classes", classes, "window",
                              (json_int_t)s.window, "last_call_at", ms_or_null(s.last_call_at));
    json_t *rl = limit_json(a->requests, a->tokens, a->per_ms, a->waiting,
                            bt_ratelimit_blocked_until(a->prov->req.rl), now);
    return json_pack("{ss ss sb so so so}", "name", a->name, "provider", a->prov->name, "local",
                     a->agent && bt_agent_is_local(a->agent), "breaker", br, "stats", stats,
                     "rate_limit", rl);
}

json_t *bt_resil_json(const bt_resil *rs)
{
    int64_t now = now_ms(rs);
    json_t *agents = json_object();
    for (size_t i = 0; i < rs->nagents; i++)
        json_object_set_new(agents, rs->agents[i]->name,
                            bt_resil_agent_json(rs, rs->agents[i]->name));
    json_t *provs = json_object();
    size_t n = 0;
    const char **keys = bt_map_keys_sorted(rs->providers, &n);
    for (size_t i = 0; i < n; i++) {
        const provider *p = bt_map_get(rs->providers, keys[i]);
        json_t *pj = limit_json(p->requests, p->tokens, p->per_ms, p->waiting,
                                bt_ratelimit_blocked_until(p->req.rl), now);
        json_t *names = json_array();
        for (size_t k = 0; k < rs->nagents; k++)
            if (rs->agents[k]->prov == p)
                json_array_append_new(names, json_string(rs->agents[k]->name));
        json_object_set_new(pj, "agents", names);
        json_object_set_new(provs, p->name, pj);
    }
    free(keys);
    return json_pack("{sb so so}", "offline", rs->offline, "agents", agents, "providers", provs);
}
