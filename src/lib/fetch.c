/*
 * fetch.c - fetch mode: downloading images by URL with libcurl, then scanning them.
 *
 * Owns everything between a URL and the bytes clipmod_scan_batch() sees: checking
 * the URL, the SSRF guard at connection time, redirects, the byte cap, timeouts,
 * and turning each failure into an "unscanned" verdict with its reason. One curl
 * multi handle per call runs fetch-parallel transfers at once; results keep the
 * input order whatever order the transfers finish in.
 *
 * The guard sits in CURLOPT_OPENSOCKETFUNCTION because that callback receives the
 * address curl is about to connect to: after DNS, after curl has normalised odd
 * spellings of the host ("2130706433", "0177.0.0.1", "127.1"), for every address
 * it tries and for every redirect. Checking the URL's text alone would miss names
 * that resolve inside the network, and a separate DNS lookup before curl's own
 * could be answered differently the second time (DNS rebinding). URLs whose host
 * is an address literal are also checked before their transfer starts, only to
 * refuse them without a DNS query and with a clearer message.
 *
 * Redirects are followed here, one hop at a time, rather than by curl: each hop is
 * a new URL that passes the same checks as the first, gets what is left of the
 * URL's time budget, and loses any credentials when it leaves the first origin.
 * Neither cookies nor a proxy are used: a proxy would connect on our behalf to
 * addresses the guard never sees.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "common.h"
#include "engine.h"
#include "fetch.h"
#include "model.h"
#include "plugin_host.h"
#include "result.h"

/* Sent with every request, so that server operators can tell who is fetching. */

/* No image link needs more; the limit bounds every copy of a URL we make. */
#define MAX_URL 8192

/* Longest status-line text and Location header kept from a response. */
#define MAX_STATUS_TEXT 64

/* Preferred types, for servers that negotiate; what is scanned is decided by magic bytes. */
#define ACCEPT "Accept: image/avif,image/webp,image/png,image/jpeg,image/gif,image/*;q=0.8"

/* Ends every blocked-address sentence: what the guard does, and what opens it. */
#define GUARD_NOTE "; fetch mode connects only to public addresses unless allowed (allow-fetch)"

/* Why a transfer was stopped by one of our callbacks. */
typedef enum stop { STOP_NONE, STOP_CAP, STOP_STATUS, STOP_NOMEM } stop;

/* One URL's download, across its redirects. */
typedef struct xfer {
    CURL *easy;
    const cm_fetch_opts *o;
    cm_fetched *res;
    int active;   /* in the multi handle (or between two hops) */
    int cut;      /* this hop's time is what is left of the call's (total_ms) */
    char *url;    /* the current hop: URL as curl normalised it */
    char *host;   /* its host, lowercase, an IPv6 address without brackets */
    char *origin; /* scheme://host:port */
    uint64_t hops;
    double start_ms;
    /* The current hop's response. */
    long status;
    char status_text[MAX_STATUS_TEXT];
    char *location;
    long long content_length; /* -1: not announced */
    unsigned char *buf;
    size_t len, cap;
    stop stopped;
    /* What the guard refused on this hop. */
    int refused;
    cm_addr refused_addr;
    cm_addr_kind refused_kind;
    char errbuf[CURL_ERROR_SIZE];
} xfer;

typedef struct fetch_state {
    const cm_fetch_opts *o;
    double deadline_ms; /* now_ms() when total_ms runs out, or 0 */
    CURLM *multi;
    struct curl_slist *headers;
    size_t active;
    int nomem;
} fetch_state;

/* A URL that passed the checks. */
typedef struct target {
    char *url, *host, *origin;
} target;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

/*
 * libcurl is initialised once per process, on first use, and never cleaned up:
 * the engine may scan from any thread, and curl_global_cleanup() must not run
 * while another thread uses curl.
 */
