/*
 * tokenizer.h - CLIP's byte-level BPE tokenizer (internal).
 *
 * Owns the text side of the model's input: cleaning, splitting, byte-to-unicode
 * mapping and BPE over a merges list. The vocabulary is derived from the merges
 * (256 byte symbols, the same with "</w>", one per merge, then SOT and EOT), so a
 * model's own small merges file works exactly like OpenAI's.
 * The ids equal those of OpenAI's simple_tokenizer.py with ftfy.fix_text replaced by
 * "ftfy-lite" (NFC, then curly quotes U+2018..201F to ' and "), as computed by
 * Python 3.11 with the `regex` module (tests/reference/tokenizer_ref.py).
 * A cm_tokenizer is immutable after cm_tokenizer_load() and may be shared by threads.
 */
#ifndef CM_TOKENIZER_H
#define CM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"

typedef struct cm_tokenizer cm_tokenizer;

/*
 * Read merges from `path`: either a HF merges.txt ("#version" header line, then
 * "a b" per line) or OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip, same format).
 * The first line must contain "#version"; only the lines needed are read.
 * Exactly `n_merges` merges are used (the model's vocabulary size minus 514, at
 * least 1); a file with fewer is an error. On success *out owns the tokenizer; free
 * it with cm_tokenizer_free(). On failure *out is NULL and a message naming the file
 * (and line) goes to errbuf (CLIPMOD_ERROR_SIZE bytes, may be NULL): CLIPMOD_E_IO if
 * it cannot be opened or read, CLIPMOD_E_TOKENIZER if it is malformed, too short or
 * damaged gzip, CLIPMOD_E_INVALID_ARG for bad arguments.
 */
clipmod_error cm_tokenizer_load(const char *path, size_t n_merges, cm_tokenizer **out,
                                char *errbuf);

/* Accepts NULL. */
void cm_tokenizer_free(cm_tokenizer *tok);

/* Ids of the special tokens: SOT = 512 + n_merges, EOT = SOT + 1. */
int32_t cm_tokenizer_sot(const cm_tokenizer *tok);
int32_t cm_tokenizer_eot(const cm_tokenizer *tok);

/*
 * Encode UTF-8 `text` (len bytes, need not be NUL-terminated; NUL is an ordinary
 * character; NULL if len is 0) as SOT, tokens, EOT into ids[0..ctx), ctx >= 2. If
 * the sequence is longer than ctx, the first ctx ids are kept, the last is forced to
 * EOT and *truncated is set to 1 (else 0; truncated may be NULL). *n_ids receives the
 * number of ids written (2..ctx); nothing is padded. Invalid UTF-8 (overlong forms,
 * surrogates and values past U+10FFFF included) is an error (CLIPMOD_E_INVALID_ARG).
 * Thread-safe on a shared tokenizer; allocates scratch memory per call.
 */
clipmod_error cm_tokenizer_encode(const cm_tokenizer *tok, const char *text, size_t len,
                                  int32_t *ids, size_t ctx, size_t *n_ids, int *truncated,
                                  char *errbuf);

#endif
