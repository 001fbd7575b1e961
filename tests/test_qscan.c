/*
 * test_qscan.c - the quantised pre-scan (br_qscan) and the bounded top-k
 * under it.
 *
 * - The qscan kernel of every table the CPU runs (scalar, avx2, avx512)
 *   gives the same bits, bounds and group maxima, on random inputs with odd
 *   block counts (the two- and four-block loops and their tails), padding
 *   books and strides 8 to 72; the scalar one equals a plain reading of the
 *   layout (the offset of the books' values taken out, 64-bit sums).
 * - br_qscan_topk equals "the kernel's score of every book, then br_topk"
 *   exactly (indices and score bits) for every table: books 1 to 2,003,
 *   strides 8 to 64, k = 1, 3, 10, n - 1, n, n + 3 (both the floor path and
 *   the large-k path), read lists (random, all, with repeats and
 *   out-of-range entries), with and without biases, and awkward values:
 *   tied (duplicated) rows, rows that differ by far less than the int8 step
 *   (so only a sound error bound finds the right books; dropping a term of
 *   the bound fails this test), zero rows, a zero reader, values near 1e-30 and
 *   near 1e12, one huge coordinate among small ones.
 * - The floor path on 4,099 and 10,007 books with k up to 32: read lists
 *   of the best books (the groups' maxima read), the widest stride (1016,
 *   the error term near its 16-bit limit), all rows equal (tied maxima).
 * - A constructed pair where the quantised order is wrong by nearly the
 *   whole error bound.
 * - Values it cannot bound (NaN, infinity, > 1e15) and strides past 1016
 *   are refused with BR_ERR_UNSUPPORTED, at create and per query.
 * - br_topk_bounded with gmax and a floor equals br_topk over the exact
 *   scores, for random slack between bound and score.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "br_kernels.h"
#include "br_qscan.h"
#include "br_rng.h"
#include "br_topk.h"

static float unif(br_rng *g, float lo, float hi)
{
    return lo + (hi - lo) * (float)br_rng_uniform(g);
}

static void *zalloc64(size_t bytes)
{
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    assert_non_null(p);
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

/* The tables this CPU can run. */
static size_t tables(const br_kernels **t)
{
    size_t n = 0;
    t[n++] = br_kernels_scalar();
    if (br_kernels_avx2())
        t[n++] = br_kernels_avx2();
    if (br_kernels_avx512())
        t[n++] = br_kernels_avx512();
    return n;
}

/* A random quantised reader (stride / 4 words, -63..63 each); returns the
 * sum of its values. */
static int32_t random_reader(br_rng *g, size_t st, uint32_t *uq)
{
    int32_t usum = 0;
    for (size_t i = 0; i < st / 4; i++) {
        uq[i] = 0;
        for (int b = 0; b < 4; b++) {
            int v = (int)br_rng_below(g, 127) - 63;
            usum += v;
            uq[i] |= (uint32_t)(uint8_t)(int8_t)v << (8 * b);
        }
    }
    return usum;
}

/* nb random blocks of the quantised layout (values 1..255, scales about
 * 1e-4..0.01, one book in nine a padding book). */
static uint8_t *random_blocks(br_rng *g, size_t st, size_t nb)
{
    size_t bs = BR_QSCAN_BLOCK_BYTES(st);
    uint8_t *blk = zalloc64(nb * bs);
    for (size_t j = 0; j < nb; j++) {
        for (size_t i = 0; i < 16 * st; i++)
            blk[j * bs + i] = (uint8_t)(1 + br_rng_below(g, 255));
        uint8_t *k = blk + j * bs + 16 * st;
        for (size_t l = 0; l < 16; l++) {
            uint16_t qe = (uint16_t)br_rng_below(g, 65536);
            uint16_t sh = (uint16_t)(0x3800 + br_rng_below(g, 0x0400));
            float base = unif(g, -2, 2);
            if (br_rng_below(g, 9) == 0)
                sh = 0, base = -INFINITY;
            memcpy(k + 2 * l, &qe, 2);
            memcpy(k + 32 + 2 * l, &sh, 2);
            memcpy(k + 64 + 4 * l, &base, 4);
        }
    }
    return blk;
}

