/*
 * result.h - the verdict on one input (internal).
 *
 * A result owns copies of every string it shows (category ids, prompt texts, the
 * policy's name) so it stays valid after the engine that made it is replaced.
 */
#ifndef CM_RESULT_H
#define CM_RESULT_H

#include <stddef.h>

#include "clipmod/clipmod.h"

/* What a candidate prompt is to its category. */
typedef enum cm_prompt_kind { CM_KIND_CATEGORY, CM_KIND_CONTRAST, CM_KIND_NEUTRAL } cm_prompt_kind;

typedef struct cm_prompt_score {
    const char *text; /* owned by the result's string arena */
    double prob;      /* softmax probability within the category's candidates */
    double cosine;
    cm_prompt_kind kind;
} cm_prompt_score;

typedef struct cm_cat_result {
    clipmod_category_score s; /* s.id points into the arena */
    cm_prompt_score *prompts; /* every candidate, most probable first */
    size_t n_prompts;
    int frame;      /* index of the sampled frame the score comes from */
    int frames_hit; /* sampled frames whose score reached the threshold */
    /* Context (ctxscore.c), when the category uses it and the input had some: */
    int ctx_mode; /* cm_ctx_mode; 0: no context for this category */
    double ctx_weight, ctx_threshold;
    cm_prompt_score *ctx_prompts; /* every context candidate on the best window */
    size_t n_ctx_prompts;
} cm_cat_result;

typedef struct cm_note {
    char *by, *text;
} cm_note;

struct clipmod_result {
    char *name;
    clipmod_state state;
    clipmod_action action;
    clipmod_reason reason;
    char *reason_text;
    const char *top_category; /* points at a category id, or NULL */
    cm_cat_result *cats;
    size_t n_cats;
    int width, height, frames_total, frames_scanned;
    char *policy;
    char *model;
    char *message;   /* for the sender or uploader; "" when unscanned */
    int demo_model;  /* scored by clipmod's demo model: not real moderation */
    int top_prompts; /* candidates listed without explain */
    cm_note *notes;
    size_t n_notes;
    double elapsed_ms;
    clipmod_context_info ctx; /* ctx.present: the input had context text */
};

/* A new empty result for input `name` (copied); NULL if out of memory. */
clipmod_result *cm_result_new(const char *name, const char *policy, const char *model);

/* Mark `r` unscanned for `reason`, with the sentence `text` (copied). */
void cm_result_unscanned(clipmod_result *r, clipmod_reason reason, const char *text);

/* Set the user-facing message (copied). */
clipmod_error cm_result_set_message(clipmod_result *r, const char *msg);

/* Set state, action and top category from the categories' flags and margins. */
void cm_result_decide(clipmod_result *r);

/*
 * json_dumps() for the library: the text (free with cm_free), or NULL when out of
 * memory; never a damaged text, which jansson's own json_dumps can return then.
 */
struct json_t;
char *cm_json_dumps(const struct json_t *root, size_t flags);

#endif
