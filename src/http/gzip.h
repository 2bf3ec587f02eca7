/*
 * gzip.h - gzip compression of response bodies (zlib), and reading a request's
 * Accept-Encoding. The server compresses JSON and text bodies for clients that accept
 * gzip (a dashboard's task list shrinks about tenfold); ui.c keeps the compressed form
 * of each dashboard file.
 */
#ifndef BT_HTTP_GZIP_H
#define BT_HTTP_GZIP_H

#include <stddef.h>

/* Bodies shorter than this are sent as they are: gzip's framing would eat the gain. */
#define BT_GZIP_MIN_BYTES 1024

/* Does an Accept-Encoding header value (NULL = absent) accept gzip? "gzip", "x-gzip" or
 * "*" with a q-value other than 0. */
int bt_gzip_accepted(const char *accept_encoding);

/* Is a Content-Type worth compressing (text, JSON, JavaScript, SVG, YAML)? */
int bt_gzip_compressible(const char *content_type);

/* Compress n bytes at in into a gzip stream. *out (malloc'd, caller frees) and *outlen on
 * success (0); BT_ENOMEM-free by policy (allocation failure aborts), BT_EINTERNAL when zlib
 * refuses. */
int bt_gzip_compress(const void *in, size_t n, void **out, size_t *outlen);

#endif
