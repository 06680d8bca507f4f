/*
 * fuzz_milter_mime.c - clipmod-milter's MIME walk over a raw message (plugins/milter:
 * prescan.c, then GMime checked against it, mime.c, htmlent.c, containers.c, and the
 * text kept for the images' context: mailtext.c, html_text.c).
 *
 * The input is one message, walked twice: with the milter's default limits and with
 * tiny ones (so the limits themselves are reached often). Beyond memory safety the
 * target checks what the walk promises, and aborts when a promise is broken:
 *   - a walk that did not fail stayed within max-parts, and never lists more images
 *     than max-images;
 *   - an image with problem "ok" has its bytes, within max-image-bytes; any other
 *     has none; every image and container has a part label;
 *   - the pre-scan alone never lets through a message the walk then finds over the
 *     part or depth limits (the count before parsing is the bound on GMime's work);
 *   - every image's context is a string of its length within max_text_bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mime.h"
#include "prescan.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cmm_init();
    return 0;
}

static void walk(const uint8_t *data, size_t size, const cmm_limits *lim)
{
    cmm_walk w;
    cmm_prescan ps;
    int ps_rc = cmm_prescan_run(data, size, lim, &ps);

    if (cmm_walk_message(data, size, lim, &w) == 0) {
        check(w.failed || w.n_parts <= lim->max_parts);
        check(w.n_images <= lim->max_images);
        for (size_t i = 0; i < w.n_images; i++) {
            const cmm_image *im = &w.images[i];
            check(im->part && im->content_type);
            if (im->problem == CMM_OK)
                check(im->data && im->len > 0 && im->len <= lim->max_image_bytes);
            else
                check(!im->data);
        }
        for (size_t i = 0; i < w.n_images; i++) {
            char *ctx;
            size_t len;
            if (cmm_text_context(&w.text, w.images[i].content_id, w.images[i].filename, &ctx,
                                 &len) == 0 &&
                ctx) {
                check(len <= lim->max_text_bytes && strlen(ctx) == len);
                free(ctx);
            }
        }
        for (size_t i = 0; i < w.n_containers; i++)
            check(w.containers[i].part != NULL);
        /* Parts over the limit are found by the pre-scan, before GMime builds them. */
        if (ps_rc == 0 && !ps.failed && w.failed)
            check(!strstr(w.why, "MIME parts"));
    }
    cmm_walk_free(&w);
    cmm_prescan_free(&ps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const cmm_limits milter = {.max_parts = 1000,
                                      .max_depth = 16,
                                      .max_images = 64,
                                      .max_image_bytes = 25 << 20,
                                      .max_text_bytes = 16384};
    static const cmm_limits tiny = {.max_parts = 6,
                                    .max_depth = 2,
                                    .max_images = 2,
                                    .max_image_bytes = 64,
                                    .max_text_bytes = 9};
    walk(data, size, &milter);
    walk(data, size, &tiny);
    return 0;
}
