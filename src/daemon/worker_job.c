/*
 * worker_job.c - a queue job's fields, read and checked (docs/queue.md JOBS).
 *
 * Owns the job format: a stream entry's field/value pairs are untrusted (anyone
 * who may XADD to the jobs stream writes them), so every field is known, appears
 * once and is bounded; the id has a small alphabet (it becomes part of a Redis key
 * and of log lines); exactly one source (url, path or bytes) is given. Nothing here
 * touches Redis, files or the engine: tests/fuzz/fuzz_worker_job.c feeds it
 * arbitrary pairs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "worker.h"

enum { F_ID, F_URL, F_PATH, F_BYTES, F_TEXT, F_REPLY, F__COUNT };
static const char *const field_names[F__COUNT] = {"id", "url", "path", "bytes", "text", "reply"};

int wjob_valid_id(const char *s, size_t n)
{
    if (!n || n > WJ_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && !strchr("._:@+=/-", ch))
            return 0;
    }
    return 1;
}

int wjob_valid_key(const char *s, size_t n)
{
    if (!n || n > WJ_KEY_MAX)
        return 0;
    /* Printable ASCII without spaces: a key that reads the same in logs and redis-cli. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* A field name as it may be quoted in a sentence: printable ASCII, at most 32 bytes. */
static void quote_name(char *out, size_t outlen, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && i < 32 && k + 1 < outlen; i++)
        out[k++] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? '?' : s[i];
    out[k] = '\0';
}

static int field_index(const char *s, size_t n)
{
    for (int i = 0; i < F__COUNT; i++)
        if (strlen(field_names[i]) == n && !memcmp(s, field_names[i], n))
            return i;
    return -1;
}

static int refuse(const char **reason, const char *r, char *why, size_t whylen, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));

/* Set the reason and the sentence of a refusal; returns -1. */
static int refuse(const char **reason, const char *r, char *why, size_t whylen, const char *fmt,
                  ...)
{
    va_list ap;
    *reason = r;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Each pair to its field (at[] indexes v), refusing unknown and repeated fields. */
static int sort_fields(const char *const *f, const size_t *flen, size_t n, int *at,
                       const char **reason, char *why, size_t whylen)
{
    char name[40];
    for (int i = 0; i < F__COUNT; i++)
        at[i] = -1;
    if (n > WJ_MAX_FIELDS)
        return refuse(reason, "bad-job", why, whylen, "the entry has more than %d fields",
                      WJ_MAX_FIELDS);
    for (size_t i = 0; i < n; i++) {
        int k = field_index(f[i], flen[i]);
        quote_name(name, sizeof name, f[i], flen[i]);
        if (k < 0)
            return refuse(reason, "bad-job", why, whylen,
                          "unknown field '%s' (a job has id, url, path or bytes, text, reply)",
                          name);
        if (at[k] >= 0)
            return refuse(reason, "bad-job", why, whylen, "field '%s' is given twice", name);
        at[k] = (int)i;
    }
    return 0;
}

/* The one source of the job: url, path or bytes. 0, or -1 refused. */
static int read_source(const int *at, const char *const *v, const size_t *vlen,
                       const wj_limits *lim, wjob *j, const char **reason, char *why, size_t whylen)
{
    int given = (at[F_URL] >= 0) + (at[F_PATH] >= 0) + (at[F_BYTES] >= 0);
    if (given != 1)
        return refuse(reason, "bad-job", why, whylen, "a job has exactly one of url, path, bytes");
    int k = at[F_URL] >= 0 ? F_URL : at[F_PATH] >= 0 ? F_PATH : F_BYTES;
    j->kind = k == F_URL ? WJ_URL : k == F_PATH ? WJ_PATH : WJ_BYTES;
    j->src = v[at[k]];
    j->src_len = vlen[at[k]];
    if (!j->src_len)
        return refuse(reason, "bad-job", why, whylen, "field '%s' is empty", field_names[k]);
    if (j->kind == WJ_BYTES) {
        if (j->src_len > lim->max_bytes)
            return refuse(reason, "too-large", why, whylen,
                          "the image is larger than worker.max-bytes (%zu bytes)", lim->max_bytes);
        return 0;
    }
    size_t most = j->kind == WJ_URL ? WJ_URL_MAX : WJ_PATH_MAX;
    if (j->src_len > most)
        return refuse(reason, "bad-job", why, whylen, "field '%s' is longer than %zu bytes",
                      field_names[k], most);
    if (memchr(j->src, '\0', j->src_len))
        return refuse(reason, "bad-job", why, whylen, "field '%s' holds a NUL byte",
                      field_names[k]);
    if (j->kind == WJ_URL && !lim->urls)
        return refuse(reason, "refused", why, whylen,
                      "URL jobs are turned off (worker.urls: false)");
    if (j->kind == WJ_PATH && j->src[0] != '/')
        return refuse(reason, "refused", why, whylen, "the path must be absolute");
    return 0;
}

int wjob_parse(const char *const *f, const size_t *flen, const char *const *v, const size_t *vlen,
               size_t n, const wj_limits *lim, wjob *j, const char **reason, char *why,
               size_t whylen)
{
    int at[F__COUNT];

    memset(j, 0, sizeof *j);
    *reason = NULL;
    /* The id and reply first: a job refused for another field is still answered. */
    for (size_t i = n; i-- > 0;) {
        int k = i < WJ_MAX_FIELDS ? field_index(f[i], flen[i]) : -1;
        if (k == F_ID && wjob_valid_id(v[i], vlen[i])) {
            memcpy(j->id, v[i], vlen[i]);
            j->id[vlen[i]] = '\0';
        } else if (k == F_REPLY && wjob_valid_key(v[i], vlen[i])) {
            j->reply = v[i];
            j->reply_len = vlen[i];
        }
    }
    if (sort_fields(f, flen, n, at, reason, why, whylen))
        return -1;
    if (!j->id[0])
        return refuse(reason, "bad-job", why, whylen,
                      "a job needs an id of 1 to %d characters from A-Z a-z 0-9 . _ : @ + = / -",
                      WJ_ID_MAX);
    if (read_source(at, v, vlen, lim, j, reason, why, whylen))
        return -1;
    if (at[F_REPLY] >= 0) {
        if (!wjob_valid_key(v[at[F_REPLY]], vlen[at[F_REPLY]]))
            return refuse(reason, "bad-job", why, whylen,
                          "reply must name a stream: 1 to %d printable characters, no spaces",
                          WJ_KEY_MAX);
    }
    if (at[F_TEXT] >= 0 && lim->context) {
        if (vlen[at[F_TEXT]] > lim->max_text)
            return refuse(reason, "bad-job", why, whylen,
                          "text is larger than %zu bytes (4 times the engine's max-context-bytes)",
                          lim->max_text);
        j->text = v[at[F_TEXT]];
        j->text_len = vlen[at[F_TEXT]];
    }
    return 0;
}
