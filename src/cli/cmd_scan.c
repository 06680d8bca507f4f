/*
 * cmd_scan.c - `clipmod scan`: moderate files, directories and stdin with a policy.
 *
 * Owns what a clamscan user expects from the command line: which arguments become
 * inputs (files, the regular files of a directory, whole trees with -r, `-` for an
 * image on stdin), the readable and JSON Lines output, the summary, the exit status
 * and the --hook contract for upload scripts. Scoring is the library's: inputs go
 * to clipmod_scan_batch() --batch at a time so the image tower runs batched, and
 * results are printed in input order as each batch completes.
 *
 * It also owns where the model and the policy are looked for when not given, which
 * `clipmod policy check` shares through cli.h.
 *
 * With --url the arguments are URLs (`-` reads them from stdin, one per line) and
 * each batch goes to clipmod_scan_urls() instead: the library downloads, guards
 * and scans; everything else (output, summary, exit status, --hook) is the same.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "dynbuf.h"
#include "engine_cfg.h"
#include "progress.h"
#include "scan_output.h"
#include "scan_quarantine.h"
#include "scan_select.h"
#include "size.h"

/*
 * Installed defaults. The build passes CLIPMOD_DATADIR ("$(pkgdatadir)"); when a
 * default is not installed (or the macro is absent) the path relative to the
 * current directory is used, so clipmod works from a source checkout. The model
 * is the operator's default (models/default, e.g. a link to a fetched model), else
 * the demo model; the demo model gets the demo policy, written for it.
 */
#ifdef CLIPMOD_DATADIR
#define INSTALLED_MODEL       CLI_MODELS_DIR "/default"
#define INSTALLED_DEMO_MODEL  CLIPMOD_DATADIR "/models/demo"
#define INSTALLED_POLICY      CLIPMOD_DATADIR "/policies/default.yaml"
#define INSTALLED_DEMO_POLICY CLIPMOD_DATADIR "/policies/demo.yaml"
#endif
#define SOURCE_MODEL       "models/demo"
#define SOURCE_POLICY      "policies/default.yaml"
#define SOURCE_DEMO_POLICY "policies/demo.yaml"

/* Where a --plugin NAME without '/' is looked for (the library's own rule). */
#ifdef CLIPMOD_PLUGINDIR
#define PLUGIN_DIR CLIPMOD_PLUGINDIR
#else
#define PLUGIN_DIR "$(pkglibdir)"
#endif

/* --hook exit codes; 2 keeps its clamscan meaning (clipmod itself failed). */
enum {
    HOOK_ALLOW = 0,
    HOOK_UNSCANNED = 3,
    HOOK_TAG = 10,
    HOOK_FLAG = 11,
    HOOK_QUARANTINE = 12,
    HOOK_REJECT = 13
};

#define DEFAULT_BATCH 8
#define MAX_BATCH     256

/* A line of the --url - list longer than this is kept cut, and refused as a bad URL. */
#define MAX_URL_LINE 8193

/* Long options that have no short form. */
enum {
    OPT_JSON = 256,
    OPT_EXPLAIN,
    OPT_HOOK,
    OPT_BATCH,
    OPT_UNSCANNED_OK,
    OPT_FOLLOW,
    OPT_URL,
    OPT_ALLOW_FETCH,
    OPT_POLICY_SET,
    OPT_MOVE,
    OPT_COPY,
    OPT_EXCLUDE,
    OPT_INCLUDE,
    OPT_EXCLUDE_DIR,
    OPT_INCLUDE_DIR,
    OPT_LOG,
    OPT_PLUGIN,
    OPT_CONTEXT,
    OPT_CONTEXT_FILE,
    OPT_TABLE,
    OPT_NO_SUMMARY,
    OPT_SETTING /* OPT_SETTING + s for engine setting s */
};

/* What each engine setting means, for --help; the names and defaults are the library's. */
static const char *const setting_help[CLIPMOD_SETTING__COUNT] = {
    [CLIPMOD_MAX_FILE_BYTES] = "larger inputs are unscanned (too-large)",
    [CLIPMOD_MAX_PIXELS] = "width x height of a frame, from the header",
    [CLIPMOD_MAX_SIDE] = "largest width or height",
    [CLIPMOD_MAX_FRAMES] = "frames an animation may have at all",
    [CLIPMOD_MAX_SCAN_MS] = "milliseconds to decode one input (then: timeout)",
    [CLIPMOD_TOP_PROMPTS] = "prompts listed per category in results",
    [CLIPMOD_FETCH_CONNECT_MS] = "--url: milliseconds to connect to a server",
    [CLIPMOD_FETCH_TIMEOUT_MS] = "--url: milliseconds for a whole download",
    [CLIPMOD_FETCH_MAX_REDIRECTS] = "--url: redirects followed, each re-checked",
    [CLIPMOD_FETCH_PARALLEL] = "--url: downloads at once",
    [CLIPMOD_MAX_TOTAL_PIXELS] = "pixels one input may cost to decode, all frames taken",
    [CLIPMOD_MAX_CONTEXT_BYTES] = "bytes of context text read per input (the rest is cut)",
    [CLIPMOD_MAX_CONTEXT_WINDOWS] = "77-token windows of context text scored per input",
};

typedef struct scan_opts {
    cli_model_opts m; /* --model, --merges, --threads, --precision, --cache-dir, --no-cache, -q */
    const char *policy;
    int json, explain, recursive, follow, hook, unscanned_ok;
    int model_defaulted;      /* neither --model nor $CLIPMOD_MODEL: say how to choose one */
    int url;                  /* --url: the arguments are URLs */
    const char **allow_fetch; /* --allow-fetch values, in order */
    size_t n_allow_fetch;
    cm_plugin_cfg *plugins; /* --plugin, in order; each path allocated, config borrowed */
    size_t n_plugins;
    const char *sets[64]; /* --set: what-if changes to the policy, in order */
    size_t n_sets;
    size_t batch;
    int setting_given[CLIPMOD_SETTING__COUNT];
    uint64_t setting[CLIPMOD_SETTING__COUNT];
    const char *context, *context_file; /* --context TEXT, --context-file FILE */
    int infected;                       /* -i: print only flagged (and unscanned) inputs */
    const char *move_dir;               /* --move: flagged files are moved there */
    const char *copy_dir;               /* --copy: flagged files are copied there */
    const char *file_list;              /* -f: more inputs, one per line */
    const char *log_file;               /* --log: the report is appended there */
    scan_select sel;                    /* --exclude/--include(-dir) */
    scan_table *table;                  /* --table: &table_state; else NULL */
    scan_table table_state;
    int no_summary; /* --no-summary */
} scan_opts;

/* One input: a path, or the image read from stdin. */
typedef struct entry {
    char *path; /* NULL for stdin */
} entry;

