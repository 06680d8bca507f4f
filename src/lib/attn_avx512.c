/*
 * attn_avx512.c - one attention head over a block of query rows, with AVX-512.
 *
 * ops.c's attend_row does one query row at a time: every key column of K^T and
 * every value row is loaded once per query, for two FMAs per load, and its loops
 * of 50 keys leave scalar tails. Here CM_ATTN_ROWS (6) query rows share each
 * load: scores are a 6 x 64 register tile (24 accumulators) over K^T, padded with
 * zeros to whole vectors, and the output a 6 x 64 tile over V, as in a GEMM
 * micro-kernel. Softmax runs per row on the tile's scores, sixteen lanes at a
 * time. The scalar path stays the reference (tests/unit/test_ops.c checks both
 * against a naive double-precision attention).
 */
#include <math.h>

#include "ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "simd_avx512.h"

#define R CM_ATTN_ROWS

/* The R x nv accumulators of a tile, zeroed (inlined: they stay in registers). */
CM_TGT512 void zero_tile(__m512 acc[][4], int nv)
{
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm512_setzero_ps();
}

/* s[r][j0 .. j0 + 16 * nv) = scale * q_r . K^T for the block's rows (row r of q at qr[r]). */
CM_TGT512 void scores(const cm_attn_rows *a, const float *const *qr, int j0, int nv)
{
    __m512 acc[R][4];
    zero_tile(acc, nv);
    const float *kt = a->kt + j0;
    for (int c = 0; c < a->hd; c++) {
        __m512 k[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            k[v] = _mm512_loadu_ps(kt + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m512 q = _mm512_set1_ps(qr[r][c]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_fmadd_ps(q, k[v], acc[r][v]);
        }
        kt += a->tp;
    }
    const __m512 scale = _mm512_set1_ps(a->scale);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(a->s + (size_t)r * a->tp + j0 + 16 * v,
                             _mm512_mul_ps(acc[r][v], scale));
}

/* One instantiation per chunk width keeps the 24 accumulators in registers. */
__attribute__((target("avx512f"))) static void scores_all(const cm_attn_rows *a,
                                                          const float *const *qr)
{
    for (int j0 = 0; j0 < a->tp; j0 += 64) {
        const int left = (a->tp - j0) / 16;
        switch (left >= 4 ? 4 : left) {
        case 4:
            scores(a, qr, j0, 4);
            break;
        case 3:
            scores(a, qr, j0, 3);
            break;
        case 2:
            scores(a, qr, j0, 2);
            break;
        default:
            scores(a, qr, j0, 1);
            break;
        }
    }
}

/* Softmax of s[0..n) in place, then zeros up to `upto` (keys another row of the block uses). */
__attribute__((target("avx512f"))) static void softmax(float *s, int n, int upto)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, s + j));
    }
    const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 e = cm_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), top));
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
        _mm512_mask_storeu_ps(s + j, m, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(s + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), inv));
    }
    for (int j = n; j < upto; j++)
        s[j] = 0.0f;
}

/* out_r[h0 .. h0 + 16 * nv) = p_r . V over keys [0, n) for the block's rows. */
CM_TGT512 void weigh(const cm_attn_rows *a, float *const *outr, int rows, int n, int h0, int nv)
{
    __m512 acc[R][4];
    zero_tile(acc, nv);
    const float *vr = a->v + h0;
    for (int j = 0; j < n; j++) {
        __m512 w[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            w[v] = _mm512_loadu_ps(vr + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m512 p = _mm512_set1_ps(a->s[(size_t)r * a->tp + j]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_fmadd_ps(p, w[v], acc[r][v]);
        }
        vr += a->ld;
    }
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(outr[r] + h0 + 16 * v, acc[r][v]);
}

__attribute__((target("avx512f"))) static void weigh_all(const cm_attn_rows *a, float *const *outr,
                                                         int rows, int n)
{
    for (int h0 = 0; h0 < a->hd; h0 += 64) {
        const int left = (a->hd - h0) / 16;
        switch (left >= 4 ? 4 : left) {
        case 4:
            weigh(a, outr, rows, n, h0, 4);
            break;
        case 3:
            weigh(a, outr, rows, n, h0, 3);
            break;
        case 2:
            weigh(a, outr, rows, n, h0, 2);
            break;
        default:
            weigh(a, outr, rows, n, h0, 1);
            break;
        }
    }
}

void cm_attend_rows_avx512(const cm_attn_rows *a)
{
    for (int i0 = a->q0; i0 < a->q1; i0 += R) {
        const int rows = a->q1 - i0 < R ? a->q1 - i0 : R;
        const float *qr[R];
        float *outr[R];
        /* A short last block repeats its last row, so the tile is always whole. */
        for (int r = 0; r < R; r++) {
            const int i = i0 + (r < rows ? r : rows - 1);
            qr[r] = a->q + (size_t)i * a->ld;
            outr[r] = a->out + (size_t)(i - a->q0) * a->ldo;
        }
        scores_all(a, qr);
        const int nmax = a->causal ? i0 + rows : a->t;
        for (int r = 0; r < R; r++) {
            const int i = i0 + (r < rows ? r : rows - 1);
            softmax(a->s + (size_t)r * a->tp, a->causal ? i + 1 : a->t, nmax);
        }
        weigh_all(a, outr, rows, nmax);
    }
}
#else
void cm_attend_rows_avx512(const cm_attn_rows *a)
{
    (void)a;
}
#endif
