/*
 * clamd.c - the clamd protocol, so that clamd's clients use clipmod unchanged.
 *
 * Owns clipmodd's emulation of clamd(8) on a unix socket and/or TCP (opt-in,
 * 127.0.0.1 in the examples): the commands PING, VERSION, VERSIONCOMMANDS,
 * INSTREAM (chunks of a 4-byte network-order length and data, ended by a zero
 * length, capped by clamd.stream-max-length), FILDES (unix socket only), SCAN,
 * CONTSCAN and MULTISCAN (paths inside clamd.roots), IDSESSION/END (numbered
 * replies "N: stream: OK"), RELOAD (as SIGHUP), STATS (clamd's layout, our
 * workers, queue and heap) and SHUTDOWN (as SIGTERM; unix socket only). Commands are prefixed with
 * 'z' (NUL-terminated) or 'n' (newline-terminated), or unprefixed (newline; not
 * IDSESSION, as in clamd), and replies use the same terminator, as clamd does.
 * Parsing and stream framing are in clamd_proto.c; this file does the I/O.
 *
 * FILDES reads the passed descriptor itself, never a re-opened /proc/self/fd path
 * (that would read with the daemon's rights): O_PATH and write-only descriptors
 * and anything but a regular file or a pipe are refused, and the read is bounded
 * by stream-max-length and by clamd.read-timeout from its start, so a pipe whose
 * writer stays open cannot hold a connection thread.
 *
 * Verdicts, in clamd's words: "stream: OK", "stream: Clipmod.<category> FOUND"
 * for a flagged image whose action is at least clamd.found-at (quarantine by
 * default: clamd's clients reject or quarantine whatever is FOUND, so a "tag" or
 * "flag" verdict answers OK), and for an image that could not be scanned
 * "stream: Clipmod.Unscanned.<reason> ERROR" (or FOUND / OK, clamd.unscanned),
 * never a silent OK. An oversized stream gets clamd's own
 * "INSTREAM size limit exceeded. ERROR"; the rest of the stream is read first, so
 * that the client sees the answer instead of a reset connection.
 *
 * Threads: one acceptor, and one thread per connection (at most
 * clamd.max-connections; beyond that a connection is told so and closed). A
 * connection thread waits for its job in the batcher, so images sent over clamd
 * share forward passes with HTTP requests.
 *
 * Stopping (drain.c): while clipmodd drains PING answers "DRAINING. ERROR" (a
 * balancer's check expecting PONG fails) and everything else is still served;
 * then clamd_quiesce() closes the listeners and the drain waits for the
 * connections in a command (clamd_in_flight: from a command's first byte to its
 * reply) before clamd_stop() ends the idle ones.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clamd_proto.h"
#include "clock.h"
#include "daemon.h"
#include "drain.h"
#include "dynbuf.h"

#define MAX_COMMAND CLAMD_MAX_COMMAND
#define MAX_DEPTH   16
#define READ_CHUNK  65536
#define ERR_ACCESS  "Access denied."

static struct {
    const dconfig *c;
    int unix_fd, tcp_fd, wake[2];
    pthread_t acceptor;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int active, stopping;
    int busy; /* connections in a command, from its first byte to its reply */
    int *fds; /* active connection sockets, to stop their reads at shutdown */
} C = {.unix_fd = -1,
       .tcp_fd = -1,
       .wake = {-1, -1},
       .lock = PTHREAD_MUTEX_INITIALIZER,
       .idle = PTHREAD_COND_INITIALIZER};

typedef struct conn {
    int fd, is_unix;
    char term;    /* the current command's terminator, used for its replies */
    int prefixed; /* the current command had a z/n prefix */
    unsigned id;  /* the current command's number in an IDSESSION, else 0 */
    int session;
    int busy; /* counted in C.busy */
    char peer[64];
} conn;

