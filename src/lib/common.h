/*
 * common.h - small helpers shared by every module of libclipmod (internal).
 *
 * Error reporting: each failing function writes one line into the caller's errbuf
 * with cm_error() and returns the code, so the `goto out` style stays one line.
 */
#ifndef CM_COMMON_H
#define CM_COMMON_H

#include <stddef.h>

#include "clipmod/clipmod.h"

#if defined(__GNUC__)
#define CM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CM_PRINTF(a, b)
#endif

/*
 * Format a message into errbuf (CLIPMOD_ERROR_SIZE bytes; NULL is allowed) and
 * return `err`, so callers can write `return cm_error(errbuf, E, "...", ...)`.
 */
clipmod_error cm_error(char *errbuf, clipmod_error err, const char *fmt, ...) CM_PRINTF(3, 4);

/* malloc/calloc that round sizes up to 64-byte alignment for SIMD-friendly rows. */
void *cm_alloc(size_t bytes);
void *cm_calloc(size_t n, size_t size);
void cm_free(void *p);

#endif
