/*
 * map.c - open-addressing string hash map (see map.h). Deletion uses backward-shift
 * so there are no tombstones and lookups stay short.
 */
#include "base/map.h"

#include "base/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    char *key;
    void *val;
    uint64_t hash;
} slot;

struct bt_map {
    slot *slots;
    size_t cap; /* power of two */
    size_t len;
    bt_map_free_fn free_val;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

bt_map *bt_map_new(bt_map_free_fn free_val)
{
    bt_map *m = bt_xcalloc(1, sizeof *m);
    m->cap = 16;
    m->slots = bt_xcalloc(m->cap, sizeof(slot));
    m->free_val = free_val;
    return m;
}

void bt_map_free(bt_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key) {
            free(m->slots[i].key);
            if (m->free_val)
                m->free_val(m->slots[i].val);
        }
    }
    free(m->slots);
    free(m);
}

static size_t find(const bt_map *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i].key) {
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static void resize(bt_map *m)
{
    slot *old = m->slots;
    size_t oldcap = m->cap;
    m->cap *= 2;
    m->slots = bt_xcalloc(m->cap, sizeof(slot));
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].key)
            continue;
        size_t j = old[i].hash & (m->cap - 1);
        while (m->slots[j].key)
            j = (j + 1) & (m->cap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

void bt_map_set(bt_map *m, const char *key, void *val)
{
    if ((m->len + 1) * 4 > m->cap * 3)
        resize(m);
    uint64_t h = fnv1a(key);
    size_t i = find(m, key, h);
    if (m->slots[i].key) {
        if (m->free_val && m->slots[i].val != val)
            m->free_val(m->slots[i].val);
        m->slots[i].val = val;
        return;
    }
    m->slots[i].key = bt_xstrdup(key);
    m->slots[i].val = val;
    m->slots[i].hash = h;
    m->len++;
}

void *bt_map_get(const bt_map *m, const char *key)
{
    size_t i = find(m, key, fnv1a(key));
    return m->slots[i].key ? m->slots[i].val : NULL;
}

int bt_map_has(const bt_map *m, const char *key)
{
    return m->slots[find(m, key, fnv1a(key))].key != NULL;
}

int bt_map_del(bt_map *m, const char *key)
{
    size_t mask = m->cap - 1, i = find(m, key, fnv1a(key));
    if (!m->slots[i].key)
        return 0;
    free(m->slots[i].key);
    if (m->free_val)
        m->free_val(m->slots[i].val);
    m->slots[i].key = NULL;
    m->len--;
    /* Backward-shift the following cluster so probes never cross a hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].key)
            break;
        size_t home = m->slots[j].hash & mask;
        int between = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (between)
            continue;
        m->slots[i] = m->slots[j];
        m->slots[j].key = NULL;
        i = j;
    }
    return 1;
}

size_t bt_map_len(const bt_map *m)
{
    return m->len;
}

int bt_map_next(const bt_map *m, bt_map_iter *it)
{
    while (it->pos < m->cap) {
        slot *s = &m->slots[it->pos++];
        if (s->key) {
            it->key = s->key;
            it->val = s->val;
            return 1;
        }
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **bt_map_keys_sorted(const bt_map *m, size_t *n)
{
    const char **keys = bt_xcalloc(m->len + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            keys[k++] = m->slots[i].key;
    qsort(keys, k, sizeof(char *), cmp_str);
    if (n)
        *n = k;
    return keys;
}
