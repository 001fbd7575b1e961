/*
 * test_recommend.c - the br_rec library (infer/br_recommend.h) on synthetic
 * models built in memory: top-k equals the scalar reference followed by a
 * full sort, exactly (odd sizes, k = 1, k = n, k > n, ties by book id); the
 * SIMD score kernel equals the scalar one; read books are never returned
 * unless asked for; similar books by cosine; fold-in recovers a planted
 * reader (least squares) and points the right way (bpr); predictions equal
 * the scores; many threads with their own scratch agree with one; and every
 * error path returns its code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "br_kernels.h"
#include "br_model.h"
#include "br_recommend.h"
#include "br_rng.h"
#include "br_topk.h"

/* ---- a synthetic model ----------------------------------------------------- */

typedef struct synth {
    uint32_t n_users, n_books, dim, stride;
    float *P, *Q, *bu, *bb;
    uint32_t *uid, *bid;
    uint64_t *ptr;
    uint32_t *idx;
    void *buf;
    br_model *m;
    br_rec *rec;
} synth;

static float unif(br_rng *g) { return (float)(br_rng_next(g) >> 40) / (float)(1u << 24); }

/* Book biases are 0.4 x this x uniform(-0.5, 0.5); book vectors are
 * synth_q_scale x uniform(-0.5, 0.5), plus synth_q_offset in dimension 0. */
static float synth_bias_scale = 1.0f, synth_q_scale = 1.0f, synth_q_offset = 0.0f;

/* Ids are spaced (uid = 3u + 2, bid = 5b + 1) so id maps are exercised.
 * `ties`: books come in pairs with equal vectors and biases. */
static void synth_make(synth *s, br_model_kind kind, br_loss_kind loss, uint32_t nu,
                       uint32_t nb, uint32_t dim, uint64_t seed, int ties, float reg)
{
    memset(s, 0, sizeof *s);
    s->n_users = nu;
    s->n_books = nb;
    s->dim = dim;
    s->stride = dim;   /* the writer pads to br_model_stride */
    br_rng g;
    br_rng_seed(&g, seed);
    s->P = calloc((size_t)nu * dim, sizeof *s->P);
    s->Q = calloc((size_t)nb * dim, sizeof *s->Q);
    s->bu = calloc(nu, sizeof *s->bu);
    s->bb = calloc(nb, sizeof *s->bb);
    s->uid = calloc(nu, sizeof *s->uid);
    s->bid = calloc(nb, sizeof *s->bid);
    s->ptr = calloc((size_t)nu + 1, sizeof *s->ptr);
    s->idx = calloc((size_t)nu * nb + 1, sizeof *s->idx);
    for (size_t i = 0; i < (size_t)nu * dim; i++)
        s->P[i] = unif(&g) - 0.5f;
    for (uint32_t b = 0; b < nb; b++) {
        for (uint32_t d = 0; d < dim; d++)
            s->Q[(size_t)b * dim + d] =
                ties && (b & 1) ? s->Q[(size_t)(b - 1) * dim + d]
                                : synth_q_scale * (unif(&g) - 0.5f) + (d ? 0.0f : synth_q_offset);
        s->bb[b] = ties && (b & 1) ? s->bb[b - 1] : 0.4f * synth_bias_scale * (unif(&g) - 0.5f);
        s->bid[b] = 5 * b + 1;
    }
    uint64_t k = 0;
    for (uint32_t u = 0; u < nu; u++) {
        s->uid[u] = 3 * u + 2;
        s->bu[u] = 0.2f * (unif(&g) - 0.5f);
        s->ptr[u] = k;
        /* each user read about a third of the books (user 0 none) */
        for (uint32_t b = 0; b < nb; b++)
            if (u && br_rng_below(&g, 3) == 0)
                s->idx[k++] = b;
    }
    s->ptr[nu] = k;
    br_model_data d;
    memset(&d, 0, sizeof d);
    d.meta.kind = kind;
    d.meta.loss = loss;
    d.meta.optim = BR_OPTIM_SGD;
    d.meta.dim = dim;
    d.meta.n_users = nu;
    d.meta.n_books = nb;
    d.meta.global_mean = kind == BR_MODEL_BIASED ? 3.5f : 0.0f;
    d.meta.reg = reg;
    d.meta.reg_bias = reg;
    d.meta.created_unix = 1;
    d.meta.test_rmse = d.meta.test_mae = NAN;
    d.user_vecs = s->P;
    d.book_vecs = s->Q;
    d.src_stride = dim;
    d.user_bias = kind == BR_MODEL_BIASED ? s->bu : NULL;
    d.book_bias = kind == BR_MODEL_BIASED ? s->bb : NULL;
    d.user_ids = s->uid;
    d.book_ids = s->bid;
    d.read_ptr = s->ptr;
    d.read_idx = s->idx;
    size_t len = 0;
    br_diag dg;
    assert_int_equal(br_model_save_buffer(&d, &s->buf, &len, &dg), BR_OK);
    assert_int_equal(br_model_open_buffer(s->buf, len, &s->m, &dg), BR_OK);
    assert_int_equal(br_rec_create(s->m, &s->rec, &dg), BR_OK);
}

static void synth_free(synth *s)
{
    br_rec_free(s->rec);
    br_model_free(s->m);
    free(s->buf);
    free(s->P);
    free(s->Q);
    free(s->bu);
    free(s->bb);
    free(s->uid);
    free(s->bid);
    free(s->ptr);
    free(s->idx);
}

/* ---- the reference: scalar kernel + full sort --------------------------------- */

static int cmp_scored(const void *a, const void *b)
{
    br_scored x = *(const br_scored *)a, y = *(const br_scored *)b;
    return br_scored_before(x, y) ? -1 : br_scored_before(y, x) ? 1 : 0;
}

static size_t reference(const synth *s, uint32_t u, int include_read, size_t k, br_scored *out)
{
    const br_model *m = s->m;
    uint32_t st = br_model_get_meta(m)->stride, nb = s->n_books;
    const float *bu = br_model_user_bias(m), *bb = br_model_book_bias(m);
    float add = bu ? br_model_get_meta(m)->global_mean + bu[u] : 0.0f;
    float *sc = malloc(nb * sizeof *sc);
    br_kernels_scalar()->score(br_model_user_vecs(m) + (size_t)u * st, br_model_book_vecs(m),
                               nb, st, bb, add, sc);
    size_t nr;
    const uint32_t *rd = br_model_user_read(m, u, &nr);
    br_scored *all = malloc((nb + 1) * sizeof *all);
    size_t n = 0, j = 0;
    for (uint32_t b = 0; b < nb; b++) {
        while (j < nr && rd[j] < b)
            j++;
        if (!include_read && j < nr && rd[j] == b)
            continue;
        all[n++] = (br_scored){sc[b], b};
    }
    qsort(all, n, sizeof *all, cmp_scored);
    if (k > n)
        k = n;
    memcpy(out, all, k * sizeof *out);
    free(all);
    free(sc);
    return k;
}

