/*
 * headers.c - the words clipmod-milter tells a judged message in.
 *
 * Owns the values of the verdict header (X-Clipmod-Verdict, see clipmod-milter(8),
 * HEADERS: the state, the policy's name, fingerprint and generation, the counts,
 * then one folded line per image and per archive or document), the one-line
 * summary header, the quarantine reason the MTA records, and the milter's log line
 * for the message, each saying what the message's text did when it was scored as
 * the images' context (flagged by image+context, the image's and the text's scores) and
 * which verdicts the verdict cache gave (cached=yes, cache_hits=). Everything a
 * sender controls (file names, addresses) passes through cm_clean_text() first, so no header can be
 * split or forged by a name. Which action the MTA is told is decisions.c's; the scan that gives the
 * verdicts is scan.c's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "milter.h"

/* Header values are folded before this many characters, as RFC 5322 recommends. */
#define FOLD_AT 78

void cm_clean_text(char *dst, size_t size, const char *src, size_t max)
{
    size_t k = 0;
    if (max + 4 > size)
        max = size - 4;
    for (const unsigned char *p = (const unsigned char *)(src ? src : ""); *p; p++) {
        if (k >= max) {
            memcpy(dst + k, "...", 3);
            k += 3;
            break;
        }
        dst[k++] = *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\' && *p != ';' ? (char)*p : '_';
    }
    dst[k] = 0;
}

void cm_image_label(const cmm_image *im, char *buf, size_t size)
{
    char name[80];
    cm_clean_text(name, sizeof name, im->filename ? im->filename : "", 60);
    snprintf(buf, size, "%s%s%s", im->part, *name ? " " : "", name);
}

/* ------------------------------------------------------------------------ */
/* Folded header values                                                     */
/* ------------------------------------------------------------------------ */

/*
 * A header value that folds before FOLD_AT columns, between tokens, in one capped
 * buffer (dynbuf.h): past HEADER_MAX or out of memory, the value is refused whole
 * rather than cut (the message is then deferred, never delivered with half a verdict).
 */
#define HEADER_MAX (256 * 1024)

typedef struct hbuf {
    cm_dbuf b;
    size_t col;
    int failed;
} hbuf;

static void hb_init(hbuf *h)
{
    cm_dbuf_init(&h->b, HEADER_MAX);
    h->col = 0;
    h->failed = 0;
}

static void hb_raw(hbuf *h, const char *s, size_t n)
{
    if (!h->failed && cm_dbuf_addn(&h->b, s, n))
        h->failed = 1;
}

/* Append a token, preceded by a space or by a fold when the line would get long. */
__attribute__((format(printf, 2, 3))) static void hb_tok(hbuf *h, const char *fmt, ...)
{
    char tok[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tok, sizeof tok, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof tok)
        n = sizeof tok - 1;
    if (cm_dbuf_len(&h->b)) {
        if (h->col + 1 + (size_t)n > FOLD_AT) {
            /* libmilter and Postfix take "\n\t" inside a value as a fold. */
            hb_raw(h, "\n\t", 2);
            h->col = 8;
        } else {
            hb_raw(h, " ", 1);
            h->col++;
        }
    }
    hb_raw(h, tok, (size_t)n);
    h->col += (size_t)n;
}

/* ";" then, with `newline`, the next token starts a line of its own. */
static void hb_semi(hbuf *h, int newline)
{
    hb_raw(h, ";", 1);
    if (newline)
        h->col = FOLD_AT;
    else
        h->col++;
}

/* The value built (the caller frees it), or NULL when it could not be. */
static char *hb_take(hbuf *h)
{
    char *v;
    if (h->failed) {
        cm_dbuf_free(&h->b);
        return NULL;
    }
    v = cm_dbuf_take(&h->b, NULL);
    return v ? v : strdup("");
}

/* "; fingerprint=<sha256>; generation=N": names the exact policy that judged. */
static void hb_policy_id(hbuf *h, const cm_runtime *rt)
{
    const char *fp = clipmod_engine_policy_fingerprint(rt->engine);
    hb_semi(h, 0);
    hb_tok(h, "fingerprint=%s;", fp && *fp ? fp : "none");
    hb_tok(h, "generation=%lu", rt->generation);
}

/* ------------------------------------------------------------------------ */
/* X-Clipmod-Verdict                                                        */
/* ------------------------------------------------------------------------ */

