/*
 * gemm.c - packing, ISA dispatch and threading of our fp32 GEMM.
 *
 * The per-ISA micro-kernels live in gemm_avx512.c and gemm_avx2.c (compiled with
 * function target attributes, so the library still runs on any x86-64), the
 * portable one here. Work is split over the output panels: each task owns whole
 * panels, so threads never write the same cache line of y twice and each reads
 * its own part of the weights once per call.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gemm.h"
#include "pool.h"

size_t cm_gemm_packed_floats(int n, int k)
{
    const size_t panels = ((size_t)n + CM_GEMM_NR - 1) / CM_GEMM_NR;
    return panels * CM_GEMM_NR * (size_t)k;
}

void cm_gemm_pack(const float *w, int n, int k, float *p)
{
    const int panels = (n + CM_GEMM_NR - 1) / CM_GEMM_NR;
    for (int j = 0; j < panels; j++) {
        float *dst = p + (size_t)j * CM_GEMM_NR * k;
        for (int c = 0; c < CM_GEMM_NR; c++) {
            const int row = j * CM_GEMM_NR + c;
            for (int kk = 0; kk < k; kk++)
                dst[(size_t)kk * CM_GEMM_NR + c] = row < n ? w[(size_t)row * k + kk] : 0.0f;
        }
    }
}

int cm_gemm_pack_inplace(float *w, int n, int k, float *tmp)
{
    if (n % CM_GEMM_NR != 0)
        return -1;
    /* A panel is NR whole rows of w, so each can be transposed through one buffer. */
    for (int j = 0; j < n / CM_GEMM_NR; j++) {
        float *panel = w + (size_t)j * CM_GEMM_NR * k;
        cm_gemm_pack(panel, CM_GEMM_NR, k, tmp);
        memcpy(panel, tmp, (size_t)CM_GEMM_NR * k * sizeof *tmp);
    }
    return 0;
}

void cm_gemm_run_scalar(const cm_gemm_args *g, int p0, int p1)
{
    const int k = g->k;
    for (int j = p0; j < p1; j++) {
        const float *b = g->p + (size_t)j * CM_GEMM_NR * k;
        const int c0 = j * CM_GEMM_NR;
        const int nc = g->n - c0 < CM_GEMM_NR ? g->n - c0 : CM_GEMM_NR;
        for (int i = 0; i < g->m; i++) {
            const float *a = g->x + (size_t)i * k;
            float acc[CM_GEMM_NR] = {0};
            for (int kk = 0; kk < k; kk++)
                for (int c = 0; c < CM_GEMM_NR; c++)
                    acc[c] += a[kk] * b[(size_t)kk * CM_GEMM_NR + c];
            float *y = g->y + (size_t)i * g->n + c0;
            for (int c = 0; c < nc; c++) {
                const float v = acc[c] + (g->bias ? g->bias[c0 + c] : 0.0f);
                y[c] = g->accumulate ? y[c] + v : v;
            }
        }
    }
}

static int forced;   /* cm_gemm_isa, set by the test hook */
static int detected; /* cached detection, 0 = not yet */

int cm_gemm_isa_supported(cm_gemm_isa isa)
{
    switch (isa) {
    case CM_GEMM_SCALAR:
    case CM_GEMM_OPENBLAS:
        return 1;
#if defined(__x86_64__) && defined(__GNUC__)
    case CM_GEMM_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CM_GEMM_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return 0;
    }
}

static cm_gemm_isa from_env(void)
{
    static const struct {
        const char *name;
        cm_gemm_isa isa;
    } names[] = {{"scalar", CM_GEMM_SCALAR},
                 {"avx2", CM_GEMM_AVX2},
                 {"avx512", CM_GEMM_AVX512},
                 {"openblas", CM_GEMM_OPENBLAS}};
    const char *e = getenv("CLIPMOD_GEMM");
    for (size_t i = 0; e && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(e, names[i].name) == 0 && cm_gemm_isa_supported(names[i].isa))
            return names[i].isa;
    return CM_GEMM_AUTO;
}

cm_gemm_isa cm_gemm_isa_active(void)
{
    const int f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
    if (f != CM_GEMM_AUTO)
        return (cm_gemm_isa)f;
    int d = __atomic_load_n(&detected, __ATOMIC_RELAXED);
    if (d == 0) {
        d = from_env();
        if (d == CM_GEMM_AUTO)
            d = cm_gemm_isa_supported(CM_GEMM_AVX512) ? CM_GEMM_AVX512
                : cm_gemm_isa_supported(CM_GEMM_AVX2) ? CM_GEMM_AVX2
                                                      : CM_GEMM_SCALAR;
        __atomic_store_n(&detected, d, __ATOMIC_RELAXED);
    }
    return (cm_gemm_isa)d;
}

void cm_gemm_force(cm_gemm_isa isa)
{
    __atomic_store_n(&forced, (int)isa, __ATOMIC_RELAXED);
}

const char *cm_gemm_isa_name(cm_gemm_isa isa)
{
    static const char *names[] = {"auto", "scalar", "avx2", "avx512", "openblas"};
    return isa <= CM_GEMM_OPENBLAS ? names[isa] : "?";
}

typedef struct gemm_job {
    const cm_gemm_args *g;
    void (*run)(const cm_gemm_args *, int, int);
    int panels, tasks;
} gemm_job;

static void gemm_task(void *ctx, int t)
{
    const gemm_job *j = ctx;
    const int p0 = (int)((long)j->panels * t / j->tasks);
    const int p1 = (int)((long)j->panels * (t + 1) / j->tasks);
    if (p1 > p0)
        j->run(j->g, p0, p1);
}

void cm_gemm_packed(const cm_gemm_args *g)
{
    const cm_gemm_isa isa = cm_gemm_isa_active();
    gemm_job j = {.g = g, .run = cm_gemm_run_scalar};
    if (isa == CM_GEMM_AVX512)
        j.run = cm_gemm_run_avx512;
    else if (isa == CM_GEMM_AVX2)
        j.run = cm_gemm_run_avx2;
    j.panels = (g->n + CM_GEMM_NR - 1) / CM_GEMM_NR;
    /* A few tasks per thread balance panels that do not divide evenly. */
    const int threads = cm_pool_threads();
    const long flops = (long)g->m * g->n * g->k;
    j.tasks = flops < 200000 ? 1 : threads * 3;
    if (j.tasks > j.panels)
        j.tasks = j.panels;
    cm_pool_run(gemm_task, &j, j.tasks);
}