/* ------------------------------------------------------------------------ */
/* I/O                                                                      */
/* ------------------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void set_timeout(int fd, unsigned seconds)
{
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* One reply line: "N: " in a session, the text, the command's terminator. */
static int reply(conn *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int reply(conn *k, const char *fmt, ...)
{
    char line[MAX_COMMAND + 256];
    int n = 0;
    va_list ap;
    if (k->session)
        n = snprintf(line, sizeof line, "%u: ", k->id);
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return -1;
    n += m;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = k->term;
    return write_all(k->fd, line, (size_t)n);
}

static void set_busy(conn *k, int busy)
{
    if (k->busy == busy)
        return;
    k->busy = busy;
    pthread_mutex_lock(&C.lock);
    C.busy += busy ? 1 : -1;
    pthread_mutex_unlock(&C.lock);
}

/*
 * Read one command (clamd_proto.c parses it) byte by byte, so nothing after the
 * command (a stream, a passed fd) is consumed. Returns the length, 0 at a clean
 * end of connection or for an empty command, -1 on error.
 */
static int read_command(conn *k, clamd_line *l)
{
    int state = CLAMD_LINE_MORE;

    clamd_line_init(l);
    while (state == CLAMD_LINE_MORE) {
        char ch;
        ssize_t r = recv(k->fd, &ch, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return l->started ? -1 : 0;
        set_busy(k, 1); /* a drain waits for this command now */
        state = clamd_line_byte(l, ch);
    }
    if (state != CLAMD_LINE_DONE)
        return -1;
    k->term = l->term;
    k->prefixed = l->prefixed;
    /* An old-style command may end with CRLF. */
    if (l->ended_cr) {
        char lf;
        if (recv(k->fd, &lf, 1, MSG_PEEK) == 1 && lf == '\n')
            (void)recv(k->fd, &lf, 1, 0);
    }
    return (int)l->n;
}

/* A name for a reply line: control characters would split or forge lines. */
static void label_of(const char *s, char *out, size_t len)
{
    size_t i = 0;
    for (; s && *s && i + 1 < len; s++)
        out[i++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    out[i] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Verdicts                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * One log line per verdict given over the clamd protocol, as clamd logs every FOUND:
 * clamd clients (rspamd, amavis, Nextcloud) keep no record of why a file was refused.
 */
static void log_verdict(const conn *k, const bjob *job, const char *lab, const clipmod_result *r,
                        const char *ans)
{
    double score, threshold;
    const char *top = clipmod_result_top_category(r);
    char gen[24];
    const char *scan_policy = reload_job_policy(job, gen, sizeof gen);

    /* policy= (12 hex digits of the fingerprint) and generation= come with every
     * line from the log context (reload.c); scan_* only if the job's differs. */
    verdict_top_score(r, &score, &threshold);
    cm_log(CM_LOG_INFO, "clamd verdict", CM_LF_S("source", lab), CM_LF_S("peer", k->peer),
           CM_LF_S("reply", ans), CM_LF_S("state", clipmod_state_name(clipmod_result_state(r))),
           CM_LF_S("category", top ? top : ""), CM_LF_F("score", score),
           CM_LF_F("threshold", threshold),
           CM_LF_S("action", clipmod_action_name(clipmod_result_action(r))),
           CM_LF_S("reason", clipmod_result_state(r) == CLIPMOD_STATE_UNSCANNED
                                 ? clipmod_reason_name(clipmod_result_reason(r))
                                 : ""),
           CM_LF_S("policy_name", clipmod_engine_policy_name(job->engine)),
           CM_LF_S("scan_policy", scan_policy),
           CM_LF_S("scan_generation", scan_policy ? gen : NULL), CM_LF_END);
}

/* Reply for one result; *found / *errors count. */
static int verdict(conn *k, const bjob *job, const char *label, const clipmod_result *r, int *found,
                   int *errors)
{
    const dconfig *c = C.c;
    char lab[MAX_COMMAND];
    label_of(label, lab, sizeof lab);

    switch (clipmod_result_state(r)) {
    case CLIPMOD_STATE_FLAGGED:
        if (clipmod_result_action(r) >= c->clamd_found_at) {
            (*found)++;
            log_verdict(k, job, lab, r, "FOUND");
            return reply(k, "%s: Clipmod.%s FOUND", lab, clipmod_result_top_category(r));
        }
        log_verdict(k, job, lab, r, "OK");
        return reply(k, "%s: OK", lab);
    case CLIPMOD_STATE_UNSCANNED: {
        const char *why = clipmod_reason_name(clipmod_result_reason(r));
        if (c->clamd_unscanned == UNSCANNED_FOUND) {
            (*found)++;
            log_verdict(k, job, lab, r, "FOUND");
            return reply(k, "%s: Clipmod.Unscanned.%s FOUND", lab, why);
        }
        if (c->clamd_unscanned == UNSCANNED_OK) {
            log_verdict(k, job, lab, r, "OK");
            return reply(k, "%s: OK", lab);
        }
        (*errors)++;
        log_verdict(k, job, lab, r, "ERROR");
        return reply(k, "%s: Clipmod.Unscanned.%s ERROR", lab, why);
    }
    default:
        log_verdict(k, job, lab, r, "OK");
        return reply(k, "%s: OK", lab);
    }
}

/* 1 if `r` answers something other than OK (FOUND or ERROR). */
static int reportable(const clipmod_result *r)
{
    switch (clipmod_result_state(r)) {
    case CLIPMOD_STATE_FLAGGED:
        return clipmod_result_action(r) >= C.c->clamd_found_at;
    case CLIPMOD_STATE_UNSCANNED:
        return C.c->clamd_unscanned != UNSCANNED_OK;
    default:
        return 0;
    }
}

/* Submit `job` and wait; NULL with a sentence in `why` when it did not complete. */
static bjob *run_job(bjob *job, char *why, size_t whylen)
{
    int rc = batcher_submit(job);
    if (rc != BATCH_OK) {
        snprintf(why, whylen, "%s",
                 rc == BATCH_FULL ? "Server busy (scan queue full)." : "Server shutting down.");
        bjob_release(job);
        return NULL;
    }
    bj_status st = bjob_wait(job);
    if (st != BJ_DONE) {
        snprintf(why, whylen, "%s",
                 st == BJ_EXPIRED ? "Scan deadline exceeded." : clipmod_strerror(job->err));
        bjob_release(job);
        return NULL;
    }
    return job;
}

/* Scan one buffer (INSTREAM, FILDES; owned) and answer with `label`. */
static int scan_one(conn *k, const char *label, unsigned char *data, size_t len)
{
    char why[128];
    int found = 0, errors = 0;
    cm_swap_info info;
    clipmod_engine *engine = reload_acquire_info(&info);
    bjob *job = bjob_new(1, engine, &info, IFACE_CLAMD);
    clipmod_engine_free(engine);

    if (job)
        job->in[0].name = strdup(label);
    if (!job || !job->in[0].name) {
        free(data);
        bjob_release(job);
        return reply(k, "%s: Can't allocate memory ERROR", label);
    }
    job->in[0].data = data;
    job->in[0].len = len;
    job = run_job(job, why, sizeof why);
    if (!job)
        return reply(k, "%s: %s ERROR", label, why);
    int rc = verdict(k, job, label, job->out[0], &found, &errors);
    bjob_release(job);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */
/* ------------------------------------------------------------------------ */

/* Chunks framed by clamd_stream (clamd_proto.c), read no further than the stream. */
static int cmd_instream(conn *k)
{
    unsigned char in[READ_CHUNK];
    cm_dbuf buf;
    clamd_stream s;
    int full = 0;

    clamd_stream_init(&s, C.c->stream_max_length);
    /* The stream framing stops at the limit; the buffer's cap says it again. */
    cm_dbuf_init(&buf, (size_t)C.c->stream_max_length);
    set_timeout(k->fd, C.c->clamd_read_timeout_s);
    for (;;) {
        size_t want = clamd_stream_want(&s, sizeof in), off = 0;
        if (!want)
            break;
        ssize_t r = recv(k->fd, in, want, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto broken;
        while (off < (size_t)r) {
            const unsigned char *data;
            size_t dlen, used = clamd_stream_feed(&s, in + off, (size_t)r - off, &data, &dlen);
            int rc = dlen ? cm_dbuf_addn(&buf, data, dlen) : CM_DBUF_OK;
            if (rc == CM_DBUF_E_TOOBIG)
                full = 1;
            else if (rc != CM_DBUF_OK) {
                cm_dbuf_free(&buf);
                reply(k, "INSTREAM: Can't allocate memory ERROR");
                return -1;
            }
            if (!used)
                break;
            off += used;
        }
    }
    if (s.over || full) {
        cm_dbuf_free(&buf);
        cm_log(CM_LOG_INFO, "clamd: stream over stream-max-length", CM_LF_S("peer", k->peer),
               CM_LF_I("bytes", s.total), CM_LF_I("max", s.max), CM_LF_END);
        reply(k, "INSTREAM size limit exceeded. ERROR");
        return -1; /* as clamd: the connection ends */
    }
    size_t len;
    unsigned char *data = (unsigned char *)cm_dbuf_take(&buf, &len);
    return scan_one(k, "stream", data, len);
broken:
    cm_dbuf_free(&buf);
    return -1;
}

/*
 * Why a passed descriptor is refused, or NULL. Only what the client could read
 * itself is scanned: an O_PATH descriptor (which fstat accepts but read refuses)
 * or a write-only one would otherwise be a way to have the daemon read a file
 * with its own rights. Sockets, directories and devices are not inputs.
 */
static const char *fildes_refusal(int fd, struct stat *st)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0)
        return "Access denied (bad descriptor).";
    if (flags & O_PATH)
        return "Access denied (O_PATH descriptor).";
    if ((flags & O_ACCMODE) == O_WRONLY)
        return "Access denied (descriptor not open for reading).";
    if (fstat(fd, st))
        return "Access denied (fstat failed).";
    if (!S_ISREG(st->st_mode) && !S_ISFIFO(st->st_mode))
        return "Access denied (not a regular file or pipe).";
    return NULL;
}

/* Wait until `fd` is readable or the deadline passes: 1 ready, 0 expired. */
static int wait_readable(int fd, double deadline)
{
    for (;;) {
        double left = deadline - cm_now();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc != 0;
    }
}

enum { PASSED_OK, PASSED_TOO_BIG, PASSED_TIMEOUT, PASSED_NOMEM, PASSED_ERROR };

/*
 * Read a passed regular file or pipe whole, through the descriptor as passed (a
 * regular file from offset 0 with pread, as clamd maps it), at most `max` bytes,
 * by `deadline`: a pipe whose writer never closes cannot hold the connection. The
 * pipe is read non-blocking (the flag is restored before returning).
 */
static int read_passed(int fd, const struct stat *st, uint64_t max, double deadline,
                       unsigned char **out, size_t *outlen)
{
    unsigned char chunk[READ_CHUNK];
    cm_dbuf buf;
    int reg = S_ISREG(st->st_mode), rc = PASSED_OK, err = 0;
    int flags = fcntl(fd, F_GETFL);

    if (reg && (uint64_t)st->st_size > max)
        return PASSED_TOO_BIG;
    /* A byte past `max` cannot be added: the buffer's cap is the size limit. */
    cm_dbuf_init(&buf, max > SIZE_MAX - 1 ? SIZE_MAX - 1 : (size_t)max);
    if (!reg && flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    for (;;) {
        size_t len = cm_dbuf_len(&buf);
        ssize_t r =
            reg ? pread(fd, chunk, sizeof chunk, (off_t)len) : read(fd, chunk, sizeof chunk);
        if (r > 0) {
            int added = cm_dbuf_addn(&buf, chunk, (size_t)r);
            if (added != CM_DBUF_OK) {
                rc = added == CM_DBUF_E_TOOBIG ? PASSED_TOO_BIG : PASSED_NOMEM;
                break;
            }
            if (cm_now() > deadline) {
                rc = PASSED_TIMEOUT; /* a regular file on a slow file system */
                break;
            }
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = PASSED_ERROR;
            err = errno;
            break;
        }
        if (!wait_readable(fd, deadline)) {
            rc = PASSED_TIMEOUT;
            break;
        }
    }
    if (!reg && flags >= 0)
        fcntl(fd, F_SETFL, flags);
    if (rc != PASSED_OK) {
        cm_dbuf_free(&buf);
        errno = err; /* for PASSED_ERROR's message */
        return rc;
    }
    *out = (unsigned char *)cm_dbuf_take(&buf, outlen);
    return PASSED_OK;
}

/* The descriptor passed with the byte after FILDES; extra descriptors are closed. */
static int receive_fd(conn *k)
{
    char dummy, ctl[CMSG_SPACE(4 * sizeof(int))];
    struct iovec iov = {.iov_base = &dummy, .iov_len = 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    int fd = -1;

    if (recvmsg(k->fd, &msg, MSG_CMSG_CLOEXEC) <= 0)
        return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int got;
            memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
            if (fd < 0)
                fd = got;
            else
                close(got);
        }
    }
    return fd;
}

static int cmd_fildes(conn *k)
{
    static const char *const passed_error[] = {
        [PASSED_TOO_BIG] = "size limit exceeded",
        [PASSED_TIMEOUT] = "read timed out (clamd.read-timeout).",
        [PASSED_NOMEM] = "Can't allocate memory",
        [PASSED_ERROR] = "read failed.",
    };
    char label[32];
    struct stat st;
    unsigned char *buf = NULL;
    size_t len = 0;

    if (!k->is_unix)
        return reply(k, "FILDES: only on a unix socket ERROR");
    int fd = receive_fd(k);
    if (fd < 0)
        return reply(k, "FILDES: didn't receive file descriptor. ERROR");
    snprintf(label, sizeof label, "fd[%d]", fd);
    const char *refused = fildes_refusal(fd, &st);
    if (refused) {
        close(fd);
        cm_log(CM_LOG_INFO, "clamd: passed descriptor refused", CM_LF_S("peer", k->peer),
               CM_LF_S("why", refused), CM_LF_END);
        return reply(k, "%s: %s ERROR", label, refused);
    }
    /* Read through the descriptor as passed, never re-opened: the client's rights. */
    double deadline = cm_now() + C.c->clamd_read_timeout_s;
    int rc = read_passed(fd, &st, C.c->stream_max_length, deadline, &buf, &len);
    int err = errno;
    close(fd);
    if (rc != PASSED_OK) {
        cm_log(rc == PASSED_TIMEOUT ? CM_LOG_WARN : CM_LOG_INFO,
               "clamd: passed descriptor not read", CM_LF_S("peer", k->peer),
               CM_LF_S("why", passed_error[rc]),
               CM_LF_S("type", S_ISREG(st.st_mode) ? "file" : "pipe"),
               CM_LF_S("error", rc == PASSED_ERROR ? strerror(err) : ""), CM_LF_END);
        return reply(k, "%s: %s ERROR", label, passed_error[rc]);
    }
    return scan_one(k, label, buf, len);
}

/* A file or directory tree inside the roots: the files found, in name order. */
typedef struct files {
    char **v;
    size_t n, cap;
} files;

static int files_push(files *f, char *path)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        char **grown = realloc(f->v, cap * sizeof *grown);
        if (!grown)
            return -1;
        f->v = grown;
        f->cap = cap;
    }
    f->v[f->n++] = path;
    return 0;
}

static int walk(const char *dir, int depth, files *out)
{
    struct dirent **names = NULL;
    int n = depth > MAX_DEPTH ? -1 : scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        const char *e = names[i]->d_name;
        struct stat st;
        char *path = NULL;
        if (strcmp(e, ".") && strcmp(e, "..") &&
            asprintf(&path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e) >= 0) {
            /* Symbolic links are not followed (clamd's default). */
            if (!lstat(path, &st) && S_ISDIR(st.st_mode)) {
                walk(path, depth + 1, out);
            } else if (!lstat(path, &st) && S_ISREG(st.st_mode) && !files_push(out, path)) {
                path = NULL;
            }
        }
        free(path);
        free(names[i]);
    }
    free(names);
    return 0;
}

/*
 * Files f->v[start .. start+n) as one job: each opened through roots.c (so a link
 * swapped in meanwhile is refused), judged, and answered. Inside a directory
 * (`in_dir`) only what is not OK is listed, as clamd does. Counts into *found and
 * *errors; returns reply()'s status (nonzero once the client is gone).
 */
static int scan_batch(conn *k, const files *f, size_t start, size_t n, int in_dir, const char *lab,
                      int *found, int *errors)
{
    char why[256], plab[MAX_COMMAND];
    size_t opened = 0;
    int rc = 0;
    cm_swap_info info;
    clipmod_engine *engine = reload_acquire_info(&info);
    bjob *job = bjob_new(n, engine, &info, IFACE_CLAMD);
    size_t *which = calloc(n, sizeof *which);

    clipmod_engine_free(engine);
    if (!job || !which) {
        bjob_release(job);
        free(which);
        return reply(k, "%s: Can't allocate memory ERROR", lab);
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = f->v[start + i];
        int fd = roots_open(&C.c->clamd_roots, p, NULL, why, sizeof why);
        if (fd < 0) {
            label_of(p, plab, sizeof plab);
            (*errors)++;
            rc = reply(k, "%s: " ERR_ACCESS " ERROR", plab);
            continue;
        }
        job->in[opened].fd = fd;
        job->in[opened].name = strdup(p);
        which[opened++] = start + i;
    }
    job->n = opened; /* unused slots are empty and freed as such */
    if (opened)
        job = run_job(job, why, sizeof why);
    if (opened && !job) {
        *errors += (int)opened;
        for (size_t i = 0; i < opened && !rc; i++) {
            label_of(f->v[which[i]], plab, sizeof plab);
            rc = reply(k, "%s: %s ERROR", plab, why);
        }
    }
    for (size_t i = 0; job && i < opened && !rc; i++) {
        clipmod_result *r = job->out[i];
        if (in_dir && !reportable(r))
            continue;
        rc = verdict(k, job, f->v[which[i]], r, found, errors);
    }
    if (job) {
        job->n = n;
        bjob_release(job);
    }
    free(which);
    return rc;
}

static int cmd_scan(conn *k, const char *arg, int stop_at_found)
{
    char why[256];
    char *real = roots_resolve(&C.c->clamd_roots, arg, why, sizeof why);
    files f = {0};
    struct stat st;
    int found = 0, errors = 0, rc = 0;
    char lab[MAX_COMMAND];

    label_of(arg, lab, sizeof lab);
    if (!real) {
        cm_log(CM_LOG_INFO, "clamd: path refused", CM_LF_S("path", arg), CM_LF_S("why", why),
               CM_LF_END);
        return reply(k, "%s: " ERR_ACCESS " ERROR", lab);
    }
    if (stat(real, &st)) {
        free(real);
        return reply(k, "%s: lstat() failed: %s. ERROR", lab, strerror(errno));
    }
    const int in_dir = S_ISDIR(st.st_mode);
    if (in_dir) {
        walk(real, 0, &f);
    } else {
        char *copy = strdup(real);
        if (!copy || files_push(&f, copy))
            free(copy);
    }
    const size_t batch = C.c->max_batch;
    for (size_t start = 0; start < f.n && rc == 0 && !(stop_at_found && found); start += batch) {
        size_t n = f.n - start < batch ? f.n - start : batch;
        rc = scan_batch(k, &f, start, n, in_dir, lab, &found, &errors);
    }
    if (in_dir && !rc && !found && (!errors || (size_t)errors < f.n))
        rc = reply(k, "%s: OK", lab);
    for (size_t i = 0; i < f.n; i++)
        free(f.v[i]);
    free(f.v);
    free(real);
    return rc;
}

static void version_text(char *out, size_t len)
{
    clipmod_engine *e = reload_acquire();
    /* clamd: "ClamAV VERSION/DB-VERSION/DB-TIME"; ours: the policy's generation and name. */
    snprintf(out, len, "clipmod %s/%lu/%s", CLIPMOD_VERSION_STRING, reload_generation(),
             e ? clipmod_engine_policy_name(e) : "");
    clipmod_engine_free(e);
}

/*
 * STATS in clamd's layout (clamd's thrmgr_printstats): POOLS, STATE, THREADS,
 * QUEUE, MEMSTATS, then END, the lines separated by newlines and the last one
 * ended by the command's terminator. The numbers are ours: the scan workers are
 * the pool's threads, the batcher's queue its queue, glibc's mallinfo2 the memory.
 */
static int cmd_stats(conn *k)
{
    size_t waiting = 0, running = 0, capacity = 0;
    unsigned max = C.c->workers + C.c->url_workers;
    unsigned live;
    struct mallinfo2 mi = mallinfo2();
    const double mb = 1024.0 * 1024.0;

    metrics_queue_get(&waiting, &running, &capacity);
    live = running < max ? (unsigned)running : max;
    return reply(k,
                 "POOLS: 1\n\nSTATE: VALID PRIMARY\n"
                 "THREADS: live %u  idle %u max %u idle-timeout %u\n"
                 "QUEUE: %zu items\n\n"
                 "MEMSTATS: heap %.3fM mmap %.3fM used %.3fM free %.3fM releasable %.3fM "
                 "pools 1 pools_used %.3fM pools_total %.3fM\nEND",
                 live, max - live, max, C.c->clamd_idle_timeout_s, waiting, (double)mi.arena / mb,
                 (double)mi.hblkhd / mb, (double)mi.uordblks / mb, (double)mi.fordblks / mb,
                 (double)mi.keepcost / mb, (double)(mi.uordblks + mi.hblkhd) / mb,
                 (double)(mi.arena + mi.hblkhd) / mb);
}

/*
 * SHUTDOWN stops the daemon as SIGTERM does (main's sigwait receives it; requests
 * in flight are answered). clamd obeys anyone who can connect; here only the unix
 * socket, whose file mode (clamd.unix-socket-mode) says who may, is obeyed: on TCP
 * any local user or, with a non-loopback address, any host could stop the service.
 */
static void cmd_shutdown(conn *k)
{
    if (!k->is_unix) {
        cm_log(CM_LOG_WARN, "clamd: SHUTDOWN refused on TCP (unix socket only)",
               CM_LF_S("peer", k->peer), CM_LF_END);
        reply(k, "SHUTDOWN is accepted on the unix socket only. ERROR");
        return;
    }
    cm_log(CM_LOG_INFO, "clamd: SHUTDOWN received: stopping", CM_LF_S("peer", k->peer), CM_LF_END);
    kill(getpid(), SIGTERM);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

/* Returns 1 to keep the connection (a session goes on), 0 to close it. */
static int dispatch(conn *k, const clamd_line *line)
{
    char ver[512];
    clamd_command cmd;

    /* The command table and clamd's rules (prefixes, sessions) are in clamd_proto.c. */
    clamd_classify(line, k->session, &cmd);
    if (k->session)
        k->id++;
    metrics_clamd(cmd.name);

    switch (cmd.kind) {
    case CLAMD_PING:
        /* A balancer's check (expect PONG) must fail while draining; see drain.c. */
        drain_note_check();
        if (drain_active())
            reply(k, "DRAINING. ERROR");
        else
            reply(k, "PONG");
        break;
    case CLAMD_VERSION:
        version_text(ver, sizeof ver);
        reply(k, "%s", ver);
        break;
    case CLAMD_VERSIONCOMMANDS:
        version_text(ver, sizeof ver);
        reply(k,
              "%s| COMMANDS: SCAN CONTSCAN MULTISCAN INSTREAM FILDES PING VERSION "
              "VERSIONCOMMANDS IDSESSION END RELOAD STATS SHUTDOWN",
              ver);
        break;
    case CLAMD_INSTREAM:
        if (cmd_instream(k))
            return 0;
        break;
    case CLAMD_FILDES:
        if (cmd_fildes(k))
            return 0;
        break;
    case CLAMD_SCAN:
    case CLAMD_CONTSCAN:
    case CLAMD_MULTISCAN:
        if (cmd_scan(k, cmd.arg, cmd.kind == CLAMD_SCAN))
            return 0;
        break;
    case CLAMD_IN_SESSION_INVALID:
        reply(k, "Command invalid inside IDSESSION. ERROR");
        return 0;
    case CLAMD_IDSESSION:
        k->session = 1;
        k->id = 0;
        return 1;
    case CLAMD_END:
        return 0;
    case CLAMD_RELOAD:
        reload_request();
        reply(k, "RELOADING");
        return 0;
    case CLAMD_STATS:
        cmd_stats(k);
        break;
    case CLAMD_SHUTDOWN:
        cmd_shutdown(k);
        return 0;
    default:
        if (cmd.kind == CLAMD_UNKNOWN && !strcmp(cmd.name, "IDSESSION") && !line->prefixed)
            cm_log(CM_LOG_INFO, "clamd: IDSESSION without z/n prefix refused",
                   CM_LF_S("peer", k->peer), CM_LF_END);
        reply(k, "UNKNOWN COMMAND");
        return 0;
    }
    return k->session;
}

static void *serve(void *arg)
{
    conn *k = arg;
    clamd_line line;

    for (;;) {
        /* Between session commands the idle timeout applies, else the read timeout. */
        set_timeout(k->fd, k->session ? C.c->clamd_idle_timeout_s : C.c->clamd_read_timeout_s);
        int n = read_command(k, &line);
        if (n <= 0)
            break;
        int more = dispatch(k, &line);
        set_busy(k, 0);
        if (!more)
            break;
    }
    set_busy(k, 0);
    pthread_mutex_lock(&C.lock);
    for (int i = 0; i < (int)C.c->clamd_max_connections; i++)
        if (C.fds[i] == k->fd)
            C.fds[i] = -1;
    close(k->fd);
    C.active--;
    pthread_cond_broadcast(&C.idle);
    pthread_mutex_unlock(&C.lock);
    free(k);
    return NULL;
}

static void accept_one(int lfd, int is_unix)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
    conn *k = NULL;
    pthread_t t;
    pthread_attr_t attr;

    if (fd < 0)
        return;
    pthread_mutex_lock(&C.lock);
    if (C.stopping || C.active >= (int)C.c->clamd_max_connections) {
        pthread_mutex_unlock(&C.lock);
        static const char busy[] = "Max connections reached. ERROR\n";
        (void)!write(fd, busy, sizeof busy - 1);
        close(fd);
        cm_log(CM_LOG_WARN, "clamd: connection refused (clamd.max-connections)", CM_LF_END);
        return;
    }
    C.active++;
    for (int i = 0; i < (int)C.c->clamd_max_connections; i++)
        if (C.fds[i] < 0) {
            C.fds[i] = fd;
            break;
        }
    pthread_mutex_unlock(&C.lock);

    k = calloc(1, sizeof *k);
    if (!k)
        goto fail;
    k->fd = fd;
    k->is_unix = is_unix;
    k->term = '\n';
    if (is_unix)
        snprintf(k->peer, sizeof k->peer, "unix");
    else if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, k->peer, sizeof k->peer);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, k->peer, sizeof k->peer);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, serve, k);
    pthread_attr_destroy(&attr);
    if (!rc)
        return;
