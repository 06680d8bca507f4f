/*
 * test_tokenizer.c - cmocka unit tests of src/lib/tokenizer.c.
 *
 * Owns the tokenizer's contract at the C level: loading and rejecting merges files
 * (missing, malformed, too short, damaged gzip), the vocabulary layout checked on a
 * tiny handwritten merges file with hand-computed ids, argument and UTF-8 errors,
 * truncation, and on OpenAI's merges (CLIPMOD_BPE_GZ, skipped when absent) the
 * published ids of spec section 4.3 plus ids of the cleaning rules computed by
 * tests/reference/tokenizer_ref.py. Broad parity with Python is the job of
 * tests/tokenizer_corpus.sh; this file pins down the cases a reader can check.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* mkstemp, truncate */
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "common.h"
#include "tokenizer.h"

#define OPENAI_MERGES 48894
#define SOT           49406
#define EOT           49407

/* ---------------------------------------------------------------------------- */
/* Helpers                                                                        */
/* ---------------------------------------------------------------------------- */

/* Append `s` to the NUL-terminated `buf` of `size` bytes; the test fails rather than
 * cut the text short. */
static void append(char *buf, size_t size, const char *s)
{
    const size_t used = strlen(buf), add = strlen(s);
    assert_true(add < size - used);
    memcpy(buf + used, s, add + 1);
}

/* Path of OpenAI's merges: $CLIPMOD_BPE_GZ, else the build's default location. */
static const char *bpe_gz_path(void)
{
    static char buf[4096];
    const char *env = getenv("CLIPMOD_BPE_GZ");
    if (env && *env)
        return env;
#ifdef CM_TEST_SRCDIR
    snprintf(buf, sizeof buf, "%s/../shared/data/clip/bpe_simple_vocab_16e6.txt.gz",
             CM_TEST_SRCDIR);
#else
    snprintf(buf, sizeof buf, "../shared/data/clip/bpe_simple_vocab_16e6.txt.gz");
#endif
    return buf;
}

/* Write `len` bytes to a new temporary file; returns its malloc'd path. */
static char *write_temp(const char *data, size_t len)
{
    char *path = strdup("/tmp/cm_test_tokenizer_XXXXXX");
    int fd;
    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static void remove_temp(char *path)
{
    if (path) {
        unlink(path);
        free(path);
    }
}

/* Encode `text` with ctx 77 and compare with expected[0..n). */
static void expect_ids_len(const cm_tokenizer *tok, const char *text, size_t len,
                           const int32_t *expected, size_t n)
{
    int32_t ids[CLIPMOD_CONTEXT_LENGTH];
    size_t n_ids = 0;
    int truncated = -1;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    clipmod_error err = cm_tokenizer_encode(tok, text, len, ids, CLIPMOD_CONTEXT_LENGTH, &n_ids,
                                            &truncated, errbuf);
    if (err)
        print_error("encode(\"%s\"): %s\n", text, errbuf);
    assert_int_equal(err, CLIPMOD_OK);
    assert_int_equal(truncated, 0);
    if (n_ids != n || memcmp(ids, expected, n * sizeof *ids)) {
        print_error("encode(\"%s\") gave", text);
        for (size_t i = 0; i < n_ids; i++)
            print_error(" %d", (int)ids[i]);
        print_error("\n");
    }
    assert_int_equal(n_ids, n);
    assert_memory_equal(ids, expected, n * sizeof *ids);
}

#define EXPECT_IDS(tok, text, ...)                                                                 \
    do {                                                                                           \
        static const int32_t exp_[] = {__VA_ARGS__};                                               \
        expect_ids_len(tok, text, strlen(text), exp_, sizeof exp_ / sizeof exp_[0]);               \
    } while (0)

static void expect_same(const cm_tokenizer *tok, const char *a, const char *b)
{
    int32_t ia[CLIPMOD_CONTEXT_LENGTH], ib[CLIPMOD_CONTEXT_LENGTH];
    size_t na = 0, nb = 0;
    int ta, tb;
    assert_int_equal(cm_tokenizer_encode(tok, a, strlen(a), ia, 77, &na, &ta, NULL), CLIPMOD_OK);
    assert_int_equal(cm_tokenizer_encode(tok, b, strlen(b), ib, 77, &nb, &tb, NULL), CLIPMOD_OK);
    if (na != nb || memcmp(ia, ib, na * sizeof *ia))
        print_error("\"%s\" and \"%s\" encode differently\n", a, b);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, na * sizeof *ia);
}

