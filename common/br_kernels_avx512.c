/*
 * br_kernels_avx512.c - AVX-512 (F, BW, VNNI) versions of the kernels where
 * they pay (this file alone is compiled with the AVX-512 flags): today the
 * quantised pre-scan, whose vpdpbusd multiplies 64 uint8 x int8 pairs and
 * adds them in fours into 16 int32 lanes in one instruction, where AVX2
 * needs vpmaddubsw + vpmaddwd + vpaddd on half the width. Integer sums are
 * exact, so the results equal the scalar reference's bit for bit. The other
 * entries of the "avx512" table are the AVX2 ones (br_kernels_avx2.c).
 */
#include "br_kernels.h"

#include <immintrin.h>

#include "br_qscan_simd.h"

/* The two 8-lane halves of a block's accumulator (dimension group p in the
 * low half, p + 1 in the high half) summed: the block's eight dot products. */
static inline __m256i br_fold512(__m512i a)
{
    return _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
}

/* The reader's groups p and p + 1 broadcast into the low and high halves. */
static inline __m512i br_upair512(const uint32_t *uq, size_t p)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int32_t)uq[p])),
                              _mm256_set1_epi32((int32_t)uq[p + 1]), 1);
}

/* Two 4-dimension groups of a block are 64 contiguous bytes (the layout in
 * br_kernels.h), so one vpdpbusd takes both; four blocks share each reader
 * register. Strides are multiples of 8, so the groups come in pairs. */
void br_qscan_avx512(const uint32_t *uq, const int8_t *blk, size_t n_blocks, size_t stride,
                     float add, float su, float ce, float cm, float *out, float *gmax)
{
    size_t quads = stride / 4, bs = 8 * stride + 128, kv = 8 * stride, j = 0;
    __m256 vadd = _mm256_set1_ps(add), vsu = _mm256_set1_ps(su), vce = _mm256_set1_ps(ce),
           vcm = _mm256_set1_ps(cm);
    for (; j + 4 <= n_blocks; j += 4) {
        const int8_t *q = blk + j * bs;
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
        __m512i a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512();
        for (size_t p = 0; p < quads; p += 2) {
            __m512i u = br_upair512(uq, p);
            const int8_t *x = q + p * 32;
            a0 = _mm512_dpbusd_epi32(a0, u, _mm512_load_si512(x));
            a1 = _mm512_dpbusd_epi32(a1, u, _mm512_load_si512(x + bs));
            a2 = _mm512_dpbusd_epi32(a2, u, _mm512_load_si512(x + 2 * bs));
            a3 = _mm512_dpbusd_epi32(a3, u, _mm512_load_si512(x + 3 * bs));
        }
        __m256 r0 = br_qscan_bounds8(br_fold512(a0), j, q + kv, vadd, vsu, vce, vcm, out);
        __m256 r1 = br_qscan_bounds8(br_fold512(a1), j + 1, q + bs + kv, vadd, vsu, vce, vcm, out);
        __m256 r2 = br_qscan_bounds8(br_fold512(a2), j + 2, q + 2 * bs + kv, vadd, vsu, vce, vcm,
                                     out);
        __m256 r3 = br_qscan_bounds8(br_fold512(a3), j + 3, q + 3 * bs + kv, vadd, vsu, vce, vcm,
                                     out);
        br_qscan_gmax4(r0, r1, r2, r3, j, gmax);
    }
    for (; j < n_blocks; j++) {
        const int8_t *q = blk + j * bs;
        __m512i a0 = _mm512_setzero_si512();
        for (size_t p = 0; p < quads; p += 2)
            a0 = _mm512_dpbusd_epi32(a0, br_upair512(uq, p), _mm512_load_si512(q + p * 32));
        br_qscan_gmax1(br_qscan_bounds8(br_fold512(a0), j, q + kv, vadd, vsu, vce, vcm, out), j,
                       gmax);
    }
}
