/*
 * test_policy.c - the policy parser: valid files, and every invalid case with its
 * exact message and position.
 *
 * Fixtures live in tests/policies (found through $top_srcdir, as automake sets it for
 * `make check`; "." when unset). Cases that are large or generated (a file over
 * 1 MiB, includes nested too deep) are written into a temporary directory. The
 * shipped policies and the complete example of clipmod-policy(5) must load; with
 * OpenAI's merges (CLIPMOD_BPE_GZ, skipped when absent) every shipped prompt must
 * also fit the text tower's 77 tokens under every template.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy.h"
#include "tokenizer.h"

#if defined(__GNUC__)
#define CM_TEST_PRINTF __attribute__((format(printf, 3, 4)))
#else
#define CM_TEST_PRINTF
#endif

#define OPENAI_MERGES 48894

/* ---------------------------------------------------------------------------- */
/* Helpers                                                                        */
/* ---------------------------------------------------------------------------- */

static const char *srcdir(void)
{
    const char *d = getenv("top_srcdir");
    return d && *d ? d : ".";
}

/* A malloc'd path under the source tree. */
static char *src_path(const char *rel)
{
    size_t n = strlen(srcdir()) + strlen(rel) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", srcdir(), rel);
    return p;
}

/* `tmpl` with every "$D/" replaced by `dir` (which ends in '/'); malloc'd. */
static char *expand_dir(const char *tmpl, const char *dir)
{
    size_t n = strlen(tmpl) + 1, dl = strlen(dir);
    for (const char *p = tmpl; (p = strstr(p, "$D/")); p += 3)
        n += dl;
    char *s = malloc(n), *o = s;
    assert_non_null(s);
    while (*tmpl) {
        if (!strncmp(tmpl, "$D/", 3)) {
            memcpy(o, dir, dl);
            o += dl;
            tmpl += 3;
        } else {
            *o++ = *tmpl++;
        }
    }
    *o = '\0';
    return s;
}

/* Load `path`; expect `rc` and exactly `expected` problems ("$D/" = `dir`). */
static void expect_problems(const char *dir, const char *path, clipmod_error rc,
                            const char *expected)
{
    cm_policy *p = (cm_policy *)1;
    char *problems = NULL, *want = expand_dir(expected, dir);
    clipmod_error got = cm_policy_load(path, &p, &problems);
    if (!problems || strcmp(problems, want))
        print_message("expected:\n%sgot:\n%s", want, problems ? problems : "(none)\n");
    assert_int_equal(got, rc);
    assert_null(p);
    assert_non_null(problems);
    assert_string_equal(problems, want);
    free(problems);
    free(want);
}

/* An invalid fixture under tests/policies/invalid. */
static void expect_invalid(const char *name, const char *expected)
{
    char rel[256], *dir = src_path("tests/policies/invalid/"), *path;
    snprintf(rel, sizeof rel, "tests/policies/invalid/%s", name);
    path = src_path(rel);
    expect_problems(dir, path, CLIPMOD_E_POLICY, expected);
    free(path);
    free(dir);
}

static cm_policy *load_ok(const char *path)
{
    cm_policy *p = NULL;
    char *problems = NULL;
    clipmod_error rc = cm_policy_load(path, &p, &problems);
    if (rc != CLIPMOD_OK)
        print_message("%s: %s\n%s", path, clipmod_strerror(rc), problems ? problems : "");
    assert_int_equal(rc, CLIPMOD_OK);
    assert_null(problems);
    assert_non_null(p);
    return p;
}

static void assert_pos(cm_pos pos, const char *file, int line, int column)
{
    assert_string_equal(pos.file, file);
    assert_int_equal(pos.line, line);
    assert_int_equal(pos.column, column);
}

static const cm_category *find(const cm_policy *p, const char *id)
{
    for (size_t i = 0; i < p->n_categories; i++)
        if (!strcmp(p->categories[i].id, id))
            return &p->categories[i];
    return NULL;
}

/* Append printf-style text to the NUL-terminated `buf` of `size` bytes; the test
 * fails rather than cut a generated policy short. */
static void CM_TEST_PRINTF append(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < size - used);
}

/* A scratch directory for generated files, removed by teardown. */
static char tmpdir[64];
static char *tmpfiles[64];
static int n_tmpfiles;

static int setup_tmp(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/cm_test_policy_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    for (int i = 0; i < n_tmpfiles; i++) {
        unlink(tmpfiles[i]);
        free(tmpfiles[i]);
    }
    n_tmpfiles = 0;
    rmdir(tmpdir);
    return 0;
}

