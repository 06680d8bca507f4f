/*
 * report_gallery.c - the galleries of mistakes on the --report page.
 *
 * Owns, for one category at its current threshold, the false positives (negatives
 * scoring at least the threshold, highest score first: the worst first) or the false
 * negatives (positives scoring under it, lowest first), at most REPORT_GALLERY_MAX
 * of them, the page saying how many there are in all. Each image gets a thumbnail
 * (report_thumb.c) and why it is there: its score against the threshold, its labels,
 * its verdict under the policy, and the category's prompts (own, contrast, neutral)
 * it is closest to, since whichever of those wins decides the score.
 */
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* Prompts named in an image's explanation. */
#define TOP_PROMPTS 3

static const double *sort_scores;

static int by_score_desc(const void *a, const void *b)
{
    const double x = sort_scores[*(const size_t *)a], y = sort_scores[*(const size_t *)b];
    return (x < y) - (x > y);
}

/* Indices (into ev->images) of the gallery's images, worst first; NULL if no memory. */
static size_t *mistakes(const evaluation *ev, size_t c, int fn, size_t *n)
{
    size_t *idx = malloc((ev->n_images ? ev->n_images : 1) * sizeof *idx);
    double *key = malloc((ev->n_images ? ev->n_images : 1) * sizeof *key);
    const double t = ev->cats[c].info.threshold;
    *n = 0;
    for (size_t i = 0; idx && key && i < ev->n_images; i++) {
        const eval_image *im = &ev->images[i];
        if (im->unscanned)
            continue;
        const double s = im->scores[c];
        key[i] = fn ? -s : s;
        if (fn ? im->item->labels[c] && s < t : !im->item->labels[c] && s >= t)
            idx[(*n)++] = i;
    }
    if (idx && key) {
        sort_scores = key;
        qsort(idx, *n, sizeof *idx, by_score_desc);
    } else {
        free(idx);
        idx = NULL;
    }
    free(key);
    return idx;
}

/* The image's best cosine (over its frames) with prompt row `row`. */
static float best_cosine(const evaluation *ev, const eval_image *im, size_t row)
{
    const size_t np = clipmod_engine_prompt_count(ev->engine);
    float best = im->cos[row];
    for (int f = 1; f < im->frames; f++)
        best = im->cos[(size_t)f * np + row] > best ? im->cos[(size_t)f * np + row] : best;
    return best;
}

static const char *const kind_names[] = {"prompt", "contrast", "neutral"};

/* The TOP_PROMPTS candidates of category c closest to the image. */
static void top_prompts(rbuf *b, const evaluation *ev, size_t c, const eval_image *im)
{
    size_t used[TOP_PROMPTS];
    const size_t nc = ev->cats[c].info.n_candidates;
    rbuf_put(b, "<br>closest prompts:");
    for (size_t k = 0; k < TOP_PROMPTS && k < nc; k++) {
        size_t best_row = 0, row;
        long best = -1;
        float best_cos = 0;
        clipmod_prompt_kind kind, best_kind = CLIPMOD_PROMPT_CATEGORY;
        for (size_t j = 0; j < nc; j++) {
            int seen = 0;
            for (size_t u = 0; u < k; u++)
                seen |= used[u] == j;
            if (seen || clipmod_engine_candidate(ev->engine, c, j, &row, &kind))
                continue;
            const float cs = best_cosine(ev, im, row);
            if (best < 0 || cs > best_cos) {
                best = (long)j;
                best_cos = cs;
                best_row = row;
                best_kind = kind;
            }
        }
        if (best < 0)
            break;
        used[k] = (size_t)best;
        rbuf_put(b, "<br>&#8226; &#8220;");
        rbuf_esc(b, clipmod_engine_prompt_text(ev->engine, best_row));
        rbuf_printf(b, "&#8221; %.3f (%s)", best_cos, kind_names[best_kind]);
    }
}

static void labels(rbuf *b, const evaluation *ev, const eval_image *im)
{
    const char *sep = "";
    rbuf_put(b, "<br>labelled: ");
    for (size_t k = 0; k < ev->n_cats; k++)
        if (im->item->labels[k]) {
            rbuf_put(b, sep);
            rbuf_esc(b, ev->cats[k].info.id);
            sep = ", ";
        }
    rbuf_put(b, *sep ? "" : "clean");
}

static void figure(rbuf *b, const evaluation *ev, size_t c, const eval_image *im, report_thumbs *th)
{
    const double s = im->scores[c], t = ev->cats[c].info.threshold;
    const char *base = strrchr(im->item->path, '/');
    char thr[32];
    rbuf uri;
    rbuf_init(&uri, REPORT_URI_MAX_BYTES);
    rbuf_put(b, "<figure><div class=\"box\">");
    if (report_thumb_uri(&uri, im->item->path, th) || uri.failed) {
        /* No memory for one URI is no memory for the page; the others are one thumbnail. */
        if (uri.failed == CM_DBUF_E_NOMEM && !b->failed)
            b->failed = uri.failed;
        rbuf_put(b, "<span class=\"note\">no thumbnail</span>");
    } else {
        rbuf_printf(b, "<img alt=\"\" src=\"%s\">", cm_dbuf_ptr(&uri.d));
    }
    rbuf_free(&uri);
    rbuf_put(b, "</div><figcaption title=\"");
    rbuf_esc(b, im->item->path);
    rbuf_put(b, "\"><b>");
    rbuf_esc(b, base ? base + 1 : im->item->path);
    rbuf_printf(b, "</b><br>score %.3f %s threshold %s", s, s >= t ? "&#8805;" : "&lt;",
                eval_fmt_threshold(t, thr, sizeof thr));
    labels(b, ev, im);
    rbuf_printf(b, "<br>verdict: %s", clipmod_state_name(im->state));
    if (im->top >= 0) {
        rbuf_printf(b, " (%s, ", clipmod_action_name(im->action));
        rbuf_esc(b, ev->cats[im->top].info.id);
        rbuf_put(b, ")");
    }
    top_prompts(b, ev, c, im);
    rbuf_put(b, "</figcaption></figure>\n");
}

int report_gallery(rbuf *b, const evaluation *ev, size_t c, int fn, report_thumbs *th)
{
    size_t n = 0;
    size_t *idx = mistakes(ev, c, fn, &n);
    char thr[32];
    if (!idx)
        return -1;
    rbuf_printf(b, "<h3>False %s at threshold %s (%zu)</h3>\n", fn ? "negatives" : "positives",
                eval_fmt_threshold(ev->cats[c].info.threshold, thr, sizeof thr), n);
    if (n > REPORT_GALLERY_MAX)
        rbuf_printf(b, "<p class=\"note\">Showing the %d %s of %zu (at most %d per gallery).</p>\n",
                    REPORT_GALLERY_MAX, fn ? "lowest-scoring" : "highest-scoring", n,
                    REPORT_GALLERY_MAX);
    if (!n)
        rbuf_put(b, "<p class=\"note\">none</p>\n");
    else
        rbuf_put(b, "<div class=\"gal\">\n");
    for (size_t k = 0; k < n && k < REPORT_GALLERY_MAX; k++)
        figure(b, ev, c, &ev->images[idx[k]], th);
    if (n)
        rbuf_put(b, "</div>\n");
    free(idx);
    return 0;
}
