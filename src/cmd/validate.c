/*
 * validate.c - `baton validate [--config FILE] [--json]`: load the configuration, then
 * the workflows and personas it uses (built-in ones and those in workflows_dir /
 * personas_dir), and report every problem at once, compiler style:
 *
 *   baton.yaml:12:3: error: unknown key 'agnets'; did you mean 'agents'? (fix: rename it ...)
 *   workflows/review.yaml:9:14: error: unknown agent 'claud' in step 'fix'; did you mean ...
 *
 * Exit 0 with one "OK" line when everything is usable, 1 when there are problems, 2 on
 * a usage error. --json prints {"ok":bool,"file":...,"problems":[{file,line,column,key,
 * message,hint}],"workflows":{"count":N,"unavailable":[{id,missing}]},"personas":N}
 * instead (workflows and personas are null when the configuration itself is invalid).
 */
#include "cmd/cmd.h"

#include "config/config.h"
#include "core/workflow.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

static const char synopsis[] = "baton validate [--config FILE] [--json]";

static json_t *problem_json(const bt_config_problem *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(p->file));
    json_object_set_new(o, "line", json_integer(p->line));
    json_object_set_new(o, "column", json_integer(p->column));
    json_object_set_new(o, "key", p->key ? json_string(p->key) : json_null());
    json_object_set_new(o, "message", json_string(p->message));
    json_object_set_new(o, "hint", p->hint ? json_string(p->hint) : json_null());
    return o;
}

int bt_cmd_validate(int argc, char **argv)
{
    const char *config = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"json", 0, 0, NULL, &json, "print the result as JSON"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("validate", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("validate", synopsis, opts);
        printf("\nChecks the configuration (and the environment variables it uses), then the\n"
               "workflows and personas (built-in, workflows_dir, personas_dir) against it, and\n"
               "lists every problem as FILE:LINE:COLUMN: error: MESSAGE (fix: HINT).\n"
               "Exit codes: 0 valid, 1 problems found, 2 usage error.\n");
        return BT_EXIT_OK;
    }
    if (pos.len > 0) {
        fprintf(stderr, "baton validate: unexpected argument '%s'. See 'baton help validate'.\n",
                pos.items[0]);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_strvec_clear(&pos);

    const char *path = bt_config_find_path(config, environ);
    bt_config *cfg = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    rc = bt_config_load(path, environ, &cfg, &probs, &err);
    const char *shown = path ? path : "(built-in defaults and environment)";
    /* workflows are checked against the agents of a valid configuration only */
    bt_workflows *wfs = NULL;
    if (rc == 0)
        rc = bt_workflows_load(cfg, NULL, &wfs, &probs, &err);
    size_t nwf = bt_workflows_count(wfs), nunavail = 0;
    for (size_t i = 0; i < nwf; i++)
        nunavail += bt_workflows_at(wfs, i)->missing != NULL;

    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "ok", json_boolean(rc == 0));
        json_object_set_new(o, "file", path ? json_string(path) : json_null());
        json_t *arr = json_array();
        for (size_t i = 0; i < probs.len; i++)
            json_array_append_new(arr, problem_json(&probs.items[i]));
        if (rc < 0 && probs.len == 0) {
            bt_config_problem p = {(char *)shown, 0, 0, NULL, err.msg, NULL};
            json_array_append_new(arr, problem_json(&p));
        }
        json_object_set_new(o, "problems", arr);
        if (wfs) {
            json_t *w = json_object(), *un = json_array();
            for (size_t i = 0; i < nwf; i++) {
                const bt_workflow *x = bt_workflows_at(wfs, i);
                if (x->missing)
                    json_array_append_new(un,
                                          json_pack("{ss ss}", "id", x->id, "missing", x->missing));
            }
            json_object_set_new(w, "count", json_integer((json_int_t)nwf));
            json_object_set_new(w, "unavailable", un);
            json_object_set_new(o, "workflows", w);
            json_object_set_new(o, "personas",
                                json_integer((json_int_t)bt_workflows_persona_count(wfs)));
        } else {
            json_object_set_new(o, "workflows", json_null());
            json_object_set_new(o, "personas", json_null());
        }
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else if (rc == 0) {
        size_t npers = bt_workflows_persona_count(wfs);
        printf(
            "%s: OK (%zu agent%s, %zu project%s, store %s; %zu workflow%s", shown, cfg->agents.len,
            cfg->agents.len == 1 ? "" : "s", cfg->projects.len, cfg->projects.len == 1 ? "" : "s",
            cfg->store.kind == BT_STORE_SQLITE ? "sqlite" : "postgres", nwf, nwf == 1 ? "" : "s");
        if (nunavail)
            printf(" (%zu unavailable: agents not configured)", nunavail);
        printf(", %zu persona%s)\n", npers, npers == 1 ? "" : "s");
    } else {
        bt_config_problems_print(&probs, stdout);
        if (probs.len == 0)
            printf("%s: error: %s\n", shown, err.msg);
        size_t n = probs.len ? probs.len : 1;
        printf("%zu problem%s found.\n", n, n == 1 ? "" : "s");
    }
    bt_config_problems_free(&probs);
    bt_workflows_free(wfs);
    bt_config_free(cfg);
    return rc == 0 ? BT_EXIT_OK : BT_EXIT_FAIL;
}
