/*
 * config.c - baton.yaml -> bt_config, driven by one schema table.
 *
 * Every key baton understands is one row in the tables below: its name, kind (string,
 * URL, integer, duration, size, enum, list, nested section, named map...), where it
 * lives in the typed struct, whether it is secret, its environment fallbacks and its
 * default (written as text and parsed by the same code as a file value, so defaults
 * cannot drift from what the parser accepts). Parsing, unknown-key detection with
 * "did you mean", secret masking, secret enumeration, JSON display and freeing all walk
 * the same tables, so adding a key is adding a row.
 *
 * Validation never stops at the first problem: each one is appended with the position
 * of the offending key or value (from the YAML loader's pointer table) and a fix hint,
 * and loading fails only at the end. Values that came from the environment are
 * remembered by pointer so later cross-checks blame the variable, not the file.
 */
#include "config/config.h"

#include "base/map.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/yaml.h"
#include "obs/log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

_Static_assert((int)BT_LOGLEVEL_DEBUG == (int)BT_LOG_DEBUG &&
                   (int)BT_LOGLEVEL_ERROR == (int)BT_LOG_ERROR &&
                   (int)BT_LOGLEVEL_WARN == (int)BT_LOG_WARN,
               "config log levels must match obs/log.h");

/* ---- the schema ---- */

enum kind {
    K_STR,    /* char * */
    K_URL,    /* char *, http:// or https:// */
    K_INT,    /* int64_t within [min, max] */
    K_BOOL,   /* int */
    K_DUR,    /* int64_t milliseconds; a bare number is seconds */
    K_SIZE,   /* int64_t bytes; 1048576, "1MiB", "512KB" */
    K_NUM,    /* double >= 0 */
    K_ENUM,   /* int index into names; -1 when unset without a default */
    K_CHOICE, /* char * restricted to names */
    K_LIST,   /* bt_strvec; a scalar is one item; from the environment: comma-separated */
    K_ENVMAP, /* bt_strvec of "KEY=VALUE" */
    K_OBJ,    /* nested struct described by sub */
    K_MAP,    /* name -> struct (sub), stored as a vector whose items start with char *name */
    K_SEQ,    /* list of struct (sub) */
    K_LIMITS, /* name -> integer >= 0 (bt_config_limits) */
    K_SCOPES, /* list of names -> bit set (unsigned) */
};

enum {
    F_SECRET = 1u << 0,     /* the whole value is a credential */
    F_SECRET_URL = 1u << 1, /* the password inside a URL is a credential */
    F_PER_ENTRY = 1u << 2,  /* env names are prefixes; the map entry's id is appended */
};

typedef struct schema schema;

typedef struct field {
    const char *name;
    int kind;
    size_t off;
    unsigned flags;
    const char *dflt;         /* textual default, parsed like an environment value */
    const char *env[3];       /* environment fallbacks, first set wins */
    const schema *sub;        /* K_OBJ, K_MAP, K_SEQ */
    const char *const *names; /* K_ENUM, K_CHOICE, K_SCOPES; "a|alias" rows allowed */
    int64_t min, max;         /* K_INT */
} field;

struct schema {
    const field *fields;
    size_t nfields;
    size_t size;           /* element size for K_MAP / K_SEQ */
    const char *shorthand; /* K_SEQ item or K_OBJ value: a scalar means {shorthand: it} */
};

#define FLD(n, k, st, m, ...)                                                                      \
    {                                                                                              \
        .name = n, .kind = k, .off = offsetof(st, m), __VA_ARGS__                                  \
    }
#define NF(a) (sizeof(a) / sizeof((a)[0]))

static const char *const agent_types[] = {"cli",       "openai", "anthropic", "ollama",
                                          "openhands", "replay", NULL};
static const char *const presets[] = {"claude", "codex",    "gemini", "copilot",
                                      "aider",  "opencode", NULL};
static const char *const strategies[] = {"clone", "worktree", NULL};
static const char *const levels[] = {"debug", "info", "warn|warning", "error|critical|fatal", NULL};
static const char *const scopes[] = {"read", "write", "worker", "admin", NULL};
static const char *const localities[] = {"auto", "true|yes|local", "false|no|remote", NULL};
static const char *const offline_modes[] = {"auto", "on|true|yes|1", "off|false|no|0", NULL};
static const char *const lock_conflicts[] = {"wait", "fail", NULL};

static const field rate_limit_fields[] = {
    FLD("requests", K_INT, bt_config_rate_limit, requests, .dflt = "0", .min = 0, .max = 100000000),
    FLD("tokens", K_INT, bt_config_rate_limit, tokens, .dflt = "0", .min = 0, .max = 1000000000000),
    FLD("per", K_DUR, bt_config_rate_limit, per_ms, .dflt = "1m"),
};
static const schema rate_limit_schema = {rate_limit_fields, NF(rate_limit_fields), 0, NULL};

static const field api_rate_limit_fields[] = {
    FLD("requests", K_INT, bt_config_api_rate_limit, requests, .dflt = "1200", .min = 0,
        .max = 100000000),
    FLD("per", K_DUR, bt_config_api_rate_limit, per_ms, .dflt = "1m"),
    FLD("burst", K_INT, bt_config_api_rate_limit, burst, .dflt = "0", .min = 0, .max = 100000000),
};
static const schema api_rate_limit_schema = {api_rate_limit_fields, NF(api_rate_limit_fields), 0,
                                             NULL};

static const field breaker_fields[] = {
    FLD("failure_threshold", K_INT, bt_config_breaker, failure_threshold, .dflt = "0", .min = 0,
        .max = 1000000),
    FLD("recovery_timeout", K_DUR, bt_config_breaker, recovery_timeout_ms, .dflt = "0"),
};
static const schema breaker_schema = {breaker_fields, NF(breaker_fields), 0, NULL};

static const field breaker_default_fields[] = {
    FLD("failure_threshold", K_INT, bt_config_breaker, failure_threshold, .dflt = "5", .min = 1,
        .max = 1000000),
    FLD("recovery_timeout", K_DUR, bt_config_breaker, recovery_timeout_ms, .dflt = "60s"),
};
static const schema breaker_default_schema = {breaker_default_fields, NF(breaker_default_fields), 0,
                                              NULL};

static const field token_fields[] = {
    FLD("name", K_STR, bt_config_token, name),
    FLD("token", K_STR, bt_config_token, token, .flags = F_SECRET),
    FLD("scopes", K_SCOPES, bt_config_token, scope, .names = scopes, .dflt = "read"),
};
static const schema token_schema = {token_fields, NF(token_fields), sizeof(bt_config_token),
                                    "token"};

static const field server_fields[] = {
    FLD("host", K_STR, bt_config_server, host, .dflt = "127.0.0.1", .env = {"ORCHESTRATOR_HOST"}),
    FLD("port", K_INT, bt_config_server, port, .dflt = "8080", .env = {"ORCHESTRATOR_PORT"},
        .min = 0, .max = 65535),
    FLD("tokens", K_SEQ, bt_config_server, tokens, .sub = &token_schema),
    FLD("jwt_secret", K_STR, bt_config_server, jwt_secret, .flags = F_SECRET,
        .env = {"JWT_SECRET"}),
    FLD("body_limit", K_SIZE, bt_config_server, body_limit, .dflt = "1MiB"),
    FLD("request_timeout", K_DUR, bt_config_server, request_timeout_ms, .dflt = "30s"),
    FLD("metrics_public", K_BOOL, bt_config_server, metrics_public, .dflt = "true"),
    FLD("rate_limit", K_OBJ, bt_config_server, rate_limit, .sub = &api_rate_limit_schema),
};
static const schema server_schema = {server_fields, NF(server_fields), 0, NULL};

static const field store_fields[] = {
    FLD("url", K_STR, bt_config_store, url, .flags = F_SECRET_URL, .dflt = "sqlite:./var/baton.db",
        .env = {"DATABASE_URL"}),
};
/* `store: sqlite:./var/baton.db` is short for `store: {url: ...}` (DESIGN.md §6). */
static const schema store_schema = {store_fields, NF(store_fields), 0, "url"};

static const field price_fields[] = {
    FLD("input", K_NUM, bt_config_price, input),
    FLD("output", K_NUM, bt_config_price, output),
};
static const schema price_schema = {price_fields, NF(price_fields), 0, NULL};

static const field model_price_fields[] = {
    FLD("input", K_NUM, bt_config_model_price, input),
    FLD("output", K_NUM, bt_config_model_price, output),
};
static const schema model_price_schema = {model_price_fields, NF(model_price_fields),
                                          sizeof(bt_config_model_price), NULL};

static const field agent_fields[] = {
    FLD("type", K_ENUM, bt_config_agent, type, .names = agent_types),
    FLD("preset", K_CHOICE, bt_config_agent, preset, .names = presets),
    FLD("command", K_STR, bt_config_agent, command),
    FLD("args", K_LIST, bt_config_agent, args),
    FLD("base_url", K_URL, bt_config_agent, base_url),
    FLD("model", K_STR, bt_config_agent, model),
    FLD("api_key", K_STR, bt_config_agent, api_key, .flags = F_SECRET),
    FLD("role", K_STR, bt_config_agent, role),
    FLD("fallback", K_LIST, bt_config_agent, fallback),
    FLD("timeout", K_DUR, bt_config_agent, timeout_ms, .dflt = "30m"),
    FLD("stall_timeout", K_DUR, bt_config_agent, stall_timeout_ms, .dflt = "5m"),
    FLD("env", K_ENVMAP, bt_config_agent, env),
    FLD("price", K_OBJ, bt_config_agent, price, .sub = &price_schema),
    FLD("max_output", K_INT, bt_config_agent, max_output, .dflt = "0", .min = 0, .max = 100000000),
    FLD("file", K_STR, bt_config_agent, file),
    FLD("speed", K_NUM, bt_config_agent, speed, .dflt = "1"),
    FLD("provider", K_STR, bt_config_agent, provider),
    FLD("local", K_ENUM, bt_config_agent, local, .names = localities, .dflt = "auto"),
    FLD("rate_limit", K_OBJ, bt_config_agent, rate_limit, .sub = &rate_limit_schema),
    FLD("circuit_breaker", K_OBJ, bt_config_agent, circuit_breaker, .sub = &breaker_schema),
};
static const schema agent_schema = {agent_fields, NF(agent_fields), sizeof(bt_config_agent), NULL};

static const field provider_fields[] = {
    FLD("requests", K_INT, bt_config_provider, requests, .dflt = "0", .min = 0, .max = 100000000),
    FLD("tokens", K_INT, bt_config_provider, tokens, .dflt = "0", .min = 0, .max = 1000000000000),
    FLD("per", K_DUR, bt_config_provider, per_ms, .dflt = "1m"),
    FLD("probe_url", K_URL, bt_config_provider, probe_url),
};
static const schema provider_schema = {provider_fields, NF(provider_fields),
                                       sizeof(bt_config_provider), NULL};

