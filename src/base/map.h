/*
 * map.h - string-keyed hash map (open addressing, linear probing, FNV-1a).
 *
 * The map copies keys and owns them. Values are opaque pointers; when a free_val
 * function is given the map owns values too and frees them on overwrite, delete and
 * bt_map_free. Iteration order is unspecified; use bt_map_keys_sorted for stable output.
 */
#ifndef BT_MAP_H
#define BT_MAP_H

#include <stddef.h>

typedef struct bt_map bt_map;
typedef void (*bt_map_free_fn)(void *val);

typedef struct bt_map_iter {
    size_t pos;
    const char *key; /* borrowed from the map */
    void *val;
} bt_map_iter;

bt_map *bt_map_new(bt_map_free_fn free_val);
void bt_map_free(bt_map *m);
/* Insert or replace. */
void bt_map_set(bt_map *m, const char *key, void *val);
/* NULL when absent. */
void *bt_map_get(const bt_map *m, const char *key);
int bt_map_has(const bt_map *m, const char *key);
/* Returns 1 when something was removed. */
int bt_map_del(bt_map *m, const char *key);
size_t bt_map_len(const bt_map *m);
/* Start with (bt_map_iter){0}; returns 0 when done. Do not modify the map meanwhile. */
int bt_map_next(const bt_map *m, bt_map_iter *it);
/* Sorted array of borrowed key pointers; caller frees the array (not the keys). */
const char **bt_map_keys_sorted(const bt_map *m, size_t *n);

#endif
