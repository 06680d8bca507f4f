/*
 * scratch.c - working memory of the forward passes and their GEMMs, kept per thread
 * between calls.
 *
 * A batch-8 image pass needs about 19 MB of activations. Allocated and freed per
 * call, glibc hands most of it back to the kernel, and the next call faults every
 * page in again: about 2,800 faults per pass, and first touch costs about 3 us
 * per 4 KB page on the VMs we run on (3% of a pass). Each thread keeps one block
 * per slot, grown when a call needs more, up to CM_SCRATCH_KEEP; larger requests
 * (big prompt batches through the text tower) are allocated and freed as before,
 * so what stays resident is bounded per thread that runs passes. A slot already in
 * use on this thread (a nested call) gets a fresh block.
 */
#include <pthread.h>
#include <stdlib.h>

#include "common.h"
#include "scratch.h"

typedef struct kept {
    void *p[CM_SCRATCH_SLOTS];
    size_t cap[CM_SCRATCH_SLOTS];
    int busy[CM_SCRATCH_SLOTS];
} kept;

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int key_ok;

static void kept_free(void *v)
{
    kept *k = v;
    for (int i = 0; i < CM_SCRATCH_SLOTS; i++)
        cm_free(k->p[i]);
    free(k);
}

static void key_init(void)
{
    key_ok = pthread_key_create(&key, kept_free) == 0;
}

/* This thread's blocks, created on first use; NULL when that fails. */
static kept *mine(void)
{
    pthread_once(&once, key_init);
    if (!key_ok)
        return NULL;
    kept *k = pthread_getspecific(key);
    if (!k) {
        k = calloc(1, sizeof *k);
        if (k && pthread_setspecific(key, k) != 0) {
            free(k);
            k = NULL;
        }
    }
    return k;
}

void *cm_scratch_take(cm_scratch_slot slot, size_t bytes)
{
    kept *k = bytes <= CM_SCRATCH_KEEP ? mine() : NULL;
    if (!k || k->busy[slot])
        return cm_alloc(bytes);
    if (k->cap[slot] < bytes) {
        cm_free(k->p[slot]);
        k->p[slot] = cm_alloc(bytes);
        k->cap[slot] = k->p[slot] ? bytes : 0;
        if (!k->p[slot])
            return NULL;
    }
    k->busy[slot] = 1;
    return k->p[slot];
}

void cm_scratch_give(cm_scratch_slot slot, void *p)
{
    pthread_once(&once, key_init);
    kept *k = p && key_ok ? pthread_getspecific(key) : NULL;
    if (k && k->busy[slot] && k->p[slot] == p) {
        k->busy[slot] = 0;
        return;
    }
    cm_free(p);
}
