/*
 * heif_write.c - write an image as AVIF and HEIC with libvips, for tests.
 *
 * Usage: heif_write IN OUT.avif OUT.heic
 * PIL here cannot write either format; libvips (with libheif) can, so the tests
 * make their own HEIF inputs instead of shipping binary fixtures.
 */
#include <stdio.h>
#include <vips/vips.h>

int main(int argc, char **argv)
{
    VipsImage *im = NULL;
    int rc = 1;
    if (argc != 4) {
        fprintf(stderr, "usage: %s IN OUT.avif OUT.heic\n", argv[0]);
        return 2;
    }
    if (VIPS_INIT(argv[0]))
        return 2;
    im = vips_image_new_from_file(argv[1], NULL);
    if (!im || vips_heifsave(im, argv[2], "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL) ||
        vips_heifsave(im, argv[3], "compression", VIPS_FOREIGN_HEIF_COMPRESSION_HEVC, NULL))
        fprintf(stderr, "heif_write: %s", vips_error_buffer());
    else
        rc = 0;
    if (im)
        g_object_unref(im);
    vips_shutdown();
    return rc;
}
