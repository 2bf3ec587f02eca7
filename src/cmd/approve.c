/*
 * approve.c - `baton approve ID` and `baton reject ID`: decide a pending approval (a
 * workflow's human gate, DESIGN.md §7) from the command line.
 *
 * ID is an approval id, or a run id (then that run's single pending approval), or a
 * task id (its newest run's). The decision goes straight into the configured store
 * (bt_store_approval_decide); whoever waits at the gate - the daemon, or a `baton run`
 * in another terminal - sees it through the store, so no server is needed.
 *
 *   $ baton approve 01JD...            approved: approval 01JE... (run 01JD..., step gate)
 *
 * Exit 0 when the decision was recorded; 1 when there is nothing to decide (unknown id,
 * no pending approval, several pending ones - they are listed - or a decision already
 * made, which is named with who made it); 2 on a usage error.
 */
#include "cmd/cmd.h"

#include "base/mem.h"
#include "base/time.h"
#include "config/config.h"
#include "store/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One store call in flight: the loop runs until its callback fills this in. */
typedef struct call {
    int done;
    int rc;
    bt_error err;
    bt_approval *approval;   /* approval_get / decide (owned copy) */
    bt_approval **approvals; /* approval_list (owned copies) */
    size_t napprovals;
    bt_run *run;  /* run_get, or the newest of run_list (owned copy) */
    size_t nruns; /* run_list */
} call;

static void call_reset(call *c)
{
    bt_approval_free(c->approval);
    for (size_t i = 0; i < c->napprovals; i++)
        bt_approval_free(c->approvals[i]);
    free(c->approvals);
    bt_run_free(c->run);
    memset(c, 0, sizeof *c);
}

static void finish_call(call *c, int rc, const bt_error *err)
{
    c->done = 1;
    c->rc = rc;
    if (rc != 0 && err)
        c->err = *err;
}

static void on_approval(void *ud, int rc, const bt_error *err, const bt_approval *a)
{
    call *c = ud;
    finish_call(c, rc, err);
    if (rc == 0 && a)
        c->approval = bt_approval_dup(a);
}

static void on_approvals(void *ud, int rc, const bt_error *err, bt_approval *const *list, size_t n)
{
    call *c = ud;
    finish_call(c, rc, err);
    if (rc == 0 && n > 0) {
        c->approvals = bt_xcalloc(n, sizeof *c->approvals);
        for (size_t i = 0; i < n; i++)
            c->approvals[i] = bt_approval_dup(list[i]);
        c->napprovals = n;
    }
}

static void on_run(void *ud, int rc, const bt_error *err, const bt_run *run)
{
    call *c = ud;
    finish_call(c, rc, err);
    if (rc == 0 && run)
        c->run = bt_run_dup(run);
}

static void on_runs(void *ud, int rc, const bt_error *err, bt_run *const *runs, size_t n)
{
    call *c = ud;
    finish_call(c, rc, err);
    c->nruns = rc == 0 ? n : 0;
    if (rc == 0 && n > 0)
        c->run = bt_run_dup(runs[0]); /* newest first */
}

static void wait_call(uv_loop_t *loop, const call *c)
{
    while (!c->done && uv_run(loop, UV_RUN_ONCE))
        ;
}

typedef struct decide_ctx {
    const char *cmd; /* "approve" | "reject" */
    uv_loop_t *loop;
    bt_store *store;
} decide_ctx;

static void print_pending_list(const char *cmd, bt_approval *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "  %s  step %s%s%s\n", list[i]->id, list[i]->step_key,
                list[i]->prompt && *list[i]->prompt ? ": " : "",
                list[i]->prompt ? list[i]->prompt : "");
    fprintf(stderr, "baton %s: name one of them by its approval id.\n", cmd);
}

/* Pending approvals of run_id: 0 with *out set when exactly one, else BT_EXIT_FAIL after
 * saying why. what names the id for messages ("run X", "task Y (run X)"). */
