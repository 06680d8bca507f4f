/*
 * log.h - the one structured logger of clipmod, clipmodd and clipmod-milter.
 *
 * Owns the format of every log line: logfmt (`ts=... level=info msg="scan"
 * status=200`) or JSON Lines, to standard error or syslog (facility and ident
 * configurable). Callers pass typed fields (CM_LF_S, CM_LF_I, ...), never a printf
 * format, so a value from the network is always quoted and escaped and can neither
 * forge a field nor split a line (control characters become \n, \r, \t or \u00XX,
 * and each byte that is not part of valid UTF-8 becomes \ufffd, so JSON lines stay
 * valid JSON).
 * Each line is built in memory and written with one call under a mutex, so lines
 * of concurrent threads never mix. A process-wide context (policy fingerprint and
 * generation, set on every load/reload) is added to every line as the fields
 * `policy=` and `generation=`.
 *
 * Migration from src/daemon: dlog -> cm_log, DLOG_* -> CM_LOG_*, LF_S -> CM_LF_S,
 * dlog_setup -> cm_log_setup (plus facility/ident), dlog_close -> cm_log_close.
 */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stddef.h>

enum { CM_LOG_DEBUG, CM_LOG_INFO, CM_LOG_WARN, CM_LOG_ERROR };

enum { CM_LF_END, CM_LF_STR, CM_LF_INT, CM_LF_FLOAT, CM_LF_BOOL };

/* One key=value of a log line; strings are borrowed for the call. */
typedef struct cm_log_field {
    const char *key;
    int type;
    const char *s; /* NULL: left out of logfmt lines, null in JSON */
    long long i;
    double f;
} cm_log_field;

#define CM_LF_S(k, x) ((cm_log_field){(k), CM_LF_STR, (x), 0, 0})
#define CM_LF_I(k, x) ((cm_log_field){(k), CM_LF_INT, NULL, (long long)(x), 0})
#define CM_LF_F(k, x) ((cm_log_field){(k), CM_LF_FLOAT, NULL, 0, (double)(x)})
#define CM_LF_B(k, x) ((cm_log_field){(k), CM_LF_BOOL, NULL, !!(x), 0})
#define CM_LF_END     ((cm_log_field){NULL, CM_LF_END, NULL, 0, 0})

typedef struct cm_log_opts {
    /* "logfmt" (default when NULL), "json", or "plain" ("IDENT: warning: message
     * (key=value ...)", no time or context: for clipmod's terminal, not for services) */
    const char *format;
    const char *target; /* "stderr" (default) or "syslog" */
    const char *level;  /* "debug", "info" (default), "warn", "error" */
    const char
        *facility;     /* syslog facility: "daemon" (default), "mail", "user", "local0".."local7" */
    const char *ident; /* syslog ident and the `prog=` of nothing else; default "clipmod" */
} cm_log_opts;

/*
 * Configure the logger (may be called again, e.g. on reload). 0 on success; -1
 * with a one-line reason in err (errlen bytes) for an unknown value, in which case
 * nothing changes. The ident string is copied.
 */
int cm_log_setup(const cm_log_opts *o, char *err, size_t errlen);

/* Short form keeping dlog_setup's signature (facility daemon, ident as given). */
int cm_log_setup3(const char *format, const char *target, const char *level, const char *ident,
                  char *err, size_t errlen);

/*
 * Set the fields added to every line: the policy fingerprint (copied; NULL drops
 * the field) and the engine generation (<= 0 drops the field). Thread-safe.
 */
void cm_log_set_context(const char *policy_fp, long long generation);

/* Whether a line at `level` would be written (to skip building costly fields). */
int cm_log_enabled(int level);

/* One line: level, message, then fields ending with CM_LF_END. Thread-safe. */
void cm_log(int level, const char *msg, ...);

/* Close syslog if open and return to stderr. */
void cm_log_close(void);

/*
 * Append `s` to a line as a quoted, escaped string (JSON escapes, which logfmt
 * readers accept too). Exposed for tests and for other line formats.
 */
struct cm_dbuf;
void cm_log_quote(struct cm_dbuf *line, const char *s);

#endif
