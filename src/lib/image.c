/*
 * image.c - from untrusted image bytes to a model's input tensor, with libvips.
 *
 * The pipeline follows Hugging Face's CLIPImageProcessor: flatten to RGB (alpha
 * composited onto white, with PIL's rounding), resize the shortest side to the model's size with PIL's
 * bicubic filter (resample.c; libvips decodes, PIL's arithmetic resizes), centre
 * crop with a floored offset, then scale to [0, 1] and normalise with the model's
 * mean/std. Unlike HF we apply the EXIF orientation first: a moderator judges the
 * picture a person sees.
 *
 * Safety: the size limits are checked from the header, before any pixel is
 * decoded; loaders outside the allow-list are blocked in clipmod_init(); truncated
 * files fail instead of decoding to grey. Only the first frame is read here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>

#include "common.h"
#include "image.h"
#include "model.h"
#include "resample.h"

/*
 * JPEG shrink-on-load keeps the short side at least this many times the target and
 * at least SHRINK_ON_LOAD_MIN pixels, so the DCT-domain shrink stays a small part of
 * the filtering: measured against PIL at full resolution, a 4000x2660 photo at 224
 * differs by 0.0015 on average, where shrinking close to small targets (32 px)
 * changed pixels by up to 1.5.
 */
#define SHRINK_ON_LOAD_MARGIN 3
#define SHRINK_ON_LOAD_MIN 512

/* Turn the libvips error buffer into our message and clear it. */
static clipmod_error vips_fail(char *errbuf, clipmod_error err, const char *what)
{
    char *msg = vips_error_buffer_copy();
    char *nl = msg ? strchr(msg, '\n') : NULL;
    if (nl)
        *nl = '\0';
    cm_error(errbuf, err, "%s: %s", what, msg && *msg ? msg : clipmod_strerror(err));
    g_free(msg);
    return err;
}

static clipmod_error check_header(VipsImage *im, const clipmod_limits *lim, const char *what,
                                  char *errbuf)
{
    const uint64_t w = (uint64_t)vips_image_get_width(im), h = (uint64_t)vips_image_get_height(im);
    if (w > lim->max_side || h > lim->max_side)
        return cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT,
                        "%s: %llux%llu pixels: a side exceeds the limit of %u", what,
                        (unsigned long long)w, (unsigned long long)h, lim->max_side);
    if (w * h > lim->max_pixels)
        return cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT,
                        "%s: %llux%llu = %llu pixels exceeds the limit of %llu", what,
                        (unsigned long long)w, (unsigned long long)h,
                        (unsigned long long)(w * h), (unsigned long long)lim->max_pixels);
    return CLIPMOD_OK;
}

/* The allow-list lives in init.c; a loader it blocked shows up as "is blocked". */
static clipmod_error open_failed(char *errbuf, const char *what)
{
    const char *buf = vips_error_buffer();
    if (strstr(buf, "blocked"))
        return vips_fail(errbuf, CLIPMOD_E_IMAGE_BLOCKED, what);
    return vips_fail(errbuf, CLIPMOD_E_IMAGE_DECODE, what);
}

/*
 * Open lazily (header only), check limits, and reopen JPEGs with shrink-on-load when
 * they are much larger than needed. `buf` NULL means `path` names a file.
 */
