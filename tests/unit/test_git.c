/*
 * test_git.c - git credentials and commit-and-push with real git and a real loop:
 * bt_git_auth_env's variables (numbering continued after existing ones, the Basic
 * credential of x-access-token:TOKEN) and that real git authenticates with them against
 * an HTTP server that demands the header, while a missing token fails at once instead of
 * prompting; credential stripping from URLs; commit_push against a local bare remote
 * (nothing to commit, a new commit with its sha on the remote branch and the ahead
 * count, a missing remote named in a BT_EIO); and that a token never reaches the result
 * or the message, even when git is told to print its HTTP headers.
 */
#include "testutil.h"

#include "base/error.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "base/vec.h"
#include "workspace/git.h"
#include "workspace/proc.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define TOKEN       "s3cr3t-tok"
#define TOKEN_B64   "Ym90OnMzY3IzdC10b2s=" /* base64("bot:s3cr3t-tok") */
#define WATCHDOG_MS 60000

/* ---- shell helpers for the fixtures ---- */

/* A bare repository dir/remote.git whose main has one commit, and a clone of it in
 * dir/work. */
static void make_repos(const char *dir)
{
    bt_test_sh("git init -q --bare -b main %s/remote.git", dir);
    bt_test_sh("git clone -q %s/remote.git %s/seed 2>/dev/null", dir, dir);
    bt_test_sh(
        "cd %s/seed && echo hello > README && git add README && "
        "git -c user.name=t -c user.email=t@t commit -qm init && git push -q origin HEAD:main",
        dir);
    bt_test_sh("git clone -q %s/remote.git %s/work", dir, dir);
}

static size_t env_count(const bt_strvec *env, const char *key)
{
    size_t n = strlen(key), c = 0;
    for (size_t i = 0; i < env->len; i++)
        c += strncmp(env->items[i], key, n) == 0 && env->items[i][n] == '=';
    return c;
}

/* ---- bt_git_auth_env and URLs ---- */

static void test_auth_env(void **state)
{
    (void)state;
    bt_strvec env = BT_STRVEC_INIT;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_git_auth_env("https://github.com/", NULL, "TOKEN", &env, &err), 0);
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_COUNT"), "1");
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_KEY_0"),
                        "http.https://github.com/.extraHeader");
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_VALUE_0"),
                        "Authorization: Basic eC1hY2Nlc3MtdG9rZW46VE9LRU4=");
    assert_string_equal(bt_strvec_env_get(&env, "GIT_TERMINAL_PROMPT"), "0");
    assert_string_equal(bt_strvec_env_get(&env, "GIT_ASKPASS"), "/bin/false");
    bt_strvec_clear(&env);

    /* Existing entries keep their numbers; ours follow; one GIT_CONFIG_COUNT. */
    bt_strvec_push(&env, "GIT_CONFIG_COUNT=2");
    bt_strvec_push(&env, "GIT_CONFIG_KEY_0=a.b");
    bt_strvec_push(&env, "GIT_CONFIG_VALUE_0=1");
    bt_strvec_push(&env, "GIT_CONFIG_KEY_1=c.d");
    bt_strvec_push(&env, "GIT_CONFIG_VALUE_1=2");
    assert_int_equal(bt_git_auth_env("https://h.example/", "bot", TOKEN, &env, &err), 0);
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_COUNT"), "3");
    assert_int_equal(env_count(&env, "GIT_CONFIG_COUNT"), 1);
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_KEY_0"), "a.b");
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_KEY_2"),
                        "http.https://h.example/.extraHeader");
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_VALUE_2"),
                        "Authorization: Basic " TOKEN_B64);
    /* Calling twice does not duplicate the prompt settings. */
    assert_int_equal(bt_git_auth_env("https://other.example/", NULL, NULL, &env, &err), 0);
    assert_int_equal(env_count(&env, "GIT_TERMINAL_PROMPT"), 1);
    assert_string_equal(bt_strvec_env_get(&env, "GIT_CONFIG_COUNT"), "3");
    bt_strvec_clear(&env);

    /* No token: only the no-prompt settings. */
    assert_int_equal(bt_git_auth_env("http://127.0.0.1:1/", NULL, "", &env, &err), 0);
    assert_null(bt_strvec_env_get(&env, "GIT_CONFIG_COUNT"));
    assert_string_equal(bt_strvec_env_get(&env, "GIT_ASKPASS"), "/bin/false");
    bt_strvec_clear(&env);

    assert_int_equal(bt_git_auth_env("ssh://git@github.com/", NULL, "T", &env, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "ssh://git@github.com/"));
    assert_int_equal(bt_git_auth_env(NULL, NULL, "T", &env, &err), BT_EINVAL);
    assert_int_equal(env.len, 0);
}

