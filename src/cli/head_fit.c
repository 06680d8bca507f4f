/*
 * head_fit.c - cross-validated, calibrated logistic regression with liblinear.
 *
 * Owns the training of one head: the liblinear problem built once over the rows
 * (dense features plus liblinear's bias feature), stratified fold assignment, the
 * C search on out-of-fold ROC AUC, Platt scaling on the out-of-fold decision
 * values, and the final fit on every row. liblinear orders its classes by first
 * appearance; decision values are turned to "positive is larger" here, once.
 */
#include <linear.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head_fit.h"
#include "metrics.h"

const double head_fit_default_grid[] = {0.25, 1, 4, 16, 64, 256, 1024, 4096, 16384};
const size_t head_fit_default_grid_len = sizeof head_fit_default_grid / sizeof(double);

static void quiet(const char *s)
{
    (void)s; /* liblinear's progress lines are not for moderators */
}

/* The rows as liblinear wants them: each row's features, then bias, then -1. */
typedef struct rows {
    struct feature_node *nodes;
    struct feature_node **x;
    double *y; /* +1 / -1 */
    size_t n, dim;
} rows;

static int rows_build(rows *r, const float *x, const unsigned char *y, size_t n, size_t dim)
{
    r->n = n;
    r->dim = dim;
    r->nodes = malloc(n * (dim + 2) * sizeof *r->nodes);
    r->x = malloc(n * sizeof *r->x);
    r->y = malloc(n * sizeof *r->y);
    if (!r->nodes || !r->x || !r->y)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct feature_node *f = r->nodes + i * (dim + 2);
        for (size_t j = 0; j < dim; j++)
            f[j] = (struct feature_node){(int)j + 1, x[i * dim + j]};
        f[dim] = (struct feature_node){(int)dim + 1, 1.0}; /* liblinear's bias feature */
        f[dim + 1] = (struct feature_node){-1, 0.0};
        r->x[i] = f;
        r->y[i] = y[i] ? 1.0 : -1.0;
    }
    return 0;
}

static void rows_free(rows *r)
{
    free(r->nodes);
    free(r->x);
    free(r->y);
}

/*
 * Train on the rows whose fold is not `skip` (-1: all rows), weighting classes,
 * starting from `init` (dim + 1 values, or NULL): along the C grid each fold starts
 * from its solution at the previous C, which saves most of liblinear's Newton steps.
 */
static struct model *fit(const rows *r, const int *fold, int skip, double c, double *init)
{
    size_t m = 0, pos = 0;
    struct problem p = {0};
    p.x = malloc(r->n * sizeof *p.x);
    p.y = malloc(r->n * sizeof *p.y);
    if (!p.x || !p.y) {
        free(p.x);
        free(p.y);
        return NULL;
    }
    for (size_t i = 0; i < r->n; i++)
        if (skip < 0 || fold[i] != skip) {
            p.x[m] = r->x[i];
            p.y[m++] = r->y[i];
            pos += r->y[i] > 0;
        }
    p.l = (int)m;
    p.n = (int)r->dim + 1;
    p.bias = -1; /* the bias feature is already in the rows */
    /* Each class weighs half: n / (2 * count), as scikit-learn's class_weight="balanced". */
    int labels[2] = {1, -1};
    double weights[2] = {(double)m / (2.0 * (double)pos), (double)m / (2.0 * (double)(m - pos))};
    struct parameter par = {0};
    par.solver_type = L2R_LR;
    par.C = c;
    par.eps = 0.01;
    par.nr_weight = 2;
    par.weight_label = labels;
    par.weight = weights;
    par.init_sol = init;
    struct model *mod = pos && pos < m ? train(&p, &par) : NULL;
    free(p.x);
    free(p.y);
    return mod;
}

/* The decision value of a row, larger for the positive class. */
static double decision(const struct model *m, const struct feature_node *x)
{
    double v;
    int labels[2];
    predict_values(m, x, &v);
    get_labels(m, labels);
    return labels[0] == 1 ? v : -v;
}

/* Stratified folds: each class's rows dealt round-robin in a seeded shuffled order. */
static int assign_folds(const unsigned char *y, size_t n, int k, unsigned seed, int *fold)
{
    size_t *order = malloc(n * sizeof *order);
    if (!order)
        return -1;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    unsigned long long s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = n; i > 1; i--) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t j = (size_t)((s >> 33) % i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    int next[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        const int cls = y[order[i]] != 0;
        fold[order[i]] = next[cls];
        next[cls] = (next[cls] + 1) % k;
    }
    free(order);
    return 0;
}

