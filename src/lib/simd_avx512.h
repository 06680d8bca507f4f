/*
 * simd_avx512.h - AVX-512 helpers shared by the kernels compiled with target
 * attributes (gemm_avx512.c, attn_avx512.c): only included inside
 * `#if defined(__x86_64__) && defined(__GNUC__)`, after <immintrin.h>.
 * Every function is static inline with the avx512f target, so no code using
 * AVX-512 runs unless the caller's dispatch chose it.
 */
#ifndef CM_SIMD_AVX512_H
#define CM_SIMD_AVX512_H

#define CM_TGT512 __attribute__((target("avx512f"), always_inline)) static inline

/* ops.c's exp_fast, sixteen lanes at a time (same reduction and polynomial). */
CM_TGT512 __m512 cm_exp16(__m512 x)
{
    const __m512 round = _mm512_set1_ps(12582912.0f);
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504f));
    t = _mm512_min_ps(t, _mm512_set1_ps(127.0f));
    t = _mm512_max_ps(t, _mm512_set1_ps(-126.0f));
    const __m512 n = _mm512_sub_ps(_mm512_add_ps(t, round), round);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i bits =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

#endif
