/*
 * test_ssrf.c - the SSRF guard's address classes and the operator's allow-list.
 *
 * Every special-purpose range of the IANA registries is probed at its edges, and
 * every IPv6 spelling of an IPv4 address is checked to inherit no trust from it.
 * The allow-list is parsed from the strings an operator would write. Last, the
 * guard is tried where it works, inside libcurl's connect, on URLs that lead to
 * port 1 of this host: traffic that could never leave loopback even if it failed.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fetch.h"
#include "ssrf.h"

static cm_addr_kind kind_of(const char *text)
{
    cm_addr a;
    if (cm_addr_parse(text, &a))
        fail_msg("%s does not parse", text);
    return cm_addr_classify(&a);
}

#define KIND(text, k)                                                                              \
    do {                                                                                           \
        cm_addr_kind got_ = kind_of(text);                                                         \
        if (got_ != (k))                                                                           \
            fail_msg("%s: %s, not %s", text, cm_addr_kind_name(got_), cm_addr_kind_name(k));       \
    } while (0)

static void ipv4_ranges(void **state)
{
    KIND("0.0.0.0", CM_ADDR_UNSPECIFIED);
    KIND("0.255.255.255", CM_ADDR_UNSPECIFIED);
    KIND("1.0.0.0", CM_ADDR_PUBLIC);
    KIND("9.255.255.255", CM_ADDR_PUBLIC);
    KIND("10.0.0.1", CM_ADDR_PRIVATE);
    KIND("10.255.255.255", CM_ADDR_PRIVATE);
    KIND("11.0.0.0", CM_ADDR_PUBLIC);
    KIND("100.63.255.255", CM_ADDR_PUBLIC);
    KIND("100.64.0.0", CM_ADDR_SHARED);
    KIND("100.127.255.255", CM_ADDR_SHARED);
    KIND("100.128.0.0", CM_ADDR_PUBLIC);
    KIND("126.255.255.255", CM_ADDR_PUBLIC);
    KIND("127.0.0.1", CM_ADDR_LOOPBACK);
    KIND("127.255.255.254", CM_ADDR_LOOPBACK);
    KIND("128.0.0.0", CM_ADDR_PUBLIC);
    KIND("169.254.169.254", CM_ADDR_LINK_LOCAL);
    KIND("169.254.0.0", CM_ADDR_LINK_LOCAL);
    KIND("169.255.0.0", CM_ADDR_PUBLIC);
    KIND("172.15.255.255", CM_ADDR_PUBLIC);
    KIND("172.16.0.0", CM_ADDR_PRIVATE);
    KIND("172.31.255.255", CM_ADDR_PRIVATE);
    KIND("172.32.0.0", CM_ADDR_PUBLIC);
    KIND("192.0.0.8", CM_ADDR_RESERVED);
    KIND("192.0.2.1", CM_ADDR_DOCUMENTATION);
    KIND("192.0.3.0", CM_ADDR_PUBLIC);
    KIND("192.88.99.1", CM_ADDR_RESERVED);
    KIND("192.167.255.255", CM_ADDR_PUBLIC);
    KIND("192.168.0.1", CM_ADDR_PRIVATE);
    KIND("192.169.0.0", CM_ADDR_PUBLIC);
    KIND("198.17.255.255", CM_ADDR_PUBLIC);
    KIND("198.18.0.0", CM_ADDR_BENCHMARK);
    KIND("198.19.255.255", CM_ADDR_BENCHMARK);
    KIND("198.20.0.0", CM_ADDR_PUBLIC);
    KIND("198.51.100.7", CM_ADDR_DOCUMENTATION);
    KIND("203.0.113.9", CM_ADDR_DOCUMENTATION);
    KIND("223.255.255.255", CM_ADDR_PUBLIC);
    KIND("224.0.0.1", CM_ADDR_MULTICAST);
    KIND("239.255.255.255", CM_ADDR_MULTICAST);
    KIND("240.0.0.1", CM_ADDR_RESERVED);
    KIND("255.255.255.254", CM_ADDR_RESERVED);
    KIND("255.255.255.255", CM_ADDR_BROADCAST);
    KIND("8.8.8.8", CM_ADDR_PUBLIC);
    KIND("93.184.215.14", CM_ADDR_PUBLIC);
}

static void ipv6_ranges(void **state)
{
    KIND("::", CM_ADDR_UNSPECIFIED);
    KIND("::1", CM_ADDR_LOOPBACK);
    KIND("[::1]", CM_ADDR_LOOPBACK);
    KIND("fc00::1", CM_ADDR_PRIVATE);
    KIND("fdff:ffff::1", CM_ADDR_PRIVATE);
    KIND("fe80::1", CM_ADDR_LINK_LOCAL);
    KIND("febf::1", CM_ADDR_LINK_LOCAL);
    KIND("fec0::1", CM_ADDR_RESERVED);
    KIND("ff02::1", CM_ADDR_MULTICAST);
    KIND("2001:db8::1", CM_ADDR_DOCUMENTATION);
    KIND("3fff::1", CM_ADDR_DOCUMENTATION);
    KIND("2001:2::1", CM_ADDR_BENCHMARK);
    KIND("2001:10::1", CM_ADDR_RESERVED);
    KIND("100::1", CM_ADDR_RESERVED);
    KIND("5f00::1", CM_ADDR_RESERVED);
    KIND("4000::1", CM_ADDR_RESERVED); /* unallocated */
    KIND("2606:4700:4700::1111", CM_ADDR_PUBLIC);
    KIND("2a00:1450:4001:80b::200e", CM_ADDR_PUBLIC);
    KIND("2001:200::1", CM_ADDR_PUBLIC); /* just past 2001::/23 */
}

