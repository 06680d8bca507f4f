/*
 * engine.c - building an engine: settings, policy, prompt embeddings.
 *
 * ClamAV's life cycle: create, configure, compile, then use read-only from any
 * number of threads. Compiling validates the policy (every problem, with its
 * position), checks that every prompt fits the text tower after templating, and
 * embeds each distinct prompt once: the mean of its template expansions'
 * embeddings, re-normalised (CLIP's prompt ensembling). Embeddings come from the
 * on-disk cache when the same model has seen the same text before.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "common.h"
#include "engine.h"
#include "head.h"
#include "model.h"
#include "ops.h"
#include "plugin_host.h"
#include "ssrf.h"

/* Texts per call to the text tower while compiling. */
#define EMBED_CHUNK 64

/* A policy leaves the SMTP reply unset (NULL) when the message is to be accepted. */
#define SMTP_ACCEPT "250 2.0.0 OK"

/* Append one formatted line to the malloc'd string *buf (NULL when empty). */
static void CM_PRINTF(2, 3) appendf(char **buf, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t old = *buf ? strlen(*buf) : 0, add = strlen(line);
    char *grown = cm_realloc(*buf, old + add + 2);
    if (!grown)
        return;
    memcpy(grown + old, line, add);
    grown[old + add] = '\n';
    grown[old + add + 1] = '\0';
    *buf = grown;
}

clipmod_error clipmod_engine_new(const clipmod_model *model, clipmod_engine **out)
{
    if (!out)
        return CLIPMOD_E_INVALID_ARG;
    *out = NULL;
    if (!model)
        return CLIPMOD_E_INVALID_ARG;
    clipmod_engine *e = cm_calloc(1, sizeof *e);
    if (!e)
        return CLIPMOD_E_NOMEM;
    e->model = model;
    atomic_init(&e->refs, 1);
    for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++)
        e->settings[s] = clipmod_setting_default((clipmod_setting)s);
    char dir[4096];
    cm_cache_default_dir(dir, sizeof dir);
    if (dir[0]) {
        e->cache_dir = cm_strdup(dir);
        if (!e->cache_dir) {
            cm_free(e);
            return CLIPMOD_E_NOMEM;
        }
    }
    *out = e;
    return CLIPMOD_OK;
}

/* Drop what compile built, so a failed compile leaves the engine as it was. */
static void uncompile(clipmod_engine *e)
{
    for (size_t i = 0; i < e->n_prompts; i++)
        cm_free(e->prompts[i]);
    cm_free(e->prompts);
    cm_free(e->prompt_emb);
    cm_ctx_uncompile(e); /* before the categories: each points at its context candidates */
    for (size_t i = 0; i < e->n_cats; i++) {
        cm_free(e->cats[i].cand);
        cm_free(e->cats[i].kind);
        cm_head_free(e->cats[i].head);
    }
    cm_free(e->cats);
    cm_free(e->policy_json);
    cm_policy_free(e->policy);
    e->prompts = NULL;
    e->prompt_emb = NULL;
    e->cats = NULL;
    e->policy_json = NULL;
    e->policy = NULL;
    e->n_prompts = e->n_cats = 0;
    e->compiled = 0;
}

