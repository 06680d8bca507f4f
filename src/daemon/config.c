/*
 * config.c - clipmodd's configuration file (YAML).
 *
 * Owns the schema of clipmodd.yaml (every key, its type, range and default, as
 * clipmodd(8) CONFIGURATION lists them) and its reading. As with policies, every
 * problem is reported as "file:line:column: message", unknown keys get a "did you
 * mean", and all problems of a file come in one pass. The file is the operator's
 * (root-owned), but it is still bounded in size. Engine settings are the
 * library's (clipmod_setting_name), so a new library limit needs no change here.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <yaml.h>

#include "daemon.h"
#include "size.h"

#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_LIST         64

void config_defaults(dconfig *c)
{
    memset(c, 0, sizeof *c);
    c->workers = 1;
    c->url_workers = 2;
    c->max_batch = 8;
    c->batch_window_ms = 3;
    c->queue_size = 64;
    c->request_timeout_ms = 30000;
    c->retry_after_s = 1;
    c->http_enabled = 1;
    c->http_listen = strdup("127.0.0.1:8093");
    c->max_body_bytes = 26214400;
    c->max_files = 16;
    c->max_connections = 256;
    c->client_timeout_s = 30;
    c->scan_url_enabled = 1;
    c->max_body_memory = 268435456;
    c->header_timeout_s = 10;
    c->max_connections_per_ip = 64;
    c->tusd_enabled = 1;
    c->clamd_unix_mode = 0660;
    c->stream_max_length = 26214400;
    c->clamd_max_connections = 32;
    c->clamd_read_timeout_s = 30;
    c->clamd_idle_timeout_s = 30;
    c->clamd_found_at = CLIPMOD_ACTION_QUARANTINE;
    c->clamd_unscanned = UNSCANNED_ERROR;
    c->log_format = strdup("logfmt");
    c->log_target = strdup("stderr");
    c->log_level = strdup("info");
    c->log_requests = 1;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void config_free(dconfig *c)
{
    if (!c)
        return;
    char **strs[] = {&c->path,
                     &c->model,
                     &c->merges,
                     &c->policy,
                     &c->cache_dir,
                     &c->http_listen,
                     &c->auth_token,
                     &c->tusd_download_url,
                     &c->tusd_quarantine_dir,
                     &c->clamd_unix,
                     &c->clamd_tcp,
                     &c->log_format,
                     &c->log_target,
                     &c->log_level};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    strlist_free(&c->fetch_allow);
    strlist_free(&c->text_fields);
    strlist_free(&c->tusd_roots);
    strlist_free(&c->clamd_roots);
}

int config_set_str(char **dst, const char *s)
{
    char *copy = NULL;
    if (s && !(copy = strdup(s)))
        return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Problems                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct loader {
    const char *file;
    yaml_document_t *doc;
    dconfig *c;
    char *problems;
    size_t len;
    int count;
    /* http.auth-token-file, read once the whole text is parsed (config_load only). */
    char *token_file;
    yaml_node_t token_at;
} loader;

static void problem(loader *L, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(loader *L, const yaml_node_t *at, const char *fmt, ...)
{
    char msg[512], line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keys and values are quoted from the file: one problem stays one line. */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (at)
        snprintf(line, sizeof line, "%s:%zu:%zu: %s\n", L->file, at->start_mark.line + 1,
                 at->start_mark.column + 1, msg);
    else
        snprintf(line, sizeof line, "%s: %s\n", L->file, msg);
    size_t add = strlen(line);
    char *grown = realloc(L->problems, L->len + add + 1);
    if (grown) {
        memcpy(grown + L->len, line, add + 1);
        L->problems = grown;
        L->len += add;
    }
    L->count++;
}

/* Levenshtein distance, for "did you mean"; large for long strings. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), d[41][41];
    if (la > 40 || lb > 40)
        return 99;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < v)
                v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

/* ------------------------------------------------------------------------ */
/* Schema                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    T_STR,     /* char *, null allowed */
    T_UINT,    /* unsigned, in [min, max] */
    T_SIZE,    /* uint64_t bytes, in [min, max]: "25M" as everywhere (src/common size.h) */
    T_BOOL,    /* int */
    T_LIST,    /* strlist: a sequence of strings, or one string */
    T_ACTION,  /* clipmod_action by name */
    T_UNSCAN,  /* clamd_unscanned_mode */
    T_MODE,    /* unsigned file mode, octal */
    T_SECTION, /* a nested map */
    T_SETTINGS /* the engine's settings */
} ktype;

