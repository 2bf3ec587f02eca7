/*
 * workflows.c - `baton workflows [--config FILE] [--json]`: every workflow this
 * configuration can run (the built-in set, then workflows_dir), one line each:
 *
 *   ID        NAME              VERSION  STEPS                      ITERATIONS  STATUS
 *   default   Default           1.0      codex → gemini → claude    3           ok
 *   hybrid    Hybrid            1.0      claude → local → claude    2           needs agents gemini
 *
 * STEPS names each step by what it runs: the agent (or persona) of an agent step, the
 * target of an execute-workflow step, the action name of anything else. The last
 * column is "ok" or why the workflow cannot run (bt_workflow.missing). --json prints
 * {"workflows":[bt_workflow_to_json...],"count":N}.
 *
 * Workflow files with problems are reported like `baton validate` (FILE:LINE:COL:
 * error: ...) on stderr, and the command exits 1. Exit 0 otherwise, 2 on a usage error.
 */
#include "cmd/cmd.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "config/config.h"
#include "core/workflow.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char synopsis[] = "baton workflows [--config FILE] [--json]";

#define NAME_MAX_COLS  28
#define STEPS_MAX_COLS 56

/* Display columns of UTF-8 text (every code point counts one: enough for "→"). */
static size_t cols(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Cut s to at most max columns, ending with "…" when cut. */
static void fit(bt_strbuf *sb, size_t max)
{
    if (cols(bt_strbuf_cstr(sb)) <= max)
        return;
    const char *s = bt_strbuf_cstr(sb);
    size_t n = 0, i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == max - 1)
                break;
            n++;
        }
    }
    bt_strbuf_setlen(sb, i);
    bt_strbuf_addstr(sb, "…");
}

static void pad(const char *s, size_t width)
{
    fputs(s, stdout);
    for (size_t n = cols(s); n < width; n++)
        fputc(' ', stdout);
}

/* "codex → gemini → claude", "wf3 → shell-command → approval". */
static void steps_summary(const bt_workflow *w, bt_strbuf *sb)
{
    for (size_t i = 0; i < w->nsteps; i++) {
        const bt_wf_step *st = &w->steps[i];
        if (i)
            bt_strbuf_addstr(sb, " → ");
        if (st->action == BT_WF_AGENT)
            bt_strbuf_addstr(sb, st->persona ? st->persona : st->agent ? st->agent : "agent");
        else if (st->action == BT_WF_WORKFLOW && st->workflow)
            bt_strbuf_addstr(sb, st->workflow);
        else
            bt_strbuf_addstr(sb, bt_wf_action_name(st->action));
    }
    if (w->nsteps == 0)
        bt_strbuf_addstr(sb, "-");
}

typedef struct row {
    bt_strbuf name, steps;
    char iters[16];
} row;

static void print_table(const bt_workflows *set)
{
    size_t n = bt_workflows_count(set);
    row *rows = bt_xcalloc(n ? n : 1, sizeof *rows);
    size_t wid = 2, wname = 4, wver = 7, wsteps = 5, witer = 10;
    for (size_t i = 0; i < n; i++) {
        const bt_workflow *w = bt_workflows_at(set, i);
        row *r = &rows[i];
        bt_strbuf_init(&r->name, 32);
        bt_strbuf_init(&r->steps, 64);
        bt_strbuf_addstr(&r->name, w->name && *w->name ? w->name : w->id);
        fit(&r->name, NAME_MAX_COLS);
        steps_summary(w, &r->steps);
        fit(&r->steps, STEPS_MAX_COLS);
        snprintf(r->iters, sizeof r->iters, "%d", w->max_iterations);
        size_t c;
        if ((c = cols(w->id)) > wid)
            wid = c;
        if ((c = cols(bt_strbuf_cstr(&r->name))) > wname)
            wname = c;
        if (w->version && (c = cols(w->version)) > wver)
            wver = c;
        if ((c = cols(bt_strbuf_cstr(&r->steps))) > wsteps)
            wsteps = c;
    }
    pad("ID", wid + 2);
    pad("NAME", wname + 2);
    pad("VERSION", wver + 2);
    pad("STEPS", wsteps + 2);
    pad("ITERATIONS", witer + 2);
    puts("STATUS");
    size_t ready = 0;
    for (size_t i = 0; i < n; i++) {
        const bt_workflow *w = bt_workflows_at(set, i);
        row *r = &rows[i];
        pad(w->id, wid + 2);
        pad(bt_strbuf_cstr(&r->name), wname + 2);
        pad(w->version && *w->version ? w->version : "-", wver + 2);
        pad(bt_strbuf_cstr(&r->steps), wsteps + 2);
        pad(r->iters, witer + 2);
        puts(w->missing ? w->missing : "ok");
        ready += w->missing == NULL;
        bt_strbuf_release(&r->name);
        bt_strbuf_release(&r->steps);
    }
    free(rows);
    printf("\n%zu workflow%s, %zu ready to run\n", n, n == 1 ? "" : "s", ready);
}

static void print_json(const bt_workflows *set)
{
    json_t *arr = json_array();
    size_t n = bt_workflows_count(set);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, bt_workflow_to_json(bt_workflows_at(set, i)));
    json_t *o = json_object();
    json_object_set_new(o, "workflows", arr);
    json_object_set_new(o, "count", json_integer((json_int_t)n));
    char *s = json_dumps(o, JSON_INDENT(2));
    puts(s);
    free(s);
    json_decref(o);
}

int bt_cmd_workflows(int argc, char **argv)
{
    const char *config = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"json", 0, 0, NULL, &json, "print {\"workflows\":[...],\"count\":N}"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("workflows", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("workflows", synopsis, opts);
        printf("\nLists the built-in workflows and those in the configuration's workflows_dir\n"
               "(a file there replaces a built-in of the same id), with their steps: an agent\n"
               "step by its agent, a sub-workflow by its id, other steps by their action.\n"
               "STATUS is \"ok\", or why the workflow cannot run (agents not configured).\n"
               "Problems in workflow files are listed as FILE:LINE:COLUMN: error: MESSAGE.\n"
               "Exit codes: 0 listed, 1 a workflow file has problems, 2 usage error.\n");
        return BT_EXIT_OK;
    }
    if (pos.len > 0) {
        fprintf(stderr, "baton workflows: unexpected argument '%s'. See 'baton help workflows'.\n",
                pos.items[0]);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_strvec_clear(&pos);

    bt_config *cfg = NULL;
    if (bt_cmd_load_config("workflows", config, &cfg) != 0)
        return BT_EXIT_FAIL;
    bt_workflows *set = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_workflows_load(cfg, NULL, &set, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        if (probs.len == 0)
            fprintf(stderr, "baton workflows: %s\n", err.msg);
        size_t n = probs.len ? probs.len : 1;
        fprintf(stderr, "%zu problem%s found in the workflows.\n", n, n == 1 ? "" : "s");
        bt_config_problems_free(&probs);
        bt_config_free(cfg);
        return BT_EXIT_FAIL;
    }
    bt_config_problems_free(&probs);
    if (json)
        print_json(set);
    else
        print_table(set);
    bt_workflows_free(set);
    bt_config_free(cfg);
    return BT_EXIT_OK;
}
