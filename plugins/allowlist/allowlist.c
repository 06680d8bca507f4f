/*
 * allowlist.c - an operator plugin that allows flagged inputs whose names match globs.
 *
 * Owns the list of patterns from its configuration, e.g.
 * "match=*.ico; match=/srv/uploads/avatars/[0-9]*". A pattern with a '/' is matched
 * against the whole name (and its '*' crosses directories); one without is matched
 * against the last component only, as `find -name` does. A flagged result whose
 * name matches is overridden to ALLOW, which makes it clean, and the override's
 * note says which pattern allowed it. Clean results are left alone, and so are unscanned
 * ones: allowing a name does not vouch for a file nobody could decode.
 *
 * The patterns are read-only after init, so on_result needs no lock.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strndup */
#endif
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clipmod/plugin.h>

#define NAME "allowlist"

typedef struct allowlist {
    char **globs;
    size_t n;
} allowlist;

static void allowlist_fini(void *state)
{
    allowlist *a = state;
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->globs[i]);
    free(a->globs);
    free(a);
}

/* Drop spaces and tabs at both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* Add one pattern; 0 on success. */
static int add_glob(allowlist *a, const char *glob, size_t len)
{
    char **globs = realloc(a->globs, (a->n + 1) * sizeof *globs);
    if (!globs)
        return -1;
    a->globs = globs;
    a->globs[a->n] = strndup(glob, len);
    if (!a->globs[a->n])
        return -1;
    a->n++;
    return 0;
}

/* Parse "match=GLOB;match=GLOB...": at least one pattern, no other key. */
static int allowlist_init(const char *config, void **state, char *errbuf, size_t errlen)
{
    int rc = -1;
    allowlist *a = calloc(1, sizeof *a);
    const char *item = config;

    if (!a) {
        snprintf(errbuf, errlen, "out of memory");
        goto out;
    }
    while (*item) {
        size_t len = strcspn(item, ";");
        const char *next = item[len] ? item + len + 1 : item + len;
        const char *eq = memchr(item, '=', len);
        const char *key = item, *val;
        size_t klen, vlen;
        trim(&key, &len);
        if (!len) {
            item = next;
            continue;
        }
        if (!eq) {
            snprintf(errbuf, errlen, "\"%.*s\" is not key=value", (int)len, key);
            goto out;
        }
        klen = (size_t)(eq - key);
        val = eq + 1;
        vlen = len - klen - 1;
        trim(&key, &klen);
        trim(&val, &vlen);
        if (klen != 5 || strncmp(key, "match", 5) != 0) {
            snprintf(errbuf, errlen, "unknown key \"%.*s\" (known: match)", (int)klen, key);
            goto out;
        }
        if (!vlen) {
            snprintf(errbuf, errlen, "empty match pattern");
            goto out;
        }
        if (add_glob(a, val, vlen)) {
            snprintf(errbuf, errlen, "out of memory");
            goto out;
        }
        item = next;
    }
    if (!a->n) {
        snprintf(errbuf, errlen, "no patterns: configure them as match=GLOB;match=GLOB");
        goto out;
    }
    *state = a;
    a = NULL;
    rc = 0;
out:
    allowlist_fini(a);
    return rc;
}

static void allowlist_on_result(void *state, const clipmod_engine *engine,
                                const clipmod_input *input, clipmod_result *result)
{
    const allowlist *a = state;
    const char *name = clipmod_result_name(result), *base;
    char why[512];

    if (!name || clipmod_result_state(result) != CLIPMOD_STATE_FLAGGED)
        return;
    base = strrchr(name, '/');
    base = base ? base + 1 : name;
    for (size_t i = 0; i < a->n; i++) {
        const char *glob = a->globs[i];
        if (fnmatch(glob, strchr(glob, '/') ? name : base, 0) == 0) {
            /* The library's note already says "action X -> allow". */
            snprintf(why, sizeof why, "name matches allowlist pattern \"%s\"", glob);
            clipmod_result_override(result, CLIPMOD_ACTION_ALLOW, NAME, why);
            return;
        }
    }
}

static const clipmod_plugin plugin = {
    CLIPMOD_PLUGIN_HEADER, /* abi and size */
    .name = NAME,
    .version = "1.0",
    .description = "allows flagged inputs whose names match configured globs",
    .init = allowlist_init,
    .on_result = allowlist_on_result,
    .fini = allowlist_fini,
};

CLIPMOD_PLUGIN_EXPORT const clipmod_plugin *clipmod_plugin_v1(void)
{
    return &plugin;
}
