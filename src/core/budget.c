/*
 * budget.c - the budget check (budget.h): one bt_store_spend per limit that is set and
 * applies, all issued at once, then one verdict naming the limit that stops new agent
 * work, with a message saying how much was spent and how to go on.
 */
#include <stddef.h> /* before store.h: base/id.h uses size_t */

#include "core/budget.h"

#include "base/mem.h"
#include "base/strbuf.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS      86400000LL
#define USD_EPSILON 1e-9 /* spent this close under a limit has reached it */

/* Limits in verdict precedence: the first exhausted one is reported. */
enum { L_TASK = 0, L_PROJECT, L_DAY, L__COUNT };
static const char *const limit_names[L__COUNT] = {"per_task", "per_project", "per_day"};

typedef struct check check;

typedef struct slot {
    check *c;
    int limit; /* L_* */
} slot;

struct check {
    bt_config_budgets b; /* copied: the config may change while we wait */
    char *task_id, *project;
    bt_budget_cb cb;
    void *ud;
    int pending;
    bool asked[L__COUNT];
    double spent[L__COUNT];
    int rc; /* first store error */
    bt_error err;
    slot slots[L__COUNT];
    uv_timer_t timer; /* only when nothing is asked of the store */
};

int64_t bt_budget_day_start(int64_t now_ms)
{
    int64_t r = now_ms % DAY_MS;
    if (r < 0)
        r += DAY_MS;
    return now_ms - r;
}

/* "$2.41"; amounts under a dollar that cents do not show exactly keep up to 4 decimals
 * ("$0.0012"), so a small local-model budget never reads "$0.00 of $0.00". */
static void add_usd(bt_strbuf *sb, double v)
{
    double cents = v * 100.0;
    if (fabs(v) >= 0.995 || fabs(cents - round(cents)) < 1e-6) {
        bt_strbuf_addf(sb, "$%.2f", v);
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.4f", v);
    size_t n = strlen(buf);
    while (n > 3 && buf[n - 1] == '0' && buf[n - 3] != '.') /* keep two decimals */
        buf[--n] = 0;
    bt_strbuf_addf(sb, "$%s", buf);
}

static void check_free(check *c)
{
    free(c->task_id);
    free(c->project);
    free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    check_free(h->data);
}

/* Decide, call back, free (the timer, when used, frees on its close callback). */
static void finish(check *c, bool via_timer)
{
    bt_budget_verdict v = {.allowed = 1};
    bt_strbuf msg = BT_STRBUF_INIT;
    if (c->rc) {
        v.allowed = 0;
        v.rc = c->rc;
        bt_strbuf_addf(&msg,
                       "cannot check budgets, so no new agent work starts until the store "
                       "answers: %s; retry once the store is back, or set budgets.per_task, "
                       "budgets.per_project and budgets.per_day to 0 to run without budget "
                       "checks",
                       c->err.msg);
    } else {
        const double limits[L__COUNT] = {c->b.per_task, c->b.per_project, c->b.per_day};
        int hit = -1;
        for (int i = 0; i < L__COUNT && hit < 0; i++)
            if (c->asked[i] && c->spent[i] >= limits[i] - USD_EPSILON)
                hit = i;
        if (hit >= 0) {
            v.allowed = 0;
            v.which = limit_names[hit];
            v.spent = c->spent[hit];
            v.limit = limits[hit];
            bt_strbuf_addstr(&msg, "budget exhausted: ");
            if (hit == L_TASK) {
                bt_strbuf_addf(&msg, "task %s has spent ", c->task_id);
                add_usd(&msg, v.spent);
                bt_strbuf_addstr(&msg, " of its ");
                add_usd(&msg, v.limit);
                bt_strbuf_addstr(&msg, " budget (budgets.per_task); raise budgets.per_task or "
                                       "cancel the task");
            } else if (hit == L_PROJECT) {
                bt_strbuf_addf(&msg, "project %s has spent ", c->project);
                add_usd(&msg, v.spent);
                bt_strbuf_addstr(&msg, " of its ");
                add_usd(&msg, v.limit);
                bt_strbuf_addstr(&msg, " budget (budgets.per_project); raise "
                                       "budgets.per_project or cancel the project's open tasks");
            } else {
                bt_strbuf_addstr(&msg, "today's spend is ");
                add_usd(&msg, v.spent);
                bt_strbuf_addstr(&msg, " of ");
                add_usd(&msg, v.limit);
                bt_strbuf_addstr(&msg, " (budgets.per_day); new agent work resumes at 00:00 UTC "
                                       "or raise budgets.per_day");
            }
        }
    }
    v.message = v.allowed ? NULL : bt_strbuf_cstr(&msg);
    c->cb(c->ud, &v);
    bt_strbuf_release(&msg);
    if (via_timer)
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    else
        check_free(c);
}

static void on_spend(void *ud, int rc, const bt_error *err, const bt_spend *sp)
{
    slot *sl = ud;
    check *c = sl->c;
    if (rc) {
        if (!c->rc) {
            c->rc = rc;
            c->err = *err;
        }
    } else {
        c->spent[sl->limit] = sp->cost_usd;
    }
    if (--c->pending == 0)
        finish(c, false);
}

static void on_timer(uv_timer_t *t)
{
    finish(t->data, true);
}

void bt_budget_check(bt_store *s, const bt_config_budgets *b, const char *task_id,
                     const char *project, int64_t now_ms, bt_budget_cb cb, void *ud)
{
    check *c = bt_xcalloc(1, sizeof *c);
    if (b)
        c->b = *b;
    c->task_id = task_id ? bt_xstrdup(task_id) : NULL;
    c->project = project ? bt_xstrdup(project) : NULL;
    c->cb = cb;
    c->ud = ud;
    c->asked[L_TASK] = c->b.per_task > 0 && c->task_id;
    c->asked[L_PROJECT] = c->b.per_project > 0 && c->project;
    c->asked[L_DAY] = c->b.per_day > 0;
    bt_spend_query q[L__COUNT] = {
        [L_TASK] = {.task_id = c->task_id},
        [L_PROJECT] = {.project = c->project},
        [L_DAY] = {.since_ms = bt_budget_day_start(now_ms)},
    };
    /* A day that starts at the epoch would read as "no bound" (since 0); 1 ms later is
     * the same day for every step a real clock records. */
    if (q[L_DAY].since_ms <= 0)
        q[L_DAY].since_ms = 1;
    for (int i = 0; i < L__COUNT; i++)
        c->pending += c->asked[i];
    if (c->pending == 0) {
        /* Nothing to ask, but the callback still comes later, on the loop. */
        uv_timer_init(bt_store_loop(s), &c->timer);
        c->timer.data = c;
        uv_timer_start(&c->timer, on_timer, 0, 0);
        return;
    }
    /* Callbacks never run before bt_store_spend returns, so pending is complete before
     * the first one can arrive. */
    for (int i = 0; i < L__COUNT; i++) {
        if (!c->asked[i])
            continue;
        c->slots[i].c = c;
        c->slots[i].limit = i;
        bt_store_spend(s, &q[i], on_spend, &c->slots[i]);
    }
}
