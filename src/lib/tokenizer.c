/*
 * tokenizer.c - CLIP's tokenizer, exact to OpenAI's simple_tokenizer.py.
 *
 * Owns everything between a UTF-8 prompt and its token ids: the text cleaning that
 * replaces ftfy ("ftfy-lite": NFC, uncurled quotes, Python's html.unescape twice,
 * strip, whitespace collapsing, Python's str.lower()), the pre-tokenizing split
 * that the `regex` module does in Python, and byte-level BPE over a merges file.
 * Every step is written against the Python behaviour it replaces; the comments say
 * which Python rule each branch reproduces. Text is processed as arrays of code
 * points; BPE runs on integer symbol ids with a (left, right) -> rank hash table and
 * a heap, so a word of n bytes costs O(n log n) instead of Python's O(n^2).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>
#include <zlib.h>

#include "common.h"
#include "hex.h"
#include "html_ref.h"
#include "tokenizer.h"

/* ------------------------------------------------------------------------------ */
/* The tokenizer object                                                            */
/* ------------------------------------------------------------------------------ */

/* One merge rule: the pair (left id, right id) merges at `rank` into `merged`. */
typedef struct pair_slot {
    uint64_t key; /* left << 32 | right */
    int32_t rank; /* -1: empty slot */
    int32_t merged;
} pair_slot;

struct cm_tokenizer {
    int32_t sot;
    int32_t eot;
    int32_t byte_id[256];   /* id of the symbol for byte b inside a word */
    int32_t byte_id_w[256]; /* id of the same symbol + "</w>" (last of a word) */
    pair_slot *pairs;
    size_t pair_mask;
};

/* Largest merges count accepted: ids must fit int32 and a bad argument should
 * not make us read gigabytes. */
#define MAX_MERGES ((size_t)1 << 24)

static uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser: ids are small and dense, so they need scrambling. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static const pair_slot *pair_find(const cm_tokenizer *tok, int32_t left, int32_t right)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = (size_t)mix64(key) & tok->pair_mask;
    for (;;) {
        const pair_slot *s = &tok->pairs[i];
        if (s->rank < 0)
            return NULL;
        if (s->key == key)
            return s;
        i = (i + 1) & tok->pair_mask;
    }
}

int32_t cm_tokenizer_sot(const cm_tokenizer *tok)
{
    return tok ? tok->sot : -1;
}

int32_t cm_tokenizer_eot(const cm_tokenizer *tok)
{
    return tok ? tok->eot : -1;
}

void cm_tokenizer_free(cm_tokenizer *tok)
{
    if (!tok)
        return;
    cm_free(tok->pairs);
    cm_free(tok);
}

/* ------------------------------------------------------------------------------ */
/* UTF-8                                                                           */
/* ------------------------------------------------------------------------------ */

