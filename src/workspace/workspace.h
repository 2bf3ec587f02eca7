/*
 * workspace.h - the workspace manager (DESIGN.md §2a step 3, docs/github.md): one
 * directory per work item under workspace.root, named by the item's key (its identifier
 * sanitised: anything outside [A-Za-z0-9._-] becomes '_'; a key starting with '.' or
 * empty gets a leading '_'), always inside the root, checked after resolving symlinks.
 *
 *   bt_workspaces *w;
 *   bt_workspaces_opts o = {.loop = loop, .cfg = &cfg->workspace, .log = log};
 *   bt_workspaces_new(&o, &w, &err);
 *   bt_workspace_spec s = {.identifier = "acme/app#42", .repo = url,
 *                          .branch = "ai-feature/issue-42", .git_env = auth};
 *   bt_workspaces_prepare(w, &s, on_ready, me);   // clone or reuse, branch, hooks
 *   ... run steps in info->path ...
 *   bt_workspaces_after_run(w, path, NULL, NULL, NULL);
 *   bt_workspaces_remove(w, "acme/app#42", NULL, on_removed, me);
 *
 * Population (only when the directory does not exist yet; an existing one is reused
 * as it is, across retries):
 *   - no repo: an empty directory;
 *   - strategy clone: `git clone <repo> <path>`;
 *   - strategy worktree: a cached bare clone of the repo under <root>/.mirrors/<key of
 *     the repo URL without credentials>.git (created on first use, `git fetch`ed before
 *     every new workspace; fetches of one mirror are serialised), then
 *     `git worktree add -B <branch> <path> <base>`. The mirror's origin is the repo URL
 *     with fetch refspec +refs/heads/...:refs/remotes/origin/... (every branch) (not --mirror,
 * whose push semantics would refuse a single branch), so `git push origin <branch>` from the
 *     worktree reaches the repo.
 *   then, when spec.branch is set, `git checkout -B <branch> [origin/<base>]`; then the
 *   after_create hook. Any failure there removes the half-made directory and fails.
 * Then, for every prepare (new or reused), the before_run hook.
 *
 * Hooks (workspace.hooks, Symphony §9.4): `sh -lc <script>` with the workspace as cwd,
 * each bounded by workspace.hook_timeout (process group killed at the timeout).
 * after_create and before_run are fatal (their failure or timeout fails the prepare,
 * with the hook's name, exit status and the tail of its output in the message);
 * after_run and before_remove are logged and ignored. Their environment: this
 * process's, plus BATON_WORKSPACE, BATON_WORKSPACE_KEY, BATON_HOOK and spec.hook_env.
 *
 * Credentials: spec.git_env (e.g. from bt_git_auth_env, workspace/git.h) goes to git
 * processes only, never to hooks, and is never written to the workspace's .git/config:
 * the clone's origin is the plain repo URL. Output of git and hooks that reaches a
 * message or the log passes through the log's redaction (bt_log_redact).
 *
 * All callbacks run exactly once, from a loop callback (never inside the call that
 * started the operation).
 */
#ifndef BT_WORKSPACE_H
#define BT_WORKSPACE_H

#include "base/error.h"
#include "base/strbuf.h"

#include <stdint.h>
#include <uv.h>

typedef struct bt_config_workspace bt_config_workspace;
typedef struct bt_log bt_log;
typedef struct bt_workspaces bt_workspaces;

typedef struct bt_workspaces_opts {
    uv_loop_t *loop;                /* required */
    const bt_config_workspace *cfg; /* required, borrowed (must outlive the manager) */
    bt_log *log;                    /* may be NULL; borrowed */
} bt_workspaces_opts;

/* Creates the root (mkdir -p) and resolves it to an absolute real path. */
int bt_workspaces_new(const bt_workspaces_opts *o, bt_workspaces **out, bt_error *err);
/* Cancels running operations (their callbacks run with BT_ECANCELED first, from the
 * loop); call bt_workspaces_free only after the loop has run those callbacks (or when
 * nothing was in flight). */
void bt_workspaces_cancel_all(bt_workspaces *w);
void bt_workspaces_free(bt_workspaces *w);
/* Operations in flight (for shutdown). */
int bt_workspaces_busy(const bt_workspaces *w);

