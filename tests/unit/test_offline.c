/*
 * test_offline.c - the offline detector (src/core/offline.c) against real loopback
 * endpoints: a listener that answers 404 (reachable: any HTTP answer counts), a closed
 * port (unreachable at once) and a listener that accepts but never answers (a timeout
 * after a short probe_timeout). Also: which providers become targets (local agents
 * skipped, agents grouped by provider, probe_url over endpoint over the built-in URL),
 * the one-reachable-provider-is-online rule, the forced modes (no probes at all), and
 * a periodic detector flipping offline -> online as a provider comes up, with its
 * change callback and its `offline.changed` events in the store.
 */
#include "testutil.h"

#include "agents/agents.h"
#include "base/mem.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "core/offline.h"
#include "http/client.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------
 * Loopback endpoints.
 */

/* A port nothing listens on (bound, then closed). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t n = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A listener that never accepts: the kernel completes the handshake (backlog), then
 * nothing ever answers. *fd to close at the end. */
static int silent_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(*fd, 16), 0);
    socklen_t n = sizeof a;
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &n), 0);
    return ntohs(a.sin_port);
}

/* An HTTP server on the loop answering every request with 404. */
typedef struct srv {
    uv_tcp_t tcp;
    int port;
    int requests;
} srv;

typedef struct conn {
    uv_tcp_t tcp;
    srv *s;
    int answered;
} conn;

static void conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    buf->base = bt_xmalloc(hint);
    buf->len = hint;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    conn *c = st->data;
    free(buf->base);
    if (n > 0 && !c->answered) {
        static const char resp[] = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
        uv_buf_t b = uv_buf_init((char *)resp, sizeof resp - 1);
        uv_try_write(st, &b, 1);
        c->answered = 1;
        c->s->requests++;
        uv_close((uv_handle_t *)st, conn_closed);
    } else if (n < 0 && !c->answered) {
        c->answered = 1;
        uv_close((uv_handle_t *)st, conn_closed);
    }
}

static void on_conn(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    srv *s = server->data;
    conn *c = bt_xcalloc(1, sizeof *c);
    c->s = s;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

/* Listen on port (0 = any free one). s must stay until the loop has closed it. */
static void srv_start(uv_loop_t *loop, srv *s, int port)
{
    memset(s, 0, sizeof *s);
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 16, on_conn), 0);
    int n = sizeof a;
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&a, &n);
    s->port = ntohs(a.sin_port);
}

