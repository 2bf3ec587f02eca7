/*
 * llm.h - what the HTTP LLM adapters (openai.c, anthropic.c, ollama.c) share: an
 * incremental Server-Sent-Events parser, an NDJSON line splitter, the request/retry
 * driver that runs one agent turn over bt_http_client, the availability probe, and
 * small helpers (URLs, the user message, provider error messages). Private to
 * src/agents/.
 *
 * The turn driver (bt_llm_turn_*) owns everything about the HTTP exchange of a run:
 *   - one POST per attempt, streamed through the adapter's data callback;
 *   - transient failures (transport errors, 408/425/429/5xx, a stream that ended early,
 *     an adapter-reported transient stream error) are retried up to max_attempts,
 *     waiting at least Retry-After when the server sent one, else exponential backoff
 *     with jitter (0.5 s, 1 s, 2 s ... up to 8 s, each less up to a quarter at random,
 *     as the providers' own SDKs do); each retry is announced with a
 *     BT_AGENT_EV_STATUS event ("HTTP 429 rate limited; retrying in 1.0 s (attempt 2
 *     of 3)"); permanent failures are never retried; a retry that would outlast the
 *     turn's deadline, or a Retry-After over 60 s, ends the turn instead (transient,
 *     with the result's retry_after_ms set so the caller can reschedule);
 *   - the whole turn is bounded by run->timeout_ms (uv timer: BT_AGENT_TIMEOUT), a
 *     stream that stays silent for run->stall_timeout_ms fails with BT_AGENT_TIMEOUT;
 *   - cancel aborts the call in flight or the pending retry;
 *   - a retry after partial output clears run->output; usage is reported once, from
 *     the attempt that ended the turn (never summed over attempts).
 */
#ifndef BT_LLM_H
#define BT_LLM_H

#include "agents/agent_impl.h"
#include "base/strbuf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bt_http_response bt_http_response;

/* Longest SSE line / event data or NDJSON line accepted (bytes). */
#define BT_LLM_MAX_LINE ((size_t)4 << 20)

/* ---- Server-Sent Events ---- */

/* One dispatched event: event is its type ("message" when the stream named none), data
 * the joined data lines (NUL-terminated, len bytes). Both borrowed for the call. Return
 * 0 to go on; non-zero stops parsing and is returned by bt_llm_sse_feed. */
typedef int (*bt_llm_sse_fn)(const char *event, const char *data, size_t len, void *ud);

typedef struct bt_llm_sse {
    bt_strbuf line, event, data; /* the partial line; the event being assembled */
    int have_data;               /* a data field was seen for this event */
    int skip_lf;                 /* the last byte was CR: a following LF ends nothing */
    int started;                 /* past the optional byte-order mark */
    size_t max_line;
    bt_llm_sse_fn fn;
    void *ud; /* borrowed */
} bt_llm_sse;

/* max_line 0 = BT_LLM_MAX_LINE. Lines end in LF, CRLF or CR; ':' lines are comments;
 * "data" lines join with LF; a blank line dispatches; id/retry/unknown fields are
 * ignored; chunk boundaries may fall anywhere, even inside CRLF. */
void bt_llm_sse_init(bt_llm_sse *p, size_t max_line, bt_llm_sse_fn fn, void *ud);
/* 0, the callback's non-zero value, or BT_ETOOBIG when a line or an event's data
 * exceeds max_line (the parser must then be reset before reuse). */
int bt_llm_sse_feed(bt_llm_sse *p, const char *buf, size_t len);
/* Forget any partial line and event (a new stream begins). */
void bt_llm_sse_reset(bt_llm_sse *p);
void bt_llm_sse_release(bt_llm_sse *p);

/* ---- NDJSON ---- */

/* One line without its LF/CRLF, NUL-terminated, borrowed; blank lines are skipped.
 * Return 0 to go on; non-zero stops and is returned by feed/finish. */
typedef int (*bt_llm_line_fn)(const char *line, size_t len, void *ud);

typedef struct bt_llm_lines {
    bt_strbuf buf;
    size_t max_line;
    bt_llm_line_fn fn;
    void *ud; /* borrowed */
} bt_llm_lines;

void bt_llm_lines_init(bt_llm_lines *p, size_t max_line, bt_llm_line_fn fn, void *ud);
/* 0, the callback's non-zero value, or BT_ETOOBIG for a line longer than max_line. */
int bt_llm_lines_feed(bt_llm_lines *p, const char *buf, size_t len);
/* The stream ended: deliver a last line that had no newline. */
int bt_llm_lines_finish(bt_llm_lines *p);
void bt_llm_lines_reset(bt_llm_lines *p);
void bt_llm_lines_release(bt_llm_lines *p);

/* ---- the turn driver ---- */

typedef struct bt_llm_turn bt_llm_turn;

