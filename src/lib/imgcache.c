/*
 * imgcache.c - image embeddings on disk (clipmod_image_cache).
 *
 * `clipmod policy evaluate` runs the image tower over the whole labelled set on
 * every run, while what changes between runs is usually the policy. So the
 * embeddings of every sampled frame of an input are kept in one file per model in
 * the prompt cache's directory ("<fingerprint>.img"), keyed by the SHA-256 of the
 * decode options (byte, pixel and side limits, frame limits, frames sampled: they
 * decide which frames are embedded, or whether the input is refused) followed by
 * the input's bytes. The model is bound through the fingerprint in the file name,
 * header and every record's digest. An animation is one record of all its sampled
 * frames. Inputs that could not be scanned are not cached.
 *
 * File: "CMIMG001", u64 fingerprint, u32 dim, u32 count, then count records of
 * key[32] + u32 frames + frames x dim float32 + SHA-256 of (magic, fingerprint, dim,
 * key, frames, vectors), little-endian. As for prompts (cache.c, whose directory
 * checks, safe open, O_EXCL write-and-rename, digest and vector checks are used
 * here), nothing read back is trusted: a record with a wrong digest, a frame count
 * out of range or a vector that is not finite and of unit length is dropped (the
 * input is embedded again) and the file rewritten; a foreign or damaged file is
 * replaced. Size: records are kept in the order they were first written; when the
 * file would exceed max_bytes the oldest are dropped (first in, first out; a hit
 * does not refresh a record, so a run that only reads never rewrites the file).
 * Batches: the tower's floats depend in their last bits on the batch, so a call of
 * clipmod_engine_embed_inputs_cached that embeds anything embeds all its inputs
 * (tuning.c: rebatch), and results are bit for bit those of a run without cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "common.h"
#include "imgcache.h"
#include "model.h"

#define MAGIC        "CMIMG001"
#define MAX_RECORDS  (1u << 20)
#define MAX_FRAMES   1024
#define HEADER_BYTES 24
#define WARNING_SIZE 512
#define READ_CHUNK   65536

typedef struct record {
    uint8_t key[CM_IMGCACHE_KEY];
    int frames;
    float *emb; /* frames x dim */
    int dead;   /* evicted */
} record;

struct clipmod_image_cache {
    char *dir;
    char name[64];
    int dirfd; /* -1: not used */
    uint64_t fingerprint, max_bytes, bytes;
    size_t dim;
    record *recs; /* oldest first */
    size_t count, cap;
    size_t *table; /* open addressing: record index + 1, 0 empty */
    size_t table_size;
    int dirty;
    size_t hits, misses;
    char warning[WARNING_SIZE];
};

static uint64_t record_bytes(const clipmod_image_cache *c, int frames)
{
    return CM_IMGCACHE_KEY + 4 + (uint64_t)frames * c->dim * sizeof(float) + CM_CACHE_DIGEST;
}

static size_t *slot(const clipmod_image_cache *c, const uint8_t key[CM_IMGCACHE_KEY])
{
    size_t h;
    memcpy(&h, key, sizeof h); /* a SHA-256: already uniform */
    size_t mask = c->table_size - 1, i = h & mask;
    while (c->table[i] && memcmp(c->recs[c->table[i] - 1].key, key, CM_IMGCACHE_KEY))
        i = (i + 1) & mask;
    return &c->table[i];
}

/* Room for one more record; the table is rebuilt when the array grows. */
static int reserve_one(clipmod_image_cache *c)
{
    if (c->count < c->cap)
        return 0;
    size_t cap = c->cap ? c->cap * 2 : 256;
    record *recs = cm_realloc(c->recs, cap * sizeof *recs);
    if (!recs)
        return -1;
    c->recs = recs;
    size_t *table = cm_calloc(cap * 2, sizeof *table);
    if (!table)
        return -1;
    cm_free(c->table);
    c->table = table;
    c->table_size = cap * 2;
    c->cap = cap;
    for (size_t r = 0; r < c->count; r++)
        *slot(c, c->recs[r].key) = r + 1;
    return 0;
}

