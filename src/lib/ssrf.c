/*
 * ssrf.c - the SSRF guard's knowledge: address classes and the operator's allow-list.
 *
 * Owns the answer to "may fetch mode connect there?". A URL from an untrusted
 * message must not make clipmod a proxy into the network it runs in (the cloud
 * metadata service, an admin page on localhost, the office LAN), so only
 * addresses that are globally routable are allowed unless the operator says
 * otherwise. The ranges are those of the IANA IPv4 and IPv6 special-purpose
 * address registries, plus every IPv6 form that carries an IPv4 address, since
 * ::ffff:127.0.0.1 is 127.0.0.1 to the kernel. fetch.c applies this to the
 * address curl is about to connect to, so every spelling of a host (names,
 * "2130706433", "0177.0.0.1", "127.1") meets the same check.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ssrf.h"

/* One special-purpose block: `len` leading bits of `prefix`. */
typedef struct block {
    unsigned char prefix[16];
    int len;
    cm_addr_kind kind;
} block;

/* First match wins, so a block inside a larger one comes first. */
static const block v4_blocks[] = {
    {{255, 255, 255, 255}, 32, CM_ADDR_BROADCAST},
    {{0}, 8, CM_ADDR_UNSPECIFIED},
    {{10}, 8, CM_ADDR_PRIVATE},
    {{100, 64}, 10, CM_ADDR_SHARED},
    {{127}, 8, CM_ADDR_LOOPBACK},
    {{169, 254}, 16, CM_ADDR_LINK_LOCAL},
    {{172, 16}, 12, CM_ADDR_PRIVATE},
    {{192, 0, 0}, 24, CM_ADDR_RESERVED}, /* IETF protocol assignments */
    {{192, 0, 2}, 24, CM_ADDR_DOCUMENTATION},
    {{192, 88, 99}, 24, CM_ADDR_RESERVED}, /* the former 6to4 relay anycast */
    {{192, 168}, 16, CM_ADDR_PRIVATE},
    {{198, 18}, 15, CM_ADDR_BENCHMARK},
    {{198, 51, 100}, 24, CM_ADDR_DOCUMENTATION},
    {{203, 0, 113}, 24, CM_ADDR_DOCUMENTATION},
    {{224}, 4, CM_ADDR_MULTICAST},
    {{240}, 4, CM_ADDR_RESERVED},
};

static const block v6_blocks[] = {
    {{0}, 128, CM_ADDR_UNSPECIFIED},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, CM_ADDR_LOOPBACK},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, CM_ADDR_V4_IN_V6}, /* mapped */
    {{0}, 96, CM_ADDR_V4_IN_V6},                                        /* compatible */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}, 96, CM_ADDR_V4_IN_V6}, /* translated */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, CM_ADDR_NAT64},                   /* local-use */
    {{1, 0, 0, 0, 0, 0, 0, 0}, 64, CM_ADDR_RESERVED},                   /* discard-only */
    {{0x20, 0x01, 0, 0}, 32, CM_ADDR_V4_IN_V6},                         /* Teredo */
    {{0x20, 0x01, 0, 2, 0, 0}, 48, CM_ADDR_BENCHMARK},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, CM_ADDR_DOCUMENTATION},
    {{0x20, 0x01}, 23, CM_ADDR_RESERVED}, /* IETF protocol assignments */
    {{0x20, 0x02}, 16, CM_ADDR_V4_IN_V6}, /* 6to4 */
    {{0x3f, 0xff}, 20, CM_ADDR_DOCUMENTATION},
    {{0x5f, 0x00}, 16, CM_ADDR_RESERVED}, /* segment routing (SRv6) SIDs */
    {{0xfc}, 7, CM_ADDR_PRIVATE},         /* unique local */
    {{0xfe, 0x80}, 10, CM_ADDR_LINK_LOCAL},
    {{0xfe, 0xc0}, 10, CM_ADDR_RESERVED}, /* the former site-local */
    {{0xff}, 8, CM_ADDR_MULTICAST},
};

