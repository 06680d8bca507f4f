/*
 * test_common_swap.c - src/common/swap.c with real engines.
 *
 * Two engines are compiled on the committed demo model (engine_cfg.c) from two
 * small policies, so their fingerprints differ, each with test_plugin's fixture
 * plugin (tag A or B) whose fini callback writes "fini TAG" to a file when the
 * engine is really freed: that is how the test sees an engine outlive an install
 * and die with its last reference. Then threads acquire (checking that the
 * snapshot belongs to the engine they got, and that generations never go back)
 * while the main thread installs over and over; run under ASan in the sanitizer
 * build, a reference miscounted becomes a use-after-free or a leak.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_files.h"

#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "engine_cfg.h"
#include "log.h"
#include "swap.h"

static char dir[64], model_dir[1024], fixture_path[1024], plugin_log[128];
static clipmod_model *model;

static const char *srcdir(void)
{
    const char *d = getenv("top_srcdir");
    return d && *d ? d : CM_TEST_TOP_SRCDIR;
}

/* A compiled engine on a one-category policy named `tag`, with the fixture plugin. */
static clipmod_engine *engine(const char *tag)
{
    char policy[128], config[256], errbuf[CLIPMOD_ERROR_SIZE], cache[128];
    clipmod_engine *e = NULL;
    FILE *f;
    snprintf(policy, sizeof policy, "%s/%s.yaml", dir, tag);
    f = fopen(policy, "w");
    assert_non_null(f);
    fprintf(f,
            "version: 1\nname: %s\nneutral: [grinning face]\ncategories:\n"
            "  - id: weapons\n    prompts: [pistol]\n    threshold: 0.5\n    action: flag\n",
            tag);
    assert_int_equal(fclose(f), 0);
    snprintf(config, sizeof config, "log=%s;tag=%s", plugin_log, tag);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    cm_plugin_cfg p = {fixture_path, config};
    cm_engine_cfg c;
    memset(&c, 0, sizeof c);
    c.policy = policy;
    c.cache_dir = cache;
    c.plugins = &p;
    c.n_plugins = 1;
    if (cm_engine_from_config(&c, model, &e, NULL, errbuf))
        fail_msg("%s", errbuf);
    return e;
}

static int freed(const char *tag)
{
    char want[32];
    char *log = slurp(plugin_log);
    snprintf(want, sizeof want, "fini %s\n", tag);
    int yes = strstr(log, want) != NULL;
    free(log);
    return yes;
}

/* ------------------------------------------------------------------------ */

