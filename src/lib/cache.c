/*
 * cache.c - prompt embeddings on disk.
 *
 * Embedding a policy's prompts runs the text tower once per prompt and template;
 * for a 100-prompt policy with 4 templates on ViT-B/32 that is seconds, while the
 * policy is reloaded on every start and SIGHUP. So embeddings are kept in one file
 * per model, named by the model file's fingerprint, keyed by a 128-bit hash of the
 * exact text the tower saw (template applied). A changed prompt misses and is
 * computed; everything else is read back.
 *
 * File: "CMEMB002", u64 fingerprint, u32 dim, u32 count, then count records of
 * u64 key[2] + dim float32 + the SHA-256 of (magic, fingerprint, dim, key, vector),
 * little-endian. The cache decides verdicts, so nothing in it is trusted: a record
 * whose digest does not match, or whose vector is not finite and of unit length, is
 * dropped, recomputed by the engine and rewritten, and cm_cache_warning() says so.
 * (A NaN, zero or copied vector used to turn flagged images clean without a word.)
 * The digest catches damage and naive tampering; keeping others out is the
 * directory's job: it is created 0700, and a cache directory that is a symbolic
 * link, is not ours, or that others may write to is not used at all. The file is
 * written to a new temporary name (O_CREAT | O_EXCL, 0600, relative to the opened
 * directory, so a planted symlink is never followed) and renamed over the old one.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "common.h"

#define MAGIC        "CMEMB002"
#define MAX_ENTRIES  (1u << 20)
#define DIGEST_SIZE  CM_CACHE_DIGEST
#define WARNING_SIZE 512

/* A vector's squared norm may differ from 1 by this much: float32 rounding of a
 * normalised vector is ~1e-7 per component; anything past 1e-3 was not normalised. */
#define NORM_TOLERANCE 1e-3

typedef struct entry {
    uint64_t key[2];
    size_t row; /* into emb */
    int used;
} entry;

struct cm_cache {
    char *dir, *name; /* the directory, and the file's name in it */
    int dirfd;        /* the directory, opened and checked once; -1: cache not used */
    uint64_t fingerprint;
    size_t dim;
    float *emb; /* rows of dim floats */
    uint64_t (*keys)[2];
    size_t count, cap;
    entry *table; /* open addressing, size a power of two >= 2 * cap */
    size_t table_size;
    int dirty;
    size_t rejected;            /* records of the file that were dropped */
    char warning[WARNING_SIZE]; /* "" when there is nothing to say */
};

uint64_t cm_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    /* Final avalanche (splitmix64), so nearby texts spread over the table. */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

void cm_hash_lanes(uint64_t lane[4], const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t w;
    for (size_t i = 0; i + 32 <= len; i += 32)
        for (int k = 0; k < 4; k++) {
            memcpy(&w, b + i + 8 * k, 8);
            lane[k] = (lane[k] ^ w) * 0x9e3779b97f4a7c15ull;
            lane[k] ^= lane[k] >> 29;
        }
}

static void text_key(const char *text, uint64_t key[2])
{
    size_t n = strlen(text);
    key[0] = cm_hash64(text, n, 0);
    key[1] = cm_hash64(text, n, 0x9e3779b97f4a7c15ull);
}

static entry *slot(const cm_cache *c, const uint64_t key[2])
{
    size_t mask = c->table_size - 1, i = key[0] & mask;
    while (c->table[i].used && (c->table[i].key[0] != key[0] || c->table[i].key[1] != key[1]))
        i = (i + 1) & mask;
    return &c->table[i];
}