static const char *const kind_names[CM_ADDR__COUNT] = {
    [CM_ADDR_PUBLIC] = "a public address",
    [CM_ADDR_UNSPECIFIED] = "an unspecified (\"this host\") address",
    [CM_ADDR_LOOPBACK] = "a loopback address",
    [CM_ADDR_PRIVATE] = "a private address",
    [CM_ADDR_SHARED] = "a carrier-grade NAT (shared) address",
    [CM_ADDR_LINK_LOCAL] = "a link-local address",
    [CM_ADDR_MULTICAST] = "a multicast address",
    [CM_ADDR_BROADCAST] = "the broadcast address",
    [CM_ADDR_DOCUMENTATION] = "a documentation address",
    [CM_ADDR_BENCHMARK] = "a benchmarking address",
    [CM_ADDR_V4_IN_V6] = "an IPv6 form of an IPv4 address",
    [CM_ADDR_NAT64] = "a NAT64 address of a non-public IPv4 address",
    [CM_ADDR_RESERVED] = "a reserved address",
};

const char *cm_addr_kind_name(cm_addr_kind k)
{
    return (unsigned)k < CM_ADDR__COUNT ? kind_names[k] : "an unknown address";
}

static int prefix_match(const unsigned char *a, const unsigned char *prefix, int len)
{
    int whole = len / 8, rest = len % 8;
    if (memcmp(a, prefix, (size_t)whole))
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (prefix[whole] & mask);
}

static cm_addr_kind lookup(const block *blocks, size_t n, const unsigned char *a)
{
    for (size_t i = 0; i < n; i++)
        if (prefix_match(a, blocks[i].prefix, blocks[i].len))
            return blocks[i].kind;
    return CM_ADDR_PUBLIC;
}

cm_addr_kind cm_addr_classify(const cm_addr *a)
{
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};

    if (a->family == AF_INET)
        return lookup(v4_blocks, sizeof v4_blocks / sizeof v4_blocks[0], a->b);
    if (a->family != AF_INET6)
        return CM_ADDR_RESERVED;
    /* The well-known NAT64 prefix reaches the IPv4 address it carries: judge that one. */
    if (!memcmp(a->b, nat64, sizeof nat64)) {
        cm_addr_kind k = lookup(v4_blocks, sizeof v4_blocks / sizeof v4_blocks[0], a->b + 12);
        return k == CM_ADDR_PUBLIC ? CM_ADDR_PUBLIC : CM_ADDR_NAT64;
    }
    cm_addr_kind k = lookup(v6_blocks, sizeof v6_blocks / sizeof v6_blocks[0], a->b);
    if (k != CM_ADDR_PUBLIC)
        return k;
    /* Global unicast is 2000::/3; the rest of the space is unallocated. */
    return (a->b[0] & 0xe0) == 0x20 ? CM_ADDR_PUBLIC : CM_ADDR_RESERVED;
}

int cm_addr_parse(const char *text, cm_addr *out)
{
    char buf[64];
    size_t n = strlen(text);

    memset(out, 0, sizeof *out);
    if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
        if (n - 2 >= sizeof buf)
            return -1;
        memcpy(buf, text + 1, n - 2);
        buf[n - 2] = '\0';
        out->family = AF_INET6;
        return inet_pton(AF_INET6, buf, out->b) == 1 ? 0 : -1;
    }
    if (inet_pton(AF_INET, text, out->b) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out->b) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -1;
}

int cm_addr_from_sockaddr(const struct sockaddr *sa, size_t len, cm_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        out->family = AF_INET;
        memcpy(out->b, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        out->family = AF_INET6;
        memcpy(out->b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

void cm_addr_format(const cm_addr *a, char *buf, size_t size)
{
    if (!inet_ntop(a->family, a->b, buf, (socklen_t)size) && size)
        buf[0] = '\0';
}

/* ------------------------------------------------------------------------ */
/* The allow-list                                                           */
/* ------------------------------------------------------------------------ */

/* A DNS name: labels of letters, digits, '-' and '_', 1 to 63 bytes, 253 in all. */
static int is_host_name(const char *s, size_t n)
{
    size_t label = 0;
    int last_all_digits = 1;

    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            last_all_digits = 1;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_')
            return 0;
        if (!isdigit(c))
            last_all_digits = 0;
        if (++label > 63)
            return 0;
    }
    /* "127.1", "2130706433": numbers that URL parsers read as IPv4 addresses. */
    return label > 0 && !last_all_digits;
}

static void clear_host_bits(cm_addr *a, int prefix)
{
    int bytes = a->family == AF_INET ? 4 : 16;
    for (int i = 0; i < bytes; i++) {
        int keep = prefix - 8 * i;
        if (keep <= 0)
            a->b[i] = 0;
        else if (keep < 8)
            a->b[i] &= (unsigned char)(0xff << (8 - keep));
    }
}

static int parse_net(const char *what, cm_net *out)
{
    char buf[80];
    const char *slash = strchr(what, '/');
    size_t n = slash ? (size_t)(slash - what) : strlen(what);
    int max;

    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, what, n);
    buf[n] = '\0';
    if (cm_addr_parse(buf, &out->addr))
        return -1;
    max = out->addr.family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        const char *p = slash + 1;
        int v = 0;
        if (!*p || strlen(p) > 3)
            return -1;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return -1;
            v = v * 10 + (*p - '0');
        }
        if (v > max)
            return -1;
        out->prefix = v;
    }
    clear_host_bits(&out->addr, out->prefix);
    return 0;
}

