/*
 * wcache.c - the image tower kept on disk, converted and packed, between runs.
 *
 * Loading ViT-B/32 copies 350 MB of weights out of the checkpoint into fresh
 * anonymous memory and packs them. On a VM that hands freed memory back to its
 * host, the kernel zeroing those pages on first touch was most of a short
 * `clipmod scan` (BENCHMARKS.md). A weights cache file keeps the result of that work
 * (weights.c's image: the arena, then the int8/bf16 matrices) behind a header; a
 * later load of the same checkpoint maps it read-only instead, so nothing is zeroed,
 * copied or packed, and every process that loads the model shares one copy in the
 * page cache.
 *
 * A miss makes the new file first (its blocks reserved, so a full disk fails then and
 * not as a fault later) and the loader fills its shared mapping directly: writing the
 * cache costs no second copy of the weights, in memory or in time, and the fp32
 * matrices that int8/bf16 replace are punched out of it as they are converted.
 *
 * One file per checkpoint path, precision and GEMM layout ("weights-<16 hex>.bin"),
 * replaced when the checkpoint changes. The header names the checkpoint by its
 * identity (device, inode, size, modification and change times, path) and records
 * its fingerprint, so a hit also skips hashing the checkpoint. A file is used only
 * if its header, its size and a digest of every byte a forward pass reads all
 * match; otherwise the load is a normal one and rewrites the file: a damaged file
 * costs time, never a wrong number. Files live in the prompt cache's directory,
 * which cache.c refuses unless it is the user's own and not writable by others;
 * they are opened without following links and must be regular files of the user's.
 * A finished file is never written again (its writer's mapping turns read-only),
 * only replaced by rename(), never truncated, so every mapping of it stays valid
 * while in use. Writing a file also removes those of checkpoints that no longer
 * exist.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "common.h"
#include "gemm.h"
#include "pool.h"
#include "qgemm.h"
#include "wcache.h"

/* A multiple of every page size the image after it could be mapped with. */
#define HEADER_BYTES 65536
#define MAGIC        "CMWTS001"

typedef struct header {
    char magic[8];
    uint32_t precision, gemm_nr, qgemm_nr, packed;                 /* what the image was made for */
    uint64_t dev, ino, size, mtime_s, mtime_ns, ctime_s, ctime_ns; /* the checkpoint's */
    uint64_t fingerprint; /* the checkpoint's, as model.c computes it */
    uint64_t image_bytes;
    uint64_t digest; /* of every part of the image a forward pass reads */
    char path[PATH_MAX];
    uint64_t header_digest; /* of all the above */
} header;

_Static_assert(sizeof(header) <= HEADER_BYTES, "the header fits before the image");

/* The header a file for `id` must have, apart from the digests and fingerprint. */
static void expected_header(const cm_wcache_id *id, const cm_config *cfg, header *h)
{
    const struct stat *s = id->file;
    memset(h, 0, sizeof *h);
    memcpy(h->magic, MAGIC, 8);
    h->precision = (uint32_t)id->precision;
    h->gemm_nr = CM_GEMM_NR;
    h->qgemm_nr = CM_QGEMM_NR;
    h->packed = cm_gemm_isa_active() != CM_GEMM_OPENBLAS;
    h->dev = (uint64_t)s->st_dev;
    h->ino = (uint64_t)s->st_ino;
    h->size = (uint64_t)s->st_size;
    h->mtime_s = (uint64_t)s->st_mtim.tv_sec;
    h->mtime_ns = (uint64_t)s->st_mtim.tv_nsec;
    h->ctime_s = (uint64_t)s->st_ctim.tv_sec;
    h->ctime_ns = (uint64_t)s->st_ctim.tv_nsec;
    h->image_bytes = cm_weights_image_bytes(cfg, id->precision);
    if (!realpath(id->path, h->path))
        snprintf(h->path, sizeof h->path, "%s", id->path);
}

static uint64_t header_digest(const header *h)
{
    return cm_hash64(h, offsetof(header, header_digest), 0x5745494748545331ull);
}

/* The file's name: one per checkpoint path, precision and GEMM layout. */
static void file_name(const header *h, char *name, size_t size)
{
    uint64_t k = cm_hash64(h->path, strlen(h->path), 0);
    k = cm_hash64(&h->precision, sizeof h->precision, k);
    k = cm_hash64(&h->packed, sizeof h->packed, k);
    snprintf(name, size, "weights-%016llx.bin", (unsigned long long)k);
}

/*
 * The digest of an image: each part a forward pass reads (offset, length, bytes)
 * hashed on its own, on the library's threads (a whole ViT-B/32 at memory speed on
 * one thread was a quarter of a one-image `clipmod scan`), then the parts' hashes
 * folded in order. The walk collects the parts; parts_digest hashes them.
 */
