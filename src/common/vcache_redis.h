/*
 * vcache_redis.h - the verdict cache's shared tier: Redis through hiredis (internal).
 *
 * Owns the connections to one Redis: a small pool (hiredis contexts are not
 * thread-safe, so each command borrows one), bounded connect and command timeouts,
 * and a pause after a failure during which Redis is not asked at all, so a Redis
 * that is down costs one timeout per pause, not one per image. Values are opaque
 * here; vcache.c frames and checks them. Built without hiredis, _new refuses.
 */
#ifndef CM_VCACHE_REDIS_H
#define CM_VCACHE_REDIS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_vredis cm_vredis;

/* NULL with a sentence in err for a malformed URL (or no hiredis in this build). */
cm_vredis *cm_vredis_new(const char *url, uint64_t ttl_ms, unsigned timeout_ms, char *err,
                         size_t errlen);
void cm_vredis_free(cm_vredis *r);

/*
 * GET key: a malloc'd value (its length in *len), or NULL for a miss (also while
 * paused after a failure). *failed is set to 1 when Redis failed or timed out now.
 */
char *cm_vredis_get(cm_vredis *r, const char *key, size_t *len, int *failed);

/* SET key value [PX ttl]; 0, or -1 (paused, or *failed = 1: failed or timed out now). */
int cm_vredis_set(cm_vredis *r, const char *key, const char *value, size_t len, int *failed);

#endif