clipmod_error cm_allow_add(cm_allow **list, const char *what)
{
    cm_allow *l = *list;
    cm_net net;
    char *host = NULL;
    size_t n;

    if (!what || !*what)
        return CLIPMOD_E_INVALID_ARG;
    n = strlen(what);
    if (parse_net(what, &net)) {
        /* Not a network: a host name, with its optional root dot dropped. */
        if (n > 1 && what[n - 1] == '.')
            n--;
        if (strchr(what, '/') || strchr(what, ':') || !is_host_name(what, n))
            return CLIPMOD_E_INVALID_ARG;
        host = cm_strndup(what, n);
        if (!host)
            return CLIPMOD_E_NOMEM;
        for (char *p = host; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    if (!l) {
        l = cm_calloc(1, sizeof *l);
        if (!l) {
            cm_free(host);
            return CLIPMOD_E_NOMEM;
        }
    }
    *list = l;
    if (host) {
        char **grown = cm_realloc(l->hosts, (l->n_hosts + 1) * sizeof *grown);
        if (!grown) {
            cm_free(host);
            return CLIPMOD_E_NOMEM;
        }
        l->hosts = grown;
        l->hosts[l->n_hosts++] = host;
    } else {
        cm_net *grown = cm_realloc(l->nets, (l->n_nets + 1) * sizeof *grown);
        if (!grown)
            return CLIPMOD_E_NOMEM;
        l->nets = grown;
        l->nets[l->n_nets++] = net;
    }
    return CLIPMOD_OK;
}

void cm_allow_free(cm_allow *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_hosts; i++)
        cm_free(l->hosts[i]);
    cm_free(l->hosts);
    cm_free(l->nets);
    cm_free(l);
}

int cm_allow_has_host(const cm_allow *l, const char *host)
{
    size_t n = host ? strlen(host) : 0;

    if (!l || !n)
        return 0;
    if (n > 1 && host[n - 1] == '.')
        n--;
    for (size_t i = 0; i < l->n_hosts; i++)
        if (strlen(l->hosts[i]) == n && !strncasecmp(l->hosts[i], host, n))
            return 1;
    return 0;
}

int cm_allow_has_addr(const cm_allow *l, const cm_addr *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    cm_addr v4;

    if (!l)
        return 0;
    /* ::ffff:10.1.2.3 is 10.1.2.3 on the wire: an IPv4 network covers it. */
    if (a->family == AF_INET6 && !memcmp(a->b, mapped, sizeof mapped)) {
        memset(&v4, 0, sizeof v4);
        v4.family = AF_INET;
        memcpy(v4.b, a->b + 12, 4);
        if (cm_allow_has_addr(l, &v4))
            return 1;
    }
    for (size_t i = 0; i < l->n_nets; i++) {
        const cm_net *net = &l->nets[i];
        if (net->addr.family == a->family && prefix_match(a->b, net->addr.b, net->prefix))
            return 1;
    }
    return 0;
}

int cm_ssrf_allowed(const cm_allow *l, const char *host, const cm_addr *a, cm_addr_kind *kind)
{
    cm_addr_kind k = cm_addr_classify(a);
    if (kind)
        *kind = k;
    return k == CM_ADDR_PUBLIC || cm_allow_has_host(l, host) || cm_allow_has_addr(l, a);
}