/* Every IPv6 way of writing an IPv4 address is refused, whatever that address is. */
static void ipv4_inside_ipv6(void **state)
{
    KIND("::ffff:127.0.0.1", CM_ADDR_V4_IN_V6);
    KIND("[::ffff:127.0.0.1]", CM_ADDR_V4_IN_V6);
    KIND("::ffff:7f00:1", CM_ADDR_V4_IN_V6);
    KIND("::ffff:8.8.8.8", CM_ADDR_V4_IN_V6);
    KIND("::127.0.0.1", CM_ADDR_V4_IN_V6); /* compatible */
    KIND("::10.0.0.1", CM_ADDR_V4_IN_V6);
    KIND("::ffff:0:a00:1", CM_ADDR_V4_IN_V6);                       /* translated */
    KIND("2002:7f00:1::1", CM_ADDR_V4_IN_V6);                       /* 6to4 */
    KIND("2001:0:4136:e378:8000:63bf:3fff:fdd2", CM_ADDR_V4_IN_V6); /* Teredo */
    /* NAT64 reaches the IPv4 address it carries: allowed only when that one is public. */
    KIND("64:ff9b::7f00:1", CM_ADDR_NAT64);
    KIND("64:ff9b::10.0.0.1", CM_ADDR_NAT64);
    KIND("64:ff9b::169.254.169.254", CM_ADDR_NAT64);
    KIND("64:ff9b::8.8.8.8", CM_ADDR_PUBLIC);
    KIND("64:ff9b:1::8.8.8.8", CM_ADDR_NAT64); /* local-use prefix */
}

static void parse_is_strict(void **state)
{
    cm_addr a;
    /* Browsers read these as 127.0.0.1; the allow-list parser does not read them at all.
     * (In URLs curl normalises them, and the guard sees the address it connects to.) */
    assert_int_equal(cm_addr_parse("127.1", &a), -1);
    assert_int_equal(cm_addr_parse("2130706433", &a), -1);
    assert_int_equal(cm_addr_parse("0177.0.0.1", &a), -1);
    assert_int_equal(cm_addr_parse("0x7f.0.0.1", &a), -1);
    assert_int_equal(cm_addr_parse("localhost", &a), -1);
    assert_int_equal(cm_addr_parse("", &a), -1);
    assert_int_equal(cm_addr_parse("[127.0.0.1]", &a), -1);
    assert_int_equal(cm_addr_parse("::1", &a), 0);
    assert_int_equal(a.family, AF_INET6);
    assert_int_equal(cm_addr_parse("10.0.0.1", &a), 0);
    assert_int_equal(a.family, AF_INET);

    char text[64];
    assert_int_equal(cm_addr_parse("::ffff:127.0.0.1", &a), 0);
    cm_addr_format(&a, text, sizeof text);
    assert_string_equal(text, "::ffff:127.0.0.1");
}

