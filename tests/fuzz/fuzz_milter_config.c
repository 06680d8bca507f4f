/*
 * fuzz_milter_config.c - clipmod-milter's configuration reader (plugins/milter/conf.c)
 * and its SMTP reply splitting.
 *
 * The input is written to a file in the target's private directory and loaded with
 * cmc_load(), as the milter loads /etc/clipmod/clipmod-milter.yaml; the same bytes
 * are also given to cmc_parse_reply() as one reply string. Beyond memory safety the
 * target checks what the reader promises, and aborts when a promise is broken:
 *   - a load either succeeds with no problems text or fails with one and no config;
 *   - a loaded configuration has a model and a policy, limits within their ranges,
 *     and an on-fail reply of the class its on-fail says (4xx tempfail, 5xx reject);
 *   - a parsed reply is a 2xx-5xx code, an enhanced code of the same class or none,
 *     and text without control characters.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fuzz.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static void load(const uint8_t *data, size_t size)
{
    char path[4200];
    cmc_config *c = NULL;
    char *problems = NULL;
    FILE *f;

    snprintf(path, sizeof path, "%s/milter.yaml", fuzz_tmpdir());
    f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    if (cmc_load(path, &c, &problems) == 0) {
        check(c && !problems && c->model && c->policy && c->socket);
        check(c->limits.max_parts >= 1 && c->limits.max_depth >= 1 && c->limits.max_depth <= 100);
        check(c->limits.max_image_bytes >= 1);
        if (c->on_fail == CMC_FAIL_TEMPFAIL)
            check(c->on_fail_reply.rcode[0] == '4');
        if (c->on_fail == CMC_FAIL_REJECT)
            check(c->on_fail_reply.rcode[0] == '5');
        check(c->archives_with_images <= CMC_INSIDE_REJECT);
        check(c->documents_with_images <= CMC_INSIDE_REJECT);
    } else {
        check(!c && problems && *problems);
    }
    cmc_free(c);
    free(problems);
}

static void reply(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    cmc_reply r;
    if (cmc_parse_reply(s, &r) == 0) {
        check(r.rcode[0] >= '2' && r.rcode[0] <= '5' && strlen(r.rcode) == 3);
        check(!r.xcode[0] || r.xcode[0] == r.rcode[0]);
        for (const char *p = r.text; *p; p++)
            check((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load(data, size);
    reply(data, size);
    return 0;
}