/* The absolute, resolved root. Borrowed. */
const char *bt_workspaces_root(const bt_workspaces *w);

/* The key of an identifier (see the top of this file). Appends to out. */
void bt_workspace_key(const char *identifier, bt_strbuf *out);

/* An item's branch from workspace.branch_template (NULL or "" = "ai-feature/issue-{{number}}"),
 * appended to out. Placeholders ({{ name }}, spaces allowed): {{number}} (number, else the
 * identifier), {{identifier}}, {{key}} (the workspace key) and {{id}}; each value is made
 * safe for a ref name (runs of characters outside [A-Za-z0-9._-] become one '-'). number
 * and identifier may be NULL. BT_EINVAL naming the problem for an unknown placeholder, an
 * unclosed "{{", or a result git would refuse (empty, "..", "//", a leading '/' or '.', a
 * trailing '/' or ".lock", characters outside [A-Za-z0-9/._-]). The local pipeline and
 * seed 002's /work/next both use it, so a task's branch has one name. */
int bt_workspace_branch(const char *tmpl, const char *number, const char *identifier,
                        const char *id, bt_strbuf *out, bt_error *err);

/* root/<key>, verified to stay inside the root after resolving symlinks (an existing
 * path that is a symlink leading outside is refused with BT_EPERM, naming it).
 * Appends to out. */
int bt_workspaces_path(const bt_workspaces *w, const char *identifier, bt_strbuf *out,
                       bt_error *err);

typedef struct bt_workspace_spec {
    const char *identifier;      /* required: names the directory */
    const char *repo;            /* URL or local path of the git repository; NULL = plain dir */
    const char *branch;          /* branch to create and check out; NULL = the clone's default */
    const char *base;            /* branch to start from; NULL = the remote's default (HEAD) */
    const char *const *git_env;  /* NULL-terminated "K=V" added for git processes only */
    const char *const *hook_env; /* NULL-terminated "K=V" added for hooks (BATON_TASK_ID...) */
} bt_workspace_spec;             /* everything borrowed for the call (copied) */

typedef struct bt_workspace_info {
    const char *path;   /* absolute path of the workspace */
    const char *key;    /* its key */
    const char *branch; /* checked-out branch (spec.branch, or the clone's), NULL when no git */
    const char *base;   /* the base branch (spec.base, else the remote's default), or NULL */
    int created;        /* 1: this call created it (and after_create ran) */
} bt_workspace_info;    /* borrowed for the callback */

/* rc 0 with info, or negative with err (info NULL). err->msg names the step that
 * failed ("git clone of https://host/o/r.git failed (exit 128): ...", "after_create hook
 * timed out after 5s"). */
typedef void (*bt_workspace_done_fn)(int rc, const bt_error *err, const bt_workspace_info *info,
                                     void *ud);

/* Ensure and prepare (see the top). Returns 0 when started (cb follows), or negative
 * (err set, no callback) for a bad spec or a path outside the root. */
int bt_workspaces_prepare(bt_workspaces *w, const bt_workspace_spec *spec, bt_workspace_done_fn cb,
                          void *ud, bt_error *err);

/* The after_run hook in path (logged, never fails). cb (may be NULL) runs when it is
 * done, with rc 0. */
typedef void (*bt_workspace_cb)(int rc, const bt_error *err, void *ud);
void bt_workspaces_after_run(bt_workspaces *w, const char *path, const char *const *hook_env,
                             bt_workspace_cb cb, void *ud);

/* Remove an item's workspace: before_remove hook (logged) when the directory exists,
 * then `git worktree remove --force` for a worktree (and prune its mirror's record),
 * then the directory. rc 0 also when there was nothing to remove. */
void bt_workspaces_remove(bt_workspaces *w, const char *identifier, const char *const *hook_env,
                          bt_workspace_cb cb, void *ud);

/* Keys of the workspaces present under the root (directories not starting with '.').
 * A new NULL-terminated array of new strings; free with bt_workspaces_list_free. */
char **bt_workspaces_list(const bt_workspaces *w);
void bt_workspaces_list_free(char **keys);

#endif
