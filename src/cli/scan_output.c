/*
 * scan_output.c - how `clipmod scan` shows a result to a person.
 *
 * Owns the readable forms of a result: the clamscan-like line ("NAME: FLAGGED
 * weapons (score 0.74 >= 0.34) -> flag"), the --explain block under it, and the
 * --table form (one aligned row per input: verdict, action, deciding or closest
 * category, score against threshold, name; a legend once at the end), which is what
 * `make quickstart` shows a new user. Names are untrusted and go through
 * scan_put_name() everywhere. The JSON form is the library's
 * (clipmod_result_to_json); which form is printed, where, is cmd_scan.c's choice.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "scan_output.h"

/*
 * Names are untrusted (uploads are named by their senders): a newline in one must
 * not forge a result line, nor an escape sequence drive the terminal. The readable
 * output shows control characters as escapes; --json carries names exactly.
 */
void scan_put_name(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch == '\r')
            fputs("\\r", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
}

/*
 * The reason's sentence without the input's name, which the library may start it
 * with and the line already shows.
 */
const char *scan_reason_text(const clipmod_result *r)
{
    const char *text = clipmod_result_reason_text(r), *name = clipmod_result_name(r);
    size_t n = strlen(name);
    if (n && !strncmp(text, name, n) && !strncmp(text + n, ": ", 2))
        return text + n + 2;
    return text;
}

/* Why a category flagged: its score, and what the text that came with it did. */
static void print_why(FILE *f, const clipmod_category_score *c)
{
    const char *by = c->flagged_by ? c->flagged_by : "image";
    if (!strcmp(by, "context"))
        fprintf(f, " (text score %.2f: the text alone)", c->context_score);
    else if (!strcmp(by, "image+context"))
        fprintf(f, " (score %.2f >= %.2f: image %.2f raised by the text, %.2f)", c->score,
                c->threshold, c->image_score, c->context_score);
    else
        fprintf(f, " (score %.2f >= %.2f)", c->score, c->threshold);
}

