/*
 * ssrf.h - which network addresses fetch mode may connect to (internal).
 *
 * Pure functions, no I/O: fetch.c asks them about every address curl is about to
 * connect to, and the unit tests ask them about every range.
 */
#ifndef CM_SSRF_H
#define CM_SSRF_H

#include <stddef.h>
#include <sys/socket.h>

#include "clipmod/clipmod.h"

/* An IPv4 (bytes 0-3 used) or IPv6 address, in network byte order. */
typedef struct cm_addr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char b[16];
} cm_addr;

/* What an address is; everything but CM_ADDR_PUBLIC is refused by default. */
typedef enum cm_addr_kind {
    CM_ADDR_PUBLIC,
    CM_ADDR_UNSPECIFIED,   /* 0.0.0.0/8 ("this network"), :: */
    CM_ADDR_LOOPBACK,      /* 127.0.0.0/8, ::1 */
    CM_ADDR_PRIVATE,       /* RFC 1918, fc00::/7 */
    CM_ADDR_SHARED,        /* 100.64.0.0/10, carrier-grade NAT */
    CM_ADDR_LINK_LOCAL,    /* 169.254.0.0/16 (cloud metadata), fe80::/10 */
    CM_ADDR_MULTICAST,     /* 224.0.0.0/4, ff00::/8 */
    CM_ADDR_BROADCAST,     /* 255.255.255.255 */
    CM_ADDR_DOCUMENTATION, /* 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20 */
    CM_ADDR_BENCHMARK,     /* 198.18.0.0/15, 2001:2::/48 */
    CM_ADDR_V4_IN_V6,      /* IPv4-mapped, -compatible and -translated IPv6, 6to4, Teredo */
    CM_ADDR_NAT64,         /* 64:ff9b::/96 holding a non-public IPv4; 64:ff9b:1::/48 */
    CM_ADDR_RESERVED,      /* 240/4, 192.0.0/24, fec0::/10, 100::/64, unallocated IPv6 ... */
    CM_ADDR__COUNT
} cm_addr_kind;

/* "a loopback address", ... : completes "127.0.0.1 is ___". */
const char *cm_addr_kind_name(cm_addr_kind k);

/*
 * Parse a numeric address in its standard spelling only (inet_pton: no "127.1",
 * no octal); IPv6 may be in brackets. Returns 0, or -1 if `text` is not one.
 */
int cm_addr_parse(const char *text, cm_addr *out);

/* The address of a socket address; -1 for a family other than IPv4 and IPv6. */
int cm_addr_from_sockaddr(const struct sockaddr *sa, size_t len, cm_addr *out);

/* The address in standard notation (at least 46 bytes in `buf`). */
void cm_addr_format(const cm_addr *a, char *buf, size_t size);

/* Classify `a` by the IANA special-purpose registries. */
cm_addr_kind cm_addr_classify(const cm_addr *a);

/*
 * The operator's exceptions to the guard: networks (CIDR) and host names. Built
 * before an engine is compiled, read-only afterwards.
 */
typedef struct cm_net {
    cm_addr addr; /* host bits cleared */
    int prefix;
} cm_net;

typedef struct cm_allow {
    cm_net *nets;
    size_t n_nets;
    char **hosts; /* lowercase, without a trailing dot */
    size_t n_hosts;
} cm_allow;

/*
 * Add `what` to *list (created when NULL): "10.1.0.0/16", "127.0.0.1" (a /32),
 * "::1/128", "[fd00::]/8", or a host name ("images.internal", matched exactly,
 * case-insensitively). Host bits under the prefix are ignored. Refused
 * (CLIPMOD_E_INVALID_ARG): empty text, a bad prefix, IPv6 zones, names that are not
 * DNS names and names whose last label is all digits ("127.1" is an address in a
 * browser's eyes, so it is neither accepted as a name nor as a network here).
 */
clipmod_error cm_allow_add(cm_allow **list, const char *what);

/* Free the list. Accepts NULL. */
void cm_allow_free(cm_allow *list);

/* 1 if host name `host` (any case, trailing dot or not) is on the list. */
int cm_allow_has_host(const cm_allow *list, const char *host);

/* 1 if `a` is in one of the networks (an IPv4-mapped IPv6 address counts as its IPv4). */
int cm_allow_has_addr(const cm_allow *list, const cm_addr *a);

/*
 * The guard: may fetch mode connect to `a` for a URL whose host is `host` (may be
 * NULL)? Public addresses always; others only if the host name or a network on
 * `list` (may be NULL) allows them. Returns 1 or 0; *kind (may be NULL) receives
 * the address's class either way.
 */
int cm_ssrf_allowed(const cm_allow *list, const char *host, const cm_addr *a, cm_addr_kind *kind);

#endif
