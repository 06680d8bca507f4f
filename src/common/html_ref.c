/*
 * html_ref.c - what an HTML character reference stands for (see html_ref.h): the
 * only user of the generated tables of html_entities.h, so they exist once in a
 * program.
 */
#include <stdlib.h>
#include <string.h>

#include "html_entities.h"
#include "html_ref.h"

static int entity_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const cm_html_entity *)elem)->name);
}

static const cm_html_entity *entity_find(const char *name)
{
    return bsearch(name, cm_html5_entities, CM_HTML5_ENTITY_COUNT, sizeof cm_html5_entities[0],
                   entity_cmp);
}

static int charref_cmp(const void *key, const void *elem)
{
    uint32_t k = *(const uint32_t *)key, e = ((const cm_html_charref *)elem)->from;
    return k < e ? -1 : k > e;
}

static int u32_cmp(const void *key, const void *elem)
{
    uint32_t k = *(const uint32_t *)key, e = *(const uint32_t *)elem;
    return k < e ? -1 : k > e;
}

uint32_t cm_html_numeric(uint32_t num)
{
    const size_t n_fix = sizeof cm_html_invalid_charrefs / sizeof cm_html_invalid_charrefs[0];
    const size_t n_drop = sizeof cm_html_invalid_codepoints / sizeof cm_html_invalid_codepoints[0];
    const cm_html_charref *r = bsearch(&num, cm_html_invalid_charrefs, n_fix,
                                       sizeof cm_html_invalid_charrefs[0], charref_cmp);
    if (r)
        return r->to;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff)
        return 0xfffd;
    if (bsearch(&num, cm_html_invalid_codepoints, n_drop, sizeof(uint32_t), u32_cmp))
        return 0;
    return num;
}

size_t cm_html_named(char *name, size_t ascii_len, size_t len, uint32_t cp[2])
{
    const cm_html_entity *hit = NULL;
    size_t x = ascii_len, used = len;

    cp[0] = cp[1] = 0;
    if (!len || ascii_len > len || len > CM_HTML_NAME_MAX + 1)
        return 0;
    /* Only an ASCII prefix can name an entity (NUL would end the C string). */
    if (ascii_len == len) {
        name[x] = '\0';
        hit = entity_find(name);
    }
    if (!hit) {
        /* Longest prefix s[:x], len(s)-1 >= x >= 2 (the legacy no-';' names). */
        if (x > len - 1)
            x = len - 1;
        for (; x >= 2; x--) {
            name[x] = '\0';
            hit = entity_find(name);
            if (hit) {
                used = x;
                break;
            }
        }
    }
    if (!hit)
        return 0;
    cp[0] = hit->cp[0];
    cp[1] = hit->cp[1];
    return used;
}
