/*
 * bench_viz.c - how fast bookrec-viz's PCA and t-SNE are, and how good the
 * t-SNE layout is: wall time (and its kNN / affinity / optimisation split),
 * the final KL divergence and the trustworthiness at k = 10.
 *
 *   bench-viz [-m MODEL] [-n N] [-d D] [-j THREADS] [--iters N] [--perplexity P]
 *             [--theta T] [--raw] [--no-trust]
 *
 * With -m, the model's book vectors (rows normalised unless --raw); without,
 * a synthetic mixture of 20 Gaussian clusters of N x D (default 10,000 x 32).
 * The targets of issue 6: t-SNE of 10,000 x 32, 1,000 iterations,
 * perplexity 30 under 6 s at -j 2; PCA of the same under 20 ms.
 */
#include "br_model.h"
#include "br_opt.h"
#include "br_pca.h"
#include "br_progress.h"
#include "br_rng.h"
#include "br_tsne.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* CPU seconds of the whole process (all threads): under load from other
 * processes, wall time says little, CPU time still does. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    int n = 10000, d = 32, threads = 2, iters = 1000, raw = 0, no_trust = 0, help = 0;
    double perplexity = 30, theta = 0.5;
    uint64_t seed = 42;
    const br_opt opts[] = {
        {'m', "model", BR_OPT_STR, &model, "FILE", "book vectors of this model (else synthetic)"},
        {'n', "rows", BR_OPT_INT, &n, "N", "synthetic rows (default 10000)"},
        {'d', "dim", BR_OPT_INT, &d, "D", "synthetic dimension (default 32)"},
        {'j', "threads", BR_OPT_INT, &threads, "N", "threads (default 2)"},
        {0, "iters", BR_OPT_INT, &iters, "N", "t-SNE iterations (default 1000)"},
        {0, "perplexity", BR_OPT_DOUBLE, &perplexity, "P", "perplexity (default 30)"},
        {0, "theta", BR_OPT_DOUBLE, &theta, "T", "Barnes-Hut theta (default 0.5)"},
        {0, "seed", BR_OPT_U64, &seed, "S", "seed (default 42)"},
        {0, "raw", BR_OPT_FLAG, &raw, NULL, "do not normalise model rows"},
        {0, "no-trust", BR_OPT_FLAG, &no_trust, NULL, "skip the trustworthiness (O(n^2))"},
        {'h', "help", BR_OPT_FLAG, &help, NULL, "show this help"},
        {0, NULL, 0, NULL, NULL, NULL},
    };
    br_diag diag;
    br_diag_clear(&diag);
    int npos = 0;
    br_err e = br_opt_parse(opts, argc, argv, &npos, &diag);
    if (e || npos) {
        fprintf(stderr, "bench-viz: error: %s\n", e ? br_diag_text(&diag, e) : "unexpected argument");
        return 2;
    }
    if (help) {
        br_opt_usage(stdout, "bench-viz [options]", opts);
        return 0;
    }
    float *x = NULL;
    size_t stride = 0, rows = 0, dim = 0;
    const char *what = "synthetic";
    if (model) {
        br_model *m = NULL;
        if ((e = br_model_open(model, &m, &diag)) != BR_OK) {
            fprintf(stderr, "bench-viz: error: %s\n", br_diag_text(&diag, e));
            return 1;
        }
        const br_model_meta *mt = br_model_get_meta(m);
        rows = mt->n_books;
        dim = mt->dim;
        stride = mt->stride;
        x = malloc(rows * stride * sizeof *x);
        memcpy(x, br_model_book_vecs(m), rows * stride * sizeof *x);
        br_model_free(m);
        if (!raw)
            for (size_t i = 0; i < rows; i++) {
                double s = 0;
                for (size_t k = 0; k < dim; k++)
                    s += (double)x[i * stride + k] * x[i * stride + k];
                if (s > 0)
                    for (size_t k = 0; k < stride; k++)
                        x[i * stride + k] /= (float)sqrt(s);
            }
        what = model;
    } else {
        rows = (size_t)n;
        dim = stride = (size_t)d;
        x = malloc(rows * stride * sizeof *x);
        br_rng r;
        br_rng_seed(&r, seed);
        float *centres = malloc(20 * dim * sizeof *centres);
        for (size_t k = 0; k < 20 * dim; k++)
            centres[k] = (float)(3 * br_rng_normal(&r));
        for (size_t i = 0; i < rows; i++)
            for (size_t k = 0; k < dim; k++)
                x[i * stride + k] = centres[(i % 20) * dim + k] + (float)br_rng_normal(&r);
        free(centres);
    }
    printf("data: %s, %zu x %zu, -j %d\n", what, rows, dim, threads);

    /* PCA: best and median of 15 runs (fit + projection onto 2 components). */
    double tp[15];
    float *y0 = malloc(2 * rows * sizeof *y0);
    for (int r = 0; r < 15; r++) {
        br_pca *p = NULL;
        double t0 = br_now();
        e = br_pca_fit(x, rows, dim, stride, threads, &p, &diag);
        if (!e)
            e = br_pca_transform(p, x, rows, stride, 2, y0, &diag);
        tp[r] = br_now() - t0;
        br_pca_free(p);
        if (e) {
            fprintf(stderr, "bench-viz: error: %s\n", br_diag_text(&diag, e));
            return 1;
        }
    }
    qsort(tp, 15, sizeof *tp, cmp_double);
    printf("%-34s %10s %10s\n", "", "best", "median");
    printf("%-34s %8.2f ms %8.2f ms   (target < 20 ms)\n", "PCA (fit + project to 2-D)", tp[0] * 1e3,
           tp[7] * 1e3);

    /* kNN both ways (the lists must agree). */
    {
        size_t k = (size_t)(3 * perplexity);
        uint32_t *i1 = malloc(rows * k * sizeof *i1), *i2 = malloc(rows * k * sizeof *i2);
        float *d1 = malloc(rows * k * sizeof *d1), *d2 = malloc(rows * k * sizeof *d2);
        double a0 = br_now(), c0 = cpu_seconds();
        br_tsne_knn_vptree(x, rows, dim, stride, k, threads, seed, i1, d1, NULL);
        double a1 = br_now(), c1 = cpu_seconds();
        br_tsne_knn_brute(x, rows, dim, stride, k, threads, i2, d2, NULL);
        double a2 = br_now(), c2 = cpu_seconds();
        printf("kNN (k = %zu): vantage-point tree %.2f s wall / %.2f s CPU, brute force %.2f s "
               "wall / %.2f s CPU, lists %s\n",
               k, a1 - a0, c1 - c0, a2 - a1, c2 - c1,
               memcmp(i1, i2, rows * k * sizeof *i1) == 0 ? "identical" : "DIFFER");
        free(i1);
        free(i2);
        free(d1);
        free(d2);
    }

    br_tsne_opts o;
    br_tsne_default_opts(&o);
    o.perplexity = perplexity;
    o.theta = theta;
    o.iters = iters;
    o.threads = threads;
    o.seed = seed;
    o.init = y0;
    float *y = malloc(2 * rows * sizeof *y);
    br_tsne_stats st;
    double t0 = br_now(), c0 = cpu_seconds();
    e = br_tsne_run(x, rows, dim, stride, &o, y, &st, &diag);
    double tt = br_now() - t0, ct = cpu_seconds() - c0;
    if (e) {
        fprintf(stderr, "bench-viz: error: %s\n", br_diag_text(&diag, e));
        return 1;
    }
    printf("t-SNE (%d iterations, perplexity %g, theta %g): %.2f s wall, %.2f s CPU  "
           "(target < 6 s wall at -j 2)\n",
           iters, perplexity, theta, tt, ct);
    printf("  kNN %.2f s, affinities %.2f s, optimisation %.2f s (%.2f ms / iteration)\n",
           st.t_knn, st.t_affinity, st.t_optimize, st.t_optimize * 1e3 / (iters ? iters : 1));
    printf("  final KL %.4f, learning rate %.0f\n", st.kl, st.learning_rate);
    if (!no_trust) {
        double tr0 = br_now();
        double tw = br_tsne_trustworthiness(x, rows, dim, stride, y, 10, threads);
        double tw0 = br_tsne_trustworthiness(x, rows, dim, stride, y0, 10, threads);
        printf("  trustworthiness k=10: t-SNE %.4f, PCA %.4f (%.1f s to compute)\n", tw, tw0,
               br_now() - tr0);
    }
    free(x);
    free(y);
    free(y0);
    return 0;
}
