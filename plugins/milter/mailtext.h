/*
 * mailtext.h - the text that comes with each image of a mail, for context-aware
 * moderation (clipmod-policy(5) CONTEXT, clipmod-milter(8) CONTEXT).
 *
 * Owns what of a message's text is kept while the MIME walk (mime.c) passes it, and
 * how one image's context is put together from it. Kept, each under a cap so that a
 * 10 MB body costs a pass and no big copy: the Subject (decoded by GMime), the text
 * of the first inline text/plain part with any text, the text of the first inline
 * text/html part with any (html_text.h), and the alt and title of the <img> elements
 * that show attached images by cid:. A part in another charset than UTF-8 is
 * converted to UTF-8 by GMime (only the bytes that can be kept are read). An image's
 * context is, most specific first so that the library's caps keep it: the alt and
 * title of the <img> that shows it, its file name, the Subject, then the message's
 * text (its text/plain, or the HTML's text when there is none), one per line, at
 * most `max` bytes in all (the engine's max-context-bytes: it reads no more).
 */
#ifndef CLIPMOD_MILTER_MAILTEXT_H
#define CLIPMOD_MILTER_MAILTEXT_H

#include <stddef.h>

#include "html_text.h"

/* Bytes of one text/html part read for its text and images (the rest is not read). */
#define CMM_HTML_READ (1u << 20)
/* HTML parts read for images, and the cid: images kept of them all. */
#define CMM_HTML_PARTS 8
#define CMM_HTML_IMGS  256
/* Bytes kept of an alt or title. */
#define CMM_ATTR_MAX 1024

typedef struct cmm_text {
    size_t max;    /* bytes kept of each text, and of an image's context; 0: none kept */
    char *subject; /* UTF-8, or NULL */
    char *plain;   /* the first text/plain part's text, or NULL */
    size_t plain_len;
    char *html; /* the first text/html part's text, or NULL */
    size_t html_len;
    cmh_img *imgs; /* <img src="cid:..."> of the HTML parts read */
    size_t n_imgs, cap_imgs;
    size_t n_html; /* HTML parts read */
} cmm_text;

/* Start empty, keeping up to `max` bytes of each text (0: keep nothing). */
void cmm_text_init(cmm_text *t, size_t max);

/* Keep the message's Subject (UTF-8, as GMime decoded it). 0, or -1 out of memory. */
int cmm_text_subject(cmm_text *t, const char *subject);

/*
 * An inline text part the walk decoded: `len` bytes at `data` in `charset` (NULL:
 * unknown, read as UTF-8), HTML when `html`. 0, or -1 when out of memory.
 */
int cmm_text_part(cmm_text *t, const char *charset, int html, const unsigned char *data,
                  size_t len);

/*
 * The context of the image whose Content-ID is `content_id` and file name `filename`
 * (either may be NULL): a new string (*out, free()) of *len bytes, or *out NULL when
 * there is no text at all or nothing is kept. 0, or -1 when out of memory.
 */
int cmm_text_context(const cmm_text *t, const char *content_id, const char *filename, char **out,
                     size_t *len);

/* Free what the text holds; *t is empty (as after cmm_text_init with max 0). */
void cmm_text_free(cmm_text *t);

#endif /* CLIPMOD_MILTER_MAILTEXT_H */
