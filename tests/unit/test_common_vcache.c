/*
 * test_common_vcache.c - the verdict cache's in-process tier and keys (src/common/vcache.c).
 *
 * The LRU: its byte cap is never exceeded (stats after every store), the least
 * recently used entry goes first and a lookup refreshes an entry, a key stored again
 * is replaced (one entry, the new verdict), a record larger than the cap is not
 * stored, unscanned verdicts are not stored, and four threads doing random stores and
 * lookups for a second find only the verdicts stored under their keys (run under the
 * sanitizer build too). Results are records decoded with clipmod_result_decode, their
 * size set by their message. Keys are made as clipmodd makes them (src/daemon/dcache.c:
 * the bytes, the engine's policy fingerprint, the demo model, the context text and
 * the settings' salt): each of those changes the key, and a file and the same bytes
 * in memory key alike. The salt itself (src/common/vcache_key.c) is the documented
 * text whatever order the settings came in, the last value of a setting wins, plugins
 * keep their order, and a setting out of range is ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vcache.h"
#include "vcache_key.h"

#define OVERHEAD 128 /* vcache.c's ENTRY_OVERHEAD: what an entry weighs beside its record */
#define THREADS  4
#define NKEYS    64

static const char *srcdir(void)
{
    const char *d = getenv("top_srcdir");
    return d && *d ? d : CM_TEST_TOP_SRCDIR;
}

static cm_vkey key_n(unsigned n)
{
    cm_vkey k;
    memset(&k, 0, sizeof k);
    memcpy(k.b, &n, sizeof n);
    k.b[CM_VKEY_BYTES - 1] = 0x5a;
    return k;
}

/* A result in `state` whose message is `len` copies of `c`. */
static clipmod_result *result_of(int state, char c, size_t len)
{
    static const char fmt[] =
        "{\"format\":\"clipmod-result/1\",\"state\":%d,\"action\":0,\"reason\":0,"
        "\"reason_text\":\"\",\"top\":-1,\"policy\":\"p\",\"model\":\"m\",\"message\":\"%s\","
        "\"demo\":true,\"top_prompts\":3,\"image\":[8,8,1,1],\"elapsed_ms\":1.5,"
        "\"ctx\":[false,0,0,0,0,false,0],\"cats\":[],\"notes\":[]}";
    char *msg = malloc(len + 1), *rec = malloc(sizeof fmt + len + 16);
    assert_true(msg && rec);
    memset(msg, c, len);
    msg[len] = '\0';
    int n = snprintf(rec, sizeof fmt + len + 16, fmt, state, msg);
    clipmod_result *r = NULL;
    char err[CLIPMOD_ERROR_SIZE] = "";
    if (clipmod_result_decode(rec, (size_t)n, "t", &r, err))
        fail_msg("decode: %s", err);
    free(msg);
    free(rec);
    return r;
}

/* What a stored result weighs in the LRU: its record plus the overhead. */
static size_t weight_of(const clipmod_result *r)
{
    size_t len = 0;
    char *rec = clipmod_result_encode(r, &len);
    assert_non_null(rec);
    clipmod_free(rec);
    return len + OVERHEAD;
}

static cm_vcache *lru(uint64_t cap)
{
    cm_vcache_opts o = {cap, NULL, 0, 0};
    char err[256] = "";
    cm_vcache *c = cm_vcache_new(&o, err, sizeof err);
    if (!c)
        fail_msg("cm_vcache_new: %s", err);
    return c;
}

static cm_vcache_stats stats(cm_vcache *c)
{
    cm_vcache_stats s;
    cm_vcache_stats_get(c, &s);
    return s;
}

/* Store a message of `len` copies of `c` under key n; the cap holds afterwards. */
static void put(cm_vcache *c, unsigned n, char ch, size_t len, uint64_t cap)
{
    cm_vkey k = key_n(n);
    clipmod_result *r = result_of(CLIPMOD_STATE_CLEAN, ch, len);
    cm_vcache_put(c, &k, r);
    clipmod_result_free(r);
    assert_true(stats(c).bytes <= cap);
}

/* The message stored under key n, or NULL on a miss (the caller frees). */
static char *get(cm_vcache *c, unsigned n)
{
    cm_vkey k = key_n(n);
    clipmod_result *r = cm_vcache_get(c, &k, "got");
    if (!r)
        return NULL;
    assert_string_equal(clipmod_result_name(r), "got");
    char *m = strdup(clipmod_result_message(r));
    clipmod_result_free(r);
    return m;
}

