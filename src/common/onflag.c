/*
 * onflag.c - the on_flag command hook (see onflag.h).
 *
 * Everything the child needs (argv, the environment) is built before fork(): the
 * programs are threaded, so between fork and exec the child only calls
 * async-signal-safe functions (sigprocmask, sigaction, setpgid, open, dup2, close,
 * execve, _exit). The child unblocks the signals the daemons keep for sigwait() and
 * restores SIGPIPE, which dispositions and masks would otherwise carry into it.
 *
 * Each started hook has a detached reaper thread that polls waitpid() every 20 ms
 * (a hook is rare and short, so polling costs nothing and needs no SIGCHLD
 * handler that would steal other children's statuses) and kills the process group
 * when the timeout passes. The handle is freed by cm_onflag_free, or by the last
 * reaper when cm_onflag_free gave up waiting.
 */
#include "onflag.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define VALUE_MAX 1024
#define N_ENV     12

struct cm_onflag {
    char **argv;
    unsigned timeout_ms, max_running;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned running;
    int orphaned; /* cm_onflag_free returned: the last reaper frees */
};

typedef struct reap {
    cm_onflag *h;
    pid_t pid;
} reap;

static void destroy(cm_onflag *h)
{
    for (size_t i = 0; h->argv && h->argv[i]; i++)
        free(h->argv[i]);
    free(h->argv);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->idle);
    free(h);
}

cm_onflag *cm_onflag_new(const char *const *argv, unsigned timeout_ms, unsigned max_running,
                         char *err, size_t errlen)
{
    size_t n = 0;

    if (!argv || !argv[0] || argv[0][0] != '/') {
        snprintf(err, errlen, "the command must start with an absolute path");
        return NULL;
    }
    while (argv[n])
        n++;
    cm_onflag *h = calloc(1, sizeof *h);
    if (!h || !(h->argv = calloc(n + 1, sizeof *h->argv))) {
        free(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle, NULL);
    for (size_t i = 0; i < n; i++) {
        if (!(h->argv[i] = strdup(argv[i]))) {
            destroy(h);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
    }
    h->timeout_ms = timeout_ms ? timeout_ms : 30000;
    h->max_running = max_running ? max_running : 4;
    return h;
}

/* "NAME=value" with control characters made '?' and the value cut at VALUE_MAX bytes. */
static char *env_entry(const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strnlen(value, VALUE_MAX);
    char *e = malloc(nl + 1 + vl + 1);
    if (!e)
        return NULL;
    memcpy(e, name, nl);
    e[nl] = '=';
    for (size_t i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        e[nl + 1 + i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    e[nl + 1 + vl] = '\0';
    return e;
}

static void env_free(char **env)
{
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
}

/* The child's whole environment; -1 when out of memory. env has N_ENV + 1 slots. */
static int build_env(const cm_onflag_event *ev, char **env)
{
    char score[32], threshold[32], gen[24];
    const char *names[] = {"CLIPMOD_VERDICT",   "CLIPMOD_CATEGORY", "CLIPMOD_SCORE",
                           "CLIPMOD_THRESHOLD", "CLIPMOD_ACTION",   "CLIPMOD_FILENAME",
                           "CLIPMOD_SOURCE",    "CLIPMOD_POLICY",   "CLIPMOD_GENERATION",
                           "CLIPMOD_REASON"};
    const char *values[] = {ev->verdict,  ev->category, score,      threshold, ev->action,
                            ev->filename, ev->source,   ev->policy, gen,       ev->reason};
    size_t k = 0;

    snprintf(score, sizeof score, "%.4f", ev->score);
    snprintf(threshold, sizeof threshold, "%.4f", ev->threshold);
    snprintf(gen, sizeof gen, "%lld", ev->generation);
    if (ev->generation <= 0)
        values[8] = NULL;
    memset(env, 0, (N_ENV + 1) * sizeof *env);
    if (!(env[k++] = strdup("PATH=/usr/bin:/bin")))
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!values[i])
            continue;
        if (!(env[k++] = env_entry(names[i], values[i]))) {
            env_free(env);
            return -1;
        }
    }
    return 0;
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child(char *const *argv, char *const *env)
{
    sigset_t none;
    struct sigaction dfl;
    int fd;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0);
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
    }
    /* The daemon's sockets and files are not the hook's. */
    long max = sysconf(_SC_OPEN_MAX);
    for (long i = 3; i < (max > 0 && max < 65536 ? max : 65536); i++)
        close((int)i);
    execve(argv[0], argv, env);
    _exit(127);
}

static void reaped(cm_onflag *h)
{
    pthread_mutex_lock(&h->lock);
    h->running--;
    int last = h->orphaned && h->running == 0;
    pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->lock);
    if (last)
        destroy(h);
}