static const field resilience_fields[] = {
    FLD("circuit_breaker", K_OBJ, bt_config_resilience, circuit_breaker,
        .sub = &breaker_default_schema),
    FLD("stats_window", K_INT, bt_config_resilience, stats_window, .dflt = "100", .min = 1,
        .max = 100000),
    FLD("stats_max_age", K_DUR, bt_config_resilience, stats_max_age_ms, .dflt = "24h"),
};
static const schema resilience_schema = {resilience_fields, NF(resilience_fields), 0, NULL};

static const field offline_fields[] = {
    FLD("mode", K_ENUM, bt_config_offline, mode, .names = offline_modes, .dflt = "auto",
        .env = {"BATON_OFFLINE"}),
    FLD("probe_interval", K_DUR, bt_config_offline, probe_interval_ms, .dflt = "60s"),
    FLD("probe_timeout", K_DUR, bt_config_offline, probe_timeout_ms, .dflt = "5s"),
};
static const schema offline_schema = {offline_fields, NF(offline_fields), 0, NULL};

static const field planner_fields[] = {
    FLD("agent", K_STR, bt_config_planner, agent),
    FLD("min_success_rate", K_NUM, bt_config_planner, min_success_rate, .dflt = "0.6"),
    FLD("min_calls", K_INT, bt_config_planner, min_calls, .dflt = "3", .min = 0, .max = 100000),
    FLD("max_steps", K_INT, bt_config_planner, max_steps, .dflt = "8", .min = 1, .max = 64),
    FLD("timeout", K_DUR, bt_config_planner, timeout_ms, .dflt = "5m"),
};
static const schema planner_schema = {planner_fields, NF(planner_fields), 0, NULL};

static const field locks_fields[] = {
    FLD("on_conflict", K_ENUM, bt_config_locks, on_conflict, .names = lock_conflicts,
        .dflt = "wait"),
    FLD("wait_timeout", K_DUR, bt_config_locks, wait_timeout_ms, .dflt = "30m"),
    FLD("ttl", K_DUR, bt_config_locks, ttl_ms, .dflt = "10m"),
};
static const schema locks_schema = {locks_fields, NF(locks_fields), 0, NULL};

static const field project_fields[] = {
    FLD("repo", K_STR, bt_config_project, repo, .flags = F_PER_ENTRY, .env = {"PROJECT_REPO_"}),
    FLD("team_contribution_rules_url", K_URL, bt_config_project, team_contribution_rules_url,
        .flags = F_PER_ENTRY, .env = {"TEAM_CONTRIBUTION_RULES_URL_"}),
    FLD("architecture_rules_url", K_URL, bt_config_project, architecture_rules_url,
        .flags = F_PER_ENTRY, .env = {"ARCHITECTURE_RULES_URL_"}),
    FLD("prd_url", K_URL, bt_config_project, prd_url, .flags = F_PER_ENTRY, .env = {"PRD_URL_"}),
    FLD("ard_url", K_URL, bt_config_project, ard_url, .flags = F_PER_ENTRY, .env = {"ARD_URL_"}),
    FLD("workflow", K_STR, bt_config_project, workflow),
    FLD("labels", K_LIST, bt_config_project, labels),
};
static const schema project_schema = {project_fields, NF(project_fields), sizeof(bt_config_project),
                                      NULL};

static const field github_fields[] = {
    FLD("token", K_STR, bt_config_github, token, .flags = F_SECRET, .env = {"GITHUB_TOKEN"}),
    FLD("repo", K_STR, bt_config_github, repo, .env = {"GITHUB_REPO"}),
    FLD("labels", K_LIST, bt_config_github, labels, .dflt = "ai-ready",
        .env = {"GITHUB_ISSUE_LABELS"}),
    FLD("poll_interval", K_DUR, bt_config_github, poll_interval_ms, .dflt = "60s",
        .env = {"GITHUB_POLL_INTERVAL"}),
    FLD("webhook_secret", K_STR, bt_config_github, webhook_secret, .flags = F_SECRET,
        .env = {"GITHUB_WEBHOOK_SECRET"}),
    FLD("api_url", K_URL, bt_config_github, api_url, .dflt = "https://api.github.com"),
    FLD("clone_url", K_STR, bt_config_github, clone_url),
    FLD("label_in_progress", K_STR, bt_config_github, label_in_progress, .dflt = "ai-in-progress"),
    FLD("label_completed", K_STR, bt_config_github, label_completed, .dflt = "ai-completed"),
    FLD("label_failed", K_STR, bt_config_github, label_failed, .dflt = "ai-failed"),
    FLD("pull_requests", K_BOOL, bt_config_github, pull_requests, .dflt = "true"),
    FLD("draft_pull_requests", K_BOOL, bt_config_github, draft_pull_requests, .dflt = "false"),
    FLD("base_branch", K_STR, bt_config_github, base_branch),
    FLD("close_issues", K_BOOL, bt_config_github, close_issues, .dflt = "false"),
    FLD("commands", K_BOOL, bt_config_github, commands, .dflt = "true"),
};
static const schema github_schema = {github_fields, NF(github_fields), 0, NULL};

static const field jira_fields[] = {
    FLD("url", K_URL, bt_config_jira, url, .env = {"JIRA_URL"}),
    FLD("username", K_STR, bt_config_jira, username, .env = {"JIRA_USERNAME"}),
    FLD("api_token", K_STR, bt_config_jira, api_token, .flags = F_SECRET,
        .env = {"JIRA_API_TOKEN"}),
    FLD("webhook_enabled", K_BOOL, bt_config_jira, webhook_enabled, .dflt = "false",
        .env = {"WEBHOOK_ENABLED"}),
    FLD("webhook_base_url", K_URL, bt_config_jira, webhook_base_url, .env = {"WEBHOOK_BASE_URL"}),
    FLD("webhook_secret", K_STR, bt_config_jira, webhook_secret, .flags = F_SECRET),
};
static const schema jira_schema = {jira_fields, NF(jira_fields), 0, NULL};

static const field azure_fields[] = {
    FLD("org_url", K_URL, bt_config_azure, org_url, .env = {"AZURE_DEVOPS_ORG_URL"}),
    FLD("pat", K_STR, bt_config_azure, pat, .flags = F_SECRET, .env = {"AZURE_DEVOPS_PAT"}),
    FLD("project", K_STR, bt_config_azure, project),
};
static const schema azure_schema = {azure_fields, NF(azure_fields), 0, NULL};

static const field trackers_fields[] = {
    FLD("github", K_OBJ, bt_config_trackers, github, .sub = &github_schema),
    FLD("jira", K_OBJ, bt_config_trackers, jira, .sub = &jira_schema),
    FLD("azure", K_OBJ, bt_config_trackers, azure, .sub = &azure_schema),
};
static const schema trackers_schema = {trackers_fields, NF(trackers_fields), 0, NULL};

static const field hooks_fields[] = {
    FLD("after_create", K_STR, bt_config_hooks, after_create),
    FLD("before_run", K_STR, bt_config_hooks, before_run),
    FLD("after_run", K_STR, bt_config_hooks, after_run),
    FLD("before_remove", K_STR, bt_config_hooks, before_remove),
};
static const schema hooks_schema = {hooks_fields, NF(hooks_fields), 0, NULL};

static const field workspace_fields[] = {
    FLD("root", K_STR, bt_config_workspace, root, .dflt = "./var/workspaces"),
    FLD("strategy", K_ENUM, bt_config_workspace, strategy, .names = strategies, .dflt = "clone"),
    FLD("branch_template", K_STR, bt_config_workspace, branch_template,
        .dflt = "ai-feature/issue-{{number}}"),
    FLD("hooks", K_OBJ, bt_config_workspace, hooks, .sub = &hooks_schema),
    FLD("hook_timeout", K_DUR, bt_config_workspace, hook_timeout_ms, .dflt = "5m"),
    FLD("retention", K_DUR, bt_config_workspace, retention_ms, .dflt = "7d"),
};
static const schema workspace_schema = {workspace_fields, NF(workspace_fields), 0, NULL};

static const field queue_fields[] = {
    FLD("max_attempts", K_INT, bt_config_queue, max_attempts, .dflt = "2", .min = 1, .max = 100),
    FLD("backoff_base", K_DUR, bt_config_queue, backoff_base_ms, .dflt = "10s"),
    FLD("backoff_max", K_DUR, bt_config_queue, backoff_max_ms, .dflt = "10m"),
    FLD("lease", K_DUR, bt_config_queue, lease_ms, .dflt = "5m"),
};
static const schema queue_schema = {queue_fields, NF(queue_fields), 0, NULL};

static const field concurrency_fields[] = {
    FLD("global", K_INT, bt_config_concurrency, global, .dflt = "4", .min = 1, .max = 10000),
    FLD("local", K_INT, bt_config_concurrency, local, .dflt = "4", .min = 0, .max = 10000,
        .env = {"BATON_LOCAL_RUNS"}),
    FLD("per_agent", K_LIMITS, bt_config_concurrency, per_agent),
    FLD("per_state", K_LIMITS, bt_config_concurrency, per_state),
    FLD("per_project", K_LIMITS, bt_config_concurrency, per_project),
};
static const schema concurrency_schema = {concurrency_fields, NF(concurrency_fields), 0, NULL};

static const field mcp_fields[] = {
    FLD("command", K_STR, bt_config_mcp_server, command),
    FLD("args", K_LIST, bt_config_mcp_server, args),
    FLD("env", K_ENVMAP, bt_config_mcp_server, env),
    FLD("url", K_URL, bt_config_mcp_server, url),
    FLD("tool_filter", K_STR, bt_config_mcp_server, tool_filter),
};
static const schema mcp_schema = {mcp_fields, NF(mcp_fields), sizeof(bt_config_mcp_server), NULL};

static const field smtp_fields[] = {
    FLD("host", K_STR, bt_config_smtp, host, .env = {"SMTP_HOST"}),
    FLD("port", K_INT, bt_config_smtp, port, .dflt = "587", .env = {"SMTP_PORT"}, .min = 1,
        .max = 65535),
    FLD("user", K_STR, bt_config_smtp, user, .env = {"SMTP_USER"}),
    FLD("password", K_STR, bt_config_smtp, password, .flags = F_SECRET, .env = {"SMTP_PASSWORD"}),
    FLD("from", K_STR, bt_config_smtp, from),
    FLD("to", K_LIST, bt_config_smtp, to, .env = {"TARGET_EMAIL"}),
};
static const schema smtp_schema = {smtp_fields, NF(smtp_fields), 0, NULL};

