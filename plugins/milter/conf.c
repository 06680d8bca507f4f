/*
 * conf.c - read and check clipmod-milter.yaml (see conf.h and clipmod-milter(8)).
 *
 * Owns the defaults of every option and its checks, on the runtime's one YAML
 * reader (src/common/yaml.h: the safe subset policies use, one document, no anchors
 * or aliases, 1 MiB at most, every problem at file:line:column), SMTP reply
 * splitting and skip-list matching. A key this file does not know is an error,
 * never silently ignored, and comes with the nearest known key: a mistyped
 * "on-fial: reject" must not leave a mail server on its defaults. Every problem of
 * a file is reported at once.
 */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "onflag.h"
#include "suggest.h"
#include "vcache.h"
#include "yaml.h"

#define MAX_FILE_BYTES (1 << 20)
#define MAX_STRING     4096

/* Defaults: see clipmod-milter(8), OPTIONS. */
#define DEF_SOCKET         "inet:8897@127.0.0.1" /* 8891 is OpenDKIM's habit */
#define DEF_MESSAGE_BYTES  (25ull << 20)
#define DEF_PARTS          1000
#define DEF_DEPTH          16
#define DEF_IMAGES         64
#define DEF_SCAN_WAIT_MS   60000
#define DEF_DRAIN_MS       30000
#define DEF_TEMPFAIL_REPLY "451 4.7.1 Images in this message could not be scanned; try again later"
#define DEF_REJECT_REPLY   "554 5.7.0 Images in this message could not be scanned"
#define DEF_VERDICT_HEADER "X-Clipmod-Verdict"
#define DEF_SUMMARY_HEADER "X-Clipmod-Summary"
#define DEF_CACHE_TTL_MS   86400000u /* 1d, as clipmodd */
#define DEF_CACHE_WAIT_MS  50u       /* cache.redis-timeout */

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

typedef struct reader {
    const char *path; /* as given: messages name it so */
    char *dir;        /* for relative paths; NULL when the path has no directory */
    cmc_config *c;
    cm_yproblems probs;
    cm_yreport rep; /* counts each problem, then adds it to probs */
    int n_problems;
    int nomem;
} reader;

/* ------------------------------------------------------------------------ */
/* Names                                                                    */
/* ------------------------------------------------------------------------ */

const char *cmc_fail_name(cmc_fail f)
{
    switch (f) {
    case CMC_FAIL_TEMPFAIL:
        return "tempfail";
    case CMC_FAIL_REJECT:
        return "reject";
    case CMC_FAIL_ACCEPT:
        return "accept-with-header";
    }
    return "unknown";
}

const char *cmc_inside_name(cmc_inside i)
{
    static const char *const names[] = {"accept", "quarantine", "tempfail", "reject"};
    return i <= CMC_INSIDE_REJECT ? names[i] : "unknown";
}

