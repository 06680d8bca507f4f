/*
 * report_svg.c - the plots of the --report page, as inline SVG.
 *
 * Owns, for one category: the ROC curve (false-positive rate against recall), the
 * precision-recall curve and the score histograms of its positives and negatives,
 * each with the current threshold (red) and the suggested ones (green, numbered as
 * in the table) marked. Curves are computed here from the scores, one point per
 * distinct score (ties are never split, as metrics.c cuts them); the marked points
 * are the metrics evaluate reported, so a marker sits on its curve. Scores are shares
 * in [0, 1] (clipmod-policy(5), SCORE), which is the histograms' axis.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "report.h"

/* Plot geometry in SVG pixels: the frame of the data inside a W x H picture. */
#define W       300
#define H       230
#define LEFT    46
#define RIGHT   10
#define TOP     22
#define BOTTOM  40
#define BINS    20
#define C_CUR   "#d62728"
#define C_SUG   "#2a9d3a"
#define C_POS   "#e6550d"
#define C_NEG   "#4e79a7"
#define C_CURVE "#222"

static double sx(double x)
{
    return LEFT + x * (W - LEFT - RIGHT);
}

static double sy(double y)
{
    return H - BOTTOM - y * (H - TOP - BOTTOM);
}

/* The opening tag, the title, the frame, ticks at 0, .25 ... 1 and axis labels. */
static void frame(rbuf *b, const char *title, const char *xlabel, const char *ylabel, int yticks)
{
    rbuf_printf(b,
                "<svg width=\"%d\" height=\"%d\" "
                "viewBox=\"0 0 %d %d\" role=\"img\" class=\"plot\"><title>",
                W, H, W, H);
    rbuf_esc(b, title);
    rbuf_printf(b, "</title><text x=\"%d\" y=\"14\" class=\"pt\">", W / 2);
    rbuf_esc(b, title);
    rbuf_printf(b, "</text><rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" class=\"fr\"/>",
                sx(0), sy(1), sx(1) - sx(0), sy(0) - sy(1));
    for (int i = 0; i <= 4; i++) {
        const double v = i / 4.0;
        rbuf_printf(b, "<text x=\"%g\" y=\"%g\" class=\"tx\">%g</text>", sx(v), sy(0) + 13, v);
        if (yticks)
            rbuf_printf(b, "<text x=\"%g\" y=\"%g\" class=\"ty\">%g</text>", sx(0) - 4, sy(v) + 4,
                        v);
        if (i && i < 4)
            rbuf_printf(b,
                        "<path d=\"M%g %gV%g\" class=\"gr\"/><path d=\"M%g %gH%g\" class=\"gr\"/>",
                        sx(v), sy(0), sy(1), sx(0), sy(v), sx(1));
    }
    rbuf_printf(b, "<text x=\"%g\" y=\"%d\" class=\"pt\">%s</text>", sx(0.5), H - 6, xlabel);
    rbuf_printf(b, "<text transform=\"translate(12 %g) rotate(-90)\" class=\"pt\">%s</text>",
                sy(0.5), ylabel);
}

static void message(rbuf *b, const char *text)
{
    rbuf_printf(b, "<text x=\"%g\" y=\"%g\" class=\"pt\">%s</text>", sx(0.5), sy(0.5), text);
}

/* A marked point: the current threshold (a red circle) or suggestion k (a green
 * square numbered k). */
static void marker(rbuf *b, double x, double y, int k)
{
    if (isnan(x) || isnan(y))
        return;
    if (k < 0) {
        rbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" class=\"mc\"/>", sx(x), sy(y));
        return;
    }
    rbuf_printf(b,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"8\" height=\"8\" class=\"ms\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" class=\"ml\">%d</text>",
                sx(x) - 4, sy(y) - 4, sx(x) + 6, sy(y) - 6, k);
}

/* Markers at the current and suggested thresholds; `pr` picks the PR plane. */
static void markers(rbuf *b, const eval_category *ec, int pr)
{
    for (size_t t = 0; t < ec->n_suggested; t++) {
        const metrics_at *m = &ec->suggested[t].at;
        if (ec->suggested[t].found)
            marker(b, pr ? m->recall : m->fpr, pr ? m->precision : m->recall, (int)t + 1);
    }
    const metrics_at *m = &ec->current;
    marker(b, pr ? m->recall : m->fpr, pr ? m->precision : m->recall, -1);
}

/* One (fpr, recall) or (recall, precision) point after each distinct score, from
 * the highest; `order` sorts the scores, highest first. */
