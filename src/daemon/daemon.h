/*
 * daemon.h - what the modules of clipmodd share.
 *
 * clipmodd is one engine behind three doors: HTTP (http.c, with tusd's hook
 * requests in tusd.c), the clamd protocol (clamd.c) and, outside the daemon, the
 * CLI's --hook mode. Every door turns its request into a job for the batcher
 * (batcher.c), which scans the images of concurrent jobs in one forward pass with
 * the engine each job took a reference to (reload.c swaps engines on SIGHUP).
 * config.c reads the YAML configuration, metrics.c
 * counts for Prometheus, roots.c opens files only inside configured directories;
 * logs go through the runtime's logger (src/common/log.h).
 * main.c ties them together and owns signals and shutdown.
 */
#ifndef CLIPMODD_DAEMON_H
#define CLIPMODD_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"
#include "log.h"  /* src/common: cm_log, the one logger of every program */
#include "swap.h" /* src/common: the engine slot swapped on reload */

#define CLIPMODD_NAME "clipmodd"

/* ------------------------------------------------------------------------ */
/* Configuration (config.c)                                                 */
/* ------------------------------------------------------------------------ */

/* What clamd answers for an input that could not be scanned. */
typedef enum { UNSCANNED_ERROR, UNSCANNED_FOUND, UNSCANNED_OK } clamd_unscanned_mode;

typedef struct strlist {
    char **v; /* n strings, then NULL */
    size_t n;
} strlist;

/* An operator plugin (clipmod_plugin_v1) and its configuration string. */
typedef struct dplugin {
    char *path, *config; /* config may be NULL */
} dplugin;

typedef struct dconfig {
    char *path; /* the file read, or NULL for defaults only */

    /* Engine */
    char *model, *merges, *policy, *cache_dir;
    int no_cache; /* cache-dir: null */
    int threads;
    clipmod_precision precision; /* precision: fp32 (default), int8, bf16 */
    int setting_given[CLIPMOD_SETTING__COUNT];
    uint64_t setting[CLIPMOD_SETTING__COUNT];
    strlist fetch_allow;
    dplugin *plugins; /* plugins: [{path, config}] */
    size_t n_plugins;

    /* Scanning (batcher) */
    unsigned workers, url_workers, max_batch, batch_window_ms, queue_size;
    unsigned request_timeout_ms, retry_after_s;

    /* Stopping (drain.c): health checks fail for drain-grace, then in flight is answered */
    unsigned drain_grace_ms, drain_timeout_ms;

    /* HTTP */
    int http_enabled;
    char *http_listen;
    uint64_t max_body_bytes;
    unsigned max_files, max_connections, client_timeout_s;
    char *auth_token; /* from auth-token-file (or auth-token) */
    int scan_url_enabled;
    uint64_t max_body_memory;        /* all request bodies in memory together */
    unsigned header_timeout_s;       /* a request's head must arrive within it */
    unsigned max_connections_per_ip; /* 0: no limit */
    strlist text_fields;             /* multipart fields that are text, not files */
    strlist context_fields;          /* multipart fields that are the images' context */

    /* tusd hooks */
    int tusd_enabled;
    strlist tusd_roots;
    char *tusd_download_url;
    int tusd_accept_unscanned;
    int tusd_delete_rejected;
    char *tusd_quarantine_dir;

    /* clamd protocol */
    char *clamd_unix, *clamd_tcp;
    unsigned clamd_unix_mode;
    uint64_t stream_max_length;
    strlist clamd_roots;
    unsigned clamd_max_connections, clamd_read_timeout_s, clamd_idle_timeout_s;
    clipmod_action clamd_found_at;
    clamd_unscanned_mode clamd_unscanned;

    /* on-flag: a command run for every flagged (and, if asked, unscanned) verdict */
    strlist onflag_argv; /* empty: no hook */
    unsigned onflag_timeout_ms, onflag_max_running;
    int onflag_unscanned;

    /* Logs */
    char *log_format, *log_target, *log_level;
    int log_requests;

    /* context: the texts that come with images are passed to the engine (clipmodd(8) CONTEXT) */
    int context_enabled;

    /* cache: the verdict cache (src/common/vcache.h; clipmodd(8) VERDICT CACHE) */
    uint64_t cache_memory;           /* LRU byte cap; 0: off */
    char *cache_redis;               /* redis://host:port/db, or NULL */
    unsigned cache_ttl_ms;           /* Redis expiry */
    unsigned cache_redis_timeout_ms; /* Redis connect and command timeout */

    /* worker: jobs from a Redis stream (worker*.c; clipmodd(8) WORKER, docs/queue.md) */
    int worker_enabled;                 /* worker.enabled, or --worker */
    char *worker_redis;                 /* redis://host:port/db */
    char *worker_stream, *worker_group; /* the jobs and the consumer group */
    char *worker_consumer;              /* NULL: hostname-pid */
    char *worker_dead;                  /* the dead-letter stream */
    char *worker_result_prefix;         /* result hashes are PREFIX<id> */
    unsigned worker_concurrency;        /* jobs in flight */
    unsigned worker_block_ms, worker_claim_idle_ms, worker_max_attempts;
    unsigned worker_result_ttl_ms, worker_redis_timeout_ms;
    uint64_t worker_max_bytes; /* a bytes job's image */
    strlist worker_roots;      /* path jobs: files inside these only */
    int worker_urls;           /* url jobs accepted */
} dconfig;

