/*
 * eval_apply.c - `clipmod policy evaluate --apply`: suggested thresholds written back.
 *
 * Owns the edit of the policy file: the file is read before the evaluation compiles
 * it (eval_apply_snapshot); afterwards each category's number is replaced where the
 * policy parser recorded it (clipmod_category_info's file:line:column), or, when the
 * threshold is written in an included file, a `threshold:` line is inserted into the
 * category's mapping in the file given with --policy (an override: the included file,
 * which other policies may share, is never edited). Every other byte is kept. The new
 * text goes to a new file (O_EXCL) in the same directory, is compiled with the model
 * and must give back the written thresholds, and replaces the file by rename() only
 * if the file still holds what was read. Any refusal writes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "engine_cfg.h"
#include "eval_apply.h"

#define MAX_POLICY_BYTES (1u << 20) /* as the policy parser's limit */

typedef struct edit {
    size_t at, drop; /* bytes [at, at + drop) are replaced by text */
    char num[32];    /* the threshold as written */
    char text[96];
    size_t cat;   /* category index */
    double value; /* the threshold written */
} edit;

static int read_file(const char *path, unsigned char **buf, size_t *len, struct stat *st)
{
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    *buf = NULL;
    *len = 0;
    if (fd < 0 || fstat(fd, st) || !S_ISREG(st->st_mode) || st->st_size > MAX_POLICY_BYTES) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *buf = malloc((size_t)st->st_size + 1);
    ssize_t got = *buf ? read(fd, *buf, (size_t)st->st_size + 1) : -1;
    close(fd);
    if (got < 0 || (size_t)got != (size_t)st->st_size) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    *len = (size_t)got;
    return 0;
}

int eval_apply_snapshot(const char *path, apply_snap *s)
{
    struct stat lst;
    memset(s, 0, sizeof *s);
    s->path = path;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        fprintf(stderr,
                "clipmod: --apply: %s is a symbolic link; give the file it points to, which "
                "is the one to edit\n",
                path);
        return -1;
    }
    if (read_file(path, &s->buf, &s->len, &s->st)) {
        fprintf(stderr, "clipmod: --apply: cannot read %s: %s\n", path,
                errno ? strerror(errno) : "not a regular file of at most 1 MiB");
        return -1;
    }
    return 0;
}

void eval_apply_snapshot_free(apply_snap *s)
{
    if (s)
        free(s->buf);
}

/* The file still holds what was read: same size, modification time and bytes. */
static int unchanged(const apply_snap *s)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    struct stat st;
    int same = read_file(s->path, &buf, &len, &st) == 0 && st.st_ino == s->st.st_ino &&
               st.st_dev == s->st.st_dev && len == s->len &&
               st.st_mtim.tv_sec == s->st.st_mtim.tv_sec &&
               st.st_mtim.tv_nsec == s->st.st_mtim.tv_nsec && !memcmp(buf, s->buf, len);
    free(buf);
    return same;
}

/* Tests only: wait while the file named by $CLIPMOD_TEST_APPLY_PAUSE exists (<= 30 s). */
static void test_pause(void)
{
    const char *f = getenv("CLIPMOD_TEST_APPLY_PAUSE");
    if (!f || !*f)
        return;
    FILE *fp = fopen(f, "w");
    if (fp)
        fclose(fp);
    for (int i = 0; i < 600 && access(f, F_OK) == 0; i++)
        nanosleep(&(struct timespec){0, 50000000}, NULL);
}

/* The edit replacing the number at (line, column) of the snapshot; 0, or -1. */
static int replace_edit(const apply_snap *s, const clipmod_category_info *in, edit *e)
{
    if (in->threshold_line < 1 || in->threshold_column < 1)
        return -1;
    const size_t at = apply_offset(s->buf, s->len, (size_t)in->threshold_line - 1,
                                   (size_t)in->threshold_column - 1);
    size_t end = at;
    while (end < s->len && !strchr(" \t\r\n,]}#", s->buf[end]))
        end++;
    char old[64];
    if (end == at || end - at >= sizeof old)
        return -1;
    memcpy(old, s->buf + at, end - at);
    old[end - at] = '\0';
    char *stop = NULL;
    strtod(old, &stop);
    if (*stop) /* not the number the parser read there: positions do not match the text */
        return -1;
    e->at = at;
    e->drop = end - at;
    return strcmp(old, e->text) ? 0 : 1; /* 1: already written so */
}

