/*
 * bench_infer.c - per-query latency of bookrec-infer's scorer, in process.
 *
 * The case: top 10 of 10,000 books at dim 32 with the reader's read
 * books left out, one core. A synthetic biased model (2,000 readers with
 * 40..200 read books each, 10,000 books, dim 32, seeded) is built in memory
 * (or -m FILE serves a real model). Timed per query, each --queries times,
 * readers taken in turn:
 *
 *   br_rec_user        the library's path: br_qscan's int8 pre-scan of every
 *                      book (AVX-512 VNNI / AVX2 as the CPU has them), then
 *                      exact float scores for the few books whose bound can
 *                      reach the top k, read books skipped
 *   scalar+full sort   the scalar reference score, then qsort of every
 *                      unread book (the reference the output must equal)
 *   avx2+full sort     to separate the two halves' gains
 *   matrix read        one pass over the book matrix (sum with 8 AVX2
 *                      accumulators): the memory floor of any exact scorer
 *   fold-in, 50 books  br_rec_foldin (least squares), and br_rec_reader
 *
 * and p50 / p99 printed in microseconds, with the targets (p50 <= 10 us and
 * >= 3x faster than scalar+full sort; fold-in <= 100 us). The results of the
 * fast path are checked equal to the reference for every reader first.
 *
 *   ./build/bench-infer [-m MODEL] [--queries N] [--books N] [--dim D]
 *                       [--check N] [--user-only]
 *
 * --check N compares the first N readers (default 2,000) with the reference;
 * --user-only times br_rec_user alone (the scale study, bench/scale.sh, runs
 * it on models with 100,000 books, where the full sorts take seconds).
 *
 * Whole-process and batch figures are measured with the programs:
 *   hyperfine -N --warmup 20 './build/bookrec-infer -m M --user 1 --top 5' './build/mapfloor M'
 *   time ./build/bookrec-infer -m M --users all --top 10 -j 2 > /dev/null
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "br_kernels.h"
#include "br_model.h"
#include "br_recommend.h"
#include "br_rng.h"
#include "br_topk.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *t, int n, double p)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return t[i];
}

static void die(const char *what, br_err e, const br_diag *d)
{
    fprintf(stderr, "bench-infer: %s: %s\n", what, br_diag_text(d, e));
    exit(1);
}

static float unif(br_rng *g) { return (float)(br_rng_next(g) >> 40) / (float)(1u << 24); }

/* A synthetic biased mse model in memory; the buffer is returned for free(). */
static void *synth_model(uint32_t nu, uint32_t nb, uint32_t dim, size_t *len)
{
    br_rng g;
    br_rng_seed(&g, 2024);
    float *P = malloc((size_t)nu * dim * sizeof *P), *Q = malloc((size_t)nb * dim * sizeof *Q);
    float *bu = malloc(nu * sizeof *bu), *bb = malloc(nb * sizeof *bb);
    uint32_t *uid = malloc(nu * sizeof *uid), *bid = malloc(nb * sizeof *bid);
    uint64_t *ptr = malloc(((size_t)nu + 1) * sizeof *ptr);
    uint32_t *idx = malloc((size_t)nu * 200 * sizeof *idx);
    uint8_t *seen = calloc(nb, 1);
    if (!P || !Q || !bu || !bb || !uid || !bid || !ptr || !idx || !seen) {
        fprintf(stderr, "bench-infer: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)nu * dim; i++)
        P[i] = 0.4f * (unif(&g) - 0.5f);
    for (size_t i = 0; i < (size_t)nb * dim; i++)
        Q[i] = 0.4f * (unif(&g) - 0.5f);
    for (uint32_t b = 0; b < nb; b++) {
        bb[b] = 0.5f * (unif(&g) - 0.5f);
        bid[b] = b + 1;
    }
    uint64_t k = 0;
    for (uint32_t u = 0; u < nu; u++) {
        uid[u] = u + 1;
        bu[u] = 0.3f * (unif(&g) - 0.5f);
        ptr[u] = k;
        uint32_t want = 40 + br_rng_below(&g, 161), got = 0;
        if (want > nb)
            want = nb;
        while (got < want) {
            uint32_t b = br_rng_below(&g, nb);
            if (!seen[b]) {
                seen[b] = 1;
                got++;
            }
        }
        for (uint32_t b = 0; b < nb; b++)
            if (seen[b]) {
                idx[k++] = b;
                seen[b] = 0;
            }
    }
    ptr[nu] = k;
    br_model_data d;
    memset(&d, 0, sizeof d);
    d.meta.kind = BR_MODEL_BIASED;
    d.meta.loss = BR_LOSS_MSE;
    d.meta.optim = BR_OPTIM_SGD;
    d.meta.dim = dim;
    d.meta.n_users = nu;
    d.meta.n_books = nb;
    d.meta.global_mean = 3.9f;
    d.meta.reg = 0.04f;
    d.meta.reg_bias = 0.01f;
    d.meta.created_unix = 1;
    d.meta.test_rmse = d.meta.test_mae = NAN;
    d.user_vecs = P;
    d.book_vecs = Q;
    d.src_stride = dim;
    d.user_bias = bu;
    d.book_bias = bb;
    d.user_ids = uid;
    d.book_ids = bid;
    d.read_ptr = ptr;
    d.read_idx = idx;
    void *buf = NULL;
    br_diag dg;
    br_err e = br_model_save_buffer(&d, &buf, len, &dg);
    if (e)
        die("synthetic model", e, &dg);
    free(P), free(Q), free(bu), free(bb), free(uid), free(bid), free(ptr), free(idx), free(seen);
    return buf;
}

static int cmp_scored(const void *a, const void *b)
{
    br_scored x = *(const br_scored *)a, y = *(const br_scored *)b;
    return br_scored_before(x, y) ? -1 : br_scored_before(y, x) ? 1 : 0;
}

/* The reference: a kernel's score, then a full sort of every unread book. */
static size_t full_sort(const br_kernels *k, const br_model *m, uint32_t u, size_t topk,
                        float *sc, br_scored *all, br_scored *out)
{
    const br_model_meta *mt = br_model_get_meta(m);
    const float *bu = br_model_user_bias(m);
    float add = bu ? mt->global_mean + bu[u] : 0.0f;
    k->score(br_model_user_vecs(m) + (size_t)u * mt->stride, br_model_book_vecs(m), mt->n_books,
             mt->stride, br_model_book_bias(m), add, sc);
    size_t nr, j = 0, n = 0;
    const uint32_t *rd = br_model_user_read(m, u, &nr);
    for (uint32_t b = 0; b < mt->n_books; b++) {
        if (j < nr && rd[j] == b) {
            j++;
            continue;
        }
        all[n++] = (br_scored){sc[b], b};
    }
    qsort(all, n, sizeof *all, cmp_scored);
    if (topk > n)
        topk = n;
    memcpy(out, all, topk * sizeof *out);
    return topk;
}

#if defined(__x86_64__)
/* One pass over n floats with eight independent AVX2 accumulators. */
__attribute__((target("avx2"))) static float read_avx2(const float *p, size_t n)
{
    __m256 a[8];
    for (int j = 0; j < 8; j++)
        a[j] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int j = 0; j < 8; j++)
            a[j] = _mm256_add_ps(a[j], _mm256_load_ps(p + i + 8 * j));
    for (int j = 1; j < 8; j++)
        a[0] = _mm256_add_ps(a[0], a[j]);
    float l[8], s = 0;
    _mm256_storeu_ps(l, a[0]);
    for (int j = 0; j < 8; j++)
        s += l[j];
    for (; i < n; i++)
        s += p[i];
    return s;
}
#endif

static float read_plain(const float *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2"))
        return read_avx2(p, n);
#endif
    float s[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += p[i + j];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static void line(const char *what, double *t, int n, const char *note)
{
    double p50 = pct(t, n, 0.5), p99 = pct(t, n, 0.99);
    printf("  %-36s %9.2f %9.2f   %s\n", what, p50, p99, note ? note : "");
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int queries = 20000;
    uint32_t nb = 10000, dim = 32, nu = 2000, check_max = 2000;
    int user_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
            queries = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--books") && i + 1 < argc)
            nb = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
            dim = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--check") && i + 1 < argc)
            check_max = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--user-only"))
            user_only = 1;
        else {
            fprintf(stderr, "usage: bench-infer [-m MODEL] [--queries N] [--books N] [--dim D] "
                            "[--check N] [--user-only]\n");
            return 2;
        }
    }
    if (queries < 100)
        queries = 100;
    br_diag d;
    br_err e;
    br_model *m = NULL;
    void *buf = NULL;
    if (path) {
        if ((e = br_model_open(path, &m, &d)))
            die(path, e, &d);
    } else {
        size_t len;
        buf = synth_model(nu, nb, dim, &len);
        if ((e = br_model_open_buffer(buf, len, &m, &d)))
            die("synthetic model", e, &d);
    }
    const br_model_meta *mt = br_model_get_meta(m);
    br_rec *rec;
    br_rec_scratch *s;
    if ((e = br_rec_create(m, &rec, &d)) || (e = br_rec_scratch_create(rec, &s, &d)))
        die("br_rec", e, &d);
    const size_t K = 10;
    size_t nrd = 0;
    for (uint32_t u = 0; u < mt->n_users; u++) {
        size_t n;
        br_model_user_read(m, u, &n);
        nrd += n;
    }
    printf("bench-infer: %s model, %u books, dim %u (stride %u), %u readers reading %.0f books "
           "on average; top %zu, read books left out; kernel %s; %d queries\n",
           path ? path : "synthetic", mt->n_books, mt->dim, mt->stride, mt->n_users,
           (double)nrd / mt->n_users, K, br_rec_kernel_name(rec), queries);

    float *sc = aligned_alloc(64, ((size_t)mt->n_books * 4 + 63) / 64 * 64);
    br_scored *all = malloc(mt->n_books * sizeof *all), ref[10];
    br_rec_item it[10];
    double *t = malloc((size_t)queries * sizeof *t);
    /* exactness first: every reader (up to --check) */
    uint32_t check = mt->n_users < check_max ? mt->n_users : check_max;
    for (uint32_t u = 0; u < check; u++) {
        size_t n, rn = full_sort(br_kernels_scalar(), m, u, K, sc, all, ref);
        if ((e = br_rec_user_index(rec, s, u, K, 0, it, &n, &d)))
            die("br_rec_user_index", e, &d);
        if (n != rn)
            goto mismatch;
        for (size_t i = 0; i < n; i++)
            if (it[i].book != ref[i].idx || memcmp(&it[i].score, &ref[i].score, 4) != 0)
                goto mismatch;
    }
    printf("  checked: top %zu of %u readers equal the scalar reference + full sort exactly\n\n",
           K, check);

    printf("  %-36s %9s %9s\n", "per query (us)", "p50", "p99");
    double sink = 0;
    for (int q = 0; q < queries; q++) {
        uint32_t u = (uint32_t)q % mt->n_users;
        size_t n;
        double t0 = now_us();
        br_rec_user_index(rec, s, u, K, 0, it, &n, &d);
        t[q] = now_us() - t0;
        sink += it[0].score;
    }
    double fast = pct(t, queries, 0.5);
    char note[160];
    snprintf(note, sizeof note, "target p50 <= 10: %s", fast <= 10 ? "met" : "MISSED");
    line("br_rec_user (pre-scan + exact)", t, queries, note);
    if (user_only)
        goto done;

    int qs = queries / 10 < 200 ? 200 : queries / 10;   /* the slow ones, fewer times */
    for (int q = 0; q < qs; q++) {
        uint32_t u = (uint32_t)q % mt->n_users;
        double t0 = now_us();
        full_sort(br_kernels_scalar(), m, u, K, sc, all, ref);
        t[q] = now_us() - t0;
        sink += ref[0].score;
    }
    double slow = pct(t, qs, 0.5);
    snprintf(note, sizeof note, "speed-up %.1fx (target >= 3x: %s)", slow / fast,
             slow / fast >= 3 ? "met" : "MISSED");
    line("scalar score + full sort", t, qs, note);
    const br_kernels *k2 = br_kernels_avx2();
    if (k2) {
        for (int q = 0; q < qs; q++) {
            uint32_t u = (uint32_t)q % mt->n_users;
            double t0 = now_us();
            full_sort(k2, m, u, K, sc, all, ref);
            t[q] = now_us() - t0;
            sink += ref[0].score;
        }
        line("avx2 score + full sort", t, qs, NULL);
    }
    /* the two halves of the fast path */
    const float *Q = br_model_book_vecs(m), *bb = br_model_book_bias(m);
    const br_kernels *kk = br_kernels_get();
    for (int q = 0; q < queries; q++) {
        uint32_t u = (uint32_t)q % mt->n_users;
        double t0 = now_us();
        kk->score(br_model_user_vecs(m) + (size_t)u * mt->stride, Q, mt->n_books, mt->stride, bb,
                  3.9f, sc);
        t[q] = now_us() - t0;
        sink += sc[0];
    }
    line("  of which: score kernel", t, queries, NULL);
    for (int q = 0; q < queries; q++) {
        uint32_t u = (uint32_t)q % mt->n_users;
        size_t nr;
        const uint32_t *rd = br_model_user_read(m, u, &nr);
        double t0 = now_us();
        br_topk(sc, mt->n_books, rd, nr, K, all);
        t[q] = now_us() - t0;
        sink += all[0].score;
    }
    line("  of which: top-k (read books skipped)", t, queries, NULL);
    size_t nf = (size_t)mt->n_books * mt->stride;
    for (int q = 0; q < queries; q++) {
        double t0 = now_us();
        sink += read_plain(Q, nf);
        t[q] = now_us() - t0;
    }
    double rd50 = pct(t, queries, 0.5);
    snprintf(note, sizeof note, "memory floor: %.2f MB at %.0f GB/s", nf * 4 / 1e6,
             nf * 4 / rd50 / 1e3);
    line("read the book matrix once", t, queries, note);

    /* fold-in of 50 books (ratings 1..5) */
    br_rng g;
    br_rng_seed(&g, 7);
    uint32_t ids[50];
    float rt[50], *vec = aligned_alloc(64, ((size_t)mt->stride * 4 + 63) / 64 * 64), bias;
    const uint32_t *bids = br_model_book_ids(m);
    int nfold = queries / 10 < 500 ? 500 : queries / 10;
    double *t2 = malloc((size_t)nfold * sizeof *t2);
    for (int q = 0; q < nfold; q++) {
        for (int i = 0; i < 50; i++) {
            ids[i] = bids[br_rng_below(&g, mt->n_books)];
            rt[i] = (float)(1 + br_rng_below(&g, 5));
        }
        double t0 = now_us();
        if ((e = br_rec_foldin(rec, s, ids, rt, 50, vec, &bias, &d)))
            die("fold-in", e, &d);
        double t1 = now_us();
        size_t n;
        if ((e = br_rec_reader(rec, s, ids, rt, 50, K, 0, it, &n, &d)))
            die("reader", e, &d);
        t2[q] = now_us() - t1;
        t[q] = t1 - t0;
        sink += vec[0];
    }
    double f50 = pct(t, nfold, 0.5);
    snprintf(note, sizeof note, "%s loss; target p50 <= 100: %s",
             mt->loss == BR_LOSS_BPR ? "bpr" : "mse", f50 <= 100 ? "met" : "MISSED");
    line("fold-in of 50 books", t, nfold, note);
    line("fold-in + top 10 (br_rec_reader)", t2, nfold, NULL);
    free(t2);
    free(vec);
done:
    printf("\n(sink %g)\n", sink);
    free(t);
    free(all);
    free(sc);
    br_rec_scratch_free(s);
    br_rec_free(rec);
    br_model_free(m);
    free(buf);
    return 0;

mismatch:
    fprintf(stderr, "bench-infer: the fast path differs from the reference\n");
    return 1;
}