clipmod_engine *clipmod_engine_ref(clipmod_engine *e)
{
    if (e)
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void clipmod_engine_free(clipmod_engine *e)
{
    /* acq_rel: the last holder must see every other holder's writes before freeing. */
    if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    uncompile(e);
    cm_plugins_free(e->plugins);
    cm_overrides_free(e->overrides);
    cm_allow_free(e->fetch_allow);
    cm_free(e->cache_dir);
    cm_free(e);
}

clipmod_error clipmod_engine_set(clipmod_engine *e, clipmod_setting s, uint64_t value)
{
    if (!e || e->compiled || (unsigned)s >= CLIPMOD_SETTING__COUNT)
        return CLIPMOD_E_INVALID_ARG;
    /* Zero would make every input unscannable; a limit is disabled by a big value. */
    if (value == 0 && s != CLIPMOD_TOP_PROMPTS)
        return CLIPMOD_E_INVALID_ARG;
    e->settings[s] = value;
    return CLIPMOD_OK;
}

clipmod_error clipmod_engine_set_cache_dir(clipmod_engine *e, const char *dir)
{
    if (!e || e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    char *copy = dir ? cm_strdup(dir) : NULL;
    if (dir && !copy)
        return CLIPMOD_E_NOMEM;
    cm_free(e->cache_dir);
    e->cache_dir = copy;
    return CLIPMOD_OK;
}

clipmod_error clipmod_engine_load_plugin(clipmod_engine *e, const char *path, const char *config,
                                         char *errbuf)
{
    if (!e || !path || e->compiled)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                        "plugins are loaded into an engine before it is compiled");
    return cm_plugins_load(&e->plugins, path, config, errbuf);
}

clipmod_error clipmod_engine_allow_fetch(clipmod_engine *e, const char *what)
{
    if (!e || !what || e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    return cm_allow_add(&e->fetch_allow, what);
}

clipmod_error cm_intern_init(cm_intern *ix, size_t max_rows)
{
    size_t cap = 64;
    while (cap < 2 * max_rows)
        cap *= 2;
    *ix = (cm_intern){cm_calloc(max_rows ? max_rows : 1, sizeof *ix->text), 0,
                      cm_calloc(cap, sizeof *ix->hash), cm_calloc(cap, sizeof *ix->row), cap};
    if (ix->text && ix->hash && ix->row)
        return CLIPMOD_OK;
    cm_intern_release(ix);
    cm_free(ix->text);
    ix->text = NULL;
    return CLIPMOD_E_NOMEM;
}

long cm_intern_add(cm_intern *ix, const char *text)
{
    const uint64_t h = cm_hash64(text, strlen(text), 7) | 1;
    size_t i = h & (ix->size - 1);
    while (ix->hash[i]) {
        if (ix->hash[i] == h && !strcmp(ix->text[ix->row[i]], text))
            return (long)ix->row[i];
        i = (i + 1) & (ix->size - 1);
    }
    char *copy = cm_strdup(text);
    if (!copy)
        return -1;
    ix->hash[i] = h;
    ix->row[i] = ix->n;
    ix->text[ix->n] = copy;
    return (long)ix->n++;
}

void cm_intern_release(cm_intern *ix)
{
    cm_free(ix->hash);
    cm_free(ix->row);
    ix->hash = NULL;
    ix->row = NULL;
}

/*
 * Check each category's head against the model (size, fingerprint): a head trained
 * for another model is refused, never used. Problems name the policy position.
 */
static clipmod_error load_heads(clipmod_engine *e, char **problems)
{
    char fp[17], err[CLIPMOD_ERROR_SIZE];
    clipmod_error rc = CLIPMOD_OK;
    cm_head_model_fp(e->model, fp);
    for (size_t c = 0; c < e->n_cats; c++) {
        const cm_category *d = e->cats[c].def;
        if (!d->head_bytes)
            continue;
        clipmod_error r =
            cm_head_parse(d->head_bytes, d->head_len, d->head_file,
                          clipmod_model_embed_dim(e->model), fp, d->id, &e->cats[c].head, err);
        if (r == CLIPMOD_E_NOMEM)
            return r;
        if (r) {
            appendf(problems, "%s:%d:%d: head %s", d->head_pos.file, d->head_pos.line,
                    d->head_pos.column, err);
            rc = CLIPMOD_E_POLICY;
        }
    }
    return rc;
}

static clipmod_error build_tables(clipmod_engine *e)
{
    const cm_policy *p = e->policy;
    size_t total = p->n_neutral;
    for (size_t c = 0; c < p->n_categories; c++)
        total += p->categories[c].n_prompts + p->categories[c].n_contrast;
    cm_intern ix;
    clipmod_error rc = cm_intern_init(&ix, total);
    e->prompts = ix.text;
    e->cats = cm_calloc(p->n_categories ? p->n_categories : 1, sizeof *e->cats);
    if (rc || !e->cats) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    e->n_cats = p->n_categories;
    for (size_t c = 0; c < p->n_categories; c++) {
        const cm_category *def = &p->categories[c];
        cm_cat *cat = &e->cats[c];
        size_t n = def->n_prompts + def->n_contrast + p->n_neutral;
        cat->def = def;
        cat->cand = cm_alloc(n * sizeof *cat->cand);
        cat->kind = cm_alloc(n * sizeof *cat->kind);
        if (!cat->cand || !cat->kind) {
            rc = CLIPMOD_E_NOMEM;
            goto out;
        }
        const cm_prompt *lists[3] = {def->prompts, def->contrast, p->neutral};
        const size_t counts[3] = {def->n_prompts, def->n_contrast, p->n_neutral};
        for (int k = 0; k < 3; k++)
            for (size_t j = 0; j < counts[k]; j++) {
                long row = cm_intern_add(&ix, lists[k][j].text);
                e->n_prompts = ix.n;
                if (row < 0) {
                    rc = CLIPMOD_E_NOMEM;
                    goto out;
                }
                cat->cand[cat->n_cand] = (size_t)row;
                cat->kind[cat->n_cand++] = (cm_prompt_kind)k;
            }
        cat->n_own = def->n_prompts;
    }
out:
    cm_intern_release(&ix);
    return rc;
}

/*
 * Embed every prompt as the normalised mean of its template expansions, taking
 * what the cache has and computing the rest in chunks.
 */
clipmod_error cm_engine_embed_table(clipmod_engine *e, char *const *rows, size_t n_rows,
                                    const char *const *templates, size_t n_templates, float **out,
                                    char **problems)
{
    const size_t dim = clipmod_model_embed_dim(e->model);
    const size_t nt = n_templates ? n_templates : 1;
    const size_t n = n_rows * nt;
    char **texts = cm_calloc(n ? n : 1, sizeof *texts);
    float *emb = cm_alloc((n ? n : 1) * dim * sizeof *emb);
    size_t *missing = cm_alloc((n ? n : 1) * sizeof *missing);
    cm_cache *cache = e->cache_dir ? cm_cache_open(e->cache_dir, e->model->fingerprint, dim) : NULL;
    clipmod_error rc = CLIPMOD_OK;
    size_t n_missing = 0;
    char err[CLIPMOD_ERROR_SIZE];

    float *table = *out = cm_calloc(n_rows ? n_rows : 1, dim * sizeof(float));
    if (!texts || !emb || !missing || !table) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n_rows; i++)
        for (size_t t = 0; t < nt; t++) {
            size_t k = i * nt + t;
            texts[k] = cm_policy_expand(n_templates ? templates[t] : "{}", rows[i]);
            if (!texts[k]) {
                rc = CLIPMOD_E_NOMEM;
                goto out;
            }
            const float *hit = cache ? cm_cache_get(cache, texts[k]) : NULL;
            if (hit)
                memcpy(emb + k * dim, hit, dim * sizeof *emb);
            else
                missing[n_missing++] = k;
        }
    for (size_t done = 0; done < n_missing; done += EMBED_CHUNK) {
        const char *chunk[EMBED_CHUNK];
        size_t m = n_missing - done < EMBED_CHUNK ? n_missing - done : EMBED_CHUNK;
        for (size_t j = 0; j < m; j++)
            chunk[j] = texts[missing[done + j]];
        float *tmp = cm_alloc(m * dim * sizeof *tmp);
        if (!tmp) {
            rc = CLIPMOD_E_NOMEM;
            goto out;
        }
        rc = clipmod_embed_texts(e->model, chunk, m, tmp, NULL, err);
        for (size_t j = 0; !rc && j < m; j++) {
            memcpy(emb + missing[done + j] * dim, tmp + j * dim, dim * sizeof *emb);
            if (cache)
                cm_cache_put(cache, chunk[j], tmp + j * dim);
        }
        cm_free(tmp);
        if (rc) {
            appendf(problems, "error: embedding the policy's prompts: %s", err);
            goto out;
        }
    }
    e->texts_computed += n_missing;
    e->texts_cached += n - n_missing;
    for (size_t i = 0; i < n_rows; i++) {
        float *dst = table + i * dim;
        for (size_t t = 0; t < nt; t++)
            cm_add(dst, emb + (i * nt + t) * dim, dim);
    }
    cm_l2_normalize(table, (int)n_rows, (int)dim);
    if (cache && cm_cache_save(cache) != CLIPMOD_OK)
        appendf(problems, "warning: could not write the prompt cache in %s", e->cache_dir);
    if (cm_cache_warning(cache))
        appendf(problems, "warning: prompt cache: %s", cm_cache_warning(cache));
out:
    for (size_t k = 0; texts && k < n; k++)
        cm_free(texts[k]);
    cm_free(texts);
    cm_free(emb);
    cm_free(missing);
    cm_cache_free(cache);
    return rc;
}

/* Every prompt as the normalised mean of its template expansions. */
static clipmod_error embed_prompts(clipmod_engine *e, char **problems)
{
    const cm_policy *p = e->policy;
    return cm_engine_embed_table(e, e->prompts, e->n_prompts, p->templates, p->n_templates,
                                 &e->prompt_emb, problems);
}

/* The policy checker's token counter; `rc` keeps why tokenizing failed (e.g. NOMEM),
 * which the checker's (size_t)-1 cannot carry. */
typedef struct token_counter {
    const clipmod_model *model;
    clipmod_error rc;
} token_counter;

static size_t count_tokens(void *ctx, const char *text, int *truncated)
{
    token_counter *tc = ctx;
    int32_t ids[CLIPMOD_CONTEXT_LENGTH];
    size_t n = 0;
    clipmod_error rc = clipmod_tokenize(tc->model, text, ids, &n, truncated, NULL);
    if (rc) {
        tc->rc = rc;
        return (size_t)-1;
    }
    return n;
}

/*
 * A policy with problems: its prompts that could be read are checked for length too,
 * so that one run reports every problem (these lines follow the parser's).
 */
static void token_problems_too(const clipmod_engine *e, const cm_policy *partial, char **probs)
{
    token_counter tc = {e->model, CLIPMOD_OK};
    char *more = NULL;
    if (!partial || cm_policy_check_tokens(partial, count_tokens, &tc, &more) != CLIPMOD_E_POLICY)
        return;
    const size_t old = *probs ? strlen(*probs) : 0, add = more ? strlen(more) : 0;
    char *grown = add ? cm_realloc(*probs, old + add + 1) : NULL;
    if (grown) {
        memcpy(grown + old, more, add + 1);
        *probs = grown;
    }
    cm_free(more);
}

static const char *action_smtp(const clipmod_engine *e, clipmod_action a)
{
    const char *s = e->policy ? e->policy->actions[a].smtp_reply : NULL;
    return s ? s : SMTP_ACCEPT;
}

/* The JSON summary of policy `p`; `e` (may be NULL) adds the model and settings. */
static char *summary_json(const cm_policy *p, const clipmod_engine *e)
{
    /* Every append is checked: jansson drops a NULL (failed) element without a word. */
    json_t *cats = json_array(), *actions = json_object(), *templates = json_array();
    int ok = cats && actions && templates;
    size_t n_prompts = p->n_neutral;
    for (size_t c = 0; c < p->n_categories; c++) {
        const cm_category *d = &p->categories[c];
        n_prompts += d->n_prompts + d->n_contrast;
        static const char *const modes[] = {"prompts", "head", "max", "mean"};
        if (json_array_append_new(cats, json_pack("{s:s, s:s?, s:f, s:s, s:i, s:i, s:s?, s:s}",
                                                  "id", d->id, "description", d->description,
                                                  "threshold", d->threshold, "action",
                                                  cm_action_name(d->action), "prompts",
                                                  (int)d->n_prompts, "contrast", (int)d->n_contrast,
                                                  "head", d->head_file, "score", modes[d->score])))
            ok = 0;
        static const char *const ctx_modes[] = {"off", "raise", "alone", "both"};
        const cm_context_def *x = &d->context;
        if (x->mode != CM_CTX_OFF &&
            json_object_set_new(json_array_get(cats, c), "context",
                                json_pack("{s:s, s:f, s:f, s:i}", "mode", ctx_modes[x->mode],
                                          "weight", x->weight, "threshold", x->threshold, "prompts",
                                          (int)(x->prompts ? x->n_prompts : d->n_prompts))))
            ok = 0;
    }
    for (int a = 0; a < CM_ACTION__COUNT; a++) {
        const cm_action_text *t = &p->actions[a];
        if (json_object_set_new(actions, cm_action_name((cm_action)a),
                                json_pack("{s:s, s:i, s:s}", "smtp",
                                          t->smtp_reply ? t->smtp_reply : SMTP_ACCEPT, "http",
                                          t->http_status, "message", t->message ? t->message : "")))
            ok = 0;
    }
    for (size_t t = 0; t < p->n_templates; t++)
        if (json_array_append_new(templates, json_string(p->templates[t])))
            ok = 0;
    if (!ok) {
        json_decref(cats);
        json_decref(actions);
        json_decref(templates);
        return NULL;
    }
    json_t *root = json_pack("{s:s, s:i, s:s?, s:s?, s:o, s:i, s:i, s:o, s:o, s:{s:i, s:s, s:i}}",
                             "name", p->name ? p->name : "", "version", p->version, "description",
                             p->description, "written_for", p->model, "templates", templates,
                             "neutral", (int)p->n_neutral, "prompts", (int)n_prompts, "categories",
                             cats, "actions", actions, "animation", "frames", p->frames, "combine",
                             p->combine == CM_COMBINE_MAX ? "max" : "k-of-n", "k", p->k);
    if (root && e) {
        json_t *settings = json_object();
        ok = settings != NULL;
        for (int s = 0; s < CLIPMOD_SETTING__COUNT; s++)
            if (json_object_set_new(settings, clipmod_setting_name((clipmod_setting)s),
                                    json_integer((json_int_t)e->settings[s])))
                ok = 0;
        /* Both calls are made whatever the first gives: each steals its value. */
        if (json_object_set_new(root, "model", json_string(e->model->name)))
            ok = 0;
        if (json_object_set_new(root, "settings", settings))
            ok = 0;
        /* How the prompt embeddings were had: from the cache, or computed now. */
        if (json_object_set_new(root, "prompt_cache",
                                json_pack("{s:s?, s:i, s:i}", "dir", e->cache_dir, "cached",
                                          (json_int_t)e->texts_cached, "computed",
                                          (json_int_t)e->texts_computed)))
            ok = 0;
    }
    char *s = root && ok
                  ? cm_json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))
                  : NULL;
    json_decref(root);
    return s;
}

