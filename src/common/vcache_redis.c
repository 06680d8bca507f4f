/*
 * vcache_redis.c - the verdict cache's shared tier: Redis through hiredis.
 *
 * Owns the Redis URL ("redis://host[:port][/db]"), a pool of connections each
 * command borrows, the timeouts that bound every connect and command, and the pause
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
#include "vcache_redis.h"

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>

#define POOL_MAX 8
#define PAUSE_MS 1000

struct cm_vredis {
    char host[256];
    int port, db;
    uint64_t ttl_ms;
    struct timeval tv;
    pthread_mutex_t lock;
    redisContext *idle[POOL_MAX];
    int n_idle;
    double paused_until; /* cm_now() seconds */
};

/* "redis://host[:port][/db]"; an IPv6 host in brackets. 0, or -1 with err. */
static int parse_url(cm_vredis *r, const char *url, char *err, size_t errlen)
{
    const char *p = url, *end;
    char *num_end;
    if (strncmp(p, "redis://", 8)) {
        snprintf(err, errlen, "cache.redis: \"%s\" is not a redis:// URL", url);
        return -1;
    }
    p += 8;
    if (*p == '[') {
        end = strchr(++p, ']');
    } else {
        end = p + strcspn(p, ":/");
    }
    if (!end || end == p || (size_t)(end - p) >= sizeof r->host || strchr(p, '@')) {
        snprintf(err, errlen, "cache.redis: \"%s\": expected redis://host[:port][/db]", url);
        return -1;
    }
    memcpy(r->host, p, (size_t)(end - p));
    r->host[end - p] = '\0';
    p = end + (*end == ']');
    r->port = 6379;
    if (*p == ':') {
        long v = strtol(p + 1, &num_end, 10);
        if (num_end == p + 1 || v < 1 || v > 65535)
            goto bad;
        r->port = (int)v, p = num_end;
    }
    if (*p == '/' && p[1]) {
        long v = strtol(p + 1, &num_end, 10);
        if (num_end == p + 1 || v < 0 || v > 1000000)
            goto bad;
        r->db = (int)v, p = num_end;
    } else if (*p == '/') {
        p++;
    }
    if (!*p)
        return 0;
bad:
    snprintf(err, errlen, "cache.redis: \"%s\": bad port or database number", url);
    return -1;
}

cm_vredis *cm_vredis_new(const char *url, uint64_t ttl_ms, unsigned timeout_ms, char *err,
                         size_t errlen)
{
    cm_vredis *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_url(r, url, err, errlen)) {
        free(r);
        return NULL;
    }
    r->ttl_ms = ttl_ms;
    r->tv.tv_sec = timeout_ms / 1000;
    r->tv.tv_usec = (timeout_ms % 1000) * 1000;
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

/* A new connection with both timeouts set and the database selected; NULL on failure. */
static redisContext *dial(cm_vredis *r)
{
    redisContext *c = redisConnectWithTimeout(r->host, r->port, r->tv);
    if (!c || c->err || redisSetTimeout(c, r->tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    if (r->db) {
        redisReply *rep = redisCommand(c, "SELECT %d", r->db);
        int ok = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
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
    if ((c = dial(r)))
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
    if (ok && rep->type == REDIS_REPLY_STRING && (value = malloc(rep->len + 1))) {
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
