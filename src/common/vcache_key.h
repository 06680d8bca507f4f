/*
 * vcache_key.h - the "salt" of verdict cache keys, the same in clipmodd and
 * clipmod-milter (issue 17).
 *
 * Owns the one text that names what shapes a verdict besides the image, the
 * policy, the model and the context (those are framed by cm_vcache_key itself):
 * the engine settings a configuration gave, its operator plugins with their
 * configuration, and whether the program hands images their context. Settings are
 * written in the library's order whatever the order of the file, so two programs
 * built from the same settings salt their keys alike and share a Redis.
 */
#ifndef CM_VCACHE_KEY_H
#define CM_VCACHE_KEY_H

#include <stdint.h>

#include "clipmod/clipmod.h"
#include "dynbuf.h"

typedef struct cm_vsalt {
    uint64_t setting[CLIPMOD_SETTING__COUNT];
    int given[CLIPMOD_SETTING__COUNT];
    cm_dbuf plugins; /* "plugin PATH CONFIG\n" lines, in the configuration's order */
    int failed;      /* an add failed: finish() gives NULL */
} cm_vsalt;

void cm_vsalt_init(cm_vsalt *s);
/* Setting `k` was given the value `v` (a later call for the same k wins). */
void cm_vsalt_setting(cm_vsalt *s, clipmod_setting k, uint64_t v);
/* An operator plugin the engine loads (config NULL: none). */
void cm_vsalt_plugin(cm_vsalt *s, const char *path, const char *config);
/*
 * The salt (malloc'd; the caller frees it), or NULL when out of memory; `context`:
 * 1 when images are given their context. `s` is emptied either way.
 */
char *cm_vsalt_finish(cm_vsalt *s, int context);

#endif
