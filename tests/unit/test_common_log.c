/*
 * test_common_log.c - src/common/log.c: the exact logfmt and JSON forms, hostile
 * values (newlines, quotes, backslashes, control characters, invalid UTF-8) that
 * must neither split a line nor forge a field, the policy=/generation= context,
 * the 16 KiB line cap (a field that does not fit is dropped whole), levels, and
 * lines of concurrent threads never mixing.
 *
 * Standard error is captured through a pipe (dup2 onto fd 2) drained by a thread.
 * JSON lines are checked with jansson, an independent parser that also insists on
 * valid UTF-8; the expected logfmt text is written out by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynbuf.h"
#include "log.h"

/* ------------------------------------------------------------------------ */
/* Capture.                                                                 */

static int saved_stderr = -1, pipe_rd = -1;
static pthread_t drainer;
static char *captured;
static size_t captured_len;

static void *drain(void *arg)
{
    FILE *m = open_memstream(&captured, &captured_len);
    char buf[4096];
    ssize_t n;
    while ((n = read(pipe_rd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, m);
    fclose(m);
    return NULL;
}

static void capture_start(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stderr);
    saved_stderr = dup(2);
    assert_int_equal(dup2(p[1], 2), 2);
    close(p[1]); /* fd 2 is now the only write end: restoring it gives EOF */
    pipe_rd = p[0];
    assert_int_equal(pthread_create(&drainer, NULL, drain, NULL), 0);
}

/* Everything logged since capture_start() (the caller frees). */
static char *capture_end(void)
{
    fflush(stderr);
    assert_int_equal(dup2(saved_stderr, 2), 2);
    close(saved_stderr);
    pthread_join(drainer, NULL);
    close(pipe_rd);
    return captured;
}

/* One line logged by `level, msg, fields`, without its "ts=..." / "ts":"..." part. */
#define LOG1(out, ...)                                                                             \
    do {                                                                                           \
        capture_start();                                                                           \
        cm_log(__VA_ARGS__);                                                                       \
        (out) = capture_end();                                                                     \
    } while (0)

static void setup_fmt(const char *format, const char *level)
{
    char err[256];
    cm_log_opts o = {format, "stderr", level, NULL, "test"};
    assert_int_equal(cm_log_setup(&o, err, sizeof err), 0);
}

/* The logfmt line without its timestamp, checking that it has one, and one newline. */
static const char *after_ts(const char *line)
{
    /* ts=2026-12-05T07:30:00.123Z (24 characters after "ts=") */
    assert_int_equal(strncmp(line, "ts=", 3), 0);
    assert_int_equal(line[3 + 4], '-');
    assert_int_equal(line[3 + 10], 'T');
    assert_int_equal(line[3 + 23], 'Z');
    assert_int_equal(line[3 + 24], ' ');
    const char *nl = strchr(line, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0');
    return line + 3 + 25;
}

static const char *hostile = "a\nb\"c\\d\te\rf\x01g\x1fh\x7fi";

/* ------------------------------------------------------------------------ */
/* logfmt.                                                                  */

static void logfmt_plain(void **state)
{
    char *out;
    setup_fmt("logfmt", "debug");
    LOG1(out, CM_LOG_INFO, "scan", CM_LF_I("status", 200), CM_LF_S("path", "/v1/scan"),
         CM_LF_F("seconds", 0.12345), CM_LF_B("demo", 1), CM_LF_B("cached", 0),
         CM_LF_S("absent", NULL), CM_LF_S("empty", ""), CM_LF_I("neg", -5), CM_LF_END);
    assert_string_equal(after_ts(out), "level=info msg=scan status=200 path=/v1/scan "
                                       "seconds=0.123 demo=true cached=false empty=\"\" neg=-5\n");
    free(out);
    /* A message or value with spaces is quoted; so is a key that is not an identifier. */
    LOG1(out, CM_LOG_WARN, "two words", CM_LF_S("bad key=x", "v w"), CM_LF_END);
    assert_string_equal(after_ts(out), "level=warn msg=\"two words\" \"bad key=x\"=\"v w\"\n");
    free(out);
}

static void logfmt_hostile(void **state)
{
    char *out;
    setup_fmt("logfmt", "info");
    LOG1(out, CM_LOG_ERROR, hostile, CM_LF_S("name", hostile),
         CM_LF_S("forge", "x level=error msg=forged"), CM_LF_END);
    assert_string_equal(after_ts(out),
                        "level=error msg=\"a\\nb\\\"c\\\\d\\te\\rf\\u0001g\\u001fh\\u007fi\" "
                        "name=\"a\\nb\\\"c\\\\d\\te\\rf\\u0001g\\u001fh\\u007fi\" "
                        "forge=\"x level=error msg=forged\"\n");
    free(out);
}

static void invalid_utf8(void **state)
{
    char *out;
    setup_fmt("logfmt", "info");
    /* Valid: 2, 3 and 4 bytes. Invalid: a stray continuation, an overlong '/', a
     * surrogate, past U+10FFFF, 0xFF, and a sequence cut short by the end. */
    LOG1(out, CM_LOG_INFO, "u", CM_LF_S("ok", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
         CM_LF_S("bad", "\x80|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xff|\xe2\x82"), CM_LF_END);
    assert_string_equal(after_ts(out),
                        "level=info msg=u ok=\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\" "
                        "bad=\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                        "\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd|\\ufffd\\ufffd\"\n");
    free(out);
}

/* ------------------------------------------------------------------------ */
/* JSON.                                                                    */

static json_t *parse_line(const char *line)
{
    json_error_t e;
    json_t *j = json_loads(line, 0, &e);
    if (!j)
        fail_msg("not JSON (%s at %d): %s", e.text, e.position, line);
    return j;
}

static void json_round_trip(void **state)
{
    char *out;
    setup_fmt("json", "info");
    LOG1(out, CM_LOG_WARN, hostile, CM_LF_S("name", hostile), CM_LF_I("n", 42), CM_LF_F("f", 1.5),
         CM_LF_B("b", 1), CM_LF_S("null", NULL), CM_LF_S("bad", "x\xffy\xc3"),
         CM_LF_S("ok", "\xe2\x82\xac"), CM_LF_END);
    size_t len = strlen(out);
    assert_true(len > 0 && out[len - 1] == '\n' && !memchr(out, '\n', len - 1));
    json_t *j = parse_line(out);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), hostile);
    assert_string_equal(json_string_value(json_object_get(j, "name")), hostile);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 42);
    assert_true(json_real_value(json_object_get(j, "f")) == 1.5);
    assert_true(json_is_true(json_object_get(j, "b")));
    assert_true(json_is_null(json_object_get(j, "null")));
    assert_string_equal(json_string_value(json_object_get(j, "bad")),
                        "x\xef\xbf\xbdy\xef\xbf\xbd"); /* U+FFFD for each bad byte */
    assert_string_equal(json_string_value(json_object_get(j, "ok")), "\xe2\x82\xac");
    assert_non_null(json_string_value(json_object_get(j, "ts")));
    /* Keys in order: ts, level, msg first. */
    assert_int_equal(strncmp(out, "{\"ts\":\"", 7), 0);
    assert_non_null(strstr(out, "\",\"level\":\"warn\",\"msg\":"));
    json_decref(j);
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Context, cap, levels.                                                    */

static void context_fields(void **state)
{
    char *out;
    setup_fmt("logfmt", "info");
    cm_log_set_context("0123456789ab", 3);
    LOG1(out, CM_LOG_INFO, "reloaded", CM_LF_S("k", "v"), CM_LF_END);
    assert_string_equal(after_ts(out),
                        "level=info msg=reloaded policy=0123456789ab generation=3 k=v\n");
    free(out);
    /* A hostile fingerprint is escaped like any value. */
    cm_log_set_context("a b\n", 0);
    LOG1(out, CM_LOG_INFO, "x", CM_LF_END);
    assert_string_equal(after_ts(out), "level=info msg=x policy=\"a b\\n\"\n");
    free(out);
    cm_log_set_context(NULL, 0);
    LOG1(out, CM_LOG_INFO, "x", CM_LF_END);
    assert_string_equal(after_ts(out), "level=info msg=x\n");
    free(out);
    setup_fmt("json", "info");
    cm_log_set_context("fp", 9);
    LOG1(out, CM_LOG_INFO, "x", CM_LF_END);
    json_t *j = parse_line(out);
    assert_string_equal(json_string_value(json_object_get(j, "policy")), "fp");
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 9);
    json_decref(j);
    free(out);
    cm_log_set_context(NULL, 0);
}

