/*
 * scan.c - scanning inputs with a compiled engine.
 *
 * A batch's inputs are decoded in parallel, one input per thread at a time, as
 * many threads as the library's pool (each under the engine's limits; a failure
 * becomes that input's "unscanned" verdict with its reason), then every sampled
 * frame of every input goes through the image tower in one batched pass, and one
 * GEMM gives the cosine of each frame with each distinct prompt. Scores, frame
 * combination and the decision follow the policy; plugins see the result last.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "ctxscore.h"
#include "engine.h"
#include "image.h"
#include "model.h"
#include "ops.h"
#include "plugin_host.h"
#include "pool.h"

/* Decoding threads per call at most (the pool's size decides, up to this). */
#define CM_MAX_DECODE_THREADS 64

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_prob_desc(const void *a, const void *b)
{
    const double x = ((const cm_prompt_score *)a)->prob, y = ((const cm_prompt_score *)b)->prob;
    return (x < y) - (x > y);
}

/* Fill result `r` from its frames' cosines (frames x n_prompts) and embeddings. */
static clipmod_error score_input(const clipmod_engine *e, const float *cos, const float *emb,
                                 int frames, clipmod_result *r)
{
    const float scale = clipmod_model_logit_scale(e->model);
    const size_t dim = clipmod_model_embed_dim(e->model);
    double frame_scores[CM_MAX_SAMPLES], frame_cos[CM_MAX_SAMPLES];
    double prompt_scores[CM_MAX_SAMPLES], head_scores[CM_MAX_SAMPLES];
    const char *by[CM_MAX_SAMPLES];
    clipmod_error rc = CLIPMOD_OK;

    r->cats = cm_calloc(e->n_cats ? e->n_cats : 1, sizeof *r->cats);
    if (!r->cats)
        return CLIPMOD_E_NOMEM;
    r->n_cats = e->n_cats;
    for (size_t c = 0; c < e->n_cats; c++) {
        const cm_cat *cat = &e->cats[c];
        cm_cat_result *cr = &r->cats[c];
        for (int f = 0; f < frames; f++) {
            cm_score_frame(cat, cos + (size_t)f * e->n_prompts, scale, &prompt_scores[f],
                           &frame_cos[f], NULL);
            frame_scores[f] =
                cm_score_mix(cat, prompt_scores[f], emb + (size_t)f * dim, &head_scores[f], &by[f]);
        }
        int best, hits;
        const double score =
            cm_combine_frames(frame_scores, frames, e->policy, cat->def->threshold, &best, &hits);
        cr->frame = best;
        cr->frames_hit = hits;
        cr->s.score = score;
        cr->s.threshold = cat->def->threshold;
        cr->s.margin = score - cat->def->threshold;
        cr->s.cosine = frame_cos[best];
        cr->s.prompt_score = prompt_scores[best];
        cr->s.head_score = head_scores[best];
        cr->s.score_by = by[best];
        cr->s.action = (clipmod_action)cat->def->action;
        /* An "allow" category is watched: scored and shown, but it never flags. */
        cr->s.flagged = score >= cat->def->threshold && cr->s.action != CLIPMOD_ACTION_ALLOW;
        cr->s.id = cm_strdup(cat->def->id);
        if (!cr->s.id) {
            rc = CLIPMOD_E_NOMEM;
            break;
        }
        /* The explanation: every candidate's probability on the deciding frame. */
        double *probs = cm_calloc(cat->n_cand ? cat->n_cand : 1, sizeof *probs);
        cr->prompts = cm_calloc(cat->n_cand ? cat->n_cand : 1, sizeof *cr->prompts);
        if (!probs || !cr->prompts) {
            cm_free(probs);
            rc = CLIPMOD_E_NOMEM;
            break;
        }
        double unused_score, unused_cos;
        const float *fc = cos + (size_t)best * e->n_prompts;
        cm_score_frame(cat, fc, scale, &unused_score, &unused_cos, probs);
        for (size_t j = 0; j < cat->n_cand; j++) {
            cm_prompt_score *ps = &cr->prompts[j];
            ps->prob = probs[j];
            ps->cosine = fc[cat->cand[j]];
            ps->kind = cat->kind[j];
            ps->text = cm_strdup(e->prompts[cat->cand[j]]);
            if (!ps->text)
                rc = CLIPMOD_E_NOMEM;
            cr->n_prompts++;
        }
        cm_free(probs);
        if (rc)
            break;
        qsort(cr->prompts, cr->n_prompts, sizeof *cr->prompts, cmp_prob_desc);
    }
    return rc;
}

