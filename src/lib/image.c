/*
 * image.c - from untrusted image bytes to a model's input tensor, with libvips.
 *
 * The pipeline follows Hugging Face's CLIPImageProcessor: flatten to RGB (alpha
 * composited onto white, with PIL's rounding), resize the shortest side to the model's size with
 * PIL's bicubic filter (resample.c; libvips decodes, PIL's arithmetic resizes), centre crop with a
 * floored offset, then scale to [0, 1] and normalise with the model's mean/std. Unlike HF we apply
 * the EXIF orientation first: a moderator judges the picture a person sees.
 *
 * Safety. The format is sniffed here from the first bytes, and only that format's
 * loader is called (vips_jpegload_buffer ...): libvips' generic probe is never used,
 * because probing runs every loader's detector, and some of those parse the file
 * (OpenSlide, cfitsio) even when the loader itself is blocked. Files are read into
 * memory first, under the byte cap, so the same path serves files and buffers.
 * The size limits are checked from the header before any pixel is decoded, and the
 * pixels an input may cost in all (max-total-pixels) before the first frame is.
 * Animations are read front to back once, up to the last frame the sampling needs,
 * without skipping (a skip makes libvips buffer what it skips). Truncated files fail
 * instead of decoding to grey. The allow-list in init.c stays as a second fence.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

/* Rows decoded at a time when reading past a frame the sampling does not take. */
#define DRAIN_ROWS 64

/*
 * After an input that decoded more pixels than this, hand freed memory back to the
 * system: glibc keeps it in the arenas of libvips' worker threads otherwise, and a
 * service would sit on the peak of its largest input forever.
 */
#define TRIM_AFTER_PIXELS (16ull << 20)

#define ALLOWED_FORMATS "JPEG, PNG, GIF, WebP, TIFF, HEIF/AVIF"

/* Formats we decode, each with its own loader. */
typedef enum cm_format {
    FMT_NONE,
    FMT_JPEG,
    FMT_PNG,
    FMT_GIF,
    FMT_WEBP,
    FMT_TIFF,
    FMT_HEIF
} cm_format;

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

static int has_prefix(const unsigned char *p, size_t len, const char *magic, size_t mlen)
{
    return len >= mlen && !memcmp(p, magic, mlen);
}

/* ISO BMFF brands libheif reads (HEIC, HEIF, AVIF and their sequences). */
static int heif_brand(const unsigned char *p, size_t len)
{
    static const char brands[][5] = {"heic", "heix", "hevc", "hevx", "heim", "heis",
                                     "hevm", "hevs", "mif1", "msf1", "avif", "avis"};
    if (len < 12 || memcmp(p + 4, "ftyp", 4))
        return 0;
    for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
        if (!memcmp(p + 8, brands[i], 4))
            return 1;
    return 0;
}

/* The format the first bytes announce, or FMT_NONE. */
static cm_format sniff(const unsigned char *p, size_t len)
{
    if (has_prefix(p, len, "\xff\xd8\xff", 3))
        return FMT_JPEG;
    if (has_prefix(p, len, "\x89PNG\r\n\x1a\n", 8))
        return FMT_PNG;
    if (has_prefix(p, len, "GIF87a", 6) || has_prefix(p, len, "GIF89a", 6))
        return FMT_GIF;
    if (len >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return FMT_WEBP;
    if (has_prefix(p, len, "II*\0", 4) || has_prefix(p, len, "MM\0*", 4) ||
        has_prefix(p, len, "II+\0", 4) || has_prefix(p, len, "MM\0+", 4))
        return FMT_TIFF;
    if (heif_brand(p, len))
        return FMT_HEIF;
    return FMT_NONE;
}

/* Where `needle` first occurs in p[0..n), ASCII case ignored; n when it does not. */
static size_t find_nocase(const unsigned char *p, size_t n, const char *needle)
{
    const size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (!g_ascii_strncasecmp((const char *)p + i, needle, m))
            return i;
    return n;
}

/*
 * Whether a text is an SVG document: it starts with markup, and an <svg element
 * comes among its first 4 KiB before any <html (an HTML page may hold inline SVG,
 * and is "unsupported", as any web page where an image was expected).
 */
static int looks_svg(const unsigned char *p, size_t len)
{
    size_t i = 0;
    const size_t n = len < 4096 ? len : 4096;
    if (has_prefix(p, len, "\xef\xbb\xbf", 3))
        i = 3;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i >= n || p[i] != '<')
        return 0;
    const size_t svg = find_nocase(p + i, n - i, "<svg");
    return svg < n - i && svg < find_nocase(p + i, n - i, "<html");
}

