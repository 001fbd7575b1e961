/*
 * test_viz.c - bookrec-viz's library: PCA against a known answer and against
 * an independent reference (power iteration on the data, never forming the
 * covariance) to 1e-4; the Jacobi eigensolver; kNN (vantage-point tree,
 * brute force and a full sort agree); the perplexity search; P; the t-SNE
 * gradient against finite differences of the exact KL, and Barnes-Hut
 * against the exact gradient; t-SNE keeps planted clusters apart (checked
 * with a criterion a random layout fails); determinism at any thread
 * count; trustworthiness; the PNG decodes with the requested size and
 * shows the genre colours; bad arguments give clear errors.
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
#include <unistd.h>

#include "br_books.h"
#include "br_pca.h"
#include "br_plot.h"
#include "br_rng.h"
#include "br_tsne.h"

#include "stb_image_impl.h"

/* ---- PCA --------------------------------------------------------------------- */

/* The 8 corners of a box with half-sides 3, 2, 1, rotated: the covariance
 * (divisor n - 1) is R diag(9, 4, 1) R^T * 8/7, so the variances are 72/7,
 * 32/7, 8/7, explained 9/14, 4/14, 1/14, and the axes are R's columns. */
static void test_pca_known_answer(void **state)
{
    (void)state;
    double a = 0.5, b = 0.3;   /* rotation about z by a, then about x by b */
    double Rz[3][3] = {{cos(a), -sin(a), 0}, {sin(a), cos(a), 0}, {0, 0, 1}};
    double Rx[3][3] = {{1, 0, 0}, {0, cos(b), -sin(b)}, {0, sin(b), cos(b)}};
    double R[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            R[i][j] = 0;
            for (int k = 0; k < 3; k++)
                R[i][j] += Rx[i][k] * Rz[k][j];
        }
    float x[8 * 4];
    const double half[3] = {3, 2, 1};
    for (int c = 0; c < 8; c++) {
        double v[3];
        for (int k = 0; k < 3; k++)
            v[k] = ((c >> k) & 1 ? 1 : -1) * half[k];
        for (int i = 0; i < 3; i++) {
            double s = 10.0 * (i + 1);   /* an offset: the mean must come off */
            for (int k = 0; k < 3; k++)
                s += R[i][k] * v[k];
            x[c * 4 + i] = (float)s;
        }
        x[c * 4 + 3] = 12345;   /* padding beyond d: must be ignored */
    }
    br_pca *p = NULL;
    assert_int_equal(br_pca_fit(x, 8, 3, 4, 1, &p, NULL), BR_OK);
    const double var[3] = {72.0 / 7, 32.0 / 7, 8.0 / 7};
    for (int c = 0; c < 3; c++) {
        assert_true(fabs(p->variance[c] - var[c]) < 1e-4);
        assert_true(fabs(br_pca_explained(p, c) - var[c] / (112.0 / 7)) < 1e-6);
        double dot = 0;
        for (int i = 0; i < 3; i++)
            dot += p->components[c * 3 + i] * R[i][c];
        assert_true(fabs(fabs(dot) - 1) < 1e-5);
    }
    for (int i = 0; i < 3; i++)
        assert_true(fabs(p->mean[i] - 10.0 * (i + 1)) < 1e-5);
    /* The projection onto PC1 of corner c is +-3 (the sign fixed once). */
    float y[16];
    assert_int_equal(br_pca_transform(p, x, 8, 4, 2, y, NULL), BR_OK);
    for (int c = 0; c < 8; c++) {
        assert_true(fabs(fabs(y[2 * c]) - 3) < 1e-4);
        assert_true(fabs(fabs(y[2 * c + 1]) - 2) < 1e-4);
    }
    assert_true(br_pca_explained(p, 3) == 0);
    br_pca_free(p);
}

/* Reference PCA: power iteration with deflation, each step X^T (X v) on the
 * centred data in double precision. */
