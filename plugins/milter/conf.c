/*
 * conf.c - read and check clipmod-milter.yaml (see conf.h and clipmod-milter(8)).
 *
 * Owns the defaults of every option, the YAML reading (libyaml's document API,
 * the same safe subset as policies: one document, no anchors or aliases, 1 MiB at
 * most), the checks with their positions, SMTP reply splitting and skip-list
 * matching. A key this file does not know is an error, never silently ignored: a
 * mistyped "on-fial: reject" must not leave a mail server on its defaults.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "conf.h"
#include "size.h"

#define MAX_FILE_BYTES (1 << 20)
#define MAX_DEPTH      16

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

typedef struct reader {
    const char *path; /* as given: messages name it so */
    char *dir;        /* for relative paths; NULL when the path has no directory */
    yaml_document_t *doc;
    cmc_config *c;
    FILE *problems;
    char *pbuf;
    size_t plen;
    int n_problems;
    int nomem;
    const yaml_node_t *on_fail_reply_node;
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
    const char *at;
    bare_address(addr, a, sizeof a);
    if (!*a || !(at = strrchr(a, '@')))
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
    const char *at;
    bare_address(addr, a, sizeof a);
    if (!(at = strrchr(a, '@')) || !at[1])
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

static void problem(reader *r, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    r->n_problems++;
    if (!r->problems)
        return;
    if (n)
        fprintf(r->problems, "%s:%zu:%zu: ", r->path, n->start_mark.line + 1,
                n->start_mark.column + 1);
    else
        fprintf(r->problems, "%s: ", r->path);
    va_start(ap, fmt);
    vfprintf(r->problems, fmt, ap);
    va_end(ap);
    fputc('\n', r->problems);
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

static yaml_node_t *node(reader *r, int i)
{
    return yaml_document_get_node(r->doc, i);
}

static const char *kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = sval(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static char *xstrdup(reader *r, const char *s)
{
    char *d = strdup(s);
    if (!d)
        r->nomem = 1;
    return d;
}

/* A non-empty string; NULL (after a problem) otherwise. */
static const char *string_of(reader *r, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n) || !*sval(n)) {
        problem(r, n, "%s must be a string, not %s", what,
                n->type == YAML_SCALAR_NODE ? "empty" : kind(n));
        return NULL;
    }
    if (strlen(sval(n)) > 4096) {
        problem(r, n, "%s is longer than 4096 bytes", what);
        return NULL;
    }
    return sval(n);
}

static void set_string(reader *r, const yaml_node_t *n, const char *what, char **dst)
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

static void set_path(reader *r, const yaml_node_t *n, const char *what, char **dst)
{
    const char *s = string_of(r, n, what);
    if (!s)
        return;
    free(*dst);
    *dst = resolve(r, s);
}

/*
 * A whole decimal number in [min, max]; with `bytes`, a size as cm_parse_size() reads
 * it (25M, 512k, 1GiB: powers of 1024). YAML types do not matter: the text is read.
 */
static int uint_of(reader *r, const yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                   int bytes, uint64_t *dst)
{
    const char *s = n->type == YAML_SCALAR_NODE ? sval(n) : "";
    char *end;
    unsigned long long v;
    int ok = isdigit((unsigned char)s[0]);

    if (ok && bytes) {
        /* The size syntax of clipmod and clipmodd (src/common/size.h): 25M, 512k, 1GiB. */
        uint64_t u = 0;
        ok = !cm_parse_size(s, &u, NULL, 0) && u >= min && u <= max;
        v = u;
    } else if (ok) {
        errno = 0;
        v = strtoull(s, &end, 10);
        ok = !errno && !*end && v >= min && v <= max;
    }
    if (!ok) {
        problem(r, n, "%s must be a whole number from %llu to %llu%s, not %s%s%s", what,
                (unsigned long long)min, (unsigned long long)max,
                bytes ? " (k, M, G or T may follow, e.g. 25M)" : "",
                n->type == YAML_SCALAR_NODE ? "'" : "", n->type == YAML_SCALAR_NODE ? s : kind(n),
                n->type == YAML_SCALAR_NODE ? "'" : "");
        return -1;
    }
    *dst = v;
    return 0;
}

static void set_int(reader *r, const yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                    int *dst)
{
    uint64_t v;
    if (!uint_of(r, n, what, min, max, 0, &v))
        *dst = (int)v;
}

