/*
 * qgemm.c - int8/bf16 weight packing, portable kernels, dispatch and threading.
 *
 * The vector kernels live in qgemm_x86.c (function target attributes, so the
 * library still runs on any x86-64); the portable ones here read the same panel
 * layout, so a test can compare every path on one packed matrix. Work is split over
 * output panels as in gemm.c: each task owns whole panels of y.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu.h"
#include "pool.h"
#include "qgemm.h"

static int group_of(clipmod_precision p)
{
    return p == CLIPMOD_PRECISION_INT8 ? 4 : 2;
}

uint16_t cm_bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* NaN stays a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float cm_bf16_to_float(uint16_t b)
{
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Offset of W[c][kk] within the packed array (panel of c, group of kk, lane, slot). */
static size_t packed_at(int c, int kk, int kp, int g)
{
    const size_t panel = (size_t)(c / CM_QGEMM_NR) * CM_QGEMM_NR * kp;
    return panel + (size_t)(kk / g) * CM_QGEMM_NR * g + (size_t)(c % CM_QGEMM_NR) * g + kk % g;
}

static void pack_int8(cm_qmat *q, const float *w)
{
    int8_t *p = q->panels;
    for (int c = 0; c < q->n; c++) {
        const float *row = w + (size_t)c * q->k;
        float amax = 0.0f;
        for (int kk = 0; kk < q->k; kk++)
            amax = fabsf(row[kk]) > amax ? fabsf(row[kk]) : amax;
        /* An all-zero row keeps scale 1 so its zeros stay zeros. */
        const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
        int32_t sum = 0;
        for (int kk = 0; kk < q->k; kk++) {
            long v = lrintf(row[kk] / s);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            p[packed_at(c, kk, q->kp, 4)] = (int8_t)v;
            sum += (int32_t)v;
        }
        q->scale[c] = s;
        q->colsum[c] = sum;
    }
}

static void pack_bf16(cm_qmat *q, const float *w)
{
    uint16_t *p = q->panels;
    for (int c = 0; c < q->n; c++)
        for (int kk = 0; kk < q->k; kk++)
            p[packed_at(c, kk, q->kp, 2)] = cm_bf16_from_float(w[(size_t)c * q->k + kk]);
}

static size_t panel_elems(const cm_qmat *q)
{
    const size_t panels = ((size_t)q->n + CM_QGEMM_NR - 1) / CM_QGEMM_NR;
    return panels * CM_QGEMM_NR * (size_t)q->kp;
}

/* q emptied and given its precision and shape (kp from k). */
static void set_shape(cm_qmat *q, clipmod_precision p, int n, int k)
{
    const int g = group_of(p);
    memset(q, 0, sizeof *q);
    q->precision = p;
    q->n = n;
    q->k = k;
    q->kp = (k + g - 1) / g * g;
}

clipmod_error cm_qmat_init(cm_qmat *q, clipmod_precision p, const float *w, int n, int k)
{
    set_shape(q, p, n, k);
    const size_t esize = p == CLIPMOD_PRECISION_INT8 ? 1 : 2;
    /* Padding (columns past n, k-steps past k) must be zero: calloc. */
    q->panels = cm_calloc(panel_elems(q), esize);
    if (p == CLIPMOD_PRECISION_INT8) {
        q->scale = cm_calloc((size_t)n, sizeof *q->scale);
        q->colsum = cm_calloc((size_t)n, sizeof *q->colsum);
    }
    if (!q->panels || (p == CLIPMOD_PRECISION_INT8 && (!q->scale || !q->colsum))) {
        cm_qmat_free(q);
        return CLIPMOD_E_NOMEM;
    }
    cm_qmat_pack(q, w);
    return CLIPMOD_OK;
}

void cm_qmat_pack(cm_qmat *q, const float *w)
{
    if (q->precision == CLIPMOD_PRECISION_INT8)
        pack_int8(q, w);
    else
        pack_bf16(q, w);
}

void cm_qmat_free(cm_qmat *q)
{
    if (!q)
        return;
    if (!q->borrowed) {
        cm_free(q->panels);
        cm_free(q->scale);
        cm_free(q->colsum);
    }
    q->panels = NULL;
    q->scale = NULL;
    q->colsum = NULL;
}

