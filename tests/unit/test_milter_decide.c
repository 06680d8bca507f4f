/*
 * test_milter_decide.c - clipmod-milter's decision rules (plugins/milter/decisions.c).
 *
 * cm_milter_decide() is pure: each test builds the images' verdict states and a
 * configuration and checks the milter action and reply. Covers every configured
 * action, OnFail's three modes, the inside (archive/document) rules, the policy's
 * quarantine reply (4xx defers, 5xx refuses) and the severity order between them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "decisions.h"

#define REJECT_REPLY "550 5.7.1 Refused by policy"

typedef struct fixture {
    cmc_do action[CLIPMOD_ACTION_REJECT + 1];
    cmc_reply on_fail_reply;
    cm_decide_policy p;
} fixture;

/* The defaults of clipmod-milter.yaml: reject rejects, quarantine holds, tempfail. */
static void setup(fixture *x, cmc_fail on_fail)
{
    memset(x, 0, sizeof *x);
    x->action[CLIPMOD_ACTION_ALLOW] = CMC_DO_ACCEPT;
    x->action[CLIPMOD_ACTION_TAG] = CMC_DO_ACCEPT;
    x->action[CLIPMOD_ACTION_FLAG] = CMC_DO_ACCEPT;
    x->action[CLIPMOD_ACTION_QUARANTINE] = CMC_DO_QUARANTINE;
    x->action[CLIPMOD_ACTION_REJECT] = CMC_DO_REJECT;
    assert_int_equal(cmc_parse_reply("451 4.7.1 Scanner unavailable", &x->on_fail_reply), 0);
    x->p.action = x->action;
    x->p.on_fail = on_fail;
    x->p.on_fail_reply = &x->on_fail_reply;
    x->p.reject_reply = REJECT_REPLY;
}

static cm_decision_out run(const fixture *x, const cm_image_verdict *v, size_t n, int failed,
                           cmc_inside inside)
{
    cm_message_facts f = {.images = v, .n_images = n, .failed = failed, .inside = inside};
    cm_decision_out d;
    memset(&d, 0xa5, sizeof d); /* every field must be set by decide */
    cm_milter_decide(&f, &x->p, &d);
    return d;
}

#define CLEAN                                                                                      \
    {                                                                                              \
        CLIPMOD_STATE_CLEAN, CLIPMOD_ACTION_ALLOW                                                  \
    }
#define UNSCANNED                                                                                  \
    {                                                                                              \
        CLIPMOD_STATE_UNSCANNED, CLIPMOD_ACTION_ALLOW                                              \
    }
#define FLAGGED(a)                                                                                 \
    {                                                                                              \
        CLIPMOD_STATE_FLAGGED, CLIPMOD_ACTION_##a                                                  \
    }

static void no_images_accepts(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_decision_out d = run(&x, NULL, 0, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_ACCEPT);
    assert_int_equal(d.n_flagged, 0);
    assert_int_equal(d.n_unscanned, 0);
    assert_false(d.failing);
}

static void all_clean_accepts(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {CLEAN, CLEAN, CLEAN};
    cm_decision_out d = run(&x, v, 3, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_ACCEPT);
    assert_int_equal(d.n_flagged, 0);
}

static void tag_and_flag_accept(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {CLEAN, FLAGGED(TAG), FLAGGED(FLAG)};
    cm_decision_out d = run(&x, v, 3, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_ACCEPT);
    assert_int_equal(d.n_flagged, 2);
    assert_int_equal(d.worst, CLIPMOD_ACTION_FLAG);
    assert_int_equal(d.decider, 2);
}

static void reject_uses_policy_reply(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {CLEAN, FLAGGED(REJECT)};
    cm_decision_out d = run(&x, v, 2, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_REJECT);
    assert_string_equal(d.reply.rcode, "550");
    assert_string_equal(d.reply.xcode, "5.7.1");
    assert_string_equal(d.reply.text, "Refused by policy");
    assert_int_equal(d.decider, 1);
}