static void test_kernel_tables_agree(void **state)
{
    (void)state;
    const br_kernels *t[3];
    size_t nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 11);
    static const size_t strides[] = {8, 16, 24, 32, 40, 72};
    static const size_t blocks[] = {1, 2, 3, 4, 5, 7, 9, 13};
    for (size_t si = 0; si < sizeof strides / sizeof *strides; si++)
        for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++) {
            size_t st = strides[si], nb = blocks[bi], nbooks = nb * 16;
            uint32_t *uq = zalloc64(st / 4 * sizeof *uq);
            size_t bs = BR_QSCAN_BLOCK_BYTES(st);
            int32_t usum = random_reader(&g, st, uq);
            uint8_t *blk = random_blocks(&g, st, nb);
            float su = unif(&g, 0, 0.02f), ce = unif(&g, 0, 1), add = unif(&g, -3, 3);
            float *out0 = zalloc64(nbooks * 4), *gm0 = zalloc64(nb * 4);
            t[0]->qscan(uq, 128 * usum, blk, nb, st, su, ce, add, out0, gm0);
            for (size_t b = 0; b < nbooks; b++)   /* the maxima are of the bounds */
                assert_true(out0[b] <= gm0[b / 16]);
            /* the scalar reference against a plain reading of the layout */
            for (size_t b = 0; b < nbooks; b += 5) {
                const uint8_t *q = blk + (b / 16) * bs, *k = q + 16 * st;
                int64_t acc = 0;
                for (size_t i = 0; i < st; i++)
                    acc += (int64_t)((int)q[(i / 4) * 64 + 4 * (b % 16) + i % 4] - 128) *
                           (int8_t)(uint8_t)(uq[i / 4] >> (8 * (i % 4)));
                uint16_t qe, sh;
                float scale, base;
                memcpy(&qe, k + 2 * (b % 16), 2);
                memcpy(&sh, k + 32 + 2 * (b % 16), 2);
                uint32_t bits = (uint32_t)sh << 16;
                memcpy(&scale, &bits, 4);
                memcpy(&base, k + 64 + 4 * (b % 16), 4);
                float want = fmaf(scale, fmaf(su, (float)(acc + qe), ce), base) + add;
                assert_memory_equal(&want, &out0[b], 4);
            }
            for (size_t ti = 1; ti < nt; ti++) {
                float *out = zalloc64(nbooks * 4), *gm = zalloc64(nb * 4);
                t[ti]->qscan(uq, 128 * usum, blk, nb, st, su, ce, add, out, gm);
                if (memcmp(out, out0, nbooks * 4) != 0 || memcmp(gm, gm0, nb * 4) != 0) {
                    print_error("qscan %s differs from scalar: stride %zu, %zu blocks\n",
                                t[ti]->name, st, nb);
                    fail();
                }
                free(out);
                free(gm);
            }
            free(out0);
            free(gm0);
            free(uq);
            free(blk);
        }
}

/* ---- br_qscan_topk against the plain path -------------------------------------- */

enum vals { V_PLAIN, V_TIES, V_NEAR, V_ZEROS, V_TINY, V_LARGE, V_SPIKE, V_COUNT };
static const char *vals_name[] = {"plain", "tied rows", "near rows", "zero rows", "tiny", "large",
                                  "spike"};

static void fill(br_rng *g, enum vals v, float *Q, float *bias, size_t n, size_t st,
                 size_t dim, float *u)
{
    float mag = v == V_TINY ? 1e-30f : v == V_LARGE ? 1e6f : 1.0f;
    for (size_t b = 0; b < n; b++) {
        float *row = Q + b * st;
        memset(row, 0, st * sizeof *row);
        if (v == V_TIES && b % 3 != 0) {   /* copies of an earlier row: equal scores */
            memcpy(row, Q + (b - b % 3) * st, st * sizeof *row);
            if (bias)
                bias[b] = bias[b - b % 3];
            continue;
        }
        if (v == V_NEAR && b > 0) {
            /* the first row plus noise far below the int8 step: the bounds
             * alone cannot order these books */
            for (size_t i = 0; i < dim; i++)
                row[i] = Q[i] + unif(g, -1e-4f, 1e-4f);
            if (bias)
                bias[b] = bias[0] + unif(g, -1e-5f, 1e-5f);
            continue;
        }
        if (!(v == V_ZEROS && b % 4 == 1))
            for (size_t i = 0; i < dim; i++)
                row[i] = unif(g, -mag, mag);
        if (v == V_SPIKE && b % 5 == 0)
            row[br_rng_below(g, (uint32_t)dim)] = 1e4f;
        if (bias)
            bias[b] = v == V_ZEROS && b % 4 == 1 ? 0.0f : unif(g, -1, 1) * (v == V_LARGE ? 1e6f : 1);
    }
    for (size_t i = 0; i < st; i++)
        u[i] = i < dim ? unif(g, -mag, mag) : 0.0f;
    if (v == V_ZEROS)
        memset(u, 0, st * sizeof *u);
}

