/*
 * preprocess_dump.c - write the tensor libclipmod feeds the image tower, for tests.
 *
 * Usage: preprocess_dump MODEL_DIR OUT_DIR IMAGE...
 * Writes OUT_DIR/<basename>.f32: float32 little-endian [3, S, S], the same format as
 * tests/reference/preprocess_ref.py, so the two pipelines can be compared.
 */
#include <stdio.h>
#include <string.h>

#include "clipmod/clipmod.h"

int main(int argc, char **argv)
{
    char err[CLIPMOD_ERROR_SIZE], path[4096];
    clipmod_model *model = NULL;
    int rc = 1;

    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR OUT_DIR IMAGE...\n", argv[0]);
        return 2;
    }
    if (clipmod_init(argv[0]) || clipmod_model_load(argv[1], NULL, &model, err)) {
        fprintf(stderr, "preprocess_dump: %s\n", model ? "" : err);
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        clipmod_image *img = NULL;
        int size;
        if (clipmod_image_load_file(model, argv[i], NULL, &img, err)) {
            fprintf(stderr, "preprocess_dump: %s\n", err);
            goto out;
        }
        const float *px = clipmod_image_pixels(img, &size);
        const char *base = strrchr(argv[i], '/');
        snprintf(path, sizeof path, "%s/%s.f32", argv[2], base ? base + 1 : argv[i]);
        FILE *f = fopen(path, "wb");
        size_t n = (size_t)3 * size * size;
        int ok = f && fwrite(px, sizeof *px, n, f) == n;
        if (f && fclose(f))
            ok = 0;
        clipmod_image_free(img);
        if (!ok) {
            fprintf(stderr, "preprocess_dump: cannot write %s\n", path);
            goto out;
        }
    }
    rc = 0;
out:
    clipmod_model_free(model);
    clipmod_shutdown();
    return rc;
}
