/*
 * http_guard.c - the request-head deadline of clipmodd's HTTP connections.
 *
 * Owns the defence against slow clients that send a request's head a line at a
 * time (slowloris): libmicrohttpd's own timeout (http.client-timeout) only closes
 * a connection that is silent, so a client sending a header line every few
 * seconds could hold a connection for ever, and a few hundred of them every
 * connection clipmodd has. Here every connection must deliver its whole request
 * head within http.header-timeout seconds of being accepted, and each following
 * request on a kept-alive connection within http.header-timeout of the previous
 * answer. (http.max-connections-per-ip, libmicrohttpd's per-address limit, keeps
 * one address from taking every connection meanwhile.)
 *
 * http.c tells this module when a connection opens and closes (libmicrohttpd's
 * connection notifications, on its thread), when a head has arrived and when a
 * request was answered. A sweeper thread, four times a second, shuts down the
 * socket of each connection past its deadline, after a 408 if it has not been
 * answered before (a kept-alive connection is closed silently, as an idle one
 * would be: its client may be about to send and must not read a stray answer);
 * libmicrohttpd then sees the end of the stream and closes the connection in its
 * own thread.
 * A slot is removed under the lock before libmicrohttpd closes its descriptor, so
 * the sweeper never touches a descriptor that was closed and reused.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "daemon.h"

#define SWEEP_MS 250

struct guard_slot {
    struct guard_slot *prev, *next;
    int fd;
    double deadline; /* monotonic seconds; 0 while a request is being handled */
    int answered;    /* a request was answered on it */
    char remote[64];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    guard_slot *head;
    double timeout_s;
    int started, stop;
    pthread_t thread;
} G = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static const char REPLY[] = "HTTP/1.1 408 Request Timeout\r\n"
                            "Content-Type: application/json\r\n"
                            "Connection: close\r\n"
                            "Content-Length: 84\r\n"
                            "\r\n"
                            "{\"error\":\"the request head did not arrive within "
                            "http.header-timeout\",\"status\":408}\n";

guard_slot *guard_open(int fd, const char *remote)
{
    guard_slot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->fd = fd;
    snprintf(s->remote, sizeof s->remote, "%s", remote ? remote : "?");
    pthread_mutex_lock(&G.lock);
    s->deadline = cm_now() + G.timeout_s;
    s->next = G.head;
    if (G.head)
        G.head->prev = s;
    G.head = s;
    pthread_mutex_unlock(&G.lock);
    return s;
}

void guard_close(guard_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&G.lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        G.head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&G.lock);
    free(s);
}

void guard_head_arrived(guard_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&G.lock);
    s->deadline = 0;
    pthread_mutex_unlock(&G.lock);
}

void guard_request_done(guard_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&G.lock);
    s->deadline = cm_now() + G.timeout_s;
    s->answered = 1;
    pthread_mutex_unlock(&G.lock);
}

/* Under the lock: answer and shut down every connection past its deadline. */
static size_t sweep(double now, char *first, size_t firstlen)
{
    size_t n = 0;
    for (guard_slot *s = G.head; s; s = s->next) {
        if (!s->deadline || s->deadline > now)
            continue;
        /* Nothing else writes to a connection whose head is still arriving. */
        if (!s->answered)
            (void)!send(s->fd, REPLY, sizeof REPLY - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(s->fd, SHUT_RDWR);
        s->deadline = 0;
        if (!n++)
            snprintf(first, firstlen, "%s", s->remote);
    }
    return n;
}

static void *sweeper(void *unused)
{
    char first[64];
    (void)unused;
    pthread_mutex_lock(&G.lock);
    while (!G.stop) {
        struct timespec ts = cm_deadline(CLOCK_REALTIME, SWEEP_MS);
        pthread_cond_timedwait(&G.wake, &G.lock, &ts);
        size_t n = G.stop ? 0 : sweep(cm_now(), first, sizeof first);
        if (!n)
            continue;
        pthread_mutex_unlock(&G.lock);
        for (size_t i = 0; i < n; i++)
            metrics_rejected("header-timeout");
        cm_log(CM_LOG_INFO, "http: request head not complete within http.header-timeout; closed",
               CM_LF_I("connections", n), CM_LF_S("remote", first), CM_LF_END);
        pthread_mutex_lock(&G.lock);
    }
    pthread_mutex_unlock(&G.lock);
    return NULL;
}

int guard_start(unsigned header_timeout_s)
{
    G.timeout_s = header_timeout_s;
    G.stop = 0;
    if (pthread_create(&G.thread, NULL, sweeper, NULL))
        return -1;
    G.started = 1;
    return 0;
}

void guard_stop(void)
{
    if (!G.started)
        return;
    pthread_mutex_lock(&G.lock);
    G.stop = 1;
    pthread_cond_signal(&G.wake);
    pthread_mutex_unlock(&G.lock);
    pthread_join(G.thread, NULL);
    G.started = 0;
}
