/*
 * pool.h - the library's persistent worker threads (internal).
 *
 * One process-wide pool sized by clipmod_set_threads: GEMM and the element-wise
 * kernels split their work into tasks here instead of creating threads per call.
 * cm_pool_run is serialised by a mutex, so callers on several threads are safe
 * (they take turns); a call made from inside a task runs inline.
 */
#ifndef CM_POOL_H
#define CM_POOL_H

typedef void (*cm_task_fn)(void *ctx, int task);

/* Run fn(ctx, 0..ntasks-1) over the pool and the calling thread; returns when all are done. */
void cm_pool_run(cm_task_fn fn, void *ctx, int ntasks);

/* Threads used (calling thread included); n <= 0 leaves it unchanged. */
void cm_pool_set_threads(int n);
int cm_pool_threads(void);

#endif