static void check_user(synth *s, br_rec_scratch *sc, uint32_t u, size_t k, unsigned flags)
{
    size_t cap = k < s->n_books ? k : s->n_books;
    br_rec_item *got = malloc((cap + 1) * sizeof *got);
    br_scored *want = malloc((s->n_books + 1) * sizeof *want);
    size_t n = 12345;
    br_diag d;
    assert_int_equal(br_rec_user(s->rec, sc, s->uid[u], k, flags, got, &n, &d), BR_OK);
    size_t wn = reference(s, u, flags & BR_REC_INCLUDE_READ, k, want);
    assert_int_equal(n, wn);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(got[i].book, want[i].idx);
        assert_int_equal(got[i].book_id, s->bid[want[i].idx]);
        /* bit-identical scores */
        assert_memory_equal(&got[i].score, &want[i].score, sizeof(float));
    }
    free(got);
    free(want);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_topk_equals_reference(void **state)
{
    (void)state;
    static const uint32_t books[] = {1, 7, 9, 37, 1001};
    static const uint32_t dims[] = {1, 5, 13, 32};
    for (int kind = BR_MODEL_DOT; kind <= BR_MODEL_BIASED; kind++)
        for (size_t bi = 0; bi < sizeof books / sizeof *books; bi++)
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
                synth s;
                uint32_t nb = books[bi];
                synth_make(&s, (br_model_kind)kind, BR_LOSS_MSE, 6, nb, dims[di],
                           1000 + bi * 10 + di, 0, 0.01f);
                size_t ks[] = {1, 2, 10, nb > 1 ? nb - 1 : 1, nb, nb + 5};
                /* with the quantised pre-scan (br_rec_create), then without
                 * it (BR_REC_NO_PRESCAN, the one-shot program's path) */
                for (int plain = 0; plain < 2; plain++) {
                    if (plain) {
                        br_rec_free(s.rec);
                        assert_int_equal(br_rec_create_flags(s.m, BR_REC_NO_PRESCAN, &s.rec,
                                                             NULL),
                                         BR_OK);
                    }
                    br_rec_scratch *sc;
                    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
                    for (uint32_t u = 0; u < s.n_users; u++)
                        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                            check_user(&s, sc, u, ks[ki], 0);
                            check_user(&s, sc, u, ks[ki], BR_REC_INCLUDE_READ);
                        }
                    br_rec_scratch_free(sc);
                }
                synth_free(&s);
            }
}

static void test_ties_by_book_id(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_BIASED, BR_LOSS_MSE, 5, 301, 8, 77, 1, 0.01f);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    br_rec_item it[301];
    size_t n;
    assert_int_equal(br_rec_user(s.rec, sc, s.uid[0], 301, BR_REC_INCLUDE_READ, it, &n, NULL),
                     BR_OK);
    assert_int_equal(n, 301);
    int pairs = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        assert_true(it[i].score >= it[i + 1].score);
        if (it[i].score == it[i + 1].score) {
            assert_true(it[i].book_id < it[i + 1].book_id);
            pairs++;
        }
    }
    assert_true(pairs >= 150);   /* every twin pair is adjacent */
    for (uint32_t u = 0; u < s.n_users; u++)
        for (size_t k = 1; k <= 301; k += 37)
            check_user(&s, sc, u, k, 0);
    br_rec_scratch_free(sc);
    synth_free(&s);
}

static void test_simd_equals_scalar(void **state)
{
    (void)state;
    const br_kernels *a = br_kernels_avx2(), *r = br_kernels_scalar();
    if (!a)
        skip();
    br_rng g;
    br_rng_seed(&g, 5);
    for (size_t nb = 1; nb < 70; nb += 3)
        for (size_t st = 8; st <= 40; st += 8) {
            float *q = aligned_alloc(64, (nb * st * sizeof(float) + 63) / 64 * 64);
            float *u = aligned_alloc(64, (st * sizeof(float) + 63) / 64 * 64);
            float bias[70], o1[70], o2[70];
            for (size_t i = 0; i < nb * st; i++)
                q[i] = unif(&g) * 2 - 1;
            for (size_t i = 0; i < st; i++)
                u[i] = unif(&g) * 2 - 1;
            for (size_t i = 0; i < nb; i++)
                bias[i] = unif(&g);
            a->score(u, q, nb, st, bias, 0.25f, o1);
            r->score(u, q, nb, st, bias, 0.25f, o2);
            assert_memory_equal(o1, o2, nb * sizeof(float));
            a->score(u, q, nb, st, NULL, 0.0f, o1);
            r->score(u, q, nb, st, NULL, 0.0f, o2);
            assert_memory_equal(o1, o2, nb * sizeof(float));
            free(q);
            free(u);
        }
}

static void test_read_never_returned(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_BIASED, BR_LOSS_MSE, 40, 97, 16, 9, 0, 0.01f);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    br_rec_item it[97];
    for (uint32_t u = 0; u < s.n_users; u++) {
        size_t n, nr;
        const uint32_t *rd = br_model_user_read(s.m, u, &nr);
        assert_int_equal(br_rec_user(s.rec, sc, s.uid[u], 97, 0, it, &n, NULL), BR_OK);
        assert_int_equal(n, 97 - nr);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < nr; j++)
                assert_int_not_equal(it[i].book, rd[j]);
        assert_int_equal(br_rec_user(s.rec, sc, s.uid[u], 97, BR_REC_INCLUDE_READ, it, &n,
                                     NULL),
                         BR_OK);
        assert_int_equal(n, 97);
    }
    br_rec_scratch_free(sc);
    synth_free(&s);
}

static void test_similar(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_DOT, BR_LOSS_BPR, 3, 211, 13, 21, 0, 0.01f);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    const br_model *m = s.m;
    uint32_t st = br_model_get_meta(m)->stride;
    const float *Q = br_model_book_vecs(m), *nrm = br_model_book_norms(m);
    br_rec_item it[211];
    br_scored want[211];
    for (uint32_t b = 0; b < s.n_books; b += 17) {
        size_t n;
        assert_int_equal(br_rec_similar(s.rec, sc, s.bid[b], 250, it, &n, NULL), BR_OK);
        assert_int_equal(n, 210);
        size_t w = 0;
        for (uint32_t c = 0; c < s.n_books; c++) {
            if (c == b)
                continue;
            float dot = br_kernels_scalar()->dot(Q + (size_t)b * st, Q + (size_t)c * st, st);
            want[w++] = (br_scored){(dot * (1.0f / nrm[c])) * (1.0f / nrm[b]), c};
        }
        qsort(want, w, sizeof *want, cmp_scored);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(it[i].book, want[i].idx);
            assert_true(it[i].score <= 1.0001f && it[i].score >= -1.0001f);
        }
        /* the true cosine, recomputed in double, agrees */
        double dd = 0, na = 0, nc = 0;
        for (uint32_t d = 0; d < s.dim; d++) {
            double x = Q[(size_t)b * st + d], y = Q[(size_t)it[0].book * st + d];
            dd += x * y;
            na += x * x;
            nc += y * y;
        }
        assert_true(fabs(dd / sqrt(na * nc) - it[0].score) < 1e-5);
    }
    size_t n;
    assert_int_equal(br_rec_similar(s.rec, sc, 2, 5, it, &n, NULL), BR_ERR_NOT_FOUND);
    br_rec_scratch_free(sc);
    synth_free(&s);
}