typedef struct entries {
    entry *v;
    size_t n, cap;
    int urls; /* every path is a URL (--url) */
    unsigned char *stdin_data;
    size_t stdin_len;
    int have_stdin;
    char *context; /* --context or --context-file: the text that came with every input */
    size_t context_len;
} entries;

/* A directory entered while walking, to never enter it twice (symlink loops). */
typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct walk_state {
    const scan_opts *o;
    entries *in;
    dir_id *seen;
    size_t n_seen, cap_seen;
    size_t dirs, errors;
    size_t skipped_dirs; /* subdirectories left out for want of -r */
    size_t skipped;      /* files in directories that are not images (sidecars) */
    size_t excluded;     /* files and directories left out by --exclude/--include */
} walk_state;

typedef struct tally {
    size_t clean, flagged, unscanned, errors;
} tally;

/* ------------------------------------------------------------------------ */
/* Defaults shared with `clipmod policy check`                              */
/* ------------------------------------------------------------------------ */

static const char *from_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *cli_default_model(void)
{
    const char *env = from_env("CLIPMOD_MODEL");
    if (env)
        return env;
#ifdef INSTALLED_MODEL
    if (access(INSTALLED_MODEL, F_OK) == 0)
        return INSTALLED_MODEL;
    if (access(SOURCE_MODEL, F_OK) != 0 && access(INSTALLED_DEMO_MODEL, F_OK) == 0)
        return INSTALLED_DEMO_MODEL;
#endif
    return SOURCE_MODEL;
}

const char *cli_default_policy(const clipmod_model *model)
{
    const char *env = from_env("CLIPMOD_POLICY");
    const int demo = model && clipmod_model_is_demo(model);
    if (env)
        return env;
#ifdef INSTALLED_POLICY
    if (access(demo ? SOURCE_DEMO_POLICY : SOURCE_POLICY, F_OK) != 0) {
        const char *installed = demo ? INSTALLED_DEMO_POLICY : INSTALLED_POLICY;
        if (access(installed, F_OK) == 0)
            return installed;
    }
#endif
    return demo ? SOURCE_DEMO_POLICY : SOURCE_POLICY;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: clipmod scan [OPTION]... FILE|DIR|-...\n"
            "   or: clipmod scan --url [OPTION]... URL|-...\n"
            "Scan images with a moderation policy. Each input gets one line: clean, FLAGGED\n"
            "(with the category, its score and the action) or unscanned (with the reason).\n"
            "A directory's files are scanned, its subdirectories only with -r; `-` reads one\n"
            "image from standard input.\n"
            "\n"
            "  -p, --policy FILE     policy (default: $CLIPMOD_POLICY, else %s)\n"
            "  -m, --model DIR       model directory (default: $CLIPMOD_MODEL, else %s)\n"
            "      --merges FILE     tokenizer merges, if not in the model directory\n"
            "  -r, --recursive       scan directories recursively\n"
            "      --follow-symlinks follow symbolic links to directories while recursing\n"
            "      --json            one JSON object per input (JSON Lines; see clipmod(1))\n"
            "      --explain         every category's score; with --json every prompt's\n"
            "      --table           one aligned row per input (verdict, action, category,\n"
            "                        score against threshold) and a legend at the end\n"
            "      --hook            one input; print only its action and exit with its code\n"
            "  -q, --quiet           no progress bar, summary or warnings\n"
            "      --no-summary      no summary at the end\n"
            "      --unscanned-ok    unscanned inputs do not make the exit status 2\n"
            "      --batch N         images per forward pass (default %d)\n"
            "      --threads N       threads for matrix products\n"
            "      --precision P     fp32 (default), int8 or bf16: see clipmod(1)\n"
            "      --cache-dir DIR   prompt and weights caches (default ~/.cache/clipmod)\n"
            "      --no-cache        do not read or write either\n"
            "      --context TEXT    the text that came with the images (a caption, a\n"
            "                        message): categories with `context:` in the policy\n"
            "                        judge each image with it (clipmod-policy(5) CONTEXT)\n"
            "      --context-file FILE  the same, read from FILE (any bytes; what is past\n"
            "                        max-context-bytes is cut and said in the JSON)\n"
            "      --set C.KEY=VALUE what if: category C's threshold or action changed\n"
            "                        (weapons.threshold=0.7, drugs.action=allow) without\n"
            "                        editing the policy file; repeatable\n"
            "      --url             the arguments are http(s) URLs to download and scan;\n"
            "                        `-` reads URLs from standard input, one per line\n"
            "      --allow-fetch NET|HOST  let --url reach a non-public network (CIDR, e.g.\n"
            "                        10.1.0.0/16, ::1/128) or host name; repeatable. Without\n"
            "                        it only public addresses are fetched\n"
            "  -i, --infected        print only flagged (and unscanned) inputs\n"
            "      --move DIR        move flagged files into DIR (never overwriting: a\n"
            "                        taken name gets .001, .002 ...)\n"
            "      --copy DIR        copy flagged files into DIR, the same way\n"
            "      --exclude REGEX   skip files whose path matches REGEX (POSIX extended\n"
            "                        regular expression, as clamscan: '\\.txt$', not '*.txt')\n"
            "      --include REGEX   scan only files whose path matches REGEX\n"
            "      --exclude-dir REGEX  do not enter directories whose path matches REGEX\n"
            "      --include-dir REGEX  enter only directories whose path matches REGEX\n"
            "                        (all four repeatable; excludes win)\n"
            "  -f, --file-list FILE  scan the paths listed in FILE, one per line (- for stdin)\n"
            "      --log FILE        append the results and the summary to FILE\n"
            "      --plugin PATH[:CONFIG]  load an operator plugin (a .so exporting\n"
            "                        clipmod_plugin_v1) with the configuration after the\n"
            "                        first ':'; a PATH without '/' is an installed plugin\n"
            "                        (see Files). Repeatable: each result goes through\n"
            "                        the plugins in this order\n"
            "  -h, --help            show this help\n"
            "\n"
            "Inside directories, files that are not images by their first bytes (a .txt or\n"
            ".json beside the photos) are skipped and counted as \"Skipped files\"; a file\n"
            "named on the command line is always scanned.\n"
            "\n"
            "Limits (N is a plain decimal number; a byte limit also takes the size syntax\n"
            "of clipmodd and the milter: 512k, 25M, 1G, binary multiples):\n",
#ifdef INSTALLED_POLICY
            INSTALLED_POLICY, INSTALLED_MODEL,
#else
            SOURCE_POLICY, SOURCE_MODEL,
#endif
            DEFAULT_BATCH);
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++) {
        char opt[64];
        snprintf(opt, sizeof opt, "--%s N", clipmod_setting_name((clipmod_setting)s));
        fprintf(f, "      %-20s default %-9llu %s\n", opt,
                (unsigned long long)clipmod_setting_default((clipmod_setting)s),
                setting_help[s] ? setting_help[s] : "");
    }
    fprintf(f,
            "\n"
            "Files:\n"
            "  %s/default\n"
            "      the default model, as for clipmodd\n"
            "  %s\n"
            "      the system models directory (clipmod model)\n"
            "  %s\n"
            "      the configuration directory of clipmodd and clipmod-milter\n"
            "  %s/NAME.so\n"
            "      the installed plugin --plugin NAME loads\n",
            CLI_MODELS_DIR, CLI_MODELS_DIR, CLI_CONFDIR, PLUGIN_DIR);
    fprintf(f, "\n"
               "Exit status: 0 all clean, 1 something flagged, 2 an error or an unscanned\n"
               "input (1 wins over 2, as in clamscan).\n"
               "With --hook: 0 allow, 10 tag, 11 flag, 12 quarantine, 13 reject,\n"
               "3 unscanned, 2 error.\n");
}