/* Write `len` bytes as tmpdir/name; returns the path (owned by the teardown). */
static const char *write_tmp(const char *name, const char *data, size_t len)
{
    const size_t size = strlen(tmpdir) + strlen(name) + 2;
    char *path = malloc(size);
    assert_non_null(path);
    snprintf(path, size, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    assert_true(n_tmpfiles < 64);
    tmpfiles[n_tmpfiles++] = path;
    return path;
}

static const char *write_tmp_str(const char *name, const char *text)
{
    return write_tmp(name, text, strlen(text));
}

/* "<tmpdir>/" for expected messages. */
static const char *tmp_prefix(void)
{
    static char buf[80];
    snprintf(buf, sizeof buf, "%s/", tmpdir);
    return buf;
}

static const char small_policy[] = "version: 1\n"
                                   "neutral: [a street]\n"
                                   "categories:\n"
                                   "  - {id: a, prompts: [a gun], threshold: 0.5, action: flag}\n";

/* ---------------------------------------------------------------------------- */
/* Valid policies                                                                 */
/* ---------------------------------------------------------------------------- */

static void minimal_gets_defaults(void **state)
{
    char *path = src_path("tests/policies/valid/minimal.yaml");
    cm_policy *p = load_ok(path);

    assert_int_equal(p->version, 1);
    assert_string_equal(p->file, path);
    assert_int_equal(p->n_files, 1);
    assert_string_equal(p->files[0], path);
    assert_null(p->name);
    assert_null(p->description);
    assert_null(p->model);
    assert_int_equal(p->n_templates, 1);
    assert_string_equal(p->templates[0], "{}");
    assert_int_equal(p->n_neutral, 1);
    assert_string_equal(p->neutral[0].text, "a photo of a street");
    assert_pos(p->neutral[0].pos, path, 4, 5);

    assert_int_equal(p->n_categories, 1);
    const cm_category *c = &p->categories[0];
    assert_string_equal(c->id, "cats");
    assert_null(c->description);
    assert_null(c->message);
    assert_int_equal(c->n_prompts, 1);
    assert_string_equal(c->prompts[0].text, "a cat");
    assert_pos(c->prompts[0].pos, path, 7, 15);
    assert_int_equal(c->n_contrast, 0);
    assert_true(c->threshold == 0.5);
    assert_int_equal(c->action, CM_ACTION_TAG);
    assert_pos(c->pos, path, 6, 5);
    assert_pos(c->threshold_pos, path, 8, 16);
    assert_pos(c->action_pos, path, 9, 13);

    /* Actions take the defaults of clipmod-policy(5). */
    assert_null(p->actions[CM_ACTION_ALLOW].smtp_reply);
    assert_int_equal(p->actions[CM_ACTION_ALLOW].http_status, 200);
    assert_string_equal(p->actions[CM_ACTION_ALLOW].message, "Accepted.");
    assert_null(p->actions[CM_ACTION_TAG].smtp_reply);
    assert_int_equal(p->actions[CM_ACTION_TAG].http_status, 200);
    assert_null(p->actions[CM_ACTION_FLAG].smtp_reply);
    assert_int_equal(p->actions[CM_ACTION_FLAG].http_status, 200);
    assert_null(p->actions[CM_ACTION_QUARANTINE].smtp_reply);
    assert_int_equal(p->actions[CM_ACTION_QUARANTINE].http_status, 202);
    assert_string_equal(p->actions[CM_ACTION_REJECT].smtp_reply,
                        "550 5.7.1 Message refused: an image is not allowed by the content "
                        "policy");
    assert_int_equal(p->actions[CM_ACTION_REJECT].http_status, 403);
    assert_string_equal(p->actions[CM_ACTION_REJECT].message,
                        "Refused: the image is not allowed by the content policy.");
    for (int a = 0; a < CM_ACTION__COUNT; a++)
        assert_non_null(p->actions[a].message);

    assert_int_equal(p->frames, 8);
    assert_int_equal(p->combine, CM_COMBINE_MAX);
    assert_int_equal(p->k, 1);
    cm_policy_free(p);
    free(path);
}

static void include_override_add_disable(void **state)
{
    char *site = src_path("tests/policies/valid/site.yaml");
    char *base = src_path("tests/policies/valid/base.yaml");
    cm_policy *p = load_ok(site);

    assert_int_equal(p->n_files, 2);
    assert_string_equal(p->files[0], site);
    assert_string_equal(p->files[1], base);
    /* Top-level keys: name from the site, the rest from the included file. */
    assert_string_equal(p->name, "site");
    assert_string_equal(p->model, "openai/clip-vit-base-patch32");
    assert_int_equal(p->n_templates, 2);
    assert_string_equal(p->templates[0], "a photo of {}.");
    assert_string_equal(p->templates[1], "a drawing of {}.");
    assert_int_equal(p->n_neutral, 2);
    assert_pos(p->neutral[1].pos, base, 10, 5);

    /* Categories: weapons retuned, gore as included, drugs disabled, spiders added. */
    assert_int_equal(p->n_categories, 3);
    assert_string_equal(p->categories[0].id, "weapons");
    assert_string_equal(p->categories[1].id, "gore");
    assert_string_equal(p->categories[2].id, "spiders");
    assert_null(find(p, "drugs"));

    const cm_category *w = find(p, "weapons");
    assert_true(w->threshold == 0.5);
    assert_pos(w->threshold_pos, site, 13, 16);
    assert_int_equal(w->action, CM_ACTION_FLAG);
    assert_pos(w->action_pos, base, 29, 13);
    assert_string_equal(w->description, "Firearms.");
    assert_int_equal(w->n_prompts, 2);
    assert_string_equal(w->prompts[1].text, "a rifle");
    assert_pos(w->prompts[1].pos, base, 25, 9);
    assert_int_equal(w->n_contrast, 1);
    assert_pos(w->pos, base, 21, 5);

    const cm_category *s = find(p, "spiders");
    assert_int_equal(s->action, CM_ACTION_QUARANTINE);
    assert_true(s->threshold == 0.8);
    assert_string_equal(s->message, "We hide spiders here.");
    assert_string_equal(s->description, "Arachnophobia-friendly forum.");
    assert_int_equal(s->n_prompts, 2);
    assert_string_equal(s->prompts[1].text, "a spider web with a spider");
    assert_pos(s->pos, site, 18, 5);

    /* Actions merge field by field. */
    assert_string_equal(p->actions[CM_ACTION_REJECT].smtp_reply, "554 5.7.1 Not accepted here");
    assert_int_equal(p->actions[CM_ACTION_REJECT].http_status, 451);
    assert_string_equal(p->actions[CM_ACTION_REJECT].message,
                        "Refused: the image is not allowed by the content policy.");
    assert_string_equal(p->actions[CM_ACTION_QUARANTINE].smtp_reply,
                        "451 4.7.1 Held for review, try again later");
    assert_int_equal(p->actions[CM_ACTION_QUARANTINE].http_status, 202);

    /* Animation merges field by field too. */
    assert_int_equal(p->frames, 4);
    assert_int_equal(p->combine, CM_COMBINE_K_OF_N);
    assert_int_equal(p->k, 2);
    cm_policy_free(p);
    free(site);
    free(base);
}

static void flow_style_positions(void **state)
{
    char *path = src_path("tests/policies/valid/flow.yaml");
    cm_policy *p = load_ok(path);
    assert_int_equal(p->n_categories, 2);
    assert_string_equal(p->categories[1].id, "b-2_c");
    assert_true(p->categories[1].threshold == 0.25);
    assert_int_equal(p->categories[0].action, CM_ACTION_ALLOW);
    assert_int_equal(p->categories[1].action, CM_ACTION_REJECT);
    assert_pos(p->categories[1].prompts[0].pos, path, 3, 37);
    assert_pos(p->categories[1].contrast[0].pos, path, 3, 54);
    assert_pos(p->categories[1].threshold_pos, path, 3, 71);
    cm_policy_free(p);
    free(path);
}

static void same_include_twice_is_harmless(void **state)
{
    const char *top;
    write_tmp_str("leaf.yaml", small_policy);
    write_tmp_str("mid.yaml", "version: 1\ninclude: leaf.yaml\n");
    top = write_tmp_str("top.yaml", "version: 1\ninclude: [leaf.yaml, mid.yaml, leaf.yaml]\n"
                                    "categories:\n  - {id: a, threshold: 0.25}\n");
    cm_policy *p = load_ok(top);
    assert_int_equal(p->n_categories, 1);
    assert_true(p->categories[0].threshold == 0.25);
    assert_int_equal(p->n_files, 3); /* top, leaf, mid: each named once */
    cm_policy_free(p);
}

/* Files whose problems are reported once even though read twice. */
static void problems_of_a_file_read_twice_appear_once(void **state)
{
    const char *top;
    write_tmp_str("bad.yaml", "version: 1\ncolour: red\n");
    top = write_tmp_str("top.yaml", "version: 1\ninclude: [bad.yaml, bad.yaml]\n"
                                    "neutral: [a street]\n"
                                    "categories:\n"
                                    "  - {id: a, prompts: [a gun], threshold: 0.5, "
                                    "action: flag}\n");
    expect_problems(tmp_prefix(), top, CLIPMOD_E_POLICY,
                    "$D/bad.yaml:2:1: unknown key 'colour' at top level; allowed: version, "
                    "name, description, model, templates, neutral, actions, animation, "
                    "include, categories, context-neutral\n");
}

/* ---------------------------------------------------------------------------- */
/* Shipped policies and the manual                                                */
/* ---------------------------------------------------------------------------- */

static const char *const shipped[] = {"policies/default.yaml", "policies/examples/site.yaml",
                                      "policies/examples/newsroom.yaml"};

static void shipped_policies_load(void **state)
{
    for (size_t i = 0; i < sizeof shipped / sizeof *shipped; i++) {
        char *path = src_path(shipped[i]);
        cm_policy *p = load_ok(path);
        assert_true(p->n_categories >= 5);
        assert_true(p->n_templates >= 3 && p->n_templates <= 5);
        assert_true(p->n_neutral >= 10);
        for (size_t c = 0; c < p->n_categories; c++)
            assert_true(p->categories[c].n_contrast > 0);
        char *summary = cm_policy_summary(p);
        assert_non_null(summary);
        assert_non_null(strstr(summary, "valid policy"));
        free(summary);
        cm_policy_free(p);
        free(path);
    }
}

static void default_policy_decisions(void **state)
{
    char *path = src_path("policies/default.yaml");
    cm_policy *p = load_ok(path);
    static const struct {
        const char *id;
        cm_action action;
    } want[] = {{"sexual", CM_ACTION_QUARANTINE},   {"gore", CM_ACTION_REJECT},
                {"weapons", CM_ACTION_FLAG},        {"drugs", CM_ACTION_FLAG},
                {"hate_symbols", CM_ACTION_REJECT}, {"self_harm", CM_ACTION_FLAG}};
    assert_int_equal(p->n_categories, 6);
    for (size_t i = 0; i < 6; i++) {
        const cm_category *c = find(p, want[i].id);
        assert_non_null(c);
        assert_int_equal(c->action, want[i].action);
        assert_true(c->threshold > 0.3 && c->threshold < 0.9);
    }
    assert_non_null(strstr(find(p, "self_harm")->message, "helpline"));
    assert_string_equal(p->model, "openai/clip-vit-base-patch32");
    cm_policy_free(p);
    free(path);
}

/* The complete example of clipmod-policy(5) is a valid policy. */
static void manual_example_loads(void **state)
{
    char *man = src_path("man/clipmod-policy.5");
    FILE *f = fopen(man, "r");
    char line[512], yaml[8192] = "";
    int in = 0, seen = 0;
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "A complete policy using every key:"))
            seen = 1;
        else if (seen == 1 && !strncmp(line, ".EX", 3))
            in = 1, seen = 2;
        else if (in && !strncmp(line, ".EE", 3))
            in = 0;
        else if (in) {
            /* Undo groff escapes: \- \(dq \(aq \e. */
            char *o = yaml + strlen(yaml);
            for (const char *s = line; *s;) {
                if (!strncmp(s, "\\-", 2))
                    *o++ = '-', s += 2;
                else if (!strncmp(s, "\\(dq", 4))
                    *o++ = '"', s += 4;
                else if (!strncmp(s, "\\(aq", 4))
                    *o++ = '\'', s += 4;
                else if (!strncmp(s, "\\e", 2))
                    *o++ = '\\', s += 2;
                else
                    *o++ = *s++;
            }
            *o = '\0';
            assert_true(strlen(yaml) < sizeof yaml - sizeof line);
        }
    }
    fclose(f);
    free(man);
    assert_int_equal(seen, 2);
    cm_policy *p = load_ok(write_tmp_str("example.yaml", yaml));
    assert_int_equal(p->n_categories, 2);
    assert_int_equal(p->n_templates, 3);
    assert_int_equal(p->combine, CM_COMBINE_K_OF_N);
    assert_int_equal(p->k, 2);
    assert_non_null(p->categories[1].message);
    cm_policy_free(p);
}

