/*
 * text.c - CLIP's text tower.
 *
 * Sequences are packed without padding: each runs only up to its first EOT, which
 * is where CLIP pools. Because of the causal mask the hidden state there does not
 * depend on anything after it, so the result equals the padded 77-token pass.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "encoder.h"
#include "ops.h"
#include "towers.h"

clipmod_error cm_text_forward(const cm_weights *w, const cm_config *cfg, const int32_t *const *ids,
                              const int *len, int n, float *out)
{
    const cm_text_weights *tw = &w->text;
    const int d = cfg->text.width, e = cfg->proj_dim;
    clipmod_error rc = CLIPMOD_OK;
    int *start = cm_alloc((size_t)n * sizeof *start), *eot = cm_alloc((size_t)n * sizeof *eot);
    float *h = NULL, *pooled = NULL;
    int rows = 0, max_len = 0;

    if (!start || !eot) {
        cm_free(start);
        cm_free(eot);
        return CLIPMOD_E_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        start[i] = rows;
        eot[i] = len[i] - 1; /* the pooled row: the last block computes only it */
        rows += len[i];
        max_len = len[i] > max_len ? len[i] : max_len;
    }
    h = cm_alloc((size_t)rows * d * sizeof *h);
    pooled = cm_alloc((size_t)n * d * sizeof *pooled);
    if (!h || !pooled) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < len[i]; j++) {
            float *r = h + (size_t)(start[i] + j) * d;
            memcpy(r, tw->tok_emb + (size_t)ids[i][j] * d, (size_t)d * sizeof *r);
            cm_add(r, tw->pos_emb + (size_t)j * d, (size_t)d);
        }

    cm_packed seq = {
        .count = n, .start = start, .len = len, .rows = rows, .max_len = max_len, .pool_row = eot};
    rc = cm_encoder_forward(tw->blocks, &cfg->text, &seq, 1, h);
    if (rc)
        goto out;

    /* LayerNorm is per row, so only the pooled (EOT) rows need the final norm. */
    for (int i = 0; i < n; i++)
        memcpy(pooled + (size_t)i * d, h + (size_t)(start[i] + len[i] - 1) * d,
               (size_t)d * sizeof *pooled);
    cm_layernorm(pooled, n, d, tw->final_w, tw->final_b, cfg->text.eps, pooled);
    cm_linear_rows(pooled, n, d, tw->proj, tw->proj_packed, e, out);
    cm_l2_normalize(out, n, e);
out:
    cm_free(start);
    cm_free(eot);
    cm_free(h);
    cm_free(pooled);
    return rc;
}
