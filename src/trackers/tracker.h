/*
 * tracker.h - the interface between the orchestrator and an issue tracker (DESIGN.md
 * §2a): trackers only translate. Inward they turn issues into normalised work items
 * (bt_tracker_item) that the core's intake stores; outward they write back what the
 * completion stage tells them (labels, a comment, a pull request) and answer the
 * reconciliation's question "is this item still wanted?". The core talks to this
 * interface only; github.c (and later jira.c, azure.c) implement it.
 *
 * Every callback runs exactly once, from a loop callback.
 */
#ifndef BT_TRACKER_H
#define BT_TRACKER_H

#include "base/error.h"
#include "base/vec.h"

#include <jansson.h>
#include <stdint.h>

#define BT_TRACKER_PRIORITY_NONE INT32_MAX /* == BT_PRIORITY_NONE of store.h */

/* A normalised work item (Symphony §4.1.1). Everything borrowed for the callback that
 * hands it over. */
typedef struct bt_tracker_item {
    const char *source;      /* "github" (== the task's source) */
    const char *external_id; /* the tracker's id: "42" */
    const char *dedupe_key;  /* "github:owner/repo#42" */
    const char *identifier;  /* "owner/repo#42" (workspace key, logs) */
    const char *title;
    const char *body;     /* may be "" */
    const char *url;      /* the page, or NULL */
    const json_t *labels; /* array of lower-cased label names */
    int32_t priority;     /* from a "priority:high|p1|..." label; BT_TRACKER_PRIORITY_NONE */
    const json_t *meta;   /* object: {"issue_number":42,"repository":"owner/repo",
                           * "html_url":...,"author":...} (becomes the task's meta) */
} bt_tracker_item;

/* Reconciliation answer for one item. */
typedef enum bt_tracker_state {
    BT_TRACKER_ACTIVE = 0,   /* open and still carrying a watched or in-progress label */
    BT_TRACKER_INACTIVE = 1, /* open but no longer asking for work (label removed) */
    BT_TRACKER_TERMINAL = 2, /* closed (or deleted): stop and clean the workspace */
    BT_TRACKER_UNKNOWN = 3,  /* could not tell (network, rate limit): keep running */
} bt_tracker_state;

/* What the completion stage reports about an item that reached its final state.
 * Borrowed for the call. */
typedef struct bt_tracker_outcome {
    const char *external_id;
    const json_t *meta; /* the task's meta */
    const char *task_id, *run_id;
    int success;          /* 1 completed, 0 failed for good (after the last retry) */
    const char *summary;  /* the run's final output (trimmed by the tracker), or NULL */
    const char *error;    /* failure message, or NULL */
    const char *pr_url;   /* the pull request opened for the work, or NULL */
    const char *pr_error; /* why no pull request could be opened, or NULL */
    const char *branch;   /* the pushed branch, or NULL */
    int64_t tokens_in, tokens_out;
    double cost_usd;
    int attempts;
} bt_tracker_outcome;

/* A pull request to open from a pushed branch. Borrowed for the call. */
typedef struct bt_tracker_pr {
    const char *external_id;
    const json_t *meta;
    const char *branch; /* head */
    const char *base;   /* NULL = the repository's default branch */
    const char *title;
    const char *body;
} bt_tracker_pr;

typedef void (*bt_tracker_done_fn)(int rc, const bt_error *err, void *ud);
/* url: the pull request (opened, or found already open for that branch). */
typedef void (*bt_tracker_pr_fn)(int rc, const bt_error *err, const char *url, void *ud);
typedef void (*bt_tracker_state_fn)(bt_tracker_state state, const char *why, void *ud);

typedef struct bt_tracker bt_tracker;
typedef struct bt_tracker_ops {
    const char *name; /* "github": matches bt_task.source */
    /* Work on the item started (first claim): labels watched -> in-progress. */
    void (*started)(bt_tracker *t, const char *external_id, const json_t *meta,
                    bt_tracker_done_fn cb, void *ud);
    /* Open the pull request (or find the open one with that head). */
    void (*open_pr)(bt_tracker *t, const bt_tracker_pr *pr, bt_tracker_pr_fn cb, void *ud);
    /* The item reached its final state: comment (result or error), labels in-progress ->
     * completed / failed, close the issue when configured (success only). A partial
     * failure is reported (rc < 0) after every part that could be done was done. */
    void (*finished)(bt_tracker *t, const bt_tracker_outcome *o, bt_tracker_done_fn cb, void *ud);
    /* Reconciliation: the item's current state. */
    void (*refresh)(bt_tracker *t, const char *external_id, const json_t *meta,
                    bt_tracker_state_fn cb, void *ud);
    /* The clone URL of the item's repository (new string), or NULL when the tracker
     * has none (then only a project's repo can give one). */
    char *(*repo_url)(bt_tracker *t, const json_t *meta);
    /* "K=V" git credentials for that URL (bt_git_auth_env), appended to env. */
    int (*git_env)(bt_tracker *t, const char *repo_url, bt_strvec *env, bt_error *err);
} bt_tracker_ops;

struct bt_tracker {
    const bt_tracker_ops *ops;
    void *self; /* the implementation */
};

#endif
