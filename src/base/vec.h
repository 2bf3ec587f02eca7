/*
 * vec.h - type-generic dynamic arrays, plus bt_strvec (a NULL-terminated vector of
 * owned strings, usable directly as an argv).
 *
 *   BT_VEC(int) v = {0};
 *   bt_vec_push(&v, 42);
 *   for (size_t i = 0; i < v.len; i++) use(v.items[i]);
 *   bt_vec_free(&v);
 *
 * The vector owns its items array, not what the items point to.
 */
#ifndef BT_VEC_H
#define BT_VEC_H

#include <stddef.h>
#include <stdlib.h>

#define BT_VEC(T)                                                                                  \
    struct {                                                                                       \
        T *items;                                                                                  \
        size_t len;                                                                                \
        size_t cap;                                                                                \
    }

void bt_vec_grow_(void **items, size_t *cap, size_t need, size_t elsize);

#define bt_vec_reserve(v, n) bt_vec_grow_((void **)&(v)->items, &(v)->cap, (n), sizeof(*(v)->items))
#define bt_vec_push(v, x)    (bt_vec_reserve((v), (v)->len + 1), (v)->items[(v)->len++] = (x))
#define bt_vec_pop(v)        ((v)->items[--(v)->len])
#define bt_vec_free(v)                                                                             \
    do {                                                                                           \
        free((v)->items);                                                                          \
        (v)->items = NULL;                                                                         \
        (v)->len = (v)->cap = 0;                                                                   \
    } while (0)

typedef struct bt_strvec {
    char **items; /* NULL-terminated once anything was pushed */
    size_t len;
    size_t cap;
} bt_strvec;

#define BT_STRVEC_INIT                                                                             \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Push a copy of s. */
void bt_strvec_push(bt_strvec *sv, const char *s);
void bt_strvec_pushf(bt_strvec *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Take ownership of s (malloc'd). */
void bt_strvec_push_owned(bt_strvec *sv, char *s);
/* Split s on sep, trimming spaces, skipping empty parts. */
void bt_strvec_split(bt_strvec *sv, const char *s, char sep);
int bt_strvec_contains(const bt_strvec *sv, const char *s);
/* In a vector of "K=V" strings (an environment): V of the first K, borrowed; NULL when
 * absent. */
const char *bt_strvec_env_get(const bt_strvec *env, const char *key);
void bt_strvec_clear(bt_strvec *sv);

#endif
