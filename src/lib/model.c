/*
 * model.c - the public model object: loading and embedding.
 *
 * Loading reads config.json, maps the safetensors file, checks every tensor,
 * converts the image tower's once into our own layout (weights.c) and unmaps the
 * file; the tokenizer's merges come from the model directory. After that the image
 * side is immutable, and embedding calls only allocate their own scratch, so threads
 * can share one model. The text tower is the exception: loaded from the same file
 * when texts are first embedded, under a lock, and freed when an engine has its
 * prompts (they are all it is needed for while scanning).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cache.h"
#include "common.h"
#include "image.h"
#include "model.h"
#include "quant.h"
#include "safetensors.h"
#include "towers.h"
#include "wcache.h"

/* Images per forward pass: big enough for efficient GEMMs, small enough for scratch. */
#define MAX_BATCH 16

static const char *const weight_files[] = {"model.safetensors", "open_clip_model.safetensors"};
static const char *const merges_files[] = {"merges.txt", "bpe_simple_vocab_16e6.txt.gz"};

/* First file of `names` that exists in `dir`, written to `path`; 0 if none. */
static int find_file(const char *dir, const char *const *names, size_t n, char *path)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(path, PATH_MAX, "%s/%s", dir, names[i]);
        if (access(path, F_OK) == 0)
            return 1;
    }
    return 0;
}

/*
 * A 64-bit fingerprint of the whole weights file. Four independent multiply-xor
 * lanes keep it near memory speed (~0.1 s for ViT-B/32); any changed byte changes it.
 */
#define FINGERPRINT_CHUNK (8u << 20)

static uint64_t fingerprint(const cm_safetensors *st)
{
    size_t len;
    const unsigned char *p = cm_safetensors_bytes(st, &len);
    uint64_t lane[4] = {1, 2, 3, 4};
    const size_t whole = len - len % 32;
    for (size_t i = 0; i < whole; i += FINGERPRINT_CHUNK) {
        const size_t n = whole - i < FINGERPRINT_CHUNK ? whole - i : FINGERPRINT_CHUNK;
        cm_safetensors_prefault(p + i, n);
        cm_hash_lanes(lane, p + i, n);
        /* Hashed pages leave the resident set as we go: the whole file mapped and
         * resident beside the weights was most of `clipmod scan`'s peak. */
        cm_safetensors_release(p + i, n);
    }
    uint64_t h = cm_hash64(p + whole, len - whole, len);
    for (int k = 0; k < 4; k++)
        h = cm_hash64(&lane[k], 8, h);
    return h;
}

/*
 * The model's name (config.json's _name_or_path, else the directory's last part),
 * and whether it is our demo model.
 */
static void model_name(const char *dir, char *name, size_t size, int *demo)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    const char *s = json_string_value(json_object_get(root, "_name_or_path"));
    *demo = json_is_true(json_object_get(root, "clipmod_demo"));
    if (s && *s) {
        snprintf(name, size, "%s", s);
    } else {
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        size_t b = n;
        while (b > 0 && dir[b - 1] != '/')
            b--;
        snprintf(name, size, "%.*s", (int)(n - b), dir + b);
    }
    json_decref(root);
}

static const char *arch_name(const cm_config *c)
{
    if (c->vision.width == 768 && c->patch_size == 32 && c->vision.layers == 12)
        return "ViT-B/32";
    if (c->vision.width == 768 && c->patch_size == 16 && c->vision.layers == 12)
        return "ViT-B/16";
    if (c->vision.width == 1024 && c->patch_size == 14 && c->vision.layers == 24)
        return "ViT-L/14";
    return "ViT";
}

clipmod_error clipmod_model_load(const char *dir, const char *merges, clipmod_model **out,
                                 char *errbuf)
{
    return clipmod_model_load_precision(dir, merges, CLIPMOD_PRECISION_FP32, out, errbuf);
}

clipmod_precision clipmod_model_precision(const clipmod_model *m)
{
    return m ? m->w.precision : CLIPMOD_PRECISION_FP32;
}

