/*
 * tokenize_jsonl.c - command-line driver of the tokenizer for parity tests.
 *
 * Reads JSON Lines from stdin, each line one JSON string, and writes for each a
 * line {"ids":[...],"truncated":false|true} (blank lines are skipped), byte for
 * byte the output format of tests/reference/tokenizer_ref.py.
 * Options: --merges PATH (required), --n-merges N (default 48894, OpenAI's),
 * --ctx N (default 77), --repeat N (encode every line N times, for timing; the
 * encode rate goes to stderr).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getline */
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common.h"
#include "tokenizer.h"

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    if (!s || !*s)
        return -1;
    v = strtoull(s, &end, 10);
    if (*end || v == 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: tokenize_jsonl --merges PATH [--n-merges N] [--ctx N] "
                    "[--repeat N] < strings.jsonl > ids.jsonl\n");
}

typedef struct {
    const char *merges;
    size_t n_merges, ctx, repeat;
} options;

/* Every option takes a value. 0, or -1 after printing the usage. */
static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i += 2) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 0;
        if (!strcmp(argv[i], "--merges")) {
            o->merges = val;
            ok = val != NULL;
        } else if (!strcmp(argv[i], "--n-merges")) {
            ok = !parse_size(val, &o->n_merges);
        } else if (!strcmp(argv[i], "--ctx")) {
            ok = !parse_size(val, &o->ctx);
        } else if (!strcmp(argv[i], "--repeat")) {
            ok = !parse_size(val, &o->repeat);
        }
        if (!ok) {
            usage();
            return -1;
        }
    }
    if (!o->merges) {
        usage();
        return -1;
    }
    return 0;
}

typedef struct {
    size_t texts, bytes;
    double seconds;
} timing;

/*
 * One input line (a JSON string) encoded o->repeat times, its ids written as a JSON
 * line. 0, or -1 after saying why on stderr.
 */
static int encode_line(const options *o, const cm_tokenizer *tok, const char *line, size_t got,
                       size_t lineno, int32_t *ids, timing *t)
{
    char errbuf[CLIPMOD_ERROR_SIZE];
    json_error_t jerr;
    size_t n_ids = 0;
    int truncated = 0;
    struct timespec t0, t1;
    json_t *j = json_loadb(line, got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (!j || !json_is_string(j)) {
        fprintf(stderr, "tokenize_jsonl: stdin:%zu: expected a JSON string%s%s\n", lineno,
                j ? "" : ": ", j ? "" : jerr.text);
        json_decref(j);
        return -1;
    }
    const char *text = json_string_value(j);
    size_t len = json_string_length(j);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t r = 0; r < o->repeat; r++) {
        if (cm_tokenizer_encode(tok, text, len, ids, o->ctx, &n_ids, &truncated, errbuf)) {
            fprintf(stderr, "tokenize_jsonl: stdin:%zu: %s\n", lineno, errbuf);
            json_decref(j);
            return -1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    t->seconds += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    t->texts += o->repeat;
    t->bytes += o->repeat * len;
    json_decref(j);

    fputs("{\"ids\":[", stdout);
    for (size_t i = 0; i < n_ids; i++)
        printf(i ? ",%d" : "%d", (int)ids[i]);
    printf("],\"truncated\":%s}\n", truncated ? "true" : "false");
    return 0;
}

int main(int argc, char **argv)
{
    options o = {NULL, 48894, CLIPMOD_CONTEXT_LENGTH, 1};
    timing t = {0, 0, 0};
    cm_tokenizer *tok = NULL;
    char errbuf[CLIPMOD_ERROR_SIZE];
    char *line = NULL;
    size_t line_cap = 0, lineno = 0;
    int32_t *ids = NULL;
    int rc = 1;

    if (parse_args(argc, argv, &o))
        return 2;
    if (cm_tokenizer_load(o.merges, o.n_merges, &tok, errbuf)) {
        fprintf(stderr, "tokenize_jsonl: %s\n", errbuf);
        return 1;
    }
    ids = malloc(o.ctx * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "tokenize_jsonl: out of memory\n");
        goto out;
    }
    for (;;) {
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0)
            break;
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)got)
            continue; /* blank lines are skipped, as by tokenizer_ref.py */
        if (encode_line(&o, tok, line, (size_t)got, lineno, ids, &t))
            goto out;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "tokenize_jsonl: error reading stdin\n");
        goto out;
    }
    if (o.repeat > 1 && t.seconds > 0)
        fprintf(stderr,
                "tokenize_jsonl: %zu encodes of %zu bytes in %.3f s: %.0f texts/s, %.1f MB/s\n",
                t.texts, t.bytes, t.seconds, (double)t.texts / t.seconds,
                (double)t.bytes / t.seconds / 1e6);
    rc = fflush(stdout) ? 1 : 0;
out:
    free(line);
    free(ids);
    cm_tokenizer_free(tok);
    return rc;
}
