/*
 * safetensors.c - mapping and indexing .safetensors files.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON mapping each
 * tensor name to {dtype, shape, data_offsets}, then the data. The header is parsed
 * with jansson; everything in it is untrusted, so every count and offset is checked
 * for overflow and against the file size before any tensor is exposed.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "safetensors.h"

/* A header larger than this is not a CLIP checkpoint (ViT-L/14's is ~60 KiB). */
#define MAX_HEADER_BYTES (64u << 20)

struct cm_safetensors {
    void *map;          /* NULL for a borrowed buffer (cm_safetensors_parse) */
    size_t map_len;     /* of the mapping or the buffer */
    const void *bytes;  /* the whole file: the mapping or the caller's buffer */
    json_t *meta;       /* the header's __metadata__ object, or NULL */
    cm_tensor *tensors; /* sorted by name for bsearch */
    size_t count;
    char *names; /* one block holding every name */
};

size_t cm_dtype_size(cm_dtype dt)
{
    switch (dt) {
    case CM_DT_F32:
        return 4;
    case CM_DT_F16:
    case CM_DT_BF16:
        return 2;
    case CM_DT_I64:
        return 8;
    default:
        return 0;
    }
}

static cm_dtype parse_dtype(const char *s)
{
    if (!strcmp(s, "F32"))
        return CM_DT_F32;
    if (!strcmp(s, "F16"))
        return CM_DT_F16;
    if (!strcmp(s, "BF16"))
        return CM_DT_BF16;
    if (!strcmp(s, "I64"))
        return CM_DT_I64;
    return CM_DT_OTHER;
}

/* Element size of the dtypes we only index, so their byte ranges can be checked too. */
static size_t other_dtype_size(const char *s)
{
    static const struct {
        const char *name;
        size_t size;
    } sizes[] = {{"F64", 8}, {"I32", 4},  {"U32", 4}, {"I16", 2},     {"U16", 2},    {"I8", 1},
                 {"U8", 1},  {"BOOL", 1}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!strcmp(s, sizes[i].name))
            return sizes[i].size;
    return 0;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const cm_tensor *)a)->name, ((const cm_tensor *)b)->name);
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Fill `t` from one header entry; data begins at `data`, `data_len` bytes long. */
static clipmod_error parse_entry(const char *path, const char *name, json_t *desc,
                                 const unsigned char *data, size_t data_len, cm_tensor *t,
                                 char *errbuf)
{
    json_t *dtype = json_object_get(desc, "dtype");
    json_t *shape = json_object_get(desc, "shape");
    json_t *offs = json_object_get(desc, "data_offsets");

    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: tensor '%s': header entry needs dtype, shape and data_offsets", path,
                        name);

    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", json_string_value(dtype));
    t->dtype = parse_dtype(t->dtype_name);
    size_t esize =
        t->dtype == CM_DT_OTHER ? other_dtype_size(t->dtype_name) : cm_dtype_size(t->dtype);
    if (!esize)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path,
                        name, t->dtype_name);

    size_t nd = json_array_size(shape);
    if (nd > CM_MAX_DIMS)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: tensor '%s': %zu dimensions", path,
                        name, nd);
    t->ndim = (int)nd;
    size_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                            "%s: tensor '%s': shape is not a list of sizes", path, name);
        t->shape[i] = json_integer_value(d);
        uint64_t dim = (uint64_t)t->shape[i];
        if (dim && numel > SIZE_MAX / dim)
            return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: tensor '%s': shape overflows",
                            path, name);
        numel *= (size_t)dim;
    }
    t->numel = numel;

    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b))
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: tensor '%s': bad data_offsets", path,
                        name);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
    if (end > data_len)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: tensor '%s' ends at byte %llu of %zu data bytes: the file is "
                        "truncated",
                        path, name, (unsigned long long)end, data_len);
    if (numel > SIZE_MAX / esize || end - begin != numel * esize)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: tensor '%s': %llu data bytes do not fit its shape and dtype %s", path,
                        name, (unsigned long long)(end - begin), t->dtype_name);
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    return CLIPMOD_OK;
}

/*
 * Index the file in st->bytes (st->map_len bytes): the header, every tensor entry
 * and the metadata. `path` names the file in messages.
 */
static clipmod_error index_file(cm_safetensors *st, const char *path, char *errbuf)
{
    clipmod_error rc = CLIPMOD_OK;
    json_t *root = NULL;
    const unsigned char *base = st->bytes;

    if (st->map_len < 8)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: %zu bytes is too short for safetensors", path, st->map_len);
    uint64_t hlen = read_le64(base);
    if (hlen > MAX_HEADER_BYTES || hlen > st->map_len - 8)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: header claims %llu bytes but the file has %zu: truncated or not "
                        "safetensors",
                        path, (unsigned long long)hlen, st->map_len);

    json_error_t jerr;
    root = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        rc = cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: header is not a JSON object: %s", path,
                      root ? "wrong type" : jerr.text);
        goto out;
    }

    const unsigned char *data = base + 8 + hlen;
    size_t data_len = st->map_len - 8 - (size_t)hlen;
    size_t n = 0, names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (!strcmp(key, "__metadata__"))
            continue;
        n++;
        names_len += strlen(key) + 1;
    }

    st->tensors = cm_calloc(n ? n : 1, sizeof *st->tensors);
    st->names = cm_alloc(names_len ? names_len : 1);
    if (!st->tensors || !st->names) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }

    char *np = st->names;
    json_object_foreach(root, key, val)
    {
        if (!strcmp(key, "__metadata__")) {
            if (json_is_object(val))
                st->meta = json_incref(val);
            continue;
        }
        if (!json_is_object(val)) {
            rc = cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: tensor '%s': entry is not an object",
                          path, key);
            goto out;
        }
        cm_tensor *t = &st->tensors[st->count];
        rc = parse_entry(path, key, val, data, data_len, t, errbuf);
        if (rc)
            goto out;
        size_t kl = strlen(key) + 1;
        memcpy(np, key, kl);
        t->name = np;
        np += kl;
        st->count++;
    }
    qsort(st->tensors, st->count, sizeof *st->tensors, cmp_tensor);