void cm_qmat_sizes(clipmod_precision p, int n, int k, size_t sizes[3])
{
    cm_qmat shape;
    set_shape(&shape, p, n, k);
    const int int8 = p == CLIPMOD_PRECISION_INT8;
    sizes[0] = panel_elems(&shape) * (int8 ? 1 : 2);
    sizes[1] = int8 ? (size_t)n * sizeof(float) : 0;
    sizes[2] = int8 ? (size_t)n * sizeof(int32_t) : 0;
}

void cm_qmat_borrow(cm_qmat *q, clipmod_precision p, int n, int k, void *const arrays[3])
{
    set_shape(q, p, n, k);
    q->panels = arrays[0];
    q->scale = p == CLIPMOD_PRECISION_INT8 ? arrays[1] : NULL;
    q->colsum = p == CLIPMOD_PRECISION_INT8 ? arrays[2] : NULL;
    q->borrowed = 1;
}

size_t cm_qmat_bytes(const cm_qmat *q)
{
    const size_t esize = q->precision == CLIPMOD_PRECISION_INT8 ? 1 : 2;
    size_t b = panel_elems(q) * esize;
    if (q->scale)
        b += (size_t)q->n * (sizeof *q->scale + sizeof *q->colsum);
    return b;
}

/* Write one output element: the epilogue every kernel shares. */
static void put(const cm_qargs *a, int i, int c, float v)
{
    float *y = a->y + (size_t)i * a->q->n + c;
    v += a->bias ? a->bias[c] : 0.0f;
    *y = a->accumulate ? *y + v : v;
    cm_gemm_act_scalar(y, 1, a->act);
}

static void run_int8_scalar(const cm_qargs *a, int p0, int p1)
{
    const cm_qmat *q = a->q;
    const int8_t *w = q->panels;
    for (int c = p0 * CM_QGEMM_NR; c < p1 * CM_QGEMM_NR && c < q->n; c++)
        for (int i = 0; i < a->m; i++) {
            const uint8_t *x = a->xq + (size_t)i * q->kp;
            int32_t acc = 0;
            for (int kk = 0; kk < q->kp; kk++)
                acc += (int32_t)x[kk] * w[packed_at(c, kk, q->kp, 4)];
            acc -= a->zp[i] * q->colsum[c];
            put(a, i, c, (float)acc * (a->sx[i] * q->scale[c]));
        }
}

static void run_bf16_scalar(const cm_qargs *a, int p0, int p1)
{
    const cm_qmat *q = a->q;
    const uint16_t *w = q->panels;
    const uint16_t *xb = (const uint16_t *)(const void *)a->xq;
    for (int c = p0 * CM_QGEMM_NR; c < p1 * CM_QGEMM_NR && c < q->n; c++)
        for (int i = 0; i < a->m; i++) {
            const uint16_t *x = xb + (size_t)i * q->kp;
            float acc = 0.0f;
            for (int kk = 0; kk < q->kp; kk++)
                acc += cm_bf16_to_float(x[kk]) * cm_bf16_to_float(w[packed_at(c, kk, q->kp, 2)]);
            put(a, i, c, acc);
        }
}

void cm_qrun_scalar(const cm_qargs *a, int p0, int p1)
{
    if (a->q->precision == CLIPMOD_PRECISION_INT8)
        run_int8_scalar(a, p0, p1);
    else
        run_bf16_scalar(a, p0, p1);
}

