/*
 * pq_dl.h - libpq, loaded on first use (internal to src/store/).
 *
 * baton does not link libpq: an idle daemon on SQLite would otherwise map libpq and
 * everything it drags in (Kerberos, GSSAPI, LDAP, SASL, OpenSSL...) for nothing. The
 * PostgreSQL backend calls bt_pq_load once before its first libpq call; it dlopens
 * libpq.so.5 and resolves every function the backend uses into bt_pq, whose members
 * have the exact types of the libpq declarations (libpq-fe.h still comes from the
 * -dev package at build time):
 *
 *   if ((rc = bt_pq_load(err)) < 0)
 *       return rc;                       // "PostgreSQL support needs libpq.so.5 ..."
 *   PGconn *c = bt_pq.PQconnectdbParams(keys, values, 0);
 *
 * The library stays loaded for the life of the process. bt_pq_load is thread-safe and
 * cheap once it has succeeded; bt_pq is only valid after a successful call.
 */
#ifndef BT_STORE_PQ_DL_H
#define BT_STORE_PQ_DL_H

#include "base/error.h"

#include <libpq-fe.h>

/* Every libpq function baton calls. Add a name here before using it. */
#define BT_PQ_FUNCS(X)                                                                             \
    X(PQclear)                                                                                     \
    X(PQconnectPoll)                                                                               \
    X(PQconnectStartParams)                                                                        \
    X(PQconnectdbParams)                                                                           \
    X(PQconsumeInput)                                                                              \
    X(PQenterPipelineMode)                                                                         \
    X(PQerrorMessage)                                                                              \
    X(PQexec)                                                                                      \
    X(PQfinish)                                                                                    \
    X(PQflush)                                                                                     \
    X(PQfreemem)                                                                                   \
    X(PQgetResult)                                                                                 \
    X(PQgetisnull)                                                                                 \
    X(PQgetlength)                                                                                 \
    X(PQgetvalue)                                                                                  \
    X(PQhost)                                                                                      \
    X(PQhostaddr)                                                                                  \
    X(PQisBusy)                                                                                    \
    X(PQnfields)                                                                                   \
    X(PQnotifies)                                                                                  \
    X(PQntuples)                                                                                   \
    X(PQpipelineSync)                                                                              \
    X(PQport)                                                                                      \
    X(PQresultErrorField)                                                                          \
    X(PQresultErrorMessage)                                                                        \
    X(PQresultStatus)                                                                              \
    X(PQsendQuery)                                                                                 \
    X(PQsendQueryParams)                                                                           \
    X(PQsetNoticeProcessor)                                                                        \
    X(PQsetnonblocking)                                                                            \
    X(PQsocket)                                                                                    \
    X(PQstatus)

#define BT_PQ_MEMBER(name) __typeof__(name) *name;
typedef struct bt_pq_api {
    BT_PQ_FUNCS(BT_PQ_MEMBER)
} bt_pq_api;
#undef BT_PQ_MEMBER

/* The resolved functions; valid once bt_pq_load has returned 0. */
extern bt_pq_api bt_pq;

/* Load libpq.so.5 and fill bt_pq (only the first successful call does work). Returns
 * 0, or BT_EUNAVAIL with a message naming the library and the package to install. */
int bt_pq_load(bt_error *err);

#endif
