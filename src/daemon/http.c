/*
 * http.c - clipmodd's HTTP interface (libmicrohttpd).
 *
 * Owns the endpoints of clipmodd(8), HTTP API: POST /v1/scan (a raw image body,
 * or multipart/form-data with several files), POST /v1/scan-url (fetch mode),
 * POST /v1/tusd (tusd's HTTP hooks, handled in tusd.c), GET /v1/health,
 * GET /v1/policy and GET /metrics; and the limits around them: body size (413),
 * content types (415), malformed bodies and ambiguous framing (400), bearer-token
 * auth (401), a full queue (503 with Retry-After), the memory of all bodies in
 * flight (http.max-body-memory, 503), the per-request deadline, the idle timeout
 * that drops silent clients, the request-head deadline that drops slow ones
 * (http_guard.c) and the connections one address may hold.
 *
 * Forms are read by clipmodd's own multipart reader (multipart.c), fed as bytes
 * arrive. Every part is a file to scan unless it is a text field the operator
 * listed (http.text-fields): a part whose file name is spelled in a way some
 * reader does not know (filename*=, RFC 5987) must not pass unscanned.
 *
 * Context (clipmodd(8) CONTEXT): the text of the form's http.context-fields and the
 * percent-encoded X-Clipmod-Context header (decoded in context.c) follow each
 * image's own file name into its context; scan-url takes a "text" and per-URL
 * texts. Each source is held only up to config_context_cap() bytes (413 past it).
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
 *
 * Stopping (drain.c): from the first SIGTERM /v1/health answers 503 "draining" (a
 * balancer's check fails) while requests are still served, each answer closing its
 * connection; then http_quiesce() refuses new connections and the drain waits for
 * http_in_flight() (requests begun, not completed) before http_stop().
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

#include "clock.h"
#include "context.h"
#include "daemon.h"
#include "drain.h"
#include "dynbuf.h"
#include "multipart.h"

/* JSON request bodies (scan-url, tusd hooks) are small. */
#define MAX_JSON_BYTES (1u << 20)
#define MAX_URL_BYTES  8192
/* Multipart: text fields a form may carry besides its files, and one part's headers. */
#define MAX_TEXT_PARTS   64
#define MAX_PART_HEADERS 8192
/* Bodies of unknown length grow by doubling, then by this much at a time. */
#define GROW_STEP (8u << 20)

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

typedef struct buf {
    unsigned char *data;
    size_t len, cap;
} buf;

typedef struct part {
    char *name;
    buf b;
    int named_by_file; /* `name` is the client's file name (a piece of the context) */
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
    mp_reader *mp;
    mp_status mp_failed; /* the form is malformed (MP_MALFORMED) or over a limit */
    int too_large;       /* over max-body-bytes: the rest is read and dropped */
    int too_many;        /* more than max-files files */
    int no_memory;       /* over http.max-body-memory (or malloc failed): dropped */
    uint64_t received;
    buf body;
    part *parts; /* max-files of them */
    size_t n_parts;
    int keeping; /* the current part is a file */

    /* Context (clipmodd(8) CONTEXT): the form's context fields, joined, and the
     * decoded X-Clipmod-Context header; each at most config_context_cap() bytes. */
    cm_dbuf ctx;
    int in_ctx;        /* the current part is a context field */
    int ctx_too_large; /* the context fields passed the cap: 413 */
    char *hdr_ctx;     /* the header's text, or NULL */
    size_t hdr_ctx_len;

    /* Memory: this request's share of http.max-body-memory. */
    uint64_t announced; /* Content-Length, held from the first call */
    uint64_t held;      /* capacity of its buffers */
    uint64_t share;
    guard_slot *slot; /* the connection's head deadline */

    /* Query */
    int explain, enforce;

    /* Scanning */
    bjob *job;
    tusd_req *tusd;
    int is_array;
    int suspended;
    int close; /* answer with Connection: close (the framing is not to be trusted) */
    /* A refusal known from the headers (415, a form without a boundary), answered once
     * the body has been read and dropped: answering while the client still sends makes
     * the kernel reset the connection, and the client may lose the answer with it. */
    int deferred;
    char deferred_why[192];
    int refused; /* batcher_submit's BATCH_FULL or BATCH_STOPPING */
} req;