static const char *bpe_gz_path(void)
{
    static char buf[4096];
    const char *env = getenv("CLIPMOD_BPE_GZ");
    if (env && *env)
        return env;
    snprintf(buf, sizeof buf, "%s/../shared/data/clip/bpe_simple_vocab_16e6.txt.gz", srcdir());
    return buf;
}

static size_t count_real(void *ctx, const char *text, int *truncated)
{
    int32_t ids[CLIPMOD_CONTEXT_LENGTH];
    size_t n = 0;
    if (cm_tokenizer_encode(ctx, text, strlen(text), ids, CLIPMOD_CONTEXT_LENGTH, &n, truncated,
                            NULL))
        return (size_t)-1;
    return n;
}

static void shipped_prompts_fit_the_context(void **state)
{
    cm_tokenizer *tok = NULL;
    const char *bpe = bpe_gz_path();
    if (access(bpe, R_OK) != 0) {
        print_message("OpenAI merges not found (CLIPMOD_BPE_GZ): skipped\n");
        skip();
    }
    assert_int_equal(cm_tokenizer_load(bpe, OPENAI_MERGES, &tok, NULL), CLIPMOD_OK);
    for (size_t i = 0; i < sizeof shipped / sizeof *shipped; i++) {
        char *path = src_path(shipped[i]), *problems = NULL;
        cm_policy *p = load_ok(path);
        clipmod_error rc = cm_policy_check_tokens(p, count_real, tok, &problems);
        if (rc)
            print_message("%s", problems ? problems : "");
        assert_int_equal(rc, CLIPMOD_OK);
        assert_null(problems);
        cm_policy_free(p);
        free(path);
    }
    /* And a prompt that does not fit is found with the real tokenizer. */
    char long_policy[4096] = "version: 1\nneutral: [a street]\ncategories:\n"
                             "  - id: a\n    threshold: 0.5\n    action: flag\n    prompts:\n"
                             "      - ";
    for (int i = 0; i < 80; i++)
        append(long_policy, sizeof long_policy, "word ");
    append(long_policy, sizeof long_policy, "\n");
    const char *path = write_tmp_str("long.yaml", long_policy);
    cm_policy *p = load_ok(path);
    char *problems = NULL;
    assert_int_equal(cm_policy_check_tokens(p, count_real, tok, &problems), CLIPMOD_E_POLICY);
    char *want = expand_dir("$D/long.yaml:8:9: prompt is longer than the text tower's 77 tokens "
                            "with template \"{}\" (start and end tokens included); shorten it\n",
                            tmp_prefix());
    assert_string_equal(problems, want);
    free(want);
    free(problems);
    cm_policy_free(p);
    cm_tokenizer_free(tok);
}

