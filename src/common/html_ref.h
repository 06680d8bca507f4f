/*
 * html_ref.h - the lookups behind Python's html.unescape(), shared by the tokenizer
 * (src/lib/tokenizer.c, which unescapes prompts as CLIP's ftfy/html step does) and
 * clipmod-milter's HTML reader (plugins/milter/htmlent.c). Each caller scans its own
 * input (code points or bytes) for "&...": what a reference stands for is decided
 * here, once, over the generated tables of html_entities.h.
 */
#ifndef CM_HTML_REF_H
#define CM_HTML_REF_H

#include <stddef.h>
#include <stdint.h>

/* The longest entity name, ';' included: a name buffer needs this + 2 bytes. */
#define CM_HTML_NAME_MAX 32

/*
 * The code point a numeric reference to `num` (saturated at 0x110000 by the caller)
 * stands for, as html._replace_charref() decides: the HTML5 replacements (&#128; is
 * the euro sign), U+FFFD for surrogates and numbers past U+10FFFF; 0 when the
 * reference is dropped (a few control code points).
 */
uint32_t cm_html_numeric(uint32_t num);

/*
 * The named reference s (the `len` characters after '&': name characters and an
 * optional ';'), whose first `ascii_len` characters are ASCII and not NUL and sit in
 * name[0 .. ascii_len) (name has CM_HTML_NAME_MAX + 2 bytes; it is overwritten). The
 * whole of s when it names an entity, else its longest prefix of 2 to len - 1
 * characters that does (the legacy names without ';': "&ampx" is "&" "x"). Returns how
 * many characters of s the entity takes, cp[] its one or two code points (cp[1] == 0
 * for one); 0 when there is none.
 */
size_t cm_html_named(char *name, size_t ascii_len, size_t len, uint32_t cp[2]);

#endif
