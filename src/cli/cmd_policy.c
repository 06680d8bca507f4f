/*
 * cmd_policy.c - `clipmod policy check`: validate policy files as a compiler would.
 *
 * Owns the command a moderator runs after editing a policy: every problem of every
 * file, each as "file:line:column: message", then a readable summary of each valid
 * policy (or the library's JSON summary with --json). Validation is the library's:
 * a policy is checked by compiling an engine with it, which is the only way to be
 * sure the scanner will accept it, and with a model that also checks that every
 * prompt fits the text tower after templating.
 *
 * Checking needs the model's tokenizer for the token lengths; the checks that do
 * not are meant to run without one once the library offers them (see
 * check_without_model), so a policy can be linted where no model is installed.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_json.h"
#include "cli.h"
#include "engine_cfg.h"
#include "evaluate.h"

static const char usage_policy[] =
    "Usage: clipmod policy check [OPTION]... FILE...\n"
    "       clipmod policy evaluate --model DIR --policy FILE [OPTION]... LABELLED\n"
    "Commands for moderation policies (see clipmod-policy(5)).\n"
    "\n"
    "  check   report every problem of each policy as file:line:column: message, and\n"
    "          summarise the valid ones\n"
    "  evaluate measure a policy on a labelled set of images and suggest thresholds\n"
    "\n"
    "`clipmod policy check --help` and `clipmod policy evaluate --help` describe their options.\n";

static const char usage_check[] =
    "Usage: clipmod policy check [OPTION]... FILE...\n"
    "Validate policy files: unknown keys, wrong types, thresholds out of range, empty or\n"
    "duplicate prompts and ids, unknown actions, and (with a model) prompts longer than the\n"
    "text tower's 77 tokens. Problems are printed as file:line:column: message; a valid\n"
    "policy is summarised (categories, thresholds, actions, prompt counts).\n"
    "\n"
    "  -m, --model DIR     model to check prompt lengths with (default: $CLIPMOD_MODEL,\n"
    "                      else the installed default model if there is one)\n"
    "      --merges FILE   tokenizer merges, if not in the model directory\n"
    "      --cache-dir DIR prompt and weights caches (default ~/.cache/clipmod)\n"
    "      --no-cache      do not read or write either\n"
    "      --json          one JSON object per file (JSON Lines) instead of text\n"
    "  -q, --quiet         print problems only: no summaries, no warnings\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 every policy is valid, 1 a policy has problems (or cannot be read),\n"
    "2 a usage error or no model to check with.\n";

typedef struct check_opts {
    cli_model_opts m; /* --model, --merges, --cache-dir, --no-cache, --quiet */
    int model_explicit, json;
} check_opts;

/* The outcome for one file. */
typedef struct check_report {
    int checked;        /* 0: the file could not be checked at all (no model, no memory) */
    int valid;          /* checked and without problems; warnings allowed */
    int tokens_checked; /* prompt lengths were checked against a tokenizer */
    char *problems;     /* library lines: problems and warnings (clipmod_free) */
    char *summary;      /* the library's JSON summary of a valid policy (clipmod_free) */
    char own[CLIPMOD_ERROR_SIZE]; /* our line when the library gave none */
} check_report;

/* Every line to report for the file: the library's, else ours. */
static const char *lines_of(const check_report *r)
{
    return r->problems ? r->problems : r->own;
}

/* Compile an engine with the policy: the same validation (and the same builder,
 * src/common's cm_engine_from_config) `clipmod scan` gets. */
static void check_with_model(const clipmod_model *model, const check_opts *o, const char *path,
                             check_report *r)
{
    clipmod_engine *engine = NULL;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    cm_engine_cfg cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.policy = path;
    cfg.no_cache = o->m.no_cache;
    cfg.cache_dir = o->m.cache_dir;
    cfg.quiet_warnings = 1; /* warnings are this command's output, not log lines */
    cfg.errors_to_caller = 1;
    r->tokens_checked = 1;
    clipmod_error err = cm_engine_from_config(&cfg, model, &engine, &r->problems, errbuf);
    /* The builder's refusals about the file name it; others (--cache-dir) do not. */
    const int about_file = !err || r->problems || !strncmp(errbuf, path, strlen(path));
    if (err == CLIPMOD_E_NOMEM || !about_file) {
        cli_engine_error(errbuf); /* nothing was learnt about the file */
    } else {
        /* Anything else about this file (unreadable, invalid) is the file's problem. */
        r->checked = 1;
        r->valid = err == CLIPMOD_OK;
        if (err && !r->problems)
            snprintf(r->own, sizeof r->own, "%s\n", errbuf);
        if (r->valid) {
            r->summary = clipmod_engine_policy_json(engine);
            if (!r->summary)
                fprintf(stderr, "clipmod: %s: out of memory\n", path);
        }
    }
    clipmod_engine_free(engine);
}

