/*
 * test_github.c - the GitHub tracker client (src/trackers/github.c).
 *
 * Without a server: the webhook signature against api-reference.md §1.5's test vector
 * (and missing, malformed, mismatching headers); normalisation of an issue (ids, key,
 * lower-cased labels, priority from labels, meta, a null body); webhook payloads
 * translated to enqueue / stop / retry / ping / ignore; clone URL derivation for
 * github.com, GHES and other API URLs; git credentials scoped to the clone URL's host.
 *
 * Against tests/fakes/github_server.py (with a token and a real bare repository) through
 * the real HTTP client on a libuv loop: a poll of 250 labelled issues plus labelled pull
 * requests yields exactly the 250 issues in order with 3 page requests carrying GitHub's
 * headers, and a second poll costs three 304s yet yields them again; an issue carrying
 * either of two watched labels is polled once; started swaps ai-ready for
 * ai-in-progress; open_pr opens a pull request from a pushed branch and finds the same
 * one when asked again, and reports why when the branch is missing or has no commits;
 * finished comments (marker, PR link, summary, numbers) and labels ai-completed (or
 * ai-failed with the error), closing the issue when configured; refresh tells closed,
 * deleted, unlabelled, open and unknown apart; a primary rate limit holds every request
 * until the reset, a secondary one waits Retry-After and skips polls meanwhile, a 502 on
 * a write is retried after a second; git can read the fake's repository with the
 * credentials git_env gives and cannot without; the token appears in no comment, status
 * or error.
 */
#include "testutil.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "http/client.h"
#include "trackers/github.h"

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "ghp_FAKEtoken1234567890abcdef"

/* ================= without a server ================= */

static bt_http_client *no_http(void *ud)
{
    (void)ud;
    return NULL;
}

typedef struct pure {
    uv_loop_t loop;
    bt_config_github cfg;
    bt_github *g;
} pure;

static void pure_cfg(bt_config_github *c)
{
    memset(c, 0, sizeof *c);
    c->token = TOKEN;
    c->repo = "acme/app";
    bt_strvec_push(&c->labels, "ai-ready");
    c->poll_interval_ms = 60000;
    c->webhook_secret = "s3cret-hook";
    c->api_url = "https://api.github.com";
    c->label_in_progress = "ai-in-progress";
    c->label_completed = "ai-completed";
    c->label_failed = "ai-failed";
    c->pull_requests = 1;
    c->commands = 1;
}

static void pure_open(pure *p)
{
    assert_int_equal(uv_loop_init(&p->loop), 0);
    bt_github_opts o = {.loop = &p->loop, .cfg = &p->cfg, .http = no_http};
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_github_new(&o, &p->g, &err), 0);
}

static void pure_close(pure *p)
{
    bt_github_free(p->g);
    p->g = NULL;
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    bt_strvec_clear(&p->cfg.labels);
}

static void test_signature(void **state)
{
    (void)state;
    bt_error err = BT_ERROR_INIT;
    const char *secret = "It's a Secret to Everybody", *body = "Hello, World!";
    const char *good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_int_equal(bt_github_verify_signature(secret, body, strlen(body), good, &err), 0);
    /* one flipped hex digit */
    const char *bad = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18";
    assert_int_equal(bt_github_verify_signature(secret, body, strlen(body), bad, &err), BT_EPERM);
    assert_string_equal(err.msg, "X-Hub-Signature-256 does not match the body");
    /* the right signature over another body */
    assert_int_equal(bt_github_verify_signature(secret, "Hello, World?", 13, good, &err), BT_EPERM);
    assert_int_equal(bt_github_verify_signature("another secret", body, strlen(body), good, &err),
                     BT_EPERM);
    assert_int_equal(bt_github_verify_signature(secret, body, strlen(body), NULL, &err), BT_EPERM);
    assert_string_equal(err.msg, "missing X-Hub-Signature-256 header");
    assert_int_equal(bt_github_verify_signature(secret, body, strlen(body), "", &err), BT_EPERM);
    assert_string_equal(err.msg, "missing X-Hub-Signature-256 header");
    static const char *const malformed[] = {
        "sha256=00",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1700",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        assert_int_equal(bt_github_verify_signature(secret, body, strlen(body), malformed[i], &err),
                         BT_EPERM);
        assert_non_null(strstr(err.msg, "malformed"));
    }
    /* no secret configured: not a pass */
    assert_int_equal(bt_github_verify_signature(NULL, body, strlen(body), good, &err), BT_EUNAVAIL);
    assert_int_equal(bt_github_verify_signature("", body, strlen(body), good, &err), BT_EUNAVAIL);
}

static void test_new_validates(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    bt_config_github c;
    pure_cfg(&c);
    bt_github *g = NULL;
    bt_error err = BT_ERROR_INIT;
    bt_github_opts o = {.loop = &loop, .cfg = &c, .http = no_http};
    static const char *const bad_repos[] = {"acme", "acme/", "/app", "acme/app/x", "ac me/app"};
    for (size_t i = 0; i < sizeof bad_repos / sizeof bad_repos[0]; i++) {
        c.repo = (char *)bad_repos[i];
        assert_int_equal(bt_github_new(&o, &g, &err), BT_EINVAL);
        assert_null(g);
        assert_non_null(strstr(err.msg, "trackers.github.repo"));
    }
    c.repo = "acme/app";
    c.api_url = "ftp://example.com";
    assert_int_equal(bt_github_new(&o, &g, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "trackers.github.api_url"));
    c.api_url = NULL; /* the default */
    bt_strvec_clear(&c.labels);
    bt_github_item_fn any = (bt_github_item_fn)1;
    o.on_item = any;
    assert_int_equal(bt_github_new(&o, &g, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "trackers.github.labels"));
    o.on_item = NULL; /* no polling: no labels needed */
    assert_int_equal(bt_github_new(&o, &g, &err), 0);
    bt_github_free(g);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("bad JSON in the test: %s", je.text);
    return j;
}

