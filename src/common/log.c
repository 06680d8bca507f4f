/*
 * log.c - the structured logger (see log.h), grown from src/daemon/log.c.
 *
 * A line is capped at 16 KiB (CM_LOG_LINE_MAX): a hostile value is cut rather than
 * letting one request grow the log without bound; a field that does not fit is
 * dropped whole, never half-written, so the line stays well-formed.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "clock.h"
#include "dynbuf.h"

#define CM_LOG_LINE_MAX (16 * 1024)

/* plain: "IDENT: warning: message (key=value ...)", for a command-line tool's terminal. */
enum { FMT_LOGFMT, FMT_JSON, FMT_PLAIN };

static int log_format = FMT_LOGFMT;
static int log_syslog;
static int log_min = CM_LOG_INFO;
static char log_ident[64] = "clipmod";
static char ctx_policy[80];
static long long ctx_generation;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static const struct {
    const char *name;
    int value;
} facilities[] = {{"daemon", LOG_DAEMON}, {"mail", LOG_MAIL},     {"user", LOG_USER},
                  {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
                  {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
                  {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};

static int parse_level(const char *level)
{
    if (!level)
        return CM_LOG_INFO;
    for (int i = 0; i < 4; i++)
        if (!strcmp(level, level_names[i]))
            return i;
    return -1;
}

static int parse_facility(const char *f)
{
    if (!f)
        return LOG_DAEMON;
    for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++)
        if (!strcmp(f, facilities[i].name))
            return facilities[i].value;
    return -1;
}

int cm_log_setup(const cm_log_opts *o, char *err, size_t errlen)
{
    int fmt, sys, min, fac;

    if (!o->format || !strcmp(o->format, "logfmt")) {
        fmt = FMT_LOGFMT;
    } else if (!strcmp(o->format, "json")) {
        fmt = FMT_JSON;
    } else if (!strcmp(o->format, "plain")) {
        fmt = FMT_PLAIN;
    } else {
        snprintf(err, errlen, "log format must be logfmt or json, not '%s'", o->format);
        return -1;
    }
    if (!o->target || !strcmp(o->target, "stderr")) {
        sys = 0;
    } else if (!strcmp(o->target, "syslog")) {
        sys = 1;
    } else {
        snprintf(err, errlen, "log target must be stderr or syslog, not '%s'", o->target);
        return -1;
    }
    min = parse_level(o->level);
    if (min < 0) {
        snprintf(err, errlen, "log level must be debug, info, warn or error, not '%s'", o->level);
        return -1;
    }
    fac = parse_facility(o->facility);
    if (fac < 0) {
        snprintf(err, errlen,
                 "syslog facility must be daemon, mail, user or local0..local7, not '%s'",
                 o->facility);
        return -1;
    }
    pthread_mutex_lock(&log_lock);
    if (log_syslog)
        closelog();
    snprintf(log_ident, sizeof log_ident, "%s", o->ident ? o->ident : "clipmod");
    /* openlog keeps the pointer: log_ident is static and only changes here. */
    if (sys)
        openlog(log_ident, LOG_PID | LOG_NDELAY, fac);
    log_format = fmt;
    log_syslog = sys;
    log_min = min;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

int cm_log_setup3(const char *format, const char *target, const char *level, const char *ident,
                  char *err, size_t errlen)
{
    cm_log_opts o = {format, target, level, NULL, ident};
    return cm_log_setup(&o, err, errlen);
}

void cm_log_set_context(const char *policy_fp, long long generation)
{
    pthread_mutex_lock(&log_lock);
    snprintf(ctx_policy, sizeof ctx_policy, "%s", policy_fp ? policy_fp : "");
    ctx_generation = generation;
    pthread_mutex_unlock(&log_lock);
}

int cm_log_enabled(int level)
{
    return level >= log_min;
}

void cm_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_syslog)
        closelog();
    log_syslog = 0;
    pthread_mutex_unlock(&log_lock);
}

/*
 * The length of the valid UTF-8 sequence at p (1-4), or 0 when p does not start
 * one: a stray continuation byte, an overlong form, a surrogate, a code point past
 * U+10FFFF or a sequence cut short (a NUL is never a continuation byte).
 */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if (p[0] == 0xE0)
        lo = 0xA0; /* overlong */
    else if (p[0] == 0xED)
        hi = 0x9F; /* surrogates */
    else if (p[0] == 0xF0)
        lo = 0x90; /* overlong */
    else if (p[0] == 0xF4)
        hi = 0x8F; /* past U+10FFFF */
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* The escape for byte c, or NULL when it is written as it is. */
static const char *escape(unsigned char c, char esc[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        if (c < 0x20 || c == 0x7f) {
            snprintf(esc, 8, "\\u%04x", c);
            return esc;
        }
        return NULL;
    }
}

/* cm_log_quote, stopping at the first add the line refuses (its rc, else 0). */
static int quote(cm_dbuf *l, const char *s)
{
    char esc[8];
    int rc = cm_dbuf_addc(l, '"');

    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && !rc; p++) {
        size_t n = utf8_len(p);
        const char *rep = n == 1 ? escape(*p, esc) : NULL;
        if (n == 0) {
            /* JSON must be UTF-8: a byte that is not becomes U+FFFD, one per byte. */
            rc = cm_dbuf_add(l, "\\ufffd");
        } else if (n > 1) {
            rc = cm_dbuf_addn(l, p, n);
            p += n - 1;
        } else if (rep) {
            rc = cm_dbuf_add(l, rep);
        } else {
            rc = cm_dbuf_addc(l, (char)*p);
        }
    }
    return rc ? rc : cm_dbuf_addc(l, '"');
}

