/*
 * cmd_evaluate.c - `clipmod policy evaluate`: how a policy does on a labelled set.
 *
 * Owns the command's flow: options, the engine (model + policy), the labelled set,
 * one image-tower pass over the set (the cosines of every image with every prompt
 * are kept), then per category the ranking metrics, the metrics at the current
 * threshold and the suggested thresholds for the moderator's targets. Printing is
 * eval_print.c's; the metrics are metrics.c's. Scores are recomputed from the kept
 * cosines by the library (clipmod_engine_score_cosines), the scanner's own formula.
 * Rows with text also get image+context numbers (eval_context.c).
 */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "engine_cfg.h"
#include "eval_apply.h"
#include "evaluate.h"
#include "progress.h"
#include "report.h"
#include "size.h"

/* Images per image-tower pass: big enough to batch, small enough for the bar. */
#define EMBED_CHUNK 32

static const char usage_evaluate[] =
    "Usage: clipmod policy evaluate --model DIR --policy FILE [OPTION]... LABELLED\n"
    "Measure a policy on a labelled set of images and suggest thresholds.\n"
    "LABELLED is a folder with one sub-folder per label (a category id of the policy,\n"
    "or 'clean' for images that must not be flagged), or a manifest named *.csv\n"
    "(path,label,label...) or *.jsonl ({\"path\": ..., \"labels\": [...]}). A manifest may\n"
    "give each image the text that came with it (a CSV header's \"text\" column, a JSONL\n"
    "\"text\"): categories with context: are then measured image-only and image+context.\n"
    "\n"
    "  -m, --model DIR       the model (default: $CLIPMOD_MODEL, else the installed one)\n"
    "      --merges FILE     tokenizer merges, if not in the model directory\n"
    "  -p, --policy FILE     the policy to evaluate (default: $CLIPMOD_POLICY, else the\n"
    "                        model's default policy)\n"
    "      --target T        suggest a threshold per category for T: fpr=X (false-positive\n"
    "                        rate at most X), precision=X (at least X), recall=X (at\n"
    "                        least X) or f1 (best F1); repeatable. Default: the best F1\n"
    "                        with a false-positive rate of at most 0.01\n"
    "      --set C.KEY=VALUE what if: evaluate with category C's threshold or action\n"
    "                        changed (weapons.threshold=0.7, drugs.action=allow)\n"
    "                        without editing the file; repeatable\n"
    "      --compare OLD     list every image whose verdict differs between the policy\n"
    "                        OLD and this one, grouped by change, with its labels\n"
    "      --no-attribution  skip prompt attribution (each prompt's effect on the AUC)\n"
    "      --json            one JSON document instead of the table (see clipmod(1))\n"
    "      --apply           write the first target's suggested thresholds into the\n"
    "                        policy file (needs --policy; see clipmod(1))\n"
    "      --report DIR      also write DIR/index.html: curves, histograms, confusion\n"
    "                        tables and galleries of mistakes, one self-contained page\n"
    "      --threads N       threads per matrix product\n"
    "      --precision P     fp32 (default), int8 or bf16: see clipmod(1)\n"
    "      --cache-dir DIR   prompt, image and weights caches (default ~/.cache/clipmod)\n"
    "      --cache-max SIZE  cap of the image embedding cache file, bytes or with k, M\n"
    "                        or G (default 64M); the oldest entries are dropped\n"
    "      --no-cache        do not read or write any of them\n"
    "      --no-progress     no progress bar on a terminal\n"
    "  -q, --quiet           no notes on stderr\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit status: 0 evaluated (images that could not be scanned are listed apart),\n"
    "2 an error (bad option, unknown label, invalid policy, no model).\n";

enum {
    OPT_TARGET = 256,
    OPT_JSON,
    OPT_NOPROG,
    OPT_SET,
    OPT_COMPARE,
    OPT_NOATTRIB,
    OPT_APPLY,
    OPT_REPORT,
    OPT_CACHEMAX
};

