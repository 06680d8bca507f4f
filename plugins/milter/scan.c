/*
 * scan.c - judging one message: from its bytes to a cm_outcome.
 *
 * Owns the skip rules (authenticated senders, listed senders, recipients and
 * domains), the MIME walk's limits, the scan slots (at most `workers` scans at
 * once, so a burst of connections queues for the CPU instead of thrashing it), the
 * one batched forward pass per message through the message's engine with each
 * image's context (the message's text as mailtext.h puts it together, unless
 * `context: off`) for the images the verdict cache (mcache.c) does not answer, and
 * each image's outcome (state, reason, deciding or nearest
 * category, and what the context did to it). Which milter
 * action follows is decisions.c's (a pure function); how it is worded is headers.c's.
 * Everything a message needs is reached through its runtime, never through the
 * current one: a reload never changes the policy under a message.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "milter.h"
#include "onflag.h"

void cm_outcome_free(cm_outcome *o)
{
    free(o->verdict);
    free(o->summary);
    memset(o, 0, sizeof *o);
}

const char *cm_skip_reason(const cmc_config *c, const cm_envelope *env)
{
    if (c->skip_authenticated && env->auth && *env->auth)
        return "authenticated sender";
    if (cmc_match_address(&c->skip_senders, env->sender))
        return "listed sender";
    if (cmc_match_domain(&c->skip_domains, env->sender))
        return "sender in a listed domain";
    /* Recipients skip only when all of them are listed: one listed address must not
     * carry mail for everyone else past the scanner. */
    if (env->n_rcpt && env->n_rcpt_listed == env->n_rcpt)
        return "listed recipients";
    if (env->n_rcpt && env->n_rcpt_in_domains == env->n_rcpt)
        return "recipients in listed domains";
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Scan slots: at most `workers` scans at once                              */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cond;
static int slots_busy, slots_max = 1;

void cm_slots_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&slot_cond, &a);
    pthread_condattr_destroy(&a);
}

void cm_slots_resize(int n)
{
    pthread_mutex_lock(&slot_lock);
    slots_max = n;
    pthread_cond_broadcast(&slot_cond);
    pthread_mutex_unlock(&slot_lock);
}

/* 0 with a slot taken, -1 when none came free within `wait_ms`. */
static int slot_acquire(uint64_t wait_ms)
{
    struct timespec deadline = cm_deadline(CLOCK_MONOTONIC, wait_ms);
    int rc = 0;
    pthread_mutex_lock(&slot_lock);
    while (slots_busy >= slots_max && rc == 0)
        if (pthread_cond_timedwait(&slot_cond, &slot_lock, &deadline) == ETIMEDOUT)
            rc = slots_busy >= slots_max ? -1 : 0;
    if (rc == 0)
        slots_busy++;
    pthread_mutex_unlock(&slot_lock);
    return rc;
}

static void slot_release(void)
{
    pthread_mutex_lock(&slot_lock);
    slots_busy--;
    pthread_cond_signal(&slot_cond);
    pthread_mutex_unlock(&slot_lock);
}

/* ------------------------------------------------------------------------ */
/* One message                                                              */
/* ------------------------------------------------------------------------ */

/* The state of judging one message (freed by work_free). */
typedef struct work {
    const cm_runtime *rt;
    cmm_walk w;
    cm_image_out *io;
    clipmod_input *inputs;
    clipmod_result **results;
    char **labels;
    char **contexts; /* each input's context text, or NULL */
    cm_mkey *keys;   /* each input's verdict cache key */
    size_t n_in;     /* images given to the engine (or answered by the cache) */
    char why[256];
    cm_judged j;
} work;

static void work_free(work *k)
{
    for (size_t i = 0; k->results && i < k->n_in; i++)
        clipmod_result_free(k->results[i]);
    for (size_t i = 0; k->labels && i < k->n_in; i++)
        free(k->labels[i]);
    for (size_t i = 0; k->contexts && i < k->n_in; i++)
        free(k->contexts[i]);
    free(k->labels);
    free(k->contexts);
    free(k->keys);
    free(k->results);
    free(k->inputs);
    free(k->io);
    cmm_walk_free(&k->w);
}

