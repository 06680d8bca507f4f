/*
 * ops.h - the numeric kernels of the transformer (internal).
 *
 * One small function per operation, ggml-style. Rows are contiguous float32; shapes
 * were checked when the weights were loaded, so kernels do not re-check them.
 * Linear layers go through cm_gemm (packed weights) or cblas_sgemm; attention is
 * our own loops.
 */
#ifndef CM_OPS_H
#define CM_OPS_H

#include <stddef.h>

#include "config.h"
#include "gemm.h" /* cm_gemm_act */

/* Y[M, out] = X[M, in] . W[out, in]^T + b (b may be NULL). */
void cm_linear(const float *x, int m, int in, const float *w, const float *b, int out, float *y);

/* Y[M, out] += X[M, in] . W[out, in]^T + b: a linear layer feeding a residual. */
void cm_linear_acc(const float *x, int m, int in, const float *w, const float *b, int out,
                   float *y);

/*
 * As cm_linear / cm_linear_acc (accumulate = 1), but with `w` packed by cm_gemm
 * when `packed` (our kernels, threads from the pool), else plain through OpenBLAS.
 */
void cm_linear_w(const float *x, int m, int in, const float *w, int packed, const float *b, int out,
                 int accumulate, float *y);

/*
 * Y[M, out] = X[M, in] . W[out, in]^T where every row of Y comes out the same
 * whatever M is: through cm_gemm when `packed`, else one OpenBLAS product per
 * row. For the towers' projections and the image x prompt scores, so that an
 * image's embedding and scores never depend on which other images shared its
 * batch (OpenBLAS picks its kernels by M: the same row's dot products differ in
 * the last bits at M = 4 and M = 64, measured on 0.3.21).
 */
void cm_linear_rows(const float *x, int m, int in, const float *w, int packed, int out, float *y);

/* act(cm_linear_w(...)) with accumulate = 0: the MLP's first layer. */
void cm_linear_act_w(const float *x, int m, int in, const float *w, int packed, const float *b,
                     int out, cm_act act, float *y);

/* Row-wise LayerNorm with biased variance: y = (x - mean) / sqrt(var + eps) * g + b. */
void cm_layernorm(const float *x, int m, int d, const float *g, const float *b, float eps,
                  float *y);

/* In-place activation over n values. */
void cm_activate(float *x, size_t n, cm_act act);

/* The GEMM epilogue that applies `act` (for kernels that fuse it into their store). */
cm_gemm_act cm_gemm_act_of(cm_act act);

/* y += x over n values (the residual connection). */
void cm_add(float *y, const float *x, size_t n);

/* Scratch floats one (sequence, head) of attention needs: (d / heads + 1) * max_len. */
/* Query rows per block of the AVX-512 attention kernel (attn_avx512.c). */
#define CM_ATTN_ROWS 6

/* Query rows [q0, q1) of one head, for cm_attend_rows_avx512. */
typedef struct cm_attn_rows {
    const float *q;  /* the head's query columns of row 0; row i at q + i * ld */
    const float *kt; /* K^T [hd][tp], zero in columns t..tp-1 */
    const float *v;  /* the head's value columns of row 0; row j at v + j * ld */
    float *s;        /* scratch of CM_ATTN_ROWS * tp floats */
    float *out;      /* row q0's output; row i at out + (i - q0) * ldo */
    int ld, ldo, t, tp, hd, causal, q0, q1;
    float scale;
} cm_attn_rows;

/* softmax(q . K^T * scale) . V for those rows; needs AVX-512F (the caller dispatches). */
void cm_attend_rows_avx512(const cm_attn_rows *a);

size_t cm_attention_scratch_floats(int max_len, int d, int heads);

/*
 * Multi-head self-attention for one sequence of `t` tokens. `qkv` is [t, 3D] (q, k,
 * v side by side, row stride 3D); the concatenated head outputs go to `out` [t, D].
 * `causal` masks every key after the query. `scratch`: cm_attention_scratch_floats(t,
 * d, heads) floats.
 */
void cm_attention(const float *qkv, int t, int d, int heads, int causal, float *scratch,
                  float *out);

/*
 * cm_attention over `count` packed sequences (rows start[s], length len[s] of qkv),
 * one pool task per (sequence, head). With qrow NULL every row is a query and the
 * output goes to the same rows of out; else only row qrow[s] of sequence s (relative
 * to its start) is, and its output goes to row s of out (the last block needs only
 * the pooled rows). `scratch`: count * heads * cm_attention_scratch_floats(max_len,
 * d, heads) floats.
 */
void cm_attention_seqs(const float *qkv, const int *start, const int *len, const int *qrow,
                       int count, int max_len, int d, int heads, int causal, float *scratch,
                       float *out);

/* Divide each of the m rows of x[m, d] by its L2 norm. */
void cm_l2_normalize(float *x, int m, int d);

#endif
