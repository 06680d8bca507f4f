/*
 * plugin_fixture.c - a plugin for test_plugin.c, good or bad on demand.
 *
 * Built three times: as plugin-fixture.so (exports clipmod_plugin_v1), with
 * FIXTURE_V2 as plugin-fixture-v2.so (exports only a future clipmod_plugin_v2) and
 * with FIXTURE_NO_ENTRY as plugin-fixture-nosym.so (exports no entry point). The
 * environment variable CM_FIXTURE_MODE, read each time the entry point runs, picks
 * a broken descriptor (see descriptor()), so one file covers every loader check.
 *
 * Configuration "log=FILE;tag=T;fail=MESSAGE": every callback appends a line to FILE
 * ("init T", "result T NAME", "fini T"), so the test sees calls and their order;
 * with fail=, init fails with MESSAGE.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <clipmod/plugin.h>

typedef struct fixture {
    char log[512], tag[64];
    atomic_int busy; /* set while on_result runs: two at once is an "overlap" */
} fixture;

static void log_line(const fixture *f, const char *fmt, const char *a, const char *b)
{
    char line[1024];
    int n = snprintf(line, sizeof line, fmt, a, b);
    int fd = open(f->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)n); /* a short write shows up as a test failure */
    (void)w;
    close(fd);
}

static int fixture_init(const char *config, void **state, char *errbuf, size_t errlen)
{
    fixture *f = calloc(1, sizeof *f);
    char *copy = strdup(config), *save = NULL, *fail = NULL;
    int rc = 0;

    if (!f || !copy) {
        snprintf(errbuf, errlen, "out of memory");
        rc = -1;
        goto out;
    }
    for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        if (strncmp(item, "log=", 4) == 0)
            snprintf(f->log, sizeof f->log, "%s", item + 4);
        else if (strncmp(item, "tag=", 4) == 0)
            snprintf(f->tag, sizeof f->tag, "%s", item + 4);
        else if (strncmp(item, "fail=", 5) == 0)
            fail = item + 5;
    }
    if (fail) {
        snprintf(errbuf, errlen, "%s", fail);
        rc = -1;
        goto out;
    }
    log_line(f, "init %s%s\n", f->tag, "");
    *state = f;
    f = NULL;
out:
    free(copy);
    free(f);
    return rc;
}

static void fixture_on_result(void *state, const clipmod_engine *engine, const clipmod_input *input,
                              clipmod_result *result)
{
    fixture *f = state;
    if (!f)
        return;
    if (atomic_exchange(&f->busy, 1))
        log_line(f, "overlap %s%s\n", f->tag, "");
    /* Long enough that unserialised calls from several threads would meet here. */
    nanosleep(&(struct timespec){0, 200000}, NULL);
    if (!engine || !input || (!input->path && !input->data))
        log_line(f, "bad-arguments %s%s\n", f->tag, "");
    log_line(f, "result %s %s\n", f->tag, clipmod_result_name(result));
    atomic_store(&f->busy, 0);
}

static void fixture_fini(void *state)
{
    fixture *f = state;
    if (!f)
        return;
    log_line(f, "fini %s%s\n", f->tag, "");
    free(f);
}

#define GOOD                                                                                       \
    CLIPMOD_PLUGIN_HEADER, .name = "fixture", .version = "0", .init = fixture_init,                \
                           .on_result = fixture_on_result, .fini = fixture_fini

/* A descriptor built against a "newer header": 16 more bytes after ours. */
static struct {
    clipmod_plugin p;
    unsigned char extra[16];
} big = {{GOOD}, {0}};

static const clipmod_plugin *descriptor(void)
{
    static clipmod_plugin d;
    const char *mode = getenv("CM_FIXTURE_MODE");

    d = (clipmod_plugin){GOOD};
    if (!mode || !*mode)
        return &d;
    if (!strcmp(mode, "null"))
        return NULL;
    if (!strcmp(mode, "abi0"))
        d.abi = 0;
    else if (!strcmp(mode, "abi2"))
        d.abi = 2;
    else if (!strcmp(mode, "small"))
        d.size = 8;
    else if (!strcmp(mode, "flags"))
        d.flags = UINT64_C(1) << 40;
    else if (!strcmp(mode, "serialize"))
        d.flags = CLIPMOD_PLUGIN_SERIALIZE;
    else if (!strcmp(mode, "no-name"))
        d.name = NULL;
    else if (!strcmp(mode, "no-on-result"))
        d.on_result = NULL;
    else if (!strcmp(mode, "no-init"))
        d.init = NULL, d.fini = NULL;
    else if (!strcmp(mode, "big-zero") || !strcmp(mode, "big-set")) {
        big.p.size = sizeof big;
        big.extra[7] = !strcmp(mode, "big-set");
        return &big.p;
    }
    return &d;
}

#if defined(FIXTURE_V2)
CLIPMOD_PLUGIN_EXPORT const clipmod_plugin *clipmod_plugin_v2(void);
CLIPMOD_PLUGIN_EXPORT const clipmod_plugin *clipmod_plugin_v2(void)
{
    return descriptor();
}
#elif defined(FIXTURE_NO_ENTRY)
CLIPMOD_PLUGIN_EXPORT const void *fixture_something_else(void);
CLIPMOD_PLUGIN_EXPORT const void *fixture_something_else(void)
{
    return descriptor();
}
#else
CLIPMOD_PLUGIN_EXPORT const clipmod_plugin *clipmod_plugin_v1(void)
{
    return descriptor();
}
#endif
