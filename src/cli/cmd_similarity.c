/*
 * cmd_similarity.c - `clipmod similarity`: CLIP's zero-shot demo.
 *
 * For each image: the cosine with every text, and the softmax over texts of the
 * cosines times the model's logit scale, which is how CLIP turns similarities into
 * "which caption fits" probabilities.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "Usage: clipmod similarity --model DIR --image FILE... --text STR...\n"
    "Print the cosine similarity of every image with every text, and for each image the\n"
    "softmax over the texts (CLIP's zero-shot classification).\n"
    "\n"
    "  -m, --model DIR     model directory (config.json, model.safetensors, merges.txt)\n"
    "      --merges FILE   tokenizer merges (merges.txt or bpe_simple_vocab_16e6.txt.gz)\n"
    "  -i, --image FILE    an image (repeatable; bare arguments are images too)\n"
    "  -t, --text STR      a candidate text (repeatable)\n"
    "      --threads N     threads for matrix products\n"
    "      --precision P   fp32 (default), int8 or bf16: see clipmod(1)\n"
    "      --cache-dir DIR weights cache (default ~/.cache/clipmod)\n"
    "      --no-cache      do not read or write it\n"
    "  -h, --help          show this help\n";

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cmd_similarity(int argc, char **argv)
{
    cli_inputs in;
    clipmod_model *model = NULL;
    float *img = NULL, *txt = NULL;
    double *prob = NULL;
    int rc = cli_parse_inputs(argc, argv, usage, &in);

    if (rc != CLI_GO_ON)
        goto out;
    rc = EXIT_ERROR;
    if (!in.n_images || !in.n_texts) {
        fprintf(stderr, "clipmod: similarity needs at least one --image and one --text\n");
        goto out;
    }
    model = cli_load_inputs_model(&in);
    if (!model)
        goto out;
    img = cli_embed_images(model, &in);
    if (!img)
        goto out;
    txt = cli_embed_texts(model, &in, NULL);
    if (!txt)
        goto out;
    prob = malloc(in.n_texts * sizeof *prob);
    if (!prob)
        goto out;

    const size_t dim = clipmod_model_embed_dim(model);
    const double scale = clipmod_model_logit_scale(model);
    printf("model: %s\nlogit scale: %.2f\n", clipmod_model_describe(model), scale);
    for (size_t i = 0; i < in.n_images; i++) {
        printf("\n%s\n", base_name(in.images[i]));
        double mx = -INFINITY, sum = 0.0;
        for (size_t t = 0; t < in.n_texts; t++) {
            double cos = 0.0;
            for (size_t k = 0; k < dim; k++)
                cos += (double)img[i * dim + k] * txt[t * dim + k];
            prob[t] = cos;
            mx = fmax(mx, scale * cos);
        }
        for (size_t t = 0; t < in.n_texts; t++)
            sum += exp(scale * prob[t] - mx);
        printf("  %8s  %7s  %s\n", "cosine", "softmax", "text");
        for (size_t t = 0; t < in.n_texts; t++)
            printf("  %8.4f  %6.2f%%  %s\n", prob[t], 100.0 * exp(scale * prob[t] - mx) / sum,
                   in.texts[t]);
    }
    rc = fflush(stdout) == 0 ? EXIT_CLEAN : EXIT_ERROR;
out:
    free(img);
    free(txt);
    free(prob);
    clipmod_model_free(model);
    cli_inputs_free(&in);
    return rc;
}
