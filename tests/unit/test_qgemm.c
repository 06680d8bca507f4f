/*
 * test_qgemm.c - every int8/bf16 kernel this CPU can run against naive references.
 *
 * Two references per product, both written here from the definitions in qgemm.h
 * and computed in double: the exact product of the quantised operands (per-channel
 * symmetric s8 weights, per-row u8 activations with a zero point; or both operands
 * rounded to bf16), which a kernel must match to float rounding whatever its tile
 * and panel layout, and the fp32 product, which it must approach within the
 * precision's quantisation noise. Errors are normalised by sum |x||w| per output
 * (ggml's test-backend-ops way), so thresholds hold for any k. Shapes are odd on
 * purpose (m 1..50 across the 12- and 6-row tiles, n not a multiple of 32 or 16, k
 * not a multiple of 4). Each kernel is forced through cm_qgemm_force; the ones this
 * CPU lacks are named on stderr as skipped.
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

#include "qgemm.h"

static uint32_t rng = 4242;

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

/* bf16 by truncation plus round-half-even, written independently of cm_bf16_from_float. */
static double to_bf16(float f)
{
    double d = f;
    int e;
    frexp(d, &e);
    const double ulp = ldexp(1.0, e - 8); /* 8 significant bits */
    return nearbyint(d / ulp) * ulp;
}

/* The quantised operands as qgemm.h defines them, dequantised into double. */
static void quantise_ref(const float *x, const float *w, int m, int n, int k, double *xr,
                         double *wr)
{
    for (int c = 0; c < n; c++) {
        float amax = 0.0f;
        for (int kk = 0; kk < k; kk++)
            amax = fmaxf(amax, fabsf(w[(size_t)c * k + kk]));
        const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
        for (int kk = 0; kk < k; kk++)
            wr[(size_t)c * k + kk] = (double)nearbyintf(w[(size_t)c * k + kk] / s) * s;
    }
    for (int i = 0; i < m; i++) {
        float lo = 0.0f, hi = 0.0f;
        for (int kk = 0; kk < k; kk++) {
            lo = fminf(lo, x[(size_t)i * k + kk]);
            hi = fmaxf(hi, x[(size_t)i * k + kk]);
        }
        const float s = hi > lo ? (hi - lo) / 255.0f : 1.0f, inv = 1.0f / s;
        const float z = nearbyintf(-lo * inv);
        for (int kk = 0; kk < k; kk++) {
            float q = nearbyintf(x[(size_t)i * k + kk] * inv) + z;
            q = fminf(fmaxf(q, 0.0f), 255.0f);
            xr[(size_t)i * k + kk] = ((double)q - z) * s;
        }
    }
}

typedef struct errs {
    double exact; /* against the product of the quantised operands */
    double fp32;  /* against the fp32 product */
} errs;

static errs check_one(clipmod_precision p, int m, int n, int k, int with_bias, int accumulate)
{
    float *x = randv((size_t)m * k), *w = randv((size_t)n * k), *b = randv((size_t)n);
    float *y = randv((size_t)m * n), *y0 = malloc((size_t)m * n * sizeof *y0);
    double *xr = malloc((size_t)m * k * sizeof *xr), *wr = malloc((size_t)n * k * sizeof *wr);
    memcpy(y0, y, (size_t)m * n * sizeof *y);
    if (p == CLIPMOD_PRECISION_INT8) {
        quantise_ref(x, w, m, n, k, xr, wr);
    } else {
        for (size_t i = 0; i < (size_t)m * k; i++)
            xr[i] = to_bf16(x[i]);
        for (size_t i = 0; i < (size_t)n * k; i++)
            wr[i] = to_bf16(w[i]);
    }
    cm_qmat q;
    assert_int_equal(cm_qmat_init(&q, p, w, n, k), CLIPMOD_OK);
    assert_int_equal(cm_qgemm(&q, x, m, with_bias ? b : NULL, accumulate, CM_GEMM_ACT_NONE, y),
                     CLIPMOD_OK);
    errs e = {0, 0};
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ex = 0.0, fp = 0.0, norm = 0.0;
            for (int kk = 0; kk < k; kk++) {
                ex += xr[(size_t)i * k + kk] * wr[(size_t)j * k + kk];
                fp += (double)x[(size_t)i * k + kk] * w[(size_t)j * k + kk];
                norm += fabs((double)x[(size_t)i * k + kk] * w[(size_t)j * k + kk]);
            }
            const double add =
                (with_bias ? b[j] : 0.0) + (accumulate ? y0[(size_t)i * n + j] : 0.0);
            norm += fabs(with_bias ? b[j] : 0.0) + fabs(accumulate ? y0[(size_t)i * n + j] : 0.0);
            const double got = y[(size_t)i * n + j];
            e.exact = fmax(e.exact, fabs(got - (ex + add)) / (norm + 1e-30));
            e.fp32 = fmax(e.fp32, fabs(got - (fp + add)) / (norm + 1e-30));
        }
    cm_qmat_free(&q);
    free(x), free(w), free(b), free(y), free(y0), free(xr), free(wr);
    return e;
}