/* The CLI's terminal format: "IDENT: word: message (fields)", no time, no context. */
static void plain_format(void **state)
{
    char *out;
    setup_fmt("plain", "info");
    cm_log_set_context("0123456789ab", 3);
    LOG1(out, CM_LOG_WARN, "demo model", CM_LF_S("model", "/m d"), CM_LF_I("n", 2), CM_LF_END);
    assert_string_equal(out, "test: warning: demo model (model=\"/m d\" n=2)\n");
    free(out);
    LOG1(out, CM_LOG_ERROR, "no fields", CM_LF_END);
    assert_string_equal(out, "test: error: no fields\n");
    free(out);
    /* A hostile value stays on its line, escaped as in logfmt. */
    LOG1(out, CM_LOG_INFO, "x", CM_LF_S("name", "a\nb"), CM_LF_END);
    assert_string_equal(out, "test: note: x (name=\"a\\nb\")\n");
    free(out);
    cm_log_set_context(NULL, 0);
}

static void line_cap(void **state)
{
    enum { CAP = 16 * 1024 };
    char *big = malloc(20000), *half = malloc(9000), *ctl = malloc(3000), *out;
    memset(big, 'x', 19999);
    big[19999] = '\0';
    memset(half, 'y', 8999);
    half[8999] = '\0';
    memset(ctl, '\x01', 2999); /* 6 bytes each once escaped: 18 KiB */
    ctl[2999] = '\0';
    const char *fmts[] = {"logfmt", "json"};
    for (int f = 0; f < 2; f++) {
        setup_fmt(fmts[f], "info");
        /* Too big alone: dropped whole; the fields after it still come. */
        LOG1(out, CM_LOG_INFO, "cap", CM_LF_S("big", big), CM_LF_S("ctl", ctl),
             CM_LF_S("after", "z"), CM_LF_END);
        assert_true(strlen(out) <= CAP);
        assert_null(strstr(out, "xxxx"));
        assert_null(strstr(out, "\\u0001"));
        assert_non_null(strstr(out, f ? "\"after\":\"z\"" : " after=z\n"));
        if (f)
            json_decref(parse_line(out));
        free(out);
        /* Two halves: the first fits, the second would not and is dropped. */
        LOG1(out, CM_LOG_INFO, "cap", CM_LF_S("one", half), CM_LF_S("two", half), CM_LF_END);
        assert_true(strlen(out) <= CAP);
        assert_non_null(strstr(out, f ? "\"one\":\"yyy" : " one=yyy"));
        assert_null(strstr(out, f ? "\"two\"" : " two="));
        if (f)
            json_decref(parse_line(out));
        free(out);
    }
    free(big);
    free(half);
    free(ctl);
}

