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
 * File: "CMEMB001", u64 fingerprint, u32 dim, u32 count, then count records of
 * u64 key[2] + dim float32, little-endian. Anything that does not add up is
 * ignored: a damaged cache costs time, never correctness.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "common.h"

#define MAGIC       "CMEMB001"
#define MAX_ENTRIES (1u << 20)

typedef struct entry {
    uint64_t key[2];
    size_t row; /* into emb */
    int used;
} entry;

struct cm_cache {
    char *path;
    uint64_t fingerprint;
    size_t dim;
    float *emb; /* rows of dim floats */
    uint64_t (*keys)[2];
    size_t count, cap;
    entry *table; /* open addressing, size a power of two >= 2 * cap */
    size_t table_size;
    int dirty;
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
    float *emb = realloc(c->emb, cap * c->dim * sizeof *emb);
    if (!emb)
        return -1;
    c->emb = emb;
    uint64_t(*keys)[2] = realloc(c->keys, cap * sizeof *keys);
    if (!keys)
        return -1;
    c->keys = keys;
    entry *table = calloc(cap * 2, sizeof *table);
    if (!table)
        return -1;
    free(c->table);
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

static void load(cm_cache *c)
{
    FILE *f = fopen(c->path, "rb");
    char magic[8];
    uint64_t fp;
    uint32_t dim, count;
    if (!f)
        return;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8) || fread(&fp, 8, 1, f) != 1 ||
        fread(&dim, 4, 1, f) != 1 || fread(&count, 4, 1, f) != 1 || fp != c->fingerprint ||
        dim != c->dim || count > MAX_ENTRIES || reserve(c, count)) {
        fclose(f);
        return;
    }
    float *row = malloc(c->dim * sizeof *row);
    for (uint32_t i = 0; row && i < count; i++) {
        uint64_t key[2];
        if (fread(key, 8, 2, f) != 2 || fread(row, sizeof *row, c->dim, f) != c->dim)
            break;
        add(c, key, row);
    }
    free(row);
    fclose(f);
}

static int mkdirs(const char *dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

cm_cache *cm_cache_open(const char *dir, uint64_t fingerprint, size_t dim)
{
    cm_cache *c = calloc(1, sizeof *c);
    char path[PATH_MAX];
    if (!c)
        return NULL;
    c->fingerprint = fingerprint;
    c->dim = dim;
    snprintf(path, sizeof path, "%s/%016llx.emb", dir, (unsigned long long)fingerprint);
    if (!(c->path = strdup(path)) || reserve(c, 64)) {
        cm_cache_free(c);
        return NULL;
    }
    mkdirs(dir);
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
    if (c->count >= MAX_ENTRIES)
        return CLIPMOD_OK; /* full: stop remembering, keep working */
    if (reserve(c, c->count + 1))
        return CLIPMOD_E_NOMEM;
    text_key(text, key);
    add(c, key, emb);
    c->dirty = 1;
    return CLIPMOD_OK;
}

clipmod_error cm_cache_save(cm_cache *c)
{
    char tmp[PATH_MAX + 16];
    if (!c->dirty)
        return CLIPMOD_OK;
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", c->path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return CLIPMOD_E_IO;
    uint32_t dim = (uint32_t)c->dim, count = (uint32_t)c->count;
    int ok = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(&c->fingerprint, 8, 1, f) == 1 &&
             fwrite(&dim, 4, 1, f) == 1 && fwrite(&count, 4, 1, f) == 1;
    for (size_t r = 0; ok && r < c->count; r++)
        ok = fwrite(c->keys[r], 8, 2, f) == 2 &&
             fwrite(c->emb + r * c->dim, sizeof(float), c->dim, f) == c->dim;
    if (fclose(f) != 0)
        ok = 0;
    /* rename() is atomic: readers see the old file or the new, never half of one. */
    if (!ok || rename(tmp, c->path) < 0) {
        unlink(tmp);
        return CLIPMOD_E_IO;
    }
    c->dirty = 0;
    return CLIPMOD_OK;
}

void cm_cache_free(cm_cache *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->emb);
    free(c->keys);
    free(c->table);
    free(c);
}
