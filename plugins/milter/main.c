/*
 * main.c - clipmod-milter's process: options, configuration, start, signals, reload.
 *
 * A mail filter (libmilter) that scans the images of each message with a clipmod
 * policy, in the habits of clamav-milter. This file owns the process around the
 * filter: the command line (--check, --message), the configuration (conf.c), the
 * model (loaded once) and the runtime (configuration + engine, reference-counted and
 * swapped whole on SIGHUP/SIGUSR2 so messages in flight finish on the engine they
 * started with), logging, the libmilter thread, and the orderly stop on SIGTERM
 * (new messages deferred, those in flight finished, then libmilter stopped).
 * The callbacks are callbacks.c's, judging a message is scan.c's.
 */
#include <errno.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "milter.h"

#ifndef CLIPMOD_SYSCONFDIR
#define CLIPMOD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG CLIPMOD_SYSCONFDIR "/clipmod/clipmod-milter.yaml"
#define PROG           CM_MILTER_PROG

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

static int log_to_syslog;
static atomic_int log_level = LOG_INFO;

static const char *level_name(int prio)
{
    switch (prio) {
    case LOG_ERR:
        return "error";
    case LOG_WARNING:
        return "warning";
    case LOG_NOTICE:
        return "notice";
    case LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

void cm_mlog(int prio, const char *qid, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    if (prio > atomic_load(&log_level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log_to_syslog) {
        syslog(prio, "%s%s%s", qid ? qid : "", qid ? ": " : "", line);
    } else {
        struct timespec ts;
        struct tm tm;
        char when[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        /* One fprintf per line: stdio locks the stream, so lines never mix. */
        fprintf(stderr, "%s.%03ldZ %s[%ld]: %s: %s%s%s\n", when, ts.tv_nsec / 1000000, PROG,
                (long)getpid(), level_name(prio), qid ? qid : "", qid ? ": " : "", line);
    }
}

/* Log a block of lines from the library (policy problems), one entry each. */
static void log_lines(int prio, const char *text)
{
    const char *p = text;
    while (p && *p) {
        size_t n = strcspn(p, "\n");
        if (n)
            cm_mlog(prio, NULL, "%.*s", (int)n, p);
        p += n + (p[n] == '\n');
    }
}

/* ------------------------------------------------------------------------ */
/* The runtime: configuration and engine, swapped whole on reload           */
/* ------------------------------------------------------------------------ */

static clipmod_model *model;           /* loaded once; engines borrow it */
static char *model_dir, *model_merges; /* what `model` was loaded from */
static const char *config_path = DEFAULT_CONFIG;
static unsigned generation;

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static cm_runtime *rt_current;

void cm_rt_release(cm_runtime *rt)
{
    if (rt && atomic_fetch_sub(&rt->refs, 1) == 1) {
        /* The last message that used this engine is done: nothing scans with it. */
        clipmod_engine_free(rt->engine);
        cmc_free(rt->conf);
        free(rt);
    }
}

cm_runtime *cm_rt_acquire(void)
{
    cm_runtime *rt;
    pthread_mutex_lock(&rt_lock);
    rt = rt_current;
    if (rt)
        atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&rt_lock);
    return rt;
}

static void rt_install(cm_runtime *rt)
{
    cm_runtime *old;
    pthread_mutex_lock(&rt_lock);
    old = rt_current;
    rt_current = rt;
    pthread_mutex_unlock(&rt_lock);
    cm_rt_release(old);
}

/* Settings, cache directory and plugins of `c` on a new engine. 0, or -1 (logged). */
static int configure_engine(clipmod_engine *e, const cmc_config *c)
{
    char err[CLIPMOD_ERROR_SIZE];
    clipmod_error rc;

    /* The walk refuses bigger images first; the engine agrees, in case. */
    rc = clipmod_engine_set(e, CLIPMOD_MAX_FILE_BYTES, c->limits.max_image_bytes);
    if (rc) {
        cm_mlog(LOG_ERR, NULL, "engine setting: %s", clipmod_strerror(rc));
        return -1;
    }
    for (size_t i = 0; i < c->n_settings; i++) {
        rc = clipmod_engine_set(e, c->settings[i].s, c->settings[i].value);
        if (rc) {
            cm_mlog(LOG_ERR, NULL, "%s: engine.%s: %s", c->path,
                    clipmod_setting_name(c->settings[i].s), clipmod_strerror(rc));
            return -1;
        }
    }
    if (c->no_cache || c->cache_dir) {
        rc = clipmod_engine_set_cache_dir(e, c->no_cache ? NULL : c->cache_dir);
        if (rc) {
            cm_mlog(LOG_ERR, NULL, "%s: cache-dir %s: %s", c->path,
                    c->cache_dir ? c->cache_dir : "", clipmod_strerror(rc));
            return -1;
        }
    }
    for (size_t i = 0; i < c->n_plugins; i++)
        if (clipmod_engine_load_plugin(e, c->plugins[i].path, c->plugins[i].config, err)) {
            cm_mlog(LOG_ERR, NULL, "%s: plugin %s: %s", c->path, c->plugins[i].path, err);
            return -1;
        }
    return 0;
}

static clipmod_engine *build_engine(const cmc_config *c)
{
    clipmod_engine *e = NULL;
    char *problems = NULL;
    clipmod_error rc = clipmod_engine_new(model, &e);

    if (rc) {
        cm_mlog(LOG_ERR, NULL, "engine: %s", clipmod_strerror(rc));
        return NULL;
    }
    if (configure_engine(e, c)) {
        clipmod_engine_free(e);
        return NULL;
    }
    rc = clipmod_engine_compile(e, c->policy, &problems);
    if (rc) {
        if (problems)
            log_lines(LOG_ERR, problems);
        cm_mlog(LOG_ERR, NULL, "%s: %s", c->policy,
                rc == CLIPMOD_E_POLICY ? "the policy has problems" : clipmod_strerror(rc));
        clipmod_free(problems);
        clipmod_engine_free(e);
        return NULL;
    }
    if (problems)
        log_lines(LOG_WARNING, problems);
    clipmod_free(problems);
    return e;
}

/* A runtime for `c`, which it takes (freed on failure). */
static cm_runtime *runtime_new(cmc_config *c, unsigned gen)
{
    cm_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        cm_mlog(LOG_ERR, NULL, "out of memory");
        cmc_free(c);
        return NULL;
    }
    rt->conf = c;
    rt->generation = gen;
    atomic_init(&rt->refs, 1);
    rt->engine = build_engine(c);
    if (!rt->engine) {
        cmc_free(c);
        free(rt);
        return NULL;
    }
    return rt;
}

static cmc_config *load_config(const char *path)
{
    cmc_config *c = NULL;
    char *problems = NULL;
    if (cmc_load(path, &c, &problems)) {
        log_lines(LOG_ERR, problems);
        free(problems);
        return NULL;
    }
    return c;
}

static int workers_of(const cmc_config *c)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (c->workers)
        return c->workers;
    return n > 0 ? (int)n : 1;
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* SIGHUP: read the configuration again, compile a new engine, swap it in. */
static void reload(void)
{
    cmc_config *c;
    cm_runtime *old, *rt;

    cm_mlog(LOG_NOTICE, NULL, "reloading %s", config_path);
    c = load_config(config_path);
    if (!c) {
        cm_mlog(LOG_ERR, NULL, "reload failed: keeping the running policy");
        return;
    }
    old = cm_rt_acquire();
    if (!same(c->model, model_dir) || !same(c->merges, model_merges))
        cm_mlog(LOG_WARNING, NULL, "model changes take a restart; keeping the model from %s",
                model_dir);
    if (old && (!same(c->socket, old->conf->socket) || c->log_syslog != log_to_syslog))
        cm_mlog(LOG_WARNING, NULL, "socket and log changes take a restart");
    cm_rt_release(old);
    rt = runtime_new(c, ++generation);
    if (!rt) {
        cm_mlog(LOG_ERR, NULL, "reload failed: keeping the running policy");
        return;
    }
    atomic_store(&log_level, rt->conf->log_level);
    cm_slots_resize(workers_of(rt->conf));
    cm_mlog(LOG_NOTICE, NULL,
            "policy \"%s\" from %s is active (generation %u, %d workers) fingerprint=%s "
            "generation=%u",
            clipmod_engine_policy_name(rt->engine), rt->conf->policy, rt->generation,
            workers_of(rt->conf), clipmod_engine_policy_fingerprint(rt->engine), rt->generation);
    rt_install(rt);
}

/* ------------------------------------------------------------------------ */
/* --message: what would be done, printed                                   */
/* ------------------------------------------------------------------------ */

/* The whole of f into *buf (malloc'ed). 0, or -1 when out of memory. */
static int read_all(FILE *f, unsigned char **buf, size_t *len)
{
    size_t cap = 0, n;
    *buf = NULL;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *grown = realloc(*buf, cap);
            if (!grown)
                return -1;
            *buf = grown;
        }
        n = fread(*buf + *len, 1, cap - *len, f);
        if (!n)
            return 0;
        *len += n;
    }
}

