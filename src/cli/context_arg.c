/*
 * context_arg.c - the CLI's context text (--context, --context-file, manifests).
 *
 * The bytes are passed to the library as they are: cleaning and capping untrusted
 * text is the library's job (src/lib/context.c), so every program does it alike.
 * Reading a file stops one byte past the cap, so a huge or endless file costs no
 * more memory than that while the library still sees, and reports, the cut.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_read_context(const char *text, const char *file, uint64_t max_bytes, char **out,
                     size_t *len)
{
    *out = NULL;
    *len = 0;
    if (text) {
        *out = strdup(text);
        if (!*out) {
            fprintf(stderr, "clipmod: out of memory\n");
            return -1;
        }
        *len = strlen(text);
        return 0;
    }
    if (!file)
        return 0;
    const size_t cap = max_bytes < (1u << 30) ? (size_t)max_bytes + 1 : (size_t)1 << 30;
    FILE *f = fopen(file, "rb");
    char *buf = f ? malloc(cap + 1) : NULL;
    if (!f || !buf) {
        fprintf(stderr, "clipmod: --context-file %s: %s\n", file,
                f ? "out of memory" : strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    const size_t got = fread(buf, 1, cap, f);
    const int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "clipmod: --context-file %s: read error\n", file);
        free(buf);
        return -1;
    }
    buf[got] = '\0';
    *out = buf;
    /* Zero means "up to the NUL" to the library: an empty file is an empty text. */
    *len = got;
    return 0;
}
