/*
 * br_kernels_avx512.c - AVX-512 (F, BW, VNNI) versions of the kernels where
 * they pay (this file alone is compiled with the AVX-512 flags): today the
 * quantised pre-scan, whose vpdpbusd multiplies 64 uint8 x int8 pairs and
 * adds them in fours into 16 int32 lanes in one instruction, where AVX2
 * needs vpmaddubsw + vpmaddwd + vpaddd on half the width. Integer sums are
 * exact and the float steps the same fused operations, so the results equal
 * the scalar reference's bit for bit. The other
 * entries of the "avx512" table are the AVX2 ones (br_kernels_avx2.c).
 */
#include "br_kernels.h"

#include <immintrin.h>

/* Bounds of a block's 16 books from their sums acc (qe - ucorr included);
 * k: the block's constants. The same operations as br_qscan_bounds8. */
static inline __m512 br_qscan_bounds16(__m512i acc, const uint8_t *k, __m512 vsu, __m512 vce,
                                       __m512 vadd)
{
    __m512 s = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)(k + 32))), 16));
    __m512 t = _mm512_fmadd_ps(vsu, _mm512_cvtepi32_ps(acc), vce);
    t = _mm512_fmadd_ps(s, t, _mm512_load_ps((const float *)(k + 64)));
    return _mm512_add_ps(t, vadd);
}

/* A block's accumulators' start: qe - ucorr. */
static inline __m512i br_qscan_start16(const uint8_t *k, __m512i vc)
{
    return _mm512_sub_epi32(_mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)k)), vc);
}

/* The maxima of four vectors of 16 at once (max is exact: any order gives
 * it): halves, then quarters, then within each 128-bit lane. */
static inline __m128 br_qscan_hmax4x16(__m512 r0, __m512 r1, __m512 r2, __m512 r3)
{
    /* x01: r0's two halves' max in the lower 256 bits, r1's in the upper */
    __m512 x01 = _mm512_max_ps(_mm512_shuffle_f32x4(r0, r1, 0x44),
                               _mm512_shuffle_f32x4(r0, r1, 0xEE));
    __m512 x23 = _mm512_max_ps(_mm512_shuffle_f32x4(r2, r3, 0x44),
                               _mm512_shuffle_f32x4(r2, r3, 0xEE));
    /* 128-bit lane i: four candidates of r_i */
    __m512 y = _mm512_max_ps(_mm512_shuffle_f32x4(x01, x23, 0x88),
                             _mm512_shuffle_f32x4(x01, x23, 0xDD));
    y = _mm512_max_ps(y, _mm512_permute_ps(y, 0x4E));
    y = _mm512_max_ps(y, _mm512_permute_ps(y, 0xB1));
    return _mm512_castps512_ps128(
        _mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), y));
}

/* A block of 16 books is one zmm per group of four dimensions (the layout
 * in br_kernels.h): one vpdpbusd with the reader's four values broadcast
 * (the signed operand) takes it; four blocks share each broadcast. */
void br_qscan_avx512(const uint32_t *uq, int32_t ucorr, const uint8_t *blk, size_t n_blocks,
                     size_t stride, float su, float ce, float add, float *out, float *gmax)
{
    size_t quads = stride / 4, bs = BR_QSCAN_BLOCK_BYTES(stride), kv = 16 * stride, j = 0;
    __m512 vsu = _mm512_set1_ps(su), vce = _mm512_set1_ps(ce), vadd = _mm512_set1_ps(add);
    __m512i vc = _mm512_set1_epi32(ucorr);
    for (; j + 4 <= n_blocks; j += 4) {
        const uint8_t *q = blk + j * bs, *k = q + kv;
        __m512i a0 = br_qscan_start16(k, vc), a1 = br_qscan_start16(k + bs, vc);
        __m512i a2 = br_qscan_start16(k + 2 * bs, vc), a3 = br_qscan_start16(k + 3 * bs, vc);
        for (size_t p = 0; p < quads; p++) {
            __m512i u = _mm512_set1_epi32((int32_t)uq[p]);
            const uint8_t *x = q + p * 64;
            a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(x), u);
            a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(x + bs), u);
            a2 = _mm512_dpbusd_epi32(a2, _mm512_load_si512(x + 2 * bs), u);
            a3 = _mm512_dpbusd_epi32(a3, _mm512_load_si512(x + 3 * bs), u);
        }
        __m512 r0 = br_qscan_bounds16(a0, k, vsu, vce, vadd);
        __m512 r1 = br_qscan_bounds16(a1, k + bs, vsu, vce, vadd);
        __m512 r2 = br_qscan_bounds16(a2, k + 2 * bs, vsu, vce, vadd);
        __m512 r3 = br_qscan_bounds16(a3, k + 3 * bs, vsu, vce, vadd);
        _mm512_store_ps(out + j * 16, r0);
        _mm512_store_ps(out + j * 16 + 16, r1);
        _mm512_store_ps(out + j * 16 + 32, r2);
        _mm512_store_ps(out + j * 16 + 48, r3);
        _mm_storeu_ps(gmax + j, br_qscan_hmax4x16(r0, r1, r2, r3));
    }
    for (; j < n_blocks; j++) {
        const uint8_t *q = blk + j * bs, *k = q + kv;
        __m512i a0 = br_qscan_start16(k, vc);
        for (size_t p = 0; p < quads; p++)
            a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(q + p * 64),
                                     _mm512_set1_epi32((int32_t)uq[p]));
        __m512 r0 = br_qscan_bounds16(a0, k, vsu, vce, vadd);
        _mm512_store_ps(out + j * 16, r0);
        gmax[j] = _mm512_reduce_max_ps(r0);
    }
}

