/*
 * head_fit.h - fitting a learned category head (clipmod head train).
 *
 * An L2-regularised logistic regression on L2-normalised image embeddings, solved
 * by liblinear (the solver behind scikit-learn's LogisticRegression), with classes
 * weighted so an unbalanced set counts both sides equally; the regularisation C is
 * chosen by stratified k-fold cross-validation on ROC AUC; a Platt calibration
 * fitted on the out-of-fold decision values (unweighted, so the probability means
 * what it says on the set's own class balance) turns the decision value into the
 * head's score. Every number reported comes from held-out folds.
 */
#ifndef CLIPMOD_CLI_HEAD_FIT_H
#define CLIPMOD_CLI_HEAD_FIT_H

#include <stddef.h>

typedef struct head_fit_opts {
    int folds;          /* k of the cross-validation, >= 2 */
    unsigned seed;      /* of the fold assignment */
    const double *grid; /* candidate C values, ascending */
    size_t n_grid;
    int threads; /* folds fitted at once (0 or 1: one at a time) */
} head_fit_opts;

typedef struct head_fit {
    size_t dim;
    float *w; /* [dim] */
    double bias, cal_slope, cal_offset, c;
    double cv_auc, cv_precision, cv_recall; /* out-of-fold; precision/recall at p >= 0.5 */
    double *oof;                            /* out-of-fold calibrated probability per row */
} head_fit;

/* The default C grid: 2^-2 .. 2^14 in steps of 4x (unit-norm embeddings want large C). */
extern const double head_fit_default_grid[];
extern const size_t head_fit_default_grid_len;

/*
 * Fit on n rows of x (n x dim floats) labelled y (0/1). Returns 0, or -1 with a
 * sentence in why (one class only, fewer than `folds` examples of a class, out of
 * memory, a solver failure).
 */
int head_fit_train(const float *x, const unsigned char *y, size_t n, size_t dim,
                   const head_fit_opts *o, head_fit *out, char *why, size_t size);

void head_fit_free(head_fit *f);

#endif
