/*
 * metrics.c - clipmodd's counters and their Prometheus text exposition.
 *
 * Owns every metric GET /metrics shows (the list is in clipmodd(8), METRICS):
 * verdicts by state and action, unscanned inputs by reason, request latency and
 * batch size histograms, queue depth, HTTP statuses, clamd commands, reloads,
 * and info gauges naming the model and the active policy. Counters live under
 * one mutex: updates are a few additions per request, far below the cost of a
 * forward pass, and one lock keeps a scrape consistent. The module calls no other
 * part of the daemon (the policy and model gauges are handed in by the caller), so
 * the batcher and reload.c can count here without a dependency circle.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"
#include "drain.h"
#include "dynbuf.h"

/* Seconds from submission to result: 5 ms to 30 s. */
static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,    2.5,   5,    10,  30};
#define N_LAT (sizeof latency_bounds / sizeof latency_bounds[0])
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
#define N_BATCH (sizeof batch_bounds / sizeof batch_bounds[0])

/* Set once, from the main thread, when a stop signal starts the drain (drain.c). */
static atomic_int draining;

void metrics_draining(int on)
{
    atomic_store(&draining, on);
}

/* Label values seen at run time (HTTP endpoints, clamd commands) are from fixed lists. */
static const char *const endpoints[] = {"/v1/scan", "/v1/scan-url", "/v1/health", "/v1/policy",
                                        "/v1/tusd", "/metrics",     "other"};
#define N_ENDPOINTS (sizeof endpoints / sizeof endpoints[0])
static const char *const commands[] = {"PING",      "VERSION", "VERSIONCOMMANDS", "INSTREAM",
                                       "FILDES",    "SCAN",    "CONTSCAN",        "MULTISCAN",
                                       "IDSESSION", "END",     "RELOAD",          "STATS",
                                       "SHUTDOWN",  "other"};
#define N_COMMANDS (sizeof commands / sizeof commands[0])
static const char *const rejections[] = {"queue-full", "deadline", "shutdown", "body-memory",
                                         "header-timeout"};
#define N_REJECTIONS (sizeof rejections / sizeof rejections[0])
static const char *const iface_names[IFACE__COUNT] = {"http", "tusd", "clamd", "worker"};

/* HTTP statuses are counted per endpoint in a small open table. */
#define MAX_STATUSES 24
typedef struct status_count {
    int status;
    unsigned long long n;
} status_count;

typedef struct histogram {
    unsigned long long bucket[16], count;
    double sum;
} histogram;

/*
 * Flagged inputs per category (clipmod_flagged_total). Category ids come from the
 * policy, which a reload may change, so the table is open; past its size further
 * ids are counted under "other" rather than growing without bound.
 */
#define MAX_FLAGGED 64
typedef struct flagged_count {
    char id[64];
    unsigned long long n;
} flagged_count;

static struct {
    pthread_mutex_t lock;
    double start;
    flagged_count flagged[MAX_FLAGGED + 1]; /* the last slot is "other" */
    size_t n_flagged;
    unsigned long long scans[3][5]; /* state x action */
    unsigned long long unscanned[CLIPMOD_REASON__COUNT];
    histogram latency[IFACE__COUNT];
    unsigned long long inputs[IFACE__COUNT];
    histogram batch;
    unsigned long long rejected[N_REJECTIONS];
    status_count http[N_ENDPOINTS][MAX_STATUSES];
    unsigned long long clamd[N_COMMANDS];
    unsigned long long reloads_ok, reloads_failed;
    size_t waiting, running, capacity;
} m = {.lock = PTHREAD_MUTEX_INITIALIZER};

void metrics_init(void)
{
    pthread_mutex_lock(&m.lock);
    m.start = cm_wall();
    pthread_mutex_unlock(&m.lock);
}

static void observe(histogram *h, const double *bounds, size_t nb, double v)
{
    for (size_t i = 0; i < nb; i++)
        if (v <= bounds[i])
            h->bucket[i]++;
    h->count++;
    h->sum += v;
}

/* Count one flagged category; the caller holds the lock. */
static void count_flagged(const char *id)
{
    size_t i = 0;
    for (; i < m.n_flagged; i++)
        if (!strncmp(m.flagged[i].id, id, sizeof m.flagged[i].id - 1))
            break;
    if (i == m.n_flagged) {
        if (m.n_flagged == MAX_FLAGGED) {
            i = MAX_FLAGGED;
            snprintf(m.flagged[i].id, sizeof m.flagged[i].id, "%s", "other");
        } else {
            snprintf(m.flagged[i].id, sizeof m.flagged[i].id, "%s", id);
            m.n_flagged++;
        }
    }
    m.flagged[i].n++;
}

