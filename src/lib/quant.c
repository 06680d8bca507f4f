/*
 * quant.c - a block's linear layers from fp32 to int8/bf16, once at load.
 *
 * The arena weights.c fills is anonymous memory (malloc, mmapped at this size), so
 * madvise(MADV_DONTNEED) on the whole pages of a matrix we no longer read frees
 * them at once (the range reads as zeros afterwards; nothing reads it). The few
 * partial pages at a matrix's ends stay: at most 8 KB per matrix. The same call on
 * the read-only private mapping of the checkpoint drops our mapping of clean file
 * pages once a tensor is copied (the page cache keeps them; nothing is lost).
 * When weights.c fills the shared mapping of a new weights cache file instead,
 * MADV_REMOVE punches the matrix out of the file: it is never written to disk.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "quant.h"

void cm_release_bytes(const void *p, size_t n)
{
    const long pg = sysconf(_SC_PAGESIZE);
    if (!p || pg <= 0)
        return;
    const uintptr_t page = (uintptr_t)pg;
    const uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t hi = ((uintptr_t)p + n) & ~(page - 1);
    /* A shared file mapping (a weights cache file being written, wcache.c) frees its
     * blocks with MADV_REMOVE (a hole); anonymous and private mappings refuse it. */
    if (hi > lo && madvise((void *)lo, hi - lo, MADV_REMOVE) != 0)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advisory: failing only costs RSS */
}

void cm_release_floats(float *p, size_t n)
{
    cm_release_bytes(p, n * sizeof *p);
}

void cm_quant_shape(const cm_tower_config *tc, int i, int *n, int *k)
{
    const int d = tc->width, f = tc->mlp;
    const int ns[4] = {3 * d, d, f, d}, ks[4] = {d, d, d, f};
    *n = ns[i];
    *k = ks[i];
}

clipmod_error cm_quant_block(cm_block *b, const cm_tower_config *tc, clipmod_precision p,
                             cm_qmat q[4])
{
    const float *w[4] = {b->qkv_w, b->out_w, b->fc1_w, b->fc2_w};
    int n[4], k[4];
    for (int i = 0; i < 4; i++)
        cm_quant_shape(tc, i, &n[i], &k[i]);
    for (int i = 0; i < 4; i++) {
        if (q[i].borrowed) { /* its arrays are in place already (a weights cache file) */
            cm_qmat_pack(&q[i], w[i]);
            continue;
        }
        clipmod_error rc = cm_qmat_init(&q[i], p, w[i], n[i], k[i]);
        if (rc) {
            while (i-- > 0)
                cm_qmat_free(&q[i]);
            return rc;
        }
    }
    /* The arena is ours: the const in cm_block only guards it from the forward passes. */
    for (int i = 0; i < 4; i++)
        cm_release_floats((float *)w[i], (size_t)n[i] * k[i]);
    b->qkv_w = b->out_w = b->fc1_w = b->fc2_w = NULL;
    b->q = q;
    return CLIPMOD_OK;
}
