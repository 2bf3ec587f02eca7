/*
 * test_proc.c - the child-process runner on a real libuv loop with real processes: exit
 * codes, stdout and stderr both collected and streamed before on_done, stdin delivered
 * (and /dev/null without it), cwd and env honoured, a missing program or directory
 * refused by bt_proc_start with no callback, timeouts that kill the whole group (a
 * grandchild included, SIGKILL when SIGTERM is ignored), cancel (from a timer and from
 * on_output) with on_done exactly once, output truncation with a marker and bounded memory
 * under a 50 MB flood, and a grandchild holding the pipes that delays on_done only by the
 * grace period. Each test owns its loop and checks that it closes with nothing left over.
 */
#include "testutil.h"

#include "base/error.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "workspace/proc.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAFETY_TIMEOUT_MS 20000 /* a bug fails the test instead of hanging it */

typedef struct run {
    bt_proc *p;
    uv_timer_t cancel_timer;
    int in_call;      /* inside bt_proc_start or bt_proc_cancel */
    int done_calls;   /* on_done count */
    int done_in_call; /* on_done ran inside start/cancel: a contract breach */
    int output_after_done;
    int stdout_calls, stderr_calls;
    size_t streamed; /* bytes seen by on_output */
    int cancel_on_output;
    int cancels_sent;
    bt_strbuf stream; /* what on_output saw, when small */
    bt_proc_result r; /* copy; r.output points at output below */
    char *output;
    int64_t t_start, t_done;
} run;

static void on_output(const char *data, size_t len, int is_stderr, void *ud)
{
    run *rn = ud;
    if (rn->done_calls)
        rn->output_after_done = 1;
    if (is_stderr)
        rn->stderr_calls++;
    else
        rn->stdout_calls++;
    rn->streamed += len;
    if (rn->stream.len < 65536)
        bt_strbuf_add(&rn->stream, data, len);
    if (rn->cancel_on_output && !rn->cancels_sent) {
        rn->cancels_sent++;
        rn->in_call = 1;
        bt_proc_cancel(rn->p);
        bt_proc_cancel(rn->p); /* again: harmless */
        rn->in_call = 0;
    }
}

static void on_done(const bt_proc_result *r, void *ud)
{
    run *rn = ud;
    rn->done_calls++;
    if (rn->in_call)
        rn->done_in_call = 1;
    rn->t_done = bt_time_mono_ms();
    rn->r = *r;
    assert_non_null(r->output);
    assert_int_equal(r->output[r->output_len], '\0');
    rn->output = bt_xmalloc(r->output_len + 1);
    memcpy(rn->output, r->output, r->output_len + 1);
    rn->r.output = rn->output;
    uv_timer_stop(&rn->cancel_timer);
}

static void on_cancel_timer(uv_timer_t *t)
{
    run *rn = t->data;
    if (rn->done_calls)
        return;
    rn->in_call = 1;
    bt_proc_cancel(rn->p);
    bt_proc_cancel(rn->p);
    rn->in_call = 0;
}

/* Run one process to completion on a fresh loop; cancel_after_ms >= 0 cancels it then.
 * Returns bt_proc_start's result. */
static int run_cmd(run *rn, bt_proc_opts o, int64_t cancel_after_ms, bt_error *err)
{
    memset(rn, 0, sizeof *rn);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &rn->cancel_timer);
    rn->cancel_timer.data = rn;
    o.on_output = on_output;
    o.on_done = on_done;
    o.ud = rn;
    if (!o.timeout_ms)
        o.timeout_ms = SAFETY_TIMEOUT_MS;
    rn->t_start = bt_time_mono_ms();
    rn->in_call = 1;
    int rc = bt_proc_start(&loop, &o, &rn->p, err);
    rn->in_call = 0;
    if (rc == 0) {
        assert_non_null(rn->p);
        if (cancel_after_ms >= 0)
            uv_timer_start(&rn->cancel_timer, on_cancel_timer, (uint64_t)cancel_after_ms, 0);
    } else {
        assert_null(rn->p);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&rn->cancel_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0); /* every handle of the runner is closed */
    assert_int_equal(rn->done_calls, rc == 0 ? 1 : 0);
    assert_false(rn->done_in_call);
    assert_false(rn->output_after_done);
    return rc;
}

