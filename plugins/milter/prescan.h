/*
 * prescan.h - the MIME structure of a raw message, bounded, before GMime parses it.
 *
 * Owns the limits on parts and nesting *before* any parser builds a tree: GMime
 * builds the whole tree of a message first (every part an object, every multipart
 * boundary compared with every line), so a message of 11 MB of empty parts or of
 * nested multiparts cost seconds of CPU and gigabytes of memory before the walk of
 * mime.c could count anything. The pre-scan reads the message line by line the way
 * GMime 3.2 does (header blocks, folding, the last Content-Type of a block, boundary
 * lines matched against every open multipart, message/rfc822 bodies parsed as
 * messages, multipart/digest defaults) and stops at the first part past max-parts
 * or max-depth, in time linear in the message (times max-depth for boundary lines).
 *
 * It also records every Content-Type header it read (byte offset and boundary), so
 * that mime.c can check GMime against it while GMime parses (cmm_prescan_check): a
 * parser that saw a header the pre-scan did not see is cut off at once. Either way
 * the two agree, or the message is refused; GMime never builds more than the
 * pre-scan counted. Conflicting Content-Type headers in one part (two different
 * values: mail readers disagree on which one counts) are refused too.
 */
#ifndef CLIPMOD_MILTER_PRESCAN_H
#define CLIPMOD_MILTER_PRESCAN_H

#include <stddef.h>

#include "mime.h"

/* One Content-Type header: where it starts and the boundary it declares. */
typedef struct cmm_ct_mark {
    size_t offset;  /* of the header's first byte (GMime's header offset) */
    char *boundary; /* NULL when the header declares no multipart boundary */
} cmm_ct_mark;

typedef struct cmm_prescan {
    size_t n_parts;   /* parts counted (as the walk counts them; message parts once) */
    size_t max_depth; /* deepest part seen */
    cmm_ct_mark *cts; /* every Content-Type header, in message order */
    size_t n_cts, cap_cts;
    size_t next_ct; /* cmm_prescan_check's position in cts */
    int failed;     /* a limit was passed or the structure is refused; why says which */
    char why[200];
    int nomem;
} cmm_prescan;

/*
 * Scan `len` bytes of message. Returns 0 (out->failed tells whether the message may
 * be parsed) or -1 when memory ran out. Free with cmm_prescan_free() in any case.
 */
int cmm_prescan_run(const unsigned char *msg, size_t len, const cmm_limits *lim, cmm_prescan *out);

/*
 * While GMime parses: it read a Content-Type header at `offset` with the raw value
 * `raw`. Returns 0 when that is the next header the pre-scan recorded, with the same
 * boundary; otherwise -1 with out->failed and out->why set.
 */
int cmm_prescan_check(cmm_prescan *ps, size_t offset, const char *raw);

void cmm_prescan_free(cmm_prescan *ps);

#endif /* CLIPMOD_MILTER_PRESCAN_H */
