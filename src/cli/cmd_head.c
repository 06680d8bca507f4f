/*
 * cmd_head.c - `clipmod head train`: teach a category by example.
 *
 * Owns the command's flow: options, the model and the policy's engine (as policy
 * evaluate builds them), the labelled set embedded once (through the image cache),
 * the rows (head_data.c), one cross-validated fit per category (head_fit.c), the
 * head files written by the library (clipmod_head_write: a temporary file renamed,
 * so nothing is left on failure), and the report: the head's out-of-fold numbers
 * beside the prompts' numbers on the same images.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "evaluate.h"
#include "head_data.h"
#include "head_fit.h"

static const char usage_head[] =
    "Usage: clipmod head train --model DIR --policy FILE (--category ID | --all)\n"
    "                          -o OUT [OPTION]... LABELLED\n"
    "Train a learned head for a category of the policy from labelled images: a\n"
    "logistic regression on the image embeddings, its strength chosen by\n"
    "cross-validation, its probability calibrated. LABELLED is read as by\n"
    "`clipmod policy evaluate` (a folder per label, or a CSV/JSONL manifest).\n"
    "\n"
    "  -m, --model DIR       the model (default: $CLIPMOD_MODEL, else the installed one)\n"
    "      --merges FILE     tokenizer merges, if not in the model directory\n"
    "  -p, --policy FILE     the policy whose categories are trained (default as scan)\n"
    "  -c, --category ID     the category to train\n"
    "      --all             every category of the policy\n"
    "  -o, --output OUT      the head file (with --category), or a folder that gets\n"
    "                        ID.safetensors per category (with --all)\n"
    "      --folds K         cross-validation folds, 2..20 (default 5)\n"
    "      --seed N          seed of the fold assignment (default 1)\n"
    "      --json            one JSON document on stdout instead of the table\n"
    "      --threads N       threads per matrix product, and folds fitted at once\n"
    "      --cache-dir DIR   prompt, image and weights caches (default ~/.cache/clipmod)\n"
    "      --no-cache        do not read or write the caches\n"
    "      --no-progress     no progress bar on a terminal\n"
    "  -q, --quiet           no notes on stderr\n"
    "  -h, --help            show this help\n"
    "\n"
    "Name the file in the policy (head: heads/ID.safetensors, score: head|prompts|\n"
    "max|mean); see clipmod-policy(5). Exit status: 0 trained, 2 an error (nothing\n"
    "is written for a category that failed).\n";

enum { OPT_ALL = 256, OPT_FOLDS, OPT_SEED, OPT_JSON, OPT_NOPROG };

typedef struct head_opts {
    eval_opts e;
    const char *category, *output;
    int all, folds, json;
    unsigned seed;
} head_opts;

/* A whole decimal number in [lo, hi]; -1 otherwise. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_opt(int c, head_opts *o)
{
    long v;
    int rc = cli_parse_model_option(&o->e.m, c, optarg);

    if (rc != CLI_NOT_MINE)
        return rc ? EXIT_ERROR : CLI_GO_ON;
    switch (c) {
    case 'p':
        o->e.policy = optarg;
        return CLI_GO_ON;
    case 'c':
        o->category = optarg;
        return CLI_GO_ON;
    case OPT_ALL:
        o->all = 1;
        return CLI_GO_ON;
    case 'o':
        o->output = optarg;
        return CLI_GO_ON;
    case OPT_FOLDS:
        if (parse_int(optarg, 2, 20, &v)) {
            fprintf(stderr, "clipmod: --folds %s: expected 2..20\n", optarg);
            return EXIT_ERROR;
        }
        o->folds = (int)v;
        return CLI_GO_ON;
    case OPT_SEED:
        if (parse_int(optarg, 0, 0x7fffffff, &v)) {
            fprintf(stderr, "clipmod: --seed %s: expected a whole number\n", optarg);
            return EXIT_ERROR;
        }
        o->seed = (unsigned)v;
        return CLI_GO_ON;
    case OPT_JSON:
        o->json = 1;
        return CLI_GO_ON;
    case OPT_NOPROG:
        o->e.no_progress = 1;
        return CLI_GO_ON;
    case 'q':
        o->e.m.quiet = 1;
        return CLI_GO_ON;
    case 'h':
        fputs(usage_head, stdout);
        return EXIT_CLEAN;
    default:
        fputs(usage_head, stderr);
        return EXIT_ERROR;
    }
}

static int check_opts(const head_opts *o, int argc)
{
    if (optind != argc - 1) {
        fprintf(stderr, "clipmod: head train: give one labelled folder or manifest\n");
        return EXIT_ERROR;
    }
    if (!o->category == !o->all) {
        fprintf(stderr, "clipmod: head train: give --category ID or --all\n");
        return EXIT_ERROR;
    }
    if (!o->output) {
        fprintf(stderr, "clipmod: head train: give -o %s\n",
                o->all ? "FOLDER" : "FILE.safetensors");
        return EXIT_ERROR;
    }
    return CLI_GO_ON;
}

static int parse_head(int argc, char **argv, head_opts *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"merges", required_argument, NULL, CLI_OPT_MERGES},
        {"policy", required_argument, NULL, 'p'},
        {"category", required_argument, NULL, 'c'},
        {"all", no_argument, NULL, OPT_ALL},
        {"output", required_argument, NULL, 'o'},
        {"folds", required_argument, NULL, OPT_FOLDS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"json", no_argument, NULL, OPT_JSON},
        {"threads", required_argument, NULL, CLI_OPT_THREADS},
        {"cache-dir", required_argument, NULL, CLI_OPT_CACHE_DIR},
        {"no-cache", no_argument, NULL, CLI_OPT_NO_CACHE},
        {"no-progress", no_argument, NULL, OPT_NOPROG},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    memset(o, 0, sizeof *o);
    o->folds = 5;
    o->seed = 1;
    o->e.no_attribution = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:c:o:qh", longopts, NULL)) != -1) {
        const int rc = parse_opt(c, o);
        if (rc != CLI_GO_ON)
            return rc;
    }
    const int rc = check_opts(o, argc);
    if (rc == CLI_GO_ON)
        o->e.labelled = argv[optind];
    return rc;
}

/* One category's outcome, for the table or the JSON. */
typedef struct head_report {
    const char *id;
    char path[4096];
    size_t pos, neg;
    head_fit fit;
    double prompts_auc;
    metrics_at prompts_at;               /* at the policy's threshold */
    char error[CLIPMOD_ERROR_SIZE + 32]; /* non-empty: not trained */
} head_report;

