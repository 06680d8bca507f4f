/*
 * tuning.c - what policy tuning needs from a compiled engine (clipmod policy evaluate).
 *
 * Owns the public functions that let a tool score a labelled set many times without
 * running the image tower again: the compiled policy's categories and prompt table,
 * the embeddings of inputs decoded exactly as a scan decodes them (same limits, same
 * sampled frames), their cosines with every prompt, and scores recomputed from those
 * cosines with the scanner's own formula (cm_score_frame, cm_combine_frames) and,
 * for prompt attribution, with some prompts left out. Verdicts come from the
 * scanner's decision rule (cm_result_decide), so evaluation never reimplements it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "ctxscore.h"
#include "engine.h"
#include "head.h"
#include "image.h"
#include "imgcache.h"
#include "model.h"
#include "ops.h"

/* Decoding options as clipmod_scan_batch uses them: the one helper every scan-like
 * decode fills them with, so a new limit reaches evaluation too. */
static cm_image_opts scan_opts(const clipmod_engine *e)
{
    cm_image_opts o;
    cm_image_opts_from_settings(&o, e->settings, e->policy->frames);
    return o;
}

size_t clipmod_engine_category_count(const clipmod_engine *e)
{
    return e && e->compiled ? e->n_cats : 0;
}

clipmod_error clipmod_engine_category_info(const clipmod_engine *e, size_t c,
                                           clipmod_category_info *out)
{
    if (!e || !out || !e->compiled || c >= e->n_cats)
        return CLIPMOD_E_INVALID_ARG;
    const cm_category *d = e->cats[c].def;
    memset(out, 0, sizeof *out);
    out->id = d->id;
    out->threshold = d->threshold;
    out->action = (clipmod_action)d->action;
    out->threshold_file = d->threshold_pos.file;
    out->threshold_line = d->threshold_pos.line;
    out->threshold_column = d->threshold_pos.column;
    out->n_candidates = e->cats[c].n_cand;
    return CLIPMOD_OK;
}

clipmod_error clipmod_engine_candidate(const clipmod_engine *e, size_t c, size_t j, size_t *row,
                                       clipmod_prompt_kind *kind)
{
    if (!e || !e->compiled || c >= e->n_cats || j >= e->cats[c].n_cand)
        return CLIPMOD_E_INVALID_ARG;
    if (row)
        *row = e->cats[c].cand[j];
    if (kind)
        *kind = (clipmod_prompt_kind)e->cats[c].kind[j];
    return CLIPMOD_OK;
}

long clipmod_engine_category_find(const clipmod_engine *e, const char *id, const char **near)
{
    if (near)
        *near = NULL;
    if (!e || !id || !e->compiled)
        return -1;
    for (size_t c = 0; c < e->n_cats; c++)
        if (!strcmp(e->cats[c].def->id, id))
            return (long)c;
    const char **names = cm_alloc((e->n_cats ? e->n_cats : 1) * sizeof *names);
    if (names && near) {
        for (size_t c = 0; c < e->n_cats; c++)
            names[c] = e->cats[c].def->id;
        *near = cm_nearest_name(id, names, e->n_cats);
    }
    cm_free(names);
    return -1;
}

size_t clipmod_engine_prompt_count(const clipmod_engine *e)
{
    return e && e->compiled ? e->n_prompts : 0;
}

const char *clipmod_engine_prompt_text(const clipmod_engine *e, size_t row)
{
    return e && e->compiled && row < e->n_prompts ? e->prompts[row] : NULL;
}