static clipmod_error load_text(const char *text, size_t n_merges, cm_tokenizer **tok, char *errbuf)
{
    char *path = write_temp(text, strlen(text));
    clipmod_error err = cm_tokenizer_load(path, n_merges, tok, errbuf);
    remove_temp(path);
    return err;
}

/*
 * A tiny merges file. Ids: printable ASCII byte b is b - 33 ('e' 68, 'h' 71, 'l' 75,
 * 'o' 78), +256 with "</w>"; merge i is 512 + i; SOT 517, EOT 518.
 */
static const char tiny_merges[] = "#version: 0.2\n"
                                  "l o</w>\n"     /* 512 lo</w> */
                                  "h e\n"         /* 513 he */
                                  "l l\n"         /* 514 ll */
                                  "he l\n"        /* 515 hel */
                                  "hel lo</w>\n"; /* 516 hello</w> */

/* ---------------------------------------------------------------------------- */
/* Tiny merges: vocabulary layout and BPE by hand                                */
/* ---------------------------------------------------------------------------- */

static void test_tiny_merges(void **state)
{
    cm_tokenizer *tok = NULL;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    (void)state;
    assert_int_equal(load_text(tiny_merges, 5, &tok, errbuf), CLIPMOD_OK);
    assert_int_equal(cm_tokenizer_sot(tok), 517);
    assert_int_equal(cm_tokenizer_eot(tok), 518);

    /* l o</w> (rank 0), then h e, then he l, then hel lo</w>. */
    EXPECT_IDS(tok, "hello", 517, 516, 518);
    /* No "l l</w>" rule: he l l</w> -> hel l</w>. */
    EXPECT_IDS(tok, "hell", 517, 515, 75 + 256, 518);
    /* Overlapping pairs merge left to right: l l l</w> -> ll l</w>. */
    EXPECT_IDS(tok, "lll", 517, 514, 75 + 256, 518);
    EXPECT_IDS(tok, "llll", 517, 514, 75, 75 + 256, 518);
    /* Lowercased; "world" has no rule; "!" is byte 33 = id 0, + "</w>" = 256. */
    EXPECT_IDS(tok, "Hello World!", 517, 516, 86, 78, 81, 75, 100 - 33 + 256, 256, 518);
    EXPECT_IDS(tok, "<|endoftext|>", 517, 518, 518);
    EXPECT_IDS(tok, "", 517, 518);
    EXPECT_IDS(tok, " \t\n ", 517, 518);
    cm_tokenizer_free(tok);

    /* Windows line ends are accepted; only the first n merges are used. */
    assert_int_equal(load_text("#version: 0.2\r\nh e\r\nl l\r\n", 1, &tok, errbuf), CLIPMOD_OK);
    EXPECT_IDS(tok, "hell", 513, 512, 75, 75 + 256, 514);
    cm_tokenizer_free(tok);
}

/* bytes_to_unicode: the ids of bytes outside the printable set. */
static void test_byte_ids(void **state)
{
    cm_tokenizer *tok = NULL;
    (void)state;
    assert_int_equal(load_text(tiny_merges, 5, &tok, NULL), CLIPMOD_OK);
    /* bs order: bytes 33..126 are ids 0..93, 161..172 are 94..105, 174..255 are
     * 106..187; the other 68 bytes follow in increasing order: 0..32 are 188..220,
     * 127..160 are 221..254, 173 is 255. Non-letters below are punctuation pieces.
     * U+00A1 = C2 A1: 0xC2 -> 106 + (194 - 174) = 126, 0xA1 -> 94 (+256, last). */
    EXPECT_IDS(tok, "\xC2\xA1", 517, 126, 94 + 256, 518);
    /* U+00AD (soft hyphen, Cf) = C2 AD: 0xAD -> 255. */
    EXPECT_IDS(tok, "\xC2\xAD", 517, 126, 255 + 256, 518);
    /* U+0080 (a C1 control; not whitespace) = C2 80: 0x80 -> 221 + 1. */
    EXPECT_IDS(tok, "\xC2\x80", 517, 126, 222 + 256, 518);
    /* U+0000 -> 188. */
    expect_ids_len(tok, "\0", 1, (const int32_t[]){517, 188 + 256, 518}, 3);
    cm_tokenizer_free(tok);
}

