/*
 * br_qscan.c - the quantised pre-scan (see br_qscan.h).
 *
 * The values. Books are quantised to int8 with one scale per book, s_b =
 * max|q_bi| / 127, q~_bi = round(q_bi / s_b) in -127..127; the reader to 7
 * bits, s_u = max|u_i| / 63, u~_i = round(u_i / s_u) in -63..63, stored as
 * u~_i + 64 in 1..127 (the kernels' unsigned operand: vpmaddubsw then sums
 * two products of at most 127 x 127, below 2^15, so it never saturates).
 * The offset is taken out exactly: corr_b = 64 sum_i q~_bi.
 *
 * The bound. Let n = stride, L_u = 63, L_b = 127, and
 * let the quantised values be u~_i = round(u_i / s_u), q~_bi = round(q_bi / s_b),
 * with u_i = s_u (u~_i + a_i) and q_bi = s_b (q~_bi + c_bi), |a_i|, |c_bi| <= h
 * (h = 0.5 plus room for the float division, checked when quantising). Then
 *
 *   |u . q_b - s_u s_b (u~ . q~_b)| <= s_u s_b (h U1 + h Q1_b + h^2 n)
 *
 * with U1 = sum |u~_i| and Q1_b = sum |q~_bi|, as each term is
 * u~_i c_bi + q~_bi a_i + a_i c_bi. The exact float score the kernels compute,
 * (add + bias_b) + fl(u . q_b), differs from the real one by at most
 * (n/8 + 5) 2^-24 (|add| + |bias_b| + sum |u_i q_bi|), and
 * sum |u_i q_bi| <= ||u||_1 max|q_bi| = ||u||_1 L_b s_b; the float evaluation
 * of the bound itself (a few roundings of terms of that size) is covered by
 * the same margin, taken as m = (n + 16) 2^-23, several times the need. So
 *
 *   bound_b = (add + bias_b) + s_u s_b idot_b + ce s_b + s_u qerr_b + cm
 *   ce   = s_u h U1 + m ||u||_1 L_b          (per query)
 *   qerr_b = s_b (h Q1_b + h^2 n)            (per book, rounded up)
 *   cm   = m (|add| + max|bias|) + tiny      (per query)
 *
 * is at least the exact float score of book b, which is all br_topk_bounded
 * needs for an exact answer.
 */
#include "br_qscan.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <float.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "br_alloc.h"

#define BR_QSCAN_HALF 0.505          /* bound of |a_i|, |c_bi| (0.5 + room) */
#define BR_QSCAN_MAXABS 1e15      /* larger values: the plain path */
#define BR_QSCAN_MAXQUADS 1024
#define BR_QSCAN_LB 127           /* |q~| limit */
#define BR_QSCAN_LU 63            /* |u~| limit */

struct br_qscan {
    uint32_t n_books, stride, n_blocks;
    const float *Q, *bias;        /* the exact data (caller's) */
    int8_t *blk;                  /* n_blocks blocks of 8 stride + 128 bytes (br_kernels.h) */
    float max_abs_bias;
};

void br_qscan_free(br_qscan *q)
{
    if (!q)
        return;
    free(q->blk);
    free(q);
}

/* round(x / s) clamped to +-lim; *err gets |x / s - result| (in double). */
static int32_t br_qscan_round(float x, float s, int32_t lim, double *err)
{
    double v = (double)x / (double)s;
    if (v > lim)
        v = lim;
    if (v < -lim)
        v = -lim;
    /* half away from zero (no libm call: this runs per value); the error is
     * measured, not assumed */
    int32_t r = (int32_t)(v >= 0 ? v + 0.5 : v - 0.5);
    *err = fabs((double)x / (double)s - r);
    return r;
}

