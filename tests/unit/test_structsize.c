/*
 * test_structsize.c - the `size` rule for caller-allocated structures (clipmod.h):
 * defaults filled, size 0 / too small / garbage refused with a reason, an older
 * (smaller) caller's structure accepted with the missing members at their defaults,
 * a newer (larger) one accepted only when what this library does not know is 0, and
 * nothing written past the caller's size.
 *
 * The public structures are at their first layout today (their V1 size is all of
 * them), so the older-caller case is checked through the same copy functions with a
 * two-version structure made up here: the expectations are written from the rule,
 * not from the code's output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "result.h"

static void limits_default_fills_size_and_the_table(void **state)
{
    clipmod_limits lim;
    memset(&lim, 0xa5, sizeof lim);
    assert_int_equal(clipmod_limits_default(&lim), CLIPMOD_OK);
    assert_int_equal(lim.size, sizeof lim);
    assert_int_equal(lim.max_file_bytes, clipmod_setting_default(CLIPMOD_MAX_FILE_BYTES));
    assert_int_equal(lim.max_pixels, clipmod_setting_default(CLIPMOD_MAX_PIXELS));
    assert_int_equal(lim.max_side, clipmod_setting_default(CLIPMOD_MAX_SIDE));
    /* The documented defaults (clipmod(1)): 50 MiB, 50 MP, 20000 px. */
    assert_int_equal(lim.max_file_bytes, 50ull << 20);
    assert_int_equal(lim.max_pixels, 50000000ull);
    assert_int_equal(lim.max_side, 20000);
}

static void limits_init_refuses_bad_sizes_untouched(void **state)
{
    clipmod_limits lim;
    const size_t bad[] = {
        0, 1, sizeof(size_t), CLIPMOD_LIMITS_SIZE_V1 - 1, CLIPMOD_STRUCT_SIZE_MAX + 1, (size_t)-1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&lim, 0xa5, sizeof lim);
        assert_int_equal(clipmod_limits_init(&lim, bad[i]), CLIPMOD_E_INVALID_ARG);
        assert_int_equal(lim.size, (size_t)0xa5a5a5a5a5a5a5a5ull);
        assert_non_null(strstr(clipmod_invalid_arg_reason(), "clipmod_limits"));
        assert_non_null(strstr(clipmod_invalid_arg_reason(), "clipmod_limits_default()"));
    }
    assert_int_equal(clipmod_limits_init(NULL, sizeof lim), CLIPMOD_E_INVALID_ARG);
}

static void limits_init_for_a_newer_caller_zeroes_the_rest(void **state)
{
    /* A caller built against a header whose clipmod_limits grew by 16 bytes. */
    struct {
        clipmod_limits now;
        uint64_t later[2];
    } big;
    memset(&big, 0xa5, sizeof big);
    assert_int_equal(clipmod_limits_init(&big.now, sizeof big), CLIPMOD_OK);
    assert_int_equal(big.now.size, sizeof big);
    assert_int_equal(big.now.max_side, 20000);
    assert_int_equal(big.later[0], 0);
    assert_int_equal(big.later[1], 0);
}

/* A made-up structure at two versions, V2 appending `extra` (default 77). */
typedef struct v2 {
    size_t size;
    uint64_t a;
    uint32_t b;
    uint64_t extra;
} v2;
typedef struct v1 {
    size_t size;
    uint64_t a;
    uint32_t b;
} v1;
static const cm_struct_kind kind_v2 = {"v2", offsetof(v2, b) + sizeof(uint32_t), sizeof(v2),
                                       "V2_INIT"};

static void older_caller_is_read_with_defaults(void **state)
{
    const v1 old = {sizeof old, 5, 6};
    v2 lib = {.size = 0, .a = 1, .b = 2, .extra = 77};
    assert_int_equal(cm_struct_in(&lib, &old, &kind_v2, NULL), CLIPMOD_OK);
    assert_int_equal(lib.size, sizeof lib);
    assert_int_equal(lib.a, 5);
    assert_int_equal(lib.b, 6);
    assert_int_equal(lib.extra, 77); /* absent in the caller's: its default */
}

static void older_caller_gets_nothing_past_its_size(void **state)
{
    struct {
        v1 old;
        unsigned char guard[16];
    } out;
    memset(&out, 0xa5, sizeof out);
    out.old.size = sizeof out.old;
    const v2 lib = {sizeof lib, 5, 6, 77};
    assert_int_equal(cm_struct_out(&out.old, &lib, &kind_v2, NULL), CLIPMOD_OK);
    assert_int_equal(out.old.size, sizeof out.old);
    assert_int_equal(out.old.a, 5);
    assert_int_equal(out.old.b, 6);
    for (size_t i = 0; i < sizeof out.guard; i++)
        assert_int_equal(out.guard[i], 0xa5);
}

static void newer_caller_only_with_unknown_members_zero(void **state)
{
    struct {
        v2 now;
        uint64_t later;
    } big = {{sizeof big, 5, 6, 7}, 0};
    v2 lib = {0, 1, 2, 77};
    assert_int_equal(cm_struct_in(&lib, &big, &kind_v2, NULL), CLIPMOD_OK);
    assert_int_equal(lib.size, sizeof lib);
    assert_int_equal(lib.extra, 7);

    big.later = 1; /* asks for something this library cannot do */
    char err[CLIPMOD_ERROR_SIZE] = "";
    lib = (v2){0, 1, 2, 77};
    assert_int_equal(cm_struct_in(&lib, &big, &kind_v2, err), CLIPMOD_E_INVALID_ARG);
    assert_non_null(strstr(err, "does not know"));
    assert_string_equal(err, clipmod_invalid_arg_reason());
    assert_int_equal(lib.a, 1); /* untouched */
}

