/*
 * vision.c - CLIP's image tower (ViT).
 *
 * Patches are gathered into rows (im2col) so the patch "convolution" is one GEMM;
 * then the class token and positions are added, pre-LN, the encoder runs, and the
 * class token of each image goes through post-LN and the projection (the last
 * block computes that row only after attention).
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "encoder.h"
#include "ops.h"
#include "scratch.h"
#include "towers.h"

/* Gather image `px` [3, S, S] into g*g rows of 3*p*p values in (c, ky, kx) order. */
static void im2col(const float *px, int s, int p, float *rows)
{
    const int g = s / p, k = 3 * p * p;
    for (int gy = 0; gy < g; gy++)
        for (int gx = 0; gx < g; gx++) {
            float *r = rows + (size_t)(gy * g + gx) * k;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < p; ky++) {
                    const float *src = px + ((size_t)c * s + gy * p + ky) * s + gx * p;
                    memcpy(r + (c * p + ky) * p, src, (size_t)p * sizeof *r);
                }
        }
}

clipmod_error cm_vision_forward(const cm_weights *w, const cm_config *cfg,
                                const float *const *pixels, int n, float *out)
{
    const cm_vision_weights *v = &w->vision;
    const int s = cfg->image_size, p = cfg->patch_size, g = s / p, gg = g * g;
    const int t = gg + 1, d = cfg->vision.width, k = 3 * p * p, e = cfg->proj_dim;
    clipmod_error rc = CLIPMOD_OK;
    size_t size = 0;
    const size_t opat = cm_scratch_carve(&size, (size_t)n * gg * k * sizeof(float));
    const size_t oemb = cm_scratch_carve(&size, (size_t)n * gg * d * sizeof(float));
    const size_t oh = cm_scratch_carve(&size, (size_t)n * t * d * sizeof(float));
    const size_t ocls = cm_scratch_carve(&size, (size_t)n * d * sizeof(float));
    const size_t ostart = cm_scratch_carve(&size, (size_t)n * sizeof(int));
    const size_t olen = cm_scratch_carve(&size, (size_t)n * sizeof(int));
    const size_t opool = cm_scratch_carve(&size, (size_t)n * sizeof(int));
    char *block = cm_scratch_take(CM_SCRATCH_VISION, size);
    if (!block)
        return CLIPMOD_E_NOMEM;
    float *patches = (float *)(block + opat), *emb = (float *)(block + oemb);
    float *h = (float *)(block + oh), *cls = (float *)(block + ocls);
    int *start = (int *)(block + ostart), *len = (int *)(block + olen);
    int *pool_row = (int *)(block + opool);

    for (int i = 0; i < n; i++)
        im2col(pixels[i], s, p, patches + (size_t)i * gg * k);
    cm_linear_w(patches, n * gg, k, v->patch_w, v->patch_packed, NULL, d, 0, emb);

    for (int i = 0; i < n; i++) {
        float *hi = h + (size_t)i * t * d;
        memcpy(hi, v->class_emb, (size_t)d * sizeof *hi);
        memcpy(hi + d, emb + (size_t)i * gg * d, (size_t)gg * d * sizeof *hi);
        cm_add(hi, v->pos_emb, (size_t)t * d);
        start[i] = i * t;
        len[i] = t;
        pool_row[i] = 0; /* the class token */
    }
    cm_layernorm(h, n * t, d, v->pre_w, v->pre_b, cfg->vision.eps, h);

    cm_packed seq = {
        .count = n, .start = start, .len = len, .rows = n * t, .max_len = t, .pool_row = pool_row};
    rc = cm_encoder_forward(v->blocks, &cfg->vision, &seq, 0, h);
    if (rc)
        goto out;

    for (int i = 0; i < n; i++)
        memcpy(cls + (size_t)i * d, h + (size_t)i * t * d, (size_t)d * sizeof *cls);
    cm_layernorm(cls, n, d, v->post_w, v->post_b, cfg->vision.eps, cls);
    cm_linear_rows(cls, n, d, v->proj, v->proj_packed, e, out);
    cm_l2_normalize(out, n, e);
out:
    cm_scratch_give(CM_SCRATCH_VISION, block);
    return rc;
}
