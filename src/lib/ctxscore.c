/*
 * ctxscore.c - context-aware scores: an image judged with the text that came with it.
 *
 * Owns the context side of an engine (clipmod-policy(5) CONTEXT): at compile, the
 * table of untemplated texts every category's context is judged against (its
 * context prompts, contrast, the neutral and context-neutral prompts) and their
 * embeddings through the prompt cache; at scan time, the windows of each input's
 * cleaned text (context.c) embedded by the text tower in one call per batch, each
 * window scored like an image frame (score.c's softmax mass, at the model's logit
 * scale), the best window kept, and the category's image score combined with it.
 * The one formula lives in cm_ctx_combine, shared with the tuning tools' verdicts.
 */
#include "ctxscore.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "common.h"
#include "context.h"
#include "model.h"
#include "ops.h"
#include "result.h"

/* ------------------------------------------------------------------------ */
/* Compile                                                                  */
/* ------------------------------------------------------------------------ */

/* Category c's context candidates as rows of the table being built in `ix`. */
static clipmod_error build_ctx_cat(const cm_policy *p, cm_cat *cat, cm_intern *ix)
{
    const cm_category *def = cat->def;
    const cm_context_def *d = &def->context;
    const cm_prompt *own = d->prompts ? d->prompts : def->prompts;
    const size_t n_own = d->prompts ? d->n_prompts : def->n_prompts;
    const cm_prompt *lists[4] = {own, def->contrast, p->neutral, p->context_neutral};
    const size_t counts[4] = {n_own, def->n_contrast, p->n_neutral, p->n_context_neutral};
    const cm_prompt_kind kinds[4] = {CM_KIND_CATEGORY, CM_KIND_CONTRAST, CM_KIND_NEUTRAL,
                                     CM_KIND_NEUTRAL};
    const size_t n = counts[0] + counts[1] + counts[2] + counts[3];
    cm_cat *x = cat->ctx = cm_calloc(1, sizeof *x);
    if (!x)
        return CLIPMOD_E_NOMEM;
    x->def = def;
    x->cand = cm_alloc((n ? n : 1) * sizeof *x->cand);
    x->kind = cm_alloc((n ? n : 1) * sizeof *x->kind);
    if (!x->cand || !x->kind)
        return CLIPMOD_E_NOMEM;
    for (int k = 0; k < 4; k++)
        for (size_t j = 0; j < counts[k]; j++) {
            long row = cm_intern_add(ix, lists[k][j].text);
            if (row < 0)
                return CLIPMOD_E_NOMEM;
            x->cand[x->n_cand] = (size_t)row;
            x->kind[x->n_cand++] = kinds[k];
        }
    x->n_own = n_own;
    return CLIPMOD_OK;
}

clipmod_error cm_ctx_compile(clipmod_engine *e, char **problems)
{
    const cm_policy *p = e->policy;
    size_t total = p->n_neutral + p->n_context_neutral, users = 0;
    for (size_t c = 0; c < e->n_cats; c++) {
        const cm_category *d = e->cats[c].def;
        if (d->context.mode == CM_CTX_OFF)
            continue;
        users++;
        total += (d->context.prompts ? d->context.n_prompts : d->n_prompts) + d->n_contrast;
    }
    if (!users)
        return CLIPMOD_OK;
    cm_intern ix;
    clipmod_error rc = cm_intern_init(&ix, total);
    e->ctx_prompts = ix.text;
    for (size_t c = 0; !rc && c < e->n_cats; c++)
        if (e->cats[c].def->context.mode != CM_CTX_OFF)
            rc = build_ctx_cat(p, &e->cats[c], &ix);
    e->n_ctx_prompts = ix.n;
    cm_intern_release(&ix);
    /* Context prompts are compared with what people write, not with captions of
     * pictures: no template. */
    static const char *const bare[] = {"{}"};
    if (!rc)
        rc = cm_engine_embed_table(e, e->ctx_prompts, e->n_ctx_prompts, bare, 1, &e->ctx_emb,
                                   problems);
    return rc;
}

void cm_ctx_uncompile(clipmod_engine *e)
{
    for (size_t i = 0; i < e->n_ctx_prompts; i++)
        cm_free(e->ctx_prompts[i]);
    cm_free(e->ctx_prompts);
    cm_free(e->ctx_emb);
    for (size_t c = 0; c < e->n_cats; c++) {
        cm_cat *x = e->cats[c].ctx;
        if (x) {
            cm_free(x->cand);
            cm_free(x->kind);
            cm_free(x);
        }
        e->cats[c].ctx = NULL;
    }
    e->ctx_prompts = NULL;
    e->ctx_emb = NULL;
    e->n_ctx_prompts = 0;
}

