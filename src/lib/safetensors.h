/*
 * safetensors.h - read-only access to a .safetensors file (internal).
 *
 * Owns the mapping of one file and the index of its tensors. The file is mmapped
 * read-only; tensor data pointers point into the mapping and live as long as the
 * cm_safetensors handle. Every offset and size is validated at open, so callers can
 * read any indexed tensor without further bounds checks.
 */
#ifndef CM_SAFETENSORS_H
#define CM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"

#define CM_MAX_DIMS 8

typedef enum cm_dtype {
    CM_DT_F32,
    CM_DT_F16,
    CM_DT_BF16,
    CM_DT_I64,
    CM_DT_OTHER /* a dtype we index but never read (I32, U8, F64 ...) */
} cm_dtype;

typedef struct cm_tensor {
    const char *name; /* owned by the cm_safetensors */
    cm_dtype dtype;
    char dtype_name[16]; /* as written in the file, e.g. "F16" */
    int ndim;
    int64_t shape[CM_MAX_DIMS];
    size_t numel;
    const void *data; /* little-endian, row-major, inside the mapping */
    size_t nbytes;
} cm_tensor;

typedef struct cm_safetensors cm_safetensors;

/*
 * Map `path` and index its tensors. On success *out is owned by the caller (close it
 * with cm_safetensors_close). Errors: CLIPMOD_E_IO (cannot open/map),
 * CLIPMOD_E_MODEL_FORMAT (truncated file, bad header, bad offsets or shapes).
 */
clipmod_error cm_safetensors_open(const char *path, cm_safetensors **out, char *errbuf);

/*
 * Index a safetensors file already in memory (`len` bytes at `buf`, named `name` in
 * messages), as cm_safetensors_open does. The buffer is borrowed: it must outlive
 * the handle. Same errors, except CLIPMOD_E_IO.
 */
clipmod_error cm_safetensors_parse(const void *buf, size_t len, const char *name,
                                   cm_safetensors **out, char *errbuf);

/* The string value of `key` in the header's __metadata__, or NULL (absent, not a string). */
const char *cm_safetensors_meta(const cm_safetensors *st, const char *key);

/* Unmap and free. Accepts NULL. */
void cm_safetensors_close(cm_safetensors *st);

/* The tensor called `name`, or NULL. */
const cm_tensor *cm_safetensors_find(const cm_safetensors *st, const char *name);

/*
 * Drop the pages of [p, p + len) of a tensor's data (or of the bytes) from this
 * process's resident set once they are read: the file's pages would otherwise count
 * twice next to the copies the loader made (605 MB of ViT-B/32 held during the load).
 * The data stays readable (it is read back from the file). Accepts NULL.
 */
void cm_safetensors_release(const void *p, size_t len);

/* Map [p, p + len) of the file in one go before reading it (a hint: ignored where
 * the kernel cannot). */
void cm_safetensors_prefault(const void *p, size_t len);

size_t cm_safetensors_count(const cm_safetensors *st);
const cm_tensor *cm_safetensors_at(const cm_safetensors *st, size_t i);

/* The whole mapped file (for fingerprinting). */
const void *cm_safetensors_bytes(const cm_safetensors *st, size_t *len);

/* Size in bytes of one element of `dt` (0 for CM_DT_OTHER). */
size_t cm_dtype_size(cm_dtype dt);

/*
 * Convert `n` elements of a F32, F16 or BF16 tensor starting at element `first` to
 * float32 into `dst`. The caller checked the bounds against t->numel.
 */
void cm_tensor_to_f32(const cm_tensor *t, size_t first, size_t n, float *dst);

#endif