static void print_outcome(const cm_runtime *rt, const cm_outcome *o)
{
    printf("decision: %s", cm_decision_name(o->what));
    if (o->what == CM_DO_REJECT || o->what == CM_DO_TEMPFAIL)
        printf(" %s%s%s %s", o->reply.rcode, o->reply.xcode[0] ? " " : "", o->reply.xcode,
               o->reply.text);
    if (o->what == CM_DO_QUARANTINE)
        printf(" (%s)", o->quarantine);
    printf("\n");
    if (o->verdict)
        printf("%s: %s\n", rt->conf->verdict_header, o->verdict);
    if (o->summary && rt->conf->summary_header)
        printf("%s: %s\n", rt->conf->summary_header, o->summary);
    printf("log: %s\n", o->log);
}

/*
 * --message FILE: what the milter would do with the message in FILE ("-": stdin),
 * printed instead of told to an MTA. For operators and tests.
 */
static int try_message(const char *path, const char *sender, const char *auth)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    unsigned char *buf = NULL;
    size_t len = 0;
    cm_runtime *rt = cm_rt_acquire();
    cm_envelope env = {.qid = "TEST", .sender = sender, .auth = auth, .n_rcpt = 1};
    cm_outcome o;
    int rc = 2;

    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        cm_rt_release(rt);
        return 2;
    }
    if (read_all(f, &buf, &len))
        goto nomem;
    env.size = len;
    env.over_limit = len > rt->conf->limits.max_message_bytes;
    if (cm_judge_message(rt, buf, len, &env, &o))
        goto nomem;
    print_outcome(rt, &o);
    cm_outcome_free(&o);
    rc = 0;
    goto out;
