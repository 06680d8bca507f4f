/*
 * labelled.h - labelled image sets for policy evaluation.
 *
 * Two forms (clipmod(1), "policy evaluate"):
 *  - a folder: LABELLED/<label>/... holds the images of that label (any depth; files
 *    and folders whose names start with '.' are skipped), where a label is a category
 *    id of the policy or "clean" (images that must not be flagged);
 *  - a manifest, a file named *.csv (path, then zero or more labels, one per field;
 *    a first line (after blank and # lines) starting with "path," is a header, and its field named
 * "text", if any, marks the column of the text that came with the image) or *.jsonl (one object per
 * line: {"path": "...", "labels": ["...", ...], "text": "..."}, "text" optional). Paths are
 * relative to the manifest's folder; an image with no labels, or only "clean", is clean. An empty
 * text is no text; a folder has none. Reading only collects paths and label names, each with where
 * it came from (the folder or "manifest:line"); labelled_resolve() then checks every name against
 * the policy's categories, so all wrong names are reported at once, with "did you mean".
 */
#ifndef CLIPMOD_CLI_LABELLED_H
#define CLIPMOD_CLI_LABELLED_H

#include <stddef.h>

#include "clipmod/clipmod.h"

/* Largest labelled set read (images), and longest manifest line. */
#define LABELLED_MAX_IMAGES 1000000
#define LABELLED_MAX_LINE   65536

typedef struct labelled_item {
    char *path;
    char **names; /* label names as written */
    size_t n_names;
    char *origin;          /* "DIR/weapons" or "set.csv:12": where the labels were given */
    char *text;            /* the text that came with the image (any bytes), or NULL */
    size_t text_len;       /* bytes at `text` (it may hold NULs); 0 when NULL */
    unsigned char *labels; /* after resolve: one flag per category of the policy */
} labelled_item;

typedef struct labelled_set {
    labelled_item *items;
    size_t n, cap;
    size_t n_cats; /* after resolve */
} labelled_set;

/* Read a folder or a manifest. Problems are printed on stderr; returns 0 or -1. */
int labelled_read(const char *where, labelled_set *set);

/*
 * Map every label name to a category of `engine`; print each unknown name (where it
 * was given, and a category it may be a typo of) on stderr. Returns 0 or -1.
 */
int labelled_resolve(labelled_set *set, const clipmod_engine *engine);

void labelled_free(labelled_set *set);

#endif
