/*
 * oom_walk.c - allocation-failure walk over the library, for tests/oom.sh.
 *
 * Usage: oom_walk MODEL_DIR POLICY WORK_DIR IMAGE...
 *
 * For each phase - loading the model (without the weights cache, then writing its
 * file, then mapping it), compiling the policy (prompt cache off, cold
 * and warm) and scanning the images as one batch (half from files, half from
 * memory) - it first runs the phase once counting allocations, then again with the
 * 1st, 2nd, 3rd ... allocation failing (cm_alloc_fail_at, src/lib/common.h) until a
 * run completes with no failure injected. Past WALK_EVERY allocations it strides.
 * Each run with an injected failure must end in CLIPMOD_E_NOMEM, or in CLIPMOD_OK
 * where the library absorbs the failure by design (a prompt cache it cannot open is
 * not used); a scan's results must then each be the normal verdict with the normal
 * JSON, or "unscanned" with a reason. Never a crash (the shell test sees the signal)
 * and never a leak (the sanitizer build's LeakSanitizer checks at exit).
 * jansson's allocations are routed through the same injection with
 * json_set_alloc_funcs (global, so only here, never in the library), except while
 * jansson parses: its lexer (2.14, and upstream's load.c) ignores a failed growth of
 * its token buffer (lex_save) and lex_scan_string then runs past the end of the heap
 * block, so json_load_file/json_loadb are wrapped here to parse without injection.
 * libyaml has no allocation hooks, so its allocations never fail here, and libvips
 * (GLib) aborts on a failed allocation by design: all three are third-party and out
 * of scope.
 *
 * Prints one line per phase: allocations counted, runs, failures found. Exit 0
 * when every run behaved, 1 otherwise, 2 on a setup error.
 */
#include <dlfcn.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clipmod/clipmod.h"
#include "common.h"

/* Every allocation up to here is failed in turn; past it the walk strides. */
#define WALK_EVERY 2000
/* Runs past WALK_EVERY per phase, spread evenly over the rest. */
#define WALK_SAMPLES 300

typedef struct ctx {
    const char *model_dir, *policy, *work;
    char cache_dir[4096];
    int cache; /* 0 none, 1 cold (emptied before each run), 2 warm */
    clipmod_model *model;
    clipmod_engine *engine;
    clipmod_input *inputs;
    size_t n_inputs;
    clipmod_state *want_state; /* each input's verdict without injection */
    char **want_json;          /* and its JSON, without the elapsed time */
} ctx;

/* What one run of a phase came to. */
typedef enum outcome { RAN_OK, RAN_NOMEM, RAN_WRONG } outcome;

typedef outcome (*phase_fn)(ctx *c, char *why, size_t size);

/* Set while jansson parses (see above): its allocations then neither fail nor count. */
static int in_parser;

static void *j_malloc(size_t n)
{
    /* cm_realloc(NULL, n) is malloc(n) behind the injection point. */
    return in_parser ? malloc(n) : cm_realloc(NULL, n);
}

/* The library's calls into jansson's parser land here first (the executable's
 * definitions come before libjansson's), and go on to the real ones. */
json_t *json_load_file(const char *path, size_t flags, json_error_t *error)
{
    static json_t *(*real)(const char *, size_t, json_error_t *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "json_load_file");
    in_parser++;
    json_t *root = real(path, flags, error);
    in_parser--;
    return root;
}

json_t *json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error)
{
    static json_t *(*real)(const char *, size_t, size_t, json_error_t *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "json_loadb");
    in_parser++;
    json_t *root = real(buffer, buflen, flags, error);
    in_parser--;
    return root;
}

static outcome from_rc(clipmod_error rc, char *why, size_t size)
{
    if (rc == CLIPMOD_OK)
        return RAN_OK;
    if (rc == CLIPMOD_E_NOMEM)
        return RAN_NOMEM;
    snprintf(why, size, "returned %s", clipmod_strerror(rc));
    return RAN_WRONG;
}

