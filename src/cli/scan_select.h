/*
 * scan_select.h - which files `clipmod scan` takes: --include/--exclude patterns,
 * --file-list, and the magic sniff that tells images from sidecar files.
 */
#ifndef CLIPMOD_CLI_SCAN_SELECT_H
#define CLIPMOD_CLI_SCAN_SELECT_H

#include <regex.h>
#include <stddef.h>

enum { SEL_EXCLUDE, SEL_INCLUDE, SEL_EXCLUDE_DIR, SEL_INCLUDE_DIR, SEL__COUNT };

#define SEL_MAX_PATTERNS 64

typedef struct scan_select {
    regex_t re[SEL__COUNT][SEL_MAX_PATTERNS];
    size_t n[SEL__COUNT];
} scan_select;

/* Compile `pattern` (POSIX extended regex, as clamscan) into list `kind`; prints the error. */
int scan_select_add(scan_select *s, int kind, const char *pattern);
void scan_select_free(scan_select *s);

/* 1 when the file (or directory) at `path` is to be scanned (entered). */
int scan_select_file(const scan_select *s, const char *path);
int scan_select_dir(const scan_select *s, const char *path);

/* 1 when the file's first bytes are an image format's magic, 0 when not, -1 unreadable. */
int scan_sniff_image(const char *path);

/*
 * Read --file-list `file` (`-` for stdin): one path per line, empty lines ignored,
 * a line of at most 4096 bytes (a longer one fails the list, naming its number).
 * Returns a NULL-terminated array of strings (free with scan_file_list_free), or
 * NULL with the error printed.
 */
char **scan_file_list(const char *file, size_t *n);
void scan_file_list_free(char **list);

#endif