/* The category that decided a flagged image, or the nearest to its threshold. */
static void top_category(cm_image_out *io)
{
    const char *top = clipmod_result_top_category(io->r);
    size_t n = clipmod_result_category_count(io->r);
    double best = -2;
    clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;
    for (size_t i = 0; i < n; i++) {
        if (clipmod_result_category(io->r, i, &c))
            continue;
        if (top ? !strcmp(c.id, top) : c.margin > best) {
            best = c.margin;
            io->category = c.id;
            io->score = c.score;
            io->threshold = c.threshold;
            io->image_score = c.image_score;
            io->context_score = c.context_score;
            io->flagged_by = c.flagged_by;
            io->context_prompt = c.context_prompt;
            io->context_window = c.context_window;
            if (top)
                break;
        }
    }
}

/* Which of the configuration's actions applies to the message's containers. */
static void judge_inside(const cmc_config *c, const cmm_walk *w, cm_inside *in)
{
    memset(in, 0, sizeof *in);
    in->c = w->containers;
    in->n = w->n_containers;
    for (size_t i = 0; i < w->n_containers; i++) {
        const cmm_count *k = &w->containers[i].count;
        cmc_inside a = k->kind == CMM_ZIP ? c->archives_with_images : c->documents_with_images;
        in->images += k->images;
        in->unreadable += (size_t)k->unreadable;
        /* One that cannot be read may hold images: the same rule applies. */
        if ((k->images || k->unreadable) && (!in->decider || a > in->action)) {
            in->decider = &w->containers[i];
            in->action = a;
        }
    }
}

/*
 * Bytes of text an image's context may have: the engine's max-context-bytes (it
 * reads no more of an input's context), or none with `context: off`.
 */
static size_t context_bytes(const cmc_config *c)
{
    if (!c->context)
        return 0;
    for (size_t i = 0; i < c->n_settings; i++)
        if (c->settings[i].s == CLIPMOD_MAX_CONTEXT_BYTES)
            return (size_t)c->settings[i].value;
    return (size_t)clipmod_setting_default(CLIPMOD_MAX_CONTEXT_BYTES);
}

/* Walk the MIME tree (unless the message is over its limit). -1: out of memory. */
static int walk(work *k, const unsigned char *msg, size_t len, const cm_envelope *env)
{
    const cmc_config *c = k->rt->conf;
    cmm_limits lim = {.max_parts = c->limits.max_parts,
                      .max_depth = c->limits.max_depth,
                      .max_images = c->limits.max_images,
                      .max_image_bytes = c->limits.max_image_bytes,
                      .max_text_bytes = context_bytes(c)};
    if (env->over_limit) {
        snprintf(k->why, sizeof k->why, "message larger than %llu bytes",
                 (unsigned long long)c->limits.max_message_bytes);
    } else {
        if (cmm_walk_message(msg, len, &lim, &k->w))
            return -1;
        if (k->w.failed)
            snprintf(k->why, sizeof k->why, "%s", k->w.why);
    }
    judge_inside(c, &k->w, &k->j.in);
    return 0;
}

/* Image `im` as the next input, labelled already, with its context. -1: out of memory. */
static int add_input(work *k, const cmm_image *im)
{
    size_t i = k->n_in++, len; /* counted first: work_free frees its label */
    clipmod_input *in = &k->inputs[i];
    *in = (clipmod_input)CLIPMOD_INPUT_INIT;
    in->data = im->data;
    in->len = im->len;
    in->name = k->labels[i];
    if (cmm_text_context(&k->w.text, im->content_id, im->filename, &k->contexts[i], &len))
        return -1;
    in->context = k->contexts[i];
    in->context_len = len;
    return 0;
}

