/*
 * result.c - verdict objects: accessors, decisions, overrides and their JSON.
 *
 * The JSON written here is the one schema every integration speaks (the CLI's
 * --json, the daemon's responses, the milter's logs); clipmod(1) documents it.
 * Fields are only ever added, and "schema_version" changes if one is not.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "result.h"

#define SCHEMA_VERSION 1

static const char *const state_names[] = {"clean", "flagged", "unscanned"};
static const char *const action_names[] = {"allow", "tag", "flag", "quarantine", "reject"};
static const char *const reason_names[CLIPMOD_REASON__COUNT] = {
    "none",        "too-large",     "too-many-pixels", "too-many-frames", "decode-error",
    "unsupported", "blocked",       "timeout",         "io-error",        "blocked-address",
    "http-status", "network-error", "bad-url",
};
static const char *const kind_names[] = {"category", "contrast", "neutral"};

const char *clipmod_state_name(clipmod_state s)
{
    return (unsigned)s < 3 ? state_names[s] : "unknown";
}

const char *clipmod_action_name(clipmod_action a)
{
    return (unsigned)a < 5 ? action_names[a] : "unknown";
}

const char *clipmod_reason_name(clipmod_reason r)
{
    return (unsigned)r < CLIPMOD_REASON__COUNT ? reason_names[r] : "unknown";
}

static char *dup_or_empty(const char *s)
{
    return cm_strdup(s ? s : "");
}

clipmod_result *cm_result_new(const char *name, const char *policy, const char *model)
{
    clipmod_result *r = cm_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->name = dup_or_empty(name);
    r->policy = dup_or_empty(policy);
    r->model = dup_or_empty(model);
    r->reason_text = dup_or_empty("");
    r->message = dup_or_empty("");
    if (!r->name || !r->policy || !r->model || !r->reason_text || !r->message) {
        clipmod_result_free(r);
        return NULL;
    }
    return r;
}

void cm_result_unscanned(clipmod_result *r, clipmod_reason reason, const char *text)
{
    char *t = dup_or_empty(text);
    r->state = CLIPMOD_STATE_UNSCANNED;
    r->action = CLIPMOD_ACTION_ALLOW;
    r->reason = reason;
    r->top_category = NULL;
    if (t) {
        cm_free(r->reason_text);
        r->reason_text = t;
    }
}

clipmod_error cm_result_set_message(clipmod_result *r, const char *msg)
{
    char *m = dup_or_empty(msg);
    if (!m)
        return CLIPMOD_E_NOMEM;
    cm_free(r->message);
    r->message = m;
    return CLIPMOD_OK;
}

void cm_result_decide(clipmod_result *r)
{
    const cm_cat_result *top = NULL;
    for (size_t i = 0; i < r->n_cats; i++) {
        const cm_cat_result *c = &r->cats[i];
        if (!c->s.flagged)
            continue;
        /* Most severe action wins; among equals, the category furthest past its bar. */
        if (!top || c->s.action > top->s.action ||
            (c->s.action == top->s.action && c->s.margin > top->s.margin))
            top = c;
    }
    r->state = top ? CLIPMOD_STATE_FLAGGED : CLIPMOD_STATE_CLEAN;
    r->action = top ? top->s.action : CLIPMOD_ACTION_ALLOW;
    r->top_category = top ? top->s.id : NULL;
}

void clipmod_result_free(clipmod_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_cats; i++) {
        cm_cat_result *c = &r->cats[i];
        for (size_t j = 0; j < c->n_prompts; j++)
            cm_free((char *)c->prompts[j].text);
        cm_free(c->prompts);
        for (size_t j = 0; j < c->n_ctx_prompts; j++)
            cm_free((char *)c->ctx_prompts[j].text);
        cm_free(c->ctx_prompts);
        cm_free((char *)c->s.context_window);
        cm_free((char *)c->s.id);
    }
    cm_free(r->cats);
    for (size_t i = 0; i < r->n_notes; i++) {
        cm_free(r->notes[i].by);
        cm_free(r->notes[i].text);
    }
    cm_free(r->notes);
    cm_free(r->name);
    cm_free(r->reason_text);
    cm_free(r->policy);
    cm_free(r->model);
    cm_free(r->message);
    cm_free(r);
}

clipmod_state clipmod_result_state(const clipmod_result *r)
{
    return r ? r->state : CLIPMOD_STATE_UNSCANNED;
}

clipmod_action clipmod_result_action(const clipmod_result *r)
{
    return r ? r->action : CLIPMOD_ACTION_ALLOW;
}

const char *clipmod_result_name(const clipmod_result *r)
{
    return r ? r->name : "";
}

clipmod_reason clipmod_result_reason(const clipmod_result *r)
{
    return r ? r->reason : CLIPMOD_REASON_NONE;
}

const char *clipmod_result_reason_text(const clipmod_result *r)
{
    return r ? r->reason_text : "";
}

const char *clipmod_result_message(const clipmod_result *r)
{
    return r ? r->message : "";
}

const char *clipmod_result_top_category(const clipmod_result *r)
{
    return r ? r->top_category : NULL;
}

