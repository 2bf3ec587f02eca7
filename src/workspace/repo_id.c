/*
 * repo_id.c - which repository a working directory belongs to, as one string: two
 * workspaces cloned from the same remote get the same identity, so file-level locks
 * (docs/resilience.md) taken in one conflict with the other.
 *
 * The identity is "git:" + the `origin` remote's URL read from the repository's
 * config file (no git process: this runs on the loop), without credentials and
 * without a trailing ".git" or "/"; else "dir:" + the directory's real path.
 * A worktree's `.git` file ("gitdir: X") is followed, and X/commondir when present.
 */
#include "workspace/repo_id.h"

#include "base/mem.h"
#include "base/strbuf.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *read_small(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    bt_strbuf sb = BT_STRBUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && sb.len < (1u << 20))
        bt_strbuf_add(&sb, buf, n);
    fclose(f);
    return bt_strbuf_detach(&sb, NULL);
}

static void rstrip(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
}

/* The git directory holding the config of the repository at dir, or NULL. */
static char *git_common_dir(const char *dir)
{
    bt_strbuf p = BT_STRBUF_INIT;
    bt_strbuf_addf(&p, "%s/.git", dir);
    struct stat sbuf;
    if (stat(bt_strbuf_cstr(&p), &sbuf) < 0) {
        bt_strbuf_release(&p);
        return NULL;
    }
    if (S_ISDIR(sbuf.st_mode))
        return bt_strbuf_detach(&p, NULL);
    /* a worktree or submodule: ".git" is a file "gitdir: X" */
    char *txt = read_small(bt_strbuf_cstr(&p));
    bt_strbuf_release(&p);
    if (!txt || strncmp(txt, "gitdir:", 7) != 0) {
        free(txt);
        return NULL;
    }
    char *g = txt + 7;
    while (*g == ' ')
        g++;
    rstrip(g);
    bt_strbuf gd = BT_STRBUF_INIT;
    if (*g == '/')
        bt_strbuf_addstr(&gd, g);
    else
        bt_strbuf_addf(&gd, "%s/%s", dir, g);
    free(txt);
    bt_strbuf cd = BT_STRBUF_INIT;
    bt_strbuf_addf(&cd, "%s/commondir", bt_strbuf_cstr(&gd));
    char *common = read_small(bt_strbuf_cstr(&cd));
    bt_strbuf_release(&cd);
    if (common) {
        rstrip(common);
        bt_strbuf out = BT_STRBUF_INIT;
        if (*common == '/')
            bt_strbuf_addstr(&out, common);
        else
            bt_strbuf_addf(&out, "%s/%s", bt_strbuf_cstr(&gd), common);
        free(common);
        bt_strbuf_release(&gd);
        return bt_strbuf_detach(&out, NULL);
    }
    return bt_strbuf_detach(&gd, NULL);
}

/* url = ... in the [remote "origin"] section of a git config text; a new string. */
static char *origin_url(const char *cfg)
{
    int in_origin = 0;
    for (const char *line = cfg; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        const char *l = line;
        while (n > 0 && (*l == ' ' || *l == '\t'))
            l++, n--;
        if (n > 0 && *l == '[') {
            in_origin = n >= 17 && strncmp(l, "[remote \"origin\"]", 17) == 0;
        } else if (in_origin && n > 3 && strncmp(l, "url", 3) == 0) {
            const char *v = l + 3;
            while (v < l + n && (*v == ' ' || *v == '\t'))
                v++;
            if (v < l + n && *v == '=') {
                v++;
                while (v < l + n && (*v == ' ' || *v == '\t'))
                    v++;
                char *u = bt_xstrndup(v, (size_t)(l + n - v));
                rstrip(u);
                return u;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

/* Without "user:password@", a trailing "/" or ".git". */
static char *normalise_url(const char *u)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    const char *scheme = strstr(u, "://");
    const char *rest = u;
    if (scheme) {
        bt_strbuf_add(&sb, u, (size_t)(scheme + 3 - u));
        rest = scheme + 3;
        const char *at = strchr(rest, '@');
        const char *slash = strchr(rest, '/');
        if (at && (!slash || at < slash))
            rest = at + 1;
    }
    bt_strbuf_addstr(&sb, rest);
    while (sb.len > 0 && sb.buf[sb.len - 1] == '/')
        bt_strbuf_setlen(&sb, sb.len - 1);
    if (sb.len > 4 && strcmp(sb.buf + sb.len - 4, ".git") == 0)
        bt_strbuf_setlen(&sb, sb.len - 4);
    return bt_strbuf_detach(&sb, NULL);
}

char *bt_repo_identity(const char *dir)
{
    char *gd = git_common_dir(dir);
    if (gd) {
        bt_strbuf cp = BT_STRBUF_INIT;
        bt_strbuf_addf(&cp, "%s/config", gd);
        char *cfg = read_small(bt_strbuf_cstr(&cp));
        bt_strbuf_release(&cp);
        char *url = cfg ? origin_url(cfg) : NULL;
        free(cfg);
        if (url && *url) {
            char *n = normalise_url(url);
            free(url);
            free(gd);
            bt_strbuf id = BT_STRBUF_INIT;
            bt_strbuf_addf(&id, "git:%s", n);
            free(n);
            return bt_strbuf_detach(&id, NULL);
        }
        free(url);
        /* no origin: the repository itself (its common git dir) is the identity */
        char real[PATH_MAX];
        bt_strbuf id = BT_STRBUF_INIT;
        bt_strbuf_addf(&id, "dir:%s", realpath(gd, real) ? real : gd);
        free(gd);
        return bt_strbuf_detach(&id, NULL);
    }
    char real[PATH_MAX];
    bt_strbuf id = BT_STRBUF_INIT;
    bt_strbuf_addf(&id, "dir:%s", realpath(dir, real) ? real : dir);
    return bt_strbuf_detach(&id, NULL);
}
