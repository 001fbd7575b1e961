/*
 * br_tsne.c - Barnes-Hut t-SNE: vantage-point tree kNN, perplexity search,
 * sparse symmetric P, a Morton-ordered quadtree with a stackless traversal,
 * and the gradient descent with exaggeration, momentum and gains. See
 * br_tsne.h for the method and its references.
 */
#include "br_tsne.h"
#include "br_rng.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void br_tsne_default_opts(br_tsne_opts *o)
{
    memset(o, 0, sizeof *o);
    o->perplexity = 30;
    o->theta = 0.5;
    o->iters = 1000;
    o->exaggeration = 12;
    o->exaggeration_iters = 250;
    o->learning_rate = 0;
    o->momentum_early = 0.5;
    o->momentum = 0.8;
    o->seed = 1;
    o->threads = 1;
    o->kl_every = 50;
    o->progress_every = 10;
}

/* ---- distances ------------------------------------------------------------- */

/* Squared Euclidean distance with eight independent partial sums, which the
 * compiler turns into SIMD without reassociating anything itself. */
static inline float sqdist(const float *a, const float *b, size_t d)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t k = 0;
    for (; k + 8 <= d; k += 8)
        for (int l = 0; l < 8; l++) {
            float t = a[k + l] - b[k + l];
            acc[l] += t * t;
        }
    float s = 0;
    for (; k < d; k++) {
        float t = a[k] - b[k];
        s += t * t;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s;
}

static int have_avx2(void);
typedef struct dpair dpair;
static void knn_store(size_t i, dpair *v, size_t m, size_t k, int squared, uint32_t *idx,
                      float *dist2);

/* ---- vantage-point tree ------------------------------------------------------ */

/* The tree lives in the item order itself: the node of range [lo, hi) has
 * its vantage point at items[lo]; points closer than thr[lo] (Euclidean,
 * not squared) fill [lo + 1, mid[lo]), the others [mid[lo], hi). */
typedef struct vptree {
    const float *x;
    size_t d, stride;
    uint32_t *items;
    float *thr;
    uint32_t *mid;
} vptree;

struct dpair {
    float d;
    uint32_t i;
};

static inline int dpair_less(dpair a, dpair b) { return a.d < b.d || (a.d == b.d && a.i < b.i); }

