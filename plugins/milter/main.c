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
 * Each configuration's verdict cache salt (vcache_key.h) is made here, where the
 * engine settings are; SIGUSR1 logs the verdict cache's counters (mcache.c).
 * The callbacks are callbacks.c's, judging a message is scan.c's.
 */
#include <errno.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "dynbuf.h"
#include "engine_cfg.h"
#include "milter.h"
#include "onflag.h"
#include "swap.h"
#include "vcache_key.h"

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

/*
 * The engine lives in a cm_swap slot (src/common/swap.h: reference-counted, with
 * generation and fingerprint); the configuration it was built from lives next to it
 * with a count of its own. rt_lock makes taking both, and replacing both, one step,
 * so a message never sees a new policy with an old configuration.
 */
struct cm_conf_ref {
    cmc_config *c;
    cm_onflag *hook; /* c's on-flag, started with it */
    char *salt;      /* c's verdict cache salt, NULL when out of memory */
    atomic_int refs;
};

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static cm_swap *slot;
static struct cm_conf_ref *conf_current;

static void conf_unref(struct cm_conf_ref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        /* Hooks still running are reaped by onflag.c; nothing waits for them here. */
        cm_onflag_free(r->hook, 0);
        cmc_free(r->c);
        free(r->salt);
        free(r);
    }
}

int cm_rt_acquire(cm_runtime *rt)
{
    cm_swap_info info;
    memset(rt, 0, sizeof *rt);
    pthread_mutex_lock(&rt_lock);
    rt->engine = slot ? cm_swap_acquire_info(slot, &info) : NULL;
    if (rt->engine) {
        rt->ref = conf_current;
        atomic_fetch_add(&rt->ref->refs, 1);
        rt->conf = rt->ref->c;
        rt->hook = rt->ref->hook;
        rt->salt = rt->ref->salt;
        rt->model = model;
        rt->generation = info.generation;
    }
    pthread_mutex_unlock(&rt_lock);
    return rt->engine ? 0 : -1;
}

void cm_rt_release(cm_runtime *rt)
{
    /* The last message that used an engine frees it: nothing scans with it any more. */
    clipmod_engine_free(rt->engine);
    conf_unref(rt->ref);
    memset(rt, 0, sizeof *rt);
}

/* c's on-flag hook: 0 with *out set (NULL when none is configured), -1 (logged) otherwise. */
static int make_hook(const cmc_config *c, cm_onflag **out)
{
    char err[256];
    *out = NULL;
    if (!c->on_flag.argc)
        return 0;
    *out = cm_onflag_new((const char *const *)c->on_flag.argv, (unsigned)c->on_flag.timeout_ms,
                         c->on_flag.max_running, err, sizeof err);
    if (!*out) {
        cm_log(CM_LOG_ERROR, "on-flag refused", CM_LF_S("program", c->on_flag.argv[0]),
               CM_LF_S("error", err), CM_LF_END);
        return -1;
    }
    return 0;
}

static char *salt_of(const cmc_config *c);

/*
 * Install engine e (its reference taken) built from c (taken) with c's on-flag hook;
 * the generation it gets, or 0 (nothing installed, e and c freed).
 */
static unsigned long rt_install(clipmod_engine *e, cmc_config *c)
{
    struct cm_conf_ref *fresh = calloc(1, sizeof *fresh), *old;
    unsigned long gen;
    if (!fresh || make_hook(c, &fresh->hook)) {
        free(fresh);
        clipmod_engine_free(e);
        cmc_free(c);
        return 0;
    }
    fresh->c = c;
    /* Without it the messages of this runtime are scanned, never looked up. */
    fresh->salt = salt_of(c);
    atomic_init(&fresh->refs, 1);
    pthread_mutex_lock(&rt_lock);
    gen = cm_swap_install(slot, e, clipmod_engine_policy_fingerprint(e)) + 1;
    old = conf_current;
    conf_current = fresh;
    pthread_mutex_unlock(&rt_lock);
    conf_unref(old);
    return gen;
}

/* What src/common/engine_cfg.h builds from: the configuration's model, settings, plugins. */
static cm_plugin_cfg *engine_cfg_of(const cmc_config *c, cm_engine_cfg *e)
{
    cm_plugin_cfg *pl = calloc(c->n_plugins ? c->n_plugins : 1, sizeof *pl);
    memset(e, 0, sizeof *e);
    e->model = c->model;
    e->merges = c->merges;
    e->threads = c->blas_threads;
    e->precision = c->precision;
    e->policy = c->policy;
    /* The walk refuses bigger images first; the engine agrees, in case. */
    e->setting[CLIPMOD_MAX_FILE_BYTES] = c->limits.max_image_bytes;
    e->setting_given[CLIPMOD_MAX_FILE_BYTES] = 1;
    for (size_t i = 0; i < c->n_settings; i++) {
        e->setting[c->settings[i].s] = c->settings[i].value;
        e->setting_given[c->settings[i].s] = 1;
    }
    e->no_cache = c->no_cache;
    e->cache_dir = c->cache_dir;
    for (size_t i = 0; pl && i < c->n_plugins; i++) {
        pl[i].path = c->plugins[i].path;
        pl[i].config = c->plugins[i].config;
    }
    e->plugins = pl;
    e->n_plugins = pl ? c->n_plugins : 0;
    return pl;
}