/* "; container=2 name="photos.zip" kind=zip entries=4 images=3" per container. */
static void verdict_containers(hbuf *h, const cm_inside *in)
{
    char text[200];
    for (size_t i = 0; i < in->n; i++) {
        const cmm_container *c = &in->c[i];
        hb_semi(h, 1);
        hb_tok(h, "container=%s", c->part);
        if (c->filename) {
            cm_clean_text(text, sizeof text, c->filename, 60);
            hb_tok(h, "name=\"%s\"", text);
        }
        hb_tok(h, "kind=%s", cmm_container_kind_name(c->count.kind));
        if (c->count.unreadable) {
            cm_clean_text(text, sizeof text, c->count.why, 100);
            hb_tok(h, "state=unreadable reason=\"%s\"", text);
        } else if (c->count.kind == CMM_PDF) {
            hb_tok(h, "images=%zu", c->count.images);
        } else {
            hb_tok(h, "entries=%zu images=%zu", c->count.entries, c->count.images);
        }
    }
}

/*
 * What the context did to an image's deciding (or nearest) category: "flagged-by=..."
 * for a flagged image, and when its text was scored "image-score=0.2020
 * context-score=0.7300 context-prompt="pistol" context-text="..."" (the words of the
 * policy and of the mail cleaned to printable ASCII, short: the header never carries
 * the mail's text as it came).
 */
static void verdict_context(hbuf *h, const cm_image_out *o)
{
    char text[64];
    if (o->flagged_by && o->vstate == CLIPMOD_STATE_FLAGGED)
        hb_tok(h, "flagged-by=%s", o->flagged_by);
    if (o->context_score < 0)
        return;
    hb_tok(h, "image-score=%.4f context-score=%.4f", o->image_score, o->context_score);
    if (o->context_prompt) {
        cm_clean_text(text, sizeof text, o->context_prompt, 40);
        hb_tok(h, "context-prompt=\"%s\"", text);
    }
    if (o->context_window) {
        cm_clean_text(text, sizeof text, o->context_window, 40);
        hb_tok(h, "context-text=\"%s\"", text);
    }
}

/* "; image=2 name="a.png" state=flagged action=reject category=x score=0.3 scores=..." */
static void verdict_image(hbuf *h, const cm_image_out *o)
{
    char text[256];
    hb_semi(h, 1);
    hb_tok(h, "image=%s", o->im->part);
    if (o->im->filename) {
        cm_clean_text(text, sizeof text, o->im->filename, 60);
        hb_tok(h, "name=\"%s\"", text);
    }
    hb_tok(h, "state=%s", o->empty ? "empty" : clipmod_state_name(o->vstate));
    if (o->reason) {
        hb_tok(h, "reason=%s", o->reason);
        return;
    }
    if (!o->r)
        return;
    hb_tok(h, "action=%s", clipmod_action_name(o->action));
    if (o->category) {
        hb_tok(h, "category=%s score=%.4f", o->category, o->score);
        verdict_context(h, o);
    }
    /* Every category's score: "scores=a:0.1234, b:0.0456", foldable between. */
    size_t nc = clipmod_result_category_count(o->r);
    clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;
    for (size_t k = 0; k < nc; k++)
        if (!clipmod_result_category(o->r, k, &c))
            hb_tok(h, "%s%s:%.4f%s", k ? "" : "scores=", c.id, c.score, k + 1 < nc ? "," : "");
    /* Last, so the words before it read the same whether the verdict was scanned now. */
    if (o->cached)
        hb_tok(h, "cached=yes");
}

static char *verdict_value(const cm_judged *j, const char *state, const char *policy_action)
{
    hbuf h;
    char text[256];

    hb_init(&h);
    hb_tok(&h, "%s;", state);
    if (policy_action)
        hb_tok(&h, "action=%s;", policy_action);
    cm_clean_text(text, sizeof text, clipmod_engine_policy_name(j->rt->engine), 120);
    hb_tok(&h, "policy=\"%s\";", text);
    hb_tok(&h, "images=%zu;", j->n_images);
    hb_tok(&h, "flagged=%zu;", j->n_flagged);
    hb_tok(&h, "unscanned=%zu", j->n_unscanned);
    hb_policy_id(&h, j->rt);
    if (j->in.n) {
        hb_semi(&h, 0);
        hb_tok(&h, "contained-images=%zu", j->in.images);
    }
    if (j->why) {
        cm_clean_text(text, sizeof text, j->why, 160);
        hb_semi(&h, 0);
        hb_tok(&h, "reason=\"%s\"", text);
    }
    for (size_t i = 0; i < j->n_io; i++)
        verdict_image(&h, &j->io[i]);
    verdict_containers(&h, &j->in);
    return hb_take(&h);
}

/* ------------------------------------------------------------------------ */
/* Summary, quarantine reason, log line                                     */
/* ------------------------------------------------------------------------ */