/* Each image either judged already (empty, refused by the walk) or made an input. */
static int prepare_inputs(work *k)
{
    size_t n = k->w.n_images;
    if (!n)
        return 0;
    k->io = calloc(n, sizeof *k->io);
    k->inputs = calloc(n, sizeof *k->inputs);
    k->results = calloc(n, sizeof *k->results);
    k->labels = calloc(n, sizeof *k->labels);
    k->contexts = calloc(n, sizeof *k->contexts);
    k->keys = calloc(n, sizeof *k->keys);
    if (!k->io || !k->inputs || !k->results || !k->labels || !k->contexts || !k->keys)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const cmm_image *im = &k->w.images[i];
        cm_image_out *o = &k->io[i];
        char label[160];
        o->im = im;
        if (im->problem == CMM_EMPTY) {
            o->judged = o->empty = 1;
            continue;
        }
        k->j.n_images++;
        if (im->problem != CMM_OK) {
            o->judged = 1;
            o->vstate = CLIPMOD_STATE_UNSCANNED;
            o->reason = cmm_problem_name(im->problem);
            continue;
        }
        cm_image_label(im, label, sizeof label);
        k->labels[k->n_in] = strdup(label);
        if (!k->labels[k->n_in] || add_input(k, im))
            return -1;
    }
    return 0;
}

/*
 * One batched forward pass, in a scan slot, for the `left` inputs the cache did not
 * answer (all of them when it answered none): their results into k->results.
 */