nomem:
    fprintf(stderr, PROG ": out of memory\n");
out:
    if (f != stdin)
        fclose(f);
    free(buf);
    cm_rt_release(rt);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct options {
    const char *message, *from, *auth;
    int check;
} options;

static void usage(FILE *f)
{
    fprintf(f, "Usage: " PROG " [-c FILE] [--check | --message FILE.eml [--from ADDR]]\n"
               "Scan the images of mail with a clipmod policy, as a milter (Postfix, Sendmail).\n"
               "\n"
               "  -c, --config FILE   configuration (default " DEFAULT_CONFIG ")\n"
               "  -t, --check         load the configuration, model and policy, then exit\n"
               "      --message FILE  print what would be done with the message in FILE\n"
               "                      (- for stdin) and the headers that would be added\n"
               "      --from ADDR     the envelope sender for --message\n"
               "      --auth USER     --message as if the client logged in as USER (SMTP AUTH)\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          show this help\n"
               "\n"
               "Runs in the foreground. SIGHUP (or SIGUSR2) reloads the configuration and the\n"
               "policy without dropping connections; SIGTERM stops after messages in flight.\n"
               "See clipmod-milter(8).\n");
}

/* -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) {
            config_path = argv[++i];
        } else if (!strcmp(a, "-t") || !strcmp(a, "--check")) {
            o->check = 1;
        } else if (!strcmp(a, "--message") && i + 1 < argc) {
            o->message = argv[++i];
        } else if (!strcmp(a, "--from") && i + 1 < argc) {
            o->from = argv[++i];
        } else if (!strcmp(a, "--auth") && i + 1 < argc) {
            o->auth = argv[++i];
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf(PROG " (clipmod %s)\n", clipmod_version());
            return 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, PROG ": unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Start, signals, stop                                                     */
