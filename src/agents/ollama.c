/*
 * ollama.c - the ollama agent adapter (being written; see issue 5).
 */
#include "agents/agent_impl.h"

int bt_ollama_agent_init(bt_agent *a, bt_error *err)
{
    return bt_errorf(err, BT_EUNAVAIL, "agent '%s': the ollama adapter is not built yet",
                     a->cfg.name);
}