static void run_release(run *rn)
{
    free(rn->output);
    bt_strbuf_release(&rn->stream);
}

static int64_t elapsed(const run *rn)
{
    return rn->t_done - rn->t_start;
}

/* A killed process may linger a moment as a zombie until init reaps it: both count as gone. */
static int pid_gone(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(path, "r");
        if (!f)
            return 1;
        char buf[512];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && rp[2] == 'Z')
            return 1;
        usleep(10000);
    }
    return 0;
}

static long read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long pid = 0;
    assert_int_equal(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    assert_true(pid > 1);
    return pid;
}

/* Peak resident set of this process, in kB. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    assert_true(kb > 0);
    return kb;
}

/* ---- tests ---- */

static void test_exit_codes(void **state)
{
    (void)state;
    run rn;
    const char *ok[] = {"/bin/sh", "-c", "exit 0", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = ok}, -1, NULL), 0);
    assert_int_equal(rn.r.exit_code, 0);
    assert_int_equal(rn.r.term_signal, 0);
    assert_false(rn.r.timed_out);
    assert_false(rn.r.cancelled);
    assert_false(rn.r.truncated);
    assert_string_equal(rn.r.output, "");
    assert_true(rn.r.duration_ms >= 0);
    run_release(&rn);

    const char *three[] = {"/bin/sh", "-c", "exit 3", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = three}, -1, NULL), 0);
    assert_int_equal(rn.r.exit_code, 3);
    assert_int_equal(rn.r.term_signal, 0);
    run_release(&rn);
}

static void test_stdout_and_stderr(void **state)
{
    (void)state;
    run rn;
    const char *argv[] = {"/bin/sh", "-c", "echo out1; echo err1 >&2; sleep 0.05; echo out2", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = argv}, -1, NULL), 0);
    assert_int_equal(rn.r.exit_code, 0);
    assert_non_null(strstr(rn.r.output, "out1\n"));
    assert_non_null(strstr(rn.r.output, "err1\n"));
    assert_non_null(strstr(rn.r.output, "out2\n"));
    assert_int_equal(rn.r.output_len, strlen("out1\nerr1\nout2\n"));
    /* streamed before on_done (checked in run_cmd), from both pipes, all of it */
    assert_true(rn.stdout_calls > 0);
    assert_true(rn.stderr_calls > 0);
    assert_int_equal(rn.streamed, rn.r.output_len);
    assert_memory_equal(rn.stream.buf, rn.r.output, rn.r.output_len);
    run_release(&rn);
}

static void test_stdin(void **state)
{
    (void)state;
    run rn;
    const char *cat[] = {"cat", NULL};
    const char *text = "hello\nworld";
    assert_int_equal(
        run_cmd(&rn, (bt_proc_opts){.argv = cat, .stdin_data = text, .stdin_len = strlen(text)}, -1,
                NULL),
        0);
    assert_int_equal(rn.r.exit_code, 0);
    assert_string_equal(rn.r.output, text);
    run_release(&rn);

    /* more than a pipe buffer holds: written as the child reads */
    size_t big_len = 1u << 20;
    char *big = bt_xmalloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(run_cmd(&rn,
                             (bt_proc_opts){.argv = cat,
                                            .stdin_data = big,
                                            .stdin_len = big_len,
                                            .max_output = 2 * big_len},
                             -1, NULL),
                     0);
    assert_int_equal(rn.r.output_len, big_len);
    assert_memory_equal(rn.r.output, big, big_len);
    assert_false(rn.r.truncated);
    free(big);
    run_release(&rn);

    /* no stdin_data: /dev/null, so cat ends at once; were our own stdin (here a pipe
     * nobody writes to) inherited instead, cat would wait for the timeout */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(0);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[0], 0), 0);
    int rc = run_cmd(&rn, (bt_proc_opts){.argv = cat, .timeout_ms = 2000}, -1, NULL);
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(rc, 0);
    assert_int_equal(rn.r.exit_code, 0);
    assert_false(rn.r.timed_out);
    assert_string_equal(rn.r.output, "");
    run_release(&rn);

    /* empty stdin_data: an empty stdin */
    assert_int_equal(
        run_cmd(&rn, (bt_proc_opts){.argv = cat, .stdin_data = "", .stdin_len = 0}, -1, NULL), 0);
    assert_false(rn.r.timed_out);
    assert_string_equal(rn.r.output, "");
    run_release(&rn);

    /* a child that never reads its stdin: the write fails quietly (EPIPE), no hang */
    const char *no_read[] = {"/bin/sh", "-c", "echo ignored", NULL};
    char *blob = bt_xcalloc(1, 4u << 20);
    assert_int_equal(
        run_cmd(&rn, (bt_proc_opts){.argv = no_read, .stdin_data = blob, .stdin_len = 4u << 20}, -1,
                NULL),
        0);
    assert_int_equal(rn.r.exit_code, 0);
    assert_string_equal(rn.r.output, "ignored\n");
    free(blob);
    run_release(&rn);
}

