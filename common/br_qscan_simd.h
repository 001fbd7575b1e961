/*
 * br_qscan_simd.h - the part of the quantised pre-scan kernel shared by the
 * AVX2 and AVX-512 files (static inline, so each is compiled with its own
 * file's flags and inlined into its loop): integer dot products of a block
 * of eight books to bounds, and the group maxima. See br_kernels.h (qscan).
 * Include only from a file compiled with at least -mavx2.
 */
#ifndef BR_QSCAN_SIMD_H
#define BR_QSCAN_SIMD_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds of the eight books of block j from their integer dot products d
 * (before the offset correction), stored and returned; k: the block's
 * constants (corr, base, scale, qerr, 8 each). */
static inline __m256 br_qscan_bounds8(__m256i d, size_t j, const int8_t *k, __m256 vadd,
                                      __m256 vsu, __m256 vce, __m256 vcm, float *out)
{
    d = _mm256_sub_epi32(d, _mm256_load_si256((const __m256i *)k));
    __m256 sc = _mm256_load_ps((const float *)(k + 64));
    __m256 e = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(vce, sc),
                                           _mm256_mul_ps(vsu, _mm256_load_ps((const float *)(k + 96)))),
                             vcm);
    __m256 s = _mm256_add_ps(_mm256_add_ps(vadd, _mm256_load_ps((const float *)(k + 32))),
                             _mm256_mul_ps(_mm256_mul_ps(vsu, sc), _mm256_cvtepi32_ps(d)));
    __m256 r = _mm256_add_ps(s, e);
    _mm256_storeu_ps(out + j * 8, r);
    return r;
}

/* The largest of the eight lanes (max is exact: any order gives it). */
static inline float br_qscan_hmax8(__m256 r)
{
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    return _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
}

/* Block j's max into its group of 16 (blocks 2g and 2g + 1), for a block
 * handled alone (the tails of the kernels' loops). */
static inline void br_qscan_gmax1(__m256 r, size_t j, float *gmax)
{
    float mx = br_qscan_hmax8(r);
    gmax[j / 2] = j % 2 == 0 || mx > gmax[j / 2] ? mx : gmax[j / 2];
}

/* Four blocks j..j+3 (j even): two groups of 16, one reduction each. */
static inline void br_qscan_gmax4(__m256 r0, __m256 r1, __m256 r2, __m256 r3, size_t j,
                                  float *gmax)
{
    gmax[j / 2] = br_qscan_hmax8(_mm256_max_ps(r0, r1));
    gmax[j / 2 + 1] = br_qscan_hmax8(_mm256_max_ps(r2, r3));
}

#endif
