/*
 * test_ops.c - the transformer kernels against naive double-precision loops.
 *
 * The naive versions here are written straight from the definitions (LayerNorm,
 * attention with and without the causal mask, QuickGELU, GELU), independently of
 * ops.c, on seeded random inputs. cm_linear_rows is checked for what it promises
 * beyond the value: a row's result is bit-for-bit the same whatever the batch.
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
#include "ops.h"
#include "pool.h"

static uint32_t rng = 12345;

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

static void linear_matches_naive(void **state)
{
    const int m = 7, in = 33, out = 19;
    float *x = randv((size_t)m * in), *w = randv((size_t)out * in), *b = randv(out);
    float *y = malloc((size_t)m * out * sizeof *y), *acc = randv((size_t)m * out);
    float *acc0 = malloc((size_t)m * out * sizeof *acc0);
    for (int i = 0; i < m * out; i++)
        acc0[i] = acc[i];
    cm_linear(x, m, in, w, b, out, y);
    cm_linear_acc(x, m, in, w, b, out, acc);
    for (int i = 0; i < m; i++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int k = 0; k < in; k++)
                s += (double)x[i * in + k] * w[o * in + k];
            assert_true(fabs(y[i * out + o] - s) < 1e-5);
            assert_true(fabs(acc[i * out + o] - (acc0[i * out + o] + s)) < 1e-5);
        }
    free(x), free(w), free(b), free(y), free(acc), free(acc0);
}

static void layernorm_matches_naive(void **state)
{
    const int m = 5, d = 64;
    float *x = randv((size_t)m * d), *g = randv(d), *b = randv(d);
    float *y = malloc((size_t)m * d * sizeof *y);
    for (int i = 0; i < d; i++)
        x[i] += 100.0f; /* a large mean must not cost precision */
    cm_layernorm(x, m, d, g, b, 1e-5f, y);
    for (int i = 0; i < m; i++) {
        double mu = 0, var = 0;
        for (int j = 0; j < d; j++)
            mu += x[i * d + j];
        mu /= d;
        for (int j = 0; j < d; j++)
            var += (x[i * d + j] - mu) * (x[i * d + j] - mu);
        var /= d;
        for (int j = 0; j < d; j++) {
            double want = (x[i * d + j] - mu) / sqrt(var + 1e-5) * g[j] + b[j];
            assert_true(fabs(y[i * d + j] - want) < 1e-4);
        }
    }
    free(x), free(g), free(b), free(y);
}

/* Naive multi-head attention over qkv [t, 3d]. */
static void naive_attention(const float *qkv, int t, int d, int heads, int causal, double *out)
{
    const int hd = d / heads;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < t; i++) {
            double s[128], mx = -INFINITY, sum = 0;
            const int n = causal ? i + 1 : t;
            for (int j = 0; j < n; j++) {
                double dot = 0;
                for (int k = 0; k < hd; k++)
                    dot += (double)qkv[i * 3 * d + h * hd + k] * qkv[j * 3 * d + d + h * hd + k];
                s[j] = dot / sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < n; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (int k = 0; k < hd; k++) {
                double o = 0;
                for (int j = 0; j < n; j++)
                    o += s[j] / sum * qkv[j * 3 * d + 2 * d + h * hd + k];
                out[i * d + h * hd + k] = o;
            }
        }
}

static void attention_matches_naive(void **state)
{
    const int t = 9, d = 48, heads = 3;
    float *qkv = randv((size_t)t * 3 * d), *out = malloc((size_t)t * d * sizeof *out);
    float *scores = malloc(cm_attention_scratch_floats(t, d, heads) * sizeof *scores);
    double want[9 * 48];
    for (int causal = 0; causal < 2; causal++) {
        cm_attention(qkv, t, d, heads, causal, scores, out);
        naive_attention(qkv, t, d, heads, causal, want);
        for (int i = 0; i < t * d; i++)
            assert_true(fabs(out[i] - want[i]) < 1e-5);
    }
    /* Causal: the first token attends only to itself, so its output is its value. */
    for (int k = 0; k < d; k++)
        assert_true(fabs(out[k] - qkv[2 * d + k]) < 1e-6);
    free(qkv), free(out), free(scores);
}

/*
 * Packed sequences of different lengths at real head widths (64, 80), every query row
 * and then one query row per sequence (the last block's pooled rows), with and
 * without the mask, on our kernels and on the OpenBLAS reference path.
 */
static void check_seqs(int causal, int D, int HEADS)
{
    enum { N = 3, MAXT = 77 };
    const int len[N] = {50, 7, 77}, start[N] = {0, 50, 57}, rows = 134;
    const int qrow[N] = {0, 6, 76};
    float *qkv = randv((size_t)rows * 3 * D), *out = malloc((size_t)rows * D * sizeof *out);
    float *scratch =
        malloc((size_t)N * HEADS * cm_attention_scratch_floats(MAXT, D, HEADS) * sizeof *scratch);
    double *want = malloc((size_t)MAXT * D * sizeof *want);
    cm_attention_seqs(qkv, start, len, NULL, N, MAXT, D, HEADS, causal, scratch, out);
    for (int s = 0; s < N; s++) {
        naive_attention(qkv + (size_t)start[s] * 3 * D, len[s], D, HEADS, causal, want);
        for (int i = 0; i < len[s] * D; i++)
            assert_true(fabs(out[(size_t)start[s] * D + i] - want[i]) < 1e-5);
    }
    cm_attention_seqs(qkv, start, len, qrow, N, MAXT, D, HEADS, causal, scratch, out);
    for (int s = 0; s < N; s++) {
        naive_attention(qkv + (size_t)start[s] * 3 * D, len[s], D, HEADS, causal, want);
        for (int c = 0; c < D; c++)
            assert_true(fabs(out[(size_t)s * D + c] - want[(size_t)qrow[s] * D + c]) < 1e-5);
    }
    free(qkv), free(out), free(scratch), free(want);
}

