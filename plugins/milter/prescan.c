/*
 * prescan.c - count parts and nesting of a raw message before GMime parses it.
 *
 * Owns a line-by-line reading of the MIME structure that follows GMime 3.2's parser
 * (gmime-parser.c) closely enough that both see the same parts: see prescan.h for
 * why. What it keeps is small: a stack of open multiparts and attached messages
 * (never deeper than max-depth + 1, or the scan stops), the header block being
 * read, and one mark per Content-Type header for the check during GMime's parse.
 *
 * Rules taken from GMime (each is what GMime does, so that the counts agree):
 *   - a header block ends at an empty line, or at a line that is a boundary of an
 *     open multipart (a part without content);
 *   - a header line is a name (no blanks inside, no control characters; blanks
 *     before the colon allowed) and a colon; a line starting with a blank continues
 *     the header before it; other lines are ignored;
 *   - the type of a part is the last Content-Type header of its block; its boundary
 *     that header's "boundary" parameter (unfolded, RFC 2047 and 2231 decoded by
 *     GMime's own functions); without a Content-Type a part is text/plain, or
 *     message/rfc822 inside multipart/digest;
 *   - a boundary line is "--" boundary, or "--" boundary "--" for the last one,
 *     then only blanks; every open multipart is tried, innermost first;
 *   - message/rfc822, rfc2822, global and news bodies are messages (header block
 *     first) unless their transfer encoding is base64, quoted-printable or uuencode;
 *   - a boundary line right after another (no headers, no content) makes no part;
 *   - a non-header line before the first header of a block may be cut by the end of
 *     GMime's read buffer; GMime then keeps its first piece in the header buffer
 *     and glues the next header line onto it, and that header is lost (invalid
 *     name). The buffer is only emptied by a header it parses or the empty line
 *     ending a block, so the piece outlives a block ending at a boundary. Where
 *     GMime's buffer ends is not known here: such a Content-Type or
 *     Content-Transfer-Encoding header is "droppable", and the part is counted
 *     the larger way (a message inside a digest, an unencoded message body), or
 *     refused when neither reading bounds the other (a multipart in a digest).
 */
#include <gmime/gmime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "prescan.h"

/* A Content-Type value longer than this is refused: no mail client writes one. */
#define MAX_CT_BYTES (64 * 1024)
/* Identical Content-Type headers repeated in one block: tolerated up to this. */
#define MAX_CT_PER_BLOCK 8

/* K_NONE: a Content-Type GMime cannot parse, as if there were none. */
enum part_kind { K_LEAF, K_MULTIPART, K_MESSAGE, K_NONE };

/* An open multipart (boundary set) or attached message (boundary NULL). */
typedef struct frame {
    const char *boundary; /* borrowed from the marks */
    size_t blen;
    int digest; /* multipart/digest: parts without a type are messages */
} frame;

/* The header block being read. */
typedef struct block {
    size_t start;      /* offset of its first line */
    int parent_digest; /* inside multipart/digest */
    int any_line;      /* a line was read: the part exists */
    int have_valid;    /* a valid header was read (the first takes `start` as offset) */
    int open;          /* a header line was read: a line starting with a blank continues it */
    int parsed;        /* a header GMime surely parsed: later non-header lines are harmless */
    int ct_sure;       /* a Content-Type header GMime surely reads */
    int cte_droppable; /* the first Content-Transfer-Encoding header may be lost */
    int cur;           /* the header being read: 0 other or none, 1 Content-Type, 2 CTE */
    size_t hdr_off;    /* offset of the current header */
    size_t val_start, val_end;
    int n_ct;        /* Content-Type headers */
    size_t last_ct;  /* index in marks of the last one */
    size_t ct_start; /* raw value of the last Content-Type (for conflicts) */
    size_t ct_len;
    int have_cte;
    size_t cte_start, cte_end; /* the first Content-Transfer-Encoding */
} block;

typedef struct scan {
    const unsigned char *msg;
    size_t len;
    const cmm_limits *lim;
    cmm_prescan *out;
    frame *stack;
    size_t depth, cap;
    int in_headers;
    int glued; /* GMime may hold a piece of a non-header line in its header buffer */
    block b;
    /* The type of each mark, parallel to out->cts. */
    unsigned char *kinds;
    unsigned char *digests;
} scan;

