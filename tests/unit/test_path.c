/*
 * test_path.c - joining untrusted paths under a root never escapes it: "..", absolute
 * paths and symlinks pointing outside are refused; sanitised workspace keys.
 */
#include "testutil.h"

#include "base/path.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_join(void **state)
{
    (void)state;
    char *root = bt_test_tmpdir("path");
    char real[4096];
    assert_non_null(realpath(root, real));
    bt_strbuf out = BT_STRBUF_INIT;
    bt_error err = BT_ERROR_INIT;

    assert_int_equal(bt_path_join_safe(root, "a/./b//c", &out, &err), 0);
    char want[4200];
    snprintf(want, sizeof want, "%s/a/b/c", real);
    assert_string_equal(out.buf, want);

    bt_strbuf_reset(&out);
    assert_int_equal(bt_path_join_safe(root, "a/../b", &out, &err), 0);
    snprintf(want, sizeof want, "%s/b", real);
    assert_string_equal(out.buf, want);

    const char *hostile[] = {"../../etc", "a/../../etc/passwd", "/etc/passwd", ".."};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        bt_strbuf_reset(&out);
        bt_error_clear(&err);
        assert_int_equal(bt_path_join_safe(root, hostile[i], &out, &err), BT_EPERM);
        assert_int_equal(out.len, 0);
        assert_true(strlen(err.msg) > 0);
    }

    /* A symlink inside the root that points outside it is refused, also below it. */
    char *link = NULL;
    {
        bt_strbuf l = BT_STRBUF_INIT;
        bt_strbuf_addf(&l, "%s/escape", root);
        assert_int_equal(symlink("/etc", l.buf), 0);
        link = bt_strbuf_detach(&l, NULL);
    }
    bt_strbuf_reset(&out);
    assert_int_equal(bt_path_join_safe(root, "escape/passwd", &out, &err), BT_EPERM);
    assert_non_null(strstr(err.msg, "symlink"));
    bt_strbuf_reset(&out);
    assert_int_equal(bt_path_join_safe(root, "escape/not/yet/there", &out, &err), BT_EPERM);
    /* a symlink that stays inside is fine */
    bt_strbuf in = BT_STRBUF_INIT;
    bt_strbuf_addf(&in, "%s/inner", root);
    assert_int_equal(mkdir(in.buf, 0755), 0);
    bt_strbuf_addstr(&in, "-link");
    assert_int_equal(symlink("inner", in.buf), 0);
    bt_strbuf_reset(&out);
    assert_int_equal(bt_path_join_safe(root, "inner-link/x", &out, &err), 0);

    free(link);
    bt_strbuf_release(&in);
    bt_strbuf_release(&out);
    bt_test_rmdir(root);
}

static void test_sanitize(void **state)
{
    (void)state;
    bt_strbuf out = BT_STRBUF_INIT;
    bt_path_sanitize_component("owner/repo#123", &out);
    assert_string_equal(out.buf, "owner_repo_123");
    bt_strbuf_reset(&out);
    bt_path_sanitize_component("../../etc", &out);
    assert_string_equal(out.buf, ".._.._etc");
    assert_null(strchr(out.buf, '/'));
    bt_strbuf_reset(&out);
    bt_path_sanitize_component("..", &out);
    assert_string_equal(out.buf, "_");
    bt_strbuf_reset(&out);
    bt_path_sanitize_component("", &out);
    assert_string_equal(out.buf, "_");
    bt_strbuf_release(&out);
}

static void test_read_file(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("read");
    char *f = bt_test_write(dir, "sub/x.txt", "0123456789");
    char *data;
    size_t len;
    assert_int_equal(bt_path_read_file(f, 100, &data, &len, NULL), 0);
    assert_int_equal(len, 10);
    assert_string_equal(data, "0123456789");
    free(data);
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_path_read_file(f, 5, &data, &len, &err), BT_ETOOBIG);
    assert_int_equal(bt_path_read_file("/nonexistent/x", 5, &data, &len, &err), BT_ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/x"));
    free(f);
    bt_test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