clipmod_error clipmod_model_load_precision(const char *dir, const char *merges,
                                           clipmod_precision precision, clipmod_model **out,
                                           char *errbuf)
{
    return clipmod_model_load_cached(dir, merges, precision, NULL, out, errbuf);
}

/*
 * The image tower and the fingerprint: mapped from the weights cache file in
 * `cache_dir` when it holds this checkpoint, else read from `st` and the file
 * written for next time (a cache that fails only costs time; m->cache_note says).
 */
static clipmod_error load_weights(clipmod_model *m, const cm_safetensors *st,
                                  clipmod_precision precision, const char *cache_dir, char *errbuf)
{
    const cm_wcache_id id = {.path = m->path, .file = &m->file_id, .precision = precision};
    char dflt[PATH_MAX];
    if (cache_dir && !cache_dir[0])
        cache_dir = cm_cache_default_dir(dflt, sizeof dflt) == 0 ? dflt : NULL;
    if (cache_dir && cm_wcache_load(cache_dir, &id, st, &m->cfg, &m->w, &m->fingerprint,
                                    m->cache_note, sizeof m->cache_note))
        return CLIPMOD_OK;
    /* Hash first: both passes over the file then drop its pages as they go. */
    m->fingerprint = fingerprint(st);
    /* A miss writes the cache file by loading straight into its mapping. */
    char note[sizeof m->cache_note] = "", tensor_err[CLIPMOD_ERROR_SIZE];
    cm_wcache_new *fresh =
        cache_dir ? cm_wcache_create(cache_dir, &id, &m->cfg, note, sizeof note) : NULL;
    clipmod_error rc = cm_weights_load_into(
        st, &m->cfg, precision, fresh ? cm_wcache_image(fresh) : NULL, &m->w, tensor_err);
    if (rc) {
        cm_wcache_discard(fresh);
        return cm_error(errbuf, rc, "%s: %s", m->path, tensor_err);
    }
    if (fresh)
        cm_wcache_commit(fresh, st, &m->cfg, &m->w, m->fingerprint, note, sizeof note);
    /* A reason the file was not used says more than that it was written again. */
    if (!m->cache_note[0])
        memcpy(m->cache_note, note, sizeof note);
    return CLIPMOD_OK;
}

clipmod_error clipmod_model_load_cached(const char *dir, const char *merges,
                                        clipmod_precision precision, const char *cache_dir,
                                        clipmod_model **out, char *errbuf)
{
    clipmod_error rc = CLIPMOD_OK;
    clipmod_model *m = NULL;
    cm_safetensors *st = NULL;
    char path[PATH_MAX];

    if (!out)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "no output pointer");
    *out = NULL;
    if (!dir)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "no model directory given");
    /* Before reading anything: a CPU that cannot run the precision is told so at once. */
    rc = clipmod_precision_check(precision, errbuf);
    if (rc)
        return rc;
    m = cm_calloc(1, sizeof *m);
    if (!m)
        return cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
    if (pthread_mutex_init(&m->text_lock, NULL) != 0) {
        cm_free(m);
        return cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
    }

    rc = cm_config_load(dir, &m->cfg, errbuf);
    if (rc)
        goto out;
    if (!find_file(dir, weight_files, 2, path)) {
        rc = cm_error(errbuf, CLIPMOD_E_IO,
                      "%s: no model.safetensors or open_clip_model.safetensors", dir);
        goto out;
    }
    rc = cm_safetensors_open(path, &st, errbuf);
    if (rc)
        goto out;
    /* Which file this is, so that the text tower is read later from the same one. */
    if (stat(path, &m->file_id) != 0) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    memcpy(m->path, path, sizeof m->path);
    rc = load_weights(m, st, precision, cache_dir, errbuf);
    if (rc)
        goto out;
    /* Embeddings at int8/bf16 differ from fp32 ones: the caches they key must too.
     * fp32 keeps the plain file fingerprint, so existing caches stay valid. */
    m->file_fingerprint = m->fingerprint;
    if (precision != CLIPMOD_PRECISION_FP32)
        m->fingerprint = cm_hash64(clipmod_precision_name(precision), 4, m->fingerprint);
    model_name(dir, m->name, sizeof m->name, &m->demo);
    cm_safetensors_close(st);
    st = NULL;

    if (m->w.has_text) {
        const char *mp = merges;
        if (!mp && find_file(dir, merges_files, 2, path))
            mp = path;
        if (mp) {
            rc = cm_tokenizer_load(mp, (size_t)m->cfg.vocab - 514, &m->tok, errbuf);
            if (rc)
                goto out;
        }
    }
    snprintf(m->description, sizeof m->description,
             "%s (vision %dx%d, patch %d, %d px; text %s; embed %d), %s names, %s, %s%s%s",
             arch_name(&m->cfg), m->cfg.vision.layers, m->cfg.vision.width, m->cfg.patch_size,
             m->cfg.image_size, m->w.has_text ? (m->tok ? "yes" : "no merges") : "none",
             m->cfg.proj_dim, m->w.layout == CM_LAYOUT_HF ? "hf" : "openai", m->w.dtype,
             cm_act_name(m->cfg.vision.act), precision ? ", " : "",
             precision ? clipmod_precision_name(precision) : "");
    *out = m;
    m = NULL;