/* ---------------------------------------------------------------------------- */
/* Token check with a counting stub                                               */
/* ---------------------------------------------------------------------------- */

/* Words plus start and end; exact, never truncated. */
static size_t count_words(void *ctx, const char *text, int *truncated)
{
    size_t n = 2;
    int in = 0;
    (*(int *)ctx)++;
    for (; *text; text++) {
        if (*text != ' ' && !in)
            n++;
        in = *text != ' ';
    }
    *truncated = 0;
    return n;
}

static size_t count_fail(void *ctx, const char *text, int *truncated)
{
    return (size_t)-1;
}

static void token_check_reports_position_and_template(void **state)
{
    char text[4096] = "version: 1\n"
                      "templates: [\"{}\", \"a photo of {}.\"]\n"
                      "neutral: [a street]\n"
                      "categories:\n"
                      "  - id: a\n"
                      "    threshold: 0.5\n"
                      "    action: flag\n"
                      "    contrast: [a toy]\n"
                      "    prompts:\n"
                      "      - short\n"
                      "      - ";
    /* 73 words: 75 tokens alone, 78 with "a photo of {}." */
    for (int i = 0; i < 73; i++)
        append(text, sizeof text, "w ");
    append(text, sizeof text, "\n");
    const char *path = write_tmp_str("tokens.yaml", text);
    cm_policy *p = load_ok(path);
    char *problems = NULL;
    int calls = 0;
    assert_int_equal(cm_policy_check_tokens(p, count_words, &calls, &problems), CLIPMOD_E_POLICY);
    /* 2 prompts + 1 contrast + 1 neutral, each under 2 templates. */
    assert_int_equal(calls, 8);
    char *want = expand_dir("$D/tokens.yaml:11:9: prompt is 78 tokens long with template "
                            "\"a photo of {}.\"; the text tower reads at most 77 (start and end "
                            "tokens included)\n",
                            tmp_prefix());
    assert_string_equal(problems, want);
    free(want);
    free(problems);

    assert_int_equal(cm_policy_check_tokens(p, count_fail, NULL, &problems), CLIPMOD_E_TOKENIZER);
    assert_null(problems);
    assert_int_equal(cm_policy_check_tokens(NULL, count_words, &calls, &problems),
                     CLIPMOD_E_INVALID_ARG);
    cm_policy_free(p);

    /* A policy whose prompts fit. */
    char *ok = src_path("tests/policies/valid/base.yaml");
    p = load_ok(ok);
    assert_int_equal(cm_policy_check_tokens(p, count_words, &calls, &problems), CLIPMOD_OK);
    assert_null(problems);
    cm_policy_free(p);
    free(ok);
}

/* ---------------------------------------------------------------------------- */
/* Invalid policies: exact messages and positions                                 */
/* ---------------------------------------------------------------------------- */

static void unknown_keys_suggest(void **state)
{
    expect_invalid("unknown_key.yaml",
                   "$D/unknown_key.yaml:6:5: unknown key 'thresold' in a category (did you mean "
                   "'threshold'?); allowed: id, description, prompts, contrast, threshold, "
                   "action, message, disable, head, score, context\n"
                   "$D/unknown_key.yaml:9:5: unknown key 'colour' in a category; allowed: id, "
                   "description, prompts, contrast, threshold, action, message, disable, head, "
                   "score, context\n");
}

