/*
 * id.c - ULID generation (see id.h) and kernel randomness.
 */
#include "base/id.h"

#include "base/error.h"
#include "base/time.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

int bt_random_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return BT_EIO;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int bt_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[64];
    if (nbytes > sizeof b)
        return BT_EINVAL;
    int rc = bt_random_bytes(b, nbytes);
    if (rc)
        return rc;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

char *bt_id_new(bt_idgen *gen, char out[BT_ID_LEN + 1])
{
    int64_t ms = bt_time_wall_ms();
    uint8_t r[10];
    if (gen && ms <= gen->last_ms) {
        /* Same (or earlier: clock stepped back) millisecond: increment the random part. */
        ms = gen->last_ms;
        memcpy(r, gen->last_rand, sizeof r);
        for (int i = 9; i >= 0; i--)
            if (++r[i] != 0)
                break;
    } else if (bt_random_bytes(r, sizeof r) != 0) {
        memset(r, 0, sizeof r);
    }
    if (gen) {
        gen->last_ms = ms;
        memcpy(gen->last_rand, r, sizeof r);
    }
    /* 128 bits: 48-bit time then 80-bit random, as 26 base32 digits (the first carries 3 bits). */
    uint8_t b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
    memcpy(b + 6, r, 10);
    for (int i = 0; i < 26; i++) {
        int bit = 128 - 5 * (26 - i); /* position of this digit's lowest... start bit */
        int v = 0;
        for (int k = 0; k < 5; k++) {
            int pos = bit + k;
            if (pos < 0)
                continue;
            v |= ((b[pos / 8] >> (7 - pos % 8)) & 1) << (4 - k);
        }
        out[i] = crockford[v];
    }
    out[BT_ID_LEN] = '\0';
    return out;
}

int bt_id_valid(const char *s)
{
    if (!s || strlen(s) != BT_ID_LEN)
        return 0;
    for (int i = 0; i < BT_ID_LEN; i++)
        if (!strchr(crockford, s[i]) || s[i] == '\0')
            return 0;
    return s[0] <= '7';
}
