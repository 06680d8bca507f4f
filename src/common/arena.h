/*
 * arena.h - the bump allocator of parse trees and compiled policies.
 *
 * Owns memory that lives and dies together: a YAML document's nodes and strings
 * (yaml.c), a compiled policy and the scratch of its compile (src/lib/policy.c).
 * Blocks of 64 KiB (or one block of the size asked when larger) are chained and
 * freed at once, so a hostile file costs a bounded number of allocations and no
 * node is ever freed alone. Inside libclipmod (CLIPMOD_BUILDING_LIBRARY) blocks
 * come from cm_alloc, where allocation-failure injection (tests/oom.sh) reaches
 * them. Not thread-safe: an arena belongs to one parse or one policy.
 */
#ifndef CM_ARENA_H
#define CM_ARENA_H

#include <stddef.h>

typedef struct cm_arena_block cm_arena_block;

/* Zero-initialise (cm_arena a = {0};) before the first allocation. */
typedef struct cm_arena {
    cm_arena_block *head;
} cm_arena;

/* n zeroed bytes aligned for any type, owned by the arena; NULL when out of memory. */
void *cm_arena_alloc(cm_arena *a, size_t n);

/* A NUL-terminated copy of s[0..len) in the arena; NULL when out of memory. */
char *cm_arena_strndup(cm_arena *a, const char *s, size_t len);

/* Free every block; the arena is empty and usable again. NULL is accepted. */
void cm_arena_release(cm_arena *a);

#endif
