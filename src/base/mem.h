/*
 * mem.h - allocation wrappers.
 *
 * Policy: running out of memory is not a recoverable condition for a daemon of this
 * size; bt_xmalloc and friends print one line and abort() (never exit(), so core
 * dumps and sanitizers see it). Everything else reports errors by return code.
 */
#ifndef BT_MEM_H
#define BT_MEM_H

#include <stddef.h>

void *bt_xmalloc(size_t n);
void *bt_xcalloc(size_t count, size_t size);
void *bt_xrealloc(void *p, size_t n);
/* Returns a malloc'd copy (caller frees); NULL in gives NULL out. */
char *bt_xstrdup(const char *s);
char *bt_xstrndup(const char *s, size_t n);

/* Free *p and set it to NULL. */
#define BT_FREE(p)                                                                                 \
    do {                                                                                           \
        free(p);                                                                                   \
        (p) = NULL;                                                                                \
    } while (0)

#endif
