/*
 * metrics.c - ROC AUC, average precision and threshold search (see metrics.h).
 *
 * Everything walks the scores once in decreasing order, a group of equal scores at a
 * time: a group is one cut (flag score >= s), which is how ties get their half in
 * the AUC and why a suggested threshold never splits images with the same score.
 * tests/reference/metrics_ref.py computes the same from the definitions with numpy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* qsort has no context argument in C11; one per thread, as attribution sorts in several. */
static _Thread_local const double *sort_keys;

static int by_score_desc(const void *a, const void *b)
{
    const double x = sort_keys[*(const size_t *)a], y = sort_keys[*(const size_t *)b];
    if (x != y)
        return x < y ? 1 : -1;
    /* Equal scores: by index, so the order (and every report) is deterministic. */
    return (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

size_t *metrics_order(const double *scores, size_t n)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx)
        return NULL;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_keys = scores;
    qsort(idx, n, sizeof *idx, by_score_desc);
    return idx;
}

static void count_classes(const unsigned char *pos, size_t n, size_t *np, size_t *nn)
{
    *np = 0;
    for (size_t i = 0; i < n; i++)
        *np += pos[i] ? 1 : 0;
    *nn = n - *np;
}

/* One cut: the images from the top down to a group of equal scores, inclusive. */
typedef struct cut {
    double score, next; /* the group's score; the next lower one (-1 after the last) */
    size_t tp, fp;      /* flagged positives and negatives at score >= `score` */
    size_t gp, gn;      /* the group's own positives and negatives */
} cut;

/* The cuts of the set, highest first, into a new array (*count of them). */
static cut *cuts_of(const double *scores, const unsigned char *pos, size_t n, size_t *count)
{
    size_t *idx = metrics_order(scores, n);
    cut *c = malloc((n ? n : 1) * sizeof *c);
    size_t k = 0, tp = 0, fp = 0;
    if (!idx || !c) {
        free(idx);
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        const double s = scores[idx[i]];
        size_t gp = 0, gn = 0;
        for (; i < n && scores[idx[i]] == s; i++)
            pos[idx[i]] ? gp++ : gn++;
        tp += gp;
        fp += gn;
        c[k] = (cut){s, i < n ? scores[idx[i]] : -1.0, tp, fp, gp, gn};
        k++;
    }
    free(idx);
    *count = k;
    return c;
}

double metrics_roc_auc(const double *scores, const unsigned char *pos, size_t n)
{
    size_t np, nn, k;
    count_classes(pos, n, &np, &nn);
    if (!np || !nn)
        return NAN;
    cut *c = cuts_of(scores, pos, n, &k);
    if (!c)
        return NAN;
    /* A positive beats every negative below its group and ties those in it. */
    double sum = 0.0;
    for (size_t i = 0; i < k; i++) {
        const double below = (double)(nn - c[i].fp);
        sum += (double)c[i].gp * below + 0.5 * (double)c[i].gp * (double)c[i].gn;
    }
    free(c);
    return sum / ((double)np * (double)nn);
}

double metrics_average_precision(const double *scores, const unsigned char *pos, size_t n)
{
    size_t np, nn, k;
    count_classes(pos, n, &np, &nn);
    if (!np)
        return NAN;
    cut *c = cuts_of(scores, pos, n, &k);
    if (!c)
        return NAN;
    double ap = 0.0;
    for (size_t i = 0; i < k; i++)
        if (c[i].gp)
            ap += ((double)c[i].gp / (double)np) * ((double)c[i].tp / (double)(c[i].tp + c[i].fp));
    free(c);
    return ap;
}

static double ratio(size_t a, size_t b)
{
    return b ? (double)a / (double)b : NAN;
}

/* Fill the rates of `m` from its counts. */
static void rates(metrics_at *m)
{
    m->precision = ratio(m->tp, m->tp + m->fp);
    m->recall = ratio(m->tp, m->tp + m->fn);
    m->fpr = ratio(m->fp, m->fp + m->tn);
    /* F1 = 2TP / (2TP + FP + FN): defined whenever there is a positive or a flag. */
    m->f1 = ratio(2 * m->tp, 2 * m->tp + m->fp + m->fn);
}

void metrics_at_threshold(const double *scores, const unsigned char *pos, size_t n, double t,
                          metrics_at *out)
{
    memset(out, 0, sizeof *out);
    out->threshold = t;
    for (size_t i = 0; i < n; i++) {
        const int flagged = scores[i] >= t;
        if (pos[i])
            flagged ? out->tp++ : out->fn++;
        else
            flagged ? out->fp++ : out->tn++;
    }
    rates(out);
}

void metrics_at_flags(const unsigned char *flagged, const unsigned char *pos, size_t n, double t,
                      metrics_at *out)
{
    memset(out, 0, sizeof *out);
    out->threshold = t;
    for (size_t i = 0; i < n; i++) {
        if (pos[i])
            flagged[i] ? out->tp++ : out->fn++;
        else
            flagged[i] ? out->fp++ : out->tn++;
    }
    rates(out);
}

