/*
 * drain.c - clipmodd's stop in phases (clipmodd(8), STOPPING).
 *
 * Owns what happens between the first SIGTERM and the orderly stop of main.c, so
 * that a rolling restart behind a load balancer (contrib/haproxy.cfg) loses no
 * request:
 *
 *   1. draining: /v1/health answers 503 {"status": "draining"} and clamd's PING
 *      "DRAINING. ERROR", answers close their connections, and everything else is
 *      still served for drain-grace, long enough for the balancer's health checks
 *      to mark this daemon down and send elsewhere. A daemon whose health nobody
 *      has checked since it started has no balancer to tell: it skips the grace.
 *   2. the doors stop accepting (a connection attempt is refused, which a balancer
 *      retries on another server) and the requests in flight (uploads, scans,
 *      clamd commands) are answered, for at most drain-timeout;
 *   3. main.c's orderly stop (http_stop, clamd_stop, batcher_stop, ...).
 *
 * Signals stay with the main thread (sigtimedwait here, as sigwait in main.c): a
 * second SIGTERM or SIGINT ends the drain at once, SIGHUP is ignored while it runs.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "clock.h"
#include "daemon.h"
#include "drain.h"

/* How often phase 2 looks at what is still in flight. */
#define POLL_MS 20

static atomic_int draining, checked;

int drain_active(void)
{
    return atomic_load(&draining);
}

void drain_note_check(void)
{
    atomic_store(&checked, 1);
}

static const char *sig_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal";
}

/* Wait until `until` (cm_now's clock) for a stop signal: it, or 0 when none came. */
static int wait_stop_signal(const sigset_t *sigs, double until)
{
    for (;;) {
        double left = until - cm_now();
        if (left <= 0)
            return 0;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (sig == SIGHUP)
            cm_log(CM_LOG_WARN, "SIGHUP ignored: clipmodd is draining", CM_LF_END);
        else if (sig < 0 && errno != EAGAIN && errno != EINTR)
            return 0;
    }
}

static unsigned in_flight(int http_on, int clamd_on)
{
    return (http_on ? http_in_flight() : 0) + (clamd_on ? clamd_in_flight() : 0);
}

/* Phase 1: health checks fail while everything is served. The second signal, or 0. */
static int grace(const dconfig *c, const sigset_t *sigs, int sig)
{
    int watched = atomic_load(&checked);

    atomic_store(&draining, 1);
    metrics_draining(1);
    cm_log(CM_LOG_INFO, "draining: health checks answer draining, requests are still served",
           CM_LF_S("signal", sig_name(sig)), CM_LF_I("drain_grace_ms", c->drain_grace_ms),
           CM_LF_I("drain_timeout_ms", c->drain_timeout_ms), CM_LF_END);
    if (!c->drain_grace_ms)
        return 0;
    if (!watched) {
        cm_log(CM_LOG_INFO, "draining: no health check was asked since start: no grace", CM_LF_END);
        return 0;
    }
    return wait_stop_signal(sigs, cm_now() + c->drain_grace_ms / 1e3);
}

int drain_run(const dconfig *c, const sigset_t *sigs, int sig, int http_on, int clamd_on)
{
    double t0 = cm_now(), deadline;
    unsigned left;
    int again = grace(c, sigs, sig);

    if (again)
        goto forced;
    if (http_on)
        http_quiesce();
    if (clamd_on)
        clamd_quiesce();
    cm_log(CM_LOG_INFO, "draining: stopped accepting, answering requests in flight",
           CM_LF_I("http", http_on ? http_in_flight() : 0),
           CM_LF_I("clamd", clamd_on ? clamd_in_flight() : 0), CM_LF_END);
    deadline = cm_now() + c->drain_timeout_ms / 1e3;
    for (left = in_flight(http_on, clamd_on); left > 0 && cm_now() < deadline;
         left = in_flight(http_on, clamd_on)) {
        double next = cm_now() + POLL_MS / 1e3;
        again = wait_stop_signal(sigs, next < deadline ? next : deadline);
        if (again)
            goto forced;
    }
    if (left) {
        cm_log(CM_LOG_WARN, "draining: drain-timeout passed with requests in flight",
               CM_LF_I("requests", left), CM_LF_END);
        return DRAIN_TIMEOUT;
    }
    cm_log(CM_LOG_INFO, "drained: every request in flight was answered",
           CM_LF_F("ms", (cm_now() - t0) * 1e3), CM_LF_END);
    return DRAIN_DONE;
forced:
    cm_log(CM_LOG_WARN, "second stop signal: stopping now, requests in flight are dropped",
           CM_LF_S("signal", sig_name(again)), CM_LF_END);
    return DRAIN_FORCED;
}
