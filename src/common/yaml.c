/*
 * yaml.c - the YAML reader with positions (see yaml.h), extracted from the policy
 * parser of src/lib/policy.c so that policies and the programs' configurations are
 * read by the same code with the same refusals and the same messages.
 *
 * A document's nodes and strings live in one arena of 64 KiB blocks: one free for
 * the whole tree, and a bounded number of allocations for a hostile file. Inside
 * libclipmod (CLIPMOD_BUILDING_LIBRARY) every allocation goes through cm_alloc so
 * that allocation-failure injection (tests/oom.sh) reaches the policy parser here.
 */
#include "yaml.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "arena.h"
#include "size.h"
#include "suggest.h"

#ifdef CLIPMOD_BUILDING_LIBRARY
#include "common.h"
#define Y_ALLOC(n)      cm_alloc(n)
#define Y_REALLOC(p, n) cm_realloc((p), (n))
#define Y_FREE(p)       cm_free(p)
#else
#define Y_ALLOC(n)      malloc(n)
#define Y_REALLOC(p, n) realloc((p), (n))
#define Y_FREE(p)       free(p)
#endif

struct cm_ydoc {
    cm_arena mem; /* every node and string of the document */
    cm_ynode *root;
};

/* ------------------------------------------------------------------------ */
/* Arena and reports                                                        */
/* ------------------------------------------------------------------------ */

/* Zeroed memory from the document; NULL if out of memory. */
static void *ya_alloc(cm_ydoc *d, size_t n)
{
    return cm_arena_alloc(&d->mem, n);
}

void cm_yaml_free(cm_ydoc *d)
{
    if (!d)
        return;
    cm_arena_release(&d->mem);
    Y_FREE(d);
}

const cm_ynode *cm_yaml_root(const cm_ydoc *d)
{
    return d ? d->root : NULL;
}

static void report(const cm_yreport *rep, cm_ypos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(const cm_yreport *rep, cm_ypos pos, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;

    if (!rep || !rep->fn)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rep->fn(rep->arg, pos, msg);
}

void cm_yaml_show(const char *s, size_t len, size_t max, char *out, size_t size)
{
    static const char cut[] = "...";
    if (max > size - sizeof cut) /* room for the mark and the NUL */
        max = size - sizeof cut;
    size_t n = len > max ? max : len;
    if (n < len)
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    for (size_t i = 0; i < n; i++)
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7F) ? '?' : s[i];
    if (n < len)
        memcpy(out + n, cut, sizeof cut);
    else
        out[n] = '\0';
}

/* ------------------------------------------------------------------------ */
/* YAML to tree                                                             */
/* ------------------------------------------------------------------------ */

typedef struct parse_state {
    cm_ydoc *doc;
    const char *file, *noun;
    const unsigned char *buf;
    size_t len;
    const cm_yreport *rep;
    int nomem;
} parse_state;

static cm_ypos mark_pos(const char *file, yaml_mark_t m)
{
    return (cm_ypos){file, (int)m.line + 1, (int)m.column + 1};
}

/* 1-based line and column (in characters) of byte `off` of buf, as libyaml counts. */
static cm_ypos offset_pos(const char *file, const unsigned char *buf, size_t len, size_t off)
{
    cm_ypos p = {file, 1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            p.line++;
            p.column = 1;
        } else if ((buf[i] & 0xC0) != 0x80) {
            p.column++;
        }
    }
    return p;
}

static void parser_error(parse_state *ps, const yaml_parser_t *parser)
{
    const char *what = parser->problem ? parser->problem : "unknown error";

    if (parser->error == YAML_MEMORY_ERROR) {
        ps->nomem = 1;
    } else if (parser->error == YAML_READER_ERROR) {
        report(ps->rep, offset_pos(ps->file, ps->buf, ps->len, parser->problem_offset),
               "unreadable text: %s", what);
    } else if (parser->context) {
        report(ps->rep, mark_pos(ps->file, parser->problem_mark),
               "YAML syntax error: %s (%s at line %d, column %d)", what, parser->context,
               (int)parser->context_mark.line + 1, (int)parser->context_mark.column + 1);
    } else {
        report(ps->rep, mark_pos(ps->file, parser->problem_mark), "YAML syntax error: %s", what);
    }
}

