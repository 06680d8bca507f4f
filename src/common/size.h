/*
 * size.h - sizes and durations as people write them in configs and options.
 *
 * Owns the one syntax shared by clipmod, clipmodd and clipmod-milter:
 *   sizes:     "1048576" (bytes), "512k"/"512K"/"512KiB", "25M"/"25MiB", "1G"/"1GiB",
 *              "2T"; the multiples are BINARY (k = 1024, M = 1024^2, ...), as ClamAV's
 *              MaxFileSize. A trailing "B" is accepted ("25MB" = 25 MiB). No fractions,
 *              no sign, no spaces inside.
 *   durations: "500ms", "10s", "5m", "2h", "1d"; a bare number is seconds.
 * Every parser checks overflow and writes a one-line reason into err (errlen bytes,
 * may be NULL) when it returns -1. Thread-safe, no allocation.
 */
#ifndef CM_SIZE_H
#define CM_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Parse a size into *out bytes. 0 on success, -1 with err filled. */
int cm_parse_size(const char *s, uint64_t *out, char *err, size_t errlen);

/* Parse a duration into *out_ms milliseconds. 0 on success, -1 with err filled. */
int cm_parse_duration_ms(const char *s, uint64_t *out_ms, char *err, size_t errlen);

/*
 * Format bytes back the way a person would write them in a config: the largest
 * binary unit that divides the value exactly ("25M", "512k", "1000"). Returns out.
 * out needs at most 24 bytes.
 */
char *cm_format_size(uint64_t bytes, char *out, size_t outlen);

#endif
