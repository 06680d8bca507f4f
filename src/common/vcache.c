/*
 * vcache.c - the verdict cache: keys, the in-process LRU, framed values (vcache.h).
 *
 * Owns what vcache.h promises but the Redis connections (vcache_redis.c): the key
 * derivation (GLib's SHA-256), the LRU (a hash table over an intrusive list, newest
 * first, entries weighed by their record's bytes plus their bookkeeping), the value
 * frame that makes a Redis value checkable, and the counters. Records are decoded on
 * every hit (a few microseconds) so that each caller owns its result, as after a scan.
 */
#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vcache.h"
#include "vcache_redis.h"

#define FRAME_MAGIC  "clipmod-vcache/1 "
#define REDIS_PREFIX "clipmod:verdict:"
/* A value larger than this is no verdict of ours: not stored, not read back. */
#define MAX_RECORD (4u << 20)
/* What an entry costs beside its record: the entry, the table's slot, malloc's headers. */
#define ENTRY_OVERHEAD 128

typedef struct entry {
    cm_vkey key;
    char *rec;
    size_t len;
    struct entry *prev, *next; /* newest first */
} entry;

struct cm_vcache {
    pthread_mutex_t lock;
    uint64_t cap, bytes;
    GHashTable *table; /* cm_vkey * -> entry * (keys point into entries) */
    entry *head, *tail;
    cm_vredis *redis;
    cm_vcache_stats st; /* entries and bytes filled on read */
};

static guint key_hash(gconstpointer k)
{
    guint h;
    memcpy(&h, ((const cm_vkey *)k)->b, sizeof h); /* a SHA-256 is hash enough */
    return h;
}

static gboolean key_equal(gconstpointer a, gconstpointer b)
{
    return !memcmp(a, b, sizeof(cm_vkey));
}

cm_vcache *cm_vcache_new(const cm_vcache_opts *o, char *err, size_t errlen)
{
    cm_vcache *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->cap = o->memory_bytes;
    c->table = g_hash_table_new(key_hash, key_equal);
    if (o->redis_url && *o->redis_url) {
        c->redis = cm_vredis_new(o->redis_url, o->ttl_ms, o->timeout_ms, err, errlen);
        if (!c->redis) {
            cm_vcache_free(c);
            return NULL;
        }
    }
    return c;
}

