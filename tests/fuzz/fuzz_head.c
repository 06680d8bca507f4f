/*
 * fuzz_head.c - learned head files (src/lib/head.c over src/lib/safetensors.c's
 * in-memory parser): what `head:` in a policy makes the loader and the engine read.
 *
 * The input is the head file. It is parsed once with nothing to match (as the
 * policy loader does) and once bound to a 128-dimensional model, a fingerprint and
 * a category (as the engine does). A head that parses is scored on a unit vector
 * and its training digests are searched, so a shape check that lets through a
 * tensor shorter than it claims shows up under ASan; the score must be a
 * probability (the parser refuses every non-finite weight and a non-positive slope).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz.h"
#include "head.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static void use(const cm_head *h)
{
    float *e = calloc(h->dim, sizeof *e);
    unsigned char d[8] = {0};
    if (!e)
        return;
    e[0] = 1.0f;
    const double p = cm_head_score(h, e);
    check(p >= 0.0 && p <= 1.0);
    (void)cm_head_trained_on(h, d);
    if (h->n_train)
        check(cm_head_trained_on(h, h->digests + 8 * (h->n_train - 1)));
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CLIPMOD_ERROR_SIZE];
    cm_head *h = NULL;
    if (cm_head_parse(data, size, "fuzz.safetensors", 0, NULL, NULL, &h, err) == CLIPMOD_OK) {
        use(h);
        cm_head_free(h);
        h = NULL;
    }
    if (cm_head_parse(data, size, "fuzz.safetensors", 128, "0f5f5074c99fb96f", "alcohol", &h,
                      err) == CLIPMOD_OK) {
        check(h->dim == 128);
        use(h);
        cm_head_free(h);
    }
    return 0;
}
