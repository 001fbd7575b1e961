/*
 * br_topk.c - bounded-heap top-k selection.
 *
 * The heap holds the best k seen so far with the worst at the root, so each
 * further candidate costs one comparison unless it enters the heap.
 */
#include "br_topk.h"

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

static inline void br_offer(br_scored *h, size_t m, float s, uint32_t i, float *thr)
{
    br_scored c = {s, i};
    if (br_scored_before(c, h[0])) {
        h[0] = c;
        br_sift_down(h, m, 0);
        *thr = h[0].score;
    }
}

/* Offers scores[lo..hi) to the heap. Once the heap is full, scores are
 * tested sixteen at a time against the root's: a group is skipped only if
 * every score in it is below, which the exact per-score path would reject
 * one by one (NaN and ties take that exact path), so the result is the
 * same as offering every score. */
static size_t br_topk_range(const float *scores, size_t lo, size_t hi, size_t k, br_scored *h,
                            size_t m)
{
    size_t i = lo;
    for (; i < hi && m < k; i++) {
        h[m] = (br_scored){scores[i], (uint32_t)i};
        br_sift_up(h, m);
        m++;
    }
    if (i >= hi)
        return m;
    float thr = h[0].score;
    for (; i + 16 <= hi; i += 16) {
        const float *x = scores + i;
        if (br_all_below16(x, thr))
            continue;
        for (int l = 0; l < 16; l++)
            if (!(x[l] < thr))
                br_offer(h, m, x[l], (uint32_t)(i + l), &thr);
    }
    for (; i < hi; i++)
        if (!(scores[i] < thr))
            br_offer(h, m, scores[i], (uint32_t)i, &thr);
    return m;
}

size_t br_topk(const float *scores, size_t n, const uint32_t *exclude, size_t n_ex, size_t k,
               br_scored *out)
{
    if (k == 0)
        return 0;
    size_t m = 0, start = 0;
    /* Runs between excluded indices (ascending; duplicates and out-of-range
     * entries are harmless). */
    for (size_t e = 0; e < n_ex && start < n; e++) {
        size_t x = exclude[e];
        if (x < start)
            continue;
        if (x >= n)
            break;
        m = br_topk_range(scores, start, x, k, out, m);
        start = x + 1;
    }
    if (start < n)
        m = br_topk_range(scores, start, n, k, out, m);
    /* Heap sort in place: repeatedly move the worst to the end. */
    for (size_t end = m; end > 1; end--) {
        br_scored t = out[0];
        out[0] = out[end - 1];
        out[end - 1] = t;
        br_sift_down(out, end - 1, 0);
    }
    return m;
}
