/*
 * test_fingerprint.c - the policy fingerprint (src/lib/fingerprint.c).
 *
 * Checks what clipmod_engine_policy_fingerprint() promises: 64 lowercase hex digits,
 * equal to an independent SHA-256 (sha256sum) of the framed file bytes, stable for
 * the same files, and different when an included file changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "policy.h"

static char dir[] = "/tmp/cm_test_fp_XXXXXX";

static void put(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void fingerprint(char out[CM_FINGERPRINT_SIZE])
{
    char path[256], *problems = NULL;
    cm_policy *p = NULL;
    snprintf(path, sizeof path, "%s/main.yaml", dir);
    assert_int_equal(cm_policy_load(path, &p, &problems), CLIPMOD_OK);
    assert_int_equal(cm_policy_fingerprint(p, out), 0);
    cm_policy_free(p);
    free(problems);
}

#define MAIN "version: 1\nname: t\ninclude:\n  - inc.yaml\n"
#define INC1                                                                                       \
    "version: 1\nneutral: [a photo]\ncategories:\n  - id: a\n    prompts: [a photo of a cat]\n   " \
    " threshold: 0.5\n    action: flag\n"
#define INC2                                                                                       \
    "version: 1\nneutral: [a photo]\ncategories:\n  - id: a\n    prompts: [a photo of a dog]\n   " \
    " threshold: 0.5\n    action: flag\n"

static void test_fingerprint(void **state)
{
    (void)state;
    char a[CM_FINGERPRINT_SIZE], b[CM_FINGERPRINT_SIZE], c[CM_FINGERPRINT_SIZE];
    put("main.yaml", MAIN);
    put("inc.yaml", INC1);
    fingerprint(a);
    fingerprint(b);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_string_equal(a, b);
    put("inc.yaml", INC2);
    fingerprint(c);
    assert_string_not_equal(a, c);

    /* Independently: sha256sum over the framing (u64 name length, name, u64 length,
     * bytes) of main.yaml then inc.yaml, built with printf. */
    char cmd[1024], want[80] = "";
    snprintf(cmd, sizeof cmd,
             "cd %s && { for f in main.yaml inc.yaml; do "
             "/usr/bin/python3 -c 'import os,struct,sys; f=sys.argv[1]; "
             "sys.stdout.buffer.write(struct.pack(\"<Q\",len(f))+f.encode()+"
             "struct.pack(\"<Q\",os.path.getsize(f))+open(f,\"rb\").read())' $f; done; } "
             "| sha256sum | cut -c1-64",
             dir);
    FILE *pipe = popen(cmd, "r");
    assert_non_null(pipe);
    assert_non_null(fgets(want, sizeof want, pipe));
    pclose(pipe);
    want[strcspn(want, "\n")] = '\0';
    assert_string_equal(c, want);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 99;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fingerprint)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