/* Make room for `need` entries; rebuilds the table. */
static int reserve(cm_cache *c, size_t need)
{
    if (need <= c->cap)
        return 0;
    size_t cap = c->cap ? c->cap : 64;
    while (cap < need)
        cap *= 2;
    float *emb = cm_realloc(c->emb, cap * c->dim * sizeof *emb);
    if (!emb)
        return -1;
    c->emb = emb;
    uint64_t(*keys)[2] = cm_realloc(c->keys, cap * sizeof *keys);
    if (!keys)
        return -1;
    c->keys = keys;
    entry *table = cm_calloc(cap * 2, sizeof *table);
    if (!table)
        return -1;
    cm_free(c->table);
    c->table = table;
    c->table_size = cap * 2;
    c->cap = cap;
    for (size_t r = 0; r < c->count; r++) {
        entry *e = slot(c, c->keys[r]);
        e->used = 1;
        e->key[0] = c->keys[r][0];
        e->key[1] = c->keys[r][1];
        e->row = r;
    }
    return 0;
}

static void add(cm_cache *c, const uint64_t key[2], const float *emb)
{
    entry *e = slot(c, key);
    if (!e->used) {
        e->used = 1;
        e->key[0] = key[0];
        e->key[1] = key[1];
        e->row = c->count;
        c->keys[c->count][0] = key[0];
        c->keys[c->count][1] = key[1];
        c->count++;
    }
    memcpy(c->emb + e->row * c->dim, emb, c->dim * sizeof *emb);
}

void cm_cache_digest(const char magic[8], uint64_t fingerprint, size_t dim, const void *key,
                     size_t keylen, const float *v, size_t n, uint8_t out[CM_CACHE_DIGEST])
{
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    const uint32_t dim32 = (uint32_t)dim;
    gsize len = CM_CACHE_DIGEST;
    g_checksum_update(sum, (const guchar *)magic, 8);
    g_checksum_update(sum, (const guchar *)&fingerprint, sizeof fingerprint);
    g_checksum_update(sum, (const guchar *)&dim32, sizeof dim32);
    g_checksum_update(sum, (const guchar *)key, keylen);
    g_checksum_update(sum, (const guchar *)v, n * sizeof *v);
    g_checksum_get_digest(sum, out, &len);
    g_checksum_free(sum);
}

/* The digest of one record, bound to the file's model and dimension. */
static void record_digest(const cm_cache *c, const uint64_t key[2], const float *emb,
                          uint8_t out[DIGEST_SIZE])
{
    cm_cache_digest(MAGIC, c->fingerprint, c->dim, key, 2 * sizeof *key, emb, c->dim, out);
}

const char *cm_cache_vector_problem(const float *emb, size_t dim)
{
    double sq = 0.0;
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(emb[i]))
            return "a vector that is not finite";
        sq += (double)emb[i] * emb[i];
    }
    return fabs(sq - 1.0) > NORM_TOLERANCE ? "a vector that is not of unit length" : NULL;
}

static void CM_PRINTF(2, 3) warn(cm_cache *c, const char *fmt, ...)
{
    va_list ap;
    if (c->warning[0])
        return; /* the first problem says enough */
    va_start(ap, fmt);
    vsnprintf(c->warning, sizeof c->warning, fmt, ap);
    va_end(ap);
}

/* Read the records; drop every one that does not check out. */
static void load_records(cm_cache *c, FILE *f, uint32_t count)
{
    float *row = cm_alloc(c->dim * sizeof *row);
    const char *why = NULL;
    size_t read = 0;
    if (!row)
        return;
    for (; read < count; read++) {
        uint64_t key[2];
        uint8_t digest[DIGEST_SIZE], want[DIGEST_SIZE];
        if (fread(key, 8, 2, f) != 2 || fread(row, sizeof *row, c->dim, f) != c->dim ||
            fread(digest, 1, DIGEST_SIZE, f) != DIGEST_SIZE)
            break;
        record_digest(c, key, row, want);
        const char *bad = memcmp(digest, want, DIGEST_SIZE) ? "a checksum mismatch"
                                                            : cm_cache_vector_problem(row, c->dim);
        if (bad) {
            why = why ? why : bad;
            c->rejected++;
            continue;
        }
        add(c, key, row);
    }
    if (read < count) {
        c->rejected += count - read;
        why = why ? why : "a truncated file";
    }
    cm_free(row);
    if (c->rejected) {
        c->dirty = 1; /* rewrite it without them */
        warn(c, "%s/%s: %zu of %u embeddings rejected (first: %s); recomputed", c->dir, c->name,
             c->rejected, count, why);
    }
}

