/*
 * test_intake.c - tracker items into the queue (src/core/intake.c): seed 000's project
 * routing by "[id]" title prefix or label, and deduplication by the item's key against
 * a real SQLite store.
 */
#include "testutil.h"

#include "base/mem.h"
#include "base/strbuf.h"
#include "config/config.h"
#include "core/intake.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

static bt_config *load(const char *y)
{
    bt_config *cfg = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_config_load_string("t.yaml", y, strlen(y), NULL, &cfg, &probs, &err) < 0) {
        bt_config_problems_print(&probs, stderr);
        fail_msg("config: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    return cfg;
}

static const char *cfg_yaml =
    "log: {level: error}\n"
    "projects:\n"
    "  web-front: {repo: /r/web, labels: [frontend, ui], workflow: quick}\n"
    "  BACKEND: {repo: /r/api}\n";

static void test_route(void **state)
{
    (void)state;
    bt_config *cfg = load(cfg_yaml);
    bt_strbuf b = BT_STRBUF_INIT;
    assert_int_equal(bt_intake_route(cfg, "[backend] Add login", NULL, &b), 0);
    assert_string_equal(b.buf, "backend");
    bt_strbuf_reset(&b);
    /* a title prefix wins even for an unconfigured project (its settings fail later) */
    assert_int_equal(bt_intake_route(cfg, "  [mobile-app] Crash", NULL, &b), 0);
    assert_string_equal(b.buf, "mobile-app");
    bt_strbuf_reset(&b);
    json_t *labels = json_pack("[ss]", "bug", "UI");
    assert_int_equal(bt_intake_route(cfg, "Fix the button", labels, &b), 0);
    assert_string_equal(b.buf, "web-front");
    json_decref(labels);
    bt_strbuf_reset(&b);
    labels = json_pack("[s]", "Web_Front"); /* the id itself, '-' and '_' equal */
    assert_int_equal(bt_intake_route(cfg, "x", labels, &b), 0);
    assert_string_equal(b.buf, "web-front");
    json_decref(labels);
    bt_strbuf_reset(&b);
    labels = json_pack("[s]", "bug");
    assert_int_equal(bt_intake_route(cfg, "[not a project] x", labels, &b), BT_ENOENT);
    assert_int_equal(bt_intake_route(cfg, "[] x", labels, &b), BT_ENOENT);
    assert_int_equal(bt_intake_route(cfg, "no prefix", labels, &b), BT_ENOENT);
    json_decref(labels);
    bt_strbuf_release(&b);
    bt_config_free(cfg);
}

typedef struct got {
    int done, rc, created;
    char id[BT_ID_LEN + 1];
    char *project, *workflow;
    int32_t priority;
} got;

static void on_done(void *ud, int rc, const bt_error *err, const bt_task *task, bool created)
{
    (void)err;
    got *g = ud;
    g->done = 1;
    g->rc = rc;
    g->created = created;
    if (task) {
        snprintf(g->id, sizeof g->id, "%s", task->id);
        free(g->project);
        free(g->workflow);
        g->project = task->project ? bt_xstrdup(task->project) : NULL;
        g->workflow = task->workflow ? bt_xstrdup(task->workflow) : NULL;
        g->priority = task->priority;
    }
}

static void submit(uv_loop_t *loop, bt_store *s, bt_config *cfg, const char *title, const char *num,
                   json_t *labels, got *g)
{
    char key[64], ident[64];
    snprintf(key, sizeof key, "github:acme/app#%s", num);
    snprintf(ident, sizeof ident, "acme/app#%s", num);
    json_t *meta = json_pack("{si ss}", "issue_number", atoi(num), "repository", "acme/app");
    bt_tracker_item it = {.source = "github",
                          .external_id = num,
                          .dedupe_key = key,
                          .identifier = ident,
                          .title = title,
                          .body = "",
                          .url = "https://github.com/acme/app/issues/1",
                          .labels = labels,
                          .priority = 1,
                          .meta = meta};
    g->done = 0;
    bt_intake_submit(s, cfg, &it, on_done, g);
    json_decref(meta);
    while (!g->done)
        uv_run(loop, UV_RUN_ONCE);
}

static void test_submit_dedupe(void **state)
{
    (void)state;
    bt_config *cfg = load(cfg_yaml);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = bt_test_tmpdir("intake");
    bt_strbuf url = BT_STRBUF_INIT;
    bt_strbuf_addf(&url, "sqlite:%s/s.db", dir);
    bt_store *s = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_store_open(&loop, url.buf, NULL, &s, &err), 0);
    json_t *labels = json_pack("[ss]", "ai-ready", "ui");
    got a = {0}, b = {0}, c = {0};
    submit(&loop, s, cfg, "Make the button blue", "1", labels, &a);
    assert_int_equal(a.rc, 0);
    assert_true(a.created);
    assert_string_equal(a.project, "web-front"); /* the configured spelling */
    assert_string_equal(a.workflow, "quick");    /* the project's workflow */
    assert_int_equal(a.priority, 1);
    /* the same issue again (next poll, or a webhook): the same task */
    submit(&loop, s, cfg, "Make the button blue", "1", labels, &b);
    assert_int_equal(b.rc, 0);
    assert_false(b.created);
    assert_string_equal(a.id, b.id);
    /* an unconfigured project keeps its environment form (PROJECT_REPO_<ID>) */
    json_t *none = json_array();
    submit(&loop, s, cfg, "[mobile-app] Crash on start", "2", none, &c);
    assert_true(c.created);
    assert_string_equal(c.project, "MOBILE_APP");
    assert_null(c.workflow);
    json_decref(none);
    json_decref(labels);
    free(a.project), free(a.workflow), free(b.project), free(b.workflow), free(c.project),
        free(c.workflow);
    bt_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    bt_strbuf_release(&url);
    bt_test_rmdir(dir);
    bt_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_submit_dedupe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
