/*
 * test_common_engine_cfg.c - src/common/engine_cfg.c against the real library and
 * the committed demo model (models/demo) and policy (policies/demo.yaml).
 *
 * Checks what each program relies on: the model is loaded with the demo warning in
 * its documented words; settings and --set overrides really reach the engine (a
 * tiny max-file-bytes makes a sample unscanned "too-large", an override changes the
 * threshold in effect); a missing policy, a policy with an error (its problem comes
 * back as file:line:column and is logged), and every refused setting, override,
 * fetch entry or plugin fail with the culprit named in errbuf; a real plugin (the
 * fixture built for test_plugin) is loaded and sees the scans. The log lines are
 * read from standard error, captured through a temporary file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_files.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_cfg.h"
#include "log.h"

static char dir[64], errbuf[CLIPMOD_ERROR_SIZE];
static char model_dir[1024], policy_path[1024], sample_path[1024], cache_dir[128];
static clipmod_model *model;

/* ------------------------------------------------------------------------ */
/* Helpers.                                                                 */

static const char *srcdir(void)
{
    const char *d = getenv("top_srcdir");
    return d && *d ? d : CM_TEST_TOP_SRCDIR;
}

static const char *fixture(const char *file)
{
    static char path[1024];
    const char *d = getenv("CM_TEST_FIXTURE_DIR");
    snprintf(path, sizeof path, "%s/%s", d && *d ? d : CM_TEST_FIXTURE_DIR, file);
    return path;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Standard error goes to a file between capture_start() and capture_end(). */
static int saved_stderr = -1;
static char capture_path[128];

static void capture_start(void)
{
    snprintf(capture_path, sizeof capture_path, "%s/stderr.txt", dir);
    int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(2);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
}

/* What was logged since capture_start() (the caller frees). */
static char *capture_end(void)
{
    fflush(stderr);
    assert_int_equal(dup2(saved_stderr, 2), 2);
    close(saved_stderr);
    saved_stderr = -1;
    return slurp(capture_path);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, haystack);
}

/* A configuration for the demo policy with the prompt cache in the test's directory. */
static cm_engine_cfg demo_cfg(void)
{
    cm_engine_cfg c;
    memset(&c, 0, sizeof c);
    c.model = model_dir;
    c.policy = policy_path;
    c.cache_dir = cache_dir;
    return c;
}

/* Build from cfg expecting `want`; errbuf and the captured log are kept. */
static clipmod_engine *build(const cm_engine_cfg *c, clipmod_error want, char **problems,
                             char **log)
{
    clipmod_engine *e = (clipmod_engine *)&e; /* must be reset to NULL on failure */
    errbuf[0] = '\0';
    capture_start();
    clipmod_error rc = cm_engine_from_config(c, model, &e, problems, errbuf);
    char *text = capture_end();
    if (rc != want)
        fail_msg("rc %d (%s), want %d; errbuf \"%s\"; log:\n%s", rc, clipmod_strerror(rc), want,
                 errbuf, text);
    if (want)
        assert_null(e);
    else
        assert_non_null(e);
    if (log)
        *log = text;
    else
        free(text);
    return e;
}