/*
 * Formats people try to pass off as images that we recognise and refuse by name,
 * so the verdict says "blocked" with what it was. Recognising is all we do: no
 * library of theirs ever sees the bytes.
 */
static const char *refused_format(const unsigned char *p, size_t len)
{
    static const struct {
        const char *name, *magic;
        size_t len;
    } known[] = {
        {"PDF", "%PDF-", 5},
        {"PostScript", "%!PS", 4},
        {"FITS", "SIMPLE  =", 9},
        {"OpenEXR", "\x76\x2f\x31\x01", 4},
        {"JPEG XL", "\xff\x0a", 2},
        {"JPEG XL", "\0\0\0\x0cJXL \r\n\x87\n", 12},
        {"JPEG 2000", "\0\0\0\x0cjP  \r\n\x87\n", 12},
        {"JPEG 2000", "\xff\x4f\xff\x51", 4},
        {"Photoshop", "8BPS", 4},
        {"MATLAB", "MATLAB 5.0", 10},
        {"libvips", "\x08\xf2\xa6\xb6", 4},
        {"libvips", "\xb6\xa6\xf2\x08", 4},
        {"Radiance", "#?RADIANCE", 10},
        {"Hamamatsu VMS (OpenSlide)", "[Virtual Microscope Specimen]", 29},
        {"gzip (SVGZ?)", "\x1f\x8b", 2},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (has_prefix(p, len, known[i].magic, known[i].len))
            return known[i].name;
    /* BMP: "BM" and a known DIB header size, so a text starting "BM" stays text. */
    if (len >= 18 && p[0] == 'B' && p[1] == 'M') {
        const unsigned dib = p[14] | p[15] << 8 | (unsigned)p[16] << 16 | (unsigned)p[17] << 24;
        if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 ||
            dib == 124)
            return "BMP";
    }
    if (looks_svg(p, len))
        return "SVG";
    return NULL;
}

/* What the sniffer refused, as a verdict. */
static clipmod_error refuse_format(const unsigned char *p, size_t len, const char *what,
                                   clipmod_reason *reason, char *errbuf)
{
    const char *name = refused_format(p, len);
    if (name) {
        *reason = CLIPMOD_REASON_BLOCKED;
        return cm_error(errbuf, CLIPMOD_E_IMAGE_BLOCKED,
                        "%s: the %s format is blocked (clipmod reads " ALLOWED_FORMATS ")", what,
                        name);
    }
    *reason = CLIPMOD_REASON_UNSUPPORTED;
    return cm_error(errbuf, CLIPMOD_E_IMAGE_DECODE,
                    "%s: not an image format clipmod reads (" ALLOWED_FORMATS ")", what);
}

/*
 * Read the file `path` into memory (cm_free it), refusing anything but a regular
 * file and anything over `cap` bytes. One open, then fstat on the descriptor: what is
 * checked is what is read. O_NONBLOCK keeps a FIFO from blocking the open.
 */
