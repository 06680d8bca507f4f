/*
 * context.h - the text that comes with an image, made safe and cut into windows
 * (internal).
 *
 * Owns the untrusted side of context-aware moderation (clipmod-policy(5) CONTEXT):
 * whatever bytes a caller passes as an input's context (a mail body, a caption, a
 * file name) are capped, turned into valid UTF-8 without control or invisible
 * characters, and split at spaces into windows that fit the text tower (75 tokens
 * between the start and end tokens). Scoring the windows is ctxscore.c's job.
 */
#ifndef CM_CONTEXT_H
#define CM_CONTEXT_H

#include <stddef.h>

#include "tokenizer.h"

/* Tokens of a window between the start and end tokens. */
#define CM_CTX_WINDOW_TOKENS (CLIPMOD_CONTEXT_LENGTH - 2)

typedef struct cm_ctx_window {
    size_t start, len; /* bytes of cm_ctx_text.text */
} cm_ctx_window;

typedef struct cm_ctx_text {
    char *text;         /* the cleaned text, NUL-terminated (cm_alloc'd) */
    size_t len;         /* its bytes */
    size_t bytes;       /* bytes given */
    unsigned cleaned;   /* CLIPMOD_CONTEXT_* bits */
    int cut;            /* bytes (max_bytes) or windows (max_windows) were left out */
    cm_ctx_window *win; /* the windows kept, in text order (cm_alloc'd) */
    size_t n_windows;
    size_t windows_total; /* windows the whole cleaned text made */
} cm_ctx_text;

/*
 * Clean at most `max_bytes` of `in` (len bytes, any content) and cut the result into
 * windows with `tok`, keeping the first `max_windows`. Invalid UTF-8 becomes U+FFFD
 * (one per run), NUL and other control characters spaces, bidirectional and
 * zero-width characters are dropped, runs of white space become one space (one line
 * break when they hold one: a window never spans a line break). On
 * success *out owns its buffers (cm_ctx_text_free); an input that cleans to nothing
 * gives 0 windows. CLIPMOD_E_NOMEM, or CLIPMOD_E_INVALID_ARG for bad arguments.
 */
clipmod_error cm_ctx_prepare(const cm_tokenizer *tok, const char *in, size_t len, size_t max_bytes,
                             size_t max_windows, cm_ctx_text *out);

/* Free what cm_ctx_prepare() allocated in *t (not t itself). Accepts NULL. */
void cm_ctx_text_free(cm_ctx_text *t);

/*
 * Clean only (no windows): the same rules into a new NUL-terminated buffer *out
 * (cm_alloc'd), its length in *out_len, what changed in *cleaned, and whether
 * `max_bytes` cut it in *cut. For fuzzing and for callers that show the text.
 */
clipmod_error cm_ctx_clean(const char *in, size_t len, size_t max_bytes, char **out,
                           size_t *out_len, unsigned *cleaned, int *cut);

#endif
