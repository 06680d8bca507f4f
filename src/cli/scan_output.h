/*
 * scan_output.h - the readable forms of `clipmod scan` results (scan_output.c).
 */
#ifndef CLIPMOD_SCAN_OUTPUT_H
#define CLIPMOD_SCAN_OUTPUT_H

#include <stdio.h>

#include "clipmod/clipmod.h"

/*
 * Write an untrusted name (uploads are named by their senders) with control
 * characters as escapes (\n, \t, \r, \xNN), so that it cannot forge a line or drive
 * the terminal.
 */
void scan_put_name(FILE *f, const char *s);

/* The result's reason sentence without the input's name the library may start with. */
const char *scan_reason_text(const clipmod_result *r);

/* ": FLAGGED cat (score S >= T)[, cat2 (...)] -> action\n", deciding category first. */
void scan_print_flagged(FILE *f, const clipmod_result *r);

/* --explain on stdout: every category with its numbers, its best prompts, the notes. */
void scan_print_explain(const clipmod_result *r);

/* What a --table run has printed so far; zero-initialise. */
typedef struct scan_table {
    size_t rows;
    int by_text; /* a row's score was raised by context text ("*") */
    int others;  /* a row had more flagged categories ("+N") */
} scan_table;

/* One row (the header before the first): verdict, action, category, score, name. */
void scan_table_row(FILE *f, scan_table *t, const clipmod_result *r);

/* After the last row: what the columns and marks mean (nothing if no row). */
void scan_table_legend(FILE *f, const scan_table *t);

#endif
