/*
 * fuzz_daemon_config.c - clipmodd's configuration reader (src/daemon/config.c).
 *
 * The input is the YAML text of clipmodd.yaml, read over the defaults with
 * config_parse() (from memory: it opens no file, so http.auth-token-file is only
 * noted), then checked as a whole with config_check(), as clipmodd does at start
 * and on SIGHUP. Beyond memory safety the target checks what the reader promises
 * and aborts when a promise is broken:
 *   - it returns 0 with no problems text, or -1 with one, every line of which is
 *     "fuzz.yaml:..." (the file named, for the operator);
 *   - whatever it accepted is within the ranges clipmodd(8) gives (a rejected value
 *     leaves the default), lists hold non-empty strings, at most 64 of them, and end
 *     in NULL; on-flag.command starts with an absolute path; plugins have a path.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "fuzz.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static void problems_named(const char *problems)
{
    for (const char *line = problems; *line;) {
        check(!strncmp(line, "fuzz.yaml", 9));
        const char *nl = strchr(line, '\n');
        check(nl != NULL);
        line = nl + 1;
    }
}

static void list_ok(const strlist *l)
{
    check(l->n <= 64);
    for (size_t i = 0; i < l->n; i++)
        check(l->v[i] != NULL);
    check(!l->v || l->v[l->n] == NULL); /* on-flag.command is used as an argv */
}

static void ranges(const dconfig *c)
{
    check(c->workers >= 1 && c->workers <= 64 && c->url_workers >= 1 && c->url_workers <= 64);
    check(c->max_batch >= 1 && c->max_batch <= 256 && c->batch_window_ms <= 1000);
    check(c->queue_size >= 1 && c->queue_size <= 100000);
    check(c->request_timeout_ms >= 100 && c->request_timeout_ms <= 3600000);
    check(c->max_body_bytes >= 1024 && c->max_files >= 1 && c->max_files <= 1024);
    check(c->max_connections >= 1 && c->client_timeout_s >= 1);
    check(c->max_body_memory >= 1024 && c->header_timeout_s >= 1 && c->header_timeout_s <= 3600);
    check(c->max_connections_per_ip <= 65536 && c->clamd_unix_mode <= 0777);
    check(c->auth_token == NULL); /* never read by config_parse */
    list_ok(&c->fetch_allow);
    list_ok(&c->text_fields);
    list_ok(&c->tusd_roots);
    list_ok(&c->clamd_roots);
    list_ok(&c->onflag_argv);
    check(!c->onflag_argv.n || c->onflag_argv.v[0][0] == '/');
    check(c->onflag_timeout_ms >= 100 && c->onflag_timeout_ms <= 3600000);
    check(c->onflag_max_running >= 1 && c->onflag_max_running <= 64);
    check(c->n_plugins <= 16);
    for (size_t i = 0; i < c->n_plugins; i++)
        check(c->plugins[i].path != NULL && c->plugins[i].path[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dconfig c;
    char *problems = NULL;

    config_defaults(&c);
    int rc = config_parse("fuzz.yaml", (const char *)data, size, &c, &problems);
    check(rc == 0 ? problems == NULL : problems != NULL && *problems);
    if (problems)
        problems_named(problems);
    free(problems);
    problems = NULL;
    ranges(&c);
    if (rc == 0) {
        rc = config_check(&c, &problems);
        check(rc == 0 ? problems == NULL : problems != NULL && *problems);
        free(problems);
    }
    config_free(&c);
    return 0;
}