static void test_normalize(void **state)
{
    (void)state;
    pure p;
    pure_cfg(&p.cfg);
    pure_open(&p);
    json_t *issue = load("{\"number\":42,\"title\":\"Add login\",\"body\":null,\"state\":\"open\","
                         "\"html_url\":\"https://github.com/acme/app/issues/42\","
                         "\"user\":{\"login\":\"alice\",\"type\":\"User\"},"
                         "\"labels\":[{\"name\":\"AI-Ready\"},{\"name\":\"Priority:High\"},"
                         "{\"name\":\"P3\"},\"Bug\"]}");
    bt_tracker_item it;
    json_t *st = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_github_normalize(p.g, issue, &it, &st, &err), 0);
    json_decref(issue); /* the item must not point into the issue */
    assert_string_equal(it.source, "github");
    assert_string_equal(it.external_id, "42");
    assert_string_equal(it.identifier, "acme/app#42");
    assert_string_equal(it.dedupe_key, "github:acme/app#42");
    assert_string_equal(it.title, "Add login");
    assert_string_equal(it.body, "");
    assert_string_equal(it.url, "https://github.com/acme/app/issues/42");
    char *labels = json_dumps(it.labels, JSON_COMPACT);
    assert_string_equal(labels, "[\"ai-ready\",\"priority:high\",\"p3\",\"bug\"]");
    free(labels);
    assert_int_equal(it.priority, 1); /* the most urgent of high and p3 */
    char *meta = json_dumps(it.meta, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(meta, "{\"author\":\"alice\",\"html_url\":\"https://github.com/acme/app/"
                              "issues/42\",\"issue_number\":42,\"repository\":\"acme/app\","
                              "\"state\":\"open\"}");
    free(meta);
    json_decref(st);

    /* priority table */
    static const struct {
        const char *label;
        int32_t prio;
    } cases[] = {{"priority:critical", 0},
                 {"priority:urgent", 0},
                 {"p0", 0},
                 {"priority:p0", 0},
                 {"priority:high", 1},
                 {"p1", 1},
                 {"priority:medium", 2},
                 {"priority:normal", 2},
                 {"p2", 2},
                 {"priority:low", 3},
                 {"p3", 3},
                 {"p4", 4},
                 {"priority:p4", 4},
                 {"priority:whenever", BT_TRACKER_PRIORITY_NONE},
                 {"p9", BT_TRACKER_PRIORITY_NONE},
                 {"high", BT_TRACKER_PRIORITY_NONE},
                 {"p10", BT_TRACKER_PRIORITY_NONE}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *x = json_pack("{s:i,s:s,s:[{s:s}]}", "number", 7, "title", "t", "labels", "name",
                              cases[i].label);
        assert_int_equal(bt_github_normalize(p.g, x, &it, &st, &err), 0);
        if (it.priority != cases[i].prio)
            fail_msg("label %s: priority %d, want %d", cases[i].label, (int)it.priority,
                     (int)cases[i].prio);
        json_decref(st);
        json_decref(x);
    }
    /* an issue without a number is refused */
    json_t *x = load("{\"title\":\"no number\"}");
    assert_int_equal(bt_github_normalize(p.g, x, &it, &st, &err), BT_EINVAL);
    assert_null(st);
    json_decref(x);
    pure_close(&p);
}

/* ---- webhook payloads ---- */

static char *payload(const char *action, const char *labels, const char *extra)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb,
                   "{\"action\":\"%s\",\"issue\":{\"number\":7,\"title\":\"Fix it\",\"body\":\"b\","
                   "\"state\":\"%s\",\"labels\":[%s],\"user\":{\"login\":\"bob\"},"
                   "\"html_url\":\"https://github.com/acme/app/issues/7\"},"
                   "\"repository\":{\"full_name\":\"acme/app\",\"name\":\"app\","
                   "\"owner\":{\"login\":\"acme\"}},\"sender\":{\"login\":\"bob\","
                   "\"type\":\"User\"}%s%s}",
                   action, strcmp(action, "closed") == 0 ? "closed" : "open", labels,
                   extra ? "," : "", extra ? extra : "");
    return bt_strbuf_detach(&sb, NULL);
}

static int hook(pure *p, const char *event, const char *body, bt_github_hook *h, bt_error *err)
{
    return bt_github_parse_hook(p->g, event, body, strlen(body), h, err);
}

static void expect_ignore(pure *p, const char *event, char *body, const char *why)
{
    bt_github_hook h;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(hook(p, event, body, &h, &err), 0);
    if (h.kind != BT_GITHUB_HOOK_IGNORE)
        fail_msg("%s: kind %d, want ignore", body, (int)h.kind);
    assert_non_null(h.why);
    if (!strstr(h.why, why))
        fail_msg("why '%s' does not say '%s'", h.why, why);
    bt_github_hook_release(&h);
    free(body);
}

static void expect_kind(pure *p, const char *event, char *body, bt_github_hook_kind kind,
                        int terminal)
{
    bt_github_hook h;
    bt_error err = BT_ERROR_INIT;
    if (hook(p, event, body, &h, &err) != 0)
        fail_msg("%s: %s", body, err.msg);
    if (h.kind != kind)
        fail_msg("%s: kind %d, want %d (%s)", body, (int)h.kind, (int)kind, h.why ? h.why : "");
    assert_int_equal(h.terminal, terminal);
    assert_string_equal(h.dedupe_key, "github:acme/app#7");
    bt_github_hook_release(&h);
    free(body);
}