static void from_sockaddr(void **state)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    struct sockaddr other = {.sa_family = AF_UNIX};
    cm_addr a;

    inet_pton(AF_INET, "169.254.169.254", &v4.sin_addr);
    assert_int_equal(cm_addr_from_sockaddr((struct sockaddr *)&v4, sizeof v4, &a), 0);
    assert_int_equal(cm_addr_classify(&a), CM_ADDR_LINK_LOCAL);
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &v6.sin6_addr);
    assert_int_equal(cm_addr_from_sockaddr((struct sockaddr *)&v6, sizeof v6, &a), 0);
    assert_int_equal(cm_addr_classify(&a), CM_ADDR_V4_IN_V6);
    assert_int_equal(cm_addr_from_sockaddr(&other, sizeof other, &a), -1);
    /* A truncated length is not read past. */
    assert_int_equal(cm_addr_from_sockaddr((struct sockaddr *)&v6, sizeof v4, &a), -1);
}

static int allowed(const cm_allow *l, const char *host, const char *addr)
{
    cm_addr a;
    if (cm_addr_parse(addr, &a))
        fail_msg("%s does not parse", addr);
    return cm_ssrf_allowed(l, host, &a, NULL);
}

static void allow_list_parsing(void **state)
{
    cm_allow *l = NULL;
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/-1",
        "10.0.0.0/8x",
        "::1/129",
        "fe80::1%eth0",
        "127.1",
        "2130706433",
        "0177.0.0.1",
        "host name",
        "exa_mple..com",
        "-/8",
        "http://x.example",
        "x.example/24",
        "a..b",
        ".",
        "1.2.3.4.5",
        "[::1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (cm_allow_add(&l, bad[i]) != CLIPMOD_E_INVALID_ARG)
            fail_msg("'%s' was accepted", bad[i]);
    assert_null(l);

    assert_int_equal(cm_allow_add(&l, "127.0.0.1/32"), CLIPMOD_OK);
    assert_int_equal(cm_allow_add(&l, "10.1.2.3/16"), CLIPMOD_OK); /* host bits ignored */
    assert_int_equal(cm_allow_add(&l, "192.168.7.7"), CLIPMOD_OK); /* a /32 */
    assert_int_equal(cm_allow_add(&l, "[fd00::]/8"), CLIPMOD_OK);
    assert_int_equal(cm_allow_add(&l, "::1/128"), CLIPMOD_OK);
    assert_int_equal(cm_allow_add(&l, "Images.Internal."), CLIPMOD_OK);
    assert_int_equal(cm_allow_add(&l, "localhost"), CLIPMOD_OK);
    assert_int_equal(cm_allow_add(&l, "cdn-1.corp_net.example"), CLIPMOD_OK);
    assert_int_equal(l->n_nets, 5);
    assert_int_equal(l->n_hosts, 3);
    assert_string_equal(l->hosts[0], "images.internal");

    assert_true(cm_allow_has_addr(l, &(cm_addr){0}) == 0);
    assert_true(allowed(l, NULL, "127.0.0.1"));
    assert_false(allowed(l, NULL, "127.0.0.2"));
    assert_true(allowed(l, NULL, "10.1.200.9"));
    assert_false(allowed(l, NULL, "10.2.0.1"));
    assert_true(allowed(l, NULL, "192.168.7.7"));
    assert_false(allowed(l, NULL, "192.168.7.8"));
    assert_true(allowed(l, NULL, "fdab::5"));
    assert_true(allowed(l, NULL, "::1"));
    /* The mapped form of an allowed IPv4 address is that address. */
    assert_true(allowed(l, NULL, "::ffff:127.0.0.1"));
    assert_true(allowed(l, NULL, "::ffff:10.1.0.1"));
    assert_false(allowed(l, NULL, "::ffff:10.2.0.1"));
    /* Host names: exact, any case, root dot or not; any address they resolve to. */
    assert_true(allowed(l, "images.internal", "10.9.9.9"));
    assert_true(allowed(l, "IMAGES.INTERNAL.", "169.254.169.254"));
    assert_false(allowed(l, "cdn.images.internal", "10.9.9.9"));
    assert_false(allowed(l, "images.internal.evil.example", "10.9.9.9"));
    assert_false(allowed(l, "images.interna", "10.9.9.9"));
    assert_false(allowed(l, NULL, "10.9.9.9"));
    /* Public addresses need no list. */
    assert_true(allowed(NULL, NULL, "8.8.8.8"));
    assert_false(allowed(NULL, "localhost", "127.0.0.1"));
    cm_allow_free(l);
    cm_allow_free(NULL);

    /* Opening everything is possible, and deliberate. */
    l = NULL;
    assert_int_equal(cm_allow_add(&l, "0.0.0.0/0"), CLIPMOD_OK);
    assert_true(allowed(l, NULL, "169.254.169.254"));
    assert_false(allowed(l, NULL, "fe80::1"));
    cm_allow_free(l);
}

