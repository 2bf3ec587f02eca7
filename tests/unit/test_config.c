/*
 * test_config.c - configuration loading: defaults, the seeds' environment fallbacks,
 * $VAR expansion, every kind of validation problem (each with its file:line:column),
 * collecting all problems at once, secret masking and enumeration, and project
 * resolution with its "set X or Y" errors.
 */
#include "testutil.h"

#include "base/strbuf.h"
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bt_config *load_ok(const char *yaml, char **envp)
{
    bt_config *cfg = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_config_load_string("baton.yaml", yaml, strlen(yaml), envp, &cfg, &probs, &err);
    if (rc != 0) {
        for (size_t i = 0; i < probs.len; i++)
            print_message("problem: %s:%d:%d: %s\n", probs.items[i].file, probs.items[i].line,
                          probs.items[i].column, probs.items[i].message);
        fail_msg("load failed: %s", err.msg);
    }
    bt_config_problems_free(&probs);
    assert_non_null(cfg);
    return cfg;
}

/* Load expecting failure; returns the problems (caller frees). */
static bt_config_problems load_bad(const char *yaml, char **envp)
{
    bt_config *cfg = NULL;
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_config_load_string("baton.yaml", yaml, strlen(yaml), envp, &cfg, &probs, &err);
    assert_true(rc < 0);
    assert_null(cfg);
    assert_true(probs.len > 0);
    return probs;
}

/* Is there a problem at line:col whose message contains want? */
static const bt_config_problem *find(const bt_config_problems *p, int line, int col,
                                     const char *want)
{
    for (size_t i = 0; i < p->len; i++)
        if (p->items[i].line == line && p->items[i].column == col &&
            strstr(p->items[i].message, want))
            return &p->items[i];
    for (size_t i = 0; i < p->len; i++)
        print_message("have: %s:%d:%d: %s\n", p->items[i].file, p->items[i].line,
                      p->items[i].column, p->items[i].message);
    fail_msg("no problem at %d:%d containing '%s'", line, col, want);
    return NULL;
}

static void test_defaults(void **state)
{
    (void)state;
    bt_config *cfg = load_ok("", NULL);
    assert_string_equal(cfg->server.host, "127.0.0.1");
    assert_int_equal(cfg->server.port, 8080);
    assert_int_equal(cfg->server.body_limit, 1 << 20);
    assert_int_equal(cfg->server.request_timeout_ms, 30000);
    assert_true(cfg->server.metrics_public);
    assert_string_equal(cfg->store.url, "sqlite:./var/baton.db");
    assert_int_equal(cfg->store.kind, BT_STORE_SQLITE);
    assert_string_equal(cfg->store.sqlite_path, "./var/baton.db");
    assert_int_equal(cfg->queue.max_attempts, 2);
    assert_string_equal(cfg->workspace.branch_template, "ai-feature/issue-{{number}}");
    assert_int_equal(cfg->workspace.strategy, BT_WS_CLONE);
    assert_int_equal(cfg->trackers.github.poll_interval_ms, 60000);
    assert_int_equal(cfg->trackers.github.labels.len, 1);
    assert_string_equal(cfg->trackers.github.labels.items[0], "ai-ready");
    assert_null(cfg->trackers.github.token);
    assert_int_equal(cfg->log.level, BT_LOGLEVEL_INFO);
    assert_int_equal(cfg->notify.smtp.port, 587);
    /* No agents section: the built-in claude and codex CLI agents. */
    const bt_config_agent *a = bt_config_agent_find(cfg, "claude");
    assert_non_null(a);
    assert_int_equal(a->type, BT_AGENT_CLI);
    assert_string_equal(a->preset, "claude");
    assert_int_equal(a->timeout_ms, 30 * 60000);
    assert_non_null(bt_config_agent_find(cfg, "codex"));
    assert_null(bt_config_agent_find(cfg, "nope"));
    assert_string_equal(cfg->worker.workspace_dir, "./var/workspaces");
    bt_config_free(cfg);
}

