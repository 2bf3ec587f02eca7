/*
 * test_auth.c - static tokens, scope rules, and HS256 JWTs (a jwt.io reference vector,
 * sign/verify round trips, tampering, alg confusion, exp/nbf, scope claims).
 */
#include "testutil.h"

#include "http/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "0123456789abcdef-secret"

static int64_t fixed_now(void *ud)
{
    return *(int64_t *)ud;
}

static void test_scopes(void **state)
{
    (void)state;
    unsigned s;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_scopes_parse("read write", &s, &err), 0);
    assert_int_equal(s, 3u);
    assert_int_equal(bt_http_scopes_parse("admin,worker", &s, &err), 0);
    assert_int_equal(s, 12u);
    assert_int_equal(bt_http_scopes_parse("read root", &s, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "'root'"));
    assert_true(bt_http_scopes_satisfy(2u, BT_HTTP_SCOPE_READ));   /* write implies read */
    assert_false(bt_http_scopes_satisfy(1u, BT_HTTP_SCOPE_WRITE)); /* read is not write */
    assert_false(bt_http_scopes_satisfy(3u, BT_HTTP_SCOPE_WORKER));
    assert_true(bt_http_scopes_satisfy(4u, BT_HTTP_SCOPE_WORKER));
    assert_true(bt_http_scopes_satisfy(8u, BT_HTTP_SCOPE_WORKER)); /* admin implies all */
    assert_false(bt_http_scopes_satisfy(7u, BT_HTTP_SCOPE_ADMIN));
    assert_true(bt_http_scopes_satisfy(0u, BT_HTTP_SCOPE_NONE));
}

static void test_static_tokens(void **state)
{
    (void)state;
    bt_http_auth *a = bt_http_auth_new();
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_auth_check(a, NULL, BT_HTTP_SCOPE_ADMIN, &err), BT_HTTP_AUTH_OK);
    assert_false(bt_http_auth_enabled(a));
    assert_int_equal(bt_http_auth_add_token(a, "short", "abc", 1, &err), BT_EINVAL);
    assert_int_equal(bt_http_auth_add_token(a, "reader", "read-token-123", 1, &err), 0);
    assert_int_equal(bt_http_auth_add_token(a, "ops", "admin-token-456", 8, &err), 0);
    assert_true(bt_http_auth_enabled(a));
    assert_int_equal(bt_http_auth_check(a, NULL, BT_HTTP_SCOPE_NONE, &err), BT_HTTP_AUTH_OK);
    assert_int_equal(bt_http_auth_check(a, NULL, BT_HTTP_SCOPE_READ, &err),
                     BT_HTTP_AUTH_UNAUTHENTICATED);
    assert_int_equal(bt_http_auth_check(a, "Basic dXNlcjpwYXNz", BT_HTTP_SCOPE_READ, &err),
                     BT_HTTP_AUTH_UNAUTHENTICATED);
    assert_int_equal(bt_http_auth_check(a, "Bearer read-token-12", BT_HTTP_SCOPE_READ, &err),
                     BT_HTTP_AUTH_UNAUTHENTICATED);
    assert_null(strstr(err.msg, "read-token")); /* never echo a credential */
    assert_int_equal(bt_http_auth_check(a, "Bearer read-token-123", BT_HTTP_SCOPE_READ, &err),
                     BT_HTTP_AUTH_OK);
    assert_int_equal(bt_http_auth_check(a, "bearer read-token-123", BT_HTTP_SCOPE_WRITE, &err),
                     BT_HTTP_AUTH_FORBIDDEN);
    assert_non_null(strstr(err.msg, "write"));
    assert_int_equal(bt_http_auth_check(a, "Bearer admin-token-456", BT_HTTP_SCOPE_WORKER, &err),
                     BT_HTTP_AUTH_OK);
    bt_http_auth_free(a);
}

static void test_jwt_reference_vector(void **state)
{
    (void)state;
    /* jwt.io's example: HS256 over {"sub":"1234567890","name":"John Doe","iat":1516239022}
     * with secret "your-256-bit-secret". It has no exp, which baton refuses. */
    const char *jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6"
                      "IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_"
                      "adQssw5c";
    unsigned scopes;
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(
        bt_http_jwt_verify("your-256-bit-secret", jwt, 1516239022, &scopes, NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "exp")); /* signature passed, exp missing */
    assert_int_equal(bt_http_jwt_verify("another-secret", jwt, 1516239022, &scopes, NULL, &err),
                     BT_EPERM);
    assert_non_null(strstr(err.msg, "signature"));
}

static char *sign(json_t *claims)
{
    char *out = NULL;
    assert_int_equal(bt_http_jwt_sign(SECRET, claims, &out, NULL), 0);
    json_decref(claims);
    return out;
}