/* Decide the verdict from the categories' flags, and the sentence that goes with it. */
static clipmod_error finish_input(const clipmod_engine *e, clipmod_result *r)
{
    cm_result_decide(r);
    /* The sentence for the sender or uploader: the deciding category's, else its action's. */
    const char *msg = clipmod_engine_action_message(e, r->action);
    for (size_t c = 0; c < e->n_cats; c++)
        if (r->top_category == r->cats[c].s.id && e->cats[c].def->message)
            msg = e->cats[c].def->message;
    return cm_result_set_message(r, msg);
}

static cm_image_opts image_opts(const clipmod_engine *e)
{
    cm_image_opts o;
    cm_image_opts_from_settings(&o, e->settings, e->policy->frames);
    return o;
}

/* One call's decoding, shared by the threads that decode its inputs. */
typedef struct decode_job {
    const clipmod_engine *e;
    const clipmod_input *inputs;
    size_t n;
    cm_image_opts o;
    cm_frames *frames;
    clipmod_result **out;
    double *ms;
    clipmod_error *fatal; /* per input: NOMEM or INIT stop the whole call */
    unsigned char *retry; /* per input: decode again alone (see decode_all) */
    int parallel;
    atomic_size_t next;
} decode_job;

/* Decode input i into frames[i]; a bad input becomes its result's "unscanned". */
static void decode_input(decode_job *j, size_t i)
{
    const clipmod_input *in = &j->inputs[i];
    clipmod_result *r = j->out[i];
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_reason reason;
    const double t0 = now_ms();
    clipmod_error drc =
        cm_image_decode(j->e->model, in->path, in->path ? NULL : (in->data ? in->data : ""),
                        in->len, &j->o, &j->frames[i], &reason, err);
    if (drc == CLIPMOD_E_NOMEM || drc == CLIPMOD_E_INIT) {
        j->fatal[i] = drc;
    } else if (drc && j->parallel &&
               (reason == CLIPMOD_REASON_DECODE_ERROR || reason == CLIPMOD_REASON_UNSUPPORTED ||
                reason == CLIPMOD_REASON_BLOCKED)) {
        j->retry[i] = 1;
    } else if (drc) {
        /* The decoder's messages start with the path; the result names it already. */
        const char *why = err;
        size_t plen = in->path ? strlen(in->path) : 0;
        if (plen && !strncmp(err, in->path, plen) && !strncmp(err + plen, ": ", 2))
            why = err + plen + 2;
        else if (!in->path && !strncmp(err, "image: ", 7))
            why = err + 7;
        cm_result_unscanned(r, reason, why);
    } else {
        r->width = j->frames[i].width;
        r->height = j->frames[i].height;
        r->frames_total = j->frames[i].total;
        r->frames_scanned = j->frames[i].count;
    }
    j->ms[i] = now_ms() - t0;
}

static void *decode_worker(void *arg)
{
    decode_job *j = arg;
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= j->n)
            return NULL;
        decode_input(j, i);
    }
}

/*
 * Decode every input, on as many threads as the library's pool has (--threads):
 * inputs are independent, each is decoded whole by one thread, so the frames are
 * the same whatever the thread count (tests/scan_parallel.sh checks it, setting
 * the count with CLIPMOD_DECODE_THREADS).
 */
static void decode_all(decode_job *j)
{
    pthread_t tid[CM_MAX_DECODE_THREADS];
    int want = cm_pool_threads(), started = 0;
    /* Tests set the decoders alone: the forward pass's sums may depend on its threads. */
    const char *env = getenv("CLIPMOD_DECODE_THREADS");
    if (env && *env >= '1' && *env <= '9')
        want = (int)strtol(env, NULL, 10);
    if (want > CM_MAX_DECODE_THREADS)
        want = CM_MAX_DECODE_THREADS;
    if ((size_t)want > j->n)
        want = (int)j->n;
    atomic_init(&j->next, 0);
    /* A thread that cannot be started leaves its share to the others. */
    while (started < want - 1 && !pthread_create(&tid[started], NULL, decode_worker, j))
        started++;
    j->parallel = started > 0;
    decode_worker(j);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    /* libvips keeps one error buffer for the process: while another thread decoded,
     * a failure's message (and the reason read from it) may have been another's, or
     * cleared by it. Those failures are decoded again, alone, for their own words. */
    j->parallel = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->retry[i]) {
            const double spent = j->ms[i];
            cm_frames_free(&j->frames[i]);
            decode_input(j, i);
            j->ms[i] += spent;
        }
}

/*
 * The context scores of the inputs that were scanned and came with text (NULL in
 * *out when none did): every window of the batch in one text-tower call.
 */
