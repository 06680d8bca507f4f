/*
 * containers.h - images inside zip archives and PDF documents, counted, not scanned.
 *
 * Owns the bounded reading of the two containers that carry most pictures in mail
 * without being images themselves: a zip archive's central directory (entry names,
 * and the first bytes of entries stored uncompressed), and a PDF's image XObjects
 * (/Subtype /Image, found by a byte scan: an image XObject is a stream, and PDF
 * never puts streams inside compressed object streams, so their dictionaries are
 * always readable). Nothing is decompressed - no zip bomb can cost more than the
 * bytes of its central directory - so images inside compressed entries are known
 * by their names only, and images drawn inline in a PDF page (BI ... EI, inside a
 * compressed content stream) are not counted. The milter reports the counts and
 * lets its configuration decide (clipmod-milter(8), archives-with-images).
 */
#ifndef CLIPMOD_MILTER_CONTAINERS_H
#define CLIPMOD_MILTER_CONTAINERS_H

#include <stddef.h>

/* Entries read from one central directory at most; past it the archive is unreadable. */
#define CMM_ZIP_MAX_ENTRIES 65536

typedef enum cmm_container_kind {
    CMM_ZIP,    /* a zip archive */
    CMM_OFFICE, /* a zip that is an office document (docx, xlsx, pptx, odt ...) */
    CMM_PDF,
} cmm_container_kind;

typedef struct cmm_count {
    cmm_container_kind kind;
    size_t entries; /* zip: entries in the central directory (directories excluded) */
    size_t images;  /* entries or XObjects that are images */
    int unreadable; /* what is inside could not be told; `why` says why */
    char why[120];
} cmm_count;

/*
 * Is `data` (decoded bytes of a part named `filename`, which may be NULL, of type
 * `content_type`) a zip or a PDF? Then fill *out and return 1; else return 0.
 */
int cmm_container_count(const unsigned char *data, size_t len, const char *filename,
                        const char *content_type, cmm_count *out);

/* "zip", "office", "pdf". */
const char *cmm_container_kind_name(cmm_container_kind k);

#endif /* CLIPMOD_MILTER_CONTAINERS_H */