/* Quickselect: puts the k-th smallest of v[0..n) at v[k]. */
static void select_kth(dpair *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        dpair piv = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (dpair_less(v[i], piv))
                i++;
            while (dpair_less(piv, v[j]))
                j--;
            if (i <= j) {
                dpair t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

static void vp_build(vptree *t, dpair *scratch, size_t lo, size_t hi, br_rng *rng)
{
    while (hi - lo > 1) {
        size_t r = lo + br_rng_below(rng, (uint32_t)(hi - lo));
        uint32_t tmp = t->items[lo];
        t->items[lo] = t->items[r];
        t->items[r] = tmp;
        const float *vp = t->x + (size_t)t->items[lo] * t->stride;
        size_t m = hi - lo - 1;
        for (size_t k = 0; k < m; k++) {
            uint32_t it = t->items[lo + 1 + k];
            scratch[k].d = sqrtf(sqdist(vp, t->x + (size_t)it * t->stride, t->d));
            scratch[k].i = it;
        }
        size_t half = m / 2;
        select_kth(scratch, m, half);
        /* Everything before `half` is <= the median: inside; from it on, outside. */
        for (size_t k = 0; k < m; k++)
            t->items[lo + 1 + k] = scratch[k].i;
        t->thr[lo] = scratch[half].d;
        t->mid[lo] = (uint32_t)(lo + 1 + half);
        vp_build(t, scratch, lo + 1, lo + 1 + half, rng);
        lo = lo + 1 + half;   /* tail call on the outside part */
        /* The outer node's fields are set; continue with the outside range
         * as its own node. */
    }
    if (hi - lo == 1) {
        t->thr[lo] = 0;
        t->mid[lo] = (uint32_t)hi;
    }
}

/* A max-heap of the best k (distance, index) pairs found so far. */
typedef struct heap {
    dpair *v;
    size_t n, k;
} heap;

static void heap_push(heap *h, dpair p)
{
    if (h->n == h->k) {
        if (!dpair_less(p, h->v[0]))
            return;
        /* replace the root and sift down */
        size_t i = 0;
        for (;;) {
            size_t l = 2 * i + 1, r = l + 1, m = i;
            dpair best = p;
            if (l < h->n && dpair_less(best, h->v[l])) {
                m = l;
                best = h->v[l];
            }
            if (r < h->n && dpair_less(best, h->v[r]))
                m = r;
            if (m == i)
                break;
            h->v[i] = h->v[m];
            i = m;
        }
        h->v[i] = p;
        return;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t par = (i - 1) / 2;
        if (!dpair_less(h->v[par], p))
            break;
        h->v[i] = h->v[par];
        i = par;
    }
    h->v[i] = p;
}

static inline float heap_tau(const heap *h) { return h->n < h->k ? FLT_MAX : h->v[0].d; }

/* The search radius: the Euclidean distance of the current k-th best
 * (the heap holds squared distances), widened by a hair so that rounding in
 * the square root never prunes a point at exactly that distance; the
 * result is then exactly the brute-force list. */
static inline float vp_tau(const heap *h)
{
    return h->n < h->k ? FLT_MAX : sqrtf(h->v[0].d) * 1.0001f + 1e-30f;
}

static void vp_search(const vptree *t, size_t lo, size_t hi, const float *q, heap *h)
{
    while (lo < hi) {
        uint32_t it = t->items[lo];
        float d2 = sqdist(q, t->x + (size_t)it * t->stride, t->d);
        float dist = sqrtf(d2);
        heap_push(h, (dpair){d2, it});
        if (hi - lo == 1)
            return;
        size_t mid = t->mid[lo];
        float thr = t->thr[lo];
        if (dist < thr) {
            if (lo + 1 < mid && dist - vp_tau(h) <= thr)
                vp_search(t, lo + 1, mid, q, h);
            if (!(dist + vp_tau(h) >= thr))
                return;
            lo = mid;
        } else {
            if (mid < hi && dist + vp_tau(h) >= thr)
                vp_search(t, mid, hi, q, h);
            if (!(dist - vp_tau(h) <= thr))
                return;
            size_t nhi = mid;
            lo = lo + 1;
            hi = nhi;
        }
    }
}

static int cmp_dpair(const void *a, const void *b)
{
    dpair x = *(const dpair *)a, y = *(const dpair *)b;
    return dpair_less(x, y) ? -1 : dpair_less(y, x) ? 1 : 0;
}

br_err br_tsne_knn_vptree(const float *x, size_t n, size_t d, size_t stride, size_t k,
                          int threads, uint64_t seed, uint32_t *idx, float *dist2, br_diag *diag)
{
    if (!x || !idx || !dist2 || d == 0 || stride < d || k == 0 || k >= n || n > UINT32_MAX - 1)
        return br_fail(diag, BR_ERR_ARG, "knn: bad arguments (n %zu, k %zu)", n, k);
    vptree t = {x, d, stride, NULL, NULL, NULL};
    t.items = malloc(n * sizeof *t.items);
    t.thr = malloc(n * sizeof *t.thr);
    t.mid = malloc(n * sizeof *t.mid);
    dpair *scratch = malloc(n * sizeof *scratch);
    if (!t.items || !t.thr || !t.mid || !scratch) {
        free(t.items);
        free(t.thr);
        free(t.mid);
        free(scratch);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        t.items[i] = (uint32_t)i;
    br_rng rng;
    br_rng_seed(&rng, seed ^ 0x7654321ULL);
    vp_build(&t, scratch, 0, n, &rng);
    free(scratch);
    int fail = 0;
#pragma omp parallel num_threads(threads)
    {
        dpair *hv = malloc((k + 1) * sizeof *hv);
        if (!hv) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 32)
        for (size_t i = 0; i < n; i++) {
            if (!hv)
                continue;
            heap h = {hv, 0, k + 1};
            vp_search(&t, 0, n, x + i * stride, &h);
            knn_store(i, h.v, h.n, k, 1, idx, dist2);
        }
        free(hv);
    }
    free(t.items);
    free(t.thr);
    free(t.mid);
    if (fail)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    return BR_OK;
}

/* Brute force: every pair, for rows [i0, i1); distances as sqdist (so the
 * same values as the tree's), the best k + 1 kept in a heap. Built for the
 * baseline ISA and AVX2 like the list evaluation. */
#define BR_TSNE_KNN_ROWS(NAME, ATTR)                                                           \
    ATTR static void NAME(const float *x, size_t n, size_t d, size_t stride, size_t i0,         \
                          size_t i1, heap *h, dpair *out)                                       \
    {                                                                                           \
        for (size_t i = i0; i < i1; i++) {                                                      \
            const float *a = x + i * stride;                                                    \
            h->n = 0;                                                                           \
            float tau = FLT_MAX;                                                                \
            for (size_t j = 0; j < n; j++) {                                                    \
                const float *b = x + j * stride;                                                \
                float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                        \
                size_t c = 0;                                                                   \
                for (; c + 8 <= d; c += 8)                                                      \
                    for (int l = 0; l < 8; l++) {                                               \
                        float t = a[c + l] - b[c + l];                                          \
                        acc[l] += t * t;                                                        \
                    }                                                                           \
                float r = 0;                                                                    \
                for (; c < d; c++) {                                                            \
                    float t = a[c] - b[c];                                                      \
                    r += t * t;                                                                 \
                }                                                                               \
                float dd = ((acc[0] + acc[4]) + (acc[1] + acc[5])) +                            \
                           ((acc[2] + acc[6]) + (acc[3] + acc[7])) + r;                         \
                if (dd <= tau) {                                                                \
                    heap_push(h, (dpair){dd, (uint32_t)j});                                     \
                    tau = heap_tau(h);                                                          \
                }                                                                               \
            }                                                                                   \
            memcpy(out + (i - i0) * h->k, h->v, h->n * sizeof *h->v);                           \
        }                                                                                       \
    }
BR_TSNE_KNN_ROWS(knn_rows_base, )
BR_TSNE_KNN_ROWS(knn_rows_avx2, __attribute__((target("avx2"))))

/* Sorts each row's k + 1 candidates, drops the row itself, stores k. */
static void knn_store(size_t i, dpair *v, size_t m, size_t k, int squared, uint32_t *idx,
                      float *dist2)
{
    qsort(v, m, sizeof *v, cmp_dpair);
    size_t w = 0;
    for (size_t r = 0; r < m && w < k; r++) {
        if (v[r].i == i)
            continue;
        idx[i * k + w] = v[r].i;
        dist2[i * k + w] = squared ? v[r].d : v[r].d * v[r].d;
        w++;
    }
}

br_err br_tsne_knn_brute(const float *x, size_t n, size_t d, size_t stride, size_t k,
                         int threads, uint32_t *idx, float *dist2, br_diag *diag)
{
    if (!x || !idx || !dist2 || d == 0 || stride < d || k == 0 || k >= n || n > UINT32_MAX - 1)
        return br_fail(diag, BR_ERR_ARG, "knn: bad arguments (n %zu, k %zu)", n, k);
    const size_t block = 16;
    int fail = 0, avx2 = have_avx2();
#pragma omp parallel num_threads(threads)
    {
        dpair *hv = malloc((k + 1) * sizeof *hv);
        dpair *out = malloc(block * (k + 1) * sizeof *out);
        if (!hv || !out) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (size_t i0 = 0; i0 < n; i0 += block) {
            if (!hv || !out)
                continue;
            size_t i1 = i0 + block < n ? i0 + block : n;
            heap h = {hv, 0, k + 1};
            if (avx2)
                knn_rows_avx2(x, n, d, stride, i0, i1, &h, out);
            else
                knn_rows_base(x, n, d, stride, i0, i1, &h, out);
            for (size_t i = i0; i < i1; i++)
                knn_store(i, out + (i - i0) * (k + 1), k + 1, k, 1, idx, dist2);
        }
        free(hv);
        free(out);
    }
    if (fail)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    return BR_OK;
}

br_err br_tsne_knn(const float *x, size_t n, size_t d, size_t stride, size_t k, int threads,
                   uint64_t seed, uint32_t *idx, float *dist2, br_diag *diag)
{
    if (d > BR_TSNE_VPTREE_MAX_DIM)
        return br_tsne_knn_brute(x, n, d, stride, k, threads, idx, dist2, diag);
    return br_tsne_knn_vptree(x, n, d, stride, k, threads, seed, idx, dist2, diag);
}

/* ---- affinities ------------------------------------------------------------ */

/* Binary search on beta = 1 / (2 sigma^2) so that the row's conditional
 * distribution has entropy log(perplexity). Writes the row into p. */
static void row_search(const float *dist2, size_t k, double perplexity, double *p)
{
    double target = log(perplexity), beta = 1, lo = -DBL_MAX, hi = DBL_MAX;
    double dmin = dist2[0];
    for (size_t m = 1; m < k; m++)
        if (dist2[m] < dmin)
            dmin = dist2[m];
    /* Start from a bandwidth on the scale of the distances. */
    double mean = 0;
    for (size_t m = 0; m < k; m++)
        mean += dist2[m] - dmin;
    mean /= (double)k;
    if (mean > 0)
        beta = 1 / mean;
    for (int iter = 0; iter < 200; iter++) {
        double sum = 0, dot = 0;
        for (size_t m = 0; m < k; m++) {
            double e = dist2[m] - dmin;
            p[m] = exp(-beta * e);
            sum += p[m];
            dot += e * p[m];
        }
        double h = log(sum) + beta * dot / sum;
        double diff = h - target;
        if (fabs(diff) < 1e-5)
            break;
        if (diff > 0) {   /* too flat: narrower */
            lo = beta;
            beta = hi == DBL_MAX ? beta * 2 : (beta + hi) / 2;
        } else {
            hi = beta;
            beta = lo == -DBL_MAX ? beta / 2 : (beta + lo) / 2;
        }
    }
    double sum = 0;
    for (size_t m = 0; m < k; m++) {
        p[m] = exp(-beta * (dist2[m] - dmin));
        sum += p[m];
    }
    for (size_t m = 0; m < k; m++)
        p[m] /= sum;
}

double br_tsne_row_perplexity(const float *dist2, size_t k, double perplexity)
{
    double *p = malloc(k * sizeof *p);
    if (!p)
        return NAN;
    row_search(dist2, k, perplexity, p);
    double h = 0;
    for (size_t m = 0; m < k; m++)
        if (p[m] > 0)
            h -= p[m] * log(p[m]);
    free(p);
    return exp(h);
}

void br_tsne_p_free(br_tsne_p *p)
{
    if (!p)
        return;
    free(p->ptr);
    free(p->col);
    free(p->val);
    free(p);
}

typedef struct centry {
    uint32_t col;
    float val;
} centry;

static int cmp_centry(const void *a, const void *b)
{
    uint32_t x = ((const centry *)a)->col, y = ((const centry *)b)->col;
    return (x > y) - (x < y);
}

br_err br_tsne_affinities(const uint32_t *idx, const float *dist2, size_t n, size_t k,
                          double perplexity, int threads, br_tsne_p **out, br_diag *diag)
{
    if (!out)
        return br_fail(diag, BR_ERR_ARG, "affinities: no output handle");
    *out = NULL;
    if (!idx || !dist2 || n < 2 || k == 0 || k >= n)
        return br_fail(diag, BR_ERR_ARG, "affinities: bad arguments (n %zu, k %zu)", n, k);
    if (!(perplexity >= 1) || (double)k < perplexity)
        return br_fail(diag, BR_ERR_ARG, "perplexity %g needs between 1 and %zu neighbours",
                       perplexity, k);
    for (size_t i = 0; i < n * k; i++)
        if (idx[i] >= n || idx[i] == i / k || !isfinite(dist2[i]))
            return br_fail(diag, BR_ERR_ARG, "affinities: bad neighbour list of row %zu", i / k);
    float *cond = malloc(n * k * sizeof *cond);
    uint64_t *cnt = calloc(n + 1, sizeof *cnt);
    br_tsne_p *p = calloc(1, sizeof *p);
    centry *ent = NULL;
    int fail = 0;
    if (!cond || !cnt || !p)
        goto nomem;
#pragma omp parallel num_threads(threads)
    {
        double *row = malloc(k * sizeof *row);
        if (!row) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; i++) {
            if (!row)
                continue;
            row_search(dist2 + i * k, k, perplexity, row);
            for (size_t m = 0; m < k; m++)
                cond[i * k + m] = (float)row[m];
        }
        free(row);
    }
    if (fail)
        goto nomem;
    /* Row i gets its own k entries and one per row that lists i. */
    for (size_t i = 0; i < n; i++)
        cnt[i + 1] += k;
    for (size_t e = 0; e < n * k; e++)
        cnt[idx[e] + 1]++;
    for (size_t i = 0; i < n; i++)
        cnt[i + 1] += cnt[i];
    ent = malloc(cnt[n] * sizeof *ent);
    uint64_t *fill = malloc(n * sizeof *fill);
    if (!ent || !fill) {
        free(fill);
        goto nomem;
    }
    memcpy(fill, cnt, n * sizeof *fill);
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < k; m++) {
            uint32_t j = idx[i * k + m];
            float v = cond[i * k + m];
            ent[fill[i]++] = (centry){j, v};
            ent[fill[j]++] = (centry){(uint32_t)i, v};
        }
    free(fill);
    free(cond);
    cond = NULL;
    /* Sort each row by column and merge the pairs listed from both ends. */
    p->n = n;
    p->ptr = malloc((n + 1) * sizeof *p->ptr);
    uint64_t *rowlen = malloc(n * sizeof *rowlen);
    if (!p->ptr || !rowlen) {
        free(rowlen);
        goto nomem;
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 64)
    for (size_t i = 0; i < n; i++) {
        centry *r = ent + cnt[i];
        size_t len = (size_t)(cnt[i + 1] - cnt[i]), w = 0;
        qsort(r, len, sizeof *r, cmp_centry);
        for (size_t a = 0; a < len; a++) {
            if (w > 0 && r[w - 1].col == r[a].col)
                r[w - 1].val += r[a].val;
            else
                r[w++] = r[a];
        }
        rowlen[i] = w;
    }
    p->ptr[0] = 0;
    for (size_t i = 0; i < n; i++)
        p->ptr[i + 1] = p->ptr[i] + rowlen[i];
    size_t nnz = (size_t)p->ptr[n];
    p->col = malloc((nnz ? nnz : 1) * sizeof *p->col);
    p->val = malloc((nnz ? nnz : 1) * sizeof *p->val);
    if (!p->col || !p->val) {
        free(rowlen);
        goto nomem;
    }
    double scale = 1.0 / (2.0 * (double)n);
    for (size_t i = 0; i < n; i++)
        for (size_t a = 0; a < rowlen[i]; a++) {
            p->col[p->ptr[i] + a] = ent[cnt[i] + a].col;
            p->val[p->ptr[i] + a] = (float)(ent[cnt[i] + a].val * scale);
        }
    free(rowlen);
    free(ent);
    free(cnt);
    *out = p;
    return BR_OK;
nomem:
    free(cond);
    free(cnt);
    free(ent);
    br_tsne_p_free(p);
    return br_fail(diag, BR_ERR_NOMEM, "out of memory");
}

