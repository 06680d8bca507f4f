/*
 * onflag.h - the `on_flag` command hook (as clamd's VirusEvent) for clipmodd and
 * clipmod-milter.
 *
 * Owns running an operator's program when a verdict flags an image: argv is given
 * as an array and exec'd directly, never through a shell, so nothing in a file
 * name can become a command. The verdict travels in environment variables only:
 *   CLIPMOD_VERDICT    flagged | unscanned | clean
 *   CLIPMOD_CATEGORY   the category id that decided
 *   CLIPMOD_SCORE      the score, "%.4f"
 *   CLIPMOD_THRESHOLD  the category's threshold, "%.4f"
 *   CLIPMOD_ACTION     the policy action
 *   CLIPMOD_FILENAME   the image's name as the client gave it
 *   CLIPMOD_SOURCE     the program and channel ("clipmodd:http", "milter", ...)
 *   CLIPMOD_POLICY     the policy fingerprint; CLIPMOD_GENERATION its generation
 *   CLIPMOD_REASON     why it could not be scanned (unscanned only)
 * Values are sanitised (control characters become '?', each capped at 1024 bytes),
 * and the rest of the environment is only PATH=/usr/bin:/bin. The child gets
 * /dev/null on stdin/stdout/stderr and its own process group.
 *
 * cm_onflag_run never waits for the program: it forks and returns; a small
 * detached reaper thread per hook waits for it and kills its process group
 * (SIGKILL) when the timeout passes. At most max_running hooks run at once; one
 * more is skipped and logged (warn "on_flag skipped"). Failures to start and
 * non-zero exits are logged through log.h.
 */
#ifndef CM_ONFLAG_H
#define CM_ONFLAG_H

#include <stddef.h>

typedef struct cm_onflag cm_onflag;

/* The verdict handed to the hook; every string may be NULL (variable left out). */
typedef struct cm_onflag_event {
    const char *verdict, *category, *action, *filename, *source, *policy, *reason;
    double score, threshold;
    /* What flagged the category (clipmod_category_score's flagged_by), or NULL; with
     * "image+context" or "context", context_score is the text's score. */
    const char *flagged_by;
    double context_score;
    long long generation;
} cm_onflag_event;

/*
 * Why argv (n strings) cannot be a hook's command, as the words that follow the
 * key's name in a configuration problem ("is empty: ...", "must start with an
 * absolute path, not 'x'"), written to buf; returns 0 (buf untouched) when it can.
 * Both programs' configuration readers and cm_onflag_new ask this one question.
 */
int cm_onflag_argv_problem(const char *const *argv, size_t n, char *buf, size_t len);

/*
 * A hook running argv[0] (an absolute path) with argv (NULL-terminated; copied)
 * for at most timeout_ms (0: 30 s), at most max_running at once (0: 4). NULL when
 * cm_onflag_argv_problem refuses argv (err says why) or on OOM.
 */
cm_onflag *cm_onflag_new(const char *const *argv, unsigned timeout_ms, unsigned max_running,
                         char *err, size_t errlen);

/*
 * Start the hook for ev. Returns 0 when started, 1 when skipped (too many running),
 * -1 when it could not be started (fork failed; logged). The program itself failing
 * (missing, non-zero exit, timeout) is logged later by the reaper.
 */
int cm_onflag_run(cm_onflag *h, const cm_onflag_event *ev);

/* Hooks started and not yet reaped. */
unsigned cm_onflag_running(cm_onflag *h);

/*
 * Wait up to wait_ms for running hooks to end (killing them when their timeout
 * passes), then free h. Returns the number still running (then h is kept alive
 * internally until they end). NULL is accepted.
 */
unsigned cm_onflag_free(cm_onflag *h, unsigned wait_ms);

#endif