out:
    cm_safetensors_close(st);
    clipmod_model_free(m);
    return rc;
}

void clipmod_model_free(clipmod_model *m)
{
    if (!m)
        return;
    cm_weights_free(&m->w);
    cm_tokenizer_free(m->tok);
    pthread_mutex_destroy(&m->text_lock);
    cm_free(m);
}

size_t clipmod_model_embed_dim(const clipmod_model *m)
{
    return m ? (size_t)m->cfg.proj_dim : 0;
}

int clipmod_model_image_size(const clipmod_model *m)
{
    return m ? m->cfg.image_size : 0;
}

float clipmod_model_logit_scale(const clipmod_model *m)
{
    return m ? m->w.logit_scale : 0.0f;
}

int clipmod_model_is_demo(const clipmod_model *m)
{
    return m && m->demo;
}

int clipmod_model_has_text(const clipmod_model *m)
{
    return m && m->tok;
}

const char *clipmod_model_cache_note(const clipmod_model *m)
{
    return m ? m->cache_note : "";
}

const char *clipmod_model_describe(const clipmod_model *m)
{
    return m ? m->description : "";
}

/* Public for the programs' verdict caches, which must change key with the weights. */
uint64_t clipmod_model_fingerprint(const clipmod_model *m)
{
    return m ? m->fingerprint : 0;
}

clipmod_error clipmod_embed_images(const clipmod_model *m, const clipmod_image *const *imgs,
                                   size_t n, float *out, char *errbuf)
{
    const float *px[MAX_BATCH];
    if (!m || !imgs || !out || !n)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "model, images and output are required");
    for (size_t i = 0; i < n; i++)
        if (!imgs[i] || imgs[i]->size != m->cfg.image_size)
            return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                            "image %zu was not prepared for this model", i);
    for (size_t done = 0; done < n;) {
        int b = (int)(n - done < MAX_BATCH ? n - done : MAX_BATCH);
        for (int i = 0; i < b; i++)
            px[i] = imgs[done + i]->pixels;
        clipmod_error rc = cm_vision_forward(&m->w, &m->cfg, px, b, out + done * m->cfg.proj_dim);
        if (rc)
            return cm_error(errbuf, rc, "image tower: %s", clipmod_strerror(rc));
        done += (size_t)b;
    }
    return CLIPMOD_OK;
}

clipmod_error clipmod_tokenize(const clipmod_model *m, const char *text,
                               int32_t ids[CLIPMOD_CONTEXT_LENGTH], size_t *n_ids, int *truncated,
                               char *errbuf)
{
    int trunc = 0;
    if (!m || !text || !ids || !n_ids)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "model, text and outputs are required");
    if (!m->tok)
        return cm_error(errbuf, CLIPMOD_E_TOKENIZER,
                        "this model has no text tower or no merges file (merges.txt)");
    size_t ctx = (size_t)m->cfg.context < CLIPMOD_CONTEXT_LENGTH ? (size_t)m->cfg.context
                                                                 : CLIPMOD_CONTEXT_LENGTH;
    clipmod_error rc =
        cm_tokenizer_encode(m->tok, text, strlen(text), ids, ctx, n_ids, &trunc, errbuf);
    if (truncated)
        *truncated = trunc;
    return rc;
}