/* Every flagged category of a flagged result, counted under the lock. */
static void flagged_categories(const clipmod_result *r)
{
    size_t n = clipmod_result_category_count(r);
    for (size_t i = 0; i < n; i++) {
        clipmod_category_score cs;
        memset(&cs, 0, sizeof cs);
        cs.size = sizeof cs;
        if (clipmod_result_category(r, i, &cs) == CLIPMOD_OK && cs.flagged && cs.id)
            count_flagged(cs.id);
    }
}

void metrics_queue_get(size_t *waiting, size_t *running, size_t *capacity)
{
    pthread_mutex_lock(&m.lock);
    *waiting = m.waiting;
    *running = m.running;
    *capacity = m.capacity;
    pthread_mutex_unlock(&m.lock);
}

void metrics_result(const clipmod_result *r)
{
    clipmod_state s = clipmod_result_state(r);
    clipmod_action a = clipmod_result_action(r);
    clipmod_reason why = clipmod_result_reason(r);

    pthread_mutex_lock(&m.lock);
    if ((unsigned)s < 3 && (unsigned)a < 5)
        m.scans[s][a]++;
    if (s == CLIPMOD_STATE_UNSCANNED && (unsigned)why < CLIPMOD_REASON__COUNT)
        m.unscanned[why]++;
    if (s == CLIPMOD_STATE_FLAGGED)
        flagged_categories(r);
    pthread_mutex_unlock(&m.lock);
}

void metrics_job(diface iface, size_t n, double seconds)
{
    if ((unsigned)iface >= IFACE__COUNT)
        return;
    pthread_mutex_lock(&m.lock);
    observe(&m.latency[iface], latency_bounds, N_LAT, seconds);
    m.inputs[iface] += n;
    pthread_mutex_unlock(&m.lock);
}

void metrics_batch(size_t images)
{
    pthread_mutex_lock(&m.lock);
    observe(&m.batch, batch_bounds, N_BATCH, (double)images);
    pthread_mutex_unlock(&m.lock);
}

void metrics_rejected(const char *why)
{
    pthread_mutex_lock(&m.lock);
    for (size_t i = 0; i < N_REJECTIONS; i++)
        if (!strcmp(why, rejections[i]))
            m.rejected[i]++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_http(const char *endpoint, int status)
{
    size_t e = N_ENDPOINTS - 1;
    for (size_t i = 0; i < N_ENDPOINTS; i++)
        if (!strcmp(endpoint, endpoints[i]))
            e = i;
    pthread_mutex_lock(&m.lock);
    for (size_t i = 0; i < MAX_STATUSES; i++) {
        status_count *sc = &m.http[e][i];
        if (sc->status == status || sc->status == 0) {
            sc->status = status;
            sc->n++;
            break;
        }
    }
    pthread_mutex_unlock(&m.lock);
}

void metrics_clamd(const char *command)
{
    size_t c = N_COMMANDS - 1;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(command, commands[i]))
            c = i;
    pthread_mutex_lock(&m.lock);
    m.clamd[c]++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_reload(int ok)
{
    pthread_mutex_lock(&m.lock);
    if (ok)
        m.reloads_ok++;
    else
        m.reloads_failed++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_queue(size_t waiting, size_t running, size_t capacity)
{
    pthread_mutex_lock(&m.lock);
    m.waiting = waiting;
    m.running = running;
    m.capacity = capacity;
    pthread_mutex_unlock(&m.lock);
}

/* ------------------------------------------------------------------------ */
/* Exposition                                                               */
/* ------------------------------------------------------------------------ */

/*
 * The exposition is built in one capped buffer (src/common dynbuf.h). A scrape is
 * a few kilobytes; the cap only bounds a runaway. The first failed add is kept and
 * the render then answers NULL rather than a truncated exposition.
 */
#define METRICS_MAX_BYTES (4u << 20)

typedef struct buf {
    cm_dbuf d;
    int failed; /* the first CM_DBUF_E_* seen, 0 if none */
} buf;

static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(buf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->failed)
        return;
    va_start(ap, fmt);
    int rc = cm_dbuf_vaddf(&b->d, fmt, ap);
    va_end(ap);
    if (rc != CM_DBUF_OK)
        b->failed = rc;
}

/* A label value: backslash, double quote and newline escaped, as the format requires. */
static void label_value(buf *b, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '\\')
            bprintf(b, "\\\\");
        else if (*s == '"')
            bprintf(b, "\\\"");
        else if (*s == '\n')
            bprintf(b, "\\n");
        else
            bprintf(b, "%c", *s);
    }
}