static void test_parse_hook(void **state)
{
    (void)state;
    pure p;
    pure_cfg(&p.cfg);
    pure_open(&p);
    bt_github_hook h;
    bt_error err = BT_ERROR_INIT;

    /* opened with a watched label (any case): enqueue the normalised item */
    char *b = payload("opened", "{\"name\":\"AI-Ready\"},{\"name\":\"priority:low\"}", NULL);
    assert_int_equal(hook(&p, "issues", b, &h, &err), 0);
    assert_int_equal(h.kind, BT_GITHUB_HOOK_ENQUEUE);
    assert_string_equal(h.dedupe_key, "github:acme/app#7");
    assert_string_equal(h.item.dedupe_key, "github:acme/app#7");
    assert_string_equal(h.item.identifier, "acme/app#7");
    assert_string_equal(h.item.title, "Fix it");
    assert_int_equal(h.item.priority, 3);
    assert_string_equal(json_string_value(json_array_get(h.item.labels, 0)), "ai-ready");
    bt_github_hook_release(&h);
    free(b);

    expect_kind(&p, "issues",
                payload("labeled", "{\"name\":\"ai-ready\"}", "\"label\":{\"name\":\"ai-ready\"}"),
                BT_GITHUB_HOOK_ENQUEUE, 0);
    expect_kind(&p, "issues", payload("reopened", "{\"name\":\"ai-ready\"}", NULL),
                BT_GITHUB_HOOK_ENQUEUE, 0);
    /* labelled with another label while ai-ready is there: nothing new */
    expect_ignore(&p, "issues",
                  payload("labeled", "{\"name\":\"ai-ready\"},{\"name\":\"bug\"}",
                          "\"label\":{\"name\":\"bug\"}"),
                  "bug");
    expect_ignore(&p, "issues", payload("opened", "{\"name\":\"bug\"}", NULL), "no watched label");
    expect_kind(&p, "issues", payload("closed", "{\"name\":\"ai-in-progress\"}", NULL),
                BT_GITHUB_HOOK_STOP, 1);
    /* ai-ready removed and nothing else baton watches: stop, not terminal */
    expect_kind(&p, "issues",
                payload("unlabeled", "{\"name\":\"bug\"}", "\"label\":{\"name\":\"ai-ready\"}"),
                BT_GITHUB_HOOK_STOP, 0);
    /* ai-ready removed by baton itself (in progress now): keep going */
    expect_ignore(
        &p, "issues",
        payload("unlabeled", "{\"name\":\"AI-In-Progress\"}", "\"label\":{\"name\":\"ai-ready\"}"),
        "still carries");
    expect_ignore(&p, "issues", payload("edited", "{\"name\":\"ai-ready\"}", NULL),
                  "action edited");

    /* comments */
    const char *c_retry = "\"comment\":{\"id\":1,\"body\":\"  /baton retry \\r\\nplease\","
                          "\"user\":{\"login\":\"bob\",\"type\":\"User\"}}";
    char *cb = payload("created", "{\"name\":\"ai-failed\"}", c_retry);
    expect_kind(&p, "issue_comment", cb, BT_GITHUB_HOOK_RETRY, 0);
    expect_ignore(&p, "issue_comment",
                  payload("created", "",
                          "\"comment\":{\"id\":1,\"body\":\"please /baton retry\","
                          "\"user\":{\"login\":\"bob\",\"type\":\"User\"}}"),
                  "not a command");
    expect_ignore(&p, "issue_comment",
                  payload("created", "",
                          "\"comment\":{\"id\":1,\"body\":\"/baton retry\","
                          "\"user\":{\"login\":\"ci\",\"type\":\"Bot\"}}"),
                  "bot");
    expect_ignore(&p, "issue_comment",
                  payload("created", "",
                          "\"comment\":{\"id\":1,\"body\":\"<!-- baton -->\\n/baton retry\","
                          "\"user\":{\"login\":\"bob\",\"type\":\"User\"}}"),
                  "baton's own");
    expect_ignore(&p, "issue_comment", payload("edited", "", c_retry), "action edited");
    /* a comment on a pull request */
    b = payload("created", "", c_retry);
    char *at = strstr(b, "\"html_url\"");
    bt_strbuf pr = BT_STRBUF_INIT;
    bt_strbuf_add(&pr, b, (size_t)(at - b));
    bt_strbuf_addstr(&pr, "\"pull_request\":{\"url\":\"x\"},");
    bt_strbuf_addstr(&pr, at);
    free(b);
    expect_ignore(&p, "issue_comment", bt_strbuf_detach(&pr, NULL), "pull request");
    p.cfg.commands = 0;
    expect_ignore(&p, "issue_comment", payload("created", "", c_retry), "commands are disabled");
    p.cfg.commands = 1;

    /* ping, other events */
    const char *ping = "{\"zen\":\"Keep it logically awesome.\",\"hook_id\":1}";
    assert_int_equal(hook(&p, "ping", ping, &h, &err), 0);
    assert_int_equal(h.kind, BT_GITHUB_HOOK_PING);
    bt_github_hook_release(&h);
    expect_ignore(&p, "push", bt_xstrdup("{\"ref\":\"refs/heads/main\"}"), "event push");

    /* unusable payloads */
    assert_int_equal(hook(&p, "issues", "{not json", &h, &err), BT_EPARSE);
    assert_string_equal(err.msg, "body is not JSON");
    b = bt_xstrdup("{\"action\":\"opened\",\"issue\":{\"number\":7,\"labels\":[]},"
                   "\"repository\":{\"full_name\":\"other/repo\"}}");
    assert_int_equal(hook(&p, "issues", b, &h, &err), BT_EINVAL);
    assert_string_equal(err.msg, "repository other/repo is not the configured acme/app");
    free(b);
    b = bt_xstrdup("{\"action\":\"opened\",\"issue\":{\"title\":\"x\"},"
                   "\"repository\":{\"full_name\":\"acme/app\"}}");
    assert_int_equal(hook(&p, "issues", b, &h, &err), BT_EINVAL);
    assert_string_equal(err.msg, "issues payload has no issue.number");
    free(b);
    pure_close(&p);
}

static void test_repo_url(void **state)
{
    (void)state;
    static const struct {
        const char *api, *clone, *want;
    } cases[] = {
        {"https://api.github.com", NULL, "https://github.com/acme/app.git"},
        {"https://api.github.com/", NULL, "https://github.com/acme/app.git"},
        {"https://ghe.example.com/api/v3", NULL, "https://ghe.example.com/acme/app.git"},
        {"https://ghe.example.com/api/v3/", NULL, "https://ghe.example.com/acme/app.git"},
        {"http://127.0.0.1:8080", NULL, "http://127.0.0.1:8080/acme/app.git"},
        {"https://api.github.com", "/srv/git/app.git", "/srv/git/app.git"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pure p;
        pure_cfg(&p.cfg);
        p.cfg.api_url = (char *)cases[i].api;
        p.cfg.clone_url = (char *)cases[i].clone;
        pure_open(&p);
        bt_tracker *t = bt_github_tracker(p.g);
        assert_string_equal(t->ops->name, "github");
        char *url = t->ops->repo_url(t, NULL);
        assert_string_equal(url, cases[i].want);
        free(url);
        pure_close(&p);
    }
}

static void test_git_env_scope(void **state)
{
    (void)state;
    pure p;
    pure_cfg(&p.cfg);
    pure_open(&p);
    bt_tracker *t = bt_github_tracker(p.g);
    bt_error err = BT_ERROR_INIT;
    bt_strvec env = BT_STRVEC_INIT;
    /* the tracker's own host: an extraHeader scoped to https://github.com/ */
    assert_int_equal(t->ops->git_env(t, "https://github.com/acme/app.git", &env, &err), 0);
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_KEY_0"),
                        "http.https://github.com/.extraHeader");
    /* base64("x-access-token:" TOKEN) */
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_VALUE_0"),
                        "Authorization: Basic "
                        "eC1hY2Nlc3MtdG9rZW46Z2hwX0ZBS0V0b2tlbjEyMzQ1Njc4OTBhYmNkZWY=");
    assert_string_equal(bt_strvec_env_get(&env, "GIT_TERMINAL_PROMPT"), "0");
    bt_strvec_clear(&env);
    /* a project's repository on another host gets no token */
    assert_int_equal(t->ops->git_env(t, "https://gitlab.example.com/acme/app.git", &env, &err), 0);
    assert_null(bt_strvec_env_get(&env, "GIT_CONFIG_COUNT"));
    for (size_t i = 0; i < env.len; i++)
        assert_null(strstr(env.items[i], "Basic"));
    assert_string_equal(bt_strvec_env_get(&env, "GIT_TERMINAL_PROMPT"), "0");
    bt_strvec_clear(&env);
    /* a look-alike host is another host */
    assert_int_equal(t->ops->git_env(t, "https://github.com.evil.example/acme/app.git", &env, &err),
                     0);
    assert_null(bt_strvec_env_get(&env, "GIT_CONFIG_COUNT"));
    bt_strvec_clear(&env);
    pure_close(&p);
}

