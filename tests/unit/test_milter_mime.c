/*
 * test_milter_mime.c - the MIME walk of clipmod-milter on real-looking messages, and
 * its companions that need no mail server: the YAML configuration and the parsing
 * of SMTP replies.
 *
 * Fixtures live in tests/milter (found through $top_srcdir, as automake sets it for
 * tests): messages shaped like Thunderbird, Outlook and Apple Mail write them, nested
 * message/rfc822, data: URIs, broken and truncated encodings, 0-byte attachments,
 * written by tests/milter/make_fixtures.py around three tiny images (tiny.png,
 * tiny.jpg, tiny.gif) whose bytes every decoded image is compared with. Limits are
 * tested on messages built here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "htmlent.h"
#include "mime.h"
#include "prescan.h"

static const cmm_limits default_limits = {
    .max_parts = 1000, .max_depth = 20, .max_images = 64, .max_image_bytes = 1 << 20};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static char *fixture_path(const char *name)
{
    const char *d = getenv("top_srcdir");
    static char path[4096];
    snprintf(path, sizeof path, "%s/tests/milter/%s", d ? d : ".", name);
    return path;
}

static unsigned char *read_fixture(const char *name, size_t *len)
{
    FILE *f = fopen(fixture_path(name), "rb");
    unsigned char *buf = NULL;
    long n;
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* LF line ends to CRLF, as a message arrives over SMTP. */
static unsigned char *to_crlf(const unsigned char *s, size_t n, size_t *out_len)
{
    unsigned char *d = malloc(2 * n + 1);
    size_t k = 0;
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            d[k++] = '\r';
        d[k++] = s[i];
    }
    *out_len = k;
    return d;
}

static void walk_fixture(const char *name, const cmm_limits *lim, cmm_walk *w)
{
    size_t len;
    unsigned char *msg = read_fixture(name, &len);
    assert_int_equal(cmm_walk_message(msg, len, lim, w), 0);
    free(msg);
}

/* The image at `part`, which must exist once. */
static const cmm_image *image_at(const cmm_walk *w, const char *part)
{
    const cmm_image *found = NULL;
    for (size_t i = 0; i < w->n_images; i++) {
        if (!strcmp(w->images[i].part, part)) {
            assert_null(found);
            found = &w->images[i];
        }
    }
    if (!found) {
        for (size_t i = 0; i < w->n_images; i++)
            fprintf(stderr, "  have part %s\n", w->images[i].part);
        fail_msg("no image at part %s", part);
    }
    return found;
}

/* The image decodes to exactly the bytes of tests/milter/tiny.<ext>. */
static void assert_bytes_of(const cmm_image *im, const char *ext)
{
    char name[32];
    size_t len;
    snprintf(name, sizeof name, "tiny.%s", ext);
    unsigned char *want = read_fixture(name, &len);
    assert_int_equal(im->problem, CMM_OK);
    assert_non_null(im->data);
    assert_int_equal(im->len, len);
    assert_memory_equal(im->data, want, len);
    free(want);
}

/* ------------------------------------------------------------------------ */
/* Messages as clients write them                                           */
/* ------------------------------------------------------------------------ */

static void thunderbird_inline_and_attached(void **state)
{
    cmm_walk w;
    walk_fixture("thunderbird.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 2);
    /* mixed > alternative(1) > related(1.2) > png(1.2.2); the jpeg is part 2. */
    const cmm_image *png = image_at(&w, "1.2.2"), *jpg = image_at(&w, "2");
    assert_bytes_of(png, "png");
    assert_string_equal(png->filename, "inline.png");
    assert_string_equal(png->content_type, "image/png");
    assert_int_equal(png->by, CMM_BY_TYPE);
    assert_bytes_of(jpg, "jpg");
    assert_string_equal(jpg->filename, "beach.jpg");
    /* mixed, alternative, plain, related, html, png, jpeg */
    assert_int_equal(w.n_parts, 7);
    cmm_walk_free(&w);
}

static void thunderbird_with_crlf_line_ends(void **state)
{
    size_t len, crlf_len;
    unsigned char *msg = read_fixture("thunderbird.eml", &len);
    unsigned char *crlf = to_crlf(msg, len, &crlf_len);
    cmm_walk w;
    assert_int_equal(cmm_walk_message(crlf, crlf_len, &default_limits, &w), 0);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 2);
    assert_bytes_of(image_at(&w, "1.2.2"), "png");
    assert_bytes_of(image_at(&w, "2"), "jpg");
    cmm_walk_free(&w);
    free(msg);
    free(crlf);
}

