/*
 * proc.c - one child process on the loop: spawn, feed stdin, collect stdout+stderr,
 * enforce a timeout, cancel, and report once (see proc.h for the contract).
 *
 * How it works:
 * - The child is spawned with UV_PROCESS_DETACHED (setsid), so its pid is also the id of
 *   a process group holding everything it starts; every signal goes to -pid. Killing is
 *   two-step: SIGTERM to the group, then SIGKILL kill_grace_ms later if it has not exited.
 * - A run is finished when three things have happened, in whatever order they arrive:
 *   the exit callback, EOF on stdout and EOF on stderr. A grandchild that inherited the
 *   pipes can keep them open after the child exits; then the pipes wait kill_grace_ms
 *   after the exit, after which the group (the leftovers holding our pipes) gets SIGKILL
 *   and the pipes are abandoned. Descendants that do not hold the pipes (a daemon that
 *   redirected its output) are left running after a normal exit.
 * - on_done always runs from the close callback of the last handle, so it never runs
 *   inside bt_proc_start or bt_proc_cancel, and nothing of ours is touched after it.
 * - The kept output grows only as needed and never past max_output (plus the marker), so
 *   a flood costs a 64 KiB read buffer, not memory proportional to what was printed.
 * - A missing program is reported by bt_proc_start itself (uv_spawn returns the exec
 *   error synchronously), not as exit status 127; argv[0] is not run through a shell.
 * - The embedding program must ignore SIGPIPE (app.c does): stdin_data is written to a
 *   pipe the child may close without reading.
 */
#include "workspace/proc.h"

#include "base/mem.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_GRACE_MS   2000
#define DEFAULT_MAX_OUTPUT ((size_t)1 << 20)
#define FIRST_CHUNK        4096

struct bt_proc {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t deadline; /* timeout_ms after the spawn */
    uv_timer_t grace;    /* SIGTERM -> SIGKILL, and exit -> abandon the pipes */
    uv_write_t wreq;
    bt_proc_output_fn on_output;
    bt_proc_done_fn on_done;
    void *ud;
    int64_t grace_ms;
    size_t max_output;
    char *stdin_data;
    char *kept; /* up to max_output bytes, NUL-terminated; NULL until something arrives */
    size_t kept_len, kept_cap;
    size_t dropped;   /* bytes past max_output */
    int pending;      /* handles whose close callback has not run yet */
    int closing;      /* finish() ran: every handle is closing */
    int start_failed; /* closing after a failed spawn: no on_done */
    int pid;          /* the child, and its process group */
    int out_open, err_open, exited, killing, timed_out, cancelled;
    int64_t exit_status;
    int term_signal;
    uint64_t spawned_ns, exited_ns;
    char readbuf[65536];
};

static void group_kill(bt_proc *p, int sig)
{
    /* The group cannot have been reused while we still hold it: the leader is either
     * alive or was reaped moments ago by this loop, and a leftover keeps the id taken. */
    if (p->pid > 0)
        kill(-p->pid, sig);
}

/* ---- finishing ---- */

static void add_marker(bt_proc *p)
{
    char m[128];
    int n = snprintf(m, sizeof m, "%s[baton: output truncated at %zu bytes, %zu more dropped]\n",
                     p->kept_len && p->kept[p->kept_len - 1] != '\n' ? "\n" : "", p->kept_len,
                     p->dropped);
    if (n <= 0 || (size_t)n >= sizeof m)
        return;
    p->kept = bt_xrealloc(p->kept, p->kept_len + (size_t)n + 1);
    memcpy(p->kept + p->kept_len, m, (size_t)n + 1);
    p->kept_len += (size_t)n;
}

static void deliver(bt_proc *p)
{
    if (!p->start_failed) {
        if (p->dropped)
            add_marker(p);
        bt_proc_result r = {0};
        r.exit_code = p->term_signal ? -1 : (int)p->exit_status;
        r.term_signal = p->term_signal;
        r.timed_out = p->timed_out;
        r.cancelled = p->cancelled;
        r.output = p->kept ? p->kept : "";
        r.output_len = p->kept_len;
        r.truncated = p->dropped > 0;
        r.duration_ms = (int64_t)((p->exited_ns - p->spawned_ns) / 1000000u);
        p->on_done(&r, p->ud);
    }
    free(p->stdin_data);
    free(p->kept);
    free(p);
}

static void on_closed(uv_handle_t *h)
{
    bt_proc *p = h->data;
    if (--p->pending == 0 && p->closing)
        deliver(p);
}

static void close_handle(bt_proc *p, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return; /* already counted (the stdin pipe closes on its own) */
    p->pending++;
    uv_close(h, on_closed);
}