/* Python's dict(zip(...)) keeps the last of duplicate merges and strings. */
static void test_duplicates(void **state)
{
    cm_tokenizer *tok = NULL;
    (void)state;
    /* "e l" appears as merges 0 and 2: its rank is 2, after "l l" (1), and the
     * string "el" gets the later id, 514. SOT 515, EOT 516. */
    assert_int_equal(load_text("#version: 0.2\ne l\nl l\ne l\n", 3, &tok, NULL), CLIPMOD_OK);
    /* e l l l</w>: (l l) before (e l): e ll l</w>. With first-wins it would be el l l</w>. */
    EXPECT_IDS(tok, "elll", 515, 68, 513, 75 + 256, 516);
    EXPECT_IDS(tok, "elx", 515, 514, 120 - 33 + 256, 516);
    cm_tokenizer_free(tok);
}

/* ---------------------------------------------------------------------------- */
/* Errors                                                                         */
/* ---------------------------------------------------------------------------- */

static void expect_load_error(const char *text, size_t n, clipmod_error code, const char *needle)
{
    cm_tokenizer *tok = (cm_tokenizer *)1;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    assert_int_equal(load_text(text, n, &tok, errbuf), code);
    assert_null(tok);
    if (!strstr(errbuf, needle))
        print_error("error \"%s\" lacks \"%s\"\n", errbuf, needle);
    assert_non_null(strstr(errbuf, needle));
}

static void test_load_errors(void **state)
{
    cm_tokenizer *tok = (cm_tokenizer *)1;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    (void)state;

    assert_int_equal(cm_tokenizer_load("/nonexistent/merges.txt", 5, &tok, errbuf), CLIPMOD_E_IO);
    assert_null(tok);
    assert_non_null(strstr(errbuf, "/nonexistent/merges.txt"));
    assert_non_null(strstr(errbuf, "No such file"));
    assert_int_equal(cm_tokenizer_load("/nonexistent", 5, &tok, NULL), CLIPMOD_E_IO);

    expect_load_error("h e\nl l\n", 1, CLIPMOD_E_TOKENIZER, ":1: not a merges file");
    expect_load_error("{\"!\": 0, \"\\\"\": 1}\n", 1, CLIPMOD_E_TOKENIZER, ":1:");
    expect_load_error("", 1, CLIPMOD_E_TOKENIZER, ":1:");
    expect_load_error("#version: 0.2\nh e x\n", 1, CLIPMOD_E_TOKENIZER, ":2: expected two symbols");
    expect_load_error("#version: 0.2\nh e\n\nl l\n", 3, CLIPMOD_E_TOKENIZER, ":3: expected");
    expect_load_error("#version: 0.2\nhe\n", 1, CLIPMOD_E_TOKENIZER, ":2: expected");
    expect_load_error("#version: 0.2\nh  e\n", 1, CLIPMOD_E_TOKENIZER, ":2: expected");
    expect_load_error("#version: 0.2\nh\te\n", 1, CLIPMOD_E_TOKENIZER, ":2: expected");
    expect_load_error("#version: 0.2\nh e\n \xff\n", 2, CLIPMOD_E_TOKENIZER, ":3: expected");
    expect_load_error("#version: 0.2\nh e\nl \xff\n", 2, CLIPMOD_E_TOKENIZER, ":3: invalid UTF-8");
    expect_load_error(tiny_merges, 6, CLIPMOD_E_TOKENIZER, "only 5 merges, the model needs 6");
    expect_load_error("#version: 0.2\n", 1, CLIPMOD_E_TOKENIZER, "only 0 merges");

    assert_int_equal(load_text(tiny_merges, 0, &tok, errbuf), CLIPMOD_E_INVALID_ARG);
    assert_null(tok);
    assert_int_equal(cm_tokenizer_load(NULL, 5, &tok, errbuf), CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_tokenizer_load("x", 5, NULL, errbuf), CLIPMOD_E_INVALID_ARG);
    cm_tokenizer_free(NULL);
}

