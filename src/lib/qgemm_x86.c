/*
 * qgemm_x86.c - the x86 vector kernels of qgemm: AVX-512 VNNI, AVX-VNNI, AVX-512 BF16
 * (vdpbf16ps, and bf16 weights widened for fp32 FMAs).
 *
 * Each kernel walks the panels of qgemm.h with a register tile: zmm kernels keep
 * 12 rows x 32 columns (24 accumulators; per k-group two panel loads and one
 * broadcast of 4 u8 or 2 bf16 per row, as in MLAS's QgemmU8S8KernelAvx512Vnni), the
 * ymm AVX-VNNI kernel 4 rows x 16 columns (8 accumulators: with 6 rows GCC spilled). Only functions
 * carrying target attributes use these instructions, so the file links into any
 * x86-64 build; elsewhere the entry points run the portable kernels.
 */
#include <string.h>

#include "qgemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "simd_avx512.h"

#define MR    12
#define MR256 4
#define T512  "avx512f,avx512bw,avx512vnni"
#define TBF16 "avx512f,avx512bw,avx512bf16"
#define T256  "avx2,fma,avxvnni"

/* Rows per block: the block of activations and one panel should share L2, or the
 * activations are re-read from memory for every panel. Half of a 1 MB L2: at
 * 160 KB, batch 1's fc2 (50 rows of 3072 bf16) was cut into 24 + 24 + 2 rows and
 * every weight panel streamed from memory three times. */
static int row_block(int kp_bytes, int mr)
{
    const int rows = (512 * 1024) / kp_bytes / mr * mr;
    return rows > mr ? rows : mr;
}

static int32_t load32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/*
 * With `*pf` set, prefetch the next 128 bytes of the next panel into L2 and move on:
 * one k step of a tile consumes 128 bytes of its own panel (32 columns x 4 int8 or
 * 2 bf16), so the first tile of a panel has fetched all of the next one by its end.
 * At batch 1 the weights stream from memory once per pass (the fp32 GEMM gained
 * 25% from the same prefetch).
 */
__attribute__((always_inline)) static inline void prefetch_step(const char **pf)
{
    if (*pf) {
        _mm_prefetch(*pf, _MM_HINT_T1);
        _mm_prefetch(*pf + 64, _MM_HINT_T1);
        *pf += 128;
    }
}

/*
 * acc += dot products, as inline asm with the accumulator tied: through the
 * intrinsics GCC 12 copied every accumulator each step and spilled the tile to the
 * stack (half the speed).
 */
#define DPBUSD512(acc, a, b) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))
#define DPBF16(acc, a, b)    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))
#define DPBUSD256(acc, a, b) __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(b))

static __mmask16 cols_mask(int nc, int half)
{
    const int c = nc - 16 * half;
    return c >= 16 ? 0xffff : c <= 0 ? 0 : (__mmask16)((1u << c) - 1);
}

/* y row = act(v (+ y)) over the masked columns; v already holds the bias. */
/* avx512f only, a subset of both kernels' targets, so it inlines into each. */
__attribute__((target("avx512f"), always_inline)) static inline void
store16(const cm_qargs *a, float *y, __mmask16 mk, __m512 v)
{
    if (a->accumulate)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, y));
    if (a->act != CM_GEMM_ACT_NONE)
        v = cm_act16(v, a->act);
    _mm512_mask_storeu_ps(y, mk, v);
}

/* The fp32 accumulators of a bf16 tile (rows x 32 columns from c0) plus bias, stored. */
__attribute__((target("avx512f"), always_inline)) static inline void
store_f32_tile(const cm_qargs *a, int i0, int rows, int c0, __m512 acc[][2])
{
    const cm_qmat *q = a->q;
    const int nc = q->n - c0 < CM_QGEMM_NR ? q->n - c0 : CM_QGEMM_NR;
    const __mmask16 mk[2] = {cols_mask(nc, 0), cols_mask(nc, 1)};
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512 bias =
            a->bias ? _mm512_maskz_loadu_ps(mk[h], a->bias + c0 + 16 * h) : _mm512_setzero_ps();
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            float *y = a->y + (size_t)(i0 + r) * q->n + c0 + 16 * h;
            store16(a, y, mk[h], _mm512_add_ps(acc[r][h], bias));
        }
    }
}