/* A whole decimal number, nothing else: "10M" or "-1" are mistakes worth reporting. */
static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Settings counted in bytes are named *-bytes by the library. */
static int is_byte_setting(int s)
{
    const char *name = clipmod_setting_name((clipmod_setting)s);
    size_t n = strlen(name);
    return n > 6 && !strcmp(name + n - 6, "-bytes");
}

/* A setting's value: bytes in the runtime's one size syntax (25M), others plain numbers. */
static int parse_setting(int s, const char *arg, uint64_t *v)
{
    char why[128];

    if (is_byte_setting(s)) {
        if (cm_parse_size(arg, v, why, sizeof why) == 0)
            return 0;
        fprintf(stderr, "clipmod: --%s: %s\n", clipmod_setting_name((clipmod_setting)s), why);
        return -1;
    }
    if (parse_u64(arg, v) == 0)
        return 0;
    fprintf(stderr, "clipmod: --%s needs a decimal number, not '%s'\n",
            clipmod_setting_name((clipmod_setting)s), arg);
    return -1;
}

/*
 * --plugin PATH[:CONFIG]: the path ends at the first ':' (the configuration may hold
 * more of them, "path=/var/log/a.jsonl"). A path without '/' names an installed
 * plugin ($(pkglibdir)/NAME.so), as in clipmodd's and the milter's plugins lists.
 */
