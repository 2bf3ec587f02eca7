/*
 * pg_claimer.c - a store client for the multi-process PostgreSQL tests
 * (tests/integration/test_pg_two_claimers.py). Each mode is one process; the test
 * runs several at once against one database and checks what they print.
 *
 *   bt-pg_claimer URL reset               drop the URL's ?schema=NAME (cascade)
 *   bt-pg_claimer URL enqueue N           create N tasks (key item-<n>), 200 per loop turn
 *   bt-pg_claimer URL claim OWNER BATCH   claim BATCH at a time (4 claims in flight) and
 *                                         complete each, until nothing is pending;
 *                                         prints "CLAIM <id> <fencing>" per claimed task
 *   bt-pg_claimer URL append N            append N "test.tick" events, 50 per loop turn
 *   bt-pg_claimer URL listen N            subscribe; print "READY", then "EV <seq> <type>"
 *                                         for each event until N were seen (30 s cap)
 *   bt-pg_claimer URL follow N            from the current last seq, poll event_read after
 *                                         the last seq seen, as an SSE client resuming
 *                                         "after N" would; print "READY", then
 *                                         "EV <seq> <type>" until N events (60 s cap)
 *
 * Exit status 0 on success; errors go to stderr.
 */
#include <stddef.h>

#include "store/store.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN_FLIGHT 4

typedef struct app {
    uv_loop_t loop;
    bt_store *s;
    const char *owner;
    int batch;
    long n, done, next;
    int inflight;
    int empty_rounds;
    int rc;
    int64_t after;
    uv_timer_t timer, tick;
} app;

static void die(app *a, int rc, const bt_error *err, const char *what)
{
    fprintf(stderr, "pg_claimer: %s: %s\n", what, err ? err->msg : bt_strerror(rc));
    a->rc = 1;
    uv_stop(&a->loop);
}

/* ---- enqueue ---- */
static void enqueue_more(app *a);

static void on_created(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    app *a = ud;
    if (rc)
        return die(a, rc, err, "create");
    a->inflight--;
    a->done++;
    if (a->inflight == 0)
        enqueue_more(a);
}

static void enqueue_more(app *a)
{
    for (int i = 0; i < 200 && a->next < a->n; i++, a->next++) {
        char key[64], title[64];
        snprintf(key, sizeof key, "item-%ld", a->next);
        snprintf(title, sizeof title, "item %ld", a->next);
        bt_task_input in = {
            .source = "test", .title = title, .dedupe_key = key, .priority = BT_PRIORITY_NONE};
        a->inflight++;
        bt_store_task_create(a->s, &in, on_created, a);
    }
}

/* ---- claim ---- */
static void claim_one(app *a);

static void on_completed(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    app *a = ud;
    if (rc)
        return die(a, rc, err, "complete");
    a->done++;
}

static void on_claimed(void *ud, int rc, const bt_error *err, bt_task *const *tasks, size_t n,
                       const char *cursor)
{
    app *a = ud;
    a->inflight--;
    if (rc)
        return die(a, rc, err, "claim");
    for (size_t i = 0; i < n; i++) {
        printf("CLAIM %s %lld\n", tasks[i]->id, (long long)tasks[i]->fencing);
        bt_store_complete(a->s, tasks[i]->id, a->owner, tasks[i]->fencing, NULL, on_completed, a);
    }
    a->empty_rounds = n == 0 ? a->empty_rounds + 1 : 0;
    if (a->empty_rounds < 3)
        claim_one(a);
}

static void claim_one(app *a)
{
    bt_claim_opts o = {.owner = a->owner, .lease_ms = 600000, .max = a->batch};
    a->inflight++;
    bt_store_claim(a->s, &o, on_claimed, a);
}

/* ---- append ---- */
static void append_more(app *a);

static void on_appended(void *ud, int rc, const bt_error *err, const bt_event *ev)
{
    app *a = ud;
    if (rc)
        return die(a, rc, err, "append");
    a->inflight--;
    if (a->inflight == 0)
        append_more(a);
}

static void append_more(app *a)
{
    for (int i = 0; i < 50 && a->next < a->n; i++, a->next++) {
        a->inflight++;
        bt_store_event_append(a->s, "test.tick", NULL, NULL, NULL, on_appended, a);
    }
}

/* ---- listen / follow ---- */
static void on_event(void *ud, const bt_event *ev)
{
    app *a = ud;
    printf("EV %lld %s\n", (long long)ev->seq, ev->type);
    if (++a->done >= a->n)
        uv_stop(&a->loop);
}

static void follow_read(app *a);

static void on_tick(uv_timer_t *t)
{
    follow_read(t->data);
}

