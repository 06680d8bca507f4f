/*
 * result_codec.c - a result's whole state as text and back (the verdict caches' record).
 *
 * Owns the "clipmod-result/1" record: clipmod_result_encode() writes every member of
 * a result (categories, every prompt, context, notes) as compact JSON with numbers
 * at full precision (17 significant digits round-trip a double exactly), and
 * clipmod_result_decode() rebuilds a result from it. clipmodd and clipmod-milter
 * keep verdicts in memory and in a shared Redis as these records, so a cached
 * verdict answers exactly as the fresh one did. The record is untrusted on the way
 * back (anyone who can write to the Redis can write it): every type, enumeration,
 * count and index is checked before it is used, and anything else is refused.
 * It is not the documented schema of clipmod_result_to_json (result.c); it changes
 * format name when its layout changes, so old records are refused, not misread.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "result.h"

#define RECORD_FORMAT "clipmod-result/1"
/* Bounds for untrusted records: far beyond any policy, small enough to allocate. */
#define MAX_CATS    4096
#define MAX_PROMPTS 65536
#define MAX_NOTES   1024
/* Scores, cosines and weights lie near [-1, 1], durations far below this; a larger
 * number is no verdict's (and clipmod_result_to_json rounds through a long long). */
#define MAX_NUMBER 1e12

/* The static strings results point at (scan.c, score.c, ctxscore.c). */
static const char *const score_by_names[] = {"prompts", "head", "mean"};
static const char *const flagged_by_names[] = {"image", "image+context", "context"};

