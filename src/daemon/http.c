/*
 * http.c - clipmodd's HTTP interface (libmicrohttpd).
 *
 * Owns the endpoints of clipmodd(8), HTTP API: POST /v1/scan (a raw image body,
 * or multipart/form-data with several files), POST /v1/scan-url (fetch mode),
 * POST /v1/tusd (tusd's HTTP hooks, handled in tusd.c), GET /v1/health,
 * GET /v1/policy and GET /metrics; and the limits around them: body size (413),
 * content types (415), malformed bodies (400), bearer-token auth (401), a full
 * queue (503 with Retry-After), the per-request deadline, and the idle timeout
 * that drops slow clients.
 *
 * Threads: one libmicrohttpd polling thread reads requests and writes answers and
 * never waits for a scan. A request that needs one is suspended
 * (MHD_suspend_connection) while its job waits in the batcher; the job's notify
 * resumes it, and the handler, called again, sends the verdicts. So thousands of
 * waiting clients cost no threads, and requests that arrive together reach the
 * batcher together.
 *
 * Response shape follows request shape: a raw body gets one result object (the
 * schema of `clipmod scan --json`), a multipart form gets an array in form order,
 * even for one file; scan-url answers {"url":...} with an object and
 * {"urls":[...]} with an array. The status is 200 whatever the verdict; with
 * ?enforce=1 it is the policy's HTTP status for the most severe action (e.g. 403
 * for reject), and 422 when nothing was flagged but an input was unscanned.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

/* JSON request bodies (scan-url, tusd hooks) are small. */
#define MAX_JSON_BYTES (1u << 20)
#define MAX_URL_BYTES  8192
#define PP_BUFFER      16384

typedef enum { R_SCAN, R_SCAN_URL, R_TUSD, R_HEALTH, R_POLICY, R_METRICS } route;