static void test_file_values(void **state)
{
    (void)state;
    const char *y = "server:\n"
                    "  host: 0.0.0.0\n"
                    "  port: 9000\n"
                    "  body_limit: 512KB\n"
                    "  tokens:\n"
                    "    - {name: ci, token: abc, scopes: [read, write]}\n"
                    "    - plain-token\n"
                    "store: {url: 'postgres://baton:pw@db:5432/baton'}\n"
                    "agents:\n"
                    "  claude: {preset: claude, fallback: codex, timeout: 90s, env: {FOO: bar}}\n"
                    "  codex: {type: cli, command: codex, args: [exec, --json]}\n"
                    "  local:\n"
                    "    type: openai\n"
                    "    base_url: http://127.0.0.1:8081/v1\n"
                    "    model: qwen\n"
                    "    price: {input: 0.5, output: 1.5}\n"
                    "workspace: {strategy: worktree}\n"
                    "concurrency: {global: 8, per_agent: {claude: 2}}\n"
                    "log: {level: WARNING}\n";
    bt_config *cfg = load_ok(y, NULL);
    assert_string_equal(cfg->server.host, "0.0.0.0");
    assert_int_equal(cfg->server.port, 9000);
    assert_int_equal(cfg->server.body_limit, 512 * 1024);
    assert_int_equal(cfg->server.tokens.len, 2);
    assert_int_equal(cfg->server.tokens.items[0].scope, BT_SCOPE_READ | BT_SCOPE_WRITE);
    assert_int_equal(cfg->server.tokens.items[1].scope, BT_SCOPE_ALL);
    assert_string_equal(cfg->server.tokens.items[1].token, "plain-token");
    assert_int_equal(cfg->store.kind, BT_STORE_POSTGRES);
    const bt_config_agent *c = bt_config_agent_find(cfg, "claude");
    assert_int_equal(c->type, BT_AGENT_CLI);
    assert_int_equal(c->timeout_ms, 90000);
    assert_int_equal(c->fallback.len, 1);
    assert_string_equal(c->fallback.items[0], "codex");
    assert_string_equal(c->env.items[0], "FOO=bar");
    const bt_config_agent *x = bt_config_agent_find(cfg, "codex");
    assert_int_equal(x->args.len, 2);
    assert_string_equal(x->args.items[1], "--json");
    const bt_config_agent *l = bt_config_agent_find(cfg, "local");
    assert_int_equal(l->type, BT_AGENT_OPENAI);
    assert_true(l->price.output == 1.5);
    assert_int_equal(cfg->workspace.strategy, BT_WS_WORKTREE);
    assert_int_equal(cfg->concurrency.global, 8);
    assert_string_equal(cfg->concurrency.per_agent.items[0].name, "claude");
    assert_int_equal(cfg->concurrency.per_agent.items[0].value, 2);
    assert_int_equal(cfg->log.level, BT_LOGLEVEL_WARN);
    bt_config_free(cfg);
}

/* DESIGN.md §6 writes the store as a bare URL; that form means {url: ...}. */
static void test_store_shorthand(void **state)
{
    (void)state;
    bt_config *cfg = load_ok("store: postgres://baton:pw@db:5432/baton\n", NULL);
    assert_string_equal(cfg->store.url, "postgres://baton:pw@db:5432/baton");
    assert_int_equal(cfg->store.kind, BT_STORE_POSTGRES);
    bt_config_free(cfg);
    cfg = load_ok("store: sqlite:/tmp/x.db\n", NULL);
    assert_int_equal(cfg->store.kind, BT_STORE_SQLITE);
    bt_config_free(cfg);
}