typedef struct part {
    size_t offset, bytes;
    const unsigned char *p;
    uint64_t h;
} part;

typedef struct parts {
    part *v;
    size_t n, cap;
    int nomem;
} parts;

static void collect_part(void *arg, size_t offset, const void *p, size_t bytes)
{
    parts *ps = arg;
    if (ps->n == ps->cap && !ps->nomem) {
        const size_t cap = ps->cap ? 2 * ps->cap : 256;
        part *v = cm_realloc(ps->v, cap * sizeof *v);
        if (!v) {
            ps->nomem = 1;
            return;
        }
        ps->v = v;
        ps->cap = cap;
    }
    if (!ps->nomem)
        ps->v[ps->n++] = (part){.offset = offset, .bytes = bytes, .p = p};
}

static void hash_part(void *ctx, int i)
{
    part *q = &((parts *)ctx)->v[i];
    uint64_t lane[4] = {1, 2, 3, 4};
    const size_t whole = q->bytes - q->bytes % 32;
    cm_hash_lanes(lane, q->p, whole);
    uint64_t h = cm_hash64(q->p + whole, q->bytes - whole, q->offset ^ (q->bytes << 1));
    for (int k = 0; k < 4; k++)
        h = cm_hash64(&lane[k], 8, h);
    q->h = h;
}

/* The digest of the collected parts into *out; -1 if collecting ran out of memory.
 * Frees the list. */
static int parts_digest(parts *ps, uint64_t *out)
{
    uint64_t d = 0;
    const int ok = !ps->nomem && ps->n <= INT_MAX;
    if (ok)
        cm_pool_run(hash_part, ps, (int)ps->n);
    for (size_t i = 0; ok && i < ps->n; i++)
        d = cm_hash64(&ps->v[i].h, 8, d);
    cm_free(ps->v);
    memset(ps, 0, sizeof *ps);
    *out = d;
    return ok ? 0 : -1;
}

/* NULL if the file's header `got` is the one `want` asks for, else what differs. */
static const char *header_problem(const header *got, const header *want)
{
    if (memcmp(got->magic, MAGIC, 8) || got->header_digest != header_digest(got))
        return "not a weights cache file of this version, or damaged";
    if (got->precision != want->precision || got->gemm_nr != want->gemm_nr ||
        got->qgemm_nr != want->qgemm_nr || got->packed != want->packed ||
        got->image_bytes != want->image_bytes)
        return "made for another layout of the weights";
    if (got->dev != want->dev || got->ino != want->ino || got->size != want->size ||
        got->mtime_s != want->mtime_s || got->mtime_ns != want->mtime_ns ||
        got->ctime_s != want->ctime_s || got->ctime_ns != want->ctime_ns ||
        memchr(got->path, '\0', sizeof got->path) == NULL || strcmp(got->path, want->path))
        return "made from another checkpoint file, or before it changed";
    return NULL;
}

/* The opened file's header, checked; -1 with a note when it must not be used. */
static int read_header(int fd, const header *want, header *got, char *note, size_t size)
{
    struct stat sb;
    const char *why = NULL;
    if (fstat(fd, &sb) < 0)
        why = strerror(errno);
    else if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid())
        why = "not a regular file of this user";
    else if ((uint64_t)sb.st_size != HEADER_BYTES + want->image_bytes)
        why = "not the size its weights need";
    else if (pread(fd, got, sizeof *got, 0) != (ssize_t)sizeof *got)
        why = "cannot be read";
    else
        why = header_problem(got, want);
    if (why)
        snprintf(note, size, "weights cache file not used (%s); it is rewritten", why);
    return why ? -1 : 0;
}

