/*
 * yaml.c - YAML (one document, 1.2 core schema) -> jansson, with a position side table.
 *
 * The converter walks libyaml's event stream and keeps a stack of open containers.
 * Containers are attached to their parent as soon as they start, so the JSON pointer
 * of every node is known when its event arrives and its key/value marks go straight
 * into the position table. Anchors are registered when their node is complete, which
 * also makes a self-referencing alias ("&a [*a]") an "unknown anchor" error rather
 * than a cycle. See yaml.h for the accepted language.
 */
#include "base/yaml.h"

#include "base/map.h"
#include "base/mem.h"
#include "base/path.h"
#include "base/vec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct bt_yaml_doc {
    char *name;
    json_t *root;
    bt_map *pos; /* pointer -> pos_entry* (owned) */
};

typedef struct pos_entry {
    bt_yaml_pos key;
    bt_yaml_pos val;
} pos_entry;

typedef struct anchor_entry {
    json_t *node;
    size_t size; /* nodes in the subtree, for the alias expansion budget */
} anchor_entry;

typedef struct frame {
    json_t *node; /* the open container (borrowed: owned by its parent or root) */
    int is_map;
    size_t path_len; /* length of this container's pointer in conv.path */
    char *key;       /* mapping: pending key (owned), NULL when expecting a key */
    size_t key_len;
    bt_yaml_pos key_pos;
    int key_is_merge; /* pending key is a plain "<<" */
    json_t *merges;   /* mapping: array of merge sources (owned), or NULL */
    char *anchor;     /* anchor of this container, registered at its end (owned) */
    size_t nodes_at_start;
} frame;

typedef struct conv {
    const char *name;
    bt_yaml_doc *doc;
    BT_VEC(frame) stack;
    bt_strbuf path;
    bt_map *anchors; /* name -> anchor_entry* (owned) */
    size_t nodes;    /* nodes produced so far (including through aliases) */
    size_t alias_nodes;
    int documents;
    bt_error *err;
} conv;

static bt_yaml_pos mark_pos(yaml_mark_t m)
{
    bt_yaml_pos p = {(int)m.line + 1, (int)m.column + 1};
    return p;
}

static int conv_error(conv *c, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int conv_error(conv *c, yaml_mark_t m, const char *fmt, ...)
{
    char msg[BT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bt_errorf(c->err, BT_EPARSE, "%s:%zu:%zu: %s", c->name, m.line + 1, m.column + 1, msg);
}

static void free_anchor(void *p)
{
    anchor_entry *a = p;
    if (a) {
        json_decref(a->node);
        free(a);
    }
}

void bt_yaml_pointer_push(bt_strbuf *sb, const char *token)
{
    bt_strbuf_addch(sb, '/');
    for (const char *p = token; *p; p++) {
        if (*p == '~')
            bt_strbuf_addstr(sb, "~0");
        else if (*p == '/')
            bt_strbuf_addstr(sb, "~1");
        else
            bt_strbuf_addch(sb, *p);
    }
}

static void record_pos(conv *c, bt_yaml_pos key, bt_yaml_pos val)
{
    pos_entry *e = bt_xmalloc(sizeof *e);
    e->key = key;
    e->val = val;
    bt_map_set(c->doc->pos, bt_strbuf_cstr(&c->path), e);
}

/* ---- scalar typing (YAML 1.2 core schema) ---- */

static int all_in(const char *s, const char *set)
{
    return *s && strspn(s, set) == strlen(s);
}

static int is_float_text(const char *s)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    size_t intd = strspn(p, "0123456789");
    p += intd;
    size_t fracd = 0;
    int dot = 0;
    if (*p == '.') {
        dot = 1;
        p++;
        fracd = strspn(p, "0123456789");
        p += fracd;
    }
    if (intd == 0 && fracd == 0)
        return 0;
    int expo = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        size_t ed = strspn(p, "0123456789");
        if (ed == 0)
            return 0;
        p += ed;
        expo = 1;
    }
    return *p == '\0' && (dot || expo);
}

enum { K_NULL, K_BOOL, K_INT, K_FLOAT, K_STR };

/* Classify a plain scalar and build its value. Returns NULL with *bad set when the text
 * looks like a number but does not fit. */