static void run_shapes(cm_qisa isa, clipmod_precision p)
{
    static const int shapes[][3] = {{1, 32, 4},    {1, 7, 1},    {2, 33, 3},
                                    {7, 96, 5},    {12, 64, 64}, {13, 48, 100},
                                    {50, 100, 77}, {6, 17, 768}, {25, 40, 3072}};
    /* Quantisation noise of uniform operands, normalised: int8 ~1/255 per term. */
    const double fp32_tol = p == CLIPMOD_PRECISION_INT8 ? 2e-2 : 8e-3;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int v = 0; v < 4; v++) {
            const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            const errs e = check_one(p, m, n, k, v & 1, v >> 1);
            /* Below k = 64 the noise of a few terms does not average out: exact only. */
            if (e.exact > 1e-4 || (k >= 64 && e.fp32 > fp32_tol))
                fail_msg("%s/%s m=%d n=%d k=%d bias=%d acc=%d: error %.3g exact, %.3g fp32",
                         cm_qgemm_isa_name(isa), clipmod_precision_name(p), m, n, k, v & 1, v >> 1,
                         e.exact, e.fp32);
        }
}

/*
 * The activation fused into each kernel's store equals the same kernel's output
 * activated afterwards by the portable code (QuickGELU and GELU, at a tile edge).
 */
static void check_act(cm_qisa isa, clipmod_precision p)
{
    const int m = 13, n = 40, k = 96;
    float *x = randv((size_t)m * k), *w = randv((size_t)n * k), *b = randv((size_t)n);
    float *want = malloc((size_t)m * n * sizeof *want), *got = malloc((size_t)m * n * sizeof *got);
    cm_qmat q;
    assert_int_equal(cm_qmat_init(&q, p, w, n, k), CLIPMOD_OK);
    const cm_gemm_act acts[] = {CM_GEMM_ACT_QUICK_GELU, CM_GEMM_ACT_GELU};
    for (int a = 0; a < 2; a++) {
        assert_int_equal(cm_qgemm(&q, x, m, b, 0, CM_GEMM_ACT_NONE, want), CLIPMOD_OK);
        cm_gemm_act_scalar(want, m * n, acts[a]);
        assert_int_equal(cm_qgemm(&q, x, m, b, 0, acts[a], got), CLIPMOD_OK);
        for (int i = 0; i < m * n; i++)
            if (fabsf(got[i] - want[i]) > 1e-5f * (1.0f + fabsf(want[i])))
                fail_msg("%s/%s act %d: element %d is %g, want %g", cm_qgemm_isa_name(isa),
                         clipmod_precision_name(p), (int)acts[a], i, got[i], want[i]);
    }
    cm_qmat_free(&q);
    free(x), free(w), free(b), free(want), free(got);
}

static void test_every_kernel(void **state)
{
    (void)state;
    int ran = 0;
    for (int i = CM_QISA_SCALAR; i < CM_QISA__COUNT; i++) {
        if (!cm_qgemm_isa_supported((cm_qisa)i)) {
            fprintf(stderr, "# skipped: %s (this CPU lacks it)\n", cm_qgemm_isa_name((cm_qisa)i));
            continue;
        }
        cm_qgemm_force((cm_qisa)i);
        for (int p = CLIPMOD_PRECISION_INT8; p <= CLIPMOD_PRECISION_BF16; p++)
            if (cm_qgemm_isa_fits((cm_qisa)i, (clipmod_precision)p)) {
                assert_int_equal(cm_qgemm_isa((clipmod_precision)p), i);
                run_shapes((cm_qisa)i, (clipmod_precision)p);
                check_act((cm_qisa)i, (clipmod_precision)p);
                fprintf(stderr, "# ran: %s %s\n", cm_qgemm_isa_name((cm_qisa)i),
                        clipmod_precision_name((clipmod_precision)p));
                ran++;
            }
    }
    cm_qgemm_force(CM_QISA_AUTO);
    assert_true(ran >= 2); /* the portable kernel runs both precisions everywhere */
}

/* The AVX-512 activation quantiser must produce the portable one's bytes exactly. */
static void test_quant_rows_agree(void **state)
{
    (void)state;
    if (!cm_qgemm_isa_supported(CM_QISA_AVX512VNNI)) {
        fprintf(stderr, "# skipped: avx512 activation quantiser (this CPU lacks it)\n");
        skip();
    }
    const int m = 9, k = 771, kp = 772;
    float *x = randv((size_t)m * k);
    x[5] = 40.0f; /* an outlier stretches row 0's range */
    for (int kk = 0; kk < k; kk++)
        x[(size_t)3 * k + kk] = fabsf(x[(size_t)3 * k + kk]); /* all >= 0: zero point 0 */
    uint8_t a[9 * 772], b[9 * 772];
    float sa[9], sb[9];
    int32_t za[9], zb[9];
    cm_qquant_rows(x, k, kp, 0, m, a, sa, za);
    cm_qquant_rows_avx512(x, k, kp, 0, m, b, sb, zb);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(sa, sb, sizeof sa);
    assert_memory_equal(za, zb, sizeof za);
    assert_int_equal(za[3], 0);
    free(x);
}

