/*
 * scan_threads.c - one compiled engine shared by several threads, for tests.
 *
 * Usage: scan_threads MODEL_DIR POLICY THREADS ROUNDS IMAGE...
 * Scans every image once on the main thread, then THREADS threads scan all of them
 * ROUNDS times each at once (half of them by batch, half one by one), and every
 * result's JSON (timing removed) must equal the first one's. Exit 0 when they all
 * agree, 1 on a difference, 2 on an error.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipmod/clipmod.h"

typedef struct job {
    const clipmod_engine *engine;
    char **images;
    int n, rounds, by_batch;
    char **expected;
    int mismatches, errors;
} job;

/* The JSON of a result without its elapsed time, which differs run to run. */
static char *stable_json(const clipmod_result *r)
{
    char *j = clipmod_result_to_json(r, 1);
    char *t = j ? strstr(j, ",\"elapsed_ms\":") : NULL;
    if (t)
        memcpy(t, "}", sizeof "}");
    return j;
}

static void check(job *jb, int i, clipmod_result *r)
{
    char *j = stable_json(r);
    if (!j || strcmp(j, jb->expected[i]))
        jb->mismatches++;
    clipmod_free(j);
    clipmod_result_free(r);
}

static void *run(void *arg)
{
    job *jb = arg;
    clipmod_input *in = calloc((size_t)jb->n, sizeof *in);
    clipmod_result **out = calloc((size_t)jb->n, sizeof *out);
    if (!in || !out) {
        jb->errors++;
        free(in);
        free(out);
        return NULL;
    }
    for (int i = 0; i < jb->n; i++) {
        in[i].size = sizeof in[i];
        in[i].path = jb->images[i];
    }
    for (int round = 0; round < jb->rounds; round++) {
        if (jb->by_batch) {
            if (clipmod_scan_batch(jb->engine, in, (size_t)jb->n, out)) {
                jb->errors++;
                continue;
            }
            for (int i = 0; i < jb->n; i++)
                check(jb, i, out[i]);
        } else {
            for (int i = 0; i < jb->n; i++) {
                clipmod_result *r = NULL;
                if (clipmod_scan_file(jb->engine, jb->images[i], &r))
                    jb->errors++;
                else
                    check(jb, i, r);
            }
        }
    }
    free(in);
    free(out);
    return NULL;
}

/* A count argument: 1 to 1000, else 0 (the caller says what is wrong). */
static int count_arg(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 1 || v > 1000 ? 0 : (int)v;
}

int main(int argc, char **argv)
{
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_model *model = NULL;
    clipmod_engine *engine = NULL;
    int rc = 2;

    if (argc < 6) {
        fprintf(stderr, "usage: %s MODEL_DIR POLICY THREADS ROUNDS IMAGE...\n", argv[0]);
        return 2;
    }
    const int threads = count_arg(argv[3]), rounds = count_arg(argv[4]), n = argc - 5;
    if (!threads || !rounds) {
        fprintf(stderr, "scan_threads: THREADS and ROUNDS are counts from 1 to 1000\n");
        return 2;
    }
    char **expected = calloc((size_t)n, sizeof *expected);
    job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    if (!expected || !jobs || !tid) {
        fprintf(stderr, "scan_threads: out of memory\n");
        goto out;
    }
    if (clipmod_init(argv[0]) || clipmod_model_load(argv[1], NULL, &model, err) ||
        clipmod_engine_new(model, &engine) || clipmod_engine_set_cache_dir(engine, NULL) ||
        clipmod_engine_compile(engine, argv[2], NULL)) {
        fprintf(stderr, "scan_threads: set-up failed: %s\n", model ? "engine" : err);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        clipmod_result *r = NULL;
        expected[i] = clipmod_scan_file(engine, argv[5 + i], &r) ? NULL : stable_json(r);
        if (!expected[i]) {
            fprintf(stderr, "scan_threads: %s: scan failed\n", argv[5 + i]);
            clipmod_result_free(r);
            goto out;
        }
        clipmod_result_free(r);
    }
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){engine, argv + 5, n, rounds, t % 2, expected, 0, 0};
        pthread_create(&tid[t], NULL, run, &jobs[t]);
    }
    int mismatches = 0, errors = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        mismatches += jobs[t].mismatches;
        errors += jobs[t].errors;
    }
    printf("%d threads x %d rounds x %d images: %d mismatches, %d errors\n", threads, rounds, n,
           mismatches, errors);
    rc = mismatches || errors ? 1 : 0;
out:
    for (int i = 0; expected && i < n; i++)
        clipmod_free(expected[i]);
    free(expected);
    free(jobs);
    free(tid);
    clipmod_engine_free(engine);
    clipmod_model_free(model);
    clipmod_shutdown();
    return rc;
}
