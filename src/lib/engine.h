/*
 * engine.h - a compiled engine: model, policy and prompt embeddings (internal).
 */
#ifndef CM_ENGINE_H
#define CM_ENGINE_H

#include <stdatomic.h>
#include <stddef.h>

#include "clipmod/clipmod.h"
#include "policy.h"
#include "result.h"

struct cm_plugins;
struct cm_allow;
struct cm_head;

/* One category as the scorer sees it: indices into the engine's prompt table. */
typedef struct cm_cat {
    const cm_category *def; /* in the policy */
    size_t *cand;           /* candidates: own prompts first, then contrast, then neutral */
    cm_prompt_kind *kind;
    size_t n_cand, n_own;
    struct cm_head *head; /* the category's learned head, checked against the model; or NULL */
} cm_cat;

struct clipmod_engine {
    _Atomic long refs;          /* clipmod_engine_ref / _free */
    const clipmod_model *model; /* borrowed */
    uint64_t settings[CLIPMOD_SETTING__COUNT];
    char *cache_dir; /* NULL: no cache */
    int compiled;
    cm_policy *policy;
    char **prompts; /* unique prompt texts, before templates */
    size_t n_prompts;
    float *prompt_emb; /* [n_prompts, dim]: normalised mean over templates */
    cm_cat *cats;
    size_t n_cats;
    char *policy_json;
    char policy_fingerprint[CM_FINGERPRINT_SIZE]; /* hex SHA-256 of the policy's files */
    size_t texts_cached, texts_computed;          /* prompt expansions at compile time */
    struct cm_plugins *plugins;
    struct cm_allow *fetch_allow;   /* fetch mode: the operator's exceptions to the SSRF guard */
    struct cm_overrides *overrides; /* what-if changes to the policy (override.c) */
};

/* fingerprint.c: p's fingerprint (taken by the loader from the bytes it read) into
 * out; 0, or -1 (out "") for a policy without one (NULL). Cannot otherwise fail. */
int cm_policy_fingerprint(const cm_policy *p, char out[CM_FINGERPRINT_SIZE]);

/* override.c: apply the engine's overrides to a freshly loaded policy; unknown
 * categories are appended to *problems and give CLIPMOD_E_POLICY. */
struct cm_overrides;
clipmod_error cm_overrides_apply(const struct cm_overrides *list, cm_policy *p, char **problems);
void cm_overrides_free(struct cm_overrides *list);

/*
 * Score one frame: `cos` holds the frame's cosine with every prompt of the engine.
 * Fills c->s.score, cosine and, when `prompts` is not NULL, every candidate's
 * probability (n_cand entries, in candidate order).
 */
void cm_score_frame(const cm_cat *cat, const float *cos, float logit_scale, double *score,
                    double *best_cos, double *probs);

/*
 * A frame's category score by the policy's `score:` mode from the prompts' score
 * and the frame's embedding `emb` (unused without a head); *head gets the head's
 * probability (-1 without one) and *by what the score is ("prompts", "head", "mean").
 */
double cm_score_mix(const cm_cat *cat, double prompts, const float *emb, double *head,
                    const char **by);

/*
 * Combine the per-frame scores of one category (frames values) by the policy's
 * rule; returns the combined score and sets *frame (the frame it comes from) and
 * *hits (frames at or over the threshold).
 */
double cm_combine_frames(const double *scores, int frames, const cm_policy *p, double threshold,
                         int *frame, int *hits);

#endif
