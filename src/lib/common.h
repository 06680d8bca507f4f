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

/*
 * The `size` rule for caller-allocated structures (clipmod.h; structsize.c). A kind
 * names a structure for messages, its first published size, the size this library
 * knows, and the initialiser the caller should have used.
 */
typedef struct cm_struct_kind {
    const char *what; /* "clipmod_limits" */
    size_t v1_size;   /* CLIPMOD_LIMITS_SIZE_V1 */
    size_t have;      /* sizeof(clipmod_limits) */
    const char *init; /* "clipmod_limits_default()" */
} cm_struct_kind;

/* Record why a caller's structure is refused (clipmod_invalid_arg_reason()), copy it
 * into errbuf (may be NULL), and return CLIPMOD_E_INVALID_ARG. */
clipmod_error cm_refuse(char *errbuf, const char *fmt, ...) CM_PRINTF(2, 3);
/* Check a caller's size `given` for a structure at p (NULL: the size alone). */
clipmod_error cm_struct_check(const void *p, size_t given, const cm_struct_kind *k, char *errbuf);
/* Copy the caller's structure src (its size first) into dst, which holds the defaults
 * of the members the caller may lack; dst->size becomes k->have. */
clipmod_error cm_struct_in(void *dst, const void *src, const cm_struct_kind *k, char *errbuf);
/* Fill the caller's dst (its size set, and kept) from the library's src. */
clipmod_error cm_struct_out(void *dst, const void *src, const cm_struct_kind *k, char *errbuf);
/* `inputs` as this library's clipmod_input: *view is inputs itself when built with this
 * header, else a converted copy in *copy (cm_free it). n == 0 or NULL inputs pass. */
/* clipmod_limits (limits.c). */
extern const cm_struct_kind cm_limits_kind;
clipmod_error cm_inputs_view(const clipmod_input *inputs, size_t n, clipmod_input **copy,
                             const clipmod_input **view);

/*
 * The library's allocator. Every allocation in src/lib goes through these so that
 * allocation-failure injection (below) reaches it. cm_alloc/cm_calloc return
 * 64-byte-aligned blocks (SIMD-friendly rows); cm_realloc/cm_strdup/cm_strndup are
 * plain malloc-family blocks. All of them are released with cm_free(), which is
 * free(), so a block may also be handed to a caller who frees it with free() or
 * clipmod_free(). cm_realloc(p, 0) shrinks p to a minimal block instead of freeing
 * it, so NULL always means failure (and p is then untouched, like realloc).
 */
void *cm_alloc(size_t bytes);
/* cm_alloc for big long-lived blocks (weights): 2 MB aligned, transparent huge pages asked for. */
void *cm_alloc_huge(size_t bytes);
void *cm_calloc(size_t n, size_t size);
void *cm_realloc(void *p, size_t bytes);
char *cm_strdup(const char *s);              /* NULL for s == NULL */
char *cm_strndup(const char *s, size_t max); /* at most max bytes of s, NUL-terminated */
char *cm_asprintf(const char *fmt, ...) CM_PRINTF(1, 2); /* NULL on failure */
void cm_free(void *p);

/*
 * Allocation-failure injection, for tests (tests/unit/test_oom.c). Internal and not
 * exported from libclipmod.so; costs one relaxed atomic load per allocation while
 * disarmed. cm_alloc_fail_at(n) resets the count and arms it: the n-th allocation
 * from now (1-based) fails and every other succeeds; n = 0 only counts.
 * cm_alloc_fail_off() disarms it. cm_alloc_count() is the number of allocations
 * since the last cm_alloc_fail_at(); cm_alloc_injected() says whether the failure
 * has happened yet.
 */
void cm_alloc_fail_at(long n);
void cm_alloc_fail_off(void);
long cm_alloc_count(void);
int cm_alloc_injected(void);

#endif
