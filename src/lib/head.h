/*
 * head.h - learned category heads (internal): reading, checking and scoring.
 *
 * A head is a logistic regression on the L2-normalised image embedding, trained
 * by `clipmod head train` on a moderator's labelled images and stored as a small
 * safetensors file (format in clipmod-policy(5), "LEARNED HEADS"). The policy
 * loader reads the file's bytes (they are part of the policy fingerprint); the
 * engine parses and checks them against its model when it compiles.
 */
#ifndef CM_HEAD_H
#define CM_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"

/* Heads are a few KiB (weights) plus 8 bytes per training image. */
#define CM_HEAD_MAX_BYTES (4u << 20)
#define CM_HEAD_MAX_DIM   4096

typedef struct cm_head {
    size_t dim;
    float *w; /* [dim] */
    double bias, cal_slope, cal_offset;
    const unsigned char *digests; /* n_train x 8 bytes; NULL when not recorded */
    size_t n_train, n_positive;
    double cv_auc;
    char model[17];     /* the model fingerprint it was trained for, 16 hex digits */
    char category[65];  /* the category id it was trained for */
    unsigned char *buf; /* private: the file's bytes (digests point into them) */
} cm_head;

/*
 * Parse and check the head file in buf (len bytes; `name` names it in messages).
 * `dim` (0: not checked), `model_fp` (NULL: not checked) and `category` (NULL: not
 * checked) are what it must have been trained for. The bytes are copied. Errors:
 * CLIPMOD_E_MODEL_FORMAT with a sentence naming the file and what differs, _NOMEM.
 */
clipmod_error cm_head_parse(const void *buf, size_t len, const char *name, size_t dim,
                            const char *model_fp, const char *category, cm_head **out,
                            char *errbuf);

/* The head's calibrated probability for one L2-normalised embedding of its dim. */
double cm_head_score(const cm_head *h, const float *emb);

/* 1 when the first 8 bytes of SHA-256 `digest` are among the head's training images. */
int cm_head_trained_on(const cm_head *h, const unsigned char digest[8]);

/* The 16-hex-digit fingerprint heads are bound to (the model's weights file). */
void cm_head_model_fp(const clipmod_model *model, char out[17]);

void cm_head_free(cm_head *h); /* accepts NULL */

#endif
