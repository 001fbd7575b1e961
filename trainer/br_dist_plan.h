/*
 * br_dist_plan.h - the pure logic of distributed training (no MPI here, so
 * it builds everywhere and unit tests cover it): which rank owns a user,
 * which block a book falls in, the block rotation schedule, the initial
 * embedding rows, and loading one rank's share of a ratings file.
 *
 * The stratified schedule (DSGD, Gemulla et al. KDD 2011) over R ranks:
 * users are partitioned across ranks by a hash of the user id; the books
 * (global indices 0..n_books-1 in ascending id order) are cut into R blocks,
 * book g in block g mod R at slot g / R (interleaved, so the popular low ids
 * spread over every block). In sub-epoch s rank k updates book block
 * (k + s) mod R; then every rank hands its block to rank k - 1 and takes
 * rank k + 1's (MPI_Sendrecv), so within a sub-epoch no two ranks touch the
 * same book, and over R sub-epochs every rank meets every block once.
 */
#ifndef BR_DIST_PLAN_H
#define BR_DIST_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include "br_error.h"
#include "br_ratings.h"

/* The rank (0..nranks-1) that owns user_id. */
uint32_t br_dist_user_rank(uint32_t user_id, uint32_t nranks);

/* Book block of global book index g, and its slot inside the block. */
static inline uint32_t br_dist_book_block(uint32_t g, uint32_t nblk) { return g % nblk; }
static inline uint32_t br_dist_book_slot(uint32_t g, uint32_t nblk) { return g / nblk; }
/* Global index of slot i of block k. */
static inline uint32_t br_dist_book_global(uint32_t k, uint32_t i, uint32_t nblk)
{
    return i * nblk + k;
}
/* Number of books in block k of n_books split into nblk blocks. */
static inline uint32_t br_dist_block_size(uint32_t n_books, uint32_t nblk, uint32_t k)
{
    return k < n_books % nblk ? n_books / nblk + 1 : n_books / nblk;
}

/* The block rank holds at rotation step `step` (steps count every
 * hand-over since the start). */
static inline uint32_t br_dist_block_at(uint32_t rank, uint64_t step, uint32_t nranks)
{
    return (uint32_t)((rank + step) % nranks);
}
/* Ring neighbours of a rotation: send to the previous rank, receive from the next. */
static inline uint32_t br_dist_send_to(uint32_t rank, uint32_t nranks)
{
    return (rank + nranks - 1) % nranks;
}
static inline uint32_t br_dist_recv_from(uint32_t rank, uint32_t nranks)
{
    return (rank + 1) % nranks;
}

/* The initial embedding row of a user (is_book 0) or book (1) with external
 * id `id`: dim values ~ N(0, std^2) from a stream seeded by (seed, kind,
 * id), zeros up to stride. Depends on nothing else, so every rank count
 * starts from the same parameters. */
void br_dist_init_row(float *row, uint32_t dim, uint32_t stride, uint64_t seed, int is_book,
                      uint32_t id, float std);

/* Union of sorted, duplicate-free arrays: a[0..na) and b[0..nb) into out
 * (room for na + nb); returns the count. */
size_t br_dist_merge_ids(const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
                         uint32_t *out);

/* Loads the ratings of users owned by `rank` of `nranks` from a ratings file
 * (.csv or .csv.gz), streaming it in pieces of about chunk_bytes (0: 64 MB)
 * so that neither the file nor other ranks' ratings are ever held whole.
 * Same checks and messages (with true line numbers) as br_ratings_load;
 * duplicates merged, last row wins. BR_ERR_EMPTY if the rank gets no rating. */
br_err br_dist_load_share(const char *path, const br_load_opts *opts, uint32_t rank,
                          uint32_t nranks, size_t chunk_bytes, br_ratings **out, br_diag *diag);

#endif