/* Decode input `in` as a scan would; an input that cannot be scanned gets *why. */
static clipmod_error decode_one(const clipmod_engine *e, const clipmod_input *in,
                                const cm_image_opts *o, cm_frames *frames, clipmod_result **why)
{
    const char *name = in->name ? in->name : in->path ? in->path : "(memory)";
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_reason reason;

    if (!in->path && !in->data && in->len)
        return CLIPMOD_E_INVALID_ARG;
    clipmod_error drc = cm_image_decode(e->model, in->path, in->path ? NULL : in->data, in->len, o,
                                        frames, &reason, err);
    if (drc == CLIPMOD_E_NOMEM || drc == CLIPMOD_E_INIT || !drc)
        return drc;
    *why = cm_result_new(name, clipmod_engine_policy_name(e), clipmod_model_describe(e->model));
    if (!*why)
        return CLIPMOD_E_NOMEM;
    /* The decoder's messages start with the path; the result names it already. */
    const char *text = err;
    size_t plen = in->path ? strlen(in->path) : 0;
    if (plen && !strncmp(err, in->path, plen) && !strncmp(err + plen, ": ", 2))
        text = err + plen + 2;
    cm_result_unscanned(*why, reason, text);
    return CLIPMOD_OK;
}

/* Embed every frame of `frames` (n inputs) in one pass into each input's own array. */
static clipmod_error embed_frames(const clipmod_engine *e, cm_frames *frames, size_t n, float **emb)
{
    const size_t dim = clipmod_model_embed_dim(e->model);
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        total += (size_t)frames[i].count;
    if (!total)
        return CLIPMOD_OK;
    const clipmod_image **all = cm_alloc(total * sizeof *all);
    float *out = cm_alloc(total * dim * sizeof *out);
    clipmod_error rc = all && out ? CLIPMOD_OK : CLIPMOD_E_NOMEM;
    for (size_t i = 0; !rc && i < n; i++)
        for (int f = 0; f < frames[i].count; f++)
            all[k++] = frames[i].frames[f];
    if (!rc)
        rc = clipmod_embed_images(e->model, all, total, out, NULL);
    k = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        if (!frames[i].count)
            continue;
        size_t bytes = (size_t)frames[i].count * dim * sizeof *out;
        emb[i] = cm_alloc(bytes);
        if (!emb[i]) {
            rc = CLIPMOD_E_NOMEM;
            break;
        }
        memcpy(emb[i], out + k * dim, bytes);
        k += (size_t)frames[i].count;
    }
    cm_free(all);
    cm_free(out);
    return rc;
}

/* What the image cache says about one input of a batch. */
typedef struct cached_input {
    uint8_t key[CM_IMGCACHE_KEY];
    struct stat st;
    int keyed; /* the key could be computed: the input may be remembered */
    int hit;
} cached_input;

/* Look input i up: a hit gets its embeddings copied to *emb and is not decoded. */
static clipmod_error from_cache(clipmod_image_cache *cache, const clipmod_input *in,
                                const cm_image_opts *o, size_t dim, cached_input *ci, float **emb,
                                int *frames)
{
    cm_imgcache_key(in, o, ci->key, &ci->st, &ci->keyed);
    const float *hit = ci->keyed ? cm_imgcache_get(cache, ci->key, frames) : NULL;
    if (!hit)
        return CLIPMOD_OK;
    const size_t bytes = (size_t)*frames * dim * sizeof *hit;
    *emb = cm_alloc(bytes);
    if (!*emb)
        return CLIPMOD_E_NOMEM;
    memcpy(*emb, hit, bytes);
    ci->hit = 1;
    return CLIPMOD_OK;
}

/* Remember what was embedded: scanned inputs whose file did not change meanwhile. */
static clipmod_error to_cache(clipmod_image_cache *cache, const clipmod_input *in,
                              const cached_input *ci, const float *emb, int frames)
{
    if (ci->hit || !ci->keyed || !emb || frames < 1 ||
        (in->path && !cm_imgcache_same_file(in->path, &ci->st)))
        return CLIPMOD_OK;
    return cm_imgcache_put(cache, ci->key, emb, frames);
}

/*
 * The image tower's floats depend, in their last bits, on what else is in the batch
 * (the matrix products sum in another order). So that a cached run gives exactly
 * what a run without the cache gives, a call that embeds anything embeds all its
 * inputs together, as without the cache: the hits are decoded again and counted as
 * misses. (A call whose misses all fail to decode keeps its hits.)
 */