/* The edit inserting `threshold: T` into the category's mapping in the snapshot. */
static void insert_edit(const apply_snap *s, const apply_site *site, edit *e)
{
    const char *num = e->num;
    if (site->flow) {
        e->at = site->last_end;
        snprintf(e->text, sizeof e->text, ", threshold: %s", num);
        return;
    }
    size_t at = site->id_end;
    while (at < s->len && s->buf[at] != '\n')
        at++;
    const int eof = at == s->len;
    e->at = eof ? at : at + 1;
    const int ind = site->key_column < 60 ? (int)site->key_column : 60;
    snprintf(e->text, sizeof e->text, "%s%*sthreshold: %s\n", eof ? "\n" : "", ind, "", num);
}

/* One category's edit: 1 made, 0 nothing to do, -1 refused (printed). */
static int plan_one(const evaluation *ev, const apply_snap *s, const apply_site *sites,
                    size_t n_sites, size_t c, edit *e)
{
    const eval_category *ec = &ev->cats[c];
    const suggestion *sg = &ec->suggested[0];
    const char *id = ec->info.id;
    memset(e, 0, sizeof *e);
    if (!ec->n_suggested || !sg->found || !(sg->at.threshold > 0 && sg->at.threshold <= 1)) {
        fprintf(stderr, "clipmod: --apply: %s: no suggestion (%s); its threshold is kept\n", id,
                sg->found ? "not in (0, 1]"
                : sg->why ? sg->why
                          : "none");
        return 0;
    }
    e->cat = c;
    e->value = sg->at.threshold;
    eval_fmt_threshold(e->value, e->num, sizeof e->num);
    snprintf(e->text, sizeof e->text, "%s", e->num);
    const char *file = ec->info.threshold_file;
    if (file && !strcmp(file, s->path)) {
        const int rc = replace_edit(s, &ec->info, e);
        if (rc < 0)
            fprintf(stderr, "clipmod: --apply: %s:%d:%d: no number where %s's threshold was read\n",
                    file, ec->info.threshold_line, ec->info.threshold_column, id);
        return rc < 0 ? -1 : !rc;
    }
    for (size_t i = 0; i < n_sites; i++) {
        if (sites[i].id && !strcmp(sites[i].id, id)) {
            insert_edit(s, &sites[i], e);
            return 1;
        }
    }
    fprintf(stderr,
            "clipmod: --apply: %s's threshold is written in %s:%d, which %s includes, and %s "
            "has no entry for it: add '- id: %s' to its categories (an override) or edit %s\n",
            id, file ? file : "?", ec->info.threshold_line, s->path, s->path, id,
            file ? file : "that file");
    return -1;
}

