/*
 * github.c - the GitHub tracker client (github.h; wire facts in api-reference.md §0-1).
 *
 * Three parts share one rate-limit state:
 *   - requests (gh_req): one HTTP call to the API with GitHub's headers, retried after a
 *     rate-limit pause (RQ_LIMITS) and on transient failures with 1 s, 2 s, 4 s backoff
 *     (RQ_TRANSIENT). Every response's x-ratelimit-* headers update the shared state; a
 *     403/429 that is a rate limit sets paused_until, which every later request honours
 *     before it is sent (a request that may not wait fails at once with BT_EBUSY).
 *   - polling: one listing per watched label (an issue carrying any of them is wanted;
 *     GitHub's labels=a,b would require all), pages followed by the link header's
 *     rel="next" and kept per page URL with their ETag so an unchanged page costs a 304.
 *   - the write queue (gh_job): started, open_pr and finished run one after the other,
 *     each a sequence of requests; a failed part is remembered and the rest still runs.
 *
 * The token goes out only as the bearer token of requests to api_url (pagination links
 * to another origin are refused) and is scrubbed from every comment and message.
 */
#include "trackers/github.h"

#include "base/json.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/strbuf.h"
#include "base/time.h"
#include "config/config.h"
#include "http/client.h"
#include "obs/log.h"
#include "workspace/git.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GH_SOURCE            "github"
#define GH_MARKER            "<!-- baton -->"
#define GH_DEFAULT_API       "https://api.github.com"
#define GH_MAX_PAGES         50
#define GH_LIMIT_TRIES       5
#define GH_TRANSIENT_TRIES   3
#define GH_RESET_SLACK_MS    1000
#define GH_SECONDARY_BASE_MS 60000
#define GH_SECONDARY_MAX_MS  (15 * 60000)
#define GH_TIMEOUT_MS        30000
#define GH_TEXT_MAX          3000
#define GH_DEFAULT_POLL_MS   60000

enum { RQ_LIMITS = 1, RQ_TRANSIENT = 2 };

typedef struct gh_req gh_req;
/* rc 0: a response arrived (r->status says which); rc < 0: err says why (r may be set). */
typedef void (*gh_req_fn)(gh_req *q, int rc, const bt_error *err, const bt_http_response *r);

struct gh_req {
    bt_github *g;
    gh_req *prev, *next; /* g->reqs */
    char *method, *url, *body, *inm;
    int flags;
    int limit_tries, transient_tries;
    uv_timer_t timer;
    bt_http_call *call;
    int fail_rc; /* deliver this failure from the timer */
    bt_error fail_err;
    gh_req_fn cb;
    void *ud;
};

typedef struct gh_page {
    char *etag;
    json_t *items;
    char *next;
    unsigned gen;
} gh_page;

typedef enum { JOB_STEPS, JOB_PR } gh_job_kind;

typedef struct gh_step {
    char *method, *url, *body;
    int ok404;
    char *what;
} gh_step;

typedef struct gh_job {
    bt_github *g;
    struct gh_job *next;
    gh_job_kind kind;
    long number;
    BT_VEC(gh_step) steps;
    size_t at;
    int rc;
    bt_error err;
    /* JOB_PR */
    int phase;
    char *branch, *base, *title, *body;
    bt_error create_err; /* why POST /pulls failed (when no open PR is found either) */
    bt_tracker_done_fn done;
    bt_tracker_pr_fn pr_done;
    void *ud;
} gh_job;

struct bt_github {
    uv_loop_t *loop;
    const bt_config_github *cfg;
    bt_http_client *(*http_fn)(void *ud);
    bt_http_client *http;
    bt_log *log;
    bt_github_item_fn on_item;
    void *ud;
    bt_tracker tracker;

    char *api;       /* api_url without a trailing '/' */
    char *origin;    /* scheme://host[:port]/ of api_url */
    char *repo_path; /* api + "/repos/OWNER/NAME" */
    char *owner;     /* OWNER */
    int64_t poll_ms;

    /* rate limits, as last reported; -1 = unknown */
    int64_t rl_limit, rl_remaining, rl_reset; /* reset: epoch seconds */
    int64_t paused_until;                     /* wall ms; 0 = not paused */
    int secondary_streak;

    gh_req *reqs;
    size_t live; /* requests and handles not yet closed */

    /* polling */
    uv_timer_t poll_timer;
    int poll_timer_on;
    int polling, poll_again;
    size_t poll_label;
    int poll_pages;
    unsigned poll_gen;
    bt_map *poll_seen;
    int64_t poll_count;
    bt_map *pages; /* page URL -> gh_page */
    int64_t last_poll_at;
    char *last_error;
    int64_t issues_seen;

    /* write queue */
    gh_job *job_head, *job_tail, *job;

    /* stop */
    uv_timer_t stop_timer;
    int stopping, stop_notified;
    void (*stop_done)(void *ud);
    void *stop_ud;
};

/* ================= small helpers ================= */

static const char *label_in_progress(const bt_github *g)
{
    return g->cfg->label_in_progress && *g->cfg->label_in_progress ? g->cfg->label_in_progress
                                                                   : "ai-in-progress";
}

static const char *label_completed(const bt_github *g)
{
    return g->cfg->label_completed && *g->cfg->label_completed ? g->cfg->label_completed
                                                               : "ai-completed";
}

static const char *label_failed(const bt_github *g)
{
    return g->cfg->label_failed && *g->cfg->label_failed ? g->cfg->label_failed : "ai-failed";
}

/* Every occurrence of secret (when it is at least 4 bytes) replaced by "***". New. */
static char *scrub_one(const char *text, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 4 || !strstr(text, secret))
        return bt_xstrdup(text);
    bt_strbuf sb = BT_STRBUF_INIT;
    const char *p = text, *hit;
    while ((hit = strstr(p, secret))) {
        bt_strbuf_add(&sb, p, (size_t)(hit - p));
        bt_strbuf_addstr(&sb, "***");
        p = hit + n;
    }
    bt_strbuf_addstr(&sb, p);
    return bt_strbuf_detach(&sb, NULL);
}

/* text without the token or the webhook secret. New. */
static char *scrub(const bt_github *g, const char *text)
{
    char *a = scrub_one(text ? text : "", g->cfg->token);
    char *b = scrub_one(a, g->cfg->webhook_secret);
    free(a);
    return b;
}

static void scrub_err(const bt_github *g, bt_error *err)
{
    if (!err)
        return;
    char *s = scrub(g, err->msg);
    snprintf(err->msg, sizeof err->msg, "%s", s);
    free(s);
}

static void set_last_error(bt_github *g, const char *msg)
{
    free(g->last_error);
    g->last_error = scrub(g, msg);
    bt_log_warn(g->log, "github: request failed", BT_LF_STR("repo", g->cfg->repo),
                BT_LF_STR("error", g->last_error));
}

/* Percent-encode everything outside RFC 3986's unreserved set. */
static void add_encoded(bt_strbuf *sb, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            bt_strbuf_addch(sb, (char)*p);
        } else {
            bt_strbuf_addch(sb, '%');
            bt_strbuf_addch(sb, hex[*p >> 4]);
            bt_strbuf_addch(sb, hex[*p & 15]);
        }
    }
}

