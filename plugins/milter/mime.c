/*
 * mime.c - the MIME walk of clipmod-milter: which parts are images, decoded how.
 *
 * Owns the recursive walk over a GMime message tree, the image tests (declared
 * type, file name, content signature, data: URIs in HTML), transfer decoding into
 * memory and the checks around it: limits on parts, depth, images and bytes, a
 * 0-byte part, a truncated base64 body, an unknown transfer encoding. It never
 * judges an image; it only hands the milter bytes and says what it could not do.
 *
 * Memory: the message buffer is borrowed, not copied (GMime reads it in place);
 * each image's decoded bytes are allocated once and handed to the caller.
 */
#include <ctype.h>
#include <gmime/gmime.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "htmlent.h"
#include "mime.h"
#include "prescan.h"

/* State of one walk. */
typedef struct walker {
    const cmm_limits *lim;
    cmm_walk *out;
    size_t cap, cap_containers;
    int nomem;
} walker;

const char *cmm_problem_name(cmm_problem p)
{
    switch (p) {
    case CMM_OK:
        return "ok";
    case CMM_EMPTY:
        return "empty";
    case CMM_TOO_LARGE:
        return "too-large";
    case CMM_BAD_ENCODING:
        return "bad-encoding";
    }
    return "unknown";
}

const char *cmm_found_by_name(cmm_found_by by)
{
    switch (by) {
    case CMM_BY_TYPE:
        return "type";
    case CMM_BY_NAME:
        return "name";
    case CMM_BY_CONTENT:
        return "content";
    case CMM_BY_DATA_URI:
        return "data-uri";
    }
    return "unknown";
}

void cmm_init(void)
{
    g_mime_init();
}

void cmm_shutdown(void)
{
    g_mime_shutdown();
}

static void fail(walker *w, const char *fmt, ...)
{
    va_list ap;
    if (w->out->failed)
        return; /* the first reason is the one worth reporting */
    w->out->failed = 1;
    va_start(ap, fmt);
    vsnprintf(w->out->why, sizeof w->out->why, fmt, ap);
    va_end(ap);
}

static void image_clear(cmm_image *im)
{
    free(im->part);
    free(im->filename);
    free(im->content_type);
    free(im->content_id);
    free(im->note);
    free(im->data);
    memset(im, 0, sizeof *im);
}

void cmm_walk_free(cmm_walk *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_images; i++)
        image_clear(&w->images[i]);
    free(w->images);
    for (size_t i = 0; i < w->n_containers; i++) {
        free(w->containers[i].part);
        free(w->containers[i].filename);
    }
    free(w->containers);
    cmm_text_free(&w->text);
    memset(w, 0, sizeof *w);
}

