/*
 * qgemm.h - reduced-precision GEMM for the linear layers: int8 and bf16 (internal).
 *
 * Owns the quantised weight matrix (cm_qmat), its panel layouts, the per-call
 * conversion of activations and the ISA dispatch of the int8/bf16 kernels. The
 * fp32 GEMM (gemm.h) is another helper's and is not used here.
 *
 * int8: weights are symmetric per output channel (scale s_w[c] = max|W[c,:]| / 127),
 * activations are asymmetric u8 per row (scale s_x[i], zero point z[i]), as
 * vpdpbusd multiplies u8 by s8. With q_x = x / s_x + z:
 *   y[i][c] = s_x[i] s_w[c] (sum_k q_x[i][k] q_w[c][k] - z[i] colsum[c]) + bias[c],
 * colsum[c] = sum_k q_w[c][k] precomputed at load, as MLAS's QGEMM does. Every
 * integer sum fits int32 for k < 66000 (255 * 127 * k).
 * Panel layout (NR = 32 output columns per panel, k padded to kp): int8 groups of
 * 4 k-steps, p[g * 128 + c * 4 + (k % 4)]; bf16 pairs of k-steps, p[g * 64 + c * 2 +
 * (k % 2)], so one 32-bit lane of a vector holds what one vpdpbusd / vdpbf16ps lane
 * reduces.
 *
 * Kernels: AVX-512 VNNI (zmm), AVX-VNNI (ymm), AVX-512 BF16, and portable C for
 * both, picked at run time (never a silent fallback: a precision the CPU cannot run
 * is refused at load, see cm_qgemm_check). CLIPMOD_QGEMM=scalar|avxvnni|avx512vnni|
 * avx512bf16|avx512bf16w forces one (tests); CLIPMOD_QGEMM=none plays a CPU that has
 * none of them.
 * avx512bf16w computes the same products (activations rounded to bf16, as for
 * vdpbf16ps) with fp32 FMAs, widening each weight pair in registers: on Intel's
 * AVX-512 BF16 CPUs vdpbf16ps has half the FMA peak (measured on an Emerald Rapids:
 * 110 against 228 GFLOP/s per core), so there it is the faster bf16 kernel; on AMD
 * (Zen 4/5) vdpbf16ps has twice the FMA peak and stays.
 */
#ifndef CM_QGEMM_H
#define CM_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"
#include "gemm.h" /* cm_gemm_act */

#define CM_QGEMM_NR 32

typedef enum cm_qisa {
    CM_QISA_AUTO = 0,
    CM_QISA_SCALAR,      /* portable C, int8 and bf16 (tests, CLIPMOD_QGEMM=scalar) */
    CM_QISA_AVXVNNI,     /* int8, ymm */
    CM_QISA_AVX512VNNI,  /* int8, zmm */
    CM_QISA_AVX512BF16,  /* bf16, zmm */
    CM_QISA_AVX512BF16W, /* bf16 weights widened to fp32 in registers, FMA; zmm */
    CM_QISA__COUNT
} cm_qisa;

/* One weight matrix W[n, k] ([out, in]) in reduced precision, packed. */
typedef struct cm_qmat {
    clipmod_precision precision; /* INT8 or BF16 */
    int n, k, kp;                /* kp: k rounded up to 4 (int8) or 2 (bf16) */
    void *panels;                /* int8_t or uint16_t (bf16 bits), 64-byte aligned */
    float *scale;                /* int8: [n] weight scales */
    int32_t *colsum;             /* int8: [n] sums of the quantised weights */
    int borrowed;                /* 1: the arrays belong to a weights cache file's mapping */
} cm_qmat;

/* Quantise/convert w[n, k] into q (allocating its arrays). CLIPMOD_E_NOMEM on failure. */
clipmod_error cm_qmat_init(cm_qmat *q, clipmod_precision p, const float *w, int n, int k);

/* Quantise/convert w[q->n, q->k] into q's arrays (zeroed, as cm_qmat_init's or
 * borrowed ones): cm_qmat_init without the allocation. */
void cm_qmat_pack(cm_qmat *q, const float *w);

/* Free q's arrays. Accepts a zeroed or already-freed struct. */
void cm_qmat_free(cm_qmat *q);

/* Bytes q holds (for reports and tests). */
size_t cm_qmat_bytes(const cm_qmat *q);