/* A gzip file cut short is reported, not read as fewer merges. */
static void test_damaged_gzip(void **state)
{
    char *path = write_temp("", 0);
    gzFile gz;
    FILE *f;
    long size;
    cm_tokenizer *tok = NULL;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    (void)state;

    gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_true(gzputs(gz, "#version: 0.2\n") > 0);
    for (int i = 0; i < 2000; i++)
        assert_true(gzprintf(gz, "a%d b%d\n", i, i) > 0);
    assert_int_equal(gzclose(gz), Z_OK);

    /* Whole, it loads, gunzipped on the fly. */
    assert_int_equal(cm_tokenizer_load(path, 2000, &tok, errbuf), CLIPMOD_OK);
    cm_tokenizer_free(tok);
    tok = NULL;

    f = fopen(path, "r+");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size / 2), 0);
    assert_int_equal(cm_tokenizer_load(path, 2000, &tok, errbuf), CLIPMOD_E_TOKENIZER);
    assert_null(tok);
    assert_non_null(strstr(errbuf, path));
    remove_temp(path);
}

static void test_encode_errors(void **state)
{
    cm_tokenizer *tok = NULL;
    int32_t ids[8];
    size_t n_ids = 99;
    int truncated = 99;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    static const char *const invalid[] = {
        "\xff",             /* never valid */
        "abc\x80",          /* lone continuation byte */
        "\xc3",             /* truncated sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80",
    };
    (void)state;
    assert_int_equal(load_text(tiny_merges, 5, &tok, NULL), CLIPMOD_OK);
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        n_ids = 99;
        assert_int_equal(cm_tokenizer_encode(tok, invalid[i], strlen(invalid[i]), ids, 8, &n_ids,
                                             &truncated, errbuf),
                         CLIPMOD_E_INVALID_ARG);
        assert_non_null(strstr(errbuf, "UTF-8"));
        assert_int_equal(n_ids, 0);
    }
    assert_int_equal(cm_tokenizer_encode(tok, "\xff", 1, ids, 8, &n_ids, NULL, NULL),
                     CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_tokenizer_encode(tok, "a", 1, ids, 1, &n_ids, &truncated, errbuf),
                     CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_tokenizer_encode(NULL, "a", 1, ids, 8, &n_ids, &truncated, errbuf),
                     CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_tokenizer_encode(tok, NULL, 1, ids, 8, &n_ids, &truncated, errbuf),
                     CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_tokenizer_encode(tok, NULL, 0, ids, 8, &n_ids, &truncated, errbuf),
                     CLIPMOD_OK);
    assert_int_equal(n_ids, 2);
    /* The input needs no NUL terminator, and an embedded NUL is an ordinary character. */
    EXPECT_IDS(tok, "hello", 517, 516, 518);
    expect_ids_len(tok, "helloXYZ", 5, (const int32_t[]){517, 516, 518}, 3);
    expect_ids_len(tok, "hello\0", 6, (const int32_t[]){517, 516, 188 + 256, 518}, 4);
    cm_tokenizer_free(tok);
}

/* Truncation keeps the first ctx ids and forces the last to EOT. */
static void test_truncation(void **state)
{
    cm_tokenizer *tok = NULL;
    int32_t ids[CLIPMOD_CONTEXT_LENGTH];
    size_t n_ids = 0;
    int truncated = 0;
    char text[2048] = "";
    (void)state;
    assert_int_equal(load_text(tiny_merges, 5, &tok, NULL), CLIPMOD_OK);

    /* 200 words, one token each. */
    for (int i = 0; i < 200; i++)
        append(text, sizeof text, "hello ");
    assert_int_equal(
        cm_tokenizer_encode(tok, text, strlen(text), ids, 77, &n_ids, &truncated, NULL),
        CLIPMOD_OK);
    assert_int_equal(n_ids, 77);
    assert_int_equal(truncated, 1);
    assert_int_equal(ids[0], 517);
    for (int i = 1; i < 76; i++)
        assert_int_equal(ids[i], 516);
    assert_int_equal(ids[76], 518);

    /* Exactly ctx ids fit without truncation; one more token truncates. */
    text[0] = '\0';
    for (int i = 0; i < 75; i++)
        append(text, sizeof text, "hello ");
    assert_int_equal(
        cm_tokenizer_encode(tok, text, strlen(text), ids, 77, &n_ids, &truncated, NULL),
        CLIPMOD_OK);
    assert_int_equal(n_ids, 77);
    assert_int_equal(truncated, 0);
    assert_int_equal(ids[76], 518);
    append(text, sizeof text, "hello");
    assert_int_equal(
        cm_tokenizer_encode(tok, text, strlen(text), ids, 77, &n_ids, &truncated, NULL),
        CLIPMOD_OK);
    assert_int_equal(n_ids, 77);
    assert_int_equal(truncated, 1);

    /* The smallest context: SOT EOT. */
    assert_int_equal(cm_tokenizer_encode(tok, "hello", 5, ids, 2, &n_ids, &truncated, NULL),
                     CLIPMOD_OK);
    assert_int_equal(n_ids, 2);
    assert_int_equal(truncated, 1);
    assert_int_equal(ids[0], 517);
    assert_int_equal(ids[1], 518);
    assert_int_equal(cm_tokenizer_encode(tok, "", 0, ids, 2, &n_ids, &truncated, NULL), CLIPMOD_OK);
    assert_int_equal(truncated, 0);
    cm_tokenizer_free(tok);
}

/* ---------------------------------------------------------------------------- */
/* OpenAI's merges                                                                */
/* ---------------------------------------------------------------------------- */

static int openai_setup(void **state)
{
    cm_tokenizer *tok = NULL;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    const char *path = bpe_gz_path();
    *state = NULL;
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "note: %s not readable (set CLIPMOD_BPE_GZ): skipping OpenAI tests\n",
                path);
        return 0;
    }
    if (cm_tokenizer_load(path, OPENAI_MERGES, &tok, errbuf)) {
        fprintf(stderr, "%s\n", errbuf);
        return -1;
    }
    *state = tok;
    return 0;
}