static int has(cm_vcache *c, unsigned n)
{
    char *m = get(c, n);
    free(m);
    return m != NULL;
}

static void byte_cap(void **state)
{
    (void)state;
    clipmod_result *one = result_of(CLIPMOD_STATE_CLEAN, 'a', 100);
    const size_t w = weight_of(one);
    clipmod_result_free(one);
    const uint64_t cap = 3 * w + w / 2; /* room for three, never four */
    cm_vcache *c = lru(cap);
    for (unsigned i = 0; i < 20; i++)
        put(c, i, 'a', 100, cap);
    cm_vcache_stats s = stats(c);
    assert_int_equal(s.entries, 3);
    assert_int_equal(s.bytes, 3 * w);
    assert_int_equal(s.evictions, 17);
    assert_int_equal(s.stores, 20);
    /* Mixed sizes: still never over the cap. */
    for (unsigned i = 0; i < 50; i++)
        put(c, 100 + i, 'b', (i * 37) % 400, cap);
    cm_vcache_free(c);
}

static void eviction_order(void **state)
{
    (void)state;
    clipmod_result *one = result_of(CLIPMOD_STATE_CLEAN, 'a', 50);
    const size_t w = weight_of(one);
    clipmod_result_free(one);
    cm_vcache *c = lru(4 * w);
    for (unsigned i = 0; i < 4; i++)
        put(c, i, 'a', 50, 4 * w);
    assert_int_equal(stats(c).entries, 4);
    assert_true(has(c, 0)); /* 0 is now the most recent: 1 is the oldest */
    put(c, 4, 'a', 50, 4 * w);
    assert_false(has(c, 1));
    assert_true(has(c, 0) && has(c, 2) && has(c, 3) && has(c, 4));
    /* Order now, oldest first: 0 2 3 4. Two more drop 0 and 2. */
    put(c, 5, 'a', 50, 4 * w);
    put(c, 6, 'a', 50, 4 * w);
    assert_false(has(c, 0));
    assert_false(has(c, 2));
    assert_true(has(c, 3) && has(c, 4) && has(c, 5) && has(c, 6));
    assert_int_equal(stats(c).evictions, 3);
    cm_vcache_free(c);
}

static void replace_key(void **state)
{
    (void)state;
    cm_vcache *c = lru(1 << 20);
    put(c, 7, 'a', 10, 1 << 20);
    put(c, 7, 'b', 300, 1 << 20);
    cm_vcache_stats s = stats(c);
    assert_int_equal(s.entries, 1);
    clipmod_result *b = result_of(CLIPMOD_STATE_CLEAN, 'b', 300);
    assert_int_equal(s.bytes, weight_of(b));
    clipmod_result_free(b);
    char *m = get(c, 7);
    assert_non_null(m);
    assert_int_equal(strlen(m), 300);
    assert_int_equal(m[0], 'b');
    free(m);
    put(c, 7, 'c', 5, 1 << 20);
    m = get(c, 7);
    assert_string_equal(m, "ccccc");
    free(m);
    assert_int_equal(stats(c).entries, 1);
    assert_int_equal(stats(c).evictions, 0);
    cm_vcache_free(c);
}

static void too_large(void **state)
{
    (void)state;
    clipmod_result *big = result_of(CLIPMOD_STATE_FLAGGED, 'z', 2000);
    const size_t w = weight_of(big);
    cm_vcache *c = lru(w - 1);
    put(c, 1, 'a', 10, w - 1);
    cm_vkey k = key_n(2);
    cm_vcache_put(c, &k, big);
    assert_false(has(c, 2));
    assert_true(has(c, 1)); /* nothing was evicted for it */
    assert_int_equal(stats(c).entries, 1);
    assert_int_equal(stats(c).evictions, 0);
    cm_vcache_free(c);
    c = lru(w); /* exactly its weight: it fits */
    cm_vcache_put(c, &k, big);
    assert_true(has(c, 2));
    assert_int_equal(stats(c).bytes, w);
    cm_vcache_free(c);
    clipmod_result_free(big);
}

static void unscanned_not_stored(void **state)
{
    (void)state;
    cm_vcache *c = lru(1 << 20);
    cm_vkey k = key_n(3);
    clipmod_result *r = result_of(CLIPMOD_STATE_UNSCANNED, 'u', 4);
    cm_vcache_put(c, &k, r);
    clipmod_result_free(r);
    assert_false(has(c, 3));
    cm_vcache_stats s = stats(c);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.stores, 0);
    assert_int_equal(s.misses, 1);
    cm_vcache_free(c);
}