/*
 * The verdict cache salt of c: the settings the engine is built with (limits.max-image-bytes
 * as max-file-bytes among them), its plugins and `context`. NULL when out of memory.
 */
static char *salt_of(const cmc_config *c)
{
    cm_engine_cfg e;
    cm_plugin_cfg *pl = engine_cfg_of(c, &e);
    cm_vsalt s;
    if (!pl)
        return NULL;
    cm_vsalt_init(&s);
    for (int k = 0; k < CLIPMOD_SETTING__COUNT; k++)
        if (e.setting_given[k])
            cm_vsalt_setting(&s, (clipmod_setting)k, e.setting[k]);
    for (size_t i = 0; i < e.n_plugins; i++)
        cm_vsalt_plugin(&s, pl[i].path, pl[i].config);
    free(pl);
    return cm_vsalt_finish(&s, c->context);
}

/* The engine for c, on the loaded model, through cm_engine_from_config (which logs why not). */
static clipmod_engine *build_engine(const cmc_config *c)
{
    clipmod_engine *e = NULL;
    char err[CLIPMOD_ERROR_SIZE];
    cm_engine_cfg ecfg;
    cm_plugin_cfg *pl = engine_cfg_of(c, &ecfg);
    if (!pl) {
        cm_log(CM_LOG_ERROR, "out of memory", CM_LF_END);
        return NULL;
    }
    cm_engine_from_config(&ecfg, model, &e, NULL, err);
    free(pl);
    return e;
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

/* The log context and the load line for the runtime just installed. */
static void announce(const char *msg, double t0)
{
    cm_runtime rt;
    if (cm_rt_acquire(&rt))
        return;
    set_log_context(&rt);
    cm_log(CM_LOG_INFO, msg, CM_LF_S("policy_file", rt.conf->policy),
           CM_LF_S("name", clipmod_engine_policy_name(rt.engine)),
           CM_LF_I("workers", workers_of(rt.conf)), CM_LF_F("seconds", cm_now() - t0), CM_LF_END);
    cm_rt_release(&rt);
}

/* SIGHUP: read the configuration again, compile a new engine, swap it in. */
static void reload(void)
{
    cmc_config *c;
    cm_runtime old;
    clipmod_engine *e;
    double t0 = cm_now();

    cm_log(CM_LOG_INFO, "reloading", CM_LF_S("config", config_path), CM_LF_END);
    c = load_config(config_path, 0);
    e = c ? build_engine(c) : NULL;
    if (!e) {
        cmc_free(c);
        cm_log(CM_LOG_ERROR, "reload failed; the previous policy stays active",
               CM_LF_S("config", config_path), CM_LF_END);
        return;
    }
    if (!same(c->model, model_dir) || !same(c->merges, model_merges))
        cm_log(CM_LOG_WARN, "model changes take a restart; keeping the running model",
               CM_LF_S("model", model_dir), CM_LF_END);
    if (!cm_rt_acquire(&old)) {
        if (!same(c->socket, old.conf->socket))
            cm_log(CM_LOG_WARN, "socket changes take a restart; keeping the socket",
                   CM_LF_S("socket", old.conf->socket), CM_LF_END);
        cm_mcache_check_reload(old.conf, c);
        cm_rt_release(&old);
    }
    if (!rt_install(e, c)) {
        cm_log(CM_LOG_ERROR, "reload failed; the previous policy stays active",
               CM_LF_S("config", config_path), CM_LF_END);
        return;
    }
    /* Workers and the log's format, level, target and facility change with the policy. */
    if (!cm_rt_acquire(&old)) {
        cm_slots_resize(workers_of(old.conf));
        setup_log(old.conf, 0, NULL);
        cm_rt_release(&old);
    }
    announce("policy reloaded", t0);
}

/* ------------------------------------------------------------------------ */
/* --message: what would be done, printed                                   */
/* ------------------------------------------------------------------------ */

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
 * f into b, capped at max-message-bytes as the MTA's copy is (callbacks.c): past it
 * the rest is only counted, and the message is judged as over the limit.
 */
static int read_message(FILE *f, cm_dbuf *b, cm_envelope *env)
{
    char chunk[65536];
    size_t n;
    for (;;) {
        n = fread(chunk, 1, sizeof chunk, f);
        if (!n)
            return 0;
        env->size += n;
        if (env->over_limit)
            continue;
        int rc = cm_dbuf_addn(b, chunk, n);
        if (rc == CM_DBUF_E_TOOBIG) {
            env->over_limit = 1;
            cm_dbuf_free(b);
        } else if (rc) {
            return -1;
        }
    }
}

/*
 * --message FILE: what the milter would do with the message in FILE ("-": stdin),
 * printed instead of told to an MTA. For operators and tests.
 */
static int try_message(const char *path, const char *sender, const char *auth)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    cm_runtime rt;
    cm_envelope env = {.qid = "TEST", .sender = sender, .auth = auth, .n_rcpt = 1};
    cm_dbuf buf;
    cm_outcome o;
    double t0;
    int rc = 2;

    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (cm_rt_acquire(&rt)) {
        fclose(f);
        return 2;
    }
    cm_dbuf_init(&buf, rt.conf->limits.max_message_bytes);
    if (read_message(f, &buf, &env))
        goto nomem;
    /* The start-up lines were held back; the message's own line is wanted. */
    setup_log(rt.conf, 1, NULL);
    t0 = cm_now();
    if (cm_judge_message(&rt, (const unsigned char *)cm_dbuf_ptr(&buf), cm_dbuf_len(&buf), &env,
                         &o))
        goto nomem;
    print_outcome(&rt, &o);
    fflush(stdout);
    cm_outcome_log(env.qid, &o, env.size, (cm_now() - t0) * 1e3);
    cm_outcome_free(&o);
    rc = 0;
    goto out;
nomem:
    fprintf(stderr, PROG ": out of memory\n");
out:
    if (f != stdin)
        fclose(f);
    cm_dbuf_free(&buf);
    cm_rt_release(&rt);
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
               "policy without dropping connections; SIGTERM stops after messages in flight;\n"
               "SIGUSR1 logs the verdict cache's counters.\n"
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
static volatile sig_atomic_t want_reload, want_stop, want_stats, milter_done;

static void on_signal(int sig)
{
    if (sig == SIGHUP || sig == SIGUSR2)
        want_reload = 1;
    else if (sig == SIGUSR1)
        want_stats = 1;
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
 * SIGUSR1 (the counters) is blocked too: until the handler is set it waits, never kills.
 */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR2);
    sigaddset(set, SIGUSR1);
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
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, set, NULL);
}

