/*
 * serve.c - `baton serve`: run the orchestrator daemon (HTTP API, store, and later the
 * scheduler, trackers and workers' endpoints) until SIGTERM/SIGINT.
 *
 * --offline forces offline mode (core/offline.h): runs take their offline variant and
 * only local agents are called, whatever the probes of the remote providers say.
 *
 * Prints "baton: listening on http://HOST:PORT (store BACKEND)" once serving, so
 * scripts can wait for that line. Exit 0 after a clean shutdown, 1 when start-up fails
 * (bad configuration, port in use, store unreachable), 2 on a usage error.
 */
#include "cmd/cmd.h"

#include "app/app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static const char synopsis[] =
    "baton serve [--config FILE] [--host ADDR] [--port N] [--store URL] [--offline]";

int bt_cmd_serve(int argc, char **argv)
{
    const char *config = NULL, *host = NULL, *port = NULL, *store = NULL;
    int help = 0, offline = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"host", 0, 1, &host, NULL, "address to listen on (overrides server.host)"},
        {"port", 'p', 1, &port, NULL, "port to listen on; 0 picks a free one (server.port)"},
        {"store", 0, 1, &store, NULL, "store URL, e.g. sqlite:./var/baton.db (store.url)"},
        {"offline", 0, 0, NULL, &offline,
         "force offline mode: runs use their offline variant, only local agents are called"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("serve", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("serve", synopsis, opts);
        printf("\nRuns the daemon until SIGTERM or SIGINT, then shuts down gracefully\n"
               "(in-flight requests finish, event streams end, the store is flushed).\n"
               "Without API tokens it listens on 127.0.0.1 only.\n"
               "Offline mode (offline.mode, default auto) follows probes of the remote\n"
               "providers; --offline forces it; GET /api/status says which mode is on and why.\n"
               "Exit codes: 0 clean shutdown, 1 start-up failed, 2 usage error.\n");
        return BT_EXIT_OK;
    }
    if (pos.len > 0) {
        fprintf(stderr, "baton serve: unexpected argument '%s'. See 'baton help serve'.\n",
                pos.items[0]);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_strvec_clear(&pos);

    bt_app_options o = BT_APP_OPTIONS_INIT;
    o.config_path = config;
    o.host = host;
    o.store_url = store;
    o.offline = offline;
    if (port) {
        char *end = NULL;
        errno = 0;
        long v = strtol(port, &end, 10);
        if (errno || end == port || *end || v < 0 || v > 65535) {
            fprintf(stderr, "baton serve: --port '%s' is not a port number (0-65535).\n", port);
            return BT_EXIT_USAGE;
        }
        o.port = (int)v;
    }
    bt_error err = BT_ERROR_INIT;
    rc = bt_app_serve(&o, &err);
    if (rc < 0) {
        fprintf(stderr, "baton serve: %s\n", err.msg[0] ? err.msg : bt_strerror(rc));
        return BT_EXIT_FAIL;
    }
    return BT_EXIT_OK;
}