static void test_cwd(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("proc-cwd");
    char real[PATH_MAX];
    assert_non_null(realpath(dir, real));
    run rn;
    const char *argv[] = {"/bin/sh", "-c", "pwd -P", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = argv, .cwd = dir}, -1, NULL), 0);
    bt_strbuf want = BT_STRBUF_INIT;
    bt_strbuf_addf(&want, "%s\n", real);
    assert_string_equal(rn.r.output, want.buf);
    bt_strbuf_release(&want);
    run_release(&rn);
    bt_test_rmdir(dir);
}

static void test_env(void **state)
{
    (void)state;
    run rn;
    /* "sh" without a slash: found through the PATH given here */
    const char *argv[] = {"sh", "-c", "echo \"$BT_PROC_TEST\"; echo \"${HOME-unset}\"", NULL};
    char *const env[] = {"BT_PROC_TEST=hello there", "PATH=/usr/bin:/bin", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = argv, .env = env}, -1, NULL), 0);
    assert_int_equal(rn.r.exit_code, 0);
    assert_string_equal(rn.r.output, "hello there\nunset\n"); /* only what was given */
    run_release(&rn);

    /* NULL env: this process's environment is inherited */
    setenv("BT_PROC_INHERITED", "yes", 1);
    const char *inh[] = {"/bin/sh", "-c", "echo \"$BT_PROC_INHERITED\"", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = inh}, -1, NULL), 0);
    assert_string_equal(rn.r.output, "yes\n");
    unsetenv("BT_PROC_INHERITED");
    run_release(&rn);
}

static void test_start_failures(void **state)
{
    (void)state;
    run rn;
    bt_error err = BT_ERROR_INIT;
    char *dir = bt_test_tmpdir("proc-missing");
    const char *missing[] = {"baton-no-such-program", "x", NULL};
    int rc = run_cmd(&rn, (bt_proc_opts){.argv = missing, .cwd = dir}, -1, &err);
    assert_int_equal(rc, BT_ENOENT);
    assert_non_null(strstr(err.msg, "cannot run baton-no-such-program"));
    assert_non_null(strstr(err.msg, dir));
    assert_non_null(strstr(err.msg, "no such file or directory"));
    run_release(&rn); /* run_cmd checked: no callback, loop closed clean */

    const char *abs_missing[] = {"/nonexistent/bin/tool", NULL};
    bt_error_clear(&err);
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = abs_missing}, -1, &err), BT_ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/bin/tool"));
    run_release(&rn);

    /* a file that is not executable */
    char *file = bt_test_write(dir, "script.sh", "echo hi\n");
    const char *noexec[] = {file, NULL};
    bt_error_clear(&err);
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = noexec}, -1, &err), BT_EPERM);
    assert_non_null(strstr(err.msg, file));
    free(file);
    run_release(&rn);

    const char *tru[] = {"/bin/true", NULL};
    bt_error_clear(&err);
    assert_int_equal(
        run_cmd(&rn, (bt_proc_opts){.argv = tru, .cwd = "/nonexistent/baton-dir"}, -1, &err),
        BT_ENOENT);
    assert_non_null(strstr(err.msg, "cannot run /bin/true in /nonexistent/baton-dir"));
    assert_non_null(strstr(err.msg, "no such directory"));
    run_release(&rn);

    const char *empty[] = {NULL};
    bt_error_clear(&err);
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = empty}, -1, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "empty"));
    run_release(&rn);
    /* no error carrier: still the code */
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = missing}, -1, NULL), BT_ENOENT);
    run_release(&rn);
    bt_test_rmdir(dir);
}

