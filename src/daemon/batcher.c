/*
 * batcher.c - turning concurrent requests into batched forward passes.
 *
 * Owns the queue between the doors (HTTP, tusd, clamd) and the engine. CLIP's
 * image tower costs far less per image in a batch than one image at a time, so a
 * worker that finds a job waits a short collection window (scan.batch-window-ms,
 * a few milliseconds) for others, or until scan.max-batch images are queued, and
 * scans all of them with one clipmod_scan_batch(). Jobs are never split, and only
 * jobs holding the same engine share a batch: a request keeps the policy it
 * arrived under even when a reload happens while it waits.
 *
 * URL jobs (fetch mode) go to their own queue and workers: a download can take
 * seconds and must not hold up images already in memory.
 *
 * Limits: the queue holds at most scan.queue-size inputs (submitters answer 503
 * beyond that), and every job has a deadline (scan.request-timeout-ms) enforced
 * by a reaper thread: a job still queued is dropped, a job being scanned is
 * answered at once and its results discarded when the pass ends.
 *
 * Life of a job: the submitter holds one reference, the batcher another while
 * the job is queued or running; `notify` is called exactly once, without locks,
 * when the status becomes final; the last reference frees everything.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work, url_work, done, reaper_cv;
    bjob *img_head, *img_tail, *url_head, *url_tail;
    bjob *active;   /* queued or running */
    size_t waiting; /* inputs queued */
    size_t running; /* inputs being scanned */
    size_t jobs;    /* jobs queued or running */
    int stopping, reaper_stop;
    pthread_t *threads;
    size_t n_threads;
    pthread_t reaper;
    int reaper_started;
    unsigned max_batch, window_ms, queue_size, timeout_ms;
} B = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A cm_now() instant for pthread_cond_timedwait (the conds use CLOCK_MONOTONIC). */
static struct timespec abs_time(double mono)
{
    struct timespec ts;
    ts.tv_sec = (time_t)mono;
    ts.tv_nsec = (long)((mono - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

bjob *bjob_new(size_t n, clipmod_engine *engine, const cm_swap_info *info, diface iface)
{
    bjob *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->in = calloc(n ? n : 1, sizeof *j->in);
    j->out = calloc(n ? n : 1, sizeof *j->out);
    if (!j->in || !j->out) {
        free(j->in);
        free(j->out);
        free(j);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        j->in[i].fd = -1;
    j->n = n;
    j->engine = clipmod_engine_ref(engine);
    if (info) {
        /* The slot holds the 12 hex digits reload.c installed; cut to be sure. */
        snprintf(j->policy_fp, sizeof j->policy_fp, "%.12s", info->policy_fp);
        j->generation = info->generation;
    }
    j->iface = iface;
    j->refs = 1;
    j->status = BJ_QUEUED;
    return j;
}

static void job_free(bjob *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->in[i].name);
        free(j->in[i].data);
        free(j->in[i].url);
        free(j->in[i].context);
        if (j->in[i].fd >= 0)
            close(j->in[i].fd);
        clipmod_result_free(j->out[i]);
    }
    free(j->in);
    free(j->out);
    clipmod_engine_free(j->engine);
    free(j);
}

void bjob_release(bjob *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&B.lock);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&B.lock);
    if (last)
        job_free(j);
}

bj_status bjob_status(bjob *j)
{
    pthread_mutex_lock(&B.lock);
    bj_status s = j->status;
    pthread_mutex_unlock(&B.lock);
    return s;
}

bj_status bjob_wait(bjob *j)
{
    pthread_mutex_lock(&B.lock);
    while (j->status == BJ_QUEUED || j->status == BJ_RUNNING)
        pthread_cond_wait(&B.done, &B.lock);
    bj_status s = j->status;
    pthread_mutex_unlock(&B.lock);
    return s;
}

/* Under the lock. */
static void active_remove(bjob *j)
{
    if (j->aprev)
        j->aprev->anext = j->anext;
    else if (B.active == j)
        B.active = j->anext;
    if (j->anext)
        j->anext->aprev = j->aprev;
    j->anext = j->aprev = NULL;
    B.jobs--;
}

