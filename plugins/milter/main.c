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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "milter.h"

#ifndef CLIPMOD_SYSCONFDIR
#define CLIPMOD_SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG CLIPMOD_SYSCONFDIR "/clipmod/clipmod-milter.yaml"
#define PROG           CM_MILTER_PROG

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * The log: block into log.h. --check and --message always write to stderr, at
 * `level` when given (the start-up lines of --message would only be noise).
 * 0, or -1 when log.h refuses a value (conf.c checks them all first).
 */
static int setup_log(const cmc_config *c, int to_stderr, const char *level)
{
    char err[256];
    cm_log_opts o = {.format = c->log.format,
                     .target = to_stderr ? "stderr" : c->log.target,
                     .level = level ? level : c->log.level,
                     .facility = c->log.facility,
                     .ident = PROG};
    if (cm_log_setup(&o, err, sizeof err)) {
        cm_log(CM_LOG_ERROR, "log settings refused", CM_LF_S("error", err), CM_LF_END);
        return -1;
    }
    return 0;
}

/* A block of "file:line:column: message" lines, one log line each, as clipmodd logs them. */
static void log_problems(int level, const char *what, const char *text)
{
    const char *p = text;
    char line[1024];
    while (p && *p) {
        size_t n = strcspn(p, "\n");
        if (n) {
            snprintf(line, sizeof line, "%.*s", (int)n, p);
            cm_log(level, what, CM_LF_S("problem", line), CM_LF_END);
        }
        p += n + (p[n] == '\n');
    }
}

/* Every line names the policy at work: 12 hex digits of its fingerprint, and its generation. */
static void set_log_context(const cm_runtime *rt)
{
    char fp12[13] = "";
    const char *fp = clipmod_engine_policy_fingerprint(rt->engine);
    if (fp)
        snprintf(fp12, sizeof fp12, "%s", fp);
    cm_log_set_context(fp12[0] ? fp12 : NULL, (long long)rt->generation);
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
        cm_log(CM_LOG_ERROR, "engine setting refused", CM_LF_S("setting", "max-file-bytes"),
               CM_LF_S("error", clipmod_strerror(rc)), CM_LF_END);
        return -1;
    }
    for (size_t i = 0; i < c->n_settings; i++) {
        rc = clipmod_engine_set(e, c->settings[i].s, c->settings[i].value);
        if (rc) {
            cm_log(CM_LOG_ERROR, "engine setting refused", CM_LF_S("config", c->path),
                   CM_LF_S("setting", clipmod_setting_name(c->settings[i].s)),
                   CM_LF_I("value", c->settings[i].value), CM_LF_S("error", clipmod_strerror(rc)),
                   CM_LF_END);
            return -1;
        }
    }
    if (c->no_cache || c->cache_dir) {
        rc = clipmod_engine_set_cache_dir(e, c->no_cache ? NULL : c->cache_dir);
        if (rc) {
            cm_log(CM_LOG_ERROR, "cache-dir refused", CM_LF_S("config", c->path),
                   CM_LF_S("cache_dir", c->cache_dir), CM_LF_S("error", clipmod_strerror(rc)),
                   CM_LF_END);
            return -1;
        }
    }
    for (size_t i = 0; i < c->n_plugins; i++)
        if (clipmod_engine_load_plugin(e, c->plugins[i].path, c->plugins[i].config, err)) {
            cm_log(CM_LOG_ERROR, "plugin not loaded", CM_LF_S("config", c->path),
                   CM_LF_S("plugin", c->plugins[i].path), CM_LF_S("error", err), CM_LF_END);
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
        cm_log(CM_LOG_ERROR, "engine", CM_LF_S("error", clipmod_strerror(rc)), CM_LF_END);
        return NULL;
    }
    if (configure_engine(e, c)) {
        clipmod_engine_free(e);
        return NULL;
    }
    rc = clipmod_engine_compile(e, c->policy, &problems);
    if (rc) {
        if (problems)
            log_problems(CM_LOG_ERROR, "policy problem", problems);
        cm_log(CM_LOG_ERROR, "policy not compiled", CM_LF_S("policy_file", c->policy),
               CM_LF_S("error",
                       rc == CLIPMOD_E_POLICY ? "the policy has problems" : clipmod_strerror(rc)),
               CM_LF_END);
        clipmod_free(problems);
        clipmod_engine_free(e);
        return NULL;
    }
    if (problems)
        log_problems(CM_LOG_WARN, "policy warning", problems);
    clipmod_free(problems);
    return e;
}

