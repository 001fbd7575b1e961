/*
 * br_kernels_avx2.c - AVX2+FMA kernels (this file alone is compiled with
 * -mavx2 -mfma). Each mirrors its scalar reference in br_kernels_scalar.c
 * operation for operation, so results are bit-identical.
 */
#include "br_kernels.h"

#include <immintrin.h>

#include "br_qscan_simd.h"

/* ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), as br_hsum8 in the scalar file. */
static inline float br_hsum8_avx2(__m256 v)
{
    __m256 h = _mm256_hadd_ps(v, v);   /* l0+l1, l2+l3, .. | l4+l5, l6+l7, .. */
    h = _mm256_hadd_ps(h, h);          /* (l0+l1)+(l2+l3) .. | (l4+l5)+(l6+l7) .. */
    __m128 s = _mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    return _mm_cvtss_f32(s);
}

/* Eight horizontal sums at once, each with the same tree as br_hsum8_avx2:
 * lane j of the result is the sum of the lanes of a[j]. */
static inline __m256 br_hsum8x8_avx2(const __m256 a[8])
{
    __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
    __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
    __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
    __m256 lo = _mm256_permute2f128_ps(h0123, h4567, 0x20);
    __m256 hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
    return _mm256_add_ps(lo, hi);
}

static inline __m256 br_dot_acc(const float *a, const float *b, size_t n)
{
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return acc;
}

/* The same sum in four independent chains (chunk j of 8 into chain j mod 4,
 * then (0 + 1) + (2 + 3)): a training step's dot product over a long row
 * otherwise waits on one chain of fused adds, four cycles each. Rows of up
 * to 32 floats keep the one chain (four fused adds cost less than the
 * combining). */
static inline __m256 br_dot_acc4(const float *a, const float *b, size_t n)
{
    if (n <= 32)
        return br_dot_acc(a, b, n);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), c0);
        c1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), c1);
        c2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), c2);
        c3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), c3);
    }
    if (i < n)
        c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), c0), i += 8;
    if (i < n)
        c1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), c1), i += 8;
    if (i < n)
        c2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), c2);
    return _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3));
}

static float br_dot_avx2(const float *a, const float *b, size_t n)
{
    return br_hsum8_avx2(br_dot_acc(a, b, n));
}

static float br_sgd_mf_avx2(float *p, float *q, size_t n, float base, float r, float lr,
                            float reg_p, float reg_q)
{
    float e = r - (base + br_hsum8_avx2(br_dot_acc4(p, q, n)));
    __m256 ve = _mm256_set1_ps(e), vlr = _mm256_set1_ps(lr);
    __m256 vnp = _mm256_set1_ps(-reg_p), vnq = _mm256_set1_ps(-reg_q);
    for (size_t i = 0; i < n; i += 8) {
        __m256 pi = _mm256_loadu_ps(p + i), qi = _mm256_loadu_ps(q + i);
        __m256 gp = _mm256_fmadd_ps(ve, qi, _mm256_mul_ps(vnp, pi));
        __m256 gq = _mm256_fmadd_ps(ve, pi, _mm256_mul_ps(vnq, qi));
        _mm256_storeu_ps(p + i, _mm256_fmadd_ps(vlr, gp, pi));
        _mm256_storeu_ps(q + i, _mm256_fmadd_ps(vlr, gq, qi));
    }
    return e;
}