static int single_pending(decide_ctx *d, const char *run_id, const char *what, bt_approval **out)
{
    call c = {0};
    bt_store_approval_list(d->store, NULL, run_id, on_approvals, &c);
    wait_call(d->loop, &c);
    if (c.rc != 0) {
        fprintf(stderr, "baton %s: listing the approvals of %s: %s\n", d->cmd, what, c.err.msg);
        call_reset(&c);
        return BT_EXIT_FAIL;
    }
    if (c.napprovals == 0) {
        fprintf(stderr, "baton %s: %s has no pending approval.\n", d->cmd, what);
        call_reset(&c);
        return BT_EXIT_FAIL;
    }
    if (c.napprovals > 1) {
        fprintf(stderr, "baton %s: %s has %zu pending approvals:\n", d->cmd, what, c.napprovals);
        print_pending_list(d->cmd, c.approvals, c.napprovals);
        call_reset(&c);
        return BT_EXIT_FAIL;
    }
    *out = c.approvals[0];
    c.approvals[0] = NULL;
    c.napprovals = 0;
    call_reset(&c);
    return 0;
}

/* Find the approval that ID means: an approval id, a run id or a task id. */
static int resolve(decide_ctx *d, const char *id, bt_approval **out)
{
    call c = {0};
    bt_store_approval_get(d->store, id, on_approval, &c);
    wait_call(d->loop, &c);
    if (c.rc == 0 && c.approval) {
        *out = c.approval;
        c.approval = NULL;
        call_reset(&c);
        return 0;
    }
    if (c.rc != 0 && c.rc != BT_ENOENT && c.rc != BT_EINVAL) {
        fprintf(stderr, "baton %s: reading approval %s: %s\n", d->cmd, id, c.err.msg);
        call_reset(&c);
        return BT_EXIT_FAIL;
    }
    call_reset(&c);

    bt_store_run_get(d->store, id, on_run, &c);
    wait_call(d->loop, &c);
    if (c.rc == 0 && c.run) {
        char what[64];
        snprintf(what, sizeof what, "run %s", id);
        call_reset(&c);
        return single_pending(d, id, what, out);
    }
    call_reset(&c);

    bt_store_run_list(d->store, id, NULL, 1, on_runs, &c);
    wait_call(d->loop, &c);
    if (c.rc == 0 && c.run) {
        char what[128], run_id[BT_ID_LEN + 1];
        snprintf(run_id, sizeof run_id, "%s", c.run->id);
        snprintf(what, sizeof what, "task %s (run %s)", id, run_id);
        call_reset(&c);
        return single_pending(d, run_id, what, out);
    }
    call_reset(&c);
    fprintf(stderr,
            "baton %s: no approval, run or task has the id '%s' in this store (is --config "
            "the one the run uses?). `baton run` prints the run id when it waits.\n",
            d->cmd, id);
    return BT_EXIT_FAIL;
}

/* "already approved by alice at 2025-...: looks fine" */
static void print_already(const char *cmd, const bt_approval *a)
{
    if (a->status == BT_APPROVAL_EXPIRED) {
        fprintf(stderr, "baton %s: approval %s (run %s, step %s) expired", cmd, a->id, a->run_id,
                a->step_key);
    } else {
        fprintf(stderr, "baton %s: approval %s (run %s, step %s) was already %s", cmd, a->id,
                a->run_id, a->step_key, bt_approval_status_name(a->status));
        if (a->decided_by && *a->decided_by)
            fprintf(stderr, " by %s", a->decided_by);
    }
    if (a->decided_at > 0) {
        char ts[BT_TIME_ISO_LEN];
        fprintf(stderr, " at %s", bt_time_format_iso(a->decided_at, ts));
    }
    if (a->comment && *a->comment)
        fprintf(stderr, " (\"%s\")", a->comment);
    fprintf(stderr, "; the decision stands.\n");
}