br_err br_qscan_create(const float *Q, const float *bias, uint32_t n_books, uint32_t stride,
                       br_qscan **out, br_diag *diag)
{
    *out = NULL;
    if (!Q || n_books == 0 || stride == 0 || stride % 8 || stride / 4 > BR_QSCAN_MAXQUADS)
        return br_fail(diag, BR_ERR_ARG, "no books or a stride that is not a multiple of 8");
    br_qscan *q = calloc(1, sizeof *q);
    if (!q)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    q->n_books = n_books;
    q->stride = stride;
    q->n_blocks = (n_books + 7) / 8;
    q->Q = Q;
    q->bias = bias;
    size_t bs = 8 * (size_t)stride + 128;
    q->blk = br_alloc64(q->n_blocks * bs);
    if (!q->blk) {
        br_qscan_free(q);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for the quantised books");
    }
    const double h = BR_QSCAN_HALF;
    for (uint32_t b = 0; b < n_books; b++) {
        const float *row = Q + (size_t)b * stride;
        float mx = 0.0f;
        for (uint32_t i = 0; i < stride; i++) {
            float a = fabsf(row[i]);
            if (!(a < BR_QSCAN_MAXABS)) {   /* also NaN */
                br_qscan_free(q);
                return br_fail(diag, BR_ERR_UNSUPPORTED, "book %u has a value the quantised "
                               "scan cannot bound", b);
            }
            mx = a > mx ? a : mx;
        }
        float bb = bias ? bias[b] : 0.0f;
        if (!(fabsf(bb) < BR_QSCAN_MAXABS)) {
            br_qscan_free(q);
            return br_fail(diag, BR_ERR_UNSUPPORTED, "book %u has a bias the quantised scan "
                           "cannot bound", b);
        }
        uint8_t *k = (uint8_t *)q->blk + (size_t)(b / 8) * bs + 8 * (size_t)stride + 4 * (b % 8);
        memcpy(k + 32, &bb, 4);   /* base */
        q->max_abs_bias = fmaxf(q->max_abs_bias, fabsf(bb));
        if (mx == 0.0f)
            continue;   /* all zero: scale 0, values 0, error 0 */
        float s = (float)((double)mx / BR_QSCAN_LB);
        if (!(s > 0.0f) || !isnormal(s))
            s = FLT_MIN;   /* tiny rows: values still round within the limit */
        double q1 = 0.0, worst = 0.0;
        int32_t sum = 0;
        int8_t *dst = q->blk + (size_t)(b / 8) * bs + 4 * (b % 8);
        for (uint32_t i = 0; i < stride; i++) {
            double err;
            int32_t v = br_qscan_round(row[i], s, BR_QSCAN_LB, &err);
            worst = err > worst ? err : worst;
            q1 += abs(v);
            sum += v;
            dst[(i / 4) * 32 + (i % 4)] = (int8_t)v;
        }
        int32_t corr = 64 * sum;
        memcpy(k, &corr, 4);
        if (worst > h) {   /* cannot happen for finite normal values; be sure */
            br_qscan_free(q);
            return br_fail(diag, BR_ERR_UNSUPPORTED, "book %u quantises past the bound", b);
        }
        float qerr = (float)((double)s * (h * q1 + h * h * stride) * (1.0 + 0x1p-20));
        memcpy(k + 64, &s, 4);
        memcpy(k + 96, &qerr, 4);
    }
    *out = q;
    return BR_OK;
}

/* The bounds (n_blocks x 8 floats), the group maxima (ceil(n_blocks / 2)
 * floats), the candidates' indices and exact scores (n_books each). */
size_t br_qscan_work_bytes(const br_qscan *q)
{
    size_t groups = (q->n_blocks + 1) / 2;
    return ((size_t)q->n_blocks * 8 + groups) * sizeof(float) +
           (size_t)q->n_books * (sizeof(uint32_t) + sizeof(float));
}

typedef struct br_qscan_ctx {
    const br_kernels *kt;
    const float *u, *Q, *bias;
    size_t stride;
    float add;
} br_qscan_ctx;

/* The exact score of one book: the kernel's own operations on that row. */
static float br_qscan_exact(void *p, uint32_t b)
{
    const br_qscan_ctx *c = p;
    float s;
    c->kt->score(c->u, c->Q + (size_t)b * c->stride, 1, c->stride, c->bias ? c->bias + b : NULL,
                 c->add, &s);
    return s;
}

static int br_qscan_excluded(const uint32_t *ex, size_t n_ex, uint32_t b)
{
    size_t lo = 0, hi = n_ex;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ex[mid] < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n_ex && ex[lo] == b;
}

static inline void br_qscan_prefetch(const br_qscan_ctx *c, uint32_t b)
{
    const char *row = (const char *)(c->Q + (size_t)b * c->stride);
    for (size_t off = 0; off < c->stride * sizeof(float); off += 64)
        __builtin_prefetch(row + off);
}

/* Groups looked at per wanted book when seeking the floor. */
#define BR_QSCAN_SEEDS 2

