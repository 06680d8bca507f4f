/*
 * test_common_dynbuf.c - src/common/dynbuf.c: the cap is a hard limit (an add that
 * would pass it is refused whole and the content stays as it was), printf-style
 * adds longer than the stack buffer, embedded NULs, take/reset/free, and an
 * allocation failure leaving the buffer usable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"

/* out_of_memory asks for more than any allocator gives, to see the NOMEM path. ASan
 * reports such a request as a fatal error (allocation-size-too-big) unless told to
 * return NULL as malloc does; LeakSanitizer and every other check stay on. */
#if defined(__SANITIZE_ADDRESS__)
#define CM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CM_TEST_ASAN 1
#endif
#endif
#ifdef CM_TEST_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

static void adds_and_cap(void **state)
{
    cm_dbuf b;
    cm_dbuf_init(&b, 10);
    assert_string_equal(cm_dbuf_ptr(&b), "");
    assert_int_equal(cm_dbuf_add(&b, "hello"), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_addc(&b, ' '), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_addf(&b, "%d", 123), CM_DBUF_OK);
    assert_string_equal(cm_dbuf_ptr(&b), "hello 123");
    /* 9 + 2 > 10: refused whole, content unchanged. */
    assert_int_equal(cm_dbuf_add(&b, "ab"), CM_DBUF_E_TOOBIG);
    assert_string_equal(cm_dbuf_ptr(&b), "hello 123");
    assert_int_equal(cm_dbuf_len(&b), 9);
    /* Exactly at the cap is allowed. */
    assert_int_equal(cm_dbuf_addc(&b, '!'), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_len(&b), 10);
    assert_int_equal(cm_dbuf_addc(&b, 'x'), CM_DBUF_E_TOOBIG);
    assert_int_equal(cm_dbuf_addf(&b, "%s", ""), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_addf(&b, "%c", 'y'), CM_DBUF_E_TOOBIG);
    assert_string_equal(cm_dbuf_ptr(&b), "hello 123!");
    /* Never allocates past max + 1. */
    assert_true(b.cap <= 11);
    cm_dbuf_free(&b);
    assert_int_equal(cm_dbuf_len(&b), 0);
    cm_dbuf_free(NULL);
}

static void long_format(void **state)
{
    cm_dbuf b;
    char big[1000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cm_dbuf_init(&b, 4000);
    assert_int_equal(cm_dbuf_add(&b, "<"), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_addf(&b, "%s|%s", big, big), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_len(&b), 1 + 999 * 2 + 1);
    assert_int_equal(cm_dbuf_ptr(&b)[0], '<');
    assert_int_equal(cm_dbuf_ptr(&b)[1000], '|');
    assert_int_equal(cm_dbuf_ptr(&b)[cm_dbuf_len(&b)], '\0');
    /* A long format that would pass the cap is refused, content kept. */
    assert_int_equal(cm_dbuf_addf(&b, "%s%s%s", big, big, big), CM_DBUF_E_TOOBIG);
    assert_int_equal(cm_dbuf_len(&b), 2000);
    cm_dbuf_free(&b);
}

static void binary_take_reset(void **state)
{
    cm_dbuf b;
    size_t len = 0;
    cm_dbuf_init(&b, 100);
    assert_null(cm_dbuf_take(&b, &len));
    assert_int_equal(len, 0);
    assert_int_equal(cm_dbuf_addn(&b, "a\0b", 3), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_len(&b), 3);
    assert_memory_equal(cm_dbuf_ptr(&b), "a\0b", 4);
    cm_dbuf_reset(&b);
    assert_int_equal(cm_dbuf_len(&b), 0);
    assert_string_equal(cm_dbuf_ptr(&b), "");
    assert_int_equal(cm_dbuf_add(&b, "xyz"), CM_DBUF_OK);
    char *s = cm_dbuf_take(&b, &len);
    assert_string_equal(s, "xyz");
    assert_int_equal(len, 3);
    free(s);
    /* After take: empty, same maximum. */
    assert_int_equal(cm_dbuf_len(&b), 0);
    assert_int_equal(b.max, 100);
    assert_int_equal(cm_dbuf_addn(&b, "", 0), CM_DBUF_OK);
    cm_dbuf_free(&b);
}

static void out_of_memory(void **state)
{
    cm_dbuf b;
    cm_dbuf_init(&b, SIZE_MAX - 1);
    assert_int_equal(cm_dbuf_add(&b, "kept"), CM_DBUF_OK);
    /* The allocator cannot give 2^62 bytes: NOMEM, and the buffer keeps its content. */
    assert_int_equal(cm_dbuf_addn(&b, "x", (size_t)1 << 62), CM_DBUF_E_NOMEM);
    assert_string_equal(cm_dbuf_ptr(&b), "kept");
    assert_int_equal(cm_dbuf_add(&b, "!"), CM_DBUF_OK);
    assert_string_equal(cm_dbuf_ptr(&b), "kept!");
    /* The cap check cannot be overflowed by a huge length. */
    cm_dbuf_free(&b);
    cm_dbuf_init(&b, 8);
    assert_int_equal(cm_dbuf_add(&b, "abc"), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_addn(&b, "x", SIZE_MAX), CM_DBUF_E_TOOBIG);
    assert_string_equal(cm_dbuf_ptr(&b), "abc");
    cm_dbuf_free(&b);
    /* Nor by a maximum of SIZE_MAX: len + n + 1 for the NUL must not wrap to 0. */
    cm_dbuf_init(&b, SIZE_MAX);
    assert_int_equal(cm_dbuf_add(&b, "abc"), CM_DBUF_OK);
    assert_int_equal(cm_dbuf_addn(&b, "x", SIZE_MAX - 3), CM_DBUF_E_TOOBIG);
    assert_string_equal(cm_dbuf_ptr(&b), "abc");
    cm_dbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adds_and_cap),
        cmocka_unit_test(long_format),
        cmocka_unit_test(binary_take_reset),
        cmocka_unit_test(out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
