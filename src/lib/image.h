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

#endif