/* ---- quadtree -------------------------------------------------------------- */

#define QT_LEAF 8       /* points a leaf may hold */
#define QT_GROUP 64     /* points of a group that shares one traversal */
#define QT_LEVELS 16    /* bits per axis of the Morton code */

/* A cell in depth-first order. Its subtree occupies [self, next). */
typedef struct qnode {
    float cx, cy;       /* centre of mass */
    float w2;           /* (cell width / theta)^2: accept if w2 < distance^2 */
    float cnt;          /* points inside */
    uint32_t next;      /* index after the subtree */
    uint32_t first;     /* leaf: first point (sorted order); else 0 */
    uint32_t npts;      /* leaf: number of points; internal: 0 */
    uint32_t gfirst;    /* first point of the subtree (sorted order) */
} qnode;

typedef struct qtree {
    size_t n;
    qnode *nodes;
    size_t nn, cap;
    uint32_t *code, *perm, *tmp_code, *tmp_perm;
    float *sx, *sy;     /* positions in Morton order */
    uint32_t *leaves;   /* groups: the topmost nodes of <= QT_GROUP points */
    size_t nleaves;
    double side, inv_theta2;
} qtree;

static void qtree_free(qtree *t)
{
    free(t->nodes);
    free(t->code);
    free(t->perm);
    free(t->tmp_code);
    free(t->tmp_perm);
    free(t->sx);
    free(t->sy);
    free(t->leaves);
}

