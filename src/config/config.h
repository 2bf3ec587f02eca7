/*
 * config.h - baton.yaml: typed configuration with defaults, environment fallbacks,
 * `$VAR` expansion, secrets, and validation that reports every problem at once.
 *
 * Where a value comes from, in order of precedence:
 *   1. the file (any string may be `$VAR` / `${VAR}`, expanded from the environment;
 *      `$$` is a literal dollar; an unset or empty variable is a problem);
 *   2. the seeds' environment variables (GITHUB_TOKEN, DATABASE_URL, PROJECT_REPO_<ID>,
 *      ... - docs/configuration.md lists them per key);
 *   3. built-in defaults.
 * The environment is always an explicit input (an envp array like `environ`), never
 * read behind the caller's back, so tests and `PUT /api/config` can pass their own.
 *
 * Which file: bt_config_find_path: `--config F`, else $BATON_CONFIG, else ./baton.yaml
 * when it exists, else none (defaults + environment).
 *
 * Ownership: a bt_config owns every string and array reachable from it; all of it is
 * released by bt_config_free. Pointers handed out by accessors are borrowed from the
 * config and live as long as it. A config is immutable once loaded; reload by loading
 * a new one.
 *
 * Secrets (tokens, API keys, passwords, webhook secrets, the JWT secret, the password
 * inside a store URL, secret-looking entries of `env` maps) are known to the schema:
 * bt_config_to_json masks them, and bt_config_each_secret hands their values to the
 * log redactor.
 */
#ifndef BT_CONFIG_H
#define BT_CONFIG_H

#include "base/error.h"
#include "base/vec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdint.h>

/* ---- enumerations (the names are the YAML spellings) ---- */

typedef enum bt_agent_type {
    BT_AGENT_CLI,
    BT_AGENT_OPENAI,
    BT_AGENT_ANTHROPIC,
    BT_AGENT_OLLAMA,
    BT_AGENT_OPENHANDS,
    BT_AGENT_REPLAY,
} bt_agent_type;

typedef enum bt_ws_strategy {
    BT_WS_CLONE,
    BT_WS_WORKTREE,
} bt_ws_strategy;

/* Same values as obs/log.h's bt_log_level (checked at compile time in config.c), so a
 * cast between the two is valid. */
typedef enum bt_config_log_level {
    BT_LOGLEVEL_DEBUG,
    BT_LOGLEVEL_INFO,
    BT_LOGLEVEL_WARN,
    BT_LOGLEVEL_ERROR,
} bt_config_log_level;

/* API token scopes (a bit set). */
enum {
    BT_SCOPE_READ = 1u << 0,
    BT_SCOPE_WRITE = 1u << 1,
    BT_SCOPE_WORKER = 1u << 2,
    BT_SCOPE_ADMIN = 1u << 3,
    BT_SCOPE_ALL = 0xfu,
};

typedef enum bt_store_kind {
    BT_STORE_SQLITE,
    BT_STORE_POSTGRES,
} bt_store_kind;

/* ---- sections. Unset strings are NULL; durations are milliseconds. ---- */

/* A name -> integer limit (concurrency.per_agent etc.). */
typedef struct bt_config_limit {
    char *name;
    int64_t value;
} bt_config_limit;
typedef struct bt_config_limits {
    bt_config_limit *items;
    size_t len, cap;
} bt_config_limits;

typedef struct bt_config_token {
    char *name;     /* label for logs and audit; optional */
    char *token;    /* secret */
    unsigned scope; /* BT_SCOPE_* bits; default read */
} bt_config_token;
typedef struct bt_config_tokens {
    bt_config_token *items;
    size_t len, cap;
} bt_config_tokens;

/* A request/token rate limit over a sliding window (agents and providers): no more
 * than `requests` calls and `tokens` tokens in any window of length per_ms. */
typedef struct bt_config_rate_limit {
    int64_t requests; /* 0 = unlimited */
    int64_t tokens;   /* tokens in + out; 0 = unlimited */
    int64_t per_ms;   /* the window; 1m */
} bt_config_rate_limit;

/* The API's per-token limiter (seed 004 TokenBucketRateLimiter): a classic token bucket
 * holding `burst` requests, refilled at `requests` per per_ms. */
typedef struct bt_config_api_rate_limit {
    int64_t requests; /* 0 = the API is not rate-limited */
    int64_t per_ms;   /* 1m */
    int64_t burst;    /* bucket size; 0 = requests */
} bt_config_api_rate_limit;

