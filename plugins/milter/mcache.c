/*
 * mcache.c - clipmod-milter's use of the verdict cache (src/common/vcache.h).
 *
 * Owns the one cache of the process (opened at start from `cache:`, kept across
 * reloads, which only warn when its settings changed) and what ties it to a
 * message's images: before the message's batch is scanned, cm_mcache_lookup()
 * answers the images it knows (a hit becomes the image's result as if scanned,
 * marked cached) and leaves the others to scan; cm_mcache_store() keeps the scanned
 * verdicts afterwards. Keys are clipmodd's: the image's bytes, the message's own
 * engine (policy fingerprint), the model, the context text given to that image and
 * the salt of the configuration the engine was built from (vcache_key.h, computed
 * by main.c per runtime), so a reload never meets a verdict of another policy. The
 * milter has no metrics endpoint: each message's log line counts its hits and
 * misses, and the totals are logged on SIGUSR1 and when the milter stops.
 */
#include <stdlib.h>
#include <string.h>

#include "milter.h"

static cm_vcache *cache;

int cm_mcache_start(const cmc_config *c)
{
    char err[256] = "";
    cm_vcache_opts o = {c->cache.memory, c->cache.redis, c->cache.ttl_ms,
                        (unsigned)c->cache.redis_timeout_ms};
    if (!c->cache.memory && !c->cache.redis)
        return 0;
    cache = cm_vcache_new(&o, err, sizeof err);
    if (!cache) {
        cm_log(CM_LOG_ERROR, "verdict cache not opened", CM_LF_S("error", err), CM_LF_END);
        return -1;
    }
    cm_log(CM_LOG_INFO, "verdict cache", CM_LF_I("memory_bytes", (long long)c->cache.memory),
           CM_LF_S("redis", c->cache.redis), CM_LF_END);
    return 0;
}

void cm_mcache_stop(void)
{
    cm_vcache_free(cache);
    cache = NULL;
}

int cm_mcache_enabled(void)
{
    return cm_vcache_enabled(cache);
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

void cm_mcache_check_reload(const cmc_config *old, const cmc_config *fresh)
{
    const cmc_cache *a = &old->cache, *b = &fresh->cache;
    if (a->memory != b->memory || !same_str(a->redis, b->redis) || a->ttl_ms != b->ttl_ms ||
        a->redis_timeout_ms != b->redis_timeout_ms)
        cm_log(CM_LOG_WARN, "cache changes take a restart; keeping the verdict cache",
               CM_LF_I("memory_bytes", (long long)a->memory), CM_LF_S("redis", a->redis),
               CM_LF_END);
}

void cm_mcache_log_stats(const char *why)
{
    cm_vcache_stats s;
    if (!cache)
        return;
    cm_vcache_stats_get(cache, &s);
    cm_log(CM_LOG_INFO, "verdict cache counters", CM_LF_S("why", why),
           CM_LF_I("hits", (long long)s.hits), CM_LF_I("misses", (long long)s.misses),
           CM_LF_I("memory_hits", (long long)s.memory_hits),
           CM_LF_I("redis_hits", (long long)s.redis_hits), CM_LF_I("stores", (long long)s.stores),
           CM_LF_I("redis_errors", (long long)s.redis_errors),
           CM_LF_I("invalid", (long long)s.invalid), CM_LF_I("evictions", (long long)s.evictions),
           CM_LF_I("entries", (long long)s.entries), CM_LF_I("bytes", (long long)s.bytes),
           CM_LF_END);
}

size_t cm_mcache_lookup(const cm_runtime *rt, const clipmod_input *in, size_t n, cm_mkey *keys,
                        clipmod_result **out)
{
    size_t left = n;
    /* Without its salt (out of memory when the runtime was made) a key could be wrong. */
    if (!cache || !rt->salt || !rt->model)
        return n;
    for (size_t i = 0; i < n; i++) {
        cm_mkey *k = &keys[i];
        if (cm_vcache_key(&k->key, in[i].data, in[i].len, -1, rt->engine, rt->model, in[i].context,
                          in[i].context_len, rt->salt))
            continue;
        k->keyed = 1;
        out[i] = cm_vcache_get(cache, &k->key, in[i].name ? in[i].name : "image");
        if (out[i]) {
            k->cached = 1;
            left--;
        }
    }
    return left;
}

void cm_mcache_store(const cm_mkey *keys, clipmod_result *const *results, size_t n)
{
    for (size_t i = 0; cache && i < n; i++)
        if (keys[i].keyed && !keys[i].cached && results[i])
            cm_vcache_put(cache, &keys[i].key, results[i]);
}
