/*
 * main.c - clipmodd: the clipmod scanning daemon.
 *
 * Owns the process: command-line options (which override the configuration
 * file), start-up order (configuration, logs, model and policy, batcher, then the
 * doors, so nothing is accepted before it can be scanned), readiness (systemd's
 * sd_notify and an optional --ready-file naming the bound addresses), signals
 * (SIGHUP reloads, SIGTERM and SIGINT stop) and an orderly stop: drain (drain.c:
 * health checks fail for drain-grace while everything is served, then stop
 * accepting and answer every request already in), then free the engine. Signals
 * are handled by this thread alone with sigwait(), never in a handler.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "drain.h"

#ifdef CLIPMOD_DATADIR
#define DEFAULT_MODEL  CLIPMOD_DATADIR "/models/default"
#define DEFAULT_POLICY CLIPMOD_DATADIR "/policies/default.yaml"
#else
#define DEFAULT_MODEL  "models/demo"
#define DEFAULT_POLICY "policies/default.yaml"
#endif
#ifdef CLIPMOD_SYSCONFDIR
#define DEFAULT_CONFIG CLIPMOD_SYSCONFDIR "/clipmod/clipmodd.yaml"
#else
#define DEFAULT_CONFIG "/etc/clipmod/clipmodd.yaml"
#endif

enum {
    OPT_MERGES = 256,
    OPT_LISTEN,
    OPT_CLAMD_UNIX,
    OPT_CLAMD_TCP,
    OPT_CHECK,
    OPT_READY,
    OPT_WORKER
};

/* Command-line values, applied over the file at start and after every reload. */
typedef struct overrides {
    const char *config, *model, *merges, *policy, *listen, *clamd_unix, *clamd_tcp;
    const char *ready_file;
    int check;
    int worker; /* --worker: the queue worker, no doors but those given here */
} overrides;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: clipmodd [OPTION]...\n"
            "The clipmod scanning daemon: HTTP (/v1/scan, /v1/scan-url, /v1/tusd, /v1/health,\n"
            "/v1/policy, /metrics) and, when configured, the clamd protocol. See clipmodd(8).\n"
            "\n"
            "  -c, --config FILE       configuration (default %s, if it exists)\n"
            "  -m, --model DIR         model directory (overrides 'model')\n"
            "      --merges FILE       tokenizer merges (overrides 'merges')\n"
            "  -p, --policy FILE       policy (overrides 'policy')\n"
            "      --listen HOST:PORT  HTTP address (overrides http.listen; default "
            "127.0.0.1:8093)\n"
            "      --clamd-socket PATH clamd protocol on a unix socket (clamd.unix-socket)\n"
            "      --clamd-tcp HOST:PORT  clamd protocol on TCP (clamd.tcp)\n"
            "      --ready-file FILE   once serving, write the bound addresses there\n"
            "      --worker            take jobs from the Redis stream of worker.* (no doors\n"
            "                          but those given with --listen or --clamd-*)\n"
            "      --check             check the configuration, model and policy, then exit\n"
            "  -h, --help              show this help\n"
            "  -V, --version           show the version\n"
            "\n"
            "Signals: SIGHUP rereads the configuration and recompiles the policy (requests in\n"
            "flight finish on the old one); SIGTERM or SIGINT drain (health checks fail for\n"
            "drain-grace), then stop after answering them; a second one stops at once.\n",
            DEFAULT_CONFIG);
}