void scan_print_flagged(FILE *f, const clipmod_result *r)
{
    const char *top = clipmod_result_top_category(r);
    size_t n = clipmod_result_category_count(r);
    clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;
    int listed = 0;

    fputs(": FLAGGED", f);
    /* The deciding category first, then the others that reached their threshold. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            if (clipmod_result_category(r, i, &c) || !c.flagged)
                continue;
            int is_top = top && !strcmp(c.id, top);
            if (is_top != (pass == 0))
                continue;
            fprintf(f, "%s %s", listed ? "," : "", c.id);
            print_why(f, &c);
            listed++;
        }
    }
    fprintf(f, " -> %s\n", clipmod_action_name(clipmod_result_action(r)));
}

/*
 * --explain on a terminal: every category with its numbers, and its best prompts,
 * which the API exposes only in the JSON form of the result.
 */
void scan_print_explain(const clipmod_result *r)
{
    size_t n = clipmod_result_category_count(r);
    char *json = clipmod_result_to_json(r, 0);
    json_t *root = json ? json_loads(json, 0, NULL) : NULL;
    json_t *cats = json_object_get(root, "categories");
    clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;

    for (size_t i = 0; i < n; i++) {
        if (clipmod_result_category(r, i, &c))
            continue;
        /* The sign says whether the score reached the threshold (a hit), even for a
         * watched "allow" category, which hits without flagging. */
        const int hit = c.margin >= 0;
        printf("    %-16s score %.3f %s %.3f (%+.3f)  cosine %.3f  %s%s\n", c.id, c.score,
               hit ? ">=" : "< ", c.threshold, c.margin, c.cosine, clipmod_action_name(c.action),
               c.flagged ? "  FLAGGED"
               : hit     ? "  hit (watched)"
                         : "");
        if (c.context_score >= 0) {
            printf("        text %.3f (window \"", c.context_score);
            scan_put_name(stdout, c.context_window ? c.context_window : "");
            printf("\", nearest \"");
            scan_put_name(stdout, c.context_prompt ? c.context_prompt : "");
            printf("\"); image score %.3f%s%s\n", c.image_score,
                   c.flagged_by ? ", flagged by " : "", c.flagged_by ? c.flagged_by : "");
        }
        json_t *prompts = json_object_get(json_array_get(cats, i), "top_prompts");
        size_t k;
        json_t *p;
        json_array_foreach(prompts, k, p)
        {
            const char *text = json_string_value(json_object_get(p, "prompt"));
            const char *kind = json_string_value(json_object_get(p, "kind"));
            printf("        %5.1f%%  cos %.3f  %-8s \"",
                   100.0 * json_number_value(json_object_get(p, "probability")),
                   json_number_value(json_object_get(p, "cosine")), kind ? kind : "");
            scan_put_name(stdout, text ? text : "");
            fputs("\"\n", stdout);
        }
    }
    json_t *notes = json_object_get(root, "notes");
    size_t k;
    json_t *note;
    json_array_foreach(notes, k, note)
    {
        printf("    note (%s): ", json_string_value(json_object_get(note, "by")));
        scan_put_name(stdout, json_string_value(json_object_get(note, "text")));
        fputc('\n', stdout);
    }
    json_decref(root);
    clipmod_free(json);
}

/* ------------------------------------------------------------------------ */
/* --table                                                                  */
/* ------------------------------------------------------------------------ */

#define TABLE_ROW "%-9s  %-10s  %-14s  %-14s  "

/*
 * The category a row shows: the deciding one of a flagged input, else the one
 * closest to (or furthest past, for a watched `allow` category) its threshold.
 * *others counts the further categories that flagged. Returns 0, or -1 when the
 * policy scored none.
 */
static int table_category(const clipmod_result *r, clipmod_category_score *out, size_t *others)
{
    const char *top = clipmod_result_top_category(r);
    size_t n = clipmod_result_category_count(r);
    clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;
    int found = 0, have_top = 0;

    *others = 0;
    for (size_t i = 0; i < n; i++) {
        if (clipmod_result_category(r, i, &c))
            continue;
        if (c.flagged && top && !strcmp(c.id, top)) {
            *out = c;
            found = have_top = 1;
            continue;
        }
        if (c.flagged)
            (*others)++;
        if (!have_top && (!found || c.margin > out->margin)) {
            *out = c;
            found = 1;
        }
    }
    return found ? 0 : -1;
}

static void table_header(FILE *f)
{
    fprintf(f, TABLE_ROW "%s\n", "VERDICT", "ACTION", "CATEGORY", "SCORE", "INPUT");
}

void scan_table_row(FILE *f, scan_table *t, const clipmod_result *r)
{
    clipmod_state state = clipmod_result_state(r);
    clipmod_category_score c = CLIPMOD_CATEGORY_SCORE_INIT;
    char cat[64] = "-", score[32] = "-";
    size_t others = 0;

    if (!t->rows++)
        table_header(f);
    if (state == CLIPMOD_STATE_UNSCANNED) {
        fprintf(f, TABLE_ROW, "unscanned", "-", "-", "-");
        scan_put_name(f, clipmod_result_name(r));
        fprintf(f, " (%s: ", clipmod_reason_name(clipmod_result_reason(r)));
        scan_put_name(f, scan_reason_text(r));
        fputs(")\n", f);
        return;
    }
    if (!table_category(r, &c, &others)) {
        /* Policy ids are the operator's words; a long one widens its row, never cut. */
        snprintf(cat, sizeof cat, others ? "%s +%zu" : "%s", c.id, others);
        int by_text = c.flagged && c.flagged_by && strcmp(c.flagged_by, "image");
        snprintf(score, sizeof score, "%.2f %s %.2f%s", c.score, c.margin >= 0 ? ">=" : "< ",
                 c.threshold, by_text ? " *" : "");
        t->by_text |= by_text;
        t->others |= others > 0;
    }
    fprintf(f, TABLE_ROW, state == CLIPMOD_STATE_FLAGGED ? "FLAGGED" : "clean",
            state == CLIPMOD_STATE_FLAGGED ? clipmod_action_name(clipmod_result_action(r)) : "-",
            cat, score);
    scan_put_name(f, clipmod_result_name(r));
    fputc('\n', f);
}

void scan_table_legend(FILE *f, const scan_table *t)
{
    if (!t->rows)
        return;
    fputs("\nSCORE: how much of the image's likeness to the category's prompts, contrast\n"
          "  prompts and neutral prompts goes to its own prompts (0 to 1), against the\n"
          "  policy's threshold for it. An input is FLAGGED when a score reaches its\n"
          "  threshold; ACTION is what the policy then does. A clean input shows the\n"
          "  category that came closest.\n",
          f);
    if (t->others)
        fputs("+N: N more categories flagged the same input.\n", f);
    if (t->by_text)
        fputs("*: the text that came with the input raised the score (--explain shows it).\n", f);
    fputs("Every category and prompt: --explain; for programs: --json.\n", f);
}