static char *dup_lower(const char *s)
{
    char *d = strdup(s ? s : "");
    for (char *p = d; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

/*
 * Append an image that takes ownership of `data` (may be NULL). Returns the new
 * entry, or NULL when out of memory or over the image limit (the walk is then
 * marked failed and `data` freed).
 */
static cmm_image *add_image(walker *w, const char *part, const char *filename,
                            const char *content_type, cmm_found_by by, unsigned char *data,
                            size_t len)
{
    cmm_walk *o = w->out;
    cmm_image *im;

    if (o->n_images >= w->lim->max_images) {
        fail(w, "more than %zu images", w->lim->max_images);
        free(data);
        return NULL;
    }
    if (o->n_images == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 8;
        cmm_image *grown = realloc(o->images, cap * sizeof *grown);
        if (!grown)
            goto nomem;
        o->images = grown;
        w->cap = cap;
    }
    im = &o->images[o->n_images];
    memset(im, 0, sizeof *im);
    im->by = by;
    im->data = data;
    im->len = len;
    im->part = strdup(part);
    im->content_type = dup_lower(content_type);
    im->filename = filename ? strdup(filename) : NULL;
    if (!im->part || !im->content_type || (filename && !im->filename)) {
        image_clear(im);
        goto nomem;
    }
    o->n_images++;
    return im;
nomem:
    free(data);
    w->nomem = 1;
    fail(w, "out of memory");
    return NULL;
}

/*
 * When `data` (not an image) is a zip archive, an office document or a PDF, list it
 * with the count of images inside. Returns 1 when it was one.
 */
static int add_container(walker *w, const char *part, const char *filename,
                         const char *content_type, const unsigned char *data, size_t len)
{
    cmm_walk *o = w->out;
    cmm_count count;
    cmm_container *c;

    if (!cmm_container_count(data, len, filename, content_type, &count))
        return 0;
    if (o->n_containers >= CMM_MAX_CONTAINERS) {
        fail(w, "more than %d archives and documents", CMM_MAX_CONTAINERS);
        return 1;
    }
    if (o->n_containers == w->cap_containers) {
        size_t cap = w->cap_containers ? w->cap_containers * 2 : 4;
        cmm_container *grown = realloc(o->containers, cap * sizeof *grown);
        if (!grown)
            goto nomem;
        o->containers = grown;
        w->cap_containers = cap;
    }
    c = &o->containers[o->n_containers];
    memset(c, 0, sizeof *c);
    c->count = count;
    c->part = strdup(part);
    c->filename = filename ? strdup(filename) : NULL;
    if (!c->part || (filename && !c->filename)) {
        free(c->part);
        free(c->filename);
        goto nomem;
    }
    o->n_containers++;
    return 1;
nomem:
    w->nomem = 1;
    fail(w, "out of memory");
    return 1;
}

static void set_problem(walker *w, cmm_image *im, cmm_problem p, const char *fmt, ...)
{
    char line[200];
    va_list ap;

    im->problem = p;
    free(im->data);
    im->data = NULL;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    free(im->note);
    im->note = strdup(line);
    if (!im->note) {
        w->nomem = 1;
        fail(w, "out of memory");
    }
}

/* ------------------------------------------------------------------------ */
/* What is an image                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Extensions a mail client shows as a picture. Formats the engine does not read
 * (BMP, SVG, ICO ...) are listed too: the recipient sees an image, so the milter
 * must not treat it as anything else; the engine then reports it unscanned.
 */
int cmm_is_image_name(const char *filename)
{
    static const char *const ext[] = {"jpg", "jpeg", "jpe", "jfif", "pjpeg", "png",  "apng",
                                      "gif", "webp", "tif", "tiff", "heic",  "heif", "avif",
                                      "bmp", "dib",  "svg", "svgz", "ico",   "jxl",  "jp2",
                                      "j2k", "psd",  "pcx", "tga",  "xbm",   "xpm"};
    const char *dot = filename ? strrchr(filename, '.') : NULL;
    if (!dot || !dot[1])
        return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot + 1, ext[i]))
            return 1;
    return 0;
}

/*
 * Signatures of the formats the engine reads. Only those: sniffing for a format
 * the engine cannot read would turn any odd attachment into an unscanned image.
 */
int cmm_is_image_bytes(const unsigned char *b, size_t n)
{
    static const char *const heif_brands[] = {"heic", "heix", "hevc", "hevx", "heim", "heis",
                                              "hevm", "hevs", "mif1", "msf1", "avif", "avis"};
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return 1; /* JPEG */
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return 1;
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
        return 1;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return 1;
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4)))
        return 1; /* TIFF */
    if (n >= 12 && !memcmp(b + 4, "ftyp", 4))
        for (size_t i = 0; i < sizeof heif_brands / sizeof heif_brands[0]; i++)
            if (!memcmp(b + 8, heif_brands[i], 4))
                return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

static int is_b64(unsigned char c)
{
    return isalnum(c) || c == '+' || c == '/';
}

/* What the encoded body looks like, read before decoding it. */
typedef struct raw_facts {
    size_t bytes;     /* encoded bytes */
    size_t b64_chars; /* base64 alphabet characters */
    size_t b64_pad;   /* '=' */
    int visible;      /* anything but white space */
} raw_facts;

static void facts_add(raw_facts *f, const unsigned char *p, size_t n)
{
    f->bytes += n;
    for (size_t i = 0; i < n; i++) {
        if (is_b64(p[i]))
            f->b64_chars++;
        else if (p[i] == '=')
            f->b64_pad++;
        if (!isspace(p[i]))
            f->visible = 1;
    }
}

