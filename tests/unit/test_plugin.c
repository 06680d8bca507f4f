/*
 * test_plugin.c - the plugin loader (plugin.c) and the shipped example plugins.
 *
 * Loads the built plugins/audit-log and plugins/allowlist, and the fixture plugin
 * (plugin_fixture.c) in each of its broken forms, through cm_plugins_load(), and
 * runs them on real results, built with result.c's internal constructors as scan.c
 * builds them, so no model is needed. The program is linked with -export-dynamic:
 * the plugins then bind to the library functions linked into it (the ones that made
 * these results), not to a second copy from libclipmod.so.
 *
 * CM_TEST_PLUGIN_DIR and CM_TEST_FIXTURE_DIR (environment, else the macros of the
 * same names set by the build) are the directories holding the built .so files.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_files.h"

#include "engine.h"
#include "plugin_host.h"
#include "result.h"

/* ------------------------------------------------------------------------ */
/* Results and an engine, built as scan.c builds them, without a model.    */

/* An engine as far as plugins can see it: a policy with a name. */
static cm_policy policy = {.name = "test-policy"};
static clipmod_engine engine = {.policy = &policy, .compiled = 1};

/* A result flagged by `category` with `action`, or clean when `category` is NULL. */
static clipmod_result *make(const char *name, const char *category, clipmod_action action)
{
    clipmod_result *r = cm_result_new(name, "test-policy", "test-model");
    assert_non_null(r);
    if (category) {
        assert_non_null(r->cats = calloc(1, sizeof *r->cats));
        r->n_cats = 1;
        r->cats[0].s = (clipmod_category_score){.id = strdup(category),
                                                .score = 0.9,
                                                .threshold = 0.5,
                                                .margin = 0.4,
                                                .flagged = 1,
                                                .action = action};
        assert_non_null(r->cats[0].s.id);
    }
    cm_result_decide(r);
    return r;
}

static clipmod_result *make_unscanned(const char *name, clipmod_reason reason)
{
    clipmod_result *r = cm_result_new(name, "test-policy", "test-model");
    assert_non_null(r);
    cm_result_unscanned(r, reason, "no");
    return r;
}

/* Run the plugins on `r` as clipmod_scan_file() would. */
static void notify(const cm_plugins *list, clipmod_result *r)
{
    clipmod_input in = {.size = sizeof in, .path = clipmod_result_name(r)};
    cm_plugins_notify(list, &engine, &in, r);
}

/* ------------------------------------------------------------------------ */
/* Files.                                                                   */

static char dir[64], logfile[128], errbuf[CLIPMOD_ERROR_SIZE];

static const char *so(const char *env, const char *fallback, const char *file)
{
    static char path[4][1024];
    static int next;
    const char *d = getenv(env);
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", d && *d ? d : fallback, file);
    return p;
}
#define PLUGIN(file)  so("CM_TEST_PLUGIN_DIR", CM_TEST_PLUGIN_DIR, file)
#define FIXTURE(file) so("CM_TEST_FIXTURE_DIR", CM_TEST_FIXTURE_DIR, file)

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/cm_test_plugin_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(logfile, sizeof logfile, "%s/log", dir);
    errbuf[0] = '\0';
    unsetenv("CM_FIXTURE_MODE");
    return 0;
}

static int teardown(void **state)
{
    nftw(dir, rm, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Load `path` expecting failure with a message holding every one of the strings. */
static void expect_failure(const char *path, const char *config, clipmod_error want, ...)
{
    cm_plugins *list = NULL;
    va_list ap;
    clipmod_error rc = cm_plugins_load(&list, path, config, errbuf);
    print_message("  %s -> %s\n", path, errbuf);
    assert_int_equal(rc, want);
    assert_null(list);
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *));)
        assert_non_null(strstr(errbuf, s));
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* The loader.                                                              */

static void missing_file(void **state)
{
    expect_failure("/nonexistent/dir/plugin.so", NULL, CLIPMOD_E_PLUGIN,
                   "plugin /nonexistent/dir/plugin.so: cannot load: ", "No such file", NULL);
    /* A bare name means the installed plugin directory, never the library search path. */
    expect_failure("no-such-plugin", NULL, CLIPMOD_E_PLUGIN, "no-such-plugin", NULL);
#ifdef CM_PLUGIN_DIR
    expect_failure("no-such-plugin", NULL, CLIPMOD_E_PLUGIN, CM_PLUGIN_DIR "/no-such-plugin.so",
                   NULL);
#endif
    expect_failure("", NULL, CLIPMOD_E_INVALID_ARG, "empty path", NULL);
}