/* ================= against the fake GitHub ================= */

typedef struct fx {
    uv_loop_t loop;
    bt_http_client *http;
    bt_test_fake fake;
    char base[64];
    char api[96];
    char clone[128];
    char *tmp;
    char git_root[512];
    bt_config_github cfg;
    bt_github *g;
    json_t *items; /* external ids handed to on_item, in order */
    int stopped;
    /* Wakes the loop every few ms: a test waits with uv_run(UV_RUN_ONCE) until a flag is
     * set, and a callback that sets it from the timer phase would otherwise leave that
     * iteration blocked in the poll phase until the next timer (an hour away). */
    uv_timer_t wake;
} fx;

static void fake_start(fx *f)
{
    const char *extra[] = {"--token", TOKEN, "--git-root", f->git_root, "--repo", "acme/app", NULL};
    bt_test_fake_start_args(&f->fake, "github_server.py", extra);
    snprintf(f->base, sizeof f->base, "%s", f->fake.base);
}

static bt_http_client *fx_http(void *ud)
{
    return ((fx *)ud)->http;
}

static void on_item(const bt_tracker_item *it, void *ud)
{
    fx *f = ud;
    assert_string_equal(it->source, "github");
    json_array_append_new(f->items, json_string(it->external_id));
}

static void fx_make(fx *f)
{
    bt_github_opts o = {
        .loop = &f->loop, .cfg = &f->cfg, .http = fx_http, .on_item = on_item, .ud = f};
    bt_error err = BT_ERROR_INIT;
    if (bt_github_new(&o, &f->g, &err) != 0)
        fail_msg("bt_github_new: %s", err.msg);
}

static void wake_cb(uv_timer_t *t)
{
    (void)t;
}

static int fx_setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    f->tmp = bt_test_tmpdir("github");
    snprintf(f->git_root, sizeof f->git_root, "%s/git", f->tmp);
    fake_start(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->wake);
    uv_timer_start(&f->wake, wake_cb, 5, 5);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_client_new(&f->loop, NULL, &f->http, &err), 0);
    snprintf(f->api, sizeof f->api, "%s/", f->base); /* a trailing slash is fine */
    snprintf(f->clone, sizeof f->clone, "%s/acme/app.git", f->base);
    pure_cfg(&f->cfg);
    f->cfg.api_url = f->api;
    f->cfg.poll_interval_ms = 3600000; /* tests poll with bt_github_poll_now */
    f->items = json_array();
    fx_make(f);
    *state = f;
    return 0;
}

static void stopped_cb(void *ud)
{
    ((fx *)ud)->stopped++;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    bt_github_stop(f->g, stopped_cb, f);
    int64_t end = bt_time_mono_ms() + 10000;
    while (!f->stopped && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->stopped, 1);
    bt_github_free(f->g);
    uv_close((uv_handle_t *)&f->wake, NULL);
    bt_http_client_close(f->http);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_test_fake_stop(&f->fake);
    bt_strvec_clear(&f->cfg.labels);
    json_decref(f->items);
    bt_test_rmdir(f->tmp);
    free(f);
    return 0;
}

/* ---- synchronous control calls ---- */

static json_t *ctl(fx *f, const char *method, const char *path, const char *body)
{
    return bt_test_ctl(&f->loop, f->http, f->base, method, path, body);
}

static void ctlv(fx *f, const char *path, const char *body)
{
    json_decref(ctl(f, "POST", path, body));
}

static int new_issue(fx *f, const char *title, const char *labels)
{
    char body[512];
    snprintf(body, sizeof body, "{\"title\":\"%s\",\"body\":\"details\",\"labels\":[%s]}", title,
             labels);
    json_t *j = ctl(f, "POST", "/_control/issues", body);
    int n = (int)bt_json_int(j, "number", 0);
    json_decref(j);
    assert_true(n > 0);
    return n;
}

/* The fake's issue n (new reference). */
static json_t *issue_state(fx *f, int n)
{
    json_t *st = ctl(f, "GET", "/_control/state", NULL);
    char key[16];
    snprintf(key, sizeof key, "%d", n);
    json_t *i = json_incref(json_object_get(json_object_get(st, "issues"), key));
    json_decref(st);
    assert_non_null(i);
    return i;
}

static int has_label(const json_t *issue, const char *name)
{
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(issue, "labels"), i, l)
    {
        if (strcmp(bt_json_str(l, "name", ""), name) == 0)
            return 1;
    }
    return 0;
}

/* API requests logged by the fake (new reference), optionally only those whose path
 * starts with prefix and whose method is method. */
static json_t *requests(fx *f, const char *method, const char *prefix)
{
    json_t *all = ctl(f, "GET", "/_control/requests", NULL);
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(all, i, r)
    {
        if (strcmp(bt_json_str(r, "kind", "api"), "api") != 0)
            continue;
        if (method && strcmp(bt_json_str(r, "method", ""), method) != 0)
            continue;
        if (prefix && strncmp(bt_json_str(r, "path", ""), prefix, strlen(prefix)) != 0)
            continue;
        json_array_append(out, r);
    }
    json_decref(all);
    return out;
}

static void clear_requests(fx *f)
{
    ctlv(f, "/_control/requests/clear", "{}");
}