/* "scheme://host[:port]/" of an http(s) URL, or NULL. New. */
static char *url_origin(const char *url)
{
    if (!url)
        return NULL;
    size_t skip;
    if (strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else if (strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else
        return NULL;
    const char *host = url + skip;
    size_t hl = strcspn(host, "/?#");
    if (hl == 0)
        return NULL;
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_add(&sb, url, skip + hl);
    bt_strbuf_addch(&sb, '/');
    return bt_strbuf_detach(&sb, NULL);
}

static int prefix_icase(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* The clone URL (config, else derived from api_url). New. */
static char *clone_url(const bt_github *g)
{
    const bt_config_github *c = g->cfg;
    if (c->clone_url && *c->clone_url)
        return bt_xstrdup(c->clone_url);
    bt_strbuf sb = BT_STRBUF_INIT;
    const char *api = g->api;
    size_t n = strlen(api);
    if (strcasecmp(api, GH_DEFAULT_API) == 0)
        bt_strbuf_addstr(&sb, "https://github.com");
    else if (n >= 7 && strcasecmp(api + n - 7, "/api/v3") == 0)
        bt_strbuf_add(&sb, api, n - 7);
    else
        bt_strbuf_addstr(&sb, api);
    bt_strbuf_addf(&sb, "/%s.git", c->repo);
    return bt_strbuf_detach(&sb, NULL);
}

/* Parse a positive issue number; 0 when s is not one. */
static long parse_number(const char *s)
{
    if (!s || !isdigit((unsigned char)*s))
        return 0;
    char *end;
    long n = strtol(s, &end, 10);
    return *end || n <= 0 ? 0 : n;
}

static int label_watched(const bt_github *g, const char *name)
{
    for (size_t i = 0; i < g->cfg->labels.len; i++)
        if (strcasecmp(g->cfg->labels.items[i], name) == 0)
            return 1;
    return 0;
}

static const char *label_name(const json_t *l)
{
    if (json_is_string(l))
        return json_string_value(l);
    return bt_json_str(l, "name", NULL);
}

/* 1 when the issue carries a watched label, 2 when (only) label_in_progress, else 0. */
static int issue_wanted(const bt_github *g, const json_t *issue)
{
    int in_progress = 0;
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(issue, "labels"), i, l)
    {
        const char *name = label_name(l);
        if (!name)
            continue;
        if (label_watched(g, name))
            return 1;
        if (strcasecmp(name, label_in_progress(g)) == 0)
            in_progress = 1;
    }
    return in_progress ? 2 : 0;
}

static void watched_list(const bt_github *g, bt_strbuf *sb)
{
    for (size_t i = 0; i < g->cfg->labels.len; i++)
        bt_strbuf_addf(sb, "%s%s", i ? ", " : "", g->cfg->labels.items[i]);
}

/* A readable error from a GitHub error response: "GitHub answered 422 to POST
 * /repos/acme/app/pulls: Validation Failed (A pull request already exists ...)". */
static int http_error(bt_github *g, const gh_req *q, const bt_http_response *r, bt_error *err)
{
    int code = BT_EIO;
    if (r->status == 401 || r->status == 403)
        code = BT_EPERM;
    else if (r->status == 404 || r->status == 410)
        code = BT_ENOENT;
    else if (r->status == 422 || r->status == 400)
        code = BT_EINVAL;
    const char *path = q->url;
    if (prefix_icase(path, g->api))
        path += strlen(g->api);
    size_t plen = strcspn(path, "?");
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "GitHub answered %ld to %s %.*s", r->status, q->method, (int)plen, path);
    json_t *doc = NULL;
    if (r->body_len && bt_json_parse(r->body, r->body_len, 0, &doc, NULL) == 0 &&
        json_is_object(doc)) {
        const char *m = bt_json_str(doc, "message", NULL);
        if (m)
            bt_strbuf_addf(&sb, ": %s", m);
        json_t *errs = json_object_get(doc, "errors"), *e;
        size_t i;
        int first = 1;
        json_array_foreach(errs, i, e)
        {
            const char *em = bt_json_str(e, "message", NULL);
            const char *ec = bt_json_str(e, "code", NULL);
            const char *ef = bt_json_str(e, "field", NULL);
            if (!em && !ec)
                continue;
            bt_strbuf_addstr(&sb, first ? " (" : "; ");
            first = 0;
            if (em)
                bt_strbuf_addstr(&sb, em);
            else
                bt_strbuf_addf(&sb, "%s%s%s", ec, ef ? " " : "", ef ? ef : "");
        }
        if (!first)
            bt_strbuf_addch(&sb, ')');
    }
    json_decref(doc);
    bt_errorf(err, code, "%s", sb.buf);
    bt_strbuf_release(&sb);
    scrub_err(g, err);
    return code;
}

/* ================= requests ================= */

static void check_stopped(bt_github *g);
static void req_dispatch(gh_req *q);

static void handle_closed(uv_handle_t *h)
{
    bt_github *g = h->data;
    g->live--;
    check_stopped(g);
}

static void req_closed(uv_handle_t *h)
{
    gh_req *q = h->data;
    bt_github *g = q->g;
    free(q->method);
    free(q->url);
    free(q->body);
    free(q->inm);
    free(q);
    g->live--;
    check_stopped(g);
}

static void req_finish(gh_req *q, int rc, const bt_error *err, const bt_http_response *r)
{
    bt_github *g = q->g;
    if (q->prev)
        q->prev->next = q->next;
    else
        g->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    uv_timer_stop(&q->timer);
    q->cb(q, rc, err, r);
    uv_close((uv_handle_t *)&q->timer, req_closed);
}

static void req_timer_cb(uv_timer_t *t)
{
    gh_req *q = t->data;
    if (q->fail_rc)
        req_finish(q, q->fail_rc, &q->fail_err, NULL);
    else
        req_dispatch(q);
}

static void req_fail_later(gh_req *q, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void req_fail_later(gh_req *q, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_verrorf(&q->fail_err, rc, fmt, ap);
    va_end(ap);
    scrub_err(q->g, &q->fail_err);
    q->fail_rc = rc;
    uv_timer_start(&q->timer, req_timer_cb, 0, 0);
}

/* How long every request must still wait for the rate limit (ms; 0 = none). */
static int64_t limit_wait_ms(const bt_github *g)
{
    int64_t now = bt_time_wall_ms(), w = 0;
    if (g->paused_until > now)
        w = g->paused_until - now;
    if (g->rl_remaining == 0 && g->rl_reset > 0) {
        int64_t until = g->rl_reset * 1000 + GH_RESET_SLACK_MS - now;
        if (until > w)
            w = until;
    }
    return w;
}

static int64_t paused_until(const bt_github *g)
{
    int64_t w = limit_wait_ms(g);
    return w > 0 ? bt_time_wall_ms() + w : 0;
}

static void req_http_done(bt_http_call *call, const bt_http_response *r, void *ud);

static void req_dispatch(gh_req *q)
{
    bt_github *g = q->g;
    if (g->stopping) {
        req_fail_later(q, BT_ECANCELED, "GitHub client stopped");
        return;
    }
    if (!q->method) { /* a failure prepared by the caller */
        req_fail_later(q, BT_EINTERNAL, "GitHub request without a method");
        return;
    }
    int64_t wait = limit_wait_ms(g);
    if (wait > 0) {
        if (!(q->flags & RQ_LIMITS)) {
            char at[BT_TIME_ISO_LEN];
            req_fail_later(q, BT_EBUSY, "GitHub rate limit: requests paused until %s",
                           bt_time_format_iso(bt_time_wall_ms() + wait, at));
            return;
        }
        uv_timer_start(&q->timer, req_timer_cb, (uint64_t)wait, 0);
        return;
    }
    if (!g->http)
        g->http = g->http_fn(g->ud);
    if (!g->http) {
        req_fail_later(q, BT_EUNAVAIL, "no HTTP client for GitHub (libcurl missing?)");
        return;
    }
    char inm[512];
    const char *headers[4] = {"Accept: application/vnd.github+json",
                              "X-GitHub-Api-Version: 2022-11-28", NULL, NULL};
    if (q->inm) {
        snprintf(inm, sizeof inm, "If-None-Match: %s", q->inm);
        headers[2] = inm;
    }
    const char *token = g->cfg->token && *g->cfg->token ? g->cfg->token : NULL;
    bt_http_request rq = {.method = q->method,
                          .url = q->url,
                          .headers = headers,
                          .bearer_token = token,
                          .body = q->body,
                          .body_len = q->body ? strlen(q->body) : 0,
                          .timeout_ms = GH_TIMEOUT_MS,
                          .on_done = req_http_done,
                          .ud = q};
    bt_error err = BT_ERROR_INIT;
    if (bt_http_client_send(g->http, &rq, &q->call, &err) < 0) {
        q->call = NULL;
        req_fail_later(q, err.code ? err.code : BT_EIO, "%s", err.msg);
    }
}

static gh_req *req_new(bt_github *g, const char *method, const char *url, const char *body,
                       const char *inm, int flags, gh_req_fn cb, void *ud)
{
    gh_req *q = bt_xcalloc(1, sizeof *q);
    q->g = g;
    q->method = method ? bt_xstrdup(method) : NULL;
    q->url = url ? bt_xstrdup(url) : NULL;
    q->body = body ? bt_xstrdup(body) : NULL;
    q->inm = inm ? bt_xstrdup(inm) : NULL;
    q->flags = flags;
    q->cb = cb;
    q->ud = ud;
    uv_timer_init(g->loop, &q->timer);
    q->timer.data = q;
    q->next = g->reqs;
    if (g->reqs)
        g->reqs->prev = q;
    g->reqs = q;
    g->live++;
    return q;
}

static void req_start(bt_github *g, const char *method, const char *url, const char *body,
                      const char *inm, int flags, gh_req_fn cb, void *ud)
{
    req_dispatch(req_new(g, method, url, body, inm, flags, cb, ud));
}

/* A request that only delivers a failure (from a loop callback). */
static void req_start_failed(bt_github *g, int rc, const char *msg, gh_req_fn cb, void *ud)
{
    gh_req *q = req_new(g, NULL, NULL, NULL, NULL, 0, cb, ud);
    req_fail_later(q, rc, "%s", msg);
}

static int transient_status(long s)
{
    return s == 408 || s == 425 || s == 500 || s == 502 || s == 503 || s == 504;
}

static int body_says_rate_limit(const bt_http_response *r)
{
    if (!r->body_len)
        return 0;
    char *b = bt_xstrndup(r->body, r->body_len > 4096 ? 4096 : r->body_len);
    int hit = strcasestr(b, "rate limit") != NULL;
    free(b);
    return hit;
}

/* For a 403/429: the pause it asks for (ms), or -1 when it is not a rate limit. */
static int64_t rate_limit_delay(bt_github *g, const bt_http_response *r, const char **kind)
{
    if (r->status != 403 && r->status != 429)
        return -1;
    int64_t now = bt_time_wall_ms();
    if (r->retry_after_ms >= 0) {
        *kind = "secondary rate limit";
        return r->retry_after_ms;
    }
    if (r->rate_remaining == 0) {
        *kind = "primary rate limit";
        if (r->rate_reset > 0) {
            int64_t d = r->rate_reset * 1000 + GH_RESET_SLACK_MS - now;
            return d > 0 ? d : GH_RESET_SLACK_MS;
        }
        return GH_SECONDARY_BASE_MS;
    }
    if (r->status == 429 || body_says_rate_limit(r)) {
        *kind = "secondary rate limit";
        int64_t d = GH_SECONDARY_BASE_MS;
        for (int i = 0; i < g->secondary_streak && d < GH_SECONDARY_MAX_MS; i++)
            d *= 2;
        g->secondary_streak++;
        return d < GH_SECONDARY_MAX_MS ? d : GH_SECONDARY_MAX_MS;
    }
    return -1;
}

static void req_http_done(bt_http_call *call, const bt_http_response *r, void *ud)
{
    (void)call;
    gh_req *q = ud;
    bt_github *g = q->g;
    q->call = NULL;
    bt_error err = BT_ERROR_INIT;
    if (r->rc == BT_ECANCELED) {
        bt_errorf(&err, BT_ECANCELED, "%s", r->error);
        req_finish(q, BT_ECANCELED, &err, r);
        return;
    }
    if (r->rc == 0) {
        if (r->rate_limit >= 0)
            g->rl_limit = r->rate_limit;
        if (r->rate_remaining >= 0)
            g->rl_remaining = r->rate_remaining;
        if (r->rate_reset >= 0)
            g->rl_reset = r->rate_reset;
        const char *kind = NULL;
        int64_t delay = rate_limit_delay(g, r, &kind);
        if (delay >= 0) {
            int64_t until = bt_time_wall_ms() + delay;
            if (until > g->paused_until)
                g->paused_until = until;
            char at[BT_TIME_ISO_LEN];
            bt_time_format_iso(g->paused_until, at);
            bt_log_warn(g->log, "github: rate limited; requests paused",
                        BT_LF_STR("repo", g->cfg->repo), BT_LF_STR("kind", kind),
                        BT_LF_STR("until", at), BT_LF_INT("status", r->status));
            if ((q->flags & RQ_LIMITS) && q->limit_tries < GH_LIMIT_TRIES && !g->stopping) {
                q->limit_tries++;
                req_dispatch(q);
                return;
            }
            bt_errorf(&err, BT_EBUSY, "GitHub %s (%ld to %s): requests paused until %s", kind,
                      r->status, q->method, at);
            req_finish(q, BT_EBUSY, &err, r);
            return;
        }
        if (transient_status(r->status) && (q->flags & RQ_TRANSIENT) &&
            q->transient_tries < GH_TRANSIENT_TRIES && !g->stopping) {
            uv_timer_start(&q->timer, req_timer_cb, 1000u << q->transient_tries++, 0);
            return;
        }
        if ((r->status >= 200 && r->status < 300) || r->status == 304)
            g->secondary_streak = 0;
        req_finish(q, 0, NULL, r);
        return;
    }
    if ((q->flags & RQ_TRANSIENT) && q->transient_tries < GH_TRANSIENT_TRIES && !g->stopping) {
        uv_timer_start(&q->timer, req_timer_cb, 1000u << q->transient_tries++, 0);
        return;
    }
    bt_errorf(&err, r->rc, "%s", r->error && *r->error ? r->error : bt_strerror(r->rc));
    scrub_err(g, &err);
    req_finish(q, r->rc, &err, r);
}

/* ================= normalisation ================= */

static int32_t label_priority(const char *l)
{
    static const struct {
        const char *name;
        int32_t prio;
    } table[] = {{"critical", 0}, {"urgent", 0}, {"p0", 0},  {"high", 1}, {"p1", 1}, {"medium", 2},
                 {"normal", 2},   {"p2", 2},     {"low", 3}, {"p3", 3},   {"p4", 4}};
    const char *v;
    if (strncmp(l, "priority:", 9) == 0) {
        v = l + 9;
        while (*v == ' ')
            v++;
    } else if (l[0] == 'p' && isdigit((unsigned char)l[1]) && !l[2]) {
        v = l;
    } else {
        return BT_TRACKER_PRIORITY_NONE;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(v, table[i].name) == 0)
            return table[i].prio;
    return BT_TRACKER_PRIORITY_NONE;
}

int bt_github_normalize(const bt_github *g, const json_t *issue, bt_tracker_item *item,
                        json_t **storage, bt_error *err)
{
    *storage = NULL;
    json_t *num = json_object_get(issue, "number");
    if (!json_is_object(issue) || !json_is_integer(num) || json_integer_value(num) <= 0)
        return bt_errorf(err, BT_EINVAL, "GitHub issue has no number");
    json_int_t n = json_integer_value(num);
    const char *repo = g->cfg->repo;
    json_t *labels = json_array();
    int32_t prio = BT_TRACKER_PRIORITY_NONE;
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(issue, "labels"), i, l)
    {
        const char *name = label_name(l);
        if (!name || !*name)
            continue;
        char *low = bt_str_lower(bt_xstrdup(name));
        int32_t p = label_priority(low);
        if (p < prio)
            prio = p;
        json_array_append_new(labels, json_string(low));
        free(low);
    }
    json_t *body = json_object_get(issue, "body");
    const char *html_url = bt_json_str(issue, "html_url", NULL);
    const json_t *user = json_object_get(issue, "user");
    json_t *meta =
        json_pack("{s:I,s:s,s:o,s:o,s:s}", "issue_number", (json_int_t)n, "repository", repo,
                  "html_url", html_url ? json_string(html_url) : json_null(), "author",
                  bt_json_str(user, "login", NULL) ? json_string(bt_json_str(user, "login", NULL))
                                                   : json_null(),
                  "state", bt_json_str(issue, "state", "open"));
    json_t *st = json_object();
    json_object_set_new(st, "external_id", json_sprintf("%" JSON_INTEGER_FORMAT, n));
    json_object_set_new(st, "identifier", json_sprintf("%s#%" JSON_INTEGER_FORMAT, repo, n));
    json_object_set_new(st, "dedupe_key", json_sprintf("github:%s#%" JSON_INTEGER_FORMAT, repo, n));
    json_object_set_new(st, "title", json_string(bt_json_str(issue, "title", "")));
    json_object_set_new(st, "body",
                        json_string(json_is_string(body) ? json_string_value(body) : ""));
    if (html_url)
        json_object_set_new(st, "url", json_string(html_url));
    json_object_set_new(st, "labels", labels);
    json_object_set_new(st, "meta", meta);
    memset(item, 0, sizeof *item);
    item->source = GH_SOURCE;
    item->external_id = bt_json_str(st, "external_id", "");
    item->identifier = bt_json_str(st, "identifier", "");
    item->dedupe_key = bt_json_str(st, "dedupe_key", "");
    item->title = bt_json_str(st, "title", "");
    item->body = bt_json_str(st, "body", "");
    item->url = bt_json_str(st, "url", NULL);
    item->labels = labels;
    item->priority = prio;
    item->meta = meta;
    *storage = st;
    return 0;
}

/* ================= polling ================= */

static void page_free(void *p)
{
    gh_page *pg = p;
    free(pg->etag);
    json_decref(pg->items);
    free(pg->next);
    free(pg);
}

/* rel="next" of a link header (new), or NULL. */
static char *link_next(const char *link)
{
    const char *p = link;
    while (p && (p = strchr(p, '<'))) {
        const char *end = strchr(p, '>');
        if (!end)
            return NULL;
        const char *params = end + 1;
        const char *stop = strchr(params, '<');
        size_t plen = stop ? (size_t)(stop - params) : strlen(params);
        /* rel="next" or rel=next, possibly among other space-separated relations */
        char *seg = bt_xstrndup(params, plen);
        const char *rel = strcasestr(seg, "rel=");
        int hit = 0;
        if (rel) {
            rel += 4;
            int quoted = *rel == '"';
            if (quoted)
                rel++;
            size_t vl = quoted ? strcspn(rel, "\"") : strcspn(rel, " ;,");
            char *val = bt_xstrndup(rel, vl);
            for (char *tok = strtok(val, " "); tok; tok = strtok(NULL, " "))
                if (strcasecmp(tok, "next") == 0)
                    hit = 1;
            free(val);
        }
        free(seg);
        if (hit)
            return bt_xstrndup(p + 1, (size_t)(end - p - 1));
        p = end + 1;
    }
    return NULL;
}

static char *first_page_url(const bt_github *g, const char *label)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "%s/issues?state=open&labels=", g->repo_path);
    add_encoded(&sb, label);
    bt_strbuf_addstr(&sb, "&per_page=100&sort=created&direction=asc");
    return bt_strbuf_detach(&sb, NULL);
}