static void levels(void **state)
{
    char *out, err[256];
    setup_fmt("logfmt", "warn");
    assert_false(cm_log_enabled(CM_LOG_DEBUG));
    assert_false(cm_log_enabled(CM_LOG_INFO));
    assert_true(cm_log_enabled(CM_LOG_WARN));
    assert_true(cm_log_enabled(CM_LOG_ERROR));
    capture_start();
    cm_log(CM_LOG_DEBUG, "d", CM_LF_END);
    cm_log(CM_LOG_INFO, "i", CM_LF_END);
    cm_log(CM_LOG_WARN, "w", CM_LF_END);
    cm_log(CM_LOG_ERROR, "e", CM_LF_END);
    cm_log(7, "bogus level", CM_LF_END);
    cm_log(-1, "bogus level", CM_LF_END);
    out = capture_end();
    char *nl = strchr(out, '\n'), first[256];
    assert_non_null(nl);
    snprintf(first, sizeof first, "%.*s", (int)(nl - out + 1), out);
    assert_string_equal(after_ts(first), "level=warn msg=w\n");
    assert_string_equal(after_ts(nl + 1), "level=error msg=e\n");
    free(out);
    /* Unknown values: refused with the reason, and nothing changes. */
    cm_log_opts bad = {"xml", NULL, NULL, NULL, NULL};
    assert_int_equal(cm_log_setup(&bad, err, sizeof err), -1);
    assert_string_equal(err, "log format must be logfmt or json, not 'xml'");
    bad = (cm_log_opts){NULL, "file", NULL, NULL, NULL};
    assert_int_equal(cm_log_setup(&bad, err, sizeof err), -1);
    assert_string_equal(err, "log target must be stderr or syslog, not 'file'");
    bad = (cm_log_opts){NULL, NULL, "verbose", NULL, NULL};
    assert_int_equal(cm_log_setup(&bad, err, sizeof err), -1);
    assert_string_equal(err, "log level must be debug, info, warn or error, not 'verbose'");
    bad = (cm_log_opts){NULL, NULL, NULL, "kern", NULL};
    assert_int_equal(cm_log_setup(&bad, err, sizeof err), -1);
    assert_string_equal(err,
                        "syslog facility must be daemon, mail, user or local0..local7, not 'kern'");
    assert_false(cm_log_enabled(CM_LOG_INFO)); /* still warn */
    setup_fmt(NULL, NULL);                     /* defaults: logfmt, info */
    assert_true(cm_log_enabled(CM_LOG_INFO));
    assert_false(cm_log_enabled(CM_LOG_DEBUG));
}