__attribute__((target(T512), always_inline)) static inline void
vnni_tile(const cm_qargs *a, int i0, int rows, int j, const char *pf)
{
    const cm_qmat *q = a->q;
    const int kp = q->kp, c0 = j * CM_QGEMM_NR;
    const int8_t *b = (const int8_t *)q->panels + (size_t)c0 * kp;
    const uint8_t *x = a->xq + (size_t)i0 * kp;
    __m512i acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    for (int g = 0; g < kp; g += 4) {
        prefetch_step(&pf);
        const __m512i b0 = _mm512_loadu_si512(b + (size_t)g * CM_QGEMM_NR);
        const __m512i b1 = _mm512_loadu_si512(b + (size_t)g * CM_QGEMM_NR + 64);
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            const __m512i av = _mm512_set1_epi32(load32(x + (size_t)r * kp + g));
            DPBUSD512(acc[r][0], av, b0);
            DPBUSD512(acc[r][1], av, b1);
        }
    }
    const int nc = q->n - c0 < CM_QGEMM_NR ? q->n - c0 : CM_QGEMM_NR;
    const __mmask16 mk[2] = {cols_mask(nc, 0), cols_mask(nc, 1)};
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i cs = _mm512_maskz_loadu_epi32(mk[h], q->colsum + c0 + 16 * h);
        const __m512 ws = _mm512_maskz_loadu_ps(mk[h], q->scale + c0 + 16 * h);
        const __m512 bias =
            a->bias ? _mm512_maskz_loadu_ps(mk[h], a->bias + c0 + 16 * h) : _mm512_setzero_ps();
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            const int i = i0 + r;
            const __m512i corr = _mm512_mullo_epi32(_mm512_set1_epi32(a->zp[i]), cs);
            const __m512 s = _mm512_mul_ps(_mm512_set1_ps(a->sx[i]), ws);
            const __m512 v =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][h], corr)), s, bias);
            store16(a, a->y + (size_t)i * q->n + c0 + 16 * h, mk[h], v);
        }
    }
}

__attribute__((target(TBF16), always_inline)) static inline void
bf16_tile(const cm_qargs *a, int i0, int rows, int j, const char *pf)
{
    const cm_qmat *q = a->q;
    const int kp = q->kp, c0 = j * CM_QGEMM_NR;
    const uint16_t *b = (const uint16_t *)q->panels + (size_t)c0 * kp;
    const uint16_t *x = (const uint16_t *)(const void *)a->xq + (size_t)i0 * kp;
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int g = 0; g < kp; g += 2) {
        prefetch_step(&pf);
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)g * CM_QGEMM_NR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)g * CM_QGEMM_NR + 32);
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32(load32(x + (size_t)r * kp + g));
            DPBF16(acc[r][0], av, b0);
            DPBF16(acc[r][1], av, b1);
        }
    }
    store_f32_tile(a, i0, rows, c0, acc);
}

/*
 * bf16 weights widened in registers, fp32 FMAs (CM_QISA_AVX512BF16W). A 32-bit lane
 * of a panel load holds one column's weights at k (low half) and k + 1 (high half):
 * shifting left by 16 gives the first as a float, masking the low half off the
 * second. The activations are floats already rounded to bf16, so every product is
 * what vdpbf16ps multiplies; the sums are fp32 FMAs in k order.
 */
__attribute__((target(TBF16), always_inline)) static inline void
bf16w_tile(const cm_qargs *a, int i0, int rows, int j, const char *pf)
{
    const cm_qmat *q = a->q;
    const int kp = q->kp, c0 = j * CM_QGEMM_NR;
    const uint16_t *b = (const uint16_t *)q->panels + (size_t)c0 * kp;
    const float *x = (const float *)(const void *)a->xq + (size_t)i0 * kp;
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int g = 0; g < kp; g += 2) {
        prefetch_step(&pf);
        const __m512i p0 = _mm512_loadu_si512(b + (size_t)g * CM_QGEMM_NR);
        const __m512i p1 = _mm512_loadu_si512(b + (size_t)g * CM_QGEMM_NR + 32);
        const __m512 w00 = _mm512_castsi512_ps(_mm512_slli_epi32(p0, 16));
        const __m512 w01 = _mm512_castsi512_ps(_mm512_and_si512(p0, high));
        const __m512 w10 = _mm512_castsi512_ps(_mm512_slli_epi32(p1, 16));
        const __m512 w11 = _mm512_castsi512_ps(_mm512_and_si512(p1, high));
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            const __m512 a0 = _mm512_set1_ps(x[(size_t)r * kp + g]);
            const __m512 a1 = _mm512_set1_ps(x[(size_t)r * kp + g + 1]);
            acc[r][0] = _mm512_fmadd_ps(a0, w00, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a0, w10, acc[r][1]);
            acc[r][0] = _mm512_fmadd_ps(a1, w01, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a1, w11, acc[r][1]);
        }
    }
    store_f32_tile(a, i0, rows, c0, acc);
}

