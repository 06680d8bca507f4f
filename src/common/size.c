/*
 * size.c - parsing and formatting sizes and durations (see size.h).
 *
 * Digits are read by hand rather than with strtoull so that "-1", " 5", "+5" and
 * "0x10" are refused instead of silently wrapping or being read as something else.
 */
#include "size.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Read leading decimal digits into *v; returns the number of digits, -1 on overflow. */
static int read_digits(const char *s, uint64_t *v, const char **end)
{
    uint64_t x = 0;
    int n = 0;

    while (s[n] >= '0' && s[n] <= '9') {
        unsigned d = (unsigned)(s[n] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
        n++;
    }
    *v = x;
    *end = s + n;
    return n;
}

/*
 * The reason is one line (callers log it, or print it as one problem): the value
 * is shown with control characters as '?' and cut at 40 bytes, since it comes
 * from a configuration file or the command line ("10s\nlevel=error" must not
 * start a line of its own).
 */
static int fail(char *err, size_t errlen, const char *what, const char *s, const char *why)
{
    char shown[48];
    size_t n = 0;

    if (!err || !errlen)
        return -1;
    for (; s && s[n] && n < 40; n++)
        shown[n] = (unsigned char)s[n] < 0x20 || s[n] == 0x7f ? '?' : s[n];
    shown[n] = '\0';
    snprintf(err, errlen, "%s '%s%s': %s", what, s ? shown : "(null)", s && s[n] ? "..." : "", why);
    return -1;
}

static int size_shift(const char *u, unsigned *shift)
{
    static const char *const units[] = {"", "k", "m", "g", "t"};
    size_t n = strlen(u);

    /* "MB", "MiB" and "M" all mean the binary multiple; so do "B" and "". */
    if (n && (u[n - 1] == 'b' || u[n - 1] == 'B'))
        n--;
    if (n == 2 && (u[1] == 'i' || u[1] == 'I'))
        n = 1;
    if (n > 1)
        return -1;
    for (unsigned i = 0; i < 5; i++) {
        if ((n == 0 && i == 0) || (n == 1 && i > 0 && strncasecmp(u, units[i], 1) == 0)) {
            *shift = 10 * i;
            return 0;
        }
    }
    return -1;
}

int cm_parse_size(const char *s, uint64_t *out, char *err, size_t errlen)
{
    const char *end;
    uint64_t v;
    unsigned shift;

    if (!s || !*s)
        return fail(err, errlen, "size", s, "empty (write e.g. 25M)");
    int nd = read_digits(s, &v, &end);
    if (nd < 0)
        return fail(err, errlen, "size", s, "too large");
    if (nd == 0)
        return fail(err, errlen, "size", s, "must start with digits (e.g. 512k, 25M, 1G)");
    if (size_shift(end, &shift) < 0)
        return fail(err, errlen, "size", s, "unknown unit (use k, M, G or T, binary multiples)");
    if (shift && v > (UINT64_MAX >> shift))
        return fail(err, errlen, "size", s, "too large");
    *out = v << shift;
    return 0;
}

int cm_parse_duration_ms(const char *s, uint64_t *out_ms, char *err, size_t errlen)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *end;
    uint64_t v;

    if (!s || !*s)
        return fail(err, errlen, "duration", s, "empty (write e.g. 10s)");
    int nd = read_digits(s, &v, &end);
    if (nd < 0)
        return fail(err, errlen, "duration", s, "too large");
    if (nd == 0)
        return fail(err, errlen, "duration", s, "must start with digits (e.g. 500ms, 10s, 5m)");
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (v > UINT64_MAX / units[i].ms)
            return fail(err, errlen, "duration", s, "too large");
        *out_ms = v * units[i].ms;
        return 0;
    }
    return fail(err, errlen, "duration", s, "unknown unit (use ms, s, m, h or d)");
}

char *cm_format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const char units[] = "kMGT";
    int u = -1;

    while (u < 3 && bytes && (bytes & 1023) == 0) {
        bytes >>= 10;
        u++;
    }
    if (u < 0)
        snprintf(out, outlen, "%llu", (unsigned long long)bytes);
    else
        snprintf(out, outlen, "%llu%c", (unsigned long long)bytes, units[u]);
    return out;
}
