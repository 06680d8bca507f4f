/*
 * test_common_redis_conn.c - the one Redis URL of cache.redis and worker.redis
 * (src/common/redis_conn.c): what is accepted and what each part becomes, and every
 * refusal with its sentence naming the setting (a long URL quoted in part).
 * Dialling is tested against a real redis-server by daemon_cache.sh and
 * daemon_worker.sh; here only a refused connection (a closed loopback port).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "redis_conn.h"

static void accepted(void **state)
{
    cm_redis_addr a;
    char err[256];

    assert_int_equal(cm_redis_parse_url("redis://127.0.0.1", "x", &a, err, sizeof err), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 0);
    assert_int_equal(cm_redis_parse_url("redis://cache.example:6380/", "x", &a, err, sizeof err),
                     0);
    assert_string_equal(a.host, "cache.example");
    assert_int_equal(a.port, 6380);
    assert_int_equal(cm_redis_parse_url("redis://[::1]:7000/15", "x", &a, err, sizeof err), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7000);
    assert_int_equal(a.db, 15);
    assert_int_equal(cm_redis_parse_url("redis://h/3", "x", &a, err, sizeof err), 0);
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 3);
    (void)state;
}

static void refused(const char *url, const char *words)
{
    cm_redis_addr a;
    char err[256] = "";

    assert_int_equal(cm_redis_parse_url(url, "worker.redis", &a, err, sizeof err), -1);
    if (strncmp(err, "worker.redis: ", 14) || !strstr(err, words))
        fail_msg("%s: '%s' does not name the setting and say '%s'", url ? url : "NULL", err, words);
}

static void refusals(void **state)
{
    refused(NULL, "is not a redis:// URL");
    refused("http://h:6379", "is not a redis:// URL");
    refused("rediss://h", "is not a redis:// URL");
    refused("redis://", "expected redis://host[:port][/db]");
    refused("redis://:6379", "expected redis://host[:port][/db]");
    refused("redis://user:pw@h:6379", "expected redis://host[:port][/db]");
    refused("redis://[::1", "expected redis://host[:port][/db]");
    refused("redis://h:0", "bad port or database number");
    refused("redis://h:65536", "bad port or database number");
    refused("redis://h:port", "bad port or database number");
    refused("redis://h:6379/x", "bad port or database number");
    refused("redis://h:6379/1/2", "bad port or database number");
    refused("redis://h:6379?db=1", "bad port or database number");
    char long_host[300];
    memset(long_host, 'h', sizeof long_host);
    memcpy(long_host, "redis://", 8);
    long_host[sizeof long_host - 1] = '\0';
    refused(long_host, "expected redis://host[:port][/db]");
    (void)state;
}

/* Port 1 on loopback: nothing listens there, the connection is refused at once. */
static void dial_refused(void **state)
{
    cm_redis_addr a;
    char err[256] = "";

    if (!cm_redis_available())
        skip();
    assert_int_equal(cm_redis_parse_url("redis://127.0.0.1:1", "x", &a, err, sizeof err), 0);
    assert_null(cm_redis_dial(&a, 1000, err, sizeof err));
    assert_non_null(strstr(err, "cannot connect to Redis"));
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepted),
        cmocka_unit_test(refusals),
        cmocka_unit_test(dial_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
