/*
 * br_qscan.c - the quantised pre-scan (see br_qscan.h).
 *
 * The values. Books are quantised to int8 with one scale per book, s_b =
 * max|q_bi| / 127 rounded up to a bfloat16 (so 16 bits store it exactly and
 * the values still reach 126.5), q~_bi = round(q_bi / s_b) in -127..127, stored as
 * q~_bi + 128 in 1..255 (the kernels' unsigned operand); the reader to 7
 * bits, s_u = max|u_i| / 63, u~_i = round(u_i / s_u) in -63..63 (the signed
 * operand: vpmaddubsw then sums two products of at most 255 x 63, below
 * 2^15, so it never saturates). The offset comes out exactly, once per
 * query: sum_i (q~_bi + 128) u~_i = idot_b + ucorr, ucorr = 128 sum_i u~_i.
 *
 * The bound. Let n = stride, L_u = 63, L_b = 127, and
 * let the quantised values be u~_i = round(u_i / s_u), q~_bi = round(q_bi / s_b),
 * with u_i = s_u (u~_i + a_i) and q_bi = s_b (q~_bi + c_bi), |a_i|, |c_bi| <= h
 * (h = 0.5 plus room for the float arithmetic, checked when quantising). Then
 *
 *   |u . q_b - s_u s_b idot_b| <= s_u s_b (h U1 + h Q1_b + h^2 n)
 *
 * with idot_b = u~ . q~_b, U1 = sum |u~_i| and Q1_b = sum |q~_bi|, as each
 * term is u~_i c_bi + q~_bi a_i + a_i c_bi. The exact float score the
 * kernels compute, (add + bias_b) + fl(u . q_b), differs from the real one
 * by at most (n/8 + 5) 2^-24 T_b, T_b = |add| + |bias_b| + sum |u_i q_bi|,
 * and sum |u_i q_bi| <= ||u||_1 max|q_bi| = ||u||_1 L_b s_b. So the real
 * number
 *
 *   B_b = (add + cm) + bias_b + s_b (s_u (idot_b + qe_b) + ce)
 *   qe_b = ceil(h Q1_b + h^2 n)               (per book, an integer below
 *                                               64.4 n: uint16 for n <= 1016)
 *   ce   = s_u h U1 + m ||u||_1 L_b           (per query, rounded up)
 *   cm   = m (|add| + max|bias|) + 64 FLT_MIN  (per query, rounded up)
 *
 * with m = (n + 16) 2^-23 is at least the exact float score plus
 * (1.875 n + 27) 2^-24 T_b: that spare covers the float evaluation of B_b
 * by the kernels (br_kernels.h):
 *
 *   bound_b = fma(s_b, fma(s_u, (float)(idot_b + qe_b), ce), bias_b) + fl(add + cm)
 *
 * five roundings (the conversion, two fused multiply-adds, the sum and
 * add + cm), each at most 2^-24 of a value below 2 T_b (1 + n / 100)
 * (s_u s_b |idot_b| <= L_b s_b (||u||_1 + n h s_u) and n h s_u <= n / 120
 * ||u||_1; s_u s_b qe_b is smaller still), and products that underflow,
 * each off by less than FLT_MIN, within cm's 64 FLT_MIN. So bound_b is at
 * least the exact float score of book b, which is all the selection needs
 * for an exact answer.
 *
 * The layout (br_kernels.h): blocks of 16 books, for each group of four
 * dimensions the 16 books' four bytes (64 bytes: one zmm), then the books'
 * uint16 qe_b (the accumulators' start), s_b's upper 16 bits and float
 * bias_b: 40 bytes a book at dim 32. Padding books (past n_books) have
 * values 128, qe 0, scale 0 and bias -INFINITY, so their bound is
 * -INFINITY and never reaches anything.
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
#define BR_QSCAN_MAXQUADS 254   /* qe_b <= 64.4 n must fit in uint16 */
#define BR_QSCAN_LB 127           /* |q~| limit */
#define BR_QSCAN_LU 63            /* |u~| limit */

struct br_qscan {
    uint32_t n_books, stride, n_blocks;
    const float *Q, *bias;        /* the exact data (caller's) */
    uint8_t *blk;                 /* n_blocks blocks of BR_QSCAN_BLOCK_BYTES (br_kernels.h) */
    float max_abs_bias;
};

