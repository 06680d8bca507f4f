/*
 * fuzz_tokenizer.c - arbitrary bytes through CLIP's tokenizer (src/lib/tokenizer.c).
 *
 * The tokenizer is loaded once from the demo model's merges (models/demo/merges.txt,
 * committed; OpenAI's merges file is never needed). Every input is encoded as text
 * (UTF-8 checking, NFC, HTML unescaping, lower-casing, splitting, BPE) three times:
 * with the model's context of 77 ids, with room for 4096, and with the minimum of 2.
 * The target checks what the encoder promises: SOT first and EOT last, every id in
 * the vocabulary, at most `ctx` ids, truncation reported exactly when the long
 * encoding did not fit, and the short encodings being prefixes of the long one.
 *
 * An input that starts like a merges file ("#version") or a gzip stream is also
 * loaded as one, with as many merges as it has lines (at most 512), and used to
 * encode a fixed text: the merges reader parses model files, which are untrusted.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../demo_tokenizer.h"
#include "fuzz.h"
#include "tokenizer.h"

#define LONG_CTX 4096

static cm_tokenizer *demo;

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CLIPMOD_ERROR_SIZE];

    if (demo_tokenizer_load(fuzz_srcdir(), &demo, err) != CLIPMOD_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        abort();
    }
    return 0;
}

/* Encode with context `ctx`; returns the result code, ids in `ids` (ctx entries). */
static clipmod_error encode(const cm_tokenizer *tok, const uint8_t *data, size_t size, int32_t *ids,
                            size_t ctx, size_t *n, int *truncated)
{
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_error rc = cm_tokenizer_encode(tok, size ? (const char *)data : NULL, size, ids, ctx, n,
                                           truncated, err);
    if (rc != CLIPMOD_OK)
        return rc;
    check(*n >= 2 && *n <= ctx);
    check(ids[0] == cm_tokenizer_sot(tok) && ids[*n - 1] == cm_tokenizer_eot(tok));
    /* "<|startoftext|>" written in the text is SOT, as in OpenAI's tokenizer. */
    for (size_t i = 1; i + 1 < *n; i++)
        check(ids[i] >= 0 && ids[i] <= cm_tokenizer_eot(tok));
    return rc;
}

static void encode_all(const cm_tokenizer *tok, const uint8_t *data, size_t size)
{
    static int32_t big[LONG_CTX];
    int32_t small[CLIPMOD_CONTEXT_LENGTH], two[2];
    size_t nb = 0, ns = 0, n2 = 0;
    int tb = 0, ts = 0, t2 = 0;

    clipmod_error rb = encode(tok, data, size, big, LONG_CTX, &nb, &tb);
    clipmod_error rs = encode(tok, data, size, small, CLIPMOD_CONTEXT_LENGTH, &ns, &ts);
    clipmod_error r2 = encode(tok, data, size, two, 2, &n2, &t2);
    check(rb == rs && rs == r2);
    if (rb != CLIPMOD_OK) {
        check(rb == CLIPMOD_E_INVALID_ARG);
        return;
    }
    if (tb)
        return; /* over 4096 ids: nothing more to compare */
    check(ts == (nb > CLIPMOD_CONTEXT_LENGTH) && t2 == (nb > 2));
    check(ns == (ts ? CLIPMOD_CONTEXT_LENGTH : nb) && n2 == 2);
    check(!memcmp(small, big, (ns - 1) * sizeof *small));
}

/* The input as a merges file, if it looks like one. */
static void as_merges(const uint8_t *data, size_t size)
{
    static const uint8_t text[] =
        "A photo of a CAT, &amp; a dog's toy!! 123 caf\xc3\xa9 \xe2\x80\x9cok\xe2\x80\x9d";
    char path[PATH_MAX];
    cm_tokenizer *tok = NULL;
    size_t lines = 0;

    if (!(size >= 8 && !memcmp(data, "#version", 8)) &&
        !(size >= 2 && data[0] == 0x1f && data[1] == 0x8b))
        return;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (lines > 512)
        lines = 512;
    fuzz_path(path, sizeof path, "merges.txt");
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f))
        abort();
    if (cm_tokenizer_load(path, lines ? lines : 1, &tok, NULL) == CLIPMOD_OK) {
        encode_all(tok, text, sizeof text - 1);
        encode_all(tok, data, size > 256 ? 256 : size);
    } else {
        check(tok == NULL);
    }
    cm_tokenizer_free(tok);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    encode_all(demo, data, size);
    as_merges(data, size);
    return 0;
}