/*
 * Strict UTF-8 decoding (no overlongs, surrogates or values above U+10FFFF), the
 * same set Python's bytes.decode("utf-8") accepts. Returns the byte length of the
 * sequence at s[0..len) and stores the code point, or 0 if it is invalid.
 */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        if (len < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        *cp = (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (len < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
            return 0;
        *cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (len < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        *cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
              (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

/* Index of the first invalid byte, or len if s[0..len) is valid UTF-8. */
static size_t utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0;
    uint32_t cp;
    while (i < len) {
        size_t k = utf8_next(s + i, len - i, &cp);
        if (!k)
            return i;
        i += k;
    }
    return len;
}

static size_t utf8_put(unsigned char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (unsigned char)(0xC0 | c >> 6);
        o[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | c >> 12);
        o[1] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | c >> 18);
    o[1] = (unsigned char)(0x80 | (c >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (c >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------------------ */
/* Unicode properties, as Python sees them                                         */
/* ------------------------------------------------------------------------------ */

/*
 * Code points assigned in Unicode 15.0 (utf8proc 2.8) but not in Unicode 14.0, the
 * version of Python 3.11's unicodedata and str methods. For NFC and for the
 * Cased/Case_Ignorable properties behind str.lower()'s final-sigma rule, Python
 * treats them as unassigned, so we do too. (The split uses Python's `regex`
 * module, which already has Unicode 15 tables, so it uses utf8proc directly.)
 * Derived by comparing unicodedata.category() with utf8proc_category() over all
 * code points; drop the table when the reference Python moves to Unicode 15.
 */
static const uint32_t unicode15_new[][2] = {
    {0x0CF3, 0x0CF3},   {0x0ECE, 0x0ECE},   {0x10EFD, 0x10EFF}, {0x1123F, 0x11241},
    {0x11B00, 0x11B09}, {0x11F00, 0x11F10}, {0x11F12, 0x11F3A}, {0x11F3E, 0x11F59},
    {0x1342F, 0x1342F}, {0x13439, 0x13455}, {0x1B132, 0x1B132}, {0x1B155, 0x1B155},
    {0x1D2C0, 0x1D2D3}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E08F, 0x1E08F},
    {0x1E4D0, 0x1E4F9}, {0x1F6DC, 0x1F6DC}, {0x1F774, 0x1F776}, {0x1F77B, 0x1F77F},
    {0x1F7D9, 0x1F7D9}, {0x1FA75, 0x1FA77}, {0x1FA87, 0x1FA88}, {0x1FAAD, 0x1FAAF},
    {0x1FABB, 0x1FABD}, {0x1FABF, 0x1FABF}, {0x1FACE, 0x1FACF}, {0x1FADA, 0x1FADB},
    {0x1FAE8, 0x1FAE8}, {0x1FAF7, 0x1FAF8}, {0x2B739, 0x2B739}, {0x31350, 0x323AF},
};

static int is_unicode15_new(uint32_t c)
{
    size_t lo = 0, hi = sizeof unicode15_new / sizeof unicode15_new[0];
    if (c < 0x0CF3)
        return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < unicode15_new[mid][0])
            hi = mid;
        else if (c > unicode15_new[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* Python's str.isspace(): White_Space plus U+001C..U+001F (bidi class B/S). */
static int py_isspace(uint32_t c)
{
    if (c <= 0x20)
        return (c >= 0x09 && c <= 0x0D) || c >= 0x1C;
    if (c < 0x85)
        return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The `regex` module's \s: Unicode White_Space, i.e. isspace() minus U+001C..1F. */
static int regex_isspace(uint32_t c)
{
    return py_isspace(c) && !(c >= 0x1C && c <= 0x1F);
}

/*
 * Case_Ignorable (DerivedCoreProperties): Mn, Me, Cf, Lm, Sk, and Word_Break
 * MidLetter / MidNumLet / Single_Quote. Only used by the final-sigma rule.
 */
static int case_ignorable(uint32_t c)
{
    /* Word_Break MidLetter, MidNumLet and Single_Quote. */
    static const uint32_t mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                   0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                   0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
        if (c == mid[i])
            return 1;
    if (is_unicode15_new(c))
        return 0;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return 1;
    default:
        return 0;
    }
}

/*
 * Cased = Lowercase or Uppercase or Lt. Every such code point is a cased letter or
 * has a case mapping, except the Other_Lowercase/Other_Uppercase symbols listed
 * here (ordinal indicators, squared/negative Latin capitals). Exact for the code
 * points where Python consults it: those that are not Case_Ignorable.
 */
static int cased(uint32_t c)
{
    utf8proc_category_t cat;
    if (is_unicode15_new(c))
        return 0;
    cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT)
        return 1;
    if (utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
        utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c)
        return 1;
    return c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) ||
           (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
}

/* ------------------------------------------------------------------------------ */
/* Text cleaning                                                                   */
/* ------------------------------------------------------------------------------ */

/* A growable array of code points. */
typedef struct cps {
    uint32_t *v;
    size_t n;
    size_t cap;
} cps;

static int cps_reserve(cps *a, size_t cap)
{
    uint32_t *v;
    if (cap <= a->cap)
        return 0;
    if (cap > SIZE_MAX / sizeof *v)
        return -1;
    v = cm_realloc(a->v, cap * sizeof *v);
    if (!v)
        return -1;
    a->v = v;
    a->cap = cap;
    return 0;
}

/*
 * Decode UTF-8 s[0..len) to NFC code points. Most prompts have nothing below
 * U+0300 that NFC could change, so they are only decoded. Otherwise utf8proc does
 * the work, one segment at a time between Unicode-15-only code points: Python
 * 3.11 sees those as unassigned starters (combining class 0) that block reordering
 * and composition, which is exactly what cutting the text there reproduces.
 */
static int nfc_decode(const unsigned char *s, size_t len, cps *out)
{
    size_t i = 0, seg = 0;
    uint32_t cp, maxcp = 0;
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;

    out->n = 0;
    if (cps_reserve(out, len + 1))
        return -1;
    while (i < len) {
        i += utf8_next(s + i, len - i, &cp);
        out->v[out->n++] = cp;
        if (cp > maxcp)
            maxcp = cp;
    }
    if (maxcp < 0x300)
        return 0;

    out->n = 0;
    i = 0;
    while (seg <= len) {
        size_t end = seg, next = len + 1, k;
        utf8proc_ssize_t got;
        uint32_t barrier = 0;
        /* Find the end of this segment: the next Unicode-15-only code point. */
        while (end < len) {
            k = utf8_next(s + end, len - end, &cp);
            if (cp >= 0x0CF3 && is_unicode15_new(cp)) {
                barrier = cp;
                next = end + k;
                break;
            }
            end += k;
        }
        for (;;) {
            size_t room = out->cap - out->n;
            got = utf8proc_decompose(s + seg, (utf8proc_ssize_t)(end - seg),
                                     (utf8proc_int32_t *)(out->v + out->n), (utf8proc_ssize_t)room,
                                     opt);
            if (got < 0)
                return -1;
            if ((size_t)got <= room)
                break;
            if (cps_reserve(out, out->n + (size_t)got + (len - end) * 2 + 16))
                return -1;
        }
        got = utf8proc_normalize_utf32((utf8proc_int32_t *)(out->v + out->n), got, opt);
        if (got < 0)
            return -1;
        out->n += (size_t)got;
        if (next > len)
            break;
        if (cps_reserve(out, out->n + 1 + (len - next) * 2 + 16))
            return -1;
        out->v[out->n++] = barrier;
        seg = next;
    }
    return 0;
}

/* ftfy's uncurl_quotes: U+2018..U+201B -> ', U+201C..U+201F -> ". */
static void uncurl_quotes(cps *a)
{
    for (size_t i = 0; i < a->n; i++) {
        uint32_t c = a->v[i];
        if (c >= 0x2018 && c <= 0x201B)
            a->v[i] = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            a->v[i] = '"';
    }
}

/* Python's _replace_charref() for a numeric reference to `num`. Returns the new length. */
static size_t numeric_charref(uint32_t num, uint32_t *o, size_t m)
{
    uint32_t c = cm_html_numeric(num);
    if (c)
        o[m++] = c;
    return m;
}

/* The characters [^\t\n\f <&#;] of html's entity-name pattern. */
static int entity_name_char(uint32_t c)
{
    return !(c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
             c == ';');
}

/*
 * A numeric reference whose "&#" ends at in[k-1] ("&#123;", "&#x1F600"): its
 * character(s) go to o[*m...]. Returns the index after the match, or 0 when no digit
 * follows (no alternative of the pattern matches).
 */
static size_t numeric_ref(const uint32_t *in, size_t n, size_t k, uint32_t *o, size_t *m)
{
    uint32_t num = 0;
    int hex = k < n && (in[k] == 'x' || in[k] == 'X');
    int base = hex ? 16 : 10;
    size_t e;

    if (hex)
        k++;
    e = k;
    while (e < n && cm_hex_digit(in[e]) >= 0 && (hex || in[e] <= '9')) {
        /* Python's int() is unbounded; anything past U+10FFFF maps alike. */
        num = num * (uint32_t)base + (uint32_t)cm_hex_digit(in[e]);
        if (num > 0x110000)
            num = 0x110000;
        e++;
    }
    if (e == k)
        return 0;
    if (e < n && in[e] == ';')
        e++;
    *m = numeric_charref(num, o, *m);
    return e;
}

/*
 * The entity named by s = in[j..e) (name characters and an optional ';'): see
 * cm_html_named. Returns how many characters of s it takes (0: none), cp[] its code
 * points.
 */
static size_t entity_prefix(const uint32_t *in, size_t j, size_t e, uint32_t cp[2])
{
    char name[CM_HTML_NAME_MAX + 2];
    size_t x;

    for (x = 0; j + x < e && in[j + x] < 0x80 && in[j + x] != 0; x++)
        name[x] = (char)in[j + x];
    return cm_html_named(name, x, e - j, cp);
}

/*
 * Python's html.unescape(): re.sub() of
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * with _replace_charref(). in and out must not overlap; out needs n slots
 * (a reference is never shorter than its replacement).
 */
static size_t html_unescape(const uint32_t *in, size_t n, uint32_t *o)
{
    size_t i = 0, m = 0;
    while (i < n) {
        size_t j = i + 1, e, x;
        uint32_t cp[2];

        if (in[i] != '&') {
            o[m++] = in[i++];
            continue;
        }
        if (j < n && in[j] == '#') {
            e = numeric_ref(in, n, j + 1, o, &m);
            if (e)
                i = e;
            else
                o[m++] = in[i++]; /* "&#" not followed by digits */
            continue;
        }
        /* Named: up to 32 name characters, then an optional ';'. */
        e = j;
        while (e < n && e - j < 32 && entity_name_char(in[e]))
            e++;
        if (e == j) {
            o[m++] = in[i++];
            continue;
        }
        e += (size_t)(e < n && in[e] == ';'); /* the match is s = in[j..e) */
        x = entity_prefix(in, j, e, cp);
        if (!x) {
            /* No entity: the text stays as it was. */
            while (i < e)
                o[m++] = in[i++];
            continue;
        }
        o[m++] = cp[0];
        if (cp[1])
            o[m++] = cp[1];
        for (i = j + x; i < e; i++)
            o[m++] = in[i];
    }
    return m;
}

/*
 * Python's str.lower(): full lowercase mappings (only U+0130 maps to two code
 * points) and the Final_Sigma rule for U+03A3, which looks at the string before
 * lowercasing. out needs 2 * n slots.
 */
static int final_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    uint32_t c = 0;
    int before = 0;
    while (j > 0) {
        c = s[--j];
        if (!case_ignorable(c)) {
            before = 1;
            break;
        }
    }
    if (!before || !cased(c))
        return 0;
    for (j = i + 1; j < n; j++) {
        c = s[j];
        if (!case_ignorable(c))
            return !cased(c);
    }
    return 1;
}

static size_t py_lower(const uint32_t *in, size_t n, uint32_t *o)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 0x80) {
            o[m++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            o[m++] = 0x69;
            o[m++] = 0x307;
        } else if (c == 0x3A3) {
            o[m++] = final_sigma(in, n, i) ? 0x3C2 : 0x3C3;
        } else {
            o[m++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    return m;
}

/* ------------------------------------------------------------------------------ */
/* The split                                                                       */
/* ------------------------------------------------------------------------------ */

/*
 * Python's regex.findall() of
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
 *   [^\s\p{L}\p{N}]+
 * with IGNORECASE, by hand rather than through PCRE2, because PCRE2 10.42 disagrees
 * with `regex` on 4,390 code points: its tables are Unicode 14 where `regex` has
 * Unicode 15 (4,388 new letters and digits), its \s includes U+180E, and under
 * caseless matching `regex` matches U+0345 (which folds to a letter) with neither
 * [\p{L}] nor [^\s\p{L}\p{N}]. The classes below agree with `regex` on all code
 * points.
 */
enum { CL_SKIP, CL_LETTER, CL_NUMBER, CL_OTHER };

static int split_class(uint32_t c)
{
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return CL_LETTER;
        if (c >= '0' && c <= '9')
            return CL_NUMBER;
        return regex_isspace(c) ? CL_SKIP : CL_OTHER;
    }
    if (regex_isspace(c) || c == 0x345)
        return CL_SKIP;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return CL_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return CL_NUMBER;
    default:
        return CL_OTHER;
    }
}

/* Caseless match of a pattern letter: ASCII case, and 's' also matches U+017F
 * (long s), the only other code point `regex` folds to a letter used here. */
static int caseless_eq(uint32_t c, char lit)
{
    if (c == (uint32_t)lit)
        return 1;
    if (lit >= 'a' && lit <= 'z' && c == (uint32_t)(lit - 32))
        return 1;
    return lit == 's' && c == 0x17F;
}

static size_t match_literal(const uint32_t *t, size_t n, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++)
        if (k >= n || !caseless_eq(t[k], lit[k]))
            return 0;
    return k;
}

/* Length of the piece starting at t[0] (n > 0), or 0 if t[0] starts none. */
static size_t next_piece(const uint32_t *t, size_t n)
{
    size_t k;
    int cl;
    if (t[0] == '<') {
        k = match_literal(t, n, "<|startoftext|>");
        if (!k)
            k = match_literal(t, n, "<|endoftext|>");
        if (k)
            return k;
    } else if (t[0] == '\'' && n >= 2) {
        static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
        for (size_t i = 0; i < sizeof contractions / sizeof contractions[0]; i++) {
            k = match_literal(t, n, contractions[i]);
            if (k)
                return k;
        }
    }
    cl = split_class(t[0]);
    if (cl == CL_SKIP)
        return 0;
    if (cl == CL_NUMBER)
        return 1;
    for (k = 1; k < n && split_class(t[k]) == cl; k++)
        ;
    return k;
}

/* ------------------------------------------------------------------------------ */
/* BPE                                                                             */
/* ------------------------------------------------------------------------------ */

typedef struct heap_entry {
    int32_t rank;
    int32_t pos; /* index of the left symbol */
    int32_t left;
    int32_t right;
    int32_t merged;
} heap_entry;

/* Per-call scratch space, grown to the longest word seen. */
typedef struct bpe_scratch {
    unsigned char *bytes;
    int32_t *sym; /* symbol id per node; -1 once merged into its left neighbour */
    int32_t *next;
    int32_t *prev;
    heap_entry *heap;
    heap_entry *batch;
    size_t cap; /* nodes */
} bpe_scratch;

static void scratch_free(bpe_scratch *sc)
{
    cm_free(sc->bytes);
    cm_free(sc->sym);
    cm_free(sc->next);
    cm_free(sc->prev);
    cm_free(sc->heap);
    cm_free(sc->batch);
}

static int scratch_reserve(bpe_scratch *sc, size_t n)
{
    size_t cap;
    void *p;
    if (n <= sc->cap)
        return 0;
    cap = n < 64 ? 64 : n;
    if (cap > (size_t)INT32_MAX / 4)
        return -1;
#define GROW(field, count)                                                                         \
    do {                                                                                           \
        p = cm_realloc(sc->field, (count) * sizeof *sc->field);                                    \
        if (!p)                                                                                    \
            return -1;                                                                             \
        sc->field = p;                                                                             \
    } while (0)
    GROW(bytes, cap);
    GROW(sym, cap);
    GROW(next, cap);
    GROW(prev, cap);
    /* n - 1 initial pairs plus at most two new pairs per merge. */
    GROW(heap, 3 * cap);
    GROW(batch, 3 * cap);
#undef GROW
    sc->cap = cap;
    return 0;
}

static int entry_less(const heap_entry *a, const heap_entry *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_entry *h, size_t *n, heap_entry e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_less(&e, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static heap_entry heap_pop(heap_entry *h, size_t *n)
{
    heap_entry top = h[0], last = h[--*n];
    size_t i = 0, len = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len)
            break;
        if (c + 1 < len && entry_less(&h[c + 1], &h[c]))
            c++;
        if (!entry_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (len)
        h[i] = last;
    return top;
}

static void push_pair(const cm_tokenizer *tok, bpe_scratch *sc, size_t *hn, int32_t pos)
{
    int32_t q = sc->next[pos];
    const pair_slot *s = pair_find(tok, sc->sym[pos], sc->sym[q]);
    if (s) {
        heap_entry e = {s->rank, pos, sc->sym[pos], sc->sym[q], s->merged};
        heap_push(sc->heap, hn, e);
    }
}

static int entry_valid(const bpe_scratch *sc, const heap_entry *e)
{
    int32_t q;
    if (sc->sym[e->pos] != e->left)
        return 0;
    q = sc->next[e->pos];
    return q >= 0 && sc->sym[q] == e->right;
}

/* Collects ids; once count >= ctx - 1 the output is known to be truncated. */
typedef struct emitter {
    int32_t *ids;
    size_t ctx;
    size_t count; /* tokens between SOT and EOT, including those not stored */
} emitter;

static int emit(emitter *em, int32_t id)
{
    if (em->count + 1 < em->ctx)
        em->ids[em->count + 1] = id;
    em->count++;
    return em->count + 1 >= em->ctx;
}

/*
 * simple_tokenizer.bpe() on one piece's bytes b[0..n): repeatedly take the
 * lowest-ranked adjacent pair and merge all its non-overlapping occurrences left
 * to right. The heap is ordered by (rank, position), so popping every entry of the
 * lowest rank yields Python's left-to-right pass; pairs created by that pass can
 * never have the same rank (they contain the merged symbol), so they wait for the
 * next round exactly as in Python. Stale entries are skipped when popped.
 * Returns 1 if the emitter is full, 0 otherwise, -1 on allocation failure.
 */
static int bpe_word(const cm_tokenizer *tok, bpe_scratch *sc, size_t n, emitter *em)
{
    size_t hn = 0;
    int32_t i;
    if (n == 1)
        return emit(em, tok->byte_id_w[sc->bytes[0]]);
    for (i = 0; i < (int32_t)n; i++) {
        sc->sym[i] = i + 1 < (int32_t)n ? tok->byte_id[sc->bytes[i]] : tok->byte_id_w[sc->bytes[i]];
        sc->next[i] = i + 1 < (int32_t)n ? i + 1 : -1;
        sc->prev[i] = i - 1;
    }
    for (i = 0; i + 1 < (int32_t)n; i++)
        push_pair(tok, sc, &hn, i);
    while (hn) {
        size_t bn = 0;
        heap_entry top = heap_pop(sc->heap, &hn);
        if (!entry_valid(sc, &top))
            continue;
        sc->batch[bn++] = top;
        while (hn && sc->heap[0].rank == top.rank)
            sc->batch[bn++] = heap_pop(sc->heap, &hn);
        for (size_t b = 0; b < bn; b++) {
            const heap_entry *e = &sc->batch[b];
            int32_t p = e->pos, q;
            if (!entry_valid(sc, e))
                continue;
            q = sc->next[p];
            sc->sym[p] = e->merged;
            sc->sym[q] = -1;
            sc->next[p] = sc->next[q];
            if (sc->next[q] >= 0)
                sc->prev[sc->next[q]] = p;
            if (sc->prev[p] >= 0)
                push_pair(tok, sc, &hn, sc->prev[p]);
            if (sc->next[p] >= 0)
                push_pair(tok, sc, &hn, p);
        }
    }
    for (i = 0; i >= 0; i = sc->next[i])
        if (emit(em, sc->sym[i]))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* Encoding                                                                        */
/* ------------------------------------------------------------------------------ */

/* basic_clean() but its strip(): NFC + uncurl (ftfy-lite), html.unescape twice;
 * the text into *a (*b is scratch). -1 when out of memory. */
static int basic_clean(const unsigned char *s, size_t len, cps *a, cps *b)
{
    if (nfc_decode(s, len, a))
        return -1;
    uncurl_quotes(a);
    /* Without an '&' in the input none can appear, and unescape is the identity. */
    if (!len || !memchr(s, '&', len))
        return 0;
    for (int round = 0; round < 2; round++) {
        cps t;
        if (cps_reserve(b, a->n + 1))
            return -1;
        b->n = html_unescape(a->v, a->n, b->v);
        t = *a;
        *a = *b;
        *b = t;
    }
    return 0;
}

/* basic_clean's strip(), whitespace_clean() (regex \s+ -> " ", then strip()) and
 * .lower(), from *a back into *a (*b is scratch). -1 when out of memory. */
static int clean_spaces_lower(cps *a, cps *b)
{
    size_t lo = 0, hi = a->n, m = 0;

    while (lo < hi && py_isspace(a->v[lo]))
        lo++;
    while (hi > lo && py_isspace(a->v[hi - 1]))
        hi--;
    if (cps_reserve(b, hi - lo + 1))
        return -1;
    for (size_t i = lo; i < hi;) {
        if (regex_isspace(a->v[i])) {
            b->v[m++] = ' ';
            while (i < hi && regex_isspace(a->v[i]))
                i++;
        } else {
            b->v[m++] = a->v[i++];
        }
    }
    lo = 0;
    while (lo < m && py_isspace(b->v[lo]))
        lo++;
    while (m > lo && py_isspace(b->v[m - 1]))
        m--;
    if (cps_reserve(a, 2 * (m - lo) + 1))
        return -1;
    a->n = py_lower(b->v + lo, m - lo, a->v);
    return 0;
}

/* Split the cleaned text into pieces, map their bytes and emit each one's BPE ids
 * until the context is full. -1 when out of memory. */
static int encode_pieces(const cm_tokenizer *tok, const cps *a, bpe_scratch *sc, emitter *em)
{
    for (size_t i = 0; i < a->n;) {
        size_t k = next_piece(a->v + i, a->n - i), nb = 0;
        int full;
        if (!k) {
            i++;
            continue;
        }
        if (scratch_reserve(sc, 4 * k))
            return -1;
        for (size_t j = 0; j < k; j++)
            nb += utf8_put(sc->bytes + nb, a->v[i + j]);
        i += k;
        /* The cache of simple_tokenizer maps exactly these two strings. */
        if (nb == 15 && !memcmp(sc->bytes, "<|startoftext|>", 15))
            full = emit(em, tok->sot);
        else if (nb == 13 && !memcmp(sc->bytes, "<|endoftext|>", 13))
            full = emit(em, tok->eot);
        else
            full = bpe_word(tok, sc, nb, em);
        if (full < 0)
            return -1;
        if (full)
            break;
    }
    return 0;
}

clipmod_error cm_tokenizer_encode(const cm_tokenizer *tok, const char *text, size_t len,
                                  int32_t *ids, size_t ctx, size_t *n_ids, int *truncated,
                                  char *errbuf)
{
    clipmod_error err = CLIPMOD_OK;
    const unsigned char *s = (const unsigned char *)text;
    cps a = {0}, b = {0};
    bpe_scratch sc = {0};
    emitter em = {ids, ctx, 0};
    size_t bad;

    if (n_ids)
        *n_ids = 0;
    if (truncated)
        *truncated = 0;
    if (!tok || !ids || !n_ids || (!text && len))
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "tokenizer: NULL argument");
    if (ctx < 2)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                        "tokenizer: context length %zu is below 2 (SOT and EOT)", ctx);
    bad = utf8_check(s, len);
    if (bad < len)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                        "tokenizer: text is not valid UTF-8 (byte %zu of %zu)", bad, len);
    ids[0] = tok->sot;
    if (basic_clean(s, len, &a, &b) || clean_spaces_lower(&a, &b) ||
        encode_pieces(tok, &a, &sc, &em)) {
        err = cm_error(errbuf, CLIPMOD_E_NOMEM, "tokenizer: out of memory for %zu bytes of text",
                       len);
    } else if (em.count + 2 > ctx) {
        ids[ctx - 1] = tok->eot;
        *n_ids = ctx;
        if (truncated)
            *truncated = 1;
    } else {
        ids[em.count + 1] = tok->eot;
        *n_ids = em.count + 2;
    }
    cm_free(a.v);
    cm_free(b.v);
    scratch_free(&sc);
    return err;
}

/* ------------------------------------------------------------------------------ */
/* Loading                                                                         */
/* ------------------------------------------------------------------------------ */

/* String -> id map used only while loading (the vocabulary of simple_tokenizer). */
typedef struct vocab_slot {
    const char *s; /* NULL: empty */
    uint32_t len;
    int32_t id;
} vocab_slot;

typedef struct vocab_map {
    vocab_slot *slots;
    size_t mask;
} vocab_map;

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return mix64(h);
}

/* Later insertions of the same string win, like dict(zip(vocab, range(...))). */
static void vocab_put(vocab_map *vm, const char *s, size_t len, int32_t id)
{
    size_t i = (size_t)hash_bytes(s, len) & vm->mask;
    while (vm->slots[i].s && !(vm->slots[i].len == len && !memcmp(vm->slots[i].s, s, len)))
        i = (i + 1) & vm->mask;
    vm->slots[i].s = s;
    vm->slots[i].len = (uint32_t)len;
    vm->slots[i].id = id;
}

static int32_t vocab_get(const vocab_map *vm, const char *s, size_t len)
{
    size_t i = (size_t)hash_bytes(s, len) & vm->mask;
    while (vm->slots[i].s) {
        if (vm->slots[i].len == len && !memcmp(vm->slots[i].s, s, len))
            return vm->slots[i].id;
        i = (i + 1) & vm->mask;
    }
    return -1;
}

static void pair_put(cm_tokenizer *tok, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = (size_t)mix64(key) & tok->pair_mask;
    while (tok->pairs[i].rank >= 0 && tok->pairs[i].key != key)
        i = (i + 1) & tok->pair_mask;
    /* A repeated merge line keeps its last rank, like dict(zip(merges, range(...))). */
    tok->pairs[i].key = key;
    tok->pairs[i].rank = rank;
    tok->pairs[i].merged = merged;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

/*
 * Read (and gunzip if needed; gzread passes plain files through) until `lines`
 * newlines have been seen or the file ends. *out is NUL-terminated.
 */
static clipmod_error read_head(const char *path, size_t lines, char **out, size_t *out_len,
                               char *errbuf)
{
    clipmod_error err = CLIPMOD_OK;
    gzFile f = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 1 << 20, seen = 0;

    *out = NULL;
    *out_len = 0;
    errno = 0;
    f = gzopen(path, "rb");
    if (!f) {
        err = cm_error(errbuf, CLIPMOD_E_IO, "%s: cannot open merges file: %s", path,
                       errno ? strerror(errno) : "out of memory");
        goto out;
    }
    gzbuffer(f, 1 << 17);
    buf = cm_alloc(cap);
    if (!buf)
        goto nomem;
    while (seen < lines) {
        int got;
        unsigned want;
        if (cap - len < (1 << 16) + 1) {
            char *p;
            if (cap > ((size_t)1 << 30)) {
                err = cm_error(errbuf, CLIPMOD_E_TOKENIZER, "%s: more than 1 GiB without %zu lines",
                               path, lines);
                goto out;
            }
            p = cm_realloc(buf, cap * 2);
            if (!p)
                goto nomem;
            buf = p;
            cap *= 2;
        }
        want = (unsigned)(cap - len - 1 < (1u << 30) ? cap - len - 1 : (1u << 30));
        got = gzread(f, buf + len, want);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            err = cm_error(errbuf, zerr == Z_ERRNO ? CLIPMOD_E_IO : CLIPMOD_E_TOKENIZER,
                           "%s: cannot read merges: %s", path,
                           zerr == Z_ERRNO ? strerror(errno) : msg);
            goto out;
        }
        for (size_t i = len; i < len + (size_t)got; i++)
            seen += buf[i] == '\n';
        len += (size_t)got;
        if (got == 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr != Z_OK && seen < lines) {
                err = cm_error(errbuf, CLIPMOD_E_TOKENIZER, "%s: damaged gzip data: %s", path,
                               zerr == Z_BUF_ERROR ? "unexpected end of file" : msg);
                goto out;
            }
            break;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
    goto out;
nomem:
    err = cm_error(errbuf, CLIPMOD_E_NOMEM, "%s: out of memory reading merges", path);
out:
    cm_free(buf);
    if (f)
        gzclose_r(f);
    return err;
}

static int contains(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k))
            return 1;
    return 0;
}

/* bytes_to_unicode(): bs order and the code point each byte is shown as. */
static void byte_table(uint8_t order[256], uint32_t cp_of[256])
{
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
            order[n++] = (uint8_t)b;
            cp_of[b] = (uint32_t)b;
        }
    }
    for (int b = 0; b < 256; b++) {
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
            order[n++] = (uint8_t)b;
            cp_of[b] = 256u + (uint32_t)extra++;
        }
    }
}