static void attention_seqs_match_naive(void **state)
{
    (void)state;
    cm_pool_set_threads(2);
    /* Every path this CPU runs: the AVX-512 block kernel, attend_row's clones, OpenBLAS. */
    const cm_gemm_isa paths[] = {CM_GEMM_AVX512, CM_GEMM_AVX2, CM_GEMM_SCALAR, CM_GEMM_OPENBLAS};
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        if (!cm_gemm_isa_supported(paths[p])) {
            printf("note: attention on %s skipped: this CPU lacks it\n",
                   cm_gemm_isa_name(paths[p]));
            continue;
        }
        cm_gemm_force(paths[p]);
        check_seqs(0, 128, 2);
        check_seqs(1, 128, 2);
        check_seqs(0, 160, 2); /* head width 80 (ViT-H): a partial column chunk */
    }
    cm_gemm_force(CM_GEMM_AUTO);
}

static void activations(void **state)
{
    float x[4] = {-3.0f, -0.5f, 0.0f, 2.0f}, g[4] = {-3.0f, -0.5f, 0.0f, 2.0f};
    cm_activate(x, 4, CM_ACT_QUICK_GELU);
    cm_activate(g, 4, CM_ACT_GELU);
    for (int i = 0; i < 4; i++) {
        double v = i == 0 ? -3.0 : i == 1 ? -0.5 : i == 2 ? 0.0 : 2.0;
        assert_true(fabs(x[i] - v / (1.0 + exp(-1.702 * v))) < 1e-6);
        assert_true(fabs(g[i] - 0.5 * v * (1.0 + erf(v / sqrt(2.0)))) < 1e-6);
    }
}

static void l2_normalize(void **state)
{
    float v[6] = {3, 4, 0, 0, 0, 0};
    cm_l2_normalize(v, 2, 3);
    assert_true(fabsf(v[0] - 0.6f) < 1e-7f && fabsf(v[1] - 0.8f) < 1e-7f);
    assert_true(v[3] == 0.0f); /* a zero row stays zero, no NaN */
}

/*
 * cm_linear_rows at m = 1, 2, 3, 5, 12, 13, 40 equals the first m rows of the same
 * call at m = 64, bit for bit: packed through every cm_gemm kernel this CPU has,
 * on one thread and two, and plain (OpenBLAS). A projection of 192 -> 128 and
 * scores of 512 against 70 prompts, the demo model's and ViT-B's shapes.
 */
static void rows_independent_of_batch_one(int in, int out, int packed, cm_gemm_isa isa)
{
    static const int ms[] = {1, 2, 3, 5, 12, 13, 40};
    const int big = 64;
    float *x = randv((size_t)big * in), *w = randv((size_t)out * in);
    float *all = malloc((size_t)big * out * sizeof *all),
          *some = malloc((size_t)big * out * sizeof *some);
    float *tmp = malloc((size_t)CM_GEMM_NR * in * sizeof *tmp);
    if (packed)
        assert_int_equal(cm_gemm_pack_inplace(w, out, in, tmp), 0);
    for (int threads = 1; threads <= 2; threads++) {
        cm_pool_set_threads(threads);
        cm_linear_rows(x, big, in, w, packed, out, all);
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
            cm_linear_rows(x, ms[i], in, w, packed, out, some);
            if (memcmp(all, some, (size_t)ms[i] * out * sizeof *all))
                fail_msg("%s in=%d out=%d: rows at m=%d differ from m=%d",
                         packed ? cm_gemm_isa_name(isa) : "openblas", in, out, ms[i], big);
        }
    }
    free(x), free(w), free(all), free(some), free(tmp);
}

static void linear_rows_independent_of_batch(void **state)
{
    (void)state;
    static const cm_gemm_isa isas[] = {CM_GEMM_SCALAR, CM_GEMM_AVX2, CM_GEMM_AVX512};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!cm_gemm_isa_supported(isas[i]))
            continue; /* this CPU lacks it (test_gemm says so) */
        cm_gemm_force(isas[i]);
        rows_independent_of_batch_one(192, 128, 1, isas[i]);
        rows_independent_of_batch_one(768, 512, 1, isas[i]);
    }
    cm_gemm_force(CM_GEMM_AUTO);
    rows_independent_of_batch_one(192, 128, 0, CM_GEMM_AUTO);
    rows_independent_of_batch_one(512, 70, 0, CM_GEMM_AUTO);
    cm_pool_set_threads(2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_matches_naive),
        cmocka_unit_test(layernorm_matches_naive),
        cmocka_unit_test(attention_matches_naive),
        cmocka_unit_test(attention_seqs_match_naive),
        cmocka_unit_test(activations),
        cmocka_unit_test(l2_normalize),
        cmocka_unit_test(linear_rows_independent_of_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
