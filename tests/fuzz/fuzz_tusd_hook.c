/*
 * fuzz_tusd_hook.c - clipmodd's reading of tusd's JSON (src/daemon/tusd_hook.c).
 *
 * The input is read both as a hook request body (tusd_hook_parse) and as a
 * filestore .info file (tusd_info_parse), as clipmodd reads what tusd sends and
 * what tusd wrote. Then the rules that tie an upload to its .info file are run on
 * what was parsed. Invariants checked (abort on failure): an ID that tusd_id_ok()
 * accepts is relative and never climbs ("..") out of the upload directory; the
 * layout tusd's filestore makes for an accepted ID (DIR/ID and DIR/ID.info) always
 * matches by name, and nothing else at DIR/ID does (another ID, another directory
 * for the .info); a .info file always matches its own content (same ID, path,
 * InfoPath, size) unless it names a store other than "filestore"; and a size one
 * byte off never matches when the size is known.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tusd_hook.h"

#define DIR "/srv/tusd/data"

static void check_id_layout(const char *id)
{
    char real[700], info[700], other[700];

    if (!tusd_id_ok(id))
        return;
    if (id[0] == '/' || strstr(id, ".."))
        abort();
    snprintf(real, sizeof real, DIR "/%s", id);
    snprintf(info, sizeof info, DIR "/%s.info", id);
    if (tusd_pair_names_mismatch(id, real, info))
        abort();
    /* The .info of another file, or in another directory, is not this upload's. */
    snprintf(other, sizeof other, DIR "/x%s.info", id);
    if (!tusd_pair_names_mismatch(id, real, other))
        abort();
    snprintf(other, sizeof other, "/srv/other/%s", id);
    if (!tusd_pair_names_mismatch(id, other, info))
        abort();
}

static void check_info(const tusd_info *info)
{
    if (!info->id || !info->path)
        return;
    uint64_t size = info->size_known ? (uint64_t)info->size : 0;
    const char *m = tusd_pair_content_mismatch(info->id, info->path, info->info, info, size);
    int foreign = info->store && strcmp(info->store, "filestore");
    if (!m != !foreign)
        abort();
    if (info->size_known &&
        !tusd_pair_content_mismatch(info->id, info->path, info->info, info, size + 1))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    tusd_hook h;
    tusd_info info;

    if (tusd_hook_parse((const char *)data, size, &h, err, sizeof err) == TUSD_HOOK_OK) {
        if (!h.type)
            abort();
        check_id_layout(h.id);
    } else if (!memchr(err, '\0', sizeof err)) {
        abort();
    }
    tusd_hook_clear(&h);

    if (tusd_info_parse((const char *)data, size, &info, err, sizeof err) == 0) {
        if (!info.id)
            abort();
        check_id_layout(info.id);
        check_info(&info);
    }
    tusd_info_clear(&info);
    return 0;
}
