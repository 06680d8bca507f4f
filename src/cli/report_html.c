/*
 * report_html.c - `clipmod policy evaluate --report DIR`: the evaluation as one page.
 *
 * Owns DIR/index.html: a summary table, then per category the plots (report_svg.c),
 * the confusion table at the current and the suggested thresholds, the prompt
 * attribution when it was computed, and galleries of the false positives and false
 * negatives at the current threshold (report_thumb.c), each image with why it landed
 * there (score against threshold, its labels, the category's prompts it is closest
 * to). The page needs nothing but itself: no script at all, inline CSS, and a
 * Content-Security-Policy that forbids every fetch but data: images. Text from files
 * is always HTML-escaped. The page is written to a temporary name and renamed, so a
 * failed run never leaves half a page.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "report.h"

/* Images listed as not scanned, at most (the rest are counted). */
#define REPORT_UNSCANNED_MAX 200
/* Prompt attribution: lines that help most and that hurt most shown unfolded. */
#define REPORT_ATTRIB_SHOWN 8

/* ------------------------------------------------------------------------ */
/* The buffer                                                               */
/* ------------------------------------------------------------------------ */

void rbuf_init(rbuf *b, size_t max)
{
    cm_dbuf_init(&b->d, max);
    b->failed = 0;
}

/* Keep the first error: a page missing one piece is not written at all. */
static void rbuf_check(rbuf *b, int rc)
{
    if (rc != CM_DBUF_OK && !b->failed)
        b->failed = rc;
}

void rbuf_putn(rbuf *b, const char *s, size_t n)
{
    if (!b->failed)
        rbuf_check(b, cm_dbuf_addn(&b->d, s, n));
}

void rbuf_put(rbuf *b, const char *s)
{
    rbuf_putn(b, s, strlen(s));
}

void rbuf_printf(rbuf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->failed)
        return;
    va_start(ap, fmt);
    rbuf_check(b, cm_dbuf_vaddf(&b->d, fmt, ap));
    va_end(ap);
}

void rbuf_esc(rbuf *b, const char *s)
{
    for (const char *p = s; p && *p; p++) {
        const char *e = *p == '&'    ? "&amp;"
                        : *p == '<'  ? "&lt;"
                        : *p == '>'  ? "&gt;"
                        : *p == '"'  ? "&quot;"
                        : *p == '\'' ? "&#39;"
                                     : NULL;
        if (e)
            rbuf_put(b, e);
        else
            rbuf_putn(b, p, 1);
    }
}

void rbuf_free(rbuf *b)
{
    if (!b)
        return;
    cm_dbuf_free(&b->d);
    b->failed = 0;
}

/* ------------------------------------------------------------------------ */
/* Page head and summary                                                    */
/* ------------------------------------------------------------------------ */

static const char style[] =
    "body{font:14px/1.4 sans-serif;margin:16px 24px;color:#222;background:#fff}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;"
    "border-bottom:1px solid #ccc}h3{font-size:15px;margin:14px 0 4px}"
    ".meta{color:#555;margin:2px 0}table{border-collapse:collapse;margin:6px 0}"
    "td,th{border:1px solid #ccc;padding:2px 7px;text-align:right}"
    "th{background:#f2f2f2}td.l,th.l{text-align:left}"
    ".plots{display:flex;flex-wrap:wrap;gap:10px}svg.plot{border:1px solid #ddd;background:#fff}"
    "svg text{font:11px sans-serif;fill:#333}.pt{text-anchor:middle}.tx{text-anchor:middle}"
    ".ty{text-anchor:end}.fr{fill:none;stroke:#888}.gr{stroke:#eee}.dg{stroke:#bbb;"
    "stroke-dasharray:4 3}.cv{fill:none;stroke:#222;stroke-width:1.6}"
    ".mc{fill:#d62728;stroke:#fff}.ms{fill:#2a9d3a;stroke:#fff}.ml{fill:#2a9d3a;"
    "font-weight:bold}.tc{stroke:#d62728;stroke-width:2}.ts{stroke:#2a9d3a;stroke-width:1.5;"
    "stroke-dasharray:5 3}.hp{fill:#e6550d;opacity:.8}.hn{fill:#4e79a7;opacity:.8}"
    ".key span{display:inline-block;width:11px;height:11px;margin:0 4px 0 12px;"
    "vertical-align:middle}.gal{display:flex;flex-wrap:wrap;gap:8px}"
    ".gal figure{margin:0;width:190px;border:1px solid #ddd;padding:4px;font-size:12px}"
    ".gal .box{width:96px;height:96px;display:flex;align-items:center;justify-content:center;"
    "background:#f6f6f6}.gal img{max-width:96px;max-height:96px}"
    ".gal figcaption{overflow-wrap:anywhere}.note{color:#666;font-style:italic}"
    ".help{color:#1a7f37}.hurt{color:#b42318}";