/* Scan `path` with e; return the result (caller frees). */
static clipmod_result *scan(const clipmod_engine *e, const char *path)
{
    clipmod_result *r = NULL;
    assert_int_equal(clipmod_scan_file(e, path, &r), CLIPMOD_OK);
    assert_non_null(r);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Models.                                                                  */

static void model_demo_warning(void **state)
{
    cm_engine_cfg c = demo_cfg();
    clipmod_model *m = (clipmod_model *)&m;
    c.threads = 1;
    capture_start();
    clipmod_error rc = cm_model_from_config(&c, &m, errbuf);
    char *log = capture_end();
    assert_int_equal(rc, CLIPMOD_OK);
    assert_non_null(m);
    assert_true(clipmod_model_is_demo(m));
    assert_contains(log, "level=info msg=\"model loaded\" model=");
    assert_contains(log, " demo=true");
    /* The words clipmodd and clipmod-milter printed before, unchanged. */
    assert_contains(log, "level=warn msg=\"this is clipmod's demo model, trained on emoji for "
                         "demos and tests; verdicts are not real moderation\" model=");
    free(log);
    clipmod_model_free(m);
}

static void model_missing(void **state)
{
    char missing[128];
    cm_engine_cfg c = demo_cfg();
    clipmod_model *m = (clipmod_model *)&m;
    snprintf(missing, sizeof missing, "%s/no-model", dir);
    c.model = missing;
    errbuf[0] = '\0';
    capture_start();
    clipmod_error rc = cm_model_from_config(&c, &m, errbuf);
    char *log = capture_end();
    assert_int_not_equal(rc, CLIPMOD_OK);
    assert_null(m);
    assert_contains(errbuf, missing);
    assert_contains(log, "level=error msg=\"model not loaded\" model=");
    assert_contains(log, missing);
    free(log);
    /* No model directory at all; errbuf may be NULL. */
    c.model = NULL;
    capture_start();
    rc = cm_model_from_config(&c, &m, NULL);
    free(capture_end());
    assert_int_equal(rc, CLIPMOD_E_INVALID_ARG);
    assert_null(m);
}

/* A model without a merges file cannot embed prompts: refused, naming the directory. */
static void model_without_text(void **state)
{
    char d[128], link[1280], target[1280];
    cm_engine_cfg c = demo_cfg();
    clipmod_model *m = (clipmod_model *)&m;
    snprintf(d, sizeof d, "%s/imageonly", dir);
    assert_int_equal(mkdir(d, 0700), 0);
    static const char *const files[] = {"config.json", "model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(link, sizeof link, "%s/%s", d, files[i]);
        snprintf(target, sizeof target, "%s/%s", model_dir, files[i]);
        assert_int_equal(symlink(target, link), 0);
    }
    c.model = d;
    capture_start();
    clipmod_error rc = cm_model_from_config(&c, &m, errbuf);
    char *log = capture_end();
    assert_int_not_equal(rc, CLIPMOD_OK);
    assert_null(m);
    assert_contains(errbuf, d);
    assert_contains(errbuf, "cannot embed texts");
    assert_contains(log, "level=error msg=\"the model cannot embed texts");
    free(log);
}

/* ------------------------------------------------------------------------ */
/* Engines.                                                                 */

static void engine_demo(void **state)
{
    cm_engine_cfg c = demo_cfg();
    char *problems = (char *)&problems;
    clipmod_engine *e = build(&c, CLIPMOD_OK, &problems, NULL);
    assert_null(problems); /* the demo policy is written for the demo model */
    assert_string_equal(clipmod_engine_policy_name(e), "clipmod demo (emoji)");
    assert_int_equal(strlen(clipmod_engine_policy_fingerprint(e)), 64);
    /* The default limits: the sample is scanned (flagged or not, it is not refused). */
    clipmod_result *r = scan(e, sample_path);
    assert_int_not_equal(clipmod_result_state(r), CLIPMOD_STATE_UNSCANNED);
    clipmod_result_free(r);
    clipmod_engine_free(e);
}

/* Settings and overrides are applied, not merely accepted. */
static void settings_and_overrides_applied(void **state)
{
    static const char *const sets[] = {"weapons.threshold=0.99", "alcohol.action=reject"};
    cm_engine_cfg c = demo_cfg();
    c.setting[CLIPMOD_MAX_FILE_BYTES] = 16;
    c.setting_given[CLIPMOD_MAX_FILE_BYTES] = 1;
    c.overrides = sets;
    c.n_overrides = 2;
    clipmod_engine *e = build(&c, CLIPMOD_OK, NULL, NULL);
    clipmod_result *r = scan(e, sample_path);
    assert_int_equal(clipmod_result_state(r), CLIPMOD_STATE_UNSCANNED);
    assert_int_equal(clipmod_result_reason(r), CLIPMOD_REASON_TOO_LARGE);
    clipmod_result_free(r);
    long w = clipmod_engine_category_find(e, "weapons", NULL);
    long a = clipmod_engine_category_find(e, "alcohol", NULL);
    clipmod_category_info info;
    assert_true(w >= 0 && a >= 0);
    assert_int_equal(clipmod_engine_category_info(e, (size_t)w, &info), CLIPMOD_OK);
    assert_true(info.threshold > 0.9899 && info.threshold < 0.9901);
    assert_int_equal(clipmod_engine_category_info(e, (size_t)a, &info), CLIPMOD_OK);
    assert_int_equal(info.action, CLIPMOD_ACTION_REJECT);
    clipmod_engine_free(e);
}

static void policy_missing(void **state)
{
    char missing[128], *problems = NULL, *log = NULL;
    cm_engine_cfg c = demo_cfg();
    snprintf(missing, sizeof missing, "%s/no-such-policy.yaml", dir);
    c.policy = missing;
    build(&c, CLIPMOD_E_IO, &problems, &log);
    assert_non_null(problems);
    assert_contains(problems, missing);
    /* errbuf says why, not only "input/output error". */
    assert_int_equal(strncmp(errbuf, missing, strlen(missing)), 0);
    assert_contains(errbuf, ": cannot read: No such file or directory");
    assert_contains(log, "level=error msg=\"policy problem\" problem=");
    assert_contains(log, "level=error msg=\"policy not compiled\"");
    clipmod_free(problems);
    free(log);
    /* No policy at all. */
    c.policy = NULL;
    build(&c, CLIPMOD_E_INVALID_ARG, NULL, NULL);
    assert_string_equal(errbuf, "no policy file given");
}

static void policy_with_error(void **state)
{
    char path[128], want[512], logged[640], *problems = NULL, *log = NULL;
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    write_file(path, "version: 1\n"
                     "neutral: [grinning face]\n"
                     "categories:\n"
                     "  - id: weapons\n"
                     "    prompts: [pistol]\n"
                     "    threshold: 1.5\n"
                     "    action: flag\n");
    cm_engine_cfg c = demo_cfg();
    c.policy = path;
    build(&c, CLIPMOD_E_POLICY, &problems, &log);
    snprintf(want, sizeof want,
             "%s:6:16: threshold must be a number greater than 0 and at most 1, not '1.5'", path);
    assert_non_null(problems);
    assert_int_equal(strncmp(problems, want, strlen(want)), 0);
    snprintf(want, sizeof want, "%s: the policy has problems", path);
    assert_string_equal(errbuf, want);
    /* Each problem is its own log line, quoted (the path has no spaces, the message has). */
    snprintf(logged, sizeof logged,
             "level=error msg=\"policy problem\" problem=\"%s:6:16: threshold must be", path);
    assert_contains(log, logged);
    clipmod_free(problems);
    free(log);
}

/* Warnings: logged (unless quiet_warnings) and handed over, the engine built. */
static void policy_warnings(void **state)
{
    char path[128], *problems = NULL, *log = NULL;
    snprintf(path, sizeof path, "%s/other-model.yaml", dir);
    write_file(path, "version: 1\n"
                     "model: example/another-model\n"
                     "neutral: [grinning face]\n"
                     "categories:\n"
                     "  - id: weapons\n"
                     "    prompts: [pistol]\n"
                     "    threshold: 0.5\n"
                     "    action: flag\n");
    cm_engine_cfg c = demo_cfg();
    c.policy = path;
    clipmod_engine *e = build(&c, CLIPMOD_OK, &problems, &log);
    assert_non_null(problems);
    assert_contains(problems, "warning: the policy was written for example/another-model");
    assert_contains(log, "level=warn msg=\"policy warning\" problem=");
    clipmod_free(problems);
    free(log);
    clipmod_engine_free(e);
    c.quiet_warnings = 1;
    e = build(&c, CLIPMOD_OK, NULL, &log);
    assert_null(strstr(log, "policy warning"));
    free(log);
    clipmod_engine_free(e);
}

static void bad_setting(void **state)
{
    char *log = NULL;
    cm_engine_cfg c = demo_cfg();
    c.setting_given[CLIPMOD_MAX_SIDE] = 1; /* 0: every input would be unscannable */
    build(&c, CLIPMOD_E_INVALID_ARG, NULL, &log);
    assert_contains(errbuf, "max-side 0");
    assert_contains(log, "level=error msg=\"engine setting refused\" setting=max-side value=0");
    free(log);
}

static void bad_override(void **state)
{
    static const char *const sets[] = {"weapons.threshold=0.5", "weapons.threshold=7"};
    char *log = NULL;
    cm_engine_cfg c = demo_cfg();
    c.overrides = sets;
    c.n_overrides = 2;
    build(&c, CLIPMOD_E_INVALID_ARG, NULL, &log);
    assert_contains(errbuf, "weapons.threshold=7");
    assert_null(strstr(errbuf, "=0.5"));
    assert_contains(log, "msg=\"override refused\" override=\"weapons.threshold=7\"");
    free(log);
    /* A category the policy does not have is a compile problem, with a suggestion. */
    static const char *const typo[] = {"weapon.threshold=0.5"};
    char *problems = NULL;
    c.overrides = typo;
    c.n_overrides = 1;
    build(&c, CLIPMOD_E_POLICY, &problems, NULL);
    assert_non_null(problems);
    assert_contains(problems, "weapon.threshold=0.5: the policy has no category 'weapon'");
    clipmod_free(problems);
}

static void bad_fetch_entry(void **state)
{
    static const char *const allow[] = {"127.0.0.1/32", "10.0.0.0/99"};
    cm_engine_cfg c = demo_cfg();
    c.fetch_allow = allow;
    c.n_fetch_allow = 2;
    build(&c, CLIPMOD_E_INVALID_ARG, NULL, NULL);
    assert_contains(errbuf, "fetch allow entry 10.0.0.0/99: not a network");
}

static void plugin_missing(void **state)
{
    char path[128], *log = NULL;
    snprintf(path, sizeof path, "%s/no-such-plugin.so", dir);
    cm_plugin_cfg p = {path, NULL};
    cm_engine_cfg c = demo_cfg();
    c.plugins = &p;
    c.n_plugins = 1;
    build(&c, CLIPMOD_E_PLUGIN, NULL, &log);
    assert_contains(errbuf, path);
    assert_contains(log, "level=error msg=\"plugin not loaded\" plugin=");
    free(log);
}

/* The fixture plugin refuses a configuration with fail=: its words reach errbuf. */
static void plugin_refuses_config(void **state)
{
    cm_plugin_cfg p = {NULL, "fail=no moon tonight"};
    cm_engine_cfg c = demo_cfg();
    char path[1024];
    snprintf(path, sizeof path, "%s", fixture("plugin-fixture.so"));
    p.path = path;
    c.plugins = &p;
    c.n_plugins = 1;
    build(&c, CLIPMOD_E_PLUGIN, NULL, NULL);
    assert_contains(errbuf, path);
    assert_contains(errbuf, "no moon tonight");
}

static void plugin_loaded(void **state)
{
    char path[1024], config[256], logfile[128], want[1400];
    snprintf(path, sizeof path, "%s", fixture("plugin-fixture.so"));
    snprintf(logfile, sizeof logfile, "%s/plugin.log", dir);
    snprintf(config, sizeof config, "log=%s;tag=cfg", logfile);
    cm_plugin_cfg p = {path, config};
    cm_engine_cfg c = demo_cfg();
    c.plugins = &p;
    c.n_plugins = 1;
    clipmod_engine *e = build(&c, CLIPMOD_OK, NULL, NULL);
    clipmod_result_free(scan(e, sample_path));
    clipmod_engine_free(e);
    char *log = slurp(logfile);
    snprintf(want, sizeof want, "init cfg\nresult cfg %s\nfini cfg\n", sample_path);
    assert_string_equal(log, want);
    free(log);
}

static void null_arguments(void **state)
{
    clipmod_engine *e = NULL;
    cm_engine_cfg c = demo_cfg();
    capture_start();
    assert_int_equal(cm_engine_from_config(NULL, model, &e, NULL, NULL), CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_engine_from_config(&c, NULL, &e, NULL, errbuf), CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_model_from_config(NULL, NULL, NULL), CLIPMOD_E_INVALID_ARG);
    free(capture_end());
    assert_null(e);
}

/* ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    cm_engine_cfg c;
    memset(&c, 0, sizeof c);
    c.model = model_dir;
    capture_start();
    clipmod_error rc = cm_model_from_config(&c, &model, errbuf);
    free(capture_end());
    if (rc)
        fprintf(stderr, "cannot load %s: %s\n", model_dir, errbuf);
    return rc ? -1 : 0;
}

static int teardown(void **state)
{
    clipmod_model_free(model);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_demo_warning),
        cmocka_unit_test(model_missing),
        cmocka_unit_test(model_without_text),
        cmocka_unit_test(engine_demo),
        cmocka_unit_test(settings_and_overrides_applied),
        cmocka_unit_test(policy_missing),
        cmocka_unit_test(policy_with_error),
        cmocka_unit_test(policy_warnings),
        cmocka_unit_test(bad_setting),
        cmocka_unit_test(bad_override),
        cmocka_unit_test(bad_fetch_entry),
        cmocka_unit_test(plugin_missing),
        cmocka_unit_test(plugin_refuses_config),
        cmocka_unit_test(plugin_loaded),
        cmocka_unit_test(null_arguments),
    };
    char merges[1100];
    snprintf(model_dir, sizeof model_dir, "%s/models/demo", srcdir());
    snprintf(merges, sizeof merges, "%s/merges.txt", model_dir);
    snprintf(policy_path, sizeof policy_path, "%s/policies/demo.yaml", srcdir());
    snprintf(sample_path, sizeof sample_path, "%s/tests/data/demo-scenes/water-pistol.png",
             srcdir());
    /* The demo data is committed, but a trimmed checkout may lack it: skip, saying why. */
    if (access(merges, R_OK) || access(policy_path, R_OK) || access(sample_path, R_OK)) {
        fprintf(stderr, "SKIP: the demo model, policy or samples are missing under %s\n", srcdir());
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/test_engine_cfg.XXXXXX");
    if (!mkdtemp(dir) || clipmod_init(NULL))
        return 1;
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", dir);
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    clipmod_shutdown();
    return rc;
}