/* The indices of the `want` largest of x[0..n) (want <= 64; ties taken in
 * any order) into idx, best first; returns how many (min(want, n)). A
 * sorted array with one compare per rejected value: the floor's seeds need
 * no more, and this costs a fraction of a heap of br_scored. */
static size_t br_qscan_best(const float *x, size_t n, size_t want, float *val, uint32_t *idx)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (m == want && !(v > val[m - 1]))
            continue;
        size_t j = m < want ? m++ : m - 1;
        for (; j > 0 && val[j - 1] < v; j--) {
            val[j] = val[j - 1];
            idx[j] = idx[j - 1];
        }
        val[j] = v;
        idx[j] = (uint32_t)i;
    }
    return m;
}

/* A score the k-th best reaches: the BR_QSCAN_SEEDS k groups of 16 with the
 * highest bounds each give their best-bounded unread book; the k-th best
 * exact score of those distinct books is such a score. -INFINITY if fewer
 * than k were found. k <= 32. */
static float br_qscan_floor(const br_qscan *q, const float *bound, const float *gmax,
                            const uint32_t *ex, size_t n_ex, size_t k, br_qscan_ctx *c,
                            uint32_t *seed, float *val, size_t *n_seed)
{
    size_t groups = (q->n_blocks + 1) / 2, want = BR_QSCAN_SEEDS * k;
    float tmp[BR_QSCAN_SEEDS * 32];
    size_t got = br_qscan_best(gmax, groups, want, val, seed), found = 0;
    *n_seed = 0;
    for (size_t g = 0; g < got; g++) {
        uint32_t lo = seed[g] * 16, hi = lo + 16 < q->n_books ? lo + 16 : q->n_books, best;
        /* the group's best bound; the next best while that book is read */
        uint32_t skip = 0;   /* bit i: book lo + i is read */
        for (;;) {
            best = hi;
            for (uint32_t b = lo; b < hi; b++)
                if (!(skip >> (b - lo) & 1) && (best == hi || bound[b] > bound[best]))
                    best = b;
            if (best == hi || !br_qscan_excluded(ex, n_ex, best))
                break;
            skip |= 1u << (best - lo);
        }
        if (best < hi) {
            br_qscan_prefetch(c, best);
            seed[found++] = best;
        }
    }
    if (found < k)
        return -INFINITY;
    /* the seeds' exact scores, kept (ascending by book) for the candidates */
    for (size_t i = 1; i < found; i++) {
        uint32_t b = seed[i];
        size_t j = i;
        for (; j > 0 && seed[j - 1] > b; j--)
            seed[j] = seed[j - 1];
        seed[j] = b;
    }
    for (size_t i = 0; i < found; i++)
        tmp[i] = val[i] = br_qscan_exact(c, seed[i]);
    *n_seed = found;
    /* the k-th largest: sort the few values (descending, NaN last) */
    for (size_t i = 1; i < found; i++) {
        float v = tmp[i];
        size_t j = i;
        for (; j > 0 && (tmp[j - 1] < v || (tmp[j - 1] != tmp[j - 1] && v == v)); j--)
            tmp[j] = tmp[j - 1];
        tmp[j] = v;
    }
    float floor = tmp[k - 1];
    return floor == floor ? floor : -INFINITY;
}

/* The unread books whose bound reaches `floor`, ascending, into idx; their
 * count, or SIZE_MAX once more than `cap` are found. */
static size_t br_qscan_candidates(const br_qscan *q, const float *bound, const float *gmax,
                                  float floor, const uint32_t *ex, size_t n_ex, uint32_t *idx,
                                  size_t cap)
{
    size_t m = 0, e = 0, groups = ((size_t)q->n_books + 15) / 16;
    for (size_t g = 0; g < groups; g++) {
#if defined(__SSE2__)
        /* four groups per compare: most are below the floor */
        if (g % 4 == 0 && g + 4 <= groups &&
            _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(gmax + g), _mm_set1_ps(floor))) == 0) {
            g += 3;
            continue;
        }
#endif
        if (gmax[g] < floor)
            continue;
        uint32_t lo = (uint32_t)g * 16, hi = lo + 16 < q->n_books ? lo + 16 : q->n_books;
        for (uint32_t b = lo; b < hi; b++) {
            if (bound[b] < floor)
                continue;
            while (e < n_ex && ex[e] < b)
                e++;
            if (e < n_ex && ex[e] == b)
                continue;
            if (m == cap)
                return SIZE_MAX;
            idx[m++] = b;
        }
    }
    return m;
}