size_t clipmod_result_category_count(const clipmod_result *r)
{
    return r ? r->n_cats : 0;
}

clipmod_error clipmod_result_category(const clipmod_result *r, size_t i,
                                      clipmod_category_score *out)
{
    static const cm_struct_kind kind = {
        "clipmod_category_score",
        CLIPMOD_CATEGORY_SCORE_SIZE_V1,
        sizeof(clipmod_category_score),
        "CLIPMOD_CATEGORY_SCORE_INIT",
    };
    if (!r || !out || i >= r->n_cats)
        return CLIPMOD_E_INVALID_ARG;
    return cm_struct_out(out, &r->cats[i].s, &kind, NULL);
}

clipmod_error clipmod_result_context(const clipmod_result *r, clipmod_context_info *out)
{
    static const cm_struct_kind kind = {
        "clipmod_context_info",
        sizeof(clipmod_context_info),
        sizeof(clipmod_context_info),
        "CLIPMOD_CONTEXT_INFO_INIT",
    };
    if (!r || !out)
        return CLIPMOD_E_INVALID_ARG;
    return cm_struct_out(out, &r->ctx, &kind, NULL);
}

clipmod_error clipmod_result_add_note(clipmod_result *r, const char *by, const char *text)
{
    if (!r || !text)
        return CLIPMOD_E_INVALID_ARG;
    cm_note *grown = cm_realloc(r->notes, (r->n_notes + 1) * sizeof *grown);
    if (!grown)
        return CLIPMOD_E_NOMEM;
    r->notes = grown;
    cm_note *n = &r->notes[r->n_notes];
    n->by = dup_or_empty(by);
    n->text = cm_strdup(text);
    if (!n->by || !n->text) {
        cm_free(n->by);
        cm_free(n->text);
        return CLIPMOD_E_NOMEM;
    }
    r->n_notes++;
    return CLIPMOD_OK;
}

clipmod_error clipmod_result_override(clipmod_result *r, clipmod_action action, const char *by,
                                      const char *why)
{
    if (!r || (unsigned)action > CLIPMOD_ACTION_REJECT)
        return CLIPMOD_E_INVALID_ARG;
    /* An unscanned input stays unscanned: nothing was seen that could be allowed. */
    if (r->state == CLIPMOD_STATE_UNSCANNED && action == CLIPMOD_ACTION_ALLOW)
        return CLIPMOD_E_INVALID_ARG;
    char note[CLIPMOD_ERROR_SIZE];
    snprintf(note, sizeof note, "action %s -> %s%s%s", clipmod_action_name(r->action),
             clipmod_action_name(action), why ? ": " : "", why ? why : "");
    clipmod_error rc = clipmod_result_add_note(r, by, note);
    if (rc)
        return rc;
    r->action = action;
    if (r->state != CLIPMOD_STATE_UNSCANNED)
        r->state = action == CLIPMOD_ACTION_ALLOW ? CLIPMOD_STATE_CLEAN : CLIPMOD_STATE_FLAGGED;
    /* A clean verdict names no deciding category; the scores stay for the record. */
    if (action == CLIPMOD_ACTION_ALLOW)
        r->top_category = NULL;
    return CLIPMOD_OK;
}

/* Round to 4 decimals: scores are not meaningful further, and lines stay short. */
static json_t *num(double v)
{
    return json_real((double)(long long)(v * 10000.0 + (v < 0 ? -0.5 : 0.5)) / 10000.0);
}

/*
 * The builders below check every append: jansson drops a NULL element (a failed
 * allocation) without a word, and a verdict line silently missing a category is
 * worse than none. json_pack's "o" steals its reference even when it fails.
 */
static json_t *prompts_json(const cm_prompt_score *ps, size_t n, size_t limit)
{
    json_t *prompts = json_array();
    int ok = prompts != NULL;
    for (size_t j = 0; j < n && j < limit; j++) {
        const cm_prompt_score *p = &ps[j];
        if (json_array_append_new(prompts, json_pack("{s:s, s:o, s:o, s:s}", "prompt", p->text,
                                                     "probability", num(p->prob), "cosine",
                                                     num(p->cosine), "kind", kind_names[p->kind])))
            ok = 0;
    }
    if (!ok) {
        json_decref(prompts);
        return NULL;
    }
    return prompts;
}

static const char *const ctx_mode_names[] = {"off", "raise", "alone", "both"};

/* What the context did to category c (clipmod-policy(5) CONTEXT); 0, or -1 out of memory. */
static int context_json(json_t *o, const cm_cat_result *c, int explain)
{
    if (c->ctx_mode) {
        json_t *ctx = json_pack("{s:o, s:o, s:o, s:s, s:s?, s:s?}", "score",
                                num(c->s.context_score), "threshold", num(c->ctx_threshold),
                                "weight", num(c->ctx_weight), "mode", ctx_mode_names[c->ctx_mode],
                                "window", c->s.context_window, "prompt", c->s.context_prompt);
        if (ctx && explain &&
            json_object_set_new(ctx, "prompts",
                                prompts_json(c->ctx_prompts, c->n_ctx_prompts, (size_t)-1))) {
            json_decref(ctx);
            return -1;
        }
        if (json_object_set_new(o, "image_score", num(c->s.image_score)) ||
            json_object_set_new(o, "context", ctx))
            return -1;
    }
    if (c->s.flagged && c->s.flagged_by &&
        json_object_set_new(o, "flagged_by", json_string(c->s.flagged_by)))
        return -1;
    return 0;
}