static clipmod_error read_input(const char *path, uint64_t cap, unsigned char **out, size_t *len,
                                clipmod_reason *reason, char *errbuf)
{
    unsigned char *buf = NULL;
    clipmod_error rc = CLIPMOD_OK;
    struct stat sb;
    size_t got = 0;

    *out = NULL;
    *len = 0;
    *reason = CLIPMOD_REASON_IO_ERROR;
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)sb.st_size > cap) {
        *reason = CLIPMOD_REASON_TOO_LARGE;
        rc = cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT, "%s: %llu bytes exceeds the limit of %llu",
                      path, (unsigned long long)sb.st_size, (unsigned long long)cap);
        goto out;
    }
    /* One byte more than the file claims, to see it grow past the cap. */
    const size_t want = (size_t)sb.st_size + 1;
    buf = cm_alloc(want);
    if (!buf) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    while (got < want) {
        const ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got > cap) {
        *reason = CLIPMOD_REASON_TOO_LARGE;
        rc = cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT, "%s: grew past the limit of %llu bytes", path,
                      (unsigned long long)cap);
        goto out;
    }
    *reason = CLIPMOD_REASON_NONE;
    *out = buf;
    *len = got;
    buf = NULL;
out:
    cm_free(buf);
    close(fd);
    return rc;
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

/* The loader refused the file: blocked by init.c's allow-list, or damaged. */
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

/*
 * Open `buf` with the loader of `fmt` and nothing else, sequentially (pixels are
 * decoded once, top to bottom). `n` pages from the first for multi-page formats;
 * `shrink` for JPEG only. libvips keeps a pointer to `buf`: it must outlive the image.
 */
static VipsImage *load(cm_format fmt, const void *buf, size_t len, int n, int shrink)
{
    void *b = (void *)buf; /* libvips' loaders take a non-const pointer they never write */
    const VipsAccess seq = VIPS_ACCESS_SEQUENTIAL;
    const VipsFailOn fail = VIPS_FAIL_ON_TRUNCATED;
    VipsImage *im = NULL;
    int rc = -1;

    switch (fmt) {
    case FMT_JPEG:
        rc = vips_jpegload_buffer(b, len, &im, "access", seq, "fail_on", fail, "shrink", shrink,
                                  NULL);
        break;
    case FMT_PNG:
        rc = vips_pngload_buffer(b, len, &im, "access", seq, "fail_on", fail, NULL);
        break;
    case FMT_GIF:
        rc = vips_gifload_buffer(b, len, &im, "access", seq, "fail_on", fail, "n", n, NULL);
        break;
    case FMT_WEBP:
        rc = vips_webpload_buffer(b, len, &im, "access", seq, "fail_on", fail, "n", n, NULL);
        break;
    case FMT_TIFF:
        rc = vips_tiffload_buffer(b, len, &im, "access", seq, "fail_on", fail, "n", n, NULL);
        break;
    case FMT_HEIF:
        rc = vips_heifload_buffer(b, len, &im, "access", seq, "fail_on", fail, "n", n, NULL);
        break;
    case FMT_NONE:
        vips_error("clipmod", "no loader");
        break;
    }
    return rc ? NULL : im;
}

/* What open_image decided: the image to decode and which of its pages to take. */
typedef struct plan {
    VipsImage *im; /* all pages up to `last`, stacked; or the one frame */
    int pages;     /* pages in the file */
    int samples;   /* pages taken, evenly spaced, the first included */
    int last;      /* the last page taken: pages 0..last are decoded */
    int page_h;    /* height of one page */
    int shrunk;    /* JPEG shrink-on-load factor */
} plan;

/* Page i of `samples` evenly spaced over `pages`, the first included. */
static int sample_index(int i, int samples, int pages)
{
    return (int)((int64_t)i * pages / samples);
}