static json_t *plain_scalar(const char *s, size_t len, int *kind, const char **bad)
{
    *bad = NULL;
    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0) {
        *kind = K_NULL;
        return json_null();
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
        *kind = K_BOOL;
        return json_true();
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
        *kind = K_BOOL;
        return json_false();
    }
    if (strlen(s) == len) { /* no embedded NUL */
        const char *digits = s + ((s[0] == '+' || s[0] == '-') ? 1 : 0);
        int base = 0;
        const char *num = NULL;
        if (all_in(digits, "0123456789")) {
            base = 10;
            num = s;
        } else if (strncmp(s, "0x", 2) == 0 && all_in(s + 2, "0123456789abcdefABCDEF")) {
            base = 16;
            num = s + 2;
        } else if (strncmp(s, "0o", 2) == 0 && all_in(s + 2, "01234567")) {
            base = 8;
            num = s + 2;
        }
        if (base) {
            errno = 0;
            long long v = strtoll(num, NULL, base);
            *kind = K_INT;
            if (errno == ERANGE) {
                *bad = "integer out of range";
                return NULL;
            }
            return json_integer((json_int_t)v);
        }
        if (is_float_text(s)) {
            errno = 0;
            double d = strtod(s, NULL);
            *kind = K_FLOAT;
            if (errno == ERANGE && (d > 1 || d < -1)) {
                *bad = "number out of range";
                return NULL;
            }
            return json_real(d);
        }
    }
    *kind = K_STR;
    return json_stringn(s, len);
}

static json_t *scalar_value(conv *c, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    json_t *v = NULL;
    if (tag && strcmp(tag, "!") != 0) {
        static const struct {
            const char *tag;
            int kind;
        } tags[] = {{YAML_STR_TAG, K_STR},
                    {YAML_NULL_TAG, K_NULL},
                    {YAML_BOOL_TAG, K_BOOL},
                    {YAML_INT_TAG, K_INT},
                    {YAML_FLOAT_TAG, K_FLOAT}};
        int want = -1;
        for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
            if (strcmp(tag, tags[i].tag) == 0)
                want = tags[i].kind;
        if (want < 0) {
            conv_error(c, ev->start_mark, "unsupported tag '%s' (baton reads plain YAML data)",
                       tag);
            return NULL;
        }
        if (want == K_STR) {
            v = json_stringn(s, len);
        } else {
            int kind;
            const char *bad;
            v = plain_scalar(s, len, &kind, &bad);
            if (kind == K_INT && want == K_FLOAT && v) {
                json_t *r = json_real((double)json_integer_value(v));
                json_decref(v);
                v = r;
                kind = K_FLOAT;
            }
            if (!v || kind != want) {
                json_decref(v);
                conv_error(c, ev->start_mark, "'%.*s' is not a valid %s", (int)len, s,
                           tag + strlen("tag:yaml.org,2002:"));
                return NULL;
            }
        }
    } else if (plain) {
        int kind;
        const char *bad;
        v = plain_scalar(s, len, &kind, &bad);
        if (!v && bad) {
            conv_error(c, ev->start_mark, "%s: '%.*s' (quote it to make it a string)", bad,
                       (int)len, s);
            return NULL;
        }
    } else {
        v = json_stringn(s, len);
    }
    if (!v)
        conv_error(c, ev->start_mark, "scalar is not valid UTF-8 text");
    return v;
}

/* ---- tree building ---- */

static size_t count_nodes(const json_t *v)
{
    size_t n = 1;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) n += count_nodes(x);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) n += count_nodes(x);
    }
    return n;
}

static void register_anchor(conv *c, const char *name, json_t *node, size_t size)
{
    anchor_entry *a = bt_xmalloc(sizeof *a);
    a->node = json_incref(node);
    a->size = size;
    bt_map_set(c->anchors, name, a);
}

/* Attach a new value (reference stolen) at the current position. For containers the
 * path is left pointing at the new child so the caller can push a frame for it. */
static int attach(conv *c, json_t *v, yaml_mark_t mark)
{
    bt_yaml_pos vpos = mark_pos(mark);
    if (c->stack.len == 0) {
        if (c->doc->root) {
            json_decref(v);
            return conv_error(c, mark, "unexpected second root node");
        }
        c->doc->root = v;
        bt_strbuf_setlen(&c->path, 0);
        record_pos(c, vpos, vpos);
        return 0;
    }
    frame *f = &c->stack.items[c->stack.len - 1];
    bt_strbuf_setlen(&c->path, f->path_len);
    if (f->is_map) {
        if (f->key_is_merge) {
            if (!f->merges)
                f->merges = json_array();
            json_array_append_new(f->merges, v);
            bt_strbuf_addstr(&c->path, "/<<");
        } else {
            json_object_setn_new_nocheck(f->node, f->key, f->key_len, v);
            char *k = f->key_len == strlen(f->key) ? f->key : NULL;
            bt_yaml_pointer_push(&c->path, k ? k : "");
            record_pos(c, f->key_pos, vpos);
        }
        BT_FREE(f->key);
        f->key_is_merge = 0;
    } else {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", json_array_size(f->node));
        json_array_append_new(f->node, v);
        bt_yaml_pointer_push(&c->path, idx);
        record_pos(c, vpos, vpos);
    }
    return 0;
}

