/*
 * queue.c - the queue benchmark (issue 3): enqueue N no-op items through the store,
 * then K concurrent claimers on the one loop, each claiming up to B items at a time,
 * completing every claimed item and claiming again (the next claim is issued in the
 * same loop turn as the completions, as a scheduler would). Reports items/s for the
 * claim -> complete phase, enqueue/s, and p50/p99 claim latency (call to callback) as
 * one JSON line.
 *
 *   bt-bench-queue URL N K B [sub]
 *
 * With "sub", an event subscriber like `baton serve`'s metrics reads every committed
 * event's data (the store then has to hand each event over as a json_t). The issue's
 * figures are without it; RESULTS.md gives both.
 */
#include <stddef.h>

#include "base/time.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct bench bench;

typedef struct claimer {
    bench *b;
    int idx;
    char owner[32];
    int64_t t_claim;
    int outstanding; /* completions in flight */
    bool claiming, finished;
} claimer;

struct bench {
    uv_loop_t loop;
    bt_store *s;
    long n, created, enq_issued, completed;
    int k, batch;
    claimer *cl;
    double *lat;
    size_t nlat, caplat;
    int errors;
    uv_idle_t idle;
};

static void claim(claimer *c);

static void on_complete(void *ud, int rc, const bt_error *err, const bt_task *t)
{
    claimer *c = ud;
    c->outstanding--;
    if (rc) {
        fprintf(stderr, "complete: %s\n", err->msg);
        c->b->errors++;
    } else {
        c->b->completed++;
    }
}

static void on_claim(void *ud, int rc, const bt_error *err, bt_task *const *ts, size_t n,
                     const char *cursor)
{
    claimer *c = ud;
    bench *b = c->b;
    c->claiming = false;
    if (b->nlat == b->caplat) {
        b->caplat = b->caplat ? b->caplat * 2 : 1024;
        b->lat = realloc(b->lat, b->caplat * sizeof *b->lat);
    }
    b->lat[b->nlat++] = (double)(bt_time_mono_ns() - c->t_claim) / 1e6;
    if (rc) {
        fprintf(stderr, "claim: %s\n", err->msg);
        b->errors++;
        return;
    }
    if (n == 0) {
        c->finished = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        c->outstanding++;
        bt_store_complete(b->s, ts[i]->id, c->owner, ts[i]->fencing, NULL, on_complete, c);
    }
    claim(c);
}

static void claim(claimer *c)
{
    bt_claim_opts o = {.owner = c->owner, .lease_ms = 60000, .max = c->b->batch};
    c->claiming = true;
    c->t_claim = bt_time_mono_ns();
    bt_store_claim(c->b->s, &o, on_claim, c);
}

static void on_created(void *ud, int rc, const bt_error *err, const bt_task *t, bool created)
{
    bench *b = ud;
    if (rc) {
        fprintf(stderr, "create: %s\n", err->msg);
        b->errors++;
    }
    b->created++;
}

/* Enqueue in slices of 1000 per loop turn (each slice is one commit). */
static void on_idle(uv_idle_t *h)
{
    bench *b = h->data;
    for (int i = 0; i < 1000 && b->enq_issued < b->n; i++, b->enq_issued++) {
        bt_task_input in = {.source = "bench", .title = "noop", .priority = BT_PRIORITY_NONE};
        bt_store_task_create(b->s, &in, on_created, b);
    }
    if (b->enq_issued >= b->n)
        uv_idle_stop(h);
}

/* CPU time (user + system) this process has used, in microseconds. */
static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* What api/metrics.c does with each event: look at type, from and to. */
static void on_event(void *ud, const bt_event *ev)
{
    long *seen = ud;
    if (strcmp(ev->type, "task.status") == 0 &&
        json_string_value(json_object_get(ev->data, "to")) &&
        json_string_value(json_object_get(ev->data, "from")))
        (*seen)++;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return a < c ? -1 : a > c;
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "sub") == 0)) {
        fprintf(stderr, "usage: %s URL N CLAIMERS BATCH [sub]\n", argv[0]);
        return 2;
    }
    bench b = {0};
    b.n = atol(argv[2]);
    b.k = atoi(argv[3]);
    b.batch = atoi(argv[4]);
    uv_loop_init(&b.loop);
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&b.loop, argv[1], NULL, &b.s, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    long seen = 0;
    bool sub = argc == 6;
    if (sub)
        bt_store_subscribe(b.s, on_event, &seen);
    uv_idle_init(&b.loop, &b.idle);
    b.idle.data = &b;
    int64_t t0 = bt_time_mono_ns();
    uv_idle_start(&b.idle, on_idle);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    double enq_s = (double)(bt_time_mono_ns() - t0) / 1e9;

    b.cl = calloc((size_t)b.k, sizeof *b.cl);
    int64_t t1 = bt_time_mono_ns();
    double c1 = cpu_us();
    for (int i = 0; i < b.k; i++) {
        b.cl[i].b = &b;
        b.cl[i].idx = i;
        snprintf(b.cl[i].owner, sizeof b.cl[i].owner, "bench-%d", i);
        claim(&b.cl[i]);
    }
    uv_run(&b.loop, UV_RUN_DEFAULT);
    double run_s = (double)(bt_time_mono_ns() - t1) / 1e9;
    double run_cpu_us = cpu_us() - c1;
    qsort(b.lat, b.nlat, sizeof *b.lat, cmp_d);
    printf("{\"bench\":\"queue\",\"backend\":\"%s\",\"items\":%ld,\"claimers\":%d,\"batch\":%d,"
           "\"enqueue_per_s\":%.0f,\"seconds\":%.3f,\"items_per_s\":%.0f,\"claim_p50_ms\":%.3f,"
           "\"claim_p99_ms\":%.3f,\"cpu_us_per_item\":%.2f,\"subscriber\":%s,"
           "\"errors\":%d}\n",
           bt_store_backend(b.s), b.completed, b.k, b.batch, (double)b.created / enq_s, run_s,
           (double)b.completed / run_s, b.nlat ? b.lat[b.nlat / 2] : 0.0,
           b.nlat ? b.lat[(size_t)((double)b.nlat * 0.99)] : 0.0,
           b.completed ? run_cpu_us / (double)b.completed : 0.0, sub ? "true" : "false", b.errors);
    bt_store_close(b.s);
    uv_close((uv_handle_t *)&b.idle, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    free(b.cl);
    free(b.lat);
    if (sub && seen != 2 * b.n) {
        fprintf(stderr, "subscriber saw %ld task.status events, expected %ld\n", seen, 2 * b.n);
        b.errors++;
    }
    return b.errors || b.completed != b.n ? 1 : 0;
}