/* A planted reader: ratings exactly mean + b_u + b_i + p.q_i; with almost no
 * regularisation the least-squares fold-in gives p and b_u back. */
static void test_foldin_recovers_planted(void **state)
{
    (void)state;
    for (int kind = BR_MODEL_DOT; kind <= BR_MODEL_BIASED; kind++) {
        synth s;
        synth_make(&s, (br_model_kind)kind, BR_LOSS_MSE, 2, 300, 12, 33, 0, 1e-9f);
        br_rec_scratch *sc;
        assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
        const br_model *m = s.m;
        uint32_t st = br_model_get_meta(m)->stride;
        const float *Q = br_model_book_vecs(m), *bb = br_model_book_bias(m);
        br_rng g;
        br_rng_seed(&g, 4);
        double p[12], bu = kind == BR_MODEL_BIASED ? 0.3 : 0.0;
        for (int d = 0; d < 12; d++)
            p[d] = (unif(&g) - 0.5) * 1.0;
        uint32_t ids[50];
        float r[50];
        for (int i = 0; i < 50; i++) {
            uint32_t b = (uint32_t)(i * 6 + 1);
            ids[i] = s.bid[b];
            double v = kind == BR_MODEL_BIASED ? 3.5 + bu + bb[b] : 3.0;
            for (int d = 0; d < 12; d++)
                v += p[d] * Q[(size_t)b * st + d];
            r[i] = (float)v;
            assert_true(r[i] >= 1 && r[i] <= 5);
        }
        float vec[16] __attribute__((aligned(64))), bias = -1;
        if (kind == BR_MODEL_DOT) {
            /* a dot model has no mean: the planted ratings carry 3.0 that p
             * cannot absorb exactly, so plant p for r - 3 + 3 = r: use r. */
            for (int i = 0; i < 50; i++) {
                uint32_t b = (uint32_t)(i * 6 + 1);
                double v = 0;
                for (int d = 0; d < 12; d++)
                    v += p[d] * Q[(size_t)b * st + d];
                r[i] = (float)(3.0 + v);
            }
        }
        br_diag d;
        assert_int_equal(br_rec_foldin(s.rec, sc, ids, r, 50, vec, &bias, &d), BR_OK);
        if (kind == BR_MODEL_BIASED) {
            for (int k = 0; k < 12; k++)
                assert_true(fabs(vec[k] - p[k]) < 2e-3);
            assert_true(fabs(bias - bu) < 2e-3);
        } else {
            /* dot: the best p explains r = 3 + p.q as well as it can: the
             * residual of the fit is what it must be, no more */
            double sse_fit = 0;
            for (int i = 0; i < 50; i++) {
                uint32_t b = (uint32_t)(i * 6 + 1);
                double v = 0;
                for (int k = 0; k < 12; k++)
                    v += vec[k] * Q[(size_t)b * st + k];
                sse_fit += (r[i] - v) * (r[i] - v);
            }
            double sse_planted = 0;
            for (int i = 0; i < 50; i++) {
                uint32_t b = (uint32_t)(i * 6 + 1);
                double v = 0;
                for (int k = 0; k < 12; k++)
                    v += p[k] * Q[(size_t)b * st + k];
                sse_planted += (r[i] - v) * (r[i] - v);
            }
            assert_true(sse_fit <= sse_planted + 1e-6);
            assert_true(bias == 0.0f);
        }
        for (uint32_t k = 12; k < st; k++)
            assert_true(vec[k] == 0.0f);
        /* the same reader, recommended: the listed books are left out */
        br_rec_item it[300];
        size_t n;
        assert_int_equal(br_rec_reader(s.rec, sc, ids, r, 50, 300, 0, it, &n, &d), BR_OK);
        assert_int_equal(n, 250);
        for (size_t i = 0; i < n; i++)
            assert_true(it[i].book % 6 != 1 || it[i].book > 295);
        br_rec_scratch_free(sc);
        synth_free(&s);
    }
}

/* The regularised least-squares fold-in against a reference solve here
 * (normal equations by Gauss-Jordan in long double), with fewer books than
 * unknowns (the m x m path) and more (the d x d path), both model kinds. */
static void test_foldin_matches_reference(void **state)
{
    (void)state;
    enum { DIM = 40, NB = 200 };
    static const size_t ms[] = {1, 5, 17, 40, 41, 60, 150};
    for (int kind = BR_MODEL_DOT; kind <= BR_MODEL_BIASED; kind++) {
        synth s;
        synth_make(&s, (br_model_kind)kind, BR_LOSS_MSE, 2, NB, DIM, 77, 0, 0.1f);
        br_rec_scratch *sc;
        assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
        uint32_t st = br_model_get_meta(s.m)->stride;
        const float *Q = br_model_book_vecs(s.m), *bb = br_model_book_bias(s.m);
        int biased = kind == BR_MODEL_BIASED;
        size_t D = DIM + (biased ? 1 : 0);
        br_rng g;
        br_rng_seed(&g, 9);
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
            size_t m = ms[mi];
            uint32_t ids[NB], bk[NB];
            float r[NB];
            for (size_t i = 0; i < m; i++) {
                bk[i] = (uint32_t)(i * 7 % NB);   /* distinct while m <= NB / gcd */
                ids[i] = s.bid[bk[i]];
                r[i] = (float)(1 + br_rng_below(&g, 5));
            }
            static long double A[DIM + 1][DIM + 2];
            memset(A, 0, sizeof A);
            for (size_t i = 0; i < m; i++) {
                long double f[DIM + 1];
                for (size_t d = 0; d < DIM; d++)
                    f[d] = Q[(size_t)bk[i] * st + d];
                if (biased)
                    f[DIM] = 1;
                long double t = r[i] - (biased ? 3.5L + bb[bk[i]] : 0.0L);
                for (size_t a = 0; a < D; a++) {
                    for (size_t c = 0; c < D; c++)
                        A[a][c] += f[a] * f[c];
                    A[a][D] += f[a] * t;
                }
            }
            for (size_t a = 0; a < D; a++)
                A[a][a] += 0.1L * (long double)m;
            for (size_t c = 0; c < D; c++) {   /* Gauss-Jordan, no pivoting: SPD */
                for (size_t a = 0; a < D; a++) {
                    if (a == c)
                        continue;
                    long double f = A[a][c] / A[c][c];
                    for (size_t e = c; e <= D; e++)
                        A[a][e] -= f * A[c][e];
                }
            }
            float vec[DIM + 8] __attribute__((aligned(64))), bias = -1;
            br_diag d;
            assert_int_equal(br_rec_foldin(s.rec, sc, ids, r, m, vec, &bias, &d), BR_OK);
            for (size_t a = 0; a < DIM; a++)
                assert_true(fabsl(vec[a] - A[a][D] / A[a][a]) < 1e-5L);
            if (biased)
                assert_true(fabsl(bias - A[DIM][D] / A[DIM][DIM]) < 1e-5L);
            else
                assert_true(bias == 0.0f);
        }
        br_rec_scratch_free(sc);
        synth_free(&s);
    }
}

