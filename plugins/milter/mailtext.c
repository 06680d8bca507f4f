/*
 * mailtext.c - the text of a message kept for its images' context (see mailtext.h).
 *
 * Owns the conversion of a text part to UTF-8 (GMime's charset filter over the bytes
 * that can be kept, never the whole part), the caps on each text, the white space of
 * plain text made one space or one line end per run, and the joining of one image's
 * context. Everything it keeps is copied out of the walk's buffers, so it outlives
 * the GMime objects.
 */
#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailtext.h"

void cmm_text_init(cmm_text *t, size_t max)
{
    memset(t, 0, sizeof *t);
    t->max = max;
}

void cmm_text_free(cmm_text *t)
{
    for (size_t i = 0; i < t->n_imgs; i++) {
        free(t->imgs[i].cid);
        free(t->imgs[i].alt);
        free(t->imgs[i].title);
    }
    free(t->imgs);
    free(t->subject);
    free(t->plain);
    free(t->html);
    memset(t, 0, sizeof *t);
}

/* How many of the first n bytes at s fit in `room` without cutting a UTF-8 character. */
static size_t fit(const unsigned char *s, size_t n, size_t room)
{
    if (n <= room)
        return n;
    while (room > 0 && (s[room] & 0xc0) == 0x80)
        room--;
    return room;
}

int cmm_text_subject(cmm_text *t, const char *subject)
{
    size_t n;
    if (!t->max || !subject || !*subject || t->subject)
        return 0;
    n = fit((const unsigned char *)subject, strlen(subject), t->max);
    t->subject = malloc(n + 1);
    if (!t->subject)
        return -1;
    memcpy(t->subject, subject, n);
    t->subject[n] = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Charsets                                                                 */
/* ------------------------------------------------------------------------ */

static int is_utf8(const char *charset)
{
    static const char *const same[] = {"utf-8", "utf8", "us-ascii", "ascii"};
    if (!charset || !*charset)
        return 1;
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (!strcasecmp(charset, same[i]))
            return 1;
    return 0;
}

/*
 * The `n` bytes at `data` in `charset`, converted to UTF-8 by GMime into a new buffer
 * (*out, *out_len). *out stays NULL when no conversion is needed or GMime knows no
 * such charset (the bytes are then read as they are). 0, or -1 when out of memory.
 */
static int to_utf8(const char *charset, const unsigned char *data, size_t n, unsigned char **out,
                   size_t *out_len)
{
    GMimeFilter *f;
    GMimeStream *mem, *filtered;
    GByteArray *arr;
    int rc = 0;

    *out = NULL;
    *out_len = 0;
    if (is_utf8(charset))
        return 0;
    f = g_mime_filter_charset_new(charset, "UTF-8");
    if (!f)
        return 0;
    mem = g_mime_stream_mem_new();
    filtered = g_mime_stream_filter_new(mem);
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), f);
    g_object_unref(f);
    g_mime_stream_write(filtered, (const char *)data, n);
    g_mime_stream_flush(filtered);
    arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    *out = malloc(arr && arr->len ? arr->len : 1);
    if (!*out) {
        rc = -1;
    } else if (arr && arr->len) {
        memcpy(*out, arr->data, arr->len);
        *out_len = arr->len;
    }
    g_object_unref(filtered);
    g_object_unref(mem);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Parts                                                                    */
/* ------------------------------------------------------------------------ */

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || !c;
}

/*
 * Plain text: each run of white space (and NUL) one space, or one line end when it
 * held one; at most t->max bytes. Text with nothing but white space is not kept.
 */
static int keep_plain(cmm_text *t, const unsigned char *s, size_t n)
{
    char *o = malloc(t->max + 1);
    size_t k = 0, i = 0;
    if (!o)
        return -1;
    while (i < n && k < t->max) {
        size_t j = i;
        int line = 0;
        while (j < n && is_ws(s[j]))
            line |= s[j++] == '\n';
        if (j > i && k && j < n)
            o[k++] = line ? '\n' : ' ';
        for (i = j; j < n && !is_ws(s[j]); j++)
            ;
        size_t m = fit(s + i, j - i, t->max - k);
        memcpy(o + k, s + i, m);
        k += m;
        if (m < j - i)
            break;
        i = j;
    }
    o[k] = 0;
    if (!k) {
        free(o);
        return 0;
    }
    t->plain = o;
    t->plain_len = k;
    return 0;
}