static int qtree_init(qtree *t, size_t n)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->cap = 2 * n + 64;
    t->nodes = malloc(t->cap * sizeof *t->nodes);
    t->code = malloc(n * sizeof *t->code);
    t->perm = malloc(n * sizeof *t->perm);
    t->tmp_code = malloc(n * sizeof *t->tmp_code);
    t->tmp_perm = malloc(n * sizeof *t->tmp_perm);
    t->sx = malloc(n * sizeof *t->sx);
    t->sy = malloc(n * sizeof *t->sy);
    t->leaves = malloc(n * sizeof *t->leaves);
    return t->nodes && t->code && t->perm && t->tmp_code && t->tmp_perm && t->sx && t->sy &&
           t->leaves;
}

static inline uint32_t spread16(uint32_t v)
{
    v &= 0xFFFF;
    v = (v | (v << 8)) & 0x00FF00FF;
    v = (v | (v << 4)) & 0x0F0F0F0F;
    v = (v | (v << 2)) & 0x33333333;
    v = (v | (v << 1)) & 0x55555555;
    return v;
}

/* Builds the subtree of sorted points [lo, hi) at `level`; returns 0 when
 * the node array cannot grow. */
static int qt_build(qtree *t, size_t lo, size_t hi, int level, int in_group)
{
    if (t->nn == t->cap) {
        size_t cap = t->cap * 2;
        qnode *p = realloc(t->nodes, cap * sizeof *p);
        if (!p)
            return 0;
        t->nodes = p;
        t->cap = cap;
    }
    size_t me = t->nn++;
    if (!in_group && hi - lo <= QT_GROUP) {
        t->leaves[t->nleaves++] = (uint32_t)me;
        in_group = 1;
    }
    double width = t->side / (double)(1u << level);
    float w2 = (float)(width * width * t->inv_theta2);
    if (hi - lo <= QT_LEAF) {
        double cx = 0, cy = 0;
        for (size_t k = lo; k < hi; k++) {
            cx += t->sx[k];
            cy += t->sy[k];
        }
        double m = (double)(hi - lo);
        t->nodes[me] = (qnode){(float)(cx / m), (float)(cy / m), w2, (float)m, 0,
                               (uint32_t)lo, (uint32_t)(hi - lo), 0};
        t->nodes[me].next = (uint32_t)t->nn;
        t->nodes[me].gfirst = (uint32_t)lo;
        return 1;
    }
    if (level == QT_LEVELS) {
        /* More than a leaf's worth of points in the finest cell (duplicates
         * or near-duplicates): leaves of QT_LEAF points side by side. */
        double cx = 0, cy = 0;
        for (size_t a = lo; a < hi; a += QT_LEAF) {
            size_t b = a + QT_LEAF < hi ? a + QT_LEAF : hi;
            size_t child = t->nn;
            if (!qt_build(t, a, b, level, in_group))
                return 0;
            cx += (double)t->nodes[child].cx * t->nodes[child].cnt;
            cy += (double)t->nodes[child].cy * t->nodes[child].cnt;
        }
        double m = (double)(hi - lo);
        t->nodes[me] = (qnode){(float)(cx / m), (float)(cy / m), w2, (float)m, (uint32_t)t->nn,
                               0, 0, (uint32_t)lo};
        return 1;
    }
    int shift = 2 * (QT_LEVELS - 1 - level);
    double cx = 0, cy = 0;
    size_t a = lo;
    while (a < hi) {
        uint32_t q = (t->code[a] >> shift) & 3;
        size_t b = a + 1;
        while (b < hi && ((t->code[b] >> shift) & 3) == q)
            b++;
        size_t child = t->nn;
        if (!qt_build(t, a, b, level + 1, in_group))
            return 0;
        const qnode *c = &t->nodes[child];
        cx += (double)c->cx * c->cnt;
        cy += (double)c->cy * c->cnt;
        a = b;
    }
    double m = (double)(hi - lo);
    t->nodes[me] = (qnode){(float)(cx / m), (float)(cy / m), w2, (float)m, (uint32_t)t->nn, 0, 0,
                           (uint32_t)lo};
    return 1;
}

