/*
 * evaluate.h - what the parts of `clipmod policy evaluate` share.
 *
 * cmd_evaluate.c reads the options, the labelled set and the images' embeddings and
 * computes an `evaluation`; eval_print.c writes it as a table or as JSON (the schema
 * is in clipmod(1)). Scores are always recomputed from the cosines kept per image,
 * with the library's formula, so every variant (prompt attribution, what-if) costs no
 * image-tower pass. When rows of a manifest have text and categories of the policy
 * use `context:`, eval_context.c adds image+context numbers beside the image-only ones.
 */
#ifndef CLIPMOD_CLI_EVALUATE_H
#define CLIPMOD_CLI_EVALUATE_H

#include <stddef.h>

#include "cli.h"
#include "clipmod/clipmod.h"
#include "labelled.h"
#include "metrics.h"

#define EVAL_MAX_TARGETS 16
#define EVAL_MAX_SETS    64

typedef struct eval_opts {
    cli_model_opts m; /* --model, --merges, --threads, --precision, --cache-dir, --no-cache, -q */
    const char *policy, *labelled;
    int json, no_progress;
    target targets[EVAL_MAX_TARGETS];
    size_t n_targets;
    const char *sets[EVAL_MAX_SETS]; /* --set: what-if changes to the policy */
    size_t n_sets;
    const char *compare;          /* --compare OLD.yaml */
    int no_attribution;           /* --no-attribution */
    int apply;                    /* --apply: write the suggested thresholds (eval_apply.c) */
    const char *report;           /* --report DIR: the HTML page (report_html.c) */
    unsigned long long cache_max; /* --cache-max: image cache cap in bytes (0: default) */
} eval_opts;

/* One image of the set. */
typedef struct eval_image {
    const labelled_item *item;
    clipmod_result *unscanned; /* not NULL: could not be scanned (reason inside) */
    float *emb;                /* frames x embedding dim (for --compare) */
    float *cos;                /* frames x prompt count */
    int frames;
    double *scores;                      /* one per category: the policy's (with heads: mixed) */
    double *prompt_scores, *head_scores; /* with heads only: per category, -1 no head */
    unsigned char *trained;              /* with heads only: per category, the image
                                            trained its head */
    clipmod_state state;                 /* the verdict under the evaluated policy */
    clipmod_action action;
    long top;                /* deciding category or -1 */
    double *text_scores;     /* the row's text's score per category (-1: the category does not
                                use context); NULL: no text (eval_context.c) */
    double *ctx_scores;      /* with image+context: every category's score after the text
                                (the image's own for a row without text) */
    unsigned char *ctx_hits; /* with image+context: per category, flagged after the text */
    clipmod_state ctx_state; /* with image+context: the verdict with the text */
    clipmod_action ctx_action;
    long ctx_top;
} eval_image;

/* What leaving one prompt out does to one category. */
typedef struct eval_attribution {
    size_t row;               /* the prompt's row in the engine's prompt table */
    clipmod_prompt_kind kind; /* what it is to this category */
    double auc_without;       /* the category's AUC without it (NAN: undefined) */
} eval_attribution;

/* A category's learned head on the images that did not train it (eval_heads.c). */
typedef struct eval_head {
    int has;                                  /* the category has a head */
    size_t trained, held_out;                 /* scanned images that trained it / did not */
    size_t positives, negatives;              /* among the held-out images */
    double prompts_auc, head_auc, policy_auc; /* on them; NAN when undefined */
} eval_head;

typedef struct eval_category {
    clipmod_category_info info;
    size_t positives, negatives;
    double auc, ap; /* NAN when undefined */
    metrics_at current;
    suggestion suggested[EVAL_MAX_TARGETS];
    size_t n_suggested;
    eval_attribution *attrib; /* one per candidate prompt */
    size_t n_attrib;
    eval_head head;
    int uses_context;       /* a row's text scored for it: the category has `context:` */
    double ctx_auc, ctx_ap; /* on the image+context scores; NAN when undefined */
    metrics_at ctx_current; /* image+context flags (context may flag under threshold) */
} eval_category;

