/*
 * br_eval.c - held-out RMSE/MAE and ranking metrics (protocol in br_eval.h).
 */
#include "br_eval.h"
#include "br_kernels.h"
#include "br_rng.h"
#include "br_topk.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void br_eval_rmse(const br_params *p, const br_ratings *r, const uint8_t *fold, uint8_t want,
                  double *rmse, double *mae, size_t *count)
{
    double se = 0, ae = 0;
    size_t c = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (fold && fold[i] != want)
            continue;
        float s = br_params_score(p, r->user[i], r->book[i]);
        if (p->clamp)
            s = s < 1.0f ? 1.0f : s > 5.0f ? 5.0f : s;
        double e = (double)r->rating[i] - s;
        se += e * e;
        ae += fabs(e);
        c++;
    }
    *rmse = c ? sqrt(se / (double)c) : NAN;
    *mae = c ? ae / (double)c : NAN;
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

/* Shared driver: `score_user` fills scores for user u (NULL params means
 * popularity, whose scores are the same for everyone). */
static br_err br_rank_run(const br_params *p, const float *pop, uint32_t n_books,
                          const br_csr *train, const br_csr *test, uint32_t k, int threads,
                          br_rank_metrics *out, br_diag *diag)
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
#pragma omp parallel num_threads(threads > 0 ? threads : 1) \
    reduction(+ : recall, ndcg, hr, map, users, failed)
    {
        float *scores = malloc((size_t)n_books * sizeof *scores);
        br_scored *top = malloc((size_t)k * sizeof *top);
        if (!scores || !top)
            failed++;
#pragma omp for schedule(dynamic, 256)
        for (uint32_t u = 0; u < n_users; u++) {
            if (failed)
                continue;
            size_t n_rel = test->ptr[u + 1] - test->ptr[u];
            if (n_rel == 0)
                continue;
            const float *s = pop;
            if (p) {
                kern->score(p->P + (size_t)u * p->stride, p->Q, n_books, p->stride, p->bb,
                            p->mean + (p->bu ? p->bu[u] : 0.0f), scores);
                s = scores;
            }
            const uint32_t *ex = u < train->n_rows ? train->col + train->ptr[u] : NULL;
            size_t n_ex = u < train->n_rows ? train->ptr[u + 1] - train->ptr[u] : 0;
            size_t m = br_topk(s, n_books, ex, n_ex, k, top);
            for (size_t i = 0; i < m; i++) {
#pragma omp atomic write
                shown[top[i].idx] = 1;
            }
            br_rank_user(top, m, test->col + test->ptr[u], n_rel, k, &recall, &ndcg, &hr, &map);
            users++;
        }
        free(scores);
        free(top);
    }
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

br_err br_eval_ranking(const br_params *p, const br_csr *train, const br_csr *test, uint32_t k,
                       int threads, br_rank_metrics *out, br_diag *diag)
{
    if (k == 0)
        return br_fail(diag, BR_ERR_ARG, "k must be at least 1");
    return br_rank_run(p, NULL, p->n_books, train, test, k, threads, out, diag);
}

br_err br_eval_popularity(const br_csr *train, const br_csr *test, uint32_t n_books, uint32_t k,
                          int threads, br_rank_metrics *out, br_diag *diag)
{
    if (k == 0)
        return br_fail(diag, BR_ERR_ARG, "k must be at least 1");
    float *pop = calloc(n_books, sizeof *pop);
    if (!pop)
        return br_fail(diag, BR_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < train->nnz; i++)
        if (train->col[i] < n_books)
            pop[train->col[i]] += 1.0f;
    br_err e = br_rank_run(NULL, pop, n_books, train, test, k, threads, out, diag);
    free(pop);
    return e;
}
