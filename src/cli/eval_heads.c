/*
 * eval_heads.c - learned heads in `clipmod policy evaluate`.
 *
 * Owns what evaluate adds for categories with a head: the scores the scanner gives
 * (the policy's `score:` mix) beside the prompts' and the head's own, and the
 * numbers side by side (prompts only, head only, the policy's combination) on the
 * images that did not train the head, found by the SHA-256 digests the head
 * records. A head is never measured on its own training images: when every image
 * of the set trained it, its row says n/a (`clipmod head train` reported its
 * out-of-fold numbers, and the head file keeps them).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "head_data.h"

void eval_heads_find(evaluation *ev)
{
    static const unsigned char none[32];
    for (size_t c = 0; c < ev->n_cats; c++)
        if (clipmod_engine_head_trained_on(ev->engine, c, none) >= 0) {
            ev->has_heads = 1;
            ev->cats[c].head.has = 1;
        }
    if (ev->has_heads)
        ev->keep_emb = 1;
}

int eval_heads_score(const evaluation *ev, eval_image *im)
{
    const size_t n = ev->n_cats ? ev->n_cats : 1;
    unsigned char digest[32];
    im->prompt_scores = calloc(n, sizeof *im->prompt_scores);
    im->head_scores = calloc(n, sizeof *im->head_scores);
    im->trained = calloc(n, 1);
    if (!im->prompt_scores || !im->head_scores || !im->trained || !im->emb)
        return -1;
    if (clipmod_engine_score_frames(ev->engine, im->emb, im->cos, im->frames, im->scores,
                                    im->prompt_scores, im->head_scores))
        return -1;
    if (head_digest_file(im->item->path, digest)) {
        fprintf(stderr, "clipmod: %s: cannot read it again\n", im->item->path);
        return -1;
    }
    for (size_t c = 0; c < ev->n_cats; c++)
        im->trained[c] = clipmod_engine_head_trained_on(ev->engine, c, digest) == 1;
    return 0;
}

int eval_heads_measure(evaluation *ev, size_t c)
{
    eval_head *h = &ev->cats[c].head;
    if (!h->has)
        return 0;
    const size_t cap = ev->n_scanned ? ev->n_scanned : 1;
    double *ps = malloc(cap * sizeof *ps), *hs = malloc(cap * sizeof *hs);
    double *mix = malloc(cap * sizeof *mix);
    unsigned char *pos = malloc(cap);
    size_t n = 0;
    int rc = -1;
    if (ps && hs && mix && pos) {
        for (size_t i = 0; i < ev->n_images; i++) {
            const eval_image *im = &ev->images[i];
            if (im->unscanned)
                continue;
            if (im->trained[c]) {
                h->trained++;
                continue;
            }
            ps[n] = im->prompt_scores[c];
            hs[n] = im->head_scores[c];
            mix[n] = im->scores[c];
            pos[n] = im->item->labels[c];
            pos[n++] ? h->positives++ : h->negatives++;
        }
        h->held_out = n;
        h->prompts_auc = metrics_roc_auc(ps, pos, n);
        h->head_auc = metrics_roc_auc(hs, pos, n);
        h->policy_auc = metrics_roc_auc(mix, pos, n);
        rc = 0;
    }
    free(ps);
    free(hs);
    free(mix);
    free(pos);
    return rc;
}

void eval_heads_print(const evaluation *ev)
{
    char a[32], b[32], c[32];
    if (!ev->has_heads)
        return;
    printf("\nlearned heads, on the images that did not train them (ROC AUC):\n");
    printf("%-16s %8s %8s %5s %6s %8s %8s %8s\n", "category", "held-out", "trained", "pos", "neg",
           "prompts", "head", "policy");
    for (size_t k = 0; k < ev->n_cats; k++) {
        const eval_head *h = &ev->cats[k].head;
        if (!h->has)
            continue;
        printf("%-16s %8zu %8zu %5zu %6zu %8s %8s %8s\n", ev->cats[k].info.id, h->held_out,
               h->trained, h->positives, h->negatives, eval_fmt(h->prompts_auc, a, sizeof a),
               eval_fmt(h->head_auc, b, sizeof b), eval_fmt(h->policy_auc, c, sizeof c));
    }
    printf("(policy: the score the policy's `score:` gives; every image that trained a head "
           "is left out of its row)\n");
}

static json_t *num_or_null(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *eval_heads_json(const eval_head *h)
{
    if (!h->has)
        return NULL;
    return json_pack("{s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "held_out", (json_int_t)h->held_out,
                     "trained", (json_int_t)h->trained, "positives", (json_int_t)h->positives,
                     "negatives", (json_int_t)h->negatives, "prompts_roc_auc",
                     num_or_null(h->prompts_auc), "head_roc_auc", num_or_null(h->head_auc),
                     "policy_roc_auc", num_or_null(h->policy_auc));
}
