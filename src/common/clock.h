/*
 * clock.h - the runtime's clocks, one copy for every program.
 *
 * Owns: reading time. Monotonic time (CLOCK_MONOTONIC) is for durations, deadlines
 * and timeouts and never jumps with the wall clock; wall time (CLOCK_REALTIME) is
 * only for timestamps shown to people (logs, loaded_at). Replaces the copies in
 * src/daemon/batcher.c (whose helper tied batcher, metrics and reload in a
 * circle), the milter and the CLI. Thread-safe, no allocation.
 */
#ifndef CM_CLOCK_H
#define CM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic seconds since an arbitrary origin, as a double (sub-microsecond). */
double cm_now(void);

/* Monotonic milliseconds since an arbitrary origin. */
int64_t cm_now_ms(void);

/* Wall-clock seconds since the Unix epoch (fractional). */
double cm_wall(void);

/* Wall-clock milliseconds since the Unix epoch. */
int64_t cm_wall_ms(void);

/*
 * Format a wall time (epoch seconds) as RFC 3339 UTC with milliseconds,
 * "2026-12-04T20:29:00.123Z", into out (at least 32 bytes). Returns out.
 */
char *cm_rfc3339(double wall, char *out, size_t outlen);

/*
 * The time `ms` milliseconds from now on `clock`, as pthread_cond_timedwait takes it:
 * CLOCK_REALTIME for a condition variable with default attributes, CLOCK_MONOTONIC
 * for one made with pthread_condattr_setclock(CLOCK_MONOTONIC).
 */
struct timespec cm_deadline(clockid_t clock, uint64_t ms);

#endif