static void test_jwt_roundtrip(void **state)
{
    (void)state;
    unsigned scopes;
    char *sub = NULL;
    bt_error err = BT_ERROR_INIT;
    char *t = sign(json_pack("{s:s,s:i,s:s}", "sub", "ci-bot", "exp", 2000, "scope", "read write"));
    assert_int_equal(bt_http_jwt_verify(SECRET, t, 1000, &scopes, &sub, &err), 0);
    assert_int_equal(scopes, 3u);
    assert_string_equal(sub, "ci-bot");
    free(sub);
    /* expired (beyond the 30 s leeway) */
    assert_int_equal(bt_http_jwt_verify(SECRET, t, 2031, &scopes, NULL, &err), BT_ETIMEOUT);
    assert_non_null(strstr(err.msg, "expired"));
    assert_int_equal(bt_http_jwt_verify(SECRET, t, 2020, &scopes, NULL, &err), 0);
    /* tampered payload */
    size_t dot = strcspn(t, "."); /* an index: GCC 12 -O2 misreads a pointer here */
    t[dot + 3] = t[dot + 3] == 'A' ? 'B' : 'A';
    assert_int_equal(bt_http_jwt_verify(SECRET, t, 1000, &scopes, NULL, &err), BT_EPERM);
    free(t);

    t = sign(json_pack("{s:i,s:i,s:[s,s]}", "exp", 5000, "nbf", 3000, "scope", "worker", "admin"));
    assert_int_equal(bt_http_jwt_verify(SECRET, t, 1000, &scopes, NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "not valid before"));
    assert_int_equal(bt_http_jwt_verify(SECRET, t, 3500, &scopes, NULL, &err), 0);
    assert_int_equal(scopes, 12u);
    free(t);

    t = sign(json_pack("{s:i,s:s}", "exp", 5000, "scope", "read superuser"));
    assert_int_equal(bt_http_jwt_verify(SECRET, t, 1000, &scopes, NULL, &err), BT_EINVAL);
    free(t);
}

static void test_jwt_alg_and_shape(void **state)
{
    (void)state;
    unsigned scopes;
    bt_error err = BT_ERROR_INIT;
    /* {"alg":"none"}.{"exp":9999999999,"scope":"admin"}. */
    const char *none = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTksInNjb3BlIjoiYWRtaW4ifQ.";
    assert_int_equal(bt_http_jwt_verify(SECRET, none, 1000, &scopes, NULL, &err), BT_EINVAL);
    assert_non_null(strstr(err.msg, "only HS256"));
    assert_int_equal(bt_http_jwt_verify(SECRET, "a.b", 1000, &scopes, NULL, &err), BT_EINVAL);
    assert_int_equal(bt_http_jwt_verify(SECRET, "a.b.c.d", 1000, &scopes, NULL, &err), BT_EINVAL);
    assert_int_equal(bt_http_jwt_verify(SECRET, "!!!.b.c", 1000, &scopes, NULL, &err), BT_EINVAL);
}

static void test_jwt_through_check(void **state)
{
    (void)state;
    bt_http_auth *a = bt_http_auth_new();
    bt_error err = BT_ERROR_INIT;
    assert_int_equal(bt_http_auth_set_jwt_secret(a, "short", &err), BT_EINVAL);
    assert_int_equal(bt_http_auth_set_jwt_secret(a, SECRET, &err), 0);
    int64_t now = 1000;
    bt_http_auth_set_clock(a, fixed_now, &now);
    char *t = sign(json_pack("{s:i,s:s}", "exp", 2000, "scope", "read"));
    char hdr[512];
    snprintf(hdr, sizeof hdr, "Bearer %s", t);
    assert_int_equal(bt_http_auth_check(a, hdr, BT_HTTP_SCOPE_READ, &err), BT_HTTP_AUTH_OK);
    assert_int_equal(bt_http_auth_check(a, hdr, BT_HTTP_SCOPE_WRITE, &err), BT_HTTP_AUTH_FORBIDDEN);
    now = 5000;
    assert_int_equal(bt_http_auth_check(a, hdr, BT_HTTP_SCOPE_READ, &err),
                     BT_HTTP_AUTH_UNAUTHENTICATED);
    assert_non_null(strstr(err.msg, "expired"));
    free(t);
    bt_http_auth_free(a);
}

/* bt_http_auth_scopes: what the dashboard asks through GET /api/whoami. */
static void test_credential_scopes(void **state)
{
    (void)state;
    unsigned s = 99;
    bt_error err = BT_ERROR_INIT;
    bt_http_auth *open = bt_http_auth_new();
    assert_int_equal(bt_http_auth_scopes(open, NULL, &s), 0); /* open API: everything */
    assert_int_equal(s, 15u);
    bt_http_auth_free(open);

    bt_http_auth *a = bt_http_auth_new();
    assert_int_equal(bt_http_auth_add_token(a, "viewer", "read-token-1", 1u, &err), 0);
    assert_int_equal(bt_http_auth_add_token(a, "ci", "write-token-1", 3u, &err), 0);
    assert_int_equal(bt_http_auth_set_jwt_secret(a, SECRET, &err), 0);
    assert_int_equal(bt_http_auth_scopes(a, "Bearer read-token-1", &s), 0);
    assert_int_equal(s, 1u);
    assert_int_equal(bt_http_auth_scopes(a, "bearer  write-token-1", &s), 0);
    assert_int_equal(s, 3u);
    assert_int_equal(bt_http_auth_scopes(a, "Bearer nope-nope-nope", &s), BT_EPERM);
    assert_int_equal(s, 0u);
    assert_int_equal(bt_http_auth_scopes(a, NULL, &s), BT_EPERM);
    assert_int_equal(bt_http_auth_scopes(a, "Basic cmVhZA==", &s), BT_EPERM);
    json_t *claims = json_pack("{s:s,s:I}", "scope", "read admin", "exp", (json_int_t)4102444800);
    char *jwt = NULL;
    assert_int_equal(bt_http_jwt_sign(SECRET, claims, &jwt, &err), 0);
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "Bearer %s", jwt);
    assert_int_equal(bt_http_auth_scopes(a, hdr, &s), 0);
    assert_int_equal(s, 9u);
    free(jwt);
    json_decref(claims);
    bt_http_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_static_tokens),
        cmocka_unit_test(test_jwt_reference_vector),
        cmocka_unit_test(test_jwt_roundtrip),
        cmocka_unit_test(test_jwt_alg_and_shape),
        cmocka_unit_test(test_jwt_through_check),
        cmocka_unit_test(test_credential_scopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
