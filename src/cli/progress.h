/*
 * progress.h - a one-line progress bar on the terminal, for long scans.
 *
 * The bar lives on stderr and only when stderr is a terminal, so pipes, logs and
 * the results on stdout never contain it. Callers clear it before writing a line
 * of their own to the terminal; the next update draws it again.
 */
#ifndef CLIPMOD_CLI_PROGRESS_H
#define CLIPMOD_CLI_PROGRESS_H

#include <stddef.h>

typedef struct progress {
    int active;       /* drawing at all: stderr is a terminal and the caller wants it */
    int drawn;        /* a bar is on the screen now */
    int shared;       /* stdout is a terminal too: results are written under the bar */
    size_t total;     /* inputs to scan */
    double start;     /* monotonic seconds at progress_start() */
    double last_draw; /* when the bar was last drawn */
} progress;

/*
 * Start a bar for `total` inputs. With `want` zero, on a non-terminal stderr, or
 * with TERM=dumb, every other call does nothing.
 */
void progress_start(progress *p, size_t total, int want);

/*
 * `done` of the total are finished and `current` (may be NULL) is being scanned.
 * Redraws at most ten times a second, and not during the first quarter second so
 * that quick scans never flash a bar.
 */
void progress_update(progress *p, size_t done, const char *current);

/*
 * Call before printing results on stdout: when stdout is a terminal too, the bar is
 * erased so that the line does not land in it. Else the bar stays.
 */
void progress_clear(progress *p);

/* Erase the bar before writing a message to stderr; the next update draws it again. */
void progress_hide(progress *p);

/* Erase the bar for good (wherever stdout goes). */
void progress_end(progress *p);

#endif
