/*
 * policy.c - reading, merging and validating moderation policies (YAML).
 *
 * Owns everything between policy files on disk and an immutable cm_policy: reading
 * each file (bounded in size), parsing it with libyaml's event API into a small
 * tree whose every node keeps its file:line:column, checking every value against
 * the schema of clipmod-policy(5), following `include:`, merging the files in
 * order, the checks that need the merged policy, and the defaults. Problems are
 * collected, not returned one by one: a moderator fixes a file in one pass.
 *
 * Policy files are untrusted (a site may load policies written elsewhere), so: files
 * over 1 MiB, nesting deeper than 16 levels, anchors and aliases (the "billion laughs"
 * expansion), tags, more than 8 levels or 32 reads of includes, more than 256
 * categories or prompts per list and prompts over 1 KiB are refused before they
 * cost anything.
 *
 * Memory: everything a cm_policy points to lives in one arena freed by
 * cm_policy_free(); each file's parse tree lives in its own arena, freed as soon as
 * the file has been applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "../common/arena.h"
#include "../common/suggest.h"
#include "../common/yaml.h"
#include "common.h"
#include "head.h"
#include "policy.h"

/* The limits of clipmod-policy(5), LIMITS. */
#define MAX_FILE_BYTES    (1u << 20)
#define MAX_NESTING       16
#define MAX_INCLUDE_DEPTH 8
#define MAX_FILE_READS    32
#define MAX_CATEGORIES    256
#define MAX_PROMPTS       256
#define MAX_TEMPLATES     32
#define MAX_PROMPT_BYTES  1024
#define MAX_TEXT_BYTES    4096
#define MAX_ID_BYTES      64
#define MAX_FRAMES        64
/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets, CRLF included. */
#define MAX_SMTP_BYTES 510
/* Problems past this many are counted, not kept: the first ones are what gets fixed. */
#define MAX_PROBLEMS 200

#define DEFAULT_FRAMES 8

static const char *const action_names[CM_ACTION__COUNT] = {"allow", "tag", "flag", "quarantine",
                                                           "reject"};

/* clipmod-policy(5), ACTIONS: what each action does when the policy does not say. */
static const cm_action_text default_actions[CM_ACTION__COUNT] = {
    [CM_ACTION_ALLOW] = {NULL, 200, "Accepted."},
    [CM_ACTION_TAG] = {NULL, 200, "Accepted; the image is labelled as sensitive content."},
    [CM_ACTION_FLAG] = {NULL, 200, "Accepted; the image may be reviewed by a moderator."},
    [CM_ACTION_QUARANTINE] = {NULL, 202,
                              "Held for review: a moderator will look at the image before it "
                              "is published or delivered."},
    [CM_ACTION_REJECT] = {"550 5.7.1 Message refused: an image is not allowed by the content "
                          "policy",
                          403, "Refused: the image is not allowed by the content policy."},
};

/* ------------------------------------------------------------------------ */
/* Arena and string buffer                                                  */
/* ------------------------------------------------------------------------ */

/* The policy's arena and the compile's scratch are src/common's cm_arena. */
typedef cm_arena arena;

static void *arena_alloc(arena *a, size_t n)
{
    return cm_arena_alloc(a, n);
}

static char *arena_strndup(arena *a, const char *s, size_t len)
{
    return cm_arena_strndup(a, s, len);
}

/* Free the blocks and the arena itself (allocated with cm_calloc). */
static void arena_free(arena *a)
{
    cm_arena_release(a);
    cm_free(a);
}

typedef struct strbuf {
    char *s;
    size_t len, cap;
    int nomem;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) CM_PRINTF(2, 3);

static void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->nomem)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->nomem = 1;
        return;
    }
    if (!b->s || b->len + (size_t)n >= b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->len + (size_t)n)
            cap *= 2;
        char *s = cm_realloc(b->s, cap);
        if (!s) {
            b->nomem = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
        va_start(ap, fmt);
        vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Small text helpers                                                       */
/* ------------------------------------------------------------------------ */

/* The "did you mean" of every message (policy.h); also used by policy tuning. */
const char *cm_nearest_name(const char *s, const char *const *names, size_t n)
{
    return cm_suggest(s, names, n);
}

/* Size of the buffers what_is() and quote_text() write a value into, quotes included. */
#define SHOWN 80

/* The form prompts are compared in: ASCII lowercase, whitespace runs as one space. */
static char *normalize(arena *a, const char *s)
{
    char *d = arena_alloc(a, strlen(s) + 1), *o = d;
    int space = 0;
    if (!d)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ' ' || (c >= '\t' && c <= '\r')) {
            space = o != d;
            continue;
        }
        if (space)
            *o++ = ' ';
        space = 0;
        *o++ = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    *o = '\0';
    return d;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* ------------------------------------------------------------------------ */
/* Problems                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct problem_rec {
    int file; /* index in loader.names; files that were never read sort last */
    int line, column;
    size_t seq;
    char *text; /* the whole line, without the newline */
} problem_rec;

/* ------------------------------------------------------------------------ */
/* Parse trees                                                              */
/* ------------------------------------------------------------------------ */

/* The tree comes from the shared YAML reader (src/common/yaml.h). */
typedef cm_ynode node;
#define N_SCALAR CM_Y_SCALAR
#define N_SEQ    CM_Y_SEQ
#define N_MAP    CM_Y_MAP
#define N_BAD    CM_Y_BAD

/* ------------------------------------------------------------------------ */
/* The merged state                                                         */
/* ------------------------------------------------------------------------ */

/* A category as the files so far define it; has_* are set when a file gives the key. */
typedef struct cat_state {
    const char *id;
    cm_pos pos;      /* where first defined */
    int serial;      /* the file reading that last defined it, to find duplicates */
    cm_pos last_pos; /* its id there */
    const char *description, *message;
    cm_prompt *prompts, *contrast;
    size_t n_prompts, n_contrast;
    int has_prompts, has_contrast, has_threshold, has_action;
    int contrast_bad; /* given, but not as a list: no follow-on problems */
    double threshold;
    cm_pos threshold_pos;
    cm_action action;
    cm_pos action_pos;
    int disable;           /* 1: removed; -1 in one file's entry: not given */
    const char *head_file; /* resolved path; NULL: none */
    const unsigned char *head_bytes;
    size_t head_len;
    cm_pos head_pos;
    int has_head, has_score;
    cm_score_mode score;
    cm_pos score_pos;
    int has_context;        /* the key was given (context.mode CM_CTX_OFF: `context: false`) */
    cm_context_def context; /* replaced as a whole by a later file's `context:` */
} cat_state;

typedef struct action_state {
    const char *smtp;
    int has_smtp;
    int http;
    const char *message;
} action_state;

typedef struct file_ref {
    dev_t dev;
    ino_t ino;
    const char *name;
} file_ref;

typedef struct loader {
    arena *out; /* the policy's arena */
    int nomem, io_error;
    /* problems */
    problem_rec *recs;
    size_t n_recs, cap_recs, n_problems, dropped;
    /* files: every distinct file read (display name kept from its first reading) */
    file_ref names[MAX_FILE_READS + 1];
    int n_names, reads, serial;
    cm_fp *fp; /* the fingerprint of each distinct file's bytes, as first read */
    file_ref stack[MAX_INCLUDE_DEPTH + 1];
    cm_pos root_pos;
    /* merged values */
    const char *name, *description, *model;
    const char **templates;
    size_t n_templates;
    cm_prompt *neutral;
    size_t n_neutral;
    int neutral_bad;
    cm_prompt *context_neutral;
    size_t n_context_neutral;
    action_state actions[CM_ACTION__COUNT];
    int frames, k, has_k;
    int combine_given; /* 1; -1 if given but invalid (no follow-on problems about k) */
    cm_combine combine;
    cm_pos combine_pos, k_pos;
    cat_state *cats;
    size_t n_cats;
    int cats_bad, cats_full;
    int incomplete;       /* a file could not be read or parsed: merged checks would mislead */
    int incomplete_reads; /* "too many includes" was reported */
} loader;

static int file_index(const loader *L, const char *file)
{
    for (int i = 0; i < L->n_names; i++)
        if (L->names[i].name == file)
            return i;
    return INT_MAX;
}

static void add_problem(loader *L, const char *file, int line, int column, const char *text)
{
    L->n_problems++;
    if (L->n_recs >= MAX_PROBLEMS) {
        L->dropped++;
        return;
    }
    if (L->n_recs == L->cap_recs) {
        size_t cap = L->cap_recs ? 2 * L->cap_recs : 16;
        problem_rec *r = cm_realloc(L->recs, cap * sizeof *r);
        if (!r) {
            L->nomem = 1;
            return;
        }
        L->recs = r;
        L->cap_recs = cap;
    }
    char *t = cm_strdup(text);
    if (!t) {
        L->nomem = 1;
        return;
    }
    L->recs[L->n_recs] = (problem_rec){file_index(L, file), line, column, L->n_recs, t};
    L->n_recs++;
}