const char *cmc_do_name(cmc_do d)
{
    switch (d) {
    case CMC_DO_ACCEPT:
        return "accept";
    case CMC_DO_QUARANTINE:
        return "quarantine";
    case CMC_DO_REJECT:
        return "reject";
    case CMC_DO_DISCARD:
        return "discard";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* SMTP replies and skip lists                                              */
/* ------------------------------------------------------------------------ */

int cmc_parse_reply(const char *s, cmc_reply *out)
{
    const char *p;
    size_t k = 0;

    memset(out, 0, sizeof *out);
    if (!s)
        return -1;
    for (p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return -1; /* libmilter refuses CR and LF; the rest is undefined */
    if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
        !isdigit((unsigned char)s[2]) || (s[3] && s[3] != ' ') || s[0] < '2' || s[0] > '5')
        return -1;
    memcpy(out->rcode, s, 3);
    p = s + 3;
    while (*p == ' ')
        p++;
    if (isdigit((unsigned char)p[0]) && p[1] == '.') {
        /* class.subject.detail, RFC 3463: 1 digit, then 1 to 3, then 1 to 3. */
        const char *q = p + 2;
        int a = 0, b = 0;
        while (isdigit((unsigned char)q[a]) && a < 4)
            a++;
        if (a < 1 || a > 3 || q[a] != '.')
            return -1;
        q += a + 1;
        while (isdigit((unsigned char)q[b]) && b < 4)
            b++;
        if (b < 1 || b > 3 || (q[b] && q[b] != ' '))
            return -1;
        if (p[0] != s[0])
            return -1; /* "550 4.7.1": an enhanced code of another class */
        memcpy(out->xcode, p, (size_t)(q + b - p));
        p = q + b;
        while (*p == ' ')
            p++;
    }
    for (; *p; p++) {
        if (k + 3 > sizeof out->text)
            return -1;
        out->text[k++] = *p;
        if (*p == '%')
            out->text[k++] = '%';
    }
    out->text[k] = 0;
    return 0;
}

/* The address without angle brackets and blanks, lower case, into buf. */
static void bare_address(const char *addr, char *buf, size_t size)
{
    size_t k = 0;
    for (const char *p = addr ? addr : ""; *p && k + 1 < size; p++)
        if (*p != '<' && *p != '>' && !isspace((unsigned char)*p))
            buf[k++] = (char)tolower((unsigned char)*p);
    buf[k] = 0;
}

int cmc_match_address(const cmc_list *l, const char *addr)
{
    char a[512];
    bare_address(addr, a, sizeof a);
    const char *at = strrchr(a, '@');
    if (!*a || !at)
        return 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *e = l->v[i];
        if (e[0] == '@' ? !strcmp(at, e) : !strcmp(a, e))
            return 1;
    }
    return 0;
}

int cmc_match_domain(const cmc_list *l, const char *addr)
{
    char a[512];
    bare_address(addr, a, sizeof a);
    const char *at = strrchr(a, '@');
    if (!at || !at[1])
        return 0;
    const char *d = at + 1;
    size_t dn = strlen(d);
    for (size_t i = 0; i < l->n; i++) {
        const char *e = l->v[i];
        size_t en = strlen(e);
        if (!strcmp(d, e) || (dn > en && d[dn - en - 1] == '.' && !strcmp(d + dn - en, e)))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Problems                                                                 */
/* ------------------------------------------------------------------------ */

static void count_problem(void *arg, cm_ypos pos, const char *msg)
{
    reader *r = arg;
    r->n_problems++;
    cm_yproblems_report(&r->probs, pos, msg);
}

/* A problem at node n, or at the whole file when n is NULL. */
__attribute__((format(printf, 3, 4))) static void problem(reader *r, const cm_ynode *n,
                                                          const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    cm_ypos whole = {r->path, 0, 0};
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    count_problem(r, n ? n->pos : whole, msg);
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

static char *xstrdup(reader *r, const char *s)
{
    char *d = strdup(s);
    if (!d)
        r->nomem = 1;
    return d;
}

/* A non-empty string of at most MAX_STRING bytes; NULL (after a problem) otherwise. */
static const char *string_of(reader *r, const cm_ynode *n, const char *what)
{
    const char *s;
    if (cm_yread_str(n, what, 0, &r->rep, &s))
        return NULL;
    if (strlen(s) > MAX_STRING) {
        problem(r, n, "%s is longer than %d bytes", what, MAX_STRING);
        return NULL;
    }
    return s;
}

static void set_string(reader *r, const cm_ynode *n, const char *what, char **dst)
{
    const char *s = string_of(r, n, what);
    if (!s)
        return;
    free(*dst);
    *dst = xstrdup(r, s);
}

/* A path, relative ones taken from the configuration file's directory. */
static char *resolve(reader *r, const char *s)
{
    char *d;
    if (s[0] == '/' || !r->dir)
        return xstrdup(r, s);
    if (asprintf(&d, "%s/%s", r->dir, s) < 0) {
        r->nomem = 1;
        return NULL;
    }
    return d;
}

static void set_path(reader *r, const cm_ynode *n, const char *what, char **dst)
{
    const char *s = string_of(r, n, what);
    if (!s)
        return;
    free(*dst);
    *dst = resolve(r, s);
}

static void set_int(reader *r, const cm_ynode *n, const char *what, long long min, long long max,
                    int *dst)
{
    long long v;
    if (!cm_yread_int(n, what, min, max, &r->rep, &v))
        *dst = (int)v;
}

static void set_u64(reader *r, const cm_ynode *n, const char *what, long long min, long long max,
                    uint64_t *dst)
{
    long long v;
    if (!cm_yread_int(n, what, min, max, &r->rep, &v))
        *dst = (uint64_t)v;
}

/* A size as clipmod and clipmodd read it (25M, 512k, 1GiB: powers of 1024), in [min, max]. */
static void set_size(reader *r, const cm_ynode *n, const char *what, uint64_t min, uint64_t max,
                     uint64_t *dst)
{
    uint64_t v;
    if (cm_yread_size(n, what, max, &r->rep, &v))
        return;
    if (v < min) {
        problem(r, n, "%s must be at least %llu bytes", what, (unsigned long long)min);
        return;
    }
    *dst = v;
}

/* One of names[0..n): its index, or -1 after a problem (with the nearest name). */
static int choice_of(reader *r, const cm_ynode *v, const char *what, const char *const *names,
                     size_t n, const char *listed)
{
    const char *s, *near;
    if (cm_yread_str(v, what, 1, &r->rep, &s))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return (int)i;
    near = cm_suggest(s, names, n);
    problem(r, v, "%s must be %s, not '%.60s'%s%s%s", what, listed, s,
            near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    return -1;
}

static void list_free(cmc_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Append a lower-cased copy of s. */
static void list_add(reader *r, cmc_list *dst, const char *s)
{
    char **grown = realloc(dst->v, (dst->n + 1) * sizeof *grown);
    char *copy = xstrdup(r, s);
    if (grown)
        dst->v = grown;
    if (!grown || !copy) {
        free(copy);
        r->nomem = 1;
        return;
    }
    for (char *p = copy; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    dst->v[dst->n++] = copy;
}

/* A list of addresses (`at` 1: with an '@') or domains (`at` 0), lower-cased. */
static void set_list(reader *r, const cm_ynode *n, const char *what, int at, cmc_list *dst)
{
    char buf[96];
    if (n->kind != CM_Y_SEQ) {
        problem(r, n, "%s must be a list, not %s", what, cm_ynode_describe(n, buf, sizeof buf));
        return;
    }
    list_free(dst);
    for (const cm_ynode *e = n->first; e; e = e->next) {
        const char *s = string_of(r, e, what);
        if (!s)
            continue;
        if (at ? !strchr(s, '@') : (strchr(s, '@') || s[0] == '.')) {
            problem(r, e,
                    at ? "%s: '%.80s' is not an address (user@domain, or @domain)"
                       : "%s: '%.80s' is not a domain (example.org)",
                    what, s);
            continue;
        }
        list_add(r, dst, s);
    }
}

static int header_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 64 || !isalpha((unsigned char)s[0]))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return 0;
    return 1;
}

/*
 * `what` must be a mapping whose keys are keys[0..n) (each at most once; others
 * reported with the nearest known key); vals[i] receives each one's value or NULL.
 * 0 when v is a mapping (whatever its keys), -1 otherwise.
 */
static int mapping(reader *r, const cm_ynode *v, const char *what, const char *const *keys,
                   size_t n, const cm_ynode **vals)
{
    char where[64], buf[96];
    if (v->kind != CM_Y_MAP) {
        problem(r, v, "%s must be a mapping, not %s", what, cm_ynode_describe(v, buf, sizeof buf));
        return -1;
    }
    snprintf(where, sizeof where, "in %s", what);
    cm_ycheck_keys(v, where, keys, n, NULL, vals, &r->rep);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Sections                                                                 */
/* ------------------------------------------------------------------------ */

static void read_limits(reader *r, const cm_ynode *v)
{
    static const char *const keys[] = {"max-message-bytes", "max-parts", "max-depth", "max-images",
                                       "max-image-bytes"};
    const cm_ynode *val[N_OF(keys)];
    cmc_limits *l = &r->c->limits;
    if (mapping(r, v, "limits", keys, N_OF(keys), val))
        return;
    if (val[0])
        set_size(r, val[0], "limits.max-message-bytes", 1024, UINT64_C(1) << 40,
                 &l->max_message_bytes);
    if (val[1])
        set_u64(r, val[1], "limits.max-parts", 1, 1000000, &l->max_parts);
    if (val[2])
        set_u64(r, val[2], "limits.max-depth", 1, 100, &l->max_depth);
    if (val[3])
        set_u64(r, val[3], "limits.max-images", 1, 10000, &l->max_images);
    if (val[4])
        set_size(r, val[4], "limits.max-image-bytes", 1, UINT64_C(1) << 40, &l->max_image_bytes);
}

static void read_engine(reader *r, const cm_ynode *v)
{
    const char *names[CLIPMOD_SETTING__COUNT];
    const cm_ynode *keys[CLIPMOD_SETTING__COUNT], *val[CLIPMOD_SETTING__COUNT];
    char buf[96];
    if (v->kind != CM_Y_MAP) {
        problem(r, v, "engine must be a mapping of engine settings, not %s",
                cm_ynode_describe(v, buf, sizeof buf));
        return;
    }
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++)
        names[s] = clipmod_setting_name((clipmod_setting)s);
    cm_ycheck_keys(v, "in engine", names, CLIPMOD_SETTING__COUNT, keys, val, &r->rep);
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++) {
        char what[64];
        long long value;
        if (!val[s])
            continue;
        if (s == CLIPMOD_MAX_FILE_BYTES) {
            problem(r, keys[s],
                    "engine.max-file-bytes: use limits.max-image-bytes, which the milter "
                    "applies before the engine sees an image");
            continue;
        }
        snprintf(what, sizeof what, "engine.%s", names[s]);
        if (cm_yread_int(val[s], what, 0, LLONG_MAX, &r->rep, &value))
            continue;
        r->c->settings[r->c->n_settings].s = (clipmod_setting)s;
        r->c->settings[r->c->n_settings++].value = (uint64_t)value;
    }
}

/* One {path, config} entry of plugins. */
static void read_plugin(reader *r, const cm_ynode *m)
{
    static const char *const keys[] = {"path", "config"};
    const cm_ynode *val[N_OF(keys)];
    const char *ps, *cs = "";
    if (mapping(r, m, "a plugin", keys, N_OF(keys), val))
        return;
    if (!val[0]) {
        problem(r, m, "a plugin needs a path");
        return;
    }
    ps = string_of(r, val[0], "plugins.path");
    if (val[1])
        cs = string_of(r, val[1], "plugins.config");
    if (!ps || !cs)
        return;
    cmc_plugin *grown = realloc(r->c->plugins, (r->c->n_plugins + 1) * sizeof *grown);
    if (!grown) {
        r->nomem = 1;
        return;
    }
    r->c->plugins = grown;
    /* A bare name is the library's to find (its plugin directory). */
    grown[r->c->n_plugins].path = strchr(ps, '/') ? resolve(r, ps) : xstrdup(r, ps);
    grown[r->c->n_plugins].config = xstrdup(r, cs);
    r->c->n_plugins++;
}

static void read_plugins(reader *r, const cm_ynode *v)
{
    char buf[96];
    if (v->kind != CM_Y_SEQ) {
        problem(r, v, "plugins must be a list of {path, config}, not %s",
                cm_ynode_describe(v, buf, sizeof buf));
        return;
    }
    for (const cm_ynode *m = v->first; m; m = m->next)
        read_plugin(r, m);
}

static void read_actions(reader *r, const cm_ynode *v)
{
    static const char *const keys[] = {"tag", "flag", "quarantine", "reject"};
    static const clipmod_action acts[] = {CLIPMOD_ACTION_TAG, CLIPMOD_ACTION_FLAG,
                                          CLIPMOD_ACTION_QUARANTINE};
    static const char *const any[] = {"accept", "quarantine", "reject", "discard"};
    static const char *const rej[] = {"reject", "discard", "quarantine"};
    static const cmc_do rej_do[] = {CMC_DO_REJECT, CMC_DO_DISCARD, CMC_DO_QUARANTINE};
    const cm_ynode *val[N_OF(keys)];
    char what[64];
    int i;
    if (mapping(r, v, "actions", keys, N_OF(keys), val))
        return;
    for (size_t k = 0; k < 3; k++) {
        snprintf(what, sizeof what, "actions.%s", keys[k]);
        if (val[k]) {
            i = choice_of(r, val[k], what, any, N_OF(any), "accept, quarantine, reject or discard");
            if (i >= 0)
                r->c->action[acts[k]] = (cmc_do)i;
        }
    }
    /* Delivering what the policy refuses is a policy change: make it there. */
    if (val[3]) {
        i = choice_of(r, val[3], "actions.reject", rej, N_OF(rej),
                      "reject, discard or quarantine (to deliver such mail, change the "
                      "policy's action)");
        if (i >= 0)
            r->c->action[CLIPMOD_ACTION_REJECT] = rej_do[i];
    }
}

static void read_skip(reader *r, const cm_ynode *v)
{
    static const char *const keys[] = {"authenticated", "senders", "recipients", "domains"};
    const cm_ynode *val[N_OF(keys)];
    cmc_config *c = r->c;
    if (mapping(r, v, "skip", keys, N_OF(keys), val))
        return;
    if (val[0])
        cm_yread_bool(val[0], "skip.authenticated", &r->rep, &c->skip_authenticated);
    if (val[1])
        set_list(r, val[1], "skip.senders", 1, &c->skip_senders);
    if (val[2])
        set_list(r, val[2], "skip.recipients", 1, &c->skip_recipients);
    if (val[3])
        set_list(r, val[3], "skip.domains", 0, &c->skip_domains);
}

static void read_header(reader *r, const cm_ynode *v, int summary, char **dst)
{
    const char *key = summary ? "summary" : "verdict";
    if (summary && (cm_ynode_is_null(v) || cm_ynode_is(v, "none"))) {
        free(*dst);
        *dst = NULL;
        return;
    }
    if (v->kind != CM_Y_SCALAR || strlen(v->s) != v->len || !header_name_ok(v->s)) {
        problem(r, v, "headers.%s must be a header name (letters, digits, '-'; at most 64)%s", key,
                summary ? ", or none" : "");
        return;
    }
    free(*dst);
    *dst = xstrdup(r, v->s);
}

static void read_headers(reader *r, const cm_ynode *v)
{
    static const char *const keys[] = {"verdict", "summary"};
    const cm_ynode *val[N_OF(keys)];
    if (mapping(r, v, "headers", keys, N_OF(keys), val))
        return;
    if (val[0])
        read_header(r, val[0], 0, &r->c->verdict_header);
    if (val[1])
        read_header(r, val[1], 1, &r->c->summary_header);
}

/* log.h's names for each log: key; `which` indexes log_keys. */
static const char *const log_keys[] = {"format", "target", "level", "facility"};
static const char *const log_formats[] = {"logfmt", "json"};
static const char *const log_targets[] = {"stderr", "syslog"};
static const char *const log_levels[] = {"debug", "info", "warn", "error"};
static const char *const log_facilities[] = {"mail",   "daemon", "user",   "local0",
                                             "local1", "local2", "local3", "local4",
                                             "local5", "local6", "local7"};

/* The value of log.<which> (a static string), or NULL after a problem. */
static const char *log_value(reader *r, const cm_ynode *v, int which)
{
    static const char *const *const names[] = {log_formats, log_targets, log_levels,
                                               log_facilities};
    static const size_t counts[] = {N_OF(log_formats), N_OF(log_targets), N_OF(log_levels),
                                    N_OF(log_facilities)};
    static const char *const listed[] = {"logfmt or json", "stderr or syslog",
                                         "debug, info, warn or error",
                                         "mail, daemon, user or local0 to local7"};
    char what[32];
    int i;
    snprintf(what, sizeof what, "log.%s", log_keys[which]);
    i = choice_of(r, v, what, names[which], counts[which], listed[which]);
    return i >= 0 ? names[which][i] : NULL;
}

/* log: {format, target, level, facility}: the values log.h takes, checked here with positions. */
static void read_log(reader *r, const cm_ynode *v)
{
    const cm_ynode *val[N_OF(log_keys)] = {0};
    const char **dst[] = {&r->c->log.format, &r->c->log.target, &r->c->log.level,
                          &r->c->log.facility};

    /* "log: syslog", the form before the block, is the target. */
    if (v->kind == CM_Y_SCALAR)
        val[1] = v;
    else if (mapping(r, v, "log", log_keys, N_OF(log_keys), val))
        return;
    for (int k = 0; k < (int)N_OF(log_keys); k++) {
        const char *s = val[k] ? log_value(r, val[k], k) : NULL;
        if (s)
            *dst[k] = s;
    }
}

/* on-flag: {command: [/abs/program, args...], timeout: 30s, max-running: 4}. */
static void read_on_flag(reader *r, const cm_ynode *v)
{
    static const char *const keys[] = {"command", "timeout", "max-running"};
    const cm_ynode *val[N_OF(keys)];
    cmc_on_flag *h = &r->c->on_flag;
    const char **argv = NULL;
    size_t n = 0;
    long long max;

    if (mapping(r, v, "on-flag", keys, N_OF(keys), val))
        return;
    if (!val[0]) {
        problem(r, v,
                "on-flag needs a command (a list: the program's absolute path, then its "
                "arguments)");
    } else if (!cm_yread_strlist(val[0], "on-flag.command", 64, &r->rep, &argv, &n)) {
        char why[160];
        if (cm_onflag_argv_problem(argv, n, why, sizeof why))
            problem(r, val[0], "on-flag.command %s", why);
        h->argv = calloc(n + 1, sizeof *h->argv);
        if (!h->argv)
            r->nomem = 1;
        for (size_t i = 0; h->argv && i < n; i++)
            h->argv[i] = xstrdup(r, argv[i]);
        h->argc = h->argv ? n : 0;
        free(argv);
    }
    if (val[1])
        cm_yread_duration_ms(val[1], "on-flag.timeout", 3600000, &r->rep, &h->timeout_ms);
    if (val[2] && !cm_yread_int(val[2], "on-flag.max-running", 1, 64, &r->rep, &max))
        h->max_running = (unsigned)max;
}

static int socket_ok(const char *s)
{
    if (!strncmp(s, "unix:", 5) || !strncmp(s, "local:", 6))
        return strchr(s, ':')[1] == '/';
    if (strncmp(s, "inet:", 5) && strncmp(s, "inet6:", 6))
        return 0;
    const char *p = strchr(s, ':') + 1;
    char *end;
    unsigned long port = strtoul(p, &end, 10);
    return isdigit((unsigned char)*p) && port > 0 && port < 65536 &&
           (!*end || (*end == '@' && end[1]));
}

static void read_socket(reader *r, const cm_ynode *v)
{
    const char *s = string_of(r, v, "socket");
    if (s && !socket_ok(s))
        problem(r, v,
                "socket must be unix:/path, local:/path, inet:port@host or inet6:port@host, "
                "not '%.80s'",
                s);
    else if (s)
        set_string(r, v, "socket", &r->c->socket);
}

static void read_socket_mode(reader *r, const cm_ynode *v)
{
    const char *s = v->kind == CM_Y_SCALAR ? v->s : "";
    size_t n = strlen(s);
    char *end;
    long mode = strtol(s, &end, 8);
    if (n < 3 || n > 4 || *end || mode < 0 || mode > 0777)
        problem(r, v, "socket-mode must be an octal mode such as \"0660\"");
    else
        r->c->socket_mode = (int)mode;
}

static void read_cache_dir(reader *r, const cm_ynode *v)
{
    cmc_config *c = r->c;
    if (cm_ynode_is(v, "none")) {
        free(c->cache_dir);
        c->cache_dir = NULL;
        c->no_cache = 1;
    } else {
        set_path(r, v, "cache-dir", &c->cache_dir);
        c->no_cache = 0;
    }
}

/* A duration of at least min_ms and at most max_ms into *dst. */
static void set_ms(reader *r, const cm_ynode *n, const char *what, uint64_t min_ms, uint64_t max_ms,
                   uint64_t *dst)
{
    uint64_t ms;
    if (cm_yread_duration_ms(n, what, max_ms, &r->rep, &ms))
        return;
    if (ms < min_ms)
        problem(r, n, "%s must be at least %llu ms", what, (unsigned long long)min_ms);
    else
        *dst = ms;
}

/*
 * cache.redis: the URL is checked here by the cache itself (no connection is made),
 * so a typo is reported at its line rather than at start.
 */
static void read_cache_redis(reader *r, const cm_ynode *v)
{
    const char *url = cm_ynode_is_null(v) ? NULL : string_of(r, v, "cache.redis");
    char err[256] = "";
    cm_vcache_opts o = {.redis_url = url, .ttl_ms = 1000, .timeout_ms = 1};
    cm_vcache *probe = url ? cm_vcache_new(&o, err, sizeof err) : NULL;
    if (url && !probe)
        problem(r, v, "%s", err);
    else if (probe)
        set_string(r, v, "cache.redis", &r->c->cache.redis);
    cm_vcache_free(probe);
}

/* cache: {memory, redis, ttl, redis-timeout}, clipmodd's keys and bounds. */
static void read_cache(reader *r, const cm_ynode *v)
{
    static const char *const keys[] = {"memory", "redis", "ttl", "redis-timeout"};
    const cm_ynode *val[N_OF(keys)];
    cmc_cache *c = &r->c->cache;
    if (mapping(r, v, "cache", keys, N_OF(keys), val))
        return;
    if (val[0])
        set_size(r, val[0], "cache.memory", 0, UINT64_C(1) << 40, &c->memory);
    if (val[1])
        read_cache_redis(r, val[1]);
    if (val[2])
        set_ms(r, val[2], "cache.ttl", 1000, UINT64_C(2592000000), &c->ttl_ms);
    if (val[3])
        set_ms(r, val[3], "cache.redis-timeout", 1, 10000, &c->redis_timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* The top level                                                            */
/* ------------------------------------------------------------------------ */

enum {
    K_SOCKET,
    K_SOCKET_MODE,
    K_MODEL,
    K_MERGES,
    K_POLICY,
    K_CACHE_DIR,
    K_WORKERS,
    K_BLAS,
    K_PRECISION,
    K_SCAN_WAIT,
    K_DRAIN,
    K_LOG,
    K_LOG_FACILITY,
    K_LOG_LEVEL,
    K_LIMITS,
    K_ENGINE,
    K_PLUGINS,
    K_ON_FAIL,
    K_ON_FAIL_REPLY,
    K_ACTIONS,
    K_SKIP,
    K_HEADERS,
    K_ARCHIVES,
    K_DOCUMENTS,
    K_ON_FLAG,
    K_CONTEXT,
    K_CACHE,
    K__N
};

static const char *const top_keys[K__N] = {"socket",
                                           "socket-mode",
                                           "model",
                                           "merges",
                                           "policy",
                                           "cache-dir",
                                           "workers",
                                           "blas-threads",
                                           "precision",
                                           "scan-wait-ms",
                                           "drain-timeout-ms",
                                           "log",
                                           "log-facility",
                                           "log-level",
                                           "limits",
                                           "engine",
                                           "plugins",
                                           "on-fail",
                                           "on-fail-reply",
                                           "actions",
                                           "skip",
                                           "headers",
                                           "archives-with-images",
                                           "documents-with-images",
                                           "on-flag",
                                           "context",
                                           "cache"};

/* The process: where to listen, what to load, how many scans at once, logging. */
static void read_process(reader *r, const cm_ynode *const *v)
{
    /* The spellings of log-level before the log: block; notice was between warn and info. */
    static const char *const old_levels[] = {"error", "warning", "notice", "info", "debug"};
    static const char *const old_level_values[] = {"error", "warn", "info", "info", "debug"};
    cmc_config *c = r->c;
    if (v[K_SOCKET])
        read_socket(r, v[K_SOCKET]);
    if (v[K_SOCKET_MODE])
        read_socket_mode(r, v[K_SOCKET_MODE]);
    if (v[K_MODEL])
        set_path(r, v[K_MODEL], "model", &c->model);
    if (v[K_MERGES])
        set_path(r, v[K_MERGES], "merges", &c->merges);
    if (v[K_POLICY])
        set_path(r, v[K_POLICY], "policy", &c->policy);
    if (v[K_CACHE_DIR])
        read_cache_dir(r, v[K_CACHE_DIR]);
    if (v[K_WORKERS])
        set_int(r, v[K_WORKERS], "workers", 0, 1024, &c->workers);
    if (v[K_BLAS])
        set_int(r, v[K_BLAS], "blas-threads", 1, 256, &c->blas_threads);
    if (v[K_PRECISION]) {
        /* clipmod_precision's order: fp32, int8, bf16. */
        static const char *const precisions[] = {"fp32", "int8", "bf16"};
        int i = choice_of(r, v[K_PRECISION], "precision", precisions, 3, "fp32, int8 or bf16");
        if (i >= 0)
            c->precision = (clipmod_precision)i;
    }
    if (v[K_SCAN_WAIT])
        set_u64(r, v[K_SCAN_WAIT], "scan-wait-ms", 1, 3600000, &c->scan_wait_ms);
    if (v[K_DRAIN])
        set_u64(r, v[K_DRAIN], "drain-timeout-ms", 0, 3600000, &c->drain_timeout_ms);
    if (v[K_LOG])
        read_log(r, v[K_LOG]);
    if (v[K_LOG_FACILITY]) {
        const char *s = log_value(r, v[K_LOG_FACILITY], 3);
        if (s)
            c->log.facility = s;
    }
    if (v[K_LOG_LEVEL]) {
        int i = choice_of(r, v[K_LOG_LEVEL], "log-level", old_levels, N_OF(old_levels),
                          "error, warning, notice, info or debug");
        if (i >= 0)
            c->log.level = old_level_values[i];
    }
}

/* The mail side: OnFail, actions, skip rules, headers, images inside containers. */
static void read_mail(reader *r, const cm_ynode *const *v)
{
    static const char *const fails[] = {"tempfail", "reject", "accept-with-header"};
    static const char *const inside[] = {"accept", "quarantine", "tempfail", "reject"};
    cmc_config *c = r->c;
    int i;
    if (v[K_ON_FAIL]) {
        i = choice_of(r, v[K_ON_FAIL], "on-fail", fails, N_OF(fails),
                      "tempfail, reject or accept-with-header");
        if (i >= 0)
            c->on_fail = (cmc_fail)i;
    }
    if (v[K_LIMITS])
        read_limits(r, v[K_LIMITS]);
    if (v[K_ENGINE])
        read_engine(r, v[K_ENGINE]);
    if (v[K_PLUGINS])
        read_plugins(r, v[K_PLUGINS]);
    if (v[K_ACTIONS])
        read_actions(r, v[K_ACTIONS]);
    if (v[K_SKIP])
        read_skip(r, v[K_SKIP]);
    if (v[K_HEADERS])
        read_headers(r, v[K_HEADERS]);
    if (v[K_ON_FLAG])
        read_on_flag(r, v[K_ON_FLAG]);
    if (v[K_CONTEXT])
        cm_yread_bool(v[K_CONTEXT], "context", &r->rep, &c->context);
    if (v[K_CACHE])
        read_cache(r, v[K_CACHE]);
    for (int k = K_ARCHIVES; k <= K_DOCUMENTS; k++) {
        if (!v[k])
            continue;
        i = choice_of(r, v[k], top_keys[k], inside, N_OF(inside),
                      "accept, quarantine, tempfail or reject");
        if (i >= 0)
            *(k == K_ARCHIVES ? &c->archives_with_images : &c->documents_with_images) =
                (cmc_inside)i;
    }
}

/* The reply must agree with what OnFail does. */
static void read_on_fail_reply(reader *r, const cm_ynode *v)
{
    cmc_config *c = r->c;
    const char *s;
    if (!v) {
        cmc_parse_reply(c->on_fail == CMC_FAIL_REJECT ? DEF_REJECT_REPLY : DEF_TEMPFAIL_REPLY,
                        &c->on_fail_reply);
        return;
    }
    s = string_of(r, v, "on-fail-reply");
    if (!s)
        return;
    if (c->on_fail == CMC_FAIL_ACCEPT)
        problem(r, v, "on-fail-reply is not used with on-fail: accept-with-header");
    else if (cmc_parse_reply(s, &c->on_fail_reply))
        problem(r, v,
                "on-fail-reply must be an SMTP reply: a 4xx or 5xx code, an optional "
                "enhanced code of the same class, text (printable ASCII)");
    else if (c->on_fail == CMC_FAIL_TEMPFAIL && c->on_fail_reply.rcode[0] != '4')
        problem(r, v, "on-fail-reply must be a 4xx reply with on-fail: tempfail");
    else if (c->on_fail == CMC_FAIL_REJECT && c->on_fail_reply.rcode[0] != '5')
        problem(r, v, "on-fail-reply must be a 5xx reply with on-fail: reject");
}

static void read_root(reader *r, const cm_ynode *root)
{
    const cm_ynode *v[K__N];
    char buf[96];
    if (!root || cm_ynode_is_null(root)) {
        problem(r, NULL, "the file is empty; model and policy are required");
        return;
    }
    if (root->kind != CM_Y_MAP) {
        problem(r, root, "the configuration must be a mapping of keys, not %s",
                cm_ynode_describe(root, buf, sizeof buf));
        return;
    }
    cm_ycheck_keys(root, "in the configuration", top_keys, K__N, NULL, v, &r->rep);
    read_process(r, v);
    read_mail(r, v);
    read_on_fail_reply(r, v[K_ON_FAIL_REPLY]);
    if (!r->c->model)
        problem(r, NULL, "model is required (the model directory)");
    if (!r->c->policy)
        problem(r, NULL, "policy is required (the policy file)");
    if (!r->c->limits.max_image_bytes)
        r->c->limits.max_image_bytes = r->c->limits.max_message_bytes;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

void cmc_free(cmc_config *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->socket);
    free(c->model);
    free(c->merges);
    free(c->policy);
    free(c->cache_dir);
    for (size_t i = 0; i < c->n_plugins; i++) {
        free(c->plugins[i].path);
        free(c->plugins[i].config);
    }
    free(c->plugins);
    list_free(&c->skip_senders);
    list_free(&c->skip_recipients);
    list_free(&c->skip_domains);
    for (size_t i = 0; i < c->on_flag.argc; i++)
        free(c->on_flag.argv[i]);
    free(c->on_flag.argv);
    free(c->verdict_header);
    free(c->summary_header);
    free(c->cache.redis);
    free(c);
}

static cmc_config *defaults(void)
{
    cmc_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->socket = strdup(DEF_SOCKET);
    c->verdict_header = strdup(DEF_VERDICT_HEADER);
    c->summary_header = strdup(DEF_SUMMARY_HEADER);
    c->socket_mode = -1;
    c->context = 1;
    c->blas_threads = 1;
    c->scan_wait_ms = DEF_SCAN_WAIT_MS;
    c->drain_timeout_ms = DEF_DRAIN_MS;
    c->log.format = "logfmt";
    c->log.target = "stderr";
    c->log.level = "info";
    c->log.facility = "mail";
    c->limits.max_message_bytes = DEF_MESSAGE_BYTES;
    c->limits.max_parts = DEF_PARTS;
    c->limits.max_depth = DEF_DEPTH;
    c->limits.max_images = DEF_IMAGES;
    c->limits.max_image_bytes = 0; /* the message limit, filled in after reading */
    c->cache.ttl_ms = DEF_CACHE_TTL_MS;
    c->cache.redis_timeout_ms = DEF_CACHE_WAIT_MS;
    c->on_fail = CMC_FAIL_TEMPFAIL;
    c->action[CLIPMOD_ACTION_ALLOW] = CMC_DO_ACCEPT;
    c->action[CLIPMOD_ACTION_TAG] = CMC_DO_ACCEPT;
    c->action[CLIPMOD_ACTION_FLAG] = CMC_DO_ACCEPT;
    c->action[CLIPMOD_ACTION_QUARANTINE] = CMC_DO_QUARANTINE;
    c->action[CLIPMOD_ACTION_REJECT] = CMC_DO_REJECT;
    if (!c->socket || !c->verdict_header || !c->summary_header) {
        cmc_free(c);
        return NULL;
    }
    return c;
}

/* Set up r for path: defaults, the file's directory. -1: out of memory. */
static int reader_init(reader *r, const char *path)
{
    const char *slash = strrchr(path, '/');
    r->path = path;
    r->rep.fn = count_problem;
    r->rep.arg = r;
    r->c = defaults();
    if (!r->c)
        return -1;
    r->c->path = strdup(path);
    if (!r->c->path)
        return -1;
    /* "conf/m.yaml" -> "conf", "/m.yaml" -> "", "m.yaml" -> none: relative to cwd. */
    if (slash) {
        r->dir = strndup(path, (size_t)(slash - path));
        if (!r->dir)
            return -1;
    }
    return 0;
}

int cmc_load(const char *path, cmc_config **out, char **problems)
{
    reader r;
    cm_ydoc *doc = NULL;
    int rc = -1;

    memset(&r, 0, sizeof r);
    *out = NULL;
    if (problems)
        *problems = NULL;
    if (reader_init(&r, path)) {
        r.nomem = 1;
    } else {
        int yrc = cm_yaml_parse_file(path, MAX_FILE_BYTES, "a configuration file", &r.rep, &doc);
        if (yrc == CM_YAML_NOMEM)
            r.nomem = 1;
        else if (yrc == CM_YAML_OK)
            read_root(&r, cm_yaml_root(doc));
    }
    if (r.nomem)
        problem(&r, NULL, "out of memory");
    if (!r.nomem && !r.n_problems && doc)
        rc = 0;
    cm_yaml_free(doc);
    free(r.dir);
    if (rc == 0) {
        *out = r.c;
    } else {
        cmc_free(r.c);
        if (problems) {
            *problems = cm_yproblems_join(&r.probs);
            /* Never "failed" without a word, even when the list itself could not be made. */
            if (!*problems)
                *problems = strdup(r.nomem ? "out of memory" : "the configuration has problems");
        }
    }
    cm_yproblems_free(&r.probs);
    return rc;
}
