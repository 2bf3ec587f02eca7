/*
 * auth.h - API credentials: static bearer tokens with scopes, and JWT (HS256) bearer
 * tokens whose scopes come from a "scope" claim.
 *
 * Scopes are a bit set with the same bits as the configuration's BT_SCOPE_*:
 * read 1, write 2, worker 4, admin 8 (BT_HTTP_SCOPE_BIT(s) gives the bit of a
 * bt_http_scope). What satisfies a route's required scope:
 *   read   <- read | write | admin       write  <- write | admin
 *   worker <- worker | admin             admin  <- admin
 *
 * Static tokens are compared in constant time against every configured token (no
 * early exit). JWTs must be three base64url parts with {"alg":"HS256"} (anything else,
 * "none" included, is refused), a valid HMAC-SHA256 signature (compared with
 * CRYPTO_memcmp), an "exp" in the future and an "nbf" (if present) in the past, both
 * with 30 s of leeway; "scope" is a space-separated string or an array of strings.
 *
 * bt_http_auth_check has the bt_http_auth_fn signature: pass it to the server with the
 * bt_http_auth* as its ud. With no token and no JWT secret configured, every request
 * passes (the app then binds to loopback only).
 */
#ifndef BT_HTTP_AUTH_H
#define BT_HTTP_AUTH_H

#include "base/error.h"
#include "http/server.h"

#include <stddef.h>
#include <stdint.h>

#define BT_HTTP_SCOPE_BIT(s) ((s) == BT_HTTP_SCOPE_NONE ? 0u : 1u << ((unsigned)(s)-1u))

typedef struct bt_http_auth bt_http_auth;

bt_http_auth *bt_http_auth_new(void);
void bt_http_auth_free(bt_http_auth *a);

/* Add a static token (copied). name (may be NULL) labels it in logs. Tokens shorter
 * than 8 characters are refused with BT_EINVAL (too guessable). */
int bt_http_auth_add_token(bt_http_auth *a, const char *name, const char *token, unsigned scopes,
                           bt_error *err);
/* Accept HS256 JWTs signed with secret (copied; at least 16 bytes). */
int bt_http_auth_set_jwt_secret(bt_http_auth *a, const char *secret, bt_error *err);
/* Clock for exp/nbf checks (seconds since the epoch); NULL = wall clock. */
void bt_http_auth_set_clock(bt_http_auth *a, int64_t (*now_s)(void *ud), void *ud);
/* True when any credential is configured. */
int bt_http_auth_enabled(const bt_http_auth *a);

/* The server's auth callback; ud is the bt_http_auth*. */
bt_http_auth_result bt_http_auth_check(void *ud, const char *authorization, bt_http_scope required,
                                       bt_error *msg);

/* The server's identity callback (bt_http_identity_fn; ud is the bt_http_auth*): who
 * an accepted credential is, for the per-client rate limit, never the credential
 * itself: "token:<name>" for a named static token, "jwt:<sub>" for a JWT with a "sub"
 * claim, else "key:" and the first 128 bits of the credential's SHA-256 in hex. Returns 1
 * (0 only when authorization holds no bearer credential or n is too small). */
int bt_http_auth_identity(void *ud, const char *authorization, char *out, size_t n);

/* The scopes of a credential (the dashboard's "what may I do"): 0 and *scopes filled for
 * an accepted credential (every scope when no credential is configured: the API is
 * open), else BT_EPERM. Same checks as bt_http_auth_check. */
int bt_http_auth_scopes(const bt_http_auth *a, const char *authorization, unsigned *scopes);

/* Does a scope set satisfy a required scope? */
int bt_http_scopes_satisfy(unsigned have, bt_http_scope required);
/* Parse "read write" / "read,admin" into bits; unknown names are BT_EINVAL. */
int bt_http_scopes_parse(const char *s, unsigned *out, bt_error *err);

/* Verify a compact JWT; on success fills *scopes and (if non-NULL) *subject
 * (malloc'd "sub" claim or NULL; caller frees). Errors say what is wrong (bad
 * signature, expired at ..., unsupported alg ...), never echo the token. */
int bt_http_jwt_verify(const char *secret, const char *jwt, int64_t now_s, unsigned *scopes,
                       char **subject, bt_error *err);
/* Sign claims (a JSON object, borrowed) as an HS256 JWT; *out is malloc'd. For tests
 * and a future `baton token` command. */
int bt_http_jwt_sign(const char *secret, const json_t *claims, char **out, bt_error *err);

#endif