static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* A setting as curl's milliseconds: "a large value lifts a limit", so it must not wrap. */
static long ms_option(double ms)
{
    return ms >= (double)INT_MAX ? (long)INT_MAX : ms < 1 ? 1L : (long)ms;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Response text and headers are untrusted: keep printable ASCII only. */
static void copy_printable(char *dst, size_t size, const char *src, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (size)
        dst[j] = '\0';
}

static void CM_PRINTF(3, 4) set_reason(cm_fetched *r, clipmod_reason reason, const char *fmt, ...)
{
    va_list ap;
    r->reason = reason;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* URLs                                                                     */
/* ------------------------------------------------------------------------ */

static void target_free(target *t)
{
    cm_free(t->url);
    cm_free(t->host);
    cm_free(t->origin);
    memset(t, 0, sizeof *t);
}

/*
 * Parse `ref` against `base` into u and check it is an http(s) URL with a host;
 * *scheme and *host receive libcurl's strings (curl_free). 0; 1 with r's reason set
 * when the URL is refused; -1 when out of memory.
 */
static int parse_url(CURLU *u, const char *base, const char *ref, char **scheme, char **host,
                     cm_fetched *r)
{
    CURLUcode uc;

    if (strlen(ref) > MAX_URL) {
        set_reason(r, CLIPMOD_REASON_BAD_URL, "the URL is longer than %d bytes", MAX_URL);
        return 1;
    }
    if (base && curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
        return -1;
    /* Without CURLU_GUESS_SCHEME: "example.com/cat.png" is not taken as http. */
    uc = curl_url_set(u, CURLUPART_URL, ref, CURLU_NON_SUPPORT_SCHEME);
    if (uc) {
        if (uc == CURLUE_OUT_OF_MEMORY)
            return -1;
        set_reason(r, CLIPMOD_REASON_BAD_URL, "not a valid absolute URL (%s)",
                   curl_url_strerror(uc));
        return 1;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
        (strcmp(*scheme, "http") && strcmp(*scheme, "https"))) {
        set_reason(r, CLIPMOD_REASON_BAD_URL,
                   "only http and https URLs are fetched, not %.32s:", *scheme ? *scheme : "this");
        return 1;
    }
    if (curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK || !**host) {
        set_reason(r, CLIPMOD_REASON_BAD_URL, "the URL has no host");
        return 1;
    }
    return 0;
}

/*
 * Fill t from the parsed u: the host lower-cased without IPv6 brackets, the origin
 * (scheme://host:port), and the URL, without credentials when its origin is not
 * `origin` (NULL: keep them). 0, or -1 when out of memory.
 */
static int fill_target(CURLU *u, const char *scheme, const char *host, const char *origin,
                       target *t)
{
    char *port = NULL, *url = NULL;
    size_t hn = strlen(host);
    const char *h = host;

    if (hn >= 2 && host[0] == '[') {
        h++;
        hn -= 2;
    }
    t->host = cm_strndup(h, hn);
    if (!t->host)
        return -1;
    for (char *p = t->host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        return -1;
    t->origin = cm_asprintf("%s://%s:%s", scheme, host, port);
    curl_free(port);
    if (!t->origin)
        return -1;
    if (origin && strcmp(origin, t->origin)) {
        curl_url_set(u, CURLUPART_USER, NULL, 0);
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    }
    if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
        return -1;
    t->url = cm_strdup(url);
    curl_free(url);
    return t->url ? 0 : -1;
}

/*
 * Resolve `ref` against `base` (the current hop's URL; NULL for a first URL),
 * check it and fill *t. Credentials written in the URL are dropped when its
 * origin is not `origin` (NULL: keep them), so a redirect to another host never
 * carries them there. Returns 0; 1 with r's reason set when the URL is refused;
 * -1 when out of memory.
 */
static int resolve_target(const char *base, const char *ref, const char *origin,
                          const cm_fetch_opts *o, target *t, cm_fetched *r)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    cm_addr addr;
    cm_addr_kind kind;
    int rc = -1;

    memset(t, 0, sizeof *t);
    if (!u)
        return -1;
    rc = parse_url(u, base, ref, &scheme, &host, r);
    if (!rc)
        rc = fill_target(u, scheme, host, origin, t);
    /* An address literal is judged now: no DNS query, no transfer, a clear message. */
    if (!rc && !o->socket_guard_only && !cm_addr_parse(t->host, &addr) &&
        !cm_ssrf_allowed(o->allow, NULL, &addr, &kind)) {
        char text[64];
        cm_addr_format(&addr, text, sizeof text);
        set_reason(r, CLIPMOD_REASON_BLOCKED_ADDRESS, "%s is %s%s", text, cm_addr_kind_name(kind),
                   GUARD_NOTE);
        rc = 1;
    }
    if (rc)
        target_free(t);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* libcurl callbacks                                                        */
/* ------------------------------------------------------------------------ */

/* The guard. Runs for every address curl tries to connect to, before the socket exists. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    xfer *x = clientp;
    cm_addr addr;
    cm_addr_kind kind = CM_ADDR_RESERVED;
    int known = !cm_addr_from_sockaddr(&a->addr, a->addrlen, &addr);

    if (purpose == CURLSOCKTYPE_IPCXN && known &&
        cm_ssrf_allowed(x->o->allow, x->host, &addr, &kind)) {
#ifdef SOCK_CLOEXEC
        return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
#else
        return socket(a->family, a->socktype, a->protocol);
#endif
    }
    if (!x->refused) {
        x->refused = 1;
        x->refused_kind = kind;
        if (known)
            x->refused_addr = addr;
        else
            memset(&x->refused_addr, 0, sizeof x->refused_addr);
    }
    return CURL_SOCKET_BAD;
}

/* Only these responses carry the image; any other body is not downloaded. */
static int wanted(long status)
{
    return status == 200 || status == 203;
}

static int header_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && !strncasecmp(line, name, k);
}

/* The header's value without surrounding blanks and the line end. */
static void header_value(const char *line, size_t n, size_t skip, const char **v, size_t *vn)
{
    const char *p = line + skip, *end = line + n;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *v = p;
    *vn = (size_t)(end - p);
}

/*
 * Every header line of every response of the hop (1xx ones included). We keep the
 * status, the Location and the announced length of the latest response, and stop
 * at the end of the headers a body that will not fit.
 */
static size_t on_header(char *line, size_t size, size_t count, void *p)
{
    xfer *x = p;
    const size_t n = size * count;
    const char *v;
    size_t vn;

    if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
        const char *sp = memchr(line, ' ', n);
        x->status = 0;
        x->status_text[0] = '\0';
        x->content_length = -1;
        cm_free(x->location);
        x->location = NULL;
        if (sp && (size_t)(sp - line) + 4 <= n) {
            x->status = strtol(sp + 1, NULL, 10);
            header_value(line, n, (size_t)(sp - line) + 4, &v, &vn);
            copy_printable(x->status_text, sizeof x->status_text, v, vn);
        }
    } else if (header_is(line, n, "location:")) {
        header_value(line, n, 9, &v, &vn);
        cm_free(x->location);
        /* One byte over the limit is kept, so that resolve_target() says "too long". */
        x->location = cm_strndup(v, vn > MAX_URL ? MAX_URL + 1 : vn);
        if (!x->location) {
            x->stopped = STOP_NOMEM;
            return 0;
        }
    } else if (header_is(line, n, "content-length:")) {
        header_value(line, n, 15, &v, &vn);
        char digits[24];
        copy_printable(digits, sizeof digits, v, vn);
        char *end;
        long long cl = strtoll(digits, &end, 10);
        x->content_length = *digits && !*end && cl >= 0 ? cl : -1;
    } else if ((n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n')) {
        if (wanted(x->status) && x->content_length >= 0 &&
            (unsigned long long)x->content_length > x->o->max_bytes) {
            x->stopped = STOP_CAP;
            return 0;
        }
    }
    return n;
}

/* The body, into memory, never past max-file-bytes: the transfer stops at the cap. */
static size_t on_body(char *data, size_t size, size_t count, void *p)
{
    xfer *x = p;
    const size_t n = size * count;

    if (!wanted(x->status)) {
        /* A redirect's or an error page's body: nothing we need is in it. */
        x->stopped = STOP_STATUS;
        return 0;
    }
    if (n > x->o->max_bytes - x->len) {
        x->stopped = STOP_CAP;
        return 0;
    }
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 1 << 16;
        if (!x->cap && x->content_length > 0 && (unsigned long long)x->content_length >= n)
            cap = (size_t)x->content_length;
        while (cap < x->len + n)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        if (cap > x->o->max_bytes)
            cap = (size_t)x->o->max_bytes;
        unsigned char *grown = cm_realloc(x->buf, cap);
        if (!grown) {
            x->stopped = STOP_NOMEM;
            return 0;
        }
        x->buf = grown;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, n);
    x->len += n;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Transfers                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Options shared by every hop. The ones that make fetching safe are checked: a
 * libcurl that refused them would fetch with other protocols or through a proxy.
 */
static int configure(fetch_state *s, xfer *x)
{
    CURL *c = x->easy;
    int ok = 1;
    ok &= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_PROXY, "") == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_HEADERDATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_WRITEDATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_PRIVATE, x) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf) == CURLE_OK;
    /* Threads: no SIGALRM for DNS timeouts. */
    ok &= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_USERAGENT, CLIPMOD_USER_AGENT) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->headers) == CURLE_OK;
    /* Bytes as sent: a compressed body must not expand past the cap after it was counted. */
    ok &= curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L) == CURLE_OK;
    ok &= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms_option((double)s->o->connect_ms)) ==
          CURLE_OK;
    return ok ? 0 : -1;
}

