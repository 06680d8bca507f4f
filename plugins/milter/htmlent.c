/*
 * htmlent.c - HTML character references and URL white space (see htmlent.h).
 *
 * The reference pattern is Python's html.unescape():
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * numeric references map through the HTML5 replacement table (&#128; is the euro
 * sign, surrogates and numbers past U+10FFFF become U+FFFD, a few control code
 * points are dropped), named ones are looked up whole, then by their longest
 * prefix (the legacy names without ';', "&ampx" is "&x"). A reference is never
 * shorter than 2/3 of its UTF-8 replacement, so the output fits in 2 * n + 1 bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "html_ref.h" /* src/common: shared with the tokenizer */
#include "htmlent.h"

/* Append code point `c` as UTF-8; tab, CR and LF are dropped as a URL parser does. */
static size_t put_utf8(unsigned char *o, size_t m, uint32_t c)
{
    if (c == '\t' || c == '\r' || c == '\n')
        return m;
    if (c < 0x80) {
        o[m++] = (unsigned char)c;
    } else if (c < 0x800) {
        o[m++] = (unsigned char)(0xc0 | c >> 6);
        o[m++] = (unsigned char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        o[m++] = (unsigned char)(0xe0 | c >> 12);
        o[m++] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
        o[m++] = (unsigned char)(0x80 | (c & 0x3f));
    } else {
        o[m++] = (unsigned char)(0xf0 | c >> 18);
        o[m++] = (unsigned char)(0x80 | (c >> 12 & 0x3f));
        o[m++] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
        o[m++] = (unsigned char)(0x80 | (c & 0x3f));
    }
    return m;
}

/* "&#..." at in[i] (in[i+1] == '#'): the end of the reference, or i when it is none. */
static size_t numeric_ref(const unsigned char *in, size_t n, size_t i, uint32_t *num)
{
    size_t k = i + 2, e;
    int hex = k < n && (in[k] == 'x' || in[k] == 'X');
    if (hex)
        k++;
    *num = 0;
    for (e = k; e < n && cm_hex_digit(in[e]) >= 0 && (hex || in[e] <= '9'); e++) {
        *num = *num * (hex ? 16u : 10u) + (uint32_t)cm_hex_digit(in[e]);
        if (*num > 0x110000)
            *num = 0x110000; /* anything past U+10FFFF maps alike */
    }
    if (e == k)
        return i;
    return e < n && in[e] == ';' ? e + 1 : e;
}

static int name_char(unsigned char c)
{
    return !(c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
             c == ';');
}

/*
 * "&name" at in[i]: how many bytes after the '&' its entity takes (the whole name
 * with its ';', or the longest legacy prefix; cm_html_named), cp[] its code points;
 * 0 when it is none.
 */
static size_t named_ref(const unsigned char *in, size_t n, size_t i, uint32_t cp[2])
{
    char name[CM_HTML_NAME_MAX + 2];
    size_t j = i + 1, e = j, x;

    while (e < n && e - j < 32 && name_char(in[e]))
        e++;
    if (e == j)
        return 0;
    if (e < n && in[e] == ';')
        e++;
    for (x = 0; j + x < e && in[j + x] < 0x80 && in[j + x] != 0; x++)
        name[x] = (char)in[j + x];
    return cm_html_named(name, x, e - j, cp);
}

size_t cmm_html_ref(const unsigned char *in, size_t n, size_t i, uint32_t cp[2])
{
    size_t used, e;
    uint32_t num;

    cp[0] = cp[1] = 0;
    if (i >= n || in[i] != '&')
        return 0;
    if (i + 1 < n && in[i + 1] == '#') {
        e = numeric_ref(in, n, i, &num);
        if (e == i)
            return 0;
        cp[0] = cm_html_numeric(num);
        return e - i;
    }
    used = named_ref(in, n, i, cp);
    return used ? 1 + used : 0;
}

unsigned char *cmm_html_decode(const unsigned char *in, size_t n, size_t *out_len)
{
    unsigned char *o = malloc(2 * n + 1);
    size_t i = 0, m = 0;

    if (!o)
        return NULL;
    while (i < n) {
        uint32_t cp[2];
        size_t used = in[i] == '&' ? cmm_html_ref(in, n, i, cp) : 0;

        if (used) {
            for (int k = 0; k < 2; k++)
                if (cp[k])
                    m = put_utf8(o, m, cp[k]);
            i += used;
        } else {
            if (in[i] != '\t' && in[i] != '\r' && in[i] != '\n')
                o[m++] = in[i];
            i++;
        }
    }
    o[m] = 0;
    *out_len = m;
    return o;
}
