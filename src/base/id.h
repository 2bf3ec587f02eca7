/*
 * id.h - sortable unique ids (ULID: 48-bit millisecond time + 80 random bits, Crockford
 * base32, 26 characters). Ids sort by creation time as strings. A bt_idgen keeps ids
 * strictly increasing within one generator even inside one millisecond; it is a plain
 * value the caller owns (no hidden global state).
 */
#ifndef BT_ID_H
#define BT_ID_H

#include <stddef.h>
#include <stdint.h>

#define BT_ID_LEN 26

typedef struct bt_idgen {
    int64_t last_ms;
    uint8_t last_rand[10];
} bt_idgen;

#define BT_IDGEN_INIT                                                                              \
    {                                                                                              \
        0,                                                                                         \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }

/* Write a new id (BT_ID_LEN chars + NUL) into out. gen may be NULL (no monotonicity). */
char *bt_id_new(bt_idgen *gen, char out[BT_ID_LEN + 1]);
/* 1 when s looks like an id (26 Crockford base32 characters). */
int bt_id_valid(const char *s);
/* n random bytes from the kernel. Returns 0 or BT_EIO. */
int bt_random_bytes(void *buf, size_t n);
/* 2n lowercase hex characters + NUL into out. */
int bt_random_hex(char *out, size_t nbytes);

#endif
