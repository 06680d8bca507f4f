/*
 * suggest.h - "did you mean" for every name a person types (config keys, category
 * ids, subcommands, options).
 *
 * Owns the one edit distance of the runtime (optimal string alignment: Levenshtein
 * plus adjacent transpositions, so "threshlod" is one edit from "threshold") and
 * the rule for when a name is close enough to suggest. Replaces the copies in
 * src/lib/policy.c and src/daemon/config.c. Thread-safe, no allocation.
 */
#ifndef CM_SUGGEST_H
#define CM_SUGGEST_H

#include <stddef.h>

/* OSA distance between a and b; SIZE_MAX when either is longer than 64 bytes. */
size_t cm_edit_distance(const char *a, const char *b);

/*
 * The name of names[0..n) nearest to s, or NULL when none is close: distance at
 * most 2 and at most a third of the candidate's length, and never s itself. The
 * result points into names (borrowed).
 */
const char *cm_suggest(const char *s, const char *const *names, size_t n);

#endif