static clipmod_error rebatch(const clipmod_engine *e, clipmod_image_cache *cache,
                             const clipmod_input *inputs, size_t n, const cm_image_opts *o,
                             cached_input *ci, cm_frames *fr, float **emb, int *frames,
                             clipmod_result **unscanned)
{
    int any = 0;
    for (size_t i = 0; i < n; i++)
        any |= fr[i].count > 0;
    clipmod_error rc = CLIPMOD_OK;
    for (size_t i = 0; any && !rc && i < n; i++) {
        if (!ci[i].hit)
            continue;
        cm_free(emb[i]);
        emb[i] = NULL;
        frames[i] = 0;
        ci[i].hit = 0;
        cm_imgcache_unhit(cache);
        rc = decode_one(e, &inputs[i], o, &fr[i], &unscanned[i]);
    }
    return rc;
}

static void drop_all(size_t n, float **emb, int *frames, clipmod_result **unscanned)
{
    for (size_t i = 0; i < n; i++) {
        cm_free(emb[i]);
        emb[i] = NULL;
        frames[i] = 0;
        clipmod_result_free(unscanned[i]);
        unscanned[i] = NULL;
    }
}

static clipmod_error embed_inputs(const clipmod_engine *e, clipmod_image_cache *cache,
                                  const clipmod_input *inputs, size_t n, float **emb, int *frames,
                                  clipmod_result **unscanned)
{
    memset(emb, 0, n * sizeof *emb);
    memset(frames, 0, n * sizeof *frames);
    memset(unscanned, 0, n * sizeof *unscanned);
    const size_t dim = clipmod_model_embed_dim(e->model);
    cm_frames *fr = cm_calloc(n, sizeof *fr);
    cached_input *ci = cache ? cm_calloc(n, sizeof *ci) : NULL;
    clipmod_error rc = fr && (ci || !cache) ? CLIPMOD_OK : CLIPMOD_E_NOMEM;
    const cm_image_opts o = scan_opts(e);
    for (size_t i = 0; !rc && i < n; i++) {
        if (ci)
            rc = from_cache(cache, &inputs[i], &o, dim, &ci[i], &emb[i], &frames[i]);
        if (!rc && !emb[i])
            rc = decode_one(e, &inputs[i], &o, &fr[i], &unscanned[i]);
    }
    if (!rc && ci)
        rc = rebatch(e, cache, inputs, n, &o, ci, fr, emb, frames, unscanned);
    if (!rc)
        rc = embed_frames(e, fr, n, emb);
    for (size_t i = 0; fr && i < n; i++) {
        if (!rc && fr[i].count)
            frames[i] = fr[i].count;
        if (!rc && ci && !unscanned[i])
            rc = to_cache(cache, &inputs[i], &ci[i], emb[i], frames[i]);
        cm_frames_free(&fr[i]);
    }
    cm_free(fr);
    cm_free(ci);
    if (rc)
        drop_all(n, emb, frames, unscanned);
    return rc;
}

