/*
 * dcache.c - clipmodd's use of the verdict cache (src/common/vcache.h).
 *
 * Owns the one cache of the daemon and what ties it to jobs: before a batch is
 * scanned, the batcher asks dcache_lookup() to answer what it can (a hit becomes the
 * job's result as if scanned, marked `cached`); after the pass, dcache_store() keeps
 * the scanned verdicts. Keys take the job's own engine (policy fingerprint), the
 * model, each input's context, and a salt naming the engine settings and plugins the
 * engine was built with (vcache_key.h, the milter's too): the salt is recorded per
 * generation of the reload slot, so a job keeps the salt of the engine it holds, and
 * a job of a generation not (yet) recorded is scanned without the cache rather than
 * keyed wrongly. URL jobs are not
 * cached (their bytes are only known once fetched, inside the library). The counters
 * go to /metrics; hits say "cached": true in their JSON.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "dynbuf.h"
#include "vcache.h"
#include "vcache_key.h"

/* Generations whose salt is kept: requests rarely outlive a few reloads. */
#define SALTS 8

static struct {
    cm_vcache *cache;
    pthread_mutex_t lock;
    struct {
        unsigned long generation;
        char *salt;
    } salts[SALTS];
    unsigned next;
} D = {.lock = PTHREAD_MUTEX_INITIALIZER};

int dcache_start(const dconfig *c)
{
    char err[256] = "";
    cm_vcache_opts o = {c->cache_memory, c->cache_redis, c->cache_ttl_ms,
                        c->cache_redis_timeout_ms};
    if (!c->cache_memory && !c->cache_redis)
        return 0;
    D.cache = cm_vcache_new(&o, err, sizeof err);
    if (!D.cache) {
        cm_log(CM_LOG_ERROR, "verdict cache not opened", CM_LF_S("error", err), CM_LF_END);
        return -1;
    }
    cm_log(CM_LOG_INFO, "verdict cache", CM_LF_I("memory_bytes", (long long)c->cache_memory),
           CM_LF_S("redis", c->cache_redis), CM_LF_END);
    return 0;
}

void dcache_stop(void)
{
    cm_vcache_free(D.cache);
    D.cache = NULL;
    for (unsigned i = 0; i < SALTS; i++) {
        free(D.salts[i].salt);
        D.salts[i].salt = NULL;
    }
}

/* The settings given and plugins of `c`, as one text: what else shapes a verdict. */
static char *salt_of(const dconfig *c)
{
    cm_vsalt s;
    cm_vsalt_init(&s);
    for (int k = 0; k < CLIPMOD_SETTING__COUNT; k++)
        if (c->setting_given[k])
            cm_vsalt_setting(&s, (clipmod_setting)k, c->setting[k]);
    for (size_t i = 0; i < c->n_plugins; i++)
        cm_vsalt_plugin(&s, c->plugins[i].path, c->plugins[i].config);
    return cm_vsalt_finish(&s, c->context_enabled);
}

void dcache_generation(unsigned long generation, const dconfig *c)
{
    if (!D.cache)
        return;
    char *salt = salt_of(c);
    pthread_mutex_lock(&D.lock);
    free(D.salts[D.next].salt);
    D.salts[D.next].generation = salt ? generation : 0;
    D.salts[D.next].salt = salt;
    D.next = (D.next + 1) % SALTS;
    pthread_mutex_unlock(&D.lock);
}

/* A copy of the salt of `generation`, or NULL when unknown. */
static char *salt_for(unsigned long generation)
{
    char *s = NULL;
    pthread_mutex_lock(&D.lock);
    for (unsigned i = 0; i < SALTS && !s && generation; i++)
        if (D.salts[i].generation == generation && D.salts[i].salt)
            s = strdup(D.salts[i].salt);
    pthread_mutex_unlock(&D.lock);
    return s;
}

size_t dcache_lookup(bjob *j)
{
    size_t left = 0;
    char *salt = D.cache && !j->urls ? salt_for(j->generation) : NULL;
    for (size_t i = 0; i < j->n; i++) {
        binput *b = &j->in[i];
        cm_vkey k;
        if (j->out[i])
            continue;
        left++;
        if (!salt || cm_vcache_key(&k, b->data, b->len, b->fd, j->engine, reload_model(),
                                   b->context, b->context_len, salt))
            continue;
        memcpy(b->key, k.b, sizeof b->key);
        b->keyed = 1;
        j->out[i] = cm_vcache_get(D.cache, &k, b->name ? b->name : "upload");
        if (j->out[i]) {
            b->cached = 1;
            left--;
        }
    }
    free(salt);
    return left;
}

