/*
 * mime.h - find and decode every image of a mail message, for clipmod-milter.
 *
 * Owns the decision of what in a message counts as an image and the walk that
 * finds them with GMime: multiparts of any kind (mixed, alternative, related,
 * signed), message/rfc822 parts nested in each other, base64, quoted-printable
 * and uuencoded bodies, uuencoded blocks inside plain text, and data: URIs inside
 * HTML and XHTML (after HTML character references are decoded). Each image comes
 * out decoded into memory, labelled with its MIME part number, under limits on
 * parts, nesting (counted before GMime parses: prescan.h), images and bytes.
 * On the way it keeps the text that comes with the images (the Subject, the text of
 * the inline text parts, the alt and title of <img src="cid:...">: mailtext.h), for
 * their context. Scanning is not done here: the walk knows nothing of clipmod, so it
 * can be tested on its own (test_milter_mime.c).
 *
 * A part is an image when (see clipmod-milter(8), IMAGES):
 *   - its Content-Type is image/<anything>;
 *   - or its file name (Content-Disposition filename or Content-Type name) ends in
 *     an image extension (.jpg, .png, .gif, .webp, .tif, .heic, .avif, .bmp, .svg ...);
 *   - or it is not text (text/...) and its decoded bytes start like a format the engine
 *     reads (JPEG, PNG, GIF, WebP, TIFF, HEIF/AVIF): application/octet-stream and
 *     mislabelled types are sniffed.
 * Inside a part, an image is also:
 *   - a data: URI in text/html, application/xhtml+xml or other markup-like text/...
 *     whose type is image/... or whose bytes are an image ("<part>#<n>");
 *   - a "begin MODE NAME" ... "end" uuencoded block in other text whose name or bytes
 *     are an image ("<part>#u<n>").
 */
#ifndef CLIPMOD_MILTER_MIME_H
#define CLIPMOD_MILTER_MIME_H

#include <stddef.h>

#include "containers.h"
#include "mailtext.h"

typedef struct cmm_limits {
    size_t max_parts;       /* MIME parts of every kind, containers included */
    size_t max_depth;       /* nesting of multiparts and message/rfc822 parts */
    size_t max_images;      /* images found (empty ones included) */
    size_t max_image_bytes; /* decoded bytes of one image */
    size_t max_text_bytes;  /* bytes of text kept for the images' context (mailtext.h);
                               0: none kept */
} cmm_limits;

/* Why a part was taken for an image. */
typedef enum cmm_found_by {
    CMM_BY_TYPE,     /* Content-Type image/... */
    CMM_BY_NAME,     /* the file name's extension */
    CMM_BY_CONTENT,  /* the decoded bytes' signature */
    CMM_BY_DATA_URI, /* a data: URI in HTML (by its image/ type or its bytes) */
} cmm_found_by;

/* What stands between an image and the scanner; CMM_OK when nothing does. */
typedef enum cmm_problem {
    CMM_OK,
    CMM_EMPTY,        /* a 0-byte part: nothing to scan */
    CMM_TOO_LARGE,    /* more decoded bytes than max_image_bytes */
    CMM_BAD_ENCODING, /* the transfer encoding is broken (truncated base64 ...) */
} cmm_problem;

typedef struct cmm_image {
    char *part;         /* MIME part number as IMAP numbers them, "2.1"; "2.1#3" for its
                           third data: URI, "2.1#u1" for its first uuencoded block */
    char *filename;     /* as the sender named it (UTF-8, untrusted), or NULL */
    char *content_type; /* declared type, lower case, e.g. "image/png" */
    char *content_id;   /* its Content-ID without <>, as an <img src="cid:..."> names it,
                           or NULL */
    cmm_found_by by;
    cmm_problem problem;
    char *note;          /* one line about the problem, or NULL */
    unsigned char *data; /* decoded bytes when problem is CMM_OK, else NULL */
    size_t len;          /* decoded length (also when too large) */
} cmm_image;

/* A zip archive, office document or PDF: not scanned, its images counted. */
typedef struct cmm_container {
    char *part;     /* as for images */
    char *filename; /* or NULL */
    cmm_count count;
} cmm_container;

/* Archives and documents listed in one message at most; more fail the walk. */
#define CMM_MAX_CONTAINERS 1000

typedef struct cmm_walk {
    cmm_image *images;
    size_t n_images;
    cmm_container *containers;
    size_t n_containers;
    size_t n_parts;
    /*
     * Set when the message cannot be judged as a whole: a limit on parts, depth or
     * images was passed, a message/partial fragment, or no message at all. `why`
     * says which. Images found before that are still listed.
     */
    int failed;
    char why[200];
    cmm_text text; /* Subject, text and <img> alt/title, when max_text_bytes is set */
} cmm_walk;

/* Initialise GMime. Call once from main() before any thread walks a message. */
void cmm_init(void);

/* Release GMime's global state; call last. */
void cmm_shutdown(void);

/*
 * Walk the message of `len` bytes at `msg` (header, blank line, body; CRLF or LF
 * line ends) and fill *out, which the caller frees with cmm_walk_free() whatever
 * the return value. Returns 0, or -1 when memory ran out (then out->failed is set
 * too). A message the limits refuse is not an error: out->failed says so.
 */
int cmm_walk_message(const void *msg, size_t len, const cmm_limits *lim, cmm_walk *out);

/* Free what a walk holds and zero it. Accepts NULL. */
void cmm_walk_free(cmm_walk *w);

/* A file name a mail client shows as a picture (by its extension). */
int cmm_is_image_name(const char *filename);

/* Bytes that start like a format the engine reads (JPEG, PNG, GIF, WebP, TIFF, HEIF). */
int cmm_is_image_bytes(const unsigned char *b, size_t n);

/* "ok", "empty", "too-large", "bad-encoding". */
const char *cmm_problem_name(cmm_problem p);

/* "type", "name", "content", "data-uri". */
const char *cmm_found_by_name(cmm_found_by by);

#endif /* CLIPMOD_MILTER_MIME_H */
