/*
 * limits.c - the one table of default limits.
 *
 * Every bound the library applies to untrusted input starts here, so an operator
 * reading this file (or clipmod(1)) sees them all at once.
 */
#include "clipmod/clipmod.h"

static const clipmod_limits defaults = {
    /* A camera JPEG is 5-15 MB; a 50 MB upload is an archive in disguise or an attack. */
    .max_file_bytes = 50ull << 20,
    /* 50 megapixels: a 8660 x 5773 photo. Decoding is streamed, so this bounds time. */
    .max_pixels = 50000000ull,
    /* Banner-shaped "images" 1 px high and 10^6 px wide are a classic decoder attack. */
    .max_side = 20000,
};

void clipmod_limits_default(clipmod_limits *lim)
{
    if (lim)
        *lim = defaults;
}
