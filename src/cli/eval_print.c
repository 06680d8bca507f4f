/*
 * eval_print.c - `clipmod policy evaluate` results as a table or as JSON.
 *
 * Owns the two output forms of an evaluation (evaluate.h). The JSON schema is
 * documented in clipmod(1) and is what the HTML report and scripts read; an
 * undefined metric is null there and "n/a" in the table, never NaN. With image+context
 * (eval_context.c), a category using context gets a second row, "+context", and a
 * "context" object beside its image-only numbers.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"

const char *eval_fmt(double x, char *buf, size_t size)
{
    if (isnan(x))
        snprintf(buf, size, "n/a");
    else
        snprintf(buf, size, "%.3f", x);
    return buf;
}

const char *eval_fmt_threshold(double t, char *buf, size_t size)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, t);
        if (strtod(buf, NULL) == t)
            break;
    }
    return buf;
}

static void print_counts(const metrics_at *m)
{
    char p[16], r[16], f[16];
    printf("TP %zu FP %zu FN %zu TN %zu, precision %s, recall %s, FPR %s", m->tp, m->fp, m->fn,
           m->tn, eval_fmt(m->precision, p, sizeof p), eval_fmt(m->recall, r, sizeof r),
           eval_fmt(m->fpr, f, sizeof f));
}

static void print_suggestions(const eval_category *ec)
{
    for (size_t t = 0; t < ec->n_suggested; t++) {
        const suggestion *s = &ec->suggested[t];
        char goal[64], thr[32];
        target_describe(&s->goal, goal, sizeof goal);
        if (!s->found) {
            printf("    suggested for %s: none (%s)\n", goal, s->why);
            continue;
        }
        printf("    suggested for %s: %s -> ", goal,
               eval_fmt_threshold(s->at.threshold, thr, sizeof thr));
        print_counts(&s->at);
        putchar('\n');
    }
}

static const char *const kind_names[] = {"prompt", "contrast", "neutral"};

static double delta(const eval_category *ec, size_t j)
{
    const double w = ec->attrib[j].auc_without;
    return isnan(w) || isnan(ec->auc) ? NAN : w - ec->auc;
}

/* The k lines that help most (sign -1: removing them lowers the AUC) or hurt most. */
static void print_extremes(const evaluation *ev, const eval_category *ec, int sign, size_t k)
{
    unsigned char *used = calloc(ec->n_attrib ? ec->n_attrib : 1, 1);
    for (size_t shown = 0; used && shown < k; shown++) {
        long best = -1;
        for (size_t j = 0; j < ec->n_attrib; j++) {
            const double d = delta(ec, j) * sign;
            if (!used[j] && d > 0.0 && (best < 0 || d > delta(ec, (size_t)best) * sign))
                best = (long)j;
        }
        if (best < 0)
            break;
        used[best] = 1;
        printf("      %+.4f  %-8s \"%s\"\n", delta(ec, (size_t)best),
               kind_names[ec->attrib[best].kind],
               clipmod_engine_prompt_text(ev->engine, ec->attrib[best].row));
    }
    free(used);
}

static void print_attribution(const evaluation *ev, const eval_category *ec)
{
    if (!ec->attrib || isnan(ec->auc))
        return;
    printf("    ROC AUC change when a line is removed (- the line helps, + it hurts):\n");
    print_extremes(ev, ec, -1, 3);
    print_extremes(ev, ec, 1, 3);
}

static void print_changes(const evaluation *ev)
{
    char a[96], b[96];
    if (!ev->opts->compare)
        return;
    printf("\ncompared with %s: %zu of %zu scanned images change verdict\n", ev->opts->compare,
           ev->n_changed, ev->n_scanned);
    for (size_t k = 0; k < ev->n_changes; k++) {
        const eval_change *g = &ev->changes[k];
        printf("  %s -> %s (%zu):\n", eval_verdict_text(&g->from, a, sizeof a),
               eval_verdict_text(&g->to, b, sizeof b), g->n);
        for (size_t i = 0; i < g->n; i++) {
            const eval_image *im = &ev->images[g->images[i]];
            printf("    %s [", im->item->path);
            const char *sep = "";
            for (size_t c = 0; c < ev->n_cats; c++)
                if (im->item->labels[c]) {
                    printf("%s%s", sep, ev->cats[c].info.id);
                    sep = ", ";
                }
            printf("%s]\n", *sep ? "" : "clean");
        }
    }
}