static void fail(scan *s, const char *fmt, ...)
{
    va_list ap;
    if (s->out->failed)
        return;
    s->out->failed = 1;
    va_start(ap, fmt);
    vsnprintf(s->out->why, sizeof s->out->why, fmt, ap);
    va_end(ap);
}

static void nomem(scan *s)
{
    s->out->nomem = 1;
    fail(s, "out of memory");
}

void cmm_prescan_free(cmm_prescan *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n_cts; i++)
        free(ps->cts[i].boundary);
    free(ps->cts);
    memset(ps, 0, sizeof *ps);
}

/* ------------------------------------------------------------------------ */
/* A Content-Type value, read by GMime's own functions                      */
/* ------------------------------------------------------------------------ */

/* `needle` (lower case) in `s`, ignoring case. */
static int contains_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if (!g_ascii_strncasecmp(s, needle, n))
            return 1;
    return 0;
}

static int is_rfc822(const char *subtype)
{
    return !g_ascii_strcasecmp(subtype, "rfc822") || !g_ascii_strcasecmp(subtype, "rfc2822") ||
           !g_ascii_strcasecmp(subtype, "global") || !g_ascii_strcasecmp(subtype, "news");
}

/*
 * What GMime makes of a raw Content-Type value (as its parser keeps it: the bytes
 * after the colon, folds and line ends included): the kind of part, whether it is
 * multipart/digest, and the boundary (malloc'ed, or NULL). *valid is 0 when the
 * type does not parse (GMime then falls back as if there were no header). Returns
 * -1 when out of memory.
 */
static int read_ct(const char *raw, int *kind, int *digest, int *valid, char **boundary)
{
    GMimeParserOptions *opts = g_mime_parser_options_get_default();
    GMimeContentType *ct = g_mime_content_type_parse(opts, raw);
    const char *type, *sub, *b = NULL;
    char *unfolded = NULL, *decoded = NULL;
    GMimeContentType *dct = NULL;

    *kind = K_LEAF;
    *digest = 0;
    *valid = 1;
    *boundary = NULL;
    if (!ct)
        return -1;
    type = g_mime_content_type_get_media_type(ct);
    sub = g_mime_content_type_get_media_subtype(ct);
    /* GMime answers application/octet-stream for a value it cannot parse. */
    if (!g_ascii_strcasecmp(type, "application") && !g_ascii_strcasecmp(sub, "octet-stream") &&
        !contains_ci(raw, "octet-stream"))
        *valid = 0;
    if (!g_ascii_strcasecmp(type, "multipart")) {
        *kind = K_MULTIPART;
        *digest = !g_ascii_strcasecmp(sub, "digest");
        /* The boundary comes from the decoded value, as GMime's object reads it. */
        unfolded = g_mime_utils_header_unfold(raw);
        decoded = unfolded ? g_mime_utils_header_decode_text(opts, unfolded) : NULL;
        dct = decoded ? g_mime_content_type_parse(opts, decoded) : NULL;
        b = dct ? g_mime_content_type_get_parameter(dct, "boundary") : NULL;
        if (b) {
            *boundary = strdup(b);
            if (!*boundary) {
                g_object_unref(ct);
                g_free(unfolded);
                g_free(decoded);
                if (dct)
                    g_object_unref(dct);
                return -1;
            }
        }
    } else if (!g_ascii_strcasecmp(type, "message") && is_rfc822(sub)) {
        *kind = K_MESSAGE;
    }
    g_object_unref(ct);
    if (dct)
        g_object_unref(dct);
    g_free(unfolded);
    g_free(decoded);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Lines                                                                    */
/* ------------------------------------------------------------------------ */

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* The line [p, p+n) (no '\n') is "--" b ["--"] followed only by blanks and CR. */
static int boundary_match(const unsigned char *p, size_t n, const char *b, size_t blen, int final)
{
    size_t need = 2 + blen + (final ? 2 : 0);
    if (n < need || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b, blen))
        return 0;
    if (final && (p[2 + blen] != '-' || p[3 + blen] != '-'))
        return 0;
    for (size_t i = need; i < n; i++)
        if (!is_blank(p[i]) && p[i] != '\r')
            return 0;
    return 1;
}

/*
 * Which open multipart the line is a boundary of, innermost first: its index in
 * the stack, or -1. *final is set for a closing boundary.
 */