typedef struct key {
    const char *name;
    ktype type;
    size_t off;
    uint64_t min, max;
    const struct key *section;
} key;

#define F(field) offsetof(dconfig, field)

static const key fetch_keys[] = {
    {"allow", T_LIST, F(fetch_allow), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key scan_keys[] = {
    {"workers", T_UINT, F(workers), 1, 64, NULL},
    {"url-workers", T_UINT, F(url_workers), 1, 64, NULL},
    {"max-batch", T_UINT, F(max_batch), 1, 256, NULL},
    {"batch-window-ms", T_UINT, F(batch_window_ms), 0, 1000, NULL},
    {"queue-size", T_UINT, F(queue_size), 1, 100000, NULL},
    {"request-timeout-ms", T_UINT, F(request_timeout_ms), 100, 3600000, NULL},
    {"retry-after", T_UINT, F(retry_after_s), 1, 3600, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key http_keys[] = {
    {"enabled", T_BOOL, F(http_enabled), 0, 0, NULL},
    {"listen", T_STR, F(http_listen), 0, 0, NULL},
    {"max-body-bytes", T_SIZE, F(max_body_bytes), 1024, (uint64_t)1 << 34, NULL},
    {"max-files", T_UINT, F(max_files), 1, 1024, NULL},
    {"max-connections", T_UINT, F(max_connections), 1, 65536, NULL},
    {"client-timeout", T_UINT, F(client_timeout_s), 1, 3600, NULL},
    {"auth-token-file", T_STR, F(auth_token), 0, 0, NULL}, /* read below */
    {"scan-url", T_BOOL, F(scan_url_enabled), 0, 0, NULL},
    {"max-body-memory", T_SIZE, F(max_body_memory), 1024, (uint64_t)1 << 40, NULL},
    {"header-timeout", T_UINT, F(header_timeout_s), 1, 3600, NULL},
    {"max-connections-per-ip", T_UINT, F(max_connections_per_ip), 0, 65536, NULL},
    {"text-fields", T_LIST, F(text_fields), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key tusd_keys[] = {
    {"enabled", T_BOOL, F(tusd_enabled), 0, 0, NULL},
    {"roots", T_LIST, F(tusd_roots), 0, 0, NULL},
    {"download-url", T_STR, F(tusd_download_url), 0, 0, NULL},
    {"accept-unscanned", T_BOOL, F(tusd_accept_unscanned), 0, 0, NULL},
    {"delete-rejected", T_BOOL, F(tusd_delete_rejected), 0, 0, NULL},
    {"quarantine-dir", T_STR, F(tusd_quarantine_dir), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key clamd_keys[] = {
    {"unix-socket", T_STR, F(clamd_unix), 0, 0, NULL},
    {"unix-socket-mode", T_MODE, F(clamd_unix_mode), 0, 0777, NULL},
    {"tcp", T_STR, F(clamd_tcp), 0, 0, NULL},
    {"stream-max-length", T_SIZE, F(stream_max_length), 1024, (uint64_t)1 << 32, NULL},
    {"roots", T_LIST, F(clamd_roots), 0, 0, NULL},
    {"max-connections", T_UINT, F(clamd_max_connections), 1, 4096, NULL},
    {"read-timeout", T_UINT, F(clamd_read_timeout_s), 1, 3600, NULL},
    {"idle-timeout", T_UINT, F(clamd_idle_timeout_s), 1, 3600, NULL},
    {"found-at", T_ACTION, F(clamd_found_at), 0, 0, NULL},
    {"unscanned", T_UNSCAN, F(clamd_unscanned), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key log_keys[] = {
    {"format", T_STR, F(log_format), 0, 0, NULL},
    {"target", T_STR, F(log_target), 0, 0, NULL},
    {"level", T_STR, F(log_level), 0, 0, NULL},
    {"requests", T_BOOL, F(log_requests), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key top_keys[] = {
    {"model", T_STR, F(model), 0, 0, NULL},
    {"merges", T_STR, F(merges), 0, 0, NULL},
    {"policy", T_STR, F(policy), 0, 0, NULL},
    {"cache-dir", T_STR, F(cache_dir), 0, 0, NULL},
    {"threads", T_UINT, F(threads), 0, 256, NULL},
    {"engine", T_SETTINGS, 0, 0, 0, NULL},
    {"fetch", T_SECTION, 0, 0, 0, fetch_keys},
    {"scan", T_SECTION, 0, 0, 0, scan_keys},
    {"http", T_SECTION, 0, 0, 0, http_keys},
    {"tusd", T_SECTION, 0, 0, 0, tusd_keys},
    {"clamd", T_SECTION, 0, 0, 0, clamd_keys},
    {"log", T_SECTION, 0, 0, 0, log_keys},
    {NULL, 0, 0, 0, 0, NULL},
};

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A plain (unquoted) null, ~ or empty scalar. */
static int is_null(const yaml_node_t *n)
{
    const char *s = scalar(n);
    if (!s || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return !*s || !strcmp(s, "null") || !strcmp(s, "~") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int parse_u64(const char *s, int base, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/*
 * A byte limit: a plain number of bytes or a size with a binary multiple ("25M"),
 * the one syntax of clipmod, clipmodd and clipmod-milter (src/common/size.h).
 */
static void set_size(loader *L, const yaml_node_t *v, const key *k, char *base, const char *s)
{
    char why[128], lo[24], hi[24];
    uint64_t u = 0;

    if (!s || cm_parse_size(s, &u, why, sizeof why)) {
        problem(L, v, "%s must be a size such as 25M (%s)", k->name, s ? why : "not a scalar");
        return;
    }
    if (u < k->min || u > k->max) {
        problem(L, v, "%s must be from %s to %s bytes", k->name,
                cm_format_size(k->min, lo, sizeof lo), cm_format_size(k->max, hi, sizeof hi));
        return;
    }
    *(uint64_t *)(base + k->off) = u;
}

static void set_value(loader *L, const key *k, const yaml_node_t *v)
{
    char *base = (char *)L->c;
    const char *s = scalar(v);
    uint64_t u;

    switch (k->type) {
    case T_STR:
        if (is_null(v) && k->off == F(auth_token))
            config_set_str(&L->token_file, NULL);
        if (is_null(v)) {
            free(*(char **)(base + k->off));
            *(char **)(base + k->off) = NULL;
            if (k->off == F(cache_dir))
                L->c->no_cache = 1;
            return;
        }
        if (!s) {
            problem(L, v, "%s must be a string", k->name);
            return;
        }
        if (k->off == F(auth_token)) {
            /* Only noted here: parsing reads no file (see read_token). */
            config_set_str(&L->token_file, s);
            L->token_at = *v;
            return;
        }
        if (k->off == F(cache_dir))
            L->c->no_cache = 0;
        config_set_str((char **)(base + k->off), s);
        return;
    case T_SIZE:
        set_size(L, v, k, base, s);
        return;
    case T_UINT:
        if (parse_u64(s, 10, &u) || u < k->min || u > k->max) {
            problem(L, v, "%s must be a whole number from %llu to %llu", k->name,
                    (unsigned long long)k->min, (unsigned long long)k->max);
            return;
        }
        *(unsigned *)(base + k->off) = (unsigned)u;
        return;
    case T_MODE:
        if (parse_u64(s, 8, &u) || u > k->max) {
            problem(L, v, "%s must be an octal file mode such as 0660", k->name);
            return;
        }
        *(unsigned *)(base + k->off) = (unsigned)u;
        return;
    case T_BOOL:
        if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
            *(int *)(base + k->off) = 1;
        else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
            *(int *)(base + k->off) = 0;
        else
            problem(L, v, "%s must be true or false", k->name);
        return;
    case T_ACTION:
        for (int a = CLIPMOD_ACTION_TAG; a <= CLIPMOD_ACTION_REJECT; a++)
            if (s && !strcmp(s, clipmod_action_name((clipmod_action)a))) {
                *(clipmod_action *)(base + k->off) = (clipmod_action)a;
                return;
            }
        problem(L, v, "%s must be tag, flag, quarantine or reject", k->name);
        return;
    case T_UNSCAN:
        if (s && !strcmp(s, "error"))
            *(clamd_unscanned_mode *)(base + k->off) = UNSCANNED_ERROR;
        else if (s && !strcmp(s, "found"))
            *(clamd_unscanned_mode *)(base + k->off) = UNSCANNED_FOUND;
        else if (s && !strcmp(s, "ok"))
            *(clamd_unscanned_mode *)(base + k->off) = UNSCANNED_OK;
        else
            problem(L, v, "%s must be error, found or ok", k->name);
        return;
    case T_LIST: {
        strlist *l = (strlist *)(base + k->off);
        strlist_free(l);
        if (is_null(v))
            return;
        if (s) {
            if ((l->v = calloc(1, sizeof *l->v)) && (l->v[0] = strdup(s)))
                l->n = 1;
            return;
        }
        if (v->type != YAML_SEQUENCE_NODE) {
            problem(L, v, "%s must be a list of strings", k->name);
            return;
        }
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (n > MAX_LIST) {
            problem(L, v, "%s may have at most %d entries", k->name, MAX_LIST);
            return;
        }
        l->v = calloc(n ? n : 1, sizeof *l->v);
        for (size_t i = 0; l->v && i < n; i++) {
            yaml_node_t *item = yaml_document_get_node(L->doc, v->data.sequence.items.start[i]);
            if (!scalar(item) || !*scalar(item)) {
                problem(L, item, "%s must be a list of non-empty strings", k->name);
                continue;
            }
            if ((l->v[l->n] = strdup(scalar(item))))
                l->n++;
        }
        return;
    }
    case T_SECTION:
    case T_SETTINGS:
        return;
    }
}

static void load_map(loader *L, const yaml_node_t *map, const key *keys, const char *section);

static void load_settings(loader *L, const yaml_node_t *map)
{
    if (map->type != YAML_MAPPING_NODE) {
        problem(L, map, "engine must be a map of settings");
        return;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
        const char *name = scalar(k);
        int found = -1;
        for (int s = 0; name && s < CLIPMOD_SETTING__COUNT; s++)
            if (!strcmp(name, clipmod_setting_name((clipmod_setting)s)))
                found = s;
        if (found < 0) {
            problem(L, k, "unknown engine setting '%s' (see clipmod scan --help)",
                    name ? name : "?");
            continue;
        }
        uint64_t u;
        if (parse_u64(scalar(v), 10, &u)) {
            problem(L, v, "%s must be a whole number", name);
            continue;
        }
        L->c->setting[found] = u;
        L->c->setting_given[found] = 1;
    }
}

static void load_map(loader *L, const yaml_node_t *map, const key *keys, const char *section)
{
    if (map->type != YAML_MAPPING_NODE) {
        problem(L, map, "%s must be a map", section ? section : "the configuration");
        return;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
        const char *name = scalar(kn);
        const key *k = NULL;
        for (const key *q = keys; name && q->name; q++)
            if (!strcmp(q->name, name))
                k = q;
        if (!k) {
            const key *best = NULL;
            size_t bd = 3;
            for (const key *q = keys; name && q->name; q++) {
                /* A typo, or a name cut short ("max-body" for "max-body-bytes"). */
                size_t d = distance(name, q->name);
                if (strlen(name) >= 3 && !strncmp(q->name, name, strlen(name)))
                    d = 1;
                if (d < bd) {
                    bd = d;
                    best = q;
                }
            }
            if (best)
                problem(L, kn, "unknown key '%s%s%s' (did you mean '%s'?)", section ? section : "",
                        section ? "." : "", name, best->name);
            else
                problem(L, kn, "unknown key '%s%s%s'", section ? section : "", section ? "." : "",
                        name ? name : "?");
            continue;
        }
        if (k->type == T_SECTION)
            load_map(L, v, k->section, k->name);
        else if (k->type == T_SETTINGS)
            load_settings(L, v);
        else
            set_value(L, k, v);
    }
}

/* Parse `text` into L->c: every problem into L. Reads no file. */
static void load_text(loader *L, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;

    L->doc = &doc;
    if (len > MAX_CONFIG_BYTES) {
        problem(L, NULL, "not a configuration file of at most 1 MiB");
        return;
    }
    if (!yaml_parser_initialize(&parser)) {
        problem(L, NULL, "out of memory");
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_node_t at = {.start_mark = parser.problem_mark};
        problem(L, &at, "%s", parser.problem ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    /* An empty file is a valid configuration: every default. */
    if (root && !is_null(root))
        load_map(L, root, top_keys, NULL);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    L->doc = NULL;
}

/*
 * http.auth-token-file: its first line is the token. The file is a secret, so as
 * ssh does for private keys, one that its group or others may read or write is
 * refused (checked on the file opened, not on the name).
 */
static void read_token(loader *L)
{
    const char *path = L->token_file;
    const yaml_node_t *at = &L->token_at;
    char tok[1024] = "";
    struct stat st;
    FILE *f = fopen(path, "r");

    if (!f) {
        problem(L, at, "auth-token-file %s: %s", path, strerror(errno));
        return;
    }
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        problem(L, at, "auth-token-file %s: not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        problem(L, at,
                "auth-token-file %s: permissions %04o are too open: the token must not be "
                "accessible by group or others (chmod 600 %s)",
                path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (!fgets(tok, sizeof tok, f))
        tok[0] = '\0';
    tok[strcspn(tok, "\r\n")] = '\0';
    if (strlen(tok) < 16) {
        problem(L, at, "auth-token-file %s: the token must be at least 16 characters", path);
        goto out;
    }
    if (config_set_str(&L->c->auth_token, tok))
        problem(L, at, "out of memory");
out:
    explicit_bzero(tok, sizeof tok);
    fclose(f);
}

int config_parse(const char *name, const char *text, size_t len, dconfig *c, char **problems)
{
    loader L = {.file = name, .c = c};

    *problems = NULL;
    if (config_set_str(&c->path, name))
        return -1;
    load_text(&L, text, len);
    free(L.token_file);
    *problems = L.problems;
    return L.count ? -1 : 0;
}

int config_load(const char *path, dconfig *c, char **problems)
{
    loader L = {.file = path, .c = c};
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    FILE *f = NULL;

    *problems = NULL;
    if (config_set_str(&c->path, path))
        return -1;
    if (!(f = fopen(path, "rb"))) {
        problem(&L, NULL, "%s", strerror(errno));
        goto out;
    }
    if (fstat(fileno(f), &st) || st.st_size > MAX_CONFIG_BYTES) {
        problem(&L, NULL, "not a configuration file of at most 1 MiB");
        goto out;
    }
    /* One byte more than the limit, to tell a file that grew since fstat. */
    if (!(text = malloc(MAX_CONFIG_BYTES + 1))) {
        problem(&L, NULL, "out of memory");
        goto out;
    }
    len = fread(text, 1, MAX_CONFIG_BYTES + 1, f);
    if (ferror(f)) {
        problem(&L, NULL, "%s", strerror(errno));
        goto out;
    }
    load_text(&L, text, len);
    if (L.token_file)
        read_token(&L);
out:
    free(text);
    free(L.token_file);
    if (f)
        fclose(f);
    *problems = L.problems;
    return L.count ? -1 : 0;
}

int config_check(const dconfig *c, char **problems)
{
    loader L = {.file = c->path ? c->path : "clipmodd", .c = (dconfig *)c};

    if (!c->model)
        problem(&L, NULL, "no model: set 'model' (or give --model)");
    if (!c->policy)
        problem(&L, NULL, "no policy: set 'policy' (or give --policy)");
    if (c->max_files > c->queue_size)
        problem(&L, NULL, "http.max-files (%u) must not exceed scan.queue-size (%u)", c->max_files,
                c->queue_size);
    if (c->max_body_memory < c->max_body_bytes)
        problem(&L, NULL, "http.max-body-memory (%llu) must be at least http.max-body-bytes (%llu)",
                (unsigned long long)c->max_body_memory, (unsigned long long)c->max_body_bytes);
    if (!c->http_enabled && !c->clamd_unix && !c->clamd_tcp)
        problem(&L, NULL, "nothing to serve: http is disabled and no clamd socket is set");
    if (c->tusd_download_url && strncmp(c->tusd_download_url, "http://", 7) &&
        strncmp(c->tusd_download_url, "https://", 8))
        problem(&L, NULL, "tusd.download-url must be an http(s) URL");
    *problems = L.problems;
    return L.count ? -1 : 0;
}

int config_listen_addr(const char *spec, struct sockaddr_storage *ss, unsigned *len)
{
    char host[256];
    const char *port;
    struct addrinfo hints = {0}, *ai = NULL;

    if (!spec || strlen(spec) >= sizeof host)
        return -1;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':')
            return -1;
        snprintf(host, sizeof host, "%.*s", (int)(end - spec - 1), spec + 1);
        port = end + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon)
            return -1;
        snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
        port = colon + 1;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &ai) || !ai)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = (unsigned)ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}
