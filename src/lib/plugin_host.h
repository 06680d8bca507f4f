/*
 * plugin_host.h - loading operator plugins and running them on results (internal).
 *
 * Owns the list of plugins an engine has loaded: their dlopen() handles, a copy of
 * each descriptor and each instance's state. The engine loads plugins before it is
 * compiled (single-threaded); from then on the list is read-only and
 * cm_plugins_notify() may run on any number of threads at once. The ABI itself is
 * include/clipmod/plugin.h.
 */
#ifndef CM_PLUGIN_HOST_H
#define CM_PLUGIN_HOST_H

#include <stddef.h>

#include "clipmod/clipmod.h"
#include "clipmod/plugin.h"

typedef struct cm_plugins cm_plugins;

/*
 * Load the plugin at `path` with configuration `config` (NULL is taken as "") and
 * append it to *list, creating the list when *list is NULL. A `path` without '/'
 * names an installed plugin: CM_PLUGIN_DIR/NAME.so (".so" added unless given;
 * CM_PLUGIN_DIR is set by the build to $(pkglibdir)).
 * The file is opened with RTLD_NOW | RTLD_LOCAL, its clipmod_plugin_v1 descriptor
 * checked (ABI, size, flags, name, on_result) and its init run. On failure *list is
 * unchanged, nothing stays loaded and errbuf names the file (and the symbol or the
 * plugin's own message): CLIPMOD_E_PLUGIN, or _INVALID_ARG, _NOMEM.
 */
clipmod_error cm_plugins_load(cm_plugins **list, const char *path, const char *config,
                              char *errbuf);

/*
 * Run every plugin's on_result on `result`, in load order. `list` may be NULL (no
 * plugins). Thread-safe once loading is over. `engine` and `input` are passed to
 * the plugins as they are: the engine that made the result, and what was scanned.
 */
void cm_plugins_notify(const cm_plugins *list, const clipmod_engine *engine,
                       const clipmod_input *input, clipmod_result *result);

/* Number of plugins loaded (0 for NULL). */
size_t cm_plugins_count(const cm_plugins *list);

/* The descriptor of plugin i in load order (name, version ...), or NULL if out of range. */
const clipmod_plugin *cm_plugins_get(const cm_plugins *list, size_t i);

/*
 * Run every fini in reverse load order, unload the files and free the list.
 * Accepts NULL. No notify may be running.
 */
void cm_plugins_free(cm_plugins *list);

#endif
