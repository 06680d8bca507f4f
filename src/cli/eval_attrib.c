/*
 * eval_attrib.c - prompt attribution: which lines of a policy help, which hurt.
 *
 * For every distinct prompt of the policy (a category's prompt, a contrast prompt,
 * a neutral prompt), the scores of every image are recomputed from the kept cosines
 * without it, with the library's formula, and each category that uses it gets its
 * ROC AUC without it. A positive change (the AUC rises without the prompt) marks a
 * line that hurts the category; a negative one a line that helps. No image-tower
 * pass is needed: this costs prompts x images score evaluations.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "evaluate.h"

/* Category c's scores over the scanned images with prompt row `row` left out. */
static int scores_without(const evaluation *ev, unsigned char *skip, size_t c, size_t row,
                          double *out)
{
    size_t k = 0;
    int rc = 0;
    skip[row] = 1;
    for (size_t i = 0; !rc && i < ev->n_images; i++) {
        const eval_image *im = &ev->images[i];
        if (im->unscanned)
            continue;
        if (clipmod_engine_score_category(ev->engine, c, im->cos, im->frames, skip, &out[k++]))
            rc = -1;
    }
    skip[row] = 0;
    return rc;
}

/* Positive flags of category c over the scanned images. */
static unsigned char *positives(const evaluation *ev, size_t c)
{
    unsigned char *pos = malloc(ev->n_scanned ? ev->n_scanned : 1);
    size_t k = 0;
    for (size_t i = 0; pos && i < ev->n_images; i++)
        if (!ev->images[i].unscanned)
            pos[k++] = ev->images[i].item->labels[c];
    return pos;
}

/* Set up each category's attribution list: one entry per candidate, AUC unknown. */
static int prepare(evaluation *ev)
{
    for (size_t c = 0; c < ev->n_cats; c++) {
        eval_category *ec = &ev->cats[c];
        ec->attrib = calloc(ec->info.n_candidates ? ec->info.n_candidates : 1, sizeof *ec->attrib);
        if (!ec->attrib)
            return -1;
        ec->n_attrib = ec->info.n_candidates;
        for (size_t j = 0; j < ec->n_attrib; j++) {
            if (clipmod_engine_candidate(ev->engine, c, j, &ec->attrib[j].row, &ec->attrib[j].kind))
                return -1;
            ec->attrib[j].auc_without = NAN;
        }
    }
    return 0;
}

/*
 * One worker's share: every n-th (category, candidate) pair from `first`, with its
 * own skip mask and score buffer. The engine is only read, so workers share it.
 */
typedef struct attrib_work {
    evaluation *ev;
    size_t first, step;
    int rc;
} attrib_work;

static void *attribute_share(void *arg)
{
    attrib_work *w = arg;
    evaluation *ev = w->ev;
    const size_t np = clipmod_engine_prompt_count(ev->engine);
    unsigned char *skip = calloc(np ? np : 1, 1), *pos = NULL;
    double *scores = malloc((ev->n_scanned ? ev->n_scanned : 1) * sizeof *scores);
    size_t pair = 0;
    w->rc = skip && scores ? 0 : -1;
    /* Only a category's own candidates change its score: one pass per candidate. */
    for (size_t c = 0; !w->rc && c < ev->n_cats; c++) {
        eval_category *ec = &ev->cats[c];
        if (isnan(ec->auc))
            continue; /* no AUC to change */
        free(pos);
        pos = positives(ev, c);
        if (!pos)
            w->rc = -1;
        for (size_t j = 0; !w->rc && j < ec->n_attrib; j++, pair++) {
            if (pair % w->step != w->first)
                continue;
            w->rc = scores_without(ev, skip, c, ec->attrib[j].row, scores);
            if (!w->rc)
                ec->attrib[j].auc_without = metrics_roc_auc(scores, pos, ev->n_scanned);
        }
    }
    free(pos);
    free(skip);
    free(scores);
    return NULL;
}

/* Workers for attribution: the online cores, at most ATTRIB_MAX_WORKERS. */
#define ATTRIB_MAX_WORKERS 8

static size_t attribution_workers(void)
{
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > ATTRIB_MAX_WORKERS ? ATTRIB_MAX_WORKERS : (size_t)n;
}

int eval_attribute(evaluation *ev)
{
    const double t0 = cm_now();
    attrib_work work[ATTRIB_MAX_WORKERS];
    pthread_t tid[ATTRIB_MAX_WORKERS];
    int started[ATTRIB_MAX_WORKERS] = {0};
    const size_t n = attribution_workers();
    int rc = prepare(ev);
    if (!rc) {
        /* Each pair's AUC is written by exactly one worker, so no locks are needed;
         * a worker that cannot be started does its share here. */
        for (size_t t = 0; t < n; t++)
            work[t] = (attrib_work){.ev = ev, .first = t, .step = n};
        for (size_t t = 1; t < n; t++) {
            started[t] = !pthread_create(&tid[t], NULL, attribute_share, &work[t]);
            if (!started[t])
                attribute_share(&work[t]);
        }
        attribute_share(&work[0]);
        for (size_t t = 0; t < n; t++) {
            if (started[t])
                pthread_join(tid[t], NULL);
            rc |= work[t].rc;
        }
    }
    ev->seconds_attribution = cm_now() - t0;
    return rc;
}