/* --cache-max: the runtime's one size syntax (64M, binary multiples), at least 4K. */
static int parse_cache_max(const char *arg, unsigned long long *out)
{
    uint64_t n;
    char why[128];

    if (cm_parse_size(arg, &n, why, sizeof why)) {
        fprintf(stderr, "clipmod: --cache-max: %s\n", why);
        return EXIT_ERROR;
    }
    if (n < CLIPMOD_IMAGE_CACHE_MIN) {
        fprintf(stderr, "clipmod: --cache-max %s: expected a size of at least 4K\n", arg);
        return EXIT_ERROR;
    }
    *out = n;
    return CLI_GO_ON;
}

static int parse_opt(int c, eval_opts *o)
{
    int rc = cli_parse_model_option(&o->m, c, optarg);

    if (rc != CLI_NOT_MINE)
        return rc ? EXIT_ERROR : CLI_GO_ON;
    switch (c) {
    case 'p':
        o->policy = optarg;
        return CLI_GO_ON;
    case OPT_TARGET:
        if (o->n_targets == EVAL_MAX_TARGETS) {
            fprintf(stderr, "clipmod: at most %d --target options\n", EVAL_MAX_TARGETS);
            return EXIT_ERROR;
        }
        if (target_parse(optarg, &o->targets[o->n_targets])) {
            fprintf(stderr,
                    "clipmod: --target %s: expected fpr=X, precision=X or recall=X with X "
                    "between 0 and 1, or f1\n",
                    optarg);
            return EXIT_ERROR;
        }
        o->n_targets++;
        return CLI_GO_ON;
    case OPT_JSON:
        o->json = 1;
        return CLI_GO_ON;
    case OPT_COMPARE:
        o->compare = optarg;
        return CLI_GO_ON;
    case OPT_NOATTRIB:
        o->no_attribution = 1;
        return CLI_GO_ON;
    case OPT_APPLY:
        o->apply = 1;
        return CLI_GO_ON;
    case OPT_REPORT:
        o->report = optarg;
        return CLI_GO_ON;
    case OPT_SET:
        if (o->n_sets == EVAL_MAX_SETS) {
            fprintf(stderr, "clipmod: at most %d --set options\n", EVAL_MAX_SETS);
            return EXIT_ERROR;
        }
        o->sets[o->n_sets++] = optarg;
        return CLI_GO_ON;
    case OPT_CACHEMAX:
        return parse_cache_max(optarg, &o->cache_max);
    case OPT_NOPROG:
        o->no_progress = 1;
        return CLI_GO_ON;
    case 'q':
        o->m.quiet = 1;
        return CLI_GO_ON;
    case 'h':
        fputs(usage_evaluate, stdout);
        return EXIT_CLEAN;
    default:
        fputs(usage_evaluate, stderr);
        return EXIT_ERROR;
    }
}

static int parse_evaluate(int argc, char **argv, eval_opts *o)
{
    static const struct option longopts[] = {
        CLI_MODEL_OPTIONS,
        {"policy", required_argument, NULL, 'p'},
        {"target", required_argument, NULL, OPT_TARGET},
        {"json", no_argument, NULL, OPT_JSON},
        {"set", required_argument, NULL, OPT_SET},
        {"compare", required_argument, NULL, OPT_COMPARE},
        {"no-attribution", no_argument, NULL, OPT_NOATTRIB},
        {"apply", no_argument, NULL, OPT_APPLY},
        {"report", required_argument, NULL, OPT_REPORT},
        {"cache-max", required_argument, NULL, OPT_CACHEMAX},
        {"no-progress", no_argument, NULL, OPT_NOPROG},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    memset(o, 0, sizeof *o);
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:qh", longopts, NULL)) != -1) {
        const int rc = parse_opt(c, o);
        if (rc != CLI_GO_ON)
            return rc;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "clipmod: policy evaluate: give one labelled folder or manifest\n%s",
                usage_evaluate);
        return EXIT_ERROR;
    }
    o->labelled = argv[optind];
    if (!o->n_targets)
        o->targets[o->n_targets++] = (target){TARGET_DEFAULT, 0.01};
    return CLI_GO_ON;
}

