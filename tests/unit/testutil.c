/*
 * testutil.c - scratch directories and files for unit tests (see testutil.h).
 */
#include "testutil.h"

#include "base/mem.h"
#include "base/path.h"
#include "base/strbuf.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/wait.h>
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

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    fail_msg("the operation did not finish in time");
}

void bt_test_run_loop(uv_loop_t *loop, int64_t watchdog_ms)
{
    uv_timer_t wd;
    uv_timer_init(loop, &wd);
    uv_timer_start(&wd, on_watchdog, (uint64_t)watchdog_ms, 0);
    uv_unref((uv_handle_t *)&wd);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

void bt_test_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st != 0)
        fail_msg("command failed (%d): %s", st, cmd);
}

char *bt_test_sh_out(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    bt_strbuf sb = BT_STRBUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        bt_strbuf_add(&sb, buf, n);
    pclose(p);
    bt_strbuf_trim(&sb);
    if (!sb.buf)
        bt_strbuf_addstr(&sb, "");
    return bt_strbuf_detach(&sb, NULL);
}

void bt_test_fake_start(bt_test_fake *f, const char *script)
{
    bt_test_fake_start_args(f, script, NULL);
}

void bt_test_fake_start_args(bt_test_fake *f, const char *script, const char *const *extra)
{
    const char *src = getenv("BATON_SOURCE_DIR");
    assert_non_null(src);
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fakes/%s", src, script);
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        const char *argv[64] = {"python3", path, "--port", "0", "--exit-on-stdin-eof"};
        int n = 5;
        for (const char *const *a = extra; a && *a && n < 63; a++)
            argv[n++] = *a;
        argv[n] = NULL;
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    f->to_child = in[1];
    FILE *from = fdopen(out[0], "r");
    char line[128] = "";
    if (!fgets(line, sizeof line, from) || sscanf(line, "PORT %d", &f->port) != 1)
        fail_msg("the fake %s did not start: '%s'", script, line);
    fclose(from); /* the fake writes nothing more to stdout */
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->port);
}

void bt_test_fake_stop(bt_test_fake *f)
{
    close(f->to_child);
    kill(f->pid, SIGTERM);
    waitpid(f->pid, NULL, 0);
}