static struct {
    struct MHD_Daemon *d;
    const dconfig *c;
    size_t ctx_cap;       /* config_context_cap(c) */
    atomic_int suspended; /* requests waiting for a job */
    atomic_int requests;  /* begun and not completed: what a drain waits for */
    atomic_int stopping;
    int quiesced;             /* the listening socket is closed (main thread only) */
    atomic_ullong body_bytes; /* the shares of every request */
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
/*
 * The policy behind a scan answer, for proxies and logs that keep headers: its
 * fingerprint's first 12 hex digits and the reload generation, of the engine the
 * job was scanned with (a reload while it waited does not change them).
 */
static void policy_headers(struct MHD_Response *resp, const bjob *job)
{
    char gen[24];

    if (job->policy_fp[0])
        MHD_add_response_header(resp, "Clipmod-Policy-Fingerprint", job->policy_fp);
    snprintf(gen, sizeof gen, "%lu", job->generation);
    MHD_add_response_header(resp, "Clipmod-Policy-Generation", gen);
}

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
    if (q->state) {
        MHD_add_response_header(resp, "Clipmod-State", q->state);
        if (q->job)
            policy_headers(resp, q->job);
    }
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
    /* Draining, a connection kept open could carry a request past the drain. */
    if (atomic_load(&H.stopping) || q->close || drain_active())
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

/*
 * The verdicts of a finished job, as one object or an array; NULL when out of
 * memory or past RESULTS_MAX_BYTES (answered 500). A result is a few KiB even with
 * ?explain=1; the cap bounds http.max-files of them with room to spare.
 */
#define RESULTS_MAX_BYTES (64u << 20)

static char *results_json(const bjob *j, int is_array, int explain)
{
    cm_dbuf b;
    int rc = CM_DBUF_OK;

    cm_dbuf_init(&b, RESULTS_MAX_BYTES);
    if (is_array)
        rc = cm_dbuf_addc(&b, '[');
    for (size_t i = 0; i < (is_array ? j->n : 1) && rc == CM_DBUF_OK; i++) {
        if (i)
            rc = cm_dbuf_addc(&b, ',');
        if (rc == CM_DBUF_OK)
            rc = dcache_result_json(&b, j, i, explain);
    }
    if (rc == CM_DBUF_OK && is_array)
        rc = cm_dbuf_addc(&b, ']');
    if (rc != CM_DBUF_OK) {
        cm_dbuf_free(&b);
        return NULL;
    }
    return cm_dbuf_take(&b, NULL);
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
    q->refused = batcher_submit(job);
    if (q->refused != BATCH_OK)
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
/* Memory of bodies in flight (http.max-body-memory)                        */
/* ------------------------------------------------------------------------ */

/*
 * Every request holds a share of the budget: its Content-Length from the first
 * call when one is announced, else what its buffers hold, whichever is more. No
 * share may take the total past http.max-body-memory; the request is then
 * refused with 503. Shares are returned when the request completes (its bytes
 * then belong to the job, which ends with it).
 */
static int budget_set(req *q, uint64_t bytes)
{
    if (bytes > q->share) {
        uint64_t add = bytes - q->share;
        uint64_t total = atomic_fetch_add(&H.body_bytes, add) + add;
        if (total > H.c->max_body_memory) {
            atomic_fetch_sub(&H.body_bytes, add);
            return -1;
        }
    } else {
        atomic_fetch_sub(&H.body_bytes, q->share - bytes);
    }
    q->share = bytes;
    return 0;
}

static int budget_update(req *q)
{
    return budget_set(q, q->held > q->announced ? q->held : q->announced);
}

static uint64_t body_limit(const req *q)
{
    return q->json ? MAX_JSON_BYTES : H.c->max_body_bytes;
}

/* What a request holds is dropped (over a limit): its share goes back. */
static void drop_buffers(req *q)
{
    free(q->body.data);
    memset(&q->body, 0, sizeof q->body);
    for (size_t i = 0; i < q->n_parts; i++) {
        free(q->parts[i].b.data);
        memset(&q->parts[i].b, 0, sizeof q->parts[i].b);
    }
    cm_dbuf_free(&q->ctx);
    q->held = 0;
    q->announced = 0;
    budget_set(q, 0);
}

static void refuse_memory(req *q)
{
    if (q->no_memory)
        return;
    q->no_memory = 1;
    drop_buffers(q);
    metrics_rejected("body-memory");
}

/*
 * The capacity for `need` bytes: with a Content-Length, room for all that can
 * still come at once (one allocation for a raw body); without, doubling, then
 * GROW_STEP at a time. Never past the body limit.
 */
static size_t grow_to(const req *q, size_t cap, size_t need)
{
    uint64_t limit = body_limit(q);
    if (q->announced && q->announced >= q->received)
        return need + (size_t)(q->announced - q->received);
    cap = cap ? cap : 65536;
    while (cap < need)
        cap = cap < GROW_STEP ? cap * 2 : cap + GROW_STEP;
    return cap > limit && need <= limit ? (size_t)limit : cap;
}

/* Append within the budget: -1 (and the request refused) when over it or out of memory. */
static int buf_append(req *q, buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = grow_to(q, b->cap, b->len + n);
        q->held += cap - b->cap;
        unsigned char *grown = budget_update(q) ? NULL : realloc(b->data, cap);
        if (!grown) {
            q->held -= cap - b->cap;
            refuse_memory(q);
            return -1;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

/* A finished part keeps only its bytes: the rest of its share goes back. */
static void buf_trim(req *q, buf *b)
{
    if (b->len == b->cap || !b->len)
        return;
    unsigned char *fit = realloc(b->data, b->len);
    if (!fit)
        return;
    q->held -= b->cap - b->len;
    b->data = fit;
    b->cap = b->len;
    budget_update(q);
}

/* ------------------------------------------------------------------------ */
/* Multipart forms                                                          */
/* ------------------------------------------------------------------------ */

/*
 * A part is a file to scan unless it is a text field: a form-data part named in
 * http.context-fields (its text is the images' context) or http.text-fields (read
 * and dropped), with no file name of any spelling and no Content-Type but
 * text/plain. Anything else could be an image.
 */
typedef enum { PART_FILE, PART_TEXT, PART_CONTEXT } part_kind;

static int listed(const strlist *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(name, l->v[i]))
            return 1;
    return 0;
}

static part_kind kind_of(const mp_part *p)
{
    if (p->has_filename || !p->name || !p->form_data)
        return PART_FILE;
    if (p->content_type && !media_is(p->content_type, "text/plain"))
        return PART_FILE;
    /* A context field is text also with context off: clients need not change. */
    if (listed(&H.c->context_fields, p->name))
        return H.c->context_enabled ? PART_CONTEXT : PART_TEXT;
    return listed(&H.c->text_fields, p->name) ? PART_TEXT : PART_FILE;
}

/* Room in q->ctx for n more bytes, its growth charged to the memory budget: 0 or -1. */
static int ctx_append(req *q, const void *data, size_t n)
{
    size_t cap = q->ctx.cap;
    if (n > H.ctx_cap - q->ctx.len) {
        q->ctx_too_large = 1;
        return -1;
    }
    if (cm_dbuf_addn(&q->ctx, data, n) != CM_DBUF_OK) {
        refuse_memory(q);
        return -1;
    }
    q->held += q->ctx.cap - cap;
    if (budget_update(q)) {
        refuse_memory(q);
        return -1;
    }
    return 0;
}

/* A context field begins: after the fields before it, on a line of its own. */
static int begin_context(req *q)
{
    q->in_ctx = 1;
    return q->ctx.len ? ctx_append(q, "\n", 1) : 0;
}

static int on_part_begin(void *arg, const mp_part *p)
{
    req *q = arg;
    part_kind kind = kind_of(p);
    q->keeping = kind == PART_FILE;
    if (kind == PART_CONTEXT)
        return begin_context(q) ? 1 : 0;
    if (!q->keeping)
        return 0;
    if (q->n_parts >= H.c->max_files) {
        q->too_many = 1;
        return 1;
    }
    const char *name = p->filename && *p->filename ? p->filename
                       : p->name && *p->name       ? p->name
                                                   : "upload";
    part *cur = &q->parts[q->n_parts++];
    cur->named_by_file = p->filename && *p->filename;
    cur->name = strdup(name);
    if (!cur->name) {
        refuse_memory(q);
        return 1;
    }
    return 0;
}

static int on_part_data(void *arg, const unsigned char *data, size_t n)
{
    req *q = arg;
    if (q->in_ctx)
        return ctx_append(q, data, n) ? 1 : 0;
    if (!q->keeping)
        return 0; /* a listed text field: not kept */
    return buf_append(q, &q->parts[q->n_parts - 1].b, data, n) ? 1 : 0;
}

static int on_part_end(void *arg)
{
    req *q = arg;
    if (q->keeping)
        buf_trim(q, &q->parts[q->n_parts - 1].b);
    q->keeping = 0;
    q->in_ctx = 0;
    return 0;
}

static const mp_callbacks part_callbacks = {on_part_begin, on_part_data, on_part_end};

/* The first call of a form: its reader, and room for max-files parts. 0, or a status. */
static int start_form(req *q, const char *ctype, char *why, size_t whylen)
{
    mp_limits lim = {H.c->max_files + MAX_TEXT_PARTS, MAX_PART_HEADERS};
    mp_status st;

    q->multipart = 1;
    q->parts = calloc(H.c->max_files, sizeof *q->parts);
    if (!q->parts) {
        snprintf(why, whylen, "out of memory");
        return 500;
    }
    q->mp = mp_new(ctype, &lim, &part_callbacks, q, &st, why, whylen);
    return q->mp ? 0 : st == MP_MALFORMED ? 400 : 500;
}

/* ------------------------------------------------------------------------ */
/* Bodies                                                                   */
/* ------------------------------------------------------------------------ */

static void take_body(req *q, const char *data, size_t n)
{
    q->received += n;
    if (q->too_large || q->too_many || q->no_memory || q->mp_failed || q->ctx_too_large)
        return;
    if (q->received > body_limit(q)) {
        q->too_large = 1;
        drop_buffers(q);
        return;
    }
    if (q->multipart) {
        mp_status st = mp_feed(q->mp, data, n);
        /* MP_STOPPED: too_many or no_memory says why. */
        if (st == MP_MALFORMED || st == MP_LIMIT)
            q->mp_failed = st;
        if (st != MP_OK)
            drop_buffers(q);
        return;
    }
    buf_append(q, &q->body, data, n);
}

/* A request whose body was dropped: its answer, or 0 if the body is whole. */
static enum MHD_Result refused_body(struct MHD_Connection *conn, req *q, int *answered)
{
    char msg[256];
    *answered = 1;
    if (q->no_memory)
        return respond_error(conn, q, 503,
                             "clipmodd holds too many request bodies in memory "
                             "(http.max-body-memory); retry later");
    if (q->too_large)
        return respond_error(conn, q, 413,
                             q->json ? "the JSON body is larger than 1 MiB"
                                     : "the body is larger than http.max-body-bytes");
    if (q->too_many)
        return respond_error(conn, q, 413, "more files than http.max-files in one request");
    if (q->ctx_too_large) {
        snprintf(msg, sizeof msg,
                 "the form's context fields (http.context-fields) hold more than %zu bytes "
                 "(%d times the engine's max-context-bytes)",
                 H.ctx_cap, CONTEXT_CAP_FACTOR);
        return respond_error(conn, q, 413, msg);
    }
    if (q->multipart && !q->mp_failed && mp_finish(q->mp) != MP_OK)
        q->mp_failed = MP_MALFORMED;
    if (q->mp_failed) {
        snprintf(msg, sizeof msg, "the multipart body is %s: %s",
                 q->mp_failed == MP_LIMIT ? "over a limit" : "malformed or truncated",
                 mp_error(q->mp));
        return respond_error(conn, q, q->mp_failed == MP_LIMIT ? 413 : 400, msg);
    }
    *answered = 0;
    return MHD_YES;
}

/* ------------------------------------------------------------------------ */
/* Endpoints                                                                */
/* ------------------------------------------------------------------------ */

/*
 * An input's context from its pieces, most specific first (NULL pieces skipped),
 * charged to the request's memory share: 0, or -1 when out of memory or over the
 * budget. Each piece was capped where it was read, so the join is never cut.
 */
static int join_context(req *q, binput *in, const char *const *piece, const size_t *len, size_t n)
{
    cm_dbuf b;

    cm_dbuf_init(&b, 2 * H.ctx_cap + MP_MAX_NAME + 2);
    for (size_t i = 0; i < n; i++) {
        if (piece[i] && context_add(&b, piece[i], len[i])) {
            cm_dbuf_free(&b);
            return -1;
        }
    }
    in->context = cm_dbuf_take(&b, &in->context_len);
    q->held += in->context_len;
    return budget_update(q);
}

/*
 * The context of a scan's inputs (clipmodd(8) CONTEXT): each file's own name when
 * the client gave one (a part's file name, a raw body's ?name=), then the form's
 * context fields, then the X-Clipmod-Context header. 0, or -1 (out of memory).
 */
static int scan_contexts(struct MHD_Connection *conn, req *q, bjob *job)
{
    const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");

    if (!H.c->context_enabled)
        return 0;
    for (size_t i = 0; i < job->n; i++) {
        const char *own = q->multipart ? (q->parts[i].named_by_file ? job->in[i].name : NULL)
                                       : (name && *name ? name : NULL);
        const char *piece[3] = {own, q->ctx.len ? cm_dbuf_ptr(&q->ctx) : NULL, q->hdr_ctx};
        size_t len[3] = {own ? strlen(own) : 0, q->ctx.len, q->hdr_ctx_len};
        if (join_context(q, &job->in[i], piece, len, 3))
            return -1;
    }
    return 0;
}

static enum MHD_Result do_scan(struct MHD_Connection *conn, req *q)
{
    cm_swap_info info;
    clipmod_engine *engine;
    bjob *job;
    size_t n = q->multipart ? q->n_parts : 1;
    int answered;
    enum MHD_Result ret = refused_body(conn, q, &answered);

    if (answered)
        return ret;
    if (q->multipart && !q->n_parts)
        return respond_error(conn, q, 400,
                             "the form has no file (only fields listed in http.text-fields)");
    if (!q->multipart && !q->body.len)
        return respond_error(conn, q, 400, "the body is empty: send the image as the body");
    engine = reload_acquire_info(&info);
    job = bjob_new(n, engine, &info, IFACE_HTTP);
    clipmod_engine_free(engine);
    if (!job)
        return respond(conn, q, 500, "application/json", NULL);
    if (q->multipart) {
        for (size_t i = 0; i < n; i++) {
            job->in[i].name = q->parts[i].name;
            job->in[i].data = q->parts[i].b.data;
            job->in[i].len = q->parts[i].b.len;
            q->parts[i].name = NULL;
            memset(&q->parts[i].b, 0, sizeof q->parts[i].b);
        }
        q->is_array = 1;
    } else {
        const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");
        job->in[0].name = strdup(name && *name ? name : "upload");
        job->in[0].data = q->body.data;
        job->in[0].len = q->body.len;
        memset(&q->body, 0, sizeof q->body);
        if (!job->in[0].name) {
            bjob_release(job);
            return respond(conn, q, 500, "application/json", NULL);
        }
    }
    if (scan_contexts(conn, q, job)) {
        bjob_release(job);
        refuse_memory(q);
        return refused_body(conn, q, &answered);
    }
    return submit(conn, q, job);
}

/*
 * One URL of a scan-url request: a string, or {"url": "...", "text": "..."} (the
 * text that came with that image). NULL when the entry is neither; *text is the
 * entry's text or NULL.
 */
static const char *url_entry(json_t *e, const char **text)
{
    json_t *u = e, *t = NULL;
    const char *key;
    json_t *v;

    *text = NULL;
    if (json_is_object(e)) {
        json_object_foreach(e, key, v)
        {
            if (strcmp(key, "url") && strcmp(key, "text"))
                return NULL;
        }
        u = json_object_get(e, "url");
        t = json_object_get(e, "text");
        if (t && !json_is_string(t))
            return NULL;
        *text = json_string_value(t);
    }
    if (!json_is_string(u) || !json_string_length(u) || json_string_length(u) > MAX_URL_BYTES ||
        strlen(json_string_value(u)) != json_string_length(u))
        return NULL;
    return json_string_value(u);
}

/* A scan-url body, checked: its URL entries (one or many) and shared text. */
typedef struct url_body {
    json_t *one, *many; /* borrowed from the document */
    const char *text;   /* "text": the context of every URL, or NULL */
    size_t n;
    char why[160]; /* a refusal that names a number */
} url_body;

/*
 * 1 if `text` (NULL: none) is more context than clipmodd holds (with context on),
 * with the refusal naming `what` and the cap in u->why, pointed to by *bad.
 */
static int text_too_large(url_body *u, const char *text, const char *what, const char **bad)
{
    if (!H.c->context_enabled || !text || strlen(text) <= H.ctx_cap)
        return 0;
    snprintf(u->why, sizeof u->why,
             "%s is larger than %zu bytes (%d times the engine's max-context-bytes)", what,
             H.ctx_cap, CONTEXT_CAP_FACTOR);
    *bad = u->why;
    return 1;
}

/* Check each entry of a scan-url body: 0, or a status with `bad` set. */
static int read_url_entries(url_body *u, const char **bad)
{
    const char *text;

    u->n = u->one ? 1 : json_array_size(u->many);
    for (size_t i = 0; i < u->n; i++) {
        if (!url_entry(u->one ? u->one : json_array_get(u->many, i), &text)) {
            *bad = "each URL must be a non-empty string, or {\"url\": \"...\", \"text\": "
                   "\"...\"}";
            return 400;
        }
        if (text_too_large(u, text, "a URL's \"text\"", bad))
            return 413;
    }
    return 0;
}

/* Check the document `root`: 0, or a status with `bad` set. */
static int read_url_body(json_t *root, url_body *u, const char **bad)
{
    json_t *t = json_object_get(root, "text");

    u->one = json_object_get(root, "url");
    u->many = json_object_get(root, "urls");
    u->text = json_string_value(t);
    if (!!u->one == !!u->many)
        *bad = "give either \"url\" (a string) or \"urls\" (an array of strings)";
    else if (u->many && (!json_is_array(u->many) || !json_array_size(u->many)))
        *bad = "\"urls\" must be a non-empty array of strings";
    else if (t && !json_is_string(t))
        *bad = "\"text\" must be a string (the context of the images)";
    if (*bad)
        return 400;
    if (u->many && json_array_size(u->many) > H.c->max_files) {
        *bad = "more URLs than http.max-files";
        return 413;
    }
    if (text_too_large(u, u->text, "\"text\"", bad))
        return 413;
    return read_url_entries(u, bad);
}

/* The job's inputs from a checked body: URL, name and context (the URL's own text
 * first, then the shared one). 0, or -1 when out of memory. */
static int fill_url_job(req *q, bjob *job, const url_body *u)
{
    for (size_t i = 0; i < u->n; i++) {
        const char *text, *url = url_entry(u->one ? u->one : json_array_get(u->many, i), &text);
        const char *piece[2] = {text, u->text};
        size_t len[2] = {text ? strlen(text) : 0, u->text ? strlen(u->text) : 0};
        job->in[i].url = strdup(url);
        if (!job->in[i].url)
            return -1;
        job->in[i].name = strdup(url);
        if (!job->in[i].name)
            return -1;
        if (H.c->context_enabled && join_context(q, &job->in[i], piece, len, 2))
            return -1;
    }
    return 0;
}

static enum MHD_Result do_scan_url(struct MHD_Connection *conn, req *q)
{
    cm_swap_info info;
    json_error_t jerr;
    json_t *root = NULL;
    const char *bad = NULL;
    url_body u;
    bjob *job = NULL;
    int answered, status;
    enum MHD_Result ret = refused_body(conn, q, &answered);

    if (answered)
        return ret;
    root = json_loadb((const char *)q->body.data, q->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        char msg[256];
        snprintf(msg, sizeof msg, "bad JSON: %s", root ? "expected an object" : jerr.text);
        json_decref(root);
        return respond_error(conn, q, 400, msg);
    }
    status = read_url_body(root, &u, &bad);
    if (status) {
        json_decref(root);
        return respond_error(conn, q, status, bad);
    }
    clipmod_engine *engine = reload_acquire_info(&info);
    job = bjob_new(u.n, engine, &info, IFACE_HTTP);
    clipmod_engine_free(engine);
    if (job)
        job->urls = 1;
    if (!job || fill_url_job(q, job, &u)) {
        json_decref(root);
        bjob_release(job);
        return respond(conn, q, 500, "application/json", NULL);
    }
    q->is_array = u.many != NULL;
    json_decref(root);
    return submit(conn, q, job);
}

static enum MHD_Result do_tusd(struct MHD_Connection *conn, req *q)
{
    int status = 200, answered;
    char *reply = NULL;
    enum MHD_Result ret = refused_body(conn, q, &answered);

    if (answered)
        return ret;
    q->tusd = tusd_begin(H.c, (const char *)q->body.data, q->body.len, &status, &reply);
    if (!q->tusd)
        return respond(conn, q, status, "application/json", reply);
    return submit(conn, q, tusd_job(q->tusd));
}

static enum MHD_Result do_health(struct MHD_Connection *conn, req *q)
{
    clipmod_engine *e = reload_acquire();
    const clipmod_model *m = reload_model();
    size_t jobs = 0, waiting = 0;
    int stopping = atomic_load(&H.stopping), draining = drain_active();
    const char *status = stopping ? "stopping" : draining ? "draining" : "ok";

    /* A balancer checks this: while draining it must see a failure (503), and the
     * daemon knows someone watches, so that the drain waits drain-grace for them. */
    drain_note_check();
    batcher_load(&jobs, &waiting);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:s, s:b, s:{s:I, s:I, s:I}}", "status", status, "version",
                  CLIPMOD_VERSION_STRING, "policy", e ? clipmod_engine_policy_name(e) : "",
                  "policy_generation", (json_int_t)reload_generation(), "model",
                  m ? clipmod_model_describe(m) : "", "demo_model", m && clipmod_model_is_demo(m),
                  "queue", "waiting", (json_int_t)waiting, "jobs", (json_int_t)jobs, "capacity",
                  (json_int_t)H.c->queue_size);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    clipmod_engine_free(e);
    return respond(conn, q, stopping || draining ? 503 : 200, "application/json", s);
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

static enum MHD_Result do_metrics(struct MHD_Connection *conn, req *q)
{
    clipmod_engine *e = reload_acquire();
    char *text = metrics_render(e, reload_model(), reload_generation(), reload_loaded_at());

    clipmod_engine_free(e);
    return respond(conn, q, 200, "text/plain; version=0.0.4; charset=utf-8", text);
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

/* The first call: route, method, the endpoint enabled, the token. 0, or answered. */
static int check_route(struct MHD_Connection *conn, req *q, const char *url, const char *method,
                       enum MHD_Result *ret)
{
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const char *framing_bad = framing_problem(conn);

    if (framing_bad) {
        q->close = 1;
        *ret = respond_error(conn, q, 400, framing_bad);
        return 1;
    }
    for (size_t i = 0; i < N_ROUTES; i++)
        if (!strcmp(url, routes[i].path))
            q->routed = (int)i;
    if (q->routed < 0) {
        *ret = respond_error(conn, q, 404, "no such endpoint (see clipmodd(8))");
        return 1;
    }
    const route r = routes[q->routed].r;
    if (routes[q->routed].post ? strcmp(method, "POST") != 0 : !is_get) {
        *ret = respond_error(conn, q, 405, "method not allowed");
        return 1;
    }
    if ((r == R_SCAN_URL && !H.c->scan_url_enabled) || (r == R_TUSD && !H.c->tusd_enabled)) {
        *ret = respond_error(conn, q, 403, "this endpoint is disabled in the configuration");
        return 1;
    }
    /* Probes must work without secrets; everything else needs the token when one is set. */
    if (H.c->auth_token && r != R_HEALTH) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (!auth || strncasecmp(auth, "Bearer ", 7) || !token_ok(auth + 7, H.c->auth_token)) {
            *ret = respond_error(conn, q, 401, "a valid bearer token is required");
            return 1;
        }
    }
    if (atomic_load(&H.stopping) && routes[q->routed].post) {
        *ret = respond_error(conn, q, 503, "clipmodd is shutting down");
        return 1;
    }
    return 0;
}

/*
 * The first call of a POST: what its body will be (type, form reader), and an
 * announced length checked against max-body-bytes and, held at once, against the
 * memory budget: both refused before a byte of the body is read.
 */
static enum MHD_Result count_context_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    if (!strcasecmp(key, CONTEXT_HEADER))
        ++*(unsigned *)cls;
    return MHD_YES;
}

/*
 * The X-Clipmod-Context header (percent-encoded) decoded into q->hdr_ctx: 0, or a
 * status with `why`. Two of them would be ambiguous (which one, or both joined?).
 * The request head's size bounds it already (libmicrohttpd); the cap is checked
 * anyway, as for every other source of context.
 */
static int read_context_header(struct MHD_Connection *conn, req *q, char *why, size_t whylen)
{
    unsigned n = 0;
    const char *v;
    size_t len;

    if (!H.c->context_enabled)
        return 0;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_context_header, &n);
    if (!n)
        return 0;
    v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, CONTEXT_HEADER);
    len = v ? strlen(v) : 0;
    if (n > 1) {
        snprintf(why, whylen, "more than one " CONTEXT_HEADER " header");
        return 400;
    }
    q->hdr_ctx = malloc(len + 1);
    if (!q->hdr_ctx) {
        snprintf(why, whylen, "out of memory");
        return 500;
    }
    if (context_unescape(v ? v : "", len, q->hdr_ctx, &q->hdr_ctx_len)) {
        snprintf(why, whylen,
                 CONTEXT_HEADER " must be percent-encoded UTF-8: a '%%' must be followed by "
                                "two hex digits");
        return 400;
    }
    q->hdr_ctx[q->hdr_ctx_len] = '\0';
    if (q->hdr_ctx_len > H.ctx_cap) {
        snprintf(why, whylen,
                 CONTEXT_HEADER " holds more than %zu bytes of text (%d times the engine's "
                                "max-context-bytes)",
                 H.ctx_cap, CONTEXT_CAP_FACTOR);
        return 413;
    }
    return 0;
}

