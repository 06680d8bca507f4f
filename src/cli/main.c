/*
 * main.c - the clipmod command: global options and the table of subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"embed", cmd_embed, "print CLIP embeddings of images and texts as JSON"},
    {"similarity", cmd_similarity, "cosine and zero-shot softmax of images against texts"},
    {"scan", cmd_scan, "moderate images with a policy: clean, flagged or unscanned"},
    {"policy", cmd_policy, "check policy files: every problem with file:line:column"},
    {"head", cmd_head, "train a category's learned head from labelled images"},
    {"model", cmd_model, "list, fetch, verify and remove real CLIP models"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: clipmod COMMAND [OPTION]...\n"
               "Image content moderation with CLIP models.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n`clipmod COMMAND --help` describes a command; clipmod(1) has the details.\n"
            "Options: -h, --help; -V, --version.\n"
            "\nFiles:\n"
            "  %s/default\n"
            "      the default model of clipmod scan and clipmodd\n"
            "  %s\n"
            "      the system models directory (clipmod model)\n"
            "  %s\n"
            "      the configuration directory (clipmodd.yaml, clipmod-milter.yaml)\n",
            CLI_MODELS_DIR, CLI_MODELS_DIR, CLI_CONFDIR);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_ERROR;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_CLEAN;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("clipmod %s\n", clipmod_version());
        return EXIT_CLEAN;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name))
            continue;
        if (clipmod_init(argv[0])) {
            fprintf(stderr, "clipmod: could not initialise libvips\n");
            return EXIT_ERROR;
        }
        cli_log_setup(0);
        int rc = commands[i].run(argc - 1, argv + 1);
        clipmod_shutdown();
        return rc;
    }
    fprintf(stderr, "clipmod: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_ERROR;
}