fail:
    free(k);
    pthread_mutex_lock(&C.lock);
    for (int i = 0; i < (int)C.c->clamd_max_connections; i++)
        if (C.fds[i] == fd)
            C.fds[i] = -1;
    C.active--;
    pthread_mutex_unlock(&C.lock);
    close(fd);
}

static void *acceptor(void *unused)
{
    for (;;) {
        struct pollfd p[3] = {
            {C.wake[0], POLLIN, 0}, {C.unix_fd, POLLIN, 0}, {C.tcp_fd, POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents)
            break;
        if (p[1].revents & POLLIN)
            accept_one(C.unix_fd, 1);
        if (p[2].revents & POLLIN)
            accept_one(C.tcp_fd, 0);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

static int listen_unix(const char *path, unsigned mode)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd;

    size_t len = strlen(path);

    /* Refused rather than cut: a truncated path would bind another socket. */
    if (len >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG; /* for the caller's log line */
        return -1;
    }
    memcpy(sa.sun_path, path, len + 1);
    /* A stale socket from a previous run is replaced; any other file is not. */
    if (!lstat(path, &st)) {
        if (!S_ISSOCK(st.st_mode)) {
            errno = ENOTSOCK; /* the caller logs strerror: say what is wrong */
            return -1;
        }
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || chmod(path, mode) || listen(fd, 64)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int listen_tcp(const char *spec, char *bound, size_t boundlen)
{
    struct sockaddr_storage want;
    unsigned wantlen;
    int fd = -1, one = 1;

    if (config_listen_addr(spec, &want, &wantlen))
        return -1;
    fd = socket(want.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&want, wantlen) || listen(fd, 64)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char addr[64] = "?";
    unsigned port = 0;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    snprintf(bound, boundlen, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", addr, port);
    return fd;
}

int clamd_start(const dconfig *c, char *bound, size_t boundlen)
{
    C.c = c;
    bound[0] = '\0';
    if (!c->clamd_unix && !c->clamd_tcp)
        return 0;
    C.fds = malloc(c->clamd_max_connections * sizeof *C.fds);
    if (!C.fds)
        return -1;
    for (unsigned i = 0; i < c->clamd_max_connections; i++)
        C.fds[i] = -1;
    if (pipe2(C.wake, O_CLOEXEC))
        return -1;
    if (c->clamd_unix) {
        C.unix_fd = listen_unix(c->clamd_unix, c->clamd_unix_mode);
        if (C.unix_fd < 0) {
            cm_log(CM_LOG_ERROR, "clamd: cannot listen on the unix socket",
                   CM_LF_S("path", c->clamd_unix), CM_LF_S("error", strerror(errno)), CM_LF_END);
            return -1;
        }
    }
    if (c->clamd_tcp) {
        C.tcp_fd = listen_tcp(c->clamd_tcp, bound, boundlen);
        if (C.tcp_fd < 0) {
            cm_log(CM_LOG_ERROR, "clamd: cannot listen on TCP", CM_LF_S("tcp", c->clamd_tcp),
                   CM_LF_S("error", strerror(errno)), CM_LF_END);
            return -1;
        }
    }
    if (pthread_create(&C.acceptor, NULL, acceptor, NULL))
        return -1;
    C.started = 1;
    return 0;
}

/* No new connections: the acceptor ends and the listeners close (drain.c, clamd_stop). */
void clamd_quiesce(void)
{
    if (C.started) {
        (void)!write(C.wake[1], "x", 1);
        pthread_join(C.acceptor, NULL);
        C.started = 0;
    }
    if (C.unix_fd >= 0) {
        close(C.unix_fd);
        if (C.c && C.c->clamd_unix)
            unlink(C.c->clamd_unix);
    }
    if (C.tcp_fd >= 0)
        close(C.tcp_fd);
    C.unix_fd = C.tcp_fd = -1;
}

unsigned clamd_in_flight(void)
{
    pthread_mutex_lock(&C.lock);
    int n = C.busy;
    pthread_mutex_unlock(&C.lock);
    return n > 0 ? (unsigned)n : 0;
}

void clamd_stop(void)
{
    clamd_quiesce();
    if (!C.fds)
        return;
    pthread_mutex_lock(&C.lock);
    C.stopping = 1;
    /* Connections finish the command they are in; their next read ends them. */
    for (unsigned i = 0; i < C.c->clamd_max_connections; i++)
        if (C.fds[i] >= 0)
            shutdown(C.fds[i], SHUT_RD);
    struct timespec until = cm_deadline(CLOCK_REALTIME, C.c->request_timeout_ms + 5000);
    while (C.active > 0)
        if (pthread_cond_timedwait(&C.idle, &C.lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&C.lock);
}