static void test_strip_credentials(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"https://u:p@h/x", "https://h/x"},
        {"https://h/x", "https://h/x"},
        {"https://x-access-token:ghp_abc@github.com/o/r.git", "https://github.com/o/r.git"},
        {"http://tok@h:8080/a@b", "http://h:8080/a@b"},
        {"git@github.com:o/r.git", "git@github.com:o/r.git"},
        {"/srv/git/r.git", "/srv/git/r.git"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = bt_git_url_strip_credentials(cases[i][0]);
        assert_string_equal(s, cases[i][1]);
        free(s);
    }
    assert_null(bt_git_url_strip_credentials(NULL));
}

static void test_redact(void **state)
{
    (void)state;
    bt_strvec env = BT_STRVEC_INIT;
    assert_int_equal(bt_git_auth_env("https://h.example/", "bot", TOKEN, &env, NULL), 0);
    char *out = bt_git_redact(NULL, (const char *const *)env.items,
                              "> Authorization: Basic " TOKEN_B64 "\n"
                              "echo " TOKEN " and bot:" TOKEN " and " TOKEN_B64 " end");
    assert_null(strstr(out, TOKEN));
    assert_null(strstr(out, TOKEN_B64));
    assert_non_null(strstr(out, " end"));
    free(out);
    bt_strvec_clear(&env);
}

/* ---- commit and push ---- */

typedef struct push_res {
    int calls;
    int rc;
    char msg[BT_ERROR_MSG_MAX];
    char *commit, *head, *output;
    int pushed, ahead;
} push_res;

static void on_pushed(int rc, const bt_error *err, const bt_git_push_result *r, void *ud)
{
    push_res *p = ud;
    p->calls++;
    p->rc = rc;
    if (rc < 0) {
        assert_non_null(err);
        assert_null(r);
        snprintf(p->msg, sizeof p->msg, "%s", err->msg);
        return;
    }
    p->commit = bt_xstrdup(r->commit);
    p->head = bt_xstrdup(r->head);
    p->output = bt_xstrdup(r->output);
    p->pushed = r->pushed;
    p->ahead = r->ahead;
}

static void push_res_free(push_res *p)
{
    free(p->commit);
    free(p->head);
    free(p->output);
}

