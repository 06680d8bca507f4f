/*
 * context.c - decoding and joining the context texts of clipmodd's requests.
 *
 * Owns the byte-level rules of clipmodd(8) CONTEXT: the X-Clipmod-Context header
 * is percent-encoded (headers cannot carry newlines or raw UTF-8 safely), and an
 * image's context is its pieces (file name, text fields, header, tusd metadata,
 * scan-url texts) joined by newlines, most specific first, never past a cap and
 * never cut inside a character. Everything here reads untrusted bytes; the fuzz
 * target tests/fuzz/fuzz_daemon_context.c checks its promises.
 */
#include <string.h>

#include "context.h"
#include "hex.h"

int context_unescape(const char *in, size_t len, char *out, size_t *outlen)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t o = 0;

    *outlen = 0;
    for (size_t i = 0; i < len; i++) {
        if (u[i] != '%') {
            out[o++] = (char)u[i];
            continue;
        }
        int hi = i + 2 < len ? cm_hex_digit(u[i + 1]) : -1;
        int lo = i + 2 < len ? cm_hex_digit(u[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return -1;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    *outlen = o;
    return 0;
}

size_t context_utf8_prefix(const char *s, size_t n, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s;

    if (n <= cap)
        return n;
    /* s[cap] starts a character (or is no UTF-8 at all): the cut is clean there. */
    if ((u[cap] & 0xC0) != 0x80)
        return cap;
    /* A continuation byte: step back to its lead byte, if it is within three. */
    for (size_t back = 1; back <= 3 && back <= cap; back++) {
        unsigned char c = u[cap - back];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return want > back ? cap - back : cap;
    }
    return cap;
}

int context_add(cm_dbuf *b, const char *s, size_t n)
{
    size_t before = b->len, room = b->max - b->len, keep;
    int sep = before > 0;

    if (!n)
        return 0;
    if (room <= (size_t)sep)
        return 1;
    keep = context_utf8_prefix(s, n, room - (size_t)sep);
    if (!keep)
        return 1;
    if ((sep && cm_dbuf_addc(b, '\n') != CM_DBUF_OK) || cm_dbuf_addn(b, s, keep) != CM_DBUF_OK) {
        /* Out of memory: what b held stays, without a dangling newline. */
        b->len = before;
        if (b->s)
            b->s[before] = '\0';
        return -1;
    }
    return keep < n;
}
