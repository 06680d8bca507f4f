/*
 * test_files.h - small file helpers the cmocka unit tests share (header-only:
 * each test is one program).
 */
#ifndef CM_TEST_FILES_H
#define CM_TEST_FILES_H

#include <stdio.h>

/* The whole of `path` as a string (the caller frees); "" when it does not exist. */
static inline char *slurp(const char *path)
{
    char *s = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&s, &len), *f = fopen(path, "rb");
    assert_non_null(m);
    if (f) {
        int c;
        while ((c = fgetc(f)) != EOF)
            fputc(c, m);
        fclose(f);
    }
    fclose(m);
    return s;
}

#endif
