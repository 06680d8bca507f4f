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

typedef struct {
    int batches[MAX_BATCHES], nb, runs, warmup, threads;
    clipmod_precision precision;
    double gflop;
    const char *dir, *dump_px, *dump_emb, *cache_dir;
    const char **paths; /* argv's images */
    int npaths;
} options;

/* "--batches 1,8,32" into o->batches. 0, or -1 after saying why. */
static int parse_batches(const char *v, options *o)
{
    char *copy = strdup(v), *save = NULL;
    int rc = 0;

    if (!copy)
        return -1;
    o->nb = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save))
        if (o->nb == MAX_BATCHES || parse_int(t, 1, &o->batches[o->nb++]))
            rc = -1;
    free(copy);
    if (rc || !o->nb) {
        fprintf(stderr, "bench_vision: bad --batches '%s'\n", v);
        return -1;
    }
    return 0;
}

/* One option that takes value v into o. 0, 1 when `a` is not an option, -1 when v is bad. */
static int parse_option(const char *a, const char *v, options *o)
{
    if (!strcmp(a, "--batches"))
        return parse_batches(v, o);
    if (!strcmp(a, "--runs"))
        return parse_int(v, 1, &o->runs);
    if (!strcmp(a, "--warmup"))
        return parse_int(v, 0, &o->warmup);
    if (!strcmp(a, "--threads"))
        return parse_int(v, 1, &o->threads);
    if (!strcmp(a, "--precision"))
        return clipmod_precision_parse(v, &o->precision) ? -1 : 0;
    if (!strcmp(a, "--gflop")) {
        o->gflop = strtod(v, NULL);
        return o->gflop > 0 ? 0 : -1;
    }
    const char **dst = !strcmp(a, "--cache-dir")         ? &o->cache_dir
                       : !strcmp(a, "--dump-pixels")     ? &o->dump_px
                       : !strcmp(a, "--dump-embeddings") ? &o->dump_emb
                                                         : NULL;
    if (!dst)
        return 1;
    *dst = v;
    return 0;
}

/* The command line into o (o->paths has argc slots). 0, or an exit status (-1: --help). */
static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return -1;
        }
        if (a[0] == '-' && a[1]) {
            if (!v || parse_option(a, v, o)) {
                fprintf(stderr, "bench_vision: bad option or value: %s\n", a);
                usage(stderr);
                return 2;
            }
            i++;
        } else if (!o->dir) {
            o->dir = a;
        } else {
            o->paths[o->npaths++] = a;
        }
    }
    if (!o->dir || !o->npaths) {
        usage(stderr);
        return 2;
    }
    return 0;
}

/* --dump-pixels and --dump-embeddings: the N images and our embeddings of them. */
static int dump_files(const options *o, clipmod_model *model, clipmod_image **imgs)
{
    char err[CLIPMOD_ERROR_SIZE] = "";
    const size_t n = (size_t)o->npaths, edim = clipmod_model_embed_dim(model);
    int size = 0, rc = 0;

    if (o->dump_px) {
        clipmod_image_pixels(imgs[0], &size);
        const size_t per = (size_t)3 * size * size;
        float *px = malloc(n * per * sizeof *px);
        for (size_t i = 0; px && i < n; i++)
            memcpy(px + i * per, clipmod_image_pixels(imgs[i], NULL), per * sizeof *px);
        rc = !px || write_file(o->dump_px, px, n * per * sizeof *px);
        free(px);
    }
    if (!rc && o->dump_emb) {
        float *e = malloc(n * edim * sizeof *e);
        clipmod_error erc =
            e ? clipmod_embed_images(model, (const clipmod_image *const *)imgs, n, e, err)
              : CLIPMOD_E_NOMEM;
        if (erc)
            fprintf(stderr, "bench_vision: embed: %s (%s)\n", clipmod_strerror(erc), err);
        rc = erc || write_file(o->dump_emb, e, n * edim * sizeof *e);
        free(e);
    }
    return rc ? -1 : 0;
}

/* Print times as the JSON line's fields: median, per image, GFLOP/s, min, max, all. */
static void print_times(const options *o, int b, const double *times)
{
    const double med = median(times, o->runs);
    double mn = times[0], mx = times[0];

    for (int r = 1; r < o->runs; r++) {
        mn = times[r] < mn ? times[r] : mn;
        mx = times[r] > mx ? times[r] : mx;
    }
    printf("\"median_ms\":%.3f,\"ms_per_image\":%.3f,\"gflops\":%.2f,\"min_ms\":%.3f,"
           "\"max_ms\":%.3f,\"times_ms\":[",
           med, med / b, o->gflop * b / (med / 1e3), mn, mx);
    for (int r = 0; r < o->runs; r++)
        printf("%s%.3f", r ? "," : "", times[r]);
    printf("]");
}