br_err br_qscan_topk(const br_qscan *q, const br_kernels *kt, const float *u, float add,
                     const uint32_t *exclude, size_t n_ex, size_t k, void *work_mem,
                     br_scored *out, size_t *n_out)
{
    float *work = work_mem;
    *n_out = 0;
    uint32_t n = q->stride;
    if (!(fabsf(add) < BR_QSCAN_MAXABS))
        return BR_ERR_UNSUPPORTED;
    float mx = 0.0f;
    double l1 = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        float a = fabsf(u[i]);
        if (!(a < BR_QSCAN_MAXABS))
            return BR_ERR_UNSUPPORTED;
        mx = a > mx ? a : mx;
        l1 += a;
    }
    uint32_t uq[BR_QSCAN_MAXQUADS];
    double u1 = 0.0;
    float su = 0.0f;
    if (mx > 0.0f) {
        su = (float)((double)mx / BR_QSCAN_LU);
        if (!(su > 0.0f) || !isnormal(su))
            su = FLT_MIN;
    }
    for (uint32_t i = 0; i < n; i += 4) {
        uint32_t w = 0;
        for (uint32_t t = 0; t < 4; t++) {
            double e = 0.0;
            int32_t v = su > 0.0f ? br_qscan_round(u[i + t], su, BR_QSCAN_LU, &e) : 0;
            if (e > BR_QSCAN_HALF)
                return BR_ERR_UNSUPPORTED;
            u1 += abs(v);
            w |= (uint32_t)(v + 64) << (8 * t);
        }
        uq[i / 4] = w;
    }
    const double h = BR_QSCAN_HALF, m = (n + 16) * 0x1p-23, up1 = 1.0 + 0x1p-20;
    float ce = (float)(((double)su * h * u1 + m * l1 * BR_QSCAN_LB) * up1);
    float cm = (float)((m * (fabs((double)add) + q->max_abs_bias) + 64 * (double)FLT_MIN) * up1);
    float *bound = work, *gmax = work + (size_t)q->n_blocks * 8;
    kt->qscan(uq, q->blk, q->n_blocks, n, add, su, ce, cm, bound, gmax);
    br_qscan_ctx c = {kt, u, q->Q, q->bias, n, add};
    if (k > q->n_books)
        k = q->n_books;
    size_t groups = (q->n_blocks + 1) / 2;
    if (k <= 32 && k * 8 <= groups) {
        /* Small k: a floor, then only the candidates above it, their rows
         * fetched together, scored exactly, and the k best of them taken. */
        uint32_t *cidx = (uint32_t *)(gmax + groups);
        float *cscore = (float *)(cidx + q->n_books);
        uint32_t seed[BR_QSCAN_SEEDS * 32];
        float sval[BR_QSCAN_SEEDS * 32];
        size_t ns = 0;
        float floor = br_qscan_floor(q, bound, gmax, exclude, n_ex, k, &c, seed, sval, &ns);
        size_t nc = floor > -INFINITY
                        ? br_qscan_candidates(q, bound, gmax, floor, exclude, n_ex, cidx,
                                              q->n_books / 4)
                        : SIZE_MAX;
        if (nc != SIZE_MAX) {
            /* seeds are candidates too (their bound reaches their exact
             * score, which reaches the floor): reuse their scores */
            size_t si = 0;
            for (size_t i = 0; i < nc; i++) {
                while (si < ns && seed[si] < cidx[i])
                    si++;
                if (!(si < ns && seed[si] == cidx[i]))
                    br_qscan_prefetch(&c, cidx[i]);
            }
            si = 0;
            for (size_t i = 0; i < nc; i++) {
                while (si < ns && seed[si] < cidx[i])
                    si++;
                cscore[i] = si < ns && seed[si] == cidx[i] ? sval[si] : br_qscan_exact(&c, cidx[i]);
            }
            /* positions ascend with the book indices, so ties still go to
             * the lower index */
            size_t got = br_topk(cscore, nc, NULL, 0, k, out);
            for (size_t i = 0; i < got; i++)
                out[i].idx = cidx[out[i].idx];
            *n_out = got;
            return BR_OK;
        }
    }
    *n_out = br_topk_bounded(bound, gmax, -INFINITY, q->n_books, exclude, n_ex, k,
                             br_qscan_exact, &c, out);
    return BR_OK;
}
