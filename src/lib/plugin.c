/*
 * plugin.c - the plugin loader: dlopen, descriptor checks, and calling plugins.
 *
 * Owns everything between a plugin path and its callbacks: resolving bare names to
 * the installed plugin directory, loading the file, checking its descriptor against
 * the ABI rules of clipmod/plugin.h (with messages that say which side to upgrade),
 * running init, calling on_result in load order, and unloading in reverse order.
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "plugin_host.h"

/* The ABI 1 descriptor ends with fini; later minor versions only grow it. */
#define V1_SIZE (offsetof(clipmod_plugin, fini) + sizeof(((clipmod_plugin *)0)->fini))

/* A larger descriptor is taken for garbage (an uninitialised size), not read. */
#define MAX_DESCRIPTOR_SIZE 4096

/* Entry points of later ABIs we look for, to say "too new" rather than "not a plugin". */
#define MAX_PROBED_ABI 9

#define KNOWN_FLAGS CLIPMOD_PLUGIN_SERIALIZE

typedef struct cm_plugin {
    char *path;          /* as opened, for messages */
    void *dl;            /* dlopen() handle */
    clipmod_plugin desc; /* our copy, zero beyond the plugin's size */
    void *state;         /* what init stored */
    int serialize;       /* CLIPMOD_PLUGIN_SERIALIZE: `lock` is initialised */
    pthread_mutex_t lock;
} cm_plugin;

struct cm_plugins {
    cm_plugin **items; /* pointers, because a pthread mutex must not move */
    size_t n, cap;
};

/*
 * dlerror()'s text without a leading "path: ", which our messages already give.
 * Copied, because the next dl call may overwrite it.
 */
static void dl_reason(const char *path, char *out, size_t size)
{
    const char *e = dlerror();
    size_t n = strlen(path);
    if (!e)
        e = "unknown dynamic loader error";
    else if (strncmp(e, path, n) == 0 && e[n] == ':' && e[n + 1] == ' ')
        e += n + 2;
    snprintf(out, size, "%s", e);
}

/* The file to open for `path`: itself if it has a '/', else the installed plugin. */
static clipmod_error resolve(const char *path, char **out, char *errbuf)
{
    if (!*path)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "plugin: empty path");
    if (strchr(path, '/')) {
        *out = cm_strdup(path);
        return *out ? CLIPMOD_OK
                    : cm_error(errbuf, CLIPMOD_E_NOMEM, "plugin %s: out of memory", path);
    }
#ifdef CM_PLUGIN_DIR
    /* A bare name never goes to dlopen() as is: that would search LD_LIBRARY_PATH
     * and the system library directories for something called like a plugin. */
    size_t n = strlen(path);
    const char *ext = n > 3 && strcmp(path + n - 3, ".so") == 0 ? "" : ".so";
    *out = cm_asprintf("%s/%s%s", CM_PLUGIN_DIR, path, ext);
    if (!*out)
        return cm_error(errbuf, CLIPMOD_E_NOMEM, "plugin %s: out of memory", path);
    return CLIPMOD_OK;
#else
    return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                    "plugin %s: not a path, and this libclipmod has no plugin directory to "
                    "look in (write ./%s for a file in the current directory)",
                    path, path);
#endif
}

