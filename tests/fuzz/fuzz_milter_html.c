/*
 * fuzz_milter_html.c - clipmod-milter's HTML reader (plugins/milter/html_text.c, with
 * htmlent.c's character references): the text and the cid: images' alt and title
 * that become the context of a mail's images.
 *
 * The input is one HTML part, read twice: with the milter's limits and with tiny
 * ones (so the caps are reached often). Beyond memory safety the target checks what
 * the reader promises, and aborts when a promise is broken:
 *   - the text is NUL-terminated, as long as it says, within max_text, and holds no
 *     NUL byte; it neither starts nor ends with white space it made;
 *   - at most max_imgs images, each with a cid; alt and title within max_attr.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "html_text.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_attr(const char *s, const cmh_limits *lim)
{
    if (s)
        check(strlen(s) <= lim->max_attr);
}

static void read_once(const uint8_t *data, size_t size, const cmh_limits *lim)
{
    cmh_doc d;
    if (cmh_read(data, size, lim, &d) == 0) {
        check(d.text != NULL && strlen(d.text) == d.len && d.len <= lim->max_text);
        check(!d.len || (d.text[0] != ' ' && d.text[0] != '\n'));
        check(!d.len || (d.text[d.len - 1] != ' ' && d.text[d.len - 1] != '\n'));
        check(d.n_imgs <= lim->max_imgs);
        for (size_t i = 0; i < d.n_imgs; i++) {
            check(d.imgs[i].cid != NULL);
            check_attr(d.imgs[i].alt, lim);
            check_attr(d.imgs[i].title, lim);
        }
    }
    cmh_doc_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const cmh_limits milter = {.max_text = 16384, .max_imgs = 256, .max_attr = 1024};
    static const cmh_limits tiny = {.max_text = 7, .max_imgs = 1, .max_attr = 3};
    read_once(data, size, &milter);
    read_once(data, size, &tiny);
    return 0;
}
