/*
 * test_gzip.c - Accept-Encoding parsing (q-values, x-gzip, "*", look-alike names), which
 * content types are compressed, and that bt_gzip_compress makes a gzip stream zlib
 * inflates back to the same bytes.
 */
#include "testutil.h"

#include "http/gzip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void test_accepted(void **state)
{
    (void)state;
    assert_false(bt_gzip_accepted(NULL));
    assert_false(bt_gzip_accepted(""));
    assert_true(bt_gzip_accepted("gzip"));
    assert_true(bt_gzip_accepted("gzip, deflate, br"));
    assert_true(bt_gzip_accepted("br;q=1.0, GZIP;q=0.5"));
    assert_true(bt_gzip_accepted("x-gzip"));
    assert_true(bt_gzip_accepted("*"));
    assert_true(bt_gzip_accepted(" deflate , gzip ; q=0.1"));
    assert_false(bt_gzip_accepted("identity"));
    assert_false(bt_gzip_accepted("deflate, br"));
    assert_false(bt_gzip_accepted("gzip;q=0"));
    assert_false(bt_gzip_accepted("gzip;q=0.000, identity"));
    assert_false(bt_gzip_accepted("gzipper"));
    assert_false(bt_gzip_accepted("*;q=0"));
}

static void test_compressible(void **state)
{
    (void)state;
    assert_true(bt_gzip_compressible("application/json"));
    assert_true(bt_gzip_compressible("text/html; charset=utf-8"));
    assert_true(bt_gzip_compressible("text/javascript; charset=utf-8"));
    assert_true(bt_gzip_compressible("image/svg+xml"));
    assert_false(bt_gzip_compressible("image/png"));
    assert_false(bt_gzip_compressible("application/octet-stream"));
    assert_false(bt_gzip_compressible(NULL));
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t n = 200000;
    char *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = "{\"id\":\"01M7ZZ\",\"status\":\"pending\"}"[i % 35];
    void *z = NULL;
    size_t zlen = 0;
    assert_int_equal(bt_gzip_compress(in, n, &z, &zlen), 0);
    assert_true(zlen > 18 && zlen < n / 20);
    const unsigned char *zb = z;
    assert_int_equal(zb[0], 0x1f); /* gzip magic */
    assert_int_equal(zb[1], 0x8b);

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
    char *out = malloc(n + 16);
    zs.next_in = z;
    zs.avail_in = (uInt)zlen;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)(n + 16);
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    assert_int_equal(zs.total_out, n);
    assert_memory_equal(out, in, n);
    inflateEnd(&zs);
    free(out);
    free(z);
    free(in);

    /* An empty body is still a valid stream. */
    assert_int_equal(bt_gzip_compress("", 0, &z, &zlen), 0);
    assert_true(zlen > 0);
    free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_compressible),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