static void not_a_shared_object(void **state)
{
    FILE *f = fopen(logfile, "w");
    assert_non_null(f);
    fputs("not ELF\n", f);
    fclose(f);
    expect_failure(logfile, NULL, CLIPMOD_E_PLUGIN, logfile, "cannot load", NULL);
}

static void no_entry_point(void **state)
{
    const char *path = FIXTURE("plugin-fixture-nosym.so");
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "not a clipmod plugin", "clipmod_plugin_v1",
                   NULL);
}

static void newer_entry_point(void **state)
{
    const char *path = FIXTURE("plugin-fixture-v2.so");
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "written for plugin ABI 2",
                   "clipmod_plugin_v2", "has ABI 1: upgrade libclipmod", NULL);
}

static void abi_mismatch(void **state)
{
    const char *path = FIXTURE("plugin-fixture.so");
    setenv("CM_FIXTURE_MODE", "abi2", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "written for plugin ABI 2",
                   "has ABI 1: upgrade libclipmod", NULL);
    setenv("CM_FIXTURE_MODE", "abi0", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "ABI 0", "CLIPMOD_PLUGIN_HEADER", NULL);
}

static void bad_descriptors(void **state)
{
    const char *path = FIXTURE("plugin-fixture.so");
    setenv("CM_FIXTURE_MODE", "null", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "clipmod_plugin_v1() returned NULL", NULL);
    setenv("CM_FIXTURE_MODE", "small", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "claims 8 bytes", NULL);
    setenv("CM_FIXTURE_MODE", "big-set", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "does not know", "upgrade libclipmod", NULL);
    setenv("CM_FIXTURE_MODE", "flags", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "flags 0x10000000000", NULL);
    setenv("CM_FIXTURE_MODE", "no-name", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "no name", NULL);
    setenv("CM_FIXTURE_MODE", "no-on-result", 1);
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, path, "(fixture): no on_result", NULL);
    setenv("CM_FIXTURE_MODE", "no-init", 1);
    expect_failure(path, "x=1", CLIPMOD_E_PLUGIN, path, "takes no configuration", "\"x=1\"", NULL);
}

/* A descriptor from a newer header whose extra fields are all 0 loads, and works. */
static void newer_header_unused_fields(void **state)
{
    cm_plugins *list = NULL;
    char config[256];
    clipmod_result *r = make("a.jpg", NULL, 0);
    snprintf(config, sizeof config, "log=%s;tag=N", logfile);
    setenv("CM_FIXTURE_MODE", "big-zero", 1);
    assert_int_equal(cm_plugins_load(&list, FIXTURE("plugin-fixture.so"), config, errbuf),
                     CLIPMOD_OK);
    notify(list, r);
    cm_plugins_free(list);
    char *log = slurp(logfile);
    assert_string_equal(log, "init N\nresult N a.jpg\nfini N\n");
    free(log);

    /* And a plugin without init takes no configuration, and NULL state. */
    list = NULL;
    setenv("CM_FIXTURE_MODE", "no-init", 1);
    assert_int_equal(cm_plugins_load(&list, FIXTURE("plugin-fixture.so"), "", errbuf), CLIPMOD_OK);
    notify(list, r);
    cm_plugins_free(list);
    clipmod_result_free(r);
}

static void init_failure(void **state)
{
    char config[256];
    const char *path = FIXTURE("plugin-fixture.so");
    snprintf(config, sizeof config, "log=%s;tag=F;fail=the moon is wrong", logfile);
    expect_failure(path, config, CLIPMOD_E_PLUGIN, path, "(fixture): the moon is wrong", NULL);
    char *log = slurp(logfile);
    assert_string_equal(log, ""); /* neither init's line nor a fini */
    free(log);
}