static void digest(const clipmod_image_cache *c, const record *r, uint8_t out[CM_CACHE_DIGEST])
{
    uint8_t key[CM_IMGCACHE_KEY + 4];
    const uint32_t frames = (uint32_t)r->frames;
    memcpy(key, r->key, CM_IMGCACHE_KEY);
    memcpy(key + CM_IMGCACHE_KEY, &frames, 4);
    cm_cache_digest(MAGIC, c->fingerprint, c->dim, key, sizeof key, r->emb,
                    (size_t)r->frames * c->dim, out);
}

static const char *frames_problem(const clipmod_image_cache *c, const float *emb, int frames)
{
    for (int f = 0; f < frames; f++) {
        const char *bad = cm_cache_vector_problem(emb + (size_t)f * c->dim, c->dim);
        if (bad)
            return bad;
    }
    return NULL;
}

/* Take ownership of `emb` as a new record (the key is not yet present). */
static int add(clipmod_image_cache *c, const uint8_t key[CM_IMGCACHE_KEY], float *emb, int frames)
{
    if (reserve_one(c))
        return -1;
    record *r = &c->recs[c->count];
    memcpy(r->key, key, CM_IMGCACHE_KEY);
    r->frames = frames;
    r->emb = emb;
    r->dead = 0;
    *slot(c, key) = ++c->count;
    c->bytes += record_bytes(c, frames);
    return 0;
}

/* One record from `f`: 1 kept, 0 rejected (*why), -1 end (truncated or out of memory). */
static int read_record(clipmod_image_cache *c, FILE *f, const char **why)
{
    record r = {.dead = 0};
    uint32_t frames;
    uint8_t got[CM_CACHE_DIGEST], want[CM_CACHE_DIGEST];
    if (fread(r.key, 1, CM_IMGCACHE_KEY, f) != CM_IMGCACHE_KEY || fread(&frames, 4, 1, f) != 1)
        return -1;
    if (frames < 1 || frames > MAX_FRAMES) {
        *why = "a frame count out of range";
        return -1; /* the rest cannot be framed */
    }
    r.frames = (int)frames;
    const size_t n = (size_t)frames * c->dim;
    r.emb = cm_alloc(n * sizeof *r.emb);
    if (!r.emb)
        return -1;
    if (fread(r.emb, sizeof *r.emb, n, f) != n || fread(got, 1, sizeof got, f) != sizeof got) {
        cm_free(r.emb);
        return -1;
    }
    digest(c, &r, want);
    const char *bad = memcmp(got, want, sizeof got) ? "a checksum mismatch"
                      : *slot(c, r.key)             ? "a duplicate record"
                                                    : frames_problem(c, r.emb, r.frames);
    if (bad || c->bytes + record_bytes(c, r.frames) > c->max_bytes ||
        add(c, r.key, r.emb, r.frames)) {
        *why = bad ? bad : "over the size cap";
        cm_free(r.emb);
        return 0;
    }
    return 1;
}

static void load_records(clipmod_image_cache *c, FILE *f, uint32_t count)
{
    const char *why = NULL;
    size_t read = 0, rejected = 0;
    for (; read < count; read++) {
        const int rc = read_record(c, f, &why);
        if (rc < 0)
            break;
        rejected += rc == 0;
    }
    if (read < count) {
        rejected += count - read;
        why = why ? why : "a truncated file";
    }
    if (rejected) {
        c->dirty = 1;
        snprintf(c->warning, sizeof c->warning,
                 "%s/%s: %zu of %u image embeddings rejected (first: %s); recomputed", c->dir,
                 c->name, rejected, count, why);
    }
}

static void load(clipmod_image_cache *c)
{
    char magic[8];
    uint64_t fp;
    uint32_t dim, count;
    FILE *f =
        cm_cache_file_open(c->dirfd, c->dir, c->name, c->warning, sizeof c->warning, &c->dirty);
    if (!f)
        return;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8) || fread(&fp, 8, 1, f) != 1 ||
        fread(&dim, 4, 1, f) != 1 || fread(&count, 4, 1, f) != 1 || fp != c->fingerprint ||
        dim != c->dim || count > MAX_RECORDS) {
        c->dirty = 1;
        snprintf(c->warning, sizeof c->warning,
                 "%s/%s: not an image cache of this model; rewritten", c->dir, c->name);
    } else {
        load_records(c, f, count);
    }
    fclose(f);
}