FILE *cm_cache_file_open(int dirfd, const char *dir, const char *name, char *warning, size_t size,
                         int *rewrite)
{
    const int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        if (errno != ENOENT) {
            *rewrite = 1;
            snprintf(warning, size, "%s/%s: %s; replaced", dir, name,
                     errno == ELOOP ? "a symbolic link, not a cache file" : strerror(errno));
        }
        return NULL;
    }
    FILE *f = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? fdopen(fd, "rb") : NULL;
    if (!f) {
        close(fd);
        *rewrite = 1;
        snprintf(warning, size, "%s/%s: not a regular file; rewritten", dir, name);
    }
    return f;
}

static void load(cm_cache *c)
{
    char magic[8];
    uint64_t fp;
    uint32_t dim, count;
    FILE *f =
        cm_cache_file_open(c->dirfd, c->dir, c->name, c->warning, sizeof c->warning, &c->dirty);
    if (!f)
        return;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8)) {
        c->dirty = 1; /* an older format, or not ours: quietly replaced */
    } else if (fread(&fp, 8, 1, f) != 1 || fread(&dim, 4, 1, f) != 1 ||
               fread(&count, 4, 1, f) != 1 || fp != c->fingerprint || dim != c->dim ||
               count > MAX_ENTRIES || reserve(c, count)) {
        c->dirty = 1;
        warn(c, "%s/%s: a damaged header; rewritten", c->dir, c->name);
    } else {
        load_records(c, f, count);
    }
    fclose(f);
}

/* Create the missing components of `dir`, private (0700) as XDG asks of ~/.cache. */
static int mkdirs(const char *dir)
{
    char tmp[PATH_MAX];
    const int n = snprintf(tmp, sizeof tmp, "%s", dir);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/*
 * Open the cache directory, or say why it is not used: a symbolic link (someone
 * could point it anywhere), a directory of another user, or one others may write
 * to (they could plant files in it). Then nothing is read from or written to it.
 */
int cm_cache_dir_open(const char *dir, char *warning, size_t size)
{
    struct stat sb;
    if (mkdirs(dir) < 0) {
        snprintf(warning, size, "%s: cannot create the cache directory: %s; not used", dir,
                 strerror(errno));
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(warning, size, "%s: %s; the cache is not used", dir,
                 errno == ELOOP || errno == ENOTDIR ? "a symbolic link, not a directory"
                                                    : strerror(errno));
        return -1;
    }
    const char *why = NULL;
    if (fstat(fd, &sb) < 0)
        why = strerror(errno);
    else if (sb.st_uid != geteuid())
        why = "owned by another user";
    else if (sb.st_mode & (S_IWGRP | S_IWOTH))
        why = "writable by other users";
    if (why) {
        snprintf(warning, size, "%s: %s; the cache is not used", dir, why);
        close(fd);
        fd = -1;
    }
    return fd;
}

int cm_cache_default_dir(char *buf, size_t size)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n = -1;
    if (xdg && *xdg)
        n = snprintf(buf, size, "%s/clipmod", xdg);
    else if (home && *home)
        n = snprintf(buf, size, "%s/.cache/clipmod", home);
    if (n < 0 || (size_t)n >= size) {
        if (size)
            buf[0] = '\0';
        return -1;
    }
    return 0;
}

cm_cache *cm_cache_open(const char *dir, uint64_t fingerprint, size_t dim)
{
    cm_cache *c = cm_calloc(1, sizeof *c);
    char name[64];
    if (!c)
        return NULL;
    c->dirfd = -1;
    c->fingerprint = fingerprint;
    c->dim = dim;
    snprintf(name, sizeof name, "%016llx.emb", (unsigned long long)fingerprint);
    c->dir = cm_strdup(dir);
    c->name = cm_strdup(name);
    if (!c->dir || !c->name || reserve(c, 64)) {
        cm_cache_free(c);
        return NULL;
    }
    c->dirfd = cm_cache_dir_open(c->dir, c->warning, sizeof c->warning);
    if (c->dirfd >= 0)
        load(c);
    return c;
}

