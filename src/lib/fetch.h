/*
 * fetch.h - downloading images by URL for fetch mode (internal).
 */
#ifndef CM_FETCH_H
#define CM_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"
#include "ssrf.h"

/* How to download: the engine's fetch settings and allow-list. */
typedef struct cm_fetch_opts {
    uint64_t max_bytes;     /* max-file-bytes: a body over it is stopped there */
    uint64_t connect_ms;    /* fetch-connect-ms, per connection */
    uint64_t timeout_ms;    /* fetch-timeout-ms, per URL, redirects included */
    uint64_t max_redirects; /* fetch-max-redirects */
    uint64_t parallel;      /* fetch-parallel: transfers at once */
    const cm_allow *allow;  /* may be NULL */
    uint64_t total_ms;      /* the whole call, every URL: 0 for no such limit */
    int socket_guard_only;  /* tests: skip the early check of address literals in URLs */
} cm_fetch_opts;

/* What one URL gave: its body, or the verdict's reason for having none. */
typedef struct cm_fetched {
    unsigned char *data; /* malloc'd; NULL unless reason is CLIPMOD_REASON_NONE */
    size_t len;
    clipmod_reason reason;
    char why[CLIPMOD_ERROR_SIZE]; /* a sentence when reason is not NONE */
    double elapsed_ms;
} cm_fetched;

/*
 * Download the `n` URLs, at most o->parallel at once, into out[0..n) (in input
 * order, whatever order they finish in). Every failure is a reason in out[i];
 * the return value is CLIPMOD_E_NOMEM or CLIPMOD_E_INVALID_ARG (a NULL URL) only.
 * Free what it returns with cm_fetched_free() even on error.
 */
clipmod_error cm_fetch(const cm_fetch_opts *o, const char *const *urls, size_t n, cm_fetched *out);

/* Free the bodies of out[0..n). Accepts NULL. */
void cm_fetched_free(cm_fetched *out, size_t n);

#endif