static clipmod_error context_scores(const clipmod_engine *e, const clipmod_input *inputs, size_t n,
                                    clipmod_result **results, cm_ctx_batch **out)
{
    const char **texts = NULL;
    size_t *lens = NULL, with = 0;
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        with += inputs[i].context && results[i]->state != CLIPMOD_STATE_UNSCANNED;
    if (!with)
        return CLIPMOD_OK;
    texts = cm_calloc(n, sizeof *texts);
    lens = cm_calloc(n, sizeof *lens);
    clipmod_error rc = texts && lens ? CLIPMOD_OK : CLIPMOD_E_NOMEM;
    for (size_t i = 0; !rc && i < n; i++)
        if (results[i]->state != CLIPMOD_STATE_UNSCANNED) {
            texts[i] = inputs[i].context;
            lens[i] = inputs[i].context_len;
        }
    if (!rc)
        rc = cm_ctx_score_texts(e, texts, lens, n, out);
    cm_free(texts);
    cm_free(lens);
    return rc;
}

/* One scan_inputs call's working memory: per input, then per frame of the batch. */
typedef struct scan_work {
    cm_frames *frames;    /* each input's decoded frames */
    double *decode_ms;    /* each input's decoding time */
    clipmod_error *fatal; /* an input's error that fails the whole batch */
    unsigned char *retry; /* decode_all's bookkeeping */
    size_t total;         /* frames of the inputs that were scanned */
    float *emb, *cos;     /* total x dim embeddings, total x prompts cosines */
    double forward_share; /* the image tower's milliseconds per frame */
    cm_ctx_batch *ctx;    /* context scores, NULL when no input came with text */
} scan_work;

static clipmod_error scan_work_alloc(scan_work *w, size_t n)
{
    memset(w, 0, sizeof *w);
    w->frames = cm_calloc(n, sizeof *w->frames);
    w->decode_ms = cm_calloc(n, sizeof *w->decode_ms);
    w->fatal = cm_calloc(n, sizeof *w->fatal);
    w->retry = cm_calloc(n, 1);
    return w->frames && w->decode_ms && w->fatal && w->retry ? CLIPMOD_OK : CLIPMOD_E_NOMEM;
}

static void scan_work_free(scan_work *w, size_t n)
{
    for (size_t i = 0; w->frames && i < n; i++)
        cm_frames_free(&w->frames[i]);
    cm_free(w->frames);
    cm_free(w->decode_ms);
    cm_free(w->fatal);
    cm_free(w->retry);
    cm_free(w->emb);
    cm_free(w->cos);
    cm_ctx_batch_free(w->ctx);
}

/* An empty result per input, named as the caller named it; refuses an input with
 * neither path nor data that claims bytes. */
static clipmod_error new_results(const clipmod_engine *e, const clipmod_input *inputs, size_t n,
                                 clipmod_result **out)
{
    for (size_t i = 0; i < n; i++) {
        const clipmod_input *in = &inputs[i];
        const char *name = in->name ? in->name : in->path ? in->path : "(memory)";
        out[i] =
            cm_result_new(name, clipmod_engine_policy_name(e), clipmod_model_describe(e->model));
        if (!out[i])
            return CLIPMOD_E_NOMEM;
        out[i]->top_prompts = (int)e->settings[CLIPMOD_TOP_PROMPTS];
        out[i]->demo_model = clipmod_model_is_demo(e->model);
        if (!in->path && !in->data && in->len)
            return CLIPMOD_E_INVALID_ARG;
    }
    return CLIPMOD_OK;
}

/* Decode every input (decode_all); an input that could not be read is unscanned in
 * its result, a fatal error (out of memory) fails the batch. Counts w->total. */
static clipmod_error decode_inputs(const clipmod_engine *e, const clipmod_input *inputs, size_t n,
                                   clipmod_result **out, scan_work *w)
{
    decode_job job = {.e = e,
                      .inputs = inputs,
                      .n = n,
                      .o = image_opts(e),
                      .frames = w->frames,
                      .out = out,
                      .ms = w->decode_ms,
                      .fatal = w->fatal,
                      .retry = w->retry};
    decode_all(&job);
    for (size_t i = 0; i < n; i++) {
        if (w->fatal[i])
            return w->fatal[i];
        if (out[i]->state != CLIPMOD_STATE_UNSCANNED)
            w->total += (size_t)w->frames[i].count;
    }
    return CLIPMOD_OK;
}

/* Every frame of the batch through the image tower at once, then its cosine with
 * every prompt; the time is shared out per frame. */