static size_t make_exclude(br_rng *g, int how, size_t n, uint32_t *ex)
{
    size_t m = 0;
    if (how == 1)
        for (size_t i = 0; i < n; i++)
            if (br_rng_below(g, 4) == 0)
                ex[m++] = (uint32_t)i;
    if (how == 2)
        for (size_t i = 0; i < n; i++)
            ex[m++] = (uint32_t)i;
    if (how == 3) {
        for (size_t i = 0; i < n; i++)
            if (br_rng_below(g, 3) == 0) {
                ex[m++] = (uint32_t)i;
                if (br_rng_below(g, 2))
                    ex[m++] = (uint32_t)i;
            }
        ex[m++] = (uint32_t)n;
        ex[m++] = UINT32_MAX;
    }
    return m;
}

/* One catalogue under test: the float rows, the reader, the buffers of
 * a comparison, and (after qcase_build) its pre-scan. */
typedef struct qcase {
    size_t n, st;
    float *Q, *bias, *u, *sc;
    uint32_t *ex;              /* room for 2 n + 4 read books */
    br_scored *want, *got;     /* room for n + 3 */
    br_qscan *q;
    void *work;
} qcase;

static void qcase_new(qcase *c, size_t n, size_t st, int with_bias)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    c->st = st;
    c->Q = zalloc64(n * st * 4);
    c->bias = with_bias ? zalloc64(n * 4) : NULL;
    c->u = zalloc64(st * 4);
    c->sc = zalloc64(n * 4);
    c->ex = malloc((2 * n + 4) * sizeof *c->ex);
    c->want = malloc((n + 3) * sizeof *c->want);
    c->got = malloc((n + 3) * sizeof *c->got);
    assert_true(c->ex && c->want && c->got);
}

/* The pre-scan of the rows as they are now. */
static void qcase_build(qcase *c)
{
    assert_int_equal(br_qscan_create(c->Q, c->bias, (uint32_t)c->n, (uint32_t)c->st, &c->q, NULL),
                     BR_OK);
    c->work = zalloc64(br_qscan_work_bytes(c->q));
}

static void qcase_free(qcase *c)
{
    br_qscan_free(c->q);
    free(c->work);
    free(c->Q);
    free(c->bias);
    free(c->u);
    free(c->sc);
    free(c->ex);
    free(c->want);
    free(c->got);
}

/* br_qscan_topk with table t must equal t's scores of every book then
 * br_topk, book for book and bit for bit; `what` names the case. */
static void check_topk(qcase *c, const br_kernels *t, float add, size_t n_ex, size_t k,
                       const char *what)
{
    const uint32_t *ex = n_ex ? c->ex : NULL;
    size_t m = 0;
    t->score(c->u, c->Q, c->n, c->st, c->bias, add, c->sc);
    size_t wn = br_topk(c->sc, c->n, ex, n_ex, k, c->want);
    assert_int_equal(br_qscan_topk(c->q, t, c->u, add, ex, n_ex, k, c->work, c->got, &m), BR_OK);
    if (m != wn) {
        print_error("%s: %zu results, expected %zu\n", what, m, wn);
        fail();
    }
    for (size_t i = 0; i < wn; i++)
        if (c->got[i].idx != c->want[i].idx ||
            memcmp(&c->got[i].score, &c->want[i].score, 4) != 0) {
            print_error("%s: rank %zu is (%u, %.9g), expected (%u, %.9g)\n", what, i,
                        c->got[i].idx, (double)c->got[i].score, c->want[i].idx,
                        (double)c->want[i].score);
            fail();
        }
}