/* An engine for the policy (with the --set overrides when `sets`), built as scan
 * builds its own (src/common's cm_engine_from_config); problems and warnings go to
 * stderr. */
clipmod_engine *eval_make_engine(const clipmod_model *model, const eval_opts *o, const char *policy,
                                 int sets)
{
    clipmod_engine *engine = NULL;
    char *problems = NULL, errbuf[CLIPMOD_ERROR_SIZE] = "";
    cm_engine_cfg cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.policy = policy;
    cfg.overrides = sets ? o->sets : NULL;
    cfg.n_overrides = sets ? o->n_sets : 0;
    cfg.no_cache = o->m.no_cache;
    cfg.cache_dir = o->m.cache_dir;
    cfg.quiet_warnings = 1; /* printed here, as the lines they are */
    cfg.errors_to_caller = 1;
    clipmod_error err = cm_engine_from_config(&cfg, model, &engine, &problems, errbuf);
    if (problems && (err == CLIPMOD_E_POLICY || (!err && !o->m.quiet)))
        fputs(problems, stderr);
    clipmod_free(problems);
    if (err == CLIPMOD_E_POLICY)
        fprintf(stderr, "clipmod: %s: %s\n", policy, clipmod_strerror(err));
    else if (err)
        cli_engine_error(errbuf);
    return engine;
}

/* Embed images [start, start + n) and keep their cosines with every prompt. */
static int embed_chunk(evaluation *ev, size_t start, size_t n)
{
    clipmod_input in[EMBED_CHUNK];
    float *emb[EMBED_CHUNK];
    int frames[EMBED_CHUNK];
    clipmod_result *why[EMBED_CHUNK];
    const size_t np = clipmod_engine_prompt_count(ev->engine);
    int rc = 0;

    memset(in, 0, sizeof in);
    for (size_t i = 0; i < n; i++) {
        in[i].size = sizeof in[i];
        in[i].path = ev->set->items[start + i].path;
    }
    clipmod_error err =
        clipmod_engine_embed_inputs_cached(ev->engine, ev->imgcache, in, n, emb, frames, why);
    if (err) {
        fprintf(stderr, "clipmod: embedding %s...: %s\n", in[0].path, clipmod_strerror(err));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        eval_image *im = &ev->images[start + i];
        im->unscanned = why[i];
        im->frames = frames[i];
        if (why[i] || rc)
            continue;
        im->cos = malloc((size_t)frames[i] * (np ? np : 1) * sizeof *im->cos);
        if (!im->cos || clipmod_engine_cosines(ev->engine, emb[i], frames[i], im->cos))
            rc = -1;
        ev->n_scanned++;
        /* --compare's old policy and head training use the embeddings themselves. */
        if (ev->opts->compare || ev->keep_emb) {
            im->emb = emb[i];
            emb[i] = NULL;
        }
    }
    for (size_t i = 0; i < n; i++)
        clipmod_free(emb[i]);
    return rc;
}

/* The image cache: opened unless --no-cache; its problems are warnings, never errors. */
void eval_open_cache(evaluation *ev, const eval_opts *o)
{
    if (o->m.no_cache)
        return;
    if (clipmod_image_cache_open(ev->model, o->m.cache_dir, o->cache_max, &ev->imgcache)) {
        if (!o->m.quiet)
            fprintf(stderr, "clipmod: warning: no image cache (no cache directory)\n");
        return;
    }
    const char *w = clipmod_image_cache_warning(ev->imgcache);
    if (w)
        fprintf(stderr, "clipmod: warning: image cache: %s\n", w);
}

/* Write what was added; say how much came from the cache (tests rely on the line). */
static int save_cache(evaluation *ev)
{
    size_t hits, misses;
    if (!ev->imgcache)
        return 0;
    if (clipmod_image_cache_save(ev->imgcache))
        fprintf(stderr, "clipmod: warning: could not write the image cache\n");
    clipmod_image_cache_counts(ev->imgcache, &hits, &misses);
    if (!ev->opts->m.quiet)
        fprintf(stderr, "clipmod: %zu of %zu image embeddings from the cache\n", hits,
                hits + misses);
    return 0;
}

