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
#include <sys/types.h>

/* Create a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *bt_test_tmpdir(const char *tag);
/* rm -rf the directory and free the path. */
void bt_test_rmdir(char *path);
/* Write contents to dir/name (creating parents); returns a malloc'd full path. */
char *bt_test_write(const char *dir, const char *name, const char *contents);

/* A fake server from tests/fakes (Python) as a child process: started with
 * `--port 0 --exit-on-stdin-eof`, it prints "PORT n" first. */
typedef struct bt_test_fake {
    pid_t pid;
    int to_child; /* its stdin: closing it makes the fake exit even if a kill is lost */
    int port;
    char base[64]; /* "http://127.0.0.1:PORT" */
} bt_test_fake;
/* Start tests/fakes/<script> (under $BATON_SOURCE_DIR); fails the test when it does not
 * come up. */
void bt_test_fake_start(bt_test_fake *f, const char *script);
/* Stop it and wait for it. */
void bt_test_fake_stop(bt_test_fake *f);

#endif
