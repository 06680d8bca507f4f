/*
 * image.c - from untrusted image bytes to a model's input tensor, with libvips.
 *
 * The pipeline follows Hugging Face's CLIPImageProcessor: flatten to RGB (alpha
 * composited onto white, with PIL's rounding), resize the shortest side to the model's size with
 * PIL's bicubic filter (resample.c; libvips decodes, PIL's arithmetic resizes), centre crop with a
 * floored offset, then scale to [0, 1] and normalise with the model's mean/std. Unlike HF we apply
 * the EXIF orientation first: a moderator judges the picture a person sees.
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
#define SHRINK_ON_LOAD_MIN    512

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
                        (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                        (unsigned long long)lim->max_pixels);
    return CLIPMOD_OK;
}

/* The allow-list lives in init.c; a loader it blocked shows up as "is blocked". */
static clipmod_error open_failed(char *errbuf, const char *what, clipmod_reason *reason)
{
    const char *buf = vips_error_buffer();
    if (strstr(buf, "blocked")) {
        *reason = CLIPMOD_REASON_BLOCKED;
        return vips_fail(errbuf, CLIPMOD_E_IMAGE_BLOCKED, what);
    }
    *reason = CLIPMOD_REASON_DECODE_ERROR;
    return vips_fail(errbuf, CLIPMOD_E_IMAGE_DECODE, what);
}

static VipsImage *open_with(const char *path, const void *buf, size_t len, int n, int shrink)
{
    /* "n" (pages) exists for multi-page loaders only, "shrink" for JPEG only. */
    if (shrink > 1)
        return path ? vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                               VIPS_FAIL_ON_TRUNCATED, "shrink", shrink, NULL)
                    : vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                                 "fail_on", VIPS_FAIL_ON_TRUNCATED, "shrink",
                                                 shrink, NULL);
    if (n != 1)
        return path ? vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                               VIPS_FAIL_ON_TRUNCATED, "n", n, NULL)
                    : vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                                 "fail_on", VIPS_FAIL_ON_TRUNCATED, "n", n, NULL);
    return path ? vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                           VIPS_FAIL_ON_TRUNCATED, NULL)
                : vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                             "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
}

/*
 * Open lazily (header only) and check the limits before any pixel is decoded. An
 * animation is reopened with all its pages stacked (read sequentially, one page in
 * memory at a time); a large JPEG is reopened with shrink-on-load. `buf` NULL means
 * `path` names a file. *pages receives the page count, *shrunk the JPEG shrink.
 */