static int decide(decide_ctx *d, const char *id, bool approve, const char *by, const char *comment,
                  int json)
{
    bt_approval *a = NULL;
    int rc = resolve(d, id, &a);
    if (rc != 0)
        return rc;
    if (a->status != BT_APPROVAL_PENDING) {
        print_already(d->cmd, a);
        bt_approval_free(a);
        return BT_EXIT_FAIL;
    }
    call c = {0};
    bt_store_approval_decide(d->store, a->id, approve, by, comment, on_approval, &c);
    wait_call(d->loop, &c);
    if (c.rc == BT_ESTATE) {
        /* Decided by someone else between our read and our write: show theirs. */
        call g = {0};
        bt_store_approval_get(d->store, a->id, on_approval, &g);
        wait_call(d->loop, &g);
        if (g.rc == 0 && g.approval)
            print_already(d->cmd, g.approval);
        else
            fprintf(stderr, "baton %s: %s\n", d->cmd, c.err.msg);
        call_reset(&g);
        call_reset(&c);
        bt_approval_free(a);
        return BT_EXIT_FAIL;
    }
    if (c.rc != 0) {
        fprintf(stderr, "baton %s: deciding approval %s: %s\n", d->cmd, a->id, c.err.msg);
        call_reset(&c);
        bt_approval_free(a);
        return BT_EXIT_FAIL;
    }
    const bt_approval *done = c.approval ? c.approval : a;
    if (json) {
        json_t *o = bt_approval_to_json(done);
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("%s: approval %s (run %s, step %s)\n", approve ? "approved" : "rejected", done->id,
               done->run_id, done->step_key);
    }
    call_reset(&c);
    bt_approval_free(a);
    return BT_EXIT_OK;
}

static void close_any(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int approve_or_reject(const char *cmd, bool approve, int argc, char **argv)
{
    const char *config = NULL, *comment = NULL, *by = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"comment", 'm', 1, &comment, NULL, "why (recorded with the decision)"},
        {"by", 0, 1, &by, NULL, "who decides (default $USER, else \"cli\")"},
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"json", 0, 0, NULL, &json, "print the decided approval as JSON"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    char synopsis[128];
    snprintf(synopsis, sizeof synopsis,
             "baton %s ID [--comment TEXT] [--by NAME] [--config FILE] [--json]", cmd);
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse(cmd, argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage(cmd, synopsis, opts);
        printf("\n%s a pending approval (a workflow's approval step). ID is the approval id,\n"
               "a run id (that run's pending approval) or a task id (its newest run's).\n"
               "The decision is written to the configured store; the waiting run (in\n"
               "`baton serve` or `baton run`) %s.\n"
               "Exit codes: 0 decided, 1 nothing to decide (unknown id, no or several\n"
               "pending approvals, already decided), 2 usage error.\n",
               approve ? "Approves" : "Rejects",
               approve ? "continues with the next step" : "fails at that step");
        return BT_EXIT_OK;
    }
    if (pos.len != 1) {
        fprintf(stderr, "baton %s: %s. usage: %s\n", cmd,
                pos.len == 0 ? "expected an approval or run ID" : "expected exactly one ID",
                synopsis);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    if (!by || !*by) {
        by = getenv("USER");
        if (!by || !*by)
            by = "cli";
    }

    bt_config *cfg = NULL;
    if (bt_cmd_load_config(cmd, config, &cfg) != 0) {
        bt_strvec_clear(&pos);
        return BT_EXIT_FAIL;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_store_options so = {0};
    so.default_max_attempts = (int32_t)cfg->queue.max_attempts;
    so.backoff_base_ms = cfg->queue.backoff_base_ms;
    so.backoff_max_ms = cfg->queue.backoff_max_ms;
    bt_store *store = NULL;
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&loop, cfg->store.url, &so, &store, &err) < 0) {
        fprintf(stderr, "baton %s: opening the store '%s': %s\n", cmd, cfg->store.url, err.msg);
        rc = BT_EXIT_FAIL;
    } else {
        decide_ctx d = {.cmd = cmd, .loop = &loop, .store = store};
        rc = decide(&d, pos.items[0], approve, by, comment, json);
        bt_store_close(store);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        uv_walk(&loop, close_any, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    bt_config_free(cfg);
    bt_strvec_clear(&pos);
    return rc;
}

int bt_cmd_approve(int argc, char **argv)
{
    return approve_or_reject("approve", true, argc, argv);
}

int bt_cmd_reject(int argc, char **argv)
{
    return approve_or_reject("reject", false, argc, argv);
}