static void test_topk_exact(void **state)
{
    (void)state;
    const br_kernels *t[3];
    size_t nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 12);
    static const size_t ns[] = {1, 7, 17, 100, 1001, 2003};
    static const size_t dims[] = {5, 8, 24, 32, 61};
    char what[200];
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
            for (int v = 0; v < V_COUNT; v++)
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    size_t n = ns[ni], dim = dims[di], st = (dim + 7) / 8 * 8;
                    qcase c;
                    qcase_new(&c, n, st, with_bias);
                    fill(&g, (enum vals)v, c.Q, c.bias, n, st, dim, c.u);
                    qcase_build(&c);
                    float add = v == V_LARGE ? 3e6f : unif(&g, -2, 2);
                    for (int how = 0; how < 4; how++) {
                        size_t n_ex = make_exclude(&g, how, n, c.ex);
                        const size_t ks[] = {1, 3, 10, n > 1 ? n - 1 : 1, n, n + 3};
                        for (size_t ki = 0; ki < 6; ki++)
                            for (size_t ti = 0; ti < nt; ti++) {
                                snprintf(what, sizeof what,
                                         "%s: n=%zu dim=%zu %s%s excl=%d k=%zu", t[ti]->name,
                                         n, dim, vals_name[v], with_bias ? " +bias" : "", how,
                                         ks[ki]);
                                check_topk(&c, t[ti], add, n_ex, ks[ki], what);
                            }
                    }
                    qcase_free(&c);
                }
}

/* Two books whose quantised scores put A first while B's exact score is
 * higher, by as much as the rounding of the books' values allows: every
 * coordinate of B sits 0.499 of a step above the grid, where the reader's
 * weights are large, and A is three steps ahead on the grid. Only the
 * bound's term for the books' rounding (ce) lets B be scored exactly: drop
 * it and this test fails. */
static void test_adversarial_rounding(void **state)
{
    (void)state;
    const size_t st = 32, n = 40;
    float *Q = zalloc64(n * st * 4), *u = zalloc64(st * 4);
    u[0] = 1.0f;
    for (size_t i = 1; i < st; i++)
        u[i] = (40.0f + 0.499f) / 63.0f;
    float *A = Q, *B = Q + st;
    A[0] = B[0] = 1.0f;
    for (size_t i = 1; i < st; i++) {
        A[i] = (i <= 3 ? 61.0f : 60.0f) / 127.0f;
        B[i] = (60.0f + 0.499f) / 127.0f;
    }
    for (size_t b = 2; b < n; b++)   /* far below */
        for (size_t i = 0; i < st; i++)
            Q[b * st + i] = -0.01f * (float)(b + i);
    const br_kernels *t[3];
    size_t nt = tables(t);
    br_qscan *q = NULL;
    assert_int_equal(br_qscan_create(Q, NULL, n, st, &q, NULL), BR_OK);
    void *work = zalloc64(br_qscan_work_bytes(q));
    for (size_t ti = 0; ti < nt; ti++) {
        float sa, sb;
        t[ti]->score(u, A, 1, st, NULL, 0.0f, &sa);
        t[ti]->score(u, B, 1, st, NULL, 0.0f, &sb);
        assert_true(sb > sa);   /* the premise */
        br_scored out[2];
        size_t m = 0;
        assert_int_equal(br_qscan_topk(q, t[ti], u, 0.0f, NULL, 0, 1, work, out, &m), BR_OK);
        assert_int_equal(m, 1);
        assert_int_equal(out[0].idx, 1);
        assert_memory_equal(&out[0].score, &sb, 4);
    }
    br_qscan_free(q);
    free(work);
    free(Q);
    free(u);
}