static void head(rbuf *b, const evaluation *ev)
{
    rbuf_put(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                "img-src data:; style-src 'unsafe-inline'\">"
                "<meta name=\"viewport\" content=\"width=device-width\"><title>clipmod: ");
    rbuf_esc(b, ev->opts->policy);
    rbuf_printf(b, "</title><style>%s</style></head><body>\n<h1>Policy evaluation: ", style);
    rbuf_esc(b, clipmod_engine_policy_name(ev->engine));
    rbuf_put(b, "</h1>\n<p class=\"meta\">policy <b>");
    rbuf_esc(b, ev->opts->policy);
    rbuf_put(b, "</b> on <b>");
    rbuf_esc(b, ev->opts->labelled);
    rbuf_printf(b, "</b>: %zu images, %zu scanned, %zu not scanned</p>\n<p class=\"meta\">model ",
                ev->n_images, ev->n_scanned, ev->n_images - ev->n_scanned);
    rbuf_esc(b, clipmod_model_describe(ev->model));
    rbuf_put(b, clipmod_model_is_demo(ev->model) ? " (the demo model)</p>\n" : "</p>\n");
    for (size_t i = 0; i < ev->opts->n_sets; i++) {
        rbuf_put(b, "<p class=\"meta\">what if: --set ");
        rbuf_esc(b, ev->opts->sets[i]);
        rbuf_put(b, "</p>\n");
    }
}

static void cell(rbuf *b, double x)
{
    char buf[32];
    rbuf_printf(b, "<td>%s</td>", eval_fmt(x, buf, sizeof buf));
}

static void counts_cells(rbuf *b, const metrics_at *m)
{
    char thr[32];
    rbuf_printf(b, "<td>%s</td><td>%zu</td><td>%zu</td><td>%zu</td><td>%zu</td>",
                eval_fmt_threshold(m->threshold, thr, sizeof thr), m->tp, m->fp, m->fn, m->tn);
    cell(b, m->precision);
    cell(b, m->recall);
    cell(b, m->fpr);
    cell(b, m->f1);
}

static void summary(rbuf *b, const evaluation *ev)
{
    rbuf_put(b, "<h2>Summary at the current thresholds</h2>\n<table><tr><th class=\"l\">category"
                "</th><th class=\"l\">action</th><th>positives</th><th>negatives</th><th>ROC AUC"
                "</th><th>AP</th><th>threshold</th><th>TP</th><th>FP</th><th>FN</th><th>TN</th>"
                "<th>precision</th><th>recall</th><th>FPR</th><th>F1</th></tr>\n");
    for (size_t c = 0; c < ev->n_cats; c++) {
        const eval_category *ec = &ev->cats[c];
        rbuf_printf(b, "<tr><td class=\"l\"><a href=\"#c%zu\">", c);
        rbuf_esc(b, ec->info.id);
        rbuf_printf(b, "</a></td><td class=\"l\">%s</td><td>%zu</td><td>%zu</td>",
                    clipmod_action_name(ec->info.action), ec->positives, ec->negatives);
        cell(b, ec->auc);
        cell(b, ec->ap);
        counts_cells(b, &ec->current);
        rbuf_put(b, "</tr>\n");
    }
    rbuf_put(b, "</table>\n");
}

/* ------------------------------------------------------------------------ */
/* One category                                                             */
/* ------------------------------------------------------------------------ */

static void confusion(rbuf *b, const eval_category *ec)
{
    rbuf_put(b, "<h3>At the current and the suggested thresholds</h3>\n<table><tr>"
                "<th class=\"l\">threshold for</th><th>threshold</th><th>TP</th><th>FP</th>"
                "<th>FN</th><th>TN</th><th>precision</th><th>recall</th><th>FPR</th><th>F1</th>"
                "</tr>\n<tr><td class=\"l\"><b style=\"color:#d62728\">&#9679;</b> current</td>");
    counts_cells(b, &ec->current);
    rbuf_put(b, "</tr>\n");
    for (size_t t = 0; t < ec->n_suggested; t++) {
        const suggestion *s = &ec->suggested[t];
        char goal[64];
        target_describe(&s->goal, goal, sizeof goal);
        rbuf_printf(b, "<tr><td class=\"l\"><b class=\"ml\">%zu</b> suggested for ", t + 1);
        rbuf_esc(b, goal);
        rbuf_put(b, "</td>");
        if (s->found) {
            counts_cells(b, &s->at);
        } else {
            rbuf_put(b, "<td class=\"l\" colspan=\"9\">none (");
            rbuf_esc(b, s->why);
            rbuf_put(b, ")</td>");
        }
        rbuf_put(b, "</tr>\n");
    }
    rbuf_put(b, "</table>\n");
}

