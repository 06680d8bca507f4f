/*
 * worker.h - what the files of clipmodd's queue worker share (clipmodd(8) WORKER).
 *
 * The worker takes jobs from a Redis stream through a consumer group and answers
 * each with a result in Redis (docs/queue.md has the formats). worker_job.c reads a
 * stream entry's fields into a job and checks them (no I/O: the fuzz target
 * tests/fuzz/fuzz_worker_job.c drives it); worker_redis.c speaks to Redis (reading
 * entries, reclaiming them, and the one script that writes a result, a dead letter
 * and the acknowledgement together); worker_task.c turns a job into a batcher job
 * and a finished one into a result; worker.c runs the threads. daemon.h declares the
 * worker's face to main.c and metrics.c.
 */
#ifndef CLIPMODD_WORKER_H
#define CLIPMODD_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"

/* ------------------------------------------------------------------------ */
/* A job's fields (worker_job.c)                                            */
/* ------------------------------------------------------------------------ */

#define WJ_MAX_FIELDS 16  /* field/value pairs in one entry */
#define WJ_ID_MAX     128 /* bytes of a job id: [A-Za-z0-9._:@+=/-] */
#define WJ_KEY_MAX    256 /* bytes of a reply stream's name */
#define WJ_URL_MAX    8192
#define WJ_PATH_MAX   4096

typedef enum { WJ_URL, WJ_PATH, WJ_BYTES } wj_kind;

/* What a job may hold, from the configuration. */
typedef struct wj_limits {
    size_t max_bytes; /* worker.max-bytes */
    size_t max_text;  /* config_context_cap() */
    int urls;         /* worker.urls: URL jobs accepted */
    int context;      /* context: text is passed on (else ignored) */
} wj_limits;

/* A job read from an entry; every pointer borrows from the entry's values. */
typedef struct wjob {
    char id[WJ_ID_MAX + 1]; /* "" when the entry has no valid id */
    wj_kind kind;
    const char *src; /* the URL, path or image bytes */
    size_t src_len;
    const char *text; /* the context, or NULL */
    size_t text_len;
    const char *reply; /* the reply stream, or NULL: the result hash only */
    size_t reply_len;
} wjob;

/*
 * Read the n field/value pairs of an entry (f[i] of flen[i] bytes, v[i] of vlen[i]
 * bytes; any bytes) into *j. 0, or -1 with a reason ("bad-job", "too-large",
 * "refused") in *reason and a sentence in why. j->id and j->reply are set whenever
 * the entry has a valid one (the first, when repeated), also when another field is
 * wrong, so that the failure can be answered.
 */
int wjob_parse(const char *const *f, const size_t *flen, const char *const *v, const size_t *vlen,
               size_t n, const wj_limits *lim, wjob *j, const char **reason, char *why,
               size_t whylen);

/* 1 if the n bytes at s are a valid job id. */
int wjob_valid_id(const char *s, size_t n);

/* 1 if the n bytes at s may name a Redis key the worker writes (reply stream). */
int wjob_valid_key(const char *s, size_t n);

/* ------------------------------------------------------------------------ */
/* Tasks: a job on its way (worker_task.c)                                  */
/* ------------------------------------------------------------------------ */

typedef struct wtask {
    char entry[64];         /* the stream entry's id */
    char id[WJ_ID_MAX + 1]; /* the job id, "" when it had none */
    char *reply;            /* the reply stream, or NULL */
    char *src;              /* the URL or path (for the dead letter), or NULL */
    const char *src_field;  /* "url" or "path" */
    unsigned long attempts; /* deliveries so far, this one included */
    bjob *job;              /* NULL when refused before scanning */
    /* Filled when refused before scanning, or by task_outcome(): */
    const char *reason;  /* the dead letter's reason */
    char error[320];     /* its sentence */
    struct wtask *next;  /* in the queue of tasks to write */
    struct wtask *anext; /* among the tasks in flight */
} wtask;