/* A policy reply that is not 5xx (or none) cannot reject: the fallback does. */
static void reject_falls_back(void **state)
{
    fixture x;
    cm_image_verdict v[] = {FLAGGED(REJECT)};
    const char *bad[] = {NULL, "451 4.7.1 later", "garbage"};
    for (size_t i = 0; i < 3; i++) {
        setup(&x, CMC_FAIL_TEMPFAIL);
        x.p.reject_reply = bad[i];
        cm_decision_out d = run(&x, v, 1, 0, CMC_INSIDE_ACCEPT);
        assert_int_equal(d.what, CM_DO_REJECT);
        assert_string_equal(d.reply.rcode, "550");
        assert_non_null(strstr(d.reply.text, "not allowed by the content policy"));
    }
}

static void worst_action_wins(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {FLAGGED(TAG), FLAGGED(REJECT), FLAGGED(QUARANTINE), FLAGGED(REJECT)};
    cm_decision_out d = run(&x, v, 4, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_REJECT);
    assert_int_equal(d.worst, CLIPMOD_ACTION_REJECT);
    assert_int_equal(d.decider, 1); /* the first of the most severe */
    assert_int_equal(d.n_flagged, 4);
}

static void quarantine_holds(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {FLAGGED(QUARANTINE)};
    cm_decision_out d = run(&x, v, 1, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_QUARANTINE);
    assert_false(d.for_inside);
}

/* clipmod-policy(5): a quarantine reply of 4xx defers, 5xx refuses, other holds. */
static void quarantine_reply_codes(void **state)
{
    fixture x;
    cm_image_verdict v[] = {FLAGGED(QUARANTINE)};
    setup(&x, CMC_FAIL_TEMPFAIL);
    x.p.quarantine_reply = "452 4.7.1 Held, retry";
    cm_decision_out d = run(&x, v, 1, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_TEMPFAIL);
    assert_string_equal(d.reply.rcode, "452");
    x.p.quarantine_reply = "554 5.7.1 No";
    d = run(&x, v, 1, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_REJECT);
    assert_string_equal(d.reply.rcode, "554");
    x.p.quarantine_reply = "250 2.0.0 fine";
    d = run(&x, v, 1, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_QUARANTINE);
}

/* The reply belongs to the policy's quarantine action, not to a site mapping
 * (a flag action the site chose to quarantine still holds). */
static void mapped_quarantine_ignores_reply(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    x.action[CLIPMOD_ACTION_FLAG] = CMC_DO_QUARANTINE;
    x.p.quarantine_reply = "554 5.7.1 No";
    cm_image_verdict v[] = {FLAGGED(FLAG)};
    cm_decision_out d = run(&x, v, 1, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_QUARANTINE);
}

static void discard_drops(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    x.action[CLIPMOD_ACTION_REJECT] = CMC_DO_DISCARD;
    cm_image_verdict v[] = {FLAGGED(REJECT), UNSCANNED};
    cm_decision_out d = run(&x, v, 2, 0, CMC_INSIDE_REJECT);
    assert_int_equal(d.what, CM_DO_DISCARD); /* refused: nothing else matters */
}

static void all_unscanned_on_fail(void **state)
{
    fixture x;
    cm_image_verdict v[] = {UNSCANNED, UNSCANNED};
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_decision_out d = run(&x, v, 2, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_TEMPFAIL);
    assert_true(d.failing);
    assert_string_equal(d.reply.rcode, "451");
    assert_int_equal(d.n_unscanned, 2);
    assert_int_equal(d.first_unscanned, 0);
    setup(&x, CMC_FAIL_REJECT);
    assert_int_equal(run(&x, v, 2, 0, CMC_INSIDE_ACCEPT).what, CM_DO_REJECT);
    setup(&x, CMC_FAIL_ACCEPT);
    d = run(&x, v, 2, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_ACCEPT);
    assert_true(d.failing);
}

