/*
 * gemm_avx512.c - the AVX-512F micro-kernel: a 12x32 register tile.
 *
 * 24 zmm accumulators (12 rows x two vectors of 16 columns), two vector loads of
 * the packed panel per k step, and one broadcast of x per row folded into the FMA:
 * 24 FMAs per 2 loads, as in MLAS's SgemmKernelAvx512F. Rows left over (m % 12)
 * use the same code instantiated for fewer rows. Only functions carrying the
 * target attribute use AVX-512, so this file is safe to link into any build.
 */
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MR  12
#define TGT __attribute__((target("avx512f"), always_inline)) static inline

TGT void tile(const cm_gemm_args *g, int i0, int rows, int j)
{
    const int k = g->k, c0 = j * CM_GEMM_NR;
    const float *b = g->p + (size_t)c0 * k;
    const float *a = g->x + (size_t)i0 * k;
    __m512 acc[MR][2];
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        const __m512 b0 = _mm512_loadu_ps(b + (size_t)kk * CM_GEMM_NR);
        const __m512 b1 = _mm512_loadu_ps(b + (size_t)kk * CM_GEMM_NR + 16);
        for (int r = 0; r < rows; r++) {
            const __m512 av = _mm512_set1_ps(a[(size_t)r * k + kk]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    const int nc = g->n - c0 < CM_GEMM_NR ? g->n - c0 : CM_GEMM_NR;
    const __mmask16 m0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? 0xffff : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (g->bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, g->bias + c0);
        bias1 = _mm512_maskz_loadu_ps(m1, g->bias + c0 + 16);
    }
    for (int r = 0; r < rows; r++) {
        float *y = g->y + (size_t)(i0 + r) * g->n + c0;
        __m512 v0 = _mm512_add_ps(acc[r][0], bias0), v1 = _mm512_add_ps(acc[r][1], bias1);
        if (g->accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, y));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, y + 16));
        }
        _mm512_mask_storeu_ps(y, m0, v0);
        _mm512_mask_storeu_ps(y + 16, m1, v1);
    }
}

/* One instantiation per row count keeps the accumulators in registers. */
#define ROWS(n)                                                                                    \
    __attribute__((target("avx512f"), noinline)) static void tile##n(const cm_gemm_args *g,        \
                                                                     int i0, int j)                \
    {                                                                                              \
        tile(g, i0, n, j);                                                                         \
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

typedef void (*tile_fn)(const cm_gemm_args *, int, int);
static const tile_fn tiles[MR + 1] = {NULL,  tile1, tile2, tile3,  tile4,  tile5, tile6,
                                      tile7, tile8, tile9, tile10, tile11, tile12};

/* Rows per block: the block of x (rows * k floats) and one panel must share L2,
 * or x is re-read from memory for every panel (batch 8 at k = 3072 was 2x slower). */
static int row_block(int k)
{
    const int rows = (192 * 1024 / 4) / k / MR * MR;
    return rows > MR ? rows : MR;
}

void cm_gemm_run_avx512(const cm_gemm_args *g, int p0, int p1)
{
    const int rb = row_block(g->k);
    for (int ib = 0; ib < g->m; ib += rb) {
        const int ie = ib + rb < g->m ? ib + rb : g->m;
        for (int j = p0; j < p1; j++)
            for (int i = ib; i < ie; i += MR)
                tiles[ie - i < MR ? ie - i : MR](g, i, j);
    }
}
#else
void cm_gemm_run_avx512(const cm_gemm_args *g, int p0, int p1)
{
    cm_gemm_run_scalar(g, p0, p1);
}
#endif