/* The merge rules of a merges file, as spans of its text. */
typedef struct merge_list {
    const char **left, **right;
    uint32_t *llen, *rlen;
} merge_list;

/* Lines 2..n+1 of a merges file (p: the start of line 2) into m; each must be two
 * symbols separated by one space, in valid UTF-8. */
static clipmod_error parse_merges(const char *path, const char *p, const char *stop, size_t n,
                                  merge_list *m, char *errbuf)
{
    for (size_t i = 0; i < n; i++) {
        const char *nl, *sp;
        size_t ll, line = i + 2;
        if (p >= stop)
            return cm_error(errbuf, CLIPMOD_E_TOKENIZER, "%s: only %zu merges, the model needs %zu",
                            path, i, n);
        nl = memchr(p, '\n', (size_t)(stop - p));
        if (!nl)
            nl = stop;
        ll = (size_t)(nl - p);
        if (ll && p[ll - 1] == '\r')
            ll--;
        sp = memchr(p, ' ', ll);
        if (!sp || sp == p || sp == p + ll - 1 || memchr(sp + 1, ' ', (size_t)(p + ll - sp - 1)) ||
            memchr(p, '\t', ll))
            return cm_error(errbuf, CLIPMOD_E_TOKENIZER,
                            "%s:%zu: expected two symbols separated by one space", path, line);
        if (utf8_check((const unsigned char *)p, ll) != ll)
            return cm_error(errbuf, CLIPMOD_E_TOKENIZER, "%s:%zu: invalid UTF-8", path, line);
        m->left[i] = p;
        m->llen[i] = (uint32_t)(sp - p);
        m->right[i] = sp + 1;
        m->rlen[i] = (uint32_t)(p + ll - sp - 1);
        p = nl + 1;
    }
    return CLIPMOD_OK;
}