static int bool_of(reader *r, const yaml_node_t *n, const char *what, int *dst)
{
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (!strcmp(sval(n), "true"))
            return *dst = 1, 0;
        if (!strcmp(sval(n), "false"))
            return *dst = 0, 0;
    }
    problem(r, n, "%s must be true or false", what);
    return -1;
}

/* One of `names` (NULL-terminated); its index, or -1 after a problem. */
static int choice_of(reader *r, const yaml_node_t *n, const char *what, const char *const *names,
                     const char *listed)
{
    if (n->type == YAML_SCALAR_NODE)
        for (int i = 0; names[i]; i++)
            if (!strcmp(sval(n), names[i]))
                return i;
    problem(r, n, "%s must be %s", what, listed);
    return -1;
}

static void list_free(cmc_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* A list of addresses (`at` 1: with an '@') or domains (`at` 0), lower-cased. */
static void set_list(reader *r, const yaml_node_t *n, const char *what, int at, cmc_list *dst)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        problem(r, n, "%s must be a list, not %s", what, kind(n));
        return;
    }
    list_free(dst);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        const yaml_node_t *e = node(r, *it);
        const char *s = string_of(r, e, what);
        if (!s)
            continue;
        if (at ? !strchr(s, '@') : (strchr(s, '@') || s[0] == '.')) {
            problem(r, e,
                    at ? "%s: '%s' is not an address (user@domain, or @domain)"
                       : "%s: '%s' is not a domain (example.org)",
                    what, s);
            continue;
        }
        char **grown = realloc(dst->v, (dst->n + 1) * sizeof *grown);
        char *copy = xstrdup(r, s);
        if (!grown || !copy) {
            free(grown ? NULL : copy);
            if (grown)
                dst->v = grown;
            r->nomem = 1;
            return;
        }
        for (char *p = copy; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        dst->v = grown;
        dst->v[dst->n++] = copy;
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

/* ------------------------------------------------------------------------ */
/* Mappings                                                                 */
/* ------------------------------------------------------------------------ */

typedef void (*key_fn)(reader *r, const char *key, const yaml_node_t *val);

/*
 * Walk a mapping: every key a string, no key twice, known keys to `fn`; unknown
 * ones reported with the list of allowed keys.
 */
static void each_key(reader *r, const yaml_node_t *map, const char *what, const char *const *known,
                     key_fn fn)
{
    if (map->type != YAML_MAPPING_NODE) {
        problem(r, map, "%s must be a mapping, not %s", what, kind(map));
        return;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = node(r, p->key), *v = node(r, p->value);
        if (k->type != YAML_SCALAR_NODE) {
            problem(r, k, "keys of %s must be strings", what);
            continue;
        }
        int dup = 0;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const yaml_node_t *k2 = node(r, q->key);
            if (k2->type == YAML_SCALAR_NODE && !strcmp(sval(k2), sval(k)))
                dup = 1;
        }
        if (dup) {
            problem(r, k, "key '%s' appears twice", sval(k));
            continue;
        }
        int i;
        for (i = 0; known[i] && strcmp(known[i], sval(k)); i++)
            ;
        if (!known[i]) {
            char allowed[512] = "";
            for (int j = 0; known[j]; j++)
                snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s",
                         j ? ", " : "", known[j]);
            problem(r, k, "unknown key '%s' in %s; allowed: %s", sval(k), what, allowed);
            continue;
        }
        fn(r, sval(k), v);
    }
}

static void limits_key(reader *r, const char *key, const yaml_node_t *v)
{
    cmc_limits *l = &r->c->limits;
    char what[64];
    snprintf(what, sizeof what, "limits.%s", key);
    if (!strcmp(key, "max-message-bytes"))
        uint_of(r, v, what, 1024, UINT64_C(1) << 40, 1, &l->max_message_bytes);
    else if (!strcmp(key, "max-parts"))
        uint_of(r, v, what, 1, 1000000, 0, &l->max_parts);
    else if (!strcmp(key, "max-depth"))
        uint_of(r, v, what, 1, 100, 0, &l->max_depth);
    else if (!strcmp(key, "max-images"))
        uint_of(r, v, what, 1, 10000, 0, &l->max_images);
    else if (!strcmp(key, "max-image-bytes"))
        uint_of(r, v, what, 1, UINT64_C(1) << 40, 1, &l->max_image_bytes);
}