/* Refuse anchors (and so aliases) and tags on a node: reported, the node still parses. */
static void check_props(parse_state *ps, cm_ypos pos, const yaml_char_t *anchor,
                        const yaml_char_t *tag, const char *allowed_tag)
{
    char buf[80];
    if (anchor) {
        cm_yaml_show((const char *)anchor, strlen((const char *)anchor), 40, buf, sizeof buf);
        report(ps->rep, pos, "YAML anchors and aliases are not allowed ('&%s')", buf);
    }
    if (tag && (!allowed_tag || strcmp((const char *)tag, allowed_tag))) {
        cm_yaml_show((const char *)tag, strlen((const char *)tag), 40, buf, sizeof buf);
        report(ps->rep, pos, "YAML tags are not supported ('%s')", buf);
    }
}

static cm_ynode *new_node(parse_state *ps, cm_ykind kind, cm_ypos pos)
{
    cm_ynode *n = ya_alloc(ps->doc, sizeof *n);
    if (!n) {
        ps->nomem = 1;
        return NULL;
    }
    n->kind = kind;
    n->pos = pos;
    return n;
}

static cm_ynode *scalar_node(parse_state *ps, const yaml_event_t *ev, cm_ypos pos)
{
    check_props(ps, pos, ev->data.scalar.anchor, ev->data.scalar.tag, "tag:yaml.org,2002:str");
    cm_ynode *n = new_node(ps, CM_Y_SCALAR, pos);
    if (!n)
        return NULL;
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.tag != NULL;
    n->len = ev->data.scalar.length;
    char *s = ya_alloc(ps->doc, n->len + 1);
    if (!s) {
        ps->nomem = 1;
        return NULL;
    }
    memcpy(s, ev->data.scalar.value, n->len);
    n->s = s;
    return n;
}

/*
 * The node an event starts (NULL for events that start none). Sets *stop to 1 for
 * the end of the stream and to -1 for a refused second document.
 */
static cm_ynode *event_node(parse_state *ps, const yaml_event_t *ev, int *docs, int *stop)
{
    cm_ypos pos = mark_pos(ps->file, ev->start_mark);
    char a[80];

    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        *stop = 1;
        return NULL;
    case YAML_DOCUMENT_START_EVENT:
        if (++*docs > 1) {
            report(ps->rep, pos, "%s holds one YAML document; this is a second one", ps->noun);
            *stop = -1;
        }
        return NULL;
    case YAML_ALIAS_EVENT:
        cm_yaml_show((const char *)ev->data.alias.anchor,
                     strlen((const char *)ev->data.alias.anchor), 40, a, sizeof a);
        report(ps->rep, pos, "YAML anchors and aliases are not allowed ('*%s')", a);
        return new_node(ps, CM_Y_BAD, pos);
    case YAML_SCALAR_EVENT:
        return scalar_node(ps, ev, pos);
    case YAML_SEQUENCE_START_EVENT:
        check_props(ps, pos, ev->data.sequence_start.anchor, ev->data.sequence_start.tag,
                    "tag:yaml.org,2002:seq");
        return new_node(ps, CM_Y_SEQ, pos);
    case YAML_MAPPING_START_EVENT:
        check_props(ps, pos, ev->data.mapping_start.anchor, ev->data.mapping_start.tag,
                    "tag:yaml.org,2002:map");
        return new_node(ps, CM_Y_MAP, pos);
    default:
        return NULL;
    }
}

static void attach(cm_ynode *parent, cm_ynode *n)
{
    if (parent->last)
        parent->last->next = n;
    else
        parent->first = n;
    parent->last = n;
    parent->n++;
}

