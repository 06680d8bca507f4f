/*
 * fingerprint.c - the compiled policy's fingerprint (clipmod_engine_policy_fingerprint).
 *
 * Owns one thing: a hex SHA-256 that names exactly which policy text an engine
 * compiled, for verdicts and log lines. It is taken over the source bytes of every
 * file the policy loader read (the policy first, then its includes in reading
 * order), each framed by its path's base name and its length so that moving bytes
 * between files changes the digest. What-if overrides and engine settings are not
 * part of it (they are not policy text).
 *
 * The loader feeds each file's bytes here as it reads them (policy.c), so the
 * fingerprint names the very bytes that were parsed: reading the files again after
 * parsing could hash text that was never compiled (a file edited in between), and
 * would add a failure (a 1 MiB buffer, an open) to a compile that has succeeded.
 */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "engine.h"

/* A GChecksum under another name, so that policy.c needs no GLib header. */
struct cm_fp {
    GChecksum *sum;
};

cm_fp *cm_fp_new(void)
{
    cm_fp *fp = cm_alloc(sizeof *fp);
    if (fp)
        fp->sum = g_checksum_new(G_CHECKSUM_SHA256); /* GLib aborts rather than fail */
    return fp;
}

void cm_fp_add(cm_fp *fp, const char *path, const void *buf, size_t len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const uint64_t namelen = strlen(base), n = len;
    g_checksum_update(fp->sum, (const guchar *)&namelen, sizeof namelen);
    g_checksum_update(fp->sum, (const guchar *)base, (gssize)namelen);
    g_checksum_update(fp->sum, (const guchar *)&n, sizeof n);
    g_checksum_update(fp->sum, (const guchar *)buf, (gssize)len);
}

void cm_fp_hex(const cm_fp *fp, char out[CM_FINGERPRINT_SIZE])
{
    snprintf(out, CM_FINGERPRINT_SIZE, "%s", g_checksum_get_string(fp->sum));
}

void cm_fp_free(cm_fp *fp)
{
    if (!fp)
        return;
    g_checksum_free(fp->sum);
    cm_free(fp);
}

int cm_policy_fingerprint(const cm_policy *p, char out[CM_FINGERPRINT_SIZE])
{
    out[0] = '\0';
    if (!p || !p->fingerprint[0])
        return -1;
    memcpy(out, p->fingerprint, CM_FINGERPRINT_SIZE);
    return 0;
}

const char *clipmod_engine_policy_fingerprint(const clipmod_engine *e)
{
    return e && e->compiled ? e->policy_fingerprint : "";
}