typedef struct worker {
    cm_vcache *c;
    unsigned seed;
    uint64_t gets, bad;
} worker;

/* Key n always holds a message of n % 97 + 1 copies of 'a' + n % 26: a hit is checkable. */
static void *work(void *arg)
{
    worker *w = arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 64; i++) {
            unsigned n = (unsigned)rand_r(&w->seed) % NKEYS;
            char ch = (char)('a' + n % 26);
            size_t len = n % 97 + 1;
            cm_vkey k = key_n(n);
            if (rand_r(&w->seed) % 2) {
                clipmod_result *r = result_of(CLIPMOD_STATE_FLAGGED, ch, len);
                cm_vcache_put(w->c, &k, r);
                clipmod_result_free(r);
                continue;
            }
            w->gets++;
            clipmod_result *r = cm_vcache_get(w->c, &k, "t");
            const char *m = r ? clipmod_result_message(r) : NULL;
            if (m && (strlen(m) != len || m[0] != ch || m[len - 1] != ch))
                w->bad++;
            clipmod_result_free(r);
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 1000000000L);
    return NULL;
}

static void threads(void **state)
{
    (void)state;
    const uint64_t cap = 8 * 1024; /* a few dozen entries: evictions all the time */
    cm_vcache *c = lru(cap);
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){c, 1234u + (unsigned)i, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    uint64_t gets = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
        gets += w[i].gets;
    }
    cm_vcache_stats s = stats(c);
    assert_true(gets > 0);
    assert_int_equal(s.hits + s.misses, gets);
    assert_int_equal(s.memory_hits, s.hits);
    assert_true(s.hits > 0 && s.evictions > 0);
    assert_true(s.bytes <= cap && s.entries > 0 && s.entries <= NKEYS);
    cm_vcache_free(c);
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

static clipmod_model *model;
static char tmp[64];

static clipmod_engine *engine_with(const char *threshold)
{
    char path[128];
    snprintf(path, sizeof path, "%s/policy-%s.yaml", tmp, threshold);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "version: 1\nname: vcache test\nneutral: [grinning face]\ncategories:\n"
            "  - id: weapons\n    prompts: [pistol]\n    threshold: %s\n    action: flag\n",
            threshold);
    assert_int_equal(fclose(f), 0);
    clipmod_engine *e = NULL;
    char *problems = NULL;
    assert_int_equal(clipmod_engine_new(model, &e), CLIPMOD_OK);
    if (clipmod_engine_compile(e, path, &problems))
        fail_msg("compile: %s", problems ? problems : "?");
    clipmod_free(problems);
    return e;
}

static cm_vkey key_of(const void *data, size_t len, int fd, const clipmod_engine *e,
                      const char *context, const char *salt)
{
    cm_vkey k;
    assert_int_equal(
        cm_vcache_key(&k, data, len, fd, e, model, context, context ? strlen(context) : 0, salt),
        0);
    return k;
}

static int same(cm_vkey a, cm_vkey b)
{
    return !memcmp(a.b, b.b, sizeof a.b);
}

static void keys(void **state)
{
    (void)state;
    static const char img[] = "\x89PNG not really an image, bytes are bytes";
    const char *salt = "max-file-bytes=1000\ncontext=1\n";
    clipmod_engine *e1 = engine_with("0.5"), *e2 = engine_with("0.6");
    assert_string_not_equal(clipmod_engine_policy_fingerprint(e1),
                            clipmod_engine_policy_fingerprint(e2));
    cm_vkey k = key_of(img, sizeof img, -1, e1, "a caption", salt);
    assert_true(same(k, key_of(img, sizeof img, -1, e1, "a caption", salt)));
    assert_false(same(k, key_of(img, sizeof img, -1, e1, "another caption", salt)));
    assert_false(same(k, key_of(img, sizeof img, -1, e1, "a caption ", salt)));
    assert_false(same(k, key_of(img, sizeof img, -1, e1, NULL, salt)));
    assert_false(same(k, key_of(img, sizeof img, -1, e2, "a caption", salt)));
    assert_false(same(k, key_of(img, sizeof img, -1, e1, "a caption", "context=1\n")));
    assert_false(same(k, key_of(img, sizeof img - 1, -1, e1, "a caption", salt)));
    /* No context and an empty one judge alike; so do a NULL salt and "". */
    assert_true(same(key_of(img, sizeof img, -1, e1, NULL, salt),
                     key_of(img, sizeof img, -1, e1, "", salt)));
    assert_true(same(key_of(img, sizeof img, -1, e1, NULL, NULL),
                     key_of(img, sizeof img, -1, e1, NULL, "")));
    /* A file keys as its bytes do, wherever its offset is. */
    char path[128];
    snprintf(path, sizeof path, "%s/img", tmp);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, sizeof img), (ssize_t)sizeof img);
    assert_true(same(k, key_of(NULL, 0, fd, e1, "a caption", salt)));
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)sizeof img);
    close(fd);
    char hex[2 * CM_VKEY_BYTES + 1];
    cm_vkey_hex(&k, hex);
    assert_int_equal(strlen(hex), 64);
    assert_int_equal(strspn(hex, "0123456789abcdef"), 64);
    clipmod_engine_free(e1);
    clipmod_engine_free(e2);
}

