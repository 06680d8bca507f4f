/*
 * containers.c - count the images inside zip archives and PDFs (see containers.h).
 *
 * Zip (APPNOTE 6.3): the end-of-central-directory record is found in the last
 * 64 KiB + 22 bytes, the zip64 one through its locator when a count or an offset
 * is saturated; each central directory header is read within the directory's
 * declared size and the part's bytes (an archive with bytes before it, such as a
 * self-extractor, is read from where its directory really is). An entry is an image
 * when its name has an image extension or, stored uncompressed, its first bytes
 * are an image. Every length is checked before it is used.
 *
 * PDF (ISO 32000): every name token is read (with its #xx escapes, which can spell
 * /Im#61ge), and a /Subtype name followed by an /Image name counts one image.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "containers.h"
#include "mime.h"

const char *cmm_container_kind_name(cmm_container_kind k)
{
    switch (k) {
    case CMM_ZIP:
        return "zip";
    case CMM_OFFICE:
        return "office";
    case CMM_PDF:
        return "pdf";
    }
    return "unknown";
}

static uint32_t le16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const unsigned char *p)
{
    return le16(p) | le16(p + 2) << 16;
}

static uint64_t le64(const unsigned char *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

/* ------------------------------------------------------------------------ */
/* Zip                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct zip_dir {
    uint64_t entries, size, offset;
    size_t eocd; /* where the end record is */
} zip_dir;

static void unreadable(cmm_count *c, const char *why)
{
    c->unreadable = 1;
    snprintf(c->why, sizeof c->why, "%s", why);
}

/* Find the end of central directory record (and the zip64 one when needed). */
static int zip_end(const unsigned char *d, size_t n, zip_dir *z, cmm_count *c)
{
    size_t lo = n > 22 + 65535 ? n - 22 - 65535 : 0, i;
    if (n < 22) {
        unreadable(c, "too short for a zip archive");
        return -1;
    }
    for (i = n - 22 + 1; i-- > lo;)
        if (!memcmp(d + i, "PK\x05\x06", 4))
            break;
    if (i + 1 == lo || memcmp(d + i, "PK\x05\x06", 4)) {
        unreadable(c, "no zip central directory (cut or not a zip)");
        return -1;
    }
    z->eocd = i;
    z->entries = le16(d + i + 10);
    z->size = le32(d + i + 12);
    z->offset = le32(d + i + 16);
    if (z->entries != 0xffff && z->size != 0xffffffffu && z->offset != 0xffffffffu)
        return 0;
    /* zip64: the locator sits right before the end record. */
    if (i < 20 || memcmp(d + i - 20, "PK\x06\x07", 4)) {
        unreadable(c, "zip64 archive without its locator");
        return -1;
    }
    uint64_t at = le64(d + i - 20 + 8);
    if (at > n || n - at < 56 || memcmp(d + at, "PK\x06\x06", 4)) {
        unreadable(c, "zip64 end record out of place");
        return -1;
    }
    z->entries = le64(d + at + 32);
    z->size = le64(d + at + 40);
    z->offset = le64(d + at + 48);
    z->eocd = (size_t)at;
    return 0;
}

/* The first bytes of a stored (uncompressed) entry whose local header is at `at`. */
static int stored_is_image(const unsigned char *d, size_t n, uint64_t at)
{
    if (at > n || n - at < 30 || memcmp(d + at, "PK\x03\x04", 4))
        return 0;
    uint64_t data = at + 30 + le16(d + at + 26) + le16(d + at + 28);
    if (data >= n)
        return 0;
    return cmm_is_image_bytes(d + data, n - data < 32 ? n - data : 32);
}

