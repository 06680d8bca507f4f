/*
 * gemm_avx2.c - the AVX2+FMA micro-kernel: a 6x16 register tile.
 *
 * 12 ymm accumulators (6 rows x two vectors of 8 columns), two loads of the
 * panel slice and six broadcasts of packed x per k step, as in MLAS's and BLIS's
 * Haswell kernels. A 32-column panel is done as two 16-column halves over the
 * same K block (both still in L1). The last K block adds the bias and applies the
 * activation before the only store. Only functions carrying the target attribute
 * use AVX2, so this file links into any build.
 */
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MR  CM_GEMM_MR_AVX2
#define TGT __attribute__((target("avx2,fma"), always_inline)) static inline

/* ops.c's exp_fast, eight lanes at a time (same reduction and polynomial). */
TGT __m256 exp8(__m256 x)
{
    const __m256 round = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504f));
    t = _mm256_min_ps(t, _mm256_set1_ps(127.0f));
    t = _mm256_max_ps(t, _mm256_set1_ps(-126.0f));
    const __m256 n = _mm256_sub_ps(_mm256_add_ps(t, round), round);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* ops.c's erf_fast (Abramowitz & Stegun 7.1.26), eight lanes at a time. */
TGT __m256 erf8(__m256 x)
{
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    const __m256 ax = _mm256_andnot_ps(signbit, x);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(ax, ax)));
    const __m256 y = _mm256_fnmadd_ps(_mm256_mul_ps(p, t), e, one);
    return _mm256_or_ps(y, _mm256_and_ps(signbit, x)); /* x's sign onto y >= 0 */
}

TGT __m256 act8(__m256 v, cm_gemm_act act)
{
    if (act == CM_GEMM_ACT_QUICK_GELU) {
        const __m256 e = exp8(_mm256_mul_ps(v, _mm256_set1_ps(-1.702f)));
        return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    }
    const __m256 h = _mm256_mul_ps(v, _mm256_set1_ps(0.5f));
    const __m256 e = erf8(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678f)));
    return _mm256_fmadd_ps(h, e, h);
}

/* Store one 8-column vector (only the first nc columns are real). */
TGT void store8(const cm_gemm_tile *t, float *y, __m256 v, const float *bias, int nc)
{
    float tmp[8] = {0}, bt[8] = {0};
    const int full = nc >= 8;
    const int cnt = full ? 8 : nc;
    if (t->load_y) {
        for (int c = 0; !full && c < cnt; c++)
            tmp[c] = y[c];
        v = _mm256_add_ps(v, _mm256_loadu_ps(full ? y : tmp));
    }
    if (t->last) {
        if (bias) {
            for (int c = 0; !full && c < cnt; c++)
                bt[c] = bias[c];
            v = _mm256_add_ps(v, _mm256_loadu_ps(full ? bias : bt));
        }
        if (t->act != CM_GEMM_ACT_NONE)
            v = act8(v, t->act);
    }
    if (full) {
        _mm256_storeu_ps(y, v);
        return;
    }
    _mm256_storeu_ps(tmp, v);
    for (int c = 0; c < cnt; c++)
        y[c] = tmp[c];
}

/* Columns [half * 16, half * 16 + 16) of the tile. */
TGT void tile(const cm_gemm_tile *t, int rows, int half)
{
    const int nc = t->nc - half * 16;
    if (nc <= 0)
        return;
    const float *a = t->a, *b = t->b + half * 16;
    __m256 acc[MR][2];
    /* Fully unrolled, or GCC keeps the accumulators on the stack. */
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int kk = 0; kk < t->kc; kk++) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * CM_GEMM_KC);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
        a++;
        b += CM_GEMM_NR;
    }
    const float *bias = t->bias ? t->bias + half * 16 : NULL;
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++) {
        float *y = t->y + (size_t)r * t->ldy + half * 16;
        store8(t, y, acc[r][0], bias, nc);
        if (nc > 8)
            store8(t, y + 8, acc[r][1], bias ? bias + 8 : NULL, nc - 8);
    }
}

#define ROWS(n)                                                                                    \
    __attribute__((target("avx2,fma"), noinline)) static void tile##n(const cm_gemm_tile *t)       \
    {                                                                                              \
        tile(t, n, 0);                                                                             \
        tile(t, n, 1);                                                                             \
    }
ROWS(1)
ROWS(2)
ROWS(3)
ROWS(4)
ROWS(5)
ROWS(6)

typedef void (*tile_fn)(const cm_gemm_tile *);
static const tile_fn tiles[MR + 1] = {NULL, tile1, tile2, tile3, tile4, tile5, tile6};

void cm_gemm_tile_avx2(const cm_gemm_tile *t)
{
    tiles[t->rows](t);
}
#else
void cm_gemm_tile_avx2(const cm_gemm_tile *t)
{
    cm_gemm_tile_scalar(t);
}
#endif
