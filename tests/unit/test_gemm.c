/*
 * test_gemm.c - every GEMM kernel this CPU can run against a double-precision reference.
 *
 * As ggml's test-backend-ops does, each ISA path (forced through cm_gemm_force) is
 * compared with a naive double loop written from the definition, over shapes that
 * are not multiples of the 12x32 / 6x16 tiles (1, 7, 33, 50 ...) and the real
 * ViT-B widths (768, 2304, 3072), with bias, without, and accumulating. The error
 * is normalised by sum |x||w| per output, so the threshold holds for any K.
 * Paths the CPU lacks are reported as skipped on stderr.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gemm.h"
#include "pool.h"

static uint32_t rng = 777;

static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) / 16777216.0 * 2.0 - 1.0);
}

static float *randv(size_t n)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand();
    return v;
}

/* Worst |y - ref| / (sum |x||w| + |b| + |y0|) over all outputs. */
static double act_ref(double v, cm_gemm_act act)
{
    if (act == CM_GEMM_ACT_QUICK_GELU)
        return v / (1.0 + exp(-1.702 * v));
    if (act == CM_GEMM_ACT_GELU)
        return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    return v;
}

/* As check_one, with the activation fused into the store (its slope is <= 1.13). */
static double check_act(int m, int n, int k, int with_bias, int accumulate, cm_gemm_act act)
{
    float *x = randv((size_t)m * k), *w = randv((size_t)n * k), *b = randv((size_t)n);
    float *y = randv((size_t)m * n), *y0 = malloc((size_t)m * n * sizeof *y0);
    float *p = malloc(cm_gemm_packed_floats(n, k) * sizeof *p);
    memcpy(y0, y, (size_t)m * n * sizeof *y);
    cm_gemm_pack(w, n, k, p);
    const cm_gemm_args g = {.x = x,
                            .m = m,
                            .k = k,
                            .n = n,
                            .p = p,
                            .bias = with_bias ? b : NULL,
                            .accumulate = accumulate,
                            .act = act,
                            .y = y};
    cm_gemm_packed(&g);
    double worst = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0.0, mag = 0.0;
            for (int kk = 0; kk < k; kk++) {
                const double t = (double)x[(size_t)i * k + kk] * w[(size_t)j * k + kk];
                ref += t;
                mag += fabs(t);
            }
            if (with_bias) {
                ref += b[j];
                mag += fabs(b[j]);
            }
            if (accumulate) {
                ref += y0[(size_t)i * n + j];
                mag += fabs(y0[(size_t)i * n + j]);
            }
            const double e = fabs(y[(size_t)i * n + j] - act_ref(ref, act)) / (mag + 1e-30);
            worst = e > worst ? e : worst;
        }
    free(x), free(w), free(b), free(y), free(y0), free(p);
    return worst;
}

static double check_one(int m, int n, int k, int with_bias, int accumulate)
{
    return check_act(m, n, k, with_bias, accumulate, CM_GEMM_ACT_NONE);
}

/*
 * Shapes at the edges of the blocking: one row, 13 rows (a 12-row tile and a
 * 1-row one, or 7 + 6), k = 1, k one past a K block or several blocks plus a
 * remainder, n not a multiple of 32 or of 16, and 150 or 400 rows (row blocks
 * as tasks), each with an activation fused or not.
 */
static const int odd[][3] = {{1, 1, 1},      {13, 40, 257}, {13, 31, 1},   {1, 100, 513},
                             {150, 96, 300}, {400, 72, 64}, {25, 17, 769}, {12, 33, 256}};

static void run_odd(cm_gemm_isa isa)
{
    for (int threads = 1; threads <= 2; threads++) {
        cm_pool_set_threads(threads);
        for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
            for (int act = CM_GEMM_ACT_NONE; act <= CM_GEMM_ACT_GELU; act++) {
                const int m = odd[i][0], n = odd[i][1], k = odd[i][2];
                const double e = check_act(m, n, k, (int)(i + act) % 2, act == 1, act);
                if (e > 1e-5)
                    fail_msg("%s m=%d n=%d k=%d act=%d threads=%d: normalised error %g",
                             cm_gemm_isa_name(isa), m, n, k, act, threads, e);
            }
    }
    cm_pool_set_threads(2);
}