/* init in load order, on_result in load order for each result, fini in reverse. */
static void lifecycle_and_order(void **state)
{
    cm_plugins *list = NULL, *before;
    char config[256];
    const char *path = FIXTURE("plugin-fixture.so");
    clipmod_result *r1 = make("one.png", NULL, 0);
    clipmod_result *r2 = make("two.png", "gore", CLIPMOD_ACTION_REJECT);

    cm_plugins_notify(NULL, &engine, NULL, r1); /* no plugins: nothing to do */
    assert_int_equal(cm_plugins_count(NULL), 0);
    cm_plugins_free(NULL);

    snprintf(config, sizeof config, "log=%s;tag=A", logfile);
    assert_int_equal(cm_plugins_load(&list, path, config, errbuf), CLIPMOD_OK);
    snprintf(config, sizeof config, "log=%s;tag=B", logfile);
    assert_int_equal(cm_plugins_load(&list, path, config, errbuf), CLIPMOD_OK);

    /* A failed load leaves the list as it was. */
    before = list;
    assert_int_equal(cm_plugins_load(&list, "/nonexistent.so", NULL, errbuf), CLIPMOD_E_PLUGIN);
    assert_ptr_equal(list, before);

    assert_int_equal(cm_plugins_count(list), 2);
    assert_string_equal(cm_plugins_get(list, 1)->name, "fixture");
    assert_null(cm_plugins_get(list, 2));
    notify(list, r1);
    notify(list, r2);
    cm_plugins_free(list);
    clipmod_result_free(r1);
    clipmod_result_free(r2);

    char *log = slurp(logfile);
    assert_string_equal(log, "init A\ninit B\n"
                             "result A one.png\nresult B one.png\n"
                             "result A two.png\nresult B two.png\n"
                             "fini B\nfini A\n");
    free(log);
}

/* ------------------------------------------------------------------------ */
/* Threads.                                                                 */

#define THREADS    8
#define PER_THREAD 50

typedef struct job {
    const cm_plugins *list;
    int id;
} job;

static void *scan_thread(void *arg)
{
    const job *j = arg;
    char name[32];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(name, sizeof name, "t%d-%d.jpg", j->id, i);
        clipmod_result *r = make(name, "weapons", CLIPMOD_ACTION_FLAG);
        notify(j->list, r);
        clipmod_result_free(r);
    }
    return NULL;
}