/*
 * Batch size b: the warm-up and timed calls on images cycled from imgs, then its JSON
 * line. load_ms and prep_ms describe the model load and preprocessing. 0 or -1.
 */
static int time_batch(const options *o, int b, clipmod_model *model, clipmod_image **imgs,
                      double load_ms, double prep_ms)
{
    char err[CLIPMOD_ERROR_SIZE] = "";
    const size_t edim = clipmod_model_embed_dim(model);
    const clipmod_image **batch = malloc((size_t)b * sizeof *batch);
    float *out = malloc((size_t)b * edim * sizeof *out);
    double *times = malloc((size_t)o->runs * sizeof *times);
    clipmod_error rc = batch && out && times ? CLIPMOD_OK : CLIPMOD_E_NOMEM;

    for (int i = 0; !rc && i < b; i++)
        batch[i] = imgs[i % o->npaths];
    for (int r = 0; !rc && r < o->warmup + o->runs; r++) {
        const double t0 = now_ms();
        rc = clipmod_embed_images(model, (const clipmod_image *const *)batch, (size_t)b, out, err);
        if (r >= o->warmup)
            times[r - o->warmup] = now_ms() - t0;
    }
    if (rc) {
        fprintf(stderr, "bench_vision: embed: %s (%s)\n", clipmod_strerror(rc), err);
    } else {
        printf("{\"engine\":\"clipmod\",\"config\":\"threads=%d\",\"batch\":%d,"
               "\"threads\":%d,\"runs\":%d,\"warmup\":%d,",
               o->threads, b, o->threads, o->runs, o->warmup);
        print_times(o, b, times);
        printf(",\"images\":%d,\"load_ms\":%.1f,\"preprocess_ms_per_image\":%.2f,"
               "\"precision\":\"%s\",\"vmrss_kb\":%ld,\"vmhwm_kb\":%ld,\"model\":",
               o->npaths, load_ms, prep_ms / o->npaths, clipmod_precision_name(o->precision),
               status_kb("VmRSS:"), status_kb("VmHWM:"));
        json_string(clipmod_model_describe(model));
        printf(",\"version\":");
        json_string(clipmod_version());
        printf("}\n");
        fflush(stdout);
    }
    free(batch);
    free(out);
    free(times);
    return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
    options o = {.batches = {1, 8},
                 .nb = 2,
                 .runs = 7,
                 .warmup = 2,
                 .threads = 2,
                 .precision = CLIPMOD_PRECISION_FP32,
                 .gflop = 8.82};
    char err[CLIPMOD_ERROR_SIZE] = "";
    clipmod_model *model = NULL;
    clipmod_image **imgs = NULL;
    double prep_ms = 0;
    int status = 1;

    o.paths = calloc((size_t)argc, sizeof *o.paths);
    if (!o.paths)
        return 1;
    status = parse_args(argc, argv, &o);
    if (status) {
        free(o.paths);
        return status < 0 ? 0 : status;
    }
    status = 1;
    clipmod_error rc = clipmod_init(argv[0]);
    if (rc) {
        fprintf(stderr, "bench_vision: clipmod_init: %s\n", clipmod_strerror(rc));
        return 1;
    }
    clipmod_set_threads(o.threads);
    if (clipmod_precision_check(o.precision, err)) {
        /* "precision X not supported on this CPU: ...": the bench script shows the row
         * as skipped, with this reason. */
        fprintf(stderr, "bench_vision: %s\n", err);
        return 2;
    }
    double t0 = now_ms();
    rc = clipmod_model_load_cached(o.dir, NULL, o.precision, o.cache_dir, &model, err);
    if (rc) {
        fprintf(stderr, "bench_vision: %s: %s (%s)\n", o.dir, clipmod_strerror(rc), err);
        return 1;
    }
    const double load_ms = now_ms() - t0;
    imgs = calloc((size_t)o.npaths, sizeof *imgs);
    for (int i = 0; imgs && i < o.npaths; i++) {
        t0 = now_ms();
        rc = clipmod_image_load_file(model, o.paths[i], NULL, &imgs[i], err);
        if (rc) {
            fprintf(stderr, "bench_vision: %s: %s (%s)\n", o.paths[i], clipmod_strerror(rc), err);
            goto out;
        }
        prep_ms += now_ms() - t0;
    }
    if (!imgs || dump_files(&o, model, imgs))
        goto out;
    for (int bi = 0; bi < o.nb; bi++)
        if (time_batch(&o, o.batches[bi], model, imgs, load_ms, prep_ms))
            goto out;
    status = 0;
out:
    for (int i = 0; imgs && i < o.npaths; i++)
        clipmod_image_free(imgs[i]);
    free(imgs);
    free(o.paths);
    clipmod_model_free(model);
    clipmod_shutdown();
    return status;
}