static void print_table(const head_report *r, size_t n, const head_rows *rows)
{
    char a[16], b[16], c[16], d[16], e[16], f[16];
    printf("%zu images (%zu duplicates counted once); head numbers are out-of-fold\n\n", rows->n,
           rows->n_dups);
    printf("%-20s %5s %5s %8s | %-22s | %-22s\n", "category", "pos", "neg", "C",
           "head: AUC  prec  rec", "prompts: AUC prec  rec");
    for (size_t i = 0; i < n; i++) {
        if (r[i].error[0]) {
            printf("%-20s %s\n", r[i].id, r[i].error);
            continue;
        }
        printf("%-20s %5zu %5zu %8g | %9s %5s %5s | %9s %5s %5s   %s\n", r[i].id, r[i].pos,
               r[i].neg, r[i].fit.c, eval_fmt(r[i].fit.cv_auc, a, sizeof a),
               eval_fmt(r[i].fit.cv_precision, b, sizeof b),
               eval_fmt(r[i].fit.cv_recall, c, sizeof c), eval_fmt(r[i].prompts_auc, d, sizeof d),
               eval_fmt(r[i].prompts_at.precision, e, sizeof e),
               eval_fmt(r[i].prompts_at.recall, f, sizeof f), r[i].path);
    }
    printf("\nhead precision/recall at probability 0.5; prompts' at the policy's threshold\n");
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int print_json(const head_report *r, size_t n, const head_rows *rows)
{
    json_t *cats = json_array();
    for (size_t i = 0; cats && i < n; i++) {
        json_t *o =
            r[i].error[0]
                ? json_pack("{s:s, s:s}", "id", r[i].id, "error", r[i].error)
                : json_pack("{s:s, s:s, s:I, s:I, s:f, s:{s:o, s:o, s:o}, s:{s:o, s:o, "
                            "s:o}}",
                            "id", r[i].id, "file", r[i].path, "positives", (json_int_t)r[i].pos,
                            "negatives", (json_int_t)r[i].neg, "c", r[i].fit.c, "head", "auc",
                            jnum(r[i].fit.cv_auc), "precision", jnum(r[i].fit.cv_precision),
                            "recall", jnum(r[i].fit.cv_recall), "prompts", "auc",
                            jnum(r[i].prompts_auc), "precision", jnum(r[i].prompts_at.precision),
                            "recall", jnum(r[i].prompts_at.recall));
        if (json_array_append_new(cats, o)) {
            json_decref(cats);
            cats = NULL;
        }
    }
    json_t *root = cats ? json_pack("{s:I, s:I, s:o}", "images", (json_int_t)rows->n, "duplicates",
                                    (json_int_t)rows->n_dups, "categories", cats)
                        : NULL;
    char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!s)
        return -1;
    puts(s);
    free(s);
    return 0;
}