/* Report a problem at `pos`: "file:line:column: message". */
static void problem(loader *L, cm_pos pos, const char *fmt, ...) CM_PRINTF(3, 4);

static void problem(loader *L, cm_pos pos, const char *fmt, ...)
{
    char msg[1536], line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s:%d:%d: %s", pos.file, pos.line, pos.column, msg);
    add_problem(L, pos.file, pos.line, pos.column, line);
}

/* Report a problem with a whole file: "file: message". */
static void file_problem(loader *L, const char *file, const char *fmt, ...) CM_PRINTF(3, 4);

static void file_problem(loader *L, const char *file, const char *fmt, ...)
{
    char msg[1536], line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s: %s", file, msg);
    add_problem(L, file, 0, 0, line);
}

static int cmp_problem(const void *a, const void *b)
{
    const problem_rec *x = a, *y = b;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Sort the problems by file and position and join them, one per line. A file read
 * twice (included from two places) reports each of its problems once.
 */
static char *join_problems(loader *L)
{
    strbuf b = {0};
    if (!L->n_recs)
        return NULL;
    qsort(L->recs, L->n_recs, sizeof *L->recs, cmp_problem);
    for (size_t i = 0; i < L->n_recs; i++) {
        int dup = 0;
        for (size_t j = i; j-- > 0;) {
            const problem_rec *a = &L->recs[i], *p = &L->recs[j];
            if (p->file != a->file || p->line != a->line || p->column != a->column)
                break;
            if (!strcmp(p->text, a->text))
                dup = 1;
        }
        if (!dup)
            sb_printf(&b, "%s\n", L->recs[i].text);
    }
    if (L->dropped)
        sb_printf(&b, "%s: %zu more problems not shown\n", L->names[0].name, L->dropped);
    if (b.nomem) {
        cm_free(b.s);
        L->nomem = 1;
        return NULL;
    }
    return b.s;
}

/* ------------------------------------------------------------------------ */
/* YAML to tree: src/common/yaml.c; its problems join the policy's          */
/* ------------------------------------------------------------------------ */

static void yaml_problem(void *arg, cm_pos pos, const char *msg)
{
    problem(arg, pos, "%s", msg);
}

/* ------------------------------------------------------------------------ */
/* Typed values                                                             */
/* ------------------------------------------------------------------------ */

static int is_null(const node *n)
{
    return cm_ynode_is_null(n);
}

/* The scalar `n` is exactly the string `s` (no hidden NUL). */
static int is_str(const node *n, const char *s)
{
    return cm_ynode_is(n, s);
}

/* "a list", "'text'", "\"text\"" ...: how a value that does not fit is named. */
static const char *what_is(const node *n, char buf[SHOWN])
{
    char t[SHOWN - 2]; /* and two quotes */
    switch (n->kind) {
    case N_MAP:
        return "a mapping";
    case N_SEQ:
        return "a list";
    case N_BAD:
        return "an alias";
    default:
        break;
    }
    if (is_null(n))
        return "an empty value";
    cm_yaml_show(n->s, n->len, 40, t, sizeof t);
    snprintf(buf, SHOWN, n->quoted ? "\"%s\"" : "'%s'", t);
    return buf;
}

/* A prompt or other user text quoted for a message. */
static const char *quote_text(const char *s, char buf[SHOWN])
{
    char t[SHOWN - 2];
    cm_yaml_show(s, strlen(s), 48, t, sizeof t);
    snprintf(buf, SHOWN, "\"%s\"", t);
    return buf;
}

/*
 * A string value: any scalar but null. Empty (or blank) strings only if
 * `allow_empty`. Returns 1 with *out (in the policy's arena), or 0 when reported.
 */
static int want_text(loader *L, const node *v, const char *what, size_t max, int allow_empty,
                     const char **out)
{
    char buf[SHOWN];
    if (v->kind == N_BAD)
        return 0;
    if (v->kind != N_SCALAR || is_null(v)) {
        problem(L, v->pos, "%s must be a string, not %s", what, what_is(v, buf));
        return 0;
    }
    if (memchr(v->s, '\0', v->len)) {
        problem(L, v->pos, "%s contains a NUL character", what);
        return 0;
    }
    if (!allow_empty && !v->s[strspn(v->s, " \t\r\n\f\v")]) {
        problem(L, v->pos, "%s is empty", what);
        return 0;
    }
    if (v->len > max) {
        problem(L, v->pos, "%s is %zu bytes long; at most %zu are allowed", what, v->len, max);
        return 0;
    }
    *out = arena_strndup(L->out, v->s, v->len);
    if (!*out) {
        L->nomem = 1;
        return 0;
    }
    return 1;
}

/* A plain decimal integer of at most 9 digits; 1 with *out, else 0. */
static int parse_int(const node *v, int *out)
{
    const char *s = v->s;
    long val = 0;
    int neg = 0;
    if (v->kind != N_SCALAR || v->quoted)
        return 0;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    size_t nd = strspn(s, "0123456789");
    if (nd == 0 || nd > 9 || s[nd] || (size_t)(s + nd - v->s) != v->len)
        return 0;
    for (size_t i = 0; i < nd; i++)
        val = val * 10 + (s[i] - '0');
    *out = (int)(neg ? -val : val);
    return 1;
}

static int want_int(loader *L, const node *v, const char *what, int lo, int hi, int *out)
{
    char buf[SHOWN];
    int i;
    if (v->kind == N_BAD)
        return 0;
    if (!parse_int(v, &i) || i < lo || i > hi) {
        problem(L, v->pos, "%s must be an integer from %d to %d, not %s", what, lo, hi,
                what_is(v, buf));
        return 0;
    }
    *out = i;
    return 1;
}

/*
 * A plain decimal number ("0.5", ".5", "5e-1", "1"); 1 with *out, else 0. strtod reads
 * the locale's decimal point, so the text is rewritten for it first.
 */
static int parse_number(const node *v, double *out)
{
    char tmp[64], *end;
    const char *s = v->s;
    size_t i = 0, digits = 0;
    if (v->kind != N_SCALAR || v->quoted || v->len >= sizeof tmp || strlen(s) != v->len)
        return 0;
    if (s[i] == '+' || s[i] == '-')
        i++;
    for (; s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (s[i] == '.')
        for (i++; s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (!digits)
        return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '+' || s[i] == '-')
            i++;
        if (!(s[i] >= '0' && s[i] <= '9'))
            return 0;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (s[i])
        return 0;
    const char *dp = localeconv()->decimal_point;
    size_t o = 0;
    for (i = 0; s[i] && o + 4 < sizeof tmp; i++) {
        if (s[i] == '.' && dp && *dp) {
            size_t l = strlen(dp);
            if (o + l >= sizeof tmp - 1)
                return 0;
            memcpy(tmp + o, dp, l);
            o += l;
        } else {
            tmp[o++] = s[i];
        }
    }
    tmp[o] = '\0';
    errno = 0;
    *out = strtod(tmp, &end);
    return *end == '\0' && isfinite(*out);
}

/* A scalar that must be one of `names`; -1 when reported. */
static int want_enum(loader *L, const node *v, const char *what, const char *const *names, size_t n,
                     const char *list)
{
    char buf[SHOWN];
    if (v->kind == N_BAD)
        return -1;
    if (v->kind == N_SCALAR && !is_null(v)) {
        for (size_t i = 0; i < n; i++)
            if (is_str(v, names[i]))
                return (int)i;
        const char *near = cm_nearest_name(v->s, names, n);
        if (near)
            problem(L, v->pos, "unknown %s %s (did you mean '%s'?); valid: %s", what,
                    what_is(v, buf), near, list);
        else
            problem(L, v->pos, "unknown %s %s; valid: %s", what, what_is(v, buf), list);
        return -1;
    }
    problem(L, v->pos, "%s must be one of %s, not %s", what, list, what_is(v, buf));
    return -1;
}

static const char *const action_list = "allow, tag, flag, quarantine, reject";

/* A mapping's value for each of `allowed` (NULL when absent); other keys are reported. */
typedef struct field {
    const node *key, *val;
} field;

static void map_fields(loader *L, const node *m, const char *where, const char *const *allowed,
                       size_t n, field *f)
{
    char buf[SHOWN], list[256] = "";
    memset(f, 0, n * sizeof *f);
    for (size_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 allowed[i]);
    for (const node *k = m->first; k && k->next; k = k->next->next) {
        const node *v = k->next;
        size_t i = 0;
        if (k->kind != N_SCALAR || is_null(k)) {
            if (k->kind != N_BAD)
                problem(L, k->pos, "keys must be strings, not %s", what_is(k, buf));
            continue;
        }
        while (i < n && !is_str(k, allowed[i]))
            i++;
        if (i == n) {
            const char *near = cm_nearest_name(k->s, allowed, n);
            cm_yaml_show(k->s, k->len, 40, buf, sizeof buf);
            if (near)
                problem(L, k->pos, "unknown key '%s' %s (did you mean '%s'?); allowed: %s", buf,
                        where, near, list);
            else
                problem(L, k->pos, "unknown key '%s' %s; allowed: %s", buf, where, list);
            continue;
        }
        if (f[i].key) {
            problem(L, k->pos, "duplicate key '%s' (first at line %d, column %d)", allowed[i],
                    f[i].key->pos.line, f[i].key->pos.column);
            continue;
        }
        f[i].key = k;
        f[i].val = v;
    }
}

/*
 * A list of prompts. Null or [] is an empty list, reported when `need_one`.
 * Returns 1 if the key counts as given (even with bad items, which are reported),
 * 0 if it was not a usable list at all (reported).
 */
static int want_prompts(loader *L, const node *v, const char *what, int need_one, cm_prompt **out,
                        size_t *n)
{
    char buf[SHOWN];
    *out = NULL;
    *n = 0;
    if (v->kind == N_BAD)
        return 0;
    if (is_null(v) || (v->kind == N_SEQ && v->n == 0)) {
        if (need_one)
            problem(L, v->pos, "%s is empty: a category needs at least one prompt", what);
        return 1;
    }
    if (v->kind != N_SEQ) {
        problem(L, v->pos, "%s must be a list of strings, not %s", what, what_is(v, buf));
        return 0;
    }
    if (v->n > MAX_PROMPTS) {
        problem(L, v->pos, "%s has %zu prompts; at most %d are allowed", what, v->n, MAX_PROMPTS);
        return 0;
    }
    cm_prompt *p = arena_alloc(L->out, v->n * sizeof *p);
    if (!p) {
        L->nomem = 1;
        return 1;
    }
    for (const node *item = v->first; item; item = item->next)
        if (want_text(L, item, "prompt", MAX_PROMPT_BYTES, 0, &p[*n].text))
            p[(*n)++].pos = item->pos;
    *out = p;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Applying one file                                                        */
/* ------------------------------------------------------------------------ */

static int valid_id(const char *s, size_t len)
{
    if (len == 0 || len > MAX_ID_BYTES || strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
        if (!ok)
            return 0;
    }
    return 1;
}

static cat_state *find_cat(loader *L, const char *id)
{
    for (size_t i = 0; i < L->n_cats; i++)
        if (!strcmp(L->cats[i].id, id))
            return &L->cats[i];
    return NULL;
}

/* A category id near `id` (another category's), for "did you mean". */
static const char *near_cat(loader *L, const char *id, int need_prompts)
{
    const char *names[MAX_CATEGORIES];
    size_t n = 0;
    for (size_t i = 0; i < L->n_cats; i++)
        if (!need_prompts || L->cats[i].has_prompts)
            names[n++] = L->cats[i].id;
    return cm_nearest_name(id, names, n);
}

/* In the order of cm_score_mode. */
static const char *const score_names[] = {"prompts", "head", "max", "mean"};

static int slurp(const char *path, unsigned char **out, size_t *len, struct stat *st, size_t max,
                 char *why, size_t size);

/* `head: FILE`, relative to the directory of the file being read. */
static char *head_path(loader *L, const char *from, const char *file, size_t len)
{
    const char *slash = strrchr(from, '/');
    size_t dir = file[0] == '/' || !slash ? 0 : (size_t)(slash - from) + 1;
    char *path = arena_alloc(L->out, dir + len + 1);
    if (!path) {
        L->nomem = 1;
        return NULL;
    }
    memcpy(path, from, dir);
    memcpy(path + dir, file, len);
    path[dir + len] = 0;
    return path;
}

/*
 * Read the head file a category names, add its bytes to the fingerprint, and check
 * what can be checked without a model (the format, the category it was trained
 * for); the engine checks the model and dimension when it compiles.
 */
static void apply_head(loader *L, const node *v, const char *id, cat_state *t)
{
    char buf[SHOWN], why[CLIPMOD_ERROR_SIZE];
    const char *file = NULL;
    unsigned char *bytes = NULL;
    size_t len = 0;
    struct stat st;
    cm_head *h = NULL;

    if (!want_text(L, v, "head", PATH_MAX, 0, &file))
        return;
    t->head_pos = v->pos;
    t->has_head = 1;
    t->head_file = head_path(L, v->pos.file, file, strlen(file));
    if (!t->head_file)
        return;
    int unread = slurp(t->head_file, &bytes, &len, &st, CM_HEAD_MAX_BYTES, why, sizeof why);
    if (unread) {
        L->nomem |= unread == -2;
        problem(L, v->pos, "cannot read head %s: %s", quote_text(file, buf), why);
        return;
    }
    /* Messages name the file as the policy writes it: "head heads/x.safetensors: ...". */
    clipmod_error rc = cm_head_parse(bytes, len, file, 0, NULL, id, &h, why);
    if (rc == CLIPMOD_E_NOMEM)
        L->nomem = 1;
    else if (rc)
        problem(L, v->pos, "head %s", why);
    else {
        t->head_bytes = arena_alloc(L->out, len);
        if (t->head_bytes) {
            memcpy((void *)t->head_bytes, bytes, len);
            t->head_len = len;
            cm_fp_add(L->fp, t->head_file, bytes, len);
        } else {
            L->nomem = 1;
        }
    }
    cm_head_free(h);
    cm_free(bytes);
}

static const char *const ctx_mode_names[] = {"off", "raise", "alone", "both"};

/* A number in [lo, hi] (lo excluded when `open_lo`); 0 when reported. */
static int want_unit(loader *L, const node *v, const char *what, double lo, int open_lo,
                     double *out)
{
    char buf[SHOWN];
    if (v->kind == N_BAD)
        return 0;
    if (parse_number(v, out) && (open_lo ? *out > lo : *out >= lo) && *out <= 1)
        return 1;
    problem(L, v->pos, "%s must be a number %s %g and at most 1, not %s", what,
            open_lo ? "greater than" : "of at least", lo, what_is(v, buf));
    return 0;
}

/*
 * `context:` of a category: a mapping (prompts, weight, mode, threshold; {} for every
 * default), or false to turn off a context an included file set.
 */
static void apply_context(loader *L, const node *v, cat_state *t)
{
    enum { PROMPTS, WEIGHT, MODE, THRESHOLD, NKEYS };
    static const char *const keys[NKEYS] = {"prompts", "weight", "mode", "threshold"};
    field f[NKEYS];
    char buf[SHOWN];
    cm_context_def *d = &t->context;

    t->has_context = 1;
    *d = (cm_context_def){CM_CTX_RAISE, NULL, 0, 0.35, 0.5, v->pos};
    if (v->kind == N_BAD)
        return;
    if (!v->quoted && (is_str(v, "false") || is_str(v, "off"))) {
        d->mode = CM_CTX_OFF;
        return;
    }
    if (v->kind != N_MAP) {
        problem(L, v->pos,
                "context must be a mapping (prompts, weight, mode, threshold; {} for the "
                "defaults) or false, not %s",
                what_is(v, buf));
        return;
    }
    map_fields(L, v, "in context", keys, NKEYS, f);
    if (f[PROMPTS].val)
        want_prompts(L, f[PROMPTS].val, "context.prompts", 1, &d->prompts, &d->n_prompts);
    if (f[WEIGHT].val)
        want_unit(L, f[WEIGHT].val, "context.weight", 0, 0, &d->weight);
    if (f[THRESHOLD].val)
        want_unit(L, f[THRESHOLD].val, "context.threshold", 0, 1, &d->threshold);
    if (f[MODE].val) {
        int m =
            want_enum(L, f[MODE].val, "context.mode", ctx_mode_names + 1, 3, "raise, alone, both");
        d->mode = m < 0 ? CM_CTX_RAISE : (cm_ctx_mode)(m + 1);
    }
}

/* A category's keys, in the order map_fields fills f[]. */
enum {
    C_ID,
    C_DESCRIPTION,
    C_PROMPTS,
    C_CONTRAST,
    C_THRESHOLD,
    C_ACTION,
    C_MESSAGE,
    C_DISABLE,
    C_HEAD,
    C_SCORE,
    C_CONTEXT,
    C_NKEYS
};

/* The category's id when it is valid (arena copy), else NULL after a problem. */
static const char *category_id(loader *L, const node *c, const node *v)
{
    char buf[SHOWN];
    const char *id = NULL;

    if (!v) {
        problem(L, c->pos, "category has no id");
    } else if (v->kind == N_SCALAR && !is_null(v)) {
        if (valid_id(v->s, v->len)) {
            id = arena_strndup(L->out, v->s, v->len);
            if (!id)
                L->nomem = 1;
        } else {
            problem(L, v->pos,
                    "invalid category id %s: use lowercase letters, digits, '_' and '-', "
                    "starting with a letter or digit, at most %d bytes",
                    what_is(v, buf), MAX_ID_BYTES);
        }
    } else if (v->kind != N_BAD) {
        problem(L, v->pos, "id must be a string, not %s", what_is(v, buf));
    }
    return id;
}

/* Every key but id read into t (only the keys present set their has_ flags). */
static void read_category(loader *L, const field *f, const char *id, cat_state *t)
{
    char buf[SHOWN];

    t->disable = -1;
    if (f[C_DESCRIPTION].val)
        want_text(L, f[C_DESCRIPTION].val, "description", MAX_TEXT_BYTES, 1, &t->description);
    if (f[C_MESSAGE].val)
        want_text(L, f[C_MESSAGE].val, "message", MAX_TEXT_BYTES, 1, &t->message);
    if (f[C_PROMPTS].val) {
        want_prompts(L, f[C_PROMPTS].val, "prompts", 1, &t->prompts, &t->n_prompts);
        t->has_prompts = 1;
    }
    if (f[C_CONTRAST].val) {
        t->contrast_bad =
            !want_prompts(L, f[C_CONTRAST].val, "contrast", 0, &t->contrast, &t->n_contrast);
        t->has_contrast = 1;
    }
    if (f[C_THRESHOLD].val) {
        const node *v = f[C_THRESHOLD].val;
        t->has_threshold = 1;
        t->threshold_pos = v->pos;
        if (v->kind != N_BAD &&
            (!parse_number(v, &t->threshold) || !(t->threshold > 0 && t->threshold <= 1)))
            problem(L, v->pos, "threshold must be a number greater than 0 and at most 1, not %s",
                    what_is(v, buf));
    }
    if (f[C_ACTION].val) {
        int a =
            want_enum(L, f[C_ACTION].val, "action", action_names, CM_ACTION__COUNT, action_list);
        t->has_action = 1;
        t->action = a < 0 ? CM_ACTION_ALLOW : (cm_action)a;
        t->action_pos = f[C_ACTION].val->pos;
    }
    if (f[C_HEAD].val)
        apply_head(L, f[C_HEAD].val, id, t);
    if (f[C_SCORE].val) {
        int m = want_enum(L, f[C_SCORE].val, "score", score_names, 4, "head, prompts, max, mean");
        t->has_score = m >= 0;
        t->score = m < 0 ? CM_SCORE_PROMPTS : (cm_score_mode)m;
        t->score_pos = f[C_SCORE].val->pos;
    }
    if (f[C_CONTEXT].val)
        apply_context(L, f[C_CONTEXT].val, t);
    if (f[C_DISABLE].val) {
        const node *v = f[C_DISABLE].val;
        if (!v->quoted && (is_str(v, "true") || is_str(v, "True") || is_str(v, "TRUE")))
            t->disable = 1;
        else if (!v->quoted && (is_str(v, "false") || is_str(v, "False") || is_str(v, "FALSE")))
            t->disable = 0;
        else if (v->kind != N_BAD)
            problem(L, v->pos, "disable must be true or false, not %s", what_is(v, buf));
    }
}

/*
 * The slot category id takes: the one an included file gave it, or a new one. NULL
 * after a problem (the id twice in one file, disabling an id no file defines, too
 * many categories) or when an unreadable include may have defined it.
 */
static cat_state *category_slot(loader *L, const node *c, const node *idv, const char *id,
                                int serial, int disable)
{
    cat_state *old = find_cat(L, id);

    if (old && old->serial == serial) {
        problem(L, idv->pos, "duplicate category id '%s' (first at line %d, column %d)", id,
                old->last_pos.line, old->last_pos.column);
        return NULL;
    }
    if (old)
        return old;
    if (disable == 1) {
        if (L->incomplete)
            return NULL;
        const char *near = near_cat(L, id, 0);
        if (near)
            problem(L, idv->pos,
                    "cannot disable category '%s': no included file defines it (did you "
                    "mean '%s'?)",
                    id, near);
        else
            problem(L, idv->pos, "cannot disable category '%s': no included file defines it", id);
        return NULL;
    }
    if (L->n_cats == MAX_CATEGORIES) {
        if (!L->cats_full)
            problem(L, c->pos, "more than %d categories", MAX_CATEGORIES);
        L->cats_full = 1;
        return NULL;
    }
    old = &L->cats[L->n_cats++];
    memset(old, 0, sizeof *old);
    old->id = id;
    old->pos = c->pos;
    return old;
}

/* The keys this file sets replace those of an included file; the rest stay. */
static void merge_category(cat_state *old, const cat_state *t)
{
    if (t->description)
        old->description = t->description;
    if (t->message)
        old->message = t->message;
    if (t->has_prompts) {
        old->prompts = t->prompts;
        old->n_prompts = t->n_prompts;
        old->has_prompts = 1;
    }
    if (t->has_contrast) {
        old->contrast = t->contrast;
        old->n_contrast = t->n_contrast;
        old->has_contrast = 1;
        old->contrast_bad = t->contrast_bad;
    }
    if (t->has_threshold) {
        old->threshold = t->threshold;
        old->threshold_pos = t->threshold_pos;
        old->has_threshold = 1;
    }
    if (t->has_action) {
        old->action = t->action;
        old->action_pos = t->action_pos;
        old->has_action = 1;
    }
    if (t->has_head) {
        old->head_file = t->head_file;
        old->head_bytes = t->head_bytes;
        old->head_len = t->head_len;
        old->head_pos = t->head_pos;
        old->has_head = 1;
    }
    if (t->has_score) {
        old->score = t->score;
        old->score_pos = t->score_pos;
        old->has_score = 1;
    }
    if (t->has_context) {
        old->context = t->context;
        old->has_context = 1;
    }
    if (t->disable >= 0)
        old->disable = t->disable;
}

static void apply_category(loader *L, const node *c, int serial)
{
    static const char *const keys[C_NKEYS] = {"id",        "description", "prompts", "contrast",
                                              "threshold", "action",      "message", "disable",
                                              "head",      "score",       "context"};
    field f[C_NKEYS];
    cat_state t = {0};
    cat_state *slot;
    const char *id;
    char buf[SHOWN];

    if (c->kind != N_MAP) {
        if (c->kind != N_BAD)
            problem(L, c->pos,
                    "a category must be a mapping (id, prompts, threshold, action, ...), not %s",
                    what_is(c, buf));
        return;
    }
    map_fields(L, c, "in a category", keys, C_NKEYS, f);
    id = category_id(L, c, f[C_ID].val);
    read_category(L, f, id, &t);
    if (!id) {
        L->cats_bad = 1; /* reported: "no categories" would be a follow-on */
        return;
    }
    slot = category_slot(L, c, f[C_ID].val, id, serial, t.disable);
    if (!slot)
        return;
    slot->serial = serial;
    slot->last_pos = f[C_ID].val->pos;
    merge_category(slot, &t);
}

static void apply_categories(loader *L, const node *v, int serial)
{
    char buf[SHOWN];
    size_t i = 0;
    if (v->kind == N_BAD || is_null(v))
        return;
    if (v->kind != N_SEQ) {
        problem(L, v->pos, "categories must be a list of categories, not %s", what_is(v, buf));
        L->cats_bad = 1;
        return;
    }
    for (const node *c = v->first; c; c = c->next, i++) {
        if (i == MAX_CATEGORIES) {
            problem(L, c->pos, "more than %d categories", MAX_CATEGORIES);
            L->cats_full = 1;
            break;
        }
        apply_category(L, c, serial);
    }
}

static void apply_templates(loader *L, const node *v)
{
    char buf[SHOWN];
    if (v->kind == N_BAD)
        return;
    if (is_null(v) || (v->kind == N_SEQ && v->n == 0)) {
        problem(L, v->pos, "templates is empty: leave it out to use each prompt as written");
        return;
    }
    if (v->kind != N_SEQ) {
        problem(L, v->pos, "templates must be a list of strings, not %s", what_is(v, buf));
        return;
    }
    if (v->n > MAX_TEMPLATES) {
        problem(L, v->pos, "templates has %zu entries; at most %d are allowed", v->n,
                MAX_TEMPLATES);
        return;
    }
    const char **t = arena_alloc(L->out, v->n * sizeof *t);
    const node **where = cm_calloc(v->n, sizeof *where);
    size_t n = 0;
    if (!t || !where) {
        L->nomem = 1;
        cm_free(where);
        return;
    }
    for (const node *item = v->first; item; item = item->next) {
        const char *s, *hole;
        if (!want_text(L, item, "template", MAX_PROMPT_BYTES, 0, &s))
            continue;
        hole = strstr(s, "{}");
        if (!hole || strstr(hole + 2, "{}")) {
            problem(L, item->pos,
                    "template must contain \"{}\" exactly once (where the prompt goes), not %s",
                    what_is(item, buf));
            continue;
        }
        size_t j = 0;
        while (j < n && strcmp(t[j], s))
            j++;
        if (j < n) {
            problem(L, item->pos, "duplicate template (first at line %d, column %d)",
                    where[j]->pos.line, where[j]->pos.column);
            continue;
        }
        where[n] = item;
        t[n++] = s;
    }
    cm_free(where);
    L->templates = t;
    L->n_templates = n;
}

/* Check an SMTP reply for `action`; writes the reason into `why` if it is not valid. */
static int smtp_ok(const char *s, cm_action a, char *why, size_t size)
{
    const char *an = action_names[a];
    char buf[SHOWN];
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7E) {
            snprintf(why, size, "actions.%s.smtp must be printable ASCII on one line", an);
            return 0;
        }
    if (strlen(s) > MAX_SMTP_BYTES) {
        snprintf(why, size, "actions.%s.smtp is longer than %d characters", an, MAX_SMTP_BYTES);
        return 0;
    }
    cm_yaml_show(s, strlen(s), 40, buf, sizeof buf);
    if (!(s[0] == '4' || s[0] == '5') || !(s[1] >= '0' && s[1] <= '5') ||
        !(s[2] >= '0' && s[2] <= '9') || (s[3] != ' ' && s[3] != '\0')) {
        snprintf(why, size,
                 "actions.%s.smtp must start with a 4xx or 5xx reply code, e.g. \"550 5.7.1 "
                 "Message refused\", not \"%s\"",
                 an, buf);
        return 0;
    }
    if (a == CM_ACTION_REJECT && s[0] != '5') {
        snprintf(why, size,
                 "actions.reject.smtp must be a permanent 5xx reply, not \"%s\" (a 4xx reply "
                 "asks the sender to try again)",
                 buf);
        return 0;
    }
    /* RFC 3463: an enhanced status code, if present, has the reply code's class. */
    const char *e = s[3] ? s + 4 : s + 3;
    if (e[0] >= '0' && e[0] <= '9' && e[1] == '.') {
        size_t d1 = strspn(e + 2, "0123456789");
        size_t d2 = d1 && e[2 + d1] == '.' ? strspn(e + 3 + d1, "0123456789") : 0;
        char end = d2 ? e[3 + d1 + d2] : 'x';
        if (d1 > 3 || d2 < 1 || d2 > 3 || (end != ' ' && end != '\0')) {
            snprintf(why, size,
                     "actions.%s.smtp has a malformed enhanced status code (class.subject."
                     "detail, e.g. 5.7.1)",
                     an);
            return 0;
        }
        if (e[0] != s[0]) {
            snprintf(why, size,
                     "actions.%s.smtp: the enhanced status code must begin with %c, like the "
                     "reply code %.3s",
                     an, s[0], s);
            return 0;
        }
    }
    return 1;
}

static void apply_actions(loader *L, const node *v)
{
    enum { SMTP, HTTP, MESSAGE, NKEYS };
    static const char *const keys[NKEYS] = {"smtp", "http", "message"};
    const node *seen[CM_ACTION__COUNT] = {0};
    char buf[SHOWN], what[64], why[640];

    if (v->kind == N_BAD || is_null(v))
        return;
    if (v->kind != N_MAP) {
        problem(L, v->pos,
                "actions must be a mapping from action names to {smtp, http, message}, not %s",
                what_is(v, buf));
        return;
    }
    for (const node *k = v->first; k && k->next; k = k->next->next) {
        const node *val = k->next;
        int a = want_enum(L, k, "action", action_names, CM_ACTION__COUNT, action_list);
        if (a < 0)
            continue;
        if (seen[a]) {
            problem(L, k->pos, "duplicate key '%s' (first at line %d, column %d)", action_names[a],
                    seen[a]->pos.line, seen[a]->pos.column);
            continue;
        }
        seen[a] = k;
        if (val->kind == N_BAD || is_null(val))
            continue;
        if (val->kind != N_MAP) {
            problem(L, val->pos, "actions.%s must be a mapping with smtp, http or message, not %s",
                    action_names[a], what_is(val, buf));
            continue;
        }
        field f[NKEYS];
        action_state *st = &L->actions[a];
        snprintf(what, sizeof what, "in actions.%s", action_names[a]);
        map_fields(L, val, what, keys, NKEYS, f);
        if (f[SMTP].val) {
            const node *s = f[SMTP].val;
            const char *reply = NULL;
            if (a <= CM_ACTION_FLAG && !is_null(s)) {
                problem(L, s->pos,
                        "actions.%s.smtp is not used: allow, tag and flag accept the message "
                        "(only quarantine and reject take an SMTP reply)",
                        action_names[a]);
            } else if (is_null(s) && a == CM_ACTION_REJECT) {
                problem(L, s->pos,
                        "actions.reject.smtp cannot be empty: reject refuses the "
                        "message with a 5xx reply");
            } else if (is_null(s)) {
                st->smtp = NULL;
                st->has_smtp = 1;
            } else {
                snprintf(what, sizeof what, "actions.%s.smtp", action_names[a]);
                if (want_text(L, s, what, SIZE_MAX, 0, &reply)) {
                    if (smtp_ok(reply, (cm_action)a, why, sizeof why)) {
                        st->smtp = reply;
                        st->has_smtp = 1;
                    } else {
                        problem(L, s->pos, "%s", why);
                    }
                }
            }
        }
        if (f[HTTP].val) {
            snprintf(what, sizeof what, "actions.%s.http", action_names[a]);
            want_int(L, f[HTTP].val, what, 100, 599, &st->http);
        }
        if (f[MESSAGE].val) {
            snprintf(what, sizeof what, "actions.%s.message", action_names[a]);
            want_text(L, f[MESSAGE].val, what, MAX_TEXT_BYTES, 0, &st->message);
        }
    }
}

static void apply_animation(loader *L, const node *v)
{
    enum { FRAMES, COMBINE, K, NKEYS };
    static const char *const keys[NKEYS] = {"frames", "combine", "k"};
    static const char *const combines[] = {"max", "k-of-n"};
    field f[NKEYS];
    char buf[SHOWN];

    if (v->kind == N_BAD || is_null(v))
        return;
    if (v->kind != N_MAP) {
        problem(L, v->pos, "animation must be a mapping with frames, combine or k, not %s",
                what_is(v, buf));
        return;
    }
    map_fields(L, v, "in animation", keys, NKEYS, f);
    if (f[FRAMES].val) {
        if (!want_int(L, f[FRAMES].val, "animation.frames", 1, MAX_FRAMES, &L->frames))
            L->frames = 0;
    }
    if (f[COMBINE].val) {
        int c = want_enum(L, f[COMBINE].val, "animation.combine", combines, 2, "max, k-of-n");
        L->combine_pos = f[COMBINE].val->pos;
        L->combine_given = 1;
        L->combine = c == 1 ? CM_COMBINE_K_OF_N : CM_COMBINE_MAX;
        if (c < 0)
            L->combine_given = -1; /* reported: no follow-on problems about k */
    }
    if (f[K].val) {
        L->k_pos = f[K].val->pos;
        L->has_k = 1;
        if (!want_int(L, f[K].val, "animation.k", 1, MAX_FRAMES, &L->k))
            L->k = 0;
    }
}

static void read_policy_file(loader *L, const char *name, int depth, const node *site);

/* Follow the include list `v` of the file `from` (at include depth `depth`). */
static void apply_includes(loader *L, const node *v, const char *from, int depth)
{
    char buf[SHOWN];
    if (v->kind == N_BAD || is_null(v))
        return;
    if (v->kind != N_SEQ && v->kind != N_SCALAR) {
        problem(L, v->pos, "include must be a file name or a list of file names, not %s",
                what_is(v, buf));
        return;
    }
    const char *slash = strrchr(from, '/');
    size_t dir = slash ? (size_t)(slash - from) + 1 : 0;
    for (const node *item = v->kind == N_SEQ ? v->first : v; item;
         item = v->kind == N_SEQ ? item->next : NULL) {
        const char *rel;
        if (!want_text(L, item, "include", PATH_MAX, 0, &rel))
            continue;
        if (depth + 1 > MAX_INCLUDE_DEPTH) {
            problem(L, item->pos, "includes are nested more than %d levels deep",
                    MAX_INCLUDE_DEPTH);
            L->incomplete = 1;
            continue;
        }
        size_t len = strlen(rel);
        char *path = arena_alloc(L->out, (rel[0] == '/' ? 0 : dir) + len + 1);
        if (!path) {
            L->nomem = 1;
            return;
        }
        if (rel[0] != '/')
            memcpy(path, from, dir);
        memcpy(path + (rel[0] == '/' ? 0 : dir), rel, len + 1);
        read_policy_file(L, path, depth + 1, item);
    }
}

/* Apply the tree of file `name` (read at include depth `depth`) to the merged state. */
static void apply_tree(loader *L, const node *root, const char *name, int depth, int serial)
{
    enum {
        VERSION,
        NAME,
        DESCRIPTION,
        MODEL,
        TEMPLATES,
        NEUTRAL,
        ACTIONS,
        ANIMATION,
        INCLUDE,
        CATEGORIES,
        CONTEXT_NEUTRAL,
        NKEYS
    };
    static const char *const keys[NKEYS] = {
        "version", "name",      "description", "model",      "templates",      "neutral",
        "actions", "animation", "include",     "categories", "context-neutral"};
    field f[NKEYS];
    char buf[SHOWN];
    int version;

    if (!root) {
        problem(L, (cm_pos){name, 1, 1},
                "the policy is empty: it needs at least 'version: 1' and one category");
        L->cats_bad = 1;
        return;
    }
    if (depth == 0)
        L->root_pos = root->pos;
    if (root->kind != N_MAP) {
        if (root->kind != N_BAD)
            problem(L, root->pos,
                    "a policy must be a mapping of keys (version, categories, ...), not %s",
                    what_is(root, buf));
        L->cats_bad = 1;
        return;
    }
    map_fields(L, root, "at top level", keys, NKEYS, f);
    const node *v = f[VERSION].val;
    if (!v)
        problem(L, root->pos, "missing key 'version' (this clipmod reads version 1)");
    else if (v->kind == N_BAD)
        ;
    else if (!parse_int(v, &version))
        problem(L, v->pos, "version must be 1, not %s", what_is(v, buf));
    else if (version != 1)
        problem(L, v->pos, "unsupported version %d: this clipmod reads version 1", version);

    /* Included files first, so that everything below overrides them. */
    if (f[INCLUDE].val)
        apply_includes(L, f[INCLUDE].val, name, depth);

    if (f[NAME].val)
        want_text(L, f[NAME].val, "name", MAX_TEXT_BYTES, 1, &L->name);
    if (f[DESCRIPTION].val)
        want_text(L, f[DESCRIPTION].val, "description", MAX_TEXT_BYTES, 1, &L->description);
    if (f[MODEL].val)
        want_text(L, f[MODEL].val, "model", MAX_TEXT_BYTES, 0, &L->model);
    if (f[TEMPLATES].val)
        apply_templates(L, f[TEMPLATES].val);
    if (f[NEUTRAL].val)
        L->neutral_bad = !want_prompts(L, f[NEUTRAL].val, "neutral", 0, &L->neutral, &L->n_neutral);
    if (f[CONTEXT_NEUTRAL].val)
        want_prompts(L, f[CONTEXT_NEUTRAL].val, "context-neutral", 0, &L->context_neutral,
                     &L->n_context_neutral);
    if (f[ACTIONS].val)
        apply_actions(L, f[ACTIONS].val);
    if (f[ANIMATION].val)
        apply_animation(L, f[ANIMATION].val);
    if (f[CATEGORIES].val)
        apply_categories(L, f[CATEGORIES].val, serial);
}

/*
 * Read at most MAX_FILE_BYTES of the regular file `path` into a malloc'd buffer.
 * Returns 0, or -1 (-2 when out of memory) with the reason in `why`.
 */
static int slurp(const char *path, unsigned char **out, size_t *len, struct stat *st, size_t max,
                 char *why, size_t size)
{
    unsigned char *buf = NULL;
    size_t n = 0, cap;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc = -1;

    if (fd < 0) {
        snprintf(why, size, "%s", strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        snprintf(why, size, "%s", strerror(errno));
        goto out;
    }
    /* FIFOs and devices could block or never end. */
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, size, "not a regular file");
        goto out;
    }
    if (st->st_size > (off_t)max) {
        snprintf(why, size, "file is larger than %zu MiB", max >> 20);
        goto out;
    }
    cap = (size_t)st->st_size + 1;
    buf = cm_alloc(cap);
    if (!buf) {
        snprintf(why, size, "out of memory");
        rc = -2;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            /* The file grew since fstat. */
            if (cap > max) {
                snprintf(why, size, "file is larger than %zu MiB", max >> 20);
                goto out;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            unsigned char *b = cm_realloc(buf, ncap);
            if (!b) {
                snprintf(why, size, "out of memory");
                rc = -2;
                goto out;
            }
            buf = b;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, size, "%s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    cm_free(buf);
    close(fd);
    return rc;
}

/*
 * Read, parse and apply one policy file. `site` is the include directive that named
 * it (NULL for the file given to cm_policy_load): problems opening an included file
 * are reported there.
 */
static void read_policy_file(loader *L, const char *name, int depth, const node *site)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    struct stat st;
    char why[256], shown[SHOWN];
    cm_ydoc *doc = NULL;
    cm_yreport rep = {yaml_problem, L};
    int prc;

    /* Where problems with this file as a whole are reported in the including file. */
    cm_pos at = site ? site->pos : (cm_pos){name, 1, 1};
    if (site)
        cm_yaml_show(site->s, site->len, 60, shown, sizeof shown);
    int unread = slurp(name, &buf, &len, &st, MAX_FILE_BYTES, why, sizeof why);
    if (unread) {
        L->incomplete = 1;
        L->nomem |= unread == -2;
        if (site) {
            problem(L, at, "cannot include '%s': %s", shown, why);
        } else {
            file_problem(L, name, "cannot read: %s", why);
            L->io_error = strcmp(why, "file is larger than 1 MiB") != 0;
        }
        return;
    }
    for (int i = 0; i < depth; i++)
        if (L->stack[i].dev == st.st_dev && L->stack[i].ino == st.st_ino) {
            strbuf chain = {0};
            for (int j = i; j < depth; j++)
                sb_printf(&chain, "%s -> ", L->stack[j].name);
            sb_printf(&chain, "%s", name);
            problem(L, at, "include cycle: %s", chain.s ? chain.s : "");
            L->incomplete = 1;
            L->nomem |= chain.nomem;
            cm_free(chain.s);
            goto out;
        }
    if (++L->reads > MAX_FILE_READS) {
        if (!L->incomplete_reads)
            problem(L, at, "too many includes: more than %d files read", MAX_FILE_READS);
        L->incomplete = L->incomplete_reads = 1;
        goto out;
    }
    /* The same file read again (included twice) keeps its first name, so that its
     * problems read the same and are reported once. */
    int known = 0;
    if (depth == 0) {
        L->names[0].dev = st.st_dev;
        L->names[0].ino = st.st_ino;
    } else {
        for (int i = 0; i < L->n_names && !known; i++)
            if (L->names[i].dev == st.st_dev && L->names[i].ino == st.st_ino) {
                name = L->names[i].name;
                known = 1;
            }
        if (!known)
            L->names[L->n_names++] = (file_ref){st.st_dev, st.st_ino, name};
    }
    /* The fingerprint takes each distinct file once, as first read, in names order. */
    if (!known)
        cm_fp_add(L->fp, name, buf, len);
    L->stack[depth] = (file_ref){st.st_dev, st.st_ino, name};

    prc = cm_yaml_parse(name, buf, len, "a policy file", &rep, &doc);
    if (prc == CM_YAML_NOMEM)
        L->nomem = 1;
    if (prc == CM_YAML_OK && !L->nomem)
        apply_tree(L, cm_yaml_root(doc), name, depth, ++L->serial);
    else
        L->incomplete = 1;
out:
    cm_yaml_free(doc);
    cm_free(buf);
}

/* ------------------------------------------------------------------------ */
/* The merged policy                                                        */
/* ------------------------------------------------------------------------ */

typedef struct norm_list {
    const cm_prompt *p;
    size_t n;
    char **text;
    uint64_t *hash;
} norm_list;

static int norm_init(loader *L, arena *tmp, norm_list *nl, const cm_prompt *p, size_t n)
{
    nl->p = p;
    nl->n = n;
    nl->text = arena_alloc(tmp, (n ? n : 1) * sizeof *nl->text);
    nl->hash = arena_alloc(tmp, (n ? n : 1) * sizeof *nl->hash);
    if (!nl->text || !nl->hash) {
        L->nomem = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        nl->text[i] = normalize(tmp, p[i].text);
        if (!nl->text[i]) {
            L->nomem = 1;
            return -1;
        }
        nl->hash[i] = hash_str(nl->text[i]);
    }
    return 0;
}

/* Index in `b` of the first entry equal to a's i-th (below `limit`), or -1. */
static long norm_find(const norm_list *a, size_t i, const norm_list *b, size_t limit)
{
    for (size_t j = 0; j < limit && j < b->n; j++)
        if (b->hash[j] == a->hash[i] && !strcmp(b->text[j], a->text[i]))
            return (long)j;
    return -1;
}

/* Duplicates inside one list. */
static void check_dups(loader *L, const norm_list *nl, const char *what)
{
    char q[SHOWN];
    for (size_t i = 1; i < nl->n; i++) {
        long j = norm_find(nl, i, nl, i);
        if (j >= 0) {
            const cm_pos *o = &nl->p[j].pos;
            problem(L, nl->p[i].pos, "duplicate %s %s (also at %s:%d:%d)", what,
                    quote_text(nl->p[i].text, q), o->file, o->line, o->column);
        }
    }
}

/* Entries of `a` that are also in `b`. */
static void check_overlap(loader *L, const norm_list *a, const char *what, const char *id,
                          const norm_list *b, const char *bwhat)
{
    char q[SHOWN];
    for (size_t i = 0; i < a->n; i++) {
        long j = norm_find(a, i, b, b->n);
        if (j >= 0) {
            const cm_pos *o = &b->p[j].pos;
            problem(L, a->p[i].pos, "%s %s of category '%s' is also %s (%s:%d:%d)", what,
                    quote_text(a->p[i].text, q), id, bwhat, o->file, o->line, o->column);
        }
    }
}

/*
 * Checks that need every file: required keys of categories, prompts that would make
 * a score meaningless, animation settings given in different files.
 */
/* An enabled category's keys: the three it needs, contrast or neutral prompts, and a
 * head for a score that reads one. */
static void check_category_keys(loader *L, const cat_state *c)
{
    const char *missing[3];
    size_t nm = 0;

    if (!c->has_prompts)
        missing[nm++] = "prompts";
    if (!c->has_threshold)
        missing[nm++] = "threshold";
    if (!c->has_action)
        missing[nm++] = "action";
    if (nm) {
        char list[64], hint[128] = "";
        const char *near = !c->has_prompts ? near_cat(L, c->id, 1) : NULL;
        snprintf(list, sizeof list, "%s%s%s%s%s", missing[0],
                 nm == 3   ? ", "
                 : nm == 2 ? " or "
                           : "",
                 nm > 1 ? missing[1] : "", nm == 3 ? " or " : "", nm == 3 ? missing[2] : "");
        if (near)
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
        problem(L, c->pos, "category '%s' has no %s%s", c->id, list, hint);
    }
    if (c->has_prompts && c->n_contrast == 0 && L->n_neutral == 0 && !L->neutral_bad &&
        !c->contrast_bad)
        problem(L, c->pos,
                "category '%s' has no contrast prompts and the policy has no neutral "
                "prompts: its score would always be 1",
                c->id);
    if (c->has_score && c->score != CM_SCORE_PROMPTS && !c->has_head)
        problem(L, c->score_pos,
                "score: %s needs a learned head: give category '%s' a head: file (clipmod "
                "head train)",
                score_names[c->score], c->id);
}

/*
 * An enabled category's prompts: no duplicates, and none that counts both for and
 * against it (its contrast, the neutral prompts, and for its context the
 * context-neutral ones). -1 when out of memory (tmp holds the normalised copies).
 */
static int check_category_prompts(loader *L, arena *tmp, const cat_state *c,
                                  const norm_list *neutral, const norm_list *ctx_neutral)
{
    norm_list pr, co, cx;

    if (norm_init(L, tmp, &pr, c->prompts, c->n_prompts) ||
        norm_init(L, tmp, &co, c->contrast, c->n_contrast))
        return -1;
    check_dups(L, &pr, "prompt");
    check_dups(L, &co, "contrast prompt");
    check_overlap(L, &pr, "prompt", c->id, &co, "one of its contrast prompts");
    check_overlap(L, &pr, "prompt", c->id, neutral, "a neutral prompt");
    check_overlap(L, &co, "contrast prompt", c->id, neutral, "a neutral prompt");
    if (!c->has_context || c->context.mode == CM_CTX_OFF)
        return 0;
    /* The context's candidates: its prompts (else the category's), contrast, neutral
     * and context-neutral prompts; none may count for and against. */
    if (c->context.prompts) {
        if (norm_init(L, tmp, &cx, c->context.prompts, c->context.n_prompts))
            return -1;
        check_dups(L, &cx, "context prompt");
        check_overlap(L, &cx, "context prompt", c->id, &co, "one of its contrast prompts");
        check_overlap(L, &cx, "context prompt", c->id, neutral, "a neutral prompt");
    }
    check_overlap(L, c->context.prompts ? &cx : &pr, "context prompt", c->id, ctx_neutral,
                  "a context-neutral prompt");
    check_overlap(L, &co, "contrast prompt", c->id, ctx_neutral, "a context-neutral prompt");
    return 0;
}

/* animation.combine and animation.k agree with each other and with animation.frames. */
static void check_animation(loader *L)
{
    if (L->combine_given == 1 && L->combine == CM_COMBINE_K_OF_N && !L->has_k)
        problem(L, L->combine_pos, "animation.combine is k-of-n but animation.k is not set");
    if (L->has_k && L->combine_given >= 0 && L->combine != CM_COMBINE_K_OF_N)
        problem(L, L->k_pos, "animation.k is only used with combine: k-of-n");
    else if (L->has_k && L->k && L->frames && L->k > L->frames)
        problem(L, L->k_pos, "animation.k (%d) is larger than animation.frames (%d)", L->k,
                L->frames);
}

static void check_merged(loader *L)
{
    arena *tmp = cm_calloc(1, sizeof *tmp);
    norm_list neutral, ctx_neutral;
    size_t enabled = 0;

    if (!tmp || norm_init(L, tmp, &neutral, L->neutral, L->n_neutral) ||
        norm_init(L, tmp, &ctx_neutral, L->context_neutral, L->n_context_neutral)) {
        L->nomem = 1;
        goto out;
    }
    check_dups(L, &neutral, "neutral prompt");
    check_dups(L, &ctx_neutral, "context-neutral prompt");
    for (size_t i = 0; i < ctx_neutral.n; i++) {
        long j = norm_find(&ctx_neutral, i, &neutral, neutral.n);
        if (j >= 0)
            problem(L, ctx_neutral.p[i].pos,
                    "context-neutral prompt is also a neutral prompt (%s:%d:%d): neutral "
                    "prompts count for the context already",
                    neutral.p[j].pos.file, neutral.p[j].pos.line, neutral.p[j].pos.column);
    }
    for (size_t i = 0; i < L->n_cats; i++) {
        const cat_state *c = &L->cats[i];
        if (c->disable == 1)
            continue;
        enabled++;
        check_category_keys(L, c);
        if (check_category_prompts(L, tmp, c, &neutral, &ctx_neutral))
            goto out;
    }
    if (enabled == 0 && !L->cats_bad)
        problem(L, L->root_pos,
                L->n_cats ? "every category is disabled" : "the policy has no categories");
    check_animation(L);
out:
    arena_free(tmp);
}

/* Build the public policy from the merged state, in the policy's arena. */
static cm_policy *build(loader *L, const char *path)
{
    arena *a = L->out;
    cm_policy *p = arena_alloc(a, sizeof *p);
    size_t n = 0;
    if (!p)
        return NULL;
    p->version = 1;
    p->name = L->name;
    p->description = L->description;
    p->model = L->model;
    if (L->n_templates) {
        p->templates = L->templates;
        p->n_templates = L->n_templates;
    } else {
        p->templates = arena_alloc(a, sizeof *p->templates);
        if (!p->templates)
            return NULL;
        p->templates[0] = "{}";
        p->n_templates = 1;
    }
    p->neutral = L->neutral;
    p->n_neutral = L->n_neutral;
    p->context_neutral = L->context_neutral;
    p->n_context_neutral = L->n_context_neutral;
    p->categories = arena_alloc(a, (L->n_cats ? L->n_cats : 1) * sizeof *p->categories);
    if (!p->categories)
        return NULL;
    for (size_t i = 0; i < L->n_cats; i++) {
        const cat_state *c = &L->cats[i];
        if (c->disable == 1)
            continue;
        p->categories[n++] = (cm_category){
            .id = c->id,
            .description = c->description,
            .message = c->message,
            .prompts = c->prompts,
            .n_prompts = c->n_prompts,
            .contrast = c->contrast,
            .n_contrast = c->n_contrast,
            .threshold = c->threshold,
            .action = c->action,
            .pos = c->pos,
            .threshold_pos = c->threshold_pos,
            .action_pos = c->action_pos,
            .head_file = c->head_bytes ? c->head_file : NULL,
            .head_bytes = c->head_bytes,
            .head_len = c->head_len,
            .head_pos = c->head_pos,
            /* With a head and no `score:`, the head scores: that is why it was trained. */
            .score = c->has_score    ? c->score
                     : c->head_bytes ? CM_SCORE_HEAD
                                     : CM_SCORE_PROMPTS,
            .score_pos = c->score_pos,
            .context = c->has_context ? c->context : (cm_context_def){0},
        };
    }
    p->n_categories = n;
    for (int i = 0; i < CM_ACTION__COUNT; i++) {
        const action_state *s = &L->actions[i];
        p->actions[i] = default_actions[i];
        if (s->has_smtp)
            p->actions[i].smtp_reply = s->smtp;
        if (s->http)
            p->actions[i].http_status = s->http;
        if (s->message)
            p->actions[i].message = s->message;
    }
    p->frames = L->frames;
    p->combine = L->combine;
    p->k = L->combine == CM_COMBINE_K_OF_N ? L->k : 1;
    p->file = path;
    p->files = arena_alloc(a, (size_t)L->n_names * sizeof *p->files);
    if (!p->files)
        return NULL;
    for (int i = 0; i < L->n_names; i++)
        p->files[i] = L->names[i].name;
    p->n_files = (size_t)L->n_names;
    cm_fp_hex(L->fp, p->fingerprint);
    return p;
}

/* cm_policy_load(); with `partial`, a policy with problems is built anyway into *partial. */
static clipmod_error load(const char *path, cm_policy **out, char **problems, cm_policy **partial)
{
    loader L;
    clipmod_error rc = CLIPMOD_E_NOMEM;
    cm_policy *p = NULL;
    char *text = NULL;

    if (problems)
        *problems = NULL;
    if (out)
        *out = NULL;
    if (!path || !out)
        return CLIPMOD_E_INVALID_ARG;
    memset(&L, 0, sizeof L);
    L.frames = DEFAULT_FRAMES;
    L.k = 1;
    L.combine = CM_COMBINE_MAX;
    L.out = cm_calloc(1, sizeof *L.out);
    L.cats = L.out ? cm_calloc(MAX_CATEGORIES, sizeof *L.cats) : NULL;
    L.fp = L.cats ? cm_fp_new() : NULL;
    if (!L.out || !L.cats || !L.fp)
        goto out;
    const char *name = arena_strndup(L.out, path, strlen(path));
    if (!name)
        goto out;
    /* The top file is file 0 even if it cannot be read, for the order of problems. */
    L.names[L.n_names++] = (file_ref){0, 0, name};
    L.root_pos = (cm_pos){name, 1, 1};
    read_policy_file(&L, name, 0, NULL);
    if (!L.nomem && !L.incomplete)
        check_merged(&L);
    if (L.nomem)
        goto out;
    if (L.n_problems) {
        rc = L.io_error ? CLIPMOD_E_IO : CLIPMOD_E_POLICY;
        text = join_problems(&L);
        if (L.nomem)
            rc = CLIPMOD_E_NOMEM;
        if (rc != CLIPMOD_E_POLICY || !partial || L.incomplete)
            goto out;
        out = partial; /* what could be read, for the checks that need a tokenizer */
    }
    p = build(&L, name);
    if (!p) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    p->priv = L.out;
    L.out = NULL;
    *out = p;
    if (!L.n_problems)
        rc = CLIPMOD_OK;
out:
    if (problems)
        *problems = text;
    else
        cm_free(text);
    for (size_t i = 0; i < L.n_recs; i++)
        cm_free(L.recs[i].text);
    cm_free(L.recs);
    cm_free(L.cats);
    cm_fp_free(L.fp);
    arena_free(L.out);
    return rc;
}

clipmod_error cm_policy_load(const char *path, cm_policy **out, char **problems)
{
    return load(path, out, problems, NULL);
}

clipmod_error cm_policy_load_partial(const char *path, cm_policy **out, char **problems,
                                     cm_policy **partial)
{
    if (partial)
        *partial = NULL;
    return load(path, out, problems, partial);
}

void cm_policy_free(cm_policy *p)
{
    if (p)
        arena_free(p->priv);
}

const char *cm_action_name(cm_action a)
{
    return (unsigned)a < CM_ACTION__COUNT ? action_names[a] : "unknown";
}

int cm_action_parse(const char *name)
{
    for (int i = 0; name && i < CM_ACTION__COUNT; i++)
        if (!strcmp(name, action_names[i]))
            return i;
    return -1;
}

char *cm_policy_expand(const char *tmpl, const char *prompt)
{
    const char *hole = strstr(tmpl, "{}");
    size_t lt = strlen(tmpl), lp = strlen(prompt);
    if (!hole)
        return cm_strdup(prompt);
    char *s = cm_alloc(lt - 2 + lp + 1);
    if (!s)
        return NULL;
    size_t head = (size_t)(hole - tmpl);
    memcpy(s, tmpl, head);
    memcpy(s + head, prompt, lp);
    memcpy(s + head + lp, hole + 2, lt - head - 2 + 1);
    return s;
}

/* Check one list of prompts for check_tokens; -1 if `count` failed or memory ran out. */
/* Prompts of `list` too long for the text tower under any of `templates`, into `out`. */
static int check_list_tokens_with(const char *const *templates, size_t n_templates,
                                  const cm_prompt *list, size_t n,
                                  size_t (*count)(void *, const char *, int *), void *ctx,
                                  strbuf *out)
{
    char t[SHOWN];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n_templates; j++) {
            int truncated = 0;
            char *text = cm_policy_expand(templates[j], list[i].text);
            if (!text) {
                out->nomem = 1;
                return -1;
            }
            size_t nt = count(ctx, text, &truncated);
            cm_free(text);
            if (nt == (size_t)-1)
                return -1;
            if (!truncated && nt <= CLIPMOD_CONTEXT_LENGTH)
                continue;
            quote_text(templates[j], t);
            if (truncated)
                sb_printf(out,
                          "%s:%d:%d: prompt is longer than the text tower's %d tokens with "
                          "template %s (start and end tokens included); shorten it\n",
                          list[i].pos.file, list[i].pos.line, list[i].pos.column,
                          CLIPMOD_CONTEXT_LENGTH, t);
            else
                sb_printf(out,
                          "%s:%d:%d: prompt is %zu tokens long with template %s; the text "
                          "tower reads at most %d (start and end tokens included)\n",
                          list[i].pos.file, list[i].pos.line, list[i].pos.column, nt, t,
                          CLIPMOD_CONTEXT_LENGTH);
            break;
        }
    return 0;
}

static int check_list_tokens(const cm_policy *p, const cm_prompt *list, size_t n,
                             size_t (*count)(void *, const char *, int *), void *ctx, strbuf *out)
{
    return check_list_tokens_with(p->templates, p->n_templates, list, n, count, ctx, out);
}

/* Context prompts are embedded as written: no template. */
static int check_context_tokens(const cm_policy *p, size_t (*count)(void *, const char *, int *),
                                void *ctx, strbuf *out)
{
    static const char *const bare[] = {"{}"};
    for (size_t c = 0; c < p->n_categories; c++) {
        const cm_context_def *d = &p->categories[c].context;
        if (check_list_tokens_with(bare, 1, d->prompts, d->n_prompts, count, ctx, out))
            return -1;
    }
    return check_list_tokens_with(bare, 1, p->context_neutral, p->n_context_neutral, count, ctx,
                                  out);
}

clipmod_error cm_policy_check_tokens(const cm_policy *p,
                                     size_t (*count)(void *ctx, const char *text, int *truncated),
                                     void *ctx, char **problems)
{
    strbuf b = {0};
    clipmod_error rc = CLIPMOD_OK;
    int failed = 0;

    if (problems)
        *problems = NULL;
    if (!p || !count)
        return CLIPMOD_E_INVALID_ARG;
    for (size_t c = 0; c < p->n_categories && !failed; c++) {
        const cm_category *cat = &p->categories[c];
        failed = check_list_tokens(p, cat->prompts, cat->n_prompts, count, ctx, &b) ||
                 check_list_tokens(p, cat->contrast, cat->n_contrast, count, ctx, &b);
    }
    if (!failed)
        failed = check_list_tokens(p, p->neutral, p->n_neutral, count, ctx, &b);
    if (!failed)
        failed = check_context_tokens(p, count, ctx, &b);
    if (b.nomem)
        rc = CLIPMOD_E_NOMEM;
    else if (failed)
        rc = CLIPMOD_E_TOKENIZER;
    else if (b.len)
        rc = CLIPMOD_E_POLICY;
    if (rc == CLIPMOD_E_POLICY && problems) {
        *problems = b.s;
        b.s = NULL;
    }
    cm_free(b.s);
    return rc;
}

char *cm_policy_summary(const cm_policy *p)
{
    strbuf b = {0};
    size_t prompts;
    if (!p)
        return NULL;
    prompts = p->n_neutral;
    sb_printf(&b, "%s: valid policy%s%s%s\n", p->file, p->name ? " \"" : "", p->name ? p->name : "",
              p->name ? "\"" : "");
    if (p->n_files > 1) {
        sb_printf(&b, "  includes:");
        for (size_t i = 1; i < p->n_files; i++)
            sb_printf(&b, " %s", p->files[i]);
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "  written for: %s\n", p->model ? p->model : "(any model)");
    sb_printf(&b, "  templates: %zu, neutral prompts: %zu, animation: %d frames, %s",
              p->n_templates, p->n_neutral, p->frames,
              p->combine == CM_COMBINE_MAX ? "max" : "k-of-n");
    if (p->combine == CM_COMBINE_K_OF_N)
        sb_printf(&b, " (k = %d)", p->k);
    sb_printf(&b, "\n  %-24s %-10s %9s %7s %8s\n", "category", "action", "threshold", "prompts",
              "contrast");
    for (size_t i = 0; i < p->n_categories; i++) {
        const cm_category *c = &p->categories[i];
        sb_printf(&b, "  %-24s %-10s %9.3g %7zu %8zu\n", c->id, cm_action_name(c->action),
                  c->threshold, c->n_prompts, c->n_contrast);
        prompts += c->n_prompts + c->n_contrast;
    }
    for (size_t i = 0; i < p->n_categories; i++) {
        const cm_category *c = &p->categories[i];
        const cm_context_def *d = &c->context;
        if (d->mode != CM_CTX_OFF)
            sb_printf(&b,
                      "  context: %s reads the text that comes with an image (%s, weight %.3g, "
                      "threshold %.3g, %zu %sprompts)\n",
                      c->id, ctx_mode_names[d->mode], d->weight, d->threshold,
                      d->prompts ? d->n_prompts : c->n_prompts, d->prompts ? "context " : "");
    }
    sb_printf(&b, "  %zu categor%s, %zu prompts, %zu texts to embed\n", p->n_categories,
              p->n_categories == 1 ? "y" : "ies", prompts, prompts * p->n_templates);
    if (b.nomem) {
        cm_free(b.s);
        return NULL;
    }
    return b.s;
}
