/*
 * swap.c - the engine slot (see swap.h).
 *
 * The old engine's reference is dropped outside the mutex: freeing an engine may
 * take a while (prompt embeddings, plugins' close hooks) and must not stall the
 * requests that are acquiring the new one.
 */
#include "swap.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"

struct cm_swap {
    pthread_mutex_t lock;
    clipmod_engine *current;
    cm_swap_info info;
};

cm_swap *cm_swap_new(void)
{
    cm_swap *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

unsigned long cm_swap_install(cm_swap *s, clipmod_engine *fresh, const char *policy_fp)
{
    pthread_mutex_lock(&s->lock);
    clipmod_engine *old = s->current;
    unsigned long prev = s->info.generation;
    s->current = fresh;
    s->info.generation = prev + 1;
    s->info.loaded_at = cm_wall();
    snprintf(s->info.policy_fp, sizeof s->info.policy_fp, "%s", policy_fp ? policy_fp : "");
    pthread_mutex_unlock(&s->lock);
    clipmod_engine_free(old);
    return prev;
}

clipmod_engine *cm_swap_acquire_info(cm_swap *s, cm_swap_info *info)
{
    pthread_mutex_lock(&s->lock);
    clipmod_engine *e = s->current ? clipmod_engine_ref(s->current) : NULL;
    if (info)
        *info = s->info;
    pthread_mutex_unlock(&s->lock);
    return e;
}

clipmod_engine *cm_swap_acquire(cm_swap *s)
{
    return cm_swap_acquire_info(s, NULL);
}

void cm_swap_info_get(cm_swap *s, cm_swap_info *info)
{
    pthread_mutex_lock(&s->lock);
    *info = s->info;
    pthread_mutex_unlock(&s->lock);
}

void cm_swap_free(cm_swap *s)
{
    if (!s)
        return;
    clipmod_engine_free(s->current);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
