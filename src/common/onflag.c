/*
 * onflag.c - the `on_flag` command hook (see onflag.h).
 *
 * Owns starting the operator's program and reaping it. Everything the child needs
 * (argv, the environment, /dev/null) is prepared before fork(): in a threaded
 * program the child may only call async-signal-safe functions until execve(), so
 * it only sets its process group, resets signals (a daemon blocks SIGHUP/SIGTERM
 * for sigwait and ignores SIGPIPE; both would survive execve), moves /dev/null
 * onto 0-2, closes every other descriptor, and execs. An execve() that fails
 * writes its errno into a close-on-exec pipe, so the reaper can log "cannot start:
 * No such file or directory" rather than a bare exit status 127.
 *
 * Each started hook has a detached reaper thread owning its `job`: it waits for the
 * child (pidfd + poll where the kernel has it, else short sleeps), SIGKILLs the
 * whole process group when the timeout passes, logs the outcome and gives back the
 * running slot. The hook itself is freed by cm_onflag_free, or, when hooks were
 * still running then, by the reaper of the last one.
 */
#include "onflag.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define DEFAULT_TIMEOUT_MS 30000u
#define DEFAULT_MAX        4u
#define VALUE_MAX          1024 /* bytes of one variable's value */
#define N_VARS             13   /* the CLIPMOD_* variables and PATH */
#define ENV_MAX            (VALUE_MAX + 32)

struct cm_onflag {
    char **argv; /* a copy, NULL-terminated */
    unsigned timeout_ms, max_running;
    pthread_mutex_t lock;
    pthread_cond_t ended; /* signalled whenever a hook is reaped */
    unsigned running;
    int orphaned; /* cm_onflag_free returned early: the last reaper frees */
};

/* One started hook; owned by its reaper thread. */
typedef struct job {
    cm_onflag *h;
    pid_t pid;
    int errfd; /* read end of the exec-error pipe */
    char env[N_VARS][ENV_MAX];
    char *envp[N_VARS + 1];
} job;

static void free_hook(cm_onflag *h)
{
    for (char **a = h->argv; a && *a; a++)
        free(*a);
    free(h->argv);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->ended);
    free(h);
}

int cm_onflag_argv_problem(const char *const *argv, size_t n, char *buf, size_t len)
{
    /* "command: []" names no program to run; it is not a way to switch the hook off. */
    if (!argv || !n || !argv[0]) {
        snprintf(buf, len, "is empty: it needs the program's absolute path");
        return -1;
    }
    /* No PATH search, no shell: the operator names exactly the file that runs. */
    if (argv[0][0] != '/') {
        snprintf(buf, len, "must start with an absolute path, not '%.80s'", argv[0]);
        return -1;
    }
    return 0;
}

cm_onflag *cm_onflag_new(const char *const *argv, unsigned timeout_ms, unsigned max_running,
                         char *err, size_t errlen)
{
    size_t n = 0;
    char why[160];
    while (argv && argv[n])
        n++;
    if (cm_onflag_argv_problem(argv, n, why, sizeof why)) {
        snprintf(err, errlen, "on-flag command %s", why);
        return NULL;
    }
    cm_onflag *h = calloc(1, sizeof *h);
    pthread_condattr_t ca;
    if (h)
        h->argv = calloc(n + 1, sizeof *h->argv);
    if (!h || !h->argv)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        h->argv[i] = strdup(argv[i]);
        if (!h->argv[i])
            goto nomem;
    }
    h->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    h->max_running = max_running ? max_running : DEFAULT_MAX;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->ended, &ca);
    pthread_condattr_destroy(&ca);
    return h;
nomem:
    snprintf(err, errlen, "on_flag: out of memory");
    if (h) {
        for (size_t i = 0; h->argv && i < n; i++)
            free(h->argv[i]);
        free(h->argv);
        free(h);
    }
    return NULL;
}

/* NAME=value into out, control characters as '?', the value cut at VALUE_MAX bytes
 * (never inside a UTF-8 sequence). */
