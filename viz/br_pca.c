/*
 * br_pca.c - exact PCA: covariance in double precision (the rows are cut
 * into a fixed number of chunks whatever the thread count, each chunk sums
 * its own upper triangle, the chunks are added in order: the same bits at
 * any -j), then cyclic Jacobi on the d x d matrix.
 */
#include "br_pca.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void br_pca_free(br_pca *p)
{
    if (!p)
        return;
    free(p->mean);
    free(p->components);
    free(p->variance);
    free(p);
}

/* Cyclic Jacobi (Golub & Van Loan 8.5): sweeps of rotations zeroing each
 * off-diagonal entry in turn until the off-diagonal mass is negligible
 * against the diagonal. Quadratic convergence; 6-10 sweeps for d = 64. */
br_err br_pca_eigen_sym(double *a, size_t n, double *evals, double *evecs, br_diag *diag)
{
    if (!a || !evals || !evecs || n == 0)
        return br_fail(diag, BR_ERR_ARG, "eigen_sym: bad arguments");
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(a[i]))
            return br_fail(diag, BR_ERR_NUMERIC, "eigen_sym: matrix has NaN or infinity");
    /* v holds eigenvectors as columns while iterating. */
    double *v = calloc(n * n, sizeof *v);
    size_t *order = malloc(n * sizeof *order);
    if (!v || !order) {
        free(v);
        free(order);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        v[i * n + i] = 1.0;
    int converged = 0;
    for (int sweep = 0; sweep < 100 && !converged; sweep++) {
        double off = 0, dia = 0;
        for (size_t p = 0; p < n; p++) {
            dia += a[p * n + p] * a[p * n + p];
            for (size_t q = p + 1; q < n; q++)
                off += a[p * n + q] * a[p * n + q];
        }
        if (off <= 1e-30 * dia || off == 0) {
            converged = 1;
            break;
        }
        for (size_t p = 0; p + 1 < n; p++) {
            for (size_t q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (apq == 0)
                    continue;
                double app = a[p * n + p], aqq = a[q * n + q];
                double theta = (aqq - app) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                /* A' = J^T A J on rows/columns p and q. */
                for (size_t k = 0; k < n; k++) {
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (size_t k = 0; k < n; k++) {
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                a[p * n + q] = a[q * n + p] = 0;
                for (size_t k = 0; k < n; k++) {
                    double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    if (!converged) {
        free(v);
        free(order);
        return br_fail(diag, BR_ERR_NUMERIC, "eigen_sym: Jacobi did not converge in 100 sweeps");
    }
    /* Sort descending (insertion sort: n is small; ties keep index order). */
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && a[order[j - 1] * n + order[j - 1]] < a[i * n + i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (size_t r = 0; r < n; r++) {
        size_t col = order[r];
        evals[r] = a[col * n + col];
        size_t big = 0;
        for (size_t k = 0; k < n; k++)
            if (fabs(v[k * n + col]) > fabs(v[big * n + col]))
                big = k;
        double sign = v[big * n + col] < 0 ? -1.0 : 1.0;
        for (size_t k = 0; k < n; k++)
            evecs[r * n + k] = sign * v[k * n + col];
    }
    free(v);
    free(order);
    return BR_OK;
}

br_err br_pca_fit(const float *x, size_t n, size_t d, size_t stride, int threads,
                  br_pca **out, br_diag *diag)
{
    if (!out)
        return br_fail(diag, BR_ERR_ARG, "pca: no output handle");
    *out = NULL;
    if (!x || d == 0 || stride < d)
        return br_fail(diag, BR_ERR_ARG, "pca: bad input layout (d %zu, stride %zu)", d, stride);
    if (n < 2)
        return br_fail(diag, BR_ERR_ARG, "pca: needs at least 2 rows, got %zu", n);
    if (threads < 1)
        threads = 1;
    br_pca *p = calloc(1, sizeof *p);
    double *cov = calloc(d * d, sizeof *cov);
    const size_t chunks = n < 16 ? n : 16;
    double *part = calloc(chunks * d * d, sizeof *part);
    if (!p || !cov || !part) {
        free(p);
        free(cov);
        free(part);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    p->dim = d;
    p->n = n;
    p->mean = calloc(d, sizeof *p->mean);
    p->components = calloc(d * d, sizeof *p->components);
    p->variance = calloc(d, sizeof *p->variance);
    br_err e = BR_OK;
    if (!p->mean || !p->components || !p->variance) {
        e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* Means (fixed order) and a finiteness check. */
    for (size_t i = 0; i < n; i++) {
        const float *r = x + i * stride;
        for (size_t k = 0; k < d; k++) {
            if (!isfinite(r[k])) {
                e = br_fail(diag, BR_ERR_NUMERIC, "pca: row %zu has NaN or infinity", i);
                goto done;
            }
            p->mean[k] += r[k];
        }
    }
    for (size_t k = 0; k < d; k++)
        p->mean[k] /= (double)n;

    /* Each chunk of rows sums its outer products into its own upper
     * triangle; the chunks are then added in order. */
    int alloc_fail = 0;
#pragma omp parallel num_threads(threads)
    {
        double *c = malloc(d * sizeof *c);
        if (!c) {
#pragma omp atomic write
            alloc_fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (size_t ch = 0; ch < chunks; ch++) {
            if (!c)
                continue;
            double *acc = part + ch * d * d;
            size_t lo = n * ch / chunks, hi = n * (ch + 1) / chunks;
            for (size_t i = lo; i < hi; i++) {
                const float *r = x + i * stride;
                for (size_t k = 0; k < d; k++)
                    c[k] = (double)r[k] - p->mean[k];
                for (size_t a = 0; a < d; a++) {
                    double ca = c[a];
                    double *row = acc + a * d;
                    for (size_t b = a; b < d; b++)
                        row[b] += ca * c[b];
                }
            }
        }
        free(c);
    }
    if (alloc_fail) {
        e = br_fail(diag, BR_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t ch = 0; ch < chunks; ch++)
        for (size_t i = 0; i < d * d; i++)
            cov[i] += part[ch * d * d + i];
    for (size_t a = 0; a < d; a++)
        for (size_t b = a; b < d; b++) {
            double v = cov[a * d + b] / (double)(n - 1);
            cov[a * d + b] = cov[b * d + a] = v;
        }
    e = br_pca_eigen_sym(cov, d, p->variance, p->components, diag);
    if (e)
        goto done;
    p->total = 0;
    for (size_t k = 0; k < d; k++) {
        if (p->variance[k] < 0)
            p->variance[k] = 0;   /* rounding on a rank-deficient covariance */
        p->total += p->variance[k];
    }
done:
    free(cov);
    free(part);
    if (e) {
        br_pca_free(p);
        return e;
    }
    *out = p;
    return BR_OK;
}

br_err br_pca_transform(const br_pca *p, const float *x, size_t n, size_t stride, size_t k,
                        float *out, br_diag *diag)
{
    if (!p || !x || !out || k == 0 || k > p->dim || stride < p->dim)
        return br_fail(diag, BR_ERR_ARG, "pca transform: bad arguments");
    size_t d = p->dim;
    for (size_t i = 0; i < n; i++) {
        const float *r = x + i * stride;
        for (size_t c = 0; c < k; c++) {
            const double *w = p->components + c * d;
            double s = 0;
            for (size_t j = 0; j < d; j++)
                s += ((double)r[j] - p->mean[j]) * w[j];
            out[i * k + c] = (float)s;
        }
    }
    return BR_OK;
}

double br_pca_explained(const br_pca *p, size_t c)
{
    if (!p || c >= p->dim || !(p->total > 0))
        return 0;
    return p->variance[c] / p->total;
}