clipmod_error clipmod_image_cache_open(const clipmod_model *model, const char *dir,
                                       uint64_t max_bytes, clipmod_image_cache **out)
{
    char def[4096];
    if (out)
        *out = NULL;
    if (!model || !out || (max_bytes && max_bytes < CLIPMOD_IMAGE_CACHE_MIN))
        return CLIPMOD_E_INVALID_ARG;
    if (!dir) {
        if (cm_cache_default_dir(def, sizeof def))
            return CLIPMOD_E_INVALID_ARG;
        dir = def;
    }
    clipmod_image_cache *c = cm_calloc(1, sizeof *c);
    if (c)
        c->dir = cm_strdup(dir);
    if (!c || !c->dir) {
        cm_free(c);
        return CLIPMOD_E_NOMEM;
    }
    c->fingerprint = model->fingerprint;
    c->dim = clipmod_model_embed_dim(model);
    c->max_bytes = (max_bytes ? max_bytes : CLIPMOD_IMAGE_CACHE_DEFAULT) - HEADER_BYTES;
    snprintf(c->name, sizeof c->name, "%016llx.img", (unsigned long long)c->fingerprint);
    if (reserve_one(c)) {
        clipmod_image_cache_free(c);
        return CLIPMOD_E_NOMEM;
    }
    c->dirfd = cm_cache_dir_open(c->dir, c->warning, sizeof c->warning);
    if (c->dirfd >= 0)
        load(c);
    *out = c;
    return CLIPMOD_OK;
}

static void hash_opts(GChecksum *sum, const cm_image_opts *o)
{
    const uint64_t words[] = {o->lim.max_file_bytes, o->lim.max_pixels,   o->lim.max_side,
                              o->max_frames,         o->max_total_pixels, (uint64_t)o->samples};
    g_checksum_update(sum, (const guchar *)MAGIC, 8);
    g_checksum_update(sum, (const guchar *)words, sizeof words);
}

/* Hash the file at `path` (read once, up to the byte limit) into `sum`. */
static int hash_file(GChecksum *sum, const char *path, uint64_t limit, struct stat *st)
{
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    guchar *buf = NULL;
    int ok = 0;
    if (fd < 0)
        return 0;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || (uint64_t)st->st_size > limit)
        goto out;
    buf = cm_alloc(READ_CHUNK);
    if (!buf)
        goto out;
    uint64_t total = 0;
    for (;;) {
        const ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        total += (uint64_t)n;
        g_checksum_update(sum, buf, (gssize)n);
    }
    ok = total == (uint64_t)st->st_size;
out:
    cm_free(buf);
    close(fd);
    return ok;
}

void cm_imgcache_key(const clipmod_input *in, const cm_image_opts *o, uint8_t key[CM_IMGCACHE_KEY],
                     struct stat *st, int *ok)
{
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    gsize len = CM_IMGCACHE_KEY;
    hash_opts(sum, o);
    memset(st, 0, sizeof *st);
    if (in->path) {
        *ok = hash_file(sum, in->path, o->lim.max_file_bytes, st);
    } else {
        *ok = in->data && in->len && in->len <= o->lim.max_file_bytes;
        if (*ok)
            g_checksum_update(sum, in->data, (gssize)in->len);
    }
    g_checksum_get_digest(sum, key, &len);
    g_checksum_free(sum);
}