static void duplicate_keys(void **state)
{
    expect_invalid("duplicate_key.yaml",
                   "$D/duplicate_key.yaml:3:1: duplicate key 'neutral' (first at line 2, column "
                   "1)\n"
                   "$D/duplicate_key.yaml:9:5: duplicate key 'threshold' (first at line 7, "
                   "column 5)\n");
}

static void wrong_types(void **state)
{
    expect_invalid("wrong_type.yaml",
                   "$D/wrong_type.yaml:5:14: prompts must be a list of strings, not 'a gun'\n"
                   "$D/wrong_type.yaml:6:16: threshold must be a number greater than 0 and at "
                   "most 1, not a list\n");
}

static void version_missing_or_unsupported(void **state)
{
    expect_invalid("no_version.yaml", "$D/no_version.yaml:2:1: missing key 'version' (this "
                                      "clipmod reads version 1)\n");
    expect_invalid("version2.yaml", "$D/version2.yaml:1:10: unsupported version 2: this clipmod "
                                    "reads version 1\n");
}

static void thresholds_out_of_range(void **state)
{
    expect_invalid("threshold.yaml",
                   "$D/threshold.yaml:4:42: threshold must be a number greater than 0 and at "
                   "most 1, not '1.5'\n"
                   "$D/threshold.yaml:5:44: threshold must be a number greater than 0 and at "
                   "most 1, not '0'\n"
                   "$D/threshold.yaml:6:43: threshold must be a number greater than 0 and at "
                   "most 1, not \"0.5\"\n"
                   "$D/threshold.yaml:7:43: threshold must be a number greater than 0 and at "
                   "most 1, not 'high'\n");
}

/* A policy with problems still gives what could be read, for the prompt-length check;
 * a file that does not parse gives nothing. */
static void partial_policy_with_problems(void **state)
{
    (void)state;
    char *path = src_path("tests/policies/invalid/threshold.yaml");
    char *syntax = src_path("tests/policies/invalid/syntax.yaml");
    cm_policy *p = (cm_policy *)1, *partial = NULL;
    char *problems = NULL, *plain = NULL;
    assert_int_equal(cm_policy_load_partial(path, &p, &problems, &partial), CLIPMOD_E_POLICY);
    assert_null(p);
    assert_non_null(partial);
    assert_int_equal(partial->n_categories, 4);
    assert_string_equal(partial->categories[2].id, "c");
    assert_int_equal(partial->categories[2].n_prompts, 1);
    assert_string_equal(partial->categories[2].prompts[0].text, "a bomb");
    assert_pos(partial->categories[2].prompts[0].pos, path, 6, 23);
    assert_int_equal(cm_policy_load(path, &p, &plain), CLIPMOD_E_POLICY);
    assert_string_equal(problems, plain); /* the same problems either way */
    cm_policy_free(partial);
    free(problems);
    free(plain);
    partial = (cm_policy *)1;
    problems = NULL;
    assert_int_equal(cm_policy_load_partial(syntax, &p, &problems, &partial), CLIPMOD_E_POLICY);
    assert_null(partial);
    assert_non_null(problems);
    free(problems);
    free(syntax);
    free(path);
}

static void empty_prompts(void **state)
{
    expect_invalid("empty_prompts.yaml",
                   "$D/empty_prompts.yaml:5:14: prompts is empty: a category needs at least one "
                   "prompt\n"
                   "$D/empty_prompts.yaml:10:9: prompt is empty\n");
}

static void duplicate_ids(void **state)
{
    expect_invalid("duplicate_id.yaml", "$D/duplicate_id.yaml:8:9: duplicate category id "
                                        "'weapons' (first at line 4, column 9)\n");
}

static void invalid_ids(void **state)
{
    expect_invalid("bad_id.yaml",
                   "$D/bad_id.yaml:4:9: invalid category id 'Weapons and guns': use lowercase "
                   "letters, digits, '_' and '-', starting with a letter or digit, at most 64 "
                   "bytes\n"
                   "$D/bad_id.yaml:8:5: category has no id\n");
}

static void unknown_actions(void **state)
{
    expect_invalid("unknown_action.yaml",
                   "$D/unknown_action.yaml:7:13: unknown action 'quarantene' (did you mean "
                   "'quarantine'?); valid: allow, tag, flag, quarantine, reject\n"
                   "$D/unknown_action.yaml:11:13: unknown action 'delete'; valid: allow, tag, "
                   "flag, quarantine, reject\n");
}

static void templates_need_one_hole(void **state)
{
    expect_invalid("templates.yaml",
                   "$D/templates.yaml:3:5: template must contain \"{}\" exactly once (where the "
                   "prompt goes), not \"a photo of\"\n"
                   "$D/templates.yaml:4:5: template must contain \"{}\" exactly once (where the "
                   "prompt goes), not \"{} next to {}\"\n"
                   "$D/templates.yaml:6:5: duplicate template (first at line 5, column 5)\n");
}

static void smtp_http_and_action_keys(void **state)
{
    expect_invalid("actions.yaml",
                   "$D/actions.yaml:5:11: actions.reject.smtp must be a permanent 5xx reply, not "
                   "\"451 4.7.1 Try again later\" (a 4xx reply asks the sender to try again)\n"
                   "$D/actions.yaml:6:11: actions.reject.http must be an integer from 100 to "
                   "599, not '700'\n"
                   "$D/actions.yaml:8:11: actions.quarantine.smtp must start with a 4xx or 5xx "
                   "reply code, e.g. \"550 5.7.1 Message refused\", not \"Held for review\"\n"
                   "$D/actions.yaml:10:11: actions.tag.smtp is not used: allow, tag and flag "
                   "accept the message (only quarantine and reject take an SMTP reply)\n"
                   "$D/actions.yaml:12:5: unknown key 'smpt' in actions.flag (did you mean "
                   "'smtp'?); allowed: smtp, http, message\n"
                   "$D/actions.yaml:13:3: unknown action 'delete'; valid: allow, tag, flag, "
                   "quarantine, reject\n"
                   "$D/actions.yaml:15:3: duplicate key 'quarantine' (first at line 7, column "
                   "3)\n");
    expect_invalid("smtp_enhanced.yaml",
                   "$D/smtp_enhanced.yaml:5:11: actions.reject.smtp: the enhanced status code "
                   "must begin with 5, like the reply code 550\n"
                   "$D/smtp_enhanced.yaml:7:11: actions.quarantine.smtp has a malformed enhanced "
                   "status code (class.subject.detail, e.g. 5.7.1)\n");
}

