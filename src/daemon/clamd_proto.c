/*
 * clamd_proto.c - the clamd protocol's pure parsing: commands and INSTREAM framing.
 *
 * Owns what clamd.c needs to understand the bytes a clamd client sends, with no
 * socket, thread or allocation in sight: the command reader (a 'z' prefix ends at
 * NUL, an 'n' prefix or none at newline; at most CLAMD_MAX_COMMAND bytes), the
 * command table with clamd's rules for unprefixed commands and sessions, and the
 * INSTREAM chunk framing. The framing says how many bytes to read next and never
 * asks for more than the rest of the stream, so a reader never eats the next
 * command of a session. tests/fuzz/fuzz_clamd.c drives all of it from a buffer.
 */
#include <string.h>

#include "clamd_proto.h"

/* Past this the rest of an oversized stream is not read: the client gets the error. */
#define GIVE_UP_SLACK 65536

void clamd_line_init(clamd_line *l)
{
    memset(l, 0, sizeof *l);
    l->term = '\n';
}

int clamd_line_byte(clamd_line *l, char ch)
{
    if (!l->started) {
        l->started = 1;
        if (ch == 'z' || ch == 'n') {
            l->prefixed = 1;
            l->term = ch == 'z' ? '\0' : '\n';
            return CLAMD_LINE_MORE;
        }
        l->term = '\n';
    }
    if (ch == l->term || (l->term == '\n' && ch == '\r')) {
        /* An old-style command may end with CRLF; the caller drops the LF. */
        l->ended_cr = ch == '\r';
        l->text[l->n] = '\0';
        return CLAMD_LINE_DONE;
    }
    if (l->n + 1 >= sizeof l->text)
        return CLAMD_LINE_TOO_LONG;
    l->text[l->n++] = ch;
    return CLAMD_LINE_MORE;
}

size_t clamd_line_feed(clamd_line *l, const char *buf, size_t len, int *state)
{
    size_t i = 0;

    *state = CLAMD_LINE_MORE;
    while (i < len && *state == CLAMD_LINE_MORE)
        *state = clamd_line_byte(l, buf[i++]);
    return i;
}

/* ------------------------------------------------------------------------ */
/* The command table                                                        */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    clamd_kind kind;
    int need_arg;     /* a path must follow */
    int old_style_ok; /* may be sent without a z/n prefix */
    int in_session;   /* 1 allowed in a session, 0 unknown there, -1 "invalid inside" */
} commands[] = {
    {"PING", CLAMD_PING, 0, 1, 1},
    {"VERSION", CLAMD_VERSION, 0, 1, 1},
    {"VERSIONCOMMANDS", CLAMD_VERSIONCOMMANDS, 0, 1, 1},
    {"INSTREAM", CLAMD_INSTREAM, 0, 1, 1},
    {"FILDES", CLAMD_FILDES, 0, 1, 1},
    {"SCAN", CLAMD_SCAN, 1, 1, 1},
    {"CONTSCAN", CLAMD_CONTSCAN, 1, 1, -1},
    {"MULTISCAN", CLAMD_MULTISCAN, 1, 1, -1},
    /* clamd's parse_command(): IDSESSION has support_old false. */
    {"IDSESSION", CLAMD_IDSESSION, 0, 0, 0},
    {"END", CLAMD_END, 0, 1, 1},
    {"RELOAD", CLAMD_RELOAD, 0, 1, 0},
    /* clamd answers STATS inside a session too; SHUTDOWN there would end others' work. */
    {"STATS", CLAMD_STATS, 0, 1, 1},
    {"SHUTDOWN", CLAMD_SHUTDOWN, 0, 1, 0},
};

void clamd_classify(const clamd_line *l, int in_session, clamd_command *out)
{
    const char *text = l->text;
    const char *space = strchr(text, ' ');
    size_t name_len = space ? (size_t)(space - text) : strlen(text);
    size_t keep = name_len < sizeof out->name - 1 ? name_len : sizeof out->name - 1;

    memcpy(out->name, text, keep);
    out->name[keep] = '\0';
    out->kind = CLAMD_UNKNOWN;
    out->arg = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strlen(commands[i].name) != name_len || strncmp(commands[i].name, text, name_len))
            continue;
        if (commands[i].need_arg) {
            if (!space || !space[1])
                return;
            out->arg = space + 1;
        }
        if (!l->prefixed && !commands[i].old_style_ok)
            return;
        if (in_session && commands[i].in_session == 0)
            return;
        out->kind =
            in_session && commands[i].in_session < 0 ? CLAMD_IN_SESSION_INVALID : commands[i].kind;
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* INSTREAM framing                                                         */
/* ------------------------------------------------------------------------ */

void clamd_stream_init(clamd_stream *s, uint64_t max)
{
    memset(s, 0, sizeof *s);
    s->max = max;
}

size_t clamd_stream_want(const clamd_stream *s, size_t room)
{
    size_t want;

    if (s->done || s->give_up)
        return 0;
    want = s->left ? s->left : 4 - s->hdr_n;
    return want < room ? want : room;
}

/* A chunk's length is complete: account for it. */
static void stream_length(clamd_stream *s)
{
    uint32_t n = (uint32_t)s->hdr[0] << 24 | (uint32_t)s->hdr[1] << 16 | (uint32_t)s->hdr[2] << 8 |
                 (uint32_t)s->hdr[3];

    s->hdr_n = 0;
    if (!n) {
        s->done = 1;
        return;
    }
    s->total += n;
    if (s->total > s->max) {
        /* Read on (up to a bound) so that the answer is not lost in a reset. */
        s->over = 1;
        if (s->total > 4 * s->max + GIVE_UP_SLACK) {
            s->give_up = 1;
            return;
        }
    }
    s->left = n;
}

size_t clamd_stream_feed(clamd_stream *s, const unsigned char *buf, size_t len,
                         const unsigned char **data, size_t *dlen)
{
    size_t used = 0;

    *data = NULL;
    *dlen = 0;
    while (used < len && !s->done && !s->give_up) {
        if (!s->left) {
            s->hdr[s->hdr_n++] = buf[used++];
            if (s->hdr_n == 4)
                stream_length(s);
            continue;
        }
        size_t take = len - used < s->left ? len - used : s->left;
        if (!s->over) {
            *data = buf + used;
            *dlen = take;
        }
        s->left -= (uint32_t)take;
        used += take;
        break; /* one chunk's data per call: the caller appends it */
    }
    return used;
}