/* A runtime for `c`, which it takes (freed on failure). */
static cm_runtime *runtime_new(cmc_config *c, unsigned gen)
{
    cm_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        cm_log(CM_LOG_ERROR, "out of memory", CM_LF_END);
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

/*
 * Read the configuration. Its problems are "file:line:column: message" lines: as
 * they are for a person at a terminal (`plain`: --check, --message, as a compiler
 * prints them), else one log line each.
 */
static cmc_config *load_config(const char *path, int plain)
{
    cmc_config *c = NULL;
    char *problems = NULL;
    if (cmc_load(path, &c, &problems)) {
        if (plain)
            fprintf(stderr, "%s", problems ? problems : "");
        else
            log_problems(CM_LOG_ERROR, "configuration problem", problems);
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
    double t0 = cm_now();

    cm_log(CM_LOG_INFO, "reloading", CM_LF_S("config", config_path), CM_LF_END);
    c = load_config(config_path, 0);
    if (!c) {
        cm_log(CM_LOG_ERROR, "reload failed; the previous policy stays active",
               CM_LF_S("config", config_path), CM_LF_END);
        return;
    }
    old = cm_rt_acquire();
    if (!same(c->model, model_dir) || !same(c->merges, model_merges))
        cm_log(CM_LOG_WARN, "model changes take a restart; keeping the running model",
               CM_LF_S("model", model_dir), CM_LF_END);
    if (old && !same(c->socket, old->conf->socket))
        cm_log(CM_LOG_WARN, "socket changes take a restart; keeping the socket",
               CM_LF_S("socket", old->conf->socket), CM_LF_END);
    cm_rt_release(old);
    rt = runtime_new(c, ++generation);
    if (!rt) {
        cm_log(CM_LOG_ERROR, "reload failed; the previous policy stays active",
               CM_LF_S("config", config_path), CM_LF_END);
        return;
    }
    /* Format, level, target and facility take effect now, as the policy does. */
    setup_log(rt->conf, 0, NULL);
    cm_slots_resize(workers_of(rt->conf));
    rt_install(rt);
    set_log_context(rt);
    cm_log(CM_LOG_INFO, "policy reloaded", CM_LF_S("policy_file", rt->conf->policy),
           CM_LF_S("name", clipmod_engine_policy_name(rt->engine)),
           CM_LF_I("workers", workers_of(rt->conf)), CM_LF_F("seconds", cm_now() - t0), CM_LF_END);
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
    double t0;
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
    /* The start-up lines were held back; the message's own line is wanted. */
    setup_log(rt->conf, 1, NULL);
    t0 = cm_now();
    if (cm_judge_message(rt, buf, len, &env, &o))
        goto nomem;
    print_outcome(rt, &o);
    fflush(stdout);
    cm_outcome_log(env.qid, &o, len, (cm_now() - t0) * 1e3);
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
        cm_log(CM_LOG_ERROR, "libmilter stopped with an error", CM_LF_END);
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
        cm_log(CM_LOG_ERROR, "model not loaded", CM_LF_S("model", c->model), CM_LF_S("error", err),
               CM_LF_END);
        cmc_free(c);
        return -1;
    }
    /* Honesty, as clipmod and clipmodd: an emoji model must never pass for moderation. */
    cm_log(CM_LOG_INFO, "model loaded", CM_LF_S("model", c->model),
           CM_LF_S("describe", clipmod_model_describe(model)),
           CM_LF_B("demo", clipmod_model_is_demo(model)), CM_LF_END);
    if (clipmod_model_is_demo(model))
        cm_log(CM_LOG_WARN,
               "this is clipmod's demo model, trained on emoji for demos and tests; verdicts are "
               "not real moderation",
               CM_LF_S("model", c->model), CM_LF_END);
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
    set_log_context(rt);
    cm_log(CM_LOG_INFO, "policy compiled", CM_LF_S("policy_file", rt->conf->policy),
           CM_LF_S("name", clipmod_engine_policy_name(rt->engine)),
           CM_LF_I("workers", workers_of(rt->conf)), CM_LF_END);
    return 0;
}

/* Register the filter and listen on the configured socket. 0, or -1 (logged). */
static int listen_socket(const cmc_config *c)
{
    if (cm_callbacks_register() || smfi_setconn(c->socket) != MI_SUCCESS) {
        cm_log(CM_LOG_ERROR, "libmilter refused the filter or the socket",
               CM_LF_S("socket", c->socket), CM_LF_END);
        return -1;
    }
    if (smfi_opensocket(1) != MI_SUCCESS) {
        cm_log(CM_LOG_ERROR, "cannot listen", CM_LF_S("socket", c->socket), CM_LF_END);
        return -1;
    }
    if (c->socket_mode >= 0 &&
        (!strncmp(c->socket, "unix:", 5) || !strncmp(c->socket, "local:", 6))) {
        const char *p = strchr(c->socket, ':') + 1;
        if (chmod(p, (mode_t)c->socket_mode))
            cm_log(CM_LOG_WARN, "socket-mode not applied", CM_LF_S("path", p),
                   CM_LF_S("error", strerror(errno)), CM_LF_END);
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
    cm_log(CM_LOG_INFO, "stopping: new messages are deferred", CM_LF_END);
    left = cm_messages_drain(ms);
    if (left)
        cm_log(CM_LOG_WARN,
               "messages still in flight after drain-timeout-ms: the MTA applies its "
               "milter_default_action to them",
               CM_LF_I("messages", left), CM_LF_I("ms", ms), CM_LF_END);
    smfi_stop();
}

/* Serve until libmilter stops: reload on SIGHUP, stop on SIGTERM. 0, or 1 (logged). */
static int serve(const sigset_t *set)
{
    cm_runtime *rt = cm_rt_acquire();
    pthread_t tid;
    int rc = listen_socket(rt->conf);

    if (!rc && pthread_create(&tid, NULL, milter_thread, NULL)) {
        cm_log(CM_LOG_ERROR, "cannot start the milter thread", CM_LF_END);
        rc = -1;
    }
    if (rc) {
        cm_rt_release(rt);
        return 1;
    }
    handle_signals(set);
    cm_log(CM_LOG_INFO, "listening", CM_LF_S("socket", rt->conf->socket), CM_LF_END);
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
    cm_log(CM_LOG_INFO, "stopped", CM_LF_END);
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

    c = load_config(config_path, o.check || o.message);
    if (!c)
        return 1;
    if (setup_log(c, o.check || o.message, o.message ? "warn" : NULL)) {
        cmc_free(c);
        return 1;
    }
    clipmod_error e = clipmod_init(argv[0]);
    if (e) {
        cm_log(CM_LOG_ERROR, "libclipmod failed to initialise",
               CM_LF_S("error", clipmod_strerror(e)), CM_LF_END);
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
    cm_log_close();
    return rc;
}
