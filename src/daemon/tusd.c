/*
 * tusd.c - answering tusd's HTTP hooks (POST /v1/tusd).
 *
 * Owns the translation between tusd's hook requests and responses (tusd's
 * docs/_advanced-topics/hooks.md: Type, Event.Upload{ID, MetaData, Storage{Type,
 * Path, InfoPath}}; HTTPResponse{StatusCode, Body, Header}, RejectUpload) and
 * clipmod verdicts:
 *
 *  - pre-finish (blocking, after the last byte, before tusd answers the client):
 *    the upload is scanned and, when the policy's HTTP status for the verdict is
 *    an error (reject: 403) or the upload could not be scanned, the hook response
 *    sets the client's status and a JSON body with the message; otherwise only
 *    Clipmod-Action / Clipmod-State headers are added to tusd's answer.
 *  - post-finish (after tusd answered): scanned the same way; with
 *    tusd.delete-rejected a refused upload and its .info file are deleted, with
 *    tusd.quarantine-dir an upload whose action is quarantine is moved there.
 *    Hook requests are not authenticated, so only a pair tusd's filestore made
 *    is deleted or moved: the file scanned, named after the upload ID, and ID.info
 *    beside it whose JSON names the same ID, Storage.Path and size
 *    (tusd_pair_mismatch() in tusd_hook.c); anything else is kept and logged.
 *  - any other hook: an empty response ("carry on"), so clipmodd can be tusd's
 *    only hook endpoint.
 *
 * The upload's metadata (file name, caption-like keys) is its context (clipmodd(8)
 * CONTEXT), joined in context.c.
 *
 * The JSON is read in tusd_hook.c. The upload is read from Storage.Path only
 * when it lies inside tusd.roots (roots.c), else downloaded from
 * tusd.download-url + ID with fetch mode. Hook
 * requests come from tusd, but their paths are built from client-chosen IDs, so
 * they are treated as untrusted. Anything clipmodd cannot judge is answered with
 * a non-2xx status, which tusd turns into a failed request: fail closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "daemon.h"
#include "tusd_hook.h"

struct tusd_req {
    const dconfig *c;
    int post_finish;
    char *id;
    char *hook_path; /* Storage.Path as the hook request gave it */
    char *hook_info; /* Storage.InfoPath as given, or NULL */
    char *path;      /* real path of the upload, when read from the file store */
    dev_t dev;       /* the file scanned, to be sure the file deleted is that one */
    ino_t ino;
    off_t size;
    bjob *job;
};

/*
 * A JSON error reply. Messages may quote the client's bytes (a JSON parser's error
 * does) and jansson refuses strings that are not UTF-8, so they are made printable
 * ASCII first: a malformed request gets its 400, never a 500.
 */
static char *error_reply(int status, const char *msg, int *status_out)
{
    char text[600];
    size_t i = 0;
    for (; msg[i] && i + 1 < sizeof text; i++)
        text[i] = msg[i] >= 0x20 && msg[i] < 0x7f ? msg[i] : '?';
    text[i] = '\0';
    json_t *o = json_pack("{s:s, s:i}", "error", text, "status", status);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    *status_out = status;
    return s;
}

void tusd_free(tusd_req *t)
{
    if (!t)
        return;
    free(t->id);
    free(t->hook_path);
    free(t->hook_info);
    free(t->path);
    bjob_release(t->job);
    free(t);
}

/* The upload from the file store: opened inside tusd.roots only, remembered by inode. */
static int open_upload(tusd_req *t, const tusd_hook *h, char *msg, size_t msglen)
{
    char why[256];
    struct stat st;
    int fd = roots_open(&t->c->tusd_roots, h->path, &t->path, why, sizeof why);

    if (fd < 0) {
        snprintf(msg, msglen, "cannot read the upload's file: %s", why);
        cm_log(CM_LOG_WARN, "tusd: upload refused", CM_LF_S("id", h->id), CM_LF_S("path", h->path),
               CM_LF_S("why", why), CM_LF_END);
        return -1;
    }
    if (fstat(fd, &st)) {
        snprintf(msg, msglen, "cannot read the upload's file: %s", strerror(errno));
        close(fd);
        return -1;
    }
    t->dev = st.st_dev;
    t->ino = st.st_ino;
    t->size = st.st_size;
    t->job->in[0].fd = fd;
    return 0;
}