static void test_refuses_what_it_cannot_bound(void **state)
{
    (void)state;
    const size_t n = 20, st = 8;
    float *Q = zalloc64(n * st * 4), *bias = zalloc64(n * 4), *u = zalloc64(st * 4);
    for (size_t i = 0; i < n * st; i++)
        Q[i] = 0.25f;
    br_qscan *q = NULL;
    const float bad[] = {NAN, INFINITY, -INFINITY, 2e15f};
    for (size_t i = 0; i < 4; i++) {
        Q[37] = bad[i];
        assert_int_equal(br_qscan_create(Q, bias, n, st, &q, NULL), BR_ERR_UNSUPPORTED);
        assert_null(q);
        Q[37] = 0.25f;
        bias[3] = bad[i];
        assert_int_equal(br_qscan_create(Q, bias, n, st, &q, NULL), BR_ERR_UNSUPPORTED);
        bias[3] = 0.0f;
    }
    assert_int_equal(br_qscan_create(Q, bias, n, 12, &q, NULL), BR_ERR_ARG);   /* stride */
    /* past 1016 dimensions the error term no longer fits in 16 bits */
    float *wide = zalloc64(2 * 1024 * 4);
    assert_int_equal(br_qscan_create(wide, NULL, 2, 1024, &q, NULL), BR_ERR_UNSUPPORTED);
    assert_null(q);
    free(wide);
    assert_int_equal(br_qscan_create(Q, bias, n, st, &q, NULL), BR_OK);
    void *work = zalloc64(br_qscan_work_bytes(q));
    br_scored out[4];
    size_t m = 99;
    for (size_t i = 0; i < 4; i++) {
        u[2] = bad[i];
        assert_int_equal(br_qscan_topk(q, br_kernels_get(), u, 0.0f, NULL, 0, 4, work, out, &m),
                         BR_ERR_UNSUPPORTED);
        assert_int_equal(m, 0);
        u[2] = 0.0f;
        assert_int_equal(br_qscan_topk(q, br_kernels_get(), u, bad[i], NULL, 0, 4, work, out, &m),
                         BR_ERR_UNSUPPORTED);
    }
    assert_int_equal(br_qscan_topk(q, br_kernels_get(), u, 0.0f, NULL, 0, 4, work, out, &m),
                     BR_OK);
    assert_int_equal(m, 4);
    br_qscan_free(q);
    br_qscan_free(NULL);
    free(work);
    free(Q);
    free(bias);
    free(u);
}

/* ---- br_topk_bounded --------------------------------------------------------------- */

typedef struct exact_ctx {
    const float *s;
    size_t calls;
} exact_ctx;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Puts the cnt best books by t's exact scores in c->ex, ascending, and
 * returns how many. */
static size_t read_best(qcase *c, const br_kernels *t, float add, size_t cnt)
{
    t->score(c->u, c->Q, c->n, c->st, c->bias, add, c->sc);
    size_t m = br_topk(c->sc, c->n, NULL, 0, cnt, c->want);
    for (size_t i = 0; i < m; i++)
        c->ex[i] = c->want[i].idx;
    qsort(c->ex, m, sizeof *c->ex, cmp_u32);
    return m;
}

/* The floor path on larger catalogues (k up to 32 needs 8 k groups of 16):
 * books 4,099 and 10,007 at dim 32 and the widest stride (1016, values at
 * full scale, so the error term nears its 16-bit limit), read lists made of
 * the books with the best bounds (so the groups' maxima are read and the
 * seeds come from the next best), and all rows equal (every group maximum
 * tied: the seed level's bisection cannot split them). */
static void test_topk_floor_paths(void **state)
{
    (void)state;
    const br_kernels *t[3];
    size_t nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 14);
    struct {
        size_t n, st;
        int same;
    } cases[] = {{4099, 32, 0}, {10007, 32, 0}, {4099, 1016, 0}, {4099, 32, 1}};
    char what[200];
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        size_t n = cases[ci].n, st = cases[ci].st;
        qcase c;
        qcase_new(&c, n, st, 1);
        for (size_t b = 0; b < n; b++) {
            for (size_t i = 0; i < st; i++)
                c.Q[b * st + i] = cases[ci].same ? c.Q[i] + (b == 0) * unif(&g, -1, 1)
                                                 : (st > 100 ? (i % 2 ? 1.0f : -1.0f) *
                                                                   unif(&g, 0.99f, 1.0f)
                                                             : unif(&g, -0.5f, 0.5f));
            c.bias[b] = cases[ci].same ? 0.25f : unif(&g, -0.3f, 0.3f);
        }
        for (size_t i = 0; i < st; i++)
            c.u[i] = unif(&g, -1, 1);
        qcase_build(&c);
        static const size_t ks[] = {1, 10, 32};
        for (size_t ki = 0; ki < 3; ki++)
            for (int how = 0; how < 2; how++)
                for (size_t ti = 0; ti < nt; ti++) {
                    /* the read lists: none, and the 3 k best by exact score */
                    size_t k = ks[ki], n_ex = how ? read_best(&c, t[ti], 0.5f, 3 * k) : 0;
                    snprintf(what, sizeof what, "%s: n=%zu stride=%zu%s k=%zu read=%d",
                             t[ti]->name, n, st, cases[ci].same ? " same rows" : "", k, how);
                    check_topk(&c, t[ti], 0.5f, n_ex, k, what);
                }
        qcase_free(&c);
    }
}

static float exact_of(void *p, uint32_t i)
{
    exact_ctx *c = p;
    c->calls++;
    return c->s[i];
}