static void print_unscanned(const evaluation *ev)
{
    const size_t n = ev->n_images - ev->n_scanned;
    if (!n)
        return;
    printf("\nnot scanned (%zu), not counted above:\n", n);
    for (size_t i = 0; i < ev->n_images; i++) {
        const clipmod_result *r = ev->images[i].unscanned;
        if (r)
            printf("  %s: %s: %s\n", ev->images[i].item->path,
                   clipmod_reason_name(clipmod_result_reason(r)), clipmod_result_reason_text(r));
    }
}

/* One row of the table: a category's numbers, image-only or image+context. */
static void print_row(const char *name, const char *action, const eval_category *ec, double auc,
                      double ap, const metrics_at *m)
{
    char b[6][32];
    printf("%-16s %-10s %5zu %6zu %7s %6s %9s %5zu %5zu %5zu %6zu %9s %6s %6s\n", name, action,
           ec->positives, ec->negatives, eval_fmt(auc, b[0], 32), eval_fmt(ap, b[1], 32),
           eval_fmt_threshold(ec->info.threshold, b[2], 32), m->tp, m->fp, m->fn, m->tn,
           eval_fmt(m->precision, b[3], 32), eval_fmt(m->recall, b[4], 32),
           eval_fmt(m->fpr, b[5], 32));
}

/* "a -> b" for one metric, image-only then image+context. */
static void print_pair(const char *what, double a, double b)
{
    char x[32], y[32];
    printf(", %s %s -> %s", what, eval_fmt(a, x, sizeof x), eval_fmt(b, y, sizeof y));
}

/* Image-only against image+context, one line per category using context. */
static void print_context(const evaluation *ev)
{
    if (!ev->context)
        return;
    printf("\nimage-only -> image+context (%zu of %zu scanned images have text):\n", ev->n_text,
           ev->n_scanned);
    for (size_t c = 0; c < ev->n_cats; c++) {
        const eval_category *ec = &ev->cats[c];
        const metrics_at *a = &ec->current, *b = &ec->ctx_current;
        if (!ec->uses_context)
            continue;
        printf("  %-14s flagged %zu -> %zu", ec->info.id, a->tp + a->fp, b->tp + b->fp);
        print_pair("recall", a->recall, b->recall);
        print_pair("precision", a->precision, b->precision);
        print_pair("FPR", a->fpr, b->fpr);
        print_pair("F1", a->f1, b->f1);
        print_pair("ROC AUC", ec->auc, ec->ctx_auc);
        putchar('\n');
    }
}