static void poll_fetch(bt_github *g, const char *url);

static void poll_end(bt_github *g)
{
    g->polling = 0;
    bt_map_free(g->poll_seen);
    g->poll_seen = NULL;
}

static void poll_fail(bt_github *g, const char *msg)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "poll of %s failed: %s", g->cfg->repo, msg);
    set_last_error(g, sb.buf);
    bt_strbuf_release(&sb);
    g->poll_again = 0;
    poll_end(g);
}

static void poll_start(bt_github *g);

static void poll_done(bt_github *g)
{
    g->last_poll_at = bt_time_wall_ms();
    g->issues_seen = g->poll_count;
    BT_FREE(g->last_error);
    /* forget pages this poll did not visit (the listing shrank) */
    bt_strvec stale = BT_STRVEC_INIT;
    bt_map_iter it = {0};
    while (bt_map_next(g->pages, &it)) {
        const gh_page *pg = it.val;
        if (pg->gen != g->poll_gen)
            bt_strvec_push(&stale, it.key);
    }
    for (size_t i = 0; i < stale.len; i++)
        bt_map_del(g->pages, stale.items[i]);
    bt_strvec_clear(&stale);
    bt_log_debug(g->log, "github: polled", BT_LF_STR("repo", g->cfg->repo),
                 BT_LF_INT("issues", g->poll_count));
    poll_end(g);
    if (g->poll_again && !g->stopping) {
        g->poll_again = 0;
        poll_start(g);
    }
}

