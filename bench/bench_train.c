/*
 * bench_train.c - training throughput: rating updates per second for SGD
 * and Adam (MSE) and BPR at several dimensions, with 1 and 2 Hogwild
 * threads, on the real ratings (80% train split, as bookrec-train uses).
 *
 *   bench-train [--data DIR] [--epochs N] [--dims 8,32,64] [--kernel avx2|scalar]
 *
 * Each configuration runs N epochs (default 5) after one warm-up epoch and
 * reports the median epoch's updates per second (shuffle included), per
 * thread, and the 2-thread / 1-thread ratio measured in the same run.
 */
#include "br_data.h"
#include "br_kernels.h"
#include "br_opt.h"
#include "br_progress.h"
#include "br_ratings.h"
#include "br_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median epoch seconds of one configuration. */
static double run(const br_ratings *r, const uint32_t *idx, size_t n, const br_csr *pos,
                  br_loss_kind loss, br_optim_kind optim, uint32_t dim, int threads,
                  unsigned epochs)
{
    br_train_opts o;
    br_train_defaults(&o, BR_MODEL_BIASED, loss, optim);
    o.dim = dim;
    o.threads = threads;
    br_trainer *t;
    br_diag d;
    if (br_trainer_create(&o, r->n_users, r->n_books, 3.8f, &t, &d)) {
        fprintf(stderr, "bench-train: error: %s\n", d.msg);
        exit(1);
    }
    br_train_data td = {.r = r, .idx = idx, .n = n, .pos = pos};
    double times[64], loss_v;
    if (epochs > 64)
        epochs = 64;
    for (unsigned e = 0; e <= epochs; e++) {
        double t0 = br_now();
        if (br_trainer_epoch(t, &td, e, &loss_v, &d)) {
            fprintf(stderr, "bench-train: error: %s\n", d.msg);
            exit(1);
        }
        if (e > 0)
            times[e - 1] = br_now() - t0;
    }
    br_trainer_free(t);
    qsort(times, epochs, sizeof *times, cmp_d);
    return times[epochs / 2];
}

int main(int argc, char **argv)
{
    const char *data = NULL, *dims_s = "8,32,64", *kernel = NULL;
    unsigned epochs = 5;
    int help = 0;
    const br_opt opts[] = {
        {0, "data", BR_OPT_STR, &data, "DIR", "goodbooks-10k folder"},
        {0, "epochs", BR_OPT_UINT, &epochs, "N", "timed epochs per configuration (default 5)"},
        {0, "dims", BR_OPT_STR, &dims_s, "LIST", "dimensions (default 8,32,64)"},
        {0, "kernel", BR_OPT_STR, &kernel, "NAME", "scalar to force the reference kernels"},
        {'h', "help", BR_OPT_FLAG, &help, NULL, "show this help"},
        {0, NULL, 0, NULL, NULL, NULL},
    };
    br_diag d;
    br_diag_clear(&d);
    br_err e = br_opt_parse(opts, argc, argv, NULL, &d);
    if (e || help) {
        if (e)
            fprintf(stderr, "bench-train: error: %s\n", br_diag_text(&d, e));
        br_opt_usage(e ? stderr : stdout, "bench-train [options]", opts);
        return e ? 2 : 0;
    }
    if (epochs == 0)
        epochs = 1;
    if (kernel && strcmp(kernel, "scalar") == 0)
        setenv("BOOKREC_KERNEL", "scalar", 1);
    char dir[4096], path[4200];
    if ((e = br_data_find(data, dir, sizeof dir, &d))) {
        fprintf(stderr, "bench-train: error: %s\n", br_diag_text(&d, e));
        return 1;
    }
    br_data_file(dir, "ratings", path, sizeof path);
    br_ratings *r;
    if ((e = br_ratings_load(path, NULL, &r, &d))) {
        fprintf(stderr, "bench-train: error: %s\n", br_diag_text(&d, e));
        return 1;
    }
    uint8_t *fold = calloc(r->n, 1);
    uint32_t *idx = malloc(r->n * sizeof *idx);
    br_csr pos = {0};
    if (!fold || !idx) {
        fprintf(stderr, "bench-train: error: out of memory\n");
        return 1;
    }
    br_split_random(r, 0.2, 42, fold, BR_FOLD_TEST);
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (fold[i] == BR_FOLD_TRAIN)
            idx[n++] = (uint32_t)i;
    br_csr_by_user(r, fold, BR_FOLD_TRAIN, &pos, &d);

    printf("kernels: %s; %zu training ratings; median of %u epochs (shuffle included)\n\n",
           br_kernels_get()->name, n, epochs);
    printf("| loss | optim | dim | M updates/s, 1 thread | M updates/s, 2 threads | "
           "per core at 2 threads | 2T / 1T |\n");
    printf("|---|---|---:|---:|---:|---:|---:|\n");
    struct { br_loss_kind loss; br_optim_kind optim; const char *l, *o; } cfg[] = {
        {BR_LOSS_MSE, BR_OPTIM_SGD, "mse", "sgd"},
        {BR_LOSS_MSE, BR_OPTIM_ADAM, "mse", "adam"},
        {BR_LOSS_BPR, BR_OPTIM_SGD, "bpr", "sgd"},
    };
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        const char *p = dims_s;
        while (*p) {
            uint32_t dim = (uint32_t)strtoul(p, (char **)&p, 10);
            if (*p == ',')
                p++;
            if (dim == 0)
                break;
            double t1 = run(r, idx, n, &pos, cfg[c].loss, cfg[c].optim, dim, 1, epochs);
            double t2 = run(r, idx, n, &pos, cfg[c].loss, cfg[c].optim, dim, 2, epochs);
            printf("| %s | %s | %u | %.1f | %.1f | %.1f | %.2fx |\n", cfg[c].l, cfg[c].o, dim,
                   n / t1 / 1e6, n / t2 / 1e6, n / t2 / 2e6, t1 / t2);
            fflush(stdout);
        }
    }
    br_csr_free(&pos);
    free(idx);
    free(fold);
    br_ratings_free(r);
    return 0;
}
