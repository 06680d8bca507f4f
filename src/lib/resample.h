/*
 * resample.h - PIL-exact bicubic resizing of 8-bit RGB (internal).
 */
#ifndef CM_RESAMPLE_H
#define CM_RESAMPLE_H

#include <stdint.h>

/*
 * Resize interleaved RGB `in` [h][w][3] to `out` [oh][ow][3] exactly as Pillow's
 * Image.resize(BICUBIC) does for mode "RGB". Returns 0, or -1 if memory runs out.
 */
int cm_resample_bicubic(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh);

#endif
