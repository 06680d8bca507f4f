/*
 * config.c - clipmodd's configuration file (YAML).
 *
 * Owns the schema of clipmodd.yaml (every key, its type, range and default, as
 * clipmodd(8) CONFIGURATION lists them) and its reading. As with policies, every
 * problem is reported as "file:line:column: message", unknown keys get a "did you
 * mean", and all problems of a file come in one pass. The file is the operator's
 * (root-owned), but it is still bounded in size. Engine settings are the
 * library's (clipmod_setting_name), so a new library limit needs no change here.
 *
 * The YAML itself is read by the runtime's one reader (src/common/yaml.h): node
 * positions, refused anchors/aliases and tags, unknown keys with "did you mean"
 * and duplicate keys are its; this file only knows clipmodd's keys and types.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "context.h"
#include "daemon.h"
#include "onflag.h"
#include "redis_conn.h"
#include "size.h"
#include "yaml.h"

#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_LIST         64
#define MAX_PLUGINS      16

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
    c->drain_grace_ms = 3000; /* two or three health checks of contrib/haproxy.cfg */
    c->drain_timeout_ms = 30000;
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
    c->onflag_timeout_ms = 30000;
    c->onflag_max_running = 4;
    c->context_enabled = 1;
    c->cache_ttl_ms = 86400000;
    c->cache_redis_timeout_ms = 50;
    c->worker_stream = strdup("clipmod:jobs");
    c->worker_group = strdup("clipmod");
    c->worker_dead = strdup("clipmod:dead");
    c->worker_result_prefix = strdup("clipmod:result:");
    c->worker_concurrency = 16;
    c->worker_block_ms = 2000;
    c->worker_claim_idle_ms = 60000;
    c->worker_max_attempts = 3;
    c->worker_result_ttl_ms = 86400000;
    c->worker_redis_timeout_ms = 2000;
    c->worker_max_bytes = 26214400;
    c->worker_urls = 1;
    /* http.context-fields: [text] (left empty when out of memory: no field is context). */
    c->context_fields.v = calloc(2, sizeof *c->context_fields.v);
    if (c->context_fields.v) {
        c->context_fields.v[0] = strdup("text");
        if (c->context_fields.v[0])
            c->context_fields.n = 1;
    }
}

size_t config_context_cap(const dconfig *c)
{
    uint64_t most = c->setting_given[CLIPMOD_MAX_CONTEXT_BYTES]
                        ? c->setting[CLIPMOD_MAX_CONTEXT_BYTES]
                        : clipmod_setting_default(CLIPMOD_MAX_CONTEXT_BYTES);
    if (!most)
        most = 16384; /* a library that does not know the setting: the spec's default */
    return most > CONTEXT_CAP_MAX / CONTEXT_CAP_FACTOR ? CONTEXT_CAP_MAX
                                                       : (size_t)most * CONTEXT_CAP_FACTOR;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void plugins_free(dconfig *c)
{
    for (size_t i = 0; i < c->n_plugins; i++) {
        free(c->plugins[i].path);
        free(c->plugins[i].config);
    }
    free(c->plugins);
    c->plugins = NULL;
    c->n_plugins = 0;
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
                     &c->log_level,
                     &c->cache_redis,
                     &c->worker_redis,
                     &c->worker_stream,
                     &c->worker_group,
                     &c->worker_consumer,
                     &c->worker_dead,
                     &c->worker_result_prefix};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    strlist_free(&c->fetch_allow);
    strlist_free(&c->text_fields);
    strlist_free(&c->context_fields);
    strlist_free(&c->tusd_roots);
    strlist_free(&c->clamd_roots);
    strlist_free(&c->onflag_argv);
    strlist_free(&c->worker_roots);
    plugins_free(c);
}