static void outlook_related_and_octet_stream_by_name(void **state)
{
    cmm_walk w;
    walk_fixture("outlook.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 2); /* the .docx is not one */
    const cmm_image *logo = image_at(&w, "1.2"), *scan = image_at(&w, "2");
    assert_bytes_of(logo, "png");
    assert_string_equal(logo->filename, "image001.png");
    assert_bytes_of(scan, "jpg");
    assert_string_equal(scan->filename, "Scan 2024-11-12.JPG");
    assert_string_equal(scan->content_type, "application/octet-stream");
    assert_int_equal(scan->by, CMM_BY_NAME);
    cmm_walk_free(&w);
}

static void applemail_sniffed_and_rfc2231_names(void **state)
{
    cmm_walk w;
    walk_fixture("applemail.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 3);
    const cmm_image *jpg = image_at(&w, "2.2"), *sniffed = image_at(&w, "2.3"),
                    *utf8 = image_at(&w, "2.4");
    assert_bytes_of(jpg, "jpg");
    assert_string_equal(jpg->filename, "IMG_0042.jpeg");
    /* application/octet-stream named "photo": only its bytes say it is a PNG. */
    assert_bytes_of(sniffed, "png");
    assert_int_equal(sniffed->by, CMM_BY_CONTENT);
    assert_string_equal(sniffed->filename, "photo");
    assert_bytes_of(utf8, "png");
    assert_string_equal(utf8->filename, "Gr\xc3\xbc\xc3\x9f"
                                        "e.png");
    cmm_walk_free(&w);
}

static void nested_rfc822_twice(void **state)
{
    cmm_walk w;
    walk_fixture("nested.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 2);
    /* outer part 2 is a message; its part 2 the png, its part 3 a message whose
     * single-part body is 2.3.1. */
    const cmm_image *png = image_at(&w, "2.2"), *gif = image_at(&w, "2.3.1");
    assert_bytes_of(png, "png");
    assert_string_equal(png->filename, "chart.png");
    assert_bytes_of(gif, "gif");
    assert_string_equal(gif->filename, "dance.gif");
    cmm_walk_free(&w);
}

static void nesting_deeper_than_the_limit_fails(void **state)
{
    cmm_limits lim = default_limits;
    cmm_walk w;
    lim.max_depth = 2;
    walk_fixture("nested.eml", &lim, &w);
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "nested more than 2 levels"));
    cmm_walk_free(&w);
}

static void data_uris_and_quoted_printable(void **state)
{
    cmm_walk w;
    walk_fixture("alternative_inline.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 3);
    /* html is part 2.1: its first data: URI (base64 across QP soft breaks) and its
     * percent-encoded SVG; the remote image and the lookalike text are not images. */
    const cmm_image *uri = image_at(&w, "2.1#1"), *svg = image_at(&w, "2.1#2");
    assert_bytes_of(uri, "png");
    assert_int_equal(uri->by, CMM_BY_DATA_URI);
    assert_string_equal(uri->content_type, "image/png");
    assert_int_equal(svg->problem, CMM_OK);
    assert_string_equal(svg->content_type, "image/svg+xml");
    assert_true(svg->len > 20 && !memcmp(svg->data, "<svg xmlns=\"http://www.w3.org/", 30));
    /* The GIF of part 2.2 is quoted-printable. */
    assert_bytes_of(image_at(&w, "2.2"), "gif");
    cmm_walk_free(&w);
}

static void uuencoded_single_part(void **state)
{
    cmm_walk w;
    walk_fixture("uuencode.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 1);
    assert_bytes_of(image_at(&w, "1"), "gif");
    cmm_walk_free(&w);
}

/*
 * Images hidden from a scanner that reads only plain "data:image/" and MIME parts:
 * character references in HTML (named, decimal, hex, inside the base64 too), an
 * image behind data:application/octet-stream, uuencoded blocks in plain text, and
 * an XHTML part. Each must come out with the bytes of the image.
 */
static void obfuscated_images_are_found(void **state)
{
    cmm_walk w;
    walk_fixture("obfuscated.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_bytes_of(image_at(&w, "1#1"), "png"); /* data&#58; */
    assert_bytes_of(image_at(&w, "1#2"), "gif"); /* data&colon; */
    assert_bytes_of(image_at(&w, "1#3"), "jpg"); /* &#100;ata: with &#10; line breaks */
    assert_bytes_of(image_at(&w, "1#4"), "png"); /* every character a reference */
    const cmm_image *css = image_at(&w, "1#5");  /* application/octet-stream, by its bytes */
    assert_bytes_of(css, "png");
    assert_string_equal(css->content_type, "application/octet-stream");
    const cmm_image *uu = image_at(&w, "2#u1"), *uu_noname = image_at(&w, "2#u2");
    assert_bytes_of(uu, "jpg");
    assert_string_equal(uu->filename, "holiday.jpg");
    assert_int_equal(uu->by, CMM_BY_NAME);
    assert_bytes_of(uu_noname, "gif");
    assert_int_equal(uu_noname->by, CMM_BY_CONTENT);
    assert_bytes_of(image_at(&w, "3#1"), "png"); /* application/xhtml+xml */
    /* The text data: URI and the uuencoded notes are not images. */
    assert_int_equal(w.n_images, 8);
    cmm_walk_free(&w);
}

/* A uuencoded block cut before its "end", and one over the byte limit. */
static void uuencoded_blocks_truncated_and_too_large(void **state)
{
    const char *cut = "From: x@example.org\nContent-Type: text/plain\n\n"
                      "begin 644 a.png\n"
                      "M)/$`9$\"\n";
    cmm_limits lim = default_limits;
    cmm_walk w;
    assert_int_equal(cmm_walk_message(cut, strlen(cut), &default_limits, &w), 0);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 1);
    assert_int_equal(w.images[0].problem, CMM_BAD_ENCODING);
    assert_non_null(strstr(w.images[0].note, "truncated"));
    cmm_walk_free(&w);
    lim.max_image_bytes = 100; /* tiny.jpg is 670 bytes */
    walk_fixture("obfuscated.eml", &lim, &w);
    assert_int_equal(image_at(&w, "2#u1")->problem, CMM_TOO_LARGE);
    assert_int_equal(image_at(&w, "1#3")->problem, CMM_TOO_LARGE);
    assert_bytes_of(image_at(&w, "1#1"), "png");
    cmm_walk_free(&w);
    /* Every image counts against max-images, wherever it was found. */
    lim = default_limits;
    lim.max_images = 3;
    walk_fixture("obfuscated.eml", &lim, &w);
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "more than 3 images"));
    cmm_walk_free(&w);
}

/* The container listed at `part`, which must exist once. */
static const cmm_container *container_at(const cmm_walk *w, const char *part)
{
    const cmm_container *found = NULL;
    for (size_t i = 0; i < w->n_containers; i++) {
        if (!strcmp(w->containers[i].part, part)) {
            assert_null(found);
            found = &w->containers[i];
        }
    }
    if (!found)
        fail_msg("no archive or document at part %s", part);
    return found;
}

/*
 * Zip archives (made by Python's zipfile), an office document and a PDF: listed
 * with the images inside, counted from the central directory and the XObjects,
 * never decompressed.
 */
static void images_inside_archives_and_pdfs_are_counted(void **state)
{
    cmm_walk w;
    walk_fixture("containers.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 0);
    assert_int_equal(w.n_containers, 6);
    const cmm_container *uu = container_at(&w, "1#u1"), *photos = container_at(&w, "2"),
                        *docx = container_at(&w, "3"), *pdf = container_at(&w, "4"),
                        *cut = container_at(&w, "5"), *texts = container_at(&w, "6");
    assert_int_equal(uu->count.kind, CMM_ZIP);
    assert_int_equal(uu->count.images, 1);
    assert_string_equal(uu->filename, "more.zip");
    /* a.png (stored), b.JPG (deflated, by name), scan0001 (stored, by its bytes);
     * the directory is no entry, readme.txt no image. */
    assert_int_equal(photos->count.kind, CMM_ZIP);
    assert_int_equal(photos->count.entries, 4);
    assert_int_equal(photos->count.images, 3);
    assert_false(photos->count.unreadable);
    assert_string_equal(photos->filename, "photos.zip");
    assert_int_equal(docx->count.kind, CMM_OFFICE);
    assert_int_equal(docx->count.images, 1);
    /* /Subtype /Image, and /Subtype %comment /Im#61ge; not the /Form. */
    assert_int_equal(pdf->count.kind, CMM_PDF);
    assert_int_equal(pdf->count.images, 2);
    assert_true(cut->count.unreadable);
    assert_non_null(strstr(cut->count.why, "central directory"));
    assert_int_equal(texts->count.entries, 1);
    assert_int_equal(texts->count.images, 0);
    cmm_walk_free(&w);
}

/* Damaged central directories are read within their bounds and called unreadable. */
static void damaged_zips_are_unreadable(void **state)
{
    unsigned char z[64];
    cmm_count c;
    memset(z, 0, sizeof z);
    memcpy(z, "PK\x03\x04", 4);
    /* An end record claiming 3 entries in a directory before the archive's start. */
    memcpy(z + 42, "PK\x05\x06", 4);
    z[42 + 10] = 3;
    z[42 + 12] = 0xff; /* directory size 255 > bytes before the end record */
    assert_true(cmm_container_count(z, sizeof z, NULL, NULL, &c));
    assert_true(c.unreadable);
    /* The same with a plausible size but no directory headers. */
    z[42 + 12] = 20;
    assert_true(cmm_container_count(z, sizeof z, NULL, NULL, &c));
    assert_true(c.unreadable);
    assert_non_null(strstr(c.why, "damaged"));
    /* An empty archive is readable and holds nothing. */
    memset(z, 0, sizeof z);
    memcpy(z, "PK\x05\x06", 4);
    assert_true(cmm_container_count(z, 22, "e.zip", NULL, &c));
    assert_false(c.unreadable);
    assert_int_equal(c.entries, 0);
    /* Not a container at all. */
    assert_false(cmm_container_count((const unsigned char *)"hello", 5, "a.txt", "text/plain", &c));
}

/* HTML character references as Python's html.unescape() reads them (the goldens). */
static void html_references_decode_as_python_does(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a&amp;b", "a&b"},
        {"&ampx", "&x"},
        {"&#128;", "\xe2\x82\xac"},
        {"&#xD800;", "\xef\xbf\xbd"},
        {"&nGt;", "\xe2\x89\xab\xe2\x83\x92"},
        {"d&Tab;a&NewLine;t", "dat"},
        {"&#1;&#65;&#x41", "AA"},
        {"&notit;", "\xc2\xacit;"},
        {"&#99999999999;", "\xef\xbf\xbd"},
        {"&lt&gt;", "<>"},
        {"&unknown;", "&unknown;"},
        {"&#;&#x;", "&#;&#x;"},
        {"da\tta:\r\n", "data:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        unsigned char *o =
            cmm_html_decode((const unsigned char *)cases[i].in, strlen(cases[i].in), &n);
        assert_non_null(o);
        assert_int_equal(n, strlen(cases[i].out));
        assert_memory_equal(o, cases[i].out, n);
        free(o);
    }
}

/* ------------------------------------------------------------------------ */
/* Broken, empty, truncated                                                 */
/* ------------------------------------------------------------------------ */

static void broken_encodings(void **state)
{
    cmm_walk w;
    walk_fixture("broken.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 4);
    /* Junk inside base64 is skipped, as every decoder does: the bytes are right. */
    assert_bytes_of(image_at(&w, "2"), "png");
    /* An unknown transfer encoding is not guessed at. */
    const cmm_image *b65 = image_at(&w, "3");
    assert_int_equal(b65->problem, CMM_BAD_ENCODING);
    assert_null(b65->data);
    assert_non_null(strstr(b65->note, "base65"));
    /* Nothing but junk decodes to nothing: broken, not empty. */
    const cmm_image *junk = image_at(&w, "4");
    assert_int_equal(junk->problem, CMM_BAD_ENCODING);
    assert_non_null(strstr(junk->note, "decode to nothing"));
    /* The last part's closing boundary never comes: its body still decodes. */
    assert_bytes_of(image_at(&w, "5"), "png");
    cmm_walk_free(&w);
}

static void empty_attachments(void **state)
{
    cmm_walk w;
    walk_fixture("empty_attachment.eml", &default_limits, &w);
    assert_false(w.failed);
    /* The empty octet-stream has no signature: not an image. */
    assert_int_equal(w.n_images, 2);
    const cmm_image *png = image_at(&w, "2"), *blank = image_at(&w, "3");
    assert_int_equal(png->problem, CMM_EMPTY);
    assert_int_equal(png->len, 0);
    assert_null(png->data);
    assert_string_equal(png->filename, "empty.png");
    assert_int_equal(blank->problem, CMM_EMPTY);
    cmm_walk_free(&w);
}

static void truncated_base64(void **state)
{
    size_t jpg_len;
    unsigned char *jpg = read_fixture("tiny.jpg", &jpg_len);
    cmm_walk w;
    walk_fixture("truncated_base64.eml", &default_limits, &w);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 2);
    const cmm_image *mid = image_at(&w, "1"), *line = image_at(&w, "2");
    assert_int_equal(mid->problem, CMM_BAD_ENCODING);
    assert_non_null(strstr(mid->note, "truncated"));
    /* Cut at a line end the encoding looks whole: the bytes go to the scanner,
     * short, and the image decoder will call them truncated. */
    assert_int_equal(line->problem, CMM_OK);
    assert_true(line->len > 0 && line->len < jpg_len);
    assert_memory_equal(line->data, jpg, line->len);
    cmm_walk_free(&w);
    free(jpg);
}

static void text_pdf_and_zip_are_not_images(void **state)
{
    cmm_walk w;
    walk_fixture("not_images.eml", &default_limits, &w);
    assert_false(w.failed);
    /* Text is not sniffed, even when its bytes are a PNG: a reader shows text. */
    assert_int_equal(w.n_images, 0);
    assert_int_equal(w.n_parts, 6);
    cmm_walk_free(&w);
}

static void message_partial_cannot_be_judged(void **state)
{
    cmm_walk w;
    walk_fixture("partial.eml", &default_limits, &w);
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "message/partial"));
    cmm_walk_free(&w);
}