static int openai_teardown(void **state)
{
    cm_tokenizer_free(*state);
    return 0;
}

#define NEED_OPENAI(state)                                                                         \
    do {                                                                                           \
        if (!*(state)) {                                                                           \
            print_message("OpenAI merges not found (CLIPMOD_BPE_GZ): skipped\n");                  \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Spec section 4.3 and the brief. */
static void test_openai_known_ids(void **state)
{
    const cm_tokenizer *tok;
    NEED_OPENAI(state);
    tok = *state;
    assert_int_equal(cm_tokenizer_sot(tok), SOT);
    assert_int_equal(cm_tokenizer_eot(tok), EOT);
    EXPECT_IDS(tok, "a photo of a cat", SOT, 320, 1125, 539, 320, 2368, EOT);
    EXPECT_IDS(tok, "a photo of a dog", SOT, 320, 1125, 539, 320, 1929, EOT);
    EXPECT_IDS(tok, "Hello World!", SOT, 3306, 1002, 256, EOT);
    EXPECT_IDS(tok, "Hello, world!", SOT, 3306, 267, 1002, 256, EOT);
    EXPECT_IDS(tok, "don't stop 42 times", SOT, 847, 713, 1691, 275, 273, 1661, EOT);
    EXPECT_IDS(tok, "hello-world, 3.14 (test)", SOT, 3306, 268, 1002, 267, 274, 269, 272, 275, 263,
               1628, 264, EOT);
    EXPECT_IDS(tok,
               "caf\xc3\xa9 \xc3\xbc"
               "ber na\xc3\xafve",
               SOT, 15304, 6522, 1516, 1097, 35689, 563, EOT);
    EXPECT_IDS(tok, "a diagram", SOT, 320, 22697, EOT);
    EXPECT_IDS(tok, "", SOT, EOT);
    /* ftfy-lite uncurls quotes, so the curly example equals the straight one. */
    EXPECT_IDS(tok, "don\xe2\x80\x99t stop", SOT, 847, 713, 1691, EOT);
    /* 日本の石灯籠 (OpenAI, not HF: no spaces around ideographs). */
    EXPECT_IDS(tok, "\xe6\x97\xa5\xe6\x9c\xac\xe3\x81\xae\xe7\x9f\xb3\xe7\x81\xaf\xe7\xb1\xa0", SOT,
               39121, 44353, 21575, 163, 253, 111, 163, 223, 107, 163, 109, 510, EOT);
}

/* Cleaning rules; ids computed by tests/reference/tokenizer_ref.py. */
static void test_openai_cleaning(void **state)
{
    const cm_tokenizer *tok;
    NEED_OPENAI(state);
    tok = *state;
    /* html.unescape twice: &amp;amp;lt; -> &amp;lt; -> &lt; */
    EXPECT_IDS(tok, "&amp;amp;lt;", SOT, 261, 3333, 282, EOT);
    /* Longest legacy prefix (&not, &amp), the #x80 remap, #0 and surrogates -> U+FFFD. */
    EXPECT_IDS(tok, "&notit; &ampx &#x80;&#0;&#xD800;", SOT, 126, 361, 585, 282, 261, 343, 34919,
               47356, 39802, EOT);
    expect_same(tok, "&notit;", "\xc2\xacit;");
    expect_same(tok, "&#x20AC;", "\xe2\x82\xac");
    expect_same(tok, "&#8364", "\xe2\x82\xac");
    /* Python lower(): İ -> i + U+0307. */
    EXPECT_IDS(tok, "\xc4\xb0stanbul", SOT, 328, 16384, 11231, EOT);
    /* Final sigma: ΟΔΟΣ -> οδος (ς), ΣΑΣ. -> σας., lone Σ -> σ. */
    EXPECT_IDS(tok, "\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\xa3\xce\x91\xce\xa3. \xce\xa3", SOT, 138,
               123, 138, 112, 138, 123, 139, 480, 139, 225, 138, 109, 139, 480, 269, 139, 481, EOT);
    /* NBSP, EM SPACE, U+0085 are whitespace; U+180E and U+001C are not (for `regex`). */
    EXPECT_IDS(tok,
               "a\xc2\xa0"
               "b\xe2\x80\x83"
               "c\xe1\xa0\x8e"
               "d\x1c"
               "e\xc2\x85"
               "f",
               SOT, 320, 321, 322, 157, 254, 492, 323, 472, 324, 325, EOT);
    /* U+0345 folds to a letter, so IGNORECASE matches it with no alternative. */
    EXPECT_IDS(tok, "x\xcd\x85y", SOT, 343, 344, EOT);
    /* A literal <|endoftext|> is EOT; with long s it matches the pattern but is BPE'd. */
    EXPECT_IDS(tok, "<|endoftext|>x<|\xc5\xbftartoftext|>", SOT, EOT, 343, 27, 91, 129, 123, 2002,
               6659, 18169, 91, 285, EOT);
    /* NFC. */
    expect_same(tok, "e\xcc\x81", "\xc3\xa9");
    /* Contractions, caseless ('LL, 'ſ). */
    EXPECT_IDS(tok, "o'neill's 'LL '\xc5\xbf", SOT, 334, 262, 19324, 568, 1342, 6, 129, 379, EOT);
    /* Strip and whitespace collapsing. */
    expect_same(tok, "\x1f\t a \n\xe3\x80\x80 photo\xe2\x80\xa8\xe2\x80\xa9", "a photo");
}

/* A 200-word prompt truncates to SOT + 75 tokens + EOT (spec section 4.3). */
static void test_openai_truncation(void **state)
{
    const cm_tokenizer *tok;
    int32_t ids[CLIPMOD_CONTEXT_LENGTH];
    size_t n_ids = 0;
    int truncated = 0;
    char text[4096] = "";
    NEED_OPENAI(state);
    tok = *state;
    for (int i = 0; i < 40; i++)
        append(text, sizeof text, "a photo of a cat ");
    assert_int_equal(
        cm_tokenizer_encode(tok, text, strlen(text), ids, 77, &n_ids, &truncated, NULL),
        CLIPMOD_OK);
    assert_int_equal(n_ids, 77);
    assert_int_equal(truncated, 1);
    assert_int_equal(ids[0], SOT);
    assert_int_equal(ids[1], 320);
    assert_int_equal(ids[75], 2368); /* word 75 is the 15th "cat" */
    assert_int_equal(ids[76], EOT);
}

/* The same merges as HF's plain merges.txt load and encode identically. */
static void test_openai_plain_merges(void **state)
{
    const cm_tokenizer *gz_tok;
    cm_tokenizer *txt_tok = NULL;
    gzFile in;
    FILE *out;
    char line[512], *path;
    char errbuf[CLIPMOD_ERROR_SIZE] = "";
    static const char *const texts[] = {"a photo of a cat", "Hello, world!", "jekyll hyde",
                                        "\xe6\x97\xa5\xe6\x9c\xac"};
    NEED_OPENAI(state);
    gz_tok = *state;

    path = write_temp("", 0);
    in = gzopen(bpe_gz_path(), "rb");
    out = fopen(path, "w");
    assert_non_null(in);
    assert_non_null(out);
    fputs("#version: 0.2\n", out);
    assert_non_null(gzgets(in, line, sizeof line)); /* OpenAI's header */
    for (int i = 0; i < OPENAI_MERGES; i++) {
        assert_non_null(gzgets(in, line, sizeof line));
        fputs(line, out);
    }
    gzclose(in);
    assert_int_equal(fclose(out), 0);

    assert_int_equal(cm_tokenizer_load(path, OPENAI_MERGES, &txt_tok, errbuf), CLIPMOD_OK);
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        int32_t a[77], b[77];
        size_t na, nb;
        int ta, tb;
        assert_int_equal(
            cm_tokenizer_encode(gz_tok, texts[t], strlen(texts[t]), a, 77, &na, &ta, NULL),
            CLIPMOD_OK);
        assert_int_equal(
            cm_tokenizer_encode(txt_tok, texts[t], strlen(texts[t]), b, 77, &nb, &tb, NULL),
            CLIPMOD_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
    }
    /* The last merge, "jeky ll</w>", is id 49405. */
    EXPECT_IDS(txt_tok, "jekyll", SOT, 49405, EOT);
    cm_tokenizer_free(txt_tok);

    /* Fewer merges: ids past the cut are gone and SOT/EOT move down. */
    assert_int_equal(cm_tokenizer_load(path, 1000, &txt_tok, errbuf), CLIPMOD_OK);
    assert_int_equal(cm_tokenizer_sot(txt_tok), 1512);
    assert_int_equal(cm_tokenizer_eot(txt_tok), 1513);
    cm_tokenizer_free(txt_tok);
    remove_temp(path);
}

/* A shared tokenizer gives the same ids from several threads at once. */
typedef struct thread_job {
    const cm_tokenizer *tok;
    int failures;
} thread_job;

static const char *const thread_texts[] = {
    "a photo of a cat",
    "Hello, world!",
    "&amp;amp; caf\xc3\xa9 \xce\x9f\xce\x94\xce\x9f\xce\xa3",
    "don't stop 42 times",
    "\xe6\x97\xa5\xe6\x9c\xac\xe3\x81\xae\xe7\x9f\xb3",
    "supercalifragilisticexpialidocious antidisestablishmentarianism"};

static void *thread_main(void *arg)
{
    thread_job *job = arg;
    size_t nt = sizeof thread_texts / sizeof thread_texts[0];
    int32_t want[6][77], got[77];
    size_t want_n[6], n;
    int tr;
    for (size_t t = 0; t < nt; t++)
        if (cm_tokenizer_encode(job->tok, thread_texts[t], strlen(thread_texts[t]), want[t], 77,
                                &want_n[t], &tr, NULL))
            job->failures++;
    for (int r = 0; r < 3000; r++) {
        size_t t = (size_t)r % nt;
        if (cm_tokenizer_encode(job->tok, thread_texts[t], strlen(thread_texts[t]), got, 77, &n,
                                &tr, NULL) ||
            n != want_n[t] || memcmp(got, want[t], n * sizeof *got))
            job->failures++;
    }
    return NULL;
}

static void test_openai_threads(void **state)
{
    pthread_t th[4];
    thread_job jobs[4];
    NEED_OPENAI(state);
    for (int i = 0; i < 4; i++) {
        jobs[i].tok = *state;
        jobs[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
    }
}

int main(void)
{
    const struct CMUnitTest local[] = {
        cmocka_unit_test(test_tiny_merges),  cmocka_unit_test(test_byte_ids),
        cmocka_unit_test(test_duplicates),   cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_damaged_gzip), cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_truncation),
    };
    const struct CMUnitTest openai[] = {
        cmocka_unit_test(test_openai_known_ids),  cmocka_unit_test(test_openai_cleaning),
        cmocka_unit_test(test_openai_truncation), cmocka_unit_test(test_openai_plain_merges),
        cmocka_unit_test(test_openai_threads),
    };
    int failed = cmocka_run_group_tests_name("tokenizer", local, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("tokenizer_openai", openai, openai_setup, openai_teardown);
    return failed ? 1 : 0;
}
