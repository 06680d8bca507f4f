/*
 * test_verdict.c - scores, frame combination and decisions on synthetic cosines.
 *
 * Expected values are worked out by hand from the definitions in clipmod-policy(5):
 * cosines are chosen as logarithms so that exp(scale * cosine) are small integers.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "result.h"

/* Cosines are float32, so sums agree to about 1e-7. */
#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-6)

static void score_is_own_mass_among_candidates(void **state)
{
    /* Prompts 0,1 are the category's, 2 its contrast, 3 neutral. With scale 1,
     * exp(cos) = 3, 1, 4, 2: score = (3 + 1) / (3 + 1 + 4 + 2) = 0.4. */
    const float cos[4] = {logf(3), 0.0f, logf(4), logf(2)};
    size_t cand[4] = {0, 1, 2, 3};
    cm_prompt_kind kind[4] = {CM_KIND_CATEGORY, CM_KIND_CATEGORY, CM_KIND_CONTRAST,
                              CM_KIND_NEUTRAL};
    cm_cat cat = {.cand = cand, .kind = kind, .n_cand = 4, .n_own = 2};
    double score, best, probs[4];
    cm_score_frame(&cat, cos, 1.0f, &score, &best, probs);
    NEAR(score, 0.4);
    NEAR(best, logf(3)); /* the raw cosine is the best of the category's own prompts */
    NEAR(probs[0], 0.3);
    NEAR(probs[2], 0.4);
    NEAR(probs[3], 0.2);

    /* A larger logit scale sharpens: with scale 2, weights 9, 1, 16, 4 -> 10/30. */
    cm_score_frame(&cat, cos, 2.0f, &score, &best, NULL);
    NEAR(score, 1.0 / 3.0);

    /* Candidates are indices into the prompt table: order and sharing are free. */
    size_t cand2[3] = {2, 0, 3};
    cm_cat cat2 = {.cand = cand2, .kind = kind, .n_cand = 3, .n_own = 1};
    cm_score_frame(&cat2, cos, 1.0f, &score, &best, NULL);
    NEAR(score, 4.0 / 9.0);
}

static void frames_combine_by_max_or_k_of_n(void **state)
{
    const double s[4] = {0.2, 0.9, 0.7, 0.5};
    cm_policy p = {.combine = CM_COMBINE_MAX, .k = 1};
    int frame, hits;
    NEAR(cm_combine_frames(s, 4, &p, 0.6, &frame, &hits), 0.9);
    assert_int_equal(frame, 1);
    assert_int_equal(hits, 2);

    p.combine = CM_COMBINE_K_OF_N;
    p.k = 2; /* two frames reach 0.6: flagged, score is the 2nd best */
    NEAR(cm_combine_frames(s, 4, &p, 0.6, &frame, &hits), 0.7);
    assert_int_equal(frame, 2);
    p.k = 3; /* only two do: the 3rd best, 0.5, is under the threshold */
    NEAR(cm_combine_frames(s, 4, &p, 0.6, &frame, &hits), 0.5);
    assert_true(0.5 < 0.6);
    p.k = 8; /* more than the frames sampled: every frame must reach it */
    NEAR(cm_combine_frames(s, 4, &p, 0.6, &frame, &hits), 0.2);
    /* A still image is one frame whatever the rule. */
    NEAR(cm_combine_frames(s + 1, 1, &p, 0.6, &frame, &hits), 0.9);
}

static void add_cat(clipmod_result *r, const char *id, double score, double threshold,
                    clipmod_action action)
{
    cm_cat_result *c = &r->cats[r->n_cats++];
    c->s.id = strdup(id);
    c->s.score = score;
    c->s.threshold = threshold;
    c->s.margin = score - threshold;
    c->s.flagged = score >= threshold && action != CLIPMOD_ACTION_ALLOW;
    c->s.action = action;
}

static clipmod_result *result_with(size_t n)
{
    clipmod_result *r = cm_result_new("x.jpg", "p", "m");
    r->cats = calloc(n, sizeof *r->cats);
    return r;
}

