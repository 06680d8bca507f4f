/*
 * conf.h - clipmod-milter's configuration file (YAML) and SMTP reply strings.
 *
 * Owns the reading and checking of the file described in clipmod-milter(8): every
 * key, its default, its type, and one "file:line:column: message" line per problem,
 * all problems at once, as clipmod policies report them. Relative paths are taken
 * from the configuration file's directory. Also owns the two small rules that need
 * no mail server to test: how an SMTP reply string is split for smfi_setreply(),
 * and how the skip lists match addresses.
 */
#ifndef CLIPMOD_MILTER_CONF_H
#define CLIPMOD_MILTER_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <clipmod/clipmod.h>

/* What to do with a message that could not be fully scanned (OnFail). */
typedef enum cmc_fail {
    CMC_FAIL_TEMPFAIL, /* 4xx: the sender retries later (the default) */
    CMC_FAIL_REJECT,   /* 5xx */
    CMC_FAIL_ACCEPT,   /* accept-with-header: deliver, marked "unscanned" */
} cmc_fail;

/* What the milter does for a policy action. */
typedef enum cmc_do {
    CMC_DO_ACCEPT,     /* deliver with the verdict headers */
    CMC_DO_QUARANTINE, /* smfi_quarantine(): the MTA holds it (Postfix: hold queue) */
    CMC_DO_REJECT,     /* refuse with the policy's SMTP reply */
    CMC_DO_DISCARD,    /* accept and drop silently */
} cmc_do;

/*
 * What the milter does with a message whose zip archives (archives-with-images) or
 * PDFs and office documents (documents-with-images) hold images, which it counts but
 * cannot scan, or cannot be read. Ordered by severity.
 */
typedef enum cmc_inside {
    CMC_INSIDE_ACCEPT,     /* deliver; the headers report the counts (the default) */
    CMC_INSIDE_QUARANTINE, /* hold for review */
    CMC_INSIDE_TEMPFAIL,   /* 451 */
    CMC_INSIDE_REJECT,     /* 554 */
} cmc_inside;

/*
 * An SMTP reply split for smfi_setreply(): "550 5.7.1 text" gives rcode "550",
 * xcode "5.7.1" (or "" when absent) and the text with each '%' doubled, as
 * libmilter requires.
 */
typedef struct cmc_reply {
    char rcode[4];
    char xcode[16];
    char text[1024];
} cmc_reply;

typedef struct cmc_list {
    char **v; /* lower case */
    size_t n;
} cmc_list;

typedef struct cmc_plugin {
    char *path;
    char *config;
} cmc_plugin;

typedef struct cmc_limits {
    uint64_t max_message_bytes;
    uint64_t max_parts;
    uint64_t max_depth;
    uint64_t max_images;
    uint64_t max_image_bytes;
} cmc_limits;

/* The log: block, as src/common/log.h takes it (static strings, never freed). */
typedef struct cmc_log {
    const char *format;   /* logfmt (default) or json */
    const char *target;   /* stderr (default) or syslog */
    const char *level;    /* debug, info (default), warn, error */
    const char *facility; /* syslog facility: mail (default), daemon, user, local0..local7 */
} cmc_log;

/* on-flag: the program run for each flagged image (src/common/onflag.h), as clamd's VirusEvent. */
typedef struct cmc_on_flag {
    char **argv; /* NULL-terminated; NULL: no hook */
    size_t argc;
    uint64_t timeout_ms;  /* 0: onflag.h's default (30 s) */
    unsigned max_running; /* 0: onflag.h's default (4) */
} cmc_on_flag;

/*
 * cache: the verdict cache (src/common/vcache.h), with clipmodd's keys and defaults.
 * Read at start only: a reload keeps the cache it has (and says so when it differs).
 */
typedef struct cmc_cache {
    uint64_t memory;           /* LRU byte cap; 0 (the default): no in-process tier */
    char *redis;               /* redis://host[:port][/db], or NULL (the default) */
    uint64_t ttl_ms;           /* Redis expiry of a verdict (1 d) */
    uint64_t redis_timeout_ms; /* bound of every Redis connect and command (50 ms) */
} cmc_cache;

typedef struct cmc_config {
    char *path; /* of the file read */
    char *socket;
    int socket_mode; /* chmod of a unix socket; -1 leaves it to the umask */
    char *model, *merges, *policy;
    char *cache_dir; /* NULL: the library's default, unless no_cache */
    int no_cache;
    int workers;                 /* scans at once; 0 means one per online CPU */
    int blas_threads;            /* threads of each scan's matrix products */
    clipmod_precision precision; /* of the linear layers: fp32 (default), int8, bf16 */
    uint64_t scan_wait_ms;
    uint64_t drain_timeout_ms;
    cmc_log log;
    cmc_limits limits;
    struct {
        clipmod_setting s;
        uint64_t value;
    } settings[CLIPMOD_SETTING__COUNT];
    size_t n_settings;
    cmc_plugin *plugins;
    size_t n_plugins;
    cmc_fail on_fail;
    cmc_reply on_fail_reply;
    cmc_do action[CLIPMOD_ACTION_REJECT + 1]; /* by policy action; allow is always accept */
    cmc_inside archives_with_images;          /* zip archives */
    cmc_inside documents_with_images;         /* PDFs, office documents */
    int skip_authenticated;
    cmc_list skip_senders, skip_recipients, skip_domains;
    cmc_on_flag on_flag;
    char *verdict_header;
    char *summary_header; /* NULL: no summary header */
    int context;          /* give each image the message's text as its context (on by default) */
    cmc_cache cache;
} cmc_config;

/*
 * Read and check the configuration at `path`. On success returns 0 and *out (free
 * with cmc_free). Otherwise returns -1, *out is NULL and *problems (free()) holds
 * one line per problem; `problems` may be NULL.
 */
int cmc_load(const char *path, cmc_config **out, char **problems);

/* Free a configuration. Accepts NULL. */
void cmc_free(cmc_config *c);

/*
 * Split "DDD[ X.Y.Z][ text]" (printable ASCII, one line) into *out. The enhanced
 * code, when present, must be of the reply code's class. Returns 0, or -1 when
 * `s` is not such a reply.
 */
int cmc_parse_reply(const char *s, cmc_reply *out);

/*
 * Skip lists. An envelope address may come with angle brackets and any case.
 * cmc_match_address: an entry "user@domain" matches that address, "@domain" every
 * address at exactly that domain. cmc_match_domain: an entry "domain" matches the
 * address's domain and its subdomains. The null sender "<>" matches nothing.
 */
int cmc_match_address(const cmc_list *l, const char *addr);
int cmc_match_domain(const cmc_list *l, const char *addr);

/* "tempfail", "reject", "accept-with-header". */
const char *cmc_fail_name(cmc_fail f);

/* "accept", "quarantine", "tempfail", "reject". */
const char *cmc_inside_name(cmc_inside i);

/* "accept", "quarantine", "reject", "discard". */
const char *cmc_do_name(cmc_do d);

#endif /* CLIPMOD_MILTER_CONF_H */
