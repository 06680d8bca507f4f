/*
 * imgcache.h - image embeddings kept on disk between evaluations (internal; the
 * public face is clipmod_image_cache_* in clipmod.h).
 */
#ifndef CM_IMGCACHE_H
#define CM_IMGCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "clipmod/clipmod.h"
#include "image.h"

#define CM_IMGCACHE_KEY 32 /* SHA-256 of the decode options and the image's bytes */

/* An input's key: *ok 0 when it cannot be cached (unreadable, not a regular file,
 * over the byte limit: the decoder then says why). `st` gets the file's identity
 * (path inputs) so a file changed while it is decoded is not stored. */
void cm_imgcache_key(const clipmod_input *in, const cm_image_opts *o, uint8_t key[CM_IMGCACHE_KEY],
                     struct stat *st, int *ok);

/* Non-zero if the file at `path` still has the identity `st` recorded. */
int cm_imgcache_same_file(const char *path, const struct stat *st);

/* The frames of a cached input (counted as a hit), or NULL (a miss); *frames set. */
const float *cm_imgcache_get(clipmod_image_cache *c, const uint8_t key[CM_IMGCACHE_KEY],
                             int *frames);

/* A hit that was embedded again after all (tuning.c: rebatch) counts as a miss. */
void cm_imgcache_unhit(clipmod_image_cache *c);

/* Remember `frames` embeddings (copied); one that fails the checks is not kept. */
clipmod_error cm_imgcache_put(clipmod_image_cache *c, const uint8_t key[CM_IMGCACHE_KEY],
                              const float *emb, int frames);

#endif