static long boundary_of(const scan *s, const unsigned char *p, size_t n, int *final)
{
    if (n < 2 || p[0] != '-' || p[1] != '-')
        return -1;
    for (size_t i = s->depth; i-- > 0;) {
        const frame *f = &s->stack[i];
        if (!f->boundary)
            continue;
        if (boundary_match(p, n, f->boundary, f->blen, 1)) {
            *final = 1;
            return (long)i;
        }
        if (boundary_match(p, n, f->boundary, f->blen, 0)) {
            *final = 0;
            return (long)i;
        }
    }
    return -1;
}

static int push(scan *s, const char *boundary, int digest)
{
    if (s->depth == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        frame *grown = realloc(s->stack, cap * sizeof *grown);
        if (!grown) {
            nomem(s);
            return -1;
        }
        s->stack = grown;
        s->cap = cap;
    }
    s->stack[s->depth].boundary = boundary;
    s->stack[s->depth].blen = boundary ? strlen(boundary) : 0;
    s->stack[s->depth].digest = digest;
    s->depth++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Header blocks                                                            */
/* ------------------------------------------------------------------------ */

static void block_begin(scan *s, size_t at, int parent_digest)
{
    memset(&s->b, 0, sizeof s->b);
    s->b.start = at;
    s->b.parent_digest = parent_digest;
    s->in_headers = 1;
}

/* The block's first line: the part exists, at the current depth. */
static void part_begins(scan *s)
{
    cmm_prescan *o = s->out;
    s->b.any_line = 1;
    if (++o->n_parts > s->lim->max_parts) {
        fail(s, "more than %zu MIME parts", s->lim->max_parts);
        return;
    }
    if (s->depth > o->max_depth)
        o->max_depth = s->depth;
    if (s->depth > s->lim->max_depth)
        fail(s, "MIME parts nested more than %zu levels deep", s->lim->max_depth);
}

static int add_mark(scan *s, size_t offset, char *boundary, int kind, int digest)
{
    cmm_prescan *o = s->out;
    if (o->n_cts == o->cap_cts) {
        size_t cap = o->cap_cts ? o->cap_cts * 2 : 16;
        cmm_ct_mark *grown = realloc(o->cts, cap * sizeof *grown);
        unsigned char *k = realloc(s->kinds, cap), *d;
        if (k)
            s->kinds = k;
        d = k ? realloc(s->digests, cap) : NULL;
        if (d)
            s->digests = d;
        if (grown)
            o->cts = grown;
        if (!grown || !k || !d) {
            free(boundary);
            nomem(s);
            return -1;
        }
        o->cap_cts = cap;
    }
    o->cts[o->n_cts].offset = offset;
    o->cts[o->n_cts].boundary = boundary;
    s->kinds[o->n_cts] = (unsigned char)kind;
    s->digests[o->n_cts] = (unsigned char)digest;
    o->n_cts++;
    return 0;
}

/* The current header is complete: keep what matters of it. */
static void header_end(scan *s)
{
    block *b = &s->b;
    size_t n = b->val_end - b->val_start;
    int cur = b->cur;

    b->cur = 0;
    if (cur == 2 && !b->have_cte) {
        b->have_cte = 1;
        b->cte_start = b->val_start;
        b->cte_end = b->val_end;
    }
    if (cur != 1)
        return;
    if (n > MAX_CT_BYTES) {
        fail(s, "a Content-Type header longer than %d bytes", MAX_CT_BYTES);
        return;
    }
    if (b->n_ct && (n != b->ct_len || memcmp(s->msg + b->val_start, s->msg + b->ct_start, n))) {
        fail(s, "conflicting Content-Type headers in one part (byte %zu)", b->hdr_off);
        return;
    }
    if (++b->n_ct > MAX_CT_PER_BLOCK) {
        fail(s, "more than %d Content-Type headers in one part", MAX_CT_PER_BLOCK);
        return;
    }
    char *raw = strndup((const char *)s->msg + b->val_start, n), *boundary = NULL;
    int kind, digest, valid;
    if (!raw || read_ct(raw, &kind, &digest, &valid, &boundary)) {
        free(raw);
        nomem(s);
        return;
    }
    free(raw);
    if (!valid)
        kind = K_NONE; /* as if absent: the default type applies */
    if (add_mark(s, b->hdr_off, boundary, kind, digest))
        return;
    b->ct_start = b->val_start;
    b->ct_len = n;
    b->last_ct = s->out->n_cts - 1;
}

/* Is the block's message body encoded (then GMime keeps it as a leaf)? */
static int body_encoded(const scan *s)
{
    const block *b = &s->b;
    char *raw;
    GMimeContentEncoding e;
    if (!b->have_cte || b->cte_droppable)
        return 0; /* a droppable one may be lost: parsed as a message counts more */
    raw = strndup((const char *)s->msg + b->cte_start, b->cte_end - b->cte_start);
    if (!raw)
        return 1; /* a leaf is the cheaper guess; the check during parsing catches any error */
    e = g_mime_content_encoding_from_string(raw);
    free(raw);
    return e == GMIME_CONTENT_ENCODING_BASE64 || e == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
           e == GMIME_CONTENT_ENCODING_UUENCODE;
}

/*
 * The block's Content-Type in a digest may be lost (see the top): without it the
 * part is a message, which counts at least as much as a leaf, so *kind becomes a
 * message; a multipart is refused. Returns -1 when refused.
 */
static int kind_if_lost(scan *s, int *kind)
{
    if (*kind == K_MULTIPART) {
        fail(s,
             "ambiguous MIME structure: a multipart Content-Type after non-header lines in a "
             "digest part (byte %zu)",
             s->b.start);
        return -1;
    }
    *kind = K_MESSAGE;
    return 0;
}

/*
 * The block ended (at an empty line when `blank`, else at a boundary line): open
 * what the part is. Returns 1 when a message's header block follows.
 */
static int block_end(scan *s, int blank)
{
    block *b = &s->b;
    int kind = K_LEAF;
    const char *boundary = NULL;
    int digest = 0;

    if (b->cur)
        header_end(s);
    s->in_headers = 0;
    if (s->out->failed)
        return 0;
    if (blank)
        s->glued = 0; /* GMime parses its header buffer at the empty line */
    if (b->n_ct && s->kinds[b->last_ct] != K_NONE) {
        kind = s->kinds[b->last_ct];
        boundary = s->out->cts[b->last_ct].boundary;
        digest = s->digests[b->last_ct];
        if (!b->ct_sure && b->parent_digest && kind_if_lost(s, &kind))
            return 0;
    } else if (b->parent_digest) {
        kind = K_MESSAGE;
    }
    if (kind == K_MULTIPART && boundary)
        return push(s, boundary, digest), 0;
    if (kind == K_MESSAGE && blank && !body_encoded(s)) {
        if (push(s, NULL, 0))
            return 0;
        return 1;
    }
    return 0;
}

/*
 * A line of a header block that is not a header. Before any header GMime surely
 * parsed, GMime may keep a piece of it (see the top).
 */
static void non_header(scan *s)
{
    if (!s->b.parsed)
        s->glued = 1;
}

static void header_begins(scan *s, const unsigned char *p, size_t i, size_t at, size_t end);

/* A line of a header block (without its '\n'; `at` its offset). */
static void header_line(scan *s, const unsigned char *p, size_t n, size_t at, size_t end)
{
    block *b = &s->b;
    size_t i = 0;
    int blank = 0;

    if (n && is_blank(p[0])) {
        if (b->open && b->cur) /* a folded continuation */
            b->val_end = end;
        else if (!b->open)
            non_header(s);
        return;
    }
    if (b->cur)
        header_end(s);
    b->open = 0;
    /* The field name: no blanks inside, no control characters, then ':'. */
    for (; i < n && p[i] != ':'; i++) {
        if (is_blank(p[i]))
            blank = 1;
        else if (blank || p[i] < 0x20 || p[i] == 0x7f)
            break;
    }
    if (i == n || i == 0 || p[i] != ':') {
        non_header(s); /* not a header: ignored */
        return;
    }
    header_begins(s, p, i, at, end);
}

/* A valid header line: its name is p[0, i), its colon at p[i]. */
static void header_begins(scan *s, const unsigned char *p, size_t i, size_t at, size_t end)
{
    block *b = &s->b;
    int droppable = s->glued;

    s->glued = 0; /* GMime parses what it glued at the next line */
    b->open = 1;
    if (!droppable)
        b->parsed = 1;
    size_t name_len = i;
    while (name_len && is_blank(p[name_len - 1]))
        name_len--;
    b->hdr_off = b->have_valid ? at : b->start;
    b->have_valid = 1;
    b->val_start = at + i + 1;
    b->val_end = end;
    if (name_len == 12 && !strncasecmp((const char *)p, "Content-Type", 12)) {
        b->cur = 1;
        b->ct_sure |= !droppable;
    } else if (name_len == 25 && !strncasecmp((const char *)p, "Content-Transfer-Encoding", 25)) {
        b->cur = 2;
        if (!b->have_cte && droppable)
            b->cte_droppable = 1;
    } else {
        b->cur = 0;
    }
}

/* A line that is a boundary of stack[idx]: close what it closes, maybe start a part. */
static void boundary_line(scan *s, long idx, int final, size_t next)
{
    s->depth = (size_t)idx + 1; /* the multiparts and messages inside it end */
    if (final) {
        s->depth--; /* and this one too: its epilogue follows */
        return;
    }
    block_begin(s, next, s->stack[idx].digest);
}

/* One line [at, at+n) (without '\n'); `next` is the offset of the line after it. */
static void line(scan *s, size_t at, size_t n, size_t next)
{
    const unsigned char *p = s->msg + at;
    size_t end = next; /* a header value includes its line end, as GMime keeps it */
    int final = 0;
    long idx = boundary_of(s, p, n, &final);

    if (s->in_headers) {
        int empty = n == 0 || (n == 1 && p[0] == '\r');
        if (!s->b.any_line) {
            if (idx >= 0) {
                /* No headers and no content: GMime makes no part of it. */
                s->in_headers = 0;
                boundary_line(s, idx, final, next);
                return;
            }
            part_begins(s);
            if (s->out->failed)
                return;
        }
        if (empty) {
            if (block_end(s, 1))
                block_begin(s, next, 0); /* the attached message's own headers */
            return;
        }
        if (idx >= 0) {
            block_end(s, 0);
            if (s->out->failed)
                return;
            /* GMime's scan of a multipart just opened by this block starts at this
             * line: match it again, that multipart included. */
            idx = boundary_of(s, p, n, &final);
            if (idx >= 0)
                boundary_line(s, idx, final, next);
            return;
        }
        header_line(s, p, n, at, end);
        return;
    }
    if (idx >= 0)
        boundary_line(s, idx, final, next);
}

int cmm_prescan_run(const unsigned char *msg, size_t len, const cmm_limits *lim, cmm_prescan *out)
{
    scan s = {.msg = msg, .len = len, .lim = lim, .out = out};
    size_t at = 0;

    memset(out, 0, sizeof *out);
    block_begin(&s, 0, 0);
    while (at < len && !out->failed) {
        const unsigned char *nl = memchr(msg + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (msg + at)) : len - at;
        size_t next = nl ? at + n + 1 : len;
        line(&s, at, n, next);
        at = next;
    }
    if (s.in_headers && s.b.cur && !out->failed)
        header_end(&s); /* GMime keeps a header cut by the end of the message */
    free(s.stack);
    free(s.kinds);
    free(s.digests);
    return out->nomem ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* The check while GMime parses                                             */
/* ------------------------------------------------------------------------ */

int cmm_prescan_check(cmm_prescan *ps, size_t offset, const char *raw)
{
    char *boundary = NULL;
    int kind, digest, valid, same;
    const cmm_ct_mark *m;

    if (ps->failed)
        return -1;
    if (ps->next_ct >= ps->n_cts || ps->cts[ps->next_ct].offset != offset) {
        ps->failed = 1;
        snprintf(ps->why, sizeof ps->why,
                 "ambiguous MIME structure: a Content-Type header at byte %zu was not where "
                 "the pre-scan read one",
                 offset);
        return -1;
    }
    m = &ps->cts[ps->next_ct++];
    if (read_ct(raw ? raw : "", &kind, &digest, &valid, &boundary)) {
        ps->nomem = 1;
        ps->failed = 1;
        snprintf(ps->why, sizeof ps->why, "out of memory");
        return -1;
    }
    same =
        (!boundary && !m->boundary) || (boundary && m->boundary && !strcmp(boundary, m->boundary));
    free(boundary);
    if (!same) {
        ps->failed = 1;
        snprintf(ps->why, sizeof ps->why,
                 "ambiguous MIME structure: the Content-Type header at byte %zu reads differently",
                 offset);
        return -1;
    }
    return 0;
}
