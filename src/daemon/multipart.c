/*
 * multipart.c - clipmodd's streaming multipart/form-data reader (see multipart.h).
 *
 * Owns the syntax of form uploads: the boundary of the Content-Type, finding the
 * delimiters in a stream fed in pieces of any size, each part's header block, and
 * the parameters of Content-Disposition (name, filename, RFC 5987 filename*). It
 * decides nothing about files: every part goes to the caller with what its headers
 * say, and clipmodd's rule (every part is a file unless it is a listed text field)
 * lives in http.c.
 *
 * Delimiters are found with Knuth-Morris-Pratt over "\r\n--" + boundary, so bytes
 * that only looked like the start of a delimiter are handed on exactly once and a
 * delimiter split across two feeds is still found; the leading CRLF is assumed
 * present before the first byte, so a body may start with "--boundary". Where two
 * readings of a header block would be possible (a repeated Content-Disposition or
 * parameter, folded lines, bare CR or LF, control characters), the body is refused
 * rather than read one way: a proxy or application behind clipmodd might read it
 * the other way and see a file that clipmodd did not scan. For the same reason
 * "--" + boundary anywhere outside a delimiter (a bare-LF delimiter, one inside a
 * part, the preamble or the epilogue) is refused: RFC 2046 forbids it, and a more
 * lenient reader would find a part there.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hex.h"
#include "multipart.h"

#define MAX_DELIM   (4 + MP_MAX_BOUNDARY) /* "\r\n--" + boundary */
#define MAX_PADDING 64                    /* spaces or tabs after a delimiter */
#define MAX_CTYPE   127
#define OUT_BYTES   8192

typedef enum { S_BODY, S_AFTER, S_PAD, S_CLOSE, S_LF, S_HEADERS, S_EPILOGUE, S_FAILED } state;

struct mp_reader {
    mp_limits lim;
    mp_callbacks cb;
    void *arg;
    state st;
    mp_status failed;
    char why[192];

    unsigned char delim[MAX_DELIM];
    size_t dlen;
    size_t fail[MAX_DELIM + 1]; /* KMP: after a mismatch with m bytes held, keep fail[m] */
    size_t matched;             /* bytes of delim held back: maybe a delimiter */
    /* "--" + boundary (delim + 2) looked for in every byte that is not a delimiter. */
    size_t wfail[MAX_DELIM + 1], wmatched;

    int in_part;
    size_t parts, padding;
    char *hbuf, *scratch; /* a part's header block; one unquoted parameter value */
    size_t hlen;

    /* The current part's headers. */
    mp_part part;
    int seen_disposition, seen_ctype, seen_name, seen_filename, seen_filename_ext;
    char name[MP_MAX_NAME + 1], filename[MP_MAX_NAME + 1], ctype[MAX_CTYPE + 1];

    unsigned char out[OUT_BYTES]; /* part data on its way to cb.data */
    size_t olen;
};

/* ------------------------------------------------------------------------ */
/* Failures                                                                 */
/* ------------------------------------------------------------------------ */

static int failf(mp_reader *r, mp_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first failure; every later call returns it. Always -1. */
static int failf(mp_reader *r, mp_status st, const char *fmt, ...)
{
    va_list ap;
    if (r->st == S_FAILED)
        return -1;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    r->st = S_FAILED;
    r->failed = st;
    return -1;
}

static int stopped(mp_reader *r)
{
    return failf(r, MP_STOPPED, "stopped by the caller");
}

/* ------------------------------------------------------------------------ */
/* Text                                                                     */
/* ------------------------------------------------------------------------ */

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* RFC 2046 bchars (a space only inside). */
static int is_bchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=? ", c));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. Rejects overlong
 * forms, surrogates and code points past U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned long cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/*
 * Copy `n` bytes into `dst` (MP_MAX_NAME + 1) as valid UTF-8 without control
 * characters: anything else becomes '?'. Cut at MP_MAX_NAME bytes, never inside a
 * character.
 */
static void name_copy(char *dst, const unsigned char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_len(src + i, n - i);
        if (!len || src[i] < 0x20 || src[i] == 0x7f) {
            if (o + 1 > MP_MAX_NAME)
                break;
            dst[o++] = '?';
            i += len ? len : 1;
            continue;
        }
        if (o + len > MP_MAX_NAME)
            break;
        memcpy(dst + o, src + i, len);
        o += len;
        i += len;
    }
    dst[o] = '\0';
}

/* Case-insensitive: does `s` contain `word`? */
static int contains_word(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; *s; s++)
        if (!strncasecmp(s, word, n))
            return 1;
    return 0;
}