clipmod_error clipmod_policy_check(const char *path, char **problems, char **summary)
{
    cm_policy *p = NULL;
    char *local = NULL;
    if (summary)
        *summary = NULL;
    if (!path)
        return CLIPMOD_E_INVALID_ARG;
    clipmod_error rc = cm_policy_load(path, &p, problems ? problems : &local);
    if (!rc && summary) {
        *summary = summary_json(p, NULL);
        if (!*summary)
            rc = CLIPMOD_E_NOMEM;
    }
    cm_policy_free(p);
    cm_free(local);
    return rc;
}

clipmod_error clipmod_engine_compile(clipmod_engine *e, const char *policy_path, char **problems)
{
    char *local = NULL, **probs = problems ? problems : &local;
    clipmod_error rc;

    *probs = NULL;
    if (!e || !policy_path || e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    if (!clipmod_model_has_text(e->model)) {
        appendf(probs,
                "%s: the model cannot embed texts (no text tower or no merges.txt), so "
                "it cannot score a policy",
                e->model->name);
        rc = CLIPMOD_E_POLICY;
        goto out;
    }
    cm_policy *partial = NULL;
    rc = cm_policy_load_partial(policy_path, &e->policy, probs, &partial);
    if (rc) {
        token_problems_too(e, partial, probs);
        cm_policy_free(partial);
        goto out;
    }
    rc = cm_overrides_apply(e->overrides, e->policy, probs);
    if (rc)
        goto out;
    token_counter tc = {e->model, CLIPMOD_OK};
    rc = cm_policy_check_tokens(e->policy, count_tokens, &tc, probs);
    if (rc == CLIPMOD_E_TOKENIZER && tc.rc)
        rc = tc.rc;
    if (rc)
        goto out;
    if (e->policy->model && *e->policy->model && strcmp(e->policy->model, e->model->name))
        appendf(probs,
                "%s: warning: the policy was written for %s but the model is %s; its thresholds "
                "may need tuning",
                policy_path, e->policy->model, e->model->name);
    rc = build_tables(e);
    if (!rc)
        rc = load_heads(e, probs);
    if (!rc)
        rc = embed_prompts(e, probs);
    if (!rc)
        rc = cm_ctx_compile(e, probs);
    /* Scanning needs only the prompts' embeddings: hand the text tower's memory back
     * (a quarter of a ViT-B/32 daemon's); the next compile that misses the cache
     * loads it again. A policy that reads context embeds texts at scan time: its
     * tower stays, rather than being loaded again (~1 s) by the first scan. */
    if (!e->n_ctx_prompts)
        cm_model_release_text(e->model);
    if (rc)
        goto out;
    e->policy_json = summary_json(e->policy, e);
    if (!e->policy_json) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    /* Taken by the loader from the bytes it parsed: nothing is read again here. */
    (void)cm_policy_fingerprint(e->policy, e->policy_fingerprint);
    e->compiled = 1;
out:
    if (rc)
        uncompile(e);
    cm_free(local);
    return rc;
}

const char *clipmod_engine_policy_name(const clipmod_engine *e)
{
    if (!e || !e->policy)
        return "";
    return e->policy->name ? e->policy->name : "";
}

char *clipmod_engine_policy_json(const clipmod_engine *e)
{
    return e && e->policy_json ? cm_strdup(e->policy_json) : NULL;
}

const char *clipmod_engine_smtp_reply(const clipmod_engine *e, clipmod_action a)
{
    if (!e || (unsigned)a > CLIPMOD_ACTION_REJECT)
        return "";
    return action_smtp(e, a);
}

int clipmod_engine_http_status(const clipmod_engine *e, clipmod_action a)
{
    if (!e || (unsigned)a > CLIPMOD_ACTION_REJECT)
        return 500;
    /* cm_policy_load() fills every action's status and message with defaults. */
    return e->policy ? e->policy->actions[a].http_status : 500;
}

const char *clipmod_engine_action_message(const clipmod_engine *e, clipmod_action a)
{
    if (!e || (unsigned)a > CLIPMOD_ACTION_REJECT)
        return "";
    const char *s = e->policy ? e->policy->actions[a].message : NULL;
    return s ? s : "";
}