static void on_read(void *ud, int rc, const bt_error *err, bt_event *const *evs, size_t n)
{
    app *a = ud;
    if (rc)
        return die(a, rc, err, "event_read");
    for (size_t i = 0; i < n; i++) {
        if (evs[i]->seq <= a->after) {
            fprintf(stderr, "pg_claimer: event_read went backwards (%lld after %lld)\n",
                    (long long)evs[i]->seq, (long long)a->after);
            a->rc = 1;
        }
        a->after = evs[i]->seq;
        printf("EV %lld %s\n", (long long)evs[i]->seq, evs[i]->type);
        a->done++;
    }
    if (a->done >= a->n) {
        uv_stop(&a->loop);
        return;
    }
    if (n == 0)
        uv_timer_start(&a->tick, on_tick, 5, 0); /* nothing new: look again shortly */
    else
        follow_read(a);
}

static void follow_read(app *a)
{
    bt_event_filter f = {.after_seq = a->after, .limit = 100};
    bt_store_event_read(a->s, &f, on_read, a);
}

static void on_last_seq(void *ud, int rc, const bt_error *err, int64_t seq)
{
    app *a = ud;
    if (rc)
        return die(a, rc, err, "event_last_seq");
    a->after = seq;
    printf("READY\n");
    follow_read(a);
}

static void on_timeout(uv_timer_t *t)
{
    app *a = t->data;
    fprintf(stderr, "pg_claimer: timed out after %ld of %ld events\n", a->done, a->n);
    a->rc = 1;
    uv_stop(&a->loop);
}

static int reset_schema(const char *url)
{
    const char *q = strstr(url, "schema=");
    if (!q) {
        fprintf(stderr, "pg_claimer: reset needs ?schema=NAME in the URL\n");
        return 1;
    }
    char schema[64], base[1024];
    snprintf(schema, sizeof schema, "%.*s", (int)strcspn(q + 7, "&"), q + 7);
    snprintf(base, sizeof base, "%.*s", (int)(strchr(url, '?') - url), url);
    PGconn *c = PQconnectdb(base);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pg_claimer: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    char sql[160];
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : 1;
    if (rc)
        fprintf(stderr, "pg_claimer: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bt-pg_claimer URL reset|enqueue N|claim OWNER BATCH|append N|"
                        "listen N|follow N\n");
        return 64;
    }
    const char *url = argv[1], *mode = argv[2];
    if (strcmp(mode, "reset") == 0)
        return reset_schema(url);
    setvbuf(stdout, NULL, _IOLBF, 0);
    app a;
    memset(&a, 0, sizeof a);
    uv_loop_init(&a.loop);
    bt_store_options opts = {.pool_size = 4};
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&a.loop, url, &opts, &a.s, &err)) {
        fprintf(stderr, "pg_claimer: %s\n", err.msg);
        return 1;
    }
    uv_timer_init(&a.loop, &a.timer);
    uv_timer_init(&a.loop, &a.tick);
    a.timer.data = a.tick.data = &a;
    int sub = 0;
    if (strcmp(mode, "enqueue") == 0 && argc > 3) {
        a.n = atol(argv[3]);
        enqueue_more(&a);
    } else if (strcmp(mode, "claim") == 0 && argc > 4) {
        a.owner = argv[3];
        a.batch = atoi(argv[4]);
        for (int i = 0; i < IN_FLIGHT; i++)
            claim_one(&a);
    } else if (strcmp(mode, "append") == 0 && argc > 3) {
        a.n = atol(argv[3]);
        append_more(&a);
    } else if (strcmp(mode, "listen") == 0 && argc > 3) {
        a.n = atol(argv[3]);
        sub = bt_store_subscribe(a.s, on_event, &a);
        uv_timer_start(&a.timer, on_timeout, 30000, 0);
        printf("READY\n");
    } else if (strcmp(mode, "follow") == 0 && argc > 3) {
        a.n = atol(argv[3]);
        uv_timer_start(&a.timer, on_timeout, 60000, 0);
        bt_store_event_last_seq(a.s, on_last_seq, &a);
    } else {
        fprintf(stderr, "pg_claimer: bad arguments for %s\n", mode);
        return 64;
    }
    uv_run(&a.loop, UV_RUN_DEFAULT);
    if (sub)
        bt_store_unsubscribe(a.s, sub);
    uv_close((uv_handle_t *)&a.timer, NULL);
    uv_close((uv_handle_t *)&a.tick, NULL);
    bt_store_close(a.s);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a.loop) != 0)
        fprintf(stderr, "pg_claimer: loop not empty at exit\n");
    return a.rc;
}
