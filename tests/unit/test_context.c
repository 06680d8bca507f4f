/*
 * test_context.c - src/lib/context.c: cleaning untrusted context text and cutting it
 * into windows.
 *
 * Cleaning is checked on hand-written bytes with the expected text written by hand
 * (the rules of clipmod-policy(5) CONTEXT); windows with the demo model's tokenizer
 * (models/demo/merges.txt, committed): every window fits the text tower (encoding it
 * alone is not truncated), windows tile the words in order, the caps hold, and a
 * word longer than a window is cut into pieces that each fit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "context.h"

#include "../demo_tokenizer.h"

static cm_tokenizer *tok;

static void clean_is(const char *in, size_t len, size_t max, const char *want, unsigned flags,
                     int cut)
{
    char *out = NULL;
    size_t n = 0;
    unsigned cleaned = 99;
    int was_cut = -1;
    assert_int_equal(cm_ctx_clean(in, len, max, &out, &n, &cleaned, &was_cut), CLIPMOD_OK);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
    assert_int_equal(cleaned, flags);
    assert_int_equal(was_cut, cut);
    cm_free(out);
}

static void cleaning(void **state)
{
    (void)state;
    clean_is("a pistol", 8, 100, "a pistol", 0, 0);
    /* White space runs become one space, or one line break when they hold one (a line
     * break separates pieces of context); ends are trimmed; tabs and newlines are
     * white space, not control characters. */
    clean_is("  see\t\tyou \r\n next  ", 20, 100, "see you\nnext", 0, 0);
    /* NUL and other controls become spaces (and say so). */
    clean_is("you\0are\x01next", 12, 100, "you are next", CLIPMOD_CONTEXT_CONTROL, 0);
    clean_is("x\x7f\xc2\x85y", 5, 100, "x\ny", CLIPMOD_CONTEXT_CONTROL, 0); /* DEL; NEL breaks */
    /* Invalid UTF-8: one U+FFFD per run; overlong forms and surrogates are invalid. */
    clean_is("a\xff\xfe b", 5, 100, "a\xef\xbf\xbd b", CLIPMOD_CONTEXT_INVALID_UTF8, 0);
    clean_is("\xc0\xaf", 2, 100, "\xef\xbf\xbd", CLIPMOD_CONTEXT_INVALID_UTF8, 0);
    clean_is("\xed\xa0\x80z", 4, 100, "\xef\xbf\xbdz", CLIPMOD_CONTEXT_INVALID_UTF8, 0);
    clean_is("\xf4\x90\x80\x80", 4, 100, "\xef\xbf\xbd", CLIPMOD_CONTEXT_INVALID_UTF8, 0);
    /* Right-to-left override, zero-width space and joiner, BOM, soft hyphen: dropped. */
    clean_is("pi\xe2\x80\x8bs\xe2\x80\xaeto\xef\xbb\xbfl\xc2\xad", 17, 100, "pistol",
             CLIPMOD_CONTEXT_INVISIBLE, 0);
    /* Valid non-ASCII text stays as it is. */
    clean_is("caf\xc3\xa9 \xf0\x9f\x94\xab", 10, 100, "caf\xc3\xa9 \xf0\x9f\x94\xab", 0, 0);
    /* The cap cuts at a character boundary: a cut sequence is not invalid UTF-8. */
    clean_is("ab\xc3\xa9", 4, 3, "ab", 0, 1);
    clean_is("ab\xf0\x9f\x94\xab", 6, 5, "ab", 0, 1);
    clean_is("abcdef", 6, 3, "abc", 0, 1);
    clean_is("", 0, 10, "", 0, 0);
    clean_is("\0\0\0", 3, 10, "", CLIPMOD_CONTEXT_CONTROL, 0);
}

/* Each window is encoded alone without truncation, and windows are the words in order. */
static void check_windows(const cm_ctx_text *t)
{
    size_t at = 0;
    for (size_t w = 0; w < t->n_windows; w++) {
        const cm_ctx_window *win = &t->win[w];
        int32_t ids[CLIPMOD_CONTEXT_LENGTH];
        size_t n = 0;
        int truncated = -1;
        assert_true(win->len > 0);
        assert_true(win->start + win->len <= t->len);
        assert_true(win->start >= at);
        assert_int_equal(cm_tokenizer_encode(tok, t->text + win->start, win->len, ids,
                                             CLIPMOD_CONTEXT_LENGTH, &n, &truncated, NULL),
                         CLIPMOD_OK);
        assert_int_equal(truncated, 0);
        at = win->start + win->len;
    }
}

