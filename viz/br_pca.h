/*
 * br_pca.h - exact principal component analysis of embedding rows.
 *
 * br_pca_fit centres the rows, forms the d x d covariance in double precision
 * (divisor n - 1, as numpy and scikit-learn) and diagonalises it with the
 * cyclic Jacobi method (br_pca_eigen_sym), which is exact to rounding for
 * the small d of book embeddings (8 .. a few hundred). Components come out
 * sorted by decreasing variance, each of unit length with its largest
 * absolute entry positive (a fixed sign, so layouts do not flip between
 * runs). Library code: never prints; errors come back as br_err + br_diag.
 */
#ifndef BR_PCA_H
#define BR_PCA_H

#include <stddef.h>
#include "br_error.h"

typedef struct br_pca {
    size_t dim;          /* input dimension d */
    size_t n;            /* rows fitted */
    double *mean;        /* d column means */
    double *components;  /* d x d: row c is the c-th principal axis (unit length) */
    double *variance;    /* d eigenvalues of the covariance, descending (>= 0) */
    double total;        /* sum of variance[] (the trace of the covariance) */
} br_pca;

/* Fits a PCA to n rows of d floats, row i at x + i * stride (stride >= d).
 * threads >= 1 share the covariance pass. Errors: BR_ERR_ARG (n < 2, d 0,
 * stride < d, NULL pointers), BR_ERR_NUMERIC (a NaN or infinity in x, or no
 * convergence), BR_ERR_NOMEM. */
br_err br_pca_fit(const float *x, size_t n, size_t d, size_t stride, int threads,
                  br_pca **out, br_diag *diag);

/* Projects n rows (same layout as the fit) onto the first k components:
 * out[i * k + c] = (x_i - mean) . component_c. k <= dim. BR_ERR_ARG otherwise. */
br_err br_pca_transform(const br_pca *p, const float *x, size_t n, size_t stride, size_t k,
                        float *out, br_diag *diag);

/* Fraction of the total variance along component c (0 if c >= dim or the
 * data are constant). */
double br_pca_explained(const br_pca *p, size_t c);

void br_pca_free(br_pca *p);   /* NULL ok */

/* Eigen-decomposition of the symmetric n x n matrix a (row-major; destroyed)
 * by cyclic Jacobi rotations: evals[n] descending, evecs row i the unit
 * eigenvector of evals[i]. BR_ERR_NUMERIC if it has not converged after 100
 * sweeps or a is not finite. */
br_err br_pca_eigen_sym(double *a, size_t n, double *evals, double *evecs, br_diag *diag);

#endif