void dcache_store(const bjob *j)
{
    for (size_t i = 0; D.cache && i < j->n; i++) {
        const binput *b = &j->in[i];
        cm_vkey k;
        if (!b->keyed || b->cached || !j->out[i])
            continue;
        memcpy(k.b, b->key, sizeof k.b);
        cm_vcache_put(D.cache, &k, j->out[i]);
    }
}

char *dcache_json(const clipmod_result *r, int explain, int cached)
{
    char *one = clipmod_result_to_json(r, explain);
    size_t n = one ? strlen(one) : 0;
    /* malloc'd for the caller either way; the flag goes last, as a field added later. */
    char *s = n && one[n - 1] == '}' ? malloc(n + sizeof ",\"cached\":true") : NULL;
    if (s && cached) {
        memcpy(s, one, n - 1);
        memcpy(s + n - 1, ",\"cached\":true}", sizeof ",\"cached\":true}");
    } else if (s) {
        memcpy(s, one, n + 1);
    }
    clipmod_free(one);
    return s;
}

int dcache_result_json(cm_dbuf *b, const bjob *j, size_t i, int explain)
{
    char *one = dcache_json(j->out[i], explain, j->in[i].cached);
    size_t n = one ? strlen(one) : 0;
    int rc;

    while (n && (one[n - 1] == '\n' || one[n - 1] == ' '))
        n--;
    /* An object: "{...}". Anything else would be a library bug; refuse it. */
    if (n < 2 || one[0] != '{' || one[n - 1] != '}') {
        free(one);
        return CM_DBUF_E_NOMEM;
    }
    rc = cm_dbuf_addn(b, one, n - 1);
    if (rc == CM_DBUF_OK)
        rc = cm_dbuf_addf(b, "%s\"policy_fingerprint\":\"%s\",\"policy_generation\":%lu}",
                          n > 2 ? "," : "", j->policy_fp, j->generation);
    free(one);
    return rc;
}

int dcache_metrics(cm_dbuf *t)
{
    cm_vcache_stats s;
    if (!D.cache)
        return 0;
    cm_vcache_stats_get(D.cache, &s);
    int rc = cm_dbuf_addf(
        t,
        "# HELP clipmodd_cache_lookups_total Verdict cache lookups, by result.\n"
        "# TYPE clipmodd_cache_lookups_total counter\n"
        "clipmodd_cache_lookups_total{result=\"hit\"} %llu\n"
        "clipmodd_cache_lookups_total{result=\"miss\"} %llu\n"
        "# HELP clipmodd_cache_hits_total Verdict cache hits, by tier.\n"
        "# TYPE clipmodd_cache_hits_total counter\n"
        "clipmodd_cache_hits_total{tier=\"memory\"} %llu\n"
        "clipmodd_cache_hits_total{tier=\"redis\"} %llu\n"
        "# HELP clipmodd_cache_stores_total Scanned verdicts stored in the cache.\n"
        "# TYPE clipmodd_cache_stores_total counter\n"
        "clipmodd_cache_stores_total %llu\n"
        "# HELP clipmodd_cache_redis_errors_total Redis connections or commands that failed "
        "or timed out.\n"
        "# TYPE clipmodd_cache_redis_errors_total counter\n"
        "clipmodd_cache_redis_errors_total %llu\n"
        "# HELP clipmodd_cache_invalid_total Cached values found damaged or foreign, ignored.\n"
        "# TYPE clipmodd_cache_invalid_total counter\n"
        "clipmodd_cache_invalid_total %llu\n"
        "# HELP clipmodd_cache_evictions_total In-memory entries dropped for room.\n"
        "# TYPE clipmodd_cache_evictions_total counter\n"
        "clipmodd_cache_evictions_total %llu\n"
        "# HELP clipmodd_cache_entries In-memory cache entries.\n"
        "# TYPE clipmodd_cache_entries gauge\n"
        "clipmodd_cache_entries %llu\n"
        "# HELP clipmodd_cache_bytes In-memory cache bytes (cache.memory caps them).\n"
        "# TYPE clipmodd_cache_bytes gauge\n"
        "clipmodd_cache_bytes %llu\n",
        (unsigned long long)s.hits, (unsigned long long)s.misses, (unsigned long long)s.memory_hits,
        (unsigned long long)s.redis_hits, (unsigned long long)s.stores,
        (unsigned long long)s.redis_errors, (unsigned long long)s.invalid,
        (unsigned long long)s.evictions, (unsigned long long)s.entries,
        (unsigned long long)s.bytes);
    return rc;
}
