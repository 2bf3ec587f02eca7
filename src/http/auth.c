/*
 * auth.c - bearer tokens and HS256 JWTs for the HTTP API (see auth.h).
 *
 * Only HS256 is implemented: it is what seed 001's JWT auth uses, and accepting
 * whatever "alg" the token names is the classic JWT hole, so the header is checked
 * first and everything else refused. Nothing here logs or returns a credential (the
 * rate limit's identity of a credential is its name, its JWT subject or a hash).
 */
#include "http/auth.h"

#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/strbuf.h"
#include "base/time.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JWT_LEEWAY_S 30

typedef struct tok {
    char *name;
    char *token;
    size_t len;
    unsigned scopes;
} tok;

struct bt_http_auth {
    tok *toks;
    size_t ntoks;
    char *jwt_secret;
    int64_t (*now_s)(void *ud);
    void *now_ud;
};

bt_http_auth *bt_http_auth_new(void)
{
    return bt_xcalloc(1, sizeof(bt_http_auth));
}

void bt_http_auth_free(bt_http_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->ntoks; i++) {
        free(a->toks[i].name);
        OPENSSL_cleanse(a->toks[i].token, a->toks[i].len);
        free(a->toks[i].token);
    }
    free(a->toks);
    if (a->jwt_secret) {
        OPENSSL_cleanse(a->jwt_secret, strlen(a->jwt_secret));
        free(a->jwt_secret);
    }
    free(a);
}

int bt_http_auth_add_token(bt_http_auth *a, const char *name, const char *token, unsigned scopes,
                           bt_error *err)
{
    if (!token || strlen(token) < 8)
        return bt_errorf(err, BT_EINVAL,
                         "API token%s%s is shorter than 8 characters; use a long random value "
                         "(e.g. `openssl rand -hex 32`)",
                         name ? " " : "", name ? name : "");
    a->toks = bt_xrealloc(a->toks, (a->ntoks + 1) * sizeof(tok));
    tok *t = &a->toks[a->ntoks++];
    t->name = bt_xstrdup(name);
    t->token = bt_xstrdup(token);
    t->len = strlen(token);
    t->scopes = scopes;
    return 0;
}

int bt_http_auth_set_jwt_secret(bt_http_auth *a, const char *secret, bt_error *err)
{
    if (!secret || strlen(secret) < 16)
        return bt_errorf(err, BT_EINVAL,
                         "the JWT secret is shorter than 16 bytes; use a long random value");
    free(a->jwt_secret);
    a->jwt_secret = bt_xstrdup(secret);
    return 0;
}

void bt_http_auth_set_clock(bt_http_auth *a, int64_t (*now_s)(void *ud), void *ud)
{
    a->now_s = now_s;
    a->now_ud = ud;
}

int bt_http_auth_enabled(const bt_http_auth *a)
{
    return a && (a->ntoks > 0 || a->jwt_secret);
}

int bt_http_scopes_satisfy(unsigned have, bt_http_scope required)
{
    unsigned R = BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_READ), W = BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_WRITE),
             K = BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_WORKER),
             A = BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_ADMIN);
    switch (required) {
    case BT_HTTP_SCOPE_NONE:
        return 1;
    case BT_HTTP_SCOPE_READ:
        return (have & (R | W | A)) != 0;
    case BT_HTTP_SCOPE_WRITE:
        return (have & (W | A)) != 0;
    case BT_HTTP_SCOPE_WORKER:
        return (have & (K | A)) != 0;
    case BT_HTTP_SCOPE_ADMIN:
        return (have & A) != 0;
    }
    return 0;
}

static int add_scope_word(const char *w, size_t n, unsigned *out, bt_error *err)
{
    char buf[16];
    if (n == 0)
        return 0;
    bt_http_scope s;
    if (n >= sizeof buf) {
        return bt_errorf(err, BT_EINVAL, "unknown scope '%.*s'; use read, write, worker or admin",
                         (int)n, w);
    }
    memcpy(buf, w, n);
    buf[n] = '\0';
    if (bt_http_scope_parse(buf, &s) < 0 || s == BT_HTTP_SCOPE_NONE)
        return bt_errorf(err, BT_EINVAL, "unknown scope '%s'; use read, write, worker or admin",
                         buf);
    *out |= BT_HTTP_SCOPE_BIT(s);
    return 0;
}

int bt_http_scopes_parse(const char *s, unsigned *out, bt_error *err)
{
    *out = 0;
    for (const char *p = s; p && *p;) {
        size_t n = strcspn(p, " ,\t");
        int rc = add_scope_word(p, n, out, err);
        if (rc < 0)
            return rc;
        p += n;
        p += strspn(p, " ,\t");
    }
    return 0;
}

/* ---- base64url (RFC 4648 §5, no padding) ---- */

