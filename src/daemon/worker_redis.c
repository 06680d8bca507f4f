/*
 * worker_redis.c - the queue worker's Redis commands (docs/queue.md).
 *
 * Owns every command the worker sends and the reading of their replies: the
 * consumer group's creation, XREADGROUP for new entries, XAUTOCLAIM (with XPENDING
 * for each claimed entry's delivery count) for entries a consumer kept too long,
 * and FINISH_SCRIPT, which writes a job's result, its reply and dead-letter
 * entries and acknowledges the entry in one step: Redis runs a script whole, so a
 * worker killed at any moment leaves either all of it or none (the entry then stays
 * pending and is delivered again). Replies are checked for their shape before use;
 * entry fields go to worker_job.c unread. Connections are hiredis's, one per thread
 * (worker.c), dialled by src/common/redis_conn.c.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_conn.h"
#include "worker.h"

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>

struct wredis {
    redisContext *ctx;
    const dconfig *c;
    const char *consumer;
};

/*
 * KEYS: result hash ("" when the job has no id), jobs stream, dead-letter stream,
 * reply stream ("" for none). ARGV: group, entry id, result TTL in ms (0: none),
 * dead ("1"/"0"), the count of result arguments, the result's field/value pairs, the
 * dead letter's pairs. The reply and dead-letter entries are added only when the
 * result is new, so a job delivered twice (or an id enqueued twice while its result
 * lives) has one of each; a key of the wrong type is not overwritten: the job goes to
 * the dead-letter stream with the reason "undeliverable" instead.
 */
static const char FINISH_SCRIPT[] =
    "local rk, reply = KEYS[1], KEYS[4]\n"
    "local nres = tonumber(ARGV[5])\n"
    "local res, dl = {}, {}\n"
    "for i = 6, 5 + nres do res[#res + 1] = ARGV[i] end\n"
    "for i = 6 + nres, #ARGV do dl[#dl + 1] = ARGV[i] end\n"
    "local fresh, bad = true, nil\n"
    "if rk ~= '' then\n"
    "  local t = redis.call('TYPE', rk)['ok']\n"
    "  fresh = t == 'none'\n"
    "  if t ~= 'none' and t ~= 'hash' then bad = rk .. ' is a ' .. t end\n"
    "end\n"
    "if reply ~= '' then\n"
    "  local t = redis.call('TYPE', reply)['ok']\n"
    "  if t ~= 'none' and t ~= 'stream' then bad = reply .. ' is a ' .. t end\n"
    "end\n"
    "if rk ~= '' and not bad then\n"
    "  if not fresh then redis.call('DEL', rk) end\n"
    "  redis.call('HSET', rk, unpack(res))\n"
    "  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', rk, ARGV[3]) end\n"
    "  if fresh and reply ~= '' then redis.call('XADD', reply, '*', unpack(res)) end\n"
    "end\n"
    "if bad and ARGV[4] ~= '1' then\n"
    "  table.insert(dl, 1, 'undeliverable')\n"
    "  table.insert(dl, 1, 'reason')\n"
    "  dl[#dl + 1] = 'error'\n"
    "  dl[#dl + 1] = 'no result written: ' .. bad\n"
    "elseif bad then\n"
    "  dl[#dl + 1] = 'note'\n"
    "  dl[#dl + 1] = 'no result written: ' .. bad\n"
    "end\n"
    "if bad or (ARGV[4] == '1' and fresh) then redis.call('XADD', KEYS[3], '*', unpack(dl)) end\n"
    "redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[2], ARGV[2])\n"
    "if bad then return bad end\n"
    "if fresh then return 'new' end\n"
    "return 'again'\n";

wredis *wr_open(const dconfig *c, const char *consumer, unsigned timeout_ms)
{
    char err[256];
    cm_redis_addr a;
    wredis *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    r->c = c;
    r->consumer = consumer;
    /* r->ctx stays NULL (calloc) when the URL does not parse. */
    if (!cm_redis_parse_url(c->worker_redis, "worker.redis", &a, err, sizeof err))
        r->ctx = cm_redis_dial(&a, timeout_ms, err, sizeof err);
    if (!r->ctx) {
        cm_log(CM_LOG_WARN, "worker: Redis unreachable", CM_LF_S("error", err), CM_LF_END);
        free(r);
        return NULL;
    }
    return r;
}

void wr_close(wredis *r)
{
    if (!r)
        return;
    redisFree(r->ctx);
    free(r);
}

/* Send argv (strings); the reply, failures and refusals logged. */
static redisReply *command(wredis *r, int argc, const char **argv)
{
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, NULL);
    if (!rep)
        cm_log(CM_LOG_WARN, "worker: Redis failed", CM_LF_S("command", argv[0]),
               CM_LF_S("error", r->ctx->errstr[0] ? r->ctx->errstr : "no reply"), CM_LF_END);
    else if (rep->type == REDIS_REPLY_ERROR)
        cm_log(CM_LOG_WARN, "worker: Redis refused a command", CM_LF_S("command", argv[0]),
               CM_LF_S("error", rep->str), CM_LF_END);
    return rep;
}

