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
#include "html_entities.h" /* src/common: the tokenizer's table too */
#include "htmlent.h"

static int entity_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const cm_html_entity *)elem)->name);
}

static const cm_html_entity *entity_find(const char *name)
{
    return bsearch(name, cm_html5_entities, CM_HTML5_ENTITY_COUNT, sizeof cm_html5_entities[0],
                   entity_cmp);
}

static int charref_cmp(const void *key, const void *elem)
{
    uint32_t k = *(const uint32_t *)key, e = ((const cm_html_charref *)elem)->from;
    return k < e ? -1 : k > e;
}

static int u32_cmp(const void *key, const void *elem)
{
    uint32_t k = *(const uint32_t *)key, e = *(const uint32_t *)elem;
    return k < e ? -1 : k > e;
}

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

/* The code point a numeric reference to `num` (saturated at 0x110000) stands for; 0: none. */
static uint32_t numeric(uint32_t num)
{
    const size_t n_fix = sizeof cm_html_invalid_charrefs / sizeof cm_html_invalid_charrefs[0];
    const size_t n_drop = sizeof cm_html_invalid_codepoints / sizeof cm_html_invalid_codepoints[0];
    const cm_html_charref *r = bsearch(&num, cm_html_invalid_charrefs, n_fix,
                                       sizeof cm_html_invalid_charrefs[0], charref_cmp);
    if (r)
        return r->to;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff)
        return 0xfffd;
    if (bsearch(&num, cm_html_invalid_codepoints, n_drop, sizeof(uint32_t), u32_cmp))
        return 0;
    return num;
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
 * "&name" at in[i]: the entity and how many bytes after the '&' it takes (the whole
 * name with its ';', or the longest legacy prefix), or NULL.
 */
static const cm_html_entity *named_ref(const unsigned char *in, size_t n, size_t i, size_t *used)
{
    char name[CM_HTML5_ENTITY_MAXLEN + 2];
    size_t j = i + 1, e = j, x;
    const cm_html_entity *hit;

    while (e < n && e - j < 32 && name_char(in[e]))
        e++;
    if (e == j)
        return NULL;
    if (e < n && in[e] == ';')
        e++;
    /* Only an ASCII prefix can name an entity. */
    for (x = 0; j + x < e && in[j + x] < 0x80 && in[j + x] != 0; x++)
        name[x] = (char)in[j + x];
    name[x] = '\0';
    hit = j + x == e ? entity_find(name) : NULL;
    if (hit) {
        *used = e - j;
        return hit;
    }
    if (x > e - j - 1)
        x = e - j - 1;
    for (; x >= 2; x--) {
        name[x] = '\0';
        hit = entity_find(name);
        if (hit) {
            *used = x;
            return hit;
        }
    }
    return NULL;
}

size_t cmm_html_ref(const unsigned char *in, size_t n, size_t i, uint32_t cp[2])
{
    const cm_html_entity *hit;
    size_t used, e;
    uint32_t num;

    cp[0] = cp[1] = 0;
    if (i >= n || in[i] != '&')
        return 0;
    if (i + 1 < n && in[i + 1] == '#') {
        e = numeric_ref(in, n, i, &num);
        if (e == i)
            return 0;
        cp[0] = numeric(num);
        return e - i;
    }
    hit = named_ref(in, n, i, &used);
    if (!hit)
        return 0;
    cp[0] = hit->cp[0];
    cp[1] = hit->cp[1];
    return 1 + used;
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