static void curve_points(rbuf *b, const report_column *col, const size_t *order, size_t npos,
                         int pr)
{
    size_t tp = 0, fp = 0;
    const size_t nneg = col->n - npos;
    if (!pr)
        rbuf_printf(b, "%g,%g", sx(0), sy(0));
    for (size_t i = 0; i < col->n; i++) {
        col->pos[order[i]] ? tp++ : fp++;
        if (i + 1 < col->n && col->scores[order[i + 1]] == col->scores[order[i]])
            continue; /* a tie is one cut */
        const double r = (double)tp / (double)npos;
        if (pr)
            rbuf_printf(b, "%s%.1f,%.1f", i ? " " : "", sx(r), sy((double)tp / (double)(tp + fp)));
        else
            rbuf_printf(b, " %.1f,%.1f", sx((double)fp / (double)nneg), sy(r));
    }
}

static size_t count_pos(const report_column *col)
{
    size_t n = 0;
    for (size_t i = 0; i < col->n; i++)
        n += col->pos[i] != 0;
    return n;
}

static void plot_curve(rbuf *b, const eval_category *ec, const report_column *col, int pr)
{
    const size_t npos = count_pos(col);
    char auc[32], title[64];
    snprintf(title, sizeof title, pr ? "precision-recall (AP %s)" : "ROC (AUC %s)",
             eval_fmt(pr ? ec->ap : ec->auc, auc, sizeof auc));
    frame(b, title, pr ? "recall" : "false-positive rate", pr ? "precision" : "recall", 1);
    const int drawable = npos && (pr || npos < col->n);
    size_t *order = drawable ? metrics_order(col->scores, col->n) : NULL;
    if (drawable && !order) {
        b->failed = CM_DBUF_E_NOMEM;
    } else if (!order) {
        message(b, npos ? "no negatives: undefined" : "no positives: undefined");
    } else {
        if (!pr)
            rbuf_printf(b, "<path d=\"M%g %gL%g %g\" class=\"dg\"/>", sx(0), sy(0), sx(1), sy(1));
        rbuf_put(b, "<polyline class=\"cv\" points=\"");
        curve_points(b, col, order, npos, pr);
        rbuf_put(b, "\"/>");
        markers(b, ec, pr);
    }
    free(order);
    rbuf_put(b, "</svg>");
}

/* A vertical line at threshold t; k as for marker(). */
static void threshold_line(rbuf *b, double t, int k)
{
    if (isnan(t) || t < 0 || t > 1)
        return;
    rbuf_printf(b, "<path d=\"M%.1f %gV%g\" class=\"%s\"/>", sx(t), sy(0), sy(1) - 4,
                k < 0 ? "tc" : "ts");
    if (k > 0)
        rbuf_printf(b, "<text x=\"%.1f\" y=\"%g\" class=\"ml\">%d</text>", sx(t) + 2, sy(1) + 9, k);
}

/* Share of the class (positives or negatives) in each bin, drawn as half-width
 * bars: negatives on the left half of the bin, positives on the right. */
static void bars(rbuf *b, int positives, double peak, const double *share)
{
    const double bw = (sx(1) - sx(0)) / BINS;
    for (int k = 0; k < BINS; k++) {
        if (share[k] <= 0)
            continue;
        const double h = share[k] / peak * (sy(0) - sy(1));
        rbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"%s\"/>",
                    sx(0) + k * bw + (positives ? bw / 2 : 0), sy(0) - h, bw / 2, h,
                    positives ? "hp" : "hn");
    }
}

static void plot_histogram(rbuf *b, const eval_category *ec, const report_column *col)
{
    double share[2][BINS] = {{0}}, peak = 0;
    size_t count[2] = {0, 0};
    for (size_t i = 0; i < col->n; i++) {
        const double s = col->scores[i];
        int k = s >= 1 ? BINS - 1 : s <= 0 ? 0 : (int)(s * BINS);
        share[col->pos[i] ? 1 : 0][k] += 1;
        count[col->pos[i] ? 1 : 0]++;
    }
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < BINS; k++) {
            share[c][k] = count[c] ? share[c][k] / (double)count[c] : 0;
            peak = share[c][k] > peak ? share[c][k] : peak;
        }
    frame(b, "score histograms", "score", "share of its class", 0);
    if (peak > 0) {
        bars(b, 0, peak, share[0]);
        bars(b, 1, peak, share[1]);
        rbuf_printf(b, "<text x=\"%g\" y=\"%g\" class=\"ty\">%.2f</text>", sx(0) - 4, sy(1) + 4,
                    peak);
    }
    for (size_t t = 0; t < ec->n_suggested; t++)
        if (ec->suggested[t].found)
            threshold_line(b, ec->suggested[t].at.threshold, (int)t + 1);
    threshold_line(b, ec->info.threshold, -1);
    rbuf_put(b, "</svg>");
}

void report_svg_category(rbuf *b, const eval_category *ec, const report_column *col)
{
    rbuf_put(b, "<div class=\"plots\">");
    plot_curve(b, ec, col, 0);
    plot_curve(b, ec, col, 1);
    plot_histogram(b, ec, col);
    rbuf_put(b, "</div>");
}