/* One instantiation per row count keeps the accumulators in registers; the first
 * tile of a panel also fetches the next panel into L2 (see prefetch_step). */
#define ROWS(kind, tgt, n)                                                                         \
    __attribute__((target(tgt), noinline)) static void kind##n(const cm_qargs *a, int i0, int j,   \
                                                               const char *pf)                     \
    {                                                                                              \
        if (pf)                                                                                    \
            kind##_tile(a, i0, n, j, pf);                                                          \
        else                                                                                       \
            kind##_tile(a, i0, n, j, NULL);                                                        \
    }
#define ALL_ROWS(kind, tgt)                                                                        \
    ROWS(kind, tgt, 1)                                                                             \
    ROWS(kind, tgt, 2)                                                                             \
    ROWS(kind, tgt, 3)                                                                             \
    ROWS(kind, tgt, 4)                                                                             \
    ROWS(kind, tgt, 5)                                                                             \
    ROWS(kind, tgt, 6)                                                                             \
    ROWS(kind, tgt, 7)                                                                             \
    ROWS(kind, tgt, 8)                                                                             \
    ROWS(kind, tgt, 9)                                                                             \
    ROWS(kind, tgt, 10)                                                                            \
    ROWS(kind, tgt, 11)                                                                            \
    ROWS(kind, tgt, 12)
ALL_ROWS(vnni, T512)
ALL_ROWS(bf16, TBF16)
ALL_ROWS(bf16w, TBF16)

typedef void (*tile_fn)(const cm_qargs *, int, int, const char *);
static const tile_fn vnni_tiles[MR + 1] = {NULL,  vnni1, vnni2, vnni3,  vnni4,  vnni5, vnni6,
                                           vnni7, vnni8, vnni9, vnni10, vnni11, vnni12};
static const tile_fn bf16_tiles[MR + 1] = {NULL,  bf161, bf162, bf163,  bf164,  bf165, bf166,
                                           bf167, bf168, bf169, bf1610, bf1611, bf1612};
static const tile_fn bf16w_tiles[MR + 1] = {NULL,    bf16w1,  bf16w2, bf16w3, bf16w4,
                                            bf16w5,  bf16w6,  bf16w7, bf16w8, bf16w9,
                                            bf16w10, bf16w11, bf16w12};

static void run_tiles(const cm_qargs *a, int p0, int p1, const tile_fn *tiles, int rb, int esize)
{
    for (int ib = 0; ib < a->m; ib += rb) {
        const int ie = ib + rb < a->m ? ib + rb : a->m;
        for (int j = p0; j < p1; j++) {
            /* The next panel: kp * NR elements on, 1 byte each (int8) or 2 (bf16). */
            const char *pf = j + 1 < p1 ? (const char *)a->q->panels +
                                              (size_t)(j + 1) * CM_QGEMM_NR * a->q->kp * esize
                                        : NULL;
            /* Near-equal tiles (50 rows = 5 x 10, not 4 x 12 + 2): a thin last tile
               reads the whole panel for a few rows. */
            const int rows = ie - ib, nt = (rows + MR - 1) / MR;
            for (int t = 0; t < nt; t++) {
                const int i0 = ib + rows * t / nt, i1 = ib + rows * (t + 1) / nt;
                tiles[i1 - i0](a, i0, j, pf);
                pf = NULL;
            }
        }
    }
}

void cm_qrun_avx512vnni(const cm_qargs *a, int p0, int p1)
{
    run_tiles(a, p0, p1, vnni_tiles, row_block(a->q->kp, MR), 1);
}

void cm_qrun_avx512bf16(const cm_qargs *a, int p0, int p1)
{
    run_tiles(a, p0, p1, bf16_tiles, row_block(2 * a->q->kp, MR), 2);
}