/* notify.slack / notify.discord are one-key sections in the file. */
typedef struct webhook_only {
    char *webhook_url;
} webhook_only;
static const field slack_fields[] = {
    FLD("webhook_url", K_URL, webhook_only, webhook_url, .flags = F_SECRET),
};
static const schema slack_schema = {slack_fields, NF(slack_fields), 0, NULL};

static const field notify_fields[] = {
    FLD("smtp", K_OBJ, bt_config_notify, smtp, .sub = &smtp_schema),
    FLD("slack", K_OBJ, bt_config_notify, slack_webhook_url, .sub = &slack_schema),
    FLD("discord", K_OBJ, bt_config_notify, discord_webhook_url, .sub = &slack_schema),
};
static const schema notify_schema = {notify_fields, NF(notify_fields), 0, NULL};

static const field budgets_fields[] = {
    FLD("per_task", K_NUM, bt_config_budgets, per_task),
    FLD("per_project", K_NUM, bt_config_budgets, per_project),
    FLD("per_day", K_NUM, bt_config_budgets, per_day),
};
static const schema budgets_schema = {budgets_fields, NF(budgets_fields), 0, NULL};

static const field log_fields[] = {
    FLD("level", K_ENUM, bt_config_log, level, .names = levels, .dflt = "info",
        .env = {"LOG_LEVEL"}),
    FLD("file", K_STR, bt_config_log, file),
};
static const schema log_schema = {log_fields, NF(log_fields), 0, NULL};

static const field worker_fields[] = {
    FLD("id", K_STR, bt_config_worker, id, .env = {"WORKER_ID"}),
    FLD("server_url", K_URL, bt_config_worker, server_url, .env = {"ORCHESTRATOR_URL"}),
    FLD("token", K_STR, bt_config_worker, token, .flags = F_SECRET),
    FLD("poll_interval", K_DUR, bt_config_worker, poll_interval_ms, .dflt = "30s",
        .env = {"WORKER_POLL_INTERVAL"}),
    FLD("workspace_dir", K_STR, bt_config_worker, workspace_dir, .env = {"WORKSPACE_DIR"}),
    FLD("command", K_STR, bt_config_worker, command, .env = {"WORKER_COMMAND"}),
};
static const schema worker_schema = {worker_fields, NF(worker_fields), 0, NULL};

static const field workers_fields[] = {
    FLD("ips", K_LIST, bt_config_workers, ips, .env = {"WORKER_IPS"}),
    FLD("ssh_key", K_STR, bt_config_workers, ssh_key, .env = {"WORKER_SSH_KEY"}),
    FLD("ssh_user", K_STR, bt_config_workers, ssh_user, .dflt = "root", .env = {"WORKER_SSH_USER"}),
    FLD("health_check_interval", K_DUR, bt_config_workers, health_check_interval_ms, .dflt = "30s",
        .env = {"WORKER_HEALTH_CHECK_INTERVAL"}),
    FLD("offline_after", K_DUR, bt_config_workers, offline_after_ms, .dflt = "2m"),
};
static const schema workers_schema = {workers_fields, NF(workers_fields), 0, NULL};

static const field llm_fields[] = {
    FLD("model", K_STR, bt_config_llm, model, .env = {"LLM_MODEL"}),
    FLD("api_key", K_STR, bt_config_llm, api_key, .flags = F_SECRET, .env = {"LLM_API_KEY"}),
    FLD("base_url", K_URL, bt_config_llm, base_url, .env = {"LLM_BASE_URL"}),
};
static const schema llm_schema = {llm_fields, NF(llm_fields), 0, NULL};

static const field confluence_fields[] = {
    FLD("url", K_URL, bt_config_confluence, url, .env = {"CONFLUENCE_URL"}),
    FLD("username", K_STR, bt_config_confluence, username, .env = {"CONFLUENCE_USERNAME"}),
    FLD("api_token", K_STR, bt_config_confluence, api_token, .flags = F_SECRET,
        .env = {"CONFLUENCE_API_TOKEN"}),
};
static const schema confluence_schema = {confluence_fields, NF(confluence_fields), 0, NULL};

static const field openhands_fields[] = {
    FLD("runtime_api_url", K_URL, bt_config_openhands, runtime_api_url,
        .env = {"OPENHANDS_RUNTIME_API_URL"}),
    FLD("runtime_api_key", K_STR, bt_config_openhands, runtime_api_key, .flags = F_SECRET,
        .env = {"OPENHANDS_RUNTIME_API_KEY"}),
    FLD("server_image", K_STR, bt_config_openhands, server_image,
        .dflt = "ghcr.io/openhands/agent-server:latest-python", .env = {"OPENHANDS_SERVER_IMAGE"}),
};
static const schema openhands_schema = {openhands_fields, NF(openhands_fields), 0, NULL};

static const field api_keys_fields[] = {
    FLD("openai", K_STR, bt_config_api_keys, openai, .flags = F_SECRET, .env = {"OPENAI_API_KEY"}),
    FLD("anthropic", K_STR, bt_config_api_keys, anthropic, .flags = F_SECRET,
        .env = {"ANTHROPIC_API_KEY", "CLAUDE_API_KEY"}),
    FLD("gemini", K_STR, bt_config_api_keys, gemini, .flags = F_SECRET, .env = {"GEMINI_API_KEY"}),
    FLD("grok", K_STR, bt_config_api_keys, grok, .flags = F_SECRET, .env = {"GROK_API_KEY"}),
};
static const schema api_keys_schema = {api_keys_fields, NF(api_keys_fields), 0, NULL};

static const field root_fields[] = {
    FLD("server", K_OBJ, bt_config, server, .sub = &server_schema),
    FLD("store", K_OBJ, bt_config, store, .sub = &store_schema),
    FLD("agents", K_MAP, bt_config, agents, .sub = &agent_schema),
    FLD("providers", K_MAP, bt_config, providers, .sub = &provider_schema),
    FLD("prices", K_MAP, bt_config, prices, .sub = &model_price_schema),
    FLD("workflows_dir", K_STR, bt_config, workflows_dir, .dflt = "workflows"),
    FLD("personas_dir", K_STR, bt_config, personas_dir, .dflt = "personas"),
    FLD("projects", K_MAP, bt_config, projects, .sub = &project_schema),
    FLD("trackers", K_OBJ, bt_config, trackers, .sub = &trackers_schema),
    FLD("workspace", K_OBJ, bt_config, workspace, .sub = &workspace_schema),
    FLD("queue", K_OBJ, bt_config, queue, .sub = &queue_schema),
    FLD("concurrency", K_OBJ, bt_config, concurrency, .sub = &concurrency_schema),
    FLD("mcp_servers", K_MAP, bt_config, mcp_servers, .sub = &mcp_schema),
    FLD("notify", K_OBJ, bt_config, notify, .sub = &notify_schema),
    FLD("budgets", K_OBJ, bt_config, budgets, .sub = &budgets_schema),
    FLD("resilience", K_OBJ, bt_config, resilience, .sub = &resilience_schema),
    FLD("offline", K_OBJ, bt_config, offline, .sub = &offline_schema),
    FLD("planner", K_OBJ, bt_config, planner, .sub = &planner_schema),
    FLD("locks", K_OBJ, bt_config, locks, .sub = &locks_schema),
    FLD("log", K_OBJ, bt_config, log, .sub = &log_schema),
    FLD("worker", K_OBJ, bt_config, worker, .sub = &worker_schema),
    FLD("workers", K_OBJ, bt_config, workers, .sub = &workers_schema),
    FLD("llm", K_OBJ, bt_config, llm, .sub = &llm_schema),
    FLD("confluence", K_OBJ, bt_config, confluence, .sub = &confluence_schema),
    FLD("openhands", K_OBJ, bt_config, openhands, .sub = &openhands_schema),
    FLD("api_keys", K_OBJ, bt_config, api_keys, .sub = &api_keys_schema),
};
static const schema root_schema = {root_fields, NF(root_fields), sizeof(bt_config), NULL};

/* A generic view of the typed vectors (bt_config_agents etc.): same layout. */
typedef struct gvec {
    void *items;
    size_t len, cap;
} gvec;

#define AT(base, off)  ((void *)((char *)(base) + (off)))
#define CAT(base, off) ((const void *)((const char *)(base) + (off)))

/* ---- parsing context and problems ---- */

typedef struct ctx {
    const char *file; /* name for problems: the path, or NULL without a file */
    bt_yaml_doc *doc; /* NULL without a file */
    char *const *envp;
    bt_config_problems *probs;
    bt_strbuf ptr;          /* JSON pointer of the value being parsed */
    bt_map *from_env;       /* pointer -> environment variable name (owned string) */
    const char *origin_env; /* set while parsing a value from this variable */
    int from_default;       /* set while parsing a built-in default */
} ctx;

static char *pointer_to_key(const char *ptr)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    for (const char *p = ptr; *p; p++) {
        if (*p == '/') {
            if (p != ptr)
                bt_strbuf_addch(&sb, '.');
        } else if (*p == '~' && p[1] == '1') {
            bt_strbuf_addch(&sb, '/');
            p++;
        } else if (*p == '~' && p[1] == '0') {
            bt_strbuf_addch(&sb, '~');
            p++;
        } else {
            bt_strbuf_addch(&sb, *p);
        }
    }
    return bt_strbuf_detach(&sb, NULL);
}

void bt_config_problem_add(bt_config_problems *probs, const char *file, int line, int col,
                           const char *key, const char *msg, const char *hint)
{
    if (!probs)
        return;
    bt_config_problem p = {bt_xstrdup(file), line, col, bt_xstrdup(key), bt_xstrdup(msg),
                           bt_xstrdup(hint)};
    bt_vec_push(probs, p);
}

/* Report a problem about the value (at_key = 0) or key (at_key = 1) at pointer ptr. A
 * value that came from the environment is blamed on its variable. */
static void problem_at(ctx *c, const char *ptr, int at_key, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void problem_at(ctx *c, const char *ptr, int at_key, const char *hint, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *key = pointer_to_key(ptr);
    const char *env = c->origin_env;
    if (!env && c->from_env)
        env = bt_map_get(c->from_env, ptr);
    if (c->from_default) {
        char full[1200];
        snprintf(full, sizeof full, "built-in default for %s: %s", key, msg);
        bt_config_problem_add(c->probs, "defaults", 0, 0, key, full, hint);
    } else if (env) {
        char full[1200];
        snprintf(full, sizeof full, "$%s (used for %s): %s", env, key, msg);
        bt_config_problem_add(c->probs, "environment", 0, 0, key, full, hint);
    } else if (c->doc) {
        bt_yaml_pos kp, vp;
        bt_yaml_doc_pos(c->doc, ptr, &kp, &vp);
        bt_yaml_pos p = at_key ? kp : vp;
        bt_config_problem_add(c->probs, c->file, p.line, p.column, key, msg, hint);
    } else {
        bt_config_problem_add(c->probs, "environment", 0, 0, key, msg, hint);
    }
    free(key);
}

#define PROBLEM(c, hint, ...) problem_at((c), bt_strbuf_cstr(&(c)->ptr), 0, (hint), __VA_ARGS__)

/* The value of NAME in envp; NULL when unset or empty (empty counts as missing). */
static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return (*e)[n + 1] ? *e + n + 1 : NULL;
    return NULL;
}

