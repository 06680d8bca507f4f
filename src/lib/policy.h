/*
 * policy.h - moderation policies: what a moderator writes in YAML (internal).
 *
 * Owns the parsed form of a policy file and its validation. A policy names
 * categories of content in words (prompts), what each is not (contrast prompts),
 * a threshold on the category's score and the action to take; prompt templates and
 * neutral prompts are shared by all categories. Every value remembers where it was
 * written (file, line, column) so problems can be reported as a compiler would.
 * A cm_policy is immutable after cm_policy_load() and may be shared by threads.
 *
 * The format, the limits and the exact definition of a category's score are in
 * man/clipmod-policy.5, the single source of truth; this header only mirrors it.
 */
#ifndef CM_POLICY_H
#define CM_POLICY_H

#include <stddef.h>

#include "../common/yaml.h"
#include "clipmod/clipmod.h"

/* Where something was written: 1-based line and column in `file`. */
/* (file is owned by the policy; the type is the YAML reader's, src/common/yaml.h) */
typedef cm_ypos cm_pos;

/* Actions, ordered by severity: a larger value wins. */
typedef enum cm_action {
    CM_ACTION_ALLOW = 0,
    CM_ACTION_TAG,
    CM_ACTION_FLAG,
    CM_ACTION_QUARANTINE,
    CM_ACTION_REJECT,
    CM_ACTION__COUNT
} cm_action;

/*
 * How one action is expressed by each integration. After cm_policy_load() every
 * field holds the effective value (the policy's, else the default of clipmod-policy(5)).
 */
typedef struct cm_action_text {
    const char *smtp_reply; /* e.g. "550 5.7.1 ..."; NULL: accept the message (allow, tag,
                               flag; quarantine unless the policy sets a reply) */
    int http_status;        /* 100..599 */
    const char *message;    /* a sentence shown to the sender or uploader */
} cm_action_text;

typedef struct cm_prompt {
    const char *text; /* as written, before templates */
    cm_pos pos;
} cm_prompt;

/*
 * Within one category, and between it and the neutral prompts, no two prompts are
 * equal (compared case-insensitively, whitespace collapsed): the candidate set of
 * the score is the disjoint union prompts + contrast + neutral.
 */
/* What a category's score is (`score:`): see clipmod-policy(5). */
typedef enum cm_score_mode {
    CM_SCORE_PROMPTS = 0, /* the prompts' softmax mass (the default without a head) */
    CM_SCORE_HEAD,        /* the learned head's probability (the default with one) */
    CM_SCORE_MAX,         /* the larger of the two */
    CM_SCORE_MEAN         /* their mean */
} cm_score_mode;

/* How a category uses the text that comes with an image (`context:`): clipmod-policy(5). */
typedef enum cm_ctx_mode {
    CM_CTX_OFF = 0, /* the category ignores context (no `context:` key) */
    CM_CTX_RAISE,   /* a matching text raises the image's score */
    CM_CTX_ALONE,   /* a matching text flags on its own; the image's score is unchanged */
    CM_CTX_BOTH     /* both of the above */
} cm_ctx_mode;

typedef struct cm_context_def {
    cm_ctx_mode mode;
    cm_prompt *prompts; /* the text prompts; NULL: the category's own prompts */
    size_t n_prompts;
    double weight;    /* in [0, 1]: how far a matching text raises the score */
    double threshold; /* in (0, 1]: the context score at which the text "matches" */
    cm_pos pos;       /* of the `context` key's value */
} cm_context_def;

typedef struct cm_category {
    const char *id; /* [a-z0-9][a-z0-9_-]*, at most 64 bytes, unique */
    const char *description;
    const char *message; /* shown instead of the action's message when this category
                            decides the verdict; NULL = the action's */
    cm_prompt *prompts;  /* what the category is; at least one */
    size_t n_prompts;
    cm_prompt *contrast; /* what it is not; may be empty if the policy has neutral prompts */
    size_t n_contrast;
    double threshold; /* on the score, in (0, 1] */
    cm_action action; /* CM_ACTION_ALLOW: scored and reported, never flags an image */
    cm_pos pos;       /* of the category's mapping where it was first defined */
    cm_pos threshold_pos, action_pos;
    /* A learned head (`head:`): the file as named, resolved against the directory of
     * the policy file that names it, and its bytes as the loader read them (they are
     * part of the fingerprint); NULL/0 without a head. */
    const char *head_file;
    const unsigned char *head_bytes;
    size_t head_len;
    cm_pos head_pos;
    cm_score_mode score;
    cm_pos score_pos;
    cm_context_def context;
} cm_category;

typedef enum cm_combine { CM_COMBINE_MAX, CM_COMBINE_K_OF_N } cm_combine;

/*
 * The policy fingerprint (fingerprint.c): SHA-256 over every file's bytes as the
 * loader read them, each framed by base name and length; 64 hex digits and a NUL.
 */
