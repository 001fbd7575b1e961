/*
 * br_topk.c - bounded-heap top-k selection.
 *
 * The heap holds the best k seen so far with the worst at the root, so each
 * further candidate costs one comparison unless it enters the heap.
 */
#include "br_topk.h"

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

/* Offers scores[lo..hi) to the heap. Once the heap is full, a score below
 * the root's is rejected with one comparison (NaN and ties take the slow,
 * exact path). */
static size_t br_topk_range(const float *scores, size_t lo, size_t hi, size_t k, br_scored *h,
                            size_t m)
{
    size_t i = lo;
    for (; i < hi && m < k; i++) {
        h[m] = (br_scored){scores[i], (uint32_t)i};
        br_sift_up(h, m);
        m++;
    }
    float thr = m ? h[0].score : 0.0f;
    for (; i < hi; i++) {
        float s = scores[i];
        if (s < thr)
            continue;
        br_scored c = {s, (uint32_t)i};
        if (br_scored_before(c, h[0])) {
            h[0] = c;
            br_sift_down(h, m, 0);
            thr = h[0].score;
        }
    }
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
