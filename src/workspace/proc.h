/*
 * proc.h - run one child process on the loop and collect what it prints: the runner
 * behind workflow shell-command and git-operation steps (and, later, workspace hooks).
 *
 *   const char *argv[] = {"/bin/sh", "-c", "make test", NULL};
 *   bt_proc_opts o = {.argv = argv, .cwd = ws, .timeout_ms = 600000,
 *                     .on_done = done, .ud = me};
 *   bt_proc *p;
 *   if (bt_proc_start(loop, &o, &p, &err) == 0) ... later maybe bt_proc_cancel(p);
 *
 * The child gets its own session and process group (so a timeout or cancel reaches its
 * grandchildren too: SIGTERM to the group, SIGKILL kill_grace_ms later), stdin from
 * /dev/null unless stdin_data is given, stdout and stderr on pipes. Output is delivered
 * as it arrives (on_output, stdout and stderr interleaved in arrival order) and kept up
 * to max_output bytes (the rest is dropped and `truncated` set, with a marker line
 * appended to the kept text). on_done runs exactly once, from a loop callback, after
 * the process has exited and both pipes are closed (or abandoned kill_grace_ms after
 * the exit when a grandchild keeps them open); never inside bt_proc_start or
 * bt_proc_cancel. The bt_proc frees itself after on_done returns.
 */
#ifndef BT_PROC_H
#define BT_PROC_H

#include "base/error.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bt_proc bt_proc;

typedef struct bt_proc_result {
    int exit_code;      /* exit status; -1 when killed by a signal or never started */
    int term_signal;    /* the signal that ended it, else 0 */
    int timed_out;      /* 1: killed because timeout_ms passed */
    int cancelled;      /* 1: killed by bt_proc_cancel */
    const char *output; /* stdout+stderr as kept (NUL-terminated; "" when none) */
    size_t output_len;
    int truncated;       /* 1: more than max_output was printed */
    int64_t duration_ms; /* spawn to exit */
} bt_proc_result;

typedef void (*bt_proc_output_fn)(const char *data, size_t len, int is_stderr, void *ud);
typedef void (*bt_proc_done_fn)(const bt_proc_result *r, void *ud);

typedef struct bt_proc_opts {
    const char *const *argv; /* required: argv[0] is the program (searched in PATH when it
                              * has no '/'); NULL-terminated; copied */
    const char *cwd;         /* NULL = current directory; copied */
    char *const *env;        /* NULL-terminated "K=V"; NULL = inherit this process's */
    const char *stdin_data;  /* written to the child's stdin, then closed; NULL = /dev/null;
                              * copied */
    size_t stdin_len;
    int64_t timeout_ms;          /* 0 = none */
    int64_t kill_grace_ms;       /* SIGTERM -> SIGKILL; 0 = 2000 */
    size_t max_output;           /* 0 = 1 MiB */
    bt_proc_output_fn on_output; /* may be NULL */
    bt_proc_done_fn on_done;     /* required */
    void *ud;
} bt_proc_opts;

/* Start the child. Fails (negative BT_E*, err says what and why: "cannot run git in
 * /x: no such file or directory") when argv is empty, cwd does not exist or the spawn
 * fails; then no callback runs. *out (may be NULL) receives the handle, valid until
 * on_done returns. */
int bt_proc_start(uv_loop_t *loop, const bt_proc_opts *opts, bt_proc **out, bt_error *err);

/* Stop it: SIGTERM to its group, SIGKILL after the grace period. on_done follows with
 * cancelled = 1. Calling it again, or after the exit, does nothing harmful. */
void bt_proc_cancel(bt_proc *p);

#endif
