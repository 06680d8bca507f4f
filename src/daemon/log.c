/*
 * log.c - clipmodd's structured logs.
 *
 * Owns the format of every line the daemon logs: logfmt (`ts=... level=info
 * msg="scan" status=200`) or JSON Lines, to standard error or syslog. Callers
 * give typed fields (daemon.h: LF_S, LF_I, ...), never a printf format, so that a
 * value from the network (a file name, a URL) is always quoted and escaped and
 * can neither forge a field nor split a line. One line is built in memory and
 * written with one call under a mutex: lines of concurrent threads never mix.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "daemon.h"

enum { FMT_LOGFMT, FMT_JSON };

static int log_format = FMT_LOGFMT;
static int log_syslog;
static int log_min = DLOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int dlog_setup(const char *format, const char *target, const char *level, char *err, size_t errlen)
{
    int fmt, sys, min = -1;

    if (!format || !strcmp(format, "logfmt")) {
        fmt = FMT_LOGFMT;
    } else if (!strcmp(format, "json")) {
        fmt = FMT_JSON;
    } else {
        snprintf(err, errlen, "log format must be logfmt or json, not '%s'", format);
        return -1;
    }
    if (!target || !strcmp(target, "stderr")) {
        sys = 0;
    } else if (!strcmp(target, "syslog")) {
        sys = 1;
    } else {
        snprintf(err, errlen, "log target must be stderr or syslog, not '%s'", target);
        return -1;
    }
    for (int i = 0; i < 4; i++)
        if (level && !strcmp(level, level_names[i]))
            min = i;
    if (!level)
        min = DLOG_INFO;
    if (min < 0) {
        snprintf(err, errlen, "log level must be debug, info, warn or error, not '%s'", level);
        return -1;
    }
    pthread_mutex_lock(&log_lock);
    if (sys && !log_syslog)
        openlog(CLIPMODD_NAME, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    else if (!sys && log_syslog)
        closelog();
    log_format = fmt;
    log_syslog = sys;
    log_min = min;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void dlog_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_syslog)
        closelog();
    log_syslog = 0;
    pthread_mutex_unlock(&log_lock);
}

/* A growing line; on allocation failure it stays truncated rather than failing. */
typedef struct line {
    char *s;
    size_t len, cap;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + n + 1)
            cap *= 2;
        char *grown = realloc(l->s, cap);
        if (!grown)
            return;
        l->s = grown;
        l->cap = cap;
    }
    memcpy(l->s + l->len, s, n);
    l->len += n;
    l->s[l->len] = '\0';
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* A quoted string, escaped as JSON (logfmt readers accept the same escapes). */
static void put_quoted(line *l, const char *s)
{
    char esc[8];
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"':
            put(l, "\\\"", 2);
            break;
        case '\\':
            put(l, "\\\\", 2);
            break;
        case '\n':
            put(l, "\\n", 2);
            break;
        case '\r':
            put(l, "\\r", 2);
            break;
        case '\t':
            put(l, "\\t", 2);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                puts_(l, esc);
            } else {
                put(l, (const char *)p, 1);
            }
        }
    }
    put(l, "\"", 1);
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

static void put_field(line *l, const dlog_field *f, int first)
{
    char num[64];

    /* An absent value is left out of logfmt lines; JSON says null. */
    if (f->type == DLF_STR && !f->s && log_format == FMT_LOGFMT)
        return;
    if (log_format == FMT_JSON) {
        puts_(l, first ? "" : ",");
        put_quoted(l, f->key);
        put(l, ":", 1);
    } else {
        puts_(l, first ? "" : " ");
        puts_(l, f->key);
        put(l, "=", 1);
    }
    switch (f->type) {
    case DLF_STR:
        if (log_format == FMT_JSON && !f->s)
            puts_(l, "null");
        else if (log_format == FMT_LOGFMT && bare_ok(f->s))
            puts_(l, f->s);
        else
            put_quoted(l, f->s);
        break;
    case DLF_INT:
        snprintf(num, sizeof num, "%lld", f->i);
        puts_(l, num);
        break;
    case DLF_FLOAT:
        snprintf(num, sizeof num, "%.3f", f->f);
        puts_(l, num);
        break;
    case DLF_BOOL:
        puts_(l, f->i ? "true" : "false");
        break;
    }
}

void dlog(int level, const char *msg, ...)
{
    line l = {0};
    va_list ap;
    char ts[48];
    struct timespec now;
    struct tm tm;
    int first = 1;

    if (level < log_min)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);

    if (log_format == FMT_JSON)
        put(&l, "{", 1);
    /* syslog stamps its own time. */
    if (!log_syslog) {
        put_field(&l, &LF_S("ts", ts), first);
        first = 0;
    }
    put_field(&l, &LF_S("level", level_names[level]), first);
    put_field(&l, &LF_S("msg", msg), 0);
    va_start(ap, msg);
    for (;;) {
        dlog_field f = va_arg(ap, dlog_field);
        if (!f.key)
            break;
        put_field(&l, &f, 0);
    }
    va_end(ap);
    if (log_format == FMT_JSON)
        put(&l, "}", 1);
    if (!l.s)
        return;

    pthread_mutex_lock(&log_lock);
    if (log_syslog) {
        static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
        syslog(prio[level], "%s", l.s);
    } else {
        put(&l, "\n", 1);
        fwrite(l.s, 1, l.len, stderr);
        fflush(stderr);
    }
    pthread_mutex_unlock(&log_lock);
    free(l.s);
}