/* ---------------------------------------------------------------------------------
 * Fixture.
 */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t tick;
    bt_config *cfg;
    bt_agents *agents;
    bt_http_client *http;
    int http_asked; /* times the detector asked for the client */
    bt_offline *od;
    srv srv; /* the 404 server, when a test starts it (closed by teardown) */
    int srv_on;
    /* check / change outcomes */
    int checked, offline;
    char reason[1024];
    int changes, last_change;
    char change_reason[1024];
} fx;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static int setup(void **state)
{
    fx *f = bt_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    bt_error err = BT_ERROR_INIT;
    if (bt_http_client_new(&f->loop, NULL, &f->http, &err) < 0)
        fail_msg("HTTP client: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    bt_offline_free(f->od);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* cancelled probes come back */
    if (f->srv_on)
        uv_close((uv_handle_t *)&f->srv.tcp, NULL);
    bt_agents_free(f->agents);
    bt_http_client_close(f->http);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bt_config_free(f->cfg);
    free(f);
    return 0;
}

static void wait_until(fx *f, const int *flag, int want, int64_t ms, const char *what)
{
    uv_timer_start(&f->tick, on_tick, 5, 5);
    int64_t end = bt_time_mono_ms() + ms;
    while (*flag < want && bt_time_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    if (*flag < want)
        fail_msg("timed out after %lld ms waiting for %s", (long long)ms, what);
}

static bt_http_client *get_http(void *ud)
{
    fx *f = ud;
    f->http_asked++;
    return f->http;
}

/* Configuration from YAML (no environment: ctest's BATON_OFFLINE=off must not count),
 * its agents, and a detector over them. */
static void make(fx *f, const char *yaml, int force)
{
    static char *const noenv[] = {NULL};
    bt_config_problems probs = {0};
    bt_error err = BT_ERROR_INIT;
    if (bt_config_load_string("test.yaml", yaml, strlen(yaml), noenv, &f->cfg, &probs, &err) < 0)
        fail_msg("config: %s (%s)", err.msg, probs.len ? probs.items[0].message : "");
    bt_config_problems_free(&probs);
    bt_agent_env ae = {.loop = &f->loop, .http = f->http, .cfg = f->cfg};
    f->agents = bt_agents_new(&ae);
    bt_offline_env env = {.loop = &f->loop,
                          .cfg = f->cfg,
                          .agents = f->agents,
                          .http = get_http,
                          .http_ud = f,
                          .force = force};
    assert_int_equal(bt_offline_new(&env, &f->od, &err), 0);
}

static void on_checked(bt_offline *o, int offline, const char *reason, void *ud)
{
    (void)o;
    fx *f = ud;
    f->checked++;
    f->offline = offline;
    snprintf(f->reason, sizeof f->reason, "%s", reason);
}

static void check_now(fx *f)
{
    int before = f->checked;
    bt_offline_check(f->od, on_checked, f);
    assert_int_equal(f->checked, before); /* never inside the call */
    wait_until(f, &f->checked, before + 1, 10000, "the check");
}

static void on_change(void *ud, int offline, const char *reason)
{
    fx *f = ud;
    f->changes++;
    f->last_change = offline;
    snprintf(f->change_reason, sizeof f->change_reason, "%s", reason);
}

static json_t *probe_of(const json_t *status, const char *provider)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(status, "probes"), i, p)
    {
        if (strcmp(json_string_value(json_object_get(p, "provider")), provider) == 0)
            return p;
    }
    fail_msg("no probe for provider %s", provider);
    return NULL;
}

/* An openai-type agent at url, remote, of the given provider. */
static void add_agent(bt_strbuf *y, const char *name, const char *provider, const char *url)
{
    bt_strbuf_addf(y,
                   "  %s:\n    type: openai\n    model: m\n    api_key: k\n    base_url: %s\n"
                   "    local: false\n    provider: %s\n",
                   name, url, provider);
}

/* ---------------------------------------------------------------------------------
 * Tests.
 */

static void test_any_answer_is_reachable(void **state)
{
    fx *f = *state;
    srv *s = &f->srv;
    srv_start(&f->loop, s, 0);
    f->srv_on = 1;
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addstr(&y, "offline:\n  mode: auto\nagents:\n");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", s->port);
    add_agent(&y, "remote", "acme", url);
    make(f, y.buf, 0);
    bt_strbuf_release(&y);

    const char *why = NULL;
    assert_int_equal(bt_offline_state(f->od, &why), 0);
    assert_non_null(strstr(why, "not been probed"));
    assert_int_equal(bt_offline_ntargets(f->od), 1);
    check_now(f);
    assert_int_equal(f->offline, 0);
    assert_non_null(strstr(f->reason, "reachable: acme ("));
    assert_non_null(strstr(f->reason, "HTTP 404"));
    assert_int_equal(s->requests, 1);

    json_t *j = bt_offline_json(f->od);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "online");
    assert_false(json_is_true(json_object_get(j, "forced")));
    json_t *p = probe_of(j, "acme");
    assert_true(json_is_true(json_object_get(p, "reachable")));
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(p, "url")), url);
    assert_string_equal(json_string_value(json_object_get(p, "source")), "endpoint");
    assert_true(json_is_string(json_object_get(j, "checked_at")));
    json_decref(j);
}