typedef enum { WT_DONE, WT_FAILED, WT_RETRY } wt_outcome;

/* A task for entry `entry` delivered `attempts` times; NULL when out of memory. */
wtask *task_new(const char *entry, unsigned long attempts);

/*
 * Take the id and reply of job `j` (a reply naming the worker's own jobs or
 * dead-letter stream is refused, as a result written there would be read back as
 * a job). 0; 1 refused (t->reason and t->error set); -1 out of memory.
 */
int task_address(wtask *t, const wjob *j, const dconfig *c);
void task_free(wtask *t);

/*
 * Build the batcher job of task `t` from job `j` (path jobs opened inside the
 * worker's roots). 0; 1 when the job is refused (t->reason and t->error set); -1
 * when out of memory.
 */
int task_prepare(wtask *t, const wjob *j, const dconfig *c);

/*
 * What became of a finished task: WT_DONE (a verdict), WT_FAILED (the input can
 * never be scanned: t->reason and t->error say why; a verdict may still exist) or
 * WT_RETRY (a passing failure: left pending, to be delivered again). A passing
 * failure on the last attempt (max_attempts) is WT_FAILED.
 */
wt_outcome task_outcome(wtask *t, unsigned max_attempts);

/* The verdict JSON of a scanned task, as POST /v1/scan answers it; NULL if none. */
char *task_verdict_json(const wtask *t);

/* ------------------------------------------------------------------------ */
/* Redis (worker_redis.c)                                                   */
/* ------------------------------------------------------------------------ */

typedef struct wredis wredis;

/*
 * A connection to worker.redis for consumer `consumer` (borrowed, as `c`) whose
 * commands time out after `timeout_ms`; NULL, logged, when Redis cannot be reached.
 */
wredis *wr_open(const dconfig *c, const char *consumer, unsigned timeout_ms);
void wr_close(wredis *r);

/* XGROUP CREATE stream group 0 MKSTREAM (an existing group is fine). 0 or -1. */
int wr_ensure_group(wredis *r);

/* Called for each entry read: its id, fields and values (borrowed for the call). */
typedef void (*wr_entry_fn)(void *arg, const char *entry, unsigned long attempts,
                            const char *const *f, const size_t *flen, const char *const *v,
                            const size_t *vlen, size_t n);

/*
 * XREADGROUP ... COUNT count BLOCK block_ms STREAMS stream >: each new entry to fn.
 * Returns the entries read (0 after the block passed), or -1 when Redis failed.
 */
int wr_read(wredis *r, unsigned count, unsigned block_ms, wr_entry_fn fn, void *arg);

/*
 * XAUTOCLAIM of entries pending longer than worker.claim-idle, at most `count`,
 * from *cursor on (updated; "0-0" when the pending list was walked through): each
 * to fn with its delivery count. Returns the entries claimed, or -1.
 */
int wr_claim(wredis *r, char *cursor, size_t cursorlen, unsigned count, wr_entry_fn fn, void *arg);

/*
 * Write what task `t` ended with and acknowledge (and delete) its entry, in one
 * script: the result hash (overwritten; its TTL renewed), the reply stream entry
 * and, when `dead`, the dead-letter entry, these two only when the result did not
 * exist yet. `verdict` may be NULL. 0, or -1 when Redis failed (nothing written).
 */
int wr_finish(wredis *r, const wtask *t, int dead, const char *verdict);

/* ------------------------------------------------------------------------ */
/* Counters (worker.c)                                                      */
/* ------------------------------------------------------------------------ */

typedef enum {
    WM_DONE,      /* results with a verdict */
    WM_FAILED,    /* failed results (each also dead-lettered) */
    WM_RETRIED,   /* passing failures left pending for another delivery */
    WM_RECLAIMED, /* entries taken over from a consumer that kept them too long */
    WM_REDIS_ERR, /* Redis commands that failed */
    WM__COUNT
} wmetric;

void worker_count(wmetric m);

#endif
