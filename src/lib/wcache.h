/*
 * wcache.h - the image tower kept on disk, converted and packed, between runs
 * (internal; see wcache.c).
 */
#ifndef CM_WCACHE_H
#define CM_WCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "config.h"
#include "safetensors.h"
#include "weights.h"

/* What names a checkpoint for its cache file: its path and what stat() said of it. */
typedef struct cm_wcache_id {
    const char *path;        /* the safetensors file, as opened */
    const struct stat *file; /* its identity */
    clipmod_precision precision;
} cm_wcache_id;

/*
 * Load w's image tower from the cache file of `id` in directory `dir`: 1 when it
 * did (w as cm_weights_load_at would give it, the tower mapped read-only from the
 * file; *fingerprint is the checkpoint's, as the file recorded it), else 0 with w
 * zeroed. A missing file is a quiet 0; a file that does not match (damaged,
 * another layout, a changed checkpoint) is a 0 with one sentence in `note`, and is
 * replaced when the load that follows writes it again (cm_wcache_create). `note`
 * gets "" otherwise.
 */
int cm_wcache_load(const char *dir, const cm_wcache_id *id, const cm_safetensors *st,
                   const cm_config *cfg, cm_weights *w, uint64_t *fingerprint, char *note,
                   size_t size);

/*
 * A miss: the new cache file of `id`, made now (its blocks reserved) and mapped
 * shared and writable, so that the loader fills the file's image directly
 * (cm_weights_load_into(..., cm_wcache_image(n), ...)): no second copy, in memory or
 * written. NULL when the cache cannot be written (one sentence in `note`): load
 * into memory of your own then. Also removes stale files (see wcache.c).
 */
typedef struct cm_wcache_new cm_wcache_new;
cm_wcache_new *cm_wcache_create(const char *dir, const cm_wcache_id *id, const cm_config *cfg,
                                char *note, size_t size);

/* The image to load into: cm_weights_image_bytes' worth, zeroed. */
void *cm_wcache_image(const cm_wcache_new *n);

/*
 * After a successful load of w from `st` into the image (w took the mapping): the
 * file gets its digests and header, is renamed into place, and the mapping becomes
 * read-only. If the file cannot be finished (a pack that failed, a write error), w
 * still works from the mapping of the discarded file; `note` says which. Frees n.
 */
void cm_wcache_commit(cm_wcache_new *n, const cm_safetensors *st, const cm_config *cfg,
                      cm_weights *w, uint64_t fingerprint, char *note, size_t size);

/* The load failed: unmap and remove the new file. Accepts NULL. */
void cm_wcache_discard(cm_wcache_new *n);

/*
 * For the fuzz target: give the cache file of `id` in `dir` the digests of its
 * present bytes (header and image), so that edits reach the checks behind the
 * digests. 0 when done, -1 when the file is missing, of the wrong size, or its image
 * does not load.
 */
int cm_wcache_reseal(const char *dir, const cm_wcache_id *id, const cm_safetensors *st,
                     const cm_config *cfg);

#endif