/* Expand $VAR / ${VAR} / $$ in a string from the file. Returns NULL (after reporting)
 * when a variable is unset or empty. */
static char *expand_vars(ctx *c, const char *in)
{
    if (!strchr(in, '$'))
        return bt_xstrdup(in);
    bt_strbuf out = BT_STRBUF_INIT;
    int ok = 1;
    for (const char *p = in; *p;) {
        if (p[0] != '$') {
            bt_strbuf_addch(&out, *p++);
            continue;
        }
        if (p[1] == '$') {
            bt_strbuf_addch(&out, '$');
            p += 2;
            continue;
        }
        const char *name = p + 1;
        int braced = *name == '{';
        if (braced)
            name++;
        size_t n = 0;
        if (isalpha((unsigned char)name[0]) || name[0] == '_')
            while (isalnum((unsigned char)name[n]) || name[n] == '_')
                n++;
        if (n == 0 || (braced && name[n] != '}')) {
            if (braced) {
                PROBLEM(c, "write ${NAME} with a variable name, or $$ for a literal dollar",
                        "malformed variable reference in '%s'", in);
                ok = 0;
                break;
            }
            bt_strbuf_addch(&out, *p++); /* a lone '$' stays literal */
            continue;
        }
        char var[256];
        snprintf(var, sizeof var, "%.*s", (int)(n < 255 ? n : 255), name);
        const char *val = env_get(c->envp, var);
        if (!val) {
            char *key = pointer_to_key(bt_strbuf_cstr(&c->ptr));
            char hint[600];
            snprintf(hint, sizeof hint,
                     "export %s=... before starting baton, or write %s's value "
                     "in the file",
                     var, key);
            PROBLEM(c, hint, "environment variable %s is not set (used by %s)", var, key);
            free(key);
            ok = 0;
        } else {
            bt_strbuf_addstr(&out, val);
        }
        p = name + n + (braced ? 1 : 0);
    }
    if (!ok) {
        bt_strbuf_release(&out);
        return NULL;
    }
    return bt_strbuf_detach(&out, NULL);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a mapping";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* A scalar as text: strings expanded (file values only), integers printed. NULL after a
 * problem was reported. want describes the expected kind for the type error. */
static char *scalar_text(ctx *c, const json_t *v, const char *want, const char *hint)
{
    if (json_is_string(v)) {
        if (c->origin_env || c->from_default)
            return bt_xstrdup(json_string_value(v));
        return expand_vars(c, json_string_value(v));
    }
    if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return bt_xstrdup(buf);
    }
    if (json_is_boolean(v))
        return bt_xstrdup(json_is_true(v) ? "true" : "false");
    PROBLEM(c, hint, "expected %s, got %s", want, json_kind(v));
    return NULL;
}

/* Match text against names ("a|alias" rows); returns the row index or -1. */
static int name_index(const char *const *names, const char *text)
{
    for (int i = 0; names[i]; i++) {
        const char *row = names[i];
        while (*row) {
            size_t n = strcspn(row, "|");
            if (strlen(text) == n && strncasecmp(row, text, n) == 0)
                return i;
            row += n + (row[n] == '|');
        }
    }
    return -1;
}

static size_t canon_len(const char *row)
{
    return strcspn(row, "|");
}

static void bad_choice(ctx *c, const char *text, const char *const *names, const char *what)
{
    const char *cands[16];
    char canon[16][32];
    size_t n = 0;
    bt_strbuf list = BT_STRBUF_INIT;
    for (size_t i = 0; names[i] && n < 16; i++, n++) {
        snprintf(canon[i], sizeof canon[i], "%.*s", (int)canon_len(names[i]), names[i]);
        cands[i] = canon[i];
        bt_strbuf_addf(&list, "%s%s", i ? ", " : "", canon[i]);
    }
    const char *s = bt_str_suggest(text, cands, n);
    char hint[512];
    snprintf(hint, sizeof hint, "use one of: %s", bt_strbuf_cstr(&list));
    if (s)
        PROBLEM(c, hint, "unknown %s '%s'; did you mean '%s'?", what, text, s);
    else
        PROBLEM(c, hint, "unknown %s '%s'", what, text);
    bt_strbuf_release(&list);
}

static int parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    while (*end == ' ')
        end++;
    static const struct {
        const char *u;
        unsigned long long m;
    } units[] = {{"", 1},         {"b", 1},         {"k", 1024},      {"kb", 1024},
                 {"kib", 1024},   {"m", 1u << 20},  {"mb", 1u << 20}, {"mib", 1u << 20},
                 {"g", 1u << 30}, {"gb", 1u << 30}, {"gib", 1u << 30}};
    for (size_t i = 0; i < NF(units); i++)
        if (strcasecmp(end, units[i].u) == 0) {
            if (v > (unsigned long long)INT64_MAX / units[i].m)
                return -1;
            *out = (int64_t)(v * units[i].m);
            return 0;
        }
    return -1;
}

static int is_http_url(const char *s)
{
    return (bt_str_starts_with(s, "http://") && s[7]) ||
           (bt_str_starts_with(s, "https://") && s[8]);
}

static void vec_clear_strings(bt_strvec *sv)
{
    bt_strvec_clear(sv);
}

static void parse_object(ctx *c, const schema *s, void *base, const json_t *obj,
                         const char *entry_id);

/* Parse a leaf value v (never NULL) of field f into dst. */
static void parse_leaf(ctx *c, const field *f, void *dst, const json_t *v)
{
    char *text = NULL;
    switch (f->kind) {
    case K_STR:
    case K_URL:
    case K_CHOICE: {
        if (!(text = scalar_text(c, v, "a string", "quote the value")))
            return;
        if (f->kind == K_URL && !is_http_url(text)) {
            PROBLEM(c, "write a full URL such as https://example.com",
                    "'%s' is not an http:// or https:// URL", f->flags & F_SECRET ? "***" : text);
            break;
        }
        if (f->kind == K_CHOICE && name_index(f->names, text) < 0) {
            bad_choice(c, text, f->names, f->name);
            break;
        }
        char **p = dst;
        free(*p);
        *p = text;
        return;
    }
    case K_INT: {
        if (json_is_integer(v)) {
            int64_t x = json_integer_value(v);
            if (x < f->min || x > f->max) {
                char hint[128];
                snprintf(hint, sizeof hint, "use a whole number from %" PRId64 " to %" PRId64,
                         f->min, f->max);
                PROBLEM(c, hint, "%s %" PRId64 " is out of range", f->name, x);
                return;
            }
            *(int64_t *)dst = x;
            return;
        }
        if (!(text = scalar_text(c, v, "an integer", "write a whole number such as 8080")))
            return;
        char *end;
        errno = 0;
        long long x = strtoll(text, &end, 10);
        if (errno || end == text || *end) {
            PROBLEM(c, "write a whole number such as 8080", "'%s' is not an integer", text);
            break;
        }
        json_t *iv = json_integer(x);
        parse_leaf(c, f, dst, iv);
        json_decref(iv);
        break;
    }
    case K_BOOL: {
        if (json_is_boolean(v)) {
            *(int *)dst = json_is_true(v);
            return;
        }
        if (!(text = scalar_text(c, v, "true or false", "write true or false")))
            return;
        static const char *const bools[] = {"false|no|off|0", "true|yes|on|1", NULL};
        int i = name_index(bools, text);
        if (i < 0)
            PROBLEM(c, "write true or false", "'%s' is not a boolean", text);
        else
            *(int *)dst = i;
        break;
    }
    case K_DUR: {
        if (json_is_integer(v)) {
            int64_t x = json_integer_value(v);
            if (x < 0 || x > INT64_MAX / 1000) {
                PROBLEM(c, "write a duration such as 30s, 5m or 1h",
                        "%s %" PRId64 " is out of range", f->name, x);
                return;
            }
            *(int64_t *)dst = x * 1000;
            return;
        }
        if (!(text = scalar_text(c, v, "a duration", "write a duration such as 30s, 5m or 1h")))
            return;
        bt_error e = BT_ERROR_INIT;
        int64_t ms;
        if (bt_duration_parse(text, &ms, &e) < 0)
            PROBLEM(c, "write a duration such as 500ms, 30s, 5m, 1h30m or 2d",
                    "'%s' is not a valid duration", text);
        else
            *(int64_t *)dst = ms;
        break;
    }
    case K_SIZE: {
        if (!(text = scalar_text(c, v, "a size", "write a size such as 1048576, 512KB or 1MiB")))
            return;
        int64_t n;
        if (parse_size(text, &n) < 0)
            PROBLEM(c, "write a size such as 1048576, 512KB or 1MiB", "'%s' is not a valid size",
                    text);
        else
            *(int64_t *)dst = n;
        break;
    }
    case K_NUM: {
        double d;
        if (json_is_number(v)) {
            d = json_number_value(v);
        } else {
            if (!(text = scalar_text(c, v, "a number", "write a number such as 2.5")))
                return;
            char *end;
            d = strtod(text, &end);
            if (end == text || *end) {
                PROBLEM(c, "write a number such as 2.5", "'%s' is not a number", text);
                break;
            }
        }
        if (d < 0) {
            PROBLEM(c, "write 0 or a positive number", "%s must not be negative", f->name);
            break;
        }
        *(double *)dst = d;
        break;
    }
    case K_ENUM: {
        if (!(text = scalar_text(c, v, "a string", NULL)))
            return;
        int i = name_index(f->names, text);
        if (i < 0)
            bad_choice(c, text, f->names, f->name);
        else
            *(int *)dst = i;
        break;
    }
    case K_LIST: {
        bt_strvec *sv = dst;
        vec_clear_strings(sv);
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            size_t base_len = c->ptr.len;
            json_array_foreach(v, i, x)
            {
                char idx[24];
                snprintf(idx, sizeof idx, "%zu", i);
                bt_yaml_pointer_push(&c->ptr, idx);
                char *t = scalar_text(c, x, "a string", "each item must be a plain value");
                if (t)
                    bt_strvec_push_owned(sv, t);
                bt_strbuf_setlen(&c->ptr, base_len);
            }
            return;
        }
        if (!(text = scalar_text(c, v, "a list", "write [a, b] or one item per '- ' line")))
            return;
        if (c->origin_env || c->from_default)
            bt_strvec_split(sv, text, ',');
        else
            bt_strvec_push(sv, text);
        break;
    }
    case K_ENVMAP: {
        bt_strvec *sv = dst;
        vec_clear_strings(sv);
        if (!json_is_object(v)) {
            PROBLEM(c, "write NAME: value pairs", "expected a mapping, got %s", json_kind(v));
            return;
        }
        const char *k;
        json_t *x;
        size_t base_len = c->ptr.len;
        json_object_foreach((json_t *)v, k, x)
        {
            bt_yaml_pointer_push(&c->ptr, k);
            if (!*k || strchr(k, '=')) {
                problem_at(c, bt_strbuf_cstr(&c->ptr), 1, "use a plain variable name",
                           "'%s' is not a valid environment variable name", k);
            } else {
                char *t = scalar_text(c, x, "a string", "quote the value");
                if (t) {
                    bt_strvec_pushf(sv, "%s=%s", k, t);
                    free(t);
                }
            }
            bt_strbuf_setlen(&c->ptr, base_len);
        }
        return;
    }
    case K_SCOPES: {
        unsigned bits = 0;
        bt_strvec names = BT_STRVEC_INIT;
        parse_leaf(c, &(field){.name = f->name, .kind = K_LIST}, &names, v);
        for (size_t i = 0; i < names.len; i++) {
            int k = name_index(f->names, names.items[i]);
            if (k < 0)
                bad_choice(c, names.items[i], f->names, "scope");
            else
                bits |= 1u << k;
        }
        bt_strvec_clear(&names);
        *(unsigned *)dst = bits;
        return;
    }
    default:
        break;
    }
    free(text);
}

