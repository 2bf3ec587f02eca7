/*
 * repo_id.h - the identity of the repository a directory belongs to (file-level locks
 * compare it): "git:<origin URL without credentials, trailing / or .git>" when the
 * directory is a git repository (or worktree) with an origin remote, else
 * "dir:<real path>". Reads files only; never runs git.
 */
#ifndef BT_REPO_ID_H
#define BT_REPO_ID_H

/* A new string (caller frees); never NULL. */
char *bt_repo_identity(const char *dir);

#endif
