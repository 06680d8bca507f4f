/*
 * weights_layout.c - where the image tower's parameters live, for the loader
 * (weights.c) and the weights cache (wcache.c).
 *
 * Three facts about that layout, each stated once: the arena's size for a config
 * (every parameter padded to 16 floats, as the loader's bump allocator places it);
 * the places of the int8/bf16 converted matrices after the arena in a weights image,
 * in the order a load converts them; and which fp32 matrices a load packs into
 * cm_gemm's panel layout, with the packing itself. A cache file is only usable when
 * a load now would lay the weights out exactly as it was written, so the loader,
 * the writer and the reader all ask these functions.
 */
#include <stdlib.h>

#include "common.h"
#include "gemm.h"
#include "quant.h"
#include "weights.h"
#include "weights_layout.h"

static size_t block_floats(const cm_tower_config *t)
{
    size_t d = (size_t)t->width, f = (size_t)t->mlp;
    /* Each parameter is padded to 16 floats by weights.c's bump(); 12 per block. */
    return 4 * d + 3 * d * d + 3 * d + d * d + d + 2 * f * d + f + d + 12 * 16;
}

size_t cm_weights_arena_floats(const cm_config *c, int with_text)
{
    size_t dv = (size_t)c->vision.width, dt = (size_t)c->text.width, e = (size_t)c->proj_dim;
    size_t p = (size_t)c->patch_size, g = (size_t)(c->image_size / c->patch_size);
    size_t n = dv * 3 * p * p + dv + (g * g + 1) * dv + 4 * dv + e * dv + 16 * 8 +
               (size_t)c->vision.layers * block_floats(&c->vision);
    if (with_text)
        n += (size_t)c->vocab * dt + (size_t)c->context * dt + 2 * dt + e * dt + 16 * 8 +
             (size_t)c->text.layers * block_floats(&c->text);
    return n + 16;
}

#define IMAGE_ALIGN 64

static size_t align_up(size_t n)
{
    return (n + IMAGE_ALIGN - 1) & ~(size_t)(IMAGE_ALIGN - 1);
}

/*
 * The converted matrices' arrays, after the arena, in load order: for matrices
 * [first, end) (offsets still count from matrix 0), with `image` point the matrix at
 * its place in it, with `visit` pass each array. Returns the image's total size
 * once end is the last matrix.
 */
static size_t walk_qmats_from(const cm_config *cfg, clipmod_precision p, cm_qmat *store,
                              unsigned char *image, cm_image_visit visit, void *arg, int first,
                              int end)
{
    size_t off = align_up(cm_weights_arena_floats(cfg, 0) * sizeof(float));
    for (int i = 0; i < end; i++) {
        int n, k;
        size_t sizes[3], at[3];
        cm_quant_shape(&cfg->vision, i % 4, &n, &k);
        cm_qmat_sizes(p, n, k, sizes);
        for (int a = 0; a < 3; a++) {
            at[a] = off;
            off += align_up(sizes[a]);
        }
        if (!store || i < first)
            continue;
        if (image) {
            void *arrays[3];
            for (int a = 0; a < 3; a++)
                arrays[a] = sizes[a] ? image + at[a] : NULL;
            cm_qmat_borrow(&store[i], p, n, k, arrays);
        }
        const void *have[3] = {store[i].panels, store[i].scale, store[i].colsum};
        for (int a = 0; a < 3 && visit; a++)
            if (sizes[a])
                visit(arg, at[a], have[a], sizes[a]);
    }
    return off;
}

size_t cm_weights_walk_qmats(const cm_config *cfg, clipmod_precision p, cm_qmat *store,
                             unsigned char *image, cm_image_visit visit, void *arg)
{
    const int count = p == CLIPMOD_PRECISION_FP32 ? 0 : 4 * cfg->vision.layers;
    return walk_qmats_from(cfg, p, store, image, visit, arg, 0, count);
}

/* Point store[i] at its arrays in `image` (the others untouched). */
void cm_weights_place_qmat(const cm_config *cfg, clipmod_precision p, cm_qmat *store, int i,
                           unsigned char *image)
{
    walk_qmats_from(cfg, p, store, image, NULL, NULL, i, i + 1);
}

size_t cm_weights_image_bytes(const cm_config *cfg, clipmod_precision p)
{
    return cm_weights_walk_qmats(cfg, p, NULL, NULL, NULL, NULL);
}

