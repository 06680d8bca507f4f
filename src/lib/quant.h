/*
 * quant.h - converting a transformer block's linear layers at load (internal).
 *
 * Owns the step between weights.c reading a block in fp32 and the forward pass
 * using it at int8/bf16: the four matrices become cm_qmat and the fp32 copies'
 * pages go back to the kernel, so a quantised model does not keep both resident.
 */
#ifndef CM_QUANT_H
#define CM_QUANT_H

#include "config.h"
#include "qgemm.h"
#include "weights.h"

/* The shape [n, k] of a block's matrix i: 0 qkv, 1 out, 2 fc1, 3 fc2 (tower tc). */
void cm_quant_shape(const cm_tower_config *tc, int i, int *n, int *k);

/*
 * Convert b's qkv, out, fc1 and fc2 matrices (tower widths from tc) into q[0..3]
 * at precision p, point b->q at q, release the fp32 matrices' pages and set their
 * pointers to NULL. A q[i] that already borrows its arrays (cm_qmat_borrow, zeroed)
 * is filled in place instead of allocating. CLIPMOD_E_NOMEM leaves b as it was (q holds nothing to
 * free).
 */
clipmod_error cm_quant_block(cm_block *b, const cm_tower_config *tc, clipmod_precision p,
                             cm_qmat q[4]);

/*
 * Give the whole pages inside [p, p + n) back to the kernel: anonymous memory reads
 * as zeros afterwards, a clean private file mapping re-reads the file if touched.
 */
void cm_release_bytes(const void *p, size_t n);
void cm_release_floats(float *p, size_t n);

#endif
