/*
 * store_crasher.c - a store client for the crash test (tests/integration/
 * test_store_crash.py), which SIGKILLs it at random moments.
 *
 *   bt-store_crasher URL run PREFIX     enqueue PREFIX-<n> items forever, claim and
 *                                       complete them; some claims are abandoned so
 *                                       their leases expire
 *   bt-store_crasher URL drain PREFIX   requeue expired leases, claim and complete
 *                                       everything until nothing is open, then exit
 *   bt-store_crasher URL verify PREFIX  print "TASK <key> <status> <attempts>" for every
 *                                       task whose dedupe key starts with PREFIX
 *
 * Protocol on stdout, one flushed line per fact, printed only from the store's
 * callback (that is, once the write is durable):
 *   ACK <key>               the create of <key> was acknowledged
 *   CLAIM <key> <fencing>   <key> was claimed (run mode: a "run" begins)
 *   ABANDON <key>           the claim is left to expire
 *   DONE <key>              the complete of <key> was acknowledged
 */
#include <stddef.h>

#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEASE_MS     300
#define MAX_INFLIGHT 8
#define CLAIM_BATCH  8
#define MAX_ATTEMPTS 1000

typedef struct app {
    uv_loop_t loop;
    bt_store *s;
    const char *prefix;
    /* Every item is filed under this project (the prefix up to its first '-', common to all
     * rounds of one test run) and only such items are claimed, drained or listed, so other
     * tests' leftovers in a shared database are never touched. */
    char project[128];
    int mode; /* 0 run, 1 drain, 2 verify */
    long next;
    int creating;
    int claiming;
    int completing;
    int rc;
    uv_idle_t idle;
    uv_timer_t timer;
    char *cursor;
} app;

typedef struct done_ctx {
    app *a;
    char key[128];
} done_ctx;

/* One protocol line, flushed at once so a SIGKILL right after loses nothing printed. */
static void say(const char *verb, const char *key, long long n)
{
    if (n >= 0)
        printf("%s %s %lld\n", verb, key, n);
    else
        printf("%s %s\n", verb, key);
    fflush(stdout);
}

static void fatal(app *a, const char *what, const bt_error *err)
{
    fprintf(stderr, "store_crasher: %s: %s\n", what, err ? err->msg : "?");
    a->rc = 1;
    uv_stop(&a->loop);
}

static void on_created(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    done_ctx *c = ud;
    c->a->creating--;
    if (rc)
        fatal(c->a, "create", err);
    else
        say("ACK", t->dedupe_key, -1);
    free(c);
}

static void on_completed(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    done_ctx *c = ud;
    c->a->completing--;
    if (rc == 0)
        say("DONE", c->key, -1);
    else if (rc != BT_ESTALE) /* stale: its lease expired and it went to another claim */
        fatal(c->a, "complete", err);
    free(c);
}

static bool abandon(const bt_task *t)
{
    /* every 7th item is abandoned on its first attempt, so leases expire */
    size_t n = strlen(t->dedupe_key);
    return t->attempts == 1 && n > 0 && (t->dedupe_key[n - 1] - '0') % 7 == 3;
}

