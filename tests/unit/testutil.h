/*
 * testutil.h - shared helpers for the cmocka unit tests: include order for cmocka,
 * scratch directories that clean themselves up, and file writing.
 */
#ifndef BT_TESTUTIL_H
#define BT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Create a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *bt_test_tmpdir(const char *tag);
/* rm -rf the directory and free the path. */
void bt_test_rmdir(char *path);
/* Write contents to dir/name (creating parents); returns a malloc'd full path. */
char *bt_test_write(const char *dir, const char *name, const char *contents);

#endif