/* The URL is done, one way or the other: give its result, free its transfer. */
static void finish(fetch_state *s, xfer *x)
{
    if (x->res->reason == CLIPMOD_REASON_NONE) {
        x->res->data = x->buf;
        x->res->len = x->len;
        x->buf = NULL;
    }
    x->res->elapsed_ms = now_ms() - x->start_ms;
    if (x->active) {
        x->active = 0;
        s->active--;
    }
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    cm_free(x->buf);
    cm_free(x->location);
    cm_free(x->url);
    cm_free(x->host);
    cm_free(x->origin);
    x->buf = NULL;
    x->location = x->url = x->host = x->origin = NULL;
}

/* Give up on the URL for lack of memory; cm_fetch() then fails as a whole. */
static void fail_nomem(fetch_state *s, xfer *x)
{
    s->nomem = 1;
    set_reason(x->res, CLIPMOD_REASON_NETWORK, "not fetched: out of memory");
    finish(s, x);
}

/* Add a note saying which hop failed, when it was not the first. */
static void note_hop(xfer *x)
{
    size_t n = strlen(x->res->why);
    if (x->hops && n < sizeof x->res->why)
        snprintf(x->res->why + n, sizeof x->res->why - n, " (after %llu redirect%s, at %.200s)",
                 (unsigned long long)x->hops, x->hops == 1 ? "" : "s", x->url);
}

