/*
 * br_kernels.h - the numeric inner loops, behind a function table chosen once
 * at run time from the CPU's features.
 *
 * Every kernel has a scalar reference (br_kernels_scalar.c) and an AVX2+FMA
 * version (br_kernels_avx2.c, compiled with -mavx2 -mfma). The scalar code
 * performs the very same floating-point operations in the same order as the
 * SIMD code (8 lanes, fused multiply-adds, the same reduction tree), so the
 * two give bit-identical results and tests compare them exactly.
 *
 * Vector lengths `n` are multiples of 8 (rows are zero padded to the stored
 * stride) and rows are 32-byte aligned.
 *
 * THE HOGWILD KERNELS. sgd_mf, adam_mf, bpr_mf and adam_bpr update shared embedding
 * rows with no lock: several trainer threads may read and write the same row
 * at once (Hogwild!, Niu et al. 2011). The races are deliberate and confined
 * to these kernels; a torn update costs a little accuracy, never memory
 * safety (each float is written whole by the hardware). TSan is told to
 * ignore exactly these functions (tests/tsan.supp, for ThreadSanitizer runs).
 */
#ifndef BR_KERNELS_H
#define BR_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of one block of 16 books of br_qscan's quantised copy (qscan). */
#define BR_QSCAN_BLOCK_BYTES(stride) (16 * (size_t)(stride) + 128)

/* One reader's query for qscan_multi: qscan's arguments but the books'. */
typedef struct br_qscan_query {
    const uint32_t *uq;
    int32_t ucorr;
    float su, ce, add;
    float *out, *gmax;
} br_qscan_query;

/* Readers one qscan_multi call takes at most. */
#define BR_QSCAN_MULTI 4

/* Adam constants for one step (see adam_mf). */
typedef struct br_adam {
    float lr;        /* learning rate */
    float beta1, beta2, eps;
    float reg;       /* L2 regularisation folded into the gradient */
} br_adam;

typedef struct br_kernels {
    const char *name;   /* "scalar" or "avx2" */

    /* Dot product of two n-float vectors. */
    float (*dot)(const float *a, const float *b, size_t n);

    /* One SGD step of matrix factorisation on rating r, prediction base + p.q:
     *   e = r - (base + p.q);  p += lr (e q - reg_p p);  q += lr (e p_old - reg_q q),
     * p.q summed as `dot` does for n <= 32, else in four chains of 8-float
     * chunks (chunk j into chain j mod 4, then (0 + 1) + (2 + 3) lane by
     * lane, then the lanes as `dot` does).
     * (Each row has its own L2 weight: the trainer scales it by the row's
     * rating count.) Returns e. Hogwild. */
    float (*sgd_mf)(float *p, float *q, size_t n, float base, float r, float lr, float reg_p,
                    float reg_q);

    /* One lazy-Adam step on the same loss, updating p, q and their first and
     * second moments (mp, vp, mq, vq). cp, cq are the bias-corrected step
     * scales lr * sqrt(1 - beta2^t) / (1 - beta1^t) for each row's own step
     * count t. Returns e. Hogwild. */
    float (*adam_mf)(float *p, float *q, float *mp, float *vp, float *mq, float *vq, size_t n,
                     float base, float r, const br_adam *a, float cp, float cq);

    /* One BPR step for user p, a positive book qi and a negative book qj:
     *   x = base_diff + p.(qi - qj);  g = sigmoid(-x);
     *   p += lr (g (qi - qj) - reg p); qi += lr (g p - reg qi); qj += lr (-g p - reg qj).
     * Returns x. Hogwild. */
    float (*bpr_mf)(float *p, float *qi, float *qj, size_t n, float base_diff, float lr,
                    float reg);

    /* One lazy-Adam step of BPR (same x and g as bpr_mf), updating p, qi,
     * qj and their moments; cp, ci, cj are each row's step scale as in
     * adam_mf. Gradients: -g (qi - qj) + reg p, -g p + reg qi, g p + reg qj.
     * Returns x. Hogwild. */
    float (*adam_bpr)(float *p, float *qi, float *qj, float *mp, float *vp, float *mi,
                      float *vi, float *mj, float *vj, size_t n, float base_diff,
                      const br_adam *a, float cp, float ci, float cj);

    /* Scores every book: out[b] = add + (bias ? bias[b] : 0) + u . Q[b],
     * Q holding n_books rows of `stride` floats; n = stride. */
    void (*score)(const float *u, const float *Q, size_t n_books, size_t stride,
                  const float *bias, float add, float *out);

    /* The quantised pre-scan of br_qscan (see br_qscan.c for the layout and
     * the bound). Block j of 16 books is BR_QSCAN_BLOCK_BYTES(stride) bytes
     * at blk + j BR_QSCAN_BLOCK_BYTES(stride), 64-byte aligned: the books'
     * unsigned values (for each group of four dimensions p, 64 bytes: book
     * l's four at 64 p + 4 l, the lowest dimension first), then for the 16
     * books uint16 qe[16], uint16 scale[16] (the upper half of a float's
     * bits: a bfloat16, its lower half zero) and float base[16]. The reader's
     * values `uq` are stride / 4 words of four int8 (the lowest dimension
     * in the low byte). For every book, the exact integer
     *   acc = qe - ucorr + sum (unsigned value x signed reader value)
     * and then, in this order, with fused multiply-adds,
     *   out[b] = fma(scale, fma(su, (float)acc, ce), base) + add;
     * gmax[j] = the max of out over block j. Integer sums are exact (the
     * products of a pair stay below 2^15, so vpmaddubsw never saturates)
     * and the float steps are the same, so every table gives the same bits. */
    void (*qscan)(const uint32_t *uq, int32_t ucorr, const uint8_t *blk, size_t n_blocks,
                  size_t stride, float su, float ce, float add, float *out, float *gmax);

    /* qscan for m <= BR_QSCAN_MULTI readers at once: the same bits as m
     * qscan calls, but each block of books is read once for all of them
     * (the AVX-512 form; the others make the m calls). */
    void (*qscan_multi)(const br_qscan_query *qs, size_t m, const uint8_t *blk, size_t n_blocks,
                        size_t stride);
} br_kernels;

/* The table for this CPU (avx512 when the CPU has AVX2, FMA and AVX-512
 * F/BW/VNNI, else avx2 when it has AVX2 and FMA, else scalar), chosen on the
 * first call. The environment variable BOOKREC_KERNEL=scalar forces the
 * reference, BOOKREC_KERNEL=avx2 the AVX2 table. Thread-safe. */
const br_kernels *br_kernels_get(void);

const br_kernels *br_kernels_scalar(void);
/* NULL when the CPU lacks AVX2 or FMA. */
const br_kernels *br_kernels_avx2(void);
/* The AVX2 table with the kernels that gain from AVX-512 (F, BW, VNNI) in
 * their AVX-512 form (today: qscan); NULL when the CPU lacks those. */
const br_kernels *br_kernels_avx512(void);

/* Sigmoid of -x, shared by both tables so they agree exactly. */
float br_sigmoid_neg(float x);

#endif