static void test_bounded_topk(void **state)
{
    (void)state;
    br_rng g;
    br_rng_seed(&g, 13);
    static const size_t ns[] = {1, 15, 16, 17, 33, 1000, 4099};
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
        size_t n = ns[ni], groups = (n + 15) / 16;
        float *s = malloc(n * 4), *up = malloc(n * 4), *gm = malloc(groups * 4);
        uint32_t *ex = malloc((2 * n + 4) * sizeof *ex);
        br_scored *want = malloc((n + 3) * sizeof *want), *got = malloc((n + 3) * sizeof *got);
        assert_true(s && up && gm && ex && want && got);
        for (int rep = 0; rep < 6; rep++) {
            for (size_t i = 0; i < n; i++) {
                s[i] = rep == 1 ? (float)br_rng_below(&g, 4) : unif(&g, -10, 10);   /* ties */
                up[i] = s[i] + (rep == 2 ? 0.0f : unif(&g, 0, rep == 3 ? 5.0f : 0.1f));
            }
            for (size_t gi = 0; gi < groups; gi++) {
                gm[gi] = -INFINITY;
                for (size_t i = gi * 16; i < n && i < gi * 16 + 16; i++)
                    gm[gi] = up[i] > gm[gi] ? up[i] : gm[gi];
            }
            for (int how = 0; how < 4; how++) {
                size_t n_ex = make_exclude(&g, how, n, ex);
                const size_t ks[] = {1, 2, 10, n, n + 3};
                for (size_t ki = 0; ki < 5; ki++) {
                    size_t k = ks[ki];
                    size_t wn = br_topk(s, n, n_ex ? ex : NULL, n_ex, k, want);
                    /* floors: none, a valid one (the k-th best itself), and
                     * -inf given as NaN */
                    float floors[3] = {-INFINITY, wn == k && wn ? want[wn - 1].score : -INFINITY,
                                       NAN};
                    for (int fi = 0; fi < 3; fi++)
                        for (int use_gm = 0; use_gm < 2; use_gm++) {
                            exact_ctx c = {s, 0};
                            size_t m = br_topk_bounded(up, use_gm ? gm : NULL, floors[fi], n,
                                                       n_ex ? ex : NULL, n_ex, k, exact_of, &c,
                                                       got);
                            assert_int_equal(m, wn);
                            for (size_t i = 0; i < wn; i++) {
                                assert_int_equal(got[i].idx, want[i].idx);
                                assert_memory_equal(&got[i].score, &want[i].score, 4);
                            }
                            assert_true(c.calls <= n);
                        }
                }
            }
        }
        free(s);
        free(up);
        free(gm);
        free(ex);
        free(want);
        free(got);
    }
}

/* qscan_multi with 1..4 readers gives each reader the very bits its own
 * qscan call gives, in every table (odd and even block counts: the AVX-512
 * form takes blocks in pairs). */
static void test_multi_kernel_equals_single(void **state)
{
    (void)state;
    const br_kernels *t[3];
    size_t nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 21);
    static const size_t strides[] = {8, 24, 72, 200};
    static const size_t blocks[] = {1, 2, 3, 5, 8};
    for (size_t si = 0; si < sizeof strides / sizeof *strides; si++)
        for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++) {
            size_t st = strides[si], nb = blocks[bi];
            uint8_t *blk = random_blocks(&g, st, nb);
            uint32_t *uq[4];
            br_qscan_query qs[4];
            float *want[4], *wgm[4];
            for (int r = 0; r < 4; r++) {
                uq[r] = zalloc64(st);
                int32_t usum = random_reader(&g, st, uq[r]);
                qs[r] = (br_qscan_query){uq[r], 128 * usum, unif(&g, 0, 0.02f), unif(&g, 0, 1),
                                         unif(&g, -3, 3), zalloc64(nb * 64), zalloc64(nb * 4)};
                want[r] = zalloc64(nb * 64);
                wgm[r] = zalloc64(nb * 4);
            }
            for (size_t ti = 0; ti < nt; ti++) {
                for (int r = 0; r < 4; r++)
                    t[ti]->qscan(uq[r], qs[r].ucorr, blk, nb, st, qs[r].su, qs[r].ce, qs[r].add,
                                 want[r], wgm[r]);
                for (size_t m = 1; m <= 4; m++) {
                    for (int r = 0; r < 4; r++) {
                        memset(qs[r].out, 0xff, nb * 64);
                        memset(qs[r].gmax, 0xff, nb * 4);
                    }
                    t[ti]->qscan_multi(qs, m, blk, nb, st);
                    for (size_t r = 0; r < m; r++)
                        if (memcmp(qs[r].out, want[r], nb * 64) != 0 ||
                            memcmp(qs[r].gmax, wgm[r], nb * 4) != 0) {
                            print_error("qscan_multi %s: reader %zu of %zu differs: stride %zu, "
                                        "%zu blocks\n", t[ti]->name, r, m, st, nb);
                            fail();
                        }
                }
            }
            for (int r = 0; r < 4; r++) {
                free(uq[r]);
                free(qs[r].out);
                free(qs[r].gmax);
                free(want[r]);
                free(wgm[r]);
            }
            free(blk);
        }
}

