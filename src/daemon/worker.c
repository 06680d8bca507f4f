/*
 * worker.c - clipmodd's queue worker: jobs from a Redis stream (clipmodd(8) WORKER).
 *
 * Owns the worker's threads and the life of its tasks. The reader joins the
 * consumer group, reads new entries (XREADGROUP) and, every so often, takes over
 * entries another consumer kept longer than worker.claim-idle (XAUTOCLAIM: a
 * worker that died, or a passing failure left pending), and submits each job to the
 * batcher, at most worker.concurrency at once, so the jobs of several workers and
 * doors share forward passes. The writer writes each finished job's result and
 * acknowledges its entry (worker_redis.c's script). Delivery is at least once: an
 * entry is acknowledged only after its result is written, and results are keyed by
 * job id, so a job scanned twice leaves one result (docs/queue.md).
 *
 * SIGTERM (worker_stop) stops reading, lets the jobs in flight finish and writes
 * their results before the batcher stops. Each thread has its own connection.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "dynbuf.h"
#include "worker.h"

#define RETRY_PAUSE_MS 1000 /* after Redis failed, before the next try */
#define WRITE_TRIES    3    /* a result's write, before the entry is left to a reclaim */

static struct {
    const dconfig *c;
    wj_limits lim;
    char consumer[WJ_KEY_MAX + 1];
    unsigned claim_every_ms;
    pthread_mutex_t lock;
    pthread_cond_t cv; /* tasks in flight, the queue to write, stopping */
    int stopping, writer_stop, running;
    unsigned inflight;
    wtask *active;                /* in flight: submitted, or waiting to be written */
    wtask *todo_head, *todo_tail; /* finished, to write */
    pthread_t reader, writer;
    int reader_up, writer_up;
    unsigned long long count[WM__COUNT];
} W = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

void worker_count(wmetric m)
{
    pthread_mutex_lock(&W.lock);
    W.count[m]++;
    pthread_mutex_unlock(&W.lock);
}

/* Wait up to ms or until stopping; 1 when stopping. */
static int nap(unsigned ms)
{
    struct timespec until = cm_deadline(CLOCK_REALTIME, ms);
    pthread_mutex_lock(&W.lock);
    if (!W.stopping)
        pthread_cond_timedwait(&W.cv, &W.lock, &until);
    int stop = W.stopping;
    pthread_mutex_unlock(&W.lock);
    return stop;
}

/* ------------------------------------------------------------------------ */
/* Tasks in flight                                                          */
/* ------------------------------------------------------------------------ */

/* Under the lock: 1 if entry `e` is in flight here (a claim found our own). */
static int busy(const char *e)
{
    for (wtask *t = W.active; t; t = t->anext)
        if (!strcmp(t->entry, e))
            return 1;
    return 0;
}

static void track(wtask *t)
{
    pthread_mutex_lock(&W.lock);
    t->anext = W.active;
    W.active = t;
    W.inflight++;
    pthread_mutex_unlock(&W.lock);
}

static void untrack(wtask *t)
{
    pthread_mutex_lock(&W.lock);
    for (wtask **p = &W.active; *p; p = &(*p)->anext)
        if (*p == t) {
            *p = t->anext;
            break;
        }
    W.inflight--;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.lock);
}

/* A task whose job ended (or that never ran) goes to the writer. */
static void to_write(wtask *t)
{
    pthread_mutex_lock(&W.lock);
    t->next = NULL;
    if (W.todo_tail)
        W.todo_tail->next = t;
    else
        W.todo_head = t;
    W.todo_tail = t;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.lock);
}

static void job_ended(bjob *job, void *arg)
{
    (void)job;
    to_write(arg);
}