/* Under the lock: unlink `j` from its queue. */
static void queue_remove(bjob *j)
{
    bjob **head = j->urls ? &B.url_head : &B.img_head, **tail = j->urls ? &B.url_tail : &B.img_tail;
    bjob *prev = NULL;
    for (bjob *p = *head; p; prev = p, p = p->next) {
        if (p != j)
            continue;
        if (prev)
            prev->next = p->next;
        else
            *head = p->next;
        if (*tail == p)
            *tail = prev;
        p->next = NULL;
        B.waiting -= p->n;
        return;
    }
}

static void publish_queue(void)
{
    metrics_queue(B.waiting, B.running, B.queue_size);
}

/* After the status became final, outside the lock: tell the submitter, drop our ref. */
static void finish(bjob *j, int notify)
{
    if (notify) {
        if (j->status == BJ_DONE) {
            metrics_job(j->iface, j->n, cm_now() - j->t_submit);
            /* Before the submitter may release the job's results. */
            hooks_job(j);
        }
        if (j->notify)
            j->notify(j, j->arg);
    }
    pthread_mutex_lock(&B.lock);
    pthread_cond_broadcast(&B.done);
    pthread_mutex_unlock(&B.lock);
    bjob_release(j);
}

int batcher_submit(bjob *j)
{
    int rc = BATCH_OK;

    pthread_mutex_lock(&B.lock);
    if (B.stopping) {
        rc = BATCH_STOPPING;
        goto out;
    }
    /* A job larger than the whole queue still runs when it would wait alone. */
    if (B.waiting && B.waiting + j->n > B.queue_size) {
        rc = BATCH_FULL;
        goto out;
    }
    j->t_submit = cm_now();
    j->deadline = j->t_submit + B.timeout_ms / 1e3;
    j->status = BJ_QUEUED;
    j->refs++;
    j->next = NULL;
    if (j->urls) {
        if (B.url_tail)
            B.url_tail->next = j;
        else
            B.url_head = j;
        B.url_tail = j;
        pthread_cond_signal(&B.url_work);
    } else {
        if (B.img_tail)
            B.img_tail->next = j;
        else
            B.img_head = j;
        B.img_tail = j;
        /* Workers in their collection window recount. */
        pthread_cond_broadcast(&B.work);
    }
    j->aprev = NULL;
    j->anext = B.active;
    if (B.active)
        B.active->aprev = j;
    B.active = j;
    B.jobs++;
    B.waiting += j->n;
    pthread_cond_signal(&B.reaper_cv);
    publish_queue();
out:
    pthread_mutex_unlock(&B.lock);
    if (rc == BATCH_FULL)
        metrics_rejected("queue-full");
    else if (rc == BATCH_STOPPING)
        metrics_rejected("shutdown");
    return rc;
}

void batcher_load(size_t *jobs, size_t *waiting)
{
    pthread_mutex_lock(&B.lock);
    if (jobs)
        *jobs = B.jobs;
    if (waiting)
        *waiting = B.waiting;
    pthread_mutex_unlock(&B.lock);
}

/* ------------------------------------------------------------------------ */
/* Image workers                                                            */
/* ------------------------------------------------------------------------ */

/* Under the lock: inputs queued for `engine`. */
static size_t queued_for(const clipmod_engine *engine)
{
    size_t n = 0;
    for (bjob *p = B.img_head; p; p = p->next)
        if (p->engine == engine)
            n += p->n;
    return n;
}

/*
 * Fill the library's inputs for the inputs of job `j` still without a result (the
 * verdict cache answered the others) into `in`; `paths` gives room for fd paths.
 * Returns how many. Each input carries its own context, also when jobs of several
 * requests share one batch; every element starts from CLIPMOD_INPUT_INIT (the
 * library steps the array by in[0].size).
 */
