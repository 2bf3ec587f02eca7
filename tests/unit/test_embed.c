/*
 * test_embed.c - files compiled into the binary by cmake/embed.cmake: the lookup finds
 * them byte for byte (compared with the source tree), the table is sorted, unknown
 * paths are NULL, and content types follow the extension.
 */
#include "testutil.h"

#include "base/embed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_source(const char *rel, size_t *len)
{
    const char *dir = getenv("BATON_SOURCE_DIR"); /* set by ctest */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = n > 0 && buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    return buf;
}

static void test_openapi_embedded_verbatim(void **state)
{
    (void)state;
    const bt_embed_file *f = bt_embed_find("docs/openapi.json");
    assert_non_null(f);
    assert_string_equal(f->path, "docs/openapi.json");
    assert_int_equal(f->data[f->len], '\0'); /* usable as a C string */
    size_t n = 0;
    char *src = read_source("docs/openapi.json", &n);
    assert_non_null(src);
    assert_int_equal(f->len, n);
    assert_memory_equal(f->data, src, n);
    free(src);
}

static void test_lookup(void **state)
{
    (void)state;
    assert_null(bt_embed_find("docs/nope.json"));
    assert_null(bt_embed_find(""));
    assert_null(bt_embed_find(NULL));
    size_t n = 0;
    const bt_embed_file *all = bt_embed_list(&n);
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(all[i - 1].path, all[i].path) < 0);
        assert_ptr_equal(bt_embed_find(all[i].path), &all[i]); /* every entry findable */
    }
}

static void test_content_types(void **state)
{
    (void)state;
    assert_string_equal(bt_embed_content_type("web/index.html"), "text/html; charset=utf-8");
    assert_string_equal(bt_embed_content_type("docs/openapi.json"), "application/json");
    assert_string_equal(bt_embed_content_type("web/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(bt_embed_content_type("workflows/default.yaml"), "application/yaml");
    assert_string_equal(bt_embed_content_type("web.d/noext"), "application/octet-stream");
    assert_string_equal(bt_embed_content_type("LICENSE"), "application/octet-stream");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openapi_embedded_verbatim),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_content_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
