/*
 * cpu.c - reads the CPU's vector features once (cpuid leaves 1 and 7, xgetbv)
 * for the fp32 and int8/bf16 kernel dispatch in gemm.c and qgemm.c.
 */
#include <pthread.h>

#include "cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

static unsigned long long xcr0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* "GenuineIntel" in cpuid leaf 0 (ebx, edx, ecx). */
static unsigned vendor(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return 0;
    return b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu ? CM_CPU_INTEL : 0;
}

static unsigned detect(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    /* OSXSAVE and AVX, then the OS must save ymm (XCR0 bits 1-2) before any of
     * it counts, and opmask + zmm (bits 5-7) before AVX-512 does. */
    if (!(c & (1u << 27)) || !(c & (1u << 28)))
        return 0;
    const unsigned long long x = xcr0();
    if ((x & 0x6) != 0x6)
        return 0;
    unsigned f = vendor() | ((c & (1u << 12)) ? CM_CPU_FMA : 0);
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return f;
    const unsigned max7 = a;
    if (b & (1u << 5))
        f |= CM_CPU_AVX2;
    const int zmm = (x & 0xe0) == 0xe0;
    if (zmm && (b & (1u << 16)))
        f |= CM_CPU_AVX512F;
    if (zmm && (b & (1u << 30)))
        f |= CM_CPU_AVX512BW;
    if (zmm && (c & (1u << 11)))
        f |= CM_CPU_AVX512VNNI;
    if (max7 >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        if (a & (1u << 4))
            f |= CM_CPU_AVXVNNI;
        if (zmm && (a & (1u << 5)))
            f |= CM_CPU_AVX512BF16;
    }
    return f;
}
#else
static unsigned detect(void)
{
    return 0;
}
#endif

static unsigned features;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    features = detect();
}

int cm_cpu_has(unsigned want)
{
    pthread_once(&once, init);
    return (features & want) == want;
}