int cm_wcache_load(const char *dir, const cm_wcache_id *id, const cm_safetensors *st,
                   const cm_config *cfg, cm_weights *w, uint64_t *fingerprint, char *note,
                   size_t size)
{
    header want, got;
    char name[64], err[CLIPMOD_ERROR_SIZE];
    memset(w, 0, sizeof *w);
    note[0] = '\0';
    expected_header(id, cfg, &want);
    file_name(&want, name, sizeof name);
    const int dirfd = cm_cache_dir_open(dir, note, size);
    if (dirfd < 0)
        return 0;
    const int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    close(dirfd);
    if (fd < 0) {
        if (errno != ENOENT)
            snprintf(note, size, "weights cache file %s/%s: %s", dir, name, strerror(errno));
        return 0;
    }
    void *map = MAP_FAILED;
    if (read_header(fd, &want, &got, note, size) == 0)
        map = mmap(NULL, want.image_bytes, PROT_READ, MAP_PRIVATE, fd, HEADER_BYTES);
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) {
        if (!note[0])
            snprintf(note, size, "weights cache file %s/%s: %s", dir, name, strerror(errno));
        return 0;
    }
    uint64_t digest = 0;
    parts ps = {0};
    if (cm_weights_from_image(st, cfg, id->precision, map, want.image_bytes, collect_part, &ps, w,
                              err)) {
        cm_free(ps.v);
        munmap(map, want.image_bytes);
        snprintf(note, size, "weights cache file not used (%s); it is rewritten", err);
        return 0;
    }
    if (parts_digest(&ps, &digest)) {
        cm_weights_free(w); /* unmaps */
        snprintf(note, size, "weights cache file not used (out of memory)");
        return 0;
    }
    if (digest != got.digest) {
        cm_weights_free(w); /* unmaps */
        snprintf(note, size,
                 "weights cache file not used (damaged: its digest differs); it is "
                 "rewritten");
        return 0;
    }
    *fingerprint = got.fingerprint;
    snprintf(note, size, "image tower mapped from %s/%s", dir, name);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Remove the other cache files of the directory whose checkpoint is gone (its path
 * no longer exists) or that an older clipmod wrote (another version of the magic),
 * and unfinished ones over an hour old: hundreds of MB each, which no load would
 * ever use again. Files that are not ours, or whose header cannot be read, are left
 * alone.
 */
static void prune(int dirfd, const char *keep)
{
    const int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        /* A new file is written under a temporary name: one left by a process that
         * died while loading is removed once it is an hour old. */
        const size_t len = strlen(e->d_name);
        if (!strncmp(e->d_name, ".weights-", 9) && len > 4 &&
            !strcmp(e->d_name + len - 4, ".tmp") &&
            fstatat(dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
            sb.st_mtime < time(NULL) - 3600) {
            unlinkat(dirfd, e->d_name, 0);
            continue;
        }
        if (strncmp(e->d_name, "weights-", 8) || !strcmp(e->d_name, keep))
            continue;
        header h;
        const int f = openat(dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        const int whole = f >= 0 && pread(f, &h, sizeof h, 0) == (ssize_t)sizeof h;
        if (f >= 0)
            close(f);
        if (!whole || memcmp(h.magic, MAGIC, 5))
            continue;
        const int older = memcmp(h.magic, MAGIC, 8) != 0;
        const int ours = !older && h.header_digest == header_digest(&h) &&
                         memchr(h.path, '\0', sizeof h.path) != NULL;
        if (older || (ours && access(h.path, F_OK) != 0 && errno == ENOENT))
            unlinkat(dirfd, e->d_name, 0);
    }
    closedir(d);
}

struct cm_wcache_new {
    int dirfd, fd;
    char tmp[PATH_MAX], name[64], dir[PATH_MAX];
    header h;
    unsigned char *map; /* the image part of the file, shared and writable until commit */
    size_t done;        /* commit's walk: the end of the last part visited */
    parts parts;        /* commit's walk: what the digest covers */
    int ok;
};

cm_wcache_new *cm_wcache_create(const char *dir, const cm_wcache_id *id, const cm_config *cfg,
                                char *note, size_t size)
{
    cm_wcache_new *n = cm_calloc(1, sizeof *n);
    note[0] = '\0';
    if (!n)
        return NULL;
    n->fd = -1;
    expected_header(id, cfg, &n->h);
    file_name(&n->h, n->name, sizeof n->name);
    snprintf(n->dir, sizeof n->dir, "%s", dir);
    n->dirfd = cm_cache_dir_open(dir, note, size);
    if (n->dirfd < 0) {
        cm_free(n);
        return NULL;
    }
    prune(n->dirfd, n->name);
    const off_t bytes = (off_t)(HEADER_BYTES + n->h.image_bytes);
    /* Past RLIMIT_FSIZE, growing the file raises SIGXFSZ, which kills by default. */
    struct rlimit fsize;
    if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY &&
        fsize.rlim_cur < (rlim_t)bytes) {
        snprintf(note, size, "weights cache file not written: %lld bytes, over the file size limit",
                 (long long)bytes);
        cm_wcache_discard(n);
        return NULL;
    }
    n->fd = cm_cache_temp_create(n->dirfd, n->name, n->tmp, sizeof n->tmp);
    /* Every block reserved now: a full disk must fail here, not fault a page later. */
    const int err = n->fd < 0 ? errno : posix_fallocate(n->fd, 0, bytes);
    if (!err) {
        n->map =
            mmap(NULL, n->h.image_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, n->fd, HEADER_BYTES);
        if (n->map == MAP_FAILED)
            n->map = NULL;
        /* No readahead while loading: it would cache zero pages over the ranges that
         * become holes, and later mappings of the file would count them. */
        else
            (void)madvise(n->map, n->h.image_bytes, MADV_RANDOM);
    }
    if (!n->map) {
        snprintf(note, size, "weights cache file %s/%s not written: %s", dir, n->name,
                 strerror(err ? err : errno));
        cm_wcache_discard(n);
        return NULL;
    }
    return n;
}

