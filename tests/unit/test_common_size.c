/*
 * test_common_size.c - src/common/size.c, suggest.c and clock.c: sizes with binary
 * multiples, refusals (sign, spaces, fractions, unknown units) and overflow at the
 * exact boundary; durations; formatting back; edit distance with transpositions
 * and "did you mean"; the monotonic clock not going backwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "clock.h"
#include "size.h"
#include "suggest.h"

static uint64_t size_ok(const char *s)
{
    uint64_t v = 12345;
    char err[128] = "";
    if (cm_parse_size(s, &v, err, sizeof err) != 0)
        fail_msg("'%s' refused: %s", s, err);
    return v;
}

static void size_refused(const char *s, const char *why)
{
    uint64_t v = 7;
    char err[128] = "";
    assert_int_equal(cm_parse_size(s, &v, err, sizeof err), -1);
    assert_int_equal(v, 7);
    if (!strstr(err, why))
        fail_msg("'%s': message '%s' lacks '%s'", s ? s : "(null)", err, why);
}

static void sizes(void **state)
{
    assert_int_equal(size_ok("0"), 0);
    assert_int_equal(size_ok("1048576"), 1048576);
    assert_int_equal(size_ok("512k"), 512 * 1024);
    assert_int_equal(size_ok("512K"), 512 * 1024);
    assert_int_equal(size_ok("512KiB"), 512 * 1024);
    assert_int_equal(size_ok("25M"), 25ull << 20);
    assert_int_equal(size_ok("25MB"), 25ull << 20);
    assert_int_equal(size_ok("25mib"), 25ull << 20);
    assert_int_equal(size_ok("1G"), 1ull << 30);
    assert_int_equal(size_ok("2T"), 2ull << 40);
    assert_int_equal(size_ok("7B"), 7);
    assert_int_equal(size_ok("18446744073709551615"), UINT64_MAX);
    /* 2^64 / 2^40 = 16777216: one less fits, that one overflows. */
    assert_int_equal(size_ok("16777215T"), 16777215ull << 40);
    size_refused("16777216T", "too large");
    size_refused("18446744073709551616", "too large");
    size_refused("", "empty");
    size_refused(NULL, "empty");
    size_refused("-1", "digits");
    size_refused("+5", "digits");
    size_refused(" 5", "digits");
    size_refused("1.5M", "unit");
    size_refused("5 M", "unit");
    size_refused("5X", "unit");
    size_refused("5MM", "unit");
    size_refused("0x10", "unit");
    size_refused("M", "digits");
}

