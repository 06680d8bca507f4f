/*
 * scan_select.c - which files `clipmod scan` takes.
 *
 * Owns the clamscan selection habits: --exclude/--include (file names) and
 * --exclude-dir/--include-dir (directories), each a POSIX extended regular
 * expression matched anywhere in the whole path as clamscan does (so `\.txt$`,
 * not `*.txt`); --file-list; and the magic sniff that lets a directory walk skip
 * sidecar files (a .json or .txt beside the photos) instead of failing the run.
 */
#include "scan_select.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "dynbuf.h"

/* A path longer than this cannot be opened (PATH_MAX): such a line is refused, not grown. */
#define FILE_LIST_MAX_LINE 4096

int scan_select_add(scan_select *s, int kind, const char *pattern)
{
    char msg[256];
    int err;

    if (s->n[kind] == SEL_MAX_PATTERNS) {
        fprintf(stderr, "clipmod: more than %d patterns of one kind\n", SEL_MAX_PATTERNS);
        return -1;
    }
    err = regcomp(&s->re[kind][s->n[kind]], pattern, REG_EXTENDED | REG_NOSUB);
    if (err) {
        regerror(err, &s->re[kind][s->n[kind]], msg, sizeof msg);
        fprintf(stderr, "clipmod: bad pattern '%s': %s\n", pattern, msg);
        return -1;
    }
    s->n[kind]++;
    return 0;
}

void scan_select_free(scan_select *s)
{
    if (!s)
        return;
    for (int k = 0; k < SEL__COUNT; k++)
        for (size_t i = 0; i < s->n[k]; i++)
            regfree(&s->re[k][i]);
    memset(s, 0, sizeof *s);
}

static int any_match(const scan_select *s, int kind, const char *path)
{
    for (size_t i = 0; i < s->n[kind]; i++)
        if (regexec(&s->re[kind][i], path, 0, NULL, 0) == 0)
            return 1;
    return 0;
}

/* Excludes win; with includes given, only what one of them matches is taken. */
static int selected(const scan_select *s, int exclude, int include, const char *path)
{
    if (any_match(s, exclude, path))
        return 0;
    return s->n[include] == 0 || any_match(s, include, path);
}

int scan_select_file(const scan_select *s, const char *path)
{
    return selected(s, SEL_EXCLUDE, SEL_INCLUDE, path);
}

int scan_select_dir(const scan_select *s, const char *path)
{
    return selected(s, SEL_EXCLUDE_DIR, SEL_INCLUDE_DIR, path);
}

/*
 * The formats worth handing to the library, and the unsafe ones it refuses by
 * name (SVG, PDF): those stay inputs so that the refusal is reported, not hidden.
 */
static int is_image_magic(const unsigned char *b, size_t n)
{
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return 1; /* JPEG */
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return 1;
    if (n >= 4 && !memcmp(b, "GIF8", 4))
        return 1;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return 1;
    if (n >= 2 && !memcmp(b, "BM", 2))
        return 1;
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4)))
        return 1;
    if (n >= 12 && !memcmp(b + 4, "ftyp", 4))
        return 1; /* AVIF, HEIF */
    if (n >= 4 && !memcmp(b, "%PDF", 4))
        return 1;
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(b + i, "<svg", 4))
            return 1;
    return 0;
}

int scan_sniff_image(const char *path)
{
    unsigned char buf[512];
    FILE *f = fopen(path, "rb");
    size_t n;

    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return is_image_magic(buf, n);
}

void scan_file_list_free(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

static int push_line(char ***list, size_t *n, size_t *cap, const char *line, size_t len)
{
    if (*n + 1 >= *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        char **grown = realloc(*list, c * sizeof *grown);
        if (!grown)
            return -1;
        *list = grown;
        *cap = c;
    }
    (*list)[*n] = strndup(line, len);
    if (!(*list)[*n])
        return -1;
    (*list)[++*n] = NULL;
    return 0;
}

/*
 * One line of f into `line` (emptied first), without its newline: 1, or 0 at the
 * end of the file, or CM_DBUF_E_* when the line passes the buffer's cap (or memory
 * runs out); the rest of such a line is not read.
 */
static int read_line(FILE *f, cm_dbuf *line)
{
    int c = getc(f);

    cm_dbuf_reset(line);
    if (c == EOF)
        return 0;
    while (c != EOF && c != '\n') {
        int rc = cm_dbuf_addc(line, (char)c);
        if (rc != CM_DBUF_OK)
            return rc;
        c = getc(f);
    }
    return 1;
}

/* Read the lines of f into *list; 0, or -1 with the error printed. */
static int read_list(FILE *f, const char *file, char ***list, size_t *n, size_t *cap)
{
    cm_dbuf line;
    size_t lineno = 0;
    int rc;

    cm_dbuf_init(&line, FILE_LIST_MAX_LINE);
    for (;;) {
        rc = read_line(f, &line);
        if (rc <= 0)
            break;
        lineno++;
        const char *p = cm_dbuf_ptr(&line);
        size_t len = cm_dbuf_len(&line);
        while (len && p[len - 1] == '\r')
            len--;
        if (len && push_line(list, n, cap, p, len) != 0) {
            rc = CM_DBUF_E_NOMEM;
            break;
        }
    }
    cm_dbuf_free(&line);
    if (rc == CM_DBUF_E_TOOBIG)
        fprintf(stderr, "clipmod: --file-list %s: line %zu is longer than %d bytes\n", file,
                lineno + 1, FILE_LIST_MAX_LINE);
    else if (rc < 0)
        fprintf(stderr, "clipmod: out of memory\n");
    else if (ferror(f))
        fprintf(stderr, "clipmod: --file-list %s: %s\n", file, strerror(errno));
    return rc < 0 || ferror(f) ? -1 : 0;
}

char **scan_file_list(const char *file, size_t *n)
{
    int from_stdin = !strcmp(file, "-");
    FILE *f = from_stdin ? stdin : fopen(file, "r");
    char **list = NULL;
    size_t cap = 0;

    *n = 0;
    if (!f) {
        fprintf(stderr, "clipmod: --file-list %s: %s\n", file, strerror(errno));
        return NULL;
    }
    /* The array is NULL-terminated from the start, so an empty list is not NULL. */
    if (push_line(&list, n, &cap, "", 0) != 0) {
        fprintf(stderr, "clipmod: out of memory\n");
        scan_file_list_free(list);
        list = NULL;
    } else {
        free(list[0]);
        list[0] = NULL;
        *n = 0;
        if (read_list(f, file, &list, n, &cap) != 0) {
            scan_file_list_free(list);
            list = NULL;
        }
    }
    if (!from_stdin)
        fclose(f);
    return list;
}
