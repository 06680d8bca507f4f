/*
 * test_head_fit.c - the training of a learned head (src/cli/head_fit.c).
 *
 * On a small synthetic set whose out-of-fold AUC peaks inside the C grid (so the
 * search runs past its first window of grid values):
 *  1. the result does not depend on the number of threads (bit for bit);
 *  2. the chosen C is the one the stopping rule picks from each C's own
 *     cross-validation (a one-value grid, fitted cold), and its AUC agrees;
 *  3. the head's weights are liblinear's optimum: the gradient of the weighted
 *     objective, computed here, is small next to its value at w = 0.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "head_fit.h"

enum { N = 500, D = 64, FOLDS = 5 };

static float x[N * D];
static unsigned char y[N];

/* A standard normal deviate (Box-Muller) from a fixed-seed generator. */
static double gauss(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    const double u = ((double)(*s >> 11) + 1.0) / 9007199254740993.0;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    const double v = (double)(*s >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Unit vectors, half of them positives nudged along four axes: a weak signal, so
 * that loosening the regularisation helps up to a point (C = 4 here). */
static int make_set(void **state)
{
    unsigned long long s = 1;
    (void)state;
    for (size_t i = 0; i < N; i++) {
        double norm = 0;
        y[i] = i % 2 == 0;
        for (size_t j = 0; j < D; j++) {
            const double v = gauss(&s) / sqrt((double)D) + (y[i] && j < 4 ? 0.05 : 0.0);
            x[i * D + j] = (float)v;
            norm += v * v;
        }
        for (size_t j = 0; j < D; j++)
            x[i * D + j] = (float)(x[i * D + j] / sqrt(norm));
    }
    return 0;
}

static void train(const double *grid, size_t n_grid, int threads, head_fit *f)
{
    head_fit_opts o = {FOLDS, 1, grid, n_grid, threads};
    char why[256] = "";
    const int rc = head_fit_train(x, y, N, D, &o, f, why, sizeof why);
    if (rc)
        fail_msg("head_fit_train: %s", why);
}

static void test_threads(void **state)
{
    head_fit one, f;
    (void)state;
    train(head_fit_default_grid, head_fit_default_grid_len, 1, &one);
    const int threads[] = {2, 3, 8};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        train(head_fit_default_grid, head_fit_default_grid_len, threads[t], &f);
        assert_true(f.c == one.c && f.cv_auc == one.cv_auc && f.bias == one.bias);
        assert_true(f.cal_slope == one.cal_slope && f.cal_offset == one.cal_offset);
        assert_memory_equal(f.w, one.w, D * sizeof *f.w);
        assert_memory_equal(f.oof, one.oof, N * sizeof *f.oof);
        head_fit_free(&f);
    }
    head_fit_free(&one);
}

static void test_rule(void **state)
{
    double auc[16];
    size_t best = 0, worse = 0, g;
    head_fit f;
    (void)state;
    /* Each C on its own, then the rule: the best so far, stop after one miss. */
    for (g = 0; g < head_fit_default_grid_len && worse < 1; g++) {
        train(&head_fit_default_grid[g], 1, 2, &f);
        auc[g] = f.cv_auc;
        head_fit_free(&f);
        if (g == 0 || auc[g] > auc[best] + 1e-9) {
            best = g;
            worse = 0;
        } else {
            worse++;
        }
    }
    assert_true(best >= 2); /* the data make the search go past its first window */
    train(head_fit_default_grid, head_fit_default_grid_len, 2, &f);
    assert_true(f.c == head_fit_default_grid[best]);
    /* Warm and cold starts stop at slightly different points: close, not equal. */
    assert_true(fabs(f.cv_auc - auc[best]) < 1e-3);
    head_fit_free(&f);
}

/* |gradient| / |gradient at 0| of sum_i C_i log(1 + exp(-y_i w.x_i)) + |w|^2 / 2,
 * x with a bias feature of 1 and classes weighted as head_fit.c does. */
static double relative_gradient(const head_fit *f)
{
    double g[D + 1], g0[D + 1], w[D + 1], pos = 0, num = 0, den = 0;
    for (size_t i = 0; i < N; i++)
        pos += y[i] != 0;
    for (size_t j = 0; j < D; j++)
        w[j] = f->w[j];
    w[D] = f->bias;
    memcpy(g, w, sizeof g);
    memset(g0, 0, sizeof g0);
    for (size_t i = 0; i < N; i++) {
        const double s = y[i] ? 1.0 : -1.0;
        const double ci = f->c * N / (2.0 * (y[i] ? pos : N - pos));
        double m = w[D];
        for (size_t j = 0; j < D; j++)
            m += w[j] * x[i * D + j];
        const double k = ci * s / (1.0 + exp(s * m)), k0 = ci * s * 0.5;
        for (size_t j = 0; j <= D; j++) {
            const double xj = j < D ? x[i * D + j] : 1.0;
            g[j] -= k * xj;
            g0[j] -= k0 * xj;
        }
    }
    for (size_t j = 0; j <= D; j++) {
        num += g[j] * g[j];
        den += g0[j] * g0[j];
    }
    return sqrt(num / den);
}

static void test_optimum(void **state)
{
    head_fit f;
    (void)state;
    train(head_fit_default_grid, head_fit_default_grid_len, 2, &f);
    /* liblinear stops the head's fit at 0.001 x 0.5 (the smaller class's share). */
    assert_true(relative_gradient(&f) < 1e-3);
    head_fit_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_optimum),
    };
    return cmocka_run_group_tests(tests, make_set, NULL);
}
