/*
 * test_milter_html.c - clipmod-milter's HTML reader (plugins/milter/html_text.c): the
 * text a mail client shows of an HTML part and the alt and title of the <img>
 * elements that show attached images (src="cid:..."), the context its images get.
 *
 * Covers what a mail's HTML holds: entities (named, decimal, hex, legacy without
 * ';'), script, style and title content dropped, comments and declarations, block
 * elements as line ends, attributes quoted three ways and holding '>', repeated
 * attributes, percent-encoded cids; and what hostile HTML holds: tags never closed,
 * comments never closed, NUL bytes, the caps on text, images and attribute values
 * (never half a UTF-8 character), a megabyte of markup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "html_text.h"

static const cmh_limits lim = {.max_text = 4096, .max_imgs = 16, .max_attr = 256};

/* Read `html` with limits `l` into *d (asserting success). */
static void read_with(const char *html, size_t n, const cmh_limits *l, cmh_doc *d)
{
    assert_int_equal(cmh_read((const unsigned char *)html, n, l, d), 0);
    assert_non_null(d->text);
    assert_int_equal(strlen(d->text), d->len);
}

static void read_html(const char *html, cmh_doc *d)
{
    read_with(html, strlen(html), &lim, d);
}

/* The text of `html`, compared with `want`. */
static void expect_text(const char *html, const char *want)
{
    cmh_doc d;
    read_html(html, &d);
    assert_string_equal(d.text, want);
    assert_false(d.cut);
    cmh_doc_free(&d);
}

static void text_and_tags(void **state)
{
    (void)state;
    expect_text("", "");
    expect_text("plain words", "plain words");
    expect_text("<html><body><p>Hello <b>there</b>,</p><p>friend</p></body></html>",
                "Hello there,\nfriend");
    expect_text("a<br>b<br/>c<BR >d", "a\nb\nc\nd");
    expect_text("<div>one</div><div>two</div>", "one\ntwo");
    expect_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc");
    expect_text("  lots   of\n\n\t white\r\nspace  ", "lots of white space");
    expect_text("x < y and y > z", "x < y and y > z");
    expect_text("1<2", "1<2");
    expect_text("in<span>line</span>word", "inlineword");
}

static void hidden_content_dropped(void **state)
{
    (void)state;
    expect_text("<head><title>The title</title><style>p{color:red}</style></head>text", "text");
    expect_text("a<script>var s = '<p>not text</p>'; if (a < b) x();</script>b", "ab");
    expect_text("a<SCRIPT type=x>hidden</scriptx></ScRiPt >b", "ab");
    expect_text("a<style>x</style>b<style>y", "ab");
    expect_text("a<!-- a comment <p>with tags</p> -->b", "ab");
    expect_text("a<!---->b<!-->c", "abc");
    expect_text("<!DOCTYPE html><?xml version=\"1.0\"?>a</ >b", "ab");
    expect_text("a<!-- never closed <p>x</p>", "a");
}

static void entities(void **state)
{
    (void)state;
    expect_text("&amp; &lt;b&gt; &quot;q&quot; &apos;a&apos;", "& <b> \"q\" 'a'");
    expect_text("a&nbsp;&nbsp;b", "a b");
    expect_text("&#112;&#x69;&#X73;tol", "pistol");
    expect_text("caf&eacute; &euro; &#128; &hellip;", "caf\xc3\xa9 \xe2\x82\xac \xe2\x82\xac "
                                                      "\xe2\x80\xa6");
    expect_text("&ampx &copy2024 &notanentity; & alone &", "&x \xc2\xa9"
                                                           "2024 \xc2\xac"
                                                           "anentity; & alone &");
    expect_text("&#0;&#xD800;x&#1114112;", "\xef\xbf\xbd\xef\xbf\xbdx\xef\xbf\xbd");
    expect_text("a&#10;b&#32;c", "a b c");
}

