/*
 * models.h - local model endpoints (seed 004 `models status|list|pull|remove`,
 * GET /api/models/status): which Ollama / llama.cpp / OpenAI-compatible servers the
 * configuration uses, whether each is up and ready, which models it has and has
 * loaded, and pulling or removing a model in Ollama's cache. Everything is
 * asynchronous on the HTTP client's loop (api-reference.md §4.3-4.4).
 *
 * Endpoint kinds are detected, not assumed: GET /api/version answers on Ollama;
 * GET /health answers {"status":"ok"} (or 503 "Loading model") on llama.cpp; anything
 * else that answers GET /v1/models is OpenAI-compatible (LocalAI, vLLM, ...).
 */
#ifndef BT_MODELS_H
#define BT_MODELS_H

#include "base/error.h"
#include "config/config.h"

#include <jansson.h>

typedef struct bt_http_client bt_http_client;

/* The local endpoints the configuration uses: every ollama agent's base_url and every
 * openai agent whose host is loopback, a private address or "localhost" (its base_url
 * without a trailing /v1), deduplicated:
 *   [{"url":"http://127.0.0.1:11434","agents":["local"],"models":["qwen2.5-coder:7b"]}]
 * New reference. */
json_t *bt_models_endpoints(const bt_config *cfg);

/* The root of an endpoint URL: trailing '/' and '/v1' removed. Caller frees. */
char *bt_models_root(const char *url);

/* Probe one endpoint (its root URL) through http (required). cb runs once, from a loop callback,
 * with
 *   {"url","kind":"ollama"|"llama.cpp"|"openai"|"unknown","reachable":bool,
 *    "ready":bool,"detail":"...","version":"..."?,
 *    "models":[{"name","size"?,"modified_at"?,"family"?,"parameter_size"?,
 *               "quantization"?}],
 *    "loaded":[{"name","size_vram"?,"expires_at"?}]}       (Ollama only)
 * borrowed for the callback. */
typedef void (*bt_models_status_fn)(json_t *status, void *ud);
void bt_models_status(bt_http_client *http, const char *url, bt_models_status_fn cb, void *ud);

/* Whether a status document (bt_models_status) lists model; an untagged name matches
 * its ":latest" tag as Ollama does ("llama3.2" is "llama3.2:latest"). */
int bt_models_has(json_t *status, const char *model);

/* Join probe results (results[i] answers endpoints[i], as from bt_models_endpoints) with
 * what the configuration wants: each result gains "agents" and "configured_models"
 * ({model: present}). Returns the number of problems: endpoints not ready plus
 * configured models missing. */
int bt_models_annotate(json_t *results, json_t *endpoints);

/* Pull model into the Ollama at url. progress runs for each NDJSON status line
 * (completed/total are -1 when absent); done runs once with 0 or a negative BT_E* and
 * a message ("pull model manifest: file does not exist"). Returns < 0 (and calls
 * nothing) when the request cannot be started. */
typedef void (*bt_models_progress_fn)(const char *status, int64_t completed, int64_t total,
                                      void *ud);
typedef void (*bt_models_done_fn)(int rc, const char *message, void *ud);
int bt_models_pull(bt_http_client *http, const char *url, const char *model,
                   bt_models_progress_fn progress, bt_models_done_fn done, void *ud, bt_error *err);

/* Remove model from the Ollama at url: done(0, "deleted") or done(BT_ENOENT, "model 'x'
 * not found"), or another error. */
int bt_models_remove(bt_http_client *http, const char *url, const char *model,
                     bt_models_done_fn done, void *ud, bt_error *err);

#endif