static void decision_follows_severity_then_margin(void **state)
{
    clipmod_result *r = result_with(4);
    add_cat(r, "weapons", 0.95, 0.6, CLIPMOD_ACTION_FLAG);  /* far over, mild action */
    add_cat(r, "gore", 0.61, 0.6, CLIPMOD_ACTION_REJECT);   /* just over, severe */
    add_cat(r, "drugs", 0.59, 0.6, CLIPMOD_ACTION_REJECT);  /* just under: not flagged */
    add_cat(r, "sexual", 0.70, 0.7, CLIPMOD_ACTION_REJECT); /* exactly at: flagged, margin 0 */
    cm_result_decide(r);
    assert_int_equal(clipmod_result_state(r), CLIPMOD_STATE_FLAGGED);
    assert_int_equal(clipmod_result_action(r), CLIPMOD_ACTION_REJECT);
    /* Two rejects: gore's margin 0.01 beats sexual's 0. */
    assert_string_equal(clipmod_result_top_category(r), "gore");
    clipmod_result_free(r);

    r = result_with(2);
    add_cat(r, "a", 0.3, 0.5, CLIPMOD_ACTION_REJECT);
    add_cat(r, "b", 0.49999, 0.5, CLIPMOD_ACTION_FLAG);
    cm_result_decide(r);
    assert_int_equal(clipmod_result_state(r), CLIPMOD_STATE_CLEAN);
    assert_int_equal(clipmod_result_action(r), CLIPMOD_ACTION_ALLOW);
    assert_null(clipmod_result_top_category(r));
    clipmod_result_free(r);

    /* An ALLOW category (watch mode) over its threshold never flags the image. */
    r = result_with(1);
    add_cat(r, "art", 0.9, 0.5, CLIPMOD_ACTION_ALLOW);
    cm_result_decide(r);
    assert_int_equal(clipmod_result_state(r), CLIPMOD_STATE_CLEAN);
    assert_int_equal(clipmod_result_action(r), CLIPMOD_ACTION_ALLOW);
    clipmod_result_free(r);
}

static void overrides_and_unscanned(void **state)
{
    clipmod_result *r = result_with(1);
    add_cat(r, "weapons", 0.9, 0.6, CLIPMOD_ACTION_FLAG);
    cm_result_decide(r);
    assert_int_equal(clipmod_result_override(r, CLIPMOD_ACTION_ALLOW, "allowlist", "trusted"),
                     CLIPMOD_OK);
    assert_int_equal(clipmod_result_state(r), CLIPMOD_STATE_CLEAN);
    char *json = clipmod_result_to_json(r, 0);
    assert_non_null(strstr(
        json, "\"notes\":[{\"by\":\"allowlist\",\"text\":\"action flag -> allow: trusted\"}]"));
    clipmod_free(json);
    clipmod_result_free(r);

    r = cm_result_new("big.png", "p", "m");
    cm_result_unscanned(r, CLIPMOD_REASON_TOO_LARGE, "big.png: 60000000 bytes exceeds the limit");
    assert_int_equal(clipmod_result_state(r), CLIPMOD_STATE_UNSCANNED);
    /* Nothing was seen, so nothing can be allowed. */
    assert_int_equal(clipmod_result_override(r, CLIPMOD_ACTION_ALLOW, "x", NULL),
                     CLIPMOD_E_INVALID_ARG);
    json = clipmod_result_to_json(r, 0);
    assert_non_null(strstr(json, "\"state\":\"unscanned\""));
    assert_non_null(strstr(json, "\"reason\":\"too-large\""));
    clipmod_free(json);
    clipmod_result_free(r);
    clipmod_result_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(score_is_own_mass_among_candidates),
        cmocka_unit_test(frames_combine_by_max_or_k_of_n),
        cmocka_unit_test(decision_follows_severity_then_margin),
        cmocka_unit_test(overrides_and_unscanned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