static clipmod_error open_image(const char *path, const void *buf, size_t len,
                                const clipmod_limits *lim, int target, VipsImage **out,
                                int *shrunk, char *errbuf)
{
    const char *what = path ? path : "image";
    const char *loader = path ? vips_foreign_find_load(path) : vips_foreign_find_load_buffer(buf, len);
    VipsImage *im;
    clipmod_error rc;

    *out = NULL;
    *shrunk = 1;
    if (!loader)
        return open_failed(errbuf, what);
    if (path)
        im = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                      VIPS_FAIL_ON_TRUNCATED, NULL);
    else
        im = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                        VIPS_FAIL_ON_TRUNCATED, NULL);
    if (!im)
        return open_failed(errbuf, what);
    if ((rc = check_header(im, lim, what, errbuf))) {
        g_object_unref(im);
        return rc;
    }

    int shortest = VIPS_MIN(vips_image_get_width(im), vips_image_get_height(im));
    int shrink = 1;
    const int keep = VIPS_MAX(SHRINK_ON_LOAD_MARGIN * target, SHRINK_ON_LOAD_MIN);
    while (shrink < 8 && shortest / (shrink * 2) >= keep)
        shrink *= 2;
    if (shrink > 1 && g_str_has_prefix(loader, "VipsForeignLoadJpeg")) {
        g_object_unref(im);
        if (path)
            im = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                          VIPS_FAIL_ON_TRUNCATED, "shrink", shrink, NULL);
        else
            im = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                            "fail_on", VIPS_FAIL_ON_TRUNCATED, "shrink", shrink,
                                            NULL);
        if (!im)
            return open_failed(errbuf, what);
        *shrunk = shrink;
    }
    *out = im;
    return CLIPMOD_OK;
}

/*
 * Keep `*im` pointing at the newest image of the chain, dropping the previous one.
 * `rc` is the vips call's result; `next` must be read after that call has run, so
 * callers pass the address of its output.
 */
static int step(VipsImage **im, int rc, VipsImage **next)
{
    if (rc)
        return -1;
    g_object_unref(*im);
    *im = *next;
    *next = NULL;
    return 0;
}

/* Orientation, sRGB, 8 bits: 3 bands, or 4 when there is alpha (flattened later). */
static int to_rgb8(VipsImage **im)
{
    VipsImage *t = NULL;
    if (step(im, vips_autorot(*im, &t, NULL), &t))
        return -1;
    if ((*im)->Type != VIPS_INTERPRETATION_sRGB &&
        step(im, vips_colourspace(*im, &t, VIPS_INTERPRETATION_sRGB, NULL), &t))
        return -1;
    if ((*im)->BandFmt != VIPS_FORMAT_UCHAR && step(im, vips_cast_uchar(*im, &t, NULL), &t))
        return -1;
    const int want = vips_image_hasalpha(*im) ? 4 : 3;
    if ((*im)->Bands > want && step(im, vips_extract_band(*im, &t, 0, "n", want, NULL), &t))
        return -1;
    if ((*im)->Bands != want) {
        vips_error("clipmod", "%d bands after conversion to sRGB", (*im)->Bands);
        return -1;
    }
    return 0;
}

/*
 * Composite RGBA onto white in place, leaving packed RGB: PIL's alpha_composite
 * rounding, (2 (c a + 255 (255 - a)) + 255) / 510, which transformers'
 * convert_to_rgb applies. libvips' flatten truncates instead.
 */
static void flatten_white(unsigned char *px, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned a = px[i * 4 + 3];
        for (int c = 0; c < 3; c++)
            px[i * 3 + c] = (unsigned char)((2 * (px[i * 4 + c] * a + 255 * (255 - a)) + 255) / 510);
    }
}

/* HF's resize rule: the shortest side becomes `side`, the long side is truncated. */
static void resized_size(int w, int h, int side, int *nw, int *nh)
{
    if (w <= h) {
        *nw = side;
        *nh = (int)((int64_t)side * h / w);
    } else {
        *nh = side;
        *nw = (int)((int64_t)side * w / h);
    }
}