static int add_plugin(scan_opts *o, const char *arg)
{
    const char *colon = strchr(arg, ':');
    size_t n = colon ? (size_t)(colon - arg) : strlen(arg);

    if (n == 0) {
        fprintf(stderr, "clipmod: --plugin: expected PATH[:CONFIG], got '%s'\n", arg);
        return -1;
    }
    cm_plugin_cfg *grown = realloc(o->plugins, (o->n_plugins + 1) * sizeof *grown);
    if (!grown) {
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    o->plugins = grown;
    char *path = strndup(arg, n);
    if (!path) {
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    o->plugins[o->n_plugins++] = (cm_plugin_cfg){path, colon ? colon + 1 : NULL};
    return 0;
}

static void free_plugins(scan_opts *o)
{
    for (size_t i = 0; i < o->n_plugins; i++)
        free((char *)o->plugins[i].path);
    free(o->plugins);
    o->plugins = NULL;
    o->n_plugins = 0;
}

/*
 * Option parsing comes in parts, each returning 0, -1 (a bad value, said on stderr)
 * or CLI_NOT_MINE when the option is another part's: the model options
 * (cli_parse_model_option), plain flags and paths, options whose value is checked or
 * collected, and the clamscan habits.
 */

/* Options that set a flag or keep their argument as it is. */
static int parse_plain(scan_opts *o, int c, const char *arg)
{
    switch (c) {
    case 'p':
        o->policy = arg;
        break;
    case 'r':
        o->recursive = 1;
        break;
    case OPT_FOLLOW:
        o->follow = 1;
        break;
    case OPT_JSON:
        o->json = 1;
        break;
    case OPT_EXPLAIN:
        o->explain = 1;
        break;
    case OPT_HOOK:
        o->hook = 1;
        break;
    case OPT_TABLE:
        o->table = &o->table_state;
        break;
    case OPT_NO_SUMMARY:
        o->no_summary = 1;
        break;
    case 'q':
        o->m.quiet = 1;
        break;
    case OPT_UNSCANNED_OK:
        o->unscanned_ok = 1;
        break;
    case OPT_URL:
        o->url = 1;
        break;
    default:
        return CLI_NOT_MINE;
    }
    return 0;
}

static int add_allow_fetch(scan_opts *o, const char *arg)
{
    const char **grown = realloc(o->allow_fetch, (o->n_allow_fetch + 1) * sizeof *grown);

    if (!grown) {
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    o->allow_fetch = grown;
    o->allow_fetch[o->n_allow_fetch++] = arg;
    return 0;
}

/* An engine setting's option (--max-pixels N ...): named by the library. */
static int parse_engine_setting(scan_opts *o, int c, const char *arg)
{
    int s = c - OPT_SETTING;
    uint64_t v;

    if (s < 0 || s >= CLIPMOD_SETTING__COUNT)
        return CLI_NOT_MINE;
    if (parse_setting(s, arg, &v))
        return -1;
    o->setting[s] = v;
    o->setting_given[s] = 1;
    return 0;
}

/* Options whose value is checked, or collected over repeats. */
static int parse_valued(scan_opts *o, int c, const char *arg)
{
    uint64_t v;

    switch (c) {
    case OPT_BATCH:
        if (parse_u64(arg, &v) || v < 1 || v > MAX_BATCH) {
            fprintf(stderr, "clipmod: --batch must be from 1 to %d\n", MAX_BATCH);
            return -1;
        }
        o->batch = (size_t)v;
        return 0;
    case OPT_ALLOW_FETCH:
        return add_allow_fetch(o, arg);
    case OPT_POLICY_SET:
        if (o->n_sets == sizeof o->sets / sizeof *o->sets) {
            fprintf(stderr, "clipmod: too many --set options\n");
            return -1;
        }
        o->sets[o->n_sets++] = arg;
        return 0;
    case OPT_PLUGIN:
        return add_plugin(o, arg);
    case OPT_CONTEXT:
    case OPT_CONTEXT_FILE:
        if (o->context || o->context_file) {
            fprintf(stderr, "clipmod: give one --context or --context-file\n");
            return -1;
        }
        *(c == OPT_CONTEXT ? &o->context : &o->context_file) = arg;
        return 0;
    default:
        return parse_engine_setting(o, c, arg);
    }
}

/* The clamscan habits (see scan_select.c and scan_quarantine.c). */
static int parse_habit(scan_opts *o, int c, const char *arg)
{
    switch (c) {
    case 'i':
        o->infected = 1;
        return 0;
    case 'f':
        o->file_list = arg;
        return 0;
    case OPT_MOVE:
    case OPT_COPY:
        if ((c == OPT_MOVE ? o->copy_dir : o->move_dir) != NULL) {
            fprintf(stderr, "clipmod: --move and --copy exclude each other\n");
            return -1;
        }
        *(c == OPT_MOVE ? &o->move_dir : &o->copy_dir) = arg;
        return 0;
    case OPT_LOG:
        o->log_file = arg;
        return 0;
    case OPT_EXCLUDE:
    case OPT_INCLUDE:
    case OPT_EXCLUDE_DIR:
    case OPT_INCLUDE_DIR:
        return scan_select_add(&o->sel, c - OPT_EXCLUDE, arg) ? -1 : 0;
    default:
        return CLI_NOT_MINE;
    }
}

static const struct option fixed_options[] = {
    CLI_MODEL_OPTIONS,
    {"policy", required_argument, NULL, 'p'},
    {"recursive", no_argument, NULL, 'r'},
    {"follow-symlinks", no_argument, NULL, OPT_FOLLOW},
    {"json", no_argument, NULL, OPT_JSON},
    {"explain", no_argument, NULL, OPT_EXPLAIN},
    {"hook", no_argument, NULL, OPT_HOOK},
    {"quiet", no_argument, NULL, 'q'},
    {"unscanned-ok", no_argument, NULL, OPT_UNSCANNED_OK},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"url", no_argument, NULL, OPT_URL},
    {"allow-fetch", required_argument, NULL, OPT_ALLOW_FETCH},
    {"set", required_argument, NULL, OPT_POLICY_SET},
    {"help", no_argument, NULL, 'h'},
    {"infected", no_argument, NULL, 'i'},
    {"move", required_argument, NULL, OPT_MOVE},
    {"copy", required_argument, NULL, OPT_COPY},
    {"exclude", required_argument, NULL, OPT_EXCLUDE},
    {"include", required_argument, NULL, OPT_INCLUDE},
    {"exclude-dir", required_argument, NULL, OPT_EXCLUDE_DIR},
    {"include-dir", required_argument, NULL, OPT_INCLUDE_DIR},
    {"file-list", required_argument, NULL, 'f'},
    {"log", required_argument, NULL, OPT_LOG},
    {"plugin", required_argument, NULL, OPT_PLUGIN},
    {"context", required_argument, NULL, OPT_CONTEXT},
    {"context-file", required_argument, NULL, OPT_CONTEXT_FILE},
    {"table", no_argument, NULL, OPT_TABLE},
    {"no-summary", no_argument, NULL, OPT_NO_SUMMARY},
};
enum { N_FIXED = sizeof fixed_options / sizeof fixed_options[0] };

/* The fixed options, then one per engine setting: a new setting needs no CLI change. */
static void build_options(struct option opts[N_FIXED + CLIPMOD_SETTING__COUNT + 1])
{
    memcpy(opts, fixed_options, sizeof fixed_options);
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++)
        opts[N_FIXED + s] = (struct option){clipmod_setting_name((clipmod_setting)s),
                                            required_argument, NULL, OPT_SETTING + s};
    opts[N_FIXED + CLIPMOD_SETTING__COUNT] = (struct option){NULL, 0, NULL, 0};
}

/* What no single option can check: the inputs and options that exclude each other. */
static int check_options(int argc, scan_opts *o)
{
    if (optind >= argc && !o->file_list) {
        fprintf(stderr, o->url ? "clipmod: scan: no URL (give URLs, or - to read them)\n"
                               : "clipmod: scan: no input (give files, directories or -)\n");
        return -1;
    }
    if (o->table && (o->json || o->hook || o->explain)) {
        fprintf(stderr, "clipmod: --table does not go with --json, --hook or --explain\n");
        return -1;
    }
    if (o->hook && argc - optind != 1) {
        fprintf(stderr, "clipmod: --hook scans exactly one input\n");
        return -1;
    }
    return 0;
}

static int parse_options(int argc, char **argv, scan_opts *o)
{
    struct option opts[N_FIXED + CLIPMOD_SETTING__COUNT + 1];
    int c;

    build_options(opts);
    memset(o, 0, sizeof *o);
    o->batch = DEFAULT_BATCH;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:m:rqhif:", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return EXIT_CLEAN;
        }
        int rc = cli_parse_model_option(&o->m, c, optarg);
        if (rc == CLI_NOT_MINE)
            rc = parse_plain(o, c, optarg);
        if (rc == CLI_NOT_MINE)
            rc = parse_valued(o, c, optarg);
        if (rc == CLI_NOT_MINE)
            rc = parse_habit(o, c, optarg);
        if (rc == CLI_NOT_MINE)
            usage(stderr);
        if (rc)
            return EXIT_ERROR;
    }
    if (check_options(argc, o))
        return EXIT_ERROR;
    /* The default policy depends on the model (the demo model has its own); it is
     * chosen once the model is loaded. */
    if (!o->m.model_dir) {
        o->m.model_dir = cli_default_model();
        o->model_defaulted = !getenv("CLIPMOD_MODEL");
    }
    return CLI_GO_ON;
}
static uint64_t setting_value(const scan_opts *o, clipmod_setting s)
{
    return o->setting_given[s] ? o->setting[s] : clipmod_setting_default(s);
}

/* ------------------------------------------------------------------------ */
/* Inputs: arguments, directory walks, stdin                                */
/* ------------------------------------------------------------------------ */

static int push_entry(entries *in, char *path)
{
    if (in->n == in->cap) {
        size_t cap = in->cap ? 2 * in->cap : 64;
        entry *grown = realloc(in->v, cap * sizeof *grown);
        if (!grown)
            return -1;
        in->v = grown;
        in->cap = cap;
    }
    in->v[in->n++].path = path;
    return 0;
}

static int push_path(entries *in, const char *path)
{
    char *copy = strdup(path);
    if (!copy || push_entry(in, copy)) {
        free(copy);
        return -1;
    }
    return 0;
}

static void entries_free(entries *in)
{
    for (size_t i = 0; i < in->n; i++)
        free(in->v[i].path);
    free(in->v);
    free(in->stdin_data);
    free(in->context);
    memset(in, 0, sizeof *in);
}

/*
 * The image on stdin, read whole: the library scans memory. Reading stops one byte
 * past max-file-bytes (the buffer's cap) so that an endless pipe costs no more than
 * that, and the library still sees an input too large and says so.
 */