static void test_timeout_kills_group(void **state)
{
    (void)state;
    run rn;
    const char *argv[] = {"sleep", "30", NULL};
    assert_int_equal(run_cmd(&rn,
                             (bt_proc_opts){.argv = argv, .timeout_ms = 200, .kill_grace_ms = 200},
                             -1, NULL),
                     0);
    assert_true(rn.r.timed_out);
    assert_false(rn.r.cancelled);
    assert_int_equal(rn.r.exit_code, -1);
    assert_int_equal(rn.r.term_signal, SIGTERM);
    assert_true(rn.r.duration_ms >= 190);
    assert_true(elapsed(&rn) < 5000); /* not the 30 s */
    run_release(&rn);

    /* the grandchild goes too: the shell waits on it, so only a group kill ends this */
    char *dir = bt_test_tmpdir("proc-timeout");
    const char *gc[] = {"/bin/sh", "-c", "sleep 30 & echo $! > pid; wait", NULL};
    assert_int_equal(
        run_cmd(&rn,
                (bt_proc_opts){.argv = gc, .cwd = dir, .timeout_ms = 200, .kill_grace_ms = 200}, -1,
                NULL),
        0);
    assert_true(rn.r.timed_out);
    assert_int_equal(rn.r.exit_code, -1);
    assert_true(elapsed(&rn) < 5000);
    bt_strbuf pf = BT_STRBUF_INIT;
    bt_strbuf_addf(&pf, "%s/pid", dir);
    assert_true(pid_gone(read_pid(pf.buf)));
    bt_strbuf_release(&pf);
    run_release(&rn);
    bt_test_rmdir(dir);
}

static void test_timeout_escalates_to_sigkill(void **state)
{
    (void)state;
    run rn;
    /* the shell and its sleep both ignore SIGTERM */
    const char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo armed; sleep 30; true", NULL};
    assert_int_equal(run_cmd(&rn,
                             (bt_proc_opts){.argv = argv, .timeout_ms = 200, .kill_grace_ms = 200},
                             -1, NULL),
                     0);
    assert_true(rn.r.timed_out);
    assert_int_equal(rn.r.term_signal, SIGKILL);
    assert_int_equal(rn.r.exit_code, -1);
    assert_string_equal(rn.r.output, "armed\n");
    assert_true(rn.r.duration_ms >= 390); /* timeout + grace */
    assert_true(elapsed(&rn) < 5000);
    run_release(&rn);
}

static void test_cancel(void **state)
{
    (void)state;
    run rn;
    const char *argv[] = {"sleep", "30", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = argv, .kill_grace_ms = 200}, 50, NULL), 0);
    assert_true(rn.r.cancelled);
    assert_false(rn.r.timed_out);
    assert_int_equal(rn.r.term_signal, SIGTERM);
    assert_int_equal(rn.r.exit_code, -1);
    assert_true(elapsed(&rn) < 5000);
    run_release(&rn);

    /* from inside on_output, with a grandchild that would otherwise keep it alive */
    const char *chatty[] = {"/bin/sh", "-c", "echo ready; sleep 30 & wait", NULL};
    memset(&rn, 0, sizeof rn);
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &rn.cancel_timer);
    rn.cancel_on_output = 1;
    bt_proc_opts o = {.argv = chatty,
                      .kill_grace_ms = 200,
                      .timeout_ms = SAFETY_TIMEOUT_MS,
                      .on_output = on_output,
                      .on_done = on_done,
                      .ud = &rn};
    rn.t_start = bt_time_mono_ms();
    assert_int_equal(bt_proc_start(&loop, &o, &rn.p, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&rn.cancel_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(rn.done_calls, 1);
    assert_false(rn.done_in_call);
    assert_true(rn.r.cancelled);
    assert_string_equal(rn.r.output, "ready\n");
    assert_true(elapsed(&rn) < 5000);
    run_release(&rn);
}

static void test_truncation_marker(void **state)
{
    (void)state;
    run rn;
    const char *argv[] = {"printf", "abcdefghij", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = argv, .max_output = 4}, -1, NULL), 0);
    assert_true(rn.r.truncated);
    assert_string_equal(rn.r.output,
                        "abcd\n[baton: output truncated at 4 bytes, 6 more dropped]\n");
    assert_int_equal(rn.r.output_len, strlen(rn.r.output));
    assert_int_equal(rn.streamed, 10); /* on_output still sees everything */
    run_release(&rn);

    /* exactly at the cap: nothing dropped, no marker */
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = argv, .max_output = 10}, -1, NULL), 0);
    assert_false(rn.r.truncated);
    assert_string_equal(rn.r.output, "abcdefghij");
    run_release(&rn);
}

