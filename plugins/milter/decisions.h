/*
 * decisions.h - what clipmod-milter tells the MTA about one message.
 *
 * Owns cm_milter_decide(): a pure function from the per-image verdict states
 * (clipmod_state values and policy actions), the message-level failure, the action
 * configured for images inside archives and documents, and the configured actions,
 * OnFail and SMTP replies, to one milter action (accept, quarantine, reject,
 * discard, tempfail) with its reply. No I/O, no globals, no string comparisons:
 * every rule of "which outcome wins" lives here, so tests/unit/test_milter_decide.c
 * can cover all of them without a mail server or a model.
 */
#ifndef CLIPMOD_MILTER_DECISIONS_H
#define CLIPMOD_MILTER_DECISIONS_H

#include <stddef.h>

#include <clipmod/clipmod.h>

#include "conf.h"

/* The milter's answer; cm_decision_name() gives the word used in logs. */
typedef enum cm_decision {
    CM_DO_ACCEPT,
    CM_DO_QUARANTINE,
    CM_DO_REJECT,
    CM_DO_DISCARD,
    CM_DO_TEMPFAIL,
} cm_decision;

/* One image the milter found (empty parts are left out: nothing to judge). */
typedef struct cm_image_verdict {
    clipmod_state state;   /* CLIPMOD_STATE_UNSCANNED also for images never scanned */
    clipmod_action action; /* the policy's action; meaningful when flagged */
} cm_image_verdict;

/* What is known about the message once its images were scanned. */
typedef struct cm_message_facts {
    const cm_image_verdict *images;
    size_t n_images;
    /* The message failed as a whole (over max-message-bytes, MIME walk failed, no scan
     * slot in time, engine error): every image not given a verdict counts unscanned. */
    int failed;
    cmc_inside inside; /* most severe action for archives/documents holding images */
} cm_message_facts;

/* The site's configuration, as far as deciding needs it. */
typedef struct cm_decide_policy {
    const cmc_do *action; /* indexed by clipmod_action, CLIPMOD_ACTION_REJECT + 1 entries */
    cmc_fail on_fail;
    const cmc_reply *on_fail_reply;
    const char *reject_reply;     /* the policy's reply for reject; NULL: none */
    const char *quarantine_reply; /* the policy's reply for quarantine; NULL: none */
} cm_decide_policy;

typedef struct cm_decision_out {
    cm_decision what;
    cmc_reply reply;        /* for reject and tempfail */
    size_t n_flagged;       /* images flagged */
    size_t n_unscanned;     /* images without a verdict */
    clipmod_action worst;   /* most severe action among flagged images */
    size_t decider;         /* index of the image that set `worst` (n_flagged > 0) */
    size_t first_unscanned; /* index of the first unscanned image (n_unscanned > 0) */
    int failing;            /* OnFail decided */
    int for_inside;         /* archives-with-images/documents-with-images decided */
} cm_decision_out;

/* Fallback and container replies, also used in messages and tests. */
#define CM_FALLBACK_REJECT                                                                         \
    "550 5.7.1 Message refused: an image is not allowed by the content policy"
#define CM_INSIDE_TEMPFAIL                                                                         \
    "451 4.7.1 Images inside an archive or document of this message cannot be scanned; try "       \
    "again later"
#define CM_INSIDE_REJECT                                                                           \
    "554 5.7.1 Images inside an archive or document of this message cannot be scanned"

/*
 * Decide. Severity: what the policy refuses (reject, discard) > OnFail > the inside
 * rules' reject/tempfail > quarantine > accept. A refused image needs no other image
 * judged; anything less does. Never gives accept for a message with an unjudged image
 * unless on-fail is accept-with-header.
 */
void cm_milter_decide(const cm_message_facts *f, const cm_decide_policy *p, cm_decision_out *out);

const char *cm_decision_name(cm_decision d);

#endif