/* ------------------------------------------------------------------------ */
/* The phases.                                                              */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static outcome phase_load(ctx *c, char *why, size_t size)
{
    clipmod_model *m = (clipmod_model *)1;
    char err[CLIPMOD_ERROR_SIZE] = "";
    if (c->cache == 1)
        nftw(c->cache_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    /* Through the weights cache: cold writes the file, warm maps it; a cache that
     * fails for memory must leave a normal load (CLIPMOD_OK) or CLIPMOD_E_NOMEM. */
    clipmod_error rc = clipmod_model_load_cached(c->model_dir, NULL, CLIPMOD_PRECISION_FP32,
                                                 c->cache ? c->cache_dir : NULL, &m, err);
    outcome o = from_rc(rc, why, size);
    if (rc && m) {
        snprintf(why, size, "failed (%s) but left *out set", clipmod_strerror(rc));
        return RAN_WRONG;
    }
    if (o == RAN_WRONG)
        snprintf(why, size, "returned %s: %s", clipmod_strerror(rc), err);
    clipmod_model_free(m);
    return o;
}

static outcome phase_compile(ctx *c, char *why, size_t size)
{
    clipmod_engine *e = NULL;
    char *problems = NULL;
    if (c->cache == 1)
        nftw(c->cache_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    clipmod_error rc = clipmod_engine_new(c->model, &e);
    if (!rc)
        rc = clipmod_engine_set_cache_dir(e, c->cache ? c->cache_dir : NULL);
    if (!rc)
        rc = clipmod_engine_compile(e, c->policy, &problems);
    outcome o = from_rc(rc, why, size);
    if (o == RAN_WRONG)
        snprintf(why, size, "returned %s: %s", clipmod_strerror(rc), problems ? problems : "");
    clipmod_free(problems);
    clipmod_engine_free(e);
    return o;
}

/* A result's JSON without its elapsed time, which differs run to run (NULL: no memory). */
static char *stable_json(const clipmod_result *r)
{
    char *j = clipmod_result_to_json(r, 1);
    char *t = j ? strstr(j, ",\"elapsed_ms\":") : NULL;
    if (t) {
        t[0] = '}';
        t[1] = '\0';
    }
    return j;
}

/*
 * A scan result is right if it is the normal verdict with the normal JSON (or no JSON:
 * out of memory), or "unscanned" with a reason. 1 right, 0 out of memory, -1 wrong.
 */
static int result_ok(const ctx *c, size_t i, const clipmod_result *r, char *why, size_t size)
{
    if (!r) {
        snprintf(why, size, "scan returned OK but no result for input %zu", i);
        return -1;
    }
    /* Unscanned is always an answer if it has a reason (its sentence may be lost:
     * cm_result_unscanned keeps the old one when it cannot copy the new). */
    clipmod_state s = clipmod_result_state(r);
    if (s == CLIPMOD_STATE_UNSCANNED) {
        if (clipmod_result_reason(r) != CLIPMOD_REASON_NONE)
            return 1;
        snprintf(why, size, "input %zu: unscanned without a reason", i);
        return -1;
    }
    if (s != c->want_state[i]) {
        snprintf(why, size, "input %zu: state %s, not %s nor unscanned with a reason", i,
                 clipmod_state_name(s), clipmod_state_name(c->want_state[i]));
        return -1;
    }
    /* The JSON is part of the scan's work; NULL is its out-of-memory answer. */
    char *j = stable_json(r);
    int right = !j ? 0 : strcmp(j, c->want_json[i]) ? -1 : 1;
    if (right < 0)
        snprintf(why, size, "input %zu: JSON %.400s, not %.400s", i, j, c->want_json[i]);
    clipmod_free(j);
    return right;
}

static outcome phase_scan(ctx *c, char *why, size_t size)
{
    clipmod_result *out[64];
    for (size_t i = 0; i < c->n_inputs; i++)
        out[i] = NULL;
    clipmod_error rc = clipmod_scan_batch(c->engine, c->inputs, c->n_inputs, out);
    outcome o = from_rc(rc, why, size);
    for (size_t i = 0; i < c->n_inputs; i++) {
        if (rc) {
            if (out[i] && o != RAN_WRONG) {
                snprintf(why, size, "failed (%s) but returned result %zu", clipmod_strerror(rc), i);
                o = RAN_WRONG;
            }
            continue;
        }
        int right = result_ok(c, i, out[i], why, size);
        if (right < 0)
            o = RAN_WRONG;
        else if (right == 0 && o == RAN_OK)
            o = RAN_NOMEM;
        clipmod_result_free(out[i]);
    }
    return o;
}

/* ------------------------------------------------------------------------ */
/* The walk.                                                                */

static long next_n(long n, long total)
{
    if (n < WALK_EVERY || total <= WALK_EVERY)
        return n + 1;
    long stride = (total - WALK_EVERY) / WALK_SAMPLES;
    return n + (stride > 1 ? stride : 1);
}

/* Run `fn` failing the n-th allocation for every n the walk visits. 0 if all behaved. */
static int walk(const char *name, phase_fn fn, ctx *c)
{
    /* OOM_WALK_ONLY=PHASE[:N] walks one phase (from allocation N), for debugging. */
    const char *only = getenv("OOM_WALK_ONLY");
    long from = 1;
    if (only) {
        size_t len = strcspn(only, ":");
        if (len != strlen(name) || strncmp(only, name, len))
            return 0;
        if (only[len])
            from = strtol(only + len + 1, NULL, 10);
    }
    char why[1024] = "";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cm_alloc_fail_at(0);
    outcome o = fn(c, why, sizeof why);
    long total = cm_alloc_count();
    cm_alloc_fail_off();
    if (o != RAN_OK) {
        fprintf(stderr, "%s: fails without injection: %s\n", name, why);
        return 1;
    }
    long runs = 0, nomem = 0, absorbed = 0, wrong = 0;
    for (long n = from > 0 ? from : 1;; n = next_n(n, total)) {
        why[0] = '\0';
        cm_alloc_fail_at(n);
        o = fn(c, why, sizeof why);
        int injected = cm_alloc_injected();
        cm_alloc_fail_off();
        runs++;
        if (!injected && o == RAN_OK)
            break;
        if (!injected) {
            fprintf(stderr, "%s: n=%ld: no failure injected, yet %s\n", name, n, why);
            wrong++;
            break;
        }
        if (o == RAN_WRONG) {
            fprintf(stderr, "%s: allocation %ld failed: %s\n", name, n, why);
            wrong++;
        }
        nomem += o == RAN_NOMEM;
        absorbed += o == RAN_OK;
        if (o == RAN_OK && getenv("OOM_WALK_VERBOSE"))
            fprintf(stderr, "%s: allocation %ld failed, yet the run succeeded\n", name, n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%-16s %6ld allocations, %5ld runs (%ld out-of-memory, %ld absorbed, %ld wrong) "
           "in %.1f s\n",
           name, total, runs, nomem, absorbed, wrong,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return wrong != 0;
}

/* ------------------------------------------------------------------------ */
/* Set-up.                                                                  */

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        rewind(f);
        buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = n >= 0 ? (size_t)n : 0;
    }
    fclose(f);
    return buf;
}

/* Half the images by path, half from memory; the verdicts without injection. */
static int setup_scan(ctx *c, char **images, int n)
{
    c->n_inputs = (size_t)n;
    c->inputs = calloc((size_t)n, sizeof *c->inputs);
    c->want_state = calloc((size_t)n, sizeof *c->want_state);
    c->want_json = calloc((size_t)n, sizeof *c->want_json);
    clipmod_result *out[64];
    if (!c->inputs || !c->want_state || !c->want_json)
        return -1;
    for (int i = 0; i < n; i++) {
        c->inputs[i].size = sizeof c->inputs[i];
        c->inputs[i].name = images[i];
        if (i % 2) {
            c->inputs[i].path = images[i];
            continue;
        }
        c->inputs[i].data = slurp(images[i], &c->inputs[i].len);
        if (!c->inputs[i].data) {
            fprintf(stderr, "%s: cannot read\n", images[i]);
            return -1;
        }
    }
    if (clipmod_scan_batch(c->engine, c->inputs, c->n_inputs, out))
        return -1;
    for (int i = 0; i < n; i++) {
        c->want_state[i] = clipmod_result_state(out[i]);
        c->want_json[i] = stable_json(out[i]);
        printf("input %d %s: %s\n", i, images[i], clipmod_state_name(c->want_state[i]));
        clipmod_result_free(out[i]);
    }
    return 0;
}

static int setup(ctx *c, char **images, int n)
{
    char err[CLIPMOD_ERROR_SIZE], *problems = NULL;
    if (clipmod_init("oom_walk") || clipmod_model_load(c->model_dir, NULL, &c->model, err)) {
        fprintf(stderr, "oom_walk: cannot load %s: %s\n", c->model_dir, err);
        return -1;
    }
    snprintf(c->cache_dir, sizeof c->cache_dir, "%s/cache", c->work);
    if (clipmod_engine_new(c->model, &c->engine) || clipmod_engine_set_cache_dir(c->engine, NULL) ||
        clipmod_engine_compile(c->engine, c->policy, &problems)) {
        fprintf(stderr, "oom_walk: cannot compile %s: %s\n", c->policy, problems ? problems : "");
        clipmod_free(problems);
        return -1;
    }
    clipmod_free(problems);
    return setup_scan(c, images, n);
}

static void teardown(ctx *c)
{
    for (size_t i = 0; c->inputs && i < c->n_inputs; i++)
        free((void *)c->inputs[i].data);
    free(c->inputs);
    free(c->want_state);
    for (size_t i = 0; c->want_json && i < c->n_inputs; i++)
        clipmod_free(c->want_json[i]);
    free(c->want_json);
    clipmod_engine_free(c->engine);
    clipmod_model_free(c->model);
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc - 4 > 64) {
        fprintf(stderr, "usage: oom_walk MODEL_DIR POLICY WORK_DIR IMAGE... (at most 64)\n");
        return 2;
    }
    json_set_alloc_funcs(j_malloc, cm_free);
    clipmod_set_threads(1);
    ctx c = {.model_dir = argv[1], .policy = argv[2], .work = argv[3]};
    if (setup(&c, argv + 4, argc - 4)) {
        teardown(&c);
        return 2;
    }
    int bad = walk("load model", phase_load, &c);
    c.cache = 1;
    bad |= walk("load model/weights cache cold", phase_load, &c);
    c.cache = 2;
    bad |= walk("load model/weights cache warm", phase_load, &c);
    c.cache = 0;
    bad |= walk("compile/no cache", phase_compile, &c);
    c.cache = 1;
    bad |= walk("compile/cold", phase_compile, &c);
    c.cache = 2;
    bad |= walk("compile/warm", phase_compile, &c);
    bad |= walk("scan batch", phase_scan, &c);
    teardown(&c);
    clipmod_shutdown();
    return bad;
}
