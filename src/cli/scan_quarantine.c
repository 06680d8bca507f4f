/*
 * scan_quarantine.c - clamscan's --move and --copy for flagged files.
 *
 * Owns putting a flagged file into a quarantine directory without ever
 * overwriting: the target is created with O_EXCL (or linked, which fails on an
 * existing name), and a taken name gets .001, .002 ... appended as clamscan does.
 * A move is a hard link plus unlink on the same filesystem; across filesystems
 * (EXDEV) it is a copy, checked (every byte written, fsync, close) before the
 * original is unlinked, so a failure leaves the original in place.
 */
#include "scan_quarantine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_SUFFIX 999

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int target_name(char *out, size_t size, const char *dir, const char *base, int k)
{
    int n = k ? snprintf(out, size, "%s/%s.%03d", dir, base, k)
              : snprintf(out, size, "%s/%s", dir, base);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Copy src into a new file at dst (O_EXCL); on failure dst is removed. */
static int copy_file(const char *src, const char *dst)
{
    char buf[65536];
    int in = open(src, O_RDONLY), out = -1, rc = -1;
    ssize_t got;

    if (in < 0)
        return -1;
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (out < 0)
        goto out;
    for (;;) {
        got = read(in, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        for (ssize_t off = 0; off < got;) {
            ssize_t w = write(out, buf + off, (size_t)(got - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
    if (got < 0 || fsync(out) != 0)
        goto out;
    rc = 0;
out:
    if (out >= 0 && close(out) != 0)
        rc = -1;
    if (rc != 0 && out >= 0) {
        int saved = errno;
        unlink(dst);
        errno = saved;
    }
    close(in);
    return rc;
}

/* One attempt at name `dst`: 0 done, 1 the name is taken, -1 an error. */
static int place(const char *path, const char *dst, int move)
{
    if (move && link(path, dst) == 0)
        return unlink(path) == 0 ? 0 : -1;
    if (move && errno == EEXIST)
        return 1;
    if (move && errno != EXDEV && errno != EPERM && errno != ENOTSUP)
        return -1;
    if (copy_file(path, dst) != 0)
        return errno == EEXIST ? 1 : -1;
    if (move && unlink(path) != 0)
        return -1;
    return 0;
}

int scan_quarantine(const char *path, const char *dir, int move, int quiet)
{
    char dst[4096];
    const char *base = base_name(path);

    for (int k = 0; k <= MAX_SUFFIX; k++) {
        if (target_name(dst, sizeof dst, dir, base, k) != 0)
            break;
        int r = place(path, dst, move);
        if (r == 0) {
            if (!quiet)
                printf("%s: %s to '%s'\n", path, move ? "moved" : "copied", dst);
            return 0;
        }
        if (r < 0) {
            fprintf(stderr, "clipmod: %s: cannot %s to %s: %s\n", path, move ? "move" : "copy", dir,
                    strerror(errno));
            return -1;
        }
    }
    fprintf(stderr, "clipmod: %s: no free name in %s\n", path, dir);
    return -1;
}