clipmod_error clipmod_engine_embed_inputs_cached(const clipmod_engine *e,
                                                 clipmod_image_cache *cache,
                                                 const clipmod_input *inputs, size_t n, float **emb,
                                                 int *frames, clipmod_result **unscanned)
{
    clipmod_input *copy;
    const clipmod_input *view;
    if (!e || !inputs || !emb || !frames || !unscanned || !n || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    clipmod_error rc = cm_inputs_view(inputs, n, &copy, &view);
    if (rc) {
        memset(emb, 0, n * sizeof *emb);
        memset(frames, 0, n * sizeof *frames);
        memset(unscanned, 0, n * sizeof *unscanned);
        return rc;
    }
    rc = embed_inputs(e, cache, view, n, emb, frames, unscanned);
    cm_free(copy);
    return rc;
}

clipmod_error clipmod_engine_embed_inputs(const clipmod_engine *e, const clipmod_input *inputs,
                                          size_t n, float **emb, int *frames,
                                          clipmod_result **unscanned)
{
    return clipmod_engine_embed_inputs_cached(e, NULL, inputs, n, emb, frames, unscanned);
}

clipmod_error clipmod_engine_cosines(const clipmod_engine *e, const float *emb, int frames,
                                     float *cos)
{
    if (!e || !emb || !cos || frames <= 0 || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    const size_t dim = clipmod_model_embed_dim(e->model);
    /* Both sides are unit vectors: the product is the cosine, as in scan.c. */
    cm_linear_rows(emb, frames, (int)dim, e->prompt_emb, 0, (int)e->n_prompts, cos);
    return CLIPMOD_OK;
}

/* Category `cat` without the candidates whose rows `skip` marks, into `tmp`, whose
 * cand and kind arrays (n_cand entries each) are the caller's. */
static void without(const cm_cat *cat, const unsigned char *skip, cm_cat *tmp)
{
    size_t *cand = tmp->cand;
    cm_prompt_kind *kind = tmp->kind;
    *tmp = *cat;
    tmp->cand = cand;
    tmp->kind = kind;
    tmp->n_cand = tmp->n_own = 0;
    for (size_t j = 0; j < cat->n_cand; j++) {
        if (skip[cat->cand[j]])
            continue;
        tmp->cand[tmp->n_cand] = cat->cand[j];
        tmp->kind[tmp->n_cand++] = cat->kind[j];
        if (j < cat->n_own)
            tmp->n_own++;
    }
}

/* Candidates on the stack up to this many; more (rare) are allocated. */
#define STACK_CANDIDATES 512

/* Category c's score from the frames' cosines, without the prompts `skip` marks. */
static clipmod_error score_one(const clipmod_engine *e, size_t c, const float *cos, int frames,
                               const unsigned char *skip, double *score)
{
    const float scale = clipmod_model_logit_scale(e->model);
    const cm_cat *cat = &e->cats[c];
    double fs[64], fc[64];
    size_t cand_stack[STACK_CANDIDATES];
    cm_prompt_kind kind_stack[STACK_CANDIDATES];
    cm_cat tmp;
    size_t *cand = NULL;
    cm_prompt_kind *kind = NULL;
    if (skip) {
        const int big = cat->n_cand > STACK_CANDIDATES;
        cand = big ? cm_alloc(cat->n_cand * sizeof *cand) : NULL;
        kind = big ? cm_alloc(cat->n_cand * sizeof *kind) : NULL;
        if (big && (!cand || !kind)) {
            cm_free(cand);
            cm_free(kind);
            return CLIPMOD_E_NOMEM;
        }
        tmp.cand = big ? cand : cand_stack;
        tmp.kind = big ? kind : kind_stack;
        without(cat, skip, &tmp);
        cat = &tmp;
    }
    for (int f = 0; f < frames; f++) {
        if (cat->n_own)
            cm_score_frame(cat, cos + (size_t)f * e->n_prompts, scale, &fs[f], &fc[f], NULL);
        else
            fs[f] = 0.0; /* every own prompt left out: nothing can match */
    }
    int best, hits;
    *score = cm_combine_frames(fs, frames, e->policy, cat->def->threshold, &best, &hits);
    cm_free(cand);
    cm_free(kind);
    return CLIPMOD_OK;
}

clipmod_error clipmod_engine_score_cosines(const clipmod_engine *e, const float *cos, int frames,
                                           const unsigned char *skip, double *scores)
{
    if (!e || !cos || !scores || frames <= 0 || frames > 64 || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    for (size_t c = 0; c < e->n_cats; c++) {
        clipmod_error rc = score_one(e, c, cos, frames, skip, &scores[c]);
        if (rc)
            return rc;
    }
    return CLIPMOD_OK;
}

clipmod_error clipmod_engine_score_category(const clipmod_engine *e, size_t c, const float *cos,
                                            int frames, const unsigned char *skip, double *score)
{
    if (!e || !cos || !score || frames <= 0 || frames > 64 || !e->compiled || c >= e->n_cats)
        return CLIPMOD_E_INVALID_ARG;
    return score_one(e, c, cos, frames, skip, score);
}

clipmod_error clipmod_engine_verdict(const clipmod_engine *e, const double *scores,
                                     clipmod_state *state, clipmod_action *action, long *top)
{
    return clipmod_engine_verdict_context(e, scores, NULL, NULL, NULL, state, action, top);
}

clipmod_error clipmod_engine_context_scores(const clipmod_engine *e, const char *text, size_t len,
                                            double *text_scores)
{
    cm_ctx_batch *b = NULL;
    if (!e || !text || !text_scores || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    const char *texts[1] = {text};
    clipmod_error rc = cm_ctx_score_texts(e, texts, &len, 1, &b);
    for (size_t c = 0; !rc && c < e->n_cats; c++)
        text_scores[c] = cm_ctx_batch_score(b, 0, c);
    cm_ctx_batch_free(b);
    return rc;
}

clipmod_error clipmod_engine_verdict_context(const clipmod_engine *e, const double *scores,
                                             const double *text_scores, double *combined,
                                             unsigned char *hits, clipmod_state *state,
                                             clipmod_action *action, long *top)
{
    if (!e || !scores || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    struct clipmod_result r;
    memset(&r, 0, sizeof r);
    r.cats = cm_calloc(e->n_cats ? e->n_cats : 1, sizeof *r.cats);
    if (!r.cats)
        return CLIPMOD_E_NOMEM;
    r.n_cats = e->n_cats;
    for (size_t c = 0; c < e->n_cats; c++) {
        clipmod_category_score *s = &r.cats[c].s;
        s->id = e->cats[c].def->id;
        s->threshold = e->cats[c].def->threshold;
        s->action = (clipmod_action)e->cats[c].def->action;
        const char *by;
        const int hit =
            cm_ctx_combine(&e->cats[c].def->context, scores[c], text_scores ? text_scores[c] : -1,
                           s->threshold, &s->score, &s->margin, &by);
        s->flagged = hit && s->action != CLIPMOD_ACTION_ALLOW;
        if (combined)
            combined[c] = s->score;
        if (hits)
            hits[c] = (unsigned char)hit;
    }
    cm_result_decide(&r);
    if (state)
        *state = r.state;
    if (action)
        *action = r.action;
    if (top) {
        *top = -1;
        for (size_t c = 0; c < e->n_cats; c++)
            if (r.top_category == r.cats[c].s.id)
                *top = (long)c;
    }
    cm_free(r.cats);
    return CLIPMOD_OK;
}

/* Category c over the frames: prompts, head (-1 without one) and the policy's mix. */
static void score_mixed(const clipmod_engine *e, size_t c, const float *emb, const float *cos,
                        int frames, double out[3])
{
    const float scale = clipmod_model_logit_scale(e->model);
    const size_t dim = clipmod_model_embed_dim(e->model);
    const cm_cat *cat = &e->cats[c];
    double ps[64], hs[64], mix[64], unused;
    const char *by;
    int best, hits;
    for (int f = 0; f < frames; f++) {
        cm_score_frame(cat, cos + (size_t)f * e->n_prompts, scale, &ps[f], &unused, NULL);
        mix[f] = cm_score_mix(cat, ps[f], emb + (size_t)f * dim, &hs[f], &by);
    }
    const double t = cat->def->threshold;
    out[0] = cm_combine_frames(ps, frames, e->policy, t, &best, &hits);
    out[1] = cat->head ? cm_combine_frames(hs, frames, e->policy, t, &best, &hits) : -1;
    out[2] = cm_combine_frames(mix, frames, e->policy, t, &best, &hits);
}

clipmod_error clipmod_engine_score_frames(const clipmod_engine *e, const float *emb,
                                          const float *cos, int frames, double *scores,
                                          double *prompt_scores, double *head_scores)
{
    if (!e || !emb || !cos || !scores || frames <= 0 || frames > 64 || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    for (size_t c = 0; c < e->n_cats; c++) {
        double v[3];
        score_mixed(e, c, emb, cos, frames, v);
        scores[c] = v[2];
        if (prompt_scores)
            prompt_scores[c] = v[0];
        if (head_scores)
            head_scores[c] = v[1];
    }
    return CLIPMOD_OK;
}

int clipmod_engine_head_trained_on(const clipmod_engine *e, size_t c,
                                   const unsigned char digest[32])
{
    if (!e || !e->compiled || c >= e->n_cats || !e->cats[c].head || !digest)
        return -1;
    return cm_head_trained_on(e->cats[c].head, digest);
}