/* ------------------------------------------------------------------------ */
/* The formula                                                              */
/* ------------------------------------------------------------------------ */

int cm_ctx_combine(const cm_context_def *d, double s, double t, double threshold, double *score,
                   double *margin, const char **by)
{
    const int matches = t >= 0 && d->mode != CM_CTX_OFF && t >= d->threshold;
    const int raises = matches && (d->mode == CM_CTX_RAISE || d->mode == CM_CTX_BOTH);
    const int alone = matches && (d->mode == CM_CTX_ALONE || d->mode == CM_CTX_BOTH);
    *score = raises ? s + d->weight * t * (1 - s) : s;
    *margin = *score - threshold;
    if (alone && t - d->threshold > *margin)
        *margin = t - d->threshold;
    *by = s >= threshold        ? "image"
          : *score >= threshold ? "image+context"
          : alone               ? "context"
                                : NULL;
    return *margin >= 0;
}

/* ------------------------------------------------------------------------ */
/* Scoring texts                                                            */
/* ------------------------------------------------------------------------ */

struct cm_ctx_batch {
    size_t n;          /* inputs */
    size_t n_cats;     /* the engine's */
    cm_ctx_text *text; /* per input; text[i].text NULL: no context */
    size_t *first;     /* per input: the index of its first window among all inputs' */
    size_t *row;       /* per window of all inputs: its row in `cos` */
    float *cos;        /* [distinct windows, n_ctx_prompts] */
    double *t;         /* [n, n_cats]: best window's score, -1 none */
    size_t *best;      /* [n, n_cats]: that window, relative to the input's first */
};

void cm_ctx_batch_free(cm_ctx_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; b->text && i < b->n; i++)
        cm_ctx_text_free(&b->text[i]);
    cm_free(b->text);
    cm_free(b->first);
    cm_free(b->row);
    cm_free(b->cos);
    cm_free(b->t);
    cm_free(b->best);
    cm_free(b);
}

/* Window w of input i as a new NUL-terminated string; NULL out of memory. */
static char *window_text(const cm_ctx_batch *b, size_t i, size_t w)
{
    const cm_ctx_window *win = &b->text[i].win[w];
    char *t = cm_alloc(win->len + 1);
    if (t) {
        memcpy(t, b->text[i].text + win->start, win->len);
        t[win->len] = '\0';
    }
    return t;
}

/*
 * The distinct windows of all inputs into texts[0, *n_texts), each window's row in
 * b->row. The same text usually comes with every image of a call (a mail's body for
 * each attachment, --context for a folder): it goes through the text tower once.
 */
static clipmod_error distinct_windows(cm_ctx_batch *b, char **texts, uint64_t *hash,
                                      size_t *n_texts)
{
    size_t k = 0, u = 0;
    for (size_t i = 0; i < b->n; i++)
        for (size_t w = 0; w < b->text[i].n_windows; w++, k++) {
            const cm_ctx_window *win = &b->text[i].win[w];
            const char *src = b->text[i].text + win->start;
            const uint64_t h = cm_hash64(src, win->len, 11);
            size_t j = 0;
            while (j < u && (hash[j] != h || strlen(texts[j]) != win->len ||
                             memcmp(texts[j], src, win->len)))
                j++;
            if (j == u) {
                texts[u] = window_text(b, i, w);
                if (!texts[u])
                    return CLIPMOD_E_NOMEM;
                hash[u++] = h;
            }
            b->row[k] = j;
        }
    *n_texts = u;
    return CLIPMOD_OK;
}

/* Embed the distinct windows of every input in one call, and their cosines with the table. */
static clipmod_error embed_windows(const clipmod_engine *e, cm_ctx_batch *b, size_t total)
{
    const size_t dim = clipmod_model_embed_dim(e->model);
    char **texts = cm_calloc(total, sizeof *texts);
    uint64_t *hash = cm_alloc(total * sizeof *hash);
    float *emb = cm_alloc(total * dim * sizeof *emb);
    size_t u = 0;
    b->row = cm_alloc(total * sizeof *b->row);
    clipmod_error rc = texts && hash && emb && b->row ? CLIPMOD_OK : CLIPMOD_E_NOMEM;
    if (!rc)
        rc = distinct_windows(b, texts, hash, &u);
    if (!rc)
        rc = clipmod_embed_texts(e->model, (const char *const *)texts, u, emb, NULL, NULL);
    if (!rc) {
        b->cos = cm_alloc(u * e->n_ctx_prompts * sizeof *b->cos);
        if (!b->cos)
            rc = CLIPMOD_E_NOMEM;
    }
    if (!rc)
        cm_linear_rows(emb, (int)u, (int)dim, e->ctx_emb, 0, (int)e->n_ctx_prompts, b->cos);
    for (size_t j = 0; texts && j < total; j++)
        cm_free(texts[j]);
    cm_free(texts);
    cm_free(hash);
    cm_free(emb);
    return rc;
}