static void test_pca_matches_reference(void **state)
{
    (void)state;
    enum { N = 400, D = 10, S = 16 };
    float *x = malloc(N * S * sizeof *x);
    br_rng r;
    br_rng_seed(&r, 7);
    double scale[D];
    for (int k = 0; k < D; k++)
        scale[k] = 4.0 / (1 + k);   /* well separated variances */
    for (int i = 0; i < N; i++) {
        double z[D];
        for (int k = 0; k < D; k++)
            z[k] = br_rng_normal(&r) * scale[k];
        /* mix the axes so that the covariance is not diagonal */
        for (int k = 0; k < D; k++) {
            double s = 0;
            for (int j = 0; j < D; j++)
                s += z[j] * ((j == k) ? 0.9 : 0.1 * sin(j * 3.0 + k));
            x[i * S + k] = (float)(s + 5);
        }
        for (int k = D; k < S; k++)
            x[i * S + k] = 0;
    }
    br_pca *p = NULL;
    assert_int_equal(br_pca_fit(x, N, D, S, 2, &p, NULL), BR_OK);

    double mean[D] = {0}, c[N][D];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++)
            mean[k] += x[i * S + k] / (double)N;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++)
            c[i][k] = x[i * S + k] - mean[k];
    double found[D][D];
    for (int comp = 0; comp < 4; comp++) {
        double v[D], w[D];
        for (int k = 0; k < D; k++)
            v[k] = 1.0 / (1 + k + comp);
        double lambda = 0;
        for (int it = 0; it < 3000; it++) {
            for (int q = 0; q < comp; q++) {   /* deflate */
                double dd = 0;
                for (int k = 0; k < D; k++)
                    dd += v[k] * found[q][k];
                for (int k = 0; k < D; k++)
                    v[k] -= dd * found[q][k];
            }
            memset(w, 0, sizeof w);
            for (int i = 0; i < N; i++) {
                double t = 0;
                for (int k = 0; k < D; k++)
                    t += c[i][k] * v[k];
                for (int k = 0; k < D; k++)
                    w[k] += t * c[i][k];
            }
            double nrm = 0;
            for (int k = 0; k < D; k++)
                nrm += w[k] * w[k];
            nrm = sqrt(nrm);
            lambda = nrm / (N - 1);
            for (int k = 0; k < D; k++)
                v[k] = w[k] / nrm;
        }
        memcpy(found[comp], v, sizeof v);
        double dot = 0;
        for (int k = 0; k < D; k++)
            dot += v[k] * p->components[comp * D + k];
        assert_true(fabs(p->variance[comp] - lambda) < 1e-4 * lambda);
        assert_true(fabs(fabs(dot) - 1) < 1e-4);
    }
    /* Variances descending, summing to the trace. */
    double tr = 0;
    for (int k = 0; k < D; k++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            s += c[i][k] * c[i][k];
        tr += s / (N - 1);
        if (k > 0)
            assert_true(p->variance[k] <= p->variance[k - 1]);
    }
    assert_true(fabs(p->total - tr) < 1e-6 * tr);
    /* Same answer with 1 and 2 threads, bit for bit. */
    br_pca *p1 = NULL;
    assert_int_equal(br_pca_fit(x, N, D, S, 1, &p1, NULL), BR_OK);
    assert_memory_equal(p1->components, p->components, D * D * sizeof(double));
    br_pca_free(p1);
    br_pca_free(p);
    free(x);
}

static void test_eigen_sym_small(void **state)
{
    (void)state;
    double a[9] = {2, 1, 0, 1, 2, 0, 0, 0, 5};
    double ev[3], vec[9];
    assert_int_equal(br_pca_eigen_sym(a, 3, ev, vec, NULL), BR_OK);
    assert_true(fabs(ev[0] - 5) < 1e-12 && fabs(ev[1] - 3) < 1e-12 && fabs(ev[2] - 1) < 1e-12);
    assert_true(fabs(vec[2] - 1) < 1e-12);                      /* (0, 0, 1) */
    assert_true(fabs(vec[3] - M_SQRT1_2) < 1e-12 && fabs(vec[4] - M_SQRT1_2) < 1e-12);
    double bad[1] = {NAN}, e1, v1;
    assert_int_equal(br_pca_eigen_sym(bad, 1, &e1, &v1, NULL), BR_ERR_NUMERIC);
}

static void test_pca_errors(void **state)
{
    (void)state;
    float x[8] = {1, 2, 3, 4, NAN, 6, 7, 8};
    br_pca *p = (br_pca *)1;
    br_diag d;
    br_diag_clear(&d);
    assert_int_equal(br_pca_fit(x, 1, 2, 2, 1, &p, &d), BR_ERR_ARG);
    assert_null(p);
    assert_non_null(strstr(d.msg, "at least 2 rows"));
    assert_int_equal(br_pca_fit(x, 4, 2, 2, 1, &p, &d), BR_ERR_NUMERIC);
    assert_non_null(strstr(d.msg, "row 2"));
    assert_int_equal(br_pca_fit(x, 2, 3, 2, 1, &p, &d), BR_ERR_ARG);
    br_pca_free(NULL);
}

