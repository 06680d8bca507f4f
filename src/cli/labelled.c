/*
 * labelled.c - reading labelled sets: a folder per label, or a CSV / JSONL manifest.
 *
 * Owns the parsing of both forms and the check of every label name against the
 * policy (labelled.h). Folders are walked in sorted order so every report lists
 * images in the same order on every machine. A manifest may give each image the text
 * that came with it (a CSV column headed "text", a JSONL "text" member): it is kept
 * as bytes, never interpreted here; the library cleans and caps it when it scores it.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "labelled.h"

#define MAX_DEPTH 32

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

/* A new item for `path` (taken over) from `origin` (copied); NULL when out of memory. */
static labelled_item *add_item(labelled_set *set, char *path, const char *origin)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 256;
        labelled_item *grown =
            set->n >= LABELLED_MAX_IMAGES ? NULL : realloc(set->items, cap * sizeof *grown);
        if (!grown) {
            free(path);
            return NULL;
        }
        set->items = grown;
        set->cap = cap;
    }
    labelled_item *it = &set->items[set->n];
    memset(it, 0, sizeof *it);
    it->path = path;
    it->origin = strdup(origin);
    if (!it->origin) {
        free(path);
        return NULL;
    }
    set->n++;
    return it;
}

static int add_name(labelled_item *it, const char *name, size_t len)
{
    char **grown = realloc(it->names, (it->n_names + 1) * sizeof *grown);
    if (!grown)
        return -1;
    it->names = grown;
    it->names[it->n_names] = dup_n(name, len);
    if (!it->names[it->n_names])
        return -1;
    it->n_names++;
    return 0;
}

/* Keep `len` bytes of text for the item; an empty text is no text. */
static int set_text(labelled_item *it, const char *s, size_t len)
{
    if (!len)
        return 0;
    it->text = dup_n(s, len);
    if (!it->text)
        return -1;
    it->text_len = len;
    return 0;
}

