/*
 * audit-log.c - an operator plugin that appends one JSON line per scan result to a file.
 *
 * Owns its log file descriptor. Configuration: "path=/var/log/clipmod/audit.jsonl".
 * Each line records when, which policy, which input, and the verdict as it stands
 * when this plugin runs (so load it after plugins that change verdicts):
 *
 *   {"time":"2026-11-27T13:52:01.123Z","policy":"default","name":"/srv/up/a.jpg",
 *    "state":"flagged","action":"reject","category":"weapons"}
 *
 * ("reason" is added for unscanned inputs.) Lines from concurrent scans never mix:
 * each is built in memory and written with one write() to a descriptor opened with
 * O_APPEND, which the kernel applies atomically to a local file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* open_memstream, O_CLOEXEC */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <clipmod/plugin.h>

#define NAME "audit-log"

typedef struct audit {
    int fd;
    char *path;
} audit;

/* Drop spaces and tabs at both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/*
 * Parse "key=value;key=value". Only "path" is known; anything else is an error, so a
 * mistyped key is reported when the plugin loads rather than ignored.
 */
static int parse_config(const char *config, char **path, char *errbuf, size_t errlen)
{
    const char *item = config;
    while (*item) {
        size_t len = strcspn(item, ";");
        const char *next = item[len] ? item + len + 1 : item + len;
        const char *eq = memchr(item, '=', len);
        const char *key = item, *val;
        size_t klen, vlen;
        trim(&key, &len);
        if (!len) {
            item = next;
            continue;
        }
        if (!eq) {
            snprintf(errbuf, errlen, "\"%.*s\" is not key=value", (int)len, key);
            return -1;
        }
        klen = (size_t)(eq - key);
        val = eq + 1;
        vlen = len - klen - 1;
        trim(&key, &klen);
        trim(&val, &vlen);
        if (klen != 4 || strncmp(key, "path", 4) != 0) {
            snprintf(errbuf, errlen, "unknown key \"%.*s\" (known: path)", (int)klen, key);
            return -1;
        }
        if (!vlen) {
            snprintf(errbuf, errlen, "path is empty");
            return -1;
        }
        free(*path);
        *path = strndup(val, vlen);
        if (!*path) {
            snprintf(errbuf, errlen, "out of memory");
            return -1;
        }
        item = next;
    }
    if (!*path) {
        snprintf(errbuf, errlen, "no log file: configure it as path=FILE");
        return -1;
    }
    return 0;
}

static int audit_init(const char *config, void **state, char *errbuf, size_t errlen)
{
    int rc = -1;
    audit *a = calloc(1, sizeof *a);

    if (!a) {
        snprintf(errbuf, errlen, "out of memory");
        goto out;
    }
    a->fd = -1;
    if (parse_config(config, &a->path, errbuf, errlen))
        goto out;
    /* Opened once, here, so a bad path fails at load time and a daemon may drop its
     * privileges afterwards. Rotate with logrotate's copytruncate. */
    a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (a->fd < 0) {
        snprintf(errbuf, errlen, "cannot open %s: %s", a->path, strerror(errno));
        goto out;
    }
    *state = a;
    a = NULL;
    rc = 0;
out:
    if (a) {
        free(a->path);
        free(a);
    }
    return rc;
}

/*
 * Write `s` as a JSON string. File names are bytes, not always UTF-8; JSON must be,
 * so each byte that does not start a valid UTF-8 sequence becomes U+FFFD.
 */
static void json_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', f);
    while (*p) {
        unsigned c = *p;
        size_t n = 0;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else if (c < 0x80) {
            fputc((int)c, f);
        } else {
            /* Lead byte: length and the range allowed for the second byte (RFC 3629). */
            unsigned lo = 0x80, hi = 0xbf;
            if (c >= 0xc2 && c <= 0xdf)
                n = 2;
            else if (c >= 0xe0 && c <= 0xef)
                n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
            else if (c >= 0xf0 && c <= 0xf4)
                n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
            int ok = n && p[1] >= lo && p[1] <= hi;
            for (size_t i = 2; ok && i < n; i++)
                ok = p[i] >= 0x80 && p[i] <= 0xbf;
            if (ok)
                fwrite(p, 1, n, f);
            else
                fputs("\\ufffd", f), n = 0;
        }
        p += n ? n : 1;
    }
    fputc('"', f);
}

static void audit_on_result(void *state, const clipmod_engine *engine, const clipmod_input *input,
                            clipmod_result *result)
{
    audit *a = state;
    char *line = NULL, when[40], note[256];
    size_t len = 0, done = 0;
    struct timespec ts;
    struct tm tm;
    FILE *f = open_memstream(&line, &len);

    if (!f) {
        clipmod_result_add_note(result, NAME, "not logged: out of memory");
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    fprintf(f, "{\"time\":\"%s.%03ldZ\",\"policy\":", when, ts.tv_nsec / 1000000);
    json_string(f, clipmod_engine_policy_name(engine));
    fputs(",\"name\":", f);
    json_string(f, clipmod_result_name(result));
    fprintf(f, ",\"state\":\"%s\",\"action\":\"%s\",\"category\":",
            clipmod_state_name(clipmod_result_state(result)),
            clipmod_action_name(clipmod_result_action(result)));
    if (clipmod_result_top_category(result))
        json_string(f, clipmod_result_top_category(result));
    else
        fputs("null", f);
    if (clipmod_result_state(result) == CLIPMOD_STATE_UNSCANNED)
        fprintf(f, ",\"reason\":\"%s\"", clipmod_reason_name(clipmod_result_reason(result)));
    fputs("}\n", f);
    if (fclose(f) || !line) {
        clipmod_result_add_note(result, NAME, "not logged: out of memory");
        goto out;
    }

    /* One write() for the whole line; the loop only matters when the disk is full. */
    while (done < len) {
        ssize_t w = write(a->fd, line + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* strerror() is thread-safe in glibc >= 2.32 and in musl. */
            snprintf(note, sizeof note, "not logged: cannot write %s: %s", a->path,
                     w < 0 ? strerror(errno) : "no progress");
            clipmod_result_add_note(result, NAME, note);
            break;
        }
        done += (size_t)w;
    }
out:
    free(line);
}

static void audit_fini(void *state)
{
    audit *a = state;
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    free(a->path);
    free(a);
}

static const clipmod_plugin plugin = {
    CLIPMOD_PLUGIN_HEADER, /* abi and size */
    .name = NAME,
    .version = "1.0",
    .description = "appends one JSON line per scan result to a file",
    .init = audit_init,
    .on_result = audit_on_result,
    .fini = audit_fini,
};

CLIPMOD_PLUGIN_EXPORT const clipmod_plugin *clipmod_plugin_v1(void)
{
    return &plugin;
}