/* ---- kNN, perplexity, P --------------------------------------------------------- */

static float *random_rows(size_t n, size_t d, uint64_t seed)
{
    float *x = malloc(n * d * sizeof *x);
    br_rng r;
    br_rng_seed(&r, seed);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)br_rng_normal(&r);
    return x;
}

static void check_knn(size_t n, size_t d, size_t k)
{
    float *x = random_rows(n, d, 3 + d);
    /* some exact duplicates, to exercise ties */
    memcpy(x + 5 * d, x + 9 * d, d * sizeof *x);
    memcpy(x + 6 * d, x + 9 * d, d * sizeof *x);
    uint32_t *i1 = malloc(n * k * sizeof *i1), *i2 = malloc(n * k * sizeof *i2);
    float *d1 = malloc(n * k * sizeof *d1), *d2 = malloc(n * k * sizeof *d2);
    assert_int_equal(br_tsne_knn_vptree(x, n, d, d, k, 2, 1, i1, d1, NULL), BR_OK);
    assert_int_equal(br_tsne_knn_brute(x, n, d, d, k, 2, i2, d2, NULL), BR_OK);
    assert_memory_equal(i1, i2, n * k * sizeof *i1);
    assert_memory_equal(d1, d2, n * k * sizeof *d1);
    /* against a full scan: the k-th distance and the set agree */
    for (size_t i = 0; i < n; i += 37) {
        size_t closer = 0;
        for (size_t j = 0; j < n; j++) {
            if (j == i)
                continue;
            float s = 0;
            for (size_t c = 0; c < d; c++)
                s += (x[i * d + c] - x[j * d + c]) * (x[i * d + c] - x[j * d + c]);
            if (s < d1[i * k + k - 1] * (1 - 1e-5f))
                closer++;
        }
        assert_true(closer < k);
        for (size_t m = 1; m < k; m++)
            assert_true(d1[i * k + m - 1] <= d1[i * k + m]);
        for (size_t m = 0; m < k; m++)
            assert_true(i1[i * k + m] != i);
    }
    assert_int_equal(i1[5 * k], 6);   /* its duplicate, distance 0, then 9 */
    assert_int_equal(i1[5 * k + 1], 9);
    assert_true(d1[5 * k] == 0);
    free(x);
    free(i1);
    free(i2);
    free(d1);
    free(d2);
}

static void test_knn_tree_equals_brute_force(void **state)
{
    (void)state;
    check_knn(500, 3, 10);
    check_knn(400, 17, 30);
}

static void test_perplexity_search(void **state)
{
    (void)state;
    float d2[90];
    br_rng r;
    br_rng_seed(&r, 11);
    for (int i = 0; i < 90; i++)
        d2[i] = (float)(0.5 + 10 * br_rng_uniform(&r));
    for (double perp = 5; perp <= 30; perp += 12.5)
        assert_true(fabs(br_tsne_row_perplexity(d2, 90, perp) - perp) < 1e-3 * perp);
}

static void test_affinities(void **state)
{
    (void)state;
    size_t n = 200, d = 5, k = 30;
    float *x = random_rows(n, d, 5);
    uint32_t *idx = malloc(n * k * sizeof *idx);
    float *dd = malloc(n * k * sizeof *dd);
    assert_int_equal(br_tsne_knn(x, n, d, d, k, 1, 1, idx, dd, NULL), BR_OK);
    br_tsne_p *p = NULL;
    assert_int_equal(br_tsne_affinities(idx, dd, n, k, 10, 2, &p, NULL), BR_OK);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t e = p->ptr[i]; e < p->ptr[i + 1]; e++) {
            sum += p->val[e];
            assert_true(p->col[e] != i);
            if (e > p->ptr[i])
                assert_true(p->col[e] > p->col[e - 1]);
            /* symmetric: (j, i) holds the same value */
            uint32_t j = p->col[e];
            int found = 0;
            for (uint64_t f = p->ptr[j]; f < p->ptr[j + 1]; f++)
                if (p->col[f] == i) {
                    found = 1;
                    assert_true(fabsf(p->val[f] - p->val[e]) <= 1e-6f * p->val[e]);
                }
            assert_true(found);
        }
    assert_true(fabs(sum - 1) < 1e-4);
    br_diag dg;
    br_diag_clear(&dg);
    br_tsne_p *q = NULL;
    assert_int_equal(br_tsne_affinities(idx, dd, n, k, 40, 1, &q, &dg), BR_ERR_ARG);
    assert_non_null(strstr(dg.msg, "perplexity"));
    br_tsne_p_free(p);
    free(x);
    free(idx);
    free(dd);
}