static int read_stdin(entries *in, uint64_t max_bytes)
{
    unsigned char chunk[1 << 16];
    cm_dbuf d;
    const size_t limit = max_bytes < SIZE_MAX - 1 ? (size_t)max_bytes + 1 : SIZE_MAX - 1;
    int rc;

    cm_dbuf_init(&d, limit);
    rc = cm_dbuf_addn(&d, "", 0); /* an empty stdin is an input too: data is never NULL */
    while (rc == CM_DBUF_OK && cm_dbuf_len(&d) < limit) {
        size_t want = limit - cm_dbuf_len(&d);
        if (want > sizeof chunk)
            want = sizeof chunk;
        const size_t got = fread(chunk, 1, want, stdin);
        rc = cm_dbuf_addn(&d, chunk, got);
        if (got < want)
            break;
    }
    if (rc != CM_DBUF_OK)
        errno = ENOMEM;                      /* TOOBIG cannot happen: reads stop at the cap */
    if (rc != CM_DBUF_OK || ferror(stdin)) { /* after a read error fread's errno stands */
        cm_dbuf_free(&d);
        return -1;
    }
    in->stdin_data = (unsigned char *)cm_dbuf_take(&d, &in->stdin_len);
    return 0;
}

/*
 * --url -: URLs from stdin, one per line. Blank lines and lines starting with '#'
 * are skipped and surrounding blanks dropped (a list pasted from a file or a
 * webhook). A line is kept to MAX_URL_LINE bytes, which the library refuses as
 * too long, so that a line without end costs no more memory than that.
 */
static int read_url_lines(entries *in)
{
    char *line = malloc(MAX_URL_LINE + 1);
    size_t n = 0;
    int c, rc = 0;

    if (!line)
        return -1;
    do {
        c = getchar();
        if (c != EOF && c != '\n') {
            if (n < MAX_URL_LINE)
                line[n++] = (char)c;
            continue;
        }
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
            n--;
        line[n] = '\0';
        const char *u = line;
        while (*u == ' ' || *u == '\t')
            u++;
        if (*u && *u != '#' && push_path(in, u)) {
            rc = -1;
            break;
        }
        n = 0;
    } while (c != EOF);
    if (!rc && ferror(stdin))
        rc = -1;
    free(line);
    return rc;
}

/* --url: every argument is a URL, except `-` which reads a list of them. */
static int collect_urls(char **args, int n_args, entries *in, walk_state *w)
{
    int have_list = 0;

    in->urls = 1;
    for (int i = 0; i < n_args; i++) {
        if (strcmp(args[i], "-")) {
            if (push_path(in, args[i]))
                return -1;
            continue;
        }
        if (have_list++) {
            fprintf(stderr, "clipmod: '-' given twice: stdin holds one list of URLs\n");
            w->errors++;
            continue;
        }
        if (read_url_lines(in)) {
            if (!ferror(stdin))
                return -1;
            fprintf(stderr, "clipmod: -: cannot read standard input: %s\n", strerror(errno));
            w->errors++;
        }
    }
    return 0;
}

static int seen_dir(walk_state *w, const struct stat *st)
{
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen[i].dev == st->st_dev && w->seen[i].ino == st->st_ino)
            return 1;
    if (w->n_seen == w->cap_seen) {
        size_t cap = w->cap_seen ? 2 * w->cap_seen : 32;
        dir_id *grown = realloc(w->seen, cap * sizeof *grown);
        if (!grown)
            return -1;
        w->seen = grown;
        w->cap_seen = cap;
    }
    w->seen[w->n_seen++] = (dir_id){st->st_dev, st->st_ino};
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    int slash = n && dir[n - 1] == '/';
    size_t size = n + strlen(name) + 2;
    char *p = malloc(size);
    if (p)
        snprintf(p, size, "%s%s%s", dir, slash ? "" : "/", name);
    return p;
}

/*
 * A file found inside a directory is taken when the patterns select it and its
 * first bytes are an image's: sidecar files (.txt, .json) are counted, not failed.
 * An unreadable file is kept so that its error is reported.
 */
static int keep_walked_file(walk_state *w, const char *path)
{
    if (!scan_select_file(&w->o->sel, path)) {
        w->excluded++;
        return 0;
    }
    if (scan_sniff_image(path) == 0) {
        w->skipped++;
        return 0;
    }
    return 1;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/*
 * The names in directory `dir` but "." and "..", sorted, so that results come out
 * the same on every run. A directory that cannot be read counts as an error and
 * gives what was read of it. -1 only when out of memory.
 */
static int read_names(walk_state *w, const char *dir, char ***out, size_t *out_n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;

    *out = NULL;
    *out_n = 0;
    if (!d) {
        fprintf(stderr, "clipmod: %s: %s\n", dir, strerror(errno));
        w->errors++;
        return 0;
    }
    w->dirs++;
    while ((errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown)
                goto oom;
            names = grown;
        }
        names[n] = strdup(de->d_name);
        if (!names[n])
            goto oom;
        n++;
    }
    if (errno) {
        fprintf(stderr, "clipmod: %s: %s\n", dir, strerror(errno));
        w->errors++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, compare_names);
    *out = names;
    *out_n = n;
    return 0;
oom:
    closedir(d);
    free_names(names, n);
    return -1;
}

static int walk(walk_state *w, const char *dir, const struct stat *st);

/*
 * One entry of a walked directory: a selected image file becomes an input (`path`
 * passes to w->in), a directory is descended into with -r; vanished entries,
 * dangling links and other kinds of file are passed over. -1 only when out of
 * memory.
 */
static int walk_entry(walk_state *w, char *path)
{
    struct stat lst, tst;
    int rc = 0;

    if (lstat(path, &lst) != 0) {
        free(path); /* vanished since readdir: nothing to scan */
        return 0;
    }
    int is_link = S_ISLNK(lst.st_mode);
    if (is_link && stat(path, &tst) != 0) {
        free(path); /* a dangling link */
        return 0;
    }
    const struct stat *t = is_link ? &tst : &lst;
    if (S_ISREG(t->st_mode)) {
        if (!keep_walked_file(w, path)) {
            free(path);
            return 0;
        }
        if (push_entry(w->in, path)) {
            free(path);
            return -1;
        }
        return 0;
    }
    if (S_ISDIR(t->st_mode)) {
        if (!scan_select_dir(&w->o->sel, path))
            w->excluded++;
        else if (!w->o->recursive)
            w->skipped_dirs++;
        else if (!is_link || w->o->follow)
            rc = walk(w, path, t);
    }
    free(path);
    return rc;
}

/*
 * Add the regular files of directory `dir` (whose stat is `st`) in name order; with
 * -r descend into subdirectories. Symbolic links to files are followed; links to
 * directories only with --follow-symlinks. Every other kind of file is skipped
 * silently, as clamscan does inside directories. Returns -1 only when out of memory.
 */