static void on_claimed(void *ud, int rc, const bt_error *err, bt_task *const *ts, size_t n,
                       const char *cursor)
{
    app *a = ud;
    a->claiming--;
    if (rc) {
        fatal(a, "claim", err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const bt_task *t = ts[i];
        const char *key = t->dedupe_key ? t->dedupe_key : t->id;
        say("CLAIM", key, (long long)t->fencing);
        if (a->mode == 0 && abandon(t)) {
            say("ABANDON", key, -1);
            continue;
        }
        done_ctx *c = calloc(1, sizeof *c);
        c->a = a;
        snprintf(c->key, sizeof c->key, "%s", key);
        a->completing++;
        bt_store_complete(a->s, t->id, t->lease_owner, t->fencing, NULL, on_completed, c);
    }
}

static void claim(app *a)
{
    char owner[64];
    snprintf(owner, sizeof owner, "crasher:%d", (int)getpid());
    bt_claim_opts o = {.owner = owner,
                       .lease_ms = a->mode == 0 ? LEASE_MS : 60000,
                       .max = CLAIM_BATCH,
                       .project = a->project};
    a->claiming++;
    bt_store_claim(a->s, &o, on_claimed, a);
}

static void on_idle_run(uv_idle_t *h)
{
    app *a = h->data;
    while (a->creating < MAX_INFLIGHT) {
        done_ctx *c = calloc(1, sizeof *c);
        c->a = a;
        snprintf(c->key, sizeof c->key, "%s-%ld", a->prefix, a->next++);
        bt_task_input in = {.source = "crasher",
                            .title = "crash test item",
                            .project = a->project,
                            .dedupe_key = c->key,
                            .priority = BT_PRIORITY_NONE,
                            .max_attempts = MAX_ATTEMPTS};
        a->creating++;
        bt_store_task_create(a->s, &in, on_created, c);
    }
    if (!a->claiming && a->completing < MAX_INFLIGHT)
        claim(a);
}

/* ---- drain ---- */
static void drain_step(app *a);
static void on_timer(uv_timer_t *t);

/* Done when none of this run's items is pending or in progress (only this project is
 * looked at: a shared database may hold other tests' items). */
static void on_open_listed(void *ud, int rc, const bt_error *err, bt_task *const *ts, size_t n,
                           const char *cursor)
{
    app *a = ud;
    (void)ts, (void)cursor;
    if (rc) {
        fatal(a, "list", err);
        return;
    }
    if (n == 0) {
        uv_stop(&a->loop);
        return;
    }
    uv_timer_start(&a->timer, on_timer, 50, 0); /* wait for leases to expire */
}

static void on_requeued(void *ud, int rc, const bt_error *err, int64_t n)
{
    app *a = ud;
    if (rc)
        fatal(a, "requeue_expired", err);
}

static void on_drain_claimed(void *ud, int rc, const bt_error *err, bt_task *const *ts, size_t n,
                             const char *cursor)
{
    app *a = ud;
    on_claimed(ud, rc, err, ts, n, cursor);
    if (a->rc)
        return;
    if (n == 0) {
        bt_task_filter f = {.limit = 1,
                            .project = a->project,
                            .status_mask = (1u << BT_TASK_PENDING) | (1u << BT_TASK_IN_PROGRESS)};
        bt_store_task_list(a->s, &f, on_open_listed, a);
    } else
        drain_step(a);
}

static void on_timer(uv_timer_t *t)
{
    drain_step(t->data);
}

static void drain_step(app *a)
{
    bt_store_requeue_expired(a->s, on_requeued, a);
    bt_claim_opts o = {.owner = "drainer", .lease_ms = 60000, .max = 64, .project = a->project};
    a->claiming++;
    bt_store_claim(a->s, &o, on_drain_claimed, a);
}

/* ---- verify ---- */
static void on_listed(void *ud, int rc, const bt_error *err, bt_task *const *ts, size_t n,
                      const char *cursor)
{
    app *a = ud;
    if (rc) {
        fatal(a, "list", err);
        return;
    }
    size_t plen = strlen(a->prefix);
    for (size_t i = 0; i < n; i++) {
        const bt_task *t = ts[i];
        if (t->dedupe_key && strncmp(t->dedupe_key, a->prefix, plen) == 0)
            printf("TASK %s %s %d\n", t->dedupe_key, bt_task_status_name(t->status), t->attempts);
    }
    free(a->cursor);
    a->cursor = cursor ? strdup(cursor) : NULL;
    if (a->cursor) {
        bt_task_filter f = {.limit = 1000, .cursor = a->cursor, .project = a->project};
        bt_store_task_list(a->s, &f, on_listed, a);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s URL run|drain|verify PREFIX\n", argv[0]);
        return 2;
    }
    app a = {0};
    a.prefix = argv[3];
    snprintf(a.project, sizeof a.project, "%.*s", (int)strcspn(a.prefix, "-"), a.prefix);
    a.mode = strcmp(argv[2], "run") == 0 ? 0 : strcmp(argv[2], "drain") == 0 ? 1 : 2;
    uv_loop_init(&a.loop);
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&a.loop, argv[1], NULL, &a.s, &err) != 0) {
        fprintf(stderr, "store_crasher: %s\n", err.msg);
        return 1;
    }
    uv_idle_init(&a.loop, &a.idle);
    a.idle.data = &a;
    uv_timer_init(&a.loop, &a.timer);
    a.timer.data = &a;
    if (a.mode == 0) {
        bt_store_requeue_expired(a.s, on_requeued, &a);
        uv_idle_start(&a.idle, on_idle_run);
    } else if (a.mode == 1) {
        drain_step(&a);
    } else {
        bt_task_filter f = {.limit = 1000, .project = a.project};
        bt_store_task_list(a.s, &f, on_listed, &a);
    }
    uv_run(&a.loop, UV_RUN_DEFAULT);
    fflush(stdout);
    bt_store_close(a.s);
    uv_close((uv_handle_t *)&a.idle, NULL);
    uv_close((uv_handle_t *)&a.timer, NULL);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    uv_loop_close(&a.loop);
    free(a.cursor);
    return a.rc;
}
