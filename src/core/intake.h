/*
 * intake.h - the one way a tracker's work item enters the queue (DESIGN.md §2a step 1):
 * project routing (seed 000), then the store's create with the item's dedupe key, so
 * an issue seen again (every poll, a webhook and a poll, a redelivery) is stored once
 * while its task is open.
 *
 * Project routing: a title starting with "[id]" (e.g. "[backend] Add login") selects
 * project id; otherwise the first label that names a configured project (its id, or one
 * of its `labels:`; compared case-insensitively with '-' and '_' equal). The routed
 * item's task carries project = the id as written and meta.project_* (repo and the four
 * document URLs when set). Whether the project's settings are complete is checked when
 * the item is prepared to run (core/pipeline.h), so a missing setting fails that item
 * - visibly, with the variable's name - instead of dropping it at intake. A project's
 * `workflow:` becomes the task's workflow.
 */
#ifndef BT_INTAKE_H
#define BT_INTAKE_H

#include "base/error.h"
#include "base/strbuf.h"
#include "trackers/tracker.h"

#include <stdbool.h>

typedef struct bt_config bt_config;
typedef struct bt_store bt_store;
typedef struct bt_task bt_task;

/* The project id an item routes to (appended to out, as written in the title or the
 * configured id for a label match); 0 when one was found, BT_ENOENT when none. */
int bt_intake_route(const bt_config *cfg, const char *title, const json_t *labels, bt_strbuf *out);

/* created = false when an open task with the same dedupe key already existed (it is the
 * task given). task borrowed for the callback. */
typedef void (*bt_intake_done_fn)(void *ud, int rc, const bt_error *err, const bt_task *task,
                                  bool created);

/* Store the item (routing applied). item borrowed for the call. cb runs once, from the
 * store's callback. */
void bt_intake_submit(bt_store *s, const bt_config *cfg, const bt_tracker_item *item,
                      bt_intake_done_fn cb, void *ud);

#endif
