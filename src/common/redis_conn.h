/*
 * redis_conn.h - one Redis address and connection for every program (internal).
 *
 * Owns the Redis URL clipmod's settings take ("redis://host[:port][/db]", an IPv6
 * host in brackets; no user or password) and dialling it with hiredis: a connect
 * timeout and a command timeout on every connection, the database selected. The
 * verdict cache (vcache_redis.c) and clipmodd's queue worker (src/daemon/worker*.c)
 * both use it, so a URL means the same thing in cache.redis and worker.redis. Built
 * without hiredis, the parser still works and cm_redis_dial refuses.
 */
#ifndef CM_REDIS_CONN_H
#define CM_REDIS_CONN_H

#include <stddef.h>

typedef struct cm_redis_addr {
    char host[256];
    int port; /* 6379 unless given */
    int db;   /* 0 unless given */
} cm_redis_addr;

/*
 * Parse `url` into *a. 0, or -1 with a sentence starting with `what` (the setting's
 * name, e.g. "cache.redis") in err.
 */
int cm_redis_parse_url(const char *url, const char *what, cm_redis_addr *a, char *err,
                       size_t errlen);

/*
 * A new connection to `a` whose connect and every command time out after
 * `timeout_ms`, with the database selected. NULL on failure, with why in err (when
 * err is not NULL). Free with redisFree(). Declared without hiredis's header: the
 * caller that includes <hiredis/hiredis.h> gets the full type.
 */
struct redisContext;
struct redisContext *cm_redis_dial(const cm_redis_addr *a, unsigned timeout_ms, char *err,
                                   size_t errlen);

/* 1 when this build has hiredis (configure without --without-redis). */
int cm_redis_available(void);

#endif
