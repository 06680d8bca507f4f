/*
 * head.c - learned category heads: the file format, its checks, and scoring.
 *
 * Owns the one definition of a head file (written by clipmod_head_write, read by
 * cm_head_parse) so the trainer and the scanner cannot drift apart:
 *
 *   tensors   weight F32 [D]            on the L2-normalised image embedding
 *             bias F32 [1]              z = weight . embedding + bias
 *             calibration F32 [2]       probability = 1 / (1 + exp(-(c0 * z + c1)))
 *             train_digests U8 [N, 8]   SHA-256 prefixes of the training images
 *   metadata  format "clipmod-head", format_version "1", category, model_fingerprint,
 *             embed_dim, train_size, train_positives, trained, folds, c, cv_auc,
 *             cv_precision, cv_recall, prompts_auc, clipmod_version
 *
 * Everything in a head file is untrusted: shapes, dtypes and the finiteness of
 * every number are checked, and a head trained for another model, embedding size
 * or category is refused with a sentence saying what differs.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "head.h"
#include "model.h"
#include "safetensors.h"

static const cm_struct_kind spec_kind = {"clipmod_head_spec", CLIPMOD_HEAD_SPEC_SIZE_V1,
                                         sizeof(clipmod_head_spec), "CLIPMOD_HEAD_SPEC_INIT"};

void cm_head_model_fp(const clipmod_model *model, char out[17])
{
    /* The weights file, whatever the precision it runs at: a head trained at fp32
     * scores an int8 or bf16 run of the same model (their embeddings agree to 0.999). */
    snprintf(out, 17, "%016llx", (unsigned long long)model->file_fingerprint);
}

/* A tensor of dtype F32 with exactly `n` finite values, or NULL with errbuf set. */
static const cm_tensor *f32_tensor(const cm_safetensors *st, const char *name, const char *tensor,
                                   size_t n, char *errbuf)
{
    const cm_tensor *t = cm_safetensors_find(st, tensor);
    if (!t) {
        cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: not a head: no tensor '%s'", name, tensor);
        return NULL;
    }
    if (t->dtype != CM_DT_F32 || t->ndim != 1 || (n && t->numel != n) || !t->numel) {
        cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                 "%s: tensor '%s' must be F32 of shape [%zu], not %s of %zu values", name, tensor,
                 n ? n : t->numel, t->dtype_name, t->numel);
        return NULL;
    }
    for (size_t i = 0; i < t->numel; i++) {
        float v;
        memcpy(&v, (const unsigned char *)t->data + 4 * i, 4);
        if (!isfinite(v)) {
            cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                     "%s: tensor '%s' holds a value that is not a finite number (index %zu): "
                     "retrain the head",
                     name, tensor, i);
            return NULL;
        }
    }
    return t;
}

static float f32_at(const cm_tensor *t, size_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)t->data + 4 * i, 4);
    return v;
}

/* The metadata that binds a head: format, model, size, category. */
static clipmod_error check_binding(const cm_safetensors *st, const char *name, size_t d, size_t dim,
                                   const char *model_fp, const char *category, cm_head *h,
                                   char *errbuf)
{
    const char *fmt = cm_safetensors_meta(st, "format");
    const char *ver = cm_safetensors_meta(st, "format_version");
    const char *fp = cm_safetensors_meta(st, "model_fingerprint");
    const char *cat = cm_safetensors_meta(st, "category");
    if (!fmt || strcmp(fmt, "clipmod-head") != 0)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: not a clipmod head (its metadata has no format \"clipmod-head\")",
                        name);
    if (!ver || strcmp(ver, "1") != 0)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: head format version %s is not one this clipmod reads (1)", name,
                        ver ? ver : "(none)");
    if (!fp || strlen(fp) != 16 || !cat || !*cat || strlen(cat) >= sizeof h->category)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: head metadata lacks its model_fingerprint or category", name);
    if (dim && d != dim)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: the head was trained on %zu-dimensional embeddings; this model's "
                        "have %zu",
                        name, d, dim);
    if (model_fp && strcmp(fp, model_fp) != 0)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: the head was trained for the model with fingerprint %s, not this "
                        "one (%s): retrain it with this model",
                        name, fp, model_fp);
    if (category && strcmp(cat, category) != 0)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: the head was trained for category '%s', not '%s'", name, cat,
                        category);
    memcpy(h->model, fp, 17);
    snprintf(h->category, sizeof h->category, "%s", cat);
    return CLIPMOD_OK;
}

/* The optional digests of the training images, and the numbers shown to moderators. */
static clipmod_error read_extras(const cm_safetensors *st, const char *name, cm_head *h,
                                 char *errbuf)
{
    const cm_tensor *t = cm_safetensors_find(st, "train_digests");
    if (t) {
        if (strcmp(t->dtype_name, "U8") != 0 || t->ndim != 2 || t->shape[1] != 8)
            return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                            "%s: tensor 'train_digests' must be U8 of shape [N, 8]", name);
        h->n_train = (size_t)t->shape[0];
        h->digests = t->data;
    }
    const char *pos = cm_safetensors_meta(st, "train_positives");
    const char *auc = cm_safetensors_meta(st, "cv_auc");
    h->n_positive = pos ? strtoul(pos, NULL, 10) : 0;
    h->cv_auc = auc ? strtod(auc, NULL) : NAN;
    return CLIPMOD_OK;
}

