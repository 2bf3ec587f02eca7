/*
 * template.h - baton's strict templates (DESIGN.md §7, docs/workflows.md "Templates"):
 * the text of workflow prompts, commands, inputs, `when` conditions and outputs.
 *
 * Two spellings, both strict:
 *
 *   {{ task.title }}                         a path, then any number of filters:
 *   {{ steps.review.output | truncate(200) | upcase }}
 *   {{ inputs.branch | default("main") }}
 *   {{ "literal text" }}  {{ 42 }}           a literal instead of a path
 *   ${steps.step-1.output}  ${inputs.NAME}   seed 001's form: a path, no filters
 *   $${  ->  a literal "${"  (so shell text can keep ${VAR} by writing $${VAR})
 *
 * Inside {{ }} an expression may also compare and combine (for `when:`):
 *   {{ steps.review.suggestions > 3 }}  {{ inputs.mode == "fast" and not steps.test.ok }}
 *   {{ steps.test.output contains "FAIL" }}  {{ (a or b) and c }}
 * Grammar: or := and ("or" and)* ; and := not ("and" not)* ; not := "not" not | cmp ;
 * cmp := pipe (("=="|"!="|"<"|"<="|">"|">="|"contains") pipe)? ; pipe := primary ("|"
 * filter)* ; primary := path | literal | "(" or ")". Comparisons of two numbers are
 * numeric, anything else compares rendered text; "and"/"or"/"not" use bt_tmpl_truthy
 * and give booleans. "and", "or", "not", "contains", "true", "false", "null" are
 * reserved (not path roots).
 *
 * A path is NAME ( "." NAME | "[" INDEX "]" | "." INDEX )*; NAME is [A-Za-z_][A-Za-z0-9_-]*
 * (hyphens allowed: seed 001 step ids are "step-1"). Filters: default(VALUE) (used when
 * the value is null or ""), upcase, downcase, json (the value as compact JSON), truncate(N)
 * (at most N characters, UTF-8 safe, "..." appended when cut), trim, lines(N) (the last
 * N lines). Filter arguments are literals: "string" (with \" \\ \n \t escapes), integers,
 * true/false/null; parentheses may be omitted for filters without arguments.
 *
 * Rendering: strings as they are, numbers in their shortest form, true/false, null as "",
 * arrays and objects as compact JSON. A path naming something that does not exist is an
 * error ("unknown variable 'steps.reviw.output' (known: implement, review, refine)"),
 * never an empty string; so is an unknown filter, a bad argument or an index out of range.
 *
 * Errors carry the 1-based line and column inside the template text (bt_tmpl_error), so
 * a caller that knows where the text sits in a file can point at it.
 */
#ifndef BT_TEMPLATE_H
#define BT_TEMPLATE_H

#include "base/error.h"

#include <jansson.h>
#include <stddef.h>

typedef struct bt_tmpl bt_tmpl;

/* Where in the template text a problem is (1-based; 0 when unknown). */
typedef struct bt_tmpl_error {
    int line, column;
} bt_tmpl_error;

/* Parse src (NUL-terminated, copied). Syntax errors (unterminated "{{", empty
 * expression, bad path, unknown filter, wrong argument count or type) fail with
 * BT_EPARSE; *where (may be NULL) receives their position. On success *out is a new
 * template freed with bt_tmpl_free. */
int bt_tmpl_compile(const char *src, bt_tmpl **out, bt_tmpl_error *where, bt_error *err);
void bt_tmpl_free(bt_tmpl *t);

/* 1 when the text has no template expression at all (rendering returns it unchanged,
 * with "$${" turned into "${"). */
int bt_tmpl_is_static(const bt_tmpl *t);

/* The variable references, in order of appearance: call fn once per path with the path's
 * names split into parts (an index is given as its decimal text), e.g. {"steps",
 * "review", "output"}, and its position. Stops and returns fn's value when it is
 * non-zero; 0 otherwise. Used by workflow validation to check references before
 * anything runs. parts are borrowed for the call. */
typedef int (*bt_tmpl_ref_fn)(const char *const *parts, size_t nparts, int line, int column,
                              void *ud);
int bt_tmpl_refs(const bt_tmpl *t, bt_tmpl_ref_fn fn, void *ud);

/* Render with vars (an object: the roots such as task, inputs, steps). On success *out
 * is a new NUL-terminated string (free()). BT_ENOENT for an unknown variable, BT_EINVAL
 * for a filter that cannot apply (truncate of an object is fine: it applies to the
 * rendered text), with err naming the variable and *where its position. */
int bt_tmpl_render(const bt_tmpl *t, const json_t *vars, char **out, bt_tmpl_error *where,
                   bt_error *err);

/* The value of a template that is exactly one expression ("{{ steps.x.ok }}" with
 * nothing around it) as JSON, so `when:` can test booleans and numbers; any other
 * template gives its rendering as a JSON string. New reference in *out. */
int bt_tmpl_eval(const bt_tmpl *t, const json_t *vars, json_t **out, bt_tmpl_error *where,
                 bt_error *err);

/* Convenience: compile + render src in one go (errors as above). */
int bt_tmpl_render_string(const char *src, const json_t *vars, char **out, bt_error *err);

/* Truthiness of a `when:` value: false, null, 0, "" and the strings "false", "0", "no",
 * "off" (case-insensitive, surrounding blanks ignored) are false; everything else is
 * true. */
int bt_tmpl_truthy(const json_t *v);

#endif
