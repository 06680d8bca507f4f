/*
 * limits.c - the one table of settings and their defaults.
 *
 * Every bound the library applies to untrusted input starts here, so an operator
 * reading this file (or clipmod(1)) sees them all at once. clipmod_limits (the
 * image-loading subset) and the engine's settings are both filled from it.
 */
#include <string.h>

#include "common.h"

static const struct {
    const char *name;
    uint64_t value;
} settings[CLIPMOD_SETTING__COUNT] = {
    /* A camera JPEG is 5-15 MB; a 50 MB upload is an archive in disguise or an attack. */
    [CLIPMOD_MAX_FILE_BYTES] = {"max-file-bytes", 50ull << 20},
    /* 50 megapixels: a 8660 x 5773 photo. JPEGs shrink on load; others decode fully. */
    [CLIPMOD_MAX_PIXELS] = {"max-pixels", 50000000ull},
    /* Banner-shaped "images" 1 px high and 10^6 px wide are a classic decoder attack. */
    [CLIPMOD_MAX_SIDE] = {"max-side", 20000},
    /* A GIF with more frames than this is refused, not sampled: decoding is linear. */
    [CLIPMOD_MAX_FRAMES] = {"max-frames", 1000},
    /* Pixels one input may cost to decode, every frame up to the last sampled one
     * included (a GIF frame needs the frames before it). 250 MP is 5 still images at
     * max-pixels, or 250 frames of 1000x1000: about 1.5 s of GIF decoding here. A
     * 2 MB GIF of 1000 such frames stays within every other limit and costs 1000 MP. */
    [CLIPMOD_MAX_TOTAL_PIXELS] = {"max-total-pixels", 250000000ull},
    /* Decoding a 50 MP JPEG takes ~1 s here; ten times that is a decompression bomb. */
    [CLIPMOD_MAX_SCAN_MS] = {"max-scan-ms", 10000},
    /* Enough to explain a verdict without flooding the JSON. */
    [CLIPMOD_TOP_PROMPTS] = {"top-prompts", 3},
    /* A server that takes 5 s to accept a connection is not serving images. */
    [CLIPMOD_FETCH_CONNECT_MS] = {"fetch-connect-ms", 5000},
    /* 50 MB at 2 MB/s; a slower server is treated as an attack on our threads. */
    [CLIPMOD_FETCH_TIMEOUT_MS] = {"fetch-timeout-ms", 30000},
    /* Image CDNs redirect once or twice; loops are cut here. */
    [CLIPMOD_FETCH_MAX_REDIRECTS] = {"fetch-max-redirects", 5},
    /* Downloads at once for a list of URLs. */
    [CLIPMOD_FETCH_PARALLEL] = {"fetch-parallel", 8},
    /* A long mail body is 10-20 KB of text; what matters is near its start (the
     * caption, the alt text, the subject are put first), and more costs text-tower time. */
    [CLIPMOD_MAX_CONTEXT_BYTES] = {"max-context-bytes", 16384},
    /* 8 windows of 75 tokens (~2,400 words) cost 8 text-tower passes, ~5 ms with ViT-B/32. */
    [CLIPMOD_MAX_CONTEXT_WINDOWS] = {"max-context-windows", 8},
};

uint64_t clipmod_setting_default(clipmod_setting s)
{
    return (unsigned)s < CLIPMOD_SETTING__COUNT ? settings[s].value : 0;
}

const char *clipmod_setting_name(clipmod_setting s)
{
    return (unsigned)s < CLIPMOD_SETTING__COUNT ? settings[s].name : "unknown";
}

const cm_struct_kind cm_limits_kind = {
    "clipmod_limits",
    CLIPMOD_LIMITS_SIZE_V1,
    sizeof(clipmod_limits),
    "clipmod_limits_default()",
};

clipmod_error clipmod_limits_init(clipmod_limits *lim, size_t size)
{
    if (!lim)
        return cm_refuse(NULL, "clipmod_limits_init: no structure to fill");
    clipmod_error rc = cm_struct_check(NULL, size, &cm_limits_kind, NULL);
    if (rc)
        return rc;
    clipmod_limits d = {.size = size};
    d.max_file_bytes = settings[CLIPMOD_MAX_FILE_BYTES].value;
    d.max_pixels = settings[CLIPMOD_MAX_PIXELS].value;
    d.max_side = (uint32_t)settings[CLIPMOD_MAX_SIDE].value;
    /* A caller built against a newer header: its members we do not know stay 0. */
    memset(lim, 0, size);
    memcpy(lim, &d, size < sizeof d ? size : sizeof d);
    return CLIPMOD_OK;
}
