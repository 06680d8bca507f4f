/*
 * test_worker_job.c - the queue worker's reading of a job entry (src/daemon/worker_job.c,
 * docs/queue.md JOBS): each kind of job accepted with what it borrows, and each kind
 * of bad entry refused with its reason and sentence, the id kept for the answer
 * whenever the entry had a valid one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "worker.h"

static const wj_limits LIM = {.max_bytes = 100, .max_text = 16, .urls = 1, .context = 1};

typedef struct entry {
    const char *f[24], *v[24];
    size_t flen[24], vlen[24], n;
} entry;

/* An entry from NULL-terminated field, value strings. */
static entry make(const char *first, ...)
{
    entry e = {.n = 0};
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        e.f[e.n] = s;
        e.flen[e.n] = strlen(s);
        e.v[e.n] = va_arg(ap, const char *);
        e.vlen[e.n] = strlen(e.v[e.n]);
        e.n++;
    }
    va_end(ap);
    return e;
}

static int parse(const entry *e, const wj_limits *lim, wjob *j, const char **reason, char *why)
{
    return wjob_parse(e->f, e->flen, e->v, e->vlen, e->n, lim, j, reason, why, 256);
}

static void accepted(void **state)
{
    wjob j;
    const char *reason;
    char why[256];
    entry e = make("id", "job-1", "path", "/srv/a.png", NULL);

    assert_int_equal(parse(&e, &LIM, &j, &reason, why), 0);
    assert_string_equal(j.id, "job-1");
    assert_int_equal(j.kind, WJ_PATH);
    assert_ptr_equal(j.src, e.v[1]);
    assert_null(j.text);
    assert_null(j.reply);

    e = make("reply", "r:1", "text", "a caption", "url", "https://x.example/a.png", "id",
             "A.b_c:d@e+f=g/h-9", NULL);
    assert_int_equal(parse(&e, &LIM, &j, &reason, why), 0);
    assert_int_equal(j.kind, WJ_URL);
    assert_int_equal(j.text_len, 9);
    assert_int_equal(j.reply_len, 3);
    assert_string_equal(j.id, "A.b_c:d@e+f=g/h-9");

    /* Bytes may hold NULs; context off: the text is ignored, not refused. */
    e = make("id", "b", "bytes", "x", "text", "far longer than sixteen bytes", NULL);
    e.v[1] = "\x89PNG\0\0";
    e.vlen[1] = 6;
    wj_limits off = LIM;
    off.context = 0;
    assert_int_equal(parse(&e, &off, &j, &reason, why), 0);
    assert_int_equal(j.kind, WJ_BYTES);
    assert_int_equal(j.src_len, 6);
    assert_null(j.text);
    (void)state;
}

/* A refused entry: its reason, a sentence containing `words`, and the id kept. */
static void refused(const entry *e, const wj_limits *lim, const char *want_reason,
                    const char *words, const char *want_id)
{
    wjob j;
    const char *reason;
    char why[256];

    assert_int_equal(parse(e, lim, &j, &reason, why), -1);
    assert_string_equal(reason, want_reason);
    if (!strstr(why, words))
        fail_msg("'%s' does not say '%s'", why, words);
    assert_string_equal(j.id, want_id);
}

static void refusals(void **state)
{
    entry e;
    wj_limits no_urls = LIM;
    no_urls.urls = 0;

    e = make("path", "/a", NULL);
    refused(&e, &LIM, "bad-job", "needs an id", "");
    e = make("id", "with space", "path", "/a", NULL);
    refused(&e, &LIM, "bad-job", "needs an id", "");
    e = make("id", "", "path", "/a", NULL);
    refused(&e, &LIM, "bad-job", "needs an id", "");
    e = make("id", "a", "path", "/a", "colour", "red", NULL);
    refused(&e, &LIM, "bad-job", "unknown field 'colour'", "a");
    e = make("id", "a", "path", "/a", "path", "/b", NULL);
    refused(&e, &LIM, "bad-job", "'path' is given twice", "a");
    e = make("id", "a", "text", "t", NULL);
    refused(&e, &LIM, "bad-job", "exactly one of url, path, bytes", "a");
    e = make("id", "a", "path", "/a", "bytes", "b", NULL);
    refused(&e, &LIM, "bad-job", "exactly one of url, path, bytes", "a");
    e = make("id", "a", "bytes", "", NULL);
    refused(&e, &LIM, "bad-job", "'bytes' is empty", "a");
    e = make("id", "a", "path", "rel/a.png", NULL);
    refused(&e, &LIM, "refused", "must be absolute", "a");
    e = make("id", "a", "url", "http://x/", NULL);
    refused(&e, &no_urls, "refused", "worker.urls: false", "a");
    e = make("id", "a", "path", "/a", "reply", "two words", NULL);
    refused(&e, &LIM, "bad-job", "reply must name a stream", "a");
    e = make("id", "a", "path", "/a", "text", "seventeen bytes!!", NULL);
    refused(&e, &LIM, "bad-job", "text is larger than 16 bytes", "a");
    e = make("id", "a", "path", "/a", NULL);
    e.v[1] = "/a\0b";
    e.vlen[1] = 4;
    refused(&e, &LIM, "bad-job", "'path' holds a NUL byte", "a");

    char big[101];
    memset(big, 'x', sizeof big);
    e = make("id", "a", "bytes", "x", NULL);
    e.v[1] = big;
    e.vlen[1] = sizeof big;
    refused(&e, &LIM, "too-large", "worker.max-bytes (100 bytes)", "a");

    char id[WJ_ID_MAX + 2];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    e = make("id", id, "path", "/a", NULL);
    refused(&e, &LIM, "bad-job", "needs an id", "");
    id[WJ_ID_MAX] = '\0';
    e = make("id", id, "path", "/a", NULL);
    wjob j;
    const char *reason;
    char why[256];
    assert_int_equal(parse(&e, &LIM, &j, &reason, why), 0);
    (void)state;
}

static void too_many_fields(void **state)
{
    entry e = make("id", "a", "path", "/a", NULL);
    for (size_t i = e.n; i <= WJ_MAX_FIELDS; i++) {
        e.f[i] = "text";
        e.flen[i] = 4;
        e.v[i] = "t";
        e.vlen[i] = 1;
    }
    e.n = WJ_MAX_FIELDS + 1;
    refused(&e, &LIM, "bad-job", "more than 16 fields", "a");
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted),
        cmocka_unit_test(refusals),
        cmocka_unit_test(too_many_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
