/*
 * dynbuf.h - one capped, growing byte buffer for the whole runtime (as curl's
 * lib/dynbuf.c).
 *
 * Owns: a heap buffer that grows on demand but never past a hard maximum fixed at
 * init. Every add is checked: it returns CM_DBUF_E_TOOBIG when the content would
 * pass the cap and CM_DBUF_E_NOMEM when memory runs out; in both cases the buffer
 * keeps its previous content and stays usable (the caller decides whether a
 * truncated line is acceptable). The content is always NUL-terminated, so
 * cm_dbuf_ptr() can be used as a C string; it may also hold NUL bytes (addn).
 * Not thread-safe: one owner at a time.
 */
#ifndef CM_DYNBUF_H
#define CM_DYNBUF_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define CM_DBUF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CM_DBUF_PRINTF(a, b)
#endif

enum {
    CM_DBUF_OK = 0,
    CM_DBUF_E_TOOBIG = -1, /* the add would pass the buffer's maximum */
    CM_DBUF_E_NOMEM = -2,  /* allocation failed */
    CM_DBUF_E_FORMAT = -3  /* vsnprintf reported an encoding error */
};

typedef struct cm_dbuf {
    char *s;    /* NULL until the first add */
    size_t len; /* content bytes, not counting the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* hard limit on len */
} cm_dbuf;

/* Set up an empty buffer whose content may never exceed `max` bytes (SIZE_MAX counts
 * as SIZE_MAX - 1: the NUL needs a byte). Allocates nothing. */
void cm_dbuf_init(cm_dbuf *b, size_t max);

/* Append n bytes / a C string / one char / a printf-formatted string. 0 or CM_DBUF_E_*. */
int cm_dbuf_addn(cm_dbuf *b, const void *p, size_t n);
int cm_dbuf_add(cm_dbuf *b, const char *s);
int cm_dbuf_addc(cm_dbuf *b, char c);
int cm_dbuf_addf(cm_dbuf *b, const char *fmt, ...) CM_DBUF_PRINTF(2, 3);
int cm_dbuf_vaddf(cm_dbuf *b, const char *fmt, va_list ap) CM_DBUF_PRINTF(2, 0);

/* The content ("" for an empty buffer, never NULL; owned by b) and its length. */
const char *cm_dbuf_ptr(const cm_dbuf *b);
size_t cm_dbuf_len(const cm_dbuf *b);

/* Empty the buffer but keep its memory and maximum. */
void cm_dbuf_reset(cm_dbuf *b);

/*
 * Hand the content to the caller (free() it; NULL if nothing was ever added) and
 * leave b empty, as after init with the same maximum.
 */
char *cm_dbuf_take(cm_dbuf *b, size_t *len);

/* Release the memory; b is empty afterwards and may be reused. NULL is accepted. */
void cm_dbuf_free(cm_dbuf *b);

#endif