static int parse_options(int argc, char **argv, overrides *o)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"model", required_argument, NULL, 'm'},
        {"merges", required_argument, NULL, OPT_MERGES},
        {"policy", required_argument, NULL, 'p'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"clamd-socket", required_argument, NULL, OPT_CLAMD_UNIX},
        {"clamd-tcp", required_argument, NULL, OPT_CLAMD_TCP},
        {"ready-file", required_argument, NULL, OPT_READY},
        {"check", no_argument, NULL, OPT_CHECK},
        {"worker", no_argument, NULL, OPT_WORKER},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    memset(o, 0, sizeof *o);
    while ((ch = getopt_long(argc, argv, "c:m:p:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case 'm':
            o->model = optarg;
            break;
        case OPT_MERGES:
            o->merges = optarg;
            break;
        case 'p':
            o->policy = optarg;
            break;
        case OPT_LISTEN:
            o->listen = optarg;
            break;
        case OPT_CLAMD_UNIX:
            o->clamd_unix = optarg;
            break;
        case OPT_CLAMD_TCP:
            o->clamd_tcp = optarg;
            break;
        case OPT_READY:
            o->ready_file = optarg;
            break;
        case OPT_CHECK:
            o->check = 1;
            break;
        case OPT_WORKER:
            o->worker = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("clipmodd %s (libclipmod %s)\n", CLIPMOD_VERSION_STRING, clipmod_version());
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "clipmodd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

static const char *from_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/*
 * The configuration: defaults, the file, then the command line. Problems go to
 * stderr (before logs are set up) as "file:line:column: message" lines.
 */
static int load_config(const overrides *o, dconfig *c)
{
    char *problems = NULL;
    const char *file = o->config;
    int rc = -1;

    config_defaults(c);
    if (!file && access(DEFAULT_CONFIG, F_OK) == 0)
        file = DEFAULT_CONFIG;
    if (file && config_load(file, c, &problems))
        goto out;
    if ((o->model && config_set_str(&c->model, o->model)) ||
        (o->merges && config_set_str(&c->merges, o->merges)) ||
        (o->policy && config_set_str(&c->policy, o->policy)) ||
        (o->listen && config_set_str(&c->http_listen, o->listen)) ||
        (o->clamd_unix && config_set_str(&c->clamd_unix, o->clamd_unix)) ||
        (o->clamd_tcp && config_set_str(&c->clamd_tcp, o->clamd_tcp)))
        goto out;
    if (o->worker)
        worker_only(c, o->listen != NULL, o->clamd_unix || o->clamd_tcp);
    if (!c->model && config_set_str(&c->model, from_env("CLIPMOD_MODEL") ? from_env("CLIPMOD_MODEL")
                                                                         : DEFAULT_MODEL))
        goto out;
    if (!c->policy &&
        config_set_str(&c->policy,
                       from_env("CLIPMOD_POLICY") ? from_env("CLIPMOD_POLICY") : DEFAULT_POLICY))
        goto out;
    if (config_check(c, &problems))
        goto out;
    rc = 0;
out:
    if (problems)
        fputs(problems, stderr);
    free(problems);
    return rc;
}

/* systemd's readiness protocol, without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof sa.sun_path)
        return;
    memcpy(sa.sun_path, path, strlen(path));
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    (void)!sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
    close(fd);
}

/* Written whole, then renamed: a reader never sees half of it. */
static int write_ready_file(const char *path, const char *http, const dconfig *c,
                            const char *clamd_tcp)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "pid=%ld\n", (long)getpid());
    if (http[0])
        fprintf(f, "http=%s\n", http);
    if (clamd_tcp[0])
        fprintf(f, "clamd-tcp=%s\n", clamd_tcp);
    if (c->clamd_unix)
        fprintf(f, "clamd-unix=%s\n", c->clamd_unix);
    if (fclose(f) || rename(tmp, path))
        return -1;
    return 0;
}

/*
 * Threads a library started before main() (OpenBLAS starts its pool when it is
 * loaded) do not block the stop signals, so the kernel may hand them one while this
 * thread is between two sigtimedwait() calls of the drain: the default action then
 * killed clipmodd (exit 143 instead of a forced drain's 1). Such a thread now passes
 * the signal on to this one, which blocks it until sigwait() takes it.
 */
static pthread_t main_thread;

static void pass_to_main(int sig)
{
    pthread_kill(main_thread, sig); /* async-signal-safe */
}

static void forward_to_main(const sigset_t *sigs)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = pass_to_main;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    main_thread = pthread_self();
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(sigs, sig) == 1)
            sigaction(sig, &sa, NULL);
}

/* What start_services got running, so that main stops exactly that. */
typedef struct started {
    int hooks, batcher, http, clamd;
    char http_bound[128], clamd_bound[128];
} started;

/* Hooks, scanning threads, the Redis worker and the two doors, in that order; -1 on the
 * first that fails (logged), with st saying which are up. */
static int start_services(const dconfig *c, started *st)
{
    if (hooks_start(c))
        return -1;
    st->hooks = 1;
    if (batcher_start(c)) {
        cm_log(CM_LOG_ERROR, "cannot start the scanning threads", CM_LF_END);
        return -1;
    }
    st->batcher = 1;
    if (c->worker_enabled && worker_start(c))
        return -1;
    if (c->clamd_unix || c->clamd_tcp) {
        if (clamd_start(c, st->clamd_bound, sizeof st->clamd_bound))
            return -1;
        st->clamd = 1;
        cm_log(CM_LOG_INFO, "clamd protocol listening", CM_LF_S("unix", c->clamd_unix),
               CM_LF_S("tcp", st->clamd_bound[0] ? st->clamd_bound : NULL), CM_LF_END);
    }
    if (c->http_enabled) {
        if (http_start(c, st->http_bound, sizeof st->http_bound))
            return -1;
        st->http = 1;
        cm_log(CM_LOG_INFO, "http listening", CM_LF_S("address", st->http_bound),
               CM_LF_B("auth", c->auth_token != NULL), CM_LF_END);
    }
    return 0;
}