/*
 * RFC 5987 ext-value, charset'language'percent-encoded, into `dst` as UTF-8
 * (UTF-8 and ISO-8859-1 are the charsets RFC 5987 requires). -1 when it is not
 * one; the caller then keeps the text as it came.
 */
static int ext_value(const char *v, size_t vlen, char *dst)
{
    const char *q1 = memchr(v, '\'', vlen), *q2;
    unsigned char bytes[2 * (MP_MAX_NAME + 1)];
    size_t n = 0;
    int latin1;

    if (!q1)
        return -1;
    q2 = memchr(q1 + 1, '\'', vlen - (size_t)(q1 + 1 - v));
    if (!q2)
        return -1;
    if ((size_t)(q1 - v) == 5 && !strncasecmp(v, "UTF-8", 5))
        latin1 = 0;
    else if ((size_t)(q1 - v) == 10 && !strncasecmp(v, "ISO-8859-1", 10))
        latin1 = 1;
    else
        return -1;
    for (const char *p = q2 + 1; p < v + vlen && n + 2 <= sizeof bytes; p++) {
        unsigned c = (unsigned char)*p;
        if (c == '%') {
            if (v + vlen - p < 3 || cm_hex_digit((unsigned char)p[1]) < 0 ||
                cm_hex_digit((unsigned char)p[2]) < 0)
                return -1;
            c = (unsigned)(cm_hex_digit((unsigned char)p[1]) * 16 +
                           cm_hex_digit((unsigned char)p[2]));
            p += 2;
        }
        if (latin1 && c >= 0x80) {
            bytes[n++] = (unsigned char)(0xc0 | (c >> 6));
            bytes[n++] = (unsigned char)(0x80 | (c & 0x3f));
        } else {
            bytes[n++] = (unsigned char)c;
        }
    }
    name_copy(dst, bytes, n);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Parameters: "; name=value" after a type                                  */
/* ------------------------------------------------------------------------ */

typedef int (*param_fn)(mp_reader *r, const char *name, size_t nlen, const char *value,
                        size_t vlen);

/* A token or a quoted-string (with quoted-pairs) at *s, unquoted into r->scratch. */
static int param_value(mp_reader *r, const char **s, size_t *vlen)
{
    const char *p = *s;
    size_t n = 0;
    if (*p != '"') {
        while (is_tchar((unsigned char)*p))
            r->scratch[n++] = *p++;
        if (!n)
            return failf(r, MP_MALFORMED, "a header parameter has no value");
    } else {
        for (p++; *p != '"'; p++) {
            if (!*p)
                return failf(r, MP_MALFORMED, "a quoted header parameter is not closed");
            if (*p == '\\' && p[1])
                p++;
            r->scratch[n++] = *p;
        }
        p++;
    }
    r->scratch[n] = '\0';
    *s = p;
    *vlen = n;
    return 0;
}

static int params(mp_reader *r, const char *s, param_fn one)
{
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            return 0;
        if (*s != ';')
            return failf(r, MP_MALFORMED, "a header has text where ';' was expected");
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            return 0; /* a trailing ';' */
        const char *name = s;
        while (is_tchar((unsigned char)*s))
            s++;
        size_t nlen = (size_t)(s - name);
        while (*s == ' ' || *s == '\t')
            s++;
        if (!nlen || *s != '=')
            return failf(r, MP_MALFORMED, "a header parameter is not name=value");
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t vlen = 0;
        if (param_value(r, &s, &vlen) || one(r, name, nlen, r->scratch, vlen))
            return -1;
    }
}

static int is_param(const char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want) && !strncasecmp(name, want, nlen);
}

/* A parameter named twice could be read either way: refused. */
static int once(mp_reader *r, int *seen, const char *what)
{
    if ((*seen)++)
        return failf(r, MP_MALFORMED, "a part's Content-Disposition has two %s parameters", what);
    return 0;
}

static int disposition_param(mp_reader *r, const char *name, size_t nlen, const char *v,
                             size_t vlen)
{
    if (is_param(name, nlen, "name")) {
        if (once(r, &r->seen_name, "name"))
            return -1;
        name_copy(r->name, (const unsigned char *)v, vlen);
        r->part.name = r->name;
    } else if (is_param(name, nlen, "filename")) {
        if (once(r, &r->seen_filename, "filename"))
            return -1;
        /* filename* wins (RFC 6266, 4.3), whichever comes first. */
        if (!r->seen_filename_ext)
            name_copy(r->filename, (const unsigned char *)v, vlen);
        r->part.filename = r->filename;
    } else if (is_param(name, nlen, "filename*")) {
        if (once(r, &r->seen_filename_ext, "filename*"))
            return -1;
        if (ext_value(v, vlen, r->filename))
            name_copy(r->filename, (const unsigned char *)v, vlen);
        r->part.filename = r->filename;
    }
    /* RFC 2231 continuations (filename*0=...) and the like are not decoded, but
     * has_filename is set for them by the caller's look at the whole header. */
    return 0;
}

