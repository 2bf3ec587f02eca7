/*
 * budget.h - the budget check (config `budgets`): may new agent work start, given what
 * has been spent? The workflow engine asks before every agent step.
 *
 * Limits (USD; 0 = unlimited, and an unlimited limit costs no store call):
 *   per_task    - everything the task's finished steps cost, over all its runs;
 *   per_project - everything the finished steps of the project's tasks cost (only when
 *                 a project is given);
 *   per_day     - everything every finished step cost since 00:00 UTC of now_ms.
 * A limit is exhausted when spent >= limit (to a billionth of a dollar, so a sum of
 * cents that lands a hair under the limit in floating point still counts as reached).
 * Spend is bt_store_spend over the store's history: the checks that are needed are
 * issued together (one loop turn; PostgreSQL pipelines them into one round trip).
 *
 * When several limits are exhausted, the verdict names the one that holds longest:
 * per_task (until raised or the task is cancelled), then per_project, then per_day
 * (lifts at midnight UTC).
 *
 * Fail closed: when the store cannot answer, the verdict is allowed = 0 with rc set, which
 * NULL and the store's error in the message. Spending money without knowing what was
 * spent is exactly what a budget is there to prevent. A caller should treat rc != 0 like
 * any other store error (retry later), not as an exhausted budget.
 */
#ifndef BT_BUDGET_H
#define BT_BUDGET_H

#include "config/config.h"
#include "store/store.h"

#include <stdint.h>

typedef struct bt_budget_verdict {
    int allowed;         /* 1: new agent work may start; 0: exhausted, or could not check */
    const char *which;   /* "per_task" | "per_project" | "per_day": the exhausted limit;
                            NULL when allowed or when the check failed */
    double spent, limit; /* USD, of `which` (0 when which is NULL) */
    const char *message; /* a sentence a person can act on; NULL when allowed */
    int rc;              /* 0, or the store's negative BT_E* code when the check failed */
} bt_budget_verdict;

/* The verdict and its strings are borrowed: valid only during the callback. */
typedef void (*bt_budget_cb)(void *ud, const bt_budget_verdict *v);

/* Checks the limits of b (NULL: none) that are > 0 for the task (task_id NULL: per_task is not
 * checked) and its project (NULL: per_project is not checked) at wall-clock now_ms, then
 * calls cb exactly once, on the store's loop, never before this function returns (also
 * when nothing needs checking). b, task_id and project are copied: the caller may change
 * or free them at once (PUT /api/config replaces the budgets while checks run). */
void bt_budget_check(bt_store *s, const bt_config_budgets *b, const char *task_id,
                     const char *project, int64_t now_ms, bt_budget_cb cb, void *ud);

/* 00:00 UTC of the day that contains now_ms (what per_day counts from). */
int64_t bt_budget_day_start(int64_t now_ms);

#endif
