/*
 * api.c - registers every route group of the HTTP API (see api.h). Adding a group:
 * write src/api/GROUP.c, declare bt_api_GROUP_register in api.h, add it to `groups`.
 */
#include "api/api.h"

#include <stddef.h>

int bt_api_register(bt_api *api, bt_error *err)
{
    int (*const groups[])(bt_api *, bt_error *) = {
        bt_api_health_register,
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        int rc = groups[i](api, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}
