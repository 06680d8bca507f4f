/*
 * clipmod.h - the public interface of libclipmod.
 *
 * libclipmod scores images with a CLIP model: it loads a Hugging Face (or OpenAI /
 * open_clip named) checkpoint, turns images and texts into L2-normalised embeddings
 * and compares them. Everything a program needs is declared here; every other
 * symbol of the library is private.
 *
 * Conventions, as in curl and ClamAV:
 *  - Handles are opaque. Each constructor states who owns what it returns; every
 *    *_free() function accepts NULL.
 *  - Functions that can fail return a clipmod_error. Where a detailed message helps,
 *    they also take `char *errbuf`: a caller-owned buffer of CLIPMOD_ERROR_SIZE bytes
 *    (or NULL) that receives one human-readable line naming the culprit (file,
 *    tensor, image) on failure.
 *  - A loaded clipmod_model is read-only: any number of threads may embed with it
 *    at once.
 */
#ifndef CLIPMOD_H
#define CLIPMOD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(CLIPMOD_BUILDING_LIBRARY)
#define CLIPMOD_API __attribute__((visibility("default")))
#else
#define CLIPMOD_API
#endif

#define CLIPMOD_VERSION_MAJOR 0
#define CLIPMOD_VERSION_MINOR 1
#define CLIPMOD_VERSION_PATCH 0
#define CLIPMOD_VERSION_STRING "0.1.0"

/* Size of every errbuf argument, terminating NUL included. */
#define CLIPMOD_ERROR_SIZE 512

/* Longest token sequence a CLIP text tower accepts (SOT and EOT included). */
#define CLIPMOD_CONTEXT_LENGTH 77

/* Error codes. A verdict about an image is never one of these. */
typedef enum clipmod_error {
    CLIPMOD_OK = 0,
    CLIPMOD_E_INVALID_ARG,    /* a NULL handle, a zero count, invalid UTF-8 ... */
    CLIPMOD_E_NOMEM,          /* an allocation failed */
    CLIPMOD_E_IO,             /* a file could not be opened, read or mapped */
    CLIPMOD_E_MODEL_FORMAT,   /* model.safetensors is truncated or malformed */
    CLIPMOD_E_MODEL_CONFIG,   /* config.json is missing, malformed or inconsistent */
    CLIPMOD_E_MODEL_TENSOR,   /* a tensor is missing, of the wrong shape or dtype */
    CLIPMOD_E_TOKENIZER,      /* the merges file is missing or malformed */
    CLIPMOD_E_IMAGE_DECODE,   /* the image could not be decoded */
    CLIPMOD_E_IMAGE_BLOCKED,  /* the image's format is not allowed */
    CLIPMOD_E_IMAGE_LIMIT,    /* the image exceeds a byte or pixel limit */
    CLIPMOD_E_INIT,           /* clipmod_init() was not called or failed */
    CLIPMOD_E_POLICY,         /* the policy file has problems (each one is reported) */
    CLIPMOD_E__COUNT          /* not an error: the number of codes */
} clipmod_error;

/* A static English description of `err`; never NULL. */
CLIPMOD_API const char *clipmod_strerror(clipmod_error err);

/* The library's version string, e.g. "0.1.0". */
CLIPMOD_API const char *clipmod_version(void);

/*
 * Initialise the library once per process, before any other call: starts libvips,
 * blocks its untrusted loaders and disables its operation cache (untrusted input
 * must not be cached across scans). `argv0` may be NULL. Not thread-safe; call it
 * from main(). Calling it again is harmless.
 */
CLIPMOD_API clipmod_error clipmod_init(const char *argv0);

/* Release what clipmod_init() set up. Call last, with no model in use. */
CLIPMOD_API void clipmod_shutdown(void);

/*
 * Threads used for each matrix product (OpenBLAS). 0 keeps the library default.
 * Process-wide; call before embedding.
 */
CLIPMOD_API void clipmod_set_threads(int n);

/* ------------------------------------------------------------------------ */
/* Models                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct clipmod_model clipmod_model;

/*
 * Load the CLIP model in directory `dir`: model.safetensors (or
 * open_clip_model.safetensors), config.json, and merges.txt for the tokenizer.
 * Tensors may be F32, F16 or BF16 and use HF or OpenAI/open_clip names; every shape
 * is checked here, once. `merges` overrides the merges file (a merges.txt or OpenAI's
 * bpe_simple_vocab_16e6.txt.gz); NULL looks in `dir`. A model without a merges file
 * loads, but can embed only images.
 * On success *out is a new model owned by the caller (free with clipmod_model_free);
 * on failure *out is NULL and errbuf names the file, key or tensor at fault.
 */
CLIPMOD_API clipmod_error clipmod_model_load(const char *dir, const char *merges,
                                             clipmod_model **out, char *errbuf);