static clipmod_error open_image(const char *path, const void *buf, size_t len,
                                const cm_image_opts *o, int target, VipsImage **out, int *pages,
                                int *shrunk, clipmod_reason *reason, char *errbuf)
{
    const char *what = path ? path : "image";
    const char *loader =
        path ? vips_foreign_find_load(path) : vips_foreign_find_load_buffer(buf, len);
    VipsImage *im;
    clipmod_error rc;

    *out = NULL;
    *shrunk = 1;
    *pages = 1;
    if (!loader) {
        *reason = CLIPMOD_REASON_UNSUPPORTED;
        return vips_fail(errbuf, CLIPMOD_E_IMAGE_DECODE, what);
    }
    if (!(im = open_with(path, buf, len, 1, 1)))
        return open_failed(errbuf, what, reason);
    if ((rc = check_header(im, &o->lim, what, errbuf))) {
        *reason = CLIPMOD_REASON_TOO_MANY_PIXELS;
        g_object_unref(im);
        return rc;
    }

    const int n = vips_image_get_n_pages(im);
    if ((uint64_t)n > o->max_frames) {
        g_object_unref(im);
        *reason = CLIPMOD_REASON_TOO_MANY_FRAMES;
        return cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT, "%s: %d frames exceeds the limit of %llu",
                        what, n, (unsigned long long)o->max_frames);
    }
    if (n > 1 && o->samples > 1) {
        g_object_unref(im);
        if (!(im = open_with(path, buf, len, -1, 1)))
            return open_failed(errbuf, what, reason);
        /* Every page must have the same height, or frames would be misaligned. */
        if (vips_image_get_page_height(im) * n != im->Ysize) {
            g_object_unref(im);
            *reason = CLIPMOD_REASON_DECODE_ERROR;
            return cm_error(errbuf, CLIPMOD_E_IMAGE_DECODE, "%s: pages differ in size", what);
        }
        *pages = n;
        *out = im;
        return CLIPMOD_OK;
    }

    int shortest = VIPS_MIN(vips_image_get_width(im), vips_image_get_height(im));
    int shrink = 1;
    const int keep = VIPS_MAX(SHRINK_ON_LOAD_MARGIN * target, SHRINK_ON_LOAD_MIN);
    while (shrink < 8 && shortest / (shrink * 2) >= keep)
        shrink *= 2;
    if (shrink > 1 && g_str_has_prefix(loader, "VipsForeignLoadJpeg")) {
        g_object_unref(im);
        if (!(im = open_with(path, buf, len, 1, shrink)))
            return open_failed(errbuf, what, reason);
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
            px[i * 3 + c] =
                (unsigned char)((2 * (px[i * 4 + c] * a + 255 * (255 - a)) + 255) / 510);
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

/* The "eval" signal fires as libvips computes pixels: stop it past the deadline. */
typedef struct deadline {
    gint64 end_us; /* g_get_monotonic_time() */
    int fired;
} deadline;

static void on_eval(VipsImage *im, VipsProgress *progress, void *data)
{
    deadline *d = data;
    if (d->end_us && g_get_monotonic_time() > d->end_us) {
        d->fired = 1;
        vips_image_set_kill(im, TRUE);
    }
}

/*
 * One frame: `im` (already sRGB, 3 or 4 bands, 8 bits) to a normalised tensor,
 * through PIL's resize and HF's centre crop.
 */
static clipmod_error frame_tensor(const cm_config *cfg, VipsImage *im, deadline *dl,
                                  const char *what, clipmod_image **out, clipmod_reason *reason,
                                  char *errbuf)
{
    const int src_w = im->Xsize, src_h = im->Ysize, bands = im->Bands;
    unsigned char *rgb = NULL, *resized = NULL;
    clipmod_image *img = NULL;
    clipmod_error rc = CLIPMOD_OK;
    size_t nbytes = 0;

    vips_image_set_progress(im, TRUE);
    gulong handler = g_signal_connect(im, "eval", G_CALLBACK(on_eval), dl);
    rgb = vips_image_write_to_memory(im, &nbytes);
    g_signal_handler_disconnect(im, handler);
    if (!rgb || nbytes != (size_t)src_w * src_h * bands) {
        *reason = dl->fired ? CLIPMOD_REASON_TIMEOUT : CLIPMOD_REASON_DECODE_ERROR;
        rc = dl->fired ? cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT,
                                  "%s: decoding took longer than the time limit", what)
                       : vips_fail(errbuf, CLIPMOD_E_IMAGE_DECODE, what);
        goto out;
    }
    if (bands == 4)
        flatten_white(rgb, (size_t)src_w * src_h);
    int nw, nh;
    resized_size(src_w, src_h, cfg->resize_short, &nw, &nh);
    if (nw < cfg->crop || nh < cfg->crop) {
        *reason = CLIPMOD_REASON_DECODE_ERROR;
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
    img->src_width = src_w;
    img->src_height = src_h;
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
    g_free(rgb);
    free(resized);
    clipmod_image_free(img);
    return rc;
}

void cm_image_opts_default(cm_image_opts *o)
{
    clipmod_limits_default(&o->lim);
    o->max_frames = clipmod_setting_default(CLIPMOD_MAX_FRAMES);
    o->samples = 1;
    o->timeout_ms = clipmod_setting_default(CLIPMOD_MAX_SCAN_MS);
}

clipmod_error cm_image_decode(const clipmod_model *model, const char *path, const void *buf,
                              size_t len, const cm_image_opts *o, cm_frames *out,
                              clipmod_reason *reason, char *errbuf)
{
    const cm_config *cfg = &model->cfg;
    const char *what = path ? path : "image";
    VipsImage *im = NULL, *page = NULL;
    clipmod_error rc = CLIPMOD_OK;
    deadline dl = {0};
    int pages = 1, shrunk = 1;

    memset(out, 0, sizeof *out);
    *reason = CLIPMOD_REASON_NONE;
    if (!cm_initialised())
        return cm_error(errbuf, CLIPMOD_E_INIT, "clipmod_init() has not been called");
    if (o->timeout_ms)
        dl.end_us = g_get_monotonic_time() + (gint64)o->timeout_ms * 1000;

    if (path) {
        struct stat sb;
        if (stat(path, &sb) < 0) {
            *reason = CLIPMOD_REASON_IO_ERROR;
            return cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
        }
        if (!S_ISREG(sb.st_mode)) {
            *reason = CLIPMOD_REASON_IO_ERROR;
            return cm_error(errbuf, CLIPMOD_E_IO, "%s: not a regular file", path);
        }
        len = (size_t)sb.st_size;
    }
    if (len == 0) {
        *reason = CLIPMOD_REASON_DECODE_ERROR;
        return cm_error(errbuf, CLIPMOD_E_IMAGE_DECODE, "%s: empty file", what);
    }
    if (len > o->lim.max_file_bytes) {
        *reason = CLIPMOD_REASON_TOO_LARGE;
        return cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT, "%s: %zu bytes exceeds the limit of %llu",
                        what, len, (unsigned long long)o->lim.max_file_bytes);
    }

    if ((rc = open_image(path, buf, len, o, cfg->resize_short, &im, &pages, &shrunk, reason,
                         errbuf)))
        goto out;
    const int samples = pages > 1 ? VIPS_MIN(o->samples, pages) : 1;
    out->frames = calloc((size_t)samples, sizeof *out->frames);
    if (!out->frames) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    out->total = pages;
    const int page_h = pages > 1 ? vips_image_get_page_height(im) : im->Ysize;
    /* Evenly spaced frames, the first included; in increasing order, as a
     * sequentially read animation can only go forward. */
    for (int i = 0; i < samples; i++) {
        const int index = (int)((int64_t)i * pages / samples);
        page = im;
        g_object_ref(page);
        if (pages > 1) {
            VipsImage *t = NULL;
            if (step(&page, vips_extract_area(im, &t, 0, index * page_h, im->Xsize, page_h, NULL),
                     &t)) {
                rc = open_failed(errbuf, what, reason);
                goto out;
            }
        }
        if (to_rgb8(&page)) {
            rc = open_failed(errbuf, what, reason);
            goto out;
        }
        if ((rc = frame_tensor(cfg, page, &dl, what, &out->frames[i], reason, errbuf)))
            goto out;
        g_object_unref(page);
        page = NULL;
        out->count++;
    }
    /* Report the size of the picture, not of its shrunk-on-load decode. */
    out->width = out->frames[0]->src_width *= shrunk;
    out->height = out->frames[0]->src_height *= shrunk;
out:
    if (page)
        g_object_unref(page);
    if (im)
        g_object_unref(im);
    if (rc)
        cm_frames_free(out);
    vips_error_clear();
    return rc;
}

