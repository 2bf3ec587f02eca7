/*
 * app.h - a running baton daemon: the wiring of configuration, logger, loop, store
 * and HTTP server (DESIGN.md §3 "app"), and its start-up / shutdown order.
 *
 * bt_app_serve blocks in the libuv loop until SIGTERM or SIGINT, then shuts down
 * gracefully: the HTTP server drains (in-flight requests finish, SSE streams end),
 * then the store closes (pending writes complete), and the loop is closed with no
 * handle left behind. SIGPIPE is ignored process-wide at start.
 */
#ifndef BT_APP_H
#define BT_APP_H

#include "base/error.h"

#include <stdio.h>

typedef struct bt_app_options {
    const char *config_path; /* --config; NULL = $BATON_CONFIG, ./baton.yaml, defaults */
    const char *host;        /* --host: overrides server.host when non-NULL */
    int port;                /* --port: overrides server.port when >= 0 */
    const char *store_url;   /* --store: overrides store.url when non-NULL */
    FILE *out;               /* where the "listening on" banner goes; NULL = stdout */
    char *const *envp;       /* environment (NULL = environ) */
    int offline;             /* --offline: offline mode forced (core/offline.h) */
} bt_app_options;

#define BT_APP_OPTIONS_INIT                                                                        \
    {                                                                                              \
        NULL, NULL, -1, NULL, NULL, NULL, 0                                                        \
    }

/* Run the daemon until a termination signal. Returns 0 after a clean shutdown, or a
 * negative BT_E* with err explaining what stopped start-up (configuration problems
 * are printed to stderr one per line before returning BT_EINVAL). */
int bt_app_serve(const bt_app_options *opts, bt_error *err);

#endif