/* Start the current hop (x->url) with what is left of the URL's time (and the call's). */
static void start_hop(fetch_state *s, xfer *x)
{
    const double now = now_ms();
    double left = (double)x->o->timeout_ms - (now - x->start_ms);

    x->cut = s->deadline_ms && s->deadline_ms - now < left;
    if (x->cut)
        left = s->deadline_ms - now;

    x->status = 0;
    x->status_text[0] = '\0';
    cm_free(x->location);
    x->location = NULL;
    x->content_length = -1;
    x->len = 0;
    x->stopped = STOP_NONE;
    x->refused = 0;
    x->errbuf[0] = '\0';
    if (left < 1 && x->cut) {
        set_reason(x->res, CLIPMOD_REASON_TIMEOUT,
                   "not downloaded: the caller's time for all its URLs (%llu ms) ran out",
                   (unsigned long long)x->o->total_ms);
        note_hop(x);
        finish(s, x);
        return;
    }
    if (left < 1) {
        set_reason(x->res, CLIPMOD_REASON_TIMEOUT, "the download took longer than %llu ms",
                   (unsigned long long)x->o->timeout_ms);
        note_hop(x);
        finish(s, x);
        return;
    }
    if (curl_easy_setopt(x->easy, CURLOPT_URL, x->url) != CURLE_OK ||
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, ms_option(left)) != CURLE_OK ||
        curl_multi_add_handle(s->multi, x->easy) != CURLM_OK) {
        fail_nomem(s, x);
        return;
    }
    if (!x->active) {
        x->active = 1;
        s->active++;
    }
}

