/*
 * ctxscore.h - context-aware scores (internal; see ctxscore.c).
 */
#ifndef CM_CTXSCORE_H
#define CM_CTXSCORE_H

#include "engine.h"

/*
 * The one formula of clipmod-policy(5) CONTEXT: image score `s`, context score `t`
 * (-1: none), the category's `threshold`. *score receives the combined score, *margin
 * how far past its bar the category is (>= 0: it hits; the context's own bar counts
 * in modes alone and both), *by what made it hit ("image", "image+context",
 * "context"; NULL when it does not). Returns whether it hits.
 */
int cm_ctx_combine(const cm_context_def *d, double s, double t, double threshold, double *score,
                   double *margin, const char **by);

/* The context scores of a batch of inputs. */
typedef struct cm_ctx_batch cm_ctx_batch;

/*
 * Clean, window and score texts[i] (lens[i] bytes, 0 or lens NULL: up to the NUL;
 * texts[i] NULL: none) for every category: the windows of all texts go through the
 * text tower in one call. *out owns the scores (cm_ctx_batch_free).
 */
clipmod_error cm_ctx_score_texts(const clipmod_engine *e, const char *const *texts,
                                 const size_t *lens, size_t n, cm_ctx_batch **out);

/* Text i's score for category c: the best window's; -1 without context. */
double cm_ctx_batch_score(const cm_ctx_batch *b, size_t i, size_t c);

/*
 * Apply text i's context to result r, whose categories hold their image scores: the
 * combined scores, flags, what flagged, the best window and its explanation, and the
 * result's context info. `b` may be NULL (no context): flagged_by is still set.
 */
clipmod_error cm_ctx_apply(const clipmod_engine *e, const cm_ctx_batch *b, size_t i,
                           clipmod_result *r);

/* Accepts NULL. */
void cm_ctx_batch_free(cm_ctx_batch *b);

#endif
