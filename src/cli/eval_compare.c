/*
 * eval_compare.c - `policy evaluate --compare OLD.yaml`: what an edit changes.
 *
 * Every scanned image is judged by the old policy too, from the same image
 * embeddings (the old policy's own prompts give its own cosines), and every image
 * whose verdict (state, action, deciding category) differs is listed, grouped by
 * change, with its labels. All categories count, including those the edit did not
 * touch: a new neutral prompt, for instance, moves every category's scores.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"

const char *eval_verdict_text(const eval_verdict *v, char *buf, size_t size)
{
    if (v->state == CLIPMOD_STATE_FLAGGED)
        snprintf(buf, size, "%s %s", clipmod_action_name(v->action),
                 v->category ? v->category : "?");
    else
        snprintf(buf, size, "%s", clipmod_state_name(v->state));
    return buf;
}

static int same(const eval_verdict *a, const eval_verdict *b)
{
    if (a->state != b->state || a->action != b->action)
        return 0;
    if (!a->category || !b->category)
        return a->category == b->category;
    return !strcmp(a->category, b->category);
}

/* The old policy's verdict on image `im`. */
static int old_verdict(const clipmod_engine *old, const eval_image *im, eval_verdict *v)
{
    const size_t np = clipmod_engine_prompt_count(old), nc = clipmod_engine_category_count(old);
    float *cos = malloc((size_t)im->frames * (np ? np : 1) * sizeof *cos);
    double *scores = malloc((nc ? nc : 1) * sizeof *scores);
    long top = -1;
    int rc = cos && scores ? 0 : -1;
    if (!rc && (clipmod_engine_cosines(old, im->emb, im->frames, cos) ||
                clipmod_engine_score_cosines(old, cos, im->frames, NULL, scores) ||
                clipmod_engine_verdict(old, scores, &v->state, &v->action, &top)))
        rc = -1;
    clipmod_category_info info;
    v->category = NULL;
    if (!rc && top >= 0 && !clipmod_engine_category_info(old, (size_t)top, &info))
        v->category = info.id;
    free(cos);
    free(scores);
    return rc;
}

/* Add image i to the group of change from -> to. */
static int add_change(evaluation *ev, const eval_verdict *from, const eval_verdict *to, size_t i)
{
    eval_change *g = NULL;
    for (size_t k = 0; k < ev->n_changes && !g; k++)
        if (same(&ev->changes[k].from, from) && same(&ev->changes[k].to, to))
            g = &ev->changes[k];
    if (!g) {
        eval_change *grown = realloc(ev->changes, (ev->n_changes + 1) * sizeof *grown);
        if (!grown)
            return -1;
        ev->changes = grown;
        g = &ev->changes[ev->n_changes++];
        memset(g, 0, sizeof *g);
        g->from = *from;
        g->to = *to;
    }
    size_t *more = realloc(g->images, (g->n + 1) * sizeof *more);
    if (!more)
        return -1;
    g->images = more;
    g->images[g->n++] = i;
    ev->n_changed++;
    return 0;
}

static int by_size_desc(const void *a, const void *b)
{
    const size_t x = ((const eval_change *)a)->n, y = ((const eval_change *)b)->n;
    return (x < y) - (x > y);
}

int eval_compare(evaluation *ev, const clipmod_engine *old)
{
    for (size_t i = 0; i < ev->n_images; i++) {
        const eval_image *im = &ev->images[i];
        eval_verdict was, now = {im->state, im->action, NULL};
        if (im->unscanned)
            continue;
        if (old_verdict(old, im, &was))
            return -1;
        if (im->top >= 0)
            now.category = ev->cats[im->top].info.id;
        if (!same(&was, &now) && add_change(ev, &was, &now, i))
            return -1;
    }
    qsort(ev->changes, ev->n_changes, sizeof *ev->changes, by_size_desc);
    return 0;
}

void eval_compare_free(evaluation *ev)
{
    for (size_t k = 0; k < ev->n_changes; k++)
        free(ev->changes[k].images);
    free(ev->changes);
    ev->changes = NULL;
    ev->n_changes = ev->n_changed = 0;
}