/* Morton codes, a stable radix sort of them, and the tree. */
static int qtree_build(qtree *t, const float *y, double theta)
{
    size_t n = t->n;
    float minx = FLT_MAX, miny = FLT_MAX, maxx = -FLT_MAX, maxy = -FLT_MAX;
    for (size_t i = 0; i < n; i++) {
        float a = y[2 * i], b = y[2 * i + 1];
        minx = a < minx ? a : minx;
        maxx = a > maxx ? a : maxx;
        miny = b < miny ? b : miny;
        maxy = b > maxy ? b : maxy;
    }
    double side = fmax((double)maxx - minx, (double)maxy - miny);
    if (!(side > 0))
        side = 1e-6;
    side *= 1.0 + 1e-5;
    t->side = side;
    t->inv_theta2 = 1.0 / (theta * theta);
    double sc = 65536.0 / side;
    for (size_t i = 0; i < n; i++) {
        double qx = (y[2 * i] - minx) * sc, qy = (y[2 * i + 1] - miny) * sc;
        uint32_t ix = qx >= 65535 ? 65535 : (uint32_t)qx, iy = qy >= 65535 ? 65535 : (uint32_t)qy;
        t->code[i] = (spread16(iy) << 1) | spread16(ix);
        t->perm[i] = (uint32_t)i;
    }
    /* LSD radix sort, 4 passes of 8 bits; stable, so ties keep index order. */
    uint32_t *sc_code = t->code, *sc_perm = t->perm, *dc = t->tmp_code, *dp = t->tmp_perm;
    for (int pass = 0; pass < 4; pass++) {
        size_t hist[257] = {0};
        int sh = 8 * pass;
        for (size_t i = 0; i < n; i++)
            hist[((sc_code[i] >> sh) & 255) + 1]++;
        for (int b = 0; b < 256; b++)
            hist[b + 1] += hist[b];
        for (size_t i = 0; i < n; i++) {
            size_t pos = hist[(sc_code[i] >> sh) & 255]++;
            dc[pos] = sc_code[i];
            dp[pos] = sc_perm[i];
        }
        uint32_t *t1 = sc_code, *t2 = sc_perm;
        sc_code = dc;
        sc_perm = dp;
        dc = t1;
        dp = t2;
    }
    /* after 4 passes the sorted data is back in t->code / t->perm */
    for (size_t k = 0; k < n; k++) {
        t->sx[k] = y[2 * (size_t)t->perm[k]];
        t->sy[k] = y[2 * (size_t)t->perm[k] + 1];
    }
    t->nn = 0;
    t->nleaves = 0;
    return qt_build(t, 0, n, 0, 0);
}

/* The list evaluation of the group walk: sums over L entries (a multiple
 * of 8) of m q, m q^2 dx, m q^2 dy in eight lanes, reduced in a fixed tree.
 * Built twice, for the baseline ISA and for AVX2 (run-time choice); both
 * do the very same operations in the same order, so they agree bit for bit. */
#define BR_TSNE_EVAL_LIST(NAME, ATTR)                                                          \
    ATTR static void NAME(const float *lx, const float *ly, const float *lm, size_t L, float xi, \
                          float yi, float out[3])                                               \
    {                                                                                           \
        float az[8] = {0}, ax[8] = {0}, ay[8] = {0};                                            \
        for (size_t e = 0; e < L; e += 8)                                                       \
            for (int l = 0; l < 8; l++) {                                                       \
                float dx = xi - lx[e + l], dy = yi - ly[e + l];                                 \
                float q = 1.0f / (1.0f + dx * dx + dy * dy), mq = lm[e + l] * q, mqq = mq * q;  \
                az[l] += mq;                                                                    \
                ax[l] += mqq * dx;                                                              \
                ay[l] += mqq * dy;                                                              \
            }                                                                                   \
        out[0] = ((az[0] + az[4]) + (az[1] + az[5])) + ((az[2] + az[6]) + (az[3] + az[7]));     \
        out[1] = ((ax[0] + ax[4]) + (ax[1] + ax[5])) + ((ax[2] + ax[6]) + (ax[3] + ax[7]));     \
        out[2] = ((ay[0] + ay[4]) + (ay[1] + ay[5])) + ((ay[2] + ay[6]) + (ay[3] + ay[7]));     \
    }
BR_TSNE_EVAL_LIST(eval_list_base, )

/* The same with AVX2 intrinsics (the compiler's own vectorisation of the
 * macro shuffles lanes needlessly): lane l of each register is lane l of
 * the arrays above, and every operation is the scalar one, in its order. */
__attribute__((target("avx2"))) static void eval_list_avx2(const float *lx, const float *ly,
                                                           const float *lm, size_t L, float xi,
                                                           float yi, float out[3])
{
    const __m256 X = _mm256_set1_ps(xi), Y = _mm256_set1_ps(yi), one = _mm256_set1_ps(1.0f);
    __m256 az = _mm256_setzero_ps(), ax = _mm256_setzero_ps(), ay = _mm256_setzero_ps();
    for (size_t e = 0; e < L; e += 8) {
        __m256 dx = _mm256_sub_ps(X, _mm256_loadu_ps(lx + e));
        __m256 dy = _mm256_sub_ps(Y, _mm256_loadu_ps(ly + e));
        __m256 den = _mm256_add_ps(_mm256_add_ps(one, _mm256_mul_ps(dx, dx)), _mm256_mul_ps(dy, dy));
        __m256 q = _mm256_div_ps(one, den);
        __m256 mq = _mm256_mul_ps(_mm256_loadu_ps(lm + e), q);
        __m256 mqq = _mm256_mul_ps(mq, q);
        az = _mm256_add_ps(az, mq);
        ax = _mm256_add_ps(ax, _mm256_mul_ps(mqq, dx));
        ay = _mm256_add_ps(ay, _mm256_mul_ps(mqq, dy));
    }
    float a[8], b[8], c[8];
    _mm256_storeu_ps(a, az);
    _mm256_storeu_ps(b, ax);
    _mm256_storeu_ps(c, ay);
    out[0] = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    out[1] = ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
    out[2] = ((c[0] + c[4]) + (c[1] + c[5])) + ((c[2] + c[6]) + (c[3] + c[7]));
}

/* 1 when the CPU has AVX2 (and BOOKREC_KERNEL is not "scalar"). */
static int have_avx2(void)
{
    static int v = -1;
    int r;
#pragma omp atomic read
    r = v;
    if (r < 0) {
        const char *k = getenv("BOOKREC_KERNEL");
        __builtin_cpu_init();
        r = __builtin_cpu_supports("avx2") && !(k && strcmp(k, "scalar") == 0);
#pragma omp atomic write
        v = r;
    }
    return r;
}

/* Repulsion on the points of one leaf (a group walk, Barnes 1990): one
 * traversal per leaf collects the cells accepted for the whole leaf (by the
 * distance from the cell's centre of mass to the leaf's bounding box, which
 * is at most the distance to any of its points, so the criterion is never
 * looser than per point) and the single points of the leaves not accepted;
 * then each point of the leaf runs over that list in a branch-free loop of
 * eight lanes. The leaf's own points are handled exactly, without self.
 * Writes, per sorted point s of the leaf, fx, fy = sum q^2 (y_s - y_j) and
 * z = sum q over j != s, q = 1 / (1 + |y_s - y_j|^2). lx/ly/lm hold room
 * for n + nodes + 8 entries. */