static void engine_mapping(reader *r, const yaml_node_t *map)
{
    if (map->type != YAML_MAPPING_NODE) {
        problem(r, map, "engine must be a mapping of engine settings, not %s", kind(map));
        return;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = node(r, p->key), *v = node(r, p->value);
        const char *name = k->type == YAML_SCALAR_NODE ? sval(k) : "";
        int s;
        for (s = 0; s < CLIPMOD_SETTING__COUNT; s++)
            if (!strcmp(name, clipmod_setting_name((clipmod_setting)s)))
                break;
        if (s == CLIPMOD_MAX_FILE_BYTES) {
            problem(r, k,
                    "engine.max-file-bytes: use limits.max-image-bytes, which the milter "
                    "applies before the engine sees an image");
            continue;
        }
        if (s == CLIPMOD_SETTING__COUNT) {
            char allowed[512] = "";
            for (int j = 0; j < CLIPMOD_SETTING__COUNT; j++)
                if (j != CLIPMOD_MAX_FILE_BYTES)
                    snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s",
                             *allowed ? ", " : "", clipmod_setting_name((clipmod_setting)j));
            problem(r, k, "unknown engine setting '%s'; known: %s", name, allowed);
            continue;
        }
        char what[64];
        uint64_t value;
        snprintf(what, sizeof what, "engine.%s", name);
        if (uint_of(r, v, what, 0, UINT64_MAX, 0, &value))
            continue;
        size_t i;
        for (i = 0; i < r->c->n_settings && r->c->settings[i].s != (clipmod_setting)s; i++)
            ;
        if (i < r->c->n_settings) {
            problem(r, k, "engine.%s appears twice", name);
            continue;
        }
        r->c->settings[r->c->n_settings].s = (clipmod_setting)s;
        r->c->settings[r->c->n_settings++].value = value;
    }
}

static void plugins_list(reader *r, const yaml_node_t *seq)
{
    if (seq->type != YAML_SEQUENCE_NODE) {
        problem(r, seq, "plugins must be a list of {path, config}, not %s", kind(seq));
        return;
    }
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        const yaml_node_t *m = node(r, *it), *path = NULL, *config = NULL;
        if (m->type != YAML_MAPPING_NODE) {
            problem(r, m, "a plugin must be a mapping {path, config}, not %s", kind(m));
            continue;
        }
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
             p++) {
            const yaml_node_t *k = node(r, p->key);
            const char *name = k->type == YAML_SCALAR_NODE ? sval(k) : "";
            if (!strcmp(name, "path"))
                path = node(r, p->value);
            else if (!strcmp(name, "config"))
                config = node(r, p->value);
            else
                problem(r, k, "unknown key '%s' in a plugin; allowed: path, config", name);
        }
        if (!path) {
            problem(r, m, "a plugin needs a path");
            continue;
        }
        const char *ps = string_of(r, path, "plugins.path");
        const char *cs = config ? string_of(r, config, "plugins.config") : "";
        if (!ps || !cs)
            continue;
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
}

static void actions_key(reader *r, const char *key, const yaml_node_t *v)
{
    static const char *const any[] = {"accept", "quarantine", "reject", "discard", NULL};
    static const char *const rej[] = {"reject", "discard", "quarantine", NULL};
    static const cmc_do rej_do[] = {CMC_DO_REJECT, CMC_DO_DISCARD, CMC_DO_QUARANTINE};
    char what[64];
    snprintf(what, sizeof what, "actions.%s", key);
    if (!strcmp(key, "reject")) {
        /* Delivering what the policy refuses is a policy change: make it there. */
        int i = choice_of(r, v, what, rej,
                          "reject, discard or quarantine (to deliver such mail, change the "
                          "policy's action)");
        if (i >= 0)
            r->c->action[CLIPMOD_ACTION_REJECT] = rej_do[i];
        return;
    }
    int i = choice_of(r, v, what, any, "accept, quarantine, reject or discard");
    if (i < 0)
        return;
    clipmod_action a = !strcmp(key, "tag")    ? CLIPMOD_ACTION_TAG
                       : !strcmp(key, "flag") ? CLIPMOD_ACTION_FLAG
                                              : CLIPMOD_ACTION_QUARANTINE;
    r->c->action[a] = (cmc_do)i;
}

static void skip_key(reader *r, const char *key, const yaml_node_t *v)
{
    cmc_config *c = r->c;
    if (!strcmp(key, "authenticated"))
        bool_of(r, v, "skip.authenticated", &c->skip_authenticated);
    else if (!strcmp(key, "senders"))
        set_list(r, v, "skip.senders", 1, &c->skip_senders);
    else if (!strcmp(key, "recipients"))
        set_list(r, v, "skip.recipients", 1, &c->skip_recipients);
    else if (!strcmp(key, "domains"))
        set_list(r, v, "skip.domains", 0, &c->skip_domains);
}

