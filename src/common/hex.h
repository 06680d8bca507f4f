/*
 * hex.h - the value of one hexadecimal digit, for every decoder of escapes
 * (percent-encoding in clipmodd, HTML character references in the milter and the
 * tokenizer). Header-only so that the library can use it too.
 */
#ifndef CM_HEX_H
#define CM_HEX_H

/* 0..15 for '0'-'9', 'a'-'f', 'A'-'F'; -1 for anything else. */
static inline int cm_hex_digit(unsigned long c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

#endif
