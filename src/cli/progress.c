/*
 * progress.c - the scan progress bar: done/total, rate, ETA and the current file.
 *
 * Owns everything clipmod writes to the terminal that is not a result: one line on
 * stderr, rewritten in place with a carriage return. It is drawn only on a terminal
 * and rate-limited, so a scan of thousands of tiny images does not spend its time
 * repainting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "clock.h"
#include "progress.h"

/* Ten redraws a second look live; more only costs terminal bandwidth. */
#define REDRAW_INTERVAL 0.1
/* Scans shorter than this finish before a bar would be readable. */
#define FIRST_DRAW_DELAY 0.25

static int terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

void progress_start(progress *p, size_t total, int want)
{
    const char *term = getenv("TERM");
    memset(p, 0, sizeof *p);
    p->total = total;
    p->start = cm_now();
    p->active = want && isatty(STDERR_FILENO) && !(term && !strcmp(term, "dumb"));
    p->shared = isatty(STDOUT_FILENO);
}

static void format_duration(char *buf, size_t size, double s)
{
    long t = s < 0 ? 0 : s > 359999 ? 359999 : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

/*
 * Append at most `cols` columns of `name` to `out`, keeping its end (the file name
 * is the informative part of a long path). File names are untrusted: control
 * characters would move the cursor, so they become '?'. One UTF-8 sequence counts
 * as one column; wider characters are cut by the terminal, since autowrap is off
 * while the bar is drawn.
 */
static void append_name(char *out, size_t size, const char *name, int cols)
{
    size_t len = strlen(out), n = strlen(name);
    int count = 0;
    const char *start = name + n;

    if (cols < 4)
        return;
    while (start > name) {
        const char *c = start - 1;
        while (c > name && ((unsigned char)*c & 0xC0) == 0x80)
            c--;
        if (count + 1 > cols)
            break;
        count++;
        start = c;
    }
    if (start > name) {
        /* Cut: make room for the ellipsis. */
        for (int drop = 0; drop < 3 && *start; drop++) {
            start++;
            while (((unsigned char)*start & 0xC0) == 0x80)
                start++;
        }
        if (len + 3 < size) {
            memcpy(out + len, "...", 3);
            len += 3;
        }
    }
    for (const char *c = start; *c && len + 1 < size; c++)
        out[len++] = (unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c;
    out[len] = '\0';
}

void progress_update(progress *p, size_t done, const char *current)
{
    char line[1024], eta[32], rate[32];
    double now;
    int width, bar, filled;
    size_t len;

    if (!p->active)
        return;
    now = cm_now();
    if (now - p->start < FIRST_DRAW_DELAY || now - p->last_draw < REDRAW_INTERVAL)
        return;
    p->last_draw = now;
    p->drawn = 1;

    double elapsed = now - p->start, per_s = elapsed > 0 ? done / elapsed : 0;
    if (done && per_s > 0) {
        snprintf(rate, sizeof rate, per_s >= 10 ? "%.0f/s" : "%.1f/s", per_s);
        format_duration(eta, sizeof eta, (double)(p->total - done) / per_s);
    } else {
        snprintf(rate, sizeof rate, "-/s");
        snprintf(eta, sizeof eta, "-:--");
    }
    width = terminal_width();
    bar = width >= 100 ? 30 : width >= 60 ? 20 : 10;
    filled = p->total ? (int)((double)bar * done / p->total) : 0;

    line[0] = '[';
    for (int i = 0; i < bar; i++)
        line[1 + i] = i < filled ? '=' : i == filled ? '>' : ' ';
    len = (size_t)bar + 1;
    len += (size_t)snprintf(line + len, sizeof line - len, "] %zu/%zu  %s  ETA %s  ", done,
                            p->total, rate, eta);
    line[len] = '\0';
    if (current)
        append_name(line, sizeof line, current, width - 1 - (int)len);
    /* \r home, autowrap off while writing, erase to the end of the line. */
    fprintf(stderr, "\r\033[?7l%s\033[K\033[?7h", line);
    fflush(stderr);
}

void progress_hide(progress *p)
{
    if (!p->active || !p->drawn)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->drawn = 0;
}

void progress_clear(progress *p)
{
    if (p->shared)
        progress_hide(p);
}

void progress_end(progress *p)
{
    progress_hide(p);
    p->active = 0;
}
