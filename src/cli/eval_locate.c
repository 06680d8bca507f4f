/*
 * eval_locate.c - where each category of one policy file is written, for --apply.
 *
 * Owns apply_locate(): one libyaml pass over the file's text that finds the mappings
 * of the top-level `categories` list and, for each, its id, whether it is a flow
 * mapping ({id: ..., ...}), the column of its keys, where its id and its last value
 * end and where its threshold's value starts. Offsets are bytes; libyaml counts
 * columns in characters, so they are converted here. The policy parser (policy.c)
 * stays the judge of validity: this only needs the positions of a file it accepted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "eval_apply.h"

size_t apply_offset(const unsigned char *buf, size_t len, size_t line, size_t col)
{
    size_t i = 0;
    for (size_t l = 0; l < line && i < len; i++)
        if (buf[i] == '\n')
            l++;
    for (size_t c = 0; c < col && i < len; c++) {
        i++;
        while (i < len && (buf[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

static size_t mark_off(const unsigned char *buf, size_t len, yaml_mark_t m)
{
    return apply_offset(buf, len, m.line, m.column);
}

typedef struct walker {
    const unsigned char *buf;
    size_t len;
    int depth;      /* collections open */
    int top_key;    /* at depth 1: the next scalar is a key */
    int want_cats;  /* the last top-level key was `categories` */
    int cats_depth; /* depth of the categories sequence (0: not in it) */
    int item_key;   /* inside an item mapping: the next node is a key */
    char key[16];   /* the item's current key */
    apply_site *v;
    size_t n, cap;
    int nomem;
} walker;

static apply_site *new_site(walker *w, const yaml_event_t *ev)
{
    if (w->n == w->cap) {
        const size_t cap = w->cap ? 2 * w->cap : 16;
        apply_site *g = realloc(w->v, cap * sizeof *g);
        if (!g) {
            w->nomem = 1;
            return NULL;
        }
        w->v = g;
        w->cap = cap;
    }
    apply_site *s = &w->v[w->n++];
    memset(s, 0, sizeof *s);
    s->flow = ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
    s->threshold_at = -1;
    return s;
}

/* A scalar inside a category's mapping (depth cats_depth + 1). */
static void item_scalar(walker *w, const yaml_event_t *ev)
{
    apply_site *s = &w->v[w->n - 1];
    const char *text = (const char *)ev->data.scalar.value;
    if (w->item_key) {
        snprintf(w->key, sizeof w->key, "%s", strlen(text) < sizeof w->key ? text : "");
        if (!strcmp(w->key, "id"))
            s->key_column = ev->start_mark.column;
        w->item_key = 0;
        return;
    }
    s->last_end = mark_off(w->buf, w->len, ev->end_mark);
    if (!strcmp(w->key, "id") && !s->id) {
        s->id = strdup(text);
        s->id_end = s->last_end;
        if (!s->id)
            w->nomem = 1;
    } else if (!strcmp(w->key, "threshold")) {
        s->threshold_at = (long)mark_off(w->buf, w->len, ev->start_mark);
    }
    w->item_key = 1;
}

static void on_event(walker *w, const yaml_event_t *ev)
{
    const int in_item = w->cats_depth > 0 && w->n && w->depth == w->cats_depth + 1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (w->depth == 1) {
            w->want_cats = w->top_key && !strcmp((const char *)ev->data.scalar.value, "categories");
            w->top_key = !w->top_key;
        } else if (in_item) {
            item_scalar(w, ev);
        }
        break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        if (w->depth == 1 && w->want_cats && ev->type == YAML_SEQUENCE_START_EVENT)
            w->cats_depth = 2;
        else if (w->depth == 1)
            w->cats_depth = 0;
        if (w->cats_depth && w->depth == w->cats_depth && ev->type == YAML_MAPPING_START_EVENT) {
            new_site(w, ev);
            w->item_key = 1;
        }
        w->depth++;
        if (w->depth == 1)
            w->top_key = 1;
        break;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        w->depth--;
        if (w->depth == 1) {
            w->top_key = 1;
            w->want_cats = 0;
            if (w->cats_depth == 2 && ev->type == YAML_SEQUENCE_END_EVENT)
                w->cats_depth = -1; /* done: a later `categories` would be a duplicate */
        } else if (w->cats_depth > 0 && w->n && w->depth == w->cats_depth + 1) {
            /* a list or mapping value of the item ended */
            w->v[w->n - 1].last_end = mark_off(w->buf, w->len, ev->end_mark);
            w->item_key = 1;
        }
        break;
    default:
        break;
    }
}

int apply_locate(const unsigned char *buf, size_t len, apply_site **out, size_t *n)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    walker w;
    int rc = -1;

    memset(&w, 0, sizeof w);
    w.buf = buf;
    w.len = len;
    *out = NULL;
    *n = 0;
    if (!yaml_parser_initialize(&parser))
        return -1;
    yaml_parser_set_input_string(&parser, buf, len);
    for (;;) {
        if (!yaml_parser_parse(&parser, &ev))
            goto out;
        const int end = ev.type == YAML_STREAM_END_EVENT;
        on_event(&w, &ev);
        yaml_event_delete(&ev);
        if (w.nomem)
            goto out;
        if (end)
            break;
    }
    rc = 0;
out:
    yaml_parser_delete(&parser);
    if (rc) {
        apply_sites_free(w.v, w.n);
        return -1;
    }
    *out = w.v;
    *n = w.n;
    return 0;
}

void apply_sites_free(apply_site *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].id);
    free(v);
}