/* ---- gradient ---------------------------------------------------------------- */

static br_tsne_p *small_p(size_t n, size_t d, size_t k, double perp, uint64_t seed)
{
    float *x = random_rows(n, d, seed);
    uint32_t *idx = malloc(n * k * sizeof *idx);
    float *dd = malloc(n * k * sizeof *dd);
    br_tsne_p *p = NULL;
    assert_int_equal(br_tsne_knn(x, n, d, d, k, 1, 1, idx, dd, NULL), BR_OK);
    assert_int_equal(br_tsne_affinities(idx, dd, n, k, perp, 1, &p, NULL), BR_OK);
    free(x);
    free(idx);
    free(dd);
    return p;
}

static void test_gradient_finite_differences(void **state)
{
    (void)state;
    size_t n = 14;
    br_tsne_p *p = small_p(n, 4, 9, 3, 21);
    float y[28], g[28];
    br_rng r;
    br_rng_seed(&r, 2);
    for (int i = 0; i < 28; i++)
        y[i] = (float)br_rng_normal(&r);
    double kl;
    assert_int_equal(br_tsne_gradient(p, y, 0, 1, 1, g, &kl, NULL), BR_OK);
    assert_true(fabs(kl - br_tsne_kl_exact(p, y)) < 1e-9);
    const float h = 1.0f / 256;   /* exact in float for |y| in [1/32, 2^16) */
    double err = 0, scale = 0;
    for (int i = 0; i < 28; i++) {
        float save = y[i];
        y[i] = save + h;
        double kp = br_tsne_kl_exact(p, y);
        y[i] = save - h;
        double km = br_tsne_kl_exact(p, y);
        y[i] = save;
        double fd = (kp - km) / (double)((save + h) - (save - h));
        err = fmax(err, fabs(fd - g[i]));
        scale = fmax(scale, fabs(fd));
    }
    assert_true(scale > 1e-3);          /* not a trivial gradient */
    assert_true(err < 2e-4 * scale + 1e-6);
    /* Exaggeration multiplies the attractive part only. */
    float g2[28];
    assert_int_equal(br_tsne_gradient(p, y, 0, 4, 1, g2, NULL, NULL), BR_OK);
    int differs = 0;
    for (int i = 0; i < 28; i++)
        differs |= fabsf(g2[i] - g[i]) > 1e-6f;
    assert_true(differs);
    br_tsne_p_free(p);
}

static void test_barnes_hut_close_to_exact(void **state)
{
    (void)state;
    size_t n = 300;
    br_tsne_p *p = small_p(n, 6, 30, 10, 33);
    float *y = random_rows(n, 2, 4), *ge = malloc(2 * n * sizeof *ge);
    float *gb = malloc(2 * n * sizeof *gb), *gt = malloc(2 * n * sizeof *gt);
    for (size_t i = 0; i < 2 * n; i++)
        y[i] *= 5;
    double kle, klb, klt;
    assert_int_equal(br_tsne_gradient(p, y, 0, 1, 1, ge, &kle, NULL), BR_OK);
    assert_int_equal(br_tsne_gradient(p, y, 0.5, 1, 2, gb, &klb, NULL), BR_OK);
    assert_int_equal(br_tsne_gradient(p, y, 0.05, 1, 1, gt, &klt, NULL), BR_OK);
    double nb = 0, nt = 0, ne = 0;
    for (size_t i = 0; i < 2 * n; i++) {
        ne += (double)ge[i] * ge[i];
        nb += (double)(gb[i] - ge[i]) * (gb[i] - ge[i]);
        nt += (double)(gt[i] - ge[i]) * (gt[i] - ge[i]);
    }
    assert_true(sqrt(nb / ne) < 0.05);   /* theta 0.5: a few percent */
    assert_true(sqrt(nt / ne) < 1e-3);   /* theta 0.05: nearly exact */
    assert_true(fabs(klb - kle) < 0.02 * kle);
    assert_true(fabs(klt - kle) < 1e-4 * kle + 1e-6);
    /* A coarse theta stays an approximation of the same gradient. */
    double klc;
    assert_int_equal(br_tsne_gradient(p, y, 1.2, 1, 1, gb, &klc, NULL), BR_OK);
    double nc = 0;
    for (size_t i = 0; i < 2 * n; i++)
        nc += (double)(gb[i] - ge[i]) * (gb[i] - ge[i]);
    assert_true(sqrt(nc / ne) < 0.3);
    assert_true(fabs(klc - kle) < 0.1 * kle);
    br_tsne_p_free(p);
    free(y);
    free(ge);
    free(gb);
    free(gt);
}

