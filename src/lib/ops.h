/*
 * ops.h - the numeric kernels of the transformer (internal).
 *
 * One small function per operation, ggml-style. Rows are contiguous float32; shapes
 * were checked when the weights were loaded, so kernels do not re-check them.
 * Every matrix product goes through cblas_sgemm.
 */
#ifndef CM_OPS_H
#define CM_OPS_H

#include <stddef.h>

#include "config.h"

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

/* act(cm_linear_w(...)) with accumulate = 0: the MLP's first layer. */
void cm_linear_act_w(const float *x, int m, int in, const float *w, int packed, const float *b,
                     int out, cm_act act, float *y);

/* Row-wise LayerNorm with biased variance: y = (x - mean) / sqrt(var + eps) * g + b. */
void cm_layernorm(const float *x, int m, int d, const float *g, const float *b, float eps,
                  float *y);

/* In-place activation over n values. */
void cm_activate(float *x, size_t n, cm_act act);

/* y += x over n values (the residual connection). */
void cm_add(float *y, const float *x, size_t n);

/*
 * Multi-head self-attention for one sequence of `t` tokens. `qkv` is [t, 3D] (q, k,
 * v side by side, row stride 3D); the concatenated head outputs go to `out` [t, D].
 * `causal` masks every key after the query. `scores` is scratch of t*t floats.
 */
void cm_attention(const float *qkv, int t, int d, int heads, int causal, float *scores, float *out);

/*
 * cm_attention over `count` packed sequences (rows start[s], length len[s] of qkv
 * and out), heads split over the thread pool. `scores` is scratch of
 * heads * max_len * max_len floats (one slice per head, so heads run in parallel).
 */
void cm_attention_seqs(const float *qkv, const int *start, const int *len, int count, int max_len,
                       int d, int heads, int causal, float *scores, float *out);

/* Divide each of the m rows of x[m, d] by its L2 norm. */
void cm_l2_normalize(float *x, int m, int d);

#endif