/*
 * One C's fits, shared by the threads that run them: the k folds and, as job k,
 * the fit on every row, so that when this C wins its final model is already
 * there (and the k + 1 jobs fill two threads better than k alone).
 */
typedef struct cv_job {
    const rows *r;
    const int *fold;
    int k, warmed, threads, failed;
    double c, *warm, *z;
    double *all; /* job k's solution, oriented "positive is larger" */
} cv_job;

/* Fit jobs t, t + threads, ...: each writes only its own rows of z and its own warm. */
static void cv_folds(cv_job *j, int t)
{
    const size_t len = j->r->dim + 1;
    for (int f = t; f <= j->k; f += j->threads) {
        const int skip = f < j->k ? f : -1;
        struct model *m =
            fit(j->r, j->fold, skip, j->c, j->warmed ? j->warm + (size_t)f * len : NULL);
        if (!m) {
            j->failed = 1;
            return;
        }
        if (skip >= 0) {
            for (size_t i = 0; i < j->r->n; i++)
                if (j->fold[i] == f)
                    j->z[i] = decision(m, j->r->x[i]);
        } else {
            int labels[2];
            get_labels(m, labels);
            const double sign = labels[0] == 1 ? 1.0 : -1.0;
            for (size_t i = 0; i < len; i++)
                j->all[i] = sign * m->w[i];
        }
        memcpy(j->warm + (size_t)f * len, m->w, len * sizeof *j->warm);
        free_and_destroy_model(&m);
    }
}

typedef struct cv_thread {
    cv_job *job;
    int t;
} cv_thread;

static void *cv_main(void *arg)
{
    cv_thread *ct = arg;
    cv_folds(ct->job, ct->t);
    return NULL;
}

/*
 * Out-of-fold decision values at C = c into z and the all-rows solution into all;
 * -1 when a fit failed. warm holds k + 1 solutions of dim + 1 values: read as
 * starting points when `warmed`, then overwritten with this C's. (A fold's rows,
 * hence liblinear's class order and the orientation of its w, are the same at
 * every C.) The fits are independent problems, run on up to `threads` threads
 * (liblinear's train() is reentrant).
 */
static int cross_validate(const rows *r, const int *fold, int k, double c, double *warm, int warmed,
                          int threads, double *z, double *all)
{
    enum { MAX_THREADS = 16 };
    cv_job job = {r, fold, k, warmed, 1, 0, c, warm, z, all};
    pthread_t tid[MAX_THREADS];
    cv_thread ct[MAX_THREADS];
    int started = 0;
    const int jobs = k + 1;
    job.threads = threads < 1             ? 1
                  : threads > jobs        ? jobs
                  : threads > MAX_THREADS ? MAX_THREADS
                                          : threads;
    /* Thread 0 is this one; a thread that cannot start leaves its jobs to it. */
    for (int t = 1; t < job.threads; t++) {
        ct[t] = (cv_thread){&job, t};
        if (pthread_create(&tid[t], NULL, cv_main, &ct[t]) != 0)
            break;
        started = t;
    }
    cv_folds(&job, 0);
    for (int t = 1; t <= started; t++)
        pthread_join(tid[t], NULL);
    for (int t = started + 1; t < job.threads; t++)
        cv_folds(&job, t);
    return job.failed ? -1 : 0;
}

/* Platt scaling: p = 1 / (1 + exp(-(a z + b))) fitted to y by a 1-feature liblinear LR. */
static int platt(const double *z, const unsigned char *y, size_t n, double *a, double *b)
{
    struct feature_node *nodes = malloc(n * 3 * sizeof *nodes);
    struct feature_node **x = malloc(n * sizeof *x);
    double *t = malloc(n * sizeof *t);
    int rc = -1;
    if (nodes && x && t) {
        for (size_t i = 0; i < n; i++) {
            nodes[3 * i] = (struct feature_node){1, z[i]};
            nodes[3 * i + 1] = (struct feature_node){2, 1.0};
            nodes[3 * i + 2] = (struct feature_node){-1, 0.0};
            x[i] = &nodes[3 * i];
            t[i] = y[i] ? 1.0 : -1.0;
        }
        struct problem p = {.l = (int)n, .n = 2, .y = t, .x = x, .bias = -1};
        /* Almost unregularised: two parameters, many rows. */
        struct parameter par = {.solver_type = L2R_LR, .C = 1e4, .eps = 1e-4};
        struct model *m = train(&p, &par);
        if (m) {
            int labels[2];
            get_labels(m, labels);
            const double sign = labels[0] == 1 ? 1.0 : -1.0;
            *a = sign * get_decfun_coef(m, 1, 0);
            *b = sign * get_decfun_coef(m, 2, 0);
            free_and_destroy_model(&m);
            rc = 0;
        }
    }
    free(nodes);
    free(x);
    free(t);
    return rc;
}