typedef struct bt_config_server {
    char *host;   /* 127.0.0.1 | $ORCHESTRATOR_HOST */
    int64_t port; /* 8080 | $ORCHESTRATOR_PORT; 0 picks a free port */
    bt_config_tokens tokens;
    char *jwt_secret;                    /* secret | $JWT_SECRET */
    int64_t body_limit;                  /* bytes, 1 MiB */
    int64_t request_timeout_ms;          /* 30s */
    int metrics_public;                  /* 1: /metrics needs no token */
    bt_config_api_rate_limit rate_limit; /* per token (per client address without auth) */
} bt_config_server;

typedef struct bt_config_store {
    char *url;          /* sqlite:./var/baton.db | $DATABASE_URL; password part is secret */
    bt_store_kind kind; /* derived from url */
    char *sqlite_path;  /* derived: the PATH of sqlite:PATH, else NULL */
} bt_config_store;

typedef struct bt_config_price {
    double input;  /* USD per million input tokens */
    double output; /* USD per million output tokens */
} bt_config_price;

/* One entry of the per-model price table (`prices:`), used when an agent has no price
 * of its own. */
typedef struct bt_config_model_price {
    char *name;    /* the model name as the agent reports or is configured with it */
    double input;  /* USD per million input tokens */
    double output; /* USD per million output tokens */
} bt_config_model_price;
typedef struct bt_config_prices {
    bt_config_model_price *items;
    size_t len, cap;
} bt_config_prices;

/* A circuit breaker's settings; in an agent's entry 0 = the resilience section's. */
typedef struct bt_config_breaker {
    int64_t failure_threshold;   /* consecutive failures that open it */
    int64_t recovery_timeout_ms; /* open this long, then one probe call (half-open) */
} bt_config_breaker;

/* Where an agent's model runs, for offline mode. */
typedef enum bt_agent_locality {
    BT_LOCALITY_AUTO = 0, /* derived: ollama, replay, loopback/private base_url = local */
    BT_LOCALITY_LOCAL,
    BT_LOCALITY_REMOTE,
} bt_agent_locality;

typedef struct bt_config_agent {
    char *name; /* the map key */
    bt_agent_type type;
    char *preset;             /* cli: claude|codex|gemini|copilot|aider|opencode */
    char *command;            /* cli: program (overrides the preset's) */
    bt_strvec args;           /* cli: extra arguments */
    char *base_url;           /* http types; default per type */
    char *model;              /* required for openai/anthropic/ollama */
    char *api_key;            /* secret; falls back per type (see docs) */
    char *role;               /* free text: implementation, review, ... */
    bt_strvec fallback;       /* agent names tried on transient failure, in order */
    int64_t timeout_ms;       /* 30m */
    int64_t stall_timeout_ms; /* 5m without output counts as stalled */
    bt_strvec env;            /* "KEY=VALUE" added to a CLI agent's environment */
    bt_config_price price;
    int64_t max_output; /* tokens; 0 = provider default */
    char *file;         /* replay: recording to play back */
    double speed;       /* replay: 1 = recorded pace, 10 = ten times faster, 0 = instant */
    char *provider;     /* whose limits apply; NULL = derived from type/preset (see
                         * docs/resilience.md: claude -> anthropic, codex -> openai...) */
    int local;          /* bt_agent_locality */
    bt_config_rate_limit rate_limit;
    bt_config_breaker circuit_breaker;
} bt_config_agent;
typedef struct bt_config_agents {
    bt_config_agent *items;
    size_t len, cap;
} bt_config_agents;

/* A provider (an account whose limits several agents share). */
typedef struct bt_config_provider {
    char *name; /* the map key: openai, anthropic, google, github, ollama... */
    int64_t requests, tokens, per_ms; /* as bt_config_rate_limit */
    char *probe_url; /* the offline detector's probe; NULL = the built-in for the name */
} bt_config_provider;
typedef struct bt_config_providers {
    bt_config_provider *items;
    size_t len, cap;
} bt_config_providers;

typedef struct bt_config_resilience {
    bt_config_breaker circuit_breaker; /* defaults for every agent: 5, 60s */
    int64_t stats_window;              /* calls per agent kept for statistics: 100 */
    int64_t stats_max_age_ms;          /* older calls are not counted: 24h */
} bt_config_resilience;

typedef enum bt_offline_mode {
    BT_OFFLINE_AUTO = 0, /* probes decide */
    BT_OFFLINE_ON,       /* forced offline (--offline, $BATON_OFFLINE=1) */
    BT_OFFLINE_OFF,      /* never offline */
} bt_offline_mode;

typedef struct bt_config_offline {
    int mode;                  /* bt_offline_mode; auto | $BATON_OFFLINE */
    int64_t probe_interval_ms; /* 60s; 0 = probe only at start-up */
    int64_t probe_timeout_ms;  /* 5s */
} bt_config_offline;

