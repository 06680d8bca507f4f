/*
 * fuzz_worker_job.c - a queue job's stream entry, read by clipmodd's worker
 * (src/daemon/worker_job.c; docs/queue.md JOBS).
 *
 * Input: one byte of limits (bit 0: URL jobs accepted, bit 1: context on, bits 2-7:
 * worker.max-bytes as 16 << (bits % 24)), then the entry's items separated by 0x1E,
 * read as field, value, field, value... (any bytes, NULs included; at most 20 pairs,
 * so entries over the limit of 16 are tried too). Invariants (abort on failure):
 *   - an accepted job has a valid id, exactly one source field that is non-empty,
 *     borrowed from the input and within its limit (bytes under max-bytes; a URL or
 *     path without NUL, a path absolute), a text within max-text only when context
 *     is on, a reply that is a valid key; and every field it was given is a known
 *     field given once;
 *   - a refused job has one of the three reasons and a sentence, and its id is
 *     empty or valid, its reply none or a valid key;
 *   - reading is deterministic: the same entry read twice gives the same answer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

#define MAX_PAIRS 20

static void check(int ok)
{
    if (!ok)
        abort();
}

static int inside(const char *p, size_t n, const uint8_t *data, size_t size)
{
    return p >= (const char *)data && p + n <= (const char *)data + size;
}

static void check_accepted(const wjob *j, const wj_limits *lim, const uint8_t *data, size_t size)
{
    check(wjob_valid_id(j->id, strlen(j->id)));
    check(j->src && j->src_len > 0 && inside(j->src, j->src_len, data, size));
    if (j->kind == WJ_BYTES) {
        check(j->src_len <= lim->max_bytes);
    } else {
        check(!memchr(j->src, '\0', j->src_len));
        check(j->kind == WJ_URL ? lim->urls && j->src_len <= WJ_URL_MAX
                                : j->src[0] == '/' && j->src_len <= WJ_PATH_MAX);
    }
    if (j->text)
        check(lim->context && j->text_len <= lim->max_text &&
              inside(j->text, j->text_len, data, size));
    if (j->reply)
        check(wjob_valid_key(j->reply, j->reply_len) && inside(j->reply, j->reply_len, data, size));
}

static void check_fields(const char *const *f, const size_t *flen, size_t n)
{
    static const char *const known[] = {"id", "url", "path", "bytes", "text", "reply"};
    int seen[6] = {0};
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < 6 && !(strlen(known[k]) == flen[i] && !memcmp(f[i], known[k], flen[i])))
            k++;
        check(k < 6 && !seen[k]);
        seen[k] = 1;
    }
    check(seen[0] && seen[1] + seen[2] + seen[3] == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *item[2 * MAX_PAIRS];
    size_t len[2 * MAX_PAIRS], n_items = 0;
    const char *f[MAX_PAIRS], *v[MAX_PAIRS];
    size_t flen[MAX_PAIRS], vlen[MAX_PAIRS];
    wj_limits lim = {0};

    if (!size)
        return 0;
    lim.urls = data[0] & 1;
    lim.context = (data[0] >> 1) & 1;
    lim.max_bytes = (size_t)16 << ((data[0] >> 2) % 24);
    lim.max_text = 64;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (p <= end && n_items < 2 * MAX_PAIRS) {
        const char *sep = memchr(p, 0x1e, (size_t)(end - p));
        const char *stop = sep ? sep : end;
        item[n_items] = p;
        len[n_items++] = (size_t)(stop - p);
        p = stop + 1;
    }
    size_t n = n_items / 2;
    for (size_t i = 0; i < n; i++) {
        f[i] = item[2 * i], flen[i] = len[2 * i];
        v[i] = item[2 * i + 1], vlen[i] = len[2 * i + 1];
    }

    wjob a, b;
    const char *ra, *rb;
    char wa[256], wb[256];
    int rc = wjob_parse(f, flen, v, vlen, n, &lim, &a, &ra, wa, sizeof wa);
    int rc2 = wjob_parse(f, flen, v, vlen, n, &lim, &b, &rb, wb, sizeof wb);
    check(rc == rc2 && !strcmp(a.id, b.id));
    check(!a.id[0] || wjob_valid_id(a.id, strlen(a.id)));
    if (rc == 0) {
        check(!ra && a.kind == b.kind && a.src == b.src && a.src_len == b.src_len);
        check_accepted(&a, &lim, data, size);
        check_fields(f, flen, n);
    } else {
        check(rc == -1 && ra && rb && !strcmp(ra, rb) && !strcmp(wa, wb));
        check(!strcmp(ra, "bad-job") || !strcmp(ra, "too-large") || !strcmp(ra, "refused"));
        check(!a.reply ||
              (wjob_valid_key(a.reply, a.reply_len) && inside(a.reply, a.reply_len, data, size)));
        check(wa[0] != '\0' && memchr(wa, '\0', sizeof wa));
    }
    return 0;
}