/* Index of `s` in names[n], -1 for NULL, -2 when unknown. */
static int name_index(const char *s, const char *const *names, int n)
{
    if (!s)
        return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -2;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

/* json_real refuses NaN and infinities: the record then fails, never misstates. */
static json_t *prompts_enc(const cm_prompt_score *ps, size_t n)
{
    json_t *a = json_array();
    for (size_t j = 0; a && j < n; j++)
        if (json_array_append_new(a, json_pack("[s, f, f, i]", ps[j].text, ps[j].prob, ps[j].cosine,
                                               (int)ps[j].kind))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* Index of the context prompt a category names (it points into its ctx_prompts). */
static int ctx_prompt_index(const cm_cat_result *c)
{
    for (size_t j = 0; j < c->n_ctx_prompts; j++)
        if (c->s.context_prompt == c->ctx_prompts[j].text)
            return (int)j;
    return -1;
}

static json_t *category_enc(const cm_cat_result *c)
{
    const clipmod_category_score *s = &c->s;
    int by = name_index(s->score_by, score_by_names, 3);
    int fby = name_index(s->flagged_by, flagged_by_names, 3);
    if (by == -2 || fby == -2 || (s->context_prompt && ctx_prompt_index(c) < 0))
        return NULL;
    return json_pack("{s:s, s:[f,f,f,f,f,f,f,f,f,f], s:b, s:i, s:i, s:i, s:s?, s:i, s:i, s:i, "
                     "s:i, s:o, s:o}",
                     "id", s->id, "n", s->score, s->threshold, s->margin, s->cosine,
                     s->prompt_score, s->head_score, s->image_score, s->context_score,
                     c->ctx_weight, c->ctx_threshold, "flagged", s->flagged, "action",
                     (int)s->action, "score_by", by, "flagged_by", fby, "window", s->context_window,
                     "cprompt", ctx_prompt_index(c), "frame", c->frame, "frames_hit", c->frames_hit,
                     "ctx_mode", c->ctx_mode, "prompts", prompts_enc(c->prompts, c->n_prompts),
                     "ctx_prompts", prompts_enc(c->ctx_prompts, c->n_ctx_prompts));
}

/* Categories and notes; NULL if any element failed (jansson drops NULLs silently). */
static json_t *lists_enc(const clipmod_result *r, json_t **notes)
{
    json_t *cats = json_array();
    *notes = json_array();
    int ok = cats && *notes;
    for (size_t i = 0; ok && i < r->n_cats; i++)
        ok = !json_array_append_new(cats, category_enc(&r->cats[i]));
    for (size_t i = 0; ok && i < r->n_notes; i++)
        ok = !json_array_append_new(*notes, json_pack("[s, s]", r->notes[i].by, r->notes[i].text));
    if (!ok) {
        json_decref(cats);
        json_decref(*notes);
        *notes = NULL;
        return NULL;
    }
    return cats;
}

static int top_index(const clipmod_result *r)
{
    for (size_t i = 0; i < r->n_cats; i++)
        if (r->top_category == r->cats[i].s.id)
            return (int)i;
    return -1;
}

char *clipmod_result_encode(const clipmod_result *r, size_t *len)
{
    json_t *notes, *cats = r ? lists_enc(r, &notes) : NULL;
    if (!cats)
        return NULL;
    const clipmod_context_info *x = &r->ctx;
    json_t *root = json_pack(
        "{s:s, s:i, s:i, s:i, s:s, s:i, s:s, s:s, s:s, s:b, s:i, s:[i,i,i,i], s:f, "
        "s:[b,I,I,I,I,b,i], s:o, s:o}",
        "format", RECORD_FORMAT, "state", (int)r->state, "action", (int)r->action, "reason",
        (int)r->reason, "reason_text", r->reason_text, "top", top_index(r), "policy", r->policy,
        "model", r->model, "message", r->message, "demo", r->demo_model, "top_prompts",
        r->top_prompts, "image", r->width, r->height, r->frames_total, r->frames_scanned,
        "elapsed_ms", r->elapsed_ms, "ctx", x->present, (json_int_t)x->bytes,
        (json_int_t)x->bytes_used, (json_int_t)x->windows, (json_int_t)x->windows_total, x->cut,
        (int)x->cleaned, "cats", cats, "notes", notes);
    if (!root)
        return NULL;
    char *s = cm_json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (s && len)
        *len = strlen(s);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

/* A finite number within MAX_NUMBER of 0. */
static int num_ok(double v)
{
    return isfinite(v) && fabs(v) <= MAX_NUMBER;
}

/* A number in range (an integer is one too: jansson writes 1.0 as 1.0, but be lenient). */
static int num_at(const json_t *a, size_t i, double *out)
{
    const json_t *v = json_array_get(a, i);
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return num_ok(*out) ? 0 : -1;
}

static int in_range(json_int_t v, json_int_t lo, json_int_t hi)
{
    return v >= lo && v <= hi;
}

static int prompts_dec(const json_t *a, cm_prompt_score **out, size_t *n)
{
    size_t k = json_array_size(a);
    if (!json_is_array(a) || k > MAX_PROMPTS)
        return -1;
    *out = cm_calloc(k ? k : 1, sizeof **out);
    if (!*out)
        return -2;
    for (size_t j = 0; j < k; j++) {
        const json_t *p = json_array_get(a, j);
        const char *text;
        json_int_t kind;
        cm_prompt_score *ps = &(*out)[j];
        if (json_unpack((json_t *)p, "[s, F, F, I!]", &text, &ps->prob, &ps->cosine, &kind) ||
            !num_ok(ps->prob) || !num_ok(ps->cosine) || !in_range(kind, 0, 2))
            return -1;
        ps->kind = (cm_prompt_kind)kind;
        ps->text = cm_strdup(text);
        if (!ps->text)
            return -2;
        (*n)++;
    }
    return 0;
}

/* The category's ten numbers, in category_enc's order. */
static int numbers_dec(const json_t *a, cm_cat_result *c)
{
    double *dst[] = {&c->s.score,        &c->s.threshold,  &c->s.margin,      &c->s.cosine,
                     &c->s.prompt_score, &c->s.head_score, &c->s.image_score, &c->s.context_score,
                     &c->ctx_weight,     &c->ctx_threshold};
    if (!json_is_array(a) || json_array_size(a) != 10)
        return -1;
    for (size_t i = 0; i < 10; i++)
        if (num_at(a, i, dst[i]))
            return -1;
    return 0;
}

/* One category into c (zeroed by the caller); -1 invalid, -2 out of memory. */
static int category_dec(const json_t *o, cm_cat_result *c)
{
    const char *id, *window = NULL;
    json_t *nums, *prompts, *cprompts, *win;
    int flagged;
    json_int_t action, by, fby, cprompt, frame, hits, mode;
    if (json_unpack(
            (json_t *)o, "{s:s, s:o, s:b, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:o, s:o}", "id",
            &id, "n", &nums, "flagged", &flagged, "action", &action, "score_by", &by, "flagged_by",
            &fby, "window", &win, "cprompt", &cprompt, "frame", &frame, "frames_hit", &hits,
            "ctx_mode", &mode, "prompts", &prompts, "ctx_prompts", &cprompts) ||
        (!json_is_null(win) && !json_is_string(win)) || numbers_dec(nums, c) ||
        !in_range(action, 0, CLIPMOD_ACTION_REJECT) || !in_range(by, -1, 2) ||
        !in_range(fby, -1, 2) || !in_range(frame, 0, 1 << 30) || !in_range(hits, 0, 1 << 30) ||
        !in_range(mode, 0, 3))
        return -1;
    window = json_string_value(win); /* NULL for null: no window */
    c->s.flagged = flagged;
    c->s.action = (clipmod_action)action;
    c->s.score_by = by < 0 ? NULL : score_by_names[by];
    c->s.flagged_by = fby < 0 ? NULL : flagged_by_names[fby];
    c->frame = (int)frame;
    c->frames_hit = (int)hits;
    c->ctx_mode = (int)mode;
    c->s.id = cm_strdup(id);
    if (!c->s.id)
        return -2;
    if (window) {
        c->s.context_window = cm_strdup(window);
        if (!c->s.context_window)
            return -2;
    }
    int rc = prompts_dec(prompts, &c->prompts, &c->n_prompts);
    if (!rc)
        rc = prompts_dec(cprompts, &c->ctx_prompts, &c->n_ctx_prompts);
    if (rc)
        return rc;
    if (!in_range(cprompt, -1, (json_int_t)c->n_ctx_prompts - 1))
        return -1;
    c->s.context_prompt = cprompt < 0 ? NULL : c->ctx_prompts[cprompt].text;
    return 0;
}

static int cats_dec(const json_t *a, clipmod_result *r)
{
    size_t n = json_array_size(a);
    if (!json_is_array(a) || n > MAX_CATS)
        return -1;
    r->cats = cm_calloc(n ? n : 1, sizeof *r->cats);
    if (!r->cats)
        return -2;
    for (size_t i = 0; i < n; i++) {
        /* Counted first: clipmod_result_free() frees what a failed category holds. */
        r->n_cats++;
        int rc = category_dec(json_array_get(a, i), &r->cats[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int notes_dec(const json_t *a, clipmod_result *r)
{
    if (!json_is_array(a) || json_array_size(a) > MAX_NOTES)
        return -1;
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *by, *text;
        if (json_unpack(json_array_get(a, i), "[s, s!]", &by, &text))
            return -1;
        if (clipmod_result_add_note(r, by, text))
            return -2;
    }
    return 0;
}

/* Replace the string *dst with a copy of s. */
static int set_str(char **dst, const char *s)
{
    char *c = cm_strdup(s);
    if (!c)
        return -2;
    cm_free(*dst);
    *dst = c;
    return 0;
}

/* The members after the lists: enumerations, image, context; -1 invalid, -2 memory. */
static int scalars_dec(json_t *root, clipmod_result *r)
{
    const char *reason_text, *message;
    json_int_t state, action, reason, top, tp, w, h, ft, fs, bytes, used, win, wtot, cleaned;
    int demo, present, cut;
    if (json_unpack(root, "{s:I, s:I, s:I, s:s, s:I, s:s, s:b, s:I, s:[IIII!], s:F, s:[bIIIIbI!]}",
                    "state", &state, "action", &action, "reason", &reason, "reason_text",
                    &reason_text, "top", &top, "message", &message, "demo", &demo, "top_prompts",
                    &tp, "image", &w, &h, &ft, &fs, "elapsed_ms", &r->elapsed_ms, "ctx", &present,
                    &bytes, &used, &win, &wtot, &cut, &cleaned) ||
        !in_range(state, 0, CLIPMOD_STATE_UNSCANNED) ||
        !in_range(action, 0, CLIPMOD_ACTION_REJECT) ||
        !in_range(reason, 0, CLIPMOD_REASON__COUNT - 1) ||
        !in_range(top, -1, (json_int_t)r->n_cats - 1) || !in_range(tp, 0, 1 << 30) ||
        !in_range(w, 0, 1 << 30) || !in_range(h, 0, 1 << 30) || !in_range(ft, 0, 1 << 30) ||
        !in_range(fs, 0, 1 << 30) || !num_ok(r->elapsed_ms) || !in_range(bytes, 0, INT64_MAX) ||
        !in_range(used, 0, INT64_MAX) || !in_range(win, 0, INT64_MAX) ||
        !in_range(wtot, 0, INT64_MAX) || !in_range(cleaned, 0, 7))
        return -1;
    r->state = (clipmod_state)state;
    r->action = (clipmod_action)action;
    r->reason = (clipmod_reason)reason;
    r->top_category = top < 0 ? NULL : r->cats[top].s.id;
    r->demo_model = demo;
    r->top_prompts = (int)tp;
    r->width = (int)w, r->height = (int)h, r->frames_total = (int)ft, r->frames_scanned = (int)fs;
    r->ctx = (clipmod_context_info){sizeof r->ctx, present,      (size_t)bytes, (size_t)used,
                                    (size_t)win,   (size_t)wtot, cut,           (unsigned)cleaned};
    if (set_str(&r->reason_text, reason_text) || set_str(&r->message, message))
        return -2;
    return 0;
}

static int record_dec(json_t *root, clipmod_result *r)
{
    const char *format, *policy, *model;
    json_t *cats, *notes;
    if (json_unpack(root, "{s:s, s:s, s:s, s:o, s:o}", "format", &format, "policy", &policy,
                    "model", &model, "cats", &cats, "notes", &notes) ||
        strcmp(format, RECORD_FORMAT))
        return -1;
    int rc = cats_dec(cats, r);
    if (!rc)
        rc = notes_dec(notes, r);
    if (!rc)
        rc = scalars_dec(root, r);
    if (!rc && (set_str(&r->policy, policy) || set_str(&r->model, model)))
        rc = -2;
    return rc;
}

clipmod_error clipmod_result_decode(const char *text, size_t len, const char *name,
                                    clipmod_result **out, char *errbuf)
{
    if (!text || !out)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "clipmod_result_decode: no text");
    json_error_t jerr;
    /* No NUL inside strings: every string of a result is a C string. */
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "result record: %s", jerr.text);
    clipmod_result *r = cm_result_new(name, "", "");
    int rc = r ? record_dec(root, r) : -2;
    json_decref(root);
    if (rc) {
        clipmod_result_free(r);
        return rc == -2 ? cm_error(errbuf, CLIPMOD_E_NOMEM, "result record: out of memory")
                        : cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                                   "result record: not a valid " RECORD_FORMAT " record");
    }
    *out = r;
    return CLIPMOD_OK;
}
