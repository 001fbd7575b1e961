/*
 * br_mlp_ops.h - the operations of the seed's dense network (two embeddings
 * -> h1 -> h2 -> 1, ReLU), shared by the trainer (trainer/br_mlp.c) and the
 * scorer (infer/br_recommend.c) so a served score is the trained prediction
 * bit for bit: one definition, one order of operations.
 *
 * Static inline, to be inlined into each caller's BR_MLP_CLONES functions
 * (built for the x86-64 baseline and for AVX2, chosen at load time by GCC's
 * ifunc). No fused multiply-adds (-ffp-contract=off, no "fma" target) and no
 * reassociation, so every clone gives the same bits.
 *
 * Weights, packed as in the model file (docs/FORMAT.md, section mlp):
 * W1[2 dim][h1] (input-major: the user's dim rows, then the book's), b1[h1],
 * W2[h1][h2], b2[h2], w3[h2], b3.
 */
#ifndef BR_MLP_OPS_H
#define BR_MLP_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define BR_MLP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BR_MLP_CLONES
#endif

/* y += a x over n floats. */
static inline void br_mlp_axpy(float *restrict y, float a, const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* Dot product with eight partial sums (element i goes to sum i % 8) added
 * pairwise at the end: a fixed order the compiler can vectorise. */
static inline float br_mlp_dot(const float *restrict a, const float *restrict b, size_t n)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; i++, l++)
        s[l] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* One half of the first layer's pre-activation: out = (bias ? bias : 0) +
 * sum_i x[i] W1[row0 + i] (row0 = 0 for the user half, dim for the book's). */
static inline void br_mlp_half(const float *W1, uint32_t row0, uint32_t dim, uint32_t h1,
                               const float *bias, const float *x, float *out)
{
    if (bias)
        memcpy(out, bias, h1 * sizeof *out);
    else
        memset(out, 0, h1 * sizeof *out);
    for (uint32_t i = 0; i < dim; i++)
        br_mlp_axpy(out, x[i], W1 + (size_t)(row0 + i) * h1, h1);
}

/* The rest of the network from the two halves zu (with b1) and zb:
 * a1 = relu(zu + zb), a2 = relu(b2 + W2^T a1) (ReLU zeros skipped),
 * output w3 . a2 + b3. a1 and a2 receive the activations. */
static inline float br_mlp_head(const float *w, uint32_t dim, uint32_t h1, uint32_t h2,
                                const float *zu, const float *zb, float *a1, float *a2)
{
    const float *W2 = w + (size_t)2 * dim * h1 + h1, *b2 = W2 + (size_t)h1 * h2;
    const float *w3 = b2 + h2, *b3 = w3 + h2;
    for (uint32_t j = 0; j < h1; j++) {
        float z = zu[j] + zb[j];
        a1[j] = z > 0.0f ? z : 0.0f;
    }
    memcpy(a2, b2, h2 * sizeof *a2);
    for (uint32_t j = 0; j < h1; j++)
        if (a1[j] > 0.0f)
            br_mlp_axpy(a2, a1[j], W2 + (size_t)j * h2, h2);
    for (uint32_t k = 0; k < h2; k++)
        a2[k] = a2[k] > 0.0f ? a2[k] : 0.0f;
    return br_mlp_dot(w3, a2, h2) + b3[0];
}

#endif