/* Dot model, planted exactly (no offset): recovered. */
static void test_foldin_dot_exact(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_DOT, BR_LOSS_MSE, 2, 120, 7, 8, 0, 1e-9f);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    uint32_t st = br_model_get_meta(s.m)->stride;
    const float *Q = br_model_book_vecs(s.m);
    /* books whose planted rating lands in 1..5 */
    double p[7] = {4, -3, 2.5, 1, -2, 3, 0.5};
    uint32_t ids[120];
    float r[120];
    size_t n = 0;
    for (uint32_t b = 0; b < 120; b++) {
        double v = 0;
        for (int d = 0; d < 7; d++)
            v += p[d] * Q[(size_t)b * st + d];
        if (v >= 1 && v <= 5) {
            ids[n] = s.bid[b];
            r[n++] = (float)v;
        }
    }
    assert_true(n >= 10);
    float vec[8] __attribute__((aligned(64))), bias;
    assert_int_equal(br_rec_foldin(s.rec, sc, ids, r, n, vec, &bias, NULL), BR_OK);
    for (int d = 0; d < 7; d++)
        assert_true(fabs(vec[d] - p[d]) < 1e-3);
    br_rec_scratch_free(sc);
    synth_free(&s);
}

/* BPR: a reader who read the books a planted vector ranks highest gets a
 * vector pointing the same way. */
static void test_foldin_bpr_direction(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_DOT, BR_LOSS_BPR, 2, 500, 10, 12, 0, 0.005f);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    uint32_t st = br_model_get_meta(s.m)->stride;
    const float *Q = br_model_book_vecs(s.m);
    double p[10] = {1, -1, 0.5, 0, 2, -0.5, 1, 0, -1, 0.3};
    br_scored all[500];
    for (uint32_t b = 0; b < 500; b++) {
        double v = 0;
        for (int d = 0; d < 10; d++)
            v += p[d] * Q[(size_t)b * st + d];
        all[b] = (br_scored){(float)v, b};
    }
    qsort(all, 500, sizeof *all, cmp_scored);
    uint32_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = s.bid[all[i].idx];
    float vec[16] __attribute__((aligned(64))), bias;
    assert_int_equal(br_rec_foldin(s.rec, sc, ids, NULL, 40, vec, &bias, NULL), BR_OK);
    double dd = 0, na = 0, nb = 0;
    for (int d = 0; d < 10; d++) {
        dd += vec[d] * p[d];
        na += vec[d] * vec[d];
        nb += p[d] * p[d];
    }
    assert_true(dd / sqrt(na * nb) > 0.9);
    /* deterministic: the same list gives the same vector */
    float vec2[16] __attribute__((aligned(64)));
    assert_int_equal(br_rec_foldin(s.rec, sc, ids, NULL, 40, vec2, &bias, NULL), BR_OK);
    assert_memory_equal(vec, vec2, sizeof(float) * 10);
    br_rec_scratch_free(sc);
    synth_free(&s);
}

/* The gradient of the bpr fold-in's objective (br_recommend.h) at p, for
 * positives books[0..m) and negatives neg[0..M) (internal indices), into g;
 * its largest magnitude. Every pair's sigmoid on its own, in double. */
static double bpr_gradient(const synth *s, int biased, const double *p, const uint32_t *books,
                           size_t m, const uint32_t *neg, size_t M, double lam, double *g)
{
    uint32_t D = s->dim;
    for (uint32_t a = 0; a < D; a++)
        g[a] = -lam * p[a];
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < M; j++) {
            const float *qi = s->Q + (size_t)books[i] * D, *qj = s->Q + (size_t)neg[j] * D;
            double x = biased ? (double)s->bb[books[i]] - s->bb[neg[j]] : 0.0;
            for (uint32_t a = 0; a < D; a++)
                x += p[a] * ((double)qi[a] - qj[a]);
            double w = 1.0 / (1.0 + exp(x)) / (double)M;   /* sigmoid(-x) / M */
            for (uint32_t a = 0; a < D; a++)
                g[a] += w * ((double)qi[a] - qj[a]);
        }
    double mx = 0;
    for (uint32_t a = 0; a < D; a++)
        mx = fmax(mx, fabs(g[a]));
    return mx;
}

/* m distinct books of nb (internal indices) in random order. */
static void pick_books(br_rng *g, uint32_t nb, size_t m, uint32_t *out)
{
    uint32_t *all = malloc(nb * sizeof *all);
    for (uint32_t b = 0; b < nb; b++)
        all[b] = b;
    for (size_t i = 0; i < m; i++) {
        size_t j = i + br_rng_below(g, (uint32_t)(nb - i));
        uint32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
        out[i] = all[i];
    }
    free(all);
}

/* Folds in the reader of books[0..m) (internal indices, any order) on a bpr
 * model with at most 64 unread books, so every unread book is a negative
 * and the objective is known here; checks the vector is finite, zero past
 * dim and the bias 0, and returns the largest |gradient| at the answer,
 * the one at zero in *g0 (bpr_gradient, every pair on its own). The folded
 * vector goes to vec (stride floats, 64-byte aligned) when not NULL. */
static double bpr_foldin_gradient(const synth *s, br_rec_scratch *sc, int biased, float reg,
                                  const uint32_t *books, size_t m, double *g0, float *vec)
{
    uint32_t nb = s->n_books, D = s->dim, st = br_model_get_meta(s->m)->stride;
    uint32_t *ids = malloc(m * sizeof *ids), *pos = malloc(m * sizeof *pos);
    uint32_t *neg = malloc(nb * sizeof *neg);
    char *read = calloc(nb, 1);
    float *v = aligned_alloc(64, 64 * sizeof(float)), bias = -1;
    double *p = calloc(D, sizeof *p), *g = malloc(D * sizeof *g);
    size_t mp = 0, M = 0;
    for (size_t i = 0; i < m; i++) {
        ids[i] = s->bid[books[i]];
        read[books[i]] = 1;
    }
    for (uint32_t b = 0; b < nb; b++) {
        if (read[b])
            pos[mp++] = b;
        else
            neg[M++] = b;
    }
    assert_true(M >= 1 && M <= 64);
    br_diag d;
    assert_int_equal(br_rec_foldin(s->rec, sc, ids, NULL, m, v, &bias, &d), BR_OK);
    for (uint32_t a = 0; a < st; a++)
        assert_true(a < D ? isfinite(v[a]) : v[a] == 0.0f);
    assert_true(bias == 0.0f);
    double lam = (double)reg * (double)mp;
    *g0 = bpr_gradient(s, biased, p, pos, mp, neg, M, lam, g);
    for (uint32_t a = 0; a < D; a++)
        p[a] = v[a];
    double g1 = bpr_gradient(s, biased, p, pos, mp, neg, M, lam, g);
    if (vec)
        memcpy(vec, v, st * sizeof *vec);
    free(ids);
    free(pos);
    free(neg);
    free(read);
    free(v);
    free(p);
    free(g);
    return g1;
}

