/*
 * worker_task.c - a queue job between its stream entry and its result.
 *
 * Owns turning a checked job (worker_job.c) into a batcher job, as the HTTP door
 * does for an upload: a path opened inside worker.roots only (roots.c), bytes
 * copied, a URL handed to the batcher's fetch workers, the text as the input's
 * context; and judging how a finished one ended. An input that can never be scanned
 * (a damaged image, a URL the SSRF guard refuses, a path outside the roots) is a
 * failed job; a failure that may pass (a download timeout, a network error, the
 * deadline, the engine) is retried through the pending list until the last of
 * worker.max-attempts. The verdict is the JSON POST /v1/scan answers
 * (dcache_result_json).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "worker.h"

wtask *task_new(const char *entry, unsigned long attempts)
{
    wtask *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    snprintf(t->entry, sizeof t->entry, "%s", entry);
    t->attempts = attempts;
    return t;
}

void task_free(wtask *t)
{
    if (!t)
        return;
    bjob_release(t->job);
    free(t->reply);
    free(t->src);
    free(t);
}

/* A copy of n bytes with a NUL after them; NULL when out of memory. */
static char *copy(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int refused(wtask *t, const char *reason, const char *fmt, const char *a, const char *b)
{
    t->reason = reason;
    snprintf(t->error, sizeof t->error, fmt, a, b);
    return 1;
}

/* The input of the job: its source and name. 0, 1 refused, -1 out of memory. */
static int fill_input(wtask *t, const wjob *j, const dconfig *c, binput *in)
{
    char why[256];

    switch (j->kind) {
    case WJ_URL:
        t->job->urls = 1;
        in->url = copy(j->src, j->src_len);
        if (!in->url)
            return -1;
        in->name = copy(j->src, j->src_len);
        break;
    case WJ_PATH:
        in->fd = roots_open(&c->worker_roots, t->src, NULL, why, sizeof why);
        if (in->fd < 0)
            return refused(t, "refused", "path %s: %s", t->src, why);
        in->name = copy(j->src, j->src_len);
        break;
    case WJ_BYTES:
        in->data = malloc(j->src_len);
        if (!in->data)
            return -1;
        memcpy(in->data, j->src, j->src_len);
        in->len = j->src_len;
        in->name = copy(j->id, strlen(j->id));
        break;
    }
    if (!in->name)
        return -1;
    if (j->text) {
        /* Bytes may hold NULs (context_len says how many); a URL's text ends at one. */
        in->context = copy(j->text, j->text_len);
        if (!in->context)
            return -1;
        in->context_len = j->text_len;
    }
    return 0;
}

int task_address(wtask *t, const wjob *j, const dconfig *c)
{
    snprintf(t->id, sizeof t->id, "%s", j->id);
    if (!j->reply)
        return 0;
    char *reply = copy(j->reply, j->reply_len);
    if (!reply)
        return -1;
    if (strcmp(reply, c->worker_stream) && strcmp(reply, c->worker_dead)) {
        t->reply = reply;
        return 0;
    }
    refused(t, "bad-job", "reply %s is the worker's own %s stream", reply,
            !strcmp(reply, c->worker_stream) ? "jobs" : "dead-letter");
    free(reply);
    return 1;
}

int task_prepare(wtask *t, const wjob *j, const dconfig *c)
{
    cm_swap_info info;
    int rc = task_address(t, j, c);

    if (rc)
        return rc;
    if (j->kind != WJ_BYTES) {
        t->src_field = j->kind == WJ_URL ? "url" : "path";
        t->src = copy(j->src, j->src_len);
        if (!t->src)
            return -1;
    }
    clipmod_engine *engine = reload_acquire_info(&info);
    t->job = bjob_new(1, engine, &info, IFACE_WORKER);
    clipmod_engine_free(engine);
    if (!t->job)
        return -1;
    rc = fill_input(t, j, c, &t->job->in[0]);
    if (rc) {
        bjob_release(t->job);
        t->job = NULL;
    }
    return rc;
}

/* A failure that may pass: retried while attempts remain, else failed with `why`. */
static wt_outcome passing(wtask *t, unsigned max_attempts, const char *reason, const char *why)
{
    t->reason = reason;
    snprintf(t->error, sizeof t->error, "%s (attempt %lu of %u)", why, t->attempts, max_attempts);
    return t->attempts >= max_attempts ? WT_FAILED : WT_RETRY;
}

wt_outcome task_outcome(wtask *t, unsigned max_attempts)
{
    if (!t->job)
        return WT_FAILED; /* refused before scanning: reason and error are set */
    switch (bjob_status(t->job)) {
    case BJ_DONE:
        break;
    case BJ_EXPIRED:
        return passing(t, max_attempts, "deadline",
                       "the scan did not end within scan.request-timeout-ms");
    case BJ_FAILED:
        return passing(t, max_attempts, "engine-error", clipmod_strerror(t->job->err));
    default:
        return passing(t, max_attempts, "engine-error", "the scan did not end");
    }
    const clipmod_result *r = t->job->out[0];
    if (!r)
        return passing(t, max_attempts, "engine-error", "no verdict");
    if (clipmod_result_state(r) != CLIPMOD_STATE_UNSCANNED)
        return WT_DONE;
    clipmod_reason why = clipmod_result_reason(r);
    const char *text = clipmod_result_reason_text(r);
    /* A download that timed out or a network that failed may work next time. */
    if (why == CLIPMOD_REASON_TIMEOUT || why == CLIPMOD_REASON_NETWORK)
        return passing(t, max_attempts, clipmod_reason_name(why), text && *text ? text : "");
    t->reason = clipmod_reason_name(why);
    snprintf(t->error, sizeof t->error, "%s", text && *text ? text : clipmod_reason_name(why));
    return WT_FAILED;
}

/* A verdict is a few KiB (the worker never asks for explanations). */
#define VERDICT_MAX (1u << 20)

char *task_verdict_json(const wtask *t)
{
    if (!t->job || bjob_status(t->job) != BJ_DONE || !t->job->out[0])
        return NULL;
    cm_dbuf b;
    cm_dbuf_init(&b, VERDICT_MAX);
    if (dcache_result_json(&b, t->job, 0, 0) != CM_DBUF_OK) {
        cm_dbuf_free(&b);
        return NULL;
    }
    return cm_dbuf_take(&b, NULL);
}