/* Whether a load now packs these matrices (the rules the packing below follows). */
int cm_weights_packs_block(const cm_tower_config *tc)
{
    const int d = tc->width, f = tc->mlp;
    return cm_gemm_isa_active() != CM_GEMM_OPENBLAS && (3 * d) % CM_GEMM_NR == 0 &&
           d % CM_GEMM_NR == 0 && f % CM_GEMM_NR == 0;
}

int cm_weights_packs_one(int n)
{
    return cm_gemm_isa_active() != CM_GEMM_OPENBLAS && n % CM_GEMM_NR == 0;
}

/* 1 if w's image tower is packed exactly as a load now would pack it. */
int cm_weights_packed_as_now(const cm_config *cfg, const cm_weights *w)
{
    const int pb = cm_weights_packs_block(&cfg->vision);
    for (int l = 0; l < cfg->vision.layers; l++)
        if (w->block_store[l].packed != (pb && !w->block_store[l].q))
            return 0;
    return w->vision.patch_packed == cm_weights_packs_one(cfg->vision.width) &&
           w->vision.proj_packed == cm_weights_packs_one(cfg->proj_dim);
}

/*
 * Pack the four matrices of every block in place into cm_gemm's panel layout:
 * done once here instead of OpenBLAS re-packing them on every call. A block whose
 * widths are not whole panels (or CLIPMOD_GEMM=openblas) stays unpacked and its
 * products go through OpenBLAS.
 */
void cm_weights_pack_blocks(cm_block *blocks, int first, int count, const cm_config *cfg)
{
    if (!cm_weights_packs_block(&cfg->vision) && !cm_weights_packs_block(&cfg->text))
        return;
    /* The longest row (k) packed is the larger of a tower's width and MLP width. */
    int widest = 0;
    const cm_tower_config *towers[2] = {&cfg->vision, &cfg->text};
    for (int t = 0; t < 2; t++) {
        widest = towers[t]->mlp > widest ? towers[t]->mlp : widest;
        widest = towers[t]->width > widest ? towers[t]->width : widest;
    }
    float *tmp = cm_alloc((size_t)CM_GEMM_NR * widest * sizeof *tmp);
    if (!tmp)
        return; /* still correct, only slower: every product goes through OpenBLAS */
    for (int l = first; l < first + count; l++) {
        const cm_tower_config *tc = l < cfg->vision.layers ? &cfg->vision : &cfg->text;
        const int d = tc->width, f = tc->mlp;
        if (!cm_weights_packs_block(tc))
            continue;
        cm_block *b = &blocks[l];
        if (b->q)
            continue; /* converted to int8/bf16: no fp32 matrix left to pack */
        /* The arena is ours: the const in cm_block only protects it from the forward passes. */
        cm_gemm_pack_inplace((float *)b->qkv_w, 3 * d, d, tmp);
        cm_gemm_pack_inplace((float *)b->out_w, d, d, tmp);
        cm_gemm_pack_inplace((float *)b->fc1_w, f, d, tmp);
        cm_gemm_pack_inplace((float *)b->fc2_w, d, f, tmp);
        b->packed = 1;
    }
    cm_free(tmp);
}

/*
 * The patch embedding, [D, 3*P*P], packed the same way: after im2col it is a GEMM
 * of 49 rows per image at k = 3072 (ViT-B/32), 3% of a pass through OpenBLAS
 * re-packing it on every call. It stays fp32 at every precision.
 */
void cm_weights_pack_patch(cm_vision_weights *v, const cm_config *cfg)
{
    v->patch_packed =
        cm_weights_pack_one(v->patch_w, cfg->vision.width, 3 * cfg->patch_size * cfg->patch_size);
}

/*
 * One matrix [n, k] packed in place, with its own panel buffer; 1 when packed, 0
 * when it stays plain (none, CLIPMOD_GEMM=openblas, not whole panels, no memory:
 * still correct through OpenBLAS). The patch embedding packs for speed; a tower's
 * projection (one row per image or text) so that cm_linear_rows computes every
 * row alike whatever the batch.
 */
int cm_weights_pack_one(const float *w, int n, int k)
{
    if (!w || !cm_weights_packs_one(n))
        return 0;
    float *tmp = cm_alloc((size_t)CM_GEMM_NR * k * sizeof *tmp);
    if (!tmp)
        return 0;
    /* The arena is ours: the const only protects it from the forward passes. */
    const int packed = cm_gemm_pack_inplace((float *)w, n, k, tmp) == 0;
    cm_free(tmp);
    return packed;
}