out:
    json_decref(root);
    return rc;
}

clipmod_error cm_safetensors_open(const char *path, cm_safetensors **out, char *errbuf)
{
    clipmod_error rc = CLIPMOD_OK;
    cm_safetensors *st = NULL;
    int fd = -1;
    struct stat sb;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: not a regular file", path);
        goto out;
    }
    if (sb.st_size < 8) {
        rc = cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: %lld bytes is too short for safetensors",
                      path, (long long)sb.st_size);
        goto out;
    }

    st = cm_calloc(1, sizeof *st);
    if (!st) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    st->map_len = (size_t)sb.st_size;
    st->map = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: mmap: %s", path, strerror(errno));
        goto out;
    }
    st->bytes = st->map;
    rc = index_file(st, path, errbuf);
    if (rc)
        goto out;
    *out = st;
    st = NULL;
out:
    if (fd >= 0)
        close(fd);
    cm_safetensors_close(st);
    return rc;
}

clipmod_error cm_safetensors_parse(const void *buf, size_t len, const char *name,
                                   cm_safetensors **out, char *errbuf)
{
    *out = NULL;
    cm_safetensors *st = cm_calloc(1, sizeof *st);
    if (!st)
        return cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
    st->bytes = buf;
    st->map_len = len;
    clipmod_error rc = index_file(st, name, errbuf);
    if (rc) {
        cm_safetensors_close(st);
        return rc;
    }
    *out = st;
    return CLIPMOD_OK;
}

const char *cm_safetensors_meta(const cm_safetensors *st, const char *key)
{
    json_t *v = st->meta ? json_object_get(st->meta, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void cm_safetensors_close(cm_safetensors *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_len);
    json_decref(st->meta);
    cm_free(st->tensors);
    cm_free(st->names);
    cm_free(st);
}

const cm_tensor *cm_safetensors_find(const cm_safetensors *st, const char *name)
{
    cm_tensor key = {.name = name};
    return bsearch(&key, st->tensors, st->count, sizeof key, cmp_tensor);
}

const void *cm_safetensors_bytes(const cm_safetensors *st, size_t *len)
{
    *len = st->map_len;
    return st->bytes;
}

/* [p, p + len) widened to whole pages, for madvise. */
static void page_range(const void *p, size_t len, void **lo, size_t *n)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = (uintptr_t)p & ~(page - 1);
    const uintptr_t b = ((uintptr_t)p + len + page - 1) & ~(page - 1);
    *lo = (void *)a;
    *n = b - a;
}

void cm_safetensors_release(const void *p, size_t len)
{
    /* Outward to whole pages: the mapping is read-only and private, so a page that a
     * neighbouring tensor still needs is simply read back from the page cache. */
    void *lo;
    size_t n;
    page_range(p, len, &lo, &n);
    if (p && len)
        (void)madvise(lo, n, MADV_DONTNEED);
}

void cm_safetensors_prefault(const void *p, size_t len)
{
#ifdef MADV_POPULATE_READ
    /* One call maps the whole range from the page cache: page by page, the faults
     * cost more than the copy that follows them. Older kernels refuse it (EINVAL);
     * then the reads fault the pages in as before. */
    void *lo;
    size_t n;
    page_range(p, len, &lo, &n);
    if (p && len)
        (void)madvise(lo, n, MADV_POPULATE_READ);
#else
    (void)p;
    (void)len;
#endif
}

size_t cm_safetensors_count(const cm_safetensors *st)
{
    return st->count;
}

const cm_tensor *cm_safetensors_at(const cm_safetensors *st, size_t i)
{
    return i < st->count ? &st->tensors[i] : NULL;
}

/* IEEE half to float, including subnormals, infinities and NaN. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;

    if (exp == 0x1f) {
        bits = sign | 0x7f800000 | (mant << 13);
    } else if (exp) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant) {
        /* Subnormal: normalise the mantissa. */
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void cm_tensor_to_f32(const cm_tensor *t, size_t first, size_t n, float *dst)
{
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case CM_DT_F32:
        memcpy(dst, p + first * 4, n * 4);
        break;
    case CM_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + (first + i) * 2, 2);
            dst[i] = half_to_float(h);
        }
        break;
    case CM_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + (first + i) * 2, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        break;
    default:
        break;
    }
}