static int b64url_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes n chars of s into a malloc'd buffer (NUL-terminated); NULL on bad input. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *outlen)
{
    if (n % 4 == 1)
        return NULL;
    unsigned char *out = bt_xmalloc(n * 3 / 4 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static void b64url_encode(bt_strbuf *sb, const unsigned char *d, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | d[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            bt_strbuf_addch(sb, tbl[(acc >> bits) & 63]);
        }
    }
    if (bits > 0)
        bt_strbuf_addch(sb, tbl[(acc << (6 - bits)) & 63]);
}

static int hs256(const char *secret, const char *data, size_t len, unsigned char mac[32])
{
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data, len, mac,
              &maclen) ||
        maclen != 32)
        return BT_EINTERNAL;
    return 0;
}

static json_t *decode_json_part(const char *s, size_t n)
{
    size_t len = 0;
    unsigned char *raw = b64url_decode(s, n, &len);
    if (!raw)
        return NULL;
    json_t *j = NULL;
    if (bt_json_parse((const char *)raw, len, 8, &j, NULL) < 0 || !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    free(raw);
    return j;
}

static int scopes_from_claim(const json_t *claim, unsigned *out, bt_error *err)
{
    *out = 0;
    if (!claim)
        return 0;
    if (json_is_string(claim))
        return bt_http_scopes_parse(json_string_value(claim), out, err);
    if (json_is_array(claim)) {
        size_t i;
        const json_t *v;
        json_array_foreach(claim, i, v)
        {
            if (!json_is_string(v))
                return bt_errorf(err, BT_EINVAL, "the token's scope claim must hold strings");
            int rc = add_scope_word(json_string_value(v), strlen(json_string_value(v)), out, err);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    return bt_errorf(err, BT_EINVAL, "the token's scope claim must be a string or an array");
}

int bt_http_jwt_verify(const char *secret, const char *jwt, int64_t now_s, unsigned *scopes,
                       char **subject, bt_error *err)
{
    *scopes = 0;
    if (subject)
        *subject = NULL;
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return bt_errorf(err, BT_EINVAL, "malformed token: a JWT has three dot-separated parts");
    json_t *hdr = decode_json_part(jwt, (size_t)(d1 - jwt));
    if (!hdr)
        return bt_errorf(err, BT_EINVAL, "malformed token: the JWT header is not base64url JSON");
    const char *alg = bt_json_str(hdr, "alg", "");
    if (strcmp(alg, "HS256") != 0) {
        bt_errorf(err, BT_EINVAL, "unsupported JWT alg '%.16s'; only HS256 is accepted", alg);
        json_decref(hdr);
        return BT_EINVAL;
    }
    json_decref(hdr);

    size_t siglen = 0;
    unsigned char *sig = b64url_decode(d2 + 1, strlen(d2 + 1), &siglen);
    unsigned char mac[32];
    int ok = sig && siglen == 32 && hs256(secret, jwt, (size_t)(d2 - jwt), mac) == 0 &&
             CRYPTO_memcmp(mac, sig, 32) == 0;
    free(sig);
    if (!ok)
        return bt_errorf(err, BT_EPERM, "invalid token signature");

    json_t *claims = decode_json_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!claims)
        return bt_errorf(err, BT_EINVAL, "malformed token: the JWT payload is not base64url JSON");
    int rc = 0;
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    if (!exp || !json_is_number(exp)) {
        rc = bt_errorf(err, BT_EINVAL, "the token has no numeric exp claim; tokens must expire");
    } else if ((int64_t)json_number_value(exp) + JWT_LEEWAY_S <= now_s) {
        rc = bt_errorf(err, BT_ETIMEOUT, "the token expired at %lld (now %lld)",
                       (long long)json_number_value(exp), (long long)now_s);
    } else if (nbf &&
               (!json_is_number(nbf) || (int64_t)json_number_value(nbf) - JWT_LEEWAY_S > now_s)) {
        rc = bt_errorf(err, BT_EINVAL, "the token is not valid before %lld",
                       nbf && json_is_number(nbf) ? (long long)json_number_value(nbf) : 0LL);
    } else {
        rc = scopes_from_claim(json_object_get(claims, "scope"), scopes, err);
        if (rc == 0 && subject && json_is_string(json_object_get(claims, "sub")))
            *subject = bt_xstrdup(bt_json_str(claims, "sub", NULL));
    }
    json_decref(claims);
    return rc;
}

int bt_http_jwt_sign(const char *secret, const json_t *claims, char **out, bt_error *err)
{
    *out = NULL;
    if (!json_is_object(claims))
        return bt_errorf(err, BT_EINVAL, "JWT claims must be a JSON object");
    bt_strbuf sb = BT_STRBUF_INIT;
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    b64url_encode(&sb, (const unsigned char *)hdr, sizeof hdr - 1);
    bt_strbuf_addch(&sb, '.');
    char *payload = bt_json_dumps(claims);
    b64url_encode(&sb, (const unsigned char *)payload, strlen(payload));
    free(payload);
    unsigned char mac[32];
    if (hs256(secret, sb.buf, sb.len, mac) < 0) {
        bt_strbuf_release(&sb);
        return bt_errorf(err, BT_EINTERNAL, "HMAC-SHA256 failed");
    }
    bt_strbuf_addch(&sb, '.');
    b64url_encode(&sb, mac, sizeof mac);
    *out = bt_strbuf_detach(&sb, NULL);
    return 0;
}

/* The scopes of an accepted credential: 0, or BT_EPERM with msg (never echoing it). */
static int credential_scopes(const bt_http_auth *a, const char *authorization, unsigned *out,
                             bt_error *msg)
{
    const char *cred = authorization + 7;
    cred += strspn(cred, " ");
    size_t clen = strlen(cred);
    /* Static tokens: compare against all of them, no early exit. */
    int found = -1;
    for (size_t i = 0; i < a->ntoks; i++)
        if (bt_str_ct_equal(cred, clen, a->toks[i].token, a->toks[i].len))
            found = (int)i;
    if (found >= 0) {
        *out = a->toks[found].scopes;
        return 0;
    }
    if (a->jwt_secret && memchr(cred, '.', clen)) {
        int64_t now = a->now_s ? a->now_s(a->now_ud) : bt_time_wall_ms() / 1000;
        bt_error e = BT_ERROR_INIT;
        if (bt_http_jwt_verify(a->jwt_secret, cred, now, out, NULL, &e) < 0)
            return bt_errorf(msg, BT_EPERM, "%s", e.msg);
        return 0;
    }
    return bt_errorf(msg, BT_EPERM, "unknown or revoked API token");
}

int bt_http_auth_scopes(const bt_http_auth *a, const char *authorization, unsigned *scopes)
{
    *scopes = 0;
    if (!bt_http_auth_enabled(a)) {
        *scopes = BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_READ) | BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_WRITE) |
                  BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_WORKER) | BT_HTTP_SCOPE_BIT(BT_HTTP_SCOPE_ADMIN);
        return 0;
    }
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return BT_EPERM;
    bt_error e = BT_ERROR_INIT;
    return credential_scopes(a, authorization, scopes, &e);
}