static const char *const kind_names[] = {"prompt", "contrast", "neutral"};

static double attrib_delta(const eval_category *ec, size_t j)
{
    const double w = ec->attrib[j].auc_without;
    return isnan(w) || isnan(ec->auc) ? NAN : w - ec->auc;
}

static const eval_category *sort_cat;

/* Lines that help most first (the most negative change); undefined ones last. */
static int by_delta(const void *a, const void *b)
{
    const double x = attrib_delta(sort_cat, *(const size_t *)a);
    const double y = attrib_delta(sort_cat, *(const size_t *)b);
    if (isnan(x) || isnan(y))
        return isnan(x) - isnan(y);
    return (x > y) - (x < y);
}

/* Rows k in [from, to) of the attribution table, in `order`. */
static void attribution_rows(rbuf *b, const evaluation *ev, const eval_category *ec,
                             const size_t *order, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++) {
        const size_t j = order[k];
        const double d = attrib_delta(ec, j);
        char w[32];
        rbuf_printf(b, "<tr><td class=\"%s\">", isnan(d) || d == 0 ? "" : d < 0 ? "help" : "hurt");
        rbuf_printf(b, isnan(d) ? "n/a" : "%+.4f", d);
        rbuf_printf(b, "</td><td>%s</td><td class=\"l\">%s</td><td class=\"l\">",
                    eval_fmt(ec->attrib[j].auc_without, w, sizeof w),
                    kind_names[ec->attrib[j].kind]);
        rbuf_esc(b, clipmod_engine_prompt_text(ev->engine, ec->attrib[j].row));
        rbuf_put(b, "</td></tr>\n");
    }
}

static const char attrib_header[] = "<table><tr><th>change</th><th>AUC without</th>"
                                    "<th class=\"l\">kind</th><th class=\"l\">prompt</th></tr>\n";

/* Every line that changes the AUC, sorted; the others folded under <details>. */
static void attribution(rbuf *b, const evaluation *ev, const eval_category *ec)
{
    if (!ec->attrib || isnan(ec->auc))
        return;
    size_t *order = malloc((ec->n_attrib ? ec->n_attrib : 1) * sizeof *order);
    size_t moving = 0, zero = 0;
    if (!order) {
        b->failed = CM_DBUF_E_NOMEM;
        return;
    }
    for (size_t j = 0; j < ec->n_attrib; j++)
        if (attrib_delta(ec, j) != 0)
            order[moving++] = j;
    for (size_t j = 0; j < ec->n_attrib; j++)
        if (attrib_delta(ec, j) == 0)
            order[moving + zero++] = j;
    sort_cat = ec;
    qsort(order, moving, sizeof *order, by_delta);
    rbuf_put(b, "<h3>Prompt attribution</h3>\n<p class=\"note\">The category's ROC AUC when one "
                "line of the policy is left out: a negative change means the line helps, a "
                "positive one that removing it would help.</p>\n");
    /* The REPORT_ATTRIB_SHOWN lines that help most and those that hurt most, in view. */
    const size_t head = moving > 2 * REPORT_ATTRIB_SHOWN ? REPORT_ATTRIB_SHOWN : moving;
    const size_t tail = moving > 2 * REPORT_ATTRIB_SHOWN ? moving - REPORT_ATTRIB_SHOWN : moving;
    rbuf_put(b, attrib_header);
    attribution_rows(b, ev, ec, order, 0, head);
    attribution_rows(b, ev, ec, order, tail, moving);
    rbuf_put(b, "</table>\n");
    if (zero || tail > head) {
        rbuf_printf(b,
                    "<details><summary>%zu more lines (%zu change the AUC less, %zu do not "
                    "change it)</summary>",
                    tail - head + zero, tail - head, zero);
        rbuf_put(b, attrib_header);
        attribution_rows(b, ev, ec, order, head, tail);
        attribution_rows(b, ev, ec, order, moving, moving + zero);
        rbuf_put(b, "</table></details>\n");
    }
    free(order);
}

/* Category c's scores and labels over the scanned images. */
static int make_column(const evaluation *ev, size_t c, report_column *col)
{
    col->scores = malloc((ev->n_scanned ? ev->n_scanned : 1) * sizeof *col->scores);
    col->pos = malloc(ev->n_scanned ? ev->n_scanned : 1);
    col->n = 0;
    if (!col->scores || !col->pos)
        return -1;
    for (size_t i = 0; i < ev->n_images; i++) {
        const eval_image *im = &ev->images[i];
        if (im->unscanned)
            continue;
        col->scores[col->n] = im->scores[c];
        col->pos[col->n++] = im->item->labels[c];
    }
    return 0;
}