static void generations_and_info(void **state)
{
    cm_swap *s = cm_swap_new();
    cm_swap_info info;
    assert_non_null(s);
    /* Empty: nothing to acquire, generation 0. */
    assert_null(cm_swap_acquire(s));
    cm_swap_info_get(s, &info);
    assert_int_equal(info.generation, 0);
    assert_true(info.loaded_at == 0);
    assert_string_equal(info.policy_fp, "");

    clipmod_engine *a = engine("A"), *b = engine("B");
    char fp_a[80], fp_b[80];
    snprintf(fp_a, sizeof fp_a, "%s", clipmod_engine_policy_fingerprint(a));
    snprintf(fp_b, sizeof fp_b, "%s", clipmod_engine_policy_fingerprint(b));
    assert_int_equal(strlen(fp_a), 64);
    assert_string_not_equal(fp_a, fp_b);

    double before = cm_wall();
    assert_int_equal(cm_swap_install(s, a, fp_a), 0);
    clipmod_engine *held = cm_swap_acquire_info(s, &info);
    assert_ptr_equal(held, a);
    assert_int_equal(info.generation, 1);
    assert_string_equal(info.policy_fp, fp_a);
    assert_true(info.loaded_at >= before - 1 && info.loaded_at <= cm_wall() + 1);

    /* Install B: the slot's reference to A goes, but `held` keeps A alive. */
    assert_int_equal(cm_swap_install(s, b, fp_b), 1);
    cm_swap_info_get(s, &info);
    assert_int_equal(info.generation, 2);
    assert_string_equal(info.policy_fp, fp_b);
    assert_false(freed("A"));
    assert_string_equal(clipmod_engine_policy_name(held), "A"); /* still usable */
    assert_string_equal(clipmod_engine_policy_fingerprint(held), fp_a);
    clipmod_engine_free(held); /* the last reference: now A goes */
    assert_true(freed("A"));
    assert_false(freed("B"));

    /* A NULL fingerprint is stored as "". */
    clipmod_engine *b2 = cm_swap_acquire(s);
    assert_ptr_equal(b2, b);
    assert_int_equal(cm_swap_install(s, b2, NULL), 2); /* B again, on our reference */
    cm_swap_info_get(s, &info);
    assert_int_equal(info.generation, 3);
    assert_string_equal(info.policy_fp, "");
    assert_false(freed("B"));
    cm_swap_free(s);
    assert_true(freed("B"));
    cm_swap_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* Readers acquiring while the main thread installs.                        */

enum { READERS = 4, INSTALLS = 2000 };

static cm_swap *shared;
static atomic_int stop, bad;
static char fps[2][80];

static void *reader(void *arg)
{
    atomic_long *count = arg;
    unsigned long last = 0;
    while (!atomic_load(&stop)) {
        cm_swap_info info;
        clipmod_engine *e = cm_swap_acquire_info(shared, &info);
        if (!e)
            continue;
        /* The snapshot belongs to the engine handed out, and time never goes back. */
        const char *fp = clipmod_engine_policy_fingerprint(e);
        if (strcmp(fp, info.policy_fp) || info.generation < last) {
            fprintf(stderr, "inconsistent: engine %.12s, snapshot %.12s gen %lu after %lu\n", fp,
                    info.policy_fp, info.generation, last);
            atomic_store(&bad, 1);
            clipmod_engine_free(e);
            return NULL;
        }
        last = info.generation;
        if (clipmod_engine_category_count(e) != 1)
            atomic_store(&bad, 1);
        clipmod_engine_free(e);
        atomic_fetch_add(count, 1);
    }
    return NULL;
}

/* Each reader has acquired a few times (counts are written by the readers). */
static int all_readers_ran(atomic_long *counts)
{
    for (int t = 0; t < READERS; t++)
        if (atomic_load(&counts[t]) < 16)
            return 0;
    return 1;
}

static void readers_during_installs(void **state)
{
    clipmod_engine *ab[2] = {engine("C"), engine("D")};
    pthread_t th[READERS];
    atomic_long counts[READERS];
    for (int t = 0; t < READERS; t++)
        atomic_init(&counts[t], 0);
    for (int i = 0; i < 2; i++)
        snprintf(fps[i], sizeof fps[i], "%s", clipmod_engine_policy_fingerprint(ab[i]));
    shared = cm_swap_new();
    cm_swap_install(shared, clipmod_engine_ref(ab[0]), fps[0]);
    atomic_store(&stop, 0);
    atomic_store(&bad, 0);
    for (int t = 0; t < READERS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, reader, &counts[t]), 0);
    /* Install at least INSTALLS times and until every reader has acquired during
     * the installs: on two busy cores a thread may not be scheduled at all within
     * 2000 quick installs, and a reader that never ran tests nothing. */
    unsigned long i = 0;
    double give_up = cm_wall() + 60;
    while (i < INSTALLS || !all_readers_ran(counts)) {
        int k = (int)(++i % 2);
        assert_int_equal(cm_swap_install(shared, clipmod_engine_ref(ab[k]), fps[k]), i);
        if (i % 64 == 0)
            sched_yield();
        if (cm_wall() > give_up)
            fail_msg("a reader thread made no progress in 60 s of installs");
    }
    atomic_store(&stop, 1);
    for (int t = 0; t < READERS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(atomic_load(&bad), 0);
    cm_swap_info info;
    cm_swap_info_get(shared, &info);
    assert_int_equal(info.generation, i + 1);
    cm_swap_free(shared);
    /* Only our own references are left: each engine is freed by its last one. */
    assert_false(freed("C"));
    clipmod_engine_free(ab[0]);
    clipmod_engine_free(ab[1]);
    assert_true(freed("C"));
    assert_true(freed("D"));
}

/* ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generations_and_info),
        cmocka_unit_test(readers_during_installs),
    };
    char merges[1100], errbuf[CLIPMOD_ERROR_SIZE], err[128];
    const char *fd = getenv("CM_TEST_FIXTURE_DIR");
    snprintf(model_dir, sizeof model_dir, "%s/models/demo", srcdir());
    snprintf(merges, sizeof merges, "%s/merges.txt", model_dir);
    snprintf(fixture_path, sizeof fixture_path, "%s/plugin-fixture.so",
             fd && *fd ? fd : CM_TEST_FIXTURE_DIR);
    if (access(merges, R_OK)) {
        fprintf(stderr, "SKIP: the demo model is missing under %s\n", srcdir());
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/test_swap.XXXXXX");
    if (!mkdtemp(dir) || clipmod_init(NULL))
        return 1;
    snprintf(plugin_log, sizeof plugin_log, "%s/plugin.log", dir);
    /* Only errors: the model and policy lines are not what this test is about. */
    if (cm_log_setup3(NULL, NULL, "error", "test", err, sizeof err))
        return 1;
    cm_engine_cfg c;
    memset(&c, 0, sizeof c);
    c.model = model_dir;
    if (cm_model_from_config(&c, &model, errbuf))
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clipmod_model_free(model);
    clipmod_shutdown();
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