static void empty_and_headerless_input(void **state)
{
    cmm_walk w;
    assert_int_equal(cmm_walk_message("", 0, &default_limits, &w), 0);
    assert_true(w.failed);
    cmm_walk_free(&w);
    /* Only a header, no body: a message without images. */
    const char *m = "From: a@example.org\nSubject: x\n\n";
    assert_int_equal(cmm_walk_message(m, strlen(m), &default_limits, &w), 0);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 0);
    cmm_walk_free(&w);
    cmm_walk_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* Limits, on messages built here                                           */
/* ------------------------------------------------------------------------ */

/*
 * Append to a message being built in m (cap bytes): snprintf with the room left,
 * and a failed test, not an overflow, when the room runs out.
 */
__attribute__((format(printf, 4, 5))) static void put(char *m, size_t cap, size_t *len,
                                                      const char *fmt, ...)
{
    va_list ap;
    int n;
    assert_true(*len < cap);
    va_start(ap, fmt);
    n = vsnprintf(m + *len, cap - *len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < cap - *len);
    *len += (size_t)n;
}

/* A multipart/mixed message of `n` parts, each `body` with headers `hdr`. */
static char *build_mixed(size_t n, const char *hdr, const char *body, size_t *len)
{
    size_t cap = 256 + n * (strlen(hdr) + strlen(body) + 32);
    char *m = malloc(cap);
    assert_non_null(m);
    *len = 0;
    put(m, cap, len,
        "From: x@example.org\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"b\"\n\n");
    for (size_t i = 0; i < n; i++)
        put(m, cap, len, "--b\n%s\n\n%s\n", hdr, body);
    put(m, cap, len, "--b--\n");
    return m;
}

static void too_many_parts(void **state)
{
    cmm_limits lim = default_limits;
    size_t len;
    char *m = build_mixed(50, "Content-Type: text/plain", "x", &len);
    cmm_walk w;
    lim.max_parts = 50; /* the multipart itself is a part too */
    assert_int_equal(cmm_walk_message(m, len, &lim, &w), 0);
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "more than 50 MIME parts"));
    cmm_walk_free(&w);
    lim.max_parts = 51;
    assert_int_equal(cmm_walk_message(m, len, &lim, &w), 0);
    assert_false(w.failed);
    cmm_walk_free(&w);
    free(m);
}