/* The pixels decoding the plan costs: every page up to the last one taken. */
static clipmod_error check_budget(const plan *pl, int width, const cm_image_opts *o,
                                  const char *what, clipmod_reason *reason, char *errbuf)
{
    const uint64_t frames = (uint64_t)pl->last + 1;
    const uint64_t total = (uint64_t)width * (uint64_t)pl->page_h * frames;
    if (total <= o->max_total_pixels)
        return CLIPMOD_OK;
    *reason = CLIPMOD_REASON_TOO_MANY_PIXELS;
    return cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT,
                    "%s: %llu frame%s of %dx%d to decode = %llu pixels exceeds the limit of %llu "
                    "(max-total-pixels)",
                    what, (unsigned long long)frames, frames == 1 ? "" : "s", width, pl->page_h,
                    (unsigned long long)total, (unsigned long long)o->max_total_pixels);
}

/* Reopen an animation with the pages the sampling needs, stacked. */
static clipmod_error open_pages(cm_format fmt, const void *buf, size_t len, plan *pl,
                                const char *what, clipmod_reason *reason, char *errbuf)
{
    g_object_unref(pl->im);
    pl->im = load(fmt, buf, len, pl->last + 1, 1);
    if (!pl->im)
        return open_failed(errbuf, what, reason);
    /* Every page must have the same height, or frames would be misaligned. */
    if (vips_image_get_page_height(pl->im) != pl->page_h ||
        (int64_t)pl->page_h * (pl->last + 1) != pl->im->Ysize) {
        *reason = CLIPMOD_REASON_DECODE_ERROR;
        return cm_error(errbuf, CLIPMOD_E_IMAGE_DECODE, "%s: pages differ in size", what);
    }
    return CLIPMOD_OK;
}

/*
 * Open lazily (header only) and check the limits before any pixel is decoded: the
 * frame's size, the frame count, and what decoding the sampled frames costs in all.
 * An animation is reopened with the pages up to the last sampled one stacked; a
 * large JPEG is reopened with shrink-on-load.
 */
static clipmod_error open_image(cm_format fmt, const void *buf, size_t len, const cm_image_opts *o,
                                int target, plan *pl, clipmod_reason *reason, char *errbuf,
                                const char *what)
{
    clipmod_error rc;

    memset(pl, 0, sizeof *pl);
    pl->shrunk = 1;
    pl->im = load(fmt, buf, len, 1, 1);
    if (!pl->im)
        return open_failed(errbuf, what, reason);
    rc = check_header(pl->im, &o->lim, what, errbuf);
    if (rc) {
        *reason = CLIPMOD_REASON_TOO_MANY_PIXELS;
        return rc;
    }
    const int n = vips_image_get_n_pages(pl->im);
    if ((uint64_t)n > o->max_frames) {
        *reason = CLIPMOD_REASON_TOO_MANY_FRAMES;
        return cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT, "%s: %d frames exceeds the limit of %llu",
                        what, n, (unsigned long long)o->max_frames);
    }
    pl->pages = n > 1 ? n : 1;
    pl->samples = n > 1 && o->samples > 1 ? VIPS_MIN(o->samples, n) : 1;
    pl->last = sample_index(pl->samples - 1, pl->samples, pl->pages);
    pl->page_h = pl->im->Ysize;
    rc = check_budget(pl, pl->im->Xsize, o, what, reason, errbuf);
    if (rc)
        return rc;
    if (pl->samples > 1)
        return open_pages(fmt, buf, len, pl, what, reason, errbuf);
    pl->pages = 1; /* only the first frame is read */

    const int shortest = VIPS_MIN(pl->im->Xsize, pl->im->Ysize);
    const int keep = VIPS_MAX(SHRINK_ON_LOAD_MARGIN * target, SHRINK_ON_LOAD_MIN);
    int shrink = 1;
    while (shrink < 8 && shortest / (shrink * 2) >= keep)
        shrink *= 2;
    if (shrink > 1 && fmt == FMT_JPEG) {
        g_object_unref(pl->im);
        pl->im = load(fmt, buf, len, 1, shrink);
        if (!pl->im)
            return open_failed(errbuf, what, reason);
        pl->shrunk = shrink;
        pl->page_h = pl->im->Ysize;
    }
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
    resized = cm_alloc((size_t)nw * nh * 3);
    if (!resized || cm_resample_bicubic(rgb, src_w, src_h, resized, nw, nh)) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }

    const int s = cfg->crop, left = (nw - s) / 2, top = (nh - s) / 2;
    img = cm_calloc(1, sizeof *img);
    if (img)
        img->pixels = cm_alloc((size_t)3 * s * s * sizeof(float));
    if (!img || !img->pixels) {
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
    cm_free(resized);
    clipmod_image_free(img);
    return rc;
}

