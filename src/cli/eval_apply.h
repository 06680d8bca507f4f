/*
 * eval_apply.h - `clipmod policy evaluate --apply`: the suggested thresholds written
 * back into the policy file (eval_apply.c, eval_locate.c).
 */
#ifndef CLIPMOD_CLI_EVAL_APPLY_H
#define CLIPMOD_CLI_EVAL_APPLY_H

#include <stddef.h>
#include <sys/stat.h>

#include "evaluate.h"

/* The policy file as it was when the evaluation read it. */
typedef struct apply_snap {
    const char *path;
    unsigned char *buf;
    size_t len;
    struct stat st;
} apply_snap;

/* Where a category of one file is written (1-based lines, 0-based byte offsets). */
typedef struct apply_site {
    char *id;
    int flow;          /* written as {id: ..., ...} */
    size_t key_column; /* 0-based column of its keys (block mappings) */
    size_t id_end;     /* offset just past the id's value */
    size_t last_end;   /* offset just past its last value */
    long threshold_at; /* offset of the threshold's value, or -1 */
} apply_site;

/* Read `path` before the evaluation compiles it; 0, or -1 (printed). */
int eval_apply_snapshot(const char *path, apply_snap *s);
void eval_apply_snapshot_free(apply_snap *s);

/*
 * Write the first target's suggested thresholds into the file, in place; EXIT_CLEAN,
 * or EXIT_ERROR with nothing written (the reason printed).
 */
int eval_apply(const evaluation *ev, const apply_snap *s);

/*
 * The categories written in the top-level `categories` list of the YAML text `buf`
 * (eval_locate.c): a new array in *out (free with apply_sites_free); 0, or -1 if the
 * text does not parse.
 */
int apply_locate(const unsigned char *buf, size_t len, apply_site **out, size_t *n);
void apply_sites_free(apply_site *v, size_t n);

/* Byte offset of 0-based line `line`, character column `col` of `buf`. */
size_t apply_offset(const unsigned char *buf, size_t len, size_t line, size_t col);

#endif