void br_qscan_free(br_qscan *q)
{
    if (!q)
        return;
    free(q->blk);
    free(q);
}

/* round(x / s) clamped to +-lim, by x * inv (inv = 1 / s in double); *err
 * gets |x inv - result|, within 2^-50 of |x / s - result|. */
static int32_t br_qscan_round(float x, double inv, int32_t lim, double *err)
{
    double v = (double)x * inv, c = v;
    if (c > lim)
        c = lim;
    if (c < -lim)
        c = -lim;
    /* half away from zero (no libm call: this runs per value); the error is
     * measured, not assumed */
    int32_t r = (int32_t)(c >= 0 ? c + 0.5 : c - 0.5);
    *err = fabs(v - r);
    return r;
}

br_err br_qscan_create(const float *Q, const float *bias, uint32_t n_books, uint32_t stride,
                       br_qscan **out, br_diag *diag)
{
    *out = NULL;
    if (!Q || n_books == 0 || stride == 0 || stride % 8)
        return br_fail(diag, BR_ERR_ARG, "no books or a stride that is not a multiple of 8");
    if (stride / 4 > BR_QSCAN_MAXQUADS)
        return br_fail(diag, BR_ERR_UNSUPPORTED, "stride %u: more than the quantised scan's "
                       "%u dimensions", stride, 4 * BR_QSCAN_MAXQUADS);
    br_qscan *q = calloc(1, sizeof *q);
    if (!q)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    q->n_books = n_books;
    q->stride = stride;
    q->n_blocks = (n_books + 15) / 16;
    q->Q = Q;
    q->bias = bias;
    size_t bs = BR_QSCAN_BLOCK_BYTES(stride);
    q->blk = br_alloc64(q->n_blocks * bs);
    if (!q->blk) {
        br_qscan_free(q);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory for the quantised books");
    }
    /* every value 128 (zero); the padding's bias -INFINITY */
    for (size_t j = 0; j < q->n_blocks; j++)
        memset(q->blk + j * bs, 128, 16 * (size_t)stride);
    for (uint32_t b = n_books; b < q->n_blocks * 16; b++) {
        float ninf = -INFINITY;
        memcpy(q->blk + (size_t)(b / 16) * bs + 16 * (size_t)stride + 64 + 4 * (b % 16), &ninf,
               4);
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
        uint8_t *dst = q->blk + (size_t)(b / 16) * bs + 4 * (b % 16);
        uint8_t *k = q->blk + (size_t)(b / 16) * bs + 16 * (size_t)stride;
        memcpy(k + 64 + 4 * (b % 16), &bb, 4);   /* bias */
        q->max_abs_bias = fmaxf(q->max_abs_bias, fabsf(bb));
        if (mx == 0.0f)
            continue;   /* all zero: scale 0, values 0, qe 0 */
        float s = (float)((double)mx / BR_QSCAN_LB);
        if (!(s > 0.0f) || !isnormal(s))
            s = FLT_MIN;   /* tiny rows: values still round within the limit */
        /* up to a bfloat16 (the lower half of the bits zero): what is stored */
        uint32_t bits;
        memcpy(&bits, &s, 4);
        bits = (bits & 0xffffu) ? (bits | 0xffffu) + 1 : bits;
        memcpy(&s, &bits, 4);
        uint16_t sh = (uint16_t)(bits >> 16);
        double q1 = 0.0, worst = 0.0, inv = 1.0 / (double)s;
        for (uint32_t i = 0; i < stride; i++) {
            double err;
            int32_t v = br_qscan_round(row[i], inv, BR_QSCAN_LB, &err);
            worst = err > worst ? err : worst;
            q1 += abs(v);
            dst[(i / 4) * 64 + (i % 4)] = (uint8_t)(v + 128);
        }
        if (worst > h - 0x1p-30) {   /* cannot happen for finite normal values; be sure */
            br_qscan_free(q);
            return br_fail(diag, BR_ERR_UNSUPPORTED, "book %u quantises past the bound", b);
        }
        uint16_t qe = (uint16_t)ceil((h * q1 + h * h * stride) * (1.0 + 0x1p-30));
        memcpy(k + 2 * (b % 16), &qe, 2);
        memcpy(k + 32 + 2 * (b % 16), &sh, 2);
    }
    *out = q;
    return BR_OK;
}