/* "flagged (reject): 2 a.png: cat 0.310 >= 0.250" details of the deciding image. */
static void decider_detail(const cm_judged *j, char *buf, size_t size)
{
    const cm_image_out *d = j->decider;
    const char *by = d && d->context_score >= 0 ? d->flagged_by : NULL;
    char label[160], prompt[64];
    *buf = 0;
    if (!d)
        return;
    cm_image_label(d->im, label, sizeof label);
    cm_clean_text(prompt, sizeof prompt, d->context_prompt ? d->context_prompt : "", 40);
    if (by && !strcmp(by, "context"))
        /* The text alone reached the context threshold (modes alone and both). */
        snprintf(buf, size, "%s: %s by context %.3f (%s; image %.3f < %.3f)", label, d->category,
                 d->context_score, prompt, d->image_score, d->threshold);
    else if (by && !strcmp(by, "image+context"))
        snprintf(buf, size, "%s: %s %.3f >= %.3f by image+context (image %.3f, context %.3f: %s)",
                 label, d->category, d->score, d->threshold, d->image_score, d->context_score,
                 prompt);
    else
        snprintf(buf, size, "%s: %s %.3f >= %.3f", label, d->category, d->score, d->threshold);
}

/* The summary's first sentence. -1: out of memory. */
static int summary_head(const cm_judged *j, const cm_outcome *o, const char *detail, char **out)
{
    size_t ni = j->n_images;
    if (j->n_flagged)
        return asprintf(out, "flagged (%s): %s; %zu of %zu image%s flagged%s",
                        clipmod_action_name(j->worst), detail, j->n_flagged, ni, ni == 1 ? "" : "s",
                        o->what == CM_DO_QUARANTINE ? "; held for review" : "") < 0
                   ? -1
                   : 0;
    if (j->why)
        return asprintf(out, "unscanned: %s; delivered per on-fail", j->why) < 0 ? -1 : 0;
    if (ni)
        return asprintf(out, "clean: %zu image%s scanned, none flagged", ni, ni == 1 ? "" : "s") < 0
                   ? -1
                   : 0;
    return asprintf(out, "clean: no images") < 0 ? -1 : 0;
}