void cm_image_opts_default(cm_image_opts *o)
{
    clipmod_limits_default(&o->lim);
    o->max_frames = clipmod_setting_default(CLIPMOD_MAX_FRAMES);
    o->max_total_pixels = clipmod_setting_default(CLIPMOD_MAX_TOTAL_PIXELS);
    o->samples = 1;
    o->timeout_ms = clipmod_setting_default(CLIPMOD_MAX_SCAN_MS);
}

void cm_image_opts_from_settings(cm_image_opts *o, const uint64_t *settings, int samples)
{
    o->lim.max_file_bytes = settings[CLIPMOD_MAX_FILE_BYTES];
    o->lim.max_pixels = settings[CLIPMOD_MAX_PIXELS];
    o->lim.max_side = (uint32_t)settings[CLIPMOD_MAX_SIDE];
    o->max_frames = settings[CLIPMOD_MAX_FRAMES];
    o->max_total_pixels = settings[CLIPMOD_MAX_TOTAL_PIXELS];
    o->samples = samples < 1 ? 1 : samples > CM_MAX_SAMPLES ? CM_MAX_SAMPLES : samples;
    o->timeout_ms = settings[CLIPMOD_MAX_SCAN_MS];
}

static int past_deadline(deadline *d)
{
    if (d->end_us && g_get_monotonic_time() > d->end_us)
        d->fired = 1;
    return d->fired;
}

/*
 * Decode rows [y, y + h) of `im` and throw them away: the way past a frame the
 * sampling skips, in strips, so memory stays one strip (a jump ahead would make
 * libvips' sequential reader buffer every row it jumps over).
 */
static int drain(VipsRegion *reg, int y, int h, deadline *dl)
{
    for (int top = y; top < y + h; top += DRAIN_ROWS) {
        VipsRect r = {0, top, reg->im->Xsize, VIPS_MIN(DRAIN_ROWS, y + h - top)};
        if (past_deadline(dl) || vips_region_prepare(reg, &r))
            return -1;
    }
    return 0;
}

/* The tensor of page `index` of the plan's image. */
static clipmod_error take_page(const cm_config *cfg, const plan *pl, int index, deadline *dl,
                               const char *what, clipmod_image **out, clipmod_reason *reason,
                               char *errbuf)
{
    VipsImage *page = pl->im, *t = NULL;
    clipmod_error rc;

    g_object_ref(page);
    if (pl->pages > 1 &&
        step(&page,
             vips_extract_area(pl->im, &t, 0, index * pl->page_h, pl->im->Xsize, pl->page_h, NULL),
             &t)) {
        rc = open_failed(errbuf, what, reason);
        goto out;
    }
    if (to_rgb8(&page)) {
        rc = open_failed(errbuf, what, reason);
        goto out;
    }
    rc = frame_tensor(cfg, page, dl, what, out, reason, errbuf);
out:
    g_object_unref(page);
    return rc;
}

