/*
 * test_repo_id.c - the repository identity file-level locks compare
 * (src/workspace/repo_id.c), with real git: a clone and a worktree of one remote share
 * an identity, credentials and ".git" never appear in it, a plain directory is its
 * real path.
 */
#include "testutil.h"

#include "base/strbuf.h"
#include "workspace/repo_id.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sh(const char *dir, const char *cmd)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "cd '%s' && (%s) >/dev/null 2>&1", dir, cmd);
    int rc = system(sb.buf);
    if (rc != 0)
        fail_msg("command failed (%d): %s", rc, sb.buf);
    bt_strbuf_release(&sb);
}

static char *sub(const char *dir, const char *name)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/%s", dir, name);
    return bt_strbuf_detach(&sb, NULL);
}

static void test_git_origin(void **state)
{
    (void)state;
    char *d = bt_test_tmpdir("repoid");
    sh(d, "git init -q a && cd a && git remote add origin "
          "https://user:s3cret@github.com/acme/widgets.git");
    char *a = sub(d, "a");
    char *id = bt_repo_identity(a);
    assert_string_equal(id, "git:https://github.com/acme/widgets");
    assert_null(strstr(id, "s3cret"));
    free(id);

    /* a clone of a local bare remote and a worktree of that clone: one identity */
    sh(d, "git init -q --bare remote.git && git clone -q remote.git c1 && git clone -q "
          "remote.git c2 && cd c1 && git -c user.name=t -c user.email=t@t commit -q "
          "--allow-empty -m x && git worktree add -q ../wt -b side");
    char *c1 = sub(d, "c1"), *c2 = sub(d, "c2"), *wt = sub(d, "wt");
    char *i1 = bt_repo_identity(c1), *i2 = bt_repo_identity(c2), *iw = bt_repo_identity(wt);
    assert_string_equal(i1, i2);
    assert_string_equal(i1, iw);
    assert_int_equal(strncmp(i1, "git:", 4), 0);
    assert_null(strstr(i1 + 4, ".git"));
    free(i1), free(i2), free(iw), free(c1), free(c2), free(wt), free(a);
    bt_test_rmdir(d);
}

static void test_plain_dir(void **state)
{
    (void)state;
    char *d = bt_test_tmpdir("repoid");
    char real[PATH_MAX];
    assert_non_null(realpath(d, real));
    char *id = bt_repo_identity(d);
    char want[PATH_MAX + 8];
    snprintf(want, sizeof want, "dir:%s", real);
    assert_string_equal(id, want);
    free(id);
    /* a repository without an origin: itself */
    sh(d, "git init -q solo");
    char *solo = sub(d, "solo");
    id = bt_repo_identity(solo);
    assert_int_equal(strncmp(id, "dir:", 4), 0);
    assert_non_null(strstr(id, "solo/.git"));
    free(id);
    free(solo);
    bt_test_rmdir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_git_origin),
        cmocka_unit_test(test_plain_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
