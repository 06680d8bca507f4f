/*
 * fuzz_yaml_reader.c - the shared YAML reader (src/common/yaml.c, libcmcommon).
 *
 * The input is YAML text, parsed from memory as "fuzz.yaml"; then every node of
 * the tree goes through every typed read (string, bool, int, size, duration,
 * string list), cm_ynode_describe, and every mapping through the key check, as
 * the configuration readers of clipmodd and the milter use them. Beyond memory
 * safety the target aborts when a promise of yaml.h is broken:
 *   - CM_YAML_BAD comes with no document and at least one problem; CM_YAML_OK
 *     with a document whose tree is consistent (n counts the children, a mapping
 *     has an even count, nesting stays within CM_YAML_MAX_DEPTH, every scalar is
 *     NUL-terminated at len, positions are 1-based in "fuzz.yaml");
 *   - a typed read returns 0 with a value inside its bounds, or -1 having
 *     reported a problem (an alias, already reported when parsed, excepted);
 *   - every problem line names the file and is one line; describe() output fits
 *     and has no control characters.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "yaml.h"

#define FILE_NAME "fuzz.yaml"

static void check(int ok)
{
    if (!ok)
        abort();
}

static cm_yproblems probs;
static const cm_yreport rep = {cm_yproblems_report, &probs};

/* The number of problems reported so far, dropped ones included. */
static size_t reported(void)
{
    return probs.n + probs.dropped;
}

/* Whether v or a node under it is an alias (reported once, at parse time). */
static int has_bad(const cm_ynode *v)
{
    if (v->kind == CM_Y_BAD)
        return 1;
    for (const cm_ynode *c = v->first; c; c = c->next)
        if (has_bad(c))
            return 1;
    return 0;
}

static int quiet_ok; /* the node being read holds an alias: -1 may come unreported */

/* A read returned rc: 0, or -1 with a new problem. */
static void read_ok(int rc, size_t before)
{
    check(rc == 0 || rc == -1);
    check(rc == 0 || reported() > before || probs.nomem || quiet_ok);
}

static void typed_reads(const cm_ynode *v)
{
    size_t before = reported();
    const char *s = NULL;
    int b = -1;
    long long i = 0;
    uint64_t u = 0;
    const char **list = NULL;
    size_t n = 0;

    quiet_ok = has_bad(v);

    int rc = cm_yread_str(v, "'s'", 0, &rep, &s);
    read_ok(rc, before);
    check(rc || (s && *s && strlen(s) == v->len));
    before = reported();
    read_ok(cm_yread_str(v, "'s'", 1, &rep, &s), before);
    before = reported();
    rc = cm_yread_bool(v, "'b'", &rep, &b);
    read_ok(rc, before);
    check(rc || b == 0 || b == 1);
    before = reported();
    rc = cm_yread_int(v, "'i'", -5, 1000, &rep, &i);
    read_ok(rc, before);
    check(rc || (i >= -5 && i <= 1000));
    before = reported();
    rc = cm_yread_size(v, "'size'", 1u << 30, &rep, &u);
    read_ok(rc, before);
    check(rc || u <= 1u << 30);
    before = reported();
    rc = cm_yread_duration_ms(v, "'t'", 3600000, &rep, &u);
    read_ok(rc, before);
    check(rc || u <= 3600000);
    before = reported();
    rc = cm_yread_strlist(v, "'l'", 8, &rep, &list, &n);
    read_ok(rc, before);
    if (rc == 0) {
        check(list != NULL && n <= 8 && list[n] == NULL);
        for (size_t k = 0; k < n; k++)
            check(list[k][0] != '\0');
    }
    free(list);
}

static void describe_ok(const cm_ynode *v)
{
    char buf[80];
    const char *d = cm_ynode_describe(v, buf, sizeof buf);
    check(d != NULL && strlen(d) < sizeof buf); /* buf, or a static phrase */
    for (const unsigned char *p = (const unsigned char *)d; *p; p++)
        check(*p >= 0x20 && *p != 0x7f);
}

static void walk(const cm_ynode *v, int depth)
{
    static const char *const allowed[] = {"name", "version", "log_level", "workers", "list"};
    size_t n = 0;

    check(depth <= CM_YAML_MAX_DEPTH + 1);
    check(v->pos.file && !strcmp(v->pos.file, FILE_NAME));
    check(v->pos.line >= 1 && v->pos.column >= 1);
    if (v->kind == CM_Y_SCALAR)
        check(v->s != NULL && v->s[v->len] == '\0');
    for (const cm_ynode *c = v->first; c; c = c->next) {
        walk(c, depth + 1);
        n++;
    }
    check(n == v->n);
    check(v->kind == CM_Y_MAP || v->kind == CM_Y_SEQ || n == 0);
    if (v->kind == CM_Y_MAP) {
        const cm_ynode *keys[5], *vals[5];
        check(n % 2 == 0);
        int k = cm_ycheck_keys(v, "in a test", allowed, 5, keys, vals, &rep);
        check(k >= 0);
        for (int j = 0; j < 5; j++)
            check(!vals[j] || cm_ymap_get(v, allowed[j]) != NULL);
    }
    typed_reads(v);
    describe_ok(v);
    (void)cm_ynode_is_null(v);
    (void)cm_ynode_is(v, "name");
}

static void problems_named(void)
{
    for (size_t i = 0; i < probs.n; i++) {
        check(!strncmp(probs.lines[i], FILE_NAME, strlen(FILE_NAME)));
        check(strchr(probs.lines[i], '\n') == NULL);
    }
    char *all = cm_yproblems_join(&probs);
    check(probs.n == 0 || probs.nomem || (all && all[strlen(all) - 1] == '\n'));
    free(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cm_ydoc *d = (cm_ydoc *)&d;

    memset(&probs, 0, sizeof probs);
    int rc = cm_yaml_parse(FILE_NAME, data, size, "a configuration file", &rep, &d);
    check(rc == CM_YAML_OK || rc == CM_YAML_BAD || rc == CM_YAML_NOMEM);
    if (rc != CM_YAML_OK)
        check(d == NULL);
    if (rc == CM_YAML_BAD)
        check(reported() > 0 || probs.nomem);
    if (rc == CM_YAML_OK) {
        check(d != NULL);
        const cm_ynode *root = cm_yaml_root(d);
        if (root)
            walk(root, 1);
    }
    problems_named();
    cm_yaml_free(d == (cm_ydoc *)&d ? NULL : d);
    cm_yproblems_free(&probs);
    return 0;
}
