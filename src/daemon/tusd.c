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
 *  - any other hook: an empty response ("carry on"), so clipmodd can be tusd's
 *    only hook endpoint.
 *
 * The upload is read from Storage.Path only when it lies inside tusd.roots
 * (roots.c), else downloaded from tusd.download-url + ID with fetch mode. Hook
 * requests come from tusd, but their paths are built from client-chosen IDs, so
 * they are treated as untrusted. Anything clipmodd cannot judge is answered with
 * a non-2xx status, which tusd turns into a failed request: fail closed.
 */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

struct tusd_req {
    const dconfig *c;
    int post_finish;
    char *id;
    char *path;      /* real path of the upload, when read from the file store */
    char *info_path; /* real path of its .info file, if inside the roots */
    bjob *job;
};

static char *error_reply(int status, const char *msg, int *status_out)
{
    json_t *o = json_pack("{s:s, s:i}", "error", msg, "status", status);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    *status_out = status;
    return s;
}

/* tusd IDs are URL path segments (RFC 3986 pchar and '/'); nothing that climbs. */
static int id_ok(const char *id)
{
    if (!id || !*id || strlen(id) > 512 || id[0] == '/' || strstr(id, ".."))
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("-._~!$'()*+,;=:@/%", *p)))
            return 0;
    return 1;
}

