/*
 * request.h - reading a request's query parameters, path id and JSON body the same way in
 * every route group: each helper returns 0 (the value, or "absent", in *out), or -1 after
 * answering the request itself with 400 (or 404 for an id that cannot exist) and a message
 * naming the field and what it must be.
 *
 * Pointers returned in *out are borrowed from the request or the body object and live as
 * long as they do.
 */
#ifndef BT_API_REQUEST_H
#define BT_API_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bt_http_req bt_http_req;

/* ?name=N, a strict decimal in [lo, hi]; dflt when absent. */
int bt_api_query_int(bt_http_req *req, const char *name, long long lo, long long hi, long long dflt,
                     long long *out);

/* The {id} path parameter; one that is not a valid id answers 404 "no WHAT with id ...". */
const char *bt_api_path_id(bt_http_req *req, const char *what);

/* The body must be an object with no field outside allowed[0..n) (every unknown one is
 * named, with the allowed list). */
int bt_api_check_fields(bt_http_req *req, const json_t *body, const char *const *allowed, size_t n);

/* Optional fields of body o: *out NULL / 0 / BT_PRIORITY_NONE when absent. */
int bt_api_field_str(bt_http_req *req, const json_t *o, const char *key, int non_empty,
                     const char **out);
int bt_api_field_bool(bt_http_req *req, const json_t *o, const char *key, int *out);
int bt_api_field_object(bt_http_req *req, const json_t *o, const char *key, const json_t **out);
/* "labels": an array of non-empty strings. */
int bt_api_field_labels(bt_http_req *req, const json_t *o, const json_t **out);
/* "priority": an integer in [-1000000, 1000000] (lower runs first) or null (unset);
 * *set (may be NULL) = 1 when the field is present, null included. */
int bt_api_field_priority(bt_http_req *req, const json_t *o, int *set, int32_t *out);

#endif
