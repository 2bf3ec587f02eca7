/*
 * gzip.c - gzip compression of response bodies with zlib (see gzip.h).
 */
#include "http/gzip.h"

#include "base/error.h"
#include "base/mem.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* One coding of an Accept-Encoding list ("gzip;q=0.5"): its name and whether q > 0. */
static int coding_accepts(const char *p, size_t n, const char *name)
{
    size_t nl = strlen(name);
    while (n && isspace((unsigned char)*p)) {
        p++;
        n--;
    }
    if (n < nl || strncasecmp(p, name, nl) != 0)
        return 0;
    p += nl;
    n -= nl;
    while (n && isspace((unsigned char)*p)) {
        p++;
        n--;
    }
    if (n == 0)
        return 1;
    if (*p != ';')
        return 0; /* a longer name with the same prefix */
    /* Parameters: only q matters; q=0 (0, 0.0, 0.00...) refuses. */
    const char *q = NULL;
    for (size_t i = 0; i + 1 < n; i++)
        if ((p[i] == 'q' || p[i] == 'Q') && p[i + 1] == '=') {
            q = p + i + 2;
            break;
        }
    if (!q)
        return 1;
    return strtod(q, NULL) > 0.0;
}

int bt_gzip_accepted(const char *accept_encoding)
{
    if (!accept_encoding)
        return 0;
    const char *p = accept_encoding;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (coding_accepts(p, n, "gzip") || coding_accepts(p, n, "x-gzip") ||
            coding_accepts(p, n, "*"))
            return 1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

int bt_gzip_compressible(const char *content_type)
{
    if (!content_type)
        return 0;
    static const char *const types[] = {"text/", "application/json", "application/yaml",
                                        "image/svg+xml", "application/javascript"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strncasecmp(content_type, types[i], strlen(types[i])) == 0)
            return 1;
    return 0;
}

int bt_gzip_compress(const void *in, size_t n, void **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 15 + 16: a gzip header and trailer; level 5 is most of level 9's ratio on JSON for
     * a third of its time (the loop thread pays for it). */
    if (deflateInit2(&zs, 5, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return BT_EINTERNAL;
    size_t cap = deflateBound(&zs, (uLong)n);
    unsigned char *buf = bt_xmalloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    size_t got = cap - zs.avail_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        return BT_EINTERNAL;
    }
    *out = buf;
    *outlen = got;
    return 0;
}