typedef struct bt_config_planner {
    char *agent;             /* the agent asked for a plan; NULL = the healthiest */
    double min_success_rate; /* agents below it are never planned: 0.6 (seed 004) */
    int64_t min_calls;       /* fewer calls than this: rate unknown, agent eligible: 3 */
    int64_t max_steps;       /* 8 */
    int64_t timeout_ms;      /* the planning call: 5m */
} bt_config_planner;

typedef enum bt_lock_conflict {
    BT_LOCK_WAIT = 0, /* the step waits (visible) for the paths */
    BT_LOCK_FAIL,     /* the step fails at once */
} bt_lock_conflict;

typedef struct bt_config_locks {
    int on_conflict;         /* bt_lock_conflict; wait */
    int64_t wait_timeout_ms; /* give up waiting after: 30m */
    int64_t ttl_ms;          /* a held lock expires unless renewed: 10m */
} bt_config_locks;

typedef struct bt_config_project {
    char *id; /* as written (map key or the <ID> of PROJECT_REPO_<ID>) */
    char *repo;
    char *team_contribution_rules_url;
    char *architecture_rules_url;
    char *prd_url;
    char *ard_url;
    char *workflow;   /* default workflow for this project's items; NULL = server default */
    bt_strvec labels; /* tracker labels that route an item to this project */
} bt_config_project;
typedef struct bt_config_projects {
    bt_config_project *items;
    size_t len, cap;
} bt_config_projects;

typedef struct bt_config_github {
    char *token;              /* secret | $GITHUB_TOKEN */
    char *repo;               /* owner/name | $GITHUB_REPO */
    bt_strvec labels;         /* [ai-ready] | $GITHUB_ISSUE_LABELS (comma-separated) */
    int64_t poll_interval_ms; /* 60s | $GITHUB_POLL_INTERVAL */
    char *webhook_secret;     /* secret */
    char *api_url;            /* https://api.github.com */
    char *clone_url;          /* NULL = derived from api_url: https://github.com/OWNER/NAME.git
                               * (GHES: https://HOST/OWNER/NAME.git; else api_url/OWNER/NAME.git) */
    char *label_in_progress;  /* ai-in-progress */
    char *label_completed;    /* ai-completed */
    char *label_failed;       /* ai-failed */
    int pull_requests;        /* true: open a pull request from the pushed branch */
    int draft_pull_requests;  /* false */
    char *base_branch;        /* NULL = the repository's default branch */
    int close_issues;         /* false: close the issue when its work completed */
    int commands;             /* true: "/baton retry" comments (webhooks) */
} bt_config_github;

typedef struct bt_config_jira {
    char *url;              /* $JIRA_URL */
    char *username;         /* $JIRA_USERNAME */
    char *api_token;        /* secret | $JIRA_API_TOKEN */
    int webhook_enabled;    /* false | $WEBHOOK_ENABLED */
    char *webhook_base_url; /* $WEBHOOK_BASE_URL */
    char *webhook_secret;   /* secret */
} bt_config_jira;

typedef struct bt_config_azure {
    char *org_url; /* $AZURE_DEVOPS_ORG_URL */
    char *pat;     /* secret | $AZURE_DEVOPS_PAT */
    char *project;
} bt_config_azure;

typedef struct bt_config_trackers {
    bt_config_github github;
    bt_config_jira jira;
    bt_config_azure azure;
} bt_config_trackers;

typedef struct bt_config_hooks {
    char *after_create, *before_run, *after_run, *before_remove; /* shell snippets */
} bt_config_hooks;

typedef struct bt_config_workspace {
    char *root;              /* ./var/workspaces */
    bt_ws_strategy strategy; /* clone */
    char *branch_template;   /* ai-feature/issue-{{number}} */
    bt_config_hooks hooks;
    int64_t hook_timeout_ms; /* 5m */
    int64_t retention_ms;    /* 7d: how long a finished workspace is kept; 0 = remove */
} bt_config_workspace;

typedef struct bt_config_queue {
    int64_t max_attempts;    /* 2 */
    int64_t backoff_base_ms; /* 10s */
    int64_t backoff_max_ms;  /* 10m */
    int64_t lease_ms;        /* 5m */
} bt_config_queue;

typedef struct bt_config_concurrency {
    int64_t global; /* 4 */
    int64_t local;  /* 4: runs `baton serve` executes itself (its local executor); 0 = none,
                     * every task goes to remote workers through /work/next */
    bt_config_limits per_agent, per_state, per_project;
} bt_config_concurrency;

