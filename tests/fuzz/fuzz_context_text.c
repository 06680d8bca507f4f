/*
 * fuzz_context_text.c - arbitrary bytes as an image's context text (src/lib/context.c).
 *
 * The tokenizer is the demo model's (models/demo/merges.txt, committed). Every input
 * is cleaned and cut into windows under a cap taken from its first byte (so that
 * cuts land everywhere, mid-character included), and once more with a large cap.
 * Invariants (abort on failure): the cleaned text is valid UTF-8 without control
 * (line breaks aside) or invisible characters, without leading, trailing or double
 * separators; it is never
 * longer than three times the bytes read (one U+FFFD per invalid byte at most);
 * windows lie inside it, in order, non-empty, at most max_windows of them, each
 * encoded alone without truncation; `cut` is set exactly when bytes or windows were
 * left out; and cleaning is idempotent (the cleaned text cleans to itself).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../demo_tokenizer.h"
#include "common.h"
#include "context.h"
#include "fuzz.h"

static cm_tokenizer *demo;

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CLIPMOD_ERROR_SIZE];
    (void)argc;
    (void)argv;
    if (demo_tokenizer_load(fuzz_srcdir(), &demo, err) != CLIPMOD_OK) {
        fprintf(stderr, "fuzz_context_text: %s\n", err);
        abort();
    }
    return 0;
}

/* Strict UTF-8 without C0/C1 controls, the invisible characters or double spaces. */
static void check_clean(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    check(!n || (u[0] != ' ' && u[n - 1] != ' ' && u[0] != '\n' && u[n - 1] != '\n'));
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
        long cp = c < 0x80 ? c : c & (0x3f >> (len - 1));
        check(c < 0x80 || (c >= 0xc2 && c <= 0xf4));
        check(i + len <= n);
        for (size_t k = 1; k < len; k++) {
            check((u[i + k] & 0xc0) == 0x80);
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        check((cp >= 0x20 || cp == '\n') && !(cp >= 0x7f && cp <= 0x9f));
        check(!(cp >= 0xd800 && cp <= 0xdfff) && cp <= 0x10ffff);
        check(!(cp >= 0x200b && cp <= 0x200f) && !(cp >= 0x202a && cp <= 0x202e));
        check(!(cp >= 0x2066 && cp <= 0x2069) && cp != 0xfeff);
        check(!((cp == ' ' || cp == '\n') && i + 1 < n && (u[i + 1] == ' ' || u[i + 1] == '\n')));
        i += len;
    }
}

static void one(const uint8_t *data, size_t size, size_t max_bytes, size_t max_windows)
{
    cm_ctx_text t;
    check(cm_ctx_prepare(demo, (const char *)data, size, max_bytes, max_windows, &t) == CLIPMOD_OK);
    const size_t read = size < max_bytes ? size : max_bytes;
    check(t.bytes == size && t.len <= 3 * read && strlen(t.text) == t.len);
    check_clean(t.text, t.len);
    check(t.n_windows <= max_windows && t.n_windows <= t.windows_total);
    check(t.cut == (size > max_bytes || t.windows_total > t.n_windows));
    size_t at = 0;
    for (size_t w = 0; w < t.n_windows; w++) {
        int32_t ids[CLIPMOD_CONTEXT_LENGTH];
        size_t n;
        int truncated = -1;
        check(t.win[w].len > 0 && t.win[w].start >= at && t.win[w].start + t.win[w].len <= t.len);
        check(!memchr(t.text + t.win[w].start, '\n', t.win[w].len));
        check(cm_tokenizer_encode(demo, t.text + t.win[w].start, t.win[w].len, ids,
                                  CLIPMOD_CONTEXT_LENGTH, &n, &truncated, NULL) == CLIPMOD_OK);
        check(!truncated);
        at = t.win[w].start + t.win[w].len;
    }
    /* Idempotent: clean text is left alone. */
    char *again;
    size_t again_len;
    unsigned cleaned;
    int cut;
    check(cm_ctx_clean(t.text, t.len, t.len + 1, &again, &again_len, &cleaned, &cut) == CLIPMOD_OK);
    check(again_len == t.len && !memcmp(again, t.text, t.len) && !cleaned && !cut);
    cm_free(again);
    cm_ctx_text_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t cap = size ? 1 + data[0] % 64 : 1;
    one(data, size, cap, 1 + (size ? data[size - 1] % 4 : 0));
    one(data, size, 1 << 16, 8);
    return 0;
}