static clipmod_error fill(const cm_safetensors *st, const char *name, size_t dim,
                          const char *model_fp, const char *category, cm_head *h, char *errbuf)
{
    const cm_tensor *w = f32_tensor(st, name, "weight", 0, errbuf);
    const cm_tensor *b = w ? f32_tensor(st, name, "bias", 1, errbuf) : NULL;
    const cm_tensor *c = b ? f32_tensor(st, name, "calibration", 2, errbuf) : NULL;
    if (!c)
        return CLIPMOD_E_MODEL_FORMAT;
    if (w->numel > CM_HEAD_MAX_DIM)
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT, "%s: %zu weights: more than %d", name,
                        w->numel, CM_HEAD_MAX_DIM);
    clipmod_error rc = check_binding(st, name, w->numel, dim, model_fp, category, h, errbuf);
    if (rc)
        return rc;
    if (!(f32_at(c, 0) > 0))
        return cm_error(errbuf, CLIPMOD_E_MODEL_FORMAT,
                        "%s: its calibration slope %g is not positive: retrain the head", name,
                        (double)f32_at(c, 0));
    h->dim = w->numel;
    h->w = cm_alloc(h->dim * sizeof *h->w);
    if (!h->w)
        return cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
    memcpy(h->w, w->data, h->dim * sizeof *h->w);
    h->bias = f32_at(b, 0);
    h->cal_slope = f32_at(c, 0);
    h->cal_offset = f32_at(c, 1);
    return read_extras(st, name, h, errbuf);
}

clipmod_error cm_head_parse(const void *buf, size_t len, const char *name, size_t dim,
                            const char *model_fp, const char *category, cm_head **out, char *errbuf)
{
    cm_safetensors *st = NULL;
    cm_head *h = NULL;
    clipmod_error rc;

    *out = NULL;
    h = cm_calloc(1, sizeof *h);
    if (h)
        h->buf = cm_alloc(len ? len : 1);
    if (!h || !h->buf) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    memcpy(h->buf, buf, len);
    rc = cm_safetensors_parse(h->buf, len, name, &st, errbuf);
    if (rc == CLIPMOD_OK)
        rc = fill(st, name, dim, model_fp, category, h, errbuf);
    if (rc == CLIPMOD_OK) {
        *out = h;
        h = NULL;
    }
out:
    cm_safetensors_close(st);
    cm_head_free(h);
    return rc;
}

double cm_head_score(const cm_head *h, const float *emb)
{
    double z = h->bias;
    for (size_t i = 0; i < h->dim; i++)
        z += (double)h->w[i] * emb[i];
    return 1.0 / (1.0 + exp(-(h->cal_slope * z + h->cal_offset)));
}

int cm_head_trained_on(const cm_head *h, const unsigned char digest[8])
{
    for (size_t i = 0; h->digests && i < h->n_train; i++)
        if (memcmp(h->digests + 8 * i, digest, 8) == 0)
            return 1;
    return 0;
}