static int cmp_edit(const void *a, const void *b)
{
    const edit *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* The snapshot with the edits made, in a new buffer. */
static unsigned char *edited(const apply_snap *s, edit *e, size_t n, size_t *len)
{
    size_t size = s->len + 1, o = 0, from = 0;
    for (size_t i = 0; i < n; i++)
        size += strlen(e[i].text);
    unsigned char *out = malloc(size);
    if (!out)
        return NULL;
    qsort(e, n, sizeof *e, cmp_edit);
    for (size_t i = 0; i < n; i++) {
        memcpy(out + o, s->buf + from, e[i].at - from);
        o += e[i].at - from;
        memcpy(out + o, e[i].text, strlen(e[i].text));
        o += strlen(e[i].text);
        from = e[i].at + e[i].drop;
    }
    memcpy(out + o, s->buf + from, s->len - from);
    *len = o + s->len - from;
    return out;
}

/* Write `buf` to a new file next to the policy; its name in `tmp`. 0, or -1. */
static int write_temp(const apply_snap *s, const unsigned char *buf, size_t len, char *tmp,
                      size_t size)
{
    for (int i = 0; i < 100; i++) {
        snprintf(tmp, size, "%s.apply-%ld-%d.tmp", s->path, (long)getpid(), i);
        const int fd =
            open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, s->st.st_mode & 07777);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return -1;
        size_t done = 0;
        while (done < len) {
            const ssize_t w = write(fd, buf + done, len - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        const int ok = done == len && fsync(fd) == 0;
        if (close(fd) || !ok) {
            unlink(tmp);
            return -1;
        }
        return 0;
    }
    return -1;
}

/* Compile the edited file with the model: valid, and it reads back the values written. */
static int revalidate(const evaluation *ev, const char *tmp, const edit *e, size_t n)
{
    clipmod_engine *engine = NULL;
    char *problems = NULL, errbuf[CLIPMOD_ERROR_SIZE] = "";
    cm_engine_cfg cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.policy = tmp;
    cfg.no_cache = ev->opts->m.no_cache;
    cfg.cache_dir = ev->opts->m.cache_dir;
    cfg.quiet_warnings = 1;
    cfg.errors_to_caller = 1;
    clipmod_error err = cm_engine_from_config(&cfg, ev->model, &engine, &problems, errbuf);
    if (err) {
        fprintf(stderr, "clipmod: --apply: the edited policy does not compile (%s):\n%s", errbuf,
                problems ? problems : "");
    }
    for (size_t i = 0; !err && i < n; i++) {
        clipmod_category_info in;
        if (clipmod_engine_category_info(engine, e[i].cat, &in) ||
            strcmp(in.id, ev->cats[e[i].cat].info.id) || in.threshold != e[i].value) {
            fprintf(stderr,
                    "clipmod: --apply: the edited policy does not give %s the threshold %s\n",
                    ev->cats[e[i].cat].info.id, e[i].num);
            err = CLIPMOD_E_POLICY;
        }
    }
    clipmod_free(problems);
    clipmod_engine_free(engine);
    return err ? -1 : 0;
}

static void report(const evaluation *ev, const apply_snap *s, const edit *e, size_t n)
{
    fprintf(stderr, "clipmod: --apply: wrote %zu threshold%s to %s:", n, n == 1 ? "" : "s",
            s->path);
    for (size_t i = 0; i < n; i++) {
        const eval_category *ec = &ev->cats[e[i].cat];
        char old[32], now[32];
        fprintf(stderr, " %s %s -> %s%s", ec->info.id,
                eval_fmt_threshold(ec->info.threshold, old, sizeof old),
                eval_fmt_threshold(e[i].value, now, sizeof now), e[i].drop ? "" : " (override)");
        fputc(i + 1 < n ? ',' : '\n', stderr);
    }
}

/* Plan every category's edit; the number of edits, or -1 (refused, printed). */
static long plan(const evaluation *ev, const apply_snap *s, edit *e)
{
    apply_site *sites = NULL;
    size_t n_sites = 0, n = 0;
    int refused = 0;
    if (apply_locate(s->buf, s->len, &sites, &n_sites)) {
        fprintf(stderr, "clipmod: --apply: cannot read %s as YAML again\n", s->path);
        return -1;
    }
    for (size_t c = 0; c < ev->n_cats; c++) {
        const int rc = plan_one(ev, s, sites, n_sites, c, &e[n]);
        if (rc < 0)
            refused = 1;
        else if (rc > 0)
            n++;
    }
    apply_sites_free(sites, n_sites);
    return refused ? -1 : (long)n;
}

int eval_apply(const evaluation *ev, const apply_snap *s)
{
    edit *e = calloc(ev->n_cats ? ev->n_cats : 1, sizeof *e);
    unsigned char *buf = NULL;
    size_t len = 0;
    char tmp[4096] = "";
    int rc = EXIT_ERROR;
    long n = 0;

    test_pause();
    if (!e) {
        fprintf(stderr, "clipmod: out of memory\n");
        goto out;
    }
    if (!unchanged(s)) {
        fprintf(stderr,
                "clipmod: --apply: %s changed since it was read; nothing written (evaluate "
                "again)\n",
                s->path);
        goto out;
    }
    n = plan(ev, s, e);
    if (n < 0) {
        fprintf(stderr, "clipmod: --apply: nothing written to %s\n", s->path);
        goto out;
    }
    if (n == 0) {
        fprintf(stderr, "clipmod: --apply: %s already holds the suggested thresholds\n", s->path);
        rc = EXIT_CLEAN;
        goto out;
    }
    buf = edited(s, e, (size_t)n, &len);
    if (!buf || write_temp(s, buf, len, tmp, sizeof tmp)) {
        fprintf(stderr, "clipmod: --apply: cannot write next to %s: %s; nothing written\n", s->path,
                strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    if (revalidate(ev, tmp, e, (size_t)n)) {
        fprintf(stderr, "clipmod: --apply: nothing written to %s\n", s->path);
        goto out;
    }
    if (!unchanged(s)) {
        fprintf(stderr,
                "clipmod: --apply: %s changed since it was read; nothing written (evaluate "
                "again)\n",
                s->path);
        goto out;
    }
    if (rename(tmp, s->path)) {
        fprintf(stderr, "clipmod: --apply: cannot replace %s: %s; nothing written\n", s->path,
                strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    report(ev, s, e, (size_t)n);
    rc = EXIT_CLEAN;
out:
    if (tmp[0])
        unlink(tmp);
    free(buf);
    free(e);
    return rc;
}