/*
 * The vocabulary in simple_tokenizer's order (later duplicates win) into vm, its
 * strings written to arena: 512 byte tokens, the n merges (merged[i] their strings),
 * then the two special tokens; sets tok's byte ids and special ids.
 */
static void fill_vocab(vocab_map *vm, char *arena, const merge_list *m, size_t n,
                       const char **merged, cm_tokenizer *tok)
{
    uint8_t order[256];
    uint32_t cp_of[256], byte_off[512], byte_len[512];
    size_t a = 0;

    byte_table(order, cp_of);
    for (int i = 0; i < 512; i++) {
        size_t k = utf8_put((unsigned char *)arena + a, cp_of[order[i % 256]]);
        if (i >= 256) {
            memcpy(arena + a + k, "</w>", 4);
            k += 4;
        }
        byte_off[i] = (uint32_t)a;
        byte_len[i] = (uint32_t)k;
        vocab_put(vm, arena + a, k, i);
        a += k;
    }
    for (size_t i = 0; i < n; i++) {
        char *merged_i = arena + a;
        memcpy(merged_i, m->left[i], m->llen[i]);
        memcpy(merged_i + m->llen[i], m->right[i], m->rlen[i]);
        vocab_put(vm, merged_i, m->llen[i] + m->rlen[i], (int32_t)(512 + i));
        merged[i] = merged_i;
        a += m->llen[i] + m->rlen[i];
    }
    vocab_put(vm, "<|startoftext|>", 15, (int32_t)(512 + n));
    vocab_put(vm, "<|endoftext|>", 13, (int32_t)(513 + n));

    tok->sot = (int32_t)(512 + n);
    tok->eot = (int32_t)(513 + n);
    for (int i = 0; i < 512; i++)
        (i >= 256 ? tok->byte_id_w : tok->byte_id)[order[i % 256]] =
            vocab_get(vm, arena + byte_off[i], byte_len[i]);
}