typedef struct bt_config_mcp_server {
    char *name;
    char *command; /* stdio transport ... */
    bt_strvec args;
    bt_strvec env;     /* "KEY=VALUE" */
    char *url;         /* ... or Streamable HTTP */
    char *tool_filter; /* POSIX extended regex; only matching tools are offered */
} bt_config_mcp_server;
typedef struct bt_config_mcp_servers {
    bt_config_mcp_server *items;
    size_t len, cap;
} bt_config_mcp_servers;

typedef struct bt_config_smtp {
    char *host;     /* $SMTP_HOST */
    int64_t port;   /* 587 | $SMTP_PORT */
    char *user;     /* $SMTP_USER */
    char *password; /* secret | $SMTP_PASSWORD */
    char *from;     /* default: user */
    bt_strvec to;   /* $TARGET_EMAIL (comma-separated) */
} bt_config_smtp;

typedef struct bt_config_notify {
    bt_config_smtp smtp;
    char *slack_webhook_url;   /* secret (the URL is the credential) */
    char *discord_webhook_url; /* secret */
} bt_config_notify;

typedef struct bt_config_budgets {
    double per_task, per_project, per_day; /* USD; 0 = unlimited */
} bt_config_budgets;

typedef struct bt_config_log {
    bt_config_log_level level; /* info | $LOG_LEVEL (any case; "warning" = warn) */
    char *file;                /* NULL = stderr */
} bt_config_log;

typedef struct bt_config_worker {
    char *id;                 /* $WORKER_ID; NULL = hostname-pid, chosen by the worker */
    char *server_url;         /* $ORCHESTRATOR_URL */
    char *token;              /* secret */
    int64_t poll_interval_ms; /* 30s | $WORKER_POLL_INTERVAL */
    char *workspace_dir;      /* $WORKSPACE_DIR; default workspace.root */
    char *command;            /* $WORKER_COMMAND: agent command line run per item (sh -c) */
} bt_config_worker;

/* The orchestrator's view of its seed 002 worker fleet. */
typedef struct bt_config_workers {
    bt_strvec ips;                    /* $WORKER_IPS (comma-separated) */
    char *ssh_key;                    /* $WORKER_SSH_KEY (a path, not a secret) */
    char *ssh_user;                   /* root | $WORKER_SSH_USER */
    int64_t health_check_interval_ms; /* 30s | $WORKER_HEALTH_CHECK_INTERVAL */
    int64_t offline_after_ms;         /* 2m without a heartbeat */
} bt_config_workers;

typedef struct bt_config_llm {
    char *model;    /* $LLM_MODEL */
    char *api_key;  /* secret | $LLM_API_KEY */
    char *base_url; /* $LLM_BASE_URL */
} bt_config_llm;

typedef struct bt_config_confluence {
    char *url, *username;
    char *api_token; /* secret */
} bt_config_confluence;

typedef struct bt_config_openhands {
    char *runtime_api_url;
    char *runtime_api_key; /* secret */
    char *server_image;    /* ghcr.io/openhands/agent-server:latest-python */
} bt_config_openhands;

/* Provider keys agents fall back to (seed 001/002/003 variables). */
typedef struct bt_config_api_keys {
    char *openai;    /* secret | $OPENAI_API_KEY */
    char *anthropic; /* secret | $ANTHROPIC_API_KEY, $CLAUDE_API_KEY */
    char *gemini;    /* secret | $GEMINI_API_KEY */
    char *grok;      /* secret | $GROK_API_KEY */
} bt_config_api_keys;

typedef struct bt_config {
    char *path; /* file it came from; NULL = defaults + environment */
    bt_config_server server;
    bt_config_store store;
    bt_config_agents agents;
    bt_config_providers providers;
    bt_config_prices prices;
    char *workflows_dir; /* workflows */
    char *personas_dir;  /* personas */
    bt_config_projects projects;
    bt_config_trackers trackers;
    bt_config_workspace workspace;
    bt_config_queue queue;
    bt_config_concurrency concurrency;
    bt_config_mcp_servers mcp_servers;
    bt_config_notify notify;
    bt_config_budgets budgets;
    bt_config_resilience resilience;
    bt_config_offline offline;
    bt_config_planner planner;
    bt_config_locks locks;
    bt_config_log log;
    bt_config_worker worker;
    bt_config_workers workers;
    bt_config_llm llm;
    bt_config_confluence confluence;
    bt_config_openhands openhands;
    bt_config_api_keys api_keys;
} bt_config;

/* ---- problems ---- */