/* ---- the whole method ---------------------------------------------------------- */

enum { NC = 4, PER = 80, CD = 12 };

/* Four Gaussian clusters in 12 dimensions, centres 8 apart, unit noise. */
static float *planted(uint64_t seed)
{
    float *x = malloc(NC * PER * CD * sizeof *x);
    br_rng r;
    br_rng_seed(&r, seed);
    for (int c = 0; c < NC; c++)
        for (int i = 0; i < PER; i++)
            for (int k = 0; k < CD; k++)
                x[(c * PER + i) * CD + k] = (float)(br_rng_normal(&r) + (k == c ? 8 : 0));
    return x;
}

/* 1 if every cluster's points are all nearer to their own centroid than to
 * any other cluster's centroid, and the centroids are at least 3x further
 * apart than the clusters' mean radius. */
static int clusters_apart(const float *y)
{
    double cx[NC] = {0}, cy[NC] = {0}, rad = 0;
    for (int c = 0; c < NC; c++) {
        for (int i = 0; i < PER; i++) {
            cx[c] += y[2 * (c * PER + i)] / PER;
            cy[c] += y[2 * (c * PER + i) + 1] / PER;
        }
    }
    for (int c = 0; c < NC; c++)
        for (int i = 0; i < PER; i++) {
            double px = y[2 * (c * PER + i)], py = y[2 * (c * PER + i) + 1];
            double own = hypot(px - cx[c], py - cy[c]);
            rad += own / (NC * PER);
            for (int o = 0; o < NC; o++)
                if (o != c && hypot(px - cx[o], py - cy[o]) <= own)
                    return 0;
        }
    double mind = INFINITY;
    for (int a = 0; a < NC; a++)
        for (int b = a + 1; b < NC; b++)
            mind = fmin(mind, hypot(cx[a] - cx[b], cy[a] - cy[b]));
    return mind > 3 * rad;
}

static void test_tsne_keeps_planted_clusters_apart(void **state)
{
    (void)state;
    float *x = planted(8);
    size_t n = NC * PER;
    float *y = malloc(2 * n * sizeof *y);
    /* The check is not vacuous: a random layout fails it. */
    br_rng r;
    br_rng_seed(&r, 1);
    for (size_t i = 0; i < 2 * n; i++)
        y[i] = (float)br_rng_normal(&r);
    assert_false(clusters_apart(y));
    /* Nor does a layout from a random start pass before optimising. */
    br_tsne_opts o;
    br_tsne_default_opts(&o);
    o.perplexity = 15;
    o.iters = 400;
    o.threads = 2;
    o.seed = 3;
    br_tsne_stats st;
    assert_int_equal(br_tsne_run(x, n, CD, CD, &o, y, &st, NULL), BR_OK);
    assert_true(clusters_apart(y));
    assert_true(st.kl > 0 && st.kl < 2);
    assert_int_equal(st.iters, 400);
    double tw = br_tsne_trustworthiness(x, n, CD, CD, y, 10, 2);
    assert_true(tw > 0.9);
    free(x);
    free(y);
}

static int count_calls(void *ctx, int iter, int iters, double kl)
{
    int *c = ctx;
    (*c)++;
    (void)kl;
    return iter >= iters / 2;   /* stop half way */
}

