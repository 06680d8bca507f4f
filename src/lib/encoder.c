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

typedef struct scratch {
    float *x, *qkv, *mlp, *attn, *pooled;
} scratch;

/* LN1 and the qkv projection over every row: what attention needs in any block. */
static void block_qkv(const cm_block *b, const cm_tower_config *tc, int m, const float *h,
                      scratch *s)
{
    const int d = tc->width;
    cm_layernorm(h, m, d, b->ln1_w, b->ln1_b, tc->eps, s->x);
    cm_linear_w(s->x, m, d, b->qkv_w, b->packed, b->qkv_b, 3 * d, 0, s->qkv);
}

/* out_proj and the MLP on m rows of h, attention output in s->x; h is updated. */
static void block_tail(const cm_block *b, const cm_tower_config *tc, int m, float *h, scratch *s)
{
    const int d = tc->width, f = tc->mlp;
    cm_linear_w(s->x, m, d, b->out_w, b->packed, b->out_b, d, 1, h);
    cm_layernorm(h, m, d, b->ln2_w, b->ln2_b, tc->eps, s->x);
    cm_linear_act_w(s->x, m, d, b->fc1_w, b->packed, b->fc1_b, f, tc->act, s->mlp);
    cm_linear_w(s->mlp, m, f, b->fc2_w, b->packed, b->fc2_b, d, 1, h);
}

/* The last block when only seq->pool_row of each sequence is read afterwards. */
static void block_pooled(const cm_block *b, const cm_tower_config *tc, const cm_packed *seq,
                         int causal, float *h, scratch *s)
{
    const int d = tc->width, n = seq->count;
    block_qkv(b, tc, seq->rows, h, s);
    cm_attention_seqs(s->qkv, seq->start, seq->len, seq->pool_row, n, seq->max_len, d, tc->heads,
                      causal, s->attn, s->x);
    for (int i = 0; i < n; i++)
        memcpy(s->pooled + (size_t)i * d, h + (size_t)(seq->start[i] + seq->pool_row[i]) * d,
               (size_t)d * sizeof *h);
    block_tail(b, tc, n, s->pooled, s);
    for (int i = 0; i < n; i++)
        memcpy(h + (size_t)(seq->start[i] + seq->pool_row[i]) * d, s->pooled + (size_t)i * d,
               (size_t)d * sizeof *h);
}

clipmod_error cm_encoder_forward(const cm_block *blocks, const cm_tower_config *tc,
                                 const cm_packed *seq, int causal, float *h)
{
    const int m = seq->rows, d = tc->width, f = tc->mlp;
    const size_t attn =
        (size_t)seq->count * tc->heads * cm_attention_scratch_floats(seq->max_len, d, tc->heads);
    scratch s = {.x = cm_alloc((size_t)m * d * sizeof *s.x),
                 .qkv = cm_alloc((size_t)m * 3 * d * sizeof *s.qkv),
                 .mlp = cm_alloc((size_t)m * f * sizeof *s.mlp),
                 .attn = cm_alloc(attn * sizeof *s.attn),
                 .pooled = cm_alloc((size_t)seq->count * d * sizeof *s.pooled)};
    clipmod_error rc = CLIPMOD_OK;

    if (!s.x || !s.qkv || !s.mlp || !s.attn || !s.pooled) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    for (int l = 0; l < tc->layers; l++) {
        const cm_block *b = &blocks[l];
        if (l == tc->layers - 1 && seq->pool_row) {
            block_pooled(b, tc, seq, causal, h, &s);
            break;
        }
        block_qkv(b, tc, m, h, &s);
        cm_attention_seqs(s.qkv, seq->start, seq->len, NULL, seq->count, seq->max_len, d, tc->heads,
                          causal, s.attn, s.x);
        block_tail(b, tc, m, h, &s);
    }
out:
    cm_free(s.x);
    cm_free(s.qkv);
    cm_free(s.mlp);
    cm_free(s.attn);
    cm_free(s.pooled);
    return rc;
}