/* Fill `c` with the defaults of clipmodd(8). */
void config_defaults(dconfig *c);

/*
 * Read `path` over the defaults in `c`. Every problem is appended to *problems as a
 * "file:line:column: message" line (caller frees); returns 0, or -1 when there
 * were problems (c is then partly filled and must still be freed).
 */
int config_load(const char *path, dconfig *c, char **problems);

/*
 * As config_load, from `len` bytes of YAML `text` named `name` in problems, and
 * reading no file: http.auth-token-file is not read (the fuzz target's entry).
 */
int config_parse(const char *name, const char *text, size_t len, dconfig *c, char **problems);

/* Checks that need the whole configuration (e.g. max-files <= queue-size). */
int config_check(const dconfig *c, char **problems);

/* Free what `c` owns. Accepts NULL. */
void config_free(dconfig *c);

/*
 * The most bytes of context clipmodd holds for one image: CONTEXT_CAP_FACTOR times
 * the engine's max-context-bytes (as configured, else the library's default).
 */
size_t config_context_cap(const dconfig *c);

/* Replace *dst with a copy of `s` (NULL allowed); -1 when out of memory. */
int config_set_str(char **dst, const char *s);

/*
 * Resolve a listen address, "host:port" or "[v6]:port" (numeric port), into *ss.
 * Shared by the HTTP and clamd listeners. Returns 0, or -1 if malformed.
 */
struct sockaddr_storage;
int config_listen_addr(const char *spec, struct sockaddr_storage *ss, unsigned *len);

/* ------------------------------------------------------------------------ */
/* Metrics (metrics.c)                                                      */
/* ------------------------------------------------------------------------ */

typedef enum { IFACE_HTTP, IFACE_TUSD, IFACE_CLAMD, IFACE_WORKER, IFACE__COUNT } diface;

void metrics_init(void);
/* One scanned input's verdict. */
void metrics_result(const clipmod_result *r);
/* A job finished: its interface, inputs and seconds from submission. */
void metrics_job(diface iface, size_t n, double seconds);
void metrics_batch(size_t images);
void metrics_rejected(const char *why); /* "queue-full", "deadline", "shutdown" */
void metrics_http(const char *endpoint, int status);
void metrics_clamd(const char *command);
void metrics_reload(int ok);
/* Current queue state, for the gauges. */
void metrics_queue(size_t waiting, size_t running, size_t capacity);
/* The last values given to metrics_queue (clamd's STATS). */
void metrics_queue_get(size_t *waiting, size_t *running, size_t *capacity);
/*
 * The Prometheus text exposition; caller frees (NULL when out of memory). The
 * policy and model gauges show what the caller hands in (borrowed; NULL allowed).
 */
char *metrics_render(const clipmod_engine *engine, const clipmod_model *model,
                     unsigned long generation, double loaded_at);

/* ------------------------------------------------------------------------ */
/* Engines and reload (reload.c)                                            */
/* ------------------------------------------------------------------------ */

/* Load the model and compile the first engine; -1 with the reason logged. */
int reload_init(const dconfig *c);

/*
 * Compile a new engine from `c` and swap it in; requests running keep the engine
 * they took. On failure the old engine stays. 0 or -1.
 */
int reload_swap(const dconfig *c);

/* The current engine with one more reference: release with clipmod_engine_free(). */
clipmod_engine *reload_acquire(void);

/* Likewise, with the slot's snapshot for that engine (generation, fingerprint's 12 hex). */
clipmod_engine *reload_acquire_info(cm_swap_info *info);

struct bjob;
/*
 * For a verdict's log line, whose policy= and generation= (the log context) name
 * the current policy: when `job` was scanned under another one (a reload happened
 * meanwhile), that one's fingerprint (and its generation written into gen); else
 * NULL. Logged as scan_policy= and scan_generation=, left out when NULL.
 */