static void test_tsne_deterministic_and_progress(void **state)
{
    (void)state;
    float *x = planted(9);
    size_t n = NC * PER;
    float *y1 = malloc(2 * n * sizeof *y1), *y2 = malloc(2 * n * sizeof *y2);
    float *y3 = malloc(2 * n * sizeof *y3), *init = malloc(2 * n * sizeof *init);
    br_pca *p = NULL;
    assert_int_equal(br_pca_fit(x, n, CD, CD, 1, &p, NULL), BR_OK);
    assert_int_equal(br_pca_transform(p, x, n, CD, 2, init, NULL), BR_OK);
    br_pca_free(p);
    br_tsne_opts o;
    br_tsne_default_opts(&o);
    o.perplexity = 10;
    o.iters = 120;
    o.init = init;
    o.threads = 1;
    assert_int_equal(br_tsne_run(x, n, CD, CD, &o, y1, NULL, NULL), BR_OK);
    assert_int_equal(br_tsne_run(x, n, CD, CD, &o, y2, NULL, NULL), BR_OK);
    assert_memory_equal(y1, y2, 2 * n * sizeof *y1);
    o.threads = 3;
    assert_int_equal(br_tsne_run(x, n, CD, CD, &o, y3, NULL, NULL), BR_OK);
    assert_memory_equal(y1, y3, 2 * n * sizeof *y1);   /* any thread count */
    int calls = 0;
    o.progress = count_calls;
    o.progress_ctx = &calls;
    o.progress_every = 10;
    br_tsne_stats st;
    assert_int_equal(br_tsne_run(x, n, CD, CD, &o, y3, &st, NULL), BR_OK);
    assert_int_equal(calls, 6);
    assert_int_equal(st.iters, 60);
    free(x);
    free(y1);
    free(y2);
    free(y3);
    free(init);
}

static void test_tsne_errors(void **state)
{
    (void)state;
    float *x = random_rows(50, 4, 1);
    float y[100];
    br_tsne_opts o;
    br_tsne_default_opts(&o);
    br_diag d;
    br_diag_clear(&d);
    assert_int_equal(br_tsne_run(x, 50, 4, 4, &o, y, NULL, &d), BR_ERR_ARG);
    assert_non_null(strstr(d.msg, "perplexity"));   /* 50 points, perplexity 30 */
    o.perplexity = 5;
    x[7] = NAN;
    assert_int_equal(br_tsne_run(x, 50, 4, 4, &o, y, NULL, &d), BR_ERR_NUMERIC);
    x[7] = 0;
    o.theta = -1;
    assert_int_equal(br_tsne_run(x, 50, 4, 4, &o, y, NULL, &d), BR_ERR_ARG);
    free(x);
}

static void test_trustworthiness(void **state)
{
    (void)state;
    size_t n = 200;
    float *x = random_rows(n, 2, 6), *y = random_rows(n, 2, 7);
    assert_true(fabs(br_tsne_trustworthiness(x, n, 2, 2, x, 10, 2) - 1) < 1e-12);
    double tr = br_tsne_trustworthiness(x, n, 2, 2, y, 10, 2);
    assert_true(tr < 0.7 && tr > 0.3);   /* random: about 0.5 */
    assert_true(isnan(br_tsne_trustworthiness(x, n, 2, 2, y, 150, 1)));
    free(x);
    free(y);
}

/* ---- PNG ----------------------------------------------------------------------- */

