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

/* CLIPMOD_VERSION_MAJOR/MINOR/PATCH/STRING, generated from configure.ac's AC_INIT. */
#include <clipmod/version.h>

/* How clipmod names itself to web servers (fetch mode, model downloads). */
#define CLIPMOD_USER_AGENT "clipmod/" CLIPMOD_VERSION_STRING " (image content moderation)"

/* Size of every errbuf argument, terminating NUL included. */
#define CLIPMOD_ERROR_SIZE 512

/* Longest token sequence a CLIP text tower accepts (SOT and EOT included). */
#define CLIPMOD_CONTEXT_LENGTH 77

/* Error codes. A verdict about an image is never one of these. */
typedef enum clipmod_error {
    CLIPMOD_OK = 0,
    CLIPMOD_E_INVALID_ARG,   /* a NULL handle, a zero count, invalid UTF-8 ... */
    CLIPMOD_E_NOMEM,         /* an allocation failed */
    CLIPMOD_E_IO,            /* a file could not be opened, read or mapped */
    CLIPMOD_E_MODEL_FORMAT,  /* model.safetensors is truncated or malformed */
    CLIPMOD_E_MODEL_CONFIG,  /* config.json is missing, malformed or inconsistent */
    CLIPMOD_E_MODEL_TENSOR,  /* a tensor is missing, of the wrong shape or dtype */
    CLIPMOD_E_TOKENIZER,     /* the merges file is missing or malformed */
    CLIPMOD_E_IMAGE_DECODE,  /* the image could not be decoded */
    CLIPMOD_E_IMAGE_BLOCKED, /* the image's format is not allowed */
    CLIPMOD_E_IMAGE_LIMIT,   /* the image exceeds a byte or pixel limit */
    CLIPMOD_E_INIT,          /* clipmod_init() was not called or failed */
    CLIPMOD_E_POLICY,        /* the policy file has problems (each one is reported) */
    CLIPMOD_E_PLUGIN,        /* a plugin could not be loaded or refused its configuration */
    CLIPMOD_E_UNSUPPORTED,   /* this CPU lacks an instruction set the request needs */
    CLIPMOD_E__COUNT         /* not an error: the number of codes */
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

/*
 * The arithmetic of the linear layers (the bulk of the work), chosen at load.
 * FP32 is the reference. INT8 quantises each weight matrix once at load (symmetric,
 * one scale per output channel) and each activation row per call (u8 with a zero
 * point); layer norms, softmax, attention, residuals, biases and activations stay
 * fp32. It needs AVX-512 VNNI or AVX-VNNI. BF16 stores the weights as bfloat16 and
 * converts activations per call; it needs AVX-512 BF16. Embeddings at INT8/BF16
 * differ slightly from FP32 (cosine >= 0.995 on our reference photos).
 */
typedef enum clipmod_precision {
    CLIPMOD_PRECISION_FP32 = 0,
    CLIPMOD_PRECISION_INT8,
    CLIPMOD_PRECISION_BF16,
    CLIPMOD_PRECISION__COUNT /* not a precision: the number of them */
} clipmod_precision;

/* "fp32", "int8", "bf16" ("unknown" otherwise). */
CLIPMOD_API const char *clipmod_precision_name(clipmod_precision p);

/* Parse "fp32" / "int8" / "bf16" into *out; CLIPMOD_E_INVALID_ARG otherwise. */
CLIPMOD_API clipmod_error clipmod_precision_parse(const char *name, clipmod_precision *out);

/*
 * CLIPMOD_OK if this CPU can run precision p, else CLIPMOD_E_UNSUPPORTED with a
 * sentence in errbuf (may be NULL) naming the precision and the missing CPU feature.
 * Never falls back silently: a precision the CPU lacks is refused, not emulated.
 */
CLIPMOD_API clipmod_error clipmod_precision_check(clipmod_precision p, char *errbuf);

/*
 * clipmod_model_load at precision p: the same files, the linear layers of both
 * towers converted once at load (the fp32 copies of those matrices are released).
 * CLIPMOD_E_UNSUPPORTED (see clipmod_precision_check) when the CPU cannot run p.
 * clipmod_model_load(dir, merges, out, errbuf) is this with CLIPMOD_PRECISION_FP32.
 * The model's fingerprint (prompt and image caches) includes p unless it is FP32.
 */
CLIPMOD_API clipmod_error clipmod_model_load_precision(const char *dir, const char *merges,
                                                       clipmod_precision p, clipmod_model **out,
                                                       char *errbuf);

/*
 * clipmod_model_load_precision with a weights cache in directory `cache_dir`
 * (created 0700 if need be; "" is the prompt cache's default, $XDG_CACHE_HOME/clipmod
 * or ~/.cache/clipmod; NULL: no cache, as clipmod_model_load_precision). The
 * image tower, converted and packed as this CPU's kernels read it, is kept there in
 * one file per checkpoint and precision (about the size of the image tower: 350 MB
 * for ViT-B/32 at fp32); the next load of the same, unchanged checkpoint maps that
 * file read-only instead of reading, converting and hashing the checkpoint, and
 * processes that load it share one copy in memory. A file that does not match (a
 * changed checkpoint, another CPU's layout, damage) is never used, and is rewritten.
 * A cache that cannot be used never fails the load: clipmod_model_cache_note says
 * what happened. The directory is refused, like the prompt cache's, when it is a
 * symbolic link, another user's or writable by others.
 */
CLIPMOD_API clipmod_error clipmod_model_load_cached(const char *dir, const char *merges,
                                                    clipmod_precision p, const char *cache_dir,
                                                    clipmod_model **out, char *errbuf);

/*
 * One sentence on what the weights cache did when `model` was loaded, for a log
 * line: that the image tower was mapped from a file, that a file was written for
 * the next load, or why the cache was not used. "" when no cache was asked for
 * (and for NULL). Owned by the model.
 */
CLIPMOD_API const char *clipmod_model_cache_note(const clipmod_model *model);

/* The precision `model` was loaded at (FP32 for NULL). */
CLIPMOD_API clipmod_precision clipmod_model_precision(const clipmod_model *model);

/* Free a model. Accepts NULL. No embedding may be running on it. */
CLIPMOD_API void clipmod_model_free(clipmod_model *model);

/* Length of every embedding this model returns (projection_dim). */
CLIPMOD_API size_t clipmod_model_embed_dim(const clipmod_model *model);

/* Side in pixels of the square the image tower sees (e.g. 224). */
CLIPMOD_API int clipmod_model_image_size(const clipmod_model *model);

/* exp(logit_scale): the factor CLIP multiplies cosines by before a softmax. */
CLIPMOD_API float clipmod_model_logit_scale(const clipmod_model *model);

/*
 * 1 if this is clipmod's demo model (config.json says "clipmod_demo": true): a
 * small CLIP trained on emoji, for demos and tests, not for real moderation.
 * Programs should say so to their users; results carry it in their JSON.
 */
CLIPMOD_API int clipmod_model_is_demo(const clipmod_model *model);

/* 1 if the model can embed texts (it has a text tower and a tokenizer). */
CLIPMOD_API int clipmod_model_has_text(const clipmod_model *model);

/*
 * A short description, e.g. "ViT-B/32, hf names, f16, quick_gelu". Owned by the
 * model; valid until clipmod_model_free().
 */
CLIPMOD_API const char *clipmod_model_describe(const clipmod_model *model);

/*
 * A 64-bit fingerprint of the model's weights file and, unless FP32, its precision:
 * the value that keys the prompt and image caches. Equal fingerprints mean the same
 * embeddings, so programs may key their own caches (e.g. verdicts) on it. 0 for NULL.
 */
CLIPMOD_API uint64_t clipmod_model_fingerprint(const clipmod_model *model);

/* ------------------------------------------------------------------------ */
/* Structures the caller allocates: the `size` rule                         */
/* ------------------------------------------------------------------------ */

/*
 * clipmod_limits, clipmod_input and clipmod_category_score live in the caller's
 * memory (on its stack, in its arrays), so their layout is part of the ABI. So that a
 * later version can append members without breaking programs already built, each
 * starts with `size_t size`: sizeof the structure as the caller was compiled, which
 * clipmod_limits_default() and the CLIPMOD_*_INIT initialisers set. The library
 *  - refuses size 0, a size below the structure's first published layout
 *    (CLIPMOD_*_SIZE_V1) and an implausible one (over CLIPMOD_STRUCT_SIZE_MAX: an
 *    uninitialised size is garbage, and nothing past it is read) with
 *    CLIPMOD_E_INVALID_ARG and a sentence saying why (in errbuf where the function
 *    takes one, else from clipmod_invalid_arg_reason());
 *  - reads and writes only the members within `size`: a member an older (smaller)
 *    caller lacks takes its default (0/NULL, or the library's limit), and nothing is
 *    written past the caller's structure;
 *  - accepts a newer (larger) caller's structure that it reads when every byte it
 *    does not know is 0 (the caller uses nothing this library lacks), else refuses it
 *    rather than silently ignore what was asked; in one it fills, it zeroes them.
 * It is clipmod_plugin's rule (clipmod/plugin.h), the one of Win32's cbSize and of
 * Linux's openat2()/clone3() structures; zlib's deflateInit() passes sizeof the same
 * way. Opaque handles with setters (curl's way) were not chosen for these three:
 * inputs come in arrays built per request and scores are read in loops, where a
 * handle per element would add an allocation and a failure path to every scan, and
 * plain members keep the designated initialisers programs already write.
 */

/* Sizes above this are taken for an uninitialised `size` and refused unread. */
#define CLIPMOD_STRUCT_SIZE_MAX 4096

/*
 * Why the library last refused one of the caller's structures on this thread with
 * CLIPMOD_E_INVALID_ARG, for the functions without errbuf, e.g. "clipmod_input[0]:
 * size 0 ...: initialise it with CLIPMOD_INPUT_INIT"; "" if it never did. Owned by
 * the library (thread-local); overwritten by the thread's next refusal.
 */
CLIPMOD_API const char *clipmod_invalid_arg_reason(void);

/* ------------------------------------------------------------------------ */
/* Images                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Limits applied while an image is read: caller-owned, read by the library during
 * the call only. Initialise with clipmod_limits_default() (which sets `size` and the
 * defaults, from one table in the library) and change what you need.
 */
typedef struct clipmod_limits {
    size_t size;             /* sizeof(clipmod_limits); see "the size rule" above */
    uint64_t max_file_bytes; /* larger inputs are refused before decoding */
    uint64_t max_pixels;     /* width x height, checked from the header */
    uint32_t max_side;       /* largest width or height, from the header */
} clipmod_limits;

/* The first published layout: every member up to max_side. */
#define CLIPMOD_LIMITS_SIZE_V1 (offsetof(clipmod_limits, max_side) + sizeof(uint32_t))

/*
 * Set lim->size to `size` and fill the first `size` bytes of the caller-owned `lim`
 * with the library defaults. CLIPMOD_E_INVALID_ARG (and `lim` untouched) for NULL or
 * a size outside [CLIPMOD_LIMITS_SIZE_V1, CLIPMOD_STRUCT_SIZE_MAX]. Call it through
 * clipmod_limits_default(), which passes the size the caller was compiled with.
 */
CLIPMOD_API clipmod_error clipmod_limits_init(clipmod_limits *lim, size_t size);
#define clipmod_limits_default(lim) clipmod_limits_init((lim), sizeof *(lim))

/* An image decoded and preprocessed for one model: its normalised pixel tensor. */
typedef struct clipmod_image clipmod_image;

/*
 * Decode and preprocess an image for `model`: EXIF orientation, alpha flattened onto
 * white, shortest side resized to the model's size with a bicubic filter, centre
 * crop, CLIP normalisation. `lim` (borrowed for the call) may be NULL for the
 * defaults; a `lim` whose size breaks the size rule gives CLIPMOD_E_INVALID_ARG.
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
CLIPMOD_API clipmod_error clipmod_embed_texts(const clipmod_model *model, const char *const *texts,
                                              size_t n, float *out, int *truncated, char *errbuf);

/*
 * Tokenize one NUL-terminated UTF-8 text as the text tower will see it: SOT, tokens,
 * EOT, at most CLIPMOD_CONTEXT_LENGTH ids into caller-owned `ids`. *n_ids receives
 * the count; *truncated (may be NULL) is set to 1 if the text was cut.
 */
CLIPMOD_API clipmod_error clipmod_tokenize(const clipmod_model *model, const char *text,
                                           int32_t ids[CLIPMOD_CONTEXT_LENGTH], size_t *n_ids,
                                           int *truncated, char *errbuf);

/* ------------------------------------------------------------------------ */
/* Scanning: an engine (model + policy) and its verdicts                    */
/* ------------------------------------------------------------------------ */

/*
 * An engine is created for a model, configured (limits, cache), compiled with a
 * policy, and from then on read-only: any number of threads may scan with it at
 * once. To change the policy, compile a new engine and swap it in.
 */
typedef struct clipmod_engine clipmod_engine;

/* Limits and settings, with their defaults in one table (limits.c, clipmod(1)). */
typedef enum clipmod_setting {
    CLIPMOD_MAX_FILE_BYTES,      /* bigger inputs: unscanned, "too-large" */
    CLIPMOD_MAX_PIXELS,          /* width x height of one frame, from the header */
    CLIPMOD_MAX_SIDE,            /* largest width or height */
    CLIPMOD_MAX_FRAMES,          /* frames an animation may have at all */
    CLIPMOD_MAX_SCAN_MS,         /* time to decode one input; over it: "timeout" */
    CLIPMOD_TOP_PROMPTS,         /* prompts listed per category in results */
    CLIPMOD_FETCH_CONNECT_MS,    /* fetch mode: time to connect to a server */
    CLIPMOD_FETCH_TIMEOUT_MS,    /* fetch mode: time for a whole download, redirects included */
    CLIPMOD_FETCH_MAX_REDIRECTS, /* fetch mode: redirects followed, each one re-checked */
    CLIPMOD_FETCH_PARALLEL,      /* fetch mode: downloads at once */
    CLIPMOD_MAX_TOTAL_PIXELS,    /* pixels one input may cost to decode, all frames taken */
    CLIPMOD_MAX_CONTEXT_BYTES,   /* bytes of an input's context text read; the rest is cut */
    CLIPMOD_MAX_CONTEXT_WINDOWS, /* 77-token windows of context text scored; the rest is cut */
    CLIPMOD_SETTING__COUNT
} clipmod_setting;

/* The default of `s` (0 for an unknown setting). */
CLIPMOD_API uint64_t clipmod_setting_default(clipmod_setting s);

/* The setting's name as used in configuration files, e.g. "max-file-bytes". */
CLIPMOD_API const char *clipmod_setting_name(clipmod_setting s);

/*
 * A new engine for `model`, which is borrowed: it must outlive the engine. On
 * success *out is owned by the caller (free with clipmod_engine_free).
 */
CLIPMOD_API clipmod_error clipmod_engine_new(const clipmod_model *model, clipmod_engine **out);

/*
 * Take one more reference to `engine` and return it. Services that reload their
 * policy swap in a newly compiled engine; each request takes a reference to the
 * engine it started with (under the service's own lock) and frees it when done,
 * so the old engine lives until its last request ends. Thread-safe.
 */
CLIPMOD_API clipmod_engine *clipmod_engine_ref(clipmod_engine *engine);

/*
 * Release one reference (clipmod_engine_new gives the first); the last one frees
 * the engine. Accepts NULL. Thread-safe.
 */
CLIPMOD_API void clipmod_engine_free(clipmod_engine *engine);

/* Change a setting before clipmod_engine_compile(); CLIPMOD_E_INVALID_ARG after it. */
CLIPMOD_API clipmod_error clipmod_engine_set(clipmod_engine *engine, clipmod_setting s,
                                             uint64_t value);

/*
 * Directory for cached prompt embeddings (created if missing). NULL disables the
 * cache. The default is $XDG_CACHE_HOME/clipmod (or ~/.cache/clipmod).
 */
CLIPMOD_API clipmod_error clipmod_engine_set_cache_dir(clipmod_engine *engine, const char *dir);

/*
 * Read and validate the policy at `policy_path`, embed its prompts (from the cache
 * when it can) and make the engine ready. Every problem with the policy is reported
 * in *problems as "file:line:column: message" lines (a string the caller frees with
 * clipmod_free(); NULL when there are none), and CLIPMOD_E_POLICY is returned.
 * Warnings (e.g. a policy written for another model) come in *problems too, with
 * CLIPMOD_OK. `problems` may be NULL.
 */
CLIPMOD_API clipmod_error clipmod_engine_compile(clipmod_engine *engine, const char *policy_path,
                                                 char **problems);

/*
 * Validate a policy file without a model: everything clipmod_engine_compile()
 * checks except prompt lengths in tokens, which need the model's tokenizer.
 * Problems as in clipmod_engine_compile(); *summary (may be NULL) receives the
 * policy's JSON summary when it is valid (free both with clipmod_free()).
 */
CLIPMOD_API clipmod_error clipmod_policy_check(const char *path, char **problems, char **summary);

/* Free memory the library handed over (strings from *_to_json, problems). Accepts NULL. */
CLIPMOD_API void clipmod_free(void *p);

/* The outcome of scanning one input. */
typedef enum clipmod_state {
    CLIPMOD_STATE_CLEAN,    /* scanned; no category reached its threshold */
    CLIPMOD_STATE_FLAGGED,  /* scanned; at least one category did */
    CLIPMOD_STATE_UNSCANNED /* not scanned; clipmod_result_reason() says why */
} clipmod_state;

/* Actions, in order of severity. */
typedef enum clipmod_action {
    CLIPMOD_ACTION_ALLOW,
    CLIPMOD_ACTION_TAG,
    CLIPMOD_ACTION_FLAG,
    CLIPMOD_ACTION_QUARANTINE,
    CLIPMOD_ACTION_REJECT
} clipmod_action;

/* Why an input was not scanned. */
typedef enum clipmod_reason {
    CLIPMOD_REASON_NONE,
    CLIPMOD_REASON_TOO_LARGE,       /* over max-file-bytes */
    CLIPMOD_REASON_TOO_MANY_PIXELS, /* over max-pixels, max-side or max-total-pixels */
    CLIPMOD_REASON_TOO_MANY_FRAMES, /* over max-frames */
    CLIPMOD_REASON_DECODE_ERROR,    /* damaged, truncated or empty */
    CLIPMOD_REASON_UNSUPPORTED,     /* not an image format we read */
    CLIPMOD_REASON_BLOCKED,         /* a format blocked as unsafe (SVG, PDF ...) */
    CLIPMOD_REASON_TIMEOUT,         /* decoding took longer than max-scan-ms */
    CLIPMOD_REASON_IO_ERROR,        /* the file could not be read */
    CLIPMOD_REASON_BLOCKED_ADDRESS, /* fetch: the URL leads to a non-public address */
    CLIPMOD_REASON_HTTP_STATUS,     /* fetch: the server answered with an error status */
    CLIPMOD_REASON_NETWORK,         /* fetch: DNS, connection, TLS or protocol failure */
    CLIPMOD_REASON_BAD_URL,         /* fetch: not an http(s) URL, or malformed */
    CLIPMOD_REASON__COUNT
} clipmod_reason;

CLIPMOD_API const char *clipmod_state_name(clipmod_state s);   /* "clean", ... */
CLIPMOD_API const char *clipmod_action_name(clipmod_action a); /* "reject", ... */
CLIPMOD_API const char *clipmod_reason_name(clipmod_reason r); /* "too-large", ... */

typedef struct clipmod_result clipmod_result;

/*
 * Scan one file. A verdict is never an error: an undecodable or oversized image
 * gives CLIPMOD_OK and a result in state CLIPMOD_STATE_UNSCANNED. Errors are for
 * misuse and lack of memory. *out is owned by the caller (clipmod_result_free).
 */
CLIPMOD_API clipmod_error clipmod_scan_file(const clipmod_engine *engine, const char *path,
                                            clipmod_result **out);

/* Scan `len` bytes at `buf` (borrowed for the call); `name` labels the result. */
CLIPMOD_API clipmod_error clipmod_scan_memory(const clipmod_engine *engine, const void *buf,
                                              size_t len, const char *name, clipmod_result **out);

/*
 * One input of a batch: a file (`path`), or memory (`data`, `len`) labelled `name`.
 * Caller-owned, as are the strings and bytes it points to: the library borrows them
 * for the call only. Start every one from CLIPMOD_INPUT_INIT (it sets `size`, see
 * "the size rule" above; the other members are 0/NULL):
 *     clipmod_input in = CLIPMOD_INPUT_INIT;
 *     in.path = "photo.jpg";
 * or, with designated initialisers, `.size = sizeof(clipmod_input)`. The library
 * steps through an array by inputs[0].size, so every element of one array must have
 * the same size (all built with the same header).
 */
typedef struct clipmod_input {
    size_t size; /* sizeof(clipmod_input) */
    const char *path;
    const void *data;
    size_t len;
    const char *name;
    /* Added with context (clipmod-policy(5) CONTEXT), after the first layout: */
    const char *context; /* the text that came with the image (a caption, the message, the
                            file name): any bytes, cleaned and capped by the library
                            (max-context-bytes, max-context-windows); NULL: none */
    size_t context_len;  /* bytes at `context`; 0: up to its terminating NUL */
} clipmod_input;

/* The first published layout: every member up to name. */
#define CLIPMOD_INPUT_SIZE_V1 (offsetof(clipmod_input, name) + sizeof(const char *))
/* clang-format off */
#define CLIPMOD_INPUT_INIT {.size = sizeof(clipmod_input)}
/* clang-format on */

/*
 * Scan `n` inputs with one batched forward pass over all their frames. out[i]
 * receives input i's result (caller-owned). On error no result is returned; an
 * input whose size breaks the size rule gives CLIPMOD_E_INVALID_ARG, and
 * clipmod_invalid_arg_reason() names it.
 */
CLIPMOD_API clipmod_error clipmod_scan_batch(const clipmod_engine *engine,
                                             const clipmod_input *inputs, size_t n,
                                             clipmod_result **out);

/*
 * Fetch mode: download each of `n` http(s) URLs (several at once, under the
 * CLIPMOD_FETCH_* settings and max-file-bytes) and scan them as one batch. Every
 * connection, redirect hop included, goes only to a public address unless the
 * operator allowed it (clipmod_engine_allow_fetch). A URL that cannot be fetched
 * gives an "unscanned" result saying why; out[i] is URL i's result.
 */
CLIPMOD_API clipmod_error clipmod_scan_urls(const clipmod_engine *engine, const char *const *urls,
                                            size_t n, clipmod_result **out);

/*
 * As clipmod_scan_urls, within `total_ms` for the whole call (0: no such limit):
 * at that time every download still running is stopped and URLs not started are
 * not fetched, each unscanned with reason "timeout"; what arrived is scanned. For
 * services that answer by a deadline, so that no download outlives its request.
 */
CLIPMOD_API clipmod_error clipmod_scan_urls_within(const clipmod_engine *engine,
                                                   const char *const *urls, size_t n,
                                                   uint64_t total_ms, clipmod_result **out);

/*
 * As clipmod_scan_urls_within, with context: contexts[i] (NUL-terminated; the array
 * and any entry may be NULL) is the text that came with URL i, as clipmod_input's
 * `context`. The strings are borrowed for the call.
 */
CLIPMOD_API clipmod_error clipmod_scan_urls_context(const clipmod_engine *engine,
                                                    const char *const *urls,
                                                    const char *const *contexts, size_t n,
                                                    uint64_t total_ms, clipmod_result **out);

/*
 * Open fetch mode to a network or host the SSRF guard refuses by default: a CIDR
 * ("10.1.0.0/16", "127.0.0.1/32", "::1/128") or a host name ("images.internal").
 * Call before compile; repeatable.
 */
CLIPMOD_API clipmod_error clipmod_engine_allow_fetch(clipmod_engine *engine, const char *what);

/* Free a result. Accepts NULL. */
CLIPMOD_API void clipmod_result_free(clipmod_result *r);

CLIPMOD_API clipmod_state clipmod_result_state(const clipmod_result *r);
/* The action of the most severe flagged category; ALLOW when clean or unscanned. */
CLIPMOD_API clipmod_action clipmod_result_action(const clipmod_result *r);
/* The input's path or name. */
CLIPMOD_API const char *clipmod_result_name(const clipmod_result *r);
CLIPMOD_API clipmod_reason clipmod_result_reason(const clipmod_result *r);
/* A sentence explaining the reason (e.g. libvips' message); "" when scanned. */
CLIPMOD_API const char *clipmod_result_reason_text(const clipmod_result *r);
/*
 * The sentence for the sender or uploader: the deciding category's message, else
 * the policy's message for the action. "" when unscanned.
 */
CLIPMOD_API const char *clipmod_result_message(const clipmod_result *r);
/* The id of the category that decided the action, or NULL. */
CLIPMOD_API const char *clipmod_result_top_category(const clipmod_result *r);

/*
 * One category's score in a result, filled by clipmod_result_category() into a
 * caller-owned structure whose `size` the caller set first (CLIPMOD_CATEGORY_SCORE_INIT;
 * see "the size rule" above). Its strings are owned by the result: valid until
 * clipmod_result_free().
 */
typedef struct clipmod_category_score {
    size_t size; /* sizeof(clipmod_category_score), set by the caller */
    const char *id;
    double score;          /* in [0, 1]: see clipmod-policy(5) */
    double threshold;      /* from the policy */
    double margin;         /* score - threshold: >= 0 means flagged */
    double cosine;         /* raw: best cosine of the image with the category's prompts */
    int flagged;           /* score >= threshold, and the action is not ALLOW */
    clipmod_action action; /* the category's action in the policy */
    /* Added with learned heads (clipmod-policy(5) "score"), after the first layout: */
    double prompt_score;  /* the prompts' score, on the deciding frame's image */
    double head_score;    /* the learned head's probability; -1 without a head */
    const char *score_by; /* what `score` is: "prompts", "head" or "mean" */
    /* Added with context (clipmod-policy(5) CONTEXT), after the learned-heads layout: */
    double image_score;         /* the image's own score; `score` is this raised by context */
    double context_score;       /* the context text's score; -1: the category does not use
                                   context, or the input had none */
    const char *context_window; /* the part of the cleaned text that scored highest, or NULL */
    const char *context_prompt; /* the category's context prompt nearest to it, or NULL */
    const char *flagged_by;     /* when flagged: "image" (the image alone reached the
                                   threshold), "image+context" (the text raised it over), or
                                   "context" (the text reached the context threshold, modes
                                   alone and both); NULL when not flagged */
} clipmod_category_score;

/* The first published layout: every member up to action. */
#define CLIPMOD_CATEGORY_SCORE_SIZE_V1                                                             \
    (offsetof(clipmod_category_score, action) + sizeof(clipmod_action))
/* The learned-heads layout: every member up to score_by. */
#define CLIPMOD_CATEGORY_SCORE_SIZE_V2                                                             \
    (offsetof(clipmod_category_score, score_by) + sizeof(const char *))
/* clang-format off */
#define CLIPMOD_CATEGORY_SCORE_INIT {.size = sizeof(clipmod_category_score)}
/* clang-format on */

CLIPMOD_API size_t clipmod_result_category_count(const clipmod_result *r);
/*
 * Category i (0-based, in policy order) into the caller-owned *out, of out->size
 * bytes. CLIPMOD_E_INVALID_ARG if i is out of range or out->size breaks the size rule
 * (clipmod_invalid_arg_reason() says which); *out is then untouched.
 */
CLIPMOD_API clipmod_error clipmod_result_category(const clipmod_result *r, size_t i,
                                                  clipmod_category_score *out);

/*
 * The JSON form of a result, one line, the stable schema documented in clipmod(1)
 * and used by every integration. With `explain` non-zero it lists every prompt's
 * probability and cosine. The caller frees the string with clipmod_free().
 */
CLIPMOD_API char *clipmod_result_to_json(const clipmod_result *r, int explain);

/*
 * A result's whole state as text, for a verdict cache (clipmodd, clipmod-milter): a
 * JSON object of the record format "clipmod-result/1" with every number at full
 * precision, so that clipmod_result_decode() gives back a result whose accessors and
 * clipmod_result_to_json() answer exactly as the original's (its name aside). Not
 * the documented schema of clipmod_result_to_json. Writes the text's length into
 * *len (may be NULL); free with clipmod_free(). NULL when out of memory or when a
 * number is not finite.
 */
CLIPMOD_API char *clipmod_result_encode(const clipmod_result *r, size_t *len);

/*
 * Rebuild a result from `len` bytes of clipmod_result_encode() text, named `name`
 * (copied; NULL: ""). The text is untrusted (it may come back from a shared cache):
 * anything that is not a well-formed record of this version, with values in range,
 * is refused with CLIPMOD_E_INVALID_ARG and a sentence in errbuf (may be NULL);
 * CLIPMOD_E_NOMEM when out of memory. *out is set only on success.
 */
CLIPMOD_API clipmod_error clipmod_result_decode(const char *text, size_t len, const char *name,
                                                clipmod_result **out, char *errbuf);

/*
 * What became of an input's context text, filled by clipmod_result_context() into a
 * caller-owned structure whose `size` the caller set first (CLIPMOD_CONTEXT_INFO_INIT).
 */
typedef struct clipmod_context_info {
    size_t size;          /* sizeof(clipmod_context_info), set by the caller */
    int present;          /* the input had context text (even if nothing of it was usable) */
    size_t bytes;         /* bytes given */
    size_t bytes_used;    /* bytes of cleaned text scored */
    size_t windows;       /* 77-token windows scored */
    size_t windows_total; /* windows the cleaned text made before max-context-windows */
    int cut;              /* bytes or windows were left out by the limits */
    unsigned cleaned;     /* CLIPMOD_CONTEXT_* bits: what cleaning changed */
} clipmod_context_info;
/* clang-format off */
#define CLIPMOD_CONTEXT_INFO_INIT {.size = sizeof(clipmod_context_info)}
/* clang-format on */
#define CLIPMOD_CONTEXT_INVALID_UTF8 1u /* invalid UTF-8 sequences replaced by U+FFFD */
#define CLIPMOD_CONTEXT_CONTROL      2u /* NUL and control characters turned into spaces */
#define CLIPMOD_CONTEXT_INVISIBLE    4u /* bidirectional marks and zero-width characters dropped */

/* The result's context into *out (out->size by the size rule); CLIPMOD_E_INVALID_ARG else. */
CLIPMOD_API clipmod_error clipmod_result_context(const clipmod_result *r,
                                                 clipmod_context_info *out);

/* ------------------------------------------------------------------------ */
/* Learned category heads                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A head scores one category from the image embedding alone: a logistic
 * regression on the L2-normalised embedding, z = weights . e + bias, turned into a
 * probability by a fitted calibration, 1 / (1 + exp(-(cal_slope * z + cal_offset))).
 * `clipmod head train` fits it; a policy names the file (`head:`) and says how it
 * combines with the prompts (`score:`). The file format is in clipmod-policy(5).
 * The spec is the caller's (the size rule above; CLIPMOD_HEAD_SPEC_INIT).
 */
typedef struct clipmod_head_spec {
    size_t size;          /* sizeof(clipmod_head_spec), set by the caller */
    const char *category; /* the policy category id it scores */
    size_t dim;           /* clipmod_model_embed_dim() of the model */
    const float *weights; /* [dim] */
    double bias, cal_slope, cal_offset;
    size_t n_train, n_positive;             /* training images; positives among them */
    const unsigned char *train_digests;     /* n_train x 8 bytes: SHA-256 prefixes of the
                                               training images' bytes, or NULL */
    int folds;                              /* cross-validation folds used to choose c */
    double c;                               /* inverse regularisation strength */
    double cv_auc, cv_precision, cv_recall; /* out-of-fold, at probability 0.5 */
    double prompts_auc;                     /* prompts-only ROC AUC on the same images */
} clipmod_head_spec;

#define CLIPMOD_HEAD_SPEC_SIZE_V1 (offsetof(clipmod_head_spec, prompts_auc) + sizeof(double))
/* clang-format off */
#define CLIPMOD_HEAD_SPEC_INIT {.size = sizeof(clipmod_head_spec)}
/* clang-format on */

/*
 * Write a head for `model` to `path`, bound to the model's fingerprint, its
 * embedding size and spec->category. The file is written beside `path` and renamed
 * over it, so a failure leaves no partial file. CLIPMOD_E_INVALID_ARG (a spec that
 * breaks the size rule, a dimension that is not the model's, weights or calibration
 * that are not finite numbers, a slope that is not positive), CLIPMOD_E_IO, _NOMEM;
 * errbuf (CLIPMOD_ERROR_SIZE bytes, may be NULL) says why.
 */
CLIPMOD_API clipmod_error clipmod_head_write(const clipmod_model *model, const char *path,
                                             const clipmod_head_spec *spec, char *errbuf);

/* ------------------------------------------------------------------------ */
/* What integrations need from the compiled policy                          */
/* ------------------------------------------------------------------------ */

/* The policy's name and version string ("name" key; the file name if absent). */
CLIPMOD_API const char *clipmod_engine_policy_name(const clipmod_engine *engine);
/* The compiled policy's fingerprint: 64 lowercase hex digits, the SHA-256 over the
 * source bytes of the policy file and every file it includes (reading order, each
 * framed by base name and length), taken when the engine compiled; "" before.
 * Owned by the engine. Print it in verdicts and logs to name the policy exactly. */
CLIPMOD_API const char *clipmod_engine_policy_fingerprint(const clipmod_engine *engine);

/*
 * A JSON summary of the active policy (name, model, categories with thresholds and
 * actions, prompt counts, settings), for `clipmod policy check` and GET /v1/policy.
 * The caller frees it with clipmod_free().
 */
CLIPMOD_API char *clipmod_engine_policy_json(const clipmod_engine *engine);

/* The policy's SMTP reply for `a`, e.g. "550 5.7.1 Image content not accepted". */
CLIPMOD_API const char *clipmod_engine_smtp_reply(const clipmod_engine *engine, clipmod_action a);

/* The policy's HTTP status for `a`, e.g. 403. */
CLIPMOD_API int clipmod_engine_http_status(const clipmod_engine *engine, clipmod_action a);

/* The policy's sentence for users for `a`. */
CLIPMOD_API const char *clipmod_engine_action_message(const clipmod_engine *engine,
                                                      clipmod_action a);

/* ------------------------------------------------------------------------ */
/* Plugins (see clipmod/plugin.h for writing one)                           */
/* ------------------------------------------------------------------------ */

/*
 * Load the operator plugin at `path` (a shared object exporting clipmod_plugin_v1)
 * with its configuration string `config` (may be NULL), before compile. Plugins see
 * every result in load order and may change it. Errors name the file and symbol.
 */
CLIPMOD_API clipmod_error clipmod_engine_load_plugin(clipmod_engine *engine, const char *path,
                                                     const char *config, char *errbuf);

/*
 * For plugins: change the verdict of `r` to `action` (ALLOW makes it clean), noting
 * who did it and why; the note appears in the JSON under "notes".
 */
CLIPMOD_API clipmod_error clipmod_result_override(clipmod_result *r, clipmod_action action,
                                                  const char *by, const char *why);

/* For plugins: attach a note (e.g. where a quarantined copy went) to the result. */
CLIPMOD_API clipmod_error clipmod_result_add_note(clipmod_result *r, const char *by,
                                                  const char *text);

/* ------------------------------------------------------------------------ */
/* Policy tuning (clipmod policy evaluate): scoring a labelled set many     */
/* times from its embeddings, with the scanner's own formula                */
/* ------------------------------------------------------------------------ */

/*
 * What if: change one value of the policy without editing its file, before compile.
 * `assignment` is "CATEGORY.threshold=NUMBER" or "CATEGORY.action=ACTION"; later ones
 * win. The key and value are checked here (errbuf says why not); a category the
 * policy does not have is a compile problem. Repeatable.
 */
CLIPMOD_API clipmod_error clipmod_engine_override(clipmod_engine *engine, const char *assignment,
                                                  char *errbuf);

/* What a candidate prompt is to its category. */
typedef enum clipmod_prompt_kind {
    CLIPMOD_PROMPT_CATEGORY, /* one of the category's prompts */
    CLIPMOD_PROMPT_CONTRAST, /* one of its contrast prompts */
    CLIPMOD_PROMPT_NEUTRAL   /* a neutral prompt of the policy */
} clipmod_prompt_kind;

/* A category of a compiled engine; strings are owned by the engine. */
typedef struct clipmod_category_info {
    const char *id;
    double threshold; /* in effect (after clipmod_engine_override) */
    clipmod_action action;
    const char *threshold_file; /* where the policy writes the threshold ... */
    int threshold_line;         /* ... 1-based line and column of its value */
    int threshold_column;
    size_t n_candidates; /* own prompts first, then contrast, then neutral */
} clipmod_category_info;

/* Categories of the compiled policy, in policy order (0 before compile). */
CLIPMOD_API size_t clipmod_engine_category_count(const clipmod_engine *engine);
CLIPMOD_API clipmod_error clipmod_engine_category_info(const clipmod_engine *engine, size_t c,
                                                       clipmod_category_info *out);
/* Candidate j of category c: its row in the prompt table and its kind. */
CLIPMOD_API clipmod_error clipmod_engine_candidate(const clipmod_engine *engine, size_t c, size_t j,
                                                   size_t *row, clipmod_prompt_kind *kind);
/*
 * The index of category `id`, or -1; then *near (may be NULL) receives a category id
 * `id` is a plausible typo of, or NULL.
 */
CLIPMOD_API long clipmod_engine_category_find(const clipmod_engine *engine, const char *id,
                                              const char **near);
/* The distinct prompt texts (before templates) every score is computed from. */
CLIPMOD_API size_t clipmod_engine_prompt_count(const clipmod_engine *engine);
CLIPMOD_API const char *clipmod_engine_prompt_text(const clipmod_engine *engine, size_t row);

/*
 * Decode `n` inputs exactly as clipmod_scan_batch would (limits, sampled frames) and
 * embed their frames in one pass. For input i, either emb[i] receives frames[i] x
 * clipmod_model_embed_dim() floats (free with clipmod_free) and unscanned[i] is NULL,
 * or unscanned[i] is an "unscanned" result saying why (free with clipmod_result_free).
 */
CLIPMOD_API clipmod_error clipmod_engine_embed_inputs(const clipmod_engine *engine,
                                                      const clipmod_input *inputs, size_t n,
                                                      float **emb, int *frames,
                                                      clipmod_result **unscanned);
/*
 * Image-embedding cache: the embeddings of every input's sampled frames kept on disk
 * between runs, keyed by the SHA-256 of the decode options and the input's bytes, in
 * one file per model ("<fingerprint>.img") in `dir` (NULL: the prompt cache's default,
 * $XDG_CACHE_HOME/clipmod or ~/.cache/clipmod; the same directory checks apply).
 * `max_bytes` caps the file (0: CLIPMOD_IMAGE_CACHE_DEFAULT; at least
 * CLIPMOD_IMAGE_CACHE_MIN); when full, the oldest records are dropped. Damaged, foreign
 * or implausible records are never used: they are recomputed and the file rewritten,
 * and clipmod_image_cache_warning() says so. Only clipmod_engine_embed_inputs_cached
 * uses it (policy evaluate); scans never do. Not thread-safe.
 */
#define CLIPMOD_IMAGE_CACHE_DEFAULT (64ull << 20)
#define CLIPMOD_IMAGE_CACHE_MIN     4096ull
typedef struct clipmod_image_cache clipmod_image_cache;
CLIPMOD_API clipmod_error clipmod_image_cache_open(const clipmod_model *model, const char *dir,
                                                   uint64_t max_bytes, clipmod_image_cache **out);
/* clipmod_engine_embed_inputs through `cache` (may be NULL): inputs found there are
 * not decoded; the others are, and are remembered unless they could not be scanned.
 * The image tower's results depend in their last bits on the batch, so when any input
 * of the call must be embedded all are (the hits then count as misses): the results
 * are exactly those of the same call without the cache. */
CLIPMOD_API clipmod_error clipmod_engine_embed_inputs_cached(const clipmod_engine *engine,
                                                             clipmod_image_cache *cache,
                                                             const clipmod_input *inputs, size_t n,
                                                             float **emb, int *frames,
                                                             clipmod_result **unscanned);
/* Write the file if anything was added (a new O_EXCL file renamed over the old). */
CLIPMOD_API clipmod_error clipmod_image_cache_save(clipmod_image_cache *cache);
/* Inputs found in the cache and inputs embedded since open. */
CLIPMOD_API void clipmod_image_cache_counts(const clipmod_image_cache *cache, size_t *hits,
                                            size_t *misses);
/* One sentence when the cache is not used or records were rejected, else NULL. */
CLIPMOD_API const char *clipmod_image_cache_warning(const clipmod_image_cache *cache);
/* Accepts NULL. */
CLIPMOD_API void clipmod_image_cache_free(clipmod_image_cache *cache);

/* Cosines of `frames` embeddings with every prompt: frames x prompt_count floats. */
CLIPMOD_API clipmod_error clipmod_engine_cosines(const clipmod_engine *engine, const float *emb,
                                                 int frames, float *cos);
/*
 * Every category's score (as a scan gives it) from the cosines of an input's frames;
 * `skip` (may be NULL) has one byte per prompt row: non-zero leaves that prompt out
 * (a category whose own prompts are all left out scores 0).
 */
CLIPMOD_API clipmod_error clipmod_engine_score_cosines(const clipmod_engine *engine,
                                                       const float *cos, int frames,
                                                       const unsigned char *skip, double *scores);
/* The same for category c alone. */
CLIPMOD_API clipmod_error clipmod_engine_score_category(const clipmod_engine *engine, size_t c,
                                                        const float *cos, int frames,
                                                        const unsigned char *skip, double *score);
/*
 * With learned heads (clipmod-policy(5), `head:`), the prompts alone are not the
 * score. From an input's frames' embeddings `emb` (frames x dim, as
 * clipmod_engine_embed_inputs gives them) and cosines `cos`: every category's score
 * as the scanner gives it (`scores`), its prompts' score (`prompt_scores`, may be
 * NULL) and its head's probability (`head_scores`, may be NULL; -1 for a category
 * without a head), each combined over the frames by the policy's rule.
 */
CLIPMOD_API clipmod_error clipmod_engine_score_frames(const clipmod_engine *engine,
                                                      const float *emb, const float *cos,
                                                      int frames, double *scores,
                                                      double *prompt_scores, double *head_scores);
/*
 * Whether an image trained category c's head: `digest` is the SHA-256 of its bytes,
 * matched on the 8 bytes the head records. 1 yes, 0 no (or the head does not record
 * its training images), -1 the category has no head (or c is out of range).
 */
CLIPMOD_API int clipmod_engine_head_trained_on(const clipmod_engine *engine, size_t c,
                                               const unsigned char digest[32]);
/*
 * Context (clipmod-policy(5) CONTEXT) for tuning tools: every category's score of
 * `text` (len bytes; 0: up to its NUL), cleaned and windowed as a scan does, into
 * text_scores (one per category; -1 for a category without `context:`).
 */
CLIPMOD_API clipmod_error clipmod_engine_context_scores(const clipmod_engine *engine,
                                                        const char *text, size_t len,
                                                        double *text_scores);
/*
 * The verdict the scanner gives for image scores `scores` and context scores
 * `text_scores` (may be NULL: no context): `combined` (may be NULL) receives each
 * category's score after context, as clipmod_category_score's `score`, and `hits`
 * (may be NULL) whether each category is hit (its combined score reaches its
 * threshold, or in modes alone and both its text reaches the context threshold;
 * whatever its action, as the JSON's "hit").
 */
CLIPMOD_API clipmod_error clipmod_engine_verdict_context(
    const clipmod_engine *engine, const double *scores, const double *text_scores, double *combined,
    unsigned char *hits, clipmod_state *state, clipmod_action *action, long *top);

/* The verdict the scanner gives for these scores; *top = deciding category or -1. */
CLIPMOD_API clipmod_error clipmod_engine_verdict(const clipmod_engine *engine, const double *scores,
                                                 clipmod_state *state, clipmod_action *action,
                                                 long *top);

#ifdef __cplusplus
}
#endif

#endif /* CLIPMOD_H */