const char *reload_job_policy(const struct bjob *job, char *gen, size_t genlen);

/* The model (loaded once; lives until reload_shutdown). */
const clipmod_model *reload_model(void);

/* Seconds since the epoch when the current engine was swapped in, and how many swaps. */
double reload_loaded_at(void);
unsigned long reload_generation(void);

/* Drop the current engine and free the model, once nothing scans any more. */
void reload_shutdown(void);

/* Ask the main thread to reload (as SIGHUP does). */
void reload_request(void);

/* ------------------------------------------------------------------------ */
/* The batcher (batcher.c)                                                  */
/* ------------------------------------------------------------------------ */

typedef enum {
    BJ_QUEUED,
    BJ_RUNNING,
    BJ_DONE,    /* out[] holds one result per input */
    BJ_EXPIRED, /* the deadline passed first */
    BJ_FAILED   /* the engine failed (err says why) */
} bj_status;

/*
 * One input of a job. Either `data`/`len` (owned by the job), or `fd` (owned: an
 * open regular file the worker scans), or `url` for URL jobs. `name` labels the
 * result; `context` is passed to the engine with it (clipmod_input's context).
 */
typedef struct binput {
    char *name;
    unsigned char *data;
    size_t len;
    int fd;
    char *url;
    char *context;      /* the text that came with this input (owned), or NULL */
    size_t context_len; /* its bytes (it may hold NULs; a NUL follows them) */
    /* The verdict cache's (dcache.c): */
    unsigned char key[32]; /* cm_vkey of this input, when keyed */
    int keyed, cached;     /* keyed: key is set; cached: out[i] came from the cache */
} binput;

typedef struct bjob bjob;

typedef void (*bjob_notify)(bjob *job, void *arg);

struct bjob {
    /* Set by the submitter before batcher_submit(). */
    clipmod_engine *engine;   /* one reference, released with the job */
    char policy_fp[13];       /* its fingerprint's first 12 hex digits ("" unknown) */
    unsigned long generation; /* its generation in the reload slot (0 unknown) */
    size_t n;
    binput *in;
    int urls; /* 1: fetch mode (clipmod_scan_urls) */
    diface iface;
    bjob_notify notify; /* called once, without locks, when the job ends */
    void *arg;

    /* Filled by the batcher; read after the job ended. */
    clipmod_result **out;
    bj_status status;
    clipmod_error err;
    double t_submit, deadline;

    /* The batcher's. */
    int refs;
    bjob *next;          /* in its queue */
    bjob *anext, *aprev; /* among the jobs queued or running, for the deadline reaper */
};

/*
 * A job for n inputs (fds set to -1), holding a reference to `engine`, which
 * `info` (reload_acquire_info's snapshot; NULL: unknown) describes. NULL if no memory.
 */
bjob *bjob_new(size_t n, clipmod_engine *engine, const cm_swap_info *info, diface iface);

/* Release the submitter's reference; the last one frees inputs, results and all. */
void bjob_release(bjob *job);

/* The job's status, read under the batcher's lock. */
bj_status bjob_status(bjob *job);

/* Block until the job ended; returns its final status. */
bj_status bjob_wait(bjob *job);

enum { BATCH_OK = 0, BATCH_FULL = 1, BATCH_STOPPING = 2 };

int batcher_start(const dconfig *c);

/* Queue `job` (its deadline starts now). BATCH_FULL when the queue has no room. */
int batcher_submit(bjob *job);

/* Jobs waiting or running, and inputs waiting. */
void batcher_load(size_t *jobs, size_t *waiting_inputs);

/* Refuse new jobs, finish those queued, stop the threads. */
void batcher_stop(void);

/* ------------------------------------------------------------------------ */
/* The verdict cache (dcache.c)                                             */
/* ------------------------------------------------------------------------ */

/* Open the cache `c` asks for (nothing when off); -1 with the reason logged. */
int dcache_start(const dconfig *c);
/* The engine of `generation` was built from `c`: its settings and plugins join its keys. */
void dcache_generation(unsigned long generation, const dconfig *c);
/*
 * Answer the inputs of `job` found in the cache (their out[i] set, in[i].cached = 1)
 * and key the others; returns how many inputs are left to scan.
 */