bt_http_auth_result bt_http_auth_check(void *ud, const char *authorization, bt_http_scope required,
                                       bt_error *msg)
{
    bt_http_auth *a = ud;
    if (!bt_http_auth_enabled(a) || required == BT_HTTP_SCOPE_NONE)
        return BT_HTTP_AUTH_OK;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) {
        bt_errorf(msg, BT_EPERM, "this route needs an Authorization: Bearer token with scope %s",
                  bt_http_scope_name(required));
        return BT_HTTP_AUTH_UNAUTHENTICATED;
    }
    unsigned scopes = 0;
    if (credential_scopes(a, authorization, &scopes, msg) < 0)
        return BT_HTTP_AUTH_UNAUTHENTICATED;
    if (!bt_http_scopes_satisfy(scopes, required)) {
        bt_errorf(msg, BT_EPERM, "the token lacks the %s scope this route needs",
                  bt_http_scope_name(required));
        return BT_HTTP_AUTH_FORBIDDEN;
    }
    return BT_HTTP_AUTH_OK;
}

int bt_http_auth_identity(void *ud, const char *authorization, char *out, size_t n)
{
    const bt_http_auth *a = ud;
    if (n < 48 || !authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return 0;
    const char *cred = authorization + 7;
    cred += strspn(cred, " ");
    size_t clen = strlen(cred);
    if (!clen)
        return 0;
    const char *name = NULL;
    for (size_t i = 0; a && i < a->ntoks; i++) /* constant time, like the check */
        if (bt_str_ct_equal(cred, clen, a->toks[i].token, a->toks[i].len))
            name = a->toks[i].name;
    if (name && *name) {
        snprintf(out, n, "token:%s", name);
        return 1;
    }
    if (a && a->jwt_secret && memchr(cred, '.', clen)) {
        int64_t now = a->now_s ? a->now_s(a->now_ud) : bt_time_wall_ms() / 1000;
        unsigned scopes = 0;
        char *sub = NULL;
        bt_error e = BT_ERROR_INIT;
        if (bt_http_jwt_verify(a->jwt_secret, cred, now, &scopes, &sub, &e) == 0 && sub && *sub) {
            snprintf(out, n, "jwt:%s", sub);
            free(sub);
            return 1;
        }
        free(sub);
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(cred, clen, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return 0;
    static const char hex[] = "0123456789abcdef";
    char *p = out + snprintf(out, n, "key:");
    for (int i = 0; i < 16; i++) {
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 15];
    }
    *p = '\0';
    return 1;
}