static void poll_emit(bt_github *g, const json_t *items)
{
    size_t i;
    json_t *issue;
    json_array_foreach(items, i, issue)
    {
        if (!json_is_object(issue) || json_object_get(issue, "pull_request"))
            continue;
        bt_tracker_item item;
        json_t *st;
        bt_error err = BT_ERROR_INIT;
        if (bt_github_normalize(g, issue, &item, &st, &err) < 0) {
            bt_log_warn(g->log, "github: issue skipped", BT_LF_STR("repo", g->cfg->repo),
                        BT_LF_STR("error", err.msg));
            continue;
        }
        if (!bt_map_has(g->poll_seen, item.external_id)) {
            bt_map_set(g->poll_seen, item.external_id, NULL);
            g->poll_count++;
            if (g->on_item && !g->stopping)
                g->on_item(&item, g->ud);
        }
        json_decref(st);
    }
}

static void poll_page_done(gh_req *q, int rc, const bt_error *err, const bt_http_response *r)
{
    bt_github *g = q->ud;
    if (rc == BT_ECANCELED && g->stopping) {
        poll_end(g);
        return;
    }
    if (rc < 0) {
        poll_fail(g, err->msg);
        return;
    }
    gh_page *pg = bt_map_get(g->pages, q->url);
    if (r->status == 304) {
        if (!pg) {
            poll_fail(g, "GitHub answered 304 for a page baton has not stored");
            return;
        }
    } else if (r->status == 200) {
        json_t *doc = NULL;
        bt_error perr = BT_ERROR_INIT;
        if (bt_json_parse(r->body, r->body_len, 0, &doc, &perr) < 0 || !json_is_array(doc)) {
            json_decref(doc);
            poll_fail(g, "GitHub's issue list is not a JSON array");
            return;
        }
        const char *link = bt_http_response_header(r, "link");
        pg = bt_xcalloc(1, sizeof *pg);
        pg->etag = r->etag ? bt_xstrdup(r->etag) : NULL;
        pg->items = doc;
        pg->next = link ? link_next(link) : NULL;
        bt_map_set(g->pages, q->url, pg);
    } else {
        bt_error herr = BT_ERROR_INIT;
        http_error(g, q, r, &herr);
        poll_fail(g, herr.msg);
        return;
    }
    pg->gen = g->poll_gen;
    char *next = pg->next ? bt_xstrdup(pg->next) : NULL;
    poll_emit(g, pg->items);
    if (g->stopping) {
        free(next);
        poll_end(g);
        return;
    }
    g->poll_pages++;
    if (next && g->poll_pages >= GH_MAX_PAGES) {
        bt_log_warn(g->log, "github: poll stopped at the page limit",
                    BT_LF_STR("repo", g->cfg->repo), BT_LF_INT("pages", GH_MAX_PAGES));
        BT_FREE(next);
    }
    if (next) {
        if (!prefix_icase(next, g->origin)) {
            free(next);
            poll_fail(g, "the link header's next page is not on api_url's host");
            return;
        }
        poll_fetch(g, next);
        free(next);
        return;
    }
    if (++g->poll_label < g->cfg->labels.len) {
        char *url = first_page_url(g, g->cfg->labels.items[g->poll_label]);
        poll_fetch(g, url);
        free(url);
        return;
    }
    poll_done(g);
}

static void poll_fetch(bt_github *g, const char *url)
{
    const gh_page *pg = bt_map_get(g->pages, url);
    req_start(g, "GET", url, NULL, pg ? pg->etag : NULL, RQ_LIMITS, poll_page_done, g);
}

static void poll_start(bt_github *g)
{
    if (g->stopping || !g->on_item || !g->cfg->labels.len)
        return;
    if (g->polling) {
        g->poll_again = 1;
        return;
    }
    int64_t now = bt_time_wall_ms();
    int low = g->rl_limit > 0 && g->rl_remaining >= 0 && g->rl_remaining * 50 < g->rl_limit &&
              g->rl_reset * 1000 > now;
    if (limit_wait_ms(g) > 0 || low) {
        bt_log_debug(g->log, "github: poll skipped (rate limit)", BT_LF_STR("repo", g->cfg->repo),
                     BT_LF_INT("remaining", g->rl_remaining));
        return;
    }
    g->polling = 1;
    g->poll_gen++;
    g->poll_label = 0;
    g->poll_pages = 0;
    g->poll_count = 0;
    g->poll_seen = bt_map_new(NULL);
    char *url = first_page_url(g, g->cfg->labels.items[0]);
    poll_fetch(g, url);
    free(url);
}