/* Refuse q once its body has been read (see req.deferred). */
static enum MHD_Result defer_error(req *q, int status, const char *why)
{
    q->deferred = status;
    snprintf(q->deferred_why, sizeof q->deferred_why, "%s", why);
    return MHD_YES;
}

static enum MHD_Result expect_body(struct MHD_Connection *conn, req *q)
{
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    char why[192];
    int status;

    if (routes[q->routed].r != R_SCAN) {
        if (!media_is(ctype, "application/json"))
            defer_error(q, 415, "the body must be application/json");
        q->json = 1;
    } else if (media_is(ctype, "multipart/form-data")) {
        status = start_form(q, ctype, why, sizeof why);
        if (status == 400)
            defer_error(q, status, why);
        else if (status)
            return respond_error(conn, q, status, why);
    } else if (ctype && !media_is(ctype, "application/octet-stream") &&
               strncasecmp(ctype, "image/", 6)) {
        defer_error(q, 415,
                    "send the image as the body with Content-Type image/... or "
                    "application/octet-stream, or as multipart/form-data");
    }
    if (routes[q->routed].r == R_SCAN && !q->deferred) {
        status = read_context_header(conn, q, why, sizeof why);
        if (status == 500)
            return respond_error(conn, q, status, why);
        if (status)
            defer_error(q, status, why);
    }
    if (q->deferred) {
        /* Nothing of the body is kept, so no memory is charged; a body announced past
         * the limit is not read just to refuse it. */
        q->close = clen && strtoull(clen, NULL, 10) > body_limit(q);
        return q->close ? respond_error(conn, q, q->deferred, q->deferred_why) : MHD_YES;
    }
    if (clen) {
        /* libmicrohttpd checked it is a number. */
        unsigned long long n = strtoull(clen, NULL, 10);
        q->close = 1; /* if refused now, the unread body must not be taken for a request */
        if (n > body_limit(q))
            return respond_error(conn, q, 413,
                                 q->json ? "the JSON body is larger than 1 MiB"
                                         : "the body is larger than http.max-body-bytes");
        q->announced = n;
        if (budget_update(q)) {
            metrics_rejected("body-memory");
            return respond_error(conn, q, 503,
                                 "clipmodd holds too many request bodies in memory "
                                 "(http.max-body-memory); retry later");
        }
        q->close = 0;
    }
    q->explain = query_flag(conn, "explain");
    q->enforce = query_flag(conn, "enforce");
    return MHD_YES;
}

