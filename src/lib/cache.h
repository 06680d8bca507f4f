/*
 * cache.h - prompt embeddings kept on disk between runs (internal).
 */
#ifndef CM_CACHE_H
#define CM_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clipmod/clipmod.h"

typedef struct cm_cache cm_cache;

/*
 * The cache of the model with `fingerprint` in directory `dir` (created 0700 if need
 * be). A missing, unreadable or damaged file gives an empty cache, and damaged or
 * implausible records are dropped: the cache only ever saves time. A directory that
 * is a symbolic link, belongs to another user or is writable by others is not used
 * (gets miss, puts and saves do nothing). cm_cache_warning() says what happened.
 * NULL only when out of memory.
 */
cm_cache *cm_cache_open(const char *dir, uint64_t fingerprint, size_t dim);

/* The embedding of `text`, or NULL. Valid until the next put. */
const float *cm_cache_get(const cm_cache *c, const char *text);

/* Remember the embedding of `text` (dim floats, copied). */
clipmod_error cm_cache_put(cm_cache *c, const char *text, const float *emb);

/* Write the file if anything changed: a new temporary file renamed over the old. */
clipmod_error cm_cache_save(cm_cache *c);

/*
 * One sentence for the user when the cache was not used or records of its file were
 * rejected (they are recomputed and the file rewritten), else NULL. Owned by `c`.
 */
const char *cm_cache_warning(const cm_cache *c);

/* Accepts NULL. */
void cm_cache_free(cm_cache *c);

/*
 * What the prompt cache and the image cache (imgcache.c) share: the directory
 * checks, the safe read and the O_EXCL-write-then-rename of a file, the per-record
 * digest and the check of a vector read back. Warnings are one sentence into
 * `warning` (`size` bytes).
 */
#define CM_CACHE_DIGEST 32 /* SHA-256 */

/* The directory (created 0700), opened; -1 with a warning when it must not be used:
 * a symbolic link, another user's, or writable by others. */
int cm_cache_dir_open(const char *dir, char *warning, size_t size);

/* $XDG_CACHE_HOME/clipmod or ~/.cache/clipmod into buf; -1 (buf "") if neither. */
int cm_cache_default_dir(char *buf, size_t size);

/* The file `name` of the opened directory for reading, never through a symbolic
 * link and only a regular file; NULL when missing (no warning) or refused (a
 * warning, *rewrite set so the bad file gets replaced). */
FILE *cm_cache_file_open(int dirfd, const char *dir, const char *name, char *warning, size_t size,
                         int *rewrite);

/* A new 0600 file in the opened directory, opened for reading and writing, under a
 * name nobody could have planted (".NAME.<random>.tmp", O_EXCL), written to `tmp`;
 * its descriptor, or -1. */
int cm_cache_temp_create(int dirfd, const char *name, char *tmp, size_t size);

/* Write `name` in the opened directory: `write(f, arg)` (non-zero: ok) fills a new
 * 0600 file created O_EXCL under a random name, which is then renamed over `name`. */
clipmod_error cm_cache_file_write(int dirfd, const char *name, int (*write)(FILE *, const void *),
                                  const void *arg);

/* SHA-256 of (magic, fingerprint, dim as u32, key, n floats of v): one record's digest. */
void cm_cache_digest(const char magic[8], uint64_t fingerprint, size_t dim, const void *key,
                     size_t keylen, const float *v, size_t n, uint8_t out[CM_CACHE_DIGEST]);

/* NULL if `v` can be an embedding (finite, unit length), else what is wrong. */
const char *cm_cache_vector_problem(const float *v, size_t dim);

/* A 64-bit hash of `len` bytes (FNV-1a style, word at a time), seeded. */
uint64_t cm_hash64(const void *data, size_t len, uint64_t seed);

/*
 * Fold the whole 32-byte words of p[0, len) into four independent multiply-xor
 * lanes (len a multiple of 32): near memory speed, for hashing hundreds of MB (the
 * model's fingerprint, a weights cache file's digest). Start from {1, 2, 3, 4}.
 */
void cm_hash_lanes(uint64_t lane[4], const void *p, size_t len);

#endif