int wr_ensure_group(wredis *r)
{
    const char *argv[] = {"XGROUP",           "CREATE", r->c->worker_stream,
                          r->c->worker_group, "0",      "MKSTREAM"};
    redisReply *rep = redisCommandArgv(r->ctx, 6, argv, NULL);
    /* Every worker creates the group; all but the first find it there. */
    int ok = rep && (rep->type == REDIS_REPLY_STATUS ||
                     (rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "BUSYGROUP", 9)));
    if (!ok)
        cm_log(CM_LOG_WARN, "worker: cannot create the consumer group",
               CM_LF_S("stream", r->c->worker_stream), CM_LF_S("group", r->c->worker_group),
               CM_LF_S("error", rep ? rep->str : r->ctx->errstr), CM_LF_END);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* One entry, [id, [field, value, ...]], to fn. 1 if it was one, 0 if not (skipped). */
static int one_entry(const redisReply *e, unsigned long attempts, wr_entry_fn fn, void *arg)
{
    const char *f[WJ_MAX_FIELDS + 1], *v[WJ_MAX_FIELDS + 1];
    size_t flen[WJ_MAX_FIELDS + 1], vlen[WJ_MAX_FIELDS + 1], n = 0;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= 64)
        return 0;
    const redisReply *kv = e->element[1];
    /* An entry deleted while pending has no fields (nil): nothing to scan. */
    if (kv->type != REDIS_REPLY_ARRAY)
        return 0;
    /* One pair past the limit is enough for worker_job.c to refuse the entry. */
    for (size_t i = 0; i + 1 < kv->elements && n <= WJ_MAX_FIELDS; i += 2) {
        const redisReply *a = kv->element[i], *b = kv->element[i + 1];
        if (a->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING)
            return 0;
        f[n] = a->str, flen[n] = a->len, v[n] = b->str, vlen[n] = b->len;
        n++;
    }
    fn(arg, e->element[0]->str, attempts, f, flen, v, vlen, n);
    return 1;
}

int wr_read(wredis *r, unsigned count, unsigned block_ms, wr_entry_fn fn, void *arg)
{
    char cnt[16], blk[16];
    snprintf(cnt, sizeof cnt, "%u", count ? count : 1);
    snprintf(blk, sizeof blk, "%u", block_ms ? block_ms : 1); /* BLOCK 0 is forever */
    const char *argv[] = {
        "XREADGROUP", "GROUP", r->c->worker_group, r->consumer,         "COUNT", cnt,
        "BLOCK",      blk,     "STREAMS",          r->c->worker_stream, ">"};
    redisReply *rep = command(r, 11, argv);
    int n = 0;

    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        return -1;
    }
    /* [[stream, [entry, ...]]], or nil when BLOCK passed without an entry. */
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2 &&
        rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *entries = rep->element[0]->element[1];
        for (size_t i = 0; i < entries->elements; i++)
            n += one_entry(entries->element[i], 1, fn, arg);
    }
    freeReplyObject(rep);
    return n;
}

/* How many times `entry` was delivered (XPENDING), or 0 when Redis does not say. */
static unsigned long deliveries(wredis *r, const char *entry)
{
    const char *argv[] = {"XPENDING", r->c->worker_stream, r->c->worker_group, entry, entry, "1"};
    redisReply *rep = command(r, 6, argv);
    unsigned long n = 0;

    /* [[id, consumer, idle ms, deliveries]] */
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 4 &&
        rep->element[0]->element[3]->type == REDIS_REPLY_INTEGER &&
        rep->element[0]->element[3]->integer > 0)
        n = (unsigned long)rep->element[0]->element[3]->integer;
    freeReplyObject(rep);
    return n;
}

int wr_claim(wredis *r, char *cursor, size_t cursorlen, unsigned count, wr_entry_fn fn, void *arg)
{
    char cnt[16], idle[24];
    snprintf(cnt, sizeof cnt, "%u", count ? count : 1);
    snprintf(idle, sizeof idle, "%u", r->c->worker_claim_idle_ms);
    const char *argv[] = {
        "XAUTOCLAIM", r->c->worker_stream, r->c->worker_group, r->consumer, idle, cursor, "COUNT",
        cnt};
    redisReply *rep = command(r, 8, argv);
    int n = 0;

    /* [next cursor, [entry, ...]] (and, since Redis 7, [ids deleted meanwhile]). */
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[0]->len >= cursorlen ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return -1;
    }
    memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
    cursor[rep->element[0]->len] = '\0';
    const redisReply *entries = rep->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        unsigned long times = deliveries(r, e->element[0]->str);
        worker_count(WM_RECLAIMED);
        /* Unknown count: taken as a second delivery (the claim itself was one more). */
        n += one_entry(e, times ? times : 2, fn, arg);
    }
    freeReplyObject(rep);
    return n;
}

