/*
 * encoder.c - the CLIP transformer block, applied layer after layer.
 *
 * Each block is h += out_proj(MHA(LN1(h))); h += fc2(act(fc1(LN2(h)))), as in
 * Hugging Face's CLIPEncoderLayer and OpenAI's ResidualAttentionBlock.
 */
#include <stdlib.h>

#include "common.h"
#include "encoder.h"
#include "ops.h"
#include "qgemm.h"

/* Linear layer `which` (0 qkv, 1 out, 2 fc1, 3 fc2) of block b: int8/bf16 when the
 * block was converted at load (quant.c), else fp32. */
static clipmod_error linear(const cm_block *b, int which, const float *x, int m, int in,
                            const float *w, const float *bias, int out, int accumulate, float *y)
{
    if (b->q)
        return cm_qgemm(&b->q[which], x, m, bias, accumulate, y);
    cm_linear_w(x, m, in, w, b->packed, bias, out, accumulate, y);
    return CLIPMOD_OK;
}

clipmod_error cm_encoder_forward(const cm_block *blocks, const cm_tower_config *tc,
                                 const cm_packed *seq, int causal, float *h)
{
    const int m = seq->rows, d = tc->width, f = tc->mlp;
    float *x = cm_alloc((size_t)m * d * sizeof *x);
    float *qkv = cm_alloc((size_t)m * 3 * d * sizeof *qkv);
    float *mlp = cm_alloc((size_t)m * f * sizeof *mlp);
    /* One t*t slice per head: attention runs its heads in parallel. */
    float *scores = cm_alloc((size_t)tc->heads * seq->max_len * seq->max_len * sizeof *scores);
    clipmod_error rc = CLIPMOD_OK;

    if (!x || !qkv || !mlp || !scores) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    for (int l = 0; l < tc->layers; l++) {
        const cm_block *b = &blocks[l];
        cm_layernorm(h, m, d, b->ln1_w, b->ln1_b, tc->eps, x);
        if ((rc = linear(b, 0, x, m, d, b->qkv_w, b->qkv_b, 3 * d, 0, qkv)))
            goto out;
        cm_attention_seqs(qkv, seq->start, seq->len, seq->count, seq->max_len, d, tc->heads, causal,
                          scores, x);
        if ((rc = linear(b, 1, x, m, d, b->out_w, b->out_b, d, 1, h)))
            goto out;
        cm_layernorm(h, m, d, b->ln2_w, b->ln2_b, tc->eps, x);
        if ((rc = linear(b, 2, x, m, d, b->fc1_w, b->fc1_b, f, 0, mlp)))
            goto out;
        cm_activate(mlp, (size_t)m * f, tc->act);
        if ((rc = linear(b, 3, mlp, m, f, b->fc2_w, b->fc2_b, d, 1, h)))
            goto out;
    }
out:
    cm_free(x);
    cm_free(qkv);
    cm_free(mlp);
    cm_free(scores);
    return rc;
}
