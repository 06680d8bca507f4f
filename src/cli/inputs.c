/*
 * inputs.c - option parsing and model/image/text loading shared by subcommands.
 *
 * Models are loaded by src/common's cm_model_from_config, as clipmodd and the
 * milter load theirs, so the demo-model warning and the refusals read the same in
 * every program; what the runtime logs goes to stderr as logfmt lines, at "warn"
 * (or "error" when the command is quiet), next to the CLI's own "clipmod: ..." lines.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine_cfg.h"
#include "log.h"

static int push(const char ***list, size_t *n, const char *s)
{
    const char **grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    grown[(*n)++] = s;
    *list = grown;
    return 0;
}

int cli_parse_threads(const char *arg, int *out)
{
    char *end = NULL;
    long n = 0;

    /* strtol alone takes " 4", "+4" and "4x"; only plain digits are a thread count. */
    if (arg[0] >= '0' && arg[0] <= '9') {
        errno = 0;
        n = strtol(arg, &end, 10);
    }
    if (!end || *end || errno || n < 1 || n > CLI_MAX_THREADS) {
        fprintf(stderr, "clipmod: --threads: expected 1..%d, got '%s'\n", CLI_MAX_THREADS, arg);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int cli_parse_precision(const char *arg, clipmod_precision *out)
{
    if (clipmod_precision_parse(arg, out) == CLIPMOD_OK)
        return 0;
    fprintf(stderr, "clipmod: --precision: expected fp32, int8 or bf16, got '%s'\n", arg);
    return -1;
}

int cli_parse_model_option(cli_model_opts *m, int c, const char *arg)
{
    switch (c) {
    case 'm':
        m->model_dir = arg;
        return 0;
    case CLI_OPT_MERGES:
        m->merges = arg;
        return 0;
    case CLI_OPT_THREADS:
        return cli_parse_threads(arg, &m->threads);
    case CLI_OPT_PRECISION:
        return cli_parse_precision(arg, &m->precision);
    case CLI_OPT_CACHE_DIR:
        m->cache_dir = arg;
        return 0;
    case CLI_OPT_NO_CACHE:
        m->no_cache = 1;
        return 0;
    default:
        return CLI_NOT_MINE;
    }
}

int cli_parse_inputs(int argc, char **argv, const char *usage, cli_inputs *in)
{
    static const struct option opts[] = {CLI_MODEL_OPTIONS,
                                         {"image", required_argument, NULL, 'i'},
                                         {"text", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;

    memset(in, 0, sizeof *in);
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:t:h", opts, NULL)) != -1) {
        int rc = cli_parse_model_option(&in->m, c, optarg);
        if (rc == -1)
            return EXIT_ERROR;
        if (rc == 0)
            continue;
        switch (c) {
        case 'i':
            if (push(&in->images, &in->n_images, optarg))
                goto nomem;
            break;
        case 't':
            if (push(&in->texts, &in->n_texts, optarg))
                goto nomem;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_CLEAN;
        default:
            fputs(usage, stderr);
            return EXIT_ERROR;
        }
    }
    /* Bare arguments are images, so `clipmod embed -m DIR *.jpg` works. */
    for (int i = optind; i < argc; i++)
        if (push(&in->images, &in->n_images, argv[i]))
            goto nomem;
    if (!in->m.model_dir) {
        fprintf(stderr, "clipmod: --model DIR is required\n%s", usage);
        return EXIT_ERROR;
    }
    return CLI_GO_ON;
nomem:
    fprintf(stderr, "clipmod: out of memory\n");
    return EXIT_ERROR;
}

void cli_inputs_free(cli_inputs *in)
{
    if (!in)
        return;
    free(in->images);
    free(in->texts);
    in->images = in->texts = NULL;
}

void cli_log_setup(int quiet)
{
    char why[128];
    /* Only "warn" and "error" are valid levels here, so this cannot fail. */
    cm_log_setup3("plain", "stderr", quiet ? "error" : "warn", "clipmod", why, sizeof why);
}

/* A model that need not embed texts, loaded as is: `clipmod embed` of images only. */
static clipmod_model *load_images_only(const cli_model_opts *m)
{
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_model *model = NULL;
    if (m->threads)
        clipmod_set_threads(m->threads);
    /* The weights cache as cm_model_from_config uses it: the prompt cache's directory. */
    const char *wcache = m->no_cache ? NULL : m->cache_dir ? m->cache_dir : "";
    if (clipmod_model_load_cached(m->model_dir, m->merges, m->precision, wcache, &model, err)) {
        fprintf(stderr, "clipmod: %s\n", err);
        return NULL;
    }
    /* The same line cm_model_from_config logs: one warning, whatever the command. */
    if (clipmod_model_is_demo(model))
        cm_log(CM_LOG_WARN, CM_DEMO_WARNING, CM_LF_S("model", m->model_dir), CM_LF_END);
    return model;
}

clipmod_model *cli_load_model(const cli_model_opts *m)
{
    char err[CLIPMOD_ERROR_SIZE] = "";
    clipmod_model *model = NULL;
    cm_engine_cfg cfg;

    cli_log_setup(m->quiet);
    memset(&cfg, 0, sizeof cfg);
    cfg.model = m->model_dir;
    cfg.merges = m->merges;
    cfg.threads = m->threads;
    cfg.precision = m->precision;
    cfg.cache_dir = m->cache_dir;
    cfg.no_cache = m->no_cache;
    cfg.errors_to_caller = 1;
    if (cm_model_from_config(&cfg, &model, err)) {
        fprintf(stderr, "clipmod: %s\n", err);
        return NULL;
    }
    return model;
}

clipmod_model *cli_load_inputs_model(const cli_inputs *in)
{
    if (!in->images_only || in->n_texts)
        return cli_load_model(&in->m);
    cli_log_setup(in->m.quiet);
    return load_images_only(&in->m);
}

void cli_engine_error(const char *errbuf)
{
    /* engine_cfg names things as the daemons' configuration files do; say the option. */
    static const struct {
        const char *lib, *option;
    } words[] = {{"fetch allow entry ", "--allow-fetch "},
                 {"cache directory ", "--cache-dir "},
                 {"setting ", "--"},
                 {"plugin ", "--plugin "}};

    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].lib);
        if (!strncmp(errbuf, words[i].lib, n)) {
            fprintf(stderr, "clipmod: %s%s\n", words[i].option, errbuf + n);
            return;
        }
    }
    fprintf(stderr, "clipmod: %s\n", errbuf);
}