int cm_imgcache_same_file(const char *path, const struct stat *st)
{
    struct stat now;
    return stat(path, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino &&
           now.st_size == st->st_size && now.st_mtim.tv_sec == st->st_mtim.tv_sec &&
           now.st_mtim.tv_nsec == st->st_mtim.tv_nsec;
}

const float *cm_imgcache_get(clipmod_image_cache *c, const uint8_t key[CM_IMGCACHE_KEY],
                             int *frames)
{
    const size_t i = *slot(c, key);
    if (!i || c->recs[i - 1].dead) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    *frames = c->recs[i - 1].frames;
    return c->recs[i - 1].emb;
}

void cm_imgcache_unhit(clipmod_image_cache *c)
{
    c->hits--;
    c->misses++;
}

clipmod_error cm_imgcache_put(clipmod_image_cache *c, const uint8_t key[CM_IMGCACHE_KEY],
                              const float *emb, int frames)
{
    if (c->dirfd < 0 || frames < 1 || frames > MAX_FRAMES || c->count >= MAX_RECORDS ||
        record_bytes(c, frames) > c->max_bytes || *slot(c, key) || frames_problem(c, emb, frames))
        return CLIPMOD_OK; /* not used, or not worth keeping: keep working */
    const size_t n = (size_t)frames * c->dim;
    float *copy = cm_alloc(n * sizeof *copy);
    if (!copy)
        return CLIPMOD_E_NOMEM;
    memcpy(copy, emb, n * sizeof *copy);
    if (add(c, key, copy, frames)) {
        cm_free(copy);
        return CLIPMOD_E_NOMEM;
    }
    c->dirty = 1;
    return CLIPMOD_OK;
}

/* Drop the oldest records until the rest fit under the cap. */
static void evict(clipmod_image_cache *c)
{
    for (size_t r = 0; r < c->count && c->bytes > c->max_bytes; r++) {
        if (c->recs[r].dead)
            continue;
        c->recs[r].dead = 1;
        c->bytes -= record_bytes(c, c->recs[r].frames);
    }
}

static int write_all(FILE *f, const void *arg)
{
    const clipmod_image_cache *c = arg;
    const uint32_t dim = (uint32_t)c->dim;
    uint32_t count = 0;
    for (size_t r = 0; r < c->count; r++)
        count += !c->recs[r].dead;
    int ok = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(&c->fingerprint, 8, 1, f) == 1 &&
             fwrite(&dim, 4, 1, f) == 1 && fwrite(&count, 4, 1, f) == 1;
    for (size_t i = 0; ok && i < c->count; i++) {
        const record *r = &c->recs[i];
        const uint32_t frames = (uint32_t)r->frames;
        const size_t n = (size_t)r->frames * c->dim;
        uint8_t d[CM_CACHE_DIGEST];
        if (r->dead)
            continue;
        digest(c, r, d);
        ok = fwrite(r->key, 1, CM_IMGCACHE_KEY, f) == CM_IMGCACHE_KEY &&
             fwrite(&frames, 4, 1, f) == 1 && fwrite(r->emb, sizeof *r->emb, n, f) == n &&
             fwrite(d, 1, sizeof d, f) == sizeof d;
    }
    return ok;
}

clipmod_error clipmod_image_cache_save(clipmod_image_cache *c)
{
    if (!c)
        return CLIPMOD_E_INVALID_ARG;
    if (!c->dirty || c->dirfd < 0)
        return CLIPMOD_OK;
    evict(c);
    const clipmod_error rc = cm_cache_file_write(c->dirfd, c->name, write_all, c);
    if (!rc)
        c->dirty = 0;
    return rc;
}

void clipmod_image_cache_counts(const clipmod_image_cache *c, size_t *hits, size_t *misses)
{
    if (hits)
        *hits = c ? c->hits : 0;
    if (misses)
        *misses = c ? c->misses : 0;
}

const char *clipmod_image_cache_warning(const clipmod_image_cache *c)
{
    return c && c->warning[0] ? c->warning : NULL;
}

void clipmod_image_cache_free(clipmod_image_cache *c)
{
    if (!c)
        return;
    if (c->dirfd >= 0)
        close(c->dirfd);
    for (size_t r = 0; r < c->count; r++)
        cm_free(c->recs[r].emb);
    cm_free(c->recs);
    cm_free(c->table);
    cm_free(c->dir);
    cm_free(c);
}
