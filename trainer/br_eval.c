/*
 * br_eval.c - held-out RMSE/MAE and ranking metrics (protocol in br_eval.h).
 */
#include "br_eval.h"
#include "br_alloc.h"
#include "br_kernels.h"
#include "br_qscan.h"
#include "br_rng.h"
#include "br_topk.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void br_eval_rmse(const br_params *p, const br_ratings *r, const uint8_t *fold, uint8_t want,
                  int threads, double *rmse, double *mae, size_t *count)
{
    /* Fixed chunks whose sums are added in order: the same figures for any
     * thread count. */
    enum { CHUNKS = 64 };
    double se[CHUNKS] = {0}, ae[CHUNKS] = {0};
    size_t cnt[CHUNKS] = {0};
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(dynamic, 1)
    for (int ch = 0; ch < CHUNKS; ch++) {
        size_t lo = r->n * (size_t)ch / CHUNKS, hi = r->n * (size_t)(ch + 1) / CHUNKS;
        /* In runs of up to 256 wanted ratings, each book row fetched a few
         * ratings ahead (the rows are random reads; the ratings go by user). */
        uint32_t run[256];
        size_t i = lo;
        while (i < hi) {
            size_t m = 0;
            for (; i < hi && m < 256; i++)
                if (!fold || fold[i] == want)
                    run[m++] = (uint32_t)i;
            for (size_t j = 0; j < m; j++) {
                if (j + 8 < m)
                    br_prefetch_floats(p->Q + (size_t)r->book[run[j + 8]] * p->stride, p->stride, 0);
                size_t x = run[j];
                float s = br_params_score(p, r->user[x], r->book[x]);
                if (p->clamp)
                    s = s < 1.0f ? 1.0f : s > 5.0f ? 5.0f : s;
                double e = (double)r->rating[x] - s;
                se[ch] += e * e;
                ae[ch] += fabs(e);
                cnt[ch]++;
            }
        }
    }
    double tse = 0, tae = 0;
    size_t c = 0;
    for (int ch = 0; ch < CHUNKS; ch++) {
        tse += se[ch];
        tae += ae[ch];
        c += cnt[ch];
    }
    *rmse = c ? sqrt(tse / (double)c) : NAN;
    *mae = c ? tae / (double)c : NAN;
    if (count)
        *count = c;
}

static int br_sorted_has(const uint32_t *v, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x;
}

/* Accumulates one user's figures from a ranked list. */
static void br_rank_user(const br_scored *top, size_t m, const uint32_t *rel, size_t n_rel,
                         uint32_t k, double *recall, double *ndcg, double *hr, double *map)
{
    double dcg = 0, idcg = 0, ap = 0;
    size_t hits = 0;
    for (size_t i = 0; i < m; i++) {
        if (br_sorted_has(rel, n_rel, top[i].idx)) {
            hits++;
            dcg += 1.0 / log2((double)i + 2.0);
            ap += (double)hits / (double)(i + 1);
        }
    }
    size_t ideal = n_rel < k ? n_rel : k;
    for (size_t i = 0; i < ideal; i++)
        idcg += 1.0 / log2((double)i + 2.0);
    *recall += (double)hits / (double)n_rel;
    *ndcg += idcg > 0 ? dcg / idcg : 0;
    *hr += hits > 0;
    *map += ideal ? ap / (double)ideal : 0;
}

static int br_cmp_scored(const void *a, const void *b)
{
    br_scored x = *(const br_scored *)a, y = *(const br_scored *)b;
    return br_scored_before(x, y) ? -1 : br_scored_before(y, x) ? 1 : 0;
}

/* Shared driver: the model's scores for each user, or (NULL params)
 * popularity, the same scores for everyone: ranked once (`order`), so a
 * user's top k is the first k of that order not read, as br_topk would
 * pick them. */