static void run_threads(const cm_plugins *list)
{
    pthread_t t[THREADS];
    job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (job){list, i};
        assert_int_equal(pthread_create(&t[i], NULL, scan_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
}

/* CLIPMOD_PLUGIN_SERIALIZE: on_result never runs twice at once. */
static void serialized_plugin(void **state)
{
    cm_plugins *list = NULL;
    char config[256];
    snprintf(config, sizeof config, "log=%s;tag=S", logfile);
    setenv("CM_FIXTURE_MODE", "serialize", 1);
    assert_int_equal(cm_plugins_load(&list, FIXTURE("plugin-fixture.so"), config, errbuf),
                     CLIPMOD_OK);
    run_threads(list);
    cm_plugins_free(list);
    char *log = slurp(logfile);
    assert_int_equal(count(log, "result S "), THREADS * PER_THREAD);
    assert_int_equal(count(log, "overlap"), 0);
    free(log);
}

/* ------------------------------------------------------------------------ */
/* plugins/audit-log.                                                       */

static void audit_log_config(void **state)
{
    const char *path = PLUGIN("audit-log.so");
    expect_failure(path, NULL, CLIPMOD_E_PLUGIN, "(audit-log): no log file", NULL);
    expect_failure(path, "path=", CLIPMOD_E_PLUGIN, "(audit-log): path is empty", NULL);
    expect_failure(path, "file=/tmp/x", CLIPMOD_E_PLUGIN, "(audit-log): unknown key \"file\"",
                   NULL);
    expect_failure(path, "/tmp/x", CLIPMOD_E_PLUGIN, "\"/tmp/x\" is not key=value", NULL);
    expect_failure(path, "path=/nonexistent/dir/audit.jsonl", CLIPMOD_E_PLUGIN,
                   "cannot open /nonexistent/dir/audit.jsonl: No such file", NULL);
}

/* The part of an audit line after its time stamp, checking the stamp's shape. */
static const char *after_time(const char *line)
{
    int y, mo, d, h, mi, s, ms, n = 0;
    assert_int_equal(sscanf(line, "{\"time\":\"%4d-%2d-%2dT%2d:%2d:%2d.%3dZ\",%n", &y, &mo, &d, &h,
                            &mi, &s, &ms, &n),
                     7);
    assert_int_equal(n, 35);
    return line + n;
}

static void audit_log_lines(void **state)
{
    cm_plugins *list = NULL;
    char config[256];
    /* Quotes, a control character and bytes that are not UTF-8 in names. */
    clipmod_result *rs[3] = {
        make("/srv/up/\"a\"\n.jpg", "weapons", CLIPMOD_ACTION_REJECT),
        make("caf\xc3\xa9-\xff\xc3.png", NULL, 0),
        make_unscanned("big.tif", CLIPMOD_REASON_TOO_LARGE),
    };
    const char *want[3] = {
        "\"policy\":\"test-policy\",\"name\":\"/srv/up/\\\"a\\\"\\u000a.jpg\","
        "\"state\":\"flagged\",\"action\":\"reject\",\"category\":\"weapons\"}",
        "\"policy\":\"test-policy\",\"name\":\"caf\xc3\xa9-\\ufffd\\ufffd.png\","
        "\"state\":\"clean\",\"action\":\"allow\",\"category\":null}",
        "\"policy\":\"test-policy\",\"name\":\"big.tif\","
        "\"state\":\"unscanned\",\"action\":\"allow\",\"category\":null,\"reason\":\"too-large\"}",
    };

    /* The policy name comes from the engine. (Calling this here also links engine.c
     * into the test, so that audit-log binds to this copy of it.) */
    assert_string_equal(clipmod_engine_policy_name(&engine), "test-policy");
    /* Spaces and empty items in the configuration are forgiven. */
    snprintf(config, sizeof config, " ; path = %s ;", logfile);
    assert_int_equal(cm_plugins_load(&list, PLUGIN("audit-log.so"), config, errbuf), CLIPMOD_OK);
    assert_string_equal(cm_plugins_get(list, 0)->name, "audit-log");
    for (int i = 0; i < 3; i++)
        notify(list, rs[i]);
    cm_plugins_free(list);

    char *log = slurp(logfile), *save = NULL, *line = strtok_r(log, "\n", &save);
    for (int i = 0; i < 3; i++, line = strtok_r(NULL, "\n", &save)) {
        assert_non_null(line);
        assert_string_equal(after_time(line), want[i]);
        assert_int_equal(rs[i]->n_notes, 0);
        clipmod_result_free(rs[i]);
    }
    assert_null(line);
    free(log);
}

/* Whole lines from concurrent scans: none lost, none interleaved. */
static void audit_log_threads(void **state)
{
    cm_plugins *list = NULL;
    char config[256];
    snprintf(config, sizeof config, "path=%s", logfile);
    assert_int_equal(cm_plugins_load(&list, PLUGIN("audit-log.so"), config, errbuf), CLIPMOD_OK);
    run_threads(list);
    cm_plugins_free(list);

    char *log = slurp(logfile), *save = NULL;
    size_t lines = 0;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *rest = after_time(line);
        int t, i, n = 0;
        assert_int_equal(
            sscanf(rest, "\"policy\":\"test-policy\",\"name\":\"t%d-%d.jpg\",%n", &t, &i, &n), 2);
        assert_string_equal(rest + n,
                            "\"state\":\"flagged\",\"action\":\"flag\",\"category\":\"weapons\"}");
        lines++;
    }
    assert_int_equal(lines, THREADS * PER_THREAD);
    free(log);
}

/* A write that fails becomes a note on the result; the verdict is untouched. */
static void audit_log_write_error(void **state)
{
    cm_plugins *list = NULL;
    if (access("/dev/full", W_OK) != 0)
        skip();
    clipmod_result *r = make("x.jpg", "gore", CLIPMOD_ACTION_REJECT);
    assert_int_equal(cm_plugins_load(&list, PLUGIN("audit-log.so"), "path=/dev/full", errbuf),
                     CLIPMOD_OK);
    notify(list, r);
    cm_plugins_free(list);
    assert_int_equal(r->n_notes, 1);
    assert_string_equal(r->notes[0].by, "audit-log");
    assert_string_equal(r->notes[0].text,
                        "not logged: cannot write /dev/full: No space left on device");
    assert_int_equal(clipmod_result_action(r), CLIPMOD_ACTION_REJECT);
    clipmod_result_free(r);
}

/* ------------------------------------------------------------------------ */
/* plugins/allowlist.                                                       */

static void allowlist_config(void **state)
{
    const char *path = PLUGIN("allowlist.so");
    expect_failure(path, "", CLIPMOD_E_PLUGIN, "(allowlist): no patterns", NULL);
    expect_failure(path, "match=*.ico;glob=*.png", CLIPMOD_E_PLUGIN,
                   "(allowlist): unknown key \"glob\"", NULL);
    expect_failure(path, "match= ", CLIPMOD_E_PLUGIN, "empty match pattern", NULL);
}

/* The notes of `r` as "by: text" lines. */
static void notes(const clipmod_result *r, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n_notes && used < size; i++)
        used +=
            (size_t)snprintf(buf + used, size - used, "%s: %s\n", r->notes[i].by, r->notes[i].text);
}