/*
 * The upload's context (clipmodd(8) CONTEXT): its metadata's file name and caption
 * keys, joined. Metadata comes from the uploading client through tusd, which has
 * accepted it already: a context past config_context_cap() is cut (the library's
 * JSON then says "cut"), never a reason to refuse the upload. -1 when out of memory.
 */
static int upload_context(tusd_req *t, const tusd_hook *h)
{
    cm_dbuf b;
    int cut = 0;

    if (!t->c->context_enabled)
        return 0;
    cm_dbuf_init(&b, config_context_cap(t->c));
    for (size_t i = 0; i < TUSD_CONTEXT_KEYS; i++) {
        int rc = h->context[i] ? context_add(&b, h->context[i], strlen(h->context[i])) : 0;
        if (rc < 0) {
            cm_dbuf_free(&b);
            return -1;
        }
        cut |= rc;
    }
    if (cut)
        cm_log(CM_LOG_INFO, "tusd: upload metadata cut to the context cap", CM_LF_S("id", h->id),
               CM_LF_I("bytes", cm_dbuf_len(&b)), CM_LF_END);
    t->job->in[0].context = cm_dbuf_take(&b, &t->job->in[0].context_len);
    return 0;
}

/* An upload without a local file: fetched from tusd.download-url + ID. */
static int download_upload(tusd_req *t)
{
    const char *base = t->c->tusd_download_url;
    size_t n = strlen(base), size = n + strlen(t->id) + 2;
    char *url = malloc(size);

    if (!url)
        return -1;
    snprintf(url, size, "%s%s%s", base, n && base[n - 1] == '/' ? "" : "/", t->id);
    t->job->in[0].url = url;
    t->job->urls = 1;
    return 0;
}

tusd_req *tusd_begin(const dconfig *c, const char *body, size_t len, int *status, char **reply)
{
    tusd_hook h;
    tusd_req *t = NULL, *result = NULL;
    clipmod_engine *engine = NULL;
    cm_swap_info info;
    char msg[512];

    *reply = NULL;
    *status = 200;
    /* The JSON is read in tusd_hook.c (shared with the fuzz target). */
    if (tusd_hook_parse(body, len, &h, msg, sizeof msg) != TUSD_HOOK_OK) {
        *reply = error_reply(400, msg, status);
        goto out;
    }
    if (strcmp(h.type, "pre-finish") && strcmp(h.type, "post-finish")) {
        /* Nothing to scan before the last byte: carry on. */
        *reply = strdup("{}");
        goto out;
    }
    t = calloc(1, sizeof *t);
    if (!t)
        goto nomem;
    t->c = c;
    t->post_finish = !strcmp(h.type, "post-finish");
    if (!tusd_id_ok(h.id)) {
        *reply = error_reply(400, "Event.Upload.ID is missing or not a valid upload ID", status);
        goto out;
    }
    t->id = strdup(h.id);
    if (!t->id)
        goto nomem;
    engine = reload_acquire_info(&info);
    t->job = bjob_new(1, engine, &info, IFACE_TUSD);
    if (!t->job)
        goto nomem;
    t->job->in[0].name = strdup(h.id);
    if (!t->job->in[0].name || upload_context(t, &h))
        goto nomem;
    if (h.path) {
        t->hook_path = strdup(h.path);
        if (!t->hook_path)
            goto nomem;
        if (h.info) {
            t->hook_info = strdup(h.info);
            if (!t->hook_info)
                goto nomem;
        }
        if (open_upload(t, &h, msg, sizeof msg)) {
            *reply = error_reply(422, msg, status);
            goto out;
        }
    } else if (c->tusd_download_url) {
        if (download_upload(t))
            goto nomem;
    } else {
        *reply = error_reply(422, "the upload has no Storage.Path and tusd.download-url is not set",
                             status);
        goto out;
    }
    result = t;
    t = NULL;
    goto out;
nomem:
    free(*reply);
    *reply = error_reply(500, "out of memory", status);
out:
    clipmod_engine_free(engine);
    tusd_hook_clear(&h);
    tusd_free(t);
    return result;
}