/* Serve SIGHUP reloads until a stop signal comes; returns that signal. */
static int serve_until_stopped(const overrides *o, const sigset_t *sigs)
{
    dconfig fresh;
    int sig = 0;

    for (;;) {
        if (sigwait(sigs, &sig))
            continue;
        if (sig != SIGHUP)
            return sig;
        cm_log(CM_LOG_INFO, "SIGHUP: reloading", CM_LF_END);
        sd_notify_msg("RELOADING=1");
        /* Doors and limits keep their start-up values; the engine takes the new ones. */
        if (!load_config(o, &fresh)) {
            /* The new engine's settings and plugins join its verdict cache keys. */
            if (!reload_swap(&fresh))
                dcache_generation(reload_generation(), &fresh);
        } else {
            metrics_reload(0);
            cm_log(CM_LOG_ERROR,
                   "reload failed: the configuration has problems (see stderr); "
                   "the previous policy stays active",
                   CM_LF_END);
        }
        config_free(&fresh);
        sd_notify_msg("READY=1");
    }
}

/* Stops what start_services started, in the reverse order. */
static void stop_services(const started *st)
{
    if (st->http)
        http_stop();
    if (st->clamd)
        clamd_stop();
    worker_stop(); /* its jobs in flight need the batcher; nothing when it is off */
    if (st->batcher)
        batcher_stop();
    if (st->hooks)
        hooks_stop();
}

int main(int argc, char **argv)
{
    overrides o;
    dconfig c;
    sigset_t sigs;
    started st = {0};
    char err[256];
    int sig, rc = 1, model_up = 0;

    memset(&c, 0, sizeof c);
    if (parse_options(argc, argv, &o))
        return 2;
    if (load_config(&o, &c)) {
        config_free(&c);
        return 2;
    }
    if (cm_log_setup3(c.log_format, c.log_target, c.log_level, CLIPMODD_NAME, err, sizeof err)) {
        fprintf(stderr, "clipmodd: %s\n", err);
        config_free(&c);
        return 2;
    }
    /* Every thread inherits this mask; only sigwait() receives these signals. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    forward_to_main(&sigs);
    signal(SIGPIPE, SIG_IGN);

    if (clipmod_init(argv[0])) {
        cm_log(CM_LOG_ERROR, "libclipmod failed to initialise", CM_LF_END);
        goto out;
    }
    metrics_init();
    cm_log(CM_LOG_INFO, "starting", CM_LF_S("version", CLIPMOD_VERSION_STRING),
           CM_LF_S("config", c.path ? c.path : "(defaults)"), CM_LF_END);
    if (reload_init(&c))
        goto out;
    model_up = 1;
    if (dcache_start(&c))
        goto out;
    dcache_generation(reload_generation(), &c);
    if (o.check) {
        printf("clipmodd: configuration, model and policy OK\n");
        rc = 0;
        goto out;
    }
    if (start_services(&c, &st))
        goto out;
    if (o.ready_file && write_ready_file(o.ready_file, st.http_bound, &c, st.clamd_bound))
        cm_log(CM_LOG_WARN, "cannot write the ready file", CM_LF_S("path", o.ready_file),
               CM_LF_S("error", strerror(errno)), CM_LF_END);
    sd_notify_msg("READY=1");

    sig = serve_until_stopped(&o, &sigs);
    sd_notify_msg("STOPPING=1");
    if (drain_run(&c, &sigs, sig, st.http, st.clamd) == DRAIN_FORCED) {
        /* Threads are still scanning: nothing is freed under them. */
        if (o.ready_file)
            unlink(o.ready_file);
        _exit(1);
    }
    cm_log(CM_LOG_INFO, "stopping", CM_LF_END);
    rc = 0;
out:
    stop_services(&st);
    dcache_stop();
    if (model_up || rc)
        reload_shutdown();
    if (o.ready_file && !o.check)
        unlink(o.ready_file);
    cm_log(rc ? CM_LOG_ERROR : CM_LOG_INFO, rc ? "exiting after an error" : "stopped", CM_LF_END);
    config_free(&c);
    cm_log_close();
    clipmod_shutdown();
    return rc;
}