static void windows(void **state)
{
    (void)state;
    cm_ctx_text t;
    /* One short text: one window, the whole text. */
    assert_int_equal(cm_ctx_prepare(tok, "I have a pistol", 15, 1000, 8, &t), CLIPMOD_OK);
    assert_int_equal(t.n_windows, 1);
    assert_int_equal(t.windows_total, 1);
    assert_int_equal(t.win[0].start, 0);
    assert_int_equal(t.win[0].len, 15);
    assert_false(t.cut);
    cm_ctx_text_free(&t);

    /* 1,000 words "pistol" (one token each with the demo merges? whatever they are,
     * each window must fit and the words must all be covered in order). */
    const size_t words = 1000;
    char *many = malloc(words * 7);
    assert_non_null(many);
    for (size_t i = 0; i < words; i++)
        memcpy(many + i * 7, "pistol ", 7);
    assert_int_equal(cm_ctx_prepare(tok, many, words * 7, 1 << 20, 1000, &t), CLIPMOD_OK);
    assert_true(t.n_windows > 1);
    assert_int_equal(t.n_windows, t.windows_total);
    check_windows(&t);
    /* Consecutive windows are separated by exactly one space: nothing is skipped. */
    for (size_t w = 1; w < t.n_windows; w++)
        assert_int_equal(t.win[w].start, t.win[w - 1].start + t.win[w - 1].len + 1);
    assert_int_equal(t.win[t.n_windows - 1].start + t.win[t.n_windows - 1].len, t.len);
    const size_t all = t.n_windows;
    cm_ctx_text_free(&t);

    /* The window cap keeps the first ones and says so. */
    assert_int_equal(cm_ctx_prepare(tok, many, words * 7, 1 << 20, 3, &t), CLIPMOD_OK);
    assert_int_equal(t.n_windows, 3);
    assert_int_equal(t.windows_total, all);
    assert_true(t.cut);
    check_windows(&t);
    cm_ctx_text_free(&t);

    /* The byte cap: only the first 70 bytes (10 words) are read. */
    assert_int_equal(cm_ctx_prepare(tok, many, words * 7, 70, 8, &t), CLIPMOD_OK);
    assert_int_equal(t.len, 69);
    assert_int_equal(t.bytes, words * 7);
    assert_true(t.cut);
    cm_ctx_text_free(&t);
    free(many);
}

/* A line break ends a window: each piece of context is embedded on its own. */
static void pieces(void **state)
{
    (void)state;
    cm_ctx_text t;
    assert_int_equal(
        cm_ctx_prepare(tok, "IMG_1234.png\npistol dagger\n\n  grinning face", 44, 1000, 8, &t),
        CLIPMOD_OK);
    assert_string_equal(t.text, "IMG_1234.png\npistol dagger\ngrinning face");
    assert_int_equal(t.n_windows, 3);
    assert_int_equal(t.win[1].start, 13);
    assert_int_equal(t.win[1].len, 13);
    assert_int_equal(t.win[2].len, 13);
    check_windows(&t);
    cm_ctx_text_free(&t);
}

static void long_words_and_nothing(void **state)
{
    (void)state;
    cm_ctx_text t;
    /* 5,000 bytes without a space: cut into pieces that each fit. */
    char *blob = malloc(5000);
    assert_non_null(blob);
    for (size_t i = 0; i < 5000; i++)
        blob[i] = (char)('a' + (i * 7) % 26);
    assert_int_equal(cm_ctx_prepare(tok, blob, 5000, 1 << 20, 1000, &t), CLIPMOD_OK);
    assert_true(t.n_windows > 1);
    check_windows(&t);
    size_t covered = 0;
    for (size_t w = 0; w < t.n_windows; w++)
        covered += t.win[w].len;
    assert_int_equal(covered, 5000);
    cm_ctx_text_free(&t);
    free(blob);

    /* Nothing usable: no windows, and that is not an error. */
    assert_int_equal(cm_ctx_prepare(tok, "\x01\x02 \xe2\x80\x8f", 6, 100, 8, &t), CLIPMOD_OK);
    assert_int_equal(t.n_windows, 0);
    assert_int_equal(t.len, 0);
    assert_int_equal(t.cleaned, CLIPMOD_CONTEXT_CONTROL | CLIPMOD_CONTEXT_INVISIBLE);
    cm_ctx_text_free(&t);
    cm_ctx_text_free(NULL);
    assert_int_equal(cm_ctx_prepare(NULL, "x", 1, 10, 8, &t), CLIPMOD_E_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cleaning),
        cmocka_unit_test(windows),
        cmocka_unit_test(pieces),
        cmocka_unit_test(long_words_and_nothing),
    };
    char err[CLIPMOD_ERROR_SIZE];
    const char *d = getenv("top_srcdir");
    if (demo_tokenizer_load(d && *d ? d : CM_TEST_TOP_SRCDIR, &tok, err) != CLIPMOD_OK) {
        fprintf(stderr, "SKIP: %s\n", err);
        return 77;
    }
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cm_tokenizer_free(tok);
    return rc;
}