static void poll_tick(uv_timer_t *t)
{
    bt_github *g = t->data;
    if (g->polling)
        return; /* a tick while a poll runs is dropped, not queued */
    poll_start(g);
}

void bt_github_poll_now(bt_github *g)
{
    poll_start(g);
}

/* ================= write queue ================= */

static void job_next(bt_github *g);
static void job_run(gh_job *j);

static void job_free(gh_job *j)
{
    for (size_t i = 0; i < j->steps.len; i++) {
        free(j->steps.items[i].method);
        free(j->steps.items[i].url);
        free(j->steps.items[i].body);
        free(j->steps.items[i].what);
    }
    bt_vec_free(&j->steps);
    free(j->branch);
    free(j->base);
    free(j->title);
    free(j->body);
    free(j);
}

static gh_job *job_new(bt_github *g, gh_job_kind kind, long number)
{
    gh_job *j = bt_xcalloc(1, sizeof *j);
    j->g = g;
    j->kind = kind;
    j->number = number;
    return j;
}

static void job_step(gh_job *j, const char *method, const char *path, json_t *body, int ok404,
                     const char *what)
{
    gh_step s = {0};
    s.method = bt_xstrdup(method);
    bt_strbuf url = BT_STRBUF_INIT;
    bt_strbuf_addf(&url, "%s/issues/%ld%s", j->g->repo_path, j->number, path);
    s.url = bt_strbuf_detach(&url, NULL);
    s.body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    s.ok404 = ok404;
    s.what = bt_xstrdup(what);
    bt_vec_push(&j->steps, s);
}

static void job_step_label_delete(gh_job *j, const char *label)
{
    bt_strbuf path = BT_STRBUF_INIT, what = BT_STRBUF_INIT;
    bt_strbuf_addstr(&path, "/labels/");
    add_encoded(&path, label);
    bt_strbuf_addf(&what, "removing label %s", label);
    job_step(j, "DELETE", path.buf, NULL, 1, what.buf);
    bt_strbuf_release(&path);
    bt_strbuf_release(&what);
}

static void job_step_label_add(gh_job *j, const char *label)
{
    bt_strbuf what = BT_STRBUF_INIT;
    bt_strbuf_addf(&what, "adding label %s", label);
    job_step(j, "POST", "/labels", json_pack("{s:[s]}", "labels", label), 0, what.buf);
    bt_strbuf_release(&what);
}

static void job_record(gh_job *j, const char *what, const bt_error *err)
{
    if (j->rc < 0)
        return;
    j->rc = err->code ? err->code : BT_EIO;
    bt_errorf(&j->err, j->rc, "GitHub %s#%ld: %s failed: %s", j->g->cfg->repo, j->number, what,
              err->msg);
    scrub_err(j->g, &j->err);
}

static void job_finish(gh_job *j, const char *url)
{
    bt_github *g = j->g;
    if (g->job == j)
        g->job = NULL;
    if (j->rc < 0 && j->rc != BT_ECANCELED)
        set_last_error(g, j->err.msg);
    if (j->pr_done)
        j->pr_done(j->rc, j->rc < 0 ? &j->err : NULL, j->rc < 0 ? NULL : url, j->ud);
    else if (j->done)
        j->done(j->rc, j->rc < 0 ? &j->err : NULL, j->ud);
    job_free(j);
    job_next(g);
}

static void job_step_done(gh_req *q, int rc, const bt_error *err, const bt_http_response *r)
{
    gh_job *j = q->ud;
    const gh_step *s = &j->steps.items[j->at];
    if (rc == BT_ECANCELED) {
        job_record(j, s->what, err);
        job_finish(j, NULL);
        return;
    }
    if (rc < 0) {
        job_record(j, s->what, err);
    } else if (!(r->status >= 200 && r->status < 300) && !(r->status == 404 && s->ok404)) {
        bt_error herr = BT_ERROR_INIT;
        http_error(j->g, q, r, &herr);
        job_record(j, s->what, &herr);
    }
    j->at++;
    job_run(j);
}

static void job_preset_failed(gh_req *q, int rc, const bt_error *err, const bt_http_response *r)
{
    (void)rc;
    (void)err;
    (void)r;
    job_finish(q->ud, NULL);
}

static void pr_run(gh_job *j);

static void job_run(gh_job *j)
{
    if (j->rc < 0 && j->at == 0 && j->phase == 0 && !j->steps.len && j->kind == JOB_STEPS) {
        req_start_failed(j->g, j->rc, j->err.msg, job_preset_failed, j);
        return;
    }
    if (j->kind == JOB_PR) {
        pr_run(j);
        return;
    }
    if (j->at < j->steps.len) {
        const gh_step *s = &j->steps.items[j->at];
        req_start(j->g, s->method, s->url, s->body, NULL, RQ_LIMITS | RQ_TRANSIENT, job_step_done,
                  j);
        return;
    }
    job_finish(j, NULL);
}

static void job_next(bt_github *g)
{
    if (g->job || !g->job_head)
        return;
    gh_job *j = g->job_head;
    g->job_head = j->next;
    if (!g->job_head)
        g->job_tail = NULL;
    j->next = NULL;
    g->job = j;
    job_run(j);
}

static void job_enqueue(bt_github *g, gh_job *j)
{
    if (g->job_tail)
        g->job_tail->next = j;
    else
        g->job_head = j;
    g->job_tail = j;
    job_next(g);
}

/* ---- open_pr: [GET repo for the default branch] -> POST pulls -> [GET pulls by head] ---- */

static void pr_step_done(gh_req *q, int rc, const bt_error *err, const bt_http_response *r)
{
    gh_job *j = q->ud;
    bt_github *g = j->g;
    bt_error herr = BT_ERROR_INIT;
    if (rc < 0) {
        job_record(j,
                   j->phase == 0   ? "reading the default branch"
                   : j->phase == 1 ? "opening the pull request"
                                   : "finding the open pull request",
                   err);
        job_finish(j, NULL);
        return;
    }
    json_t *doc = NULL;
    if (r->body_len)
        bt_json_parse(r->body, r->body_len, 0, &doc, NULL);
    if (j->phase == 0) {
        const char *b = r->status == 200 ? bt_json_str(doc, "default_branch", NULL) : NULL;
        if (!b) {
            if (r->status == 200)
                bt_errorf(&herr, BT_EPARSE, "GitHub's repository answer has no default_branch");
            else
                http_error(g, q, r, &herr);
            job_record(j, "reading the default branch", &herr);
            json_decref(doc);
            job_finish(j, NULL);
            return;
        }
        j->base = bt_xstrdup(b);
        j->phase = 1;
    } else if (j->phase == 1) {
        const char *url = bt_json_str(doc, "html_url", NULL);
        if (r->status == 201 && url) {
            char *u = bt_xstrdup(url);
            json_decref(doc);
            job_finish(j, u);
            free(u);
            return;
        }
        http_error(g, q, r, &j->create_err);
        if (r->status != 422) {
            job_record(j, "opening the pull request", &j->create_err);
            json_decref(doc);
            job_finish(j, NULL);
            return;
        }
        j->phase = 2; /* perhaps one is already open for this head */
    } else {
        const json_t *first = r->status == 200 ? json_array_get(doc, 0) : NULL;
        const char *url = bt_json_str(first, "html_url", NULL);
        if (url) {
            char *u = bt_xstrdup(url);
            json_decref(doc);
            job_finish(j, u);
            free(u);
            return;
        }
        job_record(j, "opening the pull request", &j->create_err);
        json_decref(doc);
        job_finish(j, NULL);
        return;
    }
    json_decref(doc);
    pr_run(j);
}

