/*
 * embed.h - static files compiled into the binary (cmake/embed.cmake): the OpenAPI
 * document, the dashboard (web/), built-in workflows and personas. They are found by
 * their path relative to the source tree, e.g. bt_embed_find("docs/openapi.json").
 *
 * Ownership: everything returned points into read-only data of the binary; nothing is
 * ever freed. data is followed by a NUL byte (not counted in len), so text files can
 * be used as C strings.
 */
#ifndef BT_EMBED_H
#define BT_EMBED_H

#include <stddef.h>

typedef struct bt_embed_file {
    const char *path; /* "web/index.html" */
    const unsigned char *data;
    size_t len;
} bt_embed_file;

/* The file at path, or NULL when it was not embedded. */
const bt_embed_file *bt_embed_find(const char *path);

/* Every embedded file, sorted by path; *n receives the count. */
const bt_embed_file *bt_embed_list(size_t *n);

/* A Content-Type for a path by its extension ("application/json", "text/html;
 * charset=utf-8", ...; "application/octet-stream" when unknown). */
const char *bt_embed_content_type(const char *path);

#endif