static void cid_images(void **state)
{
    cmh_doc d;
    (void)state;
    read_html("<p>Look:</p><img src=\"cid:part1.abc@example\" alt=\"a pistol\" "
              "title='my &amp; yours'><img src=http://example.org/x.png alt=remote>"
              "<IMG SRC = 'CID:second%40host' ALT=dagger><img alt=\"no src\">"
              "<img src=\"cid:third\" alt=\"first\" alt=\"second\" title=\"a > b\">",
              &d);
    assert_string_equal(d.text, "Look:");
    assert_int_equal(d.n_imgs, 3);
    assert_string_equal(d.imgs[0].cid, "part1.abc@example");
    assert_string_equal(d.imgs[0].alt, "a pistol");
    assert_string_equal(d.imgs[0].title, "my & yours");
    assert_string_equal(d.imgs[1].cid, "second@host");
    assert_string_equal(d.imgs[1].alt, "dagger");
    assert_null(d.imgs[1].title);
    assert_string_equal(d.imgs[2].cid, "third");
    assert_string_equal(d.imgs[2].alt, "first"); /* the first of a repeated attribute */
    assert_string_equal(d.imgs[2].title, "a > b");
    cmh_doc_free(&d);

    /* An <img> whose tag the input cuts is nothing a client shows. */
    read_html("text <img src=\"cid:x\" alt=\"cut", &d);
    assert_string_equal(d.text, "text");
    assert_int_equal(d.n_imgs, 0);
    cmh_doc_free(&d);
    /* Images in a hidden element are not shown either. */
    read_html("<script><img src=cid:y alt=z></script><img src=cid:w alt=' spaced   out '>", &d);
    assert_int_equal(d.n_imgs, 1);
    assert_string_equal(d.imgs[0].cid, "w");
    assert_string_equal(d.imgs[0].alt, "spaced out");
    cmh_doc_free(&d);
}

static void nul_bytes_and_invalid_utf8(void **state)
{
    static const char html[] = "pis\0tol <img src=\"cid:a\0b\" alt=\"x\0y\"> \xff\xfe ok";
    cmh_doc d;
    (void)state;
    read_with(html, sizeof html - 1, &lim, &d);
    assert_string_equal(d.text, "pistol \xff\xfe ok");
    assert_int_equal(d.n_imgs, 1);
    assert_string_equal(d.imgs[0].cid, "ab");
    assert_string_equal(d.imgs[0].alt, "xy");
    cmh_doc_free(&d);
}

static void caps(void **state)
{
    const cmh_limits small = {.max_text = 10, .max_imgs = 2, .max_attr = 5};
    cmh_doc d;
    (void)state;
    read_with("hello world and more", 20, &small, &d);
    assert_string_equal(d.text, "hello worl");
    assert_true(d.cut);
    cmh_doc_free(&d);
    /* Never half a character: the 10th byte would be the first of a 2-byte e-acute. */
    read_with("abcde caf\xc3\xa9s", 12, &small, &d);
    assert_string_equal(d.text, "abcde caf");
    assert_true(d.cut);
    cmh_doc_free(&d);
    read_with("12345678\xc3\xa9", 10, &small, &d);
    assert_string_equal(d.text, "12345678\xc3\xa9");
    assert_false(d.cut);
    cmh_doc_free(&d);
    /* Images after the text is cut are still found, up to max_imgs; attributes capped. */
    read_html("", &d);
    cmh_doc_free(&d);
    {
        const char *h = "long long long text <img src=cid:1 alt=abcdefgh> "
                        "<img src=cid:2 alt='\xc3\xa9\xc3\xa9\xc3\xa9'> <img src=cid:3>";
        read_with(h, strlen(h), &small, &d);
    }
    assert_true(d.cut);
    assert_int_equal(d.n_imgs, 2);
    assert_string_equal(d.imgs[0].alt, "abcde");
    assert_string_equal(d.imgs[1].alt, "\xc3\xa9\xc3\xa9");
    cmh_doc_free(&d);
}

/* A megabyte of hostile markup: unclosed tags and quotes, deep nesting, many images. */
static void hostile_markup(void **state)
{
    size_t n = 1 << 20, k = 0;
    char *h = malloc(n + 1);
    cmh_doc d;
    (void)state;
    assert_non_null(h);
    while (k + 40 < n) {
        static const char *const bits[] = {
            "<div>", "<img src=cid:x alt=y>", "w ", "<b", "&#x", "<!-", "</", "<p title=\"a>b\">"};
        const char *b = bits[(k / 7) % 8];
        memcpy(h + k, b, strlen(b));
        k += strlen(b);
    }
    h[k] = 0;
    read_with(h, k, &lim, &d);
    assert_true(d.len <= lim.max_text);
    assert_true(d.n_imgs <= lim.max_imgs);
    cmh_doc_free(&d);
    /* An attribute quote never closed swallows the rest, as in a browser. */
    memset(h, 'a', n);
    memcpy(h, "x <p title=\"", 12);
    read_with(h, n, &lim, &d);
    assert_string_equal(d.text, "x");
    cmh_doc_free(&d);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_and_tags),
        cmocka_unit_test(hidden_content_dropped),
        cmocka_unit_test(entities),
        cmocka_unit_test(cid_images),
        cmocka_unit_test(nul_bytes_and_invalid_utf8),
        cmocka_unit_test(caps),
        cmocka_unit_test(hostile_markup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
