/*
 * callbacks.c - clipmod-milter's libmilter callbacks (xxfi_*) and each message's state.
 *
 * Owns what happens between the MTA and the filter for one SMTP connection: the
 * per-connection state (the runtime taken at MAIL FROM and held to the message's
 * end, the envelope, the message kept in memory under max-message-bytes, copies of
 * our headers the message came with), what the MTA is told at end of message
 * (headers added, forged ones removed, reply, quarantine, discard), and the count
 * of messages in flight that lets SIGTERM finish them before libmilter stops.
 * libmilter runs each connection's callbacks in a thread of its own; the state of
 * one connection is only touched by that thread. Judging the message is scan.c's.
 */
#include <errno.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "dynbuf.h"
#include "milter.h"

/* ------------------------------------------------------------------------ */
/* Messages in flight                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Messages between MAIL FROM and their end. On SIGTERM, `stopping` turns new ones
 * away (4xx) while these finish; only then is libmilter stopped, whose worker pool
 * frees the contexts of sessions it still has when it stops.
 */
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t busy_cond;
static int messages_in_flight, stopping;

void cm_messages_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&busy_cond, &a);
    pthread_condattr_destroy(&a);
}

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

int cm_messages_drain(uint64_t ms)
{
    struct timespec deadline = cm_deadline(CLOCK_MONOTONIC, ms);
    int left;
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
/* Per-connection state                                                     */
/* ------------------------------------------------------------------------ */

typedef struct conn {
    cm_runtime held; /* taken at MAIL FROM, released at the message's end */
    cm_runtime *rt;  /* &held while a message is open, else NULL */
    char qid[64];
    char *sender;
    char *auth;
    size_t n_rcpt, n_rcpt_listed, n_rcpt_in_domains;
    cm_dbuf buf;   /* the message as the MTA sent it, capped at max-message-bytes */
    uint64_t size; /* bytes seen, kept or not */
    int over_limit;
    int sender_skipped;                   /* skipped for its sender or AUTH: the body is not kept */
    int verdict_headers, summary_headers; /* copies already present: forged */
} conn;

static void message_end(conn *m)
{
    if (m->rt) {
        cm_rt_release(&m->held);
        m->rt = NULL;
        message_leave();
    }
    free(m->sender);
    free(m->auth);
    cm_dbuf_free(&m->buf);
    m->sender = m->auth = NULL;
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
    int rc;
    m->size += n;
    if (m->over_limit || m->sender_skipped)
        return 0;
    rc = cm_dbuf_addn(&m->buf, p, n);
    if (rc == CM_DBUF_E_TOOBIG) {
        /* Judged unscanned at the end; the bytes so far are of no use. */
        m->over_limit = 1;
        cm_dbuf_free(&m->buf);
        return 0;
    }
    return rc ? -1 : 0;
}

static sfsistat tempfail_nomem(SMFICTX *ctx, conn *m)
{
    cm_log(CM_LOG_ERROR, "out of memory: message deferred",
           CM_LF_S("qid", m ? qid_of(m, ctx) : NULL), CM_LF_END);
    if (m) /* smfi_setreply() is not allowed in the connect callback */
        smfi_setreply(ctx, "451", "4.3.0", "Temporary local problem, try again later");
    return SMFIS_TEMPFAIL;
}

/* ------------------------------------------------------------------------ */
/* Envelope and content                                                     */
/* ------------------------------------------------------------------------ */

static sfsistat cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
    conn *m = calloc(1, sizeof *m);
    (void)host;
    (void)addr;
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
    if (cm_rt_acquire(&m->held)) {
        /* Cannot happen once started; never accept unjudged mail if it does. */
        message_leave();
        smfi_setreply(ctx, "451", "4.3.0", "Content filter not ready, try again later");
        return SMFIS_TEMPFAIL;
    }
    m->rt = &m->held;
    cm_dbuf_init(&m->buf, m->rt->conf->limits.max_message_bytes);
    auth = smfi_getsymval(ctx, "{auth_authen}");
    m->sender = strdup(argv && argv[0] ? argv[0] : "");
    if (auth)
        m->auth = strdup(auth);
    if (!m->sender || (auth && !m->auth))
        return tempfail_nomem(ctx, m);
    qid_of(m, ctx);
    /* Known now, so a skipped sender's (often large, outbound) mail is not kept. */
    const cm_envelope env = {.sender = m->sender, .auth = m->auth};
    m->sender_skipped = cm_skip_reason(m->rt->conf, &env) != NULL;
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

/* ------------------------------------------------------------------------ */
/* End of message: tell the MTA                                             */
/* ------------------------------------------------------------------------ */

/* Remove copies of our headers the message arrived with: only we may say "clean". */
static void remove_forged(SMFICTX *ctx, conn *m, const char *qid)
{
    const cmc_config *c = m->rt->conf;
    if (m->verdict_headers || m->summary_headers)
        cm_log(CM_LOG_INFO, "removing verdict headers the message came with", CM_LF_S("qid", qid),
               CM_LF_S("header", c->verdict_header), CM_LF_I("count", m->verdict_headers),
               CM_LF_S("summary_header", c->summary_header),
               CM_LF_I("summary_count", m->summary_headers), CM_LF_END);
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
        cm_log(CM_LOG_WARN, "the MTA refused the reply", CM_LF_S("qid", qid),
               CM_LF_S("rcode", r->rcode), CM_LF_S("xcode", r->xcode), CM_LF_S("text", r->text),
               CM_LF_END);
    return status;
}

/* Deliver (or hold) with our headers in place of any the message came with. */
static sfsistat deliver(SMFICTX *ctx, conn *m, const char *qid, cm_outcome *o)
{
    const cmc_config *c = m->rt->conf;
    if (o->what == CM_DO_QUARANTINE && smfi_quarantine(ctx, o->quarantine) != MI_SUCCESS) {
        /* Delivering what should be held is worse than asking to retry. */
        cmc_reply held;
        cm_log(CM_LOG_ERROR, "the MTA refused to quarantine: message deferred", CM_LF_S("qid", qid),
               CM_LF_END);
        cmc_parse_reply("451 4.7.1 Message could not be held for review, try again later", &held);
        return reply(ctx, qid, &held, SMFIS_TEMPFAIL);
    }
    /* A quarantined message keeps its headers, for whoever releases it. */
    remove_forged(ctx, m, qid);
    if (o->verdict && smfi_addheader(ctx, c->verdict_header, o->verdict) != MI_SUCCESS)
        cm_log(CM_LOG_WARN, "could not add a header", CM_LF_S("qid", qid),
               CM_LF_S("header", c->verdict_header), CM_LF_END);
    if (o->summary && c->summary_header &&
        smfi_addheader(ctx, c->summary_header, o->summary) != MI_SUCCESS)
        cm_log(CM_LOG_WARN, "could not add a header", CM_LF_S("qid", qid),
               CM_LF_S("header", c->summary_header), CM_LF_END);
    return SMFIS_ACCEPT;
}

static sfsistat cb_eom(SMFICTX *ctx)
{
    conn *m = smfi_getpriv(ctx);
    cm_outcome o;
    const char *qid;
    sfsistat status = SMFIS_CONTINUE;
    double t0;

    if (!m || !m->rt)
        return tempfail_nomem(ctx, m);
    qid = qid_of(m, ctx);
    const cm_envelope env = {.qid = qid,
                             .sender = m->sender,
                             .auth = m->auth,
                             .n_rcpt = m->n_rcpt,
                             .n_rcpt_listed = m->n_rcpt_listed,
                             .n_rcpt_in_domains = m->n_rcpt_in_domains,
                             .over_limit = m->over_limit,
                             .size = m->size,
                             .run_hooks = 1};
    t0 = cm_now();
    if (cm_judge_message(m->rt, (const unsigned char *)cm_dbuf_ptr(&m->buf), cm_dbuf_len(&m->buf),
                         &env, &o)) {
        status = tempfail_nomem(ctx, m);
        message_end(m);
        return status;
    }
    cm_outcome_log(qid, &o, m->size, (cm_now() - t0) * 1e3);
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
        status = deliver(ctx, m, qid, &o);
        break;
    }
    cm_outcome_free(&o);
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
    (void)f2;
    (void)f3;
    if ((f0 & need) != need) {
        cm_log(CM_LOG_ERROR, "the MTA cannot add or change headers or quarantine", CM_LF_END);
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
    .xxfi_name = CM_MILTER_PROG,
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

int cm_callbacks_register(void)
{
    return smfi_register(filter) == MI_SUCCESS ? 0 : -1;
}
