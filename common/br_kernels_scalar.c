/*
 * br_kernels_scalar.c - the reference kernels.
 *
 * Written as eight "lanes" with fmaf so that they perform exactly the
 * operations of the AVX2 code in br_kernels_avx2.c: same products, same fused
 * rounding, same horizontal reduction order. glibc's fmaf uses the CPU's FMA
 * instruction where there is one, so this stays reasonably fast.
 */
#include "br_kernels.h"

#include <string.h>

#include <math.h>

/* The AVX2 horizontal sum's tree: ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)). */
static inline float br_hsum8(const float l[8])
{
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

static float br_dot_scalar(const float *a, const float *b, size_t n)
{
    float acc[8] = {0};
    for (size_t i = 0; i < n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
    return br_hsum8(acc);
}

/* br_dot_scalar's sum in four chains, as the AVX2 training step takes it:
 * chunk j of 8 into chain j mod 4, then lane by lane (0 + 1) + (2 + 3). */
static float br_dot4_scalar(const float *a, const float *b, size_t n)
{
    if (n <= 32)
        return br_dot_scalar(a, b, n);
    float acc[4][8] = {{0}}, s[8];
    for (size_t i = 0; i < n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[(i / 8) % 4][l] = fmaf(a[i + l], b[i + l], acc[(i / 8) % 4][l]);
    for (int l = 0; l < 8; l++)
        s[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    return br_hsum8(s);
}

static float br_sgd_mf_scalar(float *p, float *q, size_t n, float base, float r, float lr,
                              float reg_p, float reg_q)
{
    float e = r - (base + br_dot4_scalar(p, q, n));
    float nrp = -reg_p, nrq = -reg_q;
    for (size_t i = 0; i < n; i++) {
        float pi = p[i], qi = q[i];
        float gp = fmaf(e, qi, nrp * pi);
        float gq = fmaf(e, pi, nrq * qi);
        p[i] = fmaf(lr, gp, pi);
        q[i] = fmaf(lr, gq, qi);
    }
    return e;
}

static float br_adam_mf_scalar(float *p, float *q, float *mp, float *vp, float *mq, float *vq,
                               size_t n, float base, float r, const br_adam *a, float cp,
                               float cq)
{
    float e = r - (base + br_dot_scalar(p, q, n));
    float ne = -e, b1 = a->beta1, b2 = a->beta2, c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        float pi = p[i], qi = q[i];
        float gp = fmaf(ne, qi, a->reg * pi);   /* d/dp of (e^2/2 + reg p^2/2) */
        float gq = fmaf(ne, pi, a->reg * qi);
        float m1 = fmaf(b1, mp[i], c1 * gp);
        float v1 = fmaf(b2, vp[i], (c2 * gp) * gp);
        float m2 = fmaf(b1, mq[i], c1 * gq);
        float v2 = fmaf(b2, vq[i], (c2 * gq) * gq);
        mp[i] = m1;
        vp[i] = v1;
        mq[i] = m2;
        vq[i] = v2;
        p[i] = fmaf(-cp, m1 / (sqrtf(v1) + a->eps), pi);
        q[i] = fmaf(-cq, m2 / (sqrtf(v2) + a->eps), qi);
    }
    return e;
}

static float br_bpr_mf_scalar(float *p, float *qi, float *qj, size_t n, float base_diff,
                              float lr, float reg)
{
    float acc[8] = {0};
    for (size_t i = 0; i < n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(p[i + l], qi[i + l] - qj[i + l], acc[l]);
    float x = base_diff + br_hsum8(acc);
    float g = br_sigmoid_neg(x), ng = -g, nreg = -reg;
    for (size_t i = 0; i < n; i++) {
        float pu = p[i], a = qi[i], b = qj[i];
        float gp = fmaf(g, a - b, nreg * pu);
        float ga = fmaf(g, pu, nreg * a);
        float gb = fmaf(ng, pu, nreg * b);
        p[i] = fmaf(lr, gp, pu);
        qi[i] = fmaf(lr, ga, a);
        qj[i] = fmaf(lr, gb, b);
    }
    return x;
}

/* One Adam moment update and step of a single coordinate (shared by the
 * Adam kernels; mirrors the AVX2 sequence). */
static inline float br_adam_coord(float x, float g, float *m, float *v, const br_adam *a,
                                  float c)
{
    float m1 = fmaf(a->beta1, *m, (1.0f - a->beta1) * g);
    float v1 = fmaf(a->beta2, *v, ((1.0f - a->beta2) * g) * g);
    *m = m1;
    *v = v1;
    return fmaf(-c, m1 / (sqrtf(v1) + a->eps), x);
}

static float br_adam_bpr_scalar(float *p, float *qi, float *qj, float *mp, float *vp,
                                float *mi, float *vi, float *mj, float *vj, size_t n,
                                float base_diff, const br_adam *a, float cp, float ci, float cj)
{
    float acc[8] = {0};
    for (size_t i = 0; i < n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(p[i + l], qi[i + l] - qj[i + l], acc[l]);
    float x = base_diff + br_hsum8(acc);
    float g = br_sigmoid_neg(x), ng = -g;
    for (size_t i = 0; i < n; i++) {
        float pu = p[i], ai = qi[i], bj = qj[i];
        float gp = fmaf(ng, ai - bj, a->reg * pu);
        float ga = fmaf(ng, pu, a->reg * ai);
        float gb = fmaf(g, pu, a->reg * bj);
        p[i] = br_adam_coord(pu, gp, &mp[i], &vp[i], a, cp);
        qi[i] = br_adam_coord(ai, ga, &mi[i], &vi[i], a, ci);
        qj[i] = br_adam_coord(bj, gb, &mj[i], &vj[i], a, cj);
    }
    return x;
}

static void br_score_scalar(const float *u, const float *Q, size_t n_books, size_t stride,
                            const float *bias, float add, float *out)
{
    for (size_t b = 0; b < n_books; b++) {
        float s = br_dot_scalar(u, Q + b * stride, stride);
        out[b] = (add + (bias ? bias[b] : 0.0f)) + s;
    }
}

static void br_qscan_scalar(const uint32_t *uq, int32_t ucorr, const uint8_t *blk,
                            size_t n_blocks, size_t stride, float su, float ce, float add,
                            float *out, float *gmax)
{
    size_t quads = stride / 4, bs = BR_QSCAN_BLOCK_BYTES(stride);
    for (size_t j = 0; j < n_blocks; j++) {
        const uint8_t *q = blk + j * bs, *k = q + 16 * stride;
        for (size_t l = 0; l < 16; l++) {
            uint16_t qe, sh;
            float scale, base;
            memcpy(&qe, k + 2 * l, 2);
            memcpy(&sh, k + 32 + 2 * l, 2);
            uint32_t bits = (uint32_t)sh << 16;
            memcpy(&scale, &bits, 4);
            memcpy(&base, k + 64 + 4 * l, 4);
            int32_t acc = (int32_t)qe - ucorr;
            for (size_t p = 0; p < quads; p++)
                for (int t = 0; t < 4; t++)
                    acc += (int32_t)q[p * 64 + 4 * l + t] * (int8_t)(uint8_t)(uq[p] >> (8 * t));
            out[j * 16 + l] = fmaf(scale, fmaf(su, (float)acc, ce), base) + add;
        }
        float mx = out[j * 16];
        for (size_t l = 1; l < 16; l++)
            mx = out[j * 16 + l] > mx ? out[j * 16 + l] : mx;
        gmax[j] = mx;
    }
}

static void br_qscan_multi_scalar(const br_qscan_query *qs, size_t m, const uint8_t *blk,
                                  size_t n_blocks, size_t stride)
{
    for (size_t i = 0; i < m; i++)
        br_qscan_scalar(qs[i].uq, qs[i].ucorr, blk, n_blocks, stride, qs[i].su, qs[i].ce,
                        qs[i].add, qs[i].out, qs[i].gmax);
}

static const br_kernels br_scalar_table = {
    .name = "scalar",
    .dot = br_dot_scalar,
    .sgd_mf = br_sgd_mf_scalar,
    .adam_mf = br_adam_mf_scalar,
    .bpr_mf = br_bpr_mf_scalar,
    .adam_bpr = br_adam_bpr_scalar,
    .score = br_score_scalar,
    .qscan = br_qscan_scalar,
    .qscan_multi = br_qscan_multi_scalar,
};

const br_kernels *br_kernels_scalar(void) { return &br_scalar_table; }
