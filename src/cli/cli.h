/*
 * cli.h - what the clipmod subcommands share.
 *
 * Each subcommand lives in its own cmd_*.c file and is listed in main.c. The
 * helpers here parse the options several subcommands take (model, images, texts,
 * threads) and load the model, so each command is left with its own logic only.
 */
#ifndef CLIPMOD_CLI_H
#define CLIPMOD_CLI_H

#include <stddef.h>

#include "clipmod/clipmod.h"

/*
 * The directories every clipmod program names the same way: the configuration
 * directory $(sysconfdir)/clipmod (Makefile.am's CLIPMOD_CONFDIR, where clipmodd.yaml
 * and clipmod-milter.yaml are installed) and the system models directory
 * $(pkgdatadir)/models, whose default/ is clipmodd's and clipmod scan's default model.
 */
#ifdef CLIPMOD_CONFDIR
#define CLI_CONFDIR CLIPMOD_CONFDIR
#else
#define CLI_CONFDIR "/usr/local/etc/clipmod"
#endif
#ifdef CLIPMOD_DATADIR
#define CLI_MODELS_DIR CLIPMOD_DATADIR "/models"
#else
#define CLI_MODELS_DIR "/usr/local/share/clipmod/models"
#endif

/* Exit codes, as clamscan: 0 clean, 1 something found, 2 an error. */
enum { EXIT_CLEAN = 0, EXIT_FOUND = 1, EXIT_ERROR = 2 };

/*
 * How a command loads its model: what --model, --merges, --threads, --precision,
 * --cache-dir, --no-cache and --quiet said (strings borrowed from argv). Every
 * command that loads a model keeps one in its options, fills it with
 * cli_parse_model_option and hands it to cli_load_model, so none copies the fields.
 */
typedef struct cli_model_opts {
    const char *model_dir;       /* NULL until the command picks its default */
    const char *merges;          /* --merges: NULL for the model directory's */
    const char *cache_dir;       /* --cache-dir: prompt and weights caches (NULL: the default) */
    int no_cache;                /* --no-cache: neither */
    int threads;                 /* --threads: 0 for the library's choice */
    clipmod_precision precision; /* --precision, default fp32 */
    int quiet;                   /* no notes on stderr */
} cli_model_opts;

/*
 * Long-option codes of the model options ('m' is --model; --quiet is each command's,
 * as its short form differs). A command's own codes start at 256 and stay below these.
 */
enum {
    CLI_OPT_MERGES = 0x1000,
    CLI_OPT_THREADS,
    CLI_OPT_PRECISION,
    CLI_OPT_CACHE_DIR,
    CLI_OPT_NO_CACHE
};

/* getopt_long entries of all six model options, for the tables of the commands that
 * take them all (scan, embed, similarity, policy evaluate). */
/* clang-format off */
#define CLI_MODEL_OPTIONS                                      \
    {"model", required_argument, NULL, 'm'},                   \
    {"merges", required_argument, NULL, CLI_OPT_MERGES},       \
    {"threads", required_argument, NULL, CLI_OPT_THREADS},     \
    {"precision", required_argument, NULL, CLI_OPT_PRECISION}, \
    {"cache-dir", required_argument, NULL, CLI_OPT_CACHE_DIR}, \
    {"no-cache", no_argument, NULL, CLI_OPT_NO_CACHE}
/* clang-format on */

/* What an option parser in parts returns for an option that another part handles. */
enum { CLI_NOT_MINE = 1 };

/*
 * Apply model option c ('m' or a CLI_OPT_* code) with argument arg to *m: 0; -1
 * after printing why (a bad --threads or --precision); CLI_NOT_MINE for any other c.
 */
int cli_parse_model_option(cli_model_opts *m, int c, const char *arg);

typedef struct cli_inputs {
    cli_model_opts m;
    const char **images;
    size_t n_images;
    const char **texts;
    size_t n_texts;
    int images_only; /* texts are optional (embed): a model without a text tower will do */
} cli_inputs;

/* What option parsers return when the command should run; else an exit status. */
enum { CLI_GO_ON = -1 };

/*
 * Parse --model/-m, --merges, --image/-i (repeatable), --text/-t (repeatable),
 * --threads, --precision, --cache-dir, --no-cache; --help prints `usage`. Returns CLI_GO_ON, or an
 * exit status (EXIT_CLEAN after --help, EXIT_ERROR on a bad option).
 */
int cli_parse_inputs(int argc, char **argv, const char *usage, cli_inputs *in);

void cli_inputs_free(cli_inputs *in);

/* Most BLAS threads a command may ask for. */
#define CLI_MAX_THREADS 256

/*
 * The argument of --threads: plain decimal digits from 1 to CLI_MAX_THREADS, into
 * *out. Otherwise prints "clipmod: --threads: expected 1..256, got 'ARG'" and
 * returns -1 (*out untouched). Every command that takes --threads uses this.
 */
int cli_parse_threads(const char *arg, int *out);

/*
 * The argument of --precision: fp32, int8 or bf16, into *out. Otherwise prints
 * "clipmod: --precision: expected fp32, int8 or bf16, got 'ARG'" and returns -1.
 * (A CPU that cannot run it is refused when the model loads: exit status 2.)
 */
int cli_parse_precision(const char *arg, clipmod_precision *out);

/*
 * Load the model `m` names (threads first) with cm_model_from_config, which refuses a
 * model that cannot embed texts and logs the shared demo-model warning (unless
 * m->quiet). Prints the error and returns NULL on failure.
 */
clipmod_model *cli_load_model(const cli_model_opts *m);

/* cli_load_model(&in->m), except that with in->images_only and no texts any model that
 * loads will do. */
clipmod_model *cli_load_inputs_model(const cli_inputs *in);

/*
 * The context text of --context TEXT or --context-file FILE (at most one is non-NULL)
 * into a new buffer *out (free()) of *len bytes; a file is read up to max_bytes + 1
 * bytes, so that the library still sees and reports a cut. Both NULL: *out NULL.
 * Prints the error and returns -1 on failure.
 */
int cli_read_context(const char *text, const char *file, uint64_t max_bytes, char **out,
                     size_t *len);

/* Point src/common's logger at stderr: logfmt, "warn" and up, only "error" when quiet. */
void cli_log_setup(int quiet);

/*
 * Print a cm_engine_from_config errbuf as "clipmod: ..." with the CLI's option
 * names ("--allow-fetch X: ...", "--max-file-bytes N: ...") where it names a setting.
 */
void cli_engine_error(const char *errbuf);

/*
 * Load and embed every image of `in` into a new array of n x dim floats (caller
 * frees with free()); print the error and return NULL on failure.
 */
float *cli_embed_images(const clipmod_model *model, const cli_inputs *in);

/* The same for texts; truncated (may be NULL) receives one flag per text. */
float *cli_embed_texts(const clipmod_model *model, const cli_inputs *in, int *truncated);

int cmd_embed(int argc, char **argv);
int cmd_similarity(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_head(int argc, char **argv);

/*
 * Where scan and policy check look when not told: $CLIPMOD_MODEL/_POLICY, installed,
 * source. The default policy for the demo model is the demo policy.
 */
const char *cli_default_model(void);
const char *cli_default_policy(const clipmod_model *model);

#endif
