/*
 * json.h - small helpers over jansson.
 *
 * Ownership follows jansson: functions returning json_t* return a new reference the
 * caller must json_decref; "borrowed" results must not be decref'd.
 */
#ifndef BT_JSON_H
#define BT_JSON_H

#include "base/error.h"

#include <jansson.h>
#include <stdint.h>

/* Parse a buffer, refusing nesting deeper than max_depth (0 = 64). The error message
 * carries line and column. *out is a new reference. */
int bt_json_parse(const char *buf, size_t len, int max_depth, json_t **out, bt_error *err);

/* Compact serialisation; caller frees the result with free(). Never NULL. */
char *bt_json_dumps(const json_t *v);

/* Borrowed lookups with defaults (wrong type counts as absent). */
const char *bt_json_str(const json_t *obj, const char *key, const char *dflt);
int64_t bt_json_int(const json_t *obj, const char *key, int64_t dflt);
int bt_json_bool(const json_t *obj, const char *key, int dflt);

/* Depth of a value: scalars 0, [] 1, [[1]] 2. */
int bt_json_depth(const json_t *v);

/* {"error":{"code":code,"message":message}} as a new reference. */
json_t *bt_json_error(const char *code, const char *message);

#endif