static void finish(bt_proc *p)
{
    if (p->closing)
        return;
    p->closing = 1;
    p->pending++; /* hold: nothing is delivered before every close is queued */
    close_handle(p, (uv_handle_t *)&p->proc);
    close_handle(p, (uv_handle_t *)&p->in);
    close_handle(p, (uv_handle_t *)&p->out);
    close_handle(p, (uv_handle_t *)&p->err);
    close_handle(p, (uv_handle_t *)&p->deadline);
    close_handle(p, (uv_handle_t *)&p->grace);
    p->pending--; /* the timers are still pending, so this is never the last */
}

static void maybe_finish(bt_proc *p)
{
    if (p->exited && !p->out_open && !p->err_open)
        finish(p);
}

/* ---- killing ---- */

static void on_grace(uv_timer_t *t)
{
    bt_proc *p = t->data;
    group_kill(p, SIGKILL); /* still running, or leftovers holding the pipes after the exit */
    if (p->exited)
        finish(p); /* abandon the pipes */
    /* else the exit follows the SIGKILL; on_exit gives the pipes one more grace period */
}

static void terminate(bt_proc *p)
{
    if (p->killing || p->exited || p->closing)
        return;
    p->killing = 1;
    uv_timer_stop(&p->deadline);
    group_kill(p, SIGTERM);
    uv_timer_start(&p->grace, on_grace, (uint64_t)p->grace_ms, 0);
}

static void on_deadline(uv_timer_t *t)
{
    bt_proc *p = t->data;
    if (p->killing || p->exited)
        return;
    p->timed_out = 1;
    terminate(p);
}

void bt_proc_cancel(bt_proc *p)
{
    if (!p || p->closing || p->exited || p->killing)
        return;
    p->cancelled = 1;
    terminate(p);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig)
{
    bt_proc *p = h->data;
    p->exited = 1;
    p->exit_status = status;
    p->term_signal = sig;
    p->exited_ns = uv_hrtime();
    uv_timer_stop(&p->deadline);
    if (!p->out_open && !p->err_open) {
        finish(p);
        return;
    }
    /* Give whatever still holds the pipes a grace period to finish writing. While a
     * SIGTERM is pending the running grace timer already covers it. */
    if (!uv_is_active((uv_handle_t *)&p->grace))
        uv_timer_start(&p->grace, on_grace, (uint64_t)p->grace_ms, 0);
}

/* ---- output ---- */

static void keep(bt_proc *p, const char *data, size_t n)
{
    size_t room = p->max_output - p->kept_len;
    size_t take = n < room ? n : room;
    p->dropped += n - take;
    if (!take)
        return;
    size_t need = p->kept_len + take + 1;
    if (need > p->kept_cap) {
        size_t cap = p->kept_cap ? p->kept_cap : FIRST_CHUNK;
        while (cap < need)
            cap *= 2;
        if (cap > p->max_output + 1)
            cap = p->max_output + 1; /* >= need, since kept_len + take <= max_output */
        p->kept = bt_xrealloc(p->kept, cap);
        p->kept_cap = cap;
    }
    memcpy(p->kept + p->kept_len, data, take);
    p->kept_len += take;
    p->kept[p->kept_len] = '\0';
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    bt_proc *p = h->data;
    buf->base = p->readbuf;
    buf->len = sizeof p->readbuf;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    bt_proc *p = s->data;
    int is_stderr = s == (uv_stream_t *)&p->err;
    if (n > 0) {
        keep(p, buf->base, (size_t)n);
        if (p->on_output)
            p->on_output(buf->base, (size_t)n, is_stderr, p->ud);
        return;
    }
    if (n == 0)
        return;      /* EAGAIN */
    uv_read_stop(s); /* EOF, or a read error that ends this pipe just the same */
    if (is_stderr)
        p->err_open = 0;
    else
        p->out_open = 0;
    maybe_finish(p);
}

static void on_stdin_written(uv_write_t *req, int status)
{
    (void)status; /* EPIPE when the child exits without reading all of it: fine */
    bt_proc *p = req->data;
    close_handle(p, (uv_handle_t *)&p->in);
}

/* ---- starting ---- */

static int code_for(int uverr)
{
    switch (uverr) {
    case UV_ENOENT:
    case UV_ENOTDIR:
        return BT_ENOENT;
    case UV_EACCES:
    case UV_EPERM:
        return BT_EPERM;
    case UV_ENOMEM:
        return BT_ENOMEM;
    default:
        return BT_EIO;
    }
}

