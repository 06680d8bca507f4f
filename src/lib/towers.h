/*
 * towers.h - the image and text towers of CLIP (internal).
 *
 * Each takes a batch, packs it into one matrix, runs the encoder and returns
 * L2-normalised embeddings of length proj_dim.
 */
#ifndef CM_TOWERS_H
#define CM_TOWERS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "weights.h"

/*
 * Embed n images; pixels[i] is a normalised [3, S, S] tensor (S = image_size).
 * out receives n x proj_dim floats.
 */
clipmod_error cm_vision_forward(const cm_weights *w, const cm_config *cfg,
                                const float *const *pixels, int n, float *out);

/*
 * Embed n token sequences; ids[i] holds len[i] ids ending with the first EOT (the
 * tower stops there: with the causal mask nothing after EOT changes its output).
 */
clipmod_error cm_text_forward(const cm_weights *w, const cm_config *cfg, const int32_t *const *ids,
                              const int *len, int n, float *out);

#endif
