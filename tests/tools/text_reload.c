/*
 * text_reload.c - the text tower leaves memory after a compile and comes back intact.
 *
 * Usage: text_reload MODEL_DIR POLICY
 * Embeds a few texts, compiles an engine (which frees the text tower: a scanner needs
 * only the prompts' embeddings), embeds them again from two threads at once (the
 * tower is reloaded once, under the model's lock) and requires every embedding to be
 * bit-identical to the first. Then it changes the weights file's modification time
 * and requires the next embedding to fail with CLIPMOD_E_MODEL_FORMAT: a text tower
 * from another file must never be paired with the loaded image tower.
 * Exit 0 when all holds, 1 on a difference, 2 on an error.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clipmod/clipmod.h"

#define N_TEXTS 3

static const char *const texts[N_TEXTS] = {"a photo of a cat.", "a red bicycle",
                                           "a close-up photo of a bowl of fruit."};

typedef struct job {
    const clipmod_model *model;
    float *out;
    clipmod_error rc;
} job;

static void *embed(void *arg)
{
    job *jb = arg;
    jb->rc = clipmod_embed_texts(jb->model, texts, N_TEXTS, jb->out, NULL, NULL);
    return NULL;
}

static int compile_once(const clipmod_model *model, const char *policy)
{
    clipmod_engine *engine = NULL;
    int bad = clipmod_engine_new(model, &engine) || clipmod_engine_set_cache_dir(engine, NULL) ||
              clipmod_engine_compile(engine, policy, NULL);
    clipmod_engine_free(engine);
    return bad;
}

/* Move the file's modification time one second on: the same bytes, another file. */
static int touch(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        return -1;
    struct timespec t[2] = {st.st_atim, st.st_mtim};
    t[1].tv_sec += 1;
    return utimensat(0, path, t, 0);
}

int main(int argc, char **argv)
{
    char err[CLIPMOD_ERROR_SIZE], path[4096];
    clipmod_model *model = NULL;
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR POLICY\n", argv[0]);
        return 2;
    }
    if (clipmod_init(argv[0]) || clipmod_model_load(argv[1], NULL, &model, err)) {
        fprintf(stderr, "text_reload: set-up failed: %s\n", model ? "init" : err);
        return 2;
    }
    const size_t dim = clipmod_model_embed_dim(model), size = N_TEXTS * dim * sizeof(float);
    float *first = malloc(size), *again[2] = {malloc(size), malloc(size)};
    int rc = 2;
    if (!first || !again[0] || !again[1] ||
        clipmod_embed_texts(model, texts, N_TEXTS, first, NULL, err) ||
        compile_once(model, argv[2])) {
        fprintf(stderr, "text_reload: embedding or compiling failed\n");
        goto out;
    }
    job jobs[2] = {{model, again[0], CLIPMOD_OK}, {model, again[1], CLIPMOD_OK}};
    pthread_t tid[2];
    for (int t = 0; t < 2; t++)
        pthread_create(&tid[t], NULL, embed, &jobs[t]);
    for (int t = 0; t < 2; t++)
        pthread_join(tid[t], NULL);
    rc = 1;
    if (jobs[0].rc || jobs[1].rc || memcmp(first, again[0], size) ||
        memcmp(first, again[1], size)) {
        fprintf(stderr, "text_reload: embeddings after the reload differ (or failed: %d %d)\n",
                jobs[0].rc, jobs[1].rc);
        goto out;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    if (compile_once(model, argv[2]) || touch(path)) {
        fprintf(stderr, "text_reload: second compile or touching %s failed\n", path);
        rc = 2;
        goto out;
    }
    clipmod_error e = clipmod_embed_texts(model, texts, N_TEXTS, again[0], NULL, err);
    if (e != CLIPMOD_E_MODEL_FORMAT || !strstr(err, "changed since the model was loaded")) {
        fprintf(stderr, "text_reload: a changed weights file gave %d (%s)\n", e, err);
        goto out;
    }
    printf("text tower: freed by compile, reloaded bit-identical, changed file refused\n");
    rc = 0;
out:
    free(first);
    free(again[0]);
    free(again[1]);
    clipmod_model_free(model);
    return rc;
}