size_t dcache_lookup(bjob *job);
/* Store the scanned verdicts of the job's keyed inputs. */
void dcache_store(const bjob *job);
/* Prometheus lines for the cache into `text`; nothing when off. 0, or cm_dbuf's error. */
struct cm_dbuf;
int dcache_metrics(struct cm_dbuf *text);
/* A result's JSON (clipmod_result_to_json), "cached": true added when `cached`; free(). */
char *dcache_json(const clipmod_result *r, int explain, int cached);
/*
 * Result i of a finished job as clipmodd gives it (POST /v1/scan, queue results):
 * dcache_json's object with the policy it was judged under added at the end,
 * "policy_fingerprint" (12 hex digits, as the header) and "policy_generation".
 * Appended to b; CM_DBUF_OK or the first failure.
 */
int dcache_result_json(struct cm_dbuf *b, const bjob *j, size_t i, int explain);
void dcache_stop(void);

/* ------------------------------------------------------------------------ */
/* The on-flag hook (hooks.c)                                               */
/* ------------------------------------------------------------------------ */

/* Set up the on-flag command of `c` (nothing when none is configured); -1 logged. */
int hooks_start(const dconfig *c);

/* A job ended DONE: run the hook for each flagged (or unscanned, if asked) input. */
void hooks_job(const bjob *job);

/* Wait a little for running hooks, then release them. */
void hooks_stop(void);

/* The top category's score and threshold (the highest score when none is named). */
void verdict_top_score(const clipmod_result *r, double *score, double *threshold);

/* ------------------------------------------------------------------------ */
/* Files inside configured roots (roots.c)                                  */
/* ------------------------------------------------------------------------ */

/*
 * Open `path` for reading only if its real path lies inside one of `roots` (as
 * resolved when the roots were checked) and it is a regular file; symbolic links
 * that lead outside are refused, and the opened file is checked again through
 * /proc/self/fd so that a path swapped after the check is caught. On success
 * returns the fd and, if `real` is not NULL, a malloc'd copy of the real path. On
 * failure -1 and a sentence in `why`.
 */
int roots_open(const strlist *roots, const char *path, char **real, char *why, size_t whylen);

/* The real path of `path` if it lies inside `roots` (a file or directory), else NULL. */
char *roots_resolve(const strlist *roots, const char *path, char *why, size_t whylen);

/* 1 if the real path `real` lies inside the real path `root`. */
int roots_contains(const char *root, const char *real);

/* ------------------------------------------------------------------------ */
/* Doors                                                                    */
/* ------------------------------------------------------------------------ */

/* http.c: start the HTTP server (its bound address into `bound`), stop it. */
int http_start(const dconfig *c, char *bound, size_t boundlen);
/* Stop accepting; answer what is in flight; close. */
void http_stop(void);

/*
 * http_guard.c: the request-head deadline (http.header-timeout) of HTTP
 * connections. A slot per connection, opened and closed by http.c; a head must be
 * complete within the timeout of the connection's opening or of its previous answer,
 * else the connection gets 408 and is shut down by the guard's thread.
 */
typedef struct guard_slot guard_slot;
int guard_start(unsigned header_timeout_s);
void guard_stop(void);
guard_slot *guard_open(int fd, const char *remote); /* NULL if out of memory */
void guard_close(guard_slot *s);                    /* each accepts NULL */
void guard_head_arrived(guard_slot *s);
void guard_request_done(guard_slot *s);

/*
 * tusd.c: one hook request. tusd_begin() parses `body`; when it can answer at once
 * (a hook that needs no scan, or an error) it returns NULL with *status and *reply
 * (caller frees) set. Otherwise it returns a request whose job (tusd_job) the
 * caller submits, and tusd_finish() builds the hook response once the job ended.
 */
typedef struct tusd_req tusd_req;
tusd_req *tusd_begin(const dconfig *c, const char *body, size_t len, int *status, char **reply);
bjob *tusd_job(tusd_req *t);
char *tusd_finish(tusd_req *t, int *status);
void tusd_free(tusd_req *t);

/* clamd.c: listeners on a unix socket and/or TCP. */
int clamd_start(const dconfig *c, char *bound, size_t boundlen);
void clamd_stop(void);

/*
 * worker.c: jobs from a Redis stream (clipmodd(8) WORKER). worker_only() is
 * --worker: the worker on, the doors off but those the command line names.
 * worker_stop() stops reading and writes the results of the jobs in flight; call it
 * before batcher_stop(). worker_metrics() adds its counters to /metrics (nothing
 * when the worker is off); 0, or cm_dbuf's error.
 */
void worker_only(dconfig *c, int keep_http, int keep_clamd);
int worker_start(const dconfig *c);
void worker_stop(void);
int worker_metrics(struct cm_dbuf *text);

#endif