int eval_embed_all(evaluation *ev)
{
    progress pg;
    const double t0 = cm_now();
    int rc = 0;
    progress_start(&pg, ev->n_images, !ev->opts->m.quiet && !ev->opts->no_progress);
    for (size_t s = 0; !rc && s < ev->n_images; s += EMBED_CHUNK) {
        const size_t n = ev->n_images - s < EMBED_CHUNK ? ev->n_images - s : EMBED_CHUNK;
        progress_update(&pg, s, ev->set->items[s].path);
        rc = embed_chunk(ev, s, n);
    }
    progress_end(&pg);
    ev->seconds_embed = cm_now() - t0;
    return rc ? rc : save_cache(ev);
}

/* Every scanned image's scores and verdict under the engine's policy. */
int eval_score_all(evaluation *ev)
{
    for (size_t i = 0; i < ev->n_images; i++) {
        eval_image *im = &ev->images[i];
        if (im->unscanned)
            continue;
        im->scores = calloc(ev->n_cats ? ev->n_cats : 1, sizeof *im->scores);
        if (!im->scores)
            return -1;
        if (ev->has_heads) {
            if (eval_heads_score(ev, im))
                return -1;
        } else if (clipmod_engine_score_cosines(ev->engine, im->cos, im->frames, NULL,
                                                im->scores)) {
            return -1;
        }
        if (clipmod_engine_verdict(ev->engine, im->scores, &im->state, &im->action, &im->top))
            return -1;
    }
    return 0;
}

/* Category c's scores and positive flags over the scanned images, into new arrays. */
static int column(const evaluation *ev, size_t c, double **scores, unsigned char **pos, size_t *n)
{
    *scores = malloc((ev->n_scanned ? ev->n_scanned : 1) * sizeof **scores);
    *pos = malloc(ev->n_scanned ? ev->n_scanned : 1);
    *n = 0;
    if (!*scores || !*pos)
        return -1;
    for (size_t i = 0; i < ev->n_images; i++) {
        const eval_image *im = &ev->images[i];
        if (im->unscanned)
            continue;
        (*scores)[*n] = im->scores[c];
        (*pos)[(*n)++] = im->item->labels[c];
    }
    return 0;
}

static int measure_category(evaluation *ev, size_t c)
{
    eval_category *ec = &ev->cats[c];
    double *s = NULL;
    unsigned char *pos = NULL;
    size_t n = 0;
    int rc = column(ev, c, &s, &pos, &n);
    for (size_t i = 0; !rc && i < n; i++)
        pos[i] ? ec->positives++ : ec->negatives++;
    if (!rc) {
        ec->auc = metrics_roc_auc(s, pos, n);
        ec->ap = metrics_average_precision(s, pos, n);
        metrics_at_threshold(s, pos, n, ec->info.threshold, &ec->current);
    }
    for (size_t t = 0; !rc && t < ev->opts->n_targets; t++)
        rc = metrics_suggest(s, pos, n, &ev->opts->targets[t], &ec->suggested[ec->n_suggested++]);
    free(s);
    free(pos);
    return rc;
}

static int measure(evaluation *ev)
{
    const double t0 = cm_now();
    for (size_t c = 0; c < ev->n_cats; c++)
        if (clipmod_engine_category_info(ev->engine, c, &ev->cats[c].info))
            return -1;
    int rc = eval_score_all(ev);
    if (!rc)
        rc = eval_context_verdicts(ev);
    for (size_t c = 0; !rc && c < ev->n_cats; c++) {
        rc = measure_category(ev, c);
        if (!rc && ev->has_heads)
            rc = eval_heads_measure(ev, c);
        if (!rc && ev->context && ev->cats[c].uses_context)
            rc = eval_context_measure(ev, c);
    }
    ev->seconds_metrics = cm_now() - t0;
    return rc;
}