void eval_print_table(const evaluation *ev)
{
    printf("%s on %s: %zu images, %zu scanned, %zu not scanned\n", ev->opts->policy,
           ev->opts->labelled, ev->n_images, ev->n_scanned, ev->n_images - ev->n_scanned);
    for (size_t i = 0; i < ev->opts->n_sets; i++)
        printf("what if: --set %s\n", ev->opts->sets[i]);
    printf("%-16s %-10s %5s %6s %7s %6s %9s %5s %5s %5s %6s %9s %6s %6s\n", "category", "action",
           "pos", "neg", "ROC-AUC", "AP", "threshold", "TP", "FP", "FN", "TN", "precision",
           "recall", "FPR");
    for (size_t c = 0; c < ev->n_cats; c++) {
        const eval_category *ec = &ev->cats[c];
        print_row(ec->info.id, clipmod_action_name(ec->info.action), ec, ec->auc, ec->ap,
                  &ec->current);
        if (ev->context && ec->uses_context)
            print_row("  +context", "", ec, ec->ctx_auc, ec->ctx_ap, &ec->ctx_current);
        print_suggestions(ec);
        print_attribution(ev, ec);
    }
    print_context(ev);
    eval_heads_print(ev);
    print_changes(ev);
    print_unscanned(ev);
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                     */
/* ------------------------------------------------------------------------ */

static json_t *num(double x)
{
    return isnan(x) ? json_null() : json_real(x);
}

static json_t *metrics_json(const metrics_at *m)
{
    return json_pack("{s:o, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "threshold",
                     num(m->threshold), "tp", (json_int_t)m->tp, "fp", (json_int_t)m->fp, "fn",
                     (json_int_t)m->fn, "tn", (json_int_t)m->tn, "precision", num(m->precision),
                     "recall", num(m->recall), "fpr", num(m->fpr), "f1", num(m->f1));
}

static json_t *suggestion_json(const suggestion *s)
{
    json_t *o = json_pack("{s:s, s:o}", "target", target_kind_name(s->goal.kind), "value",
                          s->goal.kind == TARGET_F1 ? json_null() : json_real(s->goal.value));
    if (s->found) {
        json_t *m = metrics_json(&s->at);
        json_object_update(o, m);
        json_decref(m);
    } else {
        json_object_set_new(o, "threshold", json_null());
        json_object_set_new(o, "why", json_string(s->why));
    }
    return o;
}

/* One side of a category's context comparison. */
static json_t *side_json(double auc, double ap, const metrics_at *m)
{
    return json_pack("{s:o, s:o, s:I, s:o}", "roc_auc", num(auc), "average_precision", num(ap),
                     "flagged", (json_int_t)(m->tp + m->fp), "current", metrics_json(m));
}

/* A category using context: its image-only and image+context numbers side by side. */
static json_t *category_context_json(const evaluation *ev, const eval_category *ec)
{
    return json_pack("{s:I, s:o, s:o}", "rows_with_text", (json_int_t)ev->n_text, "image_only",
                     side_json(ec->auc, ec->ap, &ec->current), "image_context",
                     side_json(ec->ctx_auc, ec->ctx_ap, &ec->ctx_current));
}

static json_t *category_json(const evaluation *ev, const eval_category *ec)
{
    json_t *sugg = json_array();
    for (size_t t = 0; t < ec->n_suggested; t++)
        json_array_append_new(sugg, suggestion_json(&ec->suggested[t]));
    json_t *o = json_pack("{s:s, s:s, s:f, s:I, s:I, s:o, s:o, s:o, s:o}", "id", ec->info.id,
                          "action", clipmod_action_name(ec->info.action), "threshold",
                          ec->info.threshold, "positives", (json_int_t)ec->positives, "negatives",
                          (json_int_t)ec->negatives, "roc_auc", num(ec->auc), "average_precision",
                          num(ec->ap), "current", metrics_json(&ec->current), "suggested", sugg);
    if (ec->attrib) {
        json_t *a = json_array();
        for (size_t j = 0; j < ec->n_attrib; j++) {
            const eval_attribution *at = &ec->attrib[j];
            const double delta =
                isnan(at->auc_without) || isnan(ec->auc) ? NAN : at->auc_without - ec->auc;
            json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:o}", "text",
                                               clipmod_engine_prompt_text(ev->engine, at->row),
                                               "kind", kind_names[at->kind], "roc_auc_without",
                                               num(at->auc_without), "delta_roc_auc", num(delta)));
        }
        json_object_set_new(o, "prompts", a);
    }
    json_t *head = eval_heads_json(&ec->head);
    if (head)
        json_object_set_new(o, "head", head);
    if (ev->context && ec->uses_context)
        json_object_set_new(o, "context", category_context_json(ev, ec));
    return o;
}

/* An image's verdict with its text (a row without text: as image-only). */
static json_t *image_context_json(const evaluation *ev, const eval_image *im)
{
    json_t *scores = json_object(), *flagged = json_array();
    json_t *text = im->text_scores ? json_object() : json_null();
    for (size_t c = 0; c < ev->n_cats; c++) {
        const char *id = ev->cats[c].info.id;
        json_object_set_new(scores, id, json_real(im->ctx_scores[c]));
        if (im->ctx_hits[c])
            json_array_append_new(flagged, json_string(id));
        if (im->text_scores && ev->cats[c].uses_context)
            json_object_set_new(text, id, json_real(im->text_scores[c]));
    }
    return json_pack("{s:I, s:o, s:o, s:o, s:s, s:s, s:o}", "text_bytes",
                     (json_int_t)im->item->text_len, "text_scores", text, "scores", scores,
                     "flagged", flagged, "state", clipmod_state_name(im->ctx_state), "action",
                     clipmod_action_name(im->ctx_action), "category",
                     im->ctx_top >= 0 ? json_string(ev->cats[im->ctx_top].info.id) : json_null());
}