static guard_slot *slot_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static enum MHD_Result first_call(struct MHD_Connection *conn, req *q, const char *url,
                                  const char *method)
{
    enum MHD_Result ret;

    q->slot = slot_of(conn);
    guard_head_arrived(q->slot);
    if (check_route(conn, q, url, method, &ret))
        return ret;
    /* GETs are answered on the next call: an answer queued with the headers closes
     * the connection, and probes and scrapers keep theirs alive. */
    return routes[q->routed].post ? expect_body(conn, q) : MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_size, void **con_cls)
{
    req *q = *con_cls;

    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q)
            return MHD_NO;
        *con_cls = q;
        atomic_fetch_add(&H.requests, 1);
        q->routed = -1;
        q->t0 = cm_now();
        cm_dbuf_init(&q->ctx, H.ctx_cap);
        snprintf(q->method, sizeof q->method, "%s", method);
        snprintf(q->path, sizeof q->path, "%s", url);
        client_address(conn, q->remote, sizeof q->remote);
        return first_call(conn, q, url, method);
    }
    if (q->status)
        return MHD_YES; /* answered already; the rest of the body is dropped */
    if (q->deferred && *upload_size) {
        q->received += *upload_size;
        *upload_size = 0;
        /* Read and dropped up to the body limit; a client sending more is cut off. */
        return q->received > body_limit(q) ? MHD_NO : MHD_YES;
    }
    if (q->deferred)
        return respond_error(conn, q, q->deferred, q->deferred_why);
    if (*upload_size) {
        take_body(q, upload_data, *upload_size);
        *upload_size = 0;
        /* A client that keeps sending far past a limit is cut off. */
        if ((q->too_large || q->no_memory) &&
            q->received > 2 * H.c->max_body_bytes + MAX_JSON_BYTES)
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
        return do_metrics(conn, q);
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
    char gen[24];
    const char *scan_policy = reload_job_policy(q->job, gen, sizeof gen);
    /* A health check's 503 (draining, stopping) is what a balancer must be told. */
    int fault = q->status >= 500 && !(q->routed >= 0 && routes[q->routed].r == R_HEALTH);
    if (H.c->log_requests || q->status >= 500)
        cm_log(fault ? CM_LOG_WARN : CM_LOG_INFO, "http", CM_LF_S("method", q->method),
               CM_LF_S("path", q->path), CM_LF_I("status", q->status), CM_LF_S("remote", q->remote),
               CM_LF_I("inputs", q->inputs), CM_LF_S("state", q->state),
               CM_LF_S("action", q->action), CM_LF_I("bytes", q->received),
               CM_LF_F("ms", (cm_now() - q->t0) * 1e3),
               CM_LF_B("completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK),
               CM_LF_S("scan_policy", scan_policy),
               CM_LF_S("scan_generation", scan_policy ? gen : NULL), CM_LF_END);
    if (q->suspended)
        atomic_fetch_sub(&H.suspended, 1);
    atomic_fetch_sub(&H.requests, 1);
    /* The next request's head is due within http.header-timeout. */
    guard_request_done(q->slot);
    mp_free(q->mp);
    for (size_t i = 0; i < q->n_parts; i++) {
        free(q->parts[i].name);
        free(q->parts[i].b.data);
    }
    free(q->parts);
    free(q->body.data);
    cm_dbuf_free(&q->ctx);
    free(q->hdr_ctx);
    budget_set(q, 0);
    /* A tusd request owns its job; others hold the submitter's reference here. */
    if (q->tusd)
        tusd_free(q->tusd);
    else
        bjob_release(q->job);
    free(q);
    *con_cls = NULL;
}

/* libmicrohttpd's connection notifications: each connection's slot in the guard. */
static void connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        guard_close(*socket_context);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char remote[64];
    client_address(conn, remote, sizeof remote);
    *socket_context = ci ? guard_open(ci->connect_fd, remote) : NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    cm_log(CM_LOG_DEBUG, "libmicrohttpd", CM_LF_S("detail", msg), CM_LF_END);
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
    H.ctx_cap = config_context_cap(c);
    if (config_listen_addr(c->http_listen, &ss, &sslen)) {
        cm_log(CM_LOG_ERROR, "http.listen must be HOST:PORT", CM_LF_S("listen", c->http_listen),
               CM_LF_END);
        return -1;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (guard_start(c->header_timeout_s)) {
        cm_log(CM_LOG_ERROR, "http: cannot start the header-timeout thread", CM_LF_END);
        return -1;
    }
    /* A per-IP limit of 0 is libmicrohttpd's "no limit". */
    H.d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR,
                           (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT,
                           (unsigned)c->client_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                           (unsigned)c->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                           (unsigned)c->max_connections_per_ip, MHD_OPTION_NOTIFY_COMPLETED,
                           completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, connection_cb, NULL,
                           MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!H.d) {
        guard_stop();
        cm_log(CM_LOG_ERROR, "http: cannot listen", CM_LF_S("listen", c->http_listen), CM_LF_END);
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

/* New connections are refused; those open are still served (drain.c, http_stop). */
void http_quiesce(void)
{
    if (!H.d || H.quiesced)
        return;
    H.quiesced = 1;
    MHD_socket fd = MHD_quiesce_daemon(H.d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

unsigned http_in_flight(void)
{
    int n = atomic_load(&H.requests);
    return n > 0 ? (unsigned)n : 0;
}

void http_stop(void)
{
    if (!H.d)
        return;
    atomic_store(&H.stopping, 1);
    http_quiesce();
    /* Requests waiting for scans are answered first: the batcher drains, and the
     * deadline reaper bounds the wait. */
    double give_up = cm_now() + H.c->request_timeout_ms / 1e3 + 5;
    while (atomic_load(&H.suspended) > 0 && cm_now() < give_up) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* Let the last answers leave before connections close. */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    MHD_stop_daemon(H.d);
    H.d = NULL;
    guard_stop();
}
