/*
 * embed.c - lookup in the table of embedded files that cmake/embed.cmake generates
 * (gen/bt_embed_data.c, sorted by path), and content types by extension.
 */
#include "base/embed.h"

#include <stdlib.h>
#include <string.h>

/* Defined by the generated file; the sentinel entry after the last is {NULL}. */
extern const bt_embed_file bt_embed__files[];
extern const size_t bt_embed__count;

static int cmp_path(const void *key, const void *elem)
{
    return strcmp(key, ((const bt_embed_file *)elem)->path);
}

const bt_embed_file *bt_embed_find(const char *path)
{
    if (!path)
        return NULL;
    return bsearch(path, bt_embed__files, bt_embed__count, sizeof bt_embed__files[0], cmp_path);
}

const bt_embed_file *bt_embed_list(size_t *n)
{
    *n = bt_embed__count;
    return bt_embed__files;
}

const char *bt_embed_content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".yaml", "application/yaml"},
        {".yml", "application/yaml"},
        {".md", "text/markdown; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}