void cm_log_quote(cm_dbuf *l, const char *s)
{
    quote(l, s);
}

/* logfmt leaves simple values bare: letters, digits and a few punctuation marks. */
static int bare_ok(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("-_./:@+", *s)))
            return 0;
    return 1;
}

/* A key is written as given only if it is a plain identifier; otherwise quoted. */
static int put_key(cm_dbuf *l, const char *key, int fmt)
{
    if (fmt == FMT_JSON || !bare_ok(key))
        return quote(l, key);
    return cm_dbuf_add(l, key);
}

static int put_value(cm_dbuf *l, const cm_log_field *f, int fmt)
{
    char num[64];

    switch (f->type) {
    case CM_LF_STR:
        if (fmt == FMT_JSON && !f->s)
            return cm_dbuf_add(l, "null");
        if (fmt == FMT_LOGFMT && bare_ok(f->s))
            return cm_dbuf_add(l, f->s);
        return quote(l, f->s);
    case CM_LF_INT:
        snprintf(num, sizeof num, "%lld", f->i);
        return cm_dbuf_add(l, num);
    case CM_LF_FLOAT:
        snprintf(num, sizeof num, "%.3f", f->f);
        return cm_dbuf_add(l, num);
    default:
        return cm_dbuf_add(l, f->i ? "true" : "false");
    }
}

/*
 * Append one field whole, or roll back to the previous field's end: when the line
 * is full, and also when any add was refused (dynbuf refuses an add whole, so a
 * long bare value would otherwise leave "key=" with nothing after it).
 */
static void put_field(cm_dbuf *l, const cm_log_field *f, int fmt, int *first)
{
    size_t mark = l->len;

    /* An absent value is left out of logfmt lines; JSON says null. */
    if (f->type == CM_LF_STR && !f->s && fmt == FMT_LOGFMT)
        return;
    int rc = cm_dbuf_add(l, *first ? "" : (fmt == FMT_JSON ? "," : " "));
    if (!rc)
        rc = put_key(l, f->key, fmt);
    if (!rc)
        rc = cm_dbuf_addc(l, fmt == FMT_JSON ? ':' : '=');
    if (!rc)
        rc = put_value(l, f, fmt);
    /* Reserve 2 bytes for the closing brace and newline. */
    if (rc || l->len + 2 >= l->max) {
        l->len = mark;
        if (l->s)
            l->s[mark] = '\0';
        return;
    }
    *first = 0;
}

static void emit(int level, const cm_dbuf *l)
{
    static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

    if (log_syslog) {
        syslog(prio[level], "%s", cm_dbuf_ptr(l));
    } else {
        fwrite(cm_dbuf_ptr(l), 1, cm_dbuf_len(l), stderr);
        fputc('\n', stderr);
        fflush(stderr);
    }
}

/* The line of a plain-format entry: "IDENT: LEVEL: msg (k=v ...)", no time, no context. */
static void plain_line(cm_dbuf *l, int level, const char *msg, va_list ap)
{
    static const char *const words[] = {"debug", "note", "warning", "error"};
    cm_dbuf fields;
    int first = 1;

    cm_dbuf_init(&fields, CM_LOG_LINE_MAX / 2);
    for (;;) {
        cm_log_field f = va_arg(ap, cm_log_field);
        if (!f.key)
            break;
        put_field(&fields, &f, FMT_LOGFMT, &first);
    }
    cm_dbuf_addf(l, "%s: %s: ", log_ident, words[level]);
    cm_dbuf_add(l, msg);
    if (cm_dbuf_len(&fields))
        cm_dbuf_addf(l, " (%s)", cm_dbuf_ptr(&fields));
    cm_dbuf_free(&fields);
}

void cm_log(int level, const char *msg, ...)
{
    cm_dbuf l;
    va_list ap;
    char ts[48];
    int first = 1;

    if (level < CM_LOG_DEBUG || level > CM_LOG_ERROR || level < log_min)
        return;
    cm_dbuf_init(&l, CM_LOG_LINE_MAX);
    pthread_mutex_lock(&log_lock);
    int fmt = log_format;
    va_start(ap, msg);
    if (fmt == FMT_PLAIN) {
        plain_line(&l, level, msg, ap);
        goto out;
    }
    if (fmt == FMT_JSON)
        cm_dbuf_addc(&l, '{');
    /* syslog stamps its own time. */
    if (!log_syslog)
        put_field(&l, &CM_LF_S("ts", cm_rfc3339(cm_wall(), ts, sizeof ts)), fmt, &first);
    put_field(&l, &CM_LF_S("level", level_names[level]), fmt, &first);
    put_field(&l, &CM_LF_S("msg", msg), fmt, &first);
    if (ctx_policy[0])
        put_field(&l, &CM_LF_S("policy", ctx_policy), fmt, &first);
    if (ctx_generation > 0)
        put_field(&l, &CM_LF_I("generation", ctx_generation), fmt, &first);
    for (;;) {
        cm_log_field f = va_arg(ap, cm_log_field);
        if (!f.key)
            break;
        put_field(&l, &f, fmt, &first);
    }
    if (fmt == FMT_JSON)
        cm_dbuf_addc(&l, '}');
out:
    va_end(ap);
    if (cm_dbuf_len(&l))
        emit(level, &l);
    pthread_mutex_unlock(&log_lock);
    cm_dbuf_free(&l);
}