static int skip_dot(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* Every file under `dir` becomes an image labelled `label`. */
static int walk(labelled_set *set, const char *dir, const char *label, const char *origin,
                int depth)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, skip_dot, alphasort), rc = 0;
    if (n < 0) {
        fprintf(stderr, "clipmod: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *path = rc ? NULL : join(dir, names[i]->d_name);
        struct stat st;
        if (rc || !path) {
            rc = -1;
        } else if (stat(path, &st)) {
            fprintf(stderr, "clipmod: %s: %s\n", path, strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            if (depth >= MAX_DEPTH) {
                fprintf(stderr, "clipmod: %s: folders nested deeper than %d\n", path, MAX_DEPTH);
                rc = -1;
            } else {
                rc = walk(set, path, label, origin, depth + 1);
            }
        } else if (S_ISREG(st.st_mode)) {
            labelled_item *it = add_item(set, path, origin);
            path = NULL;
            if (!it || add_name(it, label, strlen(label)))
                rc = -1;
        }
        free(path);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int read_folder(const char *root, labelled_set *set)
{
    struct dirent **names = NULL;
    int n = scandir(root, &names, skip_dot, alphasort), rc = 0;
    if (n < 0) {
        fprintf(stderr, "clipmod: %s: %s\n", root, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *path = rc ? NULL : join(root, names[i]->d_name);
        struct stat st;
        if (!rc && path && !stat(path, &st) && S_ISDIR(st.st_mode))
            rc = walk(set, path, names[i]->d_name, path, 1);
        else if (!rc && path)
            fprintf(stderr, "clipmod: %s: not a label folder, ignored (images go in %s/<label>/)\n",
                    path, root);
        else
            rc = -1;
        free(path);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* The path of a manifest entry: relative paths are relative to the manifest's folder. */
static char *entry_path(const char *manifest, const char *p, size_t len)
{
    const char *slash = strrchr(manifest, '/');
    if (p[0] == '/' || !slash)
        return dup_n(p, len);
    char *dir = dup_n(manifest, (size_t)(slash - manifest)), *rel = dup_n(p, len);
    char *full = dir && rel ? join(dir, rel) : NULL;
    free(dir);
    free(rel);
    return full;
}

/* Split one CSV line into fields (double quotes may enclose a field; "" is a quote). */
static size_t csv_fields(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *r = line, *w = line;
    while (n < max) {
        fields[n++] = w;
        int quoted = *r == '"';
        if (quoted)
            r++;
        for (; *r; r++) {
            if (quoted && *r == '"' && r[1] == '"')
                *w++ = *r++;
            else if (quoted && *r == '"')
                quoted = 0;
            else if (!quoted && *r == ',')
                break;
            else
                *w++ = *r;
        }
        const int more = *r == ',';
        *w++ = '\0';
        if (!more)
            break;
        r++;
    }
    return n;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* The column a CSV header names "text" (0 when none: column 0 is the path). */
static size_t header_text_column(char *header)
{
    char *f[256];
    const size_t n = csv_fields(header, f, 256);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(trim(f[i]), "text"))
            return i;
    return 0;
}

/* One CSV entry: the path, its labels, and column `text_col` (when not 0) its text. */
static int csv_line(labelled_set *set, const char *manifest, char *line, const char *origin,
                    size_t text_col)
{
    char *f[256];
    size_t n = csv_fields(line, f, 256);
    char *path = trim(f[0]);
    if (!*path) {
        fprintf(stderr, "clipmod: %s: no path\n", origin);
        return -1;
    }
    labelled_item *it = add_item(set, entry_path(manifest, path, strlen(path)), origin);
    if (!it || !it->path)
        return -1;
    for (size_t i = 1; i < n; i++) {
        if (i == text_col) {
            if (set_text(it, f[i], strlen(f[i])))
                return -1;
            continue;
        }
        char *label = trim(f[i]);
        if (*label && add_name(it, label, strlen(label)))
            return -1;
    }
    return 0;
}

/* The optional "text" string of a JSONL entry (null: none); 0, or -1 (printed). */
static int jsonl_text(labelled_item *it, const json_t *o, const char *origin)
{
    const json_t *t = json_object_get(o, "text");
    if (!t || json_is_null(t))
        return 0;
    if (!json_is_string(t)) {
        fprintf(stderr, "clipmod: %s: \"text\" must be a string\n", origin);
        return -1;
    }
    return set_text(it, json_string_value(t), json_string_length(t));
}

static int jsonl_line(labelled_set *set, const char *manifest, const char *line, const char *origin)
{
    json_error_t jerr;
    /* NULs are allowed for the text (any bytes); a path or label must not hold one. */
    json_t *o = json_loads(line, JSON_ALLOW_NUL, &jerr), *labels = json_object_get(o, "labels"), *v;
    const char *path = json_string_value(json_object_get(o, "path"));
    size_t i;
    int rc = -1;
    if (!o)
        fprintf(stderr, "clipmod: %s: not JSON: %s\n", origin, jerr.text);
    else if (!path || !*path || strlen(path) != json_string_length(json_object_get(o, "path")))
        fprintf(stderr, "clipmod: %s: no \"path\" string (without NUL)\n", origin);
    else if (labels && !json_is_array(labels))
        fprintf(stderr, "clipmod: %s: \"labels\" must be an array of strings\n", origin);
    else
        rc = 0;
    labelled_item *it = rc ? NULL : add_item(set, entry_path(manifest, path, strlen(path)), origin);
    if (!rc && (!it || !it->path || jsonl_text(it, o, origin)))
        rc = -1;
    json_array_foreach(rc ? NULL : labels, i, v)
    {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
            fprintf(stderr, "clipmod: %s: label %zu is not a string (without NUL)\n", origin,
                    i + 1);
            rc = -1;
        } else if (add_name(it, json_string_value(v), json_string_length(v))) {
            rc = -1;
        }
        if (rc)
            break;
    }
    json_decref(o);
    return rc;
}

static int read_manifest(const char *path, labelled_set *set, int jsonl)
{
    FILE *f = fopen(path, "r");
    char *line = malloc(LABELLED_MAX_LINE + 2), origin[4200];
    int rc = 0, lineno = 0, seen = 0;
    size_t text_col = 0;
    if (!f || !line) {
        fprintf(stderr, "clipmod: %s: %s\n", path, f ? "out of memory" : strerror(errno));
        if (f)
            fclose(f);
        free(line);
        return -1;
    }
    while (fgets(line, LABELLED_MAX_LINE + 2, f)) {
        size_t len = strlen(line);
        lineno++;
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        if (len > LABELLED_MAX_LINE) {
            fprintf(stderr, "clipmod: %s: line longer than %d bytes\n", origin, LABELLED_MAX_LINE);
            rc = -1;
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *t = trim(line);
        if (!*t || *t == '#')
            continue;
        /* A CSV header is the first line that is not blank or a comment. */
        const int first = !seen++;
        if (!jsonl && first && !strncmp(t, "path,", 5)) {
            text_col = header_text_column(t);
            continue;
        }
        if (!jsonl && first && !strcmp(t, "path"))
            continue;
        if ((jsonl ? jsonl_line(set, path, t, origin) : csv_line(set, path, t, origin, text_col)))
            rc = -1; /* keep going: every bad line is reported */
    }
    fclose(f);
    free(line);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int labelled_read(const char *where, labelled_set *set)
{
    struct stat st;
    memset(set, 0, sizeof *set);
    if (stat(where, &st)) {
        fprintf(stderr, "clipmod: %s: %s\n", where, strerror(errno));
        return -1;
    }
    int rc;
    if (S_ISDIR(st.st_mode))
        rc = read_folder(where, set);
    else if (ends_with(where, ".csv") || ends_with(where, ".jsonl"))
        rc = read_manifest(where, set, ends_with(where, ".jsonl"));
    else {
        fprintf(stderr,
                "clipmod: %s: a labelled set is a folder (LABELLED/<label>/...) or a manifest "
                "named *.csv or *.jsonl\n",
                where);
        rc = -1;
    }
    if (!rc && !set->n) {
        fprintf(stderr, "clipmod: %s: no images\n", where);
        rc = -1;
    }
    return rc;
}

int labelled_resolve(labelled_set *set, const clipmod_engine *engine)
{
    const size_t nc = clipmod_engine_category_count(engine);
    int rc = 0;
    set->n_cats = nc;
    for (size_t i = 0; i < set->n; i++) {
        labelled_item *it = &set->items[i];
        it->labels = calloc(nc ? nc : 1, 1);
        if (!it->labels)
            return -1;
        for (size_t j = 0; j < it->n_names; j++) {
            const char *near = NULL;
            const long c = clipmod_engine_category_find(engine, it->names[j], &near);
            if (c >= 0) {
                it->labels[c] = 1;
                continue;
            }
            if (!strcmp(it->names[j], "clean"))
                continue;
            /* A folder's images share one name: report the folder once. */
            if (i && !strcmp(set->items[i - 1].origin, it->origin) &&
                set->items[i - 1].n_names == it->n_names &&
                !strcmp(set->items[i - 1].names[j], it->names[j]))
                continue;
            fprintf(stderr, "clipmod: %s: '%s' is not a category of the policy nor 'clean'",
                    it->origin, it->names[j]);
            if (near)
                fprintf(stderr, " (did you mean '%s'?)", near);
            fputc('\n', stderr);
            rc = -1;
        }
    }
    return rc;
}

void labelled_free(labelled_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        labelled_item *it = &set->items[i];
        for (size_t j = 0; j < it->n_names; j++)
            free(it->names[j]);
        free(it->names);
        free(it->path);
        free(it->origin);
        free(it->text);
        free(it->labels);
    }
    free(set->items);
    memset(set, 0, sizeof *set);
}
