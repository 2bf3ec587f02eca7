/*
 * openai.c - the openai agent adapter (being written; see issue 5).
 */
#include "agents/agent_impl.h"

int bt_openai_agent_init(bt_agent *a, bt_error *err)
{
    return bt_errorf(err, BT_EUNAVAIL, "agent '%s': the openai adapter is not built yet",
                     a->cfg.name);
}