/* Groups (one per block of 16 books) and the work space: the bounds (16
 * per group), the group maxima (padded with -INFINITY to a multiple of 16),
 * the candidates' indices (n_books). */
static size_t br_qscan_groups(const br_qscan *q) { return q->n_blocks; }
static size_t br_qscan_gpad(const br_qscan *q) { return (br_qscan_groups(q) + 15) / 16 * 16; }

size_t br_qscan_work_bytes(const br_qscan *q)
{
    size_t b = (br_qscan_groups(q) * 16 + br_qscan_gpad(q)) * sizeof(float) +
               (size_t)q->n_books * sizeof(uint32_t);
    return (b + 63) & ~(size_t)63;   /* br_qscan_topk_multi's slices stay aligned */
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

static inline void br_qscan_prefetch(const br_qscan_ctx *c, uint32_t b)
{
    br_prefetch_floats(c->Q + (size_t)b * c->stride, c->stride, 0);
}

/* Bit i set when x[i] >= t, for i < 16. With SSE2, the x86-64 baseline,
 * four compares and four mask moves; a loop elsewhere (the same bits). */
static inline uint32_t br_qscan_mask16(const float *x, float t)
{
#if defined(__SSE2__)
    __m128 vt = _mm_set1_ps(t);
    return (uint32_t)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(x), vt)) |
           (uint32_t)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(x + 4), vt)) << 4 |
           (uint32_t)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(x + 8), vt)) << 8 |
           (uint32_t)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(x + 12), vt)) << 12;
#else
    uint32_t m = 0;
    for (int i = 0; i < 16; i++)
        m |= (uint32_t)(x[i] >= t) << i;
    return m;
#endif
}

static inline unsigned br_qscan_ctz(uint32_t m) { return (unsigned)__builtin_ctz(m); }

/* How many of x[0..n) reach t. With SSE2 eight per step in two
 * accumulators; a loop elsewhere (the same count). */
static size_t br_qscan_count(const float *x, size_t n, float t)
{
    size_t c = 0, i = 0;
#if defined(__SSE2__)
    __m128 vt = _mm_set1_ps(t);
    __m128i c0 = _mm_setzero_si128(), c1 = _mm_setzero_si128();
    for (; i + 8 <= n; i += 8) {
        c0 = _mm_sub_epi32(c0, _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(x + i), vt)));
        c1 = _mm_sub_epi32(c1, _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(x + i + 4), vt)));
    }
    uint32_t l[4];
    _mm_storeu_si128((__m128i *)l, _mm_add_epi32(c0, c1));
    c = (size_t)l[0] + l[1] + l[2] + l[3];
#endif
    for (; i < n; i++)
        c += x[i] >= t;
    return c;
}