/* br_qscan_topk_multi answers every reader as br_qscan_topk does, reader
 * by reader and bit for bit, also when one of them is refused (a NaN in
 * its vector: BR_ERR_UNSUPPORTED for that reader alone). */
static void test_topk_multi(void **state)
{
    (void)state;
    const br_kernels *t[3];
    size_t nt = tables(t);
    br_rng g;
    br_rng_seed(&g, 22);
    static const size_t ns[] = {7, 100, 1001, 2003};
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
        for (size_t m = 1; m <= BR_QSCAN_MULTI; m++) {
            size_t n = ns[ni], dim = 61, st = 64, k = 10;
            qcase c;
            qcase_new(&c, n, st, 1);
            fill(&g, V_PLAIN, c.Q, c.bias, n, st, dim, c.u);
            qcase_build(&c);
            float *u[BR_QSCAN_MULTI], add[BR_QSCAN_MULTI];
            uint32_t *ex[BR_QSCAN_MULTI];
            size_t n_ex[BR_QSCAN_MULTI], n_out[BR_QSCAN_MULTI];
            br_scored *out[BR_QSCAN_MULTI];
            br_err rc[BR_QSCAN_MULTI];
            for (size_t r = 0; r < m; r++) {
                u[r] = zalloc64(st * 4);
                for (size_t i = 0; i < dim; i++)
                    u[r][i] = unif(&g, -1, 1);
                if (r == 2)
                    u[r][5] = NAN;
                add[r] = unif(&g, -2, 2);
                ex[r] = malloc((2 * n + 4) * sizeof *ex[r]);
                n_ex[r] = make_exclude(&g, (int)(r % 4), n, ex[r]);
                out[r] = malloc((k + 1) * sizeof *out[r]);
            }
            void *work = zalloc64(BR_QSCAN_MULTI * br_qscan_work_bytes(c.q));
            for (size_t ti = 0; ti < nt; ti++) {
                br_qscan_topk_multi(c.q, t[ti], m, (const float *const *)u, add,
                                    (const uint32_t *const *)ex, n_ex, k, work, out, n_out, rc);
                for (size_t r = 0; r < m; r++) {
                    size_t wn = 0;
                    br_err we = br_qscan_topk(c.q, t[ti], u[r], add[r], ex[r], n_ex[r], k,
                                              c.work, c.want, &wn);
                    assert_int_equal(rc[r], we);
                    assert_int_equal(rc[r], r == 2 ? BR_ERR_UNSUPPORTED : BR_OK);
                    assert_int_equal(n_out[r], wn);
                    for (size_t i = 0; i < wn; i++)
                        if (out[r][i].idx != c.want[i].idx ||
                            memcmp(&out[r][i].score, &c.want[i].score, 4) != 0) {
                            print_error("%s: n=%zu reader %zu of %zu: rank %zu differs\n",
                                        t[ti]->name, n, r, m, i);
                            fail();
                        }
                }
            }
            for (size_t r = 0; r < m; r++) {
                free(u[r]);
                free(ex[r]);
                free(out[r]);
            }
            free(work);
            qcase_free(&c);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_tables_agree),
        cmocka_unit_test(test_multi_kernel_equals_single),
        cmocka_unit_test(test_topk_multi),
        cmocka_unit_test(test_topk_exact),
        cmocka_unit_test(test_topk_floor_paths),
        cmocka_unit_test(test_adversarial_rounding),
        cmocka_unit_test(test_refuses_what_it_cannot_bound),
        cmocka_unit_test(test_bounded_topk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