static void run_until(fx *f, const int *flag, int64_t timeout_ms)
{
    int64_t end = bt_time_mono_ms() + timeout_ms;
    while (!*flag) {
        if (bt_time_mono_ms() > end)
            fail_msg("timed out after %lld ms", (long long)timeout_ms);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

/* ---- tracker op wrappers ---- */

typedef struct op_result {
    int done;
    int rc;
    char msg[BT_ERROR_MSG_MAX];
    char url[256];
    bt_tracker_state state;
} op_result;

static void done_cb(int rc, const bt_error *err, void *ud)
{
    op_result *r = ud;
    r->done++;
    r->rc = rc;
    snprintf(r->msg, sizeof r->msg, "%s", err ? err->msg : "");
}

static void pr_cb(int rc, const bt_error *err, const char *url, void *ud)
{
    op_result *r = ud;
    r->done++;
    r->rc = rc;
    snprintf(r->msg, sizeof r->msg, "%s", err ? err->msg : "");
    snprintf(r->url, sizeof r->url, "%s", url ? url : "");
}

static void state_cb(bt_tracker_state state, const char *why, void *ud)
{
    op_result *r = ud;
    r->done++;
    r->state = state;
    snprintf(r->msg, sizeof r->msg, "%s", why ? why : "");
}

static int do_started(fx *f, int n, op_result *r)
{
    char id[16];
    snprintf(id, sizeof id, "%d", n);
    memset(r, 0, sizeof *r);
    bt_tracker *t = bt_github_tracker(f->g);
    t->ops->started(t, id, NULL, done_cb, r);
    assert_int_equal(r->done, 0); /* never before the call returns */
    run_until(f, &r->done, 20000);
    assert_int_equal(r->done, 1);
    return r->rc;
}

static int do_open_pr(fx *f, int n, const char *branch, op_result *r)
{
    char id[16];
    snprintf(id, sizeof id, "%d", n);
    memset(r, 0, sizeof *r);
    bt_tracker *t = bt_github_tracker(f->g);
    bt_tracker_pr pr = {
        .external_id = id, .branch = branch, .title = "Fix the thing", .body = "Closes #1"};
    t->ops->open_pr(t, &pr, pr_cb, r);
    assert_int_equal(r->done, 0);
    run_until(f, &r->done, 20000);
    return r->rc;
}

static int do_finished(fx *f, const bt_tracker_outcome *o, op_result *r)
{
    memset(r, 0, sizeof *r);
    bt_tracker *t = bt_github_tracker(f->g);
    t->ops->finished(t, o, done_cb, r);
    assert_int_equal(r->done, 0);
    run_until(f, &r->done, 20000);
    return r->rc;
}

static bt_tracker_state do_refresh(fx *f, const char *id, op_result *r)
{
    memset(r, 0, sizeof *r);
    bt_tracker *t = bt_github_tracker(f->g);
    t->ops->refresh(t, id, NULL, state_cb, r);
    assert_int_equal(r->done, 0);
    run_until(f, &r->done, 20000);
    return r->state;
}

/* A branch with one new commit (or none) pushed into the fake's bare repository. */
static void push_branch(fx *f, const char *branch, int with_commit)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; rm -rf wc-%s; git clone -q '%s/acme/app.git' wc-%s; cd wc-%s; "
             "%s git push -q origin HEAD:refs/heads/%s",
             f->tmp, branch, f->git_root, branch, branch,
             with_commit ? "echo change > change.txt; git add change.txt; "
                           "git -c user.name=t -c user.email=t@t commit -qm change;"
                         : "",
             branch);
    if (system(cmd) != 0)
        fail_msg("could not push %s", branch);
}

static void wait_polled(fx *f, const char *prev)
{
    int64_t end = bt_time_mono_ms() + 30000;
    for (;;) {
        json_t *st = bt_github_status(f->g);
        const char *at = bt_json_str(st, "last_poll_at", NULL);
        int changed = at && (!prev || strcmp(at, prev) != 0);
        json_decref(st);
        if (changed)
            return;
        if (bt_time_mono_ms() > end)
            fail_msg("no poll completed");
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static void test_poll_pages_and_etags(void **state)
{
    fx *f = *state;
    /* two labelled pull requests: listed by GitHub among the issues, never items */
    op_result r;
    push_branch(f, "pr-a", 1);
    assert_int_equal(do_open_pr(f, 1, "pr-a", &r), 0);
    ctlv(f, "/_control/issues/1/labels", "{\"add\":[\"ai-ready\"]}");
    for (int i = 0; i < 125; i++) {
        char title[32];
        snprintf(title, sizeof title, "issue %d", i);
        new_issue(f, title, i % 10 ? "\"ai-ready\"" : "\"AI-Ready\",\"priority:high\"");
    }
    push_branch(f, "pr-b", 1);
    assert_int_equal(do_open_pr(f, 1, "pr-b", &r), 0);
    ctlv(f, "/_control/issues/127/labels", "{\"add\":[\"ai-ready\"]}");
    for (int i = 125; i < 250; i++) {
        char title[32];
        snprintf(title, sizeof title, "issue %d", i);
        new_issue(f, title, "\"ai-ready\"");
    }
    new_issue(f, "not labelled", "\"bug\"");
    int closed = new_issue(f, "closed", "\"ai-ready\"");
    char path[64];
    snprintf(path, sizeof path, "/_control/issues/%d/close", closed);
    ctlv(f, path, "{}");
    clear_requests(f);

    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_github_start(f->g, &err), 0);
    wait_polled(f, NULL);
    /* 250 issues, oldest first, no pull request */
    assert_int_equal(json_array_size(f->items), 250);
    long prev = 0;
    size_t i;
    json_t *v;
    json_array_foreach(f->items, i, v)
    {
        long n = strtol(json_string_value(v), NULL, 10);
        assert_true(n > prev);
        assert_true(n != 1 && n != 127);
        prev = n;
    }
    json_t *rq = requests(f, "GET", "/repos/acme/app/issues");
    assert_int_equal(json_array_size(rq), 3);
    json_array_foreach(rq, i, v)
    {
        assert_int_equal(bt_json_int(v, "status", 0), 200);
        const json_t *h = json_object_get(v, "headers");
        assert_string_equal(bt_json_str(h, "authorization", ""), "Bearer " TOKEN);
        assert_string_equal(bt_json_str(h, "accept", ""), "application/vnd.github+json");
        assert_string_equal(bt_json_str(h, "x-github-api-version", ""), "2022-11-28");
        assert_true(strlen(bt_json_str(h, "user-agent", "")) > 0);
        const char *q = bt_json_str(v, "query", "");
        assert_non_null(strstr(q, "labels=ai-ready"));
        assert_non_null(strstr(q, "per_page=100"));
        assert_non_null(strstr(q, "state=open"));
        if (i > 0) {
            char page[32];
            snprintf(page, sizeof page, "page=%zu", i + 1);
            assert_non_null(strstr(q, page));
        }
    }
    json_decref(rq);
    json_t *st = bt_github_status(f->g);
    assert_int_equal(bt_json_int(st, "issues_seen", 0), 250);
    assert_true(json_is_null(json_object_get(st, "last_error")));
    assert_true(bt_json_int(json_object_get(st, "rate_limit"), "remaining", -1) > 0);
    char *prev_at = bt_xstrdup(bt_json_str(st, "last_poll_at", ""));
    json_decref(st);

    /* two more polls (the second asked while the first runs, so it waits for it):
     * nothing changed, three 304s each, the same items again */
    clear_requests(f);
    bt_github_poll_now(f->g);
    bt_github_poll_now(f->g); /* coalesced with the one in flight */
    wait_polled(f, prev_at);
    free(prev_at);
    st = bt_github_status(f->g);
    prev_at = bt_xstrdup(bt_json_str(st, "last_poll_at", ""));
    json_decref(st);
    wait_polled(f, prev_at); /* the coalesced one: exactly one more */
    free(prev_at);
    assert_int_equal(json_array_size(f->items), 750);
    for (i = 0; i < 500; i++)
        assert_string_equal(json_string_value(json_array_get(f->items, i)),
                            json_string_value(json_array_get(f->items, 250 + i)));
    rq = requests(f, "GET", "/repos/acme/app/issues");
    json_array_foreach(rq, i, v)
    {
        assert_int_equal(bt_json_int(v, "status", 0), 304);
        assert_true(strlen(bt_json_str(json_object_get(v, "headers"), "if-none-match", "")) > 0);
    }
    assert_int_equal(json_array_size(rq), 6);
    json_decref(rq);
}

static void test_poll_any_watched_label(void **state)
{
    fx *f = *state;
    /* watched: ai-ready and urgent; an issue with either (or both) is one item */
    bt_github_free(f->g);
    bt_strvec_push(&f->cfg.labels, "urgent");
    fx_make(f);
    int both = new_issue(f, "both", "\"ai-ready\",\"urgent\"");
    int ready = new_issue(f, "ready", "\"ai-ready\"");
    int urgent = new_issue(f, "urgent", "\"Urgent\"");
    new_issue(f, "neither", "\"bug\"");
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_github_start(f->g, &err), 0);
    wait_polled(f, NULL);
    char want[64];
    snprintf(want, sizeof want, "[\"%d\",\"%d\",\"%d\"]", both, ready, urgent);
    char *got = json_dumps(f->items, JSON_COMPACT);
    assert_string_equal(got, want);
    free(got);
}