static void animation_ranges(void **state)
{
    expect_invalid("animation.yaml",
                   "$D/animation.yaml:6:6: animation.k (5) is larger than animation.frames (4)\n");
    expect_invalid("animation_range.yaml",
                   "$D/animation_range.yaml:4:11: animation.frames must be an integer from 1 to "
                   "64, not '0'\n"
                   "$D/animation_range.yaml:5:12: unknown animation.combine 'all'; valid: max, "
                   "k-of-n\n");
}

static void animation_k_needs_k_of_n(void **state)
{
    const char *a = write_tmp_str("k_max.yaml", "version: 1\nanimation: {combine: max, k: 2}\n"
                                                "neutral: [a street]\ncategories:\n"
                                                "  - {id: a, prompts: [a gun], threshold: 0.5, "
                                                "action: flag}\n");
    expect_problems(tmp_prefix(), a, CLIPMOD_E_POLICY,
                    "$D/k_max.yaml:2:30: animation.k is only used with combine: k-of-n\n");
    const char *b = write_tmp_str("no_k.yaml", "version: 1\nanimation: {combine: k-of-n}\n"
                                               "neutral: [a street]\ncategories:\n"
                                               "  - {id: a, prompts: [a gun], threshold: 0.5, "
                                               "action: flag}\n");
    expect_problems(tmp_prefix(), b, CLIPMOD_E_POLICY,
                    "$D/no_k.yaml:2:22: animation.combine is k-of-n but animation.k is not set\n");
}

static void includes_missing(void **state)
{
    expect_invalid("include_missing.yaml", "$D/include_missing.yaml:4:5: cannot include "
                                           "'nowhere.yaml': No such file or directory\n");
}

static void include_cycle(void **state)
{
    expect_invalid("cycle_a.yaml", "$D/cycle_b.yaml:2:11: include cycle: $D/cycle_a.yaml -> "
                                   "$D/cycle_b.yaml -> $D/cycle_a.yaml\n");
}

static void include_self(void **state)
{
    const char *p = write_tmp_str("self.yaml", "version: 1\ninclude: self.yaml\n");
    expect_problems(tmp_prefix(), p, CLIPMOD_E_POLICY,
                    "$D/self.yaml:2:10: include cycle: $D/self.yaml -> $D/self.yaml\n");
}

static void include_depth_limit(void **state)
{
    char name[32], text[64];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "d%d.yaml", i);
        snprintf(text, sizeof text, "version: 1\ninclude: d%d.yaml\n", i + 1);
        write_tmp_str(name, i < 9 ? text : small_policy);
    }
    /* d1 -> ... -> d9 is 8 levels of includes: allowed. */
    char *d1 = expand_dir("$D/d1.yaml", tmp_prefix());
    cm_policy *p = load_ok(d1);
    assert_int_equal(p->n_files, 9);
    cm_policy_free(p);
    free(d1);
    /* d0 -> ... -> d9 is 9. */
    char *d0 = expand_dir("$D/d0.yaml", tmp_prefix());
    expect_problems(tmp_prefix(), d0, CLIPMOD_E_POLICY,
                    "$D/d8.yaml:2:10: includes are nested more than 8 levels deep\n");
    free(d0);
}

static void include_count_limit(void **state)
{
    char text[2048] = "version: 1\ninclude:\n";
    write_tmp_str("leaf.yaml", small_policy);
    for (int i = 0; i < 40; i++)
        append(text, sizeof text, "  - leaf.yaml\n");
    const char *top = write_tmp_str("many.yaml", text);
    /* The top file and 31 leaves are 32 reads; the 32nd leaf (line 34) is one too many. */
    expect_problems(tmp_prefix(), top, CLIPMOD_E_POLICY,
                    "$D/many.yaml:34:5: too many includes: more than 32 files read\n");
}

static void disable_unknown_and_typo_ids(void **state)
{
    expect_invalid("disable_unknown.yaml",
                   "$D/disable_unknown.yaml:4:9: cannot disable category 'weapon': no included "
                   "file defines it (did you mean 'weapons'?)\n"
                   "$D/disable_unknown.yaml:6:5: category 'gor' has no prompts or action (did "
                   "you mean 'gore'?)\n");
}

static void neither_contrast_nor_neutral(void **state)
{
    expect_invalid("no_contrast.yaml",
                   "$D/no_contrast.yaml:3:5: category 'weapons' has no contrast prompts and the "
                   "policy has no neutral prompts: its score would always be 1\n");
}

static void overlapping_prompts(void **state)
{
    expect_invalid("overlap.yaml",
                   "$D/overlap.yaml:4:5: duplicate neutral prompt \"A  Street\" (also at "
                   "$D/overlap.yaml:3:5)\n"
                   "$D/overlap.yaml:8:22: prompt \"a knife\" of category 'weapons' is also one "
                   "of its contrast prompts ($D/overlap.yaml:9:16)\n"
                   "$D/overlap.yaml:8:31: duplicate prompt \"a Gun\" (also at "
                   "$D/overlap.yaml:8:15)\n"
                   "$D/overlap.yaml:9:25: contrast prompt \"a toy\" of category 'weapons' is "
                   "also a neutral prompt ($D/overlap.yaml:5:5)\n");
}

static void aliases_refused(void **state)
{
    expect_invalid("alias.yaml",
                   "$D/alias.yaml:2:10: YAML anchors and aliases are not allowed ('&n')\n"
                   "$D/alias.yaml:5:14: YAML anchors and aliases are not allowed ('*n')\n");
}

