/*
 * vcache_redis.c - the verdict cache's shared tier: Redis through hiredis.
 *
 * Owns a pool of connections each command borrows (the URL and dialling with
 * timeouts that bound every connect and command are redis_conn.c's), and the pause
 * after a failure: for PAUSE_MS nothing asks Redis, so a dead or stalled server slows
 * one request per pause by at most a timeout and the rest not at all. A failure
 * drops the connection it happened on (its state is unknown after a timeout).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "redis_conn.h"
#include "vcache_redis.h"

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>

#define POOL_MAX 8
#define PAUSE_MS 1000

struct cm_vredis {
    cm_redis_addr addr;
    uint64_t ttl_ms;
    unsigned timeout_ms;
    pthread_mutex_t lock;
    redisContext *idle[POOL_MAX];
    int n_idle;
    double paused_until; /* cm_now() seconds */
};

cm_vredis *cm_vredis_new(const char *url, uint64_t ttl_ms, unsigned timeout_ms, char *err,
                         size_t errlen)
{
    cm_vredis *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cm_redis_parse_url(url, "cache.redis", &r->addr, err, errlen)) {
        free(r);
        return NULL;
    }
    r->ttl_ms = ttl_ms;
    r->timeout_ms = timeout_ms;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void cm_vredis_free(cm_vredis *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_idle; i++)
        redisFree(r->idle[i]);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Under the lock: start a pause (a failure happened). */
static void pause_locked(cm_vredis *r)
{
    r->paused_until = cm_now() + PAUSE_MS / 1e3;
}

/*
 * A connection from the pool or a new one. NULL while paused (*failed untouched: a
 * pause is not a new failure) or when the connection failed (*failed = 1, and a
 * pause starts).
 */
static redisContext *borrow(cm_vredis *r, int *failed)
{
    pthread_mutex_lock(&r->lock);
    redisContext *c = NULL;
    int paused = cm_now() < r->paused_until;
    if (!paused && r->n_idle)
        c = r->idle[--r->n_idle];
    pthread_mutex_unlock(&r->lock);
    if (paused || c)
        return c;
    c = cm_redis_dial(&r->addr, r->timeout_ms, NULL, 0);
    if (c)
        return c;
    *failed = 1;
    pthread_mutex_lock(&r->lock);
    pause_locked(r);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Give `c` back; after a failure (ok == 0) close it and pause. */
static void give_back(cm_vredis *r, redisContext *c, int ok)
{
    pthread_mutex_lock(&r->lock);
    if (!ok)
        pause_locked(r);
    if (ok && r->n_idle < POOL_MAX) {
        r->idle[r->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    redisFree(c);
}

char *cm_vredis_get(cm_vredis *r, const char *key, size_t *len, int *failed)
{
    *failed = 0;
    redisContext *c = borrow(r, failed);
    if (!c)
        return NULL;
    redisReply *rep = redisCommand(c, "GET %s", key);
    int ok = rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_NIL);
    char *value = NULL;
    if (ok && rep->type == REDIS_REPLY_STRING)
        value = malloc(rep->len + 1);
    if (value) {
        memcpy(value, rep->str, rep->len);
        value[rep->len] = '\0';
        *len = rep->len;
    }
    freeReplyObject(rep);
    give_back(r, c, ok);
    *failed = !ok;
    return value;
}

int cm_vredis_set(cm_vredis *r, const char *key, const char *value, size_t len, int *failed)
{
    *failed = 0;
    redisContext *c = borrow(r, failed);
    if (!c)
        return -1;
    redisReply *rep = r->ttl_ms ? redisCommand(c, "SET %s %b PX %llu", key, value, len,
                                               (unsigned long long)r->ttl_ms)
                                : redisCommand(c, "SET %s %b", key, value, len);
    int ok = rep && rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    give_back(r, c, ok);
    *failed = !ok;
    return ok ? 0 : -1;
}

#else /* !HAVE_HIREDIS */

cm_vredis *cm_vredis_new(const char *url, uint64_t ttl_ms, unsigned timeout_ms, char *err,
                         size_t errlen)
{
    (void)url, (void)ttl_ms, (void)timeout_ms;
    snprintf(err, errlen,
             "cache.redis: this build has no Redis support (configured --without-redis)");
    return NULL;
}

void cm_vredis_free(cm_vredis *r)
{
    (void)r;
}

char *cm_vredis_get(cm_vredis *r, const char *key, size_t *len, int *failed)
{
    (void)r, (void)key, (void)len;
    *failed = 1;
    return NULL;
}

int cm_vredis_set(cm_vredis *r, const char *key, const char *value, size_t len, int *failed)
{
    (void)r, (void)key, (void)value, (void)len;
    *failed = 1;
    return -1;
}

#endif
