/*
 * fuzz_safetensors.c - a model directory's files: safetensors header and tensor index
 * (src/lib/safetensors.c), config.json / open_clip_config.json /
 * preprocessor_config.json (src/lib/config.c), and both together through the
 * weight loader's shape checks (src/lib/weights.c via clipmod_model_load()).
 *
 * The library reads these from files, so the input is written into the private
 * temporary directory. Its first byte chooses what the rest is:
 *   'c'  config.json, optionally followed by a NUL byte and preprocessor_config.json
 *   'o'  the same with open_clip_config.json
 *   'm'  config.json, a NUL byte, then model.safetensors: the whole model load
 *   else model.safetensors alone (the first byte is dropped too)
 * A safetensors file that opens is walked: every tensor is looked up by name and the
 * first and last elements of every float tensor are converted, so an index entry
 * that points outside the mapping shows up under ASan. A model load must never run
 * out of memory: the weights' arena is sized by config.json, but only after every
 * tensor was found with the shape the config implies.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clipmod/clipmod.h"
/* By path: "config.h" alone would find autoconf's in the build directory. */
#include "../../src/lib/config.h"
#include "fuzz.h"
#include "safetensors.h"

static const char *const files[] = {"config.json", "open_clip_config.json",
                                    "preprocessor_config.json", "model.safetensors"};

static void write_file(const char *name, const uint8_t *data, size_t size)
{
    char path[PATH_MAX];
    fuzz_path(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f))
        abort();
}

/* FUZZ_VERBOSE=1: say why an input was refused (for writing seeds). */
static void say(const char *what, clipmod_error rc, const char *err)
{
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%s: %s\n", what, rc == CLIPMOD_OK ? "ok" : err);
}

static void check(int ok)
{
    if (!ok)
        abort();
}

static void walk_safetensors(void)
{
    char path[PATH_MAX], err[CLIPMOD_ERROR_SIZE];
    cm_safetensors *st = NULL;

    fuzz_path(path, sizeof path, "model.safetensors");
    clipmod_error rc = cm_safetensors_open(path, &st, err);
    say("safetensors", rc, err);
    if (rc != CLIPMOD_OK) {
        check(st == NULL);
        return;
    }
    size_t len = 0;
    check(cm_safetensors_bytes(st, &len) != NULL && len >= 8);
    for (size_t i = 0; i < cm_safetensors_count(st); i++) {
        const cm_tensor *t = cm_safetensors_at(st, i);
        check(t != NULL && cm_safetensors_find(st, t->name) != NULL);
        size_t esize = cm_dtype_size(t->dtype);
        check(esize == 0 || t->nbytes == t->numel * esize);
        if (t->numel == 0 || t->dtype == CM_DT_I64 || t->dtype == CM_DT_OTHER)
            continue;
        float v[2];
        cm_tensor_to_f32(t, 0, 1, &v[0]);
        cm_tensor_to_f32(t, t->numel - 1, 1, &v[1]);
    }
    check(cm_safetensors_at(st, cm_safetensors_count(st)) == NULL);
    cm_safetensors_close(st);
}

static void load_config(void)
{
    char err[CLIPMOD_ERROR_SIZE];
    cm_config cfg;

    clipmod_error rc = cm_config_load(fuzz_tmpdir(), &cfg, err);
    say("config", rc, err);
    if (rc != CLIPMOD_OK)
        return;
    /* What the rest of the engine relies on. */
    check(cfg.vision.heads > 0 && cfg.vision.width % cfg.vision.heads == 0);
    check(cfg.text.heads > 0 && cfg.text.width % cfg.text.heads == 0);
    check(cfg.patch_size > 0 && cfg.image_size % cfg.patch_size == 0);
    check(cfg.crop == cfg.image_size && cfg.resize_short >= cfg.crop);
}

static void load_model(void)
{
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_model *m = NULL;

    clipmod_error rc = clipmod_model_load(fuzz_tmpdir(), NULL, &m, err);
    say("model", rc, err);
    if (rc == CLIPMOD_OK)
        check(m != NULL && clipmod_model_image_size(m) > 0);
    else
        check(m == NULL);
    /* Memory is sized by config.json only once the checkpoint matches it, so a small
     * input can never need more than a small multiple of its own size. */
    check(rc != CLIPMOD_E_NOMEM);
    clipmod_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    const uint8_t *nul = memchr(rest, 0, n);
    size_t first = nul ? (size_t)(nul - rest) : n;
    const uint8_t *second = nul ? nul + 1 : NULL;
    size_t second_len = nul ? n - first - 1 : 0;

    switch (mode) {
    case 'c':
    case 'o':
        write_file(mode == 'c' ? "config.json" : "open_clip_config.json", rest, first);
        if (second)
            write_file("preprocessor_config.json", second, second_len);
        load_config();
        break;
    case 'm':
        write_file("config.json", rest, first);
        if (second) {
            write_file("model.safetensors", second, second_len);
            load_model();
        }
        break;
    default:
        write_file("model.safetensors", rest, n);
        walk_safetensors();
        break;
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[PATH_MAX];
        fuzz_path(path, sizeof path, files[i]);
        unlink(path);
    }
    return 0;
}