void cm_head_free(cm_head *h)
{
    if (!h)
        return;
    cm_free(h->w);
    cm_free(h->buf);
    cm_free(h);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

static int set_str(json_t *o, const char *key, const char *fmt, ...) CM_PRINTF(3, 4);
static int set_str(json_t *o, const char *key, const char *fmt, ...)
{
    char v[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    return json_object_set_new(o, key, json_string(v));
}

static int add_tensor(json_t *root, const char *name, const char *dtype, size_t d0, size_t d1,
                      size_t *offset, size_t bytes)
{
    json_t *t = json_object();
    json_t *shape =
        d1 ? json_pack("[II]", (json_int_t)d0, (json_int_t)d1) : json_pack("[I]", (json_int_t)d0);
    json_t *offs = json_pack("[II]", (json_int_t)*offset, (json_int_t)(*offset + bytes));
    int bad = !t || !shape || !offs || json_object_set_new(t, "dtype", json_string(dtype)) ||
              json_object_set_new(t, "shape", shape) ||
              json_object_set_new(t, "data_offsets", offs);
    if (bad || json_object_set_new(root, name, t)) {
        json_decref(t);
        return -1;
    }
    *offset += bytes;
    return 0;
}

static json_t *metadata(const clipmod_model *model, const clipmod_head_spec *s)
{
    char fp[17], when[32];
    time_t now = time(NULL);
    struct tm tm;
    json_t *m = json_object();
    cm_head_model_fp(model, fp);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    int bad =
        !m || set_str(m, "format", "clipmod-head") || set_str(m, "format_version", "1") ||
        set_str(m, "category", "%s", s->category) || set_str(m, "model_fingerprint", "%s", fp) ||
        set_str(m, "model", "%s", clipmod_model_describe(model)) ||
        set_str(m, "embed_dim", "%zu", s->dim) || set_str(m, "train_size", "%zu", s->n_train) ||
        set_str(m, "train_positives", "%zu", s->n_positive) || set_str(m, "trained", "%s", when) ||
        set_str(m, "folds", "%d", s->folds) || set_str(m, "c", "%.6g", s->c) ||
        set_str(m, "cv_auc", "%.4f", s->cv_auc) ||
        set_str(m, "cv_precision", "%.4f", s->cv_precision) ||
        set_str(m, "cv_recall", "%.4f", s->cv_recall) ||
        set_str(m, "prompts_auc", "%.4f", s->prompts_auc) ||
        set_str(m, "clipmod_version", "%s", clipmod_version());
    if (bad) {
        json_decref(m);
        return NULL;
    }
    return m;
}

/* The header JSON, padded with spaces to a multiple of 8 bytes (safetensors' habit). */
static char *header(const clipmod_model *model, const clipmod_head_spec *s, size_t *hlen)
{
    size_t off = 0;
    json_t *root = json_object(), *meta = metadata(model, s);
    char *text = NULL, *padded = NULL;
    int bad = !root || !meta || json_object_set_new(root, "__metadata__", meta) ||
              add_tensor(root, "weight", "F32", s->dim, 0, &off, 4 * s->dim) ||
              add_tensor(root, "bias", "F32", 1, 0, &off, 4) ||
              add_tensor(root, "calibration", "F32", 2, 0, &off, 8) ||
              (s->train_digests &&
               add_tensor(root, "train_digests", "U8", s->n_train, 8, &off, 8 * s->n_train));
    if (bad && !root)
        json_decref(meta);
    if (!bad)
        text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (text) {
        size_t n = strlen(text), p = (n + 7) / 8 * 8;
        padded = malloc(p + 1);
        if (padded) {
            memcpy(padded, text, n);
            memset(padded + n, ' ', p - n);
            padded[p] = 0;
            *hlen = p;
        }
    }
    free(text);
    json_decref(root);
    return padded;
}

static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_body(int fd, const char *hdr, size_t hlen, const clipmod_head_spec *s)
{
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    float bias = (float)s->bias, cal[2] = {(float)s->cal_slope, (float)s->cal_offset};
    return write_all(fd, len8, 8) || write_all(fd, hdr, hlen) ||
           write_all(fd, s->weights, 4 * s->dim) || write_all(fd, &bias, 4) ||
           write_all(fd, cal, 8) ||
           (s->train_digests && write_all(fd, s->train_digests, 8 * s->n_train));
}

static clipmod_error check_spec(const clipmod_model *model, const clipmod_head_spec *s,
                                char *errbuf)
{
    if (!s->category || !*s->category || strlen(s->category) > 64)
        return cm_refuse(errbuf, "clipmod_head_write: the category id is missing or too long");
    if (s->dim != clipmod_model_embed_dim(model) || !s->weights)
        return cm_refuse(errbuf, "clipmod_head_write: %zu weights for a model of dimension %zu",
                         s->dim, clipmod_model_embed_dim(model));
    for (size_t i = 0; i < s->dim; i++)
        if (!isfinite(s->weights[i]))
            return cm_refuse(errbuf, "clipmod_head_write: weight %zu is not a finite number", i);
    if (!isfinite(s->bias) || !(s->cal_slope > 0) || !isfinite(s->cal_slope) ||
        !isfinite(s->cal_offset))
        return cm_refuse(errbuf, "clipmod_head_write: bias or calibration is not usable");
    return CLIPMOD_OK;
}

clipmod_error clipmod_head_write(const clipmod_model *model, const char *path,
                                 const clipmod_head_spec *spec, char *errbuf)
{
    clipmod_head_spec s = {0};
    char *hdr = NULL, *tmp = NULL;
    size_t hlen = 0;
    int fd = -1;
    clipmod_error rc;

    if (!model || !path || !spec)
        return cm_refuse(errbuf, "clipmod_head_write: model, path and spec are required");
    rc = cm_struct_in(&s, spec, &spec_kind, errbuf);
    if (!rc)
        rc = check_spec(model, &s, errbuf);
    if (rc)
        return rc;
    /* Written beside the target and renamed: a failure never leaves half a head. */
    size_t n = strlen(path) + 16;
    hdr = header(model, &s, &hlen);
    if (hdr)
        tmp = cm_alloc(n);
    if (!hdr || !tmp) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "out of memory");
        goto out;
    }
    snprintf(tmp, n, "%s.tmp-XXXXXX", path);
    /* mkstemp makes it 0600; a head is no secret, and daemons read it. */
    fd = mkstemp(tmp);
    if (fd < 0 || fchmod(fd, 0644) != 0) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    /* Closed whatever happened (a failed write must not leak the descriptor); the
     * first failure's errno is the one reported. */
    int failed = write_body(fd, hdr, hlen, &s) != 0 || fsync(fd) != 0;
    int err = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        err = errno;
    }
    fd = -1;
    if (failed) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: write: %s", tmp, strerror(err));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = cm_error(errbuf, CLIPMOD_E_IO, "%s: %s", path, strerror(errno));
        unlink(tmp);
    }
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(hdr);
    cm_free(tmp);
    return rc;
}