static void env_name(const field *f, int i, const char *entry_id, char *buf, size_t n)
{
    if ((f->flags & F_PER_ENTRY) && entry_id)
        snprintf(buf, n, "%s%s", f->env[i], entry_id);
    else
        snprintf(buf, n, "%s", f->env[i]);
}

/* Parse a map (object of name -> sub-struct) or a sequence of sub-structs into gv. */
static void parse_collection(ctx *c, const field *f, gvec *gv, const json_t *v)
{
    const schema *s = f->sub;
    size_t base_len = c->ptr.len;
    if (f->kind == K_MAP) {
        if (!json_is_object(v)) {
            PROBLEM(c, "write one 'name:' entry per line under it", "expected a mapping, got %s",
                    json_kind(v));
            return;
        }
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            bt_yaml_pointer_push(&c->ptr, k);
            bt_vec_grow_(&gv->items, &gv->cap, gv->len + 1, s->size);
            void *el = (char *)gv->items + gv->len++ * s->size;
            memset(el, 0, s->size);
            *(char **)el = bt_xstrdup(k);
            char envid[256];
            bt_config_project_env_id(k, envid, sizeof envid);
            if (x && !json_is_null(x) && !json_is_object(x))
                PROBLEM(c, "give the entry's settings as a mapping", "expected a mapping, got %s",
                        json_kind(x));
            parse_object(c, s, el, json_is_object(x) ? x : NULL, envid);
            bt_strbuf_setlen(&c->ptr, base_len);
        }
        return;
    }
    /* K_SEQ */
    if (!json_is_array(v)) {
        PROBLEM(c, "write one '- ' item per line", "expected a list, got %s", json_kind(v));
        return;
    }
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        char idx[24];
        snprintf(idx, sizeof idx, "%zu", i);
        bt_yaml_pointer_push(&c->ptr, idx);
        bt_vec_grow_(&gv->items, &gv->cap, gv->len + 1, s->size);
        void *el = (char *)gv->items + gv->len++ * s->size;
        memset(el, 0, s->size);
        if (json_is_object(x)) {
            parse_object(c, s, el, x, NULL);
        } else if (s->shorthand && (json_is_string(x) || json_is_integer(x))) {
            json_t *o = json_pack("{sO}", s->shorthand, x);
            parse_object(c, s, el, o, NULL);
            json_decref(o);
            /* A bare token string has every scope. */
            if (s == &token_schema)
                ((bt_config_token *)el)->scope = BT_SCOPE_ALL;
        } else {
            PROBLEM(c, "give each item as a mapping", "expected a mapping, got %s", json_kind(x));
            parse_object(c, s, el, NULL, NULL);
        }
        bt_strbuf_setlen(&c->ptr, base_len);
    }
}

static void parse_limits(ctx *c, bt_config_limits *lim, const json_t *v)
{
    if (!json_is_object(v)) {
        PROBLEM(c, "write one 'name: N' per line", "expected a mapping, got %s", json_kind(v));
        return;
    }
    const char *k;
    json_t *x;
    size_t base_len = c->ptr.len;
    field f = {.name = "limit", .kind = K_INT, .min = 0, .max = 10000};
    json_object_foreach((json_t *)v, k, x)
    {
        bt_yaml_pointer_push(&c->ptr, k);
        int64_t n = -1;
        if (json_is_null(x))
            PROBLEM(c, "write a whole number", "expected an integer, got null");
        else
            parse_leaf(c, &f, &n, x);
        if (n >= 0) {
            bt_config_limit l = {bt_xstrdup(k), n};
            bt_vec_push(lim, l);
        }
        bt_strbuf_setlen(&c->ptr, base_len);
    }
}

static void unknown_key(ctx *c, const schema *s, const char *k)
{
    const char *cands[64];
    size_t n = 0;
    bt_strbuf list = BT_STRBUF_INIT;
    for (size_t i = 0; i < s->nfields && n < 64; i++) {
        cands[n++] = s->fields[i].name;
        bt_strbuf_addf(&list, "%s%s", i ? ", " : "", s->fields[i].name);
    }
    const char *sug = bt_str_suggest(k, cands, n);
    const char *ptr = bt_strbuf_cstr(&c->ptr);
    if (sug) {
        char hint[256];
        snprintf(hint, sizeof hint, "rename it to '%s'", sug);
        problem_at(c, ptr, 1, hint, "unknown key '%s'; did you mean '%s'?", k, sug);
    } else {
        char hint[1200];
        snprintf(hint, sizeof hint, "remove it; valid keys here: %s", bt_strbuf_cstr(&list));
        problem_at(c, ptr, 1, hint, "unknown key '%s'", k);
    }
    bt_strbuf_release(&list);
}

static void parse_object(ctx *c, const schema *s, void *base, const json_t *obj,
                         const char *entry_id)
{
    size_t base_len = c->ptr.len;
    if (obj) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)obj, k, x)
        {
            int known = 0;
            for (size_t i = 0; i < s->nfields; i++)
                if (strcmp(s->fields[i].name, k) == 0)
                    known = 1;
            if (!known) {
                bt_yaml_pointer_push(&c->ptr, k);
                unknown_key(c, s, k);
                bt_strbuf_setlen(&c->ptr, base_len);
            }
        }
    }
    for (size_t i = 0; i < s->nfields; i++) {
        const field *f = &s->fields[i];
        void *dst = AT(base, f->off);
        json_t *v = obj ? json_object_get(obj, f->name) : NULL;
        if (v && json_is_null(v))
            v = NULL;
        bt_yaml_pointer_push(&c->ptr, f->name);
        if (f->kind == K_ENUM)
            *(int *)dst = -1;
        switch (f->kind) {
        case K_OBJ: {
            json_t *wrapped = NULL;
            if (v && json_is_string(v) && f->sub->shorthand) {
                wrapped = json_pack("{sO}", f->sub->shorthand, v);
                v = wrapped;
            }
            if (v && !json_is_object(v)) {
                PROBLEM(c, "indent its keys under it", "expected a mapping, got %s", json_kind(v));
                v = NULL;
            }
            parse_object(c, f->sub, dst, v, entry_id);
            json_decref(wrapped);
            break;
        }
        case K_MAP:
        case K_SEQ:
            if (v)
                parse_collection(c, f, dst, v);
            break;
        case K_LIMITS:
            if (v)
                parse_limits(c, dst, v);
            break;
        default: {
            if (v) {
                parse_leaf(c, f, dst, v);
                break;
            }
            int done = 0;
            int per_entry_ok = !(f->flags & F_PER_ENTRY) || entry_id;
            for (int e = 0; e < 3 && f->env[e] && !done && per_entry_ok; e++) {
                char name[256];
                env_name(f, e, entry_id, name, sizeof name);
                const char *val = env_get(c->envp, name);
                if (!val)
                    continue;
                json_t *sv = json_string(val);
                if (!sv) {
                    problem_at(c, bt_strbuf_cstr(&c->ptr), 0, NULL, "$%s is not UTF-8", name);
                    done = 1;
                    break;
                }
                const char *saved = c->origin_env;
                c->origin_env = name;
                parse_leaf(c, f, dst, sv);
                c->origin_env = saved;
                json_decref(sv);
                bt_map_set(c->from_env, bt_strbuf_cstr(&c->ptr), bt_xstrdup(name));
                done = 1;
            }
            if (!done && f->dflt) {
                json_t *dv = json_string(f->dflt);
                c->from_default++;
                parse_leaf(c, f, dst, dv);
                c->from_default--;
                json_decref(dv);
            }
        }
        }
        bt_strbuf_setlen(&c->ptr, base_len);
    }
}

/* ---- walking: free, secrets, JSON ---- */

static void free_object(const schema *s, void *base);

static void free_collection(const field *f, gvec *gv)
{
    for (size_t i = 0; i < gv->len; i++) {
        void *el = (char *)gv->items + i * f->sub->size;
        if (f->kind == K_MAP)
            free(*(char **)el);
        free_object(f->sub, el);
    }
    free(gv->items);
    gv->items = NULL;
    gv->len = gv->cap = 0;
}

static void free_object(const schema *s, void *base)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const field *f = &s->fields[i];
        void *dst = AT(base, f->off);
        switch (f->kind) {
        case K_STR:
        case K_URL:
        case K_CHOICE:
            BT_FREE(*(char **)dst);
            break;
        case K_LIST:
        case K_ENVMAP:
            bt_strvec_clear(dst);
            break;
        case K_OBJ:
            free_object(f->sub, dst);
            break;
        case K_MAP:
        case K_SEQ:
            free_collection(f, dst);
            break;
        case K_LIMITS: {
            bt_config_limits *l = dst;
            for (size_t k = 0; k < l->len; k++)
                free(l->items[k].name);
            bt_vec_free(l);
            break;
        }
        default:
            break;
        }
    }
}

void bt_config_free(bt_config *cfg)
{
    if (!cfg)
        return;
    free_object(&root_schema, cfg);
    free(cfg->path);
    free(cfg->store.sqlite_path);
    free(cfg);
}