static const struct {
    const char *path;
    route r;
    int post; /* else GET (and HEAD) */
} routes[] = {
    {"/v1/scan", R_SCAN, 1},     {"/v1/scan-url", R_SCAN_URL, 1}, {"/v1/tusd", R_TUSD, 1},
    {"/v1/health", R_HEALTH, 0}, {"/v1/policy", R_POLICY, 0},     {"/metrics", R_METRICS, 0},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

typedef struct part {
    char *name;
    unsigned char *data;
    size_t len, cap;
} part;

typedef struct req {
    int routed; /* index into routes, or -1 */
    char method[16], path[128], remote[64];
    double t0;
    int status;                 /* the status sent */
    const char *action, *state; /* for headers and the request log */
    size_t inputs;

    /* Body */
    int multipart, json;
    struct MHD_PostProcessor *pp;
    int bad_body;  /* malformed multipart */
    int too_large; /* over max-body-bytes: the rest is read and dropped */
    int too_many;  /* more than max-files files */
    uint64_t received;
    unsigned char *body;
    size_t len, cap;
    part *parts;
    size_t n_parts;

    /* Query */
    int explain, enforce;

    /* Scanning */
    bjob *job;
    tusd_req *tusd;
    int is_array;
    int suspended;
    int close;   /* answer with Connection: close (the framing is not to be trusted) */
    int refused; /* batcher_submit's BATCH_FULL or BATCH_STOPPING */
} req;

static struct {
    struct MHD_Daemon *d;
    const dconfig *c;
    atomic_int suspended; /* requests waiting for a job */
    atomic_int stopping;
} H;

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* The media type of a Content-Type value, compared without parameters or case. */
static int media_is(const char *ctype, const char *type)
{
    size_t n = strlen(type);
    if (!ctype)
        return 0;
    while (*ctype == ' ')
        ctype++;
    return !strncasecmp(ctype, type, n) && (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

static int query_flag(struct MHD_Connection *conn, const char *name)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    return v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !*v);
}

/* Constant-time comparison: a token's prefix must not be guessable by timing. */
static int token_ok(const char *given, const char *want)
{
    size_t lg = strlen(given), lw = strlen(want);
    unsigned char diff = lg != lw;
    for (size_t i = 0; i < lw; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < lg ? given[i] : 0);
    return diff == 0;
}

/* `src` into `dst` (truncated), every byte that is not printable ASCII made '?'. */
static void printable_ascii(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    if (!size)
        return;
    for (; src && src[i] && i + 1 < size; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = '\0';
}

/*
 * Messages may quote the client's bytes (a JSON parser's error does), and jansson
 * refuses strings that are not UTF-8: they are made printable ASCII first, so a
 * malformed request gets its 400, never a 500.
 */
static char *error_json(int status, const char *msg)
{
    char text[512];
    printable_ascii(text, sizeof text, msg);
    json_t *o = json_pack("{s:s, s:i}", "error", text, "status", status);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The most severe action among results, and how many were flagged / unscanned / clean. */
typedef struct verdict_sum {
    clipmod_action action;
    int flagged, unscanned, clean;
} verdict_sum;

static void verdict_summarise(clipmod_result *const *out, size_t n, verdict_sum *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        if (!out[i])
            continue;
        switch (clipmod_result_state(out[i])) {
        case CLIPMOD_STATE_FLAGGED:
            s->flagged++;
            if (clipmod_result_action(out[i]) > s->action)
                s->action = clipmod_result_action(out[i]);
            break;
        case CLIPMOD_STATE_UNSCANNED:
            s->unscanned++;
            break;
        default:
            s->clean++;
        }
    }
}

static const char *summary_state(const verdict_sum *s)
{
    return s->flagged ? "flagged" : s->unscanned ? "unscanned" : "clean";
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

/* Send `body` (malloc'd, taken; NULL means out of memory) with `status`. */
static enum MHD_Result respond(struct MHD_Connection *conn, req *q, int status, const char *ctype,
                               char *body)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (!body) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        ctype = "application/json";
        body = strdup("{\"error\":\"out of memory\",\"status\":500}");
        if (!body)
            return MHD_NO;
    }
    resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (q->action)
        MHD_add_response_header(resp, "Clipmod-Action", q->action);
    if (q->state)
        MHD_add_response_header(resp, "Clipmod-State", q->state);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", H.c->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"clipmodd\"");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED && q->routed >= 0)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                routes[q->routed].post ? "POST" : "GET, HEAD");
    if (atomic_load(&H.stopping) || q->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    q->status = status;
    metrics_http(q->routed >= 0 ? routes[q->routed].path : "other", status);
    if (q->suspended) {
        q->suspended = 0;
        atomic_fetch_sub(&H.suspended, 1);
    }
    return ret;
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, req *q, int status,
                                     const char *msg)
{
    return respond(conn, q, status, "application/json", error_json(status, msg));
}