void cm_qquant_rows(const float *x, int k, int kp, int r0, int r1, uint8_t *xq, float *sx,
                    int32_t *zp)
{
    for (int i = r0; i < r1; i++) {
        const float *r = x + (size_t)i * k;
        /* The range includes 0 so that zero (padding, ReLU-like tails) is exact. */
        float lo = 0.0f, hi = 0.0f;
        for (int kk = 0; kk < k; kk++) {
            lo = r[kk] < lo ? r[kk] : lo;
            hi = r[kk] > hi ? r[kk] : hi;
        }
        const float s = hi > lo ? (hi - lo) / 255.0f : 1.0f;
        const float inv = 1.0f / s;
        const int32_t z = (int32_t)lrintf(-lo * inv);
        uint8_t *o = xq + (size_t)i * kp;
        for (int kk = 0; kk < k; kk++) {
            long v = lrintf(r[kk] * inv) + z;
            o[kk] = (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
        }
        for (int kk = k; kk < kp; kk++)
            o[kk] = (uint8_t)z; /* times zero weights: contributes nothing */
        sx[i] = s;
        zp[i] = z;
    }
}

void cm_qbf16_rows(const float *x, int k, int kp, int r0, int r1, uint16_t *xb)
{
    for (int i = r0; i < r1; i++) {
        for (int kk = 0; kk < k; kk++)
            xb[(size_t)i * kp + kk] = cm_bf16_from_float(x[(size_t)i * k + kk]);
        for (int kk = k; kk < kp; kk++)
            xb[(size_t)i * kp + kk] = 0;
    }
}

void cm_qbf16f_rows(const float *x, int k, int kp, int r0, int r1, float *xf)
{
    for (int i = r0; i < r1; i++) {
        for (int kk = 0; kk < k; kk++)
            xf[(size_t)i * kp + kk] = cm_bf16_to_float(cm_bf16_from_float(x[(size_t)i * k + kk]));
        for (int kk = k; kk < kp; kk++)
            xf[(size_t)i * kp + kk] = 0.0f;
    }
}

static int forced;                             /* cm_qisa, set by the test hook */
static int detected[CLIPMOD_PRECISION__COUNT]; /* cached choice per precision, 0 = not yet */

int cm_qgemm_isa_supported(cm_qisa isa)
{
    switch (isa) {
    case CM_QISA_SCALAR:
        return 1;
    case CM_QISA_AVXVNNI:
        return cm_cpu_has(CM_CPU_AVXVNNI | CM_CPU_AVX2 | CM_CPU_FMA);
    case CM_QISA_AVX512VNNI:
        return cm_cpu_has(CM_CPU_AVX512VNNI | CM_CPU_AVX512BW);
    case CM_QISA_AVX512BF16:
    case CM_QISA_AVX512BF16W: /* it rounds activations with vcvtneps2bf16 */
        return cm_cpu_has(CM_CPU_AVX512BF16 | CM_CPU_AVX512BW);
    default:
        return 0;
    }
}

int cm_qgemm_isa_fits(cm_qisa isa, clipmod_precision p)
{
    if (isa == CM_QISA_SCALAR)
        return p == CLIPMOD_PRECISION_INT8 || p == CLIPMOD_PRECISION_BF16;
    if (isa == CM_QISA_AVXVNNI || isa == CM_QISA_AVX512VNNI)
        return p == CLIPMOD_PRECISION_INT8;
    return (isa == CM_QISA_AVX512BF16 || isa == CM_QISA_AVX512BF16W) && p == CLIPMOD_PRECISION_BF16;
}

const char *cm_qgemm_isa_name(cm_qisa isa)
{
    static const char *const names[CM_QISA__COUNT] = {"auto",       "scalar",     "avxvnni",
                                                      "avx512vnni", "avx512bf16", "avx512bf16w"};
    return (unsigned)isa < CM_QISA__COUNT ? names[isa] : "?";
}

/* CLIPMOD_QGEMM's kernel if it names one for precision p, else CM_QISA_AUTO. */
static cm_qisa from_env(clipmod_precision p)
{
    const char *e = getenv("CLIPMOD_QGEMM");
    for (int i = CM_QISA_SCALAR; e && i < CM_QISA__COUNT; i++)
        if (strcmp(e, cm_qgemm_isa_name((cm_qisa)i)) == 0 && cm_qgemm_isa_fits((cm_qisa)i, p))
            return (cm_qisa)i;
    return CM_QISA_AUTO;
}

/* CLIPMOD_QGEMM=none: behave as a CPU without any of our int8/bf16 instructions. */
static int env_none(void)
{
    const char *e = getenv("CLIPMOD_QGEMM");
    return e && strcmp(e, "none") == 0;
}

static cm_qisa detect(clipmod_precision p)
{
    const cm_qisa env = from_env(p);
    if (env_none())
        return CM_QISA_AUTO;
    if (env != CM_QISA_AUTO) /* forced: honoured or refused, never replaced */
        return cm_qgemm_isa_supported(env) ? env : CM_QISA_AUTO;
    if (p == CLIPMOD_PRECISION_INT8) {
        if (cm_qgemm_isa_supported(CM_QISA_AVX512VNNI))
            return CM_QISA_AVX512VNNI;
        if (cm_qgemm_isa_supported(CM_QISA_AVXVNNI))
            return CM_QISA_AVXVNNI;
    }
    /* Intel's vdpbf16ps has half the FMA peak, AMD's twice (see qgemm.h). */
    if (p == CLIPMOD_PRECISION_BF16 && cm_qgemm_isa_supported(CM_QISA_AVX512BF16))
        return cm_cpu_has(CM_CPU_INTEL) ? CM_QISA_AVX512BF16W : CM_QISA_AVX512BF16;
    return CM_QISA_AUTO;
}

cm_qisa cm_qgemm_isa(clipmod_precision p)
{
    if ((unsigned)p >= CLIPMOD_PRECISION__COUNT || p == CLIPMOD_PRECISION_FP32)
        return CM_QISA_AUTO;
    const int f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
    if (f != CM_QISA_AUTO)
        return cm_qgemm_isa_fits((cm_qisa)f, p) ? (cm_qisa)f : CM_QISA_AUTO;
    int d = __atomic_load_n(&detected[p], __ATOMIC_RELAXED);
    if (d == 0) {
        /* -1 caches "none": detection runs once per precision. */
        d = detect(p);
        __atomic_store_n(&detected[p], d ? d : -1, __ATOMIC_RELAXED);
    }
    return d > 0 ? (cm_qisa)d : CM_QISA_AUTO;
}

void cm_qgemm_force(cm_qisa isa)
{
    __atomic_store_n(&forced, (int)isa, __ATOMIC_RELAXED);
    for (int p = 0; p < CLIPMOD_PRECISION__COUNT; p++)
        __atomic_store_n(&detected[p], 0, __ATOMIC_RELAXED);
}

clipmod_error cm_qgemm_check(clipmod_precision p, char *errbuf)
{
    if ((unsigned)p >= CLIPMOD_PRECISION__COUNT)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "precision %d does not exist", (int)p);
    if (p == CLIPMOD_PRECISION_FP32 || cm_qgemm_isa(p) != CM_QISA_AUTO)
        return CLIPMOD_OK;
    const char *name = clipmod_precision_name(p);
    const cm_qisa env = from_env(p);
    if (env != CM_QISA_AUTO)
        return cm_error(errbuf, CLIPMOD_E_UNSUPPORTED,
                        "precision %s: CLIPMOD_QGEMM=%s asks for a kernel this CPU cannot run",
                        name, cm_qgemm_isa_name(env));
    const char *why = env_none() ? " (CLIPMOD_QGEMM=none)" : "";
    if (p == CLIPMOD_PRECISION_INT8)
        return cm_error(errbuf, CLIPMOD_E_UNSUPPORTED,
                        "precision int8 not supported on this CPU: it needs AVX-512 VNNI "
                        "(avx512_vnni) or AVX-VNNI (avx_vnni), and this CPU has neither%s",
                        why);
    return cm_error(errbuf, CLIPMOD_E_UNSUPPORTED,
                    "precision %s not supported on this CPU: it needs AVX-512 BF16 (avx512_bf16), "
                    "which this CPU lacks%s",
                    name, why);
}