static int start_error(bt_error *err, const char *prog, const char *cwd, int uverr,
                       const char *hint)
{
    char here[PATH_MAX];
    size_t len = sizeof here;
    if (!cwd)
        cwd = uv_cwd(here, &len) == 0 ? here : ".";
    return bt_errorf(err, code_for(uverr), "cannot run %s in %s: %s%s", prog, cwd,
                     uv_strerror(uverr), hint);
}

int bt_proc_start(uv_loop_t *loop, const bt_proc_opts *opts, bt_proc **out, bt_error *err)
{
    if (out)
        *out = NULL;
    if (!loop || !opts || !opts->on_done)
        return bt_errorf(err, BT_EINVAL, "cannot run a process: no loop or no on_done callback");
    if (!opts->argv || !opts->argv[0] || !opts->argv[0][0])
        return bt_errorf(err, BT_EINVAL, "cannot run a process: the command is empty");
    if (opts->stdin_data && opts->stdin_len > UINT_MAX)
        return bt_errorf(err, BT_ETOOBIG, "cannot run %s: stdin data of %zu bytes is too large",
                         opts->argv[0], opts->stdin_len);
    const char *prog = opts->argv[0];
    if (opts->cwd) {
        /* uv_spawn would say ENOENT for a missing directory too, indistinguishable from
         * a missing program; checking first names the right culprit. */
        struct stat st;
        if (stat(opts->cwd, &st) != 0) {
            int e = errno;
            return start_error(err, prog, opts->cwd, uv_translate_sys_error(e),
                               e == ENOENT ? " (no such directory)" : "");
        }
        if (!S_ISDIR(st.st_mode))
            return start_error(err, prog, opts->cwd, UV_ENOTDIR, "");
    }

    bt_proc *p = bt_xcalloc(1, sizeof *p);
    p->loop = loop;
    p->on_output = opts->on_output;
    p->on_done = opts->on_done;
    p->ud = opts->ud;
    p->grace_ms = opts->kill_grace_ms > 0 ? opts->kill_grace_ms : DEFAULT_GRACE_MS;
    p->max_output = opts->max_output ? opts->max_output : DEFAULT_MAX_OUTPUT;
    uv_pipe_init(loop, &p->in, 0);
    uv_pipe_init(loop, &p->out, 0);
    uv_pipe_init(loop, &p->err, 0);
    uv_timer_init(loop, &p->deadline);
    uv_timer_init(loop, &p->grace);
    p->proc.data = p->in.data = p->out.data = p->err.data = p;
    p->deadline.data = p->grace.data = p->wreq.data = p;

    uv_stdio_container_t stdio[3];
    if (opts->stdin_data) {
        stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
        stdio[0].data.stream = (uv_stream_t *)&p->in;
    } else {
        stdio[0].flags = UV_IGNORE; /* libuv opens /dev/null */
    }
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err;
    uv_process_options_t po = {0};
    po.exit_cb = on_exit_cb;
    po.file = prog;
    po.args = (char **)opts->argv; /* uv_spawn only reads them, and only during the call */
    po.env = (char **)opts->env;
    po.cwd = opts->cwd;
    po.flags = UV_PROCESS_DETACHED; /* setsid: its own process group for kill(-pid) */
    po.stdio = stdio;
    po.stdio_count = 3;
    int rc = uv_spawn(loop, &p->proc, &po);
    if (rc != 0) {
        int code = start_error(err, prog, opts->cwd, rc,
                               rc == UV_ENOENT && !strchr(prog, '/') ? " (not found on PATH)" : "");
        p->start_failed = 1;
        finish(p); /* the handles still need closing; the last close frees p */
        return code;
    }
    p->pid = p->proc.pid;
    p->spawned_ns = uv_hrtime();
    p->out_open = p->err_open = 1;
    uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read);
    if (opts->stdin_data && opts->stdin_len > 0) {
        p->stdin_data = bt_xmalloc(opts->stdin_len);
        memcpy(p->stdin_data, opts->stdin_data, opts->stdin_len);
        uv_buf_t b = uv_buf_init(p->stdin_data, (unsigned)opts->stdin_len);
        if (uv_write(&p->wreq, (uv_stream_t *)&p->in, &b, 1, on_stdin_written) != 0)
            close_handle(p, (uv_handle_t *)&p->in);
    } else if (opts->stdin_data) {
        close_handle(p, (uv_handle_t *)&p->in); /* empty stdin: EOF at once */
    }
    if (opts->timeout_ms > 0)
        uv_timer_start(&p->deadline, on_deadline, (uint64_t)opts->timeout_ms, 0);
    if (out)
        *out = p;
    return 0;
}