static clipmod_error embed_frames(const clipmod_engine *e, size_t n, scan_work *w)
{
    const size_t dim = clipmod_model_embed_dim(e->model);
    const double t_forward = now_ms();
    clipmod_error rc;

    if (!w->total)
        return CLIPMOD_OK;
    const clipmod_image **all = cm_calloc(w->total, sizeof *all);
    w->emb = cm_calloc(w->total * dim, sizeof *w->emb);
    w->cos = cm_calloc(w->total * (e->n_prompts ? e->n_prompts : 1), sizeof *w->cos);
    if (!all || !w->emb || !w->cos) {
        cm_free(all);
        return CLIPMOD_E_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (int f = 0; f < w->frames[i].count; f++)
            all[k++] = w->frames[i].frames[f];
    rc = clipmod_embed_images(e->model, all, w->total, w->emb, NULL);
    cm_free(all);
    if (rc)
        return rc;
    /* cos[frame, prompt] = emb . prompt_emb^T: both sides are unit vectors. */
    cm_linear_rows(w->emb, (int)w->total, (int)dim, e->prompt_emb, 0, (int)e->n_prompts, w->cos);
    w->forward_share = (now_ms() - t_forward) / (double)w->total;
    return CLIPMOD_OK;
}

/* Each scanned input's categories from its frames' rows, its context, its verdict. */
static clipmod_error score_results(const clipmod_engine *e, size_t n, clipmod_result **out,
                                   const scan_work *w)
{
    const size_t dim = clipmod_model_embed_dim(e->model);
    size_t row = 0;
    clipmod_error rc = CLIPMOD_OK;

    for (size_t i = 0; i < n; i++) {
        const int frames = w->frames[i].count;
        if (out[i]->state != CLIPMOD_STATE_UNSCANNED) {
            rc = score_input(e, w->cos + row * e->n_prompts, w->emb + row * dim, frames, out[i]);
            if (!rc)
                rc = cm_ctx_apply(e, w->ctx, i, out[i]);
            if (!rc)
                rc = finish_input(e, out[i]);
            if (rc)
                return rc;
            row += (size_t)frames;
        }
        out[i]->elapsed_ms = w->decode_ms[i] + w->forward_share * frames;
    }
    return CLIPMOD_OK;
}

static clipmod_error scan_inputs(const clipmod_engine *e, const clipmod_input *inputs, size_t n,
                                 clipmod_result **out)
{
    scan_work w;
    clipmod_error rc;

    if (!e || !inputs || !out || !n || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    memset(out, 0, n * sizeof *out);
    rc = scan_work_alloc(&w, n);
    if (!rc)
        rc = new_results(e, inputs, n, out);
    if (!rc)
        rc = decode_inputs(e, inputs, n, out, &w);
    if (!rc)
        rc = embed_frames(e, n, &w);
    if (!rc)
        rc = context_scores(e, inputs, n, out, &w.ctx);
    if (!rc)
        rc = score_results(e, n, out, &w);
    /* Plugins act on verdicts (log, quarantine): only once the whole batch succeeded,
     * so they never see a result the caller does not get. */
    for (size_t i = 0; !rc && i < n; i++)
        cm_plugins_notify(e->plugins, e, &inputs[i], out[i]);
    scan_work_free(&w, n);
    if (rc)
        for (size_t i = 0; i < n; i++) {
            clipmod_result_free(out[i]);
            out[i] = NULL;
        }
    return rc;
}

clipmod_error clipmod_scan_batch(const clipmod_engine *e, const clipmod_input *inputs, size_t n,
                                 clipmod_result **out)
{
    clipmod_input *copy;
    const clipmod_input *view;
    if (!e || !inputs || !out || !n || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    clipmod_error rc = cm_inputs_view(inputs, n, &copy, &view);
    if (!rc)
        rc = scan_inputs(e, view, n, out);
    else
        memset(out, 0, n * sizeof *out);
    cm_free(copy);
    return rc;
}

clipmod_error clipmod_scan_file(const clipmod_engine *e, const char *path, clipmod_result **out)
{
    if (!out)
        return CLIPMOD_E_INVALID_ARG;
    *out = NULL;
    if (!path)
        return CLIPMOD_E_INVALID_ARG;
    clipmod_input in = {.size = sizeof in, .path = path};
    return clipmod_scan_batch(e, &in, 1, out);
}

clipmod_error clipmod_scan_memory(const clipmod_engine *e, const void *buf, size_t len,
                                  const char *name, clipmod_result **out)
{
    if (!out)
        return CLIPMOD_E_INVALID_ARG;
    *out = NULL;
    clipmod_input in = {
        .size = sizeof in, .data = buf, .len = len, .name = name ? name : "(memory)"};
    return clipmod_scan_batch(e, &in, 1, out);
}