/* A mapping key arrived while the top frame expects one. */
static int take_key(conv *c, frame *f, const yaml_event_t *ev)
{
    if (ev->type != YAML_SCALAR_EVENT) {
        const char *what = ev->type == YAML_ALIAS_EVENT ? "alias" : "collection";
        return conv_error(c, ev->start_mark, "a mapping key must be a plain string, not a %s",
                          what);
    }
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && len == 2 && memcmp(s, "<<", 2) == 0) {
        f->key_is_merge = 1;
        f->key = bt_xstrdup("<<");
        f->key_len = 2;
        f->key_pos = mark_pos(ev->start_mark);
        return 0;
    }
    if (json_object_getn(f->node, s, len)) {
        bt_strbuf p = BT_STRBUF_INIT;
        bt_strbuf_add(&p, bt_strbuf_cstr(&c->path), f->path_len);
        bt_yaml_pointer_push(&p, s);
        pos_entry *first = bt_map_get(c->doc->pos, bt_strbuf_cstr(&p));
        bt_strbuf_release(&p);
        if (first)
            return conv_error(c, ev->start_mark,
                              "duplicate key '%.*s' (first defined at line %d, column %d)",
                              (int)len, s, first->key.line, first->key.column);
        return conv_error(c, ev->start_mark, "duplicate key '%.*s'", (int)len, s);
    }
    json_t *probe = json_stringn(s, len);
    if (!probe)
        return conv_error(c, ev->start_mark, "key is not valid UTF-8 text");
    json_decref(probe);
    f->key = bt_xstrndup(s, len);
    f->key_len = len;
    f->key_pos = mark_pos(ev->start_mark);
    f->key_is_merge = 0;
    return 0;
}

static int apply_merges(conv *c, frame *f, yaml_mark_t end)
{
    if (!f->merges)
        return 0;
    size_t i;
    json_t *m;
    json_array_foreach(f->merges, i, m)
    {
        if (json_is_object(m)) {
            json_object_update_missing(f->node, m);
        } else if (json_is_array(m)) {
            size_t j;
            json_t *x;
            json_array_foreach(m, j, x)
            {
                if (!json_is_object(x))
                    return conv_error(c, end,
                                      "merge key '<<' takes a mapping or a list of mappings");
                json_object_update_missing(f->node, x);
            }
        } else {
            return conv_error(c, end, "merge key '<<' takes a mapping or a list of mappings");
        }
    }
    return 0;
}

static void pop_frame(conv *c)
{
    frame f = bt_vec_pop(&c->stack);
    free(f.key);
    free(f.anchor);
    json_decref(f.merges);
}

static int on_node(conv *c, const yaml_event_t *ev)
{
    if (c->stack.len > 0) {
        frame *f = &c->stack.items[c->stack.len - 1];
        if (f->is_map && !f->key)
            return take_key(c, f, ev);
    }
    c->nodes++;
    int rc;
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        json_t *v = scalar_value(c, ev);
        if (!v)
            return BT_EPARSE;
        if (ev->data.scalar.anchor)
            register_anchor(c, (const char *)ev->data.scalar.anchor, v, 1);
        return attach(c, v, ev->start_mark);
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        anchor_entry *a = bt_map_get(c->anchors, name);
        if (!a)
            return conv_error(c, ev->start_mark,
                              "unknown anchor '*%s' (define it with '&%s' before using it)", name,
                              name);
        c->alias_nodes += a->size;
        if (c->alias_nodes > BT_YAML_MAX_ALIAS_NODES)
            return conv_error(c, ev->start_mark,
                              "aliases expand to more than %d nodes; refusing (is this a "
                              "\"billion laughs\" document?)",
                              BT_YAML_MAX_ALIAS_NODES);
        c->nodes += a->size - 1;
        return attach(c, json_deep_copy(a->node), ev->start_mark);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        const char *tag =
            (const char *)(is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
        const char *want = is_map ? YAML_MAP_TAG : YAML_SEQ_TAG;
        if (tag && strcmp(tag, "!") != 0 && strcmp(tag, want) != 0)
            return conv_error(c, ev->start_mark,
                              "unsupported tag '%s' (baton reads plain YAML data)", tag);
        if (c->stack.len >= BT_YAML_MAX_DEPTH)
            return conv_error(c, ev->start_mark, "nesting deeper than %d levels",
                              BT_YAML_MAX_DEPTH);
        json_t *v = is_map ? json_object() : json_array();
        if ((rc = attach(c, v, ev->start_mark)) < 0)
            return rc;
        const yaml_char_t *anchor =
            is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        frame f = {.node = v,
                   .is_map = is_map,
                   .path_len = c->path.len,
                   .anchor = anchor ? bt_xstrdup((const char *)anchor) : NULL,
                   .nodes_at_start = c->nodes};
        bt_vec_push(&c->stack, f);
        return 0;
    }
    default:
        return 0;
    }
}

