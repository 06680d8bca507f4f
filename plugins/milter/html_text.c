/*
 * html_text.c - the text of an HTML part and its cid: images' alt and title (see
 * html_text.h).
 *
 * One forward pass: text up to the next '<' goes through tb_feed() (character
 * references, white space, NUL), markup is a comment, a declaration or processing
 * instruction (skipped to its end), a start or end tag (its name and attributes read
 * as HTML5 tokenizes them: quoted values may hold '>'), or a lone '<' (text). The
 * content of script, style and title is skipped to its end tag. Every buffer is
 * capped (tbuf): past its cap, text is counted as cut and no longer copied, while
 * tags are still read for images until those are capped too.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "html_text.h"
#include "htmlent.h"

/* ------------------------------------------------------------------------ */
/* Capped text with white space collapsed                                   */
/* ------------------------------------------------------------------------ */

typedef struct tbuf {
    char *s;
    size_t len, cap, max;
    int pending; /* white space owed before the next text: 0 none, 1 a space, 2 a line end */
    int cut;
    int nomem;
} tbuf;

static int is_space(unsigned c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static void tb_init(tbuf *t, size_t max)
{
    memset(t, 0, sizeof *t);
    t->max = max;
}

static void tb_reset(tbuf *t)
{
    t->len = 0;
    t->pending = t->cut = 0;
    if (t->s)
        t->s[0] = 0;
}

/* Room for `need` bytes and the NUL (need <= max). 0, or -1 when memory ran out. */
static int tb_room(tbuf *t, size_t need)
{
    size_t cap = t->cap ? t->cap : 256;
    if (need < t->cap)
        return 0;
    while (cap <= need)
        cap *= 2;
    if (cap > t->max + 1)
        cap = t->max + 1;
    char *grown = realloc(t->s, cap);
    if (!grown) {
        t->nomem = t->cut = 1;
        return -1;
    }
    t->s = grown;
    t->cap = cap;
    return 0;
}

static void tb_space(tbuf *t, int kind)
{
    if (kind > t->pending)
        t->pending = kind;
}

/* Append n bytes of text without white space, after the white space owed. */
static void tb_add(tbuf *t, const unsigned char *s, size_t n)
{
    size_t sep = t->len && t->pending ? 1 : 0, k = n;
    if (t->cut)
        return;
    if (t->len + sep + n > t->max) {
        t->cut = 1;
        k = t->len + sep < t->max ? t->max - t->len - sep : 0;
        while (k > 0 && (s[k] & 0xc0) == 0x80)
            k--; /* never half a character */
        if (!k)
            return;
    }
    if (tb_room(t, t->len + sep + k))
        return;
    if (sep)
        t->s[t->len++] = t->pending == 2 ? '\n' : ' ';
    t->pending = 0;
    memcpy(t->s + t->len, s, k);
    t->len += k;
    t->s[t->len] = 0;
}

/* Append code point c (0: nothing) as UTF-8; white space and U+00A0 as white space. */
static void tb_cp(tbuf *t, uint32_t c)
{
    unsigned char u[4];
    size_t n;
    if (!c)
        return;
    if (c == 0xa0 || (c < 0x80 && is_space(c))) {
        tb_space(t, 1);
        return;
    }
    if (c < 0x80) {
        u[0] = (unsigned char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (unsigned char)(0xc0 | c >> 6);
        u[1] = (unsigned char)(0x80 | (c & 0x3f));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (unsigned char)(0xe0 | c >> 12);
        u[1] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
        u[2] = (unsigned char)(0x80 | (c & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | c >> 18);
        u[1] = (unsigned char)(0x80 | (c >> 12 & 0x3f));
        u[2] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
        u[3] = (unsigned char)(0x80 | (c & 0x3f));
        n = 4;
    }
    tb_add(t, u, n);
}

/* Text without markup (s[0..n)): references decoded, white space collapsed, NUL dropped. */
static void tb_feed(tbuf *t, const unsigned char *s, size_t n)
{
    size_t i = 0, j, used;
    uint32_t cp[2];
    while (i < n && !t->cut) {
        used = s[i] == '&' ? cmm_html_ref(s, n, i, cp) : 0;
        if (used) {
            tb_cp(t, cp[0]);
            tb_cp(t, cp[1]);
            i += used;
        } else if (is_space(s[i]) || !s[i]) {
            if (s[i])
                tb_space(t, 1);
            i++;
        } else {
            for (j = i + 1; j < n && s[j] != '&' && s[j] && !is_space(s[j]); j++)
                ;
            tb_add(t, s + i, j - i);
            i = j;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The reader                                                               */
/* ------------------------------------------------------------------------ */

enum { A_SRC, A_ALT, A_TITLE, A__N };

typedef struct reader {
    const unsigned char *h;
    size_t n;
    const cmh_limits *lim;
    cmh_doc *out;
    size_t cap_imgs;
    tbuf text;
    tbuf attr[A__N]; /* of the <img> being read */
    int seen[A__N];  /* the first of a repeated attribute counts, as in HTML */
    int nomem;
} reader;

/* Elements a client shows on a line of their own: a line end before and after. */
static int is_block(const char *name)
{
    static const char *const blocks[] = {
        "address", "article",  "aside",      "blockquote", "br",     "center", "dd",   "div", "dl",
        "dt",      "fieldset", "figcaption", "figure",     "footer", "form",   "h1",   "h2",  "h3",
        "h4",      "h5",       "h6",         "header",     "hr",     "li",     "main", "nav", "ol",
        "p",       "pre",      "section",    "table",      "tr",     "ul"};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        if (!strcmp(name, blocks[i]))
            return 1;
    return 0;
}

/* Elements whose content a reader never sees as text. */
static int is_hidden(const char *name)
{
    return !strcmp(name, "script") || !strcmp(name, "style") || !strcmp(name, "title");
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "%41" -> 'A' (never a NUL byte) into a new string; NULL when out of memory. */
static char *pct_decode(const char *s)
{
    char *d = malloc(strlen(s) + 1), *o = d;
    if (!d)
        return NULL;
    while (*s) {
        int hi = -1, lo = -1;
        if (s[0] == '%') {
            hi = hexval((unsigned char)s[1]);
            if (hi >= 0) /* s[1] is not the NUL: s[2] can be read */
                lo = hexval((unsigned char)s[2]);
        }
        if (hi >= 0 && lo >= 0 && (hi | lo)) {
            *o++ = (char)(hi * 16 + lo);
            s += 3;
        } else {
            *o++ = *s++;
        }
    }
    *o = 0;
    return d;
}

static char *attr_copy(reader *r, int a)
{
    if (!r->seen[a])
        return NULL;
    char *s = strdup(r->attr[a].s ? r->attr[a].s : "");
    if (!s)
        r->nomem = 1;
    return s;
}

/* The <img> just read, when its src is a cid: URL and the limit leaves room. */
static void add_img(reader *r)
{
    const tbuf *src = &r->attr[A_SRC];
    cmh_doc *d = r->out;
    cmh_img *im;
    if (!r->seen[A_SRC] || src->len < 4 || strncasecmp(src->s, "cid:", 4) ||
        d->n_imgs >= r->lim->max_imgs)
        return;
    if (d->n_imgs == r->cap_imgs) {
        size_t cap = r->cap_imgs ? r->cap_imgs * 2 : 4;
        cmh_img *grown = realloc(d->imgs, cap * sizeof *grown);
        if (!grown) {
            r->nomem = 1;
            return;
        }
        d->imgs = grown;
        r->cap_imgs = cap;
    }
    im = &d->imgs[d->n_imgs++];
    im->cid = pct_decode(src->s + 4);
    im->alt = attr_copy(r, A_ALT);
    im->title = attr_copy(r, A_TITLE);
    if (!im->cid)
        r->nomem = 1;
}

/* Which of src, alt and title the attribute name h[s..e) is, or -1. */
static int attr_kind(const reader *r, size_t s, size_t e)
{
    static const char *const names[A__N] = {"src", "alt", "title"};
    for (int a = 0; a < A__N; a++)
        if (e - s == strlen(names[a]) && !strncasecmp((const char *)r->h + s, names[a], e - s))
            return a;
    return -1;
}

/*
 * One attribute at h[i] (not white space, '/' or '>'); an <img>'s src, alt and
 * title are kept. Returns where it ends.
 */
static size_t attribute(reader *r, size_t i, int img)
{
    const unsigned char *h = r->h;
    size_t n = r->n, s = i, vs, ve;
    int a;
    while (i < n && !is_space(h[i]) && h[i] != '/' && h[i] != '>' && (h[i] != '=' || i == s))
        i++;
    a = img ? attr_kind(r, s, i) : -1;
    while (i < n && is_space(h[i]))
        i++;
    if (i >= n || h[i] != '=')
        return i;
    for (i++; i < n && is_space(h[i]); i++)
        ;
    if (i < n && (h[i] == '"' || h[i] == '\'')) {
        const unsigned char *q = memchr(h + i + 1, h[i], n - i - 1);
        vs = i + 1;
        ve = q ? (size_t)(q - h) : n;
        i = q ? ve + 1 : n;
    } else {
        for (vs = i; i < n && !is_space(h[i]) && h[i] != '>'; i++)
            ;
        ve = i;
    }
    if (a >= 0 && !r->seen[a]) {
        r->seen[a] = 1;
        tb_feed(&r->attr[a], h + vs, ve - vs);
    }
    return i;
}

/* Past the content of a hidden element: to the '<' of its end tag, or the end. */
static size_t skip_hidden(const reader *r, size_t i, const char *name)
{
    const unsigned char *h = r->h, *p;
    size_t n = r->n, len = strlen(name);
    while (i < n && (p = memchr(h + i, '<', n - i))) {
        size_t k = (size_t)(p - h), e = k + 2 + len;
        if (e <= n && h[k + 1] == '/' && !strncasecmp((const char *)h + k + 2, name, len) &&
            (e == n || is_space(h[e]) || h[e] == '/' || h[e] == '>'))
            return k;
        i = k + 1;
    }
    return n;
}

/* A start or end tag at h[i] ("<a", "</a"). Returns where it ends. */
static size_t tag(reader *r, size_t i)
{
    const unsigned char *h = r->h;
    size_t n = r->n, k = 0;
    int end = h[i + 1] == '/', img;
    char name[16];

    for (i += 1 + end; i < n && !is_space(h[i]) && h[i] != '/' && h[i] != '>'; i++)
        if (k + 1 < sizeof name)
            name[k++] = (char)tolower(h[i]);
    name[k] = 0;
    img = !end && !strcmp(name, "img");
    for (int a = 0; img && a < A__N; a++) {
        tb_reset(&r->attr[a]);
        r->seen[a] = 0;
    }
    while (i < n && h[i] != '>')
        i = is_space(h[i]) || h[i] == '/' ? i + 1 : attribute(r, i, img);
    if (i >= n)
        return n; /* a tag the input cut: nothing a client would show */
    if (img)
        add_img(r);
    if (is_block(name))
        tb_space(&r->text, 2);
    else if (!strcmp(name, "td") || !strcmp(name, "th"))
        tb_space(&r->text, 1);
    return !end && is_hidden(name) ? skip_hidden(r, i + 1, name) : i + 1;
}

/* Where "-->" ends from h[i], or n. */
static size_t comment_end(const reader *r, size_t i)
{
    const unsigned char *p;
    while (i < r->n && (p = memchr(r->h + i, '-', r->n - i))) {
        size_t k = (size_t)(p - r->h);
        if (k + 3 <= r->n && !memcmp(p, "-->", 3))
            return k + 3;
        i = k + 1;
    }
    return r->n;
}

/* Markup at h[i] == '<'. Returns where it ends. */
static size_t markup(reader *r, size_t i)
{
    const unsigned char *h = r->h, *p;
    size_t n = r->n;
    if (i + 1 < n && isalpha(h[i + 1]))
        return tag(r, i);
    if (i + 2 < n && h[i + 1] == '/' && isalpha(h[i + 2]))
        return tag(r, i);
    if (i + 3 < n && !memcmp(h + i + 1, "!--", 3))
        return comment_end(r, i + 2); /* "<!-->" is a whole comment too */
    if (i + 1 < n && (h[i + 1] == '!' || h[i + 1] == '?' || h[i + 1] == '/')) {
        p = memchr(h + i, '>', n - i);
        return p ? (size_t)(p - h) + 1 : n;
    }
    tb_add(&r->text, (const unsigned char *)"<", 1);
    return i + 1;
}

static int reader_done(const reader *r)
{
    return r->nomem || (r->text.cut && r->out->n_imgs >= r->lim->max_imgs);
}

int cmh_read(const unsigned char *html, size_t n, const cmh_limits *lim, cmh_doc *out)
{
    reader r = {.h = html, .n = n, .lim = lim, .out = out};
    size_t i = 0;

    memset(out, 0, sizeof *out);
    tb_init(&r.text, lim->max_text);
    for (int a = 0; a < A__N; a++)
        tb_init(&r.attr[a], lim->max_attr);
    while (i < n && !reader_done(&r)) {
        if (html[i] == '<') {
            i = markup(&r, i);
        } else {
            const unsigned char *p = memchr(html + i, '<', n - i);
            size_t j = p ? (size_t)(p - html) : n;
            tb_feed(&r.text, html + i, j - i);
            i = j;
        }
    }
    for (int a = 0; a < A__N; a++) {
        r.nomem |= r.attr[a].nomem;
        free(r.attr[a].s);
    }
    r.nomem |= r.text.nomem;
    out->text = r.text.s ? r.text.s : strdup("");
    out->len = r.text.s ? r.text.len : 0;
    out->cut = r.text.cut && !r.text.nomem;
    if (!out->text)
        r.nomem = 1;
    return r.nomem ? -1 : 0;
}

void cmh_doc_free(cmh_doc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_imgs; i++) {
        free(d->imgs[i].cid);
        free(d->imgs[i].alt);
        free(d->imgs[i].title);
    }
    free(d->imgs);
    free(d->text);
    memset(d, 0, sizeof *d);
}