/* A flagged image less than refused does not hide an unjudged one: OnFail decides. */
static void flagged_and_unscanned(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {CLEAN, FLAGGED(QUARANTINE), UNSCANNED};
    cm_decision_out d = run(&x, v, 3, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_TEMPFAIL);
    assert_int_equal(d.first_unscanned, 2);
    assert_int_equal(d.n_flagged, 1);
    /* ... but a refused image needs no other judged. */
    cm_image_verdict r[] = {UNSCANNED, FLAGGED(REJECT)};
    d = run(&x, r, 2, 0, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_REJECT);
    assert_false(d.failing);
}

/* Over max-message-bytes or a failed walk: no images at all, still OnFail. */
static void failed_message(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_decision_out d = run(&x, NULL, 0, 1, CMC_INSIDE_ACCEPT);
    assert_int_equal(d.what, CM_DO_TEMPFAIL);
    assert_true(d.failing);
    setup(&x, CMC_FAIL_ACCEPT);
    assert_int_equal(run(&x, NULL, 0, 1, CMC_INSIDE_REJECT).what, CM_DO_ACCEPT);
}

static void inside_rules(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {CLEAN};
    cm_decision_out d = run(&x, v, 1, 0, CMC_INSIDE_REJECT);
    assert_int_equal(d.what, CM_DO_REJECT);
    assert_true(d.for_inside);
    assert_string_equal(d.reply.rcode, "554");
    d = run(&x, v, 1, 0, CMC_INSIDE_TEMPFAIL);
    assert_int_equal(d.what, CM_DO_TEMPFAIL);
    assert_string_equal(d.reply.rcode, "451");
    d = run(&x, NULL, 0, 0, CMC_INSIDE_QUARANTINE);
    assert_int_equal(d.what, CM_DO_QUARANTINE);
    assert_true(d.for_inside);
    assert_int_equal(run(&x, v, 1, 0, CMC_INSIDE_ACCEPT).what, CM_DO_ACCEPT);
}

/* Inside-reject outranks a quarantined image; a quarantined image names itself. */
static void inside_versus_quarantine(void **state)
{
    fixture x;
    setup(&x, CMC_FAIL_TEMPFAIL);
    cm_image_verdict v[] = {FLAGGED(QUARANTINE)};
    assert_int_equal(run(&x, v, 1, 0, CMC_INSIDE_REJECT).what, CM_DO_REJECT);
    cm_decision_out d = run(&x, v, 1, 0, CMC_INSIDE_QUARANTINE);
    assert_int_equal(d.what, CM_DO_QUARANTINE);
    assert_false(d.for_inside);
}

static void names(void **state)
{
    assert_string_equal(cm_decision_name(CM_DO_ACCEPT), "accept");
    assert_string_equal(cm_decision_name(CM_DO_QUARANTINE), "quarantine");
    assert_string_equal(cm_decision_name(CM_DO_REJECT), "reject");
    assert_string_equal(cm_decision_name(CM_DO_DISCARD), "discard");
    assert_string_equal(cm_decision_name(CM_DO_TEMPFAIL), "tempfail");
    assert_string_equal(cm_decision_name((cm_decision)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_images_accepts),
        cmocka_unit_test(all_clean_accepts),
        cmocka_unit_test(tag_and_flag_accept),
        cmocka_unit_test(reject_uses_policy_reply),
        cmocka_unit_test(reject_falls_back),
        cmocka_unit_test(worst_action_wins),
        cmocka_unit_test(quarantine_holds),
        cmocka_unit_test(quarantine_reply_codes),
        cmocka_unit_test(mapped_quarantine_ignores_reply),
        cmocka_unit_test(discard_drops),
        cmocka_unit_test(all_unscanned_on_fail),
        cmocka_unit_test(flagged_and_unscanned),
        cmocka_unit_test(failed_message),
        cmocka_unit_test(inside_rules),
        cmocka_unit_test(inside_versus_quarantine),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