/* Find the entry point and call it. On failure the message says why, and what to do. */
static clipmod_error get_descriptor(const cm_plugin *p, const clipmod_plugin **out, char *errbuf)
{
    char why[256], name[32];
    void *sym;

    dlerror();
    sym = dlsym(p->dl, CLIPMOD_PLUGIN_ENTRY);
    if (!sym) {
        dl_reason(p->path, why, sizeof why);
        for (int abi = CLIPMOD_PLUGIN_ABI + 1; abi <= MAX_PROBED_ABI; abi++) {
            snprintf(name, sizeof name, "clipmod_plugin_v%d", abi);
            if (dlsym(p->dl, name))
                return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                                "plugin %s: written for plugin ABI %d (it exports %s, not %s), "
                                "but this libclipmod %s has ABI %d: upgrade libclipmod",
                                p->path, abi, name, CLIPMOD_PLUGIN_ENTRY, clipmod_version(),
                                CLIPMOD_PLUGIN_ABI);
        }
        return cm_error(errbuf, CLIPMOD_E_PLUGIN, "plugin %s: not a clipmod plugin: %s", p->path,
                        why);
    }
    /* POSIX guarantees that a function's address survives the trip through void *. */
    const clipmod_plugin *(*entry)(void) = (const clipmod_plugin *(*)(void))sym;
    *out = entry();
    if (!*out)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN, "plugin %s: %s() returned NULL", p->path,
                        CLIPMOD_PLUGIN_ENTRY);
    return CLIPMOD_OK;
}

/* Check `d` against the ABI rules of clipmod/plugin.h and copy it into p->desc. */
static clipmod_error check_descriptor(cm_plugin *p, const clipmod_plugin *d, const char *config,
                                      char *errbuf)
{
    const char *path = p->path;

    if (d->abi == 0)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                        "plugin %s: its descriptor has ABI 0: initialise it with "
                        "CLIPMOD_PLUGIN_HEADER",
                        path);
    if (d->abi > CLIPMOD_PLUGIN_ABI)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                        "plugin %s: written for plugin ABI %" PRIu32 ", but this libclipmod %s "
                        "has ABI %d: upgrade libclipmod, or rebuild the plugin against its "
                        "clipmod/plugin.h",
                        path, d->abi, clipmod_version(), CLIPMOD_PLUGIN_ABI);
    if (d->abi < CLIPMOD_PLUGIN_ABI)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                        "plugin %s: written for plugin ABI %" PRIu32 ", which this libclipmod "
                        "%s no longer supports (it has ABI %d): rebuild the plugin against "
                        "this version's clipmod/plugin.h",
                        path, d->abi, clipmod_version(), CLIPMOD_PLUGIN_ABI);
    if (d->size < V1_SIZE || d->size > MAX_DESCRIPTOR_SIZE)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                        "plugin %s: its descriptor claims %" PRIu32 " bytes, ABI %d needs %zu to "
                        "%d: initialise it with CLIPMOD_PLUGIN_HEADER",
                        path, d->size, CLIPMOD_PLUGIN_ABI, (size_t)V1_SIZE, MAX_DESCRIPTOR_SIZE);
    /* Built against a newer header: fine if it leaves every field we lack at 0. */
    for (size_t i = sizeof *d; i < d->size; i++)
        if (((const unsigned char *)d)[i])
            return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                            "plugin %s: sets descriptor fields this libclipmod %s does not know "
                            "(byte %zu of %" PRIu32 "; this library knows %zu): upgrade libclipmod",
                            path, clipmod_version(), i, d->size, sizeof *d);

    memset(&p->desc, 0, sizeof p->desc);
    memcpy(&p->desc, d, d->size < sizeof *d ? d->size : sizeof *d);
    d = &p->desc;

    if (d->flags & ~(uint64_t)KNOWN_FLAGS)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                        "plugin %s: asks for flags 0x%" PRIx64 " that this libclipmod %s does "
                        "not know: upgrade libclipmod",
                        path, d->flags & ~(uint64_t)KNOWN_FLAGS, clipmod_version());
    if (!d->name || !*d->name)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN, "plugin %s: its descriptor has no name", path);
    if (!d->on_result)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN, "plugin %s (%s): no on_result callback", path,
                        d->name);
    if (!d->init && *config)
        return cm_error(errbuf, CLIPMOD_E_PLUGIN,
                        "plugin %s (%s): takes no configuration, but was given \"%s\"", path,
                        d->name, config);
    return CLIPMOD_OK;
}