/* An HTML part: its text (when none is kept yet) and its cid: images. */
static int keep_html(cmm_text *t, const unsigned char *s, size_t n)
{
    cmh_limits lim = {.max_text = t->html || t->plain ? 0 : t->max,
                      .max_imgs = CMM_HTML_IMGS - t->n_imgs,
                      .max_attr = CMM_ATTR_MAX};
    cmh_doc d;
    int rc = cmh_read(s, n, &lim, &d);

    t->n_html++;
    if (!rc && d.n_imgs && t->n_imgs + d.n_imgs > t->cap_imgs) {
        cmh_img *grown = realloc(t->imgs, (t->n_imgs + d.n_imgs) * sizeof *grown);
        if (!grown)
            rc = -1;
        else
            t->imgs = grown, t->cap_imgs = t->n_imgs + d.n_imgs;
    }
    if (!rc) {
        if (d.n_imgs)
            memcpy(t->imgs + t->n_imgs, d.imgs, d.n_imgs * sizeof *d.imgs);
        t->n_imgs += d.n_imgs;
        d.n_imgs = 0; /* the strings are the text's now */
        if (d.len && !t->html && !t->plain) {
            t->html = d.text;
            t->html_len = d.len;
            d.text = NULL;
        }
    }
    cmh_doc_free(&d);
    return rc;
}

int cmm_text_part(cmm_text *t, const char *charset, int html, const unsigned char *data, size_t len)
{
    unsigned char *conv;
    size_t n, conv_len;
    int rc;

    if (!t->max || !data || !len)
        return 0;
    if (html ? t->n_html >= CMM_HTML_PARTS : t->plain != NULL)
        return 0;
    /* What can be kept: all of max for plain text (4 bytes a character at most in any
     * charset GMime converts), a bounded prefix of HTML (its markup is not kept). */
    n = html ? CMM_HTML_READ : 4 * t->max + 4;
    if (n > len)
        n = len;
    if (to_utf8(charset, data, n, &conv, &conv_len))
        return -1;
    if (conv) {
        data = conv;
        n = conv_len;
    }
    rc = html ? keep_html(t, data, n) : keep_plain(t, data, n);
    free(conv);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* One image's context                                                      */
/* ------------------------------------------------------------------------ */

/* Append s (n bytes) on a line of its own, within max bytes in all. */
static void put(char *o, size_t *k, size_t max, const char *s, size_t n)
{
    size_t m;
    if (!s || !n || *k + (*k ? 1 : 0) >= max)
        return;
    if (*k)
        o[(*k)++] = '\n';
    m = fit((const unsigned char *)s, n, max - *k);
    memcpy(o + *k, s, m);
    *k += m;
}

static const cmh_img *img_of(const cmm_text *t, const char *content_id)
{
    for (size_t i = 0; content_id && *content_id && i < t->n_imgs; i++)
        if (!strcasecmp(t->imgs[i].cid, content_id))
            return &t->imgs[i];
    return NULL;
}

int cmm_text_context(const cmm_text *t, const char *content_id, const char *filename, char **out,
                     size_t *len)
{
    const cmh_img *im = img_of(t, content_id);
    const char *body = t->plain ? t->plain : t->html;
    size_t k = 0;
    char *o;

    *out = NULL;
    *len = 0;
    if (!t->max)
        return 0;
    o = malloc(t->max + 1);
    if (!o)
        return -1;
    if (im && im->alt)
        put(o, &k, t->max, im->alt, strlen(im->alt));
    if (im && im->title)
        put(o, &k, t->max, im->title, strlen(im->title));
    if (filename)
        put(o, &k, t->max, filename, strlen(filename));
    put(o, &k, t->max, t->subject, t->subject ? strlen(t->subject) : 0);
    put(o, &k, t->max, body, t->plain ? t->plain_len : t->html_len);
    o[k] = 0;
    if (!k) {
        free(o);
        return 0;
    }
    *out = o;
    *len = k;
    return 0;
}
