/*
 * vcache.h - the verdict cache shared by clipmodd and clipmod-milter (issue 17).
 *
 * Owns caching scanned verdicts so that the same bytes judged under the same policy,
 * model, context text and settings are not scanned again. A key is the SHA-256 of
 * the image's bytes framed with the policy's fingerprint, the model's fingerprint
 * and precision, the input's context text and a program's "salt" (its settings and
 * plugins): an edit or reload of any of them changes every key, so a stale verdict
 * is never served. Two tiers: an in-process LRU with a byte cap (`cache: memory:`),
 * and optionally a shared Redis (`cache: redis:`, vcache_redis.c) so a fleet shares
 * its scans. Values are clipmod_result_encode() records framed with their key and
 * a SHA-256 of the record; a value read back (from Redis above all) is untrusted:
 * a damaged, foreign or misplaced value is ignored and the input scanned. A Redis
 * that is down or slow costs at most its timeouts, then is left alone for a while;
 * it never turns into an error. Only scanned verdicts (clean, flagged) are stored.
 * Thread-safe: one cache serves every worker thread.
 */
#ifndef CM_VCACHE_H
#define CM_VCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"

#define CM_VKEY_BYTES 32

typedef struct cm_vkey {
    unsigned char b[CM_VKEY_BYTES];
} cm_vkey;

typedef struct cm_vcache_opts {
    uint64_t memory_bytes; /* LRU byte cap; 0: no in-process tier */
    const char *redis_url; /* "redis://host:port/db" or NULL */
    uint64_t ttl_ms;       /* Redis expiry of a stored verdict; 0: none */
    unsigned timeout_ms;   /* Redis connect and command timeout */
} cm_vcache_opts;

typedef struct cm_vcache_stats {
    uint64_t hits, misses, stores; /* lookups answered, lookups not, verdicts stored */
    uint64_t memory_hits, redis_hits;
    uint64_t redis_errors;   /* connections or commands that failed or timed out */
    uint64_t invalid;        /* values found damaged or foreign, and ignored */
    uint64_t evictions;      /* LRU entries dropped for room */
    uint64_t entries, bytes; /* the LRU now */
} cm_vcache_stats;

typedef struct cm_vcache cm_vcache;

/*
 * A cache per `o`; NULL with a sentence in err when the options are invalid (a
 * malformed Redis URL, or Redis asked of a build without hiredis) or out of memory.
 * A Redis that does not answer now is no error: it is tried again later.
 */
cm_vcache *cm_vcache_new(const cm_vcache_opts *o, char *err, size_t errlen);
void cm_vcache_free(cm_vcache *c); /* accepts NULL */

/* 1 if `c` caches anything (a NULL cache does not). */
int cm_vcache_enabled(const cm_vcache *c);

/*
 * The key of an input: its bytes (data/len, or the regular file open at fd >= 0,
 * read with pread so its offset stays), the engine's policy fingerprint, the
 * model's fingerprint and precision, its context text (NULL or len 0: none) and the
 * program's salt (NULL: ""). 0, or -1 when the file could not be read.
 */
int cm_vcache_key(cm_vkey *key, const void *data, size_t len, int fd, const clipmod_engine *engine,
                  const clipmod_model *model, const char *context, size_t context_len,
                  const char *salt);

/*
 * The verdict stored under `key`, as a new result named `name` (the caller frees
 * it), or NULL on a miss. Counts a hit or a miss; a Redis hit is copied into the LRU.
 */
clipmod_result *cm_vcache_get(cm_vcache *c, const cm_vkey *key, const char *name);

/* Store `r` under `key` if it is a scanned verdict; anything else is left out. */
void cm_vcache_put(cm_vcache *c, const cm_vkey *key, const clipmod_result *r);

void cm_vcache_stats_get(cm_vcache *c, cm_vcache_stats *out);

/* The key in 64 lowercase hex digits and a NUL (the Redis key's tail; logs). */
void cm_vkey_hex(const cm_vkey *key, char out[2 * CM_VKEY_BYTES + 1]);

/*
 * A stored value: "clipmod-vcache/1 KEYHEX SHA256HEX\n" then the record. _frame
 * returns a malloc'd value (NULL out of memory); _parse checks the header against
 * `key` and the digest against the record, then decodes it: a result named `name`,
 * or NULL for anything damaged or foreign (the fuzz target's entry).
 */
char *cm_vcache_frame(const cm_vkey *key, const char *record, size_t len, size_t *out_len);
clipmod_result *cm_vcache_parse(const cm_vkey *key, const char *value, size_t len,
                                const char *name);

#endif
