/*
 * milter.h - what the parts of clipmod-milter share; internal to plugins/milter.
 *
 * The program is split as ClamAV's clamav-milter: main.c owns the process (options,
 * configuration, the running engine and its swap on reload, signals, draining);
 * callbacks.c owns the libmilter xxfi_* callbacks and each connection's message
 * state; scan.c owns judging one message (skip rules, the MIME walk, the bound on
 * scans at once, one batched scan, each image's outcome); headers.c owns the words
 * the outcome is told in (verdict and summary headers, quarantine reason, log
 * line); decisions.c owns the pure rule from verdict states to a milter action;
 * mcache.c owns the verdict cache (known images answered without a scan).
 * Nothing here is visible outside the program.
 */
#ifndef CLIPMOD_MILTER_MILTER_H
#define CLIPMOD_MILTER_MILTER_H

#include <stddef.h>
#include <stdint.h>

#include <clipmod/clipmod.h>

#include "conf.h"
#include "decisions.h"
#include "log.h"
#include "mime.h"
#include "vcache.h"

#define CM_MILTER_PROG "clipmod-milter"

/* ---- main.c: the runtime ----------------------------------------------------- */

/* One log line at a syslog priority; `qid` (the MTA's queue id, may be NULL) leads it. */
void cm_mlog(int prio, const char *qid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * What a message judges with: a reference to the engine (from the cm_swap slot)
 * and to the configuration it was built from, taken together at MAIL FROM and
 * held to the message's end, so a reload never changes the policy under a message.
 */
typedef struct cm_runtime {
    clipmod_engine *engine;
    const cmc_config *conf;
    unsigned long generation;   /* 1 at start, +1 per reload */
    struct cm_onflag *hook;     /* on-flag (onflag.h), NULL when none is configured */
    struct cm_conf_ref *ref;    /* main.c's count on conf */
    const clipmod_model *model; /* the engine's model (the cache's keys name it) */
    const char *salt;           /* conf's engine settings and plugins (vcache_key.h); NULL: OOM */
} cm_runtime;

/* Take the current engine and configuration into *rt: 0, or -1 before the first load. */
int cm_rt_acquire(cm_runtime *rt);
/* Give back what cm_rt_acquire took; *rt is emptied. An empty *rt is accepted. */
void cm_rt_release(cm_runtime *rt);

/* ---- callbacks.c: the filter and the messages in flight --------------------- */

/* Register the filter with libmilter. 0, or -1 when libmilter refuses it. */
int cm_callbacks_register(void);
/* Set up the in-flight accounting; before any connection. */
void cm_messages_init(void);
/*
 * Stop taking messages (new ones get 4xx) and wait up to `ms` for those in flight.
 * Returns how many are still in flight.
 */
int cm_messages_drain(uint64_t ms);

/* ---- scan.c: judging one message ------------------------------------------ */

/* What the milter knows of a message besides its bytes. */
typedef struct cm_envelope {
    const char *qid;
    const char *sender;
    const char *auth; /* {auth_authen}, or NULL */
    size_t n_rcpt, n_rcpt_listed, n_rcpt_in_domains;
    int over_limit; /* the message passed max-message-bytes */
    uint64_t size;
    int run_hooks; /* run on-flag for flagged images (not for --message, a dry run) */
} cm_envelope;

/* What the log line of a message says; copied, so it outlives the scan. */
typedef struct cm_outcome_facts {
    const char *state; /* clean, flagged, unscanned or skipped */
    char from[128];    /* the sender, cleaned */
    size_t images, flagged, unscanned, containers, contained_images;
    int some_unreadable; /* an archive or document could not be read */
    const char *action;  /* the most severe flagged image's policy action, or NULL */
    char category[64];   /* the deciding image's category ("" when none flagged) */
    double score, threshold;
    char flagged_by[16];     /* what flagged it: image, image+context, context ("": unknown) */
    double image_score;      /* its image's own score and its text's, when context */
    double context_score;    /* was scored (-1 else) */
    char context_prompt[64]; /* the context prompt nearest the text (policy words), cleaned */
    char image[160];         /* the deciding image's label */
    char reason[256];        /* why not everything was judged, or why skipped */
    size_t cache_hits;       /* images answered by the verdict cache */
    size_t cache_misses;     /* images looked up and not found, so scanned */
    char policy_name[128];   /* the policy that judged (its fingerprint is the log context) */
} cm_outcome_facts;

/* The whole outcome, for the MTA (callbacks.c) or for --message (stdout). */
typedef struct cm_outcome {
    cm_decision what;
    cmc_reply reply; /* for reject and tempfail */
    char *verdict;   /* header values (NULL: none added) */
    char *summary;
    char quarantine[256];
    cm_outcome_facts facts;
} cm_outcome;

void cm_outcome_free(cm_outcome *o);

/*
 * The message's log line ("milter verdict", the same field names as clipmodd's
 * verdict lines; policy= and generation= come from the log context). `size`: bytes
 * the MTA sent; `ms`: time taken to judge.
 */
void cm_outcome_log(const char *qid, const cm_outcome *o, uint64_t size, double ms);

/* Why a message is not scanned (skip rules), or NULL. */
const char *cm_skip_reason(const cmc_config *c, const cm_envelope *env);

/*
 * Judge one message with the runtime it started with and say what to do (0), or
 * -1 when out of memory. Never "accept" for a message with an image that was not
 * judged, unless on-fail is accept-with-header (and then the headers say so).
 */
int cm_judge_message(const cm_runtime *rt, const unsigned char *msg, size_t len,
                     const cm_envelope *env, cm_outcome *out);

/* The scan slots: at most `n` scans at once (after cm_slots_init, before any scan). */
void cm_slots_init(void);
void cm_slots_resize(int n);

/* ---- mcache.c: the verdict cache ------------------------------------------ */

/* An image's key and whether it came from the cache. */
typedef struct cm_mkey {
    cm_vkey key;
    int keyed;  /* key is set (the cache is on and the key could be made) */
    int cached; /* the result came from the cache */
} cm_mkey;

/* Open the cache `cache:` asks for (nothing when off). 0, or -1 with the reason logged. */
int cm_mcache_start(const cmc_config *c);
void cm_mcache_stop(void);
int cm_mcache_enabled(void);
/* A reload keeps the cache: warn when `fresh` asks for another. */
void cm_mcache_check_reload(const cmc_config *old, const cmc_config *fresh);
/* The totals as one log line ("verdict cache counters"); `why`: sigusr1, stop. */
void cm_mcache_log_stats(const char *why);
/*
 * Key each of in[0..n) for rt (keys zeroed by the caller) and answer those the
 * cache knows: out[i] set, keys[i].cached = 1. Returns how many are left to scan.
 */
size_t cm_mcache_lookup(const cm_runtime *rt, const clipmod_input *in, size_t n, cm_mkey *keys,
                        clipmod_result **out);
/* Keep the scanned verdicts (vcache keeps only clean and flagged ones). */
void cm_mcache_store(const cm_mkey *keys, clipmod_result *const *results, size_t n);

/* ---- headers.c: the words of an outcome ------------------------------------ */

/* One image's outcome. */
typedef struct cm_image_out {
    const cmm_image *im;
    clipmod_result *r;    /* NULL when not given to the engine */
    int judged;           /* vstate is set (or empty) */
    int empty;            /* an empty part: nothing to see, nothing to judge */
    int cached;           /* r came from the verdict cache */
    clipmod_state vstate; /* when judged and not empty */
    const char *reason;
    clipmod_action action;
    const char *category; /* deciding one, or for clean images the nearest */
    double score, threshold;
    /* That category's context (clipmod_category_score): its image and context scores
     * (context_score -1: no context scored) and strings owned by r, or NULL. */
    double image_score, context_score;
    const char *flagged_by, *context_prompt, *context_window;
} cm_image_out;

/* The images counted inside archives and documents, for the headers and the log. */
typedef struct cm_inside {
    const cmm_container *c;
    size_t n;          /* archives and documents */
    size_t images;     /* images counted inside them */
    size_t unreadable; /* those whose content could not be told */
    cmc_inside action; /* the most severe configured action that applies */
    const cmm_container *decider;
} cm_inside;

/* Everything a judged message's words are made of (borrowed). */
typedef struct cm_judged {
    const cm_runtime *rt;
    const cm_image_out *io; /* every image part found, empty ones too */
    size_t n_io;
    size_t n_images, n_flagged, n_unscanned; /* empty parts not counted */
    size_t cache_hits, cache_misses;         /* verdict cache lookups (mcache.c) */
    clipmod_action worst;
    const cm_image_out *decider, *first_unscanned;
    const char *why;  /* why not every image was judged; NULL when all were */
    const char *from; /* the sender, cleaned */
    cm_inside in;
} cm_judged;

/* Untrusted text (file names, addresses) as printable ASCII of at most `max` bytes. */
void cm_clean_text(char *dst, size_t size, const char *src, size_t max);
/* "2 photo.jpg": an image's MIME part and cleaned file name. */
void cm_image_label(const cmm_image *im, char *buf, size_t size);

/* The outcome of a message skipped for `skip`: its verdict, summary and log line. -1: OOM. */
int cm_words_skipped(const cm_runtime *rt, const char *skip, const char *from, cm_outcome *out);
/*
 * Fill the quarantine reason, the verdict and summary headers (for accept and
 * quarantine) and the log line of a judged message whose out->what is decided.
 * for_inside: the inside rules decided. -1: out of memory.
 */
int cm_words_judged(const cm_judged *j, int for_inside, cm_outcome *out);

#endif