typedef struct bt_config_problem {
    char *file; /* the config path, or "environment" for a bad environment variable */
    int line;   /* 1-based; 0 when not in a file */
    int column;
    char *key;     /* dotted key, e.g. "agents.claude.timeout"; may be NULL */
    char *message; /* what is wrong */
    char *hint;    /* how to fix it; may be NULL */
} bt_config_problem;

typedef struct bt_config_problems {
    bt_config_problem *items; /* sorted by file, line, column */
    size_t len, cap;
} bt_config_problems;

void bt_config_problems_free(bt_config_problems *p);
/* Append one problem (every string copied; key and hint may be NULL). probs NULL is a
 * no-op. Used by other validators (workflows) that report in the same format. */
void bt_config_problem_add(bt_config_problems *probs, const char *file, int line, int col,
                           const char *key, const char *msg, const char *hint);
/* Print each problem as "FILE:LINE:COL: error: MESSAGE (fix: HINT)", one per line (the
 * format editors and CI annotators understand). out is borrowed. */
void bt_config_problems_print(const bt_config_problems *p, FILE *out);

/* ---- loading ---- */

/* The file to load: explicit (e.g. --config) if non-NULL, else $BATON_CONFIG from envp,
 * else "baton.yaml" when it exists in the working directory, else NULL. Returns a
 * borrowed pointer (into explicit, envp or a literal). */
const char *bt_config_find_path(const char *explicit_path, char *const *envp);

/* Load and validate. path NULL = no file (defaults + environment). envp is a
 * NULL-terminated "NAME=VALUE" array (e.g. environ), or NULL for an empty environment.
 * Every problem found is appended to problems (may be NULL). Returns 0 and a new config
 * in *out (free with bt_config_free) when there are none; otherwise *out is NULL and the
 * result is BT_EINVAL (validation problems), BT_ENOENT (file missing) or BT_EPARSE
 * (YAML syntax), with err summarising and the details in problems. */
int bt_config_load(const char *path, char *const *envp, bt_config **out,
                   bt_config_problems *problems, bt_error *err);

/* As bt_config_load, from a buffer; name is used in positions. */
int bt_config_load_string(const char *name, const char *buf, size_t len, char *const *envp,
                          bt_config **out, bt_config_problems *problems, bt_error *err);

void bt_config_free(bt_config *cfg);

/* ---- use ---- */

/* The effective configuration as JSON (a new reference). With mask_secrets every secret
 * that is set reads "***" (a store URL keeps everything but its password). Durations
 * are rendered like "30s", sizes in bytes. */
json_t *bt_config_to_json(const bt_config *cfg, int mask_secrets);

/* Call fn with every non-empty secret value (borrowed, valid during the call). */
void bt_config_each_secret(const bt_config *cfg, void (*fn)(const char *value, void *ud), void *ud);

/* Find an agent by name; NULL when there is none. Borrowed. */
const bt_config_agent *bt_config_agent_find(const bt_config *cfg, const char *name);
/* The price table entry for model (exact name, then the longest entry that is a prefix
 * of it, so "claude-sonnet-4" prices "claude-sonnet-4-5-20250929"); NULL when none. */
const bt_config_model_price *bt_config_price_find(const bt_config *cfg, const char *model);

/* Resolve a project identifier (as found in an issue title "[web-front]" or a label;
 * matched case-insensitively with '-' and '_' equivalent). On success *out points at
 * the project (borrowed). BT_ENOENT when the project is not configured at all;
 * BT_EINVAL when it lacks its repository or, with require_docs, one of the four
 * document URLs seed 000 needs. The message names every missing setting with both
 * ways to provide it, e.g. "project BACKEND has no repository: set
 * projects.BACKEND.repo in baton.yaml or PROJECT_REPO_BACKEND". */
int bt_config_project_resolve(const bt_config *cfg, const char *id, int require_docs,
                              const bt_config_project **out, bt_error *err);

/* The environment-variable form of a project id: upper-case, '-' -> '_'. Appends to
 * a caller buffer of size n; returns buf. */
char *bt_config_project_env_id(const char *id, char *buf, size_t n);

/* Every key baton understands, as a new JSON array of
 * {"key":"server.port","type":"integer","default":"8080"|null,"env":["ORCHESTRATOR_PORT"],
 *  "secret":bool,"values":[...]|null}; map entries appear as "agents.<name>.timeout",
 * per-project variables as "PROJECT_REPO_<ID>". Used by docs checks and tooling. */
json_t *bt_config_schema(void);

/* Names of enum values (for display). Never NULL. */
const char *bt_config_agent_type_name(bt_agent_type t);
const char *bt_config_log_level_name(bt_config_log_level l);

#endif