static void qt_repulse_leaf(const qtree *t, uint32_t leaf, float *lx, float *ly, float *lm,
                            float *fx, float *fy, float *z, int avx2)
{
    const qnode *nodes = t->nodes;
    const qnode *g = &nodes[leaf];
    uint32_t g0 = g->gfirst, gn = (uint32_t)g->cnt, gend = g->next;
    float gx0 = FLT_MAX, gx1 = -FLT_MAX, gy0 = FLT_MAX, gy1 = -FLT_MAX;
    for (uint32_t p = g0; p < g0 + gn; p++) {
        gx0 = t->sx[p] < gx0 ? t->sx[p] : gx0;
        gx1 = t->sx[p] > gx1 ? t->sx[p] : gx1;
        gy0 = t->sy[p] < gy0 ? t->sy[p] : gy0;
        gy1 = t->sy[p] > gy1 ? t->sy[p] : gy1;
    }
    size_t L = 0;
    uint32_t k = 0, nn = (uint32_t)t->nn;
    while (k < nn) {
        const qnode *nd = &nodes[k];
        if (k == leaf) {   /* the group itself: done exactly below */
            k = gend;
            continue;
        }
        if (k < leaf && nd->next > leaf) {   /* an ancestor of the group: always open it */
            k++;                             /* (at theta > 0.7 it could be accepted and */
            continue;                        /* count the group's points twice) */
        }
        /* distance from the centre of mass to the leaf's box, per axis */
        float dx = gx0 - nd->cx > 0 ? gx0 - nd->cx : nd->cx - gx1 > 0 ? nd->cx - gx1 : 0.0f;
        float dy = gy0 - nd->cy > 0 ? gy0 - nd->cy : nd->cy - gy1 > 0 ? nd->cy - gy1 : 0.0f;
        if (nd->w2 < dx * dx + dy * dy) {
            lx[L] = nd->cx;
            ly[L] = nd->cy;
            lm[L] = nd->cnt;
            L++;
            k = nd->next;
        } else if (nd->npts) {
            for (uint32_t p = nd->first; p < nd->first + nd->npts; p++) {
                lx[L] = t->sx[p];
                ly[L] = t->sy[p];
                lm[L] = 1.0f;
                L++;
            }
            k = nd->next;
        } else {
            k++;
        }
    }
    while (L % 8) {   /* padding that contributes nothing */
        lx[L] = 0;
        ly[L] = 0;
        lm[L] = 0;
        L++;
    }
    for (uint32_t s = g0; s < g0 + gn; s++) {
        const float xi = t->sx[s], yi = t->sy[s];
        float acc[3];
        if (avx2)
            eval_list_avx2(lx, ly, lm, L, xi, yi, acc);
        else
            eval_list_base(lx, ly, lm, L, xi, yi, acc);
        float sz = acc[0], sx = acc[1], sy = acc[2];
        for (uint32_t p = g0; p < g0 + gn; p++) {
            if (p == s)
                continue;
            float dx = xi - t->sx[p], dy = yi - t->sy[p];
            float q = 1.0f / (1.0f + dx * dx + dy * dy);
            sz += q;
            sx += q * q * dx;
            sy += q * q * dy;
        }
        fx[s - g0] = sx;
        fy[s - g0] = sy;
        z[s - g0] = sz;
    }
}

/* ---- gradient -------------------------------------------------------------- */

/* Workspace of the optimiser's force evaluations. */
typedef struct tsne_ws {
    size_t n;
    qtree tree;
    float *rep;         /* n x 2 repulsion sums (original order) */
    float *zrow;        /* n per-point sums of q */
    double *klrow;      /* n per-row sums of p log(1 + d^2) */
    double plogp;       /* sum of p log p, NAN until computed */
} tsne_ws;

static void ws_free(tsne_ws *w)
{
    qtree_free(&w->tree);
    free(w->rep);
    free(w->zrow);
    free(w->klrow);
}

static int ws_init(tsne_ws *w, size_t n)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->plogp = NAN;
    int ok = qtree_init(&w->tree, n);
    w->rep = malloc(2 * n * sizeof *w->rep);
    w->zrow = malloc(n * sizeof *w->zrow);
    w->klrow = malloc(n * sizeof *w->klrow);
    return ok && w->rep && w->zrow && w->klrow;
}

/* force = exaggeration * attraction - repulsion / Z (the gradient / 4).
 * Returns 0 if the tree could not be allocated. With want_kl, *kl gets
 * KL(P || Q) with Q's normaliser from the same approximation. */
static int forces_bh(tsne_ws *w, const br_tsne_p *p, const float *y, double theta, double exag,
                     int threads, float *force, int want_kl, double *kl)
{
    size_t n = w->n;
    if (!qtree_build(&w->tree, y, theta))
        return 0;
    const qtree *t = &w->tree;
    int fail = 0, avx2 = have_avx2();
    /* One parallel region, one barrier per evaluation: the groups'
     * repulsion, then (without waiting) the rows' attraction into force[];
     * the two are combined once Z is known. Fewer synchronisation points
     * matter on a busy machine, where a waiting thread may be descheduled. */
#pragma omp parallel num_threads(threads)
    {
        size_t cap = n + t->nn + 8;
        float *lx = malloc(cap * sizeof *lx), *ly = malloc(cap * sizeof *ly);
        float *lm = malloc(cap * sizeof *lm);
        float fx[QT_GROUP], fy[QT_GROUP], z[QT_GROUP];
        if (!lx || !ly || !lm) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1) nowait
        for (size_t g = 0; g < t->nleaves; g++) {
            if (!lx || !ly || !lm)
                continue;
            const qnode *leaf = &t->nodes[t->leaves[g]];
            qt_repulse_leaf(t, t->leaves[g], lx, ly, lm, fx, fy, z, avx2);
            for (uint32_t s = 0; s < (uint32_t)leaf->cnt; s++) {
                size_t i = t->perm[leaf->gfirst + s];
                w->rep[2 * i] = fx[s];
                w->rep[2 * i + 1] = fy[s];
                w->zrow[i] = z[s];
            }
        }
#pragma omp for schedule(dynamic, 256)
        for (size_t i = 0; i < n; i++) {
            float xi = y[2 * i], yi = y[2 * i + 1], ax = 0, ay = 0;
            double klr = 0;
            for (uint64_t e = p->ptr[i]; e < p->ptr[i + 1]; e++) {
                uint32_t j = p->col[e];
                float dx = xi - y[2 * (size_t)j], dy = yi - y[2 * (size_t)j + 1];
                float d2 = dx * dx + dy * dy;
                float q = 1.0f / (1.0f + d2), pq = p->val[e] * q;
                ax += pq * dx;
                ay += pq * dy;
                if (want_kl)
                    klr += (double)p->val[e] * log1p((double)d2);
            }
            force[2 * i] = ax;
            force[2 * i + 1] = ay;
            w->klrow[i] = klr;
        }
        free(lx);
        free(ly);
        free(lm);
    }
    if (fail)
        return 0;
    double zsum = 0;
    for (size_t i = 0; i < n; i++)
        zsum += w->zrow[i];
    float inv_z = (float)(1.0 / zsum);
    float ex = (float)exag;
    for (size_t i = 0; i < 2 * n; i++)
        force[i] = ex * force[i] - w->rep[i] * inv_z;
    if (want_kl) {
        if (isnan(w->plogp)) {   /* sum p log p: a constant of the run, computed once */
            double c = 0;
            for (uint64_t e = 0; e < p->ptr[n]; e++)
                if (p->val[e] > 0)
                    c += (double)p->val[e] * log((double)p->val[e]);
            w->plogp = c;
        }
        double s = 0;
        for (size_t i = 0; i < n; i++)
            s += w->klrow[i];
        *kl = w->plogp + s + log(zsum);
    }
    return 1;
}