static void test_env_fallbacks(void **state)
{
    (void)state;
    char *env[] = {"ORCHESTRATOR_HOST=0.0.0.0",
                   "ORCHESTRATOR_PORT=8000",
                   "GITHUB_TOKEN=ghp_abc",
                   "GITHUB_REPO=acme/api",
                   "GITHUB_ISSUE_LABELS=ai-ready, urgent",
                   "GITHUB_POLL_INTERVAL=30",
                   "WORKER_IPS=10.0.0.11,10.0.0.12",
                   "WORKER_ID=w1",
                   "ORCHESTRATOR_URL=http://10.0.0.10:8000",
                   "WORKSPACE_DIR=/opt/ws",
                   "LOG_LEVEL=DEBUG",
                   "DATABASE_URL=postgres://u:secretpw@db/baton",
                   "SMTP_USER=me@example.com",
                   "TARGET_EMAIL=a@example.com,b@example.com",
                   "JIRA_URL=https://x.atlassian.net",
                   "JIRA_USERNAME=me",
                   "JIRA_API_TOKEN=jt",
                   "WEBHOOK_ENABLED=true",
                   "WEBHOOK_BASE_URL=https://hook.example.com",
                   "MCP_ATLASSIAN_COMMAND=npx",
                   "MCP_ATLASSIAN_ARGS=-y,@sooperset/mcp-atlassian",
                   "LLM_MODEL=deepseek",
                   "CLAUDE_API_KEY=sk-ant-1",
                   "EMPTY_IS_MISSING=",
                   "SMTP_HOST=",
                   NULL};
    /* The file wins over the environment. */
    bt_config *cfg = load_ok("server: {port: 7000}\n"
                             "agents:\n  api: {type: anthropic, model: claude-sonnet}\n",
                             env);
    assert_string_equal(cfg->server.host, "0.0.0.0");
    assert_int_equal(cfg->server.port, 7000);
    assert_string_equal(cfg->trackers.github.token, "ghp_abc");
    assert_string_equal(cfg->trackers.github.repo, "acme/api");
    assert_int_equal(cfg->trackers.github.labels.len, 2);
    assert_string_equal(cfg->trackers.github.labels.items[1], "urgent");
    assert_int_equal(cfg->trackers.github.poll_interval_ms, 30000);
    assert_int_equal(cfg->workers.ips.len, 2);
    assert_string_equal(cfg->worker.id, "w1");
    assert_string_equal(cfg->worker.server_url, "http://10.0.0.10:8000");
    assert_string_equal(cfg->worker.workspace_dir, "/opt/ws");
    assert_int_equal(cfg->log.level, BT_LOGLEVEL_DEBUG);
    assert_int_equal(cfg->store.kind, BT_STORE_POSTGRES);
    assert_string_equal(cfg->notify.smtp.from, "me@example.com");
    assert_int_equal(cfg->notify.smtp.to.len, 2);
    assert_null(cfg->notify.smtp.host); /* empty counts as unset */
    assert_true(cfg->trackers.jira.webhook_enabled);
    assert_int_equal(cfg->mcp_servers.len, 1);
    assert_string_equal(cfg->mcp_servers.items[0].name, "atlassian");
    assert_string_equal(cfg->mcp_servers.items[0].args.items[1], "@sooperset/mcp-atlassian");
    assert_string_equal(cfg->llm.model, "deepseek");
    /* CLAUDE_API_KEY is the anthropic fallback, and an anthropic agent inherits it. */
    assert_string_equal(cfg->api_keys.anthropic, "sk-ant-1");
    assert_string_equal(bt_config_agent_find(cfg, "api")->api_key, "sk-ant-1");
    assert_string_equal(bt_config_agent_find(cfg, "api")->base_url, "https://api.anthropic.com");
    bt_config_free(cfg);
}

static void test_var_expansion(void **state)
{
    (void)state;
    char *env[] = {"TOK=t0k", "HOST=db.internal", "PORT=6000", NULL};
    bt_config *cfg = load_ok("server:\n  port: $PORT\n  jwt_secret: ${TOK}\n"
                             "store: {url: 'postgres://u:p@${HOST}:5432/x'}\n"
                             "workflows_dir: 'cost$$dir'\n"
                             "personas_dir: a$\n",
                             env);
    assert_int_equal(cfg->server.port, 6000);
    assert_string_equal(cfg->server.jwt_secret, "t0k");
    assert_string_equal(cfg->store.url, "postgres://u:p@db.internal:5432/x");
    assert_string_equal(cfg->workflows_dir, "cost$dir");
    assert_string_equal(cfg->personas_dir, "a$");
    bt_config_free(cfg);
}

