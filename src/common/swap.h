/*
 * swap.h - the reference-counted engine swap on reload, shared by clipmodd and
 * clipmod-milter.
 *
 * Owns the "current engine" slot: the engine, its generation (1 for the first,
 * +1 per successful swap), when it was loaded (wall seconds) and the fingerprint
 * of its policy. A request takes its own reference with cm_swap_acquire() and
 * gives it back with clipmod_engine_free() (the library counts references, see
 * clipmod_engine_ref), so a reload never waits for requests and the old engine is
 * freed by whichever request ends last on it: no request is dropped, none sees
 * half a policy. All functions are thread-safe (one mutex, held only to copy a
 * pointer and a few numbers).
 */
#ifndef CM_SWAP_H
#define CM_SWAP_H

#include "clipmod/clipmod.h"

typedef struct cm_swap cm_swap;

/* A snapshot of the slot, for /v1/health, logs and metrics. */
typedef struct cm_swap_info {
    unsigned long generation; /* 0 while the slot is empty */
    double loaded_at;         /* wall seconds (clock.h cm_wall), 0 while empty */
    char policy_fp[80];       /* "" when unknown */
} cm_swap_info;

/* A new empty slot, or NULL when out of memory. */
cm_swap *cm_swap_new(void);

/*
 * Install `fresh` (the slot takes over the caller's reference) with its policy
 * fingerprint (copied, may be NULL), and drop the slot's reference to the previous
 * engine. Returns the previous generation (0 when the slot was empty); the new
 * generation is that + 1. fresh must not be NULL.
 */
unsigned long cm_swap_install(cm_swap *s, clipmod_engine *fresh, const char *policy_fp);

/* A new reference to the current engine (NULL when empty); release it with clipmod_engine_free. */
clipmod_engine *cm_swap_acquire(cm_swap *s);

/* Like cm_swap_acquire, also giving the snapshot that belongs to that engine. */
clipmod_engine *cm_swap_acquire_info(cm_swap *s, cm_swap_info *info);

/* The current snapshot. */
void cm_swap_info_get(cm_swap *s, cm_swap_info *info);

/* Drop the slot's reference and free the slot; engines still held by requests live on. NULL ok. */
void cm_swap_free(cm_swap *s);

#endif