/* Does an env-map entry name look like it holds a credential? */
static int secret_name(const char *kv)
{
    static const char *const words[] = {"KEY",  "TOKEN", "SECRET",     "PASSWORD", "PASSWD",
                                        "PASS", "PAT",   "CREDENTIAL", "AUTH"};
    size_t n = strcspn(kv, "=");
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(n < 255 ? n : 255), kv);
    bt_str_upper(name);
    for (size_t i = 0; i < NF(words); i++)
        if (strstr(name, words[i]))
            return 1;
    return 0;
}

/* The password inside scheme://user:password@host...; [*start, *len) or 0 when none. */
static int url_password(const char *url, size_t *start, size_t *len)
{
    const char *p = strstr(url, "://");
    if (!p)
        return 0;
    p += 3;
    size_t auth = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth; i++)
        if (p[i] == '@')
            at = p + i;
    if (!at)
        return 0;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon || colon + 1 == at)
        return 0;
    *start = (size_t)(colon + 1 - url);
    *len = (size_t)(at - colon - 1);
    return 1;
}

typedef void (*secret_fn)(const char *value, void *ud);

static void secrets_object(const schema *s, const void *base, secret_fn fn, void *ud);

static void secrets_collection(const field *f, const gvec *gv, secret_fn fn, void *ud)
{
    for (size_t i = 0; i < gv->len; i++)
        secrets_object(f->sub, (const char *)gv->items + i * f->sub->size, fn, ud);
}

static void secrets_object(const schema *s, const void *base, secret_fn fn, void *ud)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const field *f = &s->fields[i];
        const void *src = CAT(base, f->off);
        switch (f->kind) {
        case K_STR:
        case K_URL: {
            const char *v = *(char *const *)src;
            if (!v || !*v)
                break;
            if (f->flags & F_SECRET) {
                fn(v, ud);
            } else if (f->flags & F_SECRET_URL) {
                size_t st, n;
                if (url_password(v, &st, &n)) {
                    char *pw = bt_xstrndup(v + st, n);
                    fn(pw, ud);
                    free(pw);
                }
            }
            break;
        }
        case K_ENVMAP: {
            const bt_strvec *sv = src;
            for (size_t k = 0; k < sv->len; k++)
                if (secret_name(sv->items[k])) {
                    const char *val = strchr(sv->items[k], '=') + 1;
                    if (*val)
                        fn(val, ud);
                }
            break;
        }
        case K_OBJ:
            secrets_object(f->sub, src, fn, ud);
            break;
        case K_MAP:
        case K_SEQ:
            secrets_collection(f, src, fn, ud);
            break;
        default:
            break;
        }
    }
}

void bt_config_each_secret(const bt_config *cfg, void (*fn)(const char *value, void *ud), void *ud)
{
    if (cfg && fn)
        secrets_object(&root_schema, cfg, fn, ud);
}

static json_t *object_json(const schema *s, const void *base, int mask);

static json_t *str_json(const char *v)
{
    return v ? json_string(v) : json_null();
}

static json_t *field_json(const field *f, const void *src, int mask)
{
    switch (f->kind) {
    case K_STR:
    case K_URL:
    case K_CHOICE: {
        const char *v = *(char *const *)src;
        if (!v)
            return json_null();
        if (mask && (f->flags & F_SECRET))
            return json_string("***");
        size_t st, n;
        if (mask && (f->flags & F_SECRET_URL) && url_password(v, &st, &n)) {
            bt_strbuf sb = BT_STRBUF_INIT;
            bt_strbuf_add(&sb, v, st);
            bt_strbuf_addstr(&sb, "***");
            bt_strbuf_addstr(&sb, v + st + n);
            json_t *j = json_string(bt_strbuf_cstr(&sb));
            bt_strbuf_release(&sb);
            return j;
        }
        return json_string(v);
    }
    case K_INT:
    case K_SIZE:
        return json_integer(*(const int64_t *)src);
    case K_BOOL:
        return json_boolean(*(const int *)src);
    case K_DUR: {
        char buf[40];
        return json_string(bt_duration_format(*(const int64_t *)src, buf));
    }
    case K_NUM:
        return json_real(*(const double *)src);
    case K_ENUM: {
        int i = *(const int *)src;
        if (i < 0)
            return json_null();
        return json_stringn(f->names[i], canon_len(f->names[i]));
    }
    case K_LIST: {
        const bt_strvec *sv = src;
        json_t *a = json_array();
        for (size_t i = 0; i < sv->len; i++)
            json_array_append_new(a, json_string(sv->items[i]));
        return a;
    }
    case K_ENVMAP: {
        const bt_strvec *sv = src;
        json_t *o = json_object();
        for (size_t i = 0; i < sv->len; i++) {
            const char *eq = strchr(sv->items[i], '=');
            char *k = bt_xstrndup(sv->items[i], (size_t)(eq - sv->items[i]));
            json_object_set_new(o, k,
                                json_string(mask && secret_name(sv->items[i]) ? "***" : eq + 1));
            free(k);
        }
        return o;
    }
    case K_SCOPES: {
        unsigned bits = *(const unsigned *)src;
        json_t *a = json_array();
        for (int i = 0; f->names[i]; i++)
            if (bits & (1u << i))
                json_array_append_new(a, json_string(f->names[i]));
        return a;
    }
    case K_OBJ:
        return object_json(f->sub, src, mask);
    case K_MAP: {
        const gvec *gv = src;
        json_t *o = json_object();
        for (size_t i = 0; i < gv->len; i++) {
            const void *el = (const char *)gv->items + i * f->sub->size;
            json_object_set_new(o, *(char *const *)el, object_json(f->sub, el, mask));
        }
        return o;
    }
    case K_SEQ: {
        const gvec *gv = src;
        json_t *a = json_array();
        for (size_t i = 0; i < gv->len; i++)
            json_array_append_new(
                a, object_json(f->sub, (const char *)gv->items + i * f->sub->size, mask));
        return a;
    }
    case K_LIMITS: {
        const bt_config_limits *l = src;
        json_t *o = json_object();
        for (size_t i = 0; i < l->len; i++)
            json_object_set_new(o, l->items[i].name, json_integer(l->items[i].value));
        return o;
    }
    default:
        return json_null();
    }
}

static json_t *object_json(const schema *s, const void *base, int mask)
{
    json_t *o = json_object();
    for (size_t i = 0; i < s->nfields; i++)
        json_object_set_new(o, s->fields[i].name,
                            field_json(&s->fields[i], CAT(base, s->fields[i].off), mask));
    return o;
}

json_t *bt_config_to_json(const bt_config *cfg, int mask_secrets)
{
    json_t *o = object_json(&root_schema, cfg, mask_secrets);
    json_object_set_new(o, "config_file", str_json(cfg->path));
    return o;
}

/* ---- cross-field checks and derived values ---- */

static const char *const default_agents_yaml = "{\"claude\": {\"type\": \"cli\", \"preset\": "
                                               "\"claude\", \"role\": \"implementation\"},"
                                               " \"codex\": {\"type\": \"cli\", \"preset\": "
                                               "\"codex\", \"role\": \"review\"}}";

static const field *root_field(const char *name)
{
    for (size_t i = 0; i < NF(root_fields); i++)
        if (strcmp(root_fields[i].name, name) == 0)
            return &root_fields[i];
    return NULL;
}