static void test_started(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "work", "\"ai-ready\",\"bug\"");
    op_result r;
    assert_int_equal(do_started(f, n, &r), 0);
    json_t *i = issue_state(f, n);
    assert_true(has_label(i, "ai-in-progress"));
    assert_false(has_label(i, "ai-ready"));
    assert_true(has_label(i, "bug"));
    json_decref(i);
    /* again (a retry): nothing to remove any more, still fine */
    assert_int_equal(do_started(f, n, &r), 0);
    /* not an issue number: an error, from a loop callback */
    assert_int_equal(do_started(f, 0, &r), BT_EINVAL);
    assert_non_null(strstr(r.msg, "not an issue number"));
}

static void test_open_pr(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "feature", "\"ai-ready\"");
    op_result r;
    /* the branch was never pushed */
    assert_true(do_open_pr(f, n, "ai-feature/issue-1", &r) < 0);
    assert_non_null(strstr(r.msg, "422"));
    assert_non_null(strstr(r.msg, "head"));
    /* a branch without a new commit */
    push_branch(f, "empty", 0);
    assert_true(do_open_pr(f, n, "empty", &r) < 0);
    assert_non_null(strstr(r.msg, "No commits between main and empty"));
    /* pushed with a commit: opened against the default branch */
    push_branch(f, "feat", 1);
    clear_requests(f);
    assert_int_equal(do_open_pr(f, n, "feat", &r), 0);
    char want[128];
    snprintf(want, sizeof want, "%s/acme/app/pull/", f->base);
    assert_true(strncmp(r.url, want, strlen(want)) == 0);
    char first[256];
    snprintf(first, sizeof first, "%s", r.url);
    json_t *rq = requests(f, "POST", "/repos/acme/app/pulls");
    assert_int_equal(json_array_size(rq), 1);
    const json_t *body = json_object_get(json_array_get(rq, 0), "body");
    assert_string_equal(bt_json_str(body, "base", ""), "main");
    assert_string_equal(bt_json_str(body, "head", ""), "feat");
    assert_string_equal(bt_json_str(body, "title", ""), "Fix the thing");
    assert_false(bt_json_bool(body, "draft", 1));
    json_decref(rq);
    /* asked again (a retry after a crash): the same pull request */
    assert_int_equal(do_open_pr(f, n, "feat", &r), 0);
    assert_string_equal(r.url, first);
    json_t *st = ctl(f, "GET", "/_control/state", NULL);
    assert_int_equal(json_array_size(json_object_get(st, "pulls")), 1);
    json_decref(st);
    /* base_branch from the configuration: no repository lookup */
    f->cfg.base_branch = "main";
    f->cfg.draft_pull_requests = 1;
    push_branch(f, "feat2", 1);
    clear_requests(f);
    assert_int_equal(do_open_pr(f, n, "feat2", &r), 0);
    rq = requests(f, "GET", "/repos/acme/app");
    assert_int_equal(json_array_size(rq), 0);
    json_decref(rq);
    rq = requests(f, "POST", "/repos/acme/app/pulls");
    assert_true(bt_json_bool(json_object_get(json_array_get(rq, 0), "body"), "draft", 0));
    json_decref(rq);
}

static const json_t *last_comment(const json_t *issue)
{
    const json_t *c = json_object_get(issue, "comments");
    return json_array_get(c, json_array_size(c) - 1);
}