static void begin(fetch_state *s, xfer *x, const char *given, cm_fetched *res)
{
    target t;
    int r;

    x->o = s->o;
    x->res = res;
    x->start_ms = now_ms();
    res->reason = CLIPMOD_REASON_NONE;
    r = resolve_target(NULL, given, NULL, s->o, &t, res);
    if (r) {
        if (r < 0)
            fail_nomem(s, x);
        else
            finish(s, x);
        return;
    }
    x->url = t.url;
    x->host = t.host;
    x->origin = t.origin;
    x->easy = curl_easy_init();
    if (!x->easy) {
        fail_nomem(s, x);
        return;
    }
    if (configure(s, x)) {
        set_reason(res, CLIPMOD_REASON_NETWORK,
                   "this libcurl refuses an option fetch mode needs (it needs 7.85 or later)");
        finish(s, x);
        return;
    }
    start_hop(s, x);
}

/* The hop answered with a redirect: check where it leads and go there. */
static void follow(fetch_state *s, xfer *x)
{
    target t;
    int r;

    if (x->hops >= x->o->max_redirects) {
        set_reason(x->res, CLIPMOD_REASON_NETWORK,
                   "more than %llu redirects (fetch-max-redirects); the last one was to %.200s",
                   (unsigned long long)x->o->max_redirects, x->location);
        note_hop(x);
        finish(s, x);
        return;
    }
    r = resolve_target(x->url, x->location, x->origin, x->o, &t, x->res);
    if (r) {
        if (r < 0) {
            fail_nomem(s, x);
            return;
        }
        size_t n = strlen(x->res->why);
        snprintf(x->res->why + n, sizeof x->res->why - n, " (redirect %llu, to %.200s)",
                 (unsigned long long)x->hops + 1, x->location);
        finish(s, x);
        return;
    }
    x->hops++;
    cm_free(x->url);
    cm_free(x->host);
    cm_free(x->origin);
    x->url = t.url;
    x->host = t.host;
    x->origin = t.origin;
    start_hop(s, x);
}

static int is_tls_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return 1;
    default:
        return 0;
    }
}

/* One hop's transfer ended with `cc`: decide what it means for the URL. */
static void hop_done(fetch_state *s, xfer *x, CURLcode cc)
{
    cm_fetched *r = x->res;
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc);

    if (x->stopped == STOP_NOMEM) {
        fail_nomem(s, x);
        return;
    }
    if (x->refused && cc == CURLE_COULDNT_CONNECT) {
        char addr[64] = "an address";
        cm_addr literal;
        if (x->refused_addr.family)
            cm_addr_format(&x->refused_addr, addr, sizeof addr);
        if (!cm_addr_parse(x->host, &literal))
            set_reason(r, CLIPMOD_REASON_BLOCKED_ADDRESS, "%s is %s%s", addr,
                       cm_addr_kind_name(x->refused_kind), GUARD_NOTE);
        else
            set_reason(r, CLIPMOD_REASON_BLOCKED_ADDRESS, "%.200s resolves to %s, %s%s", x->host,
                       addr, cm_addr_kind_name(x->refused_kind), GUARD_NOTE);
    } else if (x->stopped == STOP_CAP) {
        if (x->content_length >= 0 && x->len == 0)
            set_reason(r, CLIPMOD_REASON_TOO_LARGE,
                       "the server announced %lld bytes, over max-file-bytes (%llu); nothing "
                       "was downloaded",
                       x->content_length, (unsigned long long)x->o->max_bytes);
        else
            set_reason(r, CLIPMOD_REASON_TOO_LARGE,
                       "more than max-file-bytes (%llu bytes): the download was stopped there",
                       (unsigned long long)x->o->max_bytes);
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        curl_off_t connected = 0;
        curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connected);
        if (x->cut)
            set_reason(r, CLIPMOD_REASON_TIMEOUT,
                       "stopped: the caller's time for all its URLs (%llu ms) ran out",
                       (unsigned long long)x->o->total_ms);
        else if (!connected)
            set_reason(r, CLIPMOD_REASON_TIMEOUT, "no connection to %.200s in time (%s)", x->host,
                       detail);
        else
            set_reason(r, CLIPMOD_REASON_TIMEOUT,
                       "the download took longer than %llu ms (fetch-timeout-ms)",
                       (unsigned long long)x->o->timeout_ms);
    } else if (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && x->stopped == STOP_STATUS)) {
        if (x->status >= 300 && x->status < 400 && x->location && *x->location) {
            follow(s, x);
            return;
        }
        if (!wanted(x->status) || cc != CURLE_OK)
            set_reason(r, CLIPMOD_REASON_HTTP_STATUS, "HTTP %ld%s%s%s", x->status,
                       x->status_text[0] ? " " : "", x->status_text,
                       x->status >= 300 && x->status < 400 ? " without a Location to follow" : "");
    } else if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL) {
        set_reason(r, CLIPMOD_REASON_BAD_URL, "%s", detail);
    } else if (is_tls_error(cc)) {
        set_reason(r, CLIPMOD_REASON_NETWORK, "TLS: %s", detail);
    } else {
        set_reason(r, CLIPMOD_REASON_NETWORK, "%s", detail);
    }
    if (r->reason != CLIPMOD_REASON_NONE)
        note_hop(x);
    finish(s, x);
}

