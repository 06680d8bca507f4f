/*
 * drain.h - clipmodd's stop in phases, so that a load balancer loses nothing (drain.c).
 *
 * On SIGTERM (or SIGINT) clipmodd drains (clipmodd(8), STOPPING): health checks
 * fail first while everything is still served (drain-grace), then the doors stop
 * accepting and the requests in flight are answered (drain-timeout), then the
 * daemon stops as before. The doors (http.c, clamd.c) ask drain_active() what
 * their health checks answer, and tell drain_note_check() that one was asked.
 */
#ifndef CLIPMODD_DRAIN_H
#define CLIPMODD_DRAIN_H

#include <signal.h>

#include "daemon.h"

/* drain_run's outcomes. */
enum { DRAIN_DONE = 0, DRAIN_TIMEOUT = 1, DRAIN_FORCED = 2 };

/*
 * The main thread, after the first stop signal `sig` (the others of `sigs` stay
 * blocked): the phases above, logged. A second SIGTERM or SIGINT ends them at once
 * (DRAIN_FORCED: the caller exits without waiting); SIGHUP is ignored meanwhile.
 * DRAIN_TIMEOUT: drain-timeout passed with requests still in flight.
 */
int drain_run(const dconfig *c, const sigset_t *sigs, int sig, int http_on, int clamd_on);

/* 1 from the first stop signal on: /v1/health answers 503 "draining", PING "DRAINING". */
int drain_active(void);

/* A health check was answered (GET /v1/health, clamd PING): someone is watching. */
void drain_note_check(void);

/* The doors' parts of a drain (http.c, clamd.c): stop accepting, and what is in flight. */
void http_quiesce(void);
unsigned http_in_flight(void);
void clamd_quiesce(void);
unsigned clamd_in_flight(void);

/* The clipmodd_draining gauge (metrics.c). */
void metrics_draining(int on);

#endif