/* Four readers per pass: each 64-byte load of a block feeds one vpdpbusd
 * per reader, so the quantised books (1.9 MB at dim 192, beyond L2) are
 * streamed once per four readers instead of once per reader; two blocks at
 * a time keep eight independent sums in flight. Fewer than four readers
 * repeat the last one's query (its results are written twice, the same). */
void br_qscan_multi_avx512(const br_qscan_query *qs, size_t m, const uint8_t *blk,
                           size_t n_blocks, size_t stride)
{
    if (m == 0)
        return;
    const br_qscan_query *r[4];
    for (size_t i = 0; i < 4; i++)
        r[i] = &qs[i < m ? i : m - 1];
    size_t quads = stride / 4, bs = BR_QSCAN_BLOCK_BYTES(stride), kv = 16 * stride, j = 0;
    __m512 vsu[4], vce[4], vadd[4];
    __m512i vc[4];
    for (int i = 0; i < 4; i++) {
        vsu[i] = _mm512_set1_ps(r[i]->su);
        vce[i] = _mm512_set1_ps(r[i]->ce);
        vadd[i] = _mm512_set1_ps(r[i]->add);
        vc[i] = _mm512_set1_epi32(r[i]->ucorr);
    }
    const uint32_t *u0 = r[0]->uq, *u1 = r[1]->uq, *u2 = r[2]->uq, *u3 = r[3]->uq;
    for (; j + 2 <= n_blocks; j += 2) {
        const uint8_t *q = blk + j * bs, *k0 = q + kv, *k1 = k0 + bs;
        __m512i a[8];
        for (int i = 0; i < 4; i++) {
            a[i] = br_qscan_start16(k0, vc[i]);
            a[4 + i] = br_qscan_start16(k1, vc[i]);
        }
        for (size_t p = 0; p < quads; p++) {
            __m512i x0 = _mm512_load_si512(q + p * 64), x1 = _mm512_load_si512(q + bs + p * 64);
            __m512i w0 = _mm512_set1_epi32((int32_t)u0[p]), w1 = _mm512_set1_epi32((int32_t)u1[p]);
            __m512i w2 = _mm512_set1_epi32((int32_t)u2[p]), w3 = _mm512_set1_epi32((int32_t)u3[p]);
            a[0] = _mm512_dpbusd_epi32(a[0], x0, w0);
            a[1] = _mm512_dpbusd_epi32(a[1], x0, w1);
            a[2] = _mm512_dpbusd_epi32(a[2], x0, w2);
            a[3] = _mm512_dpbusd_epi32(a[3], x0, w3);
            a[4] = _mm512_dpbusd_epi32(a[4], x1, w0);
            a[5] = _mm512_dpbusd_epi32(a[5], x1, w1);
            a[6] = _mm512_dpbusd_epi32(a[6], x1, w2);
            a[7] = _mm512_dpbusd_epi32(a[7], x1, w3);
        }
        __m512 b0[4], b1[4];
        for (int i = 0; i < 4; i++) {
            b0[i] = br_qscan_bounds16(a[i], k0, vsu[i], vce[i], vadd[i]);
            b1[i] = br_qscan_bounds16(a[4 + i], k1, vsu[i], vce[i], vadd[i]);
            _mm512_store_ps(r[i]->out + j * 16, b0[i]);
            _mm512_store_ps(r[i]->out + j * 16 + 16, b1[i]);
        }
        float g0[4], g1[4];
        _mm_storeu_ps(g0, br_qscan_hmax4x16(b0[0], b0[1], b0[2], b0[3]));
        _mm_storeu_ps(g1, br_qscan_hmax4x16(b1[0], b1[1], b1[2], b1[3]));
        for (int i = 0; i < 4; i++) {
            r[i]->gmax[j] = g0[i];
            r[i]->gmax[j + 1] = g1[i];
        }
    }
    for (; j < n_blocks; j++)   /* an odd last block: reader by reader */
        for (size_t i = 0; i < m; i++) {
            const uint8_t *q = blk + j * bs, *k = q + kv;
            __m512i a0 = br_qscan_start16(k, vc[i]);
            for (size_t p = 0; p < quads; p++)
                a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(q + p * 64),
                                         _mm512_set1_epi32((int32_t)qs[i].uq[p]));
            __m512 b = br_qscan_bounds16(a0, k, vsu[i], vce[i], vadd[i]);
            _mm512_store_ps(qs[i].out + j * 16, b);
            qs[i].gmax[j] = _mm512_reduce_max_ps(b);
        }
}
