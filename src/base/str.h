/*
 * str.h - small string utilities: prefixes, case, constant-time compare, and
 * "did you mean" suggestions (edit distance) used by the CLI and config validation.
 */
#ifndef BT_STR_H
#define BT_STR_H

#include <stddef.h>

int bt_str_starts_with(const char *s, const char *prefix);
int bt_str_ends_with(const char *s, const char *suffix);
/* ASCII lower/upper-case in place; returns s. */
char *bt_str_lower(char *s);
char *bt_str_upper(char *s);
/* Levenshtein distance (capped at 255 characters of input). */
size_t bt_str_distance(const char *a, const char *b);
/* The candidate closest to word, or NULL if none is close enough to be a likely typo. */
const char *bt_str_suggest(const char *word, const char *const *candidates, size_t n);
/* Constant-time equality of two byte strings (length is not secret). */
int bt_str_ct_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
