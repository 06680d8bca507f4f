/*
 * fuzz_daemon_context.c - clipmodd's reading of context texts (src/daemon/context.c, and
 * the metadata picking of src/daemon/tusd_hook.c).
 *
 * The input is read four ways, as clipmodd reads what clients send with images:
 * as an X-Clipmod-Context header value (percent-decoding), as a text to cut under
 * a cap, as pieces to join into one context, and as a tusd hook request whose
 * upload metadata gives the context. Invariants checked (abort on failure):
 *   - decoding never grows the text; decoding in place gives the same bytes; any
 *     bytes percent-encoded (as clients are told to) decode back to themselves;
 *     a '%' not followed by two hex digits is refused;
 *   - a cut prefix is never longer than its cap, never cuts more than one
 *     character's worth (3 bytes) short of it, and valid UTF-8 stays valid;
 *   - a joined context never passes its buffer's maximum, is the pieces joined by
 *     newlines when nothing was cut, and keeps what it had when a piece is cut;
 *   - each metadata value picked is a non-empty string of the hook's MetaData
 *     under its key ("name" standing in for a missing "filename").
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "tusd_hook.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

/* 1 if s[0..n) is valid UTF-8 (shortest forms, no surrogates, at most U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len = c < 0x80                ? 1
                                 : c >= 0xC2 && c < 0xE0 ? 2
                                 : c >= 0xE0 && c < 0xF0 ? 3
                                 : c >= 0xF0 && c < 0xF5 ? 4
                                                         : 0;
        if (!len || i + len > n)
            return 0;
        unsigned cp = len == 1 ? c : c & (0x3F >> (len - 1));
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void fuzz_unescape(const char *in, size_t n)
{
    char *out = malloc(n + 1), *same = malloc(n + 1), *enc = malloc(3 * n + 1);
    size_t len = 0, len2 = 0;
    int bad = 0;

    check(out && same && enc);
    for (size_t i = 0; i < n; i++)
        if (in[i] == '%' && (i + 2 >= n || !is_hex(in[i + 1]) || !is_hex(in[i + 2])))
            bad = 1;
        else if (in[i] == '%')
            i += 2;
    int rc = context_unescape(in, n, out, &len);
    check(rc == (bad ? -1 : 0) && len <= n && (rc == 0 || len == 0));
    memcpy(same, in, n);
    check(context_unescape(same, n, same, &len2) == rc && len2 == len && !memcmp(same, out, len));
    /* Every byte encoded, as a client does: the text comes back whole. */
    for (size_t i = 0; i < n; i++) {
        static const char hex[] = "0123456789ABCDEF";
        enc[3 * i] = '%';
        enc[3 * i + 1] = hex[(unsigned char)in[i] >> 4];
        enc[3 * i + 2] = hex[(unsigned char)in[i] & 15];
    }
    check(context_unescape(enc, 3 * n, enc, &len2) == 0 && len2 == n && !memcmp(enc, in, n));
    free(out);
    free(same);
    free(enc);
}

static void fuzz_prefix(const char *s, size_t n)
{
    int utf8 = valid_utf8((const unsigned char *)s, n);
    size_t caps[] = {0, 1, 2, 3, n / 2, n / 3, n ? n - 1 : 0, n, n + 5};

    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        size_t p = context_utf8_prefix(s, n, caps[k]);
        check(p <= n && (p == n || p <= caps[k]) && p + 3 >= (caps[k] < n ? caps[k] : n));
        check(!utf8 || valid_utf8((const unsigned char *)s, p));
    }
}

/* Pieces split at 0xFF bytes, joined under a maximum taken from the first byte. */
static void fuzz_join(const char *s, size_t n)
{
    cm_dbuf b, whole;
    size_t max = n ? (unsigned char)s[0] * 3u : 0, start = 0;
    char *had = malloc(max + 1);
    int cut = 0;

    check(had != NULL);
    cm_dbuf_init(&b, max);
    cm_dbuf_init(&whole, SIZE_MAX);
    for (size_t i = 0; i <= n; i++) {
        if (i < n && (unsigned char)s[i] != 0xFF)
            continue;
        size_t before = b.len, len = i - start;
        memcpy(had, cm_dbuf_ptr(&b), before);
        int rc = context_add(&b, s + start, len);
        check((rc == 0 || rc == 1) && b.len <= max && b.len >= before);
        check(!memcmp(had, cm_dbuf_ptr(&b), before));
        check(rc == 1 || b.len == before + (len && before ? 1 : 0) + len);
        cut |= rc;
        check(context_add(&whole, s + start, len) == 0);
        start = i + 1;
    }
    /* Nothing cut: the pieces joined by newlines, byte for byte. */
    check(cut || (b.len == whole.len && !memcmp(cm_dbuf_ptr(&b), cm_dbuf_ptr(&whole), b.len)));
    cm_dbuf_free(&b);
    cm_dbuf_free(&whole);
    free(had);
}

static void fuzz_metadata(const char *s, size_t n)
{
    static const char *const keys[TUSD_CONTEXT_KEYS] = {"filename", "caption", "description",
                                                        "alt",      "title",   "text"};
    char err[512];
    tusd_hook h;

    if (tusd_hook_parse(s, n, &h, err, sizeof err) == TUSD_HOOK_OK) {
        json_t *meta = json_object_get(
            json_object_get(json_object_get((json_t *)h.root, "Event"), "Upload"), "MetaData");
        for (size_t i = 0; i < TUSD_CONTEXT_KEYS; i++) {
            const char *v = json_string_value(json_object_get(meta, keys[i]));
            if (i == 0 && (!v || !*v))
                v = json_string_value(json_object_get(meta, "name"));
            check(h.context[i] == (v && *v ? v : NULL));
        }
    }
    tusd_hook_clear(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;

    fuzz_unescape(s, size);
    fuzz_prefix(s, size);
    fuzz_join(s, size);
    fuzz_metadata(s, size);
    return 0;
}