static void set_ptr(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_ptr(ctx *c, const char *fmt, ...)
{
    va_list ap;
    bt_strbuf_setlen(&c->ptr, 0);
    va_start(ap, fmt);
    bt_strbuf_vaddf(&c->ptr, fmt, ap);
    va_end(ap);
}

/* Pointer for a map entry's key: /section/<escaped name>. */
static void set_entry_ptr(ctx *c, const char *section, const char *name, const char *field_name)
{
    bt_strbuf_setlen(&c->ptr, 0);
    bt_yaml_pointer_push(&c->ptr, section);
    bt_yaml_pointer_push(&c->ptr, name);
    if (field_name)
        bt_yaml_pointer_push(&c->ptr, field_name);
}

static int agent_index(const bt_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->agents.len; i++)
        if (strcmp(cfg->agents.items[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void suggest_agent(ctx *c, const bt_config *cfg, const char *name, const char *what)
{
    const char **names = bt_xcalloc(cfg->agents.len + 1, sizeof *names);
    bt_strbuf list = BT_STRBUF_INIT;
    for (size_t i = 0; i < cfg->agents.len; i++) {
        names[i] = cfg->agents.items[i].name;
        bt_strbuf_addf(&list, "%s%s", i ? ", " : "", names[i]);
    }
    const char *s = bt_str_suggest(name, names, cfg->agents.len);
    char hint[1024];
    snprintf(hint, sizeof hint, "define agents.%s or use one of: %s", name,
             cfg->agents.len ? bt_strbuf_cstr(&list) : "(no agents defined)");
    if (s)
        PROBLEM(c, hint, "%s names unknown agent '%s'; did you mean '%s'?", what, name, s);
    else
        PROBLEM(c, hint, "%s names unknown agent '%s'", what, name);
    bt_strbuf_release(&list);
    free(names);
}

static void check_agents(ctx *c, bt_config *cfg)
{
    for (size_t i = 0; i < cfg->agents.len; i++) {
        bt_config_agent *a = &cfg->agents.items[i];
        if ((int)a->type < 0) {
            if (a->command || a->preset) {
                a->type = BT_AGENT_CLI;
            } else if (name_index(presets, a->name) >= 0) {
                a->type = BT_AGENT_CLI;
            } else {
                set_entry_ptr(c, "agents", a->name, NULL);
                problem_at(c, bt_strbuf_cstr(&c->ptr), 1,
                           "add 'type: cli' with a command or preset, or type: openai, "
                           "anthropic, ollama, openhands or replay",
                           "agent '%s' has no type", a->name);
                a->type = BT_AGENT_CLI;
                continue;
            }
        }
        switch (a->type) {
        case BT_AGENT_CLI:
            if (!a->command && !a->preset) {
                if (name_index(presets, a->name) >= 0) {
                    a->preset = bt_xstrdup(a->name);
                } else {
                    set_entry_ptr(c, "agents", a->name, NULL);
                    problem_at(c, bt_strbuf_cstr(&c->ptr), 1,
                               "add 'command: PROGRAM' or 'preset: claude' (codex, gemini, "
                               "copilot, aider, opencode)",
                               "CLI agent '%s' has neither a command nor a preset", a->name);
                }
            }
            break;
        case BT_AGENT_OPENAI:
        case BT_AGENT_ANTHROPIC:
        case BT_AGENT_OLLAMA: {
            static const char *const urls[] = {
                "https://api.openai.com/v1", "https://api.anthropic.com", "http://127.0.0.1:11434"};
            const char *dflt = urls[a->type == BT_AGENT_OPENAI      ? 0
                                    : a->type == BT_AGENT_ANTHROPIC ? 1
                                                                    : 2];
            if (!a->base_url)
                a->base_url = bt_xstrdup(dflt);
            if (!a->model) {
                set_entry_ptr(c, "agents", a->name, NULL);
                problem_at(c, bt_strbuf_cstr(&c->ptr), 1, "add e.g. 'model: gpt-4o-mini'",
                           "agent '%s' (type %s) needs a model", a->name,
                           bt_config_agent_type_name(a->type));
            }
            if (!a->api_key) {
                const char *k = NULL;
                if (a->type == BT_AGENT_ANTHROPIC)
                    k = cfg->api_keys.anthropic;
                else if (a->type == BT_AGENT_OPENAI && strcmp(a->base_url, dflt) == 0)
                    k = cfg->api_keys.openai;
                else if (a->type == BT_AGENT_OPENAI && strstr(a->base_url, "x.ai"))
                    k = cfg->api_keys.grok;
                else if (a->type == BT_AGENT_OPENAI &&
                         strstr(a->base_url, "generativelanguage.googleapis.com"))
                    k = cfg->api_keys.gemini;
                a->api_key = bt_xstrdup(k);
            }
            break;
        }
        case BT_AGENT_OPENHANDS:
            if (!a->model)
                a->model = bt_xstrdup(cfg->llm.model);
            if (!a->base_url)
                a->base_url = bt_xstrdup(cfg->openhands.runtime_api_url);
            if (!a->api_key)
                a->api_key = bt_xstrdup(cfg->openhands.runtime_api_key);
            break;
        case BT_AGENT_REPLAY:
            if (!a->file) {
                set_entry_ptr(c, "agents", a->name, NULL);
                problem_at(c, bt_strbuf_cstr(&c->ptr), 1, "add 'file: PATH' of a recording",
                           "replay agent '%s' needs a file", a->name);
            }
            break;
        }
        for (size_t k = 0; k < a->fallback.len; k++) {
            const char *fb = a->fallback.items[k];
            set_entry_ptr(c, "agents", a->name, "fallback");
            char idx[24];
            snprintf(idx, sizeof idx, "%zu", k);
            bt_yaml_pointer_push(&c->ptr, idx);
            char what[300];
            snprintf(what, sizeof what, "fallback of agent '%s'", a->name);
            if (strcmp(fb, a->name) == 0)
                PROBLEM(c, "name a different agent, or remove the fallback",
                        "agent '%s' names itself as its fallback", a->name);
            else if (agent_index(cfg, fb) < 0)
                suggest_agent(c, cfg, fb, what);
        }
    }
    for (size_t i = 0; i < cfg->concurrency.per_agent.len; i++) {
        const char *n = cfg->concurrency.per_agent.items[i].name;
        if (agent_index(cfg, n) < 0) {
            set_ptr(c, "/concurrency/per_agent");
            bt_yaml_pointer_push(&c->ptr, n);
            bt_strbuf pk = BT_STRBUF_INIT;
            bt_strbuf_addstr(&pk, bt_strbuf_cstr(&c->ptr));
            /* Blame the key, which is what is misspelt. */
            const char **names = bt_xcalloc(cfg->agents.len + 1, sizeof *names);
            for (size_t k = 0; k < cfg->agents.len; k++)
                names[k] = cfg->agents.items[k].name;
            const char *s = bt_str_suggest(n, names, cfg->agents.len);
            if (s)
                problem_at(c, bt_strbuf_cstr(&pk), 1, "use a name defined under agents",
                           "concurrency.per_agent names unknown agent '%s'; did you mean '%s'?", n,
                           s);
            else
                problem_at(c, bt_strbuf_cstr(&pk), 1, "use a name defined under agents",
                           "concurrency.per_agent names unknown agent '%s'", n);
            free(names);
            bt_strbuf_release(&pk);
        }
    }
}

static void check_store(ctx *c, bt_config *cfg)
{
    const char *u = cfg->store.url;
    if (!u)
        return;
    set_ptr(c, "/store/url");
    const char *hint = "use sqlite:PATH (e.g. sqlite:./var/baton.db) or "
                       "postgres://USER:PASSWORD@HOST:5432/DB";
    if (bt_str_starts_with(u, "sqlite:")) {
        const char *p = u + 7;
        if (bt_str_starts_with(p, "//"))
            p += 2; /* sqlite:///abs/path and sqlite://./rel are accepted too */
        if (!*p)
            PROBLEM(c, hint, "store URL '%s' has no database path", u);
        else
            cfg->store.sqlite_path = bt_xstrdup(p);
        cfg->store.kind = BT_STORE_SQLITE;
    } else if (bt_str_starts_with(u, "postgres://") || bt_str_starts_with(u, "postgresql://")) {
        cfg->store.kind = BT_STORE_POSTGRES;
    } else {
        char shown[256];
        size_t n = strcspn(u, ":");
        snprintf(shown, sizeof shown, "%.*s", (int)(n < 64 ? n : 64), u);
        PROBLEM(c, hint, "unsupported store URL scheme '%s'", shown);
    }
}

static void check_mcp(ctx *c, bt_config *cfg)
{
    const char *cmd = env_get(c->envp, "MCP_ATLASSIAN_COMMAND");
    int have = 0;
    for (size_t i = 0; i < cfg->mcp_servers.len; i++)
        if (strcmp(cfg->mcp_servers.items[i].name, "atlassian") == 0)
            have = 1;
    if (cmd && !have) {
        bt_config_mcp_server m = {0};
        m.name = bt_xstrdup("atlassian");
        m.command = bt_xstrdup(cmd);
        const char *args = env_get(c->envp, "MCP_ATLASSIAN_ARGS");
        if (args)
            bt_strvec_split(&m.args, args, ',');
        bt_vec_push(&cfg->mcp_servers, m);
    }
    for (size_t i = 0; i < cfg->mcp_servers.len; i++) {
        bt_config_mcp_server *m = &cfg->mcp_servers.items[i];
        if (!m->command == !m->url) {
            set_entry_ptr(c, "mcp_servers", m->name, NULL);
            problem_at(c, bt_strbuf_cstr(&c->ptr), 1,
                       "give 'command:' for a stdio server or 'url:' for an HTTP one",
                       m->command ? "MCP server '%s' has both a command and a url"
                                  : "MCP server '%s' has neither a command nor a url",
                       m->name);
        }
        if (m->tool_filter) {
            regex_t re;
            int rc = regcomp(&re, m->tool_filter, REG_EXTENDED | REG_NOSUB);
            if (rc != 0) {
                char why[200];
                regerror(rc, &re, why, sizeof why);
                set_entry_ptr(c, "mcp_servers", m->name, "tool_filter");
                PROBLEM(c, "write a POSIX extended regular expression, e.g. ^jira_",
                        "tool_filter '%s' is not a valid regular expression: %s", m->tool_filter,
                        why);
            } else {
                regfree(&re);
            }
        }
    }
}

static void discover_projects(ctx *c, bt_config *cfg)
{
    static const char prefix[] = "PROJECT_REPO_";
    for (char *const *e = c->envp; e && *e; e++) {
        if (!bt_str_starts_with(*e, prefix))
            continue;
        const char *id = *e + sizeof prefix - 1;
        size_t n = strcspn(id, "=");
        if (n == 0 || !id[n] || !id[n + 1])
            continue;
        char *pid = bt_xstrndup(id, n);
        int have = 0;
        for (size_t i = 0; i < cfg->projects.len; i++) {
            char envid[256];
            bt_config_project_env_id(cfg->projects.items[i].id, envid, sizeof envid);
            if (strcmp(envid, pid) == 0)
                have = 1;
        }
        if (!have) {
            bt_config_project p = {0};
            p.id = pid;
            bt_vec_push(&cfg->projects, p);
            set_entry_ptr(c, "projects", pid, NULL);
            parse_object(c, &project_schema, &cfg->projects.items[cfg->projects.len - 1], NULL,
                         pid);
        } else {
            free(pid);
        }
    }
}

static void check_misc(ctx *c, bt_config *cfg)
{
    bt_config_github *gh = &cfg->trackers.github;
    if (gh->repo) {
        const char *slash = strchr(gh->repo, '/');
        if (!slash || slash == gh->repo || !slash[1] || strchr(slash + 1, '/')) {
            set_ptr(c, "/trackers/github/repo");
            PROBLEM(c, "write it as OWNER/NAME, e.g. acme/api",
                    "GitHub repository '%s' is not OWNER/NAME", gh->repo);
        }
    }
    bt_config_jira *j = &cfg->trackers.jira;
    if (j->webhook_enabled && !j->webhook_base_url) {
        set_ptr(c, "/trackers/jira/webhook_enabled");
        PROBLEM(c,
                "set trackers.jira.webhook_base_url (or WEBHOOK_BASE_URL) to the public URL "
                "Jira can reach",
                "Jira webhooks are enabled but there is no webhook_base_url");
    }
    if (j->url && (!j->username || !j->api_token)) {
        set_ptr(c, "/trackers/jira/url");
        PROBLEM(c,
                "set trackers.jira.username and api_token (or JIRA_USERNAME and "
                "JIRA_API_TOKEN)",
                "Jira is configured at %s but has no %s", j->url,
                !j->username ? "username" : "api_token");
    }
    if (cfg->queue.backoff_max_ms < cfg->queue.backoff_base_ms) {
        set_ptr(c, "/queue/backoff_max");
        PROBLEM(c, "make backoff_max at least backoff_base",
                "queue.backoff_max is shorter than queue.backoff_base");
    }
    for (size_t i = 0; i < cfg->server.tokens.len; i++) {
        if (!cfg->server.tokens.items[i].token) {
            set_ptr(c, "/server/tokens/%zu", i);
            PROBLEM(c, "add 'token: VALUE' (e.g. token: ${BATON_TOKEN})",
                    "API token entry %zu has no token", i + 1);
        }
    }
    if (!cfg->notify.smtp.from && cfg->notify.smtp.user)
        cfg->notify.smtp.from = bt_xstrdup(cfg->notify.smtp.user);
    if (!cfg->worker.workspace_dir)
        cfg->worker.workspace_dir = bt_xstrdup(cfg->workspace.root);
}

/* ---- loading ---- */

static int problem_cmp(const void *a, const void *b)
{
    const bt_config_problem *x = a, *y = b;
    int fx = x->line == 0, fy = y->line == 0; /* file positions first */
    if (fx != fy)
        return fx - fy;
    int r = strcmp(x->file, y->file);
    if (r)
        return r;
    if (x->line != y->line)
        return x->line - y->line;
    return x->column - y->column;
}

static int yaml_problem(const char *name, const bt_error *e, bt_config_problems *probs)
{
    /* The loader writes "name:line:col: message"; keep the position structured. */
    size_t n = strlen(name);
    int line = 0, col = 0, off = 0;
    const char *msg = e->msg;
    if (strncmp(e->msg, name, n) == 0 && e->msg[n] == ':' &&
        sscanf(e->msg + n, ":%d:%d: %n", &line, &col, &off) >= 2 && off > 0)
        msg = e->msg + n + off;
    bt_config_problem_add(probs, name, line, col, NULL, msg,
                          e->code == BT_ENOENT ? "check the path, or omit --config to use built-in "
                                                 "defaults"
                                               : "fix the YAML syntax at that position");
    return e->code;
}

static int load_doc(const char *name, bt_yaml_doc *doc, char *const *envp, bt_config **out,
                    bt_config_problems *problems, bt_error *err)
{
    bt_config_problems local = {0};
    bt_config_problems *probs = problems ? problems : &local;
    size_t before = probs->len;
    ctx c = {.file = name, .doc = doc, .envp = envp, .probs = probs};
    c.from_env = bt_map_new(free);
    bt_config *cfg = bt_xcalloc(1, sizeof *cfg);
    cfg->path = bt_xstrdup(name);

    json_t *root = doc ? bt_yaml_doc_root(doc) : NULL;
    if (root && json_is_null(root))
        root = NULL;
    if (root && !json_is_object(root)) {
        problem_at(&c, "", 0, "the top level must be a mapping of sections (server:, agents:, ...)",
                   "expected a mapping at the top level, got %s", json_kind(root));
        root = NULL;
    }
    parse_object(&c, &root_schema, cfg, root, NULL);
    if (!root || !json_object_get(root, "agents")) {
        json_t *d = json_loads(default_agents_yaml, 0, NULL);
        c.from_default++;
        set_ptr(&c, "/agents");
        parse_collection(&c, root_field("agents"), (gvec *)&cfg->agents, d);
        c.from_default--;
        json_decref(d);
    }
    discover_projects(&c, cfg);
    check_store(&c, cfg);
    check_agents(&c, cfg);
    check_mcp(&c, cfg);
    check_misc(&c, cfg);

    bt_strbuf_release(&c.ptr);
    bt_map_free(c.from_env);
    size_t nprob = probs->len - before;
    if (nprob) {
        qsort(probs->items + before, nprob, sizeof *probs->items, problem_cmp);
        bt_config_problem *first = &probs->items[before];
        if (first->line)
            bt_errorf(err, BT_EINVAL, "%zu problem%s in the configuration; first: %s:%d:%d: %s",
                      nprob, nprob == 1 ? "" : "s", first->file, first->line, first->column,
                      first->message);
        else
            bt_errorf(err, BT_EINVAL, "%zu problem%s in the configuration; first: %s: %s", nprob,
                      nprob == 1 ? "" : "s", first->file, first->message);
        bt_config_free(cfg);
        bt_config_problems_free(&local);
        *out = NULL;
        return BT_EINVAL;
    }
    *out = cfg;
    return 0;
}

int bt_config_load_string(const char *name, const char *buf, size_t len, char *const *envp,
                          bt_config **out, bt_config_problems *problems, bt_error *err)
{
    *out = NULL;
    bt_yaml_doc *doc = NULL;
    int rc = bt_yaml_load_string(name, buf, len, &doc, err);
    if (rc < 0) {
        yaml_problem(name, err, problems);
        return rc;
    }
    rc = load_doc(name, doc, envp, out, problems, err);
    bt_yaml_doc_free(doc);
    return rc;
}

int bt_config_load(const char *path, char *const *envp, bt_config **out,
                   bt_config_problems *problems, bt_error *err)
{
    *out = NULL;
    if (!path) {
        int rc = load_doc(NULL, NULL, envp, out, problems, err);
        return rc;
    }
    bt_yaml_doc *doc = NULL;
    int rc = bt_yaml_load_file(path, &doc, err);
    if (rc < 0) {
        yaml_problem(path, err, problems);
        return rc;
    }
    rc = load_doc(path, doc, envp, out, problems, err);
    bt_yaml_doc_free(doc);
    return rc;
}

const char *bt_config_find_path(const char *explicit_path, char *const *envp)
{
    if (explicit_path && *explicit_path)
        return explicit_path;
    const char *e = env_get(envp, "BATON_CONFIG");
    if (e)
        return e;
    if (access("baton.yaml", F_OK) == 0)
        return "baton.yaml";
    return NULL;
}

void bt_config_problems_print(const bt_config_problems *probs, FILE *out)
{
    for (size_t i = 0; i < probs->len; i++) {
        const bt_config_problem *p = &probs->items[i];
        if (p->line > 0)
            fprintf(out, "%s:%d:%d: error: %s", p->file, p->line, p->column, p->message);
        else
            fprintf(out, "%s: error: %s", p->file, p->message);
        if (p->hint)
            fprintf(out, " (fix: %s)", p->hint);
        fputc('\n', out);
    }
}

void bt_config_problems_free(bt_config_problems *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->len; i++) {
        free(p->items[i].file);
        free(p->items[i].key);
        free(p->items[i].message);
        free(p->items[i].hint);
    }
    bt_vec_free(p);
}

/* ---- schema description ---- */

static const char *kind_name(int k)
{
    static const char *const names[] = {
        "string", "url",  "integer", "boolean", "duration", "size", "number",          "enum",
        "enum",   "list", "map",     "section", "map",      "list", "map of integers", "list"};
    return k >= 0 && (size_t)k < NF(names) ? names[k] : "?";
}

static void schema_walk(const schema *s, const char *prefix, json_t *out)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const field *f = &s->fields[i];
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", f->name);
        json_t *o = json_object();
        json_object_set_new(o, "key", json_string(key));
        json_object_set_new(o, "type", json_string(kind_name(f->kind)));
        json_object_set_new(o, "default", str_json(f->dflt));
        json_t *env = json_array();
        for (int e = 0; e < 3 && f->env[e]; e++) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", f->env[e], f->flags & F_PER_ENTRY ? "<ID>" : "");
            json_array_append_new(env, json_string(name));
        }
        json_object_set_new(o, "env", env);
        json_object_set_new(o, "secret", json_boolean(f->flags & (F_SECRET | F_SECRET_URL)));
        json_t *vals = json_null();
        if (f->names) {
            vals = json_array();
            for (int k = 0; f->names[k]; k++)
                json_array_append_new(vals, json_stringn(f->names[k], canon_len(f->names[k])));
        }
        json_object_set_new(o, "values", vals);
        json_array_append_new(out, o);
        if (f->kind == K_OBJ) {
            schema_walk(f->sub, key, out);
        } else if (f->kind == K_MAP || f->kind == K_SEQ) {
            char sub[300];
            snprintf(sub, sizeof sub, "%s.%s", key, f->kind == K_MAP ? "<name>" : "<n>");
            schema_walk(f->sub, sub, out);
        }
    }
}