/* The event loop: CM_YAML_OK, CM_YAML_BAD (reported) or CM_YAML_NOMEM. */
static int build_tree(parse_state *ps, yaml_parser_t *parser)
{
    cm_ynode *stack[CM_YAML_MAX_DEPTH];
    int depth = 0, docs = 0;
    yaml_event_t ev;

    for (;;) {
        int stop = 0;
        if (!yaml_parser_parse(parser, &ev)) {
            parser_error(ps, parser);
            return ps->nomem ? CM_YAML_NOMEM : CM_YAML_BAD;
        }
        cm_ynode *n = event_node(ps, &ev, &docs, &stop);
        if ((ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) && depth > 0)
            depth--;
        cm_ypos pos = mark_pos(ps->file, ev.start_mark);
        yaml_event_delete(&ev);
        if (ps->nomem)
            return CM_YAML_NOMEM;
        if (stop)
            return stop > 0 ? CM_YAML_OK : CM_YAML_BAD;
        if (!n)
            continue;
        if (depth == 0)
            ps->doc->root = n;
        else
            attach(stack[depth - 1], n);
        if (n->kind == CM_Y_SEQ || n->kind == CM_Y_MAP) {
            if (depth == CM_YAML_MAX_DEPTH) {
                report(ps->rep, pos, "nesting deeper than %d levels", CM_YAML_MAX_DEPTH);
                return CM_YAML_BAD;
            }
            stack[depth++] = n;
        }
    }
}

int cm_yaml_parse(const char *file, const void *buf, size_t len, const char *noun,
                  const cm_yreport *rep, cm_ydoc **out)
{
    yaml_parser_t parser;
    parse_state ps = {NULL, file, noun ? noun : "a YAML file", buf, len, rep, 0};
    int rc;

    *out = NULL;
    ps.doc = Y_ALLOC(sizeof *ps.doc);
    if (!ps.doc)
        return CM_YAML_NOMEM;
    ps.doc->mem.head = NULL;
    ps.doc->root = NULL;
    if (!yaml_parser_initialize(&parser)) {
        Y_FREE(ps.doc);
        return CM_YAML_NOMEM;
    }
    yaml_parser_set_input_string(&parser, buf, len);
    rc = build_tree(&ps, &parser);
    yaml_parser_delete(&parser);
    if (rc != CM_YAML_OK) {
        cm_yaml_free(ps.doc);
        return rc;
    }
    *out = ps.doc;
    return CM_YAML_OK;
}