/* ------------------------------------------------------------------------ */

static sem_t wake;
static volatile sig_atomic_t want_reload, want_stop, milter_done;

static void on_signal(int sig)
{
    if (sig == SIGHUP || sig == SIGUSR2)
        want_reload = 1;
    else
        want_stop = 1;
    sem_post(&wake); /* async-signal-safe */
}

static void *milter_thread(void *arg)
{
    int rc = smfi_main();
    (void)arg;
    if (rc != MI_SUCCESS)
        cm_mlog(LOG_ERR, NULL, "libmilter stopped with an error");
    milter_done = 1;
    sem_post(&wake);
    return NULL;
}

/*
 * Block the signals we handle before any thread exists, so every thread the
 * libraries start inherits the mask. libmilter's own signal thread waits for
 * SIGHUP/SIGTERM/SIGINT and would stop the filter on SIGHUP; the main thread
 * unblocks them later with handlers (handle_signals), and Linux gives a process
 * signal to the main thread when it accepts it. SIGUSR2 reloads too, with no such race.
 */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR2);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void handle_signals(const sigset_t *set)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, set, NULL);
}

/* Load the model named by c and the first runtime. 0, or -1 (logged); c is taken. */
static int start_engine(cmc_config *c)
{
    char err[CLIPMOD_ERROR_SIZE];
    cm_runtime *rt;

    clipmod_set_threads(c->blas_threads);
    if (clipmod_model_load(c->model, c->merges, &model, err)) {
        cm_mlog(LOG_ERR, NULL, "model %s: %s", c->model, err);
        cmc_free(c);
        return -1;
    }
    /* Honesty, as clipmod and clipmodd: an emoji model must never pass for moderation. */
    if (clipmod_model_is_demo(model))
        cm_mlog(LOG_WARNING, NULL,
                "this is clipmod's demo model, trained on emoji for demos and tests; verdicts are "
                "not real moderation (model %s)",
                c->model);
    model_dir = strdup(c->model);
    if (c->merges)
        model_merges = strdup(c->merges);
    if (!model_dir || (c->merges && !model_merges)) {
        cmc_free(c);
        return -1;
    }
    cm_slots_resize(workers_of(c));
    rt = runtime_new(c, ++generation);
    if (!rt)
        return -1;
    rt_install(rt);
    cm_mlog(LOG_NOTICE, NULL,
            "policy \"%s\" from %s, model %s (%s), %d workers fingerprint=%s generation=%u",
            clipmod_engine_policy_name(rt->engine), rt->conf->policy, model_dir,
            clipmod_model_describe(model), workers_of(rt->conf),
            clipmod_engine_policy_fingerprint(rt->engine), rt->generation);
    return 0;
}