static void test_each_error_kind(void **state)
{
    (void)state;
    char *env[] = {"EMPTY=", "GITHUB_POLL_INTERVAL=soon", NULL};
    const char *y = "agnets: {}\n" /* 1 unknown key */
                    "server:\n"
                    "  port: 70000\n"                 /* 3 range */
                    "  request_timeout: 5 minutes\n"  /* 4 duration */
                    "  metrics_public: maybe\n"       /* 5 bool */
                    "  jwt_secret: ${UNSET_SECRET}\n" /* 6 missing var */
                    "  host: $EMPTY\n"                /* 7 empty var */
                    "store: {url: 'mysql://x'}\n"     /* 8 scheme */
                    "agents:\n"
                    "  claude: {preset: claude, fallback: [codx]}\n"      /* 10 fallback */
                    "  codex: {preset: codex, type: robot}\n"             /* 11 enum */
                    "  weird: {role: x}\n"                                /* 12 no type */
                    "  self: {command: x, fallback: self}\n"              /* 13 self fallback */
                    "queue: {max_attempts: two}\n"                        /* 14 int */
                    "workspace: [1]\n"                                    /* 15 wrong type */
                    "trackers: {github: {api_url: ftp://x}}\n"            /* 16 url */
                    "mcp_servers: {m: {command: x, tool_filter: '(['}}\n" /* 17 regex */
                    "concurrency: {per_agent: {claud: 1}}\n";             /* 18 per_agent */
    bt_config_problems p = load_bad(y, env);
    const bt_config_problem *x = find(&p, 1, 1, "unknown key 'agnets'; did you mean 'agents'?");
    assert_string_equal(x->file, "baton.yaml");
    assert_non_null(strstr(x->hint, "agents"));
    find(&p, 3, 9, "out of range");
    find(&p, 4, 20, "'5 minutes' is not a valid duration");
    find(&p, 5, 19, "not a boolean");
    x = find(&p, 6, 15, "environment variable UNSET_SECRET is not set");
    assert_non_null(strstr(x->message, "server.jwt_secret"));
    assert_non_null(strstr(x->hint, "export UNSET_SECRET"));
    find(&p, 7, 9, "environment variable EMPTY is not set");
    find(&p, 8, 14, "unsupported store URL scheme 'mysql'");
    find(&p, 10, 39, "unknown agent 'codx'; did you mean 'codex'?");
    find(&p, 11, 32, "unknown type 'robot'");
    find(&p, 12, 3, "agent 'weird' has no type");
    find(&p, 13, 32, "names itself");
    find(&p, 14, 23, "'two' is not an integer");
    find(&p, 15, 12, "expected a mapping, got a list");
    find(&p, 16, 30, "not an http:// or https:// URL");
    find(&p, 17, 44, "not a valid regular expression");
    find(&p, 18, 27, "unknown agent 'claud'");
    /* A bad environment variable is blamed on the variable. */
    int env_found = 0;
    for (size_t i = 0; i < p.len; i++)
        if (strcmp(p.items[i].file, "environment") == 0 &&
            strstr(p.items[i].message, "$GITHUB_POLL_INTERVAL") &&
            strstr(p.items[i].message, "trackers.github.poll_interval"))
            env_found = 1;
    assert_true(env_found);
    /* Sorted by position. */
    for (size_t i = 1; i < p.len; i++)
        if (p.items[i].line && p.items[i - 1].line)
            assert_true(p.items[i - 1].line <= p.items[i].line);
    bt_config_problems_free(&p);
}

static void test_all_problems_collected(void **state)
{
    (void)state;
    const char *y = "server: {prot: 1}\nqueue: {lease: forever}\nlog: {level: loud}\n";
    bt_config_problems p = load_bad(y, NULL);
    assert_int_equal(p.len, 3);
    find(&p, 1, 10, "did you mean 'port'");
    find(&p, 2, 16, "not a valid duration");
    find(&p, 3, 14, "unknown level 'loud'");
    bt_config_problems_free(&p);
}

static void test_yaml_error_is_a_problem(void **state)
{
    (void)state;
    bt_config *cfg = NULL;
    bt_config_problems p = {0};
    bt_error err = BT_ERROR_INIT;
    const char *y = "server:\n  port: 1\n  port: 2\n";
    assert_int_equal(bt_config_load_string("f.yaml", y, strlen(y), NULL, &cfg, &p, &err),
                     BT_EPARSE);
    assert_int_equal(p.len, 1);
    assert_int_equal(p.items[0].line, 3);
    assert_int_equal(p.items[0].column, 3);
    assert_non_null(strstr(p.items[0].message, "duplicate key 'port'"));
    bt_config_problems_free(&p);

    assert_int_equal(bt_config_load("/nonexistent/baton.yaml", NULL, &cfg, &p, &err), BT_ENOENT);
    assert_int_equal(p.len, 1);
    bt_config_problems_free(&p);
}