/* ------------------------------------------------------------------------ */
/* Threads: every line whole.                                               */

enum { THREADS = 4, LINES = 300 };

static void *writer(void *arg)
{
    long t = (long)(intptr_t)arg;
    char value[600];
    memset(value, 'a' + (int)t, sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (long i = 0; i < LINES; i++)
        cm_log(CM_LOG_INFO, "t", CM_LF_I("thread", t), CM_LF_I("i", i), CM_LF_S("v", value),
               CM_LF_END);
    return NULL;
}

static void threads_never_mix(void **state)
{
    pthread_t th[THREADS];
    setup_fmt("json", "info");
    capture_start();
    for (long t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *out = capture_end(), *save = NULL;
    long next[THREADS] = {0}, lines = 0;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_t *j = parse_line(l);
        long t = (long)json_integer_value(json_object_get(j, "thread"));
        assert_true(t >= 0 && t < THREADS);
        /* Each thread's lines in its own order, its value intact. */
        assert_int_equal(json_integer_value(json_object_get(j, "i")), next[t]++);
        const char *v = json_string_value(json_object_get(j, "v"));
        assert_int_equal(strspn(v, (char[]){(char)('a' + t), 0}), 599);
        json_decref(j);
        lines++;
    }
    assert_int_equal(lines, THREADS * LINES);
    free(out);
}

/* cm_log_quote on its own, for other line formats. */
static void quote_alone(void **state)
{
    cm_dbuf b;
    cm_dbuf_init(&b, 1024);
    cm_log_quote(&b, "say \"hi\"\n");
    cm_log_quote(&b, NULL);
    assert_string_equal(cm_dbuf_ptr(&b), "\"say \\\"hi\\\"\\n\"\"\"");
    cm_dbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(logfmt_plain),   cmocka_unit_test(logfmt_hostile),
        cmocka_unit_test(invalid_utf8),   cmocka_unit_test(json_round_trip),
        cmocka_unit_test(context_fields), cmocka_unit_test(line_cap),
        cmocka_unit_test(levels),         cmocka_unit_test(threads_never_mix),
        cmocka_unit_test(quote_alone),    cmocka_unit_test(plain_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
