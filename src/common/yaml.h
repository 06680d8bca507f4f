/*
 * yaml.h - the one YAML reader of the runtime, with positions and problems.
 *
 * Owns turning YAML text (a policy, clipmodd's or the milter's configuration) into
 * a small tree of nodes (mapping, list, scalar), each with file:line:column, and
 * the typed reads and key checks every config reader needs. What it refuses, as
 * the policy parser always has: anchors and aliases (no billion laughs), tags
 * other than the plain !!str/!!seq/!!map, a second document, nesting deeper than
 * CM_YAML_MAX_DEPTH. Problems are never printed: each is handed to a report
 * callback as (position, message), and cm_yproblems collects them as
 * "file:line:column: message" lines for programs that just want a list.
 *
 * Memory: a document owns all its nodes and strings (freed with cm_yaml_free).
 * Inside libclipmod the reader allocates through cm_alloc (src/lib/common.h) so
 * allocation-failure injection reaches it; elsewhere through malloc. Strings the
 * typed reads return point into the document (borrowed) unless said otherwise.
 * No global state: thread-safe for distinct documents.
 */
#ifndef CM_YAML_H
#define CM_YAML_H

#include <stddef.h>
#include <stdint.h>

#define CM_YAML_MAX_DEPTH 16

/* Return codes of the reader. */
enum { CM_YAML_OK = 0, CM_YAML_BAD = -1, CM_YAML_NOMEM = -2 };

/* A position: file (borrowed from the caller, must outlive the document), 1-based line/column
 * (characters). */
typedef struct cm_ypos {
    const char *file;
    int line, column;
} cm_ypos;

typedef enum cm_ykind {
    CM_Y_SCALAR,
    CM_Y_SEQ,
    CM_Y_MAP,
    CM_Y_BAD /* an alias, already reported */
} cm_ykind;

/* One node. A mapping's children alternate key, value (n counts both). */
typedef struct cm_ynode {
    cm_ykind kind;
    int quoted; /* scalar written in quotes or tagged !!str: never a number, bool or null */
    cm_ypos pos;
    const char *s; /* scalar text, NUL-terminated; may contain NULs itself (see len) */
    size_t len;
    struct cm_ynode *first, *last, *next;
    size_t n; /* children */
} cm_ynode;

/* Where problems go: fn(arg, position, message without the position). */
typedef void (*cm_yreport_fn)(void *arg, cm_ypos pos, const char *msg);
typedef struct cm_yreport {
    cm_yreport_fn fn;
    void *arg;
} cm_yreport;

typedef struct cm_ydoc cm_ydoc;

/*
 * Parse len bytes of buf (not necessarily NUL-terminated). `noun` names the
 * document in messages ("a policy file", "a configuration file"; NULL: "a YAML
 * file"). Returns CM_YAML_OK with *out set (its root may be NULL for an empty
 * file; warnings such as a refused anchor may still have been reported),
 * CM_YAML_BAD when the text cannot be used (reported), or CM_YAML_NOMEM (*out NULL).
 */
int cm_yaml_parse(const char *file, const void *buf, size_t len, const char *noun,
                  const cm_yreport *rep, cm_ydoc **out);

/*
 * Read and parse a file of at most max_bytes (0: 1 MiB). Unreadable or too large:
 * reported as a whole-file problem (line 0, column 0) and CM_YAML_BAD.
 */
int cm_yaml_parse_file(const char *path, size_t max_bytes, const char *noun, const cm_yreport *rep,
                       cm_ydoc **out);

/* The document's root node, NULL for an empty document. */
const cm_ynode *cm_yaml_root(const cm_ydoc *doc);

/* Free a document and everything in it. NULL is accepted. */
void cm_yaml_free(cm_ydoc *doc);

/* ---- node helpers (no reports) ---------------------------------------- */