static void scan_misses(work *k, size_t left)
{
    const cmc_config *c = k->rt->conf;
    clipmod_input *in = k->inputs;
    clipmod_result **out = k->results;
    size_t *at = NULL, m = 0;
    clipmod_error err;

    if (left < k->n_in) {
        in = calloc(left, sizeof *in);
        out = calloc(left, sizeof *out);
        at = calloc(left, sizeof *at);
        if (!in || !out || !at) {
            snprintf(k->why, sizeof k->why, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < k->n_in; i++)
            if (!k->results[i]) {
                at[m] = i;
                in[m++] = k->inputs[i];
            }
    }
    if (slot_acquire(c->scan_wait_ms)) {
        snprintf(k->why, sizeof k->why, "timeout: no scanner free within %llu ms",
                 (unsigned long long)c->scan_wait_ms);
        goto done;
    }
    err = clipmod_scan_batch(k->rt->engine, in, left, out);
    slot_release();
    if (err) {
        memset(out, 0, left * sizeof *out);
        snprintf(k->why, sizeof k->why, "engine error: %s", clipmod_strerror(err));
    }
    for (size_t i = 0; at && i < m; i++)
        k->results[at[i]] = out[i];
done:
    if (left < k->n_in) {
        free(in);
        free(out);
        free(at);
    }
}

/*
 * Every image of the message judged: those the verdict cache knows from it, the
 * others in one batched pass; then the new verdicts are kept for the next time.
 */
static void scan_batch(work *k)
{
    size_t left;
    if (!k->n_in || *k->why)
        return;
    left = cm_mcache_lookup(k->rt, k->inputs, k->n_in, k->keys, k->results);
    for (size_t i = 0; i < k->n_in; i++) {
        k->j.cache_hits += k->keys[i].cached;
        k->j.cache_misses += k->keys[i].keyed && !k->keys[i].cached;
    }
    if (left)
        scan_misses(k, left);
    cm_mcache_store(k->keys, k->results, k->n_in);
}

/* The engine's results into the images' outcomes. */
static void take_results(work *k)
{
    for (size_t i = 0, r = 0; i < k->w.n_images && k->results && !*k->why; i++) {
        cm_image_out *o = &k->io[i];
        if (o->judged)
            continue;
        o->cached = k->keys[r].cached;
        o->r = k->results[r++];
        o->judged = 1;
        o->vstate = clipmod_result_state(o->r);
        if (o->vstate == CLIPMOD_STATE_UNSCANNED)
            o->reason = clipmod_reason_name(clipmod_result_reason(o->r));
        o->action = clipmod_result_action(o->r);
        if (o->vstate != CLIPMOD_STATE_UNSCANNED)
            top_category(o);
    }
}

/* Count flagged and unscanned images; say why when some were not judged. */
static void tally(work *k)
{
    cm_judged *j = &k->j;
    for (size_t i = 0; i < k->w.n_images; i++) {
        cm_image_out *o = &k->io[i];
        if (!o->judged) {
            /* Never given to the engine: the message failed as a whole (why says how). */
            o->judged = 1;
            o->vstate = CLIPMOD_STATE_UNSCANNED;
            o->reason = "not-scanned";
        }
        if (o->empty)
            continue;
        if (o->vstate == CLIPMOD_STATE_UNSCANNED) {
            j->n_unscanned++;
            if (!j->first_unscanned)
                j->first_unscanned = o;
        } else if (o->vstate == CLIPMOD_STATE_FLAGGED) {
            j->n_flagged++;
            if (!j->decider || o->action > j->worst) {
                j->worst = o->action;
                j->decider = o;
            }
        }
    }
    if (!*k->why && j->first_unscanned) {
        char label[160];
        cm_image_label(j->first_unscanned->im, label, sizeof label);
        snprintf(k->why, sizeof k->why, "%zu image%s not scanned (%s: %s)", j->n_unscanned,
                 j->n_unscanned == 1 ? "" : "s", label, j->first_unscanned->reason);
    }
}

/* on-flag: the operator's program once per flagged image, the verdict in its environment. */
static void run_hooks(const work *k, const cm_envelope *env)
{
    const char *fp = clipmod_engine_policy_fingerprint(k->rt->engine);
    if (!k->rt->hook || !env->run_hooks)
        return;
    for (size_t i = 0; i < k->w.n_images; i++) {
        const cm_image_out *o = &k->io[i];
        if (o->empty || o->vstate != CLIPMOD_STATE_FLAGGED)
            continue;
        /* The file name as the sender wrote it: onflag.c only replaces control
         * characters, and no shell ever sees it. */
        cm_onflag_event ev = {.verdict = "flagged",
                              .category = o->category,
                              .action = clipmod_action_name(o->action),
                              .filename = o->im->filename,
                              .source = "milter",
                              .policy = fp,
                              .score = o->score,
                              .threshold = o->threshold,
                              .flagged_by = o->flagged_by,
                              .context_score = o->context_score,
                              .generation = (long long)k->rt->generation};
        cm_onflag_run(k->rt->hook, &ev);
    }
}

/*
 * Hand the images' verdict states and the configuration to cm_milter_decide()
 * (decisions.c, pure) and copy its answer into `out`. -1: out of memory.
 */
static int decide_what(work *k, cm_outcome *out, cm_decision_out *d)
{
    const cm_runtime *rt = k->rt;
    const cmc_config *c = rt->conf;
    cm_image_verdict *v = calloc(k->w.n_images ? k->w.n_images : 1, sizeof *v);
    size_t n = 0;
    if (!v)
        return -1;
    for (size_t i = 0; i < k->w.n_images; i++) {
        if (k->io[i].empty)
            continue;
        v[n].state = k->io[i].vstate;
        v[n].action = k->io[i].action;
        n++;
    }
    cm_message_facts f = {
        .images = v, .n_images = n, .failed = *k->why != 0, .inside = k->j.in.action};
    cm_decide_policy p = {
        .action = c->action,
        .on_fail = c->on_fail,
        .on_fail_reply = &c->on_fail_reply,
        .reject_reply = clipmod_engine_smtp_reply(rt->engine, CLIPMOD_ACTION_REJECT),
        .quarantine_reply = clipmod_engine_smtp_reply(rt->engine, CLIPMOD_ACTION_QUARANTINE),
    };
    cm_milter_decide(&f, &p, d);
    free(v);
    out->what = d->what;
    out->reply = d->reply;
    return 0;
}

int cm_judge_message(const cm_runtime *rt, const unsigned char *msg, size_t len,
                     const cm_envelope *env, cm_outcome *out)
{
    const char *skip = cm_skip_reason(rt->conf, env);
    char from[128];
    cm_decision_out d;
    work k;
    int rc = -1;

    memset(out, 0, sizeof *out);
    memset(&k, 0, sizeof k);
    k.rt = rt;
    cm_clean_text(from, sizeof from, env->sender, 100);
    if (skip) {
        rc = cm_words_skipped(rt, skip, from, out);
        goto out;
    }
    if (walk(&k, msg, len, env) || prepare_inputs(&k))
        goto out;
    scan_batch(&k);
    take_results(&k);
    tally(&k);
    run_hooks(&k, env);
    if (decide_what(&k, out, &d))
        goto out;
    k.j.rt = rt;
    k.j.io = k.io;
    k.j.n_io = k.w.n_images;
    k.j.why = *k.why ? k.why : NULL;
    k.j.from = from;
    rc = cm_words_judged(&k.j, d.for_inside, out);
out:
    work_free(&k);
    if (rc)
        cm_outcome_free(out);
    return rc;
}