/* The least and the largest of x[0..n), n >= 1 (finite values). */
static void br_qscan_range(const float *x, size_t n, float *lo, float *hi)
{
    float a = x[0], b = x[0];
    size_t i = 0;
#if defined(__SSE2__)
    if (n >= 8) {
        __m128 a0 = _mm_loadu_ps(x), a1 = _mm_loadu_ps(x + 4), b0 = a0, b1 = a1;
        for (i = 8; i + 8 <= n; i += 8) {
            __m128 v0 = _mm_loadu_ps(x + i), v1 = _mm_loadu_ps(x + i + 4);
            a0 = _mm_min_ps(a0, v0), a1 = _mm_min_ps(a1, v1);
            b0 = _mm_max_ps(b0, v0), b1 = _mm_max_ps(b1, v1);
        }
        float l[8];
        _mm_storeu_ps(l, _mm_min_ps(a0, a1));
        _mm_storeu_ps(l + 4, _mm_max_ps(b0, b1));
        a = l[0], b = l[4];
        for (int j = 1; j < 4; j++) {
            a = l[j] < a ? l[j] : a;
            b = l[4 + j] > b ? l[4 + j] : b;
        }
    }
#endif
    for (; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

/* Groups looked at when seeking the floor: between BR_QSCAN_SEEDS(k) and
 * twice that (fewer only when ties leave no level in between; more are
 * cut at the cap). 1.5 k: fewer seeds lower the floor (more candidates),
 * more cost their own exact scores; measured best between k + 2 and 2 k. */
#define BR_QSCAN_SEEDS(k) ((k) + (k) / 2)

/* A level that at least `want` of the group maxima gmax[0..n) reach and,
 * unless ties or the float grid prevent it, at most 2 want: by bisection
 * on the value, one vectorised count per step (one to three steps,
 * typically). A cheap stand-in for "the want-th largest": the floor
 * needs good seeds, not the best. */
static float br_qscan_seed_level(const float *gmax, size_t n, size_t want)
{
    float lo, hi;
    br_qscan_range(gmax, n, &lo, &hi);
    /* count(lo) >= want; the first step a quarter of the range below the
     * top, where the upper 2-5 % of roughly normal maxima sit */
    for (int it = 0; it < 64; it++) {
        float mid = it == 0 ? 0.25f * lo + 0.75f * hi : 0.5f * lo + 0.5f * hi;
        if (!(mid > lo && mid < hi))
            break;
        size_t c = br_qscan_count(gmax, n, mid);
        if (c < want) {
            hi = mid;
        } else {
            lo = mid;
            if (c <= 2 * want)
                break;
        }
    }
    return lo;
}

/* The books of lo..lo+len (len <= 16) not in ex[*e..), as bits; *e is
 * moved to the first entry >= lo (ex ascending, lo rising between calls). */
static inline uint32_t br_qscan_unread(const uint32_t *ex, size_t n_ex, size_t *e, uint32_t lo,
                                       uint32_t len)
{
    uint32_t m = len == 16 ? 0xffffu : (1u << len) - 1;
    size_t j = *e;
    while (j < n_ex && ex[j] < lo)
        j++;
    *e = j;
    for (; j < n_ex && ex[j] < lo + len; j++)
        m &= ~(1u << (ex[j] - lo));
    return m;
}

/* A score the k-th best reaches: the groups of 16 whose bound reaches the
 * seed level each give their unread books whose bound reaches it too (the
 * best books cluster in a few groups on real catalogues), or when there
 * are none their best-bounded unread book (seed[], ascending; at most
 * 2 BR_QSCAN_SEEDS(k) of them), and the k-th best exact score of those
 * distinct books (val[], kept for the candidates) is such a score.
 * -INFINITY if fewer than k were found. k <= 32. */
#define BR_QSCAN_SEEDCAP (2 * BR_QSCAN_SEEDS(32))
static float br_qscan_floor(const br_qscan *q, const float *bound, const float *gmax,
                            const uint32_t *ex, size_t n_ex, size_t k, br_qscan_ctx *c,
                            uint32_t *seed, float *val, size_t *n_seed)
{
    size_t groups = br_qscan_groups(q), want = BR_QSCAN_SEEDS(k), cap = 2 * want, found = 0;
    size_t e = 0;
    float level = br_qscan_seed_level(gmax, groups, want);
    *n_seed = 0;
    for (size_t g0 = 0; g0 < groups && found < cap; g0 += 16) {
        for (uint32_t gm = br_qscan_mask16(gmax + g0, level); gm && found < cap;
             gm &= gm - 1) {
            uint32_t lo = (uint32_t)(g0 + br_qscan_ctz(gm)) * 16;
            uint32_t len = q->n_books - lo < 16 ? q->n_books - lo : 16;
            uint32_t avail = br_qscan_unread(ex, n_ex, &e, lo, len);
            /* its unread books that reach the level; when its best are
             * read, the best of the rest */
            uint32_t over = br_qscan_mask16(bound + lo, level) & avail, top = 0;
            if (over) {
                for (; over && found < cap; over &= over - 1) {
                    seed[found] = lo + br_qscan_ctz(over);
                    br_qscan_prefetch(c, seed[found++]);
                }
                continue;
            }
            for (uint32_t m = avail; m; m &= m - 1) {
                uint32_t i = br_qscan_ctz(m);
                if (!top || bound[lo + i] > bound[lo + br_qscan_ctz(top)])
                    top = 1u << i;
            }
            if (top) {
                seed[found] = lo + br_qscan_ctz(top);
                br_qscan_prefetch(c, seed[found++]);
            }
        }
    }
    if (found < k)
        return -INFINITY;
    for (size_t i = 0; i < found; i++)
        val[i] = br_qscan_exact(c, seed[i]);
    *n_seed = found;
    /* the k-th largest (NaN ignored): the largest value that at least k
     * values reach */
    float floor = -INFINITY;
    for (size_t i = 0; i < found; i++)
        if (val[i] > floor && br_qscan_count(val, found, val[i]) >= k)
            floor = val[i];
    return floor;
}

/* The unread books whose bound reaches `floor`, ascending, into idx; their
 * count, or SIZE_MAX once more than `cap` are found. Sixteen group maxima
 * per mask, then sixteen bounds per group that passes. */
static size_t br_qscan_candidates(const br_qscan *q, const float *bound, const float *gmax,
                                  float floor, const uint32_t *ex, size_t n_ex, uint32_t *idx,
                                  size_t cap)
{
    size_t m = 0, e = 0, groups = br_qscan_groups(q);
    for (size_t g0 = 0; g0 < groups; g0 += 16)
        for (uint32_t gm = br_qscan_mask16(gmax + g0, floor); gm; gm &= gm - 1) {
            uint32_t lo = (uint32_t)(g0 + br_qscan_ctz(gm)) * 16;
            uint32_t len = q->n_books - lo < 16 ? q->n_books - lo : 16;
            uint32_t bm = br_qscan_mask16(bound + lo, floor);
            if (!bm)
                continue;
            for (bm &= br_qscan_unread(ex, n_ex, &e, lo, len); bm; bm &= bm - 1) {
                if (m == cap)
                    return SIZE_MAX;
                idx[m++] = lo + br_qscan_ctz(bm);
            }
        }
    return m;
}

/* A reader's quantised query: the values, their sum, and the per-query
 * terms of the bound (see the top of the file). */
typedef struct br_qscan_prep {
    uint32_t uq[BR_QSCAN_MAXQUADS];
    int32_t usum;
    float su, ce, cm;
} br_qscan_prep;

static br_err br_qscan_prepare(const br_qscan *q, const float *u, float add, br_qscan_prep *pr)
{
    uint32_t n = q->stride;
    if (!(fabsf(add) < BR_QSCAN_MAXABS))
        return BR_ERR_UNSUPPORTED;
    float mx = 0.0f;
    double l1 = 0.0;
    int bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        float a = fabsf(u[i]);
        bad |= !(a < BR_QSCAN_MAXABS);
        mx = a > mx ? a : mx;
        l1 += a;
    }
    if (bad)
        return BR_ERR_UNSUPPORTED;
    int32_t u1 = 0, usum = 0;
    float su = 0.0f;
    if (mx > 0.0f) {
        su = (float)((double)mx / BR_QSCAN_LU);
        if (!(su > 0.0f) || !isnormal(su))
            su = FLT_MIN;
    }
    /* rounding half up by truncation of a positive number (branch free:
     * the signs are random); the error is measured, not assumed */
    double inv = su > 0.0f ? 1.0 / (double)su : 0.0, worst = 0.0;
    int8_t uv[4 * BR_QSCAN_MAXQUADS];
    for (uint32_t i = 0; i < n; i++) {
        double v = (double)u[i] * inv, c = v > BR_QSCAN_LU ? BR_QSCAN_LU : v;
        c = c < -BR_QSCAN_LU ? -BR_QSCAN_LU : c;
        int32_t r = (int32_t)(c + (BR_QSCAN_LU + 1.5)) - (BR_QSCAN_LU + 1);
        double e = fabs(v - r);
        worst = e > worst ? e : worst;
        u1 += abs(r);
        usum += r;
        uv[i] = (int8_t)r;
    }
    for (uint32_t i = 0; i < n; i += 4)
        pr->uq[i / 4] = (uint32_t)(uint8_t)uv[i] | (uint32_t)(uint8_t)uv[i + 1] << 8 |
                        (uint32_t)(uint8_t)uv[i + 2] << 16 | (uint32_t)(uint8_t)uv[i + 3] << 24;
    if (worst > BR_QSCAN_HALF - 0x1p-30)
        return BR_ERR_UNSUPPORTED;
    const double h = BR_QSCAN_HALF, m = (n + 16) * 0x1p-23, up1 = 1.0 + 0x1p-20;
    pr->usum = usum;
    pr->su = su;
    pr->ce = (float)(((double)su * h * u1 + m * l1 * BR_QSCAN_LB) * up1);
    pr->cm = (float)((m * (fabs((double)add) + q->max_abs_bias) + 64 * (double)FLT_MIN) * up1);
    return BR_OK;
}

/* The kernel's arguments for a prepared reader whose bounds go to work. */
static br_qscan_query br_qscan_query_of(const br_qscan *q, const br_qscan_prep *pr, float add,
                                        float *work)
{
    return (br_qscan_query){pr->uq, 128 * pr->usum, pr->su, pr->ce, add + pr->cm, work,
                            work + br_qscan_groups(q) * 16};
}

/* Steps 3-4 (or br_topk_bounded) on the bounds the kernel left in work. */
static void br_qscan_select(const br_qscan *q, const br_kernels *kt, const float *u, float add,
                            const uint32_t *exclude, size_t n_ex, size_t k, float *work,
                            br_scored *out, size_t *n_out)
{
    size_t groups = br_qscan_groups(q);
    float *bound = work, *gmax = work + groups * 16;
    for (size_t g = groups; g < br_qscan_gpad(q); g++)
        gmax[g] = -INFINITY;
    br_qscan_ctx c = {kt, u, q->Q, q->bias, q->stride, add};
    if (k > q->n_books)
        k = q->n_books;
    if (k <= 32 && k * 8 <= groups) {
        /* Small k: a floor, then only the candidates above it, their rows
         * fetched together, scored exactly, and the k best of them taken. */
        uint32_t *cidx = (uint32_t *)(gmax + br_qscan_gpad(q));
        uint32_t seed[BR_QSCAN_SEEDCAP];
        float sval[BR_QSCAN_SEEDCAP];
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
            /* the k best into out by insertion (best first; ties by the
             * lower index): they all reach the floor, so the rest are
             * passed over with one compare */
            size_t got = 0;
            si = 0;
            for (size_t i = 0; i < nc; i++) {
                while (si < ns && seed[si] < cidx[i])
                    si++;
                br_scored x = {si < ns && seed[si] == cidx[i] ? sval[si] : br_qscan_exact(&c, cidx[i]),
                               cidx[i]};
                if (!(x.score >= floor) || (got == k && !br_scored_before(x, out[k - 1])))
                    continue;
                size_t j = got < k ? got++ : k - 1;
                for (; j > 0 && br_scored_before(x, out[j - 1]); j--)
                    out[j] = out[j - 1];
                out[j] = x;
            }
            *n_out = got;
            return;
        }
    }
    *n_out = br_topk_bounded(bound, gmax, -INFINITY, q->n_books, exclude, n_ex, k,
                             br_qscan_exact, &c, out);
}

