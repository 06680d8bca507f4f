/*
 * gemm_avx2.c - the AVX2+FMA micro-kernel: a 6x16 register tile.
 *
 * 12 ymm accumulators (6 rows x two vectors of 8 columns), two loads of the
 * packed panel and six broadcasts per k step, as in MLAS's and BLIS's Haswell
 * kernels. A 32-column panel is done as two 16-column halves. Only functions
 * carrying the target attribute use AVX2, so this file links into any build.
 */
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MR  6
#define TGT __attribute__((target("avx2,fma"), always_inline)) static inline

/* Store one 8-column vector to y (only the first nc columns are real). */
TGT void put8(float *y, __m256 v, const float *bias, int accumulate, int nc)
{
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    for (int c = 0; c < nc && c < 8; c++) {
        const float s = tmp[c] + (bias ? bias[c] : 0.0f);
        y[c] = accumulate ? y[c] + s : s;
    }
}

TGT void store8(float *y, __m256 v, const float *bias, int accumulate, int nc)
{
    if (nc < 8) {
        put8(y, v, bias, accumulate, nc);
        return;
    }
    if (bias)
        v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
    if (accumulate)
        v = _mm256_add_ps(v, _mm256_loadu_ps(y));
    _mm256_storeu_ps(y, v);
}

TGT void tile(const cm_gemm_args *g, int i0, int rows, int j, int half)
{
    const int k = g->k, c0 = j * CM_GEMM_NR + half * 16;
    const int nc = g->n - c0;
    if (nc <= 0)
        return;
    const float *b = g->p + (size_t)j * CM_GEMM_NR * k + half * 16;
    const float *a = g->x + (size_t)i0 * k;
    __m256 acc[MR][2];
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        const __m256 b0 = _mm256_loadu_ps(b + (size_t)kk * CM_GEMM_NR);
        const __m256 b1 = _mm256_loadu_ps(b + (size_t)kk * CM_GEMM_NR + 8);
        for (int r = 0; r < rows; r++) {
            const __m256 av = _mm256_broadcast_ss(a + (size_t)r * k + kk);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    const float *bias0 = g->bias ? g->bias + c0 : NULL;
    const float *bias1 = g->bias ? g->bias + c0 + 8 : NULL;
    for (int r = 0; r < rows; r++) {
        float *y = g->y + (size_t)(i0 + r) * g->n + c0;
        store8(y, acc[r][0], bias0, g->accumulate, nc);
        if (nc > 8)
            store8(y + 8, acc[r][1], bias1, g->accumulate, nc - 8);
    }
}

#define ROWS(n)                                                                                    \
    __attribute__((target("avx2,fma"), noinline)) static void tile##n(const cm_gemm_args *g,       \
                                                                      int i0, int j, int half)     \
    {                                                                                              \
        tile(g, i0, n, j, half);                                                                   \
    }
ROWS(1)
ROWS(2)
ROWS(3)
ROWS(4)
ROWS(5)
ROWS(6)

typedef void (*tile_fn)(const cm_gemm_args *, int, int, int);
static const tile_fn tiles[MR + 1] = {NULL, tile1, tile2, tile3, tile4, tile5, tile6};

/* Rows per block: the block of x (rows * k floats) and one panel must share L2,
 * or x is re-read from memory for every panel (batch 8 at k = 3072 was 2x slower). */
static int row_block(int k)
{
    const int rows = (192 * 1024 / 4) / k / MR * MR;
    return rows > MR ? rows : MR;
}

void cm_gemm_run_avx2(const cm_gemm_args *g, int p0, int p1)
{
    const int rb = row_block(g->k);
    for (int ib = 0; ib < g->m; ib += rb) {
        const int ie = ib + rb < g->m ? ib + rb : g->m;
        for (int j = p0; j < p1; j++)
            for (int half = 0; half < 2; half++)
                for (int i = ib; i < ie; i += MR)
                    tiles[ie - i < MR ? ie - i : MR](g, i, j, half);
    }
}
#else
void cm_gemm_run_avx2(const cm_gemm_args *g, int p0, int p1)
{
    cm_gemm_run_scalar(g, p0, p1);
}
#endif
