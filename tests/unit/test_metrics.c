/*
 * test_metrics.c - ROC AUC, average precision and the threshold search of
 * `clipmod policy evaluate` (src/cli/metrics.c) on hand-made cases.
 *
 * The expected numbers are the independent numpy reference's
 * (`tests/reference/metrics_ref.py cases`, written from the definitions), pasted
 * here: ties across and within classes, all scores tied, one positive, a category
 * without positives (undefined: NAN, never a number) and one without negatives.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

typedef struct tcase {
    const char *name;
    double s[8];
    unsigned char y[8];
    size_t n;
    double auc, ap; /* NAN: undefined */
    /* best cut per target (tp, fp, fn, tn); tp = -1: no threshold */
    int cut[5][4];
} tcase;

static const target targets[5] = {{TARGET_DEFAULT, 0.01},
                                  {TARGET_FPR, 0.25},
                                  {TARGET_PRECISION, 0.75},
                                  {TARGET_RECALL, 0.75},
                                  {TARGET_F1, 0}};

static const tcase cases[] = {
    {"ties",
     {0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.2},
     {1, 1, 0, 1, 0, 1, 0, 0},
     8,
     0.78125,
     0.7470238095238095,
     {{1, 0, 3, 4}, {3, 1, 1, 3}, {3, 1, 1, 3}, {3, 1, 1, 3}, {3, 1, 1, 3}}},
    {"separated",
     {0.95, 0.9, 0.3, 0.2, 0.1},
     {1, 1, 0, 0, 0},
     5,
     1.0,
     1.0,
     {{2, 0, 0, 3}, {2, 0, 0, 3}, {2, 0, 0, 3}, {2, 0, 0, 3}, {2, 0, 0, 3}}},
    {"all_tied",
     {0.5, 0.5, 0.5, 0.5},
     {1, 0, 1, 0},
     4,
     0.5,
     0.5,
     {{0, 0, 2, 2}, {0, 0, 2, 2}, {-1, 0, 0, 0}, {2, 2, 0, 0}, {2, 2, 0, 0}}},
    {"one_positive",
     {0.1, 0.4, 0.35, 0.8, 0.05, 0.6},
     {0, 0, 1, 0, 0, 0},
     6,
     0.4,
     0.25,
     {{0, 0, 1, 5}, {0, 0, 1, 5}, {-1, 0, 0, 0}, {1, 3, 0, 2}, {1, 3, 0, 2}}},
    {"no_positives",
     {0.3, 0.2, 0.9},
     {0, 0, 0},
     3,
     NAN,
     NAN,
     {{-1, 0, 0, 0}, {-1, 0, 0, 0}, {-1, 0, 0, 0}, {-1, 0, 0, 0}, {-1, 0, 0, 0}}},
    {"no_negatives",
     {0.3, 0.2, 0.9},
     {1, 1, 1},
     3,
     NAN,
     1.0,
     {{-1, 0, 0, 0}, {-1, 0, 0, 0}, {3, 0, 0, 0}, {3, 0, 0, 0}, {3, 0, 0, 0}}},
};

static void expect_close(double got, double want, const char *what, const char *name)
{
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s %s: %g, want undefined", name, what, got);
        return;
    }
    if (!(fabs(got - want) <= 1e-12))
        fail_msg("%s %s: %.17g, want %.17g", name, what, got, want);
}

static void test_ranking_metrics(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const tcase *c = &cases[i];
        expect_close(metrics_roc_auc(c->s, c->y, c->n), c->auc, "AUC", c->name);
        expect_close(metrics_average_precision(c->s, c->y, c->n), c->ap, "AP", c->name);
    }
}

/* Every suggestion: the reference's best cut, and its threshold flags exactly that cut. */
static void test_suggestions(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const tcase *c = &cases[i];
        for (int t = 0; t < 5; t++) {
            suggestion sg;
            assert_int_equal(metrics_suggest(c->s, c->y, c->n, &targets[t], &sg), 0);
            if (c->cut[t][0] < 0) {
                if (sg.found)
                    fail_msg("%s target %d: threshold %g, the reference has none", c->name, t,
                             sg.at.threshold);
                assert_non_null(sg.why);
                continue;
            }
            if (!sg.found)
                fail_msg("%s target %d: none (%s), the reference has one", c->name, t, sg.why);
            const metrics_at *m = &sg.at;
            if ((int)m->tp != c->cut[t][0] || (int)m->fp != c->cut[t][1] ||
                (int)m->fn != c->cut[t][2] || (int)m->tn != c->cut[t][3])
                fail_msg("%s target %d: cut %zu/%zu/%zu/%zu, want %d/%d/%d/%d", c->name, t, m->tp,
                         m->fp, m->fn, m->tn, c->cut[t][0], c->cut[t][1], c->cut[t][2],
                         c->cut[t][3]);
            assert_true(m->threshold > 0.0 && m->threshold <= 1.0);
            metrics_at again;
            metrics_at_threshold(c->s, c->y, c->n, m->threshold, &again);
            assert_int_equal(again.tp, m->tp);
            assert_int_equal(again.fp, m->fp);
            if (targets[t].kind == TARGET_FPR)
                assert_true(again.fpr <= targets[t].value);
        }
    }
}

static void test_undefined_rates(void **state)
{
    (void)state;
    const double s[3] = {0.3, 0.2, 0.9};
    const unsigned char y[3] = {0, 0, 0};
    metrics_at m;
    metrics_at_threshold(s, y, 3, 0.95, &m);
    assert_true(isnan(m.precision)); /* nothing flagged */
    assert_true(isnan(m.recall));    /* no positives */
    assert_true(m.fpr == 0.0);
    assert_true(isnan(m.f1));
}

static void test_short_threshold(void **state)
{
    (void)state;
    assert_true(metrics_short_threshold(0.3, 0.35) == 0.35);
    assert_true(metrics_short_threshold(0.341, 0.3456) == 0.345);
    assert_true(metrics_short_threshold(0.0, 0.02) == 0.02);
    assert_true(metrics_short_threshold(0.9, 1.0) == 1.0);
    assert_true(metrics_short_threshold(0.5, 0.5) < 0.0);
    /* Closer than 1e-9: the upper score itself. */
    const double hi = 0.5 + 1e-12;
    assert_true(metrics_short_threshold(0.5, hi) == hi);
}

static void test_target_parse(void **state)
{
    (void)state;
    target t;
    assert_int_equal(target_parse("fpr=0.01", &t), 0);
    assert_int_equal(t.kind, TARGET_FPR);
    assert_true(t.value == 0.01);
    assert_int_equal(target_parse("precision=0.95", &t), 0);
    assert_int_equal(t.kind, TARGET_PRECISION);
    assert_int_equal(target_parse("recall=1", &t), 0);
    assert_int_equal(target_parse("f1", &t), 0);
    assert_int_equal(t.kind, TARGET_F1);
    assert_int_equal(target_parse("fpr=1.5", &t), -1);
    assert_int_equal(target_parse("fpr=", &t), -1);
    assert_int_equal(target_parse("fp=0.1", &t), -1);
    assert_int_equal(target_parse("recall=0.9x", &t), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranking_metrics), cmocka_unit_test(test_suggestions),
        cmocka_unit_test(test_undefined_rates), cmocka_unit_test(test_short_threshold),
        cmocka_unit_test(test_target_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
