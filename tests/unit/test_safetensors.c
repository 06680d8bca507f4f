/*
 * test_safetensors.c - the safetensors reader on small hand-built files.
 *
 * Values are written here byte by byte (IEEE half and bfloat16 bit patterns taken
 * from the standards, not from our converter), so a wrong conversion cannot pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "safetensors.h"

static char path[64];

/* Write header JSON (padded to 8) and `data` as a safetensors file. */
static void write_file(const char *json, const void *data, size_t len)
{
    size_t hl = strlen(json), padded = (hl + 7) & ~(size_t)7;
    unsigned char n[8];
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 8; i++)
        n[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(n, 1, 8, f);
    fwrite(json, 1, hl, f);
    for (size_t i = hl; i < padded; i++)
        fputc(' ', f);
    fwrite(data, 1, len, f);
    fclose(f);
}

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/cm_test_st_%d.safetensors", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return 0;
}

static void reads_every_dtype(void **state)
{
    /* F32 [2]: 1.5, -2; F16 [5]: 1, -2, 65504, smallest subnormal, +inf;
     * BF16 [2]: 1, -0.5; I64 [1]: 7. Little-endian throughout. */
    unsigned char data[8 + 10 + 4 + 8];
    const float f32[2] = {1.5f, -2.0f};
    const uint16_t f16[5] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00};
    const uint16_t bf16[2] = {0x3F80, 0xBF00};
    const int64_t i64 = 7;
    memcpy(data, f32, 8);
    memcpy(data + 8, f16, 10);
    memcpy(data + 18, bf16, 4);
    memcpy(data + 22, &i64, 8);
    write_file("{\"__metadata__\":{\"format\":\"pt\"},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"h\":{\"dtype\":\"F16\",\"shape\":[5,1],\"data_offsets\":[8,18]},"
               "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[18,22]},"
               "\"ids\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[22,30]}}",
               data, sizeof data);

    cm_safetensors *st = NULL;
    char err[CLIPMOD_ERROR_SIZE];
    assert_int_equal(cm_safetensors_open(path, &st, err), CLIPMOD_OK);
    assert_int_equal(cm_safetensors_count(st), 4);
    assert_null(cm_safetensors_find(st, "__metadata__"));
    assert_null(cm_safetensors_find(st, "nope"));

    float out[5];
    const cm_tensor *t = cm_safetensors_find(st, "a");
    assert_non_null(t);
    assert_int_equal(t->dtype, CM_DT_F32);
    cm_tensor_to_f32(t, 0, 2, out);
    assert_true(out[0] == 1.5f && out[1] == -2.0f);

    t = cm_safetensors_find(st, "h");
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 5);
    cm_tensor_to_f32(t, 0, 5, out);
    assert_true(out[0] == 1.0f);
    assert_true(out[1] == -2.0f);
    assert_true(out[2] == 65504.0f);
    assert_true(out[3] == 5.9604644775390625e-08f); /* 2^-24 */
    assert_true(out[4] > 3e38f);                    /* +inf */

    t = cm_safetensors_find(st, "b");
    cm_tensor_to_f32(t, 0, 2, out);
    assert_true(out[0] == 1.0f && out[1] == -0.5f);

    t = cm_safetensors_find(st, "ids");
    assert_int_equal(t->dtype, CM_DT_I64);
    assert_string_equal(t->dtype_name, "I64");
    cm_safetensors_close(st);
}

/* Open must fail with CLIPMOD_E_MODEL_FORMAT and a message containing `want`. */
static void expect_format_error(const char *json, size_t data_len, const char *want)
{
    unsigned char data[64] = {0};
    cm_safetensors *st = (cm_safetensors *)1;
    char err[CLIPMOD_ERROR_SIZE] = "";
    write_file(json, data, data_len);
    assert_int_equal(cm_safetensors_open(path, &st, err), CLIPMOD_E_MODEL_FORMAT);
    assert_null(st);
    if (!strstr(err, want))
        fail_msg("message \"%s\" lacks \"%s\"", err, want);
}

static void rejects_bad_headers(void **state)
{
    expect_format_error("[1,2,3]", 0, "not a JSON object");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                        8, "not a JSON object");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                        "shape");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                        "do not fit");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                        "bad data_offsets");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}", 8,
                        "truncated");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                        "\"data_offsets\":[0,8]}}",
                        8, "overflows");
    expect_format_error("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "needs dtype");
    expect_format_error("{\"a\":7}", 0, "not an object");
}

static void rejects_short_and_missing_files(void **state)
{
    cm_safetensors *st;
    char err[CLIPMOD_ERROR_SIZE];
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    assert_int_equal(cm_safetensors_open(path, &st, err), CLIPMOD_E_MODEL_FORMAT);
    assert_int_equal(cm_safetensors_open("/nonexistent/x.safetensors", &st, err), CLIPMOD_E_IO);
    assert_non_null(strstr(err, "/nonexistent/x.safetensors"));
    cm_safetensors_close(NULL); /* accepted */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_every_dtype),
        cmocka_unit_test(rejects_bad_headers),
        cmocka_unit_test(rejects_short_and_missing_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
