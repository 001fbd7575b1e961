/*
 * br_gen.h - synthetic ratings with planted structure, for tests and scale
 * benchmarks.
 *
 * Each user u and book b get latent vectors p_u, q_b ~ N(0, sigma^2 I_rank);
 * a rating is clamp(round(mean + bu + bb + p_u . q_b + noise), 1, 5).
 * Books are drawn with a Zipf-like popularity skew; each user rates distinct
 * books. The output is a goodbooks-style CSV (either column layout), gzip
 * compressed if the path ends in ".gz". Same parameters, same bytes.
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

/* Sensible defaults for everything but the sizes. */
void br_gen_defaults(br_gen_params *p);

/* Writes the CSV to path (atomically). */
br_err br_gen_write(const br_gen_params *p, const char *path, br_diag *diag);

/* Generates into memory: ratings as parallel arrays of external ids
 * (user_ids[i], book_ids[i], ratings[i]), n = p->n_ratings. The caller frees
 * the three arrays. Same sequence as br_gen_write. */
br_err br_gen_memory(const br_gen_params *p, uint32_t **user_ids, uint32_t **book_ids,
                     float **ratings, br_diag *diag);

#endif
