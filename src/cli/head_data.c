/*
 * head_data.c - rows, digests and duplicate checks for clipmod head train.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head_data.h"

int head_digest_file(const char *path, unsigned char out[32])
{
    FILE *f = fopen(path, "rb");
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    unsigned char buf[65536];
    size_t n, len = 32;
    int rc = -1;
    if (f && sum) {
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            g_checksum_update(sum, buf, n);
        if (!ferror(f)) {
            g_checksum_get_digest(sum, out, &len);
            rc = 0;
        }
    }
    if (f)
        fclose(f);
    if (sum)
        g_checksum_free(sum);
    return rc;
}

typedef struct keyed {
    unsigned char d[32];
    size_t image;
} keyed;

static int by_digest(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    int c = memcmp(x->d, y->d, 32);
    return c ? c : (x->image > y->image) - (x->image < y->image);
}

static int same_labels(const evaluation *ev, size_t a, size_t b)
{
    const unsigned char *la = ev->images[a].item->labels, *lb = ev->images[b].item->labels;
    return memcmp(la, lb, ev->n_cats) == 0;
}

/* Digests of the scanned images, sorted; NULL (printed) on failure. */
static keyed *digests(const evaluation *ev, size_t *n)
{
    keyed *k = malloc((ev->n_images ? ev->n_images : 1) * sizeof *k);
    *n = 0;
    if (!k) {
        fprintf(stderr, "clipmod: out of memory\n");
        return NULL;
    }
    for (size_t i = 0; i < ev->n_images; i++) {
        if (ev->images[i].unscanned)
            continue;
        if (head_digest_file(ev->images[i].item->path, k[*n].d)) {
            fprintf(stderr, "clipmod: %s: cannot read it again\n", ev->images[i].item->path);
            free(k);
            return NULL;
        }
        k[(*n)++].image = i;
    }
    qsort(k, *n, sizeof *k, by_digest);
    return k;
}

/* Mark repeats to skip; -1 when the same bytes carry different labels. */
static int find_dups(const evaluation *ev, const keyed *k, size_t n, unsigned char *skip,
                     size_t *n_dups)
{
    size_t conflicts = 0;
    *n_dups = 0;
    for (size_t i = 1; i < n; i++) {
        if (memcmp(k[i].d, k[i - 1].d, 32) != 0)
            continue;
        size_t first = i - 1;
        while (first > 0 && memcmp(k[first - 1].d, k[i].d, 32) == 0)
            first--;
        if (same_labels(ev, k[first].image, k[i].image)) {
            skip[i] = 1;
            (*n_dups)++;
        } else if (conflicts++ < 10) {
            fprintf(stderr,
                    "clipmod: %s (%s) and %s (%s) are the same image with different "
                    "labels\n",
                    ev->images[k[first].image].item->path, ev->images[k[first].image].item->origin,
                    ev->images[k[i].image].item->path, ev->images[k[i].image].item->origin);
        }
    }
    if (conflicts)
        fprintf(stderr, "clipmod: %zu images are labelled twice differently: fix the set\n",
                conflicts);
    return conflicts ? -1 : 0;
}

static int fill(const evaluation *ev, const keyed *k, size_t n, const unsigned char *skip,
                head_rows *r)
{
    r->dim = clipmod_model_embed_dim(ev->model);
    r->x = malloc((n ? n : 1) * r->dim * sizeof *r->x);
    r->digests = malloc((n ? n : 1) * 8);
    r->image = malloc((n ? n : 1) * sizeof *r->image);
    if (!r->x || !r->digests || !r->image) {
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    /* In the set's order, so folds do not depend on the bytes of the images. */
    unsigned char *keep = calloc(ev->n_images ? ev->n_images : 1, 1);
    const unsigned char **dig = calloc(ev->n_images ? ev->n_images : 1, sizeof *dig);
    if (!keep || !dig) {
        free(keep);
        free(dig);
        fprintf(stderr, "clipmod: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!skip[i]) {
            keep[k[i].image] = 1;
            dig[k[i].image] = k[i].d;
        }
    for (size_t i = 0; i < ev->n_images; i++) {
        if (!keep[i])
            continue;
        memcpy(r->x + r->n * r->dim, ev->images[i].emb, r->dim * sizeof *r->x);
        memcpy(r->digests + r->n * 8, dig[i], 8);
        r->image[r->n++] = i;
    }
    free(keep);
    free(dig);
    return 0;
}

int head_rows_build(const evaluation *ev, head_rows *r)
{
    size_t n = 0;
    memset(r, 0, sizeof *r);
    keyed *k = digests(ev, &n);
    unsigned char *skip = k ? calloc(n ? n : 1, 1) : NULL;
    int rc = -1;
    if (!k || !skip)
        goto out;
    if (find_dups(ev, k, n, skip, &r->n_dups) == 0)
        rc = fill(ev, k, n, skip, r);
out:
    free(k);
    free(skip);
    return rc;
}

void head_rows_column(const evaluation *ev, const head_rows *r, size_t c, unsigned char *y,
                      double *prompt_scores)
{
    for (size_t i = 0; i < r->n; i++) {
        const eval_image *im = &ev->images[r->image[i]];
        y[i] = im->item->labels[c];
        prompt_scores[i] = im->scores[c];
    }
}

void head_rows_free(head_rows *r)
{
    free(r->x);
    free(r->digests);
    free(r->image);
    memset(r, 0, sizeof *r);
}
