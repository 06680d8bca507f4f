/*
 * metrics.h - ranking metrics and threshold search for one category on a labelled set.
 *
 * Scores are a category's scores of the scanned images, `pos` says which images are
 * positives (labelled with the category); every other image is a negative. An image
 * is flagged at threshold t when score >= t, as the scanner decides. Definitions
 * (clipmod(1), "policy evaluate"):
 *  - ROC AUC: the probability that a random positive scores higher than a random
 *    negative, a tie counting 1/2; undefined without positives or negatives;
 *  - average precision as scikit-learn defines it: sum over the distinct scores s, in
 *    decreasing order, of (R(s) - R(previous)) * P(s), where P and R are precision and
 *    recall when flagging score >= s; undefined without positives;
 *  - precision, recall, false-positive rate and F1 at a threshold; undefined when
 *    their denominator is zero.
 * Undefined values are NAN here; printers write "n/a" or null, never NaN.
 */
#ifndef CLIPMOD_CLI_METRICS_H
#define CLIPMOD_CLI_METRICS_H

#include <stddef.h>

/* Counts and rates when flagging score >= threshold. */
typedef struct metrics_at {
    double threshold;
    size_t tp, fp, fn, tn;
    double precision, recall, fpr, f1; /* NAN when undefined */
} metrics_at;

/* What a moderator asks a suggested threshold to reach. */
typedef enum target_kind {
    TARGET_DEFAULT,   /* best F1 among thresholds with FPR <= 0.01 */
    TARGET_FPR,       /* FPR <= value, as many positives flagged as possible */
    TARGET_PRECISION, /* precision >= value, as many positives flagged as possible */
    TARGET_RECALL,    /* recall >= value, as few negatives flagged as possible */
    TARGET_F1         /* best F1, unconstrained */
} target_kind;

typedef struct target {
    target_kind kind;
    double value; /* the bound; unused for TARGET_F1 */
} target;

/* A suggested threshold: `found` is 0 when no threshold reaches the target. */
typedef struct suggestion {
    target goal;
    int found;
    const char *why; /* when not found: "no positives", "unreachable" ... */
    metrics_at at;   /* the metrics the threshold reaches on the set */
} suggestion;

/* Parse "fpr=0.01", "precision=0.95", "recall=0.9" or "f1"; 0 on success. */
int target_parse(const char *s, target *out);

/* A short text for the target: "fpr<=0.01", "best F1 with FPR<=0.01" ... */
void target_describe(const target *t, char *buf, size_t size);

/* Name of the target kind as JSON gives it: "default", "fpr", ... */
const char *target_kind_name(target_kind k);

/* ROC AUC, ties counted 1/2; NAN without positives or negatives. */
double metrics_roc_auc(const double *scores, const unsigned char *pos, size_t n);

/* Average precision (scikit-learn's definition); NAN without positives. */
double metrics_average_precision(const double *scores, const unsigned char *pos, size_t n);

/* Counts and rates at threshold t. */
void metrics_at_threshold(const double *scores, const unsigned char *pos, size_t n, double t,
                          metrics_at *out);

/*
 * Counts and rates when the images with `flagged` non-zero are flagged, whatever
 * their scores (context can flag below the threshold); `t` is only recorded.
 */
void metrics_at_flags(const unsigned char *flagged, const unsigned char *pos, size_t n, double t,
                      metrics_at *out);

/*
 * The threshold that best meets `goal` on the set: every distinct score is a
 * candidate cut (and flagging nothing), and the threshold written is the shortest
 * decimal (at most 6 places) between the cut's score and the next lower one, so it
 * flags exactly the same images when read back from a policy file. Returns 0, or -1
 * when out of memory.
 */
int metrics_suggest(const double *scores, const unsigned char *pos, size_t n, const target *goal,
                    suggestion *out);

/*
 * The shortest decimal t with lo < t <= hi and 0 < t <= 1 (at most 9 places); -1
 * when the interval holds none.
 */
double metrics_short_threshold(double lo, double hi);

/* Sort order helper: indices 0..n-1 by score, highest first (caller frees). */
size_t *metrics_order(const double *scores, size_t n);

#endif
