/*
 * test_multipart.c - clipmodd's streaming multipart/form-data reader (multipart.c).
 *
 * The reader is fed in pieces of any size, so every body here is read whole, then
 * split in two at every offset, then a byte at a time, and each reading must give
 * the same parts byte for byte. The data holds near-delimiters (CRLF, dashes, the
 * boundary less a byte) and the boundaries overlap themselves, where a naive
 * matcher would lose or duplicate bytes. Then the header parameters (filename*
 * decoding, names made valid UTF-8), the refusals of ambiguous bodies, and limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "multipart.h"

#define MAX_GOT 16

typedef struct got_part {
    char name[MP_MAX_NAME + 1], filename[MP_MAX_NAME + 1], ctype[128];
    int has_name, has_file_param, has_filename, form_data;
    unsigned char *data;
    size_t len;
    int ended;
} got_part;

typedef struct got {
    got_part p[MAX_GOT];
    size_t n;
    int stop_at_begin; /* stop when this many parts have begun (0: never) */
} got;

static int on_begin(void *arg, const mp_part *mp)
{
    got *g = arg;
    assert_true(g->n < MAX_GOT);
    got_part *p = &g->p[g->n++];
    memset(p, 0, sizeof *p);
    assert_int_equal(mp->index, g->n - 1);
    if (mp->name) {
        p->has_name = 1;
        snprintf(p->name, sizeof p->name, "%s", mp->name);
    }
    if (mp->filename) {
        p->has_file_param = 1;
        snprintf(p->filename, sizeof p->filename, "%s", mp->filename);
    }
    if (mp->content_type)
        snprintf(p->ctype, sizeof p->ctype, "%s", mp->content_type);
    p->has_filename = mp->has_filename;
    p->form_data = mp->form_data;
    return g->stop_at_begin && g->n == (size_t)g->stop_at_begin;
}

static int on_data(void *arg, const unsigned char *data, size_t n)
{
    got *g = arg;
    got_part *p = &g->p[g->n - 1];
    assert_false(p->ended);
    p->data = realloc(p->data, p->len + n + 1);
    assert_non_null(p->data);
    memcpy(p->data + p->len, data, n);
    p->len += n;
    return 0;
}

static int on_end(void *arg)
{
    got *g = arg;
    g->p[g->n - 1].ended = 1;
    return 0;
}

static const mp_callbacks cbs = {on_begin, on_data, on_end};

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->p[i].data);
    memset(g, 0, sizeof *g);
}

/* Read `body` with feeds split at `split` (0: one feed), or `step` bytes at a time. */
static mp_status read_body(const char *ctype, const void *body, size_t len, size_t split,
                           size_t step, got *g, const mp_limits *lim)
{
    static const mp_limits dflt = {16, 4096};
    char why[200];
    mp_status st;
    mp_reader *r = mp_new(ctype, lim ? lim : &dflt, &cbs, g, &st, why, sizeof why);
    const unsigned char *b = body;

    if (!r)
        return st;
    if (step) {
        for (size_t i = 0; i < len && st == MP_OK; i += step)
            st = mp_feed(r, b + i, len - i < step ? len - i : step);
    } else if (split) {
        st = mp_feed(r, b, split);
        if (st == MP_OK)
            st = mp_feed(r, b + split, len - split);
    } else {
        st = mp_feed(r, b, len);
    }
    if (st == MP_OK)
        st = mp_finish(r);
    assert_true(st == MP_OK || *mp_error(r));
    mp_free(r);
    return st;
}