static void test_finished(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "done soon", "\"ai-ready\"");
    op_result r;
    assert_int_equal(do_started(f, n, &r), 0);
    char id[16];
    snprintf(id, sizeof id, "%d", n);
    bt_tracker_outcome ok = {.external_id = id,
                             .task_id = "T1",
                             .run_id = "R1",
                             .success = 1,
                             .summary = "Changed login.c\nAdded a test with ```code```\n" TOKEN,
                             .pr_url = "https://github.com/acme/app/pull/9",
                             .branch = "ai-feature/issue-1",
                             .tokens_in = 1200,
                             .tokens_out = 340,
                             .cost_usd = 0.0123,
                             .attempts = 1};
    assert_int_equal(do_finished(f, &ok, &r), 0);
    json_t *i = issue_state(f, n);
    assert_true(has_label(i, "ai-completed"));
    assert_false(has_label(i, "ai-in-progress"));
    assert_false(has_label(i, "ai-ready"));
    assert_string_equal(bt_json_str(i, "state", ""), "open"); /* close_issues is off */
    const char *body = bt_json_str(last_comment(i), "body", "");
    assert_true(strncmp(body, "<!-- baton -->\n", 15) == 0);
    assert_non_null(strstr(body, "baton completed this issue."));
    assert_non_null(strstr(body, "https://github.com/acme/app/pull/9"));
    assert_non_null(strstr(body, "````\nChanged login.c\n")); /* fenced past the ``` inside */
    assert_non_null(strstr(body, "Attempts: 1 · Tokens: 1200/340 · Cost: $0.0123"));
    assert_non_null(strstr(body, "task T1, run R1"));
    assert_null(strstr(body, TOKEN));
    assert_non_null(strstr(body, "***"));
    json_decref(i);

    /* a failure after two attempts, with close_issues on (success only) */
    f->cfg.close_issues = 1;
    int m = new_issue(f, "too hard", "\"ai-ready\"");
    assert_int_equal(do_started(f, m, &r), 0);
    snprintf(id, sizeof id, "%d", m);
    bt_tracker_outcome bad = {.external_id = id,
                              .task_id = "T2",
                              .run_id = "R2",
                              .success = 0,
                              .error = "agent claude exited with status 1: compile error",
                              .tokens_in = 10,
                              .tokens_out = 2,
                              .cost_usd = 0.5,
                              .attempts = 2};
    assert_int_equal(do_finished(f, &bad, &r), 0);
    i = issue_state(f, m);
    assert_true(has_label(i, "ai-failed"));
    assert_false(has_label(i, "ai-in-progress"));
    assert_false(has_label(i, "ai-completed"));
    assert_string_equal(bt_json_str(i, "state", ""), "open");
    body = bt_json_str(last_comment(i), "body", "");
    assert_true(strncmp(body, "<!-- baton -->\n", 15) == 0);
    assert_non_null(strstr(body, "baton could not complete this issue after 2 attempts."));
    assert_non_null(strstr(body, "agent claude exited with status 1: compile error"));
    assert_non_null(strstr(body, "Attempts: 2 · Tokens: 10/2 · Cost: $0.5000"));
    json_decref(i);

    /* success with close_issues: closed as completed */
    int k = new_issue(f, "close me", "\"ai-ready\"");
    snprintf(id, sizeof id, "%d", k);
    ok.external_id = id;
    ok.summary = "one line";
    assert_int_equal(do_finished(f, &ok, &r), 0);
    i = issue_state(f, k);
    assert_string_equal(bt_json_str(i, "state", ""), "closed");
    assert_string_equal(bt_json_str(i, "state_reason", ""), "completed");
    assert_non_null(strstr(bt_json_str(last_comment(i), "body", ""), "\none line\n"));
    json_decref(i);

    /* an issue that does not exist: every part tried, the error reported, no token */
    ok.external_id = "999";
    assert_true(do_finished(f, &ok, &r) < 0);
    assert_non_null(strstr(r.msg, "acme/app#999"));
    assert_non_null(strstr(r.msg, "404"));
    assert_null(strstr(r.msg, TOKEN));
    json_t *st = bt_github_status(f->g);
    char *dump = json_dumps(st, JSON_COMPACT);
    assert_non_null(strstr(dump, "acme/app#999"));
    assert_null(strstr(dump, TOKEN));
    free(dump);
    json_decref(st);
    /* no request ever carried the token anywhere but the Authorization header */
    json_t *rq = requests(f, NULL, NULL);
    size_t ri;
    json_t *v;
    json_array_foreach(rq, ri, v)
    {
        char *s = json_dumps(json_object_get(v, "body"), JSON_ENCODE_ANY);
        assert_null(s ? strstr(s, TOKEN) : NULL);
        free(s);
        assert_null(strstr(bt_json_str(v, "query", ""), TOKEN));
    }
    json_decref(rq);
}

static void test_refresh(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "watch me", "\"ai-ready\"");
    char id[16], path[64];
    snprintf(id, sizeof id, "%d", n);
    op_result r;
    assert_int_equal(do_refresh(f, id, &r), BT_TRACKER_ACTIVE);
    snprintf(path, sizeof path, "/_control/issues/%d/labels", n);
    ctlv(f, path, "{\"add\":[\"ai-in-progress\"],\"remove\":[\"ai-ready\"]}");
    assert_int_equal(do_refresh(f, id, &r), BT_TRACKER_ACTIVE);
    ctlv(f, path, "{\"remove\":[\"ai-in-progress\"]}");
    assert_int_equal(do_refresh(f, id, &r), BT_TRACKER_INACTIVE);
    assert_string_equal(r.msg, "label ai-ready removed");
    snprintf(path, sizeof path, "/_control/issues/%d/close", n);
    ctlv(f, path, "{}");
    assert_int_equal(do_refresh(f, id, &r), BT_TRACKER_TERMINAL);
    assert_string_equal(r.msg, "issue closed");
    assert_int_equal(do_refresh(f, "999", &r), BT_TRACKER_TERMINAL);
    assert_string_equal(r.msg, "issue deleted");
    ctlv(f, "/_control/fail", "{\"count\":1,\"status\":502,\"path_prefix\":\"/repos\"}");
    assert_int_equal(do_refresh(f, id, &r), BT_TRACKER_UNKNOWN);
    assert_non_null(strstr(r.msg, "502"));
    assert_int_equal(do_refresh(f, "not-a-number", &r), BT_TRACKER_UNKNOWN);
}

static void test_primary_rate_limit(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "limited", "\"ai-ready\"");
    json_t *doc = ctl(f, "POST", "/_control/ratelimit", "{\"remaining\":0,\"reset_in\":2}");
    double reset = (double)bt_json_int(json_object_get(doc, "rate"), "reset", 0);
    json_decref(doc);
    assert_true(reset > 0);
    clear_requests(f);
    op_result r;
    assert_int_equal(do_started(f, n, &r), 0);
    json_t *rq = requests(f, NULL, NULL);
    size_t i;
    json_t *v;
    int limited = 0;
    json_array_foreach(rq, i, v)
    {
        long status = (long)bt_json_int(v, "status", 0);
        double t = json_number_value(json_object_get(v, "time"));
        if (i == 0) {
            assert_int_equal(status, 403); /* how the client learnt of the limit */
            limited++;
            continue;
        }
        /* nothing else reached the fake before the reset */
        if (t < reset)
            fail_msg("request %zu at %.3f, before the reset at %.0f", i, t, reset);
        assert_true(status == 200 || status == 404);
    }
    assert_int_equal(limited, 1);
    assert_true(json_array_size(rq) >= 3); /* add + remove went through afterwards */
    json_decref(rq);
    json_t *is = issue_state(f, n);
    assert_true(has_label(is, "ai-in-progress"));
    json_decref(is);
}