/* Release what cm_plugins_load() acquired for `p`, short of fini. */
static void unload(cm_plugin *p)
{
    if (!p)
        return;
    if (p->serialize)
        pthread_mutex_destroy(&p->lock);
    if (p->dl)
        dlclose(p->dl);
    cm_free(p->path);
    cm_free(p);
}

clipmod_error cm_plugins_load(cm_plugins **list, const char *path, const char *config, char *errbuf)
{
    clipmod_error rc = CLIPMOD_OK;
    cm_plugins *l = NULL;
    cm_plugin *p = NULL;
    const clipmod_plugin *d;

    if (!list || !path)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "plugin: no list or no path");
    if (!config)
        config = "";
    l = *list;

    p = cm_calloc(1, sizeof *p);
    if (!p) {
        rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "plugin %s: out of memory", path);
        goto out;
    }
    rc = resolve(path, &p->path, errbuf);
    if (rc)
        goto out;
    dlerror();
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        char why[256];
        dl_reason(p->path, why, sizeof why);
        rc = cm_error(errbuf, CLIPMOD_E_PLUGIN, "plugin %s: cannot load: %s", p->path, why);
        goto out;
    }
    rc = get_descriptor(p, &d, errbuf);
    if (!rc)
        rc = check_descriptor(p, d, config, errbuf);
    if (rc)
        goto out;

    /* Everything that can fail for want of memory happens before init, so a plugin
     * that started is never left without its fini. */
    if (!l) {
        l = cm_calloc(1, sizeof *l);
        if (!l) {
            rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "plugin %s: out of memory", p->path);
            goto out;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        cm_plugin **items = cm_realloc(l->items, cap * sizeof *items);
        if (!items) {
            rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "plugin %s: out of memory", p->path);
            goto out;
        }
        l->items = items;
        l->cap = cap;
    }
    if (p->desc.flags & CLIPMOD_PLUGIN_SERIALIZE) {
        if (pthread_mutex_init(&p->lock, NULL)) {
            rc = cm_error(errbuf, CLIPMOD_E_NOMEM, "plugin %s: cannot create a lock", p->path);
            goto out;
        }
        p->serialize = 1;
    }

    if (p->desc.init) {
        char msg[CLIPMOD_ERROR_SIZE / 2] = "";
        if (p->desc.init(config, &p->state, msg, sizeof msg)) {
            msg[sizeof msg - 1] = '\0';
            rc = cm_error(errbuf, CLIPMOD_E_PLUGIN, "plugin %s (%s): %s", p->path, p->desc.name,
                          *msg ? msg : "init failed without saying why");
            goto out;
        }
    }
    l->items[l->n++] = p;
    p = NULL;
    *list = l;
out:
    unload(p);
    if (l != *list)
        cm_plugins_free(l);
    return rc;
}

void cm_plugins_notify(const cm_plugins *list, const clipmod_engine *engine,
                       const clipmod_input *input, clipmod_result *result)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++) {
        cm_plugin *p = list->items[i];
        if (p->serialize)
            pthread_mutex_lock(&p->lock);
        p->desc.on_result(p->state, engine, input, result);
        if (p->serialize)
            pthread_mutex_unlock(&p->lock);
    }
}

size_t cm_plugins_count(const cm_plugins *list)
{
    return list ? list->n : 0;
}

const clipmod_plugin *cm_plugins_get(const cm_plugins *list, size_t i)
{
    return list && i < list->n ? &list->items[i]->desc : NULL;
}

void cm_plugins_free(cm_plugins *list)
{
    if (!list)
        return;
    /* Reverse order, like destructors: a plugin may rely on one loaded before it. */
    for (size_t i = list->n; i-- > 0;) {
        cm_plugin *p = list->items[i];
        if (p->desc.fini)
            p->desc.fini(p->state);
        unload(p);
    }
    cm_free(list->items);
    cm_free(list);
}