bjob *tusd_job(tusd_req *t)
{
    return t->job;
}

/* Read the .info file at `real` (no link followed) and parse it; -1 with `why`. */
static int read_info(const char *real, tusd_info *info, struct stat *st, char *why, size_t whylen)
{
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), rc = -1;
    char *data = NULL;
    size_t len = 0;

    memset(info, 0, sizeof *info);
    if (fd < 0) {
        snprintf(why, whylen, "cannot open the .info file: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, st) || !S_ISREG(st->st_mode) || st->st_size > TUSD_INFO_MAX) {
        snprintf(why, whylen, "the .info file is not a regular file of at most %d bytes",
                 TUSD_INFO_MAX);
        goto out;
    }
    /* One byte more than the size: a file that grew meanwhile is noticed. */
    data = malloc((size_t)st->st_size + 1);
    if (!data) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, data + len, (size_t)st->st_size + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len > (size_t)st->st_size)
            break;
    }
    if (len != (size_t)st->st_size) {
        snprintf(why, whylen, "the .info file changed while it was read");
        goto out;
    }
    rc = tusd_info_parse(data, len, info, why, whylen);
out:
    free(data);
    close(fd);
    return rc;
}

/*
 * Only what tusd created is deleted or moved: the file scanned (same inode, still
 * there) and its .info file, tied to each other and to the upload ID by
 * tusd_pair_mismatch(). On success *info_real is the .info file's real path.
 */
static int check_pair(tusd_req *t, char **info_real, char *why, size_t whylen)
{
    struct stat st, ist;
    tusd_info info = {0};
    char *named = NULL, cause[256];
    const char *mismatch;

    *info_real = NULL;
    if (lstat(t->path, &st) || !S_ISREG(st.st_mode) || st.st_dev != t->dev || st.st_ino != t->ino) {
        snprintf(why, whylen, "the file is no longer the one scanned");
        return -1;
    }
    if (t->hook_info)
        named = strdup(t->hook_info);
    else if (asprintf(&named, "%s.info", t->hook_path) < 0)
        named = NULL;
    if (!named) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    *info_real = roots_resolve(&t->c->tusd_roots, named, cause, sizeof cause);
    free(named);
    if (!*info_real) {
        snprintf(why, whylen, "no .info file: %s", cause);
        return -1;
    }
    /* Names first (tusd_hook.c), so that nothing but ID.info is even read. */
    mismatch = tusd_pair_names_mismatch(t->id, t->path, *info_real);
    if (!mismatch) {
        if (read_info(*info_real, &info, &ist, cause, sizeof cause))
            mismatch = cause;
        else
            mismatch = tusd_pair_content_mismatch(t->id, t->hook_path, t->hook_info, &info,
                                                  (uint64_t)st.st_size);
    }
    tusd_info_clear(&info);
    if (mismatch) {
        snprintf(why, whylen, "%s", mismatch);
        free(*info_real);
        *info_real = NULL;
        return -1;
    }
    return 0;
}

static const char *delete_pair(tusd_req *t, const char *info_real)
{
    if (unlink(t->path) && errno != ENOENT) {
        cm_log(CM_LOG_ERROR, "tusd: cannot delete a refused upload", CM_LF_S("path", t->path),
               CM_LF_S("error", strerror(errno)), CM_LF_END);
        return "delete failed";
    }
    if (unlink(info_real) && errno != ENOENT)
        cm_log(CM_LOG_WARN, "tusd: cannot delete the .info file of a refused upload",
               CM_LF_S("path", info_real), CM_LF_S("error", strerror(errno)), CM_LF_END);
    cm_log(CM_LOG_INFO, "tusd: refused upload deleted", CM_LF_S("id", t->id),
           CM_LF_S("path", t->path), CM_LF_END);
    return "deleted";
}