/* Read pages 0..last in order, keeping the sampled ones as tensors in `out`. */
static clipmod_error decode_pages(const cm_config *cfg, const plan *pl, deadline *dl,
                                  const char *what, cm_frames *out, clipmod_reason *reason,
                                  char *errbuf)
{
    VipsRegion *reg = NULL;
    clipmod_error rc = CLIPMOD_OK;
    int next = 0; /* the next sample to take */

    if (pl->last > 0) {
        reg = vips_region_new(pl->im);
        if (!reg)
            return open_failed(errbuf, what, reason);
    }
    for (int index = 0; index <= pl->last && next < pl->samples; index++) {
        if (index != sample_index(next, pl->samples, pl->pages)) {
            if (drain(reg, index * pl->page_h, pl->page_h, dl)) {
                rc = dl->fired ? cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT,
                                          "%s: decoding took longer than the time limit", what)
                               : open_failed(errbuf, what, reason);
                if (dl->fired)
                    *reason = CLIPMOD_REASON_TIMEOUT;
                break;
            }
            continue;
        }
        rc = take_page(cfg, pl, index, dl, what, &out->frames[next], reason, errbuf);
        if (rc)
            break;
        out->count = ++next;
    }
    if (reg)
        g_object_unref(reg);
    return rc;
}

clipmod_error cm_image_decode(const clipmod_model *model, const char *path, const void *buf,
                              size_t len, const cm_image_opts *o, cm_frames *out,
                              clipmod_reason *reason, char *errbuf)
{
    const cm_config *cfg = &model->cfg;
    const char *what = path ? path : "image";
    unsigned char *file = NULL;
    clipmod_error rc = CLIPMOD_OK;
    deadline dl = {0};
    plan pl = {0};

    memset(out, 0, sizeof *out);
    *reason = CLIPMOD_REASON_NONE;
    if (!cm_initialised())
        return cm_error(errbuf, CLIPMOD_E_INIT, "clipmod_init() has not been called");
    if (o->timeout_ms)
        dl.end_us = g_get_monotonic_time() + (gint64)o->timeout_ms * 1000;

    if (path) {
        rc = read_input(path, o->lim.max_file_bytes, &file, &len, reason, errbuf);
        if (rc)
            return rc;
        buf = file;
    }
    if (len == 0) {
        *reason = CLIPMOD_REASON_DECODE_ERROR;
        rc = cm_error(errbuf, CLIPMOD_E_IMAGE_DECODE, "%s: empty file", what);
        goto out;
    }
    if (len > o->lim.max_file_bytes) {
        *reason = CLIPMOD_REASON_TOO_LARGE;
        rc = cm_error(errbuf, CLIPMOD_E_IMAGE_LIMIT, "%s: %zu bytes exceeds the limit of %llu",
                      what, len, (unsigned long long)o->lim.max_file_bytes);
        goto out;
    }
    const cm_format fmt = sniff(buf, len);
    if (fmt == FMT_NONE) {
        rc = refuse_format(buf, len, what, reason, errbuf);
        goto out;
    }
    rc = open_image(fmt, buf, len, o, cfg->resize_short, &pl, reason, errbuf, what);
    if (rc)
        goto out;
    out->frames = cm_calloc((size_t)pl.samples, sizeof *out->frames);
    if (!out->frames) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    out->total = pl.pages;
    rc = decode_pages(cfg, &pl, &dl, what, out, reason, errbuf);
    if (rc)
        goto out;
    /* Report the size of the picture, not of its shrunk-on-load decode. */
    out->width = out->frames[0]->src_width *= pl.shrunk;
    out->height = out->frames[0]->src_height *= pl.shrunk;
out:
    if (pl.im) {
        const uint64_t decoded = (uint64_t)pl.im->Xsize * pl.page_h * (uint64_t)(pl.last + 1);
        g_object_unref(pl.im);
#if defined(__GLIBC__)
        if (decoded > TRIM_AFTER_PIXELS)
            malloc_trim(0);
#else
        (void)decoded;
#endif
    }
    cm_free(file);
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
    cm_free(f->frames);
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
    if (lim) {
        clipmod_error rc = cm_struct_in(&o.lim, lim, &cm_limits_kind, errbuf);
        if (rc)
            return rc;
    }
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
    cm_free(img);
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
