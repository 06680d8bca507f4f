/*
 * fingerprint.c - the compiled policy's fingerprint (clipmod_engine_policy_fingerprint).
 *
 * Owns one thing: a hex SHA-256 that names exactly which policy text an engine
 * compiled, for verdicts and log lines. It is taken over the source bytes of every
 * file the policy loader read (the policy first, then its includes in reading
 * order), each framed by its path's base name and its length so that moving bytes
 * between files changes the digest. It is computed once, when the engine compiles,
 * so a file edited later does not change a running engine's fingerprint. What-if
 * overrides and engine settings are not part of it (they are not policy text).
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "engine.h"

#define FP_MAX_FILE (1u << 20) /* the policy loader refuses bigger files */

/* Hash one file (framed by name and length) into sum; 0 on success. */
static int hash_file(GChecksum *sum, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char *buf = cm_alloc(FP_MAX_FILE + 1);
    int rc = -1;
    if (!buf)
        goto out;
    size_t n = fread(buf, 1, FP_MAX_FILE + 1, f);
    if (ferror(f) || n > FP_MAX_FILE)
        goto out;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    uint64_t len = n, namelen = strlen(base);
    g_checksum_update(sum, (const guchar *)&namelen, sizeof namelen);
    g_checksum_update(sum, (const guchar *)base, namelen);
    g_checksum_update(sum, (const guchar *)&len, sizeof len);
    g_checksum_update(sum, (const guchar *)buf, n);
    rc = 0;
out:
    cm_free(buf);
    fclose(f);
    return rc;
}

int cm_policy_fingerprint(const cm_policy *p, char out[CM_FINGERPRINT_SIZE])
{
    out[0] = '\0';
    if (!p || !p->n_files)
        return -1;
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    int rc = 0;
    for (size_t i = 0; i < p->n_files && !rc; i++)
        rc = hash_file(sum, p->files[i]);
    if (!rc)
        snprintf(out, CM_FINGERPRINT_SIZE, "%s", g_checksum_get_string(sum));
    g_checksum_free(sum);
    return rc;
}

const char *clipmod_engine_policy_fingerprint(const clipmod_engine *e)
{
    return e && e->compiled ? e->policy_fingerprint : "";
}