/* Register the filter and listen on the configured socket. 0, or -1 (logged). */
static int listen_socket(const cmc_config *c)
{
    if (cm_callbacks_register() || smfi_setconn(c->socket) != MI_SUCCESS) {
        cm_mlog(LOG_ERR, NULL, "libmilter refused the filter or the socket %s", c->socket);
        return -1;
    }
    if (smfi_opensocket(1) != MI_SUCCESS) {
        cm_mlog(LOG_ERR, NULL, "cannot listen on %s", c->socket);
        return -1;
    }
    if (c->socket_mode >= 0 &&
        (!strncmp(c->socket, "unix:", 5) || !strncmp(c->socket, "local:", 6))) {
        const char *p = strchr(c->socket, ':') + 1;
        if (chmod(p, (mode_t)c->socket_mode))
            cm_mlog(LOG_WARNING, NULL, "chmod %s: %s", p, strerror(errno));
    }
    return 0;
}

/* SIGTERM: messages in flight end first (the MTA gets our answer, not a broken
 * connection); new ones are deferred meanwhile. Then libmilter stops. */
static void stop(void)
{
    cm_runtime *cur = cm_rt_acquire();
    uint64_t ms = cur ? cur->conf->drain_timeout_ms : 0;
    int left;
    cm_rt_release(cur);
    cm_mlog(LOG_NOTICE, NULL, "stopping: new messages are deferred");
    left = cm_messages_drain(ms);
    if (left)
        cm_mlog(LOG_WARNING, NULL,
                "%d message(s) still in flight after %llu ms: the MTA applies its "
                "milter_default_action to them",
                left, (unsigned long long)ms);
    smfi_stop();
}

/* Serve until libmilter stops: reload on SIGHUP, stop on SIGTERM. 0, or 1 (logged). */
static int serve(const sigset_t *set)
{
    cm_runtime *rt = cm_rt_acquire();
    pthread_t tid;
    int rc = listen_socket(rt->conf);

    if (!rc && pthread_create(&tid, NULL, milter_thread, NULL)) {
        cm_mlog(LOG_ERR, NULL, "cannot start the milter thread");
        rc = -1;
    }
    if (rc) {
        cm_rt_release(rt);
        return 1;
    }
    handle_signals(set);
    cm_mlog(LOG_NOTICE, NULL, "listening on %s", rt->conf->socket);
    cm_rt_release(rt);
    while (!milter_done) {
        if (sem_wait(&wake) && errno != EINTR)
            break;
        if (want_reload) {
            want_reload = 0;
            reload();
        }
        if (want_stop) {
            want_stop = 0;
            stop();
        }
    }
    pthread_join(tid, NULL);
    cm_mlog(LOG_NOTICE, NULL, "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.from = "<>"};
    int rc = parse_options(argc, argv, &o);
    cmc_config *c;
    sigset_t set;

    if (rc >= 0)
        return rc;
    rc = 1;
    block_signals(&set);
    sem_init(&wake, 0, 0);
    cm_slots_init();
    cm_messages_init();

    c = load_config(config_path);
    if (!c)
        return 1;
    log_to_syslog = c->log_syslog && !o.check && !o.message;
    /* --message prints its outcome; the start-up notices would only be noise. */
    atomic_store(&log_level, o.message && c->log_level > LOG_WARNING ? LOG_WARNING : c->log_level);
    if (log_to_syslog)
        openlog(PROG, LOG_PID, c->log_facility);
    clipmod_error e = clipmod_init(argv[0]);
    if (e) {
        cm_mlog(LOG_ERR, NULL, "clipmod: %s", clipmod_strerror(e));
        cmc_free(c);
        return 1;
    }
    cmm_init();
    if (start_engine(c))
        goto out;
    if (o.check) {
        printf(PROG ": %s: OK\n", config_path);
        rc = 0;
    } else if (o.message) {
        rc = try_message(o.message, o.from, o.auth);
    } else {
        rc = serve(&set);
    }
out:
    if (!cm_messages_drain(0)) {
        /* Only when nothing scans any more: else the engine stays for the threads. */
        rt_install(NULL);
        clipmod_model_free(model);
        cmm_shutdown();
        clipmod_shutdown();
    }
    free(model_dir);
    free(model_merges);
    if (log_to_syslog)
        closelog();
    return rc;
}