static void too_many_images(void **state)
{
    cmm_limits lim = default_limits;
    size_t len;
    char *m = build_mixed(5, "Content-Type: image/png\nContent-Transfer-Encoding: base64",
                          "iVBORw0KGgo=", &len);
    cmm_walk w;
    lim.max_images = 4;
    assert_int_equal(cmm_walk_message(m, len, &lim, &w), 0);
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "more than 4 images"));
    assert_int_equal(w.n_images, 4);
    cmm_walk_free(&w);
    lim.max_images = 5;
    assert_int_equal(cmm_walk_message(m, len, &lim, &w), 0);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 5);
    assert_int_equal(w.images[4].len, 8);
    cmm_walk_free(&w);
    free(m);
}

static void image_over_the_byte_limit(void **state)
{
    cmm_limits lim = default_limits;
    cmm_walk w;
    lim.max_image_bytes = 100;
    walk_fixture("thunderbird.eml", &lim, &w);
    assert_false(w.failed);
    /* The 86-byte PNG fits, the 670-byte JPEG does not: it is listed, not loaded. */
    assert_bytes_of(image_at(&w, "1.2.2"), "png");
    const cmm_image *jpg = image_at(&w, "2");
    assert_int_equal(jpg->problem, CMM_TOO_LARGE);
    assert_null(jpg->data);
    assert_true(jpg->len > 100);
    cmm_walk_free(&w);
}

/* Thousands of nested multiparts: refused by depth, without exhausting the stack. */
static void deep_nesting_bomb(void **state)
{
    const size_t levels = 5000;
    const size_t cap = levels * 64 + 256;
    char *m = malloc(cap);
    size_t len = 0;
    cmm_walk w;
    assert_non_null(m);
    put(m, cap, &len, "From: x@example.org\nMIME-Version: 1.0\n");
    for (size_t i = 0; i < levels; i++)
        put(m, cap, &len, "Content-Type: multipart/mixed; boundary=\"b%zu\"\n\n--b%zu\n", i, i);
    put(m, cap, &len, "Content-Type: image/png\n\nx\n");
    assert_int_equal(cmm_walk_message(m, len, &default_limits, &w), 0);
    assert_true(w.failed);
    assert_int_equal(w.n_images, 0);
    cmm_walk_free(&w);
    free(m);
}

/* CPU seconds this process has used. */
static double cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* The defaults of clipmod-milter.yaml, as the milter passes them. */
static const cmm_limits milter_limits = {
    .max_parts = 1000, .max_depth = 16, .max_images = 64, .max_image_bytes = 25 << 20};

/*
 * 11 MB of empty parts ("--b" and a blank line, 2.2 million of them). GMime used to
 * build every one before the part limit was looked at: 20 s of CPU and 2.9 GB of
 * memory. Counted before parsing, the limit stops it after a few kilobytes.
 */
static void part_bomb_is_refused_before_parsing(void **state)
{
    const size_t size = 11u << 20;
    const char *head = "From: x@example.org\nMIME-Version: 1.0\n"
                       "Content-Type: multipart/mixed; boundary=\"b\"\n\n";
    const size_t cap = size + 64;
    char *m = malloc(cap);
    size_t len = 0;
    cmm_walk w;
    assert_non_null(m);
    put(m, cap, &len, "%s", head);
    while (len < size)
        put(m, cap, &len, "--b\n\n");
    double t0 = cpu_seconds();
    assert_int_equal(cmm_walk_message(m, len, &milter_limits, &w), 0);
    double cpu = cpu_seconds() - t0;
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "more than 1000 MIME parts"));
    if (cpu > 1.0)
        fail_msg("the part bomb took %.2f s of CPU", cpu);
    cmm_walk_free(&w);
    free(m);
}

/*
 * 11 MB of nested multiparts (184,000 levels; GMime nests 1,024 deep and compares
 * the rest of the lines with 1,024 boundaries each): 2 s of CPU before, and the
 * depth limit only looked at after.
 */
static void nesting_bomb_is_refused_before_parsing(void **state)
{
    const size_t size = 11u << 20;
    const size_t cap = size + 256;
    char *m = malloc(cap);
    size_t len = 0;
    cmm_walk w;
    assert_non_null(m);
    put(m, cap, &len, "From: x@example.org\nMIME-Version: 1.0\n");
    for (size_t i = 0; len < size; i++)
        put(m, cap, &len, "Content-Type: multipart/mixed; boundary=\"b%zu\"\n\n--b%zu\n", i, i);
    put(m, cap, &len, "Content-Type: image/png\n\nx\n");
    double t0 = cpu_seconds();
    assert_int_equal(cmm_walk_message(m, len, &milter_limits, &w), 0);
    double cpu = cpu_seconds() - t0;
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "nested more than 16 levels"));
    if (cpu > 0.5)
        fail_msg("the nesting bomb took %.2f s of CPU", cpu);
    cmm_walk_free(&w);
    free(m);
}

/* Nested attached messages count as nesting too, before parsing. */
static void nested_messages_are_refused_before_parsing(void **state)
{
    const size_t cap = 40 * 32 + 256;
    char *m = malloc(cap);
    size_t len = 0;
    cmm_walk w;
    cmm_limits lim = milter_limits;
    assert_non_null(m);
    put(m, cap, &len, "From: x@example.org\nMIME-Version: 1.0\n");
    for (int i = 0; i < 40; i++)
        put(m, cap, &len, "Content-Type: message/rfc822\n\n");
    put(m, cap, &len, "Content-Type: image/png\n\nx\n");
    assert_int_equal(cmm_walk_message(m, len, &lim, &w), 0);
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "nested more than 16 levels"));
    cmm_walk_free(&w);
    /* With max-depth 40 the image 40 levels down is found. */
    lim.max_depth = 40;
    assert_int_equal(cmm_walk_message(m, len, &lim, &w), 0);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 1);
    cmm_walk_free(&w);
    free(m);
}

/*
 * Two different Content-Type headers in one part: readers disagree on which one
 * counts (GMime takes the last, others the first), so the message is refused
 * rather than judged as one of them. Identical repeats are harmless.
 */
static void conflicting_content_types_are_refused(void **state)
{
    const char *conflict = "From: x@example.org\nMIME-Version: 1.0\n"
                           "Content-Type: multipart/mixed; boundary=\"a\"\n\n"
                           "--a\nContent-Type: text/plain\nContent-Type: image/png\n"
                           "Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--a--\n";
    const char *repeat = "From: x@example.org\nMIME-Version: 1.0\n"
                         "Content-Type: multipart/mixed; boundary=\"a\"\n\n"
                         "--a\nContent-Type: image/png\nContent-Type: image/png\n"
                         "Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--a--\n";
    cmm_walk w;
    assert_int_equal(cmm_walk_message(conflict, strlen(conflict), &default_limits, &w), 0);
    assert_true(w.failed);
    assert_non_null(strstr(w.why, "conflicting Content-Type"));
    cmm_walk_free(&w);
    assert_int_equal(cmm_walk_message(repeat, strlen(repeat), &default_limits, &w), 0);
    assert_false(w.failed);
    assert_int_equal(w.n_images, 1);
    cmm_walk_free(&w);
}