static void allowlist_overrides(void **state)
{
    cm_plugins *list = NULL;
    char buf[1024];
    enum { ICO, AVATAR, OTHER, UNSCANNED_ICO, CLEAN_ICO, BMP_DIR, N };
    clipmod_result *r[N] = {
        [ICO] = make("/srv/x/favicon.ico", "gore", CLIPMOD_ACTION_QUARANTINE),
        [AVATAR] = make("/srv/avatars/u/1.png", "weapons", CLIPMOD_ACTION_REJECT),
        [OTHER] = make("/srv/up/1.png", "weapons", CLIPMOD_ACTION_REJECT),
        [UNSCANNED_ICO] = make_unscanned("broken.ico", CLIPMOD_REASON_DECODE_ERROR),
        [CLEAN_ICO] = make("a.ico", NULL, 0),
        /* "*.bmp" has no '/': it must not match a directory called x.bmp. */
        [BMP_DIR] = make("/srv/x.bmp/1.gif", "drugs", CLIPMOD_ACTION_TAG),
    };

    assert_int_equal(cm_plugins_load(&list, PLUGIN("allowlist.so"),
                                     "match=*.bmp; match=*.ico; match=/srv/avatars/*", errbuf),
                     CLIPMOD_OK);
    for (int i = 0; i < N; i++)
        notify(list, r[i]);
    cm_plugins_free(list);

    assert_int_equal(clipmod_result_state(r[ICO]), CLIPMOD_STATE_CLEAN);
    assert_int_equal(clipmod_result_action(r[ICO]), CLIPMOD_ACTION_ALLOW);
    notes(r[ICO], buf, sizeof buf);
    assert_string_equal(buf, "allowlist: action quarantine -> allow: name matches allowlist "
                             "pattern \"*.ico\"\n");
    char *json = clipmod_result_to_json(r[ICO], 0);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"state\":\"clean\",\"action\":\"allow\""));
    assert_non_null(strstr(json, "\"notes\":[{\"by\":\"allowlist\",\"text\":\"action quarantine "
                                 "-> allow: name matches allowlist pattern \\\"*.ico\\\"\"}]"));
    clipmod_free(json);

    /* '*' in a pattern with '/' crosses directories. */
    assert_int_equal(clipmod_result_state(r[AVATAR]), CLIPMOD_STATE_CLEAN);
    notes(r[AVATAR], buf, sizeof buf);
    assert_string_equal(buf, "allowlist: action reject -> allow: name matches allowlist "
                             "pattern \"/srv/avatars/*\"\n");

    /* Everything else is as it was, without notes. */
    assert_int_equal(clipmod_result_state(r[OTHER]), CLIPMOD_STATE_FLAGGED);
    assert_int_equal(clipmod_result_action(r[OTHER]), CLIPMOD_ACTION_REJECT);
    assert_int_equal(clipmod_result_state(r[UNSCANNED_ICO]), CLIPMOD_STATE_UNSCANNED);
    assert_int_equal(clipmod_result_state(r[CLEAN_ICO]), CLIPMOD_STATE_CLEAN);
    assert_int_equal(clipmod_result_state(r[BMP_DIR]), CLIPMOD_STATE_FLAGGED);
    assert_int_equal(clipmod_result_action(r[BMP_DIR]), CLIPMOD_ACTION_TAG);
    for (int i = OTHER; i < N; i++)
        assert_int_equal(r[i]->n_notes, 0);
    for (int i = 0; i < N; i++)
        clipmod_result_free(r[i]);
}

/* A plugin loaded later sees the verdict as earlier plugins left it. */
static void override_seen_by_later_plugin(void **state)
{
    cm_plugins *list = NULL;
    char config[256];
    clipmod_result *r = make("logo.ico", "gore", CLIPMOD_ACTION_REJECT);
    snprintf(config, sizeof config, "path=%s", logfile);
    assert_int_equal(cm_plugins_load(&list, PLUGIN("allowlist.so"), "match=*.ico", errbuf),
                     CLIPMOD_OK);
    assert_int_equal(cm_plugins_load(&list, PLUGIN("audit-log.so"), config, errbuf), CLIPMOD_OK);
    notify(list, r);
    cm_plugins_free(list);
    clipmod_result_free(r);
    char *log = slurp(logfile);
    assert_non_null(strstr(log, "\"name\":\"logo.ico\",\"state\":\"clean\",\"action\":\"allow\""));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(not_a_shared_object, setup, teardown),
        cmocka_unit_test_setup_teardown(no_entry_point, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_entry_point, setup, teardown),
        cmocka_unit_test_setup_teardown(abi_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_header_unused_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(init_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(lifecycle_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(serialized_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_log_config, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_log_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_log_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(audit_log_write_error, setup, teardown),
        cmocka_unit_test_setup_teardown(allowlist_config, setup, teardown),
        cmocka_unit_test_setup_teardown(allowlist_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(override_seen_by_later_plugin, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
