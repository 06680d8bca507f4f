/*
 * cpu.h - the x86-64 features our kernels dispatch on, read once with cpuid.
 *
 * GCC's and clang's __builtin_cpu_supports do not agree on feature names (clang 14
 * rejects "avxvnni" at compile time), and neither says whether the kernel saves
 * the zmm state; cpuid and xgetbv answer both the same way with every compiler.
 */
#ifndef CM_CPU_H
#define CM_CPU_H

typedef enum {
    CM_CPU_AVX2 = 1 << 0,
    CM_CPU_FMA = 1 << 1,
    CM_CPU_AVX512F = 1 << 2,
    CM_CPU_AVX512BW = 1 << 3,
    CM_CPU_AVX512VNNI = 1 << 4,
    CM_CPU_AVXVNNI = 1 << 5,
    CM_CPU_AVX512BF16 = 1 << 6,
    CM_CPU_INTEL = 1 << 7, /* vendor "GenuineIntel": some kernel choices depend on it */
} cm_cpu_feature;

/* Nonzero when every feature in the mask is there and usable (the OS saves the
 * registers it needs). Thread-safe; the first call reads cpuid. */
int cm_cpu_has(unsigned features);

#endif
