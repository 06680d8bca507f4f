/*
 * roots.c - opening files only inside the directories an operator configured.
 *
 * tusd's hook requests and clamd's SCAN command name files by path, and those
 * paths come from the network. A path is accepted only when its real path (every
 * symbolic link and ".." resolved) lies inside one of the configured roots, so a
 * link planted inside a root that points at /etc/shadow is refused. Between that
 * check and open() a path component could be swapped for a link, so the final
 * component is opened with O_NOFOLLOW and the file actually opened is checked
 * again through /proc/self/fd before a byte of it is read.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

int roots_contains(const char *root, const char *real)
{
    size_t n = strlen(root);

    if (!root[0] || !real)
        return 0;
    /* "/" contains everything; else "/srv/up" contains "/srv/up/x", not "/srv/upx". */
    if (n == 1 && root[0] == '/')
        return real[0] == '/';
    return !strncmp(root, real, n) && (real[n] == '/' || real[n] == '\0');
}

static int inside_any(const strlist *roots, const char *real)
{
    for (size_t i = 0; roots && i < roots->n; i++) {
        char *root = realpath(roots->v[i], NULL);
        int in = root && roots_contains(root, real);
        free(root);
        if (in)
            return 1;
    }
    return 0;
}

char *roots_resolve(const strlist *roots, const char *path, char *why, size_t whylen)
{
    char *real = NULL;

    if (!roots || !roots->n) {
        snprintf(why, whylen, "no roots are configured for paths");
        return NULL;
    }
    if (!path || path[0] != '/') {
        snprintf(why, whylen, "the path must be absolute");
        return NULL;
    }
    real = realpath(path, NULL);
    if (!real) {
        snprintf(why, whylen, "%s", strerror(errno));
        return NULL;
    }
    if (!inside_any(roots, real)) {
        snprintf(why, whylen, "outside the configured roots");
        free(real);
        return NULL;
    }
    return real;
}

int roots_open(const strlist *roots, const char *path, char **real_out, char *why, size_t whylen)
{
    char *real = NULL, proc[64], *again = NULL;
    struct stat st;
    int fd = -1, result = -1;

    if (real_out)
        *real_out = NULL;
    real = roots_resolve(roots, path, why, whylen);
    if (!real)
        goto out;
    fd = open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        goto out;
    }
    /* What was opened, not what the name means now (a directory on the way may have
     * been swapped for a link since roots_resolve). Unverifiable is refused: without
     * /proc the check would otherwise pass silently. */
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    again = realpath(proc, NULL);
    if (!again) {
        snprintf(why, whylen, "cannot check where the opened file is (%s: %s)", proc,
                 strerror(errno));
        goto out;
    }
    if (!inside_any(roots, again)) {
        snprintf(why, whylen, "outside the configured roots");
        goto out;
    }
    /* Reading must not block on a FIFO that appeared; regular files never do. */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    result = fd;
    fd = -1;
    if (real_out) {
        *real_out = real;
        real = NULL;
    }
out:
    if (fd >= 0)
        close(fd);
    free(real);
    free(again);
    return result;
}
