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
    struct cm_cat *ctx;   /* its context candidates (rows of the engine's ctx table: context
                             prompts, contrast, neutral, context-neutral), or NULL */
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
    /* Context (ctxscore.c): the untemplated texts the categories' contexts are scored
     * against; NULL/0 when no category uses context. */
    char **ctx_prompts;
    size_t n_ctx_prompts;
    float *ctx_emb; /* [n_ctx_prompts, dim] */
    struct cm_plugins *plugins;
    struct cm_allow *fetch_allow;   /* fetch mode: the operator's exceptions to the SSRF guard */
    struct cm_overrides *overrides; /* what-if changes to the policy (override.c) */
};

/*
 * A table of distinct texts (prompt rows) being built: add() returns a text's row,
 * adding a copy if it is new (-1 out of memory). release() frees the index only; the
 * texts stay in *text for the engine to own.
 */
typedef struct cm_intern {
    char **text;
    size_t n;
    uint64_t *hash;
    size_t *row;
    size_t size; /* power of two */
} cm_intern;
clipmod_error cm_intern_init(cm_intern *ix, size_t max_rows);
long cm_intern_add(cm_intern *ix, const char *text);
void cm_intern_release(cm_intern *ix);

/*
 * Embed `n` texts, each the normalised mean of its expansions by `templates`, into a
 * new [n, dim] array *out, through the engine's prompt cache; counts go to
 * texts_cached/_computed and problems (warnings, a failure's reason) to *problems.
 */
clipmod_error cm_engine_embed_table(clipmod_engine *e, char *const *texts, size_t n,
                                    const char *const *templates, size_t n_templates, float **out,
                                    char **problems);

/* ctxscore.c: build and embed the context tables at compile; free them. */
clipmod_error cm_ctx_compile(clipmod_engine *e, char **problems);
void cm_ctx_uncompile(clipmod_engine *e);

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
