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
#include <jansson.h>
#include <uv.h>

/* Create a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *bt_test_tmpdir(const char *tag);
/* rm -rf the directory and free the path. */
void bt_test_rmdir(char *path);
/* Write contents to dir/name (creating parents); returns a malloc'd full path. */
char *bt_test_write(const char *dir, const char *name, const char *contents);

/* Run loop until it has nothing left, failing the test when that takes longer than
 * watchdog_ms (a hang), then close what it used. */
void bt_test_run_loop(uv_loop_t *loop, int64_t watchdog_ms);

/* Run a shell command (printf format) with system(); fails the test unless it exits 0. */
void bt_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Run it with popen() and return what it printed, trimmed (malloc'd). */
char *bt_test_sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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
/* The same with more arguments after those two (NULL-terminated; may be NULL). */
void bt_test_fake_start_args(bt_test_fake *f, const char *script, const char *const *extra);
/* Stop it and wait for it. */
void bt_test_fake_stop(bt_test_fake *f);

/* A call to a fake's control API (base "http://127.0.0.1:PORT", path "/_control/...",
 * body NULL or JSON text) through http on loop, run until it answers (at most 10 s).
 * Fails the test unless the status is 2xx and the body JSON; returns it (new ref).
 * In testutil_http.c: only tests that link the HTTP layer use it. */
typedef struct bt_http_client bt_http_client;
json_t *bt_test_ctl(uv_loop_t *loop, bt_http_client *http, const char *base, const char *method,
                    const char *path, const char *body);

#endif
