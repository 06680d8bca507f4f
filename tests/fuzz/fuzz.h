/*
 * fuzz.h - small helpers shared by the fuzz targets (tests/fuzz/README.md).
 *
 * Header-only so a target needs nothing but its own .c in its SOURCES:
 *   fuzz_srcdir()   the source tree (for committed data such as models/demo/merges.txt):
 *                   $CLIPMOD_FUZZ_SRCDIR if set, else the build's abs_top_srcdir.
 *   fuzz_tmpdir()   a private temporary directory, made on first use under $TMPDIR
 *                   (or /tmp) and removed with its contents at exit. Targets must write
 *                   nowhere else.
 *   fuzz_path()     the path of a file in fuzz_tmpdir().
 *   fuzz_cstr()     the input as a NUL-terminated copy (free() it).
 */
#ifndef CM_FUZZ_H
#define CM_FUZZ_H

#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CM_FUZZ_SRCDIR
#define CM_FUZZ_SRCDIR "."
#endif

static inline const char *fuzz_srcdir(void)
{
    const char *env = getenv("CLIPMOD_FUZZ_SRCDIR");
    return env && *env ? env : CM_FUZZ_SRCDIR;
}

static char fuzz_tmpdir_path_[4096];

static inline int fuzz_rm_entry_(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void fuzz_tmpdir_cleanup_(void)
{
    if (fuzz_tmpdir_path_[0])
        nftw(fuzz_tmpdir_path_, fuzz_rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

/* The target's private directory; aborts if it cannot be made (a broken setup). */
static inline const char *fuzz_tmpdir(void)
{
    if (!fuzz_tmpdir_path_[0]) {
        const char *base = getenv("TMPDIR");
        int n = snprintf(fuzz_tmpdir_path_, sizeof fuzz_tmpdir_path_, "%s/clipmod-fuzz-XXXXXX",
                         base && *base ? base : "/tmp");
        if (n < 0 || (size_t)n >= sizeof fuzz_tmpdir_path_ || !mkdtemp(fuzz_tmpdir_path_)) {
            perror("fuzz_tmpdir");
            abort();
        }
        atexit(fuzz_tmpdir_cleanup_);
    }
    return fuzz_tmpdir_path_;
}

/* fuzz_tmpdir()/name into buf[size]; aborts if it does not fit. */
static inline void fuzz_path(char *buf, size_t size, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", fuzz_tmpdir(), name);
    if (n < 0 || (size_t)n >= size)
        abort();
}

/* `data` as a NUL-terminated string (embedded NULs kept; the caller frees). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
