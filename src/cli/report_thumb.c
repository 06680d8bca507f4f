/*
 * report_thumb.c - the gallery thumbnails of the --report page, as data: URIs.
 *
 * Owns making one small JPEG of an image that evaluate scanned: the file is read once
 * (at most REPORT_THUMB_INPUT_BYTES), libvips' loader for it must be one of the
 * plain raster formats below (so a file the scanner accepted never reaches another
 * loader here either), vips_thumbnail_buffer() shrinks it on load to fit a
 * REPORT_THUMB_PX square, alpha is flattened onto white, and the JPEG is written
 * base64-encoded. The page's budget (report.h) bounds what thumbnails add to it.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "report.h"

/* libvips loaders a thumbnail may use (class name prefixes). */
static const char *const allowed_loaders[] = {
    "VipsForeignLoadJpeg",  "VipsForeignLoadPng",  "VipsForeignLoadWebp", "VipsForeignLoadGif",
    "VipsForeignLoadNsgif", "VipsForeignLoadHeif", "VipsForeignLoadTiff",
};

static int loader_allowed(const void *buf, size_t len)
{
    const char *name = vips_foreign_find_load_buffer(buf, len);
    for (size_t i = 0; name && i < sizeof allowed_loaders / sizeof allowed_loaders[0]; i++)
        if (!strncmp(name, allowed_loaders[i], strlen(allowed_loaders[i])))
            return 1;
    return 0;
}

/* The whole file, if it is at most REPORT_THUMB_INPUT_BYTES; NULL otherwise. */
static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        const long size = ftell(f);
        if (size > 0 && size <= REPORT_THUMB_INPUT_BYTES && fseek(f, 0, SEEK_SET) == 0)
            buf = malloc((size_t)size);
        if (buf) {
            *len = fread(buf, 1, (size_t)size, f);
            if (*len != (size_t)size) {
                free(buf);
                buf = NULL;
            }
        }
    }
    fclose(f);
    return buf;
}

/* A JPEG thumbnail of the image in buf; g_free() the result. */
static void *thumbnail_jpeg(const void *buf, size_t len, size_t *out_len)
{
    VipsImage *t = NULL, *flat = NULL;
    void *jpeg = NULL;
    if (vips_thumbnail_buffer((void *)buf, len, &t, REPORT_THUMB_PX, "height", REPORT_THUMB_PX,
                              NULL))
        goto out;
    if (vips_image_hasalpha(t)) {
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
        const int rc = vips_flatten(t, &flat, "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
        if (rc)
            goto out;
    }
    if (vips_jpegsave_buffer(flat ? flat : t, &jpeg, out_len, "Q", 75, "strip", TRUE, NULL))
        jpeg = NULL;
out:
    if (!jpeg)
        vips_error_clear();
    if (flat)
        g_object_unref(flat);
    if (t)
        g_object_unref(t);
    return jpeg;
}

int report_thumb_uri(rbuf *b, const char *path, report_thumbs *budget)
{
    size_t len = 0, jlen = 0;
    void *buf = read_file(path, &len);
    void *jpeg = buf && loader_allowed(buf, len) ? thumbnail_jpeg(buf, len, &jlen) : NULL;
    int rc = -1;
    free(buf);
    if (!jpeg || jlen > REPORT_THUMB_MAX_BYTES) {
        budget->failed++;
    } else if (budget->bytes_used + jlen > REPORT_THUMBS_MAX_BYTES) {
        budget->over_budget++;
    } else {
        gchar *b64 = g_base64_encode(jpeg, jlen);
        if (b64) {
            rbuf_put(b, "data:image/jpeg;base64,");
            rbuf_put(b, b64);
            g_free(b64);
            budget->bytes_used += jlen;
            budget->made++;
            rc = 0;
        }
    }
    g_free(jpeg);
    return rc;
}
