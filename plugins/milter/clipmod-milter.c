/*
 * clipmod-milter.c - a mail filter (libmilter) that scans the images of each message
 * with a clipmod policy, in the habits of clamav-milter.
 *
 * Owns the milter: collecting each message in memory (under max-message-bytes), the
 * skip rules, one batched scan per message through the shared engine, turning the
 * verdicts into what the MTA is told (verdict headers, the policy's SMTP reply,
 * quarantine, discard) and OnFail for anything that kept an image from being judged.
 * Also owns the process: the engine's life (a reference-counted runtime swapped on
 * SIGHUP, so messages in flight finish on the engine they started with), the bound
 * on scans at once, signals, logging with the queue id, and draining on shutdown.
 * What an image is, and decoding it, is mime.c's; the configuration is conf.c's.
 *
 * Threads: libmilter runs each SMTP connection's callbacks in a thread of its own;
 * they share one read-only engine and take a scan slot (workers) around each scan,
 * so a burst of connections queues for the CPU instead of thrashing it.
 */
#include <errno.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <clipmod/clipmod.h>

#include "conf.h"
#include "decisions.h"
#include "mime.h"

#ifndef CLIPMOD_SYSCONFDIR
#define CLIPMOD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG CLIPMOD_SYSCONFDIR "/clipmod/clipmod-milter.yaml"
#define PROG           "clipmod-milter"

/* Header values are folded before this many characters, as RFC 5322 recommends. */
#define FOLD_AT 78

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

static int log_to_syslog;
static atomic_int log_level = LOG_INFO;