static int disposition(mp_reader *r, const char *value)
{
    const char *s = value;
    if (r->seen_disposition++)
        return failf(r, MP_MALFORMED, "a part has two Content-Disposition headers");
    while (is_tchar((unsigned char)*s))
        s++;
    if (s == value)
        return failf(r, MP_MALFORMED, "a part's Content-Disposition has no type");
    r->part.form_data = (size_t)(s - value) == 9 && !strncasecmp(value, "form-data", 9);
    /* Any spelling of a file name makes the part a file, read by us or not. */
    r->part.has_filename = contains_word(s, "filename");
    return params(r, s, disposition_param);
}

/* ------------------------------------------------------------------------ */
/* A part's header block                                                    */
/* ------------------------------------------------------------------------ */

static int header_line(mp_reader *r, char *line)
{
    char *colon = strchr(line, ':'), *value, *end;
    if (*line == ' ' || *line == '\t')
        return failf(r, MP_MALFORMED, "a part has a folded header line");
    if (!colon || colon == line)
        return failf(r, MP_MALFORMED, "a part has a header line without a name");
    for (char *p = line; p < colon; p++)
        if (!is_tchar((unsigned char)*p))
            return failf(r, MP_MALFORMED, "a part has a malformed header name");
    *colon = '\0';
    value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    end = value + strlen(value);
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    if (!strcasecmp(line, "Content-Disposition"))
        return disposition(r, value);
    if (!strcasecmp(line, "Content-Type")) {
        if (r->seen_ctype++)
            return failf(r, MP_MALFORMED, "a part has two Content-Type headers");
        size_t n = 0;
        for (; value[n] && n < MAX_CTYPE; n++)
            r->ctype[n] = value[n] >= 0x20 && value[n] < 0x7f ? value[n] : '?';
        r->ctype[n] = '\0';
        r->part.content_type = r->ctype;
    }
    return 0;
}

/* r->hbuf holds a complete block (its lines, then an empty line): read it, begin the part. */
static int part_headers(mp_reader *r)
{
    size_t len = r->hlen - 2; /* without the empty line's CRLF */
    char *line = r->hbuf;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)r->hbuf[i];
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
            return failf(r, MP_MALFORMED, "a part's headers contain a control character");
        if ((c == '\r' && r->hbuf[i + 1] != '\n') || (c == '\n' && (!i || r->hbuf[i - 1] != '\r')))
            return failf(r, MP_MALFORMED, "a part's header lines must end with CRLF");
    }
    memset(&r->part, 0, sizeof r->part);
    r->part.index = r->parts - 1;
    r->seen_disposition = r->seen_ctype = r->seen_name = 0;
    r->seen_filename = r->seen_filename_ext = 0;
    r->hbuf[len] = '\0';
    while (*line) {
        char *eol = strstr(line, "\r\n"); /* every line ends with one */
        *eol = '\0';
        if (header_line(r, line))
            return -1;
        line = eol + 2;
    }
    if (r->cb.begin && r->cb.begin(r->arg, &r->part))
        return stopped(r);
    r->in_part = 1;
    r->matched = 0;
    r->st = S_BODY;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The stream                                                               */
/* ------------------------------------------------------------------------ */

static int flush(mp_reader *r)
{
    size_t n = r->olen;
    r->olen = 0;
    if (n && r->cb.data && r->cb.data(r->arg, r->out, n))
        return stopped(r);
    return 0;
}

/* Every byte outside a delimiter passes here: "--" + boundary must not be among them. */
static int watch(mp_reader *r, const unsigned char *p, size_t n)
{
    const unsigned char *w = r->delim + 2;
    const size_t wlen = r->dlen - 2;
    for (size_t i = 0; i < n; i++) {
        if (!r->wmatched) {
            const unsigned char *dash = memchr(p + i, '-', n - i);
            if (!dash)
                return 0;
            i = (size_t)(dash - p);
        }
        while (r->wmatched && w[r->wmatched] != p[i])
            r->wmatched = r->wfail[r->wmatched];
        if (w[r->wmatched] == p[i])
            r->wmatched++;
        if (r->wmatched == wlen)
            return failf(r, MP_MALFORMED,
                         "the boundary appears outside a delimiter (inside a part, or after a "
                         "line ending without CR)");
    }
    return 0;
}