static void pr_run(gh_job *j)
{
    bt_github *g = j->g;
    if (j->rc < 0) {
        req_start_failed(g, j->rc, j->err.msg, job_preset_failed, j);
        return;
    }
    bt_strbuf url = BT_STRBUF_INIT;
    if (j->phase == 0 && !j->base) {
        req_start(g, "GET", g->repo_path, NULL, NULL, RQ_LIMITS | RQ_TRANSIENT, pr_step_done, j);
        return;
    }
    if (j->phase == 0)
        j->phase = 1;
    if (j->phase == 1) {
        json_t *body =
            json_pack("{s:s,s:s,s:s,s:s,s:b}", "title", j->title, "head", j->branch, "base",
                      j->base, "body", j->body, "draft", g->cfg->draft_pull_requests ? 1 : 0);
        char *s = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        bt_strbuf_addf(&url, "%s/pulls", g->repo_path);
        req_start(g, "POST", url.buf, s, NULL, RQ_LIMITS | RQ_TRANSIENT, pr_step_done, j);
        free(s);
    } else {
        bt_strbuf_addf(&url, "%s/pulls?state=open&head=", g->repo_path);
        add_encoded(&url, g->owner);
        bt_strbuf_addstr(&url, ":");
        add_encoded(&url, j->branch);
        req_start(g, "GET", url.buf, NULL, NULL, RQ_LIMITS | RQ_TRANSIENT, pr_step_done, j);
    }
    bt_strbuf_release(&url);
}

/* ================= comments ================= */

/* text trimmed of surrounding whitespace and cut to GH_TEXT_MAX bytes (at a character
 * boundary); fenced when it spans lines. */
static void add_block(bt_strbuf *sb, const char *text)
{
    const char *s = text;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    int cut = 0;
    if (n > GH_TEXT_MAX) {
        n = GH_TEXT_MAX;
        while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        cut = 1;
    }
    if (!memchr(s, '\n', n)) {
        bt_strbuf_add(sb, s, n);
        bt_strbuf_addstr(sb, cut ? " …\n" : "\n");
        return;
    }
    size_t run = 0, longest = 0;
    for (size_t i = 0; i < n; i++) {
        run = s[i] == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    size_t fence = longest >= 3 ? longest + 1 : 3;
    for (size_t i = 0; i < fence; i++)
        bt_strbuf_addch(sb, '`');
    bt_strbuf_addch(sb, '\n');
    bt_strbuf_add(sb, s, n);
    bt_strbuf_addch(sb, '\n');
    for (size_t i = 0; i < fence; i++)
        bt_strbuf_addch(sb, '`');
    bt_strbuf_addch(sb, '\n');
    if (cut)
        bt_strbuf_addf(sb, "\n(trimmed to the first %d bytes)\n", GH_TEXT_MAX);
}

static char *comment_body(const bt_github *g, const bt_tracker_outcome *o)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addstr(&sb, GH_MARKER "\n");
    int attempts = o->attempts > 0 ? o->attempts : 1;
    if (o->success) {
        bt_strbuf_addstr(&sb, "baton completed this issue.\n\n");
        if (o->pr_url && *o->pr_url)
            bt_strbuf_addf(&sb, "Pull request: %s\n\n", o->pr_url);
        else if (o->pr_error && *o->pr_error)
            bt_strbuf_addf(&sb, "No pull request was opened: %s\n\n", o->pr_error);
        if (o->branch && *o->branch && !(o->pr_url && *o->pr_url))
            bt_strbuf_addf(&sb, "Branch: `%s`\n\n", o->branch);
        if (o->summary && *o->summary) {
            bt_strbuf_addstr(&sb, "Summary:\n\n");
            add_block(&sb, o->summary);
            bt_strbuf_addch(&sb, '\n');
        }
    } else {
        bt_strbuf_addf(&sb, "baton could not complete this issue after %d attempt%s.\n\n", attempts,
                       attempts == 1 ? "" : "s");
        add_block(&sb, o->error && *o->error ? o->error : "no error message was recorded");
        bt_strbuf_addch(&sb, '\n');
    }
    bt_strbuf_addf(&sb, "Attempts: %d · Tokens: %lld/%lld · Cost: $%.4f\n\n", attempts,
                   (long long)o->tokens_in, (long long)o->tokens_out, o->cost_usd);
    bt_strbuf_addf(&sb, "task %s, run %s\n", o->task_id ? o->task_id : "-",
                   o->run_id ? o->run_id : "-");
    char *out = scrub(g, sb.buf);
    bt_strbuf_release(&sb);
    return out;
}

/* ================= tracker ops ================= */

static gh_job *job_for(bt_github *g, gh_job_kind kind, const char *external_id, const char *op)
{
    long n = parse_number(external_id);
    gh_job *j = job_new(g, kind, n);
    if (!n) {
        j->rc = BT_EINVAL;
        bt_errorf(&j->err, BT_EINVAL, "GitHub %s: '%s' is not an issue number", op,
                  external_id ? external_id : "(null)");
    }
    return j;
}

static void op_started(bt_tracker *t, const char *external_id, const json_t *meta,
                       bt_tracker_done_fn cb, void *ud)
{
    (void)meta;
    bt_github *g = t->self;
    gh_job *j = job_for(g, JOB_STEPS, external_id, "started");
    j->done = cb;
    j->ud = ud;
    if (j->number) {
        /* in-progress first: the issue never looks unwanted in between */
        job_step_label_add(j, label_in_progress(g));
        for (size_t i = 0; i < g->cfg->labels.len; i++)
            job_step_label_delete(j, g->cfg->labels.items[i]);
    }
    job_enqueue(g, j);
}

static void op_open_pr(bt_tracker *t, const bt_tracker_pr *pr, bt_tracker_pr_fn cb, void *ud)
{
    bt_github *g = t->self;
    gh_job *j = job_for(g, JOB_PR, pr->external_id, "open_pr");
    j->pr_done = cb;
    j->ud = ud;
    if (!pr->branch || !*pr->branch) {
        j->rc = BT_EINVAL;
        bt_errorf(&j->err, BT_EINVAL, "GitHub open_pr: no branch to open a pull request from");
    }
    j->branch = bt_xstrdup(pr->branch ? pr->branch : "");
    const char *base = pr->base && *pr->base ? pr->base : g->cfg->base_branch;
    j->base = base && *base ? bt_xstrdup(base) : NULL;
    bt_strbuf s = BT_STRBUF_INIT;
    if (pr->title && *pr->title)
        bt_strbuf_addstr(&s, pr->title);
    else
        bt_strbuf_addf(&s, "Resolve #%ld", j->number);
    j->title = scrub(g, s.buf);
    bt_strbuf_reset(&s);
    if (pr->body && *pr->body)
        bt_strbuf_addstr(&s, pr->body);
    else
        bt_strbuf_addf(&s, "Opened by baton for #%ld.", j->number);
    j->body = scrub(g, s.buf);
    bt_strbuf_release(&s);
    job_enqueue(g, j);
}

static void op_finished(bt_tracker *t, const bt_tracker_outcome *o, bt_tracker_done_fn cb, void *ud)
{
    bt_github *g = t->self;
    gh_job *j = job_for(g, JOB_STEPS, o->external_id, "finished");
    j->done = cb;
    j->ud = ud;
    if (j->number) {
        char *body = comment_body(g, o);
        job_step(j, "POST", "/comments", json_pack("{s:s}", "body", body), 0, "commenting");
        free(body);
        job_step_label_add(j, o->success ? label_completed(g) : label_failed(g));
        job_step_label_delete(j, label_in_progress(g));
        /* and the watched labels, so the next poll does not take the issue again */
        for (size_t i = 0; i < g->cfg->labels.len; i++)
            job_step_label_delete(j, g->cfg->labels.items[i]);
        if (o->success && g->cfg->close_issues)
            job_step(j, "PATCH", "",
                     json_pack("{s:s,s:s}", "state", "closed", "state_reason", "completed"), 0,
                     "closing the issue");
    }
    job_enqueue(g, j);
}

typedef struct refresh_ctx {
    bt_tracker_state_fn cb;
    void *ud;
} refresh_ctx;

