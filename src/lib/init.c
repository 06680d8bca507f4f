/*
 * init.c - process-wide set-up: libvips and OpenBLAS.
 *
 * libvips is told three things before it sees an untrusted byte: block every
 * loader libvips itself marks untrusted; block every loader, then re-allow only the
 * formats people upload (JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF), so SVG, PDF,
 * ImageMagick, FITS, Matlab ... stay closed; and keep no operation cache, since one
 * scan's pixels must never be served to another.
 */
#include <cblas.h>
#include <vips/vips.h>

#include "common.h"
#include "gemm.h"
#include "model.h"
#include "pool.h"

static int initialised;

static const char *const allowed_loaders[] = {
    "VipsForeignLoadJpeg",  "VipsForeignLoadPng",  "VipsForeignLoadWebp",
    "VipsForeignLoadNsgif", "VipsForeignLoadTiff", "VipsForeignLoadHeif",
};

/* libvips warns on stderr about oddities in untrusted files (bad ICC intents ...);
 * they are not the user's business unless CLIPMOD_DEBUG asks for them. */
static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
    if (g_getenv("CLIPMOD_DEBUG"))
        g_log_default_handler(domain, level, msg, data);
}

/*
 * OpenBLAS's thread count. With our own GEMM active, OpenBLAS only sees small
 * products (the towers' projections, image x prompt scores), where its threads
 * cost more than they give: after each call its idle workers spin on
 * sched_yield for about 0.1 s, taking a fifth of a 2-core machine away from our
 * pool (measured on the image tower at batch 1). So it runs them on the calling
 * thread. Under CLIPMOD_GEMM=openblas it does every product and gets them all.
 */
static void set_blas_threads(int n)
{
    openblas_set_num_threads(cm_gemm_isa_active() == CM_GEMM_OPENBLAS ? n : 1);
}

int cm_initialised(void)
{
    return initialised;
}

clipmod_error clipmod_init(const char *argv0)
{
    if (initialised)
        return CLIPMOD_OK;
    if (VIPS_INIT(argv0 ? argv0 : "clipmod"))
        return CLIPMOD_E_INIT;
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      quiet_log, NULL);
    vips_cache_set_max(0);
    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoad", TRUE);
    for (size_t i = 0; i < sizeof allowed_loaders / sizeof allowed_loaders[0]; i++)
        vips_operation_block_set(allowed_loaders[i], FALSE);
    set_blas_threads(cm_pool_threads());
    initialised = 1;
    return CLIPMOD_OK;
}

void clipmod_shutdown(void)
{
    if (!initialised)
        return;
    vips_shutdown();
    initialised = 0;
}

void clipmod_set_threads(int n)
{
    if (n > 0) {
        cm_pool_set_threads(n); /* our GEMM and element-wise kernels (src/lib/pool.c) */
        set_blas_threads(n);
    }
}
