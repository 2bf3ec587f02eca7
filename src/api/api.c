/*
 * api.c - registers every route group of the HTTP API (see api.h). Adding a group:
 * write src/api/GROUP.c, declare bt_api_GROUP_register in api.h, add it to `groups`.
 */
#include "api/api.h"

#include <stddef.h>

int bt_api_register(bt_api *api, bt_error *err)
{
    int (*const groups[])(bt_api *, bt_error *) = {
        bt_api_health_register,   bt_api_metrics_register, bt_api_status_register,
        bt_api_openapi_register,  bt_api_tasks_register,   bt_api_work_register,
        bt_api_events_register,   bt_api_agents_register,  bt_api_workflows_register,
        bt_api_webhooks_register, bt_api_ui_register,      bt_api_stats_register,
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        int rc = groups[i](api, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int bt_api_on_cleanup(bt_api *api, void (*fn)(void *ud), void *ud, bt_error *err)
{
    if (api->ncleanups >= BT_API_MAX_CLEANUPS)
        return bt_errorf(err, BT_EINTERNAL, "more than %d API cleanups: raise BT_API_MAX_CLEANUPS",
                         BT_API_MAX_CLEANUPS);
    api->cleanups[api->ncleanups].fn = fn;
    api->cleanups[api->ncleanups].ud = ud;
    api->ncleanups++;
    return 0;
}

void bt_api_cleanup(bt_api *api)
{
    while (api->ncleanups > 0) {
        api->ncleanups--;
        api->cleanups[api->ncleanups].fn(api->cleanups[api->ncleanups].ud);
    }
}

int bt_api_on_stop(bt_api *api, void (*fn)(void *ud), void *ud, bt_error *err)
{
    if (api->nstops >= BT_API_MAX_CLEANUPS)
        return bt_errorf(err, BT_EINTERNAL,
                         "more than %d API stop hooks: raise BT_API_MAX_CLEANUPS",
                         BT_API_MAX_CLEANUPS);
    api->stops[api->nstops].fn = fn;
    api->stops[api->nstops].ud = ud;
    api->nstops++;
    return 0;
}

void bt_api_stop(bt_api *api)
{
    while (api->nstops > 0) {
        api->nstops--;
        api->stops[api->nstops].fn(api->stops[api->nstops].ud);
    }
}