/* The verdicts of a finished job, as one object or an array. */
static char *results_json(const bjob *j, int is_array, int explain)
{
    size_t cap = 2, len = 0;
    char **parts = calloc(j->n, sizeof *parts), *s = NULL;
    if (!parts)
        return NULL;
    for (size_t i = 0; i < j->n; i++) {
        if (!(parts[i] = clipmod_result_to_json(j->out[i], explain)))
            goto out;
        cap += strlen(parts[i]) + 1;
    }
    if (!is_array) {
        s = parts[0];
        parts[0] = NULL;
        goto out;
    }
    if (!(s = malloc(cap + 1)))
        goto out;
    s[len++] = '[';
    for (size_t i = 0; i < j->n; i++) {
        if (i)
            s[len++] = ',';
        size_t n = strlen(parts[i]);
        memcpy(s + len, parts[i], n);
        len += n;
    }
    s[len++] = ']';
    s[len] = '\0';
out:
    for (size_t i = 0; i < j->n; i++)
        clipmod_free(parts[i]);
    free(parts);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

static void resume_cb(bjob *job, void *arg)
{
    MHD_resume_connection((struct MHD_Connection *)arg);
}

/*
 * Suspend first, then submit: the worker may finish before this handler returns,
 * and a resume must find the connection suspended.
 */
static enum MHD_Result submit(struct MHD_Connection *conn, req *q, bjob *job)
{
    job->notify = resume_cb;
    job->arg = conn;
    q->job = job;
    q->inputs = job->n;
    MHD_suspend_connection(conn);
    q->suspended = 1;
    atomic_fetch_add(&H.suspended, 1);
    if ((q->refused = batcher_submit(job)) != BATCH_OK)
        MHD_resume_connection(conn); /* never queued: answer 503 when called again */
    return MHD_YES;
}

/* Called again once the job ended. */
static enum MHD_Result answer_job(struct MHD_Connection *conn, req *q)
{
    bjob *j = q->job;
    bj_status st = bjob_status(j);

    if (q->refused == BATCH_FULL)
        return respond_error(conn, q, 503, "the scan queue is full; retry later");
    if (q->refused)
        return respond_error(conn, q, 503, "clipmodd is shutting down");
    if (q->tusd) {
        int status = 200;
        char *body;
        body = tusd_finish(q->tusd, &status);
        if (st == BJ_DONE) {
            verdict_sum s;
            verdict_summarise(j->out, j->n, &s);
            q->action = clipmod_action_name(s.action);
            q->state = summary_state(&s);
        }
        return respond(conn, q, status, "application/json", body);
    }
    switch (st) {
    case BJ_DONE:
        break;
    case BJ_EXPIRED:
        return respond_error(conn, q, 503, "the request's deadline passed before its scan ended");
    case BJ_FAILED:
        return respond_error(conn, q, 500, clipmod_strerror(j->err));
    default:
        return respond_error(conn, q, 500, "internal error: the job did not end");
    }
    verdict_sum s;
    verdict_summarise(j->out, j->n, &s);
    q->action = clipmod_action_name(s.action);
    q->state = summary_state(&s);
    int status = 200;
    if (q->enforce) {
        if (s.flagged)
            status = clipmod_engine_http_status(j->engine, s.action);
        else if (s.unscanned)
            status = 422;
    }
    return respond(conn, q, status, "application/json", results_json(j, q->is_array, q->explain));
}

/* ------------------------------------------------------------------------ */
/* Bodies                                                                   */
/* ------------------------------------------------------------------------ */

static int append(unsigned char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 65536;
        while (c < *len + n)
            c *= 2;
        unsigned char *grown = realloc(*buf, c);
        if (!grown)
            return -1;
        *buf = grown;
        *cap = c;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    return 0;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    req *q = cls;
    part *cur = q->n_parts ? &q->parts[q->n_parts - 1] : NULL;

    /* Form fields without a file name are not images: ignored. */
    if (!filename)
        return MHD_YES;
    int fresh = off == 0 && (!cur || cur->len || !cur->name || strcmp(cur->name, filename));
    if (fresh) {
        if (q->n_parts >= H.c->max_files) {
            q->too_many = 1;
            return MHD_YES;
        }
        part *grown = realloc(q->parts, (q->n_parts + 1) * sizeof *grown);
        if (!grown)
            return MHD_NO;
        q->parts = grown;
        cur = &q->parts[q->n_parts++];
        memset(cur, 0, sizeof *cur);
        if (!(cur->name = strdup(*filename ? filename : (key ? key : "upload"))))
            return MHD_NO;
    }
    if (q->too_many || !size)
        return MHD_YES;
    return append(&cur->data, &cur->len, &cur->cap, data, size) ? MHD_NO : MHD_YES;
}

static void take_body(req *q, const char *data, size_t n)
{
    q->received += n;
    if (q->too_large || q->bad_body)
        return;
    uint64_t limit = q->json ? MAX_JSON_BYTES : H.c->max_body_bytes;
    if (q->received > limit) {
        q->too_large = 1;
        return;
    }
    if (q->multipart) {
        if (MHD_post_process(q->pp, data, n) != MHD_YES)
            q->bad_body = 1;
        return;
    }
    if (append(&q->body, &q->len, &q->cap, data, n))
        q->too_large = 1;
}

/* ------------------------------------------------------------------------ */
/* Endpoints                                                                */
/* ------------------------------------------------------------------------ */

static enum MHD_Result do_scan(struct MHD_Connection *conn, req *q)
{
    clipmod_engine *engine;
    bjob *job;
    size_t n = q->multipart ? q->n_parts : 1;

    if (q->too_large)
        return respond_error(conn, q, 413, "the body is larger than http.max-body-bytes");
    if (q->too_many)
        return respond_error(conn, q, 413, "more files than http.max-files in one request");
    if (q->multipart) {
        int complete = MHD_destroy_post_processor(q->pp) == MHD_YES;
        q->pp = NULL;
        if (q->bad_body || !complete)
            return respond_error(conn, q, 400, "the multipart body is malformed or truncated");
        if (!q->n_parts)
            return respond_error(conn, q, 400,
                                 "the form has no file (each image needs a filename)");
    } else if (!q->len) {
        return respond_error(conn, q, 400, "the body is empty: send the image as the body");
    }
    engine = reload_acquire();
    job = bjob_new(n, engine, IFACE_HTTP);
    clipmod_engine_free(engine);
    if (!job)
        return respond(conn, q, 500, "application/json", NULL);
    if (q->multipart) {
        for (size_t i = 0; i < n; i++) {
            job->in[i].name = q->parts[i].name;
            job->in[i].data = q->parts[i].data;
            job->in[i].len = q->parts[i].len;
            q->parts[i].name = NULL;
            q->parts[i].data = NULL;
        }
        q->is_array = 1;
    } else {
        const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");
        job->in[0].name = strdup(name && *name ? name : "upload");
        job->in[0].data = q->body;
        job->in[0].len = q->len;
        q->body = NULL;
        if (!job->in[0].name) {
            bjob_release(job);
            return respond(conn, q, 500, "application/json", NULL);
        }
    }
    return submit(conn, q, job);
}

static enum MHD_Result do_scan_url(struct MHD_Connection *conn, req *q)
{
    json_error_t jerr;
    json_t *root = NULL, *one, *many;
    const char *bad = NULL;
    clipmod_engine *engine = NULL;
    bjob *job = NULL;
    size_t n;
    enum MHD_Result ret;

    if (q->too_large)
        return respond_error(conn, q, 413, "the JSON body is larger than 1 MiB");
    root = json_loadb((const char *)q->body, q->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        char msg[256];
        snprintf(msg, sizeof msg, "bad JSON: %s", root ? "expected an object" : jerr.text);
        json_decref(root);
        return respond_error(conn, q, 400, msg);
    }
    one = json_object_get(root, "url");
    many = json_object_get(root, "urls");
    if (!!one == !!many)
        bad = "give either \"url\" (a string) or \"urls\" (an array of strings)";
    else if (one && !json_is_string(one))
        bad = "\"url\" must be a string";
    else if (many && (!json_is_array(many) || !json_array_size(many)))
        bad = "\"urls\" must be a non-empty array of strings";
    else if (many && json_array_size(many) > H.c->max_files)
        bad = "more URLs than http.max-files";
    if (bad) {
        /* Decided before json_decref(): `many` belongs to `root`. */
        int status = many && json_array_size(many) > H.c->max_files ? 413 : 400;
        json_decref(root);
        return respond_error(conn, q, status, bad);
    }
    n = one ? 1 : json_array_size(many);
    for (size_t i = 0; i < n; i++) {
        json_t *u = one ? one : json_array_get(many, i);
        if (!json_is_string(u) || !json_string_length(u) || json_string_length(u) > MAX_URL_BYTES ||
            strlen(json_string_value(u)) != json_string_length(u)) {
            json_decref(root);
            return respond_error(conn, q, 400, "each URL must be a non-empty string");
        }
    }
    engine = reload_acquire();
    job = bjob_new(n, engine, IFACE_HTTP);
    clipmod_engine_free(engine);
    if (!job) {
        json_decref(root);
        return respond(conn, q, 500, "application/json", NULL);
    }
    job->urls = 1;
    for (size_t i = 0; i < n; i++) {
        const char *u = json_string_value(one ? one : json_array_get(many, i));
        job->in[i].url = strdup(u);
        job->in[i].name = strdup(u);
        if (!job->in[i].url || !job->in[i].name) {
            json_decref(root);
            bjob_release(job);
            return respond(conn, q, 500, "application/json", NULL);
        }
    }
    q->is_array = many != NULL;
    json_decref(root);
    ret = submit(conn, q, job);
    return ret;
}

static enum MHD_Result do_tusd(struct MHD_Connection *conn, req *q)
{
    int status = 200;
    char *reply = NULL;

    if (q->too_large)
        return respond_error(conn, q, 413, "the hook request is larger than 1 MiB");
    q->tusd = tusd_begin(H.c, (const char *)q->body, q->len, &status, &reply);
    if (!q->tusd)
        return respond(conn, q, status, "application/json", reply);
    return submit(conn, q, tusd_job(q->tusd));
}

static enum MHD_Result do_health(struct MHD_Connection *conn, req *q)
{
    clipmod_engine *e = reload_acquire();
    const clipmod_model *m = reload_model();
    size_t jobs = 0, waiting = 0;
    int stopping = atomic_load(&H.stopping);

    batcher_load(&jobs, &waiting);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:b, s:{s:I, s:I, s:I}}", "status",
                          stopping ? "stopping" : "ok", "version", CLIPMOD_VERSION_STRING, "policy",
                          e ? clipmod_engine_policy_name(e) : "", "policy_generation",
                          (json_int_t)reload_generation(), "model",
                          m ? clipmod_model_describe(m) : "", "demo_model",
                          m && clipmod_model_is_demo(m), "queue", "waiting", (json_int_t)waiting,
                          "jobs", (json_int_t)jobs, "capacity", (json_int_t)H.c->queue_size);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    clipmod_engine_free(e);
    return respond(conn, q, stopping ? 503 : 200, "application/json", s);
}