static void durations(void **state)
{
    uint64_t ms = 0;
    char err[128];
    struct {
        const char *s;
        uint64_t ms;
    } ok[] = {{"0", 0},       {"10", 10000},   {"10s", 10000},  {"500ms", 500},
              {"5m", 300000}, {"2h", 7200000}, {"1d", 86400000}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(cm_parse_duration_ms(ok[i].s, &ms, err, sizeof err), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    const char *bad[] = {"", "s", "10x", "10 s", "-1s", "1.5s", "10S", "10sec"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cm_parse_duration_ms(bad[i], &ms, err, sizeof err), -1);
    assert_int_equal(cm_parse_duration_ms("213503982334d", &ms, err, sizeof err), 0);
    assert_int_equal(cm_parse_duration_ms("213503982335d", &ms, err, sizeof err), -1);
    assert_non_null(strstr(err, "too large"));
    assert_non_null(strstr(err, "213503982335d"));
    /* A NULL error buffer is allowed. */
    assert_int_equal(cm_parse_duration_ms("x", &ms, NULL, 0), -1);
}

/* A refusal is one line: the value shown with control characters as '?' and cut
 * (found by fuzz_yaml_reader: a block scalar's newlines split a problem line). */
static void one_line_messages(void **state)
{
    uint64_t v;
    char err[160], long_value[100];
    assert_int_equal(cm_parse_size("x\nlevel=error\x1b", &v, err, sizeof err), -1);
    assert_string_equal(err, "size 'x?level=error?': must start with digits (e.g. 512k, 25M, 1G)");
    assert_int_equal(cm_parse_duration_ms("ten\r\ns", &v, err, sizeof err), -1);
    assert_string_equal(err, "duration 'ten??s': must start with digits (e.g. 500ms, 10s, 5m)");
    memset(long_value, 'z', 99);
    long_value[99] = '\0';
    assert_int_equal(cm_parse_size(long_value, &v, err, sizeof err), -1);
    assert_string_equal(err, "size 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz...': must start with "
                             "digits (e.g. 512k, 25M, 1G)");
}

static void format_back(void **state)
{
    char out[24];
    assert_string_equal(cm_format_size(0, out, sizeof out), "0");
    assert_string_equal(cm_format_size(1000, out, sizeof out), "1000");
    assert_string_equal(cm_format_size(1024, out, sizeof out), "1k");
    assert_string_equal(cm_format_size(25ull << 20, out, sizeof out), "25M");
    assert_string_equal(cm_format_size(1536ull << 20, out, sizeof out), "1536M");
    assert_string_equal(cm_format_size(1ull << 50, out, sizeof out), "1024T");
    assert_string_equal(cm_format_size(UINT64_MAX, out, sizeof out), "18446744073709551615");
    /* Round trip. */
    uint64_t v;
    assert_int_equal(cm_parse_size(cm_format_size(3ull << 30, out, sizeof out), &v, NULL, 0), 0);
    assert_int_equal(v, 3ull << 30);
}

static void suggestions(void **state)
{
    static const char *const keys[] = {"threshold", "prompts", "contrast", "action", "id", NULL};
    assert_int_equal(cm_edit_distance("", ""), 0);
    assert_int_equal(cm_edit_distance("abc", ""), 3);
    assert_int_equal(cm_edit_distance("kitten", "sitting"), 3);
    /* A transposition is one edit (OSA), not two. */
    assert_int_equal(cm_edit_distance("threshlod", "threshold"), 1);
    assert_int_equal(cm_edit_distance("ca", "abc"), 3); /* OSA, not Damerau (2) */
    char long_name[70];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_int_equal(cm_edit_distance(long_name, "a"), SIZE_MAX);

    assert_string_equal(cm_suggest("threshlod", keys, 6), "threshold");
    assert_string_equal(cm_suggest("promts", keys, 6), "prompts");
    assert_string_equal(cm_suggest("actoin", keys, 6), "action");
    assert_null(cm_suggest("threshold", keys, 6)); /* itself: nothing to suggest */
    assert_null(cm_suggest("colour", keys, 6));    /* nothing close */
    assert_null(cm_suggest("ix", keys, 6));        /* 1 edit but more than a third of "id" */
    assert_null(cm_suggest(NULL, keys, 6));
}

static void clocks(void **state)
{
    double a = cm_now();
    int64_t ms = cm_now_ms();
    double b = cm_now();
    assert_true(b >= a);
    assert_true((double)ms / 1000.0 >= a - 0.001 && (double)ms / 1000.0 <= b + 0.001);
    assert_true(cm_wall() > 1.7e9); /* after 2023 */
    assert_true(cm_wall_ms() / 1000 >= (int64_t)1.7e9);
    char ts[32];
    assert_string_equal(cm_rfc3339(0.5, ts, sizeof ts), "1970-01-01T00:00:00.500Z");
    assert_string_equal(cm_rfc3339(1796415540.25, ts, sizeof ts), "2026-12-04T20:19:00.250Z");
}

/* cm_deadline: now + ms on the clock asked for, nanoseconds normalised. */
static void deadlines(void **state)
{
    static const uint64_t ms[] = {0, 1, 999, 1000, 1500, 86400000};
    (void)state;
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        clockid_t clk = i % 2 ? CLOCK_REALTIME : CLOCK_MONOTONIC;
        struct timespec before, after, d;
        clock_gettime(clk, &before);
        d = cm_deadline(clk, ms[i]);
        clock_gettime(clk, &after);
        assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
        double at = (double)d.tv_sec + (double)d.tv_nsec / 1e9;
        double lo = (double)before.tv_sec + (double)before.tv_nsec / 1e9 + (double)ms[i] / 1e3;
        double hi = (double)after.tv_sec + (double)after.tv_nsec / 1e9 + (double)ms[i] / 1e3;
        assert_true(at >= lo - 1e-6 && at <= hi + 1e-6);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes),
        cmocka_unit_test(durations),
        cmocka_unit_test(format_back),
        cmocka_unit_test(suggestions),
        cmocka_unit_test(clocks),
        cmocka_unit_test(deadlines),
        cmocka_unit_test(one_line_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
