/*
 * context.c - context text: cleaning and windows (see context.h).
 *
 * Cleaning works on code points decoded strictly (no overlong forms, surrogates or
 * values past U+10FFFF), because the tokenizer refuses invalid UTF-8 and because a
 * right-to-left override or a run of zero-width spaces must not hide words from the
 * prompts. Windows are cut at spaces: CLIP's tokenizer never makes a token across
 * white space, so a window's tokens are the sum of its words' tokens.
 */
#include "context.h"

#include <string.h>

#include "common.h"

/* Decode one code point at s[0..n); its length in *used, or -1 (one byte used) if invalid. */
static long decode_utf8(const unsigned char *s, size_t n, size_t *used)
{
    unsigned c = s[0];
    int extra;
    long cp, min;
    *used = 1;
    if (c < 0x80)
        return c;
    if ((c & 0xe0) == 0xc0) {
        extra = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        extra = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        extra = 3, cp = c & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if ((size_t)extra >= n)
        return -1;
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *used = (size_t)extra + 1;
    return cp;
}

static size_t encode_utf8(long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Characters that change how text is shown without being text: dropped. */
static int invisible(long cp)
{
    return (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff ||
           cp == 0x061c || cp == 0x180e || cp == 0x00ad;
}

/* Line breaks separate pieces of context (a file name, a caption): see make_windows. */
static int is_line_break(long cp)
{
    return cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' || cp == 0x85 || cp == 0x2028 ||
           cp == 0x2029;
}

static int is_space(long cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' ||
           cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* The length of `in` cut to `max` bytes, not in the middle of a UTF-8 sequence. */
static size_t cut_at_boundary(const unsigned char *in, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* Back off over continuation bytes to the lead byte, then drop it too if its
     * sequence does not fit: a cut sequence is not the sender's invalid UTF-8. */
    size_t back = 0;
    while (n > 0 && back < 3 && (in[n] & 0xc0) == 0x80)
        n--, back++;
    return n;
}

clipmod_error cm_ctx_clean(const char *in, size_t len, size_t max_bytes, char **out,
                           size_t *out_len, unsigned *cleaned, int *cut)
{
    const unsigned char *s = (const unsigned char *)in;
    if (!out || !out_len || !cleaned || !cut || (!in && len))
        return CLIPMOD_E_INVALID_ARG;
    const size_t n = cut_at_boundary(s, len, max_bytes);
    *cut = n < len;
    *cleaned = 0;
    /* Output never outgrows the input: U+FFFD (3 bytes) replaces a run of at least
     * one byte, so allow 3 per input byte only for that; +1 for the NUL. */
    char *o = cm_alloc(n * 3 + 1);
    if (!o)
        return CLIPMOD_E_NOMEM;
    size_t k = 0;
    int bad_run = 0;
    char sep = 0; /* white space seen since the last character out: ' ' or '\n' */
    for (size_t i = 0; i < n;) {
        size_t used;
        long cp = decode_utf8(s + i, n - i, &used);
        i += used;
        if (cp >= 0 && is_space(cp)) {
            sep = is_line_break(cp) || sep == '\n' ? '\n' : ' ';
            bad_run = 0;
            continue;
        }
        /* Dropped characters are not there at all; controls count as white space. */
        if (cp >= 0 && invisible(cp)) {
            *cleaned |= CLIPMOD_CONTEXT_INVISIBLE;
            continue;
        }
        if (cp >= 0 && (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))) {
            *cleaned |= CLIPMOD_CONTEXT_CONTROL;
            sep = sep ? sep : ' ';
            bad_run = 0;
            continue;
        }
        if (sep && k)
            o[k++] = sep;
        if (cp < 0) {
            *cleaned |= CLIPMOD_CONTEXT_INVALID_UTF8;
            if (!bad_run || sep)
                k += encode_utf8(0xfffd, o + k);
            bad_run = 1;
            sep = 0;
            continue;
        }
        sep = 0;
        bad_run = 0;
        k += encode_utf8(cp, o + k);
    }
    o[k] = '\0';
    *out = o;
    *out_len = k;
    return CLIPMOD_OK;
}

/* Tokens of one word (no spaces); (size_t)-1 on failure. */
static size_t word_tokens(const cm_tokenizer *tok, const char *w, size_t len, int32_t **ids,
                          size_t *cap)
{
    size_t n = 0;
    int truncated = 0;
    /* Byte-level BPE makes at most one token per byte of the text it encodes, but
     * NFC and lower-casing may grow the text (U+023A is 2 bytes, its lower case 3):
     * room for three times the bytes, and a word that still does not fit counts as
     * longer than any window. */
    const size_t room = 3 * len + 2;
    if (room > *cap) {
        int32_t *grown = cm_realloc(*ids, room * sizeof **ids);
        if (!grown)
            return (size_t)-1;
        *ids = grown;
        *cap = room;
    }
    if (cm_tokenizer_encode(tok, w, len, *ids, room, &n, &truncated, NULL))
        return (size_t)-1;
    return truncated ? room : n - 2;
}

/* Append window [start, start+len) to t if there is room; count it either way. */
static clipmod_error add_window(cm_ctx_text *t, size_t start, size_t len, size_t max_windows)
{
    if (!len)
        return CLIPMOD_OK;
    t->windows_total++;
    if (t->n_windows == max_windows) {
        t->cut = 1;
        return CLIPMOD_OK;
    }
    cm_ctx_window *grown = cm_realloc(t->win, (t->n_windows + 1) * sizeof *grown);
    if (!grown)
        return CLIPMOD_E_NOMEM;
    t->win = grown;
    t->win[t->n_windows++] = (cm_ctx_window){start, len};
    return CLIPMOD_OK;
}

/* The end of the longest piece of [at, end) from `at` that fits one window. */
static size_t piece_end(const cm_tokenizer *tok, const char *text, size_t at, size_t end,
                        int32_t **ids, size_t *cap)
{
    /* A token covers a few bytes: 32 per token is far past any BPE vocabulary's. */
    size_t lo = at + 1,
           hi = end - at > 32 * CM_CTX_WINDOW_TOKENS ? at + 32 * CM_CTX_WINDOW_TOKENS : end;
    /* lo: the end of the first character, which fits whatever it is (a few tokens). */
    while (lo < end && ((unsigned char)text[lo] & 0xc0) == 0x80)
        lo++;
    if (hi < lo)
        hi = lo;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2, n;
        while (mid > lo && ((unsigned char)text[mid] & 0xc0) == 0x80)
            mid--;
        n = word_tokens(tok, text + at, mid - at, ids, cap);
        if (n == (size_t)-1)
            return 0;
        if (n <= CM_CTX_WINDOW_TOKENS && mid > lo)
            lo = mid;
        else if (n <= CM_CTX_WINDOW_TOKENS)
            break;
        else
            hi = mid - 1;
    }
    while (lo < end && ((unsigned char)text[lo] & 0xc0) == 0x80)
        lo++; /* never inside a character: one character is one window at worst */
    return lo;
}

/*
 * A word longer than a window (a URL, a run without spaces) is cut into the longest
 * pieces that fit, at UTF-8 boundaries: BPE on a piece may make more tokens than the
 * piece had inside the word, so each cut is measured, not estimated.
 */
static clipmod_error long_word(const cm_tokenizer *tok, cm_ctx_text *t, size_t start, size_t len,
                               size_t max_windows, int32_t **ids, size_t *cap)
{
    const size_t end = start + len;
    for (size_t at = start; at < end;) {
        const size_t to = piece_end(tok, t->text, at, end, ids, cap);
        if (!to)
            return CLIPMOD_E_NOMEM;
        clipmod_error rc = add_window(t, at, to - at, max_windows);
        if (rc)
            return rc;
        at = to;
    }
    return CLIPMOD_OK;
}

/* The first space or line break in text[i, len), or len. */
static size_t next_sep(const char *text, size_t i, size_t len)
{
    while (i < len && text[i] != ' ' && text[i] != '\n')
        i++;
    return i;
}

/*
 * Cut t->text into windows of at most CM_CTX_WINDOW_TOKENS tokens at spaces. A line
 * break ends a window: programs put each piece of context (the file name, the alt
 * text, the subject, the body) on its own line, so that a camera's file name does
 * not dilute a caption's words in one embedding.
 */
static clipmod_error make_windows(const cm_tokenizer *tok, cm_ctx_text *t, size_t max_windows)
{
    int32_t *ids = NULL;
    size_t cap = 0, win_start = 0, win_tokens = 0, i = 0;
    clipmod_error rc = CLIPMOD_OK;
    while (!rc && i < t->len) {
        const size_t end = next_sep(t->text, i, t->len);
        const size_t n = word_tokens(tok, t->text + i, end - i, &ids, &cap);
        if (n == (size_t)-1) {
            rc = CLIPMOD_E_NOMEM;
            break;
        }
        if (win_tokens && win_tokens + n > CM_CTX_WINDOW_TOKENS) {
            rc = add_window(t, win_start, i - 1 - win_start, max_windows);
            win_tokens = 0;
        }
        if (!rc && n > CM_CTX_WINDOW_TOKENS) {
            rc = long_word(tok, t, i, end - i, max_windows, &ids, &cap);
        } else if (!rc) {
            if (!win_tokens)
                win_start = i;
            win_tokens += n;
        }
        if (!rc && win_tokens && end < t->len && t->text[end] == '\n') {
            rc = add_window(t, win_start, end - win_start, max_windows);
            win_tokens = 0;
        }
        i = end + 1;
    }
    if (!rc && win_tokens)
        rc = add_window(t, win_start, t->len - win_start, max_windows);
    cm_free(ids);
    return rc;
}

clipmod_error cm_ctx_prepare(const cm_tokenizer *tok, const char *in, size_t len, size_t max_bytes,
                             size_t max_windows, cm_ctx_text *out)
{
    if (!out)
        return CLIPMOD_E_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (!tok || (!in && len))
        return CLIPMOD_E_INVALID_ARG;
    out->bytes = len;
    clipmod_error rc =
        cm_ctx_clean(in, len, max_bytes, &out->text, &out->len, &out->cleaned, &out->cut);
    if (!rc)
        rc = make_windows(tok, out, max_windows);
    if (rc)
        cm_ctx_text_free(out);
    return rc;
}

void cm_ctx_text_free(cm_ctx_text *t)
{
    if (!t)
        return;
    cm_free(t->text);
    cm_free(t->win);
    t->text = NULL;
    t->win = NULL;
    t->n_windows = 0;
}