/* Free a model. Accepts NULL. No embedding may be running on it. */
CLIPMOD_API void clipmod_model_free(clipmod_model *model);

/* Length of every embedding this model returns (projection_dim). */
CLIPMOD_API size_t clipmod_model_embed_dim(const clipmod_model *model);

/* Side in pixels of the square the image tower sees (e.g. 224). */
CLIPMOD_API int clipmod_model_image_size(const clipmod_model *model);

/* exp(logit_scale): the factor CLIP multiplies cosines by before a softmax. */
CLIPMOD_API float clipmod_model_logit_scale(const clipmod_model *model);

/* 1 if the model can embed texts (it has a text tower and a tokenizer). */
CLIPMOD_API int clipmod_model_has_text(const clipmod_model *model);

/*
 * A short description, e.g. "ViT-B/32, hf names, f16, quick_gelu". Owned by the
 * model; valid until clipmod_model_free().
 */
CLIPMOD_API const char *clipmod_model_describe(const clipmod_model *model);

/* ------------------------------------------------------------------------ */
/* Images                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Limits applied while an image is read. Initialise with clipmod_limits_default()
 * and change what you need; the defaults live in one table in the library.
 */
typedef struct clipmod_limits {
    uint64_t max_file_bytes; /* larger inputs are refused before decoding */
    uint64_t max_pixels;     /* width x height, checked from the header */
    uint32_t max_side;       /* largest width or height, from the header */
} clipmod_limits;

/* Fill `lim` with the library defaults. */
CLIPMOD_API void clipmod_limits_default(clipmod_limits *lim);

/* An image decoded and preprocessed for one model: its normalised pixel tensor. */
typedef struct clipmod_image clipmod_image;

/*
 * Decode and preprocess an image for `model`: EXIF orientation, alpha flattened onto
 * white, shortest side resized to the model's size with a bicubic filter, centre
 * crop, CLIP normalisation. `lim` may be NULL for the defaults.
 * On success *out is a new image owned by the caller (free with clipmod_image_free).
 * Errors: CLIPMOD_E_IO, _IMAGE_DECODE, _IMAGE_BLOCKED, _IMAGE_LIMIT.
 */
CLIPMOD_API clipmod_error clipmod_image_load_file(const clipmod_model *model, const char *path,
                                                  const clipmod_limits *lim, clipmod_image **out,
                                                  char *errbuf);

/* As clipmod_image_load_file, from `len` bytes at `buf` (borrowed for the call only). */
CLIPMOD_API clipmod_error clipmod_image_load_memory(const clipmod_model *model, const void *buf,
                                                    size_t len, const clipmod_limits *lim,
                                                    clipmod_image **out, char *errbuf);

/* Free an image. Accepts NULL. */
CLIPMOD_API void clipmod_image_free(clipmod_image *img);

/* Original width and height of the decoded image, after EXIF orientation. */
CLIPMOD_API void clipmod_image_source_size(const clipmod_image *img, int *width, int *height);

/*
 * The preprocessed tensor: 3 x size x size floats, channel-major (CHW). Owned by
 * `img`. Exposed for tests and tools that compare preprocessing.
 */
CLIPMOD_API const float *clipmod_image_pixels(const clipmod_image *img, int *size);

/* ------------------------------------------------------------------------ */
/* Embeddings                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Embed `n` images in one batched forward pass. `out` is caller-owned and holds
 * n x clipmod_model_embed_dim() floats; row i receives image i's L2-normalised
 * embedding. Every image must have been loaded for this model.
 */
CLIPMOD_API clipmod_error clipmod_embed_images(const clipmod_model *model,
                                               const clipmod_image *const *imgs, size_t n,
                                               float *out, char *errbuf);

/*
 * Embed `n` NUL-terminated UTF-8 texts in one batched pass, as embed_images. A text
 * longer than the context is truncated (the last token becomes EOT); if `truncated`
 * is not NULL, truncated[i] is set to 1 for such a text, else 0.
 */
CLIPMOD_API clipmod_error clipmod_embed_texts(const clipmod_model *model,
                                              const char *const *texts, size_t n, float *out,
                                              int *truncated, char *errbuf);

/*
 * Tokenize one NUL-terminated UTF-8 text as the text tower will see it: SOT, tokens,
 * EOT, at most CLIPMOD_CONTEXT_LENGTH ids into caller-owned `ids`. *n_ids receives
 * the count; *truncated (may be NULL) is set to 1 if the text was cut.
 */
CLIPMOD_API clipmod_error clipmod_tokenize(const clipmod_model *model, const char *text,
                                           int32_t ids[CLIPMOD_CONTEXT_LENGTH], size_t *n_ids,
                                           int *truncated, char *errbuf);

#ifdef __cplusplus
}
#endif

#endif /* CLIPMOD_H */