/* Without a model: everything but prompt lengths, which need the model's tokenizer. */
static void check_without_model(const char *path, check_report *r)
{
    clipmod_error err = clipmod_policy_check(path, &r->problems, &r->summary);
    if (err == CLIPMOD_E_NOMEM) {
        fprintf(stderr, "clipmod: %s: %s\n", path, clipmod_strerror(err));
        return;
    }
    r->checked = 1;
    r->valid = err == CLIPMOD_OK;
    if (err && !r->problems)
        snprintf(r->own, sizeof r->own, "%s: %s\n", path, clipmod_strerror(err));
}

/*
 * The library marks warnings in its lines ("file[:line:column]: warning: ..."); the rest
 * are problems. Only the message's start counts: a quoted prompt may say "warning: ".
 */
static int is_warning(const char *line, size_t n)
{
    const char *sep = memmem(line, n, ": ", 2);
    size_t rest = sep ? n - (size_t)(sep + 2 - line) : 0;
    return sep && rest >= 9 && !memcmp(sep + 2, "warning: ", 9);
}

/* Each line of `text` that is (`warnings` set) or is not a warning, to `f` or into `array`. */
static void each_line(const char *text, int warnings, FILE *f, json_t *array)
{
    while (text && *text) {
        const char *end = strchr(text, '\n');
        size_t n = end ? (size_t)(end - text) : strlen(text);
        if (n && is_warning(text, n) == warnings) {
            if (f)
                fprintf(f, "%.*s\n", (int)n, text);
            if (array)
                json_array_append_new(array, check_problem_json(text, n));
        }
        text += n + (end ? 1 : 0);
    }
}

static size_t count_lines(const char *text, int warnings)
{
    json_t *a = json_array();
    each_line(text, warnings, NULL, a);
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static long long integer(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

/* The library's JSON summary as a moderator reads it. */
static void print_summary(const char *path, const char *summary_json)
{
    json_t *p = json_loads(summary_json, 0, NULL);
    json_t *v;
    size_t i;
    const char *key;

    if (!p) {
        printf("%s: OK\n", path);
        return;
    }
    printf("%s: OK\n", path);
    printf("  policy:     %s (version %lld)\n", *str(p, "name") ? str(p, "name") : path,
           integer(p, "version"));
    if (*str(p, "description"))
        printf("  about:      %s\n", str(p, "description"));
    if (*str(p, "written_for"))
        printf("  written for %s\n", str(p, "written_for"));
    if (*str(p, "model"))
        printf("  checked with %s\n", str(p, "model"));
    json_t *templates = json_object_get(p, "templates");
    printf("  templates:  %zu", json_array_size(templates));
    json_array_foreach(templates, i, v) printf("%s\"%s\"", i ? ", " : " (", json_string_value(v));
    printf("%s\n", json_array_size(templates) ? ")" : "");
    printf("  prompts:    %lld in all, %lld of them neutral\n", integer(p, "prompts"),
           integer(p, "neutral"));
    json_t *cats = json_object_get(p, "categories");
    printf("  categories: %zu\n", json_array_size(cats));
    printf("    %-20s %9s  %-10s  %7s  %8s  %s\n", "id", "threshold", "action", "prompts",
           "contrast", "score");
    json_array_foreach(cats, i, v)
    {
        /* A learned head names its file: what the score comes from. */
        const char *head = str(v, "head");
        printf("    %-20s %9g  %-10s  %7lld  %8lld  %s%s%s\n", str(v, "id"),
               json_number_value(json_object_get(v, "threshold")), str(v, "action"),
               integer(v, "prompts"), integer(v, "contrast"), str(v, "score"),
               *head ? ", head " : "", head);
        json_t *ctx = json_object_get(v, "context");
        if (ctx)
            printf("      + the text that comes with the image: %s, weight %g, threshold %g, "
                   "%lld prompts\n",
                   str(ctx, "mode"), json_number_value(json_object_get(ctx, "weight")),
                   json_number_value(json_object_get(ctx, "threshold")), integer(ctx, "prompts"));
    }
    json_t *actions = json_object_get(p, "actions");
    printf("  actions:\n");
    json_object_foreach(actions, key, v)
    {
        printf("    %-10s HTTP %lld, SMTP \"%s\": %s\n", key, integer(v, "http"), str(v, "smtp"),
               str(v, "message"));
    }
    json_t *anim = json_object_get(p, "animation");
    if (anim) {
        if (!strcmp(str(anim, "combine"), "max"))
            printf("  animations: %lld frames sampled, the highest score counts\n",
                   integer(anim, "frames"));
        else
            printf("  animations: %lld frames sampled, flagged when %lld of them are\n",
                   integer(anim, "frames"), integer(anim, "k"));
    }
    json_decref(p);
}

static int print_json(const char *path, const check_report *r)
{
    json_t *problems = json_array(), *warnings = json_array();
    json_t *summary = r->summary ? json_loads(r->summary, 0, NULL) : NULL;
    each_line(lines_of(r), 0, NULL, problems);
    each_line(lines_of(r), 1, NULL, warnings);
    json_t *root = json_pack("{s:s, s:b, s:b, s:o, s:o, s:o}", "file", path, "valid", r->valid,
                             "token_lengths_checked", r->tokens_checked, "problems", problems,
                             "warnings", warnings, "policy", summary ? summary : json_null());
    if (!root)
        return -1;
    int rc = json_dumpf(root, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) == 0 &&
                     fputc('\n', stdout) != EOF
                 ? 0
                 : -1;
    json_decref(root);
    return rc;
}

static void print_text(const char *path, const check_opts *o, const check_report *r)
{
    /* Problems first, in the library's order (by file and position). */
    each_line(lines_of(r), 0, stdout, NULL);
    if (!o->m.quiet)
        each_line(lines_of(r), 1, stdout, NULL);
    if (!r->valid) {
        size_t n = count_lines(lines_of(r), 0);
        printf("%s: %zu problem%s\n", path, n, n == 1 ? "" : "s");
        return;
    }
    if (!r->tokens_checked)
        printf("%s: note: prompt token lengths were not checked (no model)\n", path);
    if (!o->m.quiet && r->summary)
        print_summary(path, r->summary);
}

static int parse_check(int argc, char **argv, check_opts *o)
{
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"merges", required_argument, NULL, CLI_OPT_MERGES},
                                         {"json", no_argument, NULL, 'j'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"cache-dir", required_argument, NULL, CLI_OPT_CACHE_DIR},
                                         {"no-cache", no_argument, NULL, CLI_OPT_NO_CACHE},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;

    memset(o, 0, sizeof *o);
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:qh", opts, NULL)) != -1) {
        int rc = cli_parse_model_option(&o->m, c, optarg);
        if (rc != CLI_NOT_MINE) {
            if (rc)
                return EXIT_ERROR;
            continue;
        }
        switch (c) {
        case 'j':
            o->json = 1;
            break;
        case 'q':
            o->m.quiet = 1;
            break;
        case 'h':
            fputs(usage_check, stdout);
            return EXIT_CLEAN;
        default:
            fputs(usage_check, stderr);
            return EXIT_ERROR;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "clipmod: policy check: no policy file given\n%s", usage_check);
        return EXIT_ERROR;
    }
    /* A model the user named must load; the installed default is used if it is there. */
    o->model_explicit = o->m.model_dir || getenv("CLIPMOD_MODEL");
    if (!o->m.model_dir)
        o->m.model_dir = cli_default_model();
    return CLI_GO_ON;
}

