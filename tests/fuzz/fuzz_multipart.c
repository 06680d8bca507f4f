/*
 * fuzz_multipart.c - clipmodd's streaming multipart/form-data reader
 * (src/daemon/multipart.c).
 *
 * The input's first line is the Content-Type (its boundary parameter), the rest
 * the body. The body is read three times: in one feed, a byte at a time, and in
 * pieces of varying sizes. Beyond memory safety the target aborts when a promise
 * of the reader is broken:
 *   - the reading does not depend on how the body was cut: the same status and
 *     message, and for a body read whole the same parts, headers and bytes;
 *   - callbacks come in order (begin, data, end; data only inside a part);
 *   - names and file names are valid UTF-8 without control characters, at most
 *     MP_MAX_NAME bytes; a Content-Type is printable ASCII;
 *   - no more parts than the limit; a failure always has a message.
 * A part named "stop" makes the callback stop the reader (MP_STOPPED).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "multipart.h"

static const mp_limits LIMITS = {8, 1024};

static void check(int ok)
{
    if (!ok)
        abort();
}

/* What one reading saw, as bytes to compare. */
typedef struct trace {
    unsigned char *buf;
    size_t len, cap;
    int in_part;
    size_t parts;
} trace;

static void put(trace *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n)
            cap *= 2;
        t->buf = realloc(t->buf, cap);
        check(t->buf != NULL);
        t->cap = cap;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void utf8_name(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    check(n <= MP_MAX_NAME);
    for (size_t i = 0; i < n;) {
        size_t len = p[i] < 0x80                    ? 1
                     : p[i] >= 0xc2 && p[i] <= 0xdf ? 2
                     : p[i] >= 0xe0 && p[i] <= 0xef ? 3
                     : p[i] >= 0xf0 && p[i] <= 0xf4 ? 4
                                                    : 0;
        check(len && i + len <= n && p[i] >= 0x20 && p[i] != 0x7f);
        for (size_t k = 1; k < len; k++)
            check((p[i + k] & 0xc0) == 0x80);
        i += len;
    }
}

static void put_str(trace *t, const char *tag, const char *s)
{
    put(t, tag, strlen(tag));
    if (s)
        put(t, s, strlen(s) + 1);
    else
        put(t, "-", 1);
}

static int on_begin(void *arg, const mp_part *p)
{
    trace *t = arg;
    check(!t->in_part && p->index == t->parts && t->parts < LIMITS.max_parts);
    t->in_part = 1;
    t->parts++;
    if (p->name)
        utf8_name(p->name);
    if (p->filename)
        utf8_name(p->filename);
    for (const char *c = p->content_type; c && *c; c++)
        check(*c >= 0x20 && *c < 0x7f);
    put_str(t, "B", p->name);
    put_str(t, "F", p->filename);
    put_str(t, "T", p->content_type);
    put(t, p->has_filename ? "h" : "n", 1);
    put(t, p->form_data ? "d" : "o", 1);
    return p->name && !strcmp(p->name, "stop");
}

static int on_data(void *arg, const unsigned char *data, size_t n)
{
    trace *t = arg;
    check(t->in_part && n > 0);
    put(t, data, n);
    return 0;
}

static int on_end(void *arg)
{
    trace *t = arg;
    check(t->in_part);
    t->in_part = 0;
    put(t, "E", 1);
    return 0;
}

static const mp_callbacks CALLBACKS = {on_begin, on_data, on_end};

/* Read the body fed in pieces: step 0 whole, 1 byte by byte, 2 varying sizes. */
static mp_status read_body(const char *ctype, const uint8_t *body, size_t len, int step, trace *t,
                           char *why, size_t whylen)
{
    mp_status st;
    mp_reader *r = mp_new(ctype, &LIMITS, &CALLBACKS, t, &st, why, whylen);
    if (!r) {
        check(st != MP_OK && *why);
        return st;
    }
    size_t i = 0, piece = 1;
    while (i < len && st == MP_OK) {
        size_t n = step == 0 ? len : step == 1 ? 1 : piece;
        if (n > len - i)
            n = len - i;
        st = mp_feed(r, body + i, n);
        i += n;
        piece = piece * 7 % 61 + 1;
    }
    if (st == MP_OK)
        st = mp_finish(r);
    check(st == MP_OK || *mp_error(r));
    snprintf(why, whylen, "%s", mp_error(r));
    if (st == MP_OK)
        check(!t->in_part);
    mp_free(r);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return 0;
    size_t clen = (size_t)(nl - data);
    char *ctype = malloc(clen + 1);
    check(ctype != NULL);
    memcpy(ctype, data, clen);
    ctype[clen] = '\0';

    trace t[3];
    char why[3][256];
    mp_status st[3];
    memset(t, 0, sizeof t);
    for (int k = 0; k < 3; k++)
        st[k] = read_body(ctype, nl + 1, size - clen - 1, k, &t[k], why[k], sizeof why[k]);
    for (int k = 1; k < 3; k++) {
        check(st[k] == st[0] && !strcmp(why[k], why[0]));
        if (st[0] == MP_OK)
            check(t[k].len == t[0].len && (!t[0].len || !memcmp(t[k].buf, t[0].buf, t[0].len)));
    }
    for (int k = 0; k < 3; k++)
        free(t[k].buf);
    free(ctype);
    return 0;
}
