/*
 * override.c - what-if changes to a policy without editing its file (--set).
 *
 * Owns clipmod_engine_override(): "weapons.threshold=0.7" or "weapons.action=allow",
 * checked when given (the key and the value) and applied to the policy as
 * compile reads it, before anything is built from it, so scans, the policy's JSON
 * summary and evaluations all see the changed value. A category that the policy
 * does not have is a compile problem, with "did you mean".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "engine.h"

#define MAX_OVERRIDES 256

enum { KEY_THRESHOLD, KEY_ACTION };

typedef struct override {
    char *text; /* as given, for messages */
    char *category;
    int key;
    double threshold;
    cm_action action;
} override;

struct cm_overrides {
    override *v;
    size_t n;
};

/* Split "ID.KEY=VALUE"; fills *o (category copied) or writes why not into errbuf. */
static clipmod_error parse(const char *s, override *o, char *errbuf)
{
    const char *dot = strchr(s, '.'), *eq = strchr(s, '=');
    if (!dot || !eq || dot > eq || dot == s)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                        "--set %s: expected CATEGORY.threshold=NUMBER or CATEGORY.action=ACTION",
                        s);
    const char *key = dot + 1, *value = eq + 1;
    const size_t klen = (size_t)(eq - key);
    if (klen == 9 && !strncmp(key, "threshold", 9)) {
        char *end = NULL;
        o->key = KEY_THRESHOLD;
        o->threshold = strtod(value, &end);
        if (end == value || *end || !(o->threshold > 0.0 && o->threshold <= 1.0))
            return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                            "--set %s: a threshold is a number greater than 0 and at most 1", s);
    } else if (klen == 6 && !strncmp(key, "action", 6)) {
        const int a = cm_action_parse(value);
        if (a < 0)
            return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                            "--set %s: an action is allow, tag, flag, quarantine or reject", s);
        o->key = KEY_ACTION;
        o->action = (cm_action)a;
    } else {
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                        "--set %s: only a category's threshold and action can be set", s);
    }
    o->category = cm_strndup(s, (size_t)(dot - s));
    o->text = cm_strdup(s);
    return o->category && o->text ? CLIPMOD_OK : CLIPMOD_E_NOMEM;
}

clipmod_error clipmod_engine_override(clipmod_engine *e, const char *assignment, char *errbuf)
{
    if (!e || !assignment || e->compiled)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG,
                        "overrides are given to an engine before it is compiled");
    if (!e->overrides) {
        e->overrides = cm_calloc(1, sizeof *e->overrides);
        if (!e->overrides)
            return CLIPMOD_E_NOMEM;
    }
    struct cm_overrides *list = e->overrides;
    if (list->n == MAX_OVERRIDES)
        return cm_error(errbuf, CLIPMOD_E_INVALID_ARG, "more than %d --set options", MAX_OVERRIDES);
    override o;
    memset(&o, 0, sizeof o);
    clipmod_error rc = parse(assignment, &o, errbuf);
    override *grown = rc ? NULL : cm_realloc(list->v, (list->n + 1) * sizeof *grown);
    if (!rc && !grown)
        rc = CLIPMOD_E_NOMEM;
    if (rc) {
        cm_free(o.category);
        cm_free(o.text);
        return rc;
    }
    list->v = grown;
    list->v[list->n++] = o;
    return CLIPMOD_OK;
}

/* Append "--set TEXT: unknown category ..." to the problems. */
static void unknown(const cm_policy *p, const override *o, char **problems)
{
    const char **names = cm_calloc(p->n_categories ? p->n_categories : 1, sizeof *names);
    const char *near = NULL;
    if (names) {
        for (size_t c = 0; c < p->n_categories; c++)
            names[c] = p->categories[c].id;
        near = cm_nearest_name(o->category, names, p->n_categories);
    }
    char hint[128] = "";
    if (near)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
    char *line =
        cm_asprintf("--set %s: the policy has no category '%s'%s\n", o->text, o->category, hint);
    const size_t old = *problems ? strlen(*problems) : 0, add = line ? strlen(line) : 0;
    char *grown = line ? cm_realloc(*problems, old + add + 1) : NULL;
    if (grown) {
        memcpy(grown + old, line, add + 1);
        *problems = grown;
    }
    cm_free(line);
    cm_free(names);
}

clipmod_error cm_overrides_apply(const struct cm_overrides *list, cm_policy *p, char **problems)
{
    clipmod_error rc = CLIPMOD_OK;
    for (size_t i = 0; list && i < list->n; i++) {
        const override *o = &list->v[i];
        cm_category *cat = NULL;
        for (size_t c = 0; c < p->n_categories; c++)
            if (!strcmp(p->categories[c].id, o->category))
                cat = &p->categories[c];
        if (!cat) {
            unknown(p, o, problems);
            rc = CLIPMOD_E_POLICY;
        } else if (o->key == KEY_THRESHOLD) {
            cat->threshold = o->threshold;
        } else {
            cat->action = o->action;
        }
    }
    return rc;
}

void cm_overrides_free(struct cm_overrides *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++) {
        cm_free(list->v[i].category);
        cm_free(list->v[i].text);
    }
    cm_free(list->v);
    cm_free(list);
}