typedef struct qjob {
    const float *x;
    cm_qargs a;
    cm_qisa isa;
    int k, tasks, panels;
    uint8_t *xq;
    float *sx;
    int32_t *zp;
} qjob;

/* Activation conversions, one per kernel, over rows [r0, r1) of the job. */
static void conv_u8(const qjob *j, int r0, int r1)
{
    cm_qquant_rows(j->x, j->k, j->a.q->kp, r0, r1, j->xq, j->sx, j->zp);
}

static void conv_u8_avx512(const qjob *j, int r0, int r1)
{
    cm_qquant_rows_avx512(j->x, j->k, j->a.q->kp, r0, r1, j->xq, j->sx, j->zp);
}

static void conv_bf16_avx512(const qjob *j, int r0, int r1)
{
    cm_qbf16_rows_avx512(j->x, j->k, j->a.q->kp, r0, r1, (uint16_t *)(void *)j->xq);
}

static void conv_bf16f_avx512(const qjob *j, int r0, int r1)
{
    cm_qbf16f_rows_avx512(j->x, j->k, j->a.q->kp, r0, r1, (float *)(void *)j->xq);
}

static void conv_scalar(const qjob *j, int r0, int r1)
{
    if (j->a.q->precision == CLIPMOD_PRECISION_BF16)
        cm_qbf16_rows(j->x, j->k, j->a.q->kp, r0, r1, (uint16_t *)(void *)j->xq);
    else
        conv_u8(j, r0, r1);
}

/*
 * What each kernel supplies: its panel loop, its activation conversion and the
 * bytes of one converted activation (0: the precision's, 1 for int8, 2 for bf16).
 */
