/*
 * score.c - from cosines to category scores, and from frames to one verdict.
 *
 * The score of a category (clipmod-policy(5)) is the softmax probability mass its
 * own prompts take among its candidates (own prompts, contrast prompts, neutral
 * prompts), with the model's logit scale. A category is thus judged against what
 * it is not, not against the other categories, so adding a category never changes
 * another one's verdict.
 */
#include <math.h>
#include <stdlib.h>

#include "engine.h"
#include "head.h"

void cm_score_frame(const cm_cat *cat, const float *cos, float logit_scale, double *score,
                    double *best_cos, double *probs)
{
    double mx = -INFINITY, sum = 0.0, own = 0.0, best = -INFINITY;
    for (size_t j = 0; j < cat->n_cand; j++)
        mx = fmax(mx, (double)logit_scale * cos[cat->cand[j]]);
    for (size_t j = 0; j < cat->n_cand; j++) {
        const double e = exp((double)logit_scale * cos[cat->cand[j]] - mx);
        sum += e;
        if (j < cat->n_own) {
            own += e;
            best = fmax(best, cos[cat->cand[j]]);
        }
        if (probs)
            probs[j] = e;
    }
    for (size_t j = 0; probs && j < cat->n_cand; j++)
        probs[j] /= sum;
    *score = own / sum;
    *best_cos = best;
}

static int cmp_desc(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

double cm_combine_frames(const double *scores, int frames, const cm_policy *p, double threshold,
                         int *frame, int *hits)
{
    int best = 0;
    *hits = 0;
    for (int i = 0; i < frames; i++) {
        if (scores[i] >= threshold)
            (*hits)++;
        if (scores[i] > scores[best])
            best = i;
    }
    *frame = best;
    if (p->combine != CM_COMBINE_K_OF_N || frames == 1)
        return scores[best];
    /* k of n: the k-th highest frame score, so "score >= threshold" holds exactly
     * when at least k frames reach it. A short animation needs all its frames. */
    int k = p->k < frames ? p->k : frames;
    double sorted[64];
    int n = frames < 64 ? frames : 64;
    for (int i = 0; i < n; i++)
        sorted[i] = scores[i];
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_desc);
    k = k < n ? k : n;
    for (int i = 0; i < frames; i++)
        if (scores[i] == sorted[k - 1])
            *frame = i;
    return sorted[k - 1];
}

double cm_score_mix(const cm_cat *cat, double prompts, const float *emb, double *head,
                    const char **by)
{
    *head = -1;
    *by = "prompts";
    if (!cat->head)
        return prompts;
    const double h = cm_head_score(cat->head, emb);
    *head = h;
    switch (cat->def->score) {
    case CM_SCORE_HEAD:
        *by = "head";
        return h;
    case CM_SCORE_MAX:
        *by = h > prompts ? "head" : "prompts";
        return fmax(h, prompts);
    case CM_SCORE_MEAN:
        *by = "mean";
        return (h + prompts) / 2;
    default:
        return prompts;
    }
}