/* X-Clipmod-Summary: one line a person reads in a mail client. -1: out of memory. */
static int summary_value(const cm_judged *j, const cm_outcome *o, const char *detail, char **out)
{
    const cm_inside *in = &j->in;
    *out = NULL;
    if (summary_head(j, o, detail, out)) {
        *out = NULL;
        return -1;
    }
    if (in->images || in->unreadable) {
        char *longer = NULL;
        if (asprintf(&longer, "%s; %zu image%s inside %zu archive%s or document%s, not scanned%s%s",
                     *out, in->images, in->images == 1 ? "" : "s", in->n, in->n == 1 ? "" : "s",
                     in->n == 1 ? "" : "s", in->unreadable ? ", some unreadable" : "",
                     o->what == CM_DO_QUARANTINE && !j->n_flagged ? "; held for review" : "") < 0)
            return -1;
        free(*out);
        *out = longer;
    }
    /* The summary is one line: strip what the sender controls. */
    for (char *p = *out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '_';
    return 0;
}

static void quarantine_reason(const cm_judged *j, int for_inside, const char *detail,
                              cm_outcome *out)
{
    if (for_inside) {
        const cmm_container *d = j->in.decider;
        char name[80];
        cm_clean_text(name, sizeof name, d->filename ? d->filename : "", 60);
        snprintf(out->quarantine, sizeof out->quarantine,
                 "clipmod: %s %s: images inside, not scanned", d->part, name);
    } else {
        snprintf(out->quarantine, sizeof out->quarantine, "clipmod: %s", detail);
    }
}

/* The log line's facts of a judged message. */
static void log_facts(const cm_judged *j, const char *state, cm_outcome *out)
{
    cm_outcome_facts *f = &out->facts;
    f->state = state;
    snprintf(f->from, sizeof f->from, "%s", j->from);
    f->images = j->n_images;
    f->flagged = j->n_flagged;
    f->unscanned = j->n_unscanned;
    f->containers = j->in.n;
    f->contained_images = j->in.images;
    f->some_unreadable = j->in.unreadable != 0;
    f->action = j->n_flagged ? clipmod_action_name(j->worst) : NULL;
    if (j->decider) {
        snprintf(f->category, sizeof f->category, "%s", j->decider->category);
        f->score = j->decider->score;
        f->threshold = j->decider->threshold;
        snprintf(f->flagged_by, sizeof f->flagged_by, "%s",
                 j->decider->flagged_by ? j->decider->flagged_by : "");
        f->image_score = j->decider->image_score;
        f->context_score = j->decider->context_score;
        cm_clean_text(f->context_prompt, sizeof f->context_prompt,
                      j->decider->context_prompt ? j->decider->context_prompt : "", 56);
        cm_image_label(j->decider->im, f->image, sizeof f->image);
    }
    snprintf(f->reason, sizeof f->reason, "%s", j->why ? j->why : "");
    f->cache_hits = j->cache_hits;
    f->cache_misses = j->cache_misses;
    snprintf(f->policy_name, sizeof f->policy_name, "%s",
             clipmod_engine_policy_name(j->rt->engine));
}

void cm_outcome_log(const char *qid, const cm_outcome *o, uint64_t size, double ms)
{
    const cm_outcome_facts *f = &o->facts;
    int flagged = f->flagged > 0;
    /* Counts of archives and documents only when there were some. */
    cm_log_field containers =
        f->containers ? CM_LF_I("containers", f->containers) : CM_LF_S("containers", NULL);
    cm_log_field contained = f->containers ? CM_LF_I("contained_images", f->contained_images)
                                           : CM_LF_S("contained_images", NULL);
    /* What the text did, for a flagged message whose deciding category scored it. */
    int ctx = flagged && f->context_score >= 0;
    /* The verdict cache's hits and misses of the message, when there is a cache. */
    int vc = cm_mcache_enabled();

    cm_log(CM_LOG_INFO, "milter verdict", CM_LF_S("qid", qid), CM_LF_S("from", f->from),
           CM_LF_S("state", f->state), CM_LF_S("decision", cm_decision_name(o->what)),
           CM_LF_I("images", f->images), CM_LF_I("flagged", f->flagged),
           CM_LF_I("unscanned", f->unscanned), containers, contained,
           CM_LF_S("unreadable", f->some_unreadable ? "some" : NULL), CM_LF_S("action", f->action),
           CM_LF_S("category", flagged ? f->category : NULL),
           flagged ? CM_LF_F("score", f->score) : CM_LF_S("score", NULL),
           flagged ? CM_LF_F("threshold", f->threshold) : CM_LF_S("threshold", NULL),
           CM_LF_S("flagged_by", flagged && *f->flagged_by ? f->flagged_by : NULL),
           ctx ? CM_LF_F("image_score", f->image_score) : CM_LF_S("image_score", NULL),
           ctx ? CM_LF_F("context_score", f->context_score) : CM_LF_S("context_score", NULL),
           CM_LF_S("context_prompt", ctx && *f->context_prompt ? f->context_prompt : NULL),
           CM_LF_S("image", flagged ? f->image : NULL),
           CM_LF_S("reason", *f->reason ? f->reason : NULL),
           vc ? CM_LF_I("cache_hits", f->cache_hits) : CM_LF_S("cache_hits", NULL),
           vc ? CM_LF_I("cache_misses", f->cache_misses) : CM_LF_S("cache_misses", NULL),
           CM_LF_S("policy_name", f->policy_name), CM_LF_I("bytes", size), CM_LF_F("ms", ms),
           CM_LF_END);
}

int cm_words_judged(const cm_judged *j, int for_inside, cm_outcome *out)
{
    const cmc_config *c = j->rt->conf;
    const char *state = j->n_flagged ? "flagged" : j->why ? "unscanned" : "clean";
    char detail[448];

    decider_detail(j, detail, sizeof detail);
    if (out->what == CM_DO_QUARANTINE)
        quarantine_reason(j, for_inside, detail, out);
    if (out->what == CM_DO_ACCEPT || out->what == CM_DO_QUARANTINE) {
        const char *pa = j->n_flagged ? clipmod_action_name(j->worst) : j->why ? NULL : "allow";
        out->verdict = verdict_value(j, state, pa);
        if (!out->verdict)
            return -1;
        if (c->summary_header && summary_value(j, out, detail, &out->summary))
            return -1;
    }
    log_facts(j, state, out);
    return 0;
}

int cm_words_skipped(const cm_runtime *rt, const char *skip, const char *from, cm_outcome *out)
{
    hbuf h;
    char text[160];

    hb_init(&h);
    cm_clean_text(text, sizeof text, clipmod_engine_policy_name(rt->engine), 120);
    hb_tok(&h, "skipped;");
    hb_tok(&h, "reason=\"%s\";", skip);
    hb_tok(&h, "policy=\"%s\"", text);
    hb_policy_id(&h, rt);
    out->what = CM_DO_ACCEPT;
    out->verdict = hb_take(&h);
    if (!out->verdict)
        return -1;
    if (rt->conf->summary_header && asprintf(&out->summary, "skipped: %s, not scanned", skip) < 0) {
        out->summary = NULL;
        return -1;
    }
    out->facts.state = "skipped";
    snprintf(out->facts.from, sizeof out->facts.from, "%s", from);
    snprintf(out->facts.reason, sizeof out->facts.reason, "%s", skip);
    snprintf(out->facts.policy_name, sizeof out->facts.policy_name, "%s",
             clipmod_engine_policy_name(rt->engine));
    return 0;
}