/* Every fixture: the pre-scan counts what the walk counts, and GMime agrees with it. */
static void prescan_agrees_with_the_walk(void **state)
{
    static const char *const names[] = {"thunderbird.eml",      "outlook.eml",
                                        "applemail.eml",        "nested.eml",
                                        "broken.eml",           "empty_attachment.eml",
                                        "truncated_base64.eml", "not_images.eml",
                                        "uuencode.eml",         "alternative_inline.eml",
                                        "partial.eml"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len;
        unsigned char *msg = read_fixture(names[i], &len);
        cmm_prescan ps;
        cmm_walk w;
        assert_int_equal(cmm_prescan_run(msg, len, &default_limits, &ps), 0);
        assert_false(ps.failed);
        assert_int_equal(cmm_walk_message(msg, len, &default_limits, &w), 0);
        if (w.failed && !strstr(w.why, "message/partial"))
            fail_msg("%s: %s", names[i], w.why);
        if (!w.failed && ps.n_parts != w.n_parts)
            fail_msg("%s: pre-scan %zu parts, walk %zu", names[i], ps.n_parts, w.n_parts);
        /* A header GMime reads where the pre-scan read none stops the parse. */
        assert_int_equal(cmm_prescan_check(&ps, len + 1, "text/plain"), -1);
        assert_true(ps.failed);
        assert_non_null(strstr(ps.why, "ambiguous MIME structure"));
        cmm_prescan_free(&ps);
        cmm_walk_free(&w);
        free(msg);
    }
}

/*
 * `head`, then a line that is not a header ("x y...": a blank inside the name)
 * whose '\n' is byte 4096, just past GMime's first read buffer, then `tail`.
 * Returns the length; msg has room for 4097 + strlen(tail) bytes.
 */
static size_t straddling_garbage(char *msg, const char *head, const char *tail)
{
    size_t hlen = strlen(head), tlen = strlen(tail);
    memcpy(msg, head, hlen);
    memcpy(msg + hlen, "x y", 3);
    memset(msg + hlen + 3, 'z', 4096 - hlen - 3);
    msg[4096] = '\n';
    memcpy(msg + 4097, tail, tlen);
    return 4097 + tlen;
}

/*
 * Prescan bounds the walk. GMime keeps the first piece of a non-header line cut by
 * the end of its read buffer, glues the next header line onto it and loses that
 * header: a Content-Type in a digest (the part becomes message/rfc822, 2 parts
 * and a level deeper), also in the part after a boundary, or the
 * Content-Transfer-Encoding of a message/rfc822 part (its body is parsed as a
 * message). The pre-scan must count at least what GMime builds.
 */
static void prescan_bounds_the_walk_when_gmime_loses_a_header(void **state)
{
    static const char digest[] = "Content-Type: multipart/digest; boundary=\"d\"\n\n--d\n";
    static const struct {
        const char *head, *tail;
        size_t parts, depth; /* what GMime builds */
    } cases[] = {
        {digest, "Content-Type: text/plain\n\nhi\n--d--\n", 3, 2},
        {digest, "--d\nContent-Type: text/plain\n\nhi\n--d--\n", 3, 2},
        {"Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\n",
         "Content-Transfer-Encoding: base64\nContent-Type: message/rfc822\n\n"
         "Subject: x\n\nbody\n--m--\n",
         3, 2},
    };
    static char msg[4096 + 256];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = straddling_garbage(msg, cases[i].head, cases[i].tail);
        cmm_limits under = default_limits;
        cmm_prescan ps;
        cmm_walk w;

        assert_int_equal(cmm_walk_message(msg, len, &default_limits, &w), 0);
        assert_false(w.failed);
        /* GMime's reading, which this test relies on */
        assert_int_equal(w.n_parts, cases[i].parts);
        cmm_walk_free(&w);
        assert_int_equal(cmm_prescan_run((const unsigned char *)msg, len, &default_limits, &ps), 0);
        assert_false(ps.failed);
        if (ps.n_parts < cases[i].parts || ps.max_depth < cases[i].depth)
            fail_msg("case %zu: pre-scan %zu parts depth %zu, GMime %zu depth %zu", i, ps.n_parts,
                     ps.max_depth, cases[i].parts, cases[i].depth);
        cmm_prescan_free(&ps);

        /* One part under GMime's count: refused before GMime parses. */
        under.max_parts = cases[i].parts - 1;
        assert_int_equal(cmm_prescan_run((const unsigned char *)msg, len, &under, &ps), 0);
        assert_true(ps.failed);
        assert_non_null(strstr(ps.why, "MIME parts"));
        cmm_prescan_free(&ps);
    }
}

/* ------------------------------------------------------------------------ */
/* Configuration and SMTP replies                                           */
/* ------------------------------------------------------------------------ */

static char tmpdir[64];

