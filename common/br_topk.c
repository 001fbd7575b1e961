/*
 * br_topk.c - bounded-heap top-k selection.
 *
 * The heap holds the best k seen so far with the worst at the root, so each
 * further candidate costs one comparison unless it enters the heap. The
 * bounded form compares cheap upper bounds with the root and computes a
 * book's exact score only when its bound could enter (br_qscan's use).
 */
#include "br_topk.h"

#include <math.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static void br_sift_down(br_scored *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        /* the root is the entry that ranks last */
        if (l < n && br_scored_before(h[w], h[l]))
            w = l;
        if (r < n && br_scored_before(h[w], h[r]))
            w = r;
        if (w == i)
            return;
        br_scored t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void br_sift_up(br_scored *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!br_scored_before(h[p], h[i]))
            return;
        br_scored t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* 1 if all of x[0..16) are below t (a NaN is not below). With SSE2, the
 * x86-64 baseline, four compares and one mask test; a plain loop elsewhere.
 * Only a pre-test: both forms give the same answer. */
static inline int br_all_below16(const float *x, float t)
{
#if defined(__SSE2__)
    __m128 vt = _mm_set1_ps(t);
    __m128 a = _mm_cmplt_ps(_mm_loadu_ps(x), vt), b = _mm_cmplt_ps(_mm_loadu_ps(x + 4), vt);
    __m128 c = _mm_cmplt_ps(_mm_loadu_ps(x + 8), vt), d = _mm_cmplt_ps(_mm_loadu_ps(x + 12), vt);
    return _mm_movemask_ps(_mm_and_ps(_mm_and_ps(a, b), _mm_and_ps(c, d))) == 0xF;
#else
    int all = 1;
    for (int l = 0; l < 16; l++)
        all &= x[l] < t;
    return all;
#endif
}

/* Offers books lo..hi to the heap h (m entries, at most k): keys[i] is the
 * score itself (exact == NULL) or an upper bound of exact(ctx, i). A book
 * whose key is below thr cannot enter, thr being `floor` (a score the k-th
 * best is known to reach) or, once the heap is full, the root's score if
 * higher. Groups of sixteen are tested at once: by gmax (the max of keys
 * over each aligned group of 16, when given) or by a vector compare. NaN
 * keys and scores take the per-book path, where br_scored_before ranks them
 * last, so the result is the same as offering every book. */
static size_t br_topk_range(const float *keys, const float *gmax, float floor, size_t lo,
                            size_t hi, size_t k, br_scored *h, size_t m,
                            br_topk_exact_fn exact, void *ctx)
{
    float thr = m < k ? floor : fmaxf(floor, h[0].score);
    size_t i = lo;
    while (i < hi) {
        size_t end = i + 16 <= hi ? i + 16 : hi;
        if (end == i + 16) {
            int skip = gmax && (i & 15) == 0 ? gmax[i >> 4] < thr : br_all_below16(keys + i, thr);
            if (skip) {
                i = end;
                continue;
            }
        }
        for (; i < end; i++) {
            if (keys[i] < thr)
                continue;
            br_scored c = {exact ? exact(ctx, (uint32_t)i) : keys[i], (uint32_t)i};
            if (m < k) {
                h[m] = c;
                br_sift_up(h, m);
                if (++m == k)
                    thr = fmaxf(floor, h[0].score);
            } else if (br_scored_before(c, h[0])) {
                h[0] = c;
                br_sift_down(h, m, 0);
                thr = fmaxf(floor, h[0].score);
            }
        }
    }
    return m;
}

size_t br_topk_bounded(const float *keys, const float *gmax, float floor, size_t n,
                       const uint32_t *exclude, size_t n_ex, size_t k, br_topk_exact_fn exact,
                       void *ctx, br_scored *out)
{
    if (k == 0)
        return 0;
    if (floor != floor)
        floor = -INFINITY;
    size_t m = 0, start = 0;
    /* Runs between excluded indices (ascending; duplicates and out-of-range
     * entries are harmless). */
    for (size_t e = 0; e < n_ex && start < n; e++) {
        size_t x = exclude[e];
        if (x < start)
            continue;
        if (x >= n)
            break;
        m = br_topk_range(keys, gmax, floor, start, x, k, out, m, exact, ctx);
        start = x + 1;
    }
    if (start < n)
        m = br_topk_range(keys, gmax, floor, start, n, k, out, m, exact, ctx);
    /* Heap sort in place: repeatedly move the worst to the end. */
    for (size_t end = m; end > 1; end--) {
        br_scored t = out[0];
        out[0] = out[end - 1];
        out[end - 1] = t;
        br_sift_down(out, end - 1, 0);
    }
    return m;
}

size_t br_topk(const float *scores, size_t n, const uint32_t *exclude, size_t n_ex, size_t k,
               br_scored *out)
{
    return br_topk_bounded(scores, NULL, -INFINITY, n, exclude, n_ex, k, NULL, NULL, out);
}
