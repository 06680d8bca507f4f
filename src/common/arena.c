/*
 * arena.c - the bump allocator (see arena.h), once for the policy parser and the
 * YAML reader, which each had their own copy.
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLIPMOD_BUILDING_LIBRARY
#include "common.h"
#define A_ALLOC(n) cm_alloc(n)
#define A_FREE(p)  cm_free(p)
#else
#define A_ALLOC(n) malloc(n)
#define A_FREE(p)  free(p)
#endif

#define ARENA_BLOCK (64u << 10)

struct cm_arena_block {
    cm_arena_block *next;
    size_t used, size;
    max_align_t data[];
};

void *cm_arena_alloc(cm_arena *a, size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->size - a->head->used < n) {
        size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        cm_arena_block *b = A_ALLOC(sizeof *b + size);
        if (!b)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->size = size;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

char *cm_arena_strndup(cm_arena *a, const char *s, size_t len)
{
    char *d = cm_arena_alloc(a, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

void cm_arena_release(cm_arena *a)
{
    if (!a)
        return;
    for (cm_arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        A_FREE(b);
    }
    a->head = NULL;
}