/* A form of `n` parts (name i, data[i] of len[i] bytes) with boundary `bd`. */
static size_t build(char *out, size_t cap, const char *bd, size_t n, const char *const *data,
                    const size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        o += (size_t)snprintf(out + o, cap - o,
                              "--%s\r\nContent-Disposition: form-data; name=\"f%zu\"; "
                              "filename=\"f%zu.png\"\r\nContent-Type: image/png\r\n\r\n",
                              bd, i, i);
        assert_true(o + len[i] + 2 < cap);
        memcpy(out + o, data[i], len[i]);
        o += len[i];
        memcpy(out + o, "\r\n", 2);
        o += 2;
    }
    o += (size_t)snprintf(out + o, cap - o, "--%s--\r\n", bd);
    assert_true(o < cap);
    return o;
}

static void expect_parts(const got *g, size_t n, const char *const *data, const size_t *len)
{
    assert_int_equal(g->n, n);
    for (size_t i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%zu", i);
        assert_string_equal(g->p[i].name, name);
        assert_true(g->p[i].ended);
        assert_int_equal(g->p[i].len, len[i]);
        if (len[i])
            assert_memory_equal(g->p[i].data, data[i], len[i]);
    }
}

/* Whole, split at every offset, and byte by byte: the same parts. */
static void every_split(const char *bd, size_t n, const char *const *data, const size_t *len)
{
    char ctype[128], body[4096];
    size_t blen = build(body, sizeof body, bd, n, data, len);
    got g = {0};

    snprintf(ctype, sizeof ctype, "multipart/form-data; boundary=\"%s\"", bd);
    for (size_t split = 0; split <= blen; split++) {
        assert_int_equal(read_body(ctype, body, blen, split, 0, &g, NULL), MP_OK);
        expect_parts(&g, n, data, len);
        got_free(&g);
    }
    for (size_t step = 1; step <= 3; step++) {
        assert_int_equal(read_body(ctype, body, blen, 0, step, &g, NULL), MP_OK);
        expect_parts(&g, n, data, len);
        got_free(&g);
    }
}

static void near_delimiters(void **state)
{
    (void)state;
    const char *bd = "XyZ123";
    const char *data[] = {"plain",          "\r\n--XyZ12\r\n-\r\n--\r\r\n", "", "\r", "\r\n",
                          "tail\r\n--XyZ12"};
    size_t len[6];
    for (size_t i = 0; i < 6; i++)
        len[i] = strlen(data[i]);
    every_split(bd, 6, data, len);
}

static void self_overlapping_boundaries(void **state)
{
    (void)state;
    /* Delimiters "\r\n--aaa" and "\r\n--a-a-a": KMP must keep the overlap. */
    const char *data_a[] = {"\r\n--aa\r\n--a\r\n\r\n--aa", "\r\n-\r\n--"};
    const char *data_b[] = {"\r\n--a-a-\r\n--a-a", "a-a-a\r\n--a"};
    size_t la[2] = {strlen(data_a[0]), strlen(data_a[1])};
    size_t lb[2] = {strlen(data_b[0]), strlen(data_b[1])};
    every_split("aaa", 2, data_a, la);
    every_split("a-a-a", 2, data_b, lb);
}

static void binary_data(void **state)
{
    (void)state;
    char bytes[600];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (char)(i * 37 % 256);
    bytes[100] = '\0';
    const char *data[] = {bytes};
    size_t len[] = {sizeof bytes};
    every_split("0123456789012345678901234567890123456789012345678901234567890123456789", 1, data,
                len);
}

static mp_status read_text(const char *ctype, const char *body, got *g)
{
    return read_body(ctype, body, strlen(body), 0, 0, g, NULL);
}

#define CT "multipart/form-data; boundary=b"