json_t *bt_config_schema(void)
{
    json_t *out = json_array();
    schema_walk(&root_schema, "", out);
    return out;
}

/* ---- accessors ---- */

const bt_config_agent *bt_config_agent_find(const bt_config *cfg, const char *name)
{
    int i = cfg && name ? agent_index(cfg, name) : -1;
    return i < 0 ? NULL : &cfg->agents.items[i];
}

const bt_config_model_price *bt_config_price_find(const bt_config *cfg, const char *model)
{
    if (!cfg || !model || !*model)
        return NULL;
    const bt_config_model_price *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < cfg->prices.len; i++) {
        const bt_config_model_price *p = &cfg->prices.items[i];
        size_t n = strlen(p->name);
        if (strcmp(p->name, model) == 0)
            return p;
        if (n > best_len && strncmp(p->name, model, n) == 0) {
            best = p;
            best_len = n;
        }
    }
    return best;
}

char *bt_config_project_env_id(const char *id, char *buf, size_t n)
{
    size_t i = 0;
    for (; id[i] && i + 1 < n; i++)
        buf[i] = id[i] == '-' ? '_' : (char)toupper((unsigned char)id[i]);
    if (n)
        buf[i] = '\0';
    return buf;
}

int bt_config_project_resolve(const bt_config *cfg, const char *id, int require_docs,
                              const bt_config_project **out, bt_error *err)
{
    *out = NULL;
    char want[256], have[256];
    bt_config_project_env_id(id, want, sizeof want);
    const bt_config_project *p = NULL;
    for (size_t i = 0; i < cfg->projects.len && !p; i++)
        if (strcmp(bt_config_project_env_id(cfg->projects.items[i].id, have, sizeof have), want) ==
            0)
            p = &cfg->projects.items[i];
    if (!p)
        return bt_errorf(err, BT_ENOENT,
                         "project %s is not configured: set projects.%s.repo in baton.yaml or "
                         "PROJECT_REPO_%s",
                         want, id, want);
    static const struct {
        const char *what, *key, *env;
        size_t off;
    } need[] = {
        {"repository", "repo", "PROJECT_REPO_", offsetof(bt_config_project, repo)},
        {"team contribution rules URL", "team_contribution_rules_url",
         "TEAM_CONTRIBUTION_RULES_URL_", offsetof(bt_config_project, team_contribution_rules_url)},
        {"architecture rules URL", "architecture_rules_url", "ARCHITECTURE_RULES_URL_",
         offsetof(bt_config_project, architecture_rules_url)},
        {"PRD URL", "prd_url", "PRD_URL_", offsetof(bt_config_project, prd_url)},
        {"ARD URL", "ard_url", "ARD_URL_", offsetof(bt_config_project, ard_url)},
    };
    bt_strbuf msg = BT_STRBUF_INIT;
    int missing = 0;
    for (size_t i = 0; i < NF(need); i++) {
        if (i > 0 && !require_docs)
            break;
        if (*(char *const *)CAT(p, need[i].off))
            continue;
        bt_strbuf_addf(&msg, "%s%s: set projects.%s.%s in baton.yaml or %s%s",
                       missing ? "; no " : "", need[i].what, p->id, need[i].key, need[i].env, want);
        missing++;
    }
    if (missing) {
        int rc = bt_errorf(err, BT_EINVAL, "project %s has no %s", want, bt_strbuf_cstr(&msg));
        bt_strbuf_release(&msg);
        return rc;
    }
    bt_strbuf_release(&msg);
    *out = p;
    return 0;
}

const char *bt_config_agent_type_name(bt_agent_type t)
{
    return (int)t >= 0 && (size_t)t < NF(agent_types) - 1 ? agent_types[t] : "unknown";
}

const char *bt_config_log_level_name(bt_config_log_level l)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    return (int)l >= 0 && (size_t)l < NF(names) ? names[l] : "unknown";
}
