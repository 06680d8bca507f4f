/*
 * encoder.c - the CLIP transformer block, applied layer after layer.
 *
 * Each block is h += out_proj(MHA(LN1(h))); h += fc2(act(fc1(LN2(h)))), as in
 * Hugging Face's CLIPEncoderLayer and OpenAI's ResidualAttentionBlock. When the
 * caller reads only one row per sequence afterwards (the pooled row: CLS for
 * images, EOT for text), the last block still attends over every key and value
 * but computes queries, out_proj and the MLP for those rows only: every row is
 * independent of the others after attention, so the pooled rows are unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "encoder.h"
#include "ops.h"
#include "qgemm.h"
#include "scratch.h"

/* Linear layer `which` (0 qkv, 1 out, 2 fc1, 3 fc2) of block b: int8/bf16 when the
 * block was converted at load (quant.c), else fp32. */
static clipmod_error linear(const cm_block *b, int which, const float *x, int m, int in,
                            const float *w, const float *bias, int out, int accumulate, float *y)
{
    if (b->q)
        return cm_qgemm(&b->q[which], x, m, bias, accumulate, CM_GEMM_ACT_NONE, y);
    cm_linear_w(x, m, in, w, b->packed, bias, out, accumulate, y);
    return CLIPMOD_OK;
}

typedef struct scratch {
    float *x, *qkv, *mlp, *attn, *pooled;
} scratch;

/* fc1 and the activation, fused into the kernels' store at every precision. */
static clipmod_error fc1_act(const cm_block *b, const cm_tower_config *tc, int m, scratch *s)
{
    const int d = tc->width, f = tc->mlp;
    if (!b->q) {
        cm_linear_act_w(s->x, m, d, b->fc1_w, b->packed, b->fc1_b, f, tc->act, s->mlp);
        return CLIPMOD_OK;
    }
    return cm_qgemm(&b->q[2], s->x, m, b->fc1_b, 0, cm_gemm_act_of(tc->act), s->mlp);
}

/* LN1 and the qkv projection over every row: what attention needs in any block. */
static clipmod_error block_qkv(const cm_block *b, const cm_tower_config *tc, int m, const float *h,
                               scratch *s)
{
    const int d = tc->width;
    cm_layernorm(h, m, d, b->ln1_w, b->ln1_b, tc->eps, s->x);
    return linear(b, 0, s->x, m, d, b->qkv_w, b->qkv_b, 3 * d, 0, s->qkv);
}

/* out_proj and the MLP on m rows of h, attention output in s->x; h is updated. */
static clipmod_error block_tail(const cm_block *b, const cm_tower_config *tc, int m, float *h,
                                scratch *s)
{
    const int d = tc->width, f = tc->mlp;
    clipmod_error rc = linear(b, 1, s->x, m, d, b->out_w, b->out_b, d, 1, h);
    if (rc)
        return rc;
    cm_layernorm(h, m, d, b->ln2_w, b->ln2_b, tc->eps, s->x);
    rc = fc1_act(b, tc, m, s);
    if (rc)
        return rc;
    return linear(b, 3, s->mlp, m, f, b->fc2_w, b->fc2_b, d, 1, h);
}

/* The last block when only seq->pool_row of each sequence is read afterwards. */
static clipmod_error block_pooled(const cm_block *b, const cm_tower_config *tc,
                                  const cm_packed *seq, int causal, float *h, scratch *s)
{
    const int d = tc->width, n = seq->count;
    clipmod_error rc = block_qkv(b, tc, seq->rows, h, s);
    if (rc)
        return rc;
    cm_attention_seqs(s->qkv, seq->start, seq->len, seq->pool_row, n, seq->max_len, d, tc->heads,
                      causal, s->attn, s->x);
    for (int i = 0; i < n; i++)
        memcpy(s->pooled + (size_t)i * d, h + (size_t)(seq->start[i] + seq->pool_row[i]) * d,
               (size_t)d * sizeof *h);
    rc = block_tail(b, tc, n, s->pooled, s);
    for (int i = 0; i < n; i++)
        memcpy(h + (size_t)(seq->start[i] + seq->pool_row[i]) * d, s->pooled + (size_t)i * d,
               (size_t)d * sizeof *h);
    return rc;
}

clipmod_error cm_encoder_forward(const cm_block *blocks, const cm_tower_config *tc,
                                 const cm_packed *seq, int causal, float *h)
{
    const int m = seq->rows, d = tc->width, f = tc->mlp;
    const size_t attn =
        (size_t)seq->count * tc->heads * cm_attention_scratch_floats(seq->max_len, d, tc->heads);
    size_t size = 0;
    const size_t ox = cm_scratch_carve(&size, (size_t)m * d * sizeof(float));
    const size_t oqkv = cm_scratch_carve(&size, (size_t)m * 3 * d * sizeof(float));
    const size_t omlp = cm_scratch_carve(&size, (size_t)m * f * sizeof(float));
    const size_t oattn = cm_scratch_carve(&size, attn * sizeof(float));
    const size_t opool = cm_scratch_carve(&size, (size_t)seq->count * d * sizeof(float));
    char *block = cm_scratch_take(CM_SCRATCH_ENCODER, size);
    if (!block)
        return CLIPMOD_E_NOMEM;
    scratch s = {.x = (float *)(block + ox),
                 .qkv = (float *)(block + oqkv),
                 .mlp = (float *)(block + omlp),
                 .attn = (float *)(block + oattn),
                 .pooled = (float *)(block + opool)};
    clipmod_error rc = CLIPMOD_OK;

    for (int l = 0; l < tc->layers; l++) {
        const cm_block *b = &blocks[l];
        if (l == tc->layers - 1 && seq->pool_row) {
            rc = block_pooled(b, tc, seq, causal, h, &s);
            break;
        }
        rc = block_qkv(b, tc, m, h, &s);
        if (rc)
            break;
        cm_attention_seqs(s.qkv, seq->start, seq->len, NULL, seq->count, seq->max_len, d, tc->heads,
                          causal, s.attn, s.x);
        rc = block_tail(b, tc, m, h, &s);
        if (rc)
            break;
    }
    cm_scratch_give(CM_SCRATCH_ENCODER, block);
    return rc;
}
