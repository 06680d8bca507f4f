/*
 * decisions.c - the milter's decision rules (see decisions.h): a pure function of
 * the images' verdict states and the configuration, so every rule is unit-tested.
 */
#include <string.h>

#include "decisions.h"

const char *cm_decision_name(cm_decision d)
{
    static const char *const names[] = {"accept", "quarantine", "reject", "discard", "tempfail"};
    if ((unsigned)d >= sizeof names / sizeof names[0])
        return "?";
    return names[d];
}

/* Count flagged and unscanned images and find the most severe flagged one. */
static void tally(const cm_message_facts *f, cm_decision_out *out)
{
    for (size_t i = 0; i < f->n_images; i++) {
        const cm_image_verdict *v = &f->images[i];
        if (v->state == CLIPMOD_STATE_UNSCANNED) {
            if (!out->n_unscanned)
                out->first_unscanned = i;
            out->n_unscanned++;
        } else if (v->state == CLIPMOD_STATE_FLAGGED) {
            /* The first of equally severe images decides, as the headers report it. */
            if (!out->n_flagged || v->action > out->worst) {
                out->worst = v->action;
                out->decider = i;
            }
            out->n_flagged++;
        }
    }
}

/* The configured milter action for a policy action; out-of-range counts as reject. */
static cmc_do configured(const cm_decide_policy *p, clipmod_action a)
{
    if ((unsigned)a > CLIPMOD_ACTION_REJECT)
        return CMC_DO_REJECT;
    return p->action[a];
}

static void decide_on_fail(const cm_decide_policy *p, cm_decision_out *out)
{
    out->failing = 1;
    switch (p->on_fail) {
    case CMC_FAIL_TEMPFAIL:
        out->what = CM_DO_TEMPFAIL;
        out->reply = *p->on_fail_reply;
        break;
    case CMC_FAIL_REJECT:
        out->what = CM_DO_REJECT;
        out->reply = *p->on_fail_reply;
        break;
    case CMC_FAIL_ACCEPT:
        out->what = CM_DO_ACCEPT;
        break;
    }
}

/* The policy's reject reply, unless it is missing or not a 5xx (then the fallback). */
static void reject_reply(const cm_decide_policy *p, cmc_reply *r)
{
    if (!p->reject_reply || cmc_parse_reply(p->reject_reply, r) || r->rcode[0] != '5')
        cmc_parse_reply(CM_FALLBACK_REJECT, r);
}

/* clipmod-policy(5): a 4xx quarantine reply defers, a 5xx refuses, none holds. */
static void decide_quarantine(const cm_decide_policy *p, cm_decision_out *out)
{
    cmc_reply q;
    out->what = CM_DO_QUARANTINE;
    if (out->worst != CLIPMOD_ACTION_QUARANTINE || !p->quarantine_reply)
        return;
    if (cmc_parse_reply(p->quarantine_reply, &q))
        return;
    if (q.rcode[0] == '4' || q.rcode[0] == '5') {
        out->what = q.rcode[0] == '4' ? CM_DO_TEMPFAIL : CM_DO_REJECT;
        out->reply = q;
    }
}

void cm_milter_decide(const cm_message_facts *f, const cm_decide_policy *p, cm_decision_out *out)
{
    memset(out, 0, sizeof *out);
    tally(f, out);
    cmc_do act = out->n_flagged ? configured(p, out->worst) : CMC_DO_ACCEPT;
    int refused = act == CMC_DO_REJECT || act == CMC_DO_DISCARD;

    if ((f->failed || out->n_unscanned) && !refused) {
        decide_on_fail(p, out);
    } else if (act == CMC_DO_REJECT) {
        out->what = CM_DO_REJECT;
        reject_reply(p, &out->reply);
    } else if (act == CMC_DO_DISCARD) {
        out->what = CM_DO_DISCARD;
    } else if (f->inside == CMC_INSIDE_REJECT || f->inside == CMC_INSIDE_TEMPFAIL) {
        /* Images the milter can count but not scan, and the site refuses those. */
        int rej = f->inside == CMC_INSIDE_REJECT;
        out->what = rej ? CM_DO_REJECT : CM_DO_TEMPFAIL;
        out->for_inside = 1;
        cmc_parse_reply(rej ? CM_INSIDE_REJECT : CM_INSIDE_TEMPFAIL, &out->reply);
    } else if (act != CMC_DO_QUARANTINE && f->inside == CMC_INSIDE_QUARANTINE) {
        out->what = CM_DO_QUARANTINE;
        out->for_inside = 1;
    } else if (act == CMC_DO_QUARANTINE) {
        decide_quarantine(p, out);
    } else {
        out->what = CM_DO_ACCEPT;
    }
}