static double sigmoid(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

/* Precision and recall of the calibrated out-of-fold probabilities at 0.5. */
static void oof_metrics(head_fit *f, const double *z, const unsigned char *y, size_t n)
{
    size_t tp = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < n; i++) {
        f->oof[i] = sigmoid(f->cal_slope * z[i] + f->cal_offset);
        const int hit = f->oof[i] >= 0.5;
        tp += hit && y[i];
        fp += hit && !y[i];
        fn += !hit && y[i];
    }
    f->cv_precision = tp + fp ? (double)tp / (double)(tp + fp) : NAN;
    f->cv_recall = tp + fn ? (double)tp / (double)(tp + fn) : NAN;
}

static int check_classes(const unsigned char *y, size_t n, int k, char *why, size_t size)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += y[i] != 0;
    if (pos == 0 || pos == n) {
        snprintf(why, size, "the set has only %s images: a head needs both",
                 pos ? "positive" : "negative");
        return -1;
    }
    if (pos < (size_t)k || n - pos < (size_t)k) {
        snprintf(why, size,
                 "%zu positive and %zu negative images: %d-fold cross-validation needs at least "
                 "%d of each (add images or lower --folds)",
                 pos, n - pos, k, k);
        return -1;
    }
    return 0;
}

/*
 * The C of best out-of-fold AUC (the smallest among ties), its values left in z
 * and its all-rows model in f->w and f->bias. The grid ascends, and the search
 * stops once two C values in a row did not improve on the best: out-of-fold AUC
 * rises to one peak as regularisation eases, then falls as the fit follows noise.
 */
static int search_c(const rows *r, const int *fold, const unsigned char *y, const head_fit_opts *o,
                    double *z, head_fit *f)
{
    const size_t len = r->dim + 1;
    double *tmp = malloc(r->n * sizeof *tmp);
    double *warm = malloc((size_t)(o->folds + 1) * len * sizeof *warm);
    double *all = malloc(len * sizeof *all);
    int rc = 0, worse = 0;
    f->cv_auc = -1;
    if (!tmp || !warm || !all)
        rc = -1;
    for (size_t g = 0; !rc && g < o->n_grid && worse < 2; g++) {
        rc = cross_validate(r, fold, o->folds, o->grid[g], warm, g > 0, o->threads, tmp, all);
        const double auc = rc ? NAN : metrics_roc_auc(tmp, y, r->n);
        if (!rc && auc > f->cv_auc + 1e-9) {
            f->cv_auc = auc;
            f->c = o->grid[g];
            memcpy(z, tmp, r->n * sizeof *z);
            for (size_t j = 0; j < r->dim; j++)
                f->w[j] = (float)all[j];
            f->bias = all[r->dim];
            worse = 0;
        } else {
            worse++;
        }
    }
    free(tmp);
    free(warm);
    free(all);
    return rc;
}

int head_fit_train(const float *x, const unsigned char *y, size_t n, size_t dim,
                   const head_fit_opts *o, head_fit *out, char *why, size_t size)
{
    rows r = {0};
    int *fold = NULL, rc = -1;
    double *z = NULL;

    memset(out, 0, sizeof *out);
    if (check_classes(y, n, o->folds, why, size))
        return -1;
    set_print_string_function(quiet);
    out->dim = dim;
    out->w = malloc(dim * sizeof *out->w);
    out->oof = malloc(n * sizeof *out->oof);
    fold = malloc(n * sizeof *fold);
    z = malloc(n * sizeof *z);
    if (!out->w || !out->oof || !fold || !z || rows_build(&r, x, y, n, dim) ||
        assign_folds(y, n, o->folds, o->seed, fold)) {
        snprintf(why, size, "out of memory");
        goto out;
    }
    if (search_c(&r, fold, y, o, z, out) || platt(z, y, n, &out->cal_slope, &out->cal_offset)) {
        snprintf(why, size, "the solver failed (liblinear)");
        goto out;
    }
    if (!(out->cal_slope > 0)) {
        snprintf(why, size,
                 "the head does not separate the classes (out-of-fold AUC %.3f): its "
                 "calibration slope is not positive",
                 out->cv_auc);
        goto out;
    }
    oof_metrics(out, z, y, n);
    rc = 0;
out:
    rows_free(&r);
    free(fold);
    free(z);
    if (rc)
        head_fit_free(out);
    return rc;
}

void head_fit_free(head_fit *f)
{
    if (!f)
        return;
    free(f->w);
    free(f->oof);
    f->w = NULL;
    f->oof = NULL;
}
