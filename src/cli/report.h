/*
 * report.h - what the parts of `clipmod policy evaluate --report DIR` share.
 *
 * The report is one self-contained HTML page, DIR/index.html: no script, no
 * stylesheet, font or image from anywhere else (a Content-Security-Policy says so to
 * the browser too); the plots are inline SVG and the thumbnails data: URIs.
 * report_html.c lays out the page, report_svg.c draws the plots, report_thumb.c makes
 * the thumbnails. The page is built in memory in an `rbuf` (a capped cm_dbuf) and
 * written at the end.
 * Everything that comes from files (paths, ids, prompts, policy names) goes through
 * rbuf_esc(), which escapes & < > " and '.
 */
#ifndef CLIPMOD_CLI_REPORT_H
#define CLIPMOD_CLI_REPORT_H

#include <stddef.h>

#include "dynbuf.h"
#include "evaluate.h"

/* Thumbnails: side in pixels, at most this many per gallery, bytes per thumbnail
 * (a larger one is left out), bytes of all thumbnails of the page (then the rest are
 * listed without a picture). These bound the page to about 8 MiB plus the text. */
#define REPORT_THUMB_PX          96
#define REPORT_GALLERY_MAX       24
#define REPORT_THUMB_MAX_BYTES   (24 * 1024)
#define REPORT_THUMBS_MAX_BYTES  (8 * 1024 * 1024)
#define REPORT_THUMB_INPUT_BYTES (64 * 1024 * 1024) /* larger files get no thumbnail */

/* The page, at most: a million-image set draws long curves, but a page past this is
 * no longer something a browser opens; the report then fails and says so. */
#define REPORT_PAGE_MAX_BYTES (256 * 1024 * 1024)
/* One thumbnail's data: URI: base64 of REPORT_THUMB_MAX_BYTES and its prefix. */
#define REPORT_URI_MAX_BYTES (REPORT_THUMB_MAX_BYTES / 3 * 4 + 64)

/* The page (or a part of it) being built: the runtime's capped buffer (src/common/
 * dynbuf.h) and the first error an append met (CM_DBUF_E_*, 0 while all went in).
 * After an error later appends are ignored and the report fails, naming the error. */
typedef struct rbuf {
    cm_dbuf d;
    int failed;
} rbuf;

/* An empty buffer of at most `max` bytes; allocates nothing. */
void rbuf_init(rbuf *b, size_t max);
void rbuf_put(rbuf *b, const char *s);
void rbuf_putn(rbuf *b, const char *s, size_t n);
void rbuf_printf(rbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `s` HTML-escaped (NULL is written as nothing). */
void rbuf_esc(rbuf *b, const char *s);
void rbuf_free(rbuf *b);

/* One category's scores and labels over the scanned images, for the plots. */
typedef struct report_column {
    double *scores;
    unsigned char *pos;
    size_t n;
} report_column;

/* The three plots of category `ec` (ROC, precision-recall, score histograms). */
void report_svg_category(rbuf *b, const eval_category *ec, const report_column *col);

/* The thumbnail budget of one page. */
typedef struct report_thumbs {
    size_t bytes_used;
    size_t made, over_budget, failed;
} report_thumbs;

/* Append a data: URI of a REPORT_THUMB_PX thumbnail of `path`; 0, or -1 when none
 * was made (unreadable, a format outside the allowlist, over a limit). */
int report_thumb_uri(rbuf *b, const char *path, report_thumbs *budget);

/* The gallery of category c's false positives (fn 0) or false negatives (fn 1) at
 * its current threshold, at most REPORT_GALLERY_MAX of them; 0 or -1 (no memory). */
int report_gallery(rbuf *b, const evaluation *ev, size_t c, int fn, report_thumbs *th);

/* Write the report of `ev` into folder `dir` (created if missing); 0 or -1 (with a
 * message on stderr). */
int eval_report_html(const evaluation *ev, const char *dir);

#endif
