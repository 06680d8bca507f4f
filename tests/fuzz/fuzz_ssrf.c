/*
 * fuzz_ssrf.c - the SSRF guard's address parsing, classes and allow-list (src/lib/ssrf.c).
 *
 * The input is text, one item a line: every line but the last is offered to
 * cm_allow_add() as an operator's allow-fetch entry, the last is "ADDRESS [HOST]"
 * as fetch mode would ask the guard about it. Beyond memory safety the target checks
 * what the guard promises, and aborts when a promise is broken:
 *   - a parsed address formats to text that parses back to the same address;
 *   - without an allow-list only public addresses pass, and the class is stable;
 *   - an IPv4-mapped IPv6 address (::ffff:a.b.c.d) never passes where a.b.c.d does not;
 *   - an accepted network entry covers its own address, an accepted host name
 *     matches itself in any case and with a trailing dot.
 * The first 17 bytes are also read as a raw address (family byte + 16 bytes) so
 * classify/format see every bit pattern, not only what inet_pton produces.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ssrf.h"

/* Longer allow-lists and lines add nothing the short ones do not exercise. */
#define MAX_LINES 64

static void check(int ok)
{
    if (!ok)
        abort();
}

static void raw_address(const uint8_t *data, size_t size)
{
    cm_addr a;
    char text[64];

    if (size < 17)
        return;
    memset(&a, 0, sizeof a);
    a.family = data[0] & 1 ? AF_INET6 : AF_INET;
    memcpy(a.b, data + 1, 16);
    if (a.family == AF_INET)
        memset(a.b + 4, 0, 12);
    cm_addr_kind k = cm_addr_classify(&a);
    check((unsigned)k < CM_ADDR__COUNT);
    cm_addr_format(&a, text, sizeof text);
    cm_addr back;
    check(cm_addr_parse(text, &back) == 0);
    check(back.family == a.family && !memcmp(back.b, a.b, sizeof a.b));
    check(cm_ssrf_allowed(NULL, NULL, &a, NULL) == (k == CM_ADDR_PUBLIC));
}

/* The entry that cm_allow_add() just accepted must be honoured. */
static void check_entry(const cm_allow *list, const char *entry)
{
    cm_addr a;
    char buf[80];
    const char *slash = strchr(entry, '/');
    size_t n = slash ? (size_t)(slash - entry) : strlen(entry);

    if (n < sizeof buf) {
        memcpy(buf, entry, n);
        buf[n] = '\0';
        if (!cm_addr_parse(buf, &a)) {
            check(cm_allow_has_addr(list, &a));
            check(cm_ssrf_allowed(list, NULL, &a, NULL));
            return;
        }
    }
    /* A host name: matched in any case, with or without its root dot. */
    size_t len = strlen(entry);
    char *upper = malloc(len + 2);
    if (!upper)
        abort();
    for (size_t i = 0; i < len; i++)
        upper[i] = (char)toupper((unsigned char)entry[i]);
    upper[len] = '\0';
    check(cm_allow_has_host(list, entry));
    check(cm_allow_has_host(list, upper));
    if (len && entry[len - 1] != '.') {
        upper[len] = '.';
        upper[len + 1] = '\0';
        check(cm_allow_has_host(list, upper));
    }
    free(upper);
}

/* Whether an IPv6 network on the list (not an IPv4 one) covers `a` itself. */
static int v6_net_covers(const cm_allow *list, const cm_addr *a)
{
    cm_allow only6 = {0};
    int found = 0;

    for (size_t i = 0; list && i < list->n_nets && !found; i++) {
        if (list->nets[i].addr.family != AF_INET6)
            continue;
        only6.nets = &list->nets[i];
        only6.n_nets = 1;
        found = cm_allow_has_addr(&only6, a);
    }
    return found;
}

/*
 * An IPv4 address written inside IPv6 (compatible, translated, 6to4, Teredo) is
 * never public; behind the NAT64 well-known prefix it is exactly as public as itself.
 */
static void embeddings(const cm_addr *v4, cm_addr_kind k)
{
    static const struct {
        unsigned char prefix[12];
        int at; /* where the IPv4 bytes go */
    } forms[] = {
        {{0}, 12},                                        /* ::a.b.c.d */
        {{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}, 12}, /* ::ffff:0:a.b.c.d */
        {{0x20, 0x02}, 2},                                /* 2002:AABB:CCDD:: */
        {{0x20, 0x01, 0, 0}, 12},                         /* Teredo, client at the end */
    };
    cm_addr e;

    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        memset(&e, 0, sizeof e);
        e.family = AF_INET6;
        memcpy(e.b, forms[i].prefix, sizeof forms[i].prefix);
        memcpy(e.b + forms[i].at, v4->b, 4);
        check(cm_addr_classify(&e) != CM_ADDR_PUBLIC);
    }
    memset(&e, 0, sizeof e);
    e.family = AF_INET6;
    e.b[1] = 0x64;
    e.b[2] = 0xff;
    e.b[3] = 0x9b;
    memcpy(e.b + 12, v4->b, 4);
    check((cm_addr_classify(&e) == CM_ADDR_PUBLIC) == (k == CM_ADDR_PUBLIC));
}

static void query(const cm_allow *list, char *line)
{
    cm_addr a, back;
    char text[64];
    char *host = strchr(line, ' ');

    if (host)
        *host++ = '\0';
    if (cm_addr_parse(line, &a))
        return;
    cm_addr_kind k = cm_addr_classify(&a), k2;
    cm_addr_format(&a, text, sizeof text);
    check(cm_addr_parse(text, &back) == 0 && back.family == a.family &&
          !memcmp(back.b, a.b, sizeof a.b));
    check(cm_ssrf_allowed(NULL, host, &a, &k2) == (k == CM_ADDR_PUBLIC) && k2 == k);
    int allowed = cm_ssrf_allowed(list, host, &a, NULL);
    if (!allowed)
        check(k != CM_ADDR_PUBLIC);

    /* The IPv4-mapped spelling of an IPv4 address inherits no trust of its own. */
    if (a.family == AF_INET) {
        cm_addr m;
        embeddings(&a, k);
        memset(&m, 0, sizeof m);
        m.family = AF_INET6;
        m.b[10] = m.b[11] = 0xff;
        memcpy(m.b + 12, a.b, 4);
        check(cm_addr_classify(&m) != CM_ADDR_PUBLIC);
        if (cm_ssrf_allowed(list, NULL, &m, NULL) && !cm_ssrf_allowed(list, NULL, &a, NULL))
            check(v6_net_covers(list, &m));
    }
    /* Any sockaddr carrying it classifies the same. */
    if (a.family == AF_INET) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, a.b, 4);
        check(cm_addr_from_sockaddr((struct sockaddr *)&sin, sizeof sin, &back) == 0);
    } else {
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof sin6);
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, a.b, 16);
        check(cm_addr_from_sockaddr((struct sockaddr *)&sin6, sizeof sin6, &back) == 0);
    }
    check(cm_addr_classify(&back) == k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cm_allow *list = NULL;
    char *text = fuzz_cstr(data, size);
    char *lines[MAX_LINES];
    size_t n = 0;

    raw_address(data, size);
    /* Split into lines (an embedded NUL ends the text, as it would a C string). */
    for (char *p = text; n < MAX_LINES;) {
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        if (cm_allow_add(&list, lines[i]) == CLIPMOD_OK)
            check_entry(list, lines[i]);
    }
    query(list, lines[n - 1]);
    cm_allow_free(list);
    free(text);
    return 0;
}