static br_err br_rank_run(const br_params *p, const br_scored *order, uint32_t n_books,
                          const br_csr *train, const br_csr *test, uint32_t k, int threads,
                          unsigned flags, br_rank_metrics *out, br_diag *diag)
{
    memset(out, 0, sizeof *out);
    out->k = k;
    uint8_t *shown = calloc(n_books, 1);
    if (!shown)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    double recall = 0, ndcg = 0, hr = 0, map = 0;
    size_t users = 0;
    int failed = 0;
    const br_kernels *kern = br_kernels_get();
    uint32_t n_users = test->n_rows;
    /* The model's top k by the quantised pre-scan (exactly the full scan's
     * answer, see br_qscan.h, at a fraction of its cost); a matrix or reader
     * it refuses takes the full scan. */
    br_qscan *qs = NULL;
    if (p && !(flags & BR_EVAL_FULL_SCAN) && br_qscan_create(p->Q, p->bb, n_books, p->stride, &qs, NULL) != BR_OK)
        qs = NULL;
#pragma omp parallel num_threads(threads > 0 ? threads : 1) \
    reduction(+ : recall, ndcg, hr, map, users, failed)
    {
        /* Users go in groups of BR_QSCAN_MULTI, so the pre-scan reads the
         * quantised books once per group (br_qscan_topk_multi). */
        enum { G = BR_QSCAN_MULTI };
        float *scores = p ? malloc((size_t)n_books * sizeof *scores) : NULL;   /* the full scan */
        br_scored *topbuf = malloc((size_t)G * k * sizeof *topbuf);
        void *qwork = qs ? br_alloc64(G * br_qscan_work_bytes(qs)) : NULL;
        if ((p && !scores) || !topbuf || (qs && !qwork))
            failed++;
#pragma omp for schedule(dynamic, 64)
        for (uint32_t g0 = 0; g0 < (n_users + G - 1) / G; g0++) {
            if (failed)
                continue;
            const float *pu[G];
            float add[G];
            const uint32_t *ex[G];
            size_t n_ex[G], m[G], n_rel[G];
            uint32_t us[G];
            br_scored *top[G];
            br_err rc[G];
            size_t n = 0;
            for (uint32_t u = g0 * G; u < n_users && u < (g0 + 1) * G; u++) {
                n_rel[n] = test->ptr[u + 1] - test->ptr[u];
                if (n_rel[n] == 0)
                    continue;
                us[n] = u;
                ex[n] = u < train->n_rows ? train->col + train->ptr[u] : NULL;
                n_ex[n] = u < train->n_rows ? train->ptr[u + 1] - train->ptr[u] : 0;
                top[n] = topbuf + n * k;
                m[n] = 0;
                rc[n] = BR_ERR_UNSUPPORTED;
                if (p) {
                    pu[n] = p->P + (size_t)u * p->stride;
                    add[n] = p->mean + (p->bu ? p->bu[u] : 0.0f);
                }
                n++;
            }
            if (p && qs && n)
                br_qscan_topk_multi(qs, kern, n, pu, add, ex, n_ex, k, qwork, top, m, rc);
            for (size_t i = 0; i < n; i++) {
                if (p && rc[i] != BR_OK) {   /* refused by the pre-scan: the full scan */
                    kern->score(pu[i], p->Q, n_books, p->stride, p->bb, add[i], scores);
                    m[i] = br_topk(scores, n_books, ex[i], n_ex[i], k, top[i]);
                } else if (!p) {
                    for (uint32_t b = 0; b < n_books && m[i] < k; b++)
                        if (!br_sorted_has(ex[i], n_ex[i], order[b].idx))
                            top[i][m[i]++] = order[b];
                }
                for (size_t j = 0; j < m[i]; j++) {
#pragma omp atomic write
                    shown[top[i][j].idx] = 1;
                }
                br_rank_user(top[i], m[i], test->col + test->ptr[us[i]], n_rel[i], k, &recall,
                             &ndcg, &hr, &map);
                users++;
            }
        }
        free(scores);
        free(topbuf);
        free(qwork);
    }
    br_qscan_free(qs);
    if (failed) {
        free(shown);
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    }
    size_t cov = 0;
    for (uint32_t b = 0; b < n_books; b++)
        cov += shown[b];
    free(shown);
    out->users = users;
    if (users) {
        out->recall = recall / (double)users;
        out->ndcg = ndcg / (double)users;
        out->hr = hr / (double)users;
        out->map = map / (double)users;
    }
    out->coverage = (double)cov / (double)n_books;
    return BR_OK;
}

br_err br_eval_ranking_flags(const br_params *p, const br_csr *train, const br_csr *test,
                             uint32_t k, int threads, unsigned flags, br_rank_metrics *out,
                             br_diag *diag)
{
    if (k == 0)
        return br_fail(diag, BR_ERR_ARG, "k must be at least 1");
    return br_rank_run(p, NULL, p->n_books, train, test, k, threads, flags, out, diag);
}

br_err br_eval_ranking(const br_params *p, const br_csr *train, const br_csr *test, uint32_t k,
                       int threads, br_rank_metrics *out, br_diag *diag)
{
    return br_eval_ranking_flags(p, train, test, k, threads, 0, out, diag);
}

br_err br_eval_popularity(const br_csr *train, const br_csr *test, uint32_t n_books, uint32_t k,
                          int threads, br_rank_metrics *out, br_diag *diag)
{
    if (k == 0)
        return br_fail(diag, BR_ERR_ARG, "k must be at least 1");
    br_scored *order = calloc(n_books ? n_books : 1, sizeof *order);
    if (!order)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (uint32_t b = 0; b < n_books; b++)
        order[b].idx = b;
    for (uint64_t i = 0; i < train->nnz; i++)
        if (train->col[i] < n_books)
            order[train->col[i]].score += 1.0f;
    qsort(order, n_books, sizeof *order, br_cmp_scored);
    br_err e = br_rank_run(NULL, order, n_books, train, test, k, threads, 0, out, diag);
    free(order);
    return e;
}
