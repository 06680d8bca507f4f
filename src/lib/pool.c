/*
 * pool.c - the library's persistent worker threads.
 *
 * Workers are started lazily, the first time work is split, and live until the
 * process exits (like OpenBLAS's). A run publishes (fn, ctx, ntasks) under a
 * generation counter; the caller and the workers take task numbers from an
 * atomic counter, so uneven tasks balance themselves. Workers beyond the current
 * thread setting wake up but take no tasks, so lowering the setting needs no join.
 *
 * Waiting spins for up to SPIN_NS before it sleeps. A forward pass is about ten
 * runs per block; between two of them a worker waits for the serial code in
 * between and for the other threads' last task, up to a millisecond at batch 1.
 * Waking a sleeping worker costs a futex wake and, on a VM whose idle vCPU the
 * host has descheduled, up to milliseconds more: on a 2-vCPU Intel VM a spin of
 * 2,000 PAUSEs (35-70 us) let workers sleep in 60% of the runs and doubled a
 * batch-1 pass (fp32 105 ms against 48 ms with a longer spin). A worker that
 * sees the next run while spinning takes it without a system call; one that
 * does not sleeps as before, so an idle pool costs one spin and then nothing.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

#define POOL_MAX 64

static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER; /* one run at a time */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int started, threads_set, run_threads;
static atomic_uint pending;    /* workers still in the current run */
static atomic_uint generation; /* bumped (under lock) to publish a run */
static cm_task_fn run_fn;
static void *run_ctx;
static int run_n;
static atomic_int next_task;
static _Thread_local int in_task; /* nested runs execute inline */

/* Spin for this long, measured by the clock (PAUSE takes 5-140 ns depending on the CPU). */
#define SPIN_NS 2000000L
/* PAUSEs between two readings of the clock, and batches between two yields. */
#define SPIN_BATCH  32
#define YIELD_EVERY 16

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long elapsed_ns(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/*
 * Spin until (*v == x) is `equal`, or SPIN_NS pass; returns whether it got there.
 * Every YIELD_EVERY batches it yields, so on a machine with more runnable threads
 * than CPUs (make -j, several programs) a spinner hands its CPU to one of them.
 */
static int spin_until(atomic_uint *v, unsigned x, int equal)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned batch = 1;; batch++) {
        for (int i = 0; i < SPIN_BATCH; i++) {
            if ((atomic_load_explicit(v, memory_order_acquire) == x) == equal)
                return 1;
            cpu_relax();
        }
        if (elapsed_ns(&t0) >= SPIN_NS)
            return 0;
        if (batch % YIELD_EVERY == 0)
            sched_yield();
    }
}

static void drain(void)
{
    for (;;) {
        const int t = atomic_fetch_add(&next_task, 1);
        if (t >= run_n)
            return;
        run_fn(run_ctx, t);
    }
}

static void *worker(void *arg)
{
    const int idx = (int)(long)arg;
    unsigned seen = 0;
    in_task = 1;
    for (;;) {
        /* The run's fields are read under the lock, which orders them after the
           publisher's writes whether the change was seen spinning or asleep. */
        spin_until(&generation, seen, 0);
        pthread_mutex_lock(&lock);
        while (atomic_load(&generation) == seen)
            pthread_cond_wait(&wake, &lock);
        seen = atomic_load(&generation);
        const int active = idx < run_threads - 1;
        pthread_mutex_unlock(&lock);
        if (active)
            drain();
        pthread_mutex_lock(&lock);
        if (atomic_fetch_sub(&pending, 1) == 1u)
            pthread_cond_signal(&done);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int cm_pool_threads(void)
{
    int n = __atomic_load_n(&threads_set, __ATOMIC_RELAXED);
    if (n <= 0) {
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
    }
    return n < POOL_MAX ? n : POOL_MAX;
}

void cm_pool_set_threads(int n)
{
    if (n > 0)
        __atomic_store_n(&threads_set, n, __ATOMIC_RELAXED);
}

/* Start workers up to want-1 (the caller is the other one); keeps what it could start. */
static void grow(int want)
{
    while (started < want - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&t, &attr, worker, (void *)(long)started);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            return;
        started++;
    }
}

void cm_pool_run(cm_task_fn fn, void *ctx, int ntasks)
{
    const int want = cm_pool_threads();
    if (ntasks <= 1 || want <= 1 || in_task) {
        for (int t = 0; t < ntasks; t++)
            fn(ctx, t);
        return;
    }
    pthread_mutex_lock(&run_lock);
    pthread_mutex_lock(&lock);
    grow(want);
    run_fn = fn;
    run_ctx = ctx;
    run_n = ntasks;
    run_threads = want;
    atomic_store(&next_task, 0);
    atomic_store(&pending, (unsigned)started);
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    in_task = 1;
    drain();
    in_task = 0;
    if (!spin_until(&pending, 0, 1)) {
        pthread_mutex_lock(&lock);
        while (atomic_load(&pending) != 0)
            pthread_cond_wait(&done, &lock);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_unlock(&run_lock);
}