static void test_refused_and_timeout_are_offline(void **state)
{
    fx *f = *state;
    int hang_fd = -1;
    int closed = closed_port(), silent = silent_port(&hang_fd);
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addstr(&y, "offline:\n  mode: auto\n  probe_timeout: 300ms\nagents:\n");
    char u1[64], u2[64];
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d/v1", closed);
    snprintf(u2, sizeof u2, "http://127.0.0.1:%d/v1", silent);
    add_agent(&y, "a1", "closedco", u1);
    add_agent(&y, "a2", "silentco", u2);
    make(f, y.buf, 0);
    bt_strbuf_release(&y);

    bt_offline_on_change(f->od, on_change, f);
    int64_t t0 = bt_time_mono_ms();
    check_now(f);
    int64_t took = bt_time_mono_ms() - t0;
    assert_int_equal(f->offline, 1);
    assert_true(took < 5000); /* bounded by probe_timeout, not curl's defaults */
    assert_non_null(strstr(f->reason, "no remote provider reachable: "));
    char want[128];
    snprintf(want, sizeof want, "closedco (%s: ", u1);
    assert_non_null(strstr(f->reason, want));
    snprintf(want, sizeof want, "silentco (%s: timed out after 300ms)", u2);
    assert_non_null(strstr(f->reason, want));
    /* the change was reported, with the same reason */
    assert_int_equal(f->changes, 1);
    assert_int_equal(f->last_change, 1);
    assert_string_equal(f->change_reason, f->reason);

    json_t *j = bt_offline_json(f->od);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "offline");
    json_t *p = probe_of(j, "silentco");
    assert_true(json_is_false(json_object_get(p, "reachable")));
    assert_true(json_is_null(json_object_get(p, "status")));
    assert_string_equal(json_string_value(json_object_get(p, "error")), "timed out after 300ms");
    json_decref(j);
    close(hang_fd);
}

static void test_one_reachable_provider_keeps_online(void **state)
{
    fx *f = *state;
    srv *s = &f->srv;
    srv_start(&f->loop, s, 0);
    f->srv_on = 1;
    int closed = closed_port();
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addstr(&y, "offline:\n  mode: auto\nagents:\n");
    char u1[64], u2[64];
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d", closed);
    snprintf(u2, sizeof u2, "http://127.0.0.1:%d", s->port);
    add_agent(&y, "down", "downco", u1);
    add_agent(&y, "up", "upco", u2);
    make(f, y.buf, 0);
    bt_strbuf_release(&y);

    check_now(f);
    assert_int_equal(f->offline, 0);
    assert_non_null(strstr(f->reason, "reachable: upco"));
    assert_non_null(strstr(f->reason, "unreachable: downco"));
    json_t *j = bt_offline_json(f->od);
    assert_true(json_is_false(json_object_get(probe_of(j, "downco"), "reachable")));
    assert_true(json_is_true(json_object_get(probe_of(j, "upco"), "reachable")));
    json_decref(j);
}

static void test_targets(void **state)
{
    fx *f = *state;
    int closed = closed_port();
    char url[64], probe[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", closed);
    snprintf(probe, sizeof probe, "http://127.0.0.1:%d/ping", closed);
    bt_strbuf y = BT_STRBUF_INIT;
    bt_strbuf_addstr(&y, "offline:\n  mode: auto\nagents:\n");
    add_agent(&y, "x1", "shared", url);
    add_agent(&y, "x2", "shared", url);
    add_agent(&y, "y1", "overridden", url);
    /* local: never probed */
    bt_strbuf_addf(&y, "  loc:\n    type: ollama\n    model: m\n    base_url: %s\n", url);
    /* a CLI preset: provider anthropic, no endpoint, the built-in URL */
    bt_strbuf_addstr(&y, "  claude:\n    preset: claude\n    command: /bin/true\n");
    /* a CLI of an unknown provider: nothing to probe */
    bt_strbuf_addstr(&y, "  tool:\n    type: cli\n    command: /bin/true\n");
    bt_strbuf_addf(&y, "providers:\n  overridden:\n    probe_url: %s\n", probe);
    make(f, y.buf, 0);
    bt_strbuf_release(&y);

    assert_int_equal(bt_offline_ntargets(f->od), 3);
    json_t *j = bt_offline_json(f->od);
    assert_int_equal(json_array_size(json_object_get(j, "probes")), 4);
    json_t *p = probe_of(j, "shared");
    assert_int_equal(json_array_size(json_object_get(p, "agents")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "agents"), 1)), "x2");
    p = probe_of(j, "overridden");
    assert_string_equal(json_string_value(json_object_get(p, "url")), probe);
    assert_string_equal(json_string_value(json_object_get(p, "source")), "probe_url");
    p = probe_of(j, "anthropic");
    assert_string_equal(json_string_value(json_object_get(p, "url")), "https://api.anthropic.com");
    assert_string_equal(json_string_value(json_object_get(p, "source")), "built-in");
    p = probe_of(j, "tool");
    assert_true(json_is_null(json_object_get(p, "url")));
    assert_true(json_is_null(json_object_get(p, "reachable")));
    json_decref(j);
    assert_int_equal(f->http_asked, 0); /* nothing probed yet, no client asked for */
}

