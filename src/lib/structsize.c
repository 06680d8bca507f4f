/*
 * structsize.c - the `size` rule for structures the caller allocates (clipmod.h,
 * "the size rule"): checking a caller's size, copying a structure in or out across
 * a size difference, stepping through an array of inputs by the caller's size, and
 * the thread's last refusal (clipmod_invalid_arg_reason()).
 *
 * Every public function that takes clipmod_limits, clipmod_input or
 * clipmod_category_score goes through here, so the rule is written once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

/* One sentence per thread: refusals come from calls without errbuf, on any thread. */
static _Thread_local char last_refusal[CLIPMOD_ERROR_SIZE];

const char *clipmod_invalid_arg_reason(void)
{
    return last_refusal;
}

clipmod_error cm_refuse(char *errbuf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_refusal, sizeof last_refusal, fmt, ap);
    va_end(ap);
    if (errbuf)
        memcpy(errbuf, last_refusal, sizeof last_refusal);
    return CLIPMOD_E_INVALID_ARG;
}

clipmod_error cm_struct_check(const void *p, size_t given, const cm_struct_kind *k, char *errbuf)
{
    if (given < k->v1_size || given > CLIPMOD_STRUCT_SIZE_MAX)
        return cm_refuse(errbuf,
                         "%s: size %zu is not a size this structure can have (this library "
                         "takes %zu to %d; it knows %zu bytes): initialise it with %s",
                         k->what, given, k->v1_size, CLIPMOD_STRUCT_SIZE_MAX, k->have, k->init);
    /* Built against a newer header: fine if it leaves every member we lack at 0. */
    for (size_t i = k->have; p && i < given; i++)
        if (((const unsigned char *)p)[i])
            return cm_refuse(errbuf,
                             "%s: sets members this libclipmod %s does not know (byte %zu of "
                             "%zu; it knows %zu): upgrade libclipmod",
                             k->what, clipmod_version(), i, given, k->have);
    return CLIPMOD_OK;
}

clipmod_error cm_struct_in(void *dst, const void *src, const cm_struct_kind *k, char *errbuf)
{
    size_t given;
    memcpy(&given, src, sizeof given);
    clipmod_error rc = cm_struct_check(src, given, k, errbuf);
    if (rc)
        return rc;
    /* dst already holds the defaults of the members the caller may lack. */
    memcpy(dst, src, given < k->have ? given : k->have);
    memcpy(dst, &k->have, sizeof k->have);
    return CLIPMOD_OK;
}

clipmod_error cm_struct_out(void *dst, const void *src, const cm_struct_kind *k, char *errbuf)
{
    size_t given;
    memcpy(&given, dst, sizeof given);
    /* The caller's bytes past ours are where the answer goes, not a request: no check. */
    if (given < k->v1_size || given > CLIPMOD_STRUCT_SIZE_MAX)
        return cm_struct_check(NULL, given, k, errbuf);
    const size_t n = given < k->have ? given : k->have;
    memcpy((char *)dst + sizeof given, (const char *)src + sizeof given, n - sizeof given);
    if (given > k->have)
        memset((char *)dst + k->have, 0, given - k->have);
    return CLIPMOD_OK;
}

static const cm_struct_kind input_kind = {
    "clipmod_input",
    CLIPMOD_INPUT_SIZE_V1,
    sizeof(clipmod_input),
    "CLIPMOD_INPUT_INIT",
};

/* Input i of an array whose elements are `stride` bytes, into *one (as the library
 * knows it). Every element must have the same size as the first: that is the stride. */
static clipmod_error input_at(const clipmod_input *inputs, size_t stride, size_t i,
                              clipmod_input *one)
{
    const char *p = (const char *)inputs + i * stride;
    char what[64];
    cm_struct_kind k = input_kind;
    size_t given;
    memcpy(&given, p, sizeof given);
    snprintf(what, sizeof what, "clipmod_input[%zu]", i);
    k.what = what;
    if (given != stride)
        return cm_refuse(NULL,
                         "%s: size %zu, but clipmod_input[0] has %zu: every input of an array "
                         "has the same size (initialise each with CLIPMOD_INPUT_INIT)",
                         what, given, stride);
    memset(one, 0, sizeof *one);
    return cm_struct_in(one, p, &k, NULL);
}

clipmod_error cm_inputs_view(const clipmod_input *inputs, size_t n, clipmod_input **copy,
                             const clipmod_input **view)
{
    *copy = NULL;
    *view = inputs;
    if (!inputs || !n)
        return CLIPMOD_OK;
    const size_t stride = inputs[0].size;
    if (stride < CLIPMOD_INPUT_SIZE_V1 || stride > CLIPMOD_STRUCT_SIZE_MAX) {
        clipmod_input one;
        return input_at(inputs, stride, 0, &one);
    }
    /* The common case, a caller built with this header: nothing to copy. */
    int same = stride == sizeof(clipmod_input);
    for (size_t i = 0; same && i < n; i++)
        same = inputs[i].size == stride;
    if (same)
        return CLIPMOD_OK;
    clipmod_input *c = cm_calloc(n, sizeof *c);
    if (!c)
        return CLIPMOD_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        clipmod_error rc = input_at(inputs, stride, i, &c[i]);
        if (rc) {
            cm_free(c);
            return rc;
        }
    }
    *copy = c;
    *view = c;
    return CLIPMOD_OK;
}