static const struct qkernel {
    void (*run)(const cm_qargs *a, int p0, int p1);
    void (*convert)(const qjob *j, int r0, int r1);
    size_t xsize;
} kernels[CM_QISA__COUNT] = {
    [CM_QISA_SCALAR] = {cm_qrun_scalar, conv_scalar, 0},
    [CM_QISA_AVXVNNI] = {cm_qrun_avxvnni, conv_u8, 1},
    [CM_QISA_AVX512VNNI] = {cm_qrun_avx512vnni, conv_u8_avx512, 1},
    [CM_QISA_AVX512BF16] = {cm_qrun_avx512bf16, conv_bf16_avx512, 2},
    [CM_QISA_AVX512BF16W] = {cm_qrun_avx512bf16w, conv_bf16f_avx512, sizeof(float)},
};

static void convert_task(void *ctx, int t)
{
    const qjob *j = ctx;
    const int m = j->a.m, r0 = (int)((long)m * t / j->tasks),
              r1 = (int)((long)m * (t + 1) / j->tasks);
    if (r1 > r0)
        kernels[j->isa].convert(j, r0, r1);
}

static void gemm_task(void *ctx, int t)
{
    const qjob *j = ctx;
    const int p0 = (int)((long)j->panels * t / j->tasks);
    const int p1 = (int)((long)j->panels * (t + 1) / j->tasks);
    if (p1 > p0)
        kernels[j->isa].run(&j->a, p0, p1);
}

clipmod_error cm_qgemm(const cm_qmat *q, const float *x, int m, const float *bias, int accumulate,
                       cm_gemm_act act, float *y)
{
    qjob j = {.x = x, .k = q->k, .isa = cm_qgemm_isa(q->precision)};
    if (j.isa <= CM_QISA_AUTO || j.isa >= CM_QISA__COUNT)
        return CLIPMOD_E_UNSUPPORTED; /* refused at load; a forced change since lands here */
    const size_t esize = kernels[j.isa].xsize                     ? kernels[j.isa].xsize
                         : q->precision == CLIPMOD_PRECISION_INT8 ? 1
                                                                  : 2;
    j.xq = cm_alloc((size_t)m * q->kp * esize + 64);
    j.sx = cm_alloc((size_t)m * sizeof *j.sx);
    j.zp = cm_alloc((size_t)m * sizeof *j.zp);
    clipmod_error rc = CLIPMOD_E_NOMEM;
    if (j.xq && j.sx && j.zp) {
        const int threads = cm_pool_threads();
        j.a = (cm_qargs){.q = q,
                         .m = m,
                         .xq = j.xq,
                         .sx = j.sx,
                         .zp = j.zp,
                         .bias = bias,
                         .accumulate = accumulate,
                         .act = act,
                         .y = y};
        j.tasks = (long)m * q->k < 65536 ? 1 : (m < threads ? m : threads);
        cm_pool_run(convert_task, &j, j.tasks);
        j.panels = (q->n + CM_QGEMM_NR - 1) / CM_QGEMM_NR;
        /* A few tasks per thread balance panels that do not divide evenly. */
        j.tasks = (long)m * q->n * q->k < 200000 ? 1 : threads * 3;
        j.tasks = j.tasks > j.panels ? j.panels : j.tasks;
        cm_pool_run(gemm_task, &j, j.tasks);
        rc = CLIPMOD_OK;
    }
    cm_free(j.xq);
    cm_free(j.sx);
    cm_free(j.zp);
    return rc;
}

const char *clipmod_precision_name(clipmod_precision p)
{
    static const char *const names[CLIPMOD_PRECISION__COUNT] = {"fp32", "int8", "bf16"};
    return (unsigned)p < CLIPMOD_PRECISION__COUNT ? names[p] : "unknown";
}

clipmod_error clipmod_precision_parse(const char *name, clipmod_precision *out)
{
    for (int p = 0; name && out && p < CLIPMOD_PRECISION__COUNT; p++)
        if (strcmp(name, clipmod_precision_name((clipmod_precision)p)) == 0) {
            *out = (clipmod_precision)p;
            return CLIPMOD_OK;
        }
    return CLIPMOD_E_INVALID_ARG;
}

clipmod_error clipmod_precision_check(clipmod_precision p, char *errbuf)
{
    return cm_qgemm_check(p, errbuf);
}