void cm_frames_free(cm_frames *f)
{
    if (!f)
        return;
    for (int i = 0; f->frames && i < f->count; i++)
        clipmod_image_free(f->frames[i]);
    free(f->frames);
    memset(f, 0, sizeof *f);
}

static clipmod_error load_one(const clipmod_model *model, const char *path, const void *buf,
                              size_t len, const clipmod_limits *lim, clipmod_image **out,
                              char *errbuf)
{
    cm_image_opts o;
    cm_frames f;
    clipmod_reason reason;
    cm_image_opts_default(&o);
    if (lim)
        o.lim = *lim;
    clipmod_error rc = cm_image_decode(model, path, buf, len, &o, &f, &reason, errbuf);
    if (rc)
        return rc;
    *out = f.frames[0];
    f.frames[0] = NULL;
    cm_frames_free(&f);
    return CLIPMOD_OK;
}

clipmod_error clipmod_image_load_file(const clipmod_model *model, const char *path,
                                      const clipmod_limits *lim, clipmod_image **out, char *errbuf)
{
    if (!out)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "no output pointer");
    *out = NULL;
    if (!model || !path)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "model and path are required");
    return load_one(model, path, NULL, 0, lim, out, errbuf);
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
    return load_one(model, NULL, buf ? buf : "", len, lim, out, errbuf);
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