static json_t *category_json(const cm_cat_result *c, size_t limit, int explain)
{
    json_t *prompts = prompts_json(c->prompts, c->n_prompts, limit);
    if (!prompts)
        return NULL;
    /* hit: the score reached the threshold, whatever the action (a watched "allow"
     * category hits without flagging). */
    json_t *o = json_pack("{s:s, s:o, s:o, s:o, s:o, s:b, s:b, s:s, s:i, s:o}", "id", c->s.id,
                          "score", num(c->s.score), "threshold", num(c->s.threshold), "margin",
                          num(c->s.margin), "cosine", num(c->s.cosine), "hit", c->s.margin >= 0,
                          "flagged", c->s.flagged, "action", clipmod_action_name(c->s.action),
                          "frame", c->frame, "top_prompts", prompts);
    /* A category with a learned head says both scores and which one decided. */
    if (o && c->s.score_by && c->s.head_score >= 0 &&
        (json_object_set_new(o, "prompt_score", num(c->s.prompt_score)) ||
         json_object_set_new(o, "head_score", num(c->s.head_score)) ||
         json_object_set_new(o, "score_by", json_string(c->s.score_by)))) {
        json_decref(o);
        return NULL;
    }
    if (o && context_json(o, c, explain)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The result's "context" member: what became of the text that came with the input. */
static json_t *result_context_json(const clipmod_context_info *x)
{
    static const char *const names[] = {"invalid-utf8", "control", "invisible"};
    json_t *cleaned = json_array();
    int ok = cleaned != NULL;
    for (unsigned b = 0; ok && b < 3; b++)
        if ((x->cleaned & (1u << b)) && json_array_append_new(cleaned, json_string(names[b])))
            ok = 0;
    if (!ok) {
        json_decref(cleaned);
        return NULL;
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:b, s:o}", "bytes", (json_int_t)x->bytes, "bytes_used",
                     (json_int_t)x->bytes_used, "windows", (json_int_t)x->windows, "windows_total",
                     (json_int_t)x->windows_total, "cut", x->cut, "cleaned", cleaned);
}

char *clipmod_result_to_json(const clipmod_result *r, int explain)
{
    if (!r)
        return NULL;
    json_t *cats = json_array(), *notes = json_array();
    int ok = cats && notes;
    const size_t limit = explain ? (size_t)-1 : (size_t)r->top_prompts;
    for (size_t i = 0; i < r->n_cats; i++)
        if (json_array_append_new(cats, category_json(&r->cats[i], limit, explain)))
            ok = 0;
    for (size_t i = 0; i < r->n_notes; i++) {
        const cm_note *n = &r->notes[i];
        if (json_array_append_new(notes, json_pack("{s:s, s:s}", "by", n->by, "text", n->text)))
            ok = 0;
    }
    if (!ok) {
        json_decref(cats);
        json_decref(notes);
        return NULL;
    }
    const int unscanned = r->state == CLIPMOD_STATE_UNSCANNED;
    json_t *root = json_pack(
        "{s:i, s:s, s:s, s:s, s:s?, s:s, s:s?, s:s?, s:{s:i, s:i, s:i, s:i}, s:s, s:s, s:b, "
        "s:o, s:o, s:o}",
        "schema_version", SCHEMA_VERSION, "name", r->name, "state", clipmod_state_name(r->state),
        "action", clipmod_action_name(r->action), "category", r->top_category, "message",
        r->message, "reason", unscanned ? clipmod_reason_name(r->reason) : NULL, "reason_text",
        unscanned ? r->reason_text : NULL, "image", "width", r->width, "height", r->height,
        "frames", r->frames_total, "frames_scanned", r->frames_scanned, "policy", r->policy,
        "model", r->model, "demo_model", r->demo_model, "categories", cats, "notes", notes,
        "elapsed_ms", num(r->elapsed_ms));
    if (!root)
        return NULL;
    if (r->ctx.present && json_object_set_new(root, "context", result_context_json(&r->ctx))) {
        json_decref(root);
        return NULL;
    }
    char *s = cm_json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(root);
    return s;
}

/*
 * jansson's json_dumps (2.14 and upstream's dump.c) ignores a failed append of an
 * object key to its growing buffer, so out of memory it can return JSON with keys
 * missing. json_dumpb into a buffer known to be large enough has no such failure:
 * measure, allocate, write.
 */
char *cm_json_dumps(const json_t *root, size_t flags)
{
    size_t n = root ? json_dumpb(root, NULL, 0, flags) : 0;
    if (!n)
        return NULL;
    char *s = cm_alloc(n + 1);
    if (!s)
        return NULL;
    if (json_dumpb(root, s, n, flags) != n) {
        cm_free(s);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

void clipmod_free(void *p)
{
    cm_free(p);
}