static int walk(walk_state *w, const char *dir, const struct stat *st)
{
    char **names;
    size_t n;
    int rc = 0;

    int seen = seen_dir(w, st);
    if (seen)
        return seen < 0 ? -1 : 0; /* a loop, or a directory reached twice through links */
    if (read_names(w, dir, &names, &n))
        return -1;
    for (size_t i = 0; i < n && !rc; i++) {
        char *path = join_path(dir, names[i]);
        rc = path ? walk_entry(w, path) : -1;
    }
    free_names(names, n);
    return rc;
}

/*
 * Turn the arguments into inputs. What a user names is taken as meant: links given
 * as arguments are followed, and a path that does not exist is still an input, so
 * that it gets a result (unscanned, io-error) like any unreadable file. Problems
 * with arguments themselves go to stderr and count as errors.
 */
static int collect(const scan_opts *o, char **args, int n_args, entries *in, walk_state *w)
{
    w->o = o;
    w->in = in;
    if (o->url)
        return collect_urls(args, n_args, in, w);
    for (int i = 0; i < n_args; i++) {
        const char *a = args[i];
        struct stat st;

        if (!strcmp(a, "-")) {
            if (in->have_stdin) {
                fprintf(stderr, "clipmod: '-' given twice: stdin holds one image\n");
                w->errors++;
                continue;
            }
            if (isatty(STDIN_FILENO)) {
                fprintf(stderr, "clipmod: -: standard input is a terminal, not an image\n");
                w->errors++;
                continue;
            }
            if (read_stdin(in, setting_value(o, CLIPMOD_MAX_FILE_BYTES))) {
                fprintf(stderr, "clipmod: -: cannot read standard input: %s\n", strerror(errno));
                w->errors++;
                continue;
            }
            in->have_stdin = 1;
            if (push_entry(in, NULL))
                return -1;
            continue;
        }
        if ((stat(a, &st) != 0 || S_ISREG(st.st_mode)) && !scan_select_file(&o->sel, a)) {
            w->excluded++;
        } else if (stat(a, &st) != 0 || S_ISREG(st.st_mode)) {
            if (push_path(in, a))
                return -1;
        } else if (S_ISDIR(st.st_mode)) {
            if (o->hook) {
                fprintf(stderr, "clipmod: %s: --hook scans one file, not a directory\n", a);
                w->errors++;
            } else if (walk(w, a, &st)) {
                return -1;
            }
        } else {
            fprintf(stderr, "clipmod: %s: not a regular file or directory\n", a);
            w->errors++;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

/* One result to f (stdout or the --log file; --explain details go to stdout only). */
static int print_result_to(FILE *f, const scan_opts *o, const clipmod_result *r)
{
    clipmod_state state = clipmod_result_state(r);

    if (o->json) {
        char *line = clipmod_result_to_json(r, o->explain);
        if (!line)
            return -1;
        fprintf(f, "%s\n", line);
        clipmod_free(line);
        return 0;
    }
    scan_put_name(f, clipmod_result_name(r));
    if (state == CLIPMOD_STATE_UNSCANNED) {
        const char *text = scan_reason_text(r);
        fprintf(f, ": unscanned (%s%s", clipmod_reason_name(clipmod_result_reason(r)),
                *text ? ": " : "");
        scan_put_name(f, text);
        fputs(")\n", f);
        return 0;
    }
    if (state == CLIPMOD_STATE_FLAGGED)
        scan_print_flagged(f, r);
    else
        fputs(": clean\n", f);
    if (o->explain && f == stdout)
        scan_print_explain(r);
    return 0;
}

/* -i leaves out clean inputs, as clamscan's --infected; problems are still shown. */
static int print_result(const scan_opts *o, const clipmod_result *r)
{
    if (o->infected && clipmod_result_state(r) == CLIPMOD_STATE_CLEAN)
        return 0;
    if (o->table) {
        scan_table_row(stdout, o->table, r);
        return 0;
    }
    return print_result_to(stdout, o, r);
}

static int hook_code(const clipmod_result *r)
{
    if (clipmod_result_state(r) == CLIPMOD_STATE_UNSCANNED)
        return HOOK_UNSCANNED;
    switch (clipmod_result_action(r)) {
    case CLIPMOD_ACTION_ALLOW:
        return HOOK_ALLOW;
    case CLIPMOD_ACTION_TAG:
        return HOOK_TAG;
    case CLIPMOD_ACTION_FLAG:
        return HOOK_FLAG;
    case CLIPMOD_ACTION_QUARANTINE:
        return HOOK_QUARANTINE;
    case CLIPMOD_ACTION_REJECT:
        return HOOK_REJECT;
    }
    return EXIT_ERROR;
}

/* --hook: the action word (or the JSON line) alone on stdout, the reason on stderr. */
static int print_hook(const scan_opts *o, const clipmod_result *r)
{
    int unscanned = clipmod_result_state(r) == CLIPMOD_STATE_UNSCANNED;
    if (o->json) {
        if (print_result(o, r))
            return -1;
    } else {
        puts(unscanned ? "unscanned" : clipmod_action_name(clipmod_result_action(r)));
    }
    if (unscanned && !o->m.quiet) {
        fputs("clipmod: ", stderr);
        scan_put_name(stderr, clipmod_result_name(r));
        fprintf(stderr, ": unscanned (%s: ", clipmod_reason_name(clipmod_result_reason(r)));
        scan_put_name(stderr, scan_reason_text(r));
        fputs(")\n", stderr);
    }
    return 0;
}

static void print_summary(FILE *f, const scan_opts *o, const clipmod_engine *engine,
                          const clipmod_model *model, const walk_state *w, const tally *t,
                          double seconds, double scan_s)
{
    size_t files = t->clean + t->flagged + t->unscanned;
    long whole = (long)seconds;
    const char *policy = clipmod_engine_policy_name(engine);
    fprintf(f, "\n----------- SCAN SUMMARY -----------\n");
    fprintf(f, "Policy: %s\n", *policy ? policy : o->policy);
    /* 12 hex digits, as clipmodd's Clipmod-Policy-Fingerprint header and log lines. */
    fprintf(f, "Policy fingerprint: %.12s\n", clipmod_engine_policy_fingerprint(engine));
    fprintf(f, "Model: %s\n", clipmod_model_describe(model));
    fprintf(f, "Scanned directories: %zu\n", w->dirs);
    fprintf(f, "Scanned files: %zu\n", t->clean + t->flagged);
    fprintf(f, "Flagged files: %zu\n", t->flagged);
    fprintf(f, "Unscanned files: %zu\n", t->unscanned);
    fprintf(f, "Skipped files: %zu\n", w->skipped);
    fprintf(f, "Excluded: %zu\n", w->excluded);
    fprintf(f, "Errors: %zu\n", t->errors);
    /* Time is the whole run; Rate leaves out the start-up (model loading, policy
     * compiling, listing inputs), which a batch of a few files would otherwise hide
     * the scanning speed behind. Both say so, and Time gives the split. */
    fprintf(f, "Time: %.3f sec (%ld m %ld s; load %.3f sec, scan %.3f sec)\n", seconds, whole / 60,
            whole % 60, seconds - scan_s, scan_s);
    if (files && scan_s > 0)
        fprintf(f, "Rate: %.1f files/sec (scan only)\n", files / scan_s);
}

/* ------------------------------------------------------------------------ */
/* Engine and scanning                                                      */
/* ------------------------------------------------------------------------ */

/* Print a library-provided block of lines, making sure it ends with a newline. */
static void print_lines(FILE *f, const char *text)
{
    size_t n = strlen(text);
    fputs(text, f);
    if (n && text[n - 1] != '\n')
        fputc('\n', f);
}

/* What src/common builds the engine from: everything the options said. */
static void scan_engine_cfg(const scan_opts *o, cm_engine_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->model = o->m.model_dir;
    cfg->merges = o->m.merges;
    cfg->threads = o->m.threads;
    cfg->precision = o->m.precision;
    cfg->policy = o->policy;
    memcpy(cfg->setting, o->setting, sizeof cfg->setting);
    memcpy(cfg->setting_given, o->setting_given, sizeof cfg->setting_given);
    cfg->overrides = o->sets;
    cfg->n_overrides = o->n_sets;
    cfg->no_cache = o->m.no_cache;
    cfg->cache_dir = o->m.cache_dir;
    cfg->fetch_allow = o->allow_fetch;
    cfg->n_fetch_allow = o->n_allow_fetch;
    cfg->plugins = o->plugins;
    cfg->n_plugins = o->n_plugins;
    /* Warnings are printed below as the compiler-style lines they are, not logged. */
    cfg->quiet_warnings = 1;
    cfg->errors_to_caller = 1;
}

static clipmod_engine *build_engine(const scan_opts *o, const clipmod_model *model)
{
    clipmod_engine *engine = NULL;
    char *problems = NULL, errbuf[CLIPMOD_ERROR_SIZE] = "";
    cm_engine_cfg cfg;

    scan_engine_cfg(o, &cfg);
    clipmod_error err = cm_engine_from_config(&cfg, model, &engine, &problems, errbuf);
    if (err == CLIPMOD_E_POLICY) {
        /* Problems are "file:line:column: message" lines, as a compiler prints them. */
        if (problems)
            print_lines(stderr, problems);
        fprintf(stderr, "clipmod: %s: the policy has problems; nothing was scanned\n", o->policy);
    } else if (err) {
        cli_engine_error(errbuf);
    } else if (problems && !o->m.quiet) {
        print_lines(stderr, problems); /* warnings */
    }
    clipmod_free(problems);
    return engine;
}

static const char *entry_name(const entry *e)
{
    return e->path ? e->path : "stdin";
}

static void fill_input(const entries *in, const entry *e, clipmod_input *ci)
{
    memset(ci, 0, sizeof *ci);
    ci->size = sizeof *ci;
    if (e->path) {
        ci->path = e->path;
        ci->name = e->path;
    } else {
        ci->data = in->stdin_data;
        ci->len = in->stdin_len;
        ci->name = "stdin";
    }
    ci->context = in->context;
    ci->context_len = in->context_len;
}

/* One call to the library for n inputs: files and memory, or URLs (--url). */
static clipmod_error scan_some(const clipmod_engine *engine, const entries *in,
                               const clipmod_input *inputs, size_t n, clipmod_result **results)
{
    if (in->urls) {
        const char *urls[MAX_BATCH], *texts[MAX_BATCH];
        for (size_t i = 0; i < n; i++) {
            urls[i] = inputs[i].name;
            texts[i] = in->context;
        }
        return clipmod_scan_urls_context(engine, urls, texts, n, 0, results);
    }
    return clipmod_scan_batch(engine, inputs, n, results);
}

/*
 * Scan entries [start, start + n) into results. A failed batch call says nothing
 * about which input caused it, so the inputs are retried one at a time and only
 * the ones that still fail are reported (and left NULL).
 */
static void scan_batch(const clipmod_engine *engine, const entries *in, size_t start, size_t n,
                       clipmod_input *inputs, clipmod_result **results, tally *t, progress *pg)
{
    for (size_t i = 0; i < n; i++)
        fill_input(in, &in->v[start + i], &inputs[i]);
    memset(results, 0, n * sizeof *results);
    if (scan_some(engine, in, inputs, n, results) == CLIPMOD_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        clipmod_error err = scan_some(engine, in, &inputs[i], 1, &results[i]);
        if (err) {
            results[i] = NULL;
            progress_hide(pg);
            fputs("clipmod: ", stderr);
            scan_put_name(stderr, inputs[i].name);
            fprintf(stderr, ": %s\n", clipmod_strerror(err));
            t->errors++;
        }
    }
}

/*
 * What happens to one result besides its line: the --log copy, and a flagged
 * file's --move/--copy. A failed move counts as an error (the file stays put).
 */
static void handle_result(const scan_opts *o, const clipmod_result *r, const entry *e, FILE *log,
                          tally *t)
{
    if (log && print_result_to(log, o, r) != 0)
        t->errors++;
    if (clipmod_result_state(r) != CLIPMOD_STATE_FLAGGED || !e->path || o->url)
        return;
    if (o->move_dir || o->copy_dir) {
        const char *dir = o->move_dir ? o->move_dir : o->copy_dir;
        if (scan_quarantine(e->path, dir, o->move_dir != NULL, o->m.quiet || o->json) != 0)
            t->errors++;
    }
}

/* --file-list: its paths are inputs like the arguments, after them. */
static int collect_file_list(const scan_opts *o, entries *in, walk_state *w)
{
    size_t n;
    char **list = scan_file_list(o->file_list, &n);
    int rc;

    if (!list) {
        w->errors++;
        return 0;
    }
    rc = collect(o, list, (int)n, in, w);
    scan_file_list_free(list);
    return rc;
}

/* clamscan's --log: the report appended, with a line saying when it began. */
static FILE *open_log(const scan_opts *o)
{
    FILE *log = fopen(o->log_file, "a");
    if (!log) {
        fprintf(stderr, "clipmod: --log %s: %s\n", o->log_file, strerror(errno));
        return NULL;
    }
    fputs("-------------------------------------------------------------------------------\n\n",
          log);
    return log;
}

static int exit_status(const scan_opts *o, const tally *t)
{
    if (t->flagged)
        return EXIT_FOUND;
    if (t->errors || (t->unscanned && !o->unscanned_ok))
        return EXIT_ERROR;
    return EXIT_CLEAN;
}

/* The model the options name, with a hint when it was the default that failed. */
static clipmod_model *load_model(const scan_opts *o)
{
    cli_model_opts m = o->m;
    clipmod_model *model;

    m.quiet |= o->hook; /* --hook prints the action alone */
    model = cli_load_model(&m);
    if (!model && o->model_defaulted)
        fprintf(stderr, "clipmod: (the default model; choose one with --model DIR or "
                        "CLIPMOD_MODEL)\n");
    return model;
}

/*
 * Count, print and act on a batch's n results (taking and freeing each); e[i] is the
 * entry of results[i]. With --hook, *hook_rc becomes the verdict's exit code.
 */
static void report_batch(const scan_opts *o, const entry *e, size_t n, clipmod_result **results,
                         FILE *log, tally *t, progress *pg, int *hook_rc)
{
    for (size_t i = 0; i < n; i++) {
        clipmod_result *r = results[i];
        if (!r)
            continue;
        switch (clipmod_result_state(r)) {
        case CLIPMOD_STATE_CLEAN:
            t->clean++;
            break;
        case CLIPMOD_STATE_FLAGGED:
            t->flagged++;
            break;
        default:
            t->unscanned++;
        }
        int failed = o->hook ? print_hook(o, r) : print_result(o, r);
        if (!o->hook)
            handle_result(o, r, &e[i], log, t);
        if (o->hook && !failed)
            *hook_rc = hook_code(r);
        clipmod_result_free(r);
        results[i] = NULL;
        if (failed) {
            progress_hide(pg);
            fprintf(stderr, "clipmod: out of memory\n");
            t->errors++;
        }
    }
}

static void free_options(scan_opts *o)
{
    free(o->allow_fetch);
    free_plugins(o);
    scan_select_free(&o->sel);
}

/* The inputs the arguments, -f and the context options name; -1 after saying why. */
static int gather_inputs(const scan_opts *o, char **args, int n_args, entries *in, walk_state *w)
{
    if (cli_read_context(o->context, o->context_file, setting_value(o, CLIPMOD_MAX_CONTEXT_BYTES),
                         &in->context, &in->context_len))
        return -1;
    int failed = collect(o, args, n_args, in, w);
    if (!failed && o->file_list)
        failed = collect_file_list(o, in, w);
    if (failed) {
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    /* `--url -` may hold any number of URLs; a hook answers for exactly one. */
    if (o->hook && o->url && in->n != 1) {
        fprintf(stderr, "clipmod: --hook scans exactly one input, not %zu\n", in->n);
        return -1;
    }
    /* "0 files, all clean" for a folder of folders would be a silent mistake. */
    if (w->skipped_dirs && !o->m.quiet)
        fprintf(stderr, "clipmod: note: %zu subdirector%s not scanned (use -r to scan them)\n",
                w->skipped_dirs, w->skipped_dirs == 1 ? "y was" : "ies were");
    return 0;
}

/* Scan and report every input, --batch at a time, under the progress bar; -1 when
 * out of memory. With --hook, *hook_rc becomes the verdict's exit code. */
static int scan_all(const scan_opts *o, const clipmod_engine *engine, entries *in, FILE *log,
                    tally *t, progress *pg, int *hook_rc)
{
    clipmod_input *inputs = calloc(o->batch, sizeof *inputs);
    clipmod_result **results = inputs ? calloc(o->batch, sizeof *results) : NULL;

    if (!inputs || !results) {
        free(inputs);
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    progress_start(pg, in->n, !o->m.quiet && !o->hook);
    for (size_t start = 0; start < in->n; start += o->batch) {
        size_t n = in->n - start < o->batch ? in->n - start : o->batch;
        progress_update(pg, start, entry_name(&in->v[start]));
        scan_batch(engine, in, start, n, inputs, results, t, pg);
        progress_clear(pg);
        report_batch(o, in->v + start, n, results, log, t, pg, hook_rc);
        /* Consumers of JSON Lines in a pipe see each batch as soon as it is done. */
        fflush(stdout);
        progress_update(pg, start + n, start + n < in->n ? entry_name(&in->v[start + n]) : NULL);
    }
    progress_end(pg);
    free(inputs);
    free(results);
    return 0;
}

/* The legend, the summary (stdout or stderr, and the log) and the exit status. */
static int finish_scan(const scan_opts *o, const clipmod_engine *engine, const clipmod_model *model,
                       const walk_state *w, const tally *t, FILE *log, double t0, double t_scan,
                       int hook_rc)
{
    const double t_end = cm_now();
    int rc;

    if (o->table && !o->m.quiet)
        scan_table_legend(stdout, o->table);
    if (!o->hook && !o->m.quiet && !o->no_summary)
        print_summary(o->json ? stderr : stdout, o, engine, model, w, t, t_end - t0,
                      t_end - t_scan);
    if (log)
        print_summary(log, o, engine, model, w, t, t_end - t0, t_end - t_scan);
    if (!o->hook)
        rc = exit_status(o, t);
    else
        rc = t->errors ? EXIT_ERROR : hook_rc;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "clipmod: error writing the results: %s\n", strerror(errno));
        rc = EXIT_ERROR;
    }
    return rc;
}

int cmd_scan(int argc, char **argv)
{
    scan_opts o;
    entries in = {0};
    walk_state w = {0};
    tally t = {0};
    progress pg;
    clipmod_model *model = NULL;
    clipmod_engine *engine = NULL;
    FILE *log = NULL;
    const double t0 = cm_now();
    int rc = parse_options(argc, argv, &o);

    if (rc != CLI_GO_ON) {
        free_options(&o);
        return rc;
    }
    rc = EXIT_ERROR;
    memset(&pg, 0, sizeof pg);

    /* Load first: a broken model or policy should fail before any stdin is consumed. */
    model = load_model(&o);
    if (!model)
        goto out;
    if (!o.policy)
        o.policy = cli_default_policy(model);
    engine = build_engine(&o, model);
    if (!engine)
        goto out;
    if (o.log_file) {
        log = open_log(&o);
        if (!log)
            goto out;
    }
    int failed = gather_inputs(&o, argv + optind, argc - optind, &in, &w);
    t.errors = w.errors;
    if (failed)
        goto out;
    const double t_scan = cm_now();
    int hook_rc = EXIT_ERROR;
    if (scan_all(&o, engine, &in, log, &t, &pg, &hook_rc))
        goto out;
    rc = finish_scan(&o, engine, model, &w, &t, log, t0, t_scan, hook_rc);
out:
    progress_end(&pg);
    entries_free(&in);
    free(w.seen);
    clipmod_engine_free(engine);
    clipmod_model_free(model);
    free_options(&o);
    if (log && fclose(log) != 0) {
        fprintf(stderr, "clipmod: --log %s: %s\n", o.log_file, strerror(errno));
        rc = EXIT_ERROR;
    }
    return rc;
}