static const char *level_name(int prio)
{
    switch (prio) {
    case LOG_ERR:
        return "error";
    case LOG_WARNING:
        return "warning";
    case LOG_NOTICE:
        return "notice";
    case LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

/* One log line; `qid` (the MTA's queue id, may be NULL) leads it, as MTAs log. */
static void logmsg(int prio, const char *qid, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    if (prio > atomic_load(&log_level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log_to_syslog) {
        syslog(prio, "%s%s%s", qid ? qid : "", qid ? ": " : "", line);
    } else {
        struct timespec ts;
        struct tm tm;
        char when[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        /* One fprintf per line: stdio locks the stream, so lines never mix. */
        fprintf(stderr, "%s.%03ldZ %s[%ld]: %s: %s%s%s\n", when, ts.tv_nsec / 1000000, PROG,
                (long)getpid(), level_name(prio), qid ? qid : "", qid ? ": " : "", line);
    }
}

/* Untrusted text (file names, addresses) as printable ASCII of at most `max` bytes. */
static void clean_text(char *dst, size_t size, const char *src, size_t max)
{
    size_t k = 0, n = 0;
    if (max + 4 > size)
        max = size - 4;
    for (const unsigned char *p = (const unsigned char *)(src ? src : ""); *p; p++, n++) {
        if (k >= max) {
            memcpy(dst + k, "...", 3);
            k += 3;
            break;
        }
        dst[k++] = *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\' && *p != ';' ? (char)*p : '_';
    }
    dst[k] = 0;
}

/* ------------------------------------------------------------------------ */
/* The runtime: configuration and engine, swapped whole on reload           */
/* ------------------------------------------------------------------------ */

typedef struct runtime {
    cmc_config *conf;
    clipmod_engine *engine;
    unsigned generation;
    atomic_int refs;
} runtime;

static clipmod_model *model;           /* loaded once; engines borrow it */
static char *model_dir, *model_merges; /* what `model` was loaded from */
static const char *config_path = DEFAULT_CONFIG;

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static runtime *rt_current;

static void rt_release(runtime *rt)
{
    if (rt && atomic_fetch_sub(&rt->refs, 1) == 1) {
        /* The last message that used this engine is done: nothing scans with it. */
        clipmod_engine_free(rt->engine);
        cmc_free(rt->conf);
        free(rt);
    }
}

static runtime *rt_acquire(void)
{
    runtime *rt;
    pthread_mutex_lock(&rt_lock);
    if ((rt = rt_current))
        atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&rt_lock);
    return rt;
}

static void rt_install(runtime *rt)
{
    runtime *old;
    pthread_mutex_lock(&rt_lock);
    old = rt_current;
    rt_current = rt;
    pthread_mutex_unlock(&rt_lock);
    rt_release(old);
}

/* Log a block of lines from the library (policy problems), one entry each. */
static void log_lines(int prio, const char *text)
{
    const char *p = text;
    while (p && *p) {
        size_t n = strcspn(p, "\n");
        if (n)
            logmsg(prio, NULL, "%.*s", (int)n, p);
        p += n + (p[n] == '\n');
    }
}

static clipmod_engine *build_engine(const cmc_config *c)
{
    clipmod_engine *e = NULL;
    char *problems = NULL;
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_error rc;

    if ((rc = clipmod_engine_new(model, &e))) {
        logmsg(LOG_ERR, NULL, "engine: %s", clipmod_strerror(rc));
        return NULL;
    }
    /* The walk refuses bigger images first; the engine agrees, in case. */
    if ((rc = clipmod_engine_set(e, CLIPMOD_MAX_FILE_BYTES, c->limits.max_image_bytes)))
        goto setting_failed;
    for (size_t i = 0; i < c->n_settings; i++)
        if ((rc = clipmod_engine_set(e, c->settings[i].s, c->settings[i].value))) {
            logmsg(LOG_ERR, NULL, "%s: engine.%s: %s", c->path,
                   clipmod_setting_name(c->settings[i].s), clipmod_strerror(rc));
            goto fail;
        }
    if ((c->no_cache || c->cache_dir) &&
        (rc = clipmod_engine_set_cache_dir(e, c->no_cache ? NULL : c->cache_dir))) {
        logmsg(LOG_ERR, NULL, "%s: cache-dir %s: %s", c->path, c->cache_dir ? c->cache_dir : "",
               clipmod_strerror(rc));
        goto fail;
    }
    for (size_t i = 0; i < c->n_plugins; i++)
        if (clipmod_engine_load_plugin(e, c->plugins[i].path, c->plugins[i].config, err)) {
            logmsg(LOG_ERR, NULL, "%s: plugin %s: %s", c->path, c->plugins[i].path, err);
            goto fail;
        }
    rc = clipmod_engine_compile(e, c->policy, &problems);
    if (rc) {
        if (problems)
            log_lines(LOG_ERR, problems);
        logmsg(LOG_ERR, NULL, "%s: %s", c->policy,
               rc == CLIPMOD_E_POLICY ? "the policy has problems" : clipmod_strerror(rc));
        goto fail;
    }
    if (problems)
        log_lines(LOG_WARNING, problems);
    clipmod_free(problems);
    return e;
setting_failed:
    logmsg(LOG_ERR, NULL, "engine setting: %s", clipmod_strerror(rc));
fail:
    clipmod_free(problems);
    clipmod_engine_free(e);
    return NULL;
}

/* A runtime for `c`, which it takes (freed on failure). */
static runtime *runtime_new(cmc_config *c, unsigned generation)
{
    runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        logmsg(LOG_ERR, NULL, "out of memory");
        cmc_free(c);
        return NULL;
    }
    rt->conf = c;
    rt->generation = generation;
    atomic_init(&rt->refs, 1);
    if (!(rt->engine = build_engine(c))) {
        cmc_free(c);
        free(rt);
        return NULL;
    }
    return rt;
}

static cmc_config *load_config(const char *path)
{
    cmc_config *c = NULL;
    char *problems = NULL;
    if (cmc_load(path, &c, &problems)) {
        log_lines(LOG_ERR, problems);
        free(problems);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------------ */
/* Scan slots: at most `workers` scans at once                              */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cond;
static int slots_busy, slots_max = 1;

static void slots_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&slot_cond, &a);
    pthread_condattr_destroy(&a);
}

static void slots_resize(int n)
{
    pthread_mutex_lock(&slot_lock);
    slots_max = n;
    pthread_cond_broadcast(&slot_cond);
    pthread_mutex_unlock(&slot_lock);
}

static void deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* 0 with a slot taken, -1 when none came free within `wait_ms`. */
static int slot_acquire(uint64_t wait_ms)
{
    struct timespec deadline;
    int rc = 0;
    deadline_in(&deadline, wait_ms);
    pthread_mutex_lock(&slot_lock);
    while (slots_busy >= slots_max && rc == 0)
        if (pthread_cond_timedwait(&slot_cond, &slot_lock, &deadline) == ETIMEDOUT)
            rc = slots_busy >= slots_max ? -1 : 0;
    if (rc == 0)
        slots_busy++;
    pthread_mutex_unlock(&slot_lock);
    return rc;
}

static void slot_release(void)
{
    pthread_mutex_lock(&slot_lock);
    slots_busy--;
    pthread_cond_signal(&slot_cond);
    pthread_mutex_unlock(&slot_lock);
}

/*
 * Messages between MAIL FROM and their end. On SIGTERM, `stopping` turns new ones
 * away (4xx) while these finish; only then is libmilter stopped, whose worker pool
 * frees the contexts of sessions it still has when it stops.
 */
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t busy_cond;
static int messages_in_flight, stopping;

/* A message starts: 0, or -1 when the milter is stopping. */
static int message_enter(void)
{
    int rc = 0;
    pthread_mutex_lock(&busy_lock);
    if (stopping)
        rc = -1;
    else
        messages_in_flight++;
    pthread_mutex_unlock(&busy_lock);
    return rc;
}

static void message_leave(void)
{
    pthread_mutex_lock(&busy_lock);
    if (!--messages_in_flight)
        pthread_cond_broadcast(&busy_cond);
    pthread_mutex_unlock(&busy_lock);
}

/* Stop taking messages and wait up to `ms` for those in flight; how many remain. */
static int drain(uint64_t ms)
{
    struct timespec deadline;
    int left;
    deadline_in(&deadline, ms);
    pthread_mutex_lock(&busy_lock);
    stopping = 1;
    while (messages_in_flight > 0)
        if (pthread_cond_timedwait(&busy_cond, &busy_lock, &deadline) == ETIMEDOUT)
            break;
    left = messages_in_flight;
    pthread_mutex_unlock(&busy_lock);
    return left;
}

/* ------------------------------------------------------------------------ */
/* Header values                                                            */
/* ------------------------------------------------------------------------ */

/* A growing string that folds before FOLD_AT columns, between tokens. */
typedef struct hbuf {
    char *s;
    size_t len, cap, col;
    int nomem;
} hbuf;

static void hb_raw(hbuf *h, const char *s, size_t n)
{
    if (h->nomem)
        return;
    if (h->len + n + 1 > h->cap) {
        size_t cap = (h->len + n + 1) * 2;
        char *grown = realloc(h->s, cap);
        if (!grown) {
            h->nomem = 1;
            return;
        }
        h->s = grown;
        h->cap = cap;
    }
    memcpy(h->s + h->len, s, n);
    h->len += n;
    h->s[h->len] = 0;
}

/* Append a token, preceded by a space or by a fold when the line would get long. */
static void hb_tok(hbuf *h, const char *fmt, ...)
{
    char tok[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tok, sizeof tok, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof tok)
        n = sizeof tok - 1;
    if (h->len) {
        if (h->col + 1 + (size_t)n > FOLD_AT) {
            /* libmilter and Postfix take "\n\t" inside a value as a fold. */
            hb_raw(h, "\n\t", 2);
            h->col = 8;
        } else {
            hb_raw(h, " ", 1);
            h->col++;
        }
    }
    hb_raw(h, tok, (size_t)n);
    h->col += (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Deciding                                                                 */
/* ------------------------------------------------------------------------ */

/* What the milter knows of a message besides its bytes. */
typedef struct envelope {
    const char *qid;
    const char *sender;
    const char *auth; /* {auth_authen}, or NULL */
    size_t n_rcpt, n_rcpt_listed, n_rcpt_in_domains;
    int over_limit; /* the message passed max-message-bytes */
    uint64_t size;
} envelope;

/* One image's outcome. */
typedef struct image_out {
    const cmm_image *im;
    clipmod_result *r;    /* NULL when not given to the engine */
    int judged;           /* vstate is set (or empty) */
    int empty;            /* an empty part: nothing to see, nothing to judge */
    clipmod_state vstate; /* when judged and not empty */
    const char *reason;
    clipmod_action action;
    const char *category; /* deciding one, or for clean images the nearest */
    double score, threshold;
} image_out;

/* The whole outcome, for the MTA (milter) or for --message (stdout). */
typedef struct outcome {
    cm_decision what;
    cmc_reply reply; /* for reject and tempfail */
    char *verdict;   /* header values (NULL: none added) */
    char *summary;
    char quarantine[256];
    char log[1024];
} outcome;

static void outcome_free(outcome *o)
{
    free(o->verdict);
    free(o->summary);
    memset(o, 0, sizeof *o);
}

static const char *skip_reason(const cmc_config *c, const envelope *env)
{
    if (c->skip_authenticated && env->auth && *env->auth)
        return "authenticated sender";
    if (cmc_match_address(&c->skip_senders, env->sender))
        return "listed sender";
    if (cmc_match_domain(&c->skip_domains, env->sender))
        return "sender in a listed domain";
    /* Recipients skip only when all of them are listed: one listed address must not
     * carry mail for everyone else past the scanner. */
    if (env->n_rcpt && env->n_rcpt_listed == env->n_rcpt)
        return "listed recipients";
    if (env->n_rcpt && env->n_rcpt_in_domains == env->n_rcpt)
        return "recipients in listed domains";
    return NULL;
}

/* The category that decided a flagged image, or the nearest to its threshold. */
static void top_category(image_out *io)
{
    const char *top = clipmod_result_top_category(io->r);
    size_t n = clipmod_result_category_count(io->r);
    double best = -2;
    clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;
    for (size_t i = 0; i < n; i++) {
        if (clipmod_result_category(io->r, i, &c))
            continue;
        if (top ? !strcmp(c.id, top) : c.margin > best) {
            best = c.margin;
            io->category = c.id;
            io->score = c.score;
            io->threshold = c.threshold;
            if (top)
                break;
        }
    }
}

static void image_label(const cmm_image *im, char *buf, size_t size)
{
    char name[80];
    clean_text(name, sizeof name, im->filename ? im->filename : "", 60);
    snprintf(buf, size, "%s%s%s", im->part, *name ? " " : "", name);
}

/* X-Clipmod-Verdict: see clipmod-milter(8), HEADERS. */
/* The images counted inside archives and documents, for the headers and the log. */
typedef struct inside {
    const cmm_container *c;
    size_t n;          /* archives and documents */
    size_t images;     /* images counted inside them */
    size_t unreadable; /* those whose content could not be told */
    cmc_inside action; /* the most severe configured action that applies */
    const cmm_container *decider;
} inside;

/* Which of the configuration's actions applies to the message's containers. */
static void judge_inside(const cmc_config *c, const cmm_walk *w, inside *in)
{
    memset(in, 0, sizeof *in);
    in->c = w->containers;
    in->n = w->n_containers;
    for (size_t i = 0; i < w->n_containers; i++) {
        const cmm_count *k = &w->containers[i].count;
        cmc_inside a = k->kind == CMM_ZIP ? c->archives_with_images : c->documents_with_images;
        in->images += k->images;
        in->unreadable += (size_t)k->unreadable;
        /* One that cannot be read may hold images: the same rule applies. */
        if ((k->images || k->unreadable) && (!in->decider || a > in->action)) {
            in->decider = &w->containers[i];
            in->action = a;
        }
    }
}

/* "; container=2 name="photos.zip" kind=zip entries=4 images=3" per container. */
static void verdict_containers(hbuf *h, const inside *in)
{
    char text[200];
    for (size_t i = 0; i < in->n; i++) {
        const cmm_container *c = &in->c[i];
        hb_raw(h, ";", 1);
        h->col = FOLD_AT; /* each starts a line */
        hb_tok(h, "container=%s", c->part);
        if (c->filename) {
            clean_text(text, sizeof text, c->filename, 60);
            hb_tok(h, "name=\"%s\"", text);
        }
        hb_tok(h, "kind=%s", cmm_container_kind_name(c->count.kind));
        if (c->count.unreadable) {
            clean_text(text, sizeof text, c->count.why, 100);
            hb_tok(h, "state=unreadable reason=\"%s\"", text);
        } else if (c->count.kind == CMM_PDF) {
            hb_tok(h, "images=%zu", c->count.images);
        } else {
            hb_tok(h, "entries=%zu images=%zu", c->count.entries, c->count.images);
        }
    }
}

/* "; fingerprint=<sha256>; generation=N": names the exact policy that judged. */
static void hb_policy_id(hbuf *h, const runtime *rt)
{
    const char *fp = clipmod_engine_policy_fingerprint(rt->engine);
    hb_raw(h, ";", 1);
    h->col++;
    hb_tok(h, "fingerprint=%s;", fp && *fp ? fp : "none");
    hb_tok(h, "generation=%u", rt->generation);
}

static char *verdict_value(const char *state, const char *policy_action, const runtime *rt,
                           const image_out *io, size_t n, size_t n_images, size_t n_flagged,
                           size_t n_unscanned, const char *why, const inside *in)
{
    hbuf h = {0};
    char text[256];

    hb_tok(&h, "%s;", state);
    if (policy_action)
        hb_tok(&h, "action=%s;", policy_action);
    clean_text(text, sizeof text, clipmod_engine_policy_name(rt->engine), 120);
    hb_tok(&h, "policy=\"%s\";", text);
    hb_tok(&h, "images=%zu;", n_images);
    hb_tok(&h, "flagged=%zu;", n_flagged);
    hb_tok(&h, "unscanned=%zu", n_unscanned);
    hb_policy_id(&h, rt);
    if (in->n) {
        hb_raw(&h, ";", 1);
        h.col++;
        hb_tok(&h, "contained-images=%zu", in->images);
    }
    if (why) {
        clean_text(text, sizeof text, why, 160);
        hb_raw(&h, ";", 1);
        h.col++;
        hb_tok(&h, "reason=\"%s\"", text);
    }
    for (size_t i = 0; i < n; i++) {
        const image_out *o = &io[i];
        hb_raw(&h, ";", 1);
        h.col = FOLD_AT; /* each image starts a line */
        hb_tok(&h, "image=%s", o->im->part);
        if (o->im->filename) {
            clean_text(text, sizeof text, o->im->filename, 60);
            hb_tok(&h, "name=\"%s\"", text);
        }
        hb_tok(&h, "state=%s", o->empty ? "empty" : clipmod_state_name(o->vstate));
        if (o->reason) {
            hb_tok(&h, "reason=%s", o->reason);
            continue;
        }
        if (!o->r)
            continue;
        hb_tok(&h, "action=%s", clipmod_action_name(o->action));
        if (o->category)
            hb_tok(&h, "category=%s score=%.4f", o->category, o->score);
        /* Every category's score: "scores=a:0.1234, b:0.0456", foldable between. */
        size_t nc = clipmod_result_category_count(o->r);
        clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;
        for (size_t k = 0; k < nc; k++)
            if (!clipmod_result_category(o->r, k, &c))
                hb_tok(&h, "%s%s:%.4f%s", k ? "" : "scores=", c.id, c.score, k + 1 < nc ? "," : "");
    }
    verdict_containers(&h, in);
    if (h.nomem) {
        free(h.s);
        return NULL;
    }
    return h.s ? h.s : strdup("");
}

/*
 * Hand the images' verdict states and the configuration to cm_milter_decide()
 * (decisions.c, pure) and copy its answer into `out`. -1: out of memory.
 */
static int decide_what(runtime *rt, const cmm_walk *w, const image_out *io, const inside *in,
                       int failed, outcome *out, cm_decision_out *d)
{
    const cmc_config *c = rt->conf;
    cm_image_verdict *v = calloc(w->n_images ? w->n_images : 1, sizeof *v);
    size_t n = 0;
    if (!v)
        return -1;
    for (size_t i = 0; i < w->n_images; i++) {
        if (io[i].empty)
            continue;
        v[n].state = io[i].vstate;
        v[n].action = io[i].action;
        n++;
    }
    cm_message_facts f = {.images = v, .n_images = n, .failed = failed, .inside = in->action};
    cm_decide_policy p = {
        .action = c->action,
        .on_fail = c->on_fail,
        .on_fail_reply = &c->on_fail_reply,
        .reject_reply = clipmod_engine_smtp_reply(rt->engine, CLIPMOD_ACTION_REJECT),
        .quarantine_reply = clipmod_engine_smtp_reply(rt->engine, CLIPMOD_ACTION_QUARANTINE),
    };
    cm_milter_decide(&f, &p, d);
    free(v);
    out->what = d->what;
    out->reply = d->reply;
    return 0;
}

/*
 * Judge one message and say what to do. `rt` is the runtime the message started
 * with. Never returns "accept" for a message with an image that was not judged,
 * unless on-fail is accept-with-header (and then the headers say so).
 */
static int decide(runtime *rt, const unsigned char *msg, size_t len, const envelope *env,
                  outcome *out)
{
    const cmc_config *c = rt->conf;
    const char *policy = clipmod_engine_policy_name(rt->engine);
    cmm_limits lim = {.max_parts = c->limits.max_parts,
                      .max_depth = c->limits.max_depth,
                      .max_images = c->limits.max_images,
                      .max_image_bytes = c->limits.max_image_bytes};
    cmm_walk w = {0};
    image_out *io = NULL;
    clipmod_input *inputs = NULL;
    clipmod_result **results = NULL;
    char **labels = NULL;
    size_t n_in = 0, n_images = 0, n_flagged = 0, n_unscanned = 0;
    clipmod_action worst = CLIPMOD_ACTION_ALLOW;
    const image_out *decider = NULL, *first_unscanned = NULL;
    char why[256] = "";
    inside in;
    const char *skip = skip_reason(c, env);
    char from[128];
    int rc = -1;

    memset(out, 0, sizeof *out);
    clean_text(from, sizeof from, env->sender, 100);

    if (skip) {
        hbuf h = {0};
        char text[160];
        clean_text(text, sizeof text, policy, 120);
        hb_tok(&h, "skipped;");
        hb_tok(&h, "reason=\"%s\";", skip);
        hb_tok(&h, "policy=\"%s\"", text);
        hb_policy_id(&h, rt);
        out->what = CM_DO_ACCEPT;
        out->verdict = h.s;
        if (h.nomem ||
            (c->summary_header && asprintf(&out->summary, "skipped: %s, not scanned", skip) < 0)) {
            out->summary = NULL;
            goto out;
        }
        snprintf(out->log, sizeof out->log, "from=%s skipped (%s) fingerprint=%s generation=%u",
                 from, skip, clipmod_engine_policy_fingerprint(rt->engine), rt->generation);
        rc = 0;
        goto out;
    }

    if (env->over_limit) {
        snprintf(why, sizeof why, "message larger than %llu bytes",
                 (unsigned long long)c->limits.max_message_bytes);
    } else {
        if (cmm_walk_message(msg, len, &lim, &w))
            goto out;
        if (w.failed)
            snprintf(why, sizeof why, "%s", w.why);
    }
    judge_inside(c, &w, &in);

    if (w.n_images) {
        io = calloc(w.n_images, sizeof *io);
        inputs = calloc(w.n_images, sizeof *inputs);
        results = calloc(w.n_images, sizeof *results);
        labels = calloc(w.n_images, sizeof *labels);
        if (!io || !inputs || !results || !labels)
            goto out;
    }
    for (size_t i = 0; i < w.n_images; i++) {
        const cmm_image *im = &w.images[i];
        io[i].im = im;
        if (im->problem == CMM_EMPTY) {
            io[i].judged = io[i].empty = 1;
            continue;
        }
        n_images++;
        if (im->problem != CMM_OK) {
            io[i].judged = 1;
            io[i].vstate = CLIPMOD_STATE_UNSCANNED;
            io[i].reason = cmm_problem_name(im->problem);
            continue;
        }
        char label[160];
        image_label(im, label, sizeof label);
        if (!(labels[n_in] = strdup(label)))
            goto out;
        inputs[n_in].size = sizeof inputs[n_in];
        inputs[n_in].data = im->data;
        inputs[n_in].len = im->len;
        inputs[n_in].name = labels[n_in];
        n_in++;
    }

    /* One batched forward pass for every image of the message. */
    if (n_in && !*why) {
        if (slot_acquire(c->scan_wait_ms)) {
            snprintf(why, sizeof why, "timeout: no scanner free within %llu ms",
                     (unsigned long long)c->scan_wait_ms);
        } else {
            clipmod_error err = clipmod_scan_batch(rt->engine, inputs, n_in, results);
            slot_release();
            if (err) {
                memset(results, 0, n_in * sizeof *results);
                snprintf(why, sizeof why, "engine error: %s", clipmod_strerror(err));
            }
        }
    }
    for (size_t i = 0, k = 0; i < w.n_images && results && !*why; i++) {
        image_out *o = &io[i];
        if (o->judged)
            continue;
        o->r = results[k++];
        o->judged = 1;
        o->vstate = clipmod_result_state(o->r);
        if (o->vstate == CLIPMOD_STATE_UNSCANNED)
            o->reason = clipmod_reason_name(clipmod_result_reason(o->r));
        o->action = clipmod_result_action(o->r);
        if (clipmod_result_state(o->r) != CLIPMOD_STATE_UNSCANNED)
            top_category(o);
    }
    for (size_t i = 0; i < w.n_images; i++) {
        image_out *o = &io[i];
        if (!o->judged) {
            /* Never given to the engine: the message failed as a whole (why says how). */
            o->judged = 1;
            o->vstate = CLIPMOD_STATE_UNSCANNED;
            o->reason = "not-scanned";
        }
        if (o->empty)
            continue;
        if (o->vstate == CLIPMOD_STATE_UNSCANNED) {
            n_unscanned++;
            if (!first_unscanned)
                first_unscanned = o;
        } else if (o->vstate == CLIPMOD_STATE_FLAGGED) {
            n_flagged++;
            if (!decider || o->action > worst) {
                worst = o->action;
                decider = o;
            }
        }
    }
    if (!*why && first_unscanned) {
        char label[160];
        image_label(first_unscanned->im, label, sizeof label);
        snprintf(why, sizeof why, "%zu image%s not scanned (%s: %s)", n_unscanned,
                 n_unscanned == 1 ? "" : "s", label, first_unscanned->reason);
    }

    cm_decision_out d;
    if (decide_what(rt, &w, io, &in, *why != 0, out, &d))
        goto out;
    const char *state = n_flagged ? "flagged" : *why ? "unscanned" : "clean";
    char detail[256] = "";
    if (decider) {
        char label[160];
        image_label(decider->im, label, sizeof label);
        snprintf(detail, sizeof detail, "%s: %s %.3f >= %.3f", label, decider->category,
                 decider->score, decider->threshold);
    }
    if (out->what == CM_DO_QUARANTINE && d.for_inside) {
        char name[80];
        clean_text(name, sizeof name, in.decider->filename ? in.decider->filename : "", 60);
        snprintf(out->quarantine, sizeof out->quarantine,
                 "clipmod: %s %s: images inside, not scanned", in.decider->part, name);
    } else if (out->what == CM_DO_QUARANTINE) {
        snprintf(out->quarantine, sizeof out->quarantine, "clipmod: %s", detail);
    }

    if (out->what == CM_DO_ACCEPT || out->what == CM_DO_QUARANTINE) {
        const char *pa = n_flagged ? clipmod_action_name(worst) : *why ? NULL : "allow";
        if (!(out->verdict = verdict_value(state, pa, rt, io, w.n_images, n_images, n_flagged,
                                           n_unscanned, *why ? why : NULL, &in)))
            goto out;
        if (c->summary_header) {
            int n;
            if (n_flagged)
                n = asprintf(&out->summary, "flagged (%s): %s; %zu of %zu image%s flagged%s",
                             clipmod_action_name(worst), detail, n_flagged, n_images,
                             n_images == 1 ? "" : "s",
                             out->what == CM_DO_QUARANTINE ? "; held for review" : "");
            else if (*why)
                n = asprintf(&out->summary, "unscanned: %s; delivered per on-fail", why);
            else if (n_images)
                n = asprintf(&out->summary, "clean: %zu image%s scanned, none flagged", n_images,
                             n_images == 1 ? "" : "s");
            else
                n = asprintf(&out->summary, "clean: no images");
            if (n < 0) {
                out->summary = NULL;
                goto out;
            }
            if (in.images || in.unreadable) {
                char *longer = NULL;
                if (asprintf(&longer,
                             "%s; %zu image%s inside %zu archive%s or document%s, "
                             "not scanned%s%s",
                             out->summary, in.images, in.images == 1 ? "" : "s", in.n,
                             in.n == 1 ? "" : "s", in.n == 1 ? "" : "s",
                             in.unreadable ? ", some unreadable" : "",
                             out->what == CM_DO_QUARANTINE && !n_flagged ? "; held for review"
                                                                         : "") < 0)
                    goto out;
                free(out->summary);
                out->summary = longer;
            }
            /* The summary is one line: strip what the sender controls. */
            for (char *p = out->summary; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                    *p = '_';
        }
    }
    char contained[96] = "";
    if (in.n)
        snprintf(contained, sizeof contained, " containers=%zu contained-images=%zu%s", in.n,
                 in.images, in.unreadable ? " (some unreadable)" : "");
    snprintf(out->log, sizeof out->log,
             "from=%s images=%zu flagged=%zu unscanned=%zu%s verdict=%s%s%s decision=%s "
             "policy=\"%s\" fingerprint=%s generation=%u%s%s%s%s%s",
             from, n_images, n_flagged, n_unscanned, contained, state, n_flagged ? " action=" : "",
             n_flagged ? clipmod_action_name(worst) : "", cm_decision_name(out->what), policy,
             clipmod_engine_policy_fingerprint(rt->engine), rt->generation, *detail ? " (" : "",
             detail, *detail ? ")" : "", *why ? " reason=" : "", why);
    rc = 0;
out:
    for (size_t i = 0; results && i < n_in; i++)
        clipmod_result_free(results[i]);
    for (size_t i = 0; labels && i < n_in; i++)
        free(labels[i]);
    free(labels);
    free(results);
    free(inputs);
    free(io);
    cmm_walk_free(&w);
    if (rc)
        outcome_free(out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* libmilter callbacks                                                      */
/* ------------------------------------------------------------------------ */

typedef struct conn {
    runtime *rt; /* taken at MAIL FROM, released at the message's end */
    char qid[64];
    char *sender;
    char *auth;
    size_t n_rcpt, n_rcpt_listed, n_rcpt_in_domains;
    unsigned char *buf;
    size_t len, cap;
    uint64_t size; /* bytes seen, kept or not */
    int over_limit;
    int sender_skipped;                   /* skipped for its sender or AUTH: the body is not kept */
    int verdict_headers, summary_headers; /* copies already present: forged */
} conn;

static void message_end(conn *m)
{
    if (m->rt) {
        rt_release(m->rt);
        m->rt = NULL;
        message_leave();
    }
    free(m->sender);
    free(m->auth);
    free(m->buf);
    m->sender = m->auth = NULL;
    m->buf = NULL;
    m->len = m->cap = 0;
    m->size = 0;
    m->over_limit = 0;
    m->sender_skipped = 0;
    m->n_rcpt = m->n_rcpt_listed = m->n_rcpt_in_domains = 0;
    m->verdict_headers = m->summary_headers = 0;
    m->qid[0] = 0;
}

static const char *qid_of(conn *m, SMFICTX *ctx)
{
    const char *q = smfi_getsymval(ctx, "i");
    if (q && *q)
        snprintf(m->qid, sizeof m->qid, "%s", q);
    return m->qid[0] ? m->qid : "NOQUEUE";
}

/* Keep `n` more bytes of the message, or stop keeping past the limit. */
static int keep(conn *m, const void *p, size_t n)
{
    m->size += n;
    if (m->over_limit || m->sender_skipped)
        return 0;
    if (m->size > m->rt->conf->limits.max_message_bytes) {
        /* Judged unscanned at the end; the bytes so far are of no use. */
        m->over_limit = 1;
        free(m->buf);
        m->buf = NULL;
        m->len = m->cap = 0;
        return 0;
    }
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->len + n)
            cap *= 2;
        unsigned char *grown = realloc(m->buf, cap);
        if (!grown)
            return -1;
        m->buf = grown;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, p, n);
    m->len += n;
    return 0;
}

static sfsistat tempfail_nomem(SMFICTX *ctx, conn *m)
{
    logmsg(LOG_ERR, m ? qid_of(m, ctx) : NULL, "out of memory: message deferred");
    if (m) /* smfi_setreply() is not allowed in the connect callback */
        smfi_setreply(ctx, "451", "4.3.0", "Temporary local problem, try again later");
    return SMFIS_TEMPFAIL;
}

static sfsistat cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
    conn *m = calloc(1, sizeof *m);
    if (!m)
        return tempfail_nomem(ctx, NULL);
    smfi_setpriv(ctx, m);
    return SMFIS_CONTINUE;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
    conn *m = smfi_getpriv(ctx);
    const char *auth;
    if (!m)
        return tempfail_nomem(ctx, NULL);
    message_end(m);
    if (message_enter()) {
        smfi_setreply(ctx, "451", "4.3.2", "Content filter shutting down, try again later");
        return SMFIS_TEMPFAIL;
    }
    if (!(m->rt = rt_acquire())) {
        /* Cannot happen once started; never accept unjudged mail if it does. */
        message_leave();
        smfi_setreply(ctx, "451", "4.3.0", "Content filter not ready, try again later");
        return SMFIS_TEMPFAIL;
    }
    auth = smfi_getsymval(ctx, "{auth_authen}");
    if (!(m->sender = strdup(argv && argv[0] ? argv[0] : "")) ||
        (auth && !(m->auth = strdup(auth))))
        return tempfail_nomem(ctx, m);
    qid_of(m, ctx);
    /* Known now, so a skipped sender's (often large, outbound) mail is not kept. */
    {
        const envelope env = {.sender = m->sender, .auth = m->auth};
        m->sender_skipped = skip_reason(m->rt->conf, &env) != NULL;
    }
    return SMFIS_CONTINUE;
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
    conn *m = smfi_getpriv(ctx);
    const char *rcpt = argv && argv[0] ? argv[0] : "";
    if (!m || !m->rt)
        return SMFIS_CONTINUE;
    m->n_rcpt++;
    m->n_rcpt_listed += (size_t)cmc_match_address(&m->rt->conf->skip_recipients, rcpt);
    m->n_rcpt_in_domains += (size_t)cmc_match_domain(&m->rt->conf->skip_domains, rcpt);
    return SMFIS_CONTINUE;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
    conn *m = smfi_getpriv(ctx);
    const cmc_config *c;
    if (!m || !m->rt)
        return SMFIS_CONTINUE;
    c = m->rt->conf;
    if (!strcasecmp(name, c->verdict_header))
        m->verdict_headers++;
    if (c->summary_header && !strcasecmp(name, c->summary_header))
        m->summary_headers++;
    if (keep(m, name, strlen(name)) || keep(m, ": ", 2) || keep(m, value, strlen(value)) ||
        keep(m, "\n", 1))
        return tempfail_nomem(ctx, m);
    return SMFIS_CONTINUE;
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
    conn *m = smfi_getpriv(ctx);
    if (m && m->rt && keep(m, "\n", 1))
        return tempfail_nomem(ctx, m);
    return SMFIS_CONTINUE;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    conn *m = smfi_getpriv(ctx);
    if (m && m->rt && keep(m, chunk, len))
        return tempfail_nomem(ctx, m);
    return SMFIS_CONTINUE;
}

/* Remove copies of our headers the message arrived with: only we may say "clean". */
static void remove_forged(SMFICTX *ctx, conn *m, const char *qid)
{
    const cmc_config *c = m->rt->conf;
    if (m->verdict_headers || m->summary_headers)
        logmsg(LOG_NOTICE, qid, "removing %d %s and %d %s header(s) the message came with",
               m->verdict_headers, c->verdict_header, m->summary_headers,
               c->summary_header ? c->summary_header : "summary");
    /* Highest index first, so that each index still means the original header. */
    for (int i = m->verdict_headers; i >= 1; i--)
        smfi_chgheader(ctx, c->verdict_header, i, NULL);
    for (int i = m->summary_headers; i >= 1 && c->summary_header; i--)
        smfi_chgheader(ctx, c->summary_header, i, NULL);
}

static sfsistat reply(SMFICTX *ctx, const char *qid, const cmc_reply *r, sfsistat status)
{
    if (smfi_setreply(ctx, (char *)r->rcode, r->xcode[0] ? (char *)r->xcode : NULL,
                      (char *)r->text) != MI_SUCCESS)
        logmsg(LOG_WARNING, qid, "the MTA refused the reply %s %s %s", r->rcode, r->xcode, r->text);
    return status;
}

static sfsistat cb_eom(SMFICTX *ctx)
{
    conn *m = smfi_getpriv(ctx);
    outcome o;
    envelope env;
    const char *qid;
    sfsistat status = SMFIS_CONTINUE;

    if (!m || !m->rt)
        return tempfail_nomem(ctx, m);
    qid = qid_of(m, ctx);
    memset(&env, 0, sizeof env);
    env.qid = qid;
    env.sender = m->sender;
    env.auth = m->auth;
    env.n_rcpt = m->n_rcpt;
    env.n_rcpt_listed = m->n_rcpt_listed;
    env.n_rcpt_in_domains = m->n_rcpt_in_domains;
    env.over_limit = m->over_limit;
    env.size = m->size;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (decide(m->rt, m->buf, m->len, &env, &o)) {
        status = tempfail_nomem(ctx, m);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    logmsg(LOG_INFO, qid, "%s size=%llu ms=%.0f", o.log, (unsigned long long)m->size,
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    switch (o.what) {
    case CM_DO_REJECT:
        status = reply(ctx, qid, &o.reply, SMFIS_REJECT);
        break;
    case CM_DO_TEMPFAIL:
        status = reply(ctx, qid, &o.reply, SMFIS_TEMPFAIL);
        break;
    case CM_DO_DISCARD:
        status = SMFIS_DISCARD;
        break;
    case CM_DO_QUARANTINE:
    case CM_DO_ACCEPT:
        if (o.what == CM_DO_QUARANTINE && smfi_quarantine(ctx, o.quarantine) != MI_SUCCESS) {
            /* Delivering what should be held is worse than asking to retry. */
            cmc_reply held;
            logmsg(LOG_ERR, qid, "the MTA refused to quarantine: message deferred");
            cmc_parse_reply("451 4.7.1 Message could not be held for review, try again later",
                            &held);
            status = reply(ctx, qid, &held, SMFIS_TEMPFAIL);
            break;
        }
        /* A quarantined message keeps its headers, for whoever releases it. */
        remove_forged(ctx, m, qid);
        if (o.verdict && smfi_addheader(ctx, m->rt->conf->verdict_header, o.verdict) != MI_SUCCESS)
            logmsg(LOG_WARNING, qid, "could not add the %s header", m->rt->conf->verdict_header);
        if (o.summary && m->rt->conf->summary_header &&
            smfi_addheader(ctx, m->rt->conf->summary_header, o.summary) != MI_SUCCESS)
            logmsg(LOG_WARNING, qid, "could not add the %s header", m->rt->conf->summary_header);
        status = SMFIS_ACCEPT;
        break;
    }
    outcome_free(&o);
out:
    message_end(m);
    return status;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
    conn *m = smfi_getpriv(ctx);
    if (m)
        message_end(m);
    return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
    conn *m = smfi_getpriv(ctx);
    if (m) {
        message_end(m);
        free(m);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

/*
 * Ask for what we use: header changes and quarantine, the macros {i} and
 * {auth_authen}; no HELO, DATA or unknown-command callbacks.
 */
static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    const unsigned long need = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;
    if ((f0 & need) != need) {
        logmsg(LOG_ERR, NULL, "the MTA cannot add or change headers or quarantine");
        return SMFIS_REJECT;
    }
    *pf0 = need;
    *pf1 = f1 & (SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA);
    *pf2 = 0;
    *pf3 = 0;
    if (f0 & SMFIF_SETSYMLIST) {
        *pf0 |= SMFIF_SETSYMLIST;
        smfi_setsymlist(ctx, SMFIM_ENVFROM, "i {auth_type} {auth_authen}");
        smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
        smfi_setsymlist(ctx, SMFIM_EOM, "i");
    }
    return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
    .xxfi_name = PROG,
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
    .xxfi_connect = cb_connect,
    .xxfi_envfrom = cb_envfrom,
    .xxfi_envrcpt = cb_envrcpt,
    .xxfi_header = cb_header,
    .xxfi_eoh = cb_eoh,
    .xxfi_body = cb_body,
    .xxfi_eom = cb_eom,
    .xxfi_abort = cb_abort,
    .xxfi_close = cb_close,
    .xxfi_negotiate = cb_negotiate,
};

/* ------------------------------------------------------------------------ */
/* Process: signals, reload, main                                           */
/* ------------------------------------------------------------------------ */

static sem_t wake;
static volatile sig_atomic_t want_reload, want_stop, milter_done;
static unsigned generation;

static void on_signal(int sig)
{
    if (sig == SIGHUP || sig == SIGUSR2)
        want_reload = 1;
    else
        want_stop = 1;
    sem_post(&wake); /* async-signal-safe */
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int workers_of(const cmc_config *c)
{
    return c->workers ? c->workers : online_cpus();
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* SIGHUP: read the configuration again, compile a new engine, swap it in. */
static void reload(void)
{
    cmc_config *c;
    runtime *old, *rt;

    logmsg(LOG_NOTICE, NULL, "reloading %s", config_path);
    if (!(c = load_config(config_path))) {
        logmsg(LOG_ERR, NULL, "reload failed: keeping the running policy");
        return;
    }
    old = rt_acquire();
    if (!same(c->model, model_dir) || !same(c->merges, model_merges))
        logmsg(LOG_WARNING, NULL, "model changes take a restart; keeping the model from %s",
               model_dir);
    if (old && (!same(c->socket, old->conf->socket) || c->log_syslog != log_to_syslog))
        logmsg(LOG_WARNING, NULL, "socket and log changes take a restart");
    rt_release(old);
    if (!(rt = runtime_new(c, ++generation))) {
        logmsg(LOG_ERR, NULL, "reload failed: keeping the running policy");
        return;
    }
    atomic_store(&log_level, rt->conf->log_level);
    slots_resize(workers_of(rt->conf));
    logmsg(LOG_NOTICE, NULL,
           "policy \"%s\" from %s is active (generation %u, %d workers) fingerprint=%s "
           "generation=%u",
           clipmod_engine_policy_name(rt->engine), rt->conf->policy, rt->generation,
           workers_of(rt->conf), clipmod_engine_policy_fingerprint(rt->engine), rt->generation);
    rt_install(rt);
}

static void *milter_thread(void *arg)
{
    int rc = smfi_main();
    (void)arg;
    if (rc != MI_SUCCESS)
        logmsg(LOG_ERR, NULL, "libmilter stopped with an error");
    milter_done = 1;
    sem_post(&wake);
    return NULL;
}

/*
 * --message FILE: what the milter would do with the message in FILE ("-": stdin),
 * printed instead of told to an MTA. For operators and tests.
 */
static int try_message(const char *path, const char *sender, const char *auth)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0, n;
    runtime *rt = rt_acquire();
    envelope env = {.qid = "TEST", .sender = sender, .auth = auth, .n_rcpt = 1};
    outcome o;
    int rc = 2;

    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        goto out;
    }
    for (;;) {
        if (len == cap) {
            unsigned char *grown = realloc(buf, cap = cap ? cap * 2 : 65536);
            if (!grown)
                goto nomem;
            buf = grown;
        }
        if (!(n = fread(buf + len, 1, cap - len, f)))
            break;
        len += n;
    }
    env.size = len;
    env.over_limit = len > rt->conf->limits.max_message_bytes;
    if (decide(rt, buf, len, &env, &o))
        goto nomem;
    printf("decision: %s", cm_decision_name(o.what));
    if (o.what == CM_DO_REJECT || o.what == CM_DO_TEMPFAIL)
        printf(" %s%s%s %s", o.reply.rcode, o.reply.xcode[0] ? " " : "", o.reply.xcode,
               o.reply.text);
    if (o.what == CM_DO_QUARANTINE)
        printf(" (%s)", o.quarantine);
    printf("\n");
    if (o.verdict)
        printf("%s: %s\n", rt->conf->verdict_header, o.verdict);
    if (o.summary && rt->conf->summary_header)
        printf("%s: %s\n", rt->conf->summary_header, o.summary);
    printf("log: %s\n", o.log);
    outcome_free(&o);
    rc = 0;
    goto out;
nomem:
    fprintf(stderr, PROG ": out of memory\n");
out:
    if (f && f != stdin)
        fclose(f);
    free(buf);
    rt_release(rt);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: " PROG " [-c FILE] [--check | --message FILE.eml [--from ADDR]]\n"
               "Scan the images of mail with a clipmod policy, as a milter (Postfix, Sendmail).\n"
               "\n"
               "  -c, --config FILE   configuration (default " DEFAULT_CONFIG ")\n"
               "  -t, --check         load the configuration, model and policy, then exit\n"
               "      --message FILE  print what would be done with the message in FILE\n"
               "                      (- for stdin) and the headers that would be added\n"
               "      --from ADDR     the envelope sender for --message\n"
               "      --auth USER     --message as if the client logged in as USER (SMTP AUTH)\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          show this help\n"
               "\n"
               "Runs in the foreground. SIGHUP (or SIGUSR2) reloads the configuration and the\n"
               "policy without dropping connections; SIGTERM stops after messages in flight.\n"
               "See clipmod-milter(8).\n");
}

int main(int argc, char **argv)
{
    const char *message = NULL, *from = "<>", *auth = NULL;
    int check = 0, rc = 1;
    cmc_config *c = NULL;
    runtime *rt = NULL;
    pthread_t tid;
    int have_thread = 0;
    sigset_t set;
    char err[CLIPMOD_ERROR_SIZE];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) {
            config_path = argv[++i];
        } else if (!strcmp(a, "-t") || !strcmp(a, "--check")) {
            check = 1;
        } else if (!strcmp(a, "--message") && i + 1 < argc) {
            message = argv[++i];
        } else if (!strcmp(a, "--from") && i + 1 < argc) {
            from = argv[++i];
        } else if (!strcmp(a, "--auth") && i + 1 < argc) {
            auth = argv[++i];
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf(PROG " (clipmod %s)\n", clipmod_version());
            return 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, PROG ": unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    /*
     * Block the signals we handle before any thread exists, so every thread the
     * libraries start inherits the mask. libmilter's own signal thread waits for
     * SIGHUP/SIGTERM/SIGINT and would stop the filter on SIGHUP; this thread, the
     * main one, unblocks them below with handlers, and Linux gives a process signal
     * to the main thread when it accepts it. SIGUSR2 reloads too, with no such race.
     */
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sem_init(&wake, 0, 0);
    slots_init();
    {
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&busy_cond, &a);
        pthread_condattr_destroy(&a);
    }

    if (!(c = load_config(config_path)))
        return 1;
    log_to_syslog = c->log_syslog && !check && !message;
    /* --message prints its outcome; the start-up notices would only be noise. */
    atomic_store(&log_level, message && c->log_level > LOG_WARNING ? LOG_WARNING : c->log_level);
    if (log_to_syslog)
        openlog(PROG, LOG_PID, c->log_facility);

    clipmod_error e = clipmod_init(argv[0]);
    if (e) {
        logmsg(LOG_ERR, NULL, "clipmod: %s", clipmod_strerror(e));
        cmc_free(c);
        return 1;
    }
    cmm_init();
    clipmod_set_threads(c->blas_threads);
    if ((e = clipmod_model_load(c->model, c->merges, &model, err))) {
        logmsg(LOG_ERR, NULL, "model %s: %s", c->model, err);
        cmc_free(c);
        goto out;
    }
    /* Honesty, as clipmod and clipmodd: an emoji model must never pass for moderation. */
    if (clipmod_model_is_demo(model))
        logmsg(LOG_WARNING, NULL,
               "this is clipmod's demo model, trained on emoji for demos and tests; verdicts are "
               "not real moderation (model %s)",
               c->model);
    if (!(model_dir = strdup(c->model)) || (c->merges && !(model_merges = strdup(c->merges)))) {
        cmc_free(c);
        goto out;
    }
    slots_resize(workers_of(c));
    if (!(rt = runtime_new(c, ++generation)))
        goto out;
    rt_install(rt);
    logmsg(LOG_NOTICE, NULL,
           "policy \"%s\" from %s, model %s (%s), %d workers fingerprint=%s generation=%u",
           clipmod_engine_policy_name(rt->engine), rt->conf->policy, model_dir,
           clipmod_model_describe(model), workers_of(rt->conf),
           clipmod_engine_policy_fingerprint(rt->engine), rt->generation);
    if (check) {
        printf(PROG ": %s: OK\n", config_path);
        rc = 0;
        goto out;
    }
    if (message) {
        rc = try_message(message, from, auth);
        goto out;
    }

    if (smfi_register(filter) != MI_SUCCESS || smfi_setconn(rt->conf->socket) != MI_SUCCESS) {
        logmsg(LOG_ERR, NULL, "libmilter refused the filter or the socket %s", rt->conf->socket);
        goto out;
    }
    if (smfi_opensocket(1) != MI_SUCCESS) {
        logmsg(LOG_ERR, NULL, "cannot listen on %s", rt->conf->socket);
        goto out;
    }
    if (rt->conf->socket_mode >= 0 &&
        (!strncmp(rt->conf->socket, "unix:", 5) || !strncmp(rt->conf->socket, "local:", 6))) {
        const char *p = strchr(rt->conf->socket, ':') + 1;
        if (chmod(p, (mode_t)rt->conf->socket_mode))
            logmsg(LOG_WARNING, NULL, "chmod %s: %s", p, strerror(errno));
    }
    if (pthread_create(&tid, NULL, milter_thread, NULL)) {
        logmsg(LOG_ERR, NULL, "cannot start the milter thread");
        goto out;
    }
    have_thread = 1;
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGUSR2, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    logmsg(LOG_NOTICE, NULL, "listening on %s", rt->conf->socket);

    while (!milter_done) {
        if (sem_wait(&wake) && errno != EINTR)
            break;
        if (want_reload) {
            want_reload = 0;
            reload();
        }
        if (want_stop) {
            /* Messages in flight end first (the MTA gets our answer, not a broken
             * connection); new ones are deferred meanwhile. Then libmilter stops. */
            runtime *cur = rt_acquire();
            uint64_t ms = cur ? cur->conf->drain_timeout_ms : 0;
            int left;
            rt_release(cur);
            want_stop = 0;
            logmsg(LOG_NOTICE, NULL, "stopping: new messages are deferred");
            if ((left = drain(ms)))
                logmsg(LOG_WARNING, NULL,
                       "%d message(s) still in flight after %llu ms: the MTA applies its "
                       "milter_default_action to them",
                       left, (unsigned long long)ms);
            smfi_stop();
        }
    }
    pthread_join(tid, NULL);
    have_thread = 0;
    logmsg(LOG_NOTICE, NULL, "stopped");
    rc = 0;
out:
    if (have_thread) {
        smfi_stop();
        pthread_join(tid, NULL);
    }
    if (!drain(0)) {
        /* Only when nothing scans any more: else the engine stays for the threads. */
        rt_install(NULL);
        clipmod_model_free(model);
        cmm_shutdown();
        clipmod_shutdown();
    }
    free(model_dir);
    free(model_merges);
    if (log_to_syslog)
        closelog();
    return rc;
}