static const char *quarantine_pair(tusd_req *t, const char *info_real)
{
    static __thread char done[4200];
    char *copy = strdup(t->path), *icopy = strdup(info_real), target[4096], itarget[4096];
    const char *rc = "quarantine failed";

    if (!copy || !icopy)
        goto out;
    snprintf(target, sizeof target, "%s/%s", t->c->tusd_quarantine_dir, basename(copy));
    snprintf(itarget, sizeof itarget, "%s/%s", t->c->tusd_quarantine_dir, basename(icopy));
    if (rename(t->path, target)) {
        cm_log(CM_LOG_ERROR, "tusd: cannot move an upload to quarantine", CM_LF_S("path", t->path),
               CM_LF_S("target", target), CM_LF_S("error", strerror(errno)), CM_LF_END);
        goto out;
    }
    if (rename(info_real, itarget))
        cm_log(CM_LOG_WARN, "tusd: cannot move the .info file to quarantine",
               CM_LF_S("path", info_real), CM_LF_S("error", strerror(errno)), CM_LF_END);
    cm_log(CM_LOG_INFO, "tusd: upload moved to quarantine", CM_LF_S("id", t->id),
           CM_LF_S("target", target), CM_LF_END);
    snprintf(done, sizeof done, "moved to %s", target);
    rc = done;
out:
    free(copy);
    free(icopy);
    return rc;
}

/* post-finish: carry out what the configuration says for this verdict. */
static const char *act_on_file(tusd_req *t, int refused, clipmod_action action)
{
    const dconfig *c = t->c;
    static __thread char kept[600];
    int del = refused && c->tusd_delete_rejected;
    int hold = !refused && action == CLIPMOD_ACTION_QUARANTINE && c->tusd_quarantine_dir;
    char why[512], *info_real = NULL;
    const char *done;

    if (!t->path || (!del && !hold))
        return NULL;
    /* The hook request is not authenticated: its paths alone never decide. */
    if (check_pair(t, &info_real, why, sizeof why)) {
        cm_log(CM_LOG_WARN,
               del ? "tusd: refused upload not deleted" : "tusd: upload not quarantined",
               CM_LF_S("id", t->id), CM_LF_S("path", t->hook_path), CM_LF_S("why", why), CM_LF_END);
        snprintf(kept, sizeof kept, "kept: %s", why);
        return kept;
    }
    done = del ? delete_pair(t, info_real) : quarantine_pair(t, info_real);
    free(info_real);
    return done;
}

/*
 * The verdict of job j's one input as JSON, with the policy it was judged under (as
 * in clipmodd's scan answers) and whether the verdict cache answered. Owned by the
 * caller; NULL when out of memory.
 */
static json_t *verdict_json(const bjob *j)
{
    char *rjson = clipmod_result_to_json(j->out[0], 0);
    json_t *verdict = rjson ? json_loads(rjson, 0, NULL) : NULL;

    clipmod_free(rjson);
    if (verdict && json_is_object(verdict)) {
        json_object_set_new(verdict, "policy_fingerprint", json_string(j->policy_fp));
        json_object_set_new(verdict, "policy_generation", json_integer((json_int_t)j->generation));
        /* Answered by the verdict cache (dcache.c), as in the HTTP door's answers. */
        if (j->in[0].cached)
            json_object_set_new(verdict, "cached", json_true());
    }
    return verdict;
}