double metrics_short_threshold(double lo, double hi)
{
    if (hi > 1.0)
        hi = 1.0;
    if (lo < 0.0)
        lo = 0.0;
    if (!(hi > lo))
        return -1.0;
    double scale = 1.0;
    for (int d = 0; d <= 9; d++, scale *= 10.0) {
        double t = floor(hi * scale) / scale;
        if (t > hi) /* hi * scale rounded up to a whole number */
            t = (floor(hi * scale) - 1.0) / scale;
        if (t > lo && t > 0.0)
            return t;
    }
    return hi; /* two scores closer than 1e-9: the cut's own score, written in full */
}

/* Is the cut `m` acceptable for `g`, and is it better than the best so far? */
static int feasible(const target *g, const metrics_at *m)
{
    switch (g->kind) {
    case TARGET_DEFAULT:
        return m->fpr <= 0.01;
    case TARGET_FPR:
        return m->fpr <= g->value;
    case TARGET_PRECISION:
        return m->tp + m->fp > 0 && m->precision >= g->value;
    case TARGET_RECALL:
        return m->recall >= g->value;
    case TARGET_F1:
        return 1;
    }
    return 0;
}

static int better(const target *g, const metrics_at *m, const metrics_at *best)
{
    switch (g->kind) {
    case TARGET_DEFAULT:
    case TARGET_F1: {
        const double f = isnan(m->f1) ? -1.0 : m->f1, b = isnan(best->f1) ? -1.0 : best->f1;
        return f > b || (f == b && m->fp < best->fp);
    }
    case TARGET_FPR:
    case TARGET_PRECISION:
        return m->tp > best->tp || (m->tp == best->tp && m->fp < best->fp);
    case TARGET_RECALL:
        return m->fp < best->fp || (m->fp == best->fp && m->tp > best->tp);
    }
    return 0;
}

/* The metrics of cut `c` (NULL: flag nothing), at threshold t. */
static void cut_metrics(const cut *c, size_t np, size_t nn, double t, metrics_at *m)
{
    memset(m, 0, sizeof *m);
    m->threshold = t;
    m->tp = c ? c->tp : 0;
    m->fp = c ? c->fp : 0;
    m->fn = np - m->tp;
    m->tn = nn - m->fp;
    rates(m);
}

int metrics_suggest(const double *scores, const unsigned char *pos, size_t n, const target *goal,
                    suggestion *out)
{
    size_t np, nn, k;
    memset(out, 0, sizeof *out);
    out->goal = *goal;
    count_classes(pos, n, &np, &nn);
    if (!np) {
        out->why = "no positives";
        return 0;
    }
    if (!nn && goal->kind != TARGET_RECALL && goal->kind != TARGET_F1 &&
        goal->kind != TARGET_PRECISION) {
        out->why = "no negatives";
        return 0;
    }
    cut *c = cuts_of(scores, pos, n, &k);
    if (!c)
        return -1;
    metrics_at m, best;
    /* First the cut above every score (flag nothing), then each group downwards. */
    for (size_t i = 0; i <= k; i++) {
        const cut *ci = i ? &c[i - 1] : NULL;
        const double hi = i ? ci->score : 1.0, lo = i ? ci->next : (k ? c[0].score : 0.0);
        const double t = metrics_short_threshold(lo, hi);
        if (t < 0.0 || (!i && t <= lo))
            continue; /* no threshold in (0, 1] makes this cut */
        cut_metrics(ci, np, nn, t, &m);
        if (feasible(goal, &m) && (!out->found || better(goal, &m, &best))) {
            best = m;
            out->found = 1;
        }
    }
    free(c);
    if (out->found)
        out->at = best;
    else
        out->why = "unreachable on this set";
    return 0;
}

int target_parse(const char *s, target *out)
{
    static const struct {
        const char *name;
        target_kind kind;
    } names[] = {{"fpr", TARGET_FPR}, {"precision", TARGET_PRECISION}, {"recall", TARGET_RECALL}};
    memset(out, 0, sizeof *out);
    if (!strcmp(s, "f1")) {
        out->kind = TARGET_F1;
        return 0;
    }
    const char *eq = strchr(s, '=');
    if (!eq)
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (strlen(names[i].name) != (size_t)(eq - s) ||
            strncmp(s, names[i].name, (size_t)(eq - s)))
            continue;
        char *end = NULL;
        const double v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !(v >= 0.0 && v <= 1.0))
            return -1;
        out->kind = names[i].kind;
        out->value = v;
        return 0;
    }
    return -1;
}

const char *target_kind_name(target_kind k)
{
    static const char *const names[] = {"default", "fpr", "precision", "recall", "f1"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "unknown";
}

void target_describe(const target *t, char *buf, size_t size)
{
    switch (t->kind) {
    case TARGET_DEFAULT:
        snprintf(buf, size, "best F1, FPR<=0.01");
        break;
    case TARGET_FPR:
        snprintf(buf, size, "FPR<=%g", t->value);
        break;
    case TARGET_PRECISION:
        snprintf(buf, size, "precision>=%g", t->value);
        break;
    case TARGET_RECALL:
        snprintf(buf, size, "recall>=%g", t->value);
        break;
    case TARGET_F1:
        snprintf(buf, size, "best F1");
        break;
    }
}