void cm_qrun_avx512bf16w(const cm_qargs *a, int p0, int p1)
{
    run_tiles(a, p0, p1, bf16w_tiles, row_block(4 * a->q->kp, MR), 2);
}

/* AVX-VNNI: half a panel (16 columns, two ymm) times up to 4 rows. */
__attribute__((target(T256), always_inline)) static inline void
avxvnni_tile(const cm_qargs *a, int i0, int rows, int j, int h)
{
    const cm_qmat *q = a->q;
    const int kp = q->kp, c0 = j * CM_QGEMM_NR + 16 * h;
    const int8_t *b = (const int8_t *)q->panels + (size_t)j * CM_QGEMM_NR * kp + 64 * h;
    const uint8_t *x = a->xq + (size_t)i0 * kp;
    __m256i acc[MR256][2];
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int g = 0; g < kp; g += 4) {
        const __m256i b0 = _mm256_loadu_si256((const void *)(b + (size_t)g * CM_QGEMM_NR));
        const __m256i b1 = _mm256_loadu_si256((const void *)(b + (size_t)g * CM_QGEMM_NR + 32));
#pragma GCC unroll 4
        for (int r = 0; r < rows; r++) {
            const __m256i av = _mm256_set1_epi32(load32(x + (size_t)r * kp + g));
            DPBUSD256(acc[r][0], av, b0);
            DPBUSD256(acc[r][1], av, b1);
        }
    }
    const int nc = q->n - c0 < 16 ? q->n - c0 : 16;
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++) {
        const int i = i0 + r;
        int32_t v[16];
        _mm256_storeu_si256((void *)v, acc[r][0]);
        _mm256_storeu_si256((void *)(v + 8), acc[r][1]);
        float *y = a->y + (size_t)i * q->n + c0;
        /* The epilogue is 1/k of the work: plain C reads clearer than masks here. The
         * branches stay outside the loop: a vectorised select read y even when not
         * accumulating (and was slow on whatever y held). */
        float o[16];
        for (int c = 0; c < nc; c++)
            o[c] = (float)(v[c] - a->zp[i] * q->colsum[c0 + c]) * (a->sx[i] * q->scale[c0 + c]);
        if (a->bias)
            for (int c = 0; c < nc; c++)
                o[c] += a->bias[c0 + c];
        if (a->accumulate)
            for (int c = 0; c < nc; c++)
                y[c] += o[c];
        else
            memcpy(y, o, (size_t)nc * sizeof *y);
        cm_gemm_act_scalar(y, nc, a->act);
    }
}

#define ROWS256(n)                                                                                 \
    __attribute__((target(T256), noinline)) static void avxvnni##n(const cm_qargs *a, int i0,      \
                                                                   int j, int h)                   \
    {                                                                                              \
        avxvnni_tile(a, i0, n, j, h);                                                              \
    }
ROWS256(1)
ROWS256(2)
ROWS256(3)
ROWS256(4)

typedef void (*tile256_fn)(const cm_qargs *, int, int, int);
static const tile256_fn avxvnni_tiles[MR256 + 1] = {NULL, avxvnni1, avxvnni2, avxvnni3, avxvnni4};

void cm_qrun_avxvnni(const cm_qargs *a, int p0, int p1)
{
    const int rb = row_block(a->q->kp, MR256);
    for (int ib = 0; ib < a->m; ib += rb) {
        const int ie = ib + rb < a->m ? ib + rb : a->m;
        for (int j = p0; j < p1; j++)
            for (int h = 0; h < 2; h++) {
                if (j * CM_QGEMM_NR + 16 * h >= a->q->n)
                    break;
                for (int i = ib; i < ie; i += MR256)
                    avxvnni_tiles[ie - i < MR256 ? ie - i : MR256](a, i, j, h);
            }
    }
}