static void kind_names(void **state)
{
    for (int k = 0; k < CM_ADDR__COUNT; k++)
        assert_non_null(cm_addr_kind_name((cm_addr_kind)k));
    assert_string_equal(cm_addr_kind_name(CM_ADDR_LOOPBACK), "a loopback address");
    assert_string_equal(cm_addr_kind_name(CM_ADDR__COUNT), "an unknown address");
}

/*
 * With the early check of address literals switched off, only the socket-level
 * guard stands between these URLs and 127.0.0.1:1 (or [::1]:1). Had it let one
 * through, curl would have connected and met a closed port: "network-error". A
 * "blocked-address" answer therefore shows that the guard saw the address curl
 * made of each spelling, before any connection.
 */
static void socket_guard_sees_curls_address(void **state)
{
    static const char *const urls[] = {
        "http://127.0.0.1:1/", "http://2130706433:1/", "http://0177.0.0.1:1/",
        "http://127.1:1/",     "http://0x7f.1:1/",     "http://[::ffff:127.0.0.1]:1/",
        "http://[::1]:1/",     "http://localhost:1/",  "http://0.0.0.0:1/",
        "http://0:1/",         "http://[::]:1/",
    };
    enum { N = sizeof urls / sizeof urls[0] };
    cm_fetched out[N];
    cm_fetch_opts o = {.max_bytes = 1000,
                       .connect_ms = 2000,
                       .timeout_ms = 5000,
                       .max_redirects = 1,
                       .parallel = 4,
                       .socket_guard_only = 1};

    assert_int_equal(cm_fetch(&o, urls, N, out), CLIPMOD_OK);
    for (size_t i = 0; i < N; i++) {
        if (out[i].reason != CLIPMOD_REASON_BLOCKED_ADDRESS)
            fail_msg("%s: %s: %s", urls[i], clipmod_reason_name(out[i].reason), out[i].why);
        assert_null(out[i].data);
    }
    cm_fetched_free(out, N);

    /* Allowed by the operator, the same spellings pass the guard and meet the closed port. */
    cm_allow *l = NULL;
    assert_int_equal(cm_allow_add(&l, "127.0.0.0/8"), CLIPMOD_OK);
    assert_int_equal(cm_allow_add(&l, "localhost"), CLIPMOD_OK);
    o.allow = l;
    static const char *const open_urls[] = {"http://2130706433:1/", "http://127.1:1/",
                                            "http://localhost:1/"};
    assert_int_equal(cm_fetch(&o, open_urls, 3, out), CLIPMOD_OK);
    for (size_t i = 0; i < 3; i++)
        if (out[i].reason != CLIPMOD_REASON_NETWORK)
            fail_msg("%s: %s: %s", open_urls[i], clipmod_reason_name(out[i].reason), out[i].why);
    cm_fetched_free(out, 3);
    cm_allow_free(l);
}