/* An unquoted empty, ~ or null scalar. */
int cm_ynode_is_null(const cm_ynode *n);
/* The scalar is exactly the string s (no hidden NUL). */
int cm_ynode_is(const cm_ynode *n, const char *s);
/* The value of key `key` in mapping `map`, or NULL (first match; key is the node before it). */
const cm_ynode *cm_ymap_get(const cm_ynode *map, const char *key);
/*
 * How a value is named in a message: "a mapping", "a list", "an empty value",
 * "'text'" or "\"text\"" (cut at 40 bytes, control characters as '?'). Returns buf
 * (at least 80 bytes) for a scalar, a static phrase otherwise.
 */
const char *cm_ynode_describe(const cm_ynode *n, char *buf, size_t buflen);

/* ---- typed reads: 0 with *out set, -1 after reporting at the node -------- */
/* `what` names the value in the message, e.g. "'log_level'". */

/* A non-null scalar without NUL bytes; empty strings refused unless allow_empty. */
int cm_yread_str(const cm_ynode *v, const char *what, int allow_empty, const cm_yreport *rep,
                 const char **out);
/* true/false/yes/no/on/off (any case), unquoted. */
int cm_yread_bool(const cm_ynode *v, const char *what, const cm_yreport *rep, int *out);
/* A decimal integer in [min, max], unquoted. */
int cm_yread_int(const cm_ynode *v, const char *what, long long min, long long max,
                 const cm_yreport *rep, long long *out);
/* A size as size.h reads it ("25M"; a plain number is bytes), at most max. */
int cm_yread_size(const cm_ynode *v, const char *what, uint64_t max, const cm_yreport *rep,
                  uint64_t *out);
/* A duration as size.h reads it ("10s", "500ms"; a plain number is seconds), in ms, at most max_ms.
 */
int cm_yread_duration_ms(const cm_ynode *v, const char *what, uint64_t max_ms,
                         const cm_yreport *rep, uint64_t *out);
/*
 * A list of non-empty strings (a single string counts as a one-element list), at
 * most max items. *out is a NULL-terminated array of borrowed strings that the
 * caller frees with free() (the array only); *n its length.
 */
int cm_yread_strlist(const cm_ynode *v, const char *what, size_t max, const cm_yreport *rep,
                     const char ***out, size_t *n);

/*
 * Check that `map` is a mapping whose keys are plain strings from allowed[0..n)
 * (n <= 64), each at most once. Reports every other key as
 * "unknown key 'x' <where> (did you mean 'y'?); allowed: a, b, c", a duplicate as
 * "duplicate key 'x' (first at line L, column C)" and a non-string key as
 * "keys must be strings, not ...". When keys/vals are not NULL (arrays of n), they
 * receive each allowed key's key and value node (NULL when absent). Returns the
 * number of problems (0 for a node that is not a mapping; -1 when n > 64).
 */
int cm_ycheck_keys(const cm_ynode *map, const char *where, const char *const *allowed, size_t n,
                   const cm_ynode **keys, const cm_ynode **vals, const cm_yreport *rep);

/* ---- a ready-made problem list ------------------------------------------ */

typedef struct cm_yproblems {
    char **lines; /* "file:line:column: message" (or "file: message" at line 0) */
    size_t n, cap;
    size_t max; /* 0: 200; further problems are only counted in dropped */
    size_t dropped;
    int nomem;
} cm_yproblems;

/* A report that appends to a cm_yproblems (pass it as the report's arg). */
void cm_yproblems_report(void *problems, cm_ypos pos, const char *msg);
/* All lines joined with '\n' (each ending in one); caller frees with free(); NULL if none or OOM.
 */
char *cm_yproblems_join(const cm_yproblems *p);
/* Free the lines; p is empty afterwards. NULL is accepted. */
void cm_yproblems_free(cm_yproblems *p);

/*
 * Copy at most `max` bytes of s[0..len) into out (`size` bytes) for a message:
 * control characters become '?', a cut never splits a UTF-8 sequence and is marked
 * "...". For quoting a value from a hostile file in a problem line.
 */
void cm_yaml_show(const char *s, size_t len, size_t max, char *out, size_t size);

#endif
