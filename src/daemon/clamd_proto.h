/*
 * clamd_proto.h - the clamd protocol's pure parsing, without sockets (clamd_proto.c).
 *
 * clamd.c reads bytes from a connection and hands them to these functions: the
 * command reader (prefix, terminator, length limit), the command table (which
 * command, its argument, whether it may be sent unprefixed or inside an IDSESSION),
 * and INSTREAM's chunk framing (4-byte network-order lengths, a zero length at the
 * end, the stream-max-length cap). Nothing here blocks or allocates, so the fuzz
 * target tests/fuzz/fuzz_clamd.c drives the same code from a buffer.
 */
#ifndef CLIPMODD_CLAMD_PROTO_H
#define CLIPMODD_CLAMD_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* The longest command line accepted (a path of PATH_MAX and the command name). */
#define CLAMD_MAX_COMMAND (4096 + 64)

/* ------------------------------------------------------------------------ */
/* Reading one command                                                      */
/* ------------------------------------------------------------------------ */

typedef struct clamd_line {
    char text[CLAMD_MAX_COMMAND]; /* the command without prefix or terminator, NUL-ended */
    size_t n;
    int started;  /* the first byte was seen */
    int prefixed; /* 1: 'z' or 'n' prefix; 0: old style (unprefixed, newline) */
    char term;    /* '\0' for z, '\n' otherwise: the terminator of the replies too */
    int ended_cr; /* an old-style command ended with '\r' (a '\n' may follow) */
} clamd_line;

enum { CLAMD_LINE_MORE = 0, CLAMD_LINE_DONE = 1, CLAMD_LINE_TOO_LONG = -1 };

void clamd_line_init(clamd_line *l);

/*
 * Feed one byte: CLAMD_LINE_MORE (want another), CLAMD_LINE_DONE (l->text holds the
 * command; nothing after the terminator was consumed) or CLAMD_LINE_TOO_LONG.
 */
int clamd_line_byte(clamd_line *l, char ch);

/*
 * Feed up to len bytes, stopping right after a terminator: returns how many were
 * consumed, and the state in *state (one of CLAMD_LINE_*).
 */
size_t clamd_line_feed(clamd_line *l, const char *buf, size_t len, int *state);

/* ------------------------------------------------------------------------ */
/* The command table                                                        */
/* ------------------------------------------------------------------------ */

typedef enum {
    CLAMD_UNKNOWN, /* "UNKNOWN COMMAND", and the connection ends */
    CLAMD_PING,
    CLAMD_VERSION,
    CLAMD_VERSIONCOMMANDS,
    CLAMD_INSTREAM,
    CLAMD_FILDES,
    CLAMD_SCAN,
    CLAMD_CONTSCAN,
    CLAMD_MULTISCAN,
    CLAMD_IDSESSION,
    CLAMD_END,
    CLAMD_RELOAD,
    CLAMD_STATS,
    CLAMD_SHUTDOWN,
    CLAMD_IN_SESSION_INVALID /* "Command invalid inside IDSESSION. ERROR" */
} clamd_kind;

typedef struct clamd_command {
    clamd_kind kind;
    char name[32];   /* the command's first word (truncated), for metrics and logs */
    const char *arg; /* into the parsed text: SCAN's path, else NULL */
} clamd_command;

/*
 * Classify a command read by clamd_line. The command is its first word; SCAN,
 * CONTSCAN and MULTISCAN need a path after it. IDSESSION sent unprefixed is
 * unknown, as in clamd's parse_command() (clamd accepts it only with 'z' or 'n'),
 * and so is IDSESSION or RELOAD inside a session; CONTSCAN and MULTISCAN inside a
 * session are CLAMD_IN_SESSION_INVALID, as in clamd.
 */
void clamd_classify(const clamd_line *l, int in_session, clamd_command *out);

/* ------------------------------------------------------------------------ */
/* INSTREAM framing                                                         */
/* ------------------------------------------------------------------------ */

typedef struct clamd_stream {
    uint64_t max;   /* stream-max-length */
    uint64_t total; /* bytes announced so far */
    uint32_t left;  /* data bytes of the current chunk still to come */
    unsigned char hdr[4];
    unsigned hdr_n; /* length bytes read of the next chunk */
    int over;       /* total went past max: data is read and dropped */
    int done;       /* the zero length arrived */
    int give_up;    /* so far past max that reading on is pointless */
} clamd_stream;

void clamd_stream_init(clamd_stream *s, uint64_t max);

/*
 * How many bytes to read next: the rest of a length or of a chunk, never more than
 * `room`, never past the end of the stream (0 when done or given up). A reader
 * that asks for this many never consumes a byte of the next command.
 */
size_t clamd_stream_want(const clamd_stream *s, size_t room);

/*
 * Feed bytes; returns how many were consumed. A call stops after the payload of
 * one chunk (reported through *data and *dlen, a part of `buf`, for the caller to
 * append; *dlen is 0 when there is none or the stream is over the cap), or when the
 * stream ended or was given up: callers loop until everything is consumed or 0
 * comes back.
 */
size_t clamd_stream_feed(clamd_stream *s, const unsigned char *buf, size_t len,
                         const unsigned char **data, size_t *dlen);

#endif
