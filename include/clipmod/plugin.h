/*
 * plugin.h - the ABI between libclipmod and operator plugins.
 *
 * A plugin is a shared object that the engine loads with dlopen() (see
 * clipmod_engine_load_plugin() in clipmod.h). It exports one function,
 * clipmod_plugin_v1(), returning a static descriptor: what the plugin is called and
 * the callbacks the engine runs. The engine calls on_result for every result it
 * produces, so a plugin can observe a verdict (audit log, notification) or change it
 * with clipmod_result_override() (allow-list, quarantine store). The rules below are
 * the contract; libclipmod(3), section PLUGINS, says the same at more length.
 *
 * A minimal plugin:
 *
 *     #include <clipmod/plugin.h>
 *
 *     static void on_result(void *state, const clipmod_engine *engine,
 *                           const clipmod_input *input, clipmod_result *result)
 *     {
 *         if (clipmod_result_state(result) == CLIPMOD_STATE_FLAGGED) ...
 *     }
 *
 *     static const clipmod_plugin plugin = {
 *         CLIPMOD_PLUGIN_HEADER, // abi and size
 *         .name = "example",
 *         .version = "1.0",
 *         .description = "says what it does",
 *         .on_result = on_result,
 *     };
 *
 *     CLIPMOD_PLUGIN_EXPORT const clipmod_plugin *clipmod_plugin_v1(void)
 *     {
 *         return &plugin;
 *     }
 *
 * Build it with `cc -shared -fPIC example.c $(pkg-config --cflags --libs clipmod)`.
 */
#ifndef CLIPMOD_PLUGIN_H
#define CLIPMOD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "clipmod/clipmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The plugin ABI this header describes. It changes only when an existing field,
 * callback signature or rule changes meaning; the entry point's name carries it
 * (clipmod_plugin_v1 for ABI 1), and so does the descriptor's `abi` field. A library
 * refuses a plugin written for another ABI, saying which one each side has.
 *
 * Compatible growth does not change it: new fields are only ever appended to
 * clipmod_plugin, with 0/NULL meaning "absent, behave as before", and the `size`
 * field tells each side how much of the structure the other knows. A library loads
 * a plugin built against an older header (the fields that plugin lacks read as 0)
 * and one built against a newer header as long as every field it does not know is
 * 0; otherwise it refuses the plugin rather than silently ignore what it asked for.
 *
 * ABI 1 is the one first released: the `size` member at the head of clipmod_input
 * (libclipmod.so.1) came before any release, so no plugin was ever built without it.
 */
#define CLIPMOD_PLUGIN_ABI 1

/* The name of the entry point for this ABI, for dlsym(). */
#define CLIPMOD_PLUGIN_ENTRY "clipmod_plugin_v1"

/*
 * Flags (clipmod_plugin.flags). A library refuses a plugin that sets a flag it does
 * not know, since the plugin relies on behaviour the library cannot give.
 */

/*
 * Never call this plugin's on_result from two threads at once: the engine holds a
 * lock per plugin around the call. For plugins whose state is not thread-safe; it
 * serialises every scan that reaches the plugin, so keep on_result short.
 */
#define CLIPMOD_PLUGIN_SERIALIZE (UINT64_C(1) << 0)

/*
 * What a plugin exports. Return a pointer to a descriptor with static storage: it
 * (and the strings it points to) must stay valid and unchanged until the library
 * unloads the plugin. Initialise it with CLIPMOD_PLUGIN_HEADER and designated
 * initialisers so that every field you do not name is 0.
 */
typedef struct clipmod_plugin {
    uint32_t abi;   /* CLIPMOD_PLUGIN_ABI */
    uint32_t size;  /* sizeof(clipmod_plugin) as the plugin was compiled */
    uint64_t flags; /* CLIPMOD_PLUGIN_*; 0 for none */

    /*
     * A short name in lower case, e.g. "audit-log". Required. Messages about the
     * plugin use it, and it should be the `by` of its overrides and notes.
     */
    const char *name;
    const char *version;     /* the plugin's own version, e.g. "1.0"; may be NULL */
    const char *description; /* one line for listings; may be NULL */

    /*
     * Called once, when the plugin is loaded, before any on_result. `config` is the
     * operator's configuration string for this instance ("" when none; borrowed for
     * the call, so copy what you keep); its syntax is the plugin's to define. Store
     * per-instance state in *state (it starts NULL): the same file may be loaded
     * more than once with different configurations. Return 0 on success; on failure
     * return non-zero after writing one line into `errbuf` (`errlen` bytes) saying
     * what is wrong, and free what you allocated: fini is not called then.
     * May be NULL: the plugin then has no state and takes no configuration (the
     * library refuses a non-empty one, which is likely a mistake).
     */
    int (*init)(const char *config, void **state, char *errbuf, size_t errlen);

    /*
     * Called for every result the engine produces (clean, flagged and unscanned),
     * after the verdict and before the scan function returns it, for each plugin in
     * load order: a plugin sees what earlier plugins changed. Required.
     *  - It runs on the scanning thread, concurrently with itself on other results
     *    unless CLIPMOD_PLUGIN_SERIALIZE is set, and every scan waits for it: do not
     *    block (queue slow work to a thread of your own, started in init).
     *  - `engine`, `input` and `result` are borrowed for the call. Read the result
     *    with the clipmod_result_* accessors (or clipmod_result_to_json()), change it
     *    with clipmod_result_override() and clipmod_result_add_note(); never free it
     *    or keep the pointer. `engine` may be queried (policy name, SMTP replies),
     *    never changed or freed.
     *  - `input` is what was scanned, as the caller described it: `path` for a file
     *    (then `data` is NULL), or `data` and `len` for memory; `name` may be NULL.
     *    clipmod_result_name() is always the input's label. Its `size` is this
     *    library's sizeof(clipmod_input) (clipmod.h, "the size rule"): a member a
     *    newer header adds is there only when input->size covers it.
     *  - There is no error return: a plugin that fails should say so in a note on
     *    the result, and leave the verdict alone.
     */
    void (*on_result)(void *state, const clipmod_engine *engine, const clipmod_input *input,
                      clipmod_result *result);

    /*
     * Called once when the engine is freed, after the last on_result, with the
     * state init stored; release everything there. Not called if init failed.
     * May be NULL.
     */
    void (*fini)(void *state);

    /* Fields added by later minor versions go here, 0 meaning absent. */
} clipmod_plugin;

/* The first fields of every descriptor: `CLIPMOD_PLUGIN_HEADER, .name = ...`. */
#define CLIPMOD_PLUGIN_HEADER .abi = CLIPMOD_PLUGIN_ABI, .size = sizeof(clipmod_plugin)

#if defined(__GNUC__)
#define CLIPMOD_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define CLIPMOD_PLUGIN_EXPORT
#endif

/*
 * The entry point every plugin defines. The library calls it once per load, before
 * init. It must only return the descriptor: no side effects, no allocation.
 */
CLIPMOD_PLUGIN_EXPORT const clipmod_plugin *clipmod_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* CLIPMOD_PLUGIN_H */