static void refresh_done(gh_req *q, int rc, const bt_error *err, const bt_http_response *r)
{
    refresh_ctx *c = q->ud;
    bt_github *g = q->g;
    bt_tracker_state st = BT_TRACKER_UNKNOWN;
    bt_strbuf why = BT_STRBUF_INIT;
    json_t *doc = NULL;
    if (rc < 0) {
        bt_strbuf_addstr(&why, err->msg);
    } else if (r->status == 404 || r->status == 410) {
        st = BT_TRACKER_TERMINAL;
        bt_strbuf_addstr(&why, "issue deleted");
    } else if (r->status == 200 && bt_json_parse(r->body, r->body_len, 0, &doc, NULL) == 0 &&
               json_is_object(doc)) {
        const char *state = bt_json_str(doc, "state", "");
        if (strcmp(state, "closed") == 0) {
            st = BT_TRACKER_TERMINAL;
            bt_strbuf_addstr(&why, "issue closed");
        } else if (issue_wanted(g, doc)) {
            st = BT_TRACKER_ACTIVE;
            bt_strbuf_addstr(&why, "issue open");
        } else {
            st = BT_TRACKER_INACTIVE;
            bt_strbuf_addstr(&why, "label ");
            watched_list(g, &why);
            bt_strbuf_addstr(&why, " removed");
        }
    } else if (r->status == 200) {
        bt_strbuf_addstr(&why, "GitHub's issue answer is not a JSON object");
    } else {
        bt_error herr = BT_ERROR_INIT;
        http_error(g, q, r, &herr);
        bt_strbuf_addstr(&why, herr.msg);
    }
    json_decref(doc);
    char *w = scrub(g, why.buf);
    bt_strbuf_release(&why);
    c->cb(st, w, c->ud);
    free(w);
    free(c);
}

static void op_refresh(bt_tracker *t, const char *external_id, const json_t *meta,
                       bt_tracker_state_fn cb, void *ud)
{
    (void)meta;
    bt_github *g = t->self;
    refresh_ctx *c = bt_xcalloc(1, sizeof *c);
    c->cb = cb;
    c->ud = ud;
    long n = parse_number(external_id);
    if (!n) {
        req_start_failed(g, BT_EINVAL, "not an issue number", refresh_done, c);
        return;
    }
    bt_strbuf url = BT_STRBUF_INIT;
    bt_strbuf_addf(&url, "%s/issues/%ld", g->repo_path, n);
    req_start(g, "GET", url.buf, NULL, NULL, 0, refresh_done, c);
    bt_strbuf_release(&url);
}

static char *op_repo_url(bt_tracker *t, const json_t *meta)
{
    (void)meta;
    return clone_url(t->self);
}

static int op_git_env(bt_tracker *t, const char *repo_url, bt_strvec *env, bt_error *err)
{
    bt_github *g = t->self;
    char *clone = clone_url(g);
    char *prefix = url_origin(clone);
    free(clone);
    if (!prefix)
        return 0; /* a local path or ssh: no token to hand over */
    const char *token = repo_url && prefix_icase(repo_url, prefix) ? g->cfg->token : NULL;
    int rc = bt_git_auth_env(prefix, "x-access-token", token, env, err);
    free(prefix);
    return rc;
}

static const bt_tracker_ops github_ops = {
    .name = GH_SOURCE,
    .started = op_started,
    .open_pr = op_open_pr,
    .finished = op_finished,
    .refresh = op_refresh,
    .repo_url = op_repo_url,
    .git_env = op_git_env,
};

/* ================= lifecycle ================= */

static int repo_valid(const char *repo)
{
    const char *slash = repo ? strchr(repo, '/') : NULL;
    if (!slash || slash == repo || !slash[1] || strchr(slash + 1, '/'))
        return 0;
    for (const char *p = repo; *p; p++)
        if (p != slash && !isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
}

int bt_github_new(const bt_github_opts *o, bt_github **out, bt_error *err)
{
    *out = NULL;
    if (!o || !o->loop || !o->cfg || !o->http)
        return bt_errorf(err, BT_EINVAL, "GitHub tracker: loop, configuration and HTTP required");
    const bt_config_github *c = o->cfg;
    if (!repo_valid(c->repo))
        return bt_errorf(err, BT_EINVAL,
                         "trackers.github.repo '%s' is not OWNER/NAME (for example acme/app)",
                         c->repo ? c->repo : "");
    const char *api = c->api_url && *c->api_url ? c->api_url : GH_DEFAULT_API;
    char *origin = url_origin(api);
    if (!origin)
        return bt_errorf(err, BT_EINVAL,
                         "trackers.github.api_url '%s' is not an http(s) URL (for example %s)", api,
                         GH_DEFAULT_API);
    if (o->on_item && !c->labels.len) {
        free(origin);
        return bt_errorf(err, BT_EINVAL,
                         "trackers.github.labels is empty: polling needs at least one label "
                         "(for example ai-ready)");
    }
    bt_github *g = bt_xcalloc(1, sizeof *g);
    g->loop = o->loop;
    g->cfg = c;
    g->http_fn = o->http;
    g->log = o->log;
    g->on_item = o->on_item;
    g->ud = o->ud;
    g->tracker.ops = &github_ops;
    g->tracker.self = g;
    size_t n = strlen(api);
    while (n && api[n - 1] == '/')
        n--;
    g->api = bt_xstrndup(api, n);
    g->origin = origin;
    bt_strbuf rp = BT_STRBUF_INIT;
    bt_strbuf_addf(&rp, "%s/repos/%s", g->api, c->repo);
    g->repo_path = bt_strbuf_detach(&rp, NULL);
    g->owner = bt_xstrndup(c->repo, strcspn(c->repo, "/"));
    g->poll_ms = c->poll_interval_ms > 0 ? c->poll_interval_ms : GH_DEFAULT_POLL_MS;
    g->rl_limit = g->rl_remaining = g->rl_reset = -1;
    g->pages = bt_map_new(page_free);
    bt_log_add_secret(g->log, c->token);
    bt_log_add_secret(g->log, c->webhook_secret);
    *out = g;
    return 0;
}

int bt_github_start(bt_github *g, bt_error *err)
{
    if (g->stopping)
        return bt_errorf(err, BT_ESTATE, "GitHub tracker is stopping");
    if (!g->on_item || g->poll_timer_on)
        return 0;
    uv_timer_init(g->loop, &g->poll_timer);
    g->poll_timer.data = g;
    g->poll_timer_on = 1;
    g->live++;
    uv_timer_start(&g->poll_timer, poll_tick, 0, (uint64_t)g->poll_ms);
    bt_log_info(g->log, "github: polling", BT_LF_STR("repo", g->cfg->repo),
                BT_LF_INT("interval_ms", g->poll_ms));
    return 0;
}

static void check_stopped(bt_github *g)
{
    if (!g->stopping || g->stop_notified || g->live || g->job || g->job_head)
        return;
    g->stop_notified = 1;
    if (g->stop_done)
        g->stop_done(g->stop_ud);
}

void bt_github_stop(bt_github *g, void (*done)(void *ud), void *ud)
{
    if (g->stopping)
        return;
    g->stopping = 1;
    g->stop_done = done;
    g->stop_ud = ud;
    if (g->poll_timer_on) {
        uv_timer_stop(&g->poll_timer);
        uv_close((uv_handle_t *)&g->poll_timer, handle_closed);
    }
    for (gh_req *q = g->reqs; q; q = q->next) {
        if (q->call)
            bt_http_call_cancel(q->call);
        else if (!q->fail_rc)
            uv_timer_start(&q->timer, req_timer_cb, 0, 0); /* dispatch sees stopping */
    }
    /* done always comes from a loop callback: this handle's close is one */
    uv_timer_init(g->loop, &g->stop_timer);
    g->stop_timer.data = g;
    g->live++;
    uv_close((uv_handle_t *)&g->stop_timer, handle_closed);
}

void bt_github_free(bt_github *g)
{
    if (!g)
        return;
    bt_map_free(g->pages);
    bt_map_free(g->poll_seen);
    free(g->api);
    free(g->origin);
    free(g->repo_path);
    free(g->owner);
    free(g->last_error);
    free(g);
}

bt_tracker *bt_github_tracker(bt_github *g)
{
    return &g->tracker;
}

static json_t *iso_or_null(int64_t wall_ms)
{
    char buf[BT_TIME_ISO_LEN];
    return wall_ms > 0 ? json_string(bt_time_format_iso(wall_ms, buf)) : json_null();
}

static json_t *int_or_null(int64_t v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

json_t *bt_github_status(const bt_github *g)
{
    return json_pack("{s:s,s:o,s:o,s:I,s:{s:o,s:o,s:o},s:o}", "repo", g->cfg->repo, "last_poll_at",
                     iso_or_null(g->last_poll_at), "last_error",
                     g->last_error ? json_string(g->last_error) : json_null(), "issues_seen",
                     (json_int_t)g->issues_seen, "rate_limit", "limit", int_or_null(g->rl_limit),
                     "remaining", int_or_null(g->rl_remaining), "reset",
                     iso_or_null(g->rl_reset > 0 ? g->rl_reset * 1000 : 0), "paused_until",
                     iso_or_null(paused_until(g)));
}

/* ================= webhooks ================= */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int bt_github_verify_signature(const char *secret, const void *body, size_t len, const char *header,
                               bt_error *err)
{
    if (!secret || !*secret)
        return bt_errorf(err, BT_EUNAVAIL,
                         "no webhook secret is configured (trackers.github.webhook_secret)");
    if (!header || !*header)
        return bt_errorf(err, BT_EPERM, "missing X-Hub-Signature-256 header");
    unsigned char want[32];
    int ok = strncmp(header, "sha256=", 7) == 0 && strlen(header + 7) == 64;
    for (size_t i = 0; ok && i < 32; i++) {
        int hi = hexval(header[7 + 2 * i]), lo = hexval(header[8 + 2 * i]);
        if (hi < 0 || lo < 0)
            ok = 0;
        else
            want[i] = (unsigned char)(hi << 4 | lo);
    }
    if (!ok)
        return bt_errorf(err, BT_EPERM,
                         "X-Hub-Signature-256 is malformed: expected sha256= and 64 hex digits");
    unsigned char got[EVP_MAX_MD_SIZE];
    unsigned int glen = 0;
    static const unsigned char empty[1] = {0};
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body ? body : empty, len, got, &glen) ||
        glen != 32)
        return bt_errorf(err, BT_EINTERNAL, "HMAC-SHA256 failed");
    if (CRYPTO_memcmp(got, want, 32) != 0)
        return bt_errorf(err, BT_EPERM, "X-Hub-Signature-256 does not match the body");
    return 0;
}