/* BPR fold-in at odd and small dimensions (1 to 13: no multiple of four or
 * eight) and with m and M = n_books - m both not multiples of four, nor
 * m + M: the four-at-a-time loops' padding (scores, gradient, majoriser)
 * is hit on every side, and the answer is still stationary (gradient a
 * thousandth of that at zero), for dot models, biased ones, and biased
 * ones with biases of +-400 and +-4000 (the path with each pair's own
 * exponential; past +-709 e^a e^-c would be inf x 0 there). */
static void test_foldin_bpr_odd_sizes(void **state)
{
    (void)state;
    static const uint32_t dims[] = {1, 3, 5, 7, 13};
    static const size_t ms[] = {1, 2, 3, 5, 7};
    br_rng g;
    br_rng_seed(&g, 2024);
    double worst = 0;
    for (int variant = 0; variant < 4; variant++)
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
            for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
                size_t m = ms[mi], M = 5 + br_rng_below(&g, 57);
                while (M % 4 == 0 || (m + M) % 4 == 0)
                    M++;
                assert_true(M <= 64);
                uint32_t nb = (uint32_t)(m + M);
                br_model_kind kind = variant ? BR_MODEL_BIASED : BR_MODEL_DOT;
                synth s;
                synth_bias_scale = variant == 3 ? 20000.0f : variant == 2 ? 2000.0f : 1.0f;
                synth_make(&s, kind, BR_LOSS_BPR, 2, nb, dims[di],
                           500 + 100 * variant + 10 * di + mi, 0, 0.02f);
                synth_bias_scale = 1.0f;
                br_rec_scratch *sc;
                assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
                uint32_t books[8];
                /* some unread book above some read one: with biases in the
                 * hundreds and every read book far above every unread one,
                 * each pair's weight is e^-50 or less and zero is already
                 * the maximiser (the gradient there next to nothing) */
                for (int tries = 0;; tries++) {
                    pick_books(&g, nb, m, books);
                    float lo = INFINITY, hi = -INFINITY;
                    char rd[72] = {0};
                    for (size_t i = 0; i < m; i++) {
                        lo = fminf(lo, s.bb[books[i]]);
                        rd[books[i]] = 1;
                    }
                    for (uint32_t b = 0; b < nb; b++)
                        if (!rd[b])
                            hi = fmaxf(hi, s.bb[b]);
                    if (variant < 2 || lo < hi - 1.0f)
                        break;
                    assert_true(tries < 50);
                }
                double g0, g1 = bpr_foldin_gradient(&s, sc, variant != 0, 0.02f, books, m,
                                                    &g0, NULL);
                if (g1 > 1e-3 * g0 || !(g0 > 1e-4))
                    print_message("variant %d dim %u m %zu M %zu: |gradient| %.3g at 0, "
                                  "%.3g at the answer\n",
                                  variant, dims[di], m, M, g0, g1);
                assert_true(g0 > 1e-4);
                assert_true(g1 <= 1e-3 * g0);
                worst = fmax(worst, g1 / g0);
                br_rec_scratch_free(sc);
                synth_free(&s);
            }
    print_message("bpr fold-in, odd sizes: worst |gradient| ratio %.3g\n", worst);
}

/* The stationarity ratio (|gradient| at the answer over at zero, see
 * bpr_foldin_gradient) of the reader of books[0..m) on a bpr model of nb
 * books (ids and vectors as synth_make makes them). */
static double bpr_ratio(br_model_kind kind, uint32_t nb, uint32_t dim, uint64_t seed, float reg,
                        const uint32_t *books, size_t m)
{
    synth s;
    synth_make(&s, kind, BR_LOSS_BPR, 2, nb, dim, seed, 0, reg);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    double g0, g1 = bpr_foldin_gradient(&s, sc, kind == BR_MODEL_BIASED, reg, books, m, &g0,
                                        NULL);
    assert_true(g0 > 1e-4);   /* a gradient to cancel */
    br_rec_scratch_free(sc);
    synth_free(&s);
    return g1 / g0;
}

/* BPR fold-in reaches the maximiser: with at most 64 unread books every one
 * is a negative, so the objective is known here, and its gradient at the
 * answer is a thousandth of the one at zero. Book biases of +-400 take the
 * path for scores past +-300 (each pair's own exponential). */
static void test_foldin_bpr_stationary(void **state)
{
    (void)state;
    uint32_t books[12];
    for (uint32_t b = 0; b < 12; b++)
        books[b] = b;
    for (int big = 0; big < 2; big++) {
        synth_bias_scale = big ? 2000.0f : 1.0f;
        double r = bpr_ratio(BR_MODEL_BIASED, 60, 8, 77 + (uint64_t)big, 0.01f, books, 12);
        synth_bias_scale = 1.0f;
        print_message("bpr fold-in, biases x%g: |gradient| ratio %.3g\n", big ? 2000.0 : 1.0, r);
        assert_true(r <= 1e-3);
    }
}

/* A nearly flat objective: 5 books read of 10, 17 dimensions, reg 0.001 (so
 * the maximiser is held in place by the small ridge alone): the answer is
 * still stationary (it took more steps than the 60 once allowed, and came
 * back 56% off the maximiser). */
static void test_foldin_bpr_flat(void **state)
{
    (void)state;
    uint32_t books[5] = {1, 4, 5, 6, 9};
    double r = bpr_ratio(BR_MODEL_DOT, 10, 17, 1500573, 0.001f, books, 5);
    print_message("bpr fold-in, flat: |gradient| ratio %.3g\n", r);
    assert_true(r <= 1e-3);
}

/* Book vectors sharing a large component (dimension 0 is 30 +- 0.005, the
 * rest +-0.005) and a small reg: the majoriser's sums cancel, and summed
 * in floats they made it indefinite ("singular"); the answer is found and
 * stationary. */
static void test_foldin_bpr_shared_component(void **state)
{
    (void)state;
    br_rng g;
    br_rng_seed(&g, 4242);
    double worst = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        uint32_t books[5];
        pick_books(&g, 69, 5, books);
        synth_q_scale = 0.01f;
        synth_q_offset = 30.0f;
        double r = bpr_ratio(BR_MODEL_BIASED, 69, 32, seed, 1e-5f, books, 5);
        synth_q_scale = 1.0f;
        synth_q_offset = 0.0f;
        assert_true(r <= 1e-3);
        worst = fmax(worst, r);
    }
    print_message("bpr fold-in, shared component: worst |gradient| ratio %.3g\n", worst);
}

