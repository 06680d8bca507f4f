/*
 * resample.c - Pillow's bicubic resampling, ported for bit-exact preprocessing.
 *
 * CLIP models were trained on images that PIL resized, and the reference
 * preprocessing (Hugging Face's CLIPImageProcessor, torchvision) calls
 * Image.resize(BICUBIC). libvips' cubic reduce is close but not equal (off by one
 * level here and there, and off by a phase when enlarging), so this file follows
 * Pillow's src/libImaging/Resample.c: Keys cubic with a = -0.5 whose support widens
 * with the downscale factor (antialiasing), coefficients normalised then rounded to
 * 22-bit fixed point, horizontal pass first into an 8-bit image, then vertical.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "resample.h"

#define PRECISION_BITS (32 - 8 - 2)

static double cubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct coeffs {
    int ksize;
    int *bounds; /* per output pixel: first input index, count */
    int32_t *k;  /* per output pixel: ksize fixed-point weights */
} coeffs;

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis. */
static int precompute(int in_size, int out_size, coeffs *c)
{
    const double scale = (double)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * filterscale;
    const int ksize = (int)ceil(support) * 2 + 1;
    double *w = cm_alloc((size_t)ksize * sizeof *w);

    c->ksize = ksize;
    c->bounds = cm_alloc((size_t)out_size * 2 * sizeof *c->bounds);
    c->k = cm_alloc((size_t)out_size * ksize * sizeof *c->k);
    if (!w || !c->bounds || !c->k) {
        cm_free(w);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        const double center = (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = cubic((x + xmin - center + 0.5) / filterscale);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax && ww != 0.0 ? w[x] / ww : 0.0;
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS)
                                   : 0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    cm_free(w);
    return 0;
}

static uint8_t clip8(int64_t v)
{
    if (v >= ((int64_t)1 << PRECISION_BITS << 8))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

int cm_resample_bicubic(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh)
{
    coeffs hc = {0}, vc = {0};
    uint8_t *tmp = NULL;
    int rc = -1;

    if (precompute(w, ow, &hc) || precompute(h, oh, &vc))
        goto out;

    /* Only the rows the vertical pass reads are resampled horizontally. */
    const int first = vc.bounds[0];
    const int last = vc.bounds[oh * 2 - 2] + vc.bounds[oh * 2 - 1];
    const int need_h = ow != w, need_v = oh != h;
    const uint8_t *src = in + (size_t)first * w * 3;
    int src_w = w;

    if (need_h) {
        tmp = cm_alloc((size_t)(last - first) * ow * 3);
        if (!tmp)
            goto out;
        for (int y = 0; y < last - first; y++) {
            const uint8_t *row = src + (size_t)y * w * 3;
            uint8_t *dst = tmp + (size_t)y * ow * 3;
            for (int xx = 0; xx < ow; xx++) {
                const int xmin = hc.bounds[xx * 2], n = hc.bounds[xx * 2 + 1];
                const int32_t *k = hc.k + (size_t)xx * hc.ksize;
                int64_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < n; x++) {
                    const uint8_t *p = row + (size_t)(x + xmin) * 3;
                    s0 += p[0] * (int64_t)k[x];
                    s1 += p[1] * (int64_t)k[x];
                    s2 += p[2] * (int64_t)k[x];
                }
                dst[xx * 3] = clip8(s0);
                dst[xx * 3 + 1] = clip8(s1);
                dst[xx * 3 + 2] = clip8(s2);
            }
        }
        src = tmp;
        src_w = ow;
    }
    if (need_v) {
        for (int yy = 0; yy < oh; yy++) {
            const int ymin = vc.bounds[yy * 2] - first, n = vc.bounds[yy * 2 + 1];
            const int32_t *k = vc.k + (size_t)yy * vc.ksize;
            uint8_t *dst = out + (size_t)yy * ow * 3;
            for (int xx = 0; xx < ow * 3; xx++) {
                int64_t s = 1 << (PRECISION_BITS - 1);
                for (int y = 0; y < n; y++)
                    s += src[(size_t)(y + ymin) * src_w * 3 + xx] * (int64_t)k[y];
                dst[xx] = clip8(s);
            }
        }
    } else {
        memcpy(out, src, (size_t)oh * ow * 3);
    }
    rc = 0;
out:
    cm_free(hc.bounds);
    cm_free(hc.k);
    cm_free(vc.bounds);
    cm_free(vc.k);
    cm_free(tmp);
    return rc;
}