/* The vector bf16 conversions must round as the portable ones (normal numbers). */
static void test_bf16_rows_agree(void **state)
{
    (void)state;
    if (!cm_qgemm_isa_supported(CM_QISA_AVX512BF16)) {
        fprintf(stderr, "# skipped: avx512 bf16 conversion (this CPU lacks it)\n");
        skip();
    }
    const int m = 5, k = 77, kp = 78;
    float *x = randv((size_t)m * k);
    x[3] = 1.0f + 0x1p-8f; /* a tie: to even */
    x[4] = -1.0f - 0x1p-8f - 0x1p-20f;
    uint16_t a[5 * 78], b[5 * 78];
    memset(a, 0xff, sizeof a);
    memset(b, 0xee, sizeof b);
    cm_qbf16_rows(x, k, kp, 0, m, a);
    cm_qbf16_rows_avx512(x, k, kp, 0, m, b);
    assert_memory_equal(a, b, sizeof a);
    /* The widened kernel's activations: the same values, kept as floats. */
    float fa[5 * 78], fb[5 * 78];
    memset(fa, 0xff, sizeof fa);
    memset(fb, 0xee, sizeof fb);
    cm_qbf16f_rows(x, k, kp, 0, m, fa);
    cm_qbf16f_rows_avx512(x, k, kp, 0, m, fb);
    assert_memory_equal(fa, fb, sizeof fa);
    for (int i = 0; i < m * kp; i++)
        assert_true(fa[i] == cm_bf16_to_float(a[i]));
    free(x);
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    assert_int_equal(cm_bf16_from_float(1.0f), 0x3f80);
    /* 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties go to even (1). */
    assert_int_equal(cm_bf16_from_float(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(cm_bf16_from_float(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    assert_true(isnan(cm_bf16_to_float(cm_bf16_from_float(NAN))));
    assert_true(cm_bf16_to_float(cm_bf16_from_float(-3.0f)) == -3.0f);
}

static void test_precision_names(void **state)
{
    (void)state;
    clipmod_precision p = CLIPMOD_PRECISION_FP32;
    assert_int_equal(clipmod_precision_parse("int8", &p), CLIPMOD_OK);
    assert_int_equal(p, CLIPMOD_PRECISION_INT8);
    assert_int_equal(clipmod_precision_parse("bf16", &p), CLIPMOD_OK);
    assert_int_equal(p, CLIPMOD_PRECISION_BF16);
    assert_int_equal(clipmod_precision_parse("INT8", &p), CLIPMOD_E_INVALID_ARG);
    assert_int_equal(clipmod_precision_parse("fp16", &p), CLIPMOD_E_INVALID_ARG);
    assert_string_equal(clipmod_precision_name(CLIPMOD_PRECISION_FP32), "fp32");
    assert_int_equal(cm_qgemm_check(CLIPMOD_PRECISION_FP32, NULL), CLIPMOD_OK);
    assert_false(cm_qgemm_isa_fits(CM_QISA_AVX512BF16, CLIPMOD_PRECISION_INT8));
    assert_false(cm_qgemm_isa_fits(CM_QISA_AVX512VNNI, CLIPMOD_PRECISION_BF16));
}

/* A precision whose kernels the CPU lacks is refused with the feature named. */
static void test_refusal_names_feature(void **state)
{
    (void)state;
    char err[CLIPMOD_ERROR_SIZE] = "";
    /* Forcing the bf16 kernel leaves int8 with none: what a CPU without VNNI sees. */
    cm_qgemm_force(CM_QISA_AVX512BF16);
    assert_int_equal(cm_qgemm_check(CLIPMOD_PRECISION_INT8, err), CLIPMOD_E_UNSUPPORTED);
    assert_non_null(strstr(err, "int8"));
    assert_non_null(strstr(err, "avx512_vnni"));
    cm_qgemm_force(CM_QISA_AVX512VNNI);
    assert_int_equal(cm_qgemm_check(CLIPMOD_PRECISION_BF16, err), CLIPMOD_E_UNSUPPORTED);
    assert_non_null(strstr(err, "bf16"));
    assert_non_null(strstr(err, "avx512_bf16"));
    cm_qgemm_force(CM_QISA_AUTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kernel),    cmocka_unit_test(test_quant_rows_agree),
        cmocka_unit_test(test_bf16_rows_agree), cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_precision_names), cmocka_unit_test(test_refusal_names_feature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