/* One unread book (M = 1), wherever it lies: a single negative, and the
 * answer is stationary; the reader's recommendations are that book alone.
 * Every book read (duplicates or not) is refused with BR_ERR_ARG by
 * br_rec_foldin and br_rec_reader, and leaves the scratch as it was: the
 * M = 1 reader folds in to the same bits afterwards. */
static void test_foldin_bpr_one_negative(void **state)
{
    (void)state;
    static const uint32_t dims[] = {1, 6, 13};
    static const uint32_t nbs[] = {7, 10};
    for (int kind = BR_MODEL_DOT; kind <= BR_MODEL_BIASED; kind++)
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
            for (size_t ni = 0; ni < sizeof nbs / sizeof *nbs; ni++) {
                uint32_t nb = nbs[ni];
                synth s;
                synth_make(&s, (br_model_kind)kind, BR_LOSS_BPR, 2, nb, dims[di],
                           900 + 10 * di + ni + 100 * kind, 0, 0.02f);
                br_rec_scratch *sc;
                assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
                uint32_t st = br_model_get_meta(s.m)->stride;
                uint32_t unread[3] = {0, nb / 2, nb - 1};
                for (int ui = 0; ui < 3; ui++) {
                    uint32_t books[16], ids[32];
                    size_t m = 0;
                    for (uint32_t b = nb; b-- > 0;)   /* descending: gather sorts */
                        if (b != unread[ui])
                            books[m++] = b;
                    float vec[64] __attribute__((aligned(64)));
                    double g0, g1 = bpr_foldin_gradient(&s, sc, kind == BR_MODEL_BIASED, 0.02f,
                                                        books, m, &g0, vec);
                    assert_true(g0 > 1e-4);
                    assert_true(g1 <= 1e-3 * g0);
                    for (size_t i = 0; i < m; i++)
                        ids[i] = s.bid[books[i]];
                    br_rec_item it[16];
                    size_t n = 99;
                    br_diag d;
                    assert_int_equal(br_rec_reader(s.rec, sc, ids, NULL, m, 5, 0, it, &n, &d),
                                     BR_OK);
                    assert_int_equal(n, 1);
                    assert_int_equal(it[0].book, unread[ui]);
                    assert_int_equal(it[0].book_id, s.bid[unread[ui]]);
                    /* every book read: refused */
                    size_t na = 0;
                    for (uint32_t b = 0; b < nb; b++)
                        ids[na++] = s.bid[b];
                    ids[na++] = s.bid[unread[ui]];   /* and a duplicate */
                    float v2[64] __attribute__((aligned(64))), bias;
                    assert_int_equal(br_rec_foldin(s.rec, sc, ids, NULL, nb, v2, &bias, &d),
                                     BR_ERR_ARG);
                    assert_int_equal(br_rec_foldin(s.rec, sc, ids, NULL, na, v2, &bias, &d),
                                     BR_ERR_ARG);
                    assert_int_equal(br_rec_reader(s.rec, sc, ids, NULL, na, 5, 0, it, &n, &d),
                                     BR_ERR_ARG);
                    assert_int_equal(br_rec_reader(s.rec, sc, ids, NULL, na, 5,
                                                   BR_REC_INCLUDE_READ, it, &n, &d),
                                     BR_ERR_ARG);
                    /* the scratch is clean: the same reader, the same bits */
                    for (size_t i = 0; i < m; i++)
                        ids[i] = s.bid[books[i]];
                    assert_int_equal(br_rec_foldin(s.rec, sc, ids, NULL, m, v2, &bias, &d),
                                     BR_OK);
                    assert_memory_equal(vec, v2, st * sizeof(float));
                }
                br_rec_scratch_free(sc);
                synth_free(&s);
            }
}

/* BPR fold-in of a list with duplicated book ids (in any order) gives
 * bitwise the vector of the deduplicated list (the negatives are seeded by
 * the distinct books); the same list twice, on the same scratch or on a
 * fresh one, gives the same bits (nothing left over in the scratch, no
 * uninitialised work space read). Both negative paths: every unread book
 * (at most 64) and a seeded sample. */
static void test_foldin_bpr_duplicates(void **state)
{
    (void)state;
    static const struct { uint32_t nb, dim; size_t m; } cases[] = {
        {41, 7, 11}, {50, 1, 3}, {2000, 13, 5}, {700, 33, 67}};
    br_rng g;
    br_rng_seed(&g, 31);
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int kind = BR_MODEL_DOT; kind <= BR_MODEL_BIASED; kind++) {
            uint32_t nb = cases[ci].nb;
            size_t m = cases[ci].m;
            synth s;
            synth_make(&s, (br_model_kind)kind, BR_LOSS_BPR, 2, nb, cases[ci].dim,
                       40 + ci + 10 * kind, 0, 0.02f);
            uint32_t st = br_model_get_meta(s.m)->stride;
            br_rec_scratch *sc, *fresh;
            assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
            uint32_t books[100], uniq[100], dup[300], rev[100];
            pick_books(&g, nb, m, books);
            for (size_t i = 0; i < m; i++) {
                uniq[i] = s.bid[books[i]];
                rev[m - 1 - i] = uniq[i];
            }
            size_t nd = 0;
            for (size_t i = 0; i < m; i++) {   /* each once, some up to four times */
                dup[nd++] = uniq[i];
                for (uint32_t r = br_rng_below(&g, 4); r > 0; r--)
                    dup[nd++] = uniq[br_rng_below(&g, (uint32_t)m)];
            }
            assert_true(nd > m);
            float v1[64] __attribute__((aligned(64))), v2[64] __attribute__((aligned(64)));
            float v3[64] __attribute__((aligned(64))), v4[64] __attribute__((aligned(64)));
            float v5[64] __attribute__((aligned(64))), bias;
            assert_int_equal(br_rec_foldin(s.rec, sc, uniq, NULL, m, v1, &bias, NULL), BR_OK);
            for (uint32_t a = 0; a < st; a++)
                assert_true(isfinite(v1[a]));
            assert_int_equal(br_rec_foldin(s.rec, sc, dup, NULL, nd, v2, &bias, NULL), BR_OK);
            assert_memory_equal(v1, v2, st * sizeof(float));
            assert_int_equal(br_rec_foldin(s.rec, sc, rev, NULL, m, v3, &bias, NULL), BR_OK);
            assert_memory_equal(v1, v3, st * sizeof(float));
            /* another reader (all but one book: the mark bits cover every
             * word), then the first again, then on a fresh scratch */
            uint32_t *other = malloc(nb * sizeof *other);
            for (uint32_t b = 1; b < nb; b++)
                other[b - 1] = s.bid[b];
            assert_int_equal(br_rec_foldin(s.rec, sc, other, NULL, nb - 1, v4, &bias, NULL),
                             BR_OK);
            free(other);
            assert_int_equal(br_rec_foldin(s.rec, sc, dup, NULL, nd, v4, &bias, NULL), BR_OK);
            assert_memory_equal(v1, v4, st * sizeof(float));
            assert_int_equal(br_rec_scratch_create(s.rec, &fresh, NULL), BR_OK);
            assert_int_equal(br_rec_foldin(s.rec, fresh, uniq, NULL, m, v5, &bias, NULL),
                             BR_OK);
            assert_memory_equal(v1, v5, st * sizeof(float));
            br_rec_scratch_free(fresh);
            br_rec_scratch_free(sc);
            synth_free(&s);
        }
}