/* URLs refused before any transfer starts: their reasons and sentences. */
static void urls_refused_up_front(void **state)
{
    static const struct {
        const char *url;
        clipmod_reason reason;
        const char *words;
    } cases[] = {
        {"ftp://example.com/cat.png", CLIPMOD_REASON_BAD_URL, "only http and https"},
        {"file:///etc/passwd", CLIPMOD_REASON_BAD_URL, "only http and https"},
        {"gopher://example.com/", CLIPMOD_REASON_BAD_URL, "only http and https"},
        {"example.com/cat.png", CLIPMOD_REASON_BAD_URL, "not a valid absolute URL"},
        {"http://exa mple.com/", CLIPMOD_REASON_BAD_URL, "not a valid absolute URL"},
        {"", CLIPMOD_REASON_BAD_URL, "not a valid absolute URL"},
        {"http://169.254.169.254/latest/meta-data/", CLIPMOD_REASON_BLOCKED_ADDRESS,
         "169.254.169.254 is a link-local address"},
        {"http://10.0.0.1/", CLIPMOD_REASON_BLOCKED_ADDRESS, "10.0.0.1 is a private address"},
        {"http://[fd12::1]/", CLIPMOD_REASON_BLOCKED_ADDRESS, "fd12::1 is a private address"},
        {"https://100.64.1.1/", CLIPMOD_REASON_BLOCKED_ADDRESS, "carrier-grade NAT"},
        {"http://224.0.0.1/", CLIPMOD_REASON_BLOCKED_ADDRESS, "multicast"},
        {"http://255.255.255.255/", CLIPMOD_REASON_BLOCKED_ADDRESS, "broadcast"},
        {"http://192.0.2.1/", CLIPMOD_REASON_BLOCKED_ADDRESS, "documentation"},
        {"http://198.18.0.1/", CLIPMOD_REASON_BLOCKED_ADDRESS, "benchmarking"},
        {"http://[64:ff9b::a00:1]/", CLIPMOD_REASON_BLOCKED_ADDRESS, "NAT64"},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    const char *urls[N];
    cm_fetched out[N];
    char *long_url = malloc(9000);
    const cm_fetch_opts o = {.max_bytes = 1000,
                             .connect_ms = 1000,
                             .timeout_ms = 1000,
                             .max_redirects = 1,
                             .parallel = 8};

    for (size_t i = 0; i < N; i++)
        urls[i] = cases[i].url;
    assert_int_equal(cm_fetch(&o, urls, N, out), CLIPMOD_OK);
    for (size_t i = 0; i < N; i++) {
        if (out[i].reason != cases[i].reason || !strstr(out[i].why, cases[i].words))
            fail_msg("%s: %s: %s", urls[i], clipmod_reason_name(out[i].reason), out[i].why);
    }
    cm_fetched_free(out, N);

    assert_non_null(long_url);
    memcpy(long_url, "http://example.com/", 19);
    memset(long_url + 19, 'a', 9000 - 20);
    long_url[8999] = '\0';
    urls[0] = long_url;
    assert_int_equal(cm_fetch(&o, urls, 1, out), CLIPMOD_OK);
    assert_int_equal(out[0].reason, CLIPMOD_REASON_BAD_URL);
    assert_non_null(strstr(out[0].why, "longer than"));
    free(long_url);

    urls[0] = NULL;
    assert_int_equal(cm_fetch(&o, urls, 1, out), CLIPMOD_E_INVALID_ARG);
    assert_int_equal(cm_fetch(&o, urls, 0, out), CLIPMOD_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipv4_ranges),
        cmocka_unit_test(ipv6_ranges),
        cmocka_unit_test(ipv4_inside_ipv6),
        cmocka_unit_test(parse_is_strict),
        cmocka_unit_test(from_sockaddr),
        cmocka_unit_test(allow_list_parsing),
        cmocka_unit_test(kind_names),
        cmocka_unit_test(socket_guard_sees_curls_address),
        cmocka_unit_test(urls_refused_up_front),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