static int contains_value(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

typedef struct seen {
    bt_strbuf all;
} seen;

static void collect(const char *v, void *ud)
{
    seen *s = ud;
    bt_strbuf_addf(&s->all, "[%s]", v);
}

static void test_secrets_masked_and_enumerated(void **state)
{
    (void)state;
    char *env[] = {"GITHUB_TOKEN=ghp_secretvalue123", "DATABASE_URL=postgres://u:dbpass99@h/db",
                   "SMTP_PASSWORD=smtp-pw-1", NULL};
    bt_config *cfg = load_ok("server:\n  jwt_secret: jwt-s3cret\n  tokens: [tok-admin-1]\n"
                             "agents:\n  c: {command: c, env: {API_KEY: envkey-9, MODE: fast}}\n"
                             "notify: {slack: {webhook_url: 'https://hooks.slack.com/T/x'}}\n",
                             env);
    json_t *masked = bt_config_to_json(cfg, 1);
    char *s = json_dumps(masked, 0);
    const char *secrets[] = {"ghp_secretvalue123", "dbpass99", "smtp-pw-1",      "jwt-s3cret",
                             "tok-admin-1",        "envkey-9", "hooks.slack.com"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (contains_value(s, secrets[i]))
            fail_msg("secret %s leaked into %s", secrets[i], s);
    assert_true(contains_value(s, "postgres://u:***@h/db"));
    assert_true(contains_value(s, "\"MODE\": \"fast\"") || contains_value(s, "\"MODE\":\"fast\""));
    free(s);
    json_decref(masked);

    json_t *plain = bt_config_to_json(cfg, 0);
    s = json_dumps(plain, 0);
    assert_true(contains_value(s, "ghp_secretvalue123"));
    free(s);
    json_decref(plain);

    seen sn = {BT_STRBUF_INIT};
    bt_config_each_secret(cfg, collect, &sn);
    const char *all = bt_strbuf_cstr(&sn.all);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0] - 1; i++)
        if (!contains_value(all, secrets[i]))
            fail_msg("secret %s not enumerated (got %s)", secrets[i], all);
    assert_true(contains_value(all, "[https://hooks.slack.com/T/x]"));
    assert_false(contains_value(all, "fast"));
    bt_strbuf_release(&sn.all);
    bt_config_free(cfg);
}

static void test_projects(void **state)
{
    (void)state;
    char *env[] = {"PROJECT_REPO_BACKEND=https://github.com/acme/backend",
                   "TEAM_CONTRIBUTION_RULES_URL_BACKEND=https://wiki/team",
                   "ARCHITECTURE_RULES_URL_BACKEND=https://wiki/arch",
                   "PRD_URL_BACKEND=https://wiki/prd",
                   "ARD_URL_BACKEND=https://wiki/ard",
                   "PROJECT_REPO_WEB_FRONT=https://github.com/acme/web",
                   "PRD_URL_WEB_FRONT=https://wiki/prd-web",
                   "ARD_URL_MOBILE=https://wiki/ard-mobile",
                   NULL};
    bt_config *cfg =
        load_ok("projects:\n  mobile:\n    repo: acme/mobile\n    workflow: quick\n", env);
    assert_int_equal(cfg->projects.len, 3);
    const bt_config_project *p = NULL;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_config_project_resolve(cfg, "backend", 1, &p, &err), 0);
    assert_string_equal(p->repo, "https://github.com/acme/backend");
    assert_string_equal(p->ard_url, "https://wiki/ard");

    /* web-front matches WEB_FRONT; without the docs requirement the repo is enough. */
    assert_int_equal(bt_config_project_resolve(cfg, "web-front", 0, &p, &err), 0);
    assert_int_equal(bt_config_project_resolve(cfg, "web-front", 1, &p, &err), BT_EINVAL);
    assert_null(p);
    assert_non_null(strstr(err.msg, "project WEB_FRONT has no team contribution rules URL: set "
                                    "projects.WEB_FRONT.team_contribution_rules_url in "
                                    "baton.yaml or TEAM_CONTRIBUTION_RULES_URL_WEB_FRONT"));
    assert_non_null(strstr(err.msg, "ARCHITECTURE_RULES_URL_WEB_FRONT"));
    assert_null(strstr(err.msg, "PRD_URL_WEB_FRONT"));

    /* A file project picks up its per-project variables too. */
    assert_int_equal(bt_config_project_resolve(cfg, "MOBILE", 0, &p, &err), 0);
    assert_string_equal(p->ard_url, "https://wiki/ard-mobile");
    assert_string_equal(p->workflow, "quick");

    assert_int_equal(bt_config_project_resolve(cfg, "billing", 0, &p, &err), BT_ENOENT);
    assert_non_null(strstr(err.msg, "PROJECT_REPO_BILLING"));
    bt_config_free(cfg);

    /* A project with no repository at all names both ways to set it. */
    cfg = load_ok("projects: {app: {workflow: quick}}\n", NULL);
    assert_int_equal(bt_config_project_resolve(cfg, "app", 0, &p, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "project APP has no repository: set projects.app.repo in "
                                    "baton.yaml or PROJECT_REPO_APP"));
    bt_config_free(cfg);

    char buf[32];
    assert_string_equal(bt_config_project_env_id("web-front", buf, sizeof buf), "WEB_FRONT");
}