/* Per-row u8 quantisation, as cm_qquant_rows (same rounding: nearest even). */
__attribute__((target(T512))) static void quant_row512(const float *r, int k, int kp, uint8_t *o,
                                                       float *sx, int32_t *zp)
{
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    for (int kk = 0; kk < k; kk += 16) {
        const __mmask16 mk = k - kk >= 16 ? 0xffff : (__mmask16)((1u << (k - kk)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(mk, r + kk); /* masked lanes are 0: in range */
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
    }
    const float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
    const float s = h > l ? (h - l) / 255.0f : 1.0f;
    const float inv = 1.0f / s;
    const int32_t z = (int32_t)_mm_cvtss_si32(_mm_set_ss(-l * inv));
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i vz = _mm512_set1_epi32(z), v0 = _mm512_setzero_si512();
    const __m512i v255 = _mm512_set1_epi32(255);
    for (int kk = 0; kk < k; kk += 16) {
        const __mmask16 mk = k - kk >= 16 ? 0xffff : (__mmask16)((1u << (k - kk)) - 1);
        __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, r + kk), vinv));
        q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, vz), v0), v255);
        _mm512_mask_cvtusepi32_storeu_epi8(o + kk, mk, q);
    }
    for (int kk = k; kk < kp; kk++)
        o[kk] = (uint8_t)z;
    *sx = s;
    *zp = z;
}

void cm_qquant_rows_avx512(const float *x, int k, int kp, int r0, int r1, uint8_t *xq, float *sx,
                           int32_t *zp)
{
    for (int i = r0; i < r1; i++)
        quant_row512(x + (size_t)i * k, k, kp, xq + (size_t)i * kp, sx + i, zp + i);
}

/*
 * fp32 -> bf16 rows with vcvtneps2bf16 (round to nearest even; it flushes denormals
 * to zero, which the portable conversion keeps: a difference below 1e-38), stored
 * as bf16 bits or, for the widened kernel, as the floats they are. The scalar
 * conversion cost a sixth of the bf16 tower.
 */
__attribute__((target(TBF16), always_inline)) static inline void
bf16_rows(const float *x, int k, int kp, int r0, int r1, void *out, int as_float)
{
    for (int i = r0; i < r1; i++) {
        const float *r = x + (size_t)i * k;
        uint16_t *ob = (uint16_t *)out + (size_t)i * kp;
        float *of = (float *)out + (size_t)i * kp;
        for (int kk = 0; kk < k; kk += 16) {
            const int n = k - kk < 16 ? k - kk : 16;
            const __mmask16 mk = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
            const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mk, r + kk));
            if (as_float)
                _mm512_mask_storeu_ps(
                    of + kk, mk,
                    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
            else
                _mm512_mask_storeu_epi16(ob + kk, (__mmask32)mk, _mm512_castsi256_si512(h));
        }
        for (int kk = k; kk < kp; kk++) {
            if (as_float)
                of[kk] = 0.0f;
            else
                ob[kk] = 0;
        }
    }
}

__attribute__((target(TBF16))) void cm_qbf16_rows_avx512(const float *x, int k, int kp, int r0,
                                                         int r1, uint16_t *xb)
{
    bf16_rows(x, k, kp, r0, r1, xb, 0);
}

__attribute__((target(TBF16))) void cm_qbf16f_rows_avx512(const float *x, int k, int kp, int r0,
                                                          int r1, float *xf)
{
    bf16_rows(x, k, kp, r0, r1, xf, 1);
}
#else
void cm_qrun_avx512bf16w(const cm_qargs *a, int p0, int p1)
{
    cm_qrun_scalar(a, p0, p1);
}
void cm_qbf16f_rows_avx512(const float *x, int k, int kp, int r0, int r1, float *xf)
{
    cm_qbf16f_rows(x, k, kp, r0, r1, xf);
}
void cm_qrun_avx512vnni(const cm_qargs *a, int p0, int p1)
{
    cm_qrun_scalar(a, p0, p1);
}
void cm_qrun_avx512bf16(const cm_qargs *a, int p0, int p1)
{
    cm_qrun_scalar(a, p0, p1);
}
void cm_qrun_avxvnni(const cm_qargs *a, int p0, int p1)
{
    cm_qrun_scalar(a, p0, p1);
}
void cm_qquant_rows_avx512(const float *x, int k, int kp, int r0, int r1, uint8_t *xq, float *sx,
                           int32_t *zp)
{
    cm_qquant_rows(x, k, kp, r0, r1, xq, sx, zp);
}
void cm_qbf16_rows_avx512(const float *x, int k, int kp, int r0, int r1, uint16_t *xb)
{
    cm_qbf16_rows(x, k, kp, r0, r1, xb);
}
#endif