/* A larger reader with more than 64 unread books (the negatives a seeded
 * sample this test cannot see): the vector is finite, and br_rec_reader's
 * top k equals scoring every book with the vector br_rec_foldin returns
 * (scalar kernel, add = mean + bias) and a full sort, the read books left
 * out unless BR_REC_INCLUDE_READ, exactly; and equals br_rec_vector on that
 * vector. Fold-in and top-k are one consistent path. */
static void test_foldin_bpr_reader_consistent(void **state)
{
    (void)state;
    enum { NB = 1500, DIM = 29 };
    static const size_t ms[] = {1, 9, 70, 203};
    static const size_t ks[] = {1, 10, NB};
    br_rng g;
    br_rng_seed(&g, 77);
    br_scored *all = malloc(NB * sizeof *all);
    br_rec_item *it = malloc(NB * sizeof *it), *iv = malloc(NB * sizeof *iv);
    float *sc_ref = malloc(NB * sizeof *sc_ref);
    for (int kind = BR_MODEL_DOT; kind <= BR_MODEL_BIASED; kind++) {
        synth s;
        synth_make(&s, (br_model_kind)kind, BR_LOSS_BPR, 2, NB, DIM, 61 + kind, 0, 0.01f);
        const br_model_meta *mt = br_model_get_meta(s.m);
        uint32_t st = mt->stride;
        br_rec_scratch *sc;
        assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
            size_t m = ms[mi];
            uint32_t books[203], ids[204], ex[203];
            char read[NB] = {0};
            pick_books(&g, NB, m, books);
            for (size_t i = 0; i < m; i++) {
                ids[i] = s.bid[books[i]];
                read[books[i]] = 1;
            }
            ids[m] = ids[0];   /* a duplicate changes nothing */
            size_t nex = 0;
            for (uint32_t b = 0; b < NB; b++)
                if (read[b])
                    ex[nex++] = b;
            float vec[64] __attribute__((aligned(64))), bias = -1;
            br_diag d;
            assert_int_equal(br_rec_foldin(s.rec, sc, ids, NULL, m + 1, vec, &bias, &d), BR_OK);
            double norm = 0;
            for (uint32_t a = 0; a < st; a++) {
                assert_true(a < DIM ? isfinite(vec[a]) : vec[a] == 0.0f);
                norm += (double)vec[a] * vec[a];
            }
            assert_true(norm > 0 && norm < 1e6);
            assert_true(bias == 0.0f);
            float add = (kind == BR_MODEL_BIASED ? mt->global_mean : 0.0f) + bias;
            br_kernels_scalar()->score(vec, br_model_book_vecs(s.m), NB, st,
                                       br_model_book_bias(s.m), add, sc_ref);
            for (int incl = 0; incl < 2; incl++) {
                size_t n_all = 0;
                for (uint32_t b = 0; b < NB; b++)
                    if (incl || !read[b])
                        all[n_all++] = (br_scored){sc_ref[b], b};
                qsort(all, n_all, sizeof *all, cmp_scored);
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                    size_t k = ks[ki], want = k < n_all ? k : n_all, n = 0, nv = 0;
                    unsigned flags = incl ? BR_REC_INCLUDE_READ : 0;
                    assert_int_equal(br_rec_reader(s.rec, sc, ids, NULL, m + 1, k, flags, it,
                                                   &n, &d),
                                     BR_OK);
                    assert_int_equal(n, want);
                    for (size_t i = 0; i < n; i++) {
                        assert_int_equal(it[i].book, all[i].idx);
                        assert_int_equal(it[i].book_id, s.bid[all[i].idx]);
                        assert_memory_equal(&it[i].score, &all[i].score, sizeof(float));
                    }
                    assert_int_equal(br_rec_vector(s.rec, sc, vec, add, ex, incl ? 0 : nex, k,
                                                   iv, &nv, &d),
                                     BR_OK);
                    assert_int_equal(nv, n);
                    assert_memory_equal(iv, it, n * sizeof *it);
                }
            }
        }
        br_rec_scratch_free(sc);
        synth_free(&s);
    }
    free(all);
    free(it);
    free(iv);
    free(sc_ref);
}

static void test_predict(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_BIASED, BR_LOSS_MSE, 4, 50, 9, 3, 0, 0.01f);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    br_rec_item it[50];
    size_t n;
    assert_int_equal(br_rec_user(s.rec, sc, s.uid[2], 50, BR_REC_INCLUDE_READ, it, &n, NULL),
                     BR_OK);
    for (size_t i = 0; i < n; i++) {
        float v;
        assert_int_equal(br_rec_predict(s.rec, s.uid[2], it[i].book_id, &v, NULL), BR_OK);
        float want = it[i].score < 1 ? 1 : it[i].score > 5 ? 5 : it[i].score;
        assert_memory_equal(&v, &want, sizeof v);
    }
    float v;
    assert_int_equal(br_rec_predict(s.rec, 1, s.bid[0], &v, NULL), BR_ERR_NOT_FOUND);
    assert_true(v >= 1 && v <= 5);
    assert_int_equal(br_rec_predict(s.rec, s.uid[0], 2, &v, NULL), BR_ERR_NOT_FOUND);
    br_rec_scratch_free(sc);
    synth_free(&s);
}

static void test_threads_agree(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_BIASED, BR_LOSS_MSE, 64, 333, 24, 99, 0, 0.01f);
    enum { K = 7 };
    br_rec_item serial[64][K], par[64][K];
    size_t ns[64], np[64];
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    for (uint32_t u = 0; u < 64; u++)
        assert_int_equal(br_rec_user(s.rec, sc, s.uid[u], K, 0, serial[u], &ns[u], NULL),
                         BR_OK);
    br_rec_scratch_free(sc);
    int bad = 0;
#pragma omp parallel num_threads(4) reduction(+ : bad)
    {
        br_rec_scratch *t = NULL;
        if (br_rec_scratch_create(s.rec, &t, NULL) != BR_OK)
            bad++;
#pragma omp for schedule(dynamic, 1)
        for (uint32_t u = 0; u < 64; u++)
            if (!t || br_rec_user(s.rec, t, s.uid[u], K, 0, par[u], &np[u], NULL) != BR_OK)
                bad++;
        br_rec_scratch_free(t);
    }
    assert_int_equal(bad, 0);
    for (uint32_t u = 0; u < 64; u++) {
        assert_int_equal(ns[u], np[u]);
        assert_memory_equal(serial[u], par[u], ns[u] * sizeof(br_rec_item));
    }
    synth_free(&s);
}