static int setup(void **state)
{
    (void)state;
    char dir[1024], errbuf[CLIPMOD_ERROR_SIZE];
    snprintf(tmp, sizeof tmp, "/tmp/test_vcache.XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    snprintf(dir, sizeof dir, "%s/models/demo", srcdir());
    if (clipmod_model_load(dir, NULL, &model, errbuf)) {
        fprintf(stderr, "model: %s\n", errbuf);
        return -1;
    }
    return 0;
}

/* The salt's text, written out here from its documented format (vcache_key.h). */
static void salt(void **state)
{
    cm_vsalt a, b;
    (void)state;
    cm_vsalt_init(&a);
    cm_vsalt_setting(&a, CLIPMOD_MAX_SIDE, 4000);
    cm_vsalt_setting(&a, CLIPMOD_MAX_PIXELS, 1000);
    cm_vsalt_setting(&a, CLIPMOD_MAX_PIXELS, 2000);  /* the later value wins */
    cm_vsalt_setting(&a, CLIPMOD_SETTING__COUNT, 7); /* out of range: ignored */
    cm_vsalt_setting(&a, (clipmod_setting)-1, 7);
    cm_vsalt_plugin(&a, "/p/one.so", NULL);
    cm_vsalt_plugin(&a, "/p/two.so", "k=v");
    char *sa = cm_vsalt_finish(&a, 1);
    assert_non_null(sa);
    assert_string_equal(sa, "max-pixels=2000\nmax-side=4000\nplugin /p/one.so -\n"
                            "plugin /p/two.so k=v\ncontext=1\n");
    /* The settings in the other order: the same salt. */
    cm_vsalt_init(&b);
    cm_vsalt_setting(&b, CLIPMOD_MAX_PIXELS, 2000);
    cm_vsalt_setting(&b, CLIPMOD_MAX_SIDE, 4000);
    cm_vsalt_plugin(&b, "/p/one.so", NULL);
    cm_vsalt_plugin(&b, "/p/two.so", "k=v");
    char *sb = cm_vsalt_finish(&b, 1);
    assert_non_null(sb);
    assert_string_equal(sa, sb);
    free(sb);
    /* The plugins in the other order, or no context: another salt. */
    cm_vsalt_init(&b);
    cm_vsalt_setting(&b, CLIPMOD_MAX_PIXELS, 2000);
    cm_vsalt_setting(&b, CLIPMOD_MAX_SIDE, 4000);
    cm_vsalt_plugin(&b, "/p/two.so", "k=v");
    cm_vsalt_plugin(&b, "/p/one.so", NULL);
    sb = cm_vsalt_finish(&b, 1);
    assert_non_null(sb);
    assert_string_not_equal(sa, sb);
    free(sb);
    /* Nothing given: only the context line. */
    cm_vsalt_init(&b);
    sb = cm_vsalt_finish(&b, 0);
    assert_non_null(sb);
    assert_string_equal(sb, "context=0\n");
    free(sb);
    free(sa);
}

static int teardown(void **state)
{
    (void)state;
    static const char *const made[] = {"policy-0.5.yaml", "policy-0.6.yaml", "img"};
    char path[128];
    clipmod_model_free(model);
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, made[i]);
        unlink(path);
    }
    return rmdir(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(byte_cap),
        cmocka_unit_test(eviction_order),
        cmocka_unit_test(replace_key),
        cmocka_unit_test(too_large),
        cmocka_unit_test(unscanned_not_stored),
        cmocka_unit_test(threads),
        cmocka_unit_test(keys),
        cmocka_unit_test(salt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
