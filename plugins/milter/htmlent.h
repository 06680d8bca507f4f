/*
 * htmlent.h - HTML text as a mail client's renderer reads it, for finding data: URIs.
 *
 * Owns the decoding of HTML character references (numeric, decimal and hex, and
 * every HTML5 named reference, with and without ';' as HTML allows for the legacy
 * names) into UTF-8, with the rules of Python's html.unescape() (the tables are
 * src/common/html_entities.h, shared with the tokenizer), and the removal of the tab,
 * CR and LF characters a URL parser drops. Without it `data&colon;image/png`,
 * `&#100;ata:` or `data:image/png;base64,iVBOR&#x77;0KG...` hide an image that
 * every client shows.
 */
#ifndef CLIPMOD_MILTER_HTMLENT_H
#define CLIPMOD_MILTER_HTMLENT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Decode the `n` bytes at `in`: character references decoded (UTF-8), tab, CR and
 * LF dropped, everything else copied. Returns a malloc'ed buffer (NUL-terminated,
 * its length in *out_len, never more than 2 * n + 1 bytes), or NULL when out of
 * memory.
 */
unsigned char *cmm_html_decode(const unsigned char *in, size_t n, size_t *out_len);

/*
 * The character reference at in[i] (in[i] == '&', the text ending at in[n]) by the
 * same rules: its code points into cp[0] and cp[1] (0 for none: a reference to a code
 * point HTML drops stands for nothing), and the bytes it takes, or 0 when in[i]
 * starts no reference. For html_text.c, which decodes text without dropping its
 * line ends.
 */
size_t cmm_html_ref(const unsigned char *in, size_t n, size_t i, uint32_t cp[2]);

#endif /* CLIPMOD_MILTER_HTMLENT_H */
