/*
 * test_common_yaml.c - src/common/yaml.c: the tree and its positions, the
 * refusals (anchors, aliases, tags, a second document, deep nesting, syntax
 * errors with their position), typed reads with their messages, and the key check
 * with "did you mean" and duplicates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yaml.h"

static cm_yproblems probs;
static const cm_yreport rep = {cm_yproblems_report, &probs};

static cm_ydoc *parse(const char *text, int want_rc)
{
    cm_ydoc *d = NULL;
    cm_yproblems_free(&probs);
    assert_int_equal(cm_yaml_parse("t.yaml", text, strlen(text), "a configuration file", &rep, &d),
                     want_rc);
    return d;
}

/* The problems joined, for comparing whole messages. */
static void expect_problems(const char *want)
{
    char *got = cm_yproblems_join(&probs);
    assert_string_equal(got ? got : "", want);
    free(got);
}

static void tree_and_positions(void **state)
{
    cm_ydoc *d = parse("a: 1\nlist:\n  - x\n  - \"y\"\nmap: {k: v}\n", CM_YAML_OK);
    const cm_ynode *root = cm_yaml_root(d);
    assert_int_equal(root->kind, CM_Y_MAP);
    assert_int_equal(root->n, 6);
    const cm_ynode *list = cm_ymap_get(root, "list");
    assert_int_equal(list->kind, CM_Y_SEQ);
    assert_int_equal(list->n, 2);
    assert_int_equal(list->first->pos.line, 3);
    assert_int_equal(list->first->pos.column, 5);
    assert_false(list->first->quoted);
    assert_true(list->first->next->quoted);
    assert_string_equal(list->first->next->s, "y");
    const cm_ynode *k = cm_ymap_get(cm_ymap_get(root, "map"), "k");
    assert_string_equal(k->s, "v");
    assert_int_equal(k->pos.line, 5);
    assert_int_equal(k->pos.column, 10);
    assert_string_equal(k->pos.file, "t.yaml");
    assert_null(cm_ymap_get(root, "absent"));
    expect_problems("");
    cm_yaml_free(d);
    /* An empty document: OK with no root. */
    d = parse("", CM_YAML_OK);
    assert_null(cm_yaml_root(d));
    cm_yaml_free(d);
    cm_yaml_free(NULL);
}

static void refusals(void **state)
{
    cm_ydoc *d = parse("a: &x 1\nb: *x\nc: !!int 3\n", CM_YAML_OK);
    expect_problems("t.yaml:1:4: YAML anchors and aliases are not allowed ('&x')\n"
                    "t.yaml:2:4: YAML anchors and aliases are not allowed ('*x')\n"
                    "t.yaml:3:4: YAML tags are not supported ('tag:yaml.org,2002:int')\n");
    assert_int_equal(cm_ymap_get(cm_yaml_root(d), "b")->kind, CM_Y_BAD);
    cm_yaml_free(d);
    assert_null(parse("a: 1\n---\nb: 2\n", CM_YAML_BAD));
    expect_problems(
        "t.yaml:2:1: a configuration file holds one YAML document; this is a second one\n");
    assert_null(parse("a: [1, 2\n", CM_YAML_BAD));
    expect_problems(
        "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing "
        "a flow sequence at line 1, column 4)\n");
    char deep[18];
    memset(deep, '[', 17);
    deep[17] = '\0';
    assert_null(parse(deep, CM_YAML_BAD));
    expect_problems("t.yaml:1:17: nesting deeper than 16 levels\n");
    assert_null(parse("a: \"\\x01\xff\"\n", CM_YAML_BAD));
    assert_non_null(strstr(probs.lines[0], "unreadable text"));
}

