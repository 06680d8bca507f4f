/*
 * fuzz_vcache_value.c - a verdict cache value read back from Redis (src/common/vcache.c).
 *
 * A value in a shared Redis is untrusted: anyone who can write there can write it.
 * The input goes twice through cm_vcache_parse() under a fixed key: once as it is
 * (the frame's checks: magic, key, digest), and once framed anew with
 * cm_vcache_frame() around its record (the bytes after a frame's header if it has
 * one, else all of it), so that mutations reach clipmod_result_decode() past the
 * digest. Beyond memory safety and leaks the target aborts when a promise breaks:
 *   - a value accepted is a result named as asked whose accessors answer (states,
 *     actions and reasons in range, strings set, the top category one of its
 *     categories) and whose clipmod_result_to_json() works, plain and explained;
 *   - its re-encoding decodes again, to the same JSON, and re-encodes to the same
 *     bytes (a record read back is a fixed point of the codec);
 *   - the same value under another key is refused.
 * Seeds are framed values of scan results of the PNG files in tests/data/demo-scenes/ with the demo
 * model (key bytes 0, 1, ..., 31), and damaged, truncated and misplaced ones.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clipmod/clipmod.h"
#include "fuzz.h"
#include "vcache.h"

#define MAGIC "clipmod-vcache/1 "
#define HEAD  (sizeof MAGIC - 1 + 64 + 1 + 64 + 1)
#define NAME  "fuzz"
/* Records past this are not ours (vcache.c refuses them unread): not decoded directly. */
#define LARGEST (1u << 20)

static void check(int ok)
{
    if (!ok)
        abort();
}

static cm_vkey key_of(unsigned char first)
{
    cm_vkey k;
    for (size_t i = 0; i < CM_VKEY_BYTES; i++)
        k.b[i] = (unsigned char)(first + i);
    return k;
}

static int one_of(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return 1;
    return 0;
}

/* Category i's score through the accessor; the top category's id when it is it. */
static void check_category(const clipmod_result *r, size_t i, const char *top, int *top_seen)
{
    static const char *const by[] = {"prompts", "head", "mean"};
    static const char *const fby[] = {"image", "image+context", "context"};
    clipmod_category_score s = CLIPMOD_CATEGORY_SCORE_INIT;
    check(clipmod_result_category(r, i, &s) == CLIPMOD_OK);
    check(s.id != NULL);
    check((int)s.action >= 0 && s.action <= CLIPMOD_ACTION_REJECT);
    check(!s.score_by || one_of(s.score_by, by, 3));
    check(!s.flagged_by || one_of(s.flagged_by, fby, 3));
    if (top && !strcmp(top, s.id))
        *top_seen = 1;
}

static void check_accessors(const clipmod_result *r)
{
    clipmod_state st = clipmod_result_state(r);
    check((int)st >= 0 && st <= CLIPMOD_STATE_UNSCANNED && clipmod_state_name(st));
    check(clipmod_action_name(clipmod_result_action(r)) != NULL);
    check(clipmod_reason_name(clipmod_result_reason(r)) != NULL);
    check(!strcmp(clipmod_result_name(r), NAME));
    check(clipmod_result_reason_text(r) && clipmod_result_message(r));
    const char *top = clipmod_result_top_category(r);
    int top_seen = 0;
    size_t n = clipmod_result_category_count(r);
    for (size_t i = 0; i < n; i++)
        check_category(r, i, top, &top_seen);
    clipmod_category_score past = CLIPMOD_CATEGORY_SCORE_INIT;
    check(clipmod_result_category(r, n, &past) == CLIPMOD_E_INVALID_ARG);
    check(!top || top_seen);
    clipmod_context_info x = CLIPMOD_CONTEXT_INFO_INIT;
    check(clipmod_result_context(r, &x) == CLIPMOD_OK && x.cleaned <= 7);
}

/* Both JSON forms of r, joined; NULL never (aborts). */
static char *json_of(const clipmod_result *r)
{
    char *plain = clipmod_result_to_json(r, 0), *explained = clipmod_result_to_json(r, 1);
    check(plain && explained);
    size_t a = strlen(plain), b = strlen(explained);
    char *both = malloc(a + b + 2);
    check(both != NULL);
    memcpy(both, plain, a);
    both[a] = '\n';
    memcpy(both + a + 1, explained, b + 1);
    clipmod_free(plain);
    clipmod_free(explained);
    return both;
}

/* The round trip: r's record decodes to the same JSON and re-encodes to the same bytes. */
static void check_round_trip(const clipmod_result *r)
{
    size_t len = 0, len2 = 0;
    char *rec = clipmod_result_encode(r, &len);
    check(rec != NULL);
    clipmod_result *back = NULL;
    check(clipmod_result_decode(rec, len, NAME, &back, NULL) == CLIPMOD_OK && back);
    char *j1 = json_of(r), *j2 = json_of(back);
    check(!strcmp(j1, j2));
    char *rec2 = clipmod_result_encode(back, &len2);
    check(rec2 && len2 == len && !memcmp(rec, rec2, len));
    free(j1);
    free(j2);
    clipmod_free(rec);
    clipmod_free(rec2);
    clipmod_result_free(back);
}

/* Parse value under key: an accepted value must keep every promise above. */
static int parse_and_check(const cm_vkey *key, const char *value, size_t len)
{
    clipmod_result *r = cm_vcache_parse(key, value, len, NAME);
    if (!r)
        return 0;
    check_accessors(r);
    check_round_trip(r);
    clipmod_result_free(r);
    return 1;
}

/* The record framed anew under key: accepted exactly when the decoder accepts it. */
static void reframe(const cm_vkey *key, const char *rec, size_t len)
{
    size_t vlen = 0;
    char *v = cm_vcache_frame(key, rec, len, &vlen);
    check(v != NULL && vlen == HEAD + len);
    int ok = parse_and_check(key, v, vlen);
    clipmod_result *r = NULL;
    if (len <= LARGEST) {
        clipmod_error e = clipmod_result_decode(rec, len, NAME, &r, NULL);
        check((e == CLIPMOD_OK) == ok && (e == CLIPMOD_OK || e == CLIPMOD_E_INVALID_ARG));
        clipmod_result_free(r);
    }
    if (ok) {
        cm_vkey other = key_of(1);
        check(cm_vcache_parse(&other, v, vlen, NAME) == NULL);
    }
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const cm_vkey key = key_of(0);
    const char *value = (const char *)data;
    parse_and_check(&key, value, size);
    if (size >= HEAD && !memcmp(value, MAGIC, sizeof MAGIC - 1))
        reframe(&key, value + HEAD, size - HEAD);
    else
        reframe(&key, value, size);
    return 0;
}
