/*
 * gemm_avx512.c - the AVX-512F micro-kernel: a 12x32 register tile.
 *
 * 24 zmm accumulators (12 rows x two vectors of 16 columns), two vector loads of
 * the panel slice per k step, and one broadcast of packed x per row folded into
 * the FMA: 24 FMAs per 2 loads, as in MLAS's SgemmKernelAvx512F. gemm.c hands it
 * one K block at a time; the last block adds the bias and applies the activation
 * in registers before the only store (the fused epilogue). Rows left over use the
 * same code instantiated for fewer rows. Only functions carrying the target
 * attribute use AVX-512, so this file is safe to link into any build.
 */
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "simd_avx512.h"

#define MR  CM_GEMM_MR_AVX512
#define TGT __attribute__((target("avx512f"), always_inline)) static inline

/* y = (load_y ? y : 0) + acc, then bias and activation on the last K block. */
TGT void store2(const cm_gemm_tile *t, float *y, __m512 v0, __m512 v1, __mmask16 m0, __mmask16 m1,
                __m512 bias0, __m512 bias1)
{
    if (t->load_y) {
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, y));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, y + 16));
    }
    if (t->last) {
        v0 = _mm512_add_ps(v0, bias0);
        v1 = _mm512_add_ps(v1, bias1);
        if (t->act != CM_GEMM_ACT_NONE) {
            v0 = cm_act16(v0, t->act);
            v1 = cm_act16(v1, t->act);
        }
    }
    _mm512_mask_storeu_ps(y, m0, v0);
    _mm512_mask_storeu_ps(y + 16, m1, v1);
}

/* acc += a . b over one K block; with `pf`, the next panel's slice goes to L2 on the way. */
TGT void kloop(const float *a, const float *b, int kc, const float *pf, __m512 acc[][2], int rows)
{
    for (int kk = 0; kk < kc; kk++) {
        if (pf) {
            /* One 128-byte row of the next slice per k step: all of it by the end. */
            _mm_prefetch((const char *)pf, _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + 16), _MM_HINT_T1);
            pf += CM_GEMM_NR;
        }
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            const __m512 av = _mm512_set1_ps(a[r * CM_GEMM_KC]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
        a++;
        b += CM_GEMM_NR;
    }
}

TGT void tile(const cm_gemm_tile *t, int rows)
{
    __m512 acc[MR][2];
    /* Fully unrolled, or GCC keeps the accumulators on the stack. */
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    /* Two copies of the loop, so the one without prefetches has no test in it. */
    if (t->pf)
        kloop(t->a, t->b, t->kc, t->pf, acc, rows);
    else
        kloop(t->a, t->b, t->kc, NULL, acc, rows);
    const int nc = t->nc;
    const __mmask16 m0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? 0xffff : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (t->last && t->bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, t->bias);
        bias1 = _mm512_maskz_loadu_ps(m1, t->bias + 16);
    }
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
        store2(t, t->y + (size_t)r * t->ldy, acc[r][0], acc[r][1], m0, m1, bias0, bias1);
}

/* One instantiation per row count keeps the accumulators in registers. */
#define ROWS(n)                                                                                    \
    __attribute__((target("avx512f"), noinline)) static void tile##n(const cm_gemm_tile *t)        \
    {                                                                                              \
        tile(t, n);                                                                                \
    }
ROWS(1)
ROWS(2)
ROWS(3)
ROWS(4)
ROWS(5)
ROWS(6)
ROWS(7)
ROWS(8)
ROWS(9)
ROWS(10)
ROWS(11)
ROWS(12)

typedef void (*tile_fn)(const cm_gemm_tile *);
static const tile_fn tiles[MR + 1] = {NULL,  tile1, tile2, tile3,  tile4,  tile5, tile6,
                                      tile7, tile8, tile9, tile10, tile11, tile12};

void cm_gemm_tile_avx512(const cm_gemm_tile *t)
{
    tiles[t->rows](t);
}
#else
void cm_gemm_tile_avx512(const cm_gemm_tile *t)
{
    cm_gemm_tile_scalar(t);
}
#endif
