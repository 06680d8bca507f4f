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
 * replaced by the next cm_wcache_save. `note` gets "" otherwise.
 */
int cm_wcache_load(const char *dir, const cm_wcache_id *id, const cm_safetensors *st,
                   const cm_config *cfg, cm_weights *w, uint64_t *fingerprint, char *note,
                   size_t size);

/*
 * Write the cache file of `id` for weights `w` just loaded from `st` (a new file
 * renamed over the old). Failing only costs the next load its time: one sentence in
 * `note` says why, else it names the file written.
 */
void cm_wcache_save(const char *dir, const cm_wcache_id *id, const cm_safetensors *st,
                    const cm_config *cfg, const cm_weights *w, uint64_t fingerprint, char *note,
                    size_t size);

/*
 * For the fuzz target: give the cache file of `id` in `dir` the digests of its
 * present bytes (header and image), so that edits reach the checks behind the
 * digests. 0 when done, -1 when the file is missing, of the wrong size, or its image
 * does not load.
 */
int cm_wcache_reseal(const char *dir, const cm_wcache_id *id, const cm_safetensors *st,
                     const cm_config *cfg);

#endif