/* Each category's best window of input i. */
static void score_windows(const clipmod_engine *e, cm_ctx_batch *b, size_t i)
{
    const float scale = clipmod_model_logit_scale(e->model);
    for (size_t c = 0; c < e->n_cats; c++) {
        double *t = &b->t[i * b->n_cats + c];
        *t = -1;
        if (!e->cats[c].ctx || !b->cos)
            continue;
        for (size_t w = 0; w < b->text[i].n_windows; w++) {
            double s, best_cos;
            const float *cos = b->cos + b->row[b->first[i] + w] * e->n_ctx_prompts;
            cm_score_frame(e->cats[c].ctx, cos, scale, &s, &best_cos, NULL);
            if (s > *t) {
                *t = s;
                b->best[i * b->n_cats + c] = w;
            }
        }
    }
}

/*
 * The index of an earlier text equal to texts[i] (len bytes), or -1. The same text
 * usually comes with every image of a call (--context for a folder, a mail's body):
 * it is cleaned and cut into windows once. Pointers are compared first: callers pass
 * the same buffer.
 */
static long same_text_before(const char *const *texts, const size_t *lens, size_t i, size_t len,
                             size_t max_bytes)
{
    /* Only what cleaning reads counts (up to one byte past the cap): a 10 MB text is
     * never compared whole. */
    const size_t cmp = len < max_bytes ? len : max_bytes + 1;
    for (size_t j = i; j-- > 0;) {
        if (!texts[j])
            continue;
        const size_t lj = lens && lens[j] ? lens[j] : strlen(texts[j]);
        if (lj == len && (texts[j] == texts[i] || !memcmp(texts[j], texts[i], cmp)))
            return (long)j;
    }
    return -1;
}

/* A deep copy of a prepared text. */
static clipmod_error ctx_text_copy(const cm_ctx_text *from, cm_ctx_text *to)
{
    *to = *from;
    to->text = cm_alloc(from->len + 1);
    to->win = cm_alloc((from->n_windows ? from->n_windows : 1) * sizeof *to->win);
    if (!to->text || !to->win) {
        cm_free(to->text);
        cm_free(to->win);
        memset(to, 0, sizeof *to);
        return CLIPMOD_E_NOMEM;
    }
    memcpy(to->text, from->text, from->len + 1);
    memcpy(to->win, from->win, from->n_windows * sizeof *to->win);
    return CLIPMOD_OK;
}

clipmod_error cm_ctx_score_texts(const clipmod_engine *e, const char *const *texts,
                                 const size_t *lens, size_t n, cm_ctx_batch **out)
{
    cm_ctx_batch *b = cm_calloc(1, sizeof *b);
    *out = NULL;
    if (!b)
        return CLIPMOD_E_NOMEM;
    b->n = n;
    b->n_cats = e->n_cats;
    b->text = cm_calloc(n ? n : 1, sizeof *b->text);
    b->first = cm_calloc(n ? n : 1, sizeof *b->first);
    const size_t cells = n * e->n_cats > 0 ? n * e->n_cats : 1;
    b->t = cm_alloc(cells * sizeof *b->t);
    b->best = cm_calloc(cells, sizeof *b->best);
    clipmod_error rc = b->text && b->first && b->t && b->best ? CLIPMOD_OK : CLIPMOD_E_NOMEM;
    size_t total = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        if (!texts[i])
            continue;
        const size_t len = lens && lens[i] ? lens[i] : strlen(texts[i]);
        const long same =
            same_text_before(texts, lens, i, len, e->settings[CLIPMOD_MAX_CONTEXT_BYTES]);
        rc = same >= 0 ? ctx_text_copy(&b->text[same], &b->text[i])
                       : cm_ctx_prepare(e->model->tok, texts[i], len,
                                        e->settings[CLIPMOD_MAX_CONTEXT_BYTES],
                                        e->settings[CLIPMOD_MAX_CONTEXT_WINDOWS], &b->text[i]);
        b->first[i] = total;
        total += b->text[i].n_windows;
    }
    /* Without a category that uses context the text is only cleaned and reported. */
    if (!rc && total && e->n_ctx_prompts)
        rc = embed_windows(e, b, total);
    for (size_t i = 0; !rc && i < n; i++)
        score_windows(e, b, i);
    if (rc)
        cm_ctx_batch_free(b);
    else
        *out = b;
    return rc;
}

