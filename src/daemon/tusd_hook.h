/*
 * tusd_hook.h - reading tusd's JSON, without files or sockets (tusd_hook.c).
 *
 * tusd.c hands these functions the body of a hook request and the content of a
 * filestore .info file; they say what the JSON holds, and whether an upload file and
 * a .info file form the pair tusd's filestore makes for one upload. The fuzz target
 * tests/fuzz/fuzz_tusd_hook.c drives the same functions from a buffer.
 */
#ifndef CLIPMODD_TUSD_HOOK_H
#define CLIPMODD_TUSD_HOOK_H

#include <stddef.h>
#include <stdint.h>

/* The largest .info file read (tusd writes ID, sizes, metadata and paths). */
#define TUSD_INFO_MAX (1024 * 1024)

/*
 * The upload metadata keys whose values are an upload's context (clipmodd(8)
 * CONTEXT), in the order they are joined: the file name ("filename", or Uppy's
 * "name" when there is no "filename"), then the caption-like keys.
 */
#define TUSD_CONTEXT_KEYS 6

/* One hook request; strings point into `root` and live until tusd_hook_clear(). */
typedef struct tusd_hook {
    void *root;        /* the parsed document (jansson json_t) */
    const char *type;  /* Type: "pre-create", "pre-finish", "post-finish", ... */
    const char *id;    /* Event.Upload.ID, or NULL */
    const char *path;  /* Event.Upload.Storage.Path, or NULL */
    const char *info;  /* Event.Upload.Storage.InfoPath, or NULL */
    const char *store; /* Event.Upload.Storage.Type, or NULL */
    /* Event.Upload.MetaData's filename (or name), caption, description, alt, title and
     * text: each a string value, or NULL when absent, empty or not a string. */
    const char *context[TUSD_CONTEXT_KEYS];
} tusd_hook;

enum { TUSD_HOOK_OK = 0, TUSD_HOOK_BAD_JSON = -1, TUSD_HOOK_NOT_A_HOOK = -2 };

/*
 * Parse a hook request: TUSD_HOOK_OK, TUSD_HOOK_BAD_JSON (not JSON, or not an
 * object) or TUSD_HOOK_NOT_A_HOOK (no Type string or no Event.Upload object), with
 * a sentence in `err`. Free with tusd_hook_clear() whatever it returned.
 */
int tusd_hook_parse(const char *body, size_t len, tusd_hook *h, char *err, size_t errlen);
void tusd_hook_clear(tusd_hook *h);

/*
 * 1 if `id` can be a tusd upload ID that names a file below the upload directory:
 * URL path characters (RFC 3986 pchar and '/'), at most 512 bytes, not absolute,
 * no "..".
 */
int tusd_id_ok(const char *id);

/* A filestore .info file (tusd's handler.FileInfo as JSON); strings as above. */
typedef struct tusd_info {
    void *root;
    const char *id;    /* ID */
    const char *path;  /* Storage.Path, or NULL */
    const char *info;  /* Storage.InfoPath, or NULL */
    const char *store; /* Storage.Type, or NULL */
    int64_t size;      /* Size, when size_known */
    int size_known;    /* Size present and SizeIsDeferred not true */
} tusd_info;

/* Parse a .info file: 0, or -1 with a sentence in `err`. Free with tusd_info_clear(). */
int tusd_info_parse(const char *data, size_t len, tusd_info *i, char *err, size_t errlen);
void tusd_info_clear(tusd_info *i);

/*
 * Whether an upload file and a .info file are the pair tusd's filestore made for
 * upload `id`, in two steps. By name: the upload's real path `real` ends with
 * "/" + id (tusd names the file after the ID, in its upload directory) and the
 * .info's real path `info_real` is `real` + ".info" (same directory, same name).
 * By content: the .info names the same ID, the same Storage.Path as the hook
 * (`hook_path`), the same InfoPath when both give one (`hook_info` may be NULL), a
 * filestore, and the upload's size (`size`) when it is known. NULL when they match,
 * else why not.
 */
const char *tusd_pair_names_mismatch(const char *id, const char *real, const char *info_real);
const char *tusd_pair_content_mismatch(const char *id, const char *hook_path, const char *hook_info,
                                       const tusd_info *info, uint64_t size);

#endif
