/*
 * curl_dl.h - libcurl, loaded on first use (internal to src/http/).
 *
 * baton does not link libcurl: only the HTTP client (client.c: the worker, agents,
 * trackers) needs it, and an idle `baton serve` would otherwise map libcurl and its
 * dependencies (nghttp2, ssh2, rtmp, psl, idn2, Kerberos, LDAP, OpenSSL...) for
 * nothing. The client calls bt_curl_load before its first libcurl call (from
 * bt_http_client_global_init, i.e. before curl_global_init and before curl starts any
 * resolver thread); it dlopens libcurl.so.4 and resolves every function the client
 * uses into bt_curl. Members drop the curl_ prefix (curl_easy_setopt is a macro in
 * curl.h, so a member of that name could not be called) and have the exact types of
 * the curl.h declarations:
 *
 *   if ((rc = bt_curl_load(err)) < 0)
 *       return rc;                    // "HTTP client support needs libcurl.so.4 ..."
 *   CURL *e = bt_curl.easy_init();
 *
 * curl.h's compile-time checks of curl_easy_setopt arguments do not apply to
 * bt_curl.easy_setopt: pass long for numeric options (1L, not 1) and curl_off_t for
 * *_LARGE ones.
 *
 * The library stays loaded for the life of the process. bt_curl_load is thread-safe
 * and cheap once it has succeeded; bt_curl is only valid after a successful call.
 */
#ifndef BT_HTTP_CURL_DL_H
#define BT_HTTP_CURL_DL_H

#include "base/error.h"

#include <curl/curl.h>

/* Every libcurl function baton calls, without its curl_ prefix. Add a name here
 * before using it. */
#define BT_CURL_FUNCS(X)                                                                           \
    X(easy_cleanup)                                                                                \
    X(easy_getinfo)                                                                                \
    X(easy_init)                                                                                   \
    X(easy_setopt)                                                                                 \
    X(easy_strerror)                                                                               \
    X(getdate)                                                                                     \
    X(global_cleanup)                                                                              \
    X(global_init)                                                                                 \
    X(multi_add_handle)                                                                            \
    X(multi_assign)                                                                                \
    X(multi_cleanup)                                                                               \
    X(multi_info_read)                                                                             \
    X(multi_init)                                                                                  \
    X(multi_remove_handle)                                                                         \
    X(multi_setopt)                                                                                \
    X(multi_socket_action)                                                                         \
    X(multi_strerror)                                                                              \
    X(slist_append)                                                                                \
    X(slist_free_all)                                                                              \
    X(version_info)

#define BT_CURL_MEMBER(name) __typeof__(curl_##name) *name;
typedef struct bt_curl_api {
    BT_CURL_FUNCS(BT_CURL_MEMBER)
} bt_curl_api;
#undef BT_CURL_MEMBER

/* The resolved functions; valid once bt_curl_load has returned 0. */
extern bt_curl_api bt_curl;

/* Load libcurl.so.4 and fill bt_curl (only the first successful call does work).
 * Returns 0, or BT_EUNAVAIL with a message naming the library and the package to
 * install. Does not call curl_global_init. */
int bt_curl_load(bt_error *err);

#endif