typedef struct bt_llm_stream_ops {
    /* A new attempt begins: forget what the previous one parsed. Required. */
    void (*reset)(bt_llm_turn *t, void *ud);
    /* A chunk of the 2xx body. Report through bt_llm_turn_text/_usage/_complete/_fail
     * (and bt_agent_run_tool/_set_model on bt_llm_turn_run(t)). Return 0 to go on,
     * non-zero to stop the transfer (after bt_llm_turn_fail). Required. */
    int (*data)(bt_llm_turn *t, const char *buf, size_t len, void *ud);
    /* The 2xx body ended without an HTTP error: flush what is buffered. If the adapter
     * then has called neither _complete nor _fail, the driver fails the attempt as
     * "stream ended early" (transient). May be NULL. */
    void (*end)(bt_llm_turn *t, void *ud);
    /* An HTTP error reply: adjust the class or add to the message (e.g. a hint). msg
     * already holds "HTTP 404 from URL: <provider message>". May be NULL. */
    void (*http_error)(bt_llm_turn *t, long status, const char *body, bt_agent_error_class *cls,
                       bt_strbuf *msg, void *ud);
    /* Release ud when the turn is over (before on_done). May be NULL. */
    void (*free)(void *ud);
} bt_llm_stream_ops;

typedef struct bt_llm_turn_request {
    const char *url;            /* copied */
    const char *const *headers; /* NULL-terminated "Name: value"; copied */
    const char *bearer_token;   /* NULL = none; copied */
    const char *body;           /* the JSON request, the same for every attempt; copied */
    size_t body_len;
    int max_attempts; /* 0 = 3 */
    const bt_llm_stream_ops *ops;
    void *ud; /* the adapter's per-run state: owned by the turn once start succeeds */
} bt_llm_turn_request;

/* Start run's turn (from the adapter's ops->start; needs run->agent->env.http). Sets
 * run->impl. On failure nothing is started, no callback will run and ud is still the
 * caller's. */
int bt_llm_turn_start(bt_agent_run *run, const bt_llm_turn_request *rq, bt_error *err);
/* The adapters' ops->cancel: abort the call in flight or the pending retry. */
void bt_llm_turn_cancel(bt_agent_run *run);

/* For the adapter's callbacks: */
bt_agent_run *bt_llm_turn_run(const bt_llm_turn *t);
const char *bt_llm_turn_url(const bt_llm_turn *t);
/* Assistant text as it arrives: appended to the output and emitted as an event. */
void bt_llm_turn_text(bt_llm_turn *t, const char *text, size_t len);
/* Usage of this attempt so far; a negative value leaves that count unchanged. Reported
 * (bt_agent_run_usage) once when the turn ends. */
void bt_llm_turn_usage(bt_llm_turn *t, int64_t tokens_in, int64_t tokens_out);
/* The stream's terminal marker arrived: the attempt succeeded. */
void bt_llm_turn_complete(bt_llm_turn *t);
/* The attempt failed (an error event, malformed data). The first call wins. */
void bt_llm_turn_fail(bt_llm_turn *t, bt_agent_error_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int bt_llm_turn_failed(const bt_llm_turn *t);
int bt_llm_turn_completed(const bt_llm_turn *t);
/* The first bytes (up to 256) of this attempt's 2xx body, for error messages. */
const char *bt_llm_turn_head(const bt_llm_turn *t);

/* ---- availability probe ---- */

/* Judge a 2xx probe body: return 1 when usable, fill detail ("3 models"). */
typedef int (*bt_llm_probe_fn)(bt_agent *a, const char *body, size_t len, bt_strbuf *detail);

/* GET url (5 s limit) and call cb from a loop callback: unavailable with "no HTTP
 * client", "unreachable: <error>" or "HTTP 401 from URL: <message>", else what judge
 * says. headers/bearer as in bt_llm_turn_request (copied). */
void bt_llm_probe(bt_agent *a, const char *url, const char *const *headers, const char *bearer,
                  bt_llm_probe_fn judge, bt_agent_check_fn cb, void *ud);

/* ---- helpers ---- */

/* Feed an attempt's body chunk to a parser's result rc (from bt_llm_sse_feed or
 * bt_llm_lines_feed): BT_ETOOBIG fails the attempt permanently naming the URL and the
 * limit. Returns what a bt_llm_stream_ops.data callback returns (non-zero = stop). */
int bt_llm_feed_result(bt_llm_turn *t, int rc, const char *what);
/* At the end of an SSE attempt: when no event arrived, fail it permanently with "the
 * answer from URL is not an event stream (hint): <first bytes>". */
void bt_llm_require_events(bt_llm_turn *t, int saw_event, const char *hint);
/* The init-time check every HTTP adapter makes: a model is configured. */
int bt_llm_require_model(const bt_agent *a, const char *type, bt_error *err);

/* base (trailing '/' dropped) + path into out (reset first). */
void bt_llm_url(bt_strbuf *out, const char *base, const char *path);
/* 1 when base ends with suffix, ignoring trailing '/'. */
int bt_llm_base_ends_with(const char *base, const char *suffix);
/* 1 when the URL's host is a hosted provider that needs a key (api.openai.com,
 * api.anthropic.com, *.x.ai). */
int bt_llm_hosted(const char *url);
/* The user message of a run: prompt, then a blank line and context when non-empty. */
void bt_llm_user_message(const bt_agent_run *run, bt_strbuf *out);
/* The human message of a provider error body (OpenAI {"error":{"message","type",
 * "code"}}, Anthropic {"type":"error","error":{"type","message"}}, Ollama
 * {"error":"..."}), else the body's first bytes made printable, or "(empty body)".
 * Appends to out. */
void bt_llm_error_message(const char *body, size_t len, bt_strbuf *out);
/* Append up to max bytes of s with control characters replaced, "..." when cut. */
void bt_llm_snippet(bt_strbuf *out, const char *s, size_t len, size_t max);

#endif
