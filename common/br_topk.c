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

size_t br_topk(const float *scores, size_t n, const uint32_t *exclude, size_t n_ex, size_t k,
               br_scored *out)
{
    if (k == 0)
        return 0;
    size_t m = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        while (e < n_ex && exclude[e] < i)
            e++;
        if (e < n_ex && exclude[e] == i)
            continue;
        br_scored c = {scores[i], (uint32_t)i};
        if (m < k) {
            out[m] = c;
            br_sift_up(out, m);
            m++;
        } else if (br_scored_before(c, out[0])) {
            out[0] = c;
            br_sift_down(out, m, 0);
        }
    }
    /* Heap sort in place: repeatedly move the worst to the end. */
    for (size_t end = m; end > 1; end--) {
        br_scored t = out[0];
        out[0] = out[end - 1];
        out[end - 1] = t;
        br_sift_down(out, end - 1, 0);
    }
    return m;
}