static void headers_key(reader *r, const char *key, const yaml_node_t *v)
{
    cmc_config *c = r->c;
    int summary = !strcmp(key, "summary");
    char **dst = summary ? &c->summary_header : &c->verdict_header;
    if (summary && (is_null(v) || (v->type == YAML_SCALAR_NODE && !strcmp(sval(v), "none")))) {
        free(*dst);
        *dst = NULL;
        return;
    }
    if (v->type != YAML_SCALAR_NODE || !header_name_ok(sval(v))) {
        problem(r, v, "headers.%s must be a header name (letters, digits, '-'; at most 64)%s", key,
                summary ? ", or none" : "");
        return;
    }
    free(*dst);
    *dst = xstrdup(r, sval(v));
}

/* log: {format, target, level, facility}: the values log.h takes, checked here with positions. */
static void log_key(reader *r, const char *key, const yaml_node_t *v)
{
    static const char *const formats[] = {"logfmt", "json", NULL};
    static const char *const targets[] = {"stderr", "syslog", NULL};
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const facilities[] = {"mail",   "daemon", "user",   "local0",
                                             "local1", "local2", "local3", "local4",
                                             "local5", "local6", "local7", NULL};
    cmc_log *l = &r->c->log;
    char what[32];
    int i;

    snprintf(what, sizeof what, "log.%s", key);
    if (!strcmp(key, "format")) {
        i = choice_of(r, v, what, formats, "logfmt or json");
        if (i >= 0)
            l->format = formats[i];
    } else if (!strcmp(key, "target")) {
        i = choice_of(r, v, what, targets, "stderr or syslog");
        if (i >= 0)
            l->target = targets[i];
    } else if (!strcmp(key, "level")) {
        i = choice_of(r, v, what, levels, "debug, info, warn or error");
        if (i >= 0)
            l->level = levels[i];
    } else if (!strcmp(key, "facility")) {
        i = choice_of(r, v, what, facilities, "mail, daemon, user or local0 to local7");
        if (i >= 0)
            l->facility = facilities[i];
    }
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

static void top_key(reader *r, const char *key, const yaml_node_t *v)
{
    static const char *const limits_keys[] = {"max-message-bytes", "max-parts",       "max-depth",
                                              "max-images",        "max-image-bytes", NULL};
    static const char *const action_keys[] = {"tag", "flag", "quarantine", "reject", NULL};
    static const char *const skip_keys[] = {"authenticated", "senders", "recipients", "domains",
                                            NULL};
    static const char *const header_keys[] = {"verdict", "summary", NULL};
    static const char *const log_keys[] = {"format", "target", "level", "facility", NULL};
    static const char *const fails[] = {"tempfail", "reject", "accept-with-header", NULL};
    /* The spellings of log-level before the log: block; notice was between warn and info. */
    static const char *const old_levels[] = {"error", "warning", "notice", "info", "debug", NULL};
    static const char *const old_level_values[] = {"error", "warn", "info", "info", "debug"};
    cmc_config *c = r->c;
    int i;

    if (!strcmp(key, "socket")) {
        const char *s = string_of(r, v, "socket");
        if (s && !socket_ok(s))
            problem(r, v,
                    "socket must be unix:/path, local:/path, inet:port@host or "
                    "inet6:port@host, not '%s'",
                    s);
        else if (s)
            set_string(r, v, key, &c->socket);
    } else if (!strcmp(key, "socket-mode")) {
        const char *s = v->type == YAML_SCALAR_NODE ? sval(v) : "";
        size_t n = strlen(s);
        char *end;
        long mode = strtol(s, &end, 8);
        if (n < 3 || n > 4 || *end || mode < 0 || mode > 0777)
            problem(r, v, "socket-mode must be an octal mode such as \"0660\"");
        else
            c->socket_mode = (int)mode;
    } else if (!strcmp(key, "model")) {
        set_path(r, v, key, &c->model);
    } else if (!strcmp(key, "merges")) {
        set_path(r, v, key, &c->merges);
    } else if (!strcmp(key, "policy")) {
        set_path(r, v, key, &c->policy);
    } else if (!strcmp(key, "cache-dir")) {
        if (v->type == YAML_SCALAR_NODE && !strcmp(sval(v), "none")) {
            free(c->cache_dir);
            c->cache_dir = NULL;
            c->no_cache = 1;
        } else {
            set_path(r, v, key, &c->cache_dir);
            c->no_cache = 0;
        }
    } else if (!strcmp(key, "workers")) {
        set_int(r, v, key, 0, 1024, &c->workers);
    } else if (!strcmp(key, "blas-threads")) {
        set_int(r, v, key, 1, 256, &c->blas_threads);
    } else if (!strcmp(key, "scan-wait-ms")) {
        uint_of(r, v, key, 1, 3600000, 0, &c->scan_wait_ms);
    } else if (!strcmp(key, "drain-timeout-ms")) {
        uint_of(r, v, key, 0, 3600000, 0, &c->drain_timeout_ms);
    } else if (!strcmp(key, "log")) {
        /* "log: syslog", the form before the block, is the target. */
        if (v->type == YAML_SCALAR_NODE)
            log_key(r, "target", v);
        else
            each_key(r, v, "log", log_keys, log_key);
    } else if (!strcmp(key, "log-facility")) {
        log_key(r, "facility", v);
    } else if (!strcmp(key, "log-level")) {
        i = choice_of(r, v, key, old_levels, "error, warning, notice, info or debug");
        if (i >= 0)
            c->log.level = old_level_values[i];
    } else if (!strcmp(key, "limits")) {
        each_key(r, v, "limits", limits_keys, limits_key);
    } else if (!strcmp(key, "engine")) {
        engine_mapping(r, v);
    } else if (!strcmp(key, "plugins")) {
        plugins_list(r, v);
    } else if (!strcmp(key, "on-fail")) {
        if ((i = choice_of(r, v, key, fails, "tempfail, reject or accept-with-header")) >= 0)
            c->on_fail = (cmc_fail)i;
    } else if (!strcmp(key, "on-fail-reply")) {
        r->on_fail_reply_node = v;
    } else if (!strcmp(key, "actions")) {
        each_key(r, v, "actions", action_keys, actions_key);
    } else if (!strcmp(key, "skip")) {
        each_key(r, v, "skip", skip_keys, skip_key);
    } else if (!strcmp(key, "headers")) {
        each_key(r, v, "headers", header_keys, headers_key);
    } else if (!strcmp(key, "archives-with-images") || !strcmp(key, "documents-with-images")) {
        static const char *const inside[] = {"accept", "quarantine", "tempfail", "reject", NULL};
        if ((i = choice_of(r, v, key, inside, "accept, quarantine, tempfail or reject")) >= 0)
            *(key[0] == 'a' ? &c->archives_with_images : &c->documents_with_images) = (cmc_inside)i;
    }
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
    free(c->verdict_header);
    free(c->summary_header);
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

/* Read the whole file (at most MAX_FILE_BYTES) into a NUL-terminated buffer. */
static char *slurp(reader *r, size_t *len)
{
    FILE *f = fopen(r->path, "rb");
    char *buf = NULL;
    size_t n = 0;

    if (!f) {
        problem(r, NULL, "%s", strerror(errno));
        return NULL;
    }
    if (!(buf = malloc(MAX_FILE_BYTES + 1))) {
        r->nomem = 1;
        goto out;
    }
    n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        problem(r, NULL, "%s", strerror(errno));
        free(buf);
        buf = NULL;
    } else if (n > MAX_FILE_BYTES) {
        problem(r, NULL, "larger than %d bytes", MAX_FILE_BYTES);
        free(buf);
        buf = NULL;
    } else {
        buf[n] = 0;
        *len = n;
    }
out:
    fclose(f);
    return buf;
}

/* Anchors, aliases and tags have no use here; refuse them as policies do. */
static void check_plain_yaml(reader *r, const char *buf, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, docs = 0;

    if (!yaml_parser_initialize(&p)) {
        r->nomem = 1;
        return;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev))
            break; /* reported by the document loader */
        yaml_node_t at = {.start_mark = ev.start_mark};
        if (ev.type == YAML_ALIAS_EVENT)
            problem(r, &at, "aliases are not allowed");
        else if ((ev.type == YAML_SCALAR_EVENT && ev.data.scalar.anchor) ||
                 (ev.type == YAML_SEQUENCE_START_EVENT && ev.data.sequence_start.anchor) ||
                 (ev.type == YAML_MAPPING_START_EVENT && ev.data.mapping_start.anchor))
            problem(r, &at, "anchors are not allowed");
        else if ((ev.type == YAML_SCALAR_EVENT && ev.data.scalar.tag) ||
                 (ev.type == YAML_SEQUENCE_START_EVENT && ev.data.sequence_start.tag) ||
                 (ev.type == YAML_MAPPING_START_EVENT && ev.data.mapping_start.tag))
            problem(r, &at, "tags are not allowed");
        if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs == 2)
            problem(r, &at, "only one YAML document is allowed");
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) {
            if (++depth == MAX_DEPTH + 1)
                problem(r, &at, "nested more than %d levels deep", MAX_DEPTH);
        } else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        int done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (done)
            break;
    }
    yaml_parser_delete(&p);
}