br_err br_qscan_topk(const br_qscan *q, const br_kernels *kt, const float *u, float add,
                     const uint32_t *exclude, size_t n_ex, size_t k, void *work_mem,
                     br_scored *out, size_t *n_out)
{
    *n_out = 0;
    br_qscan_prep pr;
    br_err e = br_qscan_prepare(q, u, add, &pr);
    if (e)
        return e;
    br_qscan_query x = br_qscan_query_of(q, &pr, add, work_mem);
    kt->qscan(x.uq, x.ucorr, q->blk, q->n_blocks, q->stride, x.su, x.ce, x.add, x.out, x.gmax);
    br_qscan_select(q, kt, u, add, exclude, n_ex, k, work_mem, out, n_out);
    return BR_OK;
}

void br_qscan_topk_multi(const br_qscan *q, const br_kernels *kt, size_t m,
                         const float *const *u, const float *add,
                         const uint32_t *const *exclude, const size_t *n_ex, size_t k,
                         void *work_mem, br_scored *const *out, size_t *n_out, br_err *rc)
{
    br_qscan_prep pr[BR_QSCAN_MULTI];
    br_qscan_query x[BR_QSCAN_MULTI] = {{0}};
    size_t at[BR_QSCAN_MULTI], nx = 0, wb = br_qscan_work_bytes(q) / sizeof(float);
    float *work = work_mem;
    for (size_t i = 0; i < m && i < BR_QSCAN_MULTI; i++) {
        n_out[i] = 0;
        rc[i] = br_qscan_prepare(q, u[i], add[i], &pr[i]);
        if (!rc[i]) {
            x[nx] = br_qscan_query_of(q, &pr[i], add[i], work + i * wb);
            at[nx++] = i;
        }
    }
    kt->qscan_multi(x, nx, q->blk, q->n_blocks, q->stride);
    for (size_t j = 0; j < nx; j++) {
        size_t i = at[j];
        br_qscan_select(q, kt, u[i], add[i], exclude[i], n_ex[i], k, work + i * wb, out[i],
                        &n_out[i]);
    }
}
