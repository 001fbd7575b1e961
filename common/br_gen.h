/*
 * br_gen.h - synthetic ratings with planted structure, for tests and scale
 * benchmarks.
 *
 * Each user u and book b get latent vectors p_u, q_b ~ N(0, sigma^2 I_rank);
 * a rating is clamp(round(mean + bu + bb + p_u . q_b + noise), 1, 5).
 * Books are drawn with a Zipf-like popularity skew; each user rates distinct
 * books. The output is a goodbooks-style CSV (either column layout), gzip
 * compressed if the path ends in ".gz". Same parameters, same bytes.
 *
 * Details (br_gen.c has the method):
 *  - sigma is chosen so p_u . q_b has a standard deviation of 0.6; mean 3.9,
 *    bu ~ N(0, 0.45^2), bb ~ N(0, 0.35^2). With the default noise 0.5 the
 *    ratings come out about 1/7/27/40/26 % for 1..5 (mean ~3.83; goodbooks
 *    has 2/6/25/36/30 %, mean 3.86).
 *  - Popularity: book b (1-based) is drawn with weight b^-pop_skew, so book 1
 *    is the most popular, as in goodbooks.
 *  - Ratings per user: every user gets min(2, n_books) when n_ratings >=
 *    2 * n_users (else n_ratings / n_users, the remainder spread by weight);
 *    the rest is shared in proportion to log-normal weights exp(0.8 z),
 *    z ~ N(0, 1), capped at n_books. So the mean is n_ratings / n_users; the
 *    median is about 0.75x the mean, the 90th percentile about 2x and the
 *    largest of 50,000 users about 20x (e.g. 6M ratings over 53,424 users:
 *    min 5, median 82, p90 225, p99 528, mean 112). The total is exact.
 *  - Rows come grouped by user (ascending), each user's books ascending, in
 *    both layouts. Header "user_id,book_id,rating" if user_first, else
 *    "book_id,user_id,rating"; LF line ends; .gz at zlib level 1.
 *  - Memory: 4 bytes per user plus about (4 * rank + 18) bytes per book
 *    (24 more per book once a user rates over a quarter of the books or the
 *    skew is extreme); no users x books matrix. One core; about 0.5 s for 6M
 *    ratings (1 s gzipped) and 10-15 s for 60M plain (mostly file I/O).
 *  - Errors: BR_ERR_ARG for zero sizes or no path, BR_ERR_RANGE for
 *    n_ratings > n_users * n_books, rank > 1024, noise outside 0..100,
 *    pop_skew outside 0..4; BR_ERR_NOMEM, BR_ERR_IO/NOT_FOUND when writing.
 *    A failed write leaves no file at the path.
 */
#ifndef BR_GEN_H
#define BR_GEN_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"

typedef struct br_gen_params {
    uint32_t n_users;       /* users (ids 1..n_users) */
    uint32_t n_books;       /* books (ids 1..n_books) */
    uint64_t n_ratings;     /* total ratings (at most n_users * n_books) */
    uint32_t rank;          /* planted rank (e.g. 8) */
    float noise;            /* standard deviation of the rating noise (e.g. 0.5) */
    float pop_skew;         /* Zipf exponent of book popularity (0 = uniform, ~0.8 realistic) */
    uint64_t seed;
    int user_first;         /* 1: header user_id,book_id,rating; 0: book_id,user_id,rating */
} br_gen_params;

/* Sensible defaults for everything but the sizes (left 0): rank 8, noise 0.5,
 * pop_skew 0.8, seed 42, user_first 0. */
void br_gen_defaults(br_gen_params *p);

/* Writes the CSV to path (atomically). */
br_err br_gen_write(const br_gen_params *p, const char *path, br_diag *diag);

/* Generates into memory: ratings as parallel arrays of external ids
 * (user_ids[i], book_ids[i], ratings[i]), n = p->n_ratings. The caller frees
 * the three arrays. Same sequence as br_gen_write. */
br_err br_gen_memory(const br_gen_params *p, uint32_t **user_ids, uint32_t **book_ids,
                     float **ratings, br_diag *diag);

#endif
