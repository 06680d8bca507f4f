/*
 * cmd_embed.c - `clipmod embed`: print embeddings of images and texts as JSON.
 *
 * The JSON is the interface the parity tests read, so it carries float32 values at
 * full precision (9 significant digits round-trip a float).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static const char usage[] =
    "Usage: clipmod embed --model DIR [--image FILE]... [--text STR]... [FILE]...\n"
    "Print L2-normalised CLIP embeddings of images and texts as one JSON object.\n"
    "\n"
    "  -m, --model DIR     model directory (config.json, model.safetensors, merges.txt)\n"
    "      --merges FILE   tokenizer merges (merges.txt or bpe_simple_vocab_16e6.txt.gz)\n"
    "  -i, --image FILE    an image to embed (repeatable; bare arguments are images too)\n"
    "  -t, --text STR      a text to embed (repeatable)\n"
    "      --threads N     threads for matrix products\n"
    "      --precision P   fp32 (default), int8 or bf16: see clipmod(1)\n"
    "      --cache-dir DIR weights cache (default ~/.cache/clipmod)\n"
    "      --no-cache      do not read or write it\n"
    "  -h, --help          show this help\n";

static json_t *vector(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

int cmd_embed(int argc, char **argv)
{
    cli_inputs in;
    clipmod_model *model = NULL;
    float *img = NULL, *txt = NULL;
    int *trunc = NULL;
    int rc = cli_parse_inputs(argc, argv, usage, &in);
    json_t *root = NULL;

    if (rc != CLI_GO_ON)
        goto out;
    rc = EXIT_ERROR;
    in.images_only = 1; /* embedding images needs no text tower */
    model = cli_load_inputs_model(&in);
    if (!model)
        goto out;
    trunc = calloc(in.n_texts + 1, sizeof *trunc);
    if (!trunc)
        goto out;
    img = cli_embed_images(model, &in);
    if (!img)
        goto out;
    txt = cli_embed_texts(model, &in, trunc);
    if (!txt)
        goto out;

    size_t dim = clipmod_model_embed_dim(model);
    json_t *images = json_array(), *texts = json_array();
    root = json_pack("{s:s, s:s, s:b, s:s, s:i, s:f, s:o, s:o}", "model", in.m.model_dir,
                     "description", clipmod_model_describe(model), "demo_model",
                     clipmod_model_is_demo(model), "weights_cache", clipmod_model_cache_note(model),
                     "dim", (json_int_t)dim, "logit_scale",
                     (double)clipmod_model_logit_scale(model), "images", images, "texts", texts);
    for (size_t i = 0; i < in.n_images; i++)
        json_array_append_new(images, json_pack("{s:s, s:o}", "path", in.images[i], "embedding",
                                                vector(img + i * dim, dim)));
    for (size_t i = 0; i < in.n_texts; i++) {
        int32_t ids[CLIPMOD_CONTEXT_LENGTH];
        size_t n = 0;
        clipmod_tokenize(model, in.texts[i], ids, &n, NULL, NULL);
        json_t *jids = json_array();
        for (size_t k = 0; k < n; k++)
            json_array_append_new(jids, json_integer(ids[k]));
        json_array_append_new(texts, json_pack("{s:s, s:o, s:b, s:o}", "text", in.texts[i], "ids",
                                               jids, "truncated", trunc[i], "embedding",
                                               vector(txt + i * dim, dim)));
    }
    if (json_dumpf(root, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(9)) == 0 &&
        fputc('\n', stdout) != EOF && fflush(stdout) == 0)
        rc = EXIT_CLEAN;
out:
    json_decref(root);
    free(img);
    free(txt);
    free(trunc);
    clipmod_model_free(model);
    cli_inputs_free(&in);
    return rc;
}