float *cli_embed_images(const clipmod_model *model, const cli_inputs *in)
{
    char err[CLIPMOD_ERROR_SIZE];
    size_t dim = clipmod_model_embed_dim(model), loaded = 0;
    clipmod_image **imgs = calloc(in->n_images ? in->n_images : 1, sizeof *imgs);
    float *out = malloc((in->n_images ? in->n_images : 1) * dim * sizeof *out);
    int ok = imgs && out;

    for (; ok && loaded < in->n_images; loaded++) {
        if (clipmod_image_load_file(model, in->images[loaded], NULL, &imgs[loaded], err)) {
            fprintf(stderr, "clipmod: %s\n", err);
            ok = 0;
        }
    }
    if (ok && in->n_images &&
        clipmod_embed_images(model, (const clipmod_image *const *)imgs, in->n_images, out, err)) {
        fprintf(stderr, "clipmod: %s\n", err);
        ok = 0;
    }
    for (size_t i = 0; imgs && i < in->n_images; i++)
        clipmod_image_free(imgs[i]);
    free(imgs);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

float *cli_embed_texts(const clipmod_model *model, const cli_inputs *in, int *truncated)
{
    char err[CLIPMOD_ERROR_SIZE];
    size_t dim = clipmod_model_embed_dim(model);
    float *out = malloc((in->n_texts ? in->n_texts : 1) * dim * sizeof *out);
    if (!out)
        return NULL;
    if (in->n_texts && clipmod_embed_texts(model, in->texts, in->n_texts, out, truncated, err)) {
        fprintf(stderr, "clipmod: %s\n", err);
        free(out);
        return NULL;
    }
    for (size_t i = 0; truncated && i < in->n_texts; i++)
        if (truncated[i])
            fprintf(stderr,
                    "clipmod: warning: text %zu was longer than %d tokens and was cut: "
                    "\"%.40s...\"\n",
                    i + 1, CLIPMOD_CONTEXT_LENGTH, in->texts[i]);
    return out;
}
