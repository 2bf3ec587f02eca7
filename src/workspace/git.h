/*
 * git.h - the git operations baton itself performs in a workspace (docs/github.md):
 * credentials handed to git through the environment only, and the completion stage's
 * commit-and-push.
 *
 * Credentials never appear in argv (visible in ps), in the workspace's .git/config, in
 * remote URLs, or in output: bt_git_auth_env gives git an `http.<prefix>.extraHeader`
 * through GIT_CONFIG_COUNT / GIT_CONFIG_KEY_n / GIT_CONFIG_VALUE_n (git >= 2.31), scoped
 * to the URL prefix so the token is sent to that host only, with GIT_TERMINAL_PROMPT=0
 * and GIT_ASKPASS=/bin/false so a missing or wrong token fails at once instead of
 * waiting for a prompt.
 */
#ifndef BT_GIT_H
#define BT_GIT_H

#include "base/error.h"
#include "base/vec.h"

#include <stdint.h>
#include <uv.h>

typedef struct bt_log bt_log;

/* Append to env (each a new "K=V" string) the variables that make git authenticate
 * to URLs starting with url_prefix (e.g. "https://github.com/") as user with token:
 * "Authorization: Basic base64(user:token)". user NULL = "x-access-token" (GitHub's
 * convention for tokens). A NULL or empty token appends only GIT_TERMINAL_PROMPT=0 and
 * GIT_ASKPASS. BT_EINVAL for a prefix that is not http(s)://. */
int bt_git_auth_env(const char *url_prefix, const char *user, const char *token, bt_strvec *env,
                    bt_error *err);

/* The URL with any user:password@ removed (for logs, identities and messages). New. */
char *bt_git_url_strip_credentials(const char *url);

/* text with credentials masked, for messages and logs: the credentials env carries for
 * git (the Basic credential of an http.extraHeader set by bt_git_auth_env, in base64 and
 * decoded, and its password part), then bt_log_redact (log may be NULL; env may be
 * NULL). A new string (caller frees). */
char *bt_git_redact(const bt_log *log, const char *const *env, const char *text);

typedef struct bt_git_push_opts {
    const char *path;         /* workspace (required) */
    const char *message;      /* commit message (required; first line = subject) */
    const char *branch;       /* branch to push (required) */
    const char *remote;       /* NULL = "origin" */
    const char *author_name;  /* NULL = "baton" */
    const char *author_email; /* NULL = "baton@localhost" */
    const char *const *env;   /* extra "K=V" for git (bt_git_auth_env); borrowed */
    int64_t timeout_ms;       /* whole operation; 0 = 5 min */
    bt_log *log;              /* output is redacted through it (may be NULL) */
} bt_git_push_opts;           /* borrowed for the call (copied) */

typedef struct bt_git_push_result {
    const char *commit; /* the new commit's sha, or NULL when there was nothing to commit */
    const char *head;   /* HEAD's sha after the operation (the pushed one) */
    int pushed;         /* 1: branch pushed (also when only earlier commits were new) */
    int ahead;          /* commits on the branch that are not on the remote's base before
                         * the push (0 = the branch has nothing to offer: no PR) */
    const char *output; /* redacted git output (for the step/log) */
} bt_git_push_result;   /* borrowed for the callback */

typedef void (*bt_git_push_fn)(int rc, const bt_error *err, const bt_git_push_result *r, void *ud);

/* In path: `git add -A`; commit everything (when anything changed) with message and
 * author; then `git push <remote> HEAD:refs/heads/<branch>` (force-with-lease not
 * needed: the branch is ours). Counts ahead against refs/remotes/<remote>/HEAD's target
 * (else the default branch). rc < 0 (err names the git command, its exit status and
 * the redacted tail of its output) when any git command fails; a failed push is
 * BT_EIO (transient), a failed commit BT_EINVAL. cb runs exactly once from a loop
 * callback. */
int bt_git_commit_push(uv_loop_t *loop, const bt_git_push_opts *o, bt_git_push_fn cb, void *ud,
                       bt_error *err);

#endif