static void parameters(void **state)
{
    (void)state;
    got g = {0};
    assert_int_equal(
        read_text(CT,
                  "--b\r\n"
                  "content-disposition: form-data; name=\"a\"; filename=\"x.png\"; "
                  "filename*=UTF-8''%E2%82%AC%20rates.png\r\n\r\n1\r\n"
                  "--b\r\nContent-Disposition: form-data; filename*=iso-8859-1'fr'caf%E9.png; "
                  "name=b\r\n\r\n2\r\n"
                  "--b\r\nContent-Disposition: form-data; name=\"c\"; filename*=KOI8-R''%C1\r\n"
                  "\r\n3\r\n"
                  "--b\r\nContent-Disposition: form-data; name=\"a\\\"b\"; filename*0=\"x\"\r\n"
                  "Content-Type: text/plain\r\n\r\n4\r\n"
                  "--b\r\nContent-Disposition: attachment\r\n\r\n5\r\n"
                  "--b\r\n\r\n6\r\n--b--",
                  &g),
        MP_OK);
    assert_int_equal(g.n, 6);
    assert_string_equal(g.p[0].filename, "\xe2\x82\xac rates.png");
    assert_string_equal(g.p[1].filename, "caf\xc3\xa9.png");
    assert_string_equal(g.p[1].name, "b");
    assert_string_equal(g.p[2].filename, "KOI8-R''%C1"); /* unknown charset: as it came */
    assert_string_equal(g.p[3].name, "a\"b");
    assert_false(g.p[3].has_file_param);
    assert_true(g.p[3].has_filename); /* filename*0: a file name of another spelling */
    assert_string_equal(g.p[3].ctype, "text/plain");
    for (int i = 0; i < 4; i++)
        assert_true(g.p[i].form_data);
    assert_false(g.p[4].form_data);
    assert_false(g.p[5].has_name);
    assert_false(g.p[5].has_filename);
    assert_int_equal(g.p[5].len, 1);
    got_free(&g);
}

static void names_made_valid(void **state)
{
    (void)state;
    char body[1200], want[MP_MAX_NAME + 1];
    got g = {0};
    /* Invalid UTF-8, a control character (in filename*), an overlong form. */
    assert_int_equal(read_text(CT,
                               "--b\r\nContent-Disposition: form-data; name=\"\xff\xc3\"; "
                               "filename*=UTF-8''a%01b%C0%AFc\r\n\r\n\r\n--b--",
                               &g),
                     MP_OK);
    assert_string_equal(g.p[0].name, "??");
    assert_string_equal(g.p[0].filename, "a?b??c");
    got_free(&g);
    /* 300 bytes of two-byte characters: cut at 254, never inside one. */
    int o = snprintf(body, sizeof body, "--b\r\nContent-Disposition: form-data; filename=\"");
    for (int i = 0; i < 150; i++)
        o += snprintf(body + o, sizeof body - (size_t)o, "\xc3\xa9");
    snprintf(body + o, sizeof body - (size_t)o, "\"\r\n\r\n\r\n--b--");
    assert_int_equal(read_text(CT, body, &g), MP_OK);
    assert_true(2 * 127 < sizeof want);
    for (int i = 0; i < 127; i++)
        memcpy(want + 2 * i, "\xc3\xa9", 2);
    want[2 * 127] = '\0';
    assert_string_equal(g.p[0].filename, want);
    got_free(&g);
}

static void ambiguous_refused(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "--b\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; "
        "name=b\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; filename=a; filename=b\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; filename*=UTF-8''a; filename*=UTF-8''b\r\n\r\n"
        "x\r\n--b--",
        "--b\r\nContent-Type: a\r\nContent-Type: b\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; name=a\nX: y\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; name=a b\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; name=a\r\nBad Header: x\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: form-data; name=a\r\nX: \x01\r\n\r\nx\r\n--b--",
        "--b\r\n: no name\r\n\r\nx\r\n--b--",
        "--b\nContent-Disposition: form-data; name=a\n\nx\n--b--",
        "--b\r\n\r\nx\n--b\r\n\r\ny\r\n--b--",
        "--b\r\n\r\nx--b\r\n--b--",
        "--b\r\n\r\nx\r\n--b--\r\n--b\r\n\r\ny\r\n--b--",
        "--b\r\n\r\nx\r\n--bb\r\n",
        "--b\r\n\r\nx\r\n--b-\r\n",
        "preamble --b\r\n\r\nx\r\n--b--",
        "--b\r\n\r\nx\r\n--b",
        "--b\r\n\r\nx\r\n",
        "",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        got g = {0};
        mp_status st = read_text(CT, bodies[i], &g);
        if (st != MP_MALFORMED)
            fail_msg("body %zu: status %d, not MP_MALFORMED", i, (int)st);
        got_free(&g);
    }
}