double cm_ctx_batch_score(const cm_ctx_batch *b, size_t i, size_t c)
{
    return b->t[i * b->n_cats + c];
}

/* ------------------------------------------------------------------------ */
/* Into results                                                             */
/* ------------------------------------------------------------------------ */

static int cmp_prob_desc(const void *a, const void *b)
{
    const double x = ((const cm_prompt_score *)a)->prob, y = ((const cm_prompt_score *)b)->prob;
    return (x < y) - (x > y);
}

/* The explanation of category c's context: every candidate on its best window. */
static clipmod_error explain(const clipmod_engine *e, const cm_ctx_batch *b, size_t i, size_t c,
                             cm_cat_result *cr)
{
    const cm_cat *x = e->cats[c].ctx;
    const size_t w = b->best[i * b->n_cats + c];
    const float *cos = b->cos + b->row[b->first[i] + w] * e->n_ctx_prompts;
    double unused_s, unused_cos, *probs = cm_alloc((x->n_cand ? x->n_cand : 1) * sizeof *probs);
    cr->ctx_prompts = cm_calloc(x->n_cand ? x->n_cand : 1, sizeof *cr->ctx_prompts);
    char *window = window_text(b, i, w);
    if (!probs || !cr->ctx_prompts || !window) {
        cm_free(probs);
        cm_free(window);
        return CLIPMOD_E_NOMEM;
    }
    cr->s.context_window = window;
    cm_score_frame(x, cos, clipmod_model_logit_scale(e->model), &unused_s, &unused_cos, probs);
    clipmod_error rc = CLIPMOD_OK;
    for (size_t j = 0; j < x->n_cand; j++) {
        cm_prompt_score *ps = &cr->ctx_prompts[j];
        *ps = (cm_prompt_score){NULL, probs[j], cos[x->cand[j]], x->kind[j]};
        ps->text = cm_strdup(e->ctx_prompts[x->cand[j]]);
        if (!ps->text)
            rc = CLIPMOD_E_NOMEM;
        cr->n_ctx_prompts++;
    }
    cm_free(probs);
    if (rc)
        return rc;
    qsort(cr->ctx_prompts, cr->n_ctx_prompts, sizeof *cr->ctx_prompts, cmp_prob_desc);
    for (size_t j = 0; j < cr->n_ctx_prompts && !cr->s.context_prompt; j++)
        if (cr->ctx_prompts[j].kind == CM_KIND_CATEGORY)
            cr->s.context_prompt = cr->ctx_prompts[j].text;
    return CLIPMOD_OK;
}

clipmod_error cm_ctx_apply(const clipmod_engine *e, const cm_ctx_batch *b, size_t i,
                           clipmod_result *r)
{
    const cm_ctx_text *tx = b ? &b->text[i] : NULL;
    if (tx && tx->text)
        r->ctx =
            (clipmod_context_info){sizeof r->ctx,     1,       tx->bytes,  tx->len, tx->n_windows,
                                   tx->windows_total, tx->cut, tx->cleaned};
    for (size_t c = 0; c < r->n_cats; c++) {
        cm_cat_result *cr = &r->cats[c];
        const cm_context_def *d = &e->cats[c].def->context;
        const double s = cr->s.score, t = b ? cm_ctx_batch_score(b, i, c) : -1;
        cr->s.image_score = s;
        cr->s.context_score = t;
        cr->s.flagged_by = cr->s.flagged ? "image" : NULL;
        if (t < 0)
            continue;
        const char *by;
        const int hit = cm_ctx_combine(d, s, t, cr->s.threshold, &cr->s.score, &cr->s.margin, &by);
        cr->s.flagged = hit && cr->s.action != CLIPMOD_ACTION_ALLOW;
        cr->s.flagged_by = cr->s.flagged ? by : NULL;
        cr->ctx_mode = (int)d->mode;
        cr->ctx_weight = d->weight;
        cr->ctx_threshold = d->threshold;
        clipmod_error rc = explain(e, b, i, c, cr);
        if (rc)
            return rc;
    }
    return CLIPMOD_OK;
}
