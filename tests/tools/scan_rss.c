/*
 * scan_rss.c - resident memory of a process before and after it scans, for tests.
 *
 * Usage: scan_rss MODEL POLICY FILE [SETTING=VALUE ...]
 * Compiles POLICY (no prompt cache), prints "before KB", scans FILE, and prints
 * "after KB" and the verdict's state: what a long-running service keeps after an
 * input, as tests/frame_budget.sh checks
 * (libvips' worker threads allocate from glibc arenas that are not given back unless
 * trimmed). Settings use the library's names (max-total-pixels=2000000000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipmod/clipmod.h"

static long rss_kb(void)
{
    long pages = -1, resident = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = -1;
        fclose(f);
    }
    return resident < 0 ? -1 : resident * 4;
}

static int set(clipmod_engine *e, const char *arg)
{
    const char *eq = strchr(arg, '=');
    for (int s = 0; eq && s < CLIPMOD_SETTING__COUNT; s++) {
        const char *name = clipmod_setting_name((clipmod_setting)s);
        if (strlen(name) == (size_t)(eq - arg) && !strncmp(name, arg, (size_t)(eq - arg)))
            return clipmod_engine_set(e, (clipmod_setting)s, strtoull(eq + 1, NULL, 10)) ? -1 : 0;
    }
    fprintf(stderr, "scan_rss: unknown setting %s\n", arg);
    return -1;
}

static const char *scan(const clipmod_engine *e, const char *path)
{
    clipmod_result *r = NULL;
    if (clipmod_scan_file(e, path, &r))
        return NULL;
    const char *state = clipmod_state_name(clipmod_result_state(r));
    clipmod_result_free(r);
    return state;
}

int main(int argc, char **argv)
{
    clipmod_model *model = NULL;
    clipmod_engine *engine = NULL;
    char err[CLIPMOD_ERROR_SIZE], *problems = NULL;
    int rc = 1;

    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL POLICY FILE [SETTING=VALUE ...]\n", argv[0]);
        return 2;
    }
    if (clipmod_init(argv[0]) || clipmod_model_load(argv[1], NULL, &model, err) ||
        clipmod_engine_new(model, &engine) || clipmod_engine_set_cache_dir(engine, NULL)) {
        fprintf(stderr, "scan_rss: cannot load %s\n", argv[1]);
        goto out;
    }
    for (int i = 4; i < argc; i++)
        if (set(engine, argv[i]))
            goto out;
    if (clipmod_engine_compile(engine, argv[2], &problems)) {
        fprintf(stderr, "scan_rss: %s", problems ? problems : "the policy does not compile\n");
        goto out;
    }
    printf("before %ld\n", rss_kb());
    const char *state = scan(engine, argv[3]);
    printf("after %ld\nstate %s\n", rss_kb(), state ? state : "error");
    rc = state ? 0 : 1;
out:
    clipmod_free(problems);
    clipmod_engine_free(engine);
    clipmod_model_free(model);
    clipmod_shutdown();
    return rc;
}