static int policy_check(int argc, char **argv)
{
    check_opts o;
    clipmod_model *model = NULL;
    int rc = parse_check(argc, argv, &o), any_problems = 0, any_unchecked = 0;

    if (rc != CLI_GO_ON)
        return rc;
    /* --quiet: problems only, not the demo-model warning */
    if (o.model_explicit) {
        model = cli_load_model(&o.m);
        if (!model)
            return EXIT_ERROR;
    } else if (clipmod_model_load(o.m.model_dir, o.m.merges, &model, NULL) != CLIPMOD_OK) {
        model = NULL; /* no default model installed: check what can be checked without */
    }

    for (int i = optind; i < argc; i++) {
        check_report r = {0};
        if (model)
            check_with_model(model, &o, argv[i], &r);
        else
            check_without_model(argv[i], &r);
        if (!r.checked)
            any_unchecked = 1;
        else if (!r.valid)
            any_problems = 1;
        if (r.checked && (o.json ? print_json(argv[i], &r) : (print_text(argv[i], &o, &r), 0)))
            any_unchecked = 1;
        clipmod_free(r.problems);
        clipmod_free(r.summary);
        fflush(stdout);
    }
    clipmod_model_free(model);
    if (ferror(stdout))
        return EXIT_ERROR;
    return any_problems ? EXIT_FOUND : any_unchecked ? EXIT_ERROR : EXIT_CLEAN;
}

int cmd_policy(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_policy, stderr);
        return EXIT_ERROR;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage_policy, stdout);
        return EXIT_CLEAN;
    }
    if (!strcmp(argv[1], "check"))
        return policy_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "evaluate"))
        return cmd_policy_evaluate(argc - 1, argv + 1);
    fprintf(stderr, "clipmod: policy: unknown command '%s'\n%s", argv[1], usage_policy);
    return EXIT_ERROR;
}