/*
 * The merge table: each rule's (left id, right id) -> (rank, merged id). Rules whose
 * symbols are not in the vocabulary can never apply and are left out. 0, or -1 when
 * out of memory.
 */
static int build_pairs(cm_tokenizer *tok, const vocab_map *vm, const merge_list *ml,
                       const char **merged_str, size_t n_merges)
{
    tok->pair_mask = pow2_at_least(2 * n_merges) - 1;
    tok->pairs = cm_alloc((tok->pair_mask + 1) * sizeof *tok->pairs);
    if (!tok->pairs)
        return -1;
    for (size_t i = 0; i <= tok->pair_mask; i++)
        tok->pairs[i].rank = -1;
    for (size_t i = 0; i < n_merges; i++) {
        int32_t l = vocab_get(vm, ml->left[i], ml->llen[i]);
        int32_t r = vocab_get(vm, ml->right[i], ml->rlen[i]);
        if (l < 0 || r < 0)
            continue;
        pair_put(tok, l, r, (int32_t)i, vocab_get(vm, merged_str[i], ml->llen[i] + ml->rlen[i]));
    }
    return 0;
}

clipmod_error cm_tokenizer_load(const char *path, size_t n_merges, cm_tokenizer **out, char *errbuf)
{
    clipmod_error err = CLIPMOD_OK;
    cm_tokenizer *tok = NULL;
    char *text = NULL, *arena = NULL, *p, *end;
    const char **merged_str = NULL;
    vocab_map vm = {NULL, 0};
    merge_list ml = {NULL, NULL, NULL, NULL};
    size_t text_len = 0;

    if (out)
        *out = NULL;
    if (!path || !out)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "tokenizer: NULL argument");
    if (n_merges == 0 || n_merges > MAX_MERGES)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "%s: number of merges %zu is outside 1..%zu",
                        path, n_merges, MAX_MERGES);

    err = read_head(path, n_merges + 1, &text, &text_len, errbuf);
    if (err)
        goto out;

    /* Line 1 is a header: "#version: 0.2" (HF) or '"bpe_simple_vocab_16e6.txt#version:
     * 0.2' (OpenAI). Python skips it unread; we insist on it to catch wrong files. */
    end = memchr(text, '\n', text_len);
    if (!end || !contains(text, (size_t)(end - text), "#version")) {
        err = cm_error(errbuf, CLIPMOD_E_TOKENIZER,
                       "%s:1: not a merges file (no '#version' header line)", path);
        goto out;
    }
    p = end + 1;

    ml.left = cm_alloc(n_merges * sizeof *ml.left);
    ml.right = cm_alloc(n_merges * sizeof *ml.right);
    ml.llen = cm_alloc(n_merges * sizeof *ml.llen);
    ml.rlen = cm_alloc(n_merges * sizeof *ml.rlen);
    merged_str = cm_alloc(n_merges * sizeof *merged_str);
    /* Every vocabulary string: 256 bytes (<= 2 UTF-8 bytes each), the same with
     * "</w>", each merge (at most its line), and the two special tokens. */
    arena = cm_alloc(256 * 2 + 256 * 6 + text_len + 32);
    tok = cm_calloc(1, sizeof *tok);
    if (!ml.left || !ml.right || !ml.llen || !ml.rlen || !merged_str || !arena || !tok)
        goto nomem;

    err = parse_merges(path, p, text + text_len, n_merges, &ml, errbuf);
    if (err)
        goto out;

    /* The vocabulary, in simple_tokenizer's order; later duplicates win. */
    vm.mask = pow2_at_least(2 * (512 + n_merges + 2)) - 1;
    vm.slots = cm_calloc(vm.mask + 1, sizeof *vm.slots);
    if (!vm.slots)
        goto nomem;
    fill_vocab(&vm, arena, &ml, n_merges, merged_str, tok);

    if (build_pairs(tok, &vm, &ml, merged_str, n_merges))
        goto nomem;
    *out = tok;
    tok = NULL;
    goto out;

nomem:
    err = cm_error(errbuf, CLIPMOD_E_NOMEM, "%s: out of memory loading %zu merges", path, n_merges);
out:
    cm_tokenizer_free(tok);
    cm_free(vm.slots);
    cm_free(arena);
    cm_free(ml.left);
    cm_free(ml.right);
    cm_free(merged_str);
    cm_free(ml.llen);
    cm_free(ml.rlen);
    cm_free(text);
    return err;
}
