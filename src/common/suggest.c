/*
 * suggest.c - edit distance and "did you mean" (see suggest.h).
 *
 * A fixed 65x65 table on the stack: names longer than 64 bytes are not typos of
 * ours, and the bound keeps the cost constant for hostile input.
 */
#include "suggest.h"

#include <stdint.h>
#include <string.h>

size_t cm_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d[65][65];

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            unsigned v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1u < v)
                v = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < v)
                v = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1u < v)
                v = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)v;
        }
    }
    return d[la][lb];
}

const char *cm_suggest(const char *s, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3;

    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            continue;
        size_t d = cm_edit_distance(s, names[i]);
        if (d < best_d && d * 3 <= strlen(names[i]) && strcmp(s, names[i]) != 0) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}