static void typed_reads(void **state)
{
    cm_ydoc *d = parse("s: hello\nq: '42'\nn: 42\nneg: -3\nbig: 99999999999999999999\nb: yes\n"
                       "sz: 25M\nbadsz: 25X\ndur: 500ms\nl: [a, b]\none: solo\nempty: ''\n",
                       CM_YAML_OK);
    const cm_ynode *r = cm_yaml_root(d);
    const char *s;
    long long i;
    int b;
    uint64_t u;
    assert_int_equal(cm_yread_str(cm_ymap_get(r, "s"), "'s'", 0, &rep, &s), 0);
    assert_string_equal(s, "hello");
    assert_int_equal(cm_yread_int(cm_ymap_get(r, "n"), "'n'", 0, 100, &rep, &i), 0);
    assert_int_equal(i, 42);
    assert_int_equal(cm_yread_int(cm_ymap_get(r, "neg"), "'neg'", -5, 5, &rep, &i), 0);
    assert_int_equal(i, -3);
    assert_int_equal(cm_yread_bool(cm_ymap_get(r, "b"), "'b'", &rep, &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(cm_yread_size(cm_ymap_get(r, "sz"), "'sz'", 1ull << 40, &rep, &u), 0);
    assert_int_equal(u, 25ull << 20);
    assert_int_equal(cm_yread_duration_ms(cm_ymap_get(r, "dur"), "'dur'", 60000, &rep, &u), 0);
    assert_int_equal(u, 500);
    const char **list;
    size_t n;
    assert_int_equal(cm_yread_strlist(cm_ymap_get(r, "l"), "'l'", 8, &rep, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[1], "b");
    assert_null(list[2]);
    free(list);
    assert_int_equal(cm_yread_strlist(cm_ymap_get(r, "one"), "'one'", 8, &rep, &list, &n), 0);
    assert_int_equal(n, 1);
    free(list);
    expect_problems("");
    /* Refusals, each with its message at the value's position. */
    assert_int_equal(cm_yread_int(cm_ymap_get(r, "q"), "'q'", 0, 100, &rep, &i), -1);
    assert_int_equal(cm_yread_int(cm_ymap_get(r, "n"), "'n'", 0, 10, &rep, &i), -1);
    assert_int_equal(cm_yread_int(cm_ymap_get(r, "big"), "'big'", 0, 10, &rep, &i), -1);
    assert_int_equal(cm_yread_bool(cm_ymap_get(r, "n"), "'n'", &rep, &b), -1);
    assert_int_equal(cm_yread_size(cm_ymap_get(r, "badsz"), "'badsz'", 100, &rep, &u), -1);
    assert_int_equal(cm_yread_size(cm_ymap_get(r, "sz"), "'sz'", 1024, &rep, &u), -1);
    assert_int_equal(cm_yread_str(cm_ymap_get(r, "empty"), "'empty'", 0, &rep, &s), -1);
    assert_int_equal(cm_yread_strlist(cm_ymap_get(r, "l"), "'l'", 1, &rep, &list, &n), -1);
    expect_problems("t.yaml:2:4: 'q' must be an integer from 0 to 100, not \"42\"\n"
                    "t.yaml:3:4: 'n' must be an integer from 0 to 10, not '42'\n"
                    "t.yaml:5:6: 'big' must be an integer from 0 to 10, not "
                    "'99999999999999999999'\n"
                    "t.yaml:3:4: 'n' must be true or false, not '42'\n"
                    "t.yaml:8:8: 'badsz': size '25X': unknown unit (use k, M, G or T, binary "
                    "multiples)\n"
                    "t.yaml:7:5: 'sz' is larger than the maximum 1k\n"
                    "t.yaml:12:8: 'empty' is empty\n"
                    "t.yaml:10:4: 'l' has 2 items; at most 1 are allowed\n");
    cm_yaml_free(d);
}

static void keys(void **state)
{
    static const char *const allowed[] = {"listen", "threshold", "log_level"};
    const cm_ynode *vals[3];
    cm_ydoc *d =
        parse("listen: 1\nthreshlod: 2\nlisten: 3\ncolour: 4\n[x]: 5\nlog_level: 6\n", CM_YAML_OK);
    assert_int_equal(
        cm_ycheck_keys(cm_yaml_root(d), "in the daemon section", allowed, 3, NULL, vals, &rep), 4);
    expect_problems("t.yaml:2:1: unknown key 'threshlod' in the daemon section (did you mean "
                    "'threshold'?); allowed: listen, threshold, log_level\n"
                    "t.yaml:3:1: duplicate key 'listen' (first at line 1, column 1)\n"
                    "t.yaml:4:1: unknown key 'colour' in the daemon section; allowed: listen, "
                    "threshold, log_level\n"
                    "t.yaml:5:1: keys must be strings, not a list\n");
    assert_string_equal(vals[0]->s, "1");
    assert_null(vals[1]);
    assert_string_equal(vals[2]->s, "6");
    cm_yaml_free(d);
}

/* A long list of allowed keys is cut between names, never inside one. */
static void keys_long_list(void **state)
{
    static char names[60][48];
    const char *allowed[60];
    const cm_ynode *vals[60];
    for (int i = 0; i < 60; i++) {
        snprintf(names[i], sizeof names[i], "documents-with-images-in-archives-%03d", i);
        allowed[i] = names[i];
    }
    cm_ydoc *d = parse("colour: 1\n", CM_YAML_OK);
    assert_int_equal(cm_ycheck_keys(cm_yaml_root(d), "here", allowed, 60, NULL, vals, &rep), 1);
    char *got = cm_yproblems_join(&probs);
    assert_non_null(strstr(
        got,
        "allowed: documents-with-images-in-archives-000, documents-with-images-in-archives-001, "));
    /* Every listed name is whole, and the list ends with ", ...". */
    const char *end = strstr(got, ", ...\n");
    assert_non_null(end);
    assert_int_equal(end[-4], '-');
    assert_true(end - got > 900);
    free(got);
    cm_yaml_free(d);
}

static void from_file(void **state)
{
    cm_ydoc *d = NULL;
    cm_yproblems_free(&probs);
    assert_int_equal(cm_yaml_parse_file("/nonexistent/x.yaml", 0, NULL, &rep, &d), CM_YAML_BAD);
    expect_problems("/nonexistent/x.yaml: cannot read: No such file or directory\n");
    cm_yproblems_free(&probs);
    assert_int_equal(cm_yaml_parse_file("/etc", 0, NULL, &rep, &d), CM_YAML_BAD);
    expect_problems("/etc: cannot read: not a regular file\n");
    cm_yproblems_free(&probs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tree_and_positions), cmocka_unit_test(refusals),
        cmocka_unit_test(typed_reads),        cmocka_unit_test(keys),
        cmocka_unit_test(keys_long_list),     cmocka_unit_test(from_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