static void report_exit(const cm_onflag *h, pid_t pid, int st, int killed)
{
    if (killed)
        cm_log(CM_LOG_WARN, "on_flag command killed after its timeout",
               CM_LF_S("command", h->argv[0]), CM_LF_I("pid", pid),
               CM_LF_I("timeout_ms", h->timeout_ms), CM_LF_END);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        cm_log(CM_LOG_WARN, "on_flag command could not be started (exit 127)",
               CM_LF_S("command", h->argv[0]), CM_LF_I("pid", pid), CM_LF_END);
    else if (WIFEXITED(st) && WEXITSTATUS(st))
        cm_log(CM_LOG_WARN, "on_flag command failed", CM_LF_S("command", h->argv[0]),
               CM_LF_I("pid", pid), CM_LF_I("status", WEXITSTATUS(st)), CM_LF_END);
    else if (WIFSIGNALED(st))
        cm_log(CM_LOG_WARN, "on_flag command killed by a signal", CM_LF_S("command", h->argv[0]),
               CM_LF_I("pid", pid), CM_LF_I("signal", WTERMSIG(st)), CM_LF_END);
    else
        cm_log(CM_LOG_DEBUG, "on_flag command done", CM_LF_S("command", h->argv[0]),
               CM_LF_I("pid", pid), CM_LF_END);
}

static void *reaper(void *arg)
{
    reap r = *(reap *)arg;
    struct timespec pause = {0, 20 * 1000 * 1000};
    double deadline = cm_now() + r.h->timeout_ms / 1e3;
    int st = 0, killed = 0;

    free(arg);
    for (;;) {
        pid_t got = waitpid(r.pid, &st, WNOHANG);
        if (got == r.pid || (got < 0 && errno != EINTR))
            break;
        if (cm_now() >= deadline) {
            /* The whole group: a shell script's children go too. */
            kill(-r.pid, SIGKILL);
            kill(r.pid, SIGKILL);
            while (waitpid(r.pid, &st, 0) < 0 && errno == EINTR)
                ;
            killed = 1;
            break;
        }
        nanosleep(&pause, NULL);
    }
    report_exit(r.h, r.pid, st, killed);
    reaped(r.h);
    return NULL;
}

/* Fork the child and hand it to a detached reaper; 0, or -1 (logged, running undone). */
static int start(cm_onflag *h, char **env)
{
    pthread_attr_t attr;
    pthread_t t;
    reap *r = malloc(sizeof *r);
    pid_t pid = r ? fork() : -1;

    if (pid == 0)
        child(h->argv, env);
    if (pid < 0) {
        free(r);
        cm_log(CM_LOG_ERROR, "on_flag command not started", CM_LF_S("command", h->argv[0]),
               CM_LF_S("error", r ? strerror(errno) : "out of memory"), CM_LF_END);
        return -1;
    }
    setpgid(pid, pid); /* also in the child: whichever runs first */
    r->h = h;
    r->pid = pid;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, reaper, r);
    pthread_attr_destroy(&attr);
    if (rc) {
        /* Nobody could enforce its timeout: it does not run. */
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        free(r);
        cm_log(CM_LOG_ERROR, "on_flag command not started", CM_LF_S("command", h->argv[0]),
               CM_LF_S("error", "cannot start its reaper thread"), CM_LF_END);
        return -1;
    }
    return 0;
}

int cm_onflag_run(cm_onflag *h, const cm_onflag_event *ev)
{
    char *env[N_ENV + 1];

    pthread_mutex_lock(&h->lock);
    int full = h->running >= h->max_running;
    if (!full)
        h->running++;
    pthread_mutex_unlock(&h->lock);
    if (full) {
        cm_log(CM_LOG_WARN, "on_flag skipped", CM_LF_S("why", "max-running hooks already running"),
               CM_LF_S("filename", ev->filename), CM_LF_S("verdict", ev->verdict), CM_LF_END);
        return 1;
    }
    if (build_env(ev, env)) {
        cm_log(CM_LOG_ERROR, "on_flag command not started", CM_LF_S("command", h->argv[0]),
               CM_LF_S("error", "out of memory"), CM_LF_END);
        reaped(h);
        return -1;
    }
    int rc = start(h, env);
    env_free(env);
    if (rc)
        reaped(h);
    return rc;
}

unsigned cm_onflag_running(cm_onflag *h)
{
    pthread_mutex_lock(&h->lock);
    unsigned n = h->running;
    pthread_mutex_unlock(&h->lock);
    return n;
}

unsigned cm_onflag_free(cm_onflag *h, unsigned wait_ms)
{
    struct timespec until;

    if (!h)
        return 0;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->lock);
    while (h->running && pthread_cond_timedwait(&h->idle, &h->lock, &until) != ETIMEDOUT)
        ;
    unsigned left = h->running;
    if (left)
        h->orphaned = 1; /* the reapers kill at the timeout; the last one frees */
    pthread_mutex_unlock(&h->lock);
    if (!left)
        destroy(h);
    return left;
}