/* Load the text tower if it is not (caller holds text_lock). */
static clipmod_error ensure_text(clipmod_model *m, char *errbuf)
{
    struct stat now;
    cm_safetensors *st = NULL;
    char err[CLIPMOD_ERROR_SIZE];
    if (m->w.text_arena)
        return CLIPMOD_OK;
    if (stat(m->path, &now) != 0)
        return cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", m->path, strerror(errno));
    /* Another file's text tower would not match the image tower or the cache keys. */
    if (now.st_dev != m->file_id.st_dev || now.st_ino != m->file_id.st_ino ||
        now.st_size != m->file_id.st_size || now.st_mtim.tv_sec != m->file_id.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != m->file_id.st_mtim.tv_nsec)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s changed since the model was loaded; load the model again", m->path);
    clipmod_error rc = cm_safetensors_open(m->path, &st, err);
    if (!rc)
        rc = cm_weights_load_text(st, &m->cfg, &m->w, err);
    cm_safetensors_close(st);
    return rc ? cm_error(errbuf, rc, "%s: %s", m->path, err) : CLIPMOD_OK;
}

void cm_model_release_text(const clipmod_model *cm)
{
    /* The model is shared as const; its text tower is the one part that comes and goes,
     * under its own lock. */
    clipmod_model *m = (clipmod_model *)cm;
    if (!m)
        return;
    pthread_mutex_lock(&m->text_lock);
    cm_weights_free_text(&m->w, &m->cfg);
    pthread_mutex_unlock(&m->text_lock);
}

clipmod_error clipmod_embed_texts(const clipmod_model *m, const char *const *texts, size_t n,
                                  float *out, int *truncated, char *errbuf)
{
    clipmod_error rc = CLIPMOD_OK;
    int32_t(*ids)[CLIPMOD_CONTEXT_LENGTH] = NULL;
    const int32_t **rows = NULL;
    int *len = NULL;

    if (!m || !texts || !out || !n)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "model, texts and output are required");
    ids = cm_alloc(n * sizeof *ids);
    rows = cm_alloc(n * sizeof *rows);
    len = cm_alloc(n * sizeof *len);
    if (!ids || !rows || !len) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    const int32_t eot = m->tok ? cm_tokenizer_eot(m->tok) : 0;
    for (size_t i = 0; i < n; i++) {
        size_t count;
        int trunc;
        if (!texts[i]) {
            rc = cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "text %zu is NULL", i);
            goto out;
        }
        rc = clipmod_tokenize(m, texts[i], ids[i], &count, &trunc, errbuf);
        if (rc)
            goto out;
        if (truncated)
            truncated[i] = trunc;
        /* Pool at the first EOT, as HF and OpenAI's argmax both do. */
        size_t first = 0;
        while (first < count - 1 && ids[i][first] != eot)
            first++;
        len[i] = (int)first + 1;
        rows[i] = ids[i];
    }
    clipmod_model *mm = (clipmod_model *)m; /* see cm_model_release_text */
    pthread_mutex_lock(&mm->text_lock);
    rc = ensure_text(mm, errbuf);
    for (size_t done = 0; !rc && done < n;) {
        int b = (int)(n - done < 64 ? n - done : 64);
        rc = cm_text_forward(&m->w, &m->cfg, rows + done, len + done, b,
                             out + done * m->cfg.proj_dim);
        if (rc)
            cm_error(errbuf, rc, "text tower: %s", clipmod_strerror(rc));
        done += (size_t)b;
    }
    pthread_mutex_unlock(&mm->text_lock);
out:
    cm_free(ids);
    cm_free(rows);
    cm_free(len);
    return rc;
}