static int setup_tmp(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/clipmod-milter-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static const char *write_tmp(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void config_defaults_and_relative_paths(void **state)
{
    const char *path = write_tmp("m.yaml", "model: models/tiny\npolicy: p.yaml\n");
    cmc_config *c = NULL;
    char *problems = NULL;
    assert_int_equal(cmc_load(path, &c, &problems), 0);
    assert_null(problems);
    char want[512];
    snprintf(want, sizeof want, "%s/models/tiny", tmpdir);
    assert_string_equal(c->model, want);
    snprintf(want, sizeof want, "%s/p.yaml", tmpdir);
    assert_string_equal(c->policy, want);
    assert_string_equal(c->socket, "inet:8897@127.0.0.1");
    assert_int_equal(c->on_fail, CMC_FAIL_TEMPFAIL);
    assert_string_equal(c->on_fail_reply.rcode, "451");
    assert_string_equal(c->on_fail_reply.xcode, "4.7.1");
    assert_int_equal(c->action[CLIPMOD_ACTION_REJECT], CMC_DO_REJECT);
    assert_int_equal(c->action[CLIPMOD_ACTION_QUARANTINE], CMC_DO_QUARANTINE);
    assert_int_equal(c->action[CLIPMOD_ACTION_FLAG], CMC_DO_ACCEPT);
    assert_string_equal(c->verdict_header, "X-Clipmod-Verdict");
    assert_string_equal(c->summary_header, "X-Clipmod-Summary");
    assert_true(c->limits.max_images > 0 && c->limits.max_message_bytes > 0);
    /* Images inside archives and documents are reported, not refused, by default. */
    assert_int_equal(c->archives_with_images, CMC_INSIDE_ACCEPT);
    assert_int_equal(c->documents_with_images, CMC_INSIDE_ACCEPT);
    assert_true(c->context); /* the mail's text is the images' context unless turned off */
    cmc_free(c);
    cmc_free(NULL);
}

static void config_every_key(void **state)
{
    const char *path = write_tmp("all.yaml", "socket: unix:/run/clipmod/milter.sock\n"
                                             "socket-mode: \"0660\"\n"
                                             "model: /m\n"
                                             "merges: /m/merges.txt\n"
                                             "policy: /p.yaml\n"
                                             "cache-dir: none\n"
                                             "workers: 3\n"
                                             "blas-threads: 2\n"
                                             "scan-wait-ms: 1000\n"
                                             "drain-timeout-ms: 2000\n"
                                             "log: {format: json, target: syslog, "
                                             "level: debug, facility: local3}\n"
                                             "limits:\n"
                                             "  max-message-bytes: 10M\n"
                                             "  max-parts: 99\n"
                                             "  max-depth: 7\n"
                                             "  max-images: 9\n"
                                             "  max-image-bytes: 512K\n"
                                             "engine: {max-pixels: 1000000, max-scan-ms: 500}\n"
                                             "plugins:\n"
                                             "  - {path: audit-log, config: \"path=/x\"}\n"
                                             "on-fail: reject\n"
                                             "on-fail-reply: \"554 5.7.0 Not scanned, 100%\"\n"
                                             "actions: {tag: accept, flag: quarantine, "
                                             "quarantine: reject, reject: discard}\n"
                                             "skip:\n"
                                             "  authenticated: true\n"
                                             "  senders: [Boss@Example.org, \"@partner.example\"]\n"
                                             "  recipients: [abuse@example.org]\n"
                                             "  domains: [trusted.example]\n"
                                             "headers: {verdict: X-Image-Verdict, summary: none}\n"
                                             "archives-with-images: reject\n"
                                             "documents-with-images: quarantine\n"
                                             "context: off\n");
    cmc_config *c = NULL;
    char *problems = NULL;
    assert_int_equal(cmc_load(path, &c, &problems), 0);
    if (problems)
        fail_msg("%s", problems);
    assert_string_equal(c->socket, "unix:/run/clipmod/milter.sock");
    assert_int_equal(c->socket_mode, 0660);
    assert_null(c->cache_dir);
    assert_true(c->no_cache);
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->blas_threads, 2);
    assert_int_equal(c->limits.max_message_bytes, 10 << 20);
    assert_int_equal(c->limits.max_image_bytes, 512 << 10);
    assert_int_equal(c->limits.max_depth, 7);
    assert_int_equal(c->n_settings, 2);
    assert_int_equal(c->n_plugins, 1);
    assert_string_equal(c->plugins[0].config, "path=/x");
    assert_int_equal(c->on_fail, CMC_FAIL_REJECT);
    assert_string_equal(c->on_fail_reply.rcode, "554");
    assert_string_equal(c->on_fail_reply.text, "Not scanned, 100%%"); /* libmilter's % */
    assert_int_equal(c->action[CLIPMOD_ACTION_FLAG], CMC_DO_QUARANTINE);
    assert_int_equal(c->action[CLIPMOD_ACTION_REJECT], CMC_DO_DISCARD);
    assert_true(c->skip_authenticated);
    assert_true(cmc_match_address(&c->skip_senders, "<boss@EXAMPLE.org>"));
    assert_true(cmc_match_address(&c->skip_senders, "anyone@partner.example"));
    assert_false(cmc_match_address(&c->skip_senders, "anyone@sub.partner.example"));
    assert_false(cmc_match_address(&c->skip_senders, "other@example.org"));
    assert_true(cmc_match_domain(&c->skip_domains, "a@trusted.example"));
    assert_true(cmc_match_domain(&c->skip_domains, "<a@mx.trusted.example>"));
    assert_false(cmc_match_domain(&c->skip_domains, "a@untrusted.example"));
    assert_false(cmc_match_domain(&c->skip_domains, "<>"));
    assert_string_equal(c->verdict_header, "X-Image-Verdict");
    assert_null(c->summary_header);
    assert_int_equal(c->archives_with_images, CMC_INSIDE_REJECT);
    assert_int_equal(c->documents_with_images, CMC_INSIDE_QUARANTINE);
    assert_false(c->context);
    assert_string_equal(c->log.format, "json");
    assert_string_equal(c->log.target, "syslog");
    assert_string_equal(c->log.level, "debug");
    assert_string_equal(c->log.facility, "local3");
    cmc_free(c);
}

/* on-flag: an argv list with an absolute program, a duration, a bound; refusals at positions. */
static void config_on_flag(void **state)
{
    cmc_config *c = NULL;
    char *problems = NULL;
    const char *path = write_tmp("hook.yaml", "model: /m\npolicy: /p\non-flag:\n"
                                              "  command: [/usr/local/bin/alert, \"$(x)\", -q]\n"
                                              "  timeout: 1500ms\n"
                                              "  max-running: 2\n");
    if (cmc_load(path, &c, &problems))
        fail_msg("%s", problems);
    assert_int_equal(c->on_flag.argc, 3);
    assert_string_equal(c->on_flag.argv[0], "/usr/local/bin/alert");
    assert_string_equal(c->on_flag.argv[1], "$(x)"); /* an argument, never shell text */
    assert_null(c->on_flag.argv[3]);
    assert_int_equal(c->on_flag.timeout_ms, 1500);
    assert_int_equal(c->on_flag.max_running, 2);
    cmc_free(c);
    path = write_tmp("hook.yaml", "model: /m\npolicy: /p\non-flag:\n"
                                  "  command: [alert]\n"
                                  "  max-runing: 2\n");
    assert_int_equal(cmc_load(path, &c, &problems), -1);
    assert_non_null(strstr(problems, "hook.yaml:4:12: on-flag.command must start with an "
                                     "absolute path, not 'alert'"));
    assert_non_null(strstr(problems, "hook.yaml:5:3: unknown key 'max-runing' in on-flag (did "
                                     "you mean 'max-running'?)"));
    free(problems);
    /* An empty list has no program (found by fuzz_milter_config: it read argv[0] of none). */
    path = write_tmp("hook.yaml", "model: /m\npolicy: /p\non-flag:\n  command: []\n");
    assert_int_equal(cmc_load(path, &c, &problems), -1);
    assert_non_null(strstr(problems, "hook.yaml:4:12: on-flag.command is empty"));
    free(problems);
    path = write_tmp("hook.yaml", "model: /m\npolicy: /p\non-flag:\n  command:\n");
    assert_int_equal(cmc_load(path, &c, &problems), -1);
    assert_non_null(strstr(problems, "on-flag.command is empty"));
    free(problems);
}

/* The log: block's defaults (facility mail), and the spellings before it still read. */
static void config_log_block_and_old_spellings(void **state)
{
    cmc_config *c = NULL;
    char *problems = NULL;
    const char *path = write_tmp("log.yaml", "model: /m\npolicy: /p\n");
    assert_int_equal(cmc_load(path, &c, &problems), 0);
    assert_string_equal(c->log.format, "logfmt");
    assert_string_equal(c->log.target, "stderr");
    assert_string_equal(c->log.level, "info");
    assert_string_equal(c->log.facility, "mail");
    cmc_free(c);
    path = write_tmp("old.yaml", "model: /m\npolicy: /p\nlog: syslog\nlog-facility: local2\n"
                                 "log-level: notice\n");
    assert_int_equal(cmc_load(path, &c, &problems), 0);
    assert_string_equal(c->log.target, "syslog");
    assert_string_equal(c->log.facility, "local2");
    assert_string_equal(c->log.level, "info"); /* notice: between warn and info */
    cmc_free(c);
    path = write_tmp("bad.yaml", "model: /m\npolicy: /p\nlog:\n  format: xml\n");
    assert_int_equal(cmc_load(path, &c, &problems), -1);
    assert_non_null(strstr(problems, "bad.yaml:4:11: log.format must be logfmt or json"));
    free(problems);
}

/* Byte limits take the size syntax of clipmod and clipmodd (src/common/size.h). */
static void config_sizes_as_the_other_programs(void **state)
{
    const char *path = write_tmp("s.yaml", "model: /m\npolicy: /p.yaml\n"
                                           "limits: {max-message-bytes: 25MiB, "
                                           "max-image-bytes: 1GB}\n");
    cmc_config *c = NULL;
    char *problems = NULL;
    if (cmc_load(path, &c, &problems) || problems)
        fail_msg("%s", problems ? problems : "cmc_load failed");
    assert_int_equal(c->limits.max_message_bytes, 25 << 20);
    assert_int_equal(c->limits.max_image_bytes, UINT64_C(1) << 30);
    cmc_free(c);
    path = write_tmp("s.yaml", "model: /m\npolicy: /p.yaml\nlimits: {max-message-bytes: 25X}\n");
    c = NULL;
    assert_int_not_equal(cmc_load(path, &c, &problems), 0);
    assert_non_null(problems);
    assert_non_null(strstr(problems, "s.yaml:3:29: limits.max-message-bytes: size '25X'"));
    assert_non_null(strstr(problems, "use k, M, G or T"));
    free(problems);
    /* Under the floor of 1 KiB: refused at the value. */
    path = write_tmp("s.yaml", "model: /m\npolicy: /p.yaml\nlimits: {max-message-bytes: 1000}\n");
    assert_int_not_equal(cmc_load(path, &c, &problems), 0);
    assert_non_null(
        strstr(problems, "s.yaml:3:29: limits.max-message-bytes must be at least 1024"));
    free(problems);
}

static void config_problems_have_positions(void **state)
{
    const char *path = write_tmp("bad.yaml", "model: /m\n"
                                             "polcy: /p.yaml\n"
                                             "workers: -1\n"
                                             "on-fail: accept\n"
                                             "on-fail-reply: \"250 ok\"\n"
                                             "limits: {max-images: 10X}\n"
                                             "actions: {reject: accept, smile: reject}\n"
                                             "engine: {max-file-bytes: 5, max-colour: 3}\n"
                                             "archives-with-images: maybe\n"
                                             "context: sometimes\n");
    cmc_config *c = NULL;
    char *problems = NULL;
    assert_int_not_equal(cmc_load(path, &c, &problems), 0);
    assert_null(c);
    assert_non_null(problems);
    const char *want[] = {
        "bad.yaml:2:1: unknown key 'polcy' in the configuration (did you mean 'policy'?)",
        "bad.yaml:3:10: workers must be",
        "bad.yaml:4:10: on-fail must be tempfail, reject or accept-with-header",
        "bad.yaml:6:22: limits.max-images must be",
        "bad.yaml:7:19: actions.reject must be",
        "bad.yaml:7:27: unknown key 'smile'",
        "bad.yaml:8:10: engine.max-file-bytes: use limits.max-image-bytes",
        "bad.yaml:8:29: unknown key 'max-colour' in engine",
        "bad.yaml:9:23: archives-with-images must be accept, quarantine, tempfail or reject",
        "bad.yaml:10:10: context must be true or false",
        "bad.yaml: policy is required",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(problems, want[i]))
            fail_msg("missing \"%s\" in:\n%s", want[i], problems);
    free(problems);

    path = write_tmp("syntax.yaml", "model: [unclosed\n");
    assert_int_not_equal(cmc_load(path, &c, &problems), 0);
    assert_non_null(strstr(problems, "syntax.yaml:"));
    free(problems);
    assert_int_not_equal(cmc_load("/nonexistent/m.yaml", &c, &problems), 0);
    assert_non_null(strstr(problems, "/nonexistent/m.yaml: "));
    free(problems);
}

static void smtp_replies(void **state)
{
    cmc_reply r;
    assert_int_equal(cmc_parse_reply("550 5.7.1 Image content not accepted", &r), 0);
    assert_string_equal(r.rcode, "550");
    assert_string_equal(r.xcode, "5.7.1");
    assert_string_equal(r.text, "Image content not accepted");
    assert_int_equal(cmc_parse_reply("451 Try later, 50% done", &r), 0);
    assert_string_equal(r.rcode, "451");
    assert_string_equal(r.xcode, "");
    assert_string_equal(r.text, "Try later, 50%% done");
    assert_int_equal(cmc_parse_reply("554", &r), 0);
    assert_string_equal(r.text, "");
    assert_int_equal(cmc_parse_reply("250 2.0.0 OK", &r), 0); /* parsed; the caller judges */
    assert_int_not_equal(cmc_parse_reply("55 x", &r), 0);
    assert_int_not_equal(cmc_parse_reply("5500 x", &r), 0);
    assert_int_not_equal(cmc_parse_reply("550 4.7.1 wrong class", &r), 0);
    assert_int_not_equal(cmc_parse_reply("550 bad\r\nline", &r), 0);
    assert_int_not_equal(cmc_parse_reply(NULL, &r), 0);
}

/* ------------------------------------------------------------------------ */
/* The text kept for the images' context (mailtext.h)                       */
/* ------------------------------------------------------------------------ */

static const cmm_limits context_limits = {.max_parts = 1000,
                                          .max_depth = 20,
                                          .max_images = 64,
                                          .max_image_bytes = 1 << 20,
                                          .max_text_bytes = 16384};

/* The context of image `part` in *w, compared with `want` (NULL: none). */
static void expect_context(const cmm_walk *w, const char *part, const char *want)
{
    const cmm_image *im = image_at(w, part);
    char *ctx;
    size_t len;
    assert_int_equal(cmm_text_context(&w->text, im->content_id, im->filename, &ctx, &len), 0);
    if (!want) {
        assert_null(ctx);
        return;
    }
    assert_non_null(ctx);
    assert_int_equal(strlen(ctx), len);
    assert_string_equal(ctx, want);
    free(ctx);
}

/* alt, file name, Subject, then the text/plain part; white space runs made one. */
static void context_of_clients_messages(void **state)
{
    cmm_walk w;
    (void)state;
    walk_fixture("applemail.eml", &context_limits, &w);
    assert_string_equal(w.text.subject, "Look at this");
    expect_context(&w, "2.2",
                   "IMG_0042.jpeg\nIMG_0042.jpeg\nLook at this\n"
                   "Look at this\xf0\x9f\x98\x80\nSent from my iPhone");
    cmm_walk_free(&w);
    /* Outlook: the <img> has no alt; the attachment is no <img> at all. */
    walk_fixture("outlook.eml", &context_limits, &w);
    expect_context(&w, "1.2",
                   "image001.png\nScan of the contract\nHello Ben,\n"
                   "Please find the scan attached.\nKind regards,\nCarla\n"
                   "[cid:image001.png@01DB34FC.AB12CD30]");
    assert_string_equal(image_at(&w, "1.2")->content_id, "image001.png@01DB34FC.AB12CD30");
    expect_context(&w, "2",
                   "Scan 2024-11-12.JPG\nScan of the contract\nHello Ben,\n"
                   "Please find the scan attached.\nKind regards,\nCarla\n"
                   "[cid:image001.png@01DB34FC.AB12CD30]");
    cmm_walk_free(&w);
    /* No context wanted: nothing kept. */
    walk_fixture("outlook.eml", &default_limits, &w);
    assert_null(w.text.subject);
    expect_context(&w, "1.2", NULL);
    cmm_walk_free(&w);
}

/* An HTML-only message in windows-1252 with an encoded Subject and a text attachment. */
static const char html_only[] =
    "From: x@example.org\nSubject: =?iso-8859-1?Q?Gr=FC=DFe?= from\n =?utf-8?B?w6k=?=\n"
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n"
    "--b\nContent-Type: text/plain; charset=us-ascii\n"
    "Content-Disposition: attachment; filename=\"notes.txt\"\n\nan attached file\n"
    "--b\nContent-Type: multipart/related; boundary=\"r\"\n\n"
    "--r\nContent-Type: text/html; charset=windows-1252\n"
    "Content-Transfer-Encoding: quoted-printable\n\n"
    "<html><head><title>T</title><style>p {}</style></head><body><p>Caf=E9 &amp; a =\n"
    "<b>pistol</b> =80 5</p><script>no()</script><img src=3D\"cid:pic@x\" alt=3D\"a =\n"
    "dagger\" title=3D\"=E9t=E9\"><img src=3D\"cid:other@x\" alt=3D\"other\"></body></html>\n"
    "--r\nContent-Type: image/png\nContent-ID: <pic@x>\nContent-Transfer-Encoding: base64\n\n"
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAHUlEQVR42mNkYGgQYGAgHrEwCDCQ\n"
    "BEY1jGoYOhoAHgoCnoxpJwYAAAAASUVORK5CYII=\n"
    "--r--\n--b--\n";

static void context_of_html_in_another_charset(void **state)
{
    cmm_walk w;
    (void)state;
    assert_int_equal(cmm_walk_message(html_only, sizeof html_only - 1, &context_limits, &w), 0);
    assert_false(w.failed);
    assert_null(w.text.plain); /* an attachment is not the message's text */
    expect_context(&w, "2.2",
                   "a dagger\n\xc3\xa9t\xc3\xa9\nGr\xc3\xbc\xc3\x9f"
                   "e from \xc3\xa9\nCaf\xc3\xa9 & a pistol \xe2\x82\xac 5");
    cmm_walk_free(&w);
}

/* A 10 MB body, NUL bytes, invalid UTF-8: the text kept stays within its cap. */
static void context_of_a_huge_hostile_body(void **state)
{
    static const char head[] = "From: x@example.org\nSubject: big\nMIME-Version: 1.0\n"
                               "Content-Type: multipart/mixed; boundary=\"b\"\n\n"
                               "--b\nContent-Type: text/plain; charset=utf-8\n\n";
    static const char tail[] =
        "\n--b\nContent-Type: image/png\n"
        "Content-Transfer-Encoding: base64\n\n"
        "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAHUlEQVR42mNkYGgQYGAgHrEwCDCQ\n"
        "BEY1jGoYOhoAHgoCnoxpJwYAAAAASUVORK5CYII=\n--b--\n";
    const cmm_limits lim = {.max_parts = 1000,
                            .max_depth = 20,
                            .max_images = 64,
                            .max_image_bytes = 1 << 20,
                            .max_text_bytes = 1000};
    size_t body = 10 << 20, n = sizeof head - 1 + body + sizeof tail - 1, len;
    char *msg = malloc(n), *ctx;
    cmm_walk w;
    (void)state;
    assert_non_null(msg);
    memcpy(msg, head, sizeof head - 1);
    for (size_t i = 0; i < body; i++)
        msg[sizeof head - 1 + i] = "a\0 \xff\n\xe2\x80\x8f"[i % 8];
    memcpy(msg + sizeof head - 1 + body, tail, sizeof tail - 1);
    assert_int_equal(cmm_walk_message(msg, n, &lim, &w), 0);
    assert_false(w.failed);
    assert_true(w.text.plain_len <= 1000);
    assert_int_equal(cmm_text_context(&w.text, NULL, NULL, &ctx, &len), 0);
    assert_non_null(ctx);
    assert_true(len <= 1000 && len > 900);
    /* White space and NUL runs one space (or line end); other bytes for the library. */
    assert_memory_equal(ctx,
                        "big\na \xff\n\xe2\x80\x8f"
                        "a \xff\n",
                        15);
    assert_null(memchr(ctx, 0, len));
    free(ctx);
    cmm_walk_free(&w);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thunderbird_inline_and_attached),
        cmocka_unit_test(thunderbird_with_crlf_line_ends),
        cmocka_unit_test(outlook_related_and_octet_stream_by_name),
        cmocka_unit_test(applemail_sniffed_and_rfc2231_names),
        cmocka_unit_test(nested_rfc822_twice),
        cmocka_unit_test(nesting_deeper_than_the_limit_fails),
        cmocka_unit_test(data_uris_and_quoted_printable),
        cmocka_unit_test(uuencoded_single_part),
        cmocka_unit_test(obfuscated_images_are_found),
        cmocka_unit_test(uuencoded_blocks_truncated_and_too_large),
        cmocka_unit_test(html_references_decode_as_python_does),
        cmocka_unit_test(images_inside_archives_and_pdfs_are_counted),
        cmocka_unit_test(damaged_zips_are_unreadable),
        cmocka_unit_test(broken_encodings),
        cmocka_unit_test(empty_attachments),
        cmocka_unit_test(truncated_base64),
        cmocka_unit_test(text_pdf_and_zip_are_not_images),
        cmocka_unit_test(message_partial_cannot_be_judged),
        cmocka_unit_test(empty_and_headerless_input),
        cmocka_unit_test(too_many_parts),
        cmocka_unit_test(too_many_images),
        cmocka_unit_test(image_over_the_byte_limit),
        cmocka_unit_test(deep_nesting_bomb),
        cmocka_unit_test(part_bomb_is_refused_before_parsing),
        cmocka_unit_test(nesting_bomb_is_refused_before_parsing),
        cmocka_unit_test(nested_messages_are_refused_before_parsing),
        cmocka_unit_test(conflicting_content_types_are_refused),
        cmocka_unit_test(prescan_agrees_with_the_walk),
        cmocka_unit_test(prescan_bounds_the_walk_when_gmime_loses_a_header),
        cmocka_unit_test(context_of_clients_messages),
        cmocka_unit_test(context_of_html_in_another_charset),
        cmocka_unit_test(context_of_a_huge_hostile_body),
        cmocka_unit_test_setup_teardown(config_defaults_and_relative_paths, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(config_every_key, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(config_on_flag, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(config_log_block_and_old_spellings, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(config_sizes_as_the_other_programs, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(config_problems_have_positions, setup_tmp, teardown_tmp),
        cmocka_unit_test(smtp_replies),
    };
    int rc;
    cmm_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    cmm_shutdown();
    return rc;
}
