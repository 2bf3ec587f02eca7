/*
 * vec.c - growth for BT_VEC and the bt_strvec string vector (see vec.h).
 */
#include "base/vec.h"

#include "base/mem.h"
#include "base/strbuf.h"

#include <ctype.h>
#include <stdarg.h>
#include <string.h>

void bt_vec_grow_(void **items, size_t *cap, size_t need, size_t elsize)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    *items = bt_xrealloc(*items, c * elsize);
    *cap = c;
}

void bt_strvec_push_owned(bt_strvec *sv, char *s)
{
    bt_vec_grow_((void **)&sv->items, &sv->cap, sv->len + 2, sizeof(char *));
    sv->items[sv->len++] = s;
    sv->items[sv->len] = NULL;
}

void bt_strvec_push(bt_strvec *sv, const char *s)
{
    bt_strvec_push_owned(sv, bt_xstrdup(s));
}

void bt_strvec_pushf(bt_strvec *sv, const char *fmt, ...)
{
    bt_strbuf sb = BT_STRBUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    bt_strbuf_vaddf(&sb, fmt, ap);
    va_end(ap);
    bt_strvec_push_owned(sv, bt_strbuf_detach(&sb, NULL));
}

void bt_strvec_split(bt_strvec *sv, const char *s, char sep)
{
    if (!s)
        return;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, sep);
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *a = p, *b = p + n;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a)
            bt_strvec_push_owned(sv, bt_xstrndup(a, (size_t)(b - a)));
        if (!e)
            break;
        p = e + 1;
    }
}

int bt_strvec_contains(const bt_strvec *sv, const char *s)
{
    for (size_t i = 0; i < sv->len; i++)
        if (strcmp(sv->items[i], s) == 0)
            return 1;
    return 0;
}

const char *bt_strvec_env_get(const bt_strvec *env, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < env->len; i++)
        if (strncmp(env->items[i], key, n) == 0 && env->items[i][n] == '=')
            return env->items[i] + n + 1;
    return NULL;
}

void bt_strvec_clear(bt_strvec *sv)
{
    for (size_t i = 0; i < sv->len; i++)
        free(sv->items[i]);
    free(sv->items);
    sv->items = NULL;
    sv->len = sv->cap = 0;
}