static void help(buf *b, const char *name, const char *type, const char *text)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void histogram_out(buf *b, const char *name, const char *labels, const histogram *h,
                          const double *bounds, size_t nb)
{
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < nb; i++)
        bprintf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i], h->bucket[i]);
    bprintf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, h->count);
    bprintf(b, "%s_sum%s%s%s %.6f\n", name, *labels ? "{" : "", labels, *labels ? "}" : "", h->sum);
    bprintf(b, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
            h->count);
}

/* Resident memory in bytes from /proc/self/statm, 0 if unknown. */
static unsigned long long rss_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (unsigned long long)sysconf(_SC_PAGESIZE);
}

/* A label value in the exposition format: backslash, double quote and newline escaped. */
static void label_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in && o + 3 < len; in++) {
        if (*in == '\\' || *in == '"' || *in == '\n') {
            out[o++] = '\\';
            out[o++] = *in == '\n' ? 'n' : *in;
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

/* clipmod_flagged_total{category}: the caller holds the lock. */
static void render_flagged(buf *b)
{
    char esc[2 * sizeof m.flagged[0].id + 4];

    help(b, "clipmod_flagged_total", "counter",
         "Flagged inputs by category (an input flagged for two categories counts in both).");
    for (size_t i = 0; i <= MAX_FLAGGED; i++) {
        if (i >= m.n_flagged && i < MAX_FLAGGED)
            continue;
        if (!m.flagged[i].n)
            continue;
        label_escape(m.flagged[i].id, esc, sizeof esc);
        bprintf(b, "clipmod_flagged_total{category=\"%s\"} %llu\n", esc, m.flagged[i].n);
    }
}

/* What was judged: verdicts, flags, reasons, inputs, latency, batches. Lock held. */
static void render_verdicts(buf *b)
{
    char lab[64];

    help(b, "clipmodd_scans_total", "counter", "Inputs judged, by state and action.");
    for (int s = 0; s < 3; s++)
        for (int a = 0; a < 5; a++) {
            /* Only reachable pairs: clean and unscanned inputs are always "allow". */
            if (s != CLIPMOD_STATE_FLAGGED && a != CLIPMOD_ACTION_ALLOW)
                continue;
            bprintf(b, "clipmodd_scans_total{state=\"%s\",action=\"%s\"} %llu\n",
                    clipmod_state_name((clipmod_state)s), clipmod_action_name((clipmod_action)a),
                    m.scans[s][a]);
        }
    render_flagged(b);
    help(b, "clipmodd_unscanned_total", "counter", "Inputs not scanned, by reason.");
    for (int r = 1; r < CLIPMOD_REASON__COUNT; r++)
        bprintf(b, "clipmodd_unscanned_total{reason=\"%s\"} %llu\n",
                clipmod_reason_name((clipmod_reason)r), m.unscanned[r]);
    help(b, "clipmodd_inputs_total", "counter", "Inputs submitted for scanning, by interface.");
    for (int i = 0; i < IFACE__COUNT; i++)
        bprintf(b, "clipmodd_inputs_total{interface=\"%s\"} %llu\n", iface_names[i], m.inputs[i]);
    help(b, "clipmodd_request_duration_seconds", "histogram",
         "Time from a request's submission to its verdicts (queue wait included), by "
         "interface.");
    for (int i = 0; i < IFACE__COUNT; i++) {
        snprintf(lab, sizeof lab, "interface=\"%s\"", iface_names[i]);
        histogram_out(b, "clipmodd_request_duration_seconds", lab, &m.latency[i], latency_bounds,
                      N_LAT);
    }
    help(b, "clipmodd_batch_size", "histogram", "Images per forward pass.");
    histogram_out(b, "clipmodd_batch_size", "", &m.batch, batch_bounds, N_BATCH);
}

/* The load and the doors: queue, refusals, HTTP, clamd commands, reloads. Lock held. */
static void render_traffic(buf *b)
{
    help(b, "clipmodd_queue_depth", "gauge", "Inputs waiting for a forward pass.");
    bprintf(b, "clipmodd_queue_depth %zu\n", m.waiting);
    help(b, "clipmodd_queue_capacity", "gauge", "Inputs that may wait (scan.queue-size).");
    bprintf(b, "clipmodd_queue_capacity %zu\n", m.capacity);
    help(b, "clipmodd_inputs_in_progress", "gauge", "Inputs being scanned now.");
    bprintf(b, "clipmodd_inputs_in_progress %zu\n", m.running);
    help(b, "clipmodd_rejected_total", "counter",
         "Requests refused or cut short: queue full (503), deadline passed, shutting down.");
    for (size_t i = 0; i < N_REJECTIONS; i++)
        bprintf(b, "clipmodd_rejected_total{reason=\"%s\"} %llu\n", rejections[i], m.rejected[i]);
    help(b, "clipmodd_http_requests_total", "counter", "HTTP requests, by endpoint and status.");
    for (size_t e = 0; e < N_ENDPOINTS; e++)
        for (size_t i = 0; i < MAX_STATUSES && m.http[e][i].status; i++)
            bprintf(b, "clipmodd_http_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n",
                    endpoints[e], m.http[e][i].status, m.http[e][i].n);
    help(b, "clipmodd_clamd_commands_total", "counter", "clamd protocol commands, by command.");
    for (size_t c = 0; c < N_COMMANDS; c++)
        bprintf(b, "clipmodd_clamd_commands_total{command=\"%s\"} %llu\n", commands[c], m.clamd[c]);
    help(b, "clipmodd_reloads_total", "counter", "Policy reloads (SIGHUP), by result.");
    bprintf(b, "clipmodd_reloads_total{result=\"success\"} %llu\n", m.reloads_ok);
    bprintf(b, "clipmodd_reloads_total{result=\"failure\"} %llu\n", m.reloads_failed);
}

/* What runs: policy, model, build, drain state and the process. No lock needed. */
static void render_identity(buf *b, const clipmod_engine *engine, const clipmod_model *model,
                            unsigned long generation, double loaded_at, double start)
{
    help(b, "clipmodd_policy_info", "gauge", "The active policy (value 1).");
    bprintf(b, "clipmodd_policy_info{name=\"");
    label_value(b, engine ? clipmod_engine_policy_name(engine) : "");
    bprintf(b, "\",generation=\"%lu\"} 1\n", generation);
    help(b, "clipmodd_policy_loaded_timestamp_seconds", "gauge",
         "When the active policy was compiled and swapped in.");
    bprintf(b, "clipmodd_policy_loaded_timestamp_seconds %.3f\n", loaded_at);
    help(b, "clipmodd_model_info", "gauge", "The model (value 1).");
    bprintf(b, "clipmodd_model_info{model=\"");
    label_value(b, model ? clipmod_model_describe(model) : "");
    bprintf(b, "\",embed_dim=\"%zu\",demo=\"%s\"} 1\n", model ? clipmod_model_embed_dim(model) : 0,
            model && clipmod_model_is_demo(model) ? "true" : "false");
    help(b, "clipmodd_build_info", "gauge", "clipmodd's and libclipmod's versions (value 1).");
    bprintf(b, "clipmodd_build_info{version=\"%s\",libclipmod=\"%s\"} 1\n", CLIPMOD_VERSION_STRING,
            clipmod_version());
    help(b, "clipmodd_draining", "gauge",
         "1 once a stop signal came: health checks fail, in flight is answered (drain-grace).");
    bprintf(b, "clipmodd_draining %d\n", atomic_load(&draining));
    help(b, "process_start_time_seconds", "gauge", "When clipmodd started.");
    bprintf(b, "process_start_time_seconds %.3f\n", start);
    help(b, "process_resident_memory_bytes", "gauge", "Resident memory.");
    bprintf(b, "process_resident_memory_bytes %llu\n", rss_bytes());
}

char *metrics_render(const clipmod_engine *engine, const clipmod_model *model,
                     unsigned long generation, double loaded_at)
{
    buf b = {.failed = 0};

    cm_dbuf_init(&b.d, METRICS_MAX_BYTES);
    pthread_mutex_lock(&m.lock);
    render_verdicts(&b);
    render_traffic(&b);
    double start = m.start;
    pthread_mutex_unlock(&m.lock);

    /* The verdict cache's counters (dcache.c), when it is on. */
    int crc = dcache_metrics(&b.d);
    if (crc && !b.failed)
        b.failed = crc;
    /* The queue worker's (worker.c), when it runs. */
    crc = worker_metrics(&b.d);
    if (crc && !b.failed)
        b.failed = crc;
    render_identity(&b, engine, model, generation, loaded_at, start);
    if (b.failed) {
        cm_log(CM_LOG_WARN, "metrics not rendered",
               CM_LF_S("error", b.failed == CM_DBUF_E_TOOBIG ? "over 4 MiB" : "out of memory"),
               CM_LF_END);
        cm_dbuf_free(&b.d);
        return NULL;
    }
    return cm_dbuf_take(&b.d, NULL);
}