void eval_free(evaluation *ev)
{
    for (size_t i = 0; ev->images && i < ev->n_images; i++) {
        clipmod_result_free(ev->images[i].unscanned);
        free(ev->images[i].cos);
        clipmod_free(ev->images[i].emb);
        free(ev->images[i].scores);
        free(ev->images[i].prompt_scores);
        free(ev->images[i].head_scores);
        free(ev->images[i].trained);
        free(ev->images[i].text_scores);
        free(ev->images[i].ctx_scores);
        free(ev->images[i].ctx_hits);
    }
    free(ev->images);
    for (size_t c = 0; ev->cats && c < ev->n_cats; c++)
        free(ev->cats[c].attrib);
    free(ev->cats);
    eval_compare_free(ev);
    clipmod_image_cache_free(ev->imgcache);
}

static int run(evaluation *ev, const labelled_set *set, const clipmod_engine *old)
{
    ev->set = set;
    ev->n_images = set->n;
    ev->n_cats = clipmod_engine_category_count(ev->engine);
    ev->images = calloc(set->n, sizeof *ev->images);
    ev->cats = calloc(ev->n_cats ? ev->n_cats : 1, sizeof *ev->cats);
    if (!ev->images || !ev->cats) {
        fprintf(stderr, "clipmod: out of memory\n");
        return EXIT_ERROR;
    }
    for (size_t i = 0; i < set->n; i++)
        ev->images[i].item = &set->items[i];
    eval_heads_find(ev);
    if (eval_embed_all(ev) || eval_context_texts(ev))
        return EXIT_ERROR;
    if (measure(ev) || (!ev->opts->no_attribution && eval_attribute(ev)) ||
        (old && eval_compare(ev, old))) {
        fprintf(stderr, "clipmod: out of memory\n");
        return EXIT_ERROR;
    }
    if (ev->opts->report && eval_report_html(ev, ev->opts->report))
        return EXIT_ERROR;
    if (ev->opts->json)
        return eval_print_json(ev) ? EXIT_ERROR : EXIT_CLEAN;
    eval_print_table(ev);
    return ferror(stdout) ? EXIT_ERROR : EXIT_CLEAN;
}

int cmd_policy_evaluate(int argc, char **argv)
{
    eval_opts o;
    labelled_set set;
    evaluation ev;
    clipmod_model *model = NULL;
    clipmod_engine *engine = NULL, *old = NULL;
    apply_snap snap = {0};
    int rc = parse_evaluate(argc, argv, &o);

    if (rc != CLI_GO_ON)
        return rc;
    if (o.apply && !o.policy) {
        fprintf(stderr, "clipmod: --apply edits the file given with --policy FILE\n");
        return EXIT_ERROR;
    }
    memset(&set, 0, sizeof set);
    memset(&ev, 0, sizeof ev);
    if (!o.m.model_dir)
        o.m.model_dir = cli_default_model();
    rc = EXIT_ERROR;
    if (labelled_read(o.labelled, &set))
        goto out;
    model = cli_load_model(&o.m);
    if (!model)
        goto out;
    if (!o.policy)
        o.policy = cli_default_policy(model);
    if (o.apply && eval_apply_snapshot(o.policy, &snap))
        goto out;
    engine = eval_make_engine(model, &o, o.policy, 1);
    if (!engine)
        goto out;
    if (o.compare) {
        old = eval_make_engine(model, &o, o.compare, 0);
        if (!old)
            goto out;
    }
    if (labelled_resolve(&set, engine)) {
        fprintf(stderr, "clipmod: %s: labels must be category ids of %s, or 'clean'\n", o.labelled,
                o.policy);
        goto out;
    }
    ev.opts = &o;
    ev.model = model;
    ev.engine = engine;
    eval_open_cache(&ev, &o);
    rc = run(&ev, &set, old);
    if (rc == EXIT_CLEAN && o.apply)
        rc = eval_apply(&ev, &snap);
out:
    eval_apply_snapshot_free(&snap);
    eval_free(&ev);
    labelled_free(&set);
    clipmod_engine_free(old);
    clipmod_engine_free(engine);
    clipmod_model_free(model);
    return rc;
}