static void zip_count(const unsigned char *d, size_t n, cmm_count *c)
{
    zip_dir z;
    uint64_t start;
    size_t p;

    c->kind = CMM_ZIP;
    if (zip_end(d, n, &z, c))
        return;
    if (z.entries > CMM_ZIP_MAX_ENTRIES) {
        snprintf(c->why, sizeof c->why, "more than %d entries", CMM_ZIP_MAX_ENTRIES);
        c->unreadable = 1;
        return;
    }
    /* Where the directory really is: as declared, or right before the end record. */
    start = z.offset;
    if (z.size > z.eocd) {
        unreadable(c, "zip central directory larger than the archive");
        return;
    }
    if (start > n || n - start < 4 || memcmp(d + start, "PK\x01\x02", 4))
        start = z.eocd - z.size;
    p = (size_t)start;
    for (uint64_t k = 0; k < z.entries; k++) {
        if (p > z.eocd || z.eocd - p < 46 || memcmp(d + p, "PK\x01\x02", 4)) {
            unreadable(c, "zip central directory is damaged");
            return;
        }
        size_t name_len = le16(d + p + 28), extra = le16(d + p + 30), comment = le16(d + p + 32);
        size_t whole = 46 + name_len + extra + comment;
        if (z.eocd - p < whole) {
            unreadable(c, "zip central directory is damaged");
            return;
        }
        char name[1024];
        snprintf(name, sizeof name, "%.*s", (int)(name_len < 1023 ? name_len : 1023),
                 (const char *)d + p + 46);
        int dir = name_len && d[p + 46 + name_len - 1] == '/';
        if (!strcmp(name, "[Content_Types].xml") || !strcmp(name, "mimetype"))
            c->kind = CMM_OFFICE; /* OOXML and OpenDocument */
        if (!dir) {
            c->entries++;
            if (cmm_is_image_name(name) ||
                (le16(d + p + 10) == 0 && stored_is_image(d, n, le32(d + p + 42))))
                c->images++;
        }
        p += whole;
    }
}

/* ------------------------------------------------------------------------ */
/* PDF                                                                      */
/* ------------------------------------------------------------------------ */

static int pdf_delim(unsigned char ch)
{
    return strchr("()<>[]{}/%", ch) != NULL || ch == 0 || ch == ' ' || ch == '\t' || ch == '\r' ||
           ch == '\n' || ch == '\f';
}

static int hexdig(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The name token after the '/' at d[i], #xx decoded into buf ("" when longer than 15). */
static size_t pdf_name(const unsigned char *d, size_t n, size_t i, char *buf)
{
    size_t k = 0;
    int too_long = 0;
    for (i++; i < n && !pdf_delim(d[i]); i++) {
        unsigned char ch = d[i];
        if (ch == '#' && i + 2 < n) {
            int hi = hexdig(d[i + 1]);
            int lo = hexdig(d[i + 2]);
            if (hi >= 0 && lo >= 0) {
                ch = (unsigned char)(hi * 16 + lo);
                i += 2;
            }
        }
        if (k < 15)
            buf[k++] = (char)ch;
        else
            too_long = 1; /* longer than any name looked for */
    }
    buf[too_long ? 0 : k] = 0;
    return i;
}

static void pdf_count(const unsigned char *d, size_t n, cmm_count *c)
{
    char name[16];
    int after_subtype = 0;

    c->kind = CMM_PDF;
    for (size_t i = 0; i < n;) {
        unsigned char ch = d[i];
        if (ch == '/') {
            i = pdf_name(d, n, i, name);
            if (after_subtype && !strcmp(name, "Image"))
                c->images++;
            after_subtype = !strcmp(name, "Subtype");
        } else if (ch == '%') {
            while (i < n && d[i] != '\r' && d[i] != '\n')
                i++; /* a comment */
        } else {
            if (!(ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f' || ch == 0))
                after_subtype = 0;
            i++;
        }
    }
}

static int is_pdf(const unsigned char *d, size_t n)
{
    size_t look = n < 1024 ? n : 1024;
    for (size_t i = 0; i + 5 <= look; i++)
        if (!memcmp(d + i, "%PDF-", 5))
            return 1;
    return 0;
}

int cmm_container_count(const unsigned char *data, size_t len, const char *filename,
                        const char *content_type, cmm_count *out)
{
    static const char *const zip_names[] = {".zip", ".docx", ".xlsx", ".pptx", ".odt",
                                            ".ods", ".odp",  ".jar",  ".epub"};
    int zip = len >= 4 && (!memcmp(data, "PK\x03\x04", 4) || !memcmp(data, "PK\x05\x06", 4));
    int pdf = data && is_pdf(data, len);

    memset(out, 0, sizeof *out);
    for (size_t i = 0; !zip && !pdf && i < sizeof zip_names / sizeof zip_names[0]; i++)
        zip = ends_with(filename, zip_names[i]);
    if (!zip && !pdf)
        zip = content_type && (!strcasecmp(content_type, "application/zip") ||
                               !strcasecmp(content_type, "application/x-zip-compressed"));
    if (!zip && !pdf)
        pdf = ends_with(filename, ".pdf") ||
              (content_type && !strcasecmp(content_type, "application/pdf"));
    if (pdf)
        pdf_count(data, data ? len : 0, out);
    else if (zip && data)
        zip_count(data, len, out);
    else if (zip)
        unreadable(out, "an empty zip archive part"), out->kind = CMM_ZIP;
    return zip || pdf;
}