static void test_errors(void **state)
{
    (void)state;
    synth s;
    synth_make(&s, BR_MODEL_BIASED, BR_LOSS_MSE, 3, 20, 4, 1, 0, 0.01f);
    br_rec_scratch *sc;
    assert_int_equal(br_rec_scratch_create(s.rec, &sc, NULL), BR_OK);
    br_rec_item it[20];
    size_t n;
    br_diag d;
    assert_int_equal(br_rec_user(s.rec, sc, 1, 5, 0, it, &n, &d), BR_ERR_NOT_FOUND);
    assert_non_null(strstr(d.msg, "--read"));
    assert_int_equal(br_rec_user(s.rec, sc, s.uid[0], 0, 0, it, &n, &d), BR_ERR_ARG);
    assert_int_equal(br_rec_user(s.rec, NULL, s.uid[0], 1, 0, it, &n, &d), BR_ERR_ARG);
    assert_int_equal(br_rec_user(s.rec, sc, s.uid[0], 1, 0, NULL, &n, &d), BR_ERR_ARG);
    assert_int_equal(br_rec_user_index(s.rec, sc, 3, 1, 0, it, &n, &d), BR_ERR_RANGE);
    assert_int_equal(br_rec_similar(s.rec, sc, s.bid[0], 0, it, &n, &d), BR_ERR_ARG);
    uint32_t ids[3] = {s.bid[1], 4, s.bid[2]};   /* 4 is no book id (5b + 1) */
    float r[3] = {4, 4, 4}, vec[8] __attribute__((aligned(64))), bias;
    assert_int_equal(br_rec_foldin(s.rec, sc, ids, r, 3, vec, &bias, &d), BR_ERR_NOT_FOUND);
    assert_non_null(strstr(d.msg, "book 4"));
    ids[1] = s.bid[3];
    r[2] = 6;
    assert_int_equal(br_rec_foldin(s.rec, sc, ids, r, 3, vec, &bias, &d), BR_ERR_RANGE);
    r[2] = NAN;
    assert_int_equal(br_rec_foldin(s.rec, sc, ids, r, 3, vec, &bias, &d), BR_ERR_RANGE);
    assert_int_equal(br_rec_foldin(s.rec, sc, ids, r, 0, vec, &bias, &d), BR_ERR_EMPTY);
    r[2] = 3;
    /* duplicates are merged; after the failures above the scratch is clean */
    uint32_t dup[4] = {s.bid[1], s.bid[1], s.bid[3], s.bid[3]};
    float dr[4] = {1, 4, 2, 5};
    assert_int_equal(br_rec_reader(s.rec, sc, dup, dr, 4, 20, 0, it, &n, &d), BR_OK);
    assert_int_equal(n, 18);
    uint32_t one[2] = {s.bid[1], s.bid[3]};
    float or[2] = {4, 5};
    br_rec_item it2[20];
    size_t n2;
    assert_int_equal(br_rec_reader(s.rec, sc, one, or, 2, 20, 0, it2, &n2, &d), BR_OK);
    assert_int_equal(n2, n);
    assert_memory_equal(it, it2, n * sizeof *it);
    br_rec_free(NULL);
    br_rec_scratch_free(NULL);
    assert_int_equal(br_rec_create(NULL, NULL, &d), BR_ERR_ARG);
    /* a scratch of another model's size is refused */
    synth t;
    synth_make(&t, BR_MODEL_DOT, BR_LOSS_MSE, 2, 21, 4, 2, 0, 0.01f);
    assert_int_equal(br_rec_user(t.rec, sc, t.uid[0], 1, 0, it, &n, &d), BR_ERR_ARG);
    synth_free(&t);
    br_rec_scratch_free(sc);
    synth_free(&s);
}

static void test_mlp_refused(void **state)
{
    (void)state;
    enum { NU = 2, NB = 3, DIM = 4, H1 = 3, H2 = 2 };
    float P[NU * DIM] = {0}, Q[NB * DIM] = {0};
    float mlp[2 * DIM * H1 + H1 + H1 * H2 + H2 + H2 + 1] = {0};
    uint32_t uid[NU] = {1, 2}, bid[NB] = {1, 2, 3}, idx[1] = {0};
    uint64_t ptr[NU + 1] = {0, 1, 1};
    br_model_data d;
    memset(&d, 0, sizeof d);
    d.meta.kind = BR_MODEL_MLP;
    d.meta.loss = BR_LOSS_MSE;
    d.meta.optim = BR_OPTIM_SGD;
    d.meta.dim = DIM;
    d.meta.n_users = NU;
    d.meta.n_books = NB;
    d.meta.mlp_h1 = H1;
    d.meta.mlp_h2 = H2;
    d.meta.created_unix = 1;
    d.user_vecs = P;
    d.book_vecs = Q;
    d.src_stride = DIM;
    d.mlp = mlp;
    d.user_ids = uid;
    d.book_ids = bid;
    d.read_ptr = ptr;
    d.read_idx = idx;
    void *buf;
    size_t len;
    br_model *m;
    br_rec *r = NULL;
    br_rec_scratch *sc = NULL;
    br_diag dg;
    assert_int_equal(br_model_save_buffer(&d, &buf, &len, &dg), BR_OK);
    assert_int_equal(br_model_open_buffer(buf, len, &m, &dg), BR_OK);
    /* MLP models are served (tests/test_mlp.c); only fold-in is refused. */
    assert_int_equal(br_rec_create(m, &r, &dg), BR_OK);
    assert_int_equal(br_rec_scratch_create(r, &sc, &dg), BR_OK);
    float vec[8], bias;
    assert_int_equal(br_rec_foldin(r, sc, bid, NULL, 1, vec, &bias, &dg), BR_ERR_UNSUPPORTED);
    assert_non_null(strstr(dg.msg, "not supported"));
    br_rec_scratch_free(sc);
    br_rec_free(r);
    br_model_free(m);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_equals_reference),
        cmocka_unit_test(test_ties_by_book_id),
        cmocka_unit_test(test_simd_equals_scalar),
        cmocka_unit_test(test_read_never_returned),
        cmocka_unit_test(test_similar),
        cmocka_unit_test(test_foldin_recovers_planted),
        cmocka_unit_test(test_foldin_dot_exact),
        cmocka_unit_test(test_foldin_matches_reference),
        cmocka_unit_test(test_foldin_bpr_direction),
        cmocka_unit_test(test_foldin_bpr_stationary),
        cmocka_unit_test(test_foldin_bpr_flat),
        cmocka_unit_test(test_foldin_bpr_shared_component),
        cmocka_unit_test(test_foldin_bpr_odd_sizes),
        cmocka_unit_test(test_foldin_bpr_one_negative),
        cmocka_unit_test(test_foldin_bpr_duplicates),
        cmocka_unit_test(test_foldin_bpr_reader_consistent),
        cmocka_unit_test(test_predict),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_mlp_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
