/*
 * bench_vision.c - time libclipmod's image tower (clipmod_embed_images).
 *
 * Uses the public API only. Loads a model directory, preprocesses the given images
 * once (clipmod_image_load_file), then for every batch size runs a warm-up and
 * `runs` timed calls of clipmod_embed_images on batches cycled from those images,
 * and prints one JSON line per batch size:
 *
 *   {"engine":"clipmod","batch":8,"threads":2,"runs":7,"warmup":2,
 *    "median_ms":..., "ms_per_image":..., "gflops":..., "times_ms":[...], ...}
 *
 * "median_ms" is the median wall time of one call (one batch); ms_per_image is that
 * divided by the batch size; gflops = gflop_per_image * batch / median seconds
 * (8.82 GFLOP per image for ViT-B/32, clip-spec §6.1). Preprocessing is not timed.
 *
 * Optional dumps let bench/torch_vision.py and bench/ort_vision.js run on exactly
 * the same pixels and check they compute the same embeddings:
 *   --dump-pixels FILE      the N preprocessed images, float32 LE [N,3,S,S]
 *   --dump-embeddings FILE  our embeddings of the N images (one batched call),
 *                           float32 LE [N,E], L2-normalised
 *
 * Usage: bench_vision MODEL_DIR [options] IMAGE...
 * Run by hand (bench/image_tower.sh, `make bench`); never part of the test suite.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, strtok_r */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipmod/clipmod.h"

#define MAX_BATCHES 16

static void usage(FILE *f)
{
    fputs("usage: bench_vision MODEL_DIR [options] IMAGE...\n"
          "  --batches LIST          comma-separated batch sizes (default 1,8)\n"
          "  --runs N                timed runs per batch size, median reported (default 7)\n"
          "  --warmup N              untimed runs first, per batch size (default 2)\n"
          "  --threads N             clipmod_set_threads (default 2)\n"
          "  --cache-dir DIR         load through the weights cache in DIR (default: none)\n"
          "  --precision P           fp32, int8 or bf16 (default fp32); exits 2 if the CPU\n"
          "                          cannot run P\n"
          "  --gflop X               GFLOP per image for the GFLOP/s column (default 8.82)\n"
          "  --dump-pixels FILE      write the preprocessed images, f32 [N,3,S,S]\n"
          "  --dump-embeddings FILE  write our embeddings of the N images, f32 [N,E]\n"
          "Prints one JSON line per batch size on stdout.\n",
          f);
}

/* A "Vm...:" line of /proc/self/status in kB, -1 where there is none. */
static long status_kb(const char *key)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && kb < 0 && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)))
            kb = strtol(line + strlen(key), NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double *s = malloc((size_t)n * sizeof *s);
    if (!s)
        return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    const double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

static int parse_int(const char *s, int lo, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > 1 << 20)
        return -1;
    *out = (int)v;
    return 0;
}

