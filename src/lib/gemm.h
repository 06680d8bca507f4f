/*
 * gemm.h - our own fp32 GEMM for the linear layers (internal).
 *
 * Owns the packed-weight panel layout and the ISA dispatch. A weight matrix
 * W[n, k] (Hugging Face's [out, in]) is packed once at load into panels of
 * CM_GEMM_NR output columns: panel j holds p[kk * NR + c] = W[j * NR + c][kk],
 * so the micro-kernel reads one contiguous vector row per k step instead of
 * OpenBLAS re-packing every weight on every call. Kernels: AVX-512F (12x32 tile),
 * AVX2+FMA (6x16 tile) and portable C, chosen at run time from the CPU, never
 * from OPENBLAS_CORETYPE. CLIPMOD_GEMM=scalar|avx2|avx512|openblas overrides it.
 *
 * The driver (gemm.c) blocks K (CM_GEMM_KC) and rows (CM_GEMM_MC), BLIS-style: a
 * KC-deep slice of a panel (32 KB) stays in L1/L2 while every row tile of the
 * block uses it, and the rows of x are copied per call into a contiguous tile
 * buffer, so the kernel's broadcasts read one stream instead of 12 rows whose
 * 3 or 12 KB strides all fall in the same L1 set.
 */
#ifndef CM_GEMM_H
#define CM_GEMM_H

#include <stddef.h>

#define CM_GEMM_NR 32

typedef enum cm_gemm_isa {
    CM_GEMM_AUTO = 0,
    CM_GEMM_SCALAR,
    CM_GEMM_AVX2,
    CM_GEMM_AVX512,
    CM_GEMM_OPENBLAS /* no packing: every product goes through cblas_sgemm */
} cm_gemm_isa;

#define CM_GEMM_KC 384 /* K block: one panel slice is KC * NR floats (48 KB) */
#define CM_GEMM_MC 144 /* rows per block: the packed x block is MC * KC floats */

/* Activation applied in the store (fused epilogue). */
typedef enum cm_gemm_act {
    CM_GEMM_ACT_NONE = 0,
    CM_GEMM_ACT_QUICK_GELU,
    CM_GEMM_ACT_GELU
} cm_gemm_act;

/* What one call computes: y[m, n] = act(x[m, k] . W^T + bias (+ y if accumulate)). */
typedef struct cm_gemm_args {
    const float *x;
    int m, k, n;
    const float *p;    /* packed W */
    const float *bias; /* [n] or NULL */
    int accumulate;    /* 1: y += ..., 0: y = ... */
    cm_gemm_act act;   /* applied last; CM_GEMM_ACT_NONE (0) by default */
    float *y;
} cm_gemm_args;

/*
 * One micro-kernel call: rows x min(nc, NR) outputs over one K block.
 * y = (load_y ? y : 0) + a . b, then + bias and act when `last`.
 */
typedef struct cm_gemm_tile {
    const float *a;    /* packed x rows: a[r * CM_GEMM_KC + kk] */
    const float *b;    /* panel slice: b[kk * CM_GEMM_NR + c] */
    float *y;          /* first output of the tile */
    const float *bias; /* bias of the tile's first column, or NULL */
    const float *pf;   /* the next panel's slice, prefetched into L2 while this runs, or NULL */
    int ldy, rows, kc, nc;
    int load_y, last;
    cm_gemm_act act;
} cm_gemm_tile;

/* Floats needed to pack an [n, k] matrix (n rounded up to whole panels). */
size_t cm_gemm_packed_floats(int n, int k);

/* Pack w[n, k] into p (cm_gemm_packed_floats(n, k) floats; padding is zero). */
void cm_gemm_pack(const float *w, int n, int k, float *p);

/*
 * Pack w[n, k] in place (no second copy of the weights stays resident), through
 * `tmp` of CM_GEMM_NR * k floats. Needs n % CM_GEMM_NR == 0; returns 0 when
 * packed, -1 when it left w alone.
 */
int cm_gemm_pack_inplace(float *w, int n, int k, float *tmp);

/* y[m, n] (+)= x . W^T + bias with W packed; threads from the pool. */
void cm_gemm_packed(const cm_gemm_args *g);

/* The ISA in use (the best the CPU has, unless CLIPMOD_GEMM or cm_gemm_force). */
cm_gemm_isa cm_gemm_isa_active(void);
/* Whether this CPU and build can run `isa`. */
int cm_gemm_isa_supported(cm_gemm_isa isa);
/* Test hook: force one ISA (CM_GEMM_AUTO returns to detection). */
void cm_gemm_force(cm_gemm_isa isa);
const char *cm_gemm_isa_name(cm_gemm_isa isa);

/* Per-ISA micro-kernels and their tile heights (rows <= MR). */
#define CM_GEMM_MR_SCALAR 4
#define CM_GEMM_MR_AVX2   6
#define CM_GEMM_MR_AVX512 12
void cm_gemm_tile_scalar(const cm_gemm_tile *t);
void cm_gemm_tile_avx2(const cm_gemm_tile *t);
void cm_gemm_tile_avx512(const cm_gemm_tile *t);

/* The scalar activations (ops.c), which the vector epilogues reproduce. */
void cm_gemm_act_scalar(float *x, int n, cm_gemm_act act);

#endif