static float br_adam_mf_avx2(float *p, float *q, float *mp, float *vp, float *mq, float *vq,
                             size_t n, float base, float r, const br_adam *a, float cp, float cq)
{
    float e = r - (base + br_hsum8_avx2(br_dot_acc(p, q, n)));
    __m256 vne = _mm256_set1_ps(-e), vreg = _mm256_set1_ps(a->reg);
    __m256 b1 = _mm256_set1_ps(a->beta1), b2 = _mm256_set1_ps(a->beta2);
    __m256 c1 = _mm256_set1_ps(1.0f - a->beta1), c2 = _mm256_set1_ps(1.0f - a->beta2);
    __m256 eps = _mm256_set1_ps(a->eps), vcp = _mm256_set1_ps(cp), vcq = _mm256_set1_ps(cq);
    for (size_t i = 0; i < n; i += 8) {
        __m256 pi = _mm256_loadu_ps(p + i), qi = _mm256_loadu_ps(q + i);
        __m256 gp = _mm256_fmadd_ps(vne, qi, _mm256_mul_ps(vreg, pi));
        __m256 gq = _mm256_fmadd_ps(vne, pi, _mm256_mul_ps(vreg, qi));
        __m256 m1 = _mm256_fmadd_ps(b1, _mm256_loadu_ps(mp + i), _mm256_mul_ps(c1, gp));
        __m256 v1 = _mm256_fmadd_ps(b2, _mm256_loadu_ps(vp + i),
                                    _mm256_mul_ps(_mm256_mul_ps(c2, gp), gp));
        __m256 m2 = _mm256_fmadd_ps(b1, _mm256_loadu_ps(mq + i), _mm256_mul_ps(c1, gq));
        __m256 v2 = _mm256_fmadd_ps(b2, _mm256_loadu_ps(vq + i),
                                    _mm256_mul_ps(_mm256_mul_ps(c2, gq), gq));
        _mm256_storeu_ps(mp + i, m1);
        _mm256_storeu_ps(vp + i, v1);
        _mm256_storeu_ps(mq + i, m2);
        _mm256_storeu_ps(vq + i, v2);
        __m256 sp = _mm256_div_ps(m1, _mm256_add_ps(_mm256_sqrt_ps(v1), eps));
        __m256 sq = _mm256_div_ps(m2, _mm256_add_ps(_mm256_sqrt_ps(v2), eps));
        _mm256_storeu_ps(p + i, _mm256_fnmadd_ps(vcp, sp, pi));
        _mm256_storeu_ps(q + i, _mm256_fnmadd_ps(vcq, sq, qi));
    }
    return e;
}

static float br_bpr_mf_avx2(float *p, float *qi, float *qj, size_t n, float base_diff, float lr,
                            float reg)
{
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(qi + i), _mm256_loadu_ps(qj + i));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(p + i), d, acc);
    }
    float x = base_diff + br_hsum8_avx2(acc);
    float g = br_sigmoid_neg(x);
    __m256 vg = _mm256_set1_ps(g), vng = _mm256_set1_ps(-g);
    __m256 vlr = _mm256_set1_ps(lr), vnr = _mm256_set1_ps(-reg);
    for (size_t i = 0; i < n; i += 8) {
        __m256 pu = _mm256_loadu_ps(p + i), a = _mm256_loadu_ps(qi + i),
               b = _mm256_loadu_ps(qj + i);
        __m256 gp = _mm256_fmadd_ps(vg, _mm256_sub_ps(a, b), _mm256_mul_ps(vnr, pu));
        __m256 ga = _mm256_fmadd_ps(vg, pu, _mm256_mul_ps(vnr, a));
        __m256 gb = _mm256_fmadd_ps(vng, pu, _mm256_mul_ps(vnr, b));
        _mm256_storeu_ps(p + i, _mm256_fmadd_ps(vlr, gp, pu));
        _mm256_storeu_ps(qi + i, _mm256_fmadd_ps(vlr, ga, a));
        _mm256_storeu_ps(qj + i, _mm256_fmadd_ps(vlr, gb, b));
    }
    return x;
}

/* One Adam step of 8 coordinates; mirrors br_adam_coord in the scalar file. */
static inline __m256 br_adam_coord8(__m256 x, __m256 g, float *m, float *v, __m256 b1,
                                    __m256 b2, __m256 c1, __m256 c2, __m256 eps, __m256 c)
{
    __m256 m1 = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m), _mm256_mul_ps(c1, g));
    __m256 v1 = _mm256_fmadd_ps(b2, _mm256_loadu_ps(v), _mm256_mul_ps(_mm256_mul_ps(c2, g), g));
    _mm256_storeu_ps(m, m1);
    _mm256_storeu_ps(v, v1);
    __m256 s = _mm256_div_ps(m1, _mm256_add_ps(_mm256_sqrt_ps(v1), eps));
    return _mm256_fnmadd_ps(c, s, x);
}

