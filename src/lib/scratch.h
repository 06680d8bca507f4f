/*
 * scratch.h - per-thread working memory of the forward passes and GEMMs (scratch.c).
 */
#ifndef CM_SCRATCH_H
#define CM_SCRATCH_H

#include <stddef.h>

/* One block per slot and thread: code that nests (a pass, the encoder it calls, the
 * GEMMs inside) takes different slots. */
typedef enum cm_scratch_slot {
    CM_SCRATCH_VISION,
    CM_SCRATCH_ENCODER,
    CM_SCRATCH_GEMM_SHARED, /* x packed once for every task of a batch-1 GEMM (caller) */
    CM_SCRATCH_GEMM_PACK,   /* one task's packed x block (any pool thread) */
    CM_SCRATCH_SLOTS
} cm_scratch_slot;

/* Blocks up to this size are kept for the thread's next pass; larger ones are freed. */
#define CM_SCRATCH_KEEP ((size_t)32 << 20)

/*
 * At least `bytes` of 64-byte aligned memory for one pass, or NULL when out of
 * memory. Its contents are left from the previous pass. Give it back with
 * cm_scratch_give on the same thread; the caller must not free it.
 */
void *cm_scratch_take(cm_scratch_slot slot, size_t bytes);

/* Return a block from cm_scratch_take (kept or freed); NULL is accepted. */
void cm_scratch_give(cm_scratch_slot slot, void *p);

/* Lay out one block: returns `*size` (the next piece's offset) and adds `bytes`
 * rounded up to 64, so every piece stays 64-byte aligned. */
static inline size_t cm_scratch_carve(size_t *size, size_t bytes)
{
    const size_t at = *size;
    *size += (bytes + 63) & ~(size_t)63;
    return at;
}

#endif
