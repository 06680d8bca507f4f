/*
 * html_text.h - what a mail client shows of an HTML part, for the context of images.
 *
 * Owns a small reader of untrusted HTML (a mail's text/html part, as received): the
 * text a reader sees (tags stripped, comments and the content of script, style and
 * title dropped, character references decoded with htmlent.h's rules, runs of white
 * space made one space, a line break where a block element starts or ends), and the
 * alt and title of every <img> that shows an image attached to the message
 * (src="cid:..."). It is linear in its input, never recurses, and keeps at most the
 * bytes and images its limits say whatever the input: a 10 MB part or a tag soup
 * costs a pass over it and no more memory than the limits. Bytes are copied as they
 * are (the input is assumed ASCII-compatible, converted to UTF-8 by the caller;
 * invalid UTF-8 is left for the library to clean), except NUL bytes, which are
 * dropped. Nothing here knows mail or clipmod: tested alone (test_milter_html.c) and
 * fuzzed (fuzz_milter_html.c).
 */
#ifndef CLIPMOD_MILTER_HTML_TEXT_H
#define CLIPMOD_MILTER_HTML_TEXT_H

#include <stddef.h>

/* An <img> whose src is a cid: URL (RFC 2392): what it says of the attached image. */
typedef struct cmh_img {
    char *cid;   /* the Content-ID it names, percent-decoded, without "cid:" */
    char *alt;   /* its alt attribute (decoded, white space collapsed), or NULL */
    char *title; /* its title attribute, or NULL */
} cmh_img;

typedef struct cmh_limits {
    size_t max_text; /* bytes of text kept; the rest is cut (at a UTF-8 boundary) */
    size_t max_imgs; /* cid: images kept, in document order */
    size_t max_attr; /* bytes kept of one attribute value */
} cmh_limits;

typedef struct cmh_doc {
    char *text; /* the text, NUL-terminated; "" when none (never NULL after success) */
    size_t len;
    int cut; /* text was left out by max_text */
    cmh_img *imgs;
    size_t n_imgs;
} cmh_doc;

/*
 * Read the `n` bytes of HTML at `html` into *out (free with cmh_doc_free whatever
 * the result). Returns 0, or -1 when memory ran out.
 */
int cmh_read(const unsigned char *html, size_t n, const cmh_limits *lim, cmh_doc *out);

/* Free what cmh_read() filled and zero it. Accepts NULL. */
void cmh_doc_free(cmh_doc *d);

#endif /* CLIPMOD_MILTER_HTML_TEXT_H */