static size_t fill_inputs(const bjob *j, clipmod_input *in, char (*paths)[32])
{
    size_t k = 0;
    for (size_t i = 0; i < j->n; i++) {
        const binput *b = &j->in[i];
        if (j->out[i])
            continue;
        in[k] = (clipmod_input)CLIPMOD_INPUT_INIT;
        in[k].name = b->name ? b->name : "upload";
        if (b->fd >= 0) {
            /* The library opens the very file roots.c checked, by descriptor. */
            snprintf(paths[k], sizeof paths[k], "/proc/self/fd/%d", b->fd);
            in[k].path = paths[k];
        } else {
            in[k].data = b->data ? (const void *)b->data : (const void *)"";
            in[k].len = b->len;
        }
        /* context_len 0 would read up to a NUL: an empty context is no context. */
        if (b->context && b->context_len) {
            in[k].context = b->context;
            in[k].context_len = b->context_len;
        }
        k++;
    }
    return k;
}

/* Hand the scanned results `out` to the inputs of `j` without one; returns how many. */
static size_t take_results(bjob *j, clipmod_result **out)
{
    size_t k = 0;
    for (size_t i = 0; i < j->n; i++)
        if (!j->out[i])
            j->out[i] = out[k++];
    return k;
}

/* Scan what the cache left of one job alone (a failed batch's second try). */
static clipmod_error scan_alone(bjob *job)
{
    clipmod_input *in = calloc(job->n, sizeof *in);
    clipmod_result **out = calloc(job->n, sizeof *out);
    char(*paths)[32] = calloc(job->n, sizeof *paths);
    clipmod_error err = CLIPMOD_E_NOMEM;
    if (in && out && paths) {
        size_t n = fill_inputs(job, in, paths);
        err = n ? clipmod_scan_batch(job->engine, in, n, out) : CLIPMOD_OK;
        if (!err)
            take_results(job, out);
    }
    free(in);
    free(out);
    free(paths);
    return err;
}

/*
 * Scan the jobs of one batch; each job ends DONE (results in out) or FAILED. The
 * verdict cache answers first: only its misses reach the engine, and their verdicts
 * are stored once scanned.
 */
static void run_batch(bjob **jobs, size_t n_jobs, size_t total)
{
    size_t todo = 0;
    for (size_t j = 0; j < n_jobs; j++)
        todo += dcache_lookup(jobs[j]);
    clipmod_input *in = calloc(todo ? todo : 1, sizeof *in);
    clipmod_result **out = calloc(todo ? todo : 1, sizeof *out);
    char(*paths)[32] = calloc(todo ? todo : 1, sizeof *paths);
    clipmod_error err = CLIPMOD_E_NOMEM;
    size_t k = 0;

    if (in && out && paths) {
        for (size_t j = 0; j < n_jobs; j++)
            k += fill_inputs(jobs[j], in + k, paths + k);
        err = todo ? clipmod_scan_batch(jobs[0]->engine, in, todo, out) : CLIPMOD_OK;
    }
    if (todo)
        metrics_batch(todo);
    if (!err) {
        k = 0;
        for (size_t j = 0; j < n_jobs; j++) {
            k += take_results(jobs[j], out + k);
            jobs[j]->err = CLIPMOD_OK;
            dcache_store(jobs[j]);
        }
    } else {
        /* A failed batch does not say which job caused it: each job alone, again. */
        cm_log(CM_LOG_WARN, "batch failed; scanning its requests one by one",
               CM_LF_S("error", clipmod_strerror(err)), CM_LF_I("images", total), CM_LF_END);
        for (size_t j = 0; j < n_jobs; j++) {
            jobs[j]->err = scan_alone(jobs[j]);
            if (!jobs[j]->err)
                dcache_store(jobs[j]);
        }
    }
    free(in);
    free(out);
    free(paths);
}

/* Under the lock: the running job `j` ended; returns 1 if its submitter is to be told. */
static int settle(bjob *j)
{
    int tell = j->status == BJ_RUNNING;
    if (tell) {
        j->status = j->err ? BJ_FAILED : BJ_DONE;
        if (j->status == BJ_DONE)
            for (size_t i = 0; i < j->n; i++)
                if (j->out[i])
                    metrics_result(j->out[i]);
    }
    /* An expired job's results are nobody's: they are freed with the job. */
    B.running -= j->n;
    active_remove(j);
    return tell;
}