/* The body tusd sends the client of a refused upload (compact JSON, malloc'd; NULL on OOM). */
static char *refusal_body(const bjob *j, const char *message)
{
    const clipmod_result *r = j->out[0];
    int unscanned = clipmod_result_state(r) == CLIPMOD_STATE_UNSCANNED;
    json_t *b = json_pack("{s:s, s:s, s:s?, s:s?, s:s, s:I}", "error", message, "action",
                          unscanned ? "unscanned" : clipmod_action_name(clipmod_result_action(r)),
                          "category", clipmod_result_top_category(r), "reason",
                          unscanned ? clipmod_reason_name(clipmod_result_reason(r)) : NULL,
                          "policy_fingerprint", j->policy_fp, "policy_generation",
                          (json_int_t)j->generation);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;

    json_decref(b);
    return body;
}

char *tusd_finish(tusd_req *t, int *status)
{
    bjob *j = t->job;
    bj_status st = bjob_status(j);
    json_t *resp = NULL, *http = NULL, *hdr = NULL, *verdict = NULL;
    char *s = NULL, *body = NULL;

    if (st == BJ_EXPIRED)
        return error_reply(503, "the scan did not finish before the request's deadline", status);
    if (st != BJ_DONE || !j->out[0])
        return error_reply(500, clipmod_strerror(j->err), status);

    const clipmod_result *r = j->out[0];
    clipmod_state state = clipmod_result_state(r);
    clipmod_action action = clipmod_result_action(r);
    int policy_status = clipmod_engine_http_status(j->engine, action);
    int unscanned = state == CLIPMOD_STATE_UNSCANNED;
    int refused = unscanned ? !t->c->tusd_accept_unscanned : policy_status >= 400;
    int client_status = unscanned ? 422 : policy_status;
    const char *message = unscanned ? clipmod_result_reason_text(r) : clipmod_result_message(r);

    verdict = verdict_json(j);
    char gen[24];
    snprintf(gen, sizeof gen, "%lu", j->generation);
    hdr = json_pack("{s:s, s:s, s:s, s:s, s:s}", "Content-Type", "application/json",
                    "Clipmod-Action", unscanned ? "unscanned" : clipmod_action_name(action),
                    "Clipmod-State", clipmod_state_name(state), "Clipmod-Policy-Fingerprint",
                    j->policy_fp, "Clipmod-Policy-Generation", gen);
    http = json_object();
    resp = json_object();
    if (!verdict || !hdr || !http || !resp)
        goto out;
    if (refused) {
        body = refusal_body(j, message);
        if (!body)
            goto out;
        json_object_set_new(http, "StatusCode", json_integer(client_status));
        json_object_set_new(http, "Body", json_string(body));
    } else {
        /* tusd's own answer stands; a body would not fit its 204. */
        json_object_del(hdr, "Content-Type");
    }
    json_object_set(http, "Header", hdr);
    json_object_set(resp, "HTTPResponse", http);
    json_object_set_new(resp, "RejectUpload", json_boolean(refused));
    /* Not read by tusd (it ignores unknown fields): for logs and for debugging hooks. */
    json_object_set(resp, "Verdict", verdict);
    if (t->post_finish) {
        const char *done = act_on_file(t, refused, action);
        if (done)
            json_object_set_new(resp, "ClipmodFile", json_string(done));
    }
    s = json_dumps(resp, JSON_COMPACT);
    *status = 200;
    const char *scan_policy = reload_job_policy(j, gen, sizeof gen);
    cm_log(refused ? CM_LOG_INFO : CM_LOG_DEBUG, "tusd verdict", CM_LF_S("id", t->id),
           CM_LF_S("hook", t->post_finish ? "post-finish" : "pre-finish"),
           CM_LF_S("state", clipmod_state_name(state)),
           CM_LF_S("action", clipmod_action_name(action)),
           CM_LF_S("category", clipmod_result_top_category(r)), CM_LF_B("refused", refused),
           CM_LF_S("scan_policy", scan_policy),
           CM_LF_S("scan_generation", scan_policy ? gen : NULL), CM_LF_END);
out:
    if (!s)
        s = error_reply(500, "out of memory", status);
    json_decref(resp);
    json_decref(http);
    json_decref(hdr);
    json_decref(verdict);
    free(body);
    return s;
}
