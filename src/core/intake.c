/*
 * intake.c - tracker items into the queue (intake.h): project routing, then the
 * store's create with the item's dedupe key.
 */
#include "core/intake.h"

#include "base/mem.h"
#include "config/config.h"
#include "store/store.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Project ids compare case-insensitively with '-' and '_' equal (config.h). */
static int same_project(const char *a, const char *b)
{
    char x[256], y[256];
    return strcmp(bt_config_project_env_id(a, x, sizeof x),
                  bt_config_project_env_id(b, y, sizeof y)) == 0;
}

/* "[backend] Add login" -> "backend"; 0 when the title starts with a bracketed id. */
static int title_project(const char *title, bt_strbuf *out)
{
    const char *p = title ? title : "";
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '[')
        return BT_ENOENT;
    const char *end = strchr(p + 1, ']');
    if (!end || end == p + 1 || end - p > 101)
        return BT_ENOENT;
    for (const char *c = p + 1; c < end; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
            return BT_ENOENT;
    bt_strbuf_add(out, p + 1, (size_t)(end - p - 1));
    return 0;
}

int bt_intake_route(const bt_config *cfg, const char *title, const json_t *labels, bt_strbuf *out)
{
    if (title_project(title, out) == 0)
        return 0;
    if (!cfg || !json_is_array(labels))
        return BT_ENOENT;
    size_t i;
    json_t *l;
    json_array_foreach(labels, i, l)
    {
        const char *name = json_string_value(l);
        if (!name)
            continue;
        for (size_t k = 0; k < cfg->projects.len; k++) {
            const bt_config_project *p = &cfg->projects.items[k];
            int hit = same_project(p->id, name);
            for (size_t j = 0; !hit && j < p->labels.len; j++)
                hit = strcasecmp(p->labels.items[j], name) == 0;
            if (hit) {
                bt_strbuf_addstr(out, p->id);
                return 0;
            }
        }
    }
    return BT_ENOENT;
}

typedef struct intake_op {
    bt_intake_done_fn cb;
    void *ud;
} intake_op;

static void on_created(void *ud, int rc, const bt_error *err, const bt_task *task, bool created)
{
    intake_op *op = ud;
    op->cb(op->ud, rc, err, task, created);
    free(op);
}

void bt_intake_submit(bt_store *s, const bt_config *cfg, const bt_tracker_item *item,
                      bt_intake_done_fn cb, void *ud)
{
    bt_strbuf project = BT_STRBUF_INIT;
    const char *workflow = NULL;
    char envid[256];
    if (bt_intake_route(cfg, item->title, item->labels, &project) == 0) {
        /* the configured spelling when there is one, else the environment form
         * ("[web-front]" -> WEB_FRONT, the <ID> of PROJECT_REPO_<ID>) */
        const bt_config_project *p = NULL;
        for (size_t k = 0; cfg && k < cfg->projects.len && !p; k++)
            if (same_project(cfg->projects.items[k].id, project.buf))
                p = &cfg->projects.items[k];
        if (p) {
            bt_strbuf_reset(&project);
            bt_strbuf_addstr(&project, p->id);
            workflow = p->workflow;
        } else {
            bt_config_project_env_id(project.buf, envid, sizeof envid);
            bt_strbuf_reset(&project);
            bt_strbuf_addstr(&project, envid);
        }
    }
    json_t *meta = json_is_object(item->meta) ? json_deep_copy(item->meta) : json_object();
    if (item->url && !json_object_get(meta, "url"))
        json_object_set_new(meta, "url", json_string(item->url));
    bt_task_input in = {.source = item->source,
                        .external_id = item->external_id,
                        .dedupe_key = item->dedupe_key,
                        .identifier = item->identifier,
                        .project = project.len ? project.buf : NULL,
                        .title = item->title,
                        .body = item->body ? item->body : "",
                        .workflow = workflow,
                        .labels = item->labels,
                        .meta = meta,
                        .priority = item->priority,
                        .max_attempts = 0};
    intake_op *op = bt_xcalloc(1, sizeof *op);
    op->cb = cb;
    op->ud = ud;
    bt_store_task_create(s, &in, on_created, op);
    json_decref(meta);
    bt_strbuf_release(&project);
}