/* Load the model named by c and the first runtime. 0, or -1 (logged); c is taken. */
static int start_engine(cmc_config *c)
{
    char err[CLIPMOD_ERROR_SIZE];
    cm_engine_cfg ecfg;
    cm_plugin_cfg *pl = engine_cfg_of(c, &ecfg);
    clipmod_engine *e;
    double t0 = cm_now();

    /* Model load, BLAS threads and the demo-model warning, as clipmod and clipmodd. */
    slot = cm_swap_new();
    if (!pl || !slot || cm_model_from_config(&ecfg, &model, err)) {
        free(pl);
        cmc_free(c);
        return -1;
    }
    free(pl);
    model_dir = strdup(c->model);
    if (c->merges)
        model_merges = strdup(c->merges);
    e = model_dir && (!c->merges || model_merges) ? build_engine(c) : NULL;
    if (!e) {
        cmc_free(c);
        return -1;
    }
    cm_slots_resize(workers_of(c));
    if (!rt_install(e, c))
        return -1;
    announce("policy compiled", t0);
    return 0;
}

/* The verdict cache the first configuration asks for (kept across reloads). 0, or -1 (logged). */
static int start_cache(void)
{
    cm_runtime rt;
    int rc = -1;
    if (!cm_rt_acquire(&rt)) {
        rc = cm_mcache_start(rt.conf);
        cm_rt_release(&rt);
    }
    return rc;
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
    cm_runtime cur;
    uint64_t ms = 0;
    int left;
    if (!cm_rt_acquire(&cur)) {
        ms = cur.conf->drain_timeout_ms;
        cm_rt_release(&cur);
    }
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
    cm_runtime rt;
    pthread_t tid;
    int rc = cm_rt_acquire(&rt);

    if (!rc)
        rc = listen_socket(rt.conf);

    if (!rc && pthread_create(&tid, NULL, milter_thread, NULL)) {
        cm_log(CM_LOG_ERROR, "cannot start the milter thread", CM_LF_END);
        rc = -1;
    }
    if (rc) {
        cm_rt_release(&rt);
        return 1;
    }
    handle_signals(set);
    cm_log(CM_LOG_INFO, "listening", CM_LF_S("socket", rt.conf->socket), CM_LF_END);
    cm_rt_release(&rt);
    while (!milter_done) {
        if (sem_wait(&wake) && errno != EINTR)
            break;
        if (want_reload) {
            want_reload = 0;
            reload();
        }
        if (want_stats) {
            want_stats = 0;
            cm_mcache_log_stats("sigusr1");
        }
        if (want_stop) {
            want_stop = 0;
            stop();
        }
    }
    pthread_join(tid, NULL);
    cm_mcache_log_stats("stop");
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
    if (start_engine(c) || start_cache())
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
        cm_swap_free(slot);
        pthread_mutex_lock(&rt_lock);
        /* Hooks started for the last messages get a moment to end (and be logged). */
        if (conf_current) {
            cm_onflag_free(conf_current->hook, 2000);
            conf_current->hook = NULL;
        }
        conf_unref(conf_current);
        conf_current = NULL;
        pthread_mutex_unlock(&rt_lock);
        cm_mcache_stop();
        clipmod_model_free(model);
        cmm_shutdown();
        clipmod_shutdown();
    }
    free(model_dir);
    free(model_merges);
    cm_log_close();
    return rc;
}