static int on_end(conv *c, const yaml_event_t *ev)
{
    frame *f = &c->stack.items[c->stack.len - 1];
    int rc = 0;
    if (f->is_map && (rc = apply_merges(c, f, ev->start_mark)) < 0)
        return rc;
    if (f->anchor) {
        /* Merges may have added nodes that the counter did not see. */
        size_t size = f->merges ? count_nodes(f->node) : c->nodes - f->nodes_at_start + 1;
        register_anchor(c, f->anchor, f->node, size);
    }
    pop_frame(c);
    return 0;
}

static int parser_error(conv *c, yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_READER_ERROR)
        return bt_errorf(c->err, BT_EPARSE, "%s: %s at byte %zu", c->name, problem,
                         p->problem_offset);
    if (p->error == YAML_MEMORY_ERROR)
        return bt_errorf(c->err, BT_ENOMEM, "%s: out of memory while parsing", c->name);
    if (p->context)
        return bt_errorf(c->err, BT_EPARSE, "%s:%zu:%zu: %s %s (line %zu, column %zu)", c->name,
                         p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context,
                         p->context_mark.line + 1, p->context_mark.column + 1);
    return bt_errorf(c->err, BT_EPARSE, "%s:%zu:%zu: %s", c->name, p->problem_mark.line + 1,
                     p->problem_mark.column + 1, problem);
}

static void free_pos(void *p)
{
    free(p);
}

int bt_yaml_load_string(const char *name, const char *buf, size_t len, bt_yaml_doc **out,
                        bt_error *err)
{
    *out = NULL;
    if (!name)
        name = "<string>";
    bt_yaml_doc *doc = bt_xcalloc(1, sizeof *doc);
    doc->name = bt_xstrdup(name);
    doc->pos = bt_map_new(free_pos);
    conv c = {.name = doc->name, .doc = doc, .err = err};
    c.anchors = bt_map_new(free_anchor);

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        bt_map_free(c.anchors);
        bt_yaml_doc_free(doc);
        return bt_errorf(err, BT_ENOMEM, "%s: cannot initialise the YAML parser", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);

    int rc = 0, done = 0;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = parser_error(&c, &parser);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++c.documents > 1)
                rc = conv_error(&c, ev.start_mark,
                                "a second YAML document starts here; baton reads one document "
                                "per file (remove the '---' separator or split the file)");
            break;
        case YAML_SCALAR_EVENT:
        case YAML_ALIAS_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            rc = on_node(&c, &ev);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            rc = on_end(&c, &ev);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    while (c.stack.len)
        pop_frame(&c);
    bt_vec_free(&c.stack);
    bt_strbuf_release(&c.path);
    bt_map_free(c.anchors);
    if (rc < 0) {
        bt_yaml_doc_free(doc);
        return rc;
    }
    if (!doc->root) {
        doc->root = json_null();
        bt_yaml_pos one = {1, 1};
        pos_entry *e = bt_xmalloc(sizeof *e);
        e->key = e->val = one;
        bt_map_set(doc->pos, "", e);
    }
    *out = doc;
    return 0;
}

int bt_yaml_load_file(const char *path, bt_yaml_doc **out, bt_error *err)
{
    char *data = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = bt_path_read_file(path, BT_YAML_MAX_FILE, &data, &len, err);
    if (rc < 0)
        return rc;
    rc = bt_yaml_load_string(path, data, len, out, err);
    free(data);
    return rc;
}

json_t *bt_yaml_doc_root(const bt_yaml_doc *doc)
{
    return doc ? doc->root : NULL;
}

const char *bt_yaml_doc_name(const bt_yaml_doc *doc)
{
    return doc ? doc->name : NULL;
}

int bt_yaml_doc_pos(const bt_yaml_doc *doc, const char *pointer, bt_yaml_pos *key_pos,
                    bt_yaml_pos *val_pos)
{
    bt_yaml_pos zero = {0, 0};
    if (key_pos)
        *key_pos = zero;
    if (val_pos)
        *val_pos = zero;
    if (!doc || !pointer)
        return BT_ENOENT;
    char *p = bt_xstrdup(pointer);
    int exact = 1;
    for (;;) {
        pos_entry *e = bt_map_get(doc->pos, p);
        if (e) {
            if (key_pos)
                *key_pos = e->key;
            if (val_pos)
                *val_pos = e->val;
            free(p);
            return exact ? 0 : 1;
        }
        char *slash = strrchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        exact = 0;
    }
    free(p);
    return BT_ENOENT;
}

void bt_yaml_doc_free(bt_yaml_doc *doc)
{
    if (!doc)
        return;
    json_decref(doc->root);
    bt_map_free(doc->pos);
    free(doc->name);
    free(doc);
}