static void put_var(char *out, const char *name, const char *value)
{
    size_t o = (size_t)snprintf(out, ENV_MAX, "%s=", name), n = strlen(value);
    if (n > VALUE_MAX) {
        n = VALUE_MAX;
        while (n > 0 && ((unsigned char)value[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[o] = '\0';
}

static void build_env(job *j, const cm_onflag_event *ev)
{
    const struct {
        const char *name, *value;
    } strs[] = {{"CLIPMOD_VERDICT", ev->verdict}, {"CLIPMOD_CATEGORY", ev->category},
                {"CLIPMOD_ACTION", ev->action},   {"CLIPMOD_FILENAME", ev->filename},
                {"CLIPMOD_SOURCE", ev->source},   {"CLIPMOD_POLICY", ev->policy},
                {"CLIPMOD_REASON", ev->reason},   {"CLIPMOD_FLAGGED_BY", ev->flagged_by}};
    char num[64];
    size_t n = 0;

    put_var(j->env[n++], "PATH", "/usr/bin:/bin");
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i].value)
            put_var(j->env[n++], strs[i].name, strs[i].value);
    /* No score (NaN, e.g. unscanned) leaves the variable out rather than "nan". */
    if (isfinite(ev->score)) {
        snprintf(num, sizeof num, "%.4f", ev->score);
        put_var(j->env[n++], "CLIPMOD_SCORE", num);
    }
    if (isfinite(ev->threshold)) {
        snprintf(num, sizeof num, "%.4f", ev->threshold);
        put_var(j->env[n++], "CLIPMOD_THRESHOLD", num);
    }
    if (ev->flagged_by && strcmp(ev->flagged_by, "image") && isfinite(ev->context_score)) {
        snprintf(num, sizeof num, "%.4f", ev->context_score);
        put_var(j->env[n++], "CLIPMOD_CONTEXT_SCORE", num);
    }
    if (ev->generation > 0) {
        snprintf(num, sizeof num, "%lld", ev->generation);
        put_var(j->env[n++], "CLIPMOD_GENERATION", num);
    }
    for (size_t i = 0; i < n; i++)
        j->envp[i] = j->env[i];
    j->envp[n] = NULL;
}

/* In the child: async-signal-safe calls only, then execve. Never returns. */
static void child(char *const *argv, char *const *envp, int devnull, int errfd)
{
    struct sigaction dfl;
    sigset_t none;
    int e;

    setpgid(0, 0);
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &dfl, NULL); /* fails harmlessly for SIGKILL, SIGSTOP, RT gaps */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
        goto fail;
    /* Sockets and files of the daemon stay out of the operator's program. */
    if (close_range((unsigned)errfd + 1, ~0u, 0) != 0) {
        /* A kernel before 5.9: close what a daemon plausibly has open. */
        for (int fd = errfd + 1; fd < 4096; fd++)
            close(fd);
    }
    for (int fd = 3; fd < errfd; fd++)
        close(fd);
    execve(argv[0], argv, envp);
fail:
    e = errno;
    if (write(errfd, &e, sizeof e) < 0)
        e = 0; /* nothing more can be said; the exit status tells */
    _exit(127);
}

/* Wait up to ms for the child to end; 1 when it has (status in *st), 0 when not. */
static int wait_for(job *j, int pidfd, int64_t ms, int *st)
{
    pid_t r = waitpid(j->pid, st, WNOHANG);
    if (r == 0 && ms > 0) {
        if (pidfd >= 0) {
            struct pollfd p = {pidfd, POLLIN, 0};
            poll(&p, 1, ms > INT32_MAX ? INT32_MAX : (int)ms);
        } else {
            poll(NULL, 0, ms < 10 ? (int)ms : 10); /* no pidfd: look again soon */
        }
        r = waitpid(j->pid, st, WNOHANG);
    }
    if (r < 0 && errno == ECHILD) {
        *st = -1; /* SIGCHLD ignored: the kernel reaped it, status unknown */
        return 1;
    }
    return r == j->pid;
}

static void log_outcome(const job *j, int st, int timed_out, int exec_errno)
{
    const char *file = j->h->argv[0];
    if (exec_errno)
        cm_log(CM_LOG_ERROR, "on_flag cannot start", CM_LF_S("program", file),
               CM_LF_S("error", strerror(exec_errno)), CM_LF_END);
    else if (timed_out)
        cm_log(CM_LOG_WARN, "on_flag timed out; its process group was killed",
               CM_LF_S("program", file), CM_LF_I("timeout_ms", j->h->timeout_ms), CM_LF_END);
    else if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0)
        cm_log(CM_LOG_WARN, "on_flag failed", CM_LF_S("program", file),
               CM_LF_I("exit", WEXITSTATUS(st)), CM_LF_END);
    else if (st >= 0 && WIFSIGNALED(st))
        cm_log(CM_LOG_WARN, "on_flag failed", CM_LF_S("program", file),
               CM_LF_I("signal", WTERMSIG(st)), CM_LF_END);
    else
        cm_log(CM_LOG_DEBUG, "on_flag done", CM_LF_S("program", file), CM_LF_END);
}