/* Part data, in stream order; outside a part (the preamble) it is dropped. */
static int emit(mp_reader *r, const unsigned char *p, size_t n)
{
    if (watch(r, p, n))
        return -1;
    if (!r->in_part || !n)
        return 0;
    if (r->olen + n > sizeof r->out) {
        if (flush(r))
            return -1;
        if (n >= sizeof r->out)
            return r->cb.data && r->cb.data(r->arg, p, n) ? stopped(r) : 0;
    }
    memcpy(r->out + r->olen, p, n);
    r->olen += n;
    return 0;
}

/* A whole delimiter was read: the part before it (if any) ends. */
static int delimiter(mp_reader *r)
{
    r->matched = 0;
    r->wmatched = 0;
    r->st = S_AFTER;
    if (!r->in_part)
        return 0;
    if (flush(r))
        return -1;
    r->in_part = 0;
    if (r->cb.end && r->cb.end(r->arg))
        return stopped(r);
    return 0;
}

/* S_BODY: bytes up to the next delimiter. Returns how many were used, or -1. */
static long body(mp_reader *r, const unsigned char *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (!r->matched) {
            /* Fast path: nothing held, so everything before the next CR is data. */
            const unsigned char *cr = memchr(d + i, '\r', n - i);
            size_t run = cr ? (size_t)(cr - (d + i)) : n - i;
            if (emit(r, d + i, run))
                return -1;
            i += run;
            if (i == n)
                break;
        }
        unsigned char c = d[i++];
        while (r->matched && r->delim[r->matched] != c) {
            size_t keep = r->fail[r->matched];
            if (emit(r, r->delim, r->matched - keep))
                return -1;
            r->matched = keep;
        }
        if (r->delim[r->matched] == c)
            r->matched++;
        else if (emit(r, &c, 1))
            return -1;
        if (r->matched == r->dlen)
            return delimiter(r) ? -1 : (long)i;
    }
    return (long)i;
}

/* S_HEADERS: one byte of a part's header block. */
static int header_byte(mp_reader *r, unsigned char c)
{
    if (r->hlen >= r->lim.max_header_bytes)
        return failf(r, MP_LIMIT, "a part's headers are longer than %zu bytes",
                     r->lim.max_header_bytes);
    r->hbuf[r->hlen++] = (char)c;
    if (c != '\n' || r->hlen < 2 || r->hbuf[r->hlen - 2] != '\r')
        return 0;
    if (r->hlen == 2 || (r->hlen >= 4 && !memcmp(r->hbuf + r->hlen - 4, "\r\n\r\n", 4)))
        return part_headers(r);
    return 0;
}

/* One byte between a delimiter and the next part's headers (or the end). */
static int after_byte(mp_reader *r, unsigned char c)
{
    switch (r->st) {
    case S_AFTER:
        if (c == '-') {
            r->st = S_CLOSE;
            return 0;
        }
        r->padding = 0;
        r->st = S_PAD;
        /* fall through */
    case S_PAD:
        if ((c == ' ' || c == '\t') && ++r->padding <= MAX_PADDING)
            return 0;
        if (c == '\r') {
            r->st = S_LF;
            return 0;
        }
        return failf(r, MP_MALFORMED, "a boundary delimiter is followed by other text");
    case S_CLOSE:
        if (c != '-')
            return failf(r, MP_MALFORMED, "a boundary delimiter is followed by other text");
        r->st = S_EPILOGUE;
        return 0;
    case S_LF:
        if (c != '\n')
            return failf(r, MP_MALFORMED, "a boundary delimiter is followed by other text");
        if (r->parts >= r->lim.max_parts)
            return failf(r, MP_LIMIT, "more than %zu parts", r->lim.max_parts);
        r->parts++;
        r->hlen = 0;
        r->st = S_HEADERS;
        return 0;
    default:
        return 0;
    }
}

