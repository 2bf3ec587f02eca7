/*
 * testutil.c - scratch directories and files for unit tests (see testutil.h).
 */
#include "testutil.h"

#include "base/mem.h"
#include "base/path.h"
#include "base/strbuf.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *bt_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/baton-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(sb.buf)) {
        perror("mkdtemp");
        abort();
    }
    return bt_strbuf_detach(&sb, NULL);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

void bt_test_rmdir(char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

char *bt_test_write(const char *dir, const char *name, const char *contents)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/%s", dir, name);
    char *slash = strrchr(sb.buf, '/');
    *slash = '\0';
    bt_path_mkdirs(sb.buf, 0755, NULL);
    *slash = '/';
    FILE *f = fopen(sb.buf, "w");
    if (!f) {
        perror(sb.buf);
        abort();
    }
    fputs(contents, f);
    fclose(f);
    return bt_strbuf_detach(&sb, NULL);
}
