/*
 * br_qscan_simd.h - the part of the quantised pre-scan kernel shared by the
 * AVX2 and AVX-512 files (static inline, so each is compiled with its own
 * file's flags and inlined into its loop): eight books' integer sums to
 * bounds, and the group maximum. See br_kernels.h (qscan).
 * Include only from a file compiled with at least -mavx2 -mfma.
 */
#ifndef BR_QSCAN_SIMD_H
#define BR_QSCAN_SIMD_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* Eight books' accumulators' start: qe - ucorr; qe: their uint16 qe. */
static inline __m256i br_qscan_start8(const uint8_t *qe, __m256i vc)
{
    return _mm256_sub_epi32(_mm256_cvtepu16_epi32(_mm_load_si128((const __m128i *)qe)), vc);
}

/* Bounds of eight books from their sums acc (qe - ucorr included); sc:
 * their bfloat16 scales, base: their float bases. */
static inline __m256 br_qscan_bounds8(__m256i acc, const uint8_t *sc, const uint8_t *base,
                                      __m256 vsu, __m256 vce, __m256 vadd)
{
    __m256 s = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_load_si128((const __m128i *)sc)), 16));
    __m256 t = _mm256_fmadd_ps(vsu, _mm256_cvtepi32_ps(acc), vce);
    t = _mm256_fmadd_ps(s, t, _mm256_load_ps((const float *)base));
    return _mm256_add_ps(t, vadd);
}

/* The largest of the eight lanes (max is exact: any order gives it). */
static inline float br_qscan_hmax8(__m256 r)
{
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    return _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
}

#endif
