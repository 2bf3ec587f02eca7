/*
 * config.c - `baton config show [--config FILE] [--json]`: print the effective
 * configuration (file, then environment fallbacks, then defaults) with every secret
 * masked. The text form is YAML that baton itself can read back (apart from the
 * masked values); --json prints the same tree as `GET /api/config`.
 */
#include "cmd/cmd.h"

#include "base/str.h"
#include "base/strbuf.h"
#include "config/config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char synopsis[] = "baton config show [--config FILE] [--json]";
static const char *const subcommands[] = {"show"};

/* Does a string need quoting to stay a string when read back as YAML? */
static int needs_quotes(const char *s)
{
    if (!*s || strchr("-?:,[]{}#&*!|>'\"%@`~ ", s[0]) || s[strlen(s) - 1] == ' ')
        return 1;
    if (strstr(s, ": ") || strstr(s, " #") || s[strlen(s) - 1] == ':' || strchr(s, '\n'))
        return 1;
    static const char *const words[] = {"null", "Null",  "NULL",  "true", "True",
                                        "TRUE", "false", "False", "FALSE"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(s, words[i]) == 0)
            return 1;
    /* Anything that starts like a number would be read back as one. */
    const char *p = s + (s[0] == '+' || s[0] == '-');
    if ((*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9'))
        return 1;
    return 0;
}

static void emit_scalar(bt_strbuf *out, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: {
        const char *s = json_string_value(v);
        if (needs_quotes(s))
            bt_strbuf_add_json_str(out, s, json_string_length(v));
        else
            bt_strbuf_addstr(out, s);
        break;
    }
    case JSON_INTEGER:
        bt_strbuf_addf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        bt_strbuf_addf(out, "%g", json_real_value(v));
        break;
    case JSON_TRUE:
        bt_strbuf_addstr(out, "true");
        break;
    case JSON_FALSE:
        bt_strbuf_addstr(out, "false");
        break;
    case JSON_OBJECT:
        bt_strbuf_addstr(out, "{}");
        break;
    case JSON_ARRAY:
        bt_strbuf_addstr(out, "[]");
        break;
    default:
        bt_strbuf_addstr(out, "null");
        break;
    }
}

static int is_block(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

static void emit(bt_strbuf *out, const json_t *v, int indent, int first_inline);

static void emit_key(bt_strbuf *out, const char *k)
{
    if (needs_quotes(k))
        bt_strbuf_add_json_str(out, k, strlen(k));
    else
        bt_strbuf_addstr(out, k);
}

/* Emit a block node at indent. first_inline: the first line continues after "- ". */
static void emit(bt_strbuf *out, const json_t *v, int indent, int first_inline)
{
    int first = 1;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!(first && first_inline))
                bt_strbuf_addf(out, "%*s", indent, "");
            first = 0;
            emit_key(out, k);
            bt_strbuf_addch(out, ':');
            if (is_block(x)) {
                bt_strbuf_addch(out, '\n');
                emit(out, x, indent + 2, 0);
            } else {
                bt_strbuf_addch(out, ' ');
                emit_scalar(out, x);
                bt_strbuf_addch(out, '\n');
            }
        }
    } else {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (!(first && first_inline))
                bt_strbuf_addf(out, "%*s", indent, "");
            first = 0;
            bt_strbuf_addstr(out, "- ");
            if (is_block(x)) {
                emit(out, x, indent + 2, 1);
            } else {
                emit_scalar(out, x);
                bt_strbuf_addch(out, '\n');
            }
        }
    }
}

static int config_show(const char *config, int json)
{
    bt_config *cfg = NULL;
    if (bt_cmd_load_config("config", config, &cfg) != 0)
        return BT_EXIT_FAIL;
    const char *path = cfg->path;
    json_t *tree = bt_config_to_json(cfg, 1);
    if (json) {
        char *s = json_dumps(tree, JSON_INDENT(2));
        puts(s);
        free(s);
    } else {
        bt_strbuf out = BT_STRBUF_INIT;
        bt_strbuf_addf(&out, "# effective configuration from %s; secrets are masked\n",
                       path ? path : "built-in defaults and the environment");
        json_object_del(tree, "config_file");
        emit(&out, tree, 0, 0);
        fputs(bt_strbuf_cstr(&out), stdout);
        bt_strbuf_release(&out);
    }
    json_decref(tree);
    bt_config_free(cfg);
    return BT_EXIT_OK;
}

int bt_cmd_config(int argc, char **argv)
{
    const char *config = NULL;
    int json = 0, help = 0;
    const bt_opt opts[] = {
        {"config", 'c', 1, &config, NULL, "configuration file (default ./baton.yaml)"},
        {"json", 0, 0, NULL, &json, "print JSON instead of YAML"},
        {"help", 'h', 0, NULL, &help, "show this help"},
        {0},
    };
    bt_strvec pos = BT_STRVEC_INIT;
    int rc = bt_opts_parse("config", argc, argv, opts, &pos);
    if (rc != 0) {
        bt_strvec_clear(&pos);
        return rc;
    }
    if (help) {
        bt_strvec_clear(&pos);
        bt_opts_usage("config", synopsis, opts);
        printf("\nsubcommands:\n  show   the effective configuration, secrets masked\n");
        return BT_EXIT_OK;
    }
    if (pos.len == 0) {
        fprintf(stderr, "baton config: missing subcommand. usage: %s\n", synopsis);
        return BT_EXIT_USAGE;
    }
    const char *sub = pos.items[0];
    if (strcmp(sub, "show") != 0) {
        const char *s = bt_str_suggest(sub, subcommands, 1);
        fprintf(stderr, "baton config: unknown subcommand '%s'.", sub);
        if (s)
            fprintf(stderr, " Did you mean '%s'?", s);
        fprintf(stderr, " usage: %s\n", synopsis);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    if (pos.len > 1) {
        fprintf(stderr, "baton config show: unexpected argument '%s'.\n", pos.items[1]);
        bt_strvec_clear(&pos);
        return BT_EXIT_USAGE;
    }
    bt_strvec_clear(&pos);
    return config_show(config, json);
}