static int hook_ignore(bt_github_hook *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int hook_ignore(bt_github_hook *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    out->kind = BT_GITHUB_HOOK_IGNORE;
    out->why = bt_strbuf_detach(&sb, NULL);
    return 0;
}

static void hook_key(const bt_github *g, bt_github_hook *out, json_int_t n)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    bt_strbuf_addf(&sb, "github:%s#%" JSON_INTEGER_FORMAT, g->cfg->repo, n);
    out->dedupe_key = bt_strbuf_detach(&sb, NULL);
}

/* The first line of s, trimmed, equals cmd. */
static int first_line_is(const char *s, const char *cmd)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strcspn(s, "\r\n");
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n == strlen(cmd) && strncmp(s, cmd, n) == 0;
}

static int parse_issue_event(bt_github *g, const json_t *doc, const json_t *issue, json_int_t n,
                             bt_github_hook *out, bt_error *err)
{
    const char *action = bt_json_str(doc, "action", "");
    if (json_object_get(issue, "pull_request"))
        return hook_ignore(out, "pull request, not an issue");
    if (strcmp(action, "closed") == 0) {
        out->kind = BT_GITHUB_HOOK_STOP;
        out->terminal = 1;
        hook_key(g, out, n);
        return 0;
    }
    if (strcmp(action, "unlabeled") == 0) {
        if (issue_wanted(g, issue))
            return hook_ignore(out, "issue still carries a watched or in-progress label");
        out->kind = BT_GITHUB_HOOK_STOP;
        out->terminal = 0;
        hook_key(g, out, n);
        return 0;
    }
    if (strcmp(action, "opened") && strcmp(action, "reopened") && strcmp(action, "labeled"))
        return hook_ignore(out, "action %s", *action ? action : "(none)");
    if (strcmp(bt_json_str(issue, "state", "open"), "open") != 0)
        return hook_ignore(out, "issue is not open");
    if (strcmp(action, "labeled") == 0) {
        const char *l = bt_json_str(json_object_get(doc, "label"), "name", "");
        if (!label_watched(g, l))
            return hook_ignore(out, "label %s is not watched", *l ? l : "(none)");
    } else if (issue_wanted(g, issue) != 1) {
        return hook_ignore(out, "issue has no watched label");
    }
    int rc = bt_github_normalize(g, issue, &out->item, &out->storage, err);
    if (rc < 0)
        return rc;
    out->kind = BT_GITHUB_HOOK_ENQUEUE;
    out->dedupe_key = bt_xstrdup(out->item.dedupe_key);
    return 0;
}

static int parse_comment_event(bt_github *g, const json_t *doc, const json_t *issue, json_int_t n,
                               bt_github_hook *out)
{
    const char *action = bt_json_str(doc, "action", "");
    if (strcmp(action, "created") != 0)
        return hook_ignore(out, "action %s", *action ? action : "(none)");
    if (json_object_get(issue, "pull_request"))
        return hook_ignore(out, "comment on a pull request");
    const json_t *comment = json_object_get(doc, "comment");
    const json_t *user = json_object_get(comment, "user");
    const char *body = bt_json_str(comment, "body", "");
    if (strcmp(bt_json_str(user, "type", ""), "Bot") == 0)
        return hook_ignore(out, "comment by a bot");
    if (strncmp(body, GH_MARKER, strlen(GH_MARKER)) == 0)
        return hook_ignore(out, "baton's own comment");
    if (!first_line_is(body, "/baton retry"))
        return hook_ignore(out, "not a command");
    if (!g->cfg->commands)
        return hook_ignore(out, "commands are disabled (trackers.github.commands)");
    out->kind = BT_GITHUB_HOOK_RETRY;
    hook_key(g, out, n);
    return 0;
}

int bt_github_parse_hook(bt_github *g, const char *event, const char *body, size_t len,
                         bt_github_hook *out, bt_error *err)
{
    memset(out, 0, sizeof *out);
    json_t *doc = NULL;
    if (bt_json_parse(body ? body : "", len, 0, &doc, NULL) < 0 || !json_is_object(doc)) {
        json_decref(doc);
        return bt_errorf(err, BT_EPARSE, "body is not JSON");
    }
    int rc = 0;
    const char *ev = event ? event : "";
    if (strcmp(ev, "ping") == 0) {
        out->kind = BT_GITHUB_HOOK_PING;
        goto done;
    }
    if (strcmp(ev, "issues") && strcmp(ev, "issue_comment")) {
        rc = hook_ignore(out, "event %s", *ev ? ev : "(none)");
        goto done;
    }
    const char *full = bt_json_str(json_object_get(doc, "repository"), "full_name", NULL);
    if (!full) {
        rc = bt_errorf(err, BT_EINVAL, "%s payload has no repository.full_name", ev);
        goto done;
    }
    if (strcasecmp(full, g->cfg->repo) != 0) {
        rc =
            bt_errorf(err, BT_EINVAL, "repository %s is not the configured %s", full, g->cfg->repo);
        goto done;
    }
    const json_t *issue = json_object_get(doc, "issue");
    const json_t *num = json_object_get(issue, "number");
    if (!json_is_integer(num) || json_integer_value(num) <= 0) {
        rc = bt_errorf(err, BT_EINVAL, "%s payload has no issue.number", ev);
        goto done;
    }
    if (strcmp(ev, "issues") == 0)
        rc = parse_issue_event(g, doc, issue, json_integer_value(num), out, err);
    else
        rc = parse_comment_event(g, doc, issue, json_integer_value(num), out);
done:
    json_decref(doc);
    if (rc < 0)
        bt_github_hook_release(out);
    return rc;
}

void bt_github_hook_release(bt_github_hook *h)
{
    if (!h)
        return;
    free(h->dedupe_key);
    free(h->why);
    json_decref(h->storage);
    memset(h, 0, sizeof *h);
}
