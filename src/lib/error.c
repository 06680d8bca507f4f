/*
 * error.c - error codes, their descriptions, the errbuf helper, and the library's
 * allocator (cm_alloc & co., with the allocation-failure injection used by tests).
 *
 * The table below is the one place where an error code gets its words.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
    [CLIPMOD_E_UNSUPPORTED] = "this CPU lacks an instruction set the request needs",
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

/*
 * Failure injection: `armed` is the only thing the hot path reads. While armed,
 * every allocation takes a ticket from `count`; the ticket equal to `fail_at` fails.
 */
static atomic_int armed;
static atomic_long count;
static atomic_long fail_at;

static int inject_failure(void)
{
    if (!atomic_load_explicit(&armed, memory_order_relaxed))
        return 0;
    long ticket = atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) + 1;
    return ticket == atomic_load_explicit(&fail_at, memory_order_relaxed);
}

void cm_alloc_fail_at(long n)
{
    atomic_store(&armed, 0);
    atomic_store(&count, 0);
    atomic_store(&fail_at, n > 0 ? n : 0);
    atomic_store(&armed, 1);
}

void cm_alloc_fail_off(void)
{
    atomic_store(&armed, 0);
}

long cm_alloc_count(void)
{
    return atomic_load(&count);
}

int cm_alloc_injected(void)
{
    long n = atomic_load(&fail_at);
    return n > 0 && atomic_load(&count) >= n;
}

void *cm_alloc(size_t bytes)
{
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes || inject_failure())
        return NULL;
    if (posix_memalign(&p, 64, rounded ? rounded : 64))
        return NULL;
    return p;
}

void *cm_alloc_huge(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < 4 * huge)
        return cm_alloc(bytes);
    void *p = NULL;
    const size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    if (rounded < bytes || inject_failure())
        return NULL;
    if (posix_memalign(&p, huge, rounded))
        return NULL;
#ifdef MADV_HUGEPAGE
    /* A hint: where transparent huge pages are "madvise" (Debian's default), first
     * touch faults 2 MB at a time instead of 4 KB (loading ViT-B/32's 350 MB of
     * weights faulted 90,000 pages). */
    (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
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

void *cm_realloc(void *p, size_t bytes)
{
    if (inject_failure())
        return NULL;
    /* realloc(p, 0) may free p and return NULL; keep "NULL means failure". */
    return realloc(p, bytes ? bytes : 1);
}

char *cm_strdup(const char *s)
{
    return cm_strndup(s, (size_t)-1);
}

char *cm_strndup(const char *s, size_t max)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, max);
    if (len == (size_t)-1 || inject_failure())
        return NULL;
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *cm_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = cm_alloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void cm_free(void *p)
{
    free(p);
}
