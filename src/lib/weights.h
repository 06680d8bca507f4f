/*
 * weights.h - a CLIP model's parameters in the layout our kernels use (internal).
 *
 * Owns two 64-byte-aligned float32 arenas, converted from the checkpoint's dtype
 * and naming: the image tower's (copied at load) and the text tower's (copied when
 * first needed, and freed again once prompts are embedded). Linear weights are [out, in] (as in
 * Hugging Face); q, k and v are fused into one [3D, D] matrix so attention needs one
 * GEMM. Shapes are checked once here; the forward passes trust them.
 */
#ifndef CM_WEIGHTS_H
#define CM_WEIGHTS_H

#include <stddef.h>

#include "config.h"
#include "safetensors.h"

typedef struct cm_block {
    const float *ln1_w, *ln1_b;
    const float *qkv_w, *qkv_b; /* [3D, D], [3D]: q rows, then k, then v */
    const float *out_w, *out_b; /* [D, D], [D] */
    const float *ln2_w, *ln2_b;
    const float *fc1_w, *fc1_b; /* [F, D], [F] */
    const float *fc2_w, *fc2_b; /* [D, F], [D] */
    /* 1: qkv_w, out_w, fc1_w and fc2_w are in cm_gemm's panel layout (packed in
     * place at load, so no unpacked copy stays resident); 0: plain [out, in]. */
    int packed;
    /* At int8/bf16: the four matrices above converted (qkv, out, fc1, fc2 in that
     * order, see quant.c), their fp32 pointers NULL; NULL at fp32. */
    const struct cm_qmat *q;
} cm_block;

typedef struct cm_vision_weights {
    const float *patch_w;   /* [D, 3*P*P], inner index c*P*P + ky*P + kx */
    int patch_packed;       /* 1: patch_w in cm_gemm's panel layout (as cm_block.packed) */
    const float *class_emb; /* [D] */
    const float *pos_emb;   /* [T, D], T = (S/P)^2 + 1 */
    const float *pre_w, *pre_b;
    cm_block *blocks;
    const float *post_w, *post_b;
    const float *proj; /* [E, D] */
    int proj_packed;   /* 1: proj in cm_gemm's panel layout */
} cm_vision_weights;

typedef struct cm_text_weights {
    const float *tok_emb; /* [V, D] */
    const float *pos_emb; /* [C, D] */
    cm_block *blocks;
    const float *final_w, *final_b;
    const float *proj; /* [E, D] */
    int proj_packed;   /* 1: proj in cm_gemm's panel layout */
} cm_text_weights;

typedef enum cm_layout { CM_LAYOUT_HF, CM_LAYOUT_OPENAI } cm_layout;

typedef struct cm_weights {
    cm_layout layout;
    char dtype[16]; /* of the checkpoint's matrices: "F32", "F16", "BF16" */
    int has_text;
    cm_vision_weights vision;
    cm_text_weights text;
    float logit_scale; /* exp() already applied */
    float *arena;      /* the image tower's parameters (and logit_scale) */
    float *text_arena; /* the text tower's, while loaded (NULL: not loaded) */
    cm_block *block_store;
    clipmod_precision precision; /* of the blocks' linear layers */
    struct cm_qmat *qstore;      /* 4 per block at int8/bf16, else NULL */
    int qcount;
    /* Loaded from or into a weights cache file: its mapping, which holds the image
     * tower (the arena, if not NULL, lies in it; qstore's arrays are borrowed);
     * unmapped by cm_weights_free. */
    void *map;
    size_t map_bytes;
} cm_weights;

/*
 * Convert the tensors of `st` into `w` according to `cfg`. A missing tensor, a
 * wrong shape or an unusable dtype is reported with the tensor's name
 * (CLIPMOD_E_MODEL_TENSOR). The text tower is optional: a vision-only checkpoint
 * loads with has_text = 0. Only the image tower is copied: the text tower's
 * tensors are checked, and copied by cm_weights_load_text. On failure `w` holds
 * nothing to free.
 */
clipmod_error cm_weights_load(const cm_safetensors *st, const cm_config *cfg, cm_weights *w,
                              char *errbuf);

/*
 * cm_weights_load at precision p: each image-tower block's four matrices are
 * converted right after it is read (quant.c) and their fp32 pages released, so the
 * peak holds one fp32 block beyond the converted model. The text tower, loaded on
 * demand to compile prompts (cm_weights_load_text) and freed after, stays fp32.
 * The caller checked the CPU (cm_qgemm_check).
 */
clipmod_error cm_weights_load_at(const cm_safetensors *st, const cm_config *cfg,
                                 clipmod_precision p, cm_weights *w, char *errbuf);

/*
 * cm_weights_load_at into `image` (cm_weights_image_bytes long, page aligned,
 * zeroed, mapped from a new weights cache file) when not NULL: the arena and the
 * converted matrices are made in their places there instead of in memory of their
 * own, as the file holds them. On success w owns the mapping (w->map: unmapped by
 * cm_weights_free); on failure the caller keeps it.
 */
clipmod_error cm_weights_load_into(const cm_safetensors *st, const cm_config *cfg,
                                   clipmod_precision p, void *image, cm_weights *w, char *errbuf);

/*
 * Copy the text tower of `st` (the file `w` was loaded from) into its own arena;
 * nothing to do if it is loaded or the model has none. CLIPMOD_E_NOMEM or the
 * loader's errors; on failure the text tower stays unloaded.
 */
clipmod_error cm_weights_load_text(const cm_safetensors *st, const cm_config *cfg, cm_weights *w,
                                   char *errbuf);

/* Free the text tower's arena (w->text is zeroed). Accepts an unloaded one. */
void cm_weights_free_text(cm_weights *w, const cm_config *cfg);

/*
 * The image tower as a weights cache file keeps it (wcache.c): the arena as a load
 * fills it, then at int8/bf16 each converted matrix's arrays (quant.c order), every
 * part 64-byte aligned. Parts a forward pass never reads (the fp32 matrices behind
 * converted ones, padding) are not visited; in a file they stay holes.
 */
typedef void (*cm_image_visit)(void *arg, size_t offset, const void *p, size_t bytes);

/* Bytes of that image for `cfg` at precision p. */
size_t cm_weights_image_bytes(const cm_config *cfg, clipmod_precision p);

/*
 * Call visit(arg, offset, p, bytes) for every part of w's image tower, by increasing
 * offset, p in w's own memory. `st` is the file w was loaded from. CLIPMOD_E_UNSUPPORTED
 * when w is not what a load gives now (a matrix left unpacked for want of memory): such
 * weights are not worth keeping.
 */
clipmod_error cm_weights_image_walk(const cm_safetensors *st, const cm_config *cfg,
                                    const cm_weights *w, cm_image_visit visit, void *arg);

/*
 * Load w from `image` (`bytes` long, page aligned, read-only): the names and shapes
 * of `st` are checked as cm_weights_load_at checks them, and w's image tower points
 * into `image` instead of being copied; `visit` sees the same parts, in the same
 * order, as cm_weights_image_walk gave the writer (to check a digest). On success w
 * owns the mapping (cm_weights_free unmaps it); on failure the caller keeps it.
 * Whatever `image` holds is only ever read as numbers.
 */
clipmod_error cm_weights_from_image(const cm_safetensors *st, const cm_config *cfg,
                                    clipmod_precision p, void *image, size_t bytes,
                                    cm_image_visit visit, void *arg, cm_weights *w, char *errbuf);

/* Free the arena. Accepts a zeroed or already-freed struct. */
void cm_weights_free(cm_weights *w);

#endif
