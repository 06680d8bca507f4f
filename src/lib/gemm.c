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
#include "cpu.h"
#include "gemm.h"
#include "pool.h"
#include "scratch.h"

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

/* The portable kernel, also the reference for what every tile computes. */
void cm_gemm_tile_scalar(const cm_gemm_tile *t)
{
    for (int r = 0; r < t->rows; r++) {
        float acc[CM_GEMM_NR] = {0};
        for (int kk = 0; kk < t->kc; kk++) {
            const float a = t->a[(size_t)r * CM_GEMM_KC + kk];
            for (int c = 0; c < CM_GEMM_NR; c++)
                acc[c] += a * t->b[(size_t)kk * CM_GEMM_NR + c];
        }
        float *y = t->y + (size_t)r * t->ldy;
        for (int c = 0; c < t->nc; c++) {
            float v = acc[c] + (t->load_y ? y[c] : 0.0f);
            if (t->last && t->bias)
                v += t->bias[c];
            y[c] = v;
        }
        if (t->last && t->act != CM_GEMM_ACT_NONE)
            cm_gemm_act_scalar(y, t->nc, t->act);
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
    case CM_GEMM_AVX2:
        return cm_cpu_has(CM_CPU_AVX2 | CM_CPU_FMA);
    case CM_GEMM_AVX512:
        return cm_cpu_has(CM_CPU_AVX512F);
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
    void (*tile)(const cm_gemm_tile *);
    int mr, tiles, panels;
    int per_block;       /* row tiles per row block */
    int rblocks, groups; /* task t = row block t / groups, panel group t % groups */
    const float *shared; /* x packed once for every task (one row block), or NULL */
} gemm_job;

/* First row of row tile `i`: m rows in `tiles` tiles of near-equal height (50 = 5 x 10). */
static int tile_row(const gemm_job *j, int i)
{
    return (int)((long)j->g->m * i / j->tiles);
}

/*
 * Copy x[rows of tiles t0..t1, k0..k0+kc) into buf, row r of a tile at
 * a[r * CM_GEMM_KC + kk]: one memcpy per row, and the kernel's 12 broadcast
 * streams sit 1 KB apart in one 12 KB block instead of 3 or 12 KB apart in x,
 * where at k = 3072 all twelve fell into the same L1 set.
 */
static void pack_x(const gemm_job *j, int t0, int t1, int k0, int kc, float *buf)
{
    const cm_gemm_args *g = j->g;
    const int i0 = tile_row(j, t0), i1 = tile_row(j, t1);
    for (int i = i0; i < i1; i++)
        memcpy(buf + (size_t)(i - i0) * CM_GEMM_KC, g->x + (size_t)i * g->k + k0,
               (size_t)kc * sizeof *buf);
}

/* One K block of one row block times panels [p0, p1). */
static void gemm_block(const gemm_job *j, int t0, int t1, int k0, int kc, int p0, int p1,
                       const float *buf)
{
    const cm_gemm_args *g = j->g;
    cm_gemm_tile t = {.ldy = g->n,
                      .kc = kc,
                      .load_y = k0 > 0 || g->accumulate,
                      .last = k0 + kc >= g->k,
                      .act = g->act};
    for (int p = p0; p < p1; p++) {
        const int c0 = p * CM_GEMM_NR;
        t.b = g->p + (size_t)c0 * g->k + (size_t)k0 * CM_GEMM_NR;
        t.nc = g->n - c0 < CM_GEMM_NR ? g->n - c0 : CM_GEMM_NR;
        t.bias = g->bias ? g->bias + c0 : NULL;
        t.a = buf;
        /* The first tile of a panel fetches the next panel's slice: at batch 1 the
           weights stream from memory once per pass (cold 180-220 GFLOP/s, hot 275-360). */
        t.pf = p + 1 < p1 ? t.b + (size_t)CM_GEMM_NR * g->k : NULL;
        for (int i = t0; i < t1; i++) {
            const int i0 = tile_row(j, i);
            t.rows = tile_row(j, i + 1) - i0;
            t.y = g->y + (size_t)i0 * g->n + c0;
            j->tile(&t);
            t.a += (size_t)t.rows * CM_GEMM_KC;
            t.pf = NULL;
        }
    }
}

/* Out of memory for the packing buffer: one-row tiles need only a K block of one row. */
static void gemm_rows_unbuffered(const gemm_job *j, int t0, int t1, int p0, int p1)
{
    float row[CM_GEMM_KC]; /* pack_x of one row fills exactly this */
    const gemm_job one = {.g = j->g, .tile = cm_gemm_tile_scalar, .mr = 1, .tiles = j->g->m};
    const int i0 = tile_row(j, t0), i1 = tile_row(j, t1);
    for (int k0 = 0; k0 < j->g->k; k0 += CM_GEMM_KC)
        for (int i = i0; i < i1; i++) {
            const int kc = j->g->k - k0 < CM_GEMM_KC ? j->g->k - k0 : CM_GEMM_KC;
            pack_x(&one, i, i + 1, k0, kc, row);
            gemm_block(&one, i, i + 1, k0, kc, p0, p1, row);
        }
}

static void gemm_task(void *ctx, int t)
{
    const gemm_job *j = ctx;
    const int rb = t / j->groups, pg = t % j->groups;
    const int p0 = (int)((long)j->panels * pg / j->groups);
    const int p1 = (int)((long)j->panels * (pg + 1) / j->groups);
    const int t0 = rb * j->per_block;
    const int t1 = t0 + j->per_block < j->tiles ? t0 + j->per_block : j->tiles;
    if (p1 <= p0 || t1 <= t0)
        return;
    if (j->shared) {
        for (int k0 = 0; k0 < j->g->k; k0 += CM_GEMM_KC) {
            const int kc = j->g->k - k0 < CM_GEMM_KC ? j->g->k - k0 : CM_GEMM_KC;
            gemm_block(j, t0, t1, k0, kc, p0, p1,
                       j->shared + (size_t)(k0 / CM_GEMM_KC) * j->g->m * CM_GEMM_KC);
        }
        return;
    }
    /* This thread's packing buffer, kept between calls (scratch.c): a fresh 221 KB
       malloc per call is an mmap and page faults every time. */
    float *buf =
        cm_scratch_take(CM_SCRATCH_GEMM_PACK, (size_t)CM_GEMM_MC * CM_GEMM_KC * sizeof *buf);
    if (!buf) {
        gemm_rows_unbuffered(j, t0, t1, p0, p1);
        return;
    }
    for (int k0 = 0; k0 < j->g->k; k0 += CM_GEMM_KC) {
        const int kc = j->g->k - k0 < CM_GEMM_KC ? j->g->k - k0 : CM_GEMM_KC;
        pack_x(j, t0, t1, k0, kc, buf);
        gemm_block(j, t0, t1, k0, kc, p0, p1, buf);
    }
    cm_scratch_give(CM_SCRATCH_GEMM_PACK, buf);
}

/*
 * Split into tasks (a few per thread, so a descheduled thread's share is taken
 * by the other). With many rows, tasks are row blocks as tall as the packing
 * buffer, times one panel group per thread: a panel slice of the weights is
 * then fetched once per CM_GEMM_MC rows, not once per task's share of them
 * (thinner row blocks over all panels ran 10-20% slower at batch 8, measured
 * at M = 400 on Zen 5). With few rows (batch 1), tasks are panel groups of one
 * block, its x packed once by the caller (pack_shared).
 */
static void split(gemm_job *j, int threads)
{
    const long flops = (long)j->g->m * j->g->n * j->g->k;
    const int want = flops < 200000 || threads == 1 ? 1 : threads * 3;
    j->per_block = CM_GEMM_MC / j->mr;
    if (j->tiles >= 8 * threads && want > 1)
        j->groups = threads < j->panels ? threads : j->panels;
    else
        j->groups = want < j->panels ? want : j->panels;
    j->rblocks = (j->tiles + j->per_block - 1) / j->per_block;
}

/*
 * With one row block split over panel groups (batch 1), every task would copy the
 * same x: the caller packs all its K blocks once instead, before the tasks start
 * (six copies of a 50-row x were ~7% of a batch-1 GEMM).
 */
static void pack_shared(gemm_job *j)
{
    const cm_gemm_args *g = j->g;
    const int blocks = (g->k + CM_GEMM_KC - 1) / CM_GEMM_KC;
    float *buf =
        cm_scratch_take(CM_SCRATCH_GEMM_SHARED, (size_t)blocks * g->m * CM_GEMM_KC * sizeof *buf);
    if (!buf)
        return; /* each task packs its own copy */
    for (int k0 = 0; k0 < g->k; k0 += CM_GEMM_KC) {
        const int kc = g->k - k0 < CM_GEMM_KC ? g->k - k0 : CM_GEMM_KC;
        pack_x(j, 0, j->tiles, k0, kc, buf + (size_t)(k0 / CM_GEMM_KC) * g->m * CM_GEMM_KC);
    }
    j->shared = buf;
}

void cm_gemm_packed(const cm_gemm_args *g)
{
    const cm_gemm_isa isa = cm_gemm_isa_active();
    gemm_job j = {.g = g, .tile = cm_gemm_tile_scalar, .mr = CM_GEMM_MR_SCALAR};
    if (isa == CM_GEMM_AVX512) {
        j.tile = cm_gemm_tile_avx512;
        j.mr = CM_GEMM_MR_AVX512;
    } else if (isa == CM_GEMM_AVX2) {
        j.tile = cm_gemm_tile_avx2;
        j.mr = CM_GEMM_MR_AVX2;
    }
    if (g->m <= 0 || g->n <= 0)
        return;
    j.tiles = (g->m + j.mr - 1) / j.mr;
    j.panels = (g->n + CM_GEMM_NR - 1) / CM_GEMM_NR;
    split(&j, cm_pool_threads());
    if (j.rblocks == 1 && j.groups > 1)
        pack_shared(&j);
    cm_pool_run(gemm_task, &j, j.rblocks * j.groups);
    cm_scratch_give(CM_SCRATCH_GEMM_SHARED, (void *)j.shared);
}
