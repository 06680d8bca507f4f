/*
 * fuzz_clamd.c - the clamd protocol reader of clipmodd (src/daemon/clamd_proto.c).
 *
 * The input is what a client sends on one connection: commands ('z' + text + NUL,
 * 'n' + text + newline, or old style), each classified as clipmodd's clamd door
 * does (sessions included), and after INSTREAM the chunk framing, with
 * stream-max-length 1024 (the configuration's minimum). The daemon reads exactly
 * what clamd_stream_want() asks for; here the reads are cut in varying sizes so
 * that partial lengths and chunks are exercised. Invariants checked (abort on
 * failure): a command's text is NUL-terminated within its buffer, an argument points
 * into it, IDSESSION is only ever accepted with a prefix, the framing never asks for
 * bytes past the stream's end, never hands out payload past the cap, and a stream
 * that ended within the cap handed out exactly the bytes it announced.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clamd_proto.h"

#define STREAM_MAX 1024

/* Read sizes a socket might deliver, cycled through. */
static const size_t read_sizes[] = {1, 3, 4, 5, 7, 64, 4096};

/* One INSTREAM: returns the bytes consumed; *ended 1 if the connection ends after it. */
static size_t run_stream(const unsigned char *p, size_t len, int *ended)
{
    clamd_stream s;
    size_t off = 0, handed = 0, turn = 0;

    clamd_stream_init(&s, STREAM_MAX);
    for (;;) {
        size_t room = read_sizes[turn++ % (sizeof read_sizes / sizeof read_sizes[0])];
        size_t want = clamd_stream_want(&s, room);
        if (!want)
            break;
        if (want > room)
            abort();
        size_t got = want < len - off ? want : len - off;
        if (!got) {
            *ended = 1; /* the client stopped sending: the daemon drops the connection */
            return off;
        }
        size_t done = 0;
        while (done < got) {
            const unsigned char *data;
            size_t dlen;
            size_t used = clamd_stream_feed(&s, p + off + done, got - done, &data, &dlen);
            if (dlen && (data < p + off + done || data + dlen > p + off + got || s.over))
                abort();
            handed += dlen;
            if (!used)
                break;
            done += used;
        }
        /* What want() asked for is all consumed: the next command is never eaten. */
        if (done != got)
            abort();
        off += got;
    }
    if (!s.done && !s.give_up)
        abort();
    if (s.over != (s.total > STREAM_MAX) || (!s.over && handed != s.total) || handed > STREAM_MAX)
        abort();
    *ended = s.over; /* "INSTREAM size limit exceeded. ERROR" closes the connection */
    return off;
}

static void check_command(const clamd_line *l, const clamd_command *cmd)
{
    if (l->n >= sizeof l->text || l->text[l->n] != '\0')
        abort();
    if (!memchr(cmd->name, '\0', sizeof cmd->name))
        abort();
    if (cmd->arg && (cmd->arg < l->text || cmd->arg > l->text + l->n))
        abort();
    if (cmd->kind == CLAMD_IDSESSION && !l->prefixed)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0;
    int session = 0;

    while (off < size) {
        clamd_line l;
        clamd_command cmd;
        int state, ended = 0;

        clamd_line_init(&l);
        off += clamd_line_feed(&l, p + off, size - off, &state);
        if (state != CLAMD_LINE_DONE)
            break; /* too long, or the input ended inside a command */
        if (l.ended_cr && off < size && p[off] == '\n')
            off++;
        clamd_classify(&l, session, &cmd);
        check_command(&l, &cmd);
        switch (cmd.kind) {
        case CLAMD_INSTREAM:
            off += run_stream(data + off, size - off, &ended);
            break;
        case CLAMD_IDSESSION:
            session = 1;
            break;
        case CLAMD_PING:
        case CLAMD_VERSION:
        case CLAMD_VERSIONCOMMANDS:
        case CLAMD_FILDES:
        case CLAMD_SCAN:
        case CLAMD_CONTSCAN:
        case CLAMD_MULTISCAN:
            ended = !session;
            break;
        default:
            ended = 1;
            break;
        }
        /* The daemon closes here; go on as a new connection, for coverage. */
        if (ended || !session)
            session = 0;
    }
    return 0;
}