static clipmod_error load(const clipmod_model *model, const char *path, const void *buf,
                          size_t len, const clipmod_limits *lim_in, clipmod_image **out,
                          char *errbuf)
{
    const cm_config *cfg = &model->cfg;
    const char *what = path ? path : "image";
    clipmod_limits lim;
    clipmod_image *img = NULL;
    VipsImage *im = NULL;
    unsigned char *rgb = NULL, *resized = NULL;
    clipmod_error rc;

    *out = NULL;
    if (!cm_initialised())
        return cm_error(errbuf, CLIPMOD_E_INIT, "clipmod_init() has not been called");
    if (lim_in)
        lim = *lim_in;
    else
        clipmod_limits_default(&lim);

    if (path) {
        struct stat sb;
        if (stat(path, &sb) < 0)
            return cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
        if (!S_ISREG(sb.st_mode))
            return cm_error(errbuf, CLIPMOD_E_IO, "%s: not a regular file", path);
        len = (size_t)sb.st_size;
    }
    if (len == 0)
        return cm_error(errbuf, CLIPMOD_E_IMAGE_DECODE, "%s: empty file", what);
    if (len > lim.max_file_bytes)
        return cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT, "%s: %zu bytes exceeds the limit of %llu",
                        what, len, (unsigned long long)lim.max_file_bytes);

    int shrunk;
    if ((rc = open_image(path, buf, len, &lim, cfg->resize_short, &im, &shrunk, errbuf)))
        goto out;
    if (to_rgb8(&im)) {
        rc = vips_fail(errbuf, CLIPMOD_E_IMAGE_DECODE, what);
        goto out;
    }
    /* Size after orientation and shrink-on-load. */
    int src_w = im->Xsize, src_h = im->Ysize;
    size_t nbytes = 0;
    rgb = vips_image_write_to_memory(im, &nbytes);
    if (!rgb || nbytes != (size_t)src_w * src_h * im->Bands) {
        rc = vips_fail(errbuf, CLIPMOD_E_IMAGE_DECODE, what);
        goto out;
    }
    if (im->Bands == 4)
        flatten_white(rgb, (size_t)src_w * src_h);
    int nw, nh;
    resized_size(src_w, src_h, cfg->resize_short, &nw, &nh);
    if (nw < cfg->crop || nh < cfg->crop) {
        rc = cm_error(errbuf, CLIPMOD_E_IMAGE_DECODE, "%s: %dx%d is too narrow to crop", what,
                      src_w, src_h);
        goto out;
    }
    resized = malloc((size_t)nw * nh * 3);
    if (!resized || cm_resample_bicubic(rgb, src_w, src_h, resized, nw, nh)) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }

    const int s = cfg->crop, left = (nw - s) / 2, top = (nh - s) / 2;
    img = calloc(1, sizeof *img);
    if (!img || !(img->pixels = cm_alloc((size_t)3 * s * s * sizeof(float)))) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    img->size = s;
    /* Report the size of the picture, not of its shrunk-on-load decode. */
    img->src_width = src_w * shrunk;
    img->src_height = src_h * shrunk;
    for (int c = 0; c < 3; c++) {
        const float scale = 1.0f / (255.0f * cfg->std[c]), shift = cfg->mean[c] / cfg->std[c];
        float *dst = img->pixels + (size_t)c * s * s;
        for (int y = 0; y < s; y++) {
            const uint8_t *row = resized + ((size_t)(top + y) * nw + left) * 3;
            for (int x = 0; x < s; x++)
                dst[y * s + x] = row[x * 3 + c] * scale - shift;
        }
    }
    *out = img;
    img = NULL;
out:
    if (im)
        g_object_unref(im);
    g_free(rgb);
    free(resized);
    clipmod_image_free(img);
    vips_error_clear();
    return rc;
}

clipmod_error clipmod_image_load_file(const clipmod_model *model, const char *path,
                                      const clipmod_limits *lim, clipmod_image **out,
                                      char *errbuf)
{
    if (!out)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "no output pointer");
    *out = NULL;
    if (!model || !path)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "model and path are required");
    return load(model, path, NULL, 0, lim, out, errbuf);
}

clipmod_error clipmod_image_load_memory(const clipmod_model *model, const void *buf, size_t len,
                                        const clipmod_limits *lim, clipmod_image **out,
                                        char *errbuf)
{
    if (!out)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "no output pointer");
    *out = NULL;
    if (!model || (!buf && len))
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "model and buffer are required");
    return load(model, NULL, buf ? buf : "", len, lim, out, errbuf);
}

void clipmod_image_free(clipmod_image *img)
{
    if (!img)
        return;
    cm_free(img->pixels);
    free(img);
}

void clipmod_image_source_size(const clipmod_image *img, int *width, int *height)
{
    if (width)
        *width = img ? img->src_width : 0;
    if (height)
        *height = img ? img->src_height : 0;
}

const float *clipmod_image_pixels(const clipmod_image *img, int *size)
{
    if (size)
        *size = img ? img->size : 0;
    return img ? img->pixels : NULL;
}