static enum MHD_Result do_policy(struct MHD_Connection *conn, req *q)
{
    clipmod_engine *e = reload_acquire();
    char *summary = e ? clipmod_engine_policy_json(e) : NULL, *s = NULL, when[32];
    json_t *o = summary ? json_loads(summary, 0, NULL) : NULL;
    time_t t = (time_t)reload_loaded_at();
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* The library's summary, plus when this daemon swapped it in. */
    if (o && json_is_object(o)) {
        json_object_set_new(o, "loaded_at", json_string(when));
        json_object_set_new(o, "generation", json_integer((json_int_t)reload_generation()));
        s = json_dumps(o, JSON_COMPACT);
    }
    json_decref(o);
    clipmod_free(summary);
    clipmod_engine_free(e);
    return respond(conn, q, 200, "application/json", s);
}

/* ------------------------------------------------------------------------ */
/* The handler                                                              */
/* ------------------------------------------------------------------------ */

static void client_address(struct MHD_Connection *conn, char *out, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, len, "?");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)len);
}

/* Counts the headers that say where a body ends. */
typedef struct framing {
    unsigned content_length, transfer_encoding;
    int chunked; /* the (single) Transfer-Encoding is exactly "chunked" */
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    framing *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        f->content_length++;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->transfer_encoding++;
        f->chunked = value && !strcasecmp(value, "chunked");
    }
    return MHD_YES;
}

