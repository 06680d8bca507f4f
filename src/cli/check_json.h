/*
 * check_json.h - `clipmod policy check --json`: problems as objects (check_json.c).
 */
#ifndef CLIPMOD_CLI_CHECK_JSON_H
#define CLIPMOD_CLI_CHECK_JSON_H

#include <jansson.h>
#include <stddef.h>

/*
 * The library's line `s` (n bytes, "file:line:column: message" or "file: message") as
 * {file, line, column, message, hint}; line, column and hint are null when absent.
 * A new reference, or NULL if out of memory.
 */
json_t *check_problem_json(const char *s, size_t n);

#endif
