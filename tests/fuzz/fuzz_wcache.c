/*
 * fuzz_wcache.c - a weights cache file (src/lib/wcache.c), and through it the image
 * tower mapped from the file (weights.c's attach walk, borrowed int8 matrices, a
 * forward pass over whatever numbers the file holds).
 *
 * At start the target loads tests/fuzz/image-model with a weights cache in its private
 * directory, which writes a valid cache file (fp32, and int8 where the CPU runs it),
 * and keeps its bytes. Each input edits a fresh copy of such a file, then loads the
 * model through the cache:
 *   byte 0    bit 0: int8's file instead of fp32's (when the CPU runs int8);
 *             bit 1: reseal after the edits (cm_wcache_reseal: the digests are made to
 *             match the edited bytes, so the edits reach the checks behind them);
 *             bit 2: then set the file's size to the next 4 bytes (little-endian,
 *             modulo 1 MiB)
 *   records   (after those 4 bytes, if any) 4-byte little-endian offset (modulo the file's size),
 * 1-byte count n, n bytes written there The load must succeed whatever the file holds (one that
 * does not fit is refused and the model read from the checkpoint). When it mapped the file, an
 * image is embedded: the numbers may be anything, the call must not crash.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipmod/clipmod.h"
/* By path: "config.h" alone would find autoconf's in the build directory. */
#include "../../src/lib/config.h"
#include "fuzz.h"
#include "safetensors.h"
#include "wcache.h"

static char model_dir[PATH_MAX], weights_path[PATH_MAX + 32], cache_dir[PATH_MAX];
static unsigned char *valid[2]; /* a good cache file per precision (fp32, int8) */
static size_t valid_size[2];
static char valid_name[2][PATH_MAX + 256];
static int have_int8;
static clipmod_image *img;
static cm_config cfg;
static cm_safetensors *st;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_wcache: %s\n", what);
        abort();
    }
}

/* Load through the cache: the model, and the note saying what the cache did. */
static clipmod_model *load(clipmod_precision p)
{
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_model *m = NULL;
    clipmod_error rc = clipmod_model_load_cached(model_dir, NULL, p, cache_dir, &m, err);
    if (rc == CLIPMOD_E_NOMEM)
        return NULL;
    if (rc)
        fprintf(stderr, "fuzz_wcache: %s\n", err);
    check(rc == CLIPMOD_OK && m, "a load through the cache succeeds whatever the file holds");
    return m;
}

/* The cache file precision i's first load wrote (the one not yet known): path, bytes. */
static void keep_valid(int i)
{
    DIR *d = opendir(cache_dir);
    struct dirent *e;
    check(d != NULL, "listing the cache");
    while ((e = readdir(d)) != NULL) {
        snprintf(valid_name[i], sizeof valid_name[i], "%s/%s", cache_dir, e->d_name);
        if (!strncmp(e->d_name, "weights-", 8) && (i == 0 || strcmp(valid_name[0], valid_name[i])))
            break;
    }
    closedir(d);
    check(e != NULL, "a cache file was written");
    FILE *f = fopen(valid_name[i], "rb");
    check(f != NULL, "opening the cache file");
    fseek(f, 0, SEEK_END);
    valid_size[i] = (size_t)ftell(f);
    rewind(f);
    valid[i] = malloc(valid_size[i]);
    check(valid[i] && fread(valid[i], 1, valid_size[i], f) == valid_size[i], "reading it");
    fclose(f);
}

static void teardown(void)
{
    clipmod_image_free(img);
    cm_safetensors_close(st);
    free(valid[0]);
    free(valid[1]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CLIPMOD_ERROR_SIZE], photo[PATH_MAX];
    (void)argc;
    check(clipmod_init(argv && *argv ? (*argv)[0] : "fuzz_wcache") == CLIPMOD_OK, "init");
    snprintf(model_dir, sizeof model_dir, "%s/tests/fuzz/image-model", fuzz_srcdir());
    snprintf(weights_path, sizeof weights_path, "%s/model.safetensors", model_dir);
    fuzz_path(cache_dir, sizeof cache_dir, "cache");
    check(cm_config_load(model_dir, &cfg, err) == CLIPMOD_OK, "the model's config");
    check(cm_safetensors_open(weights_path, &st, err) == CLIPMOD_OK, "the model's weights");
    have_int8 = clipmod_precision_check(CLIPMOD_PRECISION_INT8, NULL) == CLIPMOD_OK;
    for (int i = 0; i < 1 + have_int8; i++) {
        clipmod_model *m = load(i ? CLIPMOD_PRECISION_INT8 : CLIPMOD_PRECISION_FP32);
        check(m && strstr(clipmod_model_cache_note(m), "kept in"), "the first load writes");
        keep_valid(i);
        if (!img) {
            snprintf(photo, sizeof photo, "%s/tests/data/demo-scenes/bomb.png", fuzz_srcdir());
            check(clipmod_image_load_file(m, photo, NULL, &img, err) == CLIPMOD_OK, "an image");
        }
        clipmod_model_free(m);
    }
    atexit(teardown);
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The valid file of precision i with the input's edits applied, written in place. */
static void write_edited(int i, const uint8_t *data, size_t size, size_t first)
{
    unsigned char *b = malloc(valid_size[i]);
    check(b != NULL, "memory");
    memcpy(b, valid[i], valid_size[i]);
    for (size_t at = first; at + 5 <= size;) {
        size_t off = le32(data + at) % valid_size[i], n = data[at + 4];
        at += 5;
        for (size_t k = 0; k < n && at < size && off + k < valid_size[i]; k++)
            b[off + k] = data[at++];
    }
    /* Written over the name, not renamed: the library's own file is replaced. */
    unlink(valid_name[i]);
    FILE *f = fopen(valid_name[i], "wb");
    check(f && fwrite(b, 1, valid_size[i], f) == valid_size[i] && fclose(f) == 0, "writing");
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int i = (data[0] & 1) && have_int8;
    const clipmod_precision p = i ? CLIPMOD_PRECISION_INT8 : CLIPMOD_PRECISION_FP32;
    const int resize = (data[0] & 4) && size >= 5;
    write_edited(i, data, size, resize ? 5 : 1);
    struct stat sb;
    check(stat(weights_path, &sb) == 0, "stat of the weights");
    if (data[0] & 2) {
        const cm_wcache_id id = {.path = weights_path, .file = &sb, .precision = p};
        (void)cm_wcache_reseal(cache_dir, &id, st, &cfg);
    }
    if (resize)
        check(truncate(valid_name[i], (off_t)(le32(data + 1) % (1u << 20))) == 0, "truncate");
    clipmod_model *m = load(p);
    if (!m)
        return 0;
    if (getenv("FUZZ_VERBOSE")) /* what the cache did (for writing seeds) */
        fprintf(stderr, "%s\n", clipmod_model_cache_note(m));
    if (strstr(clipmod_model_cache_note(m), "mapped from")) {
        float emb[64];
        const clipmod_image *imgs[1] = {img};
        char err[CLIPMOD_ERROR_SIZE];
        clipmod_error rc = clipmod_embed_images(m, imgs, 1, emb, err);
        check(rc == CLIPMOD_OK || rc == CLIPMOD_E_NOMEM, "an embedding from a mapped file");
    }
    clipmod_model_free(m);
    return 0;
}
