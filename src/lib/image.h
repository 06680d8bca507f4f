/*
 * image.h - decoding and preprocessing images for a model (internal).
 */
#ifndef CM_IMAGE_H
#define CM_IMAGE_H

#include "clipmod/clipmod.h"

struct clipmod_image {
    int size;      /* side of the square tensor */
    float *pixels; /* [3, size, size], normalised */
    int src_width, src_height;
};

/* Most frames one input contributes to a scan (policy.c bounds animation.frames). */
#define CM_MAX_SAMPLES 64

/* What one decode may cost, and how many frames of an animation to take. */
typedef struct cm_image_opts {
    clipmod_limits lim;
    uint64_t max_frames;       /* an animation with more is refused */
    uint64_t max_total_pixels; /* pixels decoded to reach the last sampled frame */
    int samples;               /* frames to take, evenly spaced, the first included */
    uint64_t timeout_ms;       /* 0: no limit */
} cm_image_opts;

/* The frames taken from one input. */
typedef struct cm_frames {
    clipmod_image **frames;
    int count; /* frames decoded: min(samples, total) */
    int total; /* frames in the file */
    int width, height;
} cm_frames;

void cm_image_opts_default(cm_image_opts *o);

/*
 * The options a scan uses: from an engine's settings (CLIPMOD_SETTING__COUNT values,
 * indexed by clipmod_setting) and the policy's frame samples. Every caller that
 * decodes as a scan does should fill its options here, so a new limit reaches it.
 */
void cm_image_opts_from_settings(cm_image_opts *o, const uint64_t *settings, int samples);

/*
 * Decode the file `path` (or, when path is NULL, `len` bytes at `buf`) for `model`.
 * The format is sniffed from the first bytes; only JPEG, PNG, GIF, WebP, TIFF and
 * HEIF/AVIF are read, each by its own loader.
 * On failure, *reason says why in verdict terms (too large, blocked, timeout ...),
 * errbuf says it in words, and `out` holds nothing.
 */
clipmod_error cm_image_decode(const clipmod_model *model, const char *path, const void *buf,
                              size_t len, const cm_image_opts *o, cm_frames *out,
                              clipmod_reason *reason, char *errbuf);

/* Free the frames. Accepts NULL and an empty struct. */
void cm_frames_free(cm_frames *f);

#endif