void *cm_wcache_image(const cm_wcache_new *n)
{
    return n->map;
}

/* Give whole pages in [from, to) of the image back to the file system (a hole). */
static void punch(const cm_wcache_new *n, size_t from, size_t to)
{
    from = (from + 4095) & ~(size_t)4095;
    to &= ~(size_t)4095;
    if (to > from)
        (void)fallocate(n->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        (off_t)(HEADER_BYTES + from), (off_t)(to - from));
}

/* One part of the image, into the digest; what lies between parts (padding, and
 * fp32 matrices converted to int8/bf16) becomes a hole if it is not one yet. */
static void commit_part(void *arg, size_t offset, const void *p, size_t bytes)
{
    cm_wcache_new *n = arg;
    collect_part(&n->parts, offset, p, bytes);
    punch(n, n->done, offset);
    n->done = offset + bytes;
}

void cm_wcache_commit(cm_wcache_new *n, const cm_safetensors *st, const cm_config *cfg,
                      cm_weights *w, uint64_t fingerprint, char *note, size_t size)
{
    /* w took the mapping when it was loaded into it (cm_weights_load_into). */
    n->map = NULL;
    n->h.fingerprint = fingerprint;
    n->h.digest = 0;
    clipmod_error rc = cm_weights_image_walk(st, cfg, w, commit_part, n);
    if (parts_digest(&n->parts, &n->h.digest) && rc == CLIPMOD_OK)
        rc = CLIPMOD_E_NOMEM;
    if (rc == CLIPMOD_OK) {
        punch(n, n->done, n->h.image_bytes);
        n->h.header_digest = header_digest(&n->h);
    }
    errno = 0;
    n->ok = rc == CLIPMOD_OK && pwrite(n->fd, &n->h, sizeof n->h, 0) == (ssize_t)sizeof n->h &&
            renameat(n->dirfd, n->tmp, n->dirfd, n->name) == 0;
    if (n->ok)
        snprintf(note, size, "image tower kept in %s/%s for the next load", n->dir, n->name);
    else
        snprintf(note, size, "weights cache file %s/%s not written: %s", n->dir, n->name,
                 rc == CLIPMOD_E_NOMEM ? "out of memory"
                 : rc                  ? "the weights are not as a load now gives them"
                                       : strerror(errno));
    (void)mprotect(w->map, w->map_bytes, PROT_READ);
    cm_wcache_discard(n);
}

void cm_wcache_discard(cm_wcache_new *n)
{
    if (!n)
        return;
    if (n->map)
        munmap(n->map, n->h.image_bytes);
    if (n->fd >= 0) {
        close(n->fd);
        if (!n->ok)
            unlinkat(n->dirfd, n->tmp, 0);
    }
    if (n->dirfd >= 0)
        close(n->dirfd);
    cm_free(n);
}

/* ------------------------------------------------------------------------ */
/* For the fuzz target                                                      */
/* ------------------------------------------------------------------------ */

int cm_wcache_reseal(const char *dir, const cm_wcache_id *id, const cm_safetensors *st,
                     const cm_config *cfg)
{
    header want, h;
    char name[64], path[PATH_MAX], err[CLIPMOD_ERROR_SIZE];
    cm_weights w;
    expected_header(id, cfg, &want);
    file_name(&want, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    const int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    int rc = -1;
    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == HEADER_BYTES + want.image_bytes &&
        pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h) {
        void *map = mmap(NULL, want.image_bytes, PROT_READ, MAP_PRIVATE, fd, HEADER_BYTES);
        parts ps = {0};
        if (map != MAP_FAILED &&
            cm_weights_from_image(st, cfg, id->precision, map, want.image_bytes, collect_part, &ps,
                                  &w, err) == CLIPMOD_OK) {
            parts_digest(&ps, &h.digest);
            cm_weights_free(&w); /* unmaps */
            h.header_digest = header_digest(&h);
            rc = pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h ? 0 : -1;
        } else if (map != MAP_FAILED) {
            cm_free(ps.v);
            munmap(map, want.image_bytes);
        }
    }
    close(fd);
    return rc;
}