/* Queue the task's job; 0, or -1 (the batcher stops: the entry stays pending). */
static int submit(wtask *t)
{
    t->job->notify = job_ended;
    t->job->arg = t;
    track(t);
    for (;;) {
        int rc = batcher_submit(t->job);
        if (rc == BATCH_OK)
            return 0;
        /* A full queue (HTTP requests too): wait for room rather than drop the job. */
        if (rc != BATCH_FULL || nap(20)) {
            untrack(t);
            return -1;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The reader                                                               */
/* ------------------------------------------------------------------------ */

/* An entry delivered more often than worker.max-attempts: failed unscanned. */
static void too_many(wtask *t, const wjob *j)
{
    task_address(t, j, W.c);
    t->reason = "max-attempts";
    snprintf(t->error, sizeof t->error,
             "delivered %lu times without a result (worker.max-attempts: %u)", t->attempts,
             W.c->worker_max_attempts);
    track(t);
    to_write(t);
}

static void on_entry(void *arg, const char *entry, unsigned long attempts, const char *const *f,
                     const size_t *flen, const char *const *v, const size_t *vlen, size_t n)
{
    const char *reason = NULL;
    char why[256];
    wjob j;
    (void)arg;

    pthread_mutex_lock(&W.lock);
    int mine = busy(entry);
    pthread_mutex_unlock(&W.lock);
    wtask *t = mine ? NULL : task_new(entry, attempts);
    if (!t)
        return; /* in flight here already, or out of memory: it stays pending */
    int bad = wjob_parse(f, flen, v, vlen, n, &W.lim, &j, &reason, why, sizeof why);
    if (attempts > W.c->worker_max_attempts) {
        too_many(t, &j);
        return;
    }
    int rc = bad ? 1 : task_prepare(t, &j, W.c);
    /* A bad entry is answered under its id (and reply) when it has valid ones. */
    if (bad && task_address(t, &j, W.c) <= 0) {
        t->reason = reason;
        snprintf(t->error, sizeof t->error, "%s", why);
    }
    if (rc == 1) {
        track(t);
        to_write(t);
    } else if (rc < 0 || submit(t)) {
        worker_count(WM_RETRIED);
        task_free(t);
    }
}

/* Room for how many more jobs; waits while there is none. 0 when stopping. */
static unsigned room(void)
{
    pthread_mutex_lock(&W.lock);
    while (!W.stopping && W.inflight >= W.c->worker_concurrency)
        pthread_cond_wait(&W.cv, &W.lock);
    unsigned n = W.stopping ? 0 : W.c->worker_concurrency - W.inflight;
    pthread_mutex_unlock(&W.lock);
    return n;
}

/* A connection with the group in place, or NULL after a pause. */
static wredis *connect_reader(void)
{
    /* XREADGROUP blocks up to worker.block: the reply may take that much longer. */
    wredis *r = wr_open(W.c, W.consumer, W.c->worker_block_ms + W.c->worker_redis_timeout_ms);
    if (r && !wr_ensure_group(r))
        return r;
    wr_close(r);
    worker_count(WM_REDIS_ERR);
    nap(RETRY_PAUSE_MS);
    return NULL;
}

static void *reader_main(void *unused)
{
    wredis *r = NULL;
    char cursor[64] = "0-0";
    int64_t next_claim = 0;
    unsigned n;
    (void)unused;

    while ((n = room())) {
        if (!r) {
            r = connect_reader();
            if (!r)
                continue;
        }
        int64_t now = cm_now_ms();
        int got;
        if (now >= next_claim) {
            got = wr_claim(r, cursor, sizeof cursor, n, on_entry, NULL);
            /* The pending list walked through: the next walk after a pause. */
            if (got >= 0 && !strcmp(cursor, "0-0"))
                next_claim = now + W.claim_every_ms;
        } else {
            int64_t until = next_claim - now;
            unsigned block = W.c->worker_block_ms < until ? W.c->worker_block_ms : (unsigned)until;
            got = wr_read(r, n, block, on_entry, NULL);
        }
        if (got < 0) {
            worker_count(WM_REDIS_ERR);
            wr_close(r);
            r = NULL;
            nap(RETRY_PAUSE_MS);
        }
    }
    wr_close(r);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The writer                                                               */
/* ------------------------------------------------------------------------ */

static void log_task(const wtask *t, wt_outcome o)
{
    const clipmod_result *res = t->job && bjob_status(t->job) == BJ_DONE ? t->job->out[0] : NULL;
    if (o == WT_DONE && W.c->log_requests)
        cm_log(CM_LOG_INFO, "job done", CM_LF_S("id", t->id), CM_LF_S("entry", t->entry),
               CM_LF_S("state", clipmod_state_name(clipmod_result_state(res))),
               CM_LF_S("action", clipmod_action_name(clipmod_result_action(res))),
               CM_LF_I("attempts", (long long)t->attempts), CM_LF_END);
    else if (o != WT_DONE)
        cm_log(o == WT_RETRY ? CM_LOG_INFO : CM_LOG_WARN,
               o == WT_RETRY ? "job left pending for a retry" : "job failed; dead-lettered",
               CM_LF_S("id", t->id), CM_LF_S("entry", t->entry), CM_LF_S("reason", t->reason),
               CM_LF_S("error", t->error), CM_LF_I("attempts", (long long)t->attempts), CM_LF_END);
}

/* Write the task's result; a failing Redis is tried again, then left to a reclaim. */
static void write_task(wredis **r, wtask *t)
{
    wt_outcome o = task_outcome(t, W.c->worker_max_attempts);
    log_task(t, o);
    if (o == WT_RETRY) {
        worker_count(WM_RETRIED);
        return;
    }
    char *verdict = task_verdict_json(t);
    for (int i = 0; i < WRITE_TRIES; i++) {
        if (!*r)
            *r = wr_open(W.c, W.consumer, W.c->worker_redis_timeout_ms);
        if (*r && !wr_finish(*r, t, o == WT_FAILED, verdict)) {
            worker_count(o == WT_FAILED ? WM_FAILED : WM_DONE);
            break;
        }
        worker_count(WM_REDIS_ERR);
        wr_close(*r);
        *r = NULL;
        if (i + 1 < WRITE_TRIES) {
            struct timespec ts = {0, 300 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    free(verdict);
}

static void *writer_main(void *unused)
{
    wredis *r = NULL;
    (void)unused;

    pthread_mutex_lock(&W.lock);
    for (;;) {
        while (!W.todo_head && !W.writer_stop)
            pthread_cond_wait(&W.cv, &W.lock);
        wtask *t = W.todo_head;
        if (!t)
            break;
        W.todo_head = t->next;
        if (!W.todo_head)
            W.todo_tail = NULL;
        pthread_mutex_unlock(&W.lock);
        write_task(&r, t);
        untrack(t);
        task_free(t);
        pthread_mutex_lock(&W.lock);
    }
    pthread_mutex_unlock(&W.lock);
    wr_close(r);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Start, stop, metrics                                                     */
/* ------------------------------------------------------------------------ */

void worker_only(dconfig *c, int keep_http, int keep_clamd)
{
    c->worker_enabled = 1;
    if (!keep_http)
        c->http_enabled = 0;
    if (!keep_clamd) {
        config_set_str(&c->clamd_unix, NULL);
        config_set_str(&c->clamd_tcp, NULL);
    }
}

static void settle_config(const dconfig *c)
{
    char host[128] = "localhost";

    W.c = c;
    W.lim.max_bytes = c->worker_max_bytes;
    W.lim.max_text = config_context_cap(c);
    W.lim.urls = c->worker_urls;
    W.lim.context = c->context_enabled;
    if (c->worker_consumer) {
        snprintf(W.consumer, sizeof W.consumer, "%s", c->worker_consumer);
    } else {
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(W.consumer, sizeof W.consumer, "%s-%ld", host, (long)getpid());
    }
    /* Reclaiming a few times per claim-idle, within [100 ms, 10 s]. */
    W.claim_every_ms = c->worker_claim_idle_ms / 4;
    W.claim_every_ms = W.claim_every_ms < 100     ? 100
                       : W.claim_every_ms > 10000 ? 10000
                                                  : W.claim_every_ms;
}

int worker_start(const dconfig *c)
{
    settle_config(c);
    if (c->worker_claim_idle_ms < c->request_timeout_ms)
        cm_log(CM_LOG_WARN,
               "worker.claim-idle is shorter than scan.request-timeout-ms: a slow job may be "
               "taken over by another worker and scanned twice",
               CM_LF_END);
    W.running = 1;
    if (pthread_create(&W.writer, NULL, writer_main, NULL))
        return -1;
    W.writer_up = 1;
    if (pthread_create(&W.reader, NULL, reader_main, NULL)) {
        worker_stop();
        return -1;
    }
    W.reader_up = 1;
    cm_log(CM_LOG_INFO, "worker reading jobs", CM_LF_S("stream", c->worker_stream),
           CM_LF_S("group", c->worker_group), CM_LF_S("consumer", W.consumer),
           CM_LF_I("concurrency", c->worker_concurrency), CM_LF_END);
    return 0;
}

void worker_stop(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.lock);
    W.stopping = 1;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.lock);
    if (W.reader_up)
        pthread_join(W.reader, NULL);
    /* The jobs in flight end by their deadline at the latest; their results are written. */
    pthread_mutex_lock(&W.lock);
    if (W.inflight)
        cm_log(CM_LOG_INFO, "worker: finishing the jobs in flight", CM_LF_I("jobs", W.inflight),
               CM_LF_END);
    while (W.inflight)
        pthread_cond_wait(&W.cv, &W.lock);
    W.writer_stop = 1;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.lock);
    if (W.writer_up)
        pthread_join(W.writer, NULL);
    W.reader_up = W.writer_up = W.running = 0;
    cm_log(CM_LOG_INFO, "worker stopped", CM_LF_END);
}

int worker_metrics(cm_dbuf *t)
{
    static const char *const names[WM__COUNT] = {"done", "failed", "retried", "reclaimed",
                                                 "redis-error"};
    unsigned long long n[WM__COUNT];
    unsigned inflight;
    int rc = CM_DBUF_OK;

    if (!W.running)
        return CM_DBUF_OK;
    pthread_mutex_lock(&W.lock);
    memcpy(n, W.count, sizeof n);
    inflight = W.inflight;
    pthread_mutex_unlock(&W.lock);
    rc = cm_dbuf_addf(t, "# HELP clipmodd_worker_jobs_total Queue jobs by outcome: done, failed "
                         "(each dead-lettered), retried (left pending), reclaimed (taken over), "
                         "redis-error (Redis commands that failed).\n"
                         "# TYPE clipmodd_worker_jobs_total counter\n");
    for (int i = 0; i < WM__COUNT && rc == CM_DBUF_OK; i++)
        rc = cm_dbuf_addf(t, "clipmodd_worker_jobs_total{outcome=\"%s\"} %llu\n", names[i], n[i]);
    if (rc == CM_DBUF_OK)
        rc = cm_dbuf_addf(t,
                          "# HELP clipmodd_worker_jobs_in_flight Queue jobs read and not yet "
                          "acknowledged.\n# TYPE clipmodd_worker_jobs_in_flight gauge\n"
                          "clipmodd_worker_jobs_in_flight %u\n",
                          inflight);
    return rc;
}
