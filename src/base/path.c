/*
 * path.c - root-confined path joining, sanitising and small file helpers (see path.h).
 */
#include "base/path.h"

#include "base/mem.h"
#include "base/vec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int bt_path_normalize(const char *path, bt_strbuf *out, bt_error *err)
{
    int absolute = path[0] == '/';
    BT_VEC(const char *) parts = {0};
    BT_VEC(size_t) lens = {0};
    const char *p = path;
    int rc = 0;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (parts.len) {
                parts.len--;
                lens.len--;
            } else if (!absolute) {
                rc =
                    bt_errorf(err, BT_EPERM, "path '%s' climbs above its starting directory", path);
                goto out;
            }
        } else {
            bt_vec_push(&parts, p);
            bt_vec_push(&lens, n);
        }
        p += n;
    }
    if (absolute)
        bt_strbuf_addch(out, '/');
    for (size_t i = 0; i < parts.len; i++) {
        if (i)
            bt_strbuf_addch(out, '/');
        bt_strbuf_add(out, parts.items[i], lens.items[i]);
    }
    if (!absolute && parts.len == 0)
        bt_strbuf_addch(out, '.');
out:
    bt_vec_free(&parts);
    bt_vec_free(&lens);
    return rc;
}

static int inside(const char *root, const char *path)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return strncmp(root, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int bt_path_join_safe(const char *root, const char *rel, bt_strbuf *out, bt_error *err)
{
    if (!rel || !*rel)
        return bt_errorf(err, BT_EINVAL, "empty path");
    if (rel[0] == '/')
        return bt_errorf(err, BT_EPERM, "path '%s' is absolute; a path relative to %s is needed",
                         rel, root);
    if (memchr(rel, '\0', strlen(rel) + 1) != rel + strlen(rel) || strchr(rel, '\n'))
        return bt_errorf(err, BT_EINVAL, "path contains control characters");

    char real_root[PATH_MAX];
    if (!realpath(root, real_root))
        return bt_errorf(err, BT_ENOENT, "root directory %s: %s", root, strerror(errno));

    bt_strbuf norm = BT_STRBUF_INIT, joined = BT_STRBUF_INIT;
    int rc = bt_path_normalize(rel, &norm, err);
    if (rc) {
        bt_error_prefix(err, "refusing to leave %s", root);
        goto out;
    }
    bt_strbuf_addstr(&joined, real_root);
    if (strcmp(norm.buf, ".") != 0) {
        if (joined.len > 1)
            bt_strbuf_addch(&joined, '/');
        bt_strbuf_add(&joined, norm.buf, norm.len);
    }

    /* Resolve the longest existing prefix: a symlink in it must stay inside the root. */
    bt_strbuf probe = BT_STRBUF_INIT;
    bt_strbuf_add(&probe, joined.buf, joined.len);
    for (;;) {
        char real[PATH_MAX];
        if (realpath(probe.buf, real)) {
            if (!inside(real_root, real))
                rc = bt_errorf(err, BT_EPERM,
                               "path '%s' resolves through a symlink to %s, outside %s", rel, real,
                               root);
            break;
        }
        char *slash = strrchr(probe.buf, '/');
        if (!slash || (size_t)(slash - probe.buf) < strlen(real_root))
            break;
        bt_strbuf_setlen(&probe, (size_t)(slash - probe.buf));
    }
    bt_strbuf_release(&probe);
    if (!rc)
        bt_strbuf_add(out, joined.buf, joined.len);
out:
    bt_strbuf_release(&norm);
    bt_strbuf_release(&joined);
    return rc;
}

void bt_path_sanitize_component(const char *name, bt_strbuf *out)
{
    size_t start = out->len;
    for (const char *p = name ? name : ""; *p; p++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        bt_strbuf_addch(out, ok ? c : '_');
    }
    const char *s = out->buf ? out->buf + start : "";
    if (out->len == start || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
        bt_strbuf_setlen(out, start);
        bt_strbuf_addch(out, '_');
    }
}

int bt_path_mkdirs(const char *path, int mode, bt_error *err)
{
    char *tmp = bt_xstrdup(path);
    int rc = 0;
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST) {
                rc = bt_errorf(err, BT_EIO, "cannot create directory %s: %s", tmp, strerror(errno));
                break;
            }
            *p = saved;
            if (!saved)
                break;
        }
    }
    free(tmp);
    if (!rc) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = bt_errorf(err, BT_EIO, "%s exists and is not a directory", path);
    }
    return rc;
}

int bt_path_read_file(const char *path, size_t max, char **data, size_t *len, bt_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bt_errorf(err, errno == ENOENT ? BT_ENOENT : BT_EIO, "cannot read %s: %s", path,
                         strerror(errno));
    bt_strbuf sb = BT_STRBUF_INIT;
    int rc = 0;
    for (;;) {
        bt_strbuf_grow(&sb, 65536);
        ssize_t n = read(fd, sb.buf + sb.len, sb.cap - sb.len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = bt_errorf(err, BT_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        bt_strbuf_setlen(&sb, sb.len + (size_t)n);
        if (sb.len > max) {
            rc = bt_errorf(err, BT_ETOOBIG, "%s is larger than %zu bytes", path, max);
            break;
        }
    }
    close(fd);
    if (rc) {
        bt_strbuf_release(&sb);
        return rc;
    }
    *data = bt_strbuf_detach(&sb, len);
    return 0;
}