static float br_adam_bpr_avx2(float *p, float *qi, float *qj, float *mp, float *vp, float *mi,
                              float *vi, float *mj, float *vj, size_t n, float base_diff,
                              const br_adam *a, float cp, float ci, float cj)
{
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(qi + i), _mm256_loadu_ps(qj + i));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(p + i), d, acc);
    }
    float x = base_diff + br_hsum8_avx2(acc);
    float g = br_sigmoid_neg(x);
    __m256 vg = _mm256_set1_ps(g), vng = _mm256_set1_ps(-g), vreg = _mm256_set1_ps(a->reg);
    __m256 b1 = _mm256_set1_ps(a->beta1), b2 = _mm256_set1_ps(a->beta2);
    __m256 c1 = _mm256_set1_ps(1.0f - a->beta1), c2 = _mm256_set1_ps(1.0f - a->beta2);
    __m256 eps = _mm256_set1_ps(a->eps);
    __m256 vcp = _mm256_set1_ps(cp), vci = _mm256_set1_ps(ci), vcj = _mm256_set1_ps(cj);
    for (size_t i = 0; i < n; i += 8) {
        __m256 pu = _mm256_loadu_ps(p + i), ai = _mm256_loadu_ps(qi + i),
               bj = _mm256_loadu_ps(qj + i);
        __m256 gp = _mm256_fmadd_ps(vng, _mm256_sub_ps(ai, bj), _mm256_mul_ps(vreg, pu));
        __m256 ga = _mm256_fmadd_ps(vng, pu, _mm256_mul_ps(vreg, ai));
        __m256 gb = _mm256_fmadd_ps(vg, pu, _mm256_mul_ps(vreg, bj));
        _mm256_storeu_ps(p + i, br_adam_coord8(pu, gp, mp + i, vp + i, b1, b2, c1, c2, eps, vcp));
        _mm256_storeu_ps(qi + i, br_adam_coord8(ai, ga, mi + i, vi + i, b1, b2, c1, c2, eps, vci));
        _mm256_storeu_ps(qj + i, br_adam_coord8(bj, gb, mj + i, vj + i, b1, b2, c1, c2, eps, vcj));
    }
    return x;
}

static void br_score_avx2(const float *u, const float *Q, size_t n_books, size_t stride,
                          const float *bias, float add, float *out)
{
    size_t b = 0;
    __m256 vadd = _mm256_set1_ps(add);
    /* Eight books at a time: one accumulator per book, then one transposed
     * reduction instead of eight horizontal sums. */
    for (; b + 8 <= n_books; b += 8) {
        __m256 acc[8];
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_setzero_ps();
        const float *q = Q + b * stride;
        for (size_t i = 0; i < stride; i += 8) {
            __m256 x = _mm256_loadu_ps(u + i);
            for (int j = 0; j < 8; j++)
                acc[j] = _mm256_fmadd_ps(x, _mm256_loadu_ps(q + j * stride + i), acc[j]);
        }
        __m256 s = br_hsum8x8_avx2(acc);
        __m256 base = bias ? _mm256_add_ps(vadd, _mm256_loadu_ps(bias + b)) : vadd;
        _mm256_storeu_ps(out + b, _mm256_add_ps(base, s));
    }
    for (; b < n_books; b++) {
        float s = br_hsum8_avx2(br_dot_acc(u, Q + b * stride, stride));
        out[b] = (add + (bias ? bias[b] : 0.0f)) + s;
    }
}

/* Eight books' sums over one 4-dimension group: vpmaddubsw (the books'
 * uint8 x the reader's int8, adjacent pairs summed to int16: at most
 * 2 x 255 x 63, no saturation) then vpmaddwd by ones (to int32, one lane
 * per book). */
static inline __m256i br_qscan_quad(const uint8_t *x, __m256i u, __m256i ones)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)x), u),
                             ones);
}

/* One block's 16 bounds (two halves of eight) and its max. */
static inline void br_qscan_block_out(__m256i lo, __m256i hi, const uint8_t *k, __m256 vsu,
                                      __m256 vce, __m256 vadd, float *out, float *gmax)
{
    __m256 r0 = br_qscan_bounds8(lo, k + 32, k + 64, vsu, vce, vadd);
    __m256 r1 = br_qscan_bounds8(hi, k + 48, k + 96, vsu, vce, vadd);
    _mm256_store_ps(out, r0);
    _mm256_store_ps(out + 8, r1);
    *gmax = br_qscan_hmax8(_mm256_max_ps(r0, r1));
}

/* Two blocks (four accumulators) share each broadcast of the reader's four
 * values. */