/* Room for FINISH_SCRIPT's arguments: 4 + 4 keys + 5 fixed + 2 x (5 + 7) pairs. */
#define MAX_ARGS 48

typedef struct args {
    const char *v[MAX_ARGS];
    size_t len[MAX_ARGS];
    int n;
} args;

static void add(args *a, const char *s)
{
    if (a->n < MAX_ARGS) {
        a->v[a->n] = s;
        a->len[a->n++] = strlen(s);
    }
}

static void add_pair(args *a, const char *k, const char *v)
{
    add(a, k);
    add(a, v);
}

/* The result's pairs (docs/queue.md RESULTS). */
static void result_pairs(args *a, const wtask *t, int dead, const char *verdict)
{
    add_pair(a, "id", t->id);
    add_pair(a, "status", dead ? "failed" : "done");
    if (verdict)
        add_pair(a, "verdict", verdict);
    if (dead) {
        add_pair(a, "reason", t->reason ? t->reason : "failed");
        add_pair(a, "error", t->error);
    }
}

/* The dead letter's pairs (docs/queue.md DEAD LETTERS). */
static void dead_pairs(args *a, const wtask *t, int dead, const char *attempts, const char *c)
{
    add_pair(a, "id", t->id);
    if (dead) {
        add_pair(a, "reason", t->reason ? t->reason : "failed");
        add_pair(a, "error", t->error);
    }
    add_pair(a, "entry", t->entry);
    add_pair(a, "attempts", attempts);
    add_pair(a, "consumer", c);
    if (t->src && t->src_field)
        add_pair(a, t->src_field, t->src);
}

int wr_finish(wredis *r, const wtask *t, int dead, const char *verdict)
{
    char key[WJ_KEY_MAX + WJ_ID_MAX + 2], ttl[24], nres[16], tries[24];
    args a = {.n = 0};

    snprintf(key, sizeof key, "%s%s", t->id[0] ? r->c->worker_result_prefix : "", t->id);
    snprintf(ttl, sizeof ttl, "%u", r->c->worker_result_ttl_ms);
    snprintf(tries, sizeof tries, "%lu", t->attempts);
    add(&a, "EVAL");
    add(&a, FINISH_SCRIPT);
    add(&a, "4");
    add(&a, key);
    add(&a, r->c->worker_stream);
    add(&a, r->c->worker_dead);
    add(&a, t->id[0] && t->reply ? t->reply : "");
    add(&a, r->c->worker_group);
    add(&a, t->entry);
    add(&a, ttl);
    add(&a, dead ? "1" : "0");
    int at = a.n;
    add(&a, "0");
    result_pairs(&a, t, dead, verdict);
    snprintf(nres, sizeof nres, "%d", a.n - at - 1);
    a.v[at] = nres;
    a.len[at] = strlen(nres);
    dead_pairs(&a, t, dead, tries, r->consumer);

    redisReply *rep = redisCommandArgv(r->ctx, a.n, a.v, a.len);
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (!ok)
        cm_log(CM_LOG_WARN, "worker: cannot write a result", CM_LF_S("id", t->id),
               CM_LF_S("error", rep ? rep->str : r->ctx->errstr), CM_LF_END);
    else if (rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "new") &&
             strcmp(rep->str, "again"))
        cm_log(CM_LOG_WARN, "worker: a key of the job is not ours; dead-lettered",
               CM_LF_S("id", t->id), CM_LF_S("problem", rep->str), CM_LF_END);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

#else /* !HAVE_HIREDIS: config_check refuses worker.enabled; nothing here runs. */

wredis *wr_open(const dconfig *c, const char *consumer, unsigned timeout_ms)
{
    (void)c, (void)consumer, (void)timeout_ms;
    cm_log(CM_LOG_ERROR, "worker: this build has no Redis support (configured --without-redis)",
           CM_LF_END);
    return NULL;
}

void wr_close(wredis *r)
{
    (void)r;
}

int wr_ensure_group(wredis *r)
{
    (void)r;
    return -1;
}

int wr_read(wredis *r, unsigned count, unsigned block_ms, wr_entry_fn fn, void *arg)
{
    (void)r, (void)count, (void)block_ms, (void)fn, (void)arg;
    return -1;
}

int wr_claim(wredis *r, char *cursor, size_t cursorlen, unsigned count, wr_entry_fn fn, void *arg)
{
    (void)r, (void)cursor, (void)cursorlen, (void)count, (void)fn, (void)arg;
    return -1;
}

int wr_finish(wredis *r, const wtask *t, int dead, const char *verdict)
{
    (void)r, (void)t, (void)dead, (void)verdict;
    return -1;
}

#endif