static void test_find_path(void **state)
{
    (void)state;
    assert_string_equal(bt_config_find_path("x.yaml", NULL), "x.yaml");
    char *env[] = {"BATON_CONFIG=/etc/baton.yaml", NULL};
    assert_string_equal(bt_config_find_path(NULL, env), "/etc/baton.yaml");
    char *dir = bt_test_tmpdir("cfgpath");
    char *old = getcwd(NULL, 0);
    assert_int_equal(chdir(dir), 0);
    assert_null(bt_config_find_path(NULL, NULL));
    free(bt_test_write(dir, "baton.yaml", "server: {port: 1}\n"));
    assert_string_equal(bt_config_find_path(NULL, NULL), "baton.yaml");
    assert_int_equal(chdir(old), 0);
    free(old);
    bt_test_rmdir(dir);
}

static void test_example_config_is_valid(void **state)
{
    (void)state;
    const char *src = getenv("BATON_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/examples/baton.yaml", src ? src : ".");
    bt_config *cfg = NULL;
    bt_config_problems p = {0};
    bt_error err = BT_ERROR_INIT;
    int rc = bt_config_load(path, NULL, &cfg, &p, &err);
    if (rc != 0)
        fail_msg("%s: %s", path, err.msg);
    assert_true(cfg->agents.len >= 3);
    bt_config_problems_free(&p);
    bt_config_free(cfg);
}

/* Every key in the schema is documented in docs/configuration.md, with its secrecy. */
static void test_docs_cover_every_key(void **state)
{
    (void)state;
    const char *src = getenv("BATON_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/configuration.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    bt_strbuf doc = BT_STRBUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        bt_strbuf_add(&doc, buf, n);
    fclose(f);
    json_t *schema = bt_config_schema();
    assert_true(json_array_size(schema) > 100);
    size_t i;
    json_t *row;
    int saw_secret = 0;
    json_array_foreach(schema, i, row)
    {
        const char *key = json_string_value(json_object_get(row, "key"));
        char cell[300];
        snprintf(cell, sizeof cell, "| `%s` |", key);
        const char *at = strstr(bt_strbuf_cstr(&doc), cell);
        if (!at)
            fail_msg("docs/configuration.md does not document '%s'", key);
        const char *eol = strchr(at, '\n');
        int doc_secret = eol && memmem(at, (size_t)(eol - at), "**yes**", 7) != NULL;
        int secret = json_is_true(json_object_get(row, "secret"));
        if (doc_secret != secret)
            fail_msg("docs/configuration.md marks '%s' secret=%d, the code says %d", key,
                     doc_secret, secret);
        if (strcmp(key, "trackers.github.token") == 0) {
            assert_true(secret);
            saw_secret = 1;
        }
    }
    assert_true(saw_secret);
    json_decref(schema);
    bt_strbuf_release(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_values),
        cmocka_unit_test(test_store_shorthand),
        cmocka_unit_test(test_env_fallbacks),
        cmocka_unit_test(test_var_expansion),
        cmocka_unit_test(test_each_error_kind),
        cmocka_unit_test(test_all_problems_collected),
        cmocka_unit_test(test_yaml_error_is_a_problem),
        cmocka_unit_test(test_secrets_masked_and_enumerated),
        cmocka_unit_test(test_projects),
        cmocka_unit_test(test_find_path),
        cmocka_unit_test(test_example_config_is_valid),
        cmocka_unit_test(test_docs_cover_every_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