/* The classic "billion laughs": refused at the first anchor, nothing expanded. */
static void billion_laughs(void **state)
{
    const char *p = write_tmp_str("lol.yaml", "version: 1\n"
                                              "a: &a [lol, lol, lol, lol, lol, lol, lol, lol]\n"
                                              "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                              "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n");
    cm_policy *pol = NULL;
    char *problems = NULL;
    assert_int_equal(cm_policy_load(p, &pol, &problems), CLIPMOD_E_POLICY);
    assert_null(pol);
    assert_non_null(strstr(problems, "lol.yaml:2:4: YAML anchors and aliases are not allowed "
                                     "('&a')\n"));
    assert_non_null(strstr(problems, "lol.yaml:3:8: YAML anchors and aliases are not allowed "
                                     "('*a')\n"));
    free(problems);
}

static void tags_refused(void **state)
{
    expect_invalid("tags.yaml", "$D/tags.yaml:5:15: YAML tags are not supported "
                                "('tag:yaml.org,2002:binary')\n");
}

/* A context prompt may not also be a contrast or context-neutral prompt; without
 * its own prompts the context uses the category's, checked the same way. */
static void context_prompts_overlap(void **state)
{
    expect_invalid("context_overlap.yaml",
                   "$D/context_overlap.yaml:13:11: context prompt \"a toy\" of category 'threats' "
                   "is also one of its contrast prompts ($D/context_overlap.yaml:8:16)\n"
                   "$D/context_overlap.yaml:14:11: context prompt \"a friendly greeting\" of "
                   "category 'threats' is also a context-neutral prompt "
                   "($D/context_overlap.yaml:4:5)\n"
                   "$D/context_overlap.yaml:15:11: duplicate context prompt \"A Friendly  "
                   "greeting\" (also at $D/context_overlap.yaml:14:11)\n"
                   "$D/context_overlap.yaml:15:11: context prompt \"A Friendly  greeting\" of "
                   "category 'threats' is also a context-neutral prompt "
                   "($D/context_overlap.yaml:4:5)\n"
                   "$D/context_overlap.yaml:17:15: context prompt \"a friendly greeting\" of "
                   "category 'greetings' is also a context-neutral prompt "
                   "($D/context_overlap.yaml:4:5)\n");
}

static void yaml_structure(void **state)
{
    expect_invalid("syntax.yaml", "$D/syntax.yaml:5:14: YAML syntax error: did not find expected "
                                  "',' or ']' (while parsing a flow sequence at line 4, column "
                                  "14)\n");
    expect_invalid("deep.yaml", "$D/deep.yaml:2:19: nesting deeper than 16 levels\n");
    expect_invalid("empty.yaml", "$D/empty.yaml:1:1: the policy is empty: it needs at least "
                                 "'version: 1' and one category\n");
    expect_invalid("not_mapping.yaml", "$D/not_mapping.yaml:1:1: a policy must be a mapping of "
                                       "keys (version, categories, ...), not a list\n");
    expect_invalid("two_documents.yaml", "$D/two_documents.yaml:2:1: a policy file holds one YAML "
                                         "document; this is a second one\n");
}

static void invalid_text(void **state)
{
    const char *p = write_tmp_str("utf8.yaml", "version: 1\nname: ab\xff"
                                               "c\n");
    expect_problems(tmp_prefix(), p, CLIPMOD_E_POLICY,
                    "$D/utf8.yaml:2:9: unreadable text: invalid leading UTF-8 octet\n");
    p = write_tmp_str("nul.yaml", "version: 1\nname: \"a\\0b\"\nneutral: [a street]\n"
                                  "categories:\n  - {id: a, prompts: [a gun], threshold: 0.5, "
                                  "action: flag}\n");
    expect_problems(tmp_prefix(), p, CLIPMOD_E_POLICY,
                    "$D/nul.yaml:2:7: name contains a NUL character\n");
}

static void many_problems_in_one_file(void **state)
{
    expect_invalid("many.yaml",
                   "$D/many.yaml:2:10: unsupported version 3: this clipmod reads version 1\n"
                   "$D/many.yaml:3:1: unknown key 'nmae' at top level (did you mean 'name'?); "
                   "allowed: version, name, description, model, templates, neutral, actions, "
                   "animation, include, categories, context-neutral\n"
                   "$D/many.yaml:4:13: template must contain \"{}\" exactly once (where the "
                   "prompt goes), not \"a photo of\"\n"
                   "$D/many.yaml:6:21: animation.frames must be an integer from 1 to 64, not "
                   "'100'\n"
                   "$D/many.yaml:9:14: prompts is empty: a category needs at least one prompt\n"
                   "$D/many.yaml:10:16: threshold must be a number greater than 0 and at most 1, "
                   "not '2'\n"
                   "$D/many.yaml:11:13: unknown action 'ban'; valid: allow, tag, flag, "
                   "quarantine, reject\n"
                   "$D/many.yaml:12:9: duplicate category id 'weapons' (first at line 8, column "
                   "9)\n"
                   "$D/many.yaml:20:14: disable must be true or false, not 'maybe'\n");
}

static void problems_are_capped(void **state)
{
    static char text[16384];
    snprintf(text, sizeof text, "version: 1\n");
    for (int i = 0; i < 250; i++)
        append(text, sizeof text, "key%d: 1\n", i);
    const char *p = write_tmp_str("spam.yaml", text);
    cm_policy *pol = NULL;
    char *problems = NULL;
    assert_int_equal(cm_policy_load(p, &pol, &problems), CLIPMOD_E_POLICY);
    size_t lines = 0;
    for (const char *s = problems; *s; s++)
        lines += *s == '\n';
    assert_int_equal(lines, 201);
    char want[256];
    /* 250 unknown keys and "no categories": 51 not shown. */
    snprintf(want, sizeof want, "%s: 51 more problems not shown\n", p);
    assert_non_null(strstr(problems, want));
    assert_string_equal(problems + strlen(problems) - strlen(want), want);
    free(problems);
}

static void oversize_files(void **state)
{
    size_t n = (1u << 20) + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '#', n);
    big[n - 1] = '\n';
    const char *path = write_tmp("big.yaml", big, n);
    free(big);
    expect_problems(tmp_prefix(), path, CLIPMOD_E_POLICY,
                    "$D/big.yaml: cannot read: file is larger than 1 MiB\n");
    const char *top = write_tmp_str("includes_big.yaml", "version: 1\ninclude: big.yaml\n");
    expect_problems(tmp_prefix(), top, CLIPMOD_E_POLICY,
                    "$D/includes_big.yaml:2:10: cannot include 'big.yaml': file is larger than 1 "
                    "MiB\n");
}

