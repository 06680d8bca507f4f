/*
 * eval_context.c - image+context numbers in `clipmod policy evaluate` (issue 15).
 *
 * Owns what a manifest's text column does to an evaluation. Each scanned row's text is
 * scored by the library (clipmod_engine_context_scores: cleaned, capped and windowed as
 * a scan does), each distinct text once; a category whose score is not -1 uses context.
 * Then every scanned image gets the verdict the scanner would give it with its text
 * (clipmod_engine_verdict_context: the combined scores and the verdict; a row without
 * text goes through the same call without text, so it scores as image-only), and each
 * category using context gets ROC AUC and AP on the combined scores and the counts at
 * its threshold from the flags themselves: with `mode: alone` or `both` the text can
 * flag an image whose score stays under the threshold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "evaluate.h"
#include "progress.h"

/* A scanned row with text, for grouping equal texts. */
typedef struct text_row {
    const char *text;
    size_t len, image;
} text_row;

static int same_text(const text_row *x, const text_row *y)
{
    return x->len == y->len && !memcmp(x->text, y->text, x->len);
}

static int by_text(const void *a, const void *b)
{
    const text_row *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    const int d = memcmp(x->text, y->text, x->len);
    if (d)
        return d;
    return (x->image > y->image) - (x->image < y->image);
}

/* Every scanned row with text, grouped by text, into a new array of *n. */
static text_row *rows_with_text(const evaluation *ev, size_t *n)
{
    text_row *v = malloc((ev->n_images ? ev->n_images : 1) * sizeof *v);
    *n = 0;
    for (size_t i = 0; v && i < ev->n_images; i++) {
        const labelled_item *it = ev->images[i].item;
        if (!ev->images[i].unscanned && it->text)
            v[(*n)++] = (text_row){it->text, it->text_len, i};
    }
    if (v)
        qsort(v, *n, sizeof *v, by_text);
    return v;
}

/* Score the text of rows [from, to) of `v` (one text) into each of their images. */
static int score_group(evaluation *ev, const text_row *v, size_t from, size_t to)
{
    const size_t nc = ev->n_cats ? ev->n_cats : 1;
    for (size_t k = from; k < to; k++) {
        eval_image *im = &ev->images[v[k].image];
        im->text_scores = malloc(nc * sizeof *im->text_scores);
        if (!im->text_scores) {
            fprintf(stderr, "clipmod: out of memory\n");
            return -1;
        }
    }
    double *first = ev->images[v[from].image].text_scores;
    const clipmod_error err =
        clipmod_engine_context_scores(ev->engine, v[from].text, v[from].len, first);
    if (err) {
        fprintf(stderr, "clipmod: scoring the text of %s: %s\n",
                ev->images[v[from].image].item->origin, clipmod_strerror(err));
        return -1;
    }
    for (size_t k = from + 1; k < to; k++)
        memcpy(ev->images[v[k].image].text_scores, first, ev->n_cats * sizeof *first);
    return 0;
}

/* Which categories some text scored for: those use context. */
static void find_context_categories(evaluation *ev)
{
    for (size_t i = 0; i < ev->n_images; i++) {
        const double *t = ev->images[i].text_scores;
        for (size_t c = 0; t && c < ev->n_cats; c++)
            if (t[c] >= 0) {
                ev->cats[c].uses_context = 1;
                ev->context = 1;
            }
    }
}

int eval_context_texts(evaluation *ev)
{
    const double t0 = cm_now();
    progress pg;
    size_t n = 0;
    text_row *v = rows_with_text(ev, &n);
    int rc = v ? 0 : -1;
    if (!v)
        fprintf(stderr, "clipmod: out of memory\n");
    ev->n_text = n;
    progress_start(&pg, n, n && !ev->opts->m.quiet && !ev->opts->no_progress);
    for (size_t from = 0, to; !rc && from < n; from = to) {
        for (to = from + 1; to < n && same_text(&v[to], &v[from]);)
            to++;
        progress_update(&pg, from, ev->images[v[from].image].item->path);
        rc = score_group(ev, v, from, to);
    }
    progress_end(&pg);
    free(v);
    find_context_categories(ev);
    if (!rc && n && !ev->context && !ev->opts->m.quiet)
        fprintf(stderr,
                "clipmod: note: %zu images have text, but no category of the policy uses "
                "context (clipmod-policy(5) CONTEXT): image-only numbers\n",
                n);
    ev->seconds_context = cm_now() - t0;
    return rc;
}

/*
 * The scanner's verdict for `im` with its text: the combined scores and each
 * category's hit (its combined score reaches the threshold, or with `mode: alone` or
 * `both` its text reaches the context threshold).
 */
static int verdict_one(const evaluation *ev, eval_image *im)
{
    const size_t nc = ev->n_cats ? ev->n_cats : 1;
    im->ctx_scores = malloc(nc * sizeof *im->ctx_scores);
    im->ctx_hits = calloc(nc, 1);
    if (!im->ctx_scores || !im->ctx_hits ||
        clipmod_engine_verdict_context(ev->engine, im->scores, im->text_scores, im->ctx_scores,
                                       im->ctx_hits, &im->ctx_state, &im->ctx_action, &im->ctx_top))
        return -1;
    return 0;
}

int eval_context_verdicts(evaluation *ev)
{
    if (!ev->context)
        return 0;
    int rc = 0;
    for (size_t i = 0; !rc && i < ev->n_images; i++)
        if (!ev->images[i].unscanned)
            rc = verdict_one(ev, &ev->images[i]);
    return rc;
}

int eval_context_measure(evaluation *ev, size_t c)
{
    eval_category *ec = &ev->cats[c];
    const size_t cap = ev->n_scanned ? ev->n_scanned : 1;
    double *s = malloc(cap * sizeof *s);
    unsigned char *pos = malloc(cap), *hit = malloc(cap);
    size_t n = 0;
    int rc = s && pos && hit ? 0 : -1;
    for (size_t i = 0; !rc && i < ev->n_images; i++) {
        const eval_image *im = &ev->images[i];
        if (im->unscanned)
            continue;
        s[n] = im->ctx_scores[c];
        hit[n] = im->ctx_hits[c];
        pos[n++] = im->item->labels[c];
    }
    if (!rc) {
        ec->ctx_auc = metrics_roc_auc(s, pos, n);
        ec->ctx_ap = metrics_average_precision(s, pos, n);
        metrics_at_flags(hit, pos, n, ec->info.threshold, &ec->ctx_current);
    }
    free(s);
    free(pos);
    free(hit);
    return rc;
}