/*
 * The sizes in bytes of the arrays a cm_qmat of precision p and shape [n, k] holds,
 * in the order panels, scale, colsum (0 for an array it has not): what a weights
 * cache file (wcache.c) stores for it.
 */
void cm_qmat_sizes(clipmod_precision p, int n, int k, size_t sizes[3]);

/*
 * Point q at arrays of those sizes that somebody else owns (a weights cache file's
 * mapping, 64-byte aligned): cm_qmat_free() then only forgets them.
 */
void cm_qmat_borrow(cm_qmat *q, clipmod_precision p, int n, int k, void *const arrays[3]);

/*
 * y[m, n] = act(x[m, k] . W^T + bias (+ y if accumulate)), W = q; threads from the
 * pool. Activations are converted per call (scratch allocated here:
 * CLIPMOD_E_NOMEM on failure). `act` is applied in each kernel's store, so the
 * output is written once (a separate pass was 5-8% of a bf16 tower).
 */
clipmod_error cm_qgemm(const cm_qmat *q, const float *x, int m, const float *bias, int accumulate,
                       cm_gemm_act act, float *y);

/* The kernel used for precision p: forced, from CLIPMOD_QGEMM, or the best this CPU has;
 * CM_QISA_AUTO when none can run. */
cm_qisa cm_qgemm_isa(clipmod_precision p);

/* Whether this CPU and build can run `isa`, and whether `isa` computes precision p. */
int cm_qgemm_isa_supported(cm_qisa isa);
int cm_qgemm_isa_fits(cm_qisa isa, clipmod_precision p);
const char *cm_qgemm_isa_name(cm_qisa isa);

/* Test hook: force one kernel (CM_QISA_AUTO returns to detection and CLIPMOD_QGEMM). */
void cm_qgemm_force(cm_qisa isa);

/*
 * CLIPMOD_OK if precision p can run here, else CLIPMOD_E_UNSUPPORTED with a sentence
 * naming the precision and the missing CPU feature in errbuf (may be NULL).
 */
clipmod_error cm_qgemm_check(clipmod_precision p, char *errbuf);

/* What one kernel call computes: rows [0, m) of the activations times panels [p0, p1). */
typedef struct cm_qargs {
    const cm_qmat *q;
    int m;
    const uint8_t *xq; /* int8: [m, kp] u8; bf16: [m, kp] uint16 bits (as bytes);
                          avx512bf16w: [m, kp] floats, each a bf16 value */
    const float *sx;   /* int8: [m] activation scales */
    const int32_t *zp; /* int8: [m] zero points */
    const float *bias; /* [n] or NULL */
    int accumulate;
    cm_gemm_act act; /* applied last, in the store (fc1's QuickGELU/GELU) */
    float *y;        /* [m, n] */
} cm_qargs;

void cm_qrun_scalar(const cm_qargs *a, int p0, int p1);
void cm_qrun_avxvnni(const cm_qargs *a, int p0, int p1);
void cm_qrun_avx512vnni(const cm_qargs *a, int p0, int p1);
void cm_qrun_avx512bf16(const cm_qargs *a, int p0, int p1);
void cm_qrun_avx512bf16w(const cm_qargs *a, int p0, int p1);

/* Activation conversion for rows [r0, r1): int8 per-row u8 with zero point, bf16 RNE. */
void cm_qquant_rows(const float *x, int k, int kp, int r0, int r1, uint8_t *xq, float *sx,
                    int32_t *zp);
void cm_qquant_rows_avx512(const float *x, int k, int kp, int r0, int r1, uint8_t *xq, float *sx,
                           int32_t *zp);
void cm_qbf16_rows(const float *x, int k, int kp, int r0, int r1, uint16_t *xb);
void cm_qbf16_rows_avx512(const float *x, int k, int kp, int r0, int r1, uint16_t *xb);
/* The same rounding, kept as floats (the low 16 bits zero), for avx512bf16w. */
void cm_qbf16f_rows(const float *x, int k, int kp, int r0, int r1, float *xf);
void cm_qbf16f_rows_avx512(const float *x, int k, int kp, int r0, int r1, float *xf);

/* Round-to-nearest-even float -> bf16 bits, as vcvtne2ps2bf16 does (NaN kept quiet). */
uint16_t cm_bf16_from_float(float f);
float cm_bf16_to_float(uint16_t b);

#endif