static void test_only_local_agents(void **state)
{
    fx *f = *state;
    make(f,
         "offline:\n  mode: auto\nagents:\n"
         "  local-code:\n    type: ollama\n    model: m\n    base_url: http://127.0.0.1:1\n",
         0);
    assert_int_equal(bt_offline_ntargets(f->od), 0);
    bt_offline_start(f->od);
    check_now(f);
    assert_int_equal(f->offline, 0);
    assert_non_null(strstr(f->reason, "every configured agent is local"));
    assert_int_equal(f->http_asked, 0);
}

static void test_forced_modes(void **state)
{
    fx *f = *state;
    int closed = closed_port();
    char yaml[512];
    /* --offline: offline without probing, even with offline.mode off */
    snprintf(yaml, sizeof yaml,
             "offline:\n  mode: off\nagents:\n  r:\n    type: openai\n    model: m\n"
             "    api_key: k\n    base_url: http://127.0.0.1:%d\n    local: false\n",
             closed);
    make(f, yaml, 1);
    bt_offline_on_change(f->od, on_change, f);
    const char *why = NULL;
    assert_int_equal(bt_offline_state(f->od, &why), 1);
    assert_string_equal(why, "forced: --offline");
    bt_offline_start(f->od);
    assert_int_equal(f->changes, 0); /* reported from the loop, not inside start */
    wait_until(f, &f->changes, 1, 2000, "the forced state's report");
    assert_int_equal(f->last_change, 1);
    check_now(f);
    assert_int_equal(f->offline, 1);
    json_t *j = bt_offline_json(f->od);
    assert_true(json_is_true(json_object_get(j, "forced")));
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "offline");
    json_decref(j);
    assert_int_equal(f->http_asked, 0);
    bt_offline_free(f->od);
    f->od = NULL;
    bt_agents_free(f->agents);
    f->agents = NULL;
    bt_config_free(f->cfg);
    f->cfg = NULL;

    /* offline.mode on */
    snprintf(yaml, sizeof yaml, "offline:\n  mode: on\n");
    make(f, yaml, 0);
    check_now(f);
    assert_int_equal(f->offline, 1);
    assert_string_equal(f->reason, "forced: offline.mode on / BATON_OFFLINE");
    bt_offline_free(f->od);
    f->od = NULL;
    bt_agents_free(f->agents);
    f->agents = NULL;
    bt_config_free(f->cfg);
    f->cfg = NULL;

    /* offline.mode off: a provider that cannot be reached changes nothing */
    snprintf(yaml, sizeof yaml,
             "offline:\n  mode: off\nagents:\n  r:\n    type: openai\n    model: m\n"
             "    api_key: k\n    base_url: http://127.0.0.1:%d\n    local: false\n",
             closed);
    make(f, yaml, 0);
    bt_offline_start(f->od);
    check_now(f);
    assert_int_equal(f->offline, 0);
    assert_non_null(strstr(f->reason, "offline.mode off"));
    assert_int_equal(f->http_asked, 0);
}

typedef struct evs {
    int done;
    json_t *list;
} evs;

static void on_events(void *ud, int rc, const bt_error *err, bt_event *const *ev, size_t n)
{
    evs *e = ud;
    if (rc < 0)
        fail_msg("reading events: %s", err->msg);
    e->list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(e->list, bt_event_to_json(ev[i]));
    e->done = 1;
}