clipmod_error cm_fetch(const cm_fetch_opts *o, const char *const *urls, size_t n, cm_fetched *out)
{
    fetch_state s = {o, 0, NULL, NULL, 0, 0};
    xfer *xs = NULL;
    size_t next = 0, parallel;
    clipmod_error rc = CLIPMOD_OK;

    if (!o || (!urls && n) || (n && !out))
        return CLIPMOD_E_INVALID_ARG;
    parallel = o->parallel < 1 ? 1 : o->parallel > n ? n : (size_t)o->parallel;
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        if (!urls[i])
            return CLIPMOD_E_INVALID_ARG;
    if (!n)
        return CLIPMOD_OK;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        for (size_t i = 0; i < n; i++)
            set_reason(&out[i], CLIPMOD_REASON_NETWORK, "libcurl could not be initialised: %s",
                       curl_easy_strerror(curl_init_rc));
        return CLIPMOD_OK;
    }
    if (o->total_ms)
        s.deadline_ms = now_ms() + (double)o->total_ms;
    xs = cm_calloc(n, sizeof *xs);
    s.multi = curl_multi_init();
    s.headers = curl_slist_append(NULL, ACCEPT);
    if (!xs || !s.multi || !s.headers) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    for (;;) {
        while (s.active < parallel && next < n && !s.nomem) {
            begin(&s, &xs[next], urls[next], &out[next]);
            next++;
        }
        if (s.nomem) {
            rc = CLIPMOD_E_NOMEM;
            goto out;
        }
        if (!s.active)
            break;
        int running = 0, left;
        CURLMcode mc = curl_multi_perform(s.multi, &running);
        if (mc != CURLM_OK) {
            rc = CLIPMOD_E_NOMEM; /* the multi interface fails only for lack of memory */
            goto out;
        }
        CURLMsg *m;
        while ((m = curl_multi_info_read(s.multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *easy = m->easy_handle;
            CURLcode cc = m->data.result;
            char *priv = NULL;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
            curl_multi_remove_handle(s.multi, easy);
            hop_done(&s, (xfer *)priv, cc);
        }
        if (s.active && running)
            curl_multi_poll(s.multi, NULL, 0, 1000, NULL);
    }
out:
    for (size_t i = 0; xs && i < n; i++) {
        if (xs[i].easy) {
            curl_multi_remove_handle(s.multi, xs[i].easy);
            if (!xs[i].res->reason)
                set_reason(xs[i].res, CLIPMOD_REASON_NETWORK, "not fetched: out of memory");
            finish(&s, &xs[i]);
        }
    }
    cm_free(xs);
    curl_slist_free_all(s.headers);
    curl_multi_cleanup(s.multi);
    return rc;
}

void cm_fetched_free(cm_fetched *out, size_t n)
{
    for (size_t i = 0; out && i < n; i++) {
        cm_free(out[i].data);
        out[i].data = NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Scanning URLs                                                            */
/* ------------------------------------------------------------------------ */

clipmod_error clipmod_scan_urls(const clipmod_engine *e, const char *const *urls, size_t n,
                                clipmod_result **out)
{
    return clipmod_scan_urls_within(e, urls, n, 0, out);
}

clipmod_error clipmod_scan_urls_within(const clipmod_engine *e, const char *const *urls, size_t n,
                                       uint64_t total_ms, clipmod_result **out)
{
    return clipmod_scan_urls_context(e, urls, NULL, n, total_ms, out);
}

/* The engine's fetch settings as cm_fetch's options, within total_ms (0: no bound). */
static cm_fetch_opts fetch_opts_of(const clipmod_engine *e, uint64_t total_ms)
{
    return (cm_fetch_opts){
        .max_bytes = e->settings[CLIPMOD_MAX_FILE_BYTES],
        .connect_ms = e->settings[CLIPMOD_FETCH_CONNECT_MS],
        .timeout_ms = e->settings[CLIPMOD_FETCH_TIMEOUT_MS],
        .max_redirects = e->settings[CLIPMOD_FETCH_MAX_REDIRECTS],
        .parallel = e->settings[CLIPMOD_FETCH_PARALLEL],
        .allow = e->fetch_allow,
        .total_ms = total_ms,
    };
}

/* An `unscanned` verdict in out[i] for every URL that could not be fetched. */
static clipmod_error unscanned_verdicts(const clipmod_engine *e, const char *const *urls,
                                        const cm_fetched *got, size_t n, clipmod_result **out)
{
    for (size_t i = 0; i < n; i++) {
        if (got[i].reason == CLIPMOD_REASON_NONE)
            continue;
        out[i] =
            cm_result_new(urls[i], clipmod_engine_policy_name(e), clipmod_model_describe(e->model));
        if (!out[i])
            return CLIPMOD_E_NOMEM;
        out[i]->top_prompts = (int)e->settings[CLIPMOD_TOP_PROMPTS];
        cm_result_unscanned(out[i], got[i].reason, got[i].why);
        out[i]->elapsed_ms = got[i].elapsed_ms;
    }
    return CLIPMOD_OK;
}

clipmod_error clipmod_scan_urls_context(const clipmod_engine *e, const char *const *urls,
                                        const char *const *contexts, size_t n, uint64_t total_ms,
                                        clipmod_result **out)
{
    cm_fetched *got = NULL;
    clipmod_input *inputs = NULL;
    clipmod_result **scanned = NULL;
    size_t *which = NULL, k = 0;
    clipmod_error rc = CLIPMOD_OK;

    if (!out || !n)
        return CLIPMOD_E_INVALID_ARG;
    memset(out, 0, n * sizeof *out);
    if (!e || !urls || !e->compiled)
        return CLIPMOD_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (!urls[i])
            return CLIPMOD_E_INVALID_ARG;
    got = cm_calloc(n, sizeof *got);
    inputs = cm_calloc(n, sizeof *inputs);
    scanned = cm_calloc(n, sizeof *scanned);
    which = cm_calloc(n, sizeof *which);
    if (!got || !inputs || !scanned || !which) {
        rc = CLIPMOD_E_NOMEM;
        goto out;
    }
    const cm_fetch_opts o = fetch_opts_of(e, total_ms);
    rc = cm_fetch(&o, urls, n, got);
    if (rc)
        goto out;
    /* The failures' verdicts exist before anything is scanned, so that no plugin sees a
     * result of a call that then fails for lack of memory. */
    rc = unscanned_verdicts(e, urls, got, n, out);
    if (rc)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (got[i].reason != CLIPMOD_REASON_NONE)
            continue;
        inputs[k] = (clipmod_input){.size = sizeof inputs[k],
                                    .data = got[i].data,
                                    .len = got[i].len,
                                    .name = urls[i],
                                    .context = contexts ? contexts[i] : NULL};
        which[k++] = i;
    }
    /* An empty body goes to the decoder too, which calls it what it is (decode-error). */
    if (k) {
        rc = clipmod_scan_batch(e, inputs, k, scanned);
        if (rc)
            goto out;
    }
    for (size_t j = 0; j < k; j++) {
        out[which[j]] = scanned[j];
        out[which[j]]->elapsed_ms += got[which[j]].elapsed_ms;
    }
    /* clipmod_scan_batch() showed plugins its results; these are the rest. */
    for (size_t i = 0; i < n; i++)
        if (got[i].reason != CLIPMOD_REASON_NONE) {
            const clipmod_input in = {.size = sizeof in, .name = urls[i]};
            cm_plugins_notify(e->plugins, e, &in, out[i]);
        }
out:
    if (rc)
        for (size_t i = 0; i < n; i++) {
            clipmod_result_free(out[i]);
            out[i] = NULL;
        }
    cm_fetched_free(got, n);
    cm_free(got);
    cm_free(inputs);
    cm_free(scanned);
    cm_free(which);
    return rc;
}