static const char *str_at(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

void tusd_free(tusd_req *t)
{
    if (!t)
        return;
    free(t->id);
    free(t->path);
    free(t->info_path);
    bjob_release(t->job);
    free(t);
}

tusd_req *tusd_begin(const dconfig *c, const char *body, size_t len, int *status, char **reply)
{
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    tusd_req *t = NULL, *result = NULL;
    clipmod_engine *engine = NULL;
    char why[256], msg[512];

    *reply = NULL;
    *status = 200;
    if (!root || !json_is_object(root)) {
        snprintf(msg, sizeof msg, "bad JSON: %s",
                 root ? "expected a tusd hook request" : jerr.text);
        *reply = error_reply(400, msg, status);
        goto out;
    }
    const char *type = str_at(root, "Type");
    json_t *upload = json_object_get(json_object_get(root, "Event"), "Upload");
    if (!type || !json_is_object(upload)) {
        *reply =
            error_reply(400, "not a tusd hook request (Type and Event.Upload expected)", status);
        goto out;
    }
    if (strcmp(type, "pre-finish") && strcmp(type, "post-finish")) {
        /* Nothing to scan before the last byte: carry on. */
        *reply = strdup("{}");
        goto out;
    }
    if (!(t = calloc(1, sizeof *t)))
        goto nomem;
    t->c = c;
    t->post_finish = !strcmp(type, "post-finish");
    const char *id = str_at(upload, "ID");
    if (!id_ok(id)) {
        *reply = error_reply(400, "Event.Upload.ID is missing or not a valid upload ID", status);
        goto out;
    }
    if (!(t->id = strdup(id)))
        goto nomem;
    json_t *storage = json_object_get(upload, "Storage");
    const char *path = str_at(storage, "Path");
    engine = reload_acquire();
    if (!(t->job = bjob_new(1, engine, IFACE_TUSD)) || !(t->job->in[0].name = strdup(id)))
        goto nomem;
    if (path) {
        int fd = roots_open(&c->tusd_roots, path, &t->path, why, sizeof why);
        if (fd < 0) {
            snprintf(msg, sizeof msg, "cannot read the upload's file: %s", why);
            dlog(DLOG_WARN, "tusd: upload refused", LF_S("id", id), LF_S("path", path),
                 LF_S("why", why), LF_END);
            *reply = error_reply(422, msg, status);
            goto out;
        }
        t->job->in[0].fd = fd;
        const char *info = str_at(storage, "InfoPath");
        if (info)
            t->info_path = roots_resolve(&c->tusd_roots, info, why, sizeof why);
    } else if (c->tusd_download_url) {
        size_t n = strlen(c->tusd_download_url);
        char *url = malloc(n + strlen(id) + 2);
        if (!url)
            goto nomem;
        sprintf(url, "%s%s%s", c->tusd_download_url,
                n && c->tusd_download_url[n - 1] == '/' ? "" : "/", id);
        t->job->in[0].url = url;
        t->job->urls = 1;
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
    json_decref(root);
    tusd_free(t);
    return result;
}

bjob *tusd_job(tusd_req *t)
{
    return t->job;
}

/* post-finish: carry out what the configuration says for this verdict. */
static const char *act_on_file(tusd_req *t, int refused, clipmod_action action)
{
    const dconfig *c = t->c;
    static __thread char done[4200];

    if (!t->path)
        return NULL;
    if (refused && c->tusd_delete_rejected) {
        if (unlink(t->path) && errno != ENOENT) {
            dlog(DLOG_ERROR, "tusd: cannot delete a refused upload", LF_S("path", t->path),
                 LF_S("error", strerror(errno)), LF_END);
            return "delete failed";
        }
        if (t->info_path)
            unlink(t->info_path);
        dlog(DLOG_INFO, "tusd: refused upload deleted", LF_S("id", t->id), LF_S("path", t->path),
             LF_END);
        return "deleted";
    }
    if (!refused && action == CLIPMOD_ACTION_QUARANTINE && c->tusd_quarantine_dir) {
        char *copy = strdup(t->path), target[4096];
        if (!copy)
            return NULL;
        snprintf(target, sizeof target, "%s/%s", c->tusd_quarantine_dir, basename(copy));
        free(copy);
        if (rename(t->path, target)) {
            dlog(DLOG_ERROR, "tusd: cannot move an upload to quarantine", LF_S("path", t->path),
                 LF_S("target", target), LF_S("error", strerror(errno)), LF_END);
            return "quarantine failed";
        }
        if (t->info_path) {
            char *icopy = strdup(t->info_path), itarget[4096];
            if (icopy) {
                snprintf(itarget, sizeof itarget, "%s/%s", c->tusd_quarantine_dir, basename(icopy));
                if (rename(t->info_path, itarget))
                    dlog(DLOG_WARN, "tusd: cannot move the .info file to quarantine",
                         LF_S("path", t->info_path), LF_S("error", strerror(errno)), LF_END);
                free(icopy);
            }
        }
        dlog(DLOG_INFO, "tusd: upload moved to quarantine", LF_S("id", t->id),
             LF_S("target", target), LF_END);
        snprintf(done, sizeof done, "moved to %s", target);
        return done;
    }
    return NULL;
}

char *tusd_finish(tusd_req *t, int *status)
{
    bjob *j = t->job;
    bj_status st = bjob_status(j);
    json_t *resp = NULL, *http = NULL, *hdr = NULL, *verdict = NULL;
    char *s = NULL, *rjson = NULL, *body = NULL;

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

    rjson = clipmod_result_to_json(r, 0);
    verdict = rjson ? json_loads(rjson, 0, NULL) : NULL;
    hdr = json_pack("{s:s, s:s, s:s}", "Content-Type", "application/json", "Clipmod-Action",
                    unscanned ? "unscanned" : clipmod_action_name(action), "Clipmod-State",
                    clipmod_state_name(state));
    http = json_object();
    resp = json_object();
    if (!verdict || !hdr || !http || !resp)
        goto out;
    if (refused) {
        json_t *b = json_pack("{s:s, s:s, s:s?, s:s?}", "error", message, "action",
                              unscanned ? "unscanned" : clipmod_action_name(action), "category",
                              clipmod_result_top_category(r), "reason",
                              unscanned ? clipmod_reason_name(clipmod_result_reason(r)) : NULL);
        body = b ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
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
    dlog(refused ? DLOG_INFO : DLOG_DEBUG, "tusd verdict", LF_S("id", t->id),
         LF_S("hook", t->post_finish ? "post-finish" : "pre-finish"),
         LF_S("state", clipmod_state_name(state)), LF_S("action", clipmod_action_name(action)),
         LF_S("category", clipmod_result_top_category(r)), LF_B("refused", refused), LF_END);
out:
    if (!s)
        s = error_reply(500, "out of memory", status);
    json_decref(resp);
    json_decref(http);
    json_decref(hdr);
    json_decref(verdict);
    clipmod_free(rjson);
    free(body);
    return s;
}