int config_set_str(char **dst, const char *s)
{
    char *copy = NULL;
    if (s) {
        copy = strdup(s);
        if (!copy)
            return -1;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Problems                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct loader {
    const char *file;
    dconfig *c;
    cm_yproblems list; /* "file:line:column: message" lines */
    cm_yreport rep;    /* counts, then appends to list */
    int count;
    /* http.auth-token-file, read once the whole text is parsed (config_load only). */
    char *token_file;
    cm_ypos token_at;
} loader;

/* Every problem is counted even when the list cannot hold it (out of memory, >200). */
static void count_report(void *arg, cm_ypos pos, const char *msg)
{
    loader *L = arg;
    L->count++;
    cm_yproblems_report(&L->list, pos, msg);
}

static void loader_init(loader *L, const char *file, dconfig *c)
{
    memset(L, 0, sizeof *L);
    L->file = file;
    L->c = c;
    L->rep.fn = count_report;
    L->rep.arg = L;
}

/* The problems as one text (caller frees), and 0 or -1. */
static int loader_done(loader *L, char **problems)
{
    *problems = NULL;
    if (L->count) {
        *problems = cm_yproblems_join(&L->list);
        if (!*problems)
            *problems = strdup("clipmodd: out of memory while reading the configuration\n");
    }
    cm_yproblems_free(&L->list);
    free(L->token_file);
    L->token_file = NULL;
    return L->count ? -1 : 0;
}

static void problem(loader *L, cm_ypos at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(loader *L, cm_ypos at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keys and values are quoted from the file: one problem stays one line. */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    at.file = L->file;
    count_report(L, at, msg);
}

/* A problem about the whole file (no position). */
static cm_ypos whole(void)
{
    return (cm_ypos){NULL, 0, 0};
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
    T_MS,      /* unsigned milliseconds, in [min, max]: a duration ("10s", "500ms") */
    T_PREC,    /* clipmod_precision by name */
    T_PLUGINS, /* dplugin list: [{path, config}] */
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
    {"context-fields", T_LIST, F(context_fields), 0, 0, NULL},
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

static const key onflag_keys[] = {
    {"command", T_LIST, F(onflag_argv), 0, 0, NULL},
    {"timeout", T_MS, F(onflag_timeout_ms), 100, 3600000, NULL},
    {"max-running", T_UINT, F(onflag_max_running), 1, 64, NULL},
    {"unscanned", T_BOOL, F(onflag_unscanned), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key cache_keys[] = {
    {"memory", T_SIZE, F(cache_memory), 0, (uint64_t)1 << 40, NULL},
    {"redis", T_STR, F(cache_redis), 0, 0, NULL},
    {"ttl", T_MS, F(cache_ttl_ms), 1000, 2592000000u, NULL},
    {"redis-timeout", T_MS, F(cache_redis_timeout_ms), 1, 10000, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* The queue worker (clipmodd(8) WORKER, docs/queue.md). */
static const key worker_keys[] = {
    {"enabled", T_BOOL, F(worker_enabled), 0, 0, NULL},
    {"redis", T_STR, F(worker_redis), 0, 0, NULL},
    {"stream", T_STR, F(worker_stream), 0, 0, NULL},
    {"group", T_STR, F(worker_group), 0, 0, NULL},
    {"consumer", T_STR, F(worker_consumer), 0, 0, NULL},
    {"concurrency", T_UINT, F(worker_concurrency), 1, 4096, NULL},
    {"block", T_MS, F(worker_block_ms), 10, 60000, NULL},
    {"claim-idle", T_MS, F(worker_claim_idle_ms), 100, 86400000, NULL},
    {"max-attempts", T_UINT, F(worker_max_attempts), 1, 100, NULL},
    {"dead-letter", T_STR, F(worker_dead), 0, 0, NULL},
    {"result-prefix", T_STR, F(worker_result_prefix), 0, 0, NULL},
    {"result-ttl", T_MS, F(worker_result_ttl_ms), 0, 2592000000u, NULL},
    {"redis-timeout", T_MS, F(worker_redis_timeout_ms), 10, 60000, NULL},
    {"max-bytes", T_SIZE, F(worker_max_bytes), 1024, (uint64_t)1 << 32, NULL},
    {"roots", T_LIST, F(worker_roots), 0, 0, NULL},
    {"urls", T_BOOL, F(worker_urls), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const key top_keys[] = {
    {"model", T_STR, F(model), 0, 0, NULL},
    {"merges", T_STR, F(merges), 0, 0, NULL},
    {"policy", T_STR, F(policy), 0, 0, NULL},
    {"cache-dir", T_STR, F(cache_dir), 0, 0, NULL},
    {"threads", T_UINT, F(threads), 0, 256, NULL},
    {"precision", T_PREC, F(precision), 0, 0, NULL}, /* fp32, int8, bf16 */
    {"engine", T_SETTINGS, 0, 0, 0, NULL},
    {"fetch", T_SECTION, 0, 0, 0, fetch_keys},
    {"scan", T_SECTION, 0, 0, 0, scan_keys},
    {"http", T_SECTION, 0, 0, 0, http_keys},
    {"tusd", T_SECTION, 0, 0, 0, tusd_keys},
    {"clamd", T_SECTION, 0, 0, 0, clamd_keys},
    {"log", T_SECTION, 0, 0, 0, log_keys},
    {"plugins", T_PLUGINS, 0, 0, 0, NULL},
    {"on-flag", T_SECTION, 0, 0, 0, onflag_keys},
    {"context", T_BOOL, F(context_enabled), 0, 0, NULL},
    {"cache", T_SECTION, 0, 0, 0, cache_keys},
    {"worker", T_SECTION, 0, 0, 0, worker_keys},
    {"drain-grace", T_MS, F(drain_grace_ms), 0, 600000, NULL},
    {"drain-timeout", T_MS, F(drain_timeout_ms), 0, 3600000, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

static void set_str(loader *L, const key *k, const cm_ynode *v)
{
    char **dst = (char **)((char *)L->c + k->off);
    const char *s;

    if (cm_ynode_is_null(v)) {
        if (k->off == F(auth_token))
            config_set_str(&L->token_file, NULL);
        config_set_str(dst, NULL);
        if (k->off == F(cache_dir))
            L->c->no_cache = 1;
        return;
    }
    if (cm_yread_str(v, k->name, 0, &L->rep, &s))
        return;
    if (k->off == F(auth_token)) {
        /* Only noted here: parsing reads no file (see read_token). */
        config_set_str(&L->token_file, s);
        L->token_at = v->pos;
        return;
    }
    if (k->off == F(cache_dir))
        L->c->no_cache = 0;
    config_set_str(dst, s);
}

/*
 * A byte limit: a plain number of bytes or a size with a binary multiple ("25M"),
 * the one syntax of clipmod, clipmodd and clipmod-milter (src/common/size.h).
 */
static void set_size(loader *L, const key *k, const cm_ynode *v)
{
    char lo[24], hi[24];
    uint64_t u = 0;

    if (cm_yread_size(v, k->name, k->max, &L->rep, &u))
        return;
    if (u < k->min) {
        problem(L, v->pos, "%s must be from %s to %s bytes", k->name,
                cm_format_size(k->min, lo, sizeof lo), cm_format_size(k->max, hi, sizeof hi));
        return;
    }
    *(uint64_t *)((char *)L->c + k->off) = u;
}

/* A file mode: octal digits, unquoted ("0660"). */
static void set_mode(loader *L, const key *k, const cm_ynode *v)
{
    unsigned long long u = 0;
    int ok = v->kind == CM_Y_SCALAR && !v->quoted && v->len && v->len <= 6 &&
             strlen(v->s) == v->len && strspn(v->s, "01234567") == v->len;

    if (ok)
        u = strtoull(v->s, NULL, 8);
    if (!ok || u > k->max) {
        problem(L, v->pos, "%s must be an octal file mode such as 0660", k->name);
        return;
    }
    *(unsigned *)((char *)L->c + k->off) = (unsigned)u;
}

/* One of a few names: its index, or -1 after a problem naming them all. */
static int set_choice(loader *L, const key *k, const cm_ynode *v, const char *const *names,
                      size_t n, const char *say)
{
    const char *s;
    if (cm_yread_str(v, k->name, 0, &L->rep, &s))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return (int)i;
    problem(L, v->pos, "%s must be %s", k->name, say);
    return -1;
}

static void set_list(loader *L, const key *k, const cm_ynode *v)
{
    strlist *l = (strlist *)((char *)L->c + k->off);
    const char **items = NULL;
    size_t n = 0;
    char why[160];

    strlist_free(l);
    if (cm_ynode_is_null(v))
        return;
    if (cm_yread_strlist(v, k->name, MAX_LIST, &L->rep, &items, &n))
        return;
    /* The one check the milter makes too (onflag.c): an empty or relative command. */
    if (k->off == F(onflag_argv) && cm_onflag_argv_problem(items, n, why, sizeof why)) {
        problem(L, v->pos, "%s %s", k->name, why);
        free(items);
        return;
    }
    /* NULL-terminated too: on-flag.command is handed over as an argv. */
    l->v = calloc(n + 1, sizeof *l->v);
    for (size_t i = 0; l->v && i < n; i++) {
        l->v[l->n] = strdup(items[i]);
        if (l->v[l->n])
            l->n++;
    }
    free(items);
}

/* One plugins entry: {path: FILE, config: STRING}; 0, or -1 after a problem. */
static int read_plugin(loader *L, const cm_ynode *item, dplugin *out)
{
    static const char *const names[] = {"path", "config"};
    const cm_ynode *vals[2];
    const char *path, *config = NULL;

    if (item->kind != CM_Y_MAP) {
        problem(L, item->pos, "a plugins entry must be a map with path and config");
        return -1;
    }
    if (cm_ycheck_keys(item, "in a plugins entry", names, 2, NULL, vals, &L->rep))
        return -1;
    if (!vals[0]) {
        problem(L, item->pos, "a plugins entry needs a path");
        return -1;
    }
    if (cm_yread_str(vals[0], "path", 0, &L->rep, &path))
        return -1;
    if (vals[1] && !cm_ynode_is_null(vals[1]) &&
        cm_yread_str(vals[1], "config", 1, &L->rep, &config))
        return -1;
    out->path = strdup(path);
    out->config = config ? strdup(config) : NULL;
    return 0;
}

static void set_plugins(loader *L, const cm_ynode *v)
{
    dconfig *c = L->c;

    plugins_free(c);
    if (cm_ynode_is_null(v))
        return;
    if (v->kind != CM_Y_SEQ) {
        problem(L, v->pos, "plugins must be a list of {path, config} maps");
        return;
    }
    if (v->n > MAX_PLUGINS) {
        problem(L, v->pos, "plugins may have at most %d entries", MAX_PLUGINS);
        return;
    }
    c->plugins = calloc(v->n ? v->n : 1, sizeof *c->plugins);
    if (!c->plugins) {
        problem(L, v->pos, "out of memory");
        return;
    }
    for (const cm_ynode *item = v->first; item; item = item->next) {
        dplugin *p = &c->plugins[c->n_plugins];
        if (read_plugin(L, item, p))
            continue;
        c->n_plugins++;
        if (!p->path)
            problem(L, item->pos, "out of memory");
    }
}

static void set_value(loader *L, const key *k, const cm_ynode *v)
{
    static const char *const unscanned[] = {"error", "found", "ok"};
    static const char *const precisions[] = {"fp32", "int8", "bf16"};
    static const char *const actions[] = {"tag", "flag", "quarantine", "reject"};
    char *base = (char *)L->c;
    long long i;
    int b;

    switch (k->type) {
    case T_STR:
        set_str(L, k, v);
        return;
    case T_SIZE:
        set_size(L, k, v);
        return;
    case T_UINT:
        if (!cm_yread_int(v, k->name, (long long)k->min, (long long)k->max, &L->rep, &i))
            *(unsigned *)(base + k->off) = (unsigned)i;
        return;
    case T_MODE:
        set_mode(L, k, v);
        return;
    case T_BOOL:
        if (!cm_yread_bool(v, k->name, &L->rep, &b))
            *(int *)(base + k->off) = b;
        return;
    case T_ACTION:
        /* clipmod_action: tag .. reject follow one another. */
        i = set_choice(L, k, v, actions, 4, "tag, flag, quarantine or reject");
        if (i >= 0)
            *(clipmod_action *)(base + k->off) = (clipmod_action)(CLIPMOD_ACTION_TAG + i);
        return;
    case T_PREC:
        /* clipmod_precision: fp32, int8, bf16 in the enum's order. */
        i = set_choice(L, k, v, precisions, 3, "fp32, int8 or bf16");
        if (i >= 0)
            *(clipmod_precision *)(base + k->off) = (clipmod_precision)i;
        return;
    case T_UNSCAN:
        i = set_choice(L, k, v, unscanned, 3, "error, found or ok");
        if (i >= 0)
            *(clamd_unscanned_mode *)(base + k->off) = (clamd_unscanned_mode)i;
        return;
    case T_LIST:
        set_list(L, k, v);
        return;
    case T_MS: {
        uint64_t ms;
        if (cm_yread_duration_ms(v, k->name, k->max, &L->rep, &ms))
            return;
        if (ms < k->min)
            problem(L, v->pos, "%s must be at least %llu ms", k->name, (unsigned long long)k->min);
        else
            *(unsigned *)(base + k->off) = (unsigned)ms;
        return;
    }
    case T_PLUGINS:
        set_plugins(L, v);
        return;
    case T_SECTION:
    case T_SETTINGS:
        return;
    }
}

/* Which allowed key has value node v (cm_ycheck_keys' vals), or n: unknown or a duplicate. */
static size_t index_of(const cm_ynode *const *vals, size_t n, const cm_ynode *v)
{
    size_t i = 0;
    while (i < n && vals[i] != v)
        i++;
    return i;
}

static void load_settings(loader *L, const cm_ynode *map)
{
    const char *names[CLIPMOD_SETTING__COUNT];
    const cm_ynode *vals[CLIPMOD_SETTING__COUNT];
    long long i;

    if (map->kind != CM_Y_MAP) {
        problem(L, map->pos, "engine must be a map of settings (see clipmod scan --help)");
        return;
    }
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++)
        names[s] = clipmod_setting_name((clipmod_setting)s);
    cm_ycheck_keys(map, "in engine (see clipmod scan --help)", names, CLIPMOD_SETTING__COUNT, NULL,
                   vals, &L->rep);
    for (const cm_ynode *v = map->first ? map->first->next : NULL; v;
         v = v->next ? v->next->next : NULL) {
        size_t s = index_of(vals, CLIPMOD_SETTING__COUNT, v);
        if (s == CLIPMOD_SETTING__COUNT || cm_yread_int(v, names[s], 0, LLONG_MAX, &L->rep, &i))
            continue;
        L->c->setting[s] = (uint64_t)i;
        L->c->setting_given[s] = 1;
    }
}

static void load_map(loader *L, const cm_ynode *map, const key *keys, const char *section)
{
    const char *names[64];
    const cm_ynode *vals[64];
    char where[64];
    size_t n = 0;

    if (map->kind != CM_Y_MAP) {
        problem(L, map->pos, "%s must be a map", section ? section : "the configuration");
        return;
    }
    while (keys[n].name && n < 64) {
        names[n] = keys[n].name;
        n++;
    }
    if (section)
        snprintf(where, sizeof where, "in %s", section);
    else
        snprintf(where, sizeof where, "at the top level");
    cm_ycheck_keys(map, where, names, n, NULL, vals, &L->rep);
    /* Values in the file's order, so problems come in the order of the lines. */
    for (const cm_ynode *v = map->first ? map->first->next : NULL; v;
         v = v->next ? v->next->next : NULL) {
        size_t i = index_of(vals, n, v);
        const key *k = &keys[i];
        if (i == n)
            continue;
        /* A section left empty (all its keys commented out) keeps its defaults. */
        if ((k->type == T_SECTION || k->type == T_SETTINGS) && cm_ynode_is_null(v))
            continue;
        if (k->type == T_SECTION)
            load_map(L, vals[i], k->section, k->name);
        else if (k->type == T_SETTINGS)
            load_settings(L, vals[i]);
        else
            set_value(L, k, vals[i]);
    }
}

/* The parsed document into L->c: every problem into L. */
static void load_doc(loader *L, int rc, cm_ydoc *doc)
{
    const cm_ynode *root = rc == CM_YAML_OK ? cm_yaml_root(doc) : NULL;

    if (rc == CM_YAML_NOMEM)
        problem(L, whole(), "out of memory");
    /* An empty file is a valid configuration: every default. */
    if (root && !cm_ynode_is_null(root))
        load_map(L, root, top_keys, NULL);
    cm_yaml_free(doc);
}

/*
 * http.auth-token-file: its first line is the token. The file is a secret, so as
 * ssh does for private keys, one that its group or others may read or write is
 * refused (checked on the file opened, not on the name).
 */
static void read_token(loader *L)
{
    const char *path = L->token_file;
    cm_ypos at = L->token_at;
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
    loader L;
    cm_ydoc *doc = NULL;

    *problems = NULL;
    if (config_set_str(&c->path, name))
        return -1;
    loader_init(&L, c->path, c);
    if (len > MAX_CONFIG_BYTES) {
        problem(&L, whole(), "not a configuration file of at most 1 MiB");
    } else {
        int rc = cm_yaml_parse(c->path, text, len, "a configuration file", &L.rep, &doc);
        load_doc(&L, rc, doc);
    }
    return loader_done(&L, problems);
}

int config_load(const char *path, dconfig *c, char **problems)
{
    loader L;
    cm_ydoc *doc = NULL;

    *problems = NULL;
    if (config_set_str(&c->path, path))
        return -1;
    /* Positions name c->path, which lives as long as the configuration. */
    loader_init(&L, c->path, c);
    int rc = cm_yaml_parse_file(c->path, MAX_CONFIG_BYTES, "a configuration file", &L.rep, &doc);
    load_doc(&L, rc, doc);
    if (L.token_file)
        read_token(&L);
    return loader_done(&L, problems);
}

/* A Redis key the worker writes or reads: set, printable ASCII without spaces. */
static void check_key(loader *L, const char *name, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    int ok = n > 0 && n <= 256;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)v[i] > 0x20 && (unsigned char)v[i] < 0x7f;
    if (!ok)
        problem(L, whole(), "worker.%s must be 1 to 256 printable characters without spaces", name);
}

static void check_worker(loader *L, const dconfig *c)
{
    char err[256];
    cm_redis_addr addr;

    if (!cm_redis_available())
        problem(L, whole(), "the worker needs Redis: this build has none (--without-redis)");
    if (!c->worker_redis)
        problem(L, whole(), "the worker needs worker.redis (redis://host:port/db)");
    else if (cm_redis_parse_url(c->worker_redis, "worker.redis", &addr, err, sizeof err))
        problem(L, whole(), "%s", err);
    check_key(L, "stream", c->worker_stream);
    check_key(L, "group", c->worker_group);
    check_key(L, "dead-letter", c->worker_dead);
    check_key(L, "result-prefix", c->worker_result_prefix);
    if (c->worker_consumer)
        check_key(L, "consumer", c->worker_consumer);
    if (c->worker_stream && c->worker_dead && !strcmp(c->worker_stream, c->worker_dead))
        problem(L, whole(), "worker.dead-letter must differ from worker.stream");
    if (c->worker_concurrency > c->queue_size)
        problem(L, whole(), "worker.concurrency (%u) must not exceed scan.queue-size (%u)",
                c->worker_concurrency, c->queue_size);
}

int config_check(const dconfig *c, char **problems)
{
    loader L;

    loader_init(&L, c->path ? c->path : "clipmodd", (dconfig *)c);
    if (!c->model)
        problem(&L, whole(), "no model: set 'model' (or give --model)");
    if (!c->policy)
        problem(&L, whole(), "no policy: set 'policy' (or give --policy)");
    if (c->max_files > c->queue_size)
        problem(&L, whole(), "http.max-files (%u) must not exceed scan.queue-size (%u)",
                c->max_files, c->queue_size);
    if (c->max_body_memory < c->max_body_bytes)
        problem(&L, whole(),
                "http.max-body-memory (%llu) must be at least http.max-body-bytes (%llu)",
                (unsigned long long)c->max_body_memory, (unsigned long long)c->max_body_bytes);
    if (!c->http_enabled && !c->clamd_unix && !c->clamd_tcp && !c->worker_enabled)
        problem(&L, whole(),
                "nothing to serve: http is disabled, no clamd socket is set and no worker runs");
    if (c->worker_enabled)
        check_worker(&L, c);
    if (c->tusd_download_url && strncmp(c->tusd_download_url, "http://", 7) &&
        strncmp(c->tusd_download_url, "https://", 8))
        problem(&L, whole(), "tusd.download-url must be an http(s) URL");
    return loader_done(&L, problems);
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