/* Where category `id`'s head goes. */
static int out_path(const head_opts *o, const char *id, char *path, size_t size)
{
    const int n = o->all ? snprintf(path, size, "%s/%s.safetensors", o->output, id)
                         : snprintf(path, size, "%s", o->output);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Train, measure and write category c's head into *rep (its error set on failure). */
static void train_one(const evaluation *ev, const head_rows *rows, const head_opts *o, size_t c,
                      head_report *rep)
{
    clipmod_category_info info;
    unsigned char *y = malloc(rows->n ? rows->n : 1);
    double *ps = malloc((rows->n ? rows->n : 1) * sizeof *ps);
    char why[CLIPMOD_ERROR_SIZE];

    memset(&info, 0, sizeof info);
    clipmod_engine_category_info(ev->engine, c, &info);
    rep->id = info.id;
    if (!y || !ps || out_path(o, info.id, rep->path, sizeof rep->path)) {
        snprintf(rep->error, sizeof rep->error, "out of memory or output path too long");
        goto out;
    }
    head_rows_column(ev, rows, c, y, ps);
    for (size_t i = 0; i < rows->n; i++)
        rep->pos += y[i];
    rep->neg = rows->n - rep->pos;
    rep->prompts_auc = metrics_roc_auc(ps, y, rows->n);
    metrics_at_threshold(ps, y, rows->n, info.threshold, &rep->prompts_at);
    /* Folds fit in parallel on the threads asked for (--threads), else on every CPU. */
    const int threads = o->e.m.threads ? o->e.m.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    head_fit_opts fo = {o->folds, o->seed, head_fit_default_grid, head_fit_default_grid_len,
                        threads};
    if (head_fit_train(rows->x, y, rows->n, rows->dim, &fo, &rep->fit, why, sizeof why)) {
        snprintf(rep->error, sizeof rep->error, "not trained: %s", why);
        goto out;
    }
    clipmod_head_spec spec = CLIPMOD_HEAD_SPEC_INIT;
    spec.category = info.id;
    spec.dim = rows->dim;
    spec.weights = rep->fit.w;
    spec.bias = rep->fit.bias;
    spec.cal_slope = rep->fit.cal_slope;
    spec.cal_offset = rep->fit.cal_offset;
    spec.n_train = rows->n;
    spec.n_positive = rep->pos;
    spec.train_digests = rows->digests;
    spec.folds = o->folds;
    spec.c = rep->fit.c;
    spec.cv_auc = rep->fit.cv_auc;
    spec.cv_precision = rep->fit.cv_precision;
    spec.cv_recall = rep->fit.cv_recall;
    spec.prompts_auc = rep->prompts_auc;
    if (clipmod_head_write(ev->model, rep->path, &spec, why))
        snprintf(rep->error, sizeof rep->error, "not written: %s", why);
out:
    free(y);
    free(ps);
}

/* The categories to train: one by id (with "did you mean"), or all. */
static int pick(const evaluation *ev, const head_opts *o, size_t *first, size_t *count)
{
    *first = 0;
    *count = ev->n_cats;
    if (o->all)
        return 0;
    const char *near = NULL;
    long c = clipmod_engine_category_find(ev->engine, o->category, &near);
    if (c < 0) {
        fprintf(stderr, "clipmod: %s has no category '%s'%s%s%s\n", o->e.policy, o->category,
                near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        return -1;
    }
    *first = (size_t)c;
    *count = 1;
    return 0;
}

static int train_all(evaluation *ev, const head_opts *o)
{
    head_rows rows;
    size_t first, count;
    int rc = EXIT_ERROR;
    if (pick(ev, o, &first, &count) || eval_embed_all(ev) || eval_score_all(ev) ||
        head_rows_build(ev, &rows))
        return EXIT_ERROR;
    if (o->all && mkdir(o->output, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "clipmod: %s: %s\n", o->output, strerror(errno));
        head_rows_free(&rows);
        return EXIT_ERROR;
    }
    head_report *rep = calloc(count, sizeof *rep);
    if (rep) {
        int failed = 0;
        for (size_t i = 0; i < count; i++) {
            train_one(ev, &rows, o, first + i, &rep[i]);
            failed |= rep[i].error[0] != 0;
        }
        const int printed =
            o->json ? print_json(rep, count, &rows) : (print_table(rep, count, &rows), 0);
        rc = failed || printed || ferror(stdout) ? EXIT_ERROR : EXIT_CLEAN;
        for (size_t i = 0; i < count; i++)
            head_fit_free(&rep[i].fit);
        free(rep);
    }
    head_rows_free(&rows);
    return rc;
}

static int head_train(int argc, char **argv)
{
    head_opts o;
    labelled_set set;
    evaluation ev;
    clipmod_model *model = NULL;
    clipmod_engine *engine = NULL;
    int rc = parse_head(argc, argv, &o);

    if (rc != CLI_GO_ON)
        return rc;
    memset(&set, 0, sizeof set);
    memset(&ev, 0, sizeof ev);
    if (!o.e.m.model_dir)
        o.e.m.model_dir = cli_default_model();
    rc = EXIT_ERROR;
    if (labelled_read(o.e.labelled, &set))
        goto out;
    model = cli_load_model(&o.e.m);
    if (!model)
        goto out;
    if (!o.e.policy)
        o.e.policy = cli_default_policy(model);
    engine = eval_make_engine(model, &o.e, o.e.policy, 0);
    if (!engine)
        goto out;
    if (labelled_resolve(&set, engine)) {
        fprintf(stderr, "clipmod: %s: labels must be category ids of %s, or 'clean'\n",
                o.e.labelled, o.e.policy);
        goto out;
    }
    ev.opts = &o.e;
    ev.model = model;
    ev.engine = engine;
    ev.set = &set;
    ev.n_images = set.n;
    ev.n_cats = clipmod_engine_category_count(engine);
    ev.keep_emb = 1;
    ev.images = calloc(set.n ? set.n : 1, sizeof *ev.images);
    if (!ev.images)
        goto out;
    for (size_t i = 0; i < set.n; i++)
        ev.images[i].item = &set.items[i];
    eval_open_cache(&ev, &o.e);
    rc = train_all(&ev, &o);
out:
    eval_free(&ev);
    labelled_free(&set);
    clipmod_engine_free(engine);
    clipmod_model_free(model);
    return rc;
}

int cmd_head(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "train"))
        return head_train(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        fputs(usage_head, stdout);
        return EXIT_CLEAN;
    }
    fprintf(stderr, "clipmod: head: expected 'train'\n%s", usage_head);
    return EXIT_ERROR;
}