static void unreadable_top_file(void **state)
{
    char *missing = expand_dir("$D/nope.yaml", tmp_prefix());
    expect_problems(tmp_prefix(), missing, CLIPMOD_E_IO,
                    "$D/nope.yaml: cannot read: No such file or directory\n");
    free(missing);
    /* A directory (like a FIFO or a device) is not read at all. */
    char want[256];
    snprintf(want, sizeof want, "%s: cannot read: not a regular file\n", tmpdir);
    expect_problems("", tmpdir, CLIPMOD_E_IO, want);
}

/* ---------------------------------------------------------------------------- */
/* Small functions                                                                */
/* ---------------------------------------------------------------------------- */

static void actions_and_expand(void **state)
{
    assert_string_equal(cm_action_name(CM_ACTION_ALLOW), "allow");
    assert_string_equal(cm_action_name(CM_ACTION_QUARANTINE), "quarantine");
    assert_string_equal(cm_action_name(CM_ACTION__COUNT), "unknown");
    assert_int_equal(cm_action_parse("reject"), CM_ACTION_REJECT);
    assert_int_equal(cm_action_parse("tag"), CM_ACTION_TAG);
    assert_int_equal(cm_action_parse("Reject"), -1);
    assert_int_equal(cm_action_parse(NULL), -1);
    assert_true(CM_ACTION_ALLOW < CM_ACTION_TAG && CM_ACTION_TAG < CM_ACTION_FLAG &&
                CM_ACTION_FLAG < CM_ACTION_QUARANTINE && CM_ACTION_QUARANTINE < CM_ACTION_REJECT);

    char *s = cm_policy_expand("a photo of {}.", "a cat");
    assert_string_equal(s, "a photo of a cat.");
    free(s);
    s = cm_policy_expand("{}", "a cat");
    assert_string_equal(s, "a cat");
    free(s);
    s = cm_policy_expand("{} at night", "");
    assert_string_equal(s, " at night");
    free(s);
    s = cm_policy_expand("no hole", "a cat");
    assert_string_equal(s, "a cat");
    free(s);
}

static void arguments(void **state)
{
    cm_policy *p = (cm_policy *)1;
    char *problems = (char *)1;
    assert_int_equal(cm_policy_load(NULL, &p, &problems), CLIPMOD_E_INVALID_ARG);
    assert_null(p);
    assert_null(problems);
    assert_int_equal(cm_policy_load("x", NULL, NULL), CLIPMOD_E_INVALID_ARG);
    cm_policy_free(NULL);
    assert_null(cm_policy_summary(NULL));
    /* problems may be NULL. */
    char *bad = src_path("tests/policies/invalid/many.yaml");
    assert_int_equal(cm_policy_load(bad, &p, NULL), CLIPMOD_E_POLICY);
    assert_null(p);
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(minimal_gets_defaults),
        cmocka_unit_test(include_override_add_disable),
        cmocka_unit_test(flow_style_positions),
        cmocka_unit_test_setup_teardown(same_include_twice_is_harmless, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(problems_of_a_file_read_twice_appear_once, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test(shipped_policies_load),
        cmocka_unit_test(default_policy_decisions),
        cmocka_unit_test_setup_teardown(manual_example_loads, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(shipped_prompts_fit_the_context, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(token_check_reports_position_and_template, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test(unknown_keys_suggest),
        cmocka_unit_test(duplicate_keys),
        cmocka_unit_test(wrong_types),
        cmocka_unit_test(version_missing_or_unsupported),
        cmocka_unit_test(thresholds_out_of_range),
        cmocka_unit_test(partial_policy_with_problems),
        cmocka_unit_test(empty_prompts),
        cmocka_unit_test(duplicate_ids),
        cmocka_unit_test(invalid_ids),
        cmocka_unit_test(unknown_actions),
        cmocka_unit_test(templates_need_one_hole),
        cmocka_unit_test(smtp_http_and_action_keys),
        cmocka_unit_test(animation_ranges),
        cmocka_unit_test_setup_teardown(animation_k_needs_k_of_n, setup_tmp, teardown_tmp),
        cmocka_unit_test(includes_missing),
        cmocka_unit_test(include_cycle),
        cmocka_unit_test_setup_teardown(include_self, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(include_depth_limit, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(include_count_limit, setup_tmp, teardown_tmp),
        cmocka_unit_test(disable_unknown_and_typo_ids),
        cmocka_unit_test(neither_contrast_nor_neutral),
        cmocka_unit_test(overlapping_prompts),
        cmocka_unit_test(aliases_refused),
        cmocka_unit_test_setup_teardown(billion_laughs, setup_tmp, teardown_tmp),
        cmocka_unit_test(tags_refused),
        cmocka_unit_test(context_prompts_overlap),
        cmocka_unit_test(yaml_structure),
        cmocka_unit_test_setup_teardown(invalid_text, setup_tmp, teardown_tmp),
        cmocka_unit_test(many_problems_in_one_file),
        cmocka_unit_test_setup_teardown(problems_are_capped, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(oversize_files, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(unreadable_top_file, setup_tmp, teardown_tmp),
        cmocka_unit_test(actions_and_expand),
        cmocka_unit_test(arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