void cm_vcache_free(cm_vcache *c)
{
    if (!c)
        return;
    for (entry *e = c->head, *n; e; e = n) {
        n = e->next;
        free(e->rec);
        free(e);
    }
    g_hash_table_destroy(c->table);
    cm_vredis_free(c->redis);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int cm_vcache_enabled(const cm_vcache *c)
{
    return c && (c->cap || c->redis);
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

/* A field framed by its length, so that no two different inputs hash alike. */
static void field(GChecksum *h, const void *p, size_t len)
{
    guint64 n = GUINT64_TO_LE((guint64)len);
    g_checksum_update(h, (const guchar *)&n, sizeof n);
    if (len)
        g_checksum_update(h, p, len);
}

static void digest_of(GChecksum *h, unsigned char out[32])
{
    gsize n = 32;
    g_checksum_get_digest(h, out, &n);
}

/* SHA-256 of the file open at fd, read from offset 0 with pread. 0 or -1. */
static int file_digest(int fd, unsigned char out[32])
{
    GChecksum *h = g_checksum_new(G_CHECKSUM_SHA256);
    unsigned char buf[65536];
    off_t off = 0;
    ssize_t n;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
        g_checksum_update(h, buf, (gssize)n);
        off += n;
    }
    if (n == 0)
        digest_of(h, out);
    g_checksum_free(h);
    return n == 0 ? 0 : -1;
}

int cm_vcache_key(cm_vkey *key, const void *data, size_t len, int fd, const clipmod_engine *engine,
                  const clipmod_model *model, const char *context, size_t context_len,
                  const char *salt)
{
    unsigned char img[32];
    if (fd >= 0) {
        if (file_digest(fd, img))
            return -1;
    } else {
        GChecksum *h = g_checksum_new(G_CHECKSUM_SHA256);
        if (len)
            g_checksum_update(h, data, (gssize)len);
        digest_of(h, img);
        g_checksum_free(h);
    }
    GChecksum *h = g_checksum_new(G_CHECKSUM_SHA256);
    const char *fp = clipmod_engine_policy_fingerprint(engine);
    const char *prec = clipmod_precision_name(clipmod_model_precision(model));
    guint64 mfp = GUINT64_TO_LE(clipmod_model_fingerprint(model));
    field(h, "clipmod-vcache/1", 16);
    field(h, img, sizeof img);
    field(h, fp, strlen(fp));
    field(h, &mfp, sizeof mfp);
    field(h, prec, strlen(prec));
    /* No context and an empty one judge alike (the doors pass neither to the engine). */
    field(h, context, context && context_len ? context_len : 0);
    field(h, salt ? salt : "", salt ? strlen(salt) : 0);
    digest_of(h, key->b);
    g_checksum_free(h);
    return 0;
}

void cm_vkey_hex(const cm_vkey *key, char out[2 * CM_VKEY_BYTES + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < CM_VKEY_BYTES; i++) {
        out[2 * i] = hex[key->b[i] >> 4];
        out[2 * i + 1] = hex[key->b[i] & 15];
    }
    out[2 * CM_VKEY_BYTES] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

static void sha256_hex(const char *p, size_t len, char out[65])
{
    cm_vkey d;
    GChecksum *h = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(h, (const guchar *)p, (gssize)len);
    digest_of(h, d.b);
    g_checksum_free(h);
    cm_vkey_hex(&d, out);
}

char *cm_vcache_frame(const cm_vkey *key, const char *record, size_t len, size_t *out_len)
{
    char khex[65], dhex[65];
    cm_vkey_hex(key, khex);
    sha256_hex(record, len, dhex);
    const size_t head = strlen(FRAME_MAGIC) + 64 + 1 + 64 + 1;
    char *v = malloc(head + len + 1);
    if (!v)
        return NULL;
    snprintf(v, head + 1, "%s%s %s\n", FRAME_MAGIC, khex, dhex);
    memcpy(v + head, record, len);
    v[head + len] = '\0';
    *out_len = head + len;
    return v;
}

clipmod_result *cm_vcache_parse(const cm_vkey *key, const char *value, size_t len, const char *name)
{
    const size_t magic = strlen(FRAME_MAGIC), head = magic + 64 + 1 + 64 + 1;
    char khex[65], dhex[65];
    if (!value || len < head || len - head > MAX_RECORD || memcmp(value, FRAME_MAGIC, magic))
        return NULL;
    cm_vkey_hex(key, khex);
    /* A value stored under another key (copied, or a collision of prefixes) is foreign. */
    if (memcmp(value + magic, khex, 64) || value[magic + 64] != ' ' || value[head - 1] != '\n')
        return NULL;
    sha256_hex(value + head, len - head, dhex);
    if (memcmp(value + magic + 65, dhex, 64))
        return NULL;
    clipmod_result *r = NULL;
    if (clipmod_result_decode(value + head, len - head, name, &r, NULL))
        return NULL;
    return r;
}

/* ------------------------------------------------------------------------ */
/* The LRU                                                                  */
/* ------------------------------------------------------------------------ */

static size_t weight(const entry *e)
{
    return e->len + ENTRY_OVERHEAD;
}

/* Under the lock. */
static void unlink_entry(cm_vcache *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(cm_vcache *c, entry *e)
{
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void drop(cm_vcache *c, entry *e)
{
    unlink_entry(c, e);
    g_hash_table_remove(c->table, &e->key);
    c->bytes -= weight(e);
    free(e->rec);
    free(e);
}

/* A copy of the record under `key` (made newest), or NULL. */
static char *lru_get(cm_vcache *c, const cm_vkey *key, size_t *len)
{
    char *copy = NULL;
    pthread_mutex_lock(&c->lock);
    entry *e = c->cap ? g_hash_table_lookup(c->table, key) : NULL;
    if (e)
        copy = malloc(e->len + 1);
    if (copy) {
        unlink_entry(c, e);
        push_front(c, e);
        memcpy(copy, e->rec, e->len + 1);
        *len = e->len;
    }
    pthread_mutex_unlock(&c->lock);
    return copy;
}

/* Store a copy of `rec`, evicting the oldest entries for room. */
static void lru_put(cm_vcache *c, const cm_vkey *key, const char *rec, size_t len)
{
    if (!c->cap || len + ENTRY_OVERHEAD > c->cap)
        return;
    entry *e = calloc(1, sizeof *e);
    char *copy = malloc(len + 1);
    if (!e || !copy) {
        free(e);
        free(copy);
        return;
    }
    memcpy(copy, rec, len + 1);
    e->key = *key, e->rec = copy, e->len = len;
    pthread_mutex_lock(&c->lock);
    entry *old = g_hash_table_lookup(c->table, key);
    if (old)
        drop(c, old);
    while (c->tail && c->bytes + weight(e) > c->cap) {
        drop(c, c->tail);
        c->st.evictions++;
    }
    push_front(c, e);
    g_hash_table_insert(c->table, &e->key, e);
    c->bytes += weight(e);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------------ */
/* Lookups and stores                                                       */
/* ------------------------------------------------------------------------ */

static void count(cm_vcache *c, uint64_t *counter)
{
    pthread_mutex_lock(&c->lock);
    (*counter)++;
    pthread_mutex_unlock(&c->lock);
}

/* The Redis tier: a checked value, copied into the LRU; NULL on a miss or failure. */
static clipmod_result *redis_get(cm_vcache *c, const cm_vkey *key, const char *name)
{
    char rkey[sizeof REDIS_PREFIX + 64];
    memcpy(rkey, REDIS_PREFIX, sizeof REDIS_PREFIX - 1);
    cm_vkey_hex(key, rkey + sizeof REDIS_PREFIX - 1);
    size_t len = 0;
    int failed = 0;
    char *v = cm_vredis_get(c->redis, rkey, &len, &failed);
    if (failed)
        count(c, &c->st.redis_errors);
    if (!v)
        return NULL;
    clipmod_result *r = cm_vcache_parse(key, v, len, name);
    if (!r) {
        count(c, &c->st.invalid);
    } else {
        const size_t head = strlen(FRAME_MAGIC) + 130;
        lru_put(c, key, v + head, len - head);
        count(c, &c->st.redis_hits);
    }
    free(v);
    return r;
}

clipmod_result *cm_vcache_get(cm_vcache *c, const cm_vkey *key, const char *name)
{
    if (!cm_vcache_enabled(c))
        return NULL;
    size_t len = 0;
    clipmod_result *r = NULL;
    char *rec = lru_get(c, key, &len);
    if (rec) {
        /* Our own record; a failure here (out of memory) is a miss like any other. */
        clipmod_result_decode(rec, len, name, &r, NULL);
        free(rec);
        if (r)
            count(c, &c->st.memory_hits);
    }
    if (!r && c->redis)
        r = redis_get(c, key, name);
    count(c, r ? &c->st.hits : &c->st.misses);
    return r;
}

void cm_vcache_put(cm_vcache *c, const cm_vkey *key, const clipmod_result *r)
{
    clipmod_state s = clipmod_result_state(r);
    if (!cm_vcache_enabled(c) || !r || (s != CLIPMOD_STATE_CLEAN && s != CLIPMOD_STATE_FLAGGED))
        return;
    size_t len = 0;
    char *rec = clipmod_result_encode(r, &len);
    if (!rec || len > MAX_RECORD) {
        clipmod_free(rec);
        return;
    }
    lru_put(c, key, rec, len);
    if (c->redis) {
        char rkey[sizeof REDIS_PREFIX + 64];
        memcpy(rkey, REDIS_PREFIX, sizeof REDIS_PREFIX - 1);
        cm_vkey_hex(key, rkey + sizeof REDIS_PREFIX - 1);
        size_t vlen;
        char *v = cm_vcache_frame(key, rec, len, &vlen);
        int failed = 0;
        if (v)
            cm_vredis_set(c->redis, rkey, v, vlen, &failed);
        if (failed)
            count(c, &c->st.redis_errors);
        free(v);
    }
    clipmod_free(rec);
    count(c, &c->st.stores);
}

void cm_vcache_stats_get(cm_vcache *c, cm_vcache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    out->entries = g_hash_table_size(c->table);
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}
