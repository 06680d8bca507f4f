/*
 * hooks.c - clipmodd's on-flag command (on-flag: in clipmodd.yaml).
 *
 * Owns turning a finished job's verdicts into runs of the operator's command, as
 * clamd's VirusEvent: every flagged input (and every unscanned one when
 * on-flag.unscanned is true), whichever door it came through (HTTP, tusd hooks,
 * the clamd protocol), with the policy the job was scanned under. Running the
 * program safely (argv exec'd without a shell, the verdict in CLIPMOD_*
 * environment variables only, a timeout, at most max-running at once) is the
 * runtime's (src/common/onflag.h). Set up once at start; reloads keep it.
 */
#include <string.h>

#include "daemon.h"
#include "onflag.h"

static cm_onflag *hook;
static int with_unscanned;

static const char *const sources[IFACE__COUNT] = {"clipmodd:http", "clipmodd:tusd",
                                                  "clipmodd:clamd"};

void verdict_top_score(const clipmod_result *r, double *score, double *threshold)
{
    const char *top = clipmod_result_top_category(r);
    size_t n = clipmod_result_category_count(r);
    double best = -1.0;

    *score = 0.0;
    *threshold = 0.0;
    for (size_t i = 0; i < n; i++) {
        clipmod_category_score cs = CLIPMOD_CATEGORY_SCORE_INIT;
        if (clipmod_result_category(r, i, &cs) != CLIPMOD_OK || !cs.id)
            continue;
        int named = top && *top && !strcmp(cs.id, top);
        if (named || (!(top && *top) && cs.score > best)) {
            best = cs.score;
            *score = cs.score;
            *threshold = cs.threshold;
            if (named)
                return;
        }
    }
}

int hooks_start(const dconfig *c)
{
    char err[160];

    if (!c->onflag_argv.n)
        return 0;
    hook = cm_onflag_new((const char *const *)c->onflag_argv.v, c->onflag_timeout_ms,
                         c->onflag_max_running, err, sizeof err);
    if (!hook) {
        cm_log(CM_LOG_ERROR, "on-flag command refused", CM_LF_S("command", c->onflag_argv.v[0]),
               CM_LF_S("error", err), CM_LF_END);
        return -1;
    }
    with_unscanned = c->onflag_unscanned;
    cm_log(CM_LOG_INFO, "on-flag command set", CM_LF_S("command", c->onflag_argv.v[0]),
           CM_LF_I("timeout_ms", c->onflag_timeout_ms),
           CM_LF_I("max_running", c->onflag_max_running), CM_LF_B("unscanned", with_unscanned),
           CM_LF_END);
    return 0;
}

/* What flagged the deciding category, and the text's score when the text did. */
static void top_context(const clipmod_result *r, cm_onflag_event *ev)
{
    const char *top = clipmod_result_top_category(r);
    for (size_t i = 0; top && i < clipmod_result_category_count(r); i++) {
        clipmod_category_score cs = CLIPMOD_CATEGORY_SCORE_INIT;
        if (clipmod_result_category(r, i, &cs) == CLIPMOD_OK && cs.id && !strcmp(cs.id, top)) {
            ev->flagged_by = cs.flagged_by;
            ev->context_score = cs.context_score;
            return;
        }
    }
}

/* One input's verdict, if the hook wants it. */
static void run_one(const bjob *j, size_t i)
{
    const clipmod_result *r = j->out[i];
    clipmod_state st = clipmod_result_state(r);
    cm_onflag_event ev;

    if (st != CLIPMOD_STATE_FLAGGED && !(st == CLIPMOD_STATE_UNSCANNED && with_unscanned))
        return;
    memset(&ev, 0, sizeof ev);
    ev.verdict = clipmod_state_name(st);
    ev.category = clipmod_result_top_category(r);
    if (ev.category && !*ev.category)
        ev.category = NULL;
    verdict_top_score(r, &ev.score, &ev.threshold);
    top_context(r, &ev);
    ev.action = clipmod_action_name(clipmod_result_action(r));
    ev.filename = j->in[i].name ? j->in[i].name : j->in[i].url;
    ev.source = (unsigned)j->iface < IFACE__COUNT ? sources[j->iface] : "clipmodd";
    ev.policy = j->policy_fp[0] ? j->policy_fp : NULL;
    ev.generation = (long long)j->generation;
    if (st == CLIPMOD_STATE_UNSCANNED)
        ev.reason = clipmod_reason_name(clipmod_result_reason(r));
    /* Skips and failures are logged by the runtime; the verdict stands either way. */
    cm_onflag_run(hook, &ev);
}

void hooks_job(const bjob *j)
{
    if (!hook || j->status != BJ_DONE)
        return;
    for (size_t i = 0; i < j->n; i++)
        if (j->out[i])
            run_one(j, i);
}

void hooks_stop(void)
{
    /* Hooks still running past this are killed at their timeout by their reapers. */
    cm_onflag_free(hook, 2000);
    hook = NULL;
}
