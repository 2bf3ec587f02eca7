/*
 * agents.c - the set of configured agents (agents.h): construction from the
 * configuration, lookup, static descriptions and the concurrent availability check.
 */
#include "agents/agents.h"

#include "agents/agent_impl.h"
#include "base/mem.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *name;
    bt_agent_type type;
    bt_agent *agent; /* NULL when it could not be built */
    char *error;     /* why not */
} entry;

struct bt_agents {
    bt_agent_env env;
    entry *items;
    size_t len;
};

bt_agents *bt_agents_new(const bt_agent_env *env)
{
    bt_agents *s = bt_xcalloc(1, sizeof *s);
    s->env = *env;
    const bt_config *cfg = env->cfg;
    size_t n = cfg ? cfg->agents.len : 0;
    s->items = bt_xcalloc(n ? n : 1, sizeof *s->items);
    s->len = n;
    for (size_t i = 0; i < n; i++) {
        const bt_config_agent *ac = &cfg->agents.items[i];
        entry *e = &s->items[i];
        e->name = bt_xstrdup(ac->name);
        e->type = ac->type;
        bt_error err = BT_ERROR_INIT;
        if (bt_agent_new(env, ac, &e->agent, &err) < 0)
            e->error = bt_xstrdup(err.msg[0] ? err.msg : "could not be set up");
    }
    return s;
}

void bt_agents_free(bt_agents *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->len; i++) {
        bt_agent_free(s->items[i].agent);
        free(s->items[i].name);
        free(s->items[i].error);
    }
    free(s->items);
    free(s);
}

size_t bt_agents_count(const bt_agents *s)
{
    return s ? s->len : 0;
}

const char *bt_agents_name(const bt_agents *s, size_t i)
{
    return i < s->len ? s->items[i].name : NULL;
}

bt_agent *bt_agents_at(const bt_agents *s, size_t i)
{
    return i < s->len ? s->items[i].agent : NULL;
}

const char *bt_agents_error(const bt_agents *s, size_t i)
{
    return i < s->len ? s->items[i].error : NULL;
}

int bt_agents_index(const bt_agents *s, const char *name)
{
    for (size_t i = 0; s && name && i < s->len; i++)
        if (strcmp(s->items[i].name, name) == 0)
            return (int)i;
    return -1;
}

bt_agent *bt_agents_find(const bt_agents *s, const char *name)
{
    int i = bt_agents_index(s, name);
    return i < 0 ? NULL : s->items[i].agent;
}

static const bt_config_agent *config_of(const bt_agents *s, size_t i)
{
    if (s->items[i].agent)
        return &s->items[i].agent->cfg;
    return bt_config_agent_find(s->env.cfg, s->items[i].name);
}

json_t *bt_agents_describe(const bt_agents *s, size_t i)
{
    const entry *e = &s->items[i];
    const bt_config_agent *ac = config_of(s, i);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(e->name));
    json_object_set_new(o, "type", json_string(bt_config_agent_type_name(e->type)));
    if (ac && ac->preset)
        json_object_set_new(o, "preset", json_string(ac->preset));
    json_object_set_new(o, "role", json_string(ac && ac->role ? ac->role : ""));
    json_object_set_new(o, "model", json_string(ac && ac->model ? ac->model : ""));
    json_object_set_new(
        o, "writes_workspace",
        json_boolean(e->agent ? bt_agent_writes_workspace(e->agent)
                              : e->type == BT_AGENT_CLI || e->type == BT_AGENT_OPENHANDS));
    json_t *fb = json_array();
    for (size_t k = 0; ac && k < ac->fallback.len; k++)
        json_array_append_new(fb, json_string(ac->fallback.items[k]));
    json_object_set_new(o, "fallback", fb);
    json_object_set_new(o, "timeout_ms", json_integer(ac ? ac->timeout_ms : 0));
    json_object_set_new(o, "stall_timeout_ms", json_integer(ac ? ac->stall_timeout_ms : 0));
    double pin = 0, pout = 0;
    if (ac && (ac->price.input > 0 || ac->price.output > 0)) {
        pin = ac->price.input;
        pout = ac->price.output;
    } else if (ac) {
        const bt_config_model_price *p = bt_config_price_find(s->env.cfg, ac->model);
        if (p) {
            pin = p->input;
            pout = p->output;
        }
    }
    if (pin > 0 || pout > 0)
        json_object_set_new(o, "price",
                            json_pack("{s:f,s:f}", "input_per_mtok", pin, "output_per_mtok", pout));
    else
        json_object_set_new(o, "price", json_null());
    return o;
}

/* ---- concurrent check ---- */

typedef struct check_all {
    bt_agents *set;
    json_t *status; /* {"agents":[...]} being filled */
    size_t pending;
    size_t available;
    bt_agents_status_fn cb;
    void *ud;
    uv_timer_t timer; /* defers the answer when nothing needs probing */
} check_all;

static void check_all_closed(uv_handle_t *h)
{
    check_all *c = h->data;
    json_decref(c->status);
    free(c);
}

static void check_all_deliver(check_all *c)
{
    json_t *arr = json_object_get(c->status, "agents");
    json_object_set_new(c->status, "count", json_integer((json_int_t)json_array_size(arr)));
    json_object_set_new(c->status, "available", json_integer((json_int_t)c->available));
    c->cb(c->status, c->ud);
    uv_close((uv_handle_t *)&c->timer, check_all_closed);
}

typedef struct check_one {
    check_all *all;
    size_t index;
} check_one;

static void one_checked(bt_agent *a, int available, const char *detail, void *ud)
{
    (void)a;
    check_one *one = ud;
    check_all *c = one->all;
    json_t *o = json_array_get(json_object_get(c->status, "agents"), one->index);
    json_object_set_new(o, "available", json_boolean(available));
    json_object_set_new(o, "detail", json_string(detail ? detail : ""));
    if (available)
        c->available++;
    free(one);
    if (--c->pending == 0)
        check_all_deliver(c);
}

static void check_all_timer(uv_timer_t *t)
{
    check_all *c = t->data;
    if (--c->pending == 0)
        check_all_deliver(c);
}

void bt_agents_check_all(bt_agents *s, bt_agents_status_fn cb, void *ud)
{
    check_all *c = bt_xcalloc(1, sizeof *c);
    c->set = s;
    c->cb = cb;
    c->ud = ud;
    c->status = json_object();
    json_t *arr = json_array();
    json_object_set_new(c->status, "agents", arr);
    uv_timer_init(s->env.loop, &c->timer);
    c->timer.data = c;
    c->pending = 1; /* the timer's own share: the answer never comes synchronously */
    for (size_t i = 0; i < s->len; i++) {
        json_t *o = bt_agents_describe(s, i);
        json_array_append_new(arr, o);
        if (!s->items[i].agent) {
            json_object_set_new(o, "available", json_false());
            json_object_set_new(o, "detail", json_string(s->items[i].error));
            continue;
        }
        check_one *one = bt_xcalloc(1, sizeof *one);
        one->all = c;
        one->index = i;
        c->pending++;
        bt_agent_check(s->items[i].agent, one_checked, one);
    }
    uv_timer_start(&c->timer, check_all_timer, 0, 0);
}