static const int small[] = {1, 7, 33, 50};
static const int wide[] = {1, 7, 33, 50, 64, 768};

static void run_shapes(cm_gemm_isa isa)
{
    if (!cm_gemm_isa_supported(isa)) {
        fprintf(stderr, "test_gemm: %s kernel skipped: this CPU lacks it\n", cm_gemm_isa_name(isa));
        return;
    }
    cm_gemm_force(isa);
    for (size_t a = 0; a < sizeof small / sizeof *small; a++)
        for (size_t b = 0; b < sizeof wide / sizeof *wide; b++)
            for (size_t c = 0; c < sizeof wide / sizeof *wide; c++) {
                const int m = small[a], n = wide[b], k = wide[c];
                const double e = check_one(m, n, k, (m + n) % 2, (n + k) % 3 == 0);
                if (e > 1e-5)
                    fail_msg("%s m=%d n=%d k=%d: normalised error %g", cm_gemm_isa_name(isa), m, n,
                             k, e);
            }
    /* ViT-B/32's real products at batch 1 and 8: qkv, fc1, fc2. */
    static const int big[][3] = {
        {50, 2304, 768}, {50, 3072, 768}, {50, 768, 3072}, {400, 768, 768}, {33, 3072, 3072}};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        if (isa == CM_GEMM_SCALAR && big[i][0] > 50)
            continue; /* the portable loop is checked on the smaller ones; keep the test fast */
        const double e = check_one(big[i][0], big[i][1], big[i][2], 1, i % 2);
        if (e > 1e-5)
            fail_msg("%s m=%d n=%d k=%d: normalised error %g", cm_gemm_isa_name(isa), big[i][0],
                     big[i][1], big[i][2], e);
    }
    run_odd(isa);
    fprintf(stderr, "test_gemm: %s kernel checked\n", cm_gemm_isa_name(isa));
    cm_gemm_force(CM_GEMM_AUTO);
}

static void scalar_kernel(void **state)
{
    (void)state;
    run_shapes(CM_GEMM_SCALAR);
}

static void avx2_kernel(void **state)
{
    (void)state;
    run_shapes(CM_GEMM_AVX2);
}

static void avx512_kernel(void **state)
{
    (void)state;
    run_shapes(CM_GEMM_AVX512);
}

/* In-place packing must give exactly what packing into a new buffer gives. */
static void pack_inplace_matches(void **state)
{
    (void)state;
    const int n = 64, k = 33;
    float *w = randv((size_t)n * k), *p = malloc(cm_gemm_packed_floats(n, k) * sizeof *p);
    float *tmp = malloc((size_t)CM_GEMM_NR * k * sizeof *tmp);
    cm_gemm_pack(w, n, k, p);
    assert_int_equal(cm_gemm_pack_inplace(w, n, k, tmp), 0);
    assert_memory_equal(w, p, (size_t)n * k * sizeof *w);
    assert_int_equal(cm_gemm_pack_inplace(w, 50, k, tmp), -1); /* not whole panels */
    free(w), free(p), free(tmp);
}

/* The pool runs every task exactly once, however many threads. */
static void count_task(void *ctx, int t)
{
    __atomic_fetch_add(&((int *)ctx)[t], 1, __ATOMIC_RELAXED);
}

static void pool_runs_each_task_once(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        cm_pool_set_threads(threads);
        for (int rep = 0; rep < 50; rep++) {
            int hits[37] = {0};
            cm_pool_run(count_task, hits, 37);
            for (int t = 0; t < 37; t++)
                assert_int_equal(hits[t], 1);
        }
    }
    cm_pool_set_threads(2);
}

int main(void)
{
    cm_pool_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pack_inplace_matches), cmocka_unit_test(pool_runs_each_task_once),
        cmocka_unit_test(scalar_kernel),        cmocka_unit_test(avx2_kernel),
        cmocka_unit_test(avx512_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
