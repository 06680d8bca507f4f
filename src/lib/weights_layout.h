/*
 * weights_layout.h - where the image tower's parameters live (internal to the
 * loader, weights.c, and the weights cache, wcache.c; see weights_layout.c).
 */
#ifndef CM_WEIGHTS_LAYOUT_H
#define CM_WEIGHTS_LAYOUT_H

#include <stddef.h>

#include "quant.h"
#include "weights.h"

/* Floats of the image tower's arena (with_text: and the text tower's after it). */
size_t cm_weights_arena_floats(const cm_config *c, int with_text);

/*
 * The converted matrices of a weights image, after the arena, in load order: with
 * `image`, point each of store's matrices at its place; with `visit`, pass each
 * array. Returns the image's total size (cm_weights_image_bytes). store may be NULL.
 */
size_t cm_weights_walk_qmats(const cm_config *cfg, clipmod_precision p, cm_qmat *store,
                             unsigned char *image, cm_image_visit visit, void *arg);

/* Point store[i] alone at its place in `image` (before the loader converts into it). */
void cm_weights_place_qmat(const cm_config *cfg, clipmod_precision p, cm_qmat *store, int i,
                           unsigned char *image);

/* Whether a load now packs a tower's block matrices / a matrix of n rows. */
int cm_weights_packs_block(const cm_tower_config *tc);
int cm_weights_packs_one(int n);

/* 1 if w's image tower is packed exactly as a load now would pack it. */
int cm_weights_packed_as_now(const cm_config *cfg, const cm_weights *w);

/* Packs blocks [first, first+count) in place, those cm_weights_packs_block allows. */
void cm_weights_pack_blocks(cm_block *blocks, int first, int count, const cm_config *cfg);

/* Packs the patch embedding in place (sets v->patch_packed). */
void cm_weights_pack_patch(cm_vision_weights *v, const cm_config *cfg);

/* Packs one [n, k] matrix in place; 1 when packed, 0 when it stays plain. */
int cm_weights_pack_one(const float *w, int n, int k);

#endif