static void test_periodic_flip_with_events(void **state)
{
    fx *f = *state;
    char *dir = bt_test_tmpdir("offline");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "sqlite:%s/store.db", dir);
    bt_store *store = NULL;
    bt_error err = BT_ERROR_INIT;
    if (bt_store_open(&f->loop, sb.buf, NULL, &store, &err) < 0)
        fail_msg("store: %s", err.msg);
    bt_strbuf_release(&sb);

    int port = closed_port();
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "offline:\n  mode: auto\n  probe_interval: 100ms\n  probe_timeout: 1s\n"
             "agents:\n  r:\n    type: openai\n    model: m\n    api_key: k\n"
             "    base_url: http://127.0.0.1:%d\n    local: false\n",
             port);
    static char *const noenv[] = {NULL};
    bt_config_problems probs = {0};
    assert_int_equal(
        bt_config_load_string("t.yaml", yaml, strlen(yaml), noenv, &f->cfg, &probs, &err), 0);
    bt_agent_env ae = {.loop = &f->loop, .http = f->http, .cfg = f->cfg};
    f->agents = bt_agents_new(&ae);
    bt_offline_env env = {.loop = &f->loop,
                          .cfg = f->cfg,
                          .agents = f->agents,
                          .http = get_http,
                          .http_ud = f,
                          .store = store};
    assert_int_equal(bt_offline_new(&env, &f->od, &err), 0);
    bt_offline_on_change(f->od, on_change, f);
    bt_offline_start(f->od);
    wait_until(f, &f->changes, 1, 5000, "going offline");
    assert_int_equal(f->last_change, 1);
    assert_int_equal(bt_offline_state(f->od, NULL), 1);

    /* the provider comes up on the same port: the next round finds it */
    srv *s = &f->srv;
    srv_start(&f->loop, s, port);
    f->srv_on = 1;
    wait_until(f, &f->changes, 2, 5000, "coming back online");
    assert_int_equal(f->last_change, 0);
    assert_non_null(strstr(f->change_reason, "reachable: r ("));
    assert_true(s->requests >= 1);
    /* and stays online: no further change */
    int before = s->requests;
    wait_until(f, &s->requests, before + 2, 5000, "two more probe rounds");
    assert_int_equal(f->changes, 2);

    evs e = {0};
    bt_event_filter flt = {.type_prefix = "offline."};
    bt_store_event_read(store, &flt, on_events, &e);
    wait_until(f, &e.done, 1, 5000, "the events");
    assert_int_equal(json_array_size(e.list), 2);
    json_t *d0 = json_object_get(json_array_get(e.list, 0), "data");
    json_t *d1 = json_object_get(json_array_get(e.list, 1), "data");
    assert_string_equal(json_string_value(json_object_get(json_array_get(e.list, 0), "type")),
                        "offline.changed");
    assert_true(json_is_true(json_object_get(d0, "offline")));
    assert_non_null(strstr(json_string_value(json_object_get(d0, "reason")), "no remote provider"));
    assert_true(json_is_false(json_object_get(d1, "offline")));
    json_decref(e.list);

    bt_offline_free(f->od); /* cancels a probe in flight, if any */
    f->od = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    bt_store_close(store);
    bt_test_rmdir(dir);
}

static void test_free_with_probe_in_flight(void **state)
{
    fx *f = *state;
    int hang_fd = -1;
    int silent = silent_port(&hang_fd);
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "offline:\n  mode: auto\n  probe_timeout: 10s\nagents:\n  r:\n    type: openai\n"
             "    model: m\n    api_key: k\n    base_url: http://127.0.0.1:%d\n    local: false\n",
             silent);
    make(f, yaml, 0);
    bt_offline_check(f->od, on_checked, f);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    bt_offline_free(f->od); /* the check's callback is dropped, memory released later */
    f->od = NULL;
    int64_t t0 = bt_time_mono_ms();
    while (bt_http_client_pending(f->http) > 0 && bt_time_mono_ms() - t0 < 2000)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(bt_http_client_pending(f->http), 0);
    assert_int_equal(f->checked, 0);
    close(hang_fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_any_answer_is_reachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_and_timeout_are_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_reachable_provider_keeps_online, setup, teardown),
        cmocka_unit_test_setup_teardown(test_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_local_agents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forced_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_flip_with_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_probe_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
