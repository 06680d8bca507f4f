/*
 * dynbuf.c - the capped growing buffer (see dynbuf.h).
 *
 * Growth doubles the allocation (minimum 64 bytes) but is clamped to max + 1 so a
 * buffer near its cap never allocates more than it may use.
 */
#include "dynbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_dbuf_init(cm_dbuf *b, size_t max)
{
    b->s = NULL;
    b->len = 0;
    b->cap = 0;
    /* Room for the NUL: with max == SIZE_MAX, len + n + 1 would wrap to 0 in grow()
     * and a huge add would be "OK" with nothing allocated. */
    b->max = max < SIZE_MAX ? max : SIZE_MAX - 1;
}

/* Make room for `more` content bytes plus the NUL. */
static int grow(cm_dbuf *b, size_t more)
{
    if (more > b->max - b->len)
        return CM_DBUF_E_TOOBIG;
    size_t need = b->len + more + 1;
    if (need <= b->cap)
        return CM_DBUF_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need && cap <= (size_t)-1 / 2)
        cap *= 2;
    if (cap < need || cap > b->max + 1)
        cap = need > b->max + 1 ? need : b->max + 1;
    char *s = realloc(b->s, cap);
    if (!s)
        return CM_DBUF_E_NOMEM;
    b->s = s;
    b->cap = cap;
    return CM_DBUF_OK;
}

int cm_dbuf_addn(cm_dbuf *b, const void *p, size_t n)
{
    int rc = grow(b, n);
    if (rc != CM_DBUF_OK)
        return rc;
    if (n)
        memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
    return CM_DBUF_OK;
}

int cm_dbuf_add(cm_dbuf *b, const char *s)
{
    return cm_dbuf_addn(b, s, strlen(s));
}

int cm_dbuf_addc(cm_dbuf *b, char c)
{
    return cm_dbuf_addn(b, &c, 1);
}

int cm_dbuf_vaddf(cm_dbuf *b, const char *fmt, va_list ap)
{
    va_list copy;
    char small[256];

    va_copy(copy, ap);
    int n = vsnprintf(small, sizeof small, fmt, copy);
    va_end(copy);
    if (n < 0)
        return CM_DBUF_E_FORMAT;
    if ((size_t)n < sizeof small)
        return cm_dbuf_addn(b, small, (size_t)n);
    /* Too long for the stack: format straight into the buffer's tail. */
    int rc = grow(b, (size_t)n);
    if (rc != CM_DBUF_OK)
        return rc;
    va_copy(copy, ap);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, copy);
    va_end(copy);
    b->len += (size_t)n;
    return CM_DBUF_OK;
}

int cm_dbuf_addf(cm_dbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cm_dbuf_vaddf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *cm_dbuf_ptr(const cm_dbuf *b)
{
    return b->s ? b->s : "";
}

size_t cm_dbuf_len(const cm_dbuf *b)
{
    return b->len;
}

void cm_dbuf_reset(cm_dbuf *b)
{
    b->len = 0;
    if (b->s)
        b->s[0] = '\0';
}

char *cm_dbuf_take(cm_dbuf *b, size_t *len)
{
    char *s = b->s;
    if (len)
        *len = b->len;
    cm_dbuf_init(b, b->max);
    return s;
}

void cm_dbuf_free(cm_dbuf *b)
{
    if (!b)
        return;
    free(b->s);
    cm_dbuf_init(b, b->max);
}