static void test_png_decodes_with_requested_size(void **state)
{
    (void)state;
    size_t n = 300;
    br_book *books = calloc(n, sizeof *books);
    float *xy = malloc(2 * n * sizeof *xy);
    br_rng r;
    br_rng_seed(&r, 12);
    const char *genres[3] = {"fantasy", "romance", ""};
    static char titles[300][32];
    for (size_t i = 0; i < n; i++) {
        int g = (int)(i % 3);
        xy[2 * i] = (float)(br_rng_normal(&r) + 6 * g);
        xy[2 * i + 1] = (float)(br_rng_normal(&r) + (g == 1 ? 6 : 0));
        snprintf(titles[i], sizeof titles[i], "Book \xC3\xA9 %zu (Series, #1)", i);
        books[i].title = titles[i];
        books[i].authors = "Someone";
        books[i].genre = genres[g];
        books[i].year = 1990 + (int)(i % 30);
        books[i].avg_rating = 3.5f + (float)(i % 10) / 10;
        books[i].ratings_count = (uint32_t)(n - i);
    }
    char path[] = "/tmp/test_viz_XXXXXX.png";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    close(fd);
    for (int mode = 0; mode < 3; mode++) {
        int W = mode == 0 ? 640 : 321, H = mode == 0 ? 480 : 203;
        br_plot_canvas *c = NULL;
        assert_int_equal(br_plot_canvas_create(W, H, &c, NULL), BR_OK);
        br_plot_data d = {n, xy, books, (br_plot_color)mode, "Title", "subtitle", 10};
        br_plot_view v = br_plot_fit_view(&d, W, H);
        assert_int_equal(br_plot_render(c, &d, &v, NULL, NULL), BR_OK);
        assert_int_equal(br_plot_save_png(c, path, NULL), BR_OK);
        br_plot_canvas_free(c);
        int w = 0, h = 0, comp = 0;
        unsigned char *img = stbi_load(path, &w, &h, &comp, 3);
        assert_non_null(img);
        assert_int_equal(w, W);
        assert_int_equal(h, H);
        size_t white = 0, purple = 0;
        uint32_t fan = br_plot_genre_color(br_plot_genre_index("fantasy"));
        for (int i = 0; i < w * h; i++) {
            const unsigned char *p = img + 3 * i;
            white += p[0] == 255 && p[1] == 255 && p[2] == 255;
            purple += abs(p[0] - (int)(fan >> 16)) < 12 && abs(p[1] - (int)((fan >> 8) & 255)) < 12 &&
                      abs(p[2] - (int)(fan & 255)) < 12;
        }
        assert_true(white < (size_t)(w * h) * 97 / 100);   /* something was drawn */
        assert_true(white > (size_t)(w * h) / 3);          /* but not everything */
        if (mode == 0)
            assert_true(purple > 200);                     /* fantasy points in their colour */
        stbi_image_free(img);
    }
    /* Unwritable path: a clear error, no file. */
    br_plot_canvas *c = NULL;
    assert_int_equal(br_plot_canvas_create(64, 64, &c, NULL), BR_OK);
    br_diag dg;
    br_diag_clear(&dg);
    assert_int_not_equal(br_plot_save_png(c, "/nonexistent-dir/x.png", &dg), BR_OK);
    assert_true(strlen(dg.msg) > 0);
    br_plot_canvas_free(c);
    assert_int_equal(br_plot_canvas_create(8, 8, &c, &dg), BR_ERR_ARG);
    assert_null(c);
    unlink(path);
    free(books);
    free(xy);
}

static void test_pick_and_genres(void **state)
{
    (void)state;
    float xy[4] = {0, 0, 1, 1};
    br_book b[2] = {{.title = "a", .authors = "", .genre = ""}, {.title = "b", .authors = "", .genre = ""}};
    br_plot_data d = {2, xy, b, BR_PLOT_COLOR_GENRE, NULL, NULL, 0};
    br_plot_view v = {100, 100, 50};   /* (1, 1) -> pixel (150, 50) */
    assert_int_equal(br_plot_pick(&d, &v, 150, 52, 5), 1);
    assert_int_equal(br_plot_pick(&d, &v, 100, 100, 5), 0);
    assert_int_equal(br_plot_pick(&d, &v, 130, 70, 5), -1);
    assert_int_equal(br_plot_genre_index("romance"), 2);
    assert_int_equal(br_plot_genre_index(""), -1);
    assert_int_equal(br_plot_genre_index("cookbooks"), -1);
    for (size_t i = 0; i < br_books_genre_count(); i++)
        for (size_t j = 0; j < i; j++)
            assert_true(br_plot_genre_color((int)i) != br_plot_genre_color((int)j));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pca_known_answer),
        cmocka_unit_test(test_pca_matches_reference),
        cmocka_unit_test(test_eigen_sym_small),
        cmocka_unit_test(test_pca_errors),
        cmocka_unit_test(test_knn_tree_equals_brute_force),
        cmocka_unit_test(test_perplexity_search),
        cmocka_unit_test(test_affinities),
        cmocka_unit_test(test_gradient_finite_differences),
        cmocka_unit_test(test_barnes_hut_close_to_exact),
        cmocka_unit_test(test_tsne_keeps_planted_clusters_apart),
        cmocka_unit_test(test_tsne_deterministic_and_progress),
        cmocka_unit_test(test_tsne_errors),
        cmocka_unit_test(test_trustworthiness),
        cmocka_unit_test(test_png_decodes_with_requested_size),
        cmocka_unit_test(test_pick_and_genres),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
