/*
 * error.c - error codes, their descriptions, and the errbuf helper.
 *
 * The table below is the one place where an error code gets its words.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *const messages[CLIPMOD_E__COUNT] = {
    [CLIPMOD_OK] = "success",
    [CLIPMOD_E_INVALID_ARG] = "invalid argument",
    [CLIPMOD_E_NOMEM] = "out of memory",
    [CLIPMOD_E_IO] = "input/output error",
    [CLIPMOD_E_MODEL_FORMAT] = "malformed model file",
    [CLIPMOD_E_MODEL_CONFIG] = "invalid model configuration",
    [CLIPMOD_E_MODEL_TENSOR] = "missing or misshapen model tensor",
    [CLIPMOD_E_TOKENIZER] = "tokenizer merges missing or malformed",
    [CLIPMOD_E_IMAGE_DECODE] = "image could not be decoded",
    [CLIPMOD_E_IMAGE_BLOCKED] = "image format not allowed",
    [CLIPMOD_E_IMAGE_LIMIT] = "image exceeds a limit",
    [CLIPMOD_E_INIT] = "library not initialised",
    [CLIPMOD_E_POLICY] = "invalid policy",
    [CLIPMOD_E_PLUGIN] = "plugin could not be loaded",
};

const char *clipmod_strerror(clipmod_error err)
{
    if ((unsigned)err >= CLIPMOD_E__COUNT || !messages[err])
        return "unknown error";
    return messages[err];
}

const char *clipmod_version(void)
{
    return CLIPMOD_VERSION_STRING;
}

clipmod_error cm_error(char *errbuf, clipmod_error err, const char *fmt, ...)
{
    if (errbuf) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, CLIPMOD_ERROR_SIZE, fmt, ap);
        va_end(ap);
    }
    return err;
}

void *cm_alloc(size_t bytes)
{
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes)
        return NULL;
    if (posix_memalign(&p, 64, rounded ? rounded : 64))
        return NULL;
    return p;
}

void *cm_calloc(size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size)
        return NULL;
    void *p = cm_alloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void cm_free(void *p)
{
    free(p);
}