static void push_sync(const bt_git_push_opts *o, push_res *res)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_error err = BT_ERROR_INIT;
    int rc = bt_git_commit_push(&loop, o, on_pushed, res, &err);
    if (rc != 0)
        fail_msg("commit_push did not start: %s", err.msg);
    assert_int_equal(res->calls, 0); /* never inside the call */
    bt_test_run_loop(&loop, WATCHDOG_MS);
    assert_int_equal(res->calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_push_nothing_to_commit(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("git");
    make_repos(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/work", dir);
    bt_git_push_opts o = {.path = path, .message = "unused", .branch = "ai-feature/issue-3"};
    push_res res = {0};
    push_sync(&o, &res);
    assert_int_equal(res.rc, 0);
    assert_null(res.commit);
    assert_int_equal(res.pushed, 1);
    assert_int_equal(res.ahead, 0);
    char *main_sha = bt_test_sh_out("git -C %s/remote.git rev-parse refs/heads/main", dir);
    char *br_sha =
        bt_test_sh_out("git -C %s/remote.git rev-parse refs/heads/ai-feature/issue-3", dir);
    assert_string_equal(res.head, main_sha);
    assert_string_equal(br_sha, main_sha);
    free(main_sha);
    free(br_sha);
    push_res_free(&res);
    bt_test_rmdir(dir);
}

static void test_push_new_commit(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("git");
    make_repos(dir);
    bt_test_sh("cd %s/work && echo change >> README && echo new > 'file with spaces.txt'", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/work", dir);
    bt_git_push_opts o = {.path = path,
                          .message = "Fix the \"thing\" (#7)\n\nBody with 'quotes' and $HOME\n",
                          .branch = "ai-feature/issue-7",
                          .author_name = "Baton Bot",
                          .author_email = "bot@example.com"};
    push_res res = {0};
    push_sync(&o, &res);
    assert_int_equal(res.rc, 0);
    assert_non_null(res.commit);
    assert_int_equal(strlen(res.commit), 40);
    assert_string_equal(res.commit, res.head);
    assert_int_equal(res.ahead, 1);
    char *sha = bt_test_sh_out("git -C %s/remote.git rev-parse refs/heads/ai-feature/issue-7", dir);
    assert_string_equal(sha, res.commit);
    free(sha);
    char *subj = bt_test_sh_out("git -C %s/remote.git log -1 --format='%%s|%%an|%%ae|%%b' "
                                "refs/heads/ai-feature/issue-7",
                                dir);
    assert_string_equal(subj, "Fix the \"thing\" (#7)|Baton Bot|bot@example.com|Body with "
                              "'quotes' and $HOME");
    free(subj);
    char *files = bt_test_sh_out(
        "git -C %s/remote.git ls-tree --name-only refs/heads/ai-feature/issue-7", dir);
    assert_non_null(strstr(files, "file with spaces.txt"));
    free(files);
    push_res_free(&res);

    /* Again with nothing new: no commit, still pushed, still one commit ahead of main. */
    push_res again = {0};
    push_sync(&o, &again);
    assert_int_equal(again.rc, 0);
    assert_null(again.commit);
    assert_int_equal(again.ahead, 1);
    push_res_free(&again);
    bt_test_rmdir(dir);
}

static void test_push_missing_remote(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("git");
    make_repos(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/work", dir);
    bt_test_sh("git -C %s remote add gone %s/no-such-repo.git", path, dir);
    bt_test_sh("cd %s && echo x > f", path);
    bt_git_push_opts o = {.path = path, .message = "m", .branch = "b", .remote = "gone"};
    push_res res = {0};
    push_sync(&o, &res);
    assert_int_equal(res.rc, BT_EIO);
    assert_non_null(strstr(res.msg, "git push"));
    assert_non_null(strstr(res.msg, "gone"));
    assert_non_null(strstr(res.msg, "exit"));

    /* A remote that is not configured at all fails the same way. */
    push_res res2 = {0};
    o.remote = "nosuchremote";
    push_sync(&o, &res2);
    assert_int_equal(res2.rc, BT_EIO);
    assert_non_null(strstr(res2.msg, "git push"));

    /* Bad input is refused before anything runs. */
    bt_error err = BT_ERROR_INIT;
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_git_push_opts bad = {.path = path, .message = "m"};
    assert_int_equal(bt_git_commit_push(&loop, &bad, on_pushed, &res, &err), BT_EINVAL);
    bt_git_push_opts nodir = {.path = "/nonexistent/dir", .message = "m", .branch = "b"};
    assert_true(bt_git_commit_push(&loop, &nodir, on_pushed, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/dir"));
    assert_int_equal(uv_loop_close(&loop), 0);
    bt_test_rmdir(dir);
}

/* ---- over HTTP ---- */

/* A dumb-HTTP git server for dir (read-only), answering 401 unless the Authorization
 * header is exactly expected. */
static const char server_py[] =
    "import http.server, sys\n"
    "root, expected = sys.argv[1], sys.argv[2]\n"
    "class H(http.server.SimpleHTTPRequestHandler):\n"
    "    def __init__(self, *a, **k):\n"
    "        super().__init__(*a, directory=root, **k)\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "    def ok(self):\n"
    "        if self.headers.get('Authorization') == expected:\n"
    "            return True\n"
    "        self.send_response(401)\n"
    "        self.send_header('WWW-Authenticate', 'Basic realm=\"git\"')\n"
    "        self.send_header('Content-Length', '0')\n"
    "        self.end_headers()\n"
    "        return False\n"
    "    def do_GET(self):\n"
    "        if self.ok():\n"
    "            super().do_GET()\n"
    "    def do_HEAD(self):\n"
    "        if self.ok():\n"
    "            super().do_HEAD()\n"
    "    def deny(self):\n"
    "        if self.ok():\n"
    "            self.send_response(403)\n"
    "            self.send_header('Content-Length', '0')\n"
    "            self.end_headers()\n"
    "    do_POST = do_PUT = do_PROPFIND = do_MKCOL = do_LOCK = deny\n"
    "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
    "print('PORT', s.server_address[1], flush=True)\n"
    "s.serve_forever()\n";

typedef struct server {
    pid_t pid;
    int port;
} server;

static void server_start(server *s, const char *dir, const char *expected)
{
    char *script = bt_test_write(dir, "server.py", server_py);
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(out[1], 1);
        execlp("python3", "python3", script, dir, expected, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *from = fdopen(out[0], "r");
    char line[128] = "";
    if (!fgets(line, sizeof line, from) || sscanf(line, "PORT %d", &s->port) != 1)
        fail_msg("the git HTTP server did not start: '%s'", line);
    fclose(from);
    free(script);
}

static void server_stop(server *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
}

typedef struct run_res {
    int done;
    int exit_code;
    char *output;
} run_res;

static void on_run_done(const bt_proc_result *r, void *ud)
{
    run_res *rr = ud;
    rr->done = 1;
    rr->exit_code = r->exit_code;
    rr->output = bt_xstrdup(r->output);
}

/* Run argv with this process's environment plus extra, to the end. */
static void run_with_env(const char *const *argv, const bt_strvec *extra, run_res *rr)
{
    bt_strvec env = BT_STRVEC_INIT;
    for (char *const *e = environ; *e; e++)
        bt_strvec_push(&env, *e);
    for (size_t i = 0; i < extra->len; i++)
        bt_strvec_push(&env, extra->items[i]);
    uv_loop_t loop;
    uv_loop_init(&loop);
    bt_proc_opts po = {
        .argv = argv, .env = env.items, .timeout_ms = 30000, .on_done = on_run_done, .ud = rr};
    bt_error err = BT_ERROR_INIT;
    if (bt_proc_start(&loop, &po, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    bt_test_run_loop(&loop, WATCHDOG_MS);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(rr->done);
    bt_strvec_clear(&env);
}

static void test_auth_env_with_real_git(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("git");
    make_repos(dir);
    bt_test_sh("git -C %s/remote.git update-server-info", dir);
    server s;
    server_start(&s, dir, "Basic " TOKEN_B64);
    char prefix[128], url[160];
    snprintf(prefix, sizeof prefix, "http://127.0.0.1:%d/", s.port);
    snprintf(url, sizeof url, "%sremote.git", prefix);

    /* With the header, git reads the repository (GIT_ASKPASS=/bin/false is not in the way). */
    bt_strvec env = BT_STRVEC_INIT;
    assert_int_equal(bt_git_auth_env(prefix, "bot", TOKEN, &env, NULL), 0);
    const char *ls[] = {"git", "ls-remote", url, NULL};
    run_res ok = {0};
    run_with_env(ls, &env, &ok);
    assert_int_equal(ok.exit_code, 0);
    assert_non_null(strstr(ok.output, "refs/heads/main"));
    free(ok.output);

    /* The header goes only to the prefix it was given for. */
    bt_strvec other = BT_STRVEC_INIT;
    assert_int_equal(bt_git_auth_env("http://127.0.0.2:1/", "bot", TOKEN, &other, NULL), 0);
    run_res scoped = {0};
    int64_t t0 = bt_time_mono_ms();
    run_with_env(ls, &other, &scoped);
    assert_int_not_equal(scoped.exit_code, 0);
    free(scoped.output);

    /* Without a token: a quick failure, not a prompt that waits forever. */
    bt_strvec none = BT_STRVEC_INIT;
    assert_int_equal(bt_git_auth_env(prefix, NULL, NULL, &none, NULL), 0);
    run_res denied = {0};
    run_with_env(ls, &none, &denied);
    assert_int_not_equal(denied.exit_code, 0);
    assert_true(bt_time_mono_ms() - t0 < 20000);
    free(denied.output);

    /* A push that fails while git prints its HTTP traffic, credentials included: the
     * message carries neither the token nor its base64. */
    bt_test_sh("git -C %s/work remote set-url origin %s", dir, url);
    bt_test_sh("cd %s/work && echo x > f", dir);
    bt_strvec_push(&env, "GIT_CURL_VERBOSE=1");
    bt_strvec_push(&env, "GIT_TRACE_REDACT=0");
    char path[4096];
    snprintf(path, sizeof path, "%s/work", dir);
    bt_git_push_opts o = {
        .path = path, .message = "m", .branch = "feature", .env = (const char *const *)env.items};
    push_res res = {0};
    push_sync(&o, &res);
    assert_int_equal(res.rc, BT_EIO);
    assert_non_null(strstr(res.msg, "git push"));
    assert_null(strstr(res.msg, TOKEN));
    assert_null(strstr(res.msg, TOKEN_B64));

    server_stop(&s);
    bt_strvec_clear(&env);
    bt_strvec_clear(&other);
    bt_strvec_clear(&none);
    bt_test_rmdir(dir);
}

/* A port nobody listens on. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_push_closed_port_hides_token(void **state)
{
    (void)state;
    char *dir = bt_test_tmpdir("git");
    make_repos(dir);
    char prefix[128], path[4096];
    snprintf(prefix, sizeof prefix, "http://127.0.0.1:%d/", closed_port());
    bt_test_sh("git -C %s/work remote set-url origin '%so/r.git'", dir, prefix);
    snprintf(path, sizeof path, "%s/work", dir);
    bt_strvec env = BT_STRVEC_INIT;
    assert_int_equal(bt_git_auth_env(prefix, "bot", TOKEN, &env, NULL), 0);
    bt_git_push_opts o = {
        .path = path, .message = "m", .branch = "b", .env = (const char *const *)env.items};
    push_res res = {0};
    push_sync(&o, &res);
    assert_int_equal(res.rc, BT_EIO);
    assert_non_null(strstr(res.msg, "git push"));
    assert_null(strstr(res.msg, TOKEN));
    assert_null(strstr(res.msg, TOKEN_B64));
    bt_strvec_clear(&env);
    bt_test_rmdir(dir);
}

int main(void)
{
    /* Only the configuration the tests set: no user or system gitconfig. */
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    unsetenv("GIT_CONFIG_COUNT");
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_env),
        cmocka_unit_test(test_strip_credentials),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_push_nothing_to_commit),
        cmocka_unit_test(test_push_new_commit),
        cmocka_unit_test(test_push_missing_remote),
        cmocka_unit_test(test_auth_env_with_real_git),
        cmocka_unit_test(test_push_closed_port_hides_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