static int write_file(const char *path, const void *data, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "bench_vision: %s: %s\n", path, strerror(errno));
        return -1;
    }
    const int ok = fwrite(data, 1, bytes, f) == bytes;
    if (fclose(f) || !ok) {
        fprintf(stderr, "bench_vision: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

/* Print a JSON string (the model description and paths are plain ASCII, but escape anyway). */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    int batches[MAX_BATCHES] = {1, 8}, nb = 2, runs = 7, warmup = 2, threads = 2;
    clipmod_precision precision = CLIPMOD_PRECISION_FP32;
    double gflop = 8.82;
    const char *dir = NULL, *dump_px = NULL, *dump_emb = NULL, *cache_dir = NULL;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    int npaths = 0;
    char err[CLIPMOD_ERROR_SIZE] = "";

    if (!paths)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--batches") && v) {
            char *copy = strdup(v), *save = NULL;
            nb = 0;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (nb == MAX_BATCHES || parse_int(t, 1, &batches[nb++])) {
                    fprintf(stderr, "bench_vision: bad --batches '%s'\n", v);
                    return 2;
                }
            free(copy);
            if (!nb) {
                fprintf(stderr, "bench_vision: empty --batches\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--runs") && v) {
            if (parse_int(v, 1, &runs))
                goto bad;
            i++;
        } else if (!strcmp(a, "--warmup") && v) {
            if (parse_int(v, 0, &warmup))
                goto bad;
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            if (parse_int(v, 1, &threads))
                goto bad;
            i++;
        } else if (!strcmp(a, "--cache-dir") && v) {
            cache_dir = v;
            i++;
        } else if (!strcmp(a, "--precision") && v) {
            if (clipmod_precision_parse(v, &precision))
                goto bad;
            i++;
        } else if (!strcmp(a, "--gflop") && v) {
            gflop = strtod(v, NULL);
            if (!(gflop > 0))
                goto bad;
            i++;
        } else if (!strcmp(a, "--dump-pixels") && v) {
            dump_px = v;
            i++;
        } else if (!strcmp(a, "--dump-embeddings") && v) {
            dump_emb = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
        bad:
            fprintf(stderr, "bench_vision: bad option or value: %s\n", a);
            usage(stderr);
            return 2;
        } else if (!dir) {
            dir = a;
        } else {
            paths[npaths++] = a;
        }
    }
    if (!dir || !npaths) {
        usage(stderr);
        return 2;
    }

    clipmod_error rc = clipmod_init(argv[0]);
    if (rc) {
        fprintf(stderr, "bench_vision: clipmod_init: %s\n", clipmod_strerror(rc));
        return 1;
    }
    clipmod_set_threads(threads);
    if (clipmod_precision_check(precision, err)) {
        /* The bench script shows this row as skipped, with our reason. */
        fprintf(stderr, "bench_vision: %s\n",
                err); /* "precision X not supported on this CPU: ..." */
        return 2;
    }

    double t0 = now_ms();
    clipmod_model *model = NULL;
    rc = clipmod_model_load_cached(dir, NULL, precision, cache_dir, &model, err);
    if (rc) {
        fprintf(stderr, "bench_vision: %s: %s (%s)\n", dir, clipmod_strerror(rc), err);
        return 1;
    }
    const double load_ms = now_ms() - t0;
    const size_t edim = clipmod_model_embed_dim(model);

    clipmod_image **imgs = calloc((size_t)npaths, sizeof *imgs);
    double prep_ms = 0;
    for (int i = 0; i < npaths; i++) {
        t0 = now_ms();
        rc = clipmod_image_load_file(model, paths[i], NULL, &imgs[i], err);
        if (rc) {
            fprintf(stderr, "bench_vision: %s: %s (%s)\n", paths[i], clipmod_strerror(rc), err);
            return 1;
        }
        prep_ms += now_ms() - t0;
    }

    if (dump_px) {
        int size = 0;
        clipmod_image_pixels(imgs[0], &size);
        const size_t per = (size_t)3 * size * size;
        float *px = malloc((size_t)npaths * per * sizeof *px);
        if (!px)
            return 1;
        for (int i = 0; i < npaths; i++)
            memcpy(px + i * per, clipmod_image_pixels(imgs[i], NULL), per * sizeof *px);
        if (write_file(dump_px, px, (size_t)npaths * per * sizeof *px))
            return 1;
        free(px);
    }
    if (dump_emb) {
        float *e = malloc((size_t)npaths * edim * sizeof *e);
        if (!e)
            return 1;
        rc =
            clipmod_embed_images(model, (const clipmod_image *const *)imgs, (size_t)npaths, e, err);
        if (rc) {
            fprintf(stderr, "bench_vision: embed: %s (%s)\n", clipmod_strerror(rc), err);
            return 1;
        }
        if (write_file(dump_emb, e, (size_t)npaths * edim * sizeof *e))
            return 1;
        free(e);
    }

    for (int bi = 0; bi < nb; bi++) {
        const int b = batches[bi];
        const clipmod_image **batch = malloc((size_t)b * sizeof *batch);
        float *out = malloc((size_t)b * edim * sizeof *out);
        double *times = malloc((size_t)runs * sizeof *times);
        if (!batch || !out || !times)
            return 1;
        for (int i = 0; i < b; i++)
            batch[i] = imgs[i % npaths];
        for (int r = 0; r < warmup + runs; r++) {
            t0 = now_ms();
            rc = clipmod_embed_images(model, (const clipmod_image *const *)batch, (size_t)b, out,
                                      err);
            const double dt = now_ms() - t0;
            if (rc) {
                fprintf(stderr, "bench_vision: embed: %s (%s)\n", clipmod_strerror(rc), err);
                return 1;
            }
            if (r >= warmup)
                times[r - warmup] = dt;
        }
        const double med = median(times, runs);
        double mn = times[0], mx = times[0];
        for (int r = 1; r < runs; r++) {
            mn = times[r] < mn ? times[r] : mn;
            mx = times[r] > mx ? times[r] : mx;
        }
        printf("{\"engine\":\"clipmod\",\"config\":\"threads=%d\",\"batch\":%d,\"threads\":%d,"
               "\"runs\":%d,\"warmup\":%d,\"median_ms\":%.3f,\"ms_per_image\":%.3f,"
               "\"gflops\":%.2f,\"min_ms\":%.3f,\"max_ms\":%.3f,\"times_ms\":[",
               threads, b, threads, runs, warmup, med, med / b, gflop * b / (med / 1e3), mn, mx);
        for (int r = 0; r < runs; r++)
            printf("%s%.3f", r ? "," : "", times[r]);
        printf("],\"images\":%d,\"load_ms\":%.1f,\"preprocess_ms_per_image\":%.2f,"
               "\"precision\":\"%s\",\"vmrss_kb\":%ld,\"vmhwm_kb\":%ld,\"model\":",
               npaths, load_ms, prep_ms / npaths, clipmod_precision_name(precision),
               status_kb("VmRSS:"), status_kb("VmHWM:"));
        json_string(clipmod_model_describe(model));
        printf(",\"version\":");
        json_string(clipmod_version());
        printf("}\n");
        fflush(stdout);
        free(batch);
        free(out);
        free(times);
    }

    for (int i = 0; i < npaths; i++)
        clipmod_image_free(imgs[i]);
    free(imgs);
    free(paths);
    clipmod_model_free(model);
    clipmod_shutdown();
    return 0;
}
