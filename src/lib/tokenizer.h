/*
 * tokenizer.h - CLIP's byte-level BPE tokenizer (internal).
 *
 * Owns the text side of the model's input: cleaning, splitting, byte-to-unicode
 * mapping and BPE over a merges list. The vocabulary is derived from the merges
 * (256 byte symbols, the same with "</w>", one per merge, then SOT and EOT), so a
 * model's own small merges file works exactly like OpenAI's.
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
 * Exactly `n_merges` merges are used (the model's vocabulary size minus 514); a file
 * with fewer is an error. On success *out owns the tokenizer; free it with
 * cm_tokenizer_free(). On failure a message naming the file and line goes to errbuf
 * (CLIPMOD_ERROR_SIZE bytes, may be NULL).
 */
clipmod_error cm_tokenizer_load(const char *path, size_t n_merges, cm_tokenizer **out,
                                char *errbuf);

/* Accepts NULL. */
void cm_tokenizer_free(cm_tokenizer *tok);

/* Ids of the special tokens: SOT = 512 + n_merges, EOT = SOT + 1. */
int32_t cm_tokenizer_sot(const cm_tokenizer *tok);
int32_t cm_tokenizer_eot(const cm_tokenizer *tok);

/*
 * Encode UTF-8 `text` (len bytes, need not be NUL-terminated) as SOT, tokens, EOT
 * into ids[0..ctx). If the sequence is longer than ctx, the first ctx ids are kept,
 * the last is forced to EOT and *truncated is set to 1 (else 0). *n_ids receives the
 * number of ids written (2..ctx). Invalid UTF-8 is an error (CLIPMOD_E_INVALID_ARG).
 * Thread-safe on a shared tokenizer.
 */
clipmod_error cm_tokenizer_encode(const cm_tokenizer *tok, const char *text, size_t len,
                                  int32_t *ids, size_t ctx, size_t *n_ids, int *truncated,
                                  char *errbuf);

#endif