/* The same exactly, in double precision, O(n^2). */
static int forces_exact(const br_tsne_p *p, const float *y, double exag, int threads,
                        float *force, double *kl)
{
    size_t n = p->n;
    double *rep = malloc(2 * n * sizeof *rep), *zr = malloc(n * sizeof *zr);
    if (!rep || !zr) {
        free(rep);
        free(zr);
        return 0;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) {
        double fx = 0, fy = 0, z = 0;
        for (size_t j = 0; j < n; j++) {
            if (j == i)
                continue;
            double dx = (double)y[2 * i] - y[2 * j], dy = (double)y[2 * i + 1] - y[2 * j + 1];
            double q = 1 / (1 + dx * dx + dy * dy);
            z += q;
            fx += q * q * dx;
            fy += q * q * dy;
        }
        rep[2 * i] = fx;
        rep[2 * i + 1] = fy;
        zr[i] = z;
    }
    double zsum = 0, klsum = 0;
    for (size_t i = 0; i < n; i++)
        zsum += zr[i];
    for (size_t i = 0; i < n; i++) {
        double ax = 0, ay = 0;
        for (uint64_t e = p->ptr[i]; e < p->ptr[i + 1]; e++) {
            size_t j = p->col[e];
            double dx = (double)y[2 * i] - y[2 * j], dy = (double)y[2 * i + 1] - y[2 * j + 1];
            double d2 = dx * dx + dy * dy, q = 1 / (1 + d2), pv = p->val[e];
            ax += pv * q * dx;
            ay += pv * q * dy;
            if (pv > 0)
                klsum += pv * (log(pv) + log1p(d2));
        }
        force[2 * i] = (float)(exag * ax - rep[2 * i] / zsum);
        force[2 * i + 1] = (float)(exag * ay - rep[2 * i + 1] / zsum);
    }
    if (kl)
        *kl = klsum + log(zsum);
    free(rep);
    free(zr);
    return 1;
}

br_err br_tsne_gradient(const br_tsne_p *p, const float *y, double theta, double exaggeration,
                        int threads, float *grad, double *kl, br_diag *diag)
{
    if (!p || !y || !grad || p->n < 2 || theta < 0 || threads < 1)
        return br_fail(diag, BR_ERR_ARG, "gradient: bad arguments");
    size_t n = p->n;
    double klv = NAN;
    if (theta == 0) {
        if (!forces_exact(p, y, exaggeration, threads, grad, &klv))
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    } else {
        tsne_ws w;
        if (!ws_init(&w, n)) {
            ws_free(&w);
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
        }
        int ok = forces_bh(&w, p, y, theta, exaggeration, threads, grad, 1, &klv);
        ws_free(&w);
        if (!ok)
            return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < 2 * n; i++)
        grad[i] *= 4;
    if (kl)
        *kl = klv;
    return BR_OK;
}

double br_tsne_kl_exact(const br_tsne_p *p, const float *y)
{
    float *g = malloc(2 * p->n * sizeof *g);
    double kl = NAN;
    if (g && !forces_exact(p, y, 1, 1, g, &kl))
        kl = NAN;
    free(g);
    return kl;
}

/* ---- the optimiser ------------------------------------------------------------ */

