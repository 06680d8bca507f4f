/*
 * tusd_hook.c - what tusd's JSON says: hook requests and filestore .info files.
 *
 * Owns the reading of the two JSON documents clipmodd gets from tusd, and the rule
 * that ties an upload file to its .info file before clipmodd deletes or moves
 * anything. tusd's filestore (pkg/filestore) keeps an upload as two files in its
 * upload directory: ID with the data and ID.info with the handler.FileInfo as JSON
 * (ID, Size, SizeIsDeferred, Offset, MetaData, ..., Storage{Type: "filestore", Path,
 * InfoPath}). A hook request is not authenticated, so its paths prove nothing; the
 * .info file, written by tusd, is what says that a file is an upload. No I/O here:
 * tusd.c opens and reads, and tests/fuzz/fuzz_tusd_hook.c feeds buffers. It also
 * picks, from the upload's MetaData, the values that are the upload's context (its
 * file name and caption-like keys; tusd's hook JSON has them decoded already).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "tusd_hook.h"

static const char *str_at(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

void tusd_hook_clear(tusd_hook *h)
{
    if (!h)
        return;
    json_decref(h->root);
    memset(h, 0, sizeof *h);
}

/* The metadata values that make the upload's context (tusd_hook.context). */
static void pick_context(json_t *meta, tusd_hook *h)
{
    static const char *const keys[TUSD_CONTEXT_KEYS] = {"filename", "caption", "description",
                                                        "alt",      "title",   "text"};
    for (size_t i = 0; i < TUSD_CONTEXT_KEYS; i++) {
        const char *v = str_at(meta, keys[i]);
        /* Uppy sends the file's name as "name" (and "filename" too, in newer versions). */
        if (i == 0 && (!v || !*v))
            v = str_at(meta, "name");
        h->context[i] = v && *v ? v : NULL;
    }
}

int tusd_hook_parse(const char *body, size_t len, tusd_hook *h, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);

    memset(h, 0, sizeof *h);
    h->root = root;
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "bad JSON: %s", root ? "expected a tusd hook request" : jerr.text);
        return TUSD_HOOK_BAD_JSON;
    }
    json_t *upload = json_object_get(json_object_get(root, "Event"), "Upload");
    h->type = str_at(root, "Type");
    if (!h->type || !json_is_object(upload)) {
        snprintf(err, errlen, "not a tusd hook request (Type and Event.Upload expected)");
        return TUSD_HOOK_NOT_A_HOOK;
    }
    json_t *storage = json_object_get(upload, "Storage");
    h->id = str_at(upload, "ID");
    h->path = str_at(storage, "Path");
    h->info = str_at(storage, "InfoPath");
    h->store = str_at(storage, "Type");
    pick_context(json_object_get(upload, "MetaData"), h);
    return TUSD_HOOK_OK;
}

int tusd_id_ok(const char *id)
{
    if (!id || !*id || strlen(id) > 512 || id[0] == '/' || strstr(id, ".."))
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("-._~!$'()*+,;=:@/%", *p)))
            return 0;
    return 1;
}

void tusd_info_clear(tusd_info *i)
{
    if (!i)
        return;
    json_decref(i->root);
    memset(i, 0, sizeof *i);
}

int tusd_info_parse(const char *data, size_t len, tusd_info *i, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = NULL;

    memset(i, 0, sizeof *i);
    if (len > TUSD_INFO_MAX) {
        snprintf(err, errlen, "the .info file is larger than %d bytes", TUSD_INFO_MAX);
        return -1;
    }
    root = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES, &jerr);
    i->root = root;
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "the .info file is not a JSON object");
        return -1;
    }
    i->id = str_at(root, "ID");
    if (!i->id) {
        snprintf(err, errlen, "the .info file has no ID");
        return -1;
    }
    json_t *storage = json_object_get(root, "Storage");
    i->path = str_at(storage, "Path");
    i->info = str_at(storage, "InfoPath");
    i->store = str_at(storage, "Type");
    json_t *size = json_object_get(root, "Size");
    if (json_is_integer(size) && !json_is_true(json_object_get(root, "SizeIsDeferred")) &&
        json_integer_value(size) >= 0) {
        i->size = json_integer_value(size);
        i->size_known = 1;
    }
    return 0;
}

/* 1 if `s` ends with "/" followed by `tail`. */
static int ends_with_component(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && s[n - t - 1] == '/' && !strcmp(s + n - t, tail);
}

/* 1 if `s` is `base` followed by ".info". */
static int is_info_of(const char *s, const char *base)
{
    size_t n = strlen(base);
    return !strncmp(s, base, n) && !strcmp(s + n, ".info");
}

const char *tusd_pair_names_mismatch(const char *id, const char *real, const char *info_real)
{
    if (!id || !real || !info_real)
        return "no upload ID, file or .info file";
    if (!ends_with_component(real, id))
        return "the file is not named after the upload ID";
    if (!is_info_of(info_real, real))
        return "the .info file is not the upload's (ID.info in the same directory)";
    return NULL;
}

const char *tusd_pair_content_mismatch(const char *id, const char *hook_path, const char *hook_info,
                                       const tusd_info *info, uint64_t size)
{
    if (!id || !hook_path || !info || !info->id)
        return "no upload ID, path or .info content";
    if (strcmp(info->id, id))
        return "the .info file names another upload ID";
    if (!info->path || strcmp(info->path, hook_path))
        return "the .info file names another Storage.Path";
    if (hook_info && info->info && strcmp(info->info, hook_info))
        return "the .info file names another InfoPath";
    if (info->store && strcmp(info->store, "filestore"))
        return "the .info file is not a filestore upload's";
    if (info->size_known && (uint64_t)info->size != size)
        return "the file's size is not the size in its .info file";
    return NULL;
}