static void test_flood_is_bounded(void **state)
{
    (void)state;
    run rn;
    size_t cap = 64 * 1024;
    /* warm up the allocator and loop so the figure below is the flood's alone */
    const char *warm[] = {"/bin/sh", "-c", "yes | head -c 1000000", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = warm, .max_output = cap}, -1, NULL), 0);
    run_release(&rn);
    long before = peak_rss_kb();
    const char *flood[] = {"/bin/sh", "-c", "yes | head -c 50000000", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = flood, .max_output = cap}, -1, NULL), 0);
    long after = peak_rss_kb();
    assert_int_equal(rn.r.exit_code, 0);
    assert_true(rn.r.truncated);
    assert_int_equal(rn.streamed, 50000000);
    assert_true(rn.r.output_len <= cap + 100);
    assert_memory_equal(rn.r.output, "y\ny\ny\n", 6);
    assert_non_null(strstr(rn.r.output, "[baton: output truncated at 65536 bytes, 49934464 more "
                                        "dropped]\n"));
    fprintf(stderr, "flood: peak RSS %ld kB -> %ld kB\n", before, after);
    assert_true(after - before < 16 * 1024); /* kept in full it would be 48 MiB */
    run_release(&rn);
}

static void test_grandchild_holding_pipes(void **state)
{
    (void)state;
    run rn;
    char *dir = bt_test_tmpdir("proc-gc");
    /* the shell exits at once; its background sleep keeps stdout and stderr open */
    const char *argv[] = {"/bin/sh", "-c", "echo hi; sleep 30 & echo $! > pid", NULL};
    assert_int_equal(
        run_cmd(&rn, (bt_proc_opts){.argv = argv, .cwd = dir, .kill_grace_ms = 200}, -1, NULL), 0);
    assert_int_equal(rn.r.exit_code, 0);
    assert_false(rn.r.timed_out);
    assert_string_equal(rn.r.output, "hi\n");
    assert_true(elapsed(&rn) < 5000); /* about the 200 ms grace, not the 30 s */
    bt_strbuf pf = BT_STRBUF_INIT;
    bt_strbuf_addf(&pf, "%s/pid", dir);
    assert_true(pid_gone(read_pid(pf.buf))); /* the leftover holding our pipes is killed */
    bt_strbuf_release(&pf);
    run_release(&rn);

    /* output a grandchild writes within the grace period is still collected */
    const char *late[] = {"/bin/sh", "-c", "(sleep 0.1; echo late) & echo early", NULL};
    assert_int_equal(run_cmd(&rn, (bt_proc_opts){.argv = late, .kill_grace_ms = 3000}, -1, NULL),
                     0);
    assert_string_equal(rn.r.output, "early\nlate\n");
    run_release(&rn);
    bt_test_rmdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as app.c does: a child may close its stdin early */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood_is_bounded), /* first: the peak RSS is still low */
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_stdout_and_stderr),
        cmocka_unit_test(test_stdin),
        cmocka_unit_test(test_cwd),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_start_failures),
        cmocka_unit_test(test_timeout_kills_group),
        cmocka_unit_test(test_timeout_escalates_to_sigkill),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_truncation_marker),
        cmocka_unit_test(test_grandchild_holding_pipes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