br_err br_tsne_run(const float *x, size_t n, size_t d, size_t stride, const br_tsne_opts *o,
                   float *y, br_tsne_stats *stats, br_diag *diag)
{
    if (!x || !o || !y || d == 0 || stride < d)
        return br_fail(diag, BR_ERR_ARG, "t-SNE: bad arguments");
    if (!(o->perplexity >= 1) || o->perplexity > 1000)
        return br_fail(diag, BR_ERR_ARG, "t-SNE: perplexity %g is outside 1 .. 1000",
                       o->perplexity);
    if (!(o->theta >= 0) || o->theta > 1.5)
        return br_fail(diag, BR_ERR_ARG, "t-SNE: theta %g is outside 0 .. 1.5", o->theta);
    if (o->iters < 0 || o->threads < 1 || !(o->exaggeration > 0) || o->exaggeration_iters < 0)
        return br_fail(diag, BR_ERR_ARG, "t-SNE: bad options");
    size_t k = (size_t)(3 * o->perplexity);
    if (n <= k + 1 || n > (size_t)UINT32_MAX - 1)
        return br_fail(diag, BR_ERR_ARG,
                       "t-SNE of %zu points at perplexity %g needs more than %zu points "
                       "(3 x perplexity + 1); lower --perplexity",
                       n, o->perplexity, k + 1);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            if (!isfinite(x[i * stride + j]))
                return br_fail(diag, BR_ERR_NUMERIC, "t-SNE: row %zu has NaN or infinity", i);
    br_tsne_stats st = {0};
    int T = o->threads;
    double t0 = omp_get_wtime();
    uint32_t *idx = malloc(n * k * sizeof *idx);
    float *dist2 = malloc(n * k * sizeof *dist2);
    float *force = malloc(2 * n * sizeof *force), *upd = calloc(2 * n, sizeof *upd);
    float *gains = malloc(2 * n * sizeof *gains);
    br_tsne_p *p = NULL;
    tsne_ws w;
    int ws_ok = ws_init(&w, n);
    br_err e = BR_OK;
    if (!idx || !dist2 || !force || !upd || !gains || !ws_ok) {
        e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
        goto done;
    }
    e = br_tsne_knn(x, n, d, stride, k, T, o->seed, idx, dist2, diag);
    if (e)
        goto done;
    double t1 = omp_get_wtime();
    st.t_knn = t1 - t0;
    e = br_tsne_affinities(idx, dist2, n, k, o->perplexity, T, &p, diag);
    if (e)
        goto done;
    free(idx);
    free(dist2);
    idx = NULL;
    dist2 = NULL;
    double t2 = omp_get_wtime();
    st.t_affinity = t2 - t1;

    /* The start, centred, first coordinate's std 1e-4. */
    if (o->init) {
        double mx = 0, my = 0, v = 0;
        for (size_t i = 0; i < n; i++) {
            mx += o->init[2 * i];
            my += o->init[2 * i + 1];
        }
        mx /= (double)n;
        my /= (double)n;
        for (size_t i = 0; i < n; i++)
            v += (o->init[2 * i] - mx) * (o->init[2 * i] - mx);
        double sd = sqrt(v / (double)n);
        double sc = sd > 0 && isfinite(sd) ? 1e-4 / sd : 1.0;
        for (size_t i = 0; i < n; i++) {
            y[2 * i] = (float)((o->init[2 * i] - mx) * sc);
            y[2 * i + 1] = (float)((o->init[2 * i + 1] - my) * sc);
        }
    } else {
        br_rng rng;
        br_rng_seed(&rng, o->seed);
        for (size_t i = 0; i < 2 * n; i++)
            y[i] = (float)(1e-4 * br_rng_normal(&rng));
    }
    for (size_t i = 0; i < 2 * n; i++) {
        if (!isfinite(y[i])) {
            e = br_fail(diag, BR_ERR_NUMERIC, "t-SNE: the start layout has NaN or infinity");
            goto done;
        }
        gains[i] = 1;
    }
    double lr = o->learning_rate > 0 ? o->learning_rate : fmax((double)n / 12.0, 200.0);
    st.learning_rate = lr;
    int kl_every = o->kl_every > 0 ? o->kl_every : 50;
    double kl = NAN;
    int it;
    for (it = 0; it < o->iters; it++) {
        int early = it < o->exaggeration_iters;
        double exag = early ? o->exaggeration : 1.0;
        float mom = (float)(early ? o->momentum_early : o->momentum);
        int want_kl = o->progress && ((it % kl_every == 0) || it == o->iters - 1);
        double klv = NAN;
        int ok = o->theta == 0 ? forces_exact(p, y, exag, T, force, &klv)
                               : forces_bh(&w, p, y, o->theta, exag, T, force, want_kl, &klv);
        if (!ok) {
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (want_kl)
            kl = klv;
        float flr = (float)lr;
        double mx = 0, my = 0;
        for (size_t i = 0; i < 2 * n; i++) {
            float g = force[i];
            /* Gains grow where the step keeps changing direction. */
            gains[i] = ((g > 0) != (upd[i] > 0)) ? gains[i] + 0.2f : gains[i] * 0.8f;
            if (gains[i] < 0.01f)
                gains[i] = 0.01f;
            upd[i] = mom * upd[i] - flr * gains[i] * g;
            y[i] += upd[i];
        }
        for (size_t i = 0; i < n; i++) {
            mx += y[2 * i];
            my += y[2 * i + 1];
        }
        mx /= (double)n;
        my /= (double)n;
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            y[2 * i] -= (float)mx;
            y[2 * i + 1] -= (float)my;
            bad |= !isfinite(y[2 * i]) || !isfinite(y[2 * i + 1]);
        }
        if (bad) {
            e = br_fail(diag, BR_ERR_NUMERIC,
                        "t-SNE diverged at iteration %d (NaN or infinity in the layout); "
                        "try a lower learning rate",
                        it + 1);
            goto done;
        }
        if (o->progress && o->progress_every > 0 &&
            ((it + 1) % o->progress_every == 0 || it + 1 == o->iters)) {
            if (o->progress(o->progress_ctx, it + 1, o->iters, kl)) {
                it++;
                break;
            }
        }
    }
    st.iters = it;
    /* The final KL, of the final layout. */
    {
        double klv = NAN;
        int ok = o->theta == 0 ? forces_exact(p, y, 1, T, force, &klv)
                               : forces_bh(&w, p, y, o->theta, 1, T, force, 1, &klv);
        if (!ok) {
            e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
            goto done;
        }
        st.kl = klv;
    }
    st.t_optimize = omp_get_wtime() - t2;
done:
    free(idx);
    free(dist2);
    free(force);
    free(upd);
    free(gains);
    br_tsne_p_free(p);
    ws_free(&w);
    if (!e && stats)
        *stats = st;
    return e;
}

/* ---- trustworthiness ---------------------------------------------------------- */

double br_tsne_trustworthiness(const float *x, size_t n, size_t d, size_t stride,
                               const float *y, size_t k, int threads)
{
    if (!x || !y || k == 0 || 2 * k >= n || stride < d || d == 0)
        return NAN;
    double total = 0;
    int fail = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        float *dh = malloc(n * sizeof *dh);
        dpair *lo = malloc((k + 1) * sizeof *lo), *hi = malloc((k + 1) * sizeof *hi);
        if (!dh || !lo || !hi) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < n; i++) {
            if (!dh || !lo || !hi)
                continue;
            heap hl = {lo, 0, k}, hh = {hi, 0, k};
            for (size_t j = 0; j < n; j++) {
                if (j == i) {
                    dh[j] = -1;
                    continue;
                }
                dh[j] = sqdist(x + i * stride, x + j * stride, d);
                float ex = y[2 * i] - y[2 * j], ey = y[2 * i + 1] - y[2 * j + 1];
                heap_push(&hl, (dpair){ex * ex + ey * ey, (uint32_t)j});
                heap_push(&hh, (dpair){dh[j], (uint32_t)j});
            }
            /* Map neighbours that are not data neighbours, and their ranks. */
            for (size_t a = 0; a < hl.n; a++) {
                uint32_t j = hl.v[a].i;
                int in = 0;
                for (size_t b = 0; b < hh.n; b++)
                    in |= hh.v[b].i == j;
                if (in)
                    continue;
                float dj = dh[j];
                size_t rank = 1;   /* 1 + points strictly closer, ties by index */
                for (size_t l = 0; l < n; l++)
                    rank += (dh[l] >= 0) & ((dh[l] < dj) | ((dh[l] == dj) & (l < j)));
                total += (double)rank - (double)k;
            }
        }
        free(dh);
        free(lo);
        free(hi);
    }
    if (fail)
        return NAN;
    double nn = (double)n, kk = (double)k;
    return 1.0 - 2.0 / (nn * kk * (2 * nn - 3 * kk - 1)) * total;
}
