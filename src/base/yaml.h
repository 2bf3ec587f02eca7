/*
 * yaml.h - load one YAML document into a jansson tree, remembering where every node
 * came from.
 *
 * Every configuration and workflow file goes through here, so errors anywhere later
 * (validation, templates) can point at `file:line:column` of the key or value that
 * caused them. The loader implements the YAML 1.2 core schema on top of libyaml's
 * event API:
 *
 *   - mappings -> objects, sequences -> arrays;
 *   - plain scalars are typed: null / Null / NULL / ~ / empty -> null, true / false
 *     (and their Title/UPPER forms) -> booleans, decimal / 0x / 0o integers ->
 *     integers, decimals with a point or exponent -> reals; anything else, every
 *     quoted scalar, block scalars, and explicitly `!!str`-tagged scalars are strings
 *     (so `yes`, `on`, `.inf` stay strings);
 *   - anchors and aliases are supported: an alias is a deep copy of the anchored node,
 *     and the total number of nodes produced through aliases is capped
 *     (BT_YAML_MAX_ALIAS_NODES) so a "billion laughs" file fails instead of eating
 *     memory;
 *   - merge keys (`<<: *base` or `<<: [*a, *b]`) are applied; explicit keys win;
 *   - a stream with more than one document (`---` separators) is refused, as are
 *     duplicate keys, non-scalar keys and nesting deeper than BT_YAML_MAX_DEPTH.
 *
 * Positions are 1-based (line, column) and are kept in a side table keyed by JSON
 * pointer (RFC 6901): "" is the root, "/agents/claude/timeout" a nested key,
 * "/tokens/0" the first item of a sequence. Errors carry "name:line:column: ...".
 */
#ifndef BT_YAML_H
#define BT_YAML_H

#include "base/error.h"
#include "base/strbuf.h"

#include <jansson.h>
#include <stddef.h>

#define BT_YAML_MAX_DEPTH       128
#define BT_YAML_MAX_ALIAS_NODES 100000
#define BT_YAML_MAX_FILE        (16u << 20)

typedef struct bt_yaml_pos {
    int line;   /* 1-based; 0 when unknown */
    int column; /* 1-based; 0 when unknown */
} bt_yaml_pos;

typedef struct bt_yaml_doc bt_yaml_doc;

/* Parse buf[0..len) (need not be NUL-terminated). name is used in messages and copied.
 * On success *out is a new document the caller frees with bt_yaml_doc_free. An empty
 * stream gives a document whose root is JSON null. */
int bt_yaml_load_string(const char *name, const char *buf, size_t len, bt_yaml_doc **out,
                        bt_error *err);

/* Read and parse a file (at most BT_YAML_MAX_FILE bytes); name in messages is path. */
int bt_yaml_load_file(const char *path, bt_yaml_doc **out, bt_error *err);

/* The parsed tree. Borrowed: valid until bt_yaml_doc_free; do not modify or decref. */
json_t *bt_yaml_doc_root(const bt_yaml_doc *doc);

/* The name given at load time. Borrowed. */
const char *bt_yaml_doc_name(const bt_yaml_doc *doc);

/* Where the node at pointer came from. key_pos receives the position of its key (for a
 * sequence item or the root: the item itself), val_pos that of its value; either may be
 * NULL. Returns 0 when the pointer has an exact entry; 1 when it has none (e.g. a key
 * that came in through an alias or merge, or one that is absent) and the nearest
 * ancestor's positions were used instead; BT_ENOENT when not even the root is known
 * (positions are then zeroed). */
int bt_yaml_doc_pos(const bt_yaml_doc *doc, const char *pointer, bt_yaml_pos *key_pos,
                    bt_yaml_pos *val_pos);

/* Append "/" and token escaped for a JSON pointer ("~" -> "~0", "/" -> "~1"). */
void bt_yaml_pointer_push(bt_strbuf *sb, const char *token);

void bt_yaml_doc_free(bt_yaml_doc *doc);

#endif
