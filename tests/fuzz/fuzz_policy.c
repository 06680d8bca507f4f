/*
 * fuzz_policy.c - policy YAML through the policy loader (src/lib/policy.c).
 *
 * cm_policy_load() reads files and follows `include:` (relative to the including
 * file, or absolute), so a fuzzed policy could make it read any file on the host.
 * The target therefore sandboxes it: the library's open() is linked to
 * __wrap_open() below (-Wl,--wrap=open in Makefile.am), which, while a policy is
 * being loaded, refuses (EACCES) every path that does not resolve into this
 * process's private temporary directory - absolute includes, "../" and symlinks
 * alike. Includes into the sandbox are fuzzed too: the input is the main policy,
 * optionally followed by more files, each introduced by a line "#%file NAME"
 * (NAME of [A-Za-z0-9._-], at most 32 bytes; other such sections are dropped),
 * written next to it as NAME, so `include: a.yaml` finds the next section.
 *
 * Beyond memory safety it checks the loader's contract: success comes with a policy
 * and no problems, a policy problem with a non-empty problem list and no policy.
 * A loaded policy goes through cm_policy_summary() and cm_policy_check_tokens()
 * (with a stand-in token counter: about one token per 4 bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "policy.h"

#define MAX_FILES 8
#define MAX_NAME  32
#define MARKER    "#%file "
#define MAIN_NAME "main.yaml"

static char sandbox[PATH_MAX]; /* the real path of fuzz_tmpdir() */
static int sandbox_on;         /* the library is loading a policy */

int __real_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...);

static int under_sandbox(const char *real)
{
    size_t n = strlen(sandbox);
    return !strncmp(real, sandbox, n) && (real[n] == '\0' || real[n] == '/');
}

/*
 * 1 if `path` resolves to the sandbox directory or something inside it. A missing
 * file counts when its directory is inside, so that open() can say ENOENT.
 */
static int in_sandbox(const char *path)
{
    char real[PATH_MAX], dir[PATH_MAX];

    if (realpath(path, real))
        return under_sandbox(real);
    if (errno != ENOENT)
        return 0;
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (!slash || n >= sizeof dir)
        return 0;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return realpath(n ? dir : "/", real) && under_sandbox(real);
}

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (sandbox_on && !in_sandbox(path)) {
        /* realpath() may have failed with ENOENT: refuse outside paths with EACCES. */
        errno = EACCES;
        return -1;
    }
    return __real_open(path, flags, mode);
}

static void write_file(const char *name, const uint8_t *data, size_t size);
static void sandbox_path(char *path, const char *name);

/*
 * Prove the sandbox is in place before fuzzing: the library's open() must be the
 * wrapper (a build where --wrap did not apply, e.g. one calling open64, would let
 * includes read the host's files). /dev/null is harmless to open either way.
 */
static void self_test(void)
{
    static const char policy[] = "version: 1\ninclude: /dev/null\n";
    char path[PATH_MAX];
    cm_policy *p = NULL;
    char *problems = NULL;

    write_file(MAIN_NAME, (const uint8_t *)policy, sizeof policy - 1);
    sandbox_path(path, MAIN_NAME);
    sandbox_on = 1;
    cm_policy_load(path, &p, &problems);
    sandbox_on = 0;
    if (!problems || !strstr(problems, "Permission denied")) {
        fprintf(stderr, "fuzz_policy: open() is not sandboxed: %s\n", problems ? problems : "");
        abort();
    }
    cm_policy_free(p);
    free(problems);
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (!realpath(fuzz_tmpdir(), sandbox))
        abort();
    self_test();
    return 0;
}

static int valid_name(const char *s, size_t n)
{
    if (n == 0 || n > MAX_NAME || (n <= 2 && !strncmp(s, "..", n)))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]) ||
            s[i] == '\0')
            return 0;
    return 1;
}

/* The path of `name` in the sandbox, into path[PATH_MAX]. */
static void sandbox_path(char *path, const char *name)
{
    int n = snprintf(path, PATH_MAX, "%s/%s", sandbox, name);
    if (n < 0 || n >= PATH_MAX)
        abort();
}

static void write_file(const char *name, const uint8_t *data, size_t size)
{
    char path[PATH_MAX];
    sandbox_path(path, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    if (fclose(f))
        abort();
}

/* Where the line after `p` starts, or NULL if `p` is on the last line. */
static const uint8_t *next_line(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl + 1 : NULL;
}

/* The next "#%file NAME" line at or after `p` (at a line start), or NULL. */
static const uint8_t *find_marker(const uint8_t *p, const uint8_t *end)
{
    size_t m = strlen(MARKER);
    while (p && p < end) {
        if ((size_t)(end - p) >= m && !memcmp(p, MARKER, m))
            return p;
        p = next_line(p, end);
    }
    return NULL;
}

/* Split the input into files in the sandbox; returns how many were written. */
static int write_files(const uint8_t *data, size_t size, char names[][MAX_NAME + 1])
{
    const uint8_t *end = data + size, *m = find_marker(data, end);
    int n = 0;

    write_file(MAIN_NAME, data, m ? (size_t)(m - data) : size);
    snprintf(names[n++], MAX_NAME + 1, "%s", MAIN_NAME);
    while (m && n < MAX_FILES) {
        const uint8_t *name = m + strlen(MARKER), *body = next_line(m, end);
        const uint8_t *name_end = body ? body - 1 : end;
        const uint8_t *next = body ? find_marker(body, end) : NULL;
        size_t nlen = (size_t)(name_end - name);
        int is_main = nlen == strlen(MAIN_NAME) && !memcmp(name, MAIN_NAME, nlen);
        if (valid_name((const char *)name, nlen) && !is_main) {
            memcpy(names[n], name, nlen);
            names[n][nlen] = '\0';
            write_file(names[n++], body ? body : end,
                       body ? (size_t)((next ? next : end) - body) : 0);
        }
        m = next;
    }
    return n;
}

static size_t count_tokens(void *ctx, const char *text, int *truncated)
{
    size_t n = strlen(text) / 4 + 2;
    if (n > CLIPMOD_CONTEXT_LENGTH) {
        *truncated = 1;
        n = CLIPMOD_CONTEXT_LENGTH;
    }
    return n;
}

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char names[MAX_FILES][MAX_NAME + 1];
    char path[PATH_MAX];
    cm_policy *p = NULL;
    char *problems = NULL;

    int n = write_files(data, size, names);
    sandbox_path(path, MAIN_NAME);
    sandbox_on = 1;
    clipmod_error rc = cm_policy_load(path, &p, &problems);
    sandbox_on = 0;

    if (getenv("FUZZ_VERBOSE")) /* FUZZ_VERBOSE=1: what the loader said (for writing seeds) */
        fprintf(stderr, "rc %d\n%s", (int)rc, problems ? problems : "");
    if (rc == CLIPMOD_OK) {
        check(p != NULL && problems == NULL);
        char *summary = cm_policy_summary(p);
        check(summary != NULL);
        free(summary);
        char *tok_problems = NULL;
        clipmod_error trc = cm_policy_check_tokens(p, count_tokens, NULL, &tok_problems);
        check(trc == CLIPMOD_OK || (trc == CLIPMOD_E_POLICY && tok_problems && *tok_problems));
        free(tok_problems);
    } else {
        check(p == NULL);
        if (rc == CLIPMOD_E_POLICY)
            check(problems != NULL && *problems != '\0');
    }
    cm_policy_free(p);
    free(problems);
    for (int i = 0; i < n; i++) {
        sandbox_path(path, names[i]);
        unlink(path);
    }
    return 0;
}