static json_t *image_json(const evaluation *ev, const eval_image *im)
{
    json_t *labels = json_array();
    for (size_t c = 0; c < ev->n_cats; c++)
        if (im->item->labels[c])
            json_array_append_new(labels, json_string(ev->cats[c].info.id));
    json_t *o = json_pack("{s:s, s:o}", "path", im->item->path, "labels", labels);
    if (im->unscanned) {
        json_object_set_new(o, "state", json_string("unscanned"));
        json_object_set_new(o, "reason",
                            json_string(clipmod_reason_name(clipmod_result_reason(im->unscanned))));
        json_object_set_new(o, "reason_text",
                            json_string(clipmod_result_reason_text(im->unscanned)));
        return o;
    }
    json_t *scores = json_object();
    for (size_t c = 0; c < ev->n_cats; c++)
        json_object_set_new(scores, ev->cats[c].info.id, json_real(im->scores[c]));
    json_object_set_new(o, "state", json_string(clipmod_state_name(im->state)));
    json_object_set_new(o, "action", json_string(clipmod_action_name(im->action)));
    json_object_set_new(o, "category",
                        im->top >= 0 ? json_string(ev->cats[im->top].info.id) : json_null());
    json_object_set_new(o, "scores", scores);
    if (ev->context)
        json_object_set_new(o, "context", image_context_json(ev, im));
    return o;
}

static json_t *verdict_json(const eval_verdict *v)
{
    return json_pack("{s:s, s:s, s:s?}", "state", clipmod_state_name(v->state), "action",
                     clipmod_action_name(v->action), "category", v->category);
}

static json_t *compare_json(const evaluation *ev)
{
    json_t *changes = json_array();
    for (size_t k = 0; k < ev->n_changes; k++) {
        const eval_change *g = &ev->changes[k];
        json_t *images = json_array();
        for (size_t i = 0; i < g->n; i++) {
            const eval_image *im = &ev->images[g->images[i]];
            json_t *labels = json_array();
            for (size_t c = 0; c < ev->n_cats; c++)
                if (im->item->labels[c])
                    json_array_append_new(labels, json_string(ev->cats[c].info.id));
            json_array_append_new(
                images, json_pack("{s:s, s:o}", "path", im->item->path, "labels", labels));
        }
        json_array_append_new(changes, json_pack("{s:o, s:o, s:I, s:o}", "from",
                                                 verdict_json(&g->from), "to", verdict_json(&g->to),
                                                 "count", (json_int_t)g->n, "images", images));
    }
    return json_pack("{s:s, s:I, s:o}", "old_policy", ev->opts->compare, "changed",
                     (json_int_t)ev->n_changed, "changes", changes);
}

/* The evaluation's context: rows with text and the categories using it. */
static json_t *context_json(const evaluation *ev)
{
    json_t *ids = json_array();
    for (size_t c = 0; c < ev->n_cats; c++)
        if (ev->cats[c].uses_context)
            json_array_append_new(ids, json_string(ev->cats[c].info.id));
    return json_pack("{s:I, s:o}", "rows_with_text", (json_int_t)ev->n_text, "categories", ids);
}

int eval_print_json(const evaluation *ev)
{
    json_t *cats = json_array(), *images = json_array();
    for (size_t c = 0; c < ev->n_cats; c++)
        json_array_append_new(cats, category_json(ev, &ev->cats[c]));
    for (size_t i = 0; i < ev->n_images; i++)
        json_array_append_new(images, image_json(ev, &ev->images[i]));
    json_t *root = json_pack(
        "{s:i, s:s, s:s, s:s, s:b, s:s, s:I, s:I, s:I, s:o, s:o, s:{s:f, s:f, s:f}}", "version", 1,
        "policy", ev->opts->policy, "policy_name", clipmod_engine_policy_name(ev->engine), "model",
        clipmod_model_describe(ev->model), "demo_model", clipmod_model_is_demo(ev->model),
        "labelled", ev->opts->labelled, "images", (json_int_t)ev->n_images, "scanned",
        (json_int_t)ev->n_scanned, "unscanned", (json_int_t)(ev->n_images - ev->n_scanned),
        "categories", cats, "results", images, "seconds", "embed", ev->seconds_embed, "metrics",
        ev->seconds_metrics, "attribution", ev->seconds_attribution);
    if (root && ev->context)
        json_object_set_new(root, "context", context_json(ev));
    if (root)
        json_object_set_new(json_object_get(root, "seconds"), "context",
                            json_real(ev->seconds_context));
    if (!root)
        return -1;
    json_t *sets = json_array();
    for (size_t i = 0; i < ev->opts->n_sets; i++)
        json_array_append_new(sets, json_string(ev->opts->sets[i]));
    json_object_set_new(root, "overrides", sets);
    if (ev->opts->compare)
        json_object_set_new(root, "compare", compare_json(ev));
    /* 17 significant digits: scripts recompute the metrics from exactly these scores. */
    int rc =
        json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    fputc('\n', stdout);
    json_decref(root);
    return rc || ferror(stdout) ? -1 : 0;
}
