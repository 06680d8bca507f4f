/*
 * head_data.h - the training rows of clipmod head train, from a labelled set.
 *
 * Owns turning an embedded labelled set into rows: each scanned image's first
 * sampled frame, the SHA-256 of its bytes (recorded in the head so `policy
 * evaluate` knows which images trained it), duplicates found by that digest (the
 * same bytes under different labels is an error; under the same labels it counts
 * once), and per category the 0/1 targets and the prompts' scores on those rows.
 */
#ifndef CLIPMOD_CLI_HEAD_DATA_H
#define CLIPMOD_CLI_HEAD_DATA_H

#include <stddef.h>

#include "evaluate.h"

typedef struct head_rows {
    size_t n, dim, n_dups;
    float *x;               /* n x dim: first frame of each kept image */
    unsigned char *digests; /* n x 8: SHA-256 prefixes */
    size_t *image;          /* n: index into the evaluation's images */
} head_rows;

/* Build the rows from an embedded evaluation (ev->keep_emb); 0, or -1 with the
 * problem printed (conflicting duplicates are listed, up to 10). */
int head_rows_build(const evaluation *ev, head_rows *r);

/* Category c's targets (1: labelled c) and prompt scores, into arrays of r->n. */
void head_rows_column(const evaluation *ev, const head_rows *r, size_t c, unsigned char *y,
                      double *prompt_scores);

void head_rows_free(head_rows *r);

/* SHA-256 of a file's bytes, streamed; 0 or -1. */
int head_digest_file(const char *path, unsigned char out[32]);

#endif
