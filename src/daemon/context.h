/*
 * context.h - the text clipmodd hands the engine with each image (context.c).
 *
 * Owns the daemon's side of context-aware moderation (clipmod-policy(5) CONTEXT):
 * decoding the percent-encoded X-Clipmod-Context header, and joining the pieces of
 * an image's context (its file name first, then the texts that came with it: the
 * most specific first) under a byte cap. No I/O, no HTTP, no JSON here, so that
 * tests/fuzz/fuzz_daemon_context.c drives the same functions from a buffer. The library
 * cleans whatever it is given (invalid UTF-8, control and invisible characters) and
 * reads at most max-context-bytes of it; the cap here only bounds what clipmodd
 * holds and passes on (CONTEXT_CAP_FACTOR times max-context-bytes).
 */
#ifndef CLIPMODD_CONTEXT_H
#define CLIPMODD_CONTEXT_H

#include <stddef.h>

#include "dynbuf.h" /* src/common: cm_dbuf */

/* The request header carrying a raw body's context, percent-encoded UTF-8. */
#define CONTEXT_HEADER "X-Clipmod-Context"

/* What clipmodd holds of one image's context: this many times max-context-bytes. */
#define CONTEXT_CAP_FACTOR 4
/* ... but never more than this (an operator may set max-context-bytes very high). */
#define CONTEXT_CAP_MAX (16u << 20)

/*
 * Percent-decode `len` bytes at `in` into `out` (room for `len` bytes; may be `in`
 * itself), the decoded length in *outlen. "%XX" (two hex digits, either case) is
 * the byte XX; every other byte is kept as it is ('+' included: this is RFC 3986
 * percent-encoding, not a form's). Returns 0, or -1 when a '%' is not followed by
 * two hex digits (*outlen is then 0).
 */
int context_unescape(const char *in, size_t len, char *out, size_t *outlen);

/*
 * The length of the longest prefix of s[0..n) of at most `cap` bytes that does not
 * end inside a UTF-8 sequence (a cut never leaves half a character behind; bytes
 * that are not UTF-8 count as characters of their own).
 */
size_t context_utf8_prefix(const char *s, size_t n, size_t cap);

/*
 * Append the piece `s` (n bytes; any bytes) to the context being built in `b`,
 * after a newline when `b` already holds something; an empty piece adds nothing.
 * What does not fit under b's maximum is left out, cut at a character boundary
 * (context_utf8_prefix). Returns 0 when the piece fitted whole, 1 when it was cut
 * (or left out), -1 when out of memory (b keeps what it had).
 */
int context_add(cm_dbuf *b, const char *s, size_t n);

#endif