/* Give the slot back; the last reaper of an orphaned hook frees it. */
static void release(cm_onflag *h)
{
    pthread_mutex_lock(&h->lock);
    h->running--;
    int last = h->orphaned && h->running == 0;
    pthread_cond_broadcast(&h->ended);
    pthread_mutex_unlock(&h->lock);
    if (last)
        free_hook(h);
}

static void *reaper(void *arg)
{
    job *j = arg;
    int st = 0, timed_out = 0, exec_errno = 0;
    int pidfd = (int)syscall(SYS_pidfd_open, j->pid, 0);
    const int64_t deadline = cm_now_ms() + j->h->timeout_ms;

    while (!wait_for(j, pidfd, deadline - cm_now_ms(), &st)) {
        if (cm_now_ms() >= deadline) {
            /* The whole group: a script's own children die with it. */
            kill(-j->pid, SIGKILL);
            timed_out = 1;
            while (waitpid(j->pid, &st, 0) < 0 && errno == EINTR)
                ;
            break;
        }
    }
    /* The pipe's write end closed at exec or exit: this read never blocks long. */
    if (read(j->errfd, &exec_errno, sizeof exec_errno) != (ssize_t)sizeof exec_errno)
        exec_errno = 0;
    if (pidfd >= 0)
        close(pidfd);
    close(j->errfd);
    log_outcome(j, st, timed_out, exec_errno);
    release(j->h);
    free(j);
    return NULL;
}

/* Reserve a running slot; 0 when full. */
static int reserve(cm_onflag *h)
{
    pthread_mutex_lock(&h->lock);
    int ok = h->running < h->max_running;
    if (ok)
        h->running++;
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/* Fork and exec j's child; 0 with j->pid and j->errfd set, or -1 with errno. */
static int start(cm_onflag *h, job *j)
{
    int pipefd[2], devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        return -1;
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        close(devnull);
        return -1;
    }
    j->pid = fork();
    if (j->pid == 0)
        child(h->argv, j->envp, devnull, pipefd[1]);
    int saved = errno;
    close(devnull);
    close(pipefd[1]);
    if (j->pid < 0) {
        close(pipefd[0]);
        errno = saved;
        return -1;
    }
    setpgid(j->pid, j->pid); /* also here: kill(-pid) must work from the first moment */
    j->errfd = pipefd[0];
    return 0;
}

int cm_onflag_run(cm_onflag *h, const cm_onflag_event *ev)
{
    pthread_attr_t attr;
    pthread_t t;

    if (!h || !ev)
        return -1;
    if (!reserve(h)) {
        cm_log(CM_LOG_WARN, "on_flag skipped", CM_LF_S("reason", "too many running"),
               CM_LF_I("max_running", h->max_running), CM_LF_S("filename", ev->filename),
               CM_LF_END);
        return 1;
    }
    job *j = calloc(1, sizeof *j);
    if (j)
        build_env(j, ev); /* before fork: the child must not allocate */
    if (!j || start(h, j) < 0) {
        cm_log(CM_LOG_ERROR, "on_flag cannot start", CM_LF_S("program", h->argv[0]),
               CM_LF_S("error", j ? strerror(errno) : "out of memory"), CM_LF_END);
        free(j);
        release(h);
        return -1;
    }
    j->h = h;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, reaper, j);
    pthread_attr_destroy(&attr);
    if (rc) {
        /* Nobody could enforce the timeout: stop the hook now rather than leak it. */
        kill(-j->pid, SIGKILL);
        waitpid(j->pid, NULL, 0);
        close(j->errfd);
        cm_log(CM_LOG_ERROR, "on_flag cannot start", CM_LF_S("program", h->argv[0]),
               CM_LF_S("error", strerror(rc)), CM_LF_END);
        free(j);
        release(h);
        return -1;
    }
    return 0;
}

unsigned cm_onflag_running(cm_onflag *h)
{
    if (!h)
        return 0;
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
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->lock);
    /* The reapers enforce each hook's own timeout meanwhile. */
    while (h->running > 0 && pthread_cond_timedwait(&h->ended, &h->lock, &until) != ETIMEDOUT)
        ;
    unsigned left = h->running;
    h->orphaned = left > 0;
    pthread_mutex_unlock(&h->lock);
    if (!left)
        free_hook(h);
    return left;
}
