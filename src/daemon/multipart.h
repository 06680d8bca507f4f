/*
 * multipart.h - a streaming multipart/form-data reader (RFC 7578, RFC 2046).
 *
 * clipmodd's own, so that it can be fuzzed on its own (tests/fuzz/fuzz_multipart.c)
 * and so that every part, however its headers are spelled, reaches the caller:
 * the caller decides what is a file. Bytes are fed as they arrive; part data is
 * handed on at once and nothing but one part's header block is buffered. Every
 * limit is explicit: boundary length (RFC 2046: 1 to 70), parts per body, header
 * bytes per part, transport padding after a delimiter.
 */
#ifndef CLIPMODD_MULTIPART_H
#define CLIPMODD_MULTIPART_H

#include <stddef.h>

#define MP_MAX_BOUNDARY 70
/* Longest name or file name handed to the caller, in bytes (valid UTF-8). */
#define MP_MAX_NAME 255

typedef enum {
    MP_OK = 0,
    MP_MALFORMED, /* not multipart/form-data as RFC 7578 writes it, or truncated */
    MP_LIMIT,     /* over a limit of mp_limits */
    MP_STOPPED    /* a callback asked to stop */
} mp_status;

typedef struct mp_limits {
    size_t max_parts;        /* parts in one body, files and fields alike */
    size_t max_header_bytes; /* the header block of one part, CRLFs included */
} mp_limits;

/* One part's headers, as the `begin` callback sees them (valid until it returns). */
typedef struct mp_part {
    size_t index;             /* 0 for the first part */
    const char *name;         /* the field name, or NULL */
    const char *filename;     /* filename*= decoded (RFC 5987), else filename=, or NULL */
    const char *content_type; /* printable ASCII, or NULL when absent */
    int has_filename;         /* any filename parameter at all (filename*0=... included) */
    int form_data;            /* the disposition type is form-data */
} mp_part;

/* Each returns 0 to go on; anything else stops the reader (MP_STOPPED). */
typedef struct mp_callbacks {
    int (*begin)(void *arg, const mp_part *part);
    int (*data)(void *arg, const unsigned char *data, size_t n);
    int (*end)(void *arg);
} mp_callbacks;

typedef struct mp_reader mp_reader;

/*
 * A reader for a body of Content-Type `content_type` (its boundary parameter).
 * NULL with *status set (MP_MALFORMED: not multipart/form-data, no or a bad
 * boundary; MP_LIMIT: out of memory) and a sentence in `why`.
 */
mp_reader *mp_new(const char *content_type, const mp_limits *limits, const mp_callbacks *cb,
                  void *arg, mp_status *status, char *why, size_t whylen);

/* Feed `n` more bytes. Once it returned an error, it returns that error again. */
mp_status mp_feed(mp_reader *r, const void *data, size_t n);

/* The body ended: MP_OK only if the closing delimiter was read. */
mp_status mp_finish(mp_reader *r);

/* Why the last call failed, a sentence ("" when it did not). */
const char *mp_error(const mp_reader *r);

/* Accepts NULL. */
void mp_free(mp_reader *r);

#endif
