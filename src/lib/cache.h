/*
 * cache.h - prompt embeddings kept on disk between runs (internal).
 */
#ifndef CM_CACHE_H
#define CM_CACHE_H

#include <stddef.h>
#include <stdint.h>

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

/* A 64-bit hash of `len` bytes (FNV-1a style, word at a time), seeded. */
uint64_t cm_hash64(const void *data, size_t len, uint64_t seed);

#endif
