/*
 * check_json.c - one problem of `clipmod policy check --json` as an object.
 *
 * Owns the split of the library's "file:line:column: message" lines into
 * {file, line, column, message, hint} (schema in clipmod(1)) and the hints: how to
 * fix the mistakes moderators make most (tabs in indentation, a quoted threshold, a
 * percentage). The library's lines stay the single source of the problems; a hint
 * is derived from the message and, for tabs, from the line of the file it names.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_json.h"

/* "file:12:3: message": the first ":N:M: " splits it; 0 if there is none. */
static int split_position(const char *s, size_t n, size_t *file_len, long *line, long *col,
                          size_t *msg_at)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ':')
            continue;
        size_t j = i + 1, a = j;
        while (j < n && s[j] >= '0' && s[j] <= '9')
            j++;
        if (j == a || j - a > 9 || j >= n || s[j] != ':')
            continue;
        size_t k = j + 1, b = k;
        while (k < n && s[k] >= '0' && s[k] <= '9')
            k++;
        if (k == b || k - b > 9 || k + 1 >= n || s[k] != ':' || s[k + 1] != ' ')
            continue;
        *file_len = i;
        *line = strtol(s + a, NULL, 10);
        *col = strtol(s + b, NULL, 10);
        *msg_at = k + 2;
        return 1;
    }
    return 0;
}

/* Line `line` of `file` has a tab in its indentation. */
static int tab_indented(const char *file, long line)
{
    FILE *f = fopen(file, "r");
    char buf[4096];
    long at = 0;
    int tab = 0;
    if (!f)
        return 0;
    while (at < line && fgets(buf, sizeof buf, f)) {
        const size_t len = strlen(buf);
        if (++at == line)
            tab = memchr(buf, '\t', strspn(buf, " \t")) != NULL;
        while (len && buf[len - 1] != '\n' && fgets(buf, sizeof buf, f)) /* a long line */
            if (strchr(buf, '\n'))
                break;
    }
    fclose(f);
    return tab;
}

/* The value a "..., not "X"" or "..., not 'X'" message quotes, into buf; quoted in *q. */
static int quoted_value(const char *msg, char *buf, size_t size, int *q)
{
    const char *at = strstr(msg, ", not ");
    if (!at)
        return 0;
    at += 6;
    const size_t len = strlen(at);
    if (len < 2 || (at[0] != '"' && at[0] != '\'') || at[len - 1] != at[0] || len - 2 >= size)
        return 0;
    *q = at[0] == '"';
    memcpy(buf, at + 1, len - 2);
    buf[len - 2] = '\0';
    return 1;
}

/* A number written entirely in `s` (C locale digits), else 0. */
static int plain_number(const char *s, double *out)
{
    char *end = NULL;
    if (!*s || strspn(s, "+-.0123456789eE") != strlen(s))
        return 0;
    errno = 0;
    *out = strtod(s, &end);
    return end != s && !*end && !errno;
}

static void threshold_hint(const char *msg, char *hint, size_t size)
{
    char v[64];
    int q = 0;
    double x;
    size_t len;
    if (!quoted_value(msg, v, sizeof v, &q)) {
        snprintf(hint, size,
                 "write a plain number greater than 0 and at most 1, such as "
                 "'threshold: 0.5'");
        return;
    }
    len = strlen(v);
    if (len > 1 && v[len - 1] == '%') {
        v[len - 1] = '\0';
        if (plain_number(v, &x)) {
            snprintf(hint, size,
                     "a threshold is a fraction, not a percentage: write 'threshold: %g' for "
                     "%s%%",
                     x / 100, v);
            return;
        }
    }
    if (q && plain_number(v, &x)) {
        snprintf(hint, size,
                 "a quoted value is text: write the number without quotes, "
                 "'threshold: %s'",
                 v);
        return;
    }
    snprintf(hint, size,
             "write a plain number greater than 0 and at most 1, such as "
             "'threshold: 0.5'");
}

/* A hint for `msg` at file:line, into `hint` ("" when there is none). */
static void hint_for(const char *file, long line, const char *msg, char *hint, size_t size)
{
    const char *dym = strstr(msg, "(did you mean '");
    hint[0] = '\0';
    if (!strncmp(msg, "YAML syntax error", 17) &&
        (strstr(msg, "tab character") || (line > 0 && tab_indented(file, line)))) {
        snprintf(hint, size, "indent with spaces: YAML does not allow tabs in indentation");
    } else if (!strncmp(msg, "threshold must be a number", 26)) {
        threshold_hint(msg, hint, size);
    } else if (strstr(msg, "prompt is ") && strstr(msg, "tokens")) {
        snprintf(hint, size, "shorten the prompt, or the template that makes it too long");
    } else if (dym) {
        const char *end = strstr(dym + 15, "'?)");
        if (end && end - (dym + 15) < 100)
            snprintf(hint, size, "did you mean '%.*s'?", (int)(end - (dym + 15)), dym + 15);
    }
}

json_t *check_problem_json(const char *s, size_t n)
{
    size_t file_len = 0, msg_at = 0;
    long line = 0, col = 0;
    char file[4096], msg[4096], hint[512];
    const int positioned = split_position(s, n, &file_len, &line, &col, &msg_at);
    if (!positioned) { /* "file: message" (a whole file), or a line of another shape */
        const char *sep = memmem(s, n, ": ", 2);
        file_len = sep ? (size_t)(sep - s) : 0;
        msg_at = sep ? file_len + 2 : 0;
    }
    snprintf(file, sizeof file, "%.*s", (int)file_len, s);
    snprintf(msg, sizeof msg, "%.*s", (int)(n - msg_at), s + msg_at);
    hint_for(file, positioned ? line : 0, msg, hint, sizeof hint);
    return json_pack("{s:o, s:o, s:o, s:s, s:o}", "file",
                     file_len ? json_string(file) : json_null(), "line",
                     positioned ? json_integer(line) : json_null(), "column",
                     positioned ? json_integer(col) : json_null(), "message", msg, "hint",
                     hint[0] ? json_string(hint) : json_null());
}
