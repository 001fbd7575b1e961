/*
 * br_eval.h - held-out figures: rating error and top-k ranking quality.
 *
 * Ranking protocol: for every user with at least one held-out rating, all
 * books are scored (in effect: br_qscan finds the same top k reading far
 * less), the books the user rated in training are removed, and
 * the top k are compared with the held-out books (every held-out rated book
 * counts as relevant, whatever its rating):
 *   Recall@k = hits / |held-out|      HR@k = 1 if any hit
 *   NDCG@k   = DCG / ideal DCG (binary relevance, log2 discount)
 *   MAP@k    = mean over hit positions of precision there, / min(k, |held-out|)
 * each averaged over users; coverage = distinct books recommended / books.
 */
#ifndef BR_EVAL_H
#define BR_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_ratings.h"
#include "br_train.h"

typedef struct br_rank_metrics {
    double recall, ndcg, hr, map, coverage;
    size_t users;    /* users evaluated */
    uint32_t k;
} br_rank_metrics;

/* RMSE and MAE of the (clamped) predictions over ratings with fold == want,
 * on `threads` threads (the figures do not depend on the count). */
void br_eval_rmse(const br_params *p, const br_ratings *r, const uint8_t *fold, uint8_t want,
                  int threads, double *rmse, double *mae, size_t *count);

/* Ranking figures of the model. `train` is the CSR by user of the books
 * to exclude (rated in training), `test` the CSR by user of held-out books. */
br_err br_eval_ranking(const br_params *p, const br_csr *train, const br_csr *test, uint32_t k,
                       int threads, br_rank_metrics *out, br_diag *diag);

/* The same with flags: BR_EVAL_FULL_SCAN scores every book of every user
 * (the reference) instead of br_qscan's pre-scan; both give the same
 * figures, bit for bit. */
#define BR_EVAL_FULL_SCAN 1u
br_err br_eval_ranking_flags(const br_params *p, const br_csr *train, const br_csr *test,
                             uint32_t k, int threads, unsigned flags, br_rank_metrics *out,
                             br_diag *diag);

/* The same figures for the popularity baseline: books ranked by how many
 * training ratings they have. */
br_err br_eval_popularity(const br_csr *train, const br_csr *test, uint32_t n_books, uint32_t k,
                          int threads, br_rank_metrics *out, br_diag *diag);

#endif