static void br_qscan_avx2(const uint32_t *uq, int32_t ucorr, const uint8_t *blk, size_t n_blocks,
                          size_t stride, float su, float ce, float add, float *out, float *gmax)
{
    size_t quads = stride / 4, bs = BR_QSCAN_BLOCK_BYTES(stride), kv = 16 * stride, j = 0;
    __m256 vsu = _mm256_set1_ps(su), vce = _mm256_set1_ps(ce), vadd = _mm256_set1_ps(add);
    __m256i ones = _mm256_set1_epi16(1), vc = _mm256_set1_epi32(ucorr);
    for (; j + 2 <= n_blocks; j += 2) {
        const uint8_t *q = blk + j * bs, *k0 = q + kv, *k1 = q + bs + kv;
        __m256i a0 = br_qscan_start8(k0, vc), a1 = br_qscan_start8(k0 + 16, vc);
        __m256i a2 = br_qscan_start8(k1, vc), a3 = br_qscan_start8(k1 + 16, vc);
        for (size_t p = 0; p < quads; p++) {
            __m256i u = _mm256_set1_epi32((int32_t)uq[p]);
            const uint8_t *x = q + p * 64;
            a0 = _mm256_add_epi32(a0, br_qscan_quad(x, u, ones));
            a1 = _mm256_add_epi32(a1, br_qscan_quad(x + 32, u, ones));
            a2 = _mm256_add_epi32(a2, br_qscan_quad(x + bs, u, ones));
            a3 = _mm256_add_epi32(a3, br_qscan_quad(x + bs + 32, u, ones));
        }
        br_qscan_block_out(a0, a1, k0, vsu, vce, vadd, out + j * 16, gmax + j);
        br_qscan_block_out(a2, a3, k1, vsu, vce, vadd, out + j * 16 + 16, gmax + j + 1);
    }
    for (; j < n_blocks; j++) {
        const uint8_t *q = blk + j * bs, *k0 = q + kv;
        __m256i a0 = br_qscan_start8(k0, vc), a1 = br_qscan_start8(k0 + 16, vc);
        for (size_t p = 0; p < quads; p++) {
            __m256i u = _mm256_set1_epi32((int32_t)uq[p]);
            a0 = _mm256_add_epi32(a0, br_qscan_quad(q + p * 64, u, ones));
            a1 = _mm256_add_epi32(a1, br_qscan_quad(q + p * 64 + 32, u, ones));
        }
        br_qscan_block_out(a0, a1, k0, vsu, vce, vadd, out + j * 16, gmax + j);
    }
}

/* AVX2 has too few registers to hold four readers' sums beside a block's
 * loads: one reader after another. */
static void br_qscan_multi_avx2(const br_qscan_query *qs, size_t m, const uint8_t *blk,
                                size_t n_blocks, size_t stride)
{
    for (size_t i = 0; i < m; i++)
        br_qscan_avx2(qs[i].uq, qs[i].ucorr, blk, n_blocks, stride, qs[i].su, qs[i].ce,
                      qs[i].add, qs[i].out, qs[i].gmax);
}

/* The entries both tables share: everything AVX-512 does not improve. */
#define BR_AVX2_COMMON                                                                   \
    .dot = br_dot_avx2, .sgd_mf = br_sgd_mf_avx2, .adam_mf = br_adam_mf_avx2,          \
    .bpr_mf = br_bpr_mf_avx2, .adam_bpr = br_adam_bpr_avx2, .score = br_score_avx2

static const br_kernels br_avx2_table = {.name = "avx2", BR_AVX2_COMMON, .qscan = br_qscan_avx2,
                                         .qscan_multi = br_qscan_multi_avx2};

const br_kernels *br_kernels_avx2_table(void) { return &br_avx2_table; }

/* In br_kernels_avx512.c (AVX-512 F/BW/VNNI); the "avx512" table is this
 * one with the kernels that gain from AVX-512 replaced. */
void br_qscan_avx512(const uint32_t *uq, int32_t ucorr, const uint8_t *blk, size_t n_blocks,
                     size_t stride, float su, float ce, float add, float *out, float *gmax);
void br_qscan_multi_avx512(const br_qscan_query *qs, size_t m, const uint8_t *blk,
                           size_t n_blocks, size_t stride);

static const br_kernels br_avx512_table = {.name = "avx512", BR_AVX2_COMMON,
                                           .qscan = br_qscan_avx512,
                                           .qscan_multi = br_qscan_multi_avx512};

const br_kernels *br_kernels_avx512_table(void) { return &br_avx512_table; }
