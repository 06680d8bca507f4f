/*
 * fuzz_image.c - image decoding under limits, through the public scan API
 * (clipmod_scan_memory: src/lib/scan.c, image.c, resample.c and libvips' loaders).
 *
 * The input is the image's bytes. One engine is built at initialisation from the
 * committed micro model tests/fuzz/image-model (config.json, an F16
 * model.safetensors of 42 KB and 64 merges; made with tests/reference/
 * make_checkpoint.py, see README.md there) and a one-category policy written into
 * fuzz_tmpdir(), with no prompt cache and tight limits so each input is cheap:
 * 2 MP per frame, 8 MP per input, 64 frames, 4 sampled. Beyond memory safety the
 * target checks what a scan promises, and aborts when a promise is broken:
 *   - a verdict is never an error: every input gives CLIPMOD_OK (or out of memory);
 *   - an unscanned result has a reason and a sentence saying why;
 *   - a scanned result has a size and 1 to 4 frames (the policy's samples), no
 *     more than the file has, which is no more than max-frames;
 *   - the result has its JSON form.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "clipmod/clipmod.h"
#include "fuzz.h"

static clipmod_model *model;
static clipmod_engine *engine;

static const char policy_text[] = "version: 1\n"
                                  "name: fuzz\n"
                                  "templates: [\"a photo of {}.\"]\n"
                                  "neutral: [a street, a lake]\n"
                                  "animation: {frames: 4}\n"
                                  "categories:\n"
                                  "  - id: cat\n"
                                  "    description: Cats.\n"
                                  "    prompts: [a cat]\n"
                                  "    contrast: [a dog]\n"
                                  "    threshold: 0.5\n"
                                  "    action: flag\n";

static const struct {
    clipmod_setting s;
    uint64_t value;
} limits[] = {
    {CLIPMOD_MAX_FILE_BYTES, 1 << 20},
    {CLIPMOD_MAX_PIXELS, 2000000},
    {CLIPMOD_MAX_SIDE, 8192},
    {CLIPMOD_MAX_FRAMES, 64},
    {CLIPMOD_MAX_TOTAL_PIXELS, 8000000},
};

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_image: broken promise: %s\n", what);
        abort();
    }
}

static void teardown(void)
{
    clipmod_engine_free(engine);
    clipmod_model_free(model);
    engine = NULL;
    model = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char dir[4096], policy[4200], err[CLIPMOD_ERROR_SIZE];
    char *problems = NULL;
    (void)argc;

    check(clipmod_init(argv && *argv ? (*argv)[0] : "fuzz_image") == CLIPMOD_OK, "init");
    vips_concurrency_set(1); /* one thread: faster per input, and reproducible */
    snprintf(dir, sizeof dir, "%s/tests/fuzz/image-model", fuzz_srcdir());
    if (clipmod_model_load(dir, NULL, &model, err)) {
        fprintf(stderr, "fuzz_image: %s\n", err);
        abort();
    }
    snprintf(policy, sizeof policy, "%s/policy.yaml", fuzz_tmpdir());
    FILE *f = fopen(policy, "w");
    check(f && fputs(policy_text, f) >= 0 && fclose(f) == 0, "writing the policy");
    check(clipmod_engine_new(model, &engine) == CLIPMOD_OK, "engine");
    check(clipmod_engine_set_cache_dir(engine, NULL) == CLIPMOD_OK, "no cache");
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        check(clipmod_engine_set(engine, limits[i].s, limits[i].value) == CLIPMOD_OK, "limit");
    if (clipmod_engine_compile(engine, policy, &problems)) {
        fprintf(stderr, "fuzz_image: the policy does not compile:\n%s", problems ? problems : "");
        abort();
    }
    clipmod_free(problems);
    atexit(teardown);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clipmod_result *r = NULL;
    const clipmod_error rc = clipmod_scan_memory(engine, data, size, "fuzz", &r);
    if (rc == CLIPMOD_E_NOMEM)
        return 0;
    check(rc == CLIPMOD_OK && r, "a scan returns a result");
    const clipmod_state state = clipmod_result_state(r);
    const char *why = clipmod_result_reason_text(r);
    if (state == CLIPMOD_STATE_UNSCANNED) {
        check(clipmod_result_reason(r) != CLIPMOD_REASON_NONE, "an unscanned result has a reason");
        check(why && *why, "an unscanned result says why");
    } else {
        check(state == CLIPMOD_STATE_CLEAN || state == CLIPMOD_STATE_FLAGGED, "a known state");
        check(clipmod_result_reason(r) == CLIPMOD_REASON_NONE, "a scanned result has no reason");
        check(clipmod_result_category_count(r) == 1, "the policy's one category is scored");
    }
    char *json = clipmod_result_to_json(r, 1);
    check(json != NULL, "a result has its JSON");
    const char *image = strstr(json, "\"image\":{");
    int w = -1, h = -1, frames = -1, scanned = -1;
    check(image && sscanf(image,
                          "\"image\":{\"width\":%d,\"height\":%d,\"frames\":%d,"
                          "\"frames_scanned\":%d",
                          &w, &h, &frames, &scanned) == 4,
          "the JSON describes the image");
    if (state != CLIPMOD_STATE_UNSCANNED)
        check(w > 0 && h > 0 && scanned >= 1 && scanned <= 4 && scanned <= frames && frames <= 64,
              "a scanned result has a size and 1..4 of its frames, within max-frames");
    clipmod_free(json);
    clipmod_result_free(r);
    return 0;
}