const float *cm_cache_get(const cm_cache *c, const char *text)
{
    uint64_t key[2];
    text_key(text, key);
    const entry *e = slot(c, key);
    return e->used ? c->emb + e->row * c->dim : NULL;
}

clipmod_error cm_cache_put(cm_cache *c, const char *text, const float *emb)
{
    uint64_t key[2];
    if (c->dirfd < 0 || c->count >= MAX_ENTRIES)
        return CLIPMOD_OK; /* not used, or full: stop remembering, keep working */
    if (cm_cache_vector_problem(emb, c->dim))
        return CLIPMOD_OK; /* never store what load would reject */
    if (reserve(c, c->count + 1))
        return CLIPMOD_E_NOMEM;
    text_key(text, key);
    add(c, key, emb);
    c->dirty = 1;
    return CLIPMOD_OK;
}

int cm_cache_temp_create(int dirfd, const char *name, char *tmp, size_t size)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t r;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = cm_hash64(&attempt, sizeof attempt, (uint64_t)getpid() ^ (uint64_t)time(NULL));
        snprintf(tmp, size, ".%s.%016llx.tmp", name, (unsigned long long)r);
        const int fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

clipmod_error cm_cache_file_write(int dirfd, const char *name, int (*write)(FILE *, const void *),
                                  const void *arg)
{
    char tmp[PATH_MAX];
    const int fd = cm_cache_temp_create(dirfd, name, tmp, sizeof tmp);
    if (fd < 0)
        return CLIPMOD_E_IO;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlinkat(dirfd, tmp, 0);
        return CLIPMOD_E_IO;
    }
    int ok = write(f, arg);
    if (fclose(f) != 0)
        ok = 0;
    /* rename() is atomic: readers see the old file or the new, never half of one; it
     * replaces a symbolic link planted under the final name, never its target. */
    if (!ok || renameat(dirfd, tmp, dirfd, name) < 0) {
        unlinkat(dirfd, tmp, 0);
        return CLIPMOD_E_IO;
    }
    return CLIPMOD_OK;
}

static int write_all(FILE *f, const void *arg)
{
    const cm_cache *c = arg;
    const uint32_t dim = (uint32_t)c->dim, count = (uint32_t)c->count;
    int ok = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(&c->fingerprint, 8, 1, f) == 1 &&
             fwrite(&dim, 4, 1, f) == 1 && fwrite(&count, 4, 1, f) == 1;
    for (size_t r = 0; ok && r < c->count; r++) {
        uint8_t digest[DIGEST_SIZE];
        const float *emb = c->emb + r * c->dim;
        record_digest(c, c->keys[r], emb, digest);
        ok = fwrite(c->keys[r], 8, 2, f) == 2 && fwrite(emb, sizeof *emb, c->dim, f) == c->dim &&
             fwrite(digest, 1, DIGEST_SIZE, f) == DIGEST_SIZE;
    }
    return ok;
}

clipmod_error cm_cache_save(cm_cache *c)
{
    if (!c->dirty || c->dirfd < 0)
        return CLIPMOD_OK;
    const clipmod_error rc = cm_cache_file_write(c->dirfd, c->name, write_all, c);
    if (!rc)
        c->dirty = 0;
    return rc;
}

const char *cm_cache_warning(const cm_cache *c)
{
    return c && c->warning[0] ? c->warning : NULL;
}

void cm_cache_free(cm_cache *c)
{
    if (!c)
        return;
    if (c->dirfd >= 0)
        close(c->dirfd);
    cm_free(c->dir);
    cm_free(c->name);
    cm_free(c->emb);
    cm_free(c->keys);
    cm_free(c->table);
    cm_free(c);
}
