/*
 * clock.c - monotonic and wall clocks (see clock.h).
 */
#include "clock.h"

#include <stdio.h>

static double read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t read_clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double cm_now(void)
{
    return read_clock(CLOCK_MONOTONIC);
}

int64_t cm_now_ms(void)
{
    return read_clock_ms(CLOCK_MONOTONIC);
}

double cm_wall(void)
{
    return read_clock(CLOCK_REALTIME);
}

int64_t cm_wall_ms(void)
{
    return read_clock_ms(CLOCK_REALTIME);
}

char *cm_rfc3339(double wall, char *out, size_t outlen)
{
    time_t sec = (time_t)wall;
    long ms = (long)((wall - (double)sec) * 1000.0);
    struct tm tm;

    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03ldZ", ms);
    return out;
}

struct timespec cm_deadline(clockid_t clock, uint64_t ms)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}
