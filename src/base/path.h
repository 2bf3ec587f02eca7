/*
 * path.h - path handling that never leaves a root.
 *
 * bt_path_join_safe joins a root and an untrusted relative path and refuses, with a
 * message naming the offending input, any result outside the root: absolute paths,
 * ".." that climbs above it, and symlinks (anywhere along the existing prefix) whose
 * target resolves outside it. Workspaces, hook scripts and file locks all go through it.
 */
#ifndef BT_PATH_H
#define BT_PATH_H

#include "base/error.h"
#include "base/strbuf.h"

/* out receives root/rel normalised (no "." or ".." components). */
int bt_path_join_safe(const char *root, const char *rel, bt_strbuf *out, bt_error *err);

/* Map a name to a single safe path component: anything outside [A-Za-z0-9._-] becomes
 * '_', and "." / ".." / "" become "_" too. Appends to out. */
void bt_path_sanitize_component(const char *name, bt_strbuf *out);

/* Lexically normalise an absolute or relative path (collapses //, ., ..). Appends to out.
 * Returns BT_EPERM when a relative path climbs above its start. */
int bt_path_normalize(const char *path, bt_strbuf *out, bt_error *err);

/* mkdir -p with the given mode. */
int bt_path_mkdirs(const char *path, int mode, bt_error *err);

/* Read a whole file (up to max bytes; BT_ETOOBIG beyond). *data is malloc'd and
 * NUL-terminated; the caller frees it. */
int bt_path_read_file(const char *path, size_t max, char **data, size_t *len, bt_error *err);

#endif