static void legend(rbuf *b)
{
    rbuf_put(b, "<p class=\"key\"><span style=\"background:#d62728;border-radius:6px\"></span>"
                "current threshold<span style=\"background:#2a9d3a\"></span>suggested threshold "
                "(numbered as in the table)<span style=\"background:#4e79a7\"></span>negatives"
                "<span style=\"background:#e6550d\"></span>positives</p>\n");
}

static int category(rbuf *b, const evaluation *ev, size_t c, report_thumbs *th)
{
    const eval_category *ec = &ev->cats[c];
    report_column col = {NULL, NULL, 0};
    char thr[32];
    int rc = make_column(ev, c, &col);
    if (!rc) {
        rbuf_printf(b, "<h2 id=\"c%zu\">", c);
        rbuf_esc(b, ec->info.id);
        rbuf_printf(b,
                    "</h2>\n<p class=\"meta\">action %s, threshold %s; %zu positives, %zu "
                    "negatives</p>\n",
                    clipmod_action_name(ec->info.action),
                    eval_fmt_threshold(ec->info.threshold, thr, sizeof thr), ec->positives,
                    ec->negatives);
        report_svg_category(b, ec, &col);
        legend(b);
        confusion(b, ec);
        attribution(b, ev, ec);
        rc = report_gallery(b, ev, c, 0, th);
    }
    if (!rc)
        rc = report_gallery(b, ev, c, 1, th);
    free(col.scores);
    free(col.pos);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The rest of the page, and writing it                                      */
/* ------------------------------------------------------------------------ */

static void unscanned(rbuf *b, const evaluation *ev)
{
    const size_t n = ev->n_images - ev->n_scanned;
    size_t shown = 0;
    if (!n)
        return;
    rbuf_printf(b, "<h2>Not scanned (%zu), not counted above</h2>\n<ul>\n", n);
    for (size_t i = 0; i < ev->n_images && shown < REPORT_UNSCANNED_MAX; i++) {
        const clipmod_result *r = ev->images[i].unscanned;
        if (!r)
            continue;
        rbuf_put(b, "<li>");
        rbuf_esc(b, ev->images[i].item->path);
        rbuf_printf(b, ": %s: ", clipmod_reason_name(clipmod_result_reason(r)));
        rbuf_esc(b, clipmod_result_reason_text(r));
        rbuf_put(b, "</li>\n");
        shown++;
    }
    rbuf_put(b, "</ul>\n");
    if (shown < n)
        rbuf_printf(b, "<p class=\"note\">%zu more not listed (at most %d are).</p>\n", n - shown,
                    REPORT_UNSCANNED_MAX);
}

static int write_page(const char *dir, const rbuf *b)
{
    char path[4096], tmp[4096];
    if (mkdir(dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "clipmod: --report %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (snprintf(path, sizeof path, "%s/index.html", dir) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/.index.html.tmp", dir) >= (int)sizeof tmp) {
        fprintf(stderr, "clipmod: --report %s: path too long\n", dir);
        return -1;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "clipmod: --report: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    const size_t len = cm_dbuf_len(&b->d);
    const int bad = fwrite(cm_dbuf_ptr(&b->d), 1, len, f) != len;
    if (fclose(f) || bad || rename(tmp, path)) {
        fprintf(stderr, "clipmod: --report: writing %s: %s\n", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

int eval_report_html(const evaluation *ev, const char *dir)
{
    rbuf b;
    report_thumbs th;
    int rc = 0;
    rbuf_init(&b, REPORT_PAGE_MAX_BYTES);
    memset(&th, 0, sizeof th);
    head(&b, ev);
    summary(&b, ev);
    for (size_t c = 0; !rc && c < ev->n_cats; c++)
        rc = category(&b, ev, c, &th);
    unscanned(&b, ev);
    rbuf_printf(&b,
                "<p class=\"note\">%zu thumbnails (%zu bytes); %zu left out over the page's "
                "budget of %d bytes, %zu could not be made.</p>\n</body></html>\n",
                th.made, th.bytes_used, th.over_budget, REPORT_THUMBS_MAX_BYTES, th.failed);
    if (b.failed == CM_DBUF_E_TOOBIG) {
        fprintf(stderr, "clipmod: --report: the page would pass %d MiB; report a smaller set\n",
                REPORT_PAGE_MAX_BYTES >> 20);
        rc = -1;
    } else if (rc || b.failed) {
        fprintf(stderr, "clipmod: --report: out of memory\n");
        rc = -1;
    }
    if (!rc)
        rc = write_page(dir, &b);
    rbuf_free(&b);
    return rc;
}
