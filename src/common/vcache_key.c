/*
 * vcache_key.c - the salt of verdict cache keys (vcache_key.h).
 *
 * Owns its text, which clipmodd's dcache.c and clipmod-milter's mcache.c both key
 * with: one "name=value" line per setting given, in the library's order, then one
 * line per plugin, then "context=0|1". Any change of it changes every key, so it
 * must stay byte-identical for a fleet of mixed versions to share its Redis.
 */
#include <string.h>

#include "vcache_key.h"

/* A salt is a few hundred bytes; a plugin's configuration string at most 4 KiB. */
#define SALT_MAX (1 << 20)

void cm_vsalt_init(cm_vsalt *s)
{
    memset(s, 0, sizeof *s);
    cm_dbuf_init(&s->plugins, SALT_MAX);
}

void cm_vsalt_setting(cm_vsalt *s, clipmod_setting k, uint64_t v)
{
    if ((int)k < 0 || k >= CLIPMOD_SETTING__COUNT)
        return;
    s->setting[k] = v;
    s->given[k] = 1;
}

void cm_vsalt_plugin(cm_vsalt *s, const char *path, const char *config)
{
    if (cm_dbuf_addf(&s->plugins, "plugin %s %s\n", path, config ? config : "-"))
        s->failed = 1;
}

char *cm_vsalt_finish(cm_vsalt *s, int context)
{
    cm_dbuf b;
    int rc = s->failed;
    cm_dbuf_init(&b, SALT_MAX);
    for (int k = 0; k < CLIPMOD_SETTING__COUNT && !rc; k++)
        if (s->given[k])
            rc = cm_dbuf_addf(&b, "%s=%llu\n", clipmod_setting_name((clipmod_setting)k),
                              (unsigned long long)s->setting[k]);
    if (!rc && cm_dbuf_len(&s->plugins))
        rc = cm_dbuf_addn(&b, cm_dbuf_ptr(&s->plugins), cm_dbuf_len(&s->plugins));
    if (!rc)
        rc = cm_dbuf_addf(&b, "context=%d\n", context);
    cm_dbuf_free(&s->plugins);
    memset(s, 0, sizeof *s);
    if (rc) {
        cm_dbuf_free(&b);
        return NULL;
    }
    return cm_dbuf_take(&b, NULL);
}
