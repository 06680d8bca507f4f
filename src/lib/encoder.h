/*
 * encoder.h - the pre-norm transformer stack shared by both towers (internal).
 *
 * Several sequences are packed one after another in one [M, D] matrix, so every
 * linear layer runs as a single GEMM with M = total tokens; only attention works
 * sequence by sequence.
 */
#ifndef CM_ENCODER_H
#define CM_ENCODER_H

#include "clipmod/clipmod.h"
#include "config.h"
#include "weights.h"

typedef struct cm_packed {
    int count;        /* number of sequences */
    const int *start; /* first row of each sequence */
    const int *len;   /* tokens of each sequence */
    int rows;         /* total rows M */
    int max_len;
    /* Row of each sequence (from its start) the caller reads after the stack, or
     * NULL for all: then only those rows are complete after the last block. */
    const int *pool_row;
} cm_packed;

/*
 * Run `tc->layers` blocks over h[M, D] in place. `causal` applies the text tower's
 * mask. Returns CLIPMOD_E_NOMEM if scratch memory cannot be had.
 */
clipmod_error cm_encoder_forward(const cm_block *blocks, const cm_tower_config *tc,
                                 const cm_packed *seq, int causal, float *h);

#endif
