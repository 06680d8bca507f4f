/*
 * replay.c - the fuzz targets' main() in ordinary (gcc, non-fuzzing) builds.
 *
 * Under --enable-fuzzing the targets link libFuzzer, which supplies main(). In every
 * other build they link this file instead, so `make check` (tests/fuzz_replay.sh)
 * can run the committed corpora - seeds and crash reproducers - through the same
 * LLVMFuzzerTestOneInput, under valgrind when asked. It calls LLVMFuzzerInitialize
 * first when the target defines one (a weak symbol here), then the target once per
 * file, in sorted order, for every file and directory (recursively) named on the
 * command line. Arguments starting with '-' are libFuzzer flags and are ignored, so
 * one command line works for both kinds of build. If an input crashes the target,
 * its path is printed before the signal kills the process.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* The input being run, for the crash handler (async-signal-safe: written with write()). */
static const char *current_path;

static void say_crash(int sig)
{
    static const char msg[] = "replay: crashed on input ";
    if (current_path) {
        ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
        r = write(STDERR_FILENO, current_path, strlen(current_path));
        r = write(STDERR_FILENO, "\n", 1);
        (void)r;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Read `path` into a buffer of exactly its size (so overreads leave the block). */
static int read_file(const char *path, uint8_t **out, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    int rc = -1;

    if (!f)
        goto out;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *nbuf = realloc(buf, ncap);
            if (!nbuf)
                goto out;
            buf = nbuf;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        goto out;
    /* Exact size; an empty input still gets a valid pointer, as under libFuzzer. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact)
        goto out;
    if (len)
        memcpy(exact, buf, len);
    *out = exact;
    *size = len;
    rc = 0;
out:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

static int run_file(const char *path, size_t *count)
{
    uint8_t *data = NULL;
    size_t size = 0;

    if (read_file(path, &data, &size)) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    current_path = path;
    LLVMFuzzerTestOneInput(data, size);
    current_path = NULL;
    free(data);
    (*count)++;
    return 0;
}

static int skip_entry(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int run_path(const char *path, size_t *count);

static int run_dir(const char *path, size_t *count)
{
    struct dirent **names = NULL;
    int n = scandir(path, &names, skip_entry, alphasort);
    int rc = 0;

    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char child[4096];
        int len = snprintf(child, sizeof child, "%s/%s", path, names[i]->d_name);
        if (len < 0 || (size_t)len >= sizeof child) {
            fprintf(stderr, "replay: path too long under %s\n", path);
            rc = -1;
        } else if (rc == 0 && run_path(child, count)) {
            rc = -1;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int run_path(const char *path, size_t *count)
{
    struct stat st;

    if (stat(path, &st)) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode))
        return run_dir(path, count);
    return run_file(path, count);
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    signal(SIGSEGV, say_crash);
    signal(SIGBUS, say_crash);
    signal(SIGFPE, say_crash);
    signal(SIGILL, say_crash);
    signal(SIGABRT, say_crash);
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        if (run_path(argv[i], &count)) {
            rc = 1;
            break;
        }
    }
    fprintf(stderr, "replay: %zu inputs replayed%s\n", count, rc ? " (stopped on an error)" : "");
    return rc;
}
