/*
 * br_tsne.h - t-SNE (van der Maaten & Hinton 2008) with the Barnes-Hut
 * approximation (van der Maaten 2014), for maps of 10^4 book embeddings.
 *
 *   1. The 3 x perplexity nearest neighbours of every row, exact, from a
 *      vantage-point tree (Yianilos 1993) over squared Euclidean distances.
 *   2. Each row's Gaussian bandwidth by binary search so that its
 *      conditional distribution has the requested perplexity; P made
 *      symmetric and sparse: p_ij = (p_j|i + p_i|j) / 2n.
 *   3. Gradient descent on KL(P || Q) from a given start (PCA by default in
 *      bookrec-viz): early exaggeration (x12 for 250 iterations), momentum
 *      0.5 then 0.8, per-coordinate gains (Jacobs 1988), learning rate
 *      max(n / 12, 200) (Belkina et al. 2019). The learning rate applies to
 *      the gradient without its constant factor 4, as in bhtsne and openTSNE.
 *      Repulsion from a quadtree built each iteration over Morton-ordered
 *      points: cells stored in depth-first order with a skip index, so one
 *      point's traversal is a forward scan with no stack; leaves hold up
 *      to a few points, handled exactly.
 *
 * Every point's forces are computed independently and the normaliser Z is
 * summed in a fixed order, so a run with a given seed and start gives the
 * same layout at any thread count (and is certainly deterministic at -j 1).
 * Library code: never prints; progress goes through a callback.
 */
#ifndef BR_TSNE_H
#define BR_TSNE_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"

/* Called from the optimiser every `progress_every` iterations (on the
 * calling thread). kl is the latest KL estimate (NAN before the first).
 * Return nonzero to stop early (the layout so far is kept). */
typedef int (*br_tsne_progress_fn)(void *ctx, int iter, int iters, double kl);

typedef struct br_tsne_opts {
    double perplexity;        /* 30 */
    double theta;             /* Barnes-Hut accuracy, 0.5; 0 = exact O(n^2) gradient */
    int iters;                /* 1000 */
    double exaggeration;      /* 12 */
    int exaggeration_iters;   /* 250 */
    double learning_rate;     /* 0: max(n / 12, 200) */
    double momentum_early;    /* 0.5, during exaggeration */
    double momentum;          /* 0.8 */
    uint64_t seed;            /* for the vantage points and a random start */
    int threads;              /* >= 1 */
    const float *init;        /* n x 2 start; NULL: Gaussian with std 1e-4 from seed */
    int kl_every;             /* KL estimate every this many iterations (50), for progress */
    int progress_every;       /* callback period in iterations (10) */
    br_tsne_progress_fn progress;
    void *progress_ctx;
} br_tsne_opts;

void br_tsne_default_opts(br_tsne_opts *o);

typedef struct br_tsne_stats {
    double kl;                /* KL(P || Q) of the final layout */
    int iters;                /* iterations run */
    double learning_rate;     /* the rate used */
    double t_knn, t_affinity, t_optimize;  /* seconds */
} br_tsne_stats;

/* The whole method: n rows of d floats at x + i * stride into y (n x 2).
 * A start given in o->init is rescaled to a standard deviation of 1e-4 in
 * its first coordinate (as openTSNE does), so its scale does not matter.
 * Errors: BR_ERR_ARG (n too small for the perplexity: n must exceed
 * 3 * perplexity; bad options), BR_ERR_NUMERIC (NaN in the input or a
 * diverging run), BR_ERR_NOMEM. stats may be NULL. */
br_err br_tsne_run(const float *x, size_t n, size_t d, size_t stride, const br_tsne_opts *o,
                   float *y, br_tsne_stats *stats, br_diag *diag);

/* ---- building blocks (exposed for tests and the window) --------------------- */

/* The k nearest neighbours of every row (itself excluded), nearest first,
 * ties by index: idx and dist2 (squared distances) are n x k. k < n.
 * br_tsne_knn uses the vantage-point tree up to BR_TSNE_VPTREE_MAX_DIM
 * dimensions and brute force (all pairs, SIMD) above: in 32 or 64
 * dimensions a metric tree prunes little and brute force is ~5x faster
 * (bench-viz prints both). The two give the same lists. */
#define BR_TSNE_VPTREE_MAX_DIM 16
br_err br_tsne_knn(const float *x, size_t n, size_t d, size_t stride, size_t k, int threads,
                   uint64_t seed, uint32_t *idx, float *dist2, br_diag *diag);
br_err br_tsne_knn_vptree(const float *x, size_t n, size_t d, size_t stride, size_t k,
                          int threads, uint64_t seed, uint32_t *idx, float *dist2, br_diag *diag);
br_err br_tsne_knn_brute(const float *x, size_t n, size_t d, size_t stride, size_t k,
                         int threads, uint32_t *idx, float *dist2, br_diag *diag);

/* Sparse symmetric joint probabilities, CSR; sum of val is 1. */
typedef struct br_tsne_p {
    size_t n;
    uint64_t *ptr;            /* n + 1 */
    uint32_t *col;            /* ascending within a row, no self */
    float *val;
} br_tsne_p;

/* From the kNN lists (k per row): each row's bandwidth found by binary
 * search to the given perplexity (BR_ERR_ARG unless 1 <= perplexity and
 * k >= perplexity), then symmetrised. */
br_err br_tsne_affinities(const uint32_t *idx, const float *dist2, size_t n, size_t k,
                          double perplexity, int threads, br_tsne_p **out, br_diag *diag);
void br_tsne_p_free(br_tsne_p *p);   /* NULL ok */

/* Perplexity of row i of the conditional P before symmetrisation cannot be
 * recovered from the symmetric P; tests check the search through this. */
double br_tsne_row_perplexity(const float *dist2, size_t k, double perplexity);

/* The gradient of KL(P' || Q) at y, P' = exaggeration * P: grad is n x 2 and
 * is the true derivative (with the factor 4). theta = 0 computes exactly in
 * double precision; theta > 0 uses the Barnes-Hut tree. kl, if not NULL,
 * gets KL(P || Q) (of P itself, not P'). */
br_err br_tsne_gradient(const br_tsne_p *p, const float *y, double theta, double exaggeration,
                        int threads, float *grad, double *kl, br_diag *diag);

/* KL(P || Q) of layout y, exactly (O(n^2); for tests and small n). */
double br_tsne_kl_exact(const br_tsne_p *p, const float *y);

/* Trustworthiness (Venna & Kaski 2001) of layout y (n x 2) for the rows of
 * x at neighbourhood size k: 1 means every k nearest neighbour on the map
 * is among the k nearest in the data. O(n^2 d); k < n / 2. NAN on bad
 * arguments or no memory. */
double br_tsne_trustworthiness(const float *x, size_t n, size_t d, size_t stride,
                               const float *y, size_t k, int threads);

#endif
