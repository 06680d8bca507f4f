/*
 * redis_conn.c - one Redis address and connection for every program.
 *
 * Owns parsing "redis://host[:port][/db]" and dialling it: hiredis's connect with a
 * timeout, the same timeout set on the socket for every command (a stalled server
 * costs at most that, never a hang), and SELECT when a database is named. Pools,
 * pauses and what to ask are the callers' (vcache_redis.c, src/daemon/worker_redis.c).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "redis_conn.h"

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

/* The host part, after "redis://": up to ':', '/' or the end; in brackets for IPv6. */
static const char *parse_host(const char *p, cm_redis_addr *a)
{
    const char *end;

    if (*p == '[')
        end = strchr(++p, ']');
    else
        end = p + strcspn(p, ":/");
    if (!end || end == p || (size_t)(end - p) >= sizeof a->host)
        return NULL;
    memcpy(a->host, p, (size_t)(end - p));
    a->host[end - p] = '\0';
    return end + (*end == ']');
}

int cm_redis_parse_url(const char *url, const char *what, cm_redis_addr *a, char *err,
                       size_t errlen)
{
    const char *p = url;
    char *num_end;

    memset(a, 0, sizeof *a);
    if (!url || strncmp(p, "redis://", 8)) {
        snprintf(err, errlen, "%s: \"%.120s\" is not a redis:// URL", what, url ? url : "");
        return -1;
    }
    /* A user or password ("user:pass@host") is refused rather than half understood. */
    if (strchr(p + 8, '@') || !(p = parse_host(p + 8, a))) {
        snprintf(err, errlen, "%s: \"%.120s\": expected redis://host[:port][/db]", what, url);
        return -1;
    }
    a->port = 6379;
    if (*p == ':') {
        long v = strtol(p + 1, &num_end, 10);
        if (num_end == p + 1 || v < 1 || v > 65535)
            goto bad;
        a->port = (int)v, p = num_end;
    }
    if (*p == '/' && p[1]) {
        long v = strtol(p + 1, &num_end, 10);
        if (num_end == p + 1 || v < 0 || v > 1000000)
            goto bad;
        a->db = (int)v, p = num_end;
    } else if (*p == '/') {
        p++;
    }
    if (!*p)
        return 0;
bad:
    snprintf(err, errlen, "%s: \"%.120s\": bad port or database number", what, url);
    return -1;
}

#ifdef HAVE_HIREDIS

int cm_redis_available(void)
{
    return 1;
}

static void say(char *err, size_t errlen, const char *what, const char *detail)
{
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s", what, detail && *detail ? ": " : "", detail ? detail : "");
}

struct redisContext *cm_redis_dial(const cm_redis_addr *a, unsigned timeout_ms, char *err,
                                   size_t errlen)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(a->host, a->port, tv);

    if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        say(err, errlen, "cannot connect to Redis", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    if (a->db) {
        redisReply *rep = redisCommand(c, "SELECT %d", a->db);
        int ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (!ok)
            say(err, errlen, "Redis refused SELECT",
                rep && rep->type == REDIS_REPLY_ERROR ? rep->str : c->errstr);
        freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

#else /* !HAVE_HIREDIS */

int cm_redis_available(void)
{
    return 0;
}

struct redisContext *cm_redis_dial(const cm_redis_addr *a, unsigned timeout_ms, char *err,
                                   size_t errlen)
{
    (void)a, (void)timeout_ms;
    if (err && errlen)
        snprintf(err, errlen, "this build has no Redis support (configured --without-redis)");
    return NULL;
}

#endif