static clipmod_result *one_category(void)
{
    clipmod_result *r = cm_result_new("x.png", "p", "m");
    assert_non_null(r);
    assert_non_null(r->cats = calloc(1, sizeof *r->cats));
    r->n_cats = 1;
    r->cats[0].s = (clipmod_category_score){.id = strdup("weapons"),
                                            .score = 0.75,
                                            .threshold = 0.5,
                                            .margin = 0.25,
                                            .cosine = 0.3,
                                            .flagged = 1,
                                            .action = CLIPMOD_ACTION_REJECT};
    return r;
}

static void category_score_size_rule(void **state)
{
    clipmod_result *r = one_category();
    clipmod_category_score c;

    memset(&c, 0, sizeof c); /* size 0: refused, untouched */
    assert_int_equal(clipmod_result_category(r, 0, &c), CLIPMOD_E_INVALID_ARG);
    assert_null(c.id);
    assert_non_null(strstr(clipmod_invalid_arg_reason(), "CLIPMOD_CATEGORY_SCORE_INIT"));

    c = (clipmod_category_score)CLIPMOD_CATEGORY_SCORE_INIT;
    assert_int_equal(c.size, sizeof c);
    assert_int_equal(clipmod_result_category(r, 0, &c), CLIPMOD_OK);
    assert_int_equal(c.size, sizeof c);
    assert_string_equal(c.id, "weapons");
    assert_true(c.score == 0.75 && c.threshold == 0.5 && c.margin == 0.25 && c.cosine == 0.3);
    assert_int_equal(c.flagged, 1);
    assert_int_equal(c.action, CLIPMOD_ACTION_REJECT);

    /* A newer caller's larger structure: what this library lacks reads as absent (0). */
    struct {
        clipmod_category_score now;
        uint64_t later;
    } big;
    memset(&big, 0xa5, sizeof big);
    big.now.size = sizeof big;
    assert_int_equal(clipmod_result_category(r, 0, &big.now), CLIPMOD_OK);
    assert_int_equal(big.now.size, sizeof big);
    assert_string_equal(big.now.id, "weapons");
    assert_int_equal(big.later, 0);
    clipmod_result_free(r);
}

static void input_arrays_by_the_callers_size(void **state)
{
    clipmod_input in[3] = {CLIPMOD_INPUT_INIT, CLIPMOD_INPUT_INIT, CLIPMOD_INPUT_INIT};
    clipmod_input *copy;
    const clipmod_input *view;
    in[0].path = "a";
    in[1].path = "b";
    in[2].path = "c";
    /* Built with this header: used as it is, no copy (and no allocation). */
    assert_int_equal(cm_inputs_view(in, 3, &copy, &view), CLIPMOD_OK);
    assert_null(copy);
    assert_ptr_equal(view, in);

    in[1].size = 0;
    assert_int_equal(cm_inputs_view(in, 3, &copy, &view), CLIPMOD_E_INVALID_ARG);
    assert_non_null(strstr(clipmod_invalid_arg_reason(), "clipmod_input[1]"));
    in[0].size = 0;
    assert_int_equal(cm_inputs_view(in, 3, &copy, &view), CLIPMOD_E_INVALID_ARG);
    assert_non_null(strstr(clipmod_invalid_arg_reason(), "clipmod_input[0]"));
    assert_non_null(strstr(clipmod_invalid_arg_reason(), "CLIPMOD_INPUT_INIT"));

    /* A newer caller's array: elements are 8 bytes longer, stepped by their size. */
    struct wide {
        clipmod_input now;
        uint64_t later;
    } w[2];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 2; i++) {
        w[i].now.size = sizeof w[i];
        w[i].now.name = i ? "second" : "first";
        w[i].now.len = (size_t)i + 10;
    }
    assert_int_equal(cm_inputs_view(&w[0].now, 2, &copy, &view), CLIPMOD_OK);
    assert_non_null(copy);
    assert_ptr_equal(view, copy);
    assert_string_equal(view[1].name, "second");
    assert_int_equal(view[1].len, 11);
    assert_int_equal(view[1].size, sizeof(clipmod_input));
    cm_free(copy);
    w[1].later = 3;
    assert_int_equal(cm_inputs_view(&w[0].now, 2, &copy, &view), CLIPMOD_E_INVALID_ARG);
    assert_null(copy);
    assert_non_null(strstr(clipmod_invalid_arg_reason(), "clipmod_input[1]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limits_default_fills_size_and_the_table),
        cmocka_unit_test(limits_init_refuses_bad_sizes_untouched),
        cmocka_unit_test(limits_init_for_a_newer_caller_zeroes_the_rest),
        cmocka_unit_test(older_caller_is_read_with_defaults),
        cmocka_unit_test(older_caller_gets_nothing_past_its_size),
        cmocka_unit_test(newer_caller_only_with_unknown_members_zero),
        cmocka_unit_test(category_score_size_rule),
        cmocka_unit_test(input_arrays_by_the_callers_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