/*
 * Request smuggling: a proxy in front and clipmodd must agree on where a body
 * ends, so a request whose length two parsers could read differently is refused
 * (and its connection closed) rather than guessed at: more than one
 * Content-Length, Content-Length with Transfer-Encoding, or a Transfer-Encoding
 * other than a single "chunked". NULL when the framing is unambiguous.
 */
static const char *framing_problem(struct MHD_Connection *conn)
{
    framing f = {0, 0, 0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.content_length > 1)
        return "more than one Content-Length header";
    if (f.content_length && f.transfer_encoding)
        return "both Content-Length and Transfer-Encoding";
    if (f.transfer_encoding > 1 || (f.transfer_encoding && !f.chunked))
        return "Transfer-Encoding other than a single \"chunked\"";
    return NULL;
}

/* The first call: headers only. Route, authenticate, check what the body will be. */
static enum MHD_Result first_call(struct MHD_Connection *conn, req *q, const char *url,
                                  const char *method)
{
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const char *framing_bad = framing_problem(conn);

    if (framing_bad) {
        q->close = 1;
        return respond_error(conn, q, 400, framing_bad);
    }
    for (size_t i = 0; i < N_ROUTES; i++)
        if (!strcmp(url, routes[i].path))
            q->routed = (int)i;
    if (q->routed < 0)
        return respond_error(conn, q, 404, "no such endpoint (see clipmodd(8))");
    const route r = routes[q->routed].r;
    if (routes[q->routed].post ? strcmp(method, "POST") != 0 : !is_get)
        return respond_error(conn, q, 405, "method not allowed");
    if ((r == R_SCAN_URL && !H.c->scan_url_enabled) || (r == R_TUSD && !H.c->tusd_enabled))
        return respond_error(conn, q, 403, "this endpoint is disabled in the configuration");
    /* Probes must work without secrets; everything else needs the token when one is set. */
    if (H.c->auth_token && r != R_HEALTH) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (!auth || strncasecmp(auth, "Bearer ", 7) || !token_ok(auth + 7, H.c->auth_token))
            return respond_error(conn, q, 401, "a valid bearer token is required");
    }
    if (atomic_load(&H.stopping) && routes[q->routed].post)
        return respond_error(conn, q, 503, "clipmodd is shutting down");
    switch (r) {
    case R_HEALTH:
    case R_POLICY:
    case R_METRICS:
        /* Answered on the next call: an answer queued with the headers closes the
         * connection, and probes and scrapers keep theirs alive. */
        return MHD_YES;
    case R_SCAN:
        if (media_is(ctype, "multipart/form-data")) {
            q->multipart = 1;
            q->pp = MHD_create_post_processor(conn, PP_BUFFER, on_part, q);
            if (!q->pp)
                return respond_error(conn, q, 400, "a multipart body needs a boundary");
        } else if (ctype && !media_is(ctype, "application/octet-stream") &&
                   strncasecmp(ctype, "image/", 6)) {
            return respond_error(conn, q, 415,
                                 "send the image as the body with Content-Type image/... or "
                                 "application/octet-stream, or as multipart/form-data");
        }
        break;
    case R_SCAN_URL:
    case R_TUSD:
        if (!media_is(ctype, "application/json"))
            return respond_error(conn, q, 415, "the body must be application/json");
        q->json = 1;
        break;
    }
    /* Refuse an announced oversized body before a byte of it is read. */
    if (clen) {
        unsigned long long n = strtoull(clen, NULL, 10);
        if (n > (q->json ? MAX_JSON_BYTES : H.c->max_body_bytes))
            return respond_error(conn, q, 413,
                                 q->json ? "the JSON body is larger than 1 MiB"
                                         : "the body is larger than http.max-body-bytes");
    }
    q->explain = query_flag(conn, "explain");
    q->enforce = query_flag(conn, "enforce");
    return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_size, void **con_cls)
{
    req *q = *con_cls;

    if (!q) {
        if (!(q = calloc(1, sizeof *q)))
            return MHD_NO;
        *con_cls = q;
        q->routed = -1;
        q->t0 = mono_now();
        snprintf(q->method, sizeof q->method, "%s", method);
        snprintf(q->path, sizeof q->path, "%s", url);
        client_address(conn, q->remote, sizeof q->remote);
        return first_call(conn, q, url, method);
    }
    if (q->status)
        return MHD_YES; /* answered already; the rest of the body is dropped */
    if (*upload_size) {
        take_body(q, upload_data, *upload_size);
        *upload_size = 0;
        /* A client that keeps sending far past the limit is cut off. */
        if (q->too_large && q->received > 2 * H.c->max_body_bytes + MAX_JSON_BYTES)
            return MHD_NO;
        return MHD_YES;
    }
    if (q->job)
        return answer_job(conn, q);
    switch (routes[q->routed].r) {
    case R_SCAN:
        return do_scan(conn, q);
    case R_SCAN_URL:
        return do_scan_url(conn, q);
    case R_TUSD:
        return do_tusd(conn, q);
    case R_HEALTH:
        return do_health(conn, q);
    case R_POLICY:
        return do_policy(conn, q);
    case R_METRICS:
        return respond(conn, q, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_render());
    default:
        return respond_error(conn, q, 500, "internal error: unrouted request");
    }
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    req *q = *con_cls;
    if (!q)
        return;
    if (H.c->log_requests || q->status >= 500)
        dlog(q->status >= 500 ? DLOG_WARN : DLOG_INFO, "http", LF_S("method", q->method),
             LF_S("path", q->path), LF_I("status", q->status), LF_S("remote", q->remote),
             LF_I("inputs", q->inputs), LF_S("state", q->state), LF_S("action", q->action),
             LF_I("bytes", q->received), LF_F("ms", (mono_now() - q->t0) * 1e3),
             LF_B("completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK), LF_END);
    if (q->suspended)
        atomic_fetch_sub(&H.suspended, 1);
    if (q->pp)
        MHD_destroy_post_processor(q->pp);
    for (size_t i = 0; i < q->n_parts; i++) {
        free(q->parts[i].name);
        free(q->parts[i].data);
    }
    free(q->parts);
    free(q->body);
    /* A tusd request owns its job; others hold the submitter's reference here. */
    if (q->tusd)
        tusd_free(q->tusd);
    else
        bjob_release(q->job);
    free(q);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    dlog(DLOG_DEBUG, "libmicrohttpd", LF_S("detail", msg), LF_END);
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

int http_start(const dconfig *c, char *bound, size_t boundlen)
{
    struct sockaddr_storage ss;
    unsigned sslen;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    H.c = c;
    if (config_listen_addr(c->http_listen, &ss, &sslen)) {
        dlog(DLOG_ERROR, "http.listen must be HOST:PORT", LF_S("listen", c->http_listen), LF_END);
        return -1;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    H.d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR,
                           (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT,
                           (unsigned)c->client_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                           (unsigned)c->max_connections, MHD_OPTION_NOTIFY_COMPLETED, completed,
                           NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!H.d) {
        dlog(DLOG_ERROR, "http: cannot listen", LF_S("listen", c->http_listen), LF_END);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(H.d, MHD_DAEMON_INFO_BIND_PORT);
    char host[64] = "";
    if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    snprintf(bound, boundlen, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
             di ? (unsigned)di->port : 0u);
    return 0;
}

void http_stop(void)
{
    if (!H.d)
        return;
    atomic_store(&H.stopping, 1);
    MHD_socket fd = MHD_quiesce_daemon(H.d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    /* Requests waiting for scans are answered first: the batcher drains, and the
     * deadline reaper bounds the wait. */
    double give_up = mono_now() + H.c->request_timeout_ms / 1e3 + 5;
    while (atomic_load(&H.suspended) > 0 && mono_now() < give_up) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* Let the last answers leave before connections close. */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    MHD_stop_daemon(H.d);
    H.d = NULL;
}