static void test_secondary_rate_limit(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "slow down", "\"ai-ready\"");
    ctlv(f, "/_control/ratelimit", "{\"secondary\":1,\"retry_after\":1}");
    clear_requests(f);
    char id[16];
    snprintf(id, sizeof id, "%d", n);
    op_result r;
    memset(&r, 0, sizeof r);
    bt_tracker *t = bt_github_tracker(f->g);
    t->ops->started(t, id, NULL, done_cb, &r);
    /* once paused (looked at without blocking in the loop, which would sleep through
     * the pause): a poll is skipped, a refresh answers unknown at once */
    int64_t end = bt_time_mono_ms() + 5000;
    for (;;) {
        json_t *st = bt_github_status(f->g);
        int paused = !json_is_null(json_object_get(st, "paused_until"));
        json_decref(st);
        if (paused)
            break;
        assert_int_equal(r.done, 0);
        assert_true(bt_time_mono_ms() < end);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    bt_github_poll_now(f->g);
    op_result rr;
    assert_int_equal(do_refresh(f, id, &rr), BT_TRACKER_UNKNOWN);
    assert_non_null(strstr(rr.msg, "rate limit"));
    run_until(f, &r.done, 20000);
    assert_int_equal(r.rc, 0);
    json_t *rq = requests(f, NULL, NULL);
    assert_true(json_array_size(rq) >= 3);
    json_t *first = json_array_get(rq, 0), *second = json_array_get(rq, 1);
    assert_int_equal(bt_json_int(first, "status", 0), 403);
    assert_int_equal(bt_json_int(second, "status", 0), 200);
    double gap = json_number_value(json_object_get(second, "time")) -
                 json_number_value(json_object_get(first, "time"));
    if (gap < 0.95)
        fail_msg("retried %.3f s after a Retry-After: 1", gap);
    size_t i;
    json_t *v;
    json_array_foreach(rq, i, v)
    {
        /* the skipped poll sent nothing; the refresh neither */
        assert_null(strstr(bt_json_str(v, "path", ""), "/issues?"));
        assert_false(strcmp(bt_json_str(v, "method", ""), "GET") == 0);
    }
    json_decref(rq);
}

static void test_transient_write_retried(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "flaky", "\"ai-ready\"");
    char body[256];
    snprintf(body, sizeof body,
             "{\"count\":1,\"status\":502,\"path_prefix\":\"/repos/acme/app/issues/%d/comments\"}",
             n);
    ctlv(f, "/_control/fail", body);
    clear_requests(f);
    char id[16];
    snprintf(id, sizeof id, "%d", n);
    bt_tracker_outcome ok = {.external_id = id, .success = 1, .summary = "done", .attempts = 1};
    op_result r;
    assert_int_equal(do_finished(f, &ok, &r), 0);
    json_t *i = issue_state(f, n);
    assert_int_equal(json_array_size(json_object_get(i, "comments")), 1);
    json_decref(i);
    json_t *rq = requests(f, "POST", "/repos/acme/app/issues");
    json_t *a = json_array_get(rq, 0), *b = json_array_get(rq, 1);
    assert_int_equal(bt_json_int(a, "status", 0), 502);
    assert_int_equal(bt_json_int(b, "status", 0), 201);
    assert_true(json_number_value(json_object_get(b, "time")) -
                    json_number_value(json_object_get(a, "time")) >=
                0.95);
    json_decref(rq);
}

static void test_stop_cancels(void **state)
{
    fx *f = *state;
    int n = new_issue(f, "never", "\"ai-ready\"");
    ctlv(f, "/_control/ratelimit", "{\"remaining\":0,\"reset_in\":60}");
    char id[16];
    snprintf(id, sizeof id, "%d", n);
    op_result a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    bt_tracker *t = bt_github_tracker(f->g);
    t->ops->started(t, id, NULL, done_cb, &a);
    t->ops->started(t, id, NULL, done_cb, &b); /* queued behind the first */
    int64_t end = bt_time_mono_ms() + 5000;
    for (;;) { /* until the first write met the limit and waits for the reset */
        json_t *st = bt_github_status(f->g);
        int paused = !json_is_null(json_object_get(st, "paused_until"));
        json_decref(st);
        if (paused)
            break;
        assert_true(bt_time_mono_ms() < end);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    int64_t t0 = bt_time_mono_ms();
    bt_github_stop(f->g, stopped_cb, f);
    assert_int_equal(f->stopped, 0); /* done comes from a loop callback */
    run_until(f, &f->stopped, 5000);
    assert_true(bt_time_mono_ms() - t0 < 2000); /* not after the reset */
    assert_int_equal(a.done, 1);
    assert_int_equal(a.rc, BT_ECANCELED);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.rc, BT_ECANCELED);
    json_t *rq = requests(f, NULL, NULL);
    assert_int_equal(json_array_size(rq), 1); /* the 403 only */
    json_decref(rq);
}

/* Run git ls-remote on url with env ("K=V" list) added; its exit status. */
static int git_ls_remote(const char *url, const bt_strvec *env)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        setenv("GIT_TERMINAL_PROMPT", "0", 1);
        setenv("GIT_ASKPASS", "/bin/false", 1);
        for (size_t i = 0; i < env->len; i++)
            putenv(env->items[i]);
        execlp("git", "git", "ls-remote", url, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_git_env_against_fake(void **state)
{
    fx *f = *state;
    bt_github_free(f->g);
    f->cfg.clone_url = f->clone;
    fx_make(f);
    bt_tracker *t = bt_github_tracker(f->g);
    char *url = t->ops->repo_url(t, NULL);
    assert_string_equal(url, f->clone);
    bt_strvec env = BT_STRVEC_INIT, none = BT_STRVEC_INIT;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(t->ops->git_env(t, url, &env, &err), 0);
    assert_int_equal(git_ls_remote(url, &env), 0);
    assert_true(git_ls_remote(url, &none) != 0); /* the fake wants the token */
    json_t *rq = ctl(f, "GET", "/_control/requests", NULL);
    size_t i;
    json_t *v;
    int authed = 0;
    json_array_foreach(rq, i, v)
    {
        if (strcmp(bt_json_str(v, "kind", ""), "git") == 0 && bt_json_bool(v, "authenticated", 0))
            authed++;
    }
    assert_true(authed > 0);
    json_decref(rq);
    bt_strvec_clear(&env);
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_new_validates),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_parse_hook),
        cmocka_unit_test(test_repo_url),
        cmocka_unit_test(test_git_env_scope),
        cmocka_unit_test_setup_teardown(test_poll_pages_and_etags, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_poll_any_watched_label, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_started, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_pr, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_finished, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refresh, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_primary_rate_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_secondary_rate_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_transient_write_retried, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stop_cancels, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_git_env_against_fake, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
