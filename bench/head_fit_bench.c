/*
 * head_fit_bench.c - how long `clipmod head train` takes to fit one head.
 *
 * Times head_fit_train (src/cli/head_fit.c: the C search by k-fold
 * cross-validation, the Platt calibration and the final fit, all with liblinear)
 * on N synthetic L2-normalised embeddings of D dimensions, random unit vectors,
 * labelled two ways:
 *   edge  the positives (10%) pushed along one direction, so the classes overlap
 *         as real categories do; the strongest regularisation wins (C = 0.25, the
 *         grid's first value), so the search fits the fewest C values;
 *   inner labels drawn from a logistic model along one random direction spread
 *         over every dimension (about a quarter positives); the out-of-fold AUC
 *         peaks inside the grid (C = 4), so the search fits two values more.
 * Prints one JSON line per set: wall and CPU seconds of the training (CPU time
 * says more than wall time on a busy machine). Run by hand (make bench-heads);
 * never part of the test suite.
 *
 * Usage: head_fit_bench [N [D [FOLDS]]]   (default 10000 512 5)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../src/cli/head_fit.h"

static double now(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A standard normal deviate (Box-Muller) from a fixed-seed generator. */
static double gauss(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    const double u = ((double)(*s >> 11) + 1.0) / 9007199254740993.0;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    const double v = (double)(*s >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Unit vectors with the edge set's labels: every tenth row, nudged along axis 0. */
static void make_edge(float *x, unsigned char *y, size_t n, size_t d)
{
    unsigned long long s = 1;
    for (size_t i = 0; i < n; i++) {
        double norm = 0;
        y[i] = i % 10 == 0;
        for (size_t j = 0; j < d; j++) {
            const double v = gauss(&s) / sqrt((double)d) + (y[i] && j == 0 ? 0.15 : 0.0);
            x[i * d + j] = (float)v;
            norm += v * v;
        }
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = (float)(x[i * d + j] / sqrt(norm));
    }
}

/* Unit vectors labelled by P(y = 1) = sigmoid(4 sqrt(D) u.x - 3) for a random unit u. */
static int make_inner(float *x, unsigned char *y, size_t n, size_t d)
{
    unsigned long long s = 2;
    double *u = malloc(d * sizeof *u), unorm = 0;
    if (!u)
        return -1;
    for (size_t j = 0; j < d; j++) {
        u[j] = gauss(&s);
        unorm += u[j] * u[j];
    }
    for (size_t i = 0; i < n; i++) {
        double norm = 0, dot = 0;
        for (size_t j = 0; j < d; j++) {
            const double v = gauss(&s);
            x[i * d + j] = (float)v;
            norm += v * v;
            dot += v * u[j];
        }
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = (float)(x[i * d + j] / sqrt(norm));
        const double z = 4.0 * sqrt((double)d) * dot / sqrt(norm * unorm) - 3.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        y[i] = (double)(s >> 11) / 9007199254740992.0 < 1.0 / (1.0 + exp(-z));
    }
    free(u);
    return 0;
}

/* Train once on the set and print its JSON line; 0 or -1. */
static int run(const char *set, const float *x, const unsigned char *y, size_t n, size_t d,
               int folds)
{
    head_fit_opts o = {folds, 1, head_fit_default_grid, head_fit_default_grid_len,
                       (int)sysconf(_SC_NPROCESSORS_ONLN)};
    char why[256];
    head_fit fit;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += y[i];
    const double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    if (head_fit_train(x, y, n, d, &o, &fit, why, sizeof why)) {
        fprintf(stderr, "head_fit_bench: %s set: %s\n", set, why);
        return -1;
    }
    const double t = now(CLOCK_MONOTONIC) - t0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("{\"set\":\"%s\",\"rows\":%zu,\"positives\":%zu,\"dim\":%zu,\"folds\":%d,"
           "\"threads\":%d,\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"c\":%g,\"cv_auc\":%.4f}\n",
           set, n, pos, d, folds, o.threads, t, cpu, fit.c, fit.cv_auc);
    head_fit_free(&fit);
    return 0;
}

int main(int argc, char **argv)
{
    const size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    const size_t d = argc > 2 ? strtoul(argv[2], NULL, 10) : 512;
    const int folds = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 5;
    float *x = malloc(n * d * sizeof *x);
    unsigned char *y = malloc(n);
    int rc = !x || !y;
    if (!rc) {
        make_edge(x, y, n, d);
        rc = run("edge", x, y, n, d, folds) != 0;
    }
    if (!rc)
        rc = make_inner(x, y, n, d) || run("inner", x, y, n, d, folds);
    free(x);
    free(y);
    return rc;
}