#define CM_FINGERPRINT_SIZE 65
typedef struct cm_fp cm_fp;
cm_fp *cm_fp_new(void); /* NULL when out of memory */
void cm_fp_add(cm_fp *fp, const char *path, const void *buf, size_t len);
void cm_fp_hex(const cm_fp *fp, char out[CM_FINGERPRINT_SIZE]);
void cm_fp_free(cm_fp *fp); /* accepts NULL */

typedef struct cm_policy {
    int version; /* 1 */
    const char *name;
    const char *description;
    const char *model;      /* the model it was written for, e.g. "openai/clip-vit-base-patch32" */
    const char **templates; /* each holds "{}" exactly once; at least one ("{}" by default) */
    size_t n_templates;
    cm_prompt *neutral; /* background prompts shared by all categories */
    size_t n_neutral;
    cm_prompt *context_neutral; /* ordinary texts every category's context is judged against */
    size_t n_context_neutral;
    cm_category *categories; /* enabled categories only, in order of first definition */
    size_t n_categories;
    cm_action_text actions[CM_ACTION__COUNT];
    int frames;         /* animated images: frames to sample, 1..64 (default 8) */
    cm_combine combine; /* how frame verdicts combine (default max) */
    int k;              /* for CM_COMBINE_K_OF_N: flagged when >= k sampled frames are */
    const char *file;   /* the path given to cm_policy_load() */
    const char **files; /* every file read, that one first, then includes in reading order */
    size_t n_files;
    char fingerprint[CM_FINGERPRINT_SIZE]; /* of the bytes of `files` as read (fingerprint.c) */
    /* Private: the arena holding everything above; see policy.c. */
    void *priv;
} cm_policy;

/*
 * Parse the policy in `path`, following `include:` (relative to the including file;
 * at most 8 levels and 32 files; cycles are errors). Included files are applied
 * first, in order, then the including file: top-level keys replace earlier values
 * (`actions` and `animation` field by field); a category with a known id changes
 * only the keys it sets (`disable: true` removes it), a new id adds a category.
 * Every problem found is appended to *problems as "file:line:column: message\n"
 * ("file: message\n" when it concerns a whole file), sorted by file and position
 * (a malloc'd string, NULL when there are none; free with free(); `problems` may be
 * NULL). Returns CLIPMOD_OK with *out set when there were no problems; otherwise
 * *out is NULL and the result is CLIPMOD_E_POLICY, CLIPMOD_E_IO if `path` itself
 * cannot be opened or is not a regular file (a file over 1 MiB is a policy
 * problem), or CLIPMOD_E_NOMEM.
 */
clipmod_error cm_policy_load(const char *path, cm_policy **out, char **problems);

/*
 * cm_policy_load(), and when the files could be read and parsed but have problems
 * (CLIPMOD_E_POLICY), *partial receives the policy built from what was valid, so
 * that prompt lengths can be checked in the same run (cm_policy_check_tokens);
 * free it with cm_policy_free(). NULL when a file could not be read or parsed.
 */
clipmod_error cm_policy_load_partial(const char *path, cm_policy **out, char **problems,
                                     cm_policy **partial);

/* Free a policy. Accepts NULL. */
void cm_policy_free(cm_policy *p);

/*
 * The name in `names` nearest to `s` if it is a plausible typo of it (one edit per
 * three letters of the name, at most two), else NULL: every "did you mean".
 */
const char *cm_nearest_name(const char *s, const char *const *names, size_t n);

/* "allow", "tag", "flag", "quarantine", "reject"; "unknown" for other values. */
const char *cm_action_name(cm_action a);

/* Parse an action name ("allow", "tag", "flag", "quarantine", "reject"); -1 if unknown. */
int cm_action_parse(const char *name);

/*
 * Expand `prompt` with template `tmpl` ("{}" replaced by the prompt) into a new
 * malloc'd string; NULL if out of memory. A template without "{}" gives the prompt.
 */
char *cm_policy_expand(const char *tmpl, const char *prompt);

/*
 * Check that every prompt (category, contrast and neutral) fits the text tower
 * under every template. `count` returns the number of tokens of `text`, start and
 * end tokens included, and sets *truncated to 1 when the text does not fit the
 * context (the count may then be capped at the context); it returns (size_t)-1 on
 * failure. A prompt is reported once, at its position, with the first template
 * that makes it too long. Returns CLIPMOD_OK, CLIPMOD_E_POLICY with *problems set
 * (as cm_policy_load), CLIPMOD_E_TOKENIZER if `count` failed, or _NOMEM.
 */
clipmod_error cm_policy_check_tokens(const cm_policy *p,
                                     size_t (*count)(void *ctx, const char *text, int *truncated),
                                     void *ctx, char **problems);

/*
 * A few lines for `clipmod policy check`: files, model, templates, then one line per
 * category (id, action, threshold, prompt and contrast counts) and the totals. A
 * malloc'd string; NULL if out of memory.
 */
char *cm_policy_summary(const cm_policy *p);

#endif
