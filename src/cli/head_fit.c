/*
 * head_fit.c - cross-validated, calibrated logistic regression with liblinear.
 *
 * Owns the training of one head: the liblinear problem built once over the rows
 * (dense features plus liblinear's bias feature), stratified fold assignment, the
 * C search on out-of-fold ROC AUC (each fold's fits warm-started along the grid,
 * the folds spread over threads), Platt scaling on the out-of-fold decision
 * values, and the final fit on every row. liblinear orders its classes by first
 * appearance (+1 first for -1/+1 labels); decision values are turned to
 * "positive is larger" here, once.
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

/*
 * liblinear's stopping tolerances. The folds' fits only rank held-out rows, and
 * 0.01 is liblinear's default. The head's own fit starts near its optimum (the
 * folds' mean), where 0.01 would stop after a step or two, well short of where a
 * fit from further away ends up; 0.001 costs a couple of Newton steps more and
 * gives weights closer to the exact optimum than either.
 */
#define EPS_FOLD 0.01
#define EPS_ALL  0.001

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
 * starting from `init` (dim + 1 values, or NULL), to liblinear's stopping
 * tolerance eps (the gradient's norm relative to its norm at w = 0).
 */
static struct model *fit(const rows *r, const int *fold, int skip, double c, double *init,
                         double eps)
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
    par.eps = eps;
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
 * The C search, run as a pipeline on the threads. Fold f's fits form a chain
 * along the grid, each warm-started from its solution at the C before (liblinear
 * init_sol); chains do not wait for each other, so a thread does not idle at the
 * end of one C while the last fold of that C runs elsewhere. A grid value is
 * fitted only once it is certain to be needed (see evaluate()), so no fit is
 * thrown away and the out-of-fold values are those of fitting one C at a time.
 * The fit on every row is made once, at the chosen C, warm-started from the mean
 * of the folds' solutions there; a thread with no fold to fit makes it early for
 * the best C so far, which usually is the chosen one.
 */
typedef struct search {
    const rows *r;
    const int *fold;
    const unsigned char *y;
    const head_fit_opts *o;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t len;          /* dim + 1: a solution and its bias */
    int *next;           /* [folds]: the grid value fold f fits next */
    int *busy;           /* [folds]: fold f's chain is being fitted */
    int *left;           /* [n_grid]: folds still to fit at grid value g */
    double *sol;         /* [n_grid][folds][len]: each fold's solution at each C */
    double *z;           /* [n_grid][n]: out-of-fold decision values */
    double *all;         /* [len]: the all-rows solution at grid value all_g */
    int limit;           /* grid values certain to be fitted: [0, limit) */
    int evaluated;       /* grid values whose AUC is known: [0, evaluated) */
    int best, worse;     /* best grid value so far (-1: none); values since then */
    int all_g, all_busy; /* the grid value `all` holds (-1: none); being fitted */
    int failed;
    double best_auc;
} search;

/*
 * How many C values in a row may fail to improve on the best before the search
 * stops. Out-of-fold AUC rises to one peak as regularisation eases, then falls as
 * the fit follows noise, and the grid's steps of 4x are wide enough that a value
 * past the peak measures lower (on a plateau, common on small sets, a tie keeps
 * the smaller, more regularised C). Each C value costs k fits of the whole set
 * (about 0.1 s of CPU each at 10,000 x 512, spent in liblinear's passes over its
 * 16-byte feature nodes), so a second look past the peak would add half again to
 * a search whose best is the first value.
 */
#define PATIENCE 1

/*
 * AUCs in grid order as their folds complete. The best is the C of highest AUC,
 * the smallest among ties; the search stops once PATIENCE values in a row did not
 * improve on it. So after a new best the next PATIENCE values are certain to be
 * tried, and one fewer after each miss.
 */
static void evaluate(search *s)
{
    const size_t n = s->r->n;
    while (s->evaluated < s->limit && s->left[s->evaluated] == 0) {
        const int g = s->evaluated++;
        const double auc = metrics_roc_auc(s->z + (size_t)g * n, s->y, n);
        if (auc > s->best_auc + 1e-9) {
            s->best_auc = auc;
            s->best = g;
            s->worse = 0;
        } else {
            s->worse++;
        }
        const int limit = g + 1 + PATIENCE - s->worse;
        s->limit = limit < (int)s->o->n_grid ? limit : (int)s->o->n_grid;
    }
}

/* The fold furthest behind whose next grid value is certain to be needed; -1: none. */
static int pick(const search *s)
{
    int f = -1;
    for (int i = 0; i < s->o->folds; i++)
        if (!s->busy[i] && s->next[i] < s->limit && (f < 0 || s->next[i] < s->next[f]))
            f = i;
    return f;
}

/* Fit fold f at its next C, the lock released meanwhile. Its rows, hence liblinear's
 * class order and the orientation of w, are the same at every C. */
static void run_fold(search *s, int f)
{
    const int g = s->next[f];
    const size_t n = s->r->n, len = s->len, stride = (size_t)s->o->folds * len;
    double *sol = s->sol + (size_t)g * stride + (size_t)f * len;
    s->busy[f] = 1;
    pthread_mutex_unlock(&s->mu);
    struct model *m = fit(s->r, s->fold, f, s->o->grid[g], g ? sol - stride : NULL, EPS_FOLD);
    const int ok = m != NULL;
    if (ok) {
        for (size_t i = 0; i < n; i++)
            if (s->fold[i] == f)
                s->z[(size_t)g * n + i] = decision(m, s->r->x[i]);
        memcpy(sol, m->w, len * sizeof *sol);
        free_and_destroy_model(&m);
    }
    pthread_mutex_lock(&s->mu);
    s->busy[f] = 0;
    s->failed |= !ok;
    s->next[f] = g + 1;
    s->left[g]--;
    evaluate(s);
    pthread_cond_broadcast(&s->cond);
}

/*
 * Fit every row at the best C so far, from the mean of the folds' solutions there
 * (liblinear puts the +1 class first for -1/+1 labels, so every fold's w and this
 * one are oriented alike); the result is kept "positive is larger".
 */
static void run_all(search *s)
{
    const int g = s->best, k = s->o->folds;
    const size_t len = s->len;
    const double *sol = s->sol + (size_t)g * (size_t)k * len;
    int ok = 0;
    s->all_busy = 1;
    pthread_mutex_unlock(&s->mu);
    double *init = malloc(len * sizeof *init);
    struct model *m = NULL;
    if (init) {
        for (size_t j = 0; j < len; j++) {
            double sum = 0;
            for (int f = 0; f < k; f++)
                sum += sol[(size_t)f * len + j];
            init[j] = sum / k;
        }
        m = fit(s->r, s->fold, -1, s->o->grid[g], init, EPS_ALL);
    }
    if (m) {
        int labels[2];
        get_labels(m, labels);
        const double sign = labels[0] == 1 ? 1.0 : -1.0;
        for (size_t j = 0; j < len; j++)
            s->all[j] = sign * m->w[j];
        free_and_destroy_model(&m);
        ok = 1;
    }
    free(init);
    pthread_mutex_lock(&s->mu);
    s->all_busy = 0;
    s->failed |= !ok;
    s->all_g = ok ? g : s->all_g;
    pthread_cond_broadcast(&s->cond);
}

/* A thread of the search: folds first, then the all-rows fit, until both are done. */
static void *search_worker(void *arg)
{
    search *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->failed) {
        const int f = pick(s);
        if (f >= 0) {
            run_fold(s, f);
        } else if (s->best >= 0 && s->all_g != s->best && !s->all_busy) {
            run_all(s);
        } else if (s->evaluated == s->limit && !s->all_busy) {
            break;
        } else {
            pthread_cond_wait(&s->cond, &s->mu);
        }
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int search_init(search *s, const rows *r, const int *fold, const unsigned char *y,
                       const head_fit_opts *o)
{
    const size_t k = (size_t)o->folds;
    *s = (search){.r = r,
                  .fold = fold,
                  .y = y,
                  .o = o,
                  .len = r->dim + 1,
                  .best = -1,
                  .all_g = -1,
                  .best_auc = -1};
    s->limit = o->n_grid < 1 + PATIENCE ? (int)o->n_grid : 1 + PATIENCE;
    s->next = calloc(k, sizeof *s->next);
    s->busy = calloc(k, sizeof *s->busy);
    s->left = malloc(o->n_grid * sizeof *s->left);
    s->sol = malloc(o->n_grid * k * s->len * sizeof *s->sol);
    s->z = malloc(o->n_grid * r->n * sizeof *s->z);
    s->all = malloc(s->len * sizeof *s->all);
    if (!s->next || !s->busy || !s->left || !s->sol || !s->z || !s->all)
        return -1;
    for (size_t g = 0; g < o->n_grid; g++)
        s->left[g] = o->folds;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    return 0;
}

static void search_free(search *s, int inited)
{
    if (inited) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
    }
    free(s->next);
    free(s->busy);
    free(s->left);
    free(s->sol);
    free(s->z);
    free(s->all);
}

/* The calling thread is one of the workers; one that cannot start leaves its share to the rest. */
static void search_run(search *s, int threads)
{
    enum { MAX_THREADS = 16 };
    pthread_t tid[MAX_THREADS];
    int started = 0;
    /* k chains and the all-rows fit: more threads than folds would only wait. */
    threads = threads > s->o->folds ? s->o->folds : threads;
    threads = threads > MAX_THREADS ? MAX_THREADS : threads;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tid[started], NULL, search_worker, s) != 0)
            break;
        started++;
    }
    search_worker(s);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

/* The chosen C, its out-of-fold values left in z and its all-rows model in f->w and f->bias. */
static int search_c(const rows *r, const int *fold, const unsigned char *y, const head_fit_opts *o,
                    double *z, head_fit *f)
{
    search s;
    const int inited = search_init(&s, r, fold, y, o) == 0;
    int rc = -1;
    if (inited) {
        search_run(&s, o->threads);
        rc = s.failed || s.best < 0 || s.all_g != s.best ? -1 : 0;
    }
    if (!rc) {
        f->cv_auc = s.best_auc;
        f->c = o->grid[s.best];
        memcpy(z, s.z + (size_t)s.best * r->n, r->n * sizeof *z);
        for (size_t j = 0; j < r->dim; j++)
            f->w[j] = (float)s.all[j];
        f->bias = s.all[r->dim];
    }
    search_free(&s, inited);
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