static void *image_worker(void *unused)
{
    bjob **batch = calloc(B.max_batch + 1, sizeof *batch);
    if (!batch)
        return NULL;
    pthread_mutex_lock(&B.lock);
    for (;;) {
        while (!B.img_head && !B.stopping)
            pthread_cond_wait(&B.work, &B.lock);
        if (!B.img_head)
            break;
        bjob *head = B.img_head;
        /* The collection window: a lone request waits a few ms for company. */
        if (B.window_ms && !B.stopping && queued_for(head->engine) < B.max_batch) {
            struct timespec until = abs_time(cm_now() + B.window_ms / 1e3);
            while (!B.stopping && B.img_head == head && queued_for(head->engine) < B.max_batch)
                if (pthread_cond_timedwait(&B.work, &B.lock, &until) == ETIMEDOUT)
                    break;
            if (B.img_head != head)
                continue; /* another worker took it, or its deadline passed */
        }
        size_t n_jobs = 0, total = 0;
        for (bjob *p = B.img_head, *next; p && n_jobs < B.max_batch; p = next) {
            next = p->next;
            if (p->engine != head->engine)
                continue;
            if (total && total + p->n > B.max_batch)
                break;
            queue_remove(p);
            p->status = BJ_RUNNING;
            B.running += p->n;
            total += p->n;
            batch[n_jobs++] = p;
        }
        publish_queue();
        pthread_mutex_unlock(&B.lock);

        run_batch(batch, n_jobs, total);

        int tell[n_jobs];
        pthread_mutex_lock(&B.lock);
        for (size_t i = 0; i < n_jobs; i++)
            tell[i] = settle(batch[i]);
        publish_queue();
        pthread_mutex_unlock(&B.lock);
        for (size_t i = 0; i < n_jobs; i++)
            finish(batch[i], tell[i]);
        pthread_mutex_lock(&B.lock);
    }
    pthread_mutex_unlock(&B.lock);
    free(batch);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* URL workers (fetch mode)                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Fetch and scan a URL job's inputs, each URL with its own context
 * (clipmod_scan_urls_context reads NUL-terminated contexts: a context holding a
 * NUL is cut there, which the doors never hand over for URLs).
 */
static clipmod_error scan_urls(bjob *j, uint64_t total_ms)
{
    const char **urls = calloc(j->n, sizeof *urls), **contexts = calloc(j->n, sizeof *contexts);
    clipmod_error err = CLIPMOD_E_NOMEM;

    if (urls && contexts) {
        for (size_t i = 0; i < j->n; i++) {
            urls[i] = j->in[i].url;
            contexts[i] = j->in[i].context_len ? j->in[i].context : NULL;
        }
        err = clipmod_scan_urls_context(j->engine, urls, contexts, j->n, total_ms, j->out);
    }
    free(urls);
    free(contexts);
    return err;
}

static void *url_worker(void *unused)
{
    pthread_mutex_lock(&B.lock);
    for (;;) {
        while (!B.url_head && !B.stopping)
            pthread_cond_wait(&B.url_work, &B.lock);
        if (!B.url_head)
            break;
        bjob *j = B.url_head;
        queue_remove(j);
        j->status = BJ_RUNNING;
        B.running += j->n;
        publish_queue();
        pthread_mutex_unlock(&B.lock);

        /* Downloads end before the job's deadline: past it nobody waits for them,
         * and they would hold this worker from the URL jobs queued behind. A tenth
         * of the time left (at most 200 ms) is kept for scanning what arrived, so
         * that slow URLs get an unscanned "timeout" verdict and the others theirs. */
        double left_ms = (j->deadline - cm_now()) * 1e3;
        left_ms -= left_ms / 10 < 200 ? left_ms / 10 : 200;
        j->err = scan_urls(j, left_ms < 1 ? 1 : (uint64_t)left_ms);

        pthread_mutex_lock(&B.lock);
        int tell = settle(j);
        publish_queue();
        pthread_mutex_unlock(&B.lock);
        finish(j, tell);
        pthread_mutex_lock(&B.lock);
    }
    pthread_mutex_unlock(&B.lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Deadlines                                                                */
/* ------------------------------------------------------------------------ */

static void *reaper(void *unused)
{
    pthread_mutex_lock(&B.lock);
    while (!B.reaper_stop) {
        double now = cm_now(), next = 0;
        bjob *expired = NULL; /* linked through `next`, which expired jobs no longer use */
        for (bjob *p = B.active, *an; p; p = an) {
            an = p->anext;
            if (p->status != BJ_QUEUED && p->status != BJ_RUNNING)
                continue;
            if (p->deadline > now) {
                if (!next || p->deadline < next)
                    next = p->deadline;
                continue;
            }
            if (p->status == BJ_QUEUED) {
                queue_remove(p);
                active_remove(p);
            } else {
                /* The worker still owns it (and its batcher reference) until its pass ends. */
                p->refs++;
            }
            p->status = BJ_EXPIRED;
            p->next = expired;
            expired = p;
        }
        if (expired) {
            publish_queue();
            pthread_mutex_unlock(&B.lock);
            for (bjob *p = expired, *nx; p; p = nx) {
                nx = p->next;
                p->next = NULL;
                metrics_rejected("deadline");
                cm_log(CM_LOG_WARN, "request deadline passed", CM_LF_I("inputs", p->n),
                       CM_LF_F("seconds", cm_now() - p->t_submit), CM_LF_END);
                finish(p, 1);
            }
            pthread_mutex_lock(&B.lock);
            continue;
        }
        if (next) {
            struct timespec until = abs_time(next);
            pthread_cond_timedwait(&B.reaper_cv, &B.lock, &until);
        } else {
            pthread_cond_wait(&B.reaper_cv, &B.lock);
        }
    }
    pthread_mutex_unlock(&B.lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

static int init_cond(pthread_cond_t *c)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a))
        return -1;
    /* Deadlines and windows are measured on the monotonic clock. */
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc ? -1 : 0;
}

int batcher_start(const dconfig *c)
{
    B.max_batch = c->max_batch;
    B.window_ms = c->batch_window_ms;
    B.queue_size = c->queue_size;
    B.timeout_ms = c->request_timeout_ms;
    if (init_cond(&B.work) || init_cond(&B.url_work) || init_cond(&B.done) ||
        init_cond(&B.reaper_cv))
        return -1;
    B.threads = calloc(c->workers + c->url_workers, sizeof *B.threads);
    if (!B.threads)
        return -1;
    for (unsigned i = 0; i < c->workers + c->url_workers; i++) {
        if (pthread_create(&B.threads[i], NULL, i < c->workers ? image_worker : url_worker, NULL)) {
            batcher_stop();
            return -1;
        }
        B.n_threads++;
    }
    if (pthread_create(&B.reaper, NULL, reaper, NULL)) {
        batcher_stop();
        return -1;
    }
    B.reaper_started = 1;
    publish_queue();
    return 0;
}

void batcher_stop(void)
{
    pthread_mutex_lock(&B.lock);
    B.stopping = 1;
    pthread_cond_broadcast(&B.work);
    pthread_cond_broadcast(&B.url_work);
    pthread_mutex_unlock(&B.lock);
    /* Workers drain their queues before they end; deadlines still apply meanwhile. */
    for (size_t i = 0; i < B.n_threads; i++)
        pthread_join(B.threads[i], NULL);
    B.n_threads = 0;
    free(B.threads);
    B.threads = NULL;
    if (B.reaper_started) {
        pthread_mutex_lock(&B.lock);
        B.reaper_stop = 1;
        pthread_cond_signal(&B.reaper_cv);
        pthread_mutex_unlock(&B.lock);
        pthread_join(B.reaper, NULL);
        B.reaper_started = 0;
    }
}
