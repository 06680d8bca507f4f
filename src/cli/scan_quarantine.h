/*
 * scan_quarantine.h - --move DIR / --copy DIR for flagged files of `clipmod scan`.
 */
#ifndef CLIPMOD_CLI_SCAN_QUARANTINE_H
#define CLIPMOD_CLI_SCAN_QUARANTINE_H

/*
 * Move (move != 0) or copy `path` into directory `dir` under its base name, or
 * name.001, name.002 ... when that exists: nothing is ever overwritten. Prints
 * what was done or the error; returns 0 or -1.
 */
int scan_quarantine(const char *path, const char *dir, int move, int quiet);

#endif
