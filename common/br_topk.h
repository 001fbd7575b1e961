/*
 * br_topk.h - the k best of n scores by a bounded heap (never a full sort),
 * skipping an excluded set.
 *
 * Order: higher score first; equal scores by lower index (book id order,
 * since internal indices ascend with ids). A NaN score ranks below every
 * number. The result equals a full sort of the non-excluded scores in that
 * order, cut to k, exactly.
 */
#ifndef BR_TOPK_H
#define BR_TOPK_H

#include <stddef.h>
#include <stdint.h>

typedef struct br_scored {
    float score;
    uint32_t idx;
} br_scored;

/* Writes min(k, n - excluded) entries to out, best first, and returns the
 * count. `exclude` lists indices to skip, ascending (NULL if n_ex is 0);
 * out-of-range entries are ignored. */
size_t br_topk(const float *scores, size_t n, const uint32_t *exclude, size_t n_ex, size_t k,
               br_scored *out);

/* The same selection when scores are dear and cheap upper bounds are at
 * hand: upper[i] >= exact(ctx, i) for every i (any value bounds a NaN
 * score). A book is scored exactly only if its bound reaches the k-th best
 * exact score found so far, or `floor` (-INFINITY if none) when it is
 * higher: a score the caller knows the k-th best reaches (the k-th best of
 * k non-excluded books' exact scores, say). gmax, if not NULL, holds the
 * max of upper[] over each aligned group of 16 (ceil(n / 16) entries), so
 * whole groups are passed over with one compare. The result equals br_topk
 * over the exact scores, exactly. */
typedef float (*br_topk_exact_fn)(void *ctx, uint32_t idx);
size_t br_topk_bounded(const float *upper, const float *gmax, float floor, size_t n,
                       const uint32_t *exclude, size_t n_ex, size_t k, br_topk_exact_fn exact,
                       void *ctx, br_scored *out);

/* 1 if a ranks before b in the order above. */
static inline int br_scored_before(br_scored a, br_scored b)
{
    /* NaN != NaN: map NaN to "worst" without branching on the FPU flags. */
    int an = a.score != a.score, bn = b.score != b.score;
    if (an != bn)
        return bn;
    if (!an && a.score != b.score)
        return a.score > b.score;
    return a.idx < b.idx;
}

#endif