static void allowed_framing(void **state)
{
    (void)state;
    got g = {0};
    /* A preamble, transport padding, an empty form, an epilogue of white space. */
    assert_int_equal(read_text(CT, "preamble\r\n--b \t\r\n\r\nx\r\n--b--  \r\n\r\n", &g), MP_OK);
    assert_int_equal(g.n, 1);
    got_free(&g);
    assert_int_equal(read_text(CT, "--b--", &g), MP_OK);
    assert_int_equal(g.n, 0);
    got_free(&g);
    assert_int_equal(
        read_text("Multipart/Form-Data ; charset=x; BOUNDARY=\"b\"", "--b\r\n\r\nx\r\n--b--", &g),
        MP_OK);
    got_free(&g);
}

static void content_types(void **state)
{
    (void)state;
    char ct[200];
    got g = {0};
    static const char *const bad[] = {
        "multipart/form-data",
        "multipart/form-datax; boundary=b",
        "multipart/mixed; boundary=b",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"b \"",
        "multipart/form-data; boundary=\"a<b\"",
        "multipart/form-data; boundary=b; boundary=c",
        "multipart/form-data; boundary=\"b",
        NULL,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (read_text(bad[i], "--b--", &g) != MP_MALFORMED)
            fail_msg("Content-Type %s accepted", bad[i] ? bad[i] : "(none)");
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%070d\"", 0);
    assert_int_equal(read_text(ct, "--", &g), MP_MALFORMED); /* accepted, then truncated */
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%071d\"", 0);
    char why[200];
    mp_status st;
    mp_limits lim = {4, 4096};
    assert_null(mp_new(ct, &lim, &cbs, &g, &st, why, sizeof why));
    assert_int_equal(st, MP_MALFORMED);
    assert_non_null(strstr(why, "70"));
    assert_int_equal(
        read_text("multipart/form-data; boundary=\"a b\"", "--a b\r\n\r\n\r\n--a b--", &g), MP_OK);
    got_free(&g);
}

static void limits(void **state)
{
    (void)state;
    char body[4096];
    got g = {0};
    mp_limits lim = {2, 128};
    int o = snprintf(body, sizeof body, "--b\r\nX: %0130d\r\n\r\nx\r\n--b--", 0);
    assert_int_equal(read_body(CT, body, (size_t)o, 0, 0, &g, &lim), MP_LIMIT);
    got_free(&g);
    o = snprintf(body, sizeof body, "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--");
    assert_int_equal(read_body(CT, body, (size_t)o, 0, 0, &g, &lim), MP_LIMIT);
    assert_int_equal(g.n, 2);
    got_free(&g);
    o = snprintf(body, sizeof body, "--b%070d\r\n\r\nx\r\n--b--", 0);
    assert_int_equal(read_body(CT, body, (size_t)o, 0, 0, &g, &lim), MP_MALFORMED);
    got_free(&g);
    /* A callback that stops the reader. */
    g.stop_at_begin = 1;
    assert_int_equal(read_text(CT, "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b--", &g), MP_STOPPED);
    assert_int_equal(g.n, 1);
    got_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(near_delimiters),  cmocka_unit_test(self_overlapping_boundaries),
        cmocka_unit_test(binary_data),      cmocka_unit_test(parameters),
        cmocka_unit_test(names_made_valid), cmocka_unit_test(ambiguous_refused),
        cmocka_unit_test(allowed_framing),  cmocka_unit_test(content_types),
        cmocka_unit_test(limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