static void read_raw_facts(GMimeDataWrapper *wrapper, raw_facts *f)
{
    GMimeStream *raw = g_mime_data_wrapper_get_stream(wrapper);
    char buf[8192];
    ssize_t n;

    memset(f, 0, sizeof *f);
    if (!raw)
        return;
    g_mime_stream_reset(raw);
    while ((n = g_mime_stream_read(raw, buf, sizeof buf)) > 0)
        facts_add(f, (const unsigned char *)buf, (size_t)n);
    g_mime_stream_reset(raw);
}

/*
 * Decode the transfer encoding of `wrapper` into a malloc'ed buffer. Decoding
 * never grows data (base64, quoted-printable and uuencode shrink it; 7bit, 8bit
 * and binary copy it), so the result is bounded by the message size. Returns 0
 * (with *out NULL for an empty result) or -1 when out of memory.
 */
static int decode(GMimeDataWrapper *wrapper, unsigned char **out, size_t *len)
{
    GMimeStream *mem = g_mime_stream_mem_new();
    GByteArray *arr;
    int rc = -1;

    *out = NULL;
    *len = 0;
    if (!mem)
        return -1;
    if (g_mime_data_wrapper_write_to_stream(wrapper, mem) < 0) {
        /* A stream error reads as "nothing decoded"; the caller reports it. */
        rc = 0;
        goto out;
    }
    arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    if (arr && arr->len) {
        *out = malloc(arr->len);
        if (!*out)
            goto out;
        memcpy(*out, arr->data, arr->len);
        *len = arr->len;
    }
    rc = 0;
out:
    g_object_unref(mem);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* data: URIs in HTML                                                       */
/* ------------------------------------------------------------------------ */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int uri_end(unsigned char c)
{
    return c == '"' || c == '\'' || c == ')' || c == '<' || c == '>' || c == '\0';
}

/* Decode a data: URI's payload [p, p+n): base64, or percent-encoding. */
static unsigned char *uri_payload(const unsigned char *p, size_t n, int base64, size_t *len,
                                  raw_facts *f)
{
    unsigned char *data = malloc(n ? n : 1);
    size_t k = 0;
    memset(f, 0, sizeof *f);
    *len = 0;
    if (!data)
        return NULL;
    if (base64) {
        int state = 0;
        guint32 save = 0;
        facts_add(f, p, n);
        *len = g_mime_encoding_base64_decode_step(p, n, data, &state, &save);
        return data;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = -1, lo = -1;
        if (p[i] == '%' && i + 2 < n) {
            hi = hexval(p[i + 1]);
            lo = hexval(p[i + 2]);
        }
        if (hi >= 0 && lo >= 0) {
            data[k++] = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else {
            data[k++] = p[i];
        }
    }
    *len = k;
    return data;
}

/* Check a found image against the limits and the encoding (data: URIs, uuencode). */
static void check_embedded(walker *w, cmm_image *im, size_t len, const char *what)
{
    if (!len)
        set_problem(w, im, CMM_EMPTY, "an empty %s", what);
    else if (len > w->lim->max_image_bytes)
        set_problem(w, im, CMM_TOO_LARGE, "%zu bytes, over the limit of %zu", len,
                    w->lim->max_image_bytes);
}

/*
 * One data: URI at html[i] ("data:" matched): its media type, parameters and
 * payload. Returns the offset after it. An image when its type is image/..., or
 * when its bytes are an image whatever its type says (an <img> shows it).
 */
static size_t data_uri(walker *w, const char *part, const unsigned char *html, size_t n, size_t i,
                       unsigned *count)
{
    size_t j = i + 5, type_start = j, params, start, len;
    char type[80], label[96];
    int base64 = 0;
    raw_facts f;

    while (j < n && j - type_start < 64 && (isalnum(html[j]) || strchr("/.+-_", html[j])))
        j++;
    snprintf(type, sizeof type, "%.*s", (int)(j - type_start), (const char *)html + type_start);
    /* data:[<type>][;<parameter>...],<payload> (RFC 2397); anything else is text. */
    if (j >= n || (html[j] != ',' && html[j] != ';'))
        return i + 5;
    /* Parameters (";base64", ";charset=...") up to the comma. */
    params = j;
    while (j < n && j - params < 200 && html[j] != ',' && !uri_end(html[j]))
        j++;
    if (j >= n || html[j] != ',')
        return i + 5;
    for (size_t k = params; k + 7 <= j; k++)
        if (!strncasecmp((const char *)html + k, ";base64", 7))
            base64 = 1;
    start = ++j;
    while (j < n && !uri_end(html[j]))
        j++;
    unsigned char *data = uri_payload(html + start, j - start, base64, &len, &f);
    if (!data) {
        w->nomem = 1;
        fail(w, "out of memory");
        return n;
    }
    int declared = !strncasecmp(type, "image/", 6) && type[6];
    if (!declared && !cmm_is_image_bytes(data, len)) {
        free(data);
        return j; /* text, a font, a sound: not an image */
    }
    if (!len) {
        free(data);
        data = NULL;
    }
    snprintf(label, sizeof label, "%s#%u", part, ++*count);
    cmm_image *im = add_image(w, label, NULL, *type ? type : "application/octet-stream",
                              CMM_BY_DATA_URI, data, len);
    if (!im)
        return n;
    check_embedded(w, im, len, "data: URI");
    if (im->problem == CMM_OK && base64 && (f.b64_chars + f.b64_pad) % 4)
        set_problem(w, im, CMM_BAD_ENCODING, "base64 data: URI ends mid-group (truncated)");
    return j;
}

/*
 * Every data: URI in `html` that is an image becomes one, labelled "<part>#<n>".
 * The text is read as a renderer reads it first: character references decoded
 * (`data&colon;`, `&#100;ata:`), tab, CR and LF dropped (htmlent.h). Remote images
 * (http...) are not images in the message: the milter never fetches anything.
 */
static void scan_data_uris(walker *w, const char *part, const unsigned char *raw, size_t raw_len)
{
    size_t n;
    unsigned char *html = cmm_html_decode(raw, raw_len, &n);
    unsigned count = 0;

    if (!html) {
        w->nomem = 1;
        fail(w, "out of memory");
        return;
    }
    for (size_t i = 0; i + 5 < n && !w->out->failed;) {
        if ((html[i] | 0x20) == 'd' && !strncasecmp((const char *)html + i, "data:", 5))
            i = data_uri(w, part, html, n, i, &count);
        else
            i++;
    }
    free(html);
}

/* ------------------------------------------------------------------------ */
/* uuencoded blocks in text                                                 */
/* ------------------------------------------------------------------------ */

/* The line at text[i]: its length without the line end, and where the next starts. */
static size_t next_line(const unsigned char *t, size_t n, size_t i, size_t *len)
{
    const unsigned char *nl = memchr(t + i, '\n', n - i);
    size_t e = nl ? (size_t)(nl - t) : n;
    *len = e - i;
    if (*len && t[e - 1] == '\r')
        (*len)--;
    return nl ? e + 1 : n;
}

/* "begin MODE NAME": the name's start and length, or 0. */
static int begin_line(const unsigned char *p, size_t n, size_t *name, size_t *name_len)
{
    size_t i = 6, digits = 0;
    if (n < 8 || memcmp(p, "begin ", 6))
        return 0;
    while (i < n && p[i] >= '0' && p[i] <= '7' && digits < 5)
        i++, digits++;
    if (digits < 3 || i >= n || p[i] != ' ')
        return 0;
    while (i < n && p[i] == ' ')
        i++;
    if (i == n)
        return 0;
    *name = i;
    *name_len = n - i;
    return 1;
}

/*
 * One uuencoded block whose "begin" line ends at text[body]: decode it up to its
 * "end" line. Returns where the scan goes on.
 */
static size_t uu_block(walker *w, const char *part, const unsigned char *t, size_t n, size_t body,
                       const char *name, unsigned *count)
{
    size_t i = body, len, end = n, stop = n;
    int ended = 0;

    while (i < n) {
        size_t next = next_line(t, n, i, &len);
        if (len == 3 && !memcmp(t + i, "end", 3)) {
            end = i;
            stop = next;
            ended = 1;
            break;
        }
        i = next;
    }
    unsigned char *data = malloc(end - body + 1);
    int state = GMIME_UUDECODE_STATE_BEGIN;
    guint32 save = 0;
    if (!data) {
        w->nomem = 1;
        fail(w, "out of memory");
        return n;
    }
    size_t got = g_mime_encoding_uudecode_step(t + body, end - body, data, &state, &save);
    if (!cmm_is_image_name(name) && !cmm_is_image_bytes(data, got)) {
        char label[96];
        snprintf(label, sizeof label, "%s#u%u", part, *count + 1);
        if (add_container(w, label, name, "application/octet-stream", data, got))
            ++*count;
        free(data);
        return stop; /* a document, an archive: not an image */
    }
    if (!got) {
        free(data);
        data = NULL;
    }
    char label[96];
    snprintf(label, sizeof label, "%s#u%u", part, ++*count);
    cmm_image *im = add_image(w, label, name, "application/octet-stream",
                              cmm_is_image_name(name) ? CMM_BY_NAME : CMM_BY_CONTENT, data, got);
    if (!im)
        return n;
    check_embedded(w, im, got, "uuencoded block");
    if (im->problem == CMM_OK && !ended)
        set_problem(w, im, CMM_BAD_ENCODING, "uuencoded block without its end line (truncated)");
    return stop;
}

/*
 * Mail clients show "begin 644 photo.jpg" ... "end" blocks inside a plain text body
 * as attachments (the way mail carried files before MIME). Each one that is an image
 * by its name or its bytes becomes one, labelled "<part>#u<n>".
 */
static void scan_uuencode(walker *w, const char *part, const unsigned char *t, size_t n)
{
    unsigned count = 0;
    for (size_t i = 0; i < n && !w->out->failed;) {
        size_t len, name, name_len;
        size_t next = next_line(t, n, i, &len);
        if (begin_line(t + i, len, &name, &name_len)) {
            char file[256];
            snprintf(file, sizeof file, "%.*s", (int)(name_len < 255 ? name_len : 255),
                     (const char *)t + i + name);
            next = uu_block(w, part, t, n, next, file, &count);
        }
        i = next;
    }
}

/*
 * HTML-ish text: a renderer may show it as a page (text/html, XHTML, and other
 * text/... that starts like markup).
 */
static int looks_like_html(const unsigned char *t, size_t n)
{
    static const char *const tags[] = {"<html", "<body", "<img", "<!doctype html", "<svg"};
    size_t look = n < 4096 ? n : 4096;
    for (size_t i = 0; i < look; i++) {
        if (t[i] != '<')
            continue;
        for (size_t k = 0; k < sizeof tags / sizeof tags[0]; k++)
            if (look - i >= strlen(tags[k]) &&
                !strncasecmp((const char *)t + i, tags[k], strlen(tags[k])))
                return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The walk                                                                 */
/* ------------------------------------------------------------------------ */

static void child_path(char *buf, size_t size, const char *path, int i)
{
    if (*path)
        snprintf(buf, size, "%s.%d", path, i);
    else
        snprintf(buf, size, "%d", i);
}

/*
 * A text part (or XHTML) is no image itself: what it shows is. data: URIs in markup,
 * uuencoded blocks in plain text.
 */
static void text_part(walker *w, const char *path, const char *subtype, int markup,
                      const unsigned char *data, size_t len)
{
    int plain = subtype && !strcasecmp(subtype, "plain");
    if (!data)
        return;
    if (markup || (!plain && looks_like_html(data, len)))
        scan_data_uris(w, path, data, len);
    else
        scan_uuencode(w, path, data, len);
}

/*
 * The text of an inline text/plain or text/html (or XHTML) part, for the images'
 * context (mailtext.h). Attachments are files, not the message's text.
 */
static void keep_text(walker *w, GMimeObject *obj, const char *subtype, int markup,
                      const unsigned char *data, size_t len)
{
    GMimeContentDisposition *disp = g_mime_object_get_content_disposition(obj);
    int plain = subtype && !strcasecmp(subtype, "plain");
    if (!w->out->text.max || (!markup && !plain) ||
        (disp && g_mime_content_disposition_is_attachment(disp)))
        return;
    if (cmm_text_part(&w->out->text, g_mime_object_get_content_type_parameter(obj, "charset"),
                      markup, data, len)) {
        w->nomem = 1;
        fail(w, "out of memory");
    }
}

/* The Content-ID of an image part, for the <img src="cid:..."> that shows it. */
static void set_content_id(walker *w, cmm_image *im, GMimeObject *obj)
{
    const char *id = g_mime_object_get_content_id(obj);
    if (id && *id) {
        im->content_id = strdup(id);
        if (!im->content_id) {
            w->nomem = 1;
            fail(w, "out of memory");
        }
    }
}

static void leaf(walker *w, GMimePart *part, const char *path)
{
    GMimeObject *obj = GMIME_OBJECT(part);
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    const char *type = ct ? g_mime_content_type_get_media_type(ct) : NULL;
    const char *subtype = ct ? g_mime_content_type_get_media_subtype(ct) : NULL;
    const char *filename = g_mime_part_get_filename(part);
    const char *cte = g_mime_object_get_header(obj, "Content-Transfer-Encoding");
    GMimeDataWrapper *wrapper = g_mime_part_get_content(part);
    int is_text = type && !strcasecmp(type, "text");
    int is_html = is_text && subtype && !strcasecmp(subtype, "html");
    int is_xhtml =
        type && subtype && !strcasecmp(type, "application") && !strcasecmp(subtype, "xhtml+xml");
    cmm_found_by by = CMM_BY_TYPE;
    int taken = 1; /* an image by its type or name, whatever the bytes */
    unsigned char *data = NULL;
    size_t len = 0;
    char mime_type[160];
    raw_facts f;

    snprintf(mime_type, sizeof mime_type, "%s/%s", type ? type : "text",
             subtype ? subtype : "plain");
    if (type && !strcasecmp(type, "image"))
        by = CMM_BY_TYPE;
    else if (cmm_is_image_name(filename))
        by = CMM_BY_NAME;
    else if (is_text || is_xhtml)
        taken = 0; /* only what it shows can be images */
    else
        by = CMM_BY_CONTENT, taken = 0; /* if the bytes say so */

    memset(&f, 0, sizeof f);
    if (wrapper) {
        read_raw_facts(wrapper, &f);
        if (decode(wrapper, &data, &len)) {
            w->nomem = 1;
            fail(w, "out of memory");
            return;
        }
    }
    if (!taken && (is_text || is_xhtml)) {
        keep_text(w, obj, subtype, is_html || is_xhtml, data, len);
        text_part(w, path, subtype, is_html || is_xhtml, data, len);
        free(data);
        return;
    }
    if (!taken && !cmm_is_image_bytes(data, len)) {
        add_container(w, path, filename, mime_type, data, len);
        free(data);
        return;
    }

    cmm_image *im = add_image(w, path, filename, mime_type, by, data, len);
    if (!im)
        return;
    set_content_id(w, im, obj);
    GMimeContentEncoding enc = g_mime_part_get_content_encoding(part);
    if (cte && enc == GMIME_CONTENT_ENCODING_DEFAULT) {
        /* GMime takes an unknown encoding for none: the bytes would be garbage. */
        char what[40];
        snprintf(what, sizeof what, "%s", cte);
        g_strstrip(what);
        set_problem(w, im, CMM_BAD_ENCODING, "unknown transfer encoding \"%s\"", what);
    } else if (!len && f.visible) {
        set_problem(w, im, CMM_BAD_ENCODING, "%zu encoded bytes decode to nothing", f.bytes);
    } else if (!len) {
        set_problem(w, im, CMM_EMPTY, "a 0-byte part");
    } else if (len > w->lim->max_image_bytes) {
        set_problem(w, im, CMM_TOO_LARGE, "%zu bytes, over the limit of %zu", len,
                    w->lim->max_image_bytes);
    } else if (enc == GMIME_CONTENT_ENCODING_BASE64 && (f.b64_chars + f.b64_pad) % 4) {
        /*
         * Complete base64 comes in groups of 4 characters. A body cut at a line end
         * still looks whole here; the image decoder then finds the image truncated.
         */
        set_problem(w, im, CMM_BAD_ENCODING, "base64 ends mid-group: the body is truncated");
    }
}

static void walk(walker *w, GMimeObject *obj, const char *path, size_t depth);

static void walk_message(walker *w, GMimeMessage *msg, const char *path, size_t depth)
{
    GMimeObject *root = msg ? g_mime_message_get_mime_part(msg) : NULL;
    char sub[256];

    if (!root)
        return;
    if (GMIME_IS_MULTIPART(root)) {
        walk(w, root, path, depth);
    } else {
        child_path(sub, sizeof sub, path, 1);
        walk(w, root, sub, depth);
    }
}

static void walk(walker *w, GMimeObject *obj, const char *path, size_t depth)
{
    char sub[256];

    if (w->out->failed)
        return;
    if (++w->out->n_parts > w->lim->max_parts) {
        fail(w, "more than %zu MIME parts", w->lim->max_parts);
        return;
    }
    if (depth > w->lim->max_depth) {
        fail(w, "MIME parts nested more than %zu levels deep", w->lim->max_depth);
        return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n && !w->out->failed; i++) {
            child_path(sub, sizeof sub, path, i + 1);
            walk(w, g_mime_multipart_get_part(mp, i), sub, depth + 1);
        }
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
        walk_message(w, g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj)), path, depth + 1);
    } else if (GMIME_IS_MESSAGE_PARTIAL(obj)) {
        /* A fragment cannot be judged without the others, which arrive separately. */
        fail(w, "part %s is a message/partial fragment", *path ? path : "1");
    } else if (GMIME_IS_PART(obj)) {
        leaf(w, GMIME_PART(obj), path);
    }
}

/* What GMime's header callback needs to check it against the pre-scan. */
typedef struct parse_guard {
    cmm_prescan *ps;
    GMimeStream *stream;
} parse_guard;

/*
 * GMime read a Content-Type header. One the pre-scan did not read the same way
 * means the two disagree on the structure, and the counts of the pre-scan would not
 * bound GMime's work: the stream is cut where GMime is, so that it stops at once.
 */
static void on_content_type(GMimeParser *parser, const char *header, const char *value,
                            gint64 offset, gpointer user_data)
{
    parse_guard *g = user_data;
    (void)parser;
    (void)header;
    if (offset < 0 || cmm_prescan_check(g->ps, (size_t)offset, value))
        g_mime_stream_set_bounds(g->stream, 0, g_mime_stream_tell(g->stream));
}

int cmm_walk_message(const void *msg, size_t len, const cmm_limits *lim, cmm_walk *out)
{
    walker w = {.lim = lim, .out = out};
    GByteArray *arr = NULL;
    GMimeStream *stream = NULL;
    GMimeParser *parser = NULL;
    GMimeMessage *message = NULL;
    cmm_prescan ps;
    parse_guard guard = {.ps = &ps};

    memset(out, 0, sizeof *out);
    memset(&ps, 0, sizeof ps);
    cmm_text_init(&out->text, lim->max_text_bytes);
    if (!msg || !len) {
        fail(&w, "an empty message");
        goto out;
    }
    /* Parts and nesting are counted before GMime builds anything (prescan.h). */
    if (cmm_prescan_run(msg, len, lim, &ps))
        w.nomem = 1;
    if (ps.failed) {
        out->n_parts = ps.n_parts;
        fail(&w, "%s", ps.why);
        goto out;
    }
    /*
     * Let GMime read the caller's buffer in place: a byte array that borrows it,
     * a stream that does not own the array, and the array's shell freed at the end
     * without its data. GMime only reads it.
     */
    arr = g_byte_array_new_take((guint8 *)(uintptr_t)msg, len);
    stream = g_mime_stream_mem_new_with_byte_array(arr);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
    guard.stream = stream;
    parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    g_mime_parser_set_header_regex(parser, "^Content-Type$", on_content_type, &guard);
    message = g_mime_parser_construct_message(parser, NULL);
    if (ps.failed) {
        w.nomem |= ps.nomem;
        fail(&w, "%s", ps.why);
        goto out;
    }
    if (!message) {
        fail(&w, "not a mail message");
        goto out;
    }
    if (cmm_text_subject(&out->text, g_mime_message_get_subject(message))) {
        w.nomem = 1;
        fail(&w, "out of memory");
    }
    walk_message(&w, message, "", 0);
out:
    if (message)
        g_object_unref(message);
    if (parser)
        g_object_unref(parser);
    if (stream)
        g_object_unref(stream);
    if (arr)
        g_byte_array_free(arr, FALSE);
    cmm_prescan_free(&ps);
    return w.nomem ? -1 : 0;
}