/* Read at most max bytes of a regular file; 0, or -1 with why set (errno text or a reason). */
static int slurp(const char *path, size_t max, unsigned char **out, size_t *len, const char **why)
{
    struct stat st;
    unsigned char *buf = NULL;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;

    *why = NULL;
    if (fd < 0)
        goto out;
    if (fstat(fd, &st) < 0)
        goto out;
    if (!S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        *why = "too large";
        goto out;
    }
    buf = Y_ALLOC((size_t)st.st_size + 1);
    if (!buf) {
        *why = "out of memory";
        goto out;
    }
    while (n <= (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto out;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > (size_t)st.st_size) {
        *why = "grew while being read";
        goto out;
    }
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    if (rc < 0 && !*why)
        *why = strerror(errno);
    Y_FREE(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

int cm_yaml_parse_file(const char *path, size_t max_bytes, const char *noun, const cm_yreport *rep,
                       cm_ydoc **out)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    const char *why;

    *out = NULL;
    if (!max_bytes)
        max_bytes = 1u << 20;
    if (slurp(path, max_bytes, &buf, &len, &why) < 0) {
        if (!strcmp(why, "too large"))
            report(rep, (cm_ypos){path, 0, 0}, "larger than %zu bytes", max_bytes);
        else
            report(rep, (cm_ypos){path, 0, 0}, "cannot read: %s", why);
        return CM_YAML_BAD;
    }
    int rc = cm_yaml_parse(path, buf, len, noun, rep, out);
    Y_FREE(buf);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Node helpers                                                             */
/* ------------------------------------------------------------------------ */

int cm_ynode_is_null(const cm_ynode *n)
{
    return n->kind == CM_Y_SCALAR && !n->quoted &&
           (!strcmp(n->s, "") || !strcmp(n->s, "~") || !strcmp(n->s, "null") ||
            !strcmp(n->s, "Null") || !strcmp(n->s, "NULL"));
}

int cm_ynode_is(const cm_ynode *n, const char *s)
{
    return n->kind == CM_Y_SCALAR && n->len == strlen(s) && !memcmp(n->s, s, n->len);
}

const cm_ynode *cm_ymap_get(const cm_ynode *map, const char *key)
{
    if (!map || map->kind != CM_Y_MAP)
        return NULL;
    for (const cm_ynode *k = map->first; k && k->next; k = k->next->next)
        if (cm_ynode_is(k, key))
            return k->next;
    return NULL;
}

const char *cm_ynode_describe(const cm_ynode *n, char *buf, size_t buflen)
{
    char t[64];
    switch (n->kind) {
    case CM_Y_MAP:
        return "a mapping";
    case CM_Y_SEQ:
        return "a list";
    case CM_Y_BAD:
        return "an alias";
    default:
        break;
    }
    if (cm_ynode_is_null(n))
        return "an empty value";
    cm_yaml_show(n->s, n->len, 40, t, sizeof t);
    snprintf(buf, buflen, n->quoted ? "\"%s\"" : "'%s'", t);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Typed reads                                                              */
/* ------------------------------------------------------------------------ */

int cm_yread_str(const cm_ynode *v, const char *what, int allow_empty, const cm_yreport *rep,
                 const char **out)
{
    char buf[80];
    if (v->kind == CM_Y_BAD)
        return -1;
    if (v->kind != CM_Y_SCALAR || cm_ynode_is_null(v)) {
        report(rep, v->pos, "%s must be a string, not %s", what,
               cm_ynode_describe(v, buf, sizeof buf));
        return -1;
    }
    if (memchr(v->s, '\0', v->len)) {
        report(rep, v->pos, "%s contains a NUL character", what);
        return -1;
    }
    if (!allow_empty && !v->s[strspn(v->s, " \t\r\n\f\v")]) {
        report(rep, v->pos, "%s is empty", what);
        return -1;
    }
    *out = v->s;
    return 0;
}

int cm_yread_bool(const cm_ynode *v, const char *what, const cm_yreport *rep, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    char buf[80];

    if (v->kind == CM_Y_BAD)
        return -1;
    if (v->kind == CM_Y_SCALAR && !v->quoted) {
        for (size_t i = 0; i < 3; i++) {
            if (v->len == strlen(yes[i]) && !strncasecmp(v->s, yes[i], v->len)) {
                *out = 1;
                return 0;
            }
            if (v->len == strlen(no[i]) && !strncasecmp(v->s, no[i], v->len)) {
                *out = 0;
                return 0;
            }
        }
    }
    report(rep, v->pos, "%s must be true or false, not %s", what,
           cm_ynode_describe(v, buf, sizeof buf));
    return -1;
}

/* A plain decimal integer with optional sign, checked for overflow; 0 with *out. */
static int parse_ll(const cm_ynode *v, long long *out)
{
    const char *s = v->s;
    unsigned long long x = 0, lim;
    int neg = 0;

    if (v->kind != CM_Y_SCALAR || v->quoted || strlen(v->s) != v->len)
        return -1;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    lim = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (x > (lim - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out =
        neg ? (x == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)x) : (long long)x;
    return 0;
}

int cm_yread_int(const cm_ynode *v, const char *what, long long min, long long max,
                 const cm_yreport *rep, long long *out)
{
    char buf[80];
    long long i;

    if (v->kind == CM_Y_BAD)
        return -1;
    if (parse_ll(v, &i) < 0 || i < min || i > max) {
        report(rep, v->pos, "%s must be an integer from %lld to %lld, not %s", what, min, max,
               cm_ynode_describe(v, buf, sizeof buf));
        return -1;
    }
    *out = i;
    return 0;
}

int cm_yread_size(const cm_ynode *v, const char *what, uint64_t max, const cm_yreport *rep,
                  uint64_t *out)
{
    char buf[80], err[160], lim[24];
    uint64_t x;

    if (v->kind == CM_Y_BAD)
        return -1;
    if (v->kind != CM_Y_SCALAR || cm_ynode_is_null(v) || strlen(v->s) != v->len) {
        report(rep, v->pos, "%s must be a size such as 25M, not %s", what,
               cm_ynode_describe(v, buf, sizeof buf));
        return -1;
    }
    if (cm_parse_size(v->s, &x, err, sizeof err) < 0) {
        report(rep, v->pos, "%s: %s", what, err);
        return -1;
    }
    if (x > max) {
        report(rep, v->pos, "%s is larger than the maximum %s", what,
               cm_format_size(max, lim, sizeof lim));
        return -1;
    }
    *out = x;
    return 0;
}

int cm_yread_duration_ms(const cm_ynode *v, const char *what, uint64_t max_ms,
                         const cm_yreport *rep, uint64_t *out)
{
    char buf[80], err[160];
    uint64_t x;

    if (v->kind == CM_Y_BAD)
        return -1;
    if (v->kind != CM_Y_SCALAR || cm_ynode_is_null(v) || strlen(v->s) != v->len) {
        report(rep, v->pos, "%s must be a duration such as 10s, not %s", what,
               cm_ynode_describe(v, buf, sizeof buf));
        return -1;
    }
    if (cm_parse_duration_ms(v->s, &x, err, sizeof err) < 0) {
        report(rep, v->pos, "%s: %s", what, err);
        return -1;
    }
    if (x > max_ms) {
        report(rep, v->pos, "%s is longer than the maximum %llu ms", what,
               (unsigned long long)max_ms);
        return -1;
    }
    *out = x;
    return 0;
}

int cm_yread_strlist(const cm_ynode *v, const char *what, size_t max, const cm_yreport *rep,
                     const char ***out, size_t *n)
{
    char buf[80];
    const char **list = NULL;
    size_t count = 0;
    int bad = 0;

    *out = NULL;
    *n = 0;
    if (v->kind == CM_Y_BAD)
        return -1;
    if (v->kind == CM_Y_SCALAR && !cm_ynode_is_null(v)) {
        count = 1;
    } else if (v->kind == CM_Y_SEQ) {
        count = v->n;
    } else if (!cm_ynode_is_null(v)) {
        report(rep, v->pos, "%s must be a list of strings, not %s", what,
               cm_ynode_describe(v, buf, sizeof buf));
        return -1;
    }
    if (count > max) {
        report(rep, v->pos, "%s has %zu items; at most %zu are allowed", what, count, max);
        return -1;
    }
    list = Y_ALLOC((count + 1) * sizeof *list);
    if (!list)
        return -1;
    const cm_ynode *item = v->kind == CM_Y_SEQ ? v->first : v;
    for (size_t i = 0; i < count; i++, item = item->next)
        if (cm_yread_str(item, what, 0, rep, &list[i]) < 0)
            bad = 1;
    list[count] = NULL;
    if (bad) {
        Y_FREE(list);
        return -1;
    }
    *out = list;
    *n = count;
    return 0;
}

/* "a, b, c" into buf; names that do not fit whole are left out and end it with ", ...". */
static void join_names(const char *const *names, size_t n, char *buf, size_t buflen)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t need = strlen(names[i]) + (i ? 2 : 0);
        /* Room for this name and for a closing ", ..." should more not fit. */
        if (used + need + 6 >= buflen) {
            snprintf(buf + used, buflen - used, "%s...", i ? ", " : "");
            return;
        }
        used += (size_t)snprintf(buf + used, buflen - used, "%s%s", i ? ", " : "", names[i]);
    }
}

/* Report an unknown key with the nearest allowed one, if any is close. */
static void unknown_key(const cm_ynode *k, const char *where, const char *const *allowed, size_t n,
                        const char *list, const cm_yreport *rep)
{
    char buf[80];
    const char *near = cm_suggest(k->s, allowed, n);
    cm_yaml_show(k->s, k->len, 40, buf, sizeof buf);
    if (near)
        report(rep, k->pos, "unknown key '%s' %s (did you mean '%s'?); allowed: %s", buf, where,
               near, list);
    else
        report(rep, k->pos, "unknown key '%s' %s; allowed: %s", buf, where, list);
}

int cm_ycheck_keys(const cm_ynode *map, const char *where, const char *const *allowed, size_t n,
                   const cm_ynode **keys, const cm_ynode **vals, const cm_yreport *rep)
{
    char buf[80], list[1024];
    const cm_ynode *first[64] = {0};
    int problems = 0;

    if (keys)
        memset(keys, 0, n * sizeof *keys);
    if (vals)
        memset(vals, 0, n * sizeof *vals);
    if (n > 64 || map->kind != CM_Y_MAP)
        return n > 64 ? -1 : 0;
    join_names(allowed, n, list, sizeof list);
    for (const cm_ynode *k = map->first; k && k->next; k = k->next->next) {
        size_t i = 0;
        if (k->kind != CM_Y_SCALAR || cm_ynode_is_null(k)) {
            if (k->kind != CM_Y_BAD)
                report(rep, k->pos, "keys must be strings, not %s",
                       cm_ynode_describe(k, buf, sizeof buf));
            problems++;
            continue;
        }
        while (i < n && !cm_ynode_is(k, allowed[i]))
            i++;
        if (i == n) {
            unknown_key(k, where, allowed, n, list, rep);
            problems++;
            continue;
        }
        if (first[i]) {
            report(rep, k->pos, "duplicate key '%s' (first at line %d, column %d)", allowed[i],
                   first[i]->pos.line, first[i]->pos.column);
            problems++;
            continue;
        }
        first[i] = k;
        if (keys)
            keys[i] = k;
        if (vals)
            vals[i] = k->next;
    }
    return problems;
}

/* ------------------------------------------------------------------------ */
/* Problem list                                                             */
/* ------------------------------------------------------------------------ */

void cm_yproblems_report(void *arg, cm_ypos pos, const char *msg)
{
    cm_yproblems *p = arg;
    char line[2048];
    size_t max = p->max ? p->max : 200;

    if (p->n >= max) {
        p->dropped++;
        return;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        char **lines = Y_REALLOC(p->lines, cap * sizeof *lines);
        if (!lines) {
            p->nomem = 1;
            return;
        }
        p->lines = lines;
        p->cap = cap;
    }
    if (pos.line > 0)
        snprintf(line, sizeof line, "%s:%d:%d: %s", pos.file, pos.line, pos.column, msg);
    else
        snprintf(line, sizeof line, "%s: %s", pos.file, msg);
    size_t len = strlen(line);
    char *copy = Y_ALLOC(len + 1);
    if (!copy) {
        p->nomem = 1;
        return;
    }
    memcpy(copy, line, len + 1);
    p->lines[p->n++] = copy;
}

char *cm_yproblems_join(const cm_yproblems *p)
{
    size_t total = 1;
    for (size_t i = 0; i < p->n; i++)
        total += strlen(p->lines[i]) + 1;
    if (p->n == 0)
        return NULL;
    char *s = Y_ALLOC(total), *o = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < p->n; i++) {
        size_t l = strlen(p->lines[i]);
        memcpy(o, p->lines[i], l);
        o[l] = '\n';
        o += l + 1;
    }
    *o = '\0';
    return s;
}

void cm_yproblems_free(cm_yproblems *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        Y_FREE(p->lines[i]);
    Y_FREE(p->lines);
    p->lines = NULL;
    p->n = p->cap = p->dropped = 0;
    p->nomem = 0;
}