mp_status mp_feed(mp_reader *r, const void *data, size_t n)
{
    const unsigned char *d = data;
    size_t i = 0;

    while (i < n && r->st != S_FAILED) {
        if (r->st == S_EPILOGUE) {
            watch(r, d + i, n - i);
            break;
        }
        if (r->st == S_BODY) {
            long used = body(r, d + i, n - i);
            if (used < 0)
                break;
            i += (size_t)used;
        } else if (r->st == S_HEADERS) {
            if (header_byte(r, d[i++]))
                break;
        } else if (after_byte(r, d[i++])) {
            break;
        }
    }
    if (r->st == S_BODY)
        flush(r); /* hand on what arrived: the caller counts it now */
    return r->st == S_FAILED ? r->failed : MP_OK;
}

mp_status mp_finish(mp_reader *r)
{
    if (r->st == S_FAILED)
        return r->failed;
    if (r->st != S_EPILOGUE) {
        failf(r, MP_MALFORMED, "the body ends before its closing boundary (truncated)");
        return MP_MALFORMED;
    }
    return MP_OK;
}

const char *mp_error(const mp_reader *r)
{
    return r && r->st == S_FAILED ? r->why : "";
}

/* ------------------------------------------------------------------------ */
/* A new reader                                                             */
/* ------------------------------------------------------------------------ */

static int boundary_param(mp_reader *r, const char *name, size_t nlen, const char *v, size_t vlen)
{
    if (!is_param(name, nlen, "boundary"))
        return 0;
    if (r->dlen)
        return failf(r, MP_MALFORMED, "the Content-Type has two boundary parameters");
    if (!vlen || vlen > MP_MAX_BOUNDARY || v[vlen - 1] == ' ')
        return failf(r, MP_MALFORMED, "the boundary must be 1 to %d characters (RFC 2046)",
                     MP_MAX_BOUNDARY);
    for (size_t i = 0; i < vlen; i++)
        if (!is_bchar((unsigned char)v[i]))
            return failf(r, MP_MALFORMED, "the boundary has a character RFC 2046 does not allow");
    memcpy(r->delim, "\r\n--", 4);
    memcpy(r->delim + 4, v, vlen);
    r->dlen = 4 + vlen;
    return 0;
}

/* KMP's failure function over `pat`, indexed by the bytes held. */
static void build_fail(const unsigned char *pat, size_t len, size_t *fail)
{
    size_t k = 0;
    fail[0] = fail[1] = 0;
    for (size_t i = 1; i < len; i++) {
        while (k && pat[i] != pat[k])
            k = fail[k];
        if (pat[i] == pat[k])
            k++;
        fail[i + 1] = k;
    }
}

static int read_content_type(mp_reader *r, const char *ctype)
{
    const char *s = ctype ? ctype : "";
    size_t n = strlen("multipart/form-data");
    while (*s == ' ' || *s == '\t')
        s++;
    if (strncasecmp(s, "multipart/form-data", n) || is_tchar((unsigned char)s[n]) || s[n] == '/')
        return failf(r, MP_MALFORMED, "the Content-Type is not multipart/form-data");
    if (strlen(s) > r->lim.max_header_bytes)
        return failf(r, MP_MALFORMED, "the Content-Type is too long");
    if (params(r, s + n, boundary_param))
        return -1;
    if (!r->dlen)
        return failf(r, MP_MALFORMED, "a multipart body needs a boundary");
    return 0;
}

mp_reader *mp_new(const char *content_type, const mp_limits *limits, const mp_callbacks *cb,
                  void *arg, mp_status *status, char *why, size_t whylen)
{
    mp_reader *r = calloc(1, sizeof *r);

    *status = MP_LIMIT;
    if (why && whylen)
        snprintf(why, whylen, "out of memory");
    if (!r)
        return NULL;
    r->lim = *limits;
    if (r->lim.max_header_bytes < 64)
        r->lim.max_header_bytes = 64;
    r->cb = *cb;
    r->arg = arg;
    r->hbuf = malloc(r->lim.max_header_bytes + 1);
    r->scratch = malloc(r->lim.max_header_bytes + 1);
    if (!r->hbuf || !r->scratch) {
        mp_free(r);
        return NULL;
    }
    if (read_content_type(r, content_type)) {
        *status = r->failed;
        if (why && whylen)
            snprintf(why, whylen, "%s", r->why);
        mp_free(r);
        return NULL;
    }
    build_fail(r->delim, r->dlen, r->fail);
    build_fail(r->delim + 2, r->dlen - 2, r->wfail);
    r->st = S_BODY;
    r->matched = 2; /* the CRLF assumed before the first delimiter */
    *status = MP_OK;
    if (why && whylen)
        why[0] = '\0';
    return r;
}

void mp_free(mp_reader *r)
{
    if (!r)
        return;
    free(r->hbuf);
    free(r->scratch);
    free(r);
}