int cmc_load(const char *path, cmc_config **out, char **problems)
{
    static const char *const top_keys[] = {"socket",
                                           "socket-mode",
                                           "model",
                                           "merges",
                                           "policy",
                                           "cache-dir",
                                           "workers",
                                           "blas-threads",
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
                                           NULL};
    reader r = {.path = path};
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_parser = 0, have_doc = 0, rc = -1;
    char *buf = NULL;
    size_t len = 0;
    const char *slash;

    *out = NULL;
    if (problems)
        *problems = NULL;
    r.problems = open_memstream(&r.pbuf, &r.plen);
    if (!r.problems || !(r.c = defaults())) {
        r.nomem = 1;
        goto out;
    }
    if (!(r.c->path = strdup(path))) {
        r.nomem = 1;
        goto out;
    }
    /* "conf/m.yaml" -> "conf", "/m.yaml" -> "", "m.yaml" -> none: relative to cwd. */
    if ((slash = strrchr(path, '/')) && !(r.dir = strndup(path, (size_t)(slash - path)))) {
        r.nomem = 1;
        goto out;
    }
    if (!(buf = slurp(&r, &len)))
        goto out;
    check_plain_yaml(&r, buf, len);
    if (!yaml_parser_initialize(&parser)) {
        r.nomem = 1;
        goto out;
    }
    have_parser = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_node_t at = {.start_mark = parser.problem_mark};
        problem(&r, &at, "YAML syntax: %s%s%s", parser.problem ? parser.problem : "error",
                parser.context ? " " : "", parser.context ? parser.context : "");
        goto out;
    }
    have_doc = 1;
    r.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || is_null(root)) {
        problem(&r, NULL, "the file is empty; model and policy are required");
        goto out;
    }
    each_key(&r, root, "the configuration", top_keys, top_key);

    cmc_config *c = r.c;
    if (!c->model)
        problem(&r, NULL, "model is required (the model directory)");
    if (!c->policy)
        problem(&r, NULL, "policy is required (the policy file)");
    if (!c->limits.max_image_bytes)
        c->limits.max_image_bytes = c->limits.max_message_bytes;
    /* The reply must agree with what OnFail does. */
    if (r.on_fail_reply_node) {
        const yaml_node_t *v = r.on_fail_reply_node;
        const char *s = string_of(&r, v, "on-fail-reply");
        if (s && c->on_fail == CMC_FAIL_ACCEPT)
            problem(&r, v, "on-fail-reply is not used with on-fail: accept-with-header");
        else if (s && cmc_parse_reply(s, &c->on_fail_reply))
            problem(&r, v,
                    "on-fail-reply must be an SMTP reply: a 4xx or 5xx code, an optional "
                    "enhanced code of the same class, text (printable ASCII)");
        else if (s && c->on_fail == CMC_FAIL_TEMPFAIL && c->on_fail_reply.rcode[0] != '4')
            problem(&r, v, "on-fail-reply must be a 4xx reply with on-fail: tempfail");
        else if (s && c->on_fail == CMC_FAIL_REJECT && c->on_fail_reply.rcode[0] != '5')
            problem(&r, v, "on-fail-reply must be a 5xx reply with on-fail: reject");
    } else {
        cmc_parse_reply(c->on_fail == CMC_FAIL_REJECT ? DEF_REJECT_REPLY : DEF_TEMPFAIL_REPLY,
                        &c->on_fail_reply);
    }
    if (!r.nomem && !r.n_problems)
        rc = 0;
out:
    if (r.nomem)
        problem(&r, NULL, "out of memory");
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    free(buf);
    free(r.dir);
    if (r.problems)
        fclose(r.problems);
    if (rc == 0) {
        *out = r.c;
        free(r.pbuf);
    } else {
        cmc_free(r.c);
        if (problems)
            *problems = r.pbuf;
        else
            free(r.pbuf);
    }
    return rc;
}
