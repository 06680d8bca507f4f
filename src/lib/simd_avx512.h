/*
 * simd_avx512.h - AVX-512 helpers shared by the kernels compiled with target
 * attributes (gemm_avx512.c, attn_avx512.c): only included inside
 * `#if defined(__x86_64__) && defined(__GNUC__)`, after <immintrin.h>.
 * Every function is static inline with the avx512f target, so no code using
 * AVX-512 runs unless the caller's dispatch chose it.
 */
#ifndef CM_SIMD_AVX512_H
#define CM_SIMD_AVX512_H

#include "gemm.h" /* cm_gemm_act */

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

/* ops.c's erf_fast (Abramowitz & Stegun 7.1.26), sixteen lanes at a time. */
CM_TGT512 __m512 cm_erf16(__m512 x)
{
    const __m512 ax = _mm512_abs_ps(x);
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), ax, one));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    const __m512 e = cm_exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(ax, ax)));
    const __m512 y = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, one);
    /* Copy x's sign onto y (y >= 0). */
    const __m512i sign =
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

CM_TGT512 __m512 cm_act16(__m512 v, cm_gemm_act act)
{
    if (act == CM_GEMM_ACT_QUICK_GELU) {
        const __m512 e = cm_exp16(_mm512_mul_ps(v, _mm512_set1_ps(-1.702f)));
        return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    }
    const __m512 h = _mm512_mul_ps(v, _mm512_set1_ps(0.5f));
    const __m512 e = cm_erf16(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678f)));
    return _mm512_fmadd_ps(h, e, h);
}

#endif