/* One verdict, as --compare compares them. */
typedef struct eval_verdict {
    clipmod_state state;
    clipmod_action action;
    const char *category; /* deciding category id (owned by an engine), or NULL */
} eval_verdict;

/* Images whose verdict went from `from` to `to`. */
typedef struct eval_change {
    eval_verdict from, to;
    size_t *images; /* indices into evaluation.images */
    size_t n;
} eval_change;

typedef struct evaluation {
    const eval_opts *opts;
    const clipmod_model *model;
    const clipmod_engine *engine;
    const labelled_set *set;
    clipmod_image_cache *imgcache; /* NULL: --no-cache */
    eval_image *images;            /* one per item of the set, same order */
    size_t n_images, n_scanned;
    eval_category *cats;
    size_t n_cats;
    double seconds_embed, seconds_metrics, seconds_attribution;
    eval_change *changes; /* --compare: grouped by change, most images first */
    size_t n_changes, n_changed;
    int keep_emb;  /* keep every image's embeddings (clipmod head train, heads) */
    int has_heads; /* some category of the policy has a learned head */
    int context;   /* image+context numbers: a row has text and a category uses context */
    size_t n_text; /* scanned images whose row has text */
    double seconds_context;
} evaluation;

/*
 * Learned heads in policy evaluate (eval_heads.c). eval_heads_find sets has_heads
 * (and keep_emb) before embedding; eval_heads_score fills one image's scores, the
 * prompts' and the heads' scores and which heads it trained; eval_heads_measure
 * category c's held-out numbers; the printers add them.
 */
void eval_heads_find(evaluation *ev);
int eval_heads_score(const evaluation *ev, eval_image *im);
int eval_heads_measure(evaluation *ev, size_t c);
void eval_heads_print(const evaluation *ev);
struct json_t;
struct json_t *eval_heads_json(const eval_head *h);

/*
 * The steps clipmod head train shares with policy evaluate (cmd_evaluate.c): the
 * engine for a policy (problems printed; NULL on failure), the image cache (unless
 * --no-cache), embedding every image of ev->set (0 or -1) and scoring them (every
 * category's score and the verdict of each scanned image; 0 or -1).
 */
clipmod_engine *eval_make_engine(const clipmod_model *model, const eval_opts *o, const char *policy,
                                 int sets);
void eval_open_cache(evaluation *ev, const eval_opts *o);
int eval_embed_all(evaluation *ev);
int eval_score_all(evaluation *ev);
/* Free what an evaluation holds (not the set, engine or model). */
void eval_free(evaluation *ev);

/*
 * Image+context (eval_context.c). eval_context_texts scores every scanned row's text
 * with the text tower (each distinct text once; errors printed) and sets ev->context;
 * eval_context_verdicts, after eval_score_all, gives every scanned image its scores
 * and verdict with its text; eval_context_measure category c's numbers on them.
 */
int eval_context_texts(evaluation *ev);
int eval_context_verdicts(evaluation *ev);
int eval_context_measure(evaluation *ev, size_t c);

/* Prompt attribution (eval_attrib.c): every category's AUC without each prompt. */
int eval_attribute(evaluation *ev);

/* --compare (eval_compare.c): verdicts under the old policy, grouped by change. */
int eval_compare(evaluation *ev, const clipmod_engine *old);
void eval_compare_free(evaluation *ev);

/* Verdict as text: "clean", "unscanned", "flag weapons". */
const char *eval_verdict_text(const eval_verdict *v, char *buf, size_t size);

/* The terminal table. */
void eval_print_table(const evaluation *ev);

/* The JSON document (clipmod(1), "policy evaluate --json"); 0, or -1 on failure. */
int eval_print_json(const evaluation *ev);

/* A metric as text: "0.934", or "n/a" when undefined. */
const char *eval_fmt(double x, char *buf, size_t size);

/* A threshold as the shortest decimal that reads back as the same double. */
const char *eval_fmt_threshold(double t, char *buf, size_t size);

int cmd_policy_evaluate(int argc, char **argv);

#endif
